/*
 * slmesh/slmesh.h: the public engine API: load a GGUF model, create contexts over it,
 * decode batches of tokens for several sequences, read logits, manage each sequence's KV
 * cache, and generate text with per-token log-probabilities.
 *
 * Handles are opaque. Ownership:
 *  - slm_model_open gives the caller a model; close it with slm_model_close after every
 *    context created from it is destroyed. A model is immutable: any number of threads and
 *    contexts may use it at once.
 *  - slm_ctx_create gives the caller a context borrowing the model. A context (its KV cache,
 *    scratch, thread pool and last logits) is used by one thread at a time: the API is
 *    synchronous; the server owns its own threads and I/O.
 *  - Pointers returned by accessors (logits, names) are borrowed from the handle and stay
 *    valid as documented at each function.
 * Every fallible call returns a slm_status and writes a one-line detail into err (may be
 * NULL, SLM_ERR_LEN bytes). Non-goals here: HTTP, JSON, routing. Structured output: a
 * grammar (slmesh/grammar.h) in slm_gen_params constrains generation; slm_ctx_classify
 * scores labels.
 */
#ifndef SLMESH_SLMESH_H
#define SLMESH_SLMESH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- models ---------------------------------------------------------------------------- */

typedef struct slm_model slm_model;

typedef struct slm_model_params {
    bool no_mmap; /* read the file into memory instead of mapping it */
    bool mlock;   /* lock the weights in memory (best effort) */
    bool no_repack; /* keep the file's weight layout (default: repack at load for this CPU's kernels) */
} slm_model_params;

/* Open, validate and prepare a model (architecture, hyper-parameters, every tensor's type
 * and shape, tokenizer). params may be NULL (defaults). *out is owned by the caller. */
slm_status slm_model_open(const char *path, const slm_model_params *params, slm_model **out, char *err);
void slm_model_close(slm_model *m); /* NULL allowed */

/* How a sequence's hidden states become one embedding (<arch>.pooling_type in the file, the
 * reference runtime's numbering). Absent, or "none" (per-token vectors, which slmesh does not
 * return), means MEAN: the usual choice for decoder models. */
typedef enum slm_pooling {
    SLM_POOLING_MEAN = 1, /* average over the tokens */
    SLM_POOLING_CLS = 2,  /* the first token's state */
    SLM_POOLING_LAST = 3, /* the last token's state (decoder embedding models such as Qwen3-Embedding) */
    SLM_POOLING_RANK = 4, /* reranker heads: not supported for embeddings (SLM_ERR_UNSUPPORTED) */
} slm_pooling;

typedef struct slm_model_desc {
    const char *arch;     /* general.architecture ("llama", "qwen2"); borrowed from the model */
    const char *name;     /* general.name or "" ; borrowed */
    const char *ftype;    /* the most common weight type of the 2-D tensors ("q4_k"); static */
    int32_t n_vocab;      /* rows of the output matrix */
    int32_t n_ctx_train;  /* context length the model was trained with */
    int32_t n_embd;       /* hidden size */
    int32_t n_layer;      /* transformer blocks */
    int32_t n_head;       /* query heads */
    int32_t n_head_kv;    /* key/value heads (GQA when < n_head) */
    int32_t n_ff;         /* feed-forward width */
    int32_t head_dim;     /* values per head */
    float rope_base;      /* RoPE frequency base */
    float rms_eps;        /* RMSNorm epsilon */
    uint64_t n_params;    /* weights (elements of every tensor) */
    uint64_t weight_bytes;/* bytes of tensor data */
    slm_pooling pooling;  /* embedding pooling from the file (MEAN when absent) */
} slm_model_desc;

/* Describe the model; the strings are borrowed from m. */
void slm_model_describe(const slm_model *m, slm_model_desc *out);

/* A string metadata value of the model file (e.g. "tokenizer.chat_template"): *ptr (not
 * NUL-terminated, borrowed from m) and *len. SLM_ERR_NOT_FOUND when absent or not a string. */
slm_status slm_model_meta_str(const slm_model *m, const char *key, const char **ptr, size_t *len);

/* ---- tokens ---------------------------------------------------------------------------- */

enum {
    SLM_TOKENIZE_ADD_BOS = 1 << 0,       /* prepend BOS when the model's vocabulary adds one */
    SLM_TOKENIZE_PARSE_SPECIAL = 1 << 2, /* recognise control tokens in the text (templates) */
};

/* Tokenize len bytes. Writes up to cap ids, the total count into *n; SLM_ERR_FULL when cap
 * is too small (call again with *n). */
slm_status slm_model_tokenize(const slm_model *m, const char *text, size_t len, int flags, int32_t *ids,
                              size_t cap, size_t *n, char *err);
/* Bytes of one token (may be part of a UTF-8 character): up to cap written, total returned. */
size_t slm_model_token_piece(const slm_model *m, int32_t id, char *buf, size_t cap);
/* Detokenize a sequence; same buffer protocol. */
size_t slm_model_detokenize(const slm_model *m, const int32_t *ids, size_t n, char *buf, size_t cap);
int32_t slm_model_bos(const slm_model *m);  /* -1 when none */
int32_t slm_model_eos(const slm_model *m);  /* -1 when none */
bool slm_model_is_eog(const slm_model *m, int32_t id);

/* ---- contexts --------------------------------------------------------------------------- */

typedef struct slm_ctx slm_ctx;

typedef enum slm_cache_type { SLM_CACHE_F16 = 0, SLM_CACHE_F32, SLM_CACHE_Q8_0 } slm_cache_type;

#define SLM_CTX_MAX_BATCH 8192 /* tokens per decode call */

typedef struct slm_ctx_params {
    int32_t n_ctx;       /* KV cells shared by all sequences; 0 = the model's n_ctx_train */
    int32_t n_batch;     /* most tokens per slm_ctx_decode call; 0 = 512 */
    int32_t n_seq_max;   /* sequence ids in [0, n_seq_max); 0 = 1; at most 64 */
    slm_cache_type kv_type; /* SLM_CACHE_F16 (default, as the reference runtime) */
    int32_t n_threads;   /* 0 = the number of physical cores */
} slm_ctx_params;

/* Create a context over m (borrowed: it must outlive the context). params may be NULL. */
slm_status slm_ctx_create(const slm_model *m, const slm_ctx_params *params, slm_ctx **out, char *err);
void slm_ctx_destroy(slm_ctx *c); /* NULL allowed */
const slm_model *slm_ctx_model(const slm_ctx *c);
int32_t slm_ctx_n_ctx(const slm_ctx *c);

/* A batch of tokens, all arrays of n_tokens, borrowed for the call. Every token belongs to
 * one sequence; a token attends to its sequence's cached positions <= its own position
 * (including earlier tokens of this batch). logits may be NULL: then only the last token's
 * logits are computed. */
typedef struct slm_batch {
    int32_t n_tokens;      /* 1..n_batch */
    const int32_t *token;  /* token ids */
    const int32_t *pos;    /* positions */
    const int32_t *seq_id; /* sequence ids */
    const bool *logits;    /* compute logits for this token? */
} slm_batch;

/* Run the model over the batch, appending its tokens to the KV cache. On error the cache
 * is left as it was. SLM_ERR_FULL when the cache lacks room. */
slm_status slm_ctx_decode(slm_ctx *c, const slm_batch *b, char *err);

/* Logits (n_vocab floats) of token i of the last decoded batch, or NULL when it did not ask
 * for them. Valid until the next decode or destroy. */
const float *slm_ctx_logits(const slm_ctx *c, int32_t i);

/* KV sequence operations. Cells are shared between sequences: seq_cp makes src's positions
 * [p0, p1) visible to dst without copying (a shared prompt prefix is stored once); dst
 * should hold nothing in that range (remove it first), or it would see both. */
slm_status slm_ctx_seq_rm(slm_ctx *c, int32_t seq, int32_t p0, int32_t p1, char *err); /* [p0,p1); <0 = open */
slm_status slm_ctx_seq_cp(slm_ctx *c, int32_t src, int32_t dst, int32_t p0, int32_t p1, char *err);
int32_t slm_ctx_seq_pos_max(const slm_ctx *c, int32_t seq); /* -1 when empty */
void slm_ctx_clear(slm_ctx *c);

/* What a context has done and holds (for metrics). */
typedef struct slm_ctx_stats {
    uint64_t n_decode;      /* successful slm_ctx_decode calls (generation and embeddings included) */
    uint64_t n_tokens;      /* tokens evaluated by them */
    uint64_t n_outputs;     /* rows of logits computed */
    double decode_ms;       /* wall time spent in them */
    int64_t kv_used;        /* KV cells in use now */
    int32_t kv_cells;       /* KV cells in all */
    size_t kv_bytes;        /* K and V storage */
    size_t scratch_bytes;   /* forward-pass scratch and logits buffer */
} slm_ctx_stats;

void slm_ctx_get_stats(const slm_ctx *c, slm_ctx_stats *out);

/* ---- label scoring ------------------------------------------------------------------------ */

#define SLM_CTX_MAX_LABELS 4096 /* labels per call; banking77 has 77 intents */

/* Evaluate prompt[n_prompt] (n_prompt >= 1) as the continuation of sequence seq, then the
 * natural log-probability of each label (labels[i]: n_label[i] tokens, 1..n_batch) as its
 * continuation: logprobs[i] = sum over the label's tokens of log p(token | prompt, earlier
 * label tokens). Afterwards seq holds the prompt (the labels are removed again); the last
 * logits are invalidated. All arrays are borrowed for the call. */
slm_status slm_ctx_score_labels(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                                const int32_t *const *labels, const size_t *n_label, int32_t n_labels,
                                float *logprobs, char *err);

/* ---- embeddings -------------------------------------------------------------------------- */

/* Values per embedding (the model's hidden size). */
int32_t slm_ctx_n_embd(const slm_ctx *c);

/* The embedding of tokens[n] (1 <= n <= n_ctx): evaluated as sequence seq from position 0
 * (seq's cache is cleared before and after; other sequences are untouched), the final
 * normalised hidden states pooled as the model says (slm_model_desc.pooling: mean, first or
 * last token) and L2-normalised into out[slm_ctx_n_embd] (caller's buffer). Invalidates the
 * last logits. SLM_ERR_UNSUPPORTED for a reranker (RANK pooling). */
slm_status slm_ctx_embed(slm_ctx *c, int32_t seq, const int32_t *tokens, size_t n, float *out, char *err);

/* ---- generation ------------------------------------------------------------------------- */

#define SLM_GEN_MAX_TOP   20  /* alternatives reported per token */
#define SLM_GEN_MAX_STOP  16  /* stop strings */

typedef struct slm_sampling {
    float temperature;       /* >= 0; 0 = greedy (argmax, lowest id on ties) */
    int32_t top_k;           /* >= 0; 0 = off */
    float top_p;             /* (0, 1]; 1 = off */
    float min_p;             /* [0, 1]; 0 = off */
    float repeat_penalty;    /* > 0; 1 = off */
    int32_t repeat_last_n;   /* tokens the penalties look back over (prompt included); 0 = off */
    float frequency_penalty; /* 0 = off */
    float presence_penalty;  /* 0 = off */
    uint64_t seed;           /* PRNG seed: the same seed and inputs give the same tokens */
} slm_sampling;

/* The usual defaults of the llama.cpp tools: temperature 0.8, top_k 40, top_p 0.95, min_p
 * 0.05, no penalties (repeat_last_n 64), seed 0. */
slm_sampling slm_sampling_default(void);

typedef struct slm_token_prob {
    int32_t id;       /* token */
    float logprob;    /* natural log-probability under the model (before sampling filters) */
} slm_token_prob;

/* One generated token, given to the callback. All pointers are valid during the call only.
 * text is what may be shown now: the text held back while it could be the start of a stop
 * string or ends inside a UTF-8 character is released by later tokens, so concatenating
 * every call's text gives the whole output, without the stop string. After the last token,
 * held text that turned out not to be a stop string is delivered by one more call with
 * id = -1 (no token; logprob, entropy and top are then empty). */
typedef struct slm_gen_token {
    int32_t id;                 /* the token, or -1 for the final flush */
    const char *piece;          /* the token's own bytes (may be part of a UTF-8 character) */
    size_t piece_len;           /* bytes */
    const char *text;           /* bytes to emit now (see above); NULL when text_len == 0 */
    size_t text_len;            /* bytes */
    float logprob;              /* log-probability of id under the model's distribution */
    float entropy;              /* entropy (nats) of that distribution */
    int32_t n_top;              /* entries in top */
    const slm_token_prob *top;  /* the n_top most likely tokens, best first */
} slm_gen_token;

/* Return false to stop generation (reported as SLM_GEN_STOP_CALLBACK). */
typedef bool (*slm_gen_cb)(const slm_gen_token *tok, void *user);

typedef enum slm_gen_stop {
    SLM_GEN_STOP_NONE = 0,  /* not stopped (error) */
    SLM_GEN_STOP_EOG,       /* the model produced an end-of-generation token */
    SLM_GEN_STOP_LENGTH,    /* max_tokens reached */
    SLM_GEN_STOP_STRING,    /* a stop string appeared */
    SLM_GEN_STOP_CALLBACK,  /* the callback returned false */
    SLM_GEN_STOP_CANCEL,    /* the cancel flag was set */
    SLM_GEN_STOP_CONTEXT,   /* the context is full */
    SLM_GEN_STOP_GRAMMAR,   /* the grammar is complete and allows nothing more (a "stop") */
} slm_gen_stop;

typedef struct slm_grammar slm_grammar; /* slmesh/grammar.h */

typedef struct slm_gen_params {
    int32_t max_tokens;          /* tokens to generate at most (> 0) */
    slm_sampling sampling;       /* how to choose each token */
    int32_t n_top;               /* alternatives per token, 0..SLM_GEN_MAX_TOP */
    const char *const *stop;     /* n_stop NUL-terminated stop strings (borrowed), may be NULL */
    int32_t n_stop;              /* 0..SLM_GEN_MAX_STOP */
    const atomic_bool *cancel;   /* checked before every step; may be NULL */
    slm_grammar *grammar;        /* may be NULL; borrowed for the call (retained inside). Only
                                    tokens that keep the output a valid prefix are sampled;
                                    end-of-generation only where the grammar is complete;
                                    generation stops (SLM_GEN_STOP_GRAMMAR) once the grammar
                                    is complete and allows no more bytes. An output cut by
                                    max_tokens (SLM_GEN_STOP_LENGTH) is incomplete. */
} slm_gen_params;

typedef struct slm_gen_result {
    slm_gen_stop stop;      /* why generation ended */
    int32_t n_prompt;       /* prompt tokens evaluated */
    int32_t n_generated;    /* tokens given to the callback */
    double prompt_ms;       /* wall time of prompt evaluation */
    double gen_ms;          /* wall time of generation */
} slm_gen_result;

/* Evaluate prompt[n_prompt] (n_prompt >= 1) as the continuation of sequence seq (positions
 * after what seq already holds), then sample up to max_tokens tokens, calling cb for each
 * (cb may be NULL). Stops on an end-of-generation token (not delivered), max_tokens, a stop
 * string (never delivered, see slm_gen_token), cb returning false, *cancel, or a full
 * context; res (may be NULL) says which. Afterwards the KV cache of seq holds the prompt
 * and every delivered token but the last (its logits were never needed). Allocates only
 * per call (sampler, stop detector, batch arrays), never per token. */
slm_status slm_ctx_generate(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                            const slm_gen_params *p, slm_gen_cb cb, void *user, slm_gen_result *res,
                            char *err);

/* ---- classification ----------------------------------------------------------------------- */

#define SLM_CLASSIFY_MAX_LABEL_TOKENS 256 /* tokens of one label */

/* Label scoring over text labels, normalised: labels[n_labels] (NUL-terminated UTF-8,
 * borrowed; 1..SLM_CTX_MAX_LABELS) are tokenized without BOS (include the leading space the
 * model expects) and scored by slm_ctx_score_labels as continuations of prompt[n_prompt] in
 * sequence seq (the prompt is evaluated once; every label is evaluated on top of its KV
 * cells and removed again). logprob[i] (may be NULL) = the label's summed natural
 * log-probability; prob[i] (may be NULL) = exp(logprob[i]) normalised over the labels.
 * Afterwards seq holds the prompt; the last logits are invalidated. */
slm_status slm_ctx_classify(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                            const char *const *labels, size_t n_labels, double *logprob, double *prob, char *err);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_SLMESH_H */
