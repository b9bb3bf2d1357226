/*
 * bench/run.c: the pp/tg measurement of `slmesh bench` (see bench.h), llama-bench's
 * method: a warm-up run per test, then reps timed runs on an emptied cache, tokens/s per
 * run, mean and sample standard deviation.
 *
 * Thread-safety: reentrant (the context is created here). Non-goals: timing tokenization
 * or sampling (the tests feed random token ids and read no logits but the last).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "core/core.h"

static double clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}
static double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static double cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); } /* all threads */

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Mean, sample standard deviation and median of r->ts[0..reps). */
static void summarize(slm_bench_result *r) {
    double sum = 0, sum_ns = 0, sq = 0, sorted[SLM_BENCH_MAX_REPS];
    for (int i = 0; i < r->reps; i++) sum += r->ts[i], sum_ns += r->ns[i];
    r->avg_ts = sum / r->reps;
    r->avg_ns = sum_ns / r->reps;
    for (int i = 0; i < r->reps; i++) sq += (r->ts[i] - r->avg_ts) * (r->ts[i] - r->avg_ts);
    r->stddev_ts = r->reps > 1 ? sqrt(sq / (r->reps - 1)) : 0.0;
    memcpy(sorted, r->ts, (size_t)r->reps * sizeof sorted[0]);
    qsort(sorted, (size_t)r->reps, sizeof sorted[0], cmp_double);
    r->median_ts = r->reps % 2 ? sorted[r->reps / 2] : 0.5 * (sorted[r->reps / 2 - 1] + sorted[r->reps / 2]);
}

/* Next pseudo-random token id in [0, n_vocab) (xorshift64). */
static int32_t rand_token(uint64_t *s, int32_t n_vocab) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (int32_t)(*s % (uint64_t)n_vocab);
}

/* One pp run: n tokens in one batch from position 0 on an empty cache. */
static slm_status run_pp(slm_ctx *c, int32_t n, int32_t *tok, int32_t *pos, int32_t *seq, char *err) {
    slm_ctx_clear(c);
    slm_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq_id = seq, .logits = NULL};
    return slm_ctx_decode(c, &b, err);
}

/* One tg run: n single-token decodes from position 0 on an empty cache. */
static slm_status run_tg(slm_ctx *c, int32_t n, const int32_t *tok, char *err) {
    slm_ctx_clear(c);
    for (int32_t i = 0; i < n; i++) {
        int32_t p = i, s = 0;
        slm_batch b = {.n_tokens = 1, .token = &tok[i], .pos = &p, .seq_id = &s, .logits = NULL};
        slm_status st = slm_ctx_decode(c, &b, err);
        if (st) return st;
    }
    return SLM_OK;
}

slm_status slm_bench_run(const slm_model *m, const slm_bench_params *p, slm_bench_result *pp, slm_bench_result *tg,
                         char *err) {
    if (p->reps < 1 || p->reps > SLM_BENCH_MAX_REPS || p->n_prompt < 0 || p->n_gen < 0 ||
        p->n_prompt > SLM_BENCH_MAX_TOKENS || p->n_gen > SLM_BENCH_MAX_TOKENS)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "reps %d, n_prompt %d, n_gen %d out of range", p->reps, p->n_prompt,
                        p->n_gen);
    slm_model_desc d;
    slm_model_describe(m, &d);
    const int32_t n_max = p->n_prompt > p->n_gen ? p->n_prompt : p->n_gen;
    slm_ctx *c = NULL; /* owned */
    int32_t *tok = slm_calloc((size_t)n_max + 1, sizeof *tok), *pos = slm_calloc((size_t)n_max + 1, sizeof *pos);
    int32_t *seq = slm_calloc((size_t)n_max + 1, sizeof *seq);
    slm_status st = SLM_OK;
    if (!tok || !pos || !seq) {
        st = slm_errf(err, SLM_ERR_NOMEM, "token arrays");
        goto done;
    }
    slm_ctx_params cp = {.n_ctx = n_max > 0 ? n_max : 1, .n_batch = p->n_prompt > 0 ? p->n_prompt : 1,
                         .n_threads = p->n_threads};
    if ((st = slm_ctx_create(m, &cp, &c, err))) goto done;
    uint64_t rng = p->seed ? p->seed : 0x2545F4914F6CDD1Dull;
    for (int32_t i = 0; i < n_max; i++) tok[i] = rand_token(&rng, d.n_vocab), pos[i] = i;

    if (p->n_prompt > 0 && pp) {
        memset(pp, 0, sizeof *pp);
        pp->n_prompt = p->n_prompt, pp->reps = p->reps;
        if ((st = run_pp(c, p->n_prompt, tok, pos, seq, err))) goto done; /* warm-up */
        const double c0 = cpu_ns();
        for (int r = 0; r < p->reps; r++) {
            const double t0 = now_ns();
            if ((st = run_pp(c, p->n_prompt, tok, pos, seq, err))) goto done;
            pp->ns[r] = now_ns() - t0;
            pp->ts[r] = 1e9 * p->n_prompt / pp->ns[r];
        }
        summarize(pp);
        pp->cores_busy = (cpu_ns() - c0) / (pp->avg_ns * pp->reps);
    }
    if (p->n_gen > 0 && tg) {
        memset(tg, 0, sizeof *tg);
        tg->n_gen = p->n_gen, tg->reps = p->reps;
        if ((st = run_tg(c, 1, tok, err))) goto done; /* warm-up: one token, as llama-bench */
        const double c0 = cpu_ns();
        for (int r = 0; r < p->reps; r++) {
            const double t0 = now_ns();
            if ((st = run_tg(c, p->n_gen, tok, err))) goto done;
            tg->ns[r] = now_ns() - t0;
            tg->ts[r] = 1e9 * p->n_gen / tg->ns[r];
        }
        summarize(tg);
        tg->cores_busy = (cpu_ns() - c0) / (tg->avg_ns * tg->reps);
    }
done:
    slm_ctx_destroy(c);
    slm_free(tok), slm_free(pos), slm_free(seq);
    return st;
}
