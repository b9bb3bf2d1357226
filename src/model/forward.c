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
 * to the weight type's vec_dot_type (quant/act.c: as its x86 build does), then each output
 * element is the kernel set's dot product of a weight row with an activation row (tiled,
 * same bits). Attention is attn.c (tiled, online softmax). Every output value is computed
 * by exactly one thread in a fixed order (or, for the per-token rows of a decode step, by
 * every thread the same way: see REPL_MAX_TOKENS), so results do not depend on the thread count,
 * and a token's results do not depend on the other tokens of its batch (batched prompt ==
 * token-by-token decode).
 *
 * Kernels: the quant module's set for this CPU (slm_quant_kernels(): SIMD dot products
 * within a named tolerance of the scalar specification, bit-identical conversions).
 * Thread-safety: a slm_fwd belongs to one context. Non-goals: graph scheduling.
 */
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "model/attn.h"
#include "model/model.h"
#include "model/ops.h"
#include "quant/kernels.h"

/* Activation buffers: the matrices of one step (q, k, v or gate, up) may have up to three
 * different vec_dot_types (a Q4_K_M file mixes Q5_0, Q8_0 and K types), each needing the
 * input converted once. */
#define ACT_SLOTS 3

/* A batch of at most this many tokens runs its per-token steps (residual add, norms,
 * activation conversion, SiLU, the final norm) REPLICATED: every thread computes them for
 * every token into its own rows (fwd_rows) and goes straight on to its share of the next
 * matrix product, instead of splitting the tokens and meeting the others at a barrier. For
 * a decode step a barrier and a thread left idle while the other converts cost more (1-4
 * us) than a second copy of a row of n_embd or n_ff values (0.3-1 us). */
#define REPL_MAX_TOKENS 4

/* Above REPL_MAX_TOKENS each thread first takes a fixed share of 3/4 of a product's 8-row
 * units (one kernel call: the packed kernels fill an activation table per call, which costs
 * ~3% of a prompt when a product is cut into 16 calls), then the last quarter is cut into
 * 4 chunks per thread that the threads claim in turn (mm_rows): a step ends when the work
 * ends, not when the slower thread's fixed half does, within 1/32 of the product. A claim is
 * one atomic add against 0.1-5 ms of work. For decoding, fixed halves measured better. */
#define CLAIM_FIXED_QUARTERS 3
#define CLAIM_CHUNKS_PER_THREAD 4

/* Steps per layer that claim work (products q k v, Wo, gate up, Wdown; attention's tiles),
 * plus the logits. */
#define CLAIMS_PER_LAYER 5

/* ---- scratch ---------------------------------------------------------------------------- */

/* Where a thread keeps the per-token rows it computes: the shared buffers when the steps
 * split the tokens, its own when they are replicated (REPL_MAX_TOKENS rows). On the
 * replicated path thread 0 still uses the shared x, h and act (so f->h holds the final rows
 * on both paths) but its own g: silu(gate) * up cannot overwrite the shared gate, which
 * the other threads are still reading. */
typedef struct fwd_rows {
    float *x;        /* [tokens][n_embd] residual stream */
    float *h;        /* [tokens][n_embd] normalised input of a block; final rows */
    float *g;        /* [tokens][n_ff] silu(gate) * up */
    float *rope;     /* [tokens][n_rot] cos/sin per token (each thread its own when replicating,
                      * so that no barrier stands between the pass's start and RoPE) */
    uint8_t *act;    /* [ACT_SLOTS][tokens][act_stride] activations in vec_dot_types */
    size_t act_slot; /* bytes from one slot of act to the next */
} fwd_rows;

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
    uint8_t *act;        /* [ACT_SLOTS][n_batch][act_stride] activations in vec_dot_types */
    float *tab;          /* [ACT_SLOTS][tab_slot] the packed products' tables of act (prompts), or NULL */
    size_t tab_slot;     /* floats per slot: SLM_QUANT_PACK_TABLE_FLOATS(n_batch, widest input read with one) */
    uint8_t *emb;        /* [n_threads][8 rows of token_embd] when it is packed (repack.c), else NULL */
    size_t emb_stride;   /* bytes per thread of emb */
    size_t act_stride;   /* bytes per activation row (largest over matrices) */
    int n_threads;       /* threads the scratch is sized for */
    fwd_rows *own;       /* [n_threads] each thread's replicated rows, owned (thread 0: g only) */
    atomic_int *claims;  /* [n_layer * CLAIMS_PER_LAYER + 1] next chunk / tile of each claimed step, owned */
    size_t bytes;        /* total of the buffers above */
};

/* Bytes of n values of the vec_dot_type of t (F32 when t is F32). */
static size_t dot_row_bytes(slm_type t, int64_t n) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    size_t b = 0;
    if (!tr || !slm_type_row_bytes(tr->vec_dot_type, n, &b)) return (size_t)n * sizeof(float);
    return b > (size_t)n * sizeof(float) ? b : (size_t)n * sizeof(float);
}

/* The widest input of a matrix whose packed product reads a table of its activations
 * (slm_quant_pack_uses_table), or 0. */
static int64_t tabled_input(const slm_mat *w) {
    return w->packed && slm_quant_pack_uses_table(w->type) ? w->n_in : 0;
}

static int64_t max_tabled_input(const slm_model *m) {
    int64_t best = tabled_input(&m->output);
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const slm_layer *L = &m->layers[il];
        const slm_mat *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (tabled_input(mats[i]) > best) best = tabled_input(mats[i]);
    }
    return best;
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
    f->act = alloc_array(nb * ACT_SLOTS, f->act_stride, 1);
    f->tab_slot = SLM_QUANT_PACK_TABLE_FLOATS(nb, max_tabled_input(m));
    f->tab = f->tab_slot ? alloc_array(ACT_SLOTS, f->tab_slot, sizeof(float)) : NULL;
    f->n_threads = n_threads;
    f->emb_stride = m->tok_embd.packed ? SLM_QUANT_PACK_ROWS * m->tok_embd.row_bytes : 0;
    f->emb = f->emb_stride ? alloc_array((size_t)n_threads, f->emb_stride, 1) : NULL;
    f->own = slm_calloc((size_t)n_threads, sizeof *f->own);
    f->claims = alloc_array((size_t)hp->n_layer * CLAIMS_PER_LAYER + 1, 1, sizeof *f->claims);
    bool own_ok = f->own != NULL;
    for (int i = 0; own_ok && i < n_threads; i++) {
        fwd_rows *r = &f->own[i];
        r->g = alloc_array(REPL_MAX_TOKENS, ff, sizeof(float));
        r->act_slot = REPL_MAX_TOKENS * f->act_stride;
        if (i > 0) {
            r->x = alloc_array(REPL_MAX_TOKENS, e, sizeof(float));
            r->h = alloc_array(REPL_MAX_TOKENS, e, sizeof(float));
            r->rope = alloc_array(REPL_MAX_TOKENS, (size_t)hp->n_rot, sizeof(float));
            r->act = alloc_array(ACT_SLOTS * REPL_MAX_TOKENS, f->act_stride, 1);
        }
        own_ok = r->g && (i == 0 || (r->x && r->h && r->rope && r->act));
    }
    if (!f->x || !f->h || !f->y || !f->q || !f->att || !f->k || !f->v || !f->g || !f->u || !f->rope || !f->act ||
        !f->claims || !own_ok || (f->emb_stride && !f->emb) || (f->tab_slot && !f->tab)) {
        slm_fwd_destroy(f);
        return slm_errf(err, SLM_ERR_NOMEM, "forward scratch for %d tokens", n_batch);
    }
    const size_t per_token = 3 * e + 2 * nq + 2 * nkv + 2 * ff + (size_t)hp->n_rot;      /* floats */
    const size_t own_bytes = REPL_MAX_TOKENS * (ff * sizeof(float) * (size_t)n_threads +
                                                ((2 * e + (size_t)hp->n_rot) * sizeof(float) + ACT_SLOTS * f->act_stride) *
                                                    (size_t)(n_threads - 1));
    slm_status st = slm_attn_create(hp, n_cells, kv_type, n_threads, &f->attn, err);
    if (st != SLM_OK) {
        slm_fwd_destroy(f);
        return st;
    }
    f->bytes = per_token * nb * sizeof(float) + ACT_SLOTS * nb * f->act_stride + (size_t)n_threads * f->emb_stride +
               ACT_SLOTS * f->tab_slot * sizeof(float) +
               slm_attn_bytes(f->attn) + own_bytes;
    *out = f;
    return SLM_OK;
}

size_t slm_fwd_bytes(const slm_fwd *f) { return f->bytes; }

void slm_fwd_destroy(slm_fwd *f) {
    if (!f) return;
    void *bufs[] = {f->x, f->h, f->y, f->q, f->att, f->k, f->v, f->g, f->u, f->rope, f->act, f->emb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) slm_free(bufs[i]);
    for (int i = 0; f->own && i < f->n_threads; i++)
        slm_free(f->own[i].x), slm_free(f->own[i].h), slm_free(f->own[i].g), slm_free(f->own[i].rope),
            slm_free(f->own[i].act);
    slm_free(f->own);
    slm_free(f->tab);
    slm_free(f->claims);
    slm_attn_destroy(f->attn);
    slm_free(f);
}

/* ---- the pass as one job ---------------------------------------------------------------------
 * The whole forward pass is one pool job: every thread runs the same sequence of steps and
 * meets the others at a barrier (slm_pool_barrier) wherever a step reads what another
 * thread wrote. Steps over tokens (norms, conversions, RoPE, cache stores) split the batch's
 * tokens; matrix products split the output rows of all the step's matrices together;
 * attention splits its tiles (attn.c). Which thread computes a value never changes how it
 * is computed, so results do not depend on the thread count. Per layer, 10 barriers:
 *
 *   [x += y; h = norm(x); act(h)] | q k v | bias, qk-norm, rope, store | attention |
 *   act(att) | Wo | [x += y; h = norm(x); act(h)] | gate up | silu*up, act | Wdown |
 *
 * A batch of at most REPL_MAX_TOKENS tokens (decoding) replicates the bracketed steps: each
 * thread computes them for every token into its own rows and starts its share of the next
 * product without a barrier, so 6 barriers per layer, and none between the last Wdown and
 * the logits (the embedding never needs one: a thread embeds the rows it then normalises).
 * One token whose attention rows split along whole KV-head groups (own_heads) takes 4: a
 * thread computes the q k v rows of its own heads, finishes and attends with them.
 */

typedef struct pass {
    const slm_model *m;
    slm_fwd *f;
    slm_kv *kv;
    slm_pool *pool;        /* NULL: one thread */
    int32_t n;             /* tokens */
    const int32_t *tokens; /* [n], checked by the caller */
    const int32_t *pos;    /* [n] */
    const int32_t *seq;    /* [n] */
    const int32_t *cells;  /* [n] */
    int32_t n_out;         /* rows of logits */
    const int32_t *out_idx; /* [n_out], checked by the caller */
    float *logits;         /* [n_out][n_vocab] or NULL */
} pass;

/* The rows thread ith works on: the shared buffers, or its own when replicating. */
static fwd_rows rows_of(const slm_fwd *f, bool repl, int ith) {
    const size_t shared_slot = (size_t)f->n_batch * f->act_stride;
    if (!repl) return (fwd_rows){.x = f->x, .h = f->h, .g = f->g, .rope = f->rope, .act = f->act, .act_slot = shared_slot};
    fwd_rows r = f->own[ith];
    if (ith == 0) r.x = f->x, r.h = f->h, r.rope = f->rope, r.act = f->act, r.act_slot = shared_slot;
    return r;
}

/* The matrices of one step sharing an input, with their inputs converted (mm_convert). */
typedef struct mm_step {
    int count;
    const slm_mat *w[ACT_SLOTS];
    float *out[ACT_SLOTS];
    const uint8_t *act[ACT_SLOTS]; /* input rows in w[i]'s vec_dot_type */
    size_t stride[ACT_SLOTS];      /* bytes between them */
    float *tab[ACT_SLOTS];         /* their table for w[i]'s packed product (slm_quant_pack_table), or NULL */
    int64_t n_vec;                 /* input rows (the tables' row count) */
    int n_conv;                    /* buffers to fill: one per distinct vec_dot_type but F32 */
    int conv[ACT_SLOTS];           /* for each, the first matrix that reads it */
    float *conv_tab[ACT_SLOTS];    /* for each, the table to fill with it, or NULL */
} mm_step;

/* Point each matrix at an activation buffer of its vec_dot_type (slot k of r's act for the
 * k-th distinct type; F32 reads x itself) for n_vec rows, and, when tabled (the buffers are
 * shared by the threads), a packed product that reads a table at slot k's table, which the
 * conversion then fills (the step's products and chunks share it instead of each making its
 * own). Same result on every thread. */
static void mm_plan(const slm_fwd *f, const fwd_rows *r, mm_step *s, const float *x, int64_t n_vec, bool tabled) {
    slm_type seen[ACT_SLOTS];
    int n_seen = 0;
    s->n_conv = 0;
    s->n_vec = n_vec;
    for (int i = 0; i < s->count; i++) {
        const slm_type vt = slm_type_traits_of(s->w[i]->type)->vec_dot_type;
        s->tab[i] = NULL;
        if (vt == SLM_TYPE_F32) {
            s->act[i] = (const uint8_t *)x;
            s->stride[i] = (size_t)s->w[i]->n_in * sizeof(float);
            continue;
        }
        int k = 0;
        while (k < n_seen && seen[k] != vt) k++;
        if (k == n_seen) {
            seen[n_seen++] = vt;
            s->conv_tab[s->n_conv] = NULL;
            s->conv[s->n_conv++] = i;
        }
        s->act[i] = r->act + (size_t)k * r->act_slot;
        s->stride[i] = f->act_stride;
        if (tabled && f->tab && tabled_input(s->w[i]) > 0)
            s->tab[i] = s->conv_tab[k] = f->tab + (size_t)k * f->tab_slot;
    }
}

/* Convert tokens [t0, t1) of x[n][n_in] into every buffer the step reads (each distinct
 * vec_dot_type once, as mm_plan listed them). */
static void mm_convert(const mm_step *s, const float *x, int64_t t0, int64_t t1) {
    for (int c = 0; c < s->n_conv; c++) {
        const int i = s->conv[c];
        const slm_type vt = slm_type_traits_of(s->w[i]->type)->vec_dot_type;
        const int64_t n_in = s->w[i]->n_in;
        for (int64_t t = t0; t < t1; t++)
            slm_quant_act_convert(vt, x + (size_t)t * (size_t)n_in, (uint8_t *)s->act[i] + (size_t)t * s->stride[i], n_in);
        if (s->conv_tab[c]) slm_quant_pack_table(s->act[i], s->stride[i], t0, t1, s->n_vec, n_in, s->conv_tab[c]);
    }
}

/* Units [u0, u1) of the step's list of units of 8 output rows (a packed group; a
 * matrix's last unit may be short), all its matrices' units one after the other. */
static void mm_units(const mm_step *s, int32_t n, int64_t u0, int64_t u1) {
    const int64_t U = SLM_QUANT_PACK_ROWS;
    int64_t base = 0;
    for (int i = 0; i < s->count; i++) {
        const slm_mat *w = s->w[i];
        const int64_t units = (w->n_out + U - 1) / U;
        const int64_t a = u0 > base ? u0 - base : 0, b = u1 - base < units ? u1 - base : units;
        base += units;
        if (a >= b) continue;
        const int64_t r0 = a * U, r1 = b * U < w->n_out ? b * U : w->n_out;
        if (w->packed)
            slm_quant_matmul_packed_rows(w->type, w->data, w->n_in, w->n_out, s->act[i], s->stride[i], n, r0, r1,
                                         s->out[i], (size_t)w->n_out, s->tab[i]);
        else
            slm_quant_matmul_rows(w->type, w->data, w->n_in, s->act[i], s->stride[i], n, r0, r1, s->out[i],
                                  (size_t)w->n_out);
    }
}

/* This thread's share of the output rows of all the step's matrices, in units of 8 rows so
 * that every share starts on a group. claim NULL: a fixed share (both threads the same
 * count whatever the shapes); else a fixed share of the first CLAIM_FIXED_QUARTERS and
 * chunks of the rest claimed from *claim, which starts at 0. */
static void mm_rows(const mm_step *s, int32_t n, int ith, int nth, atomic_int *claim) {
    const int64_t U = SLM_QUANT_PACK_ROWS;
    int64_t total = 0;
    for (int i = 0; i < s->count; i++) total += (s->w[i]->n_out + U - 1) / U;
    const int64_t fixed = claim ? total * CLAIM_FIXED_QUARTERS / 4 : total;
    int64_t u0, u1;
    slm_pool_range(fixed, ith, nth, &u0, &u1);
    mm_units(s, n, u0, u1);
    if (!claim) return;
    const int64_t rest = total - fixed, max_chunks = (int64_t)nth * CLAIM_CHUNKS_PER_THREAD;
    const int64_t chunks = rest < max_chunks ? rest : max_chunks;
    for (int64_t c; (c = atomic_fetch_add_explicit(claim, 1, memory_order_relaxed)) < chunks;)
        mm_units(s, n, fixed + c * rest / chunks, fixed + (c + 1) * rest / chunks);
}

/* The claim counter of step k (0..CLAIMS_PER_LAYER - 1) of layer il (n_layer: the
 * logits), or NULL for a fixed share (replicated decode steps). */
static atomic_int *claim_of(const pass *p, bool repl, int32_t il, int k) {
    return repl ? NULL : &p->f->claims[(size_t)il * CLAIMS_PER_LAYER + (size_t)k];
}

static void add_bias(float *x, const float *b, int64_t width) {
    if (b) slm_ops_add(x, b, width);
}

/* In r's rows: x[t] += y[t] (when add), h[t] = rmsnorm(x[t]) * w, then h[t] converted for
 * the step. */
static void norm_convert(const pass *p, const fwd_rows *r, bool add, const float *w, const mm_step *s, int64_t t0,
                         int64_t t1) {
    const int64_t e = p->m->hp.n_embd;
    for (int64_t t = t0; t < t1; t++) { /* a row at a time: converted while in L1 */
        if (add) slm_ops_add(r->x + t * e, p->f->y + t * e, e);
        slm_ops_rmsnorm(r->h + t * e, r->x + t * e, w, e, p->m->hp.rms_eps);
        mm_convert(s, r->h, t, t + 1);
    }
}

/* Head i of token t after q, k, v (the items of a token: its n_head query heads, then its
 * n_head_kv KV heads, so that a single token's work splits across threads): a query head
 * gets its bias, qwen3's norm and RoPE; a KV head the same for its key, the bias for its
 * value, and both go into the cache (a head is whole blocks of the cache type:
 * slm_fwd_create checks). Per head exactly what the whole rows would get. */
static void qkv_finish(const pass *p, const fwd_rows *r, const slm_layer *L, int32_t il, int64_t t, int32_t i) {
    const slm_hparams *hp = &p->m->hp;
    slm_fwd *f = p->f;
    const int64_t hd = hp->head_dim, nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv * hd;
    const float *cs = r->rope + (size_t)t * (size_t)hp->n_rot;
    if (i < hp->n_head) {
        float *q = f->q + t * nq + i * hd;
        add_bias(q, L->bq ? L->bq + i * hd : NULL, hd);
        if (L->q_norm) slm_ops_rmsnorm(q, q, L->q_norm, hd, hp->rms_eps);
        slm_ops_rope(q, hp->n_rot, cs, p->m->arch->rope_neox);
        return;
    }
    const int64_t off = (int64_t)(i - hp->n_head) * hd;
    float *k = f->k + t * nkv + off, *v = f->v + t * nkv + off;
    add_bias(k, L->bk ? L->bk + off : NULL, hd);
    add_bias(v, L->bv ? L->bv + off : NULL, hd);
    if (L->k_norm) slm_ops_rmsnorm(k, k, L->k_norm, hd, hp->rms_eps);
    slm_ops_rope(k, hp->n_rot, cs, p->m->arch->rope_neox);
    slm_kv_store_part(p->kv, il, p->cells[t], off, hd, k, v);
}

/* Ask for the cache lines qkv_finish will store the KV heads among items [i0, i1) into
 * (items as in qkv_finish), for writing: a decode step's cells are fresh, and without this
 * the stores wait for those lines (about a microsecond a layer) on the step's thread. */
#define CACHE_LINE 64
static void kv_prefetch(const pass *p, int32_t il, int64_t i0, int64_t i1) {
    const slm_hparams *hp = &p->m->hp;
    const int64_t heads = (int64_t)hp->n_head + hp->n_head_kv;
    const slm_type_traits *tr = slm_type_traits_of(slm_kv_type(p->kv));
    const size_t head_bytes = (size_t)(hp->head_dim / tr->block_size) * tr->type_size;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t h = i % heads - hp->n_head; /* KV head, or < 0 for a query head */
        if (h < 0) continue;
        const int64_t c = p->cells[i / heads];
        const uint8_t *k = (const uint8_t *)slm_kv_k_row(p->kv, il, c) + (size_t)h * head_bytes;
        const uint8_t *v = (const uint8_t *)slm_kv_v_row(p->kv, il, c) + (size_t)h * head_bytes;
        for (size_t b = 0; b < head_bytes; b += CACHE_LINE) __builtin_prefetch(k + b, 1), __builtin_prefetch(v + b, 1);
    }
}

/* Decoding one token with attention's rows split by query heads along whole KV-head groups
 * (every thread's range starts and ends on a group, e.g. Qwen2.5's 14 heads of 2 groups or
 * Llama-3.2's 32 of 8 on 2 threads): each thread computes the q k v rows of its own heads,
 * finishes them (RoPE, cache store) and attends with them, so the two barriers between
 * those steps go. Needs head_dim in whole 8-row units. [*q0, *q1): this thread's query
 * heads. The same rows get the same arithmetic, only on a known thread. */
static bool own_heads(const pass *p, const slm_attn_args *args, int ith, int nth, int32_t *q0, int32_t *q1) {
    const slm_hparams *hp = &p->m->hp;
    const int32_t group = hp->n_head / hp->n_head_kv;
    if (hp->head_dim % SLM_QUANT_PACK_ROWS) return false;
    for (int t = 0; t < nth; t++) {
        int32_t a, b;
        if (!slm_attn_token_heads(p->f->attn, args, t, nth, &a, &b) || a % group || b % group) return false;
        if (t == ith) *q0 = a, *q1 = b;
    }
    return true;
}

/* One layer. [t0, t1): this thread's tokens of the per-token steps (all of them when repl);
 * [s0, s1): its tokens of the steps that are always split. */
static void layer_steps(const pass *p, const fwd_rows *r, bool repl, int32_t il, int ith, int nth) {
    const slm_hparams *hp = &p->m->hp;
    const slm_layer *L = &p->m->layers[il];
    slm_fwd *f = p->f;
    const int64_t ff = hp->n_ff;
    int64_t s0, s1;
    slm_pool_range(p->n, ith, nth, &s0, &s1);
    const int64_t t0 = repl ? 0 : s0, t1 = repl ? p->n : s1;
    const int64_t heads = (int64_t)hp->n_head + hp->n_head_kv; /* qkv_finish's items per token */
    int64_t h0, h1;
    slm_pool_range(p->n * heads, ith, nth, &h0, &h1);
    const slm_attn_args args = {.hp = hp, .kv = p->kv, .il = il, .n = p->n, .pos = p->pos, .seq = p->seq, .q = f->q,
                                .out = f->att, .claim = claim_of(p, repl, il, 4)};
    int32_t q0 = 0, q1 = 0; /* own heads: query heads [q0, q1), KV heads [k0, k1) */
    const bool own = repl && own_heads(p, &args, ith, nth, &q0, &q1);
    const int32_t group = hp->n_head / hp->n_head_kv, k0 = q0 / group, k1 = q1 / group;
    if (own) h0 = hp->n_head + k0, h1 = hp->n_head + k1; /* its items that store, for kv_prefetch */
    if (p->n <= REPL_MAX_TOKENS) kv_prefetch(p, il, h0, h1), slm_attn_prefetch(f->attn, &args, ith, nth);

    /* attention block: x += y (the previous layer's Wdown); h = rmsnorm(x) * attn_norm */
    mm_step qkv = {.count = 3, .w = {&L->wq, &L->wk, &L->wv}, .out = {f->q, f->k, f->v}};
    mm_plan(f, r, &qkv, r->h, p->n, !repl);
    norm_convert(p, r, il > 0, L->attn_norm, &qkv, t0, t1);
    if (!repl) slm_pool_barrier(p->pool);
    if (own) { /* q rows of its heads, then k and v rows of its KV heads (units of 8 rows) */
        const int64_t hu = hp->head_dim / SLM_QUANT_PACK_ROWS, qu = hp->n_head * hu, kvu = hp->n_head_kv * hu;
        mm_units(&qkv, p->n, q0 * hu, q1 * hu);
        mm_units(&qkv, p->n, qu + k0 * hu, qu + k1 * hu);
        mm_units(&qkv, p->n, qu + kvu + k0 * hu, qu + kvu + k1 * hu);
        for (int32_t i = q0; i < q1; i++) qkv_finish(p, r, L, il, 0, i);
        for (int32_t k = k0; k < k1; k++) qkv_finish(p, r, L, il, 0, hp->n_head + k);
    } else {
        mm_rows(&qkv, p->n, ith, nth, claim_of(p, repl, il, 0));
        slm_pool_barrier(p->pool);
        for (int64_t i = h0; i < h1; i++) qkv_finish(p, r, L, il, i / heads, (int32_t)(i % heads));
        slm_pool_barrier(p->pool);
    }
    slm_attn_run(f->attn, &args, ith, nth);
    slm_pool_barrier(p->pool);
    mm_step wo = {.count = 1, .w = {&L->wo}, .out = {f->y}};
    mm_plan(f, r, &wo, f->att, p->n, !repl);
    mm_convert(&wo, f->att, t0, t1);
    if (!repl) slm_pool_barrier(p->pool);
    mm_rows(&wo, p->n, ith, nth, claim_of(p, repl, il, 1));
    slm_pool_barrier(p->pool);

    /* feed-forward block: x += y; h = rmsnorm(x) * ffn_norm; y = (silu(h Wgate) * (h Wup)) Wdown */
    mm_step gu = {.count = 2, .w = {&L->gate, &L->up}, .out = {f->g, f->u}};
    mm_plan(f, r, &gu, r->h, p->n, !repl);
    norm_convert(p, r, true, L->ffn_norm, &gu, t0, t1);
    if (!repl) slm_pool_barrier(p->pool);
    mm_rows(&gu, p->n, ith, nth, claim_of(p, repl, il, 2));
    slm_pool_barrier(p->pool);
    mm_step down = {.count = 1, .w = {&L->down}, .out = {f->y}};
    mm_plan(f, r, &down, r->g, p->n, !repl);
    for (int64_t t = t0; t < t1; t++) { /* a row at a time: it is converted while in L1/L2 */
        slm_ops_silu_mul(r->g + t * ff, f->g + t * ff, f->u + t * ff, ff);
        mm_convert(&down, r->g, t, t + 1);
    }
    if (!repl) slm_pool_barrier(p->pool);
    mm_rows(&down, p->n, ith, nth, claim_of(p, repl, il, 3));
    slm_pool_barrier(p->pool);
}

/* out = row `token` of token_embd as floats. A packed row (tied output, repack.c) is read
 * by unpacking its group into this thread's scratch. */
static void embed_row(const slm_model *m, slm_fwd *f, int ith, int32_t token, float *out) {
    const slm_mat *w = &m->tok_embd;
    const slm_quant_kernel_set *ks = slm_quant_kernels();
    const int64_t g = token / SLM_QUANT_PACK_ROWS;
    if (w->packed && g < w->n_out / SLM_QUANT_PACK_ROWS) {
        uint8_t *rows = f->emb + (size_t)ith * f->emb_stride;
        ks->unpack[w->type](w->data + (size_t)g * f->emb_stride, w->n_in, rows, w->row_bytes);
        ks->to_float[w->type](rows + (size_t)(token % SLM_QUANT_PACK_ROWS) * w->row_bytes, out, w->n_in);
        return;
    }
    ks->to_float[w->type](w->data + (size_t)token * w->row_bytes, out, w->n_in);
}

static void pass_run(void *arg, int ith, int nth) {
    const pass *p = arg;
    const slm_hparams *hp = &p->m->hp;
    slm_fwd *f = p->f;
    const int64_t e = hp->n_embd;
    const bool repl = nth > 1 && nth <= f->n_threads && p->n <= REPL_MAX_TOKENS;
    const fwd_rows r = rows_of(f, repl, ith);
    int64_t s0, s1;
    slm_pool_range(p->n, ith, nth, &s0, &s1);
    const int64_t t0 = repl ? 0 : s0, t1 = repl ? p->n : s1;

    /* the steps' claim counters start at 0: thread 0 resets them before the barrier that
     * precedes the first product (the pool's job start orders them after the last pass) */
    if (!repl && ith == 0)
        for (size_t i = 0; i <= (size_t)hp->n_layer * CLAIMS_PER_LAYER; i++)
            atomic_store_explicit(&f->claims[i], 0, memory_order_relaxed);

    /* x = embedding rows (of the tokens this thread normalises next: no barrier); the RoPE
     * tables: split when shared (read after the q k v barrier), all of its own when
     * replicating (a thread may RoPE its heads right after its part of q k v) */
    for (int64_t t = t0; t < t1; t++) embed_row(p->m, f, ith, p->tokens[t], r.x + t * e);
    for (int64_t t = t0; t < t1; t++)
        slm_ops_rope_cache(r.rope + (size_t)t * (size_t)hp->n_rot, hp->n_rot, p->pos[t], hp->rope_base,
                           hp->rope_freq_scale, p->m->rope_freqs);
    for (int32_t il = 0; il < hp->n_layer; il++) layer_steps(p, &r, repl, il, ith, nth);

    /* x += y (the last Wdown); h[i] = rmsnorm(x[out_idx[i]]) * output_norm for the rows asked
     * for; logits = h Woutput. Every thread adds the residual of its own tokens first. */
    for (int64_t t = t0; t < t1; t++) slm_ops_add(r.x + t * e, f->y + t * e, e);
    if (!repl) slm_pool_barrier(p->pool);
    if (p->n_out == 0) return;
    mm_step out = {.count = 1, .w = {&p->m->output}, .out = {p->logits}};
    mm_plan(f, &r, &out, r.h, p->n_out, !repl);
    int64_t i0 = 0, i1 = p->n_out;
    if (!repl) slm_pool_range(p->n_out, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++)
        slm_ops_rmsnorm(r.h + i * e, r.x + (size_t)p->out_idx[i] * (size_t)e, p->m->out_norm, e, hp->rms_eps);
    if (p->logits) mm_convert(&out, r.h, i0, i1);
    if (!repl) slm_pool_barrier(p->pool);
    if (p->logits) mm_rows(&out, p->n_out, ith, nth, claim_of(p, repl, hp->n_layer, 0));
}

slm_status slm_model_forward(const slm_model *m, slm_fwd *f, slm_kv *kv, slm_pool *pool, int32_t n,
                             const int32_t *tokens, const int32_t *pos, const int32_t *seq,
                             const int32_t *cells, int32_t n_out, const int32_t *out_idx, float *logits,
                             float *hidden, char *err) {
    const slm_hparams *hp = &m->hp;
    if (n < 1 || n > f->n_batch) return slm_errf(err, SLM_ERR_RANGE, "%d tokens for a batch of %d", n, f->n_batch);
    if (slm_kv_n_cells(kv) > f->n_cells || slm_kv_type(kv) != f->kv_type)
        return slm_errf(err, SLM_ERR_INTERNAL, "KV cache does not match the forward scratch");
    if (n_out < 0 || n_out > n) return slm_errf(err, SLM_ERR_RANGE, "%d outputs for %d tokens", n_out, n);
    if (pool && slm_pool_n_threads(pool) > f->n_threads)
        return slm_errf(err, SLM_ERR_INTERNAL, "%d threads for scratch sized for %d", slm_pool_n_threads(pool),
                        f->n_threads);
    for (int32_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
            return slm_errf(err, SLM_ERR_RANGE, "token %d: id %d outside [0, %d)", t, tokens[t], hp->n_vocab);
    for (int32_t i = 0; i < n_out; i++)
        if (out_idx[i] < 0 || out_idx[i] >= n) return slm_errf(err, SLM_ERR_RANGE, "output index %d", out_idx[i]);

    pass p = {.m = m, .f = f, .kv = kv, .pool = pool, .n = n, .tokens = tokens, .pos = pos, .seq = seq,
              .cells = cells, .n_out = n_out, .out_idx = out_idx, .logits = logits};
    slm_pool_run(pool, pass_run, &p);
    if (hidden && n_out > 0) memcpy(hidden, f->h, (size_t)n_out * (size_t)hp->n_embd * sizeof(float));
    return SLM_OK;
}
