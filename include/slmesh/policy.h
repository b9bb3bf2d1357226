/*
 * slmesh/policy.h: declarative input and output rules (block or redact by PII type, maximum
 * lengths, deny-lists of phrases, required JSON validity or schema, allowed labels), read from
 * the JSON config file and applied to a request's text or a model's answer. Each check yields
 * allow / redact / block with the rule's name and a reason the caller can show.
 *
 * Format (docs/governance.md): {"input": [rule, ...], "output": [rule, ...]}, optionally
 * nested as the "policy" member of a larger config. A rule is an object with a "name", one
 * condition ("pii", "max_chars", "max_bytes", "deny", "json", "schema", "labels"), an
 * "action" ("block" or, for "pii", "redact") and an optional "reason".
 * Invariants: a loaded policy is validated completely (unknown keys, bad types, limits);
 *  checking never fails on the text's content, only on invalid UTF-8 or resources.
 * Thread-safety: a slm_policy is immutable after loading and may be shared by threads.
 * Non-goals: full JSON Schema (the subset: type, properties, required, additionalProperties,
 *  items, enum, minLength, maxLength, minimum, maximum, minItems, maxItems).
 */
#ifndef SLMESH_POLICY_H
#define SLMESH_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "slmesh/guard.h"
#include "slmesh/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most rules per direction: a policy is written by people; more is a mistake. */
#define SLM_POLICY_MAX_RULES 256
/* Most phrases in one deny rule and bytes per phrase. */
#define SLM_POLICY_MAX_PHRASES 4096
#define SLM_POLICY_MAX_PHRASE 512
/* Deepest nesting of a schema (and of a JSON answer checked against it). */
#define SLM_POLICY_MAX_DEPTH 32
/* Largest policy file (bytes). */
#define SLM_POLICY_MAX_FILE (1u << 20)
/* Sizes of the verdict's text fields (truncated beyond). */
#define SLM_POLICY_NAME_LEN 64
#define SLM_POLICY_REASON_LEN 256

typedef struct slm_policy slm_policy;

typedef enum { SLM_POLICY_INPUT = 0, SLM_POLICY_OUTPUT = 1 } slm_policy_dir;

typedef enum {
    SLM_POLICY_ALLOW = 0,
    SLM_POLICY_REDACT = 1,
    SLM_POLICY_BLOCK = 2,
} slm_policy_action;

/* "allow", "redact", "block". */
const char *slm_policy_action_name(slm_policy_action a);

/* Parse a policy from JSON text (json[0..len)); *out owned by the caller. Errors name the
 * rule and key: SLM_ERR_CORRUPT (not JSON), SLM_ERR_INVALID_ARG (bad rule), SLM_ERR_LIMIT. */
slm_status slm_policy_parse(const char *json, size_t len, slm_policy **out, char *err);
/* Read and parse a policy file. */
slm_status slm_policy_load(const char *path, slm_policy **out, char *err);
void slm_policy_destroy(slm_policy *p);
/* Number of rules for a direction. */
size_t slm_policy_rule_count(const slm_policy *p, slm_policy_dir dir);
/* PII types any rule of the direction looks at (bit set): what the guard must detect. */
uint32_t slm_policy_pii_types(const slm_policy *p, slm_policy_dir dir);

typedef struct slm_policy_verdict {
    slm_policy_action action;          /* the strictest action of the rules that fired */
    char rule[SLM_POLICY_NAME_LEN];    /* name of the first rule with that action ("" = allow) */
    char reason[SLM_POLICY_REASON_LEN];/* text for the caller to show */
    size_t fired;                      /* how many rules fired */
    uint32_t redact_types;             /* types the redact rules cover */
    char *redacted;                    /* REDACT: the text with those types replaced (owned,
                                          free with slm_policy_verdict_clear); else NULL */
    size_t redacted_len;
} slm_policy_verdict;

/* Check text against the rules of one direction. guard (borrowed) finds PII for "pii"
 * rules and may be NULL when the direction has none. vault (borrowed, may be NULL): where
 * pseudonyms of the redaction are recorded (the redaction uses the "operator" of the policy,
 * default "pseudo" with a vault and "replace" without). */
slm_status slm_policy_check(const slm_policy *p, slm_policy_dir dir, const slm_guard *guard,
                            const char *text, size_t len, slm_vault *vault,
                            slm_policy_verdict *out, char *err);
void slm_policy_verdict_clear(slm_policy_verdict *v);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_POLICY_H */
