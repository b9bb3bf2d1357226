/*
 * policy/policy.c: declarative input/output rules: parse and validate the policy JSON, then
 * check a text against the rules of one direction and combine what fired into one verdict.
 *
 * Data flow: slm_policy_parse (jansson) -> rules per direction -> slm_policy_check: UTF-8
 * check, PII detection once (when a "pii" rule exists), each rule's condition, the strictest
 * action wins (block > redact > allow), redaction of the types the redact rules name.
 * Invariants: every rule has a name, exactly one condition and a valid action; phrases are
 *  stored folded (ASCII lower case, whitespace runs as one space) and matched on the folded
 *  text; schemas are checked for known keywords at load time.
 * Thread-safety: a slm_policy is immutable after parsing; check allocates per call.
 * Non-goals: regular-expression deny rules (phrases are literal so that a policy cannot
 *  cause catastrophic backtracking), the whole of JSON Schema.
 */
#include "slmesh/policy.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

/* ---- rules ---------------------------------------------------------------------------- */

typedef enum { COND_PII, COND_MAX_CHARS, COND_MAX_BYTES, COND_DENY, COND_JSON, COND_SCHEMA, COND_LABELS } cond_kind;

static const char *const cond_keys[] = {
    [COND_PII] = "pii",           [COND_MAX_CHARS] = "max_chars", [COND_MAX_BYTES] = "max_bytes",
    [COND_DENY] = "deny",         [COND_JSON] = "json",           [COND_SCHEMA] = "schema",
    [COND_LABELS] = "labels",
};
#define NCONDS (sizeof cond_keys / sizeof cond_keys[0])

typedef struct {
    char name[SLM_POLICY_NAME_LEN];
    char reason[SLM_POLICY_REASON_LEN];  /* "" = a generated reason */
    cond_kind kind;
    slm_policy_action action;
    uint32_t types;        /* COND_PII: types that fire the rule */
    float min_score;       /* COND_PII: extra score floor over the guard's thresholds */
    size_t limit;          /* COND_MAX_*: largest allowed length */
    char **items;          /* COND_DENY: folded phrases; COND_LABELS: labels (owned) */
    size_t nitems;
    char *field;           /* COND_LABELS: JSON member holding the label, or NULL (owned) */
    json_t *schema;        /* COND_SCHEMA: the schema (owned reference) */
} rule;

struct slm_policy {
    rule *rules[2];        /* owned arrays per direction */
    size_t n[2];
    slm_redact_op op;      /* operator for redact rules */
    bool op_given;         /* "operator" was set (else pseudo with a vault, replace without) */
    unsigned mask_keep;    /* for op == mask */
};

static void rule_free(rule *r) {
    for (size_t i = 0; i < r->nitems; i++) slm_free(r->items[i]);
    slm_free(r->items);
    slm_free(r->field);
    json_decref(r->schema);
}

void slm_policy_destroy(slm_policy *p) {
    if (!p) return;
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < p->n[d]; i++) rule_free(&p->rules[d][i]);
        slm_free(p->rules[d]);
    }
    slm_free(p);
}

const char *slm_policy_action_name(slm_policy_action a) {
    return a == SLM_POLICY_BLOCK ? "block" : a == SLM_POLICY_REDACT ? "redact" : "allow";
}

size_t slm_policy_rule_count(const slm_policy *p, slm_policy_dir dir) { return p->n[dir & 1]; }

uint32_t slm_policy_pii_types(const slm_policy *p, slm_policy_dir dir) {
    uint32_t t = 0;
    for (size_t i = 0; i < p->n[dir & 1]; i++)
        if (p->rules[dir & 1][i].kind == COND_PII) t |= p->rules[dir & 1][i].types;
    return t;
}

/* ---- folding ---------------------------------------------------------------------------- */

/* Fold s[0..n) into o (n + 1 bytes): ASCII lower case, every whitespace run one space,
 * no leading or trailing space. Returns the folded length. */
static size_t fold(const char *s, size_t n, char *o) {
    size_t k = 0;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || (c >= '\t' && c <= '\r')) {
            space = k > 0;
            continue;
        }
        if (space) o[k++] = ' ';
        space = false;
        o[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    o[k] = '\0';
    return k;
}

/* ---- schema --------------------------------------------------------------------------------- */

static const char *const schema_types[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

/* Check that a schema uses only the supported keywords with values of the right kind. */
static bool schema_ok(const json_t *s, int depth, char *why, size_t cap) {
    if (depth > SLM_POLICY_MAX_DEPTH) return snprintf(why, cap, "schema nested deeper than %d", SLM_POLICY_MAX_DEPTH), false;
    if (!json_is_object(s)) return snprintf(why, cap, "a schema must be an object"), false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        bool ok;
        if (!strcmp(key, "type")) {
            ok = false;
            for (size_t i = 0; i < sizeof schema_types / sizeof schema_types[0]; i++)
                ok |= json_is_string(v) && !strcmp(json_string_value(v), schema_types[i]);
        } else if (!strcmp(key, "properties")) {
            ok = json_is_object(v);
            const char *pk;
            json_t *pv;
            if (ok) json_object_foreach(v, pk, pv) if (!schema_ok(pv, depth + 1, why, cap)) return false;
        } else if (!strcmp(key, "items")) {
            if (!schema_ok(v, depth + 1, why, cap)) return false;
            ok = true;
        } else if (!strcmp(key, "required")) {
            ok = json_is_array(v);
            for (size_t i = 0; ok && i < json_array_size(v); i++) ok = json_is_string(json_array_get(v, i));
        } else if (!strcmp(key, "enum")) {
            ok = json_is_array(v) && json_array_size(v) > 0;
        } else if (!strcmp(key, "additionalProperties")) {
            ok = json_is_boolean(v);
        } else if (!strcmp(key, "minLength") || !strcmp(key, "maxLength") || !strcmp(key, "minItems") ||
                   !strcmp(key, "maxItems")) {
            ok = json_is_integer(v) && json_integer_value(v) >= 0;
        } else if (!strcmp(key, "minimum") || !strcmp(key, "maximum")) {
            ok = json_is_number(v);
        } else if (!strcmp(key, "description") || !strcmp(key, "title") || !strcmp(key, "$schema")) {
            ok = true;
        } else {
            return snprintf(why, cap, "unsupported schema keyword \"%.40s\"", key), false;
        }
        if (!ok) return snprintf(why, cap, "bad value for schema keyword \"%.40s\"", key), false;
    }
    return true;
}

static bool type_matches(const char *type, const json_t *v) {
    if (!strcmp(type, "object")) return json_is_object(v);
    if (!strcmp(type, "array")) return json_is_array(v);
    if (!strcmp(type, "string")) return json_is_string(v);
    if (!strcmp(type, "integer")) return json_is_integer(v);
    if (!strcmp(type, "number")) return json_is_number(v);
    if (!strcmp(type, "boolean")) return json_is_boolean(v);
    return json_is_null(v);
}

/* Number of code points of a JSON string. */
static size_t str_chars(const json_t *v) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Does value v satisfy schema s? On failure why holds "$.path: what". */
static bool validate(const json_t *s, const json_t *v, char *path, size_t plen, int depth, char *why, size_t cap) {
    if (depth > SLM_POLICY_MAX_DEPTH) return snprintf(why, cap, "%s: nested deeper than %d", path, SLM_POLICY_MAX_DEPTH), false;
    json_t *t = json_object_get(s, "type");
    if (t && !type_matches(json_string_value(t), v))
        return snprintf(why, cap, "%s: expected %s", path, json_string_value(t)), false;
    json_t *e = json_object_get(s, "enum");
    if (e) {
        bool any = false;
        for (size_t i = 0; !any && i < json_array_size(e); i++) any = json_equal(json_array_get(e, i), (json_t *)v);
        if (!any) return snprintf(why, cap, "%s: not one of the allowed values", path), false;
    }
    json_t *k;
    if (json_is_string(v)) {
        if ((k = json_object_get(s, "minLength")) && str_chars(v) < (size_t)json_integer_value(k))
            return snprintf(why, cap, "%s: shorter than %lld", path, (long long)json_integer_value(k)), false;
        if ((k = json_object_get(s, "maxLength")) && str_chars(v) > (size_t)json_integer_value(k))
            return snprintf(why, cap, "%s: longer than %lld", path, (long long)json_integer_value(k)), false;
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if ((k = json_object_get(s, "minimum")) && x < json_number_value(k))
            return snprintf(why, cap, "%s: below %g", path, json_number_value(k)), false;
        if ((k = json_object_get(s, "maximum")) && x > json_number_value(k))
            return snprintf(why, cap, "%s: above %g", path, json_number_value(k)), false;
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if ((k = json_object_get(s, "minItems")) && n < (size_t)json_integer_value(k))
            return snprintf(why, cap, "%s: fewer than %lld items", path, (long long)json_integer_value(k)), false;
        if ((k = json_object_get(s, "maxItems")) && n > (size_t)json_integer_value(k))
            return snprintf(why, cap, "%s: more than %lld items", path, (long long)json_integer_value(k)), false;
        json_t *items = json_object_get(s, "items");
        for (size_t i = 0; items && i < n; i++) {
            size_t used = strlen(path);
            snprintf(path + used, plen - used, "[%zu]", i);
            bool ok = validate(items, json_array_get(v, i), path, plen, depth + 1, why, cap);
            path[used] = '\0';
            if (!ok) return false;
        }
    }
    if (json_is_object(v)) {
        json_t *req = json_object_get(s, "required"), *props = json_object_get(s, "properties");
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *name = json_string_value(json_array_get(req, i));
            if (!json_object_get(v, name)) return snprintf(why, cap, "%s: missing \"%.40s\"", path, name), false;
        }
        json_t *extra = json_object_get(s, "additionalProperties");
        const char *key;
        json_t *mv;
        json_object_foreach((json_t *)v, key, mv) {
            json_t *ps = props ? json_object_get(props, key) : NULL;
            if (!ps) {
                if (json_is_false(extra)) return snprintf(why, cap, "%s: unexpected \"%.40s\"", path, key), false;
                continue;
            }
            size_t used = strlen(path);
            snprintf(path + used, plen - used, ".%.40s", key);
            bool ok = validate(ps, mv, path, plen, depth + 1, why, cap);
            path[used] = '\0';
            if (!ok) return false;
        }
    }
    return true;
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static slm_status bad(char *err, const char *dir, size_t i, const char *what) {
    return slm_errf(err, SLM_ERR_INVALID_ARG, "%s rule %zu: %s", dir, i, what);
}

/* Copy a JSON list of strings into r->items (folded for deny rules). */
static slm_status parse_strings(rule *r, const json_t *list, bool folded, const char *dir, size_t i, char *err) {
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0) return bad(err, dir, i, "needs a non-empty list of strings");
    if (n > SLM_POLICY_MAX_PHRASES) return slm_errf(err, SLM_ERR_LIMIT, "%s rule %zu: more than %d entries", dir, i, SLM_POLICY_MAX_PHRASES);
    if (!(r->items = slm_calloc(n, sizeof *r->items))) return slm_errf(err, SLM_ERR_NOMEM, "policy strings");
    for (size_t k = 0; k < n; k++) {
        const json_t *s = json_array_get(list, k);
        size_t len = json_string_length(s);
        if (!json_is_string(s) || len == 0) return bad(err, dir, i, "entries must be non-empty strings");
        if (len > SLM_POLICY_MAX_PHRASE)
            return slm_errf(err, SLM_ERR_LIMIT, "%s rule %zu: entry longer than %d bytes", dir, i, SLM_POLICY_MAX_PHRASE);
        if (!(r->items[k] = slm_malloc(len + 1))) return slm_errf(err, SLM_ERR_NOMEM, "policy strings");
        r->nitems = k + 1;
        if (folded) {
            if (fold(json_string_value(s), len, r->items[k]) == 0) return bad(err, dir, i, "a phrase is only spaces");
        } else {
            memcpy(r->items[k], json_string_value(s), len + 1);
        }
    }
    return SLM_OK;
}

static slm_status parse_rule(rule *r, json_t *o, const char *dir, size_t i, char *err) {
    slm_status st;
    int cond = -1;
    if (!json_is_object(o)) return bad(err, dir, i, "must be an object");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool known = !strcmp(key, "name") || !strcmp(key, "action") || !strcmp(key, "reason") ||
                     !strcmp(key, "min_score") || !strcmp(key, "field");
        for (size_t c = 0; c < NCONDS; c++) {
            if (strcmp(key, cond_keys[c])) continue;
            if (cond >= 0) return bad(err, dir, i, "has more than one condition");
            cond = (int)c;
            known = true;
        }
        if (!known) {
            char what[96];
            snprintf(what, sizeof what, "unknown key \"%.40s\"", key);
            return bad(err, dir, i, what);
        }
    }
    if (cond < 0) return bad(err, dir, i, "needs one of pii, max_chars, max_bytes, deny, json, schema, labels");
    r->kind = (cond_kind)cond;
    json_t *name = json_object_get(o, "name"), *action = json_object_get(o, "action"), *reason = json_object_get(o, "reason");
    if (name && (!json_is_string(name) || json_string_length(name) >= SLM_POLICY_NAME_LEN))
        return bad(err, dir, i, "name must be a string shorter than 64 bytes");
    if (name) snprintf(r->name, sizeof r->name, "%s", json_string_value(name));
    else snprintf(r->name, sizeof r->name, "%s-%zu", cond_keys[cond], i);
    if (reason && (!json_is_string(reason) || json_string_length(reason) >= SLM_POLICY_REASON_LEN))
        return bad(err, dir, i, "reason must be a string shorter than 256 bytes");
    if (reason) snprintf(r->reason, sizeof r->reason, "%s", json_string_value(reason));
    r->action = SLM_POLICY_BLOCK;
    if (action) {
        const char *a = json_string_value(action);
        if (!a || (strcmp(a, "block") && strcmp(a, "redact"))) return bad(err, dir, i, "action must be \"block\" or \"redact\"");
        if (!strcmp(a, "redact")) {
            if (r->kind != COND_PII) return bad(err, dir, i, "only pii rules can redact");
            r->action = SLM_POLICY_REDACT;
        }
    }
    if (json_object_get(o, "min_score") && r->kind != COND_PII) return bad(err, dir, i, "min_score belongs to pii rules");
    if (json_object_get(o, "field") && r->kind != COND_LABELS) return bad(err, dir, i, "field belongs to labels rules");
    v = json_object_get(o, cond_keys[cond]);
    switch (r->kind) {
    case COND_PII: {
        if (!json_is_array(v) || json_array_size(v) == 0) return bad(err, dir, i, "pii needs a list of type names");
        for (size_t k = 0; k < json_array_size(v); k++) {
            const json_t *t = json_array_get(v, k);
            slm_pii_type ty;
            if (!json_is_string(t) || !slm_pii_type_parse(json_string_value(t), json_string_length(t), &ty))
                return bad(err, dir, i, "pii lists an unknown type");
            r->types |= 1u << ty;
        }
        json_t *ms = json_object_get(o, "min_score");
        if (ms && (!json_is_number(ms) || json_number_value(ms) < 0 || json_number_value(ms) > 1))
            return bad(err, dir, i, "min_score must be a number in [0, 1]");
        r->min_score = ms ? (float)json_number_value(ms) : 0.0f;
        return SLM_OK;
    }
    case COND_MAX_CHARS:
    case COND_MAX_BYTES:
        if (!json_is_integer(v) || json_integer_value(v) < 0) return bad(err, dir, i, "limit must be a non-negative integer");
        r->limit = (size_t)json_integer_value(v);
        return SLM_OK;
    case COND_DENY: return parse_strings(r, v, true, dir, i, err);
    case COND_JSON:
        if (!json_is_true(v)) return bad(err, dir, i, "json must be true");
        return SLM_OK;
    case COND_SCHEMA: {
        char why[160];
        if (!schema_ok(v, 0, why, sizeof why)) return bad(err, dir, i, why);
        r->schema = json_incref(v);
        return SLM_OK;
    }
    case COND_LABELS: {
        if ((st = parse_strings(r, v, false, dir, i, err))) return st;
        json_t *f = json_object_get(o, "field");
        if (f && !json_is_string(f)) return bad(err, dir, i, "field must be a string");
        if (f && !(r->field = slm_strdup(json_string_value(f)))) return slm_errf(err, SLM_ERR_NOMEM, "field");
        return SLM_OK;
    }
    }
    return bad(err, dir, i, "internal: unhandled condition");
}

slm_status slm_policy_parse(const char *text, size_t len, slm_policy **out, char *err) {
    slm_status st = SLM_OK;
    json_error_t jerr;
    if (!text || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL argument");
    if (len > SLM_POLICY_MAX_FILE) return slm_errf(err, SLM_ERR_LIMIT, "policy of %zu bytes exceeds %u", len, SLM_POLICY_MAX_FILE);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return slm_errf(err, SLM_ERR_CORRUPT, "policy line %d: %s", jerr.line, jerr.text);
    slm_policy *p = slm_calloc(1, sizeof *p);
    if (!p) {
        json_decref(root);
        return slm_errf(err, SLM_ERR_NOMEM, "policy");
    }
    json_t *top = json_object_get(root, "policy") ? json_object_get(root, "policy") : root;
    if (!json_is_object(top)) {
        st = slm_errf(err, SLM_ERR_INVALID_ARG, "a policy is an object with \"input\" and/or \"output\"");
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(top, key, v) {
        if (!strcmp(key, "input") || !strcmp(key, "output")) continue;
        if (!strcmp(key, "operator")) {
            if (!json_is_string(v) || !slm_redact_op_parse(json_string_value(v), &p->op)) {
                st = slm_errf(err, SLM_ERR_INVALID_ARG, "operator must be replace, numbered, mask, hash or pseudo");
                goto done;
            }
            p->op_given = true;
        } else if (!strcmp(key, "mask_keep")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 64) {
                st = slm_errf(err, SLM_ERR_INVALID_ARG, "mask_keep must be an integer in [0, 64]");
                goto done;
            }
            p->mask_keep = (unsigned)json_integer_value(v);
        } else {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "unknown policy key \"%.40s\"", key);
            goto done;
        }
    }
    static const char *const dirs[2] = {"input", "output"};
    for (int d = 0; d < 2; d++) {
        json_t *list = json_object_get(top, dirs[d]);
        if (!list) continue;
        if (!json_is_array(list)) {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "\"%s\" must be a list of rules", dirs[d]);
            goto done;
        }
        size_t n = json_array_size(list);
        if (n > SLM_POLICY_MAX_RULES) {
            st = slm_errf(err, SLM_ERR_LIMIT, "%zu %s rules exceed %d", n, dirs[d], SLM_POLICY_MAX_RULES);
            goto done;
        }
        if (n && !(p->rules[d] = slm_calloc(n, sizeof *p->rules[d]))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "rules");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            p->n[d] = i + 1;
            if ((st = parse_rule(&p->rules[d][i], json_array_get(list, i), dirs[d], i, err))) goto done;
        }
    }
done:
    json_decref(root);
    if (st) {
        slm_policy_destroy(p);
        return st;
    }
    *out = p;
    return SLM_OK;
}

slm_status slm_policy_load(const char *path, slm_policy **out, char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return slm_errf(err, SLM_ERR_IO, "%s: cannot open", path);
    char *buf = slm_malloc(SLM_POLICY_MAX_FILE + 1);
    slm_status st;
    if (!buf) {
        fclose(f);
        return slm_errf(err, SLM_ERR_NOMEM, "policy buffer");
    }
    size_t n = fread(buf, 1, SLM_POLICY_MAX_FILE + 1, f);
    if (ferror(f)) st = slm_errf(err, SLM_ERR_IO, "%s: read failed", path);
    else st = slm_policy_parse(buf, n, out, err);
    fclose(f);
    slm_free(buf);
    return st;
}

/* ---- checking ---------------------------------------------------------------------------------- */

void slm_policy_verdict_clear(slm_policy_verdict *v) {
    if (!v) return;
    slm_free(v->redacted);
    memset(v, 0, sizeof *v);
}

/* Does hay[0..n) contain needle[0..m)? (memmem is not POSIX.) */
static bool contains(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0) return true;
    for (const char *p = hay; (size_t)(p - hay) + m <= n; p++) {
        p = memchr(p, needle[0], n - (size_t)(p - hay) - m + 1);
        if (!p) return false;
        if (!memcmp(p, needle, m)) return true;
    }
    return false;
}

/* Does the rule fire? why receives the generated reason. */
static bool rule_fires(const rule *r, const char *text, size_t len, const char *folded, size_t flen,
                       const slm_pii_finding *f, size_t nf, char *why, size_t cap) {
    switch (r->kind) {
    case COND_PII:
        for (size_t k = 0; k < nf; k++) {
            if ((r->types & (1u << f[k].type)) && f[k].score >= r->min_score) {
                snprintf(why, cap, "contains %s", slm_pii_type_name(f[k].type));
                return true;
            }
        }
        return false;
    case COND_MAX_BYTES:
        if (len <= r->limit) return false;
        snprintf(why, cap, "%zu bytes exceed the limit of %zu", len, r->limit);
        return true;
    case COND_MAX_CHARS: {
        size_t chars = 0;
        for (size_t i = 0; i < len; i++) chars += ((unsigned char)text[i] & 0xC0) != 0x80;
        if (chars <= r->limit) return false;
        snprintf(why, cap, "%zu characters exceed the limit of %zu", chars, r->limit);
        return true;
    }
    case COND_DENY:
        for (size_t k = 0; k < r->nitems; k++) {
            if (contains(folded, flen, r->items[k], strlen(r->items[k]))) {
                snprintf(why, cap, "contains the denied phrase \"%.80s\"", r->items[k]);
                return true;
            }
        }
        return false;
    case COND_JSON:
    case COND_SCHEMA: {
        json_error_t jerr;
        json_t *doc = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
        if (!doc) {
            snprintf(why, cap, "not valid JSON: %s", jerr.text);
            return true;
        }
        bool fires = false;
        if (r->kind == COND_SCHEMA) {
            char path[256] = "$", what[SLM_POLICY_REASON_LEN];
            if (!validate(r->schema, doc, path, sizeof path, 0, what, sizeof what)) {
                snprintf(why, cap, "does not match the schema: %.200s", what);
                fires = true;
            }
        }
        json_decref(doc);
        return fires;
    }
    case COND_LABELS: {
        const char *label = text;
        size_t llen = len;
        json_t *doc = NULL;
        if (r->field) {
            json_error_t jerr;
            doc = json_loadb(text, len, 0, &jerr);
            json_t *fv = doc ? json_object_get(doc, r->field) : NULL;
            if (!json_is_string(fv)) {
                json_decref(doc);
                snprintf(why, cap, "no string \"%.40s\" field with a label", r->field);
                return true;
            }
            label = json_string_value(fv);
            llen = json_string_length(fv);
        }
        while (llen && (*label == ' ' || (*label >= '\t' && *label <= '\r'))) label++, llen--;
        while (llen && (label[llen - 1] == ' ' || (label[llen - 1] >= '\t' && label[llen - 1] <= '\r'))) llen--;
        bool ok = false;
        for (size_t k = 0; !ok && k < r->nitems; k++) ok = strlen(r->items[k]) == llen && !memcmp(r->items[k], label, llen);
        if (!ok) snprintf(why, cap, "label \"%.*s\" is not an allowed label", (int)(llen > 60 ? 60 : llen), label);
        json_decref(doc);
        return !ok;
    }
    }
    return false;
}

slm_status slm_policy_check(const slm_policy *p, slm_policy_dir dir, const slm_guard *guard, const char *text,
                            size_t len, slm_vault *vault, slm_policy_verdict *out, char *err) {
    slm_status st = SLM_OK;
    slm_pii_finding *f = NULL, *sel = NULL;
    size_t nf = 0;
    char *folded = NULL;
    if (!p || !out || (!text && len)) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL argument");
    memset(out, 0, sizeof *out);
    int d = dir == SLM_POLICY_OUTPUT;
    if (!text) text = "";
    size_t bad_at = slm_guard_utf8_check(text, len);
    if (bad_at != len) return slm_errf(err, SLM_ERR_UTF8, "invalid UTF-8 at byte %zu", bad_at);
    bool need_pii = false, need_fold = false;
    for (size_t i = 0; i < p->n[d]; i++) {
        need_pii |= p->rules[d][i].kind == COND_PII;
        need_fold |= p->rules[d][i].kind == COND_DENY;
    }
    if (need_pii) {
        if (!guard) return slm_errf(err, SLM_ERR_INVALID_ARG, "the policy has pii rules but no guard was given");
        /* a rule on a type the guard cannot see would silently allow it */
        uint32_t missing = slm_policy_pii_types(p, dir) & ~slm_guard_types(guard);
        for (int t = 0; missing && t < SLM_PII_COUNT; t++)
            if (missing & (1u << t))
                return slm_errf(err, SLM_ERR_INVALID_ARG, "the guard does not detect %s (a pii rule needs it%s)",
                                slm_pii_type_name((slm_pii_type)t), t <= SLM_PII_NRP ? "; load the tagger" : "");
        if ((st = slm_guard_detect(guard, text, len, &f, &nf, err))) return st;
    }
    size_t flen = 0;
    if (need_fold) {
        if (!(folded = slm_malloc(len + 1))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "folded text");
            goto done;
        }
        flen = fold(text, len, folded);
    }
    for (size_t i = 0; i < p->n[d]; i++) {
        const rule *r = &p->rules[d][i];
        char why[SLM_POLICY_REASON_LEN];
        if (!rule_fires(r, text, len, folded, flen, f, nf, why, sizeof why)) continue;
        out->fired++;
        if (r->action == SLM_POLICY_REDACT) out->redact_types |= r->types;
        if (r->action > out->action) {
            out->action = r->action;
            snprintf(out->rule, sizeof out->rule, "%s", r->name);
            snprintf(out->reason, sizeof out->reason, "%s", r->reason[0] ? r->reason : why);
        }
    }
    if (out->action == SLM_POLICY_REDACT) {
        size_t ns = 0;
        if (!(sel = slm_malloc((nf ? nf : 1) * sizeof *sel))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "findings");
            goto done;
        }
        for (size_t k = 0; k < nf; k++)
            if (out->redact_types & (1u << f[k].type)) sel[ns++] = f[k];
        slm_redact_opts ro;
        slm_redact_opts_default(&ro);
        slm_redact_opts_all(&ro, p->op_given ? p->op : vault ? SLM_REDACT_PSEUDO : SLM_REDACT_REPLACE);
        if (p->op_given && p->op == SLM_REDACT_MASK) ro.mask_keep = p->mask_keep;
        st = slm_guard_redact(text, len, sel, ns, &ro, vault, &out->redacted, &out->redacted_len, err);
    }
done:
    if (st) slm_policy_verdict_clear(out);
    slm_free(sel);
    slm_free(folded);
    slm_free(f);
    return st;
}
