/*
 * guard/guard_int.h: what the files of the guard module share: the growing list of candidate
 * findings, the validators (guard_checks.c), the pattern detector set (guard_patterns.c) and
 * the sequence tagger (guard_tagger.c). Not a public API; tests include it to reach the
 * validators directly.
 *
 * Invariants: candidates carry byte spans only; guard.c merges them and adds character
 *  offsets. Every detector reads the text and never writes it.
 * Thread-safety: pattern sets and taggers are immutable after creation; per-call state
 *  (match data, scratch) is allocated per call.
 * Non-goals: anything a caller outside src/guard needs (that is include/slmesh/guard.h).
 */
#ifndef SLMESH_GUARD_INT_H
#define SLMESH_GUARD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/guard.h"

/* ---- candidates --------------------------------------------------------------------------- */

/* Findings before merging: byte spans, possibly overlapping, in any order. */
typedef struct guard_cands {
    slm_pii_finding *v;  /* owned array of n used / cap allocated entries */
    size_t n, cap;
    size_t limit;        /* most entries allowed (SLM_ERR_LIMIT beyond) */
} guard_cands;

/* Append one candidate; SLM_ERR_NOMEM or SLM_ERR_LIMIT. */
slm_status slm_guard_cands_push(guard_cands *c, slm_pii_type type, size_t start, size_t end,
                                float score, bool tagger, char *err);

/* ---- validators (guard_checks.c) ------------------------------------------------------------ */

/* Code point starting at s[*i] (valid UTF-8 assumed); advances *i past it. */
uint32_t slm_guard_utf8_next(const char *s, size_t len, size_t *i);

/* Luhn checksum over the ASCII digits of s[0..n) (other characters skipped). */
bool slm_guard_luhn(const char *s, size_t n);
/* Digits only (separators removed) is a known issuer range with a valid length for it:
 * Visa, Mastercard, American Express, Discover, Diners Club, JCB, UnionPay, Maestro. */
bool slm_guard_card_issuer(const char *digits, size_t n);
/* IBAN: s[0..n) with spaces allowed, any letter case; *used receives how many bytes of s
 * form the IBAN (the country's length decides where it ends). True when the country is
 * known, the length matches and mod-97 gives 1. */
bool slm_guard_iban(const char *s, size_t n, size_t *used);
/* US SSN digits (9, separators removed): area not 000, 666 or 9xx; group not 00; serial
 * not 0000; not a known advertising number. */
bool slm_guard_ssn(const char *digits, size_t n);
/* Shannon entropy of s[0..n) in bits per byte. */
double slm_guard_entropy(const char *s, size_t n);

/* ---- pattern detectors (guard_patterns.c) ---------------------------------------------------- */

typedef struct guard_patterns guard_patterns;
slm_status slm_guard_patterns_create(guard_patterns **out, char *err);
void slm_guard_patterns_destroy(guard_patterns *p);
/* Append every pattern finding of the enabled types (bit set) to c. */
slm_status slm_guard_patterns_run(const guard_patterns *p, const char *text, size_t len,
                                  uint32_t types, guard_cands *c, char *err);

/* ---- sequence tagger (guard_tagger.c) ----------------------------------------------------------- */

typedef struct guard_tagger guard_tagger;
/* Load weights written by slm_guard_train; checks magic, version and checksum. */
slm_status slm_guard_tagger_load(const char *path, guard_tagger **out, char *err);
void slm_guard_tagger_destroy(guard_tagger *t);
/* Types the tagger can produce (bit set). */
uint32_t slm_guard_tagger_types(const guard_tagger *t);
/* Tag valid UTF-8 text and append its spans of enabled types to c. */
slm_status slm_guard_tagger_run(const guard_tagger *t, const char *text, size_t len,
                                uint32_t types, guard_cands *c, char *err);

#endif /* SLMESH_GUARD_INT_H */
