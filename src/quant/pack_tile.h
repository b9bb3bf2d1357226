/*
 * quant/pack_tile.h (internal): what the packed 32-block tiles of every x86 ISA share: the
 * layout's constants (pack_avx2.c describes the layout), the kinds, helpers that address a
 * tile's blocks and read Q5_0's fifth bits and the activation bytes, and the driver that
 * cuts a product into chunks of activation rows (their table entries and bytes stay in
 * L1/L2 while every group passes over them), the groups into pairs (then an odd one), and
 * each chunk into tiles of PACK_V, then 2, then 1 rows. Included once by each file that has
 * such a tile (pack_avx2.c, pack_vnni.c).
 *
 * The including file defines, before including it:
 *   PD_TARGET       the function attribute of its tile's ISA (AVX2_TARGET or a superset);
 *   PD_TILE         the name of its tile, declared here and defined by that file after the
 *                   include: PD_TILE(nb, grp, group_bytes, x, xs, pd, ps, bstride, rstride,
 *                   y, ys, G, V, kind) computes an 8G x V tile (see pack_avx2.c's ptile);
 *   PD_SUMS(kind)   whether that tile reads the activation blocks' sums for the kind;
 *   PD_PAIRS(kind)  whether it takes the groups two at a time (G = 2) for the kind.
 * Invariant: the driver writes each tile's outputs and nothing else, so chunking never
 * changes a value. Non-goals: the tiles (their operations are their ISA's).
 */
#ifndef SLMESH_QUANT_PACK_TILE_H
#define SLMESH_QUANT_PACK_TILE_H

#if !defined(PD_TARGET) || !defined(PD_TILE) || !defined(PD_SUMS) || !defined(PD_PAIRS)
#error "pack_tile.h is included by a tile's file after it defines PD_TARGET, PD_TILE, PD_SUMS and PD_PAIRS"
#endif

#include <immintrin.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels_isa.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

#define PACK_V 4             /* activation rows per prompt tile */
#define PACK_G 2             /* groups per tile: they share the activation broadcasts */
/* Fewest activation rows for which tiles take two groups: decoding (a few rows) is bound by
 * memory, and two weight streams per thread measured slower there (Qwen2.5 q4_0 tg 65 ->
 * 56 t/s on 2 threads) while prompts gain (docs/quant.md). */
#define PACK_PAIR_MIN_VEC 8
#define PACK_CHUNK_ROWS 64   /* activation rows per chunk (their table and rows stay in L1/L2) */
#define PACK_PF 8            /* prefetch distance in blocks of the group (2 KiB for Q8_0, 1 KiB for Q4_0) */
#define PACK_SCALES 16       /* bytes of the 8 f16 scales at the head of a group's block */
#define PACK_PIECE 4         /* quant bytes of one row side by side with the other rows' */
#define PACK_TABLE (SLM_QUANT_PACK_MAX_COLS / SLM_QK8_0) /* table entries: chunk rows x blocks */

enum { PK_Q8_0 = 0, PK_Q4_0 = 1, PK_IQ4_NL = 2, PK_Q5_0 = 3 };

/* Q5_0's fifth bits of vector k (elements 4k .. 4k + 3 of the 8 rows) as 0x10 in each byte:
 * bit k of byte lane i of the group's high-bit piece (see q5_bits) moved to bit 4. A 16-bit
 * shift is enough: the bits it carries across a byte boundary land below or above bit 4. */
AVX2_TARGET static inline __m256i q5_high(__m256i qh, int k) {
    const __m256i hb = k < 4 ? _mm256_slli_epi16(qh, 4 - k) : k > 4 ? _mm256_srli_epi16(qh, k - 4) : qh;
    return _mm256_and_si256(hb, _mm256_set1_epi8(0x10));
}

/* The 4 activation bytes at p in every lane. */
AVX2_TARGET static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* Bytes of one block index of a group of the kind: 8 rows' blocks. */
static inline size_t pk_group_block_bytes(int kind) {
    const size_t bs = kind == PK_Q8_0 ? sizeof(slm_block_q8_0) : kind == PK_Q5_0 ? sizeof(slm_block_q5_0)
                                                                                   : sizeof(slm_block_q4_0);
    return SLM_QUANT_PACK_ROWS * bs;
}

/* blk[g] = block index b of the tile's group g (G groups from grp, group_bytes apart; gbs
 * bytes a block index), each prefetched PACK_PF block indexes ahead. */
static inline void pk_blocks(const uint8_t *grp, size_t group_bytes, size_t gbs, int64_t b, int G,
                             const uint8_t *blk[PACK_G]) {
    for (int g = 0; g < G; g++) {
        blk[g] = grp + (size_t)g * group_bytes + (size_t)b * gbs;
        for (size_t o = 0; o < gbs; o += 64) /* an address only: prefetching never faults */
            _mm_prefetch((const char *)blk[g] + PACK_PF * gbs + o, _MM_HINT_T0);
    }
}

/* The including file's tile (defined after this header). */
PD_TARGET __attribute__((always_inline)) static inline void PD_TILE(int64_t nb, const uint8_t *grp, size_t group_bytes,
                                                                    const uint8_t *x, size_t xs, const float *pd,
                                                                    const float *ps, size_t bstride, size_t rstride,
                                                                    float *y, size_t ys, const int G, const int V,
                                                                    const int kind);

/* Groups [g0, g1) x all activation rows for one kind; tab as in slm_gemm_packed_fn. */
PD_TARGET __attribute__((always_inline)) static inline void gemm_packed_kind(int64_t n, const void *P, size_t row_bytes,
                                                                              int64_t g0, int64_t g1, const void *xq,
                                                                              size_t xs, int64_t n_vec, float *y,
                                                                              size_t ys, const float *tab,
                                                                              const int kind) {
    const int64_t nb = n / SLM_QK8_0;
    if (nb <= 0 || nb > PACK_TABLE) return; /* the model packs only rows of 1..SLM_QUANT_PACK_MAX_COLS */
    const size_t group_bytes = SLM_QUANT_PACK_ROWS * row_bytes;
    const uint8_t *xm = xq;
    int64_t chunk = PACK_TABLE / nb < PACK_CHUNK_ROWS ? PACK_TABLE / nb : PACK_CHUNK_ROWS;
    float cd[PACK_TABLE], cs[PACK_TABLE]; /* without tab, per chunk: activation scale and block sum, [block][row] */
    for (int64_t v0 = 0; v0 < n_vec; v0 += chunk) {
        const int64_t v1 = v0 + chunk < n_vec ? v0 + chunk : n_vec;
        /* entry (block b, row v) at pd / ps[b * bstride + (v - vb) * rstride] */
        const float *pd = cd, *ps = cs;
        size_t bstride = (size_t)(v1 - v0), rstride = 1;
        int64_t vb = v0;
        if (tab) {
            pd = tab, ps = tab + (size_t)nb * (size_t)n_vec, bstride = 1, rstride = (size_t)nb, vb = 0;
        } else {
            slm_quant_q8_0_table_avx2(xm, xs, v0, v1, nb, bstride, cd, PD_SUMS(kind) ? cs : NULL, 8.0f);
        }
        for (int64_t g = g0; g < g1;) {
            /* pairs of groups, then the odd one */
            const int G = PD_PAIRS(kind) && n_vec >= PACK_PAIR_MIN_VEC && g + PACK_G <= g1 ? PACK_G : 1;
            const uint8_t *grp = (const uint8_t *)P + (size_t)g * group_bytes;
            float *yg = y + (size_t)g * SLM_QUANT_PACK_ROWS;
            int64_t v = v0;
#define PD_RUN(G_, V_)                                                                                              \
    PD_TILE(nb, grp, group_bytes, xm + (size_t)v * xs, xs, pd + (size_t)(v - vb) * rstride,                         \
            ps + (size_t)(v - vb) * rstride, bstride, rstride, yg + (size_t)v * ys, ys, G_, V_, kind)
#define PD_RUNS(G_)                                                 \
    do {                                                            \
        for (; v + PACK_V <= v1; v += PACK_V) PD_RUN(G_, PACK_V);   \
        for (; v + 2 <= v1; v += 2) PD_RUN(G_, 2);                  \
        if (v < v1) PD_RUN(G_, 1);                                  \
    } while (0)
            if (G == PACK_G)
                PD_RUNS(PACK_G);
            else
                PD_RUNS(1);
            g += G;
#undef PD_RUNS
#undef PD_RUN
        }
    }
}

#endif /* SLMESH_QUANT_PACK_TILE_H */
