/*
 * tests/test_quant_dot.c: half-precision conversions (exhaustive), activation quantizers
 * (round-trip error bounds) and the scalar dot products of every weight type with its
 * vec_dot_type (against float64 dot products, with per-type bounds derived below).
 */
#include "testutil.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant_testutil.h"

/* ---- F16 / BF16 -------------------------------------------------------------------------- */

/* Independent binary16 decoder (ldexp), to check slm_f16_to_f32's value for every input. */
static float f16_decode_ref(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0) v = ldexpf((float)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexpf((float)(1024 + m), e - 25);
    return s ? -v : v;
}

static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = slm_f16_to_f32((uint16_t)h);
        const float r = f16_decode_ref((uint16_t)h);
        const int is_nan = ((h >> 10) & 31) == 31 && (h & 1023);
        if (is_nan) {
            assert_true(isnan(f));
            /* payload kept, quiet bit set */
            assert_int_equal(f2u(f), ((h & 0x8000u) << 16) | 0x7F800000u | ((h & 1023u) << 13) | 0x400000u);
            assert_int_equal(slm_f32_to_f16(f), (h & 0x8000u) | 0x7E00u);
        } else {
            assert_int_equal(f2u(f), f2u(r)); /* exact, signed zeros included */
            assert_int_equal(slm_f32_to_f16(f), h); /* round trip */
        }
    }
}

/* float -> f16 rounding over a sweep of float bit patterns, against the compiler's _Float16
 * conversion (IEEE round to nearest even) where the compiler has it. */
static void test_f16_rounding_sweep(void **state) {
    (void)state;
#if defined(__FLT16_MAX__)
    for (uint64_t u = 0; u < (1ull << 32); u += 1021) {
        const float f = u2f((uint32_t)u);
        if (isnan(f)) continue;
        const _Float16 h = (_Float16)f;
        uint16_t hb;
        memcpy(&hb, &h, 2);
        if (slm_f32_to_f16(f) != hb) {
            fprintf(stderr, "f32 0x%08x: got 0x%04x, want 0x%04x\n", (uint32_t)u, slm_f32_to_f16(f), hb);
            fail();
        }
    }
    /* ties: exactly halfway between two f16 values, in the normal and subnormal ranges */
    assert_int_equal(slm_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);           /* tie to even (down) */
    assert_int_equal(slm_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);       /* tie to even (up) */
    assert_int_equal(slm_f32_to_f16(0x1p-25f), 0x0000);                  /* half the smallest subnormal */
    assert_int_equal(slm_f32_to_f16(3 * 0x1p-25f), 0x0002);
    assert_int_equal(slm_f32_to_f16(65520.0f), 0x7C00);                  /* rounds to Inf */
    assert_int_equal(slm_f32_to_f16(65519.0f), 0x7BFF);
#else
    skip();
#endif
}

static void test_bf16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = slm_bf16_to_f32((uint16_t)h);
        assert_int_equal(f2u(f), h << 16);
        const int is_nan = ((h >> 7) & 255) == 255 && (h & 127);
        assert_int_equal(slm_f32_to_bf16(f), is_nan ? (h | 64) : h);
    }
    /* rounding: ties to even, carry into the exponent, overflow to Inf, subnormals kept */
    assert_int_equal(slm_f32_to_bf16(u2f(0x3F808000u)), 0x3F80);
    assert_int_equal(slm_f32_to_bf16(u2f(0x3F818000u)), 0x3F82);
    assert_int_equal(slm_f32_to_bf16(u2f(0x3F808001u)), 0x3F81);
    assert_int_equal(slm_f32_to_bf16(u2f(0x3FFFFFFFu)), 0x4000);
    assert_int_equal(slm_f32_to_bf16(u2f(0x7F7FFFFFu)), 0x7F80);
    assert_int_equal(slm_f32_to_bf16(u2f(0x00018000u)), 0x0002);
    assert_int_equal(slm_f32_to_bf16(u2f(0xFFC00001u)), 0xFFC0);
    assert_int_equal(slm_f32_to_bf16(u2f(0x7F800001u)), 0x7FC0); /* signalling NaN made quiet */
}

/* ---- activation quantizers: round trip ------------------------------------------------------ */

static void check_roundtrip(slm_type t, const float *x, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t bytes;
    assert_true(slm_type_row_bytes(t, n, &bytes));
    void *q = malloc(bytes);
    float *back = malloc((size_t)n * sizeof(float));
    assert_non_null(q);
    assert_non_null(back);
    tr->from_float(x, q, n);
    tr->to_float(q, back, n);
    const int bs = (int)(tr->block_size > 1 ? tr->block_size : 1);
    for (int64_t i = 0; i < n; i++) {
        const float amax = block_amax(x + (i / bs) * bs, bs);
        const double err = fabs((double)x[i] - (double)back[i]);
        if (err > act_elem_bound(t, x[i], amax)) {
            fprintf(stderr, "%s: element %lld: x %.9g back %.9g err %.3g > bound %.3g\n", tr->name, (long long)i,
                    x[i], back[i], err, act_elem_bound(t, x[i], amax));
            fail();
        }
    }
    free(q);
    free(back);
}

static void test_activation_roundtrip(void **state) {
    (void)state;
    static const slm_type types[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q8_K, SLM_TYPE_F16, SLM_TYPE_BF16, SLM_TYPE_F32};
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float));
    assert_non_null(x);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (int i = 0; i < N; i++) x[i] = rng_act();
        for (int i = 512; i < 768; i++) x[i] = 0.0f; /* an all-zero block of every size */
        for (int i = 1024; i < 1280; i++) x[i] = 1e-3f * rng_act(); /* a small-scale block */
        check_roundtrip(types[k], x, N);
    }
    free(x);
}

static void test_q8_k_details(void **state) {
    (void)state;
    float x[2 * SLM_QK_K];
    slm_block_q8_k y[2];
    for (int i = 0; i < SLM_QK_K; i++) x[i] = rng_act();
    x[17] = 50.0f; /* the largest magnitude maps to exactly -127 */
    for (int i = SLM_QK_K; i < 2 * SLM_QK_K; i++) x[i] = 0.0f;
    memset(y, 0x55, sizeof y);
    slm_quant_q8_k_from_float(x, y, 2 * SLM_QK_K);
    assert_int_equal(y[0].qs[17], -127);
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += y[0].qs[16 * j + l];
        assert_int_equal(y[0].bsums[j], s);
        assert_int_equal(y[1].bsums[j], 0);
    }
    assert_true(y[1].d == 0.0f);
    /* Q8_0 of an all-zero block: d = 0, q = 0 */
    slm_block_q8_0 b;
    memset(&b, 0x55, sizeof b);
    slm_quant_q8_0_from_float(x + SLM_QK_K, &b, 32);
    assert_int_equal(b.d, 0);
    for (int j = 0; j < 32; j++) assert_int_equal(b.qs[j], 0);
    /* Q8_1's s is f16(d * sum(q)) */
    slm_block_q8_1 c;
    slm_quant_q8_1_from_float(x, &c, 32);
    int s = 0;
    for (int j = 0; j < 32; j++) s += c.qs[j];
    const float d = block_amax(x, 32) / 127;
    assert_int_equal(c.s, slm_f32_to_f16((float)s * d));
}

/* ---- dot products ----------------------------------------------------------------------------- */

static void check_dot(slm_type t, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    const slm_type_traits *ytr = slm_type_traits_of(tr->vec_dot_type);
    assert_non_null(tr->vec_dot);
    assert_non_null(ytr->from_float);
    size_t ybytes;
    assert_true(slm_type_row_bytes(tr->vec_dot_type, n, &ybytes));
    void *w = rand_weights(t, n);
    float *y = malloc((size_t)n * sizeof(float)), *xd = malloc((size_t)n * sizeof(float)),
          *yd = malloc((size_t)n * sizeof(float));
    void *qy = malloc(ybytes);
    assert_true(y && xd && yd && qy);
    for (int64_t i = 0; i < n; i++) y[i] = rng_act();
    ytr->from_float(y, qy, n);
    tr->to_float(w, xd, n);
    ytr->to_float(qy, yd, n);

    const float got = tr->vec_dot(n, w, qy);
    double exact_q = 0, exact = 0, quant_err = 0;
    const int ybs = (int)ytr->block_size;
    for (int64_t i = 0; i < n; i++) {
        exact_q += (double)xd[i] * (double)yd[i];
        exact += (double)xd[i] * (double)y[i];
        quant_err += fabs((double)xd[i]) * act_elem_bound(tr->vec_dot_type, y[i], block_amax(y + (i / ybs) * ybs, ybs));
    }
    const double tol_kernel = dot_kernel_tol(t, w, qy, n);
    /* Against the unquantized activations add the activation quantization error. */
    const double tol_total = tol_kernel + quant_err;
    if (fabs((double)got - exact_q) > tol_kernel || fabs((double)got - exact) > tol_total) {
        fprintf(stderr, "%s n=%lld: got %.9g, exact(dequant) %.9g (tol %.3g), exact(float y) %.9g (tol %.3g)\n",
                tr->name, (long long)n, got, exact_q, tol_kernel, exact, tol_total);
        fail();
    }
    free(w);
    free(y);
    free(xd);
    free(yd);
    free(qy);
}

static void test_vec_dot_all_types(void **state) {
    (void)state;
    static const slm_type types[] = {
        SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0,
        SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K,
        SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
    };
    static const int64_t lens[] = {32, 96, 256, 768, 4096};
    int checked = 0;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const slm_type_traits *tr = slm_type_traits_of(types[k]);
        const int64_t bs = slm_type_traits_of(tr->vec_dot_type)->block_size;
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            if (lens[l] % tr->block_size || lens[l] % bs) continue;
            for (int rep = 0; rep < 4; rep++) check_dot(types[k], lens[l]);
            checked++;
        }
    }
    assert_true(checked >= 17 * 3);
}

/* Every type with to_float has vec_dot, and its vec_dot_type can be produced. */
static void test_table_complete(void **state) {
    (void)state;
    for (int t = 0; t < SLM_TYPE_COUNT; t++) {
        const slm_type_traits *tr = slm_type_traits_of((slm_type)t);
        if (!tr || !tr->to_float) continue;
        assert_non_null(tr->vec_dot);
        const slm_type_traits *ytr = slm_type_traits_of(tr->vec_dot_type);
        assert_non_null(ytr);
        assert_non_null(ytr->from_float);
        assert_non_null(ytr->to_float);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_f16_rounding_sweep),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_activation_roundtrip),
        cmocka_unit_test(test_q8_k_details),
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_vec_dot_all_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
