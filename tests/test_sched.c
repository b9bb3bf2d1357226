/*
 * tests/test_sched.c: the continuous-batching scheduler on stories260K: requests batched
 * together give exactly the tokens (and log-probabilities) of the same requests run alone
 * with slm_ctx_generate; a reused prefix gives identical results and is reported; cancel
 * and callback stops free the slot; the queue refuses work when full; prompt
 * log-probabilities equal a plain decode; embeddings equal slm_ctx_embed.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sample/sample.h"
#include "slmesh/sched.h"
#include "slmesh/slmesh.h"

#define MODEL "models/stories260K.gguf"
#define MAX_TOK 64

typedef struct run {
    int32_t ids[MAX_TOK];
    float lp[MAX_TOK];
    int n;
    char text[4096];
    size_t text_len;
    bool done;
    slm_sched_result res;
    int cancel_after;      /* set *cancel after this many tokens (0 = never) */
    atomic_bool *cancel;
    float plp[256];        /* prompt logprobs by index */
    int n_plp;
    float embd[512];
} run;

static bool collect(const slm_gen_token *t, run *r) {
    if (t->text_len) {
        memcpy(r->text + r->text_len, t->text, t->text_len);
        r->text_len += t->text_len;
    }
    if (t->id < 0) return true;
    r->lp[r->n] = t->logprob;
    r->ids[r->n++] = t->id;
    if (r->cancel_after && r->n == r->cancel_after) atomic_store(r->cancel, true);
    return true;
}

static bool on_gen(const slm_gen_token *t, void *user) { return collect(t, user); }

static bool on_event(const slm_sched_event *ev, void *user) {
    run *r = user;
    switch (ev->kind) {
    case SLM_SCHED_TOKEN: return collect(ev->tok, r);
    case SLM_SCHED_PROMPT_TOKEN:
        r->plp[ev->index] = ev->tok->logprob;
        r->n_plp++;
        return true;
    case SLM_SCHED_DONE:
        r->res = *ev->result;
        if (ev->result->embedding) memcpy(r->embd, ev->result->embedding, (size_t)ev->result->n_embd * sizeof(float));
        r->done = true;
        return true;
    }
    return true;
}

static slm_model *open_model(void) {
    char path[1024];
    if (!tu_shared_path(path, sizeof path, MODEL)) return NULL;
    slm_model *m = NULL;
    assert_int_equal(slm_model_open(path, NULL, &m, NULL), SLM_OK);
    return m;
}

static void tokenize(const slm_model *m, const char *text, int32_t *ids, size_t *n) {
    assert_int_equal(slm_model_tokenize(m, text, strlen(text), SLM_TOKENIZE_ADD_BOS, ids, 256, n, NULL), SLM_OK);
}

static slm_gen_params gen_params(uint64_t seed, int32_t max_tokens) {
    slm_gen_params g = {.max_tokens = max_tokens, .sampling = slm_sampling_default(), .n_top = 3};
    g.sampling.seed = seed;
    g.sampling.temperature = 0.9f;
    return g;
}

/* The request alone, through slm_ctx_generate on a fresh context. */
static void run_alone(const slm_model *m, const int32_t *ids, size_t n, const slm_gen_params *g, run *out) {
    slm_ctx_params cp = {.n_ctx = 256, .n_threads = 1};
    slm_ctx *c = NULL;
    assert_int_equal(slm_ctx_create(m, &cp, &c, NULL), SLM_OK);
    assert_int_equal(slm_ctx_generate(c, 0, ids, n, g, on_gen, out, NULL, NULL), SLM_OK);
    slm_ctx_destroy(c);
}

static slm_sched *sched_for(const slm_model *m, int32_t parallel, int32_t queue) {
    slm_sched_params p = {.n_parallel = parallel, .n_queue = queue, .n_ctx = 256 * parallel, .n_ctx_slot = 256,
                          .n_threads = 1, .n_batch = 48};
    slm_sched *s = NULL;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_sched_create(m, &p, &s, err), SLM_OK);
    return s;
}

static void submit(slm_sched *s, const int32_t *ids, size_t n, const slm_gen_params *g, run *r) {
    const slm_sched_request rq = {.prompt = ids, .n_prompt = n, .gen = *g, .cb = on_event, .user = r};
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_sched_submit(s, &rq, err), SLM_OK);
}

static void drain(slm_sched *s, run *runs, int n) {
    for (int guard = 0; guard < 100000; guard++) {
        int done = 0;
        for (int i = 0; i < n; i++) done += runs[i].done;
        if (done == n) return;
        assert_int_equal(slm_sched_step(s, 0, NULL), SLM_OK);
    }
    fail_msg("requests did not finish");
}

static void assert_same(const run *a, const run *b) {
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        assert_int_equal(a->ids[i], b->ids[i]);
        assert_true(a->lp[i] == b->lp[i]); /* bit-identical logits give identical logprobs */
    }
    assert_int_equal(a->text_len, b->text_len);
    assert_memory_equal(a->text, b->text, a->text_len);
}

static const char *prompts[] = {"Once upon a time", "The little dog", "Lily and Tom went to the park",
                                "One day, a big", "Sam had a red ball", "The sun was"};
#define N_PROMPTS 6

static void test_batched_equals_alone(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched *s = sched_for(m, 4, 8);
    run batched[N_PROMPTS] = {0}, alone[N_PROMPTS] = {0};
    int32_t ids[N_PROMPTS][256];
    size_t n[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++) {
        tokenize(m, prompts[i], ids[i], &n[i]);
        const slm_gen_params g = gen_params(100 + (uint64_t)i, 20 + 4 * i);
        submit(s, ids[i], n[i], &g, &batched[i]);
        run_alone(m, ids[i], n[i], &g, &alone[i]);
    }
    drain(s, batched, N_PROMPTS);
    for (int i = 0; i < N_PROMPTS; i++) {
        assert_int_equal(batched[i].res.status, SLM_OK);
        assert_true(batched[i].n > 0);
        assert_same(&batched[i], &alone[i]);
    }
    slm_sched_stats st;
    slm_sched_stats_get(s, &st);
    assert_int_equal(st.busy_slots, 0);
    assert_int_equal(st.requests_done, N_PROMPTS);
    assert_true(st.steps < 200); /* batched: far fewer steps than the tokens generated */
    slm_sched_destroy(s);
    slm_model_close(m);
}

static void test_prefix_reuse(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched *s = sched_for(m, 2, 4);
    int32_t a[256], b[256];
    size_t na, nb;
    tokenize(m, "Once upon a time, there was a little girl named Lily. She liked to play", a, &na);
    tokenize(m, "Once upon a time, there was a little girl named Lily. She had a cat", b, &nb);
    run ra = {0}, rb = {0}, rb2 = {0}, alone = {0};
    const slm_gen_params g = gen_params(7, 16);
    submit(s, a, na, &g, &ra);
    drain(s, &ra, 1);
    assert_int_equal(ra.res.n_cached, 0);
    submit(s, b, nb, &g, &rb);
    drain(s, &rb, 1);
    assert_true(rb.res.n_cached >= 10);
    assert_true(rb.res.n_cached < (int32_t)nb);
    run_alone(m, b, nb, &g, &alone);
    assert_same(&rb, &alone);
    /* the very same prompt again: all but the last token reused, same result */
    submit(s, b, nb, &g, &rb2);
    drain(s, &rb2, 1);
    assert_int_equal(rb2.res.n_cached, (int32_t)nb - 1);
    assert_same(&rb2, &alone);
    slm_sched_stats st;
    slm_sched_stats_get(s, &st);
    assert_int_equal(st.prefix_hits, 2);
    assert_true(st.cache_entries >= 1);
    slm_sched_destroy(s);
    slm_model_close(m);
}

static void test_cancel_frees_slot(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched *s = sched_for(m, 1, 4);
    int32_t ids[256];
    size_t n;
    tokenize(m, prompts[0], ids, &n);
    atomic_bool cancel = false;
    run r1 = {.cancel_after = 2, .cancel = &cancel}, r2 = {0}, alone = {0};
    slm_gen_params g = gen_params(1, 40);
    g.cancel = &cancel;
    submit(s, ids, n, &g, &r1);
    const slm_gen_params g2 = gen_params(2, 12);
    submit(s, ids, n, &g2, &r2); /* waits for the only slot */
    drain(s, &r1, 1);
    assert_int_equal(r1.res.stop, SLM_GEN_STOP_CANCEL);
    assert_int_equal(r1.n, 2);
    drain(s, &r2, 1);
    assert_int_equal(r2.res.status, SLM_OK);
    run_alone(m, ids, n, &g2, &alone);
    assert_same(&r2, &alone);
    /* a deadline in the past cancels too */
    run r3 = {0};
    slm_sched_request rq = {.prompt = ids, .n_prompt = n, .gen = g2, .cb = on_event, .user = &r3,
                            .deadline_ms = slm_sched_now_ms() - 1};
    assert_int_equal(slm_sched_submit(s, &rq, NULL), SLM_OK);
    drain(s, &r3, 1);
    assert_true(r3.res.timed_out);
    assert_int_equal(r3.res.stop, SLM_GEN_STOP_CANCEL);
    slm_sched_stats st;
    slm_sched_stats_get(s, &st);
    assert_int_equal(st.busy_slots, 0);
    assert_int_equal(st.queue_depth, 0);
    slm_sched_destroy(s);
    slm_model_close(m);
}

static void test_queue_full_and_shutdown(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched *s = sched_for(m, 1, 1);
    int32_t ids[256];
    size_t n;
    tokenize(m, prompts[1], ids, &n);
    run r[3] = {0};
    const slm_gen_params g = gen_params(3, 8);
    submit(s, ids, n, &g, &r[0]); /* the free slot */
    submit(s, ids, n, &g, &r[1]); /* the queue */
    const slm_sched_request rq = {.prompt = ids, .n_prompt = n, .gen = g, .cb = on_event, .user = &r[2]};
    assert_int_equal(slm_sched_submit(s, &rq, NULL), SLM_ERR_FULL);
    /* bad requests are refused at submit */
    slm_sched_request bad = rq;
    bad.n_prompt = 300;
    assert_int_equal(slm_sched_submit(s, &bad, NULL), SLM_ERR_FULL);
    bad = rq;
    bad.gen.max_tokens = 0;
    assert_int_equal(slm_sched_submit(s, &bad, NULL), SLM_ERR_INVALID_ARG);
    slm_sched_close(s);
    assert_int_equal(slm_sched_submit(s, &rq, NULL), SLM_ERR_STATE);
    /* destroy with work outstanding: every request gets its DONE */
    assert_int_equal(slm_sched_step(s, 0, NULL), SLM_OK);
    slm_sched_destroy(s);
    assert_true(r[0].done && r[1].done);
    assert_false(r[2].done);
    slm_model_close(m);
}

static void test_prompt_logprobs_and_embed(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched *s = sched_for(m, 2, 4);
    int32_t ids[256];
    size_t n;
    tokenize(m, "Once upon a time, there was a big bear who liked honey very much.", ids, &n);
    run r = {0}, e = {0};
    slm_gen_params g = gen_params(0, 0);
    slm_sched_request rq = {.prompt = ids, .n_prompt = n, .gen = g, .prompt_logprobs = true, .cb = on_event, .user = &r};
    assert_int_equal(slm_sched_submit(s, &rq, NULL), SLM_OK);
    slm_sched_request eq = {.prompt = ids, .n_prompt = n, .embed = true, .cb = on_event, .user = &e};
    assert_int_equal(slm_sched_submit(s, &eq, NULL), SLM_OK);
    drain(s, &r, 1);
    drain(s, &e, 1);
    assert_int_equal(r.n_plp, (int)n - 1);
    assert_int_equal(r.n, 0);
    /* the same from a plain decode with logits everywhere */
    slm_ctx_params cp = {.n_ctx = 256, .n_threads = 1};
    slm_ctx *c = NULL;
    assert_int_equal(slm_ctx_create(m, &cp, &c, NULL), SLM_OK);
    int32_t pos[256], seq[256];
    bool want[256];
    for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i, seq[i] = 0, want[i] = true;
    const slm_batch b = {.n_tokens = (int32_t)n, .token = ids, .pos = pos, .seq_id = seq, .logits = want};
    assert_int_equal(slm_ctx_decode(c, &b, NULL), SLM_OK);
    slm_model_desc d;
    slm_model_describe(m, &d);
    for (size_t i = 0; i + 1 < n; i++) {
        slm_sample_out so;
        assert_int_equal(slm_sample_probs(slm_ctx_logits(c, (int32_t)i), d.n_vocab, ids[i + 1], 0, &so, NULL), SLM_OK);
        assert_true(so.logprob == r.plp[i + 1]);
    }
    float ref[512];
    assert_int_equal(slm_ctx_embed(c, 0, ids, n, ref, NULL), SLM_OK);
    assert_int_equal(e.res.n_embd, d.n_embd);
    for (int i = 0; i < d.n_embd; i++) assert_true(fabsf(ref[i] - e.embd[i]) < 1e-6f);
    slm_ctx_destroy(c);
    slm_sched_destroy(s);
    slm_model_close(m);
}

/* The prefix cache keeps at most cache_tokens tokens, dropping the least recently used. */
static void test_cache_budget(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched_params p = {.n_parallel = 1, .n_queue = 4, .n_ctx = 256, .n_threads = 1, .cache_tokens = 40};
    slm_sched *s = NULL;
    assert_int_equal(slm_sched_create(m, &p, &s, NULL), SLM_OK);
    slm_sched_stats st;
    for (int i = 0; i < N_PROMPTS; i++) {
        int32_t ids[256];
        size_t n;
        tokenize(m, prompts[i], ids, &n);
        run r = {0};
        const slm_gen_params g = gen_params((uint64_t)i, 8);
        submit(s, ids, n, &g, &r);
        drain(s, &r, 1);
        slm_sched_stats_get(s, &st);
        assert_true(st.cache_tokens <= 40);
    }
    assert_true(st.cache_entries >= 1);
    /* the last prompt is cached, the first was evicted */
    int32_t ids[256];
    size_t n;
    run last = {0}, first = {0};
    const slm_gen_params g = gen_params(99, 2);
    tokenize(m, prompts[N_PROMPTS - 1], ids, &n);
    submit(s, ids, n, &g, &last);
    drain(s, &last, 1);
    assert_int_equal(last.res.n_cached, (int32_t)n - 1);
    tokenize(m, prompts[0], ids, &n);
    submit(s, ids, n, &g, &first);
    drain(s, &first, 1);
    assert_int_equal(first.res.n_cached, 0);
    slm_sched_destroy(s);
    slm_model_close(m);
}

/* Slots allowed more positions than the cache holds for all of them: when the cells run
 * out, cache entries go first, then a generating request ends with stop CONTEXT; the others
 * carry on and everything ends. */
static void test_overcommitted_context(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    slm_sched_params p = {.n_parallel = 2, .n_queue = 2, .n_ctx = 64, .n_ctx_slot = 64, .n_threads = 1};
    slm_sched *s = NULL;
    assert_int_equal(slm_sched_create(m, &p, &s, NULL), SLM_OK);
    int32_t a[256], b[256];
    size_t na, nb;
    tokenize(m, prompts[0], a, &na);
    tokenize(m, prompts[1], b, &nb);
    run r[2] = {0};
    slm_gen_params g = gen_params(5, 50); /* prompt + 50 < 64 per slot, but 2 slots need more than 64 cells */
    g.sampling.temperature = 0; /* greedy: no EOG before the cells run out */
    submit(s, a, na, &g, &r[0]);
    submit(s, b, nb, &g, &r[1]);
    drain(s, r, 2);
    assert_true(r[0].res.stop == SLM_GEN_STOP_CONTEXT || r[1].res.stop == SLM_GEN_STOP_CONTEXT);
    assert_int_equal(r[0].res.status, SLM_OK);
    assert_int_equal(r[1].res.status, SLM_OK);
    slm_sched_stats st;
    slm_sched_stats_get(s, &st);
    assert_int_equal(st.busy_slots, 0);
    slm_sched_destroy(s);
    slm_model_close(m);
}

/* Every allocation of create, submit and a whole request can fail without a leak or a
 * crash; the request then either never starts (submit fails) or ends with a DONE. */
static void test_alloc_failures(void **state) {
    slm_model *m = open_model();
    if (!m) skip();
    int32_t ids[256];
    size_t n;
    tokenize(m, prompts[2], ids, &n);
    const slm_gen_params g = gen_params(11, 6);
    bool completed = false;
    for (long k = 1; k < 500 && !completed; k++) {
        slm_sched_params p = {.n_parallel = 2, .n_queue = 2, .n_ctx = 128, .n_threads = 1};
        slm_sched *s = NULL;
        run r = {0};
        slm_fault_arm(k);
        if (slm_sched_create(m, &p, &s, NULL) == SLM_OK) {
            const slm_sched_request rq = {.prompt = ids, .n_prompt = n, .gen = g, .cb = on_event, .user = &r};
            if (slm_sched_submit(s, &rq, NULL) == SLM_OK) {
                for (int i = 0; i < 1000 && !r.done; i++) assert_int_equal(slm_sched_step(s, 0, NULL), SLM_OK);
                assert_true(r.done);
            }
        }
        completed = !slm_fault_fired();
        slm_fault_arm(0);
        slm_sched_destroy(s);
        if (completed) assert_int_equal(r.res.status, SLM_OK);
    }
    assert_true(completed);
    slm_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_cancel_frees_slot),
        cmocka_unit_test(test_queue_full_and_shutdown),
        cmocka_unit_test(test_prompt_logprobs_and_embed),
        cmocka_unit_test(test_cache_budget),
        cmocka_unit_test(test_overcommitted_context),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
