/*
 * model/ops.h: the element-wise and per-row operations of the transformer forward pass,
 * written to match the reference runtime's CPU kernels operation for operation (the same
 * float/double accumulation and the same order of multiplications), because the
 * acceptance tests compare log-probabilities with it at tight tolerances.
 *
 * Matrix products are not here: they go through the quant module's vec_dot kernels
 * (forward.c). rmsnorm, silu_mul and add run the kernels of the ISA the quant module chose
 * (slm_ops_kern_isa: AVX2 with the scalar functions of ops.c as the specification; the AVX2
 * silu_mul and add give the same bits, rmsnorm differs only by the order of its double sum).
 * Thread-safety: pure functions over caller buffers. Non-goals: SIMD rope and softmax (a
 * small share of the pass), layer norm with bias (later architectures).
 */
#ifndef SLMESH_MODEL_OPS_H
#define SLMESH_MODEL_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/kernels.h"

/* y[n] = x[n] / sqrt(mean(x^2) + eps) * w[n]; w may be NULL (no weight). The sum of squares
 * is accumulated in double as the reference does. y may alias x. */
void slm_ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* The rotation table of one position: cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i) for
 * i in [0, n_rot/2), theta_i = pos * freq_scale * base^(-2i/n_rot) / ff[i], where the
 * power is built by repeated multiplication in float as the reference does. freq_factors
 * may be NULL (all 1). */
void slm_ops_rope_cache(float *cs, int64_t n_rot, int32_t pos, float base, float freq_scale,
                        const float *freq_factors);

/* Rotate one head x[head_dim] in place with the table: NORMAL rotates pairs (2i, 2i+1),
 * NEOX rotates pairs (i, i + n_rot/2). Dimensions >= n_rot are left as they are. */
void slm_ops_rope(float *x, int64_t n_rot, const float *cs, bool neox);

/* x[n] = softmax(x[n]) in place (max subtracted, sum in double). */
void slm_ops_softmax(float *x, int64_t n);

/* y[n] = silu(g[n]) * u[n], silu(x) = x / (1 + e^-x) with slm_vexp (model/vexp.h). y may
 * alias g. */
void slm_ops_silu_mul(float *y, const float *g, const float *u, int64_t n);

/* y[n] += x[n]. */
void slm_ops_add(float *y, const float *x, int64_t n);

/* ---- kernel sets -------------------------------------------------------------------------- */

/* The per-ISA implementations of the functions above with the same contracts. */
typedef struct slm_ops_kern {
    const char *name;
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*silu_mul)(float *y, const float *g, const float *u, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
} slm_ops_kern;

/* The set for isa: AVX2 for AVX2 and above when this build has it, scalar otherwise. Static
 * storage, never NULL. Tests compare sets; the slm_ops_ functions use the quant module's
 * choice (slm_quant_kernels()->isa). */
const slm_ops_kern *slm_ops_kern_isa(slm_quant_isa isa);

/* The AVX2 set, or NULL when this build has none (ops_avx2.c). */
const slm_ops_kern *slm_ops_kern_avx2(void);

#endif /* SLMESH_MODEL_OPS_H */
