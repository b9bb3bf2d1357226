/*
 * slmesh/audit.h: the append-only, hash-chained audit log of what was asked and answered.
 *
 * One record per request: request id, time, task, model and tier, route decision and reason,
 * confidence, tokens, latency, cost, policy outcomes, and the redacted prompt and answer.
 * The caller passes redacted text only; the redaction vault never reaches this module.
 *
 * Invariants (docs/governance.md, "Audit log", defines the bytes exactly):
 *  - Records are numbered seq = 1, 2, 3, ... without gaps. Each stored record is its
 *    canonical JSON body (sorted keys, no whitespace) which includes its own "seq" and the
 *    previous record's hash as "prev"; its hash is SHA-256 of those bytes. Record 1's prev
 *    is 64 zeros. Appends are serialised by the database (SQLite: BEGIN IMMEDIATE;
 *    PostgreSQL: a transaction-scoped advisory lock), so any number of threads, processes
 *    or replicas can append to one log without breaking the chain.
 *  - A checkpoint records (record count, head hash, time), optionally signed with Ed25519.
 *    Checkpoints detect what a chain alone cannot: records cut off the end of the log.
 *  - slm_audit_verify recomputes everything and names the first bad record.
 * Thread-safety: an slm_audit handle may be shared by threads: their appends are group-
 * committed (records queued while a transaction runs go together in the next one, each
 * caller still returning only once its own record is durable); separate handles on one
 * database are safe too. Keys are immutable after load and may be shared.
 * Non-goals: encryption at rest, retention/deletion policies, querying by field.
 */
#ifndef SLMESH_AUDIT_H
#define SLMESH_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A SHA-256 hash as lowercase hex plus the NUL. */
#define SLM_AUDIT_HASH_HEX 65

/* Largest input record (one JSON line), in bytes: room for a prompt and an answer at their
 * limit (256 KiB each) plus every other field, escaped. */
#define SLM_AUDIT_MAX_RECORD (1u << 20)

typedef struct slm_audit slm_audit;         /* an open log (one database connection) */
typedef struct slm_audit_key slm_audit_key; /* an Ed25519 private or public key */

/* ---- keys (Ed25519, PEM files) ---------------------------------------------------------- */

/* Make a new key pair: the private key goes to priv_path (PKCS#8 PEM, mode 0600, must not
 * exist yet), the public key to pub_path (SubjectPublicKeyInfo PEM). Paths are borrowed. */
slm_status slm_audit_keygen(const char *priv_path, const char *pub_path, char *err);

/* Load a PEM key file; private = true for a private key (can sign and verify), false for a
 * public key (verify only). *out is owned by the caller: free with slm_audit_key_free. */
slm_status slm_audit_key_load(const char *path, bool private_key, slm_audit_key **out, char *err);
void slm_audit_key_free(slm_audit_key *key);

/* ---- open / close ----------------------------------------------------------------------- */

typedef struct slm_audit_options {
    uint64_t checkpoint_every;     /* when a commit includes a record whose seq is a multiple
                                      of this, checkpoint the head right after it; 0 = only
                                      explicit slm_audit_checkpoint */
    const slm_audit_key *sign_key; /* private key that signs checkpoints, or NULL (unsigned);
                                      borrowed: must outlive the handle */
} slm_audit_options;

/* Open (creating the tables if needed) the log in db: a SQLite file path, or a
 * "postgresql://" / "postgres://" connection URI. opt may be NULL (defaults: zeroes); it is
 * copied. *out is owned by the caller: close with slm_audit_close (NULL is fine). */
slm_status slm_audit_open(const char *db, const slm_audit_options *opt, slm_audit **out, char *err);
void slm_audit_close(slm_audit *log);

/* ---- append ----------------------------------------------------------------------------- */

typedef struct slm_audit_policy {
    const char *rule;    /* policy or rule name, e.g. "pii.email" */
    const char *outcome; /* what it did, e.g. "redacted", "pass", "blocked" */
} slm_audit_policy;

/* One request, as the server sees it. All pointers are borrowed for the call only. */
typedef struct slm_audit_record {
    const char *request_id;         /* required */
    const char *time;               /* RFC 3339 UTC ("2026-01-02T03:04:05.678Z"); NULL = now */
    const char *task;               /* required: classify, extract, draft, chat, ... */
    const char *model;              /* required: model name */
    const char *tier;               /* required: "local", a remote tier's name, ... */
    const char *route;              /* required: the route decision */
    const char *reason;             /* required: why (may be "") */
    bool has_confidence;            /* false: confidence is recorded as null */
    double confidence;              /* in [0, 1] */
    uint64_t tokens_in, tokens_out; /* prompt and completion tokens */
    double latency_ms;              /* >= 0, wall time of the request */
    double cost;                    /* >= 0, in the deployment's currency unit */
    const slm_audit_policy *policy; /* n_policy outcomes (rule names unique), may be NULL */
    size_t n_policy;
    const char *prompt;             /* redacted prompt text; NULL = "" */
    const char *answer;             /* redacted answer text; NULL = "" */
} slm_audit_record;

/* Append one record; on success *seq (may be NULL) is its number and hash (may be NULL,
 * else SLM_AUDIT_HASH_HEX bytes) its hash. Committed durably before returning. If the
 * record committed but the periodic checkpoint after it failed, the checkpoint's status is
 * returned and *seq / hash are still set (left untouched whenever nothing committed). */
slm_status slm_audit_append(slm_audit *log, const slm_audit_record *rec, uint64_t *seq, char *hash,
                            char *err);

/* The same from a JSON object (json: len bytes, borrowed), the form `slmesh audit append`
 * reads: the fields of slm_audit_record by the same names, "policy" as an object of
 * rule -> outcome strings, "confidence" a number or null. Unknown fields are rejected. */
slm_status slm_audit_append_json(slm_audit *log, const char *json, size_t len, uint64_t *seq,
                                 char *hash, char *err);

/* ---- checkpoints, verification, export ------------------------------------------------- */

/* Record a checkpoint of the current head (count, head hash, now), signed with the handle's
 * sign_key when it has one. *count (may be NULL) is the record count it covers. */
slm_status slm_audit_checkpoint(slm_audit *log, uint64_t *count, char *err);

typedef struct slm_audit_report {
    uint64_t records;                 /* records read and found good */
    uint64_t checkpoints;             /* checkpoints found good */
    uint64_t signatures;              /* of which with a verified signature */
    char head[SLM_AUDIT_HASH_HEX];    /* hash of the last good record (zeros if none) */
    uint64_t bad_seq;                 /* first bad record's seq, 0 if none / not a record */
    uint64_t bad_checkpoint;          /* first bad checkpoint's id, 0 if none */
    char what[SLM_ERR_LEN];           /* what is wrong, "" if nothing */
} slm_audit_report;

/* Check the whole log: sequence contiguity, every hash and link, canonical bodies, and every
 * checkpoint against the chain. With pub (borrowed, may be NULL) every checkpoint must carry
 * a valid signature by that key. Returns SLM_OK when intact, SLM_ERR_TAMPERED when not (rep
 * says where and what), another status when the log could not be read. rep is required. */
slm_status slm_audit_verify(slm_audit *log, const slm_audit_key *pub, slm_audit_report *rep,
                            char *err);

/* Receives one line (no newline; borrowed for the call). Non-OK stops the export. */
typedef slm_status (*slm_audit_line_fn)(void *ctx, const char *line, size_t len);

/* Call fn for every record in seq order, as its canonical body with "hash" added (sorted
 * keys, compact); or, with checkpoints = true, for every checkpoint as
 * {"id":..,"body":..,"signature":..}. */
slm_status slm_audit_export(slm_audit *log, bool checkpoints, slm_audit_line_fn fn, void *ctx,
                            char *err);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_AUDIT_H */
