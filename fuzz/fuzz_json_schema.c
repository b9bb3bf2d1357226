/*
 * fuzz/fuzz_json_schema.c: libFuzzer target for the JSON Schema front end
 * (src/grammar/schema.c): any input either compiles into a grammar whose GBNF compiles
 * again on its own, or fails with a detail; a compiled grammar then takes the rest of the
 * input (after the first NUL) as generated text without crashing, and anything it
 * accepts as complete must parse as JSON.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slmesh/grammar.h"

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
    }
    slm_grammar_release(g);
    return 0;
}
