/*
 * quant/kernels_avx2.c: AVX2 + FMA dot products for every weight type slmesh computes with
 * but Q8_1/Q8_K (activation types): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (32-blocks), Q2_K..
 * Q6_K, IQ4_XS (super-blocks), and the plain float types F32, F16 and BF16 (the F32 models
 * and the F16 KV cache).
 *
 * Every function computes what its scalar twin in quant_legacy.c / quant_k.c computes: the
 * per-block integer sums are exact (int8 x int8 products through maddubs/madd, no
 * saturation for the value ranges the quantizers produce: |q8| <= 127). The 32-block types
 * (Q8_0, Q4_0, Q5_0, IQ4_NL against Q8_0 activations, the bulk of a quantized model's work;
 * Q4_1, Q5_1 against Q8_1) also do the float side in the scalar kernel's order, so they
 * equal it bit for bit, and their tiled products (decode and prompt tiles) equal it too;
 * see their section. The K types' tiles (every one of them has one) equal their AVX2
 * vec_dot. The others differ from scalar only on the float side (8 lanes, FMA); the F32 and F16 kernels
 * are laid out after the reference's own AVX2 code (same lanes, FMA order and reductions),
 * and the float types accumulate in float there, where the scalar kernels accumulate in
 * double.
 * Compiled with per-function target attributes, so the rest of the build stays baseline
 * x86-64; kernels.c only selects this set when the CPU reports AVX2, FMA and F16C.
 * Also the activation quantizers for Q8_0 / Q8_1 (same bytes as quant/act.c).
 * Thread-safety: pure functions. Non-goals: to_float and from_float (dequantization and
 * weight quantization are not on the hot path).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX2

#include <immintrin.h>

#include "quant/blocks.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* No implicit FMA: the tiles repeat the vec_dots' float steps operation by operation, and
 * the Q8_0..IQ4_NL kernels the scalar ones; clang would otherwise fuse a * b + c written
 * in one expression (GCC does not in ISO C mode, the build's). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- helpers ------------------------------------------------------------------------------ */

AVX2_TARGET static inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); } /* exact, as slm_quant_h2f */

/* The largest of the 8 lanes (maxps order: low half first, as the activation quantizers
 * have always reduced, so NaN lanes resolve as before). */
AVX2_TARGET static inline float hmax_f32_8(__m256 x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

AVX2_TARGET static inline int hsum_i32_8(__m256i x) {
    __m128i r = _mm_add_epi32(_mm256_extracti128_si256(x, 1), _mm256_castsi256_si128(x));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* 8 int32 sums of 4 products each of signed bytes x and y: |x| * sign(y, x) with maddubs
 * (unsigned x signed, pairs into int16), then pairs into int32. */
AVX2_TARGET static inline __m256i dot_i8_32(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15) then high (16..31). */
AVX2_TARGET static inline __m256i unpack_nibbles_32(const uint8_t *p) {
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes: byte k is 0xFF when bit k of the little-endian word at p is set. */
AVX2_TARGET static inline __m256i expand_bits_32(const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, sizeof w);
    /* byte k <- byte k / 8 of w, then all bits but bit k % 8 forced on */
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread);
    const __m256i others = _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL);
    return _mm256_cmpeq_epi8(_mm256_or_si256(b, others), _mm256_set1_epi64x(-1));
}

/* 8 int32 sums of 4 products each of unsigned bytes u (< 128) and signed bytes y. */
AVX2_TARGET static inline __m256i dot_u8_32(__m256i u, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1));
}

/* The 16 IQ4 levels in both 128-bit lanes, for pshufb lookups by nibble. */
AVX2_TARGET static inline __m256i iq4_levels(void) {
    const __m128i v = _mm_loadu_si128((const __m128i *)slm_quant_kvalues_iq4nl);
    return _mm256_set_m128i(v, v);
}

/* ---- K super-blocks ----------------------------------------------------------------------- */

/* Q4_K and Q5_K: the integer sum of one super-block, sum over sub-blocks of scale * (q . y),
 * where qs holds 4 chunks of 64 (32 bytes: low nibbles = sub-block 2c, high = 2c + 1) and,
 * for Q5_K, qh holds the fifth bits (bit 2c of qh[l] for low nibble l, bit 2c + 1 for high).
 * The min term goes through Q8_K's bsums: *summ = sum over 16-groups of min * bsum. */
AVX2_TARGET static inline int k4_block_sum(const uint8_t *q4, const uint8_t *qh, const uint8_t packed[SLM_K_SCALE_SIZE],
                                           const slm_block_q8_k *yb, int *summ) {
    const __m256i m4 = _mm256_set1_epi8(0xF), sixteen = _mm256_set1_epi8(16);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) slm_quant_scale_min_k4(j, packed, &sc[j], &mn[j]);
    int s = 0;
    for (int j = 0; j < 16; j++) s += yb->bsums[j] * mn[j / 2];
    *summ = s;
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    const int8_t *q8 = yb->qs;
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++, q4 += 32, q8 += 64) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
        __m256i lo = _mm256_and_si256(bits, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if (qh) {
            const __m256i ml = _mm256_set1_epi8((char)(1 << (2 * c))), mh = _mm256_set1_epi8((char)(2 << (2 * c)));
            lo = _mm256_add_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen));
            hi = _mm256_add_epi8(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen));
        }
        const __m256i yl = _mm256_loadu_si256((const __m256i *)q8);
        const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 32));
        const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl), _mm256_set1_epi16(sc[2 * c]));
        const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh), _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    return hsum_i32_8(sumi);
}

AVX2_TARGET static float vec_dot_q4_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int summ;
        const int isum = k4_block_sum(x[i].qs, NULL, x[i].scales, &y[i], &summ);
        const float d = f16_to_f32(x[i].d) * y[i].d;
        const float dmin = f16_to_f32(x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summ;
    }
    return sumf;
}

AVX2_TARGET static float vec_dot_q5_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int summ;
        const int isum = k4_block_sum(x[i].qs, x[i].qh, x[i].scales, &y[i], &summ);
        const float d = f16_to_f32(x[i].d) * y[i].d;
        const float dmin = f16_to_f32(x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summ;
    }
    return sumf;
}

AVX2_TARGET static float vec_dot_q6_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q6_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i m2 = _mm256_set1_epi8(0x30);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        /* quants are stored +32: sum sc * (q - 32) * y = sum sc * q * y - 32 sum sc * bsum */
        int corr = 0;
        for (int j = 0; j < 16; j++) corr += sc[j] * y[i].bsums[j];
        __m256i sumi = _mm256_setzero_si256();
        /* two halves of 128: ql[0..63], qh[0..31], 8 scales of 16 each */
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, q8 += 128) {
            const __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i bh = _mm256_loadu_si256((const __m256i *)qh);
            /* high 2 bits of elements l, l+32, l+64, l+96 are bits 0-1, 2-3, 4-5, 6-7 of qh[l] */
            const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(bh, 4), m2);
            const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(bh, 2), m2);
            const __m256i h2 = _mm256_and_si256(bh, m2);
            const __m256i h3 = _mm256_and_si256(_mm256_srli_epi16(bh, 2), m2);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(b1, m4), h0),
                _mm256_or_si256(_mm256_and_si256(b2, m4), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4), h3),
            };
            for (int k = 0; k < 4; k++) {
                /* 32 elements = groups 2k (low 128-bit lane) and 2k + 1 (high lane) */
                const __m256i yk = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk), s));
            }
        }
        const float d = f16_to_f32(x[i].d) * y[i].d;
        sumf += d * (float)(hsum_i32_8(sumi) - 32 * corr);
    }
    return sumf;
}

AVX2_TARGET static float vec_dot_q2_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q2_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *sc = x[i].scales;
        int summs = 0; /* sum over 16-groups of min * (sum of the group's activations) */
        for (int j = 0; j < 16; j++) summs += y[i].bsums[j] * (sc[j] >> 4);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        /* two halves of 128: 32 bytes of qs read at 4 shifts; group g = 8h + 2s + (l >= 16) */
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int s2 = 0; s2 < 4; s2++, q8 += 32) {
                const int g = 8 * h + 2 * s2;
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * s2), m3);
                const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1] & 0xF), _mm_set1_epi16(sc[g] & 0xF));
                const __m256i yv = _mm256_loadu_si256((const __m256i *)q8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, yv), sv));
            }
        }
        const float dall = y[i].d * f16_to_f32(x[i].d);
        const float dmin = y[i].d * f16_to_f32(x[i].dmin);
        sumf += dall * (float)hsum_i32_8(sumi) - dmin * (float)summs;
    }
    return sumf;
}

AVX2_TARGET static float vec_dot_q3_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q3_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int8_t sc[16];
        slm_quant_q3_k_scales(x[i].scales, sc);
        /* quants are q - 4 with q = low 2 bits + 4 * high bit: sum sc * (q - 4) * y =
         * sum sc * q * y - 4 sum sc * bsum */
        int corr = 0;
        for (int j = 0; j < 16; j++) corr += (sc[j] - 32) * y[i].bsums[j];
        const __m256i hm = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            for (int s2 = 0; s2 < 4; s2++, q8 += 32) {
                const int g = 8 * h + 2 * s2;
                const __m256i hb = _mm256_set1_epi8((char)(1 << (4 * h + s2)));
                const __m256i high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, hb), hb), four);
                const __m256i q = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * s2), m3), high); /* 0..7 */
                const __m256i sv = _mm256_set_m128i(_mm_set1_epi16((short)(sc[g + 1] - 32)), _mm_set1_epi16((short)(sc[g] - 32)));
                const __m256i yv = _mm256_loadu_si256((const __m256i *)q8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, yv), sv));
            }
        }
        const float d = f16_to_f32(x[i].d) * y[i].d;
        sumf += d * (float)(hsum_i32_8(sumi) - 4 * corr);
    }
    return sumf;
}

AVX2_TARGET static float vec_dot_iq4_xs_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_iq4_xs *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    const __m256i levels = iq4_levels();
    float sumf = 0.0f;
    for (int64_t ibl = 0; ibl < nb; ibl++) {
        const uint8_t *qs = x[ibl].qs;
        const int8_t *q8 = y[ibl].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int ib = 0; ib < SLM_QK_K / 32; ib++, qs += 16, q8 += 32) {
            const int ls = ((x[ibl].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[ibl].scales_h >> 2 * ib) & 3) << 4);
            const __m256i qx = _mm256_shuffle_epi8(levels, unpack_nibbles_32(qs));
            const __m256i qy = _mm256_loadu_si256((const __m256i *)q8);
            /* |qx| * sign(qy, qx) pairs into int16, then pairs times the sub-block scale */
            const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16((short)(ls - 32))));
        }
        const float d4d8 = f16_to_f32(x[ibl].d) * y[ibl].d;
        sumf += d4d8 * (float)hsum_i32_8(sumi);
    }
    return sumf;
}

/* ---- 32-blocks against Q8_0 (Q8_1) activations: Q8_0, Q4_0, Q5_0, IQ4_NL (Q4_1, Q5_1) ------ */

/* These kernels give the scalar kernels' results bit for bit. The integer sum of each block
 * (weight x activation, 32 products) is exact whatever the order; the float side is then
 * done per output in the scalar kernel's order: one block after the other, the block's
 * float term formed exactly as the scalar source writes it (Q8_0, Q5_0, IQ4_NL:
 * isum * (dx * dy); Q4_0: (isum * dx) * dy; Q4_1, Q5_1: (dx * dy) * isum + mx * sy), then
 * added to the running sum (no FMA). So
 * vec_dot, the decode tiles and the prompt tiles agree with each other and with the
 * specification, whatever the tiling, the thread count or the ISA.
 *
 * Speed comes from putting 8 outputs in the 8 lanes of one float vector: a tile is R weight
 * rows x V activation rows (R * V a multiple of 8 where possible); for each block the R x V
 * integer vectors (8 partial int32 sums each, from maddubs/madd) are reduced by a tree of
 * horizontal adds into one vector per 8 outputs, and the float work (convert, 2 multiplies,
 * add) is done once per 8 outputs instead of once per output.
 *  - Integer kinds: Q4_0 and Q5_0 weights are unsigned nibbles (0..15, 0..31) minus an
 *    offset (8, 16): maddubs(unsigned weight, signed activation) needs no sign fix-up, and
 *    the offset comes off the block total as offset * (sum of the activation block), a
 *    number computed once per activation block; their small products also let the tree
 *    start in 16-bit lanes (reduce8_i16). Q4_1 and Q5_1 (WK_MIN) are the same unsigned
 *    values without an offset, against Q8_1 activations: their minimum comes in as
 *    m x (the activation block's s). Q8_0 and IQ4_NL weights are signed:
 *    |w| . sign(a, w) as in dot_i8_32.
 *  - Activation scales (f16) and block sums are converted once per activation chunk into a
 *    small table laid out block-major, so a tile loads the V values of one block as one
 *    broadcast.
 * Tiles: decoding (1-2 activation rows) R = 8 rows, prompt processing R = 4 rows x 4
 * activation rows; the rows of a thread's range that do not fill a tile use vec_dot.
 * Activations are walked in chunks of about GEMM_ACT_BYTES (L1) while the rows pass. */
#define GEMM_VECS 4                /* activation rows per prompt tile */
#define GEMM_ACT_BYTES (32 * 1024) /* activation bytes per chunk: about L1 */
#define TILE_ROWS_PP 4             /* weight rows per prompt tile: 16 outputs, 2 lane groups */
#define TILE_ROWS_TG 8             /* weight rows per decode tile: 8 outputs per activation row */
#define DECODE_VECS 2              /* up to this many activation rows use decode tiles */
#define TILE_MAX_OUT 32            /* R * V of the largest tile (8 x 4) */
#define PRE_MAX 2048               /* entries of the per-chunk scale table (8 KiB + 8 KiB of stack) */
/* Software prefetch distance in tiles. R rows read side by side are R interleaved streams,
 * which the hardware prefetchers follow badly (4-row Q8_0 tiles from DRAM: 6-8 GB/s on
 * one core without prefetching, against 14 GB/s for one row at a time); prefetching the
 * tile TILE_PF ahead as one linear run of R * block bytes per block step gives 15-19 GB/s
 * (per-row prefetches of the same lines: 11 GB/s). */
#define TILE_PF 2

/* Integer kinds and float orders (see above). */
enum { WK_SIGNED = 0, WK_OFFSET = 1, WK_MIN = 2 };
enum { FO_SCALE_FIRST = 0, FO_LEFT_TO_RIGHT = 1 };

/* One 32-element weight block's values: signed (WK_SIGNED), unsigned before the offset
 * (WK_OFFSET) or unsigned above the minimum (WK_MIN). Every block of these types starts
 * with its f16 scale. */
typedef __m256i (*wvals_fn)(const uint8_t *block);

/* 16 bytes of nibbles -> 32 bytes (low nibbles then high), by one broadcast load and a
 * per-lane shift: cheaper than unpack_nibbles_32's insert. */
AVX2_TARGET static inline __m256i nibbles_32(const uint8_t *p) {
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0F));
}

AVX2_TARGET static inline __m256i wvals_q8_0(const uint8_t *blk) {
    return _mm256_loadu_si256((const __m256i *)((const slm_block_q8_0 *)blk)->qs);
}
AVX2_TARGET static inline __m256i wvals_q4_0(const uint8_t *blk) {
    return nibbles_32(((const slm_block_q4_0 *)blk)->qs); /* 0..15, offset 8 */
}
AVX2_TARGET static inline __m256i wvals_q5_0(const uint8_t *blk) {
    const slm_block_q5_0 *b = (const slm_block_q5_0 *)blk;
    const __m256i hi = _mm256_and_si256(expand_bits_32(b->qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles_32(b->qs), hi); /* 0..31, offset 16 */
}
AVX2_TARGET static inline __m256i wvals_q4_1(const uint8_t *blk) {
    return nibbles_32(((const slm_block_q4_1 *)blk)->qs); /* 0..15 */
}
AVX2_TARGET static inline __m256i wvals_q5_1(const uint8_t *blk) {
    const slm_block_q5_1 *b = (const slm_block_q5_1 *)blk;
    const __m256i hi = _mm256_and_si256(expand_bits_32(b->qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles_32(b->qs), hi); /* 0..31 */
}
AVX2_TARGET static inline __m256i wvals_iq4_nl(const uint8_t *blk) {
    return _mm256_shuffle_epi8(iq4_levels(), nibbles_32(((const slm_block_iq4_nl *)blk)->qs)); /* -127..113 */
}

/* Up to 8 f16 values (lane i < 8) gathered into two words in registers, then converted to
 * floats: an array stored value by value and reloaded as one vector stalls the reload on
 * store forwarding (as long as a K super-block's integer work in a decode tile). */
typedef struct f16_lanes {
    uint64_t lo, hi; /* lanes 0..3, 4..7: 16 bits each */
} f16_lanes;

static inline void f16_lanes_put(f16_lanes *l, int i, uint16_t h) {
    if (i < 4) l->lo |= (uint64_t)h << (16 * i);
    else l->hi |= (uint64_t)h << (16 * (i - 4));
}

AVX2_TARGET static inline __m256 f16_lanes_ps(f16_lanes l) {
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)l.hi, (long long)l.lo));
}

AVX2_TARGET static inline uint16_t block_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, sizeof h);
    return h;
}

/* The minimum of a Q4_1 / Q5_1 block: the f16 after its scale. */
AVX2_TARGET static inline uint16_t block_m(const uint8_t *blk) { return block_d(blk + sizeof(uint16_t)); }

/* The 32 quants of activation block ib of the row at x: Q8_1 blocks for WK_MIN, else Q8_0. */
AVX2_TARGET static inline const int8_t *act_qs(const uint8_t *x, int64_t ib, int wk) {
    return wk == WK_MIN ? ((const slm_block_q8_1 *)x)[ib].qs : ((const slm_block_q8_0 *)x)[ib].qs;
}

/* The WK_MIN kinds' chunk table: Q8_1 rows [v0, v1)'s scales d (pd) and s (ps) as floats,
 * entry (block b, row v) at b * pstride + v - v0. */
AVX2_TARGET static void q8_1_table(const uint8_t *xq, size_t xs, int64_t v0, int64_t v1, int64_t nb, size_t pstride,
                                   float *pd, float *ps) {
    for (int64_t v = v0; v < v1; v++) {
        const slm_block_q8_1 *yb = (const slm_block_q8_1 *)(xq + (size_t)v * xs);
        for (int64_t ib = 0; ib < nb; ib++) {
            pd[(size_t)ib * pstride + (size_t)(v - v0)] = f16_to_f32(yb[ib].d);
            ps[(size_t)ib * pstride + (size_t)(v - v0)] = f16_to_f32(yb[ib].s);
        }
    }
}

/* Sum of the 32 signed bytes at p (exact): psadbw of the bytes + 128 against zero. */
AVX2_TARGET static inline int block_sum_i8(const int8_t *p) {
    const __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_set1_epi8((char)0x80));
    const __m256i s = _mm256_sad_epu8(b, _mm256_setzero_si256()); /* 4 x 64-bit sums of 8 */
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
    return _mm_cvtsi128_si32(t) - 32 * 128;
}

/* The table of 8 activation rows (rows x + r * xs) for block ib, at pd / ps + ib * pstride:
 * scales by one vcvtph2ps; each row's 32 quants summed exactly by maddubs with ones (pairs:
 * no saturation) and madd, then the 8 rows' 8 partial sums folded by hadd into one vector. */
AVX2_TARGET static inline void table8(const uint8_t *x, size_t xs, int64_t ib, size_t pstride, float *pd, float *ps,
                                      float off) {
    const slm_block_q8_0 *b[8];
    for (int r = 0; r < 8; r++) b[r] = (const slm_block_q8_0 *)(x + (size_t)r * xs) + ib;
    const __m128i dh = _mm_setr_epi16((short)b[0]->d, (short)b[1]->d, (short)b[2]->d, (short)b[3]->d, (short)b[4]->d,
                                      (short)b[5]->d, (short)b[6]->d, (short)b[7]->d);
    _mm256_storeu_ps(pd + (size_t)ib * pstride, _mm256_cvtph_ps(dh));
    if (!ps) return;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i t[8];
    for (int r = 0; r < 8; r++)
        t[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)b[r]->qs)), ones16);
    /* per 128-bit lane: rows 0..3, then 4..7; the two lanes' halves added at the end */
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(t[4], t[5]), _mm256_hadd_epi32(t[6], t[7]));
    const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
    _mm256_storeu_ps(ps + (size_t)ib * pstride, _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(off)));
}

AVX2_TARGET void slm_quant_q8_0_table_avx2(const uint8_t *xq, size_t xs, int64_t v0, int64_t v1, int64_t nb,
                                           size_t pstride, float *pd, float *ps, float off) {
    int64_t v = v0;
    for (; v + 8 <= v1; v += 8) /* 8 rows at once: one vector store per block */
        for (int64_t ib = 0; ib < nb; ib++)
            table8(xq + (size_t)v * xs, xs, ib, pstride, pd + (v - v0), ps ? ps + (v - v0) : NULL, off);
    for (; v < v1; v++) {
        const slm_block_q8_0 *yb = (const slm_block_q8_0 *)(xq + (size_t)v * xs);
        for (int64_t ib = 0; ib < nb; ib++) {
            pd[(size_t)ib * pstride + (size_t)(v - v0)] = f16_to_f32(yb[ib].d);
            if (ps) ps[(size_t)ib * pstride + (size_t)(v - v0)] = off * (float)block_sum_i8(yb[ib].qs);
        }
    }
}

/* A row at a time: the chunk table of that one row, whose entries (stride 1) are then the
 * row's own run of the table. */
AVX2_TARGET void slm_quant_pack_table_avx2(const void *xq, size_t xs, int64_t v0, int64_t v1, int64_t n_vec, int64_t n,
                                           float *tab) {
    const int64_t nb = n / SLM_QK8_0;
    for (int64_t v = v0; v < v1; v++)
        slm_quant_q8_0_table_avx2(xq, xs, v, v + 1, nb, 1, tab + (size_t)v * (size_t)nb,
                                  tab + (size_t)(n_vec + v) * (size_t)nb, 8.0f);
}

/* The block's float term from its exact integer sum, in the scalar kernel's order. */
AVX2_TARGET static inline float block_term(int isum, float dx, float dy, int fo) {
    if (fo == FO_LEFT_TO_RIGHT) return (float)isum * dx * dy;
    return (float)isum * (dx * dy);
}

/* 8 partial int32 sums of one block pair (exact) for signed weights w (aw = |w|) and
 * activation bytes y. (Offset kinds use the 16 int16 sums of maddubs(w, y) directly.) */
AVX2_TARGET static inline __m256i pair_sums(__m256i w, __m256i aw, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(y, w)), _mm256_set1_epi16(1));
}

/* The plain dot product (one row, one activation row): per block an exact integer sum,
 * then the scalar kernel's float step. */
AVX2_TARGET __attribute__((always_inline)) static inline float dot_q8act(int64_t n, const uint8_t *x, const void *vy,
                                                                          size_t bs, wvals_fn wvals, int wk, int off_shift,
                                                                          int fo) {
    const uint8_t *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++, x += bs) {
        const __m256i w = wvals(x);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)act_qs(y, ib, wk));
        int isum;
        if (wk == WK_OFFSET) {
            const __m256i ws = _mm256_sub_epi8(w, _mm256_set1_epi8((char)(1 << off_shift)));
            isum = hsum_i32_8(dot_i8_32(ws, qy));
        } else if (wk == WK_MIN) {
            isum = hsum_i32_8(dot_u8_32(w, qy));
        } else {
            isum = hsum_i32_8(dot_i8_32(w, qy));
        }
        if (wk == WK_MIN) { /* the scalar kernel's (dx * dy) * isum + mx * sy */
            const slm_block_q8_1 *yb = (const slm_block_q8_1 *)y + ib;
            const float t1 = (f16_to_f32(block_d(x)) * f16_to_f32(yb->d)) * (float)isum;
            const float t2 = f16_to_f32(block_m(x)) * f16_to_f32(yb->s);
            sumf += t1 + t2;
        } else {
            const float t = block_term(isum, f16_to_f32(block_d(x)), f16_to_f32(((const slm_block_q8_0 *)y)[ib].d), fo);
            sumf += t;
        }
    }
    return sumf;
}


/* Repeat V consecutive values (V = 1, 2 or 4) across the 8 lanes: lane k gets p[k % V]. */
AVX2_TARGET static inline __m256 rep_load_ps(const float *p, int V) {
    if (V == 4) return _mm256_broadcast_ps((const __m128 *)p);
    if (V == 2) return _mm256_castpd_ps(_mm256_broadcast_sd((const double *)p));
    return _mm256_broadcast_ss(p);
}

/* Reduce 8 vectors of 8 int32 partial sums to one vector of their 8 totals (lane k = the
 * total of p[k]); exact. */
/* The same from 8 vectors of 16 int16 partial sums of an offset kind (maddubs(w, y), each
 * lane a sum of 2 products of at most 31 x 128): two levels of 16-bit horizontal adds (8
 * products per lane, |.| <= 31744: no overflow), then pairs into int32 by madd. Saves the
 * per-pair madd of reduce8_i32's inputs. */
AVX2_TARGET static inline __m256i reduce8_i16(const __m256i p[8]) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i h0 = _mm256_hadd_epi16(p[0], p[1]), h1 = _mm256_hadd_epi16(p[2], p[3]);
    const __m256i h2 = _mm256_hadd_epi16(p[4], p[5]), h3 = _mm256_hadd_epi16(p[6], p[7]);
    const __m256i q0 = _mm256_madd_epi16(_mm256_hadd_epi16(h0, h1), ones);
    const __m256i q1 = _mm256_madd_epi16(_mm256_hadd_epi16(h2, h3), ones);
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

AVX2_TARGET static inline __m256i reduce8_i32(const __m256i p[8]) {
    const __m256i h0 = _mm256_hadd_epi32(p[0], p[1]), h1 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i h2 = _mm256_hadd_epi32(p[4], p[5]), h3 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i q0 = _mm256_hadd_epi32(h0, h1), q1 = _mm256_hadd_epi32(h2, h3);
    /* q0 = totals of p0..p3 over elements (0-3 | 4-7) per 128-bit half; same for q1 */
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

/* One R x V tile (V = 1, 2 or 4): weight rows w + i * wrb against activation rows
 * x + j * xs, output (i, j) to y[j * ys + i]. pd/ps: the chunk's scale and sum table at
 * this tile's first activation row (entry of block ib, row j at [ib * pstride + j]; the
 * sums times the weight type's offset, as floats, exact).
 * Output (i, j) is lane k of group g where i * V + j = 8 * g + k. R, V, wk, off_shift and
 * fo are constants at every call, so everything unrolls into registers. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_q8act(
    int64_t nb, const uint8_t *w, size_t wrb, size_t bs, const uint8_t *x, size_t xs, const float *pd,
    const float *ps, size_t pstride, float *y, size_t ys, const int R, const int V, wvals_fn wvals, const int wk,
    const int off_shift, const int fo) {
    enum { MAXG = TILE_MAX_OUT / 8 };
    const int npairs = R * V, ngroups = (npairs + 7) / 8;
    __m256 acc[MAXG];
    for (int g = 0; g < ngroups; g++) acc[g] = _mm256_setzero_ps();
    /* lane k of group g reads row (8g + k) / V of the row scales */
    __m256i dx_idx[MAXG];
    for (int g = 0; g < ngroups; g++) {
        int idx[8];
        for (int k = 0; k < 8; k++) idx[k] = 8 * g + k < npairs ? (8 * g + k) / V : 0;
        dx_idx[g] = _mm256_setr_epi32(idx[0], idx[1], idx[2], idx[3], idx[4], idx[5], idx[6], idx[7]);
    }
    const uintptr_t pf = (uintptr_t)w + (size_t)R * wrb * TILE_PF; /* an address only: may be past W */
    for (int64_t ib = 0; ib < nb; ib++) {
        for (size_t o = 0; o < (size_t)R * bs; o += 64) /* one cache line at a time; never faults */
            _mm_prefetch((const char *)(pf + (size_t)ib * (size_t)R * bs + o), _MM_HINT_T0);
        const uint8_t *wb = w + (size_t)ib * bs;
        /* the R row scales as floats in lanes 0..R-1 */
        __m128i dh = _mm_setzero_si128();
        dh = _mm_insert_epi16(dh, block_d(wb), 0);
        if (R > 1) dh = _mm_insert_epi16(dh, block_d(wb + wrb), 1);
        if (R > 2) dh = _mm_insert_epi16(dh, block_d(wb + 2 * wrb), 2);
        if (R > 3) dh = _mm_insert_epi16(dh, block_d(wb + 3 * wrb), 3);
        if (R > 4) dh = _mm_insert_epi16(dh, block_d(wb + 4 * wrb), 4);
        if (R > 5) dh = _mm_insert_epi16(dh, block_d(wb + 5 * wrb), 5);
        if (R > 6) dh = _mm_insert_epi16(dh, block_d(wb + 6 * wrb), 6);
        if (R > 7) dh = _mm_insert_epi16(dh, block_d(wb + 7 * wrb), 7);
        const __m256 dx = _mm256_cvtph_ps(dh);
        __m256 mx = _mm256_setzero_ps(); /* WK_MIN: the R row minimums, likewise */
        if (wk == WK_MIN) {
            f16_lanes mh = {0, 0};
            for (int i = 0; i < R; i++) f16_lanes_put(&mh, i, block_m(wb + (size_t)i * wrb));
            mx = f16_lanes_ps(mh);
        }
        const __m256 dy = rep_load_ps(pd + (size_t)ib * pstride, V);
        /* WK_OFFSET: offset * (activation block sum) per lane, exact in float (|.| <= 16 * 32 *
         * 127); WK_MIN: the activation block's s */
        const __m256 corr = wk != WK_SIGNED ? rep_load_ps(ps + (size_t)ib * pstride, V) : _mm256_setzero_ps();
        __m256i qy[GEMM_VECS], xw[TILE_ROWS_TG], axw[TILE_ROWS_TG];
        for (int j = 0; j < V; j++) qy[j] = _mm256_loadu_si256((const __m256i *)act_qs(x + (size_t)j * xs, ib, wk));
        for (int i = 0; i < R; i++) {
            xw[i] = wvals(wb + (size_t)i * wrb);
            axw[i] = wk == WK_SIGNED ? _mm256_sign_epi8(xw[i], xw[i]) : xw[i];
        }
        for (int g = 0; g < ngroups; g++) {
            __m256i p[8];
            for (int k = 0; k < 8; k++) {
                const int pi = 8 * g + k;
                if (pi >= npairs) {
                    p[k] = _mm256_setzero_si256();
                    continue;
                }
                p[k] = wk != WK_SIGNED ? _mm256_maddubs_epi16(xw[pi / V], qy[pi % V])
                                       : pair_sums(xw[pi / V], axw[pi / V], qy[pi % V]);
            }
            /* the exact block sums as floats (exact: |sum| < 2^24), the offset taken off */
            const __m256i tot = wk != WK_SIGNED ? reduce8_i16(p) : reduce8_i32(p);
            const __m256 c = wk == WK_MIN ? _mm256_cvtepi32_ps(tot) : _mm256_sub_ps(_mm256_cvtepi32_ps(tot), corr);
            const __m256 dxg = V == 1 && g == 0 ? dx : _mm256_permutevar8x32_ps(dx, dx_idx[g]);
            __m256 t;
            if (wk == WK_MIN) {
                const __m256 mxg = V == 1 && g == 0 ? mx : _mm256_permutevar8x32_ps(mx, dx_idx[g]);
                t = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(dxg, dy), c), _mm256_mul_ps(mxg, corr));
            } else if (fo == FO_LEFT_TO_RIGHT) {
                t = _mm256_mul_ps(c, dxg);
                t = _mm256_mul_ps(t, dy);
            } else {
                const __m256 s = _mm256_mul_ps(dxg, dy);
                t = _mm256_mul_ps(c, s);
            }
            acc[g] = _mm256_add_ps(acc[g], t);
        }
    }
    for (int g = 0; g < ngroups; g++) {
        float out[8];
        _mm256_storeu_ps(out, acc[g]);
        for (int k = 0; k < 8 && 8 * g + k < npairs; k++) {
            const int pi = 8 * g + k;
            y[(size_t)(pi % V) * ys + (size_t)(pi / V)] = out[k];
        }
    }
}

/* Rows [r, r + R) against activation rows [v0, v1) of one chunk (table pd/ps, first entry
 * at v0): tiles of GEMM_VECS, then 2, then 1 activation rows. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_rows_q8act(
    int64_t nb, const uint8_t *w, size_t wrb, size_t bs, const uint8_t *xq, size_t xs, int64_t v0, int64_t v1,
    const float *pd, const float *ps, size_t pstride, float *y, size_t ys, const int R, wvals_fn wvals, const int wk,
    const int off_shift, const int fo) {
    int64_t v = v0;
#define TILE_AT(V_) \
    tile_q8act(nb, w, wrb, bs, xq + (size_t)v * xs, xs, pd + (v - v0), ps + (v - v0), pstride, y + (size_t)v * ys, ys, R, \
               V_, wvals, wk, off_shift, fo)
    if (R * GEMM_VECS <= TILE_MAX_OUT)
        for (; v + GEMM_VECS <= v1; v += GEMM_VECS) TILE_AT(GEMM_VECS);
    for (; v + 2 <= v1; v += 2) TILE_AT(2);
    if (v < v1) TILE_AT(1);
#undef TILE_AT
}

/* One thread's rows [r0, r1) x all activation rows, for one weight type. */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_q8act(int64_t n, const void *W, size_t wrb,
                                                                          int64_t r0, int64_t r1, const void *xq,
                                                                          size_t xs, int64_t n_vec, float *y, size_t ys,
                                                                          size_t bs, wvals_fn wvals, slm_vec_dot_fn dot,
                                                                          const int wk, const int off_shift,
                                                                          const int fo) {
    const int64_t nb = n / SLM_QK8_0;
    const uint8_t *wm = W, *xm = xq;
    /* activation rows per chunk: about GEMM_ACT_BYTES, a multiple of GEMM_VECS, and a
     * table that fits PRE_MAX entries */
    int64_t chunk = (int64_t)(GEMM_ACT_BYTES / (xs ? xs : 1));
    if (chunk < GEMM_VECS) chunk = GEMM_VECS;
    chunk -= chunk % GEMM_VECS;
    if (nb > 0 && chunk > PRE_MAX / nb) chunk = PRE_MAX / nb;
    if (nb == 0 || chunk < 1) { /* empty rows, or rows too long for the table: vec_dot */
        for (int64_t r = r0; r < r1; r++)
            for (int64_t v = 0; v < n_vec; v++) y[(size_t)v * ys + (size_t)r] = dot(n, wm + (size_t)r * wrb, xm + (size_t)v * xs);
        return;
    }
    float pd[PRE_MAX], ps[PRE_MAX]; /* per chunk: activation scale and block sum, [block][row] */
    for (int64_t v0 = 0; v0 < n_vec; v0 += chunk) {
        const int64_t v1 = v0 + chunk < n_vec ? v0 + chunk : n_vec;
        const size_t pstride = (size_t)(v1 - v0);
        if (wk == WK_MIN)
            q8_1_table(xm, xs, v0, v1, nb, pstride, pd, ps);
        else
            slm_quant_q8_0_table_avx2(xm, xs, v0, v1, nb, pstride, pd, wk == WK_OFFSET ? ps : NULL,
                                      (float)(1 << off_shift));
        const int R = v1 - v0 <= DECODE_VECS ? TILE_ROWS_TG : TILE_ROWS_PP;
        int64_t r = r0;
        if (R == TILE_ROWS_TG) {
            for (; r + TILE_ROWS_TG <= r1; r += TILE_ROWS_TG)
                tile_rows_q8act(nb, wm + (size_t)r * wrb, wrb, bs, xm, xs, v0, v1, pd, ps, pstride, y + r, ys, TILE_ROWS_TG,
                                wvals, wk, off_shift, fo);
        } else {
            for (; r + TILE_ROWS_PP <= r1; r += TILE_ROWS_PP)
                tile_rows_q8act(nb, wm + (size_t)r * wrb, wrb, bs, xm, xs, v0, v1, pd, ps, pstride, y + r, ys, TILE_ROWS_PP,
                                wvals, wk, off_shift, fo);
        }
        for (; r < r1; r++) /* rows that do not fill a tile */
            for (int64_t v = v0; v < v1; v++)
                y[(size_t)v * ys + (size_t)r] = dot(n, wm + (size_t)r * wrb, xm + (size_t)v * xs);
    }
}

/* Each type: its vec_dot and its gemm, from the same parts (act: its activation type). */
#define Q8ACT_KERNELS(name, act, blk, wk, off_shift, fo)                                                             \
    AVX2_TARGET static float vec_dot_##name##_##act(int64_t n, const void *vx, const void *vy) {                     \
        return dot_q8act(n, vx, vy, sizeof(blk), wvals_##name, wk, off_shift, fo);                                   \
    }                                                                                                                \
    AVX2_TARGET static void gemm_##name##_##act(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1,        \
                                                const void *xq, size_t xs, int64_t n_vec, float *y, size_t ys) {     \
        gemm_q8act(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, sizeof(blk), wvals_##name, vec_dot_##name##_##act, wk,    \
                   off_shift, fo);                                                                                   \
    }

Q8ACT_KERNELS(q8_0, q8_0, slm_block_q8_0, WK_SIGNED, 0, FO_SCALE_FIRST)
Q8ACT_KERNELS(q4_0, q8_0, slm_block_q4_0, WK_OFFSET, 3, FO_LEFT_TO_RIGHT)
Q8ACT_KERNELS(q5_0, q8_0, slm_block_q5_0, WK_OFFSET, 4, FO_SCALE_FIRST)
Q8ACT_KERNELS(iq4_nl, q8_0, slm_block_iq4_nl, WK_SIGNED, 0, FO_SCALE_FIRST)
Q8ACT_KERNELS(q4_1, q8_1, slm_block_q4_1, WK_MIN, 0, FO_SCALE_FIRST)
Q8ACT_KERNELS(q5_1, q8_1, slm_block_q5_1, WK_MIN, 0, FO_SCALE_FIRST)

/* ---- tiled products for K super-blocks (Q8_K activations) -------------------------------- */

/* Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS weights against Q8_K activation rows, with the lanes-as-outputs
 * layout of the 32-block tiles: a tile is R rows x V activation rows with R * V = 8
 * (decode 8 x 1 and 4 x 2, prompt 2 x 4). Per super-block each row's quants are unpacked
 * once and multiplied with the V activation rows into one int32 vector per output (the
 * vec_dot's sub-block scales applied by madd, so the lanes hold exact partial sums); the 8
 * vectors are reduced to one vector of 8 exact super-block sums, and the correction term
 * (Q2_K/Q4_K/Q5_K: mins x bsums; Q3_K/Q6_K: scales x bsums, for their offsets 4 and 32;
 * IQ4_XS: none, its levels are signed) likewise. The float step is then
 * vec_dot's exactly (per lane: d = dx * dy, the same products, difference and sum), so
 * every output equals vec_dot's bit for bit. */
enum { KT_Q4 = 0, KT_Q5 = 1, KT_Q6 = 2, KT_Q2 = 3, KT_Q3 = 4, KT_IQ4XS = 5 };

/* The 8 scales and 8 mins of a Q4_K/Q5_K super-block (6 bits each, packed in 12 bytes), as
 * slm_quant_scale_min_k4 unpacks them, by 32-bit word operations: sc[0..7], mn[0..7]. */
AVX2_TARGET static inline void k4_scales(const uint8_t packed[SLM_K_SCALE_SIZE], uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3];
    memcpy(u, packed, sizeof u);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    const uint32_t s_lo = u[0] & m6, m_lo = u[1] & m6;                   /* j < 4 */
    const uint32_t s_hi = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);       /* j >= 4 */
    const uint32_t m_hi = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
    memcpy(sc, &s_lo, 4), memcpy(sc + 4, &s_hi, 4);
    memcpy(mn, &m_lo, 4), memcpy(mn + 4, &m_hi, 4);
}

/* The 8 values of v (bytes) as 16 int16 lanes, each twice: lane g = v[g / 2] (the scale or
 * min of 16-group g of a K super-block). */
AVX2_TARGET static inline __m256i dup8_i16(const uint8_t v[8]) {
    uint64_t w;
    memcpy(&w, v, sizeof w);
    const __m128i x = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)w));
    return _mm256_set_m128i(_mm_unpackhi_epi16(x, x), _mm_unpacklo_epi16(x, x));
}

/* One R x V tile of a K type (R * V = 8): rows w + i * wrb, activation rows x + j * xs,
 * output (i, j) = lane i * V + j, stored at y[j * ys + i]. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_k(int64_t nb, const uint8_t *w, size_t wrb,
                                                                      const uint8_t *x, size_t xs, float *y, size_t ys,
                                                                      const int R, const int V, const int kt) {
    const size_t bs = kt == KT_Q6   ? sizeof(slm_block_q6_k)
                      : kt == KT_Q5 ? sizeof(slm_block_q5_k)
                      : kt == KT_Q2 ? sizeof(slm_block_q2_k)
                      : kt == KT_Q3 ? sizeof(slm_block_q3_k)
                      : kt == KT_IQ4XS ? sizeof(slm_block_iq4_xs)
                                    : sizeof(slm_block_q4_k);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    const __m256i dx_idx = _mm256_setr_epi32(0 / V, 1 / V, 2 / V, 3 / V, 4 / V, 5 / V, 6 / V, 7 / V);
    const uintptr_t pf = (uintptr_t)w + (size_t)R * wrb * TILE_PF; /* an address only: may be past W */
    for (int64_t ib = 0; ib < nb; ib++) {
        for (size_t o = 0; o < (size_t)R * bs; o += 64) /* one cache line at a time; never faults */
            _mm_prefetch((const char *)(pf + (size_t)ib * (size_t)R * bs + o), _MM_HINT_T0);
        const slm_block_q8_k *yb[GEMM_VECS];
        for (int j = 0; j < V; j++) yb[j] = (const slm_block_q8_k *)(x + (size_t)j * xs) + ib;
        __m256i sumi[8], corr[8];
        f16_lanes dh = {0, 0}, dmh = {0, 0}; /* row scales and mins scales, f16 */
        for (int i = 0; i < R; i++) {
            const uint8_t *blk = w + (size_t)i * wrb + (size_t)ib * bs;
            for (int j = 0; j < V; j++) sumi[i * V + j] = _mm256_setzero_si256();
            if (kt == KT_Q6) {
                const slm_block_q6_k *b = (const slm_block_q6_k *)blk;
                f16_lanes_put(&dh, i, b->d);
                const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
                for (int j = 0; j < V; j++) /* scales x bsums, to be taken 32 times off the sum */
                    corr[i * V + j] = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)yb[j]->bsums));
                const __m256i m2 = _mm256_set1_epi8(0x30);
                for (int h = 0; h < 2; h++) {
                    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
                    const __m256i b2 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
                    const __m256i bh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
                    const __m256i q[4] = {
                        _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 4), m2)),
                        _mm256_or_si256(_mm256_and_si256(b2, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 2), m2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), _mm256_and_si256(bh, m2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi16(bh, 2), m2)),
                    };
                    for (int k = 0; k < 4; k++) {
                        const int8_t *sc = b->scales + 8 * h + 2 * k;
                        const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
                        for (int j = 0; j < V; j++) {
                            const __m256i yk = _mm256_loadu_si256((const __m256i *)(yb[j]->qs + 128 * h + 32 * k));
                            sumi[i * V + j] =
                                _mm256_add_epi32(sumi[i * V + j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk), sv));
                        }
                    }
                }
            } else if (kt == KT_IQ4XS) { /* 8 sub-blocks of 32: nibbles -> signed levels, 6-bit scales */
                const slm_block_iq4_xs *b = (const slm_block_iq4_xs *)blk;
                f16_lanes_put(&dh, i, b->d);
                for (int j = 0; j < V; j++) corr[i * V + j] = _mm256_setzero_si256();
                const __m256i levels = iq4_levels();
                for (int sb = 0; sb < SLM_QK_K / 32; sb++) {
                    const int ls = ((b->scales_l[sb / 2] >> 4 * (sb % 2)) & 0xf) | (((b->scales_h >> 2 * sb) & 3) << 4);
                    const __m256i qx = _mm256_shuffle_epi8(levels, unpack_nibbles_32(b->qs + 16 * sb));
                    const __m256i ax = _mm256_sign_epi8(qx, qx), sv = _mm256_set1_epi16((short)(ls - 32));
                    for (int j = 0; j < V; j++) { /* |qx| . sign(y, qx), pairs times the scale */
                        const __m256i yk = _mm256_loadu_si256((const __m256i *)(yb[j]->qs + 32 * sb));
                        const __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(yk, qx));
                        sumi[i * V + j] = _mm256_add_epi32(sumi[i * V + j], _mm256_madd_epi16(p16, sv));
                    }
                }
            } else if (kt == KT_Q2 || kt == KT_Q3) { /* 2-bit quants, 4 shifts of 32 bytes per half */
                const uint8_t *qs;
                __m128i sc8; /* Q2_K: the 4-bit scales; Q3_K: the 6-bit scales less 32 */
                __m256i q3high = _mm256_setzero_si256();
                if (kt == KT_Q2) {
                    const slm_block_q2_k *b = (const slm_block_q2_k *)blk;
                    f16_lanes_put(&dh, i, b->d);
                    f16_lanes_put(&dmh, i, b->dmin);
                    qs = b->qs;
                    const __m128i s8 = _mm_loadu_si128((const __m128i *)b->scales);
                    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(0xF)));
                    for (int j = 0; j < V; j++) /* mins x bsums */
                        corr[i * V + j] = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)yb[j]->bsums));
                    sc8 = _mm_and_si128(s8, _mm_set1_epi8(0xF));
                } else {
                    const slm_block_q3_k *b = (const slm_block_q3_k *)blk;
                    f16_lanes_put(&dh, i, b->d);
                    qs = b->qs;
                    /* in registers: stored and reloaded as 16 bytes, the words stalled the
                     * load on store forwarding (40% of a decode tile) */
                    uint32_t sw[4];
                    slm_quant_q3_k_scale_words(b->scales, sw);
                    sc8 = _mm_sub_epi8(_mm_setr_epi32((int)sw[0], (int)sw[1], (int)sw[2], (int)sw[3]), _mm_set1_epi8(32));
                    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
                    for (int j = 0; j < V; j++) /* scales x bsums, to be taken 4 times off the sum */
                        corr[i * V + j] = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)yb[j]->bsums));
                    q3high = _mm256_loadu_si256((const __m256i *)b->hmask);
                }
                /* the scales as int16, even 16-groups in the low lane and odd in the high one, so
                 * that pair k's (groups 2k, 2k + 1) is one in-lane shuffle away */
                const __m128i evens_odds =
                    _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
                const __m256i sc_eo = _mm256_cvtepi8_epi16(evens_odds);
                const __m256i m3 = _mm256_set1_epi8(3);
                for (int h = 0; h < 2; h++) {
                    const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
                    for (int s2 = 0; s2 < 4; s2++) { /* elements 128 h + 32 s2 .. : 16-groups 2k, 2k + 1 */
                        const int k = 4 * h + s2;
                        __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * s2), m3);
                        if (kt == KT_Q3) { /* + 4 where bit k of the high-bit mask is set: 0..7 */
                            const __m256i hk = k >= 2 ? _mm256_srli_epi16(q3high, k - 2) : _mm256_slli_epi16(q3high, 2 - k);
                            q = _mm256_or_si256(q, _mm256_and_si256(hk, _mm256_set1_epi8(4)));
                        }
                        const __m256i sv = _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16((short)(0x0100 + 0x0202 * k)));
                        for (int j = 0; j < V; j++) {
                            const __m256i yk = _mm256_loadu_si256((const __m256i *)(yb[j]->qs + 128 * h + 32 * s2));
                            sumi[i * V + j] =
                                _mm256_add_epi32(sumi[i * V + j], _mm256_madd_epi16(_mm256_maddubs_epi16(q, yk), sv));
                        }
                    }
                }
            } else {
                const uint8_t *q4, *qh = NULL, *packed;
                uint16_t d, dmin;
                if (kt == KT_Q5) {
                    const slm_block_q5_k *b = (const slm_block_q5_k *)blk;
                    q4 = b->qs, qh = b->qh, packed = b->scales, d = b->d, dmin = b->dmin;
                } else {
                    const slm_block_q4_k *b = (const slm_block_q4_k *)blk;
                    q4 = b->qs, packed = b->scales, d = b->d, dmin = b->dmin;
                }
                f16_lanes_put(&dh, i, d);
                f16_lanes_put(&dmh, i, dmin);
                uint8_t sc[8], mn[8];
                k4_scales(packed, sc, mn);
                const __m256i mins = dup8_i16(mn);
                for (int j = 0; j < V; j++) /* mins x bsums */
                    corr[i * V + j] = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)yb[j]->bsums));
                const __m256i hbits = kt == KT_Q5 ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    const __m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * c));
                    __m256i lo = _mm256_and_si256(bits, m4);
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                    if (kt == KT_Q5) {
                        const __m256i sixteen = _mm256_set1_epi8(16);
                        const __m256i ml = _mm256_set1_epi8((char)(1 << (2 * c))), mh = _mm256_set1_epi8((char)(2 << (2 * c)));
                        lo = _mm256_add_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen));
                        hi = _mm256_add_epi8(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen));
                    }
                    const __m256i sl = _mm256_set1_epi16(sc[2 * c]), sh = _mm256_set1_epi16(sc[2 * c + 1]);
                    for (int j = 0; j < V; j++) {
                        const int8_t *q8 = yb[j]->qs + 64 * c;
                        const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8)), sl);
                        const __m256i ph =
                            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32))), sh);
                        sumi[i * V + j] = _mm256_add_epi32(sumi[i * V + j], _mm256_add_epi32(pl, ph));
                    }
                }
            }
        }
        /* per lane: vec_dot's float step */
        const __m256 dy = _mm256_setr_ps(yb[0]->d, yb[1 % V]->d, yb[2 % V]->d, yb[3 % V]->d, yb[4 % V]->d, yb[5 % V]->d,
                                         yb[6 % V]->d, yb[7 % V]->d); /* lane k: activation row k % V */
        const __m256 dx = _mm256_permutevar8x32_ps(f16_lanes_ps(dh), dx_idx);
        const __m256i isum = reduce8_i32(sumi), csum = reduce8_i32(corr);
        const __m256 d = _mm256_mul_ps(dx, dy);
        __m256 t;
        if (kt == KT_Q6 || kt == KT_Q3) { /* offset 32 (4) x scales x bsums */
            t = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, _mm256_slli_epi32(csum, kt == KT_Q6 ? 5 : 2))));
        } else if (kt == KT_IQ4XS) {
            t = _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum));
        } else {
            const __m256 dmin = _mm256_mul_ps(_mm256_permutevar8x32_ps(f16_lanes_ps(dmh), dx_idx), dy);
            const __m256 t1 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum));
            const __m256 t2 = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(csum));
            t = _mm256_sub_ps(t1, t2);
        }
        acc = _mm256_add_ps(acc, t);
    }
    float out[8];
    _mm256_storeu_ps(out, acc);
    for (int k = 0; k < 8; k++) y[(size_t)(k % V) * ys + (size_t)(k / V)] = out[k];
}

/* One thread's rows [r0, r1) x all activation rows for a K type, in chunks of about
 * GEMM_ACT_BYTES of activations: 2 x 4 tiles, then 4 x 2 and 8 x 1 for the activation
 * rows left (decoding: 8 x 1 only); rows that fill no tile go through vec_dot. */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_k(int64_t n, const void *W, size_t wrb, int64_t r0,
                                                                      int64_t r1, const void *xq, size_t xs,
                                                                      int64_t n_vec, float *y, size_t ys,
                                                                      slm_vec_dot_fn dot, const int kt) {
    const int64_t nb = n / SLM_QK_K;
    const uint8_t *wm = W, *xm = xq;
    int64_t chunk = (int64_t)(GEMM_ACT_BYTES / (xs ? xs : 1)); /* activation rows per pass over the rows */
    if (chunk < GEMM_VECS) chunk = GEMM_VECS;
    chunk -= chunk % GEMM_VECS;
    for (int64_t c0 = 0; c0 < n_vec; c0 += chunk) {
        const int64_t c1 = c0 + chunk < n_vec ? c0 + chunk : n_vec;
        int64_t v = c0;
        /* tile widths V = 4 while 4 activation rows are left, then 2, then 1 */
        for (int pass = 0; pass < 3; pass++) {
            const int V = pass == 0 ? 4 : pass == 1 ? 2 : 1;
            const int64_t v_end = pass == 2 ? c1 : v + (c1 - v) / V * V;
            if (v_end <= v) continue;
            int64_t r = r0;
            for (; r + 8 / V <= r1; r += 8 / V) {
                for (int64_t vv = v; vv < v_end; vv += V) {
                    const uint8_t *xv = xm + (size_t)vv * xs;
                    float *yv = y + (size_t)vv * ys + r;
                    if (V == 4) tile_k(nb, wm + (size_t)r * wrb, wrb, xv, xs, yv, ys, 2, 4, kt);
                    else if (V == 2) tile_k(nb, wm + (size_t)r * wrb, wrb, xv, xs, yv, ys, 4, 2, kt);
                    else tile_k(nb, wm + (size_t)r * wrb, wrb, xv, xs, yv, ys, 8, 1, kt);
                }
            }
            for (; r < r1; r++) /* rows that fill no tile */
                for (int64_t vv = v; vv < v_end; vv++)
                    y[(size_t)vv * ys + (size_t)r] = dot(n, wm + (size_t)r * wrb, xm + (size_t)vv * xs);
            v = v_end;
        }
    }
}

/* Each K type's gemm: gemm_k with its vec_dot for the rows that fill no tile. */
#define K_GEMM(name, kt)                                                                                           \
    AVX2_TARGET static void gemm_##name##_q8_k(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1,       \
                                               const void *xq, size_t xs, int64_t n_vec, float *y, size_t ys) {    \
        gemm_k(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, vec_dot_##name##_q8_k, kt);                                \
    }

K_GEMM(q2_k, KT_Q2)
K_GEMM(q3_k, KT_Q3)
K_GEMM(q4_k, KT_Q4)
K_GEMM(q5_k, KT_Q5)
K_GEMM(q6_k, KT_Q6)
K_GEMM(iq4_xs, KT_IQ4XS)

/* ---- plain float types ------------------------------------------------------------------- */

/* Loaders: 8 elements as floats. */
AVX2_TARGET static inline __m256 load8_f32(const void *p) { return _mm256_loadu_ps((const float *)p); }
AVX2_TARGET static inline __m256 load8_f16(const void *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); /* exact, as slm_quant_h2f */
}
AVX2_TARGET static inline __m256 load8_bf16(const void *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* sum x[i] * y[i] over n elements of esize bytes, in the reference's AVX2 order: 32 at a
 * time into 4 x 8 float lanes with FMA, the 4 vectors reduced as (0 + 2) + (1 + 3), the 8
 * lanes as (hi + lo) then two horizontal adds; the tail past a multiple of 32 is added one
 * product at a time, in float for F32 and in double for F16/BF16 (as the reference does).
 * always_inline so each caller gets its own loop with the loader inlined. */
#define FLOAT_DOT_STEP 32
AVX2_TARGET __attribute__((always_inline)) static inline float float_dot(int64_t n, const uint8_t *x, const uint8_t *y,
                                                                          size_t esize, __m256 (*load8)(const void *),
                                                                          float (*one)(const uint8_t *), int tail_in_double) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const int64_t nv = n - n % FLOAT_DOT_STEP;
    for (int64_t i = 0; i < nv; i += FLOAT_DOT_STEP) {
        for (int j = 0; j < 4; j++) {
            const size_t off = (size_t)(i + 8 * j) * esize;
            acc[j] = _mm256_fmadd_ps(load8(x + off), load8(y + off), acc[j]);
        }
    }
    const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    const float vsum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    if (tail_in_double) {
        double sum = vsum;
        for (int64_t i = nv; i < n; i++) sum += (double)(one(x + (size_t)i * esize) * one(y + (size_t)i * esize));
        return (float)sum;
    }
    float sum = vsum;
    for (int64_t i = nv; i < n; i++) sum += one(x + (size_t)i * esize) * one(y + (size_t)i * esize);
    return sum;
}

static inline float one_f32(const uint8_t *p) { float f; memcpy(&f, p, sizeof f); return f; }
static inline float one_f16(const uint8_t *p) { uint16_t h; memcpy(&h, p, sizeof h); return slm_quant_h2f(h); }
static inline float one_bf16(const uint8_t *p) { uint16_t h; memcpy(&h, p, sizeof h); return slm_quant_bf2f(h); }

AVX2_TARGET static float vec_dot_f32(int64_t n, const void *x, const void *y) {
    return float_dot(n, x, y, sizeof(float), load8_f32, one_f32, 0);
}
AVX2_TARGET static float vec_dot_f16(int64_t n, const void *x, const void *y) {
    return float_dot(n, x, y, sizeof(uint16_t), load8_f16, one_f16, 1);
}
AVX2_TARGET static float vec_dot_bf16(int64_t n, const void *x, const void *y) {
    return float_dot(n, x, y, sizeof(uint16_t), load8_bf16, one_bf16, 1);
}

/* y += a * x with the scalar kernel's operations per element (multiply, then add; F16C
 * conversion is exact), 8 lanes at a time, the tail one by one. */
AVX2_TARGET static void axpy_f32(int64_t n, float a, const void *x, float *y) {
    const float *xf = x;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(xf + i))));
    for (; i < n; i++) y[i] += a * xf[i];
}

AVX2_TARGET static void axpy_f16(int64_t n, float a, const void *x, float *y) {
    const uint16_t *xh = x;
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, load8_f16(xh + i))));
    for (; i < n; i++) y[i] += a * f16_to_f32(xh[i]);
}

/* ---- activation quantizers (Q8_0, Q8_1) ---------------------------------------------------- */

/* One block of 32 floats the way quant/act.c does it: amax (maximum is exact in any
 * order), d = amax / 127, id = 127 / amax, q = x * id rounded half to even (the rounding
 * instruction's nearest mode = nearbyintf in the default mode); returns the sum of q. The
 * same float operations as the scalar code, so the same bytes. */
AVX2_TARGET static inline int act_block(const float *x, int8_t q[32], float *d_out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float amax = hmax_f32_8(m);
    *d_out = amax / 127.f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    __m256i i32[4];
    for (int k = 0; k < 4; k++)
        i32[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* int32 -> int8 (all within -127..127): packs work per 128-bit lane, so the result is
     * in lane order 0 4 1 5 2 6 3 7 of 4-byte groups; one permute restores it */
    const __m256i w01 = _mm256_packs_epi32(i32[0], i32[1]), w23 = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, b);
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
    return hsum_i32_8(s);
}

AVX2_TARGET static void act_q8_0(const float *x, void *dst, int64_t n) {
    slm_block_q8_0 *y = dst; /* [n / 32] blocks */
    for (int64_t b = 0; b < n / SLM_QK8_0; b++, x += SLM_QK8_0) {
        float d;
        act_block(x, y[b].qs, &d);
        y[b].d = slm_quant_f2h(d);
    }
}

AVX2_TARGET static void act_q8_1(const float *x, void *dst, int64_t n) {
    slm_block_q8_1 *y = dst; /* [n / 32] blocks */
    for (int64_t b = 0; b < n / SLM_QK8_1; b++, x += SLM_QK8_1) {
        float d;
        const int sum = act_block(x, y[b].qs, &d);
        y[b].d = slm_quant_f2h(d);
        y[b].s = slm_quant_f2h(d * (float)sum);
    }
}

/* Q8_K (the K types' activations) as slm_quant_q8_k_from_float (quant_k.c) writes it, byte
 * for byte: per 256 values max = the first value of the largest |x| (NaNs never win: max_ps
 * returns its second operand, the running maximum, when the first is NaN), iscale = -127 /
 * max, q = nearest_int(iscale * x) by the same magic-number addition, at most 127, stored
 * truncated to 8 bits as the C cast does (packs would saturate the values that
 * non-finite input produces), bsums of 16 from the stored bytes, d = 1 / iscale. */
AVX2_TARGET static void act_q8_k(const float *x, void *dst, int64_t n) {
    slm_block_q8_k *y = dst; /* [n / 256] super-blocks */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / SLM_QK_K; i++, x += SLM_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < SLM_QK_K / 8; k++) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), m);
        const float amax = hmax_f32_8(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = amax;
        for (int k = 0; k < SLM_QK_K / 8; k++) { /* the first element of that magnitude */
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k));
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) {
                max = x[8 * k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale), magic = _mm256_set1_ps(12582912.f);
        const __m256i mant = _mm256_set1_epi32(0x007fffff), half = _mm256_set1_epi32(0x00400000);
        const __m256i top = _mm256_set1_epi32(127), low8 = _mm256_set1_epi32(0xff);
        for (int k = 0; k < SLM_QK_K / 32; k++) {
            __m256i v[4];
            for (int j = 0; j < 4; j++) {
                const __m256 f = _mm256_add_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * k + 8 * j)), magic);
                const __m256i r = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(f), mant), half);
                v[j] = _mm256_and_si256(_mm256_min_epi32(r, top), low8); /* the int8 cast's byte */
            }
            /* 0..255 packs unchanged; packs work per 128-bit lane: one permute restores order */
            const __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(v[0], v[1]), _mm256_packus_epi32(v[2], v[3]));
            const __m256i q = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * k), q);
            /* sums of 16: psadbw of the bytes + 128, 8 per 64-bit lane */
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
            const __m256i s2 = _mm256_add_epi64(sad, _mm256_shuffle_epi32(sad, 0x4E));
            y[i].bsums[2 * k] = (int16_t)(_mm256_extract_epi32(s2, 0) - 16 * 128);
            y[i].bsums[2 * k + 1] = (int16_t)(_mm256_extract_epi32(s2, 4) - 16 * 128);
        }
        y[i].d = 1 / iscale;
    }
}

/* F16 rows (the KV cache's stores): vcvtps2ph rounding to nearest even, as slm_quant_f2h;
 * NaNs then become 0x7E00 with their sign, as there (the instruction keeps payload bits). */
AVX2_TARGET static void from_float_f16(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst; /* [n] binary16 bits */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
        const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_castps_si256(nan)),
                                              _mm256_extracti128_si256(_mm256_castps_si256(nan), 1));
        const __m128i fixed = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16((short)0x8000)), _mm_set1_epi16(0x7E00));
        _mm_storeu_si128((__m128i *)(y + i), _mm_blendv_epi8(h, fixed, nan16));
    }
    for (; i < n; i++) y[i] = slm_quant_f2h(x[i]);
}

/* ---- the set ------------------------------------------------------------------------------- */

const slm_quant_kernel_set slm_quant_kernels_avx2 = {
    .isa = SLM_QUANT_ISA_AVX2,
    .name = "avx2",
    .vec_dot = {
        [SLM_TYPE_Q8_0] = vec_dot_q8_0_q8_0,
        [SLM_TYPE_Q4_0] = vec_dot_q4_0_q8_0,
        [SLM_TYPE_Q4_1] = vec_dot_q4_1_q8_1,
        [SLM_TYPE_Q5_0] = vec_dot_q5_0_q8_0,
        [SLM_TYPE_Q5_1] = vec_dot_q5_1_q8_1,
        [SLM_TYPE_IQ4_NL] = vec_dot_iq4_nl_q8_0,
        [SLM_TYPE_Q2_K] = vec_dot_q2_k_q8_k,
        [SLM_TYPE_Q3_K] = vec_dot_q3_k_q8_k,
        [SLM_TYPE_Q4_K] = vec_dot_q4_k_q8_k,
        [SLM_TYPE_Q5_K] = vec_dot_q5_k_q8_k,
        [SLM_TYPE_Q6_K] = vec_dot_q6_k_q8_k,
        [SLM_TYPE_IQ4_XS] = vec_dot_iq4_xs_q8_k,
        [SLM_TYPE_F32] = vec_dot_f32,
        [SLM_TYPE_F16] = vec_dot_f16,
        [SLM_TYPE_BF16] = vec_dot_bf16,
    },
    .gemm = {
        [SLM_TYPE_Q8_0] = gemm_q8_0_q8_0,
        [SLM_TYPE_Q4_0] = gemm_q4_0_q8_0,
        [SLM_TYPE_Q5_0] = gemm_q5_0_q8_0,
        [SLM_TYPE_IQ4_NL] = gemm_iq4_nl_q8_0,
        [SLM_TYPE_Q4_1] = gemm_q4_1_q8_1,
        [SLM_TYPE_Q5_1] = gemm_q5_1_q8_1,
        [SLM_TYPE_Q4_K] = gemm_q4_k_q8_k,
        [SLM_TYPE_Q5_K] = gemm_q5_k_q8_k,
        [SLM_TYPE_Q6_K] = gemm_q6_k_q8_k,
        [SLM_TYPE_Q2_K] = gemm_q2_k_q8_k,
        [SLM_TYPE_Q3_K] = gemm_q3_k_q8_k,
        [SLM_TYPE_IQ4_XS] = gemm_iq4_xs_q8_k,
    },
    .axpy = {
        [SLM_TYPE_F32] = axpy_f32,
        [SLM_TYPE_F16] = axpy_f16,
    },
    .from_float = {
        [SLM_TYPE_F16] = from_float_f16,
    },
    .act = {
        [SLM_TYPE_Q8_0] = act_q8_0,
        [SLM_TYPE_Q8_1] = act_q8_1,
        [SLM_TYPE_Q8_K] = act_q8_k,
    },
    .pack = {
        [SLM_TYPE_Q8_0] = slm_quant_pack_q8_0_avx2,
        [SLM_TYPE_Q4_0] = slm_quant_pack_q4_0_avx2,
        [SLM_TYPE_IQ4_NL] = slm_quant_pack_iq4_nl_avx2,
        [SLM_TYPE_Q5_0] = slm_quant_pack_q5_0_avx2,
        [SLM_TYPE_Q4_K] = slm_quant_pack_q4_k_avx2,
        [SLM_TYPE_Q5_K] = slm_quant_pack_q5_k_avx2,
        [SLM_TYPE_Q6_K] = slm_quant_pack_q6_k_avx2,
    },
    .unpack = {
        [SLM_TYPE_Q8_0] = slm_quant_unpack_q8_0_avx2,
        [SLM_TYPE_Q4_0] = slm_quant_unpack_q4_0_avx2,
        [SLM_TYPE_IQ4_NL] = slm_quant_unpack_iq4_nl_avx2,
        [SLM_TYPE_Q5_0] = slm_quant_unpack_q5_0_avx2,
        [SLM_TYPE_Q4_K] = slm_quant_unpack_q4_k_avx2,
        [SLM_TYPE_Q5_K] = slm_quant_unpack_q5_k_avx2,
        [SLM_TYPE_Q6_K] = slm_quant_unpack_q6_k_avx2,
    },
    .gemm_packed = {
        [SLM_TYPE_Q8_0] = slm_quant_gemm_packed_q8_0_avx2,
        [SLM_TYPE_Q4_0] = slm_quant_gemm_packed_q4_0_avx2,
        [SLM_TYPE_IQ4_NL] = slm_quant_gemm_packed_iq4_nl_avx2,
        [SLM_TYPE_Q5_0] = slm_quant_gemm_packed_q5_0_avx2,
        [SLM_TYPE_Q4_K] = slm_quant_gemm_packed_q4_k_avx2,
        [SLM_TYPE_Q5_K] = slm_quant_gemm_packed_q5_k_avx2,
        [SLM_TYPE_Q6_K] = slm_quant_gemm_packed_q6_k_avx2,
    },
    .pack_table = slm_quant_pack_table_avx2,
};

#else
typedef int slm_quant_kernels_avx2_unused; /* not an x86-64 GCC/clang build */
#endif
