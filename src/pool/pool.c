/*
 * pool/pool.c: persistent worker threads that run one job at a time.
 *
 * Protocol: the caller stores the job, sets `pending` to the number of workers, and bumps
 * `generation` (atomics, release); then it broadcasts `start` under the lock for the
 * workers that went to sleep. Each worker spins on `generation` for up to SPIN_NS before
 * sleeping on `start` (re-checking under the lock, so a wake-up cannot be lost), runs the
 * job, and decrements `pending`; the one that reaches 0 signals `done` under the lock. The
 * caller runs its share (ith = 0) meanwhile, then spins on `pending` and sleeps on `done`
 * after that. Each thread's spin budget adapts: it doubles (up to SPIN_NS) when a spin ends
 * in time and shrinks fourfold (down to SPIN_MIN_NS) when it does not, so on an
 * oversubscribed machine, where a peer is often descheduled and spinning only burns its
 * time slice, the pool degrades to sleeping (measured: 35 us per empty job sleeping, 60-250
 * us with fixed spins, under a load of 13 on 2 cores). A wait that ended in a sleep but
 * lasted less than SPIN_NS in all grows the budget back to cover it (twice the wait): the
 * job came soon and a spin would have caught it. Without that, one long wait (the caller
 * descheduled once) left the budget at its floor for good, every decode step then woke
 * its worker from a futex (measured: 30-60 us a step on the shared VM, a step of SmolLM2
 * being ~4 ms). Shutdown sets `quit`, bumps the generation and broadcasts.
 *
 * Within a job, slm_pool_barrier separates steps: a counting barrier (a count and a phase;
 * the last thread to arrive resets the count and bumps the phase, the others spin on the
 * phase and yield now and then). The forward pass runs as ONE job with a barrier between
 * its steps: a decode step has ~300 steps of tens of microseconds, and a barrier (~0.1-0.5
 * us when both threads have a core) costs far less than waking workers per step.
 *
 * Thread-safety: see pool.h (one job at a time). Non-goals: affinity, priorities.
 */
#include "pool/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

/* How long a thread spins for the next job (workers) or for the workers to finish (the
 * caller) before sleeping: a few job lengths of a small model's decode step. */
#define SPIN_NS 200000
#define SPIN_MIN_NS 1000 /* floor of the adaptive budget: about a futex wake-up */
/* Spin iterations between two looks at the clock. */
#define SPIN_CHECK_EVERY 16

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
    pthread_mutex_t lock;   /* for sleeping and waking only */
    pthread_cond_t start;   /* a new generation or quit */
    pthread_cond_t done;    /* pending reached 0 */
    _Atomic uint64_t generation; /* incremented per job (release: fn and arg are visible) */
    _Atomic int pending;    /* workers still running the current job */
    _Atomic bool quit;      /* workers exit */
    _Atomic int bar_count;  /* threads that reached the current barrier */
    _Atomic uint64_t bar_phase; /* barriers completed (waiters watch it change) */
    slm_pool_fn fn;         /* the current job, written before generation is bumped */
    void *arg;              /* its argument, borrowed */
    uint64_t spin_budget;   /* the caller's adaptive spin (ns), see the top */
};

/* ---- spinning ------------------------------------------------------------------------ */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin until the condition holds (true) or *budget ns passed (false); adapt *budget. *t0
 * is when the spin began (for regrow). */
static bool spin_until(bool (*cond)(slm_pool *, uint64_t), slm_pool *p, uint64_t arg, uint64_t *budget,
                       uint64_t *t0_out) {
    *t0_out = 0;
    if (cond(p, arg)) return true;
    const uint64_t t0 = now_ns();
    *t0_out = t0;
    for (unsigned i = 1;; i++) {
        if (cond(p, arg)) {
            *budget = *budget * 2 < SPIN_NS ? *budget * 2 : SPIN_NS;
            return true;
        }
        cpu_relax();
        if (i % SPIN_CHECK_EVERY == 0 && now_ns() - t0 > *budget) {
            *budget = *budget / 4 > SPIN_MIN_NS ? *budget / 4 : SPIN_MIN_NS;
            return false;
        }
    }
}

/* After a wait begun at t0 that needed a sleep: grow the budget to twice the wait when the
 * whole wait was shorter than SPIN_NS (see the top). */
static void regrow(uint64_t t0, uint64_t *budget) {
    const uint64_t waited = now_ns() - t0;
    if (waited >= SPIN_NS) return;
    const uint64_t want = 2 * waited < SPIN_NS ? 2 * waited : SPIN_NS;
    if (want > *budget) *budget = want;
}

static bool new_generation(slm_pool *p, uint64_t seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static bool all_done(slm_pool *p, uint64_t unused) {
    (void)unused;
    return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

/* ---- workers ------------------------------------------------------------------------- */

static void *worker_main(void *p) {
    worker *w = p;
    slm_pool *pool = w->pool;
    uint64_t seen = 0, budget = SPIN_NS, t0;
    for (;;) {
        if (!spin_until(new_generation, pool, seen, &budget, &t0)) {
            pthread_mutex_lock(&pool->lock);
            while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen)
                pthread_cond_wait(&pool->start, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
            regrow(t0, &budget);
        }
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (atomic_load_explicit(&pool->quit, memory_order_acquire)) break;
        pool->fn(pool->arg, w->ith, pool->n_threads);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
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
    p->spin_budget = SPIN_NS;
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
    atomic_store_explicit(&p->quit, true, memory_order_release);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_acq_rel);
    pthread_mutex_lock(&p->lock);
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
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->lock); /* wake the sleepers (cheap when none sleeps) */
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->lock);
    fn(arg, 0, p->n_threads);
    uint64_t t0;
    if (spin_until(all_done, p, 0, &p->spin_budget, &t0)) return;
    pthread_mutex_lock(&p->lock);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    regrow(t0, &p->spin_budget);
}

/* ---- barriers inside a job ------------------------------------------------------------- */

/* Spins between two sched_yield calls while waiting at a barrier: on an oversubscribed
 * machine a peer may be descheduled for a whole time slice, and yielding lets it (or
 * anything else) run instead of burning the slice. About a microsecond of pause loops. */
#define BARRIER_SPINS_PER_YIELD 1024

void slm_pool_barrier(slm_pool *p) {
    if (!p || p->n_threads == 1) return;
    const uint64_t phase = atomic_load_explicit(&p->bar_phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) == p->n_threads - 1) {
        /* the last to arrive: reset the count for the next barrier, then release the others */
        atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->bar_phase, 1, memory_order_release);
        return;
    }
    for (unsigned i = 1; atomic_load_explicit(&p->bar_phase, memory_order_acquire) == phase; i++) {
        cpu_relax();
        if (i % BARRIER_SPINS_PER_YIELD == 0) sched_yield();
    }
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
