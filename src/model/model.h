/*
 * model/model.h: a loaded model as the forward pass sees it: the architecture descriptor
 * (one row of the table in arch.c), validated hyper-parameters, and typed views of every
 * weight tensor into the GGUF mapping (zero copy: row-major quantized blocks).
 *
 * Invariants after slm_model_open: every tensor the architecture needs is present with its
 * exact shape; every matrix has kernels (to_float, vec_dot, and from_float for its
 * activation type) and rows that are whole blocks of both its type and its activation
 * type; 1-D tensors (norms, biases) are F32 and 4-byte aligned.
 * Thread-safety: immutable after open. Non-goals: tensor parallelism, LoRA, MoE (later).
 */
#ifndef SLMESH_MODEL_MODEL_H
#define SLMESH_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kv/kv.h"
#include "pool/pool.h"
#include "quant/quant.h"
#include "slmesh/slmesh.h"
#include "tokenizer/tokenizer.h"

/* ---- limits on hyper-parameters (a file declaring more is refused, SLM_ERR_LIMIT) ------- */
#define SLM_MODEL_MAX_LAYERS  512        /* the largest open models have ~130 */
#define SLM_MODEL_MAX_EMBD    65536      /* hidden size; largest real ~16k */
#define SLM_MODEL_MAX_HEADS   1024       /* attention heads */
#define SLM_MODEL_MAX_HEAD_DIM 1024      /* values per head; real 64..256 */
#define SLM_MODEL_MAX_FF      (1 << 20)  /* feed-forward width */
#define SLM_MODEL_MAX_CTX     (1 << 22)  /* trained context; equals SLM_KV_MAX_CELLS */
#define SLM_MODEL_MAX_VOCAB   (1 << 21)  /* output rows; equals SLM_TOK_MAX_VOCAB */

/* ---- architectures -------------------------------------------------------------------- */

typedef struct slm_arch {
    const char *name;        /* general.architecture */
    bool rope_neox;          /* rotate (i, i + n_rot/2) pairs instead of (2i, 2i+1) */
    bool has_qkv_bias;       /* attn_{q,k,v}.bias present (qwen2) */
    bool has_qk_norm;        /* attn_{q,k}_norm.weight: RMSNorm of each q/k head before RoPE (qwen3) */
    bool tied_output_ok;     /* output.weight may be absent: reuse token_embd.weight */
    float default_rms_eps;   /* when layer_norm_rms_epsilon is absent */
    float default_rope_base; /* when rope.freq_base is absent */
} slm_arch;

/* The descriptor of an architecture name (len bytes), or NULL when unsupported. */
const slm_arch *slm_arch_find(const char *name, size_t len);

/* ---- hyper-parameters and weights --------------------------------------------------------- */

typedef struct slm_hparams {
    int32_t n_vocab;       /* output rows */
    int32_t n_ctx_train;   /* trained context */
    int32_t n_embd;        /* hidden size */
    int32_t n_layer;       /* blocks */
    int32_t n_ff;          /* feed-forward width */
    int32_t n_head;        /* query heads */
    int32_t n_head_kv;     /* key/value heads; n_head % n_head_kv == 0 */
    int32_t head_dim;      /* values per head (n_embd / n_head unless the file says) */
    int32_t n_rot;         /* rotated dimensions per head, even, <= head_dim */
    float rope_base;       /* theta base */
    float rope_freq_scale; /* 1 / linear scaling factor */
    float rms_eps;         /* RMSNorm epsilon */
    slm_pooling pooling;   /* embedding pooling (<arch>.pooling_type; MEAN when absent or none) */
} slm_hparams;

/* A weight matrix: n_out rows of n_in elements, row-major blocks in the mapping. */
typedef struct slm_mat {
    const char *name;   /* tensor name, owned by the gguf */
    const uint8_t *data;/* first row */
    slm_type type;      /* element type */
    int64_t n_in;       /* elements per row (ne[0]) */
    int64_t n_out;      /* rows (ne[1]) */
    size_t row_bytes;   /* bytes per row */
    bool packed;        /* rows [0, n_out - n_out % 8) are in the kernel set's packed layout
                           (kernels.h, "packed weights"), the rest in the file's (repack.c) */
} slm_mat;

typedef struct slm_layer {
    const float *attn_norm;      /* [n_embd] */
    slm_mat wq;                  /* [n_head*head_dim][n_embd] */
    slm_mat wk;                  /* [n_head_kv*head_dim][n_embd] */
    slm_mat wv;                  /* [n_head_kv*head_dim][n_embd] */
    slm_mat wo;                  /* [n_embd][n_head*head_dim] */
    const float *bq, *bk, *bv;   /* biases (qwen2) or NULL */
    const float *q_norm, *k_norm;/* [head_dim] per-head RMSNorm weights (qwen3) or NULL */
    const float *ffn_norm;       /* [n_embd] */
    slm_mat gate;                /* [n_ff][n_embd] */
    slm_mat up;                  /* [n_ff][n_embd] */
    slm_mat down;                /* [n_embd][n_ff] */
} slm_layer;

struct slm_model {
    slm_gguf *gguf;            /* the mapping, owned */
    slm_tokenizer *tok;        /* owned */
    const slm_arch *arch;      /* static descriptor */
    char arch_name[32];        /* general.architecture, NUL-terminated */
    char name[128];            /* general.name (truncated), or "" */
    slm_hparams hp;
    slm_mat tok_embd;          /* [n_vocab][n_embd] */
    const float *out_norm;     /* [n_embd] */
    slm_mat output;            /* [n_vocab][n_embd]; token_embd when tied */
    const float *rope_freqs;   /* [n_rot/2] frequency factors, or NULL */
    slm_layer *layers;         /* [n_layer], owned */
    slm_type ftype;            /* most common matrix type */
    uint64_t n_params;         /* elements of all tensors */
    uint64_t weight_bytes;     /* bytes of all tensors */
    void *packed_map;          /* owned anonymous mapping of the packed matrices of a mapped
                                  file (repack.c), or NULL; packed_size bytes */
    size_t packed_size;
};

/* Read and validate hyper-parameters and weights from an open file into m (m->gguf set,
 * everything else zero). Used by slm_model_open and by tests. */
slm_status slm_model_load_weights(slm_model *m, char *err);

/* Repack every matrix this process's kernel set has a packed layout for (repack.c):
 * values never change, the products get faster. lock: mlock the new pages (best effort).
 * A model over a borrowed buffer stays as it is (SLM_OK). */
slm_status slm_model_repack(slm_model *m, bool lock, char *err);

/* ---- forward pass ------------------------------------------------------------------------- */

typedef struct slm_fwd slm_fwd; /* scratch of one context, sized once */

/* Scratch for batches of up to n_batch tokens over a cache of n_cells cells with
 * n_threads threads. *out is owned by the caller (slm_fwd_destroy). */
slm_status slm_fwd_create(const slm_model *m, int32_t n_batch, int64_t n_cells, slm_type kv_type,
                          int n_threads, slm_fwd **out, char *err);
void slm_fwd_destroy(slm_fwd *f); /* NULL allowed */
size_t slm_fwd_bytes(const slm_fwd *f); /* memory of the scratch */

/* Run n tokens (ids, positions, sequence ids; n <= n_batch) through the model: their K and
 * V go into kv (cells already allocated: cells[n]), and for the n_out tokens listed in
 * out_idx (indices into the batch) the logits are written to logits[n_out][n_vocab] (when
 * logits is not NULL) and the final normalised hidden states to hidden[n_out][n_embd]
 * (when hidden is not NULL: embeddings). pool may be NULL (single thread). */
slm_status slm_model_forward(const slm_model *m, slm_fwd *f, slm_kv *kv, slm_pool *pool, int32_t n,
                             const int32_t *tokens, const int32_t *pos, const int32_t *seq,
                             const int32_t *cells, int32_t n_out, const int32_t *out_idx, float *logits,
                             float *hidden, char *err);

#endif /* SLMESH_MODEL_MODEL_H */
