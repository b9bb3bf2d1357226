/*
 * bench/shape.c: random-weight models of real shapes for `slmesh bench --shape` (see
 * bench.h for the distribution and the vocabulary).
 *
 * Data flow: shape table -> tensor plan (names, shapes, types after the mixture rules, in
 * the reference quantizer's order) -> per tensor: rows generated and quantized on the pool
 * into a buffer -> GGUF writer (metadata, vocabulary, tensors) -> file.
 * Generator: splitmix64 seeded per (seed, tensor, row), two normals per 64 bits by
 * Box-Muller; rows are independent, so any thread count gives the same file.
 * Invariants: the plan and the build use the same list (a test checks the plan's sizes
 * against the reference's files of these shapes).
 * Thread-safety: reentrant. Non-goals: real vocabularies, rope scaling tables.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "core/core.h"
#include "gguf/gguf.h"

/* ---- shapes ---------------------------------------------------------------------------------- */

static const slm_bench_shape shapes[] = {
    {"smollm2-135m", "llama", 576, 30, 9, 3, 1536, 49152, false, 100000.0f, 1e-5f, 0.04f},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, true, 1000000.0f, 1e-6f, 0.03f},
    {"llama3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, false, 500000.0f, 1e-5f, 0.02f},
};

#define EMBD_SIGMA   0.5f  /* token embeddings (README) */
#define NORM_SPREAD  0.1f  /* norms are uniform in 1 +- this */
#define CTX_TRAIN    8192  /* context_length written: enough for pp512+tg128, small defaults */
#define N_SPECIAL    3     /* <unk>, <s>, </s> */
#define N_BYTE_TOK   256   /* <0x00> .. <0xFF> */

const slm_bench_shape *slm_bench_shape_find(const char *name) {
    for (size_t i = 0; name && i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(name, shapes[i].name)) return &shapes[i];
    return NULL;
}

const char *slm_bench_shape_list(void) { return "smollm2-135m|qwen2.5-0.5b|llama3.2-1b"; }

/* ---- plan -------------------------------------------------------------------------------------- */

typedef enum init_kind { INIT_WEIGHT, INIT_EMBD, INIT_NORM } init_kind;

/* The unquantized tensor list of a shape (model order). */
static int32_t shape_tensors(const slm_bench_shape *s, int32_t n_layer, slm_bench_tensor *t, init_kind *kind) {
    const int64_t e = s->n_embd, kv = (int64_t)s->n_head_kv * (s->n_embd / s->n_head);
    int32_t n = 0;
#define ADD(K, ND, A, B, ...)                                                               \
    do {                                                                                    \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);                                 \
        t[n].n_dims = (ND), t[n].ne[0] = (A), t[n].ne[1] = (B), t[n].type = SLM_TYPE_F32;   \
        kind[n++] = (K);                                                                    \
    } while (0)
    ADD(INIT_EMBD, 2, e, s->n_vocab, "token_embd.weight");
    ADD(INIT_NORM, 1, e, 1, "output_norm.weight");
    for (int32_t il = 0; il < n_layer; il++) {
        ADD(INIT_NORM, 1, e, 1, "blk.%d.attn_norm.weight", il);
        ADD(INIT_WEIGHT, 2, e, e, "blk.%d.attn_q.weight", il);
        ADD(INIT_WEIGHT, 2, e, kv, "blk.%d.attn_k.weight", il);
        ADD(INIT_WEIGHT, 2, e, kv, "blk.%d.attn_v.weight", il);
        if (s->qkv_bias) {
            ADD(INIT_WEIGHT, 1, e, 1, "blk.%d.attn_q.bias", il);
            ADD(INIT_WEIGHT, 1, kv, 1, "blk.%d.attn_k.bias", il);
            ADD(INIT_WEIGHT, 1, kv, 1, "blk.%d.attn_v.bias", il);
        }
        ADD(INIT_WEIGHT, 2, e, e, "blk.%d.attn_output.weight", il);
        ADD(INIT_NORM, 1, e, 1, "blk.%d.ffn_norm.weight", il);
        ADD(INIT_WEIGHT, 2, e, s->n_ff, "blk.%d.ffn_gate.weight", il);
        ADD(INIT_WEIGHT, 2, e, s->n_ff, "blk.%d.ffn_up.weight", il);
        ADD(INIT_WEIGHT, 2, s->n_ff, e, "blk.%d.ffn_down.weight", il);
    }
#undef ADD
    return n;
}

/* Plan into out (n entries, written order) and the initialisation kind of each entry. */
static slm_status plan(const slm_bench_shape *s, int32_t n_layer_override, slm_ftype ftype, slm_bench_tensor *out,
                       init_kind *kinds, int32_t *n_out, char *err) {
    const int32_t n_layer = n_layer_override > 0 ? n_layer_override : s->n_layer;
    if (n_layer > 256) return slm_errf(err, SLM_ERR_LIMIT, "%d layers (limit 256)", n_layer);
    slm_bench_tensor *raw = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *raw);
    init_kind *rk = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *rk);
    const char **names = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *names);
    size_t *order = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *order);
    slm_status st = SLM_OK;
    if (!raw || !rk || !names || !order) {
        st = slm_errf(err, SLM_ERR_NOMEM, "tensor plan");
        goto done;
    }
    const int32_t n = shape_tensors(s, n_layer, raw, rk);
    slm_quantize_chooser ch = {.ftype = ftype, .has_output = false, .n_layer = n_layer,
                               .n_gqa = s->n_head / s->n_head_kv, .n_attn_v = n_layer};
    for (int32_t i = 0; i < n; i++) names[i] = raw[i].name;
    slm_quantize_order(names, (size_t)n, order);
    for (int32_t k = 0; k < n; k++) {
        slm_bench_tensor t = raw[order[k]];
        size_t row;
        t.type = slm_quantize_choose(&ch, t.name, t.n_dims, t.ne, SLM_TYPE_F32);
        if (!slm_type_row_bytes(t.type, t.ne[0], &row)) {
            st = slm_errf(err, SLM_ERR_INTERNAL, "%s: no row size for %s", t.name, slm_type_name(t.type));
            goto done;
        }
        t.bytes = (uint64_t)row * (uint64_t)t.ne[1];
        out[k] = t;
        kinds[k] = rk[order[k]];
    }
    *n_out = n;
done:
    slm_free(raw), slm_free(rk), slm_free(names), slm_free(order);
    return st;
}

slm_status slm_bench_shape_plan(const slm_bench_shape *s, int32_t n_layer_override, slm_ftype ftype,
                                slm_bench_tensor *out, int32_t *n, uint64_t *bytes, uint64_t *params, char *err) {
    init_kind *kinds = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *kinds);
    if (!kinds) return slm_errf(err, SLM_ERR_NOMEM, "tensor plan");
    slm_status st = plan(s, n_layer_override, ftype, out, kinds, n, err);
    slm_free(kinds);
    if (st) return st;
    uint64_t b = 0, p = 0;
    for (int32_t i = 0; i < *n; i++) b += out[i].bytes, p += (uint64_t)(out[i].ne[0] * out[i].ne[1]);
    if (bytes) *bytes = b;
    if (params) *params = p;
    return SLM_OK;
}

/* ---- generator -------------------------------------------------------------------------------- */

typedef struct gen_ctx {
    uint64_t seed;      /* the model's seed mixed with the tensor index */
    int64_t n_per_row;
    init_kind kind;
    float sigma;
} gen_ctx;

static inline uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1] from 24 random bits. */
static inline float unit(uint32_t bits) { return (float)((bits >> 8) + 1) * (1.0f / 16777216.0f); }

/* One row: out[n_per_row] (a slm_quantize_row_fn). */
static void gen_row(void *arg, int64_t row, float *out) {
    const gen_ctx *g = arg;
    uint64_t x = g->seed ^ ((uint64_t)row * 0xD1B54A32D192ED03ull);
    const int64_t n = g->n_per_row;
    if (g->kind == INIT_NORM) {
        for (int64_t i = 0; i < n; i++) out[i] = 1.0f + NORM_SPREAD * (2.0f * unit((uint32_t)splitmix64(&x)) - 1.0f);
        return;
    }
    const float sigma = g->kind == INIT_EMBD ? EMBD_SIGMA : g->sigma;
    const float two_pi = 6.28318530717958647692f;
    for (int64_t i = 0; i < n; i += 2) { /* Box-Muller: two normals per 64 random bits */
        const uint64_t r = splitmix64(&x);
        const float rad = sigma * sqrtf(-2.0f * logf(unit((uint32_t)r)));
        const float ang = two_pi * unit((uint32_t)(r >> 32));
        out[i] = rad * cosf(ang);
        if (i + 1 < n) out[i + 1] = rad * sinf(ang);
    }
}

/* ---- vocabulary ------------------------------------------------------------------------------- */

/* A SentencePiece vocabulary of n tokens: texts (one arena), scores, types. */
static slm_status add_vocab(slm_gguf_writer *w, int32_t n, char *err) {
    char **texts = slm_calloc((size_t)n, sizeof *texts);
    float *scores = slm_calloc((size_t)n, sizeof *scores);
    int32_t *types = slm_calloc((size_t)n, sizeof *types);
    char *arena = slm_malloc((size_t)n * 16); /* every text below is < 16 bytes with its NUL */
    slm_status st = SLM_OK;
    if (!texts || !scores || !types || !arena || n < N_SPECIAL + N_BYTE_TOK) {
        st = slm_errf(err, texts && scores && types && arena ? SLM_ERR_INVALID_ARG : SLM_ERR_NOMEM, "vocabulary of %d", n);
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        char *t = arena + (size_t)i * 16;
        texts[i] = t;
        if (i < N_SPECIAL) {
            snprintf(t, 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            types[i] = i == 0 ? 2 : 3; /* unknown, control */
        } else if (i < N_SPECIAL + N_BYTE_TOK) {
            snprintf(t, 16, "<0x%02X>", i - N_SPECIAL);
            types[i] = 6; /* byte */
        } else {
            /* "\xe2\x96\x81" is SentencePiece's word-start mark */
            snprintf(t, 16, "%sw%d", (i & 1) ? "\xe2\x96\x81" : "", i);
            types[i] = 1; /* normal */
        }
        scores[i] = i < N_SPECIAL + N_BYTE_TOK ? 0.0f : -(float)i;
    }
    if ((st = slm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = slm_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)texts, (uint64_t)n)) ||
        (st = slm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SLM_GGUF_F32, scores, (uint64_t)n)) ||
        (st = slm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SLM_GGUF_I32, types, (uint64_t)n)) ||
        (st = slm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = slm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = slm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)))
        slm_errf(err, st, "vocabulary metadata");
done:
    slm_free(texts), slm_free(scores), slm_free(types), slm_free(arena);
    return st;
}

/* ---- build -------------------------------------------------------------------------------------- */

static slm_status add_meta(slm_gguf_writer *w, const slm_bench_shape *s, int32_t n_layer, slm_ftype ftype) {
    char key[96], name[96];
    slm_status st;
    snprintf(name, sizeof name, "%s-shape-%s (random weights)", s->name, slm_quantize_ftype_name(ftype));
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", s->arch, suffix), key)
    if ((st = slm_gguf_writer_set_str(w, "general.architecture", s->arch)) ||
        (st = slm_gguf_writer_set_str(w, "general.name", name)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("context_length"), CTX_TRAIN)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->n_embd)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)n_layer)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->n_ff)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv)) ||
        (st = slm_gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)(s->n_embd / s->n_head))) ||
        (st = slm_gguf_writer_set_f32(w, KEY("rope.freq_base"), s->rope_base)) ||
        (st = slm_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->rms_eps)) ||
        (st = slm_gguf_writer_set_u32(w, "general.quantization_version", 2)) ||
        (st = slm_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ftype)))
        return st;
#undef KEY
    return SLM_OK;
}

slm_status slm_bench_shape_build(const slm_bench_shape *s, int32_t n_layer_override, slm_ftype ftype, uint64_t seed,
                                 int32_t n_threads, const char *path, char *err) {
    slm_bench_tensor *t = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *t); /* owned */
    init_kind *kinds = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *kinds); /* owned */
    void **bufs = slm_calloc(SLM_BENCH_MAX_TENSORS, sizeof *bufs);      /* owned, each owned */
    slm_gguf_writer *w = NULL;
    slm_pool *pool = NULL;
    int32_t n = 0;
    slm_status st = SLM_OK;
    if (!t || !kinds || !bufs) {
        st = slm_errf(err, SLM_ERR_NOMEM, "tensor tables");
        goto done;
    }
    const int32_t n_layer = n_layer_override > 0 ? n_layer_override : s->n_layer;
    if ((st = plan(s, n_layer_override, ftype, t, kinds, &n, err))) goto done;
    if ((st = slm_pool_create(n_threads > 0 ? n_threads : slm_pool_default_threads(), &pool, err))) goto done;
    if ((st = slm_gguf_writer_create(&w)) || (st = add_meta(w, s, n_layer, ftype))) {
        slm_errf(err, st, "metadata");
        goto done;
    }
    if ((st = add_vocab(w, s->n_vocab, err))) goto done;
    for (int32_t k = 0; k < n; k++) {
        bufs[k] = slm_malloc(t[k].bytes ? (size_t)t[k].bytes : 1);
        if (!bufs[k]) {
            st = slm_errf(err, SLM_ERR_NOMEM, "%s: %llu bytes", t[k].name, (unsigned long long)t[k].bytes);
            goto done;
        }
        /* the tensor's stream depends on its name's position in the model, not on k */
        uint64_t h = seed ^ 0x6A09E667F3BCC909ull;
        for (const char *c = t[k].name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001B3ull;
        gen_ctx g = {h, t[k].ne[0], kinds[k], s->sigma};
        if ((st = slm_quantize_rows(pool, gen_row, &g, t[k].ne[1], t[k].ne[0], t[k].type, bufs[k], err))) goto done;
        if ((st = slm_gguf_writer_add_tensor(w, t[k].name, t[k].type, t[k].n_dims, t[k].ne, bufs[k], (size_t)t[k].bytes,
                                             err)))
            goto done;
    }
    st = slm_gguf_writer_write(w, path, err);
done:
    if (bufs)
        for (int32_t k = 0; k < n; k++) slm_free(bufs[k]);
    slm_free(bufs), slm_free(kinds), slm_free(t);
    slm_gguf_writer_destroy(w);
    slm_pool_destroy(pool);
    return st;
}
