/*
 * tests/test_bench.c: the library part of `slmesh bench` (src/bench).
 *
 * Shapes: the tensor plan of every shape x type must have exactly the byte size and the
 * parameter count of the reference runtime's files of that shape (../shared/bench/
 * reference.json: model_size, model_n_params), which checks the shapes and the mixture
 * rules on real dimensions (tied 576-wide embeddings get Q8_0, K types fall back on rows
 * that are not multiples of 256, use_more_bits over 16/24/30 layers). A one-layer build
 * must load in the engine, tokenize and decode, and be the same file for any thread count.
 * Measurement: figures are consistent (mean, median within the samples, sd >= 0).
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/core.h"

static void test_shape_sizes(void **state) {
    (void)state;
    char path[1024];
    TU_SHARED_OR_SKIP(path, "bench/reference.json");
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    assert_non_null(ref);
    json_t *rows = json_object_get(ref, "rows");
    slm_bench_tensor *t = calloc(SLM_BENCH_MAX_TENSORS, sizeof *t);
    assert_non_null(t);
    int checked = 0;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *r = json_array_get(rows, i);
        const char *fn = json_string_value(json_object_get(r, "model_filename"));
        if (!fn || json_integer_value(json_object_get(r, "n_gen")) != 0) continue; /* one row per file */
        char shape[64], type[16];
        const char *mark = strstr(fn, "-shape-");
        assert_non_null(mark);
        snprintf(shape, sizeof shape, "%.*s", (int)(mark - fn), fn);
        snprintf(type, sizeof type, "%.*s", (int)(strlen(mark + 7) - 5), mark + 7);
        const slm_bench_shape *s = slm_bench_shape_find(shape);
        slm_ftype f;
        assert_non_null(s);
        assert_true(slm_quantize_ftype_from_name(type, &f));
        int32_t n = 0;
        uint64_t bytes = 0, params = 0;
        char err[SLM_ERR_LEN] = "";
        assert_int_equal(slm_bench_shape_plan(s, 0, f, t, &n, &bytes, &params, err), SLM_OK);
        printf("%-32s bytes %llu (reference %lld)  params %llu (reference %lld)\n", fn, (unsigned long long)bytes,
               (long long)json_integer_value(json_object_get(r, "model_size")), (unsigned long long)params,
               (long long)json_integer_value(json_object_get(r, "model_n_params")));
        assert_int_equal(bytes, json_integer_value(json_object_get(r, "model_size")));
        assert_int_equal(params, json_integer_value(json_object_get(r, "model_n_params")));
        checked++;
    }
    assert_int_equal(checked, 9);
    free(t);
    json_decref(ref);
}

static void test_shape_lookup(void **state) {
    (void)state;
    const slm_bench_shape *s = slm_bench_shape_find("qwen2.5-0.5b");
    assert_non_null(s);
    assert_string_equal(s->arch, "qwen2");
    assert_true(s->qkv_bias);
    assert_int_equal(s->n_vocab, 151936);
    assert_null(slm_bench_shape_find("gpt-5"));
    assert_null(slm_bench_shape_find(NULL));
}

/* Build one layer of smollm2 (Q4_0) twice with 1 and 2 threads: same bytes; loads. */
static void test_shape_build_loads(void **state) {
    (void)state;
    const slm_bench_shape *s = slm_bench_shape_find("smollm2-135m");
    char *a = tu_write_temp("", 0, ".gguf"), *b = tu_write_temp("", 0, ".gguf"), err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_bench_shape_build(s, 1, SLM_FTYPE_MOSTLY_Q4_0, 7, 1, a, err), SLM_OK);
    assert_int_equal(slm_bench_shape_build(s, 1, SLM_FTYPE_MOSTLY_Q4_0, 7, 2, b, err), SLM_OK);
    size_t la = 0, lb = 0;
    char *da = tu_read_file(a, &la), *db = tu_read_file(b, &lb);
    assert_true(da && db && la == lb && la > 0);
    assert_memory_equal(da, db, la);
    free(da), free(db);

    slm_model *m = NULL;
    slm_status st = slm_model_open(a, NULL, &m, err);
    if (st) fprintf(stderr, "open: %s\n", err);
    assert_int_equal(st, SLM_OK);
    slm_model_desc d;
    slm_model_describe(m, &d);
    assert_int_equal(d.n_vocab, 49152);
    assert_int_equal(d.n_embd, 576);
    assert_int_equal(d.n_layer, 1);
    assert_int_equal(d.n_head_kv, 3);
    assert_string_equal(d.ftype, "q4_0");
    int32_t ids[64];
    size_t n = 0;
    assert_int_equal(slm_model_tokenize(m, "hello world", 11, SLM_TOKENIZE_ADD_BOS, ids, 64, &n, err), SLM_OK);
    assert_true(n >= 2 && ids[0] == 1);

    slm_bench_params p = {.n_prompt = 8, .n_gen = 4, .reps = 3, .n_threads = 2, .seed = 3};
    slm_bench_result pp, tg;
    assert_int_equal(slm_bench_run(m, &p, &pp, &tg, err), SLM_OK);
    assert_int_equal(pp.n_prompt, 8);
    assert_int_equal(pp.n_gen, 0);
    assert_int_equal(tg.n_gen, 4);
    assert_int_equal(tg.reps, 3);
    const slm_bench_result *rs[2] = {&pp, &tg};
    for (int k = 0; k < 2; k++) {
        const slm_bench_result *r = rs[k];
        double lo = r->ts[0], hi = r->ts[0];
        for (int i = 0; i < r->reps; i++) {
            assert_true(r->ts[i] > 0 && r->ns[i] > 0);
            lo = r->ts[i] < lo ? r->ts[i] : lo, hi = r->ts[i] > hi ? r->ts[i] : hi;
        }
        assert_true(r->avg_ts >= lo && r->avg_ts <= hi && r->median_ts >= lo && r->median_ts <= hi);
        assert_true(r->stddev_ts >= 0);
    }
    p.reps = 0;
    assert_int_equal(slm_bench_run(m, &p, &pp, &tg, err), SLM_ERR_INVALID_ARG);
    slm_model_close(m);
    unlink(a), unlink(b);
    free(a), free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_lookup),
        cmocka_unit_test(test_shape_sizes),
        cmocka_unit_test(test_shape_build_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
