/*
 * bench/bench_grammar.c: per-step cost of the grammar token mask (slm_grammar_matcher_mask)
 * on a real vocabulary, while "generating" JSON documents that follow a schema.
 *
 * The documents are tokenized with the vocabulary's own tokenizer (as a model would emit
 * them); each step computes the full allowed-token mask, checks that the next token is in
 * it, and feeds the token. Phases:
 *   first - the first document of a newly compiled schema (every automaton state is new);
 *   cold  - N_DOCS documents with different field values through another newly compiled
 *           copy of the schema;
 *   warm  - N_DOCS more documents through that same grammar (as the next requests with this
 *           schema, served from the compiled-grammar cache): states repeat, masks come from
 *           the per-state cache.
 * Each grammar is compiled (schema -> GBNF -> rules) and prepared for the vocabulary
 * (slm_grammar_prepare: the per-position token tables) before its phase; both costs are
 * printed apart. A step's time is the thread CPU time of one slm_grammar_matcher_mask call
 * (the build machine is shared); printed as mean / p50 / p99 / max per phase. Not a test:
 * run by hand (docs/benchmarks.md, "Structured output").
 *   usage: bench_grammar VOCAB.gguf [n_docs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "slmesh/grammar.h"
#include "tokenizer/tokenizer.h"

#define DEFAULT_DOCS 20   /* documents per phase */
#define MAX_STEPS 100000  /* steps recorded per phase */
#define DOC_CAP 4096      /* bytes of one document */

static const char schema[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":40},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"intent\":{\"enum\":[\"refund\",\"cancel\",\"upgrade\",\"complaint\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":5},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"}},"
    "\"required\":[\"city\"]},"
    "\"score\":{\"type\":\"number\"},\"active\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"intent\"]}";

static const char *const names[] = {"Ada Lovelace", "Grace Hopper", "Émile Zola", "李小龍", "Søren Kierkegaard"};
static const char *const cities[] = {"Paris", "Zürich", "New York", "東京", "São Paulo"};
static const char *const intents[] = {"refund", "cancel", "upgrade", "complaint"};
static const char *const tags[] = {"billing", "urgent", "vip", "follow-up", "email \"quoted\""};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static size_t piece_fn(void *user, int32_t id, char *buf, size_t cap) { return slm_tok_piece(user, id, 0, buf, cap); }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void make_doc(int i, char *out, size_t cap) {
    snprintf(out, cap,
             "{\"name\": \"%s\", \"age\": %d, \"email\": \"user%d@example.com\", \"intent\": \"%s\", "
             "\"tags\": [\"%s\", \"%s\"], \"address\": {\"street\": \"%d Main St\", \"city\": \"%s\"}, "
             "\"score\": %d.%d, \"active\": %s}",
             names[i % 5], 18 + i * 7 % 80, i, intents[i % 4], tags[i % 5] , tags[(i + 2) % 5], 10 + i, cities[(i * 3) % 5],
             i % 10, i * 37 % 100, i % 2 ? "true" : "false");
    /* escape the quoted tag for JSON */
    char *q = strstr(out, "email \"quoted\"");
    if (q) memcpy(q, "email 'quoted'", 14);
}

/* Run n_docs documents through a matcher of g; record per-step mask times. */
static int run_phase(const char *label, slm_grammar *g, const slm_grammar_vocab *v, const slm_tokenizer *t, int n_docs,
                     int doc0, double *times) {
    const int32_t n_vocab = slm_tok_n_vocab(t);
    const size_t words = ((size_t)n_vocab + 31) / 32;
    uint32_t *mask = malloc(words * sizeof *mask);
    int32_t *ids = malloc(DOC_CAP * sizeof *ids);
    char doc[DOC_CAP], err[SLM_ERR_LEN], piece[1024];
    size_t n_steps = 0;
    for (int d = 0; d < n_docs; d++) {
        make_doc(doc0 + d, doc, sizeof doc);
        size_t n_ids = 0;
        if (slm_tok_encode(t, doc, strlen(doc), 0, ids, DOC_CAP, &n_ids, err)) {
            fprintf(stderr, "encode: %s\n", err);
            return 1;
        }
        slm_grammar_matcher *m;
        if (slm_grammar_matcher_create(g, v, &m, err)) {
            fprintf(stderr, "matcher: %s\n", err);
            return 1;
        }
        for (size_t i = 0; i < n_ids && n_steps < MAX_STEPS; i++) {
            memset(mask, 0, words * sizeof *mask);
            const double t0 = now_us();
            slm_status st = slm_grammar_matcher_mask(m, mask, words, err);
            times[n_steps++] = now_us() - t0;
            if (st) {
                fprintf(stderr, "mask: %s\n", err);
                return 1;
            }
            if (!(mask[ids[i] >> 5] >> (ids[i] & 31) & 1)) {
                fprintf(stderr, "%s: token %d of document %d not allowed by the mask\n", label, ids[i], doc0 + d);
                return 1;
            }
            size_t n = slm_tok_piece(t, ids[i], 0, piece, sizeof piece);
            if (slm_grammar_matcher_accept(m, piece, n, err)) {
                fprintf(stderr, "accept: %s\n", err);
                return 1;
            }
        }
        if (!slm_grammar_matcher_complete(m)) {
            fprintf(stderr, "%s: document %d incomplete\n", label, doc0 + d);
            return 1;
        }
        slm_grammar_matcher_destroy(m);
    }
    double sum = 0;
    for (size_t i = 0; i < n_steps; i++) sum += times[i];
    qsort(times, n_steps, sizeof *times, cmp_d);
    printf("%-6s %6zu steps  mean %8.2f us  p50 %7.2f us  p99 %8.2f us  max %8.1f us\n", label, n_steps,
           sum / (double)n_steps, times[n_steps / 2], times[n_steps * 99 / 100], times[n_steps - 1]);
    free(mask);
    free(ids);
    return 0;
}

/* Compile the schema and prepare it for v, printing both times; 0 on success. */
static int compile_for(const slm_grammar_vocab *v, slm_grammar **out) {
    char err[SLM_ERR_LEN];
    const double t0 = now_us();
    if (slm_grammar_from_json_schema(schema, sizeof schema - 1, out, err)) {
        fprintf(stderr, "schema: %s\n", err);
        return 1;
    }
    const double t1 = now_us();
    if (slm_grammar_prepare(*out, v, err)) {
        fprintf(stderr, "prepare: %s\n", err);
        return 1;
    }
    const double t2 = now_us();
    printf("schema compile %.2f ms; position tables %.1f ms\n", (t1 - t0) / 1e3, (t2 - t1) / 1e3);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_grammar VOCAB.gguf [n_docs]\n");
        return 2;
    }
    const int n_docs = argc > 2 ? atoi(argv[2]) : DEFAULT_DOCS;
    char err[SLM_ERR_LEN];
    slm_gguf *gg;
    slm_tokenizer *t;
    if (slm_gguf_open(argv[1], NULL, &gg, err) || slm_tok_create(gg, &t, err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }
    double t0 = now_us();
    slm_grammar_vocab *v;
    if (slm_grammar_vocab_create(slm_tok_n_vocab(t), piece_fn, t, &v, err)) {
        fprintf(stderr, "vocab: %s\n", err);
        return 1;
    }
    double t1 = now_us();
    printf("%s: %d tokens; trie %.1f ms\n", argv[1], slm_tok_n_vocab(t), (t1 - t0) / 1e3);
    double *times = malloc(MAX_STEPS * sizeof *times);
    slm_grammar *first = NULL, *g = NULL;
    int rc = compile_for(v, &first) || compile_for(v, &g);
    if (!rc) rc = run_phase("first", first, v, t, 1, 0, times);
    if (!rc) rc = run_phase("cold", g, v, t, n_docs, 0, times);
    if (!rc) rc = run_phase("warm", g, v, t, n_docs, n_docs, times);
    free(times);
    slm_grammar_release(first);
    slm_grammar_release(g);
    slm_grammar_vocab_destroy(v);
    slm_tok_destroy(t);
    slm_gguf_close(gg);
    return rc;
}
