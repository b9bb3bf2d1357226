/*
 * model/attn_avx2.c: the AVX2 + FMA + F16C block kernels of the tiled attention (see
 * attn_kern.h; the scalar twins in attn_kern.c are the specification).
 *
 * Layout: a block is 64 cells = 8 vectors of 8 lanes, so one query row's scores are 8
 * accumulators that each take one FMA per dimension (kt is transposed for that), and its
 * weighted sum of V keeps 64 output dimensions in 8 accumulators over the block's cells.
 * K rows are converted from F16 with vcvtph2ps (exact) and transposed 8x8 in registers.
 * Requires head_dim % 8 == 0 (slm_attn_kern_pick). Compiled with per-function target
 * attributes; chosen only when the quant module chose AVX2 (the CPU has AVX2, FMA, F16C).
 * Thread-safety: pure functions, immutable table. Non-goals: AVX-512 (later, same layout).
 */
#include "model/attn_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <stddef.h>

#include "model/vexp.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define LANES 8
#define BLOCK_VECS (SLM_ATTN_BLOCK / LANES) /* 8 vectors of cells per block */

/* ---- loading a block ---------------------------------------------------------------------- */

/* Eight F16 values of row r from element d, as floats; NULL row: zeros. */
AVX2_TARGET static inline __m256 load_h8(const uint16_t *r, int64_t d) {
    return r ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + d))) : _mm256_setzero_ps();
}

/* r[i] (row i = cell, lane j = dimension) -> r[j] (row j = dimension, lane i = cell). */
AVX2_TARGET static inline void transpose8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

AVX2_TARGET static void load_kt_f16(const uint16_t *const *rows, int nc, int64_t hd, float *kt) {
    /* 8x8 squares: cells c0..c0+7 x dimensions d0..d0+7 */
    for (int c0 = 0; c0 < nc; c0 += LANES)
        for (int64_t d0 = 0; d0 < hd; d0 += LANES) {
            __m256 r[8];
            for (int i = 0; i < LANES; i++) r[i] = load_h8(rows[c0 + i], d0);
            transpose8(r);
            for (int i = 0; i < LANES; i++) _mm256_storeu_ps(kt + (d0 + i) * SLM_ATTN_BLOCK + c0, r[i]);
        }
}

AVX2_TARGET static void load_v_f16(const uint16_t *const *rows, int nc, int64_t hd, float *v) {
    for (int c = 0; c < nc; c++)
        for (int64_t d = 0; d < hd; d += LANES) _mm256_storeu_ps(v + c * hd + d, load_h8(rows[c], d));
}

/* ---- one query row against a block ----------------------------------------------------------- */

AVX2_TARGET static float scores(int64_t hd, const float *q, const float *kt, uint64_t vis, float *s) {
    /* s[64] = q[hd] . kt[hd][64]: 8 accumulators of 8 cells, one FMA each per dimension
     * (named, not an array: GCC keeps an array of vectors in memory) */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t d = 0; d < hd; d++) {
        const __m256 qd = _mm256_broadcast_ss(q + d);
        const float *k = kt + d * SLM_ATTN_BLOCK;
        a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 0 * LANES), a0);
        a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 1 * LANES), a1);
        a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 2 * LANES), a2);
        a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 3 * LANES), a3);
        a4 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 4 * LANES), a4);
        a5 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 5 * LANES), a5);
        a6 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 6 * LANES), a6);
        a7 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 7 * LANES), a7);
    }
    const __m256 a[BLOCK_VECS] = {a0, a1, a2, a3, a4, a5, a6, a7};
    /* mask: lane j of vector i is cell 8i + j, bit 8i + j of vis */
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 max = ninf;
    for (int i = 0; i < BLOCK_VECS; i++) {
        const __m256i byte = _mm256_set1_epi32((int)(vis >> (LANES * i) & 0xFF));
        const __m256i seen = _mm256_cmpeq_epi32(_mm256_and_si256(byte, bit), bit);
        const __m256 si = _mm256_blendv_ps(ninf, a[i], _mm256_castsi256_ps(seen));
        max = _mm256_max_ps(max, si);
        _mm256_storeu_ps(s + i * LANES, si);
    }
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(max, 1), _mm256_castps256_ps128(max));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AVX2_TARGET static float exp_sum(float *s, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < BLOCK_VECS; i++) {
        const __m256 e = slm_vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + i * LANES), mv));
        _mm256_storeu_ps(s + i * LANES, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(sum, 1), _mm256_castps256_ps128(sum));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* acc[64] = acc * alpha + sum of p[c] * v[c][0..64) over the block, v rows hd apart: the
 * 8 accumulators stay in registers over the cells (named, as in scores). */
AVX2_TARGET static inline void pv_chunk64(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    __m256 a0 = _mm256_loadu_ps(acc + 0 * LANES), a1 = _mm256_loadu_ps(acc + 1 * LANES);
    __m256 a2 = _mm256_loadu_ps(acc + 2 * LANES), a3 = _mm256_loadu_ps(acc + 3 * LANES);
    __m256 a4 = _mm256_loadu_ps(acc + 4 * LANES), a5 = _mm256_loadu_ps(acc + 5 * LANES);
    __m256 a6 = _mm256_loadu_ps(acc + 6 * LANES), a7 = _mm256_loadu_ps(acc + 7 * LANES);
    if (alpha != 1.0f) {
        const __m256 al = _mm256_set1_ps(alpha);
        a0 = _mm256_mul_ps(a0, al), a1 = _mm256_mul_ps(a1, al), a2 = _mm256_mul_ps(a2, al);
        a3 = _mm256_mul_ps(a3, al), a4 = _mm256_mul_ps(a4, al), a5 = _mm256_mul_ps(a5, al);
        a6 = _mm256_mul_ps(a6, al), a7 = _mm256_mul_ps(a7, al);
    }
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        if (p[c] == 0.0f) continue;
        const __m256 pc = _mm256_set1_ps(p[c]);
        const float *vr = v + c * hd;
        a0 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 0 * LANES), a0);
        a1 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 1 * LANES), a1);
        a2 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 2 * LANES), a2);
        a3 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 3 * LANES), a3);
        a4 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 4 * LANES), a4);
        a5 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 5 * LANES), a5);
        a6 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 6 * LANES), a6);
        a7 = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vr + 7 * LANES), a7);
    }
    _mm256_storeu_ps(acc + 0 * LANES, a0), _mm256_storeu_ps(acc + 1 * LANES, a1);
    _mm256_storeu_ps(acc + 2 * LANES, a2), _mm256_storeu_ps(acc + 3 * LANES, a3);
    _mm256_storeu_ps(acc + 4 * LANES, a4), _mm256_storeu_ps(acc + 5 * LANES, a5);
    _mm256_storeu_ps(acc + 6 * LANES, a6), _mm256_storeu_ps(acc + 7 * LANES, a7);
}

/* The same for 8 dimensions (head sizes that are not multiples of 64). */
AVX2_TARGET static inline void pv_chunk8(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    __m256 a = _mm256_loadu_ps(acc);
    if (alpha != 1.0f) a = _mm256_mul_ps(a, _mm256_set1_ps(alpha));
    for (int c = 0; c < SLM_ATTN_BLOCK; c++)
        if (p[c] != 0.0f) a = _mm256_fmadd_ps(_mm256_set1_ps(p[c]), _mm256_loadu_ps(v + c * hd), a);
    _mm256_storeu_ps(acc, a);
}

AVX2_TARGET static void pv(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    int64_t d = 0;
    for (; d + SLM_ATTN_BLOCK <= hd; d += SLM_ATTN_BLOCK) pv_chunk64(hd, p, v + d, alpha, acc + d);
    for (; d < hd; d += LANES) pv_chunk8(hd, p, v + d, alpha, acc + d);
}

static const slm_attn_kern kern_avx2 = {
    .name = "avx2",
    .load_kt_f16 = load_kt_f16,
    .load_v_f16 = load_v_f16,
    .scores = scores,
    .exp_sum = exp_sum,
    .pv = pv,
};

const slm_attn_kern *slm_attn_kern_avx2(void) { return &kern_avx2; }

#else

const slm_attn_kern *slm_attn_kern_avx2(void) { return NULL; }

#endif
