/*
 * head/data.c: labelled data sets for task heads: reading CSV (through csv.c) or JSON lines
 * (through jansson) into texts and labels.
 *
 * Invariants: every stored text is valid UTF-8 of at most SLM_HEAD_MAX_TEXT_BYTES; every
 *  label at most SLM_HEAD_MAX_LABEL_BYTES; at most SLM_HEAD_MAX_EXAMPLES rows.
 * Thread-safety: a data set is built by one thread, then may be read by many.
 * Non-goals: streaming data sets larger than memory (heads train on thousands of rows).
 */
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <jansson.h>

#include "core/core.h"
#include "head/csv.h"
#include "head/features.h"
#include "head/head_impl.h"

#define DATA_MAX_FILE_BYTES (1ull << 30) /* a labelled data set file; far above real ones */
#define DATA_READ_CHUNK 65536            /* bytes fed to the CSV reader at a time */

/* ---- the container ---------------------------------------------------------------------- */

slm_status slm_head_data_create(slm_head_data **out, char *err) {
    if (!out) return slm_errf(err, SLM_ERR_INVALID_ARG, "data: no output");
    *out = slm_calloc(1, sizeof **out);
    return *out ? SLM_OK : slm_errf(err, SLM_ERR_NOMEM, "data: out of memory");
}

void slm_head_data_destroy(slm_head_data *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        slm_free(d->text[i]);
        slm_free(d->label[i]);
    }
    slm_free(d->text);
    slm_free(d->len);
    slm_free(d->label);
    slm_free(d);
}

size_t slm_head_data_count(const slm_head_data *d) { return d ? d->n : 0; }

const char *slm_head_data_text(const slm_head_data *d, size_t i, size_t *len) {
    if (!d || i >= d->n) return NULL;
    if (len) *len = d->len[i];
    return d->text[i];
}

const char *slm_head_data_label(const slm_head_data *d, size_t i) {
    return d && i < d->n ? d->label[i] : NULL;
}

static slm_status grow(slm_head_data *d, char *err) {
    size_t cap = d->cap ? d->cap * 2 : 256;
    char **t = slm_realloc(d->text, cap * sizeof *t);
    if (!t) return slm_errf(err, SLM_ERR_NOMEM, "data: out of memory");
    d->text = t;
    size_t *l = slm_realloc(d->len, cap * sizeof *l);
    if (!l) return slm_errf(err, SLM_ERR_NOMEM, "data: out of memory");
    d->len = l;
    char **b = slm_realloc(d->label, cap * sizeof *b);
    if (!b) return slm_errf(err, SLM_ERR_NOMEM, "data: out of memory");
    d->label = b;
    d->cap = cap;
    return SLM_OK;
}

slm_status slm_head_data_add(slm_head_data *d, const char *text, size_t len, const char *label,
                             char *err) {
    slm_status st;
    if (!d || (!text && len)) return slm_errf(err, SLM_ERR_INVALID_ARG, "data: bad arguments");
    if (d->n >= SLM_HEAD_MAX_EXAMPLES)
        return slm_errf(err, SLM_ERR_LIMIT, "data: more than %u examples", SLM_HEAD_MAX_EXAMPLES);
    if (len > SLM_HEAD_MAX_TEXT_BYTES)
        return slm_errf(err, SLM_ERR_LIMIT, "data: text of %zu bytes exceeds %u", len, SLM_HEAD_MAX_TEXT_BYTES);
    if (!slm_head_feat_utf8_valid(text ? text : "", len))
        return slm_errf(err, SLM_ERR_UTF8, "data: text is not valid UTF-8");
    if (label && (strlen(label) >= SLM_HEAD_MAX_LABEL_BYTES || !*label))
        return slm_errf(err, SLM_ERR_LIMIT, "data: label empty or longer than %d bytes", SLM_HEAD_MAX_LABEL_BYTES - 1);
    if (label && !slm_head_feat_utf8_valid(label, strlen(label)))
        return slm_errf(err, SLM_ERR_UTF8, "data: label is not valid UTF-8");
    if (d->n == d->cap && (st = grow(d, err)) != SLM_OK) return st;
    char *t = slm_strndup(text ? text : "", len);
    char *l = label ? slm_strdup(label) : NULL;
    if (!t || (label && !l)) {
        slm_free(t);
        slm_free(l);
        return slm_errf(err, SLM_ERR_NOMEM, "data: out of memory");
    }
    d->text[d->n] = t;
    d->len[d->n] = len;
    d->label[d->n] = l;
    d->n++;
    return SLM_OK;
}

/* ---- CSV -------------------------------------------------------------------------------- */

typedef struct {
    slm_head_data *d;      /* borrowed: the data set being filled */
    const char *text_col;  /* borrowed column names */
    const char *label_col; /* NULL: labels not read */
    long text_idx, label_idx; /* column indices once the header is read; -1 before */
} csv_load;

static slm_status csv_record(void *vctx, size_t nfields, const char *const *fields,
                             const size_t *lens, size_t line, char *err) {
    csv_load *c = vctx;
    slm_status st;
    if (c->text_idx < 0) { /* the header */
        for (size_t i = 0; i < nfields; i++) {
            if (!strcmp(fields[i], c->text_col) && c->text_idx < 0) c->text_idx = (long)i;
            if (c->label_col && !strcmp(fields[i], c->label_col) && c->label_idx < 0) c->label_idx = (long)i;
        }
        if (c->text_idx < 0)
            return slm_errf(err, SLM_ERR_NOT_FOUND, "csv header has no column '%s'", c->text_col);
        if (c->label_col && c->label_idx < 0)
            return slm_errf(err, SLM_ERR_NOT_FOUND, "csv header has no column '%s'", c->label_col);
        return SLM_OK;
    }
    if ((size_t)c->text_idx >= nfields || (c->label_col && (size_t)c->label_idx >= nfields))
        return slm_errf(err, SLM_ERR_CORRUPT, "csv line %zu: %zu fields, fewer than the header's columns",
                        line, nfields);
    if ((st = slm_head_data_add(c->d, fields[c->text_idx], lens[c->text_idx],
                                c->label_col ? fields[c->label_idx] : NULL, err)) != SLM_OK) {
        char detail[SLM_ERR_LEN];
        snprintf(detail, sizeof detail, "%s", err ? err : "");
        return slm_errf(err, st, "csv line %zu: %s", line, detail);
    }
    return SLM_OK;
}

static slm_status load_csv(slm_head_data *d, const char *buf, size_t len, const char *text_col,
                           const char *label_col, char *err) {
    csv_load c = {d, text_col, label_col, -1, -1};
    slm_csv *r = NULL;
    slm_status st = slm_head_csv_create(&r, csv_record, &c, err);
    for (size_t off = 0; st == SLM_OK && off < len; off += DATA_READ_CHUNK)
        st = slm_head_csv_feed(r, buf + off, len - off < DATA_READ_CHUNK ? len - off : DATA_READ_CHUNK, err);
    if (st == SLM_OK) st = slm_head_csv_finish(r, err);
    if (st == SLM_OK && c.text_idx < 0) st = slm_errf(err, SLM_ERR_CORRUPT, "csv: no header row");
    slm_head_csv_destroy(r);
    return st;
}

/* ---- JSON lines ------------------------------------------------------------------------- */

static slm_status load_jsonl(slm_head_data *d, const char *buf, size_t len, const char *text_col,
                             const char *label_col, char *err) {
    size_t line = 0;
    for (size_t off = 0; off < len;) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t ll = end - off;
        const char *s = buf + off;
        slm_status st = SLM_OK;
        line++;
        off = end + 1;
        while (ll && (s[ll - 1] == '\r' || s[ll - 1] == ' ' || s[ll - 1] == '\t')) ll--;
        while (ll && (*s == ' ' || *s == '\t')) { s++; ll--; }
        if (!ll) continue;
        json_error_t je;
        json_t *o = json_loadb(s, ll, JSON_REJECT_DUPLICATES, &je);
        if (!o || !json_is_object(o)) {
            json_decref(o);
            return slm_errf(err, SLM_ERR_CORRUPT, "json line %zu: %s", line, o ? "not an object" : je.text);
        }
        json_t *t = json_object_get(o, text_col);
        json_t *l = label_col ? json_object_get(o, label_col) : NULL;
        if (!json_is_string(t)) st = slm_errf(err, SLM_ERR_NOT_FOUND, "json line %zu: no string '%s'", line, text_col);
        else if (label_col && !json_is_string(l))
            st = slm_errf(err, SLM_ERR_NOT_FOUND, "json line %zu: no string '%s'", line, label_col);
        else if (strlen(json_string_value(t)) != json_string_length(t))
            st = slm_errf(err, SLM_ERR_CORRUPT, "json line %zu: text contains a NUL", line);
        else st = slm_head_data_add(d, json_string_value(t), json_string_length(t),
                                    label_col ? json_string_value(l) : NULL, err);
        json_decref(o);
        if (st != SLM_OK) return st;
    }
    return SLM_OK;
}

/* ---- loading a file --------------------------------------------------------------------- */

static slm_status read_file(const char *path, char **out, size_t *len, char *err) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    if (!f) return slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        if (n == cap) {
            if (cap >= DATA_MAX_FILE_BYTES) {
                slm_free(buf);
                fclose(f);
                return slm_errf(err, SLM_ERR_LIMIT, "%s: larger than %llu bytes", path, DATA_MAX_FILE_BYTES);
            }
            size_t nc = cap ? cap * 2 : DATA_READ_CHUNK;
            char *nb = slm_realloc(buf, nc + 1);
            if (!nb) {
                slm_free(buf);
                fclose(f);
                return slm_errf(err, SLM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        slm_free(buf);
        return slm_errf(err, SLM_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SLM_OK;
}

slm_status slm_head_data_load(const char *path, const char *text_col, const char *label_col,
                              slm_head_data **out, char *err) {
    char *buf = NULL;
    size_t len = 0, p = 0;
    slm_head_data *d = NULL;
    slm_status st;
    if (!path || !text_col || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "data: bad arguments");
    *out = NULL;
    if ((st = read_file(path, &buf, &len, err)) != SLM_OK) return st;
    if ((st = slm_head_data_create(&d, err)) != SLM_OK) goto done;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) p = 3;
    while (p < len && (buf[p] == ' ' || buf[p] == '\t' || buf[p] == '\r' || buf[p] == '\n')) p++;
    if (p < len && buf[p] == '{') st = load_jsonl(d, buf + p, len - p, text_col, label_col, err);
    else st = load_csv(d, buf, len, text_col, label_col, err);
    if (st == SLM_OK) {
        *out = d;
        d = NULL;
    }
done:
    slm_head_data_destroy(d);
    slm_free(buf);
    return st;
}
