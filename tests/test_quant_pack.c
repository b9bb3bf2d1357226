/*
 * tests/test_quant_pack.c: the packed weight layouts (kernels.h, "packed weights") of every
 * runnable ISA set and every type that set packs.
 *  - unpack(pack(8 rows)) gives the rows back byte for byte, and a group has their bytes;
 *  - gemm_packed equals the same set's vec_dot on the original rows bit for bit, for group
 *    ranges that start and end anywhere, activation counts that leave partial tiles and
 *    span several chunks, rows from one block to SLM_QUANT_PACK_MAX_COLS; outputs outside
 *    the groups are untouched; the same with the caller's activation table
 *    (slm_quant_pack_table, filled in two row ranges) for the types with Q8_0 activations,
 *    whose table equals the scalar set's;
 *  - slm_quant_matmul_packed_rows over a matrix packed in place (whole groups, then tail
 *    rows in the file's layout) equals the vec_dot loop, row ranges included.
 * The packing is forced by a different set than the process one only through the set's
 * own entries, so every ISA's layout is checked on this machine when it can run it.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant_testutil.h"

#define GROUPS 3                                  /* whole groups of the test matrix */
#define TAIL 5                                    /* rows after them, left in the file's layout */
#define ROWS (GROUPS * SLM_QUANT_PACK_ROWS + TAIL)
#define UNTOUCHED (-12345.0f)

/* The matrix w (ROWS rows) with its whole groups packed in place by ks. */
static uint8_t *packed_copy(const slm_quant_kernel_set *ks, slm_type t, const uint8_t *w, size_t rb, int64_t cols) {
    const size_t gbytes = SLM_QUANT_PACK_ROWS * rb;
    uint8_t *p = malloc(rb * ROWS), *back = malloc(gbytes);
    assert_non_null(p);
    assert_non_null(back);
    memcpy(p, w, rb * ROWS);
    for (int g = 0; g < GROUPS; g++) {
        ks->pack[t](w + g * gbytes, rb, cols, p + g * gbytes);
        ks->unpack[t](p + g * gbytes, cols, back, rb);
        assert_memory_equal(back, w + g * gbytes, gbytes);
    }
    free(back);
    return p;
}

static void check_type(const slm_quant_kernel_set *ks, slm_type t, int64_t cols, const int64_t *n_vecs, size_t n_nv) {
    const slm_type vt = slm_type_traits_of(t)->vec_dot_type;
    size_t rb, xrb;
    uint8_t *w = random_rows(t, ROWS, cols, &rb);
    uint8_t *p = packed_copy(ks, t, w, rb, cols);
    int64_t max_nv = 0;
    for (size_t k = 0; k < n_nv; k++) max_nv = n_vecs[k] > max_nv ? n_vecs[k] : max_nv;
    uint8_t *x = random_rows(vt, max_nv, cols, &xrb);
    const size_t ys = ROWS + 3; /* output stride wider than the rows */
    float *y = malloc(ys * (size_t)max_nv * sizeof(float)), *want = malloc(ys * (size_t)max_nv * sizeof(float));
    assert_non_null(y);
    assert_non_null(want);
    for (int64_t v = 0; v < max_nv; v++)
        for (int64_t r = 0; r < ROWS; r++)
            want[(size_t)v * ys + (size_t)r] = ks->vec_dot[t](cols, w + (size_t)r * rb, x + (size_t)v * xrb);
    const int64_t granges[][2] = {{0, GROUPS}, {1, GROUPS}, {1, 2}, {2, 2}};
    const bool tabled = vt == SLM_TYPE_Q8_0; /* the 32-block types also take a caller's table */
    float *tab = tabled ? malloc(SLM_QUANT_PACK_TABLE_FLOATS(max_nv, cols) * sizeof(float)) : NULL;
    float *tab0 = tabled ? malloc(SLM_QUANT_PACK_TABLE_FLOATS(max_nv, cols) * sizeof(float)) : NULL;
    for (size_t k = 0; k < n_nv; k++) {
        const int64_t n_vec = n_vecs[k];
        if (tabled) { /* the set's table, filled in two ranges, equals the portable one */
            const size_t nf = SLM_QUANT_PACK_TABLE_FLOATS(n_vec, cols);
            assert_non_null(tab);
            assert_non_null(tab0);
            ks->pack_table(x, xrb, 0, n_vec / 2, n_vec, cols, tab);
            ks->pack_table(x, xrb, n_vec / 2, n_vec, n_vec, cols, tab);
            slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR)->pack_table(x, xrb, 0, n_vec, n_vec, cols, tab0);
            assert_memory_equal(tab, tab0, nf * sizeof(float));
        }
        for (size_t run = 0; run < (tabled ? 2u : 1u) * (sizeof granges / sizeof granges[0]); run++) {
            const size_t gr = run % (sizeof granges / sizeof granges[0]);
            const int64_t g0 = granges[gr][0], g1 = granges[gr][1];
            for (size_t i = 0; i < ys * (size_t)n_vec; i++) y[i] = UNTOUCHED;
            ks->gemm_packed[t](cols, p, rb, g0, g1, x, xrb, n_vec, y, ys,
                               run >= sizeof granges / sizeof granges[0] ? tab : NULL);
            for (int64_t v = 0; v < n_vec; v++) {
                for (int64_t r = 0; r < (int64_t)ys; r++) {
                    const float got = y[(size_t)v * ys + (size_t)r];
                    const bool inside = r >= g0 * SLM_QUANT_PACK_ROWS && r < g1 * SLM_QUANT_PACK_ROWS;
                    if (!inside) {
                        assert_true(got == UNTOUCHED);
                    } else if (f2u(got) != f2u(want[(size_t)v * ys + (size_t)r])) {
                        fail_msg("%s %s: cols %lld, %lld vectors, groups [%lld, %lld): row %lld vector %lld: %.9g, vec_dot %.9g",
                                 ks->name, slm_type_name(t), (long long)cols, (long long)n_vec, (long long)g0,
                                 (long long)g1, (long long)r, (long long)v, (double)got,
                                 (double)want[(size_t)v * ys + (size_t)r]);
                    }
                }
            }
        }
    }
    /* the whole-matrix entry point, when ks is the process's set */
    if (ks == slm_quant_kernels()) {
        const int64_t rranges[][2] = {{0, ROWS}, {8, ROWS}, {8, 16}, {24, ROWS}, {0, 8}};
        const int64_t n_vec = n_vecs[n_nv - 1];
        for (size_t rr = 0; rr < sizeof rranges / sizeof rranges[0]; rr++) {
            const int64_t r0 = rranges[rr][0], r1 = rranges[rr][1];
            for (size_t i = 0; i < ys * (size_t)n_vec; i++) y[i] = UNTOUCHED;
            if (tabled) slm_quant_pack_table(x, xrb, 0, n_vec, n_vec, cols, tab);
            slm_quant_matmul_packed_rows(t, p, cols, ROWS, x, xrb, n_vec, r0, r1, y, ys, rr % 2 ? tab : NULL);
            for (int64_t v = 0; v < n_vec; v++)
                for (int64_t r = 0; r < (int64_t)ys; r++) {
                    const float got = y[(size_t)v * ys + (size_t)r];
                    if (r < r0 || r >= r1) assert_true(got == UNTOUCHED);
                    else assert_int_equal(f2u(got), f2u(want[(size_t)v * ys + (size_t)r]));
                }
        }
    }
    free(w);
    free(p);
    free(x);
    free(y);
    free(want);
    free(tab);
    free(tab0);
}

static void test_packed_equals_vec_dot(void **state) {
    (void)state;
    int checked = 0;
    const int64_t n_vecs[] = {1, 2, 3, 4, 5, 7, 13, 33, 70}; /* partial tiles; 70 > one chunk of 64 */
    const int64_t few[] = {1, 2, 9}; /* 9: the two-group tiles (8 rows or more), then one row */
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *ks = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!ks) continue;
        for (int t = 0; t < SLM_TYPE_COUNT; t++) {
            if (!ks->pack[t]) continue;
            assert_non_null(ks->unpack[t]);
            assert_non_null(ks->gemm_packed[t]);
            const int64_t bs = slm_type_traits_of((slm_type)t)->block_size;
            if (bs <= 32) check_type(ks, (slm_type)t, 32, n_vecs, sizeof n_vecs / sizeof n_vecs[0]);
            check_type(ks, (slm_type)t, 256, n_vecs, sizeof n_vecs / sizeof n_vecs[0]);
            check_type(ks, (slm_type)t, 4864, few, sizeof few / sizeof few[0]); /* qwen2.5's ffn width */
            check_type(ks, (slm_type)t, SLM_QUANT_PACK_MAX_COLS, few, 2);     /* one chunk row at a time */
            checked++;
        }
    }
    /* the AVX2 set packs its 32-block types at least (a CPU without AVX2 checks nothing) */
    const slm_quant_kernel_set *avx2 = slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2);
    if (avx2) {
        assert_non_null(avx2->pack[SLM_TYPE_Q8_0]);
        assert_non_null(avx2->pack[SLM_TYPE_Q4_0]);
        assert_true(checked >= 3);
    }
    /* the scalar set is the specification: it has no packed layout */
    assert_null(slm_quant_kernels_isa(SLM_QUANT_ISA_SCALAR)->pack[SLM_TYPE_Q8_0]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_equals_vec_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
