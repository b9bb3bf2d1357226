/*
 * tokenizer/tok_wpm.c: WordPiece encoding (tokenizer.ggml.model = "bert"), the reference
 * runtime's llm_tokenizer_wpm (b4748):
 *  - normalise: each code point is replaced by the first code point of its NFD
 *    decomposition (this drops accents), control characters, U+0000 and U+FFFD are removed,
 *    everything is lower-cased;
 *  - split: whitespace ends a word; punctuation, ASCII symbols and CJK ideographs are words
 *    of one character;
 *  - each word, prefixed with U+2581 (the GGUF spelling of a word start; continuation
 *    pieces carry no "##" there), is cut greedily into the longest vocabulary tokens from
 *    the left; a word that cannot be cut completely becomes the unknown token.
 *
 * Cost: O(word bytes x longest token) lookups per word. Thread-safety: per-call state.
 * Non-goals: NFKC and the other BERT normaliser options of newer runtimes.
 */
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_unicode.h"

#include <string.h>

#include "core/core.h"

/* ---- Unicode lookups (tables in tok_unicode_data.c) ------------------------------------ */

static bool in_ranges(const tok_uc_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first) hi = mid;
        else if (cp > r[mid].last) lo = mid + 1;
        else return true;
    }
    return false;
}

bool tok_uc_is_control(uint32_t cp) { return in_ranges(tok_uc_control, tok_uc_control_n, cp); }
bool tok_uc_is_punct(uint32_t cp) { return in_ranges(tok_uc_punct, tok_uc_punct_n, cp); }

uint32_t tok_uc_tolower(uint32_t cp) {
    size_t lo = 0, hi = tok_uc_lower_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < tok_uc_lower[mid].from) hi = mid;
        else if (cp > tok_uc_lower[mid].from) lo = mid + 1;
        else return tok_uc_lower[mid].to;
    }
    return cp;
}

uint32_t tok_uc_nfd_first(uint32_t cp) {
    size_t lo = 0, hi = tok_uc_nfd_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < tok_uc_nfd[mid].first) hi = mid;
        else if (cp > tok_uc_nfd[mid].last) lo = mid + 1;
        else return tok_uc_nfd[mid].base;
    }
    return cp;
}

/* ASCII characters of general category S (the reference's `cpt < 0x7F && is_symbol`). */
static bool ascii_symbol(uint32_t cp) { return cp < 0x7F && strchr("$+<=>^`|~", (int)cp) && cp != 0; }

/* CJK ideograph blocks, as the reference (and Hugging Face's BERT) define them. */
static bool is_chinese(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B920 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* ---- words -------------------------------------------------------------------------------- */

#define WPM_PREFIX "\xe2\x96\x81" /* U+2581, 3 bytes */

/* Cut one word (buf = U+2581 + word, n bytes) greedily into tokens. */
static slm_status wpm_word(const slm_tokenizer *t, const char *buf, size_t n, slm_tok_ids *out) {
    size_t mark = out->n;
    slm_status st;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + (size_t)t->max_token_len + 1 < n ? i + (size_t)t->max_token_len + 1 : n;
        bool match = false;
        for (; j > i; j--) {
            int32_t id = tok_map_get(&t->vocab, t->text, buf + i, j - i);
            if (id >= 0) {
                if ((st = tok_ids_push(out, id)) != SLM_OK) return st;
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match) {
            out->n = mark; /* discard the partial cut */
            break;
        }
    }
    if (out->n == mark) return tok_ids_push(out, t->unk);
    return SLM_OK;
}

slm_status tok_wpm_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out) {
    /* a word never exceeds the fragment: every code point re-encodes to <= 3 bytes per
     * input byte (U+FFFD is dropped, so at most 4 bytes from 4), plus the prefix */
    size_t cap;
    slm_status st = SLM_OK;
    if (!slm_mul_size(len, 4, &cap) || !slm_add_size(cap, 8, &cap)) return SLM_ERR_LIMIT;
    char *w = slm_malloc(cap);
    if (!w) return SLM_ERR_NOMEM;
    memcpy(w, WPM_PREFIX, 3);
    size_t wn = 3; /* bytes in w; 3 = empty word */
    for (size_t i = 0; i < len && st == SLM_OK;) {
        uint32_t cp = tok_uc_nfd_first(tok_utf8_decode((const unsigned char *)text, len, &i));
        if (tok_is_space(cp)) {
            if (wn > 3) st = wpm_word(t, w, wn, out);
            wn = 3;
            continue;
        }
        if (cp == 0 || cp == 0xFFFD || tok_uc_is_control(cp)) continue;
        char u[4];
        size_t ul = tok_utf8_encode(tok_uc_tolower(cp), u);
        if (tok_uc_is_punct(cp) || ascii_symbol(cp) || is_chinese(cp)) {
            if (wn > 3 && (st = wpm_word(t, w, wn, out)) != SLM_OK) break;
            memcpy(w + 3, u, ul);
            st = wpm_word(t, w, 3 + ul, out);
            wn = 3;
        } else {
            memcpy(w + wn, u, ul);
            wn += ul;
        }
    }
    if (st == SLM_OK && wn > 3) st = wpm_word(t, w, wn, out);
    slm_free(w);
    return st;
}
