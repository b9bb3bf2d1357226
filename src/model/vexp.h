/*
 * model/vexp.h (internal): the exponential of the softmax and SiLU kernels, as a scalar
 * function (the specification) and an 8-lane AVX2 twin that gives the same bits.
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 split in two
 * constants so that n ln 2 is exact), e^r = 1 + r + r^2 P(r) with Cephes's degree-5
 * minimax polynomial for expf (about 1 ulp on |r| <= ln2/2). Every step is one float
 * multiply, add or fused multiply-add (fmaf: one rounding, so a CPU's FMA instruction and
 * the C library give the same bits) in the same order in both versions (n rounded by adding
 * and subtracting 1.5 * 2^23), so the AVX2 lanes equal the scalar results bit for bit.
 * Fused steps: 12 floating-point operations instead of 21, and shorter chains.
 * Edges: x < EXP_LO (including -inf) gives 0 (no subnormal results below 2^-126), x > EXP_HI
 * gives +inf (e^88..e^88.72 are finite but are not needed: softmax arguments are <= 0, and
 * SiLU only needs e^-v to be huge), NaN gives NaN.
 * Thread-safety: pure. Non-goals: correct rounding; subnormal results.
 */
#ifndef SLMESH_MODEL_VEXP_H
#define SLMESH_MODEL_VEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SLM_VEXP_LO -87.33654f        /* ln(2^-126): n stays >= -126 (a normal 2^n) */
#define SLM_VEXP_HI 88.0f             /* n stays <= 127 */
#define SLM_VEXP_LOG2E 1.44269504088896341f
#define SLM_VEXP_ROUND 12582912.0f    /* 1.5 * 2^23: (y + it) - it rounds |y| < 2^22 to an integer */
#define SLM_VEXP_LN2_HI 0.693359375f  /* ln 2 = LN2_HI + LN2_LO, LN2_HI with few mantissa bits */
#define SLM_VEXP_LN2_LO -2.12194440e-4f
#define SLM_VEXP_P0 1.9875691500e-4f  /* Cephes expf: e^r = 1 + r + r^2 (((((P0 r + P1) r ... + P5) */
#define SLM_VEXP_P1 1.3981999507e-3f
#define SLM_VEXP_P2 8.3334519073e-3f
#define SLM_VEXP_P3 4.1665795894e-2f
#define SLM_VEXP_P4 1.6666665459e-1f
#define SLM_VEXP_P5 5.0000001201e-1f

/* e^x, the specification. */
static inline float slm_vexp(float x) {
    if (x != x) return x;
    if (x < SLM_VEXP_LO) return 0.0f;
    if (x > SLM_VEXP_HI) return INFINITY;
    const float n = fmaf(x, SLM_VEXP_LOG2E, SLM_VEXP_ROUND) - SLM_VEXP_ROUND;
    float r = fmaf(-n, SLM_VEXP_LN2_HI, x);
    r = fmaf(-n, SLM_VEXP_LN2_LO, r);
    float p = SLM_VEXP_P0;
    p = fmaf(p, r, SLM_VEXP_P1);
    p = fmaf(p, r, SLM_VEXP_P2);
    p = fmaf(p, r, SLM_VEXP_P3);
    p = fmaf(p, r, SLM_VEXP_P4);
    p = fmaf(p, r, SLM_VEXP_P5);
    const float y = fmaf(p, r * r, r) + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* e^x for 8 lanes, bit-identical to slm_vexp per lane. */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 slm_vexp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(SLM_VEXP_LO), hi = _mm256_set1_ps(SLM_VEXP_HI);
    const __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), above = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi); /* in range; the masks fix the rest */
    const __m256 round = _mm256_set1_ps(SLM_VEXP_ROUND);
    const __m256 n = _mm256_sub_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(SLM_VEXP_LOG2E), round), round);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SLM_VEXP_LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(SLM_VEXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(SLM_VEXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SLM_VEXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SLM_VEXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SLM_VEXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SLM_VEXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SLM_VEXP_P5));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 out = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    out = _mm256_blendv_ps(out, _mm256_setzero_ps(), below);
    out = _mm256_blendv_ps(out, _mm256_set1_ps(INFINITY), above);
    return _mm256_blendv_ps(out, x, nan);
}
#endif

#endif /* SLMESH_MODEL_VEXP_H */
