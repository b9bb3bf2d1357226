/*
 * head/train.h: the solver of task heads: multinomial logistic regression with L2 on a
 * sparse matrix, minimised by L-BFGS on several threads.
 *
 * Objective (weights w, a (d+1) x k matrix whose last row is the bias):
 *   f(w) = sum_i c_i * (logsumexp(s_i) - s_i[y_i]) / sum_i c_i + l2/2 * ||W||^2
 *   s_i = x_i W + bias; c_i = the example's weight (class weights); the bias is not penalised.
 *
 * Invariants: the result is bit-identical for any thread count: per-example and
 *  per-column results are computed by one thread each, and every sum over examples or
 *  chunks is added in a fixed order.
 * Thread-safety: reentrant; the problem is only read. Non-goals: L1, sparse weights.
 */
#ifndef SLMESH_HEAD_TRAIN_H
#define SLMESH_HEAD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

/* A training matrix in CSR form with labels; all arrays borrowed. */
typedef struct slm_head_problem {
    size_t n;                /* examples (rows) */
    uint32_t d;              /* feature columns */
    uint32_t k;              /* classes */
    const size_t *row_ptr;   /* n + 1 offsets into col/val */
    const uint32_t *col;     /* column of each non-zero, < d */
    const float *val;        /* value of each non-zero */
    const uint32_t *y;       /* n labels, < k */
    const float *weight;     /* n example weights > 0, or NULL for all 1 */
    const float *col_l2;     /* d multipliers of l2 per column, or NULL for all 1 */
} slm_head_problem;

typedef struct slm_head_solver_opts {
    double l2;      /* lambda >= 0 */
    int max_iter;   /* iterations (each one gradient evaluation, more on backtracking) */
    double tol;     /* stop when the relative decrease of f is below tol */
    int threads;    /* >= 1 */
    int memory;     /* L-BFGS history pairs */
} slm_head_solver_opts;

#define SLM_HEAD_SOLVER_MAX_MEMORY 32 /* history beyond this costs memory for nothing */

/* Minimise f from the starting point in w ((d + 1) * k floats, row-major: w[f * k + c]);
 * leaves the minimiser in w. iters and loss (may be NULL) receive what was done. */
slm_status slm_head_solve(const slm_head_problem *p, const slm_head_solver_opts *o, float *w,
                          int *iters, double *loss, char *err);

#endif /* SLMESH_HEAD_TRAIN_H */
