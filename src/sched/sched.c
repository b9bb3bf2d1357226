/*
 * sched/sched.c: the continuous-batching scheduler of slmesh/sched.h.
 *
 * Sequence ids: slots use [0, n_parallel); prefix-cache entries use the next cache_entries
 * ids. A slot's KV sequence holds toks[0, n_past): the prompt read so far, then every
 * generated token but the pending one (sampled, delivered, decoded in the next step).
 * When a request ends its sequence becomes a cache entry (cells are shared, so this is a
 * mask update, not a copy) and the slot's id is cleared.
 *
 * Invariants: a slot is free iff r == NULL; free slots and unused entries hold no KV;
 * toks of an entry is exactly the KV of its sequence; the queue is touched only under mu.
 * Thread-safety: mu guards the queue, the closed flag and the statistics; everything else
 * belongs to the stepping thread. Non-goals: preemption, priorities, KV defragmentation.
 */
#include "slmesh/sched.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "engine/engine.h"
#include "kv/kv.h"
#include "sample/sample.h"

#define SCHED_DEFAULT_PARALLEL 4
#define SCHED_DEFAULT_QUEUE    64
#define SCHED_DEFAULT_BATCH    512
#define SCHED_MAX_ENTRIES      16  /* cache entries by default: more rarely hit, all cost lookups */
#define SCHED_ECHO_CHUNK       64  /* prompt tokens with logits per step (a row is n_vocab floats) */
#define SCHED_PIECE_INITIAL    256 /* bytes of a token's text; grown on demand */
#define SCHED_MIN_REUSE        4   /* shortest prefix worth reusing: BOS plus a word or two is
                                      shared by unrelated prompts, and counting it would keep
                                      stale entries alive in the LRU and inflate the hit rate */

/* ---- types ------------------------------------------------------------------------------------ */

typedef struct req {
    struct req *next;         /* queue link */
    int32_t *prompt;          /* [n_prompt], owned */
    size_t n_prompt;
    slm_gen_params gen;       /* stop points at stops (owned) */
    char **stops;             /* [gen.n_stop] owned strings */
    bool prompt_logprobs, embed;
    double deadline_ms, t_submit;
    slm_sched_cb cb;
    void *user;
} req;

typedef struct slot {
    req *r;                   /* owned; NULL = free */
    int32_t seq;
    uint64_t admitted;        /* admission order (prompt chunks go first-come first-served) */
    bool decoding;            /* prompt done: pending is the next token to decode */
    int32_t pending;
    int32_t *toks;            /* [n_ctx_slot] tokens in the KV of seq, owned */
    size_t n_past;
    slm_sampler *sampler;     /* owned */
    slm_sample_stop *stop;    /* owned */
    int32_t batch_first, batch_n; /* this step's tokens in the batch, -1 = none */
    slm_sched_result res;
    double t_admit;
} slot;

typedef struct entry {
    int32_t seq;
    int32_t *toks;            /* [n], owned; NULL = unused */
    size_t n;
    uint64_t last_used;
} entry;

struct slm_sched {
    const slm_model *m;       /* borrowed */
    slm_ctx *c;               /* owned */
    int32_t n_vocab, n_parallel, n_queue, n_ctx, n_ctx_slot, n_batch, n_entries;
    int64_t cache_budget;
    slot *slots;              /* [n_parallel], owned */
    entry *entries;           /* [n_entries], owned */
    int32_t *b_tok, *b_pos, *b_seq; /* [n_batch] batch arrays, owned */
    bool *b_want;
    char *piece;              /* [piece_cap], owned */
    size_t piece_cap;
    float *embd;              /* [n_embd], owned */
    uint64_t clock;           /* LRU / admission counter */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    req *q_head, *q_tail;     /* owned, under mu */
    int32_t q_len;
    bool closed, wake, cancel_all;
    slm_sched_stats st;       /* counters under mu */
};

double slm_sched_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- requests --------------------------------------------------------------------------------- */

static void req_free(req *r) {
    if (!r) return;
    for (int32_t i = 0; r->stops && i < r->gen.n_stop; i++) slm_free(r->stops[i]);
    slm_free(r->stops);
    slm_free(r->prompt);
    slm_free(r);
}

static slm_status req_copy(const slm_sched *s, const slm_sched_request *in, req **out, char *err) {
    *out = NULL;
    if (!in->cb || !in->prompt) return slm_errf(err, SLM_ERR_INVALID_ARG, "request without prompt or callback");
    if (in->n_prompt < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "empty prompt");
    if (in->n_prompt > (size_t)s->n_ctx_slot)
        return slm_errf(err, SLM_ERR_FULL, "prompt of %zu tokens exceeds the context of %d", in->n_prompt,
                        s->n_ctx_slot);
    for (size_t i = 0; i < in->n_prompt; i++)
        if (in->prompt[i] < 0 || in->prompt[i] >= s->n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "prompt token %zu: id %d outside [0, %d)", i, in->prompt[i], s->n_vocab);
    const slm_gen_params *g = &in->gen;
    if (!in->embed) {
        if (g->max_tokens < 0 || (g->max_tokens == 0 && !in->prompt_logprobs))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "max_tokens %d < 1", g->max_tokens);
        if (g->n_top < 0 || g->n_top > SLM_GEN_MAX_TOP)
            return slm_errf(err, SLM_ERR_RANGE, "n_top %d outside [0, %d]", g->n_top, SLM_GEN_MAX_TOP);
        if (g->n_stop < 0 || g->n_stop > SLM_GEN_MAX_STOP || (g->n_stop > 0 && !g->stop))
            return slm_errf(err, SLM_ERR_RANGE, "n_stop %d outside [0, %d]", g->n_stop, SLM_GEN_MAX_STOP);
    }
    req *r = slm_calloc(1, sizeof *r);
    if (!r) return slm_errf(err, SLM_ERR_NOMEM, "request");
    r->gen = *g;
    r->gen.n_stop = 0;
    r->gen.stop = NULL;
    r->prompt = slm_malloc(in->n_prompt * sizeof *r->prompt);
    const int32_t n_stop = in->embed ? 0 : g->n_stop;
    r->stops = n_stop ? slm_calloc((size_t)n_stop, sizeof *r->stops) : NULL;
    if (!r->prompt || (n_stop && !r->stops)) goto nomem;
    memcpy(r->prompt, in->prompt, in->n_prompt * sizeof *r->prompt);
    r->n_prompt = in->n_prompt;
    for (int32_t i = 0; i < n_stop; i++) {
        r->gen.n_stop = i + 1;
        if (!g->stop[i]) {
            req_free(r);
            return slm_errf(err, SLM_ERR_INVALID_ARG, "stop string %d is NULL", i);
        }
        if (!(r->stops[i] = slm_strdup(g->stop[i]))) goto nomem;
    }
    r->gen.stop = (const char *const *)r->stops;
    r->prompt_logprobs = in->prompt_logprobs;
    r->embed = in->embed;
    r->deadline_ms = in->deadline_ms;
    r->cb = in->cb;
    r->user = in->user;
    r->t_submit = slm_sched_now_ms();
    *out = r;
    return SLM_OK;
nomem:
    req_free(r);
    return slm_errf(err, SLM_ERR_NOMEM, "request copy");
}

/* Send DONE for a request that never reached a slot. */
static void req_done_unrun(req *r, slm_status status, const char *detail) {
    slm_sched_result res = {.status = status, .stop = SLM_GEN_STOP_CANCEL, .n_prompt = (int32_t)r->n_prompt};
    if (detail) slm_errf(res.err, status, "%s", detail);
    res.total_ms = slm_sched_now_ms() - r->t_submit;
    const slm_sched_event ev = {.kind = SLM_SCHED_DONE, .result = &res};
    r->cb(&ev, r->user);
}

/* ---- create / destroy ------------------------------------------------------------------------- */

slm_status slm_sched_create(const slm_model *m, const slm_sched_params *params, slm_sched **out, char *err) {
    slm_sched_params p = {0};
    *out = NULL;
    if (params) p = *params;
    slm_model_desc d;
    slm_model_describe(m, &d);
    if (p.n_parallel == 0) p.n_parallel = SCHED_DEFAULT_PARALLEL;
    if (p.n_queue == 0) p.n_queue = SCHED_DEFAULT_QUEUE;
    if (p.n_queue < 0) p.n_queue = 0; /* no waiting beyond the free slots */
    if (p.n_ctx == 0) p.n_ctx = d.n_ctx_train;
    if (p.n_batch == 0) p.n_batch = SCHED_DEFAULT_BATCH;
    if (p.n_parallel < 1 || p.n_parallel > SLM_SCHED_MAX_PARALLEL)
        return slm_errf(err, SLM_ERR_RANGE, "parallel %d outside [1, %d]", p.n_parallel, SLM_SCHED_MAX_PARALLEL);
    if (p.n_queue > SLM_SCHED_MAX_QUEUE)
        return slm_errf(err, SLM_ERR_RANGE, "queue %d outside [0, %d]", p.n_queue, SLM_SCHED_MAX_QUEUE);
    if (p.n_ctx < p.n_parallel) return slm_errf(err, SLM_ERR_RANGE, "context %d below %d slots", p.n_ctx, p.n_parallel);
    if (p.n_ctx_slot == 0) p.n_ctx_slot = p.n_ctx / p.n_parallel;
    if (p.n_ctx_slot < 1 || p.n_ctx_slot > p.n_ctx)
        return slm_errf(err, SLM_ERR_RANGE, "slot context %d outside [1, %d]", p.n_ctx_slot, p.n_ctx);
    if (p.n_batch < p.n_parallel) p.n_batch = p.n_parallel; /* every slot decodes each step */
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    int32_t n_entries = p.cache_entries;
    if (n_entries == 0) n_entries = SLM_KV_MAX_SEQ - p.n_parallel < SCHED_MAX_ENTRIES ? SLM_KV_MAX_SEQ - p.n_parallel
                                                                                        : SCHED_MAX_ENTRIES;
    if (n_entries < 0) n_entries = 0;
    if (n_entries > SLM_KV_MAX_SEQ - p.n_parallel)
        return slm_errf(err, SLM_ERR_RANGE, "cache entries %d above %d", n_entries, SLM_KV_MAX_SEQ - p.n_parallel);

    slm_sched *s = slm_calloc(1, sizeof *s);
    if (!s) return slm_errf(err, SLM_ERR_NOMEM, "scheduler");
    s->m = m;
    s->n_vocab = d.n_vocab, s->n_parallel = p.n_parallel, s->n_queue = p.n_queue, s->n_ctx = p.n_ctx;
    s->n_ctx_slot = p.n_ctx_slot, s->n_batch = p.n_batch, s->n_entries = n_entries;
    s->cache_budget = p.cache_tokens > 0 ? p.cache_tokens : p.n_ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    const slm_ctx_params cp = {.n_ctx = p.n_ctx, .n_batch = p.n_batch, .n_seq_max = p.n_parallel + n_entries,
                               .kv_type = p.kv_type, .n_threads = p.n_threads};
    slm_status st = slm_ctx_create(m, &cp, &s->c, err);
    if (st) goto fail;
    const size_t nb = (size_t)p.n_batch;
    s->slots = slm_calloc((size_t)p.n_parallel, sizeof *s->slots);
    s->entries = n_entries ? slm_calloc((size_t)n_entries, sizeof *s->entries) : NULL;
    s->b_tok = slm_malloc(nb * sizeof *s->b_tok);
    s->b_pos = slm_malloc(nb * sizeof *s->b_pos);
    s->b_seq = slm_malloc(nb * sizeof *s->b_seq);
    s->b_want = slm_malloc(nb * sizeof *s->b_want);
    s->piece = slm_malloc(SCHED_PIECE_INITIAL);
    s->piece_cap = SCHED_PIECE_INITIAL;
    s->embd = slm_malloc((size_t)d.n_embd * sizeof *s->embd);
    if (!s->slots || (n_entries && !s->entries) || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_want || !s->piece ||
        !s->embd) {
        st = slm_errf(err, SLM_ERR_NOMEM, "scheduler buffers");
        goto fail;
    }
    for (int32_t i = 0; i < p.n_parallel; i++) {
        s->slots[i].seq = i, s->slots[i].batch_first = -1;
        if (!(s->slots[i].toks = slm_malloc((size_t)p.n_ctx_slot * sizeof(int32_t)))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "slot tokens");
            goto fail;
        }
    }
    for (int32_t i = 0; i < n_entries; i++) s->entries[i].seq = p.n_parallel + i;
    s->st.n_parallel = p.n_parallel;
    s->st.queue_max = p.n_queue;
    s->st.kv_cells = p.n_ctx;
    s->st.kv_bytes = slm_kv_bytes(s->c->kv);
    *out = s;
    return SLM_OK;
fail:
    slm_sched_destroy(s);
    return st;
}

static void slot_finish(slm_sched *s, slot *sl, slm_gen_stop stop);

void slm_sched_destroy(slm_sched *s) {
    if (!s) return;
    for (int32_t i = 0; s->slots && i < s->n_parallel; i++)
        if (s->slots[i].r) slot_finish(s, &s->slots[i], SLM_GEN_STOP_CANCEL);
    for (req *r = s->q_head, *nx; r; r = nx) {
        nx = r->next;
        req_done_unrun(r, SLM_ERR_CANCELLED, "the scheduler was shut down");
        req_free(r);
    }
    for (int32_t i = 0; s->slots && i < s->n_parallel; i++) slm_free(s->slots[i].toks);
    for (int32_t i = 0; s->entries && i < s->n_entries; i++) slm_free(s->entries[i].toks);
    slm_free(s->slots), slm_free(s->entries);
    slm_free(s->b_tok), slm_free(s->b_pos), slm_free(s->b_seq), slm_free(s->b_want);
    slm_free(s->piece), slm_free(s->embd);
    slm_ctx_destroy(s->c);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    slm_free(s);
}

int32_t slm_sched_n_ctx_slot(const slm_sched *s) { return s->n_ctx_slot; }
const slm_model *slm_sched_model(const slm_sched *s) { return s->m; }

/* ---- submission (any thread) ----------------------------------------------------------------- */

slm_status slm_sched_submit(slm_sched *s, const slm_sched_request *in, char *err) {
    req *r;
    slm_status st = req_copy(s, in, &r, err);
    if (st) return st;
    pthread_mutex_lock(&s->mu);
    if (s->closed) st = slm_errf(err, SLM_ERR_STATE, "the server is shutting down");
    else if (s->q_len >= s->n_queue + (s->n_parallel - s->st.busy_slots))
        st = slm_errf(err, SLM_ERR_FULL, "%d requests are waiting; the queue is full", s->q_len);
    if (st == SLM_OK) {
        if (s->q_tail) s->q_tail->next = r;
        else s->q_head = r;
        s->q_tail = r;
        s->q_len++;
        s->st.queue_depth = s->q_len;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (st) req_free(r);
    return st;
}

void slm_sched_close(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_mutex_unlock(&s->mu);
}

void slm_sched_wake(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->wake = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void slm_sched_cancel_all(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->cancel_all = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void slm_sched_stats_get(slm_sched *s, slm_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

/* ---- prefix cache ---------------------------------------------------------------------------- */

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static void entry_drop(slm_sched *s, entry *e) {
    slm_ctx_seq_rm(s->c, e->seq, -1, -1, NULL);
    slm_free(e->toks);
    e->toks = NULL;
    e->n = 0;
}

/* Evict the least recently used entry; false when none is held. */
static bool evict_lru(slm_sched *s) {
    entry *victim = NULL;
    for (int32_t i = 0; i < s->n_entries; i++)
        if (s->entries[i].toks && (!victim || s->entries[i].last_used < victim->last_used)) victim = &s->entries[i];
    if (!victim) return false;
    entry_drop(s, victim);
    return true;
}

static int64_t cache_tokens(const slm_sched *s, int32_t *n_held) {
    int64_t t = 0;
    *n_held = 0;
    for (int32_t i = 0; i < s->n_entries; i++)
        if (s->entries[i].toks) t += (int64_t)s->entries[i].n, (*n_held)++;
    return t;
}

/* Keep the KV of a finishing slot as a cache entry (see the top comment). */
static void cache_store(slm_sched *s, slot *sl) {
    if (s->n_entries == 0 || sl->n_past == 0) return;
    entry *target = NULL;
    for (int32_t i = 0; i < s->n_entries; i++) {
        entry *e = &s->entries[i];
        if (!e->toks) continue;
        const size_t k = common_prefix(e->toks, e->n, sl->toks, sl->n_past);
        if (k == sl->n_past) { /* already covered by a longer (or equal) entry */
            e->last_used = ++s->clock;
            return;
        }
        if (k == e->n) target = e; /* the entry is a prefix of ours: replace it */
    }
    if (!target)
        for (int32_t i = 0; i < s->n_entries && !target; i++)
            if (!s->entries[i].toks) target = &s->entries[i];
    if (!target) {
        evict_lru(s);
        for (int32_t i = 0; i < s->n_entries && !target; i++)
            if (!s->entries[i].toks) target = &s->entries[i];
    }
    int32_t *toks = slm_malloc(sl->n_past * sizeof *toks);
    if (!target || !toks) {
        slm_free(toks);
        return; /* caching is an optimisation: skip it when memory is short */
    }
    if (target->toks) entry_drop(s, target);
    memcpy(toks, sl->toks, sl->n_past * sizeof *toks);
    if (slm_ctx_seq_cp(s->c, sl->seq, target->seq, 0, (int32_t)sl->n_past, NULL) != SLM_OK) {
        slm_free(toks);
        return;
    }
    target->toks = toks;
    target->n = sl->n_past;
    target->last_used = ++s->clock;
    int32_t held;
    while (cache_tokens(s, &held) > s->cache_budget && evict_lru(s)) {
    }
}

/* Reuse the longest cached (or already evaluated) prefix of the slot's prompt. */
static void cache_lookup(slm_sched *s, slot *sl) {
    const req *r = sl->r;
    const size_t limit = r->n_prompt - 1; /* the last prompt token is always evaluated: its logits */
    size_t best = 0;
    int32_t src = -1;
    entry *hit = NULL;
    for (int32_t i = 0; i < s->n_entries; i++) {
        entry *e = &s->entries[i];
        if (!e->toks) continue;
        const size_t k = common_prefix(e->toks, e->n, r->prompt, limit);
        if (k > best) best = k, src = e->seq, hit = e;
    }
    for (int32_t i = 0; i < s->n_parallel; i++) {
        const slot *o = &s->slots[i];
        if (o == sl || !o->r || o->r->embed) continue;
        const size_t k = common_prefix(o->toks, o->n_past, r->prompt, limit);
        if (k > best) best = k, src = o->seq, hit = NULL;
    }
    if (best < SCHED_MIN_REUSE || slm_ctx_seq_cp(s->c, src, sl->seq, 0, (int32_t)best, NULL) != SLM_OK) return;
    if (hit) hit->last_used = ++s->clock;
    memcpy(sl->toks, r->prompt, best * sizeof *sl->toks);
    sl->n_past = best;
    sl->res.n_cached = (int32_t)best;
}

/* ---- admission ------------------------------------------------------------------------------- */

static int64_t kv_free(const slm_sched *s) { return (int64_t)s->n_ctx - slm_kv_n_used(s->c->kv); }

/* Free cells until `need` are free (cache entries only). */
static bool make_room(slm_sched *s, int64_t need) {
    while (kv_free(s) < need)
        if (!evict_lru(s)) return false;
    return true;
}

static void run_embed(slm_sched *s, slot *sl) {
    req *r = sl->r;
    slm_sched_result *res = &sl->res;
    make_room(s, (int64_t)r->n_prompt);
    res->status = slm_ctx_embed(s->c, sl->seq, r->prompt, r->n_prompt, s->embd, res->err);
    if (res->status == SLM_OK) {
        res->embedding = s->embd;
        res->n_embd = slm_ctx_n_embd(s->c);
    }
    slot_finish(s, sl, SLM_GEN_STOP_LENGTH);
}

static slm_status slot_start(slm_sched *s, slot *sl, req *r) {
    sl->r = r;
    sl->admitted = ++s->clock;
    sl->decoding = false;
    sl->n_past = 0;
    sl->batch_first = -1;
    sl->t_admit = slm_sched_now_ms();
    sl->res = (slm_sched_result){.n_prompt = (int32_t)r->n_prompt, .queue_ms = sl->t_admit - r->t_submit};
    slm_ctx_seq_rm(s->c, sl->seq, -1, -1, NULL);
    if (r->embed) return SLM_OK;
    const slm_sampling *g = &r->gen.sampling;
    slm_sample_params sp = slm_sample_params_default();
    sp.temperature = g->temperature, sp.top_k = g->top_k, sp.top_p = g->top_p, sp.min_p = g->min_p;
    sp.repeat_penalty = g->repeat_penalty, sp.repeat_last_n = g->repeat_last_n;
    sp.frequency_penalty = g->frequency_penalty, sp.presence_penalty = g->presence_penalty;
    sp.seed = g->seed, sp.n_probs = r->gen.n_top;
    char *e = sl->res.err;
    slm_status st = slm_sample_create(&sp, s->n_vocab, &sl->sampler, e);
    if (st == SLM_OK) st = slm_sample_stop_create(r->gen.stop, (size_t)r->gen.n_stop, &sl->stop, e);
    if (st == SLM_OK && sp.repeat_last_n > 0) st = slm_sample_accept(sl->sampler, r->prompt, r->n_prompt, e);
    if (st) return st;
    if (!r->prompt_logprobs) {
        cache_lookup(s, sl);
        pthread_mutex_lock(&s->mu);
        s->st.prefix_lookups++;
        if (sl->res.n_cached > 0) s->st.prefix_hits++, s->st.cached_tokens += (uint64_t)sl->res.n_cached;
        pthread_mutex_unlock(&s->mu);
    }
    return SLM_OK;
}

/* Move queued requests into free slots. */
static void admit(slm_sched *s) {
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (sl->r) continue;
        pthread_mutex_lock(&s->mu);
        req *r = s->q_head;
        if (r) {
            s->q_head = r->next;
            if (!s->q_head) s->q_tail = NULL;
            s->q_len--;
            s->st.queue_depth = s->q_len;
            s->st.busy_slots++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) return;
        r->next = NULL;
        const slm_status st = slot_start(s, sl, r);
        if (st) {
            sl->res.status = st;
            slot_finish(s, sl, SLM_GEN_STOP_NONE);
        } else if (r->embed) {
            run_embed(s, sl);
        }
    }
}

/* ---- delivery -------------------------------------------------------------------------------- */

/* The bytes of token id into s->piece (grown when needed); returns the length. */
static size_t token_piece(slm_sched *s, int32_t id) {
    size_t n = slm_model_token_piece(s->m, id, s->piece, s->piece_cap);
    if (n > s->piece_cap) {
        char *p = slm_realloc(s->piece, n);
        if (!p) return 0; /* one token's text is lost rather than the request */
        s->piece = p, s->piece_cap = n;
        n = slm_model_token_piece(s->m, id, s->piece, s->piece_cap);
    }
    return n;
}

static bool emit(slot *sl, slm_sched_event_kind kind, int32_t index, const slm_sample_out *so, const char *piece,
                 size_t piece_len, const char *text, size_t text_len) {
    slm_token_prob top[SLM_GEN_MAX_TOP];
    const int32_t n_top = so ? (so->n_alts < SLM_GEN_MAX_TOP ? so->n_alts : SLM_GEN_MAX_TOP) : 0;
    for (int32_t i = 0; i < n_top; i++) top[i] = (slm_token_prob){.id = so->alts[i].id, .logprob = so->alts[i].logprob};
    const slm_gen_token t = {.id = so ? so->id : -1, .piece = piece, .piece_len = piece_len,
                             .text = text_len ? text : NULL, .text_len = text_len,
                             .logprob = so ? so->logprob : 0.0f, .entropy = so ? so->entropy : 0.0f,
                             .n_top = n_top, .top = top};
    const slm_sched_event ev = {.kind = kind, .index = index, .tok = &t};
    return sl->r->cb(&ev, sl->r->user);
}

/* End the slot's request: flush held text (when the stop allows), DONE, cache its KV. */
static void slot_finish(slm_sched *s, slot *sl, slm_gen_stop stop) {
    req *r = sl->r;
    slm_sched_result *res = &sl->res;
    res->stop = stop;
    const bool flush = sl->stop && res->status == SLM_OK &&
                       (stop == SLM_GEN_STOP_EOG || stop == SLM_GEN_STOP_LENGTH || stop == SLM_GEN_STOP_CONTEXT ||
                        stop == SLM_GEN_STOP_CANCEL);
    if (flush) {
        slm_sample_stop_out o;
        slm_sample_stop_flush(sl->stop, &o);
        if (o.len > 0) emit(sl, SLM_SCHED_TOKEN, 0, NULL, NULL, 0, o.text, o.len);
    }
    const double now = slm_sched_now_ms();
    res->total_ms = now - r->t_submit;
    pthread_mutex_lock(&s->mu); /* before DONE: a client that saw its end sees the slot free */
    s->st.busy_slots--;
    s->st.requests_done++;
    s->st.prompt_tokens += (uint64_t)res->n_prompt;
    s->st.generated_tokens += (uint64_t)res->n_generated;
    pthread_mutex_unlock(&s->mu);
    const slm_sched_event ev = {.kind = SLM_SCHED_DONE, .result = res};
    r->cb(&ev, r->user);
    if (res->status == SLM_OK && !r->embed) cache_store(s, sl);
    slm_ctx_seq_rm(s->c, sl->seq, -1, -1, NULL);
    slm_sample_destroy(sl->sampler);
    slm_sample_stop_destroy(sl->stop);
    sl->sampler = NULL, sl->stop = NULL;
    sl->r = NULL;
    sl->n_past = 0;
    sl->batch_first = -1;
    int32_t held;
    const int64_t ct = cache_tokens(s, &held);
    pthread_mutex_lock(&s->mu);
    s->st.cache_entries = held;
    s->st.cache_tokens = ct;
    pthread_mutex_unlock(&s->mu);
    req_free(r);
}

/* Sample the slot's next token from logits and deliver it; true when the slot goes on. */
static bool slot_sample(slm_sched *s, slot *sl, const float *logits) {
    req *r = sl->r;
    slm_sched_result *res = &sl->res;
    slm_sample_out so;
    res->status = slm_sample_next(sl->sampler, logits, s->n_vocab, NULL, &so, res->err);
    if (res->status) return slot_finish(s, sl, SLM_GEN_STOP_NONE), false;
    if (slm_model_is_eog(s->m, so.id)) return slot_finish(s, sl, SLM_GEN_STOP_EOG), false;
    const size_t plen = token_piece(s, so.id);
    slm_sample_stop_out text;
    res->status = slm_sample_stop_feed(sl->stop, s->piece, plen, &text, res->err);
    if (res->status) return slot_finish(s, sl, SLM_GEN_STOP_NONE), false;
    if (res->n_generated++ == 0) res->ttft_ms = slm_sched_now_ms() - r->t_submit;
    if (!emit(sl, SLM_SCHED_TOKEN, 0, &so, s->piece, plen, text.text, text.len))
        return slot_finish(s, sl, SLM_GEN_STOP_CALLBACK), false;
    if (text.matched >= 0) return slot_finish(s, sl, SLM_GEN_STOP_STRING), false;
    if (res->n_generated >= r->gen.max_tokens) return slot_finish(s, sl, SLM_GEN_STOP_LENGTH), false;
    if (sl->n_past >= (size_t)s->n_ctx_slot) return slot_finish(s, sl, SLM_GEN_STOP_CONTEXT), false;
    res->status = slm_sample_accept(sl->sampler, &so.id, 1, res->err);
    if (res->status) return slot_finish(s, sl, SLM_GEN_STOP_NONE), false;
    sl->pending = so.id;
    sl->decoding = true;
    return true;
}

/* Prompt log-probabilities of the chunk just decoded (token i's logits predict i + 1). */
static bool slot_prompt_events(slm_sched *s, slot *sl, size_t p0, int32_t n) {
    req *r = sl->r;
    for (int32_t i = 0; i < n; i++) {
        const size_t p = p0 + (size_t)i;
        if (p + 1 >= r->n_prompt) break;
        slm_sample_out so;
        const int32_t next = r->prompt[p + 1];
        if (slm_sample_probs(slm_ctx_logits(s->c, sl->batch_first + i), s->n_vocab, next, r->gen.n_top, &so,
                             sl->res.err) != SLM_OK)
            continue;
        const size_t plen = token_piece(s, next);
        if (!emit(sl, SLM_SCHED_PROMPT_TOKEN, (int32_t)(p + 1), &so, s->piece, plen, s->piece, plen)) return false;
    }
    return true;
}

/* ---- the step -------------------------------------------------------------------------------- */

static bool any_active(const slm_sched *s) {
    for (int32_t i = 0; i < s->n_parallel; i++)
        if (s->slots[i].r) return true;
    return false;
}

/* Cancelled, timed-out or shut-down requests end before the batch is built. */
static void reap(slm_sched *s, bool cancel_all) {
    const double now = slm_sched_now_ms();
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (!sl->r) continue;
        const bool timed_out = sl->r->deadline_ms > 0 && now > sl->r->deadline_ms;
        if (cancel_all || timed_out || (sl->r->gen.cancel && atomic_load(sl->r->gen.cancel))) {
            sl->res.timed_out = timed_out;
            slot_finish(s, sl, SLM_GEN_STOP_CANCEL);
        }
    }
}

static void drop_queue(slm_sched *s) {
    pthread_mutex_lock(&s->mu);
    req *r = s->q_head;
    s->q_head = s->q_tail = NULL;
    s->q_len = 0;
    s->st.queue_depth = 0;
    pthread_mutex_unlock(&s->mu);
    for (req *nx; r; r = nx) {
        nx = r->next;
        req_done_unrun(r, SLM_ERR_CANCELLED, "cancelled");
        req_free(r);
    }
}

static void batch_add(slm_sched *s, int32_t *n, int32_t tok, int32_t pos, int32_t seq, bool want) {
    s->b_tok[*n] = tok, s->b_pos[*n] = pos, s->b_seq[*n] = seq, s->b_want[*n] = want;
    (*n)++;
}

/* The next prefill slot in admission order after `after` (0 = first). */
static slot *next_prefill(slm_sched *s, uint64_t after) {
    slot *best = NULL;
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (sl->r && !sl->decoding && sl->admitted > after && (!best || sl->admitted < best->admitted)) best = sl;
    }
    return best;
}

/* Build the batch: every decoding slot's pending token, then prompt chunks. */
static int32_t build_batch(slm_sched *s) {
    int32_t n = 0, n_dec = 0;
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        sl->batch_first = -1, sl->batch_n = 0;
        if (sl->r && sl->decoding) n_dec++;
    }
    /* room for the decoding tokens first; slots that cannot get a cell end (context full) */
    while (kv_free(s) < n_dec) {
        if (evict_lru(s)) continue;
        slot *victim = NULL; /* only when slots may outgrow n_ctx / n_parallel */
        for (int32_t i = 0; i < s->n_parallel && !victim; i++)
            if (s->slots[i].r && s->slots[i].decoding) victim = &s->slots[i];
        slot_finish(s, victim, SLM_GEN_STOP_CONTEXT); /* its KV becomes an entry, evicted next */
        n_dec--;
    }
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (!sl->r || !sl->decoding) continue;
        sl->batch_first = n, sl->batch_n = 1;
        batch_add(s, &n, sl->pending, (int32_t)sl->n_past, sl->seq, true);
    }
    int64_t want_prefill = 0;
    for (slot *sl = next_prefill(s, 0); sl; sl = next_prefill(s, sl->admitted))
        want_prefill += (int64_t)(sl->r->n_prompt - sl->n_past);
    int64_t budget = s->n_batch - n;
    if (want_prefill < budget) budget = want_prefill;
    make_room(s, n + budget);
    if (kv_free(s) - n < budget) budget = kv_free(s) - n;
    for (slot *sl = next_prefill(s, 0); sl && budget > 0; sl = next_prefill(s, sl->admitted)) {
        size_t k = sl->r->n_prompt - sl->n_past;
        if ((int64_t)k > budget) k = (size_t)budget;
        if (sl->r->prompt_logprobs && k > SCHED_ECHO_CHUNK) k = SCHED_ECHO_CHUNK;
        sl->batch_first = n, sl->batch_n = (int32_t)k;
        for (size_t j = 0; j < k; j++) {
            const size_t p = sl->n_past + j;
            const bool last = p + 1 == sl->r->n_prompt;
            batch_add(s, &n, sl->r->prompt[p], (int32_t)p, sl->seq, last || sl->r->prompt_logprobs);
        }
        budget -= (int64_t)k;
    }
    return n;
}

/* After the decode: advance each slot of the batch. */
static void after_decode(slm_sched *s) {
    for (int32_t i = 0; i < s->n_parallel; i++) {
        slot *sl = &s->slots[i];
        if (!sl->r || sl->batch_first < 0) continue;
        if (sl->decoding) {
            sl->toks[sl->n_past++] = sl->pending;
            slot_sample(s, sl, slm_ctx_logits(s->c, sl->batch_first));
            continue;
        }
        const size_t p0 = sl->n_past;
        memcpy(sl->toks + p0, sl->r->prompt + p0, (size_t)sl->batch_n * sizeof *sl->toks);
        sl->n_past += (size_t)sl->batch_n;
        if (sl->r->prompt_logprobs && !slot_prompt_events(s, sl, p0, sl->batch_n)) {
            slot_finish(s, sl, SLM_GEN_STOP_CALLBACK);
            continue;
        }
        if (sl->n_past < sl->r->n_prompt) continue;
        if (sl->r->gen.max_tokens == 0) {
            slot_finish(s, sl, SLM_GEN_STOP_LENGTH);
            continue;
        }
        slot_sample(s, sl, slm_ctx_logits(s->c, sl->batch_first + sl->batch_n - 1));
    }
}

slm_status slm_sched_step(slm_sched *s, int32_t wait_ms, char *err) {
    pthread_mutex_lock(&s->mu);
    const bool cancel_all = s->cancel_all;
    s->cancel_all = false;
    if (!cancel_all && !s->q_head && !any_active(s) && !s->wake && wait_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    s->wake = false;
    pthread_mutex_unlock(&s->mu);
    if (cancel_all) drop_queue(s);
    reap(s, cancel_all);
    admit(s);
    const int32_t n = build_batch(s);
    if (n == 0) {
        /* prompts that cannot get a cell even with an empty cache: refuse the newest */
        slot *stuck = NULL;
        for (slot *sl = next_prefill(s, 0); sl; sl = next_prefill(s, sl->admitted)) stuck = sl;
        if (stuck) {
            stuck->res.status = slm_errf(stuck->res.err, SLM_ERR_FULL, "no free KV cells for the prompt");
            slot_finish(s, stuck, SLM_GEN_STOP_CONTEXT);
        }
        return SLM_OK;
    }
    const slm_batch b = {.n_tokens = n, .token = s->b_tok, .pos = s->b_pos, .seq_id = s->b_seq, .logits = s->b_want};
    char derr[SLM_ERR_LEN] = "";
    const slm_status st = slm_ctx_decode(s->c, &b, derr);
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.kv_used = slm_kv_n_used(s->c->kv);
    pthread_mutex_unlock(&s->mu);
    if (st) { /* the batch failed as a whole: so do its requests */
        for (int32_t i = 0; i < s->n_parallel; i++) {
            slot *sl = &s->slots[i];
            if (!sl->r || sl->batch_first < 0) continue;
            sl->res.status = st;
            slm_errf(sl->res.err, st, "%s", derr);
            slot_finish(s, sl, SLM_GEN_STOP_NONE);
        }
        return SLM_OK;
    }
    after_decode(s);
    (void)err;
    return SLM_OK;
}
