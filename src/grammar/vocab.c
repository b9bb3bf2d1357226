/*
 * grammar/vocab.c: the token trie of a vocabulary (see grammar_int.h for the layout), built
 * once per vocabulary and shared read-only by every grammar's mask computation.
 *
 * Construction: read every piece through the caller's callback into one buffer, sort the
 * token ids by their bytes, and emit the trie in preorder from the sorted list (a new node
 * for each byte past the longest common prefix with the previous piece). Tokens with an
 * empty piece (control tokens) or one longer than SLM_GRAMMAR_MAX_PIECE are left out: a
 * mask never allows them. Cost: O(total piece bytes * log n_vocab); about 60 ms for a
 * 150k vocabulary. Plus, per length r up to the longest plain token, the bitset of plain
 * tokens of at most r characters (grammar_int.h): 2.4 MiB for qwen2's 151k tokens (129
 * lengths), 0.5 MiB for smollm2's 49k. Thread-safety: immutable after create. Non-goals:
 * sharing one trie between vocabularies.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "grammar/grammar_int.h"
#include "slmesh/slmesh.h"

#define MAX_VOCAB (1 << 21) /* tokens; = SLM_TOK_MAX_VOCAB */

typedef struct piece_ref {
    size_t off;     /* into the byte buffer while reading */
    const char *p;  /* the bytes, once the buffer stops moving */
    uint16_t len;   /* bytes */
    int32_t id;     /* token */
} piece_ref;

static int cmp_piece(const void *x, const void *y) {
    const piece_ref *a = x, *b = y;
    const uint16_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void slm_grammar_vocab_destroy(slm_grammar_vocab *v) {
    if (!v) return;
    slm_free(v->byte), slm_free(v->depth), slm_free(v->end), slm_free(v->tok_off), slm_free(v->toks), slm_free(v->plain);
    slm_free(v->cp_before), slm_free(v->tok_cp), slm_free(v->plain_le), slm_free(v->plain_le_n);
    slm_free(v);
}

int32_t slm_grammar_vocab_n(const slm_grammar_vocab *v) { return v->n_vocab; }

const uint32_t slm_grammar_plain_ranges[2 * SLM_GRAMMAR_PLAIN_RANGES] = {
    0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7E, 0x80, 0xD7FF, 0xE000, 0x10FFFF};

/* Code points of s[n] when it is valid UTF-8 of plain characters only, else NOT_PLAIN. */
static uint16_t plain_cps(const char *s, size_t n) {
    uint16_t count = 0;
    for (size_t i = 0; i < n; count++) {
        const uint8_t b = (uint8_t)s[i];
        const size_t need = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (need == 0 || i + need > n) return SLM_GRAMMAR_NOT_PLAIN;
        uint32_t cp = need == 1 ? b : need == 2 ? b & 0x1Fu : need == 3 ? b & 0x0Fu : b & 0x07u;
        for (size_t j = 1; j < need; j++) {
            if (((uint8_t)s[i + j] & 0xC0) != 0x80) return SLM_GRAMMAR_NOT_PLAIN;
            cp = cp << 6 | ((uint8_t)s[i + j] & 0x3Fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[need] || cp > 0x10FFFF) return SLM_GRAMMAR_NOT_PLAIN;
        bool plain = false;
        for (int r = 0; r < SLM_GRAMMAR_PLAIN_RANGES && !plain; r++)
            plain = cp >= slm_grammar_plain_ranges[2 * r] && cp <= slm_grammar_plain_ranges[2 * r + 1];
        if (!plain) return SLM_GRAMMAR_NOT_PLAIN;
        i += need;
    }
    return count;
}

/* The vocabulary hash (FNV-1a over every token's length and bytes) one piece further. */
static uint64_t fp_add(uint64_t fp, const char *s, size_t len) {
    fp = (fp ^ (uint64_t)len) * 0x100000001b3ULL;
    if (len == 0 || len > SLM_GRAMMAR_MAX_PIECE) return fp; /* left out of the trie */
    for (size_t i = 0; i < len; i++) fp = (fp ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return fp;
}

#define FP_SEED 0xcbf29ce484222325ULL

slm_status slm_grammar_vocab_create(int32_t n_vocab, slm_grammar_piece_fn piece, void *user, slm_grammar_vocab **out,
                                    char *err) {
    *out = NULL;
    if (n_vocab < 1 || n_vocab > MAX_VOCAB || !piece) return slm_errf(err, SLM_ERR_INVALID_ARG, "vocabulary of %d tokens", n_vocab);
    slm_status st = SLM_OK;
    char *buf = NULL, tmp[SLM_GRAMMAR_MAX_PIECE];
    size_t n_buf = 0, cap_buf = (size_t)n_vocab * 8;
    piece_ref *refs = slm_malloc((size_t)n_vocab * sizeof *refs);
    slm_grammar_vocab *v = slm_calloc(1, sizeof *v);
    buf = slm_malloc(cap_buf);
    if (!refs || !v || !buf) {
        st = slm_errf(err, SLM_ERR_NOMEM, "vocabulary trie");
        goto fail;
    }
    v->n_vocab = n_vocab;
    uint64_t fp = FP_SEED;
    uint32_t n = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        const size_t len = piece(user, id, tmp, sizeof tmp);
        fp = fp_add(fp, tmp, len);
        if (len == 0 || len > SLM_GRAMMAR_MAX_PIECE) continue;
        if (n_buf + len > cap_buf) {
            char *q = slm_realloc(buf, cap_buf * 2);
            if (!q) {
                st = slm_errf(err, SLM_ERR_NOMEM, "vocabulary trie");
                goto fail;
            }
            buf = q, cap_buf *= 2;
        }
        memcpy(buf + n_buf, tmp, len);
        refs[n++] = (piece_ref){.off = n_buf, .len = (uint16_t)len, .id = id};
        n_buf += len;
    }
    v->fp = fp;
    for (uint32_t r = 0; r < n; r++) refs[r].p = buf + refs[r].off;
    qsort(refs, n, sizeof *refs, cmp_piece);
    /* nodes: at most one per byte */
    v->byte = slm_malloc(n_buf + 1);
    v->depth = slm_malloc((n_buf + 1) * sizeof *v->depth);
    v->end = slm_malloc((n_buf + 1) * sizeof *v->end);
    v->tok_off = slm_calloc(n_buf + 2, sizeof *v->tok_off);
    v->toks = slm_malloc(((size_t)n + 1) * sizeof *v->toks);
    v->plain = slm_malloc(n_buf + 1);
    v->cp_before = slm_malloc((n_buf + 1) * sizeof *v->cp_before);
    v->tok_cp = slm_malloc(((size_t)n + 1) * sizeof *v->tok_cp);
    if (!v->byte || !v->depth || !v->end || !v->tok_off || !v->toks || !v->plain || !v->cp_before || !v->tok_cp) {
        st = slm_errf(err, SLM_ERR_NOMEM, "vocabulary trie");
        goto fail;
    }
    uint32_t open[SLM_GRAMMAR_MAX_PIECE + 1]; /* open[k]: node at depth k on the current path */
    uint16_t starts[SLM_GRAMMAR_MAX_PIECE + 1]; /* starts[k]: characters begun in the path's first k bytes */
    starts[0] = 0;
    uint32_t n_open = 0, nn = 0, nt = 0;
    const char *prev = NULL;
    uint16_t prev_len = 0;
    for (uint32_t r = 0; r < n; r++) {
        const char *s = refs[r].p;
        const uint16_t len = refs[r].len;
        uint16_t lcp = 0;
        while (prev && lcp < len && lcp < prev_len && s[lcp] == prev[lcp]) lcp++;
        while (n_open > lcp) v->end[open[--n_open]] = nn; /* close deeper nodes */
        for (uint16_t k = lcp; k < len; k++) {
            v->byte[nn] = (uint8_t)s[k];
            v->depth[nn] = (uint16_t)(k + 1);
            v->cp_before[nn] = starts[k];
            starts[k + 1] = (uint16_t)(starts[k] + (((uint8_t)s[k] & 0xC0) != 0x80));
            v->tok_off[nn + 1] = nt; /* fixed up below as tokens arrive */
            open[n_open++] = nn++;
            if ((uint32_t)k + 1u > v->max_depth) v->max_depth = (uint32_t)k + 1u;
        }
        v->tok_cp[nt] = plain_cps(s, len);
        v->toks[nt++] = refs[r].id; /* belongs to node open[len - 1] == nn - 1 or a shared one */
        v->tok_off[open[len - 1] + 1] = nt;
        prev = s, prev_len = len;
    }
    while (n_open > 0) v->end[open[--n_open]] = nn;
    /* tokens were appended in preorder of their nodes; make tok_off a running prefix */
    for (uint32_t i = 0; i < nn; i++)
        if (v->tok_off[i + 1] < v->tok_off[i]) v->tok_off[i + 1] = v->tok_off[i];
    v->n_nodes = nn;
    /* plain subtrees: a reverse scan keeps the first node at or after i holding a token that
     * is not plain text */
    uint32_t next_bad = nn;
    for (uint32_t i = nn; i-- > 0;) {
        for (uint32_t t = v->tok_off[i]; t < v->tok_off[i + 1]; t++)
            if (v->tok_cp[t] == SLM_GRAMMAR_NOT_PLAIN) next_bad = i;
        v->plain[i] = next_bad >= v->end[i];
    }
    /* cumulative bitsets of plain tokens by length in code points */
    for (uint32_t t = 0; t < nt; t++)
        if (v->tok_cp[t] != SLM_GRAMMAR_NOT_PLAIN && v->tok_cp[t] > v->max_plain) v->max_plain = v->tok_cp[t];
    const size_t words = ((size_t)n_vocab + 31) / 32;
    v->plain_le = slm_calloc((v->max_plain + 1) * words, sizeof *v->plain_le);
    v->plain_le_n = slm_calloc(v->max_plain + 1, sizeof *v->plain_le_n);
    if (!v->plain_le || !v->plain_le_n) {
        st = slm_errf(err, SLM_ERR_NOMEM, "vocabulary trie");
        goto fail;
    }
    for (uint32_t t = 0; t < nt; t++)
        if (v->tok_cp[t] != SLM_GRAMMAR_NOT_PLAIN) {
            v->plain_le[v->tok_cp[t] * words + (uint32_t)v->toks[t] / 32] |= 1u << (v->toks[t] & 31);
            v->plain_le_n[v->tok_cp[t]]++;
        }
    for (uint32_t r = 1; r <= v->max_plain; r++) {
        for (size_t w = 0; w < words; w++) v->plain_le[r * words + w] |= v->plain_le[(r - 1) * words + w];
        v->plain_le_n[r] += v->plain_le_n[r - 1];
    }
    slm_free(buf);
    slm_free(refs);
    *out = v;
    return SLM_OK;
fail:
    slm_free(buf);
    slm_free(refs);
    slm_grammar_vocab_destroy(v);
    return st;
}

static size_t model_piece(void *user, int32_t id, char *buf, size_t cap) { return slm_model_token_piece(user, id, buf, cap); }

void slm_grammar_model_vocab_id(const struct slm_model *m, uint64_t *fp, int32_t *n_vocab) {
    slm_model_desc d;
    slm_model_describe(m, &d);
    char tmp[SLM_GRAMMAR_MAX_PIECE];
    uint64_t h = FP_SEED;
    for (int32_t id = 0; id < d.n_vocab; id++) {
        const size_t len = slm_model_token_piece(m, id, tmp, sizeof tmp);
        h = fp_add(h, tmp, len); /* bytes past the buffer are never read: such a piece is left out */
    }
    *fp = h, *n_vocab = d.n_vocab;
}

slm_status slm_grammar_vocab_from_model(const struct slm_model *m, slm_grammar_vocab **out, char *err) {
    slm_model_desc d;
    slm_model_describe(m, &d);
    return slm_grammar_vocab_create(d.n_vocab, model_piece, (void *)m, out, err);
}
