/*
 * engine/classify.c: classification over text labels (slm_ctx_classify in slmesh.h):
 * tokenize each label as a continuation, score them all with slm_ctx_score_labels (the
 * prompt evaluated once, each label on top of its KV cells) and normalise over the labels.
 *
 * Allocates the token arrays per call. Thread-safety: as the context. Non-goals: length
 * normalisation, calibration (the task layer's), constrained label generation (a grammar
 * of the labels does that through slm_ctx_generate).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "engine/engine.h"

slm_status slm_ctx_classify(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                            const char *const *labels, size_t n_labels, double *logprob, double *prob, char *err) {
    if (n_labels < 1 || n_labels > SLM_CTX_MAX_LABELS || !labels)
        return slm_errf(err, SLM_ERR_RANGE, "%zu labels outside [1, %d]", n_labels, SLM_CTX_MAX_LABELS);
    slm_status st = SLM_OK;
    int32_t *ids = slm_malloc(n_labels * SLM_CLASSIFY_MAX_LABEL_TOKENS * sizeof *ids); /* [n_labels][max] */
    const int32_t **rows = slm_malloc(n_labels * sizeof *rows);
    size_t *lens = slm_malloc(n_labels * sizeof *lens);
    float *lp = slm_malloc(n_labels * sizeof *lp);
    if (!ids || !rows || !lens || !lp) {
        st = slm_errf(err, SLM_ERR_NOMEM, "classify buffers");
        goto done;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!labels[i]) {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "label %zu is NULL", i);
            goto done;
        }
        int32_t *row = ids + i * SLM_CLASSIFY_MAX_LABEL_TOKENS;
        st = slm_model_tokenize(c->m, labels[i], strlen(labels[i]), 0, row, SLM_CLASSIFY_MAX_LABEL_TOKENS, &lens[i], err);
        if (st == SLM_ERR_FULL) st = slm_errf(err, SLM_ERR_LIMIT, "label %zu has more than %d tokens", i, SLM_CLASSIFY_MAX_LABEL_TOKENS);
        if (st == SLM_OK && lens[i] == 0) st = slm_errf(err, SLM_ERR_INVALID_ARG, "label %zu ('%.40s') has no tokens", i, labels[i]);
        if (st) goto done;
        rows[i] = row;
    }
    if ((st = slm_ctx_score_labels(c, seq, prompt, n_prompt, rows, lens, (int32_t)n_labels, lp, err))) goto done;
    double best = -INFINITY, z = 0;
    for (size_t i = 0; i < n_labels; i++) best = lp[i] > best ? lp[i] : best;
    for (size_t i = 0; i < n_labels; i++) z += exp((double)lp[i] - best); /* softmax over the labels */
    for (size_t i = 0; i < n_labels; i++) {
        if (logprob) logprob[i] = lp[i];
        if (prob) prob[i] = isfinite(best) ? exp((double)lp[i] - best) / z : 1.0 / (double)n_labels;
    }
done:
    slm_free(ids);
    slm_free(rows);
    slm_free(lens);
    slm_free(lp);
    return st;
}
