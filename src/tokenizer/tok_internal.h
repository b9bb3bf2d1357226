/*
 * tokenizer/tok_internal.h: what the tokenizer's files share: the tokenizer struct, the
 * string->id hash map, a growable id vector, UTF-8 helpers and the per-algorithm entry
 * points (tok_spm.c, tok_bpe.c, tok_bpe_pre.c, tok_wpm.c).
 *
 * Invariants: a built slm_tokenizer is immutable; every token id stored in it is in
 * [0, n_vocab); every token text is a NUL-terminated copy in the text arena. The
 * per-algorithm encoders take one fragment of raw text (never containing a special token
 * that was split out) and append ids to an slm_tok_ids vector.
 * Thread-safety: read-only after slm_tok_create; encoders keep all scratch per call.
 * Non-goals: anything the public header does not need.
 */
#ifndef SLMESH_TOK_INTERNAL_H
#define SLMESH_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---- limits ------------------------------------------------------------------------------ */
#define TOK_MAX_MERGES    (1 << 22)  /* BPE merges; real files have <= ~450k */
#define TOK_MAX_TOKEN_LEN (1 << 16)  /* bytes in one token text; real ones are < 1 KiB */
#define TOK_MAX_EOG       32         /* end-of-generation ids kept; real vocabularies have <= 8 */

/* ---- token attributes (as llama.cpp's llama_token_attr, from tokenizer.ggml.token_type) -- */
enum {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 6, /* strip spaces left of the token when parsing specials */
    TOK_ATTR_RSTRIP = 1 << 7, /* ... and right of it */
};

typedef enum tok_type { TOK_SPM, TOK_BPE, TOK_WPM } tok_type;

/* ---- string -> id map --------------------------------------------------------------------
 * Open addressing with linear probing over a power-of-two table of slots. Keys are (offset,
 * length) views into an arena the owner keeps; the map stores no bytes itself. A small map
 * of our own because no packaged C library offers one that fits: glib's GHashTable needs
 * NUL-terminated keys plus a dependency on all of glib, hsearch(3) is process-global and
 * cannot delete or resize, and the uthash/khash headers are not Debian -dev libraries we
 * link. Load factor <= 1/2, so probes stay short. */
typedef struct tok_map {
    uint32_t *slot_off; /* [cap] key offsets into the arena; UINT32_MAX = empty */
    uint32_t *slot_len; /* [cap] key lengths */
    int32_t *slot_val;  /* [cap] values */
    size_t cap;         /* slots, a power of two (0 = empty map) */
} tok_map;

slm_status tok_map_init(tok_map *m, size_t n_keys);
void tok_map_free(tok_map *m);
/* Insert key (bytes arena[off, off+len)) -> val unless the key is present; *dup tells which. */
void tok_map_put(tok_map *m, const char *arena, uint32_t off, uint32_t len, int32_t val, bool *dup);
/* Value for key, or -1. */
int32_t tok_map_get(const tok_map *m, const char *arena, const char *key, size_t len);

/* ---- growable id vector ------------------------------------------------------------------ */
typedef struct slm_tok_ids {
    int32_t *v; /* owned, slm_malloc'd */
    size_t n;   /* used */
    size_t cap; /* allocated */
} slm_tok_ids;

slm_status tok_ids_push(slm_tok_ids *ids, int32_t id);

/* ---- merge candidates: a binary min-heap (SentencePiece and BPE) --------------------------- */
typedef struct tok_pair {
    int32_t left, right; /* symbol indices */
    double key;          /* smaller merges first: -score (SPM) or the merge rank (BPE) */
    uint32_t a, b;       /* staleness check data: sizes of the symbols when the pair was made */
} tok_pair;

typedef struct tok_heap {
    tok_pair *v; /* owned */
    size_t n, cap;
} tok_heap;

/* Pop order: smaller key first, then the leftmost pair (the reference's comparators). */
slm_status tok_heap_push(tok_heap *h, tok_pair p);
tok_pair tok_heap_pop(tok_heap *h); /* h->n > 0 */

/* ---- the tokenizer ------------------------------------------------------------------------ */
typedef struct tok_token {
    uint32_t off;   /* text offset in t->text (NUL-terminated there) */
    uint32_t len;   /* text bytes */
    uint32_t poff;  /* detokenized piece offset in t->piece */
    uint32_t plen;  /* piece bytes */
    float score;    /* SentencePiece score (0 when absent) */
    uint8_t attr;   /* TOK_ATTR_* bits */
} tok_token;

struct tok_bpe_pre; /* compiled pre-tokenizer regexes (tok_bpe_pre.c) */

struct slm_tokenizer {
    tok_type type;        /* algorithm */
    int32_t n_vocab;      /* tokens */
    tok_token *tok;       /* [n_vocab], owned */
    char *text;           /* arena, owned: every token text, NUL-terminated */
    char *piece;          /* arena, owned: every token's detokenized bytes */
    tok_map vocab;        /* text -> id */
    int32_t max_token_len;/* longest token text in bytes */

    char *merge_text;     /* arena, owned: "left right" per merge (BPE) */
    tok_map merges;       /* "left right" -> rank (BPE) */
    struct tok_bpe_pre *pre; /* regexes (BPE), owned */
    bool ignore_merges;   /* a word that is a whole token is emitted as is (llama3) */

    int32_t bos, eos, eot, eom, unk, sep, pad; /* special ids, -1 when none */
    int32_t eog[TOK_MAX_EOG]; /* end-of-generation ids */
    int n_eog;
    bool add_bos, add_eos, add_sep; /* what the vocabulary asks to add */
    bool add_space_prefix; /* SPM: prefix raw text after a start/special with a space */
    bool clean_spaces;     /* decode cleanup the vocabulary asks for (SLM_TOK_CLEAN_SPACES) */

    int32_t *special;      /* owned: ids of control/user-defined/unknown tokens, longest text first */
    int32_t n_special;
};

/* ---- UTF-8 --------------------------------------------------------------------------------- */
/* Sequence length from a lead byte, as llama.cpp's unicode_len_utf8 (continuation bytes = 1). */
static inline size_t tok_utf8_len(unsigned char b) {
    static const unsigned char lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[b >> 4];
}
/* Decode one code point at s[*i] (n bytes total) the way llama.cpp's unicode_cpts_from_utf8
 * does: a malformed sequence yields U+FFFD and consumes one byte. Overlong forms and
 * surrogates are accepted as decoded (that is the reference's behaviour). */
uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *i);
/* Encode cp (> U+10FFFF becomes U+FFFD); returns bytes written (<= 4). */
size_t tok_utf8_encode(uint32_t cp, char *out);
/* llama.cpp's whitespace set (Unicode White_Space). */
bool tok_is_space(uint32_t cp);

/* ---- per-algorithm encoders: append the ids of one raw-text fragment -------------------- */
slm_status tok_spm_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out);
slm_status tok_bpe_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out);
slm_status tok_wpm_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out);

/* What the reference runtime sets per pre-tokenizer name besides the regexes. */
typedef struct tok_pre_opts {
    bool ignore_merges; /* a word that is a whole token skips the merges (llama3) */
    bool clean_spaces;  /* decode cleanup applies */
    bool add_bos;       /* default for tokenizer.ggml.add_bos_token */
} tok_pre_opts;

/* BPE pre-tokenizer: compile the regexes for a tokenizer.ggml.pre name (name_len 0 =
 * absent: the default). SLM_ERR_UNSUPPORTED for an unknown name. */
slm_status tok_bpe_pre_create(const char *name, size_t name_len, struct tok_bpe_pre **out, tok_pre_opts *opts,
                              char *err);
void tok_bpe_pre_destroy(struct tok_bpe_pre *p);
/* Split text into words; calls fn(ctx, word, word_len) for each word, already mapped to
 * the byte-level alphabet. A non-OK status from fn stops the split and is returned. */
slm_status tok_bpe_pre_split(const struct tok_bpe_pre *p, const char *text, size_t len,
                             slm_status (*fn)(void *ctx, const char *word, size_t len), void *ctx);
/* Byte-level alphabet: write the UTF-8 (1-2 bytes) of the code point standing for byte b;
 * returns its length. */
size_t tok_byte_to_unicode(unsigned char b, char out[2]);
/* Inverse: the byte a code point stands for, or -1. */
int tok_unicode_to_byte(uint32_t cp);

#endif /* SLMESH_TOK_INTERNAL_H */
