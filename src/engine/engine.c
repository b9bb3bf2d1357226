/*
 * engine/engine.c: contexts over a model: KV cache, thread pool and scratch sized once;
 * batch decoding with per-token positions, sequence ids and logits flags; the KV sequence
 * operations of slmesh.h.
 *
 * A decode validates the whole batch first, takes cells for its tokens, runs the forward
 * pass and records where each token's logits went. On failure the cells are given back, so
 * the cache is as before. Thread-safety: one thread at a time per context (slmesh.h).
 * Non-goals: splitting a batch larger than n_batch (the caller's or slm_ctx_generate's).
 */
#include "engine/engine.h"
#include "slmesh/grammar.h"

#include <string.h>
#include <time.h>

#include "core/core.h"

/* ---- create / destroy ------------------------------------------------------------------- */

static slm_type kv_storage_type(slm_cache_type t) {
    switch (t) {
    case SLM_CACHE_F32: return SLM_TYPE_F32;
    case SLM_CACHE_Q8_0: return SLM_TYPE_Q8_0;
    default: return SLM_TYPE_F16;
    }
}

slm_status slm_ctx_create(const slm_model *m, const slm_ctx_params *params, slm_ctx **out, char *err) {
    slm_ctx_params p = {0};
    *out = NULL;
    if (params) p = *params;
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_batch == 0) p.n_batch = SLM_CTX_DEFAULT_BATCH;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_seq_max == 0) p.n_seq_max = 1;
    if (p.n_threads == 0) p.n_threads = slm_pool_default_threads();
    if (p.n_ctx < 1 || p.n_ctx > SLM_KV_MAX_CELLS)
        return slm_errf(err, SLM_ERR_RANGE, "n_ctx %d outside [1, %d]", p.n_ctx, SLM_KV_MAX_CELLS);
    if (p.n_batch < 1 || p.n_batch > SLM_CTX_MAX_BATCH)
        return slm_errf(err, SLM_ERR_RANGE, "n_batch %d outside [1, %d]", p.n_batch, SLM_CTX_MAX_BATCH);
    if (p.kv_type != SLM_CACHE_F16 && p.kv_type != SLM_CACHE_F32 && p.kv_type != SLM_CACHE_Q8_0)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "unknown KV type %d", (int)p.kv_type);

    slm_ctx *c = slm_calloc(1, sizeof *c);
    if (!c) return slm_errf(err, SLM_ERR_NOMEM, "context");
    c->m = m;
    c->n_ctx = p.n_ctx;
    c->n_batch = p.n_batch;
    c->n_seq_max = p.n_seq_max;
    const slm_kv_params kp = {.type = kv_storage_type(p.kv_type), .n_cells = p.n_ctx, .n_layer = m->hp.n_layer,
                              .n_embd_kv = (int64_t)m->hp.n_head_kv * m->hp.head_dim, .n_seq_max = p.n_seq_max};
    slm_status st = slm_kv_create(&kp, &c->kv, err);
    if (st == SLM_OK) st = slm_pool_create(p.n_threads, &c->pool, err);
    if (st == SLM_OK) st = slm_fwd_create(m, p.n_batch, p.n_ctx, kp.type, p.n_threads, &c->fwd, err);
    if (st == SLM_OK) {
        c->cells = slm_malloc((size_t)p.n_batch * sizeof *c->cells);
        c->out_idx = slm_malloc((size_t)p.n_batch * sizeof *c->out_idx);
        c->logit_row = slm_malloc((size_t)p.n_batch * sizeof *c->logit_row);
        if (!c->cells || !c->out_idx || !c->logit_row) st = slm_errf(err, SLM_ERR_NOMEM, "context buffers");
    }
    if (st != SLM_OK) {
        slm_ctx_destroy(c);
        return st;
    }
    *out = c;
    return SLM_OK;
}

void slm_ctx_destroy(slm_ctx *c) {
    if (!c) return;
    slm_fwd_destroy(c->fwd);
    slm_pool_destroy(c->pool);
    slm_kv_destroy(c->kv);
    slm_free(c->cells);
    slm_free(c->out_idx);
    slm_free(c->logit_row);
    slm_free(c->logits);
    slm_grammar_vocab_destroy(c->gvocab);
    slm_free(c);
}

const slm_model *slm_ctx_model(const slm_ctx *c) { return c->m; }
int32_t slm_ctx_n_ctx(const slm_ctx *c) { return c->n_ctx; }

/* ---- decode ----------------------------------------------------------------------------- */

static slm_status check_batch(const slm_ctx *c, const slm_batch *b, char *err) {
    if (b->n_tokens < 1 || b->n_tokens > c->n_batch)
        return slm_errf(err, SLM_ERR_RANGE, "batch of %d tokens outside [1, %d]", b->n_tokens, c->n_batch);
    if (!b->token || !b->pos || !b->seq_id) return slm_errf(err, SLM_ERR_INVALID_ARG, "batch arrays missing");
    for (int32_t i = 0; i < b->n_tokens; i++) {
        if (b->token[i] < 0 || b->token[i] >= c->m->hp.n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "token %d: id %d outside [0, %d)", i, b->token[i], c->m->hp.n_vocab);
        if (b->seq_id[i] < 0 || b->seq_id[i] >= c->n_seq_max)
            return slm_errf(err, SLM_ERR_RANGE, "token %d: sequence %d outside [0, %d)", i, b->seq_id[i], c->n_seq_max);
        if (b->pos[i] < 0) return slm_errf(err, SLM_ERR_RANGE, "token %d: negative position %d", i, b->pos[i]);
    }
    return SLM_OK;
}

/* Make room for n output rows of logits. */
static slm_status reserve_logits(slm_ctx *c, int32_t n, char *err) {
    if (n <= c->logits_rows) return SLM_OK;
    size_t bytes;
    if (!slm_mul_size((size_t)n * sizeof(float), (size_t)c->m->hp.n_vocab, &bytes))
        return slm_errf(err, SLM_ERR_LIMIT, "logits buffer size overflows");
    float *l = slm_realloc(c->logits, bytes);
    if (!l) return slm_errf(err, SLM_ERR_NOMEM, "logits for %d rows", n);
    c->logits = l;
    c->logits_rows = n;
    return SLM_OK;
}

slm_status slm_ctx_decode(slm_ctx *c, const slm_batch *b, char *err) {
    c->last_n = 0; /* the previous logits are gone whatever happens next */
    slm_status st = check_batch(c, b, err);
    if (st) return st;
    const int32_t n = b->n_tokens;
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        const bool want = b->logits ? b->logits[i] : i == n - 1;
        c->logit_row[i] = want ? n_out : -1;
        if (want) c->out_idx[n_out++] = i;
    }
    if ((st = reserve_logits(c, n_out, err))) return st;
    if ((st = slm_kv_alloc(c->kv, n, b->pos, b->seq_id, c->cells, err))) return st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = slm_model_forward(c->m, c->fwd, c->kv, c->pool, n, b->token, b->pos, b->seq_id, c->cells, n_out, c->out_idx,
                           c->logits, NULL, err);
    if (st) {
        slm_kv_free_cells(c->kv, n, c->cells);
        return st;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->last_n = n;
    c->stats.n_decode++;
    c->stats.n_tokens += (uint64_t)n;
    c->stats.n_outputs += (uint64_t)n_out;
    c->stats.decode_ms += (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    return SLM_OK;
}

void slm_ctx_get_stats(const slm_ctx *c, slm_ctx_stats *out) {
    *out = c->stats;
    out->kv_used = slm_kv_n_used(c->kv);
    out->kv_cells = c->n_ctx;
    out->kv_bytes = slm_kv_bytes(c->kv);
    out->scratch_bytes = slm_fwd_bytes(c->fwd) + (size_t)c->logits_rows * (size_t)c->m->hp.n_vocab * sizeof(float);
}

const float *slm_ctx_logits(const slm_ctx *c, int32_t i) {
    if (i < 0 || i >= c->last_n || c->logit_row[i] < 0) return NULL;
    return c->logits + (size_t)c->logit_row[i] * (size_t)c->m->hp.n_vocab;
}

/* ---- KV sequence operations ---------------------------------------------------------------- */

slm_status slm_ctx_seq_rm(slm_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err) {
    return slm_kv_seq_rm(c->kv, seq, p0, p1, err);
}

slm_status slm_ctx_seq_cp(slm_ctx *c, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err) {
    return slm_kv_seq_cp(c->kv, src, dst, p0, p1, err);
}

int32_t slm_ctx_seq_pos_max(const slm_ctx *c, int32_t seq) { return slm_kv_seq_pos_max(c->kv, seq); }

void slm_ctx_clear(slm_ctx *c) {
    slm_kv_clear(c->kv);
    c->last_n = 0;
}
