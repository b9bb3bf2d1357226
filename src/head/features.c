/*
 * head/features.c: the feature pipeline of features.h.
 *
 * Lower-casing uses a small fixed table (ASCII, Latin-1 Supplement, Latin Extended-A, the
 * paired parts of Latin Extended-B and Latin Extended Additional, Greek, Cyrillic,
 * Armenian, fullwidth Latin) rather than PCRE2: PCRE2 has no public per-code-point case
 * mapping (only caseless matching), and a head's features must be identical on every
 * machine whatever library version is installed, which a table in this file guarantees.
 * Scripts without case (CJK, Arabic, ...) need none; the rest of Unicode passes unchanged.
 *
 * Invariants: the hash of an n-gram depends only on its code points and its order.
 * Thread-safety: pure; scratch per thread. Non-goals: full Unicode case folding (ß -> ss).
 */
#include "head/features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "slmesh/head.h"

/* ---- configuration ---------------------------------------------------------------------- */

void slm_head_feat_cfg_default(slm_head_feat_cfg *c) {
    c->hash_bits = 20;
    c->word_min = 1;
    c->word_max = 2;
    c->char_min = 2;
    c->char_max = 5;
    c->sublinear = 1;
    c->text_flags = 0;
    c->word_weight = 1.0f;
    c->char_weight = 1.0f;
    c->embed_weight = 1.0f;
}

slm_status slm_head_feat_cfg_check(const slm_head_feat_cfg *c, char *err) {
    if (c->hash_bits < SLM_HEAD_MIN_HASH_BITS || c->hash_bits > SLM_HEAD_MAX_HASH_BITS)
        return slm_errf(err, SLM_ERR_LIMIT, "hash bits %u outside [%u, %u]", c->hash_bits,
                        SLM_HEAD_MIN_HASH_BITS, SLM_HEAD_MAX_HASH_BITS);
    if (c->word_max > SLM_HEAD_FEAT_MAX_WORD_ORDER || (c->word_max && (c->word_min < 1 || c->word_min > c->word_max)))
        return slm_errf(err, SLM_ERR_LIMIT, "word n-gram orders %u-%u invalid (max %u)", c->word_min,
                        c->word_max, SLM_HEAD_FEAT_MAX_WORD_ORDER);
    if (c->char_max > SLM_HEAD_FEAT_MAX_CHAR_ORDER || (c->char_max && (c->char_min < 1 || c->char_min > c->char_max)))
        return slm_errf(err, SLM_ERR_LIMIT, "character n-gram orders %u-%u invalid (max %u)", c->char_min,
                        c->char_max, SLM_HEAD_FEAT_MAX_CHAR_ORDER);
    if (c->sublinear > 1) return slm_errf(err, SLM_ERR_CORRUPT, "sublinear flag %u is not 0/1", c->sublinear);
    if (c->text_flags & ~SLM_HEAD_FEAT_FLAGS_ALL)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "unknown text normalisation flags 0x%x", c->text_flags);
    float w[3] = {c->word_weight, c->char_weight, c->embed_weight};
    for (int i = 0; i < 3; i++)
        if (!(w[i] >= 0.0f && w[i] <= 1000.0f))
            return slm_errf(err, SLM_ERR_RANGE, "block weight %g outside [0, 1000]", (double)w[i]);
    if (c->word_max == 0 && c->char_max == 0 && c->embed_weight == 0.0f)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "no feature block enabled");
    return SLM_OK;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* Decode one code point at s[*i] (strict); advance *i. Returns false on invalid input. */
static bool utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp) {
    unsigned char c = s[*i];
    uint32_t v, min;
    size_t n;
    if (c < 0x80) { *cp = c; (*i)++; return true; }
    if (c >= 0xC2 && c <= 0xDF) { n = 1; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; v = c & 0x07; min = 0x10000; }
    else return false;
    if (len - *i <= n) return false;
    for (size_t k = 1; k <= n; k++) {
        unsigned char d = s[*i + k];
        if ((d & 0xC0) != 0x80) return false;
        v = (v << 6) | (d & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
    *cp = v;
    *i += n + 1;
    return true;
}

bool slm_head_feat_utf8_valid(const char *s, size_t len) {
    size_t i = 0;
    uint32_t cp;
    while (i < len)
        if (!utf8_next((const unsigned char *)s, len, &i, &cp)) return false;
    return true;
}

/* ---- lower-casing and word characters --------------------------------------------------- */

/* A range where upper- and lower-case letters alternate: upper at even (or odd) offsets. */
typedef struct { uint32_t lo, hi; uint32_t upper_parity; } case_pairs;
/* A range of upper-case letters whose lower case is cp + delta. */
typedef struct { uint32_t lo, hi; int32_t delta; } case_shift;

static const case_shift shifts[] = {
    {0x0041, 0x005A, 32},  /* ASCII */
    {0x00C0, 0x00D6, 32},  /* Latin-1 (0xD7 is the multiplication sign) */
    {0x00D8, 0x00DE, 32},
    {0x0386, 0x0386, 38},  /* Greek with tonos */
    {0x0388, 0x038A, 37},
    {0x038C, 0x038C, 64},
    {0x038E, 0x038F, 63},
    {0x0391, 0x03A1, 32},  /* Greek capitals (0x3A2 is unassigned) */
    {0x03A3, 0x03AB, 32},
    {0x03C2, 0x03C2, 1},   /* final sigma folds to sigma */
    {0x0400, 0x040F, 80},  /* Cyrillic Ѐ-Џ */
    {0x0410, 0x042F, 32},  /* Cyrillic А-Я */
    {0x0531, 0x0556, 48},  /* Armenian */
    {0x0178, 0x0178, -0x0178 + 0x00FF}, /* Ÿ -> ÿ */
    {0x0130, 0x0130, -0x0130 + 0x0069}, /* İ -> i */
    {0xFF21, 0xFF3A, 32},  /* fullwidth Latin */
};

static const case_pairs pairs[] = {
    {0x0100, 0x012F, 0}, /* Latin Extended-A: Ā ā ... */
    {0x0132, 0x0137, 0},
    {0x0139, 0x0148, 1},
    {0x014A, 0x0177, 0},
    {0x0179, 0x017E, 1},
    {0x01CD, 0x01DC, 1}, /* Latin Extended-B, pinyin vowels */
    {0x01DE, 0x01EF, 0},
    {0x01F8, 0x021F, 0},
    {0x0222, 0x0233, 0},
    {0x0460, 0x0481, 0}, /* Cyrillic historic and extended */
    {0x048A, 0x04BF, 0},
    {0x04C1, 0x04CE, 1},
    {0x04D0, 0x052F, 0},
    {0x1E00, 0x1E95, 0}, /* Latin Extended Additional */
    {0x1EA0, 0x1EFF, 0}, /* Vietnamese */
};

uint32_t slm_head_feat_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++)
        if (cp >= shifts[i].lo && cp <= shifts[i].hi) return (uint32_t)((int32_t)cp + shifts[i].delta);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (cp >= pairs[i].lo && cp <= pairs[i].hi && (cp & 1) == pairs[i].upper_parity) return cp + 1;
    return cp;
}

/* Code point ranges that separate words: controls, spaces, punctuation and symbols. */
static const struct { uint32_t lo, hi; } separators[] = {
    {0x0080, 0x00A9}, {0x00AB, 0x00B4}, {0x00B6, 0x00B9}, {0x00BB, 0x00BF}, /* Latin-1 */
    {0x00D7, 0x00D7}, {0x00F7, 0x00F7},
    {0x037E, 0x037E}, {0x0387, 0x0387},   /* Greek question mark, ano teleia */
    {0x055A, 0x055F}, {0x0589, 0x058A},   /* Armenian punctuation */
    {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05F3, 0x05F4}, /* Hebrew */
    {0x060C, 0x060D}, {0x061B, 0x061F}, {0x066A, 0x066D}, {0x06D4, 0x06D4}, /* Arabic */
    {0x0964, 0x0965},                     /* Devanagari danda */
    {0x1680, 0x1680},                     /* Ogham space */
    {0x2000, 0x2BFF},  /* general punctuation, symbols, arrows, maths, box drawing */
    {0x3000, 0x303F},  /* CJK symbols and punctuation */
    {0xFE10, 0xFE1F}, {0xFE30, 0xFE6F},   /* vertical and small forms */
    {0xFEFF, 0xFEFF},                     /* zero-width no-break space */
    {0xFF00, 0xFF0F}, {0xFF1A, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, /* fullwidth */
};

bool slm_head_feat_is_word(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    for (size_t i = 0; i < sizeof separators / sizeof separators[0]; i++)
        if (cp >= separators[i].lo && cp <= separators[i].hi) return false;
    return true;
}

/* ---- hashing ---------------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define SALT_WORD 0x9e3779b97f4a7c15ull /* separates word n-grams of each order */
#define SALT_CHAR 0xc2b2ae3d27d4eb4full /* separates character n-grams of each order */
#define SALT_SKIP 0x165667b19e3779f9ull /* skip bigrams */
#define SALT_EDGE 0x27d4eb2f165667c5ull /* first and last word */

/* MurmurHash3's 64-bit finaliser: every input bit affects every output bit. */
static inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* bucket << 1 | sign, from a 64-bit hash: low bits choose the bucket, the top bit the sign. */
static inline uint32_t key_of(uint64_t h, uint32_t hash_bits) {
    uint32_t bucket = (uint32_t)(h & ((1u << hash_bits) - 1));
    return bucket << 1 | (uint32_t)(h >> 63);
}

/* ---- extraction ------------------------------------------------------------------------- */

void slm_head_feat_scratch_free(slm_head_feat_scratch *s) {
    if (!s) return;
    slm_free(s->cps);
    slm_free(s->tok_hash);
    slm_free(s->tok_start);
    slm_free(s->tok_len);
    slm_free(s->keys);
    slm_free(s->key_tmp);
    slm_free(s->terms);
    memset(s, 0, sizeof *s);
}

/* Keys an extraction can emit for ncp code points: at most word_max word n-grams start at
 * each word, and at most (char_max - char_min + 1) character n-grams at each position of a
 * padded word; a word of L >= 1 code points is L + 2 <= 3L positions long. */
static bool keys_needed(const slm_head_feat_cfg *c, size_t ncp, size_t *out) {
    size_t per_cp = c->word_max + (c->char_max ? 3 * (size_t)(c->char_max - c->char_min + 1) : 0);
    return slm_mul_size(ncp, per_cp + 2, out); /* + skip and edge bigrams */
}

static slm_status scratch_reserve(slm_head_feat_scratch *s, size_t ncp, size_t nkeys, char *err) {
    size_t b1, b2, b3, b4;
    if (ncp <= s->cap && nkeys <= s->key_cap && s->cps) return SLM_OK;
    if (ncp < 64) ncp = 64;
    slm_head_feat_scratch_free(s);
    if (!slm_mul_size(ncp, sizeof(uint32_t), &b1) || !slm_mul_size(ncp, sizeof(uint64_t), &b2) ||
        !slm_mul_size(nkeys, sizeof(uint32_t), &b3) || !slm_mul_size(nkeys, sizeof(slm_head_feat_term), &b4))
        return slm_errf(err, SLM_ERR_LIMIT, "text too long");
    s->cps = slm_malloc(b1);
    s->tok_hash = slm_malloc(b2);
    s->tok_start = slm_malloc(b1);
    s->tok_len = slm_malloc(b1);
    s->keys = slm_malloc(b3);
    s->key_tmp = slm_malloc(b3);
    s->terms = slm_malloc(b4);
    if (!s->cps || !s->tok_hash || !s->tok_start || !s->tok_len || !s->keys || !s->key_tmp || !s->terms) {
        slm_head_feat_scratch_free(s);
        return slm_errf(err, SLM_ERR_NOMEM, "out of memory for features");
    }
    s->cap = ncp;
    s->key_cap = nkeys;
    return SLM_OK;
}

#define RADIX_BITS 8          /* digit width of the key sort */
#define RADIX_MIN 48          /* below this many keys insertion sort is faster */

/* Sort keys[0..n) (each < 2^key_bits) ascending: LSD radix sort through tmp[n], or
 * insertion sort for short lists. A text has a few hundred keys; qsort's comparator calls
 * cost more than the features themselves. */
static void sort_keys(uint32_t *keys, uint32_t *tmp, size_t n, uint32_t key_bits) {
    if (n < RADIX_MIN) {
        for (size_t i = 1; i < n; i++) {
            uint32_t v = keys[i];
            size_t j = i;
            for (; j > 0 && keys[j - 1] > v; j--) keys[j] = keys[j - 1];
            keys[j] = v;
        }
        return;
    }
    uint32_t *src = keys, *dst = tmp;
    for (uint32_t shift = 0; shift < key_bits; shift += RADIX_BITS) {
        size_t count[1u << RADIX_BITS] = {0};
        for (size_t i = 0; i < n; i++) count[(src[i] >> shift) & ((1u << RADIX_BITS) - 1)]++;
        size_t sum = 0;
        for (size_t d = 0; d < (1u << RADIX_BITS); d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & ((1u << RADIX_BITS) - 1)]++] = src[i];
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != keys) memcpy(keys, src, n * sizeof *keys);
}

/* Sort keys[0..n), sum the signs per bucket, write terms; returns the number of terms. */
static size_t merge_keys(uint32_t *keys, uint32_t *tmp, size_t n, uint32_t hash_bits, bool sublinear,
                         slm_head_feat_term *out) {
    size_t nt = 0;
    sort_keys(keys, tmp, n, hash_bits + 1);
    for (size_t i = 0; i < n;) {
        uint32_t bucket = keys[i] >> 1;
        long count = 0;
        for (; i < n && keys[i] >> 1 == bucket; i++) count += (keys[i] & 1) ? -1 : 1;
        if (count == 0) continue; /* colliding n-grams of opposite sign cancelled */
        double tf = (double)labs(count);
        if (sublinear && tf > 1.0) tf = 1.0 + log(tf); /* 1 + ln 1 = 1 */
        out[nt].bucket = bucket;
        out[nt].value = (float)(count > 0 ? tf : -tf);
        nt++;
    }
    return nt;
}

slm_status slm_head_feat_extract(const slm_head_feat_cfg *c, const char *text, size_t len,
                                 slm_head_feat_scratch *s, char *err) {
    const unsigned char *u = (const unsigned char *)text;
    size_t ncp = 0, ntok = 0, nkeys = 0, i = 0;
    slm_status st;
    if (len > SLM_HEAD_MAX_TEXT_BYTES)
        return slm_errf(err, SLM_ERR_LIMIT, "text of %zu bytes exceeds %u", len, SLM_HEAD_MAX_TEXT_BYTES);
    size_t need_keys;
    if (!keys_needed(c, len + 1, &need_keys)) return slm_errf(err, SLM_ERR_LIMIT, "text too long");
    /* cps holds the words' code points, then (spanning mode) the spaced text: 2 (len + 1) */
    if ((st = scratch_reserve(s, 2 * (len + 1), need_keys, err)) != SLM_OK) return st;

    /* decode + lower-case + split into words */
    bool in_word = false;
    while (i < len) {
        uint32_t cp;
        if (!utf8_next(u, len, &i, &cp))
            return slm_errf(err, SLM_ERR_UTF8, "invalid UTF-8 at byte %zu", i);
        if (in_word && (c->text_flags & SLM_HEAD_FEAT_JOIN_APOSTROPHE) && (cp == '\'' || cp == 0x2019)) {
            size_t j = i;
            uint32_t next;
            if (j < len && utf8_next(u, len, &j, &next) && slm_head_feat_is_word(next)) continue;
        }
        if (!slm_head_feat_is_word(cp)) { in_word = false; continue; }
        if ((c->text_flags & SLM_HEAD_FEAT_FOLD_DIGITS) && cp >= '1' && cp <= '9') cp = '0';
        if (!in_word) {
            s->tok_start[ntok] = (uint32_t)ncp;
            s->tok_len[ntok] = 0;
            ntok++;
            in_word = true;
        }
        s->cps[ncp++] = slm_head_feat_lower(cp);
        s->tok_len[ntok - 1]++;
    }

    /* block 0: word n-grams. A word's hash is FNV-1a over its code points; an n-gram
     * chains its words' hashes, then the order salts and the finaliser mixes. */
    for (size_t t = 0; t < ntok; t++) {
        uint64_t h = FNV_OFFSET;
        for (uint32_t k = 0; k < s->tok_len[t]; k++) h = (h ^ s->cps[s->tok_start[t] + k]) * FNV_PRIME;
        s->tok_hash[t] = h;
    }
    if (c->word_max > 0)
        for (size_t t = 0; t < ntok; t++) {
            uint64_t h = 0;
            for (uint32_t n = 1; n <= c->word_max && t + n <= ntok; n++) {
                h = h * FNV_PRIME + s->tok_hash[t + n - 1];
                if (n >= c->word_min) s->keys[nkeys++] = key_of(fmix64(h ^ (SALT_WORD * n)), c->hash_bits);
            }
            if ((c->text_flags & SLM_HEAD_FEAT_SKIP_BIGRAMS) && t + 2 < ntok) /* "w_t _ w_t+2" */
                s->keys[nkeys++] = key_of(fmix64((s->tok_hash[t] * FNV_PRIME + s->tok_hash[t + 2]) ^ SALT_SKIP),
                                          c->hash_bits);
        }
    if ((c->text_flags & SLM_HEAD_FEAT_EDGE_BIGRAMS) && ntok > 0) { /* "<s> w_0", "w_last </s>" */
        s->keys[nkeys++] = key_of(fmix64(s->tok_hash[0] ^ SALT_EDGE), c->hash_bits);
        s->keys[nkeys++] = key_of(fmix64(s->tok_hash[ntok - 1] ^ (SALT_EDGE << 1)), c->hash_bits);
    }
    s->nterms[0] = merge_keys(s->keys, s->key_tmp, nkeys, c->hash_bits, c->sublinear, s->terms);

    /* block 1: character n-grams inside " word " (the pads mark word boundaries) */
    nkeys = 0;
    if (c->char_max > 0 && (c->text_flags & SLM_HEAD_FEAT_CHAR_SPAN)) {
        /* " w1 w2 ... wn ": one sequence, n-grams cross word boundaries */
        uint32_t *q = s->cps + ncp;
        size_t L = 0;
        q[L++] = ' ';
        for (size_t t = 0; t < ntok; t++) {
            memcpy(q + L, s->cps + s->tok_start[t], s->tok_len[t] * sizeof *q);
            L += s->tok_len[t];
            q[L++] = ' ';
        }
        for (size_t a = 0; ntok && a < L; a++) {
            uint64_t h = FNV_OFFSET;
            for (size_t b = a; b < L && b - a < c->char_max; b++) {
                h = (h ^ q[b]) * FNV_PRIME;
                size_t n = b - a + 1;
                if (n >= c->char_min) s->keys[nkeys++] = key_of(fmix64(h ^ (SALT_CHAR * n)), c->hash_bits);
            }
        }
    } else if (c->char_max > 0)
        for (size_t t = 0; t < ntok; t++) {
            const uint32_t *w = s->cps + s->tok_start[t];
            size_t plen = (size_t)s->tok_len[t] + 2; /* padded length */
            for (size_t a = 0; a < plen; a++) {
                uint64_t h = FNV_OFFSET;
                for (size_t b = a; b < plen && b - a < c->char_max; b++) {
                    uint32_t cp = (b == 0 || b == plen - 1) ? ' ' : w[b - 1];
                    h = (h ^ cp) * FNV_PRIME;
                    size_t n = b - a + 1;
                    if (n >= c->char_min) s->keys[nkeys++] = key_of(fmix64(h ^ (SALT_CHAR * n)), c->hash_bits);
                }
            }
        }
    s->nterms[1] = merge_keys(s->keys, s->key_tmp, nkeys, c->hash_bits, c->sublinear, s->terms + s->nterms[0]);
    return SLM_OK;
}

/* ---- vectorising ------------------------------------------------------------------------ */

size_t slm_head_feat_vectorize(const slm_head_feat_cfg *c, const int32_t *col_of,
                               const float *idf, const slm_head_feat_scratch *s,
                               uint32_t *cols, float *vals) {
    const float weight[SLM_HEAD_FEAT_BLOCKS] = {c->word_weight, c->char_weight};
    const slm_head_feat_term *t = s->terms;
    size_t nnz = 0;
    for (int b = 0; b < SLM_HEAD_FEAT_BLOCKS; t += s->nterms[b], b++) {
        size_t start = nnz;
        double norm2 = 0.0;
        for (size_t i = 0; i < s->nterms[b]; i++) {
            int32_t col = col_of[t[i].bucket];
            if (col < 0) continue; /* n-gram unseen at training */
            float v = t[i].value * idf[col];
            cols[nnz] = (uint32_t)col;
            vals[nnz++] = v;
            norm2 += (double)v * v;
        }
        if (norm2 <= 0.0) continue;
        float scale = (float)(weight[b] / sqrt(norm2));
        for (size_t i = start; i < nnz; i++) vals[i] *= scale;
    }
    return nnz;
}
