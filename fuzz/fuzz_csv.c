/*
 * fuzz/fuzz_csv.c: libFuzzer target for the task heads' CSV reader (src/head/csv.c).
 *
 * Each input is parsed three ways: in one piece, split at a point chosen by its first byte,
 * and byte by byte. The three must give the same status and the same records (count and a
 * hash of every field), or the target aborts: the reader's result must not depend on how
 * input arrives. The callback also checks that each field is NUL-terminated at its length.
 *
 * Seeds: fuzz/seeds/fuzz_csv/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "head/csv.h"

typedef struct {
    uint64_t hash;   /* FNV-1a over every field and record boundary */
    size_t records;  /* records seen */
} csv_digest;

static slm_status on_record(void *ctx, size_t nfields, const char *const *fields, const size_t *lens,
                            size_t line, char *err) {
    csv_digest *d = ctx;
    (void)err;
    for (size_t i = 0; i < nfields; i++) {
        if (fields[i][lens[i]] != '\0') abort();
        for (size_t j = 0; j < lens[i]; j++) d->hash = (d->hash ^ (unsigned char)fields[i][j]) * 0x100000001b3ull;
        d->hash = (d->hash ^ 0x100) * 0x100000001b3ull;
    }
    d->hash = (d->hash ^ (0x200 + line)) * 0x100000001b3ull;
    d->records++;
    return SLM_OK;
}

/* Parse data in pieces of `step` bytes after a first piece of `first` bytes. */
static slm_status parse(const uint8_t *data, size_t size, size_t first, size_t step, csv_digest *d) {
    slm_csv *r = NULL;
    char err[SLM_ERR_LEN];
    memset(d, 0, sizeof *d);
    d->hash = 0xcbf29ce484222325ull;
    slm_status st = slm_head_csv_create(&r, on_record, d, err);
    if (st != SLM_OK) return st;
    size_t off = first < size ? first : size;
    st = slm_head_csv_feed(r, (const char *)data, off, err);
    while (st == SLM_OK && off < size) {
        size_t n = size - off < step ? size - off : step;
        st = slm_head_csv_feed(r, (const char *)data + off, n, err);
        off += n;
    }
    if (st == SLM_OK) st = slm_head_csv_finish(r, err);
    slm_head_csv_destroy(r);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    csv_digest a, b, c;
    slm_status sa = parse(data, size, size, 1, &a);
    slm_status sb = parse(data, size, size ? data[0] % (size + 1) : 0, size ? size : 1, &b);
    slm_status sc = parse(data, size, 0, 1, &c);
    if (sa != sb || sa != sc) abort();
    if (sa == SLM_OK && (a.records != b.records || a.records != c.records || a.hash != b.hash || a.hash != c.hash))
        abort();
    return 0;
}
