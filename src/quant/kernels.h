/*
 * quant/kernels.h: the kernel dispatch table (one set of per-type kernels per instruction
 * set, chosen once per process) and the matrix-vector products built on it.
 *
 * The type table (quant.h) holds the scalar kernels, which are the specification. A kernel
 * set here holds, for every type, the fastest kernels of one ISA ("scalar", "avx2",
 * "avx512"), falling back to the scalar kernel wherever that ISA has none. The set used by
 * slm_quant_kernels() is chosen at first use from the CPU's features (__builtin_cpu_supports)
 * and the environment variable SLMESH_KERNELS=scalar|avx2|avx512 (read once; a set the CPU
 * or the build cannot run falls back to the best one below it; anything else means "auto").
 * "auto" is the best set the CPU runs (the avx512 set's own kernels are checked on SIMDe's
 * emulation by the tests and not yet timed on hardware; SLMESH_KERNELS=avx2 opts out).
 *
 * Callers that want the fast kernels use slm_quant_kernels()->vec_dot[type] (or the
 * matvec helpers below) instead of slm_type_traits_of(type)->vec_dot (always scalar).
 *
 * Invariants: dequantization (to_float) of every set is bit-identical to the scalar one;
 * from_float and act produce the same blocks; vec_dot agrees with the scalar one within the named
 * tolerance of tests/test_quant_kernels.c.
 * Thread-safety: selection happens once under pthread_once; the sets are immutable after
 * it, so every function here may be called from any number of threads.
 * Non-goals: GPU backends; picking per matrix shape (one set per process).
 */
#ifndef SLMESH_QUANT_KERNELS_H
#define SLMESH_QUANT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"
#include "slmesh/status.h"

typedef enum slm_quant_isa {
    SLM_QUANT_ISA_SCALAR = 0, /* plain C: the specification */
    SLM_QUANT_ISA_AVX2,       /* AVX2 + FMA (every such CPU also has F16C) */
    SLM_QUANT_ISA_AVX512,     /* AVX-512 F/BW/VL/VNNI */
    SLM_QUANT_ISA_COUNT
} slm_quant_isa;

/* A tiled matrix product (prompt processing, and decoding with several weight rows at
 * once): for rows r in [r0, r1) of W (row r at
 * W + r * w_row_bytes, n elements) and activation rows v in [0, n_vec) (row v at
 * xq + v * xq_stride, in the type's vec_dot_type), y[v * y_stride + r] = the set's
 * vec_dot(n, W row r, activation row v), bit for bit: a tile only shares the loads of
 * weight and activation blocks between several outputs, each output keeps the vec_dot's
 * own accumulation order. All buffers borrowed. */
typedef void (*slm_gemm_fn)(int64_t n, const void *W, size_t w_row_bytes, int64_t r0, int64_t r1,
                            const void *xq, size_t xq_stride, int64_t n_vec, float *y, size_t y_stride);

/* y[i] += a * x[i] for i < n, x of a plain float type (F32, F16) converted exactly, one
 * float multiply and one float add per element (no FMA), so every set gives the same bits
 * (attention's weighted sum of V rows). All buffers borrowed. */
typedef void (*slm_axpy_fn)(int64_t n, float a, const void *x, float *y);

/* ---- packed weights -----------------------------------------------------------------------
 * An ISA may store a matrix's rows in groups of SLM_QUANT_PACK_ROWS rows interleaved in its
 * own layout, so that one tile reads one linear stream and finds the values of several rows
 * side by side in a vector (no horizontal sums per block). A group holds exactly the bytes
 * of its rows (the model repacks in place, at load); rows after the last whole group stay
 * in the file's layout. Packing never changes a value, and every packed output equals the
 * set's vec_dot bit for bit. */
#define SLM_QUANT_PACK_ROWS 8
/* Longest row a packed layout is used for: the kernels keep a per-chunk table of the
 * activation blocks' scales on the stack (the model leaves longer rows unpacked). */
#define SLM_QUANT_PACK_MAX_COLS 131072

/* Pack 8 rows (row i at rows + i * row_bytes, n elements each) into group (8 * row_bytes
 * bytes, not overlapping rows). Buffers borrowed. */
typedef void (*slm_pack_fn)(const void *rows, size_t row_bytes, int64_t n, void *group);

/* The inverse: group -> its 8 rows in the file's layout (row i at rows + i * row_bytes). */
typedef void (*slm_unpack_fn)(const void *group, int64_t n, void *rows, size_t row_bytes);

/* Groups [g0, g1) of a packed matrix (group g at P + g * 8 * row_bytes) against activation
 * rows v < n_vec (row v at xq + v * xq_stride, in the type's vec_dot_type):
 * y[v * y_stride + 8 g + i] = vec_dot(n, original row 8 g + i, activation row v), bit for
 * bit. tab: the rows' table (slm_quant_pack_table) for the types whose activations are
 * Q8_0, so that the products of one step share it, or NULL: the kernel makes its own per
 * chunk of rows (the K types always ignore it). All buffers borrowed. */
typedef void (*slm_gemm_packed_fn)(int64_t n, const void *P, size_t row_bytes, int64_t g0, int64_t g1,
                                   const void *xq, size_t xq_stride, int64_t n_vec, float *y, size_t y_stride,
                                   const float *tab);

/* Fill rows [v0, v1) of the table of n_vec Q8_0 activation rows of n values (row v at
 * xq + v * xq_stride) that the packed kernels read: with nb = n / 32, tab[v * nb + b] is
 * block b's scale as a float and tab[(n_vec + v) * nb + b] 8 x the sum of its 32 quants
 * (exact; the offsets of Q4_0 and Q5_0, 8 and 16, come off as one or two subtractions).
 * Row-major: a row's entries are its own cache lines (a stride of 2^k rows would put a
 * tile's reads in a few L1 sets). SLM_QUANT_PACK_TABLE_FLOATS(n_vec, n) floats; threads
 * may fill disjoint row ranges. */
typedef void (*slm_pack_table_fn)(const void *xq, size_t xq_stride, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                                  float *tab);
#define SLM_QUANT_PACK_TABLE_FLOATS(n_vec, n) (2 * (size_t)(n_vec) * (size_t)((n) / 32))

/* The kernels of one ISA, indexed by type id. A NULL entry means slmesh has no such kernel
 * for that type at all (same as the type table). */
typedef struct slm_quant_kernel_set {
    slm_quant_isa isa;
    const char *name;                           /* "scalar", "avx2", "avx512" */
    slm_to_float_fn to_float[SLM_TYPE_COUNT];
    slm_from_float_fn from_float[SLM_TYPE_COUNT];
    slm_vec_dot_fn vec_dot[SLM_TYPE_COUNT];     /* x of this type, y of its vec_dot_type */
    slm_gemm_fn gemm[SLM_TYPE_COUNT];           /* tiled products; NULL: a vec_dot loop */
    slm_axpy_fn axpy[SLM_TYPE_COUNT];           /* F32, F16 only; NULL elsewhere */
    slm_from_float_fn act[SLM_TYPE_COUNT];      /* activation quantizers (slm_quant_act_convert) */
    slm_pack_fn pack[SLM_TYPE_COUNT];           /* packed layout: all three set, or all NULL */
    slm_unpack_fn unpack[SLM_TYPE_COUNT];
    slm_gemm_packed_fn gemm_packed[SLM_TYPE_COUNT];
    slm_pack_table_fn pack_table;               /* the packed kernels' activation table; NULL: portable C */
} slm_quant_kernel_set;

/* The set chosen for this process (CPU features and SLMESH_KERNELS, decided at first use).
 * Static storage, never NULL. */
const slm_quant_kernel_set *slm_quant_kernels(void);

/* The set of one ISA, or NULL when this build or this CPU cannot run it. Static storage.
 * Used by tests and benchmarks to compare ISAs. */
const slm_quant_kernel_set *slm_quant_kernels_isa(slm_quant_isa isa);

/* Name of an ISA ("avx2"), or "unknown". */
const char *slm_quant_isa_name(slm_quant_isa isa);

/* Convert an activation row x[n] to vt (a vec_dot_type other than F32) into dst, the way
 * the reference runtime's x86 matrix product converts its right-hand side: Q8_0 and Q8_1
 * with id = 127 / amax rounded half to even (quant/act.h says why), every other type with
 * its from_float. Every set gives the same bytes. Buffers borrowed. */
void slm_quant_act_convert(slm_type vt, const float *x, void *dst, int64_t n);

/* ---- matrix-vector products --------------------------------------------------------------
 * W is a row-major matrix of `rows` rows of `cols` elements of `type` (each row
 * slm_type_row_bytes(type, cols) bytes, as in a GGUF tensor with ne[0] = cols). x has cols
 * floats; y receives rows floats: y[r] = dot(W row r, x), computed with the chosen set's
 * vec_dot against x converted once to the type's vec_dot_type. Buffers are borrowed. */

/* Bytes of scratch needed to hold x converted for type (0 when x needs no conversion, i.e.
 * the vec_dot_type is F32). Returns SIZE_MAX when type has no kernels or cols is not a
 * multiple of the block sizes. */
size_t slm_quant_matvec_scratch_bytes(slm_type type, int64_t cols);

/* Convert x (cols floats) for type's dot products (slm_quant_act_convert, as the forward
 * pass does) into scratch (slm_quant_matvec_scratch_bytes
 * bytes, aligned at least as a float, as malloc gives; may be NULL when that is 0) and set *xq to the converted row (scratch, or x itself
 * for F32). SLM_ERR_INVALID_ARG on a type without kernels or a bad cols. */
slm_status slm_quant_matvec_prepare(slm_type type, int64_t cols, const float *x, void *scratch,
                                    const void **xq);

/* y[r] = dot(W row r, xq) for r in [row_begin, row_end): the piece one thread does. xq is
 * what slm_quant_matvec_prepare produced; y is the full output vector (only the range is
 * written). Arguments must be valid (prepare checked type and cols). */
void slm_quant_matvec_rows(slm_type type, const void *W, int64_t cols, const void *xq,
                           int64_t row_begin, int64_t row_end, float *y);

/* The same for n_vec vectors at once (prompt processing): vector v's prepared row starts
 * at (const char *)xq + v * xq_stride bytes and its output at y + v * y_stride floats.
 * Rows outermost, so each weight row is read once for all vectors. Uses the set's gemm
 * whenever it has one (any n_vec: its decode tiles run several rows side by side), the
 * vec_dot loop otherwise; the values are vec_dot's either way. */
void slm_quant_matmul_rows(slm_type type, const void *W, int64_t cols, const void *xq,
                           size_t xq_stride, int64_t n_vec, int64_t row_begin, int64_t row_end,
                           float *y, size_t y_stride);

/* The same over a matrix of `rows` rows whose first rows - rows % 8 are packed by this
 * process's set (slm_quant_kernels()->pack[type]; the rest in the file's layout):
 * row_begin must be a multiple of SLM_QUANT_PACK_ROWS, and so must row_end unless it is
 * `rows`. Same values as slm_quant_matmul_rows on the unpacked matrix. */
void slm_quant_matmul_packed_rows(slm_type type, const void *W, int64_t cols, int64_t rows, const void *xq,
                                  size_t xq_stride, int64_t n_vec, int64_t row_begin, int64_t row_end,
                                  float *y, size_t y_stride, const float *tab);

/* Whether type's packed kernel reads a table (slm_quant_pack_table): its activations are
 * Q8_0 and this process's set packs it. */
bool slm_quant_pack_uses_table(slm_type type);

/* The table of slm_gemm_packed_fn for rows [v0, v1) of n_vec (see slm_pack_table_fn), by
 * this process's set. Buffers borrowed. */
void slm_quant_pack_table(const void *xq, size_t xq_stride, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                          float *tab);

/* prepare + rows over all rows: the single-threaded matrix-vector product. */
slm_status slm_quant_matvec(slm_type type, const void *W, int64_t rows, int64_t cols,
                            const float *x, float *y, void *scratch);

#endif /* SLMESH_QUANT_KERNELS_H */
