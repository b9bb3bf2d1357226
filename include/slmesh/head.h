/*
 * slmesh/head.h: task heads, the cheapest tier for classification (intent routing, tagging,
 * triage): a multinomial logistic regression over hashed word and character n-grams
 * (TF-IDF), optionally with a model's pooled embedding concatenated, trained in seconds on
 * a CPU, with a temperature-calibrated confidence and an escalation threshold so that the
 * mesh can hand what the head is unsure about to the next tier.
 *
 * Life cycle: load (or train) a head once, predict many texts from many threads, destroy.
 *
 * Invariants:
 *  - A head is immutable after slm_head_train/slm_head_load returns, except for
 *    slm_head_set_embedder, which must be called before predictions start.
 *  - Labels are indexed 0..slm_head_num_labels()-1 in byte-wise sorted order.
 *  - Probabilities are calibrated (softmax of logits / temperature) and sum to 1.
 * Thread-safety: slm_head_predict, slm_head_predict_batch and slm_head_eval may run
 *  concurrently on one head; each call uses its own scratch. Data sets are not shared.
 * Non-goals: deep models, multi-label output, online updates (retrain; it takes seconds).
 */
#ifndef SLMESH_HEAD_H
#define SLMESH_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named limits (every size that comes from a file or a caller) ---------------------- */

#define SLM_HEAD_MAX_LABELS 4096              /* intents/tags; far above real label sets */
#define SLM_HEAD_MAX_LABEL_BYTES 256          /* one label name, UTF-8 */
#define SLM_HEAD_MAX_TEXT_BYTES (64u << 10)   /* one text: a message or ticket; callers cut longer */
#define SLM_HEAD_MAX_EXAMPLES 10000000u       /* rows of one data set */
#define SLM_HEAD_MAX_EMBED_DIM 16384u         /* pooled embedding width of any small model */
#define SLM_HEAD_MIN_HASH_BITS 10u            /* fewer buckets collide too much to be useful */
#define SLM_HEAD_MAX_HASH_BITS 24u            /* 16M buckets; the bucket map is 4 bytes each */
#define SLM_HEAD_MAX_FILE_BYTES (1ull << 31)  /* a head file; weights of 2^24 cols x 128 labels */
#define SLM_HEAD_MAX_THREADS 256

/* ---- data sets ------------------------------------------------------------------------- */

/* Texts with optional labels, in input order. Owns copies of every string. */
typedef struct slm_head_data slm_head_data;

/* Read a CSV file (RFC 4180: header row, quoted fields, escaped quotes, embedded newlines,
 * optional BOM) or JSON lines (one object per line; detected by a leading '{'). text_col
 * names the text column/key; label_col the label one, or NULL when labels are not needed
 * (prediction). Texts must be UTF-8 (SLM_ERR_UTF8 otherwise). *out is owned by the caller. */
slm_status slm_head_data_load(const char *path, const char *text_col, const char *label_col,
                              slm_head_data **out, char *err);
/* An empty data set to fill with slm_head_data_add. */
slm_status slm_head_data_create(slm_head_data **out, char *err);
/* Append one example; text (len bytes) and label (NUL-terminated, may be NULL) are copied. */
slm_status slm_head_data_add(slm_head_data *d, const char *text, size_t len, const char *label,
                             char *err);
size_t slm_head_data_count(const slm_head_data *d);
/* Borrowed views, valid until the data set is destroyed; label is NULL when absent. */
const char *slm_head_data_text(const slm_head_data *d, size_t i, size_t *len);
const char *slm_head_data_label(const slm_head_data *d, size_t i);
void slm_head_data_destroy(slm_head_data *d);

/* ---- model embeddings (optional features) ---------------------------------------------- */

/* Writes the pooled, normalised embedding of text (len bytes) into out[0..dim-1]. Must be
 * thread-safe when predictions run from several threads. */
typedef slm_status (*slm_head_embed_fn)(void *ctx, const char *text, size_t len, float *out,
                                        size_t dim, char *err);

/* ---- training -------------------------------------------------------------------------- */

/* What the escalation threshold is applied to (escalate when score < threshold). */
typedef enum slm_head_score {
    SLM_HEAD_SCORE_CONFIDENCE = 0, /* calibrated probability of the top label */
    SLM_HEAD_SCORE_MARGIN = 1,     /* top probability minus the second one */
    SLM_HEAD_SCORE_ENERGY = 2,     /* T * logsumexp(logits / T): low for unfamiliar inputs */
    SLM_HEAD_SCORE_COUNT
} slm_head_score;

typedef struct slm_head_train_opts {
    uint64_t seed;               /* validation split; training itself is deterministic */
    int threads;                 /* >= 1; results do not depend on it */
    double l2;                   /* L2 strength lambda of the mean loss */
    int max_iter;                /* L-BFGS iterations */
    double val_fraction;         /* held out per class when no validation set is given */
    double max_false_escalation; /* target share of in-scope validation examples escalated */
    const char *oos_label;       /* borrowed; an explicit out-of-scope class, or NULL */
    bool class_weights;          /* weight classes by n / (K * n_class) */
    bool refit;                  /* after calibrating, continue training on train + validation */
    double adaptive_l2;          /* 0..1: share of L2 scaled per feature by its data mass */
    slm_head_score score;        /* what the escalation threshold applies to */
    uint32_t hash_bits;          /* feature hash buckets = 2^hash_bits */
    uint32_t min_df;             /* keep n-grams seen in at least this many training texts */
    uint32_t word_min, word_max; /* word n-gram orders (word_max 0: no word block) */
    uint32_t char_min, char_max; /* character n-gram orders (char_max 0: none) */
    float word_weight;           /* norm of the word block in a feature vector */
    float char_weight;           /* norm of the character block */
    uint32_t text_flags;         /* normalisation bits: 1 join apostrophes, 2 fold digits */
    slm_head_embed_fn embed;     /* optional embedding features, with embed_ctx (borrowed) */
    void *embed_ctx;
    uint32_t embed_dim;
} slm_head_train_opts;

/* Defaults: seed 1, 1 thread, l2 2e-5, 150 iterations, 10% validation, refit on, 4% false
 * escalation, class weights on, confidence score, 2^20 buckets, min_df 1, words 1-2,
 * characters 2-5 inside words, block weights 1, no text flags, no adaptive L2. */
void slm_head_train_opts_default(slm_head_train_opts *o);

typedef struct slm_head_train_report {
    size_t n_train, n_val;        /* examples used to fit / to calibrate */
    size_t n_features;            /* columns: n-grams kept + embedding width */
    size_t nnz;                   /* non-zeros of the training matrix */
    int iterations;               /* solver iterations run (first fit + refit) */
    double loss;                  /* final training objective */
    double seconds_features;      /* wall time: featurise train + validation */
    double seconds_solve;         /* wall time: the solver */
    double seconds_total;         /* wall time: everything */
    double cpu_seconds;           /* CPU time of the process (all threads) while training */
    double temperature;           /* fitted on validation */
    double ece_before, ece_after; /* validation ECE (15 bins) with T = 1 and with T */
    double nll_before, nll_after; /* validation mean negative log-likelihood */
    double val_accuracy;          /* on the validation examples */
    double threshold;             /* escalation threshold on the chosen score */
    double val_escalation;        /* share of in-scope validation examples escalated */
} slm_head_train_report;

typedef struct slm_head slm_head;

/* Train a head on train; calibrate and choose the threshold on val, or on a stratified
 * split of train (opts->val_fraction) when val is NULL; with opts->refit, then continue
 * training on train + val from there (temperature and threshold kept). Every train/val
 * example needs a label. With opts->embed, the embedder is called for every text from up to
 * opts->threads threads and stays attached to the head. rep may be NULL. *out is owned by
 * the caller (slm_head_destroy). */
slm_status slm_head_train(const slm_head_data *train, const slm_head_data *val,
                          const slm_head_train_opts *opts, slm_head **out,
                          slm_head_train_report *rep, char *err);

/* ---- files ----------------------------------------------------------------------------- */

/* Versioned binary format with its label set, feature settings, weights and a SHA-256 of
 * everything before it; a damaged or truncated file gives SLM_ERR_TAMPERED or
 * SLM_ERR_CORRUPT with a detail. */
slm_status slm_head_save(const slm_head *h, const char *path, char *err);
slm_status slm_head_load(const char *path, slm_head **out, char *err);
/* Same from memory (buf borrowed for the call). */
slm_status slm_head_load_mem(const void *buf, size_t len, slm_head **out, char *err);
void slm_head_destroy(slm_head *h);

/* ---- inspection ------------------------------------------------------------------------ */

size_t slm_head_num_labels(const slm_head *h);
const char *slm_head_label(const slm_head *h, size_t i); /* borrowed; NULL if out of range */
/* Index of label, or -1. */
long slm_head_label_index(const slm_head *h, const char *label);
/* Embedding width the head was trained with (0: n-grams only). */
uint32_t slm_head_embed_dim(const slm_head *h);
/* Attach the embedding source for a head trained with embeddings (ctx borrowed). */
slm_status slm_head_set_embedder(slm_head *h, slm_head_embed_fn fn, void *ctx, char *err);

/* ---- prediction ------------------------------------------------------------------------ */

typedef struct slm_head_prediction {
    uint32_t label;   /* index of the most probable label */
    float confidence; /* its calibrated probability */
    float score;      /* the escalation score (see slm_head_score) */
    bool escalate;    /* score < threshold, or the out-of-scope label won */
} slm_head_prediction;

/* Classify one text (len bytes of UTF-8). probs, if not NULL, receives num_labels
 * calibrated probabilities. Thread-safe. */
slm_status slm_head_predict(const slm_head *h, const char *text, size_t len, float *probs,
                            slm_head_prediction *out, char *err);

/* Classify n texts on `threads` threads; out[n]; probs, if not NULL, is n x num_labels. */
slm_status slm_head_predict_batch(const slm_head *h, const char *const *texts,
                                  const size_t *lens, size_t n, int threads,
                                  slm_head_prediction *out, float *probs, char *err);

/* ---- evaluation ------------------------------------------------------------------------ */

typedef struct slm_head_class_metrics {
    double precision, recall, f1;
    size_t support; /* test examples with this true label */
} slm_head_class_metrics;

typedef struct slm_head_eval_result {
    size_t n;               /* examples evaluated */
    size_t n_in_scope;      /* whose label the head knows (and is not its oos label) */
    size_t n_out_of_scope;  /* the rest: unknown labels or the oos label */
    double accuracy;        /* over examples whose label the head knows (oos class included) */
    double macro_f1;        /* mean F1 over labels with support or predictions */
    double ece;             /* 15-bin expected calibration error, same examples */
    double nll;             /* mean negative log-likelihood, same examples */
    double escalation_rate; /* share of in-scope examples escalated (false escalation) */
    double oos_recall;      /* share of out-of-scope examples escalated (NaN if none) */
    double accuracy_kept;   /* accuracy on in-scope examples not escalated */
    size_t k;               /* = num_labels */
    slm_head_class_metrics *per_class; /* k entries, owned */
    size_t *confusion;      /* k x k, row = true label, column = predicted; owned */
} slm_head_eval_result;

/* Evaluate on a labelled data set. Labels the head does not know count as out of scope.
 * Free the result with slm_head_eval_free. */
slm_status slm_head_eval(const slm_head *h, const slm_head_data *data, int threads,
                         slm_head_eval_result *out, char *err);
void slm_head_eval_free(slm_head_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_HEAD_H */
