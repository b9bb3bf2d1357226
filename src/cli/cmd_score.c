/*
 * cli/cmd_score.c: `slmesh score`: evaluate a prompt (BOS added) and print, for every
 * position, the N most likely next tokens with their log-probabilities: as text, or with
 * --json as {"tokens":[...],"positions":[{"top":[[id,logprob],...]},...]}.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "sample/sample.h"

static const char score_usage[] =
    "usage: slmesh score -m MODEL -p TEXT [--top N] [--json] [-t N] [--no-mmap]\n"
    "  -m, --model PATH   GGUF model file\n"
    "  -p, --prompt TEXT  text to score (BOS is added when the vocabulary says so)\n"
    "  --top N            alternatives per position, 1..20 (default 5)\n"
    "  --json             print JSON instead of text\n";

/* Decode ids[n] with logits everywhere, n_batch at a time, calling row(i, logits) per token. */
static int score_positions(slm_ctx *c, const int32_t *ids, size_t n, int32_t n_top, json_t *jpos, const slm_model *m) {
    char err[SLM_ERR_LEN] = "", piece[64];
    const int32_t nb = 512;
    int32_t pos[512], seq[512];
    bool want[512];
    slm_model_desc d;
    slm_model_describe(m, &d);
    for (size_t i0 = 0; i0 < n; i0 += (size_t)nb) {
        const int32_t k = n - i0 < (size_t)nb ? (int32_t)(n - i0) : nb;
        for (int32_t i = 0; i < k; i++) pos[i] = (int32_t)i0 + i, seq[i] = 0, want[i] = true;
        slm_batch b = {.n_tokens = k, .token = ids + i0, .pos = pos, .seq_id = seq, .logits = want};
        slm_status st = slm_ctx_decode(c, &b, err);
        if (st) return cli_fail("score", st, err);
        for (int32_t i = 0; i < k; i++) {
            slm_sample_out so;
            const size_t p = i0 + (size_t)i;
            const int32_t next = p + 1 < n ? ids[p + 1] : -1;
            st = slm_sample_probs(slm_ctx_logits(c, i), d.n_vocab, next, n_top, &so, err);
            if (st) return cli_fail("score", st, err);
            if (jpos) {
                json_t *top = json_array();
                for (int32_t j = 0; j < so.n_alts; j++)
                    json_array_append_new(top, json_pack("[i,f]", (json_int_t)so.alts[j].id, (double)so.alts[j].logprob));
                json_array_append_new(jpos, json_pack("{s:o}", "top", top));
                continue;
            }
            size_t pl = slm_model_token_piece(m, ids[p], piece, sizeof piece - 1);
            piece[pl < sizeof piece ? pl : sizeof piece - 1] = '\0';
            printf("%4zu %6d %-14s", p, ids[p], piece);
            if (next >= 0) printf(" next lp %8.4f |", so.logprob);
            else printf("                  |");
            for (int32_t j = 0; j < so.n_alts; j++) printf(" %d:%.3f", so.alts[j].id, so.alts[j].logprob);
            printf("\n");
        }
    }
    return CLI_OK;
}

int cmd_score(int argc, char **argv) {
    cli_model_opts mo = {0};
    const char *prompt = NULL, *v = NULL;
    long n_top = 5;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt("score", score_usage, argc, argv, &i, &mo);
        if (r < 0) return CLI_USAGE;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(score_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!cli_opt_value(argc, argv, &i, &prompt)) return cli_usage("score", score_usage, "option %s needs a value", a);
        } else if (!strcmp(a, "--top")) {
            if (!cli_opt_value(argc, argv, &i, &v) || !cli_parse_long(v, 1, SLM_SAMPLE_MAX_PROBS, &n_top))
                return cli_usage("score", score_usage, "bad value for --top (1..%d)", SLM_SAMPLE_MAX_PROBS);
        } else if (!strcmp(a, "--json")) {
            as_json = true;
        } else {
            return cli_usage("score", score_usage, "unknown option '%s'", a);
        }
    }
    if (!mo.model) return cli_usage("score", score_usage, "missing -m MODEL");
    if (!prompt) return cli_usage("score", score_usage, "missing -p TEXT");

    /* the context must hold the whole prompt: open the model, tokenize, then size it */
    slm_model *m = NULL;
    slm_ctx *c = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    cli_model_opts probe = mo;
    probe.n_ctx = 1;
    int rc = cli_model_load("score", &probe, 1, &m, &c);
    if (rc) return rc;
    slm_ctx_destroy(c);
    c = NULL;
    rc = cli_tokenize("score", m, prompt, strlen(prompt), SLM_TOKENIZE_ADD_BOS, &ids, &n);
    if (rc == CLI_OK && n == 0) rc = cli_fail("score", SLM_ERR_INVALID_ARG, "the prompt has no tokens");
    if (rc == CLI_OK) {
        char err[SLM_ERR_LEN] = "";
        slm_ctx_params cp = {.n_ctx = (int32_t)n, .n_batch = n < 512 ? (int32_t)n : 512, .n_threads = mo.n_threads};
        slm_status st = n > CLI_MAX_CTX ? SLM_ERR_LIMIT : slm_ctx_create(m, &cp, &c, err);
        if (st) rc = cli_fail("score", st, err);
    }
    json_t *root = NULL, *jpos = NULL;
    if (rc == CLI_OK && as_json) {
        json_t *jt = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(jt, json_integer(ids[i]));
        jpos = json_array();
        root = json_pack("{s:o,s:o}", "tokens", jt, "positions", jpos);
    }
    if (rc == CLI_OK) rc = score_positions(c, ids, n, (int32_t)n_top, jpos, m);
    if (rc == CLI_OK && root) {
        char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
        if (s) puts(s);
        else rc = cli_fail("score", SLM_ERR_NOMEM, "JSON output");
        free(s);
    }
    json_decref(root);
    free(ids);
    slm_ctx_destroy(c);
    slm_model_close(m);
    return rc;
}
