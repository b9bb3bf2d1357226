/*
 * model/repack.c: rewriting weight matrices at load into the packed layout of this
 * process's kernel set (quant/kernels.h, "packed weights").
 *
 * Where the packed matrices live:
 *  - a mapped file: in one anonymous mapping owned by the model, filled straight from the
 *    file's pages, which are then released (so resident memory stays about the file's
 *    size). Packing in place instead would make the kernel copy every page on write
 *    (copy-on-write). No transparent huge pages: on the development VM first-touching
 *    them cost 4.4 s per GiB against 0.9 s for 4 KiB pages (measured: 8.8 s to load a
 *    1.3 GB Q8_0 model with MADV_HUGEPAGE);
 *  - a file read into memory (no_mmap): in place, a group of 8 rows at a time copied aside
 *    and packed back over itself;
 *  - a borrowed buffer (tests, fuzzers): not packed.
 * The tied output matrix is token_embd: packed once; the embedding lookup unpacks a group
 * to read one row (forward.c).
 * Invariants: values never change (pack/unpack are exact inverses, tests/test_quant_pack.c);
 * a matrix is packed at most once; matrices whose bytes overlap another's (only a crafted
 * file does that) and rows longer than SLM_QUANT_PACK_MAX_COLS stay as they are; when the
 * anonymous mapping cannot be made, the model keeps the file's layout (packing is only
 * speed).
 * Thread-safety: runs inside slm_model_open, before the model is shared.
 * Non-goals: packing in parallel, layouts that change the size of a group.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Alignment of each matrix in the model's packed mapping (a cache line; kernels need 4). */
#define PACKED_ALIGN 64

/* Bytes a matrix takes in that mapping. */
static size_t packed_span(const slm_mat *w) { return (mat_bytes(w) + PACKED_ALIGN - 1) / PACKED_ALIGN * PACKED_ALIGN; }

/* Pack w's groups from src into dst (different buffers) and copy its tail rows. */
static void pack_into(const slm_quant_kernel_set *ks, const slm_mat *w, const uint8_t *src, uint8_t *dst) {
    const size_t gbytes = SLM_QUANT_PACK_ROWS * w->row_bytes;
    const int64_t groups = w->n_out / SLM_QUANT_PACK_ROWS;
    for (int64_t g = 0; g < groups; g++) ks->pack[w->type](src + (size_t)g * gbytes, w->row_bytes, w->n_in, dst + (size_t)g * gbytes);
    memcpy(dst + (size_t)groups * gbytes, src + (size_t)groups * gbytes, mat_bytes(w) - (size_t)groups * gbytes);
}

/* Pack w in place (a read buffer), a group at a time through tmp (8 rows). */
static void pack_in_place(const slm_quant_kernel_set *ks, const slm_mat *w, uint8_t *base, uint8_t *tmp) {
    const size_t gbytes = SLM_QUANT_PACK_ROWS * w->row_bytes;
    for (int64_t g = 0; g < w->n_out / SLM_QUANT_PACK_ROWS; g++) {
        memcpy(tmp, base + (size_t)g * gbytes, gbytes);
        ks->pack[w->type](tmp, w->row_bytes, w->n_in, base + (size_t)g * gbytes);
    }
}

slm_status slm_model_repack(slm_model *m, bool lock, char *err) {
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const bool mapped = slm_gguf_is_mapped(m->gguf);
    slm_mat **mats = NULL; /* owned: the list of matrices */
    bool *todo = NULL;     /* owned: which of them get packed */
    uint8_t *tmp = NULL;   /* owned: one group of the file's rows (in-place packing) */
    size_t n = 0, tmp_bytes = 0, total = 0;
    slm_status st = SLM_OK;
    size_t cap;
    if (!slm_mul_size((size_t)m->hp.n_layer, 7, &cap) || !slm_add_size(cap, 1, &cap) ||
        !(mats = slm_malloc(cap * sizeof *mats)) || !(todo = slm_calloc(cap, sizeof *todo))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "repacking weights");
        goto done;
    }
    n = list_mats(m, mats);
    for (size_t i = 0; i < n; i++) {
        slm_mat *w = mats[i];
        todo[i] = packable(ks, w) && !overlaps(mats, n, i) && (mapped || slm_gguf_mut(m->gguf, w->data));
        if (!todo[i]) continue;
        if (SLM_QUANT_PACK_ROWS * w->row_bytes > tmp_bytes) tmp_bytes = SLM_QUANT_PACK_ROWS * w->row_bytes;
        /* the sizes come from a validated file that fits in memory: no overflow */
        total += packed_span(w);
    }
    if (total == 0) goto done; /* nothing this set packs, or a borrowed buffer */
    if (mapped) {
        void *region = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) goto done; /* no address space or overcommit: the file's layout still works */
        m->packed_map = region;
        m->packed_size = total;
        if (lock) mlock(region, total);       /* best effort, as for the file */
    } else if (!(tmp = slm_malloc(tmp_bytes))) {
        st = slm_errf(err, SLM_ERR_NOMEM, "repacking weights: %zu bytes", tmp_bytes);
        goto done;
    }
    const uint8_t *old_output = m->output.data;
    uint8_t *next = m->packed_map;
    for (size_t i = 0; i < n; i++) {
        slm_mat *w = mats[i];
        if (!todo[i]) continue;
        if (mapped) {
            /* each matrix's pages populated at once, just before they are written: cheaper
             * than a fault per page (0.46 against 0.6-0.9 s per GiB here), and resident
             * memory never holds more than one matrix twice (the file's pages are released
             * right after). Best effort: older kernels lack MADV_POPULATE_WRITE. */
#ifdef MADV_POPULATE_WRITE
            const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)next / page * page;
            madvise((void *)a, (uintptr_t)next + mat_bytes(w) - a, MADV_POPULATE_WRITE);
#endif
            pack_into(ks, w, w->data, next);
            slm_gguf_release(m->gguf, w->data, mat_bytes(w));
            w->data = next;
            next += packed_span(w);
        } else {
            pack_in_place(ks, w, slm_gguf_mut(m->gguf, w->data), tmp);
        }
        w->packed = true;
    }
    if (m->tok_embd.data == old_output) { /* tied: the lookup reads the packed output */
        m->tok_embd.data = m->output.data;
        m->tok_embd.packed = m->output.packed;
    }
done:
    slm_free(tmp);
    slm_free(todo);
    slm_free(mats);
    return st;
}
