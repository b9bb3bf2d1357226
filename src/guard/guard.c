/*
 * guard/guard.c: the guard object and detection: validate the text, run the pattern
 * detectors and the tagger, drop findings under their type's threshold, resolve overlaps
 * and add character offsets.
 *
 * Overlaps: candidates are ranked by score (pattern findings with a small bonus), then
 * length, then position; a candidate is kept when it overlaps no better-ranked kept one.
 * Validated shapes (cards, IBANs, e-mails) outrank every tagger span (tagger scores stop at
 * 0.9); a confident address span may swallow a loose shape such as a house number.
 * After the merge, a bare number of postcode shape next to a kept address or place becomes
 * a ZIP_CODE finding when nothing covers it.
 * Invariants: findings returned are sorted by start, disjoint, on character boundaries.
 * Thread-safety: a slm_guard is read-only after slm_guard_create; detect allocates its own
 *  scratch.
 * Non-goals: rewriting text (guard_ops.c); policy decisions (src/policy).
 */
#include "guard/guard_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/core.h"

/* Threshold for a type whose entry in slm_guard_opts.threshold is negative. Pattern scores
 * put a bare shape without context words below 0.5 and a shape with them above. */
#define DEFAULT_THRESHOLD 0.5f
/* The same for the types only the tagger finds (names, addresses, organisations, places,
 * titles, nationalities): tagger confidences are softmax probabilities capped at 0.9, and on
 * the held-out templates 0.3 trades a point of precision for five of recall (see
 * docs/benchmarks.md); a leaked name costs more than an extra placeholder. */
#define DEFAULT_TAGGER_THRESHOLD 0.3f

/* ---- types ---------------------------------------------------------------------------------- */

static const char *const type_names[SLM_PII_COUNT] = {
    [SLM_PII_PERSON] = "PERSON",
    [SLM_PII_STREET_ADDRESS] = "STREET_ADDRESS",
    [SLM_PII_GPE] = "GPE",
    [SLM_PII_ORGANIZATION] = "ORGANIZATION",
    [SLM_PII_TITLE] = "TITLE",
    [SLM_PII_NRP] = "NRP",
    [SLM_PII_DATE_TIME] = "DATE_TIME",
    [SLM_PII_AGE] = "AGE",
    [SLM_PII_ZIP_CODE] = "ZIP_CODE",
    [SLM_PII_EMAIL_ADDRESS] = "EMAIL_ADDRESS",
    [SLM_PII_PHONE_NUMBER] = "PHONE_NUMBER",
    [SLM_PII_CREDIT_CARD] = "CREDIT_CARD",
    [SLM_PII_IBAN_CODE] = "IBAN_CODE",
    [SLM_PII_US_SSN] = "US_SSN",
    [SLM_PII_US_DRIVER_LICENSE] = "US_DRIVER_LICENSE",
    [SLM_PII_IP_ADDRESS] = "IP_ADDRESS",
    [SLM_PII_URL] = "URL",
    [SLM_PII_DOMAIN_NAME] = "DOMAIN_NAME",
    [SLM_PII_SECRET] = "SECRET",
};

const char *slm_pii_type_name(slm_pii_type type) {
    return (unsigned)type < SLM_PII_COUNT ? type_names[type] : "?";
}

bool slm_pii_type_parse(const char *name, size_t len, slm_pii_type *out) {
    for (int t = 0; t < SLM_PII_COUNT; t++) {
        if (strlen(type_names[t]) == len && !strncasecmp(type_names[t], name, len)) {
            *out = (slm_pii_type)t;
            return true;
        }
    }
    return false;
}

bool slm_pii_types_parse(const char *list, uint32_t *out) {
    uint32_t set = 0;
    const char *p = list;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        slm_pii_type t;
        if (!slm_pii_type_parse(p, n, &t)) return false;
        set |= 1u << t;
        if (!q) break;
        p = q + 1;
    }
    *out = set;
    return true;
}

/* ---- candidates ---------------------------------------------------------------------------------- */

slm_status slm_guard_cands_push(guard_cands *c, slm_pii_type type, size_t start, size_t end,
                                float score, bool tagger, char *err) {
    if (c->n == c->limit)
        return slm_errf(err, SLM_ERR_LIMIT, "more than %zu candidate findings", c->limit);
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64, bytes;
        if (cap > c->limit) cap = c->limit;
        if (!slm_mul_size(cap, sizeof *c->v, &bytes)) return slm_errf(err, SLM_ERR_NOMEM, "findings");
        slm_pii_finding *v = slm_realloc(c->v, bytes);
        if (!v) return slm_errf(err, SLM_ERR_NOMEM, "findings (%zu)", cap);
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (slm_pii_finding){.type = type, .start = start, .end = end, .score = score,
                                     .tagger = tagger};
    return SLM_OK;
}

/* ---- guard object ------------------------------------------------------------------------------------ */

struct slm_guard {
    uint32_t types;                    /* reported types */
    float threshold[SLM_PII_COUNT];    /* per type, resolved */
    size_t max_input;                  /* bytes */
    guard_patterns *patterns;          /* owned */
    guard_tagger *tagger;              /* owned; NULL = patterns only */
};

void slm_guard_opts_default(slm_guard_opts *opts) {
    memset(opts, 0, sizeof *opts);
    opts->types = SLM_PII_ALL;
    for (int t = 0; t < SLM_PII_COUNT; t++) opts->threshold[t] = -1.0f;
}

slm_status slm_guard_create(const slm_guard_opts *opts, slm_guard **out, char *err) {
    slm_status st;
    slm_guard_opts defaults;
    if (!opts) {
        slm_guard_opts_default(&defaults);
        opts = &defaults;
    }
    if (!out) return slm_errf(err, SLM_ERR_INVALID_ARG, "out is NULL");
    slm_guard *g = slm_calloc(1, sizeof *g);
    if (!g) return slm_errf(err, SLM_ERR_NOMEM, "guard");
    g->types = opts->types & SLM_PII_ALL;
    g->max_input = opts->max_input ? opts->max_input : SLM_GUARD_MAX_INPUT;
    if (g->max_input > SLM_GUARD_MAX_INPUT) {
        st = slm_errf(err, SLM_ERR_LIMIT, "max_input %zu above %u", g->max_input, SLM_GUARD_MAX_INPUT);
        goto fail;
    }
    for (int t = 0; t < SLM_PII_COUNT; t++) {
        float th = opts->threshold[t];
        if (th > 1.0f) {
            st = slm_errf(err, SLM_ERR_RANGE, "threshold for %s is %g (> 1)", type_names[t], (double)th);
            goto fail;
        }
        bool tagger_only = t == SLM_PII_PERSON || t == SLM_PII_STREET_ADDRESS || t == SLM_PII_GPE ||
                           t == SLM_PII_ORGANIZATION || t == SLM_PII_TITLE || t == SLM_PII_NRP;
        g->threshold[t] = th >= 0.0f ? th : tagger_only ? DEFAULT_TAGGER_THRESHOLD : DEFAULT_THRESHOLD;
    }
    if ((st = slm_guard_patterns_create(&g->patterns, err))) goto fail;
    if (opts->tagger_path && (st = slm_guard_tagger_load(opts->tagger_path, &g->tagger, err)))
        goto fail;
    *out = g;
    return SLM_OK;
fail:
    slm_guard_destroy(g);
    return st;
}

void slm_guard_destroy(slm_guard *g) {
    if (!g) return;
    slm_guard_patterns_destroy(g->patterns);
    slm_guard_tagger_destroy(g->tagger);
    slm_free(g);
}

uint32_t slm_guard_types(const slm_guard *g) {
    /* types only the tagger produces; ZIP, dates and ages also have patterns */
    const uint32_t tagger_only = (1u << SLM_PII_PERSON) | (1u << SLM_PII_STREET_ADDRESS) | (1u << SLM_PII_GPE) |
                                 (1u << SLM_PII_ORGANIZATION) | (1u << SLM_PII_TITLE) | (1u << SLM_PII_NRP);
    return g->tagger ? g->types : g->types & ~tagger_only;
}

const char *slm_guard_default_tagger(const char *exe_path, char *buf, size_t cap) {
    static const char *const rel[] = {"/models/pii-tagger.bin", "/../models/pii-tagger.bin"};
    struct stat sb;
    const char *env = getenv("SLMESH_PII_TAGGER");
    if (env && *env) {
        if ((size_t)snprintf(buf, cap, "%s", env) >= cap) return NULL;
        return buf;
    }
    if (!exe_path) return NULL;
    const char *slash = strrchr(exe_path, '/');
    size_t dir = slash ? (size_t)(slash - exe_path) : 1;
    const char *dirp = slash ? exe_path : ".";
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        int n = snprintf(buf, cap, "%.*s%s", (int)dir, dirp, rel[i]);
        if (n > 0 && (size_t)n < cap && stat(buf, &sb) == 0 && S_ISREG(sb.st_mode)) return buf;
    }
    return NULL;
}

/* ---- merging ------------------------------------------------------------------------------------------- */

/* Ranking bonus of a pattern finding over a tagger span: a shape match that cleared its
 * threshold beats a weak context guess, while a confident address or name span may still
 * swallow a loose shape inside it (a house number that looks like a phone or a year). */
#define PATTERN_RANK_BONUS 0.15f

static float rank_score(const slm_pii_finding *f) {
    return f->score + (f->tagger ? 0.0f : PATTERN_RANK_BONUS);
}

/* Better candidates first: higher rank score, then longer, then earlier. */
static int by_rank(const void *a, const void *b) {
    const slm_pii_finding *x = a, *y = b;
    float rx = rank_score(x), ry = rank_score(y);
    if (rx != ry) return rx > ry ? -1 : 1;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly) return lx > ly ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Index of the first kept span with start >= pos. */
static size_t kept_lower(const slm_pii_finding *kept, size_t nk, size_t pos) {
    size_t lo = 0, hi = nk;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (kept[mid].start < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static bool alnum_byte(unsigned char c) {
    return (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80;
}

/* Sorted, disjoint findings being kept (grows as needed). */
typedef struct {
    slm_pii_finding *v;  /* owned, n used / cap allocated */
    size_t n, cap;
} kept_list;

/* Insert f at its place by start. */
static slm_status kept_insert(kept_list *k, const slm_pii_finding *f, char *err) {
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64, bytes;
        if (!slm_mul_size(cap, sizeof *k->v, &bytes)) return slm_errf(err, SLM_ERR_NOMEM, "findings");
        slm_pii_finding *v = slm_realloc(k->v, bytes);
        if (!v) return slm_errf(err, SLM_ERR_NOMEM, "findings (%zu)", cap);
        k->v = v;
        k->cap = cap;
    }
    size_t at = kept_lower(k->v, k->n, f->start);
    memmove(k->v + at + 1, k->v + at, (k->n - at) * sizeof *k->v);
    k->v[at] = *f;
    k->n++;
    return SLM_OK;
}

/* Most pieces one clashing tagger span leaves: more means it was mostly covered anyway. */
#define MAX_PIECES 8

/* Keep the best-ranked disjoint subset of v[0..n) in k, sorted by start. A tagger span
 * that clashes with better spans keeps the pieces between them (trimmed to letters and
 * digits at the ends): a long address span should not vanish because a name inside it was
 * found first. Pattern findings are all or nothing: half a card number is no finding. */
static slm_status resolve_overlaps(const char *text, slm_pii_finding *v, size_t n, kept_list *k, char *err) {
    slm_status st;
    qsort(v, n, sizeof *v, by_rank);
    for (size_t i = 0; i < n; i++) {
        size_t lo = kept_lower(k->v, k->n, v[i].start);
        if (lo > 0 && k->v[lo - 1].end > v[i].start) lo--;
        if (!(lo < k->n && k->v[lo].start < v[i].end)) {
            if ((st = kept_insert(k, &v[i], err))) return st;
            continue;
        }
        if (!v[i].tagger) continue;
        size_t ga[MAX_PIECES + 1], gb[MAX_PIECES + 1], ng = 0, cursor = v[i].start;
        for (size_t j = lo; j <= k->n && ng <= MAX_PIECES; j++) {
            bool last = j == k->n || k->v[j].start >= v[i].end;
            size_t a = cursor, b = last ? v[i].end : k->v[j].start;
            while (a < b && !alnum_byte((unsigned char)text[a])) a++;
            while (b > a && !alnum_byte((unsigned char)text[b - 1]) && text[b - 1] != '.') b--;
            if (b > a + 1) {
                ga[ng] = a;
                gb[ng++] = b;
            }
            if (last) break;
            if (k->v[j].end > cursor) cursor = k->v[j].end;
        }
        for (size_t g = 0; g < ng && g < MAX_PIECES; g++) {
            slm_pii_finding piece = v[i];
            piece.start = ga[g];
            piece.end = gb[g];
            if ((st = kept_insert(k, &piece, err))) return st;
        }
    }
    return SLM_OK;
}

/* ---- postcodes next to addresses and places ------------------------------------------------------ */

/* A postcode is mostly a bare number that only its neighbours identify: "Springfield, IL
 * 62704", "Wrocław 53-320", "10115 Berlin". After the merge, a number of postcode shape right
 * after a kept address or place (past separators and an optional upper-case region code such
 * as "IL" or "NSW"), or right before a place at a line start or after a comma, becomes a
 * ZIP_CODE finding when nothing covers it yet. */

/* Score of such a postcode: above the default threshold, below a pattern with its context
 * word ("zip code 12345", 0.9), so an explicit --threshold ZIP_CODE=0.7 turns the rule off. */
#define ADJACENT_ZIP_SCORE 0.6f
/* Separator bytes (spaces, tabs, commas, newlines) skipped between a place and its postcode:
 * covers the padded columns of address blocks ("Tujetsch     7188"). */
#define ADJACENT_ZIP_GAP 12
/* Most postcodes one call adds before they are inserted (the rest are left out). */
#define ADJACENT_ZIP_MAX 64

static bool zip_sep(char c) { return c == ' ' || c == '\t' || c == ',' || c == '\n' || c == '\r'; }
static bool ascii_digit(char c) { return c >= '0' && c <= '9'; }
static bool ascii_upper(char c) { return c >= 'A' && c <= 'Z'; }

/* Length of the run of ASCII digits at text[i..len). */
static size_t digit_run(const char *text, size_t len, size_t i) {
    size_t j = i;
    while (j < len && ascii_digit(text[j])) j++;
    return j - i;
}

/* Bytes of a postcode-shaped number at text[i..len): 3-6 digits, optionally "-" or " " and
 * 2-4 more ("62704-1234", "53-320", "123 45"), or 4 digits and two capitals ("1012 AB");
 * it must end before a letter, a digit or ".5"/"-5". 0 when the shape does not fit. */
static size_t zip_shape(const char *text, size_t len, size_t i) {
    size_t a = digit_run(text, len, i), n = a;
    if (a < 2 || a > 6) return 0;
    if (i + n + 1 < len && (text[i + n] == '-' || text[i + n] == ' ')) {
        size_t b = digit_run(text, len, i + n + 1);
        if (b >= 2 && b <= 4 && (text[i + n] == '-' || (a == 3 && b == 2))) n += 1 + b;
        else if (a == 4 && text[i + n] == ' ' && i + n + 3 <= len && ascii_upper(text[i + n + 1]) &&
                 ascii_upper(text[i + n + 2]))
            n += 3;
    }
    if (n == a && a < 3) return 0;
    if (i + n < len && (alnum_byte((unsigned char)text[i + n]) ||
                        ((text[i + n] == '.' || text[i + n] == '-') && i + n + 1 < len && ascii_digit(text[i + n + 1]))))
        return 0;
    return n;
}

/* True when text[a..b) overlaps no kept finding. */
static bool uncovered(const kept_list *k, size_t a, size_t b) {
    size_t lo = kept_lower(k->v, k->n, a);
    if (lo > 0 && k->v[lo - 1].end > a) return false;
    return !(lo < k->n && k->v[lo].start < b);
}

static slm_status add_adjacent_zips(const char *text, size_t len, kept_list *k, char *err) {
    slm_pii_finding add[ADJACENT_ZIP_MAX];
    size_t na = 0;
    for (size_t j = 0; j < k->n && na < ADJACENT_ZIP_MAX; j++) {
        const slm_pii_finding *f = &k->v[j];
        if (f->type != SLM_PII_GPE && f->type != SLM_PII_STREET_ADDRESS) continue;
        /* after: separators, an optional region code, separators, the number */
        size_t i = f->end, gap = 0;
        while (i < len && gap < ADJACENT_ZIP_GAP && zip_sep(text[i])) i++, gap++;
        if (gap > 0 && i + 2 < len && ascii_upper(text[i]) && ascii_upper(text[i + 1])) {
            size_t r = i + 2;
            if (r < len && ascii_upper(text[r])) r++;
            size_t g2 = 0;
            while (r < len && g2 < ADJACENT_ZIP_GAP && zip_sep(text[r])) r++, g2++;
            if (g2 > 0 && r < len && ascii_digit(text[r])) i = r;
        }
        size_t n = gap > 0 && i < len ? zip_shape(text, len, i) : 0;
        if (n && uncovered(k, i, i + n))
            add[na++] = (slm_pii_finding){.type = SLM_PII_ZIP_CODE, .start = i, .end = i + n,
                                          .score = ADJACENT_ZIP_SCORE};
        /* before a place: "10115 Berlin" at a line start or after ", " */
        if (f->type != SLM_PII_GPE || na >= ADJACENT_ZIP_MAX || f->start < 2 || text[f->start - 1] != ' ') continue;
        size_t e = f->start - 1, s = e;
        while (s > 0 && (ascii_digit(text[s - 1]) || text[s - 1] == '-')) s--;
        bool line_start = s == 0 || text[s - 1] == '\n' || (s >= 2 && text[s - 1] == ' ' && text[s - 2] == ',');
        if (s < e && ascii_digit(text[s]) && line_start && zip_shape(text, len, s) == e - s && e - s >= 4 &&
            uncovered(k, s, e))
            add[na++] = (slm_pii_finding){.type = SLM_PII_ZIP_CODE, .start = s, .end = e, .score = ADJACENT_ZIP_SCORE};
    }
    for (size_t j = 0; j < na; j++) {
        slm_status st;
        if (uncovered(k, add[j].start, add[j].end) && (st = kept_insert(k, &add[j], err))) return st;
    }
    return SLM_OK;
}

/* Fill cstart/cend of sorted findings with one pass over the text. */
static void add_char_offsets(const char *text, slm_pii_finding *v, size_t n) {
    size_t byte = 0, chars = 0;
    for (size_t i = 0; i < n; i++) {
        for (; byte < v[i].start; byte++) chars += ((unsigned char)text[byte] & 0xC0) != 0x80;
        v[i].cstart = chars;
        for (; byte < v[i].end; byte++) chars += ((unsigned char)text[byte] & 0xC0) != 0x80;
        v[i].cend = chars;
    }
}

/* ---- detection ------------------------------------------------------------------------------------------- */

slm_status slm_guard_detect(const slm_guard *g, const char *text, size_t len,
                            slm_pii_finding **out, size_t *count, char *err) {
    slm_status st;
    guard_cands c = {.limit = SLM_GUARD_MAX_FINDINGS * 4};
    kept_list kept = {0};
    if (!g || (!text && len) || !out || !count) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL argument");
    *out = NULL;
    *count = 0;
    if (len > g->max_input)
        return slm_errf(err, SLM_ERR_LIMIT, "input of %zu bytes exceeds the limit of %zu", len, g->max_input);
    size_t bad = slm_guard_utf8_check(text, len);
    if (bad != len) return slm_errf(err, SLM_ERR_UTF8, "invalid UTF-8 at byte %zu", bad);
    if (len == 0) return SLM_OK;

    if ((st = slm_guard_patterns_run(g->patterns, text, len, g->types, &c, err))) goto done;
    if (g->tagger && (st = slm_guard_tagger_run(g->tagger, text, len, g->types, &c, err))) goto done;

    size_t n = 0;
    for (size_t i = 0; i < c.n; i++)
        if (c.v[i].score >= g->threshold[c.v[i].type]) c.v[n++] = c.v[i];
    if (n == 0) goto done;
    if ((st = resolve_overlaps(text, c.v, n, &kept, err))) goto done;
    if ((g->types & (1u << SLM_PII_ZIP_CODE)) && ADJACENT_ZIP_SCORE >= g->threshold[SLM_PII_ZIP_CODE] &&
        (st = add_adjacent_zips(text, len, &kept, err)))
        goto done;
    n = kept.n;
    if (n > SLM_GUARD_MAX_FINDINGS) {
        st = slm_errf(err, SLM_ERR_LIMIT, "%zu findings exceed the limit of %u", n, SLM_GUARD_MAX_FINDINGS);
        goto done;
    }
    add_char_offsets(text, kept.v, n);
    *out = kept.v;
    *count = n;
    kept.v = NULL;
done:
    slm_free(kept.v);
    slm_free(c.v);
    return st;
}
