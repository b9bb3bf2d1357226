/*
 * head/svm.c: one-vs-rest linear SVMs with the squared hinge loss, solved in the dual by
 * coordinate descent with shrinking (Hsieh et al., 2008; the method of LIBLINEAR's
 * L2R_L2LOSS_SVC_DUAL), used next to logistic regression: their decision scores are added,
 * so a head stays one linear layer (see train.h).
 *
 * For class c, with y_i = +1 when example i has label c and -1 otherwise, and x_i extended
 * by a constant 1 for the bias (which is regularised, as in LIBLINEAR):
 *   min_a 1/2 a'(Q + D)a - sum a_i,  a_i >= 0,  Q_ij = y_i y_j x_i.x_j,  D_ii = 1 / (2C)
 *   w = sum_i a_i y_i x_i
 * Each step minimises over one a_i exactly; examples whose a_i is 0 and whose gradient is
 * above the largest projected gradient of the previous epoch leave the active set, which is
 * what makes one-vs-rest cheap: most examples of other classes drop out after an epoch.
 *
 * Invariants: each class is solved by one thread from its own seeded order, so results are
 *  bit-identical for any thread count.
 * Thread-safety: reentrant; the problem is only read. Non-goals: L1 loss, Crammer-Singer.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "head/par.h"
#include "head/train.h"
#include "slmesh/head.h"

#define SVM_EPS 0.1        /* stop when max - min projected gradient <= this (LIBLINEAR's) */
#define SVM_MAX_EPOCHS 200 /* a safety cap; Banking77 classes converge in 10-30 */

typedef struct {
    const slm_head_problem *p;
    double C;
    float *w;                            /* (d + 1) x k output, row-major */
    double *alpha;                       /* k x n dual variables, in and out */
    slm_status st[SLM_HEAD_MAX_THREADS]; /* per range */
} svm_ctx;

static uint64_t svm_rng(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Solve class c into wc[0..d] (bias last) from the dual start alpha[0..n) (left there),
 * with the scratch qd/index of n entries. */
static void svm_class(const slm_head_problem *p, double C, uint32_t c, double *wc, double *alpha,
                      double *qd, size_t *index) {
    const size_t n = p->n, d = p->d;
    const double diag = 0.5 / C;
    double pg_max_old = INFINITY; /* shrinking bound (no upper bound on a_i: no lower one) */
    size_t active = n;
    uint64_t rs = 0x5eedull + c;
    memset(wc, 0, (d + 1) * sizeof *wc);
    for (size_t i = 0; i < n; i++) {
        double q = diag + 1.0; /* the bias feature */
        for (size_t e = p->row_ptr[i]; e < p->row_ptr[i + 1]; e++) q += (double)p->val[e] * p->val[e];
        qd[i] = q;
        index[i] = i;
        if (alpha[i] != 0.0) { /* warm start: w = sum a_i y_i x_i */
            const double step = p->y[i] == c ? alpha[i] : -alpha[i];
            for (size_t e = p->row_ptr[i]; e < p->row_ptr[i + 1]; e++) wc[p->col[e]] += step * p->val[e];
            wc[d] += step;
        }
    }
    for (int epoch = 0; epoch < SVM_MAX_EPOCHS; epoch++) {
        double pg_max = -INFINITY, pg_min = INFINITY;
        for (size_t s = active; s > 1; s--) {
            size_t j = (size_t)(svm_rng(&rs) % s), t = index[s - 1];
            index[s - 1] = index[j];
            index[j] = t;
        }
        for (size_t s = 0; s < active; s++) {
            const size_t i = index[s];
            const double yi = p->y[i] == c ? 1.0 : -1.0;
            double dot = wc[d];
            for (size_t e = p->row_ptr[i]; e < p->row_ptr[i + 1]; e++) dot += wc[p->col[e]] * p->val[e];
            const double g = yi * dot - 1.0 + diag * alpha[i];
            double pg = g;
            if (alpha[i] == 0.0) {
                if (g > pg_max_old) { /* shrink: stays at the bound */
                    active--;
                    index[s] = index[active];
                    index[active] = i;
                    s--;
                    continue;
                }
                if (g > 0.0) pg = 0.0;
            }
            if (pg > pg_max) pg_max = pg;
            if (pg < pg_min) pg_min = pg;
            if (fabs(pg) > 1e-12) {
                const double old = alpha[i];
                alpha[i] = fmax(old - g / qd[i], 0.0);
                const double step = (alpha[i] - old) * yi;
                for (size_t e = p->row_ptr[i]; e < p->row_ptr[i + 1]; e++) wc[p->col[e]] += step * p->val[e];
                wc[d] += step;
            }
        }
        if (pg_max - pg_min <= SVM_EPS) {
            if (active == n) break;
            active = n; /* converged on the active set: check every example once more */
            pg_max_old = INFINITY;
            continue;
        }
        pg_max_old = pg_max <= 0.0 ? INFINITY : pg_max;
    }
}

static void svm_range(void *vctx, size_t c0, size_t c1, int tid) {
    svm_ctx *x = vctx;
    const slm_head_problem *p = x->p;
    const size_t d = p->d, k = p->k;
    double *wc = slm_malloc((d + 1) * sizeof *wc);
    double *qd = slm_malloc((p->n + 1) * sizeof *qd);
    size_t *index = slm_malloc((p->n + 1) * sizeof *index);
    x->st[tid] = SLM_OK;
    if (!wc || !qd || !index) x->st[tid] = SLM_ERR_NOMEM;
    for (size_t c = c0; c < c1 && x->st[tid] == SLM_OK; c++) {
        svm_class(p, x->C, (uint32_t)c, wc, x->alpha + c * p->n, qd, index);
        for (size_t f = 0; f <= d; f++) x->w[f * k + c] = (float)wc[f];
    }
    slm_free(wc);
    slm_free(qd);
    slm_free(index);
}

slm_status slm_head_svm_solve(const slm_head_problem *p, double C, int threads, double *alpha, float *w,
                              char *err) {
    svm_ctx *x;
    slm_status st = SLM_OK;
    if (!p || !w || !alpha || !(C > 0.0) || threads < 1 || threads > SLM_HEAD_MAX_THREADS)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "svm: bad arguments");
    if (!(x = slm_calloc(1, sizeof *x))) return slm_errf(err, SLM_ERR_NOMEM, "svm: out of memory");
    x->p = p;
    x->C = C;
    x->w = w;
    x->alpha = alpha;
    slm_head_par(threads, p->k, svm_range, x);
    for (int t = 0; t < SLM_HEAD_MAX_THREADS; t++)
        if (x->st[t] != SLM_OK) {
            st = slm_errf(err, x->st[t], "svm: out of memory");
            break;
        }
    slm_free(x);
    return st;
}
