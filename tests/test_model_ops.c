/* tests/test_model_ops.c: forward-pass operations (model/ops.c) and the thread pool. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "core/core.h"
#include "model/ops.h"
#include "pool/pool.h"

/* Float tolerance for quantities computed in two different but exact-enough ways. */
#define OPS_TOL 1e-6

static void test_rmsnorm(void **state) {
    (void)state;
    float x[8] = {1, -2, 3, -4, 5, -6, 7, -8}, w[8] = {1, 2, 1, 2, 1, 2, 1, 2}, y[8];
    double ss = 0;
    for (int i = 0; i < 8; i++) ss += x[i] * x[i];
    const double inv = 1.0 / sqrt(ss / 8 + 1e-5);
    slm_ops_rmsnorm(y, x, w, 8, 1e-5f);
    for (int i = 0; i < 8; i++) assert_true(fabs(y[i] - x[i] * inv * w[i]) < OPS_TOL * 10);
    slm_ops_rmsnorm(x, x, NULL, 8, 1e-5f); /* in place, no weight */
    for (int i = 0; i < 8; i++) assert_true(fabs(x[i] - y[i] / w[i]) < OPS_TOL * 10);
}

static void test_rope(void **state) {
    (void)state;
    float cs[8], x[8], y[8];
    /* position 0 is the identity */
    slm_ops_rope_cache(cs, 8, 0, 10000.0f, 1.0f, NULL);
    for (int i = 0; i < 8; i++) x[i] = y[i] = (float)(i + 1);
    slm_ops_rope(x, 8, cs, false);
    assert_memory_equal(x, y, sizeof x);
    /* pair 0 rotates by pos radians (theta_0 = pos); NORMAL pairs (0,1), NEOX pairs (0,4) */
    slm_ops_rope_cache(cs, 8, 3, 10000.0f, 1.0f, NULL);
    assert_true(fabs(cs[0] - cos(3.0)) < OPS_TOL && fabs(cs[1] - sin(3.0)) < OPS_TOL);
    assert_true(fabs(cs[2] - cos(3.0 * pow(10000.0, -2.0 / 8))) < OPS_TOL);
    slm_ops_rope(x, 8, cs, false);
    assert_true(fabs(x[0] - (1 * cos(3.0) - 2 * sin(3.0))) < 1e-5);
    assert_true(fabs(x[1] - (1 * sin(3.0) + 2 * cos(3.0))) < 1e-5);
    memcpy(x, y, sizeof x);
    slm_ops_rope(x, 8, cs, true);
    assert_true(fabs(x[0] - (1 * cos(3.0) - 5 * sin(3.0))) < 1e-5);
    assert_true(fabs(x[4] - (1 * sin(3.0) + 5 * cos(3.0))) < 1e-5);
    /* linear scaling by 2 at position 6 equals position 3; frequency factors divide theta */
    float cs2[8], ff[4] = {2, 2, 2, 2};
    slm_ops_rope_cache(cs2, 8, 6, 10000.0f, 0.5f, NULL);
    for (int i = 0; i < 8; i++) assert_true(fabs(cs2[i] - cs[i]) < 1e-5);
    slm_ops_rope_cache(cs2, 8, 6, 10000.0f, 1.0f, ff);
    for (int i = 0; i < 8; i++) assert_true(fabs(cs2[i] - cs[i]) < 1e-5);
}

static void test_softmax_silu(void **state) {
    (void)state;
    float x[4] = {1, 2, 3, -INFINITY};
    slm_ops_softmax(x, 4);
    const double z = exp(1) + exp(2) + exp(3);
    assert_true(fabs(x[0] - exp(1) / z) < OPS_TOL && fabs(x[2] - exp(3) / z) < OPS_TOL);
    assert_true(x[3] == 0.0f);
    float g[2] = {0, 2}, u[2] = {5, 3};
    slm_ops_silu_mul(g, g, u, 2);
    assert_true(g[0] == 0.0f);
    assert_true(fabs(g[1] - 2.0 / (1 + exp(-2.0)) * 3) < 1e-5);
    float y[2] = {1, 2};
    slm_ops_add(y, u, 2);
    assert_true(y[0] == 6 && y[1] == 5);
}

/* AVX2 set vs scalar set (the specification): silu_mul and add bit for bit, rmsnorm within
 * its double sum's reordering, over lengths with and without scalar tails, in place too. */
#define RMSNORM_REL_TOL 1e-6 /* the float results of two double sums that differ in ~1e-16 */

static void test_ops_avx2_vs_scalar(void **state) {
    (void)state;
    const slm_ops_kern *sc = slm_ops_kern_isa(SLM_QUANT_ISA_SCALAR), *av = slm_ops_kern_avx2();
    if (!av || !slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2)) skip();
    assert_ptr_equal(slm_ops_kern_isa(SLM_QUANT_ISA_AVX2), av);
    enum { N = 1000 };
    static float x[N], u[N], w[N], a[N], b[N], w2[N];
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * 40.0f; /* [-20, 20): exp's range and beyond */
        u[i] = (float)(i % 17) - 8.0f;
        w[i] = 1.0f + (float)(i % 5) * 0.25f;
    }
    x[3] = 100.0f, x[4] = -100.0f; /* e^-v overflows / underflows */
    const int64_t lens[] = {1, 7, 8, 13, 576, N};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        memcpy(a, x, sizeof a), memcpy(b, x, sizeof b);
        sc->silu_mul(a, a, u, n), av->silu_mul(b, b, u, n); /* in place */
        assert_memory_equal(a, b, (size_t)n * sizeof(float));
        av->silu_mul(w2, x, u, n); /* out of place: the same bits */
        assert_memory_equal(w2, b, (size_t)n * sizeof(float));
        sc->add(a, u, n), av->add(b, u, n);
        assert_memory_equal(a, b, (size_t)n * sizeof(float));
        for (int wi = 0; wi < 2; wi++) {
            sc->rmsnorm(a, x, wi ? w : NULL, n, 1e-5f);
            memcpy(b, x, sizeof b);
            av->rmsnorm(b, b, wi ? w : NULL, n, 1e-5f); /* in place */
            for (int64_t i = 0; i < n; i++) assert_true(fabsf(a[i] - b[i]) <= RMSNORM_REL_TOL * fabsf(a[i]));
        }
    }
    float g[2] = {100.0f, -100.0f}, one[2] = {1, 1};
    av->silu_mul(g, g, one, 2);
    assert_true(g[0] == 100.0f && g[1] == 0.0f); /* silu(-100) = -100 / inf = -0 */
}

/* ---- thread pool ---- */

typedef struct sum_job {
    const float *x;
    float *out; /* [n] each element written by its one thread */
    int64_t n;
    int calls[SLM_POOL_MAX_THREADS];
} sum_job;

static void sum_run(void *arg, int ith, int nth) {
    sum_job *j = arg;
    int64_t r0, r1;
    slm_pool_range(j->n, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float s = 0;
        for (int64_t k = 0; k <= r; k++) s += j->x[k] * 0.37f;
        j->out[r] = s;
    }
    j->calls[ith]++;
}

static void test_pool_identical(void **state) {
    (void)state;
    enum { N = 1000 };
    static float x[N], ref[N], out[N];
    for (int i = 0; i < N; i++) x[i] = sinf((float)i);
    sum_job j = {.x = x, .out = ref, .n = N};
    slm_pool_run(NULL, sum_run, &j);
    for (int nt = 1; nt <= 5; nt++) {
        slm_pool *p = NULL;
        char err[SLM_ERR_LEN];
        assert_int_equal(slm_pool_create(nt, &p, err), SLM_OK);
        assert_int_equal(slm_pool_n_threads(p), nt);
        for (int rep = 0; rep < 20; rep++) {
            memset(&j, 0, sizeof j);
            j.x = x, j.out = out, j.n = N;
            memset(out, 0, sizeof out);
            slm_pool_run(p, sum_run, &j);
            assert_memory_equal(out, ref, sizeof out);
            for (int t = 0; t < nt; t++) assert_int_equal(j.calls[t], 1);
        }
        slm_pool_destroy(p);
    }
    /* ranges cover [0, n) exactly, for awkward sizes */
    for (int64_t n = 0; n < 20; n++)
        for (int nth = 1; nth < 7; nth++) {
            int64_t next = 0;
            for (int ith = 0; ith < nth; ith++) {
                int64_t a, b;
                slm_pool_range(n, ith, nth, &a, &b);
                assert_true(a == next || a == b);
                if (a < b) next = b;
            }
            assert_int_equal(next, n);
        }
    slm_pool *p = NULL;
    assert_int_equal(slm_pool_create(0, &p, NULL), SLM_ERR_RANGE);
    assert_null(p);
    assert_true(slm_pool_default_threads() >= 1);
    slm_pool_destroy(NULL);
}

static void test_pool_oom(void **state) {
    (void)state;
    for (long n = 1;; n++) {
        slm_pool *p = NULL;
        slm_fault_arm(n);
        slm_status st = slm_pool_create(3, &p, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_pool_destroy(p);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),       cmocka_unit_test(test_rope),
        cmocka_unit_test(test_softmax_silu),  cmocka_unit_test(test_pool_identical),
        cmocka_unit_test(test_pool_oom),      cmocka_unit_test(test_ops_avx2_vs_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
