/*
 * grammar/cache.c: a small thread-safe LRU of compiled grammars keyed by (kind, source).
 *
 * A server sees the same schema on many requests; compiling it again would also throw away
 * the automaton and the per-state token masks the grammar has accumulated, which is where
 * the per-step speed comes from. Entries hold one reference each; a hit hands out another.
 * Lookup hashes the source (FNV-1a 64) and compares the full text on a hash match, so a
 * collision can never return the wrong grammar. Compile errors are not cached.
 * Invariants: entries[0..n) ordered most recently used first; n <= capacity.
 * Thread-safety: one mutex around the table; compilation runs outside it (two threads may
 * compile the same source at once; the second insert keeps the first entry).
 * For slm_grammar_cache_prepare it also keeps one token trie per distinct vocabulary (up to
 * SLM_GRAMMAR_CACHE_VOCABS, never dropped before destroy, so that preparing borrows one
 * outside the lock), found by a hash of the model's pieces.
 * Non-goals: size-based eviction (grammars are small next to the models).
 */
#include <pthread.h>
#include <string.h>

#include "core/core.h"
#include "grammar/grammar_int.h"

#define SLM_GRAMMAR_CACHE_MAX 65536 /* entries; a server needs hundreds */
#define SLM_GRAMMAR_CACHE_VOCABS 8   /* token tries kept: one per distinct vocabulary served */

typedef struct centry {
    uint64_t hash;         /* of kind and source */
    slm_grammar_kind kind;
    char *src;             /* owned copy */
    size_t len;
    slm_grammar *g;        /* one reference, owned */
} centry;

struct slm_grammar_cache {
    pthread_mutex_t lock;  /* guards everything below */
    centry *e;             /* [cap], most recently used first */
    size_t n, cap;
    slm_grammar_vocab *vocab[SLM_GRAMMAR_CACHE_VOCABS]; /* owned, never dropped before destroy
                                                          (slm_grammar_cache_prepare borrows them
                                                          outside the lock) */
    size_t n_vocab;
};

static uint64_t fnv(slm_grammar_kind kind, const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)kind;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return h;
}

slm_status slm_grammar_cache_create(size_t capacity, slm_grammar_cache **out, char *err) {
    *out = NULL;
    if (capacity < 1 || capacity > SLM_GRAMMAR_CACHE_MAX)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "grammar cache capacity %zu outside [1, %d]", capacity, SLM_GRAMMAR_CACHE_MAX);
    slm_grammar_cache *c = slm_calloc(1, sizeof *c);
    if (c) c->e = slm_calloc(capacity, sizeof *c->e);
    if (!c || !c->e || pthread_mutex_init(&c->lock, NULL) != 0) {
        if (c) slm_free(c->e);
        slm_free(c);
        return slm_errf(err, SLM_ERR_NOMEM, "grammar cache");
    }
    c->cap = capacity;
    *out = c;
    return SLM_OK;
}

void slm_grammar_cache_destroy(slm_grammar_cache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) slm_grammar_release(c->e[i].g), slm_free(c->e[i].src);
    for (size_t i = 0; i < c->n_vocab; i++) slm_grammar_vocab_destroy(c->vocab[i]);
    slm_free(c->e);
    pthread_mutex_destroy(&c->lock);
    slm_free(c);
}

/* Find under the lock; moves a hit to the front and returns a new reference. */
static slm_grammar *find(slm_grammar_cache *c, uint64_t h, slm_grammar_kind kind, const char *src, size_t len) {
    for (size_t i = 0; i < c->n; i++) {
        centry *e = &c->e[i];
        if (e->hash != h || e->kind != kind || e->len != len || memcmp(e->src, src, len) != 0) continue;
        const centry hit = *e;
        memmove(c->e + 1, c->e, i * sizeof *c->e);
        c->e[0] = hit;
        return slm_grammar_retain(hit.g);
    }
    return NULL;
}

static slm_status compile(slm_grammar_kind kind, const char *src, size_t len, slm_grammar **out, char *err) {
    switch (kind) {
    case SLM_GRAMMAR_GBNF: return slm_grammar_from_gbnf(src, len, out, err);
    case SLM_GRAMMAR_JSON_SCHEMA: return slm_grammar_from_json_schema(src, len, out, err);
    case SLM_GRAMMAR_REGEX: return slm_grammar_from_regex(src, len, out, err);
    case SLM_GRAMMAR_JSON_OBJECT: return slm_grammar_json_object(out, err);
    }
    return slm_errf(err, SLM_ERR_INVALID_ARG, "unknown grammar kind %d", (int)kind);
}

slm_status slm_grammar_cache_get(slm_grammar_cache *c, slm_grammar_kind kind, const char *src, size_t len,
                                 slm_grammar **out, bool *hit, char *err) {
    *out = NULL;
    if (hit) *hit = false;
    if (kind == SLM_GRAMMAR_JSON_OBJECT) src = "", len = 0;
    if (!src && len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL grammar source");
    if (!src) src = "";
    const uint64_t h = fnv(kind, src, len);
    pthread_mutex_lock(&c->lock);
    slm_grammar *g = find(c, h, kind, src, len);
    pthread_mutex_unlock(&c->lock);
    if (g) {
        if (hit) *hit = true;
        *out = g;
        return SLM_OK;
    }
    slm_status st = compile(kind, src, len, &g, err);
    if (st) return st;
    char *copy = slm_malloc(len + 1);
    if (!copy) {
        *out = g; /* usable, just not cached */
        return SLM_OK;
    }
    memcpy(copy, src, len);
    copy[len] = 0;
    pthread_mutex_lock(&c->lock);
    slm_grammar *other = find(c, h, kind, src, len);
    if (other) { /* another thread compiled it meanwhile: use theirs */
        slm_grammar_release(g);
        slm_free(copy);
        g = other;
    } else {
        if (c->n == c->cap) { /* drop the least recently used */
            c->n--;
            slm_grammar_release(c->e[c->n].g);
            slm_free(c->e[c->n].src);
        }
        memmove(c->e + 1, c->e, c->n * sizeof *c->e);
        c->e[0] = (centry){.hash = h, .kind = kind, .src = copy, .len = len, .g = slm_grammar_retain(g)};
        c->n++;
    }
    pthread_mutex_unlock(&c->lock);
    *out = g;
    return SLM_OK;
}

/* ---- preparing for a model ---------------------------------------------------------------- */

static slm_grammar_vocab *vocab_find(slm_grammar_cache *c, uint64_t fp, int32_t n) {
    for (size_t i = 0; i < c->n_vocab; i++)
        if (c->vocab[i]->fp == fp && c->vocab[i]->n_vocab == n) return c->vocab[i];
    return NULL;
}

slm_status slm_grammar_cache_prepare(slm_grammar_cache *c, slm_grammar *g, const struct slm_model *m, char *err) {
    if (!c || !g || !m) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL cache, grammar or model");
    if (slm_grammar_prepared_for(g, m)) return SLM_OK;
    uint64_t fp;
    int32_t n;
    slm_grammar_model_vocab_id(m, &fp, &n);
    pthread_mutex_lock(&c->lock);
    slm_grammar_vocab *v = vocab_find(c, fp, n), *own = NULL; /* own: built here, not kept */
    pthread_mutex_unlock(&c->lock);
    slm_status st = SLM_OK;
    if (!v) {
        if ((st = slm_grammar_vocab_from_model(m, &own, err))) return st;
        pthread_mutex_lock(&c->lock);
        if ((v = vocab_find(c, fp, n)) == NULL && c->n_vocab < SLM_GRAMMAR_CACHE_VOCABS)
            v = c->vocab[c->n_vocab++] = own, own = NULL;
        pthread_mutex_unlock(&c->lock);
        if (!v) v = own; /* the cache is full of other vocabularies: use it once */
    }
    st = slm_grammar_prepare(g, v, err);
    if (st == SLM_OK) slm_grammar_note_model(g, m, fp);
    slm_grammar_vocab_destroy(own);
    return st;
}
