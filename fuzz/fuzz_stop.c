/*
 * fuzz/fuzz_stop.c: libFuzzer target for the stop-string detector (src/sample/stop.c).
 *
 * Input: byte 0 = number of stop strings (mod 4) and byte 1 = a seed for the piece sizes;
 * then the stop strings, each ended by a 0xFF byte; the rest is the generated text. The text
 * is fed in pieces of 1..8 bytes chosen by the seed. Checked against a naive model:
 *  - everything released is a prefix of the text fed so far;
 *  - the match is reported at the first piece end where some stop string occurs entirely
 *    in the text so far, at its earliest position (ties: the first listed), and the
 *    released text is exactly the text before it;
 *  - without a match, the releases plus the flush are the whole text.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sample.h"

#define MAX_STOPS 3 /* stop strings per input (mod 4) */

/* Earliest occurrence of any stop within text[0..len): position, and *which; len if none. */
static size_t naive_first(const char *text, size_t len, char **stops, const size_t *lens, size_t n, int32_t *which) {
    size_t best = len;
    for (size_t s = 0; s < n; s++) {
        for (size_t i = 0; i + lens[s] <= len && i < best; i++) {
            if (memcmp(text + i, stops[s], lens[s]) == 0) {
                best = i;
                *which = (int32_t)s;
                break;
            }
        }
    }
    return best;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t n = data[0] % (MAX_STOPS + 1);
    uint32_t seed = data[1];
    size_t at = 2;
    char *stops[MAX_STOPS] = {0};
    size_t lens[MAX_STOPS] = {0};
    size_t got = 0;
    while (got < n && at < size) {
        const uint8_t *end = memchr(data + at, 0xFF, size - at);
        size_t l = end ? (size_t)(end - (data + at)) : size - at;
        if (l == 0 || l > SLM_SAMPLE_STOP_MAX_LEN || memchr(data + at, 0, l)) break;
        stops[got] = malloc(l + 1);
        if (!stops[got]) abort();
        memcpy(stops[got], data + at, l);
        stops[got][l] = '\0';
        lens[got++] = l;
        at += l + (end ? 1 : 0);
    }
    const char *text = (const char *)data + at;
    const size_t len = size - at;

    slm_sample_stop *d = NULL;
    if (slm_sample_stop_create((const char *const *)stops, got, &d, NULL) != SLM_OK) abort();
    char *out = malloc(len + 1);
    if (!out) abort();
    size_t out_len = 0, fed = 0;
    int32_t matched = -1;
    while (fed < len && matched < 0) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 8;
        if (piece > len - fed) piece = len - fed;
        slm_sample_stop_out o;
        if (slm_sample_stop_feed(d, text + fed, piece, &o, NULL) != SLM_OK) abort();
        fed += piece;
        if (out_len + o.len > fed) abort();
        memcpy(out + out_len, o.text ? o.text : "", o.len);
        out_len += o.len;
        if (memcmp(out, text, out_len) != 0) abort();
        int32_t which = -1;
        size_t first = naive_first(text, fed, stops, lens, got, &which);
        if ((first < fed) != (o.matched >= 0)) abort();
        if (o.matched >= 0 && (o.matched != which || out_len != first)) abort();
        matched = o.matched;
    }
    if (matched < 0) {
        slm_sample_stop_out o;
        slm_sample_stop_flush(d, &o);
        memcpy(out + out_len, o.text ? o.text : "", o.len);
        out_len += o.len;
        if (out_len != len || memcmp(out, text, len) != 0) abort();
    }
    free(out);
    slm_sample_stop_destroy(d);
    for (size_t i = 0; i < got; i++) free(stops[i]);
    return 0;
}
