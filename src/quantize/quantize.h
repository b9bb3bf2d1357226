/*
 * quantize/quantize.h: convert a model's weights to another type, as the reference
 * runtime's quantize tool does: `slmesh quantize` (file to file) and the random-weight
 * benchmark models of `slmesh bench --shape` (built in memory) use it.
 *
 * Three parts, in data-flow order:
 *  1. File types (the reference's llama_ftype numbers, stored as general.file_type) and
 *     their names ("Q4_K_M"; "Q3_K", "Q4_K", "Q5_K" are the reference tool's aliases of the
 *     _M mixtures).
 *  2. The per-tensor type choice (slm_quantize_chooser): which tensors are quantized at
 *     all (2-D or more, named *weight, not a norm, ...), and the mixture rules of the
 *     reference build 4748 (llama_tensor_get_type): output.weight (or token_embd.weight when
 *     the output is tied) gets Q6_K, or Q8_0 when its rows are not a multiple of 256;
 *     attn_v and ffn_down get more bits in chosen layers (use_more_bits); a K type on rows
 *     that are not a multiple of 256 falls back to IQ4_NL/Q5_0/Q5_1/Q8_0 (F16 if even that
 *     does not divide). The rules count attn_v/ffn_down tensors in the order the reference
 *     processes them (slm_quantize_order: non-layer tensors by name, then layer by layer,
 *     by name inside a layer), so tensors must be presented in that order.
 *  3. Conversion (slm_quantize_rows): rows from any row source (a tensor of any readable
 *     type, or a generator) to the target type with the reference quantizers of quant/,
 *     split over a thread pool by rows (results do not depend on the thread count).
 *  slm_quantize_file ties them together: read a GGUF, write a GGUF with the same metadata
 *  (general.file_type and general.quantization_version set) and converted tensors.
 *
 * Thread-safety: a chooser is used by one thread; slm_quantize_rows calls the row source
 * from every pool thread at once (it must be reentrant). Non-goals: importance matrices,
 * the IQ1/IQ2/IQ3 mixtures, MoE rules, the 70B attn_v rule, streaming output (converted
 * tensors are held in memory until the file is written; the input is mapped).
 */
#ifndef SLMESH_QUANTIZE_H
#define SLMESH_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool/pool.h"
#include "quant/quant.h"
#include "slmesh/status.h"

/* ---- file types ---------------------------------------------------------------------------- */

/* The reference's llama_ftype values (general.file_type). Gaps are retired values. */
typedef enum slm_ftype {
    SLM_FTYPE_ALL_F32 = 0,
    SLM_FTYPE_MOSTLY_F16 = 1,
    SLM_FTYPE_MOSTLY_Q4_0 = 2,
    SLM_FTYPE_MOSTLY_Q4_1 = 3,
    SLM_FTYPE_MOSTLY_Q8_0 = 7,
    SLM_FTYPE_MOSTLY_Q5_0 = 8,
    SLM_FTYPE_MOSTLY_Q5_1 = 9,
    SLM_FTYPE_MOSTLY_Q2_K = 10,
    SLM_FTYPE_MOSTLY_Q3_K_S = 11,
    SLM_FTYPE_MOSTLY_Q3_K_M = 12,
    SLM_FTYPE_MOSTLY_Q3_K_L = 13,
    SLM_FTYPE_MOSTLY_Q4_K_S = 14,
    SLM_FTYPE_MOSTLY_Q4_K_M = 15,
    SLM_FTYPE_MOSTLY_Q5_K_S = 16,
    SLM_FTYPE_MOSTLY_Q5_K_M = 17,
    SLM_FTYPE_MOSTLY_Q6_K = 18,
    SLM_FTYPE_MOSTLY_BF16 = 32,
} slm_ftype;

/* Look up a file type by the reference tool's name, case-insensitive ("q4_k_m", "Q8_0",
 * "Q4_K" = Q4_K_M); false when unknown or not one slmesh produces. */
bool slm_quantize_ftype_from_name(const char *name, slm_ftype *out);
/* Canonical name ("Q4_K_M"), or "unknown". Static storage. */
const char *slm_quantize_ftype_name(slm_ftype ftype);
/* The type most weights get under ftype (Q4_K for Q4_K_M). */
slm_type slm_quantize_ftype_default_type(slm_ftype ftype);
/* Names accepted by slm_quantize_ftype_from_name, comma-separated (for usage texts). */
const char *slm_quantize_ftype_list(void);

/* ---- per-tensor type choice ---------------------------------------------------------------- */

/* Order tensor names as the reference processes them: names without a "blk.N." prefix
 * first, then by layer number, by strcmp inside the same layer. Sorts idx[0..n) (indices
 * into names). */
void slm_quantize_order(const char *const *names, size_t n, size_t *idx);

typedef struct slm_quantize_chooser {
    slm_ftype ftype;       /* the mixture */
    bool pure;             /* every quantized tensor gets the default type (--pure) */
    bool has_output;       /* the model has output.weight (else token_embd is the output) */
    int32_t n_layer;       /* transformer blocks (arch.block_count) */
    int32_t n_gqa;         /* n_head / n_head_kv (1 when unknown) */
    int32_t n_attn_v;      /* tensors named *attn_v.weight / attn_qkv / attn_kv_b */
    int32_t i_attn_v;      /* counters, advanced by slm_quantize_choose */
    int32_t i_ffn_down;
    int32_t n_fallback;    /* tensors that got a fallback type (rows not a multiple of 256) */
} slm_quantize_chooser;

/* Does the reference quantize this tensor at all (2-D or more, named *weight, no norm,
 * not a positional/expert-gate table)? */
bool slm_quantize_wanted(const char *name, uint32_t n_dims);

/* The type for a tensor of n_dims dimensions, ne[0] elements per row, currently src_type.
 * Call once per tensor, in slm_quantize_order order (the counters advance). Returns
 * src_type for tensors that are not quantized. */
slm_type slm_quantize_choose(slm_quantize_chooser *c, const char *name, uint32_t n_dims, const int64_t *ne,
                             slm_type src_type);

/* ---- conversion ------------------------------------------------------------------------------ */

/* A row source: write row `row` (n_per_row floats) into out. Called from several threads
 * at once with distinct rows. */
typedef void (*slm_quantize_row_fn)(void *ctx, int64_t row, float *out);

/* Convert n_rows rows of n_per_row elements from src (called per row) into dst (n_rows *
 * row bytes of dst_type, caller's buffer) on pool (NULL = the calling thread). dst_type
 * must have a from_float and n_per_row must be a multiple of its block size. */
slm_status slm_quantize_rows(slm_pool *pool, slm_quantize_row_fn src, void *src_ctx, int64_t n_rows,
                             int64_t n_per_row, slm_type dst_type, void *dst, char *err);

/* A row source over a tensor's bytes of any type with a to_float (F32/F16/BF16 and the
 * quantized types). Fill it and pass slm_quantize_tensor_row with it as the context. */
typedef struct slm_quantize_tensor_src {
    const void *data;      /* first row (borrowed) */
    slm_type type;         /* its type */
    size_t row_bytes;      /* bytes per row */
    int64_t n_per_row;     /* elements per row */
} slm_quantize_tensor_src;
void slm_quantize_tensor_row(void *ctx, int64_t row, float *out);

/* ---- files ------------------------------------------------------------------------------------ */

#define SLM_QUANTIZE_MAX_LAYERS 4096 /* block_count accepted from a file (real models < 200) */

typedef struct slm_quantize_params {
    slm_ftype ftype;          /* target mixture */
    bool pure;                /* no mixture rules: every quantized tensor in the default type */
    bool allow_requantize;    /* accept quantized inputs (dequantized first; loses accuracy) */
    int32_t n_threads;        /* 0 = physical cores */
} slm_quantize_params;

typedef struct slm_quantize_stats {
    int64_t n_tensors;        /* tensors written */
    int64_t n_converted;      /* tensors whose type changed */
    int32_t n_fallback;       /* tensors that got a fallback type */
    uint64_t bytes_in;        /* tensor bytes read */
    uint64_t bytes_out;       /* tensor bytes written */
    int64_t n_of_type[SLM_TYPE_COUNT]; /* output tensors per type */
} slm_quantize_stats;

/* Quantize the model at in_path into out_path (written atomically). stats may be NULL.
 * SLM_ERR_UNSUPPORTED for a quantized input without allow_requantize or a type that has no
 * conversion. */
slm_status slm_quantize_file(const char *in_path, const char *out_path, const slm_quantize_params *p,
                             slm_quantize_stats *stats, char *err);

#endif /* SLMESH_QUANTIZE_H */
