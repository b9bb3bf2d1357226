/*
 * gguf/gguf_write.c: the GGUF writer. Collect metadata and tensors in memory, then emit a
 * version 3 file in one pass, to a file (atomically) or to a buffer.
 *
 * Representation: each pair keeps its value already encoded as it appears in the file after
 * the type field (scalar bytes; u64 length + bytes; u32 element type + u64 count +
 * elements), so replacing a value is swapping one blob and writing is a copy. Tensors keep
 * a borrowed pointer to their data.
 *
 * Invariants: every pair and tensor accepted here is one the reader accepts (limits, known
 * types, sizes that match the shape); keys and tensor names are unique. The file layout is
 * the reference runtime's: header, pairs in insertion order, tensor infos in insertion
 * order, padding to the alignment, then each tensor's data padded to the alignment, so
 * tensor i's offset is the sum of the padded sizes before it. A file without tensors ends
 * after the metadata (no padding: the reader accepts that, and a huge alignment then costs
 * nothing).
 * Alignment: general.alignment when set (must be a u32 power of two), else 32.
 *
 * Thread-safety: a writer is used by one thread at a time. Non-goals: streaming tensors
 * from a callback, editing a file in place.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

typedef struct wkv {
    char *key;                 /* owned, NUL-terminated */
    slm_gguf_vtype type;       /* value type */
    uint8_t *blob;             /* owned: the value encoded as in the file */
    size_t blob_len;           /* bytes in blob */
} wkv;

typedef struct wtensor {
    char *name;                /* owned */
    slm_type type;             /* known type id */
    uint32_t n_dims;           /* 1..SLM_GGUF_MAX_DIMS */
    int64_t ne[SLM_GGUF_MAX_DIMS]; /* unused dims = 1 */
    const void *data;          /* borrowed until write */
    size_t size;               /* bytes of data */
} wtensor;

struct slm_gguf_writer {
    wkv *kvs;                  /* owned, n_kv used of cap_kv */
    size_t n_kv, cap_kv;
    wtensor *tensors;          /* owned, n_tensors used of cap_tensors */
    size_t n_tensors, cap_tensors;
};

slm_status slm_gguf_writer_create(slm_gguf_writer **out) {
    *out = slm_calloc(1, sizeof **out);
    return *out ? SLM_OK : SLM_ERR_NOMEM;
}

void slm_gguf_writer_destroy(slm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        slm_free(w->kvs[i].key);
        slm_free(w->kvs[i].blob);
    }
    for (size_t i = 0; i < w->n_tensors; i++) slm_free(w->tensors[i].name);
    slm_free(w->kvs);
    slm_free(w->tensors);
    slm_free(w);
}

/* Make room for one more element in an array of *cap elements of size elem. */
static slm_status grow(void **arr, size_t *cap, size_t used, size_t elem) {
    size_t new_cap, bytes;
    void *p;
    if (used < *cap) return SLM_OK;
    new_cap = *cap ? *cap * 2 : 16;
    if (!slm_mul_size(new_cap, elem, &bytes)) return SLM_ERR_LIMIT;
    p = slm_realloc(*arr, bytes);
    if (!p) return SLM_ERR_NOMEM;
    *arr = p;
    *cap = new_cap;
    return SLM_OK;
}

/* ---- metadata ------------------------------------------------------------------------------ */

/* Store blob (ownership transferred, also on failure) as the value of key. */
static slm_status set_blob(slm_gguf_writer *w, const char *key, slm_gguf_vtype type, uint8_t *blob, size_t len) {
    slm_status st = SLM_ERR_INVALID_ARG;
    if (!w || !key || !blob) goto fail;
    st = SLM_ERR_LIMIT;
    if (strlen(key) > SLM_GGUF_MAX_KEY_LEN) goto fail;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) != 0) continue;
        slm_free(w->kvs[i].blob);
        w->kvs[i] = (wkv){w->kvs[i].key, type, blob, len};
        return SLM_OK;
    }
    st = SLM_ERR_LIMIT;
    if (w->n_kv >= SLM_GGUF_MAX_KV) goto fail;
    if ((st = grow((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs))) goto fail;
    st = SLM_ERR_NOMEM;
    char *k = slm_strdup(key); /* owned by the pair */
    if (!k) goto fail;
    w->kvs[w->n_kv++] = (wkv){k, type, blob, len};
    return SLM_OK;
fail:
    slm_free(blob);
    return st;
}

/* A scalar of size bytes. */
static slm_status set_scalar(slm_gguf_writer *w, const char *key, slm_gguf_vtype type, const void *v, size_t size) {
    uint8_t *blob = slm_malloc(size);
    if (!blob) return SLM_ERR_NOMEM;
    memcpy(blob, v, size);
    return set_blob(w, key, type, blob, size);
}

slm_status slm_gguf_writer_set_u32(slm_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, SLM_GGUF_U32, &v, sizeof v);
}
slm_status slm_gguf_writer_set_i32(slm_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, SLM_GGUF_I32, &v, sizeof v);
}
slm_status slm_gguf_writer_set_u64(slm_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, SLM_GGUF_U64, &v, sizeof v);
}
slm_status slm_gguf_writer_set_f32(slm_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, SLM_GGUF_F32, &v, sizeof v);
}
slm_status slm_gguf_writer_set_bool(slm_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, SLM_GGUF_BOOL, &b, 1);
}

/* Append a u64 length and the bytes of s to p; returns the end. */
static uint8_t *put_str(uint8_t *p, const char *s, uint64_t len) {
    memcpy(p, &len, sizeof len);
    memcpy(p + sizeof len, s, (size_t)len);
    return p + sizeof len + len;
}

slm_status slm_gguf_writer_set_str(slm_gguf_writer *w, const char *key, const char *v) {
    if (!v) return SLM_ERR_INVALID_ARG;
    size_t len = strlen(v);
    if (len > SLM_GGUF_MAX_STR_LEN) return SLM_ERR_LIMIT;
    uint8_t *blob = slm_malloc(sizeof(uint64_t) + len);
    if (!blob) return SLM_ERR_NOMEM;
    put_str(blob, v, len);
    return set_blob(w, key, SLM_GGUF_STRING, blob, sizeof(uint64_t) + len);
}

/* An array blob: element type, count, then body_len bytes of elements from body. */
static slm_status set_array(slm_gguf_writer *w, const char *key, slm_gguf_vtype et, uint64_t n, const void *body,
                            size_t body_len) {
    uint32_t et32 = (uint32_t)et;
    size_t len;
    if (!slm_add_size(body_len, sizeof et32 + sizeof n, &len)) return SLM_ERR_LIMIT;
    uint8_t *blob = slm_malloc(len);
    if (!blob) return SLM_ERR_NOMEM;
    memcpy(blob, &et32, sizeof et32);
    memcpy(blob + sizeof et32, &n, sizeof n);
    if (body_len) memcpy(blob + sizeof et32 + sizeof n, body, body_len);
    return set_blob(w, key, SLM_GGUF_ARRAY, blob, len);
}

/* Bytes of one element of a numeric (fixed-size) type; 0 for strings, arrays, unknown. */
static size_t numeric_size(slm_gguf_vtype t) {
    switch (t) {
    case SLM_GGUF_U8: case SLM_GGUF_I8: case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_U16: case SLM_GGUF_I16: return 2;
    case SLM_GGUF_U32: case SLM_GGUF_I32: case SLM_GGUF_F32: return 4;
    case SLM_GGUF_U64: case SLM_GGUF_I64: case SLM_GGUF_F64: return 8;
    default: return 0;
    }
}

slm_status slm_gguf_writer_set_arr(slm_gguf_writer *w, const char *key, slm_gguf_vtype elem_type, const void *data,
                                   uint64_t n) {
    size_t es = numeric_size(elem_type);
    if (es == 0 || (!data && n)) return SLM_ERR_INVALID_ARG;
    if (n > SLM_GGUF_MAX_ARR_LEN) return SLM_ERR_LIMIT;
    return set_array(w, key, elem_type, n, data, (size_t)n * es); /* n <= 2^26: no overflow */
}

slm_status slm_gguf_writer_set_str_arr(slm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    size_t body = 0;
    slm_status st;
    if (!strs && n) return SLM_ERR_INVALID_ARG;
    if (n > SLM_GGUF_MAX_ARR_LEN) return SLM_ERR_LIMIT;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) return SLM_ERR_INVALID_ARG;
        size_t len = strlen(strs[i]);
        if (len > SLM_GGUF_MAX_STR_LEN) return SLM_ERR_LIMIT;
        if (!slm_add_size(body, sizeof(uint64_t) + len, &body)) return SLM_ERR_LIMIT;
    }
    uint8_t *elems = slm_malloc(body ? body : 1); /* encoded elements, freed below */
    if (!elems) return SLM_ERR_NOMEM;
    uint8_t *p = elems;
    for (uint64_t i = 0; i < n; i++) p = put_str(p, strs[i], strlen(strs[i]));
    st = set_array(w, key, SLM_GGUF_STRING, n, elems, body);
    slm_free(elems);
    return st;
}

/* Pair i of src re-encoded as a blob (values are byte copies, nested arrays included). */
static slm_status copy_one(slm_gguf_writer *w, const slm_gguf *src, int64_t i) {
    slm_gguf_vtype et = SLM_GGUF_U8;
    uint64_t n = 0;
    size_t bytes = 0;
    const uint8_t *raw = slm_gguf_kv_raw(src, i, &et, &n, &bytes);
    slm_gguf_vtype type = slm_gguf_kv_type(src, i);
    const char *key = slm_gguf_key(src, i);
    if (!raw) return SLM_ERR_INVALID_ARG;
    if (type == SLM_GGUF_ARRAY) return set_array(w, key, et, n, raw, bytes);
    if (type == SLM_GGUF_STRING) {
        uint8_t *blob = slm_malloc(sizeof(uint64_t) + bytes);
        if (!blob) return SLM_ERR_NOMEM;
        put_str(blob, (const char *)raw, n);
        return set_blob(w, key, type, blob, sizeof(uint64_t) + bytes);
    }
    return set_scalar(w, key, type, raw, bytes);
}

slm_status slm_gguf_writer_copy_kv(slm_gguf_writer *w, const slm_gguf *src, bool (*skip)(const char *key, void *ctx),
                                   void *ctx) {
    if (!w || !src) return SLM_ERR_INVALID_ARG;
    for (int64_t i = 0; i < slm_gguf_n_kv(src); i++) {
        if (skip && skip(slm_gguf_key(src, i), ctx)) continue;
        slm_status st = copy_one(w, src, i);
        if (st) return st;
    }
    return SLM_OK;
}

/* ---- tensors ------------------------------------------------------------------------------- */

/* Check a tensor's description and compute its byte size into *size. */
static slm_status check_tensor(const char *name, slm_type type, uint32_t n_dims, const int64_t *ne, size_t *size,
                               char *err) {
    int64_t nel = 1;
    if (!name || strlen(name) > SLM_GGUF_MAX_KEY_LEN)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor name missing or longer than %d bytes", SLM_GGUF_MAX_KEY_LEN);
    if (!slm_type_traits_of(type))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': unknown type id %d", name, (int)type);
    if (n_dims < 1 || n_dims > SLM_GGUF_MAX_DIMS || !ne)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': rank %" PRIu32 " outside 1..%d", name, n_dims,
                        SLM_GGUF_MAX_DIMS);
    for (uint32_t j = 0; j < n_dims; j++) {
        if (ne[j] < 0 || __builtin_mul_overflow(nel, ne[j], &nel))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': bad dimension %" PRId64, name, ne[j]);
    }
    if (!slm_type_row_bytes(type, ne[0], size))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': row of %" PRId64 " is not a multiple of the %s block size",
                        name, ne[0], slm_type_name(type));
    for (uint32_t j = 1; j < n_dims; j++) {
        if (!slm_mul_size(*size, (size_t)ne[j], size))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': byte size overflows", name);
    }
    return SLM_OK;
}

slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, slm_type type, uint32_t n_dims,
                                      const int64_t *ne, const void *data, size_t size, char *err) {
    size_t want = 0;
    slm_status st;
    if (!w) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL writer");
    if ((st = check_tensor(name, type, n_dims, ne, &want, err))) return st;
    if (size != want || (!data && size))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s': %zu bytes of data given, shape and type need %zu", name,
                        size, want);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "tensor '%.64s' added twice", name);
    if (w->n_tensors >= SLM_GGUF_MAX_TENSORS)
        return slm_errf(err, SLM_ERR_LIMIT, "more than %d tensors", SLM_GGUF_MAX_TENSORS);
    if ((st = grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors)))
        return slm_errf(err, st, "out of memory for tensor infos");
    wtensor t = {.name = slm_strdup(name), .type = type, .n_dims = n_dims, .data = data, .size = size};
    if (!t.name) return slm_errf(err, SLM_ERR_NOMEM, "out of memory");
    for (uint32_t j = 0; j < SLM_GGUF_MAX_DIMS; j++) t.ne[j] = j < n_dims ? ne[j] : 1;
    w->tensors[w->n_tensors++] = t;
    return SLM_OK;
}

/* ---- layout -------------------------------------------------------------------------------- */

static size_t pad_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); } /* a: power of two */

/* The alignment the file will use: general.alignment (a u32 power of two) or the default. */
static slm_status writer_alignment(const slm_gguf_writer *w, size_t *align, char *err) {
    uint32_t a;
    *align = SLM_GGUF_DEFAULT_ALIGN;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        if (w->kvs[i].type != SLM_GGUF_U32)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "general.alignment must be a u32");
        memcpy(&a, w->kvs[i].blob, sizeof a);
        if (a == 0 || (a & (a - 1)) != 0)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "general.alignment %" PRIu32 " is not a power of two", a);
        *align = a;
    }
    return SLM_OK;
}

/* Bytes before the data section (unpadded) and in the data section (each tensor padded). */
static slm_status writer_sizes(const slm_gguf_writer *w, size_t align, size_t *meta, size_t *data, char *err) {
    size_t m = 24; /* magic, version, n_tensors, n_kv */
    size_t d = 0;
    bool ok = true;
    for (size_t i = 0; i < w->n_kv; i++) {
        ok = ok && slm_add_size(m, 8 + strlen(w->kvs[i].key) + 4, &m);
        ok = ok && slm_add_size(m, w->kvs[i].blob_len, &m);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        ok = ok && slm_add_size(m, 8 + strlen(t->name) + 4 + 8 * (size_t)t->n_dims + 4 + 8, &m);
        ok = ok && t->size <= SIZE_MAX - align && slm_add_size(d, pad_up(t->size, align), &d);
    }
    ok = ok && m <= SIZE_MAX - align && d <= SIZE_MAX - pad_up(m, align);
    if (!ok) return slm_errf(err, SLM_ERR_LIMIT, "file size overflows");
    *meta = m;
    *data = d;
    return SLM_OK;
}

/* ---- emitting ------------------------------------------------------------------------------ */

/* Where bytes go: a buffer of known size, or a stream. */
typedef struct sink {
    uint8_t *mem;              /* borrowed buffer, or NULL */
    FILE *f;                   /* borrowed stream when mem is NULL */
    size_t pos;                /* bytes emitted */
    bool failed;               /* a stream write failed */
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (n == 0) return;
    if (s->mem) memcpy(s->mem + s->pos, p, n);
    else if (!s->failed && fwrite(p, 1, n, s->f) != n) s->failed = true;
    s->pos += n;
}
static void put_u32(sink *s, uint32_t v) { put(s, &v, sizeof v); }
static void put_u64(sink *s, uint64_t v) { put(s, &v, sizeof v); }
static void put_name(sink *s, const char *name) {
    put_u64(s, strlen(name));
    put(s, name, strlen(name));
}
static void put_zeros(sink *s, size_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(s, zeros, k);
        n -= k;
    }
}

static void emit(const slm_gguf_writer *w, size_t align, sink *s) {
    uint64_t offset = 0;
    put(s, "GGUF", 4);
    put_u32(s, 3);
    put_u64(s, w->n_tensors);
    put_u64(s, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_name(s, w->kvs[i].key);
        put_u32(s, (uint32_t)w->kvs[i].type);
        put(s, w->kvs[i].blob, w->kvs[i].blob_len);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        put_name(s, t->name);
        put_u32(s, t->n_dims);
        for (uint32_t j = 0; j < t->n_dims; j++) put_u64(s, (uint64_t)t->ne[j]);
        put_u32(s, (uint32_t)t->type);
        put_u64(s, offset);
        offset += pad_up(t->size, align);
    }
    if (w->n_tensors) put_zeros(s, pad_up(s->pos, align) - s->pos);
    for (size_t i = 0; i < w->n_tensors; i++) {
        put(s, w->tensors[i].data, w->tensors[i].size);
        put_zeros(s, pad_up(w->tensors[i].size, align) - w->tensors[i].size);
    }
}

/* Alignment and total file size. */
static slm_status plan(const slm_gguf_writer *w, size_t *align, size_t *total, char *err) {
    size_t meta = 0, data = 0;
    slm_status st;
    if (!w) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL writer");
    if ((st = writer_alignment(w, align, err)) || (st = writer_sizes(w, *align, &meta, &data, err))) return st;
    *total = w->n_tensors ? pad_up(meta, *align) + data : meta;
    return SLM_OK;
}

slm_status slm_gguf_writer_to_memory(slm_gguf_writer *w, void **out, size_t *size, char *err) {
    size_t align = 0, total = 0;
    slm_status st;
    *out = NULL;
    *size = 0;
    if ((st = plan(w, &align, &total, err))) return st;
    sink s = {.mem = slm_malloc(total ? total : 1)};
    if (!s.mem) return slm_errf(err, SLM_ERR_NOMEM, "out of memory for a %zu-byte file", total);
    emit(w, align, &s);
    *out = s.mem;
    *size = total;
    return SLM_OK;
}

slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path, char *err) {
    size_t align = 0, total = 0;
    char *tmp = NULL; /* owned: path + ".tmp" */
    FILE *f = NULL;
    slm_status st;
    if ((st = plan(w, &align, &total, err))) return st;
    if (!path) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL path");
    size_t plen = strlen(path);
    tmp = slm_malloc(plen + sizeof ".tmp");
    if (!tmp) return slm_errf(err, SLM_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", sizeof ".tmp");
    f = fopen(tmp, "wb");
    if (!f) {
        st = slm_errf(err, SLM_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    sink s = {.f = f};
    emit(w, align, &s);
    bool ok = !s.failed && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    ok = (fclose(f) == 0) && ok;
    f = NULL;
    if (!ok) {
        st = slm_errf(err, SLM_ERR_IO, "%s: write: %s", tmp, strerror(saved ? saved : errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        st = slm_errf(err, SLM_ERR_IO, "rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    st = SLM_OK;
done:
    slm_free(tmp);
    return st;
}
