/*
 * fuzz/fuzz_gguf.c: libFuzzer target for the GGUF reader (and, through it, the writer).
 *
 * Each input is opened with slm_gguf_open_memory over a copy of exactly its length (so an
 * over-read is an ASan report). When it opens, every accessor is walked: all pairs (key,
 * type, lookup, printing, every typed getter, every array element), all tensors (lookup by
 * name, element count, first and last data byte). Then the file is copied pair by pair and
 * tensor by tensor through the writer and read back: a file the reader accepted must
 * re-encode into one it accepts again, with the same counts, or the target aborts.
 *
 * Seeds: fuzz/seeds/fuzz_gguf/ (written by the writer; see tests/test_gguf.c,
 * test_fuzz_seeds, to regenerate them).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"

/* Fold bytes into a sink the optimizer cannot drop. */
static volatile unsigned sink;

static void walk_arrays(const slm_gguf *g, int64_t i, const char *key) {
    slm_gguf_vtype et;
    uint64_t n;
    if (slm_gguf_get_arr(g, key, &et, &n, NULL) != SLM_OK) return;
    sink += slm_gguf_arr_data(g, i) != NULL;
    for (uint64_t j = 0; j <= n; j++) { /* one past the end: must be a neutral answer */
        slm_gguf_str s = slm_gguf_arr_str(g, i, j);
        if (s.len) sink += (unsigned char)s.ptr[0] + (unsigned char)s.ptr[s.len - 1];
        sink += (unsigned)slm_gguf_arr_i64(g, i, j);
        sink += (unsigned)(slm_gguf_arr_f64(g, i, j) != 0.0);
    }
}

static void walk_kvs(const slm_gguf *g) {
    char buf[96], tiny[4], err[SLM_ERR_LEN];
    for (int64_t i = -1; i <= slm_gguf_n_kv(g); i++) {
        const char *key = slm_gguf_key(g, i);
        sink += (unsigned)slm_gguf_kv_type(g, i);
        slm_gguf_value_str(g, i, buf, sizeof buf);
        slm_gguf_value_str(g, i, tiny, sizeof tiny);
        sink += (unsigned)strlen(buf) + (unsigned)strlen(tiny);
        if (!key) continue;
        if (slm_gguf_find_key(g, key) != i) abort();
        uint32_t u;
        int64_t v;
        float f;
        bool b;
        slm_gguf_str s;
        sink += slm_gguf_get_u32(g, key, &u, err) + slm_gguf_get_i64(g, key, &v, err);
        sink += slm_gguf_get_f32(g, key, &f, err) + slm_gguf_get_bool(g, key, &b, err);
        if (slm_gguf_get_str(g, key, &s, err) == SLM_OK && s.len) sink += (unsigned char)s.ptr[s.len - 1];
        walk_arrays(g, i, key);
    }
}

static void walk_tensors(const slm_gguf *g) {
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        if (!t || slm_gguf_find_tensor(g, t->name) != t) abort();
        sink += (unsigned)slm_gguf_tensor_nelements(t);
        if (t->size) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->size - 1];
    }
    if (slm_gguf_tensor_at(g, slm_gguf_n_tensors(g)) || slm_gguf_find_tensor(g, "")) sink++;
}

/* Copy g through the writer and read it back; abort if the copy is not accepted. */
static void rewrite_and_reopen(const slm_gguf *g) {
    slm_gguf_writer *w = NULL;
    slm_gguf *g2 = NULL;
    void *mem = NULL;
    size_t size = 0;
    char err[SLM_ERR_LEN];
    slm_status st = slm_gguf_writer_create(&w);
    if (!st) st = slm_gguf_writer_copy_kv(w, g, NULL, NULL);
    for (int64_t i = 0; !st && i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        st = slm_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, err);
    }
    if (!st) st = slm_gguf_writer_to_memory(w, &mem, &size, err);
    if (!st) st = slm_gguf_open_memory(mem, size, &g2, err);
    if (st) abort(); /* an accepted file must survive a round trip */
    if (slm_gguf_n_kv(g2) != slm_gguf_n_kv(g) || slm_gguf_n_tensors(g2) != slm_gguf_n_tensors(g)) abort();
    slm_gguf_close(g2);
    slm_free(mem);
    slm_gguf_writer_destroy(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: over-reads are reported */
    slm_gguf *g = NULL;
    char err[SLM_ERR_LEN];
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    if (slm_gguf_open_memory(copy, size, &g, err) == SLM_OK) {
        walk_kvs(g);
        walk_tensors(g);
        rewrite_and_reopen(g);
        slm_gguf_close(g);
    }
    free(copy);
    return 0;
}
