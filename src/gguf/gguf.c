/*
 * gguf/gguf.c: the GGUF reader. Get the bytes (mmap, read, or a borrowed buffer), walk the
 * header once validating every count, length and offset against the file size and the
 * named limits in gguf.h, then answer questions about metadata and tensors.
 *
 * Data flow (the banners below follow it):
 *   bytes -> cursor reads -> header -> key/value pairs (values validated, string arrays
 *   indexed) -> tensor infos (shape, type, byte size) -> names (copied into one block,
 *   hashed, duplicates refused) -> alignment -> tensor placement (offsets, data ranges)
 *   -> accessors.
 *
 * Invariants once an open returns SLM_OK:
 *  - every value's bytes lie inside the file: scalars, strings, array elements and nested
 *    arrays; a string array has an offset per element so element i is found in O(1);
 *  - keys and tensor names are unique, contain no NUL byte, and are NUL-terminated copies;
 *  - general.alignment, when present, is a u32 power of two;
 *  - every tensor has a known type, rank 1..SLM_GGUF_MAX_DIMS, ne >= 0 with a product that
 *    fits in int64, a row length that is a multiple of the block size, and its data
 *    [offset, offset + size) inside the file. Offsets follow the reference runtime's rule:
 *    tensors are stored in info order, each padded to the alignment, so offset i equals the
 *    sum of the padded sizes before it (this also makes them aligned and disjoint).
 * Accessors only read validated records; out-of-range indexes give neutral answers (NULL,
 * 0, -1), never an out-of-bounds read.
 *
 * Thread-safety: an open slm_gguf is immutable. Non-goals: GGUF v1, big-endian files, and
 * files truncated by someone else while mapped (SIGBUS, as with any mmap reader; use
 * no_mmap for files that may change).
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "slmesh reads GGUF (little-endian) by direct loads: little-endian hosts only"
#endif

/* Nested arrays (arrays of arrays) are legal GGUF but unused by real models; a depth limit
 * keeps the validating walk from recursing without bound on a hostile file. */
#define GGUF_MAX_NEST 8

/* Smallest encodings, used to refuse counts the file cannot possibly hold before
 * allocating for them: a pair is an empty key (8) + type (4) + a 1-byte value; a tensor
 * info is an empty name (8) + n_dims (4) + one dim (8) + type (4) + offset (8). */
#define GGUF_MIN_KV_BYTES     13u
#define GGUF_MIN_TENSOR_BYTES 32u
#define GGUF_HEADER_BYTES     24u /* magic, version, n_tensors, n_kv */

/* One metadata pair. */
typedef struct gguf_kv {
    const char *key;           /* NUL-terminated copy in g->names (while parsing: a view
                                  into the file, key_len bytes, not terminated) */
    uint32_t key_len;          /* bytes in key */
    slm_gguf_vtype type;       /* value type */
    slm_gguf_vtype elem_type;  /* arrays: element type */
    uint64_t n;                /* strings: byte length; arrays: element count */
    const uint8_t *val;        /* scalar bytes / string bytes / first array element (in file) */
    size_t bytes;              /* encoded bytes from val to the end of the value */
    size_t *str_off;           /* string arrays: offset from val of element i's length; owned */
} gguf_kv;

/* One tensor info; t.name is like gguf_kv.key (a view while parsing, then a copy). */
typedef struct gguf_tensor {
    slm_gguf_tensor t;         /* what accessors hand out */
    uint32_t name_len;         /* bytes in t.name */
} gguf_tensor;

/* Open addressing table name -> index, capacity a power of two at least twice the count. */
typedef struct name_slot {
    const char *name;          /* borrowed from the kv or tensor it indexes; NULL = empty */
    int64_t index;             /* position in kvs / tensors */
} name_slot;

typedef struct name_index {
    name_slot *slots;          /* owned; mask + 1 entries */
    size_t mask;               /* capacity - 1 */
    uint64_t seed;             /* per-table hash seed (from the allocation's address) */
} name_index;

struct slm_gguf {
    const uint8_t *base;       /* the file's bytes: mapping, read buffer or borrowed buffer */
    size_t size;               /* bytes in the file */
    void *map;                 /* owned mmap of size bytes, or NULL */
    void *buf;                 /* owned read buffer (no_mmap; base is inside it), or NULL */
    bool locked;               /* mlock succeeded: munlock on close */
    uint32_t version;          /* 2 or 3 */
    uint64_t alignment;        /* power of two */
    size_t data_offset;        /* file offset of the data section */
    int64_t n_kv;              /* pairs parsed so far (all of them after open) */
    gguf_kv *kvs;              /* owned, n_kv entries */
    int64_t n_tensors;         /* tensor infos parsed so far */
    gguf_tensor *tensors;      /* owned, n_tensors entries */
    char *names;               /* owned: every key and tensor name, NUL-terminated, one block */
    name_index key_index;      /* key -> kv index */
    name_index tensor_index;   /* tensor name -> tensor index */
};

/* ---- cursor: bounds-checked little-endian reads ------------------------------------------ */

typedef struct cursor {
    const uint8_t *base;       /* first byte of the file */
    size_t size;               /* bytes in the file */
    size_t pos;                /* next byte to read; pos <= size */
    char *err;                 /* caller's detail buffer (may be NULL) */
    char where[96];            /* what is being parsed, for details: "key 'general.name'" */
} cursor;

static slm_status need(cursor *c, uint64_t n, const char *what) {
    if (n <= c->size - c->pos) return SLM_OK;
    return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: %s needs %" PRIu64 " bytes at offset %zu, past end of file (size %zu)",
                    c->where, what, n, c->pos, c->size);
}

static slm_status read_u32(cursor *c, uint32_t *out, const char *what) {
    slm_status st = need(c, sizeof *out, what);
    if (st) return st;
    memcpy(out, c->base + c->pos, sizeof *out);
    c->pos += sizeof *out;
    return SLM_OK;
}

static slm_status read_u64(cursor *c, uint64_t *out, const char *what) {
    slm_status st = need(c, sizeof *out, what);
    if (st) return st;
    memcpy(out, c->base + c->pos, sizeof *out);
    c->pos += sizeof *out;
    return SLM_OK;
}

/* A length-prefixed string as a view into the file; max is its named limit. */
static slm_status read_str(cursor *c, uint64_t max, slm_gguf_str *out, const char *what) {
    uint64_t len;
    slm_status st = read_u64(c, &len, what);
    if (st) return st;
    if (len > max)
        return slm_errf(c->err, SLM_ERR_LIMIT, "%s: %s length %" PRIu64 " exceeds the limit %" PRIu64, c->where, what,
                        len, max);
    st = need(c, len, what);
    if (st) return st;
    out->ptr = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += (size_t)len;
    return SLM_OK;
}

/* A key or tensor name: a string without NUL bytes (a view; copied later by copy_names). */
static slm_status read_name(cursor *c, const char **ptr, uint32_t *len, const char *what) {
    slm_gguf_str s = {NULL, 0};
    slm_status st = read_str(c, SLM_GGUF_MAX_KEY_LEN, &s, what);
    if (st) return st;
    if (memchr(s.ptr, '\0', (size_t)s.len))
        return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: %s contains a NUL byte", c->where, what);
    *ptr = s.ptr;
    *len = (uint32_t)s.len; /* <= SLM_GGUF_MAX_KEY_LEN */
    return SLM_OK;
}

/* Name a part of the file in details: what 'name' (the first 64 bytes of a view). */
static void set_where(cursor *c, const char *what, const char *name, uint32_t len) {
    snprintf(c->where, sizeof c->where, "%s '%.*s'", what, (int)(len < 64 ? len : 64), name);
}

/* ---- value types ------------------------------------------------------------------------- */

/* Bytes of a fixed-size value type; 0 for strings and arrays. */
static const size_t vtype_size[SLM_GGUF_VTYPE_COUNT] = {
    [SLM_GGUF_U8] = 1,  [SLM_GGUF_I8] = 1,  [SLM_GGUF_U16] = 2, [SLM_GGUF_I16] = 2, [SLM_GGUF_U32] = 4,
    [SLM_GGUF_I32] = 4, [SLM_GGUF_F32] = 4, [SLM_GGUF_BOOL] = 1, [SLM_GGUF_U64] = 8, [SLM_GGUF_I64] = 8,
    [SLM_GGUF_F64] = 8,
};

static const char *const vtype_names[SLM_GGUF_VTYPE_COUNT] = {
    [SLM_GGUF_U8] = "u8",   [SLM_GGUF_I8] = "i8",       [SLM_GGUF_U16] = "u16",    [SLM_GGUF_I16] = "i16",
    [SLM_GGUF_U32] = "u32", [SLM_GGUF_I32] = "i32",     [SLM_GGUF_F32] = "f32",    [SLM_GGUF_BOOL] = "bool",
    [SLM_GGUF_STRING] = "string", [SLM_GGUF_ARRAY] = "array", [SLM_GGUF_U64] = "u64", [SLM_GGUF_I64] = "i64",
    [SLM_GGUF_F64] = "f64",
};

const char *slm_gguf_vtype_name(slm_gguf_vtype t) {
    return (unsigned)t < SLM_GGUF_VTYPE_COUNT ? vtype_names[t] : "unknown";
}

static bool vtype_is_int(slm_gguf_vtype t) {
    return t <= SLM_GGUF_I32 || t == SLM_GGUF_U64 || t == SLM_GGUF_I64;
}

static bool vtype_is_signed(slm_gguf_vtype t) {
    return t == SLM_GGUF_I8 || t == SLM_GGUF_I16 || t == SLM_GGUF_I32 || t == SLM_GGUF_I64;
}

/* An integer value at p as a sign flag and magnitude-preserving pair: signed types in *s,
 * unsigned in *u (exactly one of the two is meaningful, per vtype_is_signed). */
static void load_int(slm_gguf_vtype t, const uint8_t *p, int64_t *s, uint64_t *u) {
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
    *s = 0;
    *u = 0;
    switch (t) {
    case SLM_GGUF_U8: memcpy(&u8, p, 1); *u = u8; break;
    case SLM_GGUF_I8: memcpy(&i8, p, 1); *s = i8; break;
    case SLM_GGUF_U16: memcpy(&u16, p, 2); *u = u16; break;
    case SLM_GGUF_I16: memcpy(&i16, p, 2); *s = i16; break;
    case SLM_GGUF_U32: memcpy(&u32, p, 4); *u = u32; break;
    case SLM_GGUF_I32: memcpy(&i32, p, 4); *s = i32; break;
    case SLM_GGUF_U64: memcpy(u, p, 8); break;
    case SLM_GGUF_I64: memcpy(s, p, 8); break;
    default: break;
    }
}

/* A numeric value at p as a double (integers, floats, bool); 0 for other types. */
static double load_f64(slm_gguf_vtype t, const uint8_t *p) {
    float f;
    double d;
    int64_t s = 0;
    uint64_t u = 0;
    if (t == SLM_GGUF_F32) {
        memcpy(&f, p, 4);
        return f;
    }
    if (t == SLM_GGUF_F64) {
        memcpy(&d, p, 8);
        return d;
    }
    if (t == SLM_GGUF_BOOL) return p[0] != 0;
    if (!vtype_is_int(t)) return 0;
    load_int(t, p, &s, &u);
    return vtype_is_signed(t) ? (double)s : (double)u;
}

/* d truncated toward zero, saturated to the int64 range; NaN gives 0. */
static int64_t f64_to_i64(double d) {
    if (!(d == d)) return 0;
    if (d >= 9223372036854775807.0) return INT64_MAX;
    if (d <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)d;
}

/* ---- header -------------------------------------------------------------------------------- */

static slm_status parse_header(cursor *c, slm_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    slm_status st;
    snprintf(c->where, sizeof c->where, "header");
    st = need(c, GGUF_HEADER_BYTES, "the fixed header");
    if (st) return st;
    if (memcmp(c->base, "GGUF", 4) != 0)
        return slm_errf(c->err, SLM_ERR_CORRUPT, "not a GGUF file: magic is %02x %02x %02x %02x, expected \"GGUF\"",
                        c->base[0], c->base[1], c->base[2], c->base[3]);
    c->pos = 4;
    if ((st = read_u32(c, &g->version, "version")) || (st = read_u64(c, n_tensors, "tensor count")) ||
        (st = read_u64(c, n_kv, "key/value count")))
        return st;
    if (g->version == 1)
        return slm_errf(c->err, SLM_ERR_UNSUPPORTED, "GGUF version 1 is not supported (convert the file to v3)");
    if ((g->version & 0xFFFFu) == 0 && g->version != 0)
        return slm_errf(c->err, SLM_ERR_UNSUPPORTED, "GGUF version 0x%08" PRIx32 " looks big-endian; not supported",
                        g->version);
    if (g->version < 2 || g->version > 3)
        return slm_errf(c->err, SLM_ERR_UNSUPPORTED, "GGUF version %" PRIu32 " is not supported (2 and 3 are)",
                        g->version);
    if (*n_kv > SLM_GGUF_MAX_KV)
        return slm_errf(c->err, SLM_ERR_LIMIT, "header: %" PRIu64 " key/value pairs exceed the limit %d", *n_kv,
                        SLM_GGUF_MAX_KV);
    if (*n_tensors > SLM_GGUF_MAX_TENSORS)
        return slm_errf(c->err, SLM_ERR_LIMIT, "header: %" PRIu64 " tensors exceed the limit %d", *n_tensors,
                        SLM_GGUF_MAX_TENSORS);
    /* Both counts are below 2^21 here, so these products cannot overflow. */
    if (*n_kv * GGUF_MIN_KV_BYTES + *n_tensors * GGUF_MIN_TENSOR_BYTES > c->size - c->pos)
        return slm_errf(c->err, SLM_ERR_CORRUPT,
                        "header: %" PRIu64 " key/value pairs and %" PRIu64 " tensors cannot fit in a file of %zu bytes",
                        *n_kv, *n_tensors, c->size);
    return SLM_OK;
}

/* ---- key/value pairs ----------------------------------------------------------------------- */

static slm_status parse_array(cursor *c, int depth, gguf_kv *kv);

/* n string elements; when offs is not NULL, record each element's offset from first. */
static slm_status parse_str_elems(cursor *c, uint64_t n, const uint8_t *first, size_t *offs) {
    slm_gguf_str s = {NULL, 0};
    for (uint64_t i = 0; i < n; i++) {
        if (offs) offs[i] = (size_t)(c->base + c->pos - first);
        slm_status st = read_str(c, SLM_GGUF_MAX_STR_LEN, &s, "array string");
        if (st) return st;
    }
    return SLM_OK;
}

static slm_status parse_array_elems(cursor *c, int depth, slm_gguf_vtype et, uint64_t n, gguf_kv *kv) {
    const uint8_t *first = c->base + c->pos;
    if (et == SLM_GGUF_STRING) {
        size_t *offs = NULL; /* owned by kv once stored */
        if (n > (c->size - c->pos) / sizeof(uint64_t)) /* each string has an 8-byte length */
            return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: %" PRIu64 " strings cannot fit in the rest of the file",
                            c->where, n);
        if (kv) {
            offs = slm_malloc(n ? (size_t)n * sizeof *offs : 1);
            if (!offs) return slm_errf(c->err, SLM_ERR_NOMEM, "%s: out of memory indexing %" PRIu64 " strings", c->where, n);
            kv->str_off = offs;
        }
        return parse_str_elems(c, n, first, offs);
    }
    if (et == SLM_GGUF_ARRAY) {
        if (depth >= GGUF_MAX_NEST)
            return slm_errf(c->err, SLM_ERR_LIMIT, "%s: arrays nested deeper than %d", c->where, GGUF_MAX_NEST);
        for (uint64_t i = 0; i < n; i++) {
            slm_status st = parse_array(c, depth + 1, NULL);
            if (st) return st;
        }
        return SLM_OK;
    }
    /* Fixed-size elements: n <= SLM_GGUF_MAX_ARR_LEN (2^26) times at most 8 bytes. */
    uint64_t bytes = n * vtype_size[et];
    slm_status st = need(c, bytes, "array data");
    if (st) return st;
    c->pos += (size_t)bytes;
    return SLM_OK;
}

/* An array value: element type, count, elements. kv receives them (NULL when nested). */
static slm_status parse_array(cursor *c, int depth, gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    slm_status st;
    if ((st = read_u32(c, &et, "array element type")) || (st = read_u64(c, &n, "array length"))) return st;
    if (et >= SLM_GGUF_VTYPE_COUNT)
        return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: unknown array element type %" PRIu32, c->where, et);
    if (n > SLM_GGUF_MAX_ARR_LEN)
        return slm_errf(c->err, SLM_ERR_LIMIT, "%s: array of %" PRIu64 " elements exceeds the limit %u", c->where, n,
                        SLM_GGUF_MAX_ARR_LEN);
    if (kv) {
        kv->elem_type = (slm_gguf_vtype)et;
        kv->n = n;
        kv->val = c->base + c->pos;
    }
    return parse_array_elems(c, depth, (slm_gguf_vtype)et, n, kv);
}

static slm_status parse_kv(cursor *c, gguf_kv *kv, int64_t i) {
    uint32_t type;
    slm_gguf_str s = {NULL, 0};
    slm_status st;
    snprintf(c->where, sizeof c->where, "key/value %" PRId64, i);
    if ((st = read_name(c, &kv->key, &kv->key_len, "key"))) return st;
    set_where(c, "key", kv->key, kv->key_len);
    if ((st = read_u32(c, &type, "value type"))) return st;
    if (type >= SLM_GGUF_VTYPE_COUNT)
        return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: unknown value type %" PRIu32, c->where, type);
    kv->type = (slm_gguf_vtype)type;
    if (type == SLM_GGUF_ARRAY) return parse_array(c, 1, kv);
    if (type == SLM_GGUF_STRING) {
        if ((st = read_str(c, SLM_GGUF_MAX_STR_LEN, &s, "string value"))) return st;
        kv->val = (const uint8_t *)s.ptr;
        kv->n = s.len;
        return SLM_OK;
    }
    if ((st = need(c, vtype_size[type], "value"))) return st;
    kv->val = c->base + c->pos;
    c->pos += vtype_size[type];
    return SLM_OK;
}

static slm_status parse_kvs(cursor *c, slm_gguf *g, uint64_t n_kv) {
    g->kvs = slm_calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kvs);
    if (!g->kvs) return slm_errf(c->err, SLM_ERR_NOMEM, "out of memory for %" PRIu64 " key/value pairs", n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* counted first so close frees a partial pair's arrays */
        slm_status st = parse_kv(c, &g->kvs[i], (int64_t)i);
        if (st) return st;
        g->kvs[i].bytes = (size_t)(c->base + c->pos - g->kvs[i].val);
    }
    return SLM_OK;
}

/* ---- tensor infos ---------------------------------------------------------------------------- */

/* Product of the dims (must fit in int64) and the byte size (must fit in size_t). */
static slm_status tensor_size(cursor *c, slm_gguf_tensor *t) {
    int64_t nel = 1;
    size_t row, size;
    for (uint32_t j = 0; j < SLM_GGUF_MAX_DIMS; j++) {
        if (__builtin_mul_overflow(nel, t->ne[j], &nel))
            return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: element count overflows int64", c->where);
    }
    if (!slm_type_row_bytes(t->type, t->ne[0], &row))
        return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: row of %" PRId64 " elements is not a multiple of the %s block size %" PRId64,
                        c->where, t->ne[0], slm_type_name(t->type), slm_type_traits_of(t->type)->block_size);
    size = row;
    for (uint32_t j = 1; j < SLM_GGUF_MAX_DIMS; j++) {
        if (!slm_mul_size(size, (size_t)t->ne[j], &size))
            return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: byte size overflows", c->where);
    }
    t->size = size;
    return SLM_OK;
}

static slm_status parse_tensor_info(cursor *c, gguf_tensor *rec, int64_t i) {
    slm_gguf_tensor *t = &rec->t;
    uint32_t type;
    slm_status st;
    snprintf(c->where, sizeof c->where, "tensor %" PRId64, i);
    if ((st = read_name(c, &t->name, &rec->name_len, "tensor name"))) return st;
    set_where(c, "tensor", t->name, rec->name_len);
    if ((st = read_u32(c, &t->n_dims, "rank"))) return st;
    if (t->n_dims < 1 || t->n_dims > SLM_GGUF_MAX_DIMS)
        return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: rank %" PRIu32 " outside 1..%d", c->where, t->n_dims,
                        SLM_GGUF_MAX_DIMS);
    for (uint32_t j = 0; j < SLM_GGUF_MAX_DIMS; j++) {
        uint64_t ne = 1;
        if (j < t->n_dims && (st = read_u64(c, &ne, "dimension"))) return st;
        if (ne > INT64_MAX)
            return slm_errf(c->err, SLM_ERR_CORRUPT, "%s: dimension %" PRIu32 " is negative (%" PRId64 ")", c->where, j,
                            (int64_t)ne);
        t->ne[j] = (int64_t)ne;
    }
    if ((st = read_u32(c, &type, "type"))) return st;
    if (!slm_type_traits_of((slm_type)type))
        return slm_errf(c->err, SLM_ERR_UNSUPPORTED, "%s: unknown tensor type id %" PRIu32, c->where, type);
    t->type = (slm_type)type;
    if ((st = read_u64(c, &t->offset, "data offset"))) return st;
    return tensor_size(c, t);
}

static slm_status parse_tensor_infos(cursor *c, slm_gguf *g, uint64_t n_tensors) {
    g->tensors = slm_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) return slm_errf(c->err, SLM_ERR_NOMEM, "out of memory for %" PRIu64 " tensor infos", n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        slm_status st = parse_tensor_info(c, &g->tensors[i], (int64_t)i);
        if (st) return st;
    }
    return SLM_OK;
}

/* ---- names: copied into one block, then indexed --------------------------------------------- */

/* Copy len bytes at *name into the block at *o, NUL-terminate, and point *name there. */
static void move_name(const char **name, uint32_t len, char **o) {
    memcpy(*o, *name, len);
    (*o)[len] = '\0';
    *name = *o;
    *o += len + 1;
}

/* Turn every key and tensor name from a view into the file into a NUL-terminated copy. */
static slm_status copy_names(slm_gguf *g, char *err) {
    size_t total = 1; /* each name is also at least 8 bytes of the file: no overflow */
    for (int64_t i = 0; i < g->n_kv; i++) total += g->kvs[i].key_len + 1u;
    for (int64_t i = 0; i < g->n_tensors; i++) total += g->tensors[i].name_len + 1u;
    char *o = g->names = slm_malloc(total);
    if (!o) return slm_errf(err, SLM_ERR_NOMEM, "out of memory for %zu bytes of names", total);
    for (int64_t i = 0; i < g->n_kv; i++) move_name(&g->kvs[i].key, g->kvs[i].key_len, &o);
    for (int64_t i = 0; i < g->n_tensors; i++) move_name(&g->tensors[i].t.name, g->tensors[i].name_len, &o);
    return SLM_OK;
}

/* FNV-1a from a per-table seed, then a 64-bit finalizer so the low bits (the slot) depend
 * on every byte; the seed makes colliding names hard to prepare in advance. */
static uint64_t name_hash(const char *s, uint64_t seed) {
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static slm_status index_init(name_index *ix, int64_t n, char *err) {
    size_t cap = 8;
    while (cap < (size_t)n * 2) cap *= 2; /* n <= 2^20: no overflow */
    ix->slots = slm_calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return slm_errf(err, SLM_ERR_NOMEM, "out of memory for a name index of %zu slots", cap);
    ix->mask = cap - 1;
    ix->seed = (uint64_t)(uintptr_t)ix->slots;
    return SLM_OK;
}

/* Slot holding name, or the empty slot where it belongs. */
static name_slot *index_slot(const name_index *ix, const char *name) {
    size_t i = (size_t)name_hash(name, ix->seed) & ix->mask;
    while (ix->slots[i].name && strcmp(ix->slots[i].name, name) != 0) i = (i + 1) & ix->mask;
    return &ix->slots[i];
}

static int64_t index_find(const name_index *ix, const char *name) {
    if (!ix->slots || !name) return -1;
    const name_slot *s = index_slot(ix, name);
    return s->name ? s->index : -1;
}

static const char *tensor_name_at(const slm_gguf *g, int64_t i) { return g->tensors[i].t.name; }

/* Index the n names name_of(g, i); a name seen twice is corrupt. what: "key", "tensor name". */
static slm_status index_names(const slm_gguf *g, name_index *ix, const char *(*name_of)(const slm_gguf *, int64_t),
                              int64_t n, const char *what, char *err) {
    slm_status st = index_init(ix, n, err);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) {
        const char *name = name_of(g, i);
        name_slot *s = index_slot(ix, name);
        if (s->name)
            return slm_errf(err, SLM_ERR_CORRUPT, "duplicate %s '%.64s' (entries %" PRId64 " and %" PRId64 ")", what, name,
                            s->index, i);
        s->name = name;
        s->index = i;
    }
    return SLM_OK;
}

/* ---- alignment and tensor placement ---------------------------------------------------------- */

static slm_status resolve_alignment(slm_gguf *g, char *err) {
    int64_t i = slm_gguf_find_key(g, "general.alignment");
    uint32_t a;
    g->alignment = SLM_GGUF_DEFAULT_ALIGN;
    if (i < 0) return SLM_OK;
    if (g->kvs[i].type != SLM_GGUF_U32)
        return slm_errf(err, SLM_ERR_CORRUPT, "general.alignment has type %s, expected u32",
                        slm_gguf_vtype_name(g->kvs[i].type));
    memcpy(&a, g->kvs[i].val, sizeof a);
    if (a == 0 || (a & (a - 1)) != 0)
        return slm_errf(err, SLM_ERR_CORRUPT, "general.alignment %" PRIu32 " is not a power of two", a);
    g->alignment = a;
    return SLM_OK;
}

/* x rounded up to the alignment a (a power of two); false on overflow. */
static bool pad_to(size_t x, uint64_t a, size_t *out) {
    if (!slm_add_size(x, (size_t)a - 1, out)) return false;
    *out &= ~((size_t)a - 1);
    return true;
}

static slm_status place_tensor(slm_gguf *g, slm_gguf_tensor *t, size_t expected, char *err) {
    size_t data_size = g->size - g->data_offset;
    if (t->offset % g->alignment != 0)
        return slm_errf(err, SLM_ERR_CORRUPT, "tensor '%.64s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        t->name, t->offset, g->alignment);
    if (t->offset != expected)
        return slm_errf(err, SLM_ERR_CORRUPT,
                        "tensor '%.64s': offset %" PRIu64 ", expected %zu (tensors are stored in order, each padded to the alignment)",
                        t->name, t->offset, expected);
    if (t->offset > data_size || t->size > data_size - t->offset)
        return slm_errf(err, SLM_ERR_CORRUPT,
                        "tensor '%.64s': data [offset %" PRIu64 ", size %zu] extends past end of file (size %zu, data at %zu)",
                        t->name, t->offset, t->size, g->size, g->data_offset);
    t->data = g->base + g->data_offset + t->offset;
    return SLM_OK;
}

/* The data section starts at the first aligned offset after the tensor infos. */
static slm_status place_tensors(slm_gguf *g, size_t info_end, char *err) {
    size_t expected = 0; /* offset the next tensor must have */
    if (!pad_to(info_end, g->alignment, &g->data_offset))
        return slm_errf(err, SLM_ERR_CORRUPT, "data section offset overflows");
    if (g->data_offset > g->size) {
        if (g->n_tensors > 0)
            return slm_errf(err, SLM_ERR_CORRUPT, "data section at offset %zu starts past end of file (size %zu)",
                            g->data_offset, g->size);
        g->data_offset = g->size; /* no tensors: the padding may be absent */
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        slm_gguf_tensor *t = &g->tensors[i].t;
        slm_status st = place_tensor(g, t, expected, err);
        if (st) return st;
        size_t padded;
        if (!pad_to(t->size, g->alignment, &padded) || !slm_add_size(expected, padded, &expected))
            return slm_errf(err, SLM_ERR_CORRUPT, "tensor '%.64s': data offsets overflow", t->name);
    }
    return SLM_OK;
}

/* ---- open and close -------------------------------------------------------------------------- */

/* Validate the bytes g->base[0..size) and build the indexes. */
static slm_status parse_file(slm_gguf *g, char *err) {
    cursor c = {.base = g->base, .size = g->size, .err = err};
    uint64_t n_tensors = 0, n_kv = 0;
    slm_status st;
    if ((st = parse_header(&c, g, &n_tensors, &n_kv))) return st;
    if ((st = parse_kvs(&c, g, n_kv))) return st;
    if ((st = parse_tensor_infos(&c, g, n_tensors))) return st;
    if ((st = copy_names(g, err))) return st;
    if ((st = index_names(g, &g->key_index, slm_gguf_key, g->n_kv, "key", err))) return st;
    if ((st = index_names(g, &g->tensor_index, tensor_name_at, g->n_tensors, "tensor name", err))) return st;
    if ((st = resolve_alignment(g, err))) return st;
    return place_tensors(g, c.pos, err);
}

static slm_status new_gguf(slm_gguf **out, char *err) {
    *out = slm_calloc(1, sizeof **out);
    return *out ? SLM_OK : slm_errf(err, SLM_ERR_NOMEM, "out of memory");
}

slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out, char *err) {
    slm_gguf *g = NULL; /* owned until handed to *out */
    slm_status st;
    *out = NULL;
    if (!data && size) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL buffer of %zu bytes", size);
    if ((st = new_gguf(&g, err))) return st;
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    if ((st = parse_file(g, err))) {
        slm_gguf_close(g);
        return st;
    }
    *out = g;
    return SLM_OK;
}

/* Read the whole file into g->buf (the no_mmap path). The bytes start on a page boundary,
 * as a mapping would, so tensor data is aligned like the file (alignments up to a page). */
#define GGUF_READ_ALIGN 4096u

static slm_status read_whole(slm_gguf *g, int fd, const char *path, char *err) {
    size_t done = 0, cap;
    uint8_t *dst;
    if (!slm_add_size(g->size, GGUF_READ_ALIGN, &cap) || !(g->buf = slm_malloc(cap)))
        return slm_errf(err, SLM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, g->size);
    dst = (uint8_t *)g->buf + (GGUF_READ_ALIGN - (uintptr_t)g->buf % GGUF_READ_ALIGN) % GGUF_READ_ALIGN;
    while (done < g->size) {
        ssize_t r = read(fd, dst + done, g->size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return slm_errf(err, SLM_ERR_IO, "%s: read: %s", path, r < 0 ? strerror(errno) : "unexpected end");
        done += (size_t)r;
    }
    g->base = dst;
    return SLM_OK;
}

static slm_status map_whole(slm_gguf *g, int fd, const char *path, bool lock, char *err) {
    if (g->size == 0) { /* mmap refuses length 0; the parser reports the empty file */
        g->base = (const uint8_t *)"";
        return SLM_OK;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) return slm_errf(err, SLM_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    g->map = m;
    g->base = m;
    if (lock) g->locked = mlock(m, g->size) == 0; /* best effort, by contract */
    return SLM_OK;
}

/* Fill g with the file's bytes, mapped or read. */
static slm_status load_file(slm_gguf *g, const char *path, const slm_gguf_open_opts *opts, char *err) {
    struct stat sb;
    slm_status st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block the open */
    if (fd < 0) return slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        st = slm_errf(err, SLM_ERR_IO, "%s: stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = slm_errf(err, SLM_ERR_IO, "%s: not a regular file", path);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = slm_errf(err, SLM_ERR_LIMIT, "%s: file too large for this address space", path);
    } else {
        g->size = (size_t)sb.st_size;
        if (opts && opts->no_mmap) {
            st = read_whole(g, fd, path, err);
            if (!st && opts->mlock) g->locked = mlock(g->base, g->size) == 0;
        } else {
            st = map_whole(g, fd, path, opts && opts->mlock, err);
        }
    }
    close(fd); /* the mapping stays valid without the descriptor */
    return st;
}

slm_status slm_gguf_open(const char *path, const slm_gguf_open_opts *opts, slm_gguf **out, char *err) {
    slm_gguf *g = NULL; /* owned until handed to *out */
    char detail[SLM_ERR_LEN]; /* parse errors, prefixed with the path */
    slm_status st;
    *out = NULL;
    if (!path) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL path");
    if ((st = new_gguf(&g, err))) return st;
    if ((st = load_file(g, path, opts, err))) goto fail;
    if ((st = parse_file(g, err ? detail : NULL))) {
        slm_errf(err, st, "%s: %s", path, detail);
        goto fail;
    }
    *out = g;
    return SLM_OK;
fail:
    slm_gguf_close(g);
    return st;
}

void slm_gguf_close(slm_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) slm_free(g->kvs[i].str_off);
    slm_free(g->names);
    slm_free(g->kvs);
    slm_free(g->tensors);
    slm_free(g->key_index.slots);
    slm_free(g->tensor_index.slots);
    if (g->locked) munlock(g->base, g->size);
    if (g->map) munmap(g->map, g->size);
    slm_free(g->buf);
    slm_free(g);
}

bool slm_gguf_is_mapped(const slm_gguf *g) { return g->map != NULL; }

void *slm_gguf_mut(slm_gguf *g, const void *data) {
    const uint8_t *p = data;
    if (!g->buf || p < g->base || p >= g->base + g->size) return NULL;
    return (uint8_t *)g->buf + (p - (const uint8_t *)g->buf); /* base lies inside buf */
}

void slm_gguf_release(slm_gguf *g, const void *data, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), map = (uintptr_t)g->map;
    const uintptr_t p = (uintptr_t)data;
    if (!g->map || p < map || size > g->size || p - map > g->size - size) return;
    const uintptr_t a = (p + page - 1) / page * page, b = (p + size) / page * page; /* whole pages inside */
    if (a < b) madvise((void *)a, b - a, MADV_DONTNEED); /* fails harmlessly on locked pages */
}

uint32_t slm_gguf_version(const slm_gguf *g) { return g->version; }
uint64_t slm_gguf_file_size(const slm_gguf *g) { return g->size; }
uint64_t slm_gguf_alignment(const slm_gguf *g) { return g->alignment; }
uint64_t slm_gguf_data_offset(const slm_gguf *g) { return g->data_offset; }

/* ---- metadata accessors ---------------------------------------------------------------------- */

int64_t slm_gguf_n_kv(const slm_gguf *g) { return g->n_kv; }

int64_t slm_gguf_find_key(const slm_gguf *g, const char *key) { return index_find(&g->key_index, key); }

static const gguf_kv *kv_at(const slm_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const char *slm_gguf_key(const slm_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

slm_gguf_vtype slm_gguf_kv_type(const slm_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->type : SLM_GGUF_VTYPE_COUNT;
}

/* The pair for key, or NULL with SLM_ERR_NOT_FOUND in *st. */
static const gguf_kv *kv_find(const slm_gguf *g, const char *key, slm_status *st, char *err) {
    const gguf_kv *kv = kv_at(g, slm_gguf_find_key(g, key));
    *st = kv ? SLM_OK : slm_errf(err, SLM_ERR_NOT_FOUND, "key '%s' not found", key ? key : "(null)");
    return kv;
}

static slm_status wrong_type(const gguf_kv *kv, const char *want, char *err) {
    return slm_errf(err, SLM_ERR_CORRUPT, "key '%.64s' has type %s, cannot be read as %s", kv->key,
                    slm_gguf_vtype_name(kv->type), want);
}

/* An integer pair's value within [lo, hi] (given as signed and unsigned bounds). */
static slm_status get_int(const slm_gguf *g, const char *key, int64_t lo, uint64_t hi, const char *want, int64_t *s,
                          uint64_t *u, char *err) {
    slm_status st;
    const gguf_kv *kv = kv_find(g, key, &st, err);
    if (!kv) return st;
    if (!vtype_is_int(kv->type)) return wrong_type(kv, want, err);
    load_int(kv->type, kv->val, s, u);
    bool fits = vtype_is_signed(kv->type) ? *s >= lo && (*s < 0 || (uint64_t)*s <= hi) : *u <= hi;
    if (!fits) return slm_errf(err, SLM_ERR_CORRUPT, "key '%.64s': value does not fit in %s", kv->key, want);
    if (!vtype_is_signed(kv->type)) *s = (int64_t)*u; /* *u <= hi <= INT64_MAX for i64 */
    else *u = (uint64_t)*s;
    return SLM_OK;
}

slm_status slm_gguf_get_u32(const slm_gguf *g, const char *key, uint32_t *out, char *err) {
    int64_t s = 0;
    uint64_t u = 0;
    slm_status st = get_int(g, key, 0, UINT32_MAX, "u32", &s, &u, err);
    if (!st) *out = (uint32_t)u;
    return st;
}

slm_status slm_gguf_get_i64(const slm_gguf *g, const char *key, int64_t *out, char *err) {
    int64_t s = 0;
    uint64_t u = 0;
    slm_status st = get_int(g, key, INT64_MIN, INT64_MAX, "i64", &s, &u, err);
    if (!st) *out = s;
    return st;
}

slm_status slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out, char *err) {
    slm_status st;
    const gguf_kv *kv = kv_find(g, key, &st, err);
    if (!kv) return st;
    if (kv->type != SLM_GGUF_F32 && kv->type != SLM_GGUF_F64) return wrong_type(kv, "f32", err);
    *out = (float)load_f64(kv->type, kv->val);
    return SLM_OK;
}

slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out, char *err) {
    slm_status st;
    const gguf_kv *kv = kv_find(g, key, &st, err);
    if (!kv) return st;
    if (kv->type != SLM_GGUF_BOOL) return wrong_type(kv, "bool", err);
    *out = kv->val[0] != 0; /* any non-zero byte is true */
    return SLM_OK;
}

slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out, char *err) {
    slm_status st;
    const gguf_kv *kv = kv_find(g, key, &st, err);
    if (!kv) return st;
    if (kv->type != SLM_GGUF_STRING) return wrong_type(kv, "string", err);
    out->ptr = (const char *)kv->val;
    out->len = kv->n;
    return SLM_OK;
}

slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, slm_gguf_vtype *elem_type, uint64_t *n, char *err) {
    slm_status st;
    const gguf_kv *kv = kv_find(g, key, &st, err);
    if (!kv) return st;
    if (kv->type != SLM_GGUF_ARRAY) return wrong_type(kv, "array", err);
    *elem_type = kv->elem_type;
    *n = kv->n;
    return SLM_OK;
}

/* Array pair kv_index when element i exists, else NULL. */
static const gguf_kv *arr_at(const slm_gguf *g, int64_t kv_index, uint64_t i) {
    const gguf_kv *kv = kv_at(g, kv_index);
    return kv && kv->type == SLM_GGUF_ARRAY && i < kv->n ? kv : NULL;
}

slm_gguf_str slm_gguf_arr_str(const slm_gguf *g, int64_t kv_index, uint64_t i) {
    slm_gguf_str s = {NULL, 0};
    const gguf_kv *kv = arr_at(g, kv_index, i);
    if (!kv || kv->elem_type != SLM_GGUF_STRING) return s;
    const uint8_t *p = kv->val + kv->str_off[i];
    memcpy(&s.len, p, sizeof s.len);
    s.ptr = (const char *)p + sizeof s.len;
    return s;
}

int64_t slm_gguf_arr_i64(const slm_gguf *g, int64_t kv_index, uint64_t i) {
    int64_t s = 0;
    uint64_t u = 0;
    const gguf_kv *kv = arr_at(g, kv_index, i);
    if (!kv || vtype_size[kv->elem_type] == 0) return 0;
    if (!vtype_is_int(kv->elem_type)) return f64_to_i64(load_f64(kv->elem_type, kv->val + i * vtype_size[kv->elem_type]));
    load_int(kv->elem_type, kv->val + i * vtype_size[kv->elem_type], &s, &u);
    return vtype_is_signed(kv->elem_type) ? s : (int64_t)u;
}

double slm_gguf_arr_f64(const slm_gguf *g, int64_t kv_index, uint64_t i) {
    const gguf_kv *kv = arr_at(g, kv_index, i);
    if (!kv || vtype_size[kv->elem_type] == 0) return 0;
    return load_f64(kv->elem_type, kv->val + i * vtype_size[kv->elem_type]);
}

const void *slm_gguf_arr_data(const slm_gguf *g, int64_t kv_index) {
    const gguf_kv *kv = kv_at(g, kv_index);
    return kv && kv->type == SLM_GGUF_ARRAY ? kv->val : NULL;
}

/* ---- printing -------------------------------------------------------------------------------- */

/* Append s (len bytes) to buf with C-style escapes, stopping before cap-1 bytes. */
static void escape_into(char *buf, size_t cap, const char *s, uint64_t len) {
    size_t o = strlen(buf);
    for (uint64_t i = 0; i < len; i++) {
        uint8_t ch = (uint8_t)s[i];
        char tmp[8];
        if (ch == '\n') snprintf(tmp, sizeof tmp, "\\n");
        else if (ch == '\t') snprintf(tmp, sizeof tmp, "\\t");
        else if (ch == '\r') snprintf(tmp, sizeof tmp, "\\r");
        else if (ch == '"' || ch == '\\') snprintf(tmp, sizeof tmp, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) snprintf(tmp, sizeof tmp, "\\x%02x", ch);
        else snprintf(tmp, sizeof tmp, "%c", ch);
        size_t n = strlen(tmp);
        if (o + n >= cap) break;
        memcpy(buf + o, tmp, n + 1);
        o += n;
    }
}

const char *slm_gguf_value_str(const slm_gguf *g, int64_t i, char *buf, size_t cap) {
    const gguf_kv *kv = kv_at(g, i);
    int64_t s = 0;
    uint64_t u = 0;
    if (!buf || cap == 0) return buf;
    buf[0] = '\0';
    if (!kv) return buf;
    if (kv->type == SLM_GGUF_STRING) {
        escape_into(buf, cap, (const char *)kv->val, kv->n);
    } else if (kv->type == SLM_GGUF_ARRAY) {
        snprintf(buf, cap, "[%s; %" PRIu64 "]", slm_gguf_vtype_name(kv->elem_type), kv->n);
    } else if (kv->type == SLM_GGUF_BOOL) {
        snprintf(buf, cap, "%s", kv->val[0] ? "true" : "false");
    } else if (kv->type == SLM_GGUF_F32 || kv->type == SLM_GGUF_F64) { /* digits that round-trip */
        snprintf(buf, cap, kv->type == SLM_GGUF_F32 ? "%.9g" : "%.17g", load_f64(kv->type, kv->val));
    } else {
        load_int(kv->type, kv->val, &s, &u);
        if (vtype_is_signed(kv->type)) snprintf(buf, cap, "%" PRId64, s);
        else snprintf(buf, cap, "%" PRIu64, u);
    }
    return buf;
}

/* ---- tensor accessors ------------------------------------------------------------------------ */

int64_t slm_gguf_n_tensors(const slm_gguf *g) { return g->n_tensors; }

const slm_gguf_tensor *slm_gguf_tensor_at(const slm_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i].t : NULL;
}

const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *g, const char *name) {
    return slm_gguf_tensor_at(g, index_find(&g->tensor_index, name));
}

int64_t slm_gguf_tensor_nelements(const slm_gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* validated at open not to overflow */
}

const uint8_t *slm_gguf_kv_raw(const slm_gguf *g, int64_t i, slm_gguf_vtype *elem_type, uint64_t *n, size_t *bytes) {
    const gguf_kv *kv = kv_at(g, i);
    if (!kv) return NULL;
    *elem_type = kv->elem_type;
    *n = kv->n;
    *bytes = kv->bytes;
    return kv->val;
}
