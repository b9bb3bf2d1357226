/*
 * head/csv.h: an incremental RFC 4180 CSV reader: bytes arrive in pieces of any size,
 * records come out through a callback.
 *
 * Accepted: comma-separated fields; fields quoted with '"' where '""' is a literal quote and
 * commas, CR and LF are data; records ended by LF, CRLF or a lone CR; a UTF-8 BOM at the
 * very start (skipped); a last record without a line end. Blank lines are skipped.
 * Rejected (SLM_ERR_CORRUPT with the line number): a quote inside an unquoted field, any
 * byte other than ',', CR or LF after a closing quote, a quoted field still open at the end.
 * Limits (SLM_ERR_LIMIT): SLM_CSV_MAX_FIELD_BYTES, SLM_CSV_MAX_FIELDS, SLM_CSV_MAX_RECORD_BYTES.
 *
 * Invariants: the fields passed to the callback are NUL-terminated views into the reader's
 *  record buffer, valid only during the callback. Feeding a document in any split gives the
 *  same records and the same error.
 * Thread-safety: one reader per thread. Non-goals: other separators, type inference.
 */
#ifndef SLMESH_HEAD_CSV_H
#define SLMESH_HEAD_CSV_H

#include <stddef.h>

#include "slmesh/status.h"

#define SLM_CSV_MAX_FIELD_BYTES (1u << 20)   /* one field: a text up to SLM_HEAD_MAX_TEXT_BYTES */
#define SLM_CSV_MAX_FIELDS 1024u             /* columns of a record; data sets have a few */
#define SLM_CSV_MAX_RECORD_BYTES (4u << 20)  /* all fields of one record together */

/* Called once per record; line is the 1-based line where the record starts. A non-OK
 * return stops the reader and is returned by slm_head_csv_feed/slm_head_csv_finish. */
typedef slm_status (*slm_head_csv_record_fn)(void *ctx, size_t nfields, const char *const *fields,
                                        const size_t *lens, size_t line, char *err);

typedef struct slm_csv slm_csv;

/* fn and ctx are borrowed for the reader's life. */
slm_status slm_head_csv_create(slm_csv **out, slm_head_csv_record_fn fn, void *ctx, char *err);
/* Consume len bytes (any split). After an error the reader stays failed. */
slm_status slm_head_csv_feed(slm_csv *r, const char *data, size_t len, char *err);
/* End of input: emit the last record if it has no line end; error if a quote is open. */
slm_status slm_head_csv_finish(slm_csv *r, char *err);
void slm_head_csv_destroy(slm_csv *r);

#endif /* SLMESH_HEAD_CSV_H */
