/*
 * guard/guard_ops.c: the redaction operators (replace, numbered, mask, salted hash,
 * reversible pseudonym) and the per-request vault that maps placeholders back to originals.
 *
 * Vault: entries (type, original, placeholder) in creation order, with two open-addressing
 * hash indexes: (type, original) -> entry so that the same value gets the same placeholder,
 * and placeholder -> entry for restoring. Numbers count per type from 1.
 * Invariants: a vault's originals exist only in its own allocations; destroy wipes them
 *  (OPENSSL_cleanse) before freeing, and no function here prints or logs them.
 * Thread-safety: a vault is used by one thread at a time; the operators are reentrant.
 * Non-goals: format-preserving encryption; placeholders a model has rewritten beyond
 *  recognition (the exact "<TYPE_n>" text must survive to be restored).
 */
#include "guard/guard_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* Longest placeholder: "<" + type name (<= 17) + "_" + 10 digits + ">" + NUL, rounded up. */
#define PLACEHOLDER_MAX 40
/* Hex digits of the salted SHA-256 shown by the hash operator: 64 bits tell values apart
 * within any realistic corpus while staying short. */
#define HASH_HEX 16

/* ---- operator names ---------------------------------------------------------------------------- */

static const char *const op_names[SLM_REDACT_OP_COUNT] = {
    [SLM_REDACT_REPLACE] = "replace", [SLM_REDACT_NUMBERED] = "numbered",
    [SLM_REDACT_MASK] = "mask",       [SLM_REDACT_HASH] = "hash",
    [SLM_REDACT_PSEUDO] = "pseudo",   [SLM_REDACT_KEEP] = "keep",
};

const char *slm_redact_op_name(slm_redact_op op) {
    return (unsigned)op < SLM_REDACT_OP_COUNT ? op_names[op] : "?";
}

bool slm_redact_op_parse(const char *name, slm_redact_op *out) {
    for (int i = 0; i < SLM_REDACT_OP_COUNT; i++) {
        if (!strcmp(name, op_names[i])) {
            *out = (slm_redact_op)i;
            return true;
        }
    }
    return false;
}

void slm_redact_opts_all(slm_redact_opts *o, slm_redact_op op) {
    for (int t = 0; t < SLM_PII_COUNT; t++) o->op[t] = op;
}

void slm_redact_opts_default(slm_redact_opts *o) {
    memset(o, 0, sizeof *o);
    slm_redact_opts_all(o, SLM_REDACT_REPLACE);
    o->mask_keep = 4;
    o->mask_char = '*';
}

/* ---- output buffer -------------------------------------------------------------------------------- */

typedef struct {
    char *p;          /* owned; NUL-terminated when n > 0 */
    size_t n, cap;
} sbuf;

static slm_status sbuf_put(sbuf *b, const void *s, size_t n, char *err) {
    size_t need;
    if (!slm_add_size(b->n, n, &need) || !slm_add_size(need, 1, &need))
        return slm_errf(err, SLM_ERR_LIMIT, "output too large");
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (!slm_mul_size(cap, 2, &cap)) return slm_errf(err, SLM_ERR_LIMIT, "output too large");
        }
        char *p = slm_realloc(b->p, cap);
        if (!p) return slm_errf(err, SLM_ERR_NOMEM, "output of %zu bytes", cap);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return SLM_OK;
}

/* Hand the buffer to the caller (an empty result is an allocated ""). */
static slm_status sbuf_finish(sbuf *b, char **out, size_t *out_len, char *err) {
    if (!b->p) {
        slm_status st = sbuf_put(b, "", 0, err);
        if (st) return st;
    }
    *out = b->p;
    *out_len = b->n;
    b->p = NULL;
    return SLM_OK;
}

/* ---- vault ------------------------------------------------------------------------------------------ */

typedef struct {
    slm_pii_type type;
    char *original;      /* owned, NUL-terminated copy of the value */
    size_t orig_len;
    char placeholder[PLACEHOLDER_MAX]; /* "<PERSON_3>" */
} vault_entry;

struct slm_vault {
    vault_entry *e;          /* owned array, n used / cap allocated */
    size_t n, cap;
    uint32_t *by_value;      /* owned index table of `slots` entries: entry + 1, 0 = empty */
    uint32_t *by_holder;     /* owned index table, same size */
    size_t slots;            /* power of two, >= 2 * cap */
    unsigned next[SLM_PII_COUNT]; /* last number used per type */
};

/* Most entries in one vault: one per finding of one request. */
#define VAULT_MAX_ENTRIES SLM_GUARD_MAX_FINDINGS

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

static uint64_t hash_value(slm_pii_type t, const char *s, size_t n) {
    unsigned char tb = (unsigned char)t;
    return fnv1a(fnv1a(FNV_SEED, &tb, 1), s, n);
}

slm_status slm_vault_create(slm_vault **out, char *err) {
    slm_vault *v = slm_calloc(1, sizeof *v);
    if (!v) return slm_errf(err, SLM_ERR_NOMEM, "vault");
    *out = v;
    return SLM_OK;
}

void slm_vault_destroy(slm_vault *v) {
    if (!v) return;
    for (size_t i = 0; i < v->n; i++) {
        OPENSSL_cleanse(v->e[i].original, v->e[i].orig_len);
        slm_free(v->e[i].original);
    }
    if (v->e) OPENSSL_cleanse(v->e, v->cap * sizeof *v->e);
    slm_free(v->e);
    slm_free(v->by_value);
    slm_free(v->by_holder);
    slm_free(v);
}

size_t slm_vault_count(const slm_vault *v) { return v ? v->n : 0; }

static void index_insert(uint32_t *table, size_t slots, uint64_t h, uint32_t entry) {
    size_t i = (size_t)h & (slots - 1);
    while (table[i]) i = (i + 1) & (slots - 1);
    table[i] = entry + 1;
}

/* Grow entries and indexes so that one more entry fits. */
static slm_status vault_reserve(slm_vault *v, char *err) {
    if (v->n < v->cap) return SLM_OK;
    if (v->n >= VAULT_MAX_ENTRIES) return slm_errf(err, SLM_ERR_LIMIT, "vault holds %zu entries", v->n);
    size_t cap = v->cap ? v->cap * 2 : 16, slots = cap * 2;
    vault_entry *e = slm_realloc(v->e, cap * sizeof *e);
    if (!e) return slm_errf(err, SLM_ERR_NOMEM, "vault entries");
    v->e = e;
    uint32_t *bv = slm_calloc(slots, sizeof *bv), *bh = slm_calloc(slots, sizeof *bh);
    if (!bv || !bh) {
        slm_free(bv);
        slm_free(bh);
        return slm_errf(err, SLM_ERR_NOMEM, "vault index");
    }
    for (size_t i = 0; i < v->n; i++) {
        index_insert(bv, slots, hash_value(e[i].type, e[i].original, e[i].orig_len), (uint32_t)i);
        index_insert(bh, slots, fnv1a(FNV_SEED, e[i].placeholder, strlen(e[i].placeholder)), (uint32_t)i);
    }
    slm_free(v->by_value);
    slm_free(v->by_holder);
    v->by_value = bv;
    v->by_holder = bh;
    v->slots = slots;
    v->cap = cap;
    return SLM_OK;
}

static const vault_entry *find_value(const slm_vault *v, slm_pii_type t, const char *s, size_t n) {
    if (!v->slots) return NULL;
    for (size_t i = (size_t)hash_value(t, s, n) & (v->slots - 1); v->by_value[i]; i = (i + 1) & (v->slots - 1)) {
        const vault_entry *e = &v->e[v->by_value[i] - 1];
        if (e->type == t && e->orig_len == n && !memcmp(e->original, s, n)) return e;
    }
    return NULL;
}

static const vault_entry *find_holder(const slm_vault *v, const char *s, size_t n) {
    if (!v->slots) return NULL;
    for (size_t i = (size_t)fnv1a(FNV_SEED, s, n) & (v->slots - 1); v->by_holder[i]; i = (i + 1) & (v->slots - 1)) {
        const vault_entry *e = &v->e[v->by_holder[i] - 1];
        if (strlen(e->placeholder) == n && !memcmp(e->placeholder, s, n)) return e;
    }
    return NULL;
}

/* The placeholder for (t, value): an existing one, or a new numbered entry. */
static slm_status vault_placeholder(slm_vault *v, slm_pii_type t, const char *s, size_t n,
                                    const char **holder, char *err) {
    const vault_entry *found = find_value(v, t, s, n);
    if (found) {
        *holder = found->placeholder;
        return SLM_OK;
    }
    slm_status st = vault_reserve(v, err);
    if (st) return st;
    vault_entry *e = &v->e[v->n];
    /* memcpy, not strndup: a value may contain NUL bytes */
    if (!(e->original = slm_malloc(n + 1))) return slm_errf(err, SLM_ERR_NOMEM, "vault value");
    memcpy(e->original, s, n);
    e->original[n] = '\0';
    e->type = t;
    e->orig_len = n;
    snprintf(e->placeholder, sizeof e->placeholder, "<%s_%u>", slm_pii_type_name(t), ++v->next[t]);
    index_insert(v->by_value, v->slots, hash_value(t, s, n), (uint32_t)v->n);
    index_insert(v->by_holder, v->slots, fnv1a(FNV_SEED, e->placeholder, strlen(e->placeholder)), (uint32_t)v->n);
    v->n++;
    *holder = e->placeholder;
    return SLM_OK;
}

/* ---- operators ---------------------------------------------------------------------------------------- */

static slm_status op_mask(sbuf *b, const char *s, size_t n, const slm_redact_opts *o, char *err) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    size_t hide = chars > o->mask_keep ? chars - o->mask_keep : 0, seen = 0, i = 0;
    char mc = o->mask_char > 0 ? o->mask_char : '*';
    slm_status st = SLM_OK;
    for (; i < n && seen < hide; seen++) {
        slm_guard_utf8_next(s, n, &i);
        if ((st = sbuf_put(b, &mc, 1, err))) return st;
    }
    return sbuf_put(b, s + i, n - i, err);
}

static slm_status op_hash(sbuf *b, slm_pii_type t, const char *s, size_t n,
                          const slm_redact_opts *o, char *err) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char text[PLACEHOLDER_MAX + HASH_HEX];
    slm_status st = SLM_OK;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return slm_errf(err, SLM_ERR_NOMEM, "digest context");
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, o->salt, o->salt_len < SLM_REDACT_MAX_SALT ? o->salt_len : SLM_REDACT_MAX_SALT) != 1 ||
        EVP_DigestUpdate(ctx, s, n) != 1 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
        st = slm_errf(err, SLM_ERR_CRYPTO, "SHA-256 failed");
        goto done;
    }
    int k = snprintf(text, sizeof text, "<%s:", slm_pii_type_name(t));
    for (int i = 0; i < HASH_HEX / 2; i++) k += snprintf(text + k, sizeof text - (size_t)k, "%02x", md[i]);
    k += snprintf(text + k, sizeof text - (size_t)k, ">");
    st = sbuf_put(b, text, (size_t)k, err);
done:
    EVP_MD_CTX_free(ctx);
    return st;
}

slm_status slm_guard_redact(const char *text, size_t len, const slm_pii_finding *f, size_t count,
                            const slm_redact_opts *o, slm_vault *vault, char **out,
                            size_t *out_len, char *err) {
    slm_status st = SLM_OK;
    sbuf b = {0};
    slm_vault *tmp = NULL;  /* owned: numbering when the caller gave no vault */
    slm_redact_opts defaults;
    if ((!text && len) || (!f && count) || !out || !out_len)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL argument");
    if (!o) {
        slm_redact_opts_default(&defaults);
        o = &defaults;
    }
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        const slm_pii_finding *x = &f[i];
        if (x->start < pos || x->end < x->start || x->end > len || (unsigned)x->type >= SLM_PII_COUNT) {
            st = slm_errf(err, SLM_ERR_INVALID_ARG, "finding %zu [%zu, %zu) is out of order or range", i, x->start, x->end);
            goto done;
        }
        if ((st = sbuf_put(&b, text + pos, x->start - pos, err))) goto done;
        const char *s = text + x->start;
        size_t n = x->end - x->start;
        slm_redact_op op = (unsigned)o->op[x->type] < SLM_REDACT_OP_COUNT ? o->op[x->type] : SLM_REDACT_REPLACE;
        switch (op) {
        case SLM_REDACT_REPLACE: {
            char holder[PLACEHOLDER_MAX];
            int k = snprintf(holder, sizeof holder, "<%s>", slm_pii_type_name(x->type));
            st = sbuf_put(&b, holder, (size_t)k, err);
            break;
        }
        case SLM_REDACT_NUMBERED:
        case SLM_REDACT_PSEUDO: {
            slm_vault *v = vault;
            const char *holder = NULL;
            if (!v && !tmp && (st = slm_vault_create(&tmp, err))) goto done;
            if (!v) v = tmp;
            if ((st = vault_placeholder(v, x->type, s, n, &holder, err))) goto done;
            st = sbuf_put(&b, holder, strlen(holder), err);
            break;
        }
        case SLM_REDACT_MASK: st = op_mask(&b, s, n, o, err); break;
        case SLM_REDACT_HASH: st = op_hash(&b, x->type, s, n, o, err); break;
        case SLM_REDACT_KEEP:
        case SLM_REDACT_OP_COUNT: st = sbuf_put(&b, s, n, err); break;
        }
        if (st) goto done;
        pos = x->end;
    }
    if ((st = sbuf_put(&b, text + pos, len - pos, err))) goto done;
    st = sbuf_finish(&b, out, out_len, err);
done:
    if (b.p) OPENSSL_cleanse(b.p, b.n);
    slm_free(b.p);
    slm_vault_destroy(tmp);
    return st;
}

/* ---- restore ------------------------------------------------------------------------------------------- */

slm_status slm_vault_restore(const slm_vault *v, const char *text, size_t len, char **out,
                             size_t *out_len, char *err) {
    slm_status st = SLM_OK;
    sbuf b = {0};
    if (!v || (!text && len) || !out || !out_len) return slm_errf(err, SLM_ERR_INVALID_ARG, "NULL argument");
    size_t pos = 0, i = 0;
    while (i < len) {
        const char *lt = memchr(text + i, '<', len - i);
        if (!lt) break;
        size_t at = (size_t)(lt - text), end = at + 1;
        while (end < len && end - at < PLACEHOLDER_MAX && text[end] != '>' && text[end] != '<') end++;
        const vault_entry *e = NULL;
        if (end < len && text[end] == '>') e = find_holder(v, text + at, end + 1 - at);
        if (!e) {
            i = at + 1;
            continue;
        }
        if ((st = sbuf_put(&b, text + pos, at - pos, err)) || (st = sbuf_put(&b, e->original, e->orig_len, err)))
            goto done;
        pos = i = end + 1;
    }
    if ((st = sbuf_put(&b, text + pos, len - pos, err))) goto done;
    st = sbuf_finish(&b, out, out_len, err);
done:
    slm_free(b.p);
    return st;
}
