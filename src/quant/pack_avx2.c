/*
 * quant/pack_avx2.c: the AVX2 packed layout and its matrix products for the 32-blocks that
 * are a scale and a run of quant bytes (Q8_0, Q4_0, Q5_0, IQ4_NL) against Q8_0 activations.
 *
 * Layout. A group is 8 consecutive rows. For each block index b the group holds, at
 * b * 8 * block_bytes: the 8 rows' f16 scales (16 bytes), then the rows' quant bytes in
 * 4-byte pieces (the bytes after a block's scale, cut in 4), rows side by side: piece c of
 * row r at 16 + 32 c + 4 r. So one 32-byte load gives 4 quant bytes of each of the 8 rows,
 * and the 32 values of a block are 8 such vectors (Q8_0: 8 loads; Q4_0 and IQ4_NL: 4
 * loads, low nibbles = elements 4c..4c+3, high nibbles = elements 16 + 4c.., as in the
 * file's block). A group has exactly the bytes of its 8 rows, so the model repacks in
 * place.
 *
 * Products. For activation row j, vector k of the block is multiplied (maddubs) with the 4
 * activation bytes of the same elements broadcast to every lane: lane pair (2r, 2r + 1)
 * holds row r's partial sums, so summing the 8 vectors and one madd leaves row r's exact
 * block sum in int32 lane r. No horizontal reduction, and the float step (convert, scale,
 * accumulate) is done for 8 outputs at once. Q4_0 (unsigned nibbles, offset 8, products of
 * at most 15 x 127) sums in int16: 8 vectors x 2 products <= 30480, no overflow; the offset
 * comes off as 8 x the activation block's sum. Q8_0 and IQ4_NL are signed: |w| . sign(a, w)
 * through maddubs, then madd per vector (int16 could overflow). The float step is the
 * scalar kernel's order per output (quant_legacy.c, and dot_q8act in kernels_avx2.c), so
 * every output equals the set's vec_dot bit for bit.
 *
 * Tiles: 8 rows x 4 activation rows for prompts (then 2 and 1), 8 x 1 for decoding; Q4_0
 * prompts take two groups per tile (16 x 4: each activation broadcast feeds both groups'
 * maddubs). Each group's blocks are one linear stream, prefetched PACK_PF blocks ahead. Activation scales
 * and block sums come from the caller's table (slm_quant_pack_table: once per step's input
 * for all its products and chunks), or are converted once per chunk of activation rows.
 * Q5_0's 4 bytes of fifth bits are piece 0 of its block, regrouped so that byte t of a
 * row's dword holds in bit k the bit of element 4k + t (q5_bits): quant vector k's fifth
 * bits are then one shift and one mask away; its nibbles are pieces 1..4. Values 0..31
 * (offset 16) let int16 hold 4 vectors' sums, so it takes two madds per block.
 * The tiles loop over the block's pieces outside and the activation rows inside, so the
 * int16 sums, int32 sums and float accumulators of 4 rows stay in the 16 registers (with
 * the 8 decoded vectors held instead, GCC spilled the accumulators).
 * Thread-safety: pure functions. Non-goals: Q4_1/Q5_1 (Q8_1 activations, rare in current
 * files); K types are pack_avx2_k.c.
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX2

#include <stdbool.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* the float steps are the scalar kernel's, operation by operation */
#endif
/* GCC's temporary expression replacement hoists the unrolled maddubs ahead of their sums
 * and spills them (see pack_avx2_k.c, which measured it); keep the source's order. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-ter")
#endif

#define PD_TARGET AVX2_TARGET
#define PD_TILE ptile
#define PD_SUMS(kind) ((kind) == PK_Q4_0 || (kind) == PK_Q5_0) /* the signed kinds need no offset */
/* Q4_0 only: pairs of groups measured +20-26% for it (pp-sized products, per core), and
 * slower for Q8_0, IQ4_NL and Q5_0, whose extra weight registers then spill (docs/quant.md) */
#define PD_PAIRS(kind) ((kind) == PK_Q4_0)
#include "quant/pack_tile.h"

/* ---- layout ---------------------------------------------------------------------------- */

/* Q5_0's 32 fifth bits of one row (bit j = element j, little-endian) regrouped for the tile:
 * byte t, bit k = element 4k + t, so that bit k of every byte lane belongs to quant vector k
 * (q5_high). to_lanes and from_lanes are inverse permutations of the 32 bits. */
static void q5_bits(const uint8_t in[4], uint8_t out[4], bool to_lanes) {
    uint32_t v = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24, o = 0;
    for (int t = 0; t < 4; t++)
        for (int k = 0; k < 8; k++) {
            const int lane_bit = 8 * t + k, elem_bit = 4 * k + t;
            if (to_lanes)
                o |= (v >> elem_bit & 1u) << lane_bit;
            else
                o |= (v >> lane_bit & 1u) << elem_bit;
        }
    for (int i = 0; i < 4; i++) out[i] = (uint8_t)(o >> 8 * i);
}

/* Pack / unpack the groups of a type whose block is an f16 scale then bs - 2 quant bytes
 * (for Q5_0, q5 is set: the first piece, its fifth bits, is regrouped by q5_bits). */
static void pack_dq(const void *rows, size_t row_bytes, int64_t n, void *group, size_t bs, bool q5) {
    const int64_t nb = n / SLM_QK8_0;
    const size_t nq = bs - sizeof(uint16_t);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *o = (uint8_t *)group + (size_t)b * SLM_QUANT_PACK_ROWS * bs;
        for (int r = 0; r < SLM_QUANT_PACK_ROWS; r++) {
            const uint8_t *blk = (const uint8_t *)rows + (size_t)r * row_bytes + (size_t)b * bs;
            memcpy(o + 2 * r, blk, 2);
            for (size_t c = 0; c < nq / PACK_PIECE; c++)
                memcpy(o + PACK_SCALES + 32 * c + PACK_PIECE * (size_t)r, blk + 2 + PACK_PIECE * c, PACK_PIECE);
            if (q5) q5_bits(blk + 2, o + PACK_SCALES + PACK_PIECE * (size_t)r, true);
        }
    }
}

static void unpack_dq(const void *group, int64_t n, void *rows, size_t row_bytes, size_t bs, bool q5) {
    const int64_t nb = n / SLM_QK8_0;
    const size_t nq = bs - sizeof(uint16_t);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *o = (const uint8_t *)group + (size_t)b * SLM_QUANT_PACK_ROWS * bs;
        for (int r = 0; r < SLM_QUANT_PACK_ROWS; r++) {
            uint8_t *blk = (uint8_t *)rows + (size_t)r * row_bytes + (size_t)b * bs;
            memcpy(blk, o + 2 * r, 2);
            for (size_t c = 0; c < nq / PACK_PIECE; c++)
                memcpy(blk + 2 + PACK_PIECE * c, o + PACK_SCALES + 32 * c + PACK_PIECE * (size_t)r, PACK_PIECE);
            if (q5) q5_bits(o + PACK_SCALES + PACK_PIECE * (size_t)r, blk + 2, false);
        }
    }
}

/* ---- tiles ----------------------------------------------------------------------------- */

/* The int16 pair sums (lanes 2r, 2r + 1 for row r) of lo against the activation bytes bl
 * and hi against bh: one piece of a 32-block, unsigned values against signed. */
AVX2_TARGET static inline __m256i piece_sums(__m256i lo, __m256i hi, __m256i bl, __m256i bh) {
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, bl), _mm256_maddubs_epi16(hi, bh));
}

/* s += the 8 x 2 partial sums (lanes 2r, 2r+1 for row r) of signed weights w against a. */
AVX2_TARGET static inline __m256i acc_signed(__m256i s, __m256i w, __m256i aw, __m256i a) {
    const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, w));
    return _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* One 8G x V tile: G consecutive groups (group g's blocks at grp + g * group_bytes, nb
 * blocks), activation rows x + j * xs (Q8_0 blocks), table entries pd/ps[b * bstride + j *
 * rstride]; output (row r of group g, j) to y[j * ys + 8 g + r]. With G = 2 every activation
 * broadcast feeds both groups' products (half the broadcast loads per product); the sums of
 * an output are the same operations in the same order for any G. */
AVX2_TARGET __attribute__((always_inline)) static inline void ptile(int64_t nb, const uint8_t *grp, size_t group_bytes,
                                                                     const uint8_t *x, size_t xs, const float *pd,
                                                                     const float *ps, size_t bstride, size_t rstride,
                                                                     float *y, size_t ys, const int G, const int V,
                                                                     const int kind) {
    const size_t gbs = pk_group_block_bytes(kind);
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m128i lv = _mm_loadu_si128((const __m128i *)slm_quant_kvalues_iq4nl);
    const __m256i levels = _mm256_set_m128i(lv, lv);
    __m256 acc[PACK_G][PACK_V];
    for (int g = 0; g < G; g++)
        for (int j = 0; j < V; j++) acc[g][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[PACK_G], *q[PACK_G];
        pk_blocks(grp, group_bytes, gbs, b, G, blk);
        for (int g = 0; g < G; g++) q[g] = blk[g] + PACK_SCALES;
        const int8_t *a[PACK_V];
        for (int j = 0; j < V; j++) a[j] = ((const slm_block_q8_0 *)(x + (size_t)j * xs))[b].qs;
        __m256i tot[PACK_G][PACK_V], s16[PACK_G][PACK_V]; /* zeroed only for GCC's flow analysis: */
        for (int g = 0; g < G; g++)                          /* each is set before use (dead stores) */
            for (int j = 0; j < V; j++) tot[g][j] = s16[g][j] = _mm256_setzero_si256();
        if (kind == PK_Q4_0) { /* piece c: low nibbles = elements 4c.., high = 16 + 4c.., of all 8 rows */
            for (int c = 0; c < 4; c++) {
                __m256i lo[PACK_G], hi[PACK_G];
                for (int g = 0; g < G; g++) {
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(q[g] + 32 * c));
                    lo[g] = _mm256_and_si256(raw, m4), hi[g] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                }
                for (int j = 0; j < V; j++) {
                    const __m256i bl = bcast4(a[j] + 4 * c), bh = bcast4(a[j] + 16 + 4 * c);
                    for (int g = 0; g < G; g++) {
                        const __m256i p = piece_sums(lo[g], hi[g], bl, bh);
                        s16[g][j] = c == 0 ? p : _mm256_add_epi16(s16[g][j], p);
                    }
                }
            }
            for (int g = 0; g < G; g++)
                for (int j = 0; j < V; j++) tot[g][j] = _mm256_madd_epi16(s16[g][j], ones);
        } else if (kind == PK_Q5_0) { /* values 0..31: int16 holds 4 vectors' sums, so a madd per 2 pieces */
            __m256i qh[PACK_G]; /* each group's fifth bits: piece 0 */
            for (int g = 0; g < G; g++) qh[g] = _mm256_loadu_si256((const __m256i *)q[g]);
            for (int c = 0; c < 4; c++) {
                __m256i lo[PACK_G], hi[PACK_G];
                for (int g = 0; g < G; g++) {
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(q[g] + 32 + 32 * c));
                    lo[g] = _mm256_or_si256(_mm256_and_si256(raw, m4), q5_high(qh[g], c));
                    hi[g] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), q5_high(qh[g], c + 4));
                }
                for (int j = 0; j < V; j++) {
                    const __m256i bl = bcast4(a[j] + 4 * c), bh = bcast4(a[j] + 16 + 4 * c);
                    for (int g = 0; g < G; g++) {
                        const __m256i p = piece_sums(lo[g], hi[g], bl, bh);
                        if (c % 2 == 0) {
                            s16[g][j] = p;
                        } else {
                            const __m256i m = _mm256_madd_epi16(_mm256_add_epi16(s16[g][j], p), ones);
                            tot[g][j] = c == 1 ? m : _mm256_add_epi32(tot[g][j], m);
                        }
                    }
                }
            }
        } else {
            for (int k = 0; k < 8; k++) { /* vector k: elements e(k) .. e(k) + 3 of every row */
                __m256i w[PACK_G], aw[PACK_G];
                const int e = kind == PK_Q8_0 || k < 4 ? 4 * k : 16 + 4 * (k - 4);
                for (int g = 0; g < G; g++) {
                    if (kind == PK_Q8_0) {
                        w[g] = _mm256_loadu_si256((const __m256i *)(q[g] + 32 * k));
                    } else { /* IQ4_NL: nibble -> level; low nibbles of piece k % 4, then high */
                        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q[g] + 32 * (k % 4)));
                        const __m256i nib =
                            k < 4 ? _mm256_and_si256(raw, m4) : _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                        w[g] = _mm256_shuffle_epi8(levels, nib);
                    }
                    aw[g] = _mm256_sign_epi8(w[g], w[g]);
                }
                for (int j = 0; j < V; j++) {
                    const __m256i bj = bcast4(a[j] + e);
                    for (int g = 0; g < G; g++) tot[g][j] = acc_signed(tot[g][j], w[g], aw[g], bj);
                }
            }
        }
        __m256 dx[PACK_G];
        for (int g = 0; g < G; g++) dx[g] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk[g]));
        for (int j = 0; j < V; j++) {
            const __m256 dy = _mm256_broadcast_ss(pd + (size_t)b * bstride + (size_t)j * rstride);
            const __m256 s8 = _mm256_broadcast_ss(ps + (size_t)b * bstride + (size_t)j * rstride);
            for (int g = 0; g < G; g++) {
                __m256 c = _mm256_cvtepi32_ps(tot[g][j]), t;
                /* ps holds 8 x the block's sum: c less it once (Q4_0) or twice (Q5_0) is exact (every
                 * step an integer below 2^24), the sum of the signed products */
                if (kind == PK_Q4_0) { /* then (sum * dx) * dy */
                    c = _mm256_sub_ps(c, s8);
                    t = _mm256_mul_ps(_mm256_mul_ps(c, dx[g]), dy);
                } else if (kind == PK_Q5_0) { /* then sum * (dx * dy) */
                    c = _mm256_fnmadd_ps(s8, _mm256_set1_ps(2.0f), c); /* c - 2 s8: one rounding of an exact integer */
                    t = _mm256_mul_ps(c, _mm256_mul_ps(dx[g], dy));
                } else { /* sum * (dx * dy) */
                    t = _mm256_mul_ps(c, _mm256_mul_ps(dx[g], dy));
                }
                acc[g][j] = _mm256_add_ps(acc[g][j], t);
            }
        }
    }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < V; j++) _mm256_storeu_ps(y + (size_t)j * ys + (size_t)g * SLM_QUANT_PACK_ROWS, acc[g][j]);
}

/* ---- the kernels of each type --------------------------------------------------------------- */

#define PACKED_KERNELS(name, blk, kind)                                                                            \
    void slm_quant_pack_##name##_avx2(const void *rows, size_t row_bytes, int64_t n, void *group) {                \
        pack_dq(rows, row_bytes, n, group, sizeof(blk), kind == PK_Q5_0);                                          \
    }                                                                                                              \
    void slm_quant_unpack_##name##_avx2(const void *group, int64_t n, void *rows, size_t row_bytes) {              \
        unpack_dq(group, n, rows, row_bytes, sizeof(blk), kind == PK_Q5_0);                                        \
    }                                                                                                              \
    AVX2_TARGET void slm_quant_gemm_packed_##name##_avx2(int64_t n, const void *P, size_t row_bytes, int64_t g0,   \
                                                         int64_t g1, const void *xq, size_t xs, int64_t n_vec,     \
                                                         float *y, size_t ys, const float *tab) {                  \
        gemm_packed_kind(n, P, row_bytes, g0, g1, xq, xs, n_vec, y, ys, tab, kind);                                \
    }

PACKED_KERNELS(q8_0, slm_block_q8_0, PK_Q8_0)
PACKED_KERNELS(q4_0, slm_block_q4_0, PK_Q4_0)
PACKED_KERNELS(iq4_nl, slm_block_iq4_nl, PK_IQ4_NL)
PACKED_KERNELS(q5_0, slm_block_q5_0, PK_Q5_0)

#else
typedef int slm_quant_pack_avx2_unused; /* not an x86-64 GCC/clang build */
#endif
