/*
 * model/ops_avx2.c: AVX2 twins of the element-wise operations of ops.c (the specification):
 * 8 floats per step with scalar tails.
 *
 * silu_mul and add perform the scalar functions' float operations in the same order (the
 * exponential is slm_vexp8, bit-identical to slm_vexp), so they give the same bits.
 * rmsnorm squares in float and sums in double like the scalar one, in 8 double lanes
 * instead of one chain (so its sum may differ in the last bits); the scaling and the weight
 * are the same two float multiplications.
 * Compiled with per-function target attributes; ops.c uses this set only when the quant
 * module chose AVX2 (the CPU has AVX2, FMA, F16C). Thread-safety: pure.
 * Non-goals: rope and softmax (scalar everywhere).
 */
#include "model/ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <math.h>

#include "model/vexp.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define LANES 8

AVX2_TARGET static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    /* sum of x^2: squares in float, 2 x 4 double lanes */
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    const __m256d s = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    const __m256 sc = _mm256_set1_ps(scale);
    for (i = 0; i + LANES <= n; i += LANES) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sc);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

AVX2_TARGET static void silu_mul(float *y, const float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        const __m256 v = _mm256_loadu_ps(g + i);
        const __m256 e = slm_vexp8(_mm256_xor_ps(v, neg)); /* e^-v */
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float v = g[i];
        y[i] = (v / (1.0f + slm_vexp(-v))) * u[i];
    }
}

AVX2_TARGET static void add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

static const slm_ops_kern ops_avx2 = {.name = "avx2", .rmsnorm = rmsnorm, .silu_mul = silu_mul, .add = add};

const slm_ops_kern *slm_ops_kern_avx2(void) { return &ops_avx2; }

#else

const slm_ops_kern *slm_ops_kern_avx2(void) { return NULL; }

#endif
