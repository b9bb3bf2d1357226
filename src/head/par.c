/*
 * head/par.c: see par.h. Threads are created per call and joined before it returns.
 * Thread-safety: reentrant. Non-goals: work stealing.
 */
#include "head/par.h"

#include <pthread.h>

#include "slmesh/head.h"

typedef struct {
    slm_head_par_fn fn; /* borrowed */
    void *ctx;          /* borrowed */
    size_t begin, end;  /* this range */
    int tid;            /* range index */
} par_job;

static void *par_main(void *arg) {
    par_job *j = arg;
    j->fn(j->ctx, j->begin, j->end, j->tid);
    return NULL;
}

void slm_head_par_bounds(int nranges, const size_t *bounds, slm_head_par_fn fn, void *ctx) {
    par_job jobs[SLM_HEAD_MAX_THREADS];
    pthread_t th[SLM_HEAD_MAX_THREADS];
    int started[SLM_HEAD_MAX_THREADS];
    if (nranges < 1) return;
    if (nranges > SLM_HEAD_MAX_THREADS) nranges = SLM_HEAD_MAX_THREADS;
    for (int t = 0; t < nranges; t++) {
        jobs[t] = (par_job){fn, ctx, bounds[t], bounds[t + 1], t};
        started[t] = 0;
    }
    /* ranges 1.. on new threads, range 0 on the caller */
    for (int t = 1; t < nranges; t++)
        started[t] = pthread_create(&th[t], NULL, par_main, &jobs[t]) == 0;
    par_main(&jobs[0]);
    for (int t = 1; t < nranges; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else par_main(&jobs[t]);
    }
}

void slm_head_par(int threads, size_t n, slm_head_par_fn fn, void *ctx) {
    size_t bounds[SLM_HEAD_MAX_THREADS + 1];
    if (threads < 1) threads = 1;
    if (threads > SLM_HEAD_MAX_THREADS) threads = SLM_HEAD_MAX_THREADS;
    if ((size_t)threads > n) threads = n ? (int)n : 1;
    for (int t = 0; t <= threads; t++) bounds[t] = n / (size_t)threads * (size_t)t + (n % (size_t)threads) * (size_t)t / (size_t)threads;
    bounds[threads] = n;
    slm_head_par_bounds(threads, bounds, fn, ctx);
}
