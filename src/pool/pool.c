/*
 * pool/pool.c: persistent worker threads that run one job at a time.
 *
 * Protocol: the caller bumps `generation` under the lock and broadcasts `start`; each
 * worker, woken with a generation it has not run, runs the job and decrements `pending`;
 * the last one signals `done`. The caller runs its share (ith = 0) meanwhile, then waits
 * for pending == 0. Shutdown sets `quit` and broadcasts. Workers never spin: the machine
 * is shared, and a decode step is long enough (many matmuls) that a wake-up costs little.
 *
 * Thread-safety: see pool.h (one job at a time). Non-goals: affinity, priorities.
 */
#include "pool/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

/* ---- pool state ---------------------------------------------------------------------- */

typedef struct worker {
    struct slm_pool *pool; /* borrowed back pointer */
    int ith;               /* 1..n_threads-1 */
    pthread_t thread;
} worker;

struct slm_pool {
    int n_threads;          /* threads including the caller's */
    int n_started;          /* workers actually started (cleanup after a partial create) */
    worker *workers;        /* [n_threads - 1], owned */
    pthread_mutex_t lock;   /* guards everything below */
    pthread_cond_t start;   /* a new generation or quit */
    pthread_cond_t done;    /* pending reached 0 */
    uint64_t generation;    /* incremented per job */
    int pending;            /* workers still running the current job */
    bool quit;              /* workers exit */
    slm_pool_fn fn;         /* the current job */
    void *arg;              /* its argument, borrowed */
};

/* ---- workers ------------------------------------------------------------------------- */

static void *worker_main(void *p) {
    worker *w = p;
    slm_pool *pool = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->quit && pool->generation == seen) pthread_cond_wait(&pool->start, &pool->lock);
        if (pool->quit) break;
        seen = pool->generation;
        slm_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->lock);
        fn(arg, w->ith, pool->n_threads);
        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0) pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* ---- create / destroy ------------------------------------------------------------------ */

slm_status slm_pool_create(int n_threads, slm_pool **out, char *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > SLM_POOL_MAX_THREADS)
        return slm_errf(err, SLM_ERR_RANGE, "thread count %d outside [1, %d]", n_threads, SLM_POOL_MAX_THREADS);
    slm_pool *p = slm_calloc(1, sizeof *p);
    if (!p) return slm_errf(err, SLM_ERR_NOMEM, "thread pool");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->workers = slm_calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            slm_pool_destroy(p);
            return slm_errf(err, SLM_ERR_NOMEM, "thread pool workers");
        }
        for (int i = 1; i < n_threads; i++) {
            worker *w = &p->workers[i - 1];
            w->pool = p;
            w->ith = i;
            if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                slm_pool_destroy(p);
                return slm_errf(err, SLM_ERR_NOMEM, "cannot start thread %d of %d", i, n_threads);
            }
            p->n_started++;
        }
    }
    *out = p;
    return SLM_OK;
}

void slm_pool_destroy(slm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->start);
    pthread_mutex_destroy(&p->lock);
    slm_free(p->workers);
    slm_free(p);
}

int slm_pool_n_threads(const slm_pool *p) { return p ? p->n_threads : 1; }

/* ---- running a job ------------------------------------------------------------------- */

void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *arg) {
    if (!p || p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    fn(arg, 0, p->n_threads);
    pthread_mutex_lock(&p->lock);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

/* ---- default size -------------------------------------------------------------------- */

/* Physical cores: online CPUs divided by the SMT siblings of cpu0 as Linux reports them. */
int slm_pool_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "r");
    if (f) {
        char buf[64] = {0};
        if (fgets(buf, sizeof buf, f)) {
            /* A list such as "0-1", "0,4" or "0": count the CPUs it names. */
            int siblings = 0;
            char *s = buf;
            while (*s >= '0' && *s <= '9') {
                long a = strtol(s, &s, 10), b = a;
                if (*s == '-') b = strtol(s + 1, &s, 10);
                if (b >= a && b - a < SLM_POOL_MAX_THREADS) siblings += (int)(b - a + 1);
                if (*s == ',') s++;
            }
            if (siblings > 1 && n / siblings >= 1) n /= siblings;
        }
        fclose(f);
    }
    if (n > SLM_POOL_MAX_THREADS) n = SLM_POOL_MAX_THREADS;
    return (int)n;
}
