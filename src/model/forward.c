/*
 * model/forward.c: the transformer forward pass over a batch of tokens, plain C loops that
 * mirror the reference runtime's graph for llama-family models:
 *
 *   x = embed(token)                                   dequantized row of token_embd
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *               q, k = rmsnorm(q) * q_norm, rmsnorm(k) * k_norm   per head (qwen3)
 *               q, k = rope(q), rope(k)                 NORMAL or NEOX pairs
 *               cache k, v                              F16 / F32 / Q8_0 cells
 *               a = softmax(q K^T / sqrt(hd)) V         causal, per sequence, GQA
 *               x = x + a Wo
 *               h = rmsnorm(x) * ffn_norm
 *               x = x + (silu(h Wgate) * (h Wup)) Wdown
 *   logits = (rmsnorm(x) * output_norm) Woutput        only for the rows asked for
 *
 * Matrix products follow the reference: the activation rows are converted once per matrix
 * to the weight type's vec_dot_type (act.c: as its x86 build does), then each output
 * element is one vec_dot of a weight row with an activation row. Attention follows its non-flash path with an F16 cache: q is
 * converted to the K type's vec_dot_type (F16), and the softmax weights are rounded to F16
 * before multiplying V. Every output value is computed by exactly one thread in a fixed
 * order, so results do not depend on the thread count, and a token's results do not depend
 * on the other tokens of its batch (batched prompt == token-by-token decode).
 *
 * Kernels: the quant module's set for this CPU (slm_quant_kernels(): SIMD dot products
 * within a named tolerance of the scalar specification, bit-identical conversions).
 * Attention is attn.c. Thread-safety: a slm_fwd belongs to one context. Non-goals: graph
 * scheduling.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "model/act.h"
#include "model/attn.h"
#include "model/model.h"
#include "model/ops.h"
#include "quant/kernels.h"

/* ---- scratch ---------------------------------------------------------------------------- */

struct slm_fwd {
    int32_t n_batch;     /* most tokens per forward call */
    int64_t n_cells;     /* KV cells the attention scratch is sized for */
    slm_type kv_type;    /* cache type the attention scratch is sized for */
    slm_attn *attn;      /* attention scratch, owned */
    float *x;            /* [n_batch][n_embd] residual stream */
    float *h;            /* [n_batch][n_embd] normalised input of a block; final rows */
    float *q;            /* [n_batch][n_head*head_dim] */
    float *k;            /* [n_batch][n_head_kv*head_dim] */
    float *v;            /* [n_batch][n_head_kv*head_dim] */
    float *att;          /* [n_batch][n_head*head_dim] attention output */
    float *y;            /* [n_batch][n_embd] output of Wo / Wdown before the residual add */
    float *g;            /* [n_batch][n_ff] gate, then silu(gate)*up */
    float *u;            /* [n_batch][n_ff] up */
    float *rope;         /* [n_batch][n_rot] cos/sin per token */
    uint8_t *act;        /* [n_batch][act_stride] activations in a vec_dot_type */
    size_t act_stride;   /* bytes per activation row (largest over matrices) */
    size_t bytes;        /* total of the buffers above */
};

/* Bytes of n values of the vec_dot_type of t (F32 when t is F32). */
static size_t dot_row_bytes(slm_type t, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t b = 0;
    if (!tr || !slm_type_row_bytes(tr->vec_dot_type, n, &b)) return (size_t)n * sizeof(float);
    return b > (size_t)n * sizeof(float) ? b : (size_t)n * sizeof(float);
}

static size_t max_act_row(const slm_model *m) {
    size_t best = dot_row_bytes(m->output.type, m->hp.n_embd);
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const slm_layer *L = &m->layers[il];
        const slm_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            size_t b = dot_row_bytes(mats[i]->type, mats[i]->n_in);
            if (b > best) best = b;
        }
    }
    return best;
}

/* floats[a*b] with overflow check; NULL on overflow or allocation failure. */
static void *alloc_array(size_t a, size_t b, size_t elem) {
    size_t n, bytes;
    if (!slm_mul_size(a, b, &n) || !slm_mul_size(n, elem, &bytes)) return NULL;
    return slm_malloc(bytes ? bytes : 1);
}

slm_status slm_fwd_create(const slm_model *m, int32_t n_batch, int64_t n_cells, slm_type kv_type,
                          int n_threads, slm_fwd **out, char *err) {
    const slm_hparams *hp = &m->hp;
    *out = NULL;
    if (n_batch < 1 || n_threads < 1 || n_cells < 1) return slm_errf(err, SLM_ERR_RANGE, "forward scratch sizes");
    const slm_type_traits *kt = slm_type_traits_of(kv_type);
    if (!kt || !kt->vec_dot) return slm_errf(err, SLM_ERR_UNSUPPORTED, "KV type %s has no kernels", slm_type_name(kv_type));
    if (hp->head_dim % kt->block_size != 0)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "head size %d is not whole %s blocks", hp->head_dim, kt->name);
    slm_fwd *f = slm_calloc(1, sizeof *f);
    if (!f) return slm_errf(err, SLM_ERR_NOMEM, "forward scratch");
    const size_t nb = (size_t)n_batch, e = (size_t)hp->n_embd, nq = (size_t)hp->n_head * (size_t)hp->head_dim;
    const size_t nkv = (size_t)hp->n_head_kv * (size_t)hp->head_dim, ff = (size_t)hp->n_ff;
    f->n_batch = n_batch;
    f->n_cells = n_cells;
    f->kv_type = kv_type;
    f->act_stride = max_act_row(m);
    f->x = alloc_array(nb, e, sizeof(float));
    f->h = alloc_array(nb, e, sizeof(float));
    f->y = alloc_array(nb, e, sizeof(float));
    f->q = alloc_array(nb, nq, sizeof(float));
    f->att = alloc_array(nb, nq, sizeof(float));
    f->k = alloc_array(nb, nkv, sizeof(float));
    f->v = alloc_array(nb, nkv, sizeof(float));
    f->g = alloc_array(nb, ff, sizeof(float));
    f->u = alloc_array(nb, ff, sizeof(float));
    f->rope = alloc_array(nb, (size_t)hp->n_rot, sizeof(float));
    f->act = alloc_array(nb, f->act_stride, 1);
    if (!f->x || !f->h || !f->y || !f->q || !f->att || !f->k || !f->v || !f->g || !f->u || !f->rope || !f->act) {
        slm_fwd_destroy(f);
        return slm_errf(err, SLM_ERR_NOMEM, "forward scratch for %d tokens", n_batch);
    }
    const size_t per_token = 3 * e + 2 * nq + 2 * nkv + 2 * ff + (size_t)hp->n_rot;      /* floats */
    slm_status st = slm_attn_create(hp, n_cells, kv_type, n_threads, &f->attn, err);
    if (st != SLM_OK) {
        slm_fwd_destroy(f);
        return st;
    }
    f->bytes = per_token * nb * sizeof(float) + nb * f->act_stride + slm_attn_bytes(f->attn);
    *out = f;
    return SLM_OK;
}

size_t slm_fwd_bytes(const slm_fwd *f) { return f->bytes; }

void slm_fwd_destroy(slm_fwd *f) {
    if (!f) return;
    void *bufs[] = {f->x, f->h, f->y, f->q, f->att, f->k, f->v, f->g, f->u, f->rope, f->act};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) slm_free(bufs[i]);
    slm_attn_destroy(f->attn);
    slm_free(f);
}

/* ---- matrix products -------------------------------------------------------------------- */

/* Jobs smaller than this many multiply-adds run on the caller's thread: waking the pool
 * costs tens of microseconds, as much as ~64k scalar multiply-adds. The result is the same
 * (every output is computed the same way whatever the thread count). */
#define SMALL_JOB_WORK (1 << 16)

static void run_job(slm_pool *pool, int64_t work, slm_pool_fn fn, void *arg) {
    if (work < SMALL_JOB_WORK) fn(arg, 0, 1);
    else slm_pool_run(pool, fn, arg);
}

typedef struct mm_job {
    const slm_mat *w;     /* weights [n_out][n_in] */
    const uint8_t *act;   /* [n][act_stride] activations in w's vec_dot_type */
    size_t act_stride;    /* bytes between activation rows */
    int32_t n;            /* tokens */
    float *out;           /* [n][w->n_out] */
} mm_job;

/* Rows [r0, r1) of W for every token (the quant module's loop: rows outermost, so each
 * weight row stays hot while the tokens pass). */
static void mm_run(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const slm_mat *w = j->w;
    int64_t r0, r1;
    slm_pool_range(w->n_out, ith, nth, &r0, &r1);
    slm_quant_matmul_rows(w->type, w->data, w->n_in, j->act, j->act_stride, j->n, r0, r1, j->out, (size_t)w->n_out);
}

/* Convert x[n][n_in] to type vt (the vec_dot_type) into f->act; returns the rows and their
 * stride. F32 needs no conversion: x itself is used. */
static const uint8_t *convert_act(slm_fwd *f, const float *x, int32_t n, int64_t n_in, slm_type vt, size_t *stride) {
    if (vt == SLM_TYPE_F32) {
        *stride = (size_t)n_in * sizeof(float);
        return (const uint8_t *)x;
    }
    for (int32_t t = 0; t < n; t++)
        slm_model_act_convert(vt, x + (size_t)t * (size_t)n_in, f->act + (size_t)t * f->act_stride, n_in);
    *stride = f->act_stride;
    return f->act;
}

/* out[i] = x W[i] for count matrices sharing the input x[n][n_in]; the conversion of x is
 * reused while consecutive matrices share a vec_dot_type. */
static void matmul_multi(slm_fwd *f, slm_pool *pool, const float *x, int32_t n, const slm_mat *const *w,
                         float *const *out, int count) {
    slm_type last = SLM_TYPE_COUNT;
    const uint8_t *act = NULL;
    size_t stride = 0;
    for (int i = 0; i < count; i++) {
        const slm_type vt = slm_type_traits_of(w[i]->type)->vec_dot_type;
        if (vt != last) {
            act = convert_act(f, x, n, w[i]->n_in, vt, &stride);
            last = vt;
        }
        mm_job j = {.w = w[i], .act = act, .act_stride = stride, .n = n, .out = out[i]};
        run_job(pool, w[i]->n_out * w[i]->n_in * n, mm_run, &j);
    }
}

static void matmul(slm_fwd *f, slm_pool *pool, const float *x, int32_t n, const slm_mat *w, float *out) {
    matmul_multi(f, pool, x, n, &w, &out, 1);
}

/* ---- attention (attn.c) ------------------------------------------------------------------ */

typedef struct att_job {
    slm_attn *a;
    const slm_attn_args *args;
} att_job;

static void att_run(void *arg, int ith, int nth) {
    const att_job *j = arg;
    slm_attn_run(j->a, j->args, ith, nth);
}

/* ---- the pass ------------------------------------------------------------------------------- */

static void add_bias(float *x, const float *b, int32_t n, int64_t width) {
    if (!b) return;
    for (int32_t t = 0; t < n; t++) slm_ops_add(x + (size_t)t * (size_t)width, b, width);
}

static void layer_forward(const slm_model *m, slm_fwd *f, slm_kv *kv, slm_pool *pool, int32_t il, int32_t n,
                          const int32_t *pos, const int32_t *seq, const int32_t *cells) {
    const slm_hparams *hp = &m->hp;
    const slm_layer *L = &m->layers[il];
    const int64_t e = hp->n_embd, hd = hp->head_dim;
    const int64_t nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv * hd;

    /* attention block: h = rmsnorm(x) * attn_norm; q, k, v = h W (+ b) */
    for (int32_t t = 0; t < n; t++) slm_ops_rmsnorm(f->h + t * e, f->x + t * e, L->attn_norm, e, hp->rms_eps);
    const slm_mat *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_out[3] = {f->q, f->k, f->v};
    matmul_multi(f, pool, f->h, n, qkv, qkv_out, 3);
    add_bias(f->q, L->bq, n, nq);
    add_bias(f->k, L->bk, n, nkv);
    add_bias(f->v, L->bv, n, nkv);
    /* qwen3: RMS-normalise every q and k head; then rotate them by the token's position */
    for (int32_t t = 0; t < n; t++) {
        const float *cs = f->rope + (size_t)t * (size_t)hp->n_rot;
        for (int32_t h = 0; L->q_norm && h < hp->n_head; h++)
            slm_ops_rmsnorm(f->q + t * nq + h * hd, f->q + t * nq + h * hd, L->q_norm, hd, hp->rms_eps);
        for (int32_t h = 0; L->k_norm && h < hp->n_head_kv; h++)
            slm_ops_rmsnorm(f->k + t * nkv + h * hd, f->k + t * nkv + h * hd, L->k_norm, hd, hp->rms_eps);
        for (int32_t h = 0; h < hp->n_head; h++) slm_ops_rope(f->q + t * nq + h * hd, hp->n_rot, cs, m->arch->rope_neox);
        for (int32_t h = 0; h < hp->n_head_kv; h++) slm_ops_rope(f->k + t * nkv + h * hd, hp->n_rot, cs, m->arch->rope_neox);
        slm_kv_store(kv, il, cells[t], f->k + t * nkv, f->v + t * nkv);
    }
    const slm_attn_args args = {.hp = hp, .kv = kv, .il = il, .n = n, .pos = pos, .seq = seq, .q = f->q, .out = f->att};
    att_job aj = {.a = f->attn, .args = &args};
    run_job(pool, slm_attn_work(&args), att_run, &aj);
    matmul(f, pool, f->att, n, &L->wo, f->y);
    for (int32_t t = 0; t < n; t++) slm_ops_add(f->x + t * e, f->y + t * e, e);

    /* feed-forward block: x += (silu(h Wgate) * (h Wup)) Wdown, h = rmsnorm(x) * ffn_norm */
    for (int32_t t = 0; t < n; t++) slm_ops_rmsnorm(f->h + t * e, f->x + t * e, L->ffn_norm, e, hp->rms_eps);
    const slm_mat *gu[2] = {&L->gate, &L->up};
    float *const gu_out[2] = {f->g, f->u};
    matmul_multi(f, pool, f->h, n, gu, gu_out, 2);
    slm_ops_silu_mul(f->g, f->u, (int64_t)n * hp->n_ff);
    matmul(f, pool, f->g, n, &L->down, f->y);
    for (int32_t t = 0; t < n; t++) slm_ops_add(f->x + t * e, f->y + t * e, e);
}

slm_status slm_model_forward(const slm_model *m, slm_fwd *f, slm_kv *kv, slm_pool *pool, int32_t n,
                             const int32_t *tokens, const int32_t *pos, const int32_t *seq,
                             const int32_t *cells, int32_t n_out, const int32_t *out_idx, float *logits,
                             float *hidden, char *err) {
    const slm_hparams *hp = &m->hp;
    const int64_t e = hp->n_embd;
    if (n < 1 || n > f->n_batch) return slm_errf(err, SLM_ERR_RANGE, "%d tokens for a batch of %d", n, f->n_batch);
    if (slm_kv_n_cells(kv) > f->n_cells || slm_kv_type(kv) != f->kv_type)
        return slm_errf(err, SLM_ERR_INTERNAL, "KV cache does not match the forward scratch");
    if (n_out < 0 || n_out > n) return slm_errf(err, SLM_ERR_RANGE, "%d outputs for %d tokens", n_out, n);

    /* x = embedding rows; the RoPE tables of every token */
    const slm_to_float_fn emb = slm_quant_kernels()->to_float[m->tok_embd.type];
    for (int32_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "token %d: id %d outside [0, %d)", t, tokens[t], hp->n_vocab);
        emb(m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes, f->x + t * e, e);
        slm_ops_rope_cache(f->rope + (size_t)t * (size_t)hp->n_rot, hp->n_rot, pos[t], hp->rope_base,
                           hp->rope_freq_scale, m->rope_freqs);
    }
    for (int32_t il = 0; il < hp->n_layer; il++) layer_forward(m, f, kv, pool, il, n, pos, seq, cells);

    /* logits of the rows asked for: h[i] = rmsnorm(x[out_idx[i]]) * output_norm */
    if (n_out == 0) return SLM_OK;
    for (int32_t i = 0; i < n_out; i++) {
        if (out_idx[i] < 0 || out_idx[i] >= n) return slm_errf(err, SLM_ERR_RANGE, "output index %d", out_idx[i]);
        slm_ops_rmsnorm(f->h + i * e, f->x + (size_t)out_idx[i] * (size_t)e, m->out_norm, e, hp->rms_eps);
    }
    if (hidden) memcpy(hidden, f->h, (size_t)n_out * (size_t)e * sizeof(float));
    if (logits) matmul(f, pool, f->h, n_out, &m->output, logits);
    return SLM_OK;
}
