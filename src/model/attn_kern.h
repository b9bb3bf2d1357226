/*
 * model/attn_kern.h (internal): the block kernels of the tiled attention (attn.c), one set
 * per instruction set: the scalar set (attn_kern.c) is the specification, the AVX2 set
 * (attn_avx2.c) computes the same with 8 lanes and FMA.
 *
 * A block is SLM_ATTN_BLOCK consecutive KV cells of one KV head, converted once to f32 and
 * shared by every query row of a tile: K transposed (kt[d][c], so that one row's scores are
 * 8 cells per vector), V as rows (v[c][d]). Per block, attn.c calls scores for a run of
 * query rows (which masks the cells each row does not see to -inf), exp_sum per row, then
 * pv for the run (online softmax); taking several rows per call lets a kernel reuse each
 * loaded K or V vector for several rows (register blocking).
 *
 * Cells of a block past its last entry are not loaded: kt and v keep whatever finite values
 * an earlier block left there (attn.c zeroes them once), which scores masks to -inf and pv
 * never reads (their weights are 0).
 * Invariants: each kernel's result for one query row depends only on that row's inputs
 * (never on other rows, on how many rows a call takes, or on which tile it is in), which is what makes a batched prompt
 * equal token-by-token decoding. exp is bit-identical across sets (vexp.h); scores, sums
 * and pv differ from the scalar set by FMA rounding and lane order (tolerance in
 * tests/test_model_ops.c). The AVX2 set requires head_dim % 8 == 0 (slm_attn_kern_pick).
 * Thread-safety: immutable tables of pure functions. Non-goals: cache types other than F16
 * in the kernels (attn.c converts F32 and Q8_0 rows with the quant module's to_float).
 */
#ifndef SLMESH_MODEL_ATTN_KERN_H
#define SLMESH_MODEL_ATTN_KERN_H

#include <stdint.h>

#include "quant/kernels.h"

/* KV cells per block: a block's visibility for one token is one uint64_t bit mask, and a
 * block of K and V for head_dim 64 is 2 x 16 KiB of f32, which stays in L1/L2 while the
 * tile's query rows pass over it. */
#define SLM_ATTN_BLOCK 64

typedef struct slm_attn_kern {
    const char *name;
    /* kt[d * BLOCK + c] = K row c, element d, for d < hd, c < nc; rows[c] == NULL: zeros.
     * rows point at hd F16 values each; nc is a multiple of 8 in [8, BLOCK], and the cells
     * from nc on are left as they are (a block's tail no row sees is not converted). */
    void (*load_kt_f16)(const uint16_t *const *rows, int nc, int64_t hd, float *kt);
    /* v[c * hd + d] = V row c, element d, for c < nc; rows[c] == NULL: zeros. */
    void (*load_v_f16)(const uint16_t *const *rows, int nc, int64_t hd, float *v);
    /* For each row i < nr: s[i * BLOCK + c] = sum over d of q[i * hd + d] * kt[d * BLOCK + c]
     * (d in increasing order) where bit c of vis[i] is set, -inf where it is clear, for c <
     * BLOCK; max[i] = the largest s[i * BLOCK + c]. A kernel may compute several rows per
     * pass over kt (each K vector loaded once for them), but row i's values never depend on
     * nr or on the other rows. */
    void (*scores)(int nr, int64_t hd, const float *q, const float *kt, const uint64_t *vis, float *s, float *max);
    /* s[c] = exp(s[c] - m) for c < BLOCK (-inf gives 0); returns the sum of the new s. */
    float (*exp_sum)(float *s, float m);
    /* For each row i < nr: acc[i * hd + d] = acc[i * hd + d] * alpha[i] + sum over c with
     * p[i * BLOCK + c] != 0, in increasing c, of p[i * BLOCK + c] * v[c][d] (alpha[i] == 1: no
     * multiply). Cells with p == 0 in row i are not read for row i; as in scores, rows may
     * share the V loads but row i's values never depend on nr or on the other rows. */
    void (*pv)(int nr, int64_t hd, const float *p, const float *v, const float *alpha, float *acc);
} slm_attn_kern;

/* The scalar set (the specification) and, when this build has it, the AVX2 set (NULL
 * otherwise). Static storage. */
extern const slm_attn_kern slm_attn_kern_scalar;
const slm_attn_kern *slm_attn_kern_avx2(void);

/* The set for quant ISA isa (the one the process chose, or one a test forces) and head
 * size hd: AVX2 for AVX2 and above when hd % 8 == 0, scalar otherwise. Never NULL. */
const slm_attn_kern *slm_attn_kern_pick(slm_quant_isa isa, int64_t hd);

#endif /* SLMESH_MODEL_ATTN_KERN_H */
