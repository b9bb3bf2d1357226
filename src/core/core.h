/*
 * core/core.h: the few helpers every module shares: error details, checked size
 * arithmetic and the allocator wrappers that tests can make fail.
 *
 * Invariants:
 *  - Every size that comes from outside is combined with slm_add_size/slm_mul_size, which
 *    report overflow instead of wrapping.
 *  - Library code allocates through slm_malloc/slm_calloc/slm_realloc/slm_free so that
 *    allocation-failure tests (slm_fault_*) can make the n-th allocation fail.
 * Thread-safety: everything here is thread-safe; the fault countdown is thread-local.
 * Non-goals: a general utility grab-bag. Add here only what three or more modules need.
 */
#ifndef SLMESH_CORE_H
#define SLMESH_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

/* ---- error details -------------------------------------------------------------------- */

/* Write a printf-style detail into err (SLM_ERR_LEN bytes) if err is not NULL; returns st so
 * that a failure site reads `return slm_errf(err, SLM_ERR_CORRUPT, "...", ...);`. */
slm_status slm_errf(char *err, slm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- checked arithmetic ---------------------------------------------------------------- */

/* *out = a + b / a * b; false (and *out unchanged) on size_t overflow. */
static inline bool slm_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool slm_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* ---- allocation ------------------------------------------------------------------------ */

/* Same contracts as malloc/calloc/realloc/free. They return NULL when the fault countdown
 * (below) says so, which lets tests walk every allocation failure path. */
void *slm_malloc(size_t size);
void *slm_calloc(size_t count, size_t size);
void *slm_realloc(void *ptr, size_t size);
void slm_free(void *ptr);
/* strdup/strndup through slm_malloc; NULL on failure. */
char *slm_strdup(const char *s);
char *slm_strndup(const char *s, size_t n);

/* Allocation-failure injection for tests (this thread only): after slm_fault_arm(n) the
 * n-th following allocation (n >= 1) fails, and all later ones succeed again.
 * slm_fault_arm(0) disarms. slm_fault_fired() tells whether the armed failure happened, so a
 * test loops n = 1, 2, ... until an operation completes without the fault firing. */
void slm_fault_arm(long n);
bool slm_fault_fired(void);

#endif /* SLMESH_CORE_H */
