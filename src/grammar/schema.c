/*
 * grammar/schema.c: JSON Schema (the draft 2020-12 subset of docs/structured-output.md) ->
 * GBNF text -> a compiled grammar; and "any JSON object".
 *
 * Every schema node becomes one rule (s<N>); $ref targets are memoised by their JSON pointer
 * before their body is generated, so recursive schemas become recursive rules. The output
 * must validate under the schema with any independent validator, so whatever cannot be
 * enforced exactly is rejected (SLM_ERR_UNSUPPORTED naming the keyword and its JSON
 * pointer), never ignored. Policies (each documented in docs/structured-output.md):
 *  - additionalProperties: no property outside "properties" is ever generated (valid under
 *    any value of the keyword); an object schema without "properties" allows any object.
 *  - properties come in schema order; required ones always, optional ones may be skipped.
 *  - whitespace: at most one space, or one newline and up to 16 spaces, where JSON allows
 *    it inside objects and arrays; none before or after the root value. Bounded, so a model
 *    cannot loop on whitespace.
 *  - numbers: at most 15 integer digits, 15 fraction digits, 2 exponent digits (always
 *    finite doubles); integers with minimum/maximum get an exact digit-range grammar.
 *  - strings: escapes \" \\ \/ \b \f \n \r \t and \uXXXX except surrogates, so lengths
 *    count code points exactly as validators do.
 *  - oneOf is accepted only when its branches are provably disjoint (distinct JSON types,
 *    distinct constants, or a required property with distinct const values); otherwise it
 *    is rejected (use anyOf).
 * Thread-safety: pure. Non-goals: remote $ref, $anchor/$dynamicRef, conditionals,
 * numeric bounds on non-integers.
 */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "grammar/grammar_int.h"

#define INT_DIGITS 15                    /* integer digits the grammar generates */
#define INT_LIMIT 999999999999999LL      /* = 10^INT_DIGITS - 1 */
#define MAX_REFS 4096                    /* distinct $ref targets in one schema */
#define NAME_LEN 24                      /* "s4294967295" and the like */

/* Rules every schema grammar shares (unused ones cost a few elements). */
static const char prelude[] =
    "ws ::= ( \" \" | \"\\n\" \" \"{0,16} )?\n"
    "jhex ::= [0-9a-fA-F]\n"
    "jesc ::= [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-CeEfF] jhex{3} | [dD] [0-7] jhex{2} )\n"
    "jchar ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" jesc\n"
    "jstring ::= \"\\\"\" jchar* \"\\\"\"\n"
    "jint ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,14} )\n"
    "jnumber ::= jint ( \".\" [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,2} )?\n"
    "jbool ::= \"true\" | \"false\"\n"
    "jnull ::= \"null\"\n"
    "jvalue ::= jobject | jarray | jstring | jnumber | jbool | jnull\n"
    "jobject ::= \"{\" ws ( jstring ws \":\" ws jvalue ws ( \",\" ws jstring ws \":\" ws jvalue ws )* )? \"}\"\n"
    "jarray ::= \"[\" ws ( jvalue ws ( \",\" ws jvalue ws )* )? \"]\"\n"
    "d2831 ::= \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]\n"
    "fdate ::= [0-9]{4} \"-\" ( ( \"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | \"12\" ) \"-\" ( d2831 | \"29\" | \"3\" [01] )"
    " | ( \"04\" | \"06\" | \"09\" | \"11\" ) \"-\" ( d2831 | \"29\" | \"30\" ) | \"02\" \"-\" d2831 )\n"
    "fhour ::= [01] [0-9] | \"2\" [0-3]\n"
    "fmin ::= [0-5] [0-9]\n"
    "ftime ::= fhour \":\" fmin \":\" fmin ( \".\" [0-9]{1,6} )? ( \"Z\" | [+-] fhour \":\" fmin )\n"
    "flabel ::= [a-zA-Z0-9] ( [a-zA-Z0-9-]{0,20} [a-zA-Z0-9] )?\n"
    "femail ::= [a-zA-Z0-9_+-]{1,32} ( \".\" [a-zA-Z0-9_+-]{1,32} ){0,3} \"@\" flabel ( \".\" flabel ){1,3}\n"
    "fx ::= [0-9a-f]\n"
    "fuuid ::= fx{8} \"-\" fx{4} \"-\" fx{4} \"-\" fx{4} \"-\" fx{12}\n";

typedef struct refmemo {
    char *ptr;            /* owned: the JSON pointer ("#/$defs/node") */
    char name[NAME_LEN];  /* its rule */
} refmemo;

typedef struct sc {
    json_t *doc;          /* owned: the whole schema */
    slm_gbuf rules;       /* generated rules */
    uint32_t n_rules;     /* counter for rule names */
    refmemo *refs;        /* owned [n_refs] */
    size_t n_refs;
    int depth;            /* nesting of schemas being generated */
    slm_status st;
    char *err;
} sc;

static bool serr(sc *s, slm_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool serr(sc *s, slm_status st, const char *fmt, ...) {
    if (s->st) return false;
    char msg[SLM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->st = slm_errf(s->err, st, "%s", msg);
    return false;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void new_name(sc *s, char name[NAME_LEN]) { snprintf(name, NAME_LEN, "s%u", s->n_rules++); }

/* Append a JSON string's bytes as a GBNF literal "...". */
static void put_literal(slm_gbuf *b, const char *t, size_t n) {
    slm_gbuf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)t[i];
        if (c == '"' || c == '\\') slm_gbuf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7F) slm_gbuf_printf(b, "\\x%02X", c);
        else slm_gbuf_put(b, (const char *)&t[i], 1); /* UTF-8 bytes pass through */
    }
    slm_gbuf_puts(b, "\"");
}

/* The compact JSON text of a value as a literal. */
static bool put_json_literal(sc *s, slm_gbuf *b, const json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) return serr(s, SLM_ERR_NOMEM, "serialising a constant");
    put_literal(b, t, strlen(t));
    free(t);
    return true;
}

/* Child path: path + "/" + key (JSON pointer escaping). */
static void child_path(char *out, size_t cap, const char *path, const char *key) {
    size_t n = (size_t)snprintf(out, cap, "%s/", path);
    for (const char *k = key; *k && n + 3 < cap; k++) {
        if (*k == '~') out[n++] = '~', out[n++] = '0';
        else if (*k == '/') out[n++] = '~', out[n++] = '1';
        else out[n++] = *k;
    }
    out[n < cap ? n : cap - 1] = 0;
}

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };

static int type_bit(const char *t) {
    static const struct { const char *n; int b; } k[] = {{"null", T_NULL}, {"boolean", T_BOOL}, {"integer", T_INT},
        {"number", T_NUM}, {"string", T_STR}, {"array", T_ARR}, {"object", T_OBJ}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(t, k[i].n)) return k[i].b;
    return 0;
}

/* JSON type bit of a value (an integral real counts as integer, as validators do). */
static int value_type(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_NULL: return T_NULL;
    case JSON_TRUE: case JSON_FALSE: return T_BOOL;
    case JSON_INTEGER: return T_INT | T_NUM;
    case JSON_REAL: return floor(json_real_value(v)) == json_real_value(v) ? T_INT | T_NUM : T_NUM;
    case JSON_STRING: return T_STR;
    case JSON_ARRAY: return T_ARR;
    default: return T_OBJ;
    }
}

static bool get_count(sc *s, const json_t *node, const char *key, const char *path, long long *out) {
    const json_t *v = json_object_get(node, key);
    if (!v) return true;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (d < 0 || floor(d) != d) return serr(s, SLM_ERR_CORRUPT, "'%s' at %s must be a non-negative integer", key, path);
    if (d > SLM_GRAMMAR_MAX_REPEAT) return serr(s, SLM_ERR_LIMIT, "'%s' at %s above %u", key, path, SLM_GRAMMAR_MAX_REPEAT);
    *out = (long long)d;
    return true;
}

/* ---- integer ranges -------------------------------------------------------------------------- */

/* Digit strings of length n between lo and hi (same length, lo <= hi). */
static void digits_range(slm_gbuf *b, const char *lo, const char *hi, size_t n) {
    if (n == 0) {
        slm_gbuf_puts(b, "\"\"");
        return;
    }
    if (lo[0] == hi[0]) {
        slm_gbuf_printf(b, "\"%c\" ", lo[0]);
        digits_range(b, lo + 1, hi + 1, n - 1);
        return;
    }
    bool lo_min = true, hi_max = true;
    for (size_t i = 1; i < n; i++) lo_min = lo_min && lo[i] == '0', hi_max = hi_max && hi[i] == '9';
    char nines[INT_DIGITS + 2], zeros[INT_DIGITS + 2];
    memset(nines, '9', n), memset(zeros, '0', n);
    const char *sep = "";
    char start = lo[0], end = hi[0];
    slm_gbuf_puts(b, "( ");
    if (!lo_min) {
        slm_gbuf_printf(b, "\"%c\" ", lo[0]);
        digits_range(b, lo + 1, nines, n - 1);
        sep = " | ";
        start++;
    }
    if (!hi_max) end--;
    if (start <= end) {
        slm_gbuf_printf(b, "%s[%c-%c]", sep, start, end);
        if (n > 1) slm_gbuf_printf(b, " [0-9]{%zu}", n - 1);
        sep = " | ";
    }
    if (!hi_max) {
        slm_gbuf_printf(b, "%s\"%c\" ", sep, hi[0]);
        digits_range(b, zeros, hi + 1, n - 1);
    }
    slm_gbuf_puts(b, " )");
}

/* Decimal numbers without leading zeros in [a, b], 0 <= a <= b <= INT_LIMIT. */
static void nonneg_range(slm_gbuf *b, long long a, long long hi) {
    slm_gbuf_puts(b, "( ");
    long long p = 1; /* 10^(L-1) */
    const char *sep = "";
    for (int L = 1; L <= INT_DIGITS; L++, p *= 10) {
        long long lo_l = L == 1 ? 0 : p, hi_l = p * 10 - 1;
        if (lo_l < a) lo_l = a;
        if (hi_l > hi) hi_l = hi;
        if (lo_l > hi_l) continue;
        char x[24], y[24];
        snprintf(x, sizeof x, "%lld", lo_l), snprintf(y, sizeof y, "%lld", hi_l);
        slm_gbuf_puts(b, sep);
        digits_range(b, x, y, (size_t)L);
        sep = " | ";
    }
    slm_gbuf_puts(b, " )");
}

static bool int_range(sc *s, slm_gbuf *b, const json_t *node, const char *path) {
    long long lo = -INT_LIMIT, hi = INT_LIMIT;
    const json_t *mn = json_object_get(node, "minimum"), *mx = json_object_get(node, "maximum");
    if (!mn && !mx) {
        slm_gbuf_puts(b, "jint");
        return true;
    }
    if ((mn && !json_is_number(mn)) || (mx && !json_is_number(mx)))
        return serr(s, SLM_ERR_CORRUPT, "minimum/maximum at %s must be numbers", path);
    if (mn) {
        double d = ceil(json_number_value(mn));
        if (d > (double)INT_LIMIT) return serr(s, SLM_ERR_UNSUPPORTED, "minimum at %s beyond the %d-digit integer range", path, INT_DIGITS);
        if (d > (double)lo) lo = (long long)d;
    }
    if (mx) {
        double d = floor(json_number_value(mx));
        if (d < (double)-INT_LIMIT) return serr(s, SLM_ERR_UNSUPPORTED, "maximum at %s beyond the %d-digit integer range", path, INT_DIGITS);
        if (d < (double)hi) hi = (long long)d;
    }
    if (lo > hi) return serr(s, SLM_ERR_UNSUPPORTED, "no integer between minimum and maximum at %s", path);
    if (lo >= 0) {
        nonneg_range(b, lo, hi);
    } else if (hi < 0) {
        slm_gbuf_puts(b, "\"-\" ");
        nonneg_range(b, -hi, -lo);
    } else {
        slm_gbuf_puts(b, "( \"-\" ");
        nonneg_range(b, 1, -lo);
        slm_gbuf_puts(b, " | ");
        nonneg_range(b, 0, hi);
        slm_gbuf_puts(b, " )");
    }
    return true;
}

/* ---- schema nodes ------------------------------------------------------------------------------ */

static bool gen(sc *s, const json_t *node, const char *path, char name[NAME_LEN]);

/* Keywords of the subset. */
static const char *const known_keys[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "anyOf", "oneOf", "$defs", "$ref",
    "description", "title", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly"};
/* Annotations: no effect on validation. */
static bool is_annotation(const char *k) {
    static const char *const ann[] = {"description", "title", "$schema", "$id", "$comment", "default", "examples",
                                      "deprecated", "readOnly", "writeOnly", "$defs"};
    for (size_t i = 0; i < sizeof ann / sizeof ann[0]; i++)
        if (!strcmp(k, ann[i])) return true;
    return false;
}

static bool check_keywords(sc *s, const json_t *node, const char *path) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)node, k, v) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0] && !ok; i++) ok = !strcmp(k, known_keys[i]);
        if (!ok) return serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema keyword '%s' at %s", k, path[0] ? path : "/");
    }
    return true;
}

/* Only annotations (and 'except') next to a keyword that takes the whole node. */
static bool only_with(sc *s, const json_t *node, const char *path, const char *kw, const char *except) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)node, k, v) {
        if (!strcmp(k, kw) || is_annotation(k) || (except && !strcmp(k, except))) continue;
        return serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema keyword '%s' next to '%s' at %s", k, kw, path[0] ? path : "/");
    }
    return true;
}

/* Resolve a local reference "#" or "#/a/b" (JSON pointer, ~0 ~1 escapes). */
static const json_t *resolve(sc *s, const char *ref, const char *path) {
    if (ref[0] != '#') {
        serr(s, SLM_ERR_UNSUPPORTED,
             "unsupported $ref '%.100s' at %s: remote references are never fetched (only local '#/...' references)", ref,
             path[0] ? path : "/");
        return NULL;
    }
    const json_t *cur = s->doc;
    const char *p = ref + 1;
    while (*p == '/' && cur) {
        p++;
        char tok[256];
        size_t n = 0;
        for (; *p && *p != '/' && n + 1 < sizeof tok; p++) {
            if (p[0] == '~' && p[1] == '0') tok[n++] = '~', p++;
            else if (p[0] == '~' && p[1] == '1') tok[n++] = '/', p++;
            else tok[n++] = *p;
        }
        tok[n] = 0;
        if (json_is_object(cur)) cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) cur = json_array_get(cur, strtoul(tok, NULL, 10));
        else cur = NULL;
    }
    if (!cur || *p) serr(s, SLM_ERR_CORRUPT, "$ref '%.100s' at %s does not resolve", ref, path[0] ? path : "/");
    return *p ? NULL : cur;
}

static bool gen_ref(sc *s, const json_t *node, const char *path, char name[NAME_LEN]) {
    const json_t *r = json_object_get(node, "$ref");
    if (!json_is_string(r)) return serr(s, SLM_ERR_CORRUPT, "$ref at %s must be a string", path);
    if (!only_with(s, node, path, "$ref", NULL)) return false;
    const char *ref = json_string_value(r);
    for (size_t i = 0; i < s->n_refs; i++)
        if (!strcmp(s->refs[i].ptr, ref)) return memcpy(name, s->refs[i].name, NAME_LEN), true;
    if (s->n_refs >= MAX_REFS) return serr(s, SLM_ERR_LIMIT, "more than %d $ref targets", MAX_REFS);
    const json_t *target = resolve(s, ref, path);
    if (!target) return false;
    refmemo *q = slm_realloc(s->refs, (s->n_refs + 1) * sizeof *q);
    if (!q) return serr(s, SLM_ERR_NOMEM, "$ref table");
    s->refs = q;
    refmemo *m = &s->refs[s->n_refs];
    if (!(m->ptr = slm_strdup(ref))) return serr(s, SLM_ERR_NOMEM, "$ref table");
    new_name(s, m->name);
    s->n_refs++;
    memcpy(name, m->name, NAME_LEN);
    char target_name[NAME_LEN];
    if (!gen(s, target, ref + 1, target_name)) return false;
    slm_gbuf_printf(&s->rules, "%s ::= %s\n", name, target_name);
    return true;
}

/* enum/const (with an optional type filter). */
static bool gen_enum(sc *s, const json_t *node, const char *path, slm_gbuf *b, int types) {
    const json_t *c = json_object_get(node, "const"), *e = json_object_get(node, "enum");
    if (c && e) return serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema keyword 'enum' next to 'const' at %s", path);
    if (e && (!json_is_array(e) || json_array_size(e) == 0)) return serr(s, SLM_ERR_CORRUPT, "enum at %s must be a non-empty array", path);
    size_t n = c ? 1 : json_array_size(e), kept = 0;
    slm_gbuf_puts(b, "( ");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = c ? c : json_array_get(e, i);
        if (!(value_type(v) & types)) continue;
        slm_gbuf_puts(b, kept++ ? " | " : "");
        if (!put_json_literal(s, b, v)) return false;
    }
    slm_gbuf_puts(b, " )");
    if (kept == 0) return serr(s, SLM_ERR_UNSUPPORTED, "no enum/const value at %s has the schema's type", path);
    return true;
}

static bool gen_string(sc *s, const json_t *node, const char *path, slm_gbuf *b) {
    const json_t *fmt = json_object_get(node, "format"), *pat = json_object_get(node, "pattern");
    long long mn = 0, mx = -1;
    if (!get_count(s, node, "minLength", path, &mn) || !get_count(s, node, "maxLength", path, &mx)) return false;
    const bool lengths = json_object_get(node, "minLength") || json_object_get(node, "maxLength");
    if ((fmt && pat) || ((fmt || pat) && lengths))
        return serr(s, SLM_ERR_UNSUPPORTED, "unsupported combination of format/pattern/minLength/maxLength at %s", path);
    if (fmt) {
        const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
        const char *rule = !strcmp(f, "date") ? "fdate" : !strcmp(f, "date-time") ? "fdate \"T\" ftime"
                         : !strcmp(f, "email") ? "femail" : !strcmp(f, "uuid") ? "fuuid" : NULL;
        if (!rule) return serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema format '%.64s' at %s", f, path);
        slm_gbuf_printf(b, "\"\\\"\" %s \"\\\"\"", rule);
        return true;
    }
    if (pat) {
        if (!json_is_string(pat)) return serr(s, SLM_ERR_CORRUPT, "pattern at %s must be a string", path);
        slm_gbuf_puts(b, "\"\\\"\" ");
        char e2[SLM_ERR_LEN] = "";
        slm_status st = slm_grammar_regex_to_gbnf(json_string_value(pat), json_string_length(pat), true, b, e2);
        if (st) return serr(s, st, "pattern at %s: %s", path, e2);
        slm_gbuf_puts(b, " \"\\\"\"");
        return true;
    }
    if (mx >= 0 && mn > mx) return serr(s, SLM_ERR_UNSUPPORTED, "minLength > maxLength at %s", path);
    if (!lengths) slm_gbuf_puts(b, "jstring");
    else if (mx < 0) slm_gbuf_printf(b, "\"\\\"\" jchar{%lld,} \"\\\"\"", mn);
    else slm_gbuf_printf(b, "\"\\\"\" jchar{%lld,%lld} \"\\\"\"", mn, mx);
    return true;
}

/* Properties i.. of an object, given whether one was already written (memoised rules). */
static bool gen_object(sc *s, const json_t *node, const char *path, slm_gbuf *b) {
    const json_t *props = json_object_get(node, "properties"), *req = json_object_get(node, "required");
    if (props && !json_is_object(props)) return serr(s, SLM_ERR_CORRUPT, "properties at %s must be an object", path);
    if (req && !json_is_array(req)) return serr(s, SLM_ERR_CORRUPT, "required at %s must be an array", path);
    const json_t *ap = json_object_get(node, "additionalProperties");
    if (ap && !json_is_boolean(ap) && !json_is_object(ap))
        return serr(s, SLM_ERR_CORRUPT, "additionalProperties at %s must be a boolean or a schema", path);
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) return serr(s, SLM_ERR_CORRUPT, "required at %s must list strings", path);
        if (!props || !json_object_get(props, json_string_value(r)))
            return serr(s, SLM_ERR_UNSUPPORTED, "required property '%.64s' at %s is not in properties", json_string_value(r), path);
    }
    if (!props) {
        if (ap && json_is_false(ap)) slm_gbuf_puts(b, "\"{\" ws \"}\"");
        else slm_gbuf_puts(b, "jobject");
        return true;
    }
    const size_t n = json_object_size(props);
    if (n == 0) {
        slm_gbuf_puts(b, "\"{\" ws \"}\"");
        return true;
    }
    /* kv rules in schema order (jansson keeps insertion order) */
    char (*kv)[NAME_LEN] = slm_malloc(n * sizeof *kv);
    bool *required = slm_calloc(n, sizeof *required);
    if (!kv || !required) {
        slm_free(kv), slm_free(required);
        return serr(s, SLM_ERR_NOMEM, "object rules");
    }
    size_t i = 0;
    const char *key;
    json_t *sub;
    bool ok = true;
    json_object_foreach((json_t *)props, key, sub) {
        char cpath[1024], vname[NAME_LEN];
        char pp[1024];
        child_path(pp, sizeof pp, path, "properties");
        child_path(cpath, sizeof cpath, pp, key);
        if (!(ok = gen(s, sub, cpath, vname))) break;
        new_name(s, kv[i]);
        slm_gbuf_printf(&s->rules, "%s ::= ", kv[i]);
        json_t *ks = json_string(key);
        ok = ks && put_json_literal(s, &s->rules, ks);
        json_decref(ks);
        if (!ok) break;
        slm_gbuf_printf(&s->rules, " ws \":\" ws %s ws\n", vname);
        for (size_t r = 0; req && r < json_array_size(req); r++)
            if (!strcmp(json_string_value(json_array_get(req, r)), key)) required[i] = true;
        i++;
    }
    /* tail rules: t[i][e] = properties i.. given e (something already written); built
     * backwards so each refers to the next */
    char base[NAME_LEN];
    new_name(s, base);
    for (size_t k = n; ok && k-- > 0;) {
        for (int e = 0; e < 2; e++) {
            slm_gbuf_printf(&s->rules, "%s-%zu-%d ::= ", base, k, e);
            const char *comma = e ? "\",\" ws " : "";
            char next_w[NAME_LEN + 48], next_s[NAME_LEN + 48];
            if (k + 1 < n) {
                snprintf(next_w, sizeof next_w, " %s-%zu-1", base, k + 1);
                snprintf(next_s, sizeof next_s, " %s-%zu-%d", base, k + 1, e);
            } else {
                next_w[0] = next_s[0] = 0;
            }
            slm_gbuf_printf(&s->rules, "%s%s%s", comma, kv[k], next_w);
            if (!required[k]) {
                if (next_s[0]) slm_gbuf_printf(&s->rules, " |%s", next_s);
                else slm_gbuf_puts(&s->rules, " | \"\"");
            }
            slm_gbuf_puts(&s->rules, "\n");
        }
    }
    if (ok) slm_gbuf_printf(b, "\"{\" ws %s-0-0 \"}\"", base);
    slm_free(kv);
    slm_free(required);
    return ok;
}

static bool gen_array(sc *s, const json_t *node, const char *path, slm_gbuf *b) {
    const json_t *items = json_object_get(node, "items");
    long long mn = 0, mx = -1;
    if (!get_count(s, node, "minItems", path, &mn) || !get_count(s, node, "maxItems", path, &mx)) return false;
    if (mx >= 0 && mn > mx) return serr(s, SLM_ERR_UNSUPPORTED, "minItems > maxItems at %s", path);
    char item[NAME_LEN] = "jvalue";
    if (items) {
        if (json_is_array(items))
            return serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema keyword 'items' as an array at %s (draft 2020-12 uses prefixItems)", path);
        char cpath[1024];
        child_path(cpath, sizeof cpath, path, "items");
        if (!gen(s, items, cpath, item)) return false;
    }
    if (mx == 0) {
        slm_gbuf_puts(b, "\"[\" ws \"]\"");
        return true;
    }
    /* "[" ws ( item ws ( "," ws item ws ){m-1,n-1} )? "]", the group optional when m == 0 */
    const long long lo = mn > 0 ? mn - 1 : 0;
    slm_gbuf_printf(b, "\"[\" ws ( %s ws ( \",\" ws %s ws )", item, item);
    if (mx < 0) slm_gbuf_printf(b, "{%lld,}", lo);
    else slm_gbuf_printf(b, "{%lld,%lld}", lo, mx - 1);
    slm_gbuf_printf(b, " )%s \"]\"", mn > 0 ? "" : "?");
    return true;
}

/* Types a branch of oneOf can produce, for the exclusivity check (T_ALL when unknown). */
static int branch_types(sc *s, const json_t *node, int depth) {
    if (!json_is_object(node) || depth > 8) return T_ALL;
    const json_t *r = json_object_get(node, "$ref");
    if (json_is_string(r)) {
        char e2[SLM_ERR_LEN];
        sc tmp = *s;
        tmp.err = e2, tmp.st = SLM_OK;
        const json_t *t = resolve(&tmp, json_string_value(r), "");
        return t ? branch_types(s, t, depth + 1) : T_ALL;
    }
    const json_t *t = json_object_get(node, "type");
    int bits = 0;
    if (json_is_string(t)) bits = type_bit(json_string_value(t));
    for (size_t i = 0; json_is_array(t) && i < json_array_size(t); i++)
        bits |= json_is_string(json_array_get(t, i)) ? type_bit(json_string_value(json_array_get(t, i))) : T_ALL;
    if (bits & T_NUM) bits |= T_INT; /* integers are numbers */
    if (bits & T_INT) bits |= T_NUM;
    return bits ? bits : T_ALL;
}

/* The const value a branch forces on property key, or NULL. */
static const json_t *branch_discriminator(const json_t *node, const char *key) {
    const json_t *props = json_object_get(node, "properties"), *req = json_object_get(node, "required");
    const json_t *p = props ? json_object_get(props, key) : NULL;
    bool is_req = false;
    for (size_t i = 0; json_is_array(req) && i < json_array_size(req); i++)
        is_req = is_req || (json_is_string(json_array_get(req, i)) && !strcmp(json_string_value(json_array_get(req, i)), key));
    return p && is_req ? json_object_get(p, "const") : NULL;
}

static bool oneof_exclusive(sc *s, const json_t *arr) {
    const size_t n = json_array_size(arr);
    bool ok = true; /* 1: pairwise disjoint types */
    for (size_t i = 0; i < n && ok; i++)
        for (size_t j = i + 1; j < n && ok; j++)
            ok = !(branch_types(s, json_array_get(arr, i), 0) & branch_types(s, json_array_get(arr, j), 0));
    if (ok) return true;
    ok = true; /* 2: every branch a const, all distinct */
    for (size_t i = 0; i < n && ok; i++) {
        const json_t *a = json_object_get(json_array_get(arr, i), "const");
        ok = a && json_object_size(json_array_get(arr, i)) == 1;
        for (size_t j = 0; j < i && ok; j++) ok = !json_equal(a, json_object_get(json_array_get(arr, j), "const"));
    }
    if (ok) return true;
    /* 3: objects with a required property whose const differs in every branch */
    const json_t *first = json_array_get(arr, 0), *props = json_object_get(first, "properties");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)props, key, v) {
        ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            const json_t *a = branch_discriminator(json_array_get(arr, i), key);
            ok = a && branch_types(s, json_array_get(arr, i), 0) == T_OBJ;
            for (size_t j = 0; j < i && ok; j++) ok = !json_equal(a, branch_discriminator(json_array_get(arr, j), key));
        }
        if (ok) return true;
    }
    return false;
}

static bool gen_anyof(sc *s, const json_t *node, const char *path, const char *kw, slm_gbuf *b) {
    const json_t *arr = json_object_get(node, kw);
    if (!json_is_array(arr) || json_array_size(arr) == 0) return serr(s, SLM_ERR_CORRUPT, "%s at %s must be a non-empty array", kw, path);
    if (!only_with(s, node, path, kw, NULL)) return false;
    if (!strcmp(kw, "oneOf") && !oneof_exclusive(s, arr))
        return serr(s, SLM_ERR_UNSUPPORTED, "oneOf at %s: branches are not provably exclusive (distinct types, consts or a "
                    "const discriminator property); use anyOf", path[0] ? path : "/");
    slm_gbuf_puts(b, "( ");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char cpath[1024], idx[24], pp[1024], sub[NAME_LEN];
        snprintf(idx, sizeof idx, "%zu", i);
        child_path(pp, sizeof pp, path, kw);
        child_path(cpath, sizeof cpath, pp, idx);
        if (!gen(s, json_array_get(arr, i), cpath, sub)) return false;
        slm_gbuf_printf(b, "%s%s", i ? " | " : "", sub);
    }
    slm_gbuf_puts(b, " )");
    return true;
}

/* The types a node is generated as: "type", else inferred from its keywords, else all. */
static int node_types(sc *s, const json_t *node, const char *path) {
    const json_t *t = json_object_get(node, "type");
    int bits = 0;
    if (t) {
        for (size_t i = 0; i < (json_is_array(t) ? json_array_size(t) : 1); i++) {
            const json_t *x = json_is_array(t) ? json_array_get(t, i) : t;
            int b = json_is_string(x) ? type_bit(json_string_value(x)) : 0;
            if (!b) return serr(s, SLM_ERR_CORRUPT, "bad type at %s", path), 0;
            bits |= b;
        }
        if (bits == 0) serr(s, SLM_ERR_CORRUPT, "empty type at %s", path);
        return bits;
    }
    static const struct { const char *k; int b; } infer[] = {
        {"properties", T_OBJ}, {"required", T_OBJ}, {"additionalProperties", T_OBJ}, {"items", T_ARR},
        {"minItems", T_ARR}, {"maxItems", T_ARR}, {"minLength", T_STR}, {"maxLength", T_STR}, {"pattern", T_STR},
        {"format", T_STR}, {"minimum", T_INT}, {"maximum", T_INT}};
    for (size_t i = 0; i < sizeof infer / sizeof infer[0]; i++)
        if (json_object_get(node, infer[i].k)) bits |= infer[i].b;
    return bits ? bits : T_ALL;
}

/* A rule for one schema node; its name into name. */
static bool gen(sc *s, const json_t *node, const char *path, char name[NAME_LEN]) {
    if (s->st) return false;
    if (json_is_true(node)) return strcpy(name, "jvalue"), true;
    if (json_is_false(node)) return serr(s, SLM_ERR_UNSUPPORTED, "schema 'false' at %s allows nothing", path[0] ? path : "/");
    if (!json_is_object(node)) return serr(s, SLM_ERR_CORRUPT, "schema at %s is not an object or boolean", path[0] ? path : "/");
    if (++s->depth > SLM_GRAMMAR_MAX_DEPTH) return serr(s, SLM_ERR_LIMIT, "schemas nested deeper than %d", SLM_GRAMMAR_MAX_DEPTH);
    bool ok = check_keywords(s, node, path);
    if (ok && json_object_get(node, "$ref")) {
        ok = gen_ref(s, node, path, name);
        s->depth--;
        return ok;
    }
    slm_gbuf body = {0};
    const int types = ok ? node_types(s, node, path) : 0;
    ok = ok && !s->st;
    if (ok && ((types & T_NUM) && !(types & T_INT)) && (json_object_get(node, "minimum") || json_object_get(node, "maximum")))
        ok = serr(s, SLM_ERR_UNSUPPORTED, "unsupported JSON Schema keyword 'minimum'/'maximum' on a non-integer at %s", path);
    if (!ok) {
    } else if (json_object_get(node, "anyOf")) {
        ok = gen_anyof(s, node, path, "anyOf", &body);
    } else if (json_object_get(node, "oneOf")) {
        ok = gen_anyof(s, node, path, "oneOf", &body);
    } else if (json_object_get(node, "enum") || json_object_get(node, "const")) {
        ok = only_with(s, node, path, json_object_get(node, "enum") ? "enum" : "const", "type") &&
             gen_enum(s, node, path, &body, types);
    } else {
        const char *sep = "";
        slm_gbuf_puts(&body, "( ");
        if (ok && (types & T_OBJ)) slm_gbuf_puts(&body, sep), ok = gen_object(s, node, path, &body), sep = " | ";
        if (ok && (types & T_ARR)) slm_gbuf_puts(&body, sep), ok = gen_array(s, node, path, &body), sep = " | ";
        if (ok && (types & T_STR)) slm_gbuf_puts(&body, sep), ok = gen_string(s, node, path, &body), sep = " | ";
        if (ok && (types & T_NUM) && !(types & T_INT)) slm_gbuf_printf(&body, "%sjnumber", sep), sep = " | ";
        if (ok && (types & T_NUM) && (types & T_INT) && !json_object_get(node, "minimum") && !json_object_get(node, "maximum"))
            slm_gbuf_printf(&body, "%sjnumber", sep), sep = " | ";
        else if (ok && (types & T_INT)) slm_gbuf_puts(&body, sep), ok = int_range(s, &body, node, path), sep = " | ";
        if (ok && (types & T_BOOL)) slm_gbuf_printf(&body, "%sjbool", sep), sep = " | ";
        if (ok && (types & T_NULL)) slm_gbuf_printf(&body, "%sjnull", sep), sep = " | ";
        slm_gbuf_puts(&body, " )");
    }
    if (ok) {
        new_name(s, name);
        slm_gbuf_printf(&s->rules, "%s ::= ", name);
        slm_gbuf_puts(&s->rules, body.p ? body.p : "\"\"");
        slm_gbuf_puts(&s->rules, "\n");
        if (body.failed) ok = serr(s, SLM_ERR_NOMEM, "schema grammar");
    }
    slm_free(body.p);
    s->depth--;
    return ok;
}

/* ---- entry points ------------------------------------------------------------------------------ */

slm_status slm_grammar_from_json_schema(const char *json, size_t len, slm_grammar **out, char *err) {
    *out = NULL;
    if (!json && len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL schema");
    if (len > SLM_GRAMMAR_MAX_SOURCE) return slm_errf(err, SLM_ERR_LIMIT, "schema of %zu bytes exceeds %u", len, SLM_GRAMMAR_MAX_SOURCE);
    json_error_t je;
    sc s = {.err = err};
    s.doc = json_loadb(json ? json : "", len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!s.doc) return slm_errf(err, SLM_ERR_CORRUPT, "schema JSON at line %d:%d: %s", je.line, je.column, je.text);
    char root[NAME_LEN];
    slm_gbuf_puts(&s.rules, prelude);
    bool ok = gen(&s, s.doc, "", root);
    if (ok) slm_gbuf_printf(&s.rules, "root ::= %s\n", root);
    if (ok && s.rules.failed) ok = serr(&s, SLM_ERR_LIMIT, "generated grammar too large");
    slm_status st = ok ? slm_grammar_parse_gbnf(s.rules.p, s.rules.n, out, err) : s.st;
    for (size_t i = 0; i < s.n_refs; i++) slm_free(s.refs[i].ptr);
    slm_free(s.refs);
    slm_free(s.rules.p);
    json_decref(s.doc);
    return st;
}

slm_status slm_grammar_json_object(slm_grammar **out, char *err) {
    static const char schema[] = "{\"type\":\"object\"}";
    return slm_grammar_from_json_schema(schema, sizeof schema - 1, out, err);
}
