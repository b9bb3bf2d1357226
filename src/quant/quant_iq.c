/*
 * quant/quant_iq.c: the non-linear 4-bit types IQ4_NL (32-element blocks) and IQ4_XS
 * (256-element super-blocks with 6-bit sub-block scales): dequantization (to_float), the
 * quantizers (from_float: the blocks the reference's quantize_iq4_nl / quantize_iq4_xs write
 * without an importance matrix, i.e. what its quantize tool produces) and dot products
 * (IQ4_NL with Q8_0, IQ4_XS with Q8_K).
 *
 * Both map a nibble through the same 16-entry table of levels; the arithmetic is the
 * reference runtime's scalar code, so results are bit-identical.
 * Thread-safety: pure functions. Non-goals: the other IQ types (grid-based; slmesh knows
 * them only by size).
 */
/* Bit-exactness needs every product rounded on its own, as in the reference's build: no
 * fused multiply-add contraction (GCC in ISO C mode never contracts; clang may). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <math.h>

#include "quant/blocks.h"

/* The levels: a fixed non-uniform grid, denser near zero (from the GGUF ecosystem). */
const int8_t slm_quant_kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* ---- dequantization ------------------------------------------------------------------------ */

void slm_quant_iq4_nl_to_float(const void *src, float *y, int64_t n) {
    const slm_block_iq4_nl *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_NL;
    for (int64_t i = 0; i < nb; i++, y += SLM_QK4_NL) {
        const float d = slm_quant_h2f(x[i].d);
        for (int j = 0; j < SLM_QK4_NL / 2; j++) {
            y[j] = d * (float)slm_quant_kvalues_iq4nl[x[i].qs[j] & 0xf];
            y[j + SLM_QK4_NL / 2] = d * (float)slm_quant_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* Sub-block ib's 6-bit scale: low 4 bits from scales_l, high 2 from scales_h. */
static inline int iq4_xs_scale(const slm_block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
}

void slm_quant_iq4_xs_to_float(const void *src, float *y, int64_t n) {
    const slm_block_iq4_xs *x = src; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_quant_h2f(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < SLM_QK_K / 32; ib++, y += 32, qs += 16) {
            const float dl = d * (float)(iq4_xs_scale(&x[i], ib) - 32);
            for (int j = 0; j < 16; j++) {
                y[j + 0] = dl * (float)slm_quant_kvalues_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * (float)slm_quant_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* ---- quantization ---------------------------------------------------------------------------- */

/* Below this largest |x| a block counts as all zeros (the reference's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f
/* Scale candidates tried on each side of the first guess (the reference's ntry). */
#define IQ4_NTRY 7

/* Index of the level nearest to x in the sorted table (ties go up). */
static int best_index_iq4(float x) {
    const int8_t *val = slm_quant_kvalues_iq4nl;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - (float)val[mu - 1] < (float)val[mu] - x ? mu - 1 : mu;
}

/* One super-block of sb elements in sub-blocks of 32: fit each sub-block's scale by an
 * x^2-weighted search over 2 * IQ4_NTRY + 1 candidates; with more than one sub-block,
 * quantize the scales to 6 bits against the largest (scales_h/_l) and requantize. Writes
 * *dh and q4 (sb / 2 bytes). L: sb bytes, scales: sb / 32 floats of scratch. */
static void iq4_quantize_block(int sb, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                               uint8_t *scales_l, float *scales, uint8_t *L) {
    const int8_t *values = slm_quant_kvalues_iq4nl;
    float weight[32];
    memset(q4, 0, (size_t)sb / 2);
    *dh = slm_quant_f2h(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / (float)values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = best_index_iq4(id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumqx / sumq2;
        float best = d * sumqx;
        for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; itry++) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const float q = values[best_index_iq4(id * xb[j])];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }
    if (sb / 32 > 1) {
        const int nb = sb / 32;
        memset(scales_h, 0, (size_t)((nb + 7) / 8) * sizeof(uint16_t));
        const float d = -max_scale / 32;
        *dh = slm_quant_f2h(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < nb; ib++) {
            int l = slm_quant_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * (float)l;
            const float idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[ib * 32 + j] = (uint8_t)best_index_iq4(idl * x[ib * 32 + j]);
            l += 32;
            const uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0) scales_l[ib / 2] = l_l;
            else scales_l[ib / 2] = (uint8_t)(scales_l[ib / 2] | (l_l << 4));
            scales_h[ib / 8] = (uint16_t)(scales_h[ib / 8] | (l_h << 2 * (ib % 8)));
        }
    } else {
        *dh = slm_quant_f2h(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; j++) L[j] = (uint8_t)best_index_iq4(id * x[j]);
    }
    /* nibbles as in Q4_0, per 32: byte j holds elements j and j + 16 */
    for (int i = 0; i < sb / 32; i++) {
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

void slm_quant_iq4_nl_from_float(const float *x, void *dst, int64_t n) {
    slm_block_iq4_nl *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_NL;
    uint8_t L[SLM_QK4_NL];
    float scale;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK4_NL) {
        uint16_t d;
        iq4_quantize_block(SLM_QK4_NL, x, &d, y[i].qs, NULL, NULL, &scale, L);
        y[i].d = d;
    }
}

void slm_quant_iq4_xs_from_float(const float *x, void *dst, int64_t n) {
    slm_block_iq4_xs *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    uint8_t L[SLM_QK_K];
    float scales[SLM_QK_K / 32];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        uint16_t d, sh;
        iq4_quantize_block(SLM_QK_K, x, &d, y[i].qs, &sh, y[i].scales_l, scales, L);
        y[i].d = d;
        y[i].scales_h = sh;
    }
}

/* ---- dot products -------------------------------------------------------------------------- */

float slm_quant_vec_dot_iq4_nl_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_iq4_nl *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK4_NL;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        const float d = slm_quant_h2f(y[ib].d) * slm_quant_h2f(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < SLM_QK4_NL / 2; j++) {
            sumi1 += y[ib].qs[j + 0] * slm_quant_kvalues_iq4nl[x[ib].qs[j] & 0xf];
            sumi2 += y[ib].qs[j + SLM_QK4_NL / 2] * slm_quant_kvalues_iq4nl[x[ib].qs[j] >> 4];
        }
        sumf += d * (float)(sumi1 + sumi2);
    }
    return sumf;
}

float slm_quant_vec_dot_iq4_xs_q8_k(int64_t n, const void *vx, const void *vy) {
    const slm_block_iq4_xs *x = vx;
    const slm_block_q8_k *y = vy;
    const int64_t nb = n / SLM_QK_K;
    float sumf = 0.0f;
    for (int64_t ibl = 0; ibl < nb; ibl++) {
        const float d4d8 = slm_quant_h2f(x[ibl].d) * y[ibl].d;
        const uint8_t *qs = x[ibl].qs;
        const int8_t *q8 = y[ibl].qs;
        /* one float term per 32-element sub-block, in order */
        for (int ib = 0; ib < SLM_QK_K / 32; ib++, qs += 16, q8 += 32) {
            const float dl = d4d8 * (float)(iq4_xs_scale(&x[ibl], ib) - 32);
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < 16; j++) {
                sumi1 += q8[j + 0] * slm_quant_kvalues_iq4nl[qs[j] & 0xf];
                sumi2 += q8[j + 16] * slm_quant_kvalues_iq4nl[qs[j] >> 4];
            }
            sumf += dl * (float)(sumi1 + sumi2);
        }
    }
    return sumf;
}
