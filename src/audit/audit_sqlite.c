/*
 * audit/audit_sqlite.c: the embedded audit log store (SQLite), the default backend.
 *
 * Schema (created if absent):
 *   audit_log(seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL)
 *   audit_checkpoint(id INTEGER PRIMARY KEY, body TEXT NOT NULL, signature TEXT)
 * Invariants:
 *  - journal_mode=WAL and synchronous=FULL on every connection: a transaction that returned
 *    from COMMIT is on disk, so a crash (kill -9, power loss) loses no committed record and
 *    leaves the log as of the last commit.
 *  - Appends run in BEGIN IMMEDIATE: the write lock is taken before the head is read, so
 *    concurrent appenders (threads with their own connection, other processes) queue on the
 *    lock (busy timeout) and each sees the previous one's record. Reads use one deferred
 *    transaction, i.e. one WAL snapshot.
 * Thread-safety: one connection per backend, opened SQLITE_OPEN_NOMUTEX; the caller
 * (slm_audit) serialises calls on one backend.
 * Non-goals: migrations, vacuuming, sharing a connection across processes.
 */
#include "audit/audit_int.h"

#include <string.h>

#include <sqlite3.h>

#include "core/core.h"

/* How long an appender waits for the write lock before failing. Every append holds it for
 * one fsync'ed commit (milliseconds); a minute covers many queued writers on a slow disk. */
#define SQLITE_BUSY_MS 60000

/* Switching a file to WAL takes an exclusive lock. A connection that read the header before
 * another process switched the file still sees rollback mode, and its own switch can then
 * wait for every WAL connection to close: seen once in CI, four processes opening a new log
 * under load, one failing after the whole busy timeout with "database is locked". So the
 * switch waits briefly, and on SQLITE_BUSY the connection is reopened (a new connection
 * reads the header afresh and finds WAL), up to a few times. */
#define SQLITE_WAL_SWITCH_MS 2000
#define SQLITE_WAL_ATTEMPTS 5

struct audit_backend {
    sqlite3 *db; /* owned connection */
};

static slm_status db_err(audit_backend *be, char *err, const char *what) {
    return slm_errf(err, SLM_ERR_DB, "sqlite: %s: %s", what, sqlite3_errmsg(be->db));
}

static slm_status exec(audit_backend *be, const char *sql, char *err) {
    if (sqlite3_exec(be->db, sql, NULL, NULL, NULL) != SQLITE_OK) return db_err(be, err, sql);
    return SLM_OK;
}

/* ---- open / close -------------------------------------------------------------------------------- */

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS audit_log("
    "seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_checkpoint("
    "id INTEGER PRIMARY KEY, body TEXT NOT NULL, signature TEXT);";

static void sqlite_close(audit_backend *be) {
    if (!be) return;
    sqlite3_close(be->db);
    slm_free(be);
}

/* ---- writes ------------------------------------------------------------------------------------------ */

/* Read the head (0 and zeros for an empty log) inside the current transaction. */
static slm_status read_head(audit_backend *be, uint64_t *seq, char hash[SLM_AUDIT_HASH_HEX],
                            char *err) {
    sqlite3_stmt *st = NULL;
    slm_status rc = SLM_OK;
    *seq = 0;
    memset(hash, '0', SLM_AUDIT_HASH_HEX - 1);
    hash[SLM_AUDIT_HASH_HEX - 1] = '\0';
    if (sqlite3_prepare_v2(be->db, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_err(be, err, "head");
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        sqlite3_int64 s = sqlite3_column_int64(st, 0);
        const unsigned char *h = sqlite3_column_text(st, 1);
        if (s < 1 || !h || strlen((const char *)h) != SLM_AUDIT_HASH_HEX - 1)
            rc = slm_errf(err, SLM_ERR_TAMPERED, "head record %lld is malformed; run verify",
                          (long long)s);
        else {
            *seq = (uint64_t)s;
            memcpy(hash, h, SLM_AUDIT_HASH_HEX);
        }
    } else if (step != SQLITE_DONE) {
        rc = db_err(be, err, "head");
    }
    sqlite3_finalize(st);
    return rc;
}

/* One write transaction: lock, read head, then n times seal and insert, commit. record:
 * rows go to audit_log with seq = head + 1, head + 2, ...; else one checkpoint row. */
static slm_status locked_insert(audit_backend *be, bool record, size_t n, audit_seal_fn seal,
                                void *ctx, uint64_t *seq_out, char *err) {
    char head_hash[SLM_AUDIT_HASH_HEX], tag[SLM_AUDIT_TAG_LEN] = "";
    uint64_t head_seq = 0, first;
    char *body = NULL;
    sqlite3_stmt *ins = NULL;
    slm_status st = exec(be, "BEGIN IMMEDIATE", err);
    if (st != SLM_OK) return st;
    st = read_head(be, &head_seq, head_hash, err);
    if (st != SLM_OK) goto fail;
    first = head_seq + 1;
    const char *sql = record ? "INSERT INTO audit_log(seq, body, hash) VALUES(?1, ?2, ?3)"
                             : "INSERT INTO audit_checkpoint(body, signature) VALUES(?2, ?3)";
    if (sqlite3_prepare_v2(be->db, sql, -1, &ins, NULL) != SQLITE_OK) {
        st = db_err(be, err, "insert");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        st = seal(ctx, i, head_seq, head_hash, &body, tag, err);
        if (st != SLM_OK) goto fail;
        sqlite3_reset(ins);
        if (record) sqlite3_bind_int64(ins, 1, (sqlite3_int64)(head_seq + 1));
        sqlite3_bind_text(ins, 2, body, -1, SQLITE_STATIC);
        if (*tag) sqlite3_bind_text(ins, 3, tag, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ins, 3);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            st = db_err(be, err, "insert");
            goto fail;
        }
        slm_free(body);
        body = NULL;
        if (record) {
            head_seq++;
            memcpy(head_hash, tag, SLM_AUDIT_HASH_HEX);
        }
    }
    sqlite3_finalize(ins);
    ins = NULL;
    st = exec(be, "COMMIT", err);
    if (st != SLM_OK) goto fail;
    if (seq_out) *seq_out = record ? first : head_seq;
    return SLM_OK;
fail:
    sqlite3_finalize(ins);
    sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL); /* keep the first error's detail */
    slm_free(body);
    return st;
}

static slm_status sqlite_append(audit_backend *be, size_t n, audit_seal_fn seal, void *ctx,
                                uint64_t *seq, char *err) {
    return locked_insert(be, true, n, seal, ctx, seq, err);
}

static slm_status sqlite_checkpoint(audit_backend *be, audit_seal_fn seal, void *ctx, char *err) {
    return locked_insert(be, false, 1, seal, ctx, NULL, err);
}

/* ---- reads ------------------------------------------------------------------------------------------- */

/* Run sql (3 columns: key, body, tag) in one read transaction, calling fn per row. */
static slm_status each_row(audit_backend *be, const char *sql, audit_row_fn fn, void *ctx,
                           char *err) {
    sqlite3_stmt *q = NULL;
    slm_status st = exec(be, "BEGIN", err);
    if (st != SLM_OK) return st;
    if (sqlite3_prepare_v2(be->db, sql, -1, &q, NULL) != SQLITE_OK) {
        st = db_err(be, err, "select");
        goto done;
    }
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 key = sqlite3_column_int64(q, 0);
        const char *body = (const char *)sqlite3_column_text(q, 1);
        const char *tag = (const char *)sqlite3_column_text(q, 2);
        st = fn(ctx, key < 0 ? 0 : (uint64_t)key, body ? body : "", tag, err);
        if (st != SLM_OK) goto done;
    }
    if (step != SQLITE_DONE) st = db_err(be, err, "select");
done:
    sqlite3_finalize(q);
    sqlite3_exec(be->db, "COMMIT", NULL, NULL, NULL); /* read-only: nothing to lose */
    return st;
}

static slm_status sqlite_records(audit_backend *be, audit_row_fn fn, void *ctx, char *err) {
    return each_row(be, "SELECT seq, body, hash FROM audit_log ORDER BY seq", fn, ctx, err);
}

static slm_status sqlite_checkpoints(audit_backend *be, audit_row_fn fn, void *ctx, char *err) {
    return each_row(be, "SELECT id, body, signature FROM audit_checkpoint ORDER BY id", fn, ctx,
                    err);
}

static const audit_backend_ops sqlite_ops = {
    .append = sqlite_append,
    .checkpoint = sqlite_checkpoint,
    .records = sqlite_records,
    .checkpoints = sqlite_checkpoints,
    .close = sqlite_close,
};

slm_status slm_audit_sqlite_open(const char *path, audit_backend **out,
                                 const audit_backend_ops **ops, char *err) {
    *out = NULL;
    audit_backend *be = slm_calloc(1, sizeof *be);
    if (!be) return slm_errf(err, SLM_ERR_NOMEM, "sqlite: no memory");
    slm_status st = SLM_OK;
    for (int attempt = 1;; attempt++) {
        int rc = sqlite3_open_v2(path, &be->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK) {
            st = be->db ? db_err(be, err, path) : slm_errf(err, SLM_ERR_NOMEM, "sqlite: no memory");
            goto fail;
        }
        sqlite3_busy_timeout(be->db, SQLITE_WAL_SWITCH_MS);
        rc = sqlite3_exec(be->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK) break;
        if ((rc & 0xff) != SQLITE_BUSY || attempt == SQLITE_WAL_ATTEMPTS) {
            st = db_err(be, err, "PRAGMA journal_mode=WAL");
            goto fail;
        }
        sqlite3_close(be->db); /* stale view of the file: start afresh */
        be->db = NULL;
    }
    sqlite3_busy_timeout(be->db, SQLITE_BUSY_MS);
    st = exec(be, "PRAGMA synchronous=FULL", err);
    if (st == SLM_OK) st = exec(be, schema_sql, err);
    if (st != SLM_OK) goto fail;
    *out = be;
    *ops = &sqlite_ops;
    return SLM_OK;
fail:
    sqlite_close(be);
    return st;
}
