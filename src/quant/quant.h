/*
 * quant/quant.h: tensor element types (the GGML/GGUF type ids), their block layouts, and
 * the scalar kernels that convert and multiply them.
 *
 * A tensor row of n elements of type T is n / block_size(T) consecutive blocks of
 * type_size(T) bytes (row-major, no padding). The scalar kernels here are the
 * specification: SIMD variants (the speed work) must reproduce dequantization bit for bit
 * and dot products within a named tolerance, and are chosen once through a table: use
 * quant/kernels.h (slm_quant_kernels()->vec_dot[type], slm_quant_matvec) for speed.
 *
 * Dot products follow the reference runtime: a weight row of type T is multiplied with an
 * activation row converted to traits(T)->vec_dot_type (Q8_0 for the 32-blocks, Q8_1 for
 * Q4_1/Q5_1, Q8_K for the K- and IQ4_XS types, F16 for F16, BF16 for BF16, F32 for F32).
 *
 * Thread-safety: everything is pure and reentrant. Non-goals: GPU formats, training.
 */
#ifndef SLMESH_QUANT_H
#define SLMESH_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

/* Type ids as stored in GGUF files (ggml_type). Gaps are ids retired by the ecosystem. */
typedef enum slm_type {
    SLM_TYPE_F32 = 0,
    SLM_TYPE_F16 = 1,
    SLM_TYPE_Q4_0 = 2,
    SLM_TYPE_Q4_1 = 3,
    SLM_TYPE_Q5_0 = 6,
    SLM_TYPE_Q5_1 = 7,
    SLM_TYPE_Q8_0 = 8,
    SLM_TYPE_Q8_1 = 9,
    SLM_TYPE_Q2_K = 10,
    SLM_TYPE_Q3_K = 11,
    SLM_TYPE_Q4_K = 12,
    SLM_TYPE_Q5_K = 13,
    SLM_TYPE_Q6_K = 14,
    SLM_TYPE_Q8_K = 15,
    SLM_TYPE_IQ2_XXS = 16,
    SLM_TYPE_IQ2_XS = 17,
    SLM_TYPE_IQ3_XXS = 18,
    SLM_TYPE_IQ1_S = 19,
    SLM_TYPE_IQ4_NL = 20,
    SLM_TYPE_IQ3_S = 21,
    SLM_TYPE_IQ2_S = 22,
    SLM_TYPE_IQ4_XS = 23,
    SLM_TYPE_I8 = 24,
    SLM_TYPE_I16 = 25,
    SLM_TYPE_I32 = 26,
    SLM_TYPE_I64 = 27,
    SLM_TYPE_F64 = 28,
    SLM_TYPE_IQ1_M = 29,
    SLM_TYPE_BF16 = 30,
    SLM_TYPE_TQ1_0 = 34,
    SLM_TYPE_TQ2_0 = 35,
    SLM_TYPE_COUNT = 36 /* one past the largest id; not every id below is a type */
} slm_type;

/* Elements per block of the super-block (K) formats. */
#define SLM_QK_K 256

/* Convert n elements of one type to float. n is a multiple of the type's block size. */
typedef void (*slm_to_float_fn)(const void *src, float *dst, int64_t n);
/* Quantize n floats (a multiple of the block size) into the type's blocks (reference
 * quantizer: the same blocks as the reference runtime's quantize_row_*_ref, and for
 * IQ4_NL/IQ4_XS as its quantize tool without an importance matrix). */
typedef void (*slm_from_float_fn)(const float *src, void *dst, int64_t n);
/* Dot product of n elements: x is a row of this type, y a row of vec_dot_type. */
typedef float (*slm_vec_dot_fn)(int64_t n, const void *x, const void *y);

typedef struct slm_type_traits {
    const char *name;           /* lower-case name as the ecosystem spells it: "q4_k" */
    int64_t block_size;         /* elements per block (1 for plain types) */
    size_t type_size;           /* bytes per block */
    bool quantized;             /* block-quantized (not a plain number type) */
    slm_to_float_fn to_float;   /* NULL: slmesh cannot compute with this type */
    slm_from_float_fn from_float; /* NULL: slmesh cannot produce this type */
    slm_type vec_dot_type;      /* activation type the dot product takes */
    slm_vec_dot_fn vec_dot;     /* NULL when to_float is NULL */
} slm_type_traits;

/* Traits of a type id, or NULL when the id is not a known type. Static storage. */
const slm_type_traits *slm_type_traits_of(slm_type type);

/* Name of a type id ("q4_k"), or "unknown" for an unknown id. */
const char *slm_type_name(slm_type type);

/* Look up a type by name, case-insensitive ("Q4_K" or "q4_k"); false if unknown. */
bool slm_type_from_name(const char *name, slm_type *out);

/* Bytes of a row of n elements: false when the type is unknown, n is not a multiple of the
 * block size, or the size overflows. */
bool slm_type_row_bytes(slm_type type, int64_t n, size_t *out);

/* ---- half precision --------------------------------------------------------------------- */

/* IEEE binary16 and bfloat16 conversions, bit-exact with the reference runtime (round to
 * nearest even; bf16 keeps NaNs quiet). */
float slm_f16_to_f32(uint16_t h);
uint16_t slm_f32_to_f16(float f);
float slm_bf16_to_f32(uint16_t h);
uint16_t slm_f32_to_bf16(float f);

#endif /* SLMESH_QUANT_H */
