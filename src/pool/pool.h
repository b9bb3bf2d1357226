/*
 * pool/pool.h: a small persistent thread pool for data-parallel kernels.
 *
 * Threads are created once (slm_pool_create); between jobs they spin briefly, then sleep
 * on a condition variable (pool.c); a job is one function run by every thread with (ith, nth), ith in [0, nth), and the
 * caller's thread is thread 0. A kernel splits its rows with slm_pool_range so that each row
 * is computed by exactly one thread, in the same order whatever nth is: results are
 * bit-identical for any thread count. Within a job, slm_pool_barrier separates steps.
 *
 * Thread-safety: one job at a time per pool; slm_pool_run must not be called concurrently
 * on the same pool nor from inside a job (a context owns its pool). Non-goals: work
 * stealing, nested parallelism, unbounded spinning (the machine is shared).
 */
#ifndef SLMESH_POOL_H
#define SLMESH_POOL_H

#include <stdint.h>

#include "slmesh/status.h"

/* Threads per pool; more than the cores of any machine slmesh targets. */
#define SLM_POOL_MAX_THREADS 256

typedef struct slm_pool slm_pool;

/* A job: called once per thread with ith in [0, nth). arg is the caller's, borrowed. */
typedef void (*slm_pool_fn)(void *arg, int ith, int nth);

/* Create a pool of n_threads (>= 1; 1 means no extra thread is started). *out is owned by
 * the caller; destroy it with slm_pool_destroy. */
slm_status slm_pool_create(int n_threads, slm_pool **out, char *err);
void slm_pool_destroy(slm_pool *p); /* NULL allowed; joins the workers */

int slm_pool_n_threads(const slm_pool *p);

/* Run fn on every thread of the pool (the caller is thread 0) and wait for all of them. A
 * NULL pool runs fn(arg, 0, 1) on the caller. */
void slm_pool_run(slm_pool *p, slm_pool_fn fn, void *arg);

/* Inside a job: return when every thread of the job (all nth of the pool) has called it
 * the same number of times; memory written before it by any thread is visible after it to
 * all. Threads spin (then yield the CPU) while they wait: a barrier costs well under a
 * microsecond when every thread has a core, so a job may run a whole forward pass with a
 * barrier between its steps instead of one job per step. A NULL or 1-thread pool returns
 * at once. Every thread of the job must reach every barrier (no early return). */
void slm_pool_barrier(slm_pool *p);

/* Rows [*r0, *r1) of n for thread ith of nth: contiguous, balanced, disjoint, covering. */
static inline void slm_pool_range(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1) {
    int64_t per = (n + nth - 1) / nth;
    int64_t a = per * ith;
    int64_t b = a + per;
    *r0 = a < n ? a : n;
    *r1 = b < n ? b : n;
}

/* Default thread count: the number of physical cores (online CPUs divided by the SMT
 * siblings when Linux says so), at least 1, at most SLM_POOL_MAX_THREADS. */
int slm_pool_default_threads(void);

#endif /* SLMESH_POOL_H */
