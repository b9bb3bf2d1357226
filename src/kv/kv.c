/*
 * kv/kv.c: the unified key/value cache (see kv.h for the design and invariants).
 *
 * Storage: k[il] and v[il] are n_cells rows of row_bytes each, contiguous per layer, in the
 * cache type. Metadata: pos[n_cells], mask[n_cells]. Conversions into the cache type use
 * the quant module (F16 through the reference-exact converter, Q8_0 through its reference
 * quantizer), so a cached row equals what the reference runtime would hold.
 */
#include "kv/kv.h"

#include <string.h>

#include "core/core.h"
#include "quant/kernels.h"

/* ---- the cache ------------------------------------------------------------------------- */

struct slm_kv {
    slm_type type;       /* storage type of K and V rows */
    int64_t n_cells;     /* cells */
    int32_t n_layer;     /* layers */
    int64_t n_embd_kv;   /* floats per row */
    int32_t n_seq_max;   /* sequence ids in [0, n_seq_max) */
    size_t row_bytes;    /* bytes per stored row */
    uint8_t *k;          /* [n_layer][n_cells][row_bytes], owned */
    uint8_t *v;          /* [n_layer][n_cells][row_bytes], owned */
    int32_t *pos;        /* [n_cells] position held, -1 when free, owned */
    uint64_t *mask;      /* [n_cells] sequences that see the cell, 0 when free, owned */
    int64_t n_used;      /* non-free cells */
    int64_t used_end;    /* one past the highest non-free cell */
};

slm_status slm_kv_create(const slm_kv_params *p, slm_kv **out, char *err) {
    *out = NULL;
    if (p->type != SLM_TYPE_F16 && p->type != SLM_TYPE_F32 && p->type != SLM_TYPE_Q8_0)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "KV cache type %s (use f16, f32 or q8_0)", slm_type_name(p->type));
    if (p->n_cells < 1 || p->n_cells > SLM_KV_MAX_CELLS)
        return slm_errf(err, SLM_ERR_RANGE, "KV cells %lld outside [1, %d]", (long long)p->n_cells, SLM_KV_MAX_CELLS);
    if (p->n_seq_max < 1 || p->n_seq_max > SLM_KV_MAX_SEQ)
        return slm_errf(err, SLM_ERR_RANGE, "sequences %d outside [1, %d]", p->n_seq_max, SLM_KV_MAX_SEQ);
    if (p->n_layer < 1 || p->n_embd_kv < 1)
        return slm_errf(err, SLM_ERR_RANGE, "KV cache needs layers and a row width");
    const slm_type_traits *tr = slm_type_traits_of(p->type);
    size_t row_bytes, layer_bytes, total;
    if (!tr || !tr->to_float || !tr->from_float)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "KV cache type %s has no kernels", slm_type_name(p->type));
    if (!slm_type_row_bytes(p->type, p->n_embd_kv, &row_bytes))
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "KV row of %lld values is not a whole number of %s blocks",
                        (long long)p->n_embd_kv, tr->name);
    if (!slm_mul_size(row_bytes, (size_t)p->n_cells, &layer_bytes) ||
        !slm_mul_size(layer_bytes, (size_t)p->n_layer, &total))
        return slm_errf(err, SLM_ERR_LIMIT, "KV cache size overflows");

    slm_kv *kv = slm_calloc(1, sizeof *kv);
    if (!kv) return slm_errf(err, SLM_ERR_NOMEM, "KV cache");
    kv->type = p->type;
    kv->n_cells = p->n_cells;
    kv->n_layer = p->n_layer;
    kv->n_embd_kv = p->n_embd_kv;
    kv->n_seq_max = p->n_seq_max;
    kv->row_bytes = row_bytes;
    kv->k = slm_malloc(total);
    kv->v = slm_malloc(total);
    kv->pos = slm_malloc((size_t)p->n_cells * sizeof *kv->pos);
    kv->mask = slm_malloc((size_t)p->n_cells * sizeof *kv->mask);
    if (!kv->k || !kv->v || !kv->pos || !kv->mask) {
        slm_kv_destroy(kv);
        return slm_errf(err, SLM_ERR_NOMEM, "KV cache of %zu bytes", total);
    }
    /* Zero storage: attention only reads visible cells, but a defined value keeps
     * sanitizers and memory checkers quiet about never-written rows. */
    memset(kv->k, 0, total);
    memset(kv->v, 0, total);
    slm_kv_clear(kv);
    *out = kv;
    return SLM_OK;
}

void slm_kv_destroy(slm_kv *kv) {
    if (!kv) return;
    slm_free(kv->k);
    slm_free(kv->v);
    slm_free(kv->pos);
    slm_free(kv->mask);
    slm_free(kv);
}

slm_type slm_kv_type(const slm_kv *kv) { return kv->type; }
int64_t slm_kv_n_cells(const slm_kv *kv) { return kv->n_cells; }
int32_t slm_kv_n_seq_max(const slm_kv *kv) { return kv->n_seq_max; }
int64_t slm_kv_n_used(const slm_kv *kv) { return kv->n_used; }
int64_t slm_kv_used_end(const slm_kv *kv) { return kv->used_end; }
size_t slm_kv_bytes(const slm_kv *kv) { return 2 * kv->row_bytes * (size_t)kv->n_cells * (size_t)kv->n_layer; }
const uint64_t *slm_kv_masks(const slm_kv *kv) { return kv->mask; }
const int32_t *slm_kv_positions(const slm_kv *kv) { return kv->pos; }
size_t slm_kv_row_bytes(const slm_kv *kv) { return kv->row_bytes; }

/* ---- cells ----------------------------------------------------------------------------- */

static void recompute_used_end(slm_kv *kv) {
    int64_t e = kv->used_end;
    while (e > 0 && kv->mask[e - 1] == 0) e--;
    kv->used_end = e;
}

slm_status slm_kv_alloc(slm_kv *kv, int32_t n, const int32_t *pos, const int32_t *seq, int32_t *cells,
                        char *err) {
    if (n < 0) return slm_errf(err, SLM_ERR_RANGE, "negative token count");
    for (int32_t i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= kv->n_seq_max)
            return slm_errf(err, SLM_ERR_RANGE, "token %d: sequence id %d outside [0, %d)", i, seq[i], kv->n_seq_max);
        if (pos[i] < 0) return slm_errf(err, SLM_ERR_RANGE, "token %d: negative position %d", i, pos[i]);
    }
    if (kv->n_cells - kv->n_used < n)
        return slm_errf(err, SLM_ERR_FULL, "KV cache full: %d cells needed, %lld free of %lld", n,
                        (long long)(kv->n_cells - kv->n_used), (long long)kv->n_cells);
    int64_t c = 0;
    for (int32_t i = 0; i < n; i++) {
        while (kv->mask[c] != 0) c++; /* terminates: enough cells are free */
        kv->mask[c] = (uint64_t)1 << seq[i];
        kv->pos[c] = pos[i];
        kv->n_used++;
        if (c + 1 > kv->used_end) kv->used_end = c + 1;
        cells[i] = (int32_t)c;
    }
    return SLM_OK;
}

void slm_kv_free_cells(slm_kv *kv, int32_t n, const int32_t *cells) {
    for (int32_t i = 0; i < n; i++) {
        const int64_t c = cells[i];
        if (c < 0 || c >= kv->n_cells || kv->mask[c] == 0) continue;
        kv->mask[c] = 0;
        kv->pos[c] = -1;
        kv->n_used--;
    }
    recompute_used_end(kv);
}

void *slm_kv_k_row(const slm_kv *kv, int32_t il, int64_t c) {
    return kv->k + ((size_t)il * (size_t)kv->n_cells + (size_t)c) * kv->row_bytes;
}

void *slm_kv_v_row(const slm_kv *kv, int32_t il, int64_t c) {
    return kv->v + ((size_t)il * (size_t)kv->n_cells + (size_t)c) * kv->row_bytes;
}

/* One row into the cache type: F32 as is, the others through the type's reference
 * converter (F16 rounds to nearest even as the reference's copy into its F16 cache does). */
static void store_row(slm_type type, void *dst, const float *src, int64_t n) {
    if (type == SLM_TYPE_F32) memcpy(dst, src, (size_t)n * sizeof(float));
    else slm_quant_kernels()->from_float[type](src, dst, n);
}

void slm_kv_store_part(slm_kv *kv, int32_t il, int64_t c, int64_t off, int64_t n, const float *k, const float *v) {
    const slm_type_traits *tr = slm_type_traits_of(kv->type);
    const size_t at = (size_t)(off / tr->block_size) * tr->type_size; /* bytes into the row */
    store_row(kv->type, (uint8_t *)slm_kv_k_row(kv, il, c) + at, k, n);
    store_row(kv->type, (uint8_t *)slm_kv_v_row(kv, il, c) + at, v, n);
}

void slm_kv_store(slm_kv *kv, int32_t il, int64_t c, const float *k, const float *v) {
    slm_kv_store_part(kv, il, c, 0, kv->n_embd_kv, k, v);
}

/* ---- sequence operations ------------------------------------------------------------------ */

static bool in_range(int32_t p, int32_t p0, int32_t p1) {
    return p >= p0 && (p1 < 0 || p < p1);
}

slm_status slm_kv_seq_rm(slm_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err) {
    if (seq >= kv->n_seq_max) return slm_errf(err, SLM_ERR_RANGE, "sequence id %d >= %d", seq, kv->n_seq_max);
    if (p0 < 0) p0 = 0;
    const uint64_t bits = seq < 0 ? ~(uint64_t)0 : (uint64_t)1 << seq;
    for (int64_t c = 0; c < kv->used_end; c++) {
        if (!(kv->mask[c] & bits) || !in_range(kv->pos[c], p0, p1)) continue;
        kv->mask[c] &= ~bits;
        if (kv->mask[c] == 0) { /* no sequence sees it any more: free */
            kv->pos[c] = -1;
            kv->n_used--;
        }
    }
    recompute_used_end(kv);
    return SLM_OK;
}

slm_status slm_kv_seq_cp(slm_kv *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err) {
    if (src < 0 || src >= kv->n_seq_max || dst < 0 || dst >= kv->n_seq_max)
        return slm_errf(err, SLM_ERR_RANGE, "sequence ids %d, %d outside [0, %d)", src, dst, kv->n_seq_max);
    if (p0 < 0) p0 = 0;
    for (int64_t c = 0; c < kv->used_end; c++)
        if ((kv->mask[c] >> src & 1u) && in_range(kv->pos[c], p0, p1)) kv->mask[c] |= (uint64_t)1 << dst;
    return SLM_OK;
}

int32_t slm_kv_seq_pos_max(const slm_kv *kv, int32_t seq) {
    int32_t m = -1;
    if (seq < 0 || seq >= kv->n_seq_max) return -1;
    for (int64_t c = 0; c < kv->used_end; c++)
        if ((kv->mask[c] >> seq & 1u) && kv->pos[c] > m) m = kv->pos[c];
    return m;
}

void slm_kv_clear(slm_kv *kv) {
    for (int64_t c = 0; c < kv->n_cells; c++) {
        kv->pos[c] = -1;
        kv->mask[c] = 0;
    }
    kv->n_used = 0;
    kv->used_end = 0;
}
