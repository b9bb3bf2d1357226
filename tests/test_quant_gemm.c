/*
 * tests/test_quant_gemm.c: the tiled matrix-matrix kernels (slm_gemm_fn) and the axpy
 * kernels of every runnable ISA set.
 *  - the AVX2 set has a gemm for every quantized weight type;
 *  - gemm equals the same set's vec_dot bit for bit for every (row, activation row), over
 *    row ranges with odd ends and activation counts that leave partial tiles and span
 *    several activation chunks; outputs outside the range are untouched;
 *  - slm_quant_matmul_rows (which picks the gemm) equals the vec_dot loop bit for bit;
 *  - axpy of every set equals the scalar one bit for bit (F32, F16), tails included;
 *  - the AVX2 Q8_0, Q4_0, Q5_0, IQ4_NL, Q4_1 and Q5_1 kernels (vec_dot, and so their tiles) equal the
 *    scalar ones bit for bit (they keep the scalar float order; kernels_avx2.c).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant_testutil.h"

#define ROWS 9     /* odd: a last row outside the 2-row tiles */
#define COLS 256   /* 8 blocks of 32, one super-block of 256 */
#define N_VEC 300  /* partial tiles, and more than one activation chunk for long rows */
#define WIDE_COLS 4096 /* 8 KiB+ activation rows: chunks of a few rows */

static void check_gemm(const slm_quant_kernel_set *ks, slm_type t, int64_t cols, int64_t n_vec) {
    const slm_type vt = slm_type_traits_of(t)->vec_dot_type;
    size_t wrb, xrb;
    uint8_t *w = random_rows(t, ROWS, cols, &wrb);
    uint8_t *x = random_rows(vt, n_vec, cols, &xrb);
    const size_t ys = ROWS + 3; /* output stride wider than the rows */
    float *y = malloc(ys * (size_t)n_vec * sizeof(float));
    assert_non_null(y);
    const int64_t ranges[][2] = {{0, ROWS}, {1, ROWS}, {3, 6}, {4, 5}, {2, 2}};
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        const int64_t r0 = ranges[k][0], r1 = ranges[k][1];
        for (size_t i = 0; i < ys * (size_t)n_vec; i++) y[i] = -12345.0f;
        ks->gemm[t](cols, w, wrb, r0, r1, x, xrb, n_vec, y, ys);
        for (int64_t v = 0; v < n_vec; v++) {
            for (int64_t r = 0; r < (int64_t)ys; r++) {
                const float got = y[(size_t)v * ys + (size_t)r];
                if (r < r0 || r >= r1) {
                    assert_true(got == -12345.0f);
                    continue;
                }
                const float want = ks->vec_dot[t](cols, w + (size_t)r * wrb, x + (size_t)v * xrb);
                if (f2u(got) != f2u(want))
                    fail_msg("%s %s cols %lld row %lld vec %lld: gemm %.9g vec_dot %.9g", ks->name, slm_type_name(t),
                             (long long)cols, (long long)r, (long long)v, got, want);
            }
        }
    }
    free(w), free(x), free(y);
}

static void test_gemm_equals_vec_dot(void **state) {
    (void)state;
    int checked = 0;
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *ks = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!ks) continue;
        for (int t = 0; t < SLM_TYPE_COUNT; t++) {
            if (!ks->gemm[t]) continue;
            check_gemm(ks, (slm_type)t, COLS, N_VEC);
            check_gemm(ks, (slm_type)t, WIDE_COLS, 13);
            for (int64_t n = 1; n <= 9; n++) check_gemm(ks, (slm_type)t, COLS, n);
            checked++;
        }
    }
    printf("gemm kernels checked: %d\n", checked);
    /* the AVX2 set tiles every quantized weight type (a type left to its vec_dot loop runs
     * 3-5x slower in decode and prompts alike) */
    const slm_quant_kernel_set *avx2 = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
    const slm_type quantized[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
                                  SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K,
                                  SLM_TYPE_Q6_K, SLM_TYPE_IQ4_XS};
    for (size_t k = 0; avx2 && k < sizeof quantized / sizeof quantized[0]; k++)
        if (!avx2->gemm[quantized[k]]) fail_msg("avx2 has no gemm for %s", slm_type_name(quantized[k]));
}

/* slm_quant_matmul_rows (gemm when the set has one) against a plain vec_dot loop. */
static void test_matmul_rows_bitwise(void **state) {
    (void)state;
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const slm_type types[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q4_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const slm_type t = types[k], vt = slm_type_traits_of(t)->vec_dot_type;
        const int64_t cols = 256, n_vec = 11;
        size_t wrb, xrb;
        uint8_t *w = random_rows(t, ROWS, cols, &wrb);
        uint8_t *x = random_rows(vt, n_vec, cols, &xrb);
        float y[ROWS * 11];
        slm_quant_matmul_rows(t, w, cols, x, xrb, n_vec, 0, ROWS, y, ROWS);
        for (int64_t v = 0; v < n_vec; v++)
            for (int64_t r = 0; r < ROWS; r++)
                assert_true(f2u(y[v * ROWS + r]) == f2u(ks->vec_dot[t](cols, w + (size_t)r * wrb, x + (size_t)v * xrb)));
        free(w), free(x);
    }
}

static void test_axpy_equals_scalar(void **state) {
    (void)state;
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    assert_non_null(sc);
    enum { N = 67 };
    float xf[N];
    uint16_t xh[N];
    for (int i = 0; i < N; i++) {
        xf[i] = rng_act();
        xh[i] = slm_f32_to_f16(rng_act());
    }
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16};
    const void *xs[] = {xf, xh};
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *ks = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!ks) continue;
        for (size_t k = 0; k < 2; k++) {
            assert_non_null(ks->axpy[types[k]]);
            for (int n = 0; n <= N; n += 11) {
                float want[N], got[N];
                for (int i = 0; i < N; i++) want[i] = got[i] = rng_act();
                sc->axpy[types[k]](n, 0.37f, xs[k], want);
                ks->axpy[types[k]](n, 0.37f, xs[k], got);
                assert_memory_equal(want, got, sizeof want);
            }
        }
    }
}

/* AVX2 vec_dot == scalar vec_dot, bit for bit, for the types whose AVX2 kernels keep the
 * scalar float order: random rows of many lengths up to WIDE_COLS. */
static void test_avx2_exact_types(void **state) {
    (void)state;
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    const slm_quant_kernel_set *av = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
    if (!av) {
        printf("avx2 not runnable here: skipped\n");
        return;
    }
    const slm_type types[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q4_0, SLM_TYPE_Q5_0, SLM_TYPE_IQ4_NL, SLM_TYPE_Q4_1, SLM_TYPE_Q5_1};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const slm_type t = types[k], vt = slm_type_traits_of(t)->vec_dot_type;
        enum { N_ROWS = 64 };
        size_t wrb, xrb;
        uint8_t *w = random_rows(t, N_ROWS, WIDE_COLS, &wrb);
        uint8_t *x = random_rows(vt, N_ROWS, WIDE_COLS, &xrb);
        /* odd rows: the activation is the weight row itself, so block sums are large (up to
         * 15 bits) and the order of the float multiplications shows in the last bit */
        float *f = malloc(WIDE_COLS * sizeof(float));
        assert_non_null(f);
        for (int r = 1; r < N_ROWS; r += 2) {
            slm_type_traits_of(t)->to_float(w + (size_t)r * wrb, f, WIDE_COLS);
            slm_type_traits_of(vt)->from_float(f, x + (size_t)r * xrb, WIDE_COLS);
        }
        free(f);
        for (int r = 0; r < N_ROWS; r++) {
            /* the first half one or two blocks: a sum of many terms hides a last-bit
             * difference of one term, a single term does not */
            const int64_t n = r < N_ROWS / 2 ? 32 * (1 + r % 2) : 32 * (1 + (r * 37) % (WIDE_COLS / 32));
            const float want = sc->vec_dot[t](n, w + (size_t)r * wrb, x + (size_t)r * xrb);
            const float got = av->vec_dot[t](n, w + (size_t)r * wrb, x + (size_t)r * xrb);
            if (f2u(got) != f2u(want))
                fail_msg("avx2 %s n %lld: %.9g, scalar %.9g", slm_type_name(t), (long long)n, got, want);
        }
        free(w), free(x);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_equals_vec_dot),
        cmocka_unit_test(test_matmul_rows_bitwise),
        cmocka_unit_test(test_axpy_equals_scalar),
        cmocka_unit_test(test_avx2_exact_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
