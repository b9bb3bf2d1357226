/* tests/test_head_banking77.c: the accuracy floor of task heads on Banking77
 * (shared/data/banking77): train on train.csv with 10% held out for calibration, n-gram
 * features only, 2 threads; test on test.csv.
 *
 * Release build: the full training set; test ECE <= 0.03 and accuracy >= 92% as the issue
 * asks; this head measures 92.08% (docs/benchmarks.md, "## Task heads"). Sanitizer builds
 * run the same code about ten times slower, so there the head is trained on one example in
 * eight and the floor is the one such a head reaches
 * with margin (HEAD_SANITIZER_FLOOR); the point there is memory safety, not accuracy. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slmesh/head.h"

#if defined(__SANITIZE_ADDRESS__)
#define HEAD_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAD_UNDER_SANITIZER 1
#endif
#endif

#ifdef HEAD_UNDER_SANITIZER
#define HEAD_SUBSAMPLE 8           /* keep one training example in eight (~1,250) */
#define HEAD_MAX_ITER 25           /* stop the solver early, and do not refit */
#define HEAD_REFIT false
#define HEAD_ACCURACY_FLOOR 0.72   /* such a head scores 0.77 */
#define HEAD_ECE_CEILING 0.08      /* 125 validation examples: noisy calibration */
#else
#define HEAD_SUBSAMPLE 1
#define HEAD_MAX_ITER 0            /* 0: the default */
#define HEAD_REFIT true
#define HEAD_ACCURACY_FLOOR 0.92 /* the floor; measured 0.9208 (LR + SVM scores) */
#define HEAD_ECE_CEILING 0.03
#endif

static void test_banking77_floor(void **state) {
    (void)state;
    char tr_path[4096], te_path[4096], err[SLM_ERR_LEN];
    slm_head_data *all = NULL, *tr = NULL, *te = NULL;
    slm_head *h = NULL;
    slm_head_train_opts o;
    slm_head_train_report rep;
    slm_head_eval_result r;
    TU_SHARED_OR_SKIP(tr_path, "data/banking77/train.csv");
    TU_SHARED_OR_SKIP(te_path, "data/banking77/test.csv");
    assert_int_equal(slm_head_data_load(tr_path, "text", "category", &all, err), SLM_OK);
    assert_int_equal(slm_head_data_load(te_path, "text", "category", &te, err), SLM_OK);
    assert_int_equal(slm_head_data_count(all), 10003);
    assert_int_equal(slm_head_data_count(te), 3080);
    assert_int_equal(slm_head_data_create(&tr, err), SLM_OK);
    for (size_t i = 0; i < slm_head_data_count(all); i += HEAD_SUBSAMPLE) {
        size_t len;
        const char *t = slm_head_data_text(all, i, &len);
        assert_int_equal(slm_head_data_add(tr, t, len, slm_head_data_label(all, i), err), SLM_OK);
    }
    slm_head_train_opts_default(&o);
    o.threads = 2;
    if (HEAD_MAX_ITER) o.max_iter = HEAD_MAX_ITER;
    o.refit = HEAD_REFIT;
    assert_int_equal(slm_head_train(tr, NULL, &o, &h, &rep, err), SLM_OK);
    assert_int_equal(slm_head_eval(h, te, 2, &r, err), SLM_OK);
    fprintf(stderr, "banking77 (1/%d of train): %zu train, %zu val, %.2f s, %d iterations; test accuracy %.4f, "
            "macro F1 %.4f, ECE %.4f (val ECE %.4f -> %.4f)\n", HEAD_SUBSAMPLE, rep.n_train, rep.n_val,
            rep.seconds_total, rep.iterations, r.accuracy, r.macro_f1, r.ece, rep.ece_before, rep.ece_after);
    assert_true(r.accuracy >= HEAD_ACCURACY_FLOOR);
    assert_true(r.ece <= HEAD_ECE_CEILING);
    assert_true(rep.ece_after <= rep.ece_before);
    slm_head_eval_free(&r);
    slm_head_destroy(h);
    slm_head_data_destroy(all);
    slm_head_data_destroy(tr);
    slm_head_data_destroy(te);
}

/* Open set, as `slmesh head bench`: train without 10 of the 77 intents (every 7.7th label in
 * sorted order), threshold for 4% false escalation on validation, test on all of test.csv
 * with the left-out intents as out of scope. Measured (confidence score): 4.03% of in-scope
 * test texts escalated, 24.25% out-of-scope recall; the issue aims at 80%, which no score of
 * this head reaches (docs/benchmarks.md). Release build only: a second full training. */
#define OPEN_HOLDOUT 10
#define OPEN_RECALL_FLOOR 0.20     /* measured 0.2425 */
#define OPEN_FALSE_ESC_CEILING 0.055 /* target 0.04 on validation; measured 0.0403 on test */

#ifndef HEAD_UNDER_SANITIZER
static int cmp_label(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
#endif

static void test_banking77_open_set(void **state) {
    (void)state;
#ifdef HEAD_UNDER_SANITIZER
    skip();
#else
    char tr_path[4096], te_path[4096], err[SLM_ERR_LEN];
    slm_head_data *all = NULL, *tr = NULL, *te = NULL;
    slm_head *h = NULL;
    slm_head_train_opts o;
    slm_head_eval_result r;
    const char *drop[OPEN_HOLDOUT];
    TU_SHARED_OR_SKIP(tr_path, "data/banking77/train.csv");
    TU_SHARED_OR_SKIP(te_path, "data/banking77/test.csv");
    assert_int_equal(slm_head_data_load(tr_path, "text", "category", &all, err), SLM_OK);
    assert_int_equal(slm_head_data_load(te_path, "text", "category", &te, err), SLM_OK);
    /* the label set in byte-wise order, as heads index it */
    size_t n = slm_head_data_count(all), k = 0;
    const char **labels = malloc(n * sizeof *labels);
    assert_non_null(labels);
    for (size_t i = 0; i < n; i++) labels[i] = slm_head_data_label(all, i);
    qsort(labels, n, sizeof *labels, cmp_label);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(labels[k - 1], labels[i])) labels[k++] = labels[i];
    assert_int_equal(k, 77);
    for (size_t c = 0; c < OPEN_HOLDOUT; c++) drop[c] = labels[c * k / OPEN_HOLDOUT];
    assert_int_equal(slm_head_data_create(&tr, err), SLM_OK);
    for (size_t i = 0; i < slm_head_data_count(all); i++) {
        size_t len, c;
        const char *t = slm_head_data_text(all, i, &len), *y = slm_head_data_label(all, i);
        for (c = 0; c < OPEN_HOLDOUT && strcmp(y, drop[c]); c++) {}
        if (c == OPEN_HOLDOUT) assert_int_equal(slm_head_data_add(tr, t, len, y, err), SLM_OK);
    }
    slm_head_train_opts_default(&o);
    o.threads = 2;
    assert_int_equal(slm_head_train(tr, NULL, &o, &h, NULL, err), SLM_OK);
    assert_int_equal(slm_head_eval(h, te, 2, &r, err), SLM_OK);
    fprintf(stderr, "banking77 open set: %zu in scope, %zu out of scope; false escalation %.4f, out-of-scope "
            "recall %.4f\n", r.n_in_scope, r.n_out_of_scope, r.escalation_rate, r.oos_recall);
    assert_int_equal(r.n_out_of_scope, 400);
    assert_true(r.oos_recall >= OPEN_RECALL_FLOOR);
    assert_true(r.escalation_rate <= OPEN_FALSE_ESC_CEILING);
    slm_head_eval_free(&r);
    slm_head_destroy(h);
    free(labels);
    slm_head_data_destroy(all);
    slm_head_data_destroy(tr);
    slm_head_data_destroy(te);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_banking77_floor),
                                       cmocka_unit_test(test_banking77_open_set)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
