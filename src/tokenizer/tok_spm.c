/*
 * tokenizer/tok_spm.c: SentencePiece BPE encoding (tokenizer.ggml.model = "llama"), the
 * reference runtime's llm_tokenizer_spm: the text (spaces already escaped as U+2581) is cut
 * into UTF-8 characters, then the adjacent pair whose concatenation is the vocabulary token
 * with the highest score is merged, repeatedly (ties: leftmost first). What never became a
 * token falls back to byte tokens <0xNN>.
 *
 * Cost: O(n log n) in the fragment's characters: each merge pushes at most two candidate
 * pairs onto a binary heap; stale candidates are recognised by their size and skipped.
 * The reference also keeps a map for re-splitting merged symbols that are not tokens, but a
 * symbol is only ever merged into an existing token, so that path cannot run and is left out.
 *
 * Thread-safety: all state is per call. Non-goals: unigram (UGM) SentencePiece models.
 */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* ---- symbols -------------------------------------------------------- */

typedef struct spm_sym {
    int32_t prev, next; /* neighbours in the chain, -1 at the ends */
    uint32_t off, n;    /* text bytes [off, off+n) of the fragment; n == 0 once merged away */
} spm_sym;

/* ---- encoding ------------------------------------------------------------------------------- */

typedef struct spm_state {
    const slm_tokenizer *t;
    const char *text; /* the escaped fragment */
    spm_sym *sym;     /* [n_sym] */
    tok_heap heap;
} spm_state;

static slm_status try_pair(spm_state *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return SLM_OK;
    uint32_t size = s->sym[left].n + s->sym[right].n;
    int32_t id = tok_map_get(&s->t->vocab, s->t->text, s->text + s->sym[left].off, size);
    if (id < 0) return SLM_OK;
    return tok_heap_push(&s->heap, (tok_pair){left, right, -(double)s->t->tok[id].score, size, 0});
}

/* The reference's byte_to_token: "<0xNN>", else the byte as a one-character token. A
 * vocabulary with neither (the reference aborts) gets the unknown token, or nothing. */
static int32_t byte_token(const slm_tokenizer *t, unsigned char b) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    int32_t id = tok_map_get(&t->vocab, t->text, buf, 6);
    if (id < 0) id = tok_map_get(&t->vocab, t->text, (const char *)&b, 1);
    return id >= 0 ? id : t->unk;
}

slm_status tok_spm_encode(const slm_tokenizer *t, const char *text, size_t len, slm_tok_ids *out) {
    spm_state s = {t, text, NULL, {0}};
    slm_status st = SLM_OK;
    if (len == 0) return SLM_OK;
    if (len > INT32_MAX) return SLM_ERR_LIMIT;
    s.sym = slm_malloc(len * sizeof *s.sym);
    if (!s.sym) return SLM_ERR_NOMEM;

    /* one symbol per UTF-8 character (a truncated sequence at the end is cut short) */
    int32_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        size_t n = tok_utf8_len((unsigned char)text[off]);
        if (n > len - off) n = len - off;
        s.sym[n_sym] = (spm_sym){n_sym - 1, off + n == len ? -1 : n_sym + 1, (uint32_t)off, (uint32_t)n};
        n_sym++;
        off += n;
    }
    for (int32_t i = 1; i < n_sym; i++)
        if ((st = try_pair(&s, i - 1, i)) != SLM_OK) goto done;

    while (s.heap.n) {
        tok_pair p = tok_heap_pop(&s.heap);
        spm_sym *l = &s.sym[p.left], *r = &s.sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.a) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s.sym[r->next].prev = p.left;
        if ((st = try_pair(&s, l->prev, p.left)) != SLM_OK) goto done;
        if ((st = try_pair(&s, p.left, l->next)) != SLM_OK) goto done;
    }

    for (int32_t i = 0; i != -1; i = s.sym[i].next) {
        const spm_sym *y = &s.sym[i];
        int32_t id = tok_map_get(&t->vocab, t->text, text + y->off, y->n);
        if (id >= 0) {
            if ((st = tok_ids_push(out, id)) != SLM_OK) goto done;
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t b = byte_token(t, (unsigned char)text[y->off + j]);
            if (b >= 0 && (st = tok_ids_push(out, b)) != SLM_OK) goto done;
        }
    }
done:
    slm_free(s.heap.v);
    slm_free(s.sym);
    return st;
}
