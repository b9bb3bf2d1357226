/*
 * head/par.h: run a function over index ranges on a few threads (pthreads), the only
 * parallelism of the head module.
 *
 * Invariants: every index of [0, n) is processed exactly once; when a thread cannot be
 *  created its range runs on the calling thread, so the result never depends on it.
 *  Callers keep results deterministic by writing per-index outputs (never shared sums).
 * Thread-safety: fn must be safe to run concurrently on disjoint ranges.
 * Non-goals: a persistent pool; thread start-up (~20 us) is small against each phase.
 */
#ifndef SLMESH_HEAD_PAR_H
#define SLMESH_HEAD_PAR_H

#include <stddef.h>

/* fn(ctx, begin, end, tid) for the tid-th range. */
typedef void (*slm_head_par_fn)(void *ctx, size_t begin, size_t end, int tid);

/* Split [0, n) into up to `threads` equal contiguous ranges. */
void slm_head_par(int threads, size_t n, slm_head_par_fn fn, void *ctx);
/* Ranges [bounds[t], bounds[t+1]) for t < nranges. */
void slm_head_par_bounds(int nranges, const size_t *bounds, slm_head_par_fn fn, void *ctx);

#endif /* SLMESH_HEAD_PAR_H */
