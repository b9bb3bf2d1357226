/*
 * tokenizer/tok_bpe.c: byte-level BPE encoding (tokenizer.ggml.model = "gpt2"), the
 * reference runtime's llm_tokenizer_bpe_session: the pre-tokenizer (tok_bpe_pre.c) cuts the
 * text into words already spelled in the byte-level alphabet; within each word the adjacent
 * pair with the lowest merge rank is merged, repeatedly (ties: leftmost first). A final
 * symbol that is not a token is emitted byte by byte where single bytes are tokens.
 *
 * Cost: O(m log m) per word of m characters (binary heap of candidate pairs; a candidate is
 * stale when either symbol changed size since it was made). Words are independent, so the
 * whole text is O(n log n) at worst.
 *
 * Thread-safety: all state is per call. Non-goals: SentencePiece-style BPE (gemma4).
 */
#include "tokenizer/tok_internal.h"

#include <string.h>

#include "core/core.h"

typedef struct bpe_sym {
    int32_t prev, next; /* neighbours, -1 at the ends */
    uint32_t off, n;    /* bytes [off, off+n) of the word; n == 0 once merged away */
} bpe_sym;

typedef struct bpe_state {
    const slm_tokenizer *t;
    slm_tok_ids *out;
    bpe_sym *sym;       /* scratch, grown to the longest word */
    size_t sym_cap;
    char *key;          /* scratch "left right" merge key */
    size_t key_cap;
    tok_heap heap;
    const char *word;   /* the word being merged */
} bpe_state;

static slm_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return SLM_OK;
    size_t bytes;
    if (!slm_mul_size(need, elem, &bytes)) return SLM_ERR_NOMEM;
    void *v = slm_realloc(*p, bytes);
    if (!v) return SLM_ERR_NOMEM;
    *p = v;
    *cap = need;
    return SLM_OK;
}

static slm_status try_pair(bpe_state *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return SLM_OK;
    const bpe_sym *l = &s->sym[left], *r = &s->sym[right];
    size_t klen = (size_t)l->n + 1 + r->n;
    memcpy(s->key, s->word + l->off, l->n);
    s->key[l->n] = ' ';
    memcpy(s->key + l->n + 1, s->word + r->off, r->n);
    int32_t rank = tok_map_get(&s->t->merges, s->t->merge_text, s->key, klen);
    if (rank < 0) return SLM_OK;
    return tok_heap_push(&s->heap, (tok_pair){left, right, (double)rank, l->n, r->n});
}

static slm_status emit(bpe_state *s, const char *text, size_t n) {
    const slm_tokenizer *t = s->t;
    int32_t id = tok_map_get(&t->vocab, t->text, text, n);
    if (id >= 0) return tok_ids_push(s->out, id);
    for (size_t j = 0; j < n; j++) { /* the reference's fallback: single bytes that are tokens */
        int32_t b = tok_map_get(&t->vocab, t->text, text + j, 1);
        if (b >= 0) {
            slm_status st = tok_ids_push(s->out, b);
            if (st != SLM_OK) return st;
        }
    }
    return SLM_OK;
}

static slm_status bpe_word(void *ctx, const char *word, size_t len) {
    bpe_state *s = ctx;
    const slm_tokenizer *t = s->t;
    slm_status st;
    if (len == 0) return SLM_OK;
    if (len > INT32_MAX) return SLM_ERR_LIMIT;
    if (t->ignore_merges && tok_map_get(&t->vocab, t->text, word, len) >= 0) return emit(s, word, len);
    if ((st = grow((void **)&s->sym, &s->sym_cap, len, sizeof *s->sym)) != SLM_OK) return st;
    if ((st = grow((void **)&s->key, &s->key_cap, len + 1, 1)) != SLM_OK) return st;
    s->word = word;
    s->heap.n = 0;

    int32_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        size_t n = tok_utf8_len((unsigned char)word[off]);
        if (n > len - off) n = len - off;
        s->sym[n_sym] = (bpe_sym){n_sym - 1, off + n == len ? -1 : n_sym + 1, (uint32_t)off, (uint32_t)n};
        n_sym++;
        off += n;
    }
    for (int32_t i = 1; i < n_sym; i++)
        if ((st = try_pair(s, i - 1, i)) != SLM_OK) return st;

    while (s->heap.n) {
        tok_pair p = tok_heap_pop(&s->heap);
        bpe_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        if (l->n != p.a || r->n != p.b || l->next != p.right) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = p.left;
        if ((st = try_pair(s, l->prev, p.left)) != SLM_OK) return st;
        if ((st = try_pair(s, p.left, l->next)) != SLM_OK) return st;
    }
    for (int32_t i = 0; i != -1; i = s->sym[i].next)
        if ((st = emit(s, word + s->sym[i].off, s->sym[i].n)) != SLM_OK) return st;
    return SLM_OK;
}

slm_status tok_bpe_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out) {
    bpe_state s = {t, out, NULL, 0, NULL, 0, {0}, NULL};
    slm_status st = tok_bpe_pre_split(t->pre, text, len, bpe_word, &s);
    slm_free(s.heap.v);
    slm_free(s.key);
    slm_free(s.sym);
    return st;
}
