/*
 * engine/classify.c: label scoring (slm_ctx_classify in slmesh.h): the log-probability of
 * each of a list of labels as the continuation of one prompt, normalised over the labels.
 *
 * The prompt is decoded once into its sequence; its last logits give every label's first
 * token. A label of k tokens then needs one decode of its first k - 1 tokens on top of the
 * prompt's KV cells: in a scratch sequence that shares the prompt's cells (slm_ctx_seq_cp
 * copies cell membership, not data), or in the prompt's own sequence, with the label's
 * cells removed afterwards. Cost: prompt + sum of (k_i - 1) token evaluations.
 * Invariants: afterwards seq holds exactly what it held plus the prompt; scratch_seq is empty.
 * Thread-safety: as the context. Non-goals: batching all labels into one decode (the
 * server's scheduler may do that over slm_ctx_decode).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "engine/engine.h"
#include "sample/sample.h"

typedef struct cls_state {
    int32_t *tok, *pos, *sq; /* [n_batch] owned */
    bool *want;              /* [n_batch] owned */
    float *first;            /* [n_vocab] owned: logits after the prompt */
    int32_t *ids;            /* [SLM_CLASSIFY_MAX_LABEL_TOKENS] owned: one label's tokens */
} cls_state;

/* Decode tokens[n] into seq from position p0 (n <= n_batch when all_logits). */
static slm_status cls_decode(slm_ctx *c, cls_state *s, int32_t seq, const int32_t *tokens, size_t n, int32_t p0,
                             bool all_logits, char *err) {
    for (size_t i0 = 0; i0 < n; i0 += (size_t)c->n_batch) {
        const size_t k = n - i0 < (size_t)c->n_batch ? n - i0 : (size_t)c->n_batch;
        for (size_t i = 0; i < k; i++) {
            s->tok[i] = tokens[i0 + i], s->pos[i] = p0 + (int32_t)(i0 + i), s->sq[i] = seq;
            s->want[i] = all_logits || i0 + i == n - 1;
        }
        const slm_batch b = {.n_tokens = (int32_t)k, .token = s->tok, .pos = s->pos, .seq_id = s->sq, .logits = s->want};
        slm_status st = slm_ctx_decode(c, &b, err);
        if (st) return st;
    }
    return SLM_OK;
}

static slm_status token_logprob(const float *logits, int32_t n_vocab, int32_t id, double *lp, char *err) {
    slm_sample_out o;
    slm_status st = slm_sample_probs(logits, n_vocab, id, 0, &o, err);
    if (st == SLM_OK) *lp += o.logprob;
    return st;
}

/* Score one label on top of the prompt (which ends before position p_end). */
static slm_status score_label(slm_ctx *c, cls_state *s, int32_t seq, int32_t scratch, int32_t p_end, const char *label,
                              double *lp, char *err) {
    const slm_model *m = c->m;
    const int32_t n_vocab = m->hp.n_vocab;
    size_t k = 0;
    slm_status st = slm_model_tokenize(m, label, strlen(label), 0, s->ids, SLM_CLASSIFY_MAX_LABEL_TOKENS, &k, err);
    if (st == SLM_ERR_FULL) return slm_errf(err, SLM_ERR_LIMIT, "label of more than %d tokens", SLM_CLASSIFY_MAX_LABEL_TOKENS);
    if (st) return st;
    if (k == 0) return slm_errf(err, SLM_ERR_INVALID_ARG, "label '%.40s' has no tokens", label);
    if (k - 1 > (size_t)c->n_batch) return slm_errf(err, SLM_ERR_LIMIT, "label of %zu tokens exceeds the batch", k);
    *lp = 0;
    if ((st = token_logprob(s->first, n_vocab, s->ids[0], lp, err)) || k == 1) return st;
    const int32_t ts = scratch >= 0 ? scratch : seq;
    if (scratch >= 0 && (st = slm_ctx_seq_cp(c, seq, scratch, -1, -1, err))) return st;
    st = cls_decode(c, s, ts, s->ids, k - 1, p_end, true, err);
    for (size_t j = 1; st == SLM_OK && j < k; j++) st = token_logprob(slm_ctx_logits(c, (int32_t)j - 1), n_vocab, s->ids[j], lp, err);
    char err2[SLM_ERR_LEN];
    slm_status st2 = scratch >= 0 ? slm_ctx_seq_rm(c, scratch, -1, -1, err2) : slm_ctx_seq_rm(c, seq, p_end, -1, err2);
    if (st == SLM_OK && st2) st = slm_errf(err, st2, "%s", err2);
    return st;
}

slm_status slm_ctx_classify(slm_ctx *c, int32_t seq, int32_t scratch_seq, const int32_t *prompt, size_t n_prompt,
                            const char *const *labels, size_t n_labels, double *logprob, double *prob, char *err) {
    if (seq < 0 || seq >= c->n_seq_max) return slm_errf(err, SLM_ERR_RANGE, "sequence %d outside [0, %d)", seq, c->n_seq_max);
    if (scratch_seq == seq || scratch_seq < -1 || scratch_seq >= c->n_seq_max)
        return slm_errf(err, SLM_ERR_RANGE, "scratch sequence %d invalid for sequence %d", scratch_seq, seq);
    if (n_prompt < 1 || !prompt) return slm_errf(err, SLM_ERR_INVALID_ARG, "empty prompt");
    if (n_labels < 1 || n_labels > SLM_CLASSIFY_MAX_LABELS || !labels)
        return slm_errf(err, SLM_ERR_RANGE, "%zu labels outside [1, %d]", n_labels, SLM_CLASSIFY_MAX_LABELS);
    const size_t nb = (size_t)c->n_batch, nv = (size_t)c->m->hp.n_vocab;
    cls_state s = {.tok = slm_malloc(nb * sizeof *s.tok), .pos = slm_malloc(nb * sizeof *s.pos),
                   .sq = slm_malloc(nb * sizeof *s.sq), .want = slm_malloc(nb * sizeof *s.want),
                   .first = slm_malloc(nv * sizeof *s.first),
                   .ids = slm_malloc(SLM_CLASSIFY_MAX_LABEL_TOKENS * sizeof *s.ids)};
    double *lp = slm_malloc(n_labels * sizeof *lp);
    slm_status st = SLM_OK;
    if (!s.tok || !s.pos || !s.sq || !s.want || !s.first || !s.ids || !lp) {
        st = slm_errf(err, SLM_ERR_NOMEM, "classify buffers");
        goto done;
    }
    char e2[SLM_ERR_LEN];
    if (scratch_seq >= 0) slm_ctx_seq_rm(c, scratch_seq, -1, -1, e2);
    const int32_t p0 = slm_ctx_seq_pos_max(c, seq) + 1;
    if ((st = cls_decode(c, &s, seq, prompt, n_prompt, p0, false, err))) goto done;
    memcpy(s.first, slm_ctx_logits(c, c->last_n - 1), nv * sizeof *s.first);
    const int32_t p_end = p0 + (int32_t)n_prompt;
    double best = -INFINITY;
    for (size_t i = 0; i < n_labels; i++) {
        if (!labels[i]) {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "label %zu is NULL", i);
            goto done;
        }
        if ((st = score_label(c, &s, seq, scratch_seq, p_end, labels[i], &lp[i], err))) goto done;
        if (lp[i] > best) best = lp[i];
    }
    double z = 0; /* normalise: softmax over the labels' log-probabilities */
    for (size_t i = 0; i < n_labels; i++) z += exp(lp[i] - best);
    for (size_t i = 0; i < n_labels; i++) {
        if (logprob) logprob[i] = lp[i];
        if (prob) prob[i] = isfinite(best) ? exp(lp[i] - best) / z : 1.0 / (double)n_labels;
    }
done:
    slm_free(s.tok), slm_free(s.pos), slm_free(s.sq), slm_free(s.want), slm_free(s.first), slm_free(s.ids);
    slm_free(lp);
    return st;
}
