/*
 * cli/cmd_head.c: `slmesh head train|eval|predict|bench`: task heads from the command line.
 *
 *   train    fit a head on a labelled CSV / JSON-lines file, write HEAD.bin
 *   eval     accuracy, macro F1, ECE, per-class metrics, confusion, escalation figures
 *   predict  one JSON line per input text: label, confidence, top labels, escalate
 *   bench    the Banking77 benchmark of docs/benchmarks.md (train time, texts/s, accuracy,
 *            ECE, open-set recall at the chosen false-escalation rate)
 *
 * Only this file prints; the library returns statuses. JSON is written with jansson.
 * Non-goals: serving (the server and mesh load heads through include/slmesh/head.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <jansson.h>

#include "cli/cli.h"
#include "slmesh/head.h"
#include "slmesh/slmesh.h"

#define CMD "head"
#define TOP_DEFAULT 3          /* labels listed in "top" */
#define TOP_MAX 64
#define BENCH_OPEN_SET_HOLDOUT 10 /* classes left out of training in the open-set check */
#define BENCH_PREDICT_REPEAT 5    /* passes over the test set when timing prediction */
#define EMBED_CTX_TOKENS 512      /* context for one embedding; longer texts keep their start */

static const char usage[] =
    "usage: slmesh head train --data TRAIN.csv [--val VAL.csv] [--text-col text] [--label-col label]\n"
    "                         [--oos-label L] [--max-false-escalation R] [--score confidence|margin|energy]\n"
    "                         [--val-fraction 0.1] [--l2 X] [--max-iter N] [--min-df N] [--hash-bits B] [--seed N]\n"
    "                         [--word-ngrams 1-2] [--char-ngrams 2-5] [--word-weight 1] [--char-weight 1]\n"
    "                         [--text-flags F (1 join apostrophes, 2 fold digits, 4 cross-word characters, 8 skip bigrams, 16 edge words)]\n"
    "                         [--no-class-weights] [--model M.gguf] [-t THREADS] [--json] -o HEAD.bin\n"
    "       slmesh head eval HEAD.bin --data TEST.csv [--text-col text] [--label-col label] [--model M.gguf]\n"
    "                         [-t N] [--json]\n"
    "       slmesh head predict HEAD.bin (--data FILE | --text TEXT) [--text-col text] [--top N] [--model M.gguf]\n"
    "                         [-t N] [--json]\n"
    "       slmesh head bench --data-dir DIR [--text-col text] [--label-col category] [-t N] [--json]\n"
    "CSV files have a header row (RFC 4180 quoting); JSON-lines files hold one object per line.\n";

static const char *const score_names[SLM_HEAD_SCORE_COUNT] = {"confidence", "margin", "energy"};

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_seconds(void) { return clock_seconds(CLOCK_MONOTONIC); }

/* ---- shared option parsing -------------------------------------------------------------- */

typedef struct {
    const char *data, *val, *out, *model, *text, *data_dir;
    const char *text_col, *label_col;
    bool json;
    long threads, top;
    slm_head_train_opts topts;
    const char *positional; /* HEAD.bin for eval/predict */
} head_args;

/* Returns -1 when parsed, else the exit code (usage error). */
static int parse_args(int argc, char **argv, head_args *a, const char *sub) {
    memset(a, 0, sizeof *a);
    slm_head_train_opts_default(&a->topts);
    a->text_col = "text";
    a->label_col = strcmp(sub, "bench") ? "label" : "category";
    a->threads = 1;
    a->top = TOP_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        double d;
#define NEED_VALUE() do { if (!v) return cli_usage(CMD, usage, "%s %s needs a value", sub, o); i++; } while (0)
        if (!strcmp(o, "--json")) a->json = true;
        else if (!strcmp(o, "--no-class-weights")) a->topts.class_weights = false;
        else if (!strcmp(o, "--refit")) a->topts.refit = true;
        else if (!strcmp(o, "--no-refit")) a->topts.refit = false;
        else if (!strcmp(o, "--data")) { NEED_VALUE(); a->data = v; }
        else if (!strcmp(o, "--data-dir")) { NEED_VALUE(); a->data_dir = v; }
        else if (!strcmp(o, "--val")) { NEED_VALUE(); a->val = v; }
        else if (!strcmp(o, "-o") || !strcmp(o, "--output")) { NEED_VALUE(); a->out = v; }
        else if (!strcmp(o, "--model")) { NEED_VALUE(); a->model = v; }
        else if (!strcmp(o, "--text")) { NEED_VALUE(); a->text = v; }
        else if (!strcmp(o, "--text-col")) { NEED_VALUE(); a->text_col = v; }
        else if (!strcmp(o, "--label-col")) { NEED_VALUE(); a->label_col = v; }
        else if (!strcmp(o, "--oos-label")) { NEED_VALUE(); a->topts.oos_label = v; }
        else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) {
            NEED_VALUE();
            if (!cli_parse_long(v, 1, SLM_HEAD_MAX_THREADS, &a->threads))
                return cli_usage(CMD, usage, "bad thread count '%s'", v);
        } else if (!strcmp(o, "--top")) {
            NEED_VALUE();
            if (!cli_parse_long(v, 1, TOP_MAX, &a->top)) return cli_usage(CMD, usage, "bad --top '%s'", v);
        } else if (!strcmp(o, "--max-false-escalation")) {
            NEED_VALUE();
            if (!cli_parse_double(v, 0.0, 1.0, &d)) return cli_usage(CMD, usage, "bad rate '%s' (0..1)", v);
            a->topts.max_false_escalation = d;
        } else if (!strcmp(o, "--val-fraction")) {
            NEED_VALUE();
            if (!cli_parse_double(v, 0.0, 0.9, &d)) return cli_usage(CMD, usage, "bad --val-fraction '%s' (0..0.9)", v);
            a->topts.val_fraction = d;
        } else if (!strcmp(o, "--adaptive-l2")) {
            NEED_VALUE();
            if (!cli_parse_double(v, 0.0, 1.0, &d)) return cli_usage(CMD, usage, "bad --adaptive-l2 '%s' (0..1)", v);
            a->topts.adaptive_l2 = d;
        } else if (!strcmp(o, "--l2")) {
            NEED_VALUE();
            if (!cli_parse_double(v, 0.0, 1e3, &d)) return cli_usage(CMD, usage, "bad --l2 '%s'", v);
            a->topts.l2 = d;
        } else if (!strcmp(o, "--max-iter")) {
            NEED_VALUE();
            if (!cli_parse_long(v, 0, 100000, &l)) return cli_usage(CMD, usage, "bad --max-iter '%s'", v);
            a->topts.max_iter = (int)l;
        } else if (!strcmp(o, "--min-df")) {
            NEED_VALUE();
            if (!cli_parse_long(v, 1, 1000000, &l)) return cli_usage(CMD, usage, "bad --min-df '%s'", v);
            a->topts.min_df = (uint32_t)l;
        } else if (!strcmp(o, "--hash-bits")) {
            NEED_VALUE();
            if (!cli_parse_long(v, SLM_HEAD_MIN_HASH_BITS, SLM_HEAD_MAX_HASH_BITS, &l))
                return cli_usage(CMD, usage, "bad --hash-bits '%s'", v);
            a->topts.hash_bits = (uint32_t)l;
        } else if (!strcmp(o, "--word-ngrams") || !strcmp(o, "--char-ngrams")) {
            NEED_VALUE();
            long lo, hi;
            char tmp[32];
            const char *dash = strchr(v, '-');
            if (!dash || (size_t)(dash - v) >= sizeof tmp) return cli_usage(CMD, usage, "bad %s '%s' (MIN-MAX)", o, v);
            memcpy(tmp, v, (size_t)(dash - v));
            tmp[dash - v] = '\0';
            if (!cli_parse_long(tmp, 0, 8, &lo) || !cli_parse_long(dash + 1, 0, 8, &hi) || lo > hi)
                return cli_usage(CMD, usage, "bad %s '%s' (MIN-MAX)", o, v);
            if (o[2] == 'w') { a->topts.word_min = (uint32_t)lo; a->topts.word_max = (uint32_t)hi; }
            else { a->topts.char_min = (uint32_t)lo; a->topts.char_max = (uint32_t)hi; }
        } else if (!strcmp(o, "--word-weight") || !strcmp(o, "--char-weight")) {
            NEED_VALUE();
            if (!cli_parse_double(v, 0.0, 1000.0, &d)) return cli_usage(CMD, usage, "bad %s '%s'", o, v);
            if (o[2] == 'w') a->topts.word_weight = (float)d;
            else a->topts.char_weight = (float)d;
        } else if (!strcmp(o, "--text-flags")) {
            NEED_VALUE();
            if (!cli_parse_long(v, 0, 31, &l)) return cli_usage(CMD, usage, "bad --text-flags '%s' (0..31)", v);
            a->topts.text_flags = (uint32_t)l;
        } else if (!strcmp(o, "--seed")) {
            NEED_VALUE();
            if (!cli_parse_u64(v, &a->topts.seed)) return cli_usage(CMD, usage, "bad --seed '%s'", v);
        } else if (!strcmp(o, "--score")) {
            NEED_VALUE();
            int k;
            for (k = 0; k < SLM_HEAD_SCORE_COUNT && strcmp(v, score_names[k]); k++) {}
            if (k == SLM_HEAD_SCORE_COUNT) return cli_usage(CMD, usage, "bad --score '%s'", v);
            a->topts.score = (slm_head_score)k;
        } else if (o[0] == '-' && o[1]) return cli_usage(CMD, usage, "%s: unknown option '%s'", sub, o);
        else if (!a->positional) a->positional = o;
        else return cli_usage(CMD, usage, "%s: unexpected argument '%s'", sub, o);
#undef NEED_VALUE
    }
    a->topts.threads = (int)a->threads;
    return -1;
}

/* ---- model embeddings: the engine's pooled embedding as a head feature source ------------ */

/* One model and one context; the context serves one thread at a time, so calls from the
 * head's worker threads take turns on the mutex (the engine itself uses its own threads). */
typedef struct {
    slm_model *model;      /* owned */
    slm_ctx *ctx;          /* owned */
    pthread_mutex_t lock;  /* serialises use of ctx */
    int32_t *ids;          /* owned: EMBED_CTX_TOKENS token buffer, used under lock */
    uint32_t dim;          /* embedding width */
} engine_embedder;

static slm_status engine_embed(void *vctx, const char *text, size_t len, float *out, size_t dim, char *err) {
    engine_embedder *e = vctx;
    size_t n = 0;
    slm_status st;
    if (dim != e->dim) return SLM_ERR_INVALID_ARG;
    pthread_mutex_lock(&e->lock);
    st = slm_model_tokenize(e->model, text, len, SLM_TOKENIZE_ADD_BOS, e->ids, EMBED_CTX_TOKENS, &n, err);
    if (st == SLM_ERR_FULL) { /* keep the first EMBED_CTX_TOKENS tokens */
        n = EMBED_CTX_TOKENS;
        st = SLM_OK;
    }
    if (st == SLM_OK && n == 0) { /* empty text without BOS: a zero vector */
        for (size_t j = 0; j < dim; j++) out[j] = 0.0f;
    } else if (st == SLM_OK) st = slm_ctx_embed(e->ctx, 0, e->ids, n, out, err);
    pthread_mutex_unlock(&e->lock);
    return st;
}

static void embedder_close(engine_embedder *e) {
    if (!e->model) return;
    slm_ctx_destroy(e->ctx);
    slm_model_close(e->model);
    free(e->ids);
    pthread_mutex_destroy(&e->lock);
    e->model = NULL;
}

static slm_status embedder_open(engine_embedder *e, const char *path, int threads, char *err) {
    slm_ctx_params cp = {.n_ctx = EMBED_CTX_TOKENS, .n_batch = EMBED_CTX_TOKENS, .n_seq_max = 1, .n_threads = threads};
    slm_status st;
    memset(e, 0, sizeof *e);
    if ((st = slm_model_open(path, NULL, &e->model, err)) != SLM_OK) return st;
    if ((st = slm_ctx_create(e->model, &cp, &e->ctx, err)) != SLM_OK) {
        slm_model_close(e->model);
        e->model = NULL;
        return st;
    }
    e->ids = malloc(EMBED_CTX_TOKENS * sizeof *e->ids);
    e->dim = (uint32_t)slm_ctx_n_embd(e->ctx);
    pthread_mutex_init(&e->lock, NULL);
    if (!e->ids) {
        embedder_close(e);
        return SLM_ERR_NOMEM;
    }
    return SLM_OK;
}

/* Attach the embedder to a loaded head trained with embeddings (or refuse a mismatch). */
static slm_status attach_model(slm_head *h, const char *model, int threads, engine_embedder *e, char *err) {
    slm_status st;
    if (slm_head_embed_dim(h) == 0) {
        if (model) fprintf(stderr, "slmesh head: note: the head uses no embeddings; --model ignored\n");
        return SLM_OK;
    }
    if (!model) {
        snprintf(err, SLM_ERR_LEN, "the head was trained with %u-dim embeddings: give --model", slm_head_embed_dim(h));
        return SLM_ERR_STATE;
    }
    if ((st = embedder_open(e, model, threads, err)) != SLM_OK) return st;
    if (e->dim != slm_head_embed_dim(h)) {
        snprintf(err, SLM_ERR_LEN, "model embeddings have %u values, the head expects %u", e->dim, slm_head_embed_dim(h));
        return SLM_ERR_INVALID_ARG;
    }
    return slm_head_set_embedder(h, engine_embed, e, err);
}

static int fail(slm_status st, const char *err) { return cli_fail(CMD, st, err); }

/* ---- train ------------------------------------------------------------------------------ */

static json_t *report_json(const slm_head_train_report *r) {
    return json_pack("{s:I,s:I,s:I,s:I,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
                     "n_train", (json_int_t)r->n_train, "n_val", (json_int_t)r->n_val,
                     "n_features", (json_int_t)r->n_features, "nnz", (json_int_t)r->nnz,
                     "iterations", r->iterations, "loss", r->loss,
                     "seconds_features", r->seconds_features, "seconds_solve", r->seconds_solve,
                     "seconds_total", r->seconds_total, "cpu_seconds", r->cpu_seconds,
                     "temperature", r->temperature,
                     "val_ece_before", r->ece_before, "val_ece_after", r->ece_after,
                     "val_nll_before", r->nll_before, "val_nll_after", r->nll_after,
                     "val_accuracy", r->val_accuracy, "threshold", isfinite(r->threshold) ? r->threshold : -1e30,
                     "val_escalation", r->val_escalation);
}

static void print_report(FILE *f, const slm_head_train_report *r) {
    fprintf(f, "trained on %zu examples (%zu validation), %zu features, %zu non-zeros\n", r->n_train, r->n_val,
            r->n_features, r->nnz);
    fprintf(f, "time: %.2f s wall, %.2f s CPU (features %.2f s, solver %.2f s, %d iterations, loss %.4f)\n",
            r->seconds_total, r->cpu_seconds, r->seconds_features, r->seconds_solve, r->iterations, r->loss);
    fprintf(f, "validation: accuracy %.4f, temperature %.3f, ECE %.4f -> %.4f, NLL %.4f -> %.4f\n", r->val_accuracy,
            r->temperature, r->ece_before, r->ece_after, r->nll_before, r->nll_after);
    fprintf(f, "escalation: threshold %.4f, %.2f%% of in-scope validation examples escalated\n", r->threshold,
            100.0 * r->val_escalation);
}

static int run_train(int argc, char **argv) {
    head_args a;
    int rc = parse_args(argc, argv, &a, "train");
    char err[SLM_ERR_LEN] = "";
    slm_head_data *tr = NULL, *va = NULL;
    slm_head *h = NULL;
    slm_head_train_report rep;
    engine_embedder emb = {0};
    slm_status st;
    if (rc >= 0) return rc;
    if (!a.data || !a.out) return cli_usage(CMD, usage, "train needs --data and -o");
    if (a.positional) return cli_usage(CMD, usage, "train: unexpected argument '%s'", a.positional);
    rc = CLI_FAIL;
    if ((st = slm_head_data_load(a.data, a.text_col, a.label_col, &tr, err)) != SLM_OK) { fail(st, err); goto done; }
    if (a.val && (st = slm_head_data_load(a.val, a.text_col, a.label_col, &va, err)) != SLM_OK) { fail(st, err); goto done; }
    if (a.model) {
        if ((st = embedder_open(&emb, a.model, (int)a.threads, err)) != SLM_OK) { fail(st, err); goto done; }
        a.topts.embed = engine_embed;
        a.topts.embed_ctx = &emb;
        a.topts.embed_dim = emb.dim;
    }
    if ((st = slm_head_train(tr, va, &a.topts, &h, &rep, err)) != SLM_OK) { fail(st, err); goto done; }
    if ((st = slm_head_save(h, a.out, err)) != SLM_OK) { fail(st, err); goto done; }
    if (a.json) {
        json_t *j = report_json(&rep);
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else {
        print_report(stderr, &rep);
        fprintf(stderr, "wrote %s (%zu labels)\n", a.out, slm_head_num_labels(h));
    }
    rc = CLI_OK;
done:
    slm_head_destroy(h);
    embedder_close(&emb);
    slm_head_data_destroy(tr);
    slm_head_data_destroy(va);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------- */

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *eval_json(const slm_head *h, const slm_head_eval_result *r) {
    json_t *j = json_object(), *pc = json_object(), *labels = json_array(), *matrix = json_array();
    json_object_set_new(j, "n", json_integer((json_int_t)r->n));
    json_object_set_new(j, "accuracy", num(r->accuracy));
    json_object_set_new(j, "macro_f1", num(r->macro_f1));
    json_object_set_new(j, "ece", num(r->ece));
    json_object_set_new(j, "nll", num(r->nll));
    json_object_set_new(j, "n_in_scope", json_integer((json_int_t)r->n_in_scope));
    json_object_set_new(j, "n_out_of_scope", json_integer((json_int_t)r->n_out_of_scope));
    json_object_set_new(j, "escalation_rate", num(r->escalation_rate));
    json_object_set_new(j, "oos_recall", num(r->oos_recall));
    json_object_set_new(j, "accuracy_not_escalated", num(r->accuracy_kept));
    for (size_t c = 0; c < r->k; c++) {
        const slm_head_class_metrics *m = &r->per_class[c];
        json_object_set_new(pc, slm_head_label(h, c),
                            json_pack("{s:f,s:f,s:f,s:I}", "precision", m->precision, "recall", m->recall, "f1",
                                      m->f1, "support", (json_int_t)m->support));
        json_array_append_new(labels, json_string(slm_head_label(h, c)));
        json_t *row = json_array();
        for (size_t p = 0; p < r->k; p++) json_array_append_new(row, json_integer((json_int_t)r->confusion[c * r->k + p]));
        json_array_append_new(matrix, row);
    }
    json_object_set_new(j, "per_class", pc);
    json_object_set_new(j, "confusion", json_pack("{s:o,s:o}", "labels", labels, "matrix", matrix));
    return j;
}

static void print_eval(FILE *f, const slm_head_eval_result *r) {
    fprintf(f, "examples %zu: accuracy %.4f, macro F1 %.4f, ECE %.4f, NLL %.4f\n", r->n, r->accuracy, r->macro_f1,
            r->ece, r->nll);
    fprintf(f, "escalated: %.2f%% of %zu in-scope (accuracy of the rest %.4f)", 100.0 * r->escalation_rate,
            r->n_in_scope, r->accuracy_kept);
    if (r->n_out_of_scope) fprintf(f, ", %.2f%% of %zu out-of-scope", 100.0 * r->oos_recall, r->n_out_of_scope);
    fprintf(f, "\n");
}

static int run_eval(int argc, char **argv) {
    head_args a;
    int rc = parse_args(argc, argv, &a, "eval");
    char err[SLM_ERR_LEN] = "";
    slm_head_data *d = NULL;
    slm_head *h = NULL;
    slm_head_eval_result r;
    engine_embedder emb = {0};
    slm_status st;
    if (rc >= 0) return rc;
    if (!a.positional || !a.data) return cli_usage(CMD, usage, "eval needs HEAD.bin and --data");
    if ((st = slm_head_load(a.positional, &h, err)) != SLM_OK) return fail(st, err);
    rc = CLI_FAIL;
    if ((st = attach_model(h, a.model, (int)a.threads, &emb, err)) != SLM_OK) { fail(st, err); goto done; }
    if ((st = slm_head_data_load(a.data, a.text_col, a.label_col, &d, err)) != SLM_OK) { fail(st, err); goto done; }
    if ((st = slm_head_eval(h, d, (int)a.threads, &r, err)) != SLM_OK) { fail(st, err); goto done; }
    if (a.json) {
        json_t *j = eval_json(h, &r);
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(j);
    } else print_eval(stdout, &r);
    slm_head_eval_free(&r);
    rc = CLI_OK;
done:
    slm_head_destroy(h);
    embedder_close(&emb);
    slm_head_data_destroy(d);
    return rc;
}

/* ---- predict ---------------------------------------------------------------------------- */

static void print_prediction(const slm_head *h, const slm_head_prediction *p, const float *probs, long top,
                             bool json) {
    size_t k = slm_head_num_labels(h);
    if (!json) {
        printf("%s\t%.4f\t%s\n", slm_head_label(h, p->label), p->confidence, p->escalate ? "escalate" : "ok");
        return;
    }
    json_t *arr = json_array();
    size_t idx[TOP_MAX];
    size_t n = (size_t)top < k ? (size_t)top : k;
    for (size_t t = 0; t < n; t++) { /* selection of the n largest, ties by index */
        size_t best = k;
        for (size_t c = 0; c < k; c++) {
            bool used = false;
            for (size_t u = 0; u < t; u++) used |= idx[u] == c;
            if (!used && (best == k || probs[c] > probs[best])) best = c;
        }
        idx[t] = best;
        json_array_append_new(arr, json_pack("[s,f]", slm_head_label(h, best), (double)probs[best]));
    }
    json_t *j = json_pack("{s:s,s:f,s:o,s:b}", "label", slm_head_label(h, p->label), "confidence",
                          (double)p->confidence, "top", arr, "escalate", p->escalate);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(j);
}

static int run_predict(int argc, char **argv) {
    head_args a;
    int rc = parse_args(argc, argv, &a, "predict");
    char err[SLM_ERR_LEN] = "";
    slm_head_data *d = NULL;
    slm_head *h = NULL;
    const char **texts = NULL;
    size_t *lens = NULL;
    slm_head_prediction *pred = NULL;
    float *probs = NULL;
    engine_embedder emb = {0};
    slm_status st;
    if (rc >= 0) return rc;
    if (!a.positional || (!a.data == !a.text)) return cli_usage(CMD, usage, "predict needs HEAD.bin and --data or --text");
    if ((st = slm_head_load(a.positional, &h, err)) != SLM_OK) return fail(st, err);
    rc = CLI_FAIL;
    if ((st = attach_model(h, a.model, (int)a.threads, &emb, err)) != SLM_OK) { fail(st, err); goto done; }
    if (a.data) st = slm_head_data_load(a.data, a.text_col, NULL, &d, err);
    else if ((st = slm_head_data_create(&d, err)) == SLM_OK) st = slm_head_data_add(d, a.text, strlen(a.text), NULL, err);
    if (st != SLM_OK) { fail(st, err); goto done; }
    size_t n = slm_head_data_count(d), k = slm_head_num_labels(h);
    texts = calloc(n ? n : 1, sizeof *texts);
    lens = calloc(n ? n : 1, sizeof *lens);
    pred = calloc(n ? n : 1, sizeof *pred);
    probs = calloc((n ? n : 1) * k, sizeof *probs);
    if (!texts || !lens || !pred || !probs) { fail(SLM_ERR_NOMEM, "predict"); goto done; }
    for (size_t i = 0; i < n; i++) texts[i] = slm_head_data_text(d, i, &lens[i]);
    if ((st = slm_head_predict_batch(h, texts, lens, n, (int)a.threads, pred, probs, err)) != SLM_OK) {
        fail(st, err);
        goto done;
    }
    for (size_t i = 0; i < n; i++) print_prediction(h, &pred[i], probs + i * k, a.top, a.json);
    rc = CLI_OK;
done:
    free(texts);
    free(lens);
    free(pred);
    free(probs);
    slm_head_destroy(h);
    embedder_close(&emb);
    slm_head_data_destroy(d);
    return rc;
}

/* ---- bench ------------------------------------------------------------------------------ */

/* Copy of src without the examples whose label is in drop[0..ndrop). */
static slm_status filter_data(const slm_head_data *src, const char *const *drop, size_t ndrop, slm_head_data **out,
                              char *err) {
    slm_status st = slm_head_data_create(out, err);
    for (size_t i = 0; st == SLM_OK && i < slm_head_data_count(src); i++) {
        size_t len;
        const char *t = slm_head_data_text(src, i, &len), *l = slm_head_data_label(src, i);
        bool dropped = false;
        for (size_t j = 0; j < ndrop; j++) dropped |= l && !strcmp(l, drop[j]);
        if (!dropped) st = slm_head_data_add(*out, t, len, l, err);
    }
    return st;
}

static int run_bench(int argc, char **argv) {
    head_args a;
    int rc = parse_args(argc, argv, &a, "bench");
    char err[SLM_ERR_LEN] = "", path[4096];
    slm_head_data *tr = NULL, *te = NULL, *tr_open = NULL;
    slm_head *h = NULL, *ho = NULL;
    slm_head_train_report rep, rep_o;
    slm_head_eval_result ev = {0}, evo = {0};
    const char **texts = NULL;
    size_t *lens = NULL;
    slm_head_prediction *pred = NULL;
    json_t *j = NULL;
    slm_status st;
    if (rc >= 0) return rc;
    if (!a.data_dir) return cli_usage(CMD, usage, "bench needs --data-dir (e.g. ../shared/data/banking77)");
    if (a.model) return cli_usage(CMD, usage, "bench measures n-gram heads; train with --model to compare");
    rc = CLI_FAIL;
    snprintf(path, sizeof path, "%s/train.csv", a.data_dir);
    if ((st = slm_head_data_load(path, a.text_col, a.label_col, &tr, err)) != SLM_OK) { fail(st, err); goto done; }
    snprintf(path, sizeof path, "%s/test.csv", a.data_dir);
    if ((st = slm_head_data_load(path, a.text_col, a.label_col, &te, err)) != SLM_OK) { fail(st, err); goto done; }
    j = json_object();

    /* closed set: train (10% validation), test accuracy and calibration */
    if ((st = slm_head_train(tr, NULL, &a.topts, &h, &rep, err)) != SLM_OK) { fail(st, err); goto done; }
    if ((st = slm_head_eval(h, te, (int)a.threads, &ev, err)) != SLM_OK) { fail(st, err); goto done; }
    json_object_set_new(j, "train", report_json(&rep));
    json_object_set_new(j, "threads", json_integer(a.threads));
    json_object_set_new(j, "test_accuracy", json_real(ev.accuracy));
    json_object_set_new(j, "test_macro_f1", json_real(ev.macro_f1));
    json_object_set_new(j, "test_ece", json_real(ev.ece));
    json_object_set_new(j, "test_escalation_rate", json_real(ev.escalation_rate));
    json_object_set_new(j, "test_accuracy_not_escalated", json_real(ev.accuracy_kept));

    /* prediction speed: the test set BENCH_PREDICT_REPEAT times, on 1 and on -t threads */
    size_t n = slm_head_data_count(te), total = n * BENCH_PREDICT_REPEAT;
    texts = calloc(total, sizeof *texts);
    lens = calloc(total, sizeof *lens);
    pred = calloc(total, sizeof *pred);
    if (!texts || !lens || !pred) { fail(SLM_ERR_NOMEM, "bench"); goto done; }
    for (size_t i = 0; i < total; i++) texts[i] = slm_head_data_text(te, i % n, &lens[i]);
    long tcounts[2] = {1, a.threads};
    for (int q = 0; q < (a.threads > 1 ? 2 : 1); q++) {
        double t0 = now_seconds(), c0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
        if ((st = slm_head_predict_batch(h, texts, lens, total, (int)tcounts[q], pred, NULL, err)) != SLM_OK) {
            fail(st, err);
            goto done;
        }
        char key[80];
        snprintf(key, sizeof key, "predict_texts_per_s_%ld_threads", tcounts[q]);
        json_object_set_new(j, key, json_real((double)total / (now_seconds() - t0)));
        /* per CPU-second: what one idle core would do, whatever the machine's load */
        snprintf(key, sizeof key, "predict_texts_per_cpu_s_%ld_threads", tcounts[q]);
        json_object_set_new(j, key, json_real((double)total / (clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0)));
    }

    /* open set: leave BENCH_OPEN_SET_HOLDOUT classes out of training (every
     * k/holdout-th label in sorted order, a fixed choice), test them as out of scope */
    size_t k = slm_head_num_labels(h), nd = 0;
    const char *drop[BENCH_OPEN_SET_HOLDOUT];
    for (size_t c = 0; c < BENCH_OPEN_SET_HOLDOUT && c < k; c++) drop[nd++] = slm_head_label(h, c * k / BENCH_OPEN_SET_HOLDOUT);
    if ((st = filter_data(tr, drop, nd, &tr_open, err)) != SLM_OK) { fail(st, err); goto done; }
    json_t *open = json_object(), *held = json_array();
    for (size_t c = 0; c < nd; c++) json_array_append_new(held, json_string(drop[c]));
    json_object_set_new(open, "held_out", held);
    for (int s = 0; s < SLM_HEAD_SCORE_COUNT; s++) {
        slm_head_train_opts o = a.topts;
        o.score = (slm_head_score)s;
        if ((st = slm_head_train(tr_open, NULL, &o, &ho, &rep_o, err)) != SLM_OK) { fail(st, err); goto done; }
        if ((st = slm_head_eval(ho, te, (int)a.threads, &evo, err)) != SLM_OK) { fail(st, err); goto done; }
        json_object_set_new(open, score_names[s],
                            json_pack("{s:f,s:f,s:f,s:f,s:f}", "target_false_escalation", o.max_false_escalation,
                                      "val_false_escalation", rep_o.val_escalation, "test_false_escalation",
                                      evo.escalation_rate, "oos_recall", evo.oos_recall, "accuracy_not_escalated",
                                      evo.accuracy_kept));
        slm_head_eval_free(&evo);
        slm_head_destroy(ho);
        ho = NULL;
    }
    json_object_set_new(j, "open_set", open);
    char *s = json_dumps(j, a.json ? JSON_COMPACT | JSON_REAL_PRECISION(6) : JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("%s\n", s ? s : "{}");
    free(s);
    rc = CLI_OK;
done:
    json_decref(j);
    free(texts);
    free(lens);
    free(pred);
    slm_head_eval_free(&ev);
    slm_head_eval_free(&evo);
    slm_head_destroy(h);
    slm_head_destroy(ho);
    slm_head_data_destroy(tr);
    slm_head_data_destroy(te);
    slm_head_data_destroy(tr_open);
    return rc;
}

/* ---- dispatch --------------------------------------------------------------------------- */

int cmd_head(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "train")) return run_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "eval")) return run_eval(argc - 1, argv + 1);
    if (!strcmp(argv[1], "predict")) return run_predict(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench")) return run_bench(argc - 1, argv + 1);
    return cli_usage(CMD, usage, "unknown subcommand '%s'", argv[1]);
}
