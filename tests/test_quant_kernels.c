/*
 * tests/test_quant_kernels.c: the kernel dispatch table and the matrix-vector products.
 *  - selection: SLMESH_KERNELS=scalar (set before first use) selects the scalar set, whose
 *    entries are the type table's scalar kernels;
 *  - every runnable ISA set against the scalar one: to_float bit-identical, from_float
 *    identical blocks, vec_dot within the named tolerance VEC_DOT_ISA_REL_TOL;
 *  - slm_quant_matvec against a float64 reference, row ranges, and the batched variant;
 *  - the activation quantizers (act) of every set give the scalar set's bytes, and the
 *    scalar Q8_0 one rounds as specified (127 / amax, half to even).
 */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant_testutil.h"

/* SIMD dot products add the same exact integer block sums in a different order and may use
 * FMA, so they differ from scalar only by float rounding of the per-block terms: bounded
 * by dot_kernel_tol for each of the two, hence twice that bound. Named here so a SIMD
 * change that loosens it shows up in review. */
#define VEC_DOT_ISA_TOL_FACTOR 2.0

static const slm_type all_types[] = {
    SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0,
    SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K,
    SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* SLMESH_KERNELS, in child processes (the choice is made once per process). Must run
 * before anything in this process uses the table. */
static void test_selection_env(void **state) {
    (void)state;
    static const char *const values[] = {"scalar", "avx2", "avx512", "bogus", ""};
    int got[5];
    for (int v = 0; v < 5; v++) {
        const pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("SLMESH_KERNELS", values[v], 1);
            _exit((int)slm_quant_kernels()->isa);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        got[v] = WEXITSTATUS(status);
    }
    /* expected: the best runnable set at or below the named one; auto: the best runnable */
    int best_le[SLM_QUANT_ISA_COUNT];
    for (int i = 0; i < SLM_QUANT_ISA_COUNT; i++) {
        best_le[i] = 0;
        for (int j = 0; j <= i; j++) {
            if (slm_quant_kernels_isa((slm_quant_isa)j)) best_le[i] = j;
        }
    }
    assert_int_equal(got[0], SLM_QUANT_ISA_SCALAR);
    assert_int_equal(got[1], best_le[SLM_QUANT_ISA_AVX2]);
    assert_int_equal(got[2], best_le[SLM_QUANT_ISA_AVX512]);
    assert_int_equal(got[3], best_le[SLM_QUANT_ISA_AVX512]);
    assert_int_equal(got[4], best_le[SLM_QUANT_ISA_AVX512]);
    fprintf(stderr, "SLMESH_KERNELS=scalar/avx2/avx512/bogus/empty -> %s/%s/%s/%s/%s\n", slm_quant_isa_name(got[0]),
            slm_quant_isa_name(got[1]), slm_quant_isa_name(got[2]), slm_quant_isa_name(got[3]), slm_quant_isa_name(got[4]));
}

static void test_selection(void **state) {
    (void)state;
    const slm_quant_kernel_set *k = slm_quant_kernels();
    assert_non_null(k);
    assert_int_equal(k->isa, SLM_QUANT_ISA_SCALAR); /* main() set SLMESH_KERNELS=scalar */
    assert_string_equal(k->name, "scalar");
    assert_ptr_equal(slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR), k);
    for (int t = 0; t < SLM_TYPE_COUNT; t++) {
        const slm_type_traits *tr = slm_type_traits_of((slm_type)t);
        if (!tr) continue;
        assert_ptr_equal(k->to_float[t], tr->to_float);
        assert_ptr_equal(k->from_float[t], tr->from_float);
        assert_ptr_equal(k->vec_dot[t], tr->vec_dot);
    }
    assert_string_equal(slm_quant_isa_name(SLM_QUANT_ISA_AVX2), "avx2");
    assert_string_equal(slm_quant_isa_name(SLM_QUANT_ISA_COUNT), "unknown");
    assert_null(slm_quant_kernels_isa(SLM_QUANT_ISA_COUNT));
    for (int i = 0; i < SLM_QUANT_ISA_COUNT; i++) {
        const slm_quant_kernel_set *s = slm_quant_kernels_isa((slm_quant_isa)i);
        fprintf(stderr, "kernel set %-6s: %s\n", slm_quant_isa_name((slm_quant_isa)i), s ? "runnable" : "not available");
    }
}

/* Every runnable ISA against scalar, for every type and several lengths. */
static void test_isa_vs_scalar(void **state) {
    (void)state;
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    static const int64_t lens[] = {7, 37, 100, 32, 256, 288, 4096, 4352}; /* tails for the plain types */
    for (int isa = 1; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            const slm_type t = all_types[ti];
            const slm_type_traits *tr = slm_type_traits_of(t);
            const slm_type vt = tr->vec_dot_type;
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t n = lens[li];
                if (n % tr->block_size || n % slm_type_traits_of(vt)->block_size) continue;
                size_t wb = 0, yb = 0;
                assert_true(slm_type_row_bytes(t, n, &wb) && slm_type_row_bytes(vt, n, &yb));
                void *w = rand_weights(t, n);
                float *y = malloc((size_t)n * sizeof(float)), *a = malloc((size_t)n * sizeof(float)),
                      *b = malloc((size_t)n * sizeof(float));
                void *q1 = malloc(yb), *q2 = malloc(yb);
                assert_true(y && a && b && q1 && q2);
                for (int64_t i = 0; i < n; i++) y[i] = rng_act();
                sc->to_float[t](w, a, n);
                k->to_float[t](w, b, n);
                if (memcmp(a, b, (size_t)n * sizeof(float)) != 0) {
                    fprintf(stderr, "%s %s to_float differs from scalar (n=%lld)\n", k->name, tr->name, (long long)n);
                    fail();
                }
                sc->from_float[vt](y, q1, n);
                k->from_float[vt](y, q2, n);
                if (memcmp(q1, q2, yb) != 0) {
                    fprintf(stderr, "%s from_float %s differs from scalar\n", k->name, slm_type_name(vt));
                    fail();
                }
                const float ds = sc->vec_dot[t](n, w, q1), dk = k->vec_dot[t](n, w, q1);
                const double tol = VEC_DOT_ISA_TOL_FACTOR * dot_kernel_tol(t, w, q1, n);
                /* kernels built from the same loop with an exact integer primitive swapped
                 * (AVX-512 VNNI for AVX2's maddubs + madd) must agree bit for bit */
                const slm_quant_kernel_set *a2 = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
                if (isa == SLM_QUANT_ISA_AVX512 && a2 && (t == SLM_TYPE_Q8_0 || t == SLM_TYPE_Q4_0)) {
                    const float d2 = a2->vec_dot[t](n, w, q1);
                    assert_memory_equal(&dk, &d2, sizeof dk);
                }
                if (fabs((double)ds - (double)dk) > tol) {
                    fprintf(stderr, "%s %s vec_dot n=%lld: %.9g vs scalar %.9g (tol %.3g)\n", k->name, tr->name,
                            (long long)n, dk, ds, tol);
                    fail();
                }
                free(w), free(y), free(a), free(b), free(q1), free(q2);
            }
        }
    }
}

/* Every runnable ISA against scalar on the reference's own quantized tensors (fitted
 * scales and mins, unlike the random blocks above): every row of blk.0.ffn_down.weight of
 * each tiny-llama-TYPE model against random activations. */
static void test_isa_vs_scalar_real(void **state) {
    (void)state;
    enum { ROWS = 256, COLS = 768 };
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    char probe[4096];
    TU_SHARED_OR_SKIP(probe, "models/tiny/tiny-llama-q4_k.gguf");
    float y[COLS];
    for (int i = 0; i < COLS; i++) y[i] = rng_act();
    int compared = 0;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const slm_type t = all_types[ti];
        const slm_type_traits *tr = slm_type_traits_of(t);
        char model[128];
        snprintf(model, sizeof model, "tiny-llama-%s.gguf", tr->name);
        slm_gguf *g = NULL;
        const slm_gguf_tensor *gt = NULL;
        size_t row_bytes = 0, yb = 0;
        if (tu_load_tensor(model, "blk.0.ffn_down.weight", &g, &gt) != 0) continue;
        assert_int_equal(gt->type, t);
        const uint8_t *data = gt->data;
        assert_true(slm_type_row_bytes(t, COLS, &row_bytes) && slm_type_row_bytes(tr->vec_dot_type, COLS, &yb));
        void *qy = malloc(yb);
        assert_non_null(qy);
        sc->from_float[tr->vec_dot_type](y, qy, COLS);
        for (int isa = 1; isa < SLM_QUANT_ISA_COUNT; isa++) {
            const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
            if (!k || k->vec_dot[t] == sc->vec_dot[t]) continue;
            double worst = 0;
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *w = data + (size_t)r * row_bytes;
                const float ds = sc->vec_dot[t](COLS, w, qy), dk = k->vec_dot[t](COLS, w, qy);
                const double tol = VEC_DOT_ISA_TOL_FACTOR * dot_kernel_tol(t, w, qy, COLS);
                const double ratio = fabs((double)ds - (double)dk) / tol;
                if (ratio > worst) worst = ratio;
                if (ratio > 1) {
                    fprintf(stderr, "%s %s row %d: %.9g vs scalar %.9g (tol %.3g)\n", k->name, tr->name, r, dk, ds, tol);
                    fail();
                }
            }
            fprintf(stderr, "%s %-6s: %d rows, largest |diff| / tolerance %.3f\n", k->name, tr->name, ROWS, worst);
            compared++;
        }
        free(qy);
        slm_gguf_close(g);
    }
    (void)compared;
}

/* matvec of every type: y[r] against float64 sum over dequant(W row r) * x, with the
 * activation quantization error bound of quant_testutil.h plus the kernel bound. */
static void test_matvec_reference(void **state) {
    (void)state;
    enum { ROWS = 37, COLS = 512 };
    float *x = malloc(COLS * sizeof(float)), *y = malloc(ROWS * sizeof(float)),
          *y2 = malloc(ROWS * sizeof(float)), *wd = malloc(COLS * sizeof(float)),
          *xd = malloc(COLS * sizeof(float));
    assert_true(x && y && y2 && wd && xd);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const slm_type t = all_types[ti];
        const slm_type_traits *tr = slm_type_traits_of(t);
        const slm_type_traits *vtr = slm_type_traits_of(tr->vec_dot_type);
        void *W = rand_weights(t, (int64_t)ROWS * COLS);
        size_t row_bytes;
        assert_true(slm_type_row_bytes(t, COLS, &row_bytes));
        for (int i = 0; i < COLS; i++) x[i] = rng_act();
        const size_t sbytes = slm_quant_matvec_scratch_bytes(t, COLS);
        assert_true(sbytes != SIZE_MAX);
        void *scratch = sbytes ? malloc(sbytes) : NULL;
        assert_int_equal(slm_quant_matvec(t, W, ROWS, COLS, x, y, scratch), SLM_OK);
        const void *xq = NULL;
        assert_int_equal(slm_quant_matvec_prepare(t, COLS, x, scratch, &xq), SLM_OK);
        vtr->to_float(xq, xd, COLS);
        for (int r = 0; r < ROWS; r++) {
            const void *wr = (const char *)W + (size_t)r * row_bytes;
            tr->to_float(wr, wd, COLS);
            double exact = 0, qerr = 0;
            for (int i = 0; i < COLS; i++) {
                exact += (double)wd[i] * (double)x[i];
                const int bs = (int)vtr->block_size;
                qerr += fabs((double)wd[i]) * act_elem_bound(tr->vec_dot_type, x[i], block_amax(x + (i / bs) * bs, bs));
            }
            const double tol = dot_kernel_tol(t, wr, xq, COLS) + qerr;
            if (fabs((double)y[r] - exact) > tol) {
                fprintf(stderr, "%s row %d: %.9g vs float64 %.9g (tol %.3g)\n", tr->name, r, y[r], exact, tol);
                fail();
            }
        }
        /* split rows as a thread pool would: same results, bit for bit */
        memset(y2, 0, ROWS * sizeof(float));
        slm_quant_matvec_rows(t, W, COLS, xq, 0, 10, y2);
        slm_quant_matvec_rows(t, W, COLS, xq, 10, ROWS, y2);
        assert_memory_equal(y, y2, ROWS * sizeof(float));
        free(scratch);
        free(W);
    }
    free(x), free(y), free(y2), free(wd), free(xd);
}

static void test_matmul_rows(void **state) {
    (void)state;
    enum { ROWS = 9, COLS = 256, NV = 3 };
    const slm_type t = SLM_TYPE_Q4_K;
    void *W = rand_weights(t, (int64_t)ROWS * COLS);
    float x[NV][COLS], y[NV][ROWS], y1[ROWS];
    const size_t sb = slm_quant_matvec_scratch_bytes(t, COLS);
    char *xq = malloc(NV * sb);
    assert_non_null(xq);
    for (int v = 0; v < NV; v++) {
        for (int i = 0; i < COLS; i++) x[v][i] = rng_act();
        const void *p;
        assert_int_equal(slm_quant_matvec_prepare(t, COLS, x[v], xq + v * sb, &p), SLM_OK);
    }
    slm_quant_matmul_rows(t, W, COLS, xq, sb, NV, 0, ROWS, &y[0][0], ROWS);
    for (int v = 0; v < NV; v++) {
        slm_block_q8_k scratch[COLS / SLM_QK_K];
        assert_int_equal(slm_quant_matvec(t, W, ROWS, COLS, x[v], y1, scratch), SLM_OK);
        assert_memory_equal(y[v], y1, sizeof y1);
    }
    free(xq);
    free(W);
}

static void test_matvec_bad_args(void **state) {
    (void)state;
    float x[64] = {0}, y[2];
    char scratch[512];
    const void *xq;
    assert_int_equal(slm_quant_matvec_scratch_bytes(SLM_TYPE_Q4_K, 100), SIZE_MAX); /* not a block multiple */
    assert_int_equal(slm_quant_matvec_scratch_bytes(SLM_TYPE_IQ2_XXS, 256), SIZE_MAX); /* no kernels */
    assert_int_equal(slm_quant_matvec_scratch_bytes((slm_type)4, 256), SIZE_MAX);      /* retired id */
    assert_int_equal(slm_quant_matvec_scratch_bytes(SLM_TYPE_F32, 64), 0);
    assert_int_equal(slm_quant_matvec_scratch_bytes(SLM_TYPE_Q4_0, 64), 2 * sizeof(slm_block_q8_0));
    assert_int_equal(slm_quant_matvec_prepare(SLM_TYPE_Q4_0, 64, x, NULL, &xq), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_quant_matvec(SLM_TYPE_Q4_0, scratch, 2, 48, x, y, scratch), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_quant_matvec_prepare(SLM_TYPE_F32, 64, x, NULL, &xq), SLM_OK);
    assert_ptr_equal(xq, x);
}

/* act of every runnable set against the scalar act, byte for byte: random rows of several
 * magnitudes, an all-zero block, and a block of exact halves (amax 127: id = 1, so 2.5
 * must round to 2 and 3.5 to 4, half to even). */
static void test_act_convert(void **state) {
    (void)state;
    enum { N = 32 * 48 }; /* 6 super-blocks of 256 */
    float *x = malloc(N * sizeof(float));
    uint8_t *want = malloc(N * 2), *got = malloc(N * 2); /* >= 36 / 32 bytes per element */
    assert_non_null(x);
    assert_non_null(want);
    assert_non_null(got);
    for (int i = 0; i < N; i++) x[i] = rng_act() * (float)(1 << (i / 32 % 12)) * 0.01f;
    for (int i = 0; i < 32; i++) x[32 + i] = 0.0f;                      /* block 1: zeros */
    for (int i = 0; i < 32; i++) x[64 + i] = (float)(i % 8) - 3.5f; /* block 2: halves */
    x[64 + 31] = 127.0f;                                                 /* amax 127 */
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    assert_non_null(sc);
    /* the scalar Q8_0 rounding itself: block 2 quantized by hand */
    sc->act[SLM_TYPE_Q8_0](x, want, N);
    const int8_t *q2 = (const int8_t *)(want + 2 * 34 + 2);
    for (int i = 0; i < 31; i++) {
        const float v = (float)(i % 8) - 3.5f; /* -3.5 .. 3.5 */
        assert_int_equal(q2[i], (int)nearbyintf(v));
    }
    assert_int_equal(q2[0], -4); /* -3.5 -> -4 (even) */
    assert_int_equal(q2[1], -2); /* -2.5 -> -2 */
    const slm_type types[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q8_K};
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            size_t bytes;
            assert_true(slm_type_row_bytes(types[t], N, &bytes));
            memset(want, 0xAB, bytes);
            memset(got, 0xCD, bytes);
            sc->act[types[t]](x, want, N);
            k->act[types[t]](x, got, N);
            assert_memory_equal(want, got, bytes);
        }
    }
    /* Q8_K's super-blocks of 256 on what only it handles specially: the sign of the FIRST
     * largest |x| sets the scale (ties of both signs), NaNs (never the maximum), an
     * infinity, a denormal maximum (iscale overflows), an all-zero block */
    for (int i = 0; i < N; i++) x[i] = rng_act() * 0.01f;
    x[256 + 7] = -2.0f, x[256 + 100] = 2.0f;                       /* tie: -2 first */
    x[512 + 3] = 3.0f, x[512 + 200] = -3.0f;                       /* tie: +3 first */
    x[768 + 1] = NAN, x[768 + 50] = -NAN, x[768 + 255] = 0.5f;     /* NaNs */
    x[1024 + 9] = INFINITY;                                        /* d = -inf, q from 0 * inf */
    for (int i = 0; i < 256; i++) x[i] = (i % 3) * 1e-45f;         /* denormal maximum */
    memset(x + 1280, 0, 256 * sizeof(float));                      /* zeros */
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        size_t bytes;
        assert_true(slm_type_row_bytes(SLM_TYPE_Q8_K, N, &bytes));
        memset(want, 0xAB, bytes);
        memset(got, 0xCD, bytes);
        sc->act[SLM_TYPE_Q8_K](x, want, N);
        k->act[SLM_TYPE_Q8_K](x, got, N);
        assert_memory_equal(want, got, bytes);
    }
    free(x), free(want), free(got);
}

/* F16 from_float of every set against the scalar one on what rounding and the special
 * values make hard: ties to even, overflow to infinity, subnormals, NaNs with payloads. */
static void test_f16_from_float(void **state) {
    (void)state;
    enum { N = 64 + 5 }; /* a tail after whole vectors */
    static const uint32_t bits[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
                                    0x7f800001, 0xff812345, 0x7fc12345, 0x477fefff, 0x477ff000, 0x477fffff,
                                    0x47800000, 0x33800000, 0x33000000, 0x33000001, 0x387fc000, 0x38800000,
                                    0x3f801000, 0x3f803000, 0x3f802fff, 0x00000001, 0xc77ff000, 0xb3800001};
    const size_t nb = sizeof bits / sizeof bits[0];
    float x[N];
    uint16_t want[N], got[N];
    for (int i = 0; i < N; i++) {
        if ((size_t)i < nb)
            memcpy(&x[i], &bits[i], sizeof x[i]);
        else
            x[i] = rng_act() * (float)(1 << (i % 20)) * 1e-4f;
    }
    x[N - 1] = NAN, x[N - 2] = 65520.0f; /* in the scalar tail too */
    const slm_quant_kernel_set *sc = slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR);
    sc->from_float[SLM_TYPE_F16](x, want, N);
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        memset(got, 0xAB, sizeof got);
        k->from_float[SLM_TYPE_F16](x, got, N);
        assert_memory_equal(want, got, sizeof want);
    }
    assert_int_equal(want[4], 0x7E00);  /* NaN as specified */
    assert_int_equal(want[11], 0x7C00); /* 65535.99 rounds up to infinity */
}

int main(void) {
    /* before the first use of the kernel table: selection happens once */
    setenv("SLMESH_KERNELS", "scalar", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selection_env),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_isa_vs_scalar),
        cmocka_unit_test(test_isa_vs_scalar_real),
        cmocka_unit_test(test_matvec_reference),
        cmocka_unit_test(test_matmul_rows),
        cmocka_unit_test(test_matvec_bad_args),
        cmocka_unit_test(test_act_convert),
        cmocka_unit_test(test_f16_from_float),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
