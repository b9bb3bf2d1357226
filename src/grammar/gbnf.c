/*
 * grammar/gbnf.c: the GBNF parser and compiler (llama.cpp's grammar format) into the flat
 * rule form of grammar_int.h.
 *
 * Accepted syntax: `name ::= alternatives` rules (names of [A-Za-z0-9_-]), alternatives
 * separated by `|`, sequences of items; items are "literals", [character classes] with
 * ranges and ^ negation, `.` (any code point), rule references and (groups), each followed
 * by any of * + ? {m} {m,} {m,n}. Escapes in literals and classes: \xHH \uHHHH \UHHHHHHHH
 * \t \r \n \\ \" \[ \] \- \^ \/ (the llama.cpp set plus \- \^ \/). `#` starts a comment to
 * the end of the line. A rule ends at a newline unless inside parentheses or right after
 * `|` or `::=` (as in llama.cpp). The grammar must define "root".
 *
 * Invariants: every error carries "line L:C"; every size is checked against the limits of
 * slmesh/grammar.h before it grows. Compile-time checks: undefined rules, a missing root,
 * and left recursion (direct or through nullable prefixes), which the automaton cannot
 * expand; it is rejected naming the rule rather than supported, because the reference
 * runtime rejects it too and JSON/regex front ends never produce it.
 * Thread-safety: pure functions of their input. Non-goals: grammar optimisation beyond
 * merging class ranges.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "grammar/grammar_int.h"

#define GE_ALT 3u             /* separator inside a rule body while parsing */
#define CP_MAX 0x10FFFFu      /* largest code point */
#define REPEAT_INF UINT32_MAX /* n of x{m,} */

/* ---- builder ------------------------------------------------------------------------- */

typedef struct evec {
    slm_gelem *v; /* owned */
    uint32_t n, cap;
} evec;

typedef struct brule {
    char *name;        /* owned, NUL-terminated */
    evec body;         /* elements, alternatives separated by GE_ALT */
    bool defined;      /* a `name ::=` was seen (or it is a helper rule) */
    size_t first_use;  /* offset of the first reference (for "undefined rule" errors) */
} brule;

typedef struct parser {
    const char *s;       /* borrowed source */
    size_t len, pos;
    brule *rules;        /* owned [n_rules] */
    uint32_t n_rules, cap_rules;
    uint32_t *ranges;    /* owned pairs */
    uint32_t n_ranges, cap_ranges;
    slm_gclass *classes; /* owned */
    uint32_t n_classes, cap_classes;
    size_t n_total;      /* elements in all bodies (limit check) */
    int depth;           /* group nesting */
    slm_status st;       /* first error */
    char *err;           /* caller's buffer */
} parser;

static bool perr(parser *p, size_t at, slm_status st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool perr(parser *p, size_t at, slm_status st, const char *fmt, ...) {
    if (p->st) return false;
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->s[i] == '\n') line++, col = 1;
        else col++;
    }
    char msg[SLM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->st = slm_errf(p->err, st, "line %d:%d: %s", line, col, msg);
    return false;
}

static bool grow(parser *p, void **v, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? (size_t)*cap * 2 : 16, bytes;
    while (nc < need) nc *= 2;
    if (nc > UINT32_MAX || !slm_mul_size(nc, elem, &bytes)) return perr(p, p->pos, SLM_ERR_LIMIT, "too large");
    void *q = slm_realloc(*v, bytes);
    if (!q) return perr(p, p->pos, SLM_ERR_NOMEM, "out of memory");
    *v = q, *cap = (uint32_t)nc;
    return true;
}

static bool epush(parser *p, evec *e, uint32_t type, uint32_t arg) {
    if (++p->n_total > SLM_GRAMMAR_MAX_ELEMS)
        return perr(p, p->pos, SLM_ERR_LIMIT, "more than %u grammar elements", SLM_GRAMMAR_MAX_ELEMS);
    if (!grow(p, (void **)&e->v, &e->cap, e->n + 1, sizeof *e->v)) return false;
    e->v[e->n++] = (slm_gelem){.type = type, .arg = arg};
    return true;
}

/* The rule named name[n], created undefined when new; UINT32_MAX on error. */
static uint32_t rule_get(parser *p, const char *name, size_t n) {
    for (uint32_t i = 0; i < p->n_rules; i++)
        if (strlen(p->rules[i].name) == n && memcmp(p->rules[i].name, name, n) == 0) return i;
    if (p->n_rules >= SLM_GRAMMAR_MAX_RULES) {
        perr(p, p->pos, SLM_ERR_LIMIT, "more than %u rules", SLM_GRAMMAR_MAX_RULES);
        return UINT32_MAX;
    }
    if (!grow(p, (void **)&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules)) return UINT32_MAX;
    brule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    r->first_use = p->pos;
    if (!(r->name = slm_strndup(name, n))) {
        perr(p, p->pos, SLM_ERR_NOMEM, "out of memory");
        return UINT32_MAX;
    }
    return p->n_rules++;
}

/* A new helper rule "base~N" (defined, empty body; never one of the user's names). */
static uint32_t rule_helper(parser *p, uint32_t base) {
    char name[96];
    snprintf(name, sizeof name, "%.60s~%u", p->rules[base].name, p->n_rules); /* ~ cannot be in a user name */
    uint32_t r = rule_get(p, name, strlen(name));
    if (r != UINT32_MAX) p->rules[r].defined = true;
    return r;
}

/* Add a class from unsorted ranges rg[2 * n]; negate complements it. Returns its index. */
static uint32_t class_add(parser *p, uint32_t *rg, uint32_t n, bool negate) {
    /* sort pairs by lo (insertion sort: classes are short) */
    for (uint32_t i = 1; i < n; i++) {
        uint32_t lo = rg[2 * i], hi = rg[2 * i + 1], j = i;
        for (; j > 0 && rg[2 * (j - 1)] > lo; j--) rg[2 * j] = rg[2 * (j - 1)], rg[2 * j + 1] = rg[2 * (j - 1) + 1];
        rg[2 * j] = lo, rg[2 * j + 1] = hi;
    }
    uint32_t m = 0; /* merge in place */
    for (uint32_t i = 0; i < n; i++) {
        if (m > 0 && rg[2 * i] <= rg[2 * (m - 1) + 1] + 1) {
            if (rg[2 * i + 1] > rg[2 * (m - 1) + 1]) rg[2 * (m - 1) + 1] = rg[2 * i + 1];
        } else {
            rg[2 * m] = rg[2 * i], rg[2 * m + 1] = rg[2 * i + 1], m++;
        }
    }
    const uint32_t off = p->n_ranges;
    uint32_t cnt = 0;
    if (!grow(p, (void **)&p->ranges, &p->cap_ranges, 2 * (p->n_ranges + m + 1), sizeof *p->ranges)) return UINT32_MAX;
    if (!negate) {
        for (uint32_t i = 0; i < m; i++) p->ranges[2 * (off + cnt)] = rg[2 * i], p->ranges[2 * (off + cnt) + 1] = rg[2 * i + 1], cnt++;
    } else {
        uint32_t next = 0; /* first code point not yet covered */
        for (uint32_t i = 0; i < m; i++) {
            if (rg[2 * i] > next) p->ranges[2 * (off + cnt)] = next, p->ranges[2 * (off + cnt) + 1] = rg[2 * i] - 1, cnt++;
            next = rg[2 * i + 1] + 1;
        }
        if (next <= CP_MAX) p->ranges[2 * (off + cnt)] = next, p->ranges[2 * (off + cnt) + 1] = CP_MAX, cnt++;
    }
    p->n_ranges += cnt;
    if (!grow(p, (void **)&p->classes, &p->cap_classes, p->n_classes + 1, sizeof *p->classes)) return UINT32_MAX;
    p->classes[p->n_classes] = (slm_gclass){.off = off, .n = cnt};
    return p->n_classes++;
}

static bool push_char(parser *p, evec *e, uint32_t cp) {
    uint32_t rg[2] = {cp, cp};
    uint32_t c = class_add(p, rg, 1, false);
    return c != UINT32_MAX && epush(p, e, GE_CLS, c);
}

/* ---- lexing ---------------------------------------------------------------------------- */

static bool is_word(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void skip_space(parser *p, bool newline_ok) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n')) {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n') p->pos++;
        } else {
            break;
        }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode one UTF-8 code point of the source at p->pos. */
static bool src_utf8(parser *p, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p->s + p->pos;
    const size_t left = p->len - p->pos;
    unsigned need = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                                   : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (need == 0 || need > left) return perr(p, p->pos, SLM_ERR_CORRUPT, "invalid UTF-8");
    uint32_t v = need == 1 ? s[0] : need == 2 ? s[0] & 0x1Fu : need == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    for (unsigned i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return perr(p, p->pos, SLM_ERR_CORRUPT, "invalid UTF-8");
        v = v << 6 | (s[i] & 0x3Fu);
    }
    static const uint32_t min_for[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for[need] || v > CP_MAX || (v >= 0xD800 && v <= 0xDFFF))
        return perr(p, p->pos, SLM_ERR_CORRUPT, "invalid UTF-8");
    p->pos += need;
    *cp = v;
    return true;
}

/* One character of a literal or class, escapes decoded. */
static bool parse_char(parser *p, uint32_t *cp) {
    if (p->pos >= p->len) return perr(p, p->pos, SLM_ERR_CORRUPT, "unexpected end of grammar");
    if (p->s[p->pos] != '\\') return src_utf8(p, cp);
    const size_t at = p->pos++;
    if (p->pos >= p->len) return perr(p, at, SLM_ERR_CORRUPT, "unexpected end after '\\'");
    const char c = p->s[p->pos++];
    int digits = 0;
    switch (c) {
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 't': *cp = '\t'; return true;
    case 'r': *cp = '\r'; return true;
    case 'n': *cp = '\n'; return true;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '/': *cp = (unsigned char)c; return true;
    default: return perr(p, at, SLM_ERR_CORRUPT, "unknown escape '\\%c'", c);
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = p->pos < p->len ? hexval(p->s[p->pos]) : -1;
        if (h < 0) return perr(p, at, SLM_ERR_CORRUPT, "expected %d hex digits after '\\%c'", digits, c);
        v = v << 4 | (uint32_t)h;
        p->pos++;
    }
    if (v > CP_MAX) return perr(p, at, SLM_ERR_CORRUPT, "code point U+%X beyond U+10FFFF", v);
    *cp = v;
    return true;
}

static bool parse_uint(parser *p, uint32_t *out) {
    const size_t at = p->pos;
    uint64_t v = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        v = v * 10 + (uint64_t)(p->s[p->pos++] - '0');
        if (v > SLM_GRAMMAR_MAX_REPEAT) return perr(p, at, SLM_ERR_LIMIT, "repetition count above %u", SLM_GRAMMAR_MAX_REPEAT);
    }
    if (p->pos == at) return perr(p, at, SLM_ERR_CORRUPT, "expected a number");
    *out = (uint32_t)v;
    return true;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static bool parse_alternates(parser *p, uint32_t rule, evec *out, bool nested);

/* Replace out[from..] (one item) by item{m,n}. */
static bool repeat_item(parser *p, uint32_t rule, evec *out, uint32_t from, uint32_t m, uint32_t n) {
    if (out->n - from != 1) { /* wrap a multi-element item into a helper rule */
        uint32_t h = rule_helper(p, rule);
        if (h == UINT32_MAX) return false;
        for (uint32_t i = from; i < out->n; i++)
            if (!epush(p, &p->rules[h].body, out->v[i].type, out->v[i].arg)) return false;
        out->n = from;
        if (!epush(p, out, GE_REF, h)) return false;
    }
    const slm_gelem x = out->v[from];
    out->n = from;
    for (uint32_t i = 0; i < m; i++)
        if (!epush(p, out, x.type, x.arg)) return false;
    if (n == REPEAT_INF) { /* R ::= x R | "" */
        uint32_t r = rule_helper(p, rule);
        if (r == UINT32_MAX) return false;
        evec *b = &p->rules[r].body;
        return epush(p, b, x.type, x.arg) && epush(p, b, GE_REF, r) && epush(p, b, GE_ALT, 0) && epush(p, out, GE_REF, r);
    }
    uint32_t prev = UINT32_MAX; /* O_k ::= x O_{k-1} | "" */
    for (uint32_t k = m; k < n; k++) {
        uint32_t r = rule_helper(p, rule);
        if (r == UINT32_MAX) return false;
        evec *b = &p->rules[r].body;
        if (!epush(p, b, x.type, x.arg)) return false;
        if (prev != UINT32_MAX && !epush(p, b, GE_REF, prev)) return false;
        if (!epush(p, b, GE_ALT, 0)) return false;
        prev = r;
    }
    return prev == UINT32_MAX || epush(p, out, GE_REF, prev);
}

static bool parse_class(parser *p, evec *out) {
    const size_t at = p->pos++; /* '[' */
    bool neg = false;
    if (p->pos < p->len && p->s[p->pos] == '^') neg = true, p->pos++;
    uint32_t buf[2 * 64], *rg = buf, n = 0, cap = 64; /* pairs; grows on the heap */
    bool ok = true;
    while (ok) {
        if (p->pos >= p->len) {
            ok = perr(p, at, SLM_ERR_CORRUPT, "unterminated character class");
            break;
        }
        if (p->s[p->pos] == ']') {
            p->pos++;
            break;
        }
        uint32_t lo, hi;
        if (!(ok = parse_char(p, &lo))) break;
        hi = lo;
        if (p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            if (!(ok = parse_char(p, &hi))) break;
            if (hi < lo) {
                ok = perr(p, at, SLM_ERR_CORRUPT, "class range U+%X-U+%X is reversed", lo, hi);
                break;
            }
        }
        if (n == cap) {
            if (cap >= SLM_GRAMMAR_MAX_ELEMS) {
                ok = perr(p, at, SLM_ERR_LIMIT, "character class too long");
                break;
            }
            uint32_t *q = slm_malloc(sizeof *q * 4 * cap);
            if (!q) {
                ok = perr(p, at, SLM_ERR_NOMEM, "out of memory");
                break;
            }
            memcpy(q, rg, sizeof *q * 2 * n);
            if (rg != buf) slm_free(rg);
            rg = q, cap *= 2;
        }
        rg[2 * n] = lo, rg[2 * n + 1] = hi, n++;
    }
    uint32_t c = ok ? class_add(p, rg, n, neg) : UINT32_MAX;
    if (rg != buf) slm_free(rg);
    return c != UINT32_MAX && epush(p, out, GE_CLS, c);
}

/* A sequence of items (with postfix operators) up to '|', ')', end of rule or input. */
static bool parse_sequence(parser *p, uint32_t rule, evec *out, bool nested) {
    uint32_t last = UINT32_MAX; /* start of the last item in out */
    while (p->pos < p->len && !p->st) {
        const size_t at = p->pos;
        const char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            last = out->n;
            while (p->pos < p->len && p->s[p->pos] != '"') {
                uint32_t cp;
                if (!parse_char(p, &cp) || !push_char(p, out, cp)) return false;
            }
            if (p->pos >= p->len) return perr(p, at, SLM_ERR_CORRUPT, "unterminated literal");
            p->pos++;
            if (out->n == last) last = UINT32_MAX; /* "" is nothing to repeat */
        } else if (c == '[') {
            last = out->n;
            if (!parse_class(p, out)) return false;
        } else if (c == '.') {
            p->pos++;
            last = out->n;
            uint32_t rg[2] = {0, CP_MAX};
            uint32_t k = class_add(p, rg, 1, false);
            if (k == UINT32_MAX || !epush(p, out, GE_CLS, k)) return false;
        } else if (is_word((unsigned char)c)) {
            size_t e = p->pos;
            while (e < p->len && is_word((unsigned char)p->s[e])) e++;
            uint32_t r = rule_get(p, p->s + p->pos, e - p->pos);
            if (r == UINT32_MAX) return false;
            p->pos = e;
            last = out->n;
            if (!epush(p, out, GE_REF, r)) return false;
        } else if (c == '(') {
            if (++p->depth > SLM_GRAMMAR_MAX_DEPTH)
                return perr(p, at, SLM_ERR_LIMIT, "groups nested deeper than %d", SLM_GRAMMAR_MAX_DEPTH);
            p->pos++;
            skip_space(p, true);
            uint32_t h = rule_helper(p, rule);
            if (h == UINT32_MAX) return false;
            evec body = {0};
            bool ok = parse_alternates(p, rule, &body, true);
            p->rules[h].body = body; /* the helper owns it even on failure */
            if (!ok) return false;
            if (p->pos >= p->len || p->s[p->pos] != ')') return perr(p, at, SLM_ERR_CORRUPT, "expected ')'");
            p->pos++;
            p->depth--;
            last = out->n;
            if (!epush(p, out, GE_REF, h)) return false;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == UINT32_MAX) return perr(p, at, SLM_ERR_CORRUPT, "'%c' with nothing to repeat", c);
            uint32_t m = 0, n = REPEAT_INF;
            p->pos++;
            if (c == '+') m = 1;
            else if (c == '?') n = 1;
            else if (c == '{') {
                skip_space(p, false);
                if (!parse_uint(p, &m)) return false;
                skip_space(p, false);
                n = m;
                if (p->pos < p->len && p->s[p->pos] == ',') {
                    p->pos++;
                    skip_space(p, false);
                    n = REPEAT_INF;
                    if (p->pos < p->len && p->s[p->pos] != '}' && !parse_uint(p, &n)) return false;
                    skip_space(p, false);
                }
                if (p->pos >= p->len || p->s[p->pos] != '}') return perr(p, at, SLM_ERR_CORRUPT, "expected '}'");
                p->pos++;
                if (n < m) return perr(p, at, SLM_ERR_CORRUPT, "repetition {%u,%u} with max < min", m, n);
            }
            if (!repeat_item(p, rule, out, last, m, n)) return false;
            last = UINT32_MAX; /* x** is not allowed */
        } else {
            break;
        }
        skip_space(p, nested);
    }
    return !p->st;
}

static bool parse_alternates(parser *p, uint32_t rule, evec *out, bool nested) {
    if (!parse_sequence(p, rule, out, nested)) return false;
    while (p->pos < p->len && p->s[p->pos] == '|') {
        p->pos++;
        skip_space(p, true);
        if (!epush(p, out, GE_ALT, 0) || !parse_sequence(p, rule, out, nested)) return false;
    }
    return true;
}

static bool parse_rule(parser *p) {
    const size_t at = p->pos;
    size_t e = p->pos;
    while (e < p->len && is_word((unsigned char)p->s[e])) e++;
    if (e == p->pos) return perr(p, at, SLM_ERR_CORRUPT, "expected a rule name");
    uint32_t r = rule_get(p, p->s + p->pos, e - p->pos);
    if (r == UINT32_MAX) return false;
    if (p->rules[r].defined) return perr(p, at, SLM_ERR_CORRUPT, "rule '%s' defined twice", p->rules[r].name);
    p->rules[r].defined = true;
    p->pos = e;
    skip_space(p, false);
    if (p->len - p->pos < 3 || memcmp(p->s + p->pos, "::=", 3) != 0) return perr(p, p->pos, SLM_ERR_CORRUPT, "expected '::='");
    p->pos += 3;
    skip_space(p, true);
    evec body = {0};
    bool ok = parse_alternates(p, r, &body, false);
    slm_free(p->rules[r].body.v); /* only a forward reference can have left an empty one */
    p->rules[r].body = body;
    if (!ok) return false;
    if (p->pos < p->len && p->s[p->pos] != '\n') {
        if (p->s[p->pos] == ')') return perr(p, p->pos, SLM_ERR_CORRUPT, "unbalanced ')'");
        return perr(p, p->pos, SLM_ERR_CORRUPT, "unexpected '%c'", p->s[p->pos]);
    }
    return true;
}

/* ---- compiling ------------------------------------------------------------------------- */

/* Reject left recursion that would grow stacks without bound. "A may start with B" when B
 * is referenced after only nullable elements of an alternative of A; the edge "grows" when
 * something follows the reference (expansion then pushes a continuation). A cycle of
 * such edges containing a growing edge is rejected; cycles of tail references only (as in
 * x* with a nullable x) are harmless: expansion revisits the same interned stack and stops.
 * Tarjan's strongly connected components; a growing edge inside a component is the error. */
typedef struct scc {
    const slm_grammar *g;
    const bool *nullable;
    int32_t *index, *low, *comp; /* [n_rules] */
    uint32_t *stack;             /* [n_rules] */
    uint32_t sp;
    int32_t next, n_comp;
} scc;

static void scc_visit(scc *t, uint32_t r) {
    const slm_grammar *g = t->g;
    t->index[r] = t->low[r] = t->next++;
    t->stack[t->sp++] = r;
    t->comp[r] = -2; /* on the stack */
    for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
        for (uint32_t i = g->alt_start[a]; g->elems[i].type == GE_REF; i++) {
            const uint32_t b = g->elems[i].arg;
            if (t->index[b] < 0) {
                scc_visit(t, b);
                if (t->low[b] < t->low[r]) t->low[r] = t->low[b];
            } else if (t->comp[b] == -2 && t->index[b] < t->low[r]) {
                t->low[r] = t->index[b];
            }
            if (!t->nullable[b]) break;
        }
    }
    if (t->low[r] == t->index[r]) {
        uint32_t w;
        do {
            w = t->stack[--t->sp];
            t->comp[w] = t->n_comp;
        } while (w != r);
        t->n_comp++;
    }
}

static bool check_left_recursion(parser *p, const slm_grammar *g) {
    const uint32_t n = g->n_rules;
    bool *nullable = slm_calloc(n, sizeof *nullable);
    scc t = {.g = g, .nullable = nullable, .index = slm_malloc(n * sizeof *t.index), .low = slm_malloc(n * sizeof *t.low),
             .comp = slm_malloc(n * sizeof *t.comp), .stack = slm_malloc(n * sizeof *t.stack)};
    bool ok = nullable && t.index && t.low && t.comp && t.stack;
    if (!ok) perr(p, 0, SLM_ERR_NOMEM, "out of memory");
    for (bool changed = ok; changed;) { /* fixpoint: a rule is nullable if an alternative is */
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1] && !nullable[r]; a++) {
                uint32_t i = g->alt_start[a];
                while (g->elems[i].type == GE_REF && nullable[g->elems[i].arg]) i++;
                if (g->elems[i].type == GE_END) nullable[r] = changed = true;
            }
        }
    }
    /* the root must derive some text: productive rules (an alternative of productive
     * elements), again a fixpoint; reuse t.low as the flag */
    for (uint32_t r = 0; ok && r < n; r++) t.low[r] = 0;
    for (bool changed = ok; changed;) {
        changed = false;
        for (uint32_t r = 0; r < n; r++) {
            if (t.low[r]) continue;
            for (uint32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1] && !t.low[r]; a++) {
                uint32_t i = g->alt_start[a];
                while (g->elems[i].type == GE_CLS || (g->elems[i].type == GE_REF && t.low[g->elems[i].arg])) i++;
                if (g->elems[i].type == GE_END) t.low[r] = 1, changed = true;
            }
        }
    }
    if (ok && !t.low[g->root]) ok = perr(p, 0, SLM_ERR_CORRUPT, "the grammar matches nothing (its rules never end)");
    for (uint32_t r = 0; ok && r < n; r++) t.index[r] = -1, t.comp[r] = -1;
    for (uint32_t r = 0; ok && r < n; r++)
        if (t.index[r] < 0) scc_visit(&t, r);
    for (uint32_t r = 0; ok && r < n; r++) {
        for (uint32_t a = g->rule_alt[r]; ok && a < g->rule_alt[r + 1]; a++) {
            for (uint32_t i = g->alt_start[a]; ok && g->elems[i].type == GE_REF; i++) {
                const uint32_t b = g->elems[i].arg;
                if (t.comp[b] == t.comp[r] && g->elems[i + 1].type != GE_END)
                    ok = perr(p, p->rules[b].first_use, SLM_ERR_CORRUPT, "left recursion in rule '%s'", g->names[b]);
                if (!nullable[b]) break;
            }
        }
    }
    slm_free(nullable);
    slm_free(t.index), slm_free(t.low), slm_free(t.comp), slm_free(t.stack);
    return ok;
}

static bool build(parser *p, slm_grammar *g) {
    uint32_t root = UINT32_MAX;
    size_t n_elems = 0, n_alts = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        if (!p->rules[r].defined) return perr(p, p->rules[r].first_use, SLM_ERR_CORRUPT, "undefined rule '%s'", p->rules[r].name);
        if (!strcmp(p->rules[r].name, "root")) root = r;
        n_alts++;
        for (uint32_t i = 0; i < p->rules[r].body.n; i++) {
            if (p->rules[r].body.v[i].type == GE_ALT) n_alts++;
            else n_elems++;
        }
    }
    if (root == UINT32_MAX) return perr(p, p->len, SLM_ERR_CORRUPT, "no rule named 'root'");
    n_elems += n_alts;
    g->elems = slm_malloc(sizeof *g->elems * n_elems);
    g->alt_start = slm_malloc(sizeof *g->alt_start * n_alts);
    g->rule_alt = slm_malloc(sizeof *g->rule_alt * (p->n_rules + 1));
    g->names = slm_calloc(p->n_rules, sizeof *g->names);
    if (!g->elems || !g->alt_start || !g->rule_alt || !g->names) return perr(p, 0, SLM_ERR_NOMEM, "out of memory");
    uint32_t ne = 0, na = 0;
    for (uint32_t r = 0; r < p->n_rules; r++) {
        g->rule_alt[r] = na;
        g->alt_start[na++] = ne;
        for (uint32_t i = 0; i < p->rules[r].body.n; i++) {
            const slm_gelem x = p->rules[r].body.v[i];
            if (x.type == GE_ALT) {
                g->elems[ne++] = (slm_gelem){GE_END, 0};
                g->alt_start[na++] = ne;
            } else {
                g->elems[ne++] = x;
            }
        }
        g->elems[ne++] = (slm_gelem){GE_END, 0};
        g->names[r] = p->rules[r].name;
        p->rules[r].name = NULL;
    }
    g->rule_alt[p->n_rules] = na;
    g->n_elems = ne, g->n_rules = p->n_rules, g->root = root;
    g->ranges = p->ranges, p->ranges = NULL;
    g->classes = p->classes, p->classes = NULL;
    g->n_classes = p->n_classes;
    slm_grammar_pick_sets(g);
    return check_left_recursion(p, g);
}

void slm_grammar_free_all(slm_grammar *g) {
    if (!g) return;
    slm_grammar_pda_free(g->pda);
    for (uint32_t i = 0; i < g->n_prep; i++) slm_grammar_prep_free(g->prep[i]);
    for (uint32_t r = 0; g->names && r < g->n_rules; r++) slm_free(g->names[r]);
    slm_free(g->names);
    slm_free(g->elems);
    slm_free(g->alt_start);
    slm_free(g->rule_alt);
    slm_free(g->ranges);
    slm_free(g->classes);
    slm_free(g->gbnf);
    pthread_mutex_destroy(&g->lock);
    slm_free(g);
}

slm_status slm_grammar_parse_gbnf(const char *text, size_t len, slm_grammar **out, char *err) {
    *out = NULL;
    if (!text && len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL grammar text");
    if (len > SLM_GRAMMAR_GENERATED_MAX) return slm_errf(err, SLM_ERR_LIMIT, "grammar of %zu bytes exceeds %zu", len, SLM_GRAMMAR_GENERATED_MAX);
    parser p = {.s = text, .len = len, .err = err};
    slm_grammar *g = slm_calloc(1, sizeof *g);
    if (!g) return slm_errf(err, SLM_ERR_NOMEM, "grammar");
    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        slm_free(g);
        return slm_errf(err, SLM_ERR_NOMEM, "grammar lock");
    }
    atomic_init(&g->refs, 1);
    skip_space(&p, true);
    while (p.pos < p.len && !p.st) {
        if (!parse_rule(&p)) break;
        skip_space(&p, true);
    }
    if (!p.st && (g->gbnf = slm_strndup(text ? text : "", len)) == NULL) perr(&p, 0, SLM_ERR_NOMEM, "out of memory");
    if (!p.st) build(&p, g);
    for (uint32_t r = 0; r < p.n_rules; r++) slm_free(p.rules[r].name), slm_free(p.rules[r].body.v);
    slm_free(p.rules);
    slm_free(p.ranges);
    slm_free(p.classes);
    if (p.st) {
        slm_grammar_free_all(g);
        return p.st;
    }
    *out = g;
    return SLM_OK;
}

/* ---- classes ------------------------------------------------------------------------------ */

bool slm_grammar_cls_has(const slm_grammar *g, uint32_t c, uint32_t cp) {
    const uint32_t *r = g->ranges + 2 * (size_t)g->classes[c].off;
    uint32_t lo = 0, hi = g->classes[c].n; /* binary search: first range with hi >= cp */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r[2 * mid + 1] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < g->classes[c].n && r[2 * lo] <= cp;
}

bool slm_grammar_cls_meets(const slm_grammar *g, uint32_t c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * (size_t)g->classes[c].off;
    for (uint32_t i = 0; i < g->classes[c].n; i++)
        if (r[2 * i] <= hi && r[2 * i + 1] >= lo) return true;
    return false;
}

bool slm_grammar_cls_covers(const slm_grammar *g, uint32_t c, uint32_t lo, uint32_t hi) {
    const uint32_t *r = g->ranges + 2 * (size_t)g->classes[c].off;
    for (uint32_t i = 0; i < g->classes[c].n; i++) /* ranges are merged: one must hold it all */
        if (r[2 * i] <= lo && r[2 * i + 1] >= hi) return true;
    return false;
}
