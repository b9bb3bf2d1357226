/*
 * model/ops.c: per-row operations of the forward pass (see ops.h for the contract).
 *
 * Each function mirrors the reference runtime's scalar definition: RMSNorm sums squares in
 * double and scales then multiplies by the weight (two float roundings, as the graph does
 * with a norm op followed by a mul op); RoPE builds theta by repeated float multiplication;
 * softmax sums exponentials in double. These are the specification of the AVX2 set
 * (ops_avx2.c); the exported rmsnorm, silu_mul and add dispatch to the chosen set.
 * Thread-safety: pure. Non-goals: SIMD rope and softmax.
 */
#include "model/ops.h"

#include <math.h>

#include "model/vexp.h"

/* ---- normalisation ------------------------------------------------------------------ */

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale;
    if (w)
        for (int64_t i = 0; i < n; i++) y[i] = y[i] * w[i];
}

/* ---- rotary position embedding -------------------------------------------------------- */

void slm_ops_rope_cache(float *cs, int64_t n_rot, int32_t pos, float base, float freq_scale,
                        const float *freq_factors) {
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int64_t i = 0; i < n_rot / 2; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void slm_ops_rope(float *x, int64_t n_rot, const float *cs, bool neox) {
    const int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        /* NORMAL: the pair (2i, 2i+1); NEOX: the pair (i, i + n_rot/2). */
        float *a = neox ? &x[i] : &x[2 * i];
        float *b = neox ? &x[i + half] : &x[2 * i + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

/* ---- softmax and activations ------------------------------------------------------------ */

void slm_ops_softmax(float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] == -INFINITY && max > -INFINITY) { /* masked: exp(-inf) = 0 exactly */
            x[i] = 0.0f;
            continue;
        }
        const float e = expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void silu_mul(float *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float v = g[i];
        y[i] = (v / (1.0f + slm_vexp(-v))) * u[i];
    }
}

static void add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- kernel sets ------------------------------------------------------------------------------ */

static const slm_ops_kern ops_scalar = {.name = "scalar", .rmsnorm = rmsnorm, .silu_mul = silu_mul, .add = add};

const slm_ops_kern *slm_ops_kern_isa(slm_quant_isa isa) {
    const slm_ops_kern *avx2 = slm_ops_kern_avx2();
    return isa >= SLM_QUANT_ISA_AVX2 && avx2 ? avx2 : &ops_scalar;
}

static const slm_ops_kern *chosen(void) { return slm_ops_kern_isa(slm_quant_kernels()->isa); }

void slm_ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) { chosen()->rmsnorm(y, x, w, n, eps); }
void slm_ops_silu_mul(float *y, const float *g, const float *u, int64_t n) { chosen()->silu_mul(y, g, u, n); }
void slm_ops_add(float *y, const float *x, int64_t n) { chosen()->add(y, x, n); }
