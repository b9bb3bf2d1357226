/*
 * audit/audit_pg.c: the PostgreSQL audit log store (libpq), for many replicas writing one
 * log. Selected by a postgresql:// or postgres:// connection URI.
 *
 * Schema (created if absent, under the advisory lock so concurrent first opens agree):
 *   audit_log(seq bigint PRIMARY KEY, body text NOT NULL, hash text NOT NULL)
 *   audit_checkpoint(id bigserial PRIMARY KEY, body text NOT NULL, signature text)
 * Invariants:
 *  - Every append and checkpoint is one transaction that first takes a transaction-scoped
 *    advisory lock (AUDIT_PG_LOCK_KEY), then reads the head, inserts and commits. The lock
 *    is held until COMMIT/ROLLBACK (or until the server sees the client die), so appenders
 *    on any number of connections and hosts queue on it and each sees the previous commit
 *    (READ COMMITTED: the head SELECT runs after the lock is granted, with a new snapshot).
 *    The primary key on seq is the second line of defence: a duplicate seq cannot commit.
 *  - Durability is the server's: a COMMIT that returned is durable under the default
 *    synchronous_commit = on.
 *  - Server notices never reach stderr (a no-op notice processor): the library never prints.
 * Thread-safety: one PGconn per backend; the caller (slm_audit) serialises calls.
 * Non-goals: reconnecting after a lost connection (the caller reopens), connection pools.
 */
#include "audit/audit_int.h"

#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/core.h"

/* Advisory lock key serialising appends to the audit tables of one database: "slmesh" in
 * ASCII in the high bytes, 1 = the audit log. Other slmesh tables would use other low bytes. */
#define AUDIT_PG_LOCK_KEY "8317142894341783553" /* 0x736c6d6573680001 */

struct audit_backend {
    PGconn *conn; /* owned connection */
};

/* libpq's message (without its trailing newline) into err. */
static slm_status pg_err(audit_backend *be, char *err, const char *what) {
    const char *m = PQerrorMessage(be->conn);
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
    return slm_errf(err, SLM_ERR_DB, "postgresql: %s: %.*s", what, (int)n, m);
}

/* Run a statement with no interesting result. */
static slm_status exec(audit_backend *be, const char *sql, char *err) {
    PGresult *r = PQexec(be->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    PQclear(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) return pg_err(be, err, sql);
    return SLM_OK;
}

static void quiet_notices(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* ---- open / close ------------------------------------------------------------------------------- */

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS audit_log("
    "seq bigint PRIMARY KEY, body text NOT NULL, hash text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoint("
    "id bigserial PRIMARY KEY, body text NOT NULL, signature text)";

static void pg_close(audit_backend *be) {
    if (!be) return;
    PQfinish(be->conn);
    slm_free(be);
}

/* BEGIN and take the log's advisory lock. */
static slm_status begin_locked(audit_backend *be, char *err) {
    slm_status st = exec(be, "BEGIN", err);
    if (st == SLM_OK) st = exec(be, "SELECT pg_advisory_xact_lock(" AUDIT_PG_LOCK_KEY ")", err);
    return st;
}

/* ---- writes ------------------------------------------------------------------------------------------ */

static slm_status read_head(audit_backend *be, uint64_t *seq, char hash[SLM_AUDIT_HASH_HEX],
                            char *err) {
    slm_status st = SLM_OK;
    *seq = 0;
    memset(hash, '0', SLM_AUDIT_HASH_HEX - 1);
    hash[SLM_AUDIT_HASH_HEX - 1] = '\0';
    PGresult *r = PQexec(be->conn, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        st = pg_err(be, err, "head");
    } else if (PQntuples(r) == 1) {
        long long s = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        const char *h = PQgetvalue(r, 0, 1);
        if (s < 1 || strlen(h) != SLM_AUDIT_HASH_HEX - 1)
            st = slm_errf(err, SLM_ERR_TAMPERED, "head record %lld is malformed; run verify", s);
        else {
            *seq = (uint64_t)s;
            memcpy(hash, h, SLM_AUDIT_HASH_HEX);
        }
    }
    PQclear(r);
    return st;
}

/* One write transaction (see the file comment): lock, read head, then n times seal and
 * insert, commit. record: rows go to audit_log with seq = head + 1, ...; else one checkpoint. */
static slm_status locked_insert(audit_backend *be, bool record, size_t n, audit_seal_fn seal,
                                void *ctx, uint64_t *seq_out, char *err) {
    char head_hash[SLM_AUDIT_HASH_HEX], tag[SLM_AUDIT_TAG_LEN] = "", seq_text[24];
    uint64_t head_seq = 0, first;
    char *body = NULL;
    slm_status st = begin_locked(be, err);
    if (st == SLM_OK) st = read_head(be, &head_seq, head_hash, err);
    if (st != SLM_OK) goto fail;
    first = head_seq + 1;
    for (size_t i = 0; i < n; i++) {
        st = seal(ctx, i, head_seq, head_hash, &body, tag, err);
        if (st != SLM_OK) goto fail;
        snprintf(seq_text, sizeof seq_text, "%llu", (unsigned long long)(head_seq + 1));
        const char *vals[3] = {seq_text, body, *tag ? tag : NULL};
        PGresult *r =
            record ? PQexecParams(be->conn,
                                  "INSERT INTO audit_log(seq, body, hash) VALUES($1::bigint, $2, $3)",
                                  3, NULL, vals, NULL, NULL, 0)
                   : PQexecParams(be->conn,
                                  "INSERT INTO audit_checkpoint(body, signature) VALUES($1, $2)", 2,
                                  NULL, vals + 1, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(r);
        PQclear(r);
        if (s != PGRES_COMMAND_OK) {
            st = pg_err(be, err, "insert");
            goto fail;
        }
        slm_free(body);
        body = NULL;
        if (record) {
            head_seq++;
            memcpy(head_hash, tag, SLM_AUDIT_HASH_HEX);
        }
    }
    st = exec(be, "COMMIT", err);
    if (st != SLM_OK) goto fail;
    if (seq_out) *seq_out = record ? first : head_seq;
    return SLM_OK;
fail:
    {
        PGresult *rb = PQexec(be->conn, "ROLLBACK"); /* keep the first error's detail */
        PQclear(rb);
    }
    slm_free(body);
    return st;
}

static slm_status pg_append(audit_backend *be, size_t n, audit_seal_fn seal, void *ctx,
                            uint64_t *seq, char *err) {
    return locked_insert(be, true, n, seal, ctx, seq, err);
}

static slm_status pg_checkpoint(audit_backend *be, audit_seal_fn seal, void *ctx, char *err) {
    return locked_insert(be, false, 1, seal, ctx, NULL, err);
}

/* ---- reads ------------------------------------------------------------------------------------------- */

/* Stream sql (3 columns: key, body, tag) row by row (single-row mode: constant memory),
 * calling fn per row; after fn fails, the rest is drained without calls. */
static slm_status each_row(audit_backend *be, const char *sql, audit_row_fn fn, void *ctx,
                           char *err) {
    slm_status st = SLM_OK;
    if (!PQsendQuery(be->conn, sql)) return pg_err(be, err, "select");
    if (!PQsetSingleRowMode(be->conn)) st = pg_err(be, err, "single-row mode");
    PGresult *r;
    while ((r = PQgetResult(be->conn))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && st == SLM_OK) {
            long long key = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            const char *tag = PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2);
            st = fn(ctx, key < 0 ? 0 : (uint64_t)key, PQgetvalue(r, 0, 1), tag, err);
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && st == SLM_OK) {
            st = pg_err(be, err, "select");
        }
        PQclear(r);
    }
    return st;
}

static slm_status pg_records(audit_backend *be, audit_row_fn fn, void *ctx, char *err) {
    return each_row(be, "SELECT seq, body, hash FROM audit_log ORDER BY seq", fn, ctx, err);
}

static slm_status pg_checkpoints(audit_backend *be, audit_row_fn fn, void *ctx, char *err) {
    return each_row(be, "SELECT id, body, signature FROM audit_checkpoint ORDER BY id", fn, ctx, err);
}

static const audit_backend_ops pg_ops = {
    .append = pg_append,
    .checkpoint = pg_checkpoint,
    .records = pg_records,
    .checkpoints = pg_checkpoints,
    .close = pg_close,
};

slm_status slm_audit_pg_open(const char *conninfo, audit_backend **out,
                             const audit_backend_ops **ops, char *err) {
    *out = NULL;
    audit_backend *be = slm_calloc(1, sizeof *be);
    if (!be) return slm_errf(err, SLM_ERR_NOMEM, "postgresql: no memory");
    slm_status st = SLM_OK;
    be->conn = PQconnectdb(conninfo);
    if (!be->conn) {
        st = slm_errf(err, SLM_ERR_NOMEM, "postgresql: no memory");
        goto fail;
    }
    if (PQstatus(be->conn) != CONNECTION_OK) {
        st = pg_err(be, err, "connect");
        goto fail;
    }
    PQsetNoticeProcessor(be->conn, quiet_notices, NULL);
    st = begin_locked(be, err);
    if (st == SLM_OK) st = exec(be, schema_sql, err);
    if (st == SLM_OK) st = exec(be, "COMMIT", err);
    if (st != SLM_OK) goto fail;
    *out = be;
    *ops = &pg_ops;
    return SLM_OK;
fail:
    pg_close(be);
    return st;
}
