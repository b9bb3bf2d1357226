/*
 * model/attn_kern.c: the scalar block kernels of the tiled attention (the specification;
 * see attn_kern.h for the contract) and the choice of a set.
 *
 * Plain loops in float: scores accumulate over d in increasing order, exp is slm_vexp,
 * sums run over c in increasing order. Thread-safety: pure functions, immutable table.
 * Non-goals: speed (the SLMESH_KERNELS=scalar runs only check correctness).
 */
#include "model/attn_kern.h"

#include <stddef.h>

#include "model/vexp.h"
#include "quant/quant.h"

/* ---- loading a block ---------------------------------------------------------------------- */

static void load_kt_f16(const uint16_t *const *rows, int nc, int64_t hd, float *kt) {
    /* kt[hd][BLOCK] <- rows[nc][hd] */
    for (int c = 0; c < nc; c++)
        for (int64_t d = 0; d < hd; d++) kt[d * SLM_ATTN_BLOCK + c] = rows[c] ? slm_f16_to_f32(rows[c][d]) : 0.0f;
}

static void load_v_f16(const uint16_t *const *rows, int nc, int64_t hd, float *v) {
    /* v[BLOCK][hd] <- rows[nc][hd] */
    for (int c = 0; c < nc; c++)
        for (int64_t d = 0; d < hd; d++) v[c * hd + d] = rows[c] ? slm_f16_to_f32(rows[c][d]) : 0.0f;
}

/* ---- query rows against a block (one by one: the specification) --------------------------------- */

static float scores_row(int64_t hd, const float *q, const float *kt, uint64_t vis, float *s) {
    /* s[BLOCK] = q[hd] . kt[hd][BLOCK], -inf where vis has no bit */
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) s[c] = 0.0f;
    for (int64_t d = 0; d < hd; d++)
        for (int c = 0; c < SLM_ATTN_BLOCK; c++) s[c] += q[d] * kt[d * SLM_ATTN_BLOCK + c];
    float max = -INFINITY;
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        if (!(vis >> c & 1)) s[c] = -INFINITY;
        if (s[c] > max) max = s[c];
    }
    return max;
}

static void scores(int nr, int64_t hd, const float *q, const float *kt, const uint64_t *vis, float *s, float *max) {
    /* rows one by one */
    for (int i = 0; i < nr; i++) max[i] = scores_row(hd, q + i * hd, kt, vis[i], s + i * SLM_ATTN_BLOCK);
}

static float exp_sum(float *s, float m) {
    float sum = 0.0f;
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        s[c] = slm_vexp(s[c] - m);
        sum += s[c];
    }
    return sum;
}

static void pv_row(int64_t hd, const float *p, const float *v, float alpha, float *acc) {
    /* acc[hd] = acc * alpha + p[BLOCK] . v[BLOCK][hd] */
    if (alpha != 1.0f)
        for (int64_t d = 0; d < hd; d++) acc[d] *= alpha;
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        if (p[c] == 0.0f) continue;
        for (int64_t d = 0; d < hd; d++) acc[d] += p[c] * v[c * hd + d];
    }
}

static void pv(int nr, int64_t hd, const float *p, const float *v, const float *alpha, float *acc) {
    for (int i = 0; i < nr; i++) pv_row(hd, p + i * SLM_ATTN_BLOCK, v, alpha[i], acc + i * hd);
}

const slm_attn_kern slm_attn_kern_scalar = {
    .name = "scalar",
    .load_kt_f16 = load_kt_f16,
    .load_v_f16 = load_v_f16,
    .scores = scores,
    .exp_sum = exp_sum,
    .pv = pv,
};

/* ---- choice ------------------------------------------------------------------------------------ */

const slm_attn_kern *slm_attn_kern_pick(slm_quant_isa isa, int64_t hd) {
    const slm_attn_kern *avx2 = slm_attn_kern_avx2();
    if (isa >= SLM_QUANT_ISA_AVX2 && avx2 && hd % 8 == 0) return avx2;
    return &slm_attn_kern_scalar;
}
