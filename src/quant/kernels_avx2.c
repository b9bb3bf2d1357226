/*
 * quant/kernels_avx2.c: AVX2 + FMA dot products for every weight type slmesh computes with
 * but Q8_1/Q8_K (activation types): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (32-blocks), Q2_K..
 * Q6_K, IQ4_XS (super-blocks), and the plain float types F32, F16 and BF16 (the F32 models
 * and the F16 KV cache).
 *
 * Every function computes what its scalar twin in quant_legacy.c / quant_k.c computes: the
 * per-block integer sums are exact (int8 x int8 products through maddubs/madd, no
 * saturation for the value ranges the quantizers produce: |q8| <= 127), only the float side
 * differs (8 lanes, FMA). The Q8_0, Q4_0, F32 and F16 kernels are laid out after the
 * reference's own AVX2 code (same lanes, FMA order and reductions), so they should give its
 * AVX2 results for the same inputs (not checked against it: no reference binary here); the
 * float types accumulate in float there, where the scalar kernels accumulate in double.
 * Compiled with per-function target attributes, so the rest of the build stays baseline
 * x86-64; kernels.c only selects this set when the CPU reports AVX2, FMA and F16C.
 * Thread-safety: pure functions. Non-goals: to_float and from_float (dequantization and
 * activation quantization are O(n) per product, not on the hot path).
 */
#include "quant/kernels_isa.h"

#if SLM_QUANT_HAVE_AVX2

#include <immintrin.h>

#include "quant/blocks.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* ---- helpers ------------------------------------------------------------------------------ */

AVX2_TARGET static inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); } /* exact, as slm_quant_h2f */

AVX2_TARGET static inline float hsum_f32_8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
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

/* ---- legacy 32-blocks --------------------------------------------------------------------- */

AVX2_TARGET static float vec_dot_q8_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q8_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d));
        const __m256i qx = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
}

AVX2_TARGET static float vec_dot_q4_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    const __m256i off = _mm256_set1_epi8(8);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d));
        const __m256i qx = _mm256_sub_epi8(unpack_nibbles_32(x[ib].qs), off); /* -8..7 */
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
}

AVX2_TARGET static float vec_dot_q4_1_q8_1(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_1 *x = vx;
    const slm_block_q8_1 *y = vy;
    const int64_t nb = n / SLM_QK8_1;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f; /* sum of the min terms m * s */
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d));
        summs += f16_to_f32(x[ib].m) * f16_to_f32(y[ib].s);
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_32(unpack_nibbles_32(x[ib].qs), qy)), acc);
    }
    return hsum_f32_8(acc) + summs;
}

AVX2_TARGET static float vec_dot_q5_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    const __m256i b4 = _mm256_set1_epi8(0x10), off = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d));
        const __m256i hi = _mm256_and_si256(expand_bits_32(x[ib].qh), b4);
        const __m256i qx = _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles_32(x[ib].qs), hi), off); /* -16..15 */
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
}

AVX2_TARGET static float vec_dot_q5_1_q8_1(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_1 *x = vx;
    const slm_block_q8_1 *y = vy;
    const int64_t nb = n / SLM_QK8_1;
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(x[ib].d) * f16_to_f32(y[ib].d));
        summs += f16_to_f32(x[ib].m) * f16_to_f32(y[ib].s);
        const __m256i hi = _mm256_and_si256(expand_bits_32(x[ib].qh), b4);
        const __m256i qx = _mm256_or_si256(unpack_nibbles_32(x[ib].qs), hi); /* 0..31 */
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc) + summs;
}

AVX2_TARGET static float vec_dot_iq4_nl_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_iq4_nl *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK4_NL;
    const __m256i levels = iq4_levels();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(f16_to_f32(y[ib].d) * f16_to_f32(x[ib].d));
        const __m256i qx = _mm256_shuffle_epi8(levels, unpack_nibbles_32(x[ib].qs)); /* -127..113 */
        const __m256i qy = _mm256_loadu_si256((const __m256i *)y[ib].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8_32(qx, qy)), acc);
    }
    return hsum_f32_8(acc);
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

/* ---- tiled products for prompt processing (Q8_0 activations) ------------------------------ */

/* A tile is R weight rows x V activation rows (R <= TILE_MAX_R, V <= GEMM_VECS): every
 * weight block is loaded (and, for Q4_0, unpacked) once for V products and every activation
 * block once for R; each of the R x V outputs keeps its own accumulator with the vec_dot's
 * exact sequence of operations (block scale dx * dy, integer lanes via dot_i8_32, one FMA
 * per block, the same final reduction), so the results equal vec_dot's bit for bit.
 * Prompt processing uses 2 x 4 tiles: 8 accumulators + 2 weight blocks with their
 * magnitudes + 1 activation block and temporaries fit the 16 ymm registers. Decoding
 * (up to DECODE_VECS activation rows) uses 4 x V tiles: a single vec_dot is one FMA
 * chain (latency bound, one block per FMA latency), 4 rows give 4 independent chains and
 * load each activation block once for 4 rows. Activations are walked in chunks of about
 * GEMM_ACT_BYTES so that a chunk stays in L1 while the thread's weight rows pass over it. */
#define GEMM_ROWS 2
#define GEMM_VECS 4
#define GEMM_ACT_BYTES (32 * 1024)
#define TILE_MAX_R 4  /* rows of a decode tile: 4 FMA chains */
/* Software prefetch distance in tiles. R rows read side by side are R interleaved streams,
 * which the hardware prefetchers follow badly (4-row Q8_0 tiles from DRAM: 6-8 GB/s on
 * one core without prefetching, against 14 GB/s for one row at a time); prefetching the
 * tile TILE_PF ahead as one linear run of R * block bytes per block step gives 15-19 GB/s
 * (per-row prefetches of the same lines: 11 GB/s). */
#define TILE_PF 2
#define DECODE_VECS 2 /* up to this many activation rows use decode tiles (4 x 2: 8 accumulators) */

/* One 32-element weight block as signed bytes, its scale into *d. */
typedef __m256i (*wblock_fn)(const uint8_t *row, int64_t ib, float *d);

AVX2_TARGET static inline __m256i wblock_q8_0(const uint8_t *row, int64_t ib, float *d) {
    const slm_block_q8_0 *b = (const slm_block_q8_0 *)row + ib;
    *d = f16_to_f32(b->d);
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

AVX2_TARGET static inline __m256i wblock_q4_0(const uint8_t *row, int64_t ib, float *d) {
    const slm_block_q4_0 *b = (const slm_block_q4_0 *)row + ib;
    *d = f16_to_f32(b->d);
    return _mm256_sub_epi8(unpack_nibbles_32(b->qs), _mm256_set1_epi8(8)); /* -8..7 */
}

AVX2_TARGET static inline __m256i wblock_q5_0(const uint8_t *row, int64_t ib, float *d) {
    const slm_block_q5_0 *b = (const slm_block_q5_0 *)row + ib;
    *d = f16_to_f32(b->d);
    const __m256i hi = _mm256_and_si256(expand_bits_32(b->qh), _mm256_set1_epi8(0x10));
    return _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles_32(b->qs), hi), _mm256_set1_epi8(16)); /* -16..15 */
}

AVX2_TARGET static inline __m256i wblock_iq4_nl(const uint8_t *row, int64_t ib, float *d) {
    const slm_block_iq4_nl *b = (const slm_block_iq4_nl *)row + ib;
    *d = f16_to_f32(b->d);
    return _mm256_shuffle_epi8(iq4_levels(), unpack_nibbles_32(b->qs)); /* -127..113 */
}

/* One R x V tile: weight rows w, w + wrb, ... (R of them) against activation rows x,
 * x + xs, ... (V of them); output (row i, activation j) goes to y[j * ys + i]. R and V are
 * constants at every call, so the loops unroll and the arrays live in registers. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_q8_0(int64_t nb, const uint8_t *w, size_t wrb,
                                                                         const uint8_t *x, size_t xs, float *y, size_t ys,
                                                                         const int R, const int V, wblock_fn wload) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[TILE_MAX_R][GEMM_VECS];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++) acc[i][j] = _mm256_setzero_ps();
    const size_t bs = nb ? wrb / (size_t)nb : 0; /* bytes per weight block */
    /* the tile TILE_PF ahead (rows are contiguous); an address only, maybe past the matrix */
    const uintptr_t pf = (uintptr_t)w + (size_t)R * wrb * TILE_PF;
    for (int64_t ib = 0; ib < nb; ib++) {
        __m256i xw[TILE_MAX_R], ax[TILE_MAX_R];
        float dx[TILE_MAX_R];
        for (size_t o = 0; o < (size_t)R * bs; o += 64) /* one cache line at a time */
            _mm_prefetch((const char *)(pf + (size_t)ib * (size_t)R * bs + o), _MM_HINT_T0); /* never faults */
        for (int i = 0; i < R; i++) {
            xw[i] = wload(w + (size_t)i * wrb, ib, &dx[i]);
            ax[i] = _mm256_sign_epi8(xw[i], xw[i]);
        }
        for (int j = 0; j < V; j++) {
            const slm_block_q8_0 *yb = (const slm_block_q8_0 *)(x + (size_t)j * xs) + ib;
            const __m256i qy = _mm256_loadu_si256((const __m256i *)yb->qs);
            const float dy = f16_to_f32(yb->d);
            for (int i = 0; i < R; i++) {
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax[i], _mm256_sign_epi8(qy, xw[i])), ones);
                acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dx[i] * dy), _mm256_cvtepi32_ps(p), acc[i][j]);
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++) y[(size_t)j * ys + (size_t)i] = hsum_f32_8(acc[i][j]);
}

/* Rows [r, r + R) against activation rows [v0, v1): GEMM_VECS at a time, then the rest. */
AVX2_TARGET __attribute__((always_inline)) static inline void tile_row_q8_0(int64_t nb, const uint8_t *w, size_t wrb,
                                                                             const uint8_t *xq, size_t xs, int64_t v0,
                                                                             int64_t v1, float *y, size_t ys, const int R,
                                                                             wblock_fn wload) {
    int64_t v = v0;
    for (; v + GEMM_VECS <= v1; v += GEMM_VECS)
        tile_q8_0(nb, w, wrb, xq + (size_t)v * xs, xs, y + (size_t)v * ys, ys, R, GEMM_VECS, wload);
    const uint8_t *xv = xq + (size_t)v * xs;
    float *yv = y + (size_t)v * ys;
    switch (v1 - v) { /* constant V for each, so each is unrolled */
    case 3: tile_q8_0(nb, w, wrb, xv, xs, yv, ys, R, 3, wload); break;
    case 2: tile_q8_0(nb, w, wrb, xv, xs, yv, ys, R, 2, wload); break;
    case 1: tile_q8_0(nb, w, wrb, xv, xs, yv, ys, R, 1, wload); break;
    default: break;
    }
}

/* Rows [r0, r1) x activation rows [v0, v1) of a 32-block weight type against Q8_0: tiles
 * of R_MAIN rows (GEMM_ROWS, or TILE_MAX_R when fewer than GEMM_VECS activation rows), the
 * last rows one at a time. */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_blocks_q8_0(int64_t n, const uint8_t *W, size_t wrb,
                                                                                int64_t r0, int64_t r1, const uint8_t *xq,
                                                                                size_t xs, int64_t v0, int64_t v1, float *y,
                                                                                size_t ys, wblock_fn wload) {
    const int64_t nb = n / SLM_QK8_0;
    int64_t r = r0;
    if (v1 - v0 <= DECODE_VECS) {
        for (; r + TILE_MAX_R <= r1; r += TILE_MAX_R)
            tile_row_q8_0(nb, W + (size_t)r * wrb, wrb, xq, xs, v0, v1, y + r, ys, TILE_MAX_R, wload);
    } else {
        for (; r + GEMM_ROWS <= r1; r += GEMM_ROWS)
            tile_row_q8_0(nb, W + (size_t)r * wrb, wrb, xq, xs, v0, v1, y + r, ys, GEMM_ROWS, wload);
    }
    for (; r < r1; r++) tile_row_q8_0(nb, W + (size_t)r * wrb, wrb, xq, xs, v0, v1, y + r, ys, 1, wload);
}

/* The chunking over activation rows around gemm_blocks_q8_0. */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_q8_0_act(int64_t n, const void *W, size_t wrb,
                                                                             int64_t r0, int64_t r1, const void *xq,
                                                                             size_t xs, int64_t n_vec, float *y, size_t ys,
                                                                             wblock_fn wload) {
    int64_t chunk = (int64_t)(GEMM_ACT_BYTES / (xs ? xs : 1));
    chunk -= chunk % GEMM_VECS;
    if (chunk < GEMM_VECS) chunk = GEMM_VECS;
    for (int64_t v0 = 0; v0 < n_vec; v0 += chunk) {
        const int64_t v1 = v0 + chunk < n_vec ? v0 + chunk : n_vec;
        gemm_blocks_q8_0(n, W, wrb, r0, r1, xq, xs, v0, v1, y, ys, wload);
    }
}

AVX2_TARGET static void gemm_q8_0_q8_0(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_q8_0_act(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, wblock_q8_0);
}

AVX2_TARGET static void gemm_q4_0_q8_0(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_q8_0_act(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, wblock_q4_0);
}

AVX2_TARGET static void gemm_q5_0_q8_0(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_q8_0_act(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, wblock_q5_0);
}

AVX2_TARGET static void gemm_iq4_nl_q8_0(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                         size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_q8_0_act(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, wblock_iq4_nl);
}

/* Q4_K / Q5_K weights against GEMM_VECS Q8_K activation rows: each super-block's nibbles
 * (and fifth bits) are unpacked once for all of them; integer sums are exact whatever the
 * order, and each output's float accumulation is vec_dot_q4_k/q5_k's, term for term. */
AVX2_TARGET static inline void k4_block_sums_multi(const uint8_t *q4, const uint8_t *qh,
                                                   const uint8_t packed[SLM_K_SCALE_SIZE],
                                                   const slm_block_q8_k *const yb[GEMM_VECS], int isum[GEMM_VECS],
                                                   int summ[GEMM_VECS]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), sixteen = _mm256_set1_epi8(16);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) slm_quant_scale_min_k4(j, packed, &sc[j], &mn[j]);
    for (int v = 0; v < GEMM_VECS; v++) {
        int sm = 0;
        for (int j = 0; j < 16; j++) sm += yb[v]->bsums[j] * mn[j / 2];
        summ[v] = sm;
    }
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi[GEMM_VECS];
    for (int v = 0; v < GEMM_VECS; v++) sumi[v] = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++, q4 += 32) {
        const __m256i bits = _mm256_loadu_si256((const __m256i *)q4);
        __m256i lo = _mm256_and_si256(bits, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if (qh) {
            const __m256i ml = _mm256_set1_epi8((char)(1 << (2 * c))), mh = _mm256_set1_epi8((char)(2 << (2 * c)));
            lo = _mm256_add_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), sixteen));
            hi = _mm256_add_epi8(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), sixteen));
        }
        const __m256i sl = _mm256_set1_epi16(sc[2 * c]), sh = _mm256_set1_epi16(sc[2 * c + 1]);
        for (int v = 0; v < GEMM_VECS; v++) {
            const int8_t *q8 = yb[v]->qs + 64 * c;
            const __m256i yl = _mm256_loadu_si256((const __m256i *)q8);
            const __m256i yh = _mm256_loadu_si256((const __m256i *)(q8 + 32));
            const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, yl), sl);
            const __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yh), sh);
            sumi[v] = _mm256_add_epi32(sumi[v], _mm256_add_epi32(pl, ph));
        }
    }
    for (int v = 0; v < GEMM_VECS; v++) isum[v] = hsum_i32_8(sumi[v]);
}

/* Shared by Q4_K and Q5_K (the blocks differ only by qh); with_qh selects Q5_K. */
AVX2_TARGET __attribute__((always_inline)) static inline void gemm_k4(int64_t n, const void *W, size_t wrb, int64_t r0,
                                                                       int64_t r1, const void *xq, size_t xs, int64_t n_vec,
                                                                       float *y, size_t ys, int with_qh) {
    const int64_t nb = n / SLM_QK_K;
    const slm_vec_dot_fn dot = with_qh ? vec_dot_q5_k_q8_k : vec_dot_q4_k_q8_k;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)W + (size_t)r * wrb;
        int64_t v = 0;
        for (; v + GEMM_VECS <= n_vec; v += GEMM_VECS) {
            const slm_block_q8_k *ya[GEMM_VECS];
            float sumf[GEMM_VECS];
            for (int j = 0; j < GEMM_VECS; j++) {
                ya[j] = (const slm_block_q8_k *)((const uint8_t *)xq + (size_t)(v + j) * xs);
                sumf[j] = 0.0f;
            }
            for (int64_t i = 0; i < nb; i++) {
                const slm_block_q8_k *yb[GEMM_VECS];
                int isum[GEMM_VECS], summ[GEMM_VECS];
                for (int j = 0; j < GEMM_VECS; j++) yb[j] = &ya[j][i];
                uint16_t xd, xdmin;
                if (with_qh) {
                    const slm_block_q5_k *x = (const slm_block_q5_k *)wr + i;
                    k4_block_sums_multi(x->qs, x->qh, x->scales, yb, isum, summ);
                    xd = x->d, xdmin = x->dmin;
                } else {
                    const slm_block_q4_k *x = (const slm_block_q4_k *)wr + i;
                    k4_block_sums_multi(x->qs, NULL, x->scales, yb, isum, summ);
                    xd = x->d, xdmin = x->dmin;
                }
                for (int j = 0; j < GEMM_VECS; j++) {
                    const float d = f16_to_f32(xd) * yb[j]->d;
                    const float dmin = f16_to_f32(xdmin) * yb[j]->d;
                    sumf[j] += d * (float)isum[j] - dmin * (float)summ[j];
                }
            }
            for (int j = 0; j < GEMM_VECS; j++) y[(size_t)(v + j) * ys + (size_t)r] = sumf[j];
        }
        for (; v < n_vec; v++) y[(size_t)v * ys + (size_t)r] = dot(n, wr, (const uint8_t *)xq + (size_t)v * xs);
    }
}

AVX2_TARGET static void gemm_q4_k_q8_k(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_k4(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, 0);
}

AVX2_TARGET static void gemm_q5_k_q8_k(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    gemm_k4(n, W, wrb, r0, r1, xq, xs, n_vec, y, ys, 1);
}

/* Q6_K weights against GEMM_VECS Q8_K rows: the 6-bit quants of a super-block are
 * assembled once for all of them; per output the arithmetic is vec_dot_q6_k's. */
AVX2_TARGET static void gemm_q6_k_q8_k(int64_t n, const void *W, size_t wrb, int64_t r0, int64_t r1, const void *xq,
                                       size_t xs, int64_t n_vec, float *y, size_t ys) {
    const int64_t nb = n / SLM_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
    for (int64_t r = r0; r < r1; r++) {
        const slm_block_q6_k *x = (const slm_block_q6_k *)((const uint8_t *)W + (size_t)r * wrb);
        int64_t v = 0;
        for (; v + GEMM_VECS <= n_vec; v += GEMM_VECS) {
            const slm_block_q8_k *ya[GEMM_VECS];
            float sumf[GEMM_VECS];
            for (int j = 0; j < GEMM_VECS; j++) {
                ya[j] = (const slm_block_q8_k *)((const uint8_t *)xq + (size_t)(v + j) * xs);
                sumf[j] = 0.0f;
            }
            for (int64_t i = 0; i < nb; i++) {
                __m256i sumi[GEMM_VECS];
                int corr[GEMM_VECS];
                for (int j = 0; j < GEMM_VECS; j++) {
                    int c = 0;
                    for (int g = 0; g < 16; g++) c += x[i].scales[g] * ya[j][i].bsums[g];
                    corr[j] = c;
                    sumi[j] = _mm256_setzero_si256();
                }
                for (int h = 0; h < 2; h++) {
                    const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
                    const int8_t *sc = x[i].scales + 8 * h;
                    const __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
                    const __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                    const __m256i bh = _mm256_loadu_si256((const __m256i *)qh);
                    const __m256i q[4] = {
                        _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 4), m2)),
                        _mm256_or_si256(_mm256_and_si256(b2, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 2), m2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), _mm256_and_si256(bh, m2)),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi16(bh, 2), m2)),
                    };
                    for (int k = 0; k < 4; k++) {
                        const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                        for (int j = 0; j < GEMM_VECS; j++) {
                            const __m256i yk = _mm256_loadu_si256((const __m256i *)(ya[j][i].qs + 128 * h + 32 * k));
                            sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk), sv));
                        }
                    }
                }
                for (int j = 0; j < GEMM_VECS; j++) {
                    const float d = f16_to_f32(x[i].d) * ya[j][i].d;
                    sumf[j] += d * (float)(hsum_i32_8(sumi[j]) - 32 * corr[j]);
                }
            }
            for (int j = 0; j < GEMM_VECS; j++) y[(size_t)(v + j) * ys + (size_t)r] = sumf[j];
        }
        for (; v < n_vec; v++) y[(size_t)v * ys + (size_t)r] = vec_dot_q6_k_q8_k(n, x, (const uint8_t *)xq + (size_t)v * xs);
    }
}

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
        [SLM_TYPE_Q4_K] = gemm_q4_k_q8_k,
        [SLM_TYPE_Q5_K] = gemm_q5_k_q8_k,
        [SLM_TYPE_Q6_K] = gemm_q6_k_q8_k,
    },
    .axpy = {
        [SLM_TYPE_F32] = axpy_f32,
        [SLM_TYPE_F16] = axpy_f16,
    },
};

#else
typedef int slm_quant_kernels_avx2_unused; /* not an x86-64 GCC/clang build */
#endif
