/*
 * sample/stop.c: stop-string detection over streamed text (see slm_sample_stop in sample.h).
 *
 * State: buf[0..len) is text received but not yet final; its first `given` bytes were
 * handed out by the previous call (the caller may still be reading them through out->text),
 * so each call first drops them. Every call then appends the piece and decides:
 *   - a stop string occurs: release the text before the earliest occurrence, stop;
 *   - else hold back the longest tail that is a proper prefix of some stop string, and any
 *     incomplete UTF-8 sequence before that; release the rest.
 * Invariants: the held tail (len - given after a call) is shorter than the longest stop
 * string plus 3 bytes of UTF-8, and contains no complete stop string. A match is searched
 * only where it can end inside the new bytes: earlier text was already searched.
 * Thread-safety: one thread per detector. Non-goals: regular expressions, case folding.
 */
#include <string.h>

#include "core/core.h"
#include "sample/sample.h"

#define UTF8_MAX_SEQ 4 /* bytes in the longest UTF-8 sequence */

struct slm_sample_stop {
    char **stops;      /* [n] owned NUL-terminated copies */
    size_t *lens;      /* [n] byte lengths, each in [1, SLM_SAMPLE_STOP_MAX_LEN] */
    size_t n;          /* stop strings */
    char *buf;         /* [cap] pending text */
    size_t cap;        /* allocated bytes of buf */
    size_t len;        /* bytes in buf */
    size_t given;      /* leading bytes of buf released by the last call */
    int32_t matched;   /* -1, or the index of the stop string found */
};

/* ---- create / destroy ---------------------------------------------------------------------- */

void slm_sample_stop_destroy(slm_sample_stop *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) slm_free(d->stops[i]);
    slm_free(d->stops);
    slm_free(d->lens);
    slm_free(d->buf);
    slm_free(d);
}

slm_status slm_sample_stop_create(const char *const *stops, size_t n, slm_sample_stop **out, char *err) {
    if (!out) return slm_errf(err, SLM_ERR_INVALID_ARG, "stop: NULL out");
    *out = NULL;
    if (n > SLM_SAMPLE_STOP_MAX)
        return slm_errf(err, SLM_ERR_LIMIT, "stop: %zu stop strings, limit %d", n, SLM_SAMPLE_STOP_MAX);
    if (n > 0 && !stops) return slm_errf(err, SLM_ERR_INVALID_ARG, "stop: NULL list");
    for (size_t i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) return slm_errf(err, SLM_ERR_INVALID_ARG, "stop string %zu: empty", i);
        size_t l = strnlen(stops[i], SLM_SAMPLE_STOP_MAX_LEN + 1);
        if (l > SLM_SAMPLE_STOP_MAX_LEN)
            return slm_errf(err, SLM_ERR_LIMIT, "stop string %zu: longer than %d bytes", i, SLM_SAMPLE_STOP_MAX_LEN);
    }
    slm_sample_stop *d = slm_calloc(1, sizeof *d);
    if (!d) goto nomem;
    if (n > 0) {
        d->stops = slm_calloc(n, sizeof *d->stops);
        d->lens = slm_calloc(n, sizeof *d->lens);
        if (!d->stops || !d->lens) goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        d->stops[i] = slm_strdup(stops[i]);
        if (!d->stops[i]) goto nomem;
        d->n = i + 1; /* destroy frees what exists so far */
        d->lens[i] = strlen(stops[i]);
    }
    /* Room for the longest hold-back plus a typical piece; grows for longer pieces. */
    d->cap = SLM_SAMPLE_STOP_MAX_LEN + UTF8_MAX_SEQ + 256;
    d->buf = slm_malloc(d->cap);
    if (!d->buf) goto nomem;
    d->matched = -1;
    *out = d;
    return SLM_OK;
nomem:
    slm_sample_stop_destroy(d);
    return slm_errf(err, SLM_ERR_NOMEM, "stop: out of memory");
}

void slm_sample_stop_reset(slm_sample_stop *d) {
    if (!d) return;
    d->len = 0;
    d->given = 0;
    d->matched = -1;
}

/* ---- scanning ------------------------------------------------------------------------------- */

/* First occurrence of needle (nl bytes) in hay[from..hl), or hl if none. */
static size_t find(const char *hay, size_t hl, size_t from, const char *needle, size_t nl) {
    if (nl > hl) return hl;
    for (size_t i = from; i + nl <= hl; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nl) == 0) return i;
    }
    return hl;
}

/* Length of the longest tail of buf[0..n) that is a proper prefix of some stop string. */
static size_t partial_tail(const slm_sample_stop *d, const char *buf, size_t n) {
    size_t best = 0;
    for (size_t s = 0; s < d->n; s++) {
        size_t k = d->lens[s] - 1 < n ? d->lens[s] - 1 : n;
        for (; k > best; k--) {
            if (memcmp(buf + n - k, d->stops[s], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* The largest prefix length of buf[0..n) that does not end inside a UTF-8 sequence whose
 * remaining bytes may still arrive (a lead byte followed by fewer continuation bytes than it
 * announces). Invalid bytes are not held: they will never complete. */
static size_t utf8_complete(const char *buf, size_t n) {
    size_t back = n < UTF8_MAX_SEQ - 1 ? n : UTF8_MAX_SEQ - 1;
    for (size_t i = 1; i <= back; i++) {
        unsigned char b = (unsigned char)buf[n - i];
        if ((b & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = b >= 0xF8 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
        return need > i ? n - i : n;
    }
    return n;
}

/* ---- feeding -------------------------------------------------------------------------------- */

static void drop_given(slm_sample_stop *d) {
    if (d->given == 0) return;
    memmove(d->buf, d->buf + d->given, d->len - d->given);
    d->len -= d->given;
    d->given = 0;
}

static void give(slm_sample_stop *d, size_t n, slm_sample_stop_out *out) {
    d->given = n;
    out->text = n ? d->buf : NULL;
    out->len = n;
    out->matched = d->matched;
}

slm_status slm_sample_stop_feed(slm_sample_stop *d, const char *piece, size_t len, slm_sample_stop_out *out,
                                char *err) {
    if (!d || !out || (len > 0 && !piece)) return slm_errf(err, SLM_ERR_INVALID_ARG, "stop: NULL argument");
    out->text = NULL;
    out->len = 0;
    out->matched = d->matched;
    if (d->matched >= 0) return slm_errf(err, SLM_ERR_STATE, "stop: fed after stop string %d matched", (int)d->matched);
    if (len > SLM_SAMPLE_STOP_MAX_PIECE)
        return slm_errf(err, SLM_ERR_LIMIT, "stop: piece of %zu bytes, limit %u", len, SLM_SAMPLE_STOP_MAX_PIECE);
    drop_given(d);
    const size_t old = d->len; /* < SLM_SAMPLE_STOP_MAX_LEN + UTF8_MAX_SEQ: no overflow below */
    if (old + len > d->cap) {
        size_t cap = old + len + 256;
        char *nb = slm_realloc(d->buf, cap);
        if (!nb) return slm_errf(err, SLM_ERR_NOMEM, "stop: out of memory for a %zu-byte piece", len);
        d->buf = nb;
        d->cap = cap;
    }
    if (len) memcpy(d->buf + old, piece, len);
    d->len = old + len;

    /* earliest match; ties go to the earlier stop string (strict <) */
    size_t best = d->len;
    for (size_t s = 0; s < d->n; s++) {
        size_t from = old >= d->lens[s] ? old - d->lens[s] + 1 : 0;
        size_t at = find(d->buf, d->len, from, d->stops[s], d->lens[s]);
        if (at < best) {
            best = at;
            d->matched = (int32_t)s;
        }
    }
    if (d->matched >= 0) {
        give(d, best, out);
        return SLM_OK;
    }
    size_t safe = d->len - partial_tail(d, d->buf, d->len);
    give(d, utf8_complete(d->buf, safe), out);
    return SLM_OK;
}

void slm_sample_stop_flush(slm_sample_stop *d, slm_sample_stop_out *out) {
    out->text = NULL;
    out->len = 0;
    out->matched = d->matched;
    if (d->matched >= 0) return;
    drop_given(d);
    give(d, d->len, out);
}
