/*
 * quant/half.c: IEEE binary16 and bfloat16 conversions, and the to_float, from_float and
 * dot-product kernels of the plain float types (F32, F16, BF16).
 *
 * The arithmetic is the reference runtime's portable code (ggml-impl.h), so results are
 * bit-identical to it for every input: binary16 -> float is exact (NaNs come out quiet);
 * float -> binary16 rounds to nearest even, overflows to Inf, keeps subnormals and maps
 * every NaN to 0x7E00 with its sign; float -> bfloat16 rounds to nearest even, keeps
 * subnormals and forces NaNs quiet (bit 6 set) keeping the top payload bits.
 * Thread-safety: pure functions. Non-goals: F16C/AVX512-BF16 instructions (the SIMD files
 * may use them where they agree with these bit for bit).
 */
/* Bit-exactness needs every product rounded on its own, as in the reference's build: no
 * fused multiply-add contraction (GCC in ISO C mode never contracts; clang may). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <string.h>

#include "quant/blocks.h"

/* ---- single values ------------------------------------------------------------------------ */

float slm_f16_to_f32(uint16_t h) { return slm_quant_h2f(h); }
uint16_t slm_f32_to_f16(float f) { return slm_quant_f2h(f); }
float slm_bf16_to_f32(uint16_t h) { return slm_quant_bf2f(h); }
uint16_t slm_f32_to_bf16(float f) { return slm_quant_f2bf(f); }

/* ---- rows -------------------------------------------------------------------------------- */

void slm_quant_f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void slm_quant_f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src; /* [n] binary16 bits */
    for (int64_t i = 0; i < n; i++) dst[i] = slm_quant_h2f(x[i]);
}

void slm_quant_bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *x = src; /* [n] bfloat16 bits */
    for (int64_t i = 0; i < n; i++) dst[i] = slm_quant_bf2f(x[i]);
}

void slm_quant_f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void slm_quant_f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst; /* [n] binary16 bits */
    for (int64_t i = 0; i < n; i++) y[i] = slm_quant_f2h(src[i]);
}

void slm_quant_bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *y = dst; /* [n] bfloat16 bits */
    for (int64_t i = 0; i < n; i++) y[i] = slm_quant_f2bf(src[i]);
}

/* ---- dot products ---------------------------------------------------------------------------
 * As the reference's scalar path: each product rounded to float, accumulated in double. */

float slm_quant_vec_dot_f32(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

float slm_quant_vec_dot_f16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(slm_quant_h2f(x[i]) * slm_quant_h2f(y[i]));
    return (float)sum;
}

float slm_quant_vec_dot_bf16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(slm_quant_bf2f(x[i]) * slm_quant_bf2f(y[i]));
    return (float)sum;
}
