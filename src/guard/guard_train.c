/*
 * guard/guard_train.c: training of the PII tagger: read labelled sentences (Presidio-style
 * JSON with character offsets), turn spans into BIO tags over the tagger's tokens, train an
 * averaged structured perceptron with Viterbi decoding, and write the weights file.
 *
 * Examples: every sentence as written; in lower case (same character offsets, since case
 * folding maps one code point to one code point), so that names typed in lower case are still
 * found from context; once more with its entities swapped for other values of the same type
 * from the data; and the optional template lines (models/pii-templates.txt) filled with such
 * values. Optionally, made-up company names built from the data's surnames join the
 * organisation values (--synthetic-orgs). Feature dropout leaves each feature out of an update with a given chance, so the
 * model leans on shape and context rather than on single words.
 * Determinism: fills, case choices, dropout and the visiting order come from xorshift
 *  generators seeded with the caller's seed; the same data, templates, seed, epochs and dropout give a
 *  byte-identical file.
 * Thread-safety: reentrant; no shared state.
 * Non-goals: hyper-parameter search, incremental training.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "guard/guard_tagger.h"

/* Most sentences read from a training file: far above the data at hand, bounds memory. */
#define TRAIN_MAX_SENTENCES 200000u
/* Passes over the data when the caller does not say: training accuracy stops moving after
 * about ten on the Presidio data. */
#define TRAIN_DEFAULT_EPOCHS 12u
/* Fillings per template line: enough for each line to be seen with several values. */
#define TRAIN_DEFAULT_FILLS 6u

/* ---- examples -------------------------------------------------------------------------- */

typedef struct {
    uint32_t *feat;    /* owned: all feature buckets, token after token */
    size_t nfeat, capfeat;
    uint8_t *nf;       /* owned: features per token */
    uint8_t *gold;     /* owned: gold tag per token */
    size_t ntok, captok, capgold;
    size_t *first;     /* owned: first token of each example, plus one past the last */
    size_t nex, capex;
} train_set;

static void train_set_free(train_set *s) {
    slm_free(s->feat);
    slm_free(s->nf);
    slm_free(s->gold);
    slm_free(s->first);
}

/* Grow *p (elements of size sz) to hold need elements. */
static slm_status grow(void **p, size_t *cap, size_t need, size_t sz, char *err) {
    if (need <= *cap) return SLM_OK;
    size_t c = *cap ? *cap : 1024, bytes;
    while (c < need) c *= 2;
    if (!slm_mul_size(c, sz, &bytes)) return slm_errf(err, SLM_ERR_NOMEM, "training set");
    void *q = slm_realloc(*p, bytes);
    if (!q) return slm_errf(err, SLM_ERR_NOMEM, "training set (%zu bytes)", bytes);
    *p = q;
    *cap = c;
    return SLM_OK;
}

/* Tagger type index of a dataset entity name, or -1. */
static int tag_index(const char *name) {
    slm_pii_type t;
    if (!slm_pii_type_parse(name, strlen(name), &t)) return -1;
    for (int k = 0; k < TAG_NTYPES; k++)
        if (slm_guard_tag_types[k] == t) return k;
    return -1;
}

/* Add one sentence (text with per-character labels) to the set. */
static slm_status add_example(train_set *s, const char *text, size_t len, const int16_t *ctype,
                              const int32_t *cspan, size_t nchars, const guard_lexicon *lx, char *err) {
    slm_status st;
    tag_tokens tt;
    if ((st = slm_guard_tag_tokenize(text, len, lx, &tt, err))) return st;
    uint32_t f[TAG_MAX_FEATS];
    size_t from = 0;
    while (from < tt.n) {
        size_t to = slm_guard_tag_segment_end(&tt, from), n = to - from;
        if ((st = grow((void **)&s->first, &s->capex, s->nex + 2, sizeof *s->first, err))) goto done;
        s->first[s->nex++] = s->ntok;
        for (size_t i = 0; i < n; i++) {
            const tag_token *tok = &tt.t[from + i];
            size_t nf = slm_guard_tag_features(tt.t + from, n, i, f);
            if ((st = grow((void **)&s->feat, &s->capfeat, s->nfeat + nf, sizeof *s->feat, err)) ||
                (st = grow((void **)&s->nf, &s->captok, s->ntok + 1, 1, err)) ||
                (st = grow((void **)&s->gold, &s->capgold, s->ntok + 1, 1, err)))
                goto done;
            memcpy(s->feat + s->nfeat, f, nf * sizeof *f);
            s->nfeat += nf;
            s->nf[s->ntok] = (uint8_t)nf;
            uint8_t g = 0;
            size_t c = tok->cstart;
            if (c < nchars && ctype[c] >= 0) {
                bool cont = i > 0 && tt.t[from + i - 1].cstart < nchars &&
                            cspan[tt.t[from + i - 1].cstart] == cspan[c];
                g = (uint8_t)(cont ? 2 + 2 * ctype[c] : 1 + 2 * ctype[c]);
            }
            s->gold[s->ntok++] = g;
        }
        from = to;
    }
    s->first[s->nex] = s->ntok;
done:
    slm_guard_tag_tokens_free(&tt);
    return st;
}

/* Lower-case copy of text into o (len + 1 bytes): one code point to one code point, never
 * longer, so character offsets stay valid. Returns the new length. */
static size_t fold_into(const char *text, size_t len, char *o) {
    size_t i = 0, k = 0;
    while (i < len) {
        size_t at = i;
        uint32_t cp = slm_guard_fold_cp(slm_guard_utf8_next(text, len, &i));
        if (cp < 0x80) o[k++] = (char)cp;
        else if (cp < 0x800 && i - at == 2) { o[k++] = (char)(0xC0 | (cp >> 6)); o[k++] = (char)(0x80 | (cp & 0x3F)); }
        else { memcpy(o + k, text + at, i - at); k += i - at; } /* outside the folded ranges */
    }
    o[k] = '\0';
    return k;
}

/* ---- sentence building --------------------------------------------------------------------- */

/* A sentence as pieces: plain text (k < 0) or an entity value of tagger type k. */
typedef struct {
    const char *s;  /* borrowed */
    size_t n;
    int k;
} piece;

/* Entity values of one tagger type seen in the training data (borrowed from the JSON). */
typedef struct {
    const char **s;
    size_t *n;
    size_t count, cap;
} value_list;

typedef struct {
    train_set *set;
    const guard_lexicon *lx;
    uint64_t rng;                     /* seeded: fills and case choices are reproducible */
    value_list values[TAG_NTYPES];
    char *synth;                      /* owned: synthetic organisation names (SYNTH_ORGS slots) */
    char *text, *low;                 /* owned scratch, cap bytes each */
    int16_t *ctype;                   /* owned scratch: tagger type per character or -1 */
    int32_t *cspan;                   /* owned scratch: piece index per character or -1 */
    size_t cap;
} builder;

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void builder_free(builder *b) {
    for (int k = 0; k < TAG_NTYPES; k++) {
        slm_free(b->values[k].s);
        slm_free(b->values[k].n);
    }
    slm_free(b->synth);
    slm_free(b->text);
    slm_free(b->low);
    slm_free(b->ctype);
    slm_free(b->cspan);
}

static slm_status add_value(builder *b, int k, const char *s, size_t n, char *err) {
    value_list *v = &b->values[k];
    size_t cs = v->cap, cn = v->cap;
    slm_status st;
    if ((st = grow((void **)&v->s, &cs, v->count + 1, sizeof *v->s, err)) ||
        (st = grow((void **)&v->n, &cn, v->count + 1, sizeof *v->n, err)))
        return st;
    v->cap = cs < cn ? cs : cn;
    v->s[v->count] = s;
    v->n[v->count++] = n;
    return SLM_OK;
}

/* Assemble pieces into one labelled sentence (in lower case when `lower`) and add it. */
static slm_status add_pieces(builder *b, const piece *p, size_t np, bool lower, char *err) {
    size_t len = 0, chars = 0;
    for (size_t i = 0; i < np; i++)
        if (!slm_add_size(len, p[i].n, &len)) return slm_errf(err, SLM_ERR_LIMIT, "sentence too long");
    if (len > SLM_GUARD_MAX_INPUT) return slm_errf(err, SLM_ERR_LIMIT, "sentence too long");
    if (len + 1 > b->cap) {
        size_t cap = len + 1;
        char *t = slm_realloc(b->text, cap), *l = t ? slm_realloc(b->low, cap) : NULL;
        if (t) b->text = t;
        if (l) b->low = l;
        int16_t *ct = l ? slm_realloc(b->ctype, cap * sizeof *ct) : NULL;
        if (ct) b->ctype = ct;
        int32_t *cs = ct ? slm_realloc(b->cspan, cap * sizeof *cs) : NULL;
        if (!cs) return slm_errf(err, SLM_ERR_NOMEM, "sentence scratch");
        b->cspan = cs;
        b->cap = cap;
    }
    size_t at = 0;
    for (size_t i = 0; i < np; i++) {
        memcpy(b->text + at, p[i].s, p[i].n);
        for (size_t j = 0; j < p[i].n; j++) {
            if (((unsigned char)p[i].s[j] & 0xC0) == 0x80) continue;
            b->ctype[chars] = (int16_t)(p[i].k >= 0 ? p[i].k : -1);
            b->cspan[chars++] = p[i].k >= 0 ? (int32_t)i : -1;
        }
        at += p[i].n;
    }
    const char *text = b->text;
    if (lower) {
        len = fold_into(b->text, len, b->low);
        text = b->low;
    }
    return add_example(b->set, text, len, b->ctype, b->cspan, chars, b->lx, err);
}

/* A random value of tagger type k (the slot text itself when none was seen). */
static piece random_value(builder *b, int k, const char *slot, size_t slot_len) {
    const value_list *v = &b->values[k];
    if (!v->count) return (piece){slot, slot_len, -1};
    size_t j = (size_t)(xorshift(&b->rng) % v->count);
    return (piece){v->s[j], v->n[j], k};
}

/* Probability (out of 4) that a synthetic sentence is lower-cased. */
#define LOWER_CHANCE 1u

/* ---- synthetic organisation names ------------------------------------------------------------ */

/* Organisations are the rarest name type in the data (66 values), and many company names are
 * surnames with a legal form ("Miller Ltd.", "Davis, Reynolds and Williamson"). Made-up
 * names of that kind, built from the surnames of the PERSON values, teach the tagger that a
 * surname followed by "Inc." or joined in a partnership list is a company, not a person.
 * How many (--synthetic-orgs) was chosen by cross-validation over train.json's templates
 * (docs/governance.md, quality). */
#define SYNTH_ORG_BYTES 96u

/* Last word of a PERSON value (a surname), or NULL when it does not look like one. */
static const char *surname(const builder *b, uint64_t r, size_t *n) {
    const value_list *v = &b->values[0];
    if (!v->count) return NULL;
    const char *s = v->s[r % v->count];
    size_t len = v->n[r % v->count], a = len;
    while (a > 0 && s[a - 1] != ' ') a--;
    if (len - a < 2 || (unsigned char)s[a] < 'A' || (unsigned char)s[a] > 'Z') return NULL;
    *n = len - a;
    return s + a;
}

/* Append s[0..n) at o[*at] (room checked by the caller). */
static void put(char *o, size_t *at, const char *s, size_t n) {
    memcpy(o + *at, s, n);
    *at += n;
}

static slm_status add_synthetic_orgs(builder *b, unsigned count, char *err) {
    /* legal forms after one surname; kinds past the table join two or three surnames */
    static const char *const suffix[] = {" Inc.", " LLC", " Ltd", " Group", " PLC", " and Sons", " Inc", " Ltd."};
    const size_t nsuffix = sizeof suffix / sizeof suffix[0];
    const int org = 3, person = 0; /* indices in slm_guard_tag_types */
    if (slm_guard_tag_types[org] != SLM_PII_ORGANIZATION || slm_guard_tag_types[person] != SLM_PII_PERSON)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "tag type table changed");
    size_t bytes;
    if (!slm_mul_size(count, SYNTH_ORG_BYTES, &bytes) || !(b->synth = slm_malloc(bytes)))
        return slm_errf(err, SLM_ERR_NOMEM, "synthetic names");
    for (unsigned i = 0; i < count; i++) {
        size_t n1 = 0, n2 = 0, n3 = 0, at = 0;
        const char *s1 = surname(b, xorshift(&b->rng), &n1), *s2 = surname(b, xorshift(&b->rng), &n2),
                   *s3 = surname(b, xorshift(&b->rng), &n3);
        if (!s1 || !s2 || !s3 || n1 + n2 + n3 + 16 > SYNTH_ORG_BYTES) continue;
        char *o = b->synth + (size_t)i * SYNTH_ORG_BYTES;
        size_t kind = (size_t)(xorshift(&b->rng) % (nsuffix + 3));
        put(o, &at, s1, n1);
        if (kind < nsuffix) {
            put(o, &at, suffix[kind], strlen(suffix[kind]));
        } else if (kind == nsuffix) {          /* "Ramsey-Johnson" */
            put(o, &at, "-", 1);
            put(o, &at, s2, n2);
        } else if (kind == nsuffix + 1) {      /* "Smith & Jones" */
            put(o, &at, " & ", 3);
            put(o, &at, s2, n2);
        } else {                               /* "Davis, Reynolds and Williamson" */
            put(o, &at, ", ", 2);
            put(o, &at, s2, n2);
            put(o, &at, " and ", 5);
            put(o, &at, s3, n3);
        }
        slm_status st;
        if ((st = add_value(b, org, o, at, err))) return st;
    }
    return SLM_OK;
}

/* ---- reading the data ------------------------------------------------------------------------- */

/* Split one JSON sentence into pieces (spans sorted, overlaps dropped). *np pieces in *out
 * (owned by the caller). */
static slm_status sentence_pieces(json_t *item, size_t idx, const char *path, piece **out, size_t *np,
                                  char *err) {
    json_t *jt = json_object_get(item, "full_text"), *spans = json_object_get(item, "spans");
    if (!json_is_string(jt) || !json_is_array(spans))
        return slm_errf(err, SLM_ERR_CORRUPT, "%s: sentence %zu lacks full_text or spans", path, idx);
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt), nchars = 0, ns = json_array_size(spans);
    if (len > SLM_GUARD_MAX_INPUT || slm_guard_utf8_check(text, len) != len)
        return slm_errf(err, SLM_ERR_CORRUPT, "%s: sentence %zu is too long or not UTF-8", path, idx);
    for (size_t i = 0; i < len; i++) nchars += ((unsigned char)text[i] & 0xC0) != 0x80;
    size_t *cbyte = slm_malloc((nchars + 1) * sizeof *cbyte);  /* character -> byte offset */
    piece *p = slm_malloc((2 * ns + 1) * sizeof *p);
    if (!cbyte || !p) {
        slm_free(cbyte);
        slm_free(p);
        return slm_errf(err, SLM_ERR_NOMEM, "sentence pieces");
    }
    for (size_t i = 0, c = 0; i <= len; i++)
        if (i == len || ((unsigned char)text[i] & 0xC0) != 0x80) cbyte[c++] = i;
    size_t n = 0, cpos = 0;
    for (;;) {
        /* next span starting at or after cpos */
        json_int_t best_a = -1, best_b = -1;
        int best_k = -1;
        size_t si;
        json_t *sp;
        json_array_foreach(spans, si, sp) {
            json_t *ty = json_object_get(sp, "entity_type");
            json_int_t a = json_integer_value(json_object_get(sp, "start_position"));
            json_int_t b = json_integer_value(json_object_get(sp, "end_position"));
            if (!json_is_string(ty) || a < 0 || b <= a || (size_t)b > nchars) {
                slm_free(cbyte);
                slm_free(p);
                return slm_errf(err, SLM_ERR_CORRUPT, "%s: sentence %zu span %zu is malformed", path, idx, si);
            }
            if ((size_t)a >= cpos && (best_a < 0 || a < best_a)) {
                best_a = a;
                best_b = b;
                best_k = tag_index(json_string_value(ty));
            }
        }
        if (best_a < 0) break;
        if ((size_t)best_a > cpos) p[n++] = (piece){text + cbyte[cpos], cbyte[best_a] - cbyte[cpos], -1};
        /* other entity types (cards, e-mails) stay as plain text: the tagger learns O there */
        p[n++] = (piece){text + cbyte[best_a], cbyte[best_b] - cbyte[best_a], best_k};
        cpos = (size_t)best_b;
    }
    if (cpos < nchars) p[n++] = (piece){text + cbyte[cpos], len - cbyte[cpos], -1};
    slm_free(cbyte);
    *out = p;
    *np = n;
    return SLM_OK;
}

/* One part of a template line: plain text at plain[at..at+n) or a slot of tagger type k. */
typedef struct {
    size_t at, n;       /* plain text range (k < 0) */
    int k;              /* tagger type index, or -1 */
    const char *slot;   /* the slot text "{PERSON}" (used when no value of the type exists) */
    size_t slot_len;
} template_part;

/* Fill the template line t[0..n) ("{PERSON} lives in {GPE}", "\n" escapes) `times` times. */
static slm_status add_template(builder *b, const char *t, size_t n, unsigned times, char *err) {
    slm_status st = SLM_OK;
    piece p[64];
    char plain[1024]; /* unescaped plain text of the line */
    size_t np = 0, pl = 0, i = 0;
    if (n >= sizeof plain) return slm_errf(err, SLM_ERR_LIMIT, "template line longer than %zu", sizeof plain);
    template_part part[64];
    size_t nparts = 0, run = 0;
    while (i < n && nparts + 2 < 64) {
        if (t[i] == '{') {
            const char *close = memchr(t + i, '}', n - i);
            slm_pii_type ty;
            int k = -1;
            if (close && slm_pii_type_parse(t + i + 1, (size_t)(close - t - i - 1), &ty))
                for (int j = 0; j < TAG_NTYPES; j++)
                    if (slm_guard_tag_types[j] == ty) k = j;
            if (k >= 0) {
                if (pl > run) part[nparts++] = (template_part){run, pl - run, -1, NULL, 0};
                part[nparts++] = (template_part){0, 0, k, t + i, (size_t)(close - t - i + 1)};
                i = (size_t)(close - t) + 1;
                run = pl;
                continue;
            }
        }
        if (t[i] == '\\' && i + 1 < n && t[i + 1] == 'n') {
            plain[pl++] = '\n';
            i += 2;
            continue;
        }
        plain[pl++] = t[i++];
    }
    if (pl > run) part[nparts++] = (template_part){run, pl - run, -1, NULL, 0};
    for (unsigned r = 0; r < times && !st; r++) {
        np = 0;
        for (size_t j = 0; j < nparts; j++)
            p[np++] = part[j].k < 0 ? (piece){plain + part[j].at, part[j].n, -1}
                                    : random_value(b, part[j].k, part[j].slot, part[j].slot_len);
        st = add_pieces(b, p, np, (xorshift(&b->rng) & 3) < LOWER_CHANCE, err);
    }
    return st;
}

static slm_status add_templates(builder *b, const char *path, unsigned times, char *err) {
    slm_status st = SLM_OK;
    char line[1024];
    FILE *f = fopen(path, "r");
    if (!f) return slm_errf(err, SLM_ERR_IO, "%s: cannot open", path);
    while (!st && fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        if (n == 0 || line[0] == '#') continue;
        if (slm_guard_utf8_check(line, n) != n) st = slm_errf(err, SLM_ERR_UTF8, "%s: invalid UTF-8", path);
        else st = add_template(b, line, n, times, err);
    }
    fclose(f);
    return st;
}

/* Read the JSON file into examples: each sentence as written, in lower case, and once more
 * with its entities swapped for other values of the same type; then the templates. */
static slm_status load_examples(const slm_guard_train_opts *o, builder *b, size_t *sentences, char *err) {
    slm_status st = SLM_OK;
    json_error_t jerr;
    piece *p = NULL;
    size_t np = 0;
    json_t *root = json_load_file(o->data_path, 0, &jerr);
    if (!root) return slm_errf(err, SLM_ERR_CORRUPT, "%s:%d: %s", o->data_path, jerr.line, jerr.text);
    if (!json_is_array(root) || json_array_size(root) > TRAIN_MAX_SENTENCES) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "%s: expected a list of at most %u sentences", o->data_path,
                      TRAIN_MAX_SENTENCES);
        goto done;
    }
    size_t idx;
    json_t *item;
    json_array_foreach(root, idx, item) {  /* first pass: entity values per type */
        if ((st = sentence_pieces(item, idx, o->data_path, &p, &np, err))) goto done;
        for (size_t i = 0; i < np && !st; i++)
            if (p[i].k >= 0) st = add_value(b, p[i].k, p[i].s, p[i].n, err);
        slm_free(p);
        p = NULL;
        if (st) goto done;
    }
    if (o->synthetic_orgs && (st = add_synthetic_orgs(b, o->synthetic_orgs, err))) goto done;
    json_array_foreach(root, idx, item) {
        if ((st = sentence_pieces(item, idx, o->data_path, &p, &np, err))) goto done;
        if ((st = add_pieces(b, p, np, false, err)) || (st = add_pieces(b, p, np, true, err))) goto done;
        for (size_t i = 0; i < np; i++)
            if (p[i].k >= 0) p[i] = random_value(b, p[i].k, p[i].s, p[i].n);
        if ((st = add_pieces(b, p, np, (xorshift(&b->rng) & 3) < LOWER_CHANCE, err))) goto done;
        slm_free(p);
        p = NULL;
        (*sentences)++;
    }
    if (o->templates_path) st = add_templates(b, o->templates_path, o->template_fills ? o->template_fills : TRAIN_DEFAULT_FILLS, err);
done:
    slm_free(p);
    json_decref(root);
    return st;
}

/* ---- averaged perceptron ---------------------------------------------------------------- */

typedef struct {
    float *w, *u;            /* owned: weights and their time-weighted update sums (emit) */
    float tw[TAG_NTRANS], tu[TAG_NTRANS];  /* the same for transitions */
    float c;                 /* examples seen so far (+1) */
} perceptron;

static void upd(float *w, float *u, size_t i, float d, float c) {
    w[i] += d;
    u[i] += d * c;
}

slm_status slm_guard_train(const slm_guard_train_opts *o, slm_guard_train_stats *stats, char *err) {
    slm_status st;
    train_set s = {0};
    guard_lexicon *lx = NULL;
    perceptron p = {0};
    builder b = {0};
    size_t *order = NULL, sentences = 0, max_len = 0;
    float *emit = NULL, *score = NULL;
    uint8_t *back = NULL, *path = NULL;
    slm_guard_train_stats local = {0};
    if (!o || !o->data_path || !o->out_path) return slm_errf(err, SLM_ERR_INVALID_ARG, "data and output paths are required");
    if (!(o->dropout >= 0.0 && o->dropout <= 0.9)) return slm_errf(err, SLM_ERR_RANGE, "dropout %g not in [0, 0.9]", o->dropout);
    if (!stats) stats = &local;
    unsigned epochs = o->epochs ? o->epochs : TRAIN_DEFAULT_EPOCHS;
    size_t ne = (size_t)TAG_BUCKETS * TAG_NTAGS;
    if ((st = slm_guard_lexicon_create(&lx, err))) goto done;
    b.set = &s;
    b.lx = lx;
    b.rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    if ((st = load_examples(o, &b, &sentences, err))) goto done;
    if (s.nex == 0) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "%s: no sentences", o->data_path);
        goto done;
    }
    for (size_t e = 0; e < s.nex; e++)
        if (s.first[e + 1] - s.first[e] > max_len) max_len = s.first[e + 1] - s.first[e];
    p.w = slm_calloc(ne, sizeof *p.w);
    p.u = slm_calloc(ne, sizeof *p.u);
    order = slm_malloc(s.nex * sizeof *order);
    emit = slm_malloc(max_len * TAG_NTAGS * sizeof *emit);
    score = slm_malloc(max_len * TAG_NTAGS * sizeof *score);
    back = slm_malloc(max_len * TAG_NTAGS);
    path = slm_malloc(max_len);
    size_t *foff = slm_malloc((s.ntok + 1) * sizeof *foff); /* first feature of each token */
    uint8_t *drop = slm_malloc(max_len * TAG_MAX_FEATS);     /* features left out this time */
    unsigned dropout = (unsigned)(o->dropout * 65536.0);
    if (!p.w || !p.u || !order || !emit || !score || !back || !path || !foff || !drop) {
        slm_free(foff);
        slm_free(drop);
        st = slm_errf(err, SLM_ERR_NOMEM, "training state");
        goto done;
    }
    foff[0] = 0;
    for (size_t i = 0; i < s.ntok; i++) foff[i + 1] = foff[i] + s.nf[i];
    for (size_t e = 0; e < s.nex; e++) order[e] = e;
    uint64_t rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ull;
    p.c = 1.0f;
    size_t correct = 0;
    for (unsigned ep = 0; ep < epochs; ep++) {
        for (size_t e = s.nex; e > 1; e--) {  /* Fisher-Yates */
            size_t j = (size_t)(xorshift(&rng) % e), tmp = order[e - 1];
            order[e - 1] = order[j];
            order[j] = tmp;
        }
        correct = 0;
        for (size_t oi = 0; oi < s.nex; oi++) {
            size_t ex = order[oi], t0 = s.first[ex], n = s.first[ex + 1] - t0;
            if (n == 0) continue;
            for (size_t i = 0; i < n; i++) {
                float *row = emit + i * TAG_NTAGS;
                memset(row, 0, TAG_NTAGS * sizeof *row);
                for (size_t k = foff[t0 + i]; k < foff[t0 + i + 1]; k++) {
                    drop[k - foff[t0]] = k > foff[t0 + i] && (xorshift(&rng) & 0xFFFF) < dropout;
                    if (drop[k - foff[t0]]) continue;
                    const float *w = p.w + (size_t)s.feat[k] * TAG_NTAGS;
                    for (unsigned t = 0; t < TAG_NTAGS; t++) row[t] += w[t];
                }
            }
            slm_guard_tag_viterbi(emit, n, p.tw, score, back, path);
            const uint8_t *g = s.gold + t0;
            for (size_t i = 0; i < n; i++) {
                correct += path[i] == g[i];
                unsigned pg = i ? g[i - 1] : TAG_NTAGS, pp = i ? path[i - 1] : TAG_NTAGS;
                if (path[i] != g[i]) {
                    for (size_t k = foff[t0 + i]; k < foff[t0 + i + 1]; k++) {
                        if (drop[k - foff[t0]]) continue;
                        size_t base = (size_t)s.feat[k] * TAG_NTAGS;
                        upd(p.w, p.u, base + g[i], 1.0f, p.c);
                        upd(p.w, p.u, base + path[i], -1.0f, p.c);
                    }
                }
                if (pg != pp || g[i] != path[i]) {
                    upd(p.tw, p.tu, pg * TAG_NTAGS + g[i], 1.0f, p.c);
                    upd(p.tw, p.tu, pp * TAG_NTAGS + path[i], -1.0f, p.c);
                }
            }
            p.c += 1.0f;
        }
    }
    slm_free(foff);
    slm_free(drop);
    /* Averaging: w_avg = w - u / c. */
    for (size_t i = 0; i < ne; i++) p.w[i] -= p.u[i] / p.c;
    for (size_t i = 0; i < TAG_NTRANS; i++) p.tw[i] -= p.tu[i] / p.c;
    if ((st = slm_guard_tag_save(o->out_path, p.w, p.tw, &stats->file_bytes, err))) goto done;
    stats->sentences = sentences;
    stats->tokens = s.ntok;
    stats->train_token_acc = (double)correct / (double)s.ntok;
done:
    slm_free(p.w);
    slm_free(p.u);
    slm_free(order);
    slm_free(emit);
    slm_free(score);
    slm_free(back);
    slm_free(path);
    train_set_free(&s);
    builder_free(&b);
    slm_guard_lexicon_destroy(lx);
    return st;
}
