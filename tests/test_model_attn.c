/*
 * tests/test_model_attn.c: the tiled attention (model/attn.c) and its kernels
 * (model/attn_kern.h, model/vexp.h):
 *   - the polynomial exp against libm, its edges, and the AVX2 lanes equal to the scalar one;
 *   - the AVX2 block kernels against the scalar specification, and a row's results the same
 *     bits whatever other rows a kernel call blocks it with;
 *   - attention against a plain double-precision softmax(q K^T / sqrt(d)) V over the cells
 *     each token sees, for F16, F32 and Q8_0 caches, several head shapes (GQA, head sizes
 *     that are and are not multiples of 8), two sequences and a cache whose positions are
 *     not in cell order, with each kernel set;
 *   - the invariant the engine relies on: a token's output is the same bits whether it is
 *     attended alone or in a batch, whatever the thread split, and wherever its sequence's
 *     cells are in the cache.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "kv/kv.h"
#include "model/attn.h"
#include "model/attn_kern.h"
#include "model/vexp.h"
#include "quant/kernels.h"

/* exp: largest relative difference from libm's expf over the normal range (Cephes's
 * polynomial is ~1 ulp; 2 ulps of float leave room for the reduction's rounding). */
#define VEXP_REL_TOL 2.4e-7
/* AVX2 vs scalar block kernels: FMA and lane order only, on O(1) values summed over <= 128
 * terms. */
#define KERN_TOL 1e-4
/* attention vs the double-precision definition, outputs are O(1): f32 accumulation over
 * ~150 cells and head_dim products (measured: <= 3e-7). */
#define ATTN_TOL 2e-6

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float uniform_pm1(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}

static bool have_avx2(void) { return slm_quant_kernels_isa(SLM_QUANT_ISA_AVX2) != NULL && slm_attn_kern_avx2(); }

/* ---- exp ------------------------------------------------------------------------------------ */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_VEXP8 1
/* y[8] = slm_vexp8(x[8]), callable from baseline code (run only when the CPU has AVX2). */
__attribute__((target("avx2,fma,f16c"))) static void vexp8_array(const float *x, float *y) {
    _mm256_storeu_ps(y, slm_vexp8(_mm256_loadu_ps(x)));
}
#else
#define HAVE_VEXP8 0
#endif

static void test_vexp(void **state) {
    (void)state;
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
        const double ref = exp((double)x), rel = fabs(slm_vexp(x) - ref) / ref;
        if (rel > worst) worst = rel;
    }
    printf("vexp: largest relative error %.3g\n", worst);
    assert_true(worst < VEXP_REL_TOL);
    assert_true(slm_vexp(0.0f) == 1.0f);
    assert_true(slm_vexp(-INFINITY) == 0.0f && slm_vexp(-100.0f) == 0.0f);
    assert_true(isinf(slm_vexp(100.0f)) && isinf(slm_vexp(INFINITY)));
    assert_true(isnan(slm_vexp(NAN)));
#if HAVE_VEXP8
    if (!have_avx2()) return;
    float xs[8], got[8];
    for (int i = -20000; i < 20000; i += 8) {
        for (int j = 0; j < 8; j++) xs[j] = (float)(i + j) * 0.0049f;
        xs[i & 7] = (i & 64) ? -INFINITY : xs[i & 7]; /* edges inside lanes too */
        if (i % 1024 == 0) xs[3] = NAN;
        vexp8_array(xs, got);
        for (int j = 0; j < 8; j++) {
            const float want = slm_vexp(xs[j]);
            assert_true(memcmp(&got[j], &want, sizeof want) == 0 || (isnan(got[j]) && isnan(want)));
        }
    }
#endif
}

/* ---- block kernels ---------------------------------------------------------------------------- */

static void test_kernels_avx2_vs_scalar(void **state) {
    (void)state;
    if (!have_avx2()) skip();
    const slm_attn_kern *sc = &slm_attn_kern_scalar, *av = slm_attn_kern_avx2();
    enum { HD = 96 }; /* a 64 chunk and a 32 tail in pv */
    static uint16_t rows_k[SLM_ATTN_BLOCK][HD], rows_v[SLM_ATTN_BLOCK][HD];
    const uint16_t *kp[SLM_ATTN_BLOCK], *vp[SLM_ATTN_BLOCK];
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        for (int d = 0; d < HD; d++) rows_k[c][d] = slm_f32_to_f16(uniform_pm1()), rows_v[c][d] = slm_f32_to_f16(uniform_pm1());
        kp[c] = c % 7 == 3 ? NULL : rows_k[c]; /* some absent rows: zeros */
        vp[c] = c % 7 == 3 ? NULL : rows_v[c];
    }
    static float kt_s[HD * SLM_ATTN_BLOCK], kt_a[HD * SLM_ATTN_BLOCK], v_s[SLM_ATTN_BLOCK * HD], v_a[SLM_ATTN_BLOCK * HD];
    /* part of a block: the cells from nc on are left as they are */
    memset(kt_s, 0xFF, sizeof kt_s), memset(kt_a, 0xFF, sizeof kt_a), memset(v_s, 0xFF, sizeof v_s), memset(v_a, 0xFF, sizeof v_a);
    sc->load_kt_f16(kp, 24, HD, kt_s);
    av->load_kt_f16(kp, 24, HD, kt_a);
    sc->load_v_f16(vp, 24, HD, v_s);
    av->load_v_f16(vp, 24, HD, v_a);
    assert_memory_equal(kt_s, kt_a, sizeof kt_s);
    assert_memory_equal(v_s, v_a, sizeof v_s);
    uint32_t untouched;
    memcpy(&untouched, &kt_a[3 * SLM_ATTN_BLOCK + 24], sizeof untouched);
    assert_true(untouched == 0xFFFFFFFFu && kt_a[3 * SLM_ATTN_BLOCK + 23] == slm_f16_to_f32(rows_k[23][3]));
    memcpy(&untouched, &v_a[24 * HD], sizeof untouched);
    assert_true(untouched == 0xFFFFFFFFu);
    sc->load_kt_f16(kp, SLM_ATTN_BLOCK, HD, kt_s);
    av->load_kt_f16(kp, SLM_ATTN_BLOCK, HD, kt_a);
    sc->load_v_f16(vp, SLM_ATTN_BLOCK, HD, v_s);
    av->load_v_f16(vp, SLM_ATTN_BLOCK, HD, v_a);
    assert_memory_equal(kt_s, kt_a, sizeof kt_s); /* conversions are exact */
    assert_memory_equal(v_s, v_a, sizeof v_s);
    assert_true(kt_s[5 * SLM_ATTN_BLOCK + 9] == slm_f16_to_f32(rows_k[9][5]) && kt_s[2 * SLM_ATTN_BLOCK + 3] == 0.0f);

    float q[HD], s_s[SLM_ATTN_BLOCK], s_a[SLM_ATTN_BLOCK], acc_s[HD], acc_a[HD], max_s, max_a;
    for (int d = 0; d < HD; d++) q[d] = uniform_pm1() * 0.3f, acc_s[d] = acc_a[d] = uniform_pm1();
    const uint64_t vis = 0xF0F0FFFF0000FFF7ull;
    sc->scores(1, HD, q, kt_s, &vis, s_s, &max_s);
    av->scores(1, HD, q, kt_s, &vis, s_a, &max_a);
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) {
        const bool seen = vis >> c & 1;
        assert_true(seen ? fabsf(s_s[c] - s_a[c]) < KERN_TOL : (s_s[c] == -INFINITY && s_a[c] == -INFINITY));
    }
    assert_true(fabsf(max_s - max_a) < KERN_TOL);
    memcpy(s_a, s_s, sizeof s_a); /* the same inputs for the rest */
    const float sum_s = sc->exp_sum(s_s, max_s), sum_a = av->exp_sum(s_a, max_s);
    assert_memory_equal(s_s, s_a, sizeof s_s); /* exp: the same bits */
    assert_true(fabsf(sum_s - sum_a) < KERN_TOL);
    for (int c = 0; c < SLM_ATTN_BLOCK; c++) assert_true((vis >> c & 1) ? s_s[c] > 0.0f : s_s[c] == 0.0f);
    for (float alpha = 1.0f; alpha > 0.2f; alpha -= 0.35f) {
        sc->pv(1, HD, s_s, v_s, &alpha, acc_s);
        av->pv(1, HD, s_s, v_s, &alpha, acc_a);
        for (int d = 0; d < HD; d++) assert_true(fabsf(acc_s[d] - acc_a[d]) < KERN_TOL);
    }
    assert_true(slm_attn_kern_pick(SLM_QUANT_ISA_AVX2, 60) == sc && slm_attn_kern_pick(SLM_QUANT_ISA_AVX2, 64) == av);
    assert_true(slm_attn_kern_pick(SLM_QUANT_ISA_SCALAR, 64) == sc);
}

/* A row's scores and weighted sums are the same bits whether a kernel call takes it alone
 * or with 1..6 partners (the AVX2 set blocks rows 3 or 2 at a time in registers), for head
 * sizes with and without a 32-dimension tail, with weights that are zero on prefixes and
 * tails (causal masks) and at scattered cells (exp underflow) that differ between rows;
 * and both sets agree within KERN_TOL. */
static void test_kernels_blocked_rows(void **state) {
    (void)state;
    enum { MAX_ROWS = 7, MAX_HD = 128 };
    static float kt[MAX_HD * SLM_ATTN_BLOCK], v[SLM_ATTN_BLOCK * MAX_HD];
    static float q[MAX_ROWS * MAX_HD], s_all[MAX_ROWS * SLM_ATTN_BLOCK], s_one[SLM_ATTN_BLOCK];
    static float s_ref[MAX_ROWS * SLM_ATTN_BLOCK], acc0[MAX_ROWS * MAX_HD], acc_all[MAX_ROWS * MAX_HD];
    static float acc_one[MAX_HD], acc_ref[MAX_ROWS * MAX_HD];
    const int64_t hds[] = {64, 40, 96, 128, 8};
    const slm_attn_kern *sets[] = {&slm_attn_kern_scalar, slm_attn_kern_avx2()};
    for (size_t si = 0; si < 2; si++) {
        const slm_attn_kern *k = sets[si];
        if (si == 1 && !have_avx2()) break;
        for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++) {
            const int64_t hd = hds[hi];
            for (int64_t i = 0; i < hd * SLM_ATTN_BLOCK; i++) kt[i] = uniform_pm1(), v[i] = uniform_pm1();
            for (int nr = 1; nr <= MAX_ROWS; nr++) {
                uint64_t vis[MAX_ROWS];
                float max_all[MAX_ROWS], max_one, max_ref[MAX_ROWS], alpha[MAX_ROWS];
                for (int r = 0; r < nr; r++) {
                    const int n = (int)((rng >> 7) % SLM_ATTN_BLOCK) + 1; /* a causal prefix */
                    uniform_pm1();
                    vis[r] = n == SLM_ATTN_BLOCK ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
                    if (r % 3 == 2) vis[r] &= 0xF7FFFFFFFFFF7FF7ull; /* holes: the mixed cells are not a tail */
                    alpha[r] = r % 2 ? 1.0f : 0.25f + 0.5f * (float)r / MAX_ROWS;
                    for (int64_t d = 0; d < hd; d++) q[r * hd + d] = uniform_pm1() * 0.5f;
                    for (int64_t d = 0; d < hd; d++) acc0[r * hd + d] = uniform_pm1();
                }
                k->scores(nr, hd, q, kt, vis, s_all, max_all);
                for (int r = 0; r < nr; r++) {
                    k->scores(1, hd, q + r * hd, kt, &vis[r], s_one, &max_one);
                    assert_memory_equal(s_one, s_all + r * SLM_ATTN_BLOCK, sizeof s_one);
                    assert_memory_equal(&max_one, &max_all[r], sizeof max_one);
                }
                slm_attn_kern_scalar.scores(nr, hd, q, kt, vis, s_ref, max_ref);
                for (int i = 0; i < nr * SLM_ATTN_BLOCK; i++)
                    assert_true(s_ref[i] == s_all[i] || fabsf(s_ref[i] - s_all[i]) < KERN_TOL);
                for (int r = 0; r < nr; r++) {
                    float *p = s_all + r * SLM_ATTN_BLOCK;
                    k->exp_sum(p, max_all[r]);
                    if (r % 4 == 1) p[5] = p[6] = 0.0f; /* underflowed weights inside the prefix */
                }
                memcpy(acc_all, acc0, sizeof acc_all);
                memcpy(acc_ref, acc0, sizeof acc_ref);
                k->pv(nr, hd, s_all, v, alpha, acc_all);
                slm_attn_kern_scalar.pv(nr, hd, s_all, v, alpha, acc_ref);
                for (int r = 0; r < nr; r++) {
                    memcpy(acc_one, acc0 + r * hd, (size_t)hd * sizeof *acc_one);
                    k->pv(1, hd, s_all + r * SLM_ATTN_BLOCK, v, &alpha[r], acc_one);
                    assert_memory_equal(acc_one, acc_all + r * hd, (size_t)hd * sizeof *acc_one);
                    for (int64_t d = 0; d < hd; d++) assert_true(fabsf(acc_ref[r * hd + d] - acc_one[d]) < KERN_TOL);
                }
            }
        }
    }
}

/* ---- attention -------------------------------------------------------------------------------- */

#define N_TOK 150 /* tokens per case: more than two 64-cell blocks */

typedef struct fixture {
    slm_hparams hp;
    slm_kv *kv;
    int32_t n;          /* tokens in the batch */
    int32_t pos[N_TOK], seq[N_TOK];
    float *q, *out;     /* [n][n_head * head_dim] */
} fixture;

/* A cache of two sequences: sequence 0 positions 0..89 interleaved with sequence 1 positions
 * 0..39, then sequence 0's positions 20..29 removed and 90..109 stored (some into the freed,
 * lower cells: its positions are then not in cell order). The batch is every stored token. */
static void fixture_make(fixture *f, int32_t n_head, int32_t n_head_kv, int32_t hd, slm_type type) {
    memset(f, 0, sizeof *f);
    f->hp = (slm_hparams){.n_head = n_head, .n_head_kv = n_head_kv, .head_dim = hd, .n_embd = n_head * hd,
                          .n_layer = 1, .n_rot = hd};
    const int64_t nkv = (int64_t)n_head_kv * hd;
    const slm_kv_params kp = {.type = type, .n_cells = 160, .n_layer = 1, .n_embd_kv = nkv, .n_seq_max = 2};
    assert_int_equal(slm_kv_create(&kp, &f->kv, NULL), SLM_OK);
    float *k = malloc((size_t)nkv * sizeof *k), *v = malloc((size_t)nkv * sizeof *v);
    assert_non_null(k);
    assert_non_null(v);
    int32_t p0 = 0, p1 = 0;
    for (int i = 0; i < 130; i++) { /* two of sequence 0, then one of 1, while 1 lasts */
        const int32_t s = (i % 3 == 2 && p1 < 40) ? 1 : 0, p = s ? p1++ : p0++;
        int32_t cell;
        assert_int_equal(slm_kv_alloc(f->kv, 1, &p, &s, &cell, NULL), SLM_OK);
        for (int64_t j = 0; j < nkv; j++) k[j] = uniform_pm1(), v[j] = uniform_pm1();
        slm_kv_store(f->kv, 0, cell, k, v);
    }
    assert_int_equal(p0, 90);
    assert_int_equal(slm_kv_seq_rm(f->kv, 0, 20, 30, NULL), SLM_OK);
    for (int32_t p = 90, s = 0, cell; p < 110; p++) {
        assert_int_equal(slm_kv_alloc(f->kv, 1, &p, &s, &cell, NULL), SLM_OK);
        for (int64_t j = 0; j < nkv; j++) k[j] = uniform_pm1() * 2.0f, v[j] = uniform_pm1();
        slm_kv_store(f->kv, 0, cell, k, v);
    }
    free(k), free(v);
    /* the batch: sequence 1's tokens interleaved with sequence 0's, as a scheduler may send */
    const uint64_t *masks = slm_kv_masks(f->kv);
    const int32_t *cpos = slm_kv_positions(f->kv);
    for (int64_t c = 0; c < slm_kv_used_end(f->kv); c++)
        for (int32_t s = 0; s < 2; s++)
            if (masks[c] >> s & 1) f->pos[f->n] = cpos[c], f->seq[f->n] = s, f->n++;
    assert_true(f->n == N_TOK - 10);
    const size_t nq = (size_t)f->n * (size_t)n_head * (size_t)hd;
    f->q = malloc(nq * sizeof *f->q);
    f->out = malloc(nq * sizeof *f->out);
    assert_non_null(f->q);
    assert_non_null(f->out);
    for (size_t i = 0; i < nq; i++) f->q[i] = uniform_pm1() * 1.5f;
}

static void fixture_free(fixture *f) {
    slm_kv_destroy(f->kv);
    free(f->q), free(f->out);
}

/* Attention of tokens [t0, t0 + n) with the kernels of isa, the work cut into nth parts run
 * one after another (the split, not the concurrency, is what could change results), into
 * f->out rows t0... */
static void attend(fixture *f, slm_attn *a, slm_quant_isa isa, int32_t t0, int32_t n, int nth) {
    const size_t row = (size_t)f->hp.n_head * (size_t)f->hp.head_dim;
    const slm_attn_args g = {.hp = &f->hp, .kv = f->kv, .il = 0, .n = n, .pos = f->pos + t0, .seq = f->seq + t0,
                             .q = f->q + (size_t)t0 * row, .out = f->out + (size_t)t0 * row};
    for (int i = 0; i < nth; i++) slm_attn_run_isa(a, &g, isa, i, nth);
}

/* softmax(q K^T / sqrt(hd)) V in double over the cells token t sees, K/V dequantized. */
static double max_diff_from_definition(const fixture *f) {
    const slm_hparams *hp = &f->hp;
    const int64_t hd = hp->head_dim, nkv = (int64_t)hp->n_head_kv * hd, n_cells = slm_kv_used_end(f->kv);
    const slm_to_float_fn to_float = slm_type_traits_of(slm_kv_type(f->kv))->to_float;
    float *kr = malloc((size_t)nkv * sizeof *kr), *vr = malloc((size_t)nkv * sizeof *vr);
    double *w = malloc((size_t)n_cells * sizeof *w), *o = malloc((size_t)hd * sizeof *o), worst = 0;
    assert_true(kr && vr && w && o);
    for (int32_t t = 0; t < f->n; t++)
        for (int32_t h = 0; h < hp->n_head; h++) {
            const int32_t hkv = h / (hp->n_head / hp->n_head_kv);
            const float *q = f->q + ((size_t)t * (size_t)hp->n_head + (size_t)h) * (size_t)hd;
            double max = -INFINITY, sum = 0;
            for (int64_t c = 0; c < n_cells; c++) {
                w[c] = -INFINITY;
                if (!slm_kv_visible(slm_kv_masks(f->kv), slm_kv_positions(f->kv), c, f->seq[t], f->pos[t])) continue;
                to_float(slm_kv_k_row(f->kv, 0, c), kr, nkv);
                double dot = 0;
                for (int64_t d = 0; d < hd; d++) dot += (double)q[d] * kr[hkv * hd + d];
                w[c] = dot / sqrt((double)hd);
                if (w[c] > max) max = w[c];
            }
            for (int64_t d = 0; d < hd; d++) o[d] = 0;
            for (int64_t c = 0; c < n_cells; c++) {
                if (w[c] == -INFINITY) continue;
                const double e = exp(w[c] - max);
                sum += e;
                to_float(slm_kv_v_row(f->kv, 0, c), vr, nkv);
                for (int64_t d = 0; d < hd; d++) o[d] += e * vr[hkv * hd + d];
            }
            const float *got = f->out + ((size_t)t * (size_t)hp->n_head + (size_t)h) * (size_t)hd;
            for (int64_t d = 0; d < hd; d++) {
                const double diff = fabs(got[d] - o[d] / sum);
                if (diff > worst) worst = diff;
            }
        }
    free(kr), free(vr), free(w), free(o);
    return worst;
}

typedef struct attn_case {
    int32_t n_head, n_head_kv, hd;
    slm_type type;
} attn_case;

static const attn_case cases[] = {
    {6, 2, 64, SLM_TYPE_F16},  /* GQA 3, the AVX2 fast path */
    {6, 2, 64, SLM_TYPE_F32},
    {6, 2, 64, SLM_TYPE_Q8_0},
    {4, 4, 40, SLM_TYPE_F16},  /* no GQA; a head size that is not a block */
    {8, 1, 128, SLM_TYPE_F16}, /* GQA 8, two 64-chunks per head */
    {14, 2, 64, SLM_TYPE_F16}, /* GQA 7 (Qwen2.5-0.5B): runs of rows blocked 3 + 2 + 2 and ragged */
    {3, 1, 20, SLM_TYPE_F32},  /* not a multiple of 8: the scalar kernels on every ISA */
};

static void test_attention(void **state) {
    (void)state;
    const slm_quant_isa isas[] = {SLM_QUANT_ISA_SCALAR, SLM_QUANT_ISA_AVX2};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const attn_case *k = &cases[ci];
        fixture f;
        fixture_make(&f, k->n_head, k->n_head_kv, k->hd, k->type);
        slm_attn *a = NULL;
        assert_int_equal(slm_attn_create(&f.hp, 160, k->type, 3, &a, NULL), SLM_OK);
        const size_t bytes = (size_t)f.n * (size_t)k->n_head * (size_t)k->hd * sizeof(float);
        float *batch = malloc(bytes);
        assert_non_null(batch);
        for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
            attend(&f, a, isas[ii], 0, f.n, 1);
            const double diff = max_diff_from_definition(&f);
            printf("heads %d/%d x %d %s %s: largest difference from the definition %.2g\n", k->n_head, k->n_head_kv,
                   k->hd, slm_type_name(k->type), slm_quant_isa_name(isas[ii]), diff);
            assert_true(diff < ATTN_TOL);
            memcpy(batch, f.out, bytes);
            attend(&f, a, isas[ii], 0, f.n, 3); /* split in three */
            assert_memory_equal(f.out, batch, bytes);
            attend(&f, a, isas[ii], 0, f.n, 2);
            assert_memory_equal(f.out, batch, bytes);
            for (int32_t t = 0; t < f.n; t++) attend(&f, a, isas[ii], t, 1, 1); /* token by token */
            assert_memory_equal(f.out, batch, bytes);
            for (int32_t t = 0; t < f.n; t += 7) attend(&f, a, isas[ii], t, f.n - t < 7 ? f.n - t : 7, 2);
            assert_memory_equal(f.out, batch, bytes);
        }
        free(batch);
        slm_attn_destroy(a);
        fixture_free(&f);
    }
}

/* Value j of position p's K (kind 0) or V (kind 1) row: the same whatever cell holds it. */
static float kv_value(int32_t p, int64_t j, int kind) {
    uint32_t h = (uint32_t)p * 2654435761u ^ (uint32_t)j * 2246822519u ^ (uint32_t)kind * 3266489917u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    return (float)(h >> 8) / 8388608.0f - 1.0f;
}

/* Store positions [p0, p1) of sequence s. */
static void store_positions(slm_kv *kv, int32_t s, int32_t p0, int32_t p1, int64_t nkv) {
    float k[256], v[256];
    assert_true(nkv <= 256);
    for (int32_t p = p0, cell; p < p1; p++) {
        assert_int_equal(slm_kv_alloc(kv, 1, &p, &s, &cell, NULL), SLM_OK);
        for (int64_t j = 0; j < nkv; j++) k[j] = kv_value(p, j, 0), v[j] = kv_value(p, j, 1);
        slm_kv_store(kv, 0, cell, k, v);
    }
}

/* The same sequence (positions 0..109, the same K/V per position) in a fresh cache (cell =
 * position) and in a fragmented one (positions 50..109 in cells below those of 0..49) gives
 * the same bits, in one batch and token by token: the arithmetic follows positions, not
 * cells. */
static void test_attention_layout(void **state) {
    (void)state;
    enum { N = 110, HEADS = 6, KV_HEADS = 2, HD = 64 };
    const slm_hparams hp = {.n_head = HEADS, .n_head_kv = KV_HEADS, .head_dim = HD, .n_embd = HEADS * HD, .n_layer = 1, .n_rot = HD};
    const int64_t nkv = KV_HEADS * HD, row = HEADS * HD;
    const slm_kv_params kp = {.type = SLM_TYPE_F16, .n_cells = 128, .n_layer = 1, .n_embd_kv = nkv, .n_seq_max = 2};
    slm_kv *fresh = NULL, *frag = NULL;
    assert_int_equal(slm_kv_create(&kp, &fresh, NULL), SLM_OK);
    assert_int_equal(slm_kv_create(&kp, &frag, NULL), SLM_OK);
    store_positions(fresh, 0, 0, N, nkv);
    store_positions(frag, 1, 0, 60, nkv); /* filler in cells 0..59 */
    store_positions(frag, 0, 0, 50, nkv); /* cells 60..109 */
    assert_int_equal(slm_kv_seq_rm(frag, 1, -1, -1, NULL), SLM_OK);
    store_positions(frag, 0, 50, N, nkv); /* cells 0..59 */
    assert_true(slm_kv_positions(frag)[0] == 50 && slm_kv_positions(frag)[60] == 0);
    static int32_t pos[N], seq[N];
    static float q[N * HEADS * HD], out_fresh[N * HEADS * HD], out_frag[N * HEADS * HD];
    for (int32_t t = 0; t < N; t++) pos[t] = t, seq[t] = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = uniform_pm1();
    slm_attn *a = NULL;
    assert_int_equal(slm_attn_create(&hp, 128, SLM_TYPE_F16, 2, &a, NULL), SLM_OK);
    const slm_quant_isa isas[] = {SLM_QUANT_ISA_SCALAR, SLM_QUANT_ISA_AVX2};
    for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
        slm_attn_args g = {.hp = &hp, .kv = fresh, .il = 0, .n = N, .pos = pos, .seq = seq, .q = q, .out = out_fresh};
        for (int i = 0; i < 2; i++) slm_attn_run_isa(a, &g, isas[ii], i, 2);
        g.kv = frag, g.out = out_frag;
        for (int i = 0; i < 2; i++) slm_attn_run_isa(a, &g, isas[ii], i, 2);
        assert_memory_equal(out_fresh, out_frag, sizeof out_frag);
        memset(out_frag, 0, sizeof out_frag);
        for (int32_t t = 0; t < N; t++) {
            const slm_attn_args one = {.hp = &hp, .kv = frag, .il = 0, .n = 1, .pos = pos + t, .seq = seq + t,
                                       .q = q + t * row, .out = out_frag + t * row};
            slm_attn_run_isa(a, &one, isas[ii], 0, 1);
        }
        assert_memory_equal(out_fresh, out_frag, sizeof out_frag);
    }
    slm_attn_destroy(a);
    slm_kv_destroy(fresh);
    slm_kv_destroy(frag);
}

/* A token that sees no cell gets zeros (not NaN); the scratch's allocation failures are
 * reported. */
static void test_attention_edges(void **state) {
    (void)state;
    fixture f;
    fixture_make(&f, 2, 1, 64, SLM_TYPE_F16);
    slm_attn *a = NULL;
    assert_int_equal(slm_attn_create(&f.hp, 160, SLM_TYPE_F16, 1, &a, NULL), SLM_OK);
    f.pos[0] = 5, f.seq[0] = 1;
    assert_int_equal(slm_kv_seq_rm(f.kv, 1, -1, -1, NULL), SLM_OK); /* sequence 1 sees nothing now */
    attend(&f, a, SLM_QUANT_ISA_AVX2, 0, 1, 1);
    for (int i = 0; i < 2 * 64; i++) assert_true(f.out[i] == 0.0f);
    slm_attn_destroy(a);
    slm_attn_destroy(NULL);
    for (int fail = 1; fail <= 3; fail++) {
        slm_fault_arm(fail);
        char err[SLM_ERR_LEN];
        const slm_status st = slm_attn_create(&f.hp, 160, SLM_TYPE_F16, 2, &a, err);
        slm_fault_arm(0);
        if (st == SLM_OK) {
            slm_attn_destroy(a);
            continue;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(a);
    }
    fixture_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vexp),
        cmocka_unit_test(test_kernels_avx2_vs_scalar),
        cmocka_unit_test(test_kernels_blocked_rows),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_layout),
        cmocka_unit_test(test_attention_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
