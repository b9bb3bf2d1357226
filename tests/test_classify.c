/*
 * tests/test_classify.c: slm_ctx_classify on stories260K against explicit per-label scoring
 * (a fresh cache, the prompt and the label decoded together, every label token's
 * log-probability read from its own logits row), the normalisation and argument checks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sample/sample.h"
#include "slmesh/slmesh.h"
#include "testutil.h"

#define TOL 1e-3 /* nats: shared-KV and fresh evaluations differ only in float summation (logprobs are floats) */

static const char *const labels[] = {" there was", " a", " the little girl", " Lily", "!"};
#define N_LABELS (sizeof labels / sizeof labels[0])

/* Sum of log p(label token j | prompt, label tokens < j), all from one fresh decode. */
static double explicit_score(slm_ctx *c, const slm_model *m, const int32_t *prompt, size_t np, const char *label) {
    int32_t toks[64], lab[32];
    size_t nl = 0;
    assert_int_equal(slm_model_tokenize(m, label, strlen(label), 0, lab, 32, &nl, NULL), SLM_OK);
    memcpy(toks, prompt, np * sizeof *toks);
    memcpy(toks + np, lab, nl * sizeof *toks);
    int32_t pos[64], seq[64];
    bool want[64];
    for (size_t i = 0; i < np + nl; i++) pos[i] = (int32_t)i, seq[i] = 0, want[i] = true;
    slm_ctx_clear(c);
    slm_batch b = {.n_tokens = (int32_t)(np + nl), .token = toks, .pos = pos, .seq_id = seq, .logits = want};
    assert_int_equal(slm_ctx_decode(c, &b, NULL), SLM_OK);
    slm_model_desc d;
    slm_model_describe(m, &d);
    double lp = 0;
    for (size_t j = 0; j < nl; j++) {
        slm_sample_out o;
        assert_int_equal(slm_sample_probs(slm_ctx_logits(c, (int32_t)(np + j - 1)), d.n_vocab, lab[j], 0, &o, NULL), SLM_OK);
        lp += o.logprob;
    }
    return lp;
}

static void test_classify(void **state) {
    (void)state;
    char path[1024];
    TU_SHARED_OR_SKIP(path, "models/stories260K.gguf");
    slm_model *m;
    slm_ctx *c;
    assert_int_equal(slm_model_open(path, NULL, &m, NULL), SLM_OK);
    slm_ctx_params cp = {.n_ctx = 256, .n_seq_max = 2, .n_threads = 1};
    assert_int_equal(slm_ctx_create(m, &cp, &c, NULL), SLM_OK);
    int32_t prompt[32];
    size_t np;
    assert_int_equal(slm_model_tokenize(m, "Once upon a time,", 17, SLM_TOKENIZE_ADD_BOS, prompt, 32, &np, NULL), SLM_OK);
    double want[N_LABELS];
    for (size_t i = 0; i < N_LABELS; i++) want[i] = explicit_score(c, m, prompt, np, labels[i]);
    for (int rep = 0; rep < 2; rep++) { /* again on top of what seq 0 holds: same scores */
        double lp[N_LABELS], p[N_LABELS], sum = 0;
        char err[SLM_ERR_LEN] = "";
        if (rep == 0) slm_ctx_clear(c);
        const int32_t before = slm_ctx_seq_pos_max(c, 0);
        assert_int_equal(slm_ctx_classify(c, 0, rep ? prompt + 1 : prompt, rep ? np - 1 : np, labels, N_LABELS, lp, p, err), SLM_OK);
        for (size_t i = 0; i < N_LABELS; i++) {
            if (rep == 0 && fabs(lp[i] - want[i]) > TOL) fprintf(stderr, "label '%s': %f vs %f\n", labels[i], lp[i], want[i]);
            if (rep == 0) assert_true(fabs(lp[i] - want[i]) <= TOL);
            sum += p[i];
        }
        assert_true(fabs(sum - 1.0) < 1e-9);
        for (size_t i = 1; i < N_LABELS; i++) assert_true((lp[i] > lp[0]) == (p[i] > p[0]));
        /* the prompt stays in sequence 0, the labels do not */
        assert_int_equal(slm_ctx_seq_pos_max(c, 0), before + (int32_t)(rep ? np - 1 : np));
    }
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_classify(c, 5, prompt, np, labels, N_LABELS, NULL, NULL, err), SLM_ERR_RANGE);
    assert_int_equal(slm_ctx_classify(c, 0, prompt, np, labels, 0, NULL, NULL, err), SLM_ERR_RANGE);
    const char *const empty[] = {""};
    assert_int_equal(slm_ctx_classify(c, 0, prompt, np, empty, 1, NULL, NULL, err), SLM_ERR_INVALID_ARG);
    slm_ctx_destroy(c);
    slm_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_classify)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
