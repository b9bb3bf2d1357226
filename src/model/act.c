/*
 * model/act.c: activation conversion (see act.h for why Q8_0/Q8_1 differ from the quant
 * module's reference quantizer).
 *
 * Block layouts (the GGUF ecosystem's): Q8_0 = f16 d, int8 qs[32] (34 bytes);
 * Q8_1 = f16 d, f16 s = d * sum(qs), int8 qs[32] (36 bytes). Values x = d * q.
 */
#include "model/act.h"

#include "quant/kernels.h"

#include <math.h>
#include <string.h>

#define Q8_BLOCK 32 /* elements per Q8_0 / Q8_1 block */

/* One block: d into *d_out, int8 values into q; returns the sum of q. */
static int quantize_block(const float *x, float *d_out, int8_t *q) {
    float amax = 0.0f;
    for (int j = 0; j < Q8_BLOCK; j++) {
        const float v = fabsf(x[j]);
        amax = amax > v ? amax : v;
    }
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < Q8_BLOCK; j++) {
        q[j] = (int8_t)nearbyintf(x[j] * id); /* round half to even (default rounding mode) */
        sum += q[j];
    }
    *d_out = d;
    return sum;
}

void slm_model_act_convert(slm_type vt, const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    if (vt != SLM_TYPE_Q8_0 && vt != SLM_TYPE_Q8_1) {
        slm_quant_kernels()->from_float[vt](x, dst, n);
        return;
    }
    const bool with_sum = vt == SLM_TYPE_Q8_1;
    const size_t block_bytes = with_sum ? 36 : 34;
    for (int64_t b = 0; b < n / Q8_BLOCK; b++, x += Q8_BLOCK, out += block_bytes) {
        float d;
        int8_t q[Q8_BLOCK];
        const int sum = quantize_block(x, &d, q);
        const uint16_t dh = slm_f32_to_f16(d);
        memcpy(out, &dh, 2);
        if (with_sum) {
            const uint16_t sh = slm_f32_to_f16(d * (float)sum);
            memcpy(out + 2, &sh, 2);
        }
        memcpy(out + (with_sum ? 4 : 2), q, Q8_BLOCK);
    }
}
