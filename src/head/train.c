/*
 * head/train.c: L-BFGS for multinomial logistic regression (see train.h).
 *
 * One evaluation of f and its gradient is two parallel phases:
 *   forward  (over example ranges, CSR): scores, softmax, per-example loss, residuals
 *            R_i = c_i (p_i - onehot(y_i)) / sum c
 *   backward (over column ranges balanced by non-zeros, CSC): G[f] = sum_i x_if R_i + l2 W[f]
 * and two serial reductions in example order (loss, bias gradient). Vector operations of
 * L-BFGS run over a fixed number of chunks whose partial dot products are added in chunk
 * order, so thread count never changes a bit of the result.
 *
 * Inside the solver every row (of W, of the gradient, of the residuals) is padded from k to
 * kp = k rounded up to SOLVE_LANES floats, so the k-wide loops are whole vectors with no
 * scalar tail; the padding stays exactly 0 (zero weights, zero residuals, zero gradient).
 *
 * Invariants: w has (d + 1) rows of k floats, the last one the bias.
 * Thread-safety: reentrant. Non-goals: a general optimiser library.
 */
#include "head/train.h"

#include <math.h>
#include <string.h>

#include "core/core.h"
#include "head/par.h"
#include "head/hot.h"
#include "slmesh/head.h"

#define SOLVE_LANES 8 /* row padding: one AVX register of floats */

/* ---- CSC copy of the problem ------------------------------------------------------------ */

typedef struct {
    size_t *ptr;  /* d + 1 offsets */
    uint32_t *row;/* example of each non-zero, ascending within a column */
    float *val;   /* its value */
} csc_matrix;

static void csc_free(csc_matrix *m) {
    slm_free(m->ptr);
    slm_free(m->row);
    slm_free(m->val);
}

static slm_status csc_build(const slm_head_problem *p, csc_matrix *m, char *err) {
    size_t nnz = p->row_ptr[p->n];
    memset(m, 0, sizeof *m);
    m->ptr = slm_calloc((size_t)p->d + 1, sizeof *m->ptr);
    m->row = slm_malloc((nnz ? nnz : 1) * sizeof *m->row);
    m->val = slm_malloc((nnz ? nnz : 1) * sizeof *m->val);
    if (!m->ptr || !m->row || !m->val) {
        csc_free(m);
        return slm_errf(err, SLM_ERR_NOMEM, "out of memory for the transposed matrix");
    }
    for (size_t e = 0; e < nnz; e++) m->ptr[p->col[e] + 1]++;
    for (uint32_t f = 0; f < p->d; f++) m->ptr[f + 1] += m->ptr[f];
    /* fill in example order, using ptr[f] as the cursor, then shift back */
    for (size_t i = 0; i < p->n; i++)
        for (size_t e = p->row_ptr[i]; e < p->row_ptr[i + 1]; e++) {
            size_t at = m->ptr[p->col[e]]++;
            m->row[at] = (uint32_t)i;
            m->val[at] = p->val[e];
        }
    for (uint32_t f = p->d; f > 0; f--) m->ptr[f] = m->ptr[f - 1];
    m->ptr[0] = 0;
    return SLM_OK;
}

/* ---- objective and gradient ------------------------------------------------------------- */

typedef struct {
    const slm_head_problem *p; /* borrowed */
    const csc_matrix *csc;     /* borrowed */
    const float *w;            /* point being evaluated: (d + 1) x k */
    float *g;                  /* gradient out: (d + 1) x k */
    float *R;                  /* n x kp residuals */
    uint32_t kp;               /* padded row length */
    double *row_loss;          /* n weighted losses */
    double inv_wsum;           /* 1 / sum of example weights */
    float l2;                  /* lambda */
    const float *col_l2;       /* per-column multiplier of lambda, or NULL */
    size_t col_bounds[SLM_HEAD_MAX_THREADS + 1]; /* backward column ranges */
    size_t row_bounds[SLM_HEAD_MAX_THREADS + 1]; /* forward example ranges */
    size_t *fwd_off;           /* (nranges + 1) x d: where range t starts in each column */
    int nranges;               /* how many ranges of each kind */
} fg_ctx;

/* y[0..n) += a * x[0..n), n a multiple of SOLVE_LANES; the rows never overlap. */
static inline void axpy_row(float *restrict y, const float *restrict x, float a, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) y[j] += a * x[j];
}

/* Examples [i0, i1) (range tid): scores s_i = bias + x_i W, then loss and residuals.
 * Scores are accumulated column by column through the CSC copy: W is read once, in order,
 * and the scattered writes go to the smaller residual matrix. Each example still adds its
 * terms in column order, whatever the ranges. */
HOT_CLONES static void forward_range(void *vctx, size_t i0, size_t i1, int tid) {
    fg_ctx *c = vctx;
    const slm_head_problem *p = c->p;
    const uint32_t k = p->k, kp = c->kp;
    const float *bias = c->w + (size_t)p->d * kp;
    const size_t *lo = c->fwd_off + (size_t)tid * p->d, *hi = lo + p->d;
    for (size_t i = i0; i < i1; i++) memcpy(c->R + i * kp, bias, kp * sizeof *c->R);
    for (uint32_t f = 0; f < p->d; f++) {
        const float *wf = c->w + (size_t)f * kp; /* row of W: kp floats */
        for (size_t e = lo[f]; e < hi[f]; e++) axpy_row(c->R + (size_t)c->csc->row[e] * kp, wf, c->csc->val[e], kp);
    }
    for (size_t i = i0; i < i1; i++) {
        float *s = c->R + i * kp; /* scores, turned into residuals in place */
        float mx = s[0];
        for (uint32_t j = 1; j < k; j++) mx = s[j] > mx ? s[j] : mx;
        double z = 0.0;
        for (uint32_t j = 0; j < k; j++) {
            s[j] = expf(s[j] - mx);
            z += s[j];
        }
        const double ci = p->weight ? p->weight[i] : 1.0;
        const uint32_t yi = p->y[i];
        /* loss = logsumexp - s_y = log z - log(exp(s_y - mx)) */
        c->row_loss[i] = ci * (log(z) - log((double)s[yi] > 0 ? (double)s[yi] : 1e-300));
        const float scale = (float)(ci * c->inv_wsum / z);
        for (uint32_t j = 0; j < k; j++) s[j] *= scale;
        s[yi] -= (float)(ci * c->inv_wsum);
        for (uint32_t j = k; j < kp; j++) s[j] = 0.0f; /* padding: no residual */
    }
}

/* Columns [f0, f1): G[f] = sum over the column's examples of x_if R_i, plus l2 W[f]. */
HOT_CLONES static void backward_range(void *vctx, size_t f0, size_t f1, int tid) {
    fg_ctx *c = vctx;
    const uint32_t kp = c->kp;
    for (size_t f = f0; f < f1; f++) {
        float *gf = c->g + f * kp;
        const float *wf = c->w + f * kp;
        const float l2f = c->col_l2 ? c->l2 * c->col_l2[f] : c->l2;
        for (uint32_t j = 0; j < kp; j++) gf[j] = l2f * wf[j];
        for (size_t e = c->csc->ptr[f]; e < c->csc->ptr[f + 1]; e++) {
            const float *r = c->R + (size_t)c->csc->row[e] * kp; /* residual row: kp floats */
            const float v = c->csc->val[e];
            axpy_row(gf, r, v, kp);
        }
    }
}

/* f(w) and its gradient into c->g. */
static double eval_fg(fg_ctx *c, const float *w, float *g, int threads) {
    const slm_head_problem *p = c->p;
    const uint32_t kp = c->kp;
    c->w = w;
    c->g = g;
    slm_head_par_bounds(c->nranges, c->row_bounds, forward_range, c);
    slm_head_par_bounds(c->nranges, c->col_bounds, backward_range, c);
    /* serial, in example order: loss and bias gradient */
    double loss = 0.0;
    float *gb = g + (size_t)p->d * kp;
    memset(gb, 0, kp * sizeof *gb);
    for (size_t i = 0; i < p->n; i++) {
        loss += c->row_loss[i];
        const float *r = c->R + i * kp;
        for (uint32_t j = 0; j < kp; j++) gb[j] += r[j];
    }
    double reg = 0.0;
    const size_t nw = (size_t)p->d * kp;
    if (!c->col_l2)
        for (size_t q = 0; q < nw; q++) reg += (double)w[q] * w[q];
    else
        for (uint32_t f = 0; f < p->d; f++) {
            double rf = 0.0;
            for (uint32_t j = 0; j < kp; j++) rf += (double)w[(size_t)f * kp + j] * w[(size_t)f * kp + j];
            reg += c->col_l2[f] * rf;
        }
    (void)nw;
    return loss * c->inv_wsum + 0.5 * c->l2 * reg;
}

/* ---- chunked vector operations ---------------------------------------------------------- */

/* The vector is cut into VEC_CHUNKS pieces whatever the thread count; each piece's partial
 * sum is one slot, and slots are added in order. */
#define VEC_CHUNKS 64

typedef enum {
    VOP_DOT,      /* part = a . b */
    VOP_AXPY_DOT, /* a += alpha b; part = c . a (c may be NULL) */
    VOP_LINCOMB,  /* a = b + alpha c */
    VOP_SUB,      /* a = b - c */
} vec_op;

typedef struct {
    vec_op op;
    float *a;
    const float *b, *c;
    float alpha;
    size_t len;
    double part[VEC_CHUNKS];
} vec_ctx;

/* Dot product of n floats: 8 float lanes per block of VEC_BLOCK (vectorisable), blocks
 * added in double so long vectors keep their precision. */
#define VEC_BLOCK 512
#define VEC_LANES 8

HOT_CLONES static double dot_span(const float *a, const float *b, size_t n) {
    double total = 0.0;
    for (size_t lo = 0; lo < n; lo += VEC_BLOCK) {
        size_t hi = lo + VEC_BLOCK < n ? lo + VEC_BLOCK : n, q = lo;
        float acc[VEC_LANES] = {0};
        for (; q + VEC_LANES <= hi; q += VEC_LANES)
            for (int l = 0; l < VEC_LANES; l++) acc[l] += a[q + l] * b[q + l];
        for (; q < hi; q++) acc[0] += a[q] * b[q];
        double s = 0.0;
        for (int l = 0; l < VEC_LANES; l++) s += acc[l];
        total += s;
    }
    return total;
}

static void vec_range(void *vctx, size_t c0, size_t c1, int tid) {
    vec_ctx *v = vctx;
    for (size_t ch = c0; ch < c1; ch++) {
        size_t lo = v->len * ch / VEC_CHUNKS, hi = v->len * (ch + 1) / VEC_CHUNKS;
        float *a = v->a + lo;
        const float *b = v->b + lo, *c = v->c ? v->c + lo : NULL;
        const size_t n = hi - lo;
        const float alpha = v->alpha;
        double acc = 0.0;
        switch (v->op) {
        case VOP_DOT:
            acc = dot_span(a, b, n);
            break;
        case VOP_AXPY_DOT:
            for (size_t q = 0; q < n; q++) a[q] += alpha * b[q];
            if (c) acc = dot_span(c, a, n);
            break;
        case VOP_LINCOMB:
            for (size_t q = 0; q < n; q++) a[q] = b[q] + alpha * c[q];
            break;
        case VOP_SUB:
            for (size_t q = 0; q < n; q++) a[q] = b[q] - c[q];
            break;
        }
        v->part[ch] = acc;
    }
}

static double vec_run(int threads, vec_op op, float *a, const float *b, const float *c,
                      float alpha, size_t len) {
    vec_ctx v = {.op = op, .a = a, .b = b, .c = c, .alpha = alpha, .len = len};
    slm_head_par(threads, VEC_CHUNKS, vec_range, &v);
    double s = 0.0;
    for (int ch = 0; ch < VEC_CHUNKS; ch++) s += v.part[ch];
    return s;
}

static double vdot(int th, const float *a, const float *b, size_t len) {
    return vec_run(th, VOP_DOT, (float *)(uintptr_t)a, b, NULL, 0.0f, len);
}

/* ---- L-BFGS ----------------------------------------------------------------------------- */

#define ARMIJO_C1 1e-4     /* sufficient decrease constant (Nocedal & Wright) */
#define MAX_BACKTRACK 30   /* halvings before giving up on a direction */
#define CURVATURE_MIN 1e-12/* skip history pairs with s.y below this */

slm_status slm_head_solve(const slm_head_problem *p, const slm_head_solver_opts *o, float *w,
                          int *iters, double *loss_out, char *err) {
    slm_status st = SLM_OK;
    csc_matrix csc = {0};
    fg_ctx c = {0};
    float *buf = NULL;           /* owned: every vector below lives in it */
    double *row_loss = NULL;     /* owned */
    float *R = NULL;             /* owned */
    const int th = o->threads < 1 ? 1 : (o->threads > SLM_HEAD_MAX_THREADS ? SLM_HEAD_MAX_THREADS : o->threads);
    const int m = o->memory < 1 ? 1 : (o->memory > SLM_HEAD_SOLVER_MAX_MEMORY ? SLM_HEAD_SOLVER_MAX_MEMORY : o->memory);
    size_t P, nk, nvec = 5 + 2 * (size_t)m, bytes;
    const uint32_t kp = p ? (p->k + SOLVE_LANES - 1) / SOLVE_LANES * SOLVE_LANES : 0;
    int it = 0;
    double f = 0.0;

    if (!p || !o || !w || p->k < 2 || p->n == 0)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "solver: need examples and at least 2 classes");
    if (p->k > SLM_HEAD_MAX_LABELS || !slm_mul_size((size_t)p->d + 1, kp, &P) ||
        !slm_mul_size(P, nvec * sizeof(float), &bytes) || !slm_mul_size(p->n, kp, &nk))
        return slm_errf(err, SLM_ERR_LIMIT, "solver: problem too large");
    if ((st = csc_build(p, &csc, err)) != SLM_OK) return st;
    buf = slm_malloc(bytes);
    R = slm_malloc(nk * sizeof *R);
    row_loss = slm_malloc(p->n * sizeof *row_loss);
    if (!buf || !R || !row_loss) {
        st = slm_errf(err, SLM_ERR_NOMEM, "solver: out of memory (%zu MB of vectors)", bytes >> 20);
        goto done;
    }

    memset(&c, 0, sizeof c);
    c.p = p;
    c.csc = &csc;
    c.R = R;
    c.kp = kp;
    c.row_loss = row_loss;
    c.l2 = (float)o->l2;
    c.col_l2 = p->col_l2;
    double wsum = 0.0;
    for (size_t i = 0; i < p->n; i++) wsum += p->weight ? p->weight[i] : 1.0;
    c.inv_wsum = 1.0 / wsum;
    /* column ranges with about equal non-zeros (plus one per column for the l2 term) */
    c.nranges = th;
    {
        size_t total = csc.ptr[p->d] + p->d, col = 0;
        c.col_bounds[0] = 0;
        for (int t = 1; t < th; t++) {
            size_t target = total / (size_t)th * (size_t)t;
            while (col < p->d && csc.ptr[col] + col < target) col++;
            c.col_bounds[t] = col;
        }
        c.col_bounds[th] = p->d;
    }
    /* example ranges and, per range, its first entry in every column (rows ascend) */
    c.fwd_off = slm_malloc(((size_t)th + 1) * ((size_t)p->d + 1) * sizeof *c.fwd_off);
    if (!c.fwd_off) {
        st = slm_errf(err, SLM_ERR_NOMEM, "solver: out of memory");
        goto done;
    }
    for (int t = 0; t <= th; t++) c.row_bounds[t] = p->n * (size_t)t / (size_t)th;
    for (int t = 0; t <= th; t++)
        for (uint32_t col = 0; col < p->d; col++) {
            size_t e = t == 0 ? csc.ptr[col] : c.fwd_off[(size_t)(t - 1) * p->d + col];
            while (e < csc.ptr[col + 1] && csc.row[e] < c.row_bounds[t]) e++;
            c.fwd_off[(size_t)t * p->d + col] = e;
        }

    float *x = buf, *g = buf + P, *xn = buf + 2 * P, *gn = buf + 3 * P, *dir = buf + 4 * P;
    float *S = buf + 5 * P, *Y = S + (size_t)m * P; /* history: m vectors each */
    double rho[SLM_HEAD_SOLVER_MAX_MEMORY], alpha[SLM_HEAD_SOLVER_MAX_MEMORY];
    int hist = 0, head = 0; /* pairs stored; index of the oldest */

    for (size_t r = 0; r <= p->d; r++) { /* w (stride k) -> x (stride kp, zero padding) */
        memcpy(x + r * kp, w + r * p->k, p->k * sizeof *x);
        memset(x + r * kp + p->k, 0, (kp - p->k) * sizeof *x);
    }
    f = eval_fg(&c, x, g, th);
    for (it = 0; it < o->max_iter; it++) {
        /* direction = -H g by the two-loop recursion, newest pair first */
        memcpy(dir, g, P * sizeof *dir);
        double gamma = 1.0;
        if (hist > 0) {
            int newest = (head + hist - 1) % m;
            double a = rho[newest] * vdot(th, S + (size_t)newest * P, dir, P);
            for (int h = hist - 1; h >= 0; h--) {
                int idx = (head + h) % m;
                alpha[idx] = a;
                const float *next_s = h > 0 ? S + (size_t)((head + h - 1) % m) * P : NULL;
                double dn = vec_run(th, VOP_AXPY_DOT, dir, Y + (size_t)idx * P, next_s, (float)-a, P);
                if (h > 0) a = rho[(head + h - 1) % m] * dn;
            }
            double yy = vdot(th, Y + (size_t)newest * P, Y + (size_t)newest * P, P);
            gamma = 1.0 / (rho[newest] * yy);
            for (size_t q = 0; q < P; q++) dir[q] *= (float)gamma;
            double b = rho[head] * vdot(th, Y + (size_t)head * P, dir, P);
            for (int h = 0; h < hist; h++) {
                int idx = (head + h) % m;
                const float *next_y = h + 1 < hist ? Y + (size_t)((head + h + 1) % m) * P : NULL;
                double dn = vec_run(th, VOP_AXPY_DOT, dir, S + (size_t)idx * P, next_y, (float)(alpha[idx] - b), P);
                if (h + 1 < hist) b = rho[(head + h + 1) % m] * dn;
            }
        }
        for (size_t q = 0; q < P; q++) dir[q] = -dir[q];
        double gd = vdot(th, g, dir, P);
        if (!(gd < 0.0)) { /* not a descent direction: forget the history, use -g */
            hist = head = 0;
            for (size_t q = 0; q < P; q++) dir[q] = -g[q];
            gd = vdot(th, g, dir, P);
            if (!(gd < 0.0)) break; /* zero gradient: at the minimum */
        }
        double step = 1.0, fn = 0.0;
        if (hist == 0) step = 1.0 / sqrt(-gd); /* first step: unit length */
        int bt;
        for (bt = 0; bt < MAX_BACKTRACK; bt++) {
            vec_run(th, VOP_LINCOMB, xn, x, dir, (float)step, P);
            fn = eval_fg(&c, xn, gn, th);
            if (fn <= f + ARMIJO_C1 * step * gd) break;
            step *= 0.5;
        }
        if (bt == MAX_BACKTRACK) break; /* no progress possible at float precision */
        /* history pair s = xn - x, y = gn - g (overwrites the oldest when full) */
        int slot = hist < m ? (head + hist) % m : head;
        float *s_new = S + (size_t)slot * P, *y_new = Y + (size_t)slot * P;
        vec_run(th, VOP_SUB, s_new, xn, x, 0.0f, P);
        vec_run(th, VOP_SUB, y_new, gn, g, 0.0f, P);
        double sy = vdot(th, s_new, y_new, P);
        if (sy > CURVATURE_MIN) {
            rho[slot] = 1.0 / sy;
            if (hist < m) hist++;
            else head = (head + 1) % m;
        } else if (hist == m) { /* the oldest pair was overwritten by a rejected one */
            head = (head + 1) % m;
            hist--;
        }
        double rel = (f - fn) / (fabs(f) > 1.0 ? fabs(f) : 1.0);
        float *t;
        t = x; x = xn; xn = t;
        t = g; g = gn; gn = t;
        f = fn;
        if (rel < o->tol) { it++; break; }
    }
    for (size_t r = 0; r <= p->d; r++) memcpy(w + r * p->k, x + r * kp, p->k * sizeof *w);
    if (iters) *iters = it;
    if (loss_out) *loss_out = f;
done:
    slm_free(c.fwd_off);
    csc_free(&csc);
    slm_free(buf);
    slm_free(R);
    slm_free(row_loss);
    return st;
}
