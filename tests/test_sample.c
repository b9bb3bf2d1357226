/*
 * tests/test_sample.c: the sampler chain (greedy, temperature, top_k, top_p, min_p,
 * penalties, bias, mask), its confidence outputs against a float64 computation, seed
 * reproducibility (also across threads), parameter checks, allocation failures, and the
 * stop-string detector at every split position.
 */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "sample/sample.h"
#include "sample/vecmath.h"

/* Tolerances, named with their reasons. */
#define LOGPROB_TOL 2e-5 /* float32 logits, float64 sums: a few ulps of a log-probability */
#define CHI2_CRIT_5DOF_P001 20.515 /* chi-square critical value, 5 degrees of freedom, p = 0.001 */

/* ---- helpers ------------------------------------------------------------------------------- */

static slm_sample_params plain(float temperature) {
    slm_sample_params p = slm_sample_params_default();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

static slm_sampler *make(const slm_sample_params *p, int32_t n_vocab) {
    slm_sampler *s = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_sample_create(p, n_vocab, &s, err);
    if (st != SLM_OK) fprintf(stderr, "create: %s\n", err);
    assert_int_equal(st, SLM_OK);
    return s;
}

static int32_t next_id(slm_sampler *s, const float *logits, int32_t n, const uint32_t *allowed) {
    slm_sample_out o;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_sample_next(s, logits, n, allowed, &o, err);
    if (st != SLM_OK) fprintf(stderr, "next: %s\n", err);
    assert_int_equal(st, SLM_OK);
    return o.id;
}

/* Draw `draws` tokens and count them into hist[n]. */
static void histogram(slm_sampler *s, const float *logits, int32_t n, int draws, int *hist) {
    memset(hist, 0, (size_t)n * sizeof *hist);
    for (int i = 0; i < draws; i++) hist[next_id(s, logits, n, NULL)]++;
}

/* Which ids were drawn at least once, as a bitmask over up to 32 ids. */
static uint32_t drawn_set(const slm_sample_params *p, const float *logits, int32_t n, int draws) {
    slm_sampler *s = make(p, n);
    int hist[32];
    histogram(s, logits, n, draws, hist);
    slm_sample_destroy(s);
    uint32_t set = 0;
    for (int32_t i = 0; i < n; i++) set |= hist[i] ? 1u << i : 0;
    return set;
}

static uint32_t lcg_next(uint32_t *x) {
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

/* float64 log-softmax of v[n] into out[n]. */
static void log_softmax64(const float *v, int n, double *out) {
    double m = -INFINITY;
    for (int i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)v[i] - m);
    for (int i = 0; i < n; i++) out[i] = (double)v[i] - m - log(s);
}

/* ---- greedy ---------------------------------------------------------------------------------- */

static void test_greedy_argmax_lowest_id(void **state) {
    (void)state;
    const float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f, 3.0f};
    slm_sample_params p = slm_sample_params_default();
    p.temperature = 0.0f; /* top_k/top_p/min_p defaults must not matter */
    slm_sampler *s = make(&p, 6);
    for (int i = 0; i < 10; i++) assert_int_equal(next_id(s, l, 6, NULL), 1);
    uint32_t allowed = (1u << 3) | (1u << 4) | (1u << 5);
    assert_int_equal(next_id(s, l, 6, &allowed), 3);
    slm_sample_destroy(s);

    /* a NaN never wins; -inf never wins while something else is allowed */
    const float nan_l[3] = {NAN, -INFINITY, -50.0f};
    s = make(&p, 3);
    assert_int_equal(next_id(s, nan_l, 3, NULL), 2);
    /* +inf logits are clamped to FLT_MAX: the first wins, and the numbers stay finite */
    const float inf_l[4] = {1.0f, INFINITY, 3.0f, INFINITY};
    slm_sample_out o;
    assert_int_equal(slm_sample_next(s, inf_l, 4, NULL, &o, NULL), SLM_ERR_INVALID_ARG); /* wrong size */
    slm_sample_destroy(s);
    s = make(&p, 4);
    assert_int_equal(slm_sample_next(s, inf_l, 4, NULL, &o, NULL), SLM_OK);
    assert_int_equal(o.id, 1);
    assert_true(isfinite(o.logprob) && isfinite(o.entropy));
    assert_true(fabs((double)o.logprob + log(2.0)) < 1e-6);
    slm_sample_destroy(s);
    assert_int_equal(slm_sample_probs(inf_l, 4, 1, 0, &o, NULL), SLM_ERR_INVALID_ARG);
}

/* ---- temperature --------------------------------------------------------------------------- */

static void test_temperature_matches_softmax(void **state) {
    (void)state;
    enum { N = 6, DRAWS = 20000 };
    const float l[N] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f, 1.2f};
    const float temps[3] = {0.7f, 1.0f, 1.6f};
    for (int t = 0; t < 3; t++) {
        slm_sample_params p = plain(temps[t]);
        p.seed = 1000 + (uint64_t)t; /* fixed; the distribution was checked over 200 seeds */
        slm_sampler *s = make(&p, N);
        int hist[N];
        histogram(s, l, N, DRAWS, hist);
        slm_sample_destroy(s);
        float scaled[N];
        for (int i = 0; i < N; i++) scaled[i] = l[i] / temps[t];
        double lp[N];
        log_softmax64(scaled, N, lp);
        double chi2 = 0;
        for (int i = 0; i < N; i++) {
            double e = DRAWS * exp(lp[i]);
            chi2 += (hist[i] - e) * (hist[i] - e) / e;
        }
        if (chi2 >= CHI2_CRIT_5DOF_P001) fprintf(stderr, "T=%g chi2=%g\n", (double)temps[t], chi2);
        assert_true(chi2 < CHI2_CRIT_5DOF_P001);
    }
}

/* ---- truncation ------------------------------------------------------------------------------ */

static void probs_to_logits(const double *pr, int n, float *l) {
    for (int i = 0; i < n; i++) l[i] = (float)log(pr[i]);
}

static void test_top_k(void **state) {
    (void)state;
    const float l[8] = {0.1f, 2.0f, 0.0f, 1.9f, -1.0f, 1.8f, 0.5f, 1.95f};
    slm_sample_params p = plain(1.0f);
    p.top_k = 3;
    assert_int_equal(drawn_set(&p, l, 8, 3000), (1u << 1) | (1u << 7) | (1u << 3));
    p.top_k = 1; /* = greedy */
    assert_int_equal(drawn_set(&p, l, 8, 200), 1u << 1);
    /* ties at the boundary: the lower id stays */
    const float tie[4] = {1.0f, 2.0f, 1.0f, 1.0f};
    p.top_k = 2;
    assert_int_equal(drawn_set(&p, tie, 4, 2000), (1u << 1) | (1u << 0));
}

static void test_top_k_large(void **state) {
    (void)state;
    /* k above the heap limit takes the gather + quickselect path: the 500 smallest of 2000
     * distinct logits (ids 1500..1999 here, after a shuffle of the values) never come out */
    enum { N = 2000, K = 1500, DRAWS = 1000 };
    static float l[N];
    uint32_t x = 3;
    for (int i = 0; i < N; i++) l[i] = (float)i * 1e-3f;
    for (int i = N - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
        x = x * 1664525u + 1013904223u;
        int j = (int)((x >> 8) % (uint32_t)(i + 1));
        float t = l[i];
        l[i] = l[j];
        l[j] = t;
    }
    slm_sample_params p = plain(1.0f);
    p.top_k = K;
    assert_true(K > 1024); /* TOP_K_HEAP_MAX in sample.c */
    slm_sampler *s = make(&p, N);
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = next_id(s, l, N, NULL);
        assert_true(l[id] >= (float)(N - K) * 1e-3f);
    }
    slm_sample_destroy(s);
}

static void test_top_p(void **state) {
    (void)state;
    const double pr[4] = {0.15, 0.5, 0.05, 0.3};
    float l[4];
    probs_to_logits(pr, 4, l);
    slm_sample_params p = plain(1.0f);
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8 */
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3));
    p.top_p = 0.85f; /* 0.8 < 0.85 <= 0.95 */
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3) | (1u << 0));
    p.top_p = 0.4f; /* the first token alone */
    assert_int_equal(drawn_set(&p, l, 4, 500), 1u << 1);
    /* after top_k the survivors are renormalised: 0.5/0.95, 0.3/0.95 = 0.842 >= 0.83 */
    p.top_p = 0.83f;
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3) | (1u << 0));
    p.top_k = 3;
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3));
}

static void test_top_p_large_flat(void **state) {
    (void)state;
    /* 400 equal logits: top_p 0.5 keeps exactly ids 0..199 (ties by id), which takes
     * several partition rounds before the short-range sort */
    enum { N = 400, KEEP = 200, DRAWS = 3000 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = 0.25f;
    slm_sample_params p = plain(1.0f);
    p.top_p = 0.5f;
    slm_sampler *s = make(&p, N);
    static int hist[N];
    histogram(s, l, N, DRAWS, hist);
    slm_sample_destroy(s);
    int seen = 0;
    for (int i = 0; i < N; i++) {
        if (i >= KEEP) assert_int_equal(hist[i], 0);
        seen += hist[i] > 0;
    }
    assert_true(seen > KEEP - 5); /* 3000 draws over 200: each is missed with p ~ e^-15 */
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* top_p against a float64 reference that sorts everything: the nucleus is the shortest
 * sorted prefix reaching top_p (at T = 1). Sampling at a huge temperature afterwards makes
 * the draw nearly uniform over the survivors, so the drawn set must be the nucleus exactly:
 * nothing outside it, and (for nuclei up to NUCLEUS_ALL_SEEN tokens) every member. This also
 * covers the floor that skips the tail before the selection. */
#define NUCLEUS_ALL_SEEN 120 /* 2000 near-uniform draws miss one of 120 with p ~ e^-16.7 */
static void test_top_p_vs_sorted(void **state) {
    (void)state;
    enum { N = 1000, DRAWS = 2000, DRAWS_BIG = 300 /* when only exclusion is checked */ };
    static float l[N], sorted[N];
    static bool seen[N];
    uint32_t x = 11;
    const float spreads[3] = {0.5f, 2.0f, 4.0f};
    const float tops[3] = {0.5f, 0.9f, 0.99f};
    int exact_checks = 0;
    for (int sp = 0; sp < 3; sp++) {
        for (int i = 0; i < N; i++) l[i] = spreads[sp] * ((float)(lcg_next(&x) % 10000) / 1000.0f - 5.0f);
        l[17] += 6.0f;
        l[900] += 5.0f;
        memcpy(sorted, l, sizeof l);
        qsort(sorted, N, sizeof *sorted, cmp_desc);
        double total = 0;
        for (int i = 0; i < N; i++) total += exp((double)sorted[i] - sorted[0]);
        for (int tp = 0; tp < 3; tp++) {
            double cum = 0;
            int size = N;
            for (int i = 0; i < N; i++) {
                cum += exp((double)sorted[i] - sorted[0]);
                if (cum >= tops[tp] * total) {
                    size = i + 1;
                    break;
                }
            }
            const float cut = sorted[size - 1]; /* values are distinct enough: no tie at the cut */
            slm_sample_params p = plain(1e4f);
            p.top_p = tops[tp];
            slm_sampler *s = make(&p, N);
            memset(seen, 0, sizeof seen);
            const int draws = size > NUCLEUS_ALL_SEEN ? DRAWS_BIG : DRAWS;
            for (int i = 0; i < draws; i++) {
                int32_t id = next_id(s, l, N, NULL);
                if (l[id] < cut) fprintf(stderr, "spread %g top_p %g: drew %g below the cut %g\n", (double)spreads[sp],
                                         (double)tops[tp], (double)l[id], (double)cut);
                assert_true(l[id] >= cut);
                seen[id] = true;
            }
            slm_sample_destroy(s);
            if (size > NUCLEUS_ALL_SEEN) continue;
            exact_checks++;
            for (int i = 0; i < N; i++) {
                if (l[i] >= cut && !seen[i]) fprintf(stderr, "spread %g top_p %g: member %d never drawn (nucleus %d)\n",
                                                     (double)spreads[sp], (double)tops[tp], i, size);
                assert_true(l[i] < cut || seen[i]);
            }
        }
    }
    assert_true(exact_checks >= 4); /* the data must keep exercising the exact check */
}

static void test_min_p(void **state) {
    (void)state;
    const double pr[4] = {0.05, 0.5, 0.15, 0.3};
    float l[4];
    probs_to_logits(pr, 4, l);
    slm_sample_params p = plain(1.0f);
    p.min_p = 0.2f; /* keep p >= 0.1 */
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3) | (1u << 2));
    p.min_p = 0.5f; /* keep p >= 0.25 */
    assert_int_equal(drawn_set(&p, l, 4, 3000), (1u << 1) | (1u << 3));
    p.min_p = 1.0f; /* only the maximum */
    assert_int_equal(drawn_set(&p, l, 4, 300), 1u << 1);
}

/* ---- the vectorizable exp ------------------------------------------------------------------- */

static void test_vm_exp(void **state) {
    (void)state;
    double worst = 0.0;
    for (int i = 0; i <= 870000; i++) {
        float xf = -(float)i * 1e-4f;
        double want = exp((double)xf);
        double got = (double)vm_exp_neg(xf);
        double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    if (worst > VM_EXP_TOL) fprintf(stderr, "worst relative error %g\n", worst);
    assert_true(worst <= VM_EXP_TOL);
    assert_true(vm_exp_neg(0.0f) == 1.0f);
    assert_true(vm_exp_neg(-87.5f) == 0.0f);
    assert_true(vm_exp_neg(-INFINITY) == 0.0f);
    assert_true(vm_exp_neg(NAN) == 0.0f);
    assert_true(vm_exp_neg(-NAN) == 0.0f);
    assert_true(vm_exp_arg(-INFINITY) == 0.0f && vm_exp_arg(-3.0f) == -3.0f);
    const float xs[11] = {1.0f, NAN, -INFINITY, 3.0f, -2.0f, 3.0f, 0.5f, -7.0f, 2.0f, 1.5f, -1.0f};
    assert_true(vm_max(xs, 11) == 3.0f);
    assert_true(vm_max(xs + 1, 2) == -INFINITY);
    double sum, sum_ed;
    vm_exp_sums(xs, 11, 3.0f, &sum, &sum_ed);
    double ws = 0, wd = 0;
    for (int i = 0; i < 11; i++) {
        if (!(xs[i] > -INFINITY)) continue;
        ws += exp((double)xs[i] - 3.0);
        wd += exp((double)xs[i] - 3.0) * ((double)xs[i] - 3.0);
    }
    assert_true(fabs(sum - ws) < 1e-6 * ws);
    assert_true(fabs(sum_ed - wd) < 1e-6 * fabs(wd));
}

/* ---- penalties and bias ------------------------------------------------------------------------ */

/* The reported logprobs (n_probs = n_vocab) are the log-softmax of the adjusted logits, so
 * they show exactly which logits the penalties changed. */
static void check_adjusted(slm_sampler *s, const float *l, const float *want, int n) {
    slm_sample_out o;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_sample_next(s, l, n, NULL, &o, err), SLM_OK);
    double lp[16];
    log_softmax64(want, n, lp);
    assert_int_equal(o.n_alts, n);
    for (int j = 0; j < o.n_alts; j++) {
        double d = fabs((double)o.alts[j].logprob - lp[o.alts[j].id]);
        if (d > LOGPROB_TOL) fprintf(stderr, "id %d: %g vs %g\n", o.alts[j].id, (double)o.alts[j].logprob, lp[o.alts[j].id]);
        assert_true(d <= LOGPROB_TOL);
    }
}

static void test_penalties_match_llama_cpp(void **state) {
    (void)state;
    enum { N = 6 };
    const float l[N] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
    const int32_t hist[5] = {4, 0, 1, 0, 3};
    slm_sample_params p = plain(0.0f);
    p.n_probs = N;
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.2f;
    p.presence_penalty = 0.3f;
    p.repeat_last_n = 64;
    slm_sampler *s = make(&p, N);
    assert_int_equal(slm_sample_accept(s, hist, 5, NULL), SLM_OK);
    /* counts: 0 -> 2, 1 -> 1, 3 -> 1, 4 -> 1; 2 and 5 untouched */
    float want[N] = {2.0f / 1.5f - (2 * 0.2f + 0.3f), -1.0f * 1.5f - (0.2f + 0.3f), 0.5f,
                     3.0f / 1.5f - (0.2f + 0.3f), -2.0f * 1.5f - (0.2f + 0.3f), 0.0f};
    check_adjusted(s, l, want, N);
    slm_sample_destroy(s);

    /* repeat_last_n = 3 sees only {0, 1, 3} once each; the zero logit (id 5) is multiplied */
    p.repeat_last_n = 3;
    s = make(&p, N);
    const int32_t h2[4] = {5, 0, 1, 3};
    assert_int_equal(slm_sample_accept(s, h2, 1, NULL), SLM_OK);
    assert_int_equal(slm_sample_accept(s, h2 + 1, 3, NULL), SLM_OK); /* evicts 5 */
    float want2[N] = {2.0f / 1.5f - 0.5f, -1.5f - 0.5f, 0.5f, 3.0f / 1.5f - 0.5f, -2.0f, 0.0f};
    check_adjusted(s, l, want2, N);
    /* reset forgets the history */
    slm_sample_reset(s);
    check_adjusted(s, l, l, N);
    slm_sample_destroy(s);

    /* penalties off (repeat_last_n = 0): nothing changes; bad ids are still refused */
    p.repeat_last_n = 0;
    s = make(&p, N);
    assert_int_equal(slm_sample_accept(s, hist, 5, NULL), SLM_OK);
    check_adjusted(s, l, l, N);
    const int32_t bad = N;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_sample_accept(s, &bad, 1, err), SLM_ERR_RANGE);
    slm_sample_destroy(s);
}

static void test_logit_bias(void **state) {
    (void)state;
    enum { N = 4 };
    const float l[N] = {1.0f, 2.0f, 0.0f, -1.0f};
    slm_sample_bias b[3] = {{1, -INFINITY}, {3, 1.5f}, {3, 1.0f}};
    slm_sample_params p = plain(0.0f);
    p.n_probs = 3;
    p.bias = b;
    p.n_bias = 3;
    slm_sampler *s = make(&p, N);
    b[0].bias = 0.0f; /* the sampler copied the list */
    slm_sample_out o;
    assert_int_equal(slm_sample_next(s, l, N, NULL, &o, NULL), SLM_OK);
    assert_int_equal(o.id, 3); /* -1 + 2.5 = 1.5 beats 1.0; 1 is banned */
    float want[N] = {1.0f, -INFINITY, 0.0f, 1.5f};
    double lp[N];
    log_softmax64(want, N, lp);
    assert_true(fabs((double)o.logprob - lp[3]) < LOGPROB_TOL);
    assert_int_equal(o.n_alts, 3);
    assert_int_equal(o.alts[0].id, 3);
    assert_int_equal(o.alts[1].id, 0);
    assert_int_equal(o.alts[2].id, 2); /* the banned token is not an alternative */
    slm_sample_destroy(s);

    /* everything banned: a clear error */
    slm_sample_bias all[N] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}, {3, -INFINITY}};
    p.bias = all;
    p.n_bias = N;
    s = make(&p, N);
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_sample_next(s, l, N, NULL, &o, err), SLM_ERR_STATE);
    assert_non_null(strstr(err, "banned"));
    slm_sample_destroy(s);
}

/* ---- confidence outputs ------------------------------------------------------------------------- */


static void test_logprobs_entropy_vs_float64(void **state) {
    (void)state;
    enum { N = 5000, K = SLM_SAMPLE_MAX_PROBS };
    static float l[N];
    static double lp[N];
    uint32_t x = 7;
    for (int i = 0; i < N; i++) l[i] = (float)(lcg_next(&x) % 20000) / 1000.0f - 10.0f;
    l[123] = l[4567] = 11.0f; /* a tie at the top: lower id first */
    log_softmax64(l, N, lp);
    double h = 0;
    for (int i = 0; i < N; i++) h -= exp(lp[i]) * lp[i];

    slm_sample_params p = slm_sample_params_default();
    p.n_probs = K;
    slm_sampler *s = make(&p, N);
    for (int step = 0; step < 20; step++) {
        slm_sample_out o;
        assert_int_equal(slm_sample_next(s, l, N, NULL, &o, NULL), SLM_OK);
        assert_true(fabs((double)o.logprob - lp[o.id]) < LOGPROB_TOL);
        assert_true(fabs((double)o.entropy - h) < 1e-4 * h);
        assert_int_equal(o.n_alts, K);
        assert_int_equal(o.alts[0].id, 123);
        assert_int_equal(o.alts[1].id, 4567);
        for (int j = 0; j < K; j++) {
            assert_true(fabs((double)o.alts[j].logprob - lp[o.alts[j].id]) < LOGPROB_TOL);
            if (j > 0) assert_true(o.alts[j].logprob <= o.alts[j - 1].logprob);
        }
        /* the K-th alternative is really the K-th largest */
        int larger = 0;
        for (int i = 0; i < N; i++) larger += l[i] > l[o.alts[K - 1].id];
        assert_true(larger <= K - 1);
    }
    slm_sample_destroy(s);

    /* the stateless helper agrees */
    slm_sample_out o;
    assert_int_equal(slm_sample_probs(l, N, 42, 5, &o, NULL), SLM_OK);
    assert_int_equal(o.id, 42);
    assert_true(fabs((double)o.logprob - lp[42]) < LOGPROB_TOL);
    assert_true(fabs((double)o.entropy - h) < 1e-4 * h);
    assert_int_equal(o.n_alts, 5);
    assert_int_equal(o.alts[0].id, 123);
    assert_int_equal(slm_sample_probs(l, N, -1, 0, &o, NULL), SLM_OK);
    assert_int_equal(o.n_alts, 0);
    assert_true(o.logprob == 0.0f);
    assert_int_equal(slm_sample_probs(l, N, N, 0, &o, NULL), SLM_ERR_RANGE);
    assert_int_equal(slm_sample_probs(l, N, 0, K + 1, &o, NULL), SLM_ERR_RANGE);

    /* a uniform distribution has entropy log n */
    const float u[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    assert_int_equal(slm_sample_probs(u, 4, 2, 4, &o, NULL), SLM_OK);
    assert_true(fabs((double)o.entropy - log(4.0)) < 1e-6);
    assert_true(fabs((double)o.logprob + log(4.0)) < 1e-6);
    for (int j = 0; j < 4; j++) assert_int_equal(o.alts[j].id, j);
}

/* ---- mask ---------------------------------------------------------------------------------------- */

typedef struct hook_ctx {
    uint32_t allow;   /* bits to allow (ids < 32) */
    slm_status fail;  /* status to return */
    int calls;        /* times called */
} hook_ctx;

static slm_status hook(void *user, uint32_t *allowed, size_t n_words, char *err) {
    hook_ctx *h = user;
    h->calls++;
    assert_int_equal(n_words, 2); /* 40 tokens */
    assert_int_equal(allowed[0] | allowed[1], 0); /* handed over zeroed */
    if (h->fail != SLM_OK) return slm_errf(err, h->fail, "hook says no");
    allowed[0] = h->allow;
    allowed[1] = 0xFFu; /* ids 32..39 */
    return SLM_OK;
}

static void test_mask(void **state) {
    (void)state;
    enum { N = 40, DRAWS = 2000 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = (float)(i % 7) * 0.3f;
    l[39] = 10.0f; /* masked below by the argument */
    slm_sample_params p = plain(1.0f);
    p.n_probs = 1;
    slm_sampler *s = make(&p, N);
    uint32_t arg[2] = {(1u << 3) | (1u << 7) | (1u << 20), 0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = next_id(s, l, N, arg);
        assert_true(id == 3 || id == 7 || id == 20);
    }
    /* the reported alternatives ignore the mask: the model preferred 39 */
    slm_sample_out o;
    assert_int_equal(slm_sample_next(s, l, N, arg, &o, NULL), SLM_OK);
    assert_int_equal(o.alts[0].id, 39);
    assert_true(o.logprob < -5.0f);

    /* the hook ANDs with the argument; all-masked is SLM_ERR_STATE */
    hook_ctx h = {(1u << 7) | (1u << 9), SLM_OK, 0};
    slm_sample_set_mask_fn(s, hook, &h);
    for (int i = 0; i < 200; i++) assert_int_equal(next_id(s, l, N, arg), 7);
    assert_int_equal(next_id(s, l, N, NULL), 39);
    uint32_t none[2] = {1u << 9, 0};
    h.allow = 1u << 3;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_sample_next(s, l, N, none, &o, err), SLM_ERR_STATE);
    h.fail = SLM_ERR_CORRUPT;
    assert_int_equal(slm_sample_next(s, l, N, NULL, &o, err), SLM_ERR_CORRUPT);
    assert_string_equal(err, "hook says no");
    slm_sample_set_mask_fn(s, NULL, NULL);
    assert_int_equal(slm_sample_next(s, l, N, NULL, &o, err), SLM_OK);
    slm_sample_destroy(s);
}

/* ---- reproducibility --------------------------------------------------------------------------------- */

enum { REPRO_N = 50, REPRO_STEPS = 300 };

typedef struct repro_job {
    uint64_t seed;
    int32_t ids[REPRO_STEPS];
} repro_job;

static void run_repro(repro_job *j) {
    float l[REPRO_N];
    for (int i = 0; i < REPRO_N; i++) l[i] = sinf((float)i) * 2.0f;
    slm_sample_params p = slm_sample_params_default();
    p.seed = j->seed;
    p.repeat_penalty = 1.1f;
    slm_sampler *s = NULL;
    if (slm_sample_create(&p, REPRO_N, &s, NULL) != SLM_OK) return;
    for (int t = 0; t < REPRO_STEPS; t++) {
        slm_sample_out o;
        if (slm_sample_next(s, l, REPRO_N, NULL, &o, NULL) != SLM_OK) break;
        j->ids[t] = o.id;
        slm_sample_accept(s, &o.id, 1, NULL);
    }
    slm_sample_destroy(s);
}

static void *repro_thread(void *arg) {
    run_repro(arg);
    return NULL;
}

static void test_seed_reproducible(void **state) {
    (void)state;
    static repro_job a, b, c, d;
    a.seed = b.seed = d.seed = 99;
    c.seed = 100;
    run_repro(&a);
    run_repro(&b);
    run_repro(&c);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, repro_thread, &d), 0);
    pthread_join(th, NULL);
    assert_memory_equal(a.ids, b.ids, sizeof a.ids);
    assert_memory_equal(a.ids, d.ids, sizeof a.ids);
    assert_memory_not_equal(a.ids, c.ids, sizeof a.ids);

    /* reset restarts the stream */
    float l[REPRO_N];
    for (int i = 0; i < REPRO_N; i++) l[i] = 0.0f;
    slm_sample_params p = plain(1.0f);
    slm_sampler *s = make(&p, REPRO_N);
    int32_t first[20];
    for (int i = 0; i < 20; i++) first[i] = next_id(s, l, REPRO_N, NULL);
    slm_sample_reset(s);
    for (int i = 0; i < 20; i++) assert_int_equal(next_id(s, l, REPRO_N, NULL), first[i]);
    slm_sample_destroy(s);
}

/* ---- parameters and allocation -------------------------------------------------------------------------- */

static void test_params_checked(void **state) {
    (void)state;
    slm_sampler *s = (slm_sampler *)&s;
    char err[SLM_ERR_LEN];
    slm_sample_params p = slm_sample_params_default();
    assert_true(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    assert_true(p.repeat_penalty == 1.0f && p.repeat_last_n == 64);
#define BAD(field, value, status)                                            \
    do {                                                                     \
        slm_sample_params q = slm_sample_params_default();                   \
        q.field = value;                                                     \
        assert_int_equal(slm_sample_create(&q, 10, &s, err), status);        \
        assert_null(s);                                                      \
        assert_non_null(strstr(err, #field));                                \
    } while (0)
    BAD(temperature, -0.1f, SLM_ERR_INVALID_ARG);
    BAD(temperature, NAN, SLM_ERR_INVALID_ARG);
    BAD(top_k, -1, SLM_ERR_INVALID_ARG);
    BAD(top_p, 0.0f, SLM_ERR_INVALID_ARG);
    BAD(top_p, 1.01f, SLM_ERR_INVALID_ARG);
    BAD(min_p, -0.5f, SLM_ERR_INVALID_ARG);
    BAD(repeat_penalty, 0.0f, SLM_ERR_INVALID_ARG);
    BAD(repeat_last_n, -1, SLM_ERR_INVALID_ARG);
    BAD(repeat_last_n, SLM_SAMPLE_MAX_LAST_N + 1, SLM_ERR_LIMIT);
    BAD(frequency_penalty, INFINITY, SLM_ERR_INVALID_ARG);
    BAD(presence_penalty, NAN, SLM_ERR_INVALID_ARG);
    BAD(n_probs, SLM_SAMPLE_MAX_PROBS + 1, SLM_ERR_LIMIT);
#undef BAD
    slm_sample_bias b = {10, 1.0f};
    p.bias = &b;
    p.n_bias = 1;
    assert_int_equal(slm_sample_create(&p, 10, &s, err), SLM_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "bias"));
    p.n_bias = SLM_SAMPLE_MAX_BIAS + 1;
    assert_int_equal(slm_sample_create(&p, 10, &s, err), SLM_ERR_LIMIT);
    p = slm_sample_params_default();
    assert_int_equal(slm_sample_create(&p, 0, &s, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_sample_create(&p, SLM_SAMPLE_MAX_VOCAB + 1, &s, err), SLM_ERR_LIMIT);
    s = make(&p, 10);
    float l[11] = {0};
    slm_sample_out o;
    assert_int_equal(slm_sample_next(s, l, 11, NULL, &o, err), SLM_ERR_INVALID_ARG);
    slm_sample_destroy(s);
    slm_sample_destroy(NULL);
}

/* After creation a step allocates nothing: an armed allocation failure never fires. */
static void test_steps_allocation_free(void **state) {
    (void)state;
    enum { N = 3000 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = sinf((float)i * 0.37f) * 3.0f;
    static uint32_t allowed[SLM_SAMPLE_MASK_WORDS(N)];
    memset(allowed, 0x55, sizeof allowed);
    const float temps[2] = {0.0f, 0.9f};
    const int32_t ks[3] = {0, 40, 2000};
    for (int t = 0; t < 2; t++) {
        for (int k = 0; k < 3; k++) {
            slm_sample_params p = slm_sample_params_default();
            p.temperature = temps[t];
            p.top_k = ks[k];
            p.repeat_penalty = 1.1f;
            p.n_probs = 5;
            slm_sampler *s = make(&p, N);
            for (int step = 0; step < 3; step++) {
                slm_sample_out o;
                slm_fault_arm(1);
                assert_int_equal(slm_sample_next(s, l, N, step == 2 ? allowed : NULL, &o, NULL), SLM_OK);
                assert_int_equal(slm_sample_accept(s, &o.id, 1, NULL), SLM_OK);
                assert_false(slm_fault_fired());
                slm_fault_arm(0);
            }
            slm_sample_destroy(s);
        }
    }
    slm_sample_stop *d = NULL;
    const char *st[] = {"<|im_end|>", "\n\n"};
    assert_int_equal(slm_sample_stop_create(st, 2, &d, NULL), SLM_OK);
    slm_fault_arm(1);
    for (int i = 0; i < 200; i++) {
        slm_sample_stop_out o;
        assert_int_equal(slm_sample_stop_feed(d, "token <|im_", 11, &o, NULL), SLM_OK);
    }
    assert_false(slm_fault_fired());
    slm_fault_arm(0);
    slm_sample_stop_destroy(d);
}

static void test_create_oom(void **state) {
    (void)state;
    slm_sample_bias b = {1, 1.0f};
    slm_sample_params p = slm_sample_params_default();
    p.repeat_penalty = 1.2f;
    p.bias = &b;
    p.n_bias = 1;
    for (long n = 1;; n++) {
        slm_sampler *s = NULL;
        slm_fault_arm(n);
        slm_status st = slm_sample_create(&p, 100, &s, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_sample_destroy(s);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(s);
    }
}

/* ---- stop strings ----------------------------------------------------------------------------------------- */

typedef struct stop_run {
    char text[512];  /* everything emitted, flush included */
    size_t len;
    int32_t matched;
} stop_run;

/* Feed text cut at the given positions (cuts ascending, < len) and collect the output,
 * checking the hold-back bound at every step. */
static void feed_cuts(slm_sample_stop *d, const char *text, size_t len, const size_t *cuts, size_t n_cuts,
                      size_t max_stop, stop_run *r) {
    slm_sample_stop_reset(d);
    r->len = 0;
    r->matched = -1;
    size_t at = 0;
    for (size_t c = 0; c <= n_cuts && r->matched < 0; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        slm_sample_stop_out o;
        assert_int_equal(slm_sample_stop_feed(d, text + at, end - at, &o, NULL), SLM_OK);
        memcpy(r->text + r->len, o.text ? o.text : "", o.len);
        r->len += o.len;
        r->matched = o.matched;
        at = end;
        if (r->matched < 0) assert_true(at - r->len < max_stop + 3); /* bounded hold-back */
        assert_memory_equal(r->text, text, r->len); /* output is always a prefix of input */
    }
    if (r->matched < 0) {
        slm_sample_stop_out o;
        slm_sample_stop_flush(d, &o);
        memcpy(r->text + r->len, o.text ? o.text : "", o.len);
        r->len += o.len;
    }
}

/* Every way to cut text into 1, 2 and 3 pieces, and byte by byte, gives the same result. */
static void check_all_splits(const char *const *stops, size_t n_stops, const char *text, const char *want,
                             int32_t want_matched) {
    slm_sample_stop *d = NULL;
    assert_int_equal(slm_sample_stop_create(stops, n_stops, &d, NULL), SLM_OK);
    size_t max_stop = 0;
    for (size_t i = 0; i < n_stops; i++) max_stop = strlen(stops[i]) > max_stop ? strlen(stops[i]) : max_stop;
    const size_t len = strlen(text), wl = strlen(want);
    stop_run r;
    feed_cuts(d, text, len, NULL, 0, max_stop, &r);
    assert_int_equal(r.matched, want_matched);
    assert_int_equal(r.len, wl);
    assert_memory_equal(r.text, want, wl);
    for (size_t i = 1; i < len; i++) {
        for (size_t j = i; j < len; j++) {
            size_t cuts[2] = {i, j};
            feed_cuts(d, text, len, cuts, i == j ? 1 : 2, max_stop, &r);
            if (r.matched != want_matched || r.len != wl)
                fprintf(stderr, "text \"%s\" cut %zu %zu: matched %d, out \"%.*s\"\n", text, i, j, (int)r.matched,
                        (int)r.len, r.text);
            assert_int_equal(r.matched, want_matched);
            assert_int_equal(r.len, wl);
            assert_memory_equal(r.text, want, wl);
        }
    }
    size_t bytes[256];
    assert_true(len <= 256);
    for (size_t i = 1; i < len; i++) bytes[i - 1] = i;
    feed_cuts(d, text, len, bytes, len ? len - 1 : 0, max_stop, &r);
    assert_int_equal(r.matched, want_matched);
    assert_int_equal(r.len, wl);
    assert_memory_equal(r.text, want, wl);
    slm_sample_stop_destroy(d);
}

static void test_stop_every_split(void **state) {
    (void)state;
    const char *im[] = {"<|im_end|>"};
    check_all_splits(im, 1, "Hello there<|im_end|>ignored", "Hello there", 0);
    check_all_splits(im, 1, "no stop <|im_en here <|im_", "no stop <|im_en here <|im_", -1);
    check_all_splits(im, 1, "<|im_end|>", "", 0);
    const char *two[] = {"END", "ND!"};
    check_all_splits(two, 2, "abcEND!", "abc", 0);    /* earliest wins */
    check_all_splits(two, 2, "abcEN ND!x", "abcEN ", 1);
    const char *same[] = {"xy", "xyz"};
    check_all_splits(same, 2, "12xyz", "12", 0);      /* the shorter completes first */
    const char *rep[] = {"aab"};
    check_all_splits(rep, 1, "aaaaab!", "aaa", 0);    /* overlapping self-prefixes */
    check_all_splits(rep, 1, "aaaaa", "aaaaa", -1);
    check_all_splits(NULL, 0, "plain text", "plain text", -1);
    const char *utf[] = {"\xc3\xa9t\xc3\xa9"}; /* "été" */
    check_all_splits(utf, 1, "caf\xc3\xa9 \xe2\x82\xac \xc3\xa9t\xc3\xa9 x", "caf\xc3\xa9 \xe2\x82\xac ", 0);
}

static void test_stop_utf8_and_state(void **state) {
    (void)state;
    slm_sample_stop *d = NULL;
    const char *st[] = {"STOP"};
    slm_sample_stop_out o;
    /* two stop strings complete at the same position in one piece: the first listed wins
     * (streamed in smaller pieces, "xy" would complete first: that is inherent) */
    const char *same[] = {"xyz", "xy"};
    assert_int_equal(slm_sample_stop_create(same, 2, &d, NULL), SLM_OK);
    assert_int_equal(slm_sample_stop_feed(d, "12xyz", 5, &o, NULL), SLM_OK);
    assert_int_equal(o.matched, 0);
    assert_int_equal(o.len, 2);
    slm_sample_stop_destroy(d);
    assert_int_equal(slm_sample_stop_create(st, 1, &d, NULL), SLM_OK);
    /* "€" = e2 82 ac arrives in pieces: nothing of it is released until it is whole */
    assert_int_equal(slm_sample_stop_feed(d, "a\xe2", 2, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 1);
    assert_int_equal(slm_sample_stop_feed(d, "\x82", 1, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 0);
    assert_int_equal(slm_sample_stop_feed(d, "\xac", 1, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 3);
    assert_memory_equal(o.text, "\xe2\x82\xac", 3);
    /* a held "ST" is released when the next byte rules STOP out */
    assert_int_equal(slm_sample_stop_feed(d, "ST", 2, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 0);
    assert_int_equal(slm_sample_stop_feed(d, "x", 1, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 3);
    assert_memory_equal(o.text, "STx", 3);
    /* invalid bytes are never held */
    assert_int_equal(slm_sample_stop_feed(d, "\x80\xff", 2, &o, NULL), SLM_OK);
    assert_int_equal(o.len, 2);
    /* a match ends the stream */
    assert_int_equal(slm_sample_stop_feed(d, "zSTOP", 5, &o, NULL), SLM_OK);
    assert_int_equal(o.matched, 0);
    assert_int_equal(o.len, 1);
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_sample_stop_feed(d, "y", 1, &o, err), SLM_ERR_STATE);
    slm_sample_stop_flush(d, &o);
    assert_int_equal(o.len, 0);
    assert_int_equal(o.matched, 0);
    slm_sample_stop_reset(d);
    /* a long piece grows the buffer */
    static char big[5000];
    memset(big, 'q', sizeof big);
    assert_int_equal(slm_sample_stop_feed(d, big, sizeof big, &o, NULL), SLM_OK);
    assert_int_equal(o.len, sizeof big);
    assert_int_equal(slm_sample_stop_feed(d, big, SLM_SAMPLE_STOP_MAX_PIECE + 1, &o, err), SLM_ERR_LIMIT);
    slm_sample_stop_destroy(d);

    /* creation limits */
    const char *empty[] = {""};
    assert_int_equal(slm_sample_stop_create(empty, 1, &d, err), SLM_ERR_INVALID_ARG);
    static char longs[SLM_SAMPLE_STOP_MAX_LEN + 2];
    memset(longs, 'a', sizeof longs - 1);
    const char *lp[] = {longs};
    assert_int_equal(slm_sample_stop_create(lp, 1, &d, err), SLM_ERR_LIMIT);
    const char *many[SLM_SAMPLE_STOP_MAX + 1];
    for (int i = 0; i <= SLM_SAMPLE_STOP_MAX; i++) many[i] = "x";
    assert_int_equal(slm_sample_stop_create(many, SLM_SAMPLE_STOP_MAX + 1, &d, err), SLM_ERR_LIMIT);
    assert_null(d);
    slm_sample_stop_destroy(NULL);

    /* allocation failures unwind */
    for (long n = 1;; n++) {
        slm_fault_arm(n);
        slm_status stt = slm_sample_stop_create(many, 3, &d, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(stt, SLM_OK);
            slm_sample_stop_destroy(d);
            break;
        }
        assert_int_equal(stt, SLM_ERR_NOMEM);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_argmax_lowest_id),
        cmocka_unit_test(test_temperature_matches_softmax),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_k_large),
        cmocka_unit_test(test_vm_exp),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_top_p_large_flat),
        cmocka_unit_test(test_top_p_vs_sorted),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_penalties_match_llama_cpp),
        cmocka_unit_test(test_logit_bias),
        cmocka_unit_test(test_logprobs_entropy_vs_float64),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_params_checked),
        cmocka_unit_test(test_steps_allocation_free),
        cmocka_unit_test(test_create_oom),
        cmocka_unit_test(test_stop_every_split),
        cmocka_unit_test(test_stop_utf8_and_state),
    };
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER")); /* one test by hand */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
