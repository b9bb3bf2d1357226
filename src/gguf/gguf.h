/*
 * gguf/gguf.h: read and write GGUF files (versions 2 and 3), the model format of the
 * llama.cpp ecosystem.
 *
 * Reading maps the file (or borrows a caller's buffer) and validates everything before
 * anything is handed out: header counts against named limits, every string and array
 * length, every key's value type, every tensor's type, rank, dimensions, byte size,
 * alignment and data range against the file size. After slm_gguf_open returns SLM_OK every
 * accessor is in bounds; a hostile file gets SLM_ERR_CORRUPT (or _LIMIT/_UNSUPPORTED) and a
 * one-line detail naming what is wrong, never a crash or an out-of-bounds read.
 * Rules shared with the reference runtime: keys and tensor names are unique;
 * general.alignment, if present, is a u32 power of two; dims are >= 0 (0 is allowed); tensor
 * offsets follow the info order, each tensor padded to the alignment (offset i = sum of the
 * padded sizes before it), which makes them aligned and disjoint. An unknown tensor type id
 * is SLM_ERR_UNSUPPORTED (newer ecosystem types), an unknown value type SLM_ERR_CORRUPT.
 *
 * Zero copy: tensor data and string values are views into the mapping and live as long as
 * the slm_gguf. Keys and tensor names are NUL-terminated copies (they are small and used
 * as C strings). String *values* are (ptr, len) views and are NOT NUL-terminated.
 *
 * Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
 * key/value pairs (string key, u32 value type, value), then n_tensors tensor infos
 * (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to
 * general.alignment (default 32), then the data section; offsets are relative to it.
 *
 * Thread-safety: an open slm_gguf is immutable; any number of threads may read it.
 * A writer is single-threaded. Non-goals: GGUF v1, big-endian files, in-place editing.
 */
#ifndef SLMESH_GGUF_H
#define SLMESH_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"
#include "slmesh/status.h"

/* ---- limits (anything larger is refused with SLM_ERR_LIMIT) -------------------------------- */
#define SLM_GGUF_MAX_KV        65536      /* metadata pairs; real models have < 100 */
#define SLM_GGUF_MAX_TENSORS   1048576    /* tensors; a 405B model has ~1.1k */
#define SLM_GGUF_MAX_KEY_LEN   65535      /* bytes in a key or tensor name */
#define SLM_GGUF_MAX_STR_LEN   (1u << 28) /* bytes in one string value (chat templates are KiB) */
#define SLM_GGUF_MAX_ARR_LEN   (1u << 26) /* elements in one array (vocabularies are ~256k) */
#define SLM_GGUF_MAX_DIMS      4          /* tensor rank, as in ggml */
#define SLM_GGUF_DEFAULT_ALIGN 32         /* general.alignment when absent */

/* Metadata value types, as stored in the file. */
typedef enum slm_gguf_vtype {
    SLM_GGUF_U8 = 0,
    SLM_GGUF_I8 = 1,
    SLM_GGUF_U16 = 2,
    SLM_GGUF_I16 = 3,
    SLM_GGUF_U32 = 4,
    SLM_GGUF_I32 = 5,
    SLM_GGUF_F32 = 6,
    SLM_GGUF_BOOL = 7,
    SLM_GGUF_STRING = 8,
    SLM_GGUF_ARRAY = 9,
    SLM_GGUF_U64 = 10,
    SLM_GGUF_I64 = 11,
    SLM_GGUF_F64 = 12,
    SLM_GGUF_VTYPE_COUNT
} slm_gguf_vtype;

/* A string value: a view into the file, not NUL-terminated. */
typedef struct slm_gguf_str {
    const char *ptr; /* first byte (may be NULL when len == 0) */
    uint64_t len;    /* bytes */
} slm_gguf_str;

/* A tensor's description; data points into the mapping. */
typedef struct slm_gguf_tensor {
    const char *name;       /* NUL-terminated, owned by the slm_gguf */
    slm_type type;          /* element type (a known id; may lack kernels: check traits) */
    uint32_t n_dims;        /* 1..SLM_GGUF_MAX_DIMS */
    int64_t ne[SLM_GGUF_MAX_DIMS]; /* elements per dimension, ne[0] contiguous; unused = 1 */
    uint64_t offset;        /* byte offset of the data from the start of the data section */
    size_t size;            /* bytes of data */
    const void *data;       /* first byte; aligned to the file's alignment (up to 4096) when
                               the file was mapped or read, as the buffer allows when borrowed */
} slm_gguf_tensor;

typedef struct slm_gguf slm_gguf; /* an open, validated file */

typedef struct slm_gguf_open_opts {
    bool no_mmap;   /* read the file into memory instead of mapping it */
    bool mlock;     /* lock the pages in memory (best effort; failure is not an error) */
} slm_gguf_open_opts;

/* Open and validate the file at path. opts may be NULL (mmap, no lock). On success *out
 * owns the mapping; close it with slm_gguf_close. On failure *out is NULL and err (may be
 * NULL, SLM_ERR_LEN bytes) says what is wrong. */
slm_status slm_gguf_open(const char *path, const slm_gguf_open_opts *opts, slm_gguf **out, char *err);

/* Same, over a caller's buffer, which is borrowed: it must outlive the slm_gguf. Used by
 * the fuzzer and by tests; data need not be aligned (tensor data then may not be either). */
slm_status slm_gguf_open_memory(const void *data, size_t size, slm_gguf **out, char *err);

/* Unmap and free; NULL is allowed. */
void slm_gguf_close(slm_gguf *g);

/* Whether g maps its file (slm_gguf_open without no_mmap). */
bool slm_gguf_is_mapped(const slm_gguf *g);

/* The writable address of data (a pointer into g's bytes, e.g. a tensor's data) when g
 * read its file into its own buffer (no_mmap), for in-place transforms such as repacking;
 * NULL for a mapping, a borrowed buffer, or a pointer outside the file. */
void *slm_gguf_mut(slm_gguf *g, const void *data);

/* The caller will not read bytes [data, data + size) of g again: a mapping drops the
 * whole pages inside the range from the process's memory (they would come back from the
 * file if touched). Best effort; nothing happens for a buffer. */
void slm_gguf_release(slm_gguf *g, const void *data, size_t size);

uint32_t slm_gguf_version(const slm_gguf *g);   /* 2 or 3 */
uint64_t slm_gguf_file_size(const slm_gguf *g); /* bytes */
uint64_t slm_gguf_alignment(const slm_gguf *g); /* general.alignment or the default */
uint64_t slm_gguf_data_offset(const slm_gguf *g); /* file offset of the tensor data section */

/* ---- metadata ------------------------------------------------------------------------------ */

int64_t slm_gguf_n_kv(const slm_gguf *g);
/* Index of key, or -1 when absent. */
int64_t slm_gguf_find_key(const slm_gguf *g, const char *key);
/* Key of pair i (NUL-terminated, owned by g), or NULL when i is not in [0, n_kv). */
const char *slm_gguf_key(const slm_gguf *g, int64_t i);
/* Value type of pair i (SLM_GGUF_VTYPE_COUNT when i is out of range). */
slm_gguf_vtype slm_gguf_kv_type(const slm_gguf *g, int64_t i);
/* Short name of a value type ("u32", "string", "array"); "unknown" when out of range. */
const char *slm_gguf_vtype_name(slm_gguf_vtype t);

/* Typed getters by key. SLM_ERR_NOT_FOUND when absent; SLM_ERR_CORRUPT when the stored
 * type cannot represent the request. Integer getters accept any integer type whose value
 * fits; float getters accept F32 and F64 (F64 narrowed). err may be NULL. */
slm_status slm_gguf_get_u32(const slm_gguf *g, const char *key, uint32_t *out, char *err);
slm_status slm_gguf_get_i64(const slm_gguf *g, const char *key, int64_t *out, char *err);
slm_status slm_gguf_get_f32(const slm_gguf *g, const char *key, float *out, char *err);
slm_status slm_gguf_get_bool(const slm_gguf *g, const char *key, bool *out, char *err);
slm_status slm_gguf_get_str(const slm_gguf *g, const char *key, slm_gguf_str *out, char *err);

/* Arrays. slm_gguf_get_arr gives the element type and count (SLM_ERR_CORRUPT if the key is
 * not an array). Elements: strings by index (O(1): offsets are indexed at open), numbers
 * through slm_gguf_arr_f64 / _i64 (any numeric element type, converted), or the raw
 * little-endian bytes (possibly unaligned) through slm_gguf_arr_data. Nested arrays are
 * validated and skipped at open but not otherwise exposed. */
slm_status slm_gguf_get_arr(const slm_gguf *g, const char *key, slm_gguf_vtype *elem_type,
                            uint64_t *n, char *err);
slm_gguf_str slm_gguf_arr_str(const slm_gguf *g, int64_t kv_index, uint64_t i);
int64_t slm_gguf_arr_i64(const slm_gguf *g, int64_t kv_index, uint64_t i);
double slm_gguf_arr_f64(const slm_gguf *g, int64_t kv_index, uint64_t i);
const void *slm_gguf_arr_data(const slm_gguf *g, int64_t kv_index);
/* Out of range, or the wrong element type: arr_str gives {NULL, 0}, arr_i64/_f64 give 0
 * (floats converted to i64 truncate and saturate), arr_data gives NULL. */

/* Scalar value of pair i for printing (`slmesh info`): numbers and bools formatted, strings
 * copied with escapes and truncated to cap-1 bytes, arrays as "[type; n]". Returns buf. */
const char *slm_gguf_value_str(const slm_gguf *g, int64_t i, char *buf, size_t cap);

/* ---- tensors ------------------------------------------------------------------------------- */

int64_t slm_gguf_n_tensors(const slm_gguf *g);
/* Tensor i (0 <= i < n_tensors), or NULL when out of range. Owned by g. */
const slm_gguf_tensor *slm_gguf_tensor_at(const slm_gguf *g, int64_t i);
/* Tensor by name, or NULL. O(1) average (hashed at open). */
const slm_gguf_tensor *slm_gguf_find_tensor(const slm_gguf *g, const char *name);
/* Elements of a tensor (product of ne). */
int64_t slm_gguf_tensor_nelements(const slm_gguf_tensor *t);

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct slm_gguf_writer slm_gguf_writer;

/* A writer collects metadata and tensors in memory, then writes a v3 file. Metadata is
 * written in insertion order; setting a key again replaces its value. Tensor data is
 * borrowed and must stay valid until slm_gguf_writer_write returns. */
slm_status slm_gguf_writer_create(slm_gguf_writer **out);
void slm_gguf_writer_destroy(slm_gguf_writer *w); /* NULL allowed */

slm_status slm_gguf_writer_set_u32(slm_gguf_writer *w, const char *key, uint32_t v);
slm_status slm_gguf_writer_set_i32(slm_gguf_writer *w, const char *key, int32_t v);
slm_status slm_gguf_writer_set_u64(slm_gguf_writer *w, const char *key, uint64_t v);
slm_status slm_gguf_writer_set_f32(slm_gguf_writer *w, const char *key, float v);
slm_status slm_gguf_writer_set_bool(slm_gguf_writer *w, const char *key, bool v);
slm_status slm_gguf_writer_set_str(slm_gguf_writer *w, const char *key, const char *v);
/* Numeric array: n elements of elem_type copied from data (little-endian host layout). */
slm_status slm_gguf_writer_set_arr(slm_gguf_writer *w, const char *key, slm_gguf_vtype elem_type,
                                   const void *data, uint64_t n);
/* String array: n NUL-terminated strings, copied. */
slm_status slm_gguf_writer_set_str_arr(slm_gguf_writer *w, const char *key, const char *const *strs,
                                       uint64_t n);
/* Copy every metadata pair of an open file (used by quantize), except keys for which skip
 * returns true (skip may be NULL). */
slm_status slm_gguf_writer_copy_kv(slm_gguf_writer *w, const slm_gguf *src,
                                   bool (*skip)(const char *key, void *ctx), void *ctx);

/* Add a tensor. ne[0..n_dims) as in slm_gguf_tensor; size must equal the row bytes of type
 * times the other dimensions. data is borrowed until write. */
slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, slm_type type, uint32_t n_dims,
                                      const int64_t *ne, const void *data, size_t size, char *err);

/* Write the file (atomically: to path.tmp, then renamed). */
slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path, char *err);
/* Or into a malloc'd buffer the caller frees with slm_free (tests, fuzz seeds). */
slm_status slm_gguf_writer_to_memory(slm_gguf_writer *w, void **out, size_t *size, char *err);

#endif /* SLMESH_GGUF_H */
