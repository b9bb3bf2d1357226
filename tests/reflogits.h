/*
 * tests/reflogits.h: the comparison of the engine with the reference runtime's logits
 * (../shared/reference/logits, see ../shared/reference/README.md), shared by the tests that
 * need it (header-only, static inline; include after testutil.h: uses cmocka's asserts).
 *
 * For a reference file: open the model, evaluate the reference prompt tokens in one batch
 * (teacher forcing), and compare each position's log-softmax with the reference using the
 * README's tolerances (F32/F16/BF16 column or quantized column by the model's weight type);
 * then decode greedily token by token and compare with the reference continuation
 * (required to be identical for stories260K and the F32/F16/BF16 tiny models, reported for
 * the others). When the model has a tokenizer, tokenizing "prompt" with BOS must give
 * "tokens". Prints one line of measured figures per model.
 */
#ifndef SLMESH_REFLOGITS_H
#define SLMESH_REFLOGITS_H

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slmesh/slmesh.h"

/* ---- tolerances: ../shared/reference/README.md, "Tolerances" table ---------------------- */
#define TOL_MEAN_KL_FLOAT  1e-4  /* mean over positions of KL(reference || ours), F32/F16/BF16 */
#define TOL_MAX_KL_FLOAT   1e-3  /* largest KL at one position, F32/F16/BF16 */
#define TOL_MAX_DIFF_FLOAT 0.05  /* largest |logprob difference| where reference > -10 */
#define TOL_TOP1_MISS_FLOAT 0    /* top-1 disagreements where the reference margin > 0.05 */
#define TOL_MEAN_KL_QUANT  4e-3  /* the same four, quantized types */
#define TOL_MAX_KL_QUANT   1.5e-2
#define TOL_MAX_DIFF_QUANT 0.5
#define TOL_TOP1_MISS_QUANT 3    /* "all but three" */
#define LOGPROB_FLOOR      -10.0 /* differences are checked where the reference logprob > this */
#define TOP1_MARGIN        0.05  /* top-1 compared where the reference top-2 margin > this */

typedef struct reflogits_measured {
    double mean_kl, max_kl, max_diff;
    int max_kl_pos, max_diff_pos, max_diff_tok;
    double max_diff_ref, max_diff_ours;
    int top1_miss, top1_checked, first_miss_pos;
    int greedy_same, greedy_n;
} reflogits_measured;

/* log-softmax of n logits into out (double for the comparison). */
static inline void reflogits_log_softmax(const float *logits, int n, double *out) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] > max) max = logits[i];
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    const double lse = max + log(sum);
    for (int i = 0; i < n; i++) out[i] = (double)logits[i] - lse;
}

static inline int reflogits_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Compare position p's distribution; update the figures. */
static inline void reflogits_compare_position(reflogits_measured *ms, int p, const double *ours, json_t *ref_lp, int n_vocab) {
    double kl = 0, best = -INFINITY, second = -INFINITY;
    int ref_top = -1, our_top = 0;
    for (int i = 0; i < n_vocab; i++) {
        const double r = json_number_value(json_array_get(ref_lp, (size_t)i));
        if (r > -INFINITY) kl += exp(r) * (r - ours[i]);
        if (r > LOGPROB_FLOOR && fabs(r - ours[i]) > ms->max_diff) {
            ms->max_diff = fabs(r - ours[i]);
            ms->max_diff_pos = p, ms->max_diff_tok = i, ms->max_diff_ref = r, ms->max_diff_ours = ours[i];
        }
        if (r > best) second = best, best = r, ref_top = i;
        else if (r > second) second = r;
        if (ours[i] > ours[our_top]) our_top = i;
    }
    ms->mean_kl += kl;
    if (kl > ms->max_kl) ms->max_kl = kl, ms->max_kl_pos = p;
    if (best - second > TOP1_MARGIN) {
        ms->top1_checked++;
        if (our_top != ref_top) {
            if (ms->top1_miss == 0) ms->first_miss_pos = p;
            ms->top1_miss++;
        }
    }
}

/* Evaluate the reference file shared/reference/logits/fname against the model it names, or
 * against model_path when that is not NULL (a quantization of the same source, say);
 * prints one line of figures and returns the number of failed checks (0 = pass). */
static inline int reflogits_check(const char *shared, const char *fname, const char *model_path) {
    char path[1024], mpath[1024], err[SLM_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/reference/logits/%s", shared, fname);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    assert_non_null(ref);
    const char *mname = json_string_value(json_object_get(ref, "model"));
    const char *prompt = json_string_value(json_object_get(ref, "prompt"));
    json_t *jtok = json_object_get(ref, "tokens"), *jpos = json_object_get(ref, "positions");
    json_t *jgreedy = json_object_get(ref, "greedy");
    const int n_vocab = (int)json_integer_value(json_object_get(ref, "n_vocab"));
    const int n_tok = (int)json_array_size(jtok), n_greedy = (int)json_array_size(jgreedy);
    assert_true(mname && prompt && n_tok > 0 && (int)json_array_size(jpos) == n_tok);
    if (!strncmp(mname, "tiny-", 5)) snprintf(mpath, sizeof mpath, "%s/models/tiny/%s", shared, mname);
    else snprintf(mpath, sizeof mpath, "%s/models/%s", shared, mname);
    if (model_path) snprintf(mpath, sizeof mpath, "%s", model_path);

    slm_model *m = NULL;
    slm_status st = slm_model_open(mpath, NULL, &m, err);
    if (st != SLM_OK) fprintf(stderr, "%s: open %s: %s: %s\n", fname, mpath, slm_status_str(st), err);
    assert_int_equal(st, SLM_OK);
    slm_model_desc d;
    slm_model_describe(m, &d);
    assert_int_equal(d.n_vocab, n_vocab);
    const bool exact = !strcmp(d.ftype, "f32") || !strcmp(d.ftype, "f16") || !strcmp(d.ftype, "bf16");
    int failures = 0;

    /* the tokenizer reproduces the reference tokens (when this build has one) */
    int32_t ids[1024];
    size_t n_ids = 0;
    st = slm_model_tokenize(m, prompt, strlen(prompt), SLM_TOKENIZE_ADD_BOS, ids, 1024, &n_ids, err);
    if (st == SLM_OK) {
        bool same = (int)n_ids == n_tok;
        for (int i = 0; same && i < n_tok; i++) same = ids[i] == json_integer_value(json_array_get(jtok, (size_t)i));
        if (!same) fprintf(stderr, "%s: FAIL tokenize: %zu ids, reference %d\n", fname, n_ids, n_tok), failures++;
    } else if (st != SLM_ERR_UNSUPPORTED) {
        fprintf(stderr, "%s: FAIL tokenize: %s: %s\n", fname, slm_status_str(st), err);
        failures++;
    }

    /* teacher forcing: the whole prompt in one batch, logits everywhere */
    slm_ctx *c = NULL;
    slm_ctx_params cp = {.n_ctx = n_tok + n_greedy + 8, .n_batch = n_tok, .n_threads = 2};
    st = slm_ctx_create(m, &cp, &c, err);
    assert_int_equal(st, SLM_OK);
    int32_t *tok = calloc((size_t)n_tok, sizeof *tok), *pos = calloc((size_t)n_tok, sizeof *pos);
    int32_t *seq = calloc((size_t)n_tok, sizeof *seq);
    bool *want = calloc((size_t)n_tok, sizeof *want);
    double *lp = calloc((size_t)n_vocab, sizeof *lp);
    assert_true(tok && pos && seq && want && lp);
    for (int i = 0; i < n_tok; i++) {
        tok[i] = (int32_t)json_integer_value(json_array_get(jtok, (size_t)i));
        pos[i] = i, want[i] = true;
    }
    slm_batch b = {.n_tokens = n_tok, .token = tok, .pos = pos, .seq_id = seq, .logits = want};
    st = slm_ctx_decode(c, &b, err);
    if (st) fprintf(stderr, "%s: decode: %s\n", fname, err);
    assert_int_equal(st, SLM_OK);
    reflogits_measured ms = {0};
    for (int p = 0; p < n_tok; p++) {
        reflogits_log_softmax(slm_ctx_logits(c, p), n_vocab, lp);
        reflogits_compare_position(&ms, p, lp, json_object_get(json_array_get(jpos, (size_t)p), "logprobs"), n_vocab);
    }
    ms.mean_kl /= n_tok;

    /* greedy continuation, token by token */
    int32_t next = reflogits_argmax(slm_ctx_logits(c, n_tok - 1), n_vocab);
    ms.greedy_n = n_greedy;
    bool diverged = false;
    for (int i = 0; i < n_greedy; i++) {
        if (!diverged && next == json_integer_value(json_array_get(jgreedy, (size_t)i))) ms.greedy_same++;
        else diverged = true;
        int32_t p1 = n_tok + i, s0 = 0;
        bool w = true;
        slm_batch b1 = {.n_tokens = 1, .token = &next, .pos = &p1, .seq_id = &s0, .logits = &w};
        assert_int_equal(slm_ctx_decode(c, &b1, err), SLM_OK);
        next = reflogits_argmax(slm_ctx_logits(c, 0), n_vocab);
    }

    const double t_mean = exact ? TOL_MEAN_KL_FLOAT : TOL_MEAN_KL_QUANT;
    const double t_max = exact ? TOL_MAX_KL_FLOAT : TOL_MAX_KL_QUANT;
    const double t_diff = exact ? TOL_MAX_DIFF_FLOAT : TOL_MAX_DIFF_QUANT;
    const int t_miss = exact ? TOL_TOP1_MISS_FLOAT : TOL_TOP1_MISS_QUANT;
    printf("%-24s %-5s mean_kl %.2e  max_kl %.2e (pos %d)  max_diff %.4f (pos %d)  top1_miss %d/%d  greedy %d/%d\n",
           fname, d.ftype, ms.mean_kl, ms.max_kl, ms.max_kl_pos, ms.max_diff, ms.max_diff_pos, ms.top1_miss,
           ms.top1_checked, ms.greedy_same, ms.greedy_n);
    if (ms.mean_kl > t_mean) fprintf(stderr, "%s: FAIL mean KL %.3e > %.1e\n", fname, ms.mean_kl, t_mean), failures++;
    if (ms.max_kl > t_max)
        fprintf(stderr, "%s: FAIL max KL %.3e > %.1e at position %d\n", fname, ms.max_kl, t_max, ms.max_kl_pos), failures++;
    if (ms.max_diff > t_diff)
        fprintf(stderr, "%s: FAIL max logprob diff %.4f > %.2f at position %d token %d (reference %.4f, ours %.4f)\n",
                fname, ms.max_diff, t_diff, ms.max_diff_pos, ms.max_diff_tok, ms.max_diff_ref, ms.max_diff_ours),
            failures++;
    if (ms.top1_miss > t_miss)
        fprintf(stderr, "%s: FAIL %d top-1 misses > %d (first at position %d)\n", fname, ms.top1_miss, t_miss,
                ms.first_miss_pos), failures++;
    const bool greedy_required = exact || !strncmp(fname, "stories260K", 11);
    if (greedy_required && ms.greedy_same != ms.greedy_n)
        fprintf(stderr, "%s: FAIL greedy continuation differs at token %d of %d\n", fname, ms.greedy_same, ms.greedy_n),
            failures++;

    free(tok), free(pos), free(seq), free(want), free(lp);
    slm_ctx_destroy(c);
    slm_model_close(m);
    json_decref(ref);
    return failures;
}

#endif /* SLMESH_REFLOGITS_H */
