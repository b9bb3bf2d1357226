/*
 * kv/kv.h: the key/value cache of a context: per layer, one K row and one V row per cell
 * (n_embd_kv values each, stored as F16 (default, as the reference runtime), F32 or Q8_0),
 * plus per cell the position it holds and the set of sequences that see it.
 *
 * Design (the unified cache of the llama.cpp ecosystem, chosen over per-sequence ranges):
 * cells are tagged with (position, sequence bit mask), so any number of sequences share
 * one pool of cells without fragmentation bookkeeping, and copying a prefix from one
 * sequence to another (slm_kv_seq_cp) only adds a bit to the cells' masks: a shared system
 * prompt is stored once however many sequences use it. A token of sequence s at position p
 * attends to every cell whose mask has s and whose position is <= p.
 *
 * Invariants: a cell is free iff its mask is 0 (its pos is then -1); `used_end` is one past
 * the highest non-free cell, so attention scans [0, used_end).
 * Thread-safety: a cache belongs to one context; row reads from several threads during a
 * forward pass are fine, mutations are single-threaded. Non-goals: cache shifting
 * (RoPE re-rotation), defragmentation, multi-sequence tokens within one batch.
 */
#ifndef SLMESH_KV_H
#define SLMESH_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"
#include "slmesh/status.h"

#define SLM_KV_MAX_SEQ   64          /* sequences per cache: one bit each in a cell's mask */
#define SLM_KV_MAX_CELLS (1 << 22)   /* cells (context length); 4M tokens is far beyond any model */

typedef struct slm_kv slm_kv;

typedef struct slm_kv_params {
    slm_type type;      /* SLM_TYPE_F16, SLM_TYPE_F32 or SLM_TYPE_Q8_0 */
    int64_t n_cells;    /* tokens the cache holds, in [1, SLM_KV_MAX_CELLS] */
    int32_t n_layer;    /* layers */
    int64_t n_embd_kv;  /* values per K (and per V) row: n_head_kv * head_dim */
    int32_t n_seq_max;  /* sequence ids are in [0, n_seq_max), n_seq_max <= SLM_KV_MAX_SEQ */
} slm_kv_params;

/* Create an empty cache. *out is owned by the caller (slm_kv_destroy). Errors:
 * SLM_ERR_RANGE / _UNSUPPORTED for bad params, SLM_ERR_NOMEM. */
slm_status slm_kv_create(const slm_kv_params *p, slm_kv **out, char *err);
void slm_kv_destroy(slm_kv *kv); /* NULL allowed */

slm_type slm_kv_type(const slm_kv *kv);
int64_t slm_kv_n_cells(const slm_kv *kv);
int32_t slm_kv_n_seq_max(const slm_kv *kv);
int64_t slm_kv_n_used(const slm_kv *kv);    /* non-free cells */
int64_t slm_kv_used_end(const slm_kv *kv);  /* one past the highest non-free cell */
size_t slm_kv_bytes(const slm_kv *kv);      /* memory of the K and V storage */

/* ---- cells --------------------------------------------------------------------------- */

/* Take n free cells (lowest first) for tokens at pos[i] of sequence seq[i]: marks them and
 * writes their indices into cells[n]. SLM_ERR_FULL (and nothing taken) when fewer than n
 * are free; SLM_ERR_RANGE for a bad sequence id or a negative position. */
slm_status slm_kv_alloc(slm_kv *kv, int32_t n, const int32_t *pos, const int32_t *seq, int32_t *cells,
                        char *err);

/* Free cells[n] again (undo of slm_kv_alloc when a forward pass fails). */
void slm_kv_free_cells(slm_kv *kv, int32_t n, const int32_t *cells);

/* Does a token of sequence seq at position pos attend to cell c? */
static inline bool slm_kv_visible(const uint64_t *masks, const int32_t *cell_pos, int64_t c, int32_t seq,
                                  int32_t pos) {
    return (masks[c] >> seq & 1u) && cell_pos[c] <= pos;
}
const uint64_t *slm_kv_masks(const slm_kv *kv);   /* [n_cells] sequence bit masks */
const int32_t *slm_kv_positions(const slm_kv *kv); /* [n_cells] positions (-1 = free) */

/* Row c of layer il's K or V storage (row bytes: slm_kv_row_bytes). */
void *slm_kv_k_row(const slm_kv *kv, int32_t il, int64_t c);
void *slm_kv_v_row(const slm_kv *kv, int32_t il, int64_t c);
size_t slm_kv_row_bytes(const slm_kv *kv);

/* Store one token's K and V (n_embd_kv floats each) into cell c of layer il, converting to
 * the cache type. */
void slm_kv_store(slm_kv *kv, int32_t il, int64_t c, const float *k, const float *v);
/* The same for values [off, off + n) of the rows only (k and v point at those n values),
 * e.g. one head; off and n must be whole blocks of the cache type. Different threads may
 * store disjoint parts of a row. */
void slm_kv_store_part(slm_kv *kv, int32_t il, int64_t c, int64_t off, int64_t n, const float *k, const float *v);

/* ---- sequence operations ---------------------------------------------------------------- */

/* Remove positions [p0, p1) of seq (seq < 0: every sequence; p0 < 0: from 0; p1 < 0: to
 * the end). Cells no longer seen by any sequence become free. */
slm_status slm_kv_seq_rm(slm_kv *kv, int32_t seq, int32_t p0, int32_t p1, char *err);
/* Make positions [p0, p1) of src visible to dst too (no copy: the cells are shared). */
slm_status slm_kv_seq_cp(slm_kv *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err);
/* Highest position held for seq, or -1 when it has none. */
int32_t slm_kv_seq_pos_max(const slm_kv *kv, int32_t seq);
/* Free every cell. */
void slm_kv_clear(slm_kv *kv);

#endif /* SLMESH_KV_H */
