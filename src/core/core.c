/*
 * core/core.c: status text, error details, allocation wrappers with fault injection.
 *
 * The fault countdown is thread-local so that tests running in parallel threads do not
 * disturb each other; it costs one thread-local decrement per allocation, which nothing in
 * slmesh does on a hot path (kernels use caller-provided scratch).
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- status text ----------------------------------------------------------------------- */

static const char *const status_text[SLM_STATUS_COUNT] = {
    [SLM_OK] = "ok",
    [SLM_ERR_NOMEM] = "out of memory",
    [SLM_ERR_IO] = "input/output error",
    [SLM_ERR_INVALID_ARG] = "invalid argument",
    [SLM_ERR_CORRUPT] = "corrupt input",
    [SLM_ERR_UNSUPPORTED] = "unsupported",
    [SLM_ERR_LIMIT] = "limit exceeded",
    [SLM_ERR_NOT_FOUND] = "not found",
    [SLM_ERR_RANGE] = "out of range",
    [SLM_ERR_STATE] = "invalid state",
    [SLM_ERR_UTF8] = "invalid UTF-8",
    [SLM_ERR_CANCELLED] = "cancelled",
    [SLM_ERR_FULL] = "full",
    [SLM_ERR_DB] = "database error",
    [SLM_ERR_CRYPTO] = "cryptographic error",
    [SLM_ERR_TAMPERED] = "integrity check failed",
    [SLM_ERR_POLICY] = "blocked by policy",
    [SLM_ERR_INTERNAL] = "internal error",
};

const char *slm_status_str(slm_status status) {
    if ((unsigned)status >= SLM_STATUS_COUNT || !status_text[status]) return "unknown status";
    return status_text[status];
}

slm_status slm_errf(char *err, slm_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, SLM_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ---- allocation with fault injection ---------------------------------------------------- */

static _Thread_local long fault_countdown; /* 0 = disarmed; n = fail the n-th allocation */
static _Thread_local bool fault_fired;     /* the armed failure happened */

void slm_fault_arm(long n) {
    fault_countdown = n > 0 ? n : 0;
    fault_fired = false;
}

bool slm_fault_fired(void) { return fault_fired; }

/* True when this allocation must fail. */
static bool fault_now(void) {
    if (fault_countdown <= 0) return false;
    if (--fault_countdown > 0) return false;
    fault_fired = true;
    return true;
}

void *slm_malloc(size_t size) { return fault_now() ? NULL : malloc(size ? size : 1); }

void *slm_calloc(size_t count, size_t size) {
    if (fault_now()) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *slm_realloc(void *ptr, size_t size) { return fault_now() ? NULL : realloc(ptr, size ? size : 1); }

void slm_free(void *ptr) { free(ptr); }

char *slm_strndup(const char *s, size_t n) {
    size_t len = strnlen(s, n);
    char *p = slm_malloc(len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *slm_strdup(const char *s) { return slm_strndup(s, strlen(s)); }
