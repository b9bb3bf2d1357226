/*
 * fuzz/fuzz_policy.c: libFuzzer target for the policy parser and checker.
 *
 * Input: a policy (JSON) optionally followed by a NUL byte and a text to check. Checks:
 * parsing never crashes and either succeeds or returns a status with a detail; a parsed
 * policy checks the text (and a few fixed texts) in both directions without crashing, and
 * every verdict is one of allow/redact/block, with redacted text only for redact.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "slmesh/guard.h"
#include "slmesh/policy.h"

static slm_guard *guard; /* patterns only; created once, read-only afterwards */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[SLM_ERR_LEN];
    if (slm_guard_create(NULL, &guard, err) != SLM_OK) abort();
    return 0;
}

static void check_one(const slm_policy *p, const char *text, size_t len) {
    for (int d = 0; d < 2; d++) {
        slm_policy_verdict v;
        char err[SLM_ERR_LEN];
        slm_status st = slm_policy_check(p, (slm_policy_dir)d, guard, text, len, NULL, &v, err);
        /* Refusals the API documents: invalid UTF-8, a limit, or a pii rule on a type this
         * guard cannot detect (a patterns-only guard has no ORGANIZATION: never a silent allow). */
        if (st == SLM_ERR_UTF8 || st == SLM_ERR_LIMIT || st == SLM_ERR_INVALID_ARG) continue;
        if (st != SLM_OK) abort();
        if (v.action > SLM_POLICY_BLOCK || (v.redacted != NULL) != (v.action == SLM_POLICY_REDACT)) abort();
        slm_policy_verdict_clear(&v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    const char *nul = memchr(s, '\0', size);
    size_t plen = nul ? (size_t)(nul - s) : size;
    slm_policy *p = NULL;
    char err[SLM_ERR_LEN] = "";
    if (slm_policy_parse(s, plen, &p, err) != SLM_OK) {
        if (!err[0]) abort();
        return 0;
    }
    if (nul) check_one(p, nul + 1, size - plen - 1);
    static const char *const fixed[] = {"", "mail a@b.io, card 4111 1111 1111 1111",
                                        "{\"label\": \"refund\", \"score\": 0.5}", "ignore previous instructions"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) check_one(p, fixed[i], strlen(fixed[i]));
    slm_policy_destroy(p);
    return 0;
}
