/*
 * tests/test_gguf.c: the GGUF reader against real files (every model in shared/), every
 * truncation and byte corruption of a real header, and hand-made hostile files, one per
 * rule the reader enforces. Hostile inputs run through slm_gguf_open_memory over buffers
 * of exactly their length, so an over-read is an ASan error, not a silent pass.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"

/* ---- helpers: walking every accessor ------------------------------------------------------- */

/* Touch everything an open file exposes; under ASan an out-of-bounds view fails here. */
static void walk_all(const slm_gguf *g) {
    char buf[128];
    unsigned sum = 0;
    for (int64_t i = 0; i < slm_gguf_n_kv(g); i++) {
        const char *key = slm_gguf_key(g, i);
        assert_non_null(key);
        assert_int_equal(slm_gguf_find_key(g, key), i);
        slm_gguf_value_str(g, i, buf, sizeof buf);
        assert_true(strlen(buf) < sizeof buf);
        slm_gguf_vtype et;
        uint64_t n;
        if (slm_gguf_get_arr(g, key, &et, &n, NULL) != SLM_OK) continue;
        for (uint64_t j = 0; j < n; j++) {
            slm_gguf_str s = slm_gguf_arr_str(g, i, j);
            for (uint64_t k = 0; k < s.len; k++) sum += (unsigned char)s.ptr[k];
            sum += (unsigned)slm_gguf_arr_i64(g, i, j);
            sum += (unsigned)slm_gguf_arr_f64(g, i, j);
        }
    }
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_ptr_equal(slm_gguf_find_tensor(g, t->name), t);
        assert_true(slm_gguf_tensor_nelements(t) >= 0);
        if (t->size) sum += ((const unsigned char *)t->data)[0] + ((const unsigned char *)t->data)[t->size - 1];
    }
    assert_null(slm_gguf_tensor_at(g, -1));
    assert_null(slm_gguf_tensor_at(g, slm_gguf_n_tensors(g)));
    assert_null(slm_gguf_key(g, slm_gguf_n_kv(g)));
    (void)sum;
}

/* Open n bytes from a private buffer of exactly n bytes; walks the result when OK. */
static slm_status open_exact(const void *data, size_t n, char *err) {
    void *copy = malloc(n ? n : 1);
    slm_gguf *g = NULL;
    assert_non_null(copy);
    memcpy(copy, data, n);
    slm_status st = slm_gguf_open_memory(copy, n, &g, err);
    if (st == SLM_OK) walk_all(g);
    else assert_null(g);
    slm_gguf_close(g);
    free(copy);
    return st;
}

/* ---- real files ------------------------------------------------------------------------------ */

static int open_dir_all(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int count = 0;
    assert_non_null(d);
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        char path[4096], err[SLM_ERR_LEN] = "";
        slm_gguf *g = NULL;
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        slm_status st = slm_gguf_open(path, NULL, &g, err);
        if (st != SLM_OK) fprintf(stderr, "%s: %s\n", path, err);
        assert_int_equal(st, SLM_OK);
        assert_int_equal(slm_gguf_version(g), 3);
        assert_true(slm_gguf_find_key(g, "general.architecture") >= 0 || slm_gguf_n_tensors(g) == 0);
        walk_all(g);
        slm_gguf_close(g);
        count++;
    }
    closedir(d);
    return count;
}

static void test_open_every_shared_model(void **state) {
    (void)state;
    char dir[4096];
    TU_SHARED_OR_SKIP(dir, "models");
    int n = open_dir_all(dir);
    TU_SHARED_OR_SKIP(dir, "models/tiny");
    n += open_dir_all(dir);
    TU_SHARED_OR_SKIP(dir, "models/vocab");
    n += open_dir_all(dir);
    assert_true(n >= 3);
}

static void check_stories(const slm_gguf *g) {
    char err[SLM_ERR_LEN];
    slm_gguf_str s;
    uint32_t u;
    int64_t i64;
    float f;
    slm_gguf_vtype et;
    uint64_t n;

    assert_int_equal(slm_gguf_get_str(g, "general.architecture", &s, err), SLM_OK);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(slm_gguf_get_u32(g, "llama.block_count", &u, err), SLM_OK);
    assert_int_equal(u, 5);
    assert_int_equal(slm_gguf_get_i64(g, "llama.embedding_length", &i64, err), SLM_OK);
    assert_int_equal(i64, 64);
    assert_int_equal(slm_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, err), SLM_OK);
    assert_true(f > 0.99e-5f && f < 1.01e-5f);
    /* u32 0xFFFFFFFF: fits i64 and u32. */
    assert_int_equal(slm_gguf_get_i64(g, "tokenizer.ggml.padding_token_id", &i64, err), SLM_OK);
    assert_int_equal(i64, 4294967295LL);

    /* Wrong type and missing key. */
    assert_int_equal(slm_gguf_get_u32(g, "general.architecture", &u, err), SLM_ERR_CORRUPT);
    assert_non_null(strstr(err, "general.architecture"));
    assert_int_equal(slm_gguf_get_f32(g, "llama.block_count", &f, NULL), SLM_ERR_CORRUPT);
    assert_int_equal(slm_gguf_get_bool(g, "llama.block_count", NULL, NULL), SLM_ERR_CORRUPT);
    assert_int_equal(slm_gguf_get_str(g, "no.such.key", &s, err), SLM_ERR_NOT_FOUND);
    assert_int_equal(slm_gguf_find_key(g, "no.such.key"), -1);

    /* Vocabulary: 512 strings, scores and types, O(1) access. */
    assert_int_equal(slm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, err), SLM_OK);
    assert_int_equal(et, SLM_GGUF_STRING);
    assert_int_equal(n, 512);
    int64_t ki = slm_gguf_find_key(g, "tokenizer.ggml.tokens");
    s = slm_gguf_arr_str(g, ki, 1);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "<s>", 3);
    s = slm_gguf_arr_str(g, ki, 512); /* out of range */
    assert_null(s.ptr);
    assert_int_equal(slm_gguf_arr_i64(g, ki, 0), 0); /* strings are not numbers */
    int64_t ti = slm_gguf_find_key(g, "tokenizer.ggml.token_type");
    assert_int_equal(slm_gguf_arr_i64(g, ti, 1), 3); /* <s> is a control token */
    assert_true(slm_gguf_arr_f64(g, ti, 1) == 3.0);
    assert_int_equal(slm_gguf_get_arr(g, "general.architecture", &et, &n, NULL), SLM_ERR_CORRUPT);

    /* Tensors. */
    assert_int_equal(slm_gguf_n_tensors(g), 48);
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, SLM_TYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->size, 64 * 512 * 4);
    assert_int_equal(slm_gguf_tensor_nelements(t), 64 * 512);
    assert_int_equal(t->offset % 32, 0);
    assert_int_equal((uintptr_t)t->data % 32, 0); /* mapped or read: aligned like the file */
    assert_null(slm_gguf_find_tensor(g, "token_embd"));
    assert_null(slm_gguf_find_tensor(g, NULL));
    assert_int_equal(slm_gguf_alignment(g), 32);
    assert_int_equal(slm_gguf_file_size(g), 1185376);
    assert_int_equal(slm_gguf_data_offset(g), 14176);
}

static void test_stories_facts(void **state) {
    (void)state;
    char path[4096], err[SLM_ERR_LEN];
    slm_gguf *g = NULL;
    TU_SHARED_OR_SKIP(path, "models/stories260K.gguf");
    assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);
    check_stories(g);
    slm_gguf_close(g);

    slm_gguf_open_opts opts = {.no_mmap = true, .mlock = true};
    assert_int_equal(slm_gguf_open(path, &opts, &g, err), SLM_OK);
    check_stories(g);
    slm_gguf_close(g);
}

static void test_open_errors(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    slm_gguf *g = (slm_gguf *)1;
    assert_int_equal(slm_gguf_open("/nonexistent/x.gguf", NULL, &g, err), SLM_ERR_IO);
    assert_null(g);
    assert_non_null(strstr(err, "/nonexistent/x.gguf"));
    assert_int_equal(slm_gguf_open("/", NULL, &g, err), SLM_ERR_IO);
    assert_int_equal(slm_gguf_open_memory(NULL, 0, &g, err), SLM_ERR_CORRUPT);
    assert_int_equal(slm_gguf_open_memory(NULL, 5, &g, err), SLM_ERR_INVALID_ARG);
    char *empty = tu_write_temp("", 0, ".gguf");
    assert_non_null(empty);
    assert_int_equal(slm_gguf_open(empty, NULL, &g, err), SLM_ERR_CORRUPT);
    unlink(empty);
    free(empty);
    slm_gguf_close(NULL);
}

/* ---- truncation and corruption of a real file ------------------------------------------------ */

static void test_truncations(void **state) {
    (void)state;
    char path[4096], err[SLM_ERR_LEN];
    size_t len;
    slm_gguf *g = NULL;
    TU_SHARED_OR_SKIP(path, "models/stories260K.gguf");
    char *file = tu_read_file(path, &len);
    assert_non_null(file);
    assert_int_equal(slm_gguf_open_memory(file, len, &g, err), SLM_OK);
    size_t header = slm_gguf_data_offset(g);
    slm_gguf_close(g);
    /* The last tensor ends at the end of this file, so every proper prefix is invalid. */
    for (size_t n = 0; n < header; n++) assert_int_not_equal(open_exact(file, n, err), SLM_OK);
    for (size_t n = header; n < len; n += 8191) assert_int_not_equal(open_exact(file, n, err), SLM_OK);
    assert_int_equal(open_exact(file, len - 1, err), SLM_ERR_CORRUPT);
    assert_non_null(strstr(err, "extends past end of file"));
    assert_int_equal(open_exact(file, 100, err), SLM_ERR_CORRUPT);
    free(file);
}

/* Header bytes set to hostile values: any status is fine, a crash or over-read is not.
 * The buffer is the whole file, so accepted variants are walked over real tensor data.
 * Every byte of the start (counts, first pairs) and of the end of the header region (the
 * 48 tensor infos) is tried; the vocabulary in between with a stride, to stay fast under
 * ASan (each open there costs ~0.15 ms). */
#define CORRUPT_HEAD 1024   /* leading bytes tried one by one */
#define CORRUPT_TAIL 2560   /* trailing bytes of the header region tried one by one */
#define CORRUPT_STRIDE 31   /* stride through the middle */

static void test_header_corruption(void **state) {
    (void)state;
    static const uint8_t hostile[] = {0x00, 0xFF, 0x7F, 0x80};
    char path[4096];
    size_t len;
    slm_gguf *g = NULL;
    TU_SHARED_OR_SKIP(path, "models/stories260K.gguf");
    uint8_t *file = (uint8_t *)tu_read_file(path, &len);
    assert_non_null(file);
    assert_int_equal(slm_gguf_open_memory(file, len, &g, NULL), SLM_OK);
    size_t header = slm_gguf_data_offset(g);
    slm_gguf_close(g);
    int ok = 0, bad = 0;
    for (size_t i = 0; i < header; i += (i < CORRUPT_HEAD || i + CORRUPT_TAIL >= header) ? 1 : CORRUPT_STRIDE) {
        uint8_t saved = file[i];
        for (size_t h = 0; h < sizeof hostile; h++) {
            file[i] = hostile[h];
            if (slm_gguf_open_memory(file, len, &g, NULL) == SLM_OK) {
                walk_all(g);
                ok++;
            } else {
                bad++;
            }
            slm_gguf_close(g);
        }
        file[i] = saved;
    }
    assert_true(ok > 0 && bad > 0); /* string bytes change nothing structural; counts do */
    free(file);
}

/* ---- hand-made files ------------------------------------------------------------------------- */

/* A growing byte buffer for building GGUF files field by field. */
typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static void tb_bytes(tb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void tb_u32(tb *b, uint32_t v) { tb_bytes(b, &v, 4); }
static void tb_u64(tb *b, uint64_t v) { tb_bytes(b, &v, 8); }
static void tb_str(tb *b, const char *s) {
    tb_u64(b, strlen(s));
    tb_bytes(b, s, strlen(s));
}
static void tb_header(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    tb_bytes(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}
static void tb_kv_u32(tb *b, const char *key, uint32_t v) {
    tb_str(b, key);
    tb_u32(b, SLM_GGUF_U32);
    tb_u32(b, v);
}
static void tb_tensor(tb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset) {
    tb_str(b, name);
    tb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) tb_u64(b, ne[i]);
    tb_u32(b, type);
    tb_u64(b, offset);
}
static void tb_pad(tb *b, size_t align) {
    static const uint8_t zero[256];
    tb_bytes(b, zero, (align - b->n % align) % align);
}
static void tb_zeros(tb *b, size_t n) {
    while (n) {
        static const uint8_t zero[256];
        size_t k = n < sizeof zero ? n : sizeof zero;
        tb_bytes(b, zero, k);
        n -= k;
    }
}

/* Open b, expect st, and (when want is not NULL) a detail containing want; frees b. */
static void expect(tb *b, slm_status st, const char *want) {
    char err[SLM_ERR_LEN] = "";
    slm_status got = open_exact(b->p, b->n, err);
    if (got != st || (want && !strstr(err, want)))
        fail_msg("expected status %d with '%s', got %d: %s", st, want ? want : "", got, err);
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void test_hostile_header(void **state) {
    (void)state;
    tb b = {0};
    tb_bytes(&b, "GGUX", 4), tb_u32(&b, 3), tb_u64(&b, 0), tb_u64(&b, 0);
    expect(&b, SLM_ERR_CORRUPT, "magic");
    tb_header(&b, 1, 0, 0);
    expect(&b, SLM_ERR_UNSUPPORTED, "version 1");
    tb_header(&b, 4, 0, 0);
    expect(&b, SLM_ERR_UNSUPPORTED, "version 4");
    tb_header(&b, 0x03000000u, 0, 0);
    expect(&b, SLM_ERR_UNSUPPORTED, "big-endian");
    tb_header(&b, 2, 0, 0);
    expect(&b, SLM_OK, NULL);
    tb_header(&b, 3, 0, (uint64_t)1 << 40);
    expect(&b, SLM_ERR_LIMIT, "key/value pairs exceed");
    tb_header(&b, 3, UINT64_MAX, 0);
    expect(&b, SLM_ERR_LIMIT, "tensors exceed");
    tb_header(&b, 3, 1000, 60000);
    expect(&b, SLM_ERR_CORRUPT, "cannot fit");
    tb_bytes(&b, "GGUF", 4);
    expect(&b, SLM_ERR_CORRUPT, "past end of file");
}

static void test_hostile_values(void **state) {
    (void)state;
    tb b = {0};
    /* Key length beyond the limit, and beyond the file. */
    tb_header(&b, 3, 0, 1), tb_u64(&b, (uint64_t)1 << 62), tb_zeros(&b, 16);
    expect(&b, SLM_ERR_LIMIT, "key length");
    tb_header(&b, 3, 0, 1), tb_u64(&b, 1000), tb_zeros(&b, 16);
    expect(&b, SLM_ERR_CORRUPT, "past end of file");
    /* Key with a NUL byte. */
    tb_header(&b, 3, 0, 1), tb_u64(&b, 3), tb_bytes(&b, "a\0b", 3), tb_u32(&b, SLM_GGUF_U8), tb_zeros(&b, 1);
    expect(&b, SLM_ERR_CORRUPT, "NUL");
    /* Unknown value type. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "k"), tb_u32(&b, 13), tb_zeros(&b, 8);
    expect(&b, SLM_ERR_CORRUPT, "key 'k': unknown value type 13");
    /* Huge string value. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "k"), tb_u32(&b, SLM_GGUF_STRING), tb_u64(&b, UINT64_MAX);
    expect(&b, SLM_ERR_LIMIT, "string value length");
    tb_header(&b, 3, 0, 1), tb_str(&b, "k"), tb_u32(&b, SLM_GGUF_STRING), tb_u64(&b, 9), tb_bytes(&b, "short", 5);
    expect(&b, SLM_ERR_CORRUPT, "past end of file");
    /* Arrays: element count overflowing the byte size, beyond the file, unknown element type. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "a"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_U64),
        tb_u64(&b, (uint64_t)1 << 61);
    expect(&b, SLM_ERR_LIMIT, "array of");
    tb_header(&b, 3, 0, 1), tb_str(&b, "a"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_U64),
        tb_u64(&b, 1 << 20), tb_zeros(&b, 64);
    expect(&b, SLM_ERR_CORRUPT, "array data");
    tb_header(&b, 3, 0, 1), tb_str(&b, "a"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_STRING),
        tb_u64(&b, 1 << 24), tb_zeros(&b, 64);
    expect(&b, SLM_ERR_CORRUPT, "strings cannot fit");
    tb_header(&b, 3, 0, 1), tb_str(&b, "a"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, 77), tb_u64(&b, 0);
    expect(&b, SLM_ERR_CORRUPT, "unknown array element type 77");
    /* String array element past the end. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "a"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_STRING),
        tb_u64(&b, 2), tb_str(&b, "x"), tb_u64(&b, 100), tb_zeros(&b, 8);
    expect(&b, SLM_ERR_CORRUPT, "array string");
    /* Duplicate key. */
    tb_header(&b, 3, 0, 2), tb_kv_u32(&b, "general.x", 1), tb_kv_u32(&b, "general.x", 2);
    expect(&b, SLM_ERR_CORRUPT, "duplicate key 'general.x'");
}

static void test_nested_arrays(void **state) {
    (void)state;
    tb b = {0};
    char err[SLM_ERR_LEN];
    slm_gguf *g = NULL;
    /* [[1, 2], []] of u8: valid, exposed as an array of arrays. */
    tb_header(&b, 3, 0, 2), tb_str(&b, "n"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_ARRAY), tb_u64(&b, 2);
    tb_u32(&b, SLM_GGUF_U8), tb_u64(&b, 2), tb_bytes(&b, "\1\2", 2);
    tb_u32(&b, SLM_GGUF_U8), tb_u64(&b, 0);
    tb_kv_u32(&b, "after", 7);
    assert_int_equal(slm_gguf_open_memory(b.p, b.n, &g, err), SLM_OK);
    slm_gguf_vtype et;
    uint64_t n;
    uint32_t v;
    assert_int_equal(slm_gguf_get_arr(g, "n", &et, &n, err), SLM_OK);
    assert_int_equal(et, SLM_GGUF_ARRAY);
    assert_int_equal(n, 2);
    assert_int_equal(slm_gguf_arr_i64(g, 0, 0), 0);
    assert_int_equal(slm_gguf_get_u32(g, "after", &v, err), SLM_OK);
    assert_int_equal(v, 7);
    walk_all(g);
    slm_gguf_close(g);
    free(b.p);
    memset(&b, 0, sizeof b);
    /* Nesting deeper than the limit. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "deep"), tb_u32(&b, SLM_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) tb_u32(&b, SLM_GGUF_ARRAY), tb_u64(&b, 1);
    tb_u32(&b, SLM_GGUF_U8), tb_u64(&b, 0);
    expect(&b, SLM_ERR_LIMIT, "nested deeper");
}

static void test_alignment_key(void **state) {
    (void)state;
    tb b = {0};
    tb_header(&b, 3, 0, 1), tb_str(&b, "general.alignment"), tb_u32(&b, SLM_GGUF_U64), tb_u64(&b, 32);
    expect(&b, SLM_ERR_CORRUPT, "expected u32");
    tb_header(&b, 3, 0, 1), tb_kv_u32(&b, "general.alignment", 0);
    expect(&b, SLM_ERR_CORRUPT, "power of two");
    tb_header(&b, 3, 0, 1), tb_kv_u32(&b, "general.alignment", 24);
    expect(&b, SLM_ERR_CORRUPT, "power of two");

    /* Alignment 64 moves the data section and the second tensor. */
    uint64_t ne[1] = {8};
    char err[SLM_ERR_LEN];
    slm_gguf *g = NULL;
    tb_header(&b, 3, 2, 1), tb_kv_u32(&b, "general.alignment", 64);
    tb_tensor(&b, "a", 1, ne, SLM_TYPE_F32, 0), tb_tensor(&b, "b", 1, ne, SLM_TYPE_F32, 64);
    tb_pad(&b, 64);
    size_t data_at = b.n;
    tb_zeros(&b, 64 + 32);
    b.p[data_at + 64] = 0xAB;
    assert_int_equal(slm_gguf_open_memory(b.p, b.n, &g, err), SLM_OK);
    assert_int_equal(slm_gguf_alignment(g), 64);
    assert_int_equal(slm_gguf_data_offset(g), data_at);
    assert_int_equal(data_at % 64, 0);
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, "b");
    assert_non_null(t);
    assert_ptr_equal(t->data, b.p + data_at + 64);
    assert_int_equal(((const uint8_t *)t->data)[0], 0xAB);
    slm_gguf_close(g);
    free(b.p);
}

/* A one-tensor file with the given shape, type and offset and data_bytes of data. */
static void one_tensor(tb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset, size_t data_bytes) {
    tb_header(b, 3, 1, 0);
    tb_tensor(b, "w", n_dims, ne, type, offset);
    tb_pad(b, 32);
    tb_zeros(b, data_bytes);
}

static void test_hostile_tensors(void **state) {
    (void)state;
    tb b = {0};
    uint64_t ne4[5] = {32, 2, 1, 1, 1}; /* rank 5 reads all five */
    one_tensor(&b, 2, ne4, SLM_TYPE_F32, 0, 256);
    expect(&b, SLM_OK, NULL);
    one_tensor(&b, 0, ne4, SLM_TYPE_F32, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "rank 0");
    one_tensor(&b, 5, ne4, SLM_TYPE_F32, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "rank 5");
    uint64_t neg[2] = {32, UINT64_MAX};
    one_tensor(&b, 2, neg, SLM_TYPE_F32, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "negative");
    uint64_t big[3] = {1u << 30, 1u << 30, 1u << 30};
    one_tensor(&b, 3, big, SLM_TYPE_F32, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "overflows");
    uint64_t bytes_ovf[2] = {(uint64_t)1 << 40, (uint64_t)1 << 22};
    one_tensor(&b, 2, bytes_ovf, SLM_TYPE_F64, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "overflows");
    uint64_t odd[1] = {33};
    one_tensor(&b, 1, odd, SLM_TYPE_Q4_0, 0, 256);
    expect(&b, SLM_ERR_CORRUPT, "not a multiple of the q4_0 block size 32");
    one_tensor(&b, 2, ne4, 4, 0, 256); /* a retired id */
    expect(&b, SLM_ERR_UNSUPPORTED, "unknown tensor type id 4");
    one_tensor(&b, 2, ne4, 99, 0, 256);
    expect(&b, SLM_ERR_UNSUPPORTED, "unknown tensor type id 99");
    one_tensor(&b, 2, ne4, SLM_TYPE_F32, 16, 512);
    expect(&b, SLM_ERR_CORRUPT, "not a multiple of the alignment");
    one_tensor(&b, 2, ne4, SLM_TYPE_F32, 64, 512);
    expect(&b, SLM_ERR_CORRUPT, "expected 0");
    one_tensor(&b, 2, ne4, SLM_TYPE_F32, 0, 255);
    expect(&b, SLM_ERR_CORRUPT, "tensor 'w': data [offset 0, size 256] extends past end of file");
    one_tensor(&b, 2, ne4, SLM_TYPE_F32, 0, 0);
    expect(&b, SLM_ERR_CORRUPT, "extends past end of file");
    /* A zero-sized dimension is allowed (as in the reference runtime). */
    uint64_t empty[2] = {32, 0};
    one_tensor(&b, 2, empty, SLM_TYPE_F32, 0, 0);
    expect(&b, SLM_OK, NULL);

    /* Two tensors: overlap, out of order, duplicate name. */
    uint64_t ne1[1] = {8};
    tb_header(&b, 3, 2, 0), tb_tensor(&b, "a", 1, ne1, SLM_TYPE_F32, 0), tb_tensor(&b, "b", 1, ne1, SLM_TYPE_F32, 0);
    tb_pad(&b, 32), tb_zeros(&b, 64);
    expect(&b, SLM_ERR_CORRUPT, "tensor 'b': offset 0, expected 32");
    tb_header(&b, 3, 2, 0), tb_tensor(&b, "a", 1, ne1, SLM_TYPE_F32, 32), tb_tensor(&b, "b", 1, ne1, SLM_TYPE_F32, 0);
    tb_pad(&b, 32), tb_zeros(&b, 64);
    expect(&b, SLM_ERR_CORRUPT, "tensor 'a': offset 32, expected 0");
    tb_header(&b, 3, 2, 0), tb_tensor(&b, "a", 1, ne1, SLM_TYPE_F32, 0), tb_tensor(&b, "a", 1, ne1, SLM_TYPE_F32, 32);
    tb_pad(&b, 32), tb_zeros(&b, 64);
    expect(&b, SLM_ERR_CORRUPT, "duplicate tensor name 'a'");
    /* Data section past the end: infos end where the file ends, unaligned. */
    tb_header(&b, 3, 1, 0), tb_tensor(&b, "a", 1, ne1, SLM_TYPE_F32, 0);
    expect(&b, SLM_ERR_CORRUPT, "data section");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_every_shared_model),
        cmocka_unit_test(test_stories_facts),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_header_corruption),
        cmocka_unit_test(test_hostile_header),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_alignment_key),
        cmocka_unit_test(test_hostile_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
