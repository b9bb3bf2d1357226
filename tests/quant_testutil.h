/*
 * tests/quant_testutil.h: helpers shared by the quant tests (header-only, static inline):
 * a deterministic generator, random weight rows with sane scales, and the error bounds
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

/* Bound on |vec_dot(x, y) - sum x_i y_i| in float64 over the dequantized x and y.
 * Integer sums are exact; what rounds is the float side: at most one float term per 32
 * elements (blocks, K sub-block lanes, or per-product float rounding before a double sum
 * for F32/F16/BF16), each added to a float sum (<= 2^-24 relative of the running |sum| per
 * addition) after <= 3 float products; so the error is at most
 * (n/32 + 4) * 2^-24 * sum|x_i y_i|, plus the Q8_1 min term (see q8_1_min_term_bound). */
static inline double dot_kernel_tol(slm_type t, const void *w, const void *qy, int64_t n, double abs_sum) {
    return ((double)n / 32 + 4) * 0x1p-24 * abs_sum + q8_1_min_term_bound(t, w, qy, n);
}

/* ---- TEMPORARY GGUF locator (test only) ------------------------------------------------------
 * Walks a GGUF v2/v3 header just far enough to find one tensor's type and data. To be
 * replaced by slm_gguf_open + slm_gguf_find_tensor once the GGUF reader is in main. Bounds
 * are checked so a bad file fails the test instead of crashing it. */
typedef struct { const uint8_t *p, *end; int ok; } tu_cur;

static inline uint64_t cur_u(tu_cur *c, size_t n) {
    uint64_t v = 0;
    if (!c->ok || (size_t)(c->end - c->p) < n) { c->ok = 0; return 0; }
    for (size_t i = 0; i < n; i++) v |= (uint64_t)c->p[i] << (8 * i);
    c->p += n;
    return v;
}
static inline void cur_skip(tu_cur *c, uint64_t n) {
    if (!c->ok || (uint64_t)(c->end - c->p) < n) { c->ok = 0; return; }
    c->p += n;
}
static inline void cur_skip_value(tu_cur *c, uint32_t t, uint64_t *align, int is_align) {
    static const uint8_t sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) { cur_skip(c, cur_u(c, 8)); return; }
    if (t == 9) {
        uint32_t et = (uint32_t)cur_u(c, 4);
        uint64_t n = cur_u(c, 8);
        for (uint64_t i = 0; i < n && c->ok; i++) cur_skip_value(c, et, NULL, 0);
        return;
    }
    if (t > 12) { c->ok = 0; return; }
    uint64_t v = cur_u(c, sizes[t]);
    if (is_align && align) *align = v;
}
/* Finds tensor `name`; sets *type, *data. Returns 0 on success. */
static inline int tmp_gguf_locate(const uint8_t *buf, size_t size, const char *name, uint32_t *type,
                           const uint8_t **data) {
    tu_cur c = {buf, buf + size, 1};
    if (cur_u(&c, 4) != 0x46554747u) return -1; /* "GGUF" */
    cur_u(&c, 4);
    uint64_t n_tensors = cur_u(&c, 8), n_kv = cur_u(&c, 8), align = 32, found_off = UINT64_MAX;
    for (uint64_t i = 0; i < n_kv && c.ok; i++) {
        uint64_t klen = cur_u(&c, 8);
        const uint8_t *key = c.p;
        cur_skip(&c, klen);
        uint32_t t = (uint32_t)cur_u(&c, 4);
        int is_align = c.ok && klen == 17 && !memcmp(key, "general.alignment", 17);
        cur_skip_value(&c, t, &align, is_align);
    }
    for (uint64_t i = 0; i < n_tensors && c.ok; i++) {
        uint64_t nlen = cur_u(&c, 8);
        const uint8_t *nm = c.p;
        cur_skip(&c, nlen);
        uint32_t nd = (uint32_t)cur_u(&c, 4);
        cur_skip(&c, 8 * (uint64_t)nd);
        uint32_t t = (uint32_t)cur_u(&c, 4);
        uint64_t off = cur_u(&c, 8);
        if (c.ok && nlen == strlen(name) && !memcmp(nm, name, nlen)) { *type = t; found_off = off; }
    }
    if (!c.ok || found_off == UINT64_MAX || align == 0) return -1;
    uint64_t start = (uint64_t)(c.p - buf);
    start = (start + align - 1) / align * align;
    if (start + found_off > size) return -1;
    *data = buf + start + found_off;
    return 0;
}
/* ---- end of TEMPORARY GGUF locator ------------------------------------------------------ */

/* Reads shared/models/tiny/<model> and finds <tensor>: *buf (free()) holds the file, *data
 * points into it. Returns 0, or -1 (message printed; the caller skips or fails). */
static inline int tu_load_tensor(const char *model, const char *tensor, uint8_t **buf, size_t *size,
                                 uint32_t *type, const uint8_t **data) {
    char path[4096], rel[1024];
    snprintf(rel, sizeof rel, "models/tiny/%s", model);
    if (!tu_shared_path(path, sizeof path, rel)) return -1;
    *buf = (uint8_t *)tu_read_file(path, size);
    if (!*buf || tmp_gguf_locate(*buf, *size, tensor, type, data) != 0) {
        fprintf(stderr, "%s: cannot read tensor %s\n", model, tensor);
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

#endif
