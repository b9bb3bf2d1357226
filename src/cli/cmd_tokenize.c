/*
 * cli/cmd_tokenize.c: `slmesh tokenize -m MODEL [--special] [--no-bos] [--ids] TEXT`: print
 * the token ids of TEXT under the model's vocabulary, one "id<TAB>'piece'" line per token
 * (pieces of control tokens shown as their text), or only the ids on one line with --ids.
 * BOS is added when the vocabulary asks for it, unless --no-bos; special-token texts in
 * TEXT are recognised only with --special. Single-threaded; non-goals: reading TEXT from a
 * file or stdin, detokenizing ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

static const char usage[] =
    "usage: slmesh tokenize -m MODEL [--special] [--no-bos] [--ids] TEXT\n"
    "  -m, --model MODEL  GGUF file whose vocabulary to use\n"
    "  --special          recognise special-token texts (<|im_start|>, <s>) in TEXT\n"
    "  --no-bos           do not add BOS even if the vocabulary asks for it\n"
    "  --ids              print only the ids, space-separated, on one line\n";

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    bool special = false, no_bos = false, ids_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (++i >= argc) return cli_usage(argv[0], usage, "%s needs a value", a);
            model = argv[i];
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (a[0] == '-' && a[1] != '\0' && strcmp(a, "--")) {
            return cli_usage(argv[0], usage, "unknown option '%s'", a);
        } else {
            if (!strcmp(a, "--") && ++i >= argc) break;
            if (text) return cli_usage(argv[0], usage, "more than one TEXT (quote it)");
            text = argv[i];
        }
    }
    if (!model) return cli_usage(argv[0], usage, "no model (-m MODEL)");
    if (!text) return cli_usage(argv[0], usage, "no TEXT");

    char err[SLM_ERR_LEN] = "";
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    int32_t *ids = NULL;
    int rc = CLI_FAIL;
    slm_status st = slm_gguf_open(model, NULL, &g, err);
    if (st != SLM_OK) return cli_fail(argv[0], st, err);
    st = slm_tok_create(g, &t, err);
    slm_gguf_close(g);
    if (st != SLM_OK) return cli_fail(argv[0], st, err);

    int flags = (no_bos ? 0 : SLM_TOK_ADD_BOS) | (special ? SLM_TOK_PARSE_SPECIAL : 0);
    size_t len = strlen(text), n = 0;
    /* first call sizes the output (SLM_ERR_FULL), second fills it */
    st = slm_tok_encode(t, text, len, flags, NULL, 0, &n, err);
    if (st == SLM_ERR_FULL) {
        ids = slm_malloc((n ? n : 1) * sizeof *ids);
        st = ids ? slm_tok_encode(t, text, len, flags, ids, n, &n, err) : SLM_ERR_NOMEM;
    }
    if (st != SLM_OK) {
        rc = cli_fail(argv[0], st, err);
        goto done;
    }
    char piece[256];
    for (size_t i = 0; i < n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        size_t pn = slm_tok_piece(t, ids[i], SLM_TOK_PARSE_SPECIAL, piece, sizeof piece);
        if (pn > sizeof piece) pn = 0; /* longer than any real token: shown empty */
        printf("%d\t'%.*s'\n", ids[i], (int)pn, piece);
    }
    if (ids_only) printf("\n");
    rc = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
done:
    slm_free(ids);
    slm_tok_destroy(t);
    return rc;
}
