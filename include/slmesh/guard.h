/*
 * slmesh/guard.h: find personal data and secrets in text and redact them.
 *
 * A guard (slm_guard) holds the compiled pattern detectors (regular expressions plus
 * validators: Luhn, IBAN mod-97, SSN area rules, ...) and, optionally, the weights of a small
 * sequence tagger that finds people, addresses, organisations and places. Detection returns
 * findings (type, byte span, character span, score); redaction rewrites the text with one
 * operator per type. Reversible pseudonymisation records placeholder -> original in a
 * per-request vault (slm_vault) so that an answer can be restored for the user.
 *
 * Invariants:
 *  - Input is UTF-8; invalid UTF-8 is rejected with SLM_ERR_UTF8 (never a crash).
 *  - Findings are sorted by start, never overlap, and lie on character boundaries.
 *  - A vault never prints or logs its contents; slm_vault_destroy wipes it.
 * Thread-safety: a slm_guard is immutable after creation and may be shared by any number of
 *  threads. A slm_vault belongs to one request (one thread at a time).
 * Non-goals: a guarantee of catching every piece of personal data; languages other than
 *  the Latin, Greek and Cyrillic scripts for the tagger.
 */
#ifndef SLMESH_GUARD_H
#define SLMESH_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest input accepted by one detect/redact call (bytes): bounds time and memory per
 * request; far above any prompt a small model takes. */
#define SLM_GUARD_MAX_INPUT (16u << 20)
/* Most findings per call: beyond this the text is essentially all personal data and the
 * caller should block it rather than redact it (SLM_ERR_LIMIT). */
#define SLM_GUARD_MAX_FINDINGS 65536u

/* Types of personal data. Names match the Presidio entity names where one exists. */
typedef enum slm_pii_type {
    SLM_PII_PERSON = 0,
    SLM_PII_STREET_ADDRESS,
    SLM_PII_GPE,           /* places: cities, countries, regions */
    SLM_PII_ORGANIZATION,
    SLM_PII_TITLE,         /* honorifics and job titles */
    SLM_PII_NRP,           /* nationality, religion, political group */
    SLM_PII_DATE_TIME,
    SLM_PII_AGE,
    SLM_PII_ZIP_CODE,      /* postcodes */
    SLM_PII_EMAIL_ADDRESS,
    SLM_PII_PHONE_NUMBER,
    SLM_PII_CREDIT_CARD,
    SLM_PII_IBAN_CODE,
    SLM_PII_US_SSN,
    SLM_PII_US_DRIVER_LICENSE,
    SLM_PII_IP_ADDRESS,
    SLM_PII_URL,
    SLM_PII_DOMAIN_NAME,
    SLM_PII_SECRET,        /* API keys, tokens, private keys, passwords */
    SLM_PII_COUNT
} slm_pii_type;

/* Bit set of types: bit (1u << type). */
#define SLM_PII_ALL ((1u << SLM_PII_COUNT) - 1u)

/* "PERSON", "CREDIT_CARD", ...; static; "?" for an out-of-range value. */
const char *slm_pii_type_name(slm_pii_type type);
/* Parse a type name (case-insensitive); false when unknown. */
bool slm_pii_type_parse(const char *name, size_t len, slm_pii_type *out);
/* Parse a comma-separated list of type names into a bit set; false on an unknown name. */
bool slm_pii_types_parse(const char *list, uint32_t *out);

/* Byte offset of the first invalid UTF-8 sequence in s[0..len) (overlongs, surrogates and
 * code points above U+10FFFF are invalid), or len when the whole text is valid. */
size_t slm_guard_utf8_check(const char *s, size_t len);

/* ---- guard ------------------------------------------------------------------------------ */

typedef struct slm_guard slm_guard;

typedef struct slm_guard_opts {
    uint32_t types;                   /* which types to report (SLM_PII_ALL by default) */
    float threshold[SLM_PII_COUNT];   /* per type: report when score >= threshold; a
                                         negative entry means the default (0.3 for the
                                         tagger-only types, 0.5 for the others) */
    const char *tagger_path;          /* weights file for the name/address/org/place tagger;
                                         NULL = no tagger (patterns only); borrowed */
    size_t max_input;                 /* bytes; 0 = SLM_GUARD_MAX_INPUT */
} slm_guard_opts;

/* Defaults: all types, default thresholds, no tagger, SLM_GUARD_MAX_INPUT. */
void slm_guard_opts_default(slm_guard_opts *opts);

/* Build a guard (compiles the detectors once, loads the tagger when a path is given).
 * *out is owned by the caller and freed with slm_guard_destroy. */
slm_status slm_guard_create(const slm_guard_opts *opts, slm_guard **out, char *err);
void slm_guard_destroy(slm_guard *guard);
/* Types this guard reports (bit set); the tagger-only types are included only when a tagger
 * is loaded. */
uint32_t slm_guard_types(const slm_guard *guard);

/* Default tagger weights path: $SLMESH_PII_TAGGER if set, else the repository's
 * models/pii-tagger.bin when it exists relative to the program's directory (exe_path's
 * folder, then its parent); NULL when none is found. Writes into buf (cap bytes). */
const char *slm_guard_default_tagger(const char *exe_path, char *buf, size_t cap);

typedef struct slm_pii_finding {
    slm_pii_type type;
    size_t start, end;       /* byte offsets into the input, end exclusive */
    size_t cstart, cend;     /* the same span in characters (code points) */
    float score;             /* confidence in [0, 1] */
    bool tagger;             /* found by the sequence tagger (else by a pattern detector) */
} slm_pii_finding;

/* Find personal data in text[0..len). *out (caller frees with slm_free) receives *count
 * findings, sorted by start and non-overlapping; *out is NULL when count is 0.
 * SLM_ERR_UTF8 when the text is not valid UTF-8 (detail names the byte offset),
 * SLM_ERR_LIMIT when len exceeds max_input or findings exceed SLM_GUARD_MAX_FINDINGS. */
slm_status slm_guard_detect(const slm_guard *guard, const char *text, size_t len,
                            slm_pii_finding **out, size_t *count, char *err);

/* ---- redaction -------------------------------------------------------------------------- */

typedef enum slm_redact_op {
    SLM_REDACT_REPLACE = 0,  /* "<PERSON>" */
    SLM_REDACT_NUMBERED,     /* "<PERSON_1>", the same original gets the same number */
    SLM_REDACT_MASK,         /* every character but the last mask_keep becomes mask_char */
    SLM_REDACT_HASH,         /* "<PERSON:hex>", hex = first 8 bytes of SHA-256(salt || value) */
    SLM_REDACT_PSEUDO,       /* like NUMBERED, recorded in the vault for slm_vault_restore */
    SLM_REDACT_KEEP,         /* leave this type as it is */
    SLM_REDACT_OP_COUNT
} slm_redact_op;

/* "replace", "numbered", "mask", "hash", "pseudo", "keep"; parse is case-sensitive. */
const char *slm_redact_op_name(slm_redact_op op);
bool slm_redact_op_parse(const char *name, slm_redact_op *out);

/* Most salt bytes for the hash operator. */
#define SLM_REDACT_MAX_SALT 64

typedef struct slm_redact_opts {
    slm_redact_op op[SLM_PII_COUNT];  /* operator per type */
    unsigned mask_keep;               /* MASK: characters kept at the end */
    char mask_char;                   /* MASK: ASCII replacement character */
    unsigned char salt[SLM_REDACT_MAX_SALT]; /* HASH: salt bytes (copied) */
    size_t salt_len;
} slm_redact_opts;

/* Every type REPLACE, mask_keep 4, mask_char '*', no salt. */
void slm_redact_opts_default(slm_redact_opts *opts);
/* Set one operator for every type. */
void slm_redact_opts_all(slm_redact_opts *opts, slm_redact_op op);

/* Per-request placeholder map for NUMBERED/PSEUDO. */
typedef struct slm_vault slm_vault;
slm_status slm_vault_create(slm_vault **out, char *err);
/* Wipes the stored originals before freeing; NULL is fine. */
void slm_vault_destroy(slm_vault *vault);
/* Number of placeholders recorded. */
size_t slm_vault_count(const slm_vault *vault);

/* Rewrite text[0..len) with the findings (from slm_guard_detect on the same text) and the
 * operators. *out (caller frees with slm_free) is NUL-terminated, *out_len excludes the NUL.
 * vault: where PSEUDO/NUMBERED placeholders are recorded (borrowed; may be NULL, then a
 * temporary one numbers them and nothing can be restored). */
slm_status slm_guard_redact(const char *text, size_t len, const slm_pii_finding *findings,
                            size_t count, const slm_redact_opts *opts, slm_vault *vault,
                            char **out, size_t *out_len, char *err);

/* Replace every placeholder recorded in vault that occurs in text (for example a model's
 * answer) by its original. *out as for slm_guard_redact. */
slm_status slm_vault_restore(const slm_vault *vault, const char *text, size_t len,
                             char **out, size_t *out_len, char *err);

/* ---- tagger training ---------------------------------------------------------------------- */

typedef struct slm_guard_train_opts {
    const char *data_path;   /* JSON list of {"full_text", "spans":[{"entity_type",
                                "start_position","end_position"}]} (character offsets) */
    const char *out_path;    /* weights file to write */
    const char *templates_path; /* optional: sentences with {TYPE} slots filled from the
                                   data's own values (models/pii-templates.txt); NULL = none */
    unsigned template_fills; /* fillings per template line (0 = default 6) */
    unsigned epochs;         /* passes over the data (0 = default 12) */
    double dropout;          /* chance of leaving a feature out of an update, [0, 0.9] */
    uint64_t seed;           /* shuffling seed: same data + seed = same file */
    unsigned synthetic_orgs; /* made-up company names ("Miller Ltd.") built from the data's
                                surnames and added to the organisation values (0 = none) */
} slm_guard_train_opts;

typedef struct slm_guard_train_stats {
    size_t sentences, tokens;  /* training material seen (per epoch) */
    double train_token_acc;    /* accuracy on the training data after the last epoch */
    size_t file_bytes;         /* size of the weights file */
} slm_guard_train_stats;

slm_status slm_guard_train(const slm_guard_train_opts *opts, slm_guard_train_stats *stats,
                           char *err);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_GUARD_H */
