/*
 * quant/pack_avx2_k.c: row-interleaved ("packed") Q4_K, Q5_K and Q6_K weights and their
 * AVX2 matrix products against Q8_K activation rows.
 *
 * A group is 8 consecutive weight rows stored super-block by super-block: super-block ib
 * of the group holds super-block ib of the 8 rows, rearranged so that one 32-byte load
 * gives 4 quant bytes of each of the 8 rows (row r in bytes 4r..4r+3). Against a 4-byte
 * group of activations broadcast to all lanes (vpbroadcastd), maddubs leaves row r's
 * partial sums in int16 lanes 2r and 2r+1; a few of them are summed in int16 and ONE madd
 * with the 8 rows' sub-block scales (int16 lanes 2r, 2r+1 = scale of row r) gives every
 * row's exact scaled sub-block sum in int32 lane r. No horizontal reduction: 8 outputs per
 * vector, and the float step (vec_dot's, operation by operation) runs on 8 outputs at once.
 *
 * Layouts (offsets within one super-block of a group; f16 and int8 as in the file):
 *   Q4_K, 1152 = 8 x 144 bytes:
 *     0     d[8]     f16 super-block scale of row r at 2r
 *     16    dmin[8]  f16 min scale of row r at 2r
 *     32    L0[32]   low 4 bits of the 6-bit scales: byte b = 16h + 4rl + jj (row 4h + rl):
 *                    low nibble = scale of sub-block jj, high nibble = of sub-block 4 + jj
 *     64    L1[32]   the same for the mins
 *     96    H[32]    top 2 bits of the four values of byte b: bits 0-1 scale jj, 2-3 scale
 *                    4 + jj, 4-5 min jj, 6-7 min 4 + jj
 *     128   qs       chunk c (0..3), group k (0..7), row r: 4 bytes at 128 + 256c + 32k + 4r
 *                    = bytes 32c + 4k .. +3 of the row's qs (low nibbles: sub-block 2c,
 *                    elements 4k..4k+3; high nibbles: sub-block 2c + 1)
 *   Q5_K, 1408 = 8 x 176 bytes: Q4_K's first 128 bytes, then at 128 the fifth bits, group
 *                    k, row r: 4 bytes at 128 + 32k + 4r = qh[4k..4k+3] (bit 2c + half of
 *                    each byte belongs to the nibble of chunk c, half), then qs at 384
 *   Q6_K, 1680 = 8 x 210 bytes:
 *     0     d[8]     f16 scale of row r at 2r
 *     16    sc       pair p (0..7), row r: 2 bytes at 16 + 16p + 2r = scales 2p, 2p + 1
 *     144   half h (0, 1) at 144 + 768h, group k (0..7), row r, 4 bytes each:
 *             +32k + 4r        ql[64h + 4k ..]      (A: elements 128h + 4k.., + 64 high)
 *             +256 + 32k + 4r  ql[64h + 32 + 4k ..] (B: elements 128h + 32 + 4k.., + 64)
 *             +512 + 32k + 4r  qh[32h + 4k ..]      (2-bit parts of the A and B elements)
 * All are bijections of the 8 rows' bytes (the 6-bit Q4_K scales fill 12 bytes exactly, so
 * they stay 6-bit, only regrouped), so a group has exactly the rows' size and unpack
 * restores the file's bytes.
 *
 * Invariants: every output equals the avx2 set's vec_dot (kernels_avx2.c) for that row and
 * activation row bit for bit: the integer super-block sums are exact (int16 partial sums
 * stay below 2^15: Q4_K 16 products of 15 x 128, Q5_K 8 of 31 x 128, Q6_K 4 of 63 x 128), and the
 * float step is vec_dot's (per lane: d = dx * dy, dmin = dmx * dy, d * isum - dmin * summ,
 * or d * (isum - 32 corr), added in super-block order, no FMA: the build is ISO C).
 * Thread-safety: pure functions on caller buffers. Non-goals: Q2_K/Q3_K/IQ4_XS; rows that do
 * not fill a group (the caller keeps those unpacked).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX2

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "quant/blocks.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* GCC (12) expands the unrolled tiles with every maddubs result of a sub-block computed
 * before the first add when temporary expression replacement is on, which spills most of
 * them (~900 stack accesses per product; Q4_K prompt tiles 58 GMAC/s instead of 85, clang
 * 81), and reassociation turns the int16 sums into trees that need more registers than the
 * 2-group tiles have. Without them GCC keeps the source's order: weights, then multiply-add
 * per row (the decode tile builds its own two chains). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-ter", "no-tree-reassoc")
#endif

#define PK_ROWS SLM_QUANT_PACK_ROWS                          /* rows per group */
_Static_assert(PK_ROWS == 8, "the layouts put 8 rows x 4 bytes in a 32-byte vector");
#define Q4K_SB (PK_ROWS * (int)sizeof(slm_block_q4_k))      /* 1152: a group's super-block */
#define Q5K_SB (PK_ROWS * (int)sizeof(slm_block_q5_k))      /* 1408 */
#define Q6K_SB (PK_ROWS * (int)sizeof(slm_block_q6_k))      /* 1680 */
#define K4_SB(five) ((five) ? Q5K_SB : Q4K_SB)
/* offsets within a group's super-block (the layouts above) */
#define Q4K_L0 32                                /* Q4_K/Q5_K: low nibbles of the scales */
#define Q4K_L1 64                                /* ... of the mins */
#define Q4K_H 96                                 /* ... their top 2 bits */
#define Q5K_QH 128                               /* Q5_K: the fifth bits, 8 groups x 8 rows x 4 bytes */
#define K4_QS(five) ((five) ? 384 : 128)         /* the nibbles */
#define Q6K_SC 16                                /* Q6_K: scale pairs */
#define Q6K_Q 144                                /* ... the quants, two halves of */
#define Q6K_HALF 768                             /* ... 768 bytes */
#define PK_TILE_V 4                  /* activation rows per prompt tile */
#define PK_TILE_R 2                  /* groups per Q4_K/Q5_K prompt tile: they share the activation broadcasts */
/* Two-level blocking of a prompt product: the groups in blocks of about PK_W_BYTES of
 * weights (half of L2, 512 KiB on the development machine), and against each block the
 * activation rows in chunks of about PK_ACT_BYTES (half of L1, 32 KiB), so a chunk stays in
 * L1 while every group of the block passes and the block stays in L2 while every chunk
 * passes; activations are read from L2/L3 once per block. Against one level (chunks of
 * 256 KiB of activations, all groups): Q4_K 8192 x 2048 x 128 rows 91 -> 94 GMAC/s (69 ->
 * 88 in another run), 2048 x 8192 68 -> 73 (66 -> 94), 4864 x 1024 x 64 85 -> 95, Q6_K
 * 2048 x 8192 64 -> 70; one activation row unchanged. */
#define PK_W_BYTES (256 * 1024)
#define PK_ACT_BYTES (16 * 1024)
#define PK_PF_SB 2                   /* decode: software prefetch distance in super-blocks (one linear stream) */

/* ---- pack / unpack --------------------------------------------------------------------- */

/* One piece of a row and its place in the group: pack copies q -> p, unpack p -> q. */
typedef struct {
    uint8_t *p, *q;
    size_t len;
} byte_move;

/* Q4_K's 12 scale bytes <-> 8 scales and 8 mins (6 bits each): slm_quant_scale_min_k4 and
 * its inverse. */
static void q4k_scales_get(const uint8_t q[SLM_K_SCALE_SIZE], uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 8; j++) slm_quant_scale_min_k4(j, q, &sc[j], &mn[j]);
}

static void q4k_scales_put(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[SLM_K_SCALE_SIZE]) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
}

/* Where a Q4_K (five = 0) or Q5_K (five = 1) block keeps its parts: d and dmin first, then
 * the scales, in both. */
static size_t k4_block_bytes(int five) { return five ? sizeof(slm_block_q5_k) : sizeof(slm_block_q4_k); }
static size_t k4_qs_offset(int five) { return five ? offsetof(slm_block_q5_k, qs) : offsetof(slm_block_q4_k, qs); }
static size_t k4_scales_offset(int five) { return five ? offsetof(slm_block_q5_k, scales) : offsetof(slm_block_q4_k, scales); }

/* The byte moves shared by pack (to_group = 1) and unpack (0): every byte of a row that
 * the layout keeps as a byte goes to its place; the 6-bit scales are handled apart. */
static void k4_move(uint8_t *group, uint8_t *rows, size_t row_bytes, int64_t nb, int to_group, int five) {
    const size_t bs = k4_block_bytes(five), qs = k4_qs_offset(five);
    for (int64_t ib = 0; ib < nb; ib++) {
        uint8_t *g = group + (size_t)ib * (size_t)K4_SB(five);
        for (int r = 0; r < PK_ROWS; r++) {
            uint8_t *blk = rows + (size_t)r * row_bytes + (size_t)ib * bs;
            /* (group place, row place, bytes): d, dmin, the nibbles, Q5_K's fifth bits */
            byte_move mv[2 + 32 + 8];
            int m = 0;
            mv[m++] = (byte_move){g + 2 * r, blk, 2};
            mv[m++] = (byte_move){g + 16 + 2 * r, blk + 2, 2};
            for (int c = 0; c < 4; c++)
                for (int k = 0; k < 8; k++)
                    mv[m++] = (byte_move){g + K4_QS(five) + 256 * c + 32 * k + 4 * r, blk + qs + 32 * c + 4 * k, 4};
            if (five)
                for (int k = 0; k < 8; k++)
                    mv[m++] = (byte_move){g + Q5K_QH + 32 * k + 4 * r, blk + offsetof(slm_block_q5_k, qh) + 4 * k, 4};
            for (int i = 0; i < m; i++) {
                if (to_group) memcpy(mv[i].p, mv[i].q, mv[i].len);
                else memcpy(mv[i].q, mv[i].p, mv[i].len);
            }
        }
    }
}

static void q6k_move(uint8_t *group, uint8_t *rows, size_t row_bytes, int64_t nb, int to_group) {
    for (int64_t ib = 0; ib < nb; ib++) {
        uint8_t *g = group + (size_t)ib * Q6K_SB;
        for (int r = 0; r < PK_ROWS; r++) {
            slm_block_q6_k *b = (slm_block_q6_k *)(rows + (size_t)r * row_bytes + (size_t)ib * sizeof(slm_block_q6_k));
            /* (group place, row place, bytes) */
            byte_move mv[1 + 8 + 2 * 3 * 8];
            int m = 0;
            mv[m++] = (byte_move){g + 2 * r, (uint8_t *)&b->d, 2};
            for (int p = 0; p < 8; p++) mv[m++] = (byte_move){g + Q6K_SC + 16 * p + 2 * r, (uint8_t *)b->scales + 2 * p, 2};
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 8; k++) {
                    uint8_t *base = g + Q6K_Q + Q6K_HALF * h + 32 * k + 4 * r;
                    mv[m++] = (byte_move){base, b->ql + 64 * h + 4 * k, 4};
                    mv[m++] = (byte_move){base + 256, b->ql + 64 * h + 32 + 4 * k, 4};
                    mv[m++] = (byte_move){base + 512, b->qh + 32 * h + 4 * k, 4};
                }
            for (int i = 0; i < m; i++) {
                if (to_group) memcpy(mv[i].p, mv[i].q, mv[i].len);
                else memcpy(mv[i].q, mv[i].p, mv[i].len);
            }
        }
    }
}

static void k4_pack(const void *rows, size_t row_bytes, int64_t n, void *group, int five) {
    const int64_t nb = n / SLM_QK_K;
    uint8_t *grp = group;
    k4_move(grp, (uint8_t *)(uintptr_t)rows, row_bytes, nb, 1, five);
    for (int64_t ib = 0; ib < nb; ib++) {
        uint8_t *g = grp + (size_t)ib * (size_t)K4_SB(five);
        for (int r = 0; r < PK_ROWS; r++) {
            const uint8_t *blk = (const uint8_t *)rows + (size_t)r * row_bytes + (size_t)ib * k4_block_bytes(five);
            uint8_t sc[8], mn[8];
            q4k_scales_get(blk + k4_scales_offset(five), sc, mn);
            for (int jj = 0; jj < 4; jj++) {
                const int byte = 16 * (r / 4) + 4 * (r % 4) + jj;
                g[Q4K_L0 + byte] = (uint8_t)((sc[jj] & 0xF) | ((sc[jj + 4] & 0xF) << 4));
                g[Q4K_L1 + byte] = (uint8_t)((mn[jj] & 0xF) | ((mn[jj + 4] & 0xF) << 4));
                g[Q4K_H + byte] = (uint8_t)((sc[jj] >> 4) | ((sc[jj + 4] >> 4) << 2) | ((mn[jj] >> 4) << 4) | ((mn[jj + 4] >> 4) << 6));
            }
        }
    }
}

static void k4_unpack(const void *group, int64_t n, void *rows, size_t row_bytes, int five) {
    const int64_t nb = n / SLM_QK_K;
    k4_move((uint8_t *)(uintptr_t)group, rows, row_bytes, nb, 0, five);
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *g = (const uint8_t *)group + (size_t)ib * (size_t)K4_SB(five);
        for (int r = 0; r < PK_ROWS; r++) {
            uint8_t *blk = (uint8_t *)rows + (size_t)r * row_bytes + (size_t)ib * k4_block_bytes(five);
            uint8_t sc[8], mn[8];
            for (int jj = 0; jj < 4; jj++) {
                const int byte = 16 * (r / 4) + 4 * (r % 4) + jj;
                const uint8_t l0 = g[Q4K_L0 + byte], l1 = g[Q4K_L1 + byte], h = g[Q4K_H + byte];
                sc[jj] = (uint8_t)((l0 & 0xF) | ((h & 3) << 4));
                sc[jj + 4] = (uint8_t)((l0 >> 4) | (((h >> 2) & 3) << 4));
                mn[jj] = (uint8_t)((l1 & 0xF) | (((h >> 4) & 3) << 4));
                mn[jj + 4] = (uint8_t)((l1 >> 4) | ((h >> 6) << 4));
            }
            q4k_scales_put(sc, mn, blk + k4_scales_offset(five));
        }
    }
}

void slm_quant_pack_q4_k_avx2(const void *rows, size_t row_bytes, int64_t n, void *group) {
    k4_pack(rows, row_bytes, n, group, 0);
}

void slm_quant_unpack_q4_k_avx2(const void *group, int64_t n, void *rows, size_t row_bytes) {
    k4_unpack(group, n, rows, row_bytes, 0);
}

void slm_quant_pack_q5_k_avx2(const void *rows, size_t row_bytes, int64_t n, void *group) {
    k4_pack(rows, row_bytes, n, group, 1);
}

void slm_quant_unpack_q5_k_avx2(const void *group, int64_t n, void *rows, size_t row_bytes) {
    k4_unpack(group, n, rows, row_bytes, 1);
}

void slm_quant_pack_q6_k_avx2(const void *rows, size_t row_bytes, int64_t n, void *group) {
    q6k_move(group, (uint8_t *)(uintptr_t)rows, row_bytes, n / SLM_QK_K, 1);
}

void slm_quant_unpack_q6_k_avx2(const void *group, int64_t n, void *rows, size_t row_bytes) {
    q6k_move((uint8_t *)(uintptr_t)group, rows, row_bytes, n / SLM_QK_K, 0);
}

/* ---- tiles ------------------------------------------------------------------------------ */

AVX2_TARGET static inline __m256i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* pshufb masks (same in both 128-bit halves) picking byte 4rl + a into int16 lane 2rl and
 * byte 4rl + b into lane 2rl + 1, zero-extended, for rl = 0..3. */
AVX2_TARGET static inline __m256i pick_pairs(int a, int b) {
    int8_t m[16];
    for (int rl = 0; rl < 4; rl++) {
        m[4 * rl] = (int8_t)(4 * rl + a), m[4 * rl + 1] = -1;
        m[4 * rl + 2] = (int8_t)(4 * rl + b), m[4 * rl + 3] = -1;
    }
    const __m128i v = _mm_loadu_si128((const __m128i *)m);
    return _mm256_set_m128i(v, v);
}

/* Scale vector i of a Q4_K/Q5_K super-block from its 6-bit values as bytes (scb: scales of
 * sub-blocks 0-3, 4-7, mins 0-3, 4-7; byte 16h + 4rl + jj for row 4h + rl): i < 8, the
 * scales of sub-block i in int16 lanes 2r and 2r + 1 of row r; i = 8 + p, the min pair
 * (2p, 2p + 1) of row r in lanes 2r, 2r + 1. */
AVX2_TARGET static inline __m256i k4_expand(const __m256i scb[4], int i) {
    if (i < 8) return _mm256_shuffle_epi8(scb[i / 4], pick_pairs(i % 4, i % 4));
    const int p = i - 8;
    return _mm256_shuffle_epi8(scb[2 + p / 2], pick_pairs(2 * (p % 2), 2 * (p % 2) + 1));
}

/* One sub-block s = 2c + half of tile_k4: isum[g * PK_TILE_V + j] += the scaled sums of
 * group g (at b[g]) against activation row j (yb[j]); sv[g]: the sub-block's scales of
 * group g (int16 lanes 2r, 2r + 1 = scale of row r). */
AVX2_TARGET __attribute__((always_inline)) static inline void k4_subblock(const uint8_t *const *b,
                                                                           const slm_block_q8_k *const *yb,
                                                                           const __m256i *sv, __m256i *isum, const int c,
                                                                           const int half, const int R, const int V,
                                                                           const int five) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m10 = _mm256_set1_epi8(0x10);
    const int s = 2 * c + half;
    /* Q5_K: groups 0-3 in [0], 4-7 in [1]; Q4_K: all in [0], or in a decode tile (one row
     * of sums) even groups in [0] and odd in [1], two chains joined before the madd */
    const int split = !five && R * V == 1;
    __m256i s16[2][PK_TILE_R][PK_TILE_V];
    for (int g = 0; g < R; g++)
        for (int j = 0; j < V; j++) s16[0][g][j] = s16[1][g][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m256i q[PK_TILE_R];
        for (int g = 0; g < R; g++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(b[g] + K4_QS(five) + 256 * c + 32 * k));
            q[g] = half ? _mm256_and_si256(_mm256_srli_epi16(w, 4), m4) : _mm256_and_si256(w, m4);
            if (five) { /* bit s of the fifth-bit bytes -> 16 */
                const __m256i h = _mm256_loadu_si256((const __m256i *)(b[g] + Q5K_QH + 32 * k));
                __m256i h4; /* bit s at bit 4 */
                if (__builtin_constant_p(s)) h4 = s <= 4 ? _mm256_slli_epi16(h, 4 - s) : _mm256_srli_epi16(h, s - 4);
                else h4 = _mm256_slli_epi16(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * c)), 4 - half);
                q[g] = _mm256_or_si256(q[g], _mm256_and_si256(h4, m10));
            }
        }
        const int part = five ? k >= 4 : split ? k % 2 : 0;
        for (int j = 0; j < V; j++) {
            const __m256i a = bcast4(yb[j]->qs + 32 * s + 4 * k);
            for (int g = 0; g < R; g++) s16[part][g][j] = _mm256_add_epi16(s16[part][g][j], _mm256_maddubs_epi16(q[g], a));
        }
    }
    for (int g = 0; g < R; g++)
        for (int j = 0; j < V; j++) {
            __m256i t = _mm256_madd_epi16(split ? _mm256_add_epi16(s16[0][g][j], s16[1][g][j]) : s16[0][g][j], sv[g]);
            if (five) t = _mm256_add_epi32(t, _mm256_madd_epi16(s16[1][g][j], sv[g]));
            isum[g * PK_TILE_V + j] = _mm256_add_epi32(isum[g * PK_TILE_V + j], t);
        }
}

/* Q4_K (five = 0) or Q5_K (five = 1): super-blocks [0, nb) of R groups (pg + g * gs)
 * against V activation rows (x + j * xs), the 8 outputs of group g and activation row j
 * to y + j * ys + 8g. Q5_K's values reach 31, so its 8 vectors of a sub-block go through
 * int16 in two halves of 4 (8 products of <= 31 x 128 each) and two madds.
 * Registers (16 ymm): the hot loop holds the R x V int16 sums, R weight vectors, one
 * activation broadcast (shared by the R groups) and the nibble mask; the sub-block scales
 * and min pairs are decoded once per super-block to the stack, the int32 sums live there
 * too (one madd, add and store per sub-block) and the float accumulators in y. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_k4(int64_t nb, const uint8_t *pg, size_t gs,
                                                                       const uint8_t *x, size_t xs, float *y, size_t ys,
                                                                       const int R, const int V, const int five) {
    const int sbytes = K4_SB(five);
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
    const int in_mem = R * V > 2; /* a decode tile keeps everything in registers */
    if (in_mem)
        for (int j = 0; j < V; j++)
            for (int g = 0; g < R; g++) _mm256_storeu_ps(y + (size_t)j * ys + PK_ROWS * g, _mm256_setzero_ps());
    /* the int32 sums, in memory: the pointer goes through an empty asm so the compiler
     * cannot keep them in registers (it would spill the int16 sums instead) */
    __m256i isum_mem[PK_TILE_R * PK_TILE_V], scale_mem[PK_TILE_R * 12];
    __m256i *isum = isum_mem, *scm = scale_mem;
    if (in_mem) __asm__("" : "+r"(isum), "+r"(scm));
    __m256 acc[PK_TILE_R * PK_TILE_V];
    for (int i = 0; i < R * V; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *b[PK_TILE_R];
        for (int g = 0; g < R; g++) b[g] = pg + (size_t)g * gs + (size_t)ib * (size_t)sbytes;
        if (V == 1)
            for (int g = 0; g < R; g++)
                for (int o = 0; o < sbytes; o += 64) _mm_prefetch((const char *)((uintptr_t)b[g] + (size_t)(PK_PF_SB * sbytes + o)), _MM_HINT_T0); /* never faults */
        const slm_block_q8_k *yb[PK_TILE_V];
        for (int j = 0; j < V; j++) yb[j] = (const slm_block_q8_k *)(x + (size_t)j * xs) + ib;
        for (int g = 0; g < R; g++)
            for (int j = 0; j < V; j++) isum[g * PK_TILE_V + j] = _mm256_setzero_si256();
        /* scb[g]: the 6-bit scales of sub-blocks 0-3, 4-7 and mins 0-3, 4-7 as bytes (byte
         * 16h + 4rl + jj, row 4h + rl). A prompt tile expands them once to scm: at 12g + s
         * the scales of sub-block s (int16 lanes 2r, 2r + 1 = row r), at 12g + 8 + p the
         * min pair (2p, 2p + 1); a decode tile expands them where they are used. */
        __m256i scb[PK_TILE_R][4];
        for (int g = 0; g < R; g++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b[g] + Q4K_L0));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b[g] + Q4K_L1));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(b[g] + Q4K_H));
            /* the 6-bit values as bytes: scales of sub-blocks 0-3, 4-7, mins 0-3, 4-7 (byte 16h + 4rl + jj) */
            const __m256i sc_lo = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                                  _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            const __m256i mn_lo = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(hb, m30));
            const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                  _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            scb[g][0] = sc_lo, scb[g][1] = sc_hi, scb[g][2] = mn_lo, scb[g][3] = mn_hi;
            if (in_mem)
#pragma GCC unroll 12
                for (int i = 0; i < 12; i++) scm[12 * g + i] = k4_expand(scb[g], i);
        }
#define K4_SCALE(g, i) (in_mem ? scm[12 * (g) + (i)] : k4_expand(scb[g], i))
        /* sub-block s = 2c + half: low (half 0) or high nibbles of chunk c. A prompt tile
         * keeps the chunk loop a loop (unrolled, GCC spreads the int16 sums over the stack)
         * and tells GCC one sub-block's registers are dead after it; a decode tile unrolls. */
#define PK_PRAGMA(x) _Pragma(#x)
#define K4_SUBBLOCKS(unroll_c, after)                                                                                  \
    do {                                                                                                               \
        PK_PRAGMA(GCC unroll unroll_c)                                                                                 \
        for (int c = 0; c < 4; c++)                                                                                    \
            PK_PRAGMA(GCC unroll 2)                                                                                    \
            for (int half = 0; half < 2; half++) {                                                                     \
                __m256i sv[PK_TILE_R];                                                                                 \
                for (int g = 0; g < R; g++) sv[g] = K4_SCALE(g, 2 * c + half);                                        \
                k4_subblock(b, yb, sv, isum, c, half, R, V, five);                                                     \
                after;                                                                                                 \
            }                                                                                                          \
    } while (0)
        if (in_mem) K4_SUBBLOCKS(1, __asm__ volatile("" ::: "memory"));
        else K4_SUBBLOCKS(4, (void)0);
#undef K4_SUBBLOCKS
#undef PK_PRAGMA
        /* mins x activation sums of 32 (pair p = sub-blocks 2p, 2p + 1), then vec_dot's
         * float step per lane */
        for (int j = 0; j < V; j++) {
            const __m256i bs = _mm256_loadu_si256((const __m256i *)yb[j]->bsums);
            const __m256i b32 = _mm256_hadd_epi16(bs, bs); /* 32-bit element 0,1 | 4,5 = pairs 0,1 | 2,3 */
            __m256i bp[4];
            for (int p = 0; p < 4; p++) bp[p] = _mm256_permutevar8x32_epi32(b32, _mm256_set1_epi32(p < 2 ? p : p + 2));
            const __m256 dy = _mm256_set1_ps(yb[j]->d);
            for (int g = 0; g < R; g++) {
                __m256i summ = _mm256_madd_epi16(K4_SCALE(g, 8), bp[0]);
                for (int p = 1; p < 4; p++) summ = _mm256_add_epi32(summ, _mm256_madd_epi16(K4_SCALE(g, 8 + p), bp[p]));
                const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b[g]));
                const __m256 dmx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b[g] + 16)));
                const __m256 d = _mm256_mul_ps(dx, dy), dmin = _mm256_mul_ps(dmx, dy);
                const __m256 t1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[g * PK_TILE_V + j]));
                const __m256 t2 = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summ));
                float *yj = y + (size_t)j * ys + PK_ROWS * g;
                if (in_mem) _mm256_storeu_ps(yj, _mm256_add_ps(_mm256_loadu_ps(yj), _mm256_sub_ps(t1, t2)));
                else acc[g * V + j] = _mm256_add_ps(acc[g * V + j], _mm256_sub_ps(t1, t2));
            }
        }
    }
    if (!in_mem)
        for (int j = 0; j < V; j++)
            for (int g = 0; g < R; g++) _mm256_storeu_ps(y + (size_t)j * ys + PK_ROWS * g, acc[g * V + j]);
#undef K4_SCALE
}

/* Q6_K: as tile_k4. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_q6k(int64_t nb, const uint8_t *pg, const uint8_t *x,
                                                                        size_t xs, float *y, size_t ys, const int V) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[PK_TILE_V];
    for (int j = 0; j < V; j++) acc[j] = _mm256_setzero_ps();
    /* int16 lane pairs (2rl, 2rl + 1) -> (2rl, 2rl) and (2rl + 1, 2rl + 1) */
    int8_t me[16], mo[16];
    for (int rl = 0; rl < 4; rl++)
        for (int t = 0; t < 2; t++) {
            me[4 * rl + 2 * t] = (int8_t)(4 * rl), me[4 * rl + 2 * t + 1] = (int8_t)(4 * rl + 1);
            mo[4 * rl + 2 * t] = (int8_t)(4 * rl + 2), mo[4 * rl + 2 * t + 1] = (int8_t)(4 * rl + 3);
        }
    const __m256i sel_even = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)me));
    const __m256i sel_odd = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mo));
    for (int64_t ib = 0; ib < nb; ib++) {
        const uint8_t *b = pg + (size_t)ib * Q6K_SB;
        if (V == 1)
            for (int o = 0; o < Q6K_SB; o += 64) _mm_prefetch((const char *)((uintptr_t)b + PK_PF_SB * Q6K_SB + o), _MM_HINT_T0); /* never faults */
        const slm_block_q8_k *yb[PK_TILE_V];
        for (int j = 0; j < V; j++) yb[j] = (const slm_block_q8_k *)(x + (size_t)j * xs) + ib;
        __m256i isum[PK_TILE_V], corr[PK_TILE_V];
        for (int j = 0; j < V; j++) isum[j] = corr[j] = _mm256_setzero_si256();
        /* scales x bsums (pairs of 16-groups) */
        for (int p = 0; p < 8; p++) {
            const __m256i cp = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + Q6K_SC + 16 * p)));
            for (int j = 0; j < V; j++) corr[j] = _mm256_add_epi32(corr[j], _mm256_madd_epi16(cp, bcast4(yb[j]->bsums + 2 * p)));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *base = b + Q6K_Q + Q6K_HALF * h;
            /* i: elements 128h + 32i + 0..31 (A low, B low, A high, B high nibbles) */
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
#pragma GCC unroll 4
                for (int kk = 0; kk < 4; kk++) { /* groups k = 2kk, 2kk + 1: sub-block 8h + 2i + kk / 2 */
                    const int sb = 8 * h + 2 * i + kk / 2;
                    const __m256i cp = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + Q6K_SC + 16 * (sb / 2))));
                    const __m256i sv = _mm256_shuffle_epi8(cp, sb % 2 ? sel_odd : sel_even);
                    __m256i q[2];
                    for (int e = 0; e < 2; e++) {
                        const int k = 2 * kk + e;
                        const __m256i l = _mm256_loadu_si256((const __m256i *)(base + (i % 2) * 256 + 32 * k));
                        const __m256i hh = _mm256_loadu_si256((const __m256i *)(base + 512 + 32 * k));
                        const __m256i lo = i < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                        const __m256i hi = i == 0   ? _mm256_slli_epi16(hh, 4)
                                           : i == 1 ? _mm256_slli_epi16(hh, 2)
                                           : i == 2 ? hh
                                                    : _mm256_srli_epi16(hh, 2);
                        q[e] = _mm256_or_si256(lo, _mm256_and_si256(hi, m30));
                    }
                    for (int j = 0; j < V; j++) {
                        const int8_t *a = yb[j]->qs + 128 * h + 32 * i + 8 * kk;
                        const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(q[0], bcast4(a)), _mm256_maddubs_epi16(q[1], bcast4(a + 4)));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(s16, sv));
                    }
                }
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b));
        for (int j = 0; j < V; j++) {
            const __m256 d = _mm256_mul_ps(dx, _mm256_set1_ps(yb[j]->d));
            const __m256i tot = _mm256_sub_epi32(isum[j], _mm256_slli_epi32(corr[j], 5));
            acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(tot)));
        }
    }
    for (int j = 0; j < V; j++) _mm256_storeu_ps(y + (size_t)j * ys, acc[j]);
}

/* ---- products ---------------------------------------------------------------------------- */

enum { PK_Q4K = 0, PK_Q5K = 1, PK_Q6K = 2 };

/* R groups from g at pg (stride gbytes) x activation rows [v, v1) in tiles of V, then 2,
 * then 1 activation rows. */
#define PK_ROWS_OF(R_, V_)                                                                                             \
    do {                                                                                                               \
        for (; v + (V_) <= v1; v += (V_)) PK_TILE_AT(0, R_, V_);                                                       \
        for (; v + 2 <= v1; v += 2) PK_TILE_AT(0, R_, 2);                                                              \
        if (v < v1)                                                                                                    \
            for (int gg = 0; gg < (R_); gg++) PK_TILE_AT(gg, 1, 1); /* decode: one group at a time (one stream) */       \
    } while (0)

/* Groups [g0, g1) x all activation rows, blocked as PK_W_BYTES says: per block of groups,
 * per chunk of activation rows, every group of the block (Q4_K/Q5_K: pairs of groups, then
 * a last single one). */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_packed_k(int64_t n, const void *P, size_t row_bytes,
                                                                             int64_t g0, int64_t g1, const void *xq,
                                                                             size_t xs, int64_t n_vec, float *y,
                                                                             size_t ys, const int kt) {
    const int64_t nb = n / SLM_QK_K;
    const uint8_t *pm = P, *xm = xq;
    const size_t gbytes = (size_t)PK_ROWS * row_bytes;
    const int R = kt == PK_Q6K ? 1 : PK_TILE_R;
    int64_t chunk = (int64_t)(PK_ACT_BYTES / (xs ? xs : 1));
    if (chunk < PK_TILE_V) chunk = PK_TILE_V;
    chunk -= chunk % PK_TILE_V;
    int64_t gblk = (int64_t)(PK_W_BYTES / gbytes); /* groups per block: an even count, so pairs stay pairs */
    gblk -= gblk % 2;
    if (gblk < 2) gblk = 2;
    for (int64_t gb0 = g0; gb0 < g1; gb0 += gblk) {
        const int64_t gb1 = gb0 + gblk < g1 ? gb0 + gblk : g1;
        for (int64_t v0 = 0; v0 < n_vec; v0 += chunk) {
            const int64_t v1 = v0 + chunk < n_vec ? v0 + chunk : n_vec;
            for (int64_t g = gb0; g < gb1;) {
                const uint8_t *pg = pm + (size_t)g * gbytes;
                int64_t v = v0;
#define PK_TILE_AT(G_, R_, V_)                                                                                         \
    do {                                                                                                               \
        const uint8_t *xv = xm + (size_t)v * xs;                                                                       \
        float *yv = y + (size_t)v * ys + (size_t)(PK_ROWS * (g + (G_)));                                               \
        if (kt == PK_Q6K) tile_q6k(nb, pg + (size_t)(G_) * gbytes, xv, xs, yv, ys, V_);                                \
        else tile_k4(nb, pg + (size_t)(G_) * gbytes, gbytes, xv, xs, yv, ys, R_, V_, kt == PK_Q5K);                    \
    } while (0)
                if (R == 2 && g + 2 <= gb1) {
                    PK_ROWS_OF(2, PK_TILE_V);
                    g += 2;
                } else {
                    PK_ROWS_OF(1, PK_TILE_V);
                    g++;
                }
#undef PK_TILE_AT
            }
        }
    }
}

AVX2_TARGET void slm_quant_gemm_packed_q4_k_avx2(int64_t n, const void *P, size_t row_bytes, int64_t g0, int64_t g1,
                                                 const void *xq, size_t xs, int64_t n_vec, float *y, size_t ys,
                                                 const float *tab) {
    (void)tab; /* Q8_K rows carry their scales and block sums */
    gemm_packed_k(n, P, row_bytes, g0, g1, xq, xs, n_vec, y, ys, PK_Q4K);
}

AVX2_TARGET void slm_quant_gemm_packed_q5_k_avx2(int64_t n, const void *P, size_t row_bytes, int64_t g0, int64_t g1,
                                                 const void *xq, size_t xs, int64_t n_vec, float *y, size_t ys,
                                                 const float *tab) {
    (void)tab; /* Q8_K rows carry their scales and block sums */
    gemm_packed_k(n, P, row_bytes, g0, g1, xq, xs, n_vec, y, ys, PK_Q5K);
}

AVX2_TARGET void slm_quant_gemm_packed_q6_k_avx2(int64_t n, const void *P, size_t row_bytes, int64_t g0, int64_t g1,
                                                 const void *xq, size_t xs, int64_t n_vec, float *y, size_t ys,
                                                 const float *tab) {
    (void)tab; /* Q8_K rows carry their scales and block sums */
    gemm_packed_k(n, P, row_bytes, g0, g1, xq, xs, n_vec, y, ys, PK_Q6K);
}

#else
typedef int slm_quant_pack_avx2_k_unused; /* not an x86-64 GCC/clang build */
#endif
