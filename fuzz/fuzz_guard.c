/*
 * fuzz/fuzz_guard.c: libFuzzer target for the detectors, the operators and the vault.
 *
 * Input: arbitrary bytes as text. Checks: detection never crashes; invalid UTF-8 is rejected
 * with SLM_ERR_UTF8 and nothing else; findings are sorted, disjoint, inside the text, on
 * character boundaries, with character offsets that match the bytes; every operator
 * produces valid UTF-8; pseudonyms restore to the original text when the text contains no
 * '<' of its own. Uses models/pii-tagger.bin when run from the repository root.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "slmesh/guard.h"

static slm_guard *guard; /* created once; read-only afterwards */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    slm_guard_opts o;
    char err[SLM_ERR_LEN];
    slm_guard_opts_default(&o);
    o.tagger_path = "models/pii-tagger.bin";
    if (slm_guard_create(&o, &guard, err) != SLM_OK) {
        o.tagger_path = NULL;
        if (slm_guard_create(&o, &guard, err) != SLM_OK) abort();
    }
    return 0;
}

static size_t chars_before(const char *s, size_t at) {
    size_t c = 0;
    for (size_t i = 0; i < at; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    slm_pii_finding *f = NULL;
    size_t n = 0;
    char err[SLM_ERR_LEN];
    bool valid = slm_guard_utf8_check(text, size) == size;
    slm_status st = slm_guard_detect(guard, text, size, &f, &n, err);
    if (!valid) {
        if (st != SLM_ERR_UTF8) abort();
        return 0;
    }
    if (st == SLM_ERR_LIMIT) return 0;
    if (st != SLM_OK) abort();
    for (size_t i = 0; i < n; i++) {
        if (f[i].start >= f[i].end || f[i].end > size) abort();
        if (i && f[i].start < f[i - 1].end) abort();
        if (f[i].start < size && ((unsigned char)text[f[i].start] & 0xC0) == 0x80) abort();
        if (f[i].end < size && ((unsigned char)text[f[i].end] & 0xC0) == 0x80) abort();
        if (f[i].cstart != chars_before(text, f[i].start) || f[i].cend != chars_before(text, f[i].end)) abort();
        if (!(f[i].score >= 0.0f && f[i].score <= 1.0f)) abort();
    }
    for (int op = 0; op < SLM_REDACT_OP_COUNT; op++) {
        slm_redact_opts o;
        slm_vault *v = NULL;
        char *out = NULL, *back = NULL;
        size_t len = 0, blen = 0;
        slm_redact_opts_default(&o);
        slm_redact_opts_all(&o, (slm_redact_op)op);
        o.mask_keep = size ? data[0] % 8 : 4;
        if (slm_vault_create(&v, err) != SLM_OK) abort();
        if (slm_guard_redact(text, size, f, n, &o, v, &out, &len, err) != SLM_OK) abort();
        if (slm_guard_utf8_check(out, len) != len) abort();
        if (op == SLM_REDACT_PSEUDO && !memchr(text, '<', size)) {
            if (slm_vault_restore(v, out, len, &back, &blen, err) != SLM_OK) abort();
            if (blen != size || memcmp(back, text, size)) abort();
        }
        slm_free(back);
        slm_free(out);
        slm_vault_destroy(v);
    }
    slm_free(f);
    return 0;
}
