/*
 * fuzz/fuzz_audit_record.c: libFuzzer target for the audit record parser and the stored-body
 * checks (outside input: `slmesh audit append` lines, and database rows read by verify).
 *
 * Property checked beyond "no crash, no leak": any input record that validates, once
 * sealed, passes slm_audit_record_check (canonical bytes re-parse to the same bytes), and
 * its hash is reproducible.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_int.h"
#include "core/core.h"

static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[SLM_ERR_LEN], hash[SLM_AUDIT_HASH_HEX], again[SLM_AUDIT_HASH_HEX];
    json_t *rec = NULL;
    if (slm_audit_record_from_json((const char *)data, size, &rec, err) == SLM_OK) {
        char *body = NULL;
        if (slm_audit_record_seal(rec, 7, zeros, &body, hash, err) == SLM_OK) {
            if (slm_audit_record_check(body, 7, zeros, err) != SLM_OK) abort();
            if (slm_audit_sha256_hex(body, strlen(body), again, err) != SLM_OK || strcmp(hash, again))
                abort();
            slm_free(body);
        }
        json_decref(rec);
    }
    /* The same bytes as a stored body and as a checkpoint body (NUL-terminated copies). */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    uint64_t count;
    (void)slm_audit_record_check(text, 1, zeros, err);
    (void)slm_audit_checkpoint_parse(text, &count, hash, err);
    free(text);
    return 0;
}
