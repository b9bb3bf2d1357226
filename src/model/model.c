/*
 * model/model.c: open a GGUF model: architecture lookup, hyper-parameters, and the typed,
 * shape-checked weight views the forward pass uses (see model.h for the invariants).
 *
 * Every check names the key or tensor and what is wrong, so that a user with a broken or
 * unsupported file knows which one and why ("blk.3.attn_k.weight: shape [256, 128], expected
 * [256, 64]"; "blk.0.ffn_down.weight: type iq2_xxs has no kernels"). Weights are never
 * copied: slm_mat points into the mapping.
 * Thread-safety: open/close are single-threaded; an open model is immutable.
 * Non-goals: YaRN / LongRoPE scaling (refused with SLM_ERR_UNSUPPORTED), MoE tensors.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/core.h"
#include "model/model.h"
#include "model/vocab.h"

/* ---- metadata --------------------------------------------------------------------------- */

/* Read <arch>.<suffix> as an integer in [lo, hi]; when absent: def if def >= 0, else error. */
static slm_status get_int(const slm_model *m, const char *suffix, int64_t lo, int64_t hi, int64_t def,
                          int32_t *out, char *err) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int64_t v;
    slm_status st = slm_gguf_get_i64(m->gguf, key, &v, NULL);
    if (st == SLM_ERR_NOT_FOUND) {
        if (def < 0) return slm_errf(err, SLM_ERR_CORRUPT, "missing key %s", key);
        v = def;
    } else if (st != SLM_OK) {
        return slm_errf(err, SLM_ERR_CORRUPT, "key %s is not an integer", key);
    }
    if (v < lo || v > hi)
        return slm_errf(err, v > hi ? SLM_ERR_LIMIT : SLM_ERR_CORRUPT, "%s = %lld outside [%lld, %lld]", key,
                        (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return SLM_OK;
}

/* Read <arch>.<suffix> as a float > 0, or def when absent. */
static slm_status get_float(const slm_model *m, const char *suffix, float def, float *out, char *err) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    float v;
    slm_status st = slm_gguf_get_f32(m->gguf, key, &v, NULL);
    if (st == SLM_ERR_NOT_FOUND) v = def;
    else if (st != SLM_OK) return slm_errf(err, SLM_ERR_CORRUPT, "key %s is not a float", key);
    if (!(v > 0.0f) || v > 1e30f) return slm_errf(err, SLM_ERR_CORRUPT, "%s = %g is not a positive number", key, v);
    *out = v;
    return SLM_OK;
}

static slm_status read_rope_scaling(slm_model *m, char *err) {
    char key[96];
    slm_gguf_str type = {0};
    float factor = 0.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    bool has_type = slm_gguf_get_str(m->gguf, key, &type, NULL) == SLM_OK;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", m->arch_name);
    if (slm_gguf_get_f32(m->gguf, key, &factor, NULL) != SLM_OK) {
        snprintf(key, sizeof key, "%s.rope.scale_linear", m->arch_name);
        if (slm_gguf_get_f32(m->gguf, key, &factor, NULL) != SLM_OK) factor = 0.0f;
    }
    if (has_type && !(type.len == 4 && !memcmp(type.ptr, "none", 4)) &&
        !(type.len == 6 && !memcmp(type.ptr, "linear", 6)))
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "RoPE scaling type '%.*s' (only none and linear)",
                        (int)(type.len > 32 ? 32 : type.len), type.ptr ? type.ptr : "");
    if (has_type && type.len == 4) factor = 0.0f; /* "none" */
    if (factor != 0.0f && !(factor > 0.0f && factor < 1e6f))
        return slm_errf(err, SLM_ERR_CORRUPT, "RoPE scaling factor %g", factor);
    m->hp.rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    return SLM_OK;
}

static slm_status read_hparams(slm_model *m, char *err) {
    slm_hparams *hp = &m->hp;
    slm_status st;
    if ((st = get_int(m, "context_length", 1, SLM_MODEL_MAX_CTX, -1, &hp->n_ctx_train, err)) ||
        (st = get_int(m, "embedding_length", 1, SLM_MODEL_MAX_EMBD, -1, &hp->n_embd, err)) ||
        (st = get_int(m, "block_count", 1, SLM_MODEL_MAX_LAYERS, -1, &hp->n_layer, err)) ||
        (st = get_int(m, "feed_forward_length", 1, SLM_MODEL_MAX_FF, -1, &hp->n_ff, err)) ||
        (st = get_int(m, "attention.head_count", 1, SLM_MODEL_MAX_HEADS, -1, &hp->n_head, err)) ||
        (st = get_int(m, "attention.head_count_kv", 1, SLM_MODEL_MAX_HEADS, hp->n_head, &hp->n_head_kv, err)))
        return st;
    if (hp->n_head % hp->n_head_kv != 0)
        return slm_errf(err, SLM_ERR_CORRUPT, "head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                        hp->n_head_kv);
    int32_t def_head_dim = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : -1;
    int32_t v_dim;
    if ((st = get_int(m, "attention.key_length", 1, SLM_MODEL_MAX_HEAD_DIM, def_head_dim, &hp->head_dim, err)) ||
        (st = get_int(m, "attention.value_length", 1, SLM_MODEL_MAX_HEAD_DIM, hp->head_dim, &v_dim, err)))
        return st;
    if (v_dim != hp->head_dim)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "key_length %d != value_length %d", hp->head_dim, v_dim);
    if ((st = get_int(m, "rope.dimension_count", 2, SLM_MODEL_MAX_HEAD_DIM, hp->head_dim, &hp->n_rot, err))) return st;
    if (hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim)
        return slm_errf(err, SLM_ERR_CORRUPT, "rope.dimension_count %d is odd or exceeds the head size %d", hp->n_rot,
                        hp->head_dim);
    if ((st = get_float(m, "rope.freq_base", m->arch->default_rope_base, &hp->rope_base, err)) ||
        (st = get_float(m, "attention.layer_norm_rms_epsilon", m->arch->default_rms_eps, &hp->rms_eps, err)))
        return st;
    int32_t pooling;
    if ((st = get_int(m, "pooling_type", 0, SLM_POOLING_RANK, SLM_POOLING_MEAN, &pooling, err))) return st;
    hp->pooling = pooling == 0 ? SLM_POOLING_MEAN : (slm_pooling)pooling; /* "none": see slm_pooling */
    return read_rope_scaling(m, err);
}

/* ---- tensors ---------------------------------------------------------------------------- */

/* Kernels read f32 values and the f16 fields of blocks in place: tensor data must start on
 * a 4-byte boundary (GGUF files align to 32; only a hand-made general.alignment breaks it). */
#define TENSOR_MIN_ALIGN 4

/* Find name and check its exact shape [ne0, ne1] (ne1 = 1 for vectors). NULL in *out and
 * SLM_OK when absent and optional. */
static slm_status find_shaped(const slm_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                              const slm_gguf_tensor **out, char *err) {
    const slm_gguf_tensor *t = slm_gguf_find_tensor(m->gguf, name);
    *out = NULL;
    if (!t) return required ? slm_errf(err, SLM_ERR_CORRUPT, "missing tensor %s", name) : SLM_OK;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return slm_errf(err, SLM_ERR_CORRUPT, "tensor %s: shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                        (long long)ne0, (long long)ne1);
    *out = t;
    return SLM_OK;
}

/* A vector of n floats (norm weights, biases, RoPE factors). */
static slm_status load_vec(const slm_model *m, const char *name, int64_t n, bool required, const float **out,
                           char *err) {
    const slm_gguf_tensor *t;
    slm_status st = find_shaped(m, name, n, 1, required, &t, err);
    *out = NULL;
    if (st || !t) return st;
    if (t->type != SLM_TYPE_F32)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: type %s (1-D tensors must be f32)", name,
                        slm_type_name(t->type));
    if ((uintptr_t)t->data % TENSOR_MIN_ALIGN != 0)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: data not aligned to %d bytes", name, TENSOR_MIN_ALIGN);
    *out = t->data;
    return SLM_OK;
}

/* Can we multiply with (or, for embeddings only, dequantize) a matrix of this type? */
static slm_status check_kernels(const slm_gguf_tensor *t, bool matmul, char *err) {
    const slm_type_traits *tr = slm_type_traits_of(t->type);
    if (!tr || !tr->to_float)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: type %s has no kernels", t->name,
                        slm_type_name(t->type));
    if (t->ne[0] % tr->block_size != 0)
        return slm_errf(err, SLM_ERR_CORRUPT, "tensor %s: row of %lld is not whole %s blocks", t->name,
                        (long long)t->ne[0], tr->name);
    if (!matmul) return SLM_OK;
    const slm_type_traits *vt = slm_type_traits_of(tr->vec_dot_type);
    if (!tr->vec_dot || !vt || (tr->vec_dot_type != SLM_TYPE_F32 && !vt->from_float))
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: type %s has no dot-product kernel", t->name,
                        tr->name);
    if (t->ne[0] % vt->block_size != 0)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: row of %lld is not whole %s blocks", t->name,
                        (long long)t->ne[0], vt->name);
    return SLM_OK;
}

static slm_status load_mat(const slm_model *m, const char *name, int64_t n_in, int64_t n_out, bool matmul,
                           bool required, slm_mat *out, char *err) {
    const slm_gguf_tensor *t;
    slm_status st = find_shaped(m, name, n_in, n_out, required, &t, err);
    memset(out, 0, sizeof *out);
    if (st || !t) return st;
    if ((st = check_kernels(t, matmul, err))) return st;
    if ((uintptr_t)t->data % TENSOR_MIN_ALIGN != 0)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "tensor %s: data not aligned to %d bytes", name, TENSOR_MIN_ALIGN);
    out->name = t->name;
    out->data = t->data;
    out->type = t->type;
    out->n_in = n_in;
    out->n_out = n_out;
    if (!slm_type_row_bytes(t->type, n_in, &out->row_bytes))
        return slm_errf(err, SLM_ERR_CORRUPT, "tensor %s: bad row size", name);
    return SLM_OK;
}

static slm_status load_layer(slm_model *m, int32_t il, slm_layer *L, char *err) {
    const slm_hparams *hp = &m->hp;
    const int64_t e = hp->n_embd, q = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    const bool bias = m->arch->has_qkv_bias;
    const bool qk_norm = m->arch->has_qk_norm;
    char n[14][64];
    static const char *const names[14] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                                          "attn_output.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias",
                                          "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
                                          "attn_q_norm.weight", "attn_k_norm.weight"};
    for (int i = 0; i < 14; i++) snprintf(n[i], sizeof n[i], "blk.%d.%s", il, names[i]);
    slm_status st;
    if ((st = load_vec(m, n[0], e, true, &L->attn_norm, err)) ||
        (st = load_mat(m, n[1], e, q, true, true, &L->wq, err)) ||
        (st = load_mat(m, n[2], e, kvd, true, true, &L->wk, err)) ||
        (st = load_mat(m, n[3], e, kvd, true, true, &L->wv, err)) ||
        (st = load_mat(m, n[4], q, e, true, true, &L->wo, err)) ||
        (st = load_vec(m, n[5], q, bias, &L->bq, err)) ||
        (st = load_vec(m, n[6], kvd, bias, &L->bk, err)) ||
        (st = load_vec(m, n[7], kvd, bias, &L->bv, err)) ||
        (st = load_vec(m, n[8], e, true, &L->ffn_norm, err)) ||
        (st = load_mat(m, n[9], e, hp->n_ff, true, true, &L->gate, err)) ||
        (st = load_mat(m, n[10], e, hp->n_ff, true, true, &L->up, err)) ||
        (st = load_mat(m, n[11], hp->n_ff, e, true, true, &L->down, err)) ||
        (st = load_vec(m, n[12], hp->head_dim, qk_norm, &L->q_norm, err)) ||
        (st = load_vec(m, n[13], hp->head_dim, qk_norm, &L->k_norm, err)))
        return st;
    return SLM_OK;
}

/* Most common type among the matrices, and totals over every tensor. */
static void summarize(slm_model *m) {
    int64_t count[SLM_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < slm_gguf_n_tensors(m->gguf); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(m->gguf, i);
        m->n_params += (uint64_t)slm_gguf_tensor_nelements(t);
        m->weight_bytes += t->size;
        if (t->n_dims >= 2 && (unsigned)t->type < SLM_TYPE_COUNT) count[t->type]++;
    }
    int best = SLM_TYPE_F32;
    for (int t = 0; t < SLM_TYPE_COUNT; t++)
        if (count[t] > count[best]) best = t;
    m->ftype = (slm_type)best;
}

slm_status slm_model_load_weights(slm_model *m, char *err) {
    slm_gguf_str s;
    slm_status st = slm_gguf_get_str(m->gguf, "general.architecture", &s, NULL);
    if (st) return slm_errf(err, SLM_ERR_CORRUPT, "missing key general.architecture");
    m->arch = slm_arch_find(s.ptr, (size_t)s.len);
    if (!m->arch)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "architecture '%.*s' (supported: llama, qwen2, qwen3)",
                        (int)(s.len > 64 ? 64 : s.len), s.ptr ? s.ptr : "");
    snprintf(m->arch_name, sizeof m->arch_name, "%s", m->arch->name);
    if (slm_gguf_get_str(m->gguf, "general.name", &s, NULL) == SLM_OK)
        snprintf(m->name, sizeof m->name, "%.*s", (int)(s.len >= sizeof m->name ? sizeof m->name - 1 : s.len),
                 s.ptr ? s.ptr : "");
    if ((st = read_hparams(m, err))) return st;

    slm_hparams *hp = &m->hp;
    const slm_gguf_tensor *emb = slm_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return slm_errf(err, SLM_ERR_CORRUPT, "missing tensor token_embd.weight");
    if (emb->ne[1] < 1 || emb->ne[1] > SLM_MODEL_MAX_VOCAB)
        return slm_errf(err, SLM_ERR_LIMIT, "token_embd.weight: %lld rows outside [1, %d]", (long long)emb->ne[1],
                        SLM_MODEL_MAX_VOCAB);
    hp->n_vocab = (int32_t)emb->ne[1];

    const slm_gguf_tensor *out_t = slm_gguf_find_tensor(m->gguf, "output.weight");
    const bool tied = out_t == NULL;
    if (tied && !m->arch->tied_output_ok) return slm_errf(err, SLM_ERR_CORRUPT, "missing tensor output.weight");
    if ((st = load_mat(m, "token_embd.weight", hp->n_embd, hp->n_vocab, tied, true, &m->tok_embd, err)) ||
        (st = load_vec(m, "output_norm.weight", hp->n_embd, true, &m->out_norm, err)) ||
        (st = load_vec(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs, err)))
        return st;
    if (tied) m->output = m->tok_embd;
    else if ((st = load_mat(m, "output.weight", hp->n_embd, hp->n_vocab, true, true, &m->output, err)))
        return st;

    m->layers = slm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return slm_errf(err, SLM_ERR_NOMEM, "layer table");
    for (int32_t il = 0; il < hp->n_layer; il++)
        if ((st = load_layer(m, il, &m->layers[il], err))) return st;
    summarize(m);
    return SLM_OK;
}

/* ---- public: open, close, describe ------------------------------------------------------------ */

slm_status slm_model_open(const char *path, const slm_model_params *params, slm_model **out, char *err) {
    *out = NULL;
    slm_model *m = slm_calloc(1, sizeof *m);
    if (!m) return slm_errf(err, SLM_ERR_NOMEM, "model");
    slm_gguf_open_opts opts = {0};
    if (params) {
        opts.no_mmap = params->no_mmap;
        opts.mlock = params->mlock;
    }
    slm_status st = slm_gguf_open(path, &opts, &m->gguf, err);
    if (st == SLM_OK) st = slm_model_load_weights(m, err);
    if (st == SLM_OK && !(params && params->no_repack)) st = slm_model_repack(m, params && params->mlock, err);
    if (st == SLM_OK) st = slm_model_vocab_open(m, err);
    if (st != SLM_OK) {
        slm_model_close(m);
        return st;
    }
    *out = m;
    return SLM_OK;
}

void slm_model_close(slm_model *m) {
    if (!m) return;
    slm_model_vocab_close(m);
    slm_free(m->layers);
    if (m->packed_map) munmap(m->packed_map, m->packed_size);
    slm_gguf_close(m->gguf);
    slm_free(m);
}

void slm_model_describe(const slm_model *m, slm_model_desc *out) {
    const slm_hparams *hp = &m->hp;
    memset(out, 0, sizeof *out);
    out->arch = m->arch_name;
    out->name = m->name;
    out->ftype = slm_type_name(m->ftype);
    out->n_vocab = hp->n_vocab;
    out->n_ctx_train = hp->n_ctx_train;
    out->n_embd = hp->n_embd;
    out->n_layer = hp->n_layer;
    out->n_head = hp->n_head;
    out->n_head_kv = hp->n_head_kv;
    out->n_ff = hp->n_ff;
    out->head_dim = hp->head_dim;
    out->rope_base = hp->rope_base;
    out->rms_eps = hp->rms_eps;
    out->n_params = m->n_params;
    out->weight_bytes = m->weight_bytes;
    out->pooling = hp->pooling;
}

slm_status slm_model_meta_str(const slm_model *m, const char *key, const char **ptr, size_t *len) {
    slm_gguf_str s;
    slm_status st = slm_gguf_get_str(m->gguf, key, &s, NULL);
    if (st) return SLM_ERR_NOT_FOUND;
    *ptr = s.ptr ? s.ptr : "";
    *len = (size_t)s.len;
    return SLM_OK;
}
