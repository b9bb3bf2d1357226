/* tests/test_kv.c: the unified KV cache: cell allocation, visibility, sequence operations,
 * storage conversion, limits and allocation failures. */
#include "testutil.h"

#include <string.h>

#include "core/core.h"
#include "kv/kv.h"

static slm_kv *make(slm_type t, int64_t cells, int32_t n_seq) {
    slm_kv_params p = {.type = t, .n_cells = cells, .n_layer = 2, .n_embd_kv = 64, .n_seq_max = n_seq};
    slm_kv *kv = NULL;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_kv_create(&p, &kv, err), SLM_OK);
    return kv;
}

static int count_visible(const slm_kv *kv, int32_t seq, int32_t pos) {
    int n = 0;
    for (int64_t c = 0; c < slm_kv_used_end(kv); c++)
        n += slm_kv_visible(slm_kv_masks(kv), slm_kv_positions(kv), c, seq, pos);
    return n;
}

static void test_alloc_and_visibility(void **state) {
    (void)state;
    slm_kv *kv = make(SLM_TYPE_F32, 8, 2);
    int32_t pos[4] = {0, 1, 2, 0}, seq[4] = {0, 0, 0, 1}, cells[4];
    assert_int_equal(slm_kv_alloc(kv, 4, pos, seq, cells, NULL), SLM_OK);
    assert_int_equal(cells[0], 0);
    assert_int_equal(cells[3], 3);
    assert_int_equal(slm_kv_n_used(kv), 4);
    assert_int_equal(slm_kv_used_end(kv), 4);
    assert_int_equal(count_visible(kv, 0, 1), 2); /* causal: positions 0 and 1 */
    assert_int_equal(count_visible(kv, 0, 9), 3);
    assert_int_equal(count_visible(kv, 1, 5), 1); /* sequences are separate */
    assert_int_equal(slm_kv_seq_pos_max(kv, 0), 2);
    /* full: 4 free, 5 asked -> nothing taken */
    int32_t p5[5] = {3, 4, 5, 6, 7}, s5[5] = {0, 0, 0, 0, 0}, c5[5];
    assert_int_equal(slm_kv_alloc(kv, 5, p5, s5, c5, NULL), SLM_ERR_FULL);
    assert_int_equal(slm_kv_n_used(kv), 4);
    /* bad ids */
    int32_t bad_seq = 2, bad_pos = -1, zero = 0;
    assert_int_equal(slm_kv_alloc(kv, 1, &zero, &bad_seq, c5, NULL), SLM_ERR_RANGE);
    assert_int_equal(slm_kv_alloc(kv, 1, &bad_pos, &zero, c5, NULL), SLM_ERR_RANGE);
    /* free cells: the hole is reused first */
    int32_t one = 1;
    slm_kv_free_cells(kv, 1, &one);
    assert_int_equal(slm_kv_n_used(kv), 3);
    assert_int_equal(slm_kv_alloc(kv, 1, &p5[0], &s5[0], c5, NULL), SLM_OK);
    assert_int_equal(c5[0], 1);
    slm_kv_destroy(kv);
}

static void test_seq_ops(void **state) {
    (void)state;
    slm_kv *kv = make(SLM_TYPE_F16, 16, 4);
    int32_t pos[6] = {0, 1, 2, 3, 4, 5}, seq[6] = {0, 0, 0, 0, 0, 0}, cells[6];
    assert_int_equal(slm_kv_alloc(kv, 6, pos, seq, cells, NULL), SLM_OK);
    /* share [0, 3) with seq 2: no new cells */
    assert_int_equal(slm_kv_seq_cp(kv, 0, 2, 0, 3, NULL), SLM_OK);
    assert_int_equal(slm_kv_n_used(kv), 6);
    assert_int_equal(slm_kv_seq_pos_max(kv, 2), 2);
    assert_int_equal(count_visible(kv, 2, 100), 3);
    /* removing seq 0 keeps the shared cells for seq 2, frees the rest */
    assert_int_equal(slm_kv_seq_rm(kv, 0, -1, -1, NULL), SLM_OK);
    assert_int_equal(slm_kv_n_used(kv), 3);
    assert_int_equal(slm_kv_used_end(kv), 3);
    assert_int_equal(slm_kv_seq_pos_max(kv, 0), -1);
    /* a range removal */
    assert_int_equal(slm_kv_seq_rm(kv, 2, 1, 2, NULL), SLM_OK);
    assert_int_equal(count_visible(kv, 2, 100), 2);
    assert_int_equal(slm_kv_seq_rm(kv, 7, 0, -1, NULL), SLM_ERR_RANGE);
    assert_int_equal(slm_kv_seq_cp(kv, 0, -1, 0, -1, NULL), SLM_ERR_RANGE);
    /* every sequence */
    assert_int_equal(slm_kv_seq_rm(kv, -1, -1, -1, NULL), SLM_OK);
    assert_int_equal(slm_kv_n_used(kv), 0);
    assert_int_equal(slm_kv_used_end(kv), 0);
    slm_kv_clear(kv);
    assert_int_equal(slm_kv_seq_pos_max(kv, 2), -1);
    slm_kv_destroy(kv);
}

static void test_store(void **state) {
    (void)state;
    float k[64], v[64];
    for (int i = 0; i < 64; i++) k[i] = (float)i * 0.25f, v[i] = -(float)i;
    slm_kv *kv = make(SLM_TYPE_F32, 4, 1);
    slm_kv_store(kv, 1, 2, k, v);
    assert_memory_equal(slm_kv_k_row(kv, 1, 2), k, sizeof k);
    assert_memory_equal(slm_kv_v_row(kv, 1, 2), v, sizeof v);
    assert_int_equal(slm_kv_row_bytes(kv), sizeof k);
    assert_int_equal(slm_kv_bytes(kv), 2 * 2 * 4 * sizeof k);
    slm_kv_destroy(kv);
    kv = make(SLM_TYPE_F16, 4, 1);
    slm_kv_store(kv, 0, 3, k, v);
    const uint16_t *h = slm_kv_k_row(kv, 0, 3);
    for (int i = 0; i < 64; i++) assert_true(slm_f16_to_f32(h[i]) == k[i]); /* exact in f16 */
    slm_kv_destroy(kv);
    kv = make(SLM_TYPE_Q8_0, 4, 1);
    assert_int_equal(slm_kv_row_bytes(kv), 2 * 34);
    slm_kv_destroy(kv);

    /* a row stored in two halves (two heads of 32) is the row stored whole, in every type */
    const slm_type types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        kv = make(types[i], 4, 1);
        slm_kv_store(kv, 1, 0, k, v);
        slm_kv_store_part(kv, 1, 1, 32, 32, k + 32, v + 32);
        slm_kv_store_part(kv, 1, 1, 0, 32, k, v);
        const size_t rb = slm_kv_row_bytes(kv);
        assert_memory_equal(slm_kv_k_row(kv, 1, 1), slm_kv_k_row(kv, 1, 0), rb);
        assert_memory_equal(slm_kv_v_row(kv, 1, 1), slm_kv_v_row(kv, 1, 0), rb);
        slm_kv_destroy(kv);
    }
}

static void test_limits_and_oom(void **state) {
    (void)state;
    slm_kv *kv = NULL;
    slm_kv_params p = {.type = SLM_TYPE_Q4_K, .n_cells = 4, .n_layer = 1, .n_embd_kv = 256, .n_seq_max = 1};
    assert_int_equal(slm_kv_create(&p, &kv, NULL), SLM_ERR_UNSUPPORTED);
    p.type = SLM_TYPE_F16, p.n_cells = 0;
    assert_int_equal(slm_kv_create(&p, &kv, NULL), SLM_ERR_RANGE);
    p.n_cells = 4, p.n_seq_max = SLM_KV_MAX_SEQ + 1;
    assert_int_equal(slm_kv_create(&p, &kv, NULL), SLM_ERR_RANGE);
    p.n_seq_max = 1, p.type = SLM_TYPE_Q8_0, p.n_embd_kv = 33;
    assert_int_equal(slm_kv_create(&p, &kv, NULL), SLM_ERR_UNSUPPORTED);
    assert_null(kv);
    p.n_embd_kv = 64;
    for (long n = 1;; n++) {
        slm_fault_arm(n);
        slm_status st = slm_kv_create(&p, &kv, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(kv);
    }
    slm_kv_destroy(kv);
    slm_kv_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_and_visibility), cmocka_unit_test(test_seq_ops),
        cmocka_unit_test(test_store), cmocka_unit_test(test_limits_and_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
