/*
 * engine/score.c: label scoring: the log-probability of each of a list of continuations
 * (class labels, multiple-choice answers) after a prompt, for the task heads' classifiers
 * and for confidence signals (the margin between the best two labels).
 *
 * The prompt is evaluated once on the sequence; each label is then evaluated after it and
 * removed again (slm_ctx_seq_rm), so the sequence ends as "prompt evaluated" and the cost is
 * the prompt once plus every label's tokens but its last. Allocates one row of logits per
 * call. Thread-safety: as the context. Non-goals: length normalisation (the caller divides
 * by the label's length if it wants), batching labels over several sequences (later).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "engine/engine.h"

/* log-softmax of logits[n] at id, with the sum in double. */
static double log_prob(const float *logits, int32_t n, int32_t id) {
    float max = logits[0];
    for (int32_t i = 1; i < n; i++) max = logits[i] > max ? logits[i] : max;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    return (double)logits[id] - max - log(sum);
}

/* Decode tokens[n] of seq from p0 (n <= n_batch), logits for every token. */
static slm_status decode_run(slm_ctx *c, int32_t seq, const int32_t *tokens, int32_t n, int32_t p0, bool all,
                             int32_t *pos, int32_t *sq, bool *want, char *err) {
    for (int32_t i = 0; i < n; i++) pos[i] = p0 + i, sq[i] = seq, want[i] = all || i == n - 1;
    slm_batch b = {.n_tokens = n, .token = tokens, .pos = pos, .seq_id = sq, .logits = want};
    return slm_ctx_decode(c, &b, err);
}

static slm_status check_labels(const slm_ctx *c, int32_t seq, size_t n_prompt, const int32_t *const *labels,
                               const size_t *n_label, int32_t n_labels, char *err) {
    if (seq < 0 || seq >= c->n_seq_max)
        return slm_errf(err, SLM_ERR_RANGE, "sequence %d outside [0, %d)", seq, c->n_seq_max);
    if (n_prompt < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "empty prompt");
    if (n_labels < 1 || n_labels > SLM_CTX_MAX_LABELS)
        return slm_errf(err, SLM_ERR_RANGE, "%d labels outside [1, %d]", n_labels, SLM_CTX_MAX_LABELS);
    for (int32_t i = 0; i < n_labels; i++) {
        if (!labels[i] || n_label[i] < 1 || n_label[i] > (size_t)c->n_batch)
            return slm_errf(err, SLM_ERR_RANGE, "label %d: %zu tokens outside [1, %d]", i, n_label[i], c->n_batch);
        for (size_t j = 0; j < n_label[i]; j++)
            if (labels[i][j] < 0 || labels[i][j] >= c->m->hp.n_vocab)
                return slm_errf(err, SLM_ERR_RANGE, "label %d: token id %d outside [0, %d)", i, labels[i][j],
                                c->m->hp.n_vocab);
    }
    return SLM_OK;
}

slm_status slm_ctx_score_labels(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                                const int32_t *const *labels, const size_t *n_label, int32_t n_labels,
                                float *logprobs, char *err) {
    slm_status st = check_labels(c, seq, n_prompt, labels, n_label, n_labels, err);
    if (st) return st;
    const int32_t n_vocab = c->m->hp.n_vocab, nb = c->n_batch;
    float *last = slm_malloc((size_t)n_vocab * sizeof *last);
    int32_t *pos = slm_malloc((size_t)nb * sizeof *pos), *sq = slm_malloc((size_t)nb * sizeof *sq);
    bool *want = slm_malloc((size_t)nb * sizeof *want);
    if (!last || !pos || !sq || !want) {
        st = slm_errf(err, SLM_ERR_NOMEM, "label scoring buffers");
        goto done;
    }
    /* the prompt, n_batch tokens at a time; keep its last logits */
    int32_t p = slm_kv_seq_pos_max(c->kv, seq) + 1;
    for (size_t i0 = 0; i0 < n_prompt && st == SLM_OK; i0 += (size_t)nb) {
        const int32_t k = (int32_t)(n_prompt - i0 < (size_t)nb ? n_prompt - i0 : (size_t)nb);
        st = decode_run(c, seq, prompt + i0, k, p, false, pos, sq, want, err);
        p += k;
        if (st == SLM_OK && i0 + (size_t)k == n_prompt)
            memcpy(last, slm_ctx_logits(c, k - 1), (size_t)n_vocab * sizeof *last);
    }
    /* each label: l0 from the prompt's logits, l_j from the logits after l_{j-1} */
    for (int32_t i = 0; i < n_labels && st == SLM_OK; i++) {
        const int32_t len = (int32_t)n_label[i];
        double lp = log_prob(last, n_vocab, labels[i][0]);
        if (len > 1) {
            st = decode_run(c, seq, labels[i], len - 1, p, true, pos, sq, want, err);
            for (int32_t j = 1; st == SLM_OK && j < len; j++) lp += log_prob(slm_ctx_logits(c, j - 1), n_vocab, labels[i][j]);
            slm_kv_seq_rm(c->kv, seq, p, -1, NULL);
        }
        logprobs[i] = (float)lp;
    }
    c->last_n = 0; /* the logits of the last label are not the sequence's */
done:
    slm_free(last), slm_free(pos), slm_free(sq), slm_free(want);
    return st;
}
