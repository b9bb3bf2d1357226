/*
 * guard/guard_tagger.h: internals shared by the tagger's inference (guard_tagger.c) and its
 * training (guard_train.c): tokens, hashed features, the weight layout, Viterbi decoding and
 * the weights file format.
 *
 * Model: a first-order linear-chain model over BIO tags, trained as an averaged structured
 * perceptron. Emission weights live in a table of TAG_BUCKETS rows (hashed features) by
 * TAG_NTAGS columns; transitions in (TAG_NTAGS + 1) x TAG_NTAGS (the last row is the start).
 * Tags: 0 = O, 1 + 2k = B of tagger type k, 2 + 2k = I of type k.
 * Thread-safety: everything here is reentrant; a model is read-only after loading.
 */
#ifndef SLMESH_GUARD_TAGGER_H
#define SLMESH_GUARD_TAGGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guard/guard_int.h"
#include "guard/guard_lexicon.h"

/* Types the tagger labels, in tag order. */
#define TAG_NTYPES 9
extern const slm_pii_type slm_guard_tag_types[TAG_NTYPES];
#define TAG_NTAGS (1 + 2 * TAG_NTYPES)
/* Hashed feature rows: 2^15 rows x 19 tags x int16 = 1.2 MB on disk; the training data has
 * about 40k distinct features, so collisions are rare enough to cost little accuracy. */
#define TAG_BUCKET_BITS 15
#define TAG_BUCKETS (1u << TAG_BUCKET_BITS)
#define TAG_NTRANS ((TAG_NTAGS + 1) * TAG_NTAGS)
/* Most features one token produces: 22 word/affix/shape features, up to 10 lexicon classes
 * at 5 positions plus 10 class-shape pairs, 4 flags = 86 (see slm_guard_tag_features). */
#define TAG_MAX_FEATS 88
/* Segments: tagging restarts at blank lines and after SEG_SOFT tokens at a sentence end;
 * SEG_HARD bounds Viterbi scratch per segment. */
#define TAG_SEG_SOFT 200
#define TAG_SEG_HARD 400
/* Bytes of a token used for its word features (longer tokens are rare and truncated). */
#define TAG_WORD_MAX 48

/* ---- tokens ---------------------------------------------------------------------------- */

typedef struct {
    size_t start, end;      /* byte span in the text */
    size_t cstart;          /* character offset of start (training maps labels with it) */
    const char *fold;       /* lower-cased word (in the caller's arena), fold_len bytes */
    uint16_t fold_len;
    char shape[12];         /* short shape: runs of X, x, d, punctuation collapsed; NUL-ended */
    uint32_t lex;           /* lexicon classes of the folded word */
    bool nl_before;         /* a newline lies between the previous token and this one */
    bool blank_before;      /* a blank line does */
    bool sent_end;          /* the token is '.', '!', '?' or ':' */
} tag_token;

typedef struct {
    tag_token *t;           /* owned array */
    size_t n, cap;
    char *arena;            /* owned: folded words, arena_cap bytes */
    size_t arena_used, arena_cap;
} tag_tokens;

/* Tokenize valid UTF-8 text into words and single punctuation characters. */
slm_status slm_guard_tag_tokenize(const char *text, size_t len, const guard_lexicon *lx,
                                  tag_tokens *out, char *err);
void slm_guard_tag_tokens_free(tag_tokens *tt);
/* End (exclusive token index) of the segment that starts at token `from`. */
size_t slm_guard_tag_segment_end(const tag_tokens *tt, size_t from);

/* Feature buckets of token i of t[0..n); returns how many (<= TAG_MAX_FEATS). */
size_t slm_guard_tag_features(const tag_token *t, size_t n, size_t i, uint32_t *feats);

/* Lower-case one code point (Latin-1, Latin Extended-A, Greek, Cyrillic, ASCII). */
uint32_t slm_guard_fold_cp(uint32_t cp);

/* ---- decoding ------------------------------------------------------------------------------ */

/* May tag `to` follow tag `from` (TAG_NTAGS = start)? I-k only after B-k or I-k. */
static inline bool slm_guard_tag_allowed(unsigned from, unsigned to) {
    if (to == 0 || (to & 1)) return true;  /* O or B-k */
    return from != TAG_NTAGS && from != 0 && (from + 1) / 2 == to / 2;
}

/* Viterbi over n tokens: emit is n x TAG_NTAGS, trans as described above; writes the best
 * tags into path. back is n x TAG_NTAGS scratch. */
void slm_guard_tag_viterbi(const float *emit, size_t n, const float *trans, float *score,
                           uint8_t *back, uint8_t *path);

/* ---- weights file ----------------------------------------------------------------------------- */

/* Layout (little endian): magic "SLMPIIT\0" | u32 version | u32 bucket_bits | u32 ntags |
 * u32 ntypes | u32 type ids[ntypes] | f32 scale | i16 emit[buckets*ntags] |
 * i16 trans[(ntags+1)*ntags] | u64 FNV-1a of everything before. Weights are w*scale rounded. */
#define TAG_FILE_MAGIC "SLMPIIT"
#define TAG_FILE_VERSION 1u

/* Write float weights quantised to int16; *bytes receives the file size. */
slm_status slm_guard_tag_save(const char *path, const float *emit, const float *trans,
                              size_t *bytes, char *err);

#endif
