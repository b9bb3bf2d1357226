/*
 * head/head_impl.h: the representation of a task head, shared by head.c (training and
 * prediction), head_io.c (files) and data.c (data sets). Not a public header.
 *
 * Invariants of a complete head:
 *  - labels[0..n_labels) are distinct, sorted byte-wise, each < SLM_HEAD_MAX_LABEL_BYTES;
 *  - buckets[0..n_cols) are distinct and < 2^feat.hash_bits, in descending document
 *    frequency (frequent n-grams share cache lines of W); col_of[buckets[c]] == c and every
 *    other col_of entry is -1;
 *  - W has (n_cols + embed_dim + 1) rows of n_labels floats: n-gram columns, embedding
 *    columns, then the bias; all finite; idf > 0; temperature in the calib.h range.
 * Thread-safety: immutable after construction (embedder set before use).
 */
#ifndef SLMESH_HEAD_IMPL_H
#define SLMESH_HEAD_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "head/features.h"
#include "slmesh/head.h"

struct slm_head {
    slm_head_feat_cfg feat;  /* feature settings */
    uint32_t n_labels;       /* k */
    char **labels;           /* owned: k NUL-terminated names */
    uint32_t n_cols;         /* n-gram columns kept at training */
    uint32_t *buckets;       /* owned: bucket of each column, distinct */
    int32_t *col_of;         /* owned: 2^hash_bits entries, bucket -> column or -1 */
    float *idf;              /* owned: n_cols IDF weights */
    uint32_t embed_dim;      /* embedding columns after the n-gram ones (0 = none) */
    float *W;                /* owned: (n_cols + embed_dim + 1) x k weights, bias last */
    float *centroids;        /* owned or NULL: (n_cols + embed_dim) x k, column c the unit
                                mean of class c's training rows (score CENTROID only) */
    uint32_t nb_rows;        /* training rows of the neighbour index (score NEIGHBOUR), or 0 */
    uint32_t *nb_ptr;        /* owned: n_cols + embed_dim + 1 offsets into nb_row/nb_val */
    uint32_t *nb_row;        /* owned: per column, the training rows using it, ascending */
    float *nb_val;           /* owned: their values, each row scaled to unit length */
    float temperature;       /* calibration: probabilities = softmax(logits / T) */
    uint32_t score;          /* slm_head_score the threshold applies to */
    float threshold;         /* escalate when score < threshold */
    int32_t oos_index;       /* label index of the out-of-scope class, or -1 */
    slm_head_embed_fn embed; /* borrowed embedder (not saved) */
    void *embed_ctx;         /* borrowed */
};

struct slm_head_data {
    char **text;       /* owned: n texts (NUL-terminated copies) */
    size_t *len;       /* byte length of each text */
    char **label;      /* owned: n labels, entries NULL when absent */
    size_t n, cap;     /* used / allocated entries */
};

/* An empty head (all pointers NULL) to fill; freed with slm_head_destroy. */
slm_head *slm_head_alloc(void);
/* Build col_of from buckets; SLM_ERR_CORRUPT if a bucket repeats or is out of range. */
slm_status slm_head_build_col_of(slm_head *h, char *err);

#endif /* SLMESH_HEAD_IMPL_H */
