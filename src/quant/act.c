/*
 * quant/act.c: the scalar activation quantizers for Q8_0 and Q8_1 (see act.h for why they
 * differ from the type table's reference quantizers). Per block of 32: amax = the largest
 * |x|, d = amax / 127, id = 127 / amax (0 when amax is 0), q = x * id rounded half to
 * even (nearbyintf in the default rounding mode); Q8_1 also s = d * sum(q). d and s are
 * stored as f16.
 * Thread-safety: pure functions. Non-goals: SIMD (kernels_avx2.c has the same arithmetic).
 */
#include "quant/act.h"

#include <math.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"

/* One block: d into *d_out, int8 values into q; returns the sum of q. */
static int quantize_block(const float *x, float *d_out, int8_t *q) {
    float amax = 0.0f;
    for (int j = 0; j < SLM_QK8_0; j++) {
        const float v = fabsf(x[j]);
        amax = amax > v ? amax : v;
    }
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < SLM_QK8_0; j++) {
        q[j] = (int8_t)nearbyintf(x[j] * id); /* round half to even (default rounding mode) */
        sum += q[j];
    }
    *d_out = d;
    return sum;
}

void slm_quant_act_q8_0(const float *x, void *dst, int64_t n) {
    slm_block_q8_0 *y = dst; /* [n / 32] blocks */
    for (int64_t b = 0; b < n / SLM_QK8_0; b++, x += SLM_QK8_0) {
        float d;
        quantize_block(x, &d, y[b].qs);
        y[b].d = slm_f32_to_f16(d);
    }
}

void slm_quant_act_q8_1(const float *x, void *dst, int64_t n) {
    slm_block_q8_1 *y = dst; /* [n / 32] blocks */
    for (int64_t b = 0; b < n / SLM_QK8_1; b++, x += SLM_QK8_1) {
        float d;
        const int sum = quantize_block(x, &d, y[b].qs);
        y[b].d = slm_f32_to_f16(d);
        y[b].s = slm_f32_to_f16(d * (float)sum);
    }
}
