/*
 * grammar/regex.c: a regular-expression subset translated into a GBNF expression, for
 * --regex / plain regex input and JSON Schema "pattern"; and the GBNF text buffer the
 * generators share.
 *
 * Supported (ECMAScript syntax, unicode mode, as JSON Schema validators run it): literals;
 * escapes \d \D \w \W \s \S \t \n \r \f \v \0 \xHH \uHHHH \u{H..} and escaped punctuation;
 * . (any character but line terminators); [classes] with ranges, negation and the class
 * escapes; groups (...), (?:...), (?<name>...); alternation |; quantifiers * + ? {m} {m,}
 * {m,n} (a lazy '?' suffix is accepted: it does not change the language). Anchors: ^ at the
 * start and $ at the end of a top-level alternative.
 * Semantics: a plain regex must match the WHOLE output (anchors are then no-ops). A JSON
 * Schema pattern is a search: a top-level alternative without ^ may be preceded, one without
 * $ followed, by any string. In a JSON string ('json_string'), classes and '.' never produce
 * '"', '\\' or control characters (so the JSON text equals the matched string), and literal
 * ones are written as their JSON escapes.
 * Rejected with SLM_ERR_UNSUPPORTED naming the construct: backreferences, lookaround, word
 * boundaries, anchors elsewhere, flags. Thread-safety: pure. Non-goals: case-insensitive
 * matching, Unicode property escapes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "grammar/grammar_int.h"

#define CP_MAX 0x10FFFFu
#define GBUF_MAX SLM_GRAMMAR_GENERATED_MAX
#define CLASS_MAX 512 /* ranges in one class (unicode \s alone is 10) */

/* ---- text buffer ------------------------------------------------------------------------- */

void slm_gbuf_put(slm_gbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = nc <= GBUF_MAX ? slm_realloc(b->p, nc) : NULL;
        if (!q) {
            b->failed = true;
            return;
        }
        b->p = q, b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void slm_gbuf_puts(slm_gbuf *b, const char *s) { slm_gbuf_put(b, s, strlen(s)); }

void slm_gbuf_printf(slm_gbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp) {
        slm_gbuf_put(b, tmp, (size_t)n);
    } else if (n >= 0) { /* longer than the stack buffer: format on the heap */
        char *h = slm_malloc((size_t)n + 1);
        if (h) vsnprintf(h, (size_t)n + 1, fmt, ap2), slm_gbuf_put(b, h, (size_t)n);
        else b->failed = true;
        slm_free(h);
    } else {
        b->failed = true;
    }
    va_end(ap2);
}

void slm_gbuf_lit_cp(slm_gbuf *b, uint32_t cp) {
    if (cp == '"' || cp == '\\' || cp == ']' || cp == '[' || cp == '-' || cp == '^') {
        char t[3] = {'\\', (char)cp, 0};
        slm_gbuf_puts(b, t);
    } else if (cp >= 0x20 && cp < 0x7F) {
        char t[2] = {(char)cp, 0};
        slm_gbuf_puts(b, t);
    } else if (cp < 0x10000) {
        slm_gbuf_printf(b, "\\u%04X", cp);
    } else {
        slm_gbuf_printf(b, "\\U%08X", cp);
    }
}

/* ---- class sets ---------------------------------------------------------------------------- */

typedef struct rset {
    uint32_t r[2 * CLASS_MAX]; /* pairs lo, hi */
    uint32_t n;
} rset;

static bool rs_add(rset *s, uint32_t lo, uint32_t hi) {
    if (s->n >= CLASS_MAX) return false;
    s->r[2 * s->n] = lo, s->r[2 * s->n + 1] = hi, s->n++;
    return true;
}

static int cmp_pair(const void *x, const void *y) {
    const uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

/* Sort and merge. */
static void rs_norm(rset *s) {
    qsort(s->r, s->n, 2 * sizeof *s->r, cmp_pair);
    uint32_t m = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (m > 0 && s->r[2 * i] <= s->r[2 * (m - 1) + 1] + 1) {
            if (s->r[2 * i + 1] > s->r[2 * (m - 1) + 1]) s->r[2 * (m - 1) + 1] = s->r[2 * i + 1];
        } else {
            s->r[2 * m] = s->r[2 * i], s->r[2 * m + 1] = s->r[2 * i + 1], m++;
        }
    }
    s->n = m;
}

static void rs_negate(rset *s) {
    rs_norm(s);
    rset t = {.n = 0};
    uint32_t next = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->r[2 * i] > next) rs_add(&t, next, s->r[2 * i] - 1);
        next = s->r[2 * i + 1] + 1;
    }
    if (next <= CP_MAX) rs_add(&t, next, CP_MAX);
    *s = t;
}

/* Remove [lo, hi] from a normalised set. */
static bool rs_remove(rset *s, uint32_t lo, uint32_t hi) {
    rset t = {.n = 0};
    bool ok = true;
    for (uint32_t i = 0; i < s->n; i++) {
        const uint32_t a = s->r[2 * i], b = s->r[2 * i + 1];
        if (b < lo || a > hi) ok = ok && rs_add(&t, a, b);
        else {
            if (a < lo) ok = ok && rs_add(&t, a, lo - 1);
            if (b > hi) ok = ok && rs_add(&t, hi + 1, b);
        }
    }
    *s = t;
    return ok;
}

static void rs_emit(slm_gbuf *b, const rset *s) {
    if (s->n == 0) { /* matches nothing: a class no character is in */
        slm_gbuf_puts(b, "[^\\x00-\\U0010FFFF]");
        return;
    }
    slm_gbuf_puts(b, "[");
    for (uint32_t i = 0; i < s->n; i++) {
        slm_gbuf_lit_cp(b, s->r[2 * i]);
        if (s->r[2 * i + 1] != s->r[2 * i]) {
            slm_gbuf_puts(b, "-");
            slm_gbuf_lit_cp(b, s->r[2 * i + 1]);
        }
    }
    slm_gbuf_puts(b, "]");
}

/* ---- parser ---------------------------------------------------------------------------------- */

typedef struct rx {
    const char *s;
    size_t len, pos;
    bool json;       /* inside a JSON string */
    bool search;     /* JSON Schema semantics: unanchored ends match anything */
    int depth;
    slm_gbuf *b;
    slm_status st;
    char *err;
} rx;

static bool rerr(rx *r, slm_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool rerr(rx *r, slm_status st, const char *fmt, ...) {
    if (r->st) return false;
    char msg[SLM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = slm_errf(r->err, st, "regex at offset %zu: %s", r->pos, msg);
    return false;
}

static bool add_digit(rset *s) { return rs_add(s, '0', '9'); }
static bool add_word(rset *s) { return rs_add(s, '0', '9') && rs_add(s, 'A', 'Z') && rs_add(s, 'a', 'z') && rs_add(s, '_', '_'); }
static bool add_space(rset *s) { /* ECMAScript WhiteSpace and LineTerminator */
    return rs_add(s, 0x09, 0x0D) && rs_add(s, 0x20, 0x20) && rs_add(s, 0xA0, 0xA0) && rs_add(s, 0x1680, 0x1680) &&
           rs_add(s, 0x2000, 0x200A) && rs_add(s, 0x2028, 0x2029) && rs_add(s, 0x202F, 0x202F) &&
           rs_add(s, 0x205F, 0x205F) && rs_add(s, 0x3000, 0x3000) && rs_add(s, 0xFEFF, 0xFEFF);
}

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool read_hex(rx *r, int n, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        int h = r->pos < r->len ? hexv(r->s[r->pos]) : -1;
        if (h < 0) return rerr(r, SLM_ERR_CORRUPT, "expected %d hex digits", n);
        v = v << 4 | (uint32_t)h, r->pos++;
    }
    *out = v;
    return true;
}

static bool read_utf8(rx *r, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)r->s + r->pos;
    const size_t left = r->len - r->pos;
    unsigned need = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
                                   : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (need == 0 || need > left) return rerr(r, SLM_ERR_UTF8, "invalid UTF-8");
    uint32_t v = need == 1 ? s[0] : need == 2 ? s[0] & 0x1Fu : need == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    for (unsigned i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return rerr(r, SLM_ERR_UTF8, "invalid UTF-8");
        v = v << 6 | (s[i] & 0x3Fu);
    }
    static const uint32_t min_for[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for[need] || v > CP_MAX || (v >= 0xD800 && v <= 0xDFFF)) return rerr(r, SLM_ERR_UTF8, "invalid UTF-8");
    r->pos += need;
    *cp = v;
    return true;
}

/* An escape after '\\': either a class (*is_set, added to set) or one code point. */
static bool read_escape(rx *r, rset *set, bool *is_set, uint32_t *cp) {
    *is_set = false;
    if (r->pos >= r->len) return rerr(r, SLM_ERR_CORRUPT, "trailing backslash");
    const char c = r->s[r->pos++];
    rset t = {.n = 0};
    bool ok = true;
    switch (c) {
    case 'd': case 'D': ok = add_digit(&t); break;
    case 'w': case 'W': ok = add_word(&t); break;
    case 's': case 'S': ok = add_space(&t); break;
    case 't': *cp = '\t'; return true;
    case 'n': *cp = '\n'; return true;
    case 'r': *cp = '\r'; return true;
    case 'f': *cp = '\f'; return true;
    case 'v': *cp = '\v'; return true;
    case '0': *cp = 0; return true;
    case 'x': return read_hex(r, 2, cp);
    case 'u':
        if (r->pos < r->len && r->s[r->pos] == '{') {
            r->pos++;
            uint32_t v = 0;
            int nd = 0;
            while (r->pos < r->len && hexv(r->s[r->pos]) >= 0 && nd < 6) v = v << 4 | (uint32_t)hexv(r->s[r->pos++]), nd++;
            if (nd == 0 || r->pos >= r->len || r->s[r->pos] != '}' || v > CP_MAX) return rerr(r, SLM_ERR_CORRUPT, "bad \\u{...}");
            r->pos++;
            *cp = v;
            return true;
        }
        if (!read_hex(r, 4, cp)) return false;
        if (*cp >= 0xD800 && *cp <= 0xDFFF) return rerr(r, SLM_ERR_UNSUPPORTED, "surrogate escapes are not supported");
        return true;
    case 'b': case 'B': return rerr(r, SLM_ERR_UNSUPPORTED, "word boundary '\\%c' is not supported", c);
    case 'p': case 'P': return rerr(r, SLM_ERR_UNSUPPORTED, "Unicode property escape '\\%c' is not supported", c);
    case 'k': return rerr(r, SLM_ERR_UNSUPPORTED, "named backreference '\\k' is not supported");
    default:
        if (c >= '1' && c <= '9') return rerr(r, SLM_ERR_UNSUPPORTED, "backreference '\\%c' is not supported", c);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return rerr(r, SLM_ERR_UNSUPPORTED, "escape '\\%c' is not supported", c);
        r->pos--;
        return read_utf8(r, cp); /* escaped punctuation (or any non-letter) is itself */
    }
    if (!ok) return rerr(r, SLM_ERR_LIMIT, "class too large");
    if (c == 'D' || c == 'W' || c == 'S') rs_negate(&t);
    for (uint32_t i = 0; i < t.n; i++)
        if (!rs_add(set, t.r[2 * i], t.r[2 * i + 1])) return rerr(r, SLM_ERR_LIMIT, "class too large");
    *is_set = true;
    return true;
}

/* Emit set as a class, without JSON-unsafe characters in a JSON string. */
static void emit_set(rx *r, rset *s) {
    rs_norm(s);
    if (r->json) rs_remove(s, 0, 0x1F), rs_remove(s, '"', '"'), rs_remove(s, '\\', '\\');
    rs_emit(r->b, s);
}

/* One literal code point (JSON-escaped in a JSON string). */
static void emit_cp(rx *r, uint32_t cp) {
    slm_gbuf *b = r->b;
    if (r->json && (cp == '"' || cp == '\\')) {
        slm_gbuf_puts(b, cp == '"' ? "\"\\\\\\\"\"" : "\"\\\\\\\\\"");
    } else if (r->json && cp < 0x20) {
        static const char short_esc[] = {['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
        if (cp < sizeof short_esc && short_esc[cp]) slm_gbuf_printf(b, "\"\\\\%c\"", short_esc[cp]);
        else slm_gbuf_printf(b, "\"\\\\u00%02x\"", cp);
    } else {
        slm_gbuf_puts(b, "\"");
        slm_gbuf_lit_cp(b, cp);
        slm_gbuf_puts(b, "\"");
    }
}

static bool parse_class(rx *r) {
    r->pos++; /* '[' */
    rset s = {.n = 0};
    bool neg = false;
    if (r->pos < r->len && r->s[r->pos] == '^') neg = true, r->pos++;
    bool first = true;
    for (;;) {
        if (r->pos >= r->len) return rerr(r, SLM_ERR_CORRUPT, "unterminated class");
        if (r->s[r->pos] == ']' && !first) {
            r->pos++;
            break;
        }
        if (r->s[r->pos] == ']') { /* ECMAScript: [] matches nothing, [^] anything */
            r->pos++;
            break;
        }
        first = false;
        uint32_t lo, hi;
        bool is_set = false;
        if (r->s[r->pos] == '\\') {
            r->pos++;
            if (!read_escape(r, &s, &is_set, &lo)) return false;
            if (is_set) continue;
        } else if (!read_utf8(r, &lo)) {
            return false;
        }
        hi = lo;
        if (r->pos + 1 < r->len && r->s[r->pos] == '-' && r->s[r->pos + 1] != ']') {
            r->pos++;
            if (r->s[r->pos] == '\\') {
                r->pos++;
                if (!read_escape(r, &s, &is_set, &hi)) return false;
                if (is_set) return rerr(r, SLM_ERR_UNSUPPORTED, "class escape as a range end");
            } else if (!read_utf8(r, &hi)) {
                return false;
            }
            if (hi < lo) return rerr(r, SLM_ERR_CORRUPT, "range out of order in class");
        }
        if (!rs_add(&s, lo, hi)) return rerr(r, SLM_ERR_LIMIT, "class with more than %d ranges", CLASS_MAX);
    }
    if (neg) rs_negate(&s);
    emit_set(r, &s);
    return true;
}

static bool parse_alt(rx *r, bool top);

static bool parse_quant(rx *r) {
    if (r->pos >= r->len) return true;
    const char c = r->s[r->pos];
    if (c == '*' || c == '+' || c == '?') {
        r->pos++;
        slm_gbuf_printf(r->b, "%c", c);
    } else if (c == '{') {
        size_t save = r->pos++;
        unsigned long m = 0, n = 0;
        int dm = 0, dn = 0;
        bool comma = false;
        while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9' && dm < 7) m = m * 10 + (unsigned long)(r->s[r->pos++] - '0'), dm++;
        if (r->pos < r->len && r->s[r->pos] == ',') {
            comma = true, r->pos++;
            while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9' && dn < 7) n = n * 10 + (unsigned long)(r->s[r->pos++] - '0'), dn++;
        }
        if (dm == 0 || r->pos >= r->len || r->s[r->pos] != '}') { /* ECMAScript (annex B): a literal '{' */
            r->pos = save;
            return true;
        }
        r->pos++;
        if (m > SLM_GRAMMAR_MAX_REPEAT || n > SLM_GRAMMAR_MAX_REPEAT)
            return rerr(r, SLM_ERR_LIMIT, "repetition count above %u", SLM_GRAMMAR_MAX_REPEAT);
        if (comma && dn > 0 && n < m) return rerr(r, SLM_ERR_CORRUPT, "repetition {%lu,%lu} out of order", m, n);
        if (!comma) slm_gbuf_printf(r->b, "{%lu}", m);
        else if (dn == 0) slm_gbuf_printf(r->b, "{%lu,}", m);
        else slm_gbuf_printf(r->b, "{%lu,%lu}", m, n);
    } else {
        return true;
    }
    if (r->pos < r->len && r->s[r->pos] == '?') r->pos++; /* lazy: same language */
    if (r->pos < r->len && (r->s[r->pos] == '*' || r->s[r->pos] == '+' || r->s[r->pos] == '?' || r->s[r->pos] == '{'))
        return rerr(r, SLM_ERR_CORRUPT, "nothing to repeat");
    return true;
}

/* Any string (search semantics around an unanchored end). */
static void emit_any(rx *r) {
    rset s = {.n = 0};
    rs_add(&s, 0, CP_MAX);
    emit_set(r, &s);
    slm_gbuf_puts(r->b, "*");
}

static bool parse_seq(rx *r, bool top) {
    bool anchored_start = false, anchored_end = false;
    if (top && r->pos < r->len && r->s[r->pos] == '^') anchored_start = true, r->pos++;
    if (top && r->search && !anchored_start) emit_any(r), slm_gbuf_puts(r->b, " ");
    slm_gbuf_puts(r->b, "(\"\"");
    while (r->pos < r->len && !r->st) {
        const char c = r->s[r->pos];
        if (c == '|' || c == ')') break;
        slm_gbuf_puts(r->b, " ");
        if (c == '$') {
            r->pos++;
            if (!top || (r->pos < r->len && r->s[r->pos] != '|'))
                return rerr(r, SLM_ERR_UNSUPPORTED, "'$' anchor inside the pattern is not supported");
            anchored_end = true;
            break;
        }
        if (c == '^') return rerr(r, SLM_ERR_UNSUPPORTED, "'^' anchor inside the pattern is not supported");
        if (c == '*' || c == '+' || c == '?') return rerr(r, SLM_ERR_CORRUPT, "nothing to repeat");
        if (c == '(') {
            r->pos++;
            if (++r->depth > SLM_GRAMMAR_MAX_DEPTH) return rerr(r, SLM_ERR_LIMIT, "groups nested deeper than %d", SLM_GRAMMAR_MAX_DEPTH);
            if (r->pos < r->len && r->s[r->pos] == '?') {
                if (r->pos + 1 < r->len && r->s[r->pos + 1] == ':') {
                    r->pos += 2;
                } else if (r->pos + 2 < r->len && r->s[r->pos + 1] == '<' && r->s[r->pos + 2] != '=' && r->s[r->pos + 2] != '!') {
                    while (r->pos < r->len && r->s[r->pos] != '>') r->pos++;
                    if (r->pos >= r->len) return rerr(r, SLM_ERR_CORRUPT, "unterminated group name");
                    r->pos++;
                } else {
                    return rerr(r, SLM_ERR_UNSUPPORTED, "lookaround and group flags '(?' are not supported");
                }
            }
            slm_gbuf_puts(r->b, "(");
            if (!parse_alt(r, false)) return false;
            if (r->pos >= r->len || r->s[r->pos] != ')') return rerr(r, SLM_ERR_CORRUPT, "missing ')'");
            r->pos++;
            r->depth--;
            slm_gbuf_puts(r->b, ")");
        } else if (c == '[') {
            if (!parse_class(r)) return false;
        } else if (c == '.') {
            r->pos++;
            rset s = {.n = 0};
            rs_add(&s, '\n', '\n'), rs_add(&s, '\r', '\r'), rs_add(&s, 0x2028, 0x2029);
            rs_negate(&s);
            emit_set(r, &s);
        } else if (c == '\\') {
            r->pos++;
            rset s = {.n = 0};
            bool is_set;
            uint32_t cp;
            if (!read_escape(r, &s, &is_set, &cp)) return false;
            if (is_set) emit_set(r, &s);
            else emit_cp(r, cp);
        } else {
            uint32_t cp;
            if (!read_utf8(r, &cp)) return false;
            emit_cp(r, cp);
        }
        if (!parse_quant(r)) return false;
    }
    slm_gbuf_puts(r->b, ")");
    if (top && r->search && !anchored_end) slm_gbuf_puts(r->b, " "), emit_any(r);
    return !r->st;
}

static bool parse_alt(rx *r, bool top) {
    slm_gbuf_puts(r->b, "(");
    if (!parse_seq(r, top)) return false;
    while (r->pos < r->len && r->s[r->pos] == '|') {
        r->pos++;
        slm_gbuf_puts(r->b, " | ");
        if (!parse_seq(r, top)) return false;
    }
    slm_gbuf_puts(r->b, ")");
    return true;
}

slm_status slm_grammar_regex_to_gbnf(const char *re, size_t len, bool json_string, slm_gbuf *b, char *err) {
    if (len > SLM_GRAMMAR_MAX_SOURCE) return slm_errf(err, SLM_ERR_LIMIT, "regex of %zu bytes exceeds %u", len, SLM_GRAMMAR_MAX_SOURCE);
    rx r = {.s = re, .len = len, .json = json_string, .search = json_string, .b = b, .err = err};
    if (parse_alt(&r, true) && r.pos < r.len) rerr(&r, SLM_ERR_CORRUPT, "unbalanced ')'");
    if (!r.st && b->failed) return slm_errf(err, SLM_ERR_LIMIT, "generated grammar too large");
    return r.st;
}

slm_status slm_grammar_from_regex(const char *re, size_t len, slm_grammar **out, char *err) {
    *out = NULL;
    if (!re && len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL regex");
    slm_gbuf b = {0};
    slm_gbuf_puts(&b, "root ::= ");
    slm_status st = slm_grammar_regex_to_gbnf(re ? re : "", len, false, &b, err);
    slm_gbuf_puts(&b, "\n");
    if (st == SLM_OK && b.failed) st = slm_errf(err, SLM_ERR_NOMEM, "regex grammar");
    if (st == SLM_OK) st = slm_grammar_parse_gbnf(b.p, b.n, out, err);
    slm_free(b.p);
    return st;
}
