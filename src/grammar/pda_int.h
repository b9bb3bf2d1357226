/*
 * grammar/pda_int.h: the lazily determinised byte automaton of a grammar (pda.c), shared
 * with the token masks (mask.c).
 *
 * A parse configuration is a set of stacks of grammar positions (llama.cpp's); a stack is an
 * interned persistent list (node = (position, parent node), node 0 = the empty stack), a
 * configuration plus the bytes of a code point begun but not finished is an interned STATE
 * of a DFA over bytes whose 256 transitions are computed on first use. See pda.c.
 *
 * Invariants: state 0 is the start state of an automaton made by slm_grammar_pda_new;
 * every stack of a state has a character class on top (or is the empty stack); node and
 * state counts stay under SLM_PDA_MAX_NODES / SLM_PDA_MAX_STATES (SLM_ERR_LIMIT past them).
 * Thread-safety: an automaton is used by one thread at a time (the grammar's mutex, or a
 * private scratch automaton). Non-goals: sharing automata between grammars.
 */
#ifndef SLMESH_GRAMMAR_PDA_INT_H
#define SLMESH_GRAMMAR_PDA_INT_H

#include "grammar/grammar_int.h"

#define SLM_PDA_MAX_NODES   (1u << 22)  /* interned stack nodes (16 MiB): deep recursion */
#define SLM_PDA_MAX_STATES  (1u << 16)  /* DFA states, each up to 1 KiB of transitions */
#define SLM_PDA_MASK_BYTES  (64u << 20) /* cached masks per vocabulary before the cache resets */
#define SLM_PDA_EMPTY 0u                /* the empty stack: the grammar may end */
#define SLM_PDA_DEAD  (-2)              /* transition to nothing */
#define SLM_PDA_UNKNOWN (-1)            /* transition not computed yet */
#define SLM_PDA_RUN_UNKNOWN (-1)        /* pstate.run[j] not computed */
#define SLM_PDA_RUN_MIXED (-2)          /* characters of the set diverge: walk node by node */
#define SLM_PDA_RUN_ANY INT16_MAX       /* any number of characters (>= the longest token) */

typedef struct slm_pstate {
    uint32_t off, n;   /* stacks: set_pool[off .. off + n), sorted */
    uint8_t pb[4];     /* bytes of an unfinished code point */
    uint8_t pn, need;  /* bytes held (0 = none), bytes the code point needs */
    uint8_t rem;       /* "uniform" partial state: continuation bytes still to come (0 = not
                          uniform). Its set holds only the stacks whose class accepts EVERY
                          character the bytes so far can become, so the character's exact
                          value no longer matters: CJK tokens share a few states instead of
                          one per byte prefix */
    bool complete;     /* EMPTY in the set and no unfinished code point */
    bool more;         /* some stack is non-empty */
    uint8_t run_exit;  /* bit j, valid with run[j]: some state reached from here by one or
                          more characters of set j in a row is complete (mask.c: window walks
                          cannot decide such a run by its length) */
    int32_t *trans;    /* [256] owned, lazily: next state, DEAD or UNKNOWN */
    int16_t run[SLM_GRAMMAR_MAX_CS]; /* per character set j (0: plain text, then large classes
                          of the grammar, grammar_int.h): RUN_UNKNOWN, RUN_MIXED (characters of
                          the set lead to different states somewhere on the way), or how many
                          characters of the set in a row can be taken from here (RUN_ANY: any
                          number) when every one of them leads to one same next state at each
                          step (a string body, bounded or not; an email's local part) */
} slm_pstate;

/* Per-vocabulary cache of state masks (mask.c), kept with the automaton whose states it
 * indexes. */
typedef struct slm_vmask {
    uint64_t fp;                /* the vocabulary's content hash: equal vocabularies share masks */
    int32_t n_vocab;
    size_t words;               /* mask words */
    uint32_t *slot;             /* [cap_slot] mask number + 1, 0 = not cached */
    uint32_t cap_slot;
    uint32_t **chunk;           /* [n_chunks] owned, each [SLM_VMASK_CHUNK * words]: mask i is
                                   chunk[i / SLM_VMASK_CHUNK] + (i % SLM_VMASK_CHUNK) * words
                                   (chunks, not one growing array: no copy when it grows) */
    uint32_t n_chunks;
    uint32_t n_masks;
} slm_vmask;
#define SLM_VMASK_CHUNK 16 /* masks per chunk: 300 KiB on a 150k vocabulary */

#define SLM_PDA_MAX_VOCABS 4 /* vocabularies with a mask cache per automaton */

struct slm_grammar_pda {
    uint32_t *npos, *npar;      /* [n_nodes] stack nodes: position, parent */
    uint32_t n_nodes, cap_nodes;
    uint32_t *nhash;            /* [nhash_cap] node id, 0 = free slot */
    uint32_t nhash_cap;
    uint32_t *seen;             /* [cap_nodes] closure generation per node */
    uint32_t gen;               /* current closure generation */
    uint32_t *work, n_work, cap_work; /* closure work list */
    uint32_t *out, n_out, cap_out;    /* closure result */
    slm_pstate *states;         /* [n_states] */
    uint32_t n_states, cap_states;
    uint32_t *set_pool;         /* stack ids of all states */
    size_t n_pool, cap_pool;
    uint32_t *shash;            /* [shash_cap] state id + 1, 0 = free */
    uint32_t shash_cap;
    slm_vmask vm[SLM_PDA_MAX_VOCABS];
    uint32_t n_vm, next_vm;     /* caches in use; next one to replace */
    int32_t **walk_tr;          /* [SLM_GRAMMAR_MAX_PIECE + 1] transitions per trie depth (mask.c) */
    uint64_t effort;            /* stacks expanded and interned so far: a deterministic measure of
                                   the automaton's work (mask.c bounds preparation with it) */
};

static inline uint64_t slm_grammar_mix64(uint64_t x) {
    x ^= x >> 33, x *= 0xff51afd7ed558ccdULL, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ULL, x ^= x >> 33;
    return x;
}

/* A new automaton of g with its start state 0 (*out owned by the caller). */
slm_status slm_grammar_pda_new(const slm_grammar *g, slm_grammar_pda **out);
/* The interned stack node (pos, parent); 0 on failure with *st set. */
uint32_t slm_grammar_pda_node(slm_grammar_pda *a, uint32_t pos, uint32_t parent, slm_status *st);
/* The state of the configuration made of the one stack `node` (expanded until classes are
 * on top) into *state: a state id, or DEAD when the expansion yields nothing. */
slm_status slm_grammar_pda_stack_state(const slm_grammar *g, slm_grammar_pda *a, uint32_t node, int32_t *state);
/* Transition table of state d (allocated on first use, DEAD already for the bytes no stack
 * can begin with; NULL when out of memory). */
int32_t *slm_grammar_pda_trans(const slm_grammar *g, slm_grammar_pda *a, uint32_t d);
/* Next state of d on byte b into *next (DEAD allowed). */
slm_status slm_grammar_pda_step(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint8_t b, int32_t *next);
/* run[j] (and bit j of run_exit) of state d for character set j, computed once. */
slm_status slm_grammar_pda_run(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint32_t j, int16_t *run);
/* Grow *v (capacity *cap, in elements) to hold need elements. */
bool slm_grammar_grow32(uint32_t **v, uint32_t *cap, size_t need);

/* ---- mask.c ----------------------------------------------------------------------------- */
/* OR the mask of state d of automaton a (g's own, under g->lock) for vocabulary v into
 * allowed: from the state cache, else from the position tables of g for v, else (lazy) by
 * walking the token trie. lazy = true always walks (the specification, for tests). */
slm_status slm_grammar_mask_state(slm_grammar *g, slm_grammar_pda *a, const slm_grammar_vocab *v, uint32_t d, bool lazy,
                                  uint32_t *allowed);
void slm_grammar_vmask_free(slm_vmask *m);

#endif /* SLMESH_GRAMMAR_PDA_INT_H */
