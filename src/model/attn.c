/*
 * model/attn.c: causal self-attention over the KV cache (see attn.h for the contract).
 *
 * The reference's non-flash path, one (token, query head) at a time:
 *   q in the K dot type (F16 for the F16 cache, as the reference converts it)
 *   scores[c] = q . k_c / sqrt(head_dim) for the visible cells c, -inf for the others
 *   w = softmax(scores)                              sum in double (ops.c)
 *   out = sum_c w_c v_c, w_c rounded to F16 for the F16 cache (the reference multiplies V
 *         by the F16-converted softmax)
 * Only cells below the last visible one take part (the others would get weight 0).
 *
 * Scratch per thread: the scores of one (token, head) over all cells, q converted, one V
 * row in f32 (for cache types without an axpy kernel).
 */
#include "model/attn.h"

#include <math.h>

#include "core/core.h"
#include "model/ops.h"
#include "quant/kernels.h"

struct slm_attn {
    int n_threads;
    int64_t n_cells;       /* cells the scores are sized for */
    int64_t head_dim;
    float *scores;         /* [n_threads][n_cells] */
    uint8_t *qconv;        /* [n_threads][qconv_stride] a query head in the K dot type */
    size_t qconv_stride;   /* bytes */
    float *vrow;           /* [n_threads][head_dim] a V head converted to f32 */
    size_t bytes;
};

/* Bytes of n values of the vec_dot_type of t (at least n floats). */
static size_t dot_row_bytes(slm_type t, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t b = 0;
    if (!tr || !slm_type_row_bytes(tr->vec_dot_type, n, &b)) return (size_t)n * sizeof(float);
    return b > (size_t)n * sizeof(float) ? b : (size_t)n * sizeof(float);
}

slm_status slm_attn_create(const slm_hparams *hp, int64_t n_cells, slm_type kv_type, int n_threads, slm_attn **out,
                           char *err) {
    *out = NULL;
    size_t n_scores, n_vrow, n_q;
    slm_attn *a = slm_calloc(1, sizeof *a);
    if (!a) return slm_errf(err, SLM_ERR_NOMEM, "attention scratch");
    a->n_threads = n_threads;
    a->n_cells = n_cells;
    a->head_dim = hp->head_dim;
    a->qconv_stride = dot_row_bytes(kv_type, hp->head_dim);
    if (!slm_mul_size((size_t)n_threads, (size_t)n_cells, &n_scores) ||
        !slm_mul_size((size_t)n_threads, (size_t)hp->head_dim, &n_vrow) ||
        !slm_mul_size((size_t)n_threads, a->qconv_stride, &n_q) || !slm_mul_size(n_scores, sizeof(float), &n_scores) ||
        !slm_mul_size(n_vrow, sizeof(float), &n_vrow))
        goto fail;
    a->scores = slm_malloc(n_scores);
    a->vrow = slm_malloc(n_vrow);
    a->qconv = slm_malloc(n_q);
    if (!a->scores || !a->vrow || !a->qconv) goto fail;
    a->bytes = n_scores + n_vrow + n_q;
    *out = a;
    return SLM_OK;
fail:
    slm_attn_destroy(a);
    return slm_errf(err, SLM_ERR_NOMEM, "attention scratch for %lld cells", (long long)n_cells);
}

void slm_attn_destroy(slm_attn *a) {
    if (!a) return;
    slm_free(a->scores);
    slm_free(a->vrow);
    slm_free(a->qconv);
    slm_free(a);
}

size_t slm_attn_bytes(const slm_attn *a) { return a->bytes; }

int64_t slm_attn_work(const slm_attn_args *g) {
    return (int64_t)g->n * g->hp->n_head * slm_kv_used_end(g->kv) * g->hp->head_dim * 2;
}

/* One (token, head): scores over the visible cells, softmax, weighted sum of V. */
static void attend_head(const slm_attn_args *g, int32_t t, int32_t hq, float *scores, uint8_t *qconv, float *vrow) {
    const slm_hparams *hp = g->hp;
    const int64_t hd = hp->head_dim;
    const int32_t hkv = hq / (hp->n_head / hp->n_head_kv); /* GQA: query heads share a KV head */
    const slm_type kvt = slm_kv_type(g->kv);
    const slm_type_traits *kt = slm_type_traits_of(kvt);
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const size_t head_off = (size_t)(hkv * hd / kt->block_size) * kt->type_size; /* bytes into a K/V row */
    const float scale = 1.0f / sqrtf((float)hd);
    const float *qh = g->q + (size_t)t * (size_t)(hp->n_head * hd) + (size_t)hq * (size_t)hd;
    const uint64_t *masks = slm_kv_masks(g->kv);
    const int32_t *cpos = slm_kv_positions(g->kv);
    const int64_t n_cells = slm_kv_used_end(g->kv);
    const int32_t s = g->seq[t], p = g->pos[t];

    const void *qd = qh;
    if (kt->vec_dot_type != SLM_TYPE_F32) {
        ks->from_float[kt->vec_dot_type](qh, qconv, hd);
        qd = qconv;
    }
    int64_t c_end = 0;
    for (int64_t c = 0; c < n_cells; c++) {
        if (!slm_kv_visible(masks, cpos, c, s, p)) {
            scores[c] = -INFINITY;
            continue;
        }
        const uint8_t *kr = (const uint8_t *)slm_kv_k_row(g->kv, g->il, c) + head_off;
        scores[c] = ks->vec_dot[kvt](hd, kr, qd) * scale;
        c_end = c + 1;
    }
    slm_ops_softmax(scores, c_end);
    float *out = g->out + (size_t)t * (size_t)(hp->n_head * hd) + (size_t)hq * (size_t)hd;
    for (int64_t d = 0; d < hd; d++) out[d] = 0.0f;
    const slm_axpy_fn axpy = ks->axpy[kvt]; /* F32 / F16: the row in place */
    for (int64_t c = 0; c < c_end; c++) {
        float w = scores[c];
        if (w == 0.0f) continue;
        const uint8_t *vr = (const uint8_t *)slm_kv_v_row(g->kv, g->il, c) + head_off;
        if (kvt == SLM_TYPE_F16) w = slm_f16_to_f32(slm_f32_to_f16(w));
        if (axpy) {
            axpy(hd, w, vr, out);
            continue;
        }
        ks->to_float[kvt](vr, vrow, hd);
        for (int64_t d = 0; d < hd; d++) out[d] += w * vrow[d];
    }
}

void slm_attn_run(slm_attn *a, const slm_attn_args *g, int ith, int nth) {
    const int32_t n_head = g->hp->n_head;
    float *scores = a->scores + (size_t)ith * (size_t)a->n_cells;
    uint8_t *qconv = a->qconv + (size_t)ith * a->qconv_stride;
    float *vrow = a->vrow + (size_t)ith * (size_t)a->head_dim;
    int64_t i0, i1;
    slm_pool_range((int64_t)g->n * n_head, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) attend_head(g, (int32_t)(i / n_head), (int32_t)(i % n_head), scores, qconv, vrow);
}
