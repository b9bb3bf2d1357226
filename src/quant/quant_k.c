/*
 * quant/quant_k.c: the K super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation
 * type Q8_K: dequantization (to_float), the Q8_K activation quantizer and the dot products
 * of each K type with Q8_K (the K weight quantizers are in quantize_k.c).
 *
 * A super-block holds SLM_QK_K = 256 elements in sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32
 * (Q4_K, Q5_K) with small integer scales (and mins) that are themselves scaled by the f16
 * d (and dmin). The arithmetic is the reference runtime's scalar code, product for
 * product, so results are bit-identical: e.g. Q4_K computes d1 = d * sc once per sub-block
 * and then d1 * q - m1 per element, and Q6_K computes (d * sc) * q. The dot products
 * follow the reference's scalar path: int8 products summed in int16 groups of 8, scaled
 * into 8 int32 lanes, converted with one float scale per super-block into 8 float lane
 * sums (Q3_K..Q6_K), the lanes added at the end; the mins go through Q8_K's bsums.
 * Thread-safety: pure functions. Non-goals: SIMD (kernels_*.c).
 */
/* Bit-exactness needs every product rounded on its own, as in the reference's build: no
 * fused multiply-add contraction (GCC in ISO C mode never contracts; clang may). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>

#include "quant/blocks.h"

/* (Q3_K's packed 6-bit scales: slm_quant_q3_k_scales, inline in blocks.h.) */

/* ---- dequantization ------------------------------------------------------------------------ */

void slm_quant_q2_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q2_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_quant_h2f(x[i].d);
        const float min = slm_quant_h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        /* two halves of 128: 32 bytes of qs, each read at 4 shifts; 16 elements per scale */
        for (int half = 0; half < SLM_QK_K / 128; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xF);
                    const float ml = min * (float)(sc >> 4);
                    const uint8_t *qp = q + 16 * part;
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((qp[l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

void slm_quant_q3_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q3_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = slm_quant_h2f(x[i].d);
        int8_t scales[16];
        slm_quant_q3_k_scales(x[i].scales, scales);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        uint8_t m = 1; /* hmask bit of the current 32-element group */
        int is = 0;
        for (int half = 0; half < SLM_QK_K / 128; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int part = 0; part < 2; part++) {
                    const float dl = d_all * (float)(scales[is++] - 32);
                    const uint8_t *qp = q + 16 * part;
                    const uint8_t *hp = hm + 16 * part;
                    for (int l = 0; l < 16; l++) {
                        const int v = ((qp[l] >> shift) & 3) - ((hp[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

void slm_quant_q4_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q4_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = slm_quant_h2f(x[i].d);
        const float min = slm_quant_h2f(x[i].dmin);
        /* 4 chunks of 64: 32 bytes give 32 low nibbles (sub-block 2c), 32 high (2c + 1) */
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            slm_quant_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            slm_quant_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void slm_quant_q5_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q5_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const float d = slm_quant_h2f(x[i].d);
        const float min = slm_quant_h2f(x[i].dmin);
        uint8_t u1 = 1, u2 = 2; /* qh bits of the two sub-blocks of the chunk */
        for (int is = 0; is < 8; is += 2, ql += 32) {
            uint8_t sc, m;
            slm_quant_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            slm_quant_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

void slm_quant_q6_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q6_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_quant_h2f(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        /* two halves of 128: element l, l+32, l+64, l+96 share ql[l]/ql[l+32] and qh[l] */
        for (int half = 0; half < SLM_QK_K / 128; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void slm_quant_q8_k_to_float(const void *src, float *y, int64_t n) {
    const slm_block_q8_k *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < SLM_QK_K; j++) *y++ = x[i].d * (float)x[i].qs[j];
    }
}

/* ---- activation quantizer ---------------------------------------------------------------- */

/* Q8_K: per super-block, scale by -127 / (the value of largest magnitude), so that value
 * becomes -127 exactly; clamp at 127; d = 1 / scale as a float; bsums = sums of 16. */
void slm_quant_q8_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q8_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < SLM_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            /* the reference leaves bsums untouched here; zero them (their true value) */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < SLM_QK_K; j++) {
            const int v = slm_quant_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- dot products ---------------------------------------------------------------------- */

/* Shared tail of Q3_K..Q6_K: a[256] are the weight quants (bias removed), scale(j) the
 * integer scale of 16-element group j. Accumulates into the 8 int32 lanes. */
static inline void k_accumulate16(const int8_t *q8, const int8_t *a, const int32_t scales[16],
                                  int32_t aux32[8]) {
    int16_t aux16[8];
    for (int j = 0; j < SLM_QK_K / 16; j++) {
        for (int half = 0; half < 2; half++, q8 += 8, a += 8) {
            for (int l = 0; l < 8; l++) aux16[l] = (int16_t)(q8[l] * a[l]);
            for (int l = 0; l < 8; l++) aux32[l] += scales[j] * aux16[l];
        }
    }
}

float slm_quant_vec_dot_q2_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q2_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q2 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const uint8_t *sc = x[i].scales;
        int summs = 0; /* sum over groups of min * (sum of the group's activations) */
        for (int j = 0; j < 16; j++) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * slm_quant_h2f(x[i].d);
        const float dmin = y[i].d * slm_quant_h2f(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < SLM_QK_K / 128; k++, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                for (int part = 0; part < 2; part++) {
                    const int d = sc[is++] & 0xF;
                    int isuml = 0;
                    for (int l = 16 * part; l < 16 * part + 16; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float slm_quant_vec_dot_q3_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q3_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    int8_t aux8[SLM_QK_K]; /* the 256 quants, -4..3 */
    float sums[8] = {0};
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q3 = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        int8_t *a = aux8;
        uint8_t m = 1;
        for (int j = 0; j < SLM_QK_K; j += 128, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, a += 32, m = (uint8_t)(m << 1)) {
                for (int l = 0; l < 32; l++) a[l] = (int8_t)(((q3[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
            }
        }
        int8_t sc8[16];
        slm_quant_q3_k_scales(x[i].scales, sc8);
        int32_t scales[16], aux32[8] = {0};
        for (int j = 0; j < 16; j++) scales[j] = sc8[j] - 32;
        k_accumulate16(y[i].qs, aux8, scales, aux32);
        const float d = slm_quant_h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* Q4_K/Q5_K: unpack 8 scales and 8 mins (6 bits each) from the 12 packed bytes. */
static inline void unpack_k4_scales(const uint8_t packed[SLM_K_SCALE_SIZE], uint8_t scales[8], uint8_t mins[8]) {
    for (int j = 0; j < 8; j++) slm_quant_scale_min_k4(j, packed, &scales[j], &mins[j]);
}

/* Q4_K/Q5_K share everything but how aux8 is filled. */
static inline float k4_finish(const uint16_t xd, const uint16_t xdmin, const uint8_t packed[SLM_K_SCALE_SIZE],
                              const slm_block_q8_k *yb, const int8_t aux8[SLM_QK_K], float sums[8]) {
    uint8_t sc[8], mn[8];
    unpack_k4_scales(packed, sc, mn);
    int sumi = 0;
    for (int j = 0; j < SLM_QK_K / 16; j++) sumi += yb->bsums[j] * mn[j / 2];
    int32_t scales[16], aux32[8] = {0};
    for (int j = 0; j < 16; j++) scales[j] = sc[j / 2]; /* a 32-sub-block is two groups of 16 */
    k_accumulate16(yb->qs, aux8, scales, aux32);
    const float d = slm_quant_h2f(xd) * yb->d;
    for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
    const float dmin = slm_quant_h2f(xdmin) * yb->d;
    return dmin * (float)sumi;
}

float slm_quant_vec_dot_q4_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    int8_t aux8[SLM_QK_K]; /* the 256 quants, 0..15 */
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q4 = x[i].qs;
        int8_t *a = aux8;
        for (int j = 0; j < SLM_QK_K / 64; j++, q4 += 32, a += 64) {
            for (int l = 0; l < 32; l++) a[l] = (int8_t)(q4[l] & 0xF);
            for (int l = 0; l < 32; l++) a[l + 32] = (int8_t)(q4[l] >> 4);
        }
        sumf -= k4_finish(x[i].d, x[i].dmin, x[i].scales, &y[i], aux8, sums);
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

float slm_quant_vec_dot_q5_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    int8_t aux8[SLM_QK_K]; /* the 256 quants, 0..31 */
    float sums[8] = {0};
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q4 = x[i].qs;
        const uint8_t *hm = x[i].qh;
        int8_t *a = aux8;
        uint8_t m = 1;
        for (int j = 0; j < SLM_QK_K / 64; j++, q4 += 32, a += 64, m = (uint8_t)(m << 2)) {
            for (int l = 0; l < 32; l++) a[l] = (int8_t)((q4[l] & 0xF) + (hm[l] & m ? 16 : 0));
            const uint8_t m2 = (uint8_t)(m << 1);
            for (int l = 0; l < 32; l++) a[l + 32] = (int8_t)((q4[l] >> 4) + (hm[l] & m2 ? 16 : 0));
        }
        sumf -= k4_finish(x[i].d, x[i].dmin, x[i].scales, &y[i], aux8, sums);
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

float slm_quant_vec_dot_q6_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q6_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    int8_t aux8[SLM_QK_K]; /* the 256 quants, -32..31 */
    float sums[8] = {0};
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q4 = x[i].ql;
        const uint8_t *qh = x[i].qh;
        int8_t *a = aux8;
        for (int j = 0; j < SLM_QK_K; j += 128, a += 128, q4 += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                a[l + 0] = (int8_t)((int8_t)((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[l + 32] = (int8_t)((int8_t)((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[l + 64] = (int8_t)((int8_t)((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[l + 96] = (int8_t)((int8_t)((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t scales[16], aux32[8] = {0};
        for (int j = 0; j < 16; j++) scales[j] = x[i].scales[j];
        k_accumulate16(y[i].qs, aux8, scales, aux32);
        const float d = slm_quant_h2f(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

/* Q8_K x Q8_K has no reference kernel (Q8_K is never a weight type there): integer sum per
 * super-block, one float scale, so that every type with to_float has a dot product. */
float slm_quant_vec_dot_q8_k_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_q8_k *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < SLM_QK_K; j++) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += (x[i].d * y[i].d) * (float)sumi;
    }
    return sumf;
}
