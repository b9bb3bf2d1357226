/*
 * tests/test_gguf.c: the GGUF reader against real files (every model in shared/), every
 * truncation and byte corruption of a real header, and hand-made hostile files, one per
 * rule the reader enforces. Hostile inputs run through slm_gguf_open_memory over buffers
 * of exactly their length, so an over-read is an ASan error, not a silent pass. Then the
 * writer: round trips of every value type, copies of a real file, alignment, bad arguments,
 * and every allocation failure on the way through writer and reader.
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

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
    char *fifo = tu_write_temp("", 0, ".fifo"); /* a unique name, replaced by a FIFO */
    assert_non_null(fifo);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(slm_gguf_open(fifo, NULL, &g, err), SLM_ERR_IO); /* refused, not blocked */
    assert_non_null(strstr(err, "not a regular file"));
    unlink(fifo);
    free(fifo);
    assert_int_equal(slm_gguf_open_memory(NULL, 0, &g, err), SLM_ERR_CORRUPT);
    assert_int_equal(slm_gguf_open_memory(NULL, 5, &g, err), SLM_ERR_INVALID_ARG);
    char *empty = tu_write_temp("", 0, ".gguf");
    assert_non_null(empty);
    assert_int_equal(slm_gguf_open(empty, NULL, &g, err), SLM_ERR_CORRUPT);
    unlink(empty);
    free(empty);
    slm_gguf_close(NULL);
}

/* The reference's dequantization index names, per tiny model, a tensor with its type and
 * shape (rows, cols); the reference logits give each model's vocabulary size. */
static void test_reference_shapes(void **state) {
    (void)state;
    char path[4096], err[SLM_ERR_LEN];
    json_error_t jerr;
    const char *model;
    json_t *entry;
    int checked = 0;
    TU_SHARED_OR_SKIP(path, "reference/dequant/index.json");
    json_t *index = json_load_file(path, 0, &jerr);
    assert_non_null(index);
    json_object_foreach(index, model, entry) {
        char rel[512];
        slm_gguf *g = NULL;
        slm_type want;
        snprintf(rel, sizeof rel, "models/tiny/%s", model);
        if (!tu_shared_path(path, sizeof path, rel)) continue;
        assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);
        const slm_gguf_tensor *t = slm_gguf_find_tensor(g, json_string_value(json_object_get(entry, "tensor")));
        assert_non_null(t);
        assert_true(slm_type_from_name(json_string_value(json_object_get(entry, "type")), &want));
        assert_int_equal(t->type, want);
        json_t *shape = json_object_get(entry, "shape_rows_cols");
        assert_int_equal(t->n_dims, 2);
        assert_int_equal(t->ne[1], json_integer_value(json_array_get(shape, 0)));
        assert_int_equal(t->ne[0], json_integer_value(json_array_get(shape, 1)));

        /* The same model's vocabulary size, from its reference logits. */
        char name[256];
        snprintf(name, sizeof name, "reference/logits/%.*s.json", (int)(strlen(model) - 5), model);
        if (tu_shared_path(path, sizeof path, name)) {
            json_t *logits = json_load_file(path, 0, &jerr);
            slm_gguf_vtype et;
            uint64_t n = 0;
            assert_non_null(logits);
            assert_int_equal(slm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, err), SLM_OK);
            assert_int_equal(n, json_integer_value(json_object_get(logits, "n_vocab")));
            json_decref(logits);
        }
        slm_gguf_close(g);
        checked++;
    }
    json_decref(index);
    assert_true(checked >= 10);
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
 * last tensor infos) is tried; the rest (vocabulary, other infos, which repeat the same
 * structure) with a stride, to stay fast under ASan (each open there costs ~0.2 ms). */
#define CORRUPT_HEAD 512    /* leading bytes tried one by one */
#define CORRUPT_TAIL 512    /* trailing bytes of the header region tried one by one */
#define CORRUPT_STRIDE 13   /* stride through the middle */

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


/* ---- writer: round trips ----------------------------------------------------------------------- */

/* Tensor payloads for the round trip: byte patterns of the sizes their shapes need. */
#define RT_Q4_0_BYTES (2 * 2 * 18) /* [64, 2] q4_0: 2 blocks a row, 2 rows */
#define RT_Q4_K_BYTES 144          /* [256] q4_k: one super-block */

typedef struct rt_data {
    float f32[6];                  /* [3, 2] */
    uint8_t q4_0[RT_Q4_0_BYTES];
    uint8_t q4_k[RT_Q4_K_BYTES];
    uint16_t f16[5];               /* [5] */
} rt_data;

static void rt_fill(rt_data *d) {
    for (int i = 0; i < 6; i++) d->f32[i] = (float)i * 0.5f - 1.0f;
    for (int i = 0; i < RT_Q4_0_BYTES; i++) d->q4_0[i] = (uint8_t)(i * 7);
    for (int i = 0; i < RT_Q4_K_BYTES; i++) d->q4_k[i] = (uint8_t)(255 - i);
    for (int i = 0; i < 5; i++) d->f16[i] = (uint16_t)(0x3C00 + i); /* 1.0 and a few neighbours */
}

static const char *const rt_strs[] = {"", "hello", "tab\there", "\xe2\x96\x81world", "quote\"back\\slash"};

/* Every value type, arrays of every element type, four tensor types. */
static slm_status rt_build(slm_gguf_writer *w, const rt_data *d, char *err) {
    static const uint8_t u8s[] = {0, 1, 255};
    static const int8_t i8s[] = {-128, 0, 127};
    static const uint16_t u16s[] = {0, 65535};
    static const int16_t i16s[] = {-32768, 32767};
    static const uint32_t u32s[] = {0, 4294967295u};
    static const int32_t i32s[] = {-2147483647 - 1, 5};
    static const float f32s[] = {1.5f, -0.25f};
    static const uint8_t bools[] = {1, 0, 1};
    static const uint64_t u64s[] = {UINT64_MAX, 3};
    static const int64_t i64s[] = {INT64_MIN, -1};
    static const double f64s[] = {3.25, -1e300};
    static const int64_t ne_f32[] = {3, 2}, ne_q40[] = {64, 2}, ne_q4k[] = {256}, ne_f16[] = {5};
    slm_status st;
    if ((st = slm_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (st = slm_gguf_writer_set_u32(w, "t.u32", 7)) || (st = slm_gguf_writer_set_i32(w, "t.i32", -7)) ||
        (st = slm_gguf_writer_set_u64(w, "t.u64", (uint64_t)1 << 40)) ||
        (st = slm_gguf_writer_set_f32(w, "t.f32", 0.125f)) || (st = slm_gguf_writer_set_bool(w, "t.bool", true)) ||
        (st = slm_gguf_writer_set_str(w, "t.str", "line1\nline2")) ||
        (st = slm_gguf_writer_set_u32(w, "t.replaced", 1)) ||
        (st = slm_gguf_writer_set_arr(w, "a.u8", SLM_GGUF_U8, u8s, 3)) ||
        (st = slm_gguf_writer_set_arr(w, "a.i8", SLM_GGUF_I8, i8s, 3)) ||
        (st = slm_gguf_writer_set_arr(w, "a.u16", SLM_GGUF_U16, u16s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.i16", SLM_GGUF_I16, i16s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.u32", SLM_GGUF_U32, u32s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.i32", SLM_GGUF_I32, i32s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.f32", SLM_GGUF_F32, f32s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.bool", SLM_GGUF_BOOL, bools, 3)) ||
        (st = slm_gguf_writer_set_arr(w, "a.u64", SLM_GGUF_U64, u64s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.i64", SLM_GGUF_I64, i64s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.f64", SLM_GGUF_F64, f64s, 2)) ||
        (st = slm_gguf_writer_set_arr(w, "a.empty", SLM_GGUF_I32, NULL, 0)) ||
        (st = slm_gguf_writer_set_str_arr(w, "a.str", rt_strs, 5)) ||
        (st = slm_gguf_writer_set_u32(w, "t.replaced", 2)))
        return st;
    if ((st = slm_gguf_writer_add_tensor(w, "f32", SLM_TYPE_F32, 2, ne_f32, d->f32, sizeof d->f32, err)) ||
        (st = slm_gguf_writer_add_tensor(w, "q4_0", SLM_TYPE_Q4_0, 2, ne_q40, d->q4_0, sizeof d->q4_0, err)) ||
        (st = slm_gguf_writer_add_tensor(w, "q4_k", SLM_TYPE_Q4_K, 1, ne_q4k, d->q4_k, sizeof d->q4_k, err)) ||
        (st = slm_gguf_writer_add_tensor(w, "f16", SLM_TYPE_F16, 1, ne_f16, d->f16, sizeof d->f16, err)))
        return st;
    return SLM_OK;
}

static void rt_check_tensor(const slm_gguf *g, const char *name, slm_type type, const void *data, size_t size) {
    const slm_gguf_tensor *t = slm_gguf_find_tensor(g, name);
    assert_non_null(t);
    assert_int_equal(t->type, type);
    assert_int_equal(t->size, size);
    assert_int_equal(t->offset % slm_gguf_alignment(g), 0);
    assert_memory_equal(t->data, data, size);
}

static void rt_check(const slm_gguf *g, const rt_data *d) {
    char buf[128];
    uint32_t u;
    int64_t i;
    float f;
    bool b;
    slm_gguf_str s;
    slm_gguf_vtype et;
    uint64_t n;
    assert_int_equal(slm_gguf_version(g), 3);
    assert_int_equal(slm_gguf_n_kv(g), 21);
    assert_int_equal(slm_gguf_get_u32(g, "t.u32", &u, NULL), SLM_OK), assert_int_equal(u, 7);
    assert_int_equal(slm_gguf_get_i64(g, "t.i32", &i, NULL), SLM_OK), assert_int_equal(i, -7);
    assert_int_equal(slm_gguf_get_u32(g, "t.i32", &u, NULL), SLM_ERR_CORRUPT); /* negative */
    assert_int_equal(slm_gguf_get_i64(g, "t.u64", &i, NULL), SLM_OK), assert_int_equal(i, (int64_t)1 << 40);
    assert_int_equal(slm_gguf_get_u32(g, "t.u64", &u, NULL), SLM_ERR_CORRUPT); /* too big */
    assert_int_equal(slm_gguf_get_f32(g, "t.f32", &f, NULL), SLM_OK), assert_true(f == 0.125f);
    assert_int_equal(slm_gguf_get_bool(g, "t.bool", &b, NULL), SLM_OK), assert_true(b);
    assert_int_equal(slm_gguf_get_str(g, "t.str", &s, NULL), SLM_OK);
    assert_int_equal(s.len, 11), assert_memory_equal(s.ptr, "line1\nline2", 11);
    /* Replacing kept the position (7th pair) and took the new value. */
    assert_int_equal(slm_gguf_find_key(g, "t.replaced"), 7);
    assert_int_equal(slm_gguf_get_u32(g, "t.replaced", &u, NULL), SLM_OK), assert_int_equal(u, 2);
    assert_string_equal(slm_gguf_value_str(g, slm_gguf_find_key(g, "t.str"), buf, sizeof buf), "line1\\nline2");
    assert_string_equal(slm_gguf_value_str(g, slm_gguf_find_key(g, "t.bool"), buf, sizeof buf), "true");
    assert_string_equal(slm_gguf_value_str(g, slm_gguf_find_key(g, "t.i32"), buf, sizeof buf), "-7");
    assert_string_equal(slm_gguf_value_str(g, slm_gguf_find_key(g, "a.str"), buf, sizeof buf), "[string; 5]");
    assert_string_equal(slm_gguf_value_str(g, slm_gguf_find_key(g, "t.str"), buf, 6), "line1");

    int64_t k;
    k = slm_gguf_find_key(g, "a.u8"), assert_int_equal(slm_gguf_arr_i64(g, k, 2), 255);
    k = slm_gguf_find_key(g, "a.i8"), assert_int_equal(slm_gguf_arr_i64(g, k, 0), -128);
    k = slm_gguf_find_key(g, "a.u16"), assert_int_equal(slm_gguf_arr_i64(g, k, 1), 65535);
    k = slm_gguf_find_key(g, "a.i16"), assert_int_equal(slm_gguf_arr_i64(g, k, 0), -32768);
    k = slm_gguf_find_key(g, "a.u32"), assert_int_equal(slm_gguf_arr_i64(g, k, 1), 4294967295LL);
    k = slm_gguf_find_key(g, "a.i32"), assert_int_equal(slm_gguf_arr_i64(g, k, 0), INT32_MIN);
    k = slm_gguf_find_key(g, "a.f32"), assert_true(slm_gguf_arr_f64(g, k, 1) == -0.25);
    assert_int_equal(slm_gguf_arr_i64(g, k, 0), 1); /* truncated */
    k = slm_gguf_find_key(g, "a.bool"), assert_int_equal(slm_gguf_arr_i64(g, k, 2), 1);
    k = slm_gguf_find_key(g, "a.u64"), assert_true(slm_gguf_arr_f64(g, k, 0) == 18446744073709551615.0);
    k = slm_gguf_find_key(g, "a.i64"), assert_true(slm_gguf_arr_i64(g, k, 0) == INT64_MIN);
    k = slm_gguf_find_key(g, "a.f64"), assert_true(slm_gguf_arr_f64(g, k, 1) == -1e300);
    assert_true(slm_gguf_arr_i64(g, k, 1) == INT64_MIN); /* saturated */
    assert_int_equal(slm_gguf_get_arr(g, "a.empty", &et, &n, NULL), SLM_OK);
    assert_int_equal(et, SLM_GGUF_I32), assert_int_equal(n, 0);
    assert_int_equal(slm_gguf_get_arr(g, "a.str", &et, &n, NULL), SLM_OK);
    assert_int_equal(et, SLM_GGUF_STRING), assert_int_equal(n, 5);
    k = slm_gguf_find_key(g, "a.str");
    for (uint64_t j = 0; j < 5; j++) {
        s = slm_gguf_arr_str(g, k, j);
        assert_int_equal(s.len, strlen(rt_strs[j]));
        assert_memory_equal(s.ptr, rt_strs[j], s.len);
    }
    assert_int_equal(slm_gguf_n_tensors(g), 4);
    rt_check_tensor(g, "f32", SLM_TYPE_F32, d->f32, sizeof d->f32);
    rt_check_tensor(g, "q4_0", SLM_TYPE_Q4_0, d->q4_0, sizeof d->q4_0);
    rt_check_tensor(g, "q4_k", SLM_TYPE_Q4_K, d->q4_k, sizeof d->q4_k);
    rt_check_tensor(g, "f16", SLM_TYPE_F16, d->f16, sizeof d->f16);
    assert_int_equal(slm_gguf_find_tensor(g, "q4_0")->ne[1], 2);
    assert_int_equal(slm_gguf_find_tensor(g, "q4_0")->n_dims, 2);
}

/* Copy every pair and tensor of g into a new writer and serialize it. */
static slm_status rewrite(const slm_gguf *g, void **out, size_t *size, char *err) {
    slm_gguf_writer *w = NULL;
    slm_status st = slm_gguf_writer_create(&w);
    if (!st) st = slm_gguf_writer_copy_kv(w, g, NULL, NULL);
    for (int64_t i = 0; !st && i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        st = slm_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, err);
    }
    if (!st) st = slm_gguf_writer_to_memory(w, out, size, err);
    slm_gguf_writer_destroy(w);
    return st;
}

static void test_writer_round_trip(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    rt_data d;
    slm_gguf_writer *w = NULL;
    slm_gguf *g = NULL, *g2 = NULL;
    void *mem = NULL, *mem2 = NULL;
    size_t size = 0, size2 = 0;
    rt_fill(&d);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(rt_build(w, &d, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_OK);
    assert_int_equal(slm_gguf_open_memory(mem, size, &g, err), SLM_OK);
    rt_check(g, &d);
    walk_all(g);

    /* Copying everything reproduces the file byte for byte. */
    assert_int_equal(rewrite(g, &mem2, &size2, err), SLM_OK);
    assert_int_equal(size2, size);
    assert_memory_equal(mem2, mem, size);

    /* Through a file: atomic, no .tmp left behind; reads back the same. */
    char *path = tu_write_temp("", 0, ".gguf");
    char tmp[4200];
    assert_non_null(path);
    assert_int_equal(slm_gguf_writer_write(w, path, err), SLM_OK);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(slm_gguf_open(path, NULL, &g2, err), SLM_OK);
    rt_check(g2, &d);
    slm_gguf_close(g2);
    assert_int_equal(slm_gguf_writer_write(w, "/nonexistent-dir/x.gguf", err), SLM_ERR_IO);
    unlink(path);
    free(path);

    slm_gguf_close(g);
    slm_free(mem);
    slm_free(mem2);
    slm_gguf_writer_destroy(w);
}

static bool skip_general_name(const char *key, void *ctx) {
    (*(int *)ctx)++;
    return !strcmp(key, "general.name");
}

/* stories260K copied pair by pair (one skipped) and tensor by tensor reads back equal. */
static void test_writer_copy_real(void **state) {
    (void)state;
    char path[4096], err[SLM_ERR_LEN], a[256], b[256];
    slm_gguf *src = NULL, *dst = NULL;
    slm_gguf_writer *w = NULL;
    void *mem = NULL;
    size_t size = 0;
    int seen = 0;
    TU_SHARED_OR_SKIP(path, "models/stories260K.gguf");
    assert_int_equal(slm_gguf_open(path, NULL, &src, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(slm_gguf_writer_copy_kv(w, src, skip_general_name, &seen), SLM_OK);
    assert_int_equal(seen, slm_gguf_n_kv(src));
    for (int64_t i = 0; i < slm_gguf_n_tensors(src); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(src, i);
        assert_int_equal(slm_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, err), SLM_OK);
    }
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_OK);
    assert_int_equal(slm_gguf_open_memory(mem, size, &dst, err), SLM_OK);
    assert_int_equal(slm_gguf_n_kv(dst), slm_gguf_n_kv(src) - 1);
    assert_int_equal(slm_gguf_find_key(dst, "general.name"), -1);
    for (int64_t i = 0; i < slm_gguf_n_kv(dst); i++) {
        int64_t j = slm_gguf_find_key(src, slm_gguf_key(dst, i));
        assert_true(j >= 0);
        assert_int_equal(slm_gguf_kv_type(dst, i), slm_gguf_kv_type(src, j));
        assert_string_equal(slm_gguf_value_str(dst, i, a, sizeof a), slm_gguf_value_str(src, j, b, sizeof b));
    }
    int64_t ks = slm_gguf_find_key(src, "tokenizer.ggml.tokens"), kd = slm_gguf_find_key(dst, "tokenizer.ggml.tokens");
    for (uint64_t i = 0; i < 512; i++) {
        slm_gguf_str x = slm_gguf_arr_str(src, ks, i), y = slm_gguf_arr_str(dst, kd, i);
        assert_int_equal(x.len, y.len);
        assert_memory_equal(x.ptr, y.ptr, x.len);
    }
    for (int64_t i = 0; i < slm_gguf_n_tensors(src); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(src, i), *u = slm_gguf_tensor_at(dst, i);
        assert_string_equal(t->name, u->name);
        assert_int_equal(t->offset, u->offset);
        assert_int_equal(t->size, u->size);
        assert_memory_equal(t->data, u->data, t->size);
    }
    slm_gguf_close(dst);
    slm_gguf_close(src);
    slm_gguf_writer_destroy(w);
    slm_free(mem);
}

/* Nested arrays are carried through copy_kv unchanged. */
static void test_writer_copy_nested(void **state) {
    (void)state;
    tb b = {0};
    char err[SLM_ERR_LEN];
    slm_gguf *g = NULL, *g2 = NULL;
    void *mem = NULL;
    size_t size = 0;
    tb_header(&b, 3, 0, 1), tb_str(&b, "n"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_ARRAY), tb_u64(&b, 1);
    tb_u32(&b, SLM_GGUF_STRING), tb_u64(&b, 2), tb_str(&b, "x"), tb_str(&b, "yz");
    assert_int_equal(slm_gguf_open_memory(b.p, b.n, &g, err), SLM_OK);
    assert_int_equal(rewrite(g, &mem, &size, err), SLM_OK);
    assert_int_equal(size, b.n); /* no tensors: no padding, the same bytes */
    assert_int_equal(slm_gguf_open_memory(mem, size, &g2, err), SLM_OK);
    assert_memory_equal(mem, b.p, b.n);
    slm_gguf_close(g2);
    slm_gguf_close(g);
    slm_free(mem);
    free(b.p);
}

static void test_writer_alignment(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    rt_data d;
    slm_gguf_writer *w = NULL;
    slm_gguf *g = NULL;
    void *mem = NULL;
    size_t size = 0;
    rt_fill(&d);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(rt_build(w, &d, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_u32(w, "general.alignment", 24), SLM_OK);
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_u64(w, "general.alignment", 64), SLM_OK);
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_u32(w, "general.alignment", 256), SLM_OK);
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_OK);
    assert_int_equal(slm_gguf_open_memory(mem, size, &g, err), SLM_OK);
    assert_int_equal(slm_gguf_alignment(g), 256);
    assert_int_equal(slm_gguf_data_offset(g) % 256, 0);
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) assert_int_equal(slm_gguf_tensor_at(g, i)->offset % 256, 0);
    assert_int_equal(slm_gguf_find_tensor(g, "f16")->offset, 3 * 256);
    slm_gguf_close(g);
    slm_free(mem);
    slm_gguf_writer_destroy(w);
}

static void test_writer_bad_args(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    float x[8] = {0};
    static const int64_t ne8[] = {8}, ne33[] = {33}, neg[] = {-1};
    slm_gguf_writer *w = NULL;
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "a", SLM_TYPE_F32, 1, ne8, x, sizeof x, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "a", SLM_TYPE_F32, 1, ne8, x, sizeof x, err), SLM_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", SLM_TYPE_F32, 1, ne8, x, 4, err), SLM_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "need 32"));
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", (slm_type)4, 1, ne8, x, 32, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", SLM_TYPE_F32, 0, ne8, x, 32, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", SLM_TYPE_F32, 1, neg, x, 32, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", SLM_TYPE_Q8_0, 1, ne33, x, 32, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_arr(w, "s", SLM_GGUF_STRING, x, 1), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_arr(w, "s", SLM_GGUF_ARRAY, x, 1), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_str(w, "s", NULL), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_gguf_writer_set_u32(w, NULL, 1), SLM_ERR_INVALID_ARG);
    slm_gguf_writer_destroy(w);
    slm_gguf_writer_destroy(NULL);
}

/* ---- allocation failures ------------------------------------------------------------------------ */

/* Build, serialize, read back (memory and file, mapped and read) and copy: every
 * allocation on the way may fail, and must fail cleanly with SLM_ERR_NOMEM. */
static slm_status fault_scenario(const char *path) {
    char err[SLM_ERR_LEN];
    rt_data d;
    slm_gguf_writer *w = NULL;
    slm_gguf *g = NULL;
    void *mem = NULL, *mem2 = NULL;
    size_t size = 0, size2 = 0;
    slm_gguf_open_opts read_opts = {.no_mmap = true};
    rt_fill(&d);
    slm_status st = slm_gguf_writer_create(&w);
    if (!st) st = rt_build(w, &d, err);
    if (!st) st = slm_gguf_writer_to_memory(w, &mem, &size, err);
    if (!st) st = slm_gguf_writer_write(w, path, err);
    if (!st) st = slm_gguf_open_memory(mem, size, &g, err);
    if (!st) st = rewrite(g, &mem2, &size2, err);
    slm_gguf_close(g);
    g = NULL;
    if (!st) st = slm_gguf_open(path, &read_opts, &g, err);
    slm_gguf_close(g);
    g = NULL;
    if (!st) st = slm_gguf_open(path, NULL, &g, err);
    slm_gguf_close(g);
    slm_free(mem);
    slm_free(mem2);
    slm_gguf_writer_destroy(w);
    return st;
}

static void test_allocation_failures(void **state) {
    (void)state;
    char *path = tu_write_temp("", 0, ".gguf");
    assert_non_null(path);
    int failures = 0;
    for (long n = 1;; n++) {
        slm_fault_arm(n);
        slm_status st = fault_scenario(path);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            break;
        }
        if (st != SLM_ERR_NOMEM) fail_msg("allocation %ld failed but the status is %d", n, st);
        failures++;
    }
    assert_true(failures > 50);
    unlink(path);
    free(path);
}

/* ---- fuzz seeds ---------------------------------------------------------------------------------- */

/* The seeds in fuzz/seeds/fuzz_gguf/ are made here. Regenerate them with
 *   SLMESH_WRITE_SEEDS=1 SLMESH_SOURCE_DIR=$PWD build/test_gguf
 * Otherwise this test checks that every committed seed opens and is small. */
#define SEED_MAX_BYTES 4096

static void seed_vocab(slm_gguf_writer *w) {
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", ("\xe2\x96\x81" "a"), "ab", "<0x0A>"};
    static const float scores[] = {0, 0, 0, -1, -2, -3, -4, -5, -6};
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 6};
    assert_int_equal(slm_gguf_writer_set_str(w, "general.architecture", "llama"), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 9), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SLM_GGUF_F32, scores, 9), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SLM_GGUF_I32, types, 9), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true), SLM_OK);
}

static void seed_align64(slm_gguf_writer *w, const float *x) {
    static const int64_t ne_a[] = {4, 2}, ne_b[] = {3};
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_gguf_writer_set_str(w, "general.architecture", "llama"), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_u32(w, "general.alignment", 64), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_u32(w, "llama.block_count", 1), SLM_OK);
    assert_int_equal(slm_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f), SLM_OK);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "a", SLM_TYPE_F32, 2, ne_a, x, 32, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "b", SLM_TYPE_F32, 1, ne_b, x, 12, err), SLM_OK);
}

static void seed_save(const char *dir, const char *name, const void *data, size_t size) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static void seed_from_writer(const char *dir, const char *name, slm_gguf_writer *w) {
    void *mem = NULL;
    size_t size = 0;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, &size, err), SLM_OK);
    assert_true(size < SEED_MAX_BYTES);
    seed_save(dir, name, mem, size);
    slm_free(mem);
    slm_gguf_writer_destroy(w);
}

static void write_seeds(const char *dir) {
    slm_gguf_writer *w = NULL;
    rt_data d;
    char err[SLM_ERR_LEN];
    tb b = {0};
    rt_fill(&d);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(rt_build(w, &d, err), SLM_OK);
    seed_from_writer(dir, "types.gguf", w);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    seed_vocab(w);
    seed_from_writer(dir, "vocab.gguf", w);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    seed_align64(w, d.f32);
    seed_from_writer(dir, "align64.gguf", w);
    /* Nested arrays: the writer has no call for them, so built field by field. */
    tb_header(&b, 3, 0, 1), tb_str(&b, "n"), tb_u32(&b, SLM_GGUF_ARRAY), tb_u32(&b, SLM_GGUF_ARRAY), tb_u64(&b, 2);
    tb_u32(&b, SLM_GGUF_STRING), tb_u64(&b, 1), tb_str(&b, "x");
    tb_u32(&b, SLM_GGUF_I16), tb_u64(&b, 1), tb_bytes(&b, "\xff\xff", 2);
    seed_save(dir, "nested.gguf", b.p, b.n);
    free(b.p);
}

static void test_fuzz_seeds(void **state) {
    (void)state;
    const char *src = getenv("SLMESH_SOURCE_DIR");
    char dir[3800];
    if (!src || !*src) {
        fprintf(stderr, "SKIP: SLMESH_SOURCE_DIR not set\n");
        skip();
    }
    snprintf(dir, sizeof dir, "%s/fuzz/seeds/fuzz_gguf", src);
    if (getenv("SLMESH_WRITE_SEEDS")) write_seeds(dir);
    DIR *dd = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(dd);
    while ((e = readdir(dd))) {
        char path[4200], err[SLM_ERR_LEN] = "";
        size_t len = 0;
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *data = tu_read_file(path, &len);
        assert_non_null(data);
        assert_true(len < SEED_MAX_BYTES);
        if (open_exact(data, len, err) != SLM_OK) fail_msg("seed %s: %s", path, err);
        free(data);
        n++;
    }
    closedir(dd);
    assert_int_equal(n, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_every_shared_model),
        cmocka_unit_test(test_stories_facts),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_reference_shapes),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_header_corruption),
        cmocka_unit_test(test_hostile_header),
        cmocka_unit_test(test_hostile_values),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_alignment_key),
        cmocka_unit_test(test_hostile_tensors),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_copy_real),
        cmocka_unit_test(test_writer_copy_nested),
        cmocka_unit_test(test_writer_alignment),
        cmocka_unit_test(test_writer_bad_args),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
