/*
 * slmesh/sched.h: the continuous-batching scheduler of the engine: many requests share one
 * model and one context; every step decodes one token of every generating request (and a
 * chunk of the prompts being read) in a single slm_ctx_decode batch.
 *
 * Data flow: any thread submits a request (prompt tokens, sampling, stops, limits, a
 * callback); it waits in a bounded FIFO queue (full: SLM_ERR_FULL, the server's 429). ONE
 * engine thread calls slm_sched_step in a loop; a step admits queued requests into free
 * slots (one KV sequence each), reuses the longest cached prefix of each new prompt (KV kept
 * from finished requests, shared cells, LRU under a token budget), then builds one batch:
 * the pending token of every generating slot plus prompt chunks of the new slots (so long
 * prompts never starve decoding), decodes it and samples each slot with its own seeded
 * sampler. A request's tokens are exactly those of the same request run alone with the same
 * seed (slm_ctx_generate semantics: prompt in the penalty history, EOG not delivered, stop
 * strings never delivered, a final flush event with id -1).
 *
 * Ownership: the scheduler owns its context (created over the borrowed model, which must
 * outlive it). Requests are copied at submit except cancel and user, which are borrowed
 * until the request's DONE event, the last call the scheduler makes for it.
 * Thread-safety: slm_sched_submit, slm_sched_close, slm_sched_wake and slm_sched_stats_get
 * from any thread; slm_sched_step from one thread at a time; callbacks run on the stepping
 * thread and must not call slm_sched_step. Non-goals: HTTP, JSON, several models (the
 * server runs one scheduler per model), speculative decoding, grammars.
 */
#ifndef SLMESH_SCHED_H
#define SLMESH_SCHED_H

#include "slmesh/slmesh.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_SCHED_MAX_PARALLEL 32  /* slots; the rest of the 64 KV sequence ids hold cache entries */
#define SLM_SCHED_MAX_QUEUE    4096 /* waiting requests; a queue is a promise of service */

typedef struct slm_sched slm_sched;

typedef struct slm_sched_params {
    int32_t n_parallel;      /* slots, [1, SLM_SCHED_MAX_PARALLEL]; 0 = 4 */
    int32_t n_queue;         /* waiting requests, [1, SLM_SCHED_MAX_QUEUE]; 0 = 64; < 0 = none */
    int32_t n_ctx;           /* KV cells of the context; 0 = the model's n_ctx_train */
    int32_t n_ctx_slot;      /* positions one request may use; 0 = n_ctx / n_parallel */
    int32_t n_batch;         /* tokens per decode; 0 = 512 */
    int32_t n_threads;       /* 0 = physical cores */
    slm_cache_type kv_type;  /* KV storage */
    int32_t cache_entries;   /* prefix-cache entries; 0 = 64 - n_parallel (capped 16); < 0 = off */
    int32_t cache_tokens;    /* token budget of the prefix cache; 0 = n_ctx */
} slm_sched_params;

/* Create a scheduler (and its context) over m (borrowed). params may be NULL (defaults).
 * *out is owned by the caller. */
slm_status slm_sched_create(const slm_model *m, const slm_sched_params *params, slm_sched **out, char *err);
/* Finish every queued and active request (DONE with stop CANCEL) and free everything.
 * No step may be running. NULL allowed. */
void slm_sched_destroy(slm_sched *s);

/* Positions one request may use (prompt + generated); a longer prompt is refused. */
int32_t slm_sched_n_ctx_slot(const slm_sched *s);
/* The model (borrowed). */
const slm_model *slm_sched_model(const slm_sched *s);

/* ---- requests ------------------------------------------------------------------------------ */

typedef enum slm_sched_event_kind {
    SLM_SCHED_PROMPT_TOKEN = 0, /* prompt_logprobs: prompt token `index` (>= 1) with its logprob */
    SLM_SCHED_TOKEN,            /* a generated token (or the final flush, tok->id == -1) */
    SLM_SCHED_DONE,             /* the request ended; last call for it */
} slm_sched_event_kind;

typedef struct slm_sched_result {
    slm_status status;        /* SLM_OK, or why the request failed (detail in err) */
    char err[SLM_ERR_LEN];
    slm_gen_stop stop;        /* why generation ended (CANCEL for cancel, deadline, shutdown) */
    bool timed_out;           /* the deadline passed */
    int32_t n_prompt;         /* prompt tokens */
    int32_t n_cached;         /* of which reused from the prefix cache */
    int32_t n_generated;      /* tokens delivered */
    double queue_ms;          /* submit to admission */
    double ttft_ms;           /* submit to the first token (0 when none) */
    double total_ms;          /* submit to done */
    const float *embedding;   /* embed requests: n_embd floats, valid during the DONE call */
    int32_t n_embd;
} slm_sched_result;

typedef struct slm_sched_event {
    slm_sched_event_kind kind;
    int32_t index;                  /* PROMPT_TOKEN: position in the prompt */
    const slm_gen_token *tok;       /* PROMPT_TOKEN, TOKEN; valid during the call */
    const slm_sched_result *result; /* DONE; valid during the call */
} slm_sched_event;

/* Return false to stop the request (stop CALLBACK). The return of DONE is ignored. */
typedef bool (*slm_sched_cb)(const slm_sched_event *ev, void *user);

typedef struct slm_sched_request {
    const int32_t *prompt;   /* n_prompt tokens (copied) */
    size_t n_prompt;         /* [1, n_ctx_slot - 1] (embed: [1, n_ctx_slot]) */
    slm_gen_params gen;      /* max_tokens may be 0 with prompt_logprobs (scoring only);
                                stop strings copied; cancel borrowed until DONE */
    bool prompt_logprobs;    /* deliver PROMPT_TOKEN events (no prefix reuse then) */
    bool embed;              /* compute the pooled embedding instead of generating */
    double deadline_ms;      /* slm_sched_now_ms() value after which the request is cancelled; 0 = none */
    slm_sched_cb cb;         /* required */
    void *user;              /* borrowed until DONE */
} slm_sched_request;

/* Queue a request. SLM_ERR_FULL when the queue is full, SLM_ERR_STATE after slm_sched_close,
 * SLM_ERR_INVALID_ARG / _RANGE / _FULL (prompt too long for a slot) / _LIMIT for a bad
 * request. On any error no callback is made. */
slm_status slm_sched_submit(slm_sched *s, const slm_sched_request *r, char *err);

/* One scheduling step. When there is nothing to do it waits up to wait_ms for a submission
 * (or slm_sched_wake). Request failures go to their DONE events; the return is SLM_OK unless
 * the scheduler itself is broken. */
slm_status slm_sched_step(slm_sched *s, int32_t wait_ms, char *err);

/* Refuse new submissions from now on (graceful shutdown); queued requests still run. */
void slm_sched_close(slm_sched *s);
/* Interrupt a step waiting for work. */
void slm_sched_wake(slm_sched *s);
/* Cancel every queued and active request at the next step. */
void slm_sched_cancel_all(slm_sched *s);

/* Monotonic clock in milliseconds (for deadlines). */
double slm_sched_now_ms(void);

/* ---- statistics ----------------------------------------------------------------------------- */

typedef struct slm_sched_stats {
    int32_t n_parallel;        /* slots */
    int32_t busy_slots;        /* slots serving a request */
    int32_t queue_depth;       /* waiting requests */
    int32_t queue_max;         /* queue capacity */
    int64_t kv_cells;          /* KV cells of the context */
    int64_t kv_used;           /* cells in use (active sequences and cache entries) */
    size_t kv_bytes;           /* memory of the KV cache */
    int32_t cache_entries;     /* prefix-cache entries held */
    int64_t cache_tokens;      /* tokens they hold */
    uint64_t prefix_lookups;   /* admitted generation requests */
    uint64_t prefix_hits;      /* of which reused at least one token */
    uint64_t cached_tokens;    /* prompt tokens reused in total */
    uint64_t prompt_tokens;    /* prompt tokens of finished requests */
    uint64_t generated_tokens; /* tokens delivered */
    uint64_t requests_done;    /* DONE events */
    uint64_t steps;            /* decode batches */
} slm_sched_stats;

void slm_sched_stats_get(slm_sched *s, slm_sched_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_SCHED_H */
