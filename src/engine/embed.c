/*
 * engine/embed.c: sentence embeddings for the task heads and /v1/embeddings: the final
 * normalised hidden states of a text's tokens (as the reference runtime's embedding mode
 * takes them, after output_norm), mean-pooled over the tokens and L2-normalised.
 *
 * The text is evaluated as sequence seq from position 0 (causal attention, as the
 * reference does for decoder models); the sequence is cleared before and after, so the
 * KV cache of the other sequences is untouched. Allocates one hidden-state buffer per call.
 * Thread-safety: as the context. Non-goals: reranking (RANK pooling), encoder models
 * (BERT: a later architecture row), matryoshka truncation (the caller's).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "engine/engine.h"

int32_t slm_ctx_n_embd(const slm_ctx *c) { return c->m->hp.n_embd; }

slm_status slm_ctx_embed(slm_ctx *c, int32_t seq, const int32_t *tokens, size_t n, float *out, char *err) {
    const slm_hparams *hp = &c->m->hp;
    if (seq < 0 || seq >= c->n_seq_max)
        return slm_errf(err, SLM_ERR_RANGE, "sequence %d outside [0, %d)", seq, c->n_seq_max);
    if (n < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "no tokens to embed");
    if (n > (size_t)c->n_ctx) return slm_errf(err, SLM_ERR_FULL, "%zu tokens exceed the context of %d", n, c->n_ctx);
    if (hp->pooling == SLM_POOLING_RANK)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "the model is a reranker (pooling_type rank), not an embedding model");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "token %zu: id %d outside [0, %d)", i, tokens[i], hp->n_vocab);
    const size_t e = (size_t)hp->n_embd, nb = (size_t)c->n_batch;
    float *hidden = slm_malloc(nb * e * sizeof *hidden);
    double *acc = slm_calloc(e, sizeof *acc);
    int32_t *pos = slm_malloc(nb * sizeof *pos), *sq = slm_malloc(nb * sizeof *sq);
    slm_status st = SLM_OK;
    if (!hidden || !acc || !pos || !sq) {
        st = slm_errf(err, SLM_ERR_NOMEM, "embedding buffers");
        goto done;
    }
    c->last_n = 0;
    slm_kv_seq_rm(c->kv, seq, -1, -1, NULL);
    for (size_t i0 = 0; i0 < n && st == SLM_OK; i0 += nb) {
        const int32_t k = (int32_t)(n - i0 < nb ? n - i0 : nb);
        for (int32_t i = 0; i < k; i++) pos[i] = (int32_t)i0 + i, sq[i] = seq, c->out_idx[i] = i;
        st = slm_kv_alloc(c->kv, k, pos, sq, c->cells, err);
        if (st == SLM_OK)
            st = slm_model_forward(c->m, c->fwd, c->kv, c->pool, k, tokens + i0, pos, sq, c->cells, k, c->out_idx, NULL,
                                   hidden, err);
        for (int32_t i = 0; st == SLM_OK && i < k; i++) {
            const size_t p = i0 + (size_t)i; /* position of this hidden state */
            if ((hp->pooling == SLM_POOLING_CLS && p != 0) || (hp->pooling == SLM_POOLING_LAST && p != n - 1)) continue;
            for (size_t d = 0; d < e; d++) acc[d] += hidden[(size_t)i * e + d];
        }
    }
    slm_kv_seq_rm(c->kv, seq, -1, -1, NULL);
    if (st) goto done;
    /* mean (CLS and LAST summed one state), then L2 normalisation (a zero vector stays zero) */
    const double count = hp->pooling == SLM_POOLING_MEAN ? (double)n : 1.0;
    double ss = 0;
    for (size_t d = 0; d < e; d++) {
        acc[d] /= count;
        ss += acc[d] * acc[d];
    }
    const double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (size_t d = 0; d < e; d++) out[d] = (float)(acc[d] * inv);
done:
    slm_free(hidden), slm_free(acc), slm_free(pos), slm_free(sq);
    return st;
}
