/*
 * quant/kernels_avx512.c: AVX-512 VNNI dot products for Q8_0 and Q4_0 (with Q8_0
 * activations). The other types run the AVX2 kernels, which the AVX-512 set inherits.
 *
 * Same loop as the AVX2 kernels with one substitution: the exact int8 dot product of a
 * 32-block is one vpdpbusd (|x| as unsigned times y with x's sign, 4 products per int32
 * lane) instead of maddubs + madd. For the ranges the quantizers produce (|q8| <= 127)
 * both are exact, so the results equal the AVX2 kernels' bit for bit.
 * Not verified on AVX-512 hardware when written (the development machine has none), so
 * kernels.c selects this set only on request (SLMESH_KERNELS=avx512); the differential
 * test (tests/test_quant_kernels.c) checks it against scalar wherever the CPU can run it.
 * Thread-safety: pure functions. Non-goals: 512-bit-wide loops (the 32-element blocks
 * and the memory bandwidth leave little to gain).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX512

#include <immintrin.h>

#include "quant/blocks.h"

#define AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* ---- helpers ------------------------------------------------------------------------------ */

AVX512_TARGET static inline float hsum_f32_8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* 8 int32 sums of 4 products each of signed bytes x and y. */
AVX512_TARGET static inline __m256i dot_i8_32(__m256i x, __m256i y) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* ---- kernels ---------------------------------------------------------------------------- */

AVX512_TARGET static float vec_dot_q8_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q8_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[ib].d) * _cvtsh_ss(y[ib].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
}

AVX512_TARGET static float vec_dot_q4_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    const __m256i m4 = _mm256_set1_epi8(0x0F), off = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[ib].d) * _cvtsh_ss(y[ib].d));
        /* low nibbles are elements 0..15, high nibbles 16..31 */
        const __m128i t = _mm_loadu_si128((const __m128i *)x[ib].qs);
        const __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), m4);
        const __m256i qx = _mm256_sub_epi8(q, off); /* -8..7 */
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
}

/* ---- the set ------------------------------------------------------------------------------- */

const slm_quant_kernel_set slm_quant_kernels_avx512 = {
    .isa = SLM_QUANT_ISA_AVX512,
    .name = "avx512",
    .vec_dot = {
        [SLM_TYPE_Q8_0] = vec_dot_q8_0_q8_0,
        [SLM_TYPE_Q4_0] = vec_dot_q4_0_q8_0,
    },
};

#else
typedef int slm_quant_kernels_avx512_unused; /* not an x86-64 GCC/clang build */
#endif
