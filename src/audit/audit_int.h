/*
 * audit/audit_int.h: what the audit module's files share: the storage backend vtable, the
 * record model (validation, canonical bytes, hashing) and checkpoint signing.
 *
 * Invariants:
 *  - A backend stores rows; it knows nothing of JSON or hashes. Its append/checkpoint run
 *    one transaction that (1) serialises against every other appender of the same log, (2)
 *    reads the head (last seq and its hash), (3) calls the seal callback to make the row,
 *    (4) inserts it and commits. So the chain is computed under the database's lock.
 *  - Row callbacks see borrowed strings valid for the call only; a non-OK return stops the
 *    iteration and is returned unchanged by the backend (with the callback's err detail).
 * Thread-safety: a backend handle is used by one thread at a time (slm_audit locks).
 * Non-goals: a general database abstraction.
 */
#ifndef SLMESH_AUDIT_INT_H
#define SLMESH_AUDIT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "slmesh/audit.h"

/* ---- limits ------------------------------------------------------------------------------ */

/* Redacted prompt / answer: generous for small-model prompts, bounded so a log row stays
 * small enough to verify quickly and to fit one PostgreSQL/SQLite value comfortably. */
#define SLM_AUDIT_MAX_TEXT (256u * 1024u)
/* request_id, task, model, tier, route, policy rule and outcome names. */
#define SLM_AUDIT_MAX_NAME 128
/* Free-text route reason. */
#define SLM_AUDIT_MAX_REASON 1024
/* Policy outcomes per record: one per rule that ran; more is a misconfiguration. */
#define SLM_AUDIT_MAX_POLICY 64
/* Token counts: far beyond any context length, small enough for exact JSON integers. */
#define SLM_AUDIT_MAX_TOKENS 1000000000000LL
/* Records in one log: a million a day for two million years; below 2^53, so a seq stays
 * exact in any JSON reader that uses doubles. */
#define SLM_AUDIT_MAX_SEQ 1000000000000000LL
/* Checkpoints held in memory during verify (one per N records; a million is years). */
#define SLM_AUDIT_MAX_CHECKPOINTS (1u << 20)
/* Length of an RFC 3339 time we accept: "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ". */
#define SLM_AUDIT_MAX_TIME 30
/* Ed25519 signature: 64 bytes as hex plus NUL. */
#define SLM_AUDIT_SIG_HEX 129
/* Seal output tag: a record hash (65) or a checkpoint signature (129, "" if unsigned). */
#define SLM_AUDIT_TAG_LEN SLM_AUDIT_SIG_HEX

/* ---- storage backends -------------------------------------------------------------------- */

typedef struct audit_backend audit_backend; /* one connection; defined by each backend */

/* Make row i (0-based) of the transaction, given the head before it: head_seq (0 for an
 * empty log) and its hash (64 zeros for an empty log); for i > 0 that is row i - 1 just
 * made. On success *body is a NUL-terminated string owned by the caller (slm_free) and tag
 * holds the record hash, or for a checkpoint its signature or "". */
typedef slm_status (*audit_seal_fn)(void *ctx, size_t i, uint64_t head_seq, const char *head_hash,
                                    char **body, char tag[SLM_AUDIT_TAG_LEN], char *err);

/* One stored row: a record (key = seq, tag = hash) or a checkpoint (key = id, tag =
 * signature or NULL). Strings are borrowed for the call. */
typedef slm_status (*audit_row_fn)(void *ctx, uint64_t key, const char *body, const char *tag,
                                   char *err);

typedef struct audit_backend_ops {
    /* Append n >= 1 records (seal called for i = 0 .. n-1 in order) in one transaction
     * serialised against all appenders; *first_seq = the first one's seq. All or none. */
    slm_status (*append)(audit_backend *be, size_t n, audit_seal_fn seal, void *ctx,
                         uint64_t *first_seq, char *err);
    /* Insert a checkpoint made by seal from the head, in one such transaction. */
    slm_status (*checkpoint)(audit_backend *be, audit_seal_fn seal, void *ctx, char *err);
    /* Every record in seq order (a consistent snapshot). */
    slm_status (*records)(audit_backend *be, audit_row_fn fn, void *ctx, char *err);
    /* Every checkpoint in id order. */
    slm_status (*checkpoints)(audit_backend *be, audit_row_fn fn, void *ctx, char *err);
    void (*close)(audit_backend *be);
} audit_backend_ops;

/* Open a backend; *be is closed with (*ops)->close. db/conninfo borrowed. */
slm_status slm_audit_sqlite_open(const char *path, audit_backend **be,
                                 const audit_backend_ops **ops, char *err);
slm_status slm_audit_pg_open(const char *conninfo, audit_backend **be,
                             const audit_backend_ops **ops, char *err);

/* True when db names a PostgreSQL database (a postgresql:// or postgres:// URI). */
bool slm_audit_is_pg(const char *db);

/* ---- record model (audit_record.c) -------------------------------------------------------- */

/* Parse and validate an input record (JSON object, len bytes) into *out (caller owns, json
 * decref): every field checked against its type and limit, unknown fields and seq/prev
 * rejected, optional fields given their defaults (time = now). */
slm_status slm_audit_record_from_json(const char *json, size_t len, json_t **out, char *err);

/* The same from the C struct. */
slm_status slm_audit_record_from_struct(const slm_audit_record *rec, json_t **out, char *err);

/* Seal a validated record: add "seq" and "prev", write the canonical bytes into *body
 * (caller slm_frees) and their SHA-256 hex into hash. rec is modified (seq/prev set). */
slm_status slm_audit_record_seal(json_t *rec, uint64_t seq, const char *prev, char **body,
                                 char hash[SLM_AUDIT_HASH_HEX], char *err);

/* Check one stored body: parses, is canonical (re-serialising gives the same bytes), has
 * every field valid and nothing else, and its "seq" and "prev" equal the expected ones.
 * On failure the detail names what is wrong (SLM_ERR_TAMPERED). */
slm_status slm_audit_record_check(const char *body, uint64_t seq, const char *prev, char *err);

/* Parse a stored checkpoint body: exactly {"count":N,"head":H,"time":T} in canonical form.
 * SLM_ERR_TAMPERED with the detail when it is not. */
slm_status slm_audit_checkpoint_parse(const char *body, uint64_t *count,
                                      char head[SLM_AUDIT_HASH_HEX], char *err);

/* Canonical bytes of any JSON value (sorted keys, compact, 17 significant digits for
 * reals) into a NUL-terminated string the caller slm_frees. */
slm_status slm_audit_canonical(const json_t *v, char **out, char *err);

/* SHA-256 of len bytes as lowercase hex. */
slm_status slm_audit_sha256_hex(const void *data, size_t len, char hex[SLM_AUDIT_HASH_HEX],
                                char *err);

/* Current UTC time as RFC 3339 with milliseconds into buf (SLM_AUDIT_MAX_TIME + 1 bytes). */
void slm_audit_now(char buf[SLM_AUDIT_MAX_TIME + 1]);

/* ---- signing (audit_sign.c) ---------------------------------------------------------------- */

/* Sign msg with a private key: sig receives 128 hex digits. */
slm_status slm_audit_sign(const slm_audit_key *key, const void *msg, size_t len,
                          char sig[SLM_AUDIT_SIG_HEX], char *err);
/* SLM_OK when sig (hex) is a valid signature of msg by key; SLM_ERR_TAMPERED when not. */
slm_status slm_audit_sig_check(const slm_audit_key *key, const void *msg, size_t len,
                               const char *sig, char *err);

#endif /* SLMESH_AUDIT_INT_H */
