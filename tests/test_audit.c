/*
 * tests/test_audit.c: the audit log: canonical bytes (golden vector), record validation,
 * append + verify, every kind of tampering made directly in the database (update, update
 * with a recomputed hash, delete, delete at the end, insert, insert in the middle, swap),
 * 8 threads appending at once, Ed25519-signed checkpoints, export, allocation failures.
 *
 * The suite runs against SQLite (a temporary file) and, when SLMESH_AUDIT_PG_URL names a
 * PostgreSQL database (tests/audit_pg.sh starts a real server and sets it), against
 * PostgreSQL too, with the same tampering done by SQL through libpq
 * (SLMESH_AUDIT_PG_ONLY=1: only against PostgreSQL).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "audit/audit_int.h"
#include "core/core.h"
#include "slmesh/audit.h"

/* ---- fixture: one fresh database per test ---------------------------------------------------- */

typedef struct {
    char db[4096]; /* SQLite path or PostgreSQL URI */
    bool pg;       /* db is PostgreSQL */
} fixture;

static bool use_pg;                  /* set in main: run the suite against PostgreSQL */
static char pg_url[4096];           /* the PostgreSQL URI when use_pg */

/* Run sql directly on the database, bypassing slmesh (this is how tampering is done). */
static void raw_exec(const fixture *fx, const char *sql) {
    if (fx->pg) {
        PGconn *c = PQconnectdb(fx->db);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *r = PQexec(c, sql);
        ExecStatusType s = PQresultStatus(r);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) fprintf(stderr, "pg: %s: %s", sql, PQerrorMessage(c));
        assert_true(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK);
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "sqlite: %s: %s\n", sql, msg);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

/* First column of the first row of a query, malloc'd (caller frees). */
static char *raw_text(const fixture *fx, const char *sql) {
    char *out = NULL;
    if (fx->pg) {
        PGconn *c = PQconnectdb(fx->db);
        PGresult *r = PQexec(c, sql);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_true(PQntuples(r) >= 1);
        out = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return out;
    }
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(fx->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    out = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    sqlite3_close(db);
    return out;
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    fx->pg = use_pg;
    if (fx->pg) {
        snprintf(fx->db, sizeof fx->db, "%s", pg_url);
        raw_exec(fx, "DROP TABLE IF EXISTS audit_log, audit_checkpoint");
    } else {
        char *p = tu_write_temp("", 0, ".db");
        if (!p) return -1;
        snprintf(fx->db, sizeof fx->db, "%s", p);
        free(p);
    }
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    if (!fx->pg) {
        char side[4200];
        unlink(fx->db);
        snprintf(side, sizeof side, "%s-wal", fx->db);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", fx->db);
        unlink(side);
    }
    free(fx);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static slm_audit *open_log(const fixture *fx, const slm_audit_options *opt) {
    char err[SLM_ERR_LEN] = "";
    slm_audit *log = NULL;
    slm_status st = slm_audit_open(fx->db, opt, &log, err);
    if (st != SLM_OK) fprintf(stderr, "open: %s\n", err);
    assert_int_equal(st, SLM_OK);
    return log;
}

/* Append one record with request id "<tag>-<i>". */
static slm_status append_one(slm_audit *log, const char *tag, int i, uint64_t *seq, char *err) {
    char id[64];
    snprintf(id, sizeof id, "%s-%d", tag, i);
    slm_audit_policy pol[] = {{"pii.email", "redacted"}, {"topic.deny", "pass"}};
    slm_audit_record r = {
        .request_id = id, .task = "classify", .model = "tiny", .tier = "local", .route = "local",
        .reason = "confident", .has_confidence = true, .confidence = 0.5, .tokens_in = 3,
        .tokens_out = 1, .latency_ms = 2.5, .cost = 0.125, .policy = pol, .n_policy = 2,
        .prompt = "is <EMAIL_1> spam?", .answer = "no",
    };
    return slm_audit_append(log, &r, seq, NULL, err);
}

static void append_n(slm_audit *log, int n) {
    char err[SLM_ERR_LEN];
    for (int i = 1; i <= n; i++) {
        uint64_t seq = 0;
        assert_int_equal(append_one(log, "r", i, &seq, err), SLM_OK);
        assert_int_equal(seq, (uint64_t)i);
    }
}

/* Verify and expect tampering at record bad_seq with `what` in the message. */
static void expect_tampered(slm_audit *log, const slm_audit_key *pub, uint64_t bad_seq, const char *what) {
    slm_audit_report rep;
    char err[SLM_ERR_LEN];
    slm_status st = slm_audit_verify(log, pub, &rep, err);
    if (st != SLM_ERR_TAMPERED || rep.bad_seq != bad_seq || !strstr(rep.what, what))
        fprintf(stderr, "verify: status %d, bad_seq %llu, what '%s' (wanted %llu '%s')\n", st,
                (unsigned long long)rep.bad_seq, rep.what, (unsigned long long)bad_seq, what);
    assert_int_equal(st, SLM_ERR_TAMPERED);
    assert_int_equal(rep.bad_seq, bad_seq);
    assert_non_null(strstr(rep.what, what));
    assert_int_equal(rep.records, bad_seq ? bad_seq - 1 : rep.records);
}

static void expect_ok(slm_audit *log, const slm_audit_key *pub, uint64_t records) {
    slm_audit_report rep;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_audit_verify(log, pub, &rep, err);
    if (st != SLM_OK) fprintf(stderr, "verify: %s\n", err);
    assert_int_equal(st, SLM_OK);
    assert_int_equal(rep.records, records);
    assert_int_equal(rep.bad_seq, 0);
}

/* ---- record model ------------------------------------------------------------------------------------ */

/* Golden vector, computed independently (Python json.dumps sort_keys, compact + hashlib). */
static const char golden_in[] =
    "{\"request_id\":\"req-1\",\"time\":\"2026-01-02T03:04:05.678Z\",\"task\":\"classify\","
    "\"model\":\"tiny\",\"tier\":\"local\",\"route\":\"local\",\"reason\":\"confidence ok\","
    "\"confidence\":0.75,\"tokens_in\":12,\"tokens_out\":1,\"latency_ms\":12.5,\"cost\":0.25,"
    "\"policy\":{\"pii.email\":\"redacted\"},\"prompt\":\"Mail <EMAIL_1> \\\"now\\\"\\n\","
    "\"answer\":\"spam\"}";
static const char golden_body[] =
    "{\"answer\":\"spam\",\"confidence\":0.75,\"cost\":0.25,\"latency_ms\":12.5,\"model\":\"tiny\","
    "\"policy\":{\"pii.email\":\"redacted\"},"
    "\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\","
    "\"prompt\":\"Mail <EMAIL_1> \\\"now\\\"\\n\",\"reason\":\"confidence ok\",\"request_id\":\"req-1\","
    "\"route\":\"local\",\"seq\":1,\"task\":\"classify\",\"tier\":\"local\","
    "\"time\":\"2026-01-02T03:04:05.678Z\",\"tokens_in\":12,\"tokens_out\":1}";
static const char golden_hash[] = "9b5df41a04a243e76b693fc25bffeac8ba987ce1294e439864d78ba05fdf7f4c";
static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

static void test_canonical_golden(void **state) {
    (void)state;
    char err[SLM_ERR_LEN], hash[SLM_AUDIT_HASH_HEX];
    json_t *rec;
    char *body;
    assert_int_equal(slm_audit_record_from_json(golden_in, strlen(golden_in), &rec, err), SLM_OK);
    assert_int_equal(slm_audit_record_seal(rec, 1, zeros, &body, hash, err), SLM_OK);
    assert_string_equal(body, golden_body);
    assert_string_equal(hash, golden_hash);
    assert_int_equal(slm_audit_record_check(body, 1, zeros, err), SLM_OK);
    assert_int_equal(slm_audit_record_check(body, 2, zeros, err), SLM_ERR_TAMPERED);
    assert_int_equal(slm_audit_record_check(body, 1, golden_hash, err), SLM_ERR_TAMPERED);
    /* Same content with whitespace is not canonical. */
    char spaced[sizeof golden_body + 1];
    snprintf(spaced, sizeof spaced, "%.*s %s", 1, golden_body, golden_body + 1);
    assert_int_equal(slm_audit_record_check(spaced, 1, zeros, err), SLM_ERR_TAMPERED);
    assert_non_null(strstr(err, "canonical"));
    slm_free(body);
    json_decref(rec);

    /* The struct form gives the same bytes. */
    slm_audit_policy pol = {"pii.email", "redacted"};
    slm_audit_record r = {
        .request_id = "req-1", .time = "2026-01-02T03:04:05.678Z", .task = "classify",
        .model = "tiny", .tier = "local", .route = "local", .reason = "confidence ok",
        .has_confidence = true, .confidence = 0.75, .tokens_in = 12, .tokens_out = 1,
        .latency_ms = 12.5, .cost = 0.25, .policy = &pol, .n_policy = 1,
        .prompt = "Mail <EMAIL_1> \"now\"\n", .answer = "spam",
    };
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_OK);
    assert_int_equal(slm_audit_record_seal(rec, 1, zeros, &body, hash, err), SLM_OK);
    assert_string_equal(body, golden_body);
    slm_free(body);
    json_decref(rec);
}

static void expect_rejected(const char *json, slm_status want, const char *what) {
    char err[SLM_ERR_LEN] = "";
    json_t *rec = NULL;
    slm_status st = slm_audit_record_from_json(json, strlen(json), &rec, err);
    if (st != want || !strstr(err, what)) fprintf(stderr, "%s -> %d '%s'\n", json, st, err);
    assert_int_equal(st, want);
    assert_null(rec);
    assert_non_null(strstr(err, what));
}

#define BASE "\"request_id\":\"a\",\"task\":\"t\",\"model\":\"m\",\"tier\":\"l\",\"route\":\"r\"," \
             "\"reason\":\"\",\"tokens_in\":1,\"tokens_out\":2,\"latency_ms\":3,\"cost\":0"

static void test_validation(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    json_t *rec = NULL;
    /* Minimal record: defaults filled in. */
    assert_int_equal(slm_audit_record_from_json("{" BASE "}", strlen("{" BASE "}"), &rec, err), SLM_OK);
    assert_true(json_is_null(json_object_get(rec, "confidence")));
    assert_int_equal(json_object_size(json_object_get(rec, "policy")), 0);
    assert_string_equal(json_string_value(json_object_get(rec, "prompt")), "");
    assert_int_equal(json_string_length(json_object_get(rec, "time")), 24);
    json_decref(rec);

    expect_rejected("{" BASE ",\"extra\":1}", SLM_ERR_INVALID_ARG, "unknown field 'extra'");
    expect_rejected("{" BASE ",\"seq\":5}", SLM_ERR_INVALID_ARG, "set by the log");
    expect_rejected("{" BASE ",\"prev\":\"00\"}", SLM_ERR_INVALID_ARG, "set by the log");
    expect_rejected("{\"task\":\"t\"}", SLM_ERR_INVALID_ARG, "missing field 'request_id'");
    expect_rejected("{" BASE ",\"time\":\"yesterday\"}", SLM_ERR_INVALID_ARG, "RFC 3339");
    expect_rejected("{" BASE ",\"time\":\"2026-13-01T00:00:00Z\"}", SLM_ERR_INVALID_ARG, "RFC 3339");
    expect_rejected("{" BASE ",\"confidence\":1.5}", SLM_ERR_RANGE, "confidence");
    expect_rejected("{" BASE ",\"confidence\":\"high\"}", SLM_ERR_INVALID_ARG, "confidence");
    expect_rejected("{" BASE ",\"policy\":{\"x\":1}}", SLM_ERR_INVALID_ARG, "policy outcome");
    expect_rejected("{" BASE ",\"policy\":[\"x\"]}", SLM_ERR_INVALID_ARG, "policy");
    expect_rejected("{" BASE ",\"prompt\":7}", SLM_ERR_INVALID_ARG, "prompt: not a string");
    expect_rejected("{" BASE ",\"task\":\"t\"}", SLM_ERR_CORRUPT, "duplicate");
    expect_rejected("[1,2]", SLM_ERR_INVALID_ARG, "not a JSON object");
    expect_rejected("{\"request_id\":", SLM_ERR_CORRUPT, "JSON");
    expect_rejected("{\"request_id\":\"\\u0000\"}", SLM_ERR_CORRUPT, "JSON");
    expect_rejected("{\"request_id\":\"\",\"task\":\"t\",\"model\":\"m\",\"tier\":\"l\",\"route\":\"r\","
                    "\"reason\":\"\",\"tokens_in\":1,\"tokens_out\":2,\"latency_ms\":3,\"cost\":0}",
                    SLM_ERR_INVALID_ARG, "request_id: empty");
    expect_rejected("{\"request_id\":\"a\",\"task\":\"t\",\"model\":\"m\",\"tier\":\"l\",\"route\":\"r\","
                    "\"reason\":\"\",\"tokens_in\":-1,\"tokens_out\":2,\"latency_ms\":3,\"cost\":0}",
                    SLM_ERR_RANGE, "tokens_in");
    expect_rejected("{\"request_id\":\"a\",\"task\":\"t\",\"model\":\"m\",\"tier\":\"l\",\"route\":\"r\","
                    "\"reason\":\"\",\"tokens_in\":1.5,\"tokens_out\":2,\"latency_ms\":3,\"cost\":0}",
                    SLM_ERR_RANGE, "tokens_in");
    expect_rejected("{\"request_id\":\"a\",\"task\":\"t\",\"model\":\"m\",\"tier\":\"l\",\"route\":\"r\","
                    "\"reason\":\"\",\"tokens_in\":1,\"tokens_out\":2,\"latency_ms\":-3,\"cost\":0}",
                    SLM_ERR_RANGE, "latency_ms");

    /* Named limits: a name one byte over, a prompt one byte over. */
    char big[SLM_AUDIT_MAX_TEXT + 256];
    char name[SLM_AUDIT_MAX_NAME + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(big, sizeof big, "{" BASE ",\"tier\":\"%s\"}", name);
    expect_rejected(big, SLM_ERR_CORRUPT, "duplicate"); /* tier twice: rejected before limits */
    snprintf(big, sizeof big, "{\"request_id\":\"%s\"}", name);
    expect_rejected(big, SLM_ERR_LIMIT, "request_id");
    char *text = malloc(SLM_AUDIT_MAX_TEXT + 2);
    memset(text, 'x', SLM_AUDIT_MAX_TEXT + 1);
    text[SLM_AUDIT_MAX_TEXT + 1] = '\0';
    snprintf(big, sizeof big, "{" BASE ",\"answer\":\"%s\"}", text);
    expect_rejected(big, SLM_ERR_LIMIT, "answer");
    text[SLM_AUDIT_MAX_TEXT] = '\0'; /* exactly at the limit: accepted */
    snprintf(big, sizeof big, "{" BASE ",\"answer\":\"%s\"}", text);
    assert_int_equal(slm_audit_record_from_json(big, strlen(big), &rec, err), SLM_OK);
    json_decref(rec);
    free(text);

    /* Struct path: required NULL, bad UTF-8, duplicate policy rule, NaN. */
    slm_audit_record r = {.request_id = "a", .task = "t", .model = "m", .tier = "l", .route = "r"};
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "reason"));
    r.reason = "\xff";
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_ERR_UTF8);
    r.reason = "";
    slm_audit_policy dup[] = {{"a", "x"}, {"a", "y"}};
    r.policy = dup;
    r.n_policy = 2;
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_ERR_INVALID_ARG);
    r.n_policy = 0;
    r.cost = 0.0 / 0.0;
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_ERR_RANGE);
    r.cost = 0;
    assert_int_equal(slm_audit_record_from_struct(&r, &rec, err), SLM_OK);
    json_decref(rec);
}

/* ---- append and verify ------------------------------------------------------------------------------- */

static void test_append_verify(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN], hash[SLM_AUDIT_HASH_HEX];
    uint64_t seq;
    slm_audit *log = open_log(fx, NULL);
    expect_ok(log, NULL, 0); /* empty log */
    append_n(log, 5);
    const char line[] = "{" BASE ",\"confidence\":0.9}";
    assert_int_equal(slm_audit_append_json(log, line, strlen(line), &seq, hash, err), SLM_OK);
    assert_int_equal(seq, 6);
    assert_int_equal(slm_audit_append_json(log, "{\"x\":1}", 7, &seq, hash, err), SLM_ERR_INVALID_ARG);
    slm_audit_report rep;
    assert_int_equal(slm_audit_verify(log, NULL, &rep, err), SLM_OK);
    assert_int_equal(rep.records, 6);
    assert_string_equal(rep.head, hash);
    slm_audit_close(log);
    /* Reopen: the chain continues. */
    log = open_log(fx, NULL);
    append_n(log, 0);
    assert_int_equal(append_one(log, "again", 1, &seq, err), SLM_OK);
    assert_int_equal(seq, 7);
    expect_ok(log, NULL, 7);
    slm_audit_close(log);
}

static slm_status collect_line(void *ctx, const char *line, size_t len) {
    json_t *arr = ctx;
    json_t *v = json_loadb(line, len, 0, NULL);
    if (!v) return SLM_ERR_CORRUPT;
    json_array_append_new(arr, v);
    return SLM_OK;
}

static void test_export(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN];
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 4);
    assert_int_equal(slm_audit_checkpoint(log, NULL, err), SLM_OK);
    json_t *lines = json_array();
    assert_int_equal(slm_audit_export(log, false, collect_line, lines, err), SLM_OK);
    assert_int_equal(json_array_size(lines), 4);
    const char *prev = zeros;
    for (size_t i = 0; i < 4; i++) {
        json_t *r = json_array_get(lines, i);
        assert_int_equal(json_integer_value(json_object_get(r, "seq")), (json_int_t)i + 1);
        assert_string_equal(json_string_value(json_object_get(r, "prev")), prev);
        prev = json_string_value(json_object_get(r, "hash"));
        assert_int_equal(strlen(prev), 64);
    }
    json_t *cps = json_array();
    assert_int_equal(slm_audit_export(log, true, collect_line, cps, err), SLM_OK);
    assert_int_equal(json_array_size(cps), 1);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(cps, 0), "body")), prev));
    json_decref(lines);
    json_decref(cps);
    slm_audit_close(log);
}

/* ---- tampering, directly in the database ---------------------------------------------------------------- */

static void test_tamper_update(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    raw_exec(fx, "UPDATE audit_log SET body = replace(body, '\"tokens_in\":3', '\"tokens_in\":4') "
                 "WHERE seq = 4");
    expect_tampered(log, NULL, 4, "stored hash does not match");
    slm_audit_close(log);
}

/* The attacker edits record 5 and fixes its stored hash: record 6's link breaks. */
static void test_tamper_update_rehash(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN], hash[SLM_AUDIT_HASH_HEX], sql[8192];
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    char *body = raw_text(fx, "SELECT body FROM audit_log WHERE seq = 5");
    char *at = strstr(body, "\"answer\":\"no\"");
    assert_non_null(at);
    memcpy(at, "\"answer\":\"ok\"", 13);
    assert_int_equal(slm_audit_sha256_hex(body, strlen(body), hash, err), SLM_OK);
    snprintf(sql, sizeof sql, "UPDATE audit_log SET body = '%s', hash = '%s' WHERE seq = 5", body, hash);
    raw_exec(fx, sql);
    free(body);
    expect_tampered(log, NULL, 6, "chain broken");
    slm_audit_close(log);
}

static void test_tamper_delete(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    raw_exec(fx, "DELETE FROM audit_log WHERE seq = 6");
    expect_tampered(log, NULL, 6, "missing (the next stored record is 7)");
    slm_audit_close(log);
}

/* Cutting records off the end keeps the chain valid; only a checkpoint can tell. */
static void test_tamper_truncate(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN];
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    assert_int_equal(slm_audit_checkpoint(log, NULL, err), SLM_OK);
    raw_exec(fx, "DELETE FROM audit_log WHERE seq >= 9");
    expect_tampered(log, NULL, 9, "removed from the end");
    slm_audit_close(log);
}

static void test_tamper_insert(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    /* A copy of record 3 appended as record 11. */
    raw_exec(fx, "INSERT INTO audit_log(seq, body, hash) SELECT 11, body, hash FROM audit_log "
                 "WHERE seq = 3");
    expect_tampered(log, NULL, 11, "body says seq 3");
    slm_audit_close(log);
}

/* Insert in the middle: renumber 5.. up by one (via negatives: no key collisions in either
 * database), then put a copy of record 2 at 5. */
static void test_tamper_insert_middle(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    raw_exec(fx, "UPDATE audit_log SET seq = -seq - 1 WHERE seq >= 5");
    raw_exec(fx, "UPDATE audit_log SET seq = -seq WHERE seq < 0");
    raw_exec(fx, "INSERT INTO audit_log(seq, body, hash) SELECT 5, body, hash FROM audit_log "
                 "WHERE seq = 2");
    expect_tampered(log, NULL, 5, "body says seq 2");
    slm_audit_close(log);
}

static void test_tamper_swap(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 10);
    raw_exec(fx, "UPDATE audit_log SET seq = -3 WHERE seq = 3");
    raw_exec(fx, "UPDATE audit_log SET seq = 3 WHERE seq = 7");
    raw_exec(fx, "UPDATE audit_log SET seq = 7 WHERE seq = -3");
    expect_tampered(log, NULL, 3, "body says seq 7");
    slm_audit_close(log);
}

/* Rewriting record 3 and recomputing the whole chain after it fools the chain, not the
 * checkpoint taken before. */
static void test_tamper_rewrite_chain(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN], prev[SLM_AUDIT_HASH_HEX], sql[8192], q[128];
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 6);
    assert_int_equal(slm_audit_checkpoint(log, NULL, err), SLM_OK);
    char *h2 = raw_text(fx, "SELECT hash FROM audit_log WHERE seq = 2");
    snprintf(prev, sizeof prev, "%s", h2);
    free(h2);
    for (int s = 3; s <= 6; s++) {
        snprintf(q, sizeof q, "SELECT body FROM audit_log WHERE seq = %d", s);
        char *body = raw_text(fx, q);
        json_t *rec = json_loads(body, 0, NULL);
        free(body);
        if (s == 3) json_object_set_new(rec, "answer", json_string("yes"));
        json_object_del(rec, "seq");
        json_object_del(rec, "prev");
        char *nb, hash[SLM_AUDIT_HASH_HEX];
        assert_int_equal(slm_audit_record_seal(rec, (uint64_t)s, prev, &nb, hash, err), SLM_OK);
        snprintf(sql, sizeof sql, "UPDATE audit_log SET body = '%s', hash = '%s' WHERE seq = %d", nb,
                 hash, s);
        raw_exec(fx, sql);
        memcpy(prev, hash, sizeof prev);
        slm_free(nb);
        json_decref(rec);
    }
    expect_tampered(log, NULL, 6, "checkpoint 1's head");
    slm_audit_close(log);
}

/* ---- concurrency ------------------------------------------------------------------------------------- */

enum { N_THREADS = 8, PER_THREAD = 40 };

typedef struct {
    const fixture *fx; /* the database */
    slm_audit *shared; /* a shared handle, or NULL: open one per thread */
    int id;            /* thread number */
    bool poison;       /* also append records the database refuses */
    slm_status st;     /* first failure */
    char err[SLM_ERR_LEN];
} writer;

static void *writer_main(void *arg) {
    writer *w = arg;
    char tag[32];
    slm_audit *log = w->shared;
    snprintf(tag, sizeof tag, "t%d", w->id);
    if (!log) w->st = slm_audit_open(w->fx->db, NULL, &log, w->err);
    for (int i = 0; i < PER_THREAD && w->st == SLM_OK; i++) {
        w->st = append_one(log, tag, i, NULL, w->err);
        if (w->poison && w->st == SLM_OK && i % 8 == 0) {
            /* The database refuses this one (trigger): only this append may fail. */
            char err[SLM_ERR_LEN];
            uint64_t seq = 0;
            if (append_one(log, "poison", i, &seq, err) != SLM_ERR_DB || seq != 0) {
                w->st = SLM_ERR_INTERNAL;
                snprintf(w->err, sizeof w->err, "poison record was not refused alone: %.180s", err);
            }
        }
    }
    if (!w->shared) slm_audit_close(log);
    return NULL;
}

static void run_writers(const fixture *fx, slm_audit *shared, int n_threads, bool poison) {
    pthread_t th[N_THREADS];
    writer w[N_THREADS];
    for (int t = 0; t < n_threads; t++) {
        w[t] = (writer){.fx = fx, .shared = shared, .id = t, .poison = poison};
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &w[t]), 0);
    }
    for (int t = 0; t < n_threads; t++) {
        pthread_join(th[t], NULL);
        if (w[t].st != SLM_OK) fprintf(stderr, "writer %d: %s\n", t, w[t].err);
        assert_int_equal(w[t].st, SLM_OK);
    }
}

/* Every (thread, i) appears exactly once. */
static void check_all_present(slm_audit *log, int n_threads, int base) {
    char err[SLM_ERR_LEN];
    json_t *lines = json_array();
    assert_int_equal(slm_audit_export(log, false, collect_line, lines, err), SLM_OK);
    static unsigned char seen[N_THREADS][PER_THREAD];
    memset(seen, 0, sizeof seen);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(lines); i++) {
        int t, k;
        const char *id = json_string_value(json_object_get(json_array_get(lines, i), "request_id"));
        if (sscanf(id, "t%d-%d", &t, &k) != 2) continue;
        assert_true(t >= 0 && t < n_threads && k >= 0 && k < PER_THREAD);
        assert_int_equal(seen[t][k]++, 0);
        n++;
    }
    assert_int_equal(n, (size_t)(n_threads * PER_THREAD));
    assert_int_equal(json_array_size(lines), (size_t)(base + n_threads * PER_THREAD));
    json_decref(lines);
}

static void test_threads_own_handles(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    append_n(log, 2);
    run_writers(fx, NULL, N_THREADS, false);
    expect_ok(log, NULL, 2 + N_THREADS * PER_THREAD);
    check_all_present(log, N_THREADS, 2);
    slm_audit_close(log);
}

static void test_threads_shared_handle(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    run_writers(fx, log, N_THREADS, false);
    expect_ok(log, NULL, N_THREADS * PER_THREAD);
    check_all_present(log, N_THREADS, 0);
    slm_audit_close(log);
}

/* Group commit: threads sharing a handle are committed in batches; a record the database
 * refuses (a trigger here) fails alone, everyone else's records commit, the chain holds. */
static void test_group_commit_failure_isolated(void **state) {
    fixture *fx = *state;
    slm_audit *log = open_log(fx, NULL);
    if (fx->pg)
        raw_exec(fx, "CREATE OR REPLACE FUNCTION slmesh_test_poison() RETURNS trigger AS $$ BEGIN "
                     "IF NEW.body LIKE '%\"request_id\":\"poison-%' THEN RAISE EXCEPTION 'poison'; "
                     "END IF; RETURN NEW; END $$ LANGUAGE plpgsql; "
                     "CREATE TRIGGER poison BEFORE INSERT ON audit_log FOR EACH ROW "
                     "EXECUTE FUNCTION slmesh_test_poison()");
    else
        raw_exec(fx, "CREATE TRIGGER poison BEFORE INSERT ON audit_log "
                     "WHEN NEW.body LIKE '%\"request_id\":\"poison-%' "
                     "BEGIN SELECT RAISE(ABORT, 'poison'); END");
    run_writers(fx, log, N_THREADS, true);
    expect_ok(log, NULL, N_THREADS * PER_THREAD);
    check_all_present(log, N_THREADS, 0);
    slm_audit_close(log);
}

/* ---- allocation failures ------------------------------------------------------------------------------- */

static slm_status drop_line(void *ctx, const char *line, size_t len) {
    (void)ctx;
    (void)line;
    (void)len;
    return SLM_OK;
}

/* Every slm_malloc failure in open / append / checkpoint / verify / export / close is
 * reported as SLM_ERR_NOMEM (never a crash or leak), and the log stays verifiable. */
static void test_alloc_failures(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN];
    slm_audit *first = open_log(fx, NULL);
    append_n(first, 1);
    slm_audit_close(first);
    uint64_t appended = 0;
    for (long n = 1;; n++) {
        slm_audit *log = NULL;
        slm_audit_report rep;
        uint64_t seq = 0;
        /* Same work every round: a log of one record before the appends. */
        raw_exec(fx, "DELETE FROM audit_log WHERE seq > 1; DELETE FROM audit_checkpoint");
        appended = 0;
        slm_fault_arm(n);
        slm_status st = slm_audit_open(fx->db, NULL, &log, err);
        for (int i = 0; i < 2 && st == SLM_OK; i++) {
            st = append_one(log, "f", (int)n, &seq, err);
            if (st == SLM_OK) appended++;
        }
        if (st == SLM_OK) {
            st = slm_audit_checkpoint(log, NULL, err);
            if (st == SLM_OK) st = slm_audit_verify(log, NULL, &rep, err);
            if (st == SLM_OK) st = slm_audit_export(log, false, drop_line, NULL, err);
        }
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        slm_audit_close(log);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_true(n < 1000);
    }
    slm_audit *log = open_log(fx, NULL);
    expect_ok(log, NULL, 1 + appended);
    slm_audit_close(log);
}

/* ---- signed checkpoints -------------------------------------------------------------------------------------- */

typedef struct {
    char dir[256];  /* temporary directory */
    char priv[300]; /* its private key file */
    char pub[300];  /* its public key file */
} keypair;

static void make_keys(keypair *kp) {
    char err[SLM_ERR_LEN];
    const char *tmp = getenv("TMPDIR");
    snprintf(kp->dir, sizeof kp->dir, "%s/slmesh-keys-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(kp->dir));
    snprintf(kp->priv, sizeof kp->priv, "%s/k.pem", kp->dir);
    snprintf(kp->pub, sizeof kp->pub, "%s/k.pub", kp->dir);
    assert_int_equal(slm_audit_keygen(kp->priv, kp->pub, err), SLM_OK);
    /* Never overwrites a key. */
    assert_int_equal(slm_audit_keygen(kp->priv, kp->pub, err), SLM_ERR_IO);
}

static void drop_keys(keypair *kp) {
    unlink(kp->priv);
    unlink(kp->pub);
    rmdir(kp->dir);
}

static void test_signed_checkpoints(void **state) {
    fixture *fx = *state;
    char err[SLM_ERR_LEN];
    keypair kp, other;
    slm_audit_key *priv, *pub, *pub2, *bad;
    make_keys(&kp);
    make_keys(&other);
    assert_int_equal(slm_audit_key_load(kp.priv, true, &priv, err), SLM_OK);
    assert_int_equal(slm_audit_key_load(kp.pub, false, &pub, err), SLM_OK);
    assert_int_equal(slm_audit_key_load(other.pub, false, &pub2, err), SLM_OK);
    assert_int_equal(slm_audit_key_load(kp.pub, true, &bad, err), SLM_ERR_CRYPTO);
    assert_int_equal(slm_audit_key_load("/nonexistent.pem", false, &bad, err), SLM_ERR_IO);

    slm_audit_options opt = {.checkpoint_every = 5, .sign_key = priv};
    slm_audit *log = open_log(fx, &opt);
    append_n(log, 12); /* checkpoints at 5 and 10 */
    slm_audit_report rep;
    assert_int_equal(slm_audit_verify(log, pub, &rep, err), SLM_OK);
    assert_int_equal(rep.records, 12);
    assert_int_equal(rep.checkpoints, 2);
    assert_int_equal(rep.signatures, 2);
    /* A signature by another key does not verify. */
    assert_int_equal(slm_audit_verify(log, pub2, &rep, err), SLM_ERR_TAMPERED);
    assert_int_equal(rep.bad_checkpoint, 1);
    assert_non_null(strstr(rep.what, "signature does not verify"));
    slm_audit_close(log);

    /* An unsigned checkpoint fails when a public key is required; passes without. */
    log = open_log(fx, NULL);
    assert_int_equal(slm_audit_checkpoint(log, NULL, err), SLM_OK);
    assert_int_equal(slm_audit_verify(log, pub, &rep, err), SLM_ERR_TAMPERED);
    assert_int_equal(rep.bad_checkpoint, 3);
    assert_int_equal(rep.bad_seq, 0);
    assert_non_null(strstr(rep.what, "signature missing"));
    expect_ok(log, NULL, 12);
    raw_exec(fx, "DELETE FROM audit_checkpoint WHERE id = 3");

    /* A forged count in a signed checkpoint breaks its signature. */
    raw_exec(fx, "UPDATE audit_checkpoint SET body = replace(body, '\"count\":10', '\"count\":9') "
                 "WHERE id = 2");
    assert_int_equal(slm_audit_verify(log, pub, &rep, err), SLM_ERR_TAMPERED);
    assert_int_equal(rep.bad_checkpoint, 2);
    /* ... and without the key its head no longer matches record 9. */
    expect_tampered(log, NULL, 9, "checkpoint 2's head");
    slm_audit_close(log);

    slm_audit_key_free(priv);
    slm_audit_key_free(pub);
    slm_audit_key_free(pub2);
    slm_audit_key_free(NULL);
    drop_keys(&kp);
    drop_keys(&other);
}

static void test_bad_open(void **state) {
    (void)state;
    char err[SLM_ERR_LEN];
    slm_audit *log = NULL;
    assert_int_equal(slm_audit_open("", NULL, &log, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_audit_open("/nonexistent-dir/x.db", NULL, &log, err), SLM_ERR_DB);
    char *p = tu_write_temp("this is not a database, just some text long enough", 50, ".db");
    assert_int_equal(slm_audit_open(p, NULL, &log, err), SLM_ERR_DB);
    assert_null(log);
    unlink(p);
    free(p);
    slm_audit_close(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const char *url = getenv("SLMESH_AUDIT_PG_URL");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_golden),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_bad_open),
        T(test_append_verify),
        T(test_export),
        T(test_tamper_update),
        T(test_tamper_update_rehash),
        T(test_tamper_delete),
        T(test_tamper_truncate),
        T(test_tamper_insert),
        T(test_tamper_insert_middle),
        T(test_tamper_swap),
        T(test_tamper_rewrite_chain),
        T(test_threads_own_handles),
        T(test_threads_shared_handle),
        T(test_group_commit_failure_isolated),
        T(test_signed_checkpoints),
        T(test_alloc_failures),
    };
    const char *pg_only = getenv("SLMESH_AUDIT_PG_ONLY");
    int failed = 0;
    if (!pg_only || !*pg_only) failed = cmocka_run_group_tests_name("audit (sqlite)", tests, NULL, NULL);
    if (url && *url) {
        use_pg = true;
        snprintf(pg_url, sizeof pg_url, "%s", url);
        failed += cmocka_run_group_tests_name("audit (postgresql)", tests, NULL, NULL);
    } else {
        fprintf(stderr, "audit: PostgreSQL group not run here (tests/audit_pg.sh runs it against a "
                        "real server via SLMESH_AUDIT_PG_URL)\n");
    }
    return failed;
}
