/*
 * quant/quant_legacy.c: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1:
 * dequantization (to_float).
 *
 * Every function is the reference runtime's scalar arithmetic, operation for operation
 * (the same float products in the same order), so dequantized values are bit-identical.
 * In a block of 32, byte j of qs holds element j in its low nibble and element j + 16 in
 * its high nibble; the Q5 types keep element j's fifth bit as bit j of the 32-bit qh.
 * Thread-safety: pure functions. Non-goals: SIMD (kernels_*.c).
 */
#include "quant/blocks.h"

/* ---- dequantization ------------------------------------------------------------------------ */

void slm_quant_q4_0_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q4_0 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_0;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK4_0) {
        const float d = slm_quant_h2f(x[i].d);
        for (int j = 0; j < SLM_QK4_0 / 2; j++) {
            const int x0 = (x[i].qs[j] & 0x0F) - 8;
            const int x1 = (x[i].qs[j] >> 4) - 8;
            dst[j] = (float)x0 * d;
            dst[j + SLM_QK4_0 / 2] = (float)x1 * d;
        }
    }
}

void slm_quant_q4_1_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q4_1 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_1;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK4_1) {
        const float d = slm_quant_h2f(x[i].d);
        const float m = slm_quant_h2f(x[i].m);
        for (int j = 0; j < SLM_QK4_1 / 2; j++) {
            const int x0 = x[i].qs[j] & 0x0F;
            const int x1 = x[i].qs[j] >> 4;
            dst[j] = (float)x0 * d + m;
            dst[j + SLM_QK4_1 / 2] = (float)x1 * d + m;
        }
    }
}

void slm_quant_q5_0_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q5_0 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK5_0;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK5_0) {
        const float d = slm_quant_h2f(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < SLM_QK5_0 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            const int x0 = ((x[i].qs[j] & 0x0F) | xh0) - 16;
            const int x1 = ((x[i].qs[j] >> 4) | xh1) - 16;
            dst[j] = (float)x0 * d;
            dst[j + SLM_QK5_0 / 2] = (float)x1 * d;
        }
    }
}

void slm_quant_q5_1_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q5_1 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK5_1;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK5_1) {
        const float d = slm_quant_h2f(x[i].d);
        const float m = slm_quant_h2f(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, sizeof qh);
        for (int j = 0; j < SLM_QK5_1 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            const int x0 = (x[i].qs[j] & 0x0F) | xh0;
            const int x1 = (x[i].qs[j] >> 4) | xh1;
            dst[j] = (float)x0 * d + m;
            dst[j + SLM_QK5_1 / 2] = (float)x1 * d + m;
        }
    }
}

void slm_quant_q8_0_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q8_0 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK8_0;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK8_0) {
        const float d = slm_quant_h2f(x[i].d);
        for (int j = 0; j < SLM_QK8_0; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}

/* Q8_1 has no reference dequantizer (it only ever feeds dot products); this is the obvious
 * x = d * q, used by tests and by the Q8_1 round trip. */
void slm_quant_q8_1_to_float(const void *src, float *dst, int64_t n) {
    const slm_block_q8_1 *x = src; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK8_1;
    for (int64_t i = 0; i < nb; i++, dst += SLM_QK8_1) {
        const float d = slm_quant_h2f(x[i].d);
        for (int j = 0; j < SLM_QK8_1; j++) dst[j] = (float)x[i].qs[j] * d;
    }
}
