/*
 * head/csv.c: the incremental CSV reader of csv.h, a byte-at-a-time state machine.
 *
 * Invariants: `buf` holds the fields of the current record, each followed by a NUL;
 *  `ends[i]` is the offset of field i's NUL. A record is emitted only when its line end
 *  (or the end of input) is seen, so the result does not depend on how input is split.
 * Thread-safety: a reader is used by one thread. Non-goals: speed beyond a few hundred MB/s.
 */
#include "head/csv.h"

#include <stdbool.h>
#include <string.h>

#include "core/core.h"

/* ---- state ------------------------------------------------------------------------------ */

typedef enum {
    ST_FIELD_START, /* at the first byte of a field */
    ST_UNQUOTED,    /* inside an unquoted field */
    ST_QUOTED,      /* inside a quoted field */
    ST_QUOTE,       /* a quote inside a quoted field: escaped quote or closing quote */
    ST_FAILED       /* an error happened; every later call fails */
} csv_state;

static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

struct slm_csv {
    slm_head_csv_record_fn fn; /* borrowed callback */
    void *ctx;            /* borrowed callback argument */
    csv_state st;         /* parser state */
    slm_status fail_st;   /* status to repeat once failed */
    size_t bom_seen;      /* BOM bytes matched so far at the start (0..3); 4 = decided */
    bool skip_lf;         /* the previous byte was a CR that ended a record */
    bool field_quoted;    /* the current field started with a quote */
    size_t line;          /* current 1-based line */
    size_t rec_line;      /* line where the current record started */
    size_t quote_line;    /* line where the open quoted field started */
    char *buf;            /* owned: field bytes of the current record, NUL after each */
    size_t len, cap;      /* bytes used / allocated in buf */
    size_t field_start;   /* offset in buf of the current field */
    size_t *ends;         /* owned: NUL offset of each finished field */
    const char **ptrs;    /* owned: field pointers handed to fn */
    size_t nfields;       /* finished fields of the current record */
};

/* ---- life cycle ------------------------------------------------------------------------- */

slm_status slm_head_csv_create(slm_csv **out, slm_head_csv_record_fn fn, void *ctx, char *err) {
    slm_csv *r = NULL;
    if (!out || !fn) return slm_errf(err, SLM_ERR_INVALID_ARG, "csv: missing output or callback");
    *out = NULL;
    r = slm_calloc(1, sizeof *r);
    if (!r) goto nomem;
    r->fn = fn;
    r->ctx = ctx;
    r->line = r->rec_line = 1;
    r->cap = 256;
    r->buf = slm_malloc(r->cap);
    r->ends = slm_malloc(SLM_CSV_MAX_FIELDS * sizeof *r->ends);
    r->ptrs = slm_malloc(SLM_CSV_MAX_FIELDS * sizeof *r->ptrs);
    if (!r->buf || !r->ends || !r->ptrs) goto nomem;
    *out = r;
    return SLM_OK;
nomem:
    slm_head_csv_destroy(r);
    return slm_errf(err, SLM_ERR_NOMEM, "csv: out of memory creating a reader");
}

void slm_head_csv_destroy(slm_csv *r) {
    if (!r) return;
    slm_free(r->buf);
    slm_free(r->ends);
    slm_free(r->ptrs);
    slm_free(r);
}

/* ---- record assembly -------------------------------------------------------------------- */

static slm_status fail(slm_csv *r, slm_status st) {
    r->st = ST_FAILED;
    r->fail_st = st;
    return st;
}

static slm_status put_byte(slm_csv *r, char c, char *err) {
    if (r->len - r->field_start >= SLM_CSV_MAX_FIELD_BYTES)
        return fail(r, slm_errf(err, SLM_ERR_LIMIT, "csv line %zu: field longer than %u bytes",
                                r->rec_line, SLM_CSV_MAX_FIELD_BYTES));
    if (r->len >= SLM_CSV_MAX_RECORD_BYTES)
        return fail(r, slm_errf(err, SLM_ERR_LIMIT, "csv line %zu: record longer than %u bytes",
                                r->rec_line, SLM_CSV_MAX_RECORD_BYTES));
    if (r->len + 1 >= r->cap) { /* +1 keeps room for the field's NUL */
        size_t cap = r->cap * 2;
        char *nb = slm_realloc(r->buf, cap);
        if (!nb) return fail(r, slm_errf(err, SLM_ERR_NOMEM, "csv: out of memory"));
        r->buf = nb;
        r->cap = cap;
    }
    r->buf[r->len++] = c;
    return SLM_OK;
}

static slm_status end_field(slm_csv *r, char *err) {
    slm_status st;
    if (r->nfields >= SLM_CSV_MAX_FIELDS)
        return fail(r, slm_errf(err, SLM_ERR_LIMIT, "csv line %zu: more than %u fields",
                                r->rec_line, SLM_CSV_MAX_FIELDS));
    /* put_byte keeps one spare byte, so the NUL always fits. */
    if ((st = put_byte(r, '\0', err)) != SLM_OK) return st;
    r->ends[r->nfields++] = r->len - 1;
    r->field_start = r->len;
    r->field_quoted = false;
    return SLM_OK;
}

static slm_status end_record(slm_csv *r, char *err) {
    slm_status st;
    bool blank = r->nfields == 0 && r->len == r->field_start && !r->field_quoted;
    if (blank) { /* an empty line: no record */
        r->rec_line = r->line;
        return SLM_OK;
    }
    if ((st = end_field(r, err)) != SLM_OK) return st;
    size_t lens[SLM_CSV_MAX_FIELDS];
    for (size_t i = 0; i < r->nfields; i++) {
        size_t start = i == 0 ? 0 : r->ends[i - 1] + 1;
        r->ptrs[i] = r->buf + start;
        lens[i] = r->ends[i] - start;
    }
    st = r->fn(r->ctx, r->nfields, r->ptrs, lens, r->rec_line, err);
    r->len = r->field_start = r->nfields = 0;
    r->rec_line = r->line;
    if (st != SLM_OK) return fail(r, st);
    return SLM_OK;
}

/* ---- the state machine ------------------------------------------------------------------ */

static slm_status step(slm_csv *r, char c, char *err) {
    if (r->skip_lf) {
        r->skip_lf = false;
        if (c == '\n') return SLM_OK; /* the LF of a CRLF; the CR counted the line */
    }
    switch (r->st) {
    case ST_FIELD_START:
        if (c == '"') {
            r->st = ST_QUOTED;
            r->field_quoted = true;
            r->quote_line = r->line;
            return SLM_OK;
        }
        r->st = ST_UNQUOTED; /* the byte belongs to an unquoted field: */
        /* fall through */
    case ST_UNQUOTED:
        if (c == ',') {
            r->st = ST_FIELD_START;
            return end_field(r, err);
        }
        if (c == '\n' || c == '\r') {
            r->st = ST_FIELD_START;
            r->line++;
            r->skip_lf = c == '\r';
            return end_record(r, err);
        }
        if (c == '"')
            return fail(r, slm_errf(err, SLM_ERR_CORRUPT, "csv line %zu: quote inside an unquoted field",
                                    r->line));
        return put_byte(r, c, err);
    case ST_QUOTED:
        if (c == '"') {
            r->st = ST_QUOTE;
            return SLM_OK;
        }
        if (c == '\n') r->line++;
        return put_byte(r, c, err);
    case ST_QUOTE:
        if (c == '"') { /* "" is a literal quote */
            r->st = ST_QUOTED;
            return put_byte(r, '"', err);
        }
        if (c == ',') {
            r->st = ST_FIELD_START;
            return end_field(r, err);
        }
        if (c == '\n' || c == '\r') {
            r->st = ST_FIELD_START;
            r->line++;
            r->skip_lf = c == '\r';
            return end_record(r, err);
        }
        return fail(r, slm_errf(err, SLM_ERR_CORRUPT,
                                "csv line %zu: unexpected character after a closing quote", r->line));
    case ST_FAILED:
        break;
    }
    return r->fail_st;
}

slm_status slm_head_csv_feed(slm_csv *r, const char *data, size_t len, char *err) {
    slm_status st;
    if (!r || (!data && len)) return slm_errf(err, SLM_ERR_INVALID_ARG, "csv: bad arguments");
    if (r->st == ST_FAILED) return slm_errf(err, r->fail_st, "csv: reader already failed");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (r->bom_seen < 3) { /* still deciding whether the input starts with a BOM */
            if (c == bom[r->bom_seen]) {
                r->bom_seen++;
                continue;
            }
            /* Not a BOM: replay the bytes that looked like one, then this byte. */
            size_t held = r->bom_seen;
            r->bom_seen = 4;
            for (size_t k = 0; k < held; k++)
                if ((st = step(r, (char)bom[k], err)) != SLM_OK) return st;
        }
        if ((st = step(r, (char)c, err)) != SLM_OK) return st;
    }
    return SLM_OK;
}

slm_status slm_head_csv_finish(slm_csv *r, char *err) {
    slm_status st;
    if (!r) return slm_errf(err, SLM_ERR_INVALID_ARG, "csv: no reader");
    if (r->st == ST_FAILED) return slm_errf(err, r->fail_st, "csv: reader already failed");
    if (r->bom_seen > 0 && r->bom_seen < 3) { /* input was a BOM prefix only: it is data */
        size_t held = r->bom_seen;
        r->bom_seen = 4;
        for (size_t k = 0; k < held; k++)
            if ((st = step(r, (char)bom[k], err)) != SLM_OK) return st;
    }
    if (r->st == ST_QUOTED)
        return fail(r, slm_errf(err, SLM_ERR_CORRUPT, "csv: quoted field opened at line %zu is not closed",
                                r->quote_line));
    if (r->st == ST_FAILED) return r->fail_st;
    r->skip_lf = false;
    if (r->nfields > 0 || r->len > r->field_start || r->field_quoted) {
        r->st = ST_FIELD_START;
        return end_record(r, err);
    }
    return SLM_OK;
}
