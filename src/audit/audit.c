/*
 * audit/audit.c: the audit log handle: open a backend, append sealed records, write
 * checkpoints, verify the chain and the checkpoints, export.
 *
 * Invariants:
 *  - A record's hash is computed inside the backend's append transaction, from the head it
 *    read under the log's write lock (audit_int.h); nothing here caches the head.
 *  - Verify is read-only and recomputes everything from stored bytes: sequence contiguity
 *    (1, 2, 3, ...), SHA-256 of each body against its stored hash, the body's own seq and
 *    prev against the position and the previous record's hash, canonical form, and every
 *    checkpoint's head against the record at its count. The first problem found in seq order
 *    is reported; checkpoint problems are reported when the records themselves are intact.
 *  - Group commit: threads appending through one handle queue their records; whichever
 *    finds the connection free commits everything queued (up to AUDIT_MAX_BATCH) in one
 *    transaction, then wakes the others with their results. A batch is all-or-nothing; when
 *    it fails, its records are retried one per transaction so each caller gets its own
 *    status. Each appender returns only after its own record is committed.
 * Thread-safety: a handle may be shared: one mutex guards the queue and the `busy` flag,
 * and only the thread that set `busy` uses the backend connection (which is
 * single-threaded); the mutex is not held during database work. Different handles work in
 * parallel and the database orders their appends.
 * Non-goals: caching the head, asynchronous (fire-and-forget) appends.
 */
#include "audit/audit_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* Records per group-commit transaction: amortises the commit's fsync over many records
 * while bounding how long one transaction holds the log's write lock. */
#define AUDIT_MAX_BATCH 64

/* One appender waiting for its record to be committed (lives on the appender's stack). */
typedef struct audit_waiter {
    json_t *rec;                   /* borrowed: the validated record */
    struct audit_waiter *next;     /* queue link */
    bool done;                     /* the result below is final (written under log->lock) */
    slm_status st;                 /* result */
    uint64_t seq;                  /* its seq, when committed (0 if not) */
    char hash[SLM_AUDIT_HASH_HEX]; /* its hash, when committed */
    char err[SLM_ERR_LEN];         /* detail when st != SLM_OK */
} audit_waiter;

struct slm_audit {
    pthread_mutex_t lock;         /* guards busy and the queue */
    pthread_cond_t cv;            /* broadcast when busy clears */
    bool busy;                    /* a thread is using the connection */
    audit_waiter *head, *tail;    /* records waiting for a commit, oldest first */
    audit_backend *be;            /* owned connection; used only by the thread that set busy */
    const audit_backend_ops *ops; /* its functions */
    slm_audit_options opt;        /* copied; opt.sign_key is borrowed */
};

static const char genesis_hash[SLM_AUDIT_HASH_HEX] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- open / close ---------------------------------------------------------------------------------- */

bool slm_audit_is_pg(const char *db) {
    return !strncmp(db, "postgresql://", 13) || !strncmp(db, "postgres://", 11);
}

slm_status slm_audit_open(const char *db, const slm_audit_options *opt, slm_audit **out, char *err) {
    *out = NULL;
    if (!db || !*db) return slm_errf(err, SLM_ERR_INVALID_ARG, "audit: no database given");
    slm_audit *log = slm_calloc(1, sizeof *log);
    if (!log) return slm_errf(err, SLM_ERR_NOMEM, "audit: no memory");
    if (opt) log->opt = *opt;
    slm_status st = slm_audit_is_pg(db) ? slm_audit_pg_open(db, &log->be, &log->ops, err)
                                        : slm_audit_sqlite_open(db, &log->be, &log->ops, err);
    if (st != SLM_OK) {
        slm_free(log);
        return st;
    }
    if (pthread_mutex_init(&log->lock, NULL) != 0) {
        log->ops->close(log->be);
        slm_free(log);
        return slm_errf(err, SLM_ERR_INTERNAL, "audit: mutex init failed");
    }
    if (pthread_cond_init(&log->cv, NULL) != 0) {
        pthread_mutex_destroy(&log->lock);
        log->ops->close(log->be);
        slm_free(log);
        return slm_errf(err, SLM_ERR_INTERNAL, "audit: condition variable init failed");
    }
    *out = log;
    return SLM_OK;
}

void slm_audit_close(slm_audit *log) {
    if (!log) return;
    log->ops->close(log->be);
    pthread_cond_destroy(&log->cv);
    pthread_mutex_destroy(&log->lock);
    slm_free(log);
}

/* Take / give back exclusive use of the connection (for everything but appends, which
 * take it in append_record). */
static void conn_acquire(slm_audit *log) {
    pthread_mutex_lock(&log->lock);
    while (log->busy) pthread_cond_wait(&log->cv, &log->lock);
    log->busy = true;
    pthread_mutex_unlock(&log->lock);
}

static void conn_release(slm_audit *log) {
    pthread_mutex_lock(&log->lock);
    log->busy = false;
    pthread_cond_broadcast(&log->cv);
    pthread_mutex_unlock(&log->lock);
}

/* ---- checkpoints ------------------------------------------------------------------------------------ */

typedef struct {
    const slm_audit_key *key; /* borrowed: signs when not NULL */
    uint64_t count;           /* out: record count the checkpoint covers */
} cp_ctx;

/* Seal a checkpoint: {"count":N,"head":H,"time":T} canonical, signed when there is a key. */
static slm_status seal_checkpoint(void *ctx, size_t i, uint64_t head_seq, const char *head_hash,
                                  char **body, char tag[SLM_AUDIT_TAG_LEN], char *err) {
    cp_ctx *cc = ctx;
    (void)i; /* always one checkpoint per transaction */
    char now[SLM_AUDIT_MAX_TIME + 1];
    slm_audit_now(now);
    json_t *cp = json_pack("{s:I,s:s,s:s}", "count", (json_int_t)head_seq, "head", head_hash,
                           "time", now);
    if (!cp) return slm_errf(err, SLM_ERR_NOMEM, "checkpoint: no memory");
    slm_status st = slm_audit_canonical(cp, body, err);
    json_decref(cp);
    tag[0] = '\0';
    if (st == SLM_OK && cc->key) st = slm_audit_sign(cc->key, *body, strlen(*body), tag, err);
    if (st != SLM_OK) {
        slm_free(*body);
        *body = NULL;
    }
    cc->count = head_seq;
    return st;
}

/* Caller owns the connection (busy). */
static slm_status checkpoint_locked(slm_audit *log, uint64_t *count, char *err) {
    cp_ctx cc = {.key = log->opt.sign_key};
    slm_status st = log->ops->checkpoint(log->be, seal_checkpoint, &cc, err);
    if (st == SLM_OK && count) *count = cc.count;
    return st;
}

/* ---- append ------------------------------------------------------------------------------------------- */

static slm_status seal_batch(void *ctx, size_t i, uint64_t head_seq, const char *head_hash,
                             char **body, char tag[SLM_AUDIT_TAG_LEN], char *err) {
    audit_waiter *w = ((audit_waiter **)ctx)[i];
    slm_status st = slm_audit_record_seal(w->rec, head_seq + 1, head_hash, body, w->hash, err);
    if (st == SLM_OK) memcpy(tag, w->hash, SLM_AUDIT_HASH_HEX);
    return st;
}

/* Commit batch[0..n) in one transaction (caller owns the connection, not the mutex) and
 * write each waiter's result; on failure of a batch of several, retry them one by one. */
static void commit_batch(slm_audit *log, audit_waiter **batch, size_t n) {
    char err[SLM_ERR_LEN];
    uint64_t first = 0;
    slm_status st = log->ops->append(log->be, n, seal_batch, batch, &first, err);
    if (st != SLM_OK && n > 1) {
        for (size_t i = 0; i < n; i++) commit_batch(log, &batch[i], 1);
        return;
    }
    if (st != SLM_OK) {
        batch[0]->st = st;
        memcpy(batch[0]->err, err, sizeof err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        batch[i]->st = SLM_OK;
        batch[i]->seq = first + i;
    }
    uint64_t every = log->opt.checkpoint_every, last = first + n - 1;
    if (every && last / every > (first - 1) / every) {
        /* A multiple of `every` was committed: checkpoint the head (now `last`). */
        st = checkpoint_locked(log, NULL, err);
        if (st != SLM_OK) {
            audit_waiter *w = batch[n - 1];
            w->st = st;
            snprintf(w->err, sizeof w->err, "record %llu committed, but the checkpoint failed: %.180s",
                     (unsigned long long)w->seq, err);
        }
    }
}

/* Queue a validated record and return once it is committed (consumes rec). */
static slm_status append_record(slm_audit *log, json_t *rec, uint64_t *seq, char *hash, char *err) {
    audit_waiter w = {.rec = rec};
    pthread_mutex_lock(&log->lock);
    if (log->tail) log->tail->next = &w;
    else log->head = &w;
    log->tail = &w;
    while (!w.done) {
        if (log->busy) {
            pthread_cond_wait(&log->cv, &log->lock);
            continue;
        }
        /* Lead: take what is queued, commit it without the mutex, publish the results. */
        audit_waiter *batch[AUDIT_MAX_BATCH];
        size_t n = 0;
        log->busy = true;
        while (log->head && n < AUDIT_MAX_BATCH) {
            batch[n++] = log->head;
            log->head = log->head->next;
        }
        if (!log->head) log->tail = NULL;
        pthread_mutex_unlock(&log->lock);
        commit_batch(log, batch, n);
        pthread_mutex_lock(&log->lock);
        for (size_t i = 0; i < n; i++) batch[i]->done = true;
        log->busy = false;
        pthread_cond_broadcast(&log->cv);
    }
    pthread_mutex_unlock(&log->lock);
    json_decref(rec);
    if (w.st != SLM_OK) slm_errf(err, w.st, "%s", w.err);
    if (w.seq && seq) *seq = w.seq;
    if (w.seq && hash) memcpy(hash, w.hash, SLM_AUDIT_HASH_HEX);
    return w.st;
}

slm_status slm_audit_append(slm_audit *log, const slm_audit_record *rec, uint64_t *seq, char *hash,
                            char *err) {
    json_t *obj;
    if (!log) return slm_errf(err, SLM_ERR_INVALID_ARG, "audit: NULL log");
    slm_status st = slm_audit_record_from_struct(rec, &obj, err);
    if (st != SLM_OK) return st;
    return append_record(log, obj, seq, hash, err);
}

slm_status slm_audit_append_json(slm_audit *log, const char *json, size_t len, uint64_t *seq,
                                 char *hash, char *err) {
    json_t *obj;
    if (!log) return slm_errf(err, SLM_ERR_INVALID_ARG, "audit: NULL log");
    slm_status st = slm_audit_record_from_json(json, len, &obj, err);
    if (st != SLM_OK) return st;
    return append_record(log, obj, seq, hash, err);
}

slm_status slm_audit_checkpoint(slm_audit *log, uint64_t *count, char *err) {
    if (!log) return slm_errf(err, SLM_ERR_INVALID_ARG, "audit: NULL log");
    conn_acquire(log);
    slm_status st = checkpoint_locked(log, count, err);
    conn_release(log);
    return st;
}

/* ---- verify: checkpoints --------------------------------------------------------------------------- */

typedef struct {
    uint64_t id;                   /* checkpoint row id */
    uint64_t count;                /* records it covers */
    char head[SLM_AUDIT_HASH_HEX]; /* hash of record `count` (zeros when 0) */
} cp_entry;

typedef struct {
    const slm_audit_key *pub; /* borrowed: signatures required when set */
    cp_entry *cps;            /* owned: good checkpoints in id order (count non-decreasing) */
    size_t n, cap;            /* used / allocated entries */
    uint64_t signatures;      /* good checkpoints whose signature verified */
    uint64_t bad_id;          /* first bad checkpoint, 0 if none */
    char what[SLM_ERR_LEN];   /* what is wrong with it */
} cp_load;

static slm_status cp_row(void *ctx, uint64_t id, const char *body, const char *sig, char *err) {
    cp_load *cl = ctx;
    cp_entry e = {.id = id};
    char detail[SLM_ERR_LEN];
    slm_status st = slm_audit_checkpoint_parse(body, &e.count, e.head, detail);
    if (st == SLM_OK && e.count == 0 && strcmp(e.head, genesis_hash) != 0)
        st = slm_errf(detail, SLM_ERR_TAMPERED, "empty-log checkpoint with a non-zero head");
    if (st == SLM_OK && cl->n && e.count < cl->cps[cl->n - 1].count)
        st = slm_errf(detail, SLM_ERR_TAMPERED, "covers fewer records than the checkpoint before it");
    if (st == SLM_OK && cl->pub) st = slm_audit_sig_check(cl->pub, body, strlen(body), sig, detail);
    if (st == SLM_ERR_TAMPERED) {
        if (!cl->bad_id) {
            cl->bad_id = id ? id : 1;
            snprintf(cl->what, sizeof cl->what, "checkpoint %llu: %.200s", (unsigned long long)id, detail);
        }
        return SLM_OK; /* keep loading; records are checked first */
    }
    if (st != SLM_OK) return slm_errf(err, st, "%s", detail);
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? 2 * cl->cap : 16, bytes;
        if (cap > SLM_AUDIT_MAX_CHECKPOINTS)
            return slm_errf(err, SLM_ERR_LIMIT, "more than %u checkpoints", SLM_AUDIT_MAX_CHECKPOINTS);
        if (!slm_mul_size(cap, sizeof *cl->cps, &bytes))
            return slm_errf(err, SLM_ERR_LIMIT, "checkpoints: size overflow");
        cp_entry *grown = slm_realloc(cl->cps, bytes);
        if (!grown) return slm_errf(err, SLM_ERR_NOMEM, "checkpoints: no memory");
        cl->cps = grown;
        cl->cap = cap;
    }
    cl->cps[cl->n++] = e;
    if (cl->pub) cl->signatures++;
    return SLM_OK;
}

/* ---- verify: records ------------------------------------------------------------------------------------ */

typedef struct {
    slm_audit_report *rep;          /* out: progress and the first problem */
    uint64_t expected;              /* seq the next row must have */
    char prev[SLM_AUDIT_HASH_HEX];  /* hash of the previous record (genesis: zeros) */
    const cp_entry *cps;            /* borrowed: good checkpoints, count non-decreasing */
    size_t ncp, ci;                 /* count / next to match */
} rec_walk;

/* Record the first bad record in the report and the detail; returns SLM_ERR_TAMPERED. */
static slm_status bad_record(rec_walk *w, uint64_t cp_id, const char *what, char *err) {
    w->rep->bad_seq = w->expected;
    w->rep->bad_checkpoint = cp_id;
    snprintf(w->rep->what, sizeof w->rep->what, "record %llu: %.200s", (unsigned long long)w->expected,
             what);
    return slm_errf(err, SLM_ERR_TAMPERED, "%s", w->rep->what);
}

static slm_status rec_row(void *ctx, uint64_t seq, const char *body, const char *hash, char *err) {
    rec_walk *w = ctx;
    char detail[SLM_ERR_LEN], actual[SLM_AUDIT_HASH_HEX];
    if (seq != w->expected) {
        if (seq > w->expected)
            snprintf(detail, sizeof detail, "missing (the next stored record is %llu)",
                     (unsigned long long)seq);
        else
            snprintf(detail, sizeof detail, "unexpected stored seq %llu", (unsigned long long)seq);
        return bad_record(w, 0, detail, err);
    }
    slm_status st = slm_audit_sha256_hex(body, strlen(body), actual, err);
    if (st != SLM_OK) return st;
    if (!hash || strcmp(actual, hash) != 0)
        return bad_record(w, 0, "stored hash does not match the body (record or hash edited)", err);
    st = slm_audit_record_check(body, seq, w->prev, detail);
    if (st == SLM_ERR_TAMPERED) return bad_record(w, 0, detail, err);
    if (st != SLM_OK) return slm_errf(err, st, "%s", detail);
    for (; w->ci < w->ncp && w->cps[w->ci].count == seq; w->ci++)
        if (strcmp(w->cps[w->ci].head, hash) != 0) {
            snprintf(detail, sizeof detail, "hash differs from checkpoint %llu's head (chain rewritten)",
                     (unsigned long long)w->cps[w->ci].id);
            return bad_record(w, w->cps[w->ci].id, detail, err);
        }
    memcpy(w->prev, hash, SLM_AUDIT_HASH_HEX);
    memcpy(w->rep->head, hash, SLM_AUDIT_HASH_HEX);
    w->rep->records++;
    w->expected++;
    return SLM_OK;
}

slm_status slm_audit_verify(slm_audit *log, const slm_audit_key *pub, slm_audit_report *rep,
                            char *err) {
    if (!log || !rep) return slm_errf(err, SLM_ERR_INVALID_ARG, "verify: NULL argument");
    memset(rep, 0, sizeof *rep);
    memcpy(rep->head, genesis_hash, SLM_AUDIT_HASH_HEX);
    cp_load cl = {.pub = pub};
    rec_walk w = {.rep = rep, .expected = 1};
    memcpy(w.prev, genesis_hash, SLM_AUDIT_HASH_HEX);
    conn_acquire(log);
    slm_status st = log->ops->checkpoints(log->be, cp_row, &cl, err);
    if (st != SLM_OK) goto done;
    w.cps = cl.cps;
    w.ncp = cl.n;
    while (w.ci < w.ncp && w.cps[w.ci].count == 0) w.ci++; /* checked against genesis at load */
    st = log->ops->records(log->be, rec_row, &w, err);
    if (st != SLM_OK) goto done;
    if (w.ci < w.ncp) {
        const cp_entry *c = &w.cps[w.ci];
        rep->bad_seq = rep->records + 1;
        rep->bad_checkpoint = c->id;
        snprintf(rep->what, sizeof rep->what,
                 "checkpoint %llu covers %llu records but the log ends at %llu (records removed "
                 "from the end)",
                 (unsigned long long)c->id, (unsigned long long)c->count,
                 (unsigned long long)rep->records);
        st = slm_errf(err, SLM_ERR_TAMPERED, "%s", rep->what);
        goto done;
    }
    if (cl.bad_id) {
        rep->bad_checkpoint = cl.bad_id;
        snprintf(rep->what, sizeof rep->what, "%s", cl.what);
        st = slm_errf(err, SLM_ERR_TAMPERED, "%s", rep->what);
        goto done;
    }
    rep->checkpoints = cl.n;
    rep->signatures = cl.signatures;
done:
    conn_release(log);
    slm_free(cl.cps);
    return st;
}

/* ---- export ------------------------------------------------------------------------------------------------- */

typedef struct {
    slm_audit_line_fn fn; /* the caller's line sink */
    void *ctx;            /* its context */
} export_ctx;

/* Emit v canonically (consumes v). */
static slm_status emit(export_ctx *ec, json_t *v, char *err) {
    char *line = NULL;
    if (!v) return slm_errf(err, SLM_ERR_NOMEM, "export: no memory");
    slm_status st = slm_audit_canonical(v, &line, err);
    json_decref(v);
    if (st == SLM_OK) {
        st = ec->fn(ec->ctx, line, strlen(line));
        if (st != SLM_OK) slm_errf(err, st, "export: output failed");
    }
    slm_free(line);
    return st;
}

static slm_status export_record(void *ctx, uint64_t seq, const char *body, const char *hash,
                                char *err) {
    json_t *obj = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return slm_errf(err, SLM_ERR_CORRUPT, "record %llu: body is not a JSON object (run verify)",
                        (unsigned long long)seq);
    }
    if (json_object_set_new(obj, "hash", hash ? json_string(hash) : json_null()) != 0) {
        json_decref(obj);
        return slm_errf(err, SLM_ERR_NOMEM, "export: no memory");
    }
    return emit(ctx, obj, err);
}

static slm_status export_checkpoint(void *ctx, uint64_t id, const char *body, const char *sig,
                                    char *err) {
    return emit(ctx, json_pack("{s:I,s:s,s:s?}", "id", (json_int_t)id, "body", body, "signature", sig),
                err);
}

slm_status slm_audit_export(slm_audit *log, bool checkpoints, slm_audit_line_fn fn, void *ctx,
                            char *err) {
    if (!log || !fn) return slm_errf(err, SLM_ERR_INVALID_ARG, "export: NULL argument");
    export_ctx ec = {.fn = fn, .ctx = ctx};
    conn_acquire(log);
    slm_status st = checkpoints ? log->ops->checkpoints(log->be, export_checkpoint, &ec, err)
                                : log->ops->records(log->be, export_record, &ec, err);
    conn_release(log);
    return st;
}
