/*
 * quant/quant_legacy.c: the 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1:
 * dequantization (to_float), the reference quantizers (from_float: the same blocks as the
 * reference's quantize_row_*_ref) and the dot products of each weight type with its
 * activation type (Q8_0 or Q8_1).
 *
 * Every function is the reference runtime's scalar arithmetic, operation for operation
 * (the same float products in the same order), so dequantized values are bit-identical
 * and dot products equal the reference's scalar path: integer sums per block, then one
 * float multiply-add per block in the reference's order.
 * In a block of 32, byte j of qs holds element j in its low nibble and element j + 16 in
 * its high nibble; the Q5 types keep element j's fifth bit as bit j of the 32-bit qh.
 * Thread-safety: pure functions. Non-goals: SIMD (kernels_*.c).
 */
/* Bit-exactness needs every product rounded on its own, as in the reference's build: no
 * fused multiply-add contraction (GCC in ISO C mode never contracts; clang may). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <float.h>
#include <math.h>

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

/* ---- quantizers -------------------------------------------------------------------------- */

/* Largest |x| over one block of 32. */
static inline float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        const float v = fabsf(x[j]);
        amax = amax > v ? amax : v; /* the reference's MAX(), NaN handling included */
    }
    return amax;
}

/* Value of largest magnitude in a block (the first one on ties), sign kept. */
static inline float block_signed_max(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* Smallest and largest value of a block. */
static inline void block_min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

/* Q4_0: d = max / -8 (the largest magnitude becomes -8), q = min(15, trunc(x / d + 8.5)). */
void slm_quant_q4_0_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q4_0 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_0;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK4_0) {
        const float d = block_signed_max(x, SLM_QK4_0) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        for (int j = 0; j < SLM_QK4_0 / 2; j++) {
            const float x0 = x[j] * id, x1 = x[SLM_QK4_0 / 2 + j] * id;
            const int q0 = slm_quant_trunc_clamp(x0 + 8.5f, -128, 127), q1 = slm_quant_trunc_clamp(x1 + 8.5f, -128, 127);
            const uint8_t xi0 = (uint8_t)(q0 < 15 ? q0 : 15), xi1 = (uint8_t)(q1 < 15 ? q1 : 15);
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)). */
void slm_quant_q4_1_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q4_1 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK4_1;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK4_1) {
        float min, max;
        block_min_max(x, SLM_QK4_1, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        y[i].m = slm_quant_f2h(min);
        for (int j = 0; j < SLM_QK4_1 / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[SLM_QK4_1 / 2 + j] - min) * id;
            const int q0 = slm_quant_trunc_clamp(x0 + 0.5f, -128, 127), q1 = slm_quant_trunc_clamp(x1 + 0.5f, -128, 127);
            const uint8_t xi0 = (uint8_t)(q0 < 15 ? q0 : 15), xi1 = (uint8_t)(q1 < 15 ? q1 : 15);
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

/* Q5_0: d = max / -16, q = min(31, trunc(x / d + 16.5)); bit 4 of element j to bit j of qh. */
void slm_quant_q5_0_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q5_0 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK5_0;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK5_0) {
        const float d = block_signed_max(x, SLM_QK5_0) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < SLM_QK5_0 / 2; j++) {
            const float x0 = x[j] * id, x1 = x[SLM_QK5_0 / 2 + j] * id;
            const int q0 = slm_quant_trunc_clamp(x0 + 16.5f, -128, 127), q1 = slm_quant_trunc_clamp(x1 + 16.5f, -128, 127);
            const uint8_t xi0 = (uint8_t)(q0 < 31 ? q0 : 31), xi1 = (uint8_t)(q1 < 31 ? q1 : 31);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + SLM_QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

/* Q5_1: d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5). */
void slm_quant_q5_1_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q5_1 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK5_1;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK5_1) {
        float min, max;
        block_min_max(x, SLM_QK5_1, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        y[i].m = slm_quant_f2h(min);
        uint32_t qh = 0;
        for (int j = 0; j < SLM_QK5_1 / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[SLM_QK5_1 / 2 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)slm_quant_trunc_clamp(x0 + 0.5f, 0, 255), xi1 = (uint8_t)slm_quant_trunc_clamp(x1 + 0.5f, 0, 255);
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + SLM_QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, sizeof qh);
    }
}

/* Q8_0: d = amax / 127, q = round(x / d) (half away from zero), d stored as f16. */
void slm_quant_q8_0_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q8_0 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK8_0;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK8_0) {
        const float amax = block_amax(x, SLM_QK8_0);
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        for (int j = 0; j < SLM_QK8_0; j++) y[i].qs[j] = (int8_t)slm_quant_trunc_clamp(roundf(x[j] * id), -128, 127);
    }
}

/* Q8_1: as Q8_0, plus s = f16(d * sum(q)) for the min term of Q4_1/Q5_1 dot products. */
void slm_quant_q8_1_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q8_1 *y = dst; /* [n / 32] blocks */
    const int64_t nb = n / SLM_QK8_1;
    for (int64_t i = 0; i < nb; i++, x += SLM_QK8_1) {
        const float amax = block_amax(x, SLM_QK8_1);
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_quant_f2h(d);
        int sum = 0;
        for (int j = 0; j < SLM_QK8_1 / 2; j++) {
            y[i].qs[j] = (int8_t)slm_quant_trunc_clamp(roundf(x[j] * id), -128, 127);
            y[i].qs[SLM_QK8_1 / 2 + j] = (int8_t)slm_quant_trunc_clamp(roundf(x[SLM_QK8_1 / 2 + j] * id), -128, 127);
            sum += y[i].qs[j] + y[i].qs[SLM_QK8_1 / 2 + j];
        }
        y[i].s = slm_quant_f2h((float)sum * d);
    }
}

/* ---- dot products --------------------------------------------------------------------------
 * x: n / 32 weight blocks, y: n / 32 activation blocks. Per block an exact integer sum,
 * scaled in float and accumulated in float in block order, as in the reference. */

float slm_quant_vec_dot_q4_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < SLM_QK8_0 / 2; j++) {
            const int v0 = (x[ib].qs[j] & 0x0F) - 8;
            const int v1 = (x[ib].qs[j] >> 4) - 8;
            sumi0 += v0 * y[ib].qs[j];
            sumi1 += v1 * y[ib].qs[j + SLM_QK8_0 / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (float)sumi * slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d);
    }
    return sumf;
}

float slm_quant_vec_dot_q4_1_q8_1(int64_t n, const void *vx, const void *vy) {
    const slm_block_q4_1 *x = vx;
    const slm_block_q8_1 *y = vy;
    const int64_t nb = n / SLM_QK8_1;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < SLM_QK8_1 / 2; j++) {
            const int v0 = x[ib].qs[j] & 0x0F;
            const int v1 = x[ib].qs[j] >> 4;
            sumi0 += v0 * y[ib].qs[j];
            sumi1 += v1 * y[ib].qs[j + SLM_QK8_1 / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d)) * (float)sumi +
                slm_quant_h2f(x[ib].m) * slm_quant_h2f(y[ib].s);
    }
    return sumf;
}

float slm_quant_vec_dot_q5_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        uint32_t qh;
        memcpy(&qh, x[ib].qh, sizeof qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < SLM_QK8_0 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh & (1u << (j + 0))) >> (j + 0)) << 4);
            const uint8_t xh1 = (uint8_t)((qh & (1u << (j + 16))) >> (j + 12));
            const int x0 = (int8_t)(((x[ib].qs[j] & 0x0F) | xh0) - 16);
            const int x1 = (int8_t)(((x[ib].qs[j] >> 4) | xh1) - 16);
            sumi0 += x0 * y[ib].qs[j];
            sumi1 += x1 * y[ib].qs[j + SLM_QK8_0 / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d)) * (float)sumi;
    }
    return sumf;
}

float slm_quant_vec_dot_q5_1_q8_1(int64_t n, const void *vx, const void *vy) {
    const slm_block_q5_1 *x = vx;
    const slm_block_q8_1 *y = vy;
    const int64_t nb = n / SLM_QK8_1;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        uint32_t qh;
        memcpy(&qh, x[ib].qh, sizeof qh);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < SLM_QK8_1 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            const int x0 = (x[ib].qs[j] & 0x0F) | xh0;
            const int x1 = (x[ib].qs[j] >> 4) | xh1;
            sumi0 += x0 * y[ib].qs[j];
            sumi1 += x1 * y[ib].qs[j + SLM_QK8_1 / 2];
        }
        const int sumi = sumi0 + sumi1;
        sumf += (slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d)) * (float)sumi +
                slm_quant_h2f(x[ib].m) * slm_quant_h2f(y[ib].s);
    }
    return sumf;
}

float slm_quant_vec_dot_q8_0_q8_0(int64_t n, const void *vx, const void *vy) {
    const slm_block_q8_0 *x = vx;
    const slm_block_q8_0 *y = vy;
    const int64_t nb = n / SLM_QK8_0;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < SLM_QK8_0; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d));
    }
    return sumf;
}

/* Q8_1 x Q8_1 has no reference kernel (Q8_1 is never a weight type there); the same shape
 * as Q8_0 x Q8_0, so that every type with to_float also has a dot product. */
float slm_quant_vec_dot_q8_1_q8_1(int64_t n, const void *vx, const void *vy) {
    const slm_block_q8_1 *x = vx;
    const slm_block_q8_1 *y = vy;
    const int64_t nb = n / SLM_QK8_1;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < SLM_QK8_1; j++) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (slm_quant_h2f(x[ib].d) * slm_quant_h2f(y[ib].d));
    }
    return sumf;
}
