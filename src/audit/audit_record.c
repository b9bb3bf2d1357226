/*
 * audit/audit_record.c: the audit record model: field table, validation, defaults, the
 * canonical byte form and its SHA-256.
 *
 * Invariants:
 *  - One table (record_fields) is the whole schema; input validation (with defaults) and
 *    stored-body checking (strict) both walk it, so they cannot disagree.
 *  - Canonical bytes = jansson's dump with JSON_COMPACT | JSON_SORT_KEYS |
 *    JSON_REAL_PRECISION(17) of the record object, which includes "seq" and "prev". 17
 *    significant digits round-trip every double, so parse-then-dump of canonical bytes is
 *    the identity; slm_audit_record_check relies on that to reject non-canonical bodies.
 *  - Unknown fields are rejected: a record's meaning is exactly the table's fields, and the
 *    canonical form stays well-defined across versions.
 * Thread-safety: pure functions; safe from any thread.
 * Non-goals: checking that text was redacted (guard's job; we only store what we get).
 */
#include "audit/audit_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "core/core.h"

/* ---- field table ------------------------------------------------------------------------- */

typedef enum {
    FK_NAME,   /* string, 1..SLM_AUDIT_MAX_NAME bytes */
    FK_REASON, /* string, 0..SLM_AUDIT_MAX_REASON bytes */
    FK_TEXT,   /* string, 0..SLM_AUDIT_MAX_TEXT bytes (default "") */
    FK_TIME,   /* RFC 3339 UTC string (default: now) */
    FK_COUNT,  /* integer 0..SLM_AUDIT_MAX_TOKENS */
    FK_AMOUNT, /* finite number >= 0 */
    FK_CONF,   /* null or number in [0, 1] (default null) */
    FK_POLICY, /* object rule -> outcome, both FK_NAME strings (default {}) */
    FK_SEQ,    /* stored only: integer >= 1 */
    FK_HASH,   /* stored only: 64 lowercase hex digits */
} field_kind;

typedef struct {
    const char *name; /* JSON key */
    field_kind kind;  /* type and limit */
    bool required;    /* must be present in input (stored bodies need every field) */
    bool sealed;      /* set by sealing, never accepted from input */
} record_field;

static const record_field record_fields[] = {
    {"request_id", FK_NAME, true, false},
    {"time", FK_TIME, false, false},
    {"task", FK_NAME, true, false},
    {"model", FK_NAME, true, false},
    {"tier", FK_NAME, true, false},
    {"route", FK_NAME, true, false},
    {"reason", FK_REASON, true, false},
    {"confidence", FK_CONF, false, false},
    {"tokens_in", FK_COUNT, true, false},
    {"tokens_out", FK_COUNT, true, false},
    {"latency_ms", FK_AMOUNT, true, false},
    {"cost", FK_AMOUNT, true, false},
    {"policy", FK_POLICY, false, false},
    {"prompt", FK_TEXT, false, false},
    {"answer", FK_TEXT, false, false},
    {"seq", FK_SEQ, true, true},
    {"prev", FK_HASH, true, true},
};
#define N_FIELDS (sizeof record_fields / sizeof record_fields[0])

static const record_field *field_find(const char *name) {
    for (size_t i = 0; i < N_FIELDS; i++)
        if (!strcmp(record_fields[i].name, name)) return &record_fields[i];
    return NULL;
}

/* ---- value checks --------------------------------------------------------------------------- */

static bool digits(const char *s, int n) {
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

/* "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" with plausible ranges. */
static bool time_valid(const char *s, size_t len) {
    if (len < 20 || len > SLM_AUDIT_MAX_TIME) return false;
    if (!digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
        s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' ||
        !digits(s + 17, 2))
        return false;
    if (num2(s + 5) < 1 || num2(s + 5) > 12 || num2(s + 8) < 1 || num2(s + 8) > 31 ||
        num2(s + 11) > 23 || num2(s + 14) > 59 || num2(s + 17) > 60)
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start || i - start > 9) return false;
    }
    return i + 1 == len && s[i] == 'Z';
}

static bool hex64_valid(const char *s, size_t len) {
    if (len != SLM_AUDIT_HASH_HEX - 1) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static slm_status string_check(const char *name, const json_t *v, size_t min, size_t max,
                               char *err) {
    if (!json_is_string(v)) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: not a string", name);
    size_t n = json_string_length(v);
    if (n < min) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: empty", name);
    if (n > max)
        return slm_errf(err, SLM_ERR_LIMIT, "%s: %zu bytes, limit %zu", name, n, max);
    return SLM_OK;
}

static slm_status policy_check(const json_t *v, char *err) {
    const char *rule;
    json_t *outcome;
    if (!json_is_object(v)) return slm_errf(err, SLM_ERR_INVALID_ARG, "policy: not an object");
    if (json_object_size(v) > SLM_AUDIT_MAX_POLICY)
        return slm_errf(err, SLM_ERR_LIMIT, "policy: %zu outcomes, limit %d", json_object_size(v),
                        SLM_AUDIT_MAX_POLICY);
    json_object_foreach((json_t *)v, rule, outcome) {
        size_t n = strlen(rule);
        if (n == 0 || n > SLM_AUDIT_MAX_NAME)
            return slm_errf(err, SLM_ERR_LIMIT, "policy: rule name of %zu bytes (1..%d)", n,
                            SLM_AUDIT_MAX_NAME);
        slm_status st = string_check("policy outcome", outcome, 1, SLM_AUDIT_MAX_NAME, err);
        if (st != SLM_OK) return st;
    }
    return SLM_OK;
}

static slm_status amount_check(const char *name, const json_t *v, bool allow_null, double hi,
                               char *err) {
    if (allow_null && json_is_null(v)) return SLM_OK;
    if (!json_is_number(v)) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: not a number", name);
    double x = json_number_value(v);
    if (!isfinite(x) || x < 0 || x > hi)
        return slm_errf(err, SLM_ERR_RANGE, "%s: %g out of range [0, %g]", name, x, hi);
    return SLM_OK;
}

static slm_status field_check(const record_field *f, const json_t *v, char *err) {
    switch (f->kind) {
    case FK_NAME: return string_check(f->name, v, 1, SLM_AUDIT_MAX_NAME, err);
    case FK_REASON: return string_check(f->name, v, 0, SLM_AUDIT_MAX_REASON, err);
    case FK_TEXT: return string_check(f->name, v, 0, SLM_AUDIT_MAX_TEXT, err);
    case FK_TIME:
        if (!json_is_string(v) || !time_valid(json_string_value(v), json_string_length(v)))
            return slm_errf(err, SLM_ERR_INVALID_ARG,
                            "time: not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)");
        return SLM_OK;
    case FK_COUNT:
    case FK_SEQ: {
        json_int_t lo = f->kind == FK_SEQ ? 1 : 0;
        json_int_t hi = f->kind == FK_SEQ ? SLM_AUDIT_MAX_SEQ : SLM_AUDIT_MAX_TOKENS;
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
            return slm_errf(err, SLM_ERR_RANGE, "%s: not an integer in [%lld, %lld]", f->name,
                            (long long)lo, (long long)hi);
        return SLM_OK;
    }
    case FK_AMOUNT: return amount_check(f->name, v, false, HUGE_VAL, err);
    case FK_CONF: return amount_check(f->name, v, true, 1.0, err);
    case FK_POLICY: return policy_check(v, err);
    case FK_HASH:
        if (!json_is_string(v) || !hex64_valid(json_string_value(v), json_string_length(v)))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: not 64 lowercase hex digits", f->name);
        return SLM_OK;
    }
    return slm_errf(err, SLM_ERR_INTERNAL, "%s: unknown field kind", f->name);
}

/* The default for an optional input field, as a new reference (NULL on no memory). */
static json_t *field_default(const record_field *f) {
    char now[SLM_AUDIT_MAX_TIME + 1];
    switch (f->kind) {
    case FK_TIME: slm_audit_now(now); return json_string(now);
    case FK_CONF: return json_null();
    case FK_POLICY: return json_object();
    default: return json_string("");
    }
}

/* Check every key of obj against the table. stored: a sealed body (every field present,
 * seq/prev required); otherwise input (seq/prev rejected, optional fields defaulted). */
static slm_status record_validate(json_t *obj, bool stored, char *err) {
    const char *key;
    json_t *v;
    if (!json_is_object(obj)) return slm_errf(err, SLM_ERR_INVALID_ARG, "record: not a JSON object");
    json_object_foreach(obj, key, v) {
        const record_field *f = field_find(key);
        if (!f) return slm_errf(err, SLM_ERR_INVALID_ARG, "unknown field '%.64s'", key);
        if (f->sealed && !stored)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "field '%s' is set by the log, not the caller",
                            key);
        slm_status st = field_check(f, v, err);
        if (st != SLM_OK) return st;
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        const record_field *f = &record_fields[i];
        if (json_object_get(obj, f->name)) continue;
        if (stored || f->required) {
            if (f->sealed && !stored) continue;
            return slm_errf(err, SLM_ERR_INVALID_ARG, "missing field '%s'", f->name);
        }
        if (json_object_set_new(obj, f->name, field_default(f)) != 0)
            return slm_errf(err, SLM_ERR_NOMEM, "record: no memory for default %s", f->name);
    }
    return SLM_OK;
}

/* ---- input records ----------------------------------------------------------------------------- */

slm_status slm_audit_record_from_json(const char *json, size_t len, json_t **out, char *err) {
    json_error_t jerr;
    *out = NULL;
    if (!json) return slm_errf(err, SLM_ERR_INVALID_ARG, "record: NULL");
    if (len > SLM_AUDIT_MAX_RECORD)
        return slm_errf(err, SLM_ERR_LIMIT, "record: %zu bytes, limit %u", len, SLM_AUDIT_MAX_RECORD);
    json_t *obj = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return slm_errf(err, SLM_ERR_CORRUPT, "record: JSON: %s (column %d)", jerr.text, jerr.column);
    slm_status st = record_validate(obj, false, err);
    if (st != SLM_OK) {
        json_decref(obj);
        return st;
    }
    *out = obj;
    return SLM_OK;
}

/* obj[key] = s as a JSON string (s == NULL: dflt; dflt == NULL too: leave for validation). */
static slm_status set_string(json_t *obj, const char *key, const char *s, const char *dflt,
                             char *err) {
    if (!s) s = dflt;
    if (!s) return SLM_OK;
    json_t *v = json_string(s);
    if (!v) return slm_errf(err, SLM_ERR_UTF8, "%s: not valid UTF-8 (or no memory)", key);
    if (json_object_set_new(obj, key, v) != 0) return slm_errf(err, SLM_ERR_NOMEM, "record: no memory");
    return SLM_OK;
}

static slm_status set_new(json_t *obj, const char *key, json_t *v, char *err) {
    if (!v) return slm_errf(err, SLM_ERR_RANGE, "%s: not a finite number (or no memory)", key);
    if (json_object_set_new(obj, key, v) != 0) return slm_errf(err, SLM_ERR_NOMEM, "record: no memory");
    return SLM_OK;
}

static slm_status struct_fill(json_t *obj, const slm_audit_record *r, char *err) {
    const struct { const char *key, *val, *dflt; } strs[] = {
        {"request_id", r->request_id, NULL}, {"time", r->time, NULL},   {"task", r->task, NULL},
        {"model", r->model, NULL},           {"tier", r->tier, NULL},   {"route", r->route, NULL},
        {"reason", r->reason, NULL},         {"prompt", r->prompt, ""}, {"answer", r->answer, ""},
    };
    slm_status st = SLM_OK;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0] && st == SLM_OK; i++)
        st = set_string(obj, strs[i].key, strs[i].val, strs[i].dflt, err);
    if (st == SLM_OK && r->tokens_in > (uint64_t)SLM_AUDIT_MAX_TOKENS)
        st = slm_errf(err, SLM_ERR_RANGE, "tokens_in: %llu too large", (unsigned long long)r->tokens_in);
    if (st == SLM_OK && r->tokens_out > (uint64_t)SLM_AUDIT_MAX_TOKENS)
        st = slm_errf(err, SLM_ERR_RANGE, "tokens_out: %llu too large", (unsigned long long)r->tokens_out);
    if (st == SLM_OK) st = set_new(obj, "tokens_in", json_integer((json_int_t)r->tokens_in), err);
    if (st == SLM_OK) st = set_new(obj, "tokens_out", json_integer((json_int_t)r->tokens_out), err);
    if (st == SLM_OK) st = set_new(obj, "latency_ms", json_real(r->latency_ms), err);
    if (st == SLM_OK) st = set_new(obj, "cost", json_real(r->cost), err);
    if (st == SLM_OK && r->has_confidence) st = set_new(obj, "confidence", json_real(r->confidence), err);
    if (st != SLM_OK) return st;
    if (r->n_policy > SLM_AUDIT_MAX_POLICY)
        return slm_errf(err, SLM_ERR_LIMIT, "policy: %zu outcomes, limit %d", r->n_policy,
                        SLM_AUDIT_MAX_POLICY);
    if (r->n_policy && !r->policy) return slm_errf(err, SLM_ERR_INVALID_ARG, "policy: NULL array");
    json_t *pol = json_object();
    if (!pol) return slm_errf(err, SLM_ERR_NOMEM, "record: no memory");
    if (json_object_set_new(obj, "policy", pol) != 0) return slm_errf(err, SLM_ERR_NOMEM, "record: no memory");
    for (size_t i = 0; i < r->n_policy; i++) {
        const slm_audit_policy *p = &r->policy[i];
        if (!p->rule || !p->outcome) return slm_errf(err, SLM_ERR_INVALID_ARG, "policy %zu: NULL", i);
        if (json_object_get(pol, p->rule))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "policy: rule '%.64s' twice", p->rule);
        st = set_string(pol, p->rule, p->outcome, NULL, err);
        if (st != SLM_OK) return st;
    }
    return SLM_OK;
}

slm_status slm_audit_record_from_struct(const slm_audit_record *rec, json_t **out, char *err) {
    *out = NULL;
    if (!rec) return slm_errf(err, SLM_ERR_INVALID_ARG, "record: NULL");
    json_t *obj = json_object();
    if (!obj) return slm_errf(err, SLM_ERR_NOMEM, "record: no memory");
    slm_status st = struct_fill(obj, rec, err);
    if (st == SLM_OK) st = record_validate(obj, false, err);
    if (st != SLM_OK) {
        json_decref(obj);
        return st;
    }
    *out = obj;
    return SLM_OK;
}

/* ---- canonical bytes and hashing ------------------------------------------------------------- */

/* The one definition of the canonical form (docs/governance.md, "Audit log"). */
#define CANONICAL_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY)

slm_status slm_audit_canonical(const json_t *v, char **out, char *err) {
    *out = NULL;
    char *s = json_dumps(v, CANONICAL_FLAGS); /* jansson's allocator: free() */
    if (!s) return slm_errf(err, SLM_ERR_NOMEM, "canonical JSON: no memory");
    *out = slm_strdup(s);
    free(s);
    if (!*out) return slm_errf(err, SLM_ERR_NOMEM, "canonical JSON: no memory");
    return SLM_OK;
}

slm_status slm_audit_sha256_hex(const void *data, size_t len, char hex[SLM_AUDIT_HASH_HEX],
                                char *err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return slm_errf(err, SLM_ERR_CRYPTO, "SHA-256 failed");
    for (unsigned i = 0; i < mdlen; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return SLM_OK;
}

void slm_audit_now(char buf[SLM_AUDIT_MAX_TIME + 1]) {
    struct timespec ts;
    struct tm tm;
    char date[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, SLM_AUDIT_MAX_TIME + 1, "%.19s.%03dZ", date, (int)(ts.tv_nsec / 1000000L % 1000));
}

slm_status slm_audit_record_seal(json_t *rec, uint64_t seq, const char *prev, char **body,
                                 char hash[SLM_AUDIT_HASH_HEX], char *err) {
    *body = NULL;
    if (seq > (uint64_t)SLM_AUDIT_MAX_SEQ)
        return slm_errf(err, SLM_ERR_LIMIT, "log full at seq %llu", (unsigned long long)seq);
    if (json_object_set_new(rec, "seq", json_integer((json_int_t)seq)) != 0 ||
        json_object_set_new(rec, "prev", json_string(prev)) != 0)
        return slm_errf(err, SLM_ERR_NOMEM, "seal: no memory");
    slm_status st = slm_audit_canonical(rec, body, err);
    if (st != SLM_OK) return st;
    st = slm_audit_sha256_hex(*body, strlen(*body), hash, err);
    if (st != SLM_OK) {
        slm_free(*body);
        *body = NULL;
    }
    return st;
}

/* ---- stored bodies ------------------------------------------------------------------------------ */

slm_status slm_audit_record_check(const char *body, uint64_t seq, const char *prev, char *err) {
    json_error_t jerr;
    char *again = NULL;
    char detail[SLM_ERR_LEN];
    slm_status st;
    json_t *obj = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return slm_errf(err, SLM_ERR_TAMPERED, "body is not JSON: %s", jerr.text);
    st = record_validate(obj, true, detail);
    if (st != SLM_OK) {
        st = slm_errf(err, SLM_ERR_TAMPERED, "body invalid: %s", detail);
        goto done;
    }
    json_int_t says = json_integer_value(json_object_get(obj, "seq"));
    if ((uint64_t)says != seq) {
        st = slm_errf(err, SLM_ERR_TAMPERED, "body says seq %lld (moved, swapped or inserted)",
                      (long long)says);
        goto done;
    }
    if (strcmp(json_string_value(json_object_get(obj, "prev")), prev) != 0) {
        if (seq == 1)
            st = slm_errf(err, SLM_ERR_TAMPERED, "prev is not the genesis value (64 zeros)");
        else
            st = slm_errf(err, SLM_ERR_TAMPERED,
                          "prev does not match record %llu's hash (chain broken)",
                          (unsigned long long)(seq - 1));
        goto done;
    }
    st = slm_audit_canonical(obj, &again, err);
    if (st != SLM_OK) goto done;
    if (strcmp(again, body) != 0) st = slm_errf(err, SLM_ERR_TAMPERED, "body is not in canonical form");
done:
    slm_free(again);
    json_decref(obj);
    return st;
}

slm_status slm_audit_checkpoint_parse(const char *body, uint64_t *count,
                                      char head[SLM_AUDIT_HASH_HEX], char *err) {
    json_error_t jerr;
    char *again = NULL;
    slm_status st = SLM_OK;
    json_t *obj = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return slm_errf(err, SLM_ERR_TAMPERED, "checkpoint body is not JSON: %s", jerr.text);
    json_t *c = json_object_get(obj, "count"), *h = json_object_get(obj, "head");
    json_t *t = json_object_get(obj, "time");
    if (!json_is_object(obj) || json_object_size(obj) != 3 || !json_is_integer(c) ||
        json_integer_value(c) < 0 || !json_is_string(h) ||
        !hex64_valid(json_string_value(h), json_string_length(h)) || !json_is_string(t) ||
        !time_valid(json_string_value(t), json_string_length(t))) {
        st = slm_errf(err, SLM_ERR_TAMPERED, "checkpoint body lacks a valid count, head or time");
        goto done;
    }
    st = slm_audit_canonical(obj, &again, err);
    if (st != SLM_OK) goto done;
    if (strcmp(again, body) != 0) {
        st = slm_errf(err, SLM_ERR_TAMPERED, "checkpoint body is not in canonical form");
        goto done;
    }
    *count = (uint64_t)json_integer_value(c);
    memcpy(head, json_string_value(h), SLM_AUDIT_HASH_HEX);
done:
    slm_free(again);
    json_decref(obj);
    return st;
}
