/*
 * quant/quantize_k.c: the reference quantizers of the K types Q2_K, Q3_K, Q4_K, Q5_K and
 * Q6_K (what `slmesh quantize` writes when no importance matrix is given).
 *
 * Each is the reference runtime's quantize_row_*_ref, float operation for float operation
 * (same expression order, same rounding helper), so the blocks are the reference's for the
 * same input. Per super-block: fit each sub-block (a scale, and for Q2/Q4/Q5 a min) with a
 * small search, quantize the sub-block scales against the largest, then requantize every
 * value with the scales as they will be decoded.
 * Thread-safety: pure functions (stack buffers only). Non-goals: importance-matrix
 * quantization (the reference's *_impl paths).
 */
/* Bit-exactness needs every product rounded on its own, as in the reference's build: no
 * fused multiply-add contraction (GCC in ISO C mode never contracts; clang may). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#include <float.h>
#include <math.h>
#include <stdbool.h>

#include "quant/blocks.h"

/* Below this largest |x| a group counts as all zeros (the reference's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* ---- group fitting ------------------------------------------------------------------------ */

/* Symmetric fit of n values to integers in [-nmax, nmax - 1] (stored + nmax in L), weighted
 * by x^2 (rmse_type 1, no importance weights): start from scale max / -nmax, then try 18
 * nearby scales and keep the best weighted least-squares one. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = slm_quant_nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = slm_quant_nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = slm_quant_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's fit: integers in [-nmax, nmax - 1], then up to 5 rounds of moving single values
 * to their best level while that improves the x^2-weighted fit. Returns the scale. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = slm_quant_nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = slm_quant_nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric fit x ~ scale * L - the_min with L in [0, nmax], min <= 0: start from the
 * range, try nstep + 1 scales around it solving weighted least squares for scale and min,
 * keep the smallest weighted error (|diff| when use_mad, else diff^2). Laux: n bytes. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = slm_quant_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = slm_quant_nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Pack 256 2-bit values: byte l of each 32-byte half holds elements l, l+32, l+64, l+96. */
static void pack_2bit(const uint8_t L[SLM_QK_K], uint8_t qs[SLM_QK_K / 4]) {
    for (int j = 0; j < SLM_QK_K; j += 128) {
        for (int l = 0; l < 32; l++) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        }
    }
}

/* ---- Q2_K ---------------------------------------------------------------------------------- */

void slm_quant_q2_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q2_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    const float q4scale = 15.f; /* sub-block scales and mins are 4-bit */
    uint8_t L[SLM_QK_K], Laux[16];
    float weights[16], mins[SLM_QK_K / 16], scales[SLM_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0, max_min = 0; /* scales are positive: the min is taken out */
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < SLM_QK_K / 16; j++) y[i].scales[j] = (uint8_t)slm_quant_nearest_int(iscale * scales[j]);
            y[i].d = slm_quant_f2h(max_scale / q4scale);
        } else {
            for (int j = 0; j < SLM_QK_K / 16; j++) y[i].scales[j] = 0;
            y[i].d = slm_quant_f2h(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < SLM_QK_K / 16; j++) {
                const int l = slm_quant_nearest_int(iscale * mins[j]);
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | (l << 4));
            }
            y[i].dmin = slm_quant_f2h(max_min / q4scale);
        } else {
            y[i].dmin = slm_quant_f2h(0.f);
        }
        /* requantize with the scales as decoded */
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            const float d = slm_quant_h2f(y[i].d) * (float)(y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = slm_quant_h2f(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                const int l = slm_quant_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

/* ---- Q3_K ---------------------------------------------------------------------------------- */

void slm_quant_q3_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q3_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    int8_t L[SLM_QK_K];
    float scales[SLM_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        /* 16 6-bit scales: low nibbles in bytes 0..7, top 2 bits in bytes 8..11 */
        memset(y[i].scales, 0, SLM_K_SCALE_SIZE);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < SLM_QK_K / 16; j++) {
                int8_t l = (int8_t)slm_quant_nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] = (uint8_t)(y[i].scales[j - 8] | ((l & 0xF) << 4));
                l = (int8_t)(l >> 4);
                y[i].scales[j % 4 + 8] = (uint8_t)(y[i].scales[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            y[i].d = slm_quant_f2h(1 / iscale);
        } else {
            y[i].d = slm_quant_f2h(0.f);
        }
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            int8_t sc = (int8_t)(j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4);
            sc = (int8_t)((sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
            const float d = slm_quant_h2f(y[i].d) * (float)sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = slm_quant_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        /* high bit of element j: bit j / 32 of hmask[j % 32] */
        memset(y[i].hmask, 0, SLM_QK_K / 8);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < SLM_QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[m] = (uint8_t)(y[i].hmask[m] | hm);
                L[j] = (int8_t)(L[j] - 4);
            }
            if (++m == SLM_QK_K / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        pack_2bit((const uint8_t *)L, y[i].qs);
    }
}

/* ---- Q4_K / Q5_K ---------------------------------------------------------------------------- */

/* Shared front half of Q4_K and Q5_K: fit the 8 sub-blocks of 32 to [0, nmax] with a min,
 * pack the 6-bit scales and mins, set d and dmin, and requantize into L. */
static void k4_fit(const float *x, int nmax, float rmin, int nstep, uint16_t *dd, uint16_t *dmin,
                   uint8_t packed[SLM_K_SCALE_SIZE], uint8_t L[SLM_QK_K]) {
    uint8_t Laux[32];
    float weights[32], mins[SLM_QK_K / 32], scales[SLM_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < SLM_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < SLM_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)slm_quant_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)slm_quant_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] = (uint8_t)(packed[j - 4] | ((ls >> 4) << 6));
            packed[j - 0] = (uint8_t)(packed[j - 0] | ((lm >> 4) << 6));
        }
    }
    *dd = slm_quant_f2h(max_scale / 63.f);
    *dmin = slm_quant_f2h(max_min / 63.f);
    for (int j = 0; j < SLM_QK_K / 32; j++) {
        uint8_t sc, m;
        slm_quant_scale_min_k4(j, packed, &sc, &m);
        const float d = slm_quant_h2f(*dd) * (float)sc;
        if (!d) continue;
        const float dm = slm_quant_h2f(*dmin) * (float)m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = slm_quant_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

void slm_quant_q4_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q4_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k4_fit(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        /* byte l of chunk c: element 64c + l (low nibble) and 64c + 32 + l (high) */
        uint8_t *q = y[i].qs;
        for (int j = 0; j < SLM_QK_K; j += 64, q += 32) {
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

void slm_quant_q5_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q5_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k4_fit(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *qh = y[i].qh;
        uint8_t *ql = y[i].qs;
        memset(qh, 0, SLM_QK_K / 8);
        uint8_t m1 = 1, m2 = 2; /* fifth bits of the chunk's two sub-blocks */
        for (int c = 0; c < SLM_QK_K; c += 64, ql += 32) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[c + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] = (uint8_t)(qh[j] | m1);
                }
                int l2 = L[c + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] = (uint8_t)(qh[j] | m2);
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
        }
    }
}

/* ---- Q6_K ---------------------------------------------------------------------------------- */

void slm_quant_q6_k_from_float(const float *x, void *dst, int64_t n) {
    slm_block_q6_k *y = dst; /* [n / 256] super-blocks */
    const int64_t nb = n / SLM_QK_K;
    int8_t L[SLM_QK_K];
    float scales[SLM_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < SLM_QK_K / 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = slm_quant_f2h(0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = slm_quant_f2h(1 / iscale);
        for (int ib = 0; ib < SLM_QK_K / 16; ib++) y[i].scales[ib] = (int8_t)imin(127, slm_quant_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < SLM_QK_K / 16; j++) {
            const float d = slm_quant_h2f(y[i].d) * (float)y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = slm_quant_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        /* low nibbles: ql[l] = e(l) | e(l+64) << 4, ql[l+32] = e(l+32) | e(l+96) << 4;
         * high 2 bits of e(l), e(l+32), e(l+64), e(l+96) in qh[l] */
        uint8_t *ql = y[i].ql;
        uint8_t *qh = y[i].qh;
        for (int j = 0; j < SLM_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}
