/*
 * tests/quant_testutil.h: helpers shared by the quant tests (header-only, static inline):
 * a deterministic generator, random weight rows with sane scales (rand_weights, random_rows), and the error bounds
 * of the activation quantizers and of the dot-product kernels. Include after testutil.h
 * (uses cmocka's asserts).
 */
#ifndef SLMESH_QUANT_TESTUTIL_H
#define SLMESH_QUANT_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "quant/blocks.h"
#include "quant/quant.h"

/* ---- deterministic random numbers --------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static inline float rng_uniform(float lo, float hi) { return lo + (hi - lo) * (float)(rng_u32() >> 8) / 16777216.0f; }
/* roughly normal (sum of 4 uniforms), with an occasional outlier as real activations have */
static inline float rng_act(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += rng_uniform(-1.0f, 1.0f);
    return (rng_u32() % 64 == 0) ? 8.0f * s : s;
}

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Largest |x| of each block of bs. */
static inline float block_amax(const float *x, int bs) {
    float a = 0;
    for (int j = 0; j < bs; j++) a = fmaxf(a, fabsf(x[j]));
    return a;
}

/* Per-element bound on |x - dequant(quant(x))| for an activation type, given the block's
 * largest |x|:
 *  - Q8_0/Q8_1: q = round(x / d) with d = amax / 127, but d is stored as f16 (error <= 2^-11
 *    relative, or 2^-25 absolute when d is an f16 subnormal), so |x - q * f16(d)| <= d / 2 +
 *    127 * (d * 2^-11 + 2^-25) < 0.5625 * d + 127 * 2^-25; plus the float rounding of x / d
 *    (a few ulps of 127): 0.57 * d + 127 * 2^-25.
 *  - Q8_K: d = 1 / (127 / max) is a float (relative error ~2^-23) and q = nearest(x * iscale)
 *    with one float rounding: 0.5 * d * (1 + 2^-18) + 127 * d * 2^-22 < 0.501 * d.
 *  - F16: half an ulp of binary16 (2^-11 relative, 2^-25 absolute in the subnormal range).
 *  - BF16: half an ulp of bfloat16 (2^-8 relative).
 *  - F32: exact. */
static inline double act_elem_bound(slm_type t, float x, float amax) {
    switch (t) {
    case SLM_TYPE_Q8_0:
    case SLM_TYPE_Q8_1: return 0.57 * (double)amax / 127.0 + 127.0 * 0x1p-25;
    case SLM_TYPE_Q8_K: return 0.501 * (double)amax / 127.0;
    case SLM_TYPE_F16: return fabs((double)x) * 0x1p-11 + 0x1p-25;
    case SLM_TYPE_BF16: return fabs((double)x) * 0x1p-8;
    default: return 0.0;
    }
}

/* A random f16 scale in [lo, hi), random sign when signed_ is set. */
static inline uint16_t rand_half(float lo, float hi, int signed_) {
    float v = rng_uniform(lo, hi);
    if (signed_ && (rng_u32() & 1)) v = -v;
    return slm_f32_to_f16(v);
}

/* Random weight row of n elements of type t: random quant bytes, sane scales. */
static inline void *rand_weights(slm_type t, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t bytes;
    assert_true(slm_type_row_bytes(t, n, &bytes));
    uint8_t *w = malloc(bytes);
    assert_non_null(w);
    if (!tr->quantized) {
        float *f = malloc((size_t)n * sizeof(float));
        assert_non_null(f);
        for (int64_t i = 0; i < n; i++) f[i] = 0.05f * rng_act();
        tr->from_float(f, w, n);
        free(f);
        return w;
    }
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rng_u32();
    const int64_t nb = n / tr->block_size;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * tr->type_size;
        uint16_t h[2] = {rand_half(0.001f, 0.01f, 0), rand_half(0.001f, 0.01f, 1)};
        size_t off_d = SIZE_MAX, off_m = SIZE_MAX;
        switch (t) {
        case SLM_TYPE_Q4_1: off_d = offsetof(slm_block_q4_1, d); off_m = offsetof(slm_block_q4_1, m); break;
        case SLM_TYPE_Q5_1: off_d = offsetof(slm_block_q5_1, d); off_m = offsetof(slm_block_q5_1, m); break;
        case SLM_TYPE_Q8_1: off_d = offsetof(slm_block_q8_1, d); off_m = offsetof(slm_block_q8_1, s); break;
        case SLM_TYPE_Q2_K: off_d = offsetof(slm_block_q2_k, d); off_m = offsetof(slm_block_q2_k, dmin); break;
        case SLM_TYPE_Q3_K: off_d = offsetof(slm_block_q3_k, d); break;
        case SLM_TYPE_Q4_K: off_d = offsetof(slm_block_q4_k, d); off_m = offsetof(slm_block_q4_k, dmin); break;
        case SLM_TYPE_Q5_K: off_d = offsetof(slm_block_q5_k, d); off_m = offsetof(slm_block_q5_k, dmin); break;
        case SLM_TYPE_Q6_K: off_d = offsetof(slm_block_q6_k, d); break;
        case SLM_TYPE_Q8_K: {
            const float d = rng_uniform(0.001f, 0.01f);
            memcpy(blk, &d, sizeof d);
            break;
        }
        default: off_d = 0; break; /* Q4_0, Q5_0, Q8_0, IQ4_NL, IQ4_XS: d first */
        }
        if (t == SLM_TYPE_Q2_K || t == SLM_TYPE_Q4_K || t == SLM_TYPE_Q5_K) h[1] = rand_half(0.001f, 0.01f, 0);
        if (off_d != SIZE_MAX) memcpy(blk + off_d, &h[0], 2);
        if (off_m != SIZE_MAX) memcpy(blk + off_m, &h[1], 2);
    }
    return w;
}

/* Sum over Q8_1 blocks of |m_x| * |s_y| * 2^-9: the Q4_1/Q5_1 kernels use s = f16(d * sum q),
 * computed from the unrounded d, where the exact product uses f16(d) * sum q: two f16
 * roundings, each <= 2^-11 relative (with margin: 2^-9) or 2^-25 absolute when subnormal
 * (times |sum q| <= 32 * 127 for the one in d). */
static inline double q8_1_min_term_bound(slm_type t, const void *w, const void *qy, int64_t n) {
    if (t != SLM_TYPE_Q4_1 && t != SLM_TYPE_Q5_1) return 0.0;
    const slm_block_q8_1 *y = qy;
    double s = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const uint16_t m = t == SLM_TYPE_Q4_1 ? ((const slm_block_q4_1 *)w)[b].m : ((const slm_block_q5_1 *)w)[b].m;
        s += fabs((double)slm_f16_to_f32(m)) * (fabs((double)slm_f16_to_f32(y[b].s)) * 0x1p-9 + (32 * 127 + 1) * 0x1p-25);
    }
    return s;
}

/* The min part of a weight row (what it dequantizes to with every quant set to 0) for the
 * types with a subtracted min (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K): those kernels add a scale
 * term and a min term that may nearly cancel, so float rounding scales with both terms.
 * Writes n floats to out; returns 0 for the other types (out untouched). */
static inline int weight_min_part(slm_type t, const void *w, int64_t n, float *out) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t qoff, qlen, bytes;
    switch (t) {
    case SLM_TYPE_Q4_1: qoff = offsetof(slm_block_q4_1, qs); qlen = sizeof(((slm_block_q4_1 *)0)->qs); break;
    case SLM_TYPE_Q5_1: qoff = offsetof(slm_block_q5_1, qh); qlen = 4 + sizeof(((slm_block_q5_1 *)0)->qs); break;
    case SLM_TYPE_Q2_K: qoff = offsetof(slm_block_q2_k, qs); qlen = sizeof(((slm_block_q2_k *)0)->qs); break;
    case SLM_TYPE_Q4_K: qoff = offsetof(slm_block_q4_k, qs); qlen = sizeof(((slm_block_q4_k *)0)->qs); break;
    case SLM_TYPE_Q5_K: qoff = offsetof(slm_block_q5_k, qh); qlen = sizeof(((slm_block_q5_k *)0)->qh) + sizeof(((slm_block_q5_k *)0)->qs); break;
    default: return 0;
    }
    assert_true(slm_type_row_bytes(t, n, &bytes));
    uint8_t *z = malloc(bytes);
    assert_non_null(z);
    memcpy(z, w, bytes);
    for (size_t b = 0; b < bytes / tr->type_size; b++) memset(z + b * tr->type_size + qoff, 0, qlen);
    tr->to_float(z, out, n);
    free(z);
    return 1;
}

/* Magnitude the float rounding of a dot product scales with: sum (|x_i| + 2 |min_i|) |y_i|
 * over the dequantized rows (|scale term| <= |x| + |min term|, plus the min term itself). */
static inline double dot_magnitude(slm_type t, const void *w, const void *qy, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    const slm_type_traits *ytr = slm_type_traits_of(tr->vec_dot_type);
    float *xd = malloc((size_t)n * sizeof(float)), *yd = malloc((size_t)n * sizeof(float)),
          *md = calloc((size_t)n, sizeof(float));
    assert_true(xd && yd && md);
    tr->to_float(w, xd, n);
    ytr->to_float(qy, yd, n);
    weight_min_part(t, w, n, md);
    double m = 0;
    for (int64_t i = 0; i < n; i++) m += (fabs((double)xd[i]) + 2 * fabs((double)md[i])) * fabs((double)yd[i]);
    free(xd), free(yd), free(md);
    return m;
}

/* Bound on |vec_dot(x, y) - sum x_i y_i| in float64 over the dequantized x and y.
 * Integer sums are exact; what rounds is the float side: at most one float term per 32
 * elements (blocks, K sub-block lanes, or per-product float rounding before a double sum
 * for F32/F16/BF16), each added to a float sum (<= 2^-24 relative of the running |sum| per
 * addition) after <= 3 float products; so the error is at most
 * (n/32 + 4) * 2^-24 * dot_magnitude, plus the Q8_1 min term (see q8_1_min_term_bound). */
static inline double dot_kernel_tol(slm_type t, const void *w, const void *qy, int64_t n) {
    return ((double)n / 32 + 4) * 0x1p-24 * dot_magnitude(t, w, qy, n) + q8_1_min_term_bound(t, w, qy, n);
}

/* ---- reference tensors ------------------------------------------------------------------- */

/* Opens shared/models/tiny/<model> and finds <tensor>. On success *g (close with
 * slm_gguf_close) owns the mapping and *t points into it. Returns 0, or -1 with a message
 * (the caller skips or fails). */
static inline int tu_load_tensor(const char *model, const char *tensor, slm_gguf **g, const slm_gguf_tensor **t) {
    char path[4096], rel[1024], err[SLM_ERR_LEN];
    *g = NULL;
    snprintf(rel, sizeof rel, "models/tiny/%s", model);
    if (!tu_shared_path(path, sizeof path, rel)) return -1;
    if (slm_gguf_open(path, NULL, g, err) != SLM_OK) {
        fprintf(stderr, "%s: %s\n", model, err);
        return -1;
    }
    *t = slm_gguf_find_tensor(*g, tensor);
    if (!*t) {
        fprintf(stderr, "%s: no tensor %s\n", model, tensor);
        slm_gguf_close(*g);
        *g = NULL;
        return -1;
    }
    return 0;
}

/* rows x cols of type t, quantized from random activations (rng_act) with the type's own
 * quantizer; *row_bytes set. malloc'd, the caller frees. */
static inline uint8_t *random_rows(slm_type t, int64_t rows, int64_t cols, size_t *row_bytes) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    assert_true(slm_type_row_bytes(t, cols, row_bytes));
    uint8_t *buf = malloc(*row_bytes * (size_t)rows);
    float *x = malloc((size_t)cols * sizeof(float));
    assert_non_null(buf);
    assert_non_null(x);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) x[i] = rng_act();
        tr->from_float(x, buf + (size_t)r * *row_bytes, cols);
    }
    free(x);
    return buf;
}

#endif
