/*
 * quant/blocks.h (internal): the block layouts of the quantized types, the half-precision
 * helpers the kernels inline, and the prototypes of the scalar kernels that quant.c puts
 * into the type table.
 *
 * Invariants: every struct is byte-for-byte the GGUF ecosystem's block (ggml-common.h): no
 * padding (all members are bytes or 2-byte halves placed at even offsets, Q8_K's float is
 * first), little-endian. The _Static_asserts pin the sizes the type table reports.
 * Halves are stored as their raw uint16_t bits.
 * Thread-safety: declarations and pure inline functions only.
 * Non-goals: the IQ1/IQ2/IQ3 and ternary layouts (slmesh knows them only by size).
 */
#ifndef SLMESH_QUANT_BLOCKS_H
#define SLMESH_QUANT_BLOCKS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "quant/quant.h"

/* ---- block sizes ---------------------------------------------------------------------- */

#define SLM_QK4_0 32  /* elements per Q4_0 block */
#define SLM_QK4_1 32
#define SLM_QK5_0 32
#define SLM_QK5_1 32
#define SLM_QK8_0 32
#define SLM_QK8_1 32
#define SLM_QK4_NL 32
#define SLM_K_SCALE_SIZE 12 /* bytes of packed 6-bit scales and mins in Q3_K/Q4_K/Q5_K */

/* ---- legacy 32-element blocks ------------------------------------------------------------ */

/* Q4_0: x = d * (q - 8), q in 0..15. qs[j] holds element j (low nibble) and j+16 (high). */
typedef struct {
    uint16_t d;                  /* f16 scale */
    uint8_t qs[SLM_QK4_0 / 2];   /* nibbles */
} slm_block_q4_0;
_Static_assert(sizeof(slm_block_q4_0) == 18, "block_q4_0 is 18 bytes");

/* Q4_1: x = d * q + m, q in 0..15. */
typedef struct {
    uint16_t d;                  /* f16 scale */
    uint16_t m;                  /* f16 minimum */
    uint8_t qs[SLM_QK4_1 / 2];
} slm_block_q4_1;
_Static_assert(sizeof(slm_block_q4_1) == 20, "block_q4_1 is 20 bytes");

/* Q5_0: x = d * (q - 16), q in 0..31; bit 4 of element j is bit j of qh (little-endian). */
typedef struct {
    uint16_t d;
    uint8_t qh[4];               /* fifth bits, one per element */
    uint8_t qs[SLM_QK5_0 / 2];   /* low nibbles as in Q4_0 */
} slm_block_q5_0;
_Static_assert(sizeof(slm_block_q5_0) == 22, "block_q5_0 is 22 bytes");

/* Q5_1: x = d * q + m, q in 0..31. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[SLM_QK5_1 / 2];
} slm_block_q5_1;
_Static_assert(sizeof(slm_block_q5_1) == 24, "block_q5_1 is 24 bytes");

/* Q8_0: x = d * q, q in -127..127. */
typedef struct {
    uint16_t d;
    int8_t qs[SLM_QK8_0];
} slm_block_q8_0;
_Static_assert(sizeof(slm_block_q8_0) == 34, "block_q8_0 is 34 bytes");

/* Q8_1: Q8_0 plus s = d * sum(q) (the activation side of Q4_1/Q5_1 dot products). */
typedef struct {
    uint16_t d;
    uint16_t s;                  /* f16 of d * sum(qs) */
    int8_t qs[SLM_QK8_1];
} slm_block_q8_1;
_Static_assert(sizeof(slm_block_q8_1) == 36, "block_q8_1 is 36 bytes");

/* IQ4_NL: x = d * kvalues_iq4nl[q], nibbles packed as in Q4_0. */
typedef struct {
    uint16_t d;
    uint8_t qs[SLM_QK4_NL / 2];
} slm_block_iq4_nl;
_Static_assert(sizeof(slm_block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");

/* ---- K super-blocks (256 elements) ---------------------------------------------------------- */

/* Q2_K: 16 sub-blocks of 16; x = d * (sc & 15) * q - dmin * (sc >> 4), q in 0..3. */
typedef struct {
    uint8_t scales[SLM_QK_K / 16]; /* low nibble scale, high nibble min, per sub-block */
    uint8_t qs[SLM_QK_K / 4];      /* 2-bit quants, 4 per byte */
    uint16_t d;                    /* f16 super-scale of the scales */
    uint16_t dmin;                 /* f16 super-scale of the mins */
} slm_block_q2_k;
_Static_assert(sizeof(slm_block_q2_k) == 84, "block_q2_K is 84 bytes");

/* Q3_K: 16 sub-blocks of 16; x = d * (s - 32) * (q - (hbit ? 0 : 4)), 6-bit scales s. */
typedef struct {
    uint8_t hmask[SLM_QK_K / 8];   /* high bit of each quant */
    uint8_t qs[SLM_QK_K / 4];      /* low 2 bits */
    uint8_t scales[SLM_K_SCALE_SIZE]; /* 16 6-bit scales, packed */
    uint16_t d;
} slm_block_q3_k;
_Static_assert(sizeof(slm_block_q3_k) == 110, "block_q3_K is 110 bytes");

/* Q4_K: 8 sub-blocks of 32; x = d * sc * q - dmin * m, 6-bit sc and m. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[SLM_K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each, packed */
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q4_k;
_Static_assert(sizeof(slm_block_q4_k) == 144, "block_q4_K is 144 bytes");

/* Q5_K: Q4_K plus a fifth bit per quant. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[SLM_K_SCALE_SIZE];
    uint8_t qh[SLM_QK_K / 8];
    uint8_t qs[SLM_QK_K / 2];
} slm_block_q5_k;
_Static_assert(sizeof(slm_block_q5_k) == 176, "block_q5_K is 176 bytes");

/* Q6_K: 16 sub-blocks of 16; x = d * scale * (q - 32), q in 0..63, int8 scales. */
typedef struct {
    uint8_t ql[SLM_QK_K / 2];      /* low 4 bits */
    uint8_t qh[SLM_QK_K / 4];      /* high 2 bits */
    int8_t scales[SLM_QK_K / 16];
    uint16_t d;
} slm_block_q6_k;
_Static_assert(sizeof(slm_block_q6_k) == 210, "block_q6_K is 210 bytes");

/* Q8_K: activation side of the K dot products; d is a float and bsums the sums of 16. */
typedef struct {
    float d;
    int8_t qs[SLM_QK_K];
    int16_t bsums[SLM_QK_K / 16];
} slm_block_q8_k;
_Static_assert(sizeof(slm_block_q8_k) == 292, "block_q8_K is 292 bytes");

/* IQ4_XS: 8 sub-blocks of 32; x = d * (ls - 32) * kvalues_iq4nl[q], 6-bit ls. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;             /* high 2 bits of the 8 sub-block scales */
    uint8_t scales_l[SLM_QK_K / 64]; /* low 4 bits, two per byte */
    uint8_t qs[SLM_QK_K / 2];
} slm_block_iq4_xs;
_Static_assert(sizeof(slm_block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");

/* The 16 non-linear levels of IQ4_NL / IQ4_XS (defined in quant_iq.c). */
extern const int8_t slm_quant_kvalues_iq4nl[16];

/* ---- half precision (inline, the kernels' hot path) ------------------------------------- */

static inline uint32_t slm_quant_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float slm_quant_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* binary16 -> binary32, exact (the reference's magic-number method; NaNs come out quiet). */
static inline float slm_quant_h2f(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & UINT32_C(0x80000000);
    const uint32_t two_w = w + w;
    /* normal, Inf, NaN: move the exponent into place and rebias with one multiply */
    const uint32_t exp_offset = UINT32_C(0xE0) << 23;
    const float normalized = slm_quant_u2f((two_w >> 4) + exp_offset) * 0x1.0p-112f;
    /* subnormal: the mantissa as the low bits of 0.5's significand, minus 0.5 */
    const float denormalized = slm_quant_u2f((two_w >> 17) | (UINT32_C(126) << 23)) - 0.5f;
    const uint32_t denorm_cutoff = UINT32_C(1) << 27;
    return slm_quant_u2f(sign | slm_quant_f2u(two_w < denorm_cutoff ? denormalized : normalized));
}

/* binary32 -> binary16, round to nearest even; NaN -> 0x7E00 with the sign kept. */
static inline uint16_t slm_quant_f2h(float f) {
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = slm_quant_f2u(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & UINT32_C(0x80000000);
    uint32_t bias = shl1_w & UINT32_C(0xFF000000);
    if (bias < UINT32_C(0x71000000)) bias = UINT32_C(0x71000000);
    base = slm_quant_u2f((bias >> 1) + UINT32_C(0x07800000)) + base;
    const uint32_t bits = slm_quant_f2u(base);
    const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
    const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > UINT32_C(0xFF000000) ? UINT16_C(0x7E00) : nonsign));
}

static inline float slm_quant_bf2f(uint16_t h) {
    return slm_quant_u2f((uint32_t)h << 16);
}

/* binary32 -> bfloat16, round to nearest even, subnormals kept, NaN forced quiet. */
static inline uint16_t slm_quant_f2bf(float f) {
    const uint32_t u = slm_quant_f2u(f);
    if ((u & UINT32_C(0x7fffffff)) > UINT32_C(0x7f800000)) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (UINT32_C(0x7fff) + ((u >> 16) & 1))) >> 16);
}

/* ---- shared helpers --------------------------------------------------------------------- */

/* Round to nearest (ties to even) for |f| <= 2^22 by the float magic-number trick, as the
 * reference does (its result differs from lrintf only outside that range). */
static inline int slm_quant_nearest_int(float f) {
    const float val = f + 12582912.f; /* 1.5 * 2^23: the integer lands in the mantissa */
    int32_t i;
    memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* (int)v, truncated toward zero as a C cast does, when v is in (lo - 1, hi + 1); outside
 * that (where the cast to the narrow type would be undefined: non-finite or huge input)
 * clamped to lo or hi, and NaN gives 0. Identical to the reference's casts on finite data. */
static inline int slm_quant_trunc_clamp(float v, int lo, int hi) {
    if (v > (float)lo - 1.0f && v < (float)hi + 1.0f) return (int)v;
    if (v >= (float)hi + 1.0f) return hi;
    if (v <= (float)lo - 1.0f) return lo;
    return 0; /* NaN */
}

/* Q4_K/Q5_K: scale and min of sub-block j (0..7) from the 12 packed bytes. Sub-blocks 0..3
 * keep 6 bits in bytes 0..3 (scales) and 4..7 (mins); 4..7 keep their low 4 bits in bytes
 * 8..11 and their high 2 bits in the top bits of bytes 0..7. */
static inline void slm_quant_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q3_K: the 16 6-bit sub-block scales (still biased by 32) unpacked from the 12 bytes: low
 * 4 bits in bytes 0..7 (two per byte), high 2 bits in bytes 8..11, by 32-bit word
 * operations; words[k] holds scales 4k..4k+3, little-endian. Inline: the AVX2 tiles call it
 * per row and super-block and keep the words in registers. */
static inline void slm_quant_q3_k_scale_words(const uint8_t packed[SLM_K_SCALE_SIZE], uint32_t words[4]) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t a[3];
    memcpy(a, packed, SLM_K_SCALE_SIZE);
    words[0] = (a[0] & kmask2) | (((a[2] >> 0) & kmask1) << 4);
    words[1] = (a[1] & kmask2) | (((a[2] >> 2) & kmask1) << 4);
    words[2] = ((a[0] >> 4) & kmask2) | (((a[2] >> 4) & kmask1) << 4);
    words[3] = ((a[1] >> 4) & kmask2) | (((a[2] >> 6) & kmask1) << 4);
}

/* The same as 16 bytes. */
static inline void slm_quant_q3_k_scales(const uint8_t packed[SLM_K_SCALE_SIZE], int8_t out[16]) {
    uint32_t words[4];
    slm_quant_q3_k_scale_words(packed, words);
    memcpy(out, words, 16);
}

/* ---- scalar kernels (the specification; see quant.h for the contracts) ------------------- */

/* to_float */
void slm_quant_f32_to_float(const void *src, float *dst, int64_t n);
void slm_quant_f16_to_float(const void *src, float *dst, int64_t n);
void slm_quant_bf16_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q4_0_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q4_1_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q5_0_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q5_1_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q8_0_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q8_1_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q2_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q3_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q4_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q5_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q6_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_q8_k_to_float(const void *src, float *dst, int64_t n);
void slm_quant_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void slm_quant_iq4_xs_to_float(const void *src, float *dst, int64_t n);


/* from_float (reference quantizers; the Q8 ones are also the activation quantizers) */
void slm_quant_q4_0_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q4_1_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q5_0_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q5_1_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q2_k_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q3_k_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q4_k_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q5_k_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q6_k_from_float(const float *src, void *dst, int64_t n);
void slm_quant_iq4_nl_from_float(const float *src, void *dst, int64_t n);
void slm_quant_iq4_xs_from_float(const float *src, void *dst, int64_t n);
void slm_quant_f32_from_float(const float *src, void *dst, int64_t n);
void slm_quant_f16_from_float(const float *src, void *dst, int64_t n);
void slm_quant_bf16_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q8_0_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q8_1_from_float(const float *src, void *dst, int64_t n);
void slm_quant_q8_k_from_float(const float *src, void *dst, int64_t n);

/* vec_dot: weight type x its vec_dot_type */
float slm_quant_vec_dot_f32(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_f16(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_bf16(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q4_0_q8_0(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q4_1_q8_1(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q5_0_q8_0(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q5_1_q8_1(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q8_0_q8_0(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q8_1_q8_1(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q2_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q3_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q4_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q5_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q6_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_q8_k_q8_k(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_iq4_nl_q8_0(int64_t n, const void *x, const void *y);
float slm_quant_vec_dot_iq4_xs_q8_k(int64_t n, const void *x, const void *y);

#endif /* SLMESH_QUANT_BLOCKS_H */
