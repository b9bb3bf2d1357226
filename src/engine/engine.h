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
                                 first constrained generation (gstep.c) */
    int32_t *geog;            /* [n_geog] end-of-generation ids for grammar matchers, owned,
                                 built with gvocab */
    int32_t n_geog;
};

/* ---- grammar steps (gstep.c), shared by generate.c and the scheduler ----------------------
 * One constrained sequence: begin (a matcher over the context's vocabulary, installed as the
 * sampler's mask hook), then for every sampled token that is not end-of-generation, accept;
 * the sequence ends "grammar complete" when done. */
struct slm_sampler;
struct slm_grammar_matcher;
/* A matcher for g (retained by the matcher) over c's token trie and EOG ids (built on the
 * first call for the context, then shared), installed as sampler's mask hook. *out is owned
 * by the caller (slm_grammar_matcher_destroy) and must outlive the hook's use. */
slm_status slm_engine_grammar_begin(slm_ctx *c, slm_grammar *g, struct slm_sampler *sampler,
                                    struct slm_grammar_matcher **out, char *err);
/* Feed sampled token id's piece (plen bytes; 0 means it could not be read). A masked token
 * is always accepted: a rejection is SLM_ERR_INTERNAL, an unreadable piece SLM_ERR_NOMEM. */
slm_status slm_engine_grammar_accept(struct slm_grammar_matcher *m, int32_t id, const char *piece, size_t plen,
                                     char *err);
/* The grammar is complete and allows no more bytes: stop with SLM_GEN_STOP_GRAMMAR. */
bool slm_engine_grammar_done(const struct slm_grammar_matcher *m);
/* The status of a failed slm_sample_next under a grammar, with a clearer detail. */
slm_status slm_engine_grammar_sample_error(slm_status st, char *err);

#endif /* SLMESH_ENGINE_H */
