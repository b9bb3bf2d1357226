/*
 * quant/pack_vnni.c: the packed 32-block tiles of the avx512 set: pack_avx2.c's layout and
 * driver (Q8_0, Q4_0, Q5_0, IQ4_NL weights against Q8_0 activations) with AVX-512 VNNI's
 * vpdpbusd on 256-bit vectors (AVX512VL).
 *
 * vpdpbusd adds to each int32 lane the 4 products of the unsigned bytes of its first operand
 * with the signed bytes of its second: what AVX2 spends maddubs + madd + add (and, for
 * signed weights, a sign op) on, in one operation and with no int16 saturation. So every
 * kind becomes unsigned weight vectors: Q4_0 nibbles (0..15) and Q5_0 values (0..31) as
 * they are, Q8_0 bytes and IQ4_NL levels plus 128 (w ^ 0x80, and a level table shifted by
 * 128). Lane r of a block's int32 sum is row r's exact sum of (w + off) * a, and off x the
 * activation block's sum (the table holds 8 x it) comes off in one fused multiply-add
 * (off = 8, 16 or 128): every quantity is an integer below 2^24 (at most 32 x 255 x 128),
 * so the result is exact, the sum of the signed products, and the float step after it is
 * the scalar kernel's, as in pack_avx2.c: every output equals the set's vec_dot bit for bit.
 * The tiles are 2 groups x 4 activation rows (then 1 group, and 2 or 1 rows): 8 chains of
 * dependent vpdpbusd, and every activation broadcast feeds two of them; AVX-512VL's 32
 * vector registers hold the 8 int32 sums, the 8 float accumulators and the weights.
 *
 * Verification: the development machine and CI have no AVX-512. With SLM_QUANT_EMULATE_VNNI
 * (CMake's slmesh_vnni_emu library, for tests only) this file is built against SIMDe's
 * portable definitions of the same intrinsics, and the packed-kernel, kernel, forward-pass
 * and reference-logit tests run with the avx512 set forced on it (CMakeLists.txt, "Emulated
 * AVX-512"), so its bits are checked on every run; its speed is not timed here
 * (bench/tile_mca.sh gives llvm-mca's estimate).
 * Thread-safety: pure functions. Non-goals: 512-bit vectors (Zen 4 splits them into two
 * 256-bit halves, and a group is 8 rows); the K types (their tiles stay AVX2's).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX512

#ifdef SLM_QUANT_EMULATE_VNNI
/* SIMDe: a packaged, hardware-validated portable implementation of the x86 intrinsics, so
 * the names below compile to its C definitions of vpdpbusd on an AVX2 machine (the
 * translation unit is built with -mavx2 -mfma -mf16c so its vectors are the native ones). */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define VNNI_TARGET __attribute__((target("avx2,fma,f16c")))
#else
#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the float steps are the scalar kernel's, operation by operation */
#endif

#define PD_TARGET VNNI_TARGET
#define PD_TILE ptile_vnni
#define PD_SUMS(kind) 1  /* every kind's weights are offset to unsigned bytes */
#define PD_PAIRS(kind) 1 /* 32 registers hold two groups' sums for every kind */
#include "quant/pack_tile.h"

/* One 8G x V tile, as pack_avx2.c's ptile: G consecutive groups (group g's blocks at grp +
 * g * group_bytes, nb blocks), activation rows x + j * xs (Q8_0 blocks), table entries
 * pd/ps[b * bstride + j * rstride]; output (row r of group g, j) to y[j * ys + 8 g + r]. */
VNNI_TARGET __attribute__((always_inline)) static inline void ptile_vnni(int64_t nb, const uint8_t *grp,
                                                                         size_t group_bytes, const uint8_t *x,
                                                                         size_t xs, const float *pd, const float *ps,
                                                                         size_t bstride, size_t rstride, float *y,
                                                                         size_t ys, const int G, const int V,
                                                                         const int kind) {
    const size_t gbs = pk_group_block_bytes(kind);
    const __m256i m4 = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8((char)0x80);
    const __m128i lv = _mm_xor_si128(_mm_loadu_si128((const __m128i *)slm_quant_kvalues_iq4nl),
                                     _mm_set1_epi8((char)0x80)); /* IQ4_NL's levels + 128: 1..241 */
    const __m256i levels = _mm256_set_m128i(lv, lv);
    /* off / 8: the multiple of the table's 8 x block sum that the unsigned weights added */
    const __m256 k_off = _mm256_set1_ps(kind == PK_Q4_0 ? 1.0f : kind == PK_Q5_0 ? 2.0f : 16.0f);
    __m256 acc[PACK_G][PACK_V];
    for (int g = 0; g < G; g++)
        for (int j = 0; j < V; j++) acc[g][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[PACK_G], *q[PACK_G];
        pk_blocks(grp, group_bytes, gbs, b, G, blk);
        for (int g = 0; g < G; g++) q[g] = blk[g] + PACK_SCALES;
        const int8_t *a[PACK_V];
        __m256i sum[PACK_G][PACK_V];
        for (int j = 0; j < V; j++) a[j] = ((const slm_block_q8_0 *)(x + (size_t)j * xs))[b].qs;
        for (int g = 0; g < G; g++)
            for (int j = 0; j < V; j++) sum[g][j] = _mm256_setzero_si256();
        if (kind == PK_Q8_0) { /* piece c: elements 4c .. 4c + 3 of the 8 rows */
            for (int c = 0; c < 8; c++) {
                __m256i u[PACK_G];
                for (int g = 0; g < G; g++)
                    u[g] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q[g] + 32 * c)), flip);
                for (int j = 0; j < V; j++) {
                    const __m256i bj = bcast4(a[j] + 4 * c);
                    for (int g = 0; g < G; g++) sum[g][j] = _mm256_dpbusd_epi32(sum[g][j], u[g], bj);
                }
            }
        } else { /* piece c: low nibbles = elements 4c.., high = 16 + 4c.., of the 8 rows */
            __m256i qh[PACK_G]; /* Q5_0: each group's fifth bits, piece 0 (its nibbles follow) */
            for (int g = 0; g < G; g++)
                qh[g] = kind == PK_Q5_0 ? _mm256_loadu_si256((const __m256i *)q[g]) : _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i lo[PACK_G], hi[PACK_G];
                for (int g = 0; g < G; g++) {
                    const uint8_t *nq = kind == PK_Q5_0 ? q[g] + 32 : q[g];
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(nq + 32 * c));
                    lo[g] = _mm256_and_si256(raw, m4), hi[g] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    if (kind == PK_Q5_0) {
                        lo[g] = _mm256_or_si256(lo[g], q5_high(qh[g], c));
                        hi[g] = _mm256_or_si256(hi[g], q5_high(qh[g], c + 4));
                    } else if (kind == PK_IQ4_NL) {
                        lo[g] = _mm256_shuffle_epi8(levels, lo[g]);
                        hi[g] = _mm256_shuffle_epi8(levels, hi[g]);
                    }
                }
                for (int j = 0; j < V; j++) {
                    const __m256i bl = bcast4(a[j] + 4 * c), bh = bcast4(a[j] + 16 + 4 * c);
                    for (int g = 0; g < G; g++) {
                        sum[g][j] = _mm256_dpbusd_epi32(sum[g][j], lo[g], bl);
                        sum[g][j] = _mm256_dpbusd_epi32(sum[g][j], hi[g], bh);
                    }
                }
            }
        }
        __m256 dx[PACK_G];
        for (int g = 0; g < G; g++) dx[g] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk[g]));
        for (int j = 0; j < V; j++) {
            const __m256 dy = _mm256_broadcast_ss(pd + (size_t)b * bstride + (size_t)j * rstride);
            const __m256 s8 = _mm256_broadcast_ss(ps + (size_t)b * bstride + (size_t)j * rstride);
            for (int g = 0; g < G; g++) {
                /* the sum of (w + off) * a less off x the block's sum: exact (see the top) */
                const __m256 c = _mm256_fnmadd_ps(s8, k_off, _mm256_cvtepi32_ps(sum[g][j]));
                __m256 t;
                if (kind == PK_Q4_0) /* (sum * dx) * dy, as the scalar Q4_0 kernel */
                    t = _mm256_mul_ps(_mm256_mul_ps(c, dx[g]), dy);
                else /* sum * (dx * dy) */
                    t = _mm256_mul_ps(c, _mm256_mul_ps(dx[g], dy));
                acc[g][j] = _mm256_add_ps(acc[g][j], t);
            }
        }
    }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < V; j++) _mm256_storeu_ps(y + (size_t)j * ys + (size_t)g * SLM_QUANT_PACK_ROWS, acc[g][j]);
}

/* ---- the kernels of each type (packing is pack_avx2.c's: the same layout) -------------------- */

#define VNNI_KERNEL(name, kind)                                                                                  \
    VNNI_TARGET void slm_quant_gemm_packed_##name##_vnni(int64_t n, const void *P, size_t row_bytes, int64_t g0, \
                                                         int64_t g1, const void *xq, size_t xs, int64_t n_vec,   \
                                                         float *y, size_t ys, const float *tab) {                \
        gemm_packed_kind(n, P, row_bytes, g0, g1, xq, xs, n_vec, y, ys, tab, kind);                              \
    }

VNNI_KERNEL(q8_0, PK_Q8_0)
VNNI_KERNEL(q4_0, PK_Q4_0)
VNNI_KERNEL(iq4_nl, PK_IQ4_NL)
VNNI_KERNEL(q5_0, PK_Q5_0)

#else
typedef int slm_quant_pack_vnni_unused; /* not an x86-64 GCC/clang build */
#endif
