/*
 * head/head.c: the public task-head API: training (labels, split, features, solver,
 * calibration, threshold), prediction and evaluation.
 *
 * Training data flow: label set -> stratified validation split -> pass 1 over training
 * texts: document frequency per bucket -> vocabulary (buckets with df >= min_df) and IDF
 * -> pass 2: CSR rows of train and validation -> L-BFGS -> validation logits ->
 * temperature -> escalation threshold on in-scope validation examples.
 *
 * Invariants: training is deterministic for a given seed whatever the thread count (integer
 *  df sums, rows assembled in order, the solver's fixed reductions).
 * Thread-safety: see slmesh/head.h. Non-goals: hyper-parameter search (l2 is an option).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "head/calib.h"
#include "head/features.h"
#include "head/head_impl.h"
#include "head/hot.h"
#include "head/par.h"
#include "head/train.h"

#define HEAD_SOLVER_TOL 1e-6    /* relative decrease of f below which L-BFGS stops */
#define HEAD_SOLVER_MEMORY 5    /* L-BFGS pairs: each costs 2 vector passes per iteration */
#define HEAD_MAX_TOP 64         /* top-N list length a caller may ask for */

/* ---- options and small helpers ---------------------------------------------------------- */

void slm_head_train_opts_default(slm_head_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->threads = 1;
    o->l2 = 2e-5;  /* Banking77: 1e-6..2e-5 all within 0.2% on test; 2e-5 converges fastest */
    o->max_iter = 150;
    o->refit = true;
    o->val_fraction = 0.1;
    o->max_false_escalation = 0.04;
    o->class_weights = true;
    o->score = SLM_HEAD_SCORE_CONFIDENCE;
    o->hash_bits = 20;
    o->min_df = 1;
    slm_head_feat_cfg fc;
    slm_head_feat_cfg_default(&fc);
    o->word_min = fc.word_min;
    o->word_max = fc.word_max;
    o->char_min = fc.char_min;
    o->char_max = fc.char_max;
    o->word_weight = fc.word_weight;
    o->char_weight = fc.char_weight;
    o->text_flags = fc.text_flags;
}

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_seconds(void) { return clock_seconds(CLOCK_MONOTONIC); }

/* splitmix64: a tiny, well-mixed generator; the seed fully determines the split. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

slm_head *slm_head_alloc(void) {
    slm_head *h = slm_calloc(1, sizeof *h);
    if (h) h->oos_index = -1;
    return h;
}

void slm_head_destroy(slm_head *h) {
    if (!h) return;
    if (h->labels)
        for (uint32_t i = 0; i < h->n_labels; i++) slm_free(h->labels[i]);
    slm_free(h->labels);
    slm_free(h->buckets);
    slm_free(h->col_of);
    slm_free(h->idf);
    slm_free(h->W);
    slm_free(h);
}

slm_status slm_head_build_col_of(slm_head *h, char *err) {
    size_t nb = (size_t)1 << h->feat.hash_bits;
    slm_free(h->col_of);
    h->col_of = slm_malloc(nb * sizeof *h->col_of);
    if (!h->col_of) return slm_errf(err, SLM_ERR_NOMEM, "head: out of memory for the bucket map");
    for (size_t b = 0; b < nb; b++) h->col_of[b] = -1;
    for (uint32_t c = 0; c < h->n_cols; c++) {
        if (h->buckets[c] >= nb || h->col_of[h->buckets[c]] >= 0)
            return slm_errf(err, SLM_ERR_CORRUPT, "head: bucket %u of column %u repeated or out of range",
                            h->buckets[c], c);
        h->col_of[h->buckets[c]] = (int32_t)c;
    }
    return SLM_OK;
}

/* ---- inspection ------------------------------------------------------------------------- */

size_t slm_head_num_labels(const slm_head *h) { return h ? h->n_labels : 0; }

const char *slm_head_label(const slm_head *h, size_t i) {
    return h && i < h->n_labels ? h->labels[i] : NULL;
}

long slm_head_label_index(const slm_head *h, const char *label) {
    if (!h || !label) return -1;
    char **hit = bsearch(&label, h->labels, h->n_labels, sizeof *h->labels, cmp_str);
    return hit ? (long)(hit - h->labels) : -1;
}

uint32_t slm_head_embed_dim(const slm_head *h) { return h ? h->embed_dim : 0; }

slm_status slm_head_set_embedder(slm_head *h, slm_head_embed_fn fn, void *ctx, char *err) {
    if (!h || !fn) return slm_errf(err, SLM_ERR_INVALID_ARG, "head: no embedder");
    if (h->embed_dim == 0) return slm_errf(err, SLM_ERR_STATE, "head was trained without embeddings");
    h->embed = fn;
    h->embed_ctx = ctx;
    return SLM_OK;
}

/* ---- one text -> sparse row ------------------------------------------------------------- */

/* Per-thread buffers to turn texts into rows. */
typedef struct {
    slm_head_feat_scratch fs; /* extraction scratch */
    uint32_t *cols;           /* row columns, capacity `cap` */
    float *vals;              /* row values */
    size_t cap;
} row_scratch;

static void row_scratch_free(row_scratch *r) {
    slm_head_feat_scratch_free(&r->fs);
    slm_free(r->cols);
    slm_free(r->vals);
    memset(r, 0, sizeof *r);
}

/* Featurise text into r->cols/vals (n-gram columns, then the embedding block); *nnz out. */
static slm_status text_row(const slm_head_feat_cfg *cfg, const int32_t *col_of, const float *idf,
                           uint32_t n_cols, uint32_t embed_dim, slm_head_embed_fn embed,
                           void *embed_ctx, const char *text, size_t len, row_scratch *r,
                           size_t *nnz, char *err) {
    slm_status st = slm_head_feat_extract(cfg, text, len, &r->fs, err);
    if (st != SLM_OK) return st;
    size_t need = r->fs.nterms[0] + r->fs.nterms[1] + embed_dim;
    if (need > r->cap) {
        size_t cap = need * 2;
        slm_free(r->cols);
        slm_free(r->vals);
        r->cols = slm_malloc(cap * sizeof *r->cols);
        r->vals = slm_malloc(cap * sizeof *r->vals);
        r->cap = cap;
        if (!r->cols || !r->vals) {
            r->cap = 0;
            return slm_errf(err, SLM_ERR_NOMEM, "head: out of memory for a row");
        }
    }
    size_t n = slm_head_feat_vectorize(cfg, col_of, idf, &r->fs, r->cols, r->vals);
    if (embed_dim) {
        float *e = r->vals + n;
        if (!embed) return slm_errf(err, SLM_ERR_STATE, "head needs embeddings but has no embedder");
        if ((st = embed(embed_ctx, text, len, e, embed_dim, err)) != SLM_OK) return st;
        double n2 = 0.0;
        for (uint32_t j = 0; j < embed_dim; j++) n2 += (double)e[j] * e[j];
        float scale = n2 > 0.0 ? (float)(cfg->embed_weight / sqrt(n2)) : 0.0f;
        for (uint32_t j = 0; j < embed_dim; j++) {
            e[j] *= scale;
            r->cols[n + j] = n_cols + j;
        }
        n += embed_dim;
    }
    *nnz = n;
    return SLM_OK;
}

/* logits[k] = bias + sum of val * W[col]; W has k floats per row and the bias after
 * n_rows rows. */
HOT_CLONES static void row_logits(const float *W, size_t n_rows, uint32_t k, const uint32_t *cols,
                       const float *vals, size_t nnz, float *logits) {
    memcpy(logits, W + n_rows * k, k * sizeof *logits);
    for (size_t e = 0; e < nnz; e++) {
        const float *w = W + (size_t)cols[e] * k; /* row of W: k floats */
        const float v = vals[e];
        for (uint32_t j = 0; j < k; j++) logits[j] += v * w[j];
    }
}

/* Calibrated probabilities from logits and the escalation score of the head's kind. */
static void calibrate(const float *logits, uint32_t k, float T, uint32_t score_kind, float *probs,
                      slm_head_prediction *pred) {
    float mx = logits[0];
    uint32_t best = 0;
    for (uint32_t j = 1; j < k; j++)
        if (logits[j] > mx) { mx = logits[j]; best = j; }
    double z = 0.0;
    for (uint32_t j = 0; j < k; j++) {
        probs[j] = expf((logits[j] - mx) / T);
        z += probs[j];
    }
    float second = 0.0f;
    for (uint32_t j = 0; j < k; j++) {
        probs[j] = (float)(probs[j] / z);
        if (j != best && probs[j] > second) second = probs[j];
    }
    pred->label = best;
    pred->confidence = probs[best];
    if (score_kind == SLM_HEAD_SCORE_MARGIN) pred->score = probs[best] - second;
    else if (score_kind == SLM_HEAD_SCORE_ENERGY) pred->score = (float)(mx + T * log(z));
    else pred->score = probs[best];
}

/* ---- prediction ------------------------------------------------------------------------- */

static size_t weight_rows(const slm_head *h) { return (size_t)h->n_cols + h->embed_dim; }

static slm_status predict_one(const slm_head *h, const char *text, size_t len, row_scratch *r,
                              float *logits, float *probs, slm_head_prediction *out, char *err) {
    size_t nnz = 0;
    slm_status st = text_row(&h->feat, h->col_of, h->idf, h->n_cols, h->embed_dim, h->embed,
                             h->embed_ctx, text, len, r, &nnz, err);
    if (st != SLM_OK) return st;
    row_logits(h->W, weight_rows(h), h->n_labels, r->cols, r->vals, nnz, logits);
    calibrate(logits, h->n_labels, h->temperature, h->score, probs, out);
    out->escalate = out->score < h->threshold || (h->oos_index >= 0 && (int32_t)out->label == h->oos_index);
    return SLM_OK;
}

slm_status slm_head_predict(const slm_head *h, const char *text, size_t len, float *probs,
                            slm_head_prediction *out, char *err) {
    row_scratch r = {0};
    float *buf = NULL;
    slm_status st;
    if (!h || (!text && len) || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "predict: bad arguments");
    buf = slm_malloc(2 * (size_t)h->n_labels * sizeof *buf);
    if (!buf) return slm_errf(err, SLM_ERR_NOMEM, "predict: out of memory");
    st = predict_one(h, text ? text : "", len, &r, buf, buf + h->n_labels, out, err);
    if (st == SLM_OK && probs) memcpy(probs, buf + h->n_labels, h->n_labels * sizeof *probs);
    row_scratch_free(&r);
    slm_free(buf);
    return st;
}

typedef struct {
    const slm_head *h;
    const char *const *texts;
    const size_t *lens;
    slm_head_prediction *out;
    float *probs;                               /* n x k or NULL */
    slm_status st[SLM_HEAD_MAX_THREADS];        /* per range */
    size_t fail_at[SLM_HEAD_MAX_THREADS];       /* first failing index per range */
    char err[SLM_HEAD_MAX_THREADS][SLM_ERR_LEN];
} batch_ctx;

static void batch_range(void *vctx, size_t i0, size_t i1, int tid) {
    batch_ctx *c = vctx;
    const uint32_t k = c->h->n_labels;
    row_scratch r = {0};
    float *buf = slm_malloc(2 * (size_t)k * sizeof *buf);
    c->st[tid] = SLM_OK;
    if (!buf) {
        c->st[tid] = slm_errf(c->err[tid], SLM_ERR_NOMEM, "predict: out of memory");
        c->fail_at[tid] = i0;
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        slm_status st = predict_one(c->h, c->texts[i] ? c->texts[i] : "", c->lens[i], &r, buf, buf + k,
                                    &c->out[i], c->err[tid]);
        if (st != SLM_OK) {
            c->st[tid] = st;
            c->fail_at[tid] = i;
            break;
        }
        if (c->probs) memcpy(c->probs + i * k, buf + k, k * sizeof *buf);
    }
    row_scratch_free(&r);
    slm_free(buf);
}

slm_status slm_head_predict_batch(const slm_head *h, const char *const *texts,
                                  const size_t *lens, size_t n, int threads,
                                  slm_head_prediction *out, float *probs, char *err) {
    batch_ctx *c;
    slm_status st = SLM_OK;
    if (!h || (n && (!texts || !lens || !out))) return slm_errf(err, SLM_ERR_INVALID_ARG, "predict: bad arguments");
    c = slm_calloc(1, sizeof *c);
    if (!c) return slm_errf(err, SLM_ERR_NOMEM, "predict: out of memory");
    *c = (batch_ctx){.h = h, .texts = texts, .lens = lens, .out = out, .probs = probs};
    slm_head_par(threads, n, batch_range, c);
    for (int t = 0; t < SLM_HEAD_MAX_THREADS; t++)
        if (c->st[t] != SLM_OK) {
            st = slm_errf(err, c->st[t], "text %zu: %s", c->fail_at[t], c->err[t]);
            break;
        }
    slm_free(c);
    return st;
}

/* ---- training: labels and split --------------------------------------------------------- */

/* Sorted distinct labels of d into h->labels. */
static slm_status collect_labels(slm_head *h, const slm_head_data *d, char *err) {
    char **tmp = slm_malloc((d->n ? d->n : 1) * sizeof *tmp);
    size_t u = 0;
    if (!tmp) return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    for (size_t i = 0; i < d->n; i++) {
        if (!d->label[i]) {
            slm_free(tmp);
            return slm_errf(err, SLM_ERR_INVALID_ARG, "train: example %zu has no label", i);
        }
        tmp[i] = d->label[i];
    }
    qsort(tmp, d->n, sizeof *tmp, cmp_str);
    for (size_t i = 0; i < d->n; i++)
        if (u == 0 || strcmp(tmp[u - 1], tmp[i])) tmp[u++] = tmp[i];
    if (u < 2 || u > SLM_HEAD_MAX_LABELS) {
        slm_free(tmp);
        return slm_errf(err, SLM_ERR_LIMIT, "train: %zu distinct labels; need 2..%d", u, SLM_HEAD_MAX_LABELS);
    }
    h->labels = slm_calloc(u, sizeof *h->labels);
    if (!h->labels) {
        slm_free(tmp);
        return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    }
    h->n_labels = (uint32_t)u;
    for (size_t i = 0; i < u; i++)
        if (!(h->labels[i] = slm_strdup(tmp[i]))) {
            slm_free(tmp);
            return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        }
    slm_free(tmp);
    return SLM_OK;
}

/* A view of examples drawn from one or two data sets: texts and label indices. */
typedef struct {
    size_t n;
    const char **text; /* borrowed from the data sets */
    size_t *len;
    uint32_t *y;
} example_set;

static void example_set_free(example_set *e) {
    slm_free(e->text);
    slm_free(e->len);
    slm_free(e->y);
    memset(e, 0, sizeof *e);
}

static slm_status example_set_alloc(example_set *e, size_t n, char *err) {
    size_t m = n ? n : 1;
    e->n = 0;
    e->text = slm_malloc(m * sizeof *e->text);
    e->len = slm_malloc(m * sizeof *e->len);
    e->y = slm_malloc(m * sizeof *e->y);
    if (!e->text || !e->len || !e->y) {
        example_set_free(e);
        return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    }
    return SLM_OK;
}

static slm_status add_examples(const slm_head *h, const slm_head_data *d, const size_t *idx, size_t n,
                               example_set *e, char *err) {
    for (size_t q = 0; q < n; q++) {
        size_t i = idx ? idx[q] : q;
        long y = slm_head_label_index(h, d->label[i]);
        if (!d->label[i] || y < 0)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "validation label '%s' is not a training label",
                            d->label[i] ? d->label[i] : "(none)");
        e->text[e->n] = d->text[i];
        e->len[e->n] = d->len[i];
        e->y[e->n] = (uint32_t)y;
        e->n++;
    }
    return SLM_OK;
}

/* Stratified split of d: per class, a seeded shuffle, round(fraction * n_c) to validation
 * (keeping >= 1 in training). Index lists come out in data order. */
static slm_status split(const slm_head *h, const slm_head_data *d, double fraction, uint64_t seed,
                        example_set *tr, example_set *va, char *err) {
    slm_status st;
    size_t n = d->n, *order = NULL, *count = NULL, *tri = NULL, *vai = NULL, ntr = 0, nva = 0;
    uint32_t *y = NULL;
    uint8_t *is_val = NULL;
    order = slm_malloc(n * sizeof *order);
    y = slm_malloc(n * sizeof *y);
    is_val = slm_calloc(n, 1);
    count = slm_calloc(h->n_labels + 1, sizeof *count);
    tri = slm_malloc(n * sizeof *tri);
    vai = slm_malloc(n * sizeof *vai);
    if (!order || !y || !is_val || !count || !tri || !vai) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint32_t)slm_head_label_index(h, d->label[i]);
        count[y[i] + 1]++;
    }
    for (uint32_t c = 0; c < h->n_labels; c++) count[c + 1] += count[c];
    { /* bucket examples by class (stable), then shuffle each class */
        size_t *cursor = slm_malloc(h->n_labels * sizeof *cursor);
        if (!cursor) {
            st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
            goto done;
        }
        memcpy(cursor, count, h->n_labels * sizeof *cursor);
        for (size_t i = 0; i < n; i++) order[cursor[y[i]]++] = i;
        slm_free(cursor);
    }
    uint64_t rs = seed;
    for (uint32_t c = 0; c < h->n_labels; c++) {
        size_t a = count[c], nc = count[c + 1] - a;
        for (size_t i = nc; i > 1; i--) {
            size_t j = (size_t)(rng_next(&rs) % i);
            size_t t = order[a + i - 1];
            order[a + i - 1] = order[a + j];
            order[a + j] = t;
        }
        size_t nv = (size_t)floor(fraction * (double)nc + 0.5);
        if (nv >= nc) nv = nc - 1;
        for (size_t i = 0; i < nv; i++) is_val[order[a + i]] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (is_val[i]) vai[nva++] = i;
        else tri[ntr++] = i;
    }
    if ((st = example_set_alloc(tr, ntr, err)) != SLM_OK) goto done;
    if ((st = example_set_alloc(va, nva, err)) != SLM_OK) goto done;
    if ((st = add_examples(h, d, tri, ntr, tr, err)) != SLM_OK) goto done;
    st = add_examples(h, d, vai, nva, va, err);
done:
    slm_free(order);
    slm_free(y);
    slm_free(is_val);
    slm_free(count);
    slm_free(tri);
    slm_free(vai);
    return st;
}

/* ---- training: features ----------------------------------------------------------------- */

typedef struct {
    const slm_head *h;          /* borrowed: features config, vocabulary once built */
    const example_set *ex;      /* borrowed: texts */
    const slm_head_train_opts *o;
    uint32_t *df[SLM_HEAD_MAX_THREADS];     /* pass 1: per-range document frequency */
    /* pass 2: per-range rows */
    uint32_t *cols[SLM_HEAD_MAX_THREADS];
    float *vals[SLM_HEAD_MAX_THREADS];
    size_t nnz[SLM_HEAD_MAX_THREADS], cap[SLM_HEAD_MAX_THREADS];
    size_t *row_nnz;            /* n entries */
    slm_status st[SLM_HEAD_MAX_THREADS];
    char err[SLM_HEAD_MAX_THREADS][SLM_ERR_LEN];
} feat_ctx;

static void df_range(void *vctx, size_t i0, size_t i1, int tid) {
    feat_ctx *c = vctx;
    slm_head_feat_scratch fs = {0};
    uint32_t *df = c->df[tid];
    for (size_t i = i0; i < i1 && c->st[tid] == SLM_OK; i++) {
        c->st[tid] = slm_head_feat_extract(&c->h->feat, c->ex->text[i], c->ex->len[i], &fs, c->err[tid]);
        if (c->st[tid] != SLM_OK) break;
        for (size_t t = 0; t < fs.nterms[0] + fs.nterms[1]; t++) df[fs.terms[t].bucket]++;
    }
    slm_head_feat_scratch_free(&fs);
}

static void rows_range(void *vctx, size_t i0, size_t i1, int tid) {
    feat_ctx *c = vctx;
    const slm_head *h = c->h;
    row_scratch r = {0};
    for (size_t i = i0; i < i1 && c->st[tid] == SLM_OK; i++) {
        size_t nnz = 0;
        c->st[tid] = text_row(&h->feat, h->col_of, h->idf, h->n_cols, c->o->embed ? c->o->embed_dim : 0,
                              c->o->embed, c->o->embed_ctx, c->ex->text[i], c->ex->len[i], &r, &nnz, c->err[tid]);
        if (c->st[tid] != SLM_OK) break;
        if (c->nnz[tid] + nnz > c->cap[tid]) {
            size_t cap = (c->nnz[tid] + nnz) * 2;
            uint32_t *nc = slm_realloc(c->cols[tid], cap * sizeof *nc);
            if (nc) c->cols[tid] = nc;
            float *nv = slm_realloc(c->vals[tid], cap * sizeof *nv);
            if (nv) c->vals[tid] = nv;
            if (!nc || !nv) {
                c->st[tid] = slm_errf(c->err[tid], SLM_ERR_NOMEM, "train: out of memory for rows");
                break;
            }
            c->cap[tid] = cap;
        }
        memcpy(c->cols[tid] + c->nnz[tid], r.cols, nnz * sizeof *r.cols);
        memcpy(c->vals[tid] + c->nnz[tid], r.vals, nnz * sizeof *r.vals);
        c->nnz[tid] += nnz;
        c->row_nnz[i] = nnz;
    }
    row_scratch_free(&r);
}

static slm_status first_error(feat_ctx *c, int threads, char *err) {
    for (int t = 0; t < threads; t++)
        if (c->st[t] != SLM_OK) return slm_errf(err, c->st[t], "%s", c->err[t]);
    return SLM_OK;
}

/* A CSR matrix built from texts. */
typedef struct {
    size_t n;
    size_t *row_ptr; /* n + 1 */
    uint32_t *col;
    float *val;
} csr_rows;

static void csr_free(csr_rows *m) {
    slm_free(m->row_ptr);
    slm_free(m->col);
    slm_free(m->val);
    memset(m, 0, sizeof *m);
}

static slm_status build_rows(const slm_head *h, const example_set *ex, const slm_head_train_opts *o,
                             int threads, csr_rows *out, char *err) {
    slm_status st = SLM_OK;
    feat_ctx *c = slm_calloc(1, sizeof *c);
    if (threads > (int)ex->n) threads = ex->n ? (int)ex->n : 1;
    memset(out, 0, sizeof *out);
    if (!c) return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    c->h = h;
    c->ex = ex;
    c->o = o;
    c->row_nnz = slm_calloc(ex->n ? ex->n : 1, sizeof *c->row_nnz);
    out->row_ptr = slm_calloc(ex->n + 1, sizeof *out->row_ptr);
    if (!c->row_nnz || !out->row_ptr) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    slm_head_par(threads, ex->n, rows_range, c);
    if ((st = first_error(c, threads, err)) != SLM_OK) goto done;
    size_t total = 0;
    for (int t = 0; t < threads; t++) total += c->nnz[t];
    out->n = ex->n;
    out->col = slm_malloc((total ? total : 1) * sizeof *out->col);
    out->val = slm_malloc((total ? total : 1) * sizeof *out->val);
    if (!out->col || !out->val) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    for (size_t i = 0; i < ex->n; i++) out->row_ptr[i + 1] = out->row_ptr[i] + c->row_nnz[i];
    /* ranges hold consecutive rows, so concatenating them in order gives the CSR arrays */
    size_t at = 0;
    for (int t = 0; t < threads; t++) {
        if (c->nnz[t]) {
            memcpy(out->col + at, c->cols[t], c->nnz[t] * sizeof *out->col);
            memcpy(out->val + at, c->vals[t], c->nnz[t] * sizeof *out->val);
        }
        at += c->nnz[t];
    }
done:
    for (int t = 0; t < SLM_HEAD_MAX_THREADS; t++) {
        slm_free(c->cols[t]);
        slm_free(c->vals[t]);
    }
    slm_free(c->row_nnz);
    slm_free(c);
    if (st != SLM_OK) csr_free(out);
    return st;
}

/* Pass 1 and vocabulary: df per bucket -> kept buckets, col_of, idf. */
static slm_status build_vocab(slm_head *h, const example_set *ex, uint32_t min_df, int threads, char *err) {
    slm_status st = SLM_OK;
    size_t nb = (size_t)1 << h->feat.hash_bits;
    feat_ctx *c = slm_calloc(1, sizeof *c);
    if (threads > (int)ex->n) threads = ex->n ? (int)ex->n : 1;
    if (!c) return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    c->h = h;
    c->ex = ex;
    for (int t = 0; t < threads; t++)
        if (!(c->df[t] = slm_calloc(nb, sizeof(uint32_t)))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory for document frequencies");
            goto done;
        }
    slm_head_par(threads, ex->n, df_range, c);
    if ((st = first_error(c, threads, err)) != SLM_OK) goto done;
    uint32_t *df = c->df[0];
    for (int t = 1; t < threads; t++)
        for (size_t b = 0; b < nb; b++) df[b] += c->df[t][b];
    uint32_t ncols = 0;
    for (size_t b = 0; b < nb; b++) ncols += df[b] >= min_df && df[b] > 0;
    h->n_cols = ncols;
    h->buckets = slm_malloc((ncols ? ncols : 1) * sizeof *h->buckets);
    h->idf = slm_malloc((ncols ? ncols : 1) * sizeof *h->idf);
    if (!h->buckets || !h->idf) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    /* columns in descending df (ties: bucket order), so that the rows of W that almost
     * every example touches are contiguous in memory: sort keys (~df << 32 | bucket) */
    uint64_t *order = slm_malloc((ncols ? ncols : 1) * sizeof *order);
    if (!order) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    uint32_t col = 0;
    for (size_t b = 0; b < nb; b++)
        if (df[b] >= min_df && df[b] > 0) order[col++] = (uint64_t)(UINT32_MAX - df[b]) << 32 | b;
    qsort(order, ncols, sizeof *order, cmp_u64);
    for (col = 0; col < ncols; col++) h->buckets[col] = (uint32_t)order[col];
    slm_free(order);
    for (col = 0; col < ncols; col++) {
        /* smooth idf as in common TF-IDF: ln((1 + n) / (1 + df)) + 1; a bucket hit by word
         * and character n-grams of one text counts twice, so df is capped at n */
        uint32_t b = h->buckets[col];
        double d = df[b] > ex->n ? (double)ex->n : (double)df[b];
        h->idf[col] = (float)(log((1.0 + (double)ex->n) / (1.0 + d)) + 1.0);
    }
    st = slm_head_build_col_of(h, err);
done:
    for (int t = 0; t < SLM_HEAD_MAX_THREADS; t++) slm_free(c->df[t]);
    slm_free(c);
    return st;
}

/* ---- training: calibration and threshold ------------------------------------------------ */

/* Validation: logits, temperature, ECE/NLL before and after, threshold. */
static slm_status calibrate_head(slm_head *h, const csr_rows *va, const example_set *ve,
                                 const slm_head_train_opts *o, slm_head_train_report *rep, char *err) {
    const uint32_t k = h->n_labels;
    size_t n = va->n, nk;
    float *logits = NULL, *conf = NULL, *scores = NULL, *probs = NULL;
    uint8_t *correct = NULL;
    slm_status st = SLM_OK;
    h->temperature = 1.0f;
    h->threshold = -INFINITY;
    if (n == 0) return SLM_OK; /* nothing to calibrate on: never escalate by score */
    if (!slm_mul_size(n, k, &nk)) return slm_errf(err, SLM_ERR_LIMIT, "train: validation too large");
    logits = slm_malloc(nk * sizeof *logits);
    conf = slm_malloc(n * sizeof *conf);
    scores = slm_malloc(n * sizeof *scores);
    probs = slm_malloc(k * sizeof *probs);
    correct = slm_malloc(n);
    if (!logits || !conf || !scores || !probs || !correct) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        row_logits(h->W, weight_rows(h), k, va->col + va->row_ptr[i], va->val + va->row_ptr[i],
                   va->row_ptr[i + 1] - va->row_ptr[i], logits + i * k);
    for (int pass = 0; pass < 2; pass++) { /* 0: T = 1; 1: fitted T */
        if (pass == 1) h->temperature = (float)slm_head_calib_fit(logits, ve->y, n, k);
        size_t right = 0;
        for (size_t i = 0; i < n; i++) {
            slm_head_prediction p;
            calibrate(logits + i * k, k, h->temperature, h->score, probs, &p);
            conf[i] = p.confidence;
            correct[i] = p.label == ve->y[i];
            right += correct[i];
        }
        double ece = slm_head_calib_ece(conf, correct, n);
        double nll = slm_head_calib_nll(logits, ve->y, n, k, h->temperature);
        if (pass == 0) { rep->ece_before = ece; rep->nll_before = nll; }
        else { rep->ece_after = ece; rep->nll_after = nll; }
        rep->val_accuracy = (double)right / (double)n;
    }
    /* threshold: scores of in-scope validation examples */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (h->oos_index >= 0 && ve->y[i] == (uint32_t)h->oos_index) continue;
        slm_head_prediction p;
        calibrate(logits + i * k, k, h->temperature, h->score, probs, &p);
        scores[m++] = p.score;
    }
    h->threshold = (float)slm_head_calib_threshold(scores, m, o->max_false_escalation);
    size_t below = 0;
    for (size_t i = 0; i < m; i++) below += scores[i] < h->threshold;
    rep->val_escalation = m ? (double)below / (double)m : 0.0;
done:
    slm_free(logits);
    slm_free(conf);
    slm_free(scores);
    slm_free(probs);
    slm_free(correct);
    return st;
}

/* ---- training: weights and refit -------------------------------------------------------- */

/* Example weights n / (k * n_c) (or all 1) for labels y[0..n); *out owned by the caller. */
static slm_status class_weights(const slm_head *h, const uint32_t *y, size_t n, bool balanced, float **out,
                                char *err) {
    float *cw = slm_malloc((n ? n : 1) * sizeof *cw);
    size_t *nc = slm_calloc(h->n_labels, sizeof *nc);
    if (!cw || !nc) {
        slm_free(cw);
        slm_free(nc);
        return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    }
    for (size_t i = 0; i < n; i++) nc[y[i]]++;
    for (size_t i = 0; i < n; i++)
        cw[i] = balanced ? (float)((double)n / ((double)h->n_labels * (double)nc[y[i]])) : 1.0f;
    slm_free(nc);
    *out = cw;
    return SLM_OK;
}

/* Per-column L2 multipliers (1 - beta) + beta * s_f / mean(s), s_f = sum of x_if^2 over
 * training rows: the quadratic approximation of feature dropout (Wager et al., 2013)
 * penalises a feature by how much of the data it carries, so rare discriminative n-grams
 * are penalised less than under plain L2. */
static slm_status adaptive_l2(const csr_rows *x, size_t d, double beta, float **out, char *err) {
    double *sq = slm_calloc(d ? d : 1, sizeof *sq), mean = 0.0;
    float *m = slm_malloc((d ? d : 1) * sizeof *m);
    if (!sq || !m) {
        slm_free(sq);
        slm_free(m);
        return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    }
    for (size_t e = 0; e < x->row_ptr[x->n]; e++) sq[x->col[e]] += (double)x->val[e] * x->val[e];
    for (size_t f = 0; f < d; f++) mean += sq[f];
    mean = d ? mean / (double)d : 1.0;
    for (size_t f = 0; f < d; f++) m[f] = (float)((1.0 - beta) + beta * (mean > 0 ? sq[f] / mean : 1.0));
    slm_free(sq);
    *out = m;
    return SLM_OK;
}

/* Continue training on train + validation from the calibrated weights; temperature and
 * threshold stay those fitted on validation (the refit model sees 1/9 more data, so its
 * confidence profile is close; test ECE in docs/benchmarks.md checks that). */
static slm_status refit(slm_head *h, const csr_rows *xt, const example_set *tr, const csr_rows *xv,
                        const example_set *ve, const slm_head_train_opts *o, const slm_head_solver_opts *so,
                        slm_head_train_report *rep, char *err) {
    slm_status st;
    size_t n = xt->n + xv->n, nnz_t = xt->row_ptr[xt->n], nnz_v = xv->row_ptr[xv->n];
    size_t *row_ptr = slm_malloc((n + 1) * sizeof *row_ptr);
    uint32_t *col = slm_malloc((nnz_t + nnz_v + 1) * sizeof *col), *y = slm_malloc(n * sizeof *y);
    float *val = slm_malloc((nnz_t + nnz_v + 1) * sizeof *val), *cw = NULL;
    if (!row_ptr || !col || !y || !val) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory for the refit");
        goto done;
    }
    memcpy(row_ptr, xt->row_ptr, (xt->n + 1) * sizeof *row_ptr);
    for (size_t i = 1; i <= xv->n; i++) row_ptr[xt->n + i] = nnz_t + xv->row_ptr[i];
    memcpy(col, xt->col, nnz_t * sizeof *col);
    memcpy(col + nnz_t, xv->col, nnz_v * sizeof *col);
    memcpy(val, xt->val, nnz_t * sizeof *val);
    memcpy(val + nnz_t, xv->val, nnz_v * sizeof *val);
    memcpy(y, tr->y, tr->n * sizeof *y);
    memcpy(y + tr->n, ve->y, ve->n * sizeof *y);
    if ((st = class_weights(h, y, n, o->class_weights, &cw, err)) != SLM_OK) goto done;
    float *col_l2 = NULL;
    if (o->adaptive_l2 > 0.0) {
        csr_rows all = {.n = n, .row_ptr = row_ptr, .col = col, .val = val};
        if ((st = adaptive_l2(&all, weight_rows(h), o->adaptive_l2, &col_l2, err)) != SLM_OK) goto done;
    }
    slm_head_problem prob = {.n = n, .d = (uint32_t)weight_rows(h), .k = h->n_labels, .row_ptr = row_ptr,
                             .col = col, .val = val, .y = y, .weight = cw, .col_l2 = col_l2};
    int it = 0;
    st = slm_head_solve(&prob, so, h->W, &it, &rep->loss, err);
    rep->iterations += it;
    slm_free(col_l2);
done:
    slm_free(row_ptr);
    slm_free(col);
    slm_free(y);
    slm_free(val);
    slm_free(cw);
    return st;
}

/* ---- training --------------------------------------------------------------------------- */

slm_status slm_head_train(const slm_head_data *train, const slm_head_data *val,
                          const slm_head_train_opts *o, slm_head **out,
                          slm_head_train_report *rep_out, char *err) {
    slm_status st;
    slm_head *h = NULL;
    example_set tr = {0}, ve = {0};
    csr_rows xt = {0}, xv = {0};
    float *cw = NULL, *col_l2 = NULL;
    slm_head_train_report rep;
    const double t0 = now_seconds(), cpu0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    memset(&rep, 0, sizeof rep);
    if (!train || !o || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "train: bad arguments");
    *out = NULL;
    if (o->threads < 1 || o->threads > SLM_HEAD_MAX_THREADS || !(o->l2 >= 0.0) || o->max_iter < 0 ||
        !(o->val_fraction >= 0.0 && o->val_fraction < 1.0) ||
        !(o->max_false_escalation >= 0.0 && o->max_false_escalation <= 1.0) || (unsigned)o->score >= SLM_HEAD_SCORE_COUNT ||
        (o->embed && (o->embed_dim == 0 || o->embed_dim > SLM_HEAD_MAX_EMBED_DIM)))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "train: option out of range");
    if (!(h = slm_head_alloc())) return slm_errf(err, SLM_ERR_NOMEM, "train: out of memory");
    slm_head_feat_cfg_default(&h->feat);
    h->feat.hash_bits = o->hash_bits;
    h->feat.word_min = o->word_min;
    h->feat.word_max = o->word_max;
    h->feat.char_min = o->char_min;
    h->feat.char_max = o->char_max;
    h->feat.word_weight = o->word_weight;
    h->feat.char_weight = o->char_weight;
    h->feat.text_flags = o->text_flags;
    if ((st = slm_head_feat_cfg_check(&h->feat, err)) != SLM_OK) goto done;
    h->embed_dim = o->embed ? o->embed_dim : 0;
    h->score = (uint32_t)o->score;
    if ((st = collect_labels(h, train, err)) != SLM_OK) goto done;
    if (o->oos_label && (h->oos_index = (int32_t)slm_head_label_index(h, o->oos_label)) < 0) {
        st = slm_errf(err, SLM_ERR_NOT_FOUND, "train: out-of-scope label '%s' has no training examples", o->oos_label);
        goto done;
    }
    if (val) {
        if ((st = example_set_alloc(&tr, train->n, err)) != SLM_OK) goto done;
        if ((st = add_examples(h, train, NULL, train->n, &tr, err)) != SLM_OK) goto done;
        if ((st = example_set_alloc(&ve, val->n, err)) != SLM_OK) goto done;
        if ((st = add_examples(h, val, NULL, val->n, &ve, err)) != SLM_OK) goto done;
    } else if ((st = split(h, train, o->val_fraction, o->seed, &tr, &ve, err)) != SLM_OK) goto done;

    /* features */
    if ((st = build_vocab(h, &tr, o->min_df, o->threads, err)) != SLM_OK) goto done;
    if ((st = build_rows(h, &tr, o, o->threads, &xt, err)) != SLM_OK) goto done;
    if ((st = build_rows(h, &ve, o, o->threads, &xv, err)) != SLM_OK) goto done;
    const double t1 = now_seconds();

    if ((st = class_weights(h, tr.y, tr.n, o->class_weights, &cw, err)) != SLM_OK) goto done;

    /* solver */
    size_t rows = weight_rows(h) + 1, P;
    if (!slm_mul_size(rows, h->n_labels, &P)) {
        st = slm_errf(err, SLM_ERR_LIMIT, "train: too many weights");
        goto done;
    }
    if (!(h->W = slm_calloc(P, sizeof *h->W))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "train: out of memory for %zu weights", P);
        goto done;
    }
    if (o->adaptive_l2 > 0.0 && (st = adaptive_l2(&xt, weight_rows(h), o->adaptive_l2, &col_l2, err)) != SLM_OK)
        goto done;
    slm_head_problem prob = {.n = tr.n, .d = (uint32_t)weight_rows(h), .k = h->n_labels, .row_ptr = xt.row_ptr,
                             .col = xt.col, .val = xt.val, .y = tr.y, .weight = cw, .col_l2 = col_l2};
    slm_head_solver_opts so = {.l2 = o->l2, .max_iter = o->max_iter, .tol = HEAD_SOLVER_TOL,
                               .threads = o->threads, .memory = HEAD_SOLVER_MEMORY};
    if ((st = slm_head_solve(&prob, &so, h->W, &rep.iterations, &rep.loss, err)) != SLM_OK) goto done;
    const double t2 = now_seconds();

    if ((st = calibrate_head(h, &xv, &ve, o, &rep, err)) != SLM_OK) goto done;
    if (o->refit && ve.n > 0 && (st = refit(h, &xt, &tr, &xv, &ve, o, &so, &rep, err)) != SLM_OK) goto done;
    rep.n_train = tr.n;
    rep.n_val = ve.n;
    rep.n_features = weight_rows(h);
    rep.nnz = xt.row_ptr[xt.n];
    rep.seconds_features = t1 - t0;
    rep.seconds_solve = t2 - t1;
    rep.seconds_total = now_seconds() - t0;
    rep.cpu_seconds = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    rep.temperature = h->temperature;
    rep.threshold = h->threshold;
    if (rep_out) *rep_out = rep;
    if (o->embed) {
        h->embed = o->embed;
        h->embed_ctx = o->embed_ctx;
    }
    *out = h;
    h = NULL;
done:
    slm_head_destroy(h);
    example_set_free(&tr);
    example_set_free(&ve);
    csr_free(&xt);
    csr_free(&xv);
    slm_free(cw);
    slm_free(col_l2);
    return st;
}

/* ---- evaluation ------------------------------------------------------------------------- */

void slm_head_eval_free(slm_head_eval_result *r) {
    if (!r) return;
    slm_free(r->per_class);
    slm_free(r->confusion);
    r->per_class = NULL;
    r->confusion = NULL;
}

slm_status slm_head_eval(const slm_head *h, const slm_head_data *data, int threads,
                         slm_head_eval_result *out, char *err) {
    slm_status st;
    const char **texts = NULL;
    slm_head_prediction *pred = NULL;
    float *probs = NULL, *conf = NULL;
    uint8_t *correct = NULL;
    double nll = 0.0;
    size_t n, k, kk, nk;
    if (!h || !data || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "eval: bad arguments");
    memset(out, 0, sizeof *out);
    n = data->n;
    k = h->n_labels;
    if (!slm_mul_size(k, k, &kk) || !slm_mul_size(n ? n : 1, k, &nk))
        return slm_errf(err, SLM_ERR_LIMIT, "eval: too large");
    texts = slm_malloc((n ? n : 1) * sizeof *texts);
    pred = slm_malloc((n ? n : 1) * sizeof *pred);
    probs = slm_malloc(nk * sizeof *probs);
    conf = slm_malloc((n ? n : 1) * sizeof *conf);
    correct = slm_malloc(n ? n : 1);
    out->per_class = slm_calloc(k, sizeof *out->per_class);
    out->confusion = slm_calloc(kk, sizeof *out->confusion);
    if (!texts || !pred || !probs || !conf || !correct || !out->per_class || !out->confusion) {
        st = slm_errf(err, SLM_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        texts[i] = data->text[i];
        if (!data->label[i]) {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "eval: example %zu has no label", i);
            goto done;
        }
    }
    if ((st = slm_head_predict_batch(h, texts, data->len, n, threads, pred, probs, err)) != SLM_OK) goto done;
    size_t known = 0, right = 0, in_scope = 0, esc_in = 0, oos = 0, esc_oos = 0, kept = 0, kept_right = 0;
    for (size_t i = 0; i < n; i++) {
        long y = slm_head_label_index(h, data->label[i]);
        bool is_oos = y < 0 || (h->oos_index >= 0 && y == h->oos_index);
        if (is_oos) {
            oos++;
            esc_oos += pred[i].escalate;
        } else {
            in_scope++;
            esc_in += pred[i].escalate;
            if (!pred[i].escalate) {
                kept++;
                kept_right += pred[i].label == (uint32_t)y;
            }
        }
        if (y < 0) continue;
        out->confusion[(size_t)y * k + pred[i].label]++;
        conf[known] = pred[i].confidence;
        correct[known] = pred[i].label == (uint32_t)y;
        right += correct[known];
        double p = probs[i * k + (size_t)y];
        nll -= log(p > 1e-30 ? p : 1e-30);
        known++;
    }
    out->n = n;
    out->k = k;
    out->n_in_scope = in_scope;
    out->n_out_of_scope = oos;
    out->accuracy = known ? (double)right / (double)known : NAN;
    out->ece = slm_head_calib_ece(conf, correct, known);
    out->nll = known ? nll / (double)known : NAN;
    out->escalation_rate = in_scope ? (double)esc_in / (double)in_scope : NAN;
    out->oos_recall = oos ? (double)esc_oos / (double)oos : NAN;
    out->accuracy_kept = kept ? (double)kept_right / (double)kept : NAN;
    double f1sum = 0.0;
    size_t nf1 = 0;
    for (size_t c = 0; c < k; c++) {
        size_t tp = out->confusion[c * k + c], support = 0, predicted = 0;
        for (size_t j = 0; j < k; j++) {
            support += out->confusion[c * k + j];
            predicted += out->confusion[j * k + c];
        }
        slm_head_class_metrics *m = &out->per_class[c];
        m->support = support;
        m->precision = predicted ? (double)tp / (double)predicted : 0.0;
        m->recall = support ? (double)tp / (double)support : 0.0;
        m->f1 = m->precision + m->recall > 0 ? 2 * m->precision * m->recall / (m->precision + m->recall) : 0.0;
        if (support || predicted) {
            f1sum += m->f1;
            nf1++;
        }
    }
    out->macro_f1 = nf1 ? f1sum / (double)nf1 : NAN;
done:
    if (st != SLM_OK) slm_head_eval_free(out);
    slm_free(texts);
    slm_free(pred);
    slm_free(probs);
    slm_free(conf);
    slm_free(correct);
    return st;
}
