/*
 * tests/test_quant_dequant.c: scalar dequantization reproduces the reference runtime bit
 * for bit. For every tiny-llama-TYPE model listed in shared/reference/dequant/index.json,
 * blk.0.ffn_down.weight dequantized by the type table's to_float must equal the reference
 * .f32 dump byte for byte; on a mismatch the first differing index and values are printed.
 * Also pins the type table's block sizes to the ecosystem's.
 */
#include "testutil.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant_testutil.h"


static void test_block_sizes(void **state) {
    (void)state;
    static const struct { slm_type t; int64_t bs; size_t size; } want[] = {
        {SLM_TYPE_F32, 1, 4},        {SLM_TYPE_F16, 1, 2},        {SLM_TYPE_BF16, 1, 2},
        {SLM_TYPE_Q4_0, 32, 18},     {SLM_TYPE_Q4_1, 32, 20},     {SLM_TYPE_Q5_0, 32, 22},
        {SLM_TYPE_Q5_1, 32, 24},     {SLM_TYPE_Q8_0, 32, 34},     {SLM_TYPE_Q8_1, 32, 36},
        {SLM_TYPE_Q2_K, 256, 84},    {SLM_TYPE_Q3_K, 256, 110},   {SLM_TYPE_Q4_K, 256, 144},
        {SLM_TYPE_Q5_K, 256, 176},   {SLM_TYPE_Q6_K, 256, 210},   {SLM_TYPE_Q8_K, 256, 292},
        {SLM_TYPE_IQ4_NL, 32, 18},   {SLM_TYPE_IQ4_XS, 256, 136},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const slm_type_traits *tr = slm_type_traits_of(want[i].t);
        assert_non_null(tr);
        assert_int_equal(tr->block_size, want[i].bs);
        assert_int_equal(tr->type_size, want[i].size);
        assert_non_null(tr->to_float);
    }
}

/* Dequantizes one model's tensor and compares; returns 0 when bit-identical (or skipped). */
static int check_one(const char *model, const char *tensor, const char *type_name,
                     int64_t rows, int64_t cols, const char *ref_file) {
    char rpath[4096], rel[1024];
    int rc = -1;
    snprintf(rel, sizeof rel, "reference/dequant/%s", ref_file);
    if (!tu_shared_path(rpath, sizeof rpath, rel)) return 0; /* message printed */
    slm_gguf *g = NULL;
    const slm_gguf_tensor *t = NULL;
    size_t rsize = 0;
    uint8_t *rbuf = (uint8_t *)tu_read_file(rpath, &rsize);
    float *out = NULL;
    const int64_t n = rows * cols;
    slm_type want;
    size_t row_bytes;
    if (!rbuf) { fprintf(stderr, "%s: cannot read %s\n", model, rpath); goto done; }
    if (tu_load_tensor(model, tensor, &g, &t) != 0) goto done;
    if (!slm_type_from_name(type_name, &want)) { fprintf(stderr, "%s: unknown type %s\n", model, type_name); goto done; }
    if (t->type != want) { fprintf(stderr, "%s: type %s, index says %s\n", model, slm_type_name(t->type), type_name); goto done; }
    if (t->ne[0] != cols || slm_gguf_tensor_nelements(t) != n) { fprintf(stderr, "%s: unexpected shape\n", model); goto done; }
    if (rsize != (size_t)n * sizeof(float)) { fprintf(stderr, "%s: reference has %zu bytes\n", model, rsize); goto done; }
    const slm_type_traits *tr = slm_type_traits_of(want);
    if (!tr->to_float) { fprintf(stderr, "%s: no to_float\n", model); goto done; }
    out = malloc((size_t)n * sizeof(float));
    if (!out) goto done;
    /* row by row, as the engine does */
    assert_true(slm_type_row_bytes(want, cols, &row_bytes));
    for (int64_t r = 0; r < rows; r++) tr->to_float((const uint8_t *)t->data + (size_t)r * row_bytes, out + r * cols, cols);
    if (memcmp(out, rbuf, (size_t)n * sizeof(float)) != 0) {
        for (int64_t i = 0; i < n; i++) {
            float ref;
            memcpy(&ref, rbuf + i * 4, 4);
            uint32_t a, b;
            memcpy(&a, &out[i], 4);
            memcpy(&b, &ref, 4);
            if (a != b) {
                fprintf(stderr, "%s (%s): first mismatch at %" PRId64 " (row %" PRId64 ", col %" PRId64 "): got %.9g (0x%08x), reference %.9g (0x%08x)\n",
                        model, type_name, i, i / cols, i % cols, out[i], a, ref, b);
                break;
            }
        }
        goto done;
    }
    fprintf(stderr, "ok: %s (%s) %" PRId64 " values bit-identical\n", model, type_name, n);
    rc = 0;
done:
    free(out);
    free(rbuf);
    slm_gguf_close(g);
    return rc;
}

static void test_dequant_matches_reference(void **state) {
    (void)state;
    char ipath[4096];
    TU_SHARED_OR_SKIP(ipath, "reference/dequant/index.json");
    json_error_t jerr;
    json_t *index = json_load_file(ipath, 0, &jerr);
    assert_non_null(index);
    const char *model;
    json_t *e;
    int failures = 0, checked = 0;
    json_object_foreach(index, model, e) {
        json_t *shape = json_object_get(e, "shape_rows_cols");
        const char *tensor = json_string_value(json_object_get(e, "tensor"));
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *file = json_string_value(json_object_get(e, "file"));
        assert_non_null(tensor);
        assert_non_null(type);
        assert_non_null(file);
        assert_int_equal(json_array_size(shape), 2);
        int64_t rows = json_integer_value(json_array_get(shape, 0));
        int64_t cols = json_integer_value(json_array_get(shape, 1));
        if (check_one(model, tensor, type, rows, cols, file) != 0) failures++;
        checked++;
    }
    json_decref(index);
    assert_true(checked >= 14);
    assert_int_equal(failures, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_dequant_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
