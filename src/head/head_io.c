/*
 * head/head_io.c: the head file format (version 1), little-endian:
 *
 *   offset  size  field
 *   0       8     magic "SLMHEAD\x1a"
 *   8       4     u32 version (1)
 *   12      4     u32 n_labels k            (2 .. SLM_HEAD_MAX_LABELS)
 *   16      4     u32 n_cols                (n-gram columns, <= 2^hash_bits)
 *   20      4     u32 embed_dim             (<= SLM_HEAD_MAX_EMBED_DIM)
 *   24      24    u32 hash_bits, word_min, word_max, char_min, char_max, sublinear
 *   48      12    f32 word_weight, char_weight, embed_weight
 *   60      4     f32 temperature           ([SLM_HEAD_TEMP_MIN, SLM_HEAD_TEMP_MAX])
 *   64      4     u32 score kind
 *   68      4     f32 threshold             (not NaN; -inf = never escalate by score)
 *   72      4     i32 oos label index       (-1 = none)
 *   76      4     u32 text normalisation flags (SLM_HEAD_FEAT_*)
 *   80            k x (u32 length, bytes)   labels, sorted, distinct, UTF-8
 *                 n_cols x u32              bucket of each column, distinct
 *                 n_cols x f32              idf (finite, > 0)
 *                 (n_cols + embed_dim + 1) x k x f32   weights, bias row last (finite)
 *   end - 32 32   SHA-256 of every byte before it
 *
 * Loading checks, in order: size, magic, version, checksum (any flipped or missing byte:
 * SLM_ERR_TAMPERED), then every field against its named limit and the exact file size
 * (SLM_ERR_CORRUPT / SLM_ERR_LIMIT), so a file that passes is a complete head.
 * Thread-safety: reentrant. Non-goals: memory-mapping (heads are a few MB to tens of MB).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/core.h"
#include "head/calib.h"
#include "head/features.h"
#include "head/head_impl.h"

#define HEAD_MAGIC "SLMHEAD\x1a"
#define HEAD_MAGIC_LEN 8
#define HEAD_VERSION 1u
#define HEAD_FIXED_BYTES 80u
#define HEAD_SUM_BYTES 32u /* SHA-256 */
/* Trained weights stay within a few hundred and IDF below ln(1 + SLM_HEAD_MAX_EXAMPLES) + 1;
 * anything beyond these bounds is corrupt, and the bounds keep every logit finite. */
#define HEAD_MAX_ABS_WEIGHT 1e6f
#define HEAD_MAX_IDF 100.0f

/* ---- writing ---------------------------------------------------------------------------- */

typedef struct {
    unsigned char *p; /* owned */
    size_t len, cap;
    bool failed;      /* an allocation failed; later writes are dropped */
} wbuf;

static void put(wbuf *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *np = slm_realloc(b->p, cap);
        if (!np) { b->failed = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(wbuf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, x, 4);
}

static void put_f32(wbuf *b, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}

static bool sha256(const void *data, size_t len, unsigned char out[HEAD_SUM_BYTES]) {
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == HEAD_SUM_BYTES;
}

slm_status slm_head_save(const slm_head *h, const char *path, char *err) {
    wbuf b = {0};
    slm_status st = SLM_OK;
    FILE *f = NULL;
    unsigned char sum[HEAD_SUM_BYTES];
    if (!h || !path) return slm_errf(err, SLM_ERR_INVALID_ARG, "save: bad arguments");
    put(&b, HEAD_MAGIC, HEAD_MAGIC_LEN);
    put_u32(&b, HEAD_VERSION);
    put_u32(&b, h->n_labels);
    put_u32(&b, h->n_cols);
    put_u32(&b, h->embed_dim);
    const slm_head_feat_cfg *c = &h->feat;
    put_u32(&b, c->hash_bits);
    put_u32(&b, c->word_min);
    put_u32(&b, c->word_max);
    put_u32(&b, c->char_min);
    put_u32(&b, c->char_max);
    put_u32(&b, c->sublinear);
    put_f32(&b, c->word_weight);
    put_f32(&b, c->char_weight);
    put_f32(&b, c->embed_weight);
    put_f32(&b, h->temperature);
    put_u32(&b, h->score);
    put_f32(&b, h->threshold);
    put_u32(&b, (uint32_t)h->oos_index);
    put_u32(&b, c->text_flags);
    for (uint32_t i = 0; i < h->n_labels; i++) {
        size_t l = strlen(h->labels[i]);
        put_u32(&b, (uint32_t)l);
        put(&b, h->labels[i], l);
    }
    for (uint32_t i = 0; i < h->n_cols; i++) put_u32(&b, h->buckets[i]);
    for (uint32_t i = 0; i < h->n_cols; i++) put_f32(&b, h->idf[i]);
    size_t nw = ((size_t)h->n_cols + h->embed_dim + 1) * h->n_labels;
    for (size_t i = 0; i < nw; i++) put_f32(&b, h->W[i]);
    if (b.failed) {
        st = slm_errf(err, SLM_ERR_NOMEM, "save: out of memory");
        goto done;
    }
    if (!sha256(b.p, b.len, sum)) {
        st = slm_errf(err, SLM_ERR_CRYPTO, "save: SHA-256 failed");
        goto done;
    }
    put(&b, sum, sizeof sum);
    if (b.failed) {
        st = slm_errf(err, SLM_ERR_NOMEM, "save: out of memory");
        goto done;
    }
    if (!(f = fopen(path, "wb"))) {
        st = slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (fwrite(b.p, 1, b.len, f) != b.len) st = slm_errf(err, SLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == SLM_OK) st = slm_errf(err, SLM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
done:
    slm_free(b.p);
    return st;
}

/* ---- reading ---------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p; /* borrowed */
    size_t len, off;        /* end of the payload (checksum excluded), cursor */
} rbuf;

static bool get_u32(rbuf *r, uint32_t *v) {
    if (r->len - r->off < 4) return false;
    const unsigned char *x = r->p + r->off;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    r->off += 4;
    return true;
}

static bool get_f32(rbuf *r, float *f) {
    uint32_t v;
    if (!get_u32(r, &v)) return false;
    memcpy(f, &v, 4);
    return true;
}

/* n floats, all finite and |x| <= bound, into a new array (or SLM_ERR_*). */
static slm_status get_floats(rbuf *r, size_t n, float bound, float **out, const char *what, char *err) {
    size_t bytes;
    if (!slm_mul_size(n, 4, &bytes) || r->len - r->off < bytes)
        return slm_errf(err, SLM_ERR_CORRUPT, "head file: %s truncated", what);
    float *a = slm_malloc((n ? n : 1) * sizeof *a);
    if (!a) return slm_errf(err, SLM_ERR_NOMEM, "head file: out of memory for %s", what);
    for (size_t i = 0; i < n; i++) {
        get_f32(r, &a[i]);
        if (!(fabsf(a[i]) <= bound)) {
            slm_free(a);
            return slm_errf(err, SLM_ERR_CORRUPT, "head file: %s value %zu is not finite or above %g", what, i,
                            (double)bound);
        }
    }
    *out = a;
    return SLM_OK;
}

#define TRUNC(what) slm_errf(err, SLM_ERR_CORRUPT, "head file: truncated in %s", what)

slm_status slm_head_load_mem(const void *buf, size_t len, slm_head **out, char *err) {
    const unsigned char *p = buf;
    unsigned char sum[HEAD_SUM_BYTES];
    slm_head *h = NULL;
    slm_status st = SLM_OK;
    uint32_t version, k, ncols, edim, u[6], score, oos, flags;
    float fw[3], temp, thr;
    if (!out || (!buf && len)) return slm_errf(err, SLM_ERR_INVALID_ARG, "load: bad arguments");
    *out = NULL;
    if (len > SLM_HEAD_MAX_FILE_BYTES) return slm_errf(err, SLM_ERR_LIMIT, "head file larger than the limit");
    if (len < HEAD_MAGIC_LEN || memcmp(p, HEAD_MAGIC, HEAD_MAGIC_LEN))
        return slm_errf(err, SLM_ERR_CORRUPT, "not a head file (bad magic)");
    if (len < HEAD_FIXED_BYTES + HEAD_SUM_BYTES)
        return slm_errf(err, SLM_ERR_CORRUPT, "head file truncated: %zu bytes", len);
    rbuf r = {p, len - HEAD_SUM_BYTES, HEAD_MAGIC_LEN};
    get_u32(&r, &version);
    if (version != HEAD_VERSION)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "head file version %u (this build reads %u)", version, HEAD_VERSION);
    if (!sha256(p, len - HEAD_SUM_BYTES, sum))
        return slm_errf(err, SLM_ERR_CRYPTO, "load: SHA-256 failed");
    if (memcmp(sum, p + len - HEAD_SUM_BYTES, HEAD_SUM_BYTES))
        return slm_errf(err, SLM_ERR_TAMPERED, "head file checksum mismatch: the file is damaged or truncated");

    /* fixed header: the checksum matched, but a writer bug or a forged file must still not
     * get past the limits */
    get_u32(&r, &k);
    get_u32(&r, &ncols);
    get_u32(&r, &edim);
    for (int i = 0; i < 6; i++) get_u32(&r, &u[i]);
    for (int i = 0; i < 3; i++) get_f32(&r, &fw[i]);
    get_f32(&r, &temp);
    get_u32(&r, &score);
    get_f32(&r, &thr);
    get_u32(&r, &oos);
    get_u32(&r, &flags);
    if (!(h = slm_head_alloc())) return slm_errf(err, SLM_ERR_NOMEM, "load: out of memory");
    h->feat = (slm_head_feat_cfg){u[0], u[1], u[2], u[3], u[4], u[5], flags, fw[0], fw[1], fw[2]};
    if ((st = slm_head_feat_cfg_check(&h->feat, err)) != SLM_OK) goto done;
    if (k < 2 || k > SLM_HEAD_MAX_LABELS) {
        st = slm_errf(err, SLM_ERR_LIMIT, "head file: %u labels outside [2, %d]", k, SLM_HEAD_MAX_LABELS);
        goto done;
    }
    if (ncols > (1u << h->feat.hash_bits) || edim > SLM_HEAD_MAX_EMBED_DIM) {
        st = slm_errf(err, SLM_ERR_LIMIT, "head file: %u columns / %u embedding dims over the limits", ncols, edim);
        goto done;
    }
    if (!(temp >= (float)SLM_HEAD_TEMP_MIN && temp <= (float)SLM_HEAD_TEMP_MAX) || score >= SLM_HEAD_SCORE_COUNT ||
        isnan(thr) || ((int32_t)oos < -1 || (int32_t)oos >= (int32_t)k)) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "head file: calibration fields invalid");
        goto done;
    }
    h->n_labels = k;
    h->n_cols = ncols;
    h->embed_dim = edim;
    h->temperature = temp;
    h->score = score;
    h->threshold = thr;
    h->oos_index = (int32_t)oos;

    /* labels */
    if (!(h->labels = slm_calloc(k, sizeof *h->labels))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "load: out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < k; i++) {
        uint32_t l;
        if (!get_u32(&r, &l)) { st = TRUNC("labels"); goto done; }
        if (l == 0 || l >= SLM_HEAD_MAX_LABEL_BYTES) {
            st = slm_errf(err, SLM_ERR_LIMIT, "head file: label %u has length %u", i, l);
            goto done;
        }
        if (r.len - r.off < l) { st = TRUNC("labels"); goto done; }
        const char *s = (const char *)r.p + r.off;
        if (memchr(s, '\0', l) || !slm_head_feat_utf8_valid(s, l)) {
            st = slm_errf(err, SLM_ERR_CORRUPT, "head file: label %u is not clean UTF-8", i);
            goto done;
        }
        if (!(h->labels[i] = slm_strndup(s, l))) {
            st = slm_errf(err, SLM_ERR_NOMEM, "load: out of memory");
            goto done;
        }
        r.off += l;
        if (i > 0 && strcmp(h->labels[i - 1], h->labels[i]) >= 0) {
            st = slm_errf(err, SLM_ERR_CORRUPT, "head file: labels not sorted and distinct at %u", i);
            goto done;
        }
    }

    /* vocabulary, idf, weights */
    size_t bytes;
    if (!slm_mul_size(ncols, 4, &bytes) || r.len - r.off < bytes) { st = TRUNC("buckets"); goto done; }
    if (!(h->buckets = slm_malloc((ncols ? ncols : 1) * sizeof *h->buckets))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "load: out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < ncols; i++) get_u32(&r, &h->buckets[i]);
    if ((st = slm_head_build_col_of(h, err)) != SLM_OK) goto done;
    if ((st = get_floats(&r, ncols, HEAD_MAX_IDF, &h->idf, "idf", err)) != SLM_OK) goto done;
    for (uint32_t i = 0; i < ncols; i++)
        if (!(h->idf[i] > 0.0f)) {
            st = slm_errf(err, SLM_ERR_CORRUPT, "head file: idf %u is not positive", i);
            goto done;
        }
    size_t nw;
    if (!slm_mul_size((size_t)ncols + edim + 1, k, &nw)) { st = TRUNC("weights"); goto done; }
    if ((st = get_floats(&r, nw, HEAD_MAX_ABS_WEIGHT, &h->W, "weights", err)) != SLM_OK) goto done;
    if (r.off != r.len) {
        st = slm_errf(err, SLM_ERR_CORRUPT, "head file: %zu unexpected bytes before the checksum", r.len - r.off);
        goto done;
    }
    *out = h;
    h = NULL;
done:
    slm_head_destroy(h);
    return st;
}

slm_status slm_head_load(const char *path, slm_head **out, char *err) {
    FILE *f;
    unsigned char *buf = NULL;
    long size;
    slm_status st;
    if (!path || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "load: bad arguments");
    *out = NULL;
    if (!(f = fopen(path, "rb"))) return slm_errf(err, SLM_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return slm_errf(err, SLM_ERR_IO, "%s: cannot get its size", path);
    }
    if ((unsigned long long)size > SLM_HEAD_MAX_FILE_BYTES) {
        fclose(f);
        return slm_errf(err, SLM_ERR_LIMIT, "%s: %ld bytes exceed the head file limit", path, size);
    }
    if (!(buf = slm_malloc(size ? (size_t)size : 1))) {
        fclose(f);
        return slm_errf(err, SLM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        slm_free(buf);
        return slm_errf(err, SLM_ERR_IO, "%s: short read", path);
    }
    st = slm_head_load_mem(buf, (size_t)size, out, err);
    if (st != SLM_OK) {
        char detail[SLM_ERR_LEN];
        snprintf(detail, sizeof detail, "%s", err ? err : "");
        slm_errf(err, st, "%s: %s", path, detail);
    }
    slm_free(buf);
    return st;
}
