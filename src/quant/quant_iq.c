/*
 * quant/quant_iq.c: the non-linear 4-bit types IQ4_NL (32-element blocks) and IQ4_XS
 * (256-element super-blocks with 6-bit sub-block scales): dequantization (to_float) and
 * dot products (IQ4_NL with Q8_0, IQ4_XS with Q8_K).
 *
 * Both map a nibble through the same 16-entry table of levels; the arithmetic is the
 * reference runtime's scalar code, so results are bit-identical.
 * Thread-safety: pure functions. Non-goals: the other IQ types (grid-based; slmesh knows
 * them only by size).
 */
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
