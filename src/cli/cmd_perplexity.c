/*
 * cli/cmd_perplexity.c: `slmesh perplexity`: the perplexity of a text file, computed as the
 * reference runtime's perplexity tool does: the text is tokenized once, cut into chunks of
 * n_ctx tokens, the first token of each chunk is replaced by BOS (when the vocabulary adds
 * one), and the negative log-likelihood of the second half of each chunk is averaged (the
 * first half gives every scored token some context).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"

#define PPL_DEFAULT_CTX 512     /* tokens per chunk when --ctx is absent (capped by the model's) */
#define PPL_MAX_FILE    (1u << 30) /* bytes of text */

static const char ppl_usage[] =
    "usage: slmesh perplexity -m MODEL -f FILE [--ctx N] [-t N] [--no-mmap]\n"
    "  -m, --model PATH  GGUF model file\n"
    "  -f, --file PATH   UTF-8 text\n"
    "  -c, --ctx N       tokens per chunk (default 512, at most the model's context)\n";

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            if (cap > PPL_MAX_FILE) break;
            cap = cap ? 2 * cap : 65536;
            char *b = realloc(buf, cap);
            if (!b) break;
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            fclose(f);
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

/* log-softmax value of logits[id] (double accumulation). */
static double logprob_of(const float *logits, int32_t n_vocab, int32_t id) {
    double max = -INFINITY, sum = 0;
    for (int32_t i = 0; i < n_vocab; i++) max = logits[i] > max ? logits[i] : max;
    for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    return (double)logits[id] - max - log(sum);
}

int cmd_perplexity(int argc, char **argv) {
    cli_model_opts mo = {0};
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt("perplexity", ppl_usage, argc, argv, &i, &mo);
        if (r < 0) return CLI_USAGE;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(ppl_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!cli_opt_value(argc, argv, &i, &file)) return cli_usage("perplexity", ppl_usage, "option %s needs a value", a);
        } else {
            return cli_usage("perplexity", ppl_usage, "unknown option '%s'", a);
        }
    }
    if (!mo.model) return cli_usage("perplexity", ppl_usage, "missing -m MODEL");
    if (!file) return cli_usage("perplexity", ppl_usage, "missing -f FILE");
    size_t len = 0;
    char *text = read_text(file, &len);
    if (!text) return cli_fail("perplexity", SLM_ERR_IO, file);

    slm_model *m = NULL;
    slm_ctx *c = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = cli_model_load("perplexity", &mo, PPL_DEFAULT_CTX, &m, &c);
    if (rc == CLI_OK) rc = cli_tokenize("perplexity", m, text, len, SLM_TOKENIZE_ADD_BOS, &ids, &n);
    free(text);
    if (rc == CLI_OK) {
        slm_model_desc d;
        slm_model_describe(m, &d);
        const int32_t n_ctx = slm_ctx_n_ctx(c), bos = slm_model_bos(m);
        const size_t chunk = n < (size_t)n_ctx ? n : (size_t)n_ctx;
        const size_t n_chunks = chunk >= 4 ? n / chunk : 0;
        int32_t *tok = malloc(chunk * sizeof *tok), *pos = malloc(chunk * sizeof *pos), *seq = calloc(chunk, sizeof *seq);
        bool *want = malloc(chunk * sizeof *want);
        double nll = 0;
        size_t counted = 0;
        if (n_chunks == 0) rc = cli_fail("perplexity", SLM_ERR_INVALID_ARG, "the text has fewer than 4 tokens");
        if (rc == CLI_OK && (!tok || !pos || !seq || !want)) rc = cli_fail("perplexity", SLM_ERR_NOMEM, "buffers");
        for (size_t k = 0; rc == CLI_OK && k < n_chunks; k++) {
            const size_t first = chunk / 2;
            memcpy(tok, ids + k * chunk, chunk * sizeof *tok);
            if (bos >= 0) tok[0] = bos;
            slm_ctx_clear(c);
            /* the chunk in batches of at most 512 tokens, logits where they are scored */
            for (size_t i0 = 0; rc == CLI_OK && i0 < chunk; i0 += 512) {
                const size_t b_n = chunk - i0 < 512 ? chunk - i0 : 512;
                for (size_t i = 0; i < b_n; i++) pos[i] = (int32_t)(i0 + i), want[i] = i0 + i >= first && i0 + i + 1 < chunk;
                slm_batch b = {.n_tokens = (int32_t)b_n, .token = tok + i0, .pos = pos, .seq_id = seq, .logits = want};
                char err[SLM_ERR_LEN] = "";
                slm_status st = slm_ctx_decode(c, &b, err);
                if (st) {
                    rc = cli_fail("perplexity", st, err);
                    break;
                }
                for (size_t i = 0; i < b_n; i++)
                    if (want[i]) nll -= logprob_of(slm_ctx_logits(c, (int32_t)i), d.n_vocab, tok[i0 + i + 1]), counted++;
            }
            if (rc == CLI_OK) fprintf(stderr, "[%zu] %.4f\n", k + 1, exp(nll / (double)counted));
        }
        if (rc == CLI_OK) printf("perplexity: %.4f over %zu tokens (%zu chunks of %zu)\n", exp(nll / (double)counted),
                                 counted, n_chunks, chunk);
        free(tok), free(pos), free(seq), free(want);
    }
    free(ids);
    slm_ctx_destroy(c);
    slm_model_close(m);
    return rc;
}
