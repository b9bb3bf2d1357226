/*
 * sample/sample.c: the per-sequence sampler (see sample.h for the chain and its order).
 *
 * Data flow of one step (slm_sample_next), all in memory the sampler owns:
 *   logits (read in place) or, with bias/penalties/+inf, work[i] = sanitized copy, adjusted
 *          -> report: max, logZ, entropy (vectorizable passes, vecmath.h), top-N
 *          -> greedy without a mask: the first maximum, done
 *          -> greedy (masked) or top_k <= TOP_K_HEAP_MAX: cand = the best 1 or k allowed
 *             entries (a heap in one pass); else cand = all allowed finite entries, then a
 *             quickselect for a large top_k
 *          -> top_p (mass-directed quickselect), min_p (threshold), temperature + draw
 *
 * Invariants:
 *  - After slm_sample_create nothing allocates; work and cand hold n_vocab entries, mask
 *    SLM_SAMPLE_MASK_WORDS(n_vocab), the history ring repeat_last_n ids, and count n_vocab
 *    counters (only when a penalty is active).
 *  - count[t] is the number of occurrences of t in the ring (all >= 0 between calls; the
 *    penalty pass negates them temporarily to visit each distinct token once).
 *  - The ordering "greater" is (logit descending, id ascending): a strict total order on
 *    candidates, so selections and ties are deterministic.
 * Thread-safety: one thread per sampler at a time. Non-goals: see sample.h.
 */
#include "sample/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sample/vecmath.h"

/* Tuning constants with their reasons. */
#define TOP_P_SORT_BELOW 64 /* top_p sorts ranges this short instead of partitioning them */
#define TOP_K_HEAP_MAX 1024 /* top_k up to this keeps a heap in one pass over the logits;
                               larger k gathers all candidates and quickselects */

/* ---- the sampler's state ------------------------------------------------------------------- */

typedef struct cand {
    float v;    /* adjusted logit (bias, penalties applied) */
    int32_t id; /* token id */
} cand;

struct slm_sampler {
    slm_sample_params p;     /* copy of the parameters; p.bias points at bias below */
    slm_sample_bias *bias;   /* [p.n_bias] owned copy, or NULL */
    int32_t n_vocab;         /* logits per step */
    bool penalties;          /* any penalty active (and repeat_last_n > 0) */
    uint64_t rng[4];         /* xoshiro256** state */
    /* history, only when penalties: */
    int32_t *ring;           /* [p.repeat_last_n] last accepted ids, circular */
    int32_t ring_len;        /* valid entries, <= p.repeat_last_n */
    int32_t ring_head;       /* next slot to write */
    int32_t *count;          /* [n_vocab] occurrences of each id in the ring */
    /* scratch: */
    float *work;             /* [n_vocab] the step's adjusted logits, by id */
    cand *cand;              /* [n_vocab] candidates of the current step (after the mask) */
    uint32_t *mask;          /* [mask_words] the hook's bitset */
    size_t mask_words;       /* SLM_SAMPLE_MASK_WORDS(n_vocab) */
    slm_sample_mask_fn mask_fn; /* optional hook, borrowed */
    void *mask_user;            /* the hook's context, borrowed */
};

/* ---- PRNG: splitmix64 seeding, xoshiro256** ------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---- parameters ------------------------------------------------------------------------------ */

slm_sample_params slm_sample_params_default(void) {
    slm_sample_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.seed = 0;
    p.n_probs = 0;
    p.bias = NULL;
    p.n_bias = 0;
    return p;
}

slm_status slm_sample_params_check(const slm_sample_params *p, int32_t n_vocab, char *err) {
    if (!p) return slm_errf(err, SLM_ERR_INVALID_ARG, "sampler params: NULL");
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "temperature %g: must be finite and >= 0", (double)p->temperature);
    if (p->top_k < 0) return slm_errf(err, SLM_ERR_INVALID_ARG, "top_k %d: must be >= 0", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "top_p %g: must be in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "min_p %g: must be in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "repeat_penalty %g: must be finite and > 0",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < 0) return slm_errf(err, SLM_ERR_INVALID_ARG, "repeat_last_n %d: must be >= 0", (int)p->repeat_last_n);
    if (p->repeat_last_n > SLM_SAMPLE_MAX_LAST_N)
        return slm_errf(err, SLM_ERR_LIMIT, "repeat_last_n %d: above the limit %d", (int)p->repeat_last_n,
                        SLM_SAMPLE_MAX_LAST_N);
    if (!isfinite(p->frequency_penalty))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "frequency_penalty: must be finite");
    if (!isfinite(p->presence_penalty))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "presence_penalty: must be finite");
    if (p->n_probs < 0 || p->n_probs > SLM_SAMPLE_MAX_PROBS)
        return slm_errf(err, p->n_probs < 0 ? SLM_ERR_INVALID_ARG : SLM_ERR_LIMIT, "n_probs %d: must be in [0, %d]",
                        (int)p->n_probs, SLM_SAMPLE_MAX_PROBS);
    if (p->n_bias > SLM_SAMPLE_MAX_BIAS)
        return slm_errf(err, SLM_ERR_LIMIT, "logit bias: %zu entries, limit %d", p->n_bias, SLM_SAMPLE_MAX_BIAS);
    if (p->n_bias > 0 && !p->bias) return slm_errf(err, SLM_ERR_INVALID_ARG, "logit bias: NULL list of %zu", p->n_bias);
    for (size_t i = 0; i < p->n_bias; i++) {
        const slm_sample_bias *b = &p->bias[i];
        if (b->id < 0 || b->id >= n_vocab)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "logit bias %zu: token %d outside [0, %d)", i, (int)b->id,
                            (int)n_vocab);
        if (isnan(b->bias) || b->bias == INFINITY)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "logit bias %zu: value must be finite or -inf", i);
    }
    return SLM_OK;
}

/* ---- create / destroy ------------------------------------------------------------------------- */

void slm_sample_destroy(slm_sampler *s) {
    if (!s) return;
    slm_free(s->bias);
    slm_free(s->ring);
    slm_free(s->count);
    slm_free(s->work);
    slm_free(s->cand);
    slm_free(s->mask);
    slm_free(s);
}

slm_status slm_sample_create(const slm_sample_params *p, int32_t n_vocab, slm_sampler **out, char *err) {
    if (!out) return slm_errf(err, SLM_ERR_INVALID_ARG, "sampler: NULL out");
    *out = NULL;
    if (n_vocab < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "sampler: n_vocab %d < 1", (int)n_vocab);
    if (n_vocab > SLM_SAMPLE_MAX_VOCAB)
        return slm_errf(err, SLM_ERR_LIMIT, "sampler: n_vocab %d above the limit %d", (int)n_vocab, SLM_SAMPLE_MAX_VOCAB);
    slm_status st = slm_sample_params_check(p, n_vocab, err);
    if (st != SLM_OK) return st;

    slm_sampler *s = slm_calloc(1, sizeof *s);
    if (!s) return slm_errf(err, SLM_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->penalties = p->repeat_last_n > 0 &&
                   (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
    s->mask_words = SLM_SAMPLE_MASK_WORDS(n_vocab);
    /* Sizes cannot overflow: n_vocab <= 2^21 and the element sizes are <= 8. */
    s->work = slm_malloc((size_t)n_vocab * sizeof *s->work);
    s->cand = slm_malloc((size_t)n_vocab * sizeof *s->cand);
    s->mask = slm_malloc(s->mask_words * sizeof *s->mask);
    if (!s->work || !s->cand || !s->mask) goto nomem;
    if (p->n_bias > 0) {
        s->bias = slm_malloc(p->n_bias * sizeof *s->bias);
        if (!s->bias) goto nomem;
        memcpy(s->bias, p->bias, p->n_bias * sizeof *s->bias);
    }
    s->p.bias = s->bias;
    if (s->penalties) {
        s->ring = slm_malloc((size_t)p->repeat_last_n * sizeof *s->ring);
        s->count = slm_calloc((size_t)n_vocab, sizeof *s->count);
        if (!s->ring || !s->count) goto nomem;
    }
    slm_sample_reset(s);
    *out = s;
    return SLM_OK;
nomem:
    slm_sample_destroy(s);
    return slm_errf(err, SLM_ERR_NOMEM, "sampler: out of memory for %d tokens", (int)n_vocab);
}

void slm_sample_reset(slm_sampler *s) {
    if (!s) return;
    rng_seed(s->rng, s->p.seed);
    if (s->penalties) {
        for (int32_t i = 0; i < s->ring_len; i++) s->count[s->ring[i]] = 0;
    }
    s->ring_len = 0;
    s->ring_head = 0;
}

void slm_sample_set_mask_fn(slm_sampler *s, slm_sample_mask_fn fn, void *user) {
    if (!s) return;
    s->mask_fn = fn;
    s->mask_user = fn ? user : NULL;
}

/* ---- history ----------------------------------------------------------------------------------- */

slm_status slm_sample_accept(slm_sampler *s, const int32_t *ids, size_t n, char *err) {
    if (!s || (n > 0 && !ids)) return slm_errf(err, SLM_ERR_INVALID_ARG, "accept: NULL argument");
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "accept: token %d (index %zu) outside [0, %d)", (int)ids[i], i,
                            (int)s->n_vocab);
    }
    if (!s->penalties) return SLM_OK;
    const int32_t cap = s->p.repeat_last_n;
    /* Only the last cap ids can matter. */
    size_t first = n > (size_t)cap ? n - (size_t)cap : 0;
    for (size_t i = first; i < n; i++) {
        if (s->ring_len == cap) {
            s->count[s->ring[s->ring_head]]--; /* evict the oldest, which sits at head */
        } else {
            s->ring_len++;
        }
        s->ring[s->ring_head] = ids[i];
        s->count[ids[i]]++;
        s->ring_head = s->ring_head + 1 == cap ? 0 : s->ring_head + 1;
    }
    return SLM_OK;
}

/* llama.cpp's penalties on the work array: each distinct token of the ring once. */
static void apply_penalties(slm_sampler *s) {
    const float rp = s->p.repeat_penalty, fp = s->p.frequency_penalty, pp = s->p.presence_penalty;
    for (int32_t i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[i];
        int32_t c = s->count[t];
        if (c <= 0) continue; /* already visited this step */
        float v = s->work[t];
        v = v <= 0.0f ? v * rp : v / rp;
        v -= (float)c * fp + pp;
        s->work[t] = v;
        s->count[t] = -c;
    }
    for (int32_t i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[i];
        if (s->count[t] < 0) s->count[t] = -s->count[t];
    }
}

/* ---- ordering and selection ---------------------------------------------------------------------- */

/* The strict total order of the chain: a before b when a's logit is larger, or equal with a
 * lower id. (-inf entries compare by id like any other value.) */
static inline bool greater(const cand *a, const cand *b) { return a->v > b->v || (a->v == b->v && a->id < b->id); }

static inline void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Rearrange c[0..n) so that its k greatest entries are c[0..k) (in no particular order).
 * Quickselect with a median-of-three pivot; expected O(n). 0 < k < n. */
static void select_top(cand *c, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1; /* the k-th greatest lies in c[lo..hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        /* order c[lo], c[mid], c[hi] descending; the median c[mid] is the pivot */
        if (greater(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (greater(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
        if (greater(&c[hi], &c[mid])) swap_cand(&c[hi], &c[mid]);
        cand pivot = c[mid];
        /* Lomuto partition of c[lo..hi]: entries greater than the pivot first. */
        swap_cand(&c[mid], &c[hi]);
        size_t store = lo;
        for (size_t i = lo; i < hi; i++) {
            if (greater(&c[i], &pivot)) swap_cand(&c[i], &c[store++]);
        }
        swap_cand(&c[store], &c[hi]); /* pivot at its final rank `store` */
        if (store == k - 1 || store == k) return;
        if (store > k) hi = store - 1;
        else lo = store + 1;
    }
}

static int cmp_cand(const void *a, const void *b) {
    return greater(a, b) ? -1 : greater(b, a) ? 1 : 0;
}

static void sort_cand(cand *c, size_t n) { qsort(c, n, sizeof *c, cmp_cand); }

/* ---- reported distribution ------------------------------------------------------------------------- */

/* What the report pass learns about the adjusted logits x[0..n) (entry i is token i). */
typedef struct dist {
    float max;   /* largest logit (finite) */
    double sum;  /* sum of e^(x - max) over all entries */
    double lse;  /* log(sum): log Z = max + lse */
} dist;

/* log p of a logit v: (v - max) - lse, in that order so that huge logits keep their
 * precision (max + lse would round away lse next to FLT_MAX). */
static inline double logprob_of(const dist *d, float v) { return ((double)v - (double)d->max) - d->lse; }

static inline bool bit_set(const uint32_t *w, size_t id) { return (w[id >> 5] >> (id & 31)) & 1u; }

/* Restore the heap property below h[i] in a heap whose root is its WORST entry. */
static void heap_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && greater(&h[worst], &h[l])) worst = l;
        if (r < n && greater(&h[worst], &h[r])) worst = r;
        if (worst == i) return;
        swap_cand(&h[i], &h[worst]);
        i = worst;
    }
}

static void heap_up(cand *h, size_t i) {
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!greater(&h[parent], &h[i])) return;
        swap_cand(&h[parent], &h[i]);
        i = parent;
    }
}

/* The k greatest entries of x[0..n) (entry i is token i; NaN and -inf skipped; when given,
 * only ids whose bit is set in m1 and in m2), sorted in the chain's order, into top[0..k).
 * Returns how many (< k when fewer qualify). One pass: a heap of the best k so far, whose
 * worst value is the bar a new entry must clear; since ids ascend, an entry equal to the bar
 * never clears it, so the common case is a single float compare. O(n + k log k) for
 * typical data, O(n log k) at worst. */
static size_t top_n(const float *x, size_t n, size_t k, const uint32_t *m1, const uint32_t *m2, cand *top) {
    size_t have = 0;
    float bar = -INFINITY; /* the heap's worst value once it is full */
    for (size_t i = 0; i < n && k > 0; i++) {
        if (!(x[i] > bar)) continue;
        if ((m1 && !bit_set(m1, i)) || (m2 && !bit_set(m2, i))) continue;
        const cand ci = {x[i], (int32_t)i};
        if (have < k) {
            top[have] = ci;
            heap_up(top, have++);
        } else {
            top[0] = ci;
            heap_down(top, k, 0);
        }
        if (have == k) bar = top[0].v;
    }
    sort_cand(top, have);
    return have;
}

/* logZ, entropy and the top n_alts of softmax(x[0..n)) into *d and out (logprob/id are the
 * caller's). Returns false when every entry is -inf or NaN. */
static bool report(const float *x, size_t n, int32_t n_alts, dist *d, slm_sample_out *out) {
    d->max = vm_max(x, n);
    if (d->max == -INFINITY) return false;
    double sum_ed;
    vm_exp_sums(x, n, d->max, &d->sum, &sum_ed);
    d->lse = log(d->sum);
    const double h = d->lse - sum_ed / d->sum; /* -sum p log p, with log p = (x - max) - lse */
    out->entropy = (float)(h > 0.0 ? h : 0.0);
    cand top[SLM_SAMPLE_MAX_PROBS];
    out->n_alts = (int32_t)top_n(x, n, (size_t)n_alts, NULL, NULL, top);
    for (int32_t j = 0; j < out->n_alts; j++) {
        out->alts[j].id = top[j].id;
        out->alts[j].logprob = (float)logprob_of(d, top[j].v);
    }
    return true;
}

/* ---- truncation stages --------------------------------------------------------------------------- */

static float cand_max(const cand *c, size_t n) {
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) m = c[i].v > m ? c[i].v : m;
    return m;
}

/* Weight of a candidate relative to the survivors' maximum m: e^(v - m). */
static inline double weight(const cand *c, float m) { return (double)vm_exp_neg(c->v - m); }

/* top_p over c[0..n): keep the smallest set of greatest candidates (in the chain's order)
 * whose weight reaches top_p of the total (m: the maximum of c; total: sum of weights).
 * The set is found without sorting the vocabulary: a quickselect that partitions around a
 * pivot and descends into the side where the mass threshold falls (expected O(n) weight
 * evaluations); short ranges are sorted and walked. Returns the new n; the survivors are
 * c[0..new n), in no particular order. */
static size_t stage_top_p(cand *c, size_t n, float top_p, float m, double total) {
    double need = (double)top_p * total; /* mass still to take from c[lo..hi) */
    size_t lo = 0, hi = n;                /* c[0..lo) are kept; the cut lies in c[lo..hi) */
    while (hi - lo > TOP_P_SORT_BELOW) {
        size_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (greater(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
        if (greater(&c[last], &c[lo])) swap_cand(&c[last], &c[lo]);
        if (greater(&c[last], &c[mid])) swap_cand(&c[last], &c[mid]);
        const cand pivot = c[mid];
        swap_cand(&c[mid], &c[last]);
        size_t store = lo;
        double above = 0.0; /* weight of the candidates greater than the pivot */
        for (size_t i = lo; i < last; i++) {
            if (greater(&c[i], &pivot)) {
                above += weight(&c[i], m);
                swap_cand(&c[i], &c[store++]);
            }
        }
        swap_cand(&c[store], &c[last]); /* pivot at rank `store` */
        if (above >= need) {
            hi = store; /* the cut is among the greater ones */
        } else if (above + weight(&c[store], m) >= need) {
            return store + 1; /* the pivot is the last survivor */
        } else {
            need -= above + weight(&c[store], m);
            lo = store + 1;
        }
    }
    sort_cand(c + lo, hi - lo);
    double cum = 0.0;
    for (size_t i = lo; i < hi; i++) {
        cum += weight(&c[i], m);
        if (cum >= need) return i + 1;
    }
    return hi > 0 ? hi : 1; /* rounding: everything is kept */
}

/* min_p: keep candidates with p >= min_p * p_max, i.e. v >= m + log(min_p). Order kept. */
static size_t stage_min_p(cand *c, size_t n, float min_p, float m) {
    const float floor_v = m + logf(min_p);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].v >= floor_v) c[k++] = c[i];
    }
    return k;
}

/* Draw from softmax(v / T) over c[0..n) (n >= 1, m their maximum) by inverse CDF in the
 * current order. wbuf: n floats of scratch for the weights (each computed once). */
static size_t draw(const cand *c, size_t n, float temperature, float m, uint64_t rng[4], float *wbuf) {
    const float inv_t = 1.0f / temperature;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        wbuf[i] = vm_exp_neg((c[i].v - m) * inv_t);
        total += (double)wbuf[i];
    }
    const double target = rng_uniform(rng) * total;
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += (double)wbuf[i];
        if (cum > target) return i;
    }
    return n - 1; /* rounding left target at the very top */
}

/* ---- one step ---------------------------------------------------------------------------------- */

/* Candidates for truncation: the finite entries of w that are >= floor_v and allowed by
 * both masks (either may be NULL), in id order. Returns their count; *unmasked tells whether
 * no such entry was masked out. */
static size_t gather(const float *w, size_t n, float floor_v, const uint32_t *m1, const uint32_t *m2, cand *c,
                     bool *unmasked) {
    size_t k = 0, passed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(w[i] > -INFINITY) || w[i] < floor_v) continue;
        passed++;
        if ((m1 && !bit_set(m1, i)) || (m2 && !bit_set(m2, i))) continue;
        c[k].v = w[i];
        c[k].id = (int32_t)i;
        k++;
    }
    *unmasked = k == passed;
    return k;
}

/* A floor below which no token can be in the top_p set of the whole (unmasked, untruncated)
 * distribution: all tokens below t together weigh less than n e^(t - max), and when that is
 * under (1 - top_p) of the mass, the tokens above t already reach top_p. The margin absorbs
 * the float rounding of the sums. Skipping them before the gather makes top_p cheap for the
 * usual peaked distributions. */
#define TOP_P_FLOOR_MARGIN 0.01f /* nats */
static float top_p_floor(const dist *d, size_t n, float top_p) {
    return d->max + logf((float)((1.0 - (double)top_p) * d->sum / (double)n)) - TOP_P_FLOOR_MARGIN;
}

/* Steps 1-2 into the work array: sanitized copy, bias, penalties. Returns work. */
static const float *adjusted(slm_sampler *s, const float *logits) {
    float *w = s->work;
    for (size_t i = 0; i < (size_t)s->n_vocab; i++) {
        const float v = logits[i];
        w[i] = v != v ? -INFINITY : v > FLT_MAX ? FLT_MAX : v;
    }
    for (size_t i = 0; i < s->p.n_bias; i++) w[s->bias[i].id] += s->bias[i].bias;
    if (s->penalties) apply_penalties(s);
    return w;
}

slm_status slm_sample_next(slm_sampler *s, const float *logits, int32_t n_vocab, const uint32_t *allowed,
                           slm_sample_out *out, char *err) {
    if (!s || !logits || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "sample: NULL argument");
    if (n_vocab != s->n_vocab)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "sample: %d logits, sampler built for %d", (int)n_vocab,
                        (int)s->n_vocab);
    const size_t nv = (size_t)n_vocab;
    /* 1-2: without bias or penalties the caller's logits are read in place (NaN entries
     * count as -inf everywhere below); otherwise, or when a logit is +inf, they are copied
     * into work (NaN -> -inf, +inf -> FLT_MAX to keep the sums finite) and adjusted there */
    const float *w = logits;
    if (s->p.n_bias > 0 || s->penalties) w = adjusted(s, logits);
    dist d;
    bool ok = report(w, nv, s->p.n_probs, &d, out);
    if (ok && d.max == INFINITY) {
        w = adjusted(s, logits);
        ok = report(w, nv, s->p.n_probs, &d, out);
    }
    if (!ok) return slm_errf(err, SLM_ERR_STATE, "sample: every token is banned (all logits -inf)");

    /* 3: the mask */
    const uint32_t *hook = NULL;
    if (s->mask_fn) {
        memset(s->mask, 0, s->mask_words * sizeof *s->mask);
        slm_status st = s->mask_fn(s->mask_user, s->mask, s->mask_words, err);
        if (st != SLM_OK) return st;
        hook = s->mask;
    }
    size_t pick_id;
    float pick_v = d.max;
    if (s->p.temperature == 0.0f && !hook && !allowed) {
        /* greedy, nothing masked: the first (lowest-id) entry equal to the maximum */
        pick_id = 0;
        while (w[pick_id] != d.max) pick_id++;
    } else {
        cand *c = s->cand;
        bool full = false; /* the report's max and sum describe c's distribution: c holds every
                              finite entry, or all but some the top_p floor rules out */
        size_t n;
        const bool greedy = s->p.temperature == 0.0f;
        if (greedy || (s->p.top_k > 0 && s->p.top_k <= TOP_K_HEAP_MAX)) {
            n = top_n(w, nv, greedy ? 1 : (size_t)s->p.top_k, hook, allowed, c); /* 4, sorted */
        } else {
            const bool prune = s->p.top_p < 1.0f && s->p.top_k == 0 && !hook && !allowed;
            n = gather(w, nv, prune ? top_p_floor(&d, nv, s->p.top_p) : -INFINITY, hook, allowed, c, &full);
            if (s->p.top_k > 0 && (size_t)s->p.top_k < n) { /* 4, large k */
                select_top(c, n, (size_t)s->p.top_k);
                n = (size_t)s->p.top_k;
                full = false;
            }
        }
        if (n == 0) return slm_errf(err, SLM_ERR_STATE, "sample: the mask allows no token that is not banned");
        size_t pick = 0; /* greedy: c[0] is the maximum, lowest id first */
        if (!greedy) {
            const float m = full ? d.max : cand_max(c, n);
            if (s->p.top_p < 1.0f) { /* 5 */
                double total = 0.0;
                if (full) total = d.sum;
                else for (size_t i = 0; i < n; i++) total += weight(&c[i], m);
                n = stage_top_p(c, n, s->p.top_p, m, total);
            }
            if (s->p.min_p > 0.0f) n = stage_min_p(c, n, s->p.min_p, m); /* 6 (m survives 4-5) */
            pick = draw(c, n, s->p.temperature, m, s->rng, s->work); /* 7-8; c holds copies */
        }
        pick_id = (size_t)c[pick].id;
        pick_v = c[pick].v;
    }
    out->id = (int32_t)pick_id;
    out->logprob = (float)logprob_of(&d, pick_v);
    return SLM_OK;
}

/* ---- stateless helper ------------------------------------------------------------------------------ */

slm_status slm_sample_probs(const float *logits, int32_t n_vocab, int32_t id, int32_t n_probs,
                            slm_sample_out *out, char *err) {
    if (!logits || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "probs: NULL argument");
    if (n_vocab < 1 || n_vocab > SLM_SAMPLE_MAX_VOCAB)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "probs: n_vocab %d outside [1, %d]", (int)n_vocab,
                        SLM_SAMPLE_MAX_VOCAB);
    if (id < -1 || id >= n_vocab)
        return slm_errf(err, SLM_ERR_RANGE, "probs: token %d outside [0, %d)", (int)id, (int)n_vocab);
    if (n_probs < 0 || n_probs > SLM_SAMPLE_MAX_PROBS)
        return slm_errf(err, SLM_ERR_RANGE, "probs: n_probs %d outside [0, %d]", (int)n_probs, SLM_SAMPLE_MAX_PROBS);
    dist d;
    if (!report(logits, (size_t)n_vocab, n_probs, &d, out))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "probs: every logit is -inf or NaN");
    if (d.max == INFINITY) return slm_errf(err, SLM_ERR_INVALID_ARG, "probs: a logit is +inf");
    out->id = id;
    out->logprob = 0.0f;
    if (id >= 0) {
        const float v = logits[id];
        out->logprob = v > -INFINITY ? (float)logprob_of(&d, v) : -INFINITY;
    }
    return SLM_OK;
}
