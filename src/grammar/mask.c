/*
 * grammar/mask.c: the per-step token mask (which tokens of a vocabulary keep the output a
 * valid prefix from an automaton state), from tables precomputed per grammar position.
 *
 * The specification is the trie walk: from state d, walk the vocabulary's token trie
 * (vocab.c) in preorder following DFA transitions, skipping a subtree at its first dead
 * byte, and deciding subtrees of plain-text tokens by their length when the state treats
 * every plain character alike (pda.c, runs; from the walk's root, every plain token at once
 * with the vocabulary's bitsets of plain tokens by length). Without tables it cost up to
 * ~1.5 ms on a 150k vocabulary for a permissive state, paid on the first visit of every new
 * state. Table walks (preparing, exits) also decide subtrees made of one of the grammar's
 * character sets (p->node_cs) by length.
 *
 * Position tables (XGrammar's idea, adapted to persistent stacks). A state is a set of
 * stacks and a token is allowed from the set iff it is allowed from one of its stacks, so
 * the mask is the union of per-stack masks. A stack's behaviour on a token depends on its
 * top frames until the token pops past them. A WINDOW is the list of the top k frame
 * positions (q1 = the class on top, q2 below it, ...), walked once as a stack of its own
 * over the empty stack. The walk gives
 *   under: the tokens it accepts; every stack whose top k positions are the window's
 *          accepts them (the frames below only add ways to continue), and a stack of exactly
 *          these k frames accepts nothing else;
 *   exits: the trie nodes where the walk empties the window at a character boundary with
 *          tokens continuing below the node. Only there can the frames below matter: at run
 *          time each exit subtree is walked again from the state of the real frames below
 *          (the stack's remainder B), which many states share, so its transitions are warm.
 * A window whose exits hold more than n_vocab / 512 tokens (a string body window of one frame
 * pops after every character) is "deeper": it is extended by every position that can be
 * below its last frame (the return positions of that frame's rule, computed from the
 * grammar's references: a tail reference passes its caller's return positions on), up to
 * WIN_MAX_DEPTH frames. For JSON, three frames (class, repetition helper, closing quote) keep
 * a string's exits to the tokens that close it and go on (`",` ...); a frame more (what
 * follows the string) decides most of those too.
 *
 * slm_grammar_prepare enumerates every window of the grammar for a vocabulary on a private
 * scratch automaton (compile time, measured in docs/benchmarks.md); at run time the mask of
 * a new state is a few table lookups, bitset ORs and exit walks. A window missing from the
 * tables (limits, or prepare not run) is computed on first use while the visit budget
 * lasts (after it, the state is walked once instead); a state holding an unfinished
 * character, a stack that ends inside a deeper window, or a remainder that expands to
 * nothing falls back to the full walk. Every mask is then cached per (state,
 * vocabulary) as before.
 *
 * Invariants: masks from the tables equal the trie walk's (tests/test_grammar.c compares
 * them on many states of many schemas and both real vocabularies, also with tables cut
 * short; fuzz/fuzz_json_schema.c along fuzzed schemas; fuzz/fuzz_gbnf.c against brute
 * force). Tables hold no automaton ids (only grammar positions and trie nodes), so
 * they outlive a rebuilt automaton. Memory: PREP_MAX_BYTES and PREP_MAX_WINDOWS per (grammar,
 * vocabulary); past them windows are computed on demand or states walked.
 * Thread-safety: tables are built outside any lock and then published under the grammar's
 * mutex; lookups and on-demand additions run under it. Non-goals: parallel preparation.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "grammar/pda_int.h"

#define EMPTY SLM_PDA_EMPTY
#define DEAD SLM_PDA_DEAD
#define UNKNOWN SLM_PDA_UNKNOWN
#define RUN_UNKNOWN SLM_PDA_RUN_UNKNOWN
#define RUN_MIXED SLM_PDA_RUN_MIXED

#define WIN_MAX_DEPTH 8               /* frames of a window: JSON needs 3, nesting of helpers a few more */
#define PREP_MAX_WINDOWS (1u << 16)   /* windows per (grammar, vocabulary): big schemas have thousands */
#define PREP_MAX_BYTES (256u << 20)   /* table memory per (grammar, vocabulary) */
#define PREP_MAX_RET 4096             /* return positions of a rule followed when deepening */
#define PREP_MAX_VISITS (1ull << 26)  /* trie nodes visited by one preparation (a 9-property
                                         schema visits 3.6M on qwen2, 120 properties 38M; a
                                         regex of many .* walks whole tries: ~1.3 s at this
                                         bound): past it the rest is computed on demand */
#define PREP_MAX_EFFORT (1ull << 24)  /* automaton work of one preparation (pda_int.h effort,
                                         ~50 ns a unit: the benchmark's schema spends 0.23M on
                                         qwen2, 120 properties 2.9M): grammars whose states
                                         hold huge stack sets stop here, after ~1 s */
#define EXIT_BUDGET_MIN 64            /* tokens below a window's exits before it goes deeper ... */
#define EXIT_BUDGET_DIV 512           /* ... or n_vocab / 512: an exit walk at run time builds
                                         transitions of new states (~2 us each), so deeper
                                         windows pay off: 3x lower first-document maxima for
                                         ~30% more preparation (docs/benchmarks.md) */
#define NO_ENTRY UINT32_MAX           /* parent of a one-frame window */
#define BOTTOM UINT32_MAX             /* in a return set: the stack may end below the rule */

/* ---- the state mask cache ------------------------------------------------------------------ */

/* The mask cache of vocabulary v (created, or recycled from the oldest, on first use). */
static slm_vmask *vmask_of(slm_grammar_pda *a, const slm_grammar_vocab *v) {
    for (uint32_t i = 0; i < a->n_vm; i++)
        if (a->vm[i].fp == v->fp && a->vm[i].n_vocab == v->n_vocab) return &a->vm[i];
    slm_vmask *m;
    if (a->n_vm < SLM_PDA_MAX_VOCABS) {
        m = &a->vm[a->n_vm++];
    } else {
        m = &a->vm[a->next_vm];
        a->next_vm = (a->next_vm + 1) % SLM_PDA_MAX_VOCABS;
        slm_grammar_vmask_free(m);
    }
    memset(m, 0, sizeof *m);
    m->fp = v->fp, m->n_vocab = v->n_vocab;
    m->words = ((size_t)v->n_vocab + 31) / 32;
    return m;
}

void slm_grammar_vmask_free(slm_vmask *m) {
    for (uint32_t i = 0; i < m->n_chunks; i++) slm_free(m->chunk[i]);
    slm_free(m->chunk), slm_free(m->slot);
}

static uint32_t *vmask_at(const slm_vmask *m, uint32_t i) {
    return m->chunk[i / SLM_VMASK_CHUNK] + (size_t)(i % SLM_VMASK_CHUNK) * m->words;
}

/* Room for mask number m->n_masks (a new chunk when needed); NULL when out of memory. */
static uint32_t *vmask_next(slm_vmask *m) {
    const uint32_t c = m->n_masks / SLM_VMASK_CHUNK;
    if (c == m->n_chunks) {
        uint32_t **q = slm_realloc(m->chunk, ((size_t)c + 1) * sizeof *q);
        if (!q) return NULL;
        m->chunk = q;
        if (!(q[c] = slm_malloc(SLM_VMASK_CHUNK * m->words * sizeof *q[c]))) return NULL;
        m->n_chunks++;
    }
    return vmask_at(m, m->n_masks);
}

/* ---- the trie walk --------------------------------------------------------------------------- */

typedef struct walker {
    const slm_grammar *g;
    slm_grammar_pda *a;
    const slm_grammar_vocab *v;
    uint32_t *bits;           /* borrowed: the bits of allowed tokens are set here */
    const uint8_t *node_cs;   /* borrowed, NULL = plain text only (the specification): bit j of
                                 node i, every token at or below i is made of set j */
    slm_grammar_prep *rec;    /* NULL, or the tables that take the exits found (window walks) */
    size_t weight, budget;    /* tokens below the exits found; the walk stops past budget */
    bool aborted;             /* it did */
    uint32_t *log;            /* borrowed, NULL = none: ids of the bits newly set, up to cap_log */
    size_t n_log, cap_log;
    bool dense;               /* more than cap_log bits set: not listed */
    bool pops;                /* window walk: a token was allowed where the window is empty */
    uint64_t visits;          /* trie nodes visited */
} walker;

/* Allow token id (and log it when new). */
static inline void set_tok(walker *w, int32_t id) {
    uint32_t *word = &w->bits[id >> 5];
    const uint32_t m = 1u << (id & 31);
    if (*word & m) return;
    *word |= m;
    if (!w->log || w->dense) return;
    if (w->n_log < w->cap_log) w->log[w->n_log++] = (uint32_t)id;
    else w->dense = true;
}

struct slm_grammar_prep;
static bool exit_push(slm_grammar_prep *p, uint32_t node);

/* Walk the trie nodes [first, last), all deeper than base, from state d at depth base. */
static slm_status walk_range(walker *w, uint32_t first, uint32_t last, uint32_t base, uint32_t d) {
    slm_grammar_pda *a = w->a;
    const slm_grammar_vocab *v = w->v;
    slm_status st;
    if (!a->walk_tr && !(a->walk_tr = slm_malloc((SLM_GRAMMAR_MAX_PIECE + 1) * sizeof *a->walk_tr))) return SLM_ERR_NOMEM;
    int32_t **tr = a->walk_tr; /* tr[k]: transitions of the state reached at depth k */
    uint32_t sd[SLM_GRAMMAR_MAX_PIECE + 1];
    sd[base] = d;
    if (!(tr[base] = slm_grammar_pda_trans(w->g, a, d))) return SLM_ERR_NOMEM;
    bool plain_done = false; /* every plain token is decided: walk only above the others */
    if (first == 0 && last == v->n_nodes && base == 0) {
        int16_t run = a->states[d].run[0];
        if (run == RUN_UNKNOWN && (st = slm_grammar_pda_run(w->g, a, d, 0, &run))) return st;
        if (run != RUN_MIXED && !(w->rec && (a->states[d].run_exit & 1))) {
            const size_t words = ((size_t)v->n_vocab + 31) / 32;
            const uint32_t r = run >= 0 && (uint32_t)run < v->max_plain ? (uint32_t)run : v->max_plain;
            const uint32_t *le = v->plain_le + r * words;
            if (w->log && !w->dense && w->n_log + v->plain_le_n[r] <= w->cap_log) { /* few: list them */
                for (size_t x = 0; x < words; x++)
                    for (uint32_t m = le[x]; m; m &= m - 1) set_tok(w, (int32_t)(x * 32 + (size_t)__builtin_ctz(m)));
            } else {
                for (size_t x = 0; x < words; x++) w->bits[x] |= le[x];
                w->dense = w->dense || v->plain_le_n[r] > 0;
            }
            plain_done = true;
        }
    }
    for (uint32_t i = first; i < last; w->visits++) {
        const uint32_t k = v->depth[i];
        if (plain_done && v->plain[i]) {
            i = v->end[i];
            continue;
        }
        const uint8_t sets = w->node_cs ? w->node_cs[i] : 0;
        if (v->plain[i] || sets) {
            /* a subtree of tokens made of one character set: decided by their length alone
             * when the state takes the set's characters alike (plain text first; the
             * grammar's sets are plain text too, so a run of plain text holds for them) */
            const uint32_t c = sd[k - 1];
            uint32_t j = 0;
            int16_t run = a->states[c].run[0];
            if (run == RUN_UNKNOWN && (st = slm_grammar_pda_run(w->g, a, c, 0, &run))) return st;
            for (uint32_t x = 1; run == RUN_MIXED && x < w->g->n_cs; x++) {
                if (!(sets >> x & 1)) continue;
                int16_t r = a->states[c].run[x];
                if (r == RUN_UNKNOWN && (st = slm_grammar_pda_run(w->g, a, c, x, &r))) return st;
                if (r != RUN_MIXED) j = x, run = r;
            }
            /* a window walk must see every complete state on the way: its exits */
            if (run != RUN_MIXED && !(w->rec && (a->states[c].run_exit >> j & 1))) {
                /* at most run characters after the k - 1 bytes above (which end on a
                 * character boundary: the state has no character pending) */
                const uint32_t max_cp = (uint32_t)run + v->cp_before[i];
                for (uint32_t t = v->tok_off[i]; t < v->tok_off[v->end[i]]; t++)
                    if (v->tok_cp[t] <= max_cp) set_tok(w, v->toks[t]);
                i = v->end[i];
                continue;
            }
        }
        int32_t nx = tr[k - 1][v->byte[i]];
        if (nx == UNKNOWN && (st = slm_grammar_pda_step(w->g, a, sd[k - 1], v->byte[i], &nx))) return st;
        if (nx == DEAD) { /* prune the subtree */
            i = v->end[i];
            continue;
        }
        sd[k] = (uint32_t)nx;
        if (!(tr[k] = slm_grammar_pda_trans(w->g, a, (uint32_t)nx))) return SLM_ERR_NOMEM;
        for (uint32_t t = v->tok_off[i]; t < v->tok_off[i + 1]; t++) set_tok(w, v->toks[t]);
        if (w->rec && a->states[nx].complete && v->tok_off[i + 1] > v->tok_off[i]) w->pops = true;
        if (w->rec && a->states[nx].complete && v->end[i] > i + 1) { /* the window is empty here */
            if (!exit_push(w->rec, i)) return SLM_ERR_NOMEM;
            w->weight += v->tok_off[v->end[i]] - v->tok_off[i + 1];
            if (w->weight > w->budget) {
                w->aborted = true;
                return SLM_OK;
            }
        }
        i++;
    }
    return SLM_OK;
}

/* ---- position tables ------------------------------------------------------------------------- */

typedef struct wentry {
    uint32_t parent;          /* entry of the window one frame shorter; NO_ENTRY for one frame */
    uint32_t pos;             /* position of the window's deepest frame */
    uint32_t under, n_under;  /* accepted tokens: ids[under ..+ n_under), or with is_bits the
                                 bitset bits[under ..+ words) */
    uint32_t exit, n_exits;   /* trie nodes exits[exit ..+ n_exits) */
    bool is_bits;
    bool deeper;              /* too many exits: use the windows one frame deeper instead
                                 (under and exits are then empty) */
    bool pops;                /* some accepted token ends where the window is empty: right only
                                 if the frames below expand to something */
} wentry;

struct slm_grammar_prep {
    uint64_t fp;              /* the vocabulary's content hash */
    const void *model;        /* a model with this vocabulary (slm_grammar_note_model), or NULL:
                                 compared, never dereferenced */
    int32_t n_vocab;
    size_t words;             /* bitset words */
    size_t budget;            /* exit tokens before a window goes deeper */
    wentry *e;                /* [n_e] owned */
    uint32_t n_e, cap_e;
    uint32_t *ehash;          /* [ehash_cap] entry + 1, 0 = free; key (parent, pos) */
    uint32_t ehash_cap;
    uint32_t *ids, n_ids, cap_ids;       /* owned: token lists */
    uint32_t *bits, n_bits, cap_bits;    /* owned: bitsets (words each) */
    uint32_t *bhash, bhash_cap;          /* bitset number + 1, 0 = free: identical bitsets stored once */
    uint32_t *lhash, lhash_cap, n_lists; /* entry + 1 of a list window, 0 = free: identical lists once */
    uint32_t *exits, n_exits, cap_exits; /* owned: trie nodes */
    uint32_t *scratch;        /* [words] owned: a window's tokens while walking (zero between) */
    uint32_t *log;            /* [words] owned: the ids set in scratch, while fewer than words */
    uint64_t visits;          /* trie nodes visited by window walks so far */
    uint8_t *node_cs;         /* [n_nodes] owned, NULL when g has no set but plain text: bit j
                                 (j >= 1) of node i, every token at or below it is made of
                                 characters of g's set j */
};

static bool exit_push(slm_grammar_prep *p, uint32_t node) {
    if (!slm_grammar_grow32(&p->exits, &p->cap_exits, (size_t)p->n_exits + 1)) return false;
    p->exits[p->n_exits++] = node;
    return true;
}

static size_t prep_bytes(const slm_grammar_prep *p) {
    return (size_t)p->cap_e * sizeof *p->e + (size_t)p->ehash_cap * 4 + (size_t)p->cap_ids * 4 +
           (size_t)p->cap_bits * 4 + (size_t)p->bhash_cap * 4 + (size_t)p->lhash_cap * 4 + (size_t)p->cap_exits * 4;
}

static slm_status prep_new(const slm_grammar_vocab *v, slm_grammar_prep **out) {
    slm_grammar_prep *p = slm_calloc(1, sizeof *p);
    if (!p) return SLM_ERR_NOMEM;
    p->fp = v->fp, p->n_vocab = v->n_vocab;
    p->words = ((size_t)v->n_vocab + 31) / 32;
    p->budget = (size_t)v->n_vocab / EXIT_BUDGET_DIV > EXIT_BUDGET_MIN ? (size_t)v->n_vocab / EXIT_BUDGET_DIV : EXIT_BUDGET_MIN;
    p->scratch = slm_calloc(p->words, sizeof *p->scratch);
    p->log = slm_malloc(p->words * sizeof *p->log);
    if (!p->scratch || !p->log) {
        slm_grammar_prep_free(p);
        return SLM_ERR_NOMEM;
    }
    *out = p;
    return SLM_OK;
}

void slm_grammar_prep_free(slm_grammar_prep *p) {
    if (!p) return;
    slm_free(p->e), slm_free(p->ehash), slm_free(p->ids), slm_free(p->bits), slm_free(p->bhash), slm_free(p->lhash);
    slm_free(p->exits), slm_free(p->scratch), slm_free(p->log), slm_free(p->node_cs);
    slm_free(p);
}

static uint32_t ekey(uint32_t parent, uint32_t pos) { return (uint32_t)slm_grammar_mix64((uint64_t)parent << 32 | pos); }

static uint32_t entry_find(const slm_grammar_prep *p, uint32_t parent, uint32_t pos) {
    if (!p->ehash_cap) return NO_ENTRY;
    for (uint32_t i = ekey(parent, pos) & (p->ehash_cap - 1); p->ehash[i]; i = (i + 1) & (p->ehash_cap - 1)) {
        const wentry *e = &p->e[p->ehash[i] - 1];
        if (e->parent == parent && e->pos == pos) return p->ehash[i] - 1;
    }
    return NO_ENTRY;
}

/* Append entry e (its key not present yet); its id into *id. */
static slm_status entry_insert(slm_grammar_prep *p, const wentry *e, uint32_t *id) {
    if (p->n_e >= PREP_MAX_WINDOWS || prep_bytes(p) > PREP_MAX_BYTES) return SLM_ERR_LIMIT;
    if (2 * ((size_t)p->n_e + 1) > p->ehash_cap) { /* rehash at load 1/2 */
        const uint32_t nc = p->ehash_cap ? 2 * p->ehash_cap : 256;
        uint32_t *h = slm_calloc(nc, sizeof *h);
        if (!h) return SLM_ERR_NOMEM;
        for (uint32_t k = 0; k < p->n_e; k++) {
            uint32_t i = ekey(p->e[k].parent, p->e[k].pos) & (nc - 1);
            while (h[i]) i = (i + 1) & (nc - 1);
            h[i] = k + 1;
        }
        slm_free(p->ehash);
        p->ehash = h, p->ehash_cap = nc;
    }
    if (p->n_e == p->cap_e) {
        const uint32_t nc = p->cap_e ? 2 * p->cap_e : 256;
        wentry *q = slm_realloc(p->e, (size_t)nc * sizeof *q);
        if (!q) return SLM_ERR_NOMEM;
        p->e = q, p->cap_e = nc;
    }
    uint32_t i = ekey(e->parent, e->pos) & (p->ehash_cap - 1);
    while (p->ehash[i]) i = (i + 1) & (p->ehash_cap - 1);
    p->ehash[i] = p->n_e + 1;
    p->e[p->n_e] = *e;
    *id = p->n_e++;
    return SLM_OK;
}

static uint64_t hash_words(const uint32_t *w, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++) h = slm_grammar_mix64(h ^ w[i]);
    return h;
}

/* Store the bitset p->scratch (or find an identical one); its offset into *off. */
static slm_status bits_store(slm_grammar_prep *p, uint32_t *off) {
    const size_t words = p->words;
    const uint64_t h = hash_words(p->scratch, words);
    const uint32_t n_sets = p->n_bits / (uint32_t)words;
    if (p->bhash_cap)
        for (uint32_t i = (uint32_t)h & (p->bhash_cap - 1); p->bhash[i]; i = (i + 1) & (p->bhash_cap - 1))
            if (!memcmp(p->bits + (size_t)(p->bhash[i] - 1) * words, p->scratch, words * sizeof *p->scratch))
                return *off = (uint32_t)((p->bhash[i] - 1) * words), SLM_OK;
    if (2 * ((size_t)n_sets + 1) > p->bhash_cap) {
        const uint32_t nc = p->bhash_cap ? 2 * p->bhash_cap : 64;
        uint32_t *t = slm_calloc(nc, sizeof *t);
        if (!t) return SLM_ERR_NOMEM;
        for (uint32_t k = 0; k < n_sets; k++) {
            uint32_t i = (uint32_t)hash_words(p->bits + (size_t)k * words, words) & (nc - 1);
            while (t[i]) i = (i + 1) & (nc - 1);
            t[i] = k + 1;
        }
        slm_free(p->bhash);
        p->bhash = t, p->bhash_cap = nc;
    }
    if ((size_t)p->n_bits + words > UINT32_MAX || !slm_grammar_grow32(&p->bits, &p->cap_bits, p->n_bits + words))
        return SLM_ERR_NOMEM;
    memcpy(p->bits + p->n_bits, p->scratch, words * sizeof *p->scratch);
    uint32_t i = (uint32_t)h & (p->bhash_cap - 1);
    while (p->bhash[i]) i = (i + 1) & (p->bhash_cap - 1);
    p->bhash[i] = n_sets + 1;
    *off = p->n_bits;
    p->n_bits += (uint32_t)words;
    return SLM_OK;
}

/* Store the list log[0..n) (or find an identical one: lists of equal sets come in the same
 * trie order); its offset into *off. */
static slm_status ids_store(slm_grammar_prep *p, const uint32_t *log, uint32_t n, uint32_t *off) {
    const uint64_t h = hash_words(log, n) ^ n;
    if (p->lhash_cap)
        for (uint32_t i = (uint32_t)h & (p->lhash_cap - 1); p->lhash[i]; i = (i + 1) & (p->lhash_cap - 1)) {
            const wentry *e = &p->e[p->lhash[i] - 1];
            if (e->n_under == n && !memcmp(p->ids + e->under, log, (size_t)n * sizeof *log)) return *off = e->under, SLM_OK;
        }
    if (!slm_grammar_grow32(&p->ids, &p->cap_ids, (size_t)p->n_ids + n)) return SLM_ERR_NOMEM;
    if (n) memcpy(p->ids + p->n_ids, log, (size_t)n * sizeof *log);
    *off = p->n_ids;
    p->n_ids += n;
    return SLM_OK;
}

/* Index list entry id (its list just stored) for ids_store's lookups. */
static slm_status ids_index(slm_grammar_prep *p, uint32_t id) {
    if (2 * ((size_t)p->n_lists + 1) > p->lhash_cap) {
        const uint32_t nc = p->lhash_cap ? 2 * p->lhash_cap : 256;
        uint32_t *t = slm_calloc(nc, sizeof *t);
        if (!t) return SLM_ERR_NOMEM;
        for (uint32_t k = 0; k < p->lhash_cap; k++) {
            if (!p->lhash[k]) continue;
            const wentry *e = &p->e[p->lhash[k] - 1];
            uint32_t i = (uint32_t)(hash_words(p->ids + e->under, e->n_under) ^ e->n_under) & (nc - 1);
            while (t[i]) i = (i + 1) & (nc - 1);
            t[i] = p->lhash[k];
        }
        slm_free(p->lhash);
        p->lhash = t, p->lhash_cap = nc;
    }
    const wentry *e = &p->e[id];
    uint32_t i = (uint32_t)(hash_words(p->ids + e->under, e->n_under) ^ e->n_under) & (p->lhash_cap - 1);
    for (; p->lhash[i]; i = (i + 1) & (p->lhash_cap - 1)) {
        const wentry *o = &p->e[p->lhash[i] - 1];
        if (o->under == e->under && o->n_under == e->n_under) return SLM_OK; /* shares an indexed list */
    }
    p->lhash[i] = id + 1;
    p->n_lists++;
    return SLM_OK;
}

/* Walk the window frames[0..k) (frames[0] on top) over the empty stack in automaton a and
 * store it under (parent, frames[k - 1]). can_deepen: with too many exits, store it as
 * "deeper" instead (the caller then adds the longer windows). */
static slm_status window_add(slm_grammar_prep *p, const slm_grammar *g, slm_grammar_pda *a, const slm_grammar_vocab *v,
                             uint32_t parent, const uint32_t *frames, uint32_t k, bool can_deepen, uint32_t *id) {
    const uint32_t exit0 = p->n_exits;
    /* p->scratch is all zero between calls; a list window clears its own bits again */
    walker w = {.g = g, .a = a, .v = v, .bits = p->scratch, .node_cs = p->node_cs, .rec = p,
                .budget = can_deepen ? p->budget : SIZE_MAX, .log = p->log, .cap_log = p->words};
    slm_status st = SLM_OK;
    uint32_t node = EMPTY;
    for (uint32_t j = k; j-- > 0 && st == SLM_OK;) node = slm_grammar_pda_node(a, frames[j], node, &st);
    int32_t s = DEAD;
    if (st == SLM_OK) st = slm_grammar_pda_stack_state(g, a, node, &s);
    if (st == SLM_OK && s != DEAD) st = walk_range(&w, 0, v->n_nodes, 0, (uint32_t)s);
    const bool dense = w.dense;
    p->visits += w.visits;
    wentry e = {.parent = parent, .pos = frames[k - 1], .exit = exit0, .n_exits = p->n_exits - exit0, .pops = w.pops};
    if (st == SLM_OK && w.aborted) {
        p->n_exits = exit0;
        e.n_exits = 0, e.deeper = true;
    } else if (st == SLM_OK && dense) { /* a list would be larger than the bitset */
        e.is_bits = true;
        st = bits_store(p, &e.under);
    } else if (st == SLM_OK) {
        e.n_under = (uint32_t)w.n_log;
        st = ids_store(p, p->log, e.n_under, &e.under);
    }
    if (dense || st) {
        memset(p->scratch, 0, p->words * sizeof *p->scratch);
    } else {
        for (size_t i = 0; i < w.n_log; i++) p->scratch[p->log[i] >> 5] = 0;
    }
    if (st == SLM_OK) st = entry_insert(p, &e, id);
    if (st == SLM_OK && !e.is_bits && !e.deeper && e.n_under > 0) st = ids_index(p, *id);
    if (st) p->n_exits = exit0;
    return st;
}

/* ---- preparing: every window of a grammar ------------------------------------------------------ */

typedef struct prepctx {
    const slm_grammar *g;
    const slm_grammar_vocab *v;
    slm_grammar_prep *p;
    slm_grammar_pda *a;        /* owned: scratch automaton, renewed when it grows large */
    uint32_t *rule_of;         /* [n_elems] owned: rule of each element */
    uint8_t *reach;            /* [n_rules] owned: reachable from root */
    uint32_t **ret;            /* [n_rules] owned: sorted return positions (BOTTOM last) */
    uint32_t *n_ret, *cap_ret; /* [n_rules] owned */
    uint8_t *wide;             /* [n_rules] owned: return set past PREP_MAX_RET (never deepen) */
    uint32_t max_windows;      /* windows to enumerate (the rest on demand) */
    uint64_t effort;           /* automaton work of the scratch automata already freed */
    uint32_t frames[WIN_MAX_DEPTH];
} prepctx;

static bool set_push(prepctx *c, uint32_t r, uint32_t x) {
    if (!slm_grammar_grow32(&c->ret[r], &c->cap_ret[r], (size_t)c->n_ret[r] + 1)) return false;
    c->ret[r][c->n_ret[r]++] = x;
    return true;
}

static int cmp_u32(const void *x, const void *y) {
    const uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* ret[to] |= ret[from] (both sorted, distinct) through buf; *grew when it did. A set past
 * PREP_MAX_RET stops growing and makes its rule wide. */
static bool set_merge(prepctx *c, uint32_t to, uint32_t from, uint32_t **buf, uint32_t *cap, bool *grew) {
    const uint32_t na = c->n_ret[to], nb = c->n_ret[from];
    if (!slm_grammar_grow32(buf, cap, (size_t)na + nb)) return false;
    const uint32_t *x = c->ret[to], *y = c->ret[from];
    uint32_t i = 0, k = 0, n = 0;
    while (i < na || k < nb) {
        const uint32_t v = k >= nb || (i < na && x[i] <= y[k]) ? x[i] : y[k];
        if (i < na && x[i] == v) i++;
        if (k < nb && y[k] == v) k++;
        (*buf)[n++] = v;
    }
    if (n == na) return true;
    *grew = true;
    if (n > PREP_MAX_RET) return c->wide[to] = 1, true;
    uint32_t *t = c->ret[to]; /* swap the buffers: buf becomes the set */
    const uint32_t tc = c->cap_ret[to];
    c->ret[to] = *buf, c->cap_ret[to] = *cap, c->n_ret[to] = n;
    *buf = t, *cap = tc;
    return true;
}

/* ret[R]: the positions a frame of rule R can have below it. A reference to R at e that is
 * not last in its alternative returns to e + 1; a last one (a tail reference: the automaton
 * pushes no frame for it) passes on the return positions of the rule containing it; the root
 * returns to the bottom. Fixpoint over the tail references. */
static slm_status return_sets(prepctx *c) {
    const slm_grammar *g = c->g;
    const uint32_t n = g->n_rules;
    for (uint32_t r = 0; r < n; r++)
        for (uint32_t alt = g->rule_alt[r]; alt < g->rule_alt[r + 1]; alt++)
            for (uint32_t e = g->alt_start[alt];; e++) {
                c->rule_of[e] = r;
                if (g->elems[e].type == GE_END) break;
            }
    uint32_t *todo = slm_malloc((size_t)n * sizeof *todo), nt = 0;
    if (!todo) return SLM_ERR_NOMEM;
    c->reach[g->root] = 1, todo[nt++] = g->root;
    while (nt > 0) {
        const uint32_t r = todo[--nt];
        for (uint32_t e = g->alt_start[g->rule_alt[r]]; e < (r + 1 < n ? g->alt_start[g->rule_alt[r + 1]] : g->n_elems); e++)
            if (g->elems[e].type == GE_REF && !c->reach[g->elems[e].arg]) c->reach[g->elems[e].arg] = 1, todo[nt++] = g->elems[e].arg;
    }
    slm_free(todo);
    if (!set_push(c, g->root, BOTTOM)) return SLM_ERR_NOMEM;
    for (uint32_t e = 0; e < g->n_elems; e++)
        if (g->elems[e].type == GE_REF && c->reach[c->rule_of[e]] && g->elems[e + 1].type != GE_END &&
            !set_push(c, g->elems[e].arg, e + 1))
            return SLM_ERR_NOMEM;
    for (uint32_t r = 0; r < n; r++) { /* sorted and distinct */
        if (c->n_ret[r] < 2) continue;
        qsort(c->ret[r], c->n_ret[r], sizeof *c->ret[r], cmp_u32);
        uint32_t m = 1;
        for (uint32_t i = 1; i < c->n_ret[r]; i++)
            if (c->ret[r][i] != c->ret[r][m - 1]) c->ret[r][m++] = c->ret[r][i];
        c->n_ret[r] = m;
        if (m > PREP_MAX_RET) c->wide[r] = 1, c->n_ret[r] = PREP_MAX_RET;
    }
    uint32_t *buf = NULL, cap = 0;
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t e = 0; e < g->n_elems; e++) {
            if (g->elems[e].type != GE_REF || g->elems[e + 1].type != GE_END || !c->reach[c->rule_of[e]]) continue;
            const uint32_t to = g->elems[e].arg, from = c->rule_of[e];
            if (to == from) continue;
            if (c->wide[from] && !c->wide[to]) c->wide[to] = 1, changed = true;
            if (c->wide[to]) continue;
            if (!set_merge(c, to, from, &buf, &cap, &changed)) {
                slm_free(buf);
                return SLM_ERR_NOMEM;
            }
        }
    }
    slm_free(buf);
    return SLM_OK;
}

/* Add the window frames[0..k) under parent and, when it goes deeper, every extension. */
static slm_status enumerate(prepctx *c, uint32_t parent, uint32_t k) {
    slm_status st;
    if (c->p->visits > PREP_MAX_VISITS || c->effort + c->a->effort > PREP_MAX_EFFORT || c->p->n_e >= c->max_windows)
        return SLM_ERR_LIMIT; /* the rest on demand */
    if (c->a->n_states > SLM_PDA_MAX_STATES / 2 || c->a->n_nodes > SLM_PDA_MAX_NODES / 2) {
        c->effort += c->a->effort;
        slm_grammar_pda_free(c->a); /* a fresh scratch automaton rather than its limits */
        c->a = NULL;
        if ((st = slm_grammar_pda_new(c->g, &c->a))) return st;
    }
    const uint32_t r = c->rule_of[c->frames[k - 1]];
    const bool bottom = c->n_ret[r] > 0 && c->ret[r][c->n_ret[r] - 1] == BOTTOM;
    const bool can = k < WIN_MAX_DEPTH && !bottom && !c->wide[r] && c->n_ret[r] > 0;
    uint32_t id;
    if ((st = window_add(c->p, c->g, c->a, c->v, parent, c->frames, k, can, &id))) return st;
    if (!c->p->e[id].deeper) return SLM_OK;
    for (uint32_t i = 0; i < c->n_ret[r]; i++) {
        c->frames[k] = c->ret[r][i];
        if ((st = enumerate(c, id, k + 1))) return st;
    }
    return SLM_OK;
}

/* p->node_cs for g's character sets beyond plain text: decode every token along its trie
 * path (a set's token is valid UTF-8 of whole characters of the set), then AND up the
 * subtrees. */
static slm_status set_flags(const slm_grammar *g, const slm_grammar_vocab *v, slm_grammar_prep *p) {
    if (g->n_cs < 2) return SLM_OK;
    const uint32_t n_tok = v->tok_off[v->n_nodes];
    uint8_t *tm = slm_malloc(n_tok ? n_tok : 1);
    p->node_cs = slm_malloc(v->n_nodes ? v->n_nodes : 1);
    if (!tm || !p->node_cs) {
        slm_free(tm);
        return SLM_ERR_NOMEM;
    }
    const uint8_t all = (uint8_t)((1u << g->n_cs) - 2); /* sets 1 .. n_cs - 1 */
    uint8_t ascii[128], wide = 0; /* wide: the sets with characters beyond ASCII */
    for (uint32_t c = 0; c < 128; c++) {
        ascii[c] = 0;
        for (uint32_t j = 1; j < g->n_cs; j++)
            if (slm_grammar_cls_has(g, g->cs_class[j], c)) ascii[c] |= (uint8_t)(1u << j);
    }
    for (uint32_t j = 1; j < g->n_cs; j++) {
        const slm_gclass *c = &g->classes[g->cs_class[j]];
        if (g->ranges[2 * (c->off + c->n - 1) + 1] >= 0x80) wide |= (uint8_t)(1u << j);
    }
    static const uint8_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint8_t acc[SLM_GRAMMAR_MAX_PIECE + 1], left[SLM_GRAMMAR_MAX_PIECE + 1]; /* per depth: sets of the
                                                    whole characters so far; continuation bytes to come */
    uint32_t cpv[SLM_GRAMMAR_MAX_PIECE + 1];     /* per depth: the character being decoded */
    acc[0] = all, left[0] = 0, cpv[0] = 0;
    for (uint32_t i = 0; i < v->n_nodes; i++) {
        const uint32_t k = v->depth[i];
        const uint8_t b = v->byte[i];
        if (left[k - 1] == 0) { /* a character starts */
            const uint8_t need = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
            acc[k] = need == 1 ? acc[k - 1] & ascii[b] : need ? acc[k - 1] & wide : 0;
            left[k] = need > 1 ? (uint8_t)(need - 1) : 0;
            cpv[k] = need > 1 ? b & lead_mask[need] : 0;
        } else if ((b & 0xC0) != 0x80) { /* not a continuation: no set's token */
            acc[k] = 0, left[k] = 0, cpv[k] = 0;
        } else {
            cpv[k] = cpv[k - 1] << 6 | (b & 0x3Fu);
            left[k] = (uint8_t)(left[k - 1] - 1);
            acc[k] = acc[k - 1];
            if (left[k] == 0)
                for (uint32_t j = 1; j < g->n_cs && acc[k]; j++)
                    if ((acc[k] >> j & 1) && !slm_grammar_cls_has(g, g->cs_class[j], cpv[k])) acc[k] &= (uint8_t)~(1u << j);
        }
        for (uint32_t t = v->tok_off[i]; t < v->tok_off[i + 1]; t++)
            tm[t] = left[k] == 0 && v->tok_cp[t] != SLM_GRAMMAR_NOT_PLAIN ? acc[k] : 0;
    }
    for (uint32_t i = v->n_nodes; i-- > 0;) { /* children are done before their parent */
        uint8_t m = all;
        for (uint32_t t = v->tok_off[i]; t < v->tok_off[i + 1]; t++) m &= tm[t];
        for (uint32_t c = i + 1; c < v->end[i]; c = v->end[c]) m &= p->node_cs[c];
        p->node_cs[i] = m;
    }
    slm_free(tm);
    return SLM_OK;
}

/* The tables of g for v (*out owned by the caller). Past the limits the tables stop
 * growing (SLM_OK); the remaining windows are computed on demand. */
static slm_status prep_build(const slm_grammar *g, const slm_grammar_vocab *v, uint32_t max_windows, slm_grammar_prep **out) {
    *out = NULL;
    const uint32_t n = g->n_rules;
    prepctx c = {.g = g, .v = v, .max_windows = max_windows};
    slm_status st = prep_new(v, &c.p);
    if (st) return st;
    c.rule_of = slm_malloc((size_t)g->n_elems * sizeof *c.rule_of);
    c.reach = slm_calloc(n, 1);
    c.ret = slm_calloc(n, sizeof *c.ret);
    c.n_ret = slm_calloc(n, sizeof *c.n_ret);
    c.cap_ret = slm_calloc(n, sizeof *c.cap_ret);
    c.wide = slm_calloc(n, 1);
    if (!c.rule_of || !c.reach || !c.ret || !c.n_ret || !c.cap_ret || !c.wide) st = SLM_ERR_NOMEM;
    if (st == SLM_OK) st = set_flags(g, v, c.p);
    if (st == SLM_OK) st = return_sets(&c);
    if (st == SLM_OK) st = slm_grammar_pda_new(g, &c.a);
    for (uint32_t e = 0; st == SLM_OK && e < g->n_elems; e++) {
        if (g->elems[e].type != GE_CLS || !c.reach[c.rule_of[e]]) continue;
        c.frames[0] = e;
        st = enumerate(&c, NO_ENTRY, 1);
    }
    if (st == SLM_ERR_LIMIT) st = SLM_OK; /* keep what fits */
    slm_grammar_pda_free(c.a);
    for (uint32_t r = 0; c.ret && r < n; r++) slm_free(c.ret[r]);
    slm_free(c.rule_of), slm_free(c.reach), slm_free(c.ret), slm_free(c.n_ret), slm_free(c.cap_ret), slm_free(c.wide);
    if (st) {
        slm_grammar_prep_free(c.p);
        return st;
    }
    *out = c.p;
    return SLM_OK;
}

/* The tables of g for v, or NULL. Caller holds g->lock. */
static slm_grammar_prep *prep_find(const slm_grammar *g, const slm_grammar_vocab *v) {
    for (uint32_t i = 0; i < g->n_prep; i++)
        if (g->prep[i]->fp == v->fp && g->prep[i]->n_vocab == v->n_vocab) return g->prep[i];
    return NULL;
}

slm_status slm_grammar_prepare(slm_grammar *g, const slm_grammar_vocab *v, char *err) {
    return slm_grammar_prepare_limited(g, v, PREP_MAX_WINDOWS, err);
}

slm_status slm_grammar_prepare_limited(slm_grammar *g, const slm_grammar_vocab *v, uint32_t max_windows, char *err) {
    if (!g || !v) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL grammar or vocabulary");
    pthread_mutex_lock(&g->lock);
    const bool have = prep_find(g, v) != NULL;
    pthread_mutex_unlock(&g->lock);
    if (have) return SLM_OK;
    slm_grammar_prep *p;
    slm_status st = prep_build(g, v, max_windows, &p); /* outside the lock: reads only immutable rules */
    if (st) return slm_errf(err, st, "grammar position tables: %s", slm_status_str(st));
    pthread_mutex_lock(&g->lock);
    if (prep_find(g, v)) { /* another thread was faster */
        slm_grammar_prep_free(p);
    } else if (g->n_prep < SLM_GRAMMAR_MAX_PREPS) {
        g->prep[g->n_prep++] = p;
    } else {
        slm_grammar_prep_free(g->prep[g->next_prep]);
        g->prep[g->next_prep] = p;
        g->next_prep = (g->next_prep + 1) % SLM_GRAMMAR_MAX_PREPS;
    }
    pthread_mutex_unlock(&g->lock);
    return SLM_OK;
}

bool slm_grammar_prepared_for(slm_grammar *g, const struct slm_model *m) {
    pthread_mutex_lock(&g->lock);
    bool have = false;
    for (uint32_t i = 0; i < g->n_prep; i++) have = have || g->prep[i]->model == (const void *)m;
    pthread_mutex_unlock(&g->lock);
    return have;
}

void slm_grammar_note_model(slm_grammar *g, const struct slm_model *m, uint64_t fp) {
    pthread_mutex_lock(&g->lock);
    for (uint32_t i = 0; i < g->n_prep; i++) {
        if (g->prep[i]->model == (const void *)m) g->prep[i]->model = NULL; /* m was reloaded elsewhere */
        if (g->prep[i]->fp == fp) g->prep[i]->model = m;
    }
    pthread_mutex_unlock(&g->lock);
}

slm_status slm_grammar_prepare_model(slm_grammar *g, const struct slm_model *m, char *err) {
    if (!g || !m) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL grammar or model");
    if (slm_grammar_prepared_for(g, m)) return SLM_OK;
    slm_grammar_vocab *v;
    slm_status st = slm_grammar_vocab_from_model(m, &v, err);
    if (st == SLM_OK) st = slm_grammar_prepare(g, v, err);
    if (st == SLM_OK) slm_grammar_note_model(g, m, v->fp);
    slm_grammar_vocab_destroy(v);
    return st;
}

/* ---- masks ------------------------------------------------------------------------------------ */

/* The mask of state d from the tables p into dst (zeroed by the caller). *fallback: the
 * tables cannot give it (a character pending, a stack ending inside a deeper window, a
 * remainder that expands to nothing, table limits): walk instead. */
static slm_status mask_windows(const slm_grammar *g, slm_grammar_pda *a, slm_grammar_prep *p, const slm_grammar_vocab *v,
                               uint32_t d, uint32_t *dst, bool *fallback) {
    const slm_pstate ps = a->states[d];
    if (ps.pn || ps.rem) return *fallback = true, SLM_OK;
    uint32_t *set = slm_malloc((size_t)ps.n * sizeof *set); /* the walks below may move set_pool */
    if (!set) return SLM_ERR_NOMEM;
    memcpy(set, a->set_pool + ps.off, (size_t)ps.n * sizeof *set);
    slm_status st = SLM_OK;
    uint32_t last_b = EMPTY; /* remainder whose state is state_b */
    int32_t state_b = DEAD;
    for (uint32_t i = 0; i < ps.n && st == SLM_OK && !*fallback; i++) {
        if (set[i] == EMPTY) continue;
        uint32_t frames[WIN_MAX_DEPTH], k = 1, cur = a->npar[set[i]], parent = NO_ENTRY;
        frames[0] = a->npos[set[i]];
        uint32_t id = entry_find(p, NO_ENTRY, frames[0]);
        if (id == NO_ENTRY && p->visits > PREP_MAX_VISITS) st = SLM_ERR_LIMIT; /* spent: one walk instead */
        else if (id == NO_ENTRY) st = window_add(p, g, a, v, NO_ENTRY, frames, 1, cur != EMPTY, &id);
        while (st == SLM_OK && p->e[id].deeper) {
            if (cur == EMPTY || k == WIN_MAX_DEPTH) {
                *fallback = true;
                break;
            }
            parent = id;
            frames[k++] = a->npos[cur];
            cur = a->npar[cur];
            if ((id = entry_find(p, parent, frames[k - 1])) == NO_ENTRY)
                st = p->visits > PREP_MAX_VISITS ? SLM_ERR_LIMIT
                                                 : window_add(p, g, a, v, parent, frames, k, cur != EMPTY && k < WIN_MAX_DEPTH, &id);
        }
        if (st == SLM_ERR_LIMIT) st = SLM_OK, *fallback = true;
        if (st || *fallback) break;
        const wentry e = p->e[id];
        if (e.is_bits) {
            const uint32_t *b = p->bits + e.under;
            for (size_t w = 0; w < p->words; w++) dst[w] |= b[w];
        } else {
            for (uint32_t t = 0; t < e.n_under; t++) dst[p->ids[e.under + t] >> 5] |= 1u << (p->ids[e.under + t] & 31);
        }
        if (cur == EMPTY) continue; /* the window is the whole stack: exact */
        if (e.n_exits == 0 && !e.pops) continue; /* no token reaches the frames below */
        if (cur != last_b) {
            last_b = cur;
            if ((st = slm_grammar_pda_stack_state(g, a, cur, &state_b))) break;
        }
        if (state_b == DEAD) { /* the frames below expand to nothing: the window's pops are wrong */
            *fallback = true;
            break;
        }
        walker w = {.g = g, .a = a, .v = v, .bits = dst, .node_cs = p->node_cs, .budget = SIZE_MAX};
        for (uint32_t x = 0; x < e.n_exits && st == SLM_OK; x++) {
            const uint32_t node = p->exits[e.exit + x];
            st = walk_range(&w, node + 1, v->end[node], v->depth[node], (uint32_t)state_b);
        }
    }
    slm_free(set);
    return st;
}

slm_status slm_grammar_mask_state(slm_grammar *g, slm_grammar_pda *a, const slm_grammar_vocab *v, uint32_t d, bool lazy,
                                  uint32_t *allowed) {
    if (lazy) {
        walker w = {.g = g, .a = a, .v = v, .bits = allowed, .budget = SIZE_MAX};
        return walk_range(&w, 0, v->n_nodes, 0, d);
    }
    slm_vmask *m = vmask_of(a, v);
    if (d < m->cap_slot && m->slot[d]) {
        const uint32_t *src = vmask_at(m, m->slot[d] - 1);
        for (size_t i = 0; i < m->words; i++) allowed[i] |= src[i];
        return SLM_OK;
    }
    const uint32_t old_cap = m->cap_slot;
    if (!slm_grammar_grow32(&m->slot, &m->cap_slot, (size_t)d + 1)) return SLM_ERR_NOMEM;
    if (m->cap_slot > old_cap) memset(m->slot + old_cap, 0, (size_t)(m->cap_slot - old_cap) * sizeof *m->slot);
    if ((size_t)(m->n_masks + 1) * m->words * 4 > SLM_PDA_MASK_BYTES) { /* full: start over (chunks are kept) */
        memset(m->slot, 0, (size_t)m->cap_slot * sizeof *m->slot);
        m->n_masks = 0;
    }
    uint32_t *dst = vmask_next(m);
    if (!dst) return SLM_ERR_NOMEM;
    memset(dst, 0, m->words * sizeof *dst);
    slm_grammar_prep *p = prep_find(g, v);
    bool fallback = p == NULL;
    slm_status st = p ? mask_windows(g, a, p, v, d, dst, &fallback) : SLM_OK;
    if (st == SLM_OK && fallback) {
        memset(dst, 0, m->words * sizeof *dst);
        walker w = {.g = g, .a = a, .v = v, .bits = dst, .node_cs = p ? p->node_cs : NULL, .budget = SIZE_MAX};
        st = walk_range(&w, 0, v->n_nodes, 0, d);
    }
    if (st) return st;
    m->slot[d] = ++m->n_masks;
    for (size_t i = 0; i < m->words; i++) allowed[i] |= dst[i];
    return SLM_OK;
}
