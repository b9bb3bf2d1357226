/*
 * sample/vecmath.h: the sampler's O(n_vocab) passes, written so that the compiler can
 * vectorize them (no libm calls, no branches in the loop bodies, reductions kept in
 * VEC_LANES independent accumulators), and the scalar exp they use.
 *
 * vm_exp_neg(x) is e^x for x <= 0: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2,
 * then a degree-6 Taylor polynomial (truncation error r^7/7! < 1.3e-7 relative) and the
 * exponent inserted into the float's bits. Arguments below VM_EXP_MIN and NaN give 0.
 * Relative error < VM_EXP_TOL over [VM_EXP_MIN, 0] (tests/test_sample.c checks it
 * against libm's exp over a dense grid).
 *
 * Internal to the sample module (tests include it too). Thread-safety: pure functions.
 */
#ifndef SLMESH_SAMPLE_VECMATH_H
#define SLMESH_SAMPLE_VECMATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VM_EXP_TOL 4e-7f /* relative error bound of vm_exp_neg (a few float ulps) */
#define VM_EXP_MIN -87.0f    /* below this e^x is under FLT_MIN (subnormal): returned as 0 */
#define VEC_LANES 8          /* independent accumulators: one AVX register, two SSE ones */

/* Float bits as an unsigned integer, and back (memcpy: the portable, free way). */
static inline uint32_t vm_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float vm_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The selections below are done on the bits with integer masks, not with float compares:
 * under the default -ftrapping-math a float compare-and-select keeps GCC from vectorizing
 * the loop, integer masks do not. */
#define VM_EXP_MIN_BITS 0xC2AE0000u /* the bits of VM_EXP_MIN (-87.0f) */
#define VM_INF_BITS 0x7F800000u     /* the bits of +inf */

static inline float vm_exp_neg(float x) {
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const uint32_t u = vm_bits(x);
    /* ok: finite and >= VM_EXP_MIN (non-negative and below +inf, or negative with a
     * magnitude up to 87); NaN, -inf and anything below -87 are not */
    const uint32_t ok = (uint32_t)(u < VM_INF_BITS) | ((uint32_t)(u >= 0x80000000u) & (uint32_t)(u <= VM_EXP_MIN_BITS));
    const uint32_t keep = 0u - ok; /* all ones when ok */
    const float xc = vm_float(u & keep); /* x, or 0 */
    float kf = xc * log2e + shifter;
    const int32_t k = (int32_t)(vm_bits(kf) - 0x4B400000u); /* the integer the shifter rounded to */
    kf -= shifter;
    const float r = (xc - kf * ln2_hi) - kf * ln2_lo;
    /* 1 + r + r^2/2! + ... + r^6/6!, Horner */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = vm_float((uint32_t)(k + 127) << 23); /* 2^k, k in [-126, 0] */
    return vm_float(vm_bits(p * scale) & keep);
}

/* x if it is finite and >= VM_EXP_MIN, else 0 (the argument vm_exp_neg really used). */
static inline float vm_exp_arg(float x) {
    const uint32_t u = vm_bits(x);
    const uint32_t ok = (uint32_t)(u < VM_INF_BITS) | ((uint32_t)(u >= 0x80000000u) & (uint32_t)(u <= VM_EXP_MIN_BITS));
    return vm_float(u & (0u - ok));
}

/* Largest of x[0..n); NaN entries are ignored; -INFINITY when n == 0 or all are -inf/NaN. */
static inline float vm_max(const float *x, size_t n) {
    float acc[VEC_LANES];
    for (int j = 0; j < VEC_LANES; j++) acc[j] = -INFINITY;
    const size_t nvec = n - n % VEC_LANES;
    size_t i = 0;
    for (; i < nvec; i += VEC_LANES) {
        for (int j = 0; j < VEC_LANES; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    }
    float m = -INFINITY;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int j = 0; j < VEC_LANES; j++) m = acc[j] > m ? acc[j] : m;
    return m;
}

/* With d = x[i] - m (m the maximum, finite): *sum = sum e^d and *sum_ed = sum e^d * d over
 * the entries with e^d > 0 (-inf and NaN entries contribute nothing). Accumulates in float
 * lanes per block of VM_BLOCK entries and in double across blocks, so the rounding error
 * stays near float epsilon * sqrt(VM_BLOCK / VEC_LANES). */
#define VM_BLOCK 1024
static inline void vm_exp_sums(const float *x, size_t n, float m, double *sum, double *sum_ed) {
    double s = 0.0, sd = 0.0;
    for (size_t b = 0; b < n; b += VM_BLOCK) {
        const size_t end = n - b < VM_BLOCK ? n : b + VM_BLOCK;
        float acc[VEC_LANES] = {0}, acc_d[VEC_LANES] = {0};
        const size_t vend = end - (end - b) % VEC_LANES;
        size_t i = b;
        for (; i < vend; i += VEC_LANES) {
            for (int j = 0; j < VEC_LANES; j++) {
                const float d = x[i + j] - m;
                acc[j] += vm_exp_neg(d);
                acc_d[j] += vm_exp_neg(d) * vm_exp_arg(d); /* 0 * 0 where d is -inf/NaN */
            }
        }
        for (; i < end; i++) {
            const float d = x[i] - m;
            acc[0] += vm_exp_neg(d);
            acc_d[0] += vm_exp_neg(d) * vm_exp_arg(d);
        }
        for (int j = 0; j < VEC_LANES; j++) {
            s += (double)acc[j];
            sd += (double)acc_d[j];
        }
    }
    *sum = s;
    *sum_ed = sd;
}

#endif /* SLMESH_SAMPLE_VECMATH_H */
