/*
 * model/attn.h: causal self-attention of one layer over the KV cache, for a batch of tokens.
 *
 * For every token t of the batch and query head h: scores over the cache cells visible to
 * t's sequence at t's position (slm_kv_visible), softmax, weighted sum of the V rows; GQA
 * maps query head h to KV head h / (n_head / n_head_kv). The result of a (token, head) does
 * not depend on the other tokens of the batch nor on the thread count, so a batched prompt
 * equals token-by-token decoding bit for bit.
 *
 * The work is split by slm_attn_run(ith, nth): the caller runs it on every thread of a job
 * (pool or barrier-synchronised region) with the same arguments.
 * Ownership: slm_attn is per-thread scratch owned by one context; the arguments are
 * borrowed for the call. Non-goals: sliding windows, ALiBi, soft-capping (later rows).
 */
#ifndef SLMESH_MODEL_ATTN_H
#define SLMESH_MODEL_ATTN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"
#include "model/model.h"
#include "quant/kernels.h"
#include "slmesh/status.h"

typedef struct slm_attn slm_attn;

/* What one layer's attention reads and writes; every pointer borrowed. */
typedef struct slm_attn_args {
    const slm_hparams *hp;
    const slm_kv *kv;    /* K and V of this layer already stored for the batch's cells */
    int32_t il;          /* layer */
    int32_t n;           /* tokens in the batch */
    const int32_t *pos;  /* [n] positions */
    const int32_t *seq;  /* [n] sequence ids */
    const float *q;      /* [n][n_head * head_dim] rotated queries */
    float *out;          /* [n][n_head * head_dim] attention output */
    atomic_int *claim;   /* NULL, or a counter at 0 that the call's threads share: whole tiles
                            are then claimed from it (longest first) instead of assigned */
} slm_attn_args;

/* Scratch for n_threads threads over caches of up to n_cells cells of kv_type. *out is
 * owned by the caller (slm_attn_destroy). */
slm_status slm_attn_create(const slm_hparams *hp, int64_t n_cells, slm_type kv_type, int n_threads, slm_attn **out,
                           char *err);
void slm_attn_destroy(slm_attn *a);      /* NULL allowed */
size_t slm_attn_bytes(const slm_attn *a); /* memory of the scratch */

/* Multiply-adds of a call (to decide whether waking threads pays). */
int64_t slm_attn_work(const slm_attn_args *args);

/* Thread ith of nth, some microseconds before slm_attn_run with the same split (only hp,
 * kv, il, n, pos and seq of args are read): for a call whose rows are split across threads
 * (decoding), ask the memory system for the K and V cells its KV heads will read (at most
 * SLM_ATTN_PREFETCH_CELLS), so that they arrive while the caller does other work. A hint:
 * no effect on results. */
#define SLM_ATTN_PREFETCH_CELLS 1024 /* 2 x 1024 x 128 bytes per KV head of 64: a few L2s */
void slm_attn_prefetch(const slm_attn *a, const slm_attn_args *args, int ith, int nth);

/* For a call of one token whose rows are split across threads (decoding one token): thread
 * ith's query heads [*h0, *h1) in slm_attn_run with the same args and nth, and true; else
 * false. Lets the caller give each thread the q k v rows of the heads it then attends with. */
bool slm_attn_token_heads(const slm_attn *a, const slm_attn_args *args, int ith, int nth, int32_t *h0, int32_t *h1);

/* Thread ith of nth: its share of the (token, head) pairs. Every thread of the job must
 * call it with the same args; nth must not exceed the n_threads of slm_attn_create. */
void slm_attn_run(slm_attn *a, const slm_attn_args *args, int ith, int nth);

/* slm_attn_run with the attention kernels of isa instead of the process's choice (tests
 * and benchmarks compare sets; an isa this CPU or build lacks falls back to scalar). */
void slm_attn_run_isa(slm_attn *a, const slm_attn_args *args, slm_quant_isa isa, int ith, int nth);

#endif /* SLMESH_MODEL_ATTN_H */
