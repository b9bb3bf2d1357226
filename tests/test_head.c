/* tests/test_head.c: task heads: CSV reader (every split, malformed input), features,
 * solver, calibration, data loading, training, prediction from threads, head files (round
 * trip, every flipped byte, every truncation, allocation failures). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "head/calib.h"
#include "head/csv.h"
#include "head/features.h"
#include "head/train.h"
#include "slmesh/head.h"

/* ---- CSV -------------------------------------------------------------------------------- */

/* Records flattened to "f1|f2|...\n" for comparison (fields with | or \n are escaped). */
typedef struct {
    char out[4096];
    size_t len;
} csv_sink;

static slm_status sink_record(void *ctx, size_t nfields, const char *const *fields, const size_t *lens,
                              size_t line, char *err) {
    csv_sink *s = ctx;
    for (size_t i = 0; i < nfields; i++) {
        assert_int_equal(strlen(fields[i]), lens[i]);
        s->len += (size_t)snprintf(s->out + s->len, sizeof s->out - s->len, "%s%s", i ? "|" : "", fields[i]);
    }
    s->len += (size_t)snprintf(s->out + s->len, sizeof s->out - s->len, "@%zu\n", line);
    return SLM_OK;
}

/* Feed doc in pieces of `step` bytes (0 = all at once, after a split at `cut`). */
static slm_status csv_run(const char *doc, size_t len, size_t cut, size_t step, csv_sink *s, char *err) {
    slm_csv *r = NULL;
    memset(s, 0, sizeof *s);
    slm_status st = slm_head_csv_create(&r, sink_record, s, err);
    assert_int_equal(st, SLM_OK);
    if (step) {
        for (size_t i = 0; st == SLM_OK && i < len; i += step)
            st = slm_head_csv_feed(r, doc + i, len - i < step ? len - i : step, err);
    } else {
        st = slm_head_csv_feed(r, doc, cut, err);
        if (st == SLM_OK) st = slm_head_csv_feed(r, doc + cut, len - cut, err);
    }
    if (st == SLM_OK) st = slm_head_csv_finish(r, err);
    slm_head_csv_destroy(r);
    return st;
}

static void csv_expect(const char *doc, slm_status want, const char *records) {
    size_t len = strlen(doc);
    char err[SLM_ERR_LEN];
    csv_sink s;
    /* every split point and byte-by-byte give the same outcome */
    for (size_t cut = 0; cut <= len; cut++) {
        slm_status st = csv_run(doc, len, cut, 0, &s, err);
        assert_int_equal(st, want);
        if (want == SLM_OK) assert_string_equal(s.out, records);
    }
    slm_status st = csv_run(doc, len, 0, 1, &s, err);
    assert_int_equal(st, want);
    if (want == SLM_OK) assert_string_equal(s.out, records);
}

static void test_csv_valid(void **state) {
    (void)state;
    csv_expect("text,label\nhello,greet\n", SLM_OK, "text|label@1\nhello|greet@2\n");
    csv_expect("a,b\r\nc,d", SLM_OK, "a|b@1\nc|d@2\n");                       /* CRLF, no final EOL */
    csv_expect("\xEF\xBB\xBFx,y\n1,2\n", SLM_OK, "x|y@1\n1|2@2\n");           /* BOM */
    csv_expect("\xEF\xBBx\n", SLM_OK, "\xEF\xBBx@1\n");                        /* BOM prefix is data */
    csv_expect("\"a,b\",\"say \"\"hi\"\"\"\n", SLM_OK, "a,b|say \"hi\"@1\n");  /* quotes */
    csv_expect("\"line1\nline2\",x\ny,z\n", SLM_OK, "line1\nline2|x@1\ny|z@3\n"); /* embedded LF */
    csv_expect("a\n\n\nb\n", SLM_OK, "a@1\nb@4\n");                            /* blank lines */
    csv_expect(",\n", SLM_OK, "|@1\n");                                         /* empty fields */
    csv_expect("\"\"\n", SLM_OK, "@1\n");                                       /* quoted empty */
    csv_expect("a\rb\r", SLM_OK, "a@1\nb@2\n");                                 /* lone CR */
    csv_expect("", SLM_OK, "");
}

static void test_csv_malformed(void **state) {
    (void)state;
    csv_expect("ab\"c\n", SLM_ERR_CORRUPT, NULL);      /* quote inside unquoted field */
    csv_expect("\"ab\"c\n", SLM_ERR_CORRUPT, NULL);    /* junk after closing quote */
    csv_expect("x\n\"open\n", SLM_ERR_CORRUPT, NULL);  /* unterminated */
    csv_expect("\"", SLM_ERR_CORRUPT, NULL);
    /* too many fields */
    size_t n = SLM_CSV_MAX_FIELDS + 1;
    char *doc = malloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++) { doc[2 * i] = 'a'; doc[2 * i + 1] = ','; }
    doc[2 * n - 1] = '\n';
    doc[2 * n] = '\0';
    char err[SLM_ERR_LEN];
    csv_sink s;
    assert_int_equal(csv_run(doc, strlen(doc), 0, 4096, &s, err), SLM_ERR_LIMIT);
    free(doc);
}

/* ---- features --------------------------------------------------------------------------- */

static void test_lower_and_words(void **state) {
    (void)state;
    assert_int_equal(slm_head_feat_lower('A'), 'a');
    assert_int_equal(slm_head_feat_lower(0xC9), 0xE9);   /* É -> é */
    assert_int_equal(slm_head_feat_lower(0xD7), 0xD7);   /* × unchanged */
    assert_int_equal(slm_head_feat_lower(0x100), 0x101); /* Ā -> ā */
    assert_int_equal(slm_head_feat_lower(0x141), 0x142); /* Ł -> ł */
    assert_int_equal(slm_head_feat_lower(0x178), 0xFF);  /* Ÿ -> ÿ */
    assert_int_equal(slm_head_feat_lower(0x3A3), 0x3C3); /* Σ -> σ */
    assert_int_equal(slm_head_feat_lower(0x3C2), 0x3C3); /* ς -> σ */
    assert_int_equal(slm_head_feat_lower(0x414), 0x434); /* Д -> д */
    assert_int_equal(slm_head_feat_lower(0x401), 0x451); /* Ё -> ё */
    assert_int_equal(slm_head_feat_lower(0x4E2D), 0x4E2D);
    assert_true(slm_head_feat_is_word('x'));
    assert_true(slm_head_feat_is_word(0xE9));
    assert_true(slm_head_feat_is_word(0x4E2D));
    assert_false(slm_head_feat_is_word(' '));
    assert_false(slm_head_feat_is_word('?'));
    assert_false(slm_head_feat_is_word(0x2019)); /* ’ */
    assert_false(slm_head_feat_is_word(0xA0));
    assert_true(slm_head_feat_utf8_valid("h\xC3\xA9", 3));
    assert_false(slm_head_feat_utf8_valid("\xC0\x80", 2));         /* overlong */
    assert_false(slm_head_feat_utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    assert_false(slm_head_feat_utf8_valid("\xC3", 1));             /* truncated */
    assert_false(slm_head_feat_utf8_valid("\xF4\x90\x80\x80", 4)); /* > U+10FFFF */
}

/* Terms of a text as a sorted list (block 0 then 1). */
static size_t terms_of(const slm_head_feat_cfg *c, const char *text, slm_head_feat_scratch *s) {
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_head_feat_extract(c, text, strlen(text), s, err), SLM_OK);
    return s->nterms[0] + s->nterms[1];
}

static void test_features(void **state) {
    (void)state;
    slm_head_feat_cfg c;
    slm_head_feat_scratch a = {0}, b = {0};
    char err[SLM_ERR_LEN];
    slm_head_feat_cfg_default(&c);
    assert_int_equal(slm_head_feat_cfg_check(&c, err), SLM_OK);
    /* case and punctuation do not matter; Unicode case does not either */
    size_t na = terms_of(&c, "My CARD, it's ÉTÉ!", &a);
    size_t nb = terms_of(&c, "my card it s été", &b);
    assert_int_equal(na, nb);
    assert_memory_equal(a.terms, b.terms, na * sizeof *a.terms);
    /* one word "ab": word unigram; padded " ab " gives 2-grams " a","ab","b ", 3-grams
     * " ab","ab ", 4-gram " ab " = 6 character n-grams (unless two collide) */
    terms_of(&c, "ab", &a);
    assert_int_equal(a.nterms[0], 1);
    assert_int_equal(a.nterms[1], 6);
    /* sorted, unique buckets per block; sublinear tf: 3 occurrences -> 1 + ln 3 */
    terms_of(&c, "go go go", &a);
    assert_int_equal(a.nterms[0], 2); /* "go", "go go" */
    /* "go" x3 -> 1 + ln 3 and "go go" x2 -> 1 + ln 2, each with its hash sign */
    float v0 = fabsf(a.terms[0].value), v1 = fabsf(a.terms[1].value);
    float lo = (float)(1.0 + log(2.0)), hi = (float)(1.0 + log(3.0));
    assert_true((fabsf(v0 - lo) < 1e-5 && fabsf(v1 - hi) < 1e-5) || (fabsf(v0 - hi) < 1e-5 && fabsf(v1 - lo) < 1e-5));
    for (size_t i = 1; i < a.nterms[1]; i++)
        assert_true(a.terms[a.nterms[0] + i - 1].bucket < a.terms[a.nterms[0] + i].bucket);
    /* invalid UTF-8 and oversize */
    assert_int_equal(slm_head_feat_extract(&c, "a\xFF", 2, &a, err), SLM_ERR_UTF8);
    /* vectorize: each block normalised to its weight */
    size_t nbk = (size_t)1 << c.hash_bits;
    int32_t *col_of = malloc(nbk * sizeof *col_of);
    for (size_t i = 0; i < nbk; i++) col_of[i] = (int32_t)(i % 1000);
    float idf[1000];
    for (int i = 0; i < 1000; i++) idf[i] = 1.0f + (float)i / 1000.0f;
    terms_of(&c, "where is my new card", &a);
    uint32_t cols[512];
    float vals[512];
    size_t nnz = slm_head_feat_vectorize(&c, col_of, idf, &a, cols, vals);
    assert_int_equal(nnz, a.nterms[0] + a.nterms[1]);
    double n0 = 0, n1 = 0;
    for (size_t i = 0; i < a.nterms[0]; i++) n0 += (double)vals[i] * vals[i];
    for (size_t i = a.nterms[0]; i < nnz; i++) n1 += (double)vals[i] * vals[i];
    assert_true(fabs(n0 - 1.0) < 1e-5 && fabs(n1 - 1.0) < 1e-5);
    free(col_of);
    slm_head_feat_scratch_free(&a);
    slm_head_feat_scratch_free(&b);
}

/* ---- solver ----------------------------------------------------------------------------- */

/* 60 examples of 3 classes; class c has feature c (value 1) plus a shared noise feature 3. */
static void tiny_problem(slm_head_problem *p, size_t *rp, uint32_t *col, float *val, uint32_t *y) {
    size_t e = 0;
    for (size_t i = 0; i < 60; i++) {
        rp[i] = e;
        y[i] = (uint32_t)(i % 3);
        col[e] = y[i];
        val[e++] = 1.0f;
        col[e] = 3;
        val[e++] = (float)(i % 7) / 7.0f;
    }
    rp[60] = e;
    *p = (slm_head_problem){.n = 60, .d = 4, .k = 3, .row_ptr = rp, .col = col, .val = val, .y = y};
}

static void test_solver(void **state) {
    (void)state;
    size_t rp[61];
    uint32_t col[120], y[60];
    float val[120], w1[15] = {0}, w3[15] = {0};
    slm_head_problem p;
    char err[SLM_ERR_LEN];
    int it;
    double loss;
    tiny_problem(&p, rp, col, val, y);
    slm_head_solver_opts o = {.l2 = 1e-3, .max_iter = 200, .tol = 1e-9, .threads = 1, .memory = 5};
    assert_int_equal(slm_head_solve(&p, &o, w1, &it, &loss, err), SLM_OK);
    assert_true(loss < 0.1);
    for (size_t i = 0; i < 60; i++) { /* separable: every example right */
        float s[3];
        for (int c = 0; c < 3; c++) s[c] = w1[12 + c] + w1[y[i] * 3 + c] + val[2 * i + 1] * w1[9 + c];
        int best = s[0] >= s[1] && s[0] >= s[2] ? 0 : (s[1] >= s[2] ? 1 : 2);
        assert_int_equal(best, (int)y[i]);
    }
    /* bit-identical with 3 threads */
    o.threads = 3;
    assert_int_equal(slm_head_solve(&p, &o, w3, NULL, NULL, err), SLM_OK);
    assert_memory_equal(w1, w3, sizeof w1);
}

/* ---- calibration ------------------------------------------------------------------------ */

static void test_calibration(void **state) {
    (void)state;
    enum { N = 400, K = 4 };
    float logits[N * K], conf[N];
    uint32_t y[N];
    uint8_t correct[N];
    uint64_t r = 7;
    for (size_t i = 0; i < N; i++) {
        y[i] = (uint32_t)(i % K);
        for (int c = 0; c < K; c++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            logits[i * K + c] = (float)((r >> 40) % 1000) / 250.0f; /* noise in [0, 4) */
        }
        logits[i * K + y[i]] += 2.0f;
        for (int c = 0; c < K; c++) logits[i * K + c] *= 4.0f; /* overconfident */
    }
    double T = slm_head_calib_fit(logits, y, N, K);
    assert_true(T > 1.5);
    assert_true(slm_head_calib_nll(logits, y, N, K, T) < slm_head_calib_nll(logits, y, N, K, 1.0));
    /* ECE: all confidence 0.9, 90% right -> 0; 100% right -> 0.1 */
    for (size_t i = 0; i < 100; i++) { conf[i] = 0.9f; correct[i] = i < 90; }
    assert_true(fabs(slm_head_calib_ece(conf, correct, 100)) < 1e-6);
    for (size_t i = 0; i < 100; i++) correct[i] = 1;
    assert_true(fabs(slm_head_calib_ece(conf, correct, 100) - 0.1) < 1e-6);
    /* threshold: at most 4 of 100 scores fall below it */
    float sc[100];
    for (int i = 0; i < 100; i++) sc[i] = (float)(99 - i) / 100.0f;
    double t = slm_head_calib_threshold(sc, 100, 0.04);
    size_t below = 0;
    for (int i = 0; i < 100; i++) below += sc[i] < t;
    assert_int_equal(below, 4);
}

/* ---- a small synthetic head ------------------------------------------------------------- */

static const char *const intents[][6] = {
    {"card_lost", "I lost my card", "my card is missing", "can't find my card anywhere",
     "card was stolen yesterday", "someone took my Karte"},
    {"balance", "what is my balance", "how much money do I have", "show account balance",
     "balance please", "how much is left on my account"},
    {"transfer", "send money to my friend", "transfer 20 euros to Anna", "how do I wire funds",
     "make a bank transfer", "pay my brother back"},
};

static slm_head_data *tiny_data(int copies) {
    slm_head_data *d;
    char err[SLM_ERR_LEN], buf[256];
    assert_int_equal(slm_head_data_create(&d, err), SLM_OK);
    for (int r = 0; r < copies; r++)
        for (int c = 0; c < 3; c++)
            for (int j = 1; j < 6; j++) {
                snprintf(buf, sizeof buf, "%s %s", intents[c][j], r % 2 ? "please" : "now");
                assert_int_equal(slm_head_data_add(d, buf, strlen(buf), intents[c][0], err), SLM_OK);
            }
    return d;
}

static slm_head *tiny_head(int threads) {
    slm_head_data *d = tiny_data(6);
    slm_head_train_opts o;
    slm_head *h = NULL;
    slm_head_train_report rep;
    char err[SLM_ERR_LEN];
    slm_head_train_opts_default(&o);
    o.hash_bits = 12;
    o.threads = threads;
    o.val_fraction = 0.2;
    assert_int_equal(slm_head_train(d, NULL, &o, &h, &rep, err), SLM_OK);
    assert_int_equal(rep.n_train + rep.n_val, 90);
    assert_true(rep.nll_after <= rep.nll_before + 1e-9);
    slm_head_data_destroy(d);
    return h;
}

static void test_train_predict(void **state) {
    (void)state;
    slm_head *h = tiny_head(1), *h2 = tiny_head(3);
    char err[SLM_ERR_LEN];
    slm_head_prediction p;
    float probs[3];
    assert_int_equal(slm_head_num_labels(h), 3);
    assert_string_equal(slm_head_label(h, 0), "balance");
    assert_int_equal(slm_head_label_index(h, "transfer"), 2);
    assert_int_equal(slm_head_predict(h, "i have lost my card", 19, probs, &p, err), SLM_OK);
    assert_string_equal(slm_head_label(h, p.label), "card_lost");
    assert_true(fabsf(probs[0] + probs[1] + probs[2] - 1.0f) < 1e-5);
    assert_true(p.confidence == probs[p.label]);
    assert_int_equal(slm_head_predict(h, "\xFF", 1, NULL, &p, err), SLM_ERR_UTF8);
    /* batch on 4 threads equals one by one; thread count of training changes nothing */
    const char *texts[] = {"balance?", "wire 5 to Bob", "card gone", "", "how much money", "pay back"};
    size_t lens[6];
    slm_head_prediction pb[6], p2;
    float pr[6 * 3];
    for (int i = 0; i < 6; i++) lens[i] = strlen(texts[i]);
    assert_int_equal(slm_head_predict_batch(h, texts, lens, 6, 4, pb, pr, err), SLM_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(slm_head_predict(h, texts[i], lens[i], probs, &p, err), SLM_OK);
        assert_memory_equal(probs, pr + i * 3, sizeof probs);
        assert_int_equal(p.label, pb[i].label);
        assert_int_equal(slm_head_predict(h2, texts[i], lens[i], NULL, &p2, err), SLM_OK);
        assert_true(p.confidence == p2.confidence);
    }
    /* eval: unknown labels count as out of scope */
    slm_head_data *d = tiny_data(1);
    assert_int_equal(slm_head_data_add(d, "what's the weather", 18, "weather", err), SLM_OK);
    slm_head_eval_result r;
    assert_int_equal(slm_head_eval(h, d, 2, &r, err), SLM_OK);
    assert_int_equal(r.n, 16);
    assert_int_equal(r.n_out_of_scope, 1);
    assert_true(r.accuracy > 0.9);
    size_t total = 0;
    for (size_t i = 0; i < 9; i++) total += r.confusion[i];
    assert_int_equal(total, 15);
    slm_head_eval_free(&r);
    slm_head_data_destroy(d);
    slm_head_destroy(h);
    slm_head_destroy(h2);
}

/* ---- data files ------------------------------------------------------------------------- */

static void test_data_load(void **state) {
    (void)state;
    const char csv[] = "id,label,text\n1,a,\"hello, world\"\n2,b,\"multi\nline\"\n";
    const char jsonl[] = "{\"text\": \"hi\", \"label\": \"a\"}\n\n{\"label\": \"b\", \"text\": \"yo\"}\n";
    char err[SLM_ERR_LEN];
    slm_head_data *d = NULL;
    char *p1 = tu_write_temp(csv, sizeof csv - 1, ".csv"), *p2 = tu_write_temp(jsonl, sizeof jsonl - 1, ".jsonl");
    size_t len;
    assert_int_equal(slm_head_data_load(p1, "text", "label", &d, err), SLM_OK);
    assert_int_equal(slm_head_data_count(d), 2);
    assert_string_equal(slm_head_data_text(d, 1, &len), "multi\nline");
    assert_string_equal(slm_head_data_label(d, 0), "a");
    slm_head_data_destroy(d);
    assert_int_equal(slm_head_data_load(p1, "text", "category", &d, err), SLM_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "category"));
    assert_int_equal(slm_head_data_load(p2, "text", "label", &d, err), SLM_OK);
    assert_int_equal(slm_head_data_count(d), 2);
    assert_string_equal(slm_head_data_text(d, 1, &len), "yo");
    slm_head_data_destroy(d);
    assert_int_equal(slm_head_data_load("/nonexistent/x.csv", "text", NULL, &d, err), SLM_ERR_IO);
    /* allocation failures while reading either format */
    const char *paths[2] = {p1, p2};
    for (int f = 0; f < 2; f++)
        for (long n = 1;; n++) {
            slm_fault_arm(n);
            slm_status st = slm_head_data_load(paths[f], "text", "label", &d, err);
            bool fired = slm_fault_fired();
            slm_fault_arm(0);
            if (!fired) {
                assert_int_equal(st, SLM_OK);
                slm_head_data_destroy(d);
                break;
            }
            assert_int_equal(st, SLM_ERR_NOMEM);
            assert_null(d);
        }
    unlink(p1);
    unlink(p2);
    free(p1);
    free(p2);
}

/* ---- head files ------------------------------------------------------------------------- */

static void test_head_file(void **state) {
    (void)state;
    slm_head *h = tiny_head(2), *g = NULL;
    char err[SLM_ERR_LEN];
    char *path = tu_write_temp("", 0, ".bin");
    assert_int_equal(slm_head_save(h, path, err), SLM_OK);
    size_t len;
    unsigned char *buf = (unsigned char *)tu_read_file(path, &len);
    assert_non_null(buf);
    assert_int_equal(slm_head_load(path, &g, err), SLM_OK);
    /* identical predictions after the round trip */
    const char *t = "transfer money to my friend";
    float pa[3], pb[3];
    slm_head_prediction a, b;
    assert_int_equal(slm_head_predict(h, t, strlen(t), pa, &a, err), SLM_OK);
    assert_int_equal(slm_head_predict(g, t, strlen(t), pb, &b, err), SLM_OK);
    assert_memory_equal(pa, pb, sizeof pa);
    assert_int_equal(a.escalate, b.escalate);
    slm_head_destroy(g);

    /* every flipped byte and every truncation is refused with a clear status */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x20;
        slm_status st = slm_head_load_mem(buf, len, &g, err);
        assert_true(st == SLM_ERR_TAMPERED || st == SLM_ERR_CORRUPT || st == SLM_ERR_UNSUPPORTED);
        assert_null(g);
        buf[i] ^= 0x20;
    }
    for (size_t l = 0; l < len; l += (l < 200 ? 1 : 97)) {
        slm_status st = slm_head_load_mem(buf, l, &g, err);
        assert_true(st == SLM_ERR_TAMPERED || st == SLM_ERR_CORRUPT);
        assert_null(g);
    }
    assert_int_equal(slm_head_load_mem(buf, len - 1, &g, err), SLM_ERR_TAMPERED);
    assert_non_null(strstr(err, "checksum"));

    /* allocation failures while loading: each one reported, nothing leaked */
    for (long n = 1;; n++) {
        slm_fault_arm(n);
        slm_status st = slm_head_load_mem(buf, len, &g, err);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_head_destroy(g);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(g);
    }
    unlink(path);
    free(path);
    free(buf);
    slm_head_destroy(h);
}

/* Every allocation failure during training (one thread: the fault countdown is per thread)
 * and prediction is reported as SLM_ERR_NOMEM, leaves no head behind and leaks nothing. */
static void test_train_alloc_failures(void **state) {
    (void)state;
    slm_head_data *d = tiny_data(2);
    slm_head_train_opts o;
    char err[SLM_ERR_LEN];
    slm_head_train_opts_default(&o);
    o.hash_bits = 10;
    o.val_fraction = 0.3;
    for (long n = 1;; n++) {
        slm_head *h = NULL;
        slm_fault_arm(n);
        slm_status st = slm_head_train(d, NULL, &o, &h, NULL, err);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            /* prediction under the same injection */
            for (long m = 1;; m++) {
                slm_head_prediction p;
                slm_fault_arm(m);
                slm_status ps = slm_head_predict(h, "lost card", 9, NULL, &p, err);
                bool f2 = slm_fault_fired();
                slm_fault_arm(0);
                if (!f2) {
                    assert_int_equal(ps, SLM_OK);
                    break;
                }
                assert_int_equal(ps, SLM_ERR_NOMEM);
            }
            slm_head_destroy(h);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(h);
    }
    slm_head_data_destroy(d);
}

/* ---- embedding features (through a test embedder: word counts of three keywords) -------- */

static slm_status kw_embed(void *ctx, const char *text, size_t len, float *out, size_t dim, char *err) {
    static const char *const kw[] = {"card", "money", "balance"};
    (void)len;
    (void)err;
    int *calls = ctx;
    __atomic_add_fetch(calls, 1, __ATOMIC_RELAXED);
    for (size_t j = 0; j < dim; j++) out[j] = j < 3 && strstr(text, kw[j]) ? 1.0f : 0.1f;
    return SLM_OK;
}

static void test_embeddings(void **state) {
    (void)state;
    slm_head_data *d = tiny_data(6);
    slm_head_train_opts o;
    slm_head *h = NULL, *g = NULL;
    slm_head_train_report rep;
    char err[SLM_ERR_LEN];
    int calls = 0;
    slm_head_train_opts_default(&o);
    o.hash_bits = 12;
    o.threads = 2;
    o.embed = kw_embed;
    o.embed_ctx = &calls;
    o.embed_dim = 4;
    assert_int_equal(slm_head_train(d, NULL, &o, &h, &rep, err), SLM_OK);
    assert_int_equal(calls, 90); /* every train and validation text once */
    assert_int_equal(slm_head_embed_dim(h), 4);
    float pa[3], pb[3];
    slm_head_prediction a, b;
    assert_int_equal(slm_head_predict(h, "my card", 7, pa, &a, err), SLM_OK);
    assert_int_equal(calls, 91);
    /* round trip: the embedder is not saved; predicting without one is a state error */
    char *path = tu_write_temp("", 0, ".bin");
    assert_int_equal(slm_head_save(h, path, err), SLM_OK);
    assert_int_equal(slm_head_load(path, &g, err), SLM_OK);
    assert_int_equal(slm_head_embed_dim(g), 4);
    assert_int_equal(slm_head_predict(g, "my card", 7, pb, &b, err), SLM_ERR_STATE);
    assert_int_equal(slm_head_set_embedder(g, kw_embed, &calls, err), SLM_OK);
    assert_int_equal(slm_head_predict(g, "my card", 7, pb, &b, err), SLM_OK);
    assert_memory_equal(pa, pb, sizeof pa);
    unlink(path);
    free(path);
    slm_head_destroy(g);
    slm_head_destroy(h);
    slm_head_data_destroy(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_valid),
        cmocka_unit_test(test_csv_malformed),
        cmocka_unit_test(test_lower_and_words),
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_solver),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_train_predict),
        cmocka_unit_test(test_data_load),
        cmocka_unit_test(test_head_file),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_train_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
