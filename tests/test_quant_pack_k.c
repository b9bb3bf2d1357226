/*
 * tests/test_quant_pack_k.c: the packed (8-row interleaved) Q4_K, Q5_K and Q6_K AVX2 kernels of
 * quant/pack_avx2_k.c at the edges the generic packed test's random rows do not reach:
 *  - unpack(pack(rows)) == rows byte for byte for rows of arbitrary bytes (every bit of the
 *    6-bit Q4_K scales and of the Q6_K quants moves, none is lost);
 *  - gemm_packed equals the avx2 vec_dot bit for bit on the extremes of the int16 partial
 *    sums (largest quants and scales against activations of -128 and 127, where a
 *    saturating or overflowing lane would show) and on arbitrary bytes, for group ranges
 *    that start the 2-group Q4_K/Q5_K tiles at even and odd groups or leave one group
 *    alone, and activation counts that reach every tile (4, 2 and the decode tile of 1).
 * Skipped (passes trivially) when the CPU cannot run the avx2 set.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "quant/blocks.h"
#include "quant/kernels.h"
#include "quant/kernels_isa.h"
#include "quant_testutil.h"

#define GROUPS 3 /* 24 rows */
#define ROWS (8 * GROUPS)
#define NB 3     /* super-blocks per row */
#define COLS (NB * SLM_QK_K)
#define MAX_VEC 9

typedef struct {
    slm_type type;
    size_t block_bytes;
    size_t d_offset; /* where the f16 d sits in a block (Q4_K: d then dmin) */
    slm_pack_fn pack;
    slm_unpack_fn unpack;
    slm_gemm_packed_fn gemm;
} kind;

static const kind kinds[] = {
#if SLM_QUANT_HAVE_AVX2
    {SLM_TYPE_Q4_K, sizeof(slm_block_q4_k), 0, slm_quant_pack_q4_k_avx2, slm_quant_unpack_q4_k_avx2,
     slm_quant_gemm_packed_q4_k_avx2},
    {SLM_TYPE_Q5_K, sizeof(slm_block_q5_k), 0, slm_quant_pack_q5_k_avx2, slm_quant_unpack_q5_k_avx2,
     slm_quant_gemm_packed_q5_k_avx2},
    {SLM_TYPE_Q6_K, sizeof(slm_block_q6_k), offsetof(slm_block_q6_k, d), slm_quant_pack_q6_k_avx2,
     slm_quant_unpack_q6_k_avx2, slm_quant_gemm_packed_q6_k_avx2},
#endif
    {SLM_TYPE_COUNT, 0, 0, NULL, NULL, NULL},
};

enum { FILL_RANDOM = 0, FILL_MAX = 1 };

/* Weight rows: arbitrary bytes (or all ones: quants 15 / 63, scales 63 / -1) with finite
 * f16 scales so no NaN enters the comparison. */
static void fill_weights(const kind *k, uint8_t *w, int rows, int fill) {
    const size_t rb = k->block_bytes * NB;
    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = fill == FILL_MAX ? 0xFF : (uint8_t)rng_u32();
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < NB; b++) {
            uint8_t *blk = w + (size_t)r * rb + (size_t)b * k->block_bytes + k->d_offset;
            const uint16_t d = slm_quant_f2h(rng_uniform(1e-4f, 1e-2f)), dmin = slm_quant_f2h(rng_uniform(1e-4f, 1e-2f));
            memcpy(blk, &d, 2);
            if (k->type != SLM_TYPE_Q6_K) memcpy(blk + 2, &dmin, 2);
        }
    if (fill == FILL_MAX && k->type == SLM_TYPE_Q6_K) /* scales -128: the largest products */
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < NB; b++) {
                slm_block_q6_k *blk = (slm_block_q6_k *)(w + (size_t)r * rb) + b;
                memset(blk->scales, 0x80, sizeof blk->scales);
            }
}

/* Activation rows of Q8_K: every value q (or random bytes when q == 0), bsums consistent. */
static void fill_acts(uint8_t *x, int n_vec, int q) {
    for (int v = 0; v < n_vec; v++)
        for (int b = 0; b < NB; b++) {
            slm_block_q8_k *blk = (slm_block_q8_k *)(x + (size_t)v * NB * sizeof(slm_block_q8_k)) + b;
            blk->d = rng_uniform(1e-3f, 1e-1f);
            for (int i = 0; i < SLM_QK_K; i++) blk->qs[i] = (int8_t)(q ? q : (int)(rng_u32() & 0xFF) - 128);
            for (int g = 0; g < SLM_QK_K / 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += blk->qs[16 * g + i];
                blk->bsums[g] = (int16_t)s;
            }
        }
}

static void test_roundtrip(void **state) {
    (void)state;
    for (const kind *k = kinds; k->pack; k++) {
        const size_t rb = k->block_bytes * NB;
        uint8_t *w = malloc(rb * ROWS), *p = malloc(rb * ROWS), *u = malloc(rb * ROWS);
        assert_non_null(w), assert_non_null(p), assert_non_null(u);
        for (size_t i = 0; i < rb * ROWS; i++) w[i] = (uint8_t)rng_u32();
        for (int g = 0; g < GROUPS; g++) k->pack(w + (size_t)g * 8 * rb, rb, COLS, p + (size_t)g * 8 * rb);
        for (int g = 0; g < GROUPS; g++) k->unpack(p + (size_t)g * 8 * rb, COLS, u + (size_t)g * 8 * rb, rb);
        assert_memory_equal(w, u, rb * ROWS);
        free(w), free(p), free(u);
    }
}

static void check_products(const slm_quant_kernel_set *ks, const kind *k, int wfill, int act_q) {
    const size_t rb = k->block_bytes * NB, xs = NB * sizeof(slm_block_q8_k), ys = ROWS + 5;
    uint8_t *w = malloc(rb * ROWS), *p = malloc(rb * ROWS), *x = malloc(xs * MAX_VEC);
    float *y = malloc(sizeof(float) * ys * MAX_VEC);
    assert_non_null(w), assert_non_null(p), assert_non_null(x), assert_non_null(y);
    fill_weights(k, w, ROWS, wfill);
    fill_acts(x, MAX_VEC, act_q);
    for (int g = 0; g < GROUPS; g++) k->pack(w + (size_t)g * 8 * rb, rb, COLS, p + (size_t)g * 8 * rb);
    const int64_t ranges[][2] = {{0, GROUPS}, {1, GROUPS}, {1, 2}, {2, 2}};
    const int64_t counts[] = {1, 2, 3, 4, 5, 6, 7, MAX_VEC}; /* every tile: 4 (x 2 groups), 2, 1 */
    for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            const int64_t g0 = ranges[ri][0], g1 = ranges[ri][1], n_vec = counts[ci];
            for (size_t i = 0; i < ys * MAX_VEC; i++) y[i] = -12345.0f;
            k->gemm(COLS, p, rb, g0, g1, x, xs, n_vec, y, ys, NULL);
            for (int64_t v = 0; v < MAX_VEC; v++)
                for (int64_t r = 0; r < (int64_t)ys; r++) {
                    const float got = y[(size_t)v * ys + (size_t)r];
                    if (v >= n_vec || r < 8 * g0 || r >= 8 * g1) {
                        assert_true(got == -12345.0f);
                        continue;
                    }
                    const float want = ks->vec_dot[k->type](COLS, w + (size_t)r * rb, x + (size_t)v * xs);
                    if (f2u(got) != f2u(want))
                        fail_msg("%s fill %d act %d row %lld vec %lld: packed %.9g vec_dot %.9g", slm_type_name(k->type), wfill,
                                 act_q, (long long)r, (long long)v, got, want);
                }
        }
    free(w), free(p), free(x), free(y);
}

static void test_products(void **state) {
    (void)state;
    const slm_quant_kernel_set *ks = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
    if (!ks) return; /* this CPU cannot run the packed kernels */
    for (const kind *k = kinds; k->pack; k++) {
        check_products(ks, k, FILL_MAX, -128);
        check_products(ks, k, FILL_MAX, 127);
        check_products(ks, k, FILL_RANDOM, -128);
        check_products(ks, k, FILL_RANDOM, 0);
    }
}

/* A product large enough for several blocks of groups and chunks of activation rows
 * (PK_W_BYTES and PK_ACT_BYTES in pack_avx2_k.c, 256 and 16 KiB: here 2 blocks and 2
 * chunks), from an odd group to an odd group count: every output equals vec_dot. */
#define BIG_GROUPS 81
#define BIG_VEC 23
static void test_blocking(void **state) {
    (void)state;
    const slm_quant_kernel_set *ks = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
    if (!ks) return;
    for (const kind *k = kinds; k->pack; k++) {
        const int rows = 8 * BIG_GROUPS;
        const size_t rb = k->block_bytes * NB, xs = NB * sizeof(slm_block_q8_k);
        uint8_t *w = malloc(rb * rows), *p = malloc(rb * rows), *x = malloc(xs * BIG_VEC);
        float *y = malloc(sizeof(float) * rows * BIG_VEC);
        assert_non_null(w), assert_non_null(p), assert_non_null(x), assert_non_null(y);
        fill_weights(k, w, rows, FILL_RANDOM);
        fill_acts(x, BIG_VEC, 0);
        for (int g = 0; g < BIG_GROUPS; g++) k->pack(w + (size_t)g * 8 * rb, rb, COLS, p + (size_t)g * 8 * rb);
        k->gemm(COLS, p, rb, 1, BIG_GROUPS, x, xs, BIG_VEC, y, (size_t)rows, NULL);
        for (int v = 0; v < BIG_VEC; v++)
            for (int r = 8; r < rows; r++) {
                const float got = y[(size_t)v * rows + r];
                const float want = ks->vec_dot[k->type](COLS, w + (size_t)r * rb, x + (size_t)v * xs);
                if (f2u(got) != f2u(want))
                    fail_msg("%s row %d vec %d: packed %.9g vec_dot %.9g", slm_type_name(k->type), r, v, got, want);
            }
        free(w), free(p), free(x), free(y);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_products),
        cmocka_unit_test(test_blocking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
