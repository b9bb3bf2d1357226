/*
 * tests/testutil.h: helpers shared by the cmocka tests.
 *
 * shared/ (models, reference outputs) is found through $SLMESH_SHARED (set by ctest) or
 * ../shared; a test that needs it and does not find it calls skip() with a message naming
 * the missing path, so the suite passes on a user's machine without shared/.
 */
#ifndef SLMESH_TESTUTIL_H
#define SLMESH_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Path of shared/ (no trailing slash), or NULL when it is absent. Static storage. */
const char *tu_shared_dir(void);

/* Join shared/ and a relative path into buf; returns buf, or NULL (and prints a skip
 * message to stderr) when shared/ or the file is absent. */
const char *tu_shared_path(char *buf, size_t cap, const char *rel);

/* Like tu_shared_path but calls cmocka's skip() when the file is absent. */
#define TU_SHARED_OR_SKIP(buf, rel)                                    \
    do {                                                               \
        if (!tu_shared_path((buf), sizeof(buf), (rel))) { skip(); }    \
    } while (0)

/* Read a whole file into a malloc'd buffer (NUL-terminated; *len excludes the NUL).
 * Returns NULL on failure. The caller frees with free(). */
char *tu_read_file(const char *path, size_t *len);

/* Write len bytes to a new temporary file; returns its malloc'd path (caller unlinks and
 * frees), or NULL. */
char *tu_write_temp(const void *data, size_t len, const char *suffix);

#endif
