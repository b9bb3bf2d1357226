/*
 * head/features.h: text -> sparse feature vector for task heads: Unicode-aware lower-casing
 * and tokenisation, hashed word n-grams and word-boundary character n-grams, sublinear TF,
 * IDF and per-block L2 normalisation.
 *
 * Pipeline for one text: UTF-8 decode (strict) -> lower-case each code point (fixed table,
 * see features.c) -> words = maximal runs of word characters -> block 0: word n-grams of
 * orders word_min..word_max; block 1: character n-grams of orders char_min..char_max inside
 * each word padded with a space on both sides -> each n-gram hashed (64-bit) to a bucket in
 * [0, 2^hash_bits) and a sign (signed hashing: colliding n-grams tend to cancel rather than
 * add up) -> per block, signed counts per bucket, tf = 1 + ln|count| when sublinear.
 * Vectorising maps buckets to columns (n-grams kept at training), multiplies by the column's
 * IDF, and L2-normalises each block to its weight.
 *
 * Invariants: extraction depends only on the text and the config (no locale, no library
 *  version): a head trained on one machine featurises identically on another.
 * Thread-safety: pure functions; each thread uses its own slm_head_feat_scratch.
 * Non-goals: stemming, stop words, language detection, normalisation forms (NFC/NFKC).
 */
#ifndef SLMESH_HEAD_FEATURES_H
#define SLMESH_HEAD_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

#define SLM_HEAD_FEAT_MAX_WORD_ORDER 4u /* word n-grams longer than this are mostly unique */
#define SLM_HEAD_FEAT_MAX_CHAR_ORDER 8u /* idem for character n-grams */
#define SLM_HEAD_FEAT_BLOCKS 2          /* word block, character block */

/* Text normalisation bits (text_flags). */
#define SLM_HEAD_FEAT_JOIN_APOSTROPHE 1u /* "can't" -> "cant": ' or U+2019 inside a word is dropped */
#define SLM_HEAD_FEAT_FOLD_DIGITS 2u     /* every ASCII digit -> '0': "£20" ~ "£50" */
#define SLM_HEAD_FEAT_CHAR_SPAN 4u       /* character n-grams run across word boundaries */
#define SLM_HEAD_FEAT_SKIP_BIGRAMS 8u    /* word pairs with one word between them */
#define SLM_HEAD_FEAT_EDGE_BIGRAMS 16u   /* the first and the last word, marked as such */
#define SLM_HEAD_FEAT_FLAGS_ALL 31u

typedef struct slm_head_feat_cfg {
    uint32_t hash_bits;           /* buckets = 2^hash_bits */
    uint32_t word_min, word_max;  /* word n-gram orders; word_max = 0 disables the block */
    uint32_t char_min, char_max;  /* character n-gram orders; char_max = 0 disables it */
    uint32_t sublinear;           /* 1: tf = 1 + ln(count) */
    uint32_t text_flags;          /* SLM_HEAD_FEAT_* normalisation bits */
    float word_weight;            /* L2 norm of the word block of a vector */
    float char_weight;            /* L2 norm of the character block */
    float embed_weight;           /* L2 norm of the embedding block */
} slm_head_feat_cfg;

/* The defaults of slmesh heads: 2^20 buckets, words 1-2, characters 2-5, sublinear, 1/1/1. */
void slm_head_feat_cfg_default(slm_head_feat_cfg *c);
/* SLM_OK if every field is within its limits. */
slm_status slm_head_feat_cfg_check(const slm_head_feat_cfg *c, char *err);

/* One hashed term of a block: its bucket and signed (sublinear) term frequency. */
typedef struct slm_head_feat_term {
    uint32_t bucket;
    float value;
} slm_head_feat_term;

/* Per-thread working memory; grows as needed. Zero-initialise, free with _free. */
typedef struct slm_head_feat_scratch {
    uint32_t *cps;                /* lower-cased code points of the text */
    uint64_t *tok_hash;           /* hash of each word */
    uint32_t *tok_start, *tok_len;/* word positions in cps */
    uint32_t *keys;               /* bucket << 1 | sign of every n-gram occurrence */
    uint32_t *key_tmp;            /* sort buffer, as long as keys */
    slm_head_feat_term *terms;    /* merged terms: block 0 then block 1 */
    size_t nterms[SLM_HEAD_FEAT_BLOCKS]; /* terms per block after extraction */
    size_t cap;                   /* capacity in code points of cps/tok_* */
    size_t key_cap;               /* capacity of keys and terms */
} slm_head_feat_scratch;

void slm_head_feat_scratch_free(slm_head_feat_scratch *s);

/* Extract the two blocks of text (len bytes). On success s->terms holds nterms[0] word
 * terms then nterms[1] character terms, each block sorted by bucket with unique buckets.
 * SLM_ERR_UTF8 for invalid UTF-8, SLM_ERR_LIMIT above SLM_HEAD_MAX_TEXT_BYTES. */
slm_status slm_head_feat_extract(const slm_head_feat_cfg *c, const char *text, size_t len,
                                 slm_head_feat_scratch *s, char *err);

/* Map the extracted terms to columns (col_of[bucket], -1 = dropped), multiply by idf[col]
 * and normalise each block; writes at most nterms[0] + nterms[1] entries to cols/vals and
 * returns how many. */
size_t slm_head_feat_vectorize(const slm_head_feat_cfg *c, const int32_t *col_of,
                               const float *idf, const slm_head_feat_scratch *s,
                               uint32_t *cols, float *vals);

/* Exposed for tests: the lower-casing table and the word-character class. */
uint32_t slm_head_feat_lower(uint32_t cp);
bool slm_head_feat_is_word(uint32_t cp);
/* Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF). */
bool slm_head_feat_utf8_valid(const char *s, size_t len);

#endif /* SLMESH_HEAD_FEATURES_H */
