/*
 * model/repack.c: rewriting weight matrices at load into the packed layout of this
 * process's kernel set (quant/kernels.h, "packed weights"), in place.
 *
 * A group of 8 rows is copied aside and packed back over itself, so the model needs no
 * second copy: a mapped file's pages become private copies as they are written (the file
 * never changes; resident memory stays the file's size), a read file is rewritten in its
 * buffer. The tied output matrix is token_embd: packed once, and the embedding lookup
 * unpacks a group to read one row (forward.c).
 * Invariants: values never change (pack/unpack are exact inverses, tests/test_quant_pack.c);
 * a matrix is packed at most once; matrices whose bytes overlap another's (only a crafted
 * file does that) and rows longer than SLM_QUANT_PACK_MAX_COLS stay as they are.
 * Thread-safety: runs inside slm_model_open, before the model is shared.
 * Non-goals: packing in parallel (a 1B model repacks in well under a second), layouts that
 * change the size of a group.
 */
#include <string.h>

#include "core/core.h"
#include "model/model.h"
#include "quant/kernels.h"

/* Every matrix of the model that is multiplied with (the output, tied or not, and the
 * layers'); at most 7 per layer + 1. */
static size_t list_mats(slm_model *m, slm_mat **out) {
    size_t n = 0;
    out[n++] = &m->output;
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        slm_layer *L = &m->layers[il];
        slm_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) out[n++] = mats[i];
    }
    return n;
}

static bool packable(const slm_quant_kernel_set *ks, const slm_mat *w) {
    return w->data && ks->pack[w->type] && w->n_out >= SLM_QUANT_PACK_ROWS && w->n_in <= SLM_QUANT_PACK_MAX_COLS;
}

/* Bytes of a matrix's rows. */
static size_t mat_bytes(const slm_mat *w) { return (size_t)w->n_out * w->row_bytes; }

/* Whether w's bytes overlap another listed matrix's (the same tensor twice is not listed). */
static bool overlaps(slm_mat *const *mats, size_t n, size_t self) {
    const uint8_t *a0 = mats[self]->data, *a1 = a0 + mat_bytes(mats[self]);
    for (size_t i = 0; i < n; i++) {
        if (i == self || !mats[i]->data) continue;
        const uint8_t *b0 = mats[i]->data, *b1 = b0 + mat_bytes(mats[i]);
        if (a0 < b1 && b0 < a1) return true;
    }
    return false;
}

slm_status slm_model_repack(slm_model *m, char *err) {
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    slm_mat **mats = NULL; /* owned: the list of matrices */
    uint8_t *tmp = NULL;   /* owned: one group of the file's rows */
    size_t n = 0, tmp_bytes = 0;
    slm_status st = SLM_OK;
    bool writable = false;
    size_t cap;
    if (!slm_mul_size((size_t)m->hp.n_layer, 7, &cap) || !slm_add_size(cap, 1, &cap) ||
        !(mats = slm_malloc(cap * sizeof *mats))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "repacking weights");
        goto done;
    }
    n = list_mats(m, mats);
    for (size_t i = 0; i < n; i++) {
        if (packable(ks, mats[i]) && SLM_QUANT_PACK_ROWS * mats[i]->row_bytes > tmp_bytes)
            tmp_bytes = SLM_QUANT_PACK_ROWS * mats[i]->row_bytes;
    }
    if (tmp_bytes == 0) goto done; /* nothing this set packs */
    if (slm_gguf_set_writable(m->gguf, true, NULL) != SLM_OK) goto done; /* borrowed bytes: keep the layout */
    writable = true;
    if (!(tmp = slm_malloc(tmp_bytes))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "repacking weights: %zu bytes", tmp_bytes);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        slm_mat *w = mats[i];
        if (!packable(ks, w) || overlaps(mats, n, i)) continue;
        uint8_t *base = slm_gguf_mut(m->gguf, w->data);
        if (!base) continue;
        const size_t gbytes = SLM_QUANT_PACK_ROWS * w->row_bytes;
        for (int64_t g = 0; g < w->n_out / SLM_QUANT_PACK_ROWS; g++) {
            uint8_t *grp = base + (size_t)g * gbytes;
            memcpy(tmp, grp, gbytes);
            ks->pack[w->type](tmp, w->row_bytes, w->n_in, grp);
        }
        w->packed = true;
    }
    if (m->tok_embd.data == m->output.data) m->tok_embd.packed = m->output.packed; /* tied */
done:
    if (writable) { /* read-only again: a stray write into the weights faults instead of corrupting them */
        const slm_status st2 = slm_gguf_set_writable(m->gguf, false, st == SLM_OK ? err : NULL);
        if (st == SLM_OK) st = st2;
    }
    slm_free(tmp);
    slm_free(mats);
    return st;
}
