/*
 * fuzz/fuzz_gbnf.c: libFuzzer target for the GBNF parser/compiler and the regex front end
 * (src/grammar), and the automaton they produce.
 *
 * Input: byte 0 selects the front end (even: GBNF, odd: regex); then the grammar text up to
 * the first NUL; the rest is text fed to a matcher in pieces of 1..4 bytes, with a token
 * mask over a small byte vocabulary after each piece. Checked: compile errors carry a
 * detail; a mask bit is set exactly when accepting that token would succeed (brute force
 * on a second matcher); a rejected piece leaves the matcher usable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slmesh/grammar.h"

#define MAX_TEXT 64 /* bytes of text fed per input: enough to reach deep states */

static const char *const vocab[] = {"a", "b", "0", "9", "\"", "{", "}", "[", "]", ",", ":", " ", "\n", "\\",
                                    "\xc3", "\xa9", "\xc3\xa9", "\xe4\xb8\x96", "ab", "\":", "null", "-1", "x"};
#define N_VOCAB ((int32_t)(sizeof vocab / sizeof vocab[0]))

static size_t piece(void *user, int32_t id, char *buf, size_t cap) {
    (void)user;
    size_t n = strlen(vocab[id]);
    memcpy(buf, vocab[id], n < cap ? n : cap);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const bool regex = data[0] & 1;
    const char *src = (const char *)data + 1;
    const char *nul = memchr(src, 0, size - 1);
    const size_t src_len = nul ? (size_t)(nul - src) : size - 1;
    const char *text = nul ? nul + 1 : NULL;
    size_t text_len = nul ? size - 1 - src_len - 1 : 0;
    if (text_len > MAX_TEXT) text_len = MAX_TEXT;
    char err[SLM_ERR_LEN] = "";
    slm_grammar *g = NULL;
    slm_status st = regex ? slm_grammar_from_regex(src, src_len, &g, err) : slm_grammar_from_gbnf(src, src_len, &g, err);
    if (st != SLM_OK) {
        if (g || !err[0]) abort();
        return 0;
    }
    slm_grammar_vocab *v = NULL;
    slm_grammar_matcher *m = NULL;
    if (slm_grammar_vocab_create(N_VOCAB, piece, NULL, &v, err) || slm_grammar_matcher_create(g, v, &m, err)) goto done;
    for (size_t i = 0; i < text_len;) {
        size_t k = 1 + (size_t)(text[i] & 3);
        if (k > text_len - i) k = text_len - i;
        uint32_t mask[1] = {0};
        if (slm_grammar_matcher_mask(m, mask, 1, err) != SLM_OK) break;
        for (int32_t id = 0; id < N_VOCAB; id++) { /* brute force: replay and try the token */
            slm_grammar_matcher *t;
            if (slm_grammar_matcher_create(g, NULL, &t, err)) goto done;
            bool ok = slm_grammar_matcher_accept(t, text, i, err) == SLM_OK &&
                      slm_grammar_matcher_accept(t, vocab[id], strlen(vocab[id]), err) == SLM_OK;
            slm_grammar_matcher_destroy(t);
            if (ok != (bool)(mask[0] >> id & 1)) abort();
        }
        if (slm_grammar_matcher_accept(m, text + i, k, err) != SLM_OK) break;
        i += k;
    }
done:
    slm_grammar_matcher_destroy(m);
    slm_grammar_vocab_destroy(v);
    slm_grammar_release(g);
    return 0;
}
