/*
 * model/attn_avx2.c: the AVX2 + FMA + F16C block kernels of the tiled attention (see
 * attn_kern.h; the scalar twins in attn_kern.c are the specification).
 *
 * Layout: a block is 64 cells = 8 vectors of 8 lanes, so one query row's scores are 8
 * accumulators that each take one FMA per dimension (kt is transposed for that), and its
 * weighted sum of V keeps 64 output dimensions in 8 accumulators over the block's cells.
 * Register blocking: the rows of a call are taken 3 (or 2) at a time, with 4 vectors each
 * (half the block's cells in scores, 32 dimensions in pv), so that each K or V vector
 * loaded feeds 3 (2) FMAs instead of 1 (the single-row loops are bound by loads, not by
 * FMAs). Every lane still takes the same operations in the same order, whatever the
 * grouping, so a row's bits do not depend on its partners.
 * K rows are converted from F16 with vcvtph2ps (exact) and transposed 8x8 in registers.
 * Requires head_dim % 8 == 0 (slm_attn_kern_pick). Compiled with per-function target
 * attributes; chosen only when the quant module chose AVX2 (the CPU has AVX2, FMA, F16C).
 * Thread-safety: pure functions, immutable table. Non-goals: AVX-512 (later, same layout).
 */
#include "model/attn_kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#include "model/vexp.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define LANES 8
#define BLOCK_VECS (SLM_ATTN_BLOCK / LANES) /* 8 vectors of cells per block */
#define HALF (SLM_ATTN_BLOCK / 2)              /* cells per pass of dots2/3_half */
#define HALF_BITS 0xFFFFFFFFu                  /* a half's bits of a block's mask */

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

/* ---- scores: query rows against a block's K ---------------------------------------------------- */

/* Which rows a pass takes together: runs of 3 (12 accumulators: 4 vectors of cells x 3
 * rows, each K vector loaded once for 3 FMAs), 2 + 2 for 4 (so no row is left alone), 2,
 * and 1 (8 accumulators over the whole block, one FMA per K load). */
static inline int rows_in_pass(int left) { return left == 4 || left == 2 ? 2 : left == 1 ? 1 : 3; }

/* Raw scores of one row for the whole block: s[c] = q . kt[][c], 8 accumulators of 8
 * cells, one FMA each per dimension (named, not an array: GCC keeps an array of vectors
 * in memory). */
AVX2_TARGET static inline void dots1(int64_t hd, const float *q, const float *kt, float *s) {
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
    _mm256_storeu_ps(s + 0 * LANES, a0), _mm256_storeu_ps(s + 1 * LANES, a1);
    _mm256_storeu_ps(s + 2 * LANES, a2), _mm256_storeu_ps(s + 3 * LANES, a3);
    _mm256_storeu_ps(s + 4 * LANES, a4), _mm256_storeu_ps(s + 5 * LANES, a5);
    _mm256_storeu_ps(s + 6 * LANES, a6), _mm256_storeu_ps(s + 7 * LANES, a7);
}

/* Raw scores of 2 rows (q rows hd apart, s rows BLOCK apart) for the 32 cells of kt's
 * half that kt points at: 8 accumulators, each K vector loaded once for 2 FMAs. A lane
 * takes the same FMAs in the same order as in dots1. */
AVX2_TARGET static inline void dots2_half(int64_t hd, const float *q, const float *kt, float *s) {
    const float *q0 = q, *q1 = q + hd;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    for (int64_t d = 0; d < hd; d++) {
        const __m256 b0 = _mm256_broadcast_ss(q0 + d), b1 = _mm256_broadcast_ss(q1 + d);
        const float *k = kt + d * SLM_ATTN_BLOCK;
        const __m256 k0 = _mm256_loadu_ps(k + 0 * LANES), k1 = _mm256_loadu_ps(k + 1 * LANES);
        const __m256 k2 = _mm256_loadu_ps(k + 2 * LANES), k3 = _mm256_loadu_ps(k + 3 * LANES);
        a00 = _mm256_fmadd_ps(b0, k0, a00), a10 = _mm256_fmadd_ps(b1, k0, a10);
        a01 = _mm256_fmadd_ps(b0, k1, a01), a11 = _mm256_fmadd_ps(b1, k1, a11);
        a02 = _mm256_fmadd_ps(b0, k2, a02), a12 = _mm256_fmadd_ps(b1, k2, a12);
        a03 = _mm256_fmadd_ps(b0, k3, a03), a13 = _mm256_fmadd_ps(b1, k3, a13);
    }
    float *s0 = s, *s1 = s + SLM_ATTN_BLOCK;
    _mm256_storeu_ps(s0 + 0 * LANES, a00), _mm256_storeu_ps(s0 + 1 * LANES, a01);
    _mm256_storeu_ps(s0 + 2 * LANES, a02), _mm256_storeu_ps(s0 + 3 * LANES, a03);
    _mm256_storeu_ps(s1 + 0 * LANES, a10), _mm256_storeu_ps(s1 + 1 * LANES, a11);
    _mm256_storeu_ps(s1 + 2 * LANES, a12), _mm256_storeu_ps(s1 + 3 * LANES, a13);
}

/* Vector i of 3 rows' 4 accumulator columns a0i, a1i, a2i: src + 8 i loaded once for the 3
 * FMAs with the rows' broadcasts b0, b1, b2 (scores: K cells against 3 queries; pv: V
 * dimensions against 3 weights). A macro over the callers' named accumulators: an array of
 * vectors would live in memory (see dots1). */
#define FMA3_VEC(src, i)                                                                        \
    do {                                                                                        \
        const __m256 v3_ = _mm256_loadu_ps((src) + (i) * LANES);                                \
        a0##i = _mm256_fmadd_ps(b0, v3_, a0##i), a1##i = _mm256_fmadd_ps(b1, v3_, a1##i);       \
        a2##i = _mm256_fmadd_ps(b2, v3_, a2##i);                                                \
    } while (0)

/* The same for 3 rows: 12 accumulators + 3 broadcasts + the K vector = the 16 registers. */
AVX2_TARGET static inline void dots3_half(int64_t hd, const float *q, const float *kt, float *s) {
    const float *q0 = q, *q1 = q + hd, *q2 = q + 2 * hd;
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    for (int64_t d = 0; d < hd; d++) {
        const __m256 b0 = _mm256_broadcast_ss(q0 + d), b1 = _mm256_broadcast_ss(q1 + d), b2 = _mm256_broadcast_ss(q2 + d);
        const float *k = kt + d * SLM_ATTN_BLOCK;
        FMA3_VEC(k, 0);
        FMA3_VEC(k, 1);
        FMA3_VEC(k, 2);
        FMA3_VEC(k, 3);
    }
    float *s0 = s, *s1 = s + SLM_ATTN_BLOCK, *s2 = s + 2 * SLM_ATTN_BLOCK;
    _mm256_storeu_ps(s0 + 0 * LANES, a00), _mm256_storeu_ps(s0 + 1 * LANES, a01);
    _mm256_storeu_ps(s0 + 2 * LANES, a02), _mm256_storeu_ps(s0 + 3 * LANES, a03);
    _mm256_storeu_ps(s1 + 0 * LANES, a10), _mm256_storeu_ps(s1 + 1 * LANES, a11);
    _mm256_storeu_ps(s1 + 2 * LANES, a12), _mm256_storeu_ps(s1 + 3 * LANES, a13);
    _mm256_storeu_ps(s2 + 0 * LANES, a20), _mm256_storeu_ps(s2 + 1 * LANES, a21);
    _mm256_storeu_ps(s2 + 2 * LANES, a22), _mm256_storeu_ps(s2 + 3 * LANES, a23);
}

/* s[c] = -inf where bit c of vis is clear; returns the largest s[c]. */
AVX2_TARGET static inline float mask_max(float *s, uint64_t vis) {
    /* lane j of vector i is cell 8i + j, bit 8i + j of vis */
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 max = ninf;
    for (int i = 0; i < BLOCK_VECS; i++) {
        const __m256i byte = _mm256_set1_epi32((int)(vis >> (LANES * i) & 0xFF));
        const __m256i seen = _mm256_cmpeq_epi32(_mm256_and_si256(byte, bit), bit);
        const __m256 si = _mm256_blendv_ps(ninf, _mm256_loadu_ps(s + i * LANES), _mm256_castsi256_ps(seen));
        max = _mm256_max_ps(max, si);
        _mm256_storeu_ps(s + i * LANES, si);
    }
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(max, 1), _mm256_castps256_ps128(max));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AVX2_TARGET static void scores(int nr, int64_t hd, const float *q, const float *kt, const uint64_t *vis, float *s,
                               float *max) {
    /* passes of 3, 2 or 1 rows over kt (a half of the block at a time for 2 and 3 rows) */
    for (int i = 0, n; i < nr; i += n) {
        n = rows_in_pass(nr - i);
        const float *qi = q + i * hd;
        float *si = s + i * SLM_ATTN_BLOCK;
        uint64_t seen = 0; /* a half no row of the pass sees is not computed: mask_max fills it */
        for (int j = 0; j < n; j++) seen |= vis[i + j];
        for (int h = 0; h < 2 && n > 1; h++) {
            if (!(seen >> (h * HALF) & HALF_BITS)) continue;
            if (n == 3)
                dots3_half(hd, qi, kt + h * HALF, si + h * HALF);
            else
                dots2_half(hd, qi, kt + h * HALF, si + h * HALF);
        }
        if (n == 1) dots1(hd, qi, kt, si);
    }
    for (int i = 0; i < nr; i++) max[i] = mask_max(s + i * SLM_ATTN_BLOCK, vis[i]);
}

/* ---- exp ------------------------------------------------------------------------------------------ */

AVX2_TARGET static float exp_sum(float *s, float m) {
    /* every vector's exp, without a test: a cell no row sees (-inf) gets e^-inf = 0, or NaN
     * when m is -inf too, as in the scalar set; so the block's 8 exps are independent
     * chains the core interleaves (one at a time, each ~20 dependent steps, waited on its
     * latency) */
    const __m256 mv = _mm256_set1_ps(m);
    __m256 e[BLOCK_VECS];
#pragma GCC unroll 8
    for (int i = 0; i < BLOCK_VECS; i++) e[i] = slm_vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + i * LANES), mv));
    __m256 sum = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < BLOCK_VECS; i++) {
        _mm256_storeu_ps(s + i * LANES, e[i]);
        sum = _mm256_add_ps(sum, e[i]);
    }
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(sum, 1), _mm256_castps256_ps128(sum));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* ---- pv: weighted sums of a block's V ------------------------------------------------------------ */

/* One row, acc[64] = acc * alpha + sum of p[c] * v[c][0..64) over the block, v rows hd
 * apart: the 8 accumulators stay in registers over the cells (named, as in dots1). */
AVX2_TARGET static inline void pv1_chunk64(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
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

/* The same for 8 dimensions (one row; the dimensions a 64 or 32 chunk leaves). */
AVX2_TARGET static inline void pv1_chunk8(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    __m256 a = _mm256_loadu_ps(acc);
    if (alpha != 1.0f) a = _mm256_mul_ps(a, _mm256_set1_ps(alpha));
    for (int c = 0; c < SLM_ATTN_BLOCK; c++)
        if (p[c] != 0.0f) a = _mm256_fmadd_ps(_mm256_set1_ps(p[c]), _mm256_loadu_ps(v + c * hd), a);
    _mm256_storeu_ps(acc, a);
}

/* Bit c set where p[c] != 0 (NaN included, as the scalar test p[c] == 0 skips only zeros):
 * the cells a row reads. */
AVX2_TARGET static inline uint64_t nonzero_cells(const float *p) {
    uint64_t bits = 0;
    for (int i = 0; i < BLOCK_VECS; i++) {
        const __m256 nz = _mm256_cmp_ps(_mm256_loadu_ps(p + i * LANES), _mm256_setzero_ps(), _CMP_NEQ_UQ);
        bits |= (uint64_t)(uint32_t)_mm256_movemask_ps(nz) << (LANES * i);
    }
    return bits;
}

/* The cells below the first that some but not all of the rows read (every cell when there
 * is none): there, every cell is read by all the rows or by none. With causal masks the
 * rows' cells are prefixes of the block, so this is usually the shortest prefix, and the
 * cells past it are the tail that the rows finish one by one (each row's FMAs stay in
 * increasing cell order). */
static inline uint64_t lead_cells(const uint64_t *nz, int n) {
    uint64_t all = nz[0], any = nz[0];
    for (int j = 1; j < n; j++) all &= nz[j], any |= nz[j];
    const uint64_t mixed = any & ~all;
    return mixed ? (((uint64_t)1 << __builtin_ctzll(mixed)) - 1) : ~(uint64_t)0;
}

/* acc[32] += p[c] times V row c's 32 dimensions (v + c * hd, acc and v at the chunk), for
 * the cells c of bits in increasing order: one row's tail after the lead cells. */
AVX2_TARGET static inline void pv1_tail32(int64_t hd, const float *p, uint64_t bits, const float *v, float *acc) {
    if (!bits) return;
    __m256 x0 = _mm256_loadu_ps(acc + 0 * LANES), x1 = _mm256_loadu_ps(acc + 1 * LANES);
    __m256 x2 = _mm256_loadu_ps(acc + 2 * LANES), x3 = _mm256_loadu_ps(acc + 3 * LANES);
    for (; bits; bits &= bits - 1) {
        const int c = __builtin_ctzll(bits);
        const float *vr = v + c * hd;
        const __m256 pb = _mm256_set1_ps(p[c]);
        x0 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 0 * LANES), x0);
        x1 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 1 * LANES), x1);
        x2 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 2 * LANES), x2);
        x3 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 3 * LANES), x3);
    }
    _mm256_storeu_ps(acc + 0 * LANES, x0), _mm256_storeu_ps(acc + 1 * LANES, x1);
    _mm256_storeu_ps(acc + 2 * LANES, x2), _mm256_storeu_ps(acc + 3 * LANES, x3);
}

/* Accumulators of one row for 32 dimensions: loaded and scaled by alpha (not when it is 1). */
#define ACC4_LOAD(acc, al, x0, x1, x2, x3)                                                                       \
    do {                                                                                                       \
        x0 = _mm256_loadu_ps((acc) + 0 * LANES), x1 = _mm256_loadu_ps((acc) + 1 * LANES);                      \
        x2 = _mm256_loadu_ps((acc) + 2 * LANES), x3 = _mm256_loadu_ps((acc) + 3 * LANES);                      \
        if ((al) != 1.0f) {                                                                                    \
            const __m256 alv = _mm256_set1_ps(al);                                                             \
            x0 = _mm256_mul_ps(x0, alv), x1 = _mm256_mul_ps(x1, alv);                                          \
            x2 = _mm256_mul_ps(x2, alv), x3 = _mm256_mul_ps(x3, alv);                                          \
        }                                                                                                      \
    } while (0)

#define ACC4_STORE(acc, x0, x1, x2, x3)                                                                          \
    do {                                                                                                       \
        _mm256_storeu_ps((acc) + 0 * LANES, x0), _mm256_storeu_ps((acc) + 1 * LANES, x1);                      \
        _mm256_storeu_ps((acc) + 2 * LANES, x2), _mm256_storeu_ps((acc) + 3 * LANES, x3);                      \
    } while (0)

/* 2 rows, 32 dimensions (v and acc point at the chunk's first dimension): 8 accumulators,
 * each V vector loaded once for both rows over the lead cells (lead_cells), then each row's
 * tail. nz: nonzero_cells of each row. A lane takes the same FMAs in the same order as in
 * pv1_chunk64. */
AVX2_TARGET static inline void pv2_chunk32(int64_t hd, const float *p, const uint64_t *nz, const float *v,
                                           const float *alpha, float *acc) {
    const float *p0 = p, *p1 = p + SLM_ATTN_BLOCK;
    __m256 a00, a01, a02, a03, a10, a11, a12, a13;
    ACC4_LOAD(acc, alpha[0], a00, a01, a02, a03);
    ACC4_LOAD(acc + hd, alpha[1], a10, a11, a12, a13);
    const uint64_t all = nz[0] & nz[1], lead = lead_cells(nz, 2);
    for (uint64_t rest = all & lead; rest; rest &= rest - 1) { /* increasing c */
        const int c = __builtin_ctzll(rest);
        const float *vr = v + c * hd;
        const __m256 b0 = _mm256_set1_ps(p0[c]), b1 = _mm256_set1_ps(p1[c]);
        const __m256 k0 = _mm256_loadu_ps(vr + 0 * LANES), k1 = _mm256_loadu_ps(vr + 1 * LANES);
        const __m256 k2 = _mm256_loadu_ps(vr + 2 * LANES), k3 = _mm256_loadu_ps(vr + 3 * LANES);
        a00 = _mm256_fmadd_ps(b0, k0, a00), a10 = _mm256_fmadd_ps(b1, k0, a10);
        a01 = _mm256_fmadd_ps(b0, k1, a01), a11 = _mm256_fmadd_ps(b1, k1, a11);
        a02 = _mm256_fmadd_ps(b0, k2, a02), a12 = _mm256_fmadd_ps(b1, k2, a12);
        a03 = _mm256_fmadd_ps(b0, k3, a03), a13 = _mm256_fmadd_ps(b1, k3, a13);
    }
    ACC4_STORE(acc, a00, a01, a02, a03);
    ACC4_STORE(acc + hd, a10, a11, a12, a13);
    for (int j = 0; j < 2; j++) pv1_tail32(hd, p + j * SLM_ATTN_BLOCK, nz[j] & ~lead, v, acc + j * hd);
}

/* The same for 3 rows: 12 accumulators + 3 broadcasts + the V vector = the 16 registers. */
AVX2_TARGET static inline void pv3_chunk32(int64_t hd, const float *p, const uint64_t *nz, const float *v,
                                           const float *alpha, float *acc) {
    const float *p0 = p, *p1 = p + SLM_ATTN_BLOCK, *p2 = p + 2 * SLM_ATTN_BLOCK;
    __m256 a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23;
    ACC4_LOAD(acc, alpha[0], a00, a01, a02, a03);
    ACC4_LOAD(acc + hd, alpha[1], a10, a11, a12, a13);
    ACC4_LOAD(acc + 2 * hd, alpha[2], a20, a21, a22, a23);
    const uint64_t all = nz[0] & nz[1] & nz[2], lead = lead_cells(nz, 3);
    for (uint64_t rest = all & lead; rest; rest &= rest - 1) { /* increasing c */
        const int c = __builtin_ctzll(rest);
        const float *vr = v + c * hd;
        const __m256 b0 = _mm256_set1_ps(p0[c]), b1 = _mm256_set1_ps(p1[c]), b2 = _mm256_set1_ps(p2[c]);
        FMA3_VEC(vr, 0);
        FMA3_VEC(vr, 1);
        FMA3_VEC(vr, 2);
        FMA3_VEC(vr, 3);
    }
    ACC4_STORE(acc, a00, a01, a02, a03);
    ACC4_STORE(acc + hd, a10, a11, a12, a13);
    ACC4_STORE(acc + 2 * hd, a20, a21, a22, a23);
    for (int j = 0; j < 3; j++) pv1_tail32(hd, p + j * SLM_ATTN_BLOCK, nz[j] & ~lead, v, acc + j * hd);
}

/* One row over all its dimensions: 64 at a time, then 8. */
AVX2_TARGET static inline void pv1(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    int64_t d = 0;
    for (; d + SLM_ATTN_BLOCK <= hd; d += SLM_ATTN_BLOCK) pv1_chunk64(hd, p, v + d, alpha, acc + d);
    for (; d < hd; d += LANES) pv1_chunk8(hd, p, v + d, alpha, acc + d);
}

#define PV_CHUNK 32 /* dimensions pv2/pv3 keep in registers */

AVX2_TARGET static void pv(int nr, int64_t hd, const float *p, const float *v, const float *alpha, float *acc) {
    /* passes of 3, 2 or 1 rows over v, as in scores; 2 and 3 rows 32 dimensions at a time,
     * the dimensions past the last multiple of 32 row by row */
    for (int i = 0, n; i < nr; i += n) {
        n = rows_in_pass(nr - i);
        const float *pi = p + i * SLM_ATTN_BLOCK;
        float *ai = acc + i * hd;
        if (n == 1) {
            pv1(hd, pi, v, alpha[i], ai);
            continue;
        }
        uint64_t nz[3];
        for (int j = 0; j < n; j++) nz[j] = nonzero_cells(pi + j * SLM_ATTN_BLOCK);
        int64_t d = 0;
        for (; d + PV_CHUNK <= hd; d += PV_CHUNK) {
            if (n == 3)
                pv3_chunk32(hd, pi, nz, v + d, alpha + i, ai + d);
            else
                pv2_chunk32(hd, pi, nz, v + d, alpha + i, ai + d);
        }
        for (; d < hd; d += LANES)
            for (int j = 0; j < n; j++) pv1_chunk8(hd, pi + j * SLM_ATTN_BLOCK, v + d, alpha[i + j], ai + j * hd + d);
    }
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
