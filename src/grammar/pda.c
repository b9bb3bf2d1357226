/*
 * grammar/pda.c: the pushdown automaton of a compiled grammar, determinised lazily over
 * BYTES; runs over character sets; and the matcher.
 *
 * Design. A parse configuration is llama.cpp's: a set of stacks of positions ("what to match
 * next"), each with a character class on top after expansion (or empty = the grammar may
 * end). Here every stack is an interned persistent list (node = (position, parent node)), so
 * a stack is one uint32 and a configuration is a sorted set of them; the set, plus the bytes
 * of a code point begun but not finished (multi-byte UTF-8 split across tokens), is interned
 * again as a STATE of a lazily built DFA over bytes. Each state keeps its 256 byte
 * transitions once computed (a new table starts DEAD for the bytes no stack top can begin
 * with). Consequences:
 *  - feeding a token is one table lookup per byte after warm-up;
 *  - the mask of a state depends on the state alone (it is the full configuration), so
 *    mask.c computes it once per (state, vocabulary) and caches it.
 * Runs: for a character set (plain text, or a large plain-text class of the grammar) a state
 * whose stack tops each take all of the set or none sends every character of it to one same
 * next state; the number of such characters it can take in a row (its run) decides whole
 * subtrees of the token trie by token length (mask.c), and its transitions on the set's
 * bytes are copied from the set's representative.
 * Why not code points: a token may end inside a character; the partial-code-point state
 * makes that exact (a partial byte sequence is allowed only if some character it can
 * complete to is allowed by some stack top). Left recursion is rejected by the compiler, so
 * expansion terminates; nullable loops terminate because expansion never revisits an
 * interned stack in one closure.
 *
 * Invariants: state 0 is the start state; DEAD marks a rejected byte; all automaton memory
 * is bounded by SLM_PDA_MAX_NODES / SLM_PDA_MAX_STATES / SLM_PDA_MASK_BYTES: the mask cache
 * is dropped and rebuilt when full; an automaton past half its node or state limit is
 * rebuilt by the next matcher created while no other matcher lives; a single generation
 * that reaches the limits fails its step with SLM_ERR_LIMIT.
 * Thread-safety: the automaton belongs to its grammar and is used under the grammar's mutex
 * (mask.c's preparation uses private scratch automata); a matcher is one sequence's cursor.
 * Non-goals: determinising ahead of use.
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
#define RUN_ANY SLM_PDA_RUN_ANY
#define NEXT_MIXED (-3) /* set_next: characters of the set lead to different states */
#define SLM_GRAMMAR_CS_MIN 8 /* code points of a class worth a run (digits and up) */

typedef slm_pstate pstate;

/* ---- the automaton ----------------------------------------------------------------------- */

bool slm_grammar_grow32(uint32_t **v, uint32_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    if (nc > UINT32_MAX) return false;
    uint32_t *q = slm_realloc(*v, nc * sizeof *q);
    if (!q) return false;
    *v = q, *cap = (uint32_t)nc;
    return true;
}

/* The interned node (pos, parent); 0 on failure (*st set). */
uint32_t slm_grammar_pda_node(slm_grammar_pda *a, uint32_t pos, uint32_t parent, slm_status *st) {
    if (2 * (size_t)(a->n_nodes + 1) > a->nhash_cap) { /* rehash at load 1/2 */
        uint32_t nc = a->nhash_cap ? a->nhash_cap * 2 : 1024;
        uint32_t *h = slm_calloc(nc, sizeof *h);
        if (!h) return *st = SLM_ERR_NOMEM, 0;
        for (uint32_t id = 1; id < a->n_nodes; id++) {
            uint32_t i = (uint32_t)slm_grammar_mix64((uint64_t)a->npos[id] << 32 | a->npar[id]) & (nc - 1);
            while (h[i]) i = (i + 1) & (nc - 1);
            h[i] = id;
        }
        slm_free(a->nhash);
        a->nhash = h, a->nhash_cap = nc;
    }
    uint32_t i = (uint32_t)slm_grammar_mix64((uint64_t)pos << 32 | parent) & (a->nhash_cap - 1);
    for (; a->nhash[i]; i = (i + 1) & (a->nhash_cap - 1))
        if (a->npos[a->nhash[i]] == pos && a->npar[a->nhash[i]] == parent) return a->nhash[i];
    if (a->n_nodes >= SLM_PDA_MAX_NODES) return *st = SLM_ERR_LIMIT, 0;
    uint32_t c1 = a->cap_nodes, c2 = a->cap_nodes, c3 = a->cap_nodes;
    if (!slm_grammar_grow32(&a->npos, &c1, a->n_nodes + 1) || !slm_grammar_grow32(&a->npar, &c2, a->n_nodes + 1) ||
        !slm_grammar_grow32(&a->seen, &c3, a->n_nodes + 1))
        return *st = SLM_ERR_NOMEM, 0;
    if (c3 > a->cap_nodes) memset(a->seen + a->cap_nodes, 0, (c3 - a->cap_nodes) * sizeof *a->seen);
    a->cap_nodes = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
    const uint32_t id = a->n_nodes++;
    a->npos[id] = pos, a->npar[id] = parent;
    a->nhash[i] = id;
    return id;
}

static bool work_push(slm_grammar_pda *a, uint32_t s) {
    if (!slm_grammar_grow32(&a->work, &a->cap_work, (size_t)a->n_work + 1)) return false;
    a->work[a->n_work++] = s;
    return true;
}

/* Expand the work list into a->out: every reachable stack with a class (or nothing) on top. */
static slm_status closure(const slm_grammar *g, slm_grammar_pda *a) {
    slm_status st = SLM_OK;
    while (a->n_work > 0) {
        const uint32_t s = a->work[--a->n_work];
        if (a->seen[s] == a->gen) continue;
        a->seen[s] = a->gen;
        a->effort++;
        const uint32_t pos = s == EMPTY ? 0 : a->npos[s];
        if (s == EMPTY || g->elems[pos].type == GE_CLS) {
            if (!slm_grammar_grow32(&a->out, &a->cap_out, (size_t)a->n_out + 1)) return SLM_ERR_NOMEM;
            a->out[a->n_out++] = s;
            continue;
        }
        /* a reference: continue after it, below each alternative of the rule */
        uint32_t base = a->npar[s];
        if (g->elems[pos + 1].type != GE_END && !(base = slm_grammar_pda_node(a, pos + 1, base, &st))) return st;
        const uint32_t r = g->elems[pos].arg;
        for (uint32_t alt = g->rule_alt[r]; alt < g->rule_alt[r + 1]; alt++) {
            const uint32_t e = g->alt_start[alt];
            uint32_t w = base;
            if (g->elems[e].type != GE_END && !(w = slm_grammar_pda_node(a, e, base, &st))) return st;
            if (!work_push(a, w)) return SLM_ERR_NOMEM;
        }
    }
    return SLM_OK;
}

static void closure_begin(slm_grammar_pda *a) {
    a->n_out = a->n_work = 0;
    if (++a->gen == 0) { /* wrapped: forget every mark */
        memset(a->seen, 0, (size_t)a->cap_nodes * sizeof *a->seen);
        a->gen = 1;
    }
}

static int cmp_u32(const void *x, const void *y) {
    const uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Intern (a->out[0..n_out) sorted, partial bytes) as a state; its id into *id. */
static slm_status state_intern(slm_grammar_pda *a, const uint8_t *pb, uint8_t pn, uint8_t need, uint8_t rem, uint32_t *id) {
    const uint32_t *set = a->out;
    const uint32_t n = a->n_out;
    a->effort += n;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)pn << 40) ^ ((uint64_t)need << 48) ^ ((uint64_t)rem << 56);
    for (uint8_t i = 0; i < pn; i++) h = slm_grammar_mix64(h ^ pb[i]);
    for (uint32_t i = 0; i < n; i++) h = slm_grammar_mix64(h ^ set[i]);
    if (2 * (size_t)(a->n_states + 1) > a->shash_cap) {
        uint32_t nc = a->shash_cap ? a->shash_cap * 2 : 256;
        uint32_t *t = slm_calloc(nc, sizeof *t);
        if (!t) return SLM_ERR_NOMEM;
        for (uint32_t k = 0; k < a->shash_cap; k++) {
            if (!a->shash[k]) continue;
            const pstate *ps = &a->states[a->shash[k] - 1];
            uint64_t hh = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)ps->pn << 40) ^ ((uint64_t)ps->need << 48) ^ ((uint64_t)ps->rem << 56);
            for (uint8_t i = 0; i < ps->pn; i++) hh = slm_grammar_mix64(hh ^ ps->pb[i]);
            for (uint32_t i = 0; i < ps->n; i++) hh = slm_grammar_mix64(hh ^ a->set_pool[ps->off + i]);
            uint32_t j = (uint32_t)hh & (nc - 1);
            while (t[j]) j = (j + 1) & (nc - 1);
            t[j] = a->shash[k];
        }
        slm_free(a->shash);
        a->shash = t, a->shash_cap = nc;
    }
    uint32_t j = (uint32_t)h & (a->shash_cap - 1);
    for (; a->shash[j]; j = (j + 1) & (a->shash_cap - 1)) {
        const pstate *ps = &a->states[a->shash[j] - 1];
        if (ps->n == n && ps->pn == pn && ps->need == need && ps->rem == rem && (pn == 0 || memcmp(ps->pb, pb, pn) == 0) &&
            memcmp(a->set_pool + ps->off, set, (size_t)n * sizeof *set) == 0) {
            *id = a->shash[j] - 1;
            return SLM_OK;
        }
    }
    if (a->n_states >= SLM_PDA_MAX_STATES) return SLM_ERR_LIMIT;
    if (a->n_states == a->cap_states) {
        uint32_t nc = a->cap_states ? a->cap_states * 2 : 64;
        pstate *q = slm_realloc(a->states, (size_t)nc * sizeof *q);
        if (!q) return SLM_ERR_NOMEM;
        a->states = q, a->cap_states = nc;
    }
    if (a->n_pool + n > a->cap_pool) {
        size_t nc = a->cap_pool ? a->cap_pool * 2 : 1024;
        while (nc < a->n_pool + n) nc *= 2;
        uint32_t *q = slm_realloc(a->set_pool, nc * sizeof *q);
        if (!q) return SLM_ERR_NOMEM;
        a->set_pool = q, a->cap_pool = nc;
    }
    pstate *ps = &a->states[a->n_states];
    memset(ps, 0, sizeof *ps);
    ps->off = (uint32_t)a->n_pool, ps->n = n, ps->pn = pn, ps->need = need, ps->rem = rem;
    if (pn) memcpy(ps->pb, pb, pn);
    memcpy(a->set_pool + a->n_pool, set, (size_t)n * sizeof *set);
    a->n_pool += n;
    ps->complete = pn == 0 && rem == 0 && n > 0 && set[0] == EMPTY;
    for (uint32_t c = 0; c < SLM_GRAMMAR_MAX_CS; c++) ps->run[c] = RUN_UNKNOWN;
    ps->more = n > (set[0] == EMPTY ? 1u : 0u);
    a->shash[j] = a->n_states + 1;
    *id = a->n_states++;
    return SLM_OK;
}

/* ---- transitions ------------------------------------------------------------------------- */

/* Sort and intern a->out (the closure result) as a state with no pending bytes. */
static slm_status finish_set(slm_grammar_pda *a, int32_t *next) {
    if (a->n_out == 0) return *next = DEAD, SLM_OK;
    qsort(a->out, a->n_out, sizeof *a->out, cmp_u32);
    uint32_t id;
    slm_status st = state_intern(a, NULL, 0, 0, 0, &id);
    if (st == SLM_OK) *next = (int32_t)id;
    return st;
}

/* The state after code point cp from state d (all = every stack of d accepts it: a
 * uniform partial state completing). */
static slm_status advance_cp(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint32_t cp, bool all, int32_t *next) {
    closure_begin(a);
    slm_status st = SLM_OK;
    const uint32_t off = a->states[d].off, n = a->states[d].n;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t s = a->set_pool[off + i];
        if (s == EMPTY) continue;
        const uint32_t pos = a->npos[s];
        if (!all && !slm_grammar_cls_has(g, g->elems[pos].arg, cp)) continue;
        uint32_t w = a->npar[s];
        if (g->elems[pos + 1].type != GE_END && !(w = slm_grammar_pda_node(a, pos + 1, w, &st))) return st;
        if (!work_push(a, w)) return SLM_ERR_NOMEM;
    }
    if ((st = closure(g, a))) return st;
    return finish_set(a, next);
}

/* UTF-8 length from a lead byte (strict: no C0/C1/F5+), 0 when invalid. */
static uint8_t utf8_need(uint8_t b) {
    return b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
}

/* Code point of bytes pb[need] (lead byte's payload then 6 bits per continuation). */
static uint32_t utf8_decode(const uint8_t *pb, uint8_t need) {
    static const uint8_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t v = pb[0] & lead_mask[need];
    for (uint8_t i = 1; i < need; i++) v = v << 6 | (pb[i] & 0x3Fu);
    return v;
}

/* A state holding an unfinished code point pb[pn] of need bytes, when some character it can
 * still become is allowed by some stack top of d; DEAD otherwise. */
static slm_status partial_state(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, const uint8_t *pb, uint8_t pn,
                                uint8_t need, int32_t *next) {
    uint8_t lo_b[4], hi_b[4];
    for (uint8_t i = 0; i < need; i++) lo_b[i] = i < pn ? pb[i] : 0x80, hi_b[i] = i < pn ? pb[i] : 0xBF;
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t lo = utf8_decode(lo_b, need), hi = utf8_decode(hi_b, need);
    if (lo < min_cp[need]) lo = min_cp[need];
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    bool ok = false;
    const uint32_t off = a->states[d].off, n = a->states[d].n;
    for (uint32_t i = 0; i < n && !ok && lo <= hi; i++) {
        const uint32_t s = a->set_pool[off + i];
        if (s == EMPTY) continue;
        const uint32_t c = g->elems[a->npos[s]].arg;
        ok = (lo <= 0xD7FF && slm_grammar_cls_meets(g, c, lo, hi < 0xD7FF ? hi : 0xD7FF)) ||
             (hi >= 0xE000 && slm_grammar_cls_meets(g, c, lo > 0xE000 ? lo : 0xE000, hi));
    }
    if (!ok) return *next = DEAD, SLM_OK;
    if (!slm_grammar_grow32(&a->out, &a->cap_out, n)) return SLM_ERR_NOMEM;
    uint32_t id;
    bool uniform = pn >= 2; /* past the second byte every continuation byte is valid */
    a->n_out = 0;
    for (uint32_t i = 0; i < n && uniform; i++) {
        const uint32_t s = a->set_pool[off + i];
        if (s == EMPTY) continue;
        const uint32_t c = g->elems[a->npos[s]].arg;
        const bool lo_part = lo <= 0xD7FF, hi_part = hi >= 0xE000;
        const bool meets = (lo_part && slm_grammar_cls_meets(g, c, lo, hi < 0xD7FF ? hi : 0xD7FF)) ||
                           (hi_part && slm_grammar_cls_meets(g, c, lo > 0xE000 ? lo : 0xE000, hi));
        const bool covers = (!lo_part || slm_grammar_cls_covers(g, c, lo, hi < 0xD7FF ? hi : 0xD7FF)) &&
                            (!hi_part || slm_grammar_cls_covers(g, c, lo > 0xE000 ? lo : 0xE000, hi));
        if (covers) a->out[a->n_out++] = s;
        else if (meets) uniform = false;
    }
    if (!uniform) {
        a->n_out = n;
        memcpy(a->out, a->set_pool + off, (size_t)n * sizeof *a->out);
    }
    slm_status st = state_intern(a, uniform ? NULL : pb, uniform ? 0 : pn, uniform ? 0 : need,
                                 uniform ? (uint8_t)(need - pn) : 0, &id);
    if (st == SLM_OK) *next = (int32_t)id;
    return st;
}

static slm_status compute_trans(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint8_t b, int32_t *next) {
    const pstate ps = a->states[d];
    if (ps.rem > 0) { /* uniform partial: the value of the character no longer matters */
        if ((b & 0xC0) != 0x80) return *next = DEAD, SLM_OK;
        if (ps.rem == 1) return advance_cp(g, a, d, 0, true, next);
        if (!slm_grammar_grow32(&a->out, &a->cap_out, ps.n)) return SLM_ERR_NOMEM;
        memcpy(a->out, a->set_pool + ps.off, (size_t)ps.n * sizeof *a->out);
        a->n_out = ps.n;
        uint32_t id;
        slm_status st = state_intern(a, NULL, 0, 0, (uint8_t)(ps.rem - 1), &id);
        if (st == SLM_OK) *next = (int32_t)id;
        return st;
    }
    if (ps.pn == 0) {
        const uint8_t need = utf8_need(b);
        if (need == 0) return *next = DEAD, SLM_OK;
        if (need == 1) return advance_cp(g, a, d, b, false, next);
        return partial_state(g, a, d, &b, 1, need, next);
    }
    if ((b & 0xC0) != 0x80) return *next = DEAD, SLM_OK;
    uint8_t pb[4];
    memcpy(pb, ps.pb, ps.pn);
    pb[ps.pn] = b;
    const uint8_t pn = (uint8_t)(ps.pn + 1);
    if (pn < ps.need) return partial_state(g, a, d, pb, pn, ps.need, next);
    const uint32_t cp = utf8_decode(pb, ps.need);
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[ps.need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return *next = DEAD, SLM_OK;
    /* the stacks of a partial state are those of the state it started from */
    return advance_cp(g, a, d, cp, false, next);
}

/* First byte of the UTF-8 encoding of cp. */
static uint8_t utf8_lead(uint32_t cp) {
    return (uint8_t)(cp < 0x80 ? cp : cp < 0x800 ? 0xC0 | cp >> 6 : cp < 0x10000 ? 0xE0 | cp >> 12 : 0xF0 | cp >> 18);
}

/* Transition table of d, allocated on first use: UNKNOWN for the bytes that may continue
 * (a continuation byte inside a character; else a byte that begins a character of some
 * stack top's class: lead bytes are monotonic in the code point, so a range [lo, hi] begins
 * with bytes lead(lo) .. lead(hi)), DEAD for the others without computing anything. */
int32_t *slm_grammar_pda_trans(const slm_grammar *g, slm_grammar_pda *a, uint32_t d) {
    if (a->states[d].trans) return a->states[d].trans;
    int32_t *t = slm_malloc(256 * sizeof *t);
    if (!t) return NULL;
    for (int i = 0; i < 256; i++) t[i] = DEAD;
    const pstate *ps = &a->states[d];
    if (ps->pn || ps->rem) {
        for (int i = 0x80; i < 0xC0; i++) t[i] = UNKNOWN;
    } else {
        for (uint32_t k = 0; k < ps->n; k++) {
            const uint32_t s = a->set_pool[ps->off + k];
            if (s == EMPTY) continue;
            const slm_gclass *c = &g->classes[g->elems[a->npos[s]].arg];
            for (uint32_t r = 0; r < c->n; r++) {
                const uint32_t lo = g->ranges[2 * (c->off + r)], hi = g->ranges[2 * (c->off + r) + 1];
                for (uint32_t b = utf8_lead(lo); b <= utf8_lead(hi); b++) t[b] = UNKNOWN;
            }
        }
    }
    a->states[d].trans = t;
    return t;
}

static uint32_t set_ranges(const slm_grammar *g, uint32_t j, const uint32_t **r);

/* The transition of d on ASCII byte b when a character set holding b has a run from d: every
 * character of the set goes where the set's representative goes (DEAD for a run of 0), so no
 * closure is needed (UNKNOWN otherwise). */
static int32_t trans_by_set(const slm_grammar *g, const slm_grammar_pda *a, uint32_t d, uint8_t b) {
    const pstate *ps = &a->states[d];
    if (b >= 0x80 || ps->pn || ps->rem) return UNKNOWN;
    for (uint32_t j = 0; j < g->n_cs; j++) {
        const int16_t run = ps->run[j];
        if (run == RUN_UNKNOWN || run == RUN_MIXED) continue;
        const uint32_t *r;
        const uint32_t nr = set_ranges(g, j, &r);
        bool in = false;
        for (uint32_t k = 0; k < nr && !in; k++) in = b >= r[2 * k] && b <= r[2 * k + 1];
        const uint32_t rep = j == 0 ? 'a' : r[0]; /* as set_next */
        if (!in || rep >= 0x80) continue;
        if (run == 0) return DEAD;
        if (ps->trans[rep] != UNKNOWN) return ps->trans[rep];
    }
    return UNKNOWN;
}

/* next state of d on byte b into *next (DEAD allowed). */
slm_status slm_grammar_pda_step(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint8_t b, int32_t *next) {
    int32_t *t = slm_grammar_pda_trans(g, a, d);
    if (!t) return SLM_ERR_NOMEM;
    if (t[b] != UNKNOWN) return *next = t[b], SLM_OK;
    if ((t[b] = trans_by_set(g, a, d, b)) != UNKNOWN) return *next = t[b], SLM_OK;
    slm_status st = compute_trans(g, a, d, b, next);
    if (st == SLM_OK) a->states[d].trans[b] = *next; /* states may have moved: index again */
    return st;
}

/* The state of the one stack `node` after expansion, or DEAD. */
slm_status slm_grammar_pda_stack_state(const slm_grammar *g, slm_grammar_pda *a, uint32_t node, int32_t *state) {
    closure_begin(a);
    if (!work_push(a, node)) return SLM_ERR_NOMEM;
    slm_status st = closure(g, a);
    return st ? st : finish_set(a, state);
}

slm_status slm_grammar_pda_new(const slm_grammar *g, slm_grammar_pda **out) {
    *out = NULL;
    slm_grammar_pda *a = slm_calloc(1, sizeof *a);
    if (!a) return SLM_ERR_NOMEM;
    slm_status st = SLM_OK;
    uint32_t c1 = 0, c2 = 0, c3 = 0; /* node 0 is EMPTY */
    if (!slm_grammar_grow32(&a->npos, &c1, 1024) || !slm_grammar_grow32(&a->npar, &c2, 1024) ||
        !slm_grammar_grow32(&a->seen, &c3, 1024))
        st = SLM_ERR_NOMEM;
    if (st == SLM_OK) {
        a->cap_nodes = 1024;
        memset(a->seen, 0, 1024 * sizeof *a->seen);
        a->npos[0] = a->npar[0] = 0;
        a->n_nodes = 1;
        closure_begin(a);
        for (uint32_t alt = g->rule_alt[g->root]; st == SLM_OK && alt < g->rule_alt[g->root + 1]; alt++) {
            const uint32_t e = g->alt_start[alt];
            uint32_t w = EMPTY;
            if (g->elems[e].type != GE_END && !(w = slm_grammar_pda_node(a, e, EMPTY, &st))) break;
            if (!work_push(a, w)) st = SLM_ERR_NOMEM;
        }
    }
    int32_t s0 = DEAD;
    if (st == SLM_OK) st = closure(g, a);
    if (st == SLM_OK) st = finish_set(a, &s0);
    if (st == SLM_OK && s0 != 0) st = SLM_ERR_INTERNAL; /* the root always yields some stack */
    if (st) {
        slm_grammar_pda_free(a);
        return st;
    }
    *out = a;
    return SLM_OK;
}

/* The automaton of g, created on first use. Caller holds g->lock. */
static slm_status pda_get(slm_grammar *g, slm_grammar_pda **out) {
    if (g->pda) return *out = g->pda, SLM_OK;
    slm_status st = slm_grammar_pda_new(g, &g->pda);
    *out = g->pda;
    return st;
}

void slm_grammar_pda_free(slm_grammar_pda *a) {
    if (!a) return;
    for (uint32_t i = 0; i < a->n_states; i++) slm_free(a->states[i].trans);
    for (uint32_t i = 0; i < a->n_vm; i++) slm_grammar_vmask_free(&a->vm[i]);
    slm_free(a->npos), slm_free(a->npar), slm_free(a->nhash), slm_free(a->seen);
    slm_free(a->work), slm_free(a->out), slm_free(a->states), slm_free(a->set_pool), slm_free(a->shash);
    slm_free(a->walk_tr);
    slm_free(a);
}

/* ---- runs over character sets ------------------------------------------------------------ */

/* Ranges (pairs lo, hi) of character set j of g into *r; their count. */
static uint32_t set_ranges(const slm_grammar *g, uint32_t j, const uint32_t **r) {
    if (j == 0) return *r = slm_grammar_plain_ranges, SLM_GRAMMAR_PLAIN_RANGES;
    const slm_gclass *c = &g->classes[g->cs_class[j]];
    *r = g->ranges + 2 * (size_t)c->off;
    return c->n;
}

/* The common next state of every character of set j from d (DEAD when none is allowed), or
 * NEXT_MIXED: d is inside a character, or some stack top takes some characters of the set
 * only. Then every character of the set advances the same stacks, so one stands for all
 * (its bytes may pass partial states: the state after the whole character is the same). */
static slm_status set_next(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint32_t j, int32_t *out) {
    const pstate ps = a->states[d];
    if (ps.pn || ps.rem) return *out = NEXT_MIXED, SLM_OK;
    const uint32_t *r;
    const uint32_t nr = set_ranges(g, j, &r);
    bool any = false;
    for (uint32_t i = 0; i < ps.n; i++) {
        const uint32_t s = a->set_pool[ps.off + i];
        if (s == EMPTY) continue;
        const uint32_t c = g->elems[a->npos[s]].arg;
        bool all = true, some = false;
        for (uint32_t k = 0; k < nr; k++) {
            all = all && slm_grammar_cls_covers(g, c, r[2 * k], r[2 * k + 1]);
            some = some || slm_grammar_cls_meets(g, c, r[2 * k], r[2 * k + 1]);
        }
        if (some && !all) return *out = NEXT_MIXED, SLM_OK;
        any = any || all;
    }
    if (!any) return *out = DEAD, SLM_OK;
    const uint32_t cp = j == 0 ? 'a' : r[0]; /* the set's first character stands for all */
    uint8_t b[4];
    const int n = cp < 0x80 ? (b[0] = (uint8_t)cp, 1)
                : cp < 0x800 ? (b[0] = (uint8_t)(0xC0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2)
                : cp < 0x10000 ? (b[0] = (uint8_t)(0xE0 | cp >> 12), b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)),
                                  b[2] = (uint8_t)(0x80 | (cp & 0x3F)), 3)
                               : (b[0] = (uint8_t)(0xF0 | cp >> 18), b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F)),
                                  b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)), b[3] = (uint8_t)(0x80 | (cp & 0x3F)), 4);
    int32_t cur = (int32_t)d;
    for (int i = 0; i < n && cur != DEAD; i++) {
        slm_status st = slm_grammar_pda_step(g, a, (uint32_t)cur, b[i], &cur);
        if (st) return st;
    }
    return *out = cur, SLM_OK;
}

/* Follow the chain of common next states from d for set j (each state's run computed once),
 * then set run[j] and bit j of run_exit of every state on it. exit(c) = complete(next(c)) ||
 * exit(next(c)); on a cycle, whether any state of the cycle is complete. */
slm_status slm_grammar_pda_run(const slm_grammar *g, slm_grammar_pda *a, uint32_t d, uint32_t j, int16_t *out) {
    uint32_t chain[SLM_GRAMMAR_MAX_PIECE + 1];
    int32_t n = 0, cur = (int32_t)d;
    int16_t run = RUN_ANY; /* the run of the state after the chain's end */
    bool ex = false;       /* exit of the chain's last state */
    for (;;) {
        const int16_t known = a->states[cur].run[j];
        if (known != RUN_UNKNOWN) {
            run = known;
            ex = a->states[cur].complete || (a->states[cur].run_exit >> j & 1);
            break;
        }
        if (n > SLM_GRAMMAR_MAX_PIECE) { /* longer than any token: as good as unbounded */
            run = RUN_ANY;
            ex = true; /* not followed further: assume the worst */
            break;
        }
        chain[n++] = (uint32_t)cur;
        int32_t nx;
        slm_status st = set_next(g, a, (uint32_t)cur, j, &nx);
        if (st) return st;
        if (nx == NEXT_MIXED || nx == DEAD) {
            run = nx == DEAD ? -1 : RUN_MIXED; /* -1: the last chain state takes 0 more */
            break;
        }
        int32_t cycle = -1;
        for (int32_t k = 0; k < n && cycle < 0; k++)
            if (chain[k] == (uint32_t)nx) cycle = k;
        if (cycle >= 0) {
            run = RUN_ANY;
            for (int32_t k = cycle; k < n; k++) ex = ex || a->states[chain[k]].complete;
            break;
        }
        cur = nx;
    }
    /* unwind: each chain state takes one more character than its successor */
    while (n > 0) {
        const uint32_t c = chain[--n];
        if (run != RUN_MIXED && run != RUN_ANY) run = (int16_t)(run + 1);
        a->states[c].run[j] = run;
        a->states[c].run_exit = (uint8_t)((a->states[c].run_exit & ~(1u << j)) | (unsigned)ex << j);
        ex = ex || a->states[c].complete;
    }
    *out = a->states[d].run[j];
    return SLM_OK;
}

/* Code points of class c. */
static uint64_t class_size(const slm_grammar *g, uint32_t c) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < g->classes[c].n; i++) n += g->ranges[2 * (g->classes[c].off + i) + 1] - g->ranges[2 * (g->classes[c].off + i)] + 1;
    return n;
}

/* True when class c holds plain text only. */
static bool class_plain(const slm_grammar *g, uint32_t c) {
    for (uint32_t i = 0; i < g->classes[c].n; i++) {
        const uint32_t lo = g->ranges[2 * (g->classes[c].off + i)], hi = g->ranges[2 * (g->classes[c].off + i) + 1];
        bool in = false;
        for (int r = 0; r < SLM_GRAMMAR_PLAIN_RANGES && !in; r++)
            in = lo >= slm_grammar_plain_ranges[2 * r] && hi <= slm_grammar_plain_ranges[2 * r + 1];
        if (!in) return false;
    }
    return g->classes[c].n > 0;
}

static bool class_same(const slm_grammar *g, uint32_t x, uint32_t y) {
    return g->classes[x].n == g->classes[y].n &&
           !memcmp(g->ranges + 2 * (size_t)g->classes[x].off, g->ranges + 2 * (size_t)g->classes[y].off,
                   2 * (size_t)g->classes[x].n * sizeof *g->ranges);
}

void slm_grammar_pick_sets(slm_grammar *g) {
    g->n_cs = 1; /* plain text */
    uint64_t size[SLM_GRAMMAR_MAX_CS] = {0};
    for (uint32_t c = 0; c < g->n_classes; c++) {
        const uint64_t n = class_size(g, c);
        if (n < SLM_GRAMMAR_CS_MIN || !class_plain(g, c)) continue;
        bool dup = false;
        for (uint32_t j = 1; j < g->n_cs && !dup; j++) dup = class_same(g, c, g->cs_class[j]);
        if (dup) continue;
        uint32_t at = g->n_cs; /* insertion point: sizes descending */
        while (at > 1 && size[at - 1] < n) at--;
        if (at >= SLM_GRAMMAR_MAX_CS) continue;
        const uint32_t last = g->n_cs < SLM_GRAMMAR_MAX_CS ? g->n_cs : SLM_GRAMMAR_MAX_CS - 1;
        for (uint32_t k = last; k > at; k--) g->cs_class[k] = g->cs_class[k - 1], size[k] = size[k - 1];
        g->cs_class[at] = c, size[at] = n;
        if (g->n_cs < SLM_GRAMMAR_MAX_CS) g->n_cs++;
    }
}

/* ---- matcher ------------------------------------------------------------------------------ */

struct slm_grammar_matcher {
    slm_grammar *g;               /* one reference, owned */
    const slm_grammar_vocab *v;   /* borrowed, may be NULL */
    int32_t *eog;                 /* [n_eog] owned: allowed by the hook where complete */
    size_t n_eog;
    uint32_t state;               /* current DFA state */
    bool complete, more;          /* copies of the state's flags (read without the lock) */
};

static slm_status lim_err(slm_status st, char *err) {
    if (st == SLM_ERR_LIMIT)
        return slm_errf(err, st, "grammar automaton exceeds %u stack nodes or %u states", SLM_PDA_MAX_NODES, SLM_PDA_MAX_STATES);
    return slm_errf(err, st, "grammar automaton: %s", slm_status_str(st));
}

slm_status slm_grammar_matcher_create(slm_grammar *g, const slm_grammar_vocab *v, slm_grammar_matcher **out, char *err) {
    *out = NULL;
    if (!g) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL grammar");
    if (v) { /* the position tables for v, once per (grammar, vocabulary) */
        slm_status pst = slm_grammar_prepare(g, v, err);
        if (pst) return pst;
    }
    slm_grammar_matcher *m = slm_calloc(1, sizeof *m);
    if (!m) return slm_errf(err, SLM_ERR_NOMEM, "matcher");
    pthread_mutex_lock(&g->lock);
    slm_grammar_pda *a = g->pda;
    if (a && g->n_matchers == 0 && (a->n_states > SLM_PDA_MAX_STATES / 2 || a->n_nodes > SLM_PDA_MAX_NODES / 2)) {
        /* grown large (deep recursive documents) and nobody points into it: start afresh
         * rather than reach the limits, after which every step would fail */
        slm_grammar_pda_free(a);
        g->pda = NULL;
    }
    slm_status st = pda_get(g, &a);
    if (st == SLM_OK) m->complete = a->states[0].complete, m->more = a->states[0].more, g->n_matchers++;
    pthread_mutex_unlock(&g->lock);
    if (st) {
        slm_free(m);
        return lim_err(st, err);
    }
    m->g = slm_grammar_retain(g), m->v = v, m->state = 0;
    *out = m;
    return SLM_OK;
}

void slm_grammar_matcher_destroy(slm_grammar_matcher *m) {
    if (!m) return;
    pthread_mutex_lock(&m->g->lock);
    m->g->n_matchers--;
    pthread_mutex_unlock(&m->g->lock);
    slm_grammar_release(m->g);
    slm_free(m->eog);
    slm_free(m);
}

void slm_grammar_matcher_reset(slm_grammar_matcher *m) {
    pthread_mutex_lock(&m->g->lock);
    m->state = 0;
    m->complete = m->g->pda->states[0].complete, m->more = m->g->pda->states[0].more;
    pthread_mutex_unlock(&m->g->lock);
}

slm_status slm_grammar_matcher_accept(slm_grammar_matcher *m, const char *bytes, size_t n, char *err) {
    slm_grammar *g = m->g;
    pthread_mutex_lock(&g->lock);
    slm_grammar_pda *a = g->pda;
    uint32_t d = m->state;
    slm_status st = SLM_OK;
    size_t i = 0;
    for (; i < n; i++) {
        int32_t nx;
        if ((st = slm_grammar_pda_step(g, a, d, (uint8_t)bytes[i], &nx))) break;
        if (nx == DEAD) break;
        d = (uint32_t)nx;
    }
    if (st == SLM_OK && i == n) {
        m->state = d;
        m->complete = a->states[d].complete, m->more = a->states[d].more;
    }
    pthread_mutex_unlock(&g->lock);
    if (st) return lim_err(st, err);
    if (i < n) return slm_errf(err, SLM_ERR_STATE, "byte %zu (0x%02x) of the piece is not allowed by the grammar", i, (unsigned)(uint8_t)bytes[i]);
    return SLM_OK;
}

bool slm_grammar_matcher_complete(const slm_grammar_matcher *m) { return m->complete; }
bool slm_grammar_matcher_can_continue(const slm_grammar_matcher *m) { return m->more; }

/* The mask of m's state (see slm_grammar_mask_state). */
static slm_status matcher_mask(slm_grammar_matcher *m, bool lazy, uint32_t *allowed, size_t n_words, char *err) {
    if (!m->v) return slm_errf(err, SLM_ERR_STATE, "matcher has no vocabulary");
    if (n_words < ((size_t)m->v->n_vocab + 31) / 32) return slm_errf(err, SLM_ERR_INVALID_ARG, "mask of %zu words too small", n_words);
    pthread_mutex_lock(&m->g->lock);
    slm_status st = slm_grammar_mask_state(m->g, m->g->pda, m->v, m->state, lazy, allowed);
    pthread_mutex_unlock(&m->g->lock);
    return st ? lim_err(st, err) : SLM_OK;
}

slm_status slm_grammar_matcher_mask(slm_grammar_matcher *m, uint32_t *allowed, size_t n_words, char *err) {
    return matcher_mask(m, false, allowed, n_words, err);
}

slm_status slm_grammar_matcher_mask_walk(slm_grammar_matcher *m, uint32_t *allowed, size_t n_words, char *err) {
    return matcher_mask(m, true, allowed, n_words, err);
}

slm_status slm_grammar_matcher_set_eog(slm_grammar_matcher *m, const int32_t *ids, size_t n, char *err) {
    const int32_t n_vocab = m->v ? m->v->n_vocab : INT32_MAX;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return slm_errf(err, SLM_ERR_RANGE, "end-of-generation id %d", ids[i]);
    int32_t *copy = NULL;
    if (n > 0 && !(copy = slm_malloc(n * sizeof *copy))) return slm_errf(err, SLM_ERR_NOMEM, "end-of-generation ids");
    if (n > 0) memcpy(copy, ids, n * sizeof *copy);
    slm_free(m->eog);
    m->eog = copy, m->n_eog = n;
    return SLM_OK;
}

slm_status slm_grammar_mask_hook(void *matcher, uint32_t *allowed, size_t n_words, char *err) {
    slm_grammar_matcher *m = matcher;
    slm_status st = slm_grammar_matcher_mask(m, allowed, n_words, err);
    if (st == SLM_OK && m->complete)
        for (size_t i = 0; i < m->n_eog; i++) allowed[m->eog[i] >> 5] |= 1u << (m->eog[i] & 31);
    return st;
}

/* ---- public lifetime ---------------------------------------------------------------------- */

slm_status slm_grammar_from_gbnf(const char *text, size_t len, slm_grammar **out, char *err) {
    *out = NULL;
    if (len > SLM_GRAMMAR_MAX_SOURCE) return slm_errf(err, SLM_ERR_LIMIT, "grammar of %zu bytes exceeds %u", len, SLM_GRAMMAR_MAX_SOURCE);
    return slm_grammar_parse_gbnf(text, len, out, err);
}

slm_grammar *slm_grammar_retain(slm_grammar *g) {
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void slm_grammar_release(slm_grammar *g) {
    if (g && atomic_fetch_sub(&g->refs, 1) == 1) slm_grammar_free_all(g);
}

const char *slm_grammar_gbnf(const slm_grammar *g) { return g->gbnf; }
