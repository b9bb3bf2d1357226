/*
 * tests/test_quant_quantize.c: the reference quantizers (from_float of the weight types).
 *  - reproduction: quantizing blk.0.ffn_down.weight of the F32 tiny model gives, byte for
 *    byte, the tensor of each tiny-llama-TYPE model (made by the reference runtime's
 *    quantize tool from the same F32 weights, without an importance matrix);
 *  - requantization: for Q8_0 and Q4_0, quantize(dequantize(block)) gives the block back
 *    wherever the block's largest magnitude sits on the grid end (as it does for every
 *    block the reference quantizer wrote);
 *  - round trip on random data: error within a per-type bound (see QUANT_RMS_BOUND).
 */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/quant.h"
#include "quant_testutil.h"

#define TENSOR "blk.0.ffn_down.weight"
#define ROWS 256
#define COLS 768

static const slm_type weight_types[] = {
    SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q2_K,
    SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
    SLM_TYPE_F16, SLM_TYPE_BF16,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

/* ---- reproduction of the reference's files -------------------------------------------- */

static void test_reproduces_reference(void **state) {
    (void)state;
    slm_gguf *fg = NULL;
    const slm_gguf_tensor *ft = NULL;
    char probe[4096];
    TU_SHARED_OR_SKIP(probe, "models/tiny/tiny-llama-f32.gguf");
    assert_int_equal(tu_load_tensor("tiny-llama-f32.gguf", TENSOR, &fg, &ft), 0);
    assert_int_equal(ft->type, SLM_TYPE_F32);
    assert_int_equal(slm_gguf_tensor_nelements(ft), ROWS * COLS);
    float *x = malloc((size_t)ROWS * COLS * sizeof(float));
    assert_non_null(x);
    memcpy(x, ft->data, (size_t)ROWS * COLS * sizeof(float));
    int failures = 0;
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        const slm_type t = weight_types[k];
        const slm_type_traits *tr = slm_type_traits_of(t);
        char model[128];
        snprintf(model, sizeof model, "tiny-llama-%s.gguf", tr->name);
        slm_gguf *mg = NULL;
        const slm_gguf_tensor *mt = NULL;
        if (tu_load_tensor(model, TENSOR, &mg, &mt) != 0) continue;
        assert_int_equal(mt->type, t);
        const uint8_t *mdata = mt->data;
        size_t row_bytes;
        assert_true(slm_type_row_bytes(t, COLS, &row_bytes));
        uint8_t *q = malloc(row_bytes * ROWS);
        assert_non_null(q);
        for (int r = 0; r < ROWS; r++) tr->from_float(x + (size_t)r * COLS, q + (size_t)r * row_bytes, COLS);
        /* count differing blocks; report the first */
        const size_t nblocks = row_bytes * ROWS / tr->type_size;
        size_t ndiff = 0, first = SIZE_MAX;
        for (size_t b = 0; b < nblocks; b++) {
            if (memcmp(q + b * tr->type_size, mdata + b * tr->type_size, tr->type_size) != 0) {
                if (first == SIZE_MAX) first = b;
                ndiff++;
            }
        }
        if (ndiff) {
            size_t byte = 0;
            while (q[first * tr->type_size + byte] == mdata[first * tr->type_size + byte]) byte++;
            fprintf(stderr, "%s: %zu of %zu blocks differ from the reference; first: block %zu byte %zu (0x%02x vs 0x%02x)\n",
                    tr->name, ndiff, nblocks, first, byte, q[first * tr->type_size + byte], mdata[first * tr->type_size + byte]);
            failures++;
        } else {
            fprintf(stderr, "ok: %s: all %zu blocks identical to the reference\n", tr->name, nblocks);
        }
        free(q);
        slm_gguf_close(mg);
    }
    free(x);
    slm_gguf_close(fg);
    assert_int_equal(failures, 0);
}

/* ---- requantization --------------------------------------------------------------------- */

/* Q8_0 blocks always contain +-127 (d = amax / 127) and Q4_0 blocks a nibble 0 (d = max /
 * -8): for such blocks quantize(dequantize(b)) must be b. Checked on the reference tensors. */
static void check_requant(slm_type t, int (*on_grid_end)(const uint8_t *block)) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    char model[128];
    snprintf(model, sizeof model, "tiny-llama-%s.gguf", tr->name);
    slm_gguf *g = NULL;
    const slm_gguf_tensor *gt = NULL;
    if (tu_load_tensor(model, TENSOR, &g, &gt) != 0) skip();
    assert_int_equal(gt->type, t);
    const uint8_t *data = gt->data;
    const size_t nblocks = (size_t)ROWS * COLS / tr->block_size;
    size_t eligible = 0;
    float deq[32];
    uint8_t back[64];
    for (size_t b = 0; b < nblocks; b++) {
        const uint8_t *blk = data + b * tr->type_size;
        if (!on_grid_end(blk)) continue;
        eligible++;
        tr->to_float(blk, deq, 32);
        tr->from_float(deq, back, 32);
        if (memcmp(back, blk, tr->type_size) != 0) {
            fprintf(stderr, "%s: block %zu does not survive requantization\n", tr->name, b);
            fail();
        }
    }
    fprintf(stderr, "%s: %zu of %zu blocks eligible, all reproduced\n", tr->name, eligible, nblocks);
    assert_true(eligible > nblocks / 2);
    slm_gguf_close(g);
}

static int q8_0_has_127(const uint8_t *p) {
    const slm_block_q8_0 *b = (const slm_block_q8_0 *)p;
    for (int j = 0; j < 32; j++) {
        if (b->qs[j] == 127 || b->qs[j] == -127) return 1;
    }
    return 0;
}
static int q4_0_has_zero_nibble(const uint8_t *p) {
    const slm_block_q4_0 *b = (const slm_block_q4_0 *)p;
    for (int j = 0; j < 16; j++) {
        if ((b->qs[j] & 0xF) == 0 || (b->qs[j] >> 4) == 0) return 1;
    }
    return 0;
}
static void test_requant_q8_0(void **state) { (void)state; check_requant(SLM_TYPE_Q8_0, q8_0_has_127); }
static void test_requant_q4_0(void **state) { (void)state; check_requant(SLM_TYPE_Q4_0, q4_0_has_zero_nibble); }

/* ---- round trip on random data ---------------------------------------------------------------
 * Bound on rms(x - dequant(quant(x))) / rms(x) for the seeded, roughly normal data with
 * 1/64 outliers of quant_testutil.h. A uniform quantizer with step s has rms error
 * s / sqrt(12); the step is amax / 2^(b-1) for the symmetric types (Q4_0, Q5_0, Q8_0,
 * which waste half a level and feel outliers most), (max - min) / (2^b - 1) for the min/max
 * types, and fitted per 16 or 32 values for the K and IQ types. The measured ratios
 * (q4_0 .151, q4_1 .101, q5_0 .072, q5_1 .048, q8_0 .0095, q2_k .329, q3_k .191, q4_k .093,
 * q5_k .045, q6_k .027, iq4_nl .112, iq4_xs .113) follow that model; the bounds give them
 * ~30% headroom. F16/BF16: half an ulp (2^-11, 2^-8 relative). A layout or rounding bug
 * gives errors of order 1. */
static double rms_bound(slm_type t) {
    switch (t) {
    case SLM_TYPE_Q4_0: return 0.20;
    case SLM_TYPE_Q4_1: return 0.13;
    case SLM_TYPE_Q5_0: return 0.095;
    case SLM_TYPE_Q5_1: return 0.065;
    case SLM_TYPE_Q8_0: return 0.0125;
    case SLM_TYPE_Q2_K: return 0.43;
    case SLM_TYPE_Q3_K: return 0.25;
    case SLM_TYPE_Q4_K: return 0.12;
    case SLM_TYPE_Q5_K: return 0.06;
    case SLM_TYPE_Q6_K: return 0.035;
    case SLM_TYPE_IQ4_NL: case SLM_TYPE_IQ4_XS: return 0.145;
    case SLM_TYPE_F16: return 0x1p-11;
    case SLM_TYPE_BF16: return 0x1p-8;
    default: return 0.0;
    }
}

static void test_roundtrip_random(void **state) {
    (void)state;
    enum { N = 8192 };
    float *x = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
    void *q = malloc(N * sizeof(float));
    assert_true(x && back && q);
    for (size_t k = 0; k < N_WEIGHT_TYPES; k++) {
        const slm_type t = weight_types[k];
        const slm_type_traits *tr = slm_type_traits_of(t);
        for (int i = 0; i < N; i++) x[i] = 0.02f * rng_act();
        for (int i = 256; i < 512; i++) x[i] = 0.0f; /* an all-zero super-block */
        for (int i = 1024; i < 1280; i++) x[i] = fabsf(x[i]); /* an all-positive one */
        tr->from_float(x, q, N);
        tr->to_float(q, back, N);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += ((double)x[i] - back[i]) * ((double)x[i] - back[i]);
            sx += (double)x[i] * x[i];
            if (x[i] == 0.0f && i >= 256 && i < 512) assert_true(back[i] == 0.0f);
        }
        const double rel = sqrt(se / sx);
        fprintf(stderr, "%-7s rms error / rms %.4f (bound %.4f)\n", tr->name, rel, rms_bound(t));
        assert_true(rel <= rms_bound(t));
    }
    free(x), free(back), free(q);
}

/* Non-finite and huge inputs (a diverged activation, a corrupt F32 file) must not crash or
 * hit undefined conversions (the UBSan build checks), and must not leak into other blocks:
 * the last super-block is clean and must quantize as it does alone. */
static void test_nonfinite_inputs(void **state) {
    (void)state;
    static const slm_type types[] = {
        SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q8_K,
        SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL, SLM_TYPE_IQ4_XS,
        SLM_TYPE_F16, SLM_TYPE_BF16,
    };
    enum { N = 4 * SLM_QK_K };
    static const float specials[] = {NAN, INFINITY, -INFINITY, 3e38f, -3e38f, 1e-40f, -0.0f};
    float x[N], back[N];
    uint8_t q[N * 4], alone[SLM_QK_K * 4];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const slm_type_traits *tr = slm_type_traits_of(types[k]);
        for (int i = 0; i < N; i++) x[i] = 0.02f * rng_act();
        /* block 0: one special among normal values; block 1: all specials; block 2: mixed */
        x[5] = NAN;
        for (int i = SLM_QK_K; i < 2 * SLM_QK_K; i++) x[i] = specials[i % 7];
        for (int i = 2 * SLM_QK_K; i < 3 * SLM_QK_K; i += 3) x[i] = specials[(i / 3) % 7];
        tr->from_float(x, q, N);
        tr->to_float(q, back, N);
        size_t off = 0, one = 0;
        assert_true(slm_type_row_bytes(types[k], 3 * SLM_QK_K, &off) && slm_type_row_bytes(types[k], SLM_QK_K, &one));
        tr->from_float(x + 3 * SLM_QK_K, alone, SLM_QK_K);
        assert_memory_equal(q + off, alone, one);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproduces_reference),
        cmocka_unit_test(test_requant_q8_0),
        cmocka_unit_test(test_requant_q4_0),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_nonfinite_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
