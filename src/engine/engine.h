/*
 * engine/engine.h: the context behind the public slm_ctx handle (slmesh.h), shared by
 * engine.c (create, decode, KV operations) and generate.c (the sampling loop).
 *
 * Invariants: every buffer is sized at create for n_batch tokens, except the logits, which
 * grow (never shrink) to the largest number of output rows a batch has asked for.
 * Thread-safety: one thread at a time per context. Non-goals: scheduling many requests
 * (the server's batching scheduler builds slm_batch values over one context).
 */
#ifndef SLMESH_ENGINE_H
#define SLMESH_ENGINE_H

#include "kv/kv.h"
#include "model/model.h"
#include "pool/pool.h"
#include "slmesh/slmesh.h"

#define SLM_CTX_DEFAULT_BATCH 512 /* tokens per decode when the caller does not say */

struct slm_ctx {
    const slm_model *m;       /* borrowed; outlives the context */
    int32_t n_ctx;            /* KV cells */
    int32_t n_batch;          /* most tokens per decode */
    int32_t n_seq_max;        /* sequence ids in [0, n_seq_max) */
    slm_kv *kv;               /* owned */
    slm_pool *pool;           /* owned */
    slm_fwd *fwd;             /* owned scratch */
    int32_t *cells;           /* [n_batch] cells of the batch being decoded, owned */
    int32_t *out_idx;         /* [n_batch] batch indices that want logits, owned */
    int32_t *logit_row;       /* [n_batch] row in logits of each batch token, -1 = none, owned */
    int32_t last_n;           /* tokens in the last decoded batch */
    float *logits;            /* [logits_rows][n_vocab], owned */
    int32_t logits_rows;      /* capacity in rows */
    slm_ctx_stats stats;      /* counters (the kv and memory fields are filled on request) */
    struct slm_grammar_vocab *gvocab; /* owned: token trie for grammar masks, built by the
                                 first constrained generation (generate.c) */
};

#endif /* SLMESH_ENGINE_H */
