/*
 * grammar/grammar_int.h: the compiled form of a grammar, shared by the GBNF parser
 * (gbnf.c), the pushdown automaton and matcher (pda.c), the token trie (vocab.c) and the
 * front ends that generate GBNF (schema.c, regex.c).
 *
 * Representation (llama.cpp's, flattened): every alternative of every rule is a run of
 * elements in elems[] ended by an END element. An element is a character class (CLS: a
 * sorted, merged list of code point ranges; negated classes are complemented at compile
 * time so matching is one search) or a reference to a rule (REF). Repetitions are expanded
 * into helper rules by the parser (x* -> R ::= x R | "", x{m,n} -> m copies then a chain of
 * optional rules), so the automaton knows only sequence, alternation and reference.
 * A position is an index into elems[]: "the element to match next".
 *
 * Invariants after slm_grammar_compile: every REF names a defined rule; no rule is left
 * recursive (directly or through nullable prefixes), so expanding references always
 * terminates; every alternative has at least its END.
 * Thread-safety: the rule arrays are immutable; the automaton (pda) is guarded by lock.
 */
#ifndef SLMESH_GRAMMAR_INT_H
#define SLMESH_GRAMMAR_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "slmesh/grammar.h"

enum { GE_END = 0, GE_REF = 1, GE_CLS = 2 };

typedef struct slm_gelem {
    uint32_t type; /* GE_END, GE_REF, GE_CLS */
    uint32_t arg;  /* REF: rule index; CLS: class index */
} slm_gelem;

typedef struct slm_gclass {
    uint32_t off; /* first range in ranges[] (pairs lo, hi) */
    uint32_t n;   /* ranges: sorted, disjoint, non-adjacent */
} slm_gclass;

typedef struct slm_grammar_pda slm_grammar_pda;   /* pda.c: lazily built byte automaton */
typedef struct slm_grammar_prep slm_grammar_prep; /* mask.c: per-position token masks of one vocabulary */
#define SLM_GRAMMAR_MAX_PREPS 4                   /* vocabularies with position tables per grammar */
#define SLM_GRAMMAR_MAX_CS 8                      /* character sets with runs (pda.c): plain text and
                                                     up to 7 classes of the grammar */

struct slm_grammar {
    atomic_long refs;       /* references; freed at 0 */
    char *gbnf;             /* owned: the source text (NUL-terminated) */
    slm_gelem *elems;       /* [n_elems] owned: all alternatives, each ended by GE_END */
    uint32_t n_elems;
    uint32_t *alt_start;    /* [n_alts] owned: first element of each alternative */
    uint32_t *rule_alt;     /* [n_rules + 1] owned: alternatives of rule r are
                               alt_start[rule_alt[r] .. rule_alt[r + 1]) */
    uint32_t n_rules;
    uint32_t root;          /* rule index of "root" */
    uint32_t *ranges;       /* [2 * n_ranges] owned: class ranges (lo, hi) */
    slm_gclass *classes;    /* [n_classes] owned */
    uint32_t n_classes;
    char **names;           /* [n_rules] owned: rule names (for errors and debugging) */
    pthread_mutex_t lock;   /* guards pda, n_matchers and prep */
    slm_grammar_pda *pda;   /* owned, created lazily by the first matcher */
    uint32_t n_matchers;    /* live matchers (their states index pda) */
    uint32_t cs_class[SLM_GRAMMAR_MAX_CS]; /* character set j >= 1 is class cs_class[j]; set 0 is
                                             plain text (see slm_grammar_pick_sets) */
    uint32_t n_cs;          /* character sets, >= 1 */
    slm_grammar_prep *prep[SLM_GRAMMAR_MAX_PREPS]; /* owned: position tables per vocabulary */
    uint32_t n_prep, next_prep; /* tables in use; next one to replace */
};

/* Bytes of GBNF a front end may generate (a schema's grammar is larger than the schema). */
#define SLM_GRAMMAR_GENERATED_MAX ((size_t)SLM_GRAMMAR_MAX_SOURCE * 8)

/* ---- gbnf.c ---------------------------------------------------------------------------- */
/* Parse and compile GBNF text into a new grammar with refs = 1 (see slm_grammar_from_gbnf). */
slm_status slm_grammar_parse_gbnf(const char *text, size_t len, slm_grammar **out, char *err);
/* Free everything (used by release and by failed compiles). */
void slm_grammar_free_all(slm_grammar *g);
/* True when class c contains code point cp. */
bool slm_grammar_cls_has(const slm_grammar *g, uint32_t c, uint32_t cp);
/* True when class c contains all of [lo, hi]. */
bool slm_grammar_cls_covers(const slm_grammar *g, uint32_t c, uint32_t lo, uint32_t hi);
/* True when class c intersects [lo, hi]. */
bool slm_grammar_cls_meets(const slm_grammar *g, uint32_t c, uint32_t lo, uint32_t hi);

/* ---- pda.c, mask.c ----------------------------------------------------------------------- */
void slm_grammar_pda_free(slm_grammar_pda *p);
/* Choose g's character sets with runs: plain text, then the largest classes (at least
 * SLM_GRAMMAR_CS_MIN code points) made of plain text only, distinct, largest first. */
void slm_grammar_pick_sets(slm_grammar *g);
void slm_grammar_prep_free(slm_grammar_prep *p);
/* The hash and size of model m's vocabulary, as slm_grammar_vocab_from_model would give them
 * (vocab.c; reads every piece, no trie). */
void slm_grammar_model_vocab_id(const struct slm_model *m, uint64_t *fp, int32_t *n_vocab);
/* True when g has tables noted for model m (a hint: models are compared, never dereferenced). */
bool slm_grammar_prepared_for(slm_grammar *g, const struct slm_model *m);
/* Note model m, whose vocabulary hashes to fp, on g's tables for that vocabulary. */
void slm_grammar_note_model(slm_grammar *g, const struct slm_model *m, uint64_t fp);
/* slm_grammar_prepare enumerating at most max_windows windows (tests: the others are then
 * computed on demand, as past the tables' limits). */
slm_status slm_grammar_prepare_limited(slm_grammar *g, const slm_grammar_vocab *v, uint32_t max_windows, char *err);
/* The mask of m's state computed by walking the whole token trie (the specification the
 * position tables are tested against), OR-ed into allowed; not cached. */
slm_status slm_grammar_matcher_mask_walk(slm_grammar_matcher *m, uint32_t *allowed, size_t n_words, char *err);

/* ---- vocab.c: the token trie ----------------------------------------------------------------
 * Nodes in depth-first preorder: node i consumes byte[i] at depth[i] (1 = first byte of a
 * token); its subtree is [i, end[i]); the tokens whose piece ends exactly there are
 * toks[tok_off[i] .. tok_off[i + 1]). Walking it once per step with the automaton's state
 * visits each shared prefix once and skips whole subtrees on a dead byte. */
/* "Plain" text: the code points U+0020..U+10FFFF but '"', '\\' and U+007F (surrogates are not
 * characters). A JSON string body (and most free text) treats all of them alike, so from a
 * state whose stack tops each take all of them or none, a token made of plain text is
 * allowed or not by its length in code points alone (pda.c: plain runs). */
#define SLM_GRAMMAR_PLAIN_RANGES 5
extern const uint32_t slm_grammar_plain_ranges[2 * SLM_GRAMMAR_PLAIN_RANGES];
#define SLM_GRAMMAR_NOT_PLAIN UINT16_MAX /* tok_cp of a token that is not plain text */

struct slm_grammar_vocab {
    int32_t n_vocab;     /* tokens */
    uint64_t fp;         /* FNV-1a hash of every piece (identifies the vocabulary) */
    uint32_t n_nodes;    /* trie nodes */
    uint32_t max_depth;  /* longest piece in the trie */
    uint8_t *byte;       /* [n_nodes] owned */
    uint16_t *depth;     /* [n_nodes] owned, 1..SLM_GRAMMAR_MAX_PIECE */
    uint32_t *end;       /* [n_nodes] owned */
    uint32_t *tok_off;   /* [n_nodes + 1] owned */
    int32_t *toks;       /* [tokens in the trie] owned */
    uint8_t *plain;      /* [n_nodes] owned: 1 when every token at or below node i is plain text */
    uint16_t *cp_before; /* [n_nodes] owned: characters begun in the bytes above node i */
    uint16_t *tok_cp;    /* [tokens in the trie] owned: code points of toks[t], or
                            SLM_GRAMMAR_NOT_PLAIN */
    uint32_t max_plain;  /* most code points of a plain token */
    uint32_t *plain_le;  /* [(max_plain + 1) * words] owned: bitset r holds the plain tokens of at
                            most r code points (a state with a plain run of r allows exactly
                            those plain tokens) */
    uint32_t *plain_le_n; /* [max_plain + 1] owned: tokens in each of those bitsets */
};

/* ---- a growable text buffer for the GBNF generators (schema.c, regex.c) ------------------ */
typedef struct slm_gbuf {
    char *p;      /* owned; NUL-terminated when ok */
    size_t n;     /* bytes used */
    size_t cap;   /* bytes allocated */
    bool failed;  /* an allocation failed or the text outgrew SLM_GRAMMAR_MAX_SOURCE * 8 */
} slm_gbuf;
void slm_gbuf_put(slm_gbuf *b, const char *s, size_t n);
void slm_gbuf_puts(slm_gbuf *b, const char *s);
void slm_gbuf_printf(slm_gbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append code point cp as a GBNF literal character (escaped when needed, no quotes). */
void slm_gbuf_lit_cp(slm_gbuf *b, uint32_t cp);

/* ---- regex.c ---------------------------------------------------------------------------- */
/* Translate regex re[len] into a GBNF expression appended to b. json_string: the regex
 * constrains the content of a JSON string, so '"', '\\' and control characters are kept out
 * of classes and written escaped when literal. Anchors: see docs. Errors as
 * slm_grammar_from_regex. */
slm_status slm_grammar_regex_to_gbnf(const char *re, size_t len, bool json_string, slm_gbuf *b, char *err);

#endif /* SLMESH_GRAMMAR_INT_H */
