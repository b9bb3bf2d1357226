/*
 * tokenizer/tokenizer.c: the parts every vocabulary type shares: loading and validating
 * tokenizer.ggml.* metadata, the string->id map, special-token partitioning, the encode
 * driver (BOS/EOS, SentencePiece's leading space), pieces, decoding and the UTF-8 stream.
 *
 * Behaviour follows the reference runtime (llama.cpp b4748, llama-vocab.cpp): its default
 * special ids per vocabulary type, its token attributes, its special-token partition
 * (longest text first; user-defined tokens always, control/unknown tokens only on request),
 * its piece rules and its detokenizer. Where that runtime trusts the file (special ids out
 * of range are warned about and replaced by defaults) we refuse it as SLM_ERR_CORRUPT.
 *
 * Deliberate differences from the reference, all at edges it aborts on or leaves loose:
 *  - a special id in the file outside the vocabulary is SLM_ERR_CORRUPT (the reference warns
 *    and keeps its default); -1 / 0xFFFFFFFF mean "none";
 *  - a SentencePiece byte with neither a <0xNN> nor a one-byte token becomes the unknown
 *    token (the reference throws); a code point above U+10FFFF is re-encoded as U+FFFD;
 *  - slm_tok_decode removes the SentencePiece prefix space after a leading BOS too, and
 *    applies clean_up_tokenization_spaces only with SLM_TOK_CLEAN_SPACES (lossless default);
 *  - special tokens of equal length are tried in id order (the reference: unspecified).
 *
 * Invariants: see tok_internal.h. Thread-safety: immutable after slm_tok_create; every call
 * keeps its scratch on its own. Non-goals: UGM/RWKV vocabularies, token-attribute hacks for
 * model families other than phi-3.
 */
#include "tokenizer/tok_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* ---- string -> id map ------------------------------------------------------------------- */

#define TOK_MAP_EMPTY UINT32_MAX

/* FNV-1a, 64-bit: short keys, good spread, no tables. */
static uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

slm_status tok_map_init(tok_map *m, size_t n_keys) {
    size_t cap = 16;
    while (cap < 2 * n_keys) cap *= 2; /* n_keys <= 2^22: no overflow */
    m->cap = cap;
    m->slot_off = slm_malloc(cap * sizeof *m->slot_off);
    m->slot_len = slm_malloc(cap * sizeof *m->slot_len);
    m->slot_val = slm_malloc(cap * sizeof *m->slot_val);
    if (!m->slot_off || !m->slot_len || !m->slot_val) {
        tok_map_free(m);
        return SLM_ERR_NOMEM;
    }
    memset(m->slot_off, 0xff, cap * sizeof *m->slot_off);
    return SLM_OK;
}

void tok_map_free(tok_map *m) {
    slm_free(m->slot_off);
    slm_free(m->slot_len);
    slm_free(m->slot_val);
    memset(m, 0, sizeof *m);
}

void tok_map_put(tok_map *m, const char *arena, uint32_t off, uint32_t len, int32_t val, bool *dup) {
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash(arena + off, len) & mask;
    while (m->slot_off[i] != TOK_MAP_EMPTY) {
        if (m->slot_len[i] == len && !memcmp(arena + m->slot_off[i], arena + off, len)) {
            *dup = true;
            return;
        }
        i = (i + 1) & mask;
    }
    m->slot_off[i] = off;
    m->slot_len[i] = len;
    m->slot_val[i] = val;
    *dup = false;
}

int32_t tok_map_get(const tok_map *m, const char *arena, const char *key, size_t len) {
    if (!m->cap || len > UINT32_MAX) return -1;
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash(key, len) & mask;
    while (m->slot_off[i] != TOK_MAP_EMPTY) {
        if (m->slot_len[i] == len && !memcmp(arena + m->slot_off[i], key, len)) return m->slot_val[i];
        i = (i + 1) & mask;
    }
    return -1;
}

/* ---- id vector ----------------------------------------------------------------------------- */

slm_status tok_ids_push(slm_tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        size_t bytes;
        if (!slm_mul_size(cap, sizeof *ids->v, &bytes)) return SLM_ERR_NOMEM;
        int32_t *v = slm_realloc(ids->v, bytes);
        if (!v) return SLM_ERR_NOMEM;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return SLM_OK;
}

/* ---- merge heap -------------------------------------------------------------------------- */

static bool pair_before(const tok_pair *x, const tok_pair *y) {
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

slm_status tok_heap_push(tok_heap *h, tok_pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64, bytes;
        if (!slm_mul_size(cap, sizeof *h->v, &bytes)) return SLM_ERR_NOMEM;
        tok_pair *v = slm_realloc(h->v, bytes);
        if (!v) return SLM_ERR_NOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) { /* sift up */
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = p;
    return SLM_OK;
}

tok_pair tok_heap_pop(tok_heap *h) {
    tok_pair top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) { /* sift the last element down from the root */
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->v[c + 1], &h->v[c])) c++;
        if (!pair_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* ---- UTF-8 --------------------------------------------------------------------------------- */

uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *i) {
    size_t o = *i;
    unsigned char b = s[o];
    if (!(b & 0x80)) {
        *i = o + 1;
        return b;
    }
    size_t k = (b & 0x40) == 0 ? 0 : (b & 0x20) == 0 ? 2 : (b & 0x10) == 0 ? 3 : (b & 0x08) == 0 ? 4 : 0;
    if (k == 0 || o + k > n) goto bad;
    uint32_t cp = b & (0x7f >> k);
    for (size_t j = 1; j < k; j++) {
        if ((s[o + j] & 0xc0) != 0x80) goto bad;
        cp = (cp << 6) | (s[o + j] & 0x3f);
    }
    *i = o + k;
    return cp;
bad:
    *i = o + 1;
    return 0xFFFD;
}

size_t tok_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

bool tok_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* ---- metadata helpers ------------------------------------------------------------------------ */

#define KEY_PREFIX "tokenizer.ggml."

/* Optional special id: absent leaves *id alone; -1 (also written as the u32 0xFFFFFFFF,
 * as in stories260K) means "none"; anything else must be < n_vocab. */
static slm_status get_special_id(const slm_gguf *g, const char *key, int32_t n_vocab, int32_t *id, char *err) {
    int64_t v;
    slm_status st = slm_gguf_get_i64(g, key, &v, NULL);
    if (st == SLM_ERR_NOT_FOUND) return SLM_OK;
    if (st != SLM_OK) return slm_errf(err, SLM_ERR_CORRUPT, "%s: not an integer", key);
    if (v == -1 || v == (int64_t)UINT32_MAX) {
        *id = -1;
        return SLM_OK;
    }
    if (v < 0 || v >= n_vocab)
        return slm_errf(err, SLM_ERR_CORRUPT, "%s = %lld is outside the vocabulary of %d tokens", key, (long long)v,
                        n_vocab);
    *id = (int32_t)v;
    return SLM_OK;
}

static slm_status get_opt_bool(const slm_gguf *g, const char *key, bool *v, char *err) {
    slm_status st = slm_gguf_get_bool(g, key, v, NULL);
    if (st == SLM_ERR_NOT_FOUND) return SLM_OK;
    if (st != SLM_OK) return slm_errf(err, SLM_ERR_CORRUPT, "%s: not a bool", key);
    return SLM_OK;
}

/* Numeric array key: its index and length (>= need), or index -1 when absent. */
static slm_status get_num_arr(const slm_gguf *g, const char *key, uint64_t need, int64_t *kv, char *err) {
    slm_gguf_vtype et;
    uint64_t n;
    *kv = slm_gguf_find_key(g, key);
    if (*kv < 0) return SLM_OK;
    if (slm_gguf_get_arr(g, key, &et, &n, NULL) != SLM_OK || et == SLM_GGUF_STRING || et == SLM_GGUF_ARRAY ||
        et == SLM_GGUF_BOOL)
        return slm_errf(err, SLM_ERR_CORRUPT, "%s: not a numeric array", key);
    if (n < need) return slm_errf(err, SLM_ERR_CORRUPT, "%s: %llu entries for %llu tokens", key,
                                  (unsigned long long)n, (unsigned long long)need);
    return SLM_OK;
}

/* Parse "<0xHH>" -> byte, or -1. */
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- loading ----------------------------------------------------------------------------- */

static int32_t find_text(const slm_tokenizer *t, const char *s) {
    return tok_map_get(&t->vocab, t->text, s, strlen(s));
}

/* Token texts, scores and types -> t->tok, t->text, t->vocab. */
static slm_status load_tokens(slm_tokenizer *t, const slm_gguf *g, char *err) {
    slm_gguf_vtype et;
    uint64_t n;
    slm_status st = slm_gguf_get_arr(g, KEY_PREFIX "tokens", &et, &n, NULL);
    if (st == SLM_ERR_NOT_FOUND) return slm_errf(err, SLM_ERR_CORRUPT, KEY_PREFIX "tokens is missing");
    if (st != SLM_OK || et != SLM_GGUF_STRING)
        return slm_errf(err, SLM_ERR_CORRUPT, KEY_PREFIX "tokens is not a string array");
    if (n == 0) return slm_errf(err, SLM_ERR_CORRUPT, KEY_PREFIX "tokens is empty");
    if (n > SLM_TOK_MAX_VOCAB)
        return slm_errf(err, SLM_ERR_LIMIT, "%llu tokens (limit %d)", (unsigned long long)n, SLM_TOK_MAX_VOCAB);
    int64_t kv_tok = slm_gguf_find_key(g, KEY_PREFIX "tokens");
    int64_t kv_score, kv_type;
    if ((st = get_num_arr(g, KEY_PREFIX "scores", n, &kv_score, err)) != SLM_OK) return st;
    if ((st = get_num_arr(g, KEY_PREFIX "token_type", n, &kv_type, err)) != SLM_OK) return st;

    t->n_vocab = (int32_t)n;
    t->tok = slm_calloc((size_t)n, sizeof *t->tok);
    if (!t->tok) return slm_errf(err, SLM_ERR_NOMEM, "token table");

    /* Arena size: every text plus its NUL; an empty text becomes "[EMPTY_<id>]" as in the
     * reference (at most 16 bytes). Offsets are 32-bit: the arena must stay below 4 GiB. */
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        slm_gguf_str s = slm_gguf_arr_str(g, kv_tok, i);
        if (s.len > TOK_MAX_TOKEN_LEN)
            return slm_errf(err, SLM_ERR_LIMIT, "token %llu is %llu bytes (limit %d)", (unsigned long long)i,
                            (unsigned long long)s.len, TOK_MAX_TOKEN_LEN);
        total += (s.len ? (size_t)s.len : 16) + 1;
    }
    if (total >= UINT32_MAX) return slm_errf(err, SLM_ERR_LIMIT, "token texts total %zu bytes", total);
    t->text = slm_malloc(total);
    if (!t->text) return slm_errf(err, SLM_ERR_NOMEM, "token texts");
    if (tok_map_init(&t->vocab, (size_t)n) != SLM_OK) return slm_errf(err, SLM_ERR_NOMEM, "token map");

    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        slm_gguf_str s = slm_gguf_arr_str(g, kv_tok, i);
        tok_token *tk = &t->tok[i];
        tk->off = (uint32_t)off;
        if (s.len) {
            memcpy(t->text + off, s.ptr, (size_t)s.len);
            tk->len = (uint32_t)s.len;
        } else {
            tk->len = (uint32_t)snprintf(t->text + off, 17, "[EMPTY_%llu]", (unsigned long long)i);
        }
        t->text[off + tk->len] = '\0';
        off += tk->len + 1;
        if ((int32_t)tk->len > t->max_token_len) t->max_token_len = (int32_t)tk->len;
        bool dup;
        tok_map_put(&t->vocab, t->text, tk->off, tk->len, (int32_t)i, &dup);
        if (dup) {
            int32_t first = tok_map_get(&t->vocab, t->text, t->text + tk->off, tk->len);
            return slm_errf(err, SLM_ERR_CORRUPT, "duplicate token text at ids %d and %llu", first,
                            (unsigned long long)i);
        }
        tk->score = kv_score >= 0 ? (float)slm_gguf_arr_f64(g, kv_score, i) : 0.0f;
        tk->attr = TOK_ATTR_NORMAL;
        if (kv_type >= 0) {
            /* tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
             * 5 unused, 6 byte; anything else is "undefined" (as the reference treats it). */
            switch (slm_gguf_arr_i64(g, kv_type, i)) {
            case 1: tk->attr = TOK_ATTR_NORMAL; break;
            case 2: tk->attr = TOK_ATTR_UNKNOWN; break;
            case 3: tk->attr = TOK_ATTR_CONTROL; break;
            case 4: tk->attr = TOK_ATTR_USER_DEFINED; break;
            case 5: tk->attr = TOK_ATTR_UNUSED; break;
            case 6: tk->attr = TOK_ATTR_BYTE; break;
            default: tk->attr = TOK_ATTR_UNDEFINED; break;
            }
        }
    }
    return SLM_OK;
}

/* BPE merges "left right" -> rank (first occurrence wins, as in the reference). */
static slm_status load_merges(slm_tokenizer *t, const slm_gguf *g, char *err) {
    slm_gguf_vtype et;
    uint64_t n;
    slm_status st = slm_gguf_get_arr(g, KEY_PREFIX "merges", &et, &n, NULL);
    if (st == SLM_ERR_NOT_FOUND) return slm_errf(err, SLM_ERR_CORRUPT, KEY_PREFIX "merges is missing (BPE)");
    if (st != SLM_OK || et != SLM_GGUF_STRING)
        return slm_errf(err, SLM_ERR_CORRUPT, KEY_PREFIX "merges is not a string array");
    if (n > TOK_MAX_MERGES)
        return slm_errf(err, SLM_ERR_LIMIT, "%llu merges (limit %d)", (unsigned long long)n, TOK_MAX_MERGES);
    int64_t kv = slm_gguf_find_key(g, KEY_PREFIX "merges");
    size_t total = 1;
    for (uint64_t i = 0; i < n; i++) {
        slm_gguf_str s = slm_gguf_arr_str(g, kv, i);
        if (s.len > 2 * (uint64_t)TOK_MAX_TOKEN_LEN)
            return slm_errf(err, SLM_ERR_LIMIT, "merge %llu is %llu bytes", (unsigned long long)i,
                            (unsigned long long)s.len);
        total += (size_t)s.len;
    }
    if (total >= UINT32_MAX) return slm_errf(err, SLM_ERR_LIMIT, "merges total %zu bytes", total);
    t->merge_text = slm_malloc(total);
    if (!t->merge_text) return slm_errf(err, SLM_ERR_NOMEM, "merges");
    if (tok_map_init(&t->merges, (size_t)n) != SLM_OK) return slm_errf(err, SLM_ERR_NOMEM, "merge map");
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        slm_gguf_str s = slm_gguf_arr_str(g, kv, i);
        /* The reference splits at the first space after the first byte; a line without one
         * becomes the pair ("", "") that no lookup can produce, so it is skipped here. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) continue;
        memcpy(t->merge_text + off, s.ptr, (size_t)s.len);
        bool dup;
        tok_map_put(&t->merges, t->merge_text, (uint32_t)off, (uint32_t)s.len, (int32_t)i, &dup);
        off += (size_t)s.len;
    }
    return SLM_OK;
}

/* The reference's text-based detection of end-of-turn tokens. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<|end_of_text|>", ("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"), /* DeepSeek */
};
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
    "<|end_of_text|>",
};

static void add_eog(slm_tokenizer *t, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    if (t->n_eog < TOK_MAX_EOG) t->eog[t->n_eog++] = id;
}

static void detect_eog(slm_tokenizer *t) {
    if (t->eot < 0) {
        for (int32_t id = 0; id < t->n_vocab && t->eot < 0; id++)
            for (size_t k = 0; k < sizeof eot_texts / sizeof eot_texts[0]; k++)
                if (!strcmp(t->text + t->tok[id].off, eot_texts[k])) {
                    t->eot = id;
                    t->tok[id].attr |= TOK_ATTR_CONTROL;
                    break;
                }
    }
    if (t->eom < 0) {
        int32_t id = find_text(t, "<|eom_id|>");
        if (id >= 0) {
            t->eom = id;
            t->tok[id].attr |= TOK_ATTR_CONTROL;
        }
    }
    for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
        int32_t id = find_text(t, eog_texts[k]);
        if (id >= 0 && (t->tok[id].attr & TOK_ATTR_CONTROL)) add_eog(t, id);
    }
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    add_eog(t, t->eom);
}

/* phi-3 marks its special tokens to swallow the spaces right of them (as the reference
 * does by general.name). */
static void set_family_attrs(slm_tokenizer *t, const slm_gguf *g) {
    slm_gguf_str name;
    if (slm_gguf_get_str(g, "general.name", &name, NULL) != SLM_OK) return;
    char low[128];
    size_t n = name.len < sizeof low - 1 ? (size_t)name.len : sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name.ptr[i]);
    low[n] = '\0';
    if (!strstr(low, "phi-3") && !strstr(low, "phi3")) return;
    for (int32_t i = 0; i < t->n_special; i++) t->tok[t->special[i]].attr |= TOK_ATTR_RSTRIP;
    int32_t id = find_text(t, "</s>");
    if (id >= 0) t->tok[id].attr |= TOK_ATTR_RSTRIP;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (size_t k = 0; k < 3; k++)
        if ((id = find_text(t, keep[k])) >= 0) t->tok[id].attr &= (uint8_t)~TOK_ATTR_RSTRIP;
}

static slm_status build_special(slm_tokenizer *t, char *err) {
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) n++;
    t->special = slm_malloc((size_t)(n ? n : 1) * sizeof *t->special);
    if (!t->special) return slm_errf(err, SLM_ERR_NOMEM, "special tokens");
    t->n_special = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            t->special[t->n_special++] = id;
    /* Longest text first, ties by id (the reference's std::sort leaves ties unspecified; a
     * stable bottom-up merge sort keeps ours deterministic without a qsort context). */
    int32_t *tmp = slm_malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) return slm_errf(err, SLM_ERR_NOMEM, "special tokens");
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                uint32_t li = t->tok[t->special[i]].len, lj = t->tok[t->special[j]].len;
                tmp[k++] = lj > li ? t->special[j++] : t->special[i++];
            }
            while (i < mid) tmp[k++] = t->special[i++];
            while (j < hi) tmp[k++] = t->special[j++];
        }
        memcpy(t->special, tmp, (size_t)n * sizeof *tmp);
    }
    slm_free(tmp);
    return SLM_OK;
}

/* The bytes a token detokenizes to (special tokens included), as the reference's
 * token_to_piece(special = true). Two passes: size, then fill. */
static size_t make_piece(const slm_tokenizer *t, int32_t id, char *out) {
    const tok_token *tk = &t->tok[id];
    const char *s = t->text + tk->off;
    size_t n = tk->len, o = 0;
    if (tk->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        if (out) memcpy(out, s, n);
        return n;
    }
    if (tk->attr & TOK_ATTR_NORMAL) {
        if (t->type == TOK_BPE) {
            /* byte-level alphabet back to bytes; unmapped code points are shown the way the
             * reference shows them ("[UNK_BYTE_0x<utf8 hex><token text>]") */
            size_t i = 0;
            while (i < n) {
                uint32_t cp = tok_utf8_decode((const unsigned char *)s, n, &i);
                int b = tok_unicode_to_byte(cp);
                if (b >= 0) {
                    if (out) out[o] = (char)b;
                    o++;
                } else {
                    char u[4];
                    size_t ul = tok_utf8_encode(cp, u);
                    char buf[64];
                    int k = snprintf(buf, sizeof buf, "[UNK_BYTE_0x");
                    for (size_t j = 0; j < ul; j++) k += snprintf(buf + k, sizeof buf - (size_t)k, "%02x", (unsigned char)u[j]);
                    if (out) {
                        memcpy(out + o, buf, (size_t)k);
                        memcpy(out + o + k, s, n);
                        out[o + (size_t)k + n] = ']';
                    }
                    o += (size_t)k + n + 1;
                }
            }
            return o;
        }
        /* SentencePiece / WordPiece: U+2581 -> space */
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                if (out) out[o] = ' ';
                o++;
                i += 3;
            } else {
                if (out) out[o] = s[i];
                o++;
                i++;
            }
        }
        return o;
    }
    if (tk->attr & TOK_ATTR_BYTE) {
        int b = parse_byte_token(s, n);
        if (out) out[0] = (char)(b < 0 ? 0 : b);
        return 1;
    }
    return 0; /* unused / undefined tokens render as nothing */
}

static slm_status build_pieces(slm_tokenizer *t, char *err) {
    size_t total = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = make_piece(t, id, NULL);
        if (!slm_add_size(total, n, &total) || total >= UINT32_MAX)
            return slm_errf(err, SLM_ERR_LIMIT, "token pieces exceed 4 GiB");
    }
    t->piece = slm_malloc(total ? total : 1);
    if (!t->piece) return slm_errf(err, SLM_ERR_NOMEM, "token pieces");
    size_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->tok[id].poff = (uint32_t)off;
        t->tok[id].plen = (uint32_t)make_piece(t, id, t->piece + off);
        off += t->tok[id].plen;
    }
    return SLM_OK;
}

slm_status slm_tok_create(const slm_gguf *g, slm_tokenizer **out, char *err) {
    slm_status st;
    slm_gguf_str model, pre = {NULL, 0};
    *out = NULL;
    if (!g) return slm_errf(err, SLM_ERR_INVALID_ARG, "no GGUF");
    slm_tokenizer *t = slm_calloc(1, sizeof *t);
    if (!t) return slm_errf(err, SLM_ERR_NOMEM, "tokenizer");

    st = slm_gguf_get_str(g, KEY_PREFIX "model", &model, NULL);
    if (st != SLM_OK) {
        st = slm_errf(err, st == SLM_ERR_NOT_FOUND ? SLM_ERR_NOT_FOUND : SLM_ERR_CORRUPT,
                      KEY_PREFIX "model is %s", st == SLM_ERR_NOT_FOUND ? "missing" : "not a string");
        goto fail;
    }
    if (slm_gguf_get_str(g, KEY_PREFIX "pre", &pre, NULL) != SLM_OK) pre.len = 0;

    /* Defaults per type, as the reference sets them before reading the file's values. */
    t->eot = t->eom = t->sep = t->pad = -1;
    tok_pre_opts po = {false, true, false};
    if (model.len == 5 && !memcmp(model.ptr, "llama", 5)) {
        t->type = TOK_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_space_prefix = true;
        t->add_bos = true;
        t->clean_spaces = false;
    } else if (model.len == 4 && !memcmp(model.ptr, "gpt2", 4)) {
        t->type = TOK_BPE;
        t->bos = 11, t->eos = 11, t->unk = -1;
        st = tok_bpe_pre_create(pre.ptr, (size_t)pre.len, &t->pre, &po, err);
        if (st != SLM_OK) goto fail;
        t->ignore_merges = po.ignore_merges;
        t->clean_spaces = po.clean_spaces;
        t->add_bos = po.add_bos;
    } else if (model.len == 4 && !memcmp(model.ptr, "bert", 4)) {
        t->type = TOK_WPM;
        t->bos = 101, t->eos = -1, t->unk = 100, t->sep = 102, t->pad = 0;
        t->add_bos = true;
        t->add_sep = true;
        t->clean_spaces = true;
    } else {
        st = slm_errf(err, SLM_ERR_UNSUPPORTED, "tokenizer model '%.*s'", (int)(model.len < 64 ? model.len : 64),
                      model.ptr ? model.ptr : "");
        goto fail;
    }
    if ((st = get_opt_bool(g, KEY_PREFIX "add_space_prefix", &t->add_space_prefix, err)) != SLM_OK) goto fail;

    if ((st = load_tokens(t, g, err)) != SLM_OK) goto fail;
    if (t->type == TOK_BPE && (st = load_merges(t, g, err)) != SLM_OK) goto fail;

    /* Default ids that do not exist in a small vocabulary are dropped (as the reference). */
    int32_t *ids[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= t->n_vocab) *ids[i] = -1;
    static const struct { const char *key; size_t field; } keys[] = {
        {KEY_PREFIX "bos_token_id", offsetof(slm_tokenizer, bos)},
        {KEY_PREFIX "eos_token_id", offsetof(slm_tokenizer, eos)},
        {KEY_PREFIX "eot_token_id", offsetof(slm_tokenizer, eot)},
        {KEY_PREFIX "eom_token_id", offsetof(slm_tokenizer, eom)},
        {KEY_PREFIX "unknown_token_id", offsetof(slm_tokenizer, unk)},
        {KEY_PREFIX "seperator_token_id", offsetof(slm_tokenizer, sep)},
        {KEY_PREFIX "padding_token_id", offsetof(slm_tokenizer, pad)},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int32_t *id = (int32_t *)((char *)t + keys[i].field);
        if ((st = get_special_id(g, keys[i].key, t->n_vocab, id, err)) != SLM_OK) goto fail;
    }
    if (t->type == TOK_WPM && (st = get_special_id(g, KEY_PREFIX "cls_token_id", t->n_vocab, &t->bos, err)) != SLM_OK)
        goto fail;
    if ((st = get_opt_bool(g, KEY_PREFIX "add_bos_token", &t->add_bos, err)) != SLM_OK) goto fail;
    if ((st = get_opt_bool(g, KEY_PREFIX "add_eos_token", &t->add_eos, err)) != SLM_OK) goto fail;
    if ((st = get_opt_bool(g, KEY_PREFIX "add_sep_token", &t->add_sep, err)) != SLM_OK) goto fail;
    if ((t->add_bos && t->bos < 0) || (t->add_eos && t->eos < 0) || (t->add_sep && t->sep < 0)) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "the vocabulary asks to add BOS/EOS/SEP but has no such token");
        goto fail;
    }
    if (t->type == TOK_WPM && t->unk < 0) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "WordPiece vocabulary without an unknown token");
        goto fail;
    }

    detect_eog(t);
    if ((st = build_special(t, err)) != SLM_OK) goto fail;
    set_family_attrs(t, g);
    if ((st = build_pieces(t, err)) != SLM_OK) goto fail;
    *out = t;
    return SLM_OK;
fail:
    slm_tok_destroy(t);
    return st;
}

void slm_tok_destroy(slm_tokenizer *t) {
    if (!t) return;
    tok_bpe_pre_destroy(t->pre);
    tok_map_free(&t->vocab);
    tok_map_free(&t->merges);
    slm_free(t->merge_text);
    slm_free(t->special);
    slm_free(t->piece);
    slm_free(t->text);
    slm_free(t->tok);
    slm_free(t);
}

/* ---- accessors ------------------------------------------------------------------------------ */

int32_t slm_tok_n_vocab(const slm_tokenizer *t) { return t->n_vocab; }
int32_t slm_tok_bos(const slm_tokenizer *t) { return t->bos; }
int32_t slm_tok_eos(const slm_tokenizer *t) { return t->eos; }
int32_t slm_tok_eot(const slm_tokenizer *t) { return t->eot; }
int32_t slm_tok_unk(const slm_tokenizer *t) { return t->unk; }
bool slm_tok_adds_bos(const slm_tokenizer *t) { return t->add_bos; }

bool slm_tok_is_eog(const slm_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

bool slm_tok_is_control(const slm_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tok[id].attr & TOK_ATTR_CONTROL);
}

const char *slm_tok_text(const slm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    return t->text + t->tok[id].off;
}

/* ---- special-token partition ------------------------------------------------------------------
 * The text is cut into fragments: raw text, or one special token. For each special token in
 * order (longest first) every raw fragment is searched left to right, exactly as the
 * reference's tokenizer_st_partition, so overlapping candidates resolve the same way. */

typedef struct frag {
    int32_t id;  /* token id, or -1 for raw text */
    size_t off;  /* raw text: byte offset into the input */
    size_t len;  /* raw text: bytes (> 0) */
} frag;

typedef struct frag_vec {
    frag *v;
    size_t n, cap;
} frag_vec;

static slm_status frag_push(frag_vec *f, int32_t id, size_t off, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16, bytes;
        if (!slm_mul_size(cap, sizeof *f->v, &bytes)) return SLM_ERR_NOMEM;
        frag *v = slm_realloc(f->v, bytes);
        if (!v) return SLM_ERR_NOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (frag){id, off, len};
    return SLM_OK;
}

/* First occurrence of needle (nlen >= 1) in hay, or NULL (memmem is not in C11/POSIX). */
static const char *find_bytes(const char *hay, size_t hlen, const char *needle, size_t nlen) {
    while (hlen >= nlen) {
        const char *c = memchr(hay, needle[0], hlen - nlen + 1);
        if (!c) return NULL;
        if (!memcmp(c, needle, nlen)) return c;
        hlen -= (size_t)(c - hay) + 1;
        hay = c + 1;
    }
    return NULL;
}

static bool is_c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Split the raw fragments of *cur on token id into *next; swaps them. */
static slm_status split_on(const slm_tokenizer *t, const char *text, int32_t id, frag_vec *cur, frag_vec *next) {
    const tok_token *tk = &t->tok[id];
    const char *st = t->text + tk->off;
    next->n = 0;
    bool changed = false;
    for (size_t i = 0; i < cur->n; i++) {
        frag f = cur->v[i];
        if (f.id >= 0 || f.len < tk->len) {
            if (frag_push(next, f.id, f.off, f.len) != SLM_OK) return SLM_ERR_NOMEM;
            continue;
        }
        size_t pos = f.off, end = f.off + f.len;
        const char *m;
        while (pos < end && (m = find_bytes(text + pos, end - pos, st, tk->len)) != NULL) {
            size_t at = (size_t)(m - text), left = at - pos;
            if (tk->attr & TOK_ATTR_LSTRIP)
                while (left > 0 && is_c_space(text[pos + left - 1])) left--;
            if (left && frag_push(next, -1, pos, left) != SLM_OK) return SLM_ERR_NOMEM;
            if (frag_push(next, id, 0, 0) != SLM_OK) return SLM_ERR_NOMEM;
            pos = at + tk->len;
            if (tk->attr & TOK_ATTR_RSTRIP)
                while (pos < end && is_c_space(text[pos])) pos++;
            changed = true;
        }
        if (pos < end && frag_push(next, -1, pos, end - pos) != SLM_OK) return SLM_ERR_NOMEM;
    }
    if (changed) {
        frag_vec tmp = *cur;
        *cur = *next;
        *next = tmp;
    }
    return SLM_OK;
}

static slm_status partition(const slm_tokenizer *t, const char *text, size_t len, bool parse_special, frag_vec *out) {
    frag_vec next = {0};
    slm_status st = SLM_OK;
    out->n = 0;
    if (len == 0) return SLM_OK;
    if ((st = frag_push(out, -1, 0, len)) != SLM_OK) return st;
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        const tok_token *tk = &t->tok[id];
        if (!parse_special && (tk->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        if (tk->len > len) continue;
        if ((st = split_on(t, text, id, out, &next)) != SLM_OK) break;
    }
    slm_free(next.v);
    return st;
}

/* ---- encode driver ------------------------------------------------------------------------- */

/* SentencePiece input: optional leading space, then every ' ' escaped as U+2581. */
static slm_status spm_fragment(const slm_tokenizer *t, const char *s, size_t n, bool prefix, slm_tok_ids *out) {
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    size_t cap;
    if (!slm_mul_size(spaces, 2, &cap) || !slm_add_size(cap, n, &cap) || !slm_add_size(cap, prefix ? 1 : 0, &cap))
        return SLM_ERR_NOMEM;
    char *buf = slm_malloc(cap ? cap : 1);
    if (!buf) return SLM_ERR_NOMEM;
    size_t o = 0;
    if (prefix) memcpy(buf, "\xe2\x96\x81", 3), o = 3;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(buf + o, "\xe2\x96\x81", 3), o += 3;
        else buf[o++] = s[i];
    }
    slm_status st = tok_spm_encode(t, buf, o, out);
    slm_free(buf);
    return st;
}

slm_status slm_tok_encode(const slm_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids, size_t cap,
                          size_t *n, char *err) {
    slm_tok_ids out = {0};
    frag_vec fr = {0};
    slm_status st;
    *n = 0;
    if (!text && len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL text");
    if ((st = partition(t, text, len, (flags & SLM_TOK_PARSE_SPECIAL) != 0, &fr)) != SLM_OK) goto done;

    bool add_bos = (flags & SLM_TOK_ADD_BOS) && t->add_bos;
    if (add_bos && (st = tok_ids_push(&out, t->bos)) != SLM_OK) goto done;
    bool prev_special = true; /* SentencePiece: the first raw fragment gets the space prefix */
    for (size_t i = 0; i < fr.n; i++) {
        const frag *f = &fr.v[i];
        if (f->id >= 0) {
            st = tok_ids_push(&out, f->id);
            prev_special = true;
        } else if (t->type == TOK_SPM) {
            st = spm_fragment(t, text + f->off, f->len, t->add_space_prefix && prev_special, &out);
            prev_special = false;
        } else if (t->type == TOK_BPE) {
            st = tok_bpe_encode(t, text + f->off, f->len, &out);
        } else {
            st = tok_wpm_encode(t, text + f->off, f->len, &out);
        }
        if (st != SLM_OK) goto done;
    }
    /* WordPiece: the reference's add_special brackets the text with [CLS] ... [SEP]. */
    if (t->type == TOK_WPM && add_bos && t->add_sep && (st = tok_ids_push(&out, t->sep)) != SLM_OK) goto done;
    if ((flags & SLM_TOK_ADD_EOS) && t->add_eos && (st = tok_ids_push(&out, t->eos)) != SLM_OK) goto done;

    *n = out.n;
    if (out.n > cap) {
        st = slm_errf(err, SLM_ERR_FULL, "%zu tokens do not fit in %zu", out.n, cap);
        if (ids && cap) memcpy(ids, out.v, cap * sizeof *ids);
    } else if (out.n) {
        memcpy(ids, out.v, out.n * sizeof *ids);
    }
done:
    if (st == SLM_ERR_NOMEM) slm_errf(err, st, "encoding %zu bytes", len);
    slm_free(fr.v);
    slm_free(out.v);
    return st;
}

/* ---- pieces and decoding -------------------------------------------------------------------- */

/* Copy n bytes at out[o..] when they fit; always return the new total. */
static size_t put_bytes(char *buf, size_t cap, size_t o, const char *s, size_t n) {
    if (o < cap) memcpy(buf + o, s, n <= cap - o ? n : cap - o);
    return o + n;
}

size_t slm_tok_piece(const slm_tokenizer *t, int32_t id, int flags, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    const tok_token *tk = &t->tok[id];
    if (!(flags & SLM_TOK_PARSE_SPECIAL) && (tk->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return 0;
    if (tk->plen > cap) return tk->plen; /* nothing partial: the caller retries */
    memcpy(buf, t->piece + tk->poff, tk->plen);
    return tk->plen;
}

/* The reference's clean_up_tokenization_spaces, in place over s[0..n); returns the new n. */
static size_t clean_spaces(char *s, size_t n) {
    if (n == 0) return 0;
    size_t o = 1;
    for (size_t i = 1; i < n; i++) { /* " ?", " !", " .", " ," lose the space */
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) o--;
        s[o++] = x;
    }
    n = o, o = 1;
    for (size_t i = 1; i < n; i++) { /* " ' " -> "'" */
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            o--;
            s[++i] = '\0';
        }
        s[o++] = x;
    }
    n = o, o = 1;
    for (size_t i = 1; i < n; i++) { /* " 's", " 'm", " 're", " 've" lose the space */
        char x = s[i];
        if (s[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = s[i + 1];
            if (x1 == 's' || x1 == 'm') o--;
            else if (i + 2 < n && ((x1 == 'r' && s[i + 2] == 'e') || (x1 == 'v' && s[i + 2] == 'e'))) o--;
        }
        s[o++] = x;
    }
    return o;
}

size_t slm_tok_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags, char *buf, size_t cap) {
    size_t o = 0;
    /* SentencePiece: the space the encoder put before the text is removed from the first
     * token after any leading BOS, so that decode(encode(s)) == s with or without BOS. (The
     * reference's llama_detokenize removes it only when the sequence does not start with
     * BOS; its server renders token by token and never removes it - use slm_tok_piece or
     * the stream for continuations.) WordPiece's first word start is removed the same way. */
    bool strip = t->add_space_prefix || t->type == TOK_WPM; /* WordPiece: the U+2581 of the first word */
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) continue;
        const tok_token *tk = &t->tok[id];
        bool skip = !(flags & SLM_TOK_PARSE_SPECIAL) && (tk->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL));
        const char *p = t->piece + tk->poff;
        size_t pl = skip ? 0 : tk->plen;
        if (strip && id == t->bos) {
            o = put_bytes(buf, cap, o, p, pl);
            continue;
        }
        if (strip && pl && *p == ' ') p++, pl--;
        strip = false;
        o = put_bytes(buf, cap, o, p, pl);
    }
    if ((flags & SLM_TOK_CLEAN_SPACES) && t->clean_spaces && o <= cap) o = clean_spaces(buf, o);
    return o;
}

/* ---- streaming ---------------------------------------------------------------------------- */

static const char replacement[3] = {'\xef', '\xbf', '\xbd'}; /* U+FFFD */

void slm_tok_stream_init(slm_tok_stream *s) { memset(s, 0, sizeof *s); }

/* Length of the sequence a lead byte starts (strict UTF-8), or 0 if it cannot start one. */
static uint8_t lead_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) return 2;
    if (b >= 0xe0 && b <= 0xef) return 3;
    if (b >= 0xf0 && b <= 0xf4) return 4;
    return 0;
}

/* Whether b may be continuation byte number pos (1-based) after lead. */
static bool cont_ok(unsigned char lead, size_t pos, unsigned char b) {
    if (pos == 1) {
        if (lead == 0xe0) return b >= 0xa0 && b <= 0xbf;
        if (lead == 0xed) return b >= 0x80 && b <= 0x9f;
        if (lead == 0xf0) return b >= 0x90 && b <= 0xbf;
        if (lead == 0xf4) return b >= 0x80 && b <= 0x8f;
    }
    return b >= 0x80 && b <= 0xbf;
}

slm_status slm_tok_stream_put(slm_tok_stream *s, const char *in, size_t n, char *out, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (n > SIZE_MAX / 4 || cap < SLM_TOK_STREAM_OUT_MAX(n)) return SLM_ERR_FULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)in[i];
        if (s->n_pend == 0) {
            uint8_t k = lead_len(b);
            if (k == 1) out[o++] = (char)b;
            else if (k == 0) memcpy(out + o, replacement, 3), o += 3;
            else s->pend[0] = b, s->n_pend = 1, s->need = k;
            i++;
            continue;
        }
        if (!cont_ok(s->pend[0], s->n_pend, b)) {
            /* the held-back prefix is a maximal invalid subpart; b starts afresh */
            memcpy(out + o, replacement, 3), o += 3;
            s->n_pend = 0, s->need = 0;
            continue;
        }
        s->pend[s->n_pend++] = b;
        i++;
        if (s->n_pend == s->need) {
            memcpy(out + o, s->pend, s->n_pend), o += s->n_pend;
            s->n_pend = 0, s->need = 0;
        }
    }
    *n_out = o;
    return SLM_OK;
}

slm_status slm_tok_stream_token(slm_tok_stream *s, const slm_tokenizer *t, int32_t id, int flags, char *out,
                                size_t cap, size_t *n_out) {
    char piece[SLM_TOK_STREAM_PIECE_MAX];
    *n_out = 0;
    size_t pn = slm_tok_piece(t, id, flags, piece, sizeof piece);
    if (pn > sizeof piece) return SLM_ERR_FULL;
    return slm_tok_stream_put(s, piece, pn, out, cap, n_out);
}

slm_status slm_tok_stream_flush(slm_tok_stream *s, char *out, size_t cap, size_t *n_out) {
    *n_out = 0;
    if (s->n_pend == 0) return SLM_OK;
    if (cap < sizeof replacement) return SLM_ERR_FULL;
    memcpy(out, replacement, sizeof replacement);
    *n_out = sizeof replacement;
    s->n_pend = 0, s->need = 0;
    return SLM_OK;
}
