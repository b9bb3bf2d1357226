/*
 * guard/guard_tagger.c: the sequence tagger that finds people, street addresses,
 * organisations, places (and titles, nationalities, dates, ages, postcodes in context):
 * tokens, hashed word-shape/affix/lexicon/context features, Viterbi decoding, the weights
 * file, and spans with scores, plus span rules (honorifics, speaker labels, capitalised words
 * the model nearly tagged) and a filter for lower-case name spans in cased text. Training
 * lives in guard_train.c.
 *
 * Invariants: the text is valid UTF-8 (guard.c checks); features depend only on a token and
 *  its neighbours within the segment, so training and inference see the same features.
 * Thread-safety: a loaded tagger is read-only; run() allocates its own scratch.
 * Non-goals: scripts without case (the shape features carry less there); nested entities.
 */
#include "guard/guard_tagger.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

const slm_pii_type slm_guard_tag_types[TAG_NTYPES] = {
    SLM_PII_PERSON, SLM_PII_STREET_ADDRESS, SLM_PII_GPE, SLM_PII_ORGANIZATION, SLM_PII_TITLE,
    SLM_PII_NRP, SLM_PII_DATE_TIME, SLM_PII_AGE, SLM_PII_ZIP_CODE,
};

/* Softmax sharpness for per-token confidence: weights are averaged perceptron votes, where a
 * margin of about 4 separates a confident tag from the runner-up. */
#define SCORE_SHARPNESS 0.8f
/* Tagger scores are scaled into [0, TAGGER_MAX_SCORE] so that validated pattern findings
 * (e-mails 0.95, cards, IBANs) win an overlap with a tagger span over the same bytes. */
#define TAGGER_MAX_SCORE 0.9f

/* ---- characters --------------------------------------------------------------------------- */

uint32_t slm_guard_fold_cp(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x130) return 'i';
        if (cp == 0x178) return 0xFF;
        bool odd_upper = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        if (odd_upper) return (cp & 1) ? cp + 1 : cp;
        if (cp == 0x138 || cp == 0x149 || cp == 0x17F) return cp;
        return (cp & 1) ? cp : cp + 1;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    return cp;
}

static bool is_space_cp(uint32_t cp) {
    return cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0xA0 || (cp >= 0x2000 && cp <= 0x200B) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x3000 || cp == 0xFEFF;
}

static bool is_word_cp(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 32) >= 'a' && (cp | 32) <= 'z');
    if (cp <= 0xBF || cp == 0xD7 || cp == 0xF7) return false;          /* Latin-1 symbols */
    if (cp >= 0x2010 && cp <= 0x206F) return false;                     /* general punctuation */
    if (cp >= 0x20A0 && cp <= 0x20CF) return false;                     /* currency */
    if (cp >= 0x2190 && cp <= 0x2BFF) return false;                     /* arrows, symbols */
    if (cp >= 0x3000 && cp <= 0x303F) return false;                     /* CJK punctuation */
    if (cp >= 0x1F000) return false;                                    /* emoji */
    return true;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- tokens ------------------------------------------------------------------------------------ */

void slm_guard_tag_tokens_free(tag_tokens *tt) {
    slm_free(tt->t);
    slm_free(tt->arena);
    memset(tt, 0, sizeof *tt);
}

static slm_status push_token(tag_tokens *tt, char *err) {
    if (tt->n < tt->cap) return SLM_OK;
    size_t cap = tt->cap ? tt->cap * 2 : 256, bytes;
    if (!slm_mul_size(cap, sizeof *tt->t, &bytes)) return slm_errf(err, SLM_ERR_NOMEM, "tokens");
    tag_token *t = slm_realloc(tt->t, bytes);
    if (!t) return slm_errf(err, SLM_ERR_NOMEM, "%zu tokens", cap);
    tt->t = t;
    tt->cap = cap;
    return SLM_OK;
}

/* Fill fold, shape and lexicon of a token whose span is set. */
static void describe_token(tag_tokens *tt, tag_token *tok, const char *text, const guard_lexicon *lx) {
    char *fold = tt->arena + tt->arena_used;
    size_t fl = 0, sl = 0, i = tok->start;
    char last = 0;
    while (i < tok->end) {
        uint32_t cp = slm_guard_utf8_next(text, tok->end, &i);
        uint32_t lc = slm_guard_fold_cp(cp);
        if (fl + 4 <= TAG_WORD_MAX) fl += put_utf8(fold + fl, lc);
        char sc = cp >= '0' && cp <= '9' ? 'd' : lc != cp ? 'X' : is_word_cp(cp) ? 'x'
                 : cp < 0x80 ? (char)cp : '?';
        if (sc != last && sl + 1 < sizeof tok->shape) tok->shape[sl++] = sc;
        last = sc;
    }
    tok->shape[sl] = '\0';
    tok->fold = fold;
    tok->fold_len = (uint16_t)fl;
    tt->arena_used += fl;
    tok->lex = slm_guard_lexicon_get(lx, fold, fl);
    tok->sent_end = fl == 1 && (fold[0] == '.' || fold[0] == '!' || fold[0] == '?' || fold[0] == ':');
}

static size_t cp_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

slm_status slm_guard_tag_tokenize(const char *text, size_t len, const guard_lexicon *lx,
                                  tag_tokens *tt, char *err) {
    slm_status st;
    memset(tt, 0, sizeof *tt);
    /* Folded words are never longer than their token, capped at TAG_WORD_MAX each. */
    tt->arena_cap = len + 1;
    if (!(tt->arena = slm_malloc(tt->arena_cap))) return slm_errf(err, SLM_ERR_NOMEM, "token arena");
    size_t i = 0, chars = 0;
    unsigned newlines = 0;
    while (i < len) {
        size_t at = i, cat = chars;
        uint32_t cp = slm_guard_utf8_next(text, len, &i);
        chars++;
        if (is_space_cp(cp)) {
            newlines += cp == '\n';
            continue;
        }
        if ((st = push_token(tt, err))) goto fail;
        tag_token *tok = &tt->t[tt->n++];
        memset(tok, 0, sizeof *tok);
        tok->start = at;
        tok->cstart = cat;
        tok->nl_before = newlines > 0;
        tok->blank_before = newlines > 1;
        newlines = 0;
        if (is_word_cp(cp)) {
            /* A word runs on through letters and digits, and through a hyphen between them
             * ("e-mail", "Vazquez-Riggs"). */
            while (i < len) {
                size_t j = i;
                uint32_t c2 = slm_guard_utf8_next(text, len, &j);
                if (c2 == '-' && j < len) {
                    size_t k = j;
                    if (!is_word_cp(slm_guard_utf8_next(text, len, &k))) break;
                    i = k;
                    chars += 2;
                    continue;
                }
                if (!is_word_cp(c2)) break;
                i = j;
                chars++;
            }
        }
        tok->end = i;
        describe_token(tt, tok, text, lx);
        /* A period after an honorific or an initial ("Dr.", "J.") does not end a sentence. */
        if (tok->sent_end && tok->fold[0] == '.' && tt->n > 1) {
            const tag_token *prev = &tt->t[tt->n - 2];
            bool initial = prev->end == tok->start && cp_count(prev->fold, prev->fold_len) == 1;
            if (prev->end == tok->start && (initial || (prev->lex & (1u << GUARD_LEX_TITLE))))
                tok->sent_end = false;
        }
    }
    return SLM_OK;
fail:
    slm_guard_tag_tokens_free(tt);
    return st;
}

size_t slm_guard_tag_segment_end(const tag_tokens *tt, size_t from) {
    size_t i = from + 1;
    for (; i < tt->n; i++) {
        size_t len = i - from;
        if (tt->t[i].blank_before || len >= TAG_SEG_HARD) break;
        if (len >= TAG_SEG_SOFT && tt->t[i - 1].sent_end) break;
    }
    return i < tt->n ? i : tt->n;
}

/* ---- features --------------------------------------------------------------------------------- */

/* Feature templates: the first byte of every hashed feature string. */
enum {
    F_BIAS = 1, F_W, F_WM1, F_WP1, F_WM2, F_WP2, F_PRE1, F_PRE2, F_PRE3, F_SUF1, F_SUF2, F_SUF3,
    F_SH, F_SHM1, F_SHP1, F_SHM1SH, F_SHSHP1, F_LEX, F_LEXM1, F_LEXP1, F_LEXM2, F_LEXP2, F_NL,
    F_NLA, F_FIRST, F_LEN, F_WM1SH, F_SHWP1, F_LEXSH, F_SUF4, F_CAPUNK,
};

/* A capitalised word that is not a common English or calendar word: the strongest single
 * cue for a name the lexicons do not know. */
static bool cap_unknown(const tag_token *t) {
    return t->shape[0] == 'X' && !(t->lex & ((1u << GUARD_LEX_COMMON) | (1u << GUARD_LEX_CALENDAR)));
}

static uint32_t fnv_init(unsigned tmpl) { return (2166136261u ^ tmpl) * 16777619u; }
static uint32_t fnv_add(uint32_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}
static uint32_t bucket(uint32_t h) { return (h ^ (h >> 15)) & (TAG_BUCKETS - 1); }

static uint32_t feat_str(unsigned tmpl, const char *s, size_t n) { return bucket(fnv_add(fnv_init(tmpl), s, n)); }

static uint32_t feat_two(unsigned tmpl, const char *a, size_t na, const char *b, size_t nb) {
    uint32_t h = fnv_add(fnv_init(tmpl), a, na);
    h = fnv_add(h, "|", 1);
    return bucket(fnv_add(h, b, nb));
}

/* Byte length of the first k code points of s[0..n) (or of the last k when from_end). */
static size_t cp_prefix(const char *s, size_t n, unsigned k) {
    size_t i = 0;
    for (unsigned c = 0; c < k && i < n; c++) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    }
    return i;
}
static size_t cp_suffix(const char *s, size_t n, unsigned k) {
    size_t i = n;
    for (unsigned c = 0; c < k && i > 0; c++) {
        i--;
        while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    }
    return n - i;
}

static const char *const BOS = "<s>", *const EOS = "</s>";

size_t slm_guard_tag_features(const tag_token *t, size_t n, size_t i, uint32_t *f) {
    size_t k = 0;
    const tag_token *w = &t[i];
    const char *m1 = i > 0 ? t[i - 1].fold : BOS, *p1 = i + 1 < n ? t[i + 1].fold : EOS;
    size_t nm1 = i > 0 ? t[i - 1].fold_len : 3, np1 = i + 1 < n ? t[i + 1].fold_len : 4;
    const char *shm1 = i > 0 ? t[i - 1].shape : BOS, *shp1 = i + 1 < n ? t[i + 1].shape : EOS;
    f[k++] = feat_str(F_BIAS, "", 0);
    f[k++] = feat_str(F_W, w->fold, w->fold_len);
    f[k++] = feat_str(F_WM1, m1, nm1);
    f[k++] = feat_str(F_WP1, p1, np1);
    f[k++] = i > 1 ? feat_str(F_WM2, t[i - 2].fold, t[i - 2].fold_len) : feat_str(F_WM2, BOS, 3);
    f[k++] = i + 2 < n ? feat_str(F_WP2, t[i + 2].fold, t[i + 2].fold_len) : feat_str(F_WP2, EOS, 4);
    static const unsigned pre[3] = {F_PRE1, F_PRE2, F_PRE3}, suf[3] = {F_SUF1, F_SUF2, F_SUF3};
    for (unsigned a = 0; a < 3; a++) {
        size_t pl = cp_prefix(w->fold, w->fold_len, a + 1), sl = cp_suffix(w->fold, w->fold_len, a + 1);
        f[k++] = feat_str(pre[a], w->fold, pl);
        f[k++] = feat_str(suf[a], w->fold + w->fold_len - sl, sl);
    }
    size_t sl4 = cp_suffix(w->fold, w->fold_len, 4);
    f[k++] = feat_str(F_SUF4, w->fold + w->fold_len - sl4, sl4);
    /* capitalised unknown words: this token, and the pattern with its neighbours */
    char cu[3] = {(char)('0' + (i > 0 && cap_unknown(&t[i - 1]))), (char)('0' + cap_unknown(w)),
                  (char)('0' + (i + 1 < n && cap_unknown(&t[i + 1])))};
    f[k++] = feat_str(F_CAPUNK, cu, 3);
    f[k++] = feat_str(F_CAPUNK, cu + 1, 1);
    size_t shl = strlen(w->shape);
    f[k++] = feat_str(F_SH, w->shape, shl);
    f[k++] = feat_str(F_SHM1, shm1, strlen(shm1));
    f[k++] = feat_str(F_SHP1, shp1, strlen(shp1));
    f[k++] = feat_two(F_SHM1SH, shm1, strlen(shm1), w->shape, shl);
    f[k++] = feat_two(F_SHSHP1, w->shape, shl, shp1, strlen(shp1));
    f[k++] = feat_two(F_WM1SH, m1, nm1, w->shape, shl);
    f[k++] = feat_two(F_SHWP1, w->shape, shl, p1, np1);
    /* lexicon classes of the token and its neighbours: one feature per class present */
    const struct { unsigned tmpl; long off; } lexpos[5] = {
        {F_LEX, 0}, {F_LEXM1, -1}, {F_LEXP1, 1}, {F_LEXM2, -2}, {F_LEXP2, 2}};
    for (unsigned p = 0; p < 5; p++) {
        long j = (long)i + lexpos[p].off;
        uint32_t lex = j >= 0 && (size_t)j < n ? t[j].lex : 0;
        for (unsigned c = 0; c < GUARD_LEX_COUNT; c++) {
            if (!(lex & (1u << c))) continue;
            char cb = (char)('a' + c);
            f[k++] = feat_str(lexpos[p].tmpl, &cb, 1);
            if (p == 0) f[k++] = feat_two(F_LEXSH, &cb, 1, w->shape, shl);
        }
    }
    if (w->nl_before) f[k++] = feat_str(F_NL, "", 0);
    if (i + 1 < n && t[i + 1].nl_before) f[k++] = feat_str(F_NLA, "", 0);
    if (i == 0 || t[i - 1].sent_end) f[k++] = feat_str(F_FIRST, "", 0);
    char lb = (char)('0' + (w->fold_len > 9 ? 9 : w->fold_len));
    f[k++] = feat_str(F_LEN, &lb, 1);
    return k; /* <= TAG_MAX_FEATS by construction */
}

/* ---- decoding -------------------------------------------------------------------------------------- */

void slm_guard_tag_viterbi(const float *emit, size_t n, const float *trans, float *score,
                           uint8_t *back, uint8_t *path) {
    const float NEG = -1e30f;
    /* transitions with the BIO constraint folded in, so the inner loop has no branches */
    float tr[(TAG_NTAGS + 1) * TAG_NTAGS];
    for (unsigned p = 0; p <= TAG_NTAGS; p++)
        for (unsigned t = 0; t < TAG_NTAGS; t++)
            tr[p * TAG_NTAGS + t] = slm_guard_tag_allowed(p, t) ? trans[p * TAG_NTAGS + t] : NEG;
    for (unsigned t = 0; t < TAG_NTAGS; t++) score[t] = tr[TAG_NTAGS * TAG_NTAGS + t] + emit[t];
    for (size_t i = 1; i < n; i++) {
        const float *prev = score + (i - 1) * TAG_NTAGS;
        for (unsigned t = 0; t < TAG_NTAGS; t++) {
            /* best previous tag p for tag t: max over p of prev[p] + tr[p][t] */
            float best = prev[0] + tr[t];
            unsigned arg = 0;
            for (unsigned p = 1; p < TAG_NTAGS; p++) {
                float v = prev[p] + tr[p * TAG_NTAGS + t];
                if (v > best) { best = v; arg = p; }
            }
            score[i * TAG_NTAGS + t] = best + emit[i * TAG_NTAGS + t];
            back[i * TAG_NTAGS + t] = (uint8_t)arg;
        }
    }
    unsigned best_t = 0;
    for (unsigned t = 1; t < TAG_NTAGS; t++)
        if (score[(n - 1) * TAG_NTAGS + t] > score[(n - 1) * TAG_NTAGS + best_t]) best_t = t;
    for (size_t i = n; i-- > 0;) {
        path[i] = (uint8_t)best_t;
        if (i) best_t = back[i * TAG_NTAGS + best_t];
    }
}

/* ---- weights file -------------------------------------------------------------------------------------- */

struct guard_tagger {
    float *emit;             /* owned: TAG_BUCKETS x TAG_NTAGS */
    float trans[TAG_NTRANS]; /* (TAG_NTAGS + 1) x TAG_NTAGS; last row = start */
    guard_lexicon *lex;      /* owned */
};

#define HEADER_BYTES (8 + 4 * 4 + 4 * TAG_NTYPES + 4)
#define FILE_BYTES (HEADER_BYTES + 2 * ((size_t)TAG_BUCKETS * TAG_NTAGS + TAG_NTRANS) + 8)

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t fnv64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

slm_status slm_guard_tag_save(const char *path, const float *emit, const float *trans, size_t *bytes, char *err) {
    slm_status st = SLM_OK;
    unsigned char *buf = slm_malloc(FILE_BYTES);
    FILE *f = NULL;
    if (!buf) return slm_errf(err, SLM_ERR_NOMEM, "weights buffer");
    float maxw = 1e-6f;
    size_t ne = (size_t)TAG_BUCKETS * TAG_NTAGS;
    for (size_t i = 0; i < ne; i++) maxw = fmaxf(maxw, fabsf(emit[i]));
    for (size_t i = 0; i < TAG_NTRANS; i++) maxw = fmaxf(maxw, fabsf(trans[i]));
    float scale = 32767.0f / maxw;
    unsigned char *p = buf;
    memcpy(p, TAG_FILE_MAGIC, 8);
    put_u32(p + 8, TAG_FILE_VERSION);
    put_u32(p + 12, TAG_BUCKET_BITS);
    put_u32(p + 16, TAG_NTAGS);
    put_u32(p + 20, TAG_NTYPES);
    for (unsigned k = 0; k < TAG_NTYPES; k++) put_u32(p + 24 + 4 * k, (uint32_t)slm_guard_tag_types[k]);
    uint32_t sbits;
    memcpy(&sbits, &scale, 4);
    put_u32(p + 24 + 4 * TAG_NTYPES, sbits);
    p += HEADER_BYTES;
    for (size_t i = 0; i < ne + TAG_NTRANS; i++) {
        float w = i < ne ? emit[i] : trans[i - ne];
        long q = lroundf(w * scale);
        uint16_t u = (uint16_t)(int16_t)(q > 32767 ? 32767 : q < -32767 ? -32767 : q);
        p[0] = (unsigned char)u;
        p[1] = (unsigned char)(u >> 8);
        p += 2;
    }
    uint64_t h = fnv64(buf, (size_t)(p - buf));
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(h >> (8 * i));
    if (!(f = fopen(path, "wb")) || fwrite(buf, 1, FILE_BYTES, f) != FILE_BYTES) {
        st = slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (fclose(f) != 0) {
        f = NULL;
        st = slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    f = NULL;
    *bytes = FILE_BYTES;
done:
    if (f) fclose(f);
    slm_free(buf);
    return st;
}

void slm_guard_tagger_destroy(guard_tagger *t) {
    if (!t) return;
    slm_free(t->emit);
    slm_guard_lexicon_destroy(t->lex);
    slm_free(t);
}

slm_status slm_guard_tagger_load(const char *path, guard_tagger **out, char *err) {
    slm_status st = SLM_OK;
    unsigned char *buf = NULL;
    guard_tagger *t = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    if (!(buf = slm_malloc(FILE_BYTES + 1))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "weights buffer");
        goto done;
    }
    size_t got = fread(buf, 1, FILE_BYTES + 1, f);
    if (got < HEADER_BYTES || memcmp(buf, TAG_FILE_MAGIC, 8)) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "%s: not a slmesh PII tagger file", path);
        goto done;
    }
    if (get_u32(buf + 8) != TAG_FILE_VERSION || get_u32(buf + 12) != TAG_BUCKET_BITS ||
        get_u32(buf + 16) != TAG_NTAGS || get_u32(buf + 20) != TAG_NTYPES) {
        st = slm_errf(err, SLM_ERR_UNSUPPORTED, "%s: version %u with %u-bit table, %u tags (expected %u, %u, %u)",
                      path, get_u32(buf + 8), get_u32(buf + 12), get_u32(buf + 16), TAG_FILE_VERSION,
                      TAG_BUCKET_BITS, TAG_NTAGS);
        goto done;
    }
    for (unsigned k = 0; k < TAG_NTYPES; k++) {
        if (get_u32(buf + 24 + 4 * k) != (uint32_t)slm_guard_tag_types[k]) {
            st = slm_errf(err, SLM_ERR_UNSUPPORTED, "%s: type table differs from this build", path);
            goto done;
        }
    }
    if (got != FILE_BYTES) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "%s: %zu bytes, expected %zu", path, got, (size_t)FILE_BYTES);
        goto done;
    }
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) h |= (uint64_t)buf[FILE_BYTES - 8 + i] << (8 * i);
    if (h != fnv64(buf, FILE_BYTES - 8)) {
        st = slm_errf(err, SLM_ERR_TAMPERED, "%s: checksum mismatch", path);
        goto done;
    }
    float scale;
    uint32_t sbits = get_u32(buf + 24 + 4 * TAG_NTYPES);
    memcpy(&scale, &sbits, 4);
    if (!(scale > 0.0f) || !isfinite(scale)) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "%s: bad scale", path);
        goto done;
    }
    size_t ne = (size_t)TAG_BUCKETS * TAG_NTAGS;
    if (!(t = slm_calloc(1, sizeof *t)) || !(t->emit = slm_malloc(ne * sizeof *t->emit))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "tagger weights");
        goto done;
    }
    if ((st = slm_guard_lexicon_create(&t->lex, err))) goto done;
    const unsigned char *p = buf + HEADER_BYTES;
    for (size_t i = 0; i < ne + TAG_NTRANS; i++, p += 2) {
        float w = (float)(int16_t)(uint16_t)(p[0] | p[1] << 8) / scale;
        if (i < ne) t->emit[i] = w;
        else t->trans[i - ne] = w;
    }
    *out = t;
    t = NULL;
done:
    slm_guard_tagger_destroy(t);
    slm_free(buf);
    fclose(f);
    return st;
}

uint32_t slm_guard_tagger_types(const guard_tagger *t) {
    uint32_t set = 0;
    (void)t;
    for (unsigned k = 0; k < TAG_NTYPES; k++) set |= 1u << slm_guard_tag_types[k];
    return set;
}

/* ---- inference ------------------------------------------------------------------------------------- */

/* Emission scores of tokens [from, to) into emit (row per token). */
static void emissions(const guard_tagger *tg, const tag_token *tok, size_t n, float *emit) {
    uint32_t feats[TAG_MAX_FEATS];
    for (size_t i = 0; i < n; i++) {
        float *e = emit + i * TAG_NTAGS;
        memset(e, 0, TAG_NTAGS * sizeof *e);
        size_t nf = slm_guard_tag_features(tok, n, i, feats);
        for (size_t k = 0; k < nf; k++) {
            const float *w = tg->emit + (size_t)feats[k] * TAG_NTAGS;
            for (unsigned t = 0; t < TAG_NTAGS; t++) e[t] += w[t];
        }
    }
}

/* Confidence of the chosen tag at token i: softmax over tags given the chosen previous tag. */
static float token_conf(const guard_tagger *tg, const float *emit, const uint8_t *path, size_t i) {
    unsigned prev = i ? path[i - 1] : TAG_NTAGS;
    float s[TAG_NTAGS], mx = -1e30f, z = 0.0f;
    for (unsigned t = 0; t < TAG_NTAGS; t++) {
        s[t] = slm_guard_tag_allowed(prev, t) ? (emit[i * TAG_NTAGS + t] + tg->trans[prev * TAG_NTAGS + t]) * SCORE_SHARPNESS : -1e30f;
        if (s[t] > mx) mx = s[t];
    }
    for (unsigned t = 0; t < TAG_NTAGS; t++) z += expf(s[t] - mx);
    return expf(s[path[i]] - mx) / z;
}

/* Scores of the two rule spans below: an honorific before a name is nearly certain; a
 * capitalised speaker label at a line start ("Alice: ...") is a good guess. */
#define RULE_HONORIFIC_SCORE 0.8f
#define RULE_SPEAKER_SCORE 0.6f

static bool alpha_word(const tag_token *t) {
    return t->shape[0] == 'X' || t->shape[0] == 'x';
}

/* Rules that add what the model rarely saw in training: the one or two words after an
 * honorific ("Ms. Rennie", "mr. elliott"), and a speaker label at the start of a line
 * ("Alice: Who are you?"). Candidates go through the same merge as model spans. */
static slm_status rule_spans(const tag_token *t, size_t n, uint32_t types, guard_cands *c, char *err) {
    if (!(types & (1u << SLM_PII_PERSON))) return SLM_OK;
    /* words that are not a name even when capitalised after an honorific */
    const uint32_t plain = (1u << GUARD_LEX_COMMON) | (1u << GUARD_LEX_CALENDAR) | (1u << GUARD_LEX_TITLE);
    for (size_t i = 0; i < n; i++) {
        slm_status st;
        if ((t[i].lex & (1u << GUARD_LEX_TITLE)) && alpha_word(&t[i])) {
            size_t j = i + 1;
            if (j < n && t[j].fold_len == 1 && t[j].fold[0] == '.' && t[j].start == t[i].end) j++;
            size_t k = j;
            while (k < n && k < j + 2 && alpha_word(&t[k]) && !(t[k].lex & plain) && !t[k].nl_before) k++;
            if (k > j && (st = slm_guard_cands_push(c, SLM_PII_PERSON, t[j].start, t[k - 1].end,
                                                    RULE_HONORIFIC_SCORE, true, err)))
                return st;
            if (k > j && (types & (1u << SLM_PII_TITLE)) &&
                (st = slm_guard_cands_push(c, SLM_PII_TITLE, t[i].start, t[j - 1].end, RULE_HONORIFIC_SCORE,
                                           true, err)))
                return st;
        }
        if ((i == 0 || t[i].nl_before) && cap_unknown(&t[i])) {
            size_t k = i + 1;
            if (k < n && cap_unknown(&t[k]) && !t[k].nl_before) k++;
            if (k < n && t[k].fold_len == 1 && t[k].fold[0] == ':' &&
                (st = slm_guard_cands_push(c, SLM_PII_PERSON, t[i].start, t[k - 1].end,
                                           RULE_SPEAKER_SCORE, true, err)))
                return st;
        }
    }
    return SLM_OK;
}

/* Score of a capitalised run the model left untagged: just above the default threshold of the
 * name types (0.3), below every model span, so any model or pattern finding wins an overlap. */
#define PROPER_NOUN_SCORE 0.35f
/* Least local probability of a name tag for such a run. On the held-out templates of
 * train.json (4 folds x 6 seeds), floors from 0.005 to 0.2 gave the same recall within 0.3
 * points; without a floor precision fell by 7 points (capitalised title words). */
#define PROPER_NOUN_MIN_PROB 0.05f

/* Local probability (softmax of emission + transition, as token_conf) of the best
 * "begin a name" tag (PERSON, GPE or ORGANIZATION) at token i; its type in *type. */
static float name_prob(const guard_tagger *tg, const float *emit, const uint8_t *path, size_t i, slm_pii_type *type) {
    static const unsigned name_k[] = {0, 2, 3}; /* PERSON, GPE, ORGANIZATION in slm_guard_tag_types */
    unsigned prev = i ? path[i - 1] : TAG_NTAGS;
    float s[TAG_NTAGS], mx = -1e30f, z = 0.0f, best = 0.0f;
    for (unsigned t = 0; t < TAG_NTAGS; t++) {
        s[t] = slm_guard_tag_allowed(prev, t) ? (emit[i * TAG_NTAGS + t] + tg->trans[prev * TAG_NTAGS + t]) * SCORE_SHARPNESS : -1e30f;
        if (s[t] > mx) mx = s[t];
    }
    for (unsigned t = 0; t < TAG_NTAGS; t++) z += expf(s[t] - mx);
    *type = SLM_PII_ORGANIZATION;
    for (size_t q = 0; q < sizeof name_k / sizeof name_k[0]; q++) {
        float p = expf(s[1 + 2 * name_k[q]] - mx) / z;
        if (p > best) {
            best = p;
            *type = slm_guard_tag_types[name_k[q]];
        }
    }
    return best;
}

/* A word that looks like a proper noun: "Xx" shape, not a common or calendar word. */
static bool proper_word(const tag_token *t) {
    return cap_unknown(t) && t->shape[1] == 'x' && t->shape[2] == '\0' && !(t->lex & (1u << GUARD_LEX_TITLE));
}

/* Capitalised words inside a sentence that the model tagged O although it gave a name tag a
 * fair chance (>= min_prob): most often made-up company names in contexts the training data
 * lacks ("The Mint office", "for Hellowallet"). They become candidates of the likeliest name
 * type at a low score: a leaked name costs more than an extra placeholder. The first word of
 * a sentence or line is skipped (capitalised anyway). The probability floor was chosen by
 * cross-validation over train.json's templates (docs/governance.md, quality). */
static slm_status proper_noun_spans(const guard_tagger *tg, const tag_token *t, size_t n, const float *emit,
                                    const uint8_t *path, uint32_t types, guard_cands *c, char *err) {
    for (size_t i = 1; i < n; i++) {
        slm_pii_type type;
        if (path[i] != 0 || !proper_word(&t[i]) || t[i - 1].sent_end || t[i].nl_before ||
            name_prob(tg, emit, path, i, &type) < PROPER_NOUN_MIN_PROB || !(types & (1u << type)))
            continue;
        size_t k = i + 1;
        while (k < n && path[k] == 0 && proper_word(&t[k]) && !t[k].nl_before) k++;
        slm_status st;
        if ((st = slm_guard_cands_push(c, type, t[i].start, t[k - 1].end, PROPER_NOUN_SCORE, true, err))) return st;
        i = k;
    }
    return SLM_OK;
}

/* True when a token of tok[i..j) has shape letter c ('X' upper case, 'x' lower, 'd' digit). */
static bool any_shape(const tag_token *tok, size_t i, size_t j, char c) {
    for (; i < j; i++)
        if (strchr(tok[i].shape, c)) return true;
    return false;
}

/* A name span that is not worth a placeholder: no letter at all ("3... 2.."), or only
 * lower-case words in a segment that uses capitals elsewhere ("a community orchestra", "on
 * the basis of race", "species including lemurs") unless a word is in the lexicon class of
 * the type (a first name, a place, a nationality). Names are written capitalised; in
 * all-lower-case text (chat) the span is kept. On the held-out templates of train.json this
 * removed most false names at no recall cost (docs/governance.md, quality). */
static bool implausible_name(slm_pii_type type, const tag_token *tok, size_t i, size_t j, bool cased) {
    guard_lex_class vouch;
    switch (type) {
    case SLM_PII_PERSON: vouch = GUARD_LEX_FIRST; break;
    case SLM_PII_GPE: vouch = GUARD_LEX_PLACE; break;
    case SLM_PII_NRP: vouch = GUARD_LEX_NRP; break;
    case SLM_PII_ORGANIZATION: vouch = GUARD_LEX_BRAND; break;
    default: return false;
    }
    if (!any_shape(tok, i, j, 'X') && !any_shape(tok, i, j, 'x')) return true;
    if (!cased || any_shape(tok, i, j, 'X') || any_shape(tok, i, j, 'd')) return false;
    for (size_t k = i; k < j; k++)
        if (tok[k].lex & (1u << vouch)) return false;
    return true;
}

slm_status slm_guard_tagger_run(const guard_tagger *tg, const char *text, size_t len, uint32_t types,
                                guard_cands *c, char *err) {
    slm_status st;
    tag_tokens tt;
    float *emit = NULL, *score = NULL;
    uint8_t *back = NULL, *path = NULL;
    if ((st = slm_guard_tag_tokenize(text, len, tg->lex, &tt, err))) return st;
    emit = slm_malloc(TAG_SEG_HARD * TAG_NTAGS * sizeof *emit);
    score = slm_malloc(TAG_SEG_HARD * TAG_NTAGS * sizeof *score);
    back = slm_malloc(TAG_SEG_HARD * TAG_NTAGS);
    path = slm_malloc(TAG_SEG_HARD);
    if (!emit || !score || !back || !path) {
        st = slm_errf(err, SLM_ERR_NOMEM, "tagger scratch");
        goto done;
    }
    for (size_t from = 0; from < tt.n;) {
        size_t to = slm_guard_tag_segment_end(&tt, from), n = to - from;
        const tag_token *tok = tt.t + from;
        bool cased = any_shape(tok, 0, n, 'X');
        emissions(tg, tok, n, emit);
        slm_guard_tag_viterbi(emit, n, tg->trans, score, back, path);
        for (size_t i = 0; i < n;) {
            if (path[i] == 0) { i++; continue; }
            unsigned k = (path[i] - 1) / 2;
            size_t j = i + 1;
            float conf = token_conf(tg, emit, path, i);
            while (j < n && path[j] == 2 + 2 * k) conf += token_conf(tg, emit, path, j++);
            slm_pii_type type = slm_guard_tag_types[k];
            /* a lone character ("x", "-") is never worth a placeholder */
            if ((types & (1u << type)) && tok[j - 1].end - tok[i].start >= 2 && !implausible_name(type, tok, i, j, cased)) {
                if ((st = slm_guard_cands_push(c, type, tok[i].start, tok[j - 1].end,
                                                 TAGGER_MAX_SCORE * conf / (float)(j - i), true, err)))
                    goto done;
            }
            i = j;
        }
        if ((st = rule_spans(tok, n, types, c, err))) goto done;
        if (cased && (st = proper_noun_spans(tg, tok, n, emit, path, types, c, err))) goto done;
        from = to;
    }
done:
    slm_free(emit);
    slm_free(score);
    slm_free(back);
    slm_free(path);
    slm_guard_tag_tokens_free(&tt);
    return st;
}
