/*
 * fuzz/fuzz_json_schema.c: libFuzzer target for the JSON Schema front end
 * (src/grammar/schema.c): any input either compiles into a grammar whose GBNF compiles
 * again on its own, or fails with a detail; a compiled grammar then takes the rest of the
 * input (after the first NUL) as generated text without crashing, and anything it
 * accepts as complete must parse as JSON. Along the text (fed in pieces of 1..4 bytes), the
 * token mask from the position tables must equal the full trie walk's over a small JSON-ish
 * vocabulary.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_int.h"
#include "slmesh/grammar.h"

#define MAX_STEPS 48 /* mask comparisons per input */

static const char *const vocab[] = {"{", "}", "\"", "\":", "\",", " \"", "\"}", "a", "ab", "Z", "1", "12", "0", "-",
                                    ".", "e", "+", "true", "null", "fal", "[", "]", ",", " ", "\n", "  ", "\\", "u",
                                    "00", "\xc3", "\xa9", "\xc3\xa9", "@", "x.y", ":", "T", "Z\"", "2024-", "\\u00"};
#define N_VOCAB ((int32_t)(sizeof vocab / sizeof vocab[0]))

static size_t piece(void *user, int32_t id, char *buf, size_t cap) {
    (void)user;
    size_t n = strlen(vocab[id]);
    memcpy(buf, vocab[id], n < cap ? n : cap);
    return n;
}

/* Tables against the walk along text[0..n). */
static void check_masks(slm_grammar *g, const char *text, size_t n) {
    char err[SLM_ERR_LEN];
    slm_grammar_vocab *v = NULL;
    slm_grammar_matcher *m = NULL;
    if (slm_grammar_vocab_create(N_VOCAB, piece, NULL, &v, err) || slm_grammar_matcher_create(g, v, &m, err)) goto done;
    for (size_t i = 0, steps = 0; steps < MAX_STEPS; steps++) {
        uint32_t a[2] = {0, 0}, b[2] = {0, 0};
        if (slm_grammar_matcher_mask(m, a, 2, err) != SLM_OK || slm_grammar_matcher_mask_walk(m, b, 2, err) != SLM_OK) break;
        if (a[0] != b[0] || a[1] != b[1]) abort();
        if (i >= n) break;
        size_t k = 1 + (size_t)(text[i] & 3);
        if (k > n - i) k = n - i;
        if (slm_grammar_matcher_accept(m, text + i, k, err) != SLM_OK) break;
        i += k;
    }
done:
    slm_grammar_matcher_destroy(m);
    slm_grammar_vocab_destroy(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const char *nul = memchr(src, 0, size);
    const size_t src_len = nul ? (size_t)(nul - src) : size;
    char err[SLM_ERR_LEN] = "";
    slm_grammar *g = NULL;
    if (slm_grammar_from_json_schema(src, src_len, &g, err) != SLM_OK) {
        if (g || !err[0]) abort();
        return 0;
    }
    const char *gbnf = slm_grammar_gbnf(g);
    slm_grammar *again = NULL;
    if (slm_grammar_from_gbnf(gbnf, strlen(gbnf), &again, err) != SLM_OK && strlen(gbnf) <= SLM_GRAMMAR_MAX_SOURCE) abort();
    slm_grammar_release(again);
    slm_grammar_matcher *m;
    if (nul && slm_grammar_matcher_create(g, NULL, &m, err) == SLM_OK) {
        const char *text = nul + 1;
        const size_t n = size - src_len - 1;
        if (slm_grammar_matcher_accept(m, text, n, err) == SLM_OK && slm_grammar_matcher_complete(m)) {
            json_error_t je;
            json_t *j = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!j) abort();
            json_decref(j);
        }
        slm_grammar_matcher_destroy(m);
        check_masks(g, text, n);
    }
    slm_grammar_release(g);
    return 0;
}
