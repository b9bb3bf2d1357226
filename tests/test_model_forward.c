/*
 * tests/test_model_forward.c: properties of the forward pass and the KV cache on the real
 * tiny models of ../shared: batched prompt == token-by-token decode, results independent
 * of the thread count, independent sequences in one batch, prefix sharing (seq_cp), seq_rm,
 * F32/Q8_0 caches, error paths (bad ids, full cache, allocation failures).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "model/model.h"
#include "quant/kernels.h"
#include "slmesh/slmesh.h"

/* Batched and token-by-token evaluation must agree to this relative tolerance (the brief;
 * in fact they are computed identically and agree bit for bit). */
#define BATCH_REL_TOL 1e-5
/* A different KV storage type (F32 or Q8_0 instead of F16) moves log-probabilities by at
 * most this on the tiny F32 model (the README's quantized-column difference bound). */
#define KV_TYPE_MAX_DIFF 0.5

#define N_PROMPT 12
static const int32_t prompt[N_PROMPT] = {1, 403, 407, 261, 378, 429, 438, 275, 261, 3, 300, 271};

static slm_model *open_tiny(const char *rel) {
    char path[1024], err[SLM_ERR_LEN];
    if (!tu_shared_path(path, sizeof path, rel)) return NULL;
    slm_model *m = NULL;
    slm_status st = slm_model_open(path, NULL, &m, err);
    if (st) fprintf(stderr, "%s: %s\n", rel, err);
    assert_int_equal(st, SLM_OK);
    return m;
}

static slm_ctx *new_ctx(const slm_model *m, int n_threads, slm_cache_type kv, int n_seq) {
    slm_ctx_params p = {.n_ctx = 64, .n_batch = 32, .n_seq_max = n_seq, .kv_type = kv, .n_threads = n_threads};
    slm_ctx *c = NULL;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_create(m, &p, &c, err), SLM_OK);
    return c;
}

/* Decode tokens[n] of seq from position p0 in one batch; copy every row's logits to out. */
static void decode_all(slm_ctx *c, const int32_t *tokens, int n, int32_t p0, int32_t seq, float *out, int n_vocab) {
    int32_t pos[64], sq[64];
    bool want[64];
    for (int i = 0; i < n; i++) pos[i] = p0 + i, sq[i] = seq, want[i] = true;
    slm_batch b = {.n_tokens = n, .token = tokens, .pos = pos, .seq_id = sq, .logits = want};
    char err[SLM_ERR_LEN];
    slm_status st = slm_ctx_decode(c, &b, err);
    if (st) fprintf(stderr, "decode: %s\n", err);
    assert_int_equal(st, SLM_OK);
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * n_vocab, slm_ctx_logits(c, i), (size_t)n_vocab * sizeof(float));
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-6);
        if (d > worst) worst = d;
    }
    return worst;
}

static void batch_vs_single(const char *rel) {
    slm_model *m = open_tiny(rel);
    if (!m) skip();
    slm_model_desc d;
    slm_model_describe(m, &d);
    const size_t nv = (size_t)d.n_vocab;
    float *batch = malloc(N_PROMPT * nv * sizeof(float)), *single = malloc(N_PROMPT * nv * sizeof(float));
    float *threads3 = malloc(N_PROMPT * nv * sizeof(float));
    assert_true(batch && single && threads3);

    slm_ctx *c = new_ctx(m, 1, SLM_CACHE_F16, 1);
    decode_all(c, prompt, N_PROMPT, 0, 0, batch, d.n_vocab);
    slm_ctx_destroy(c);

    c = new_ctx(m, 2, SLM_CACHE_F16, 1);
    for (int i = 0; i < N_PROMPT; i++) decode_all(c, prompt + i, 1, i, 0, single + i * nv, d.n_vocab);
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), N_PROMPT - 1);
    slm_ctx_destroy(c);
    assert_true(max_rel_diff(single, batch, N_PROMPT * nv) <= BATCH_REL_TOL);
    assert_memory_equal(single, batch, N_PROMPT * nv * sizeof(float)); /* in fact bit for bit */

    /* batches of 3 on 2 threads: the replicated per-token steps (forward.c) give the same bits */
    c = new_ctx(m, 2, SLM_CACHE_F16, 1);
    for (int i = 0; i < N_PROMPT; i += 3) decode_all(c, prompt + i, 3, i, 0, single + i * nv, d.n_vocab);
    slm_ctx_destroy(c);
    assert_memory_equal(single, batch, N_PROMPT * nv * sizeof(float));

    c = new_ctx(m, 3, SLM_CACHE_F16, 1);
    decode_all(c, prompt, N_PROMPT, 0, 0, threads3, d.n_vocab);
    slm_ctx_destroy(c);
    assert_memory_equal(threads3, batch, N_PROMPT * nv * sizeof(float)); /* thread count: bit-identical */

    free(batch), free(single), free(threads3);
    slm_model_close(m);
}

/* Repacking at load (model/repack.c) changes no value: logits of a batch and of
 * token-by-token decoding equal those of the file's layout bit for bit, mapped or read. */
static void repack_same(const char *rel, bool no_mmap) {
    char path[1024], err[SLM_ERR_LEN];
    if (!tu_shared_path(path, sizeof path, rel)) skip();
    slm_model *plain = NULL, *packed = NULL;
    slm_model_params pp = {.no_repack = true}, pk = {.no_mmap = no_mmap};
    assert_int_equal(slm_model_open(path, &pp, &plain, err), SLM_OK);
    assert_int_equal(slm_model_open(path, &pk, &packed, err), SLM_OK);
    assert_false(plain->layers[0].wq.packed);
    const slm_type t = packed->layers[0].wq.type;
    assert_int_equal(packed->layers[0].wq.packed, slm_quant_kernels()->pack[t] != NULL); /* 8+ rows in every tiny matrix */
    if (packed->tok_embd.data == packed->output.data) /* tied: the lookup reads the packed output */
        assert_int_equal(packed->tok_embd.packed, packed->output.packed);
    slm_model_desc d;
    slm_model_describe(plain, &d);
    const size_t nv = (size_t)d.n_vocab;
    float *a = malloc(N_PROMPT * nv * sizeof(float)), *b = malloc(N_PROMPT * nv * sizeof(float));
    assert_true(a && b);
    slm_ctx *c = new_ctx(plain, 2, SLM_CACHE_F16, 1);
    decode_all(c, prompt, N_PROMPT, 0, 0, a, d.n_vocab);
    slm_ctx_destroy(c);
    c = new_ctx(packed, 2, SLM_CACHE_F16, 1);
    decode_all(c, prompt, N_PROMPT, 0, 0, b, d.n_vocab);
    slm_ctx_destroy(c);
    assert_memory_equal(a, b, N_PROMPT * nv * sizeof(float));
    c = new_ctx(packed, 1, SLM_CACHE_F16, 1);
    for (int i = 0; i < N_PROMPT; i++) decode_all(c, prompt + i, 1, i, 0, b + i * nv, d.n_vocab);
    slm_ctx_destroy(c);
    assert_memory_equal(a, b, N_PROMPT * nv * sizeof(float));
    free(a), free(b);
    slm_model_close(plain);
    slm_model_close(packed);
}

static void test_repack_same_logits(void **state) {
    (void)state;
    static const char *const files[] = {
        "models/tiny/tiny-llama-q8_0.gguf",   "models/tiny/tiny-llama-q4_0.gguf",   "models/tiny/tiny-llama-q5_0.gguf",
        "models/tiny/tiny-llama-iq4_nl.gguf", "models/tiny/tiny-llama-q4_k.gguf",   "models/tiny/tiny-llama-q6_k.gguf",
        "models/tiny/tiny-llama-q4_k_m.gguf", "models/tiny/tiny-qwen2-q4_k_m.gguf", "models/tiny/tiny-qwen2-q8_0.gguf",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) repack_same(files[i], false);
    repack_same("models/tiny/tiny-llama-q8_0.gguf", true); /* read into memory: packed in its buffer */
}

static void test_batch_vs_single_llama(void **state) { (void)state; batch_vs_single("models/tiny/tiny-llama-f32.gguf"); }
static void test_batch_vs_single_qwen2(void **state) { (void)state; batch_vs_single("models/tiny/tiny-qwen2-q8_0.gguf"); }

/* Two sequences interleaved in one batch give each the logits it gets alone; a shared
 * prefix (seq_cp) gives the logits of the full prompt; seq_rm and re-decode reproduce. */
static void test_sequences(void **state) {
    (void)state;
    slm_model *m = open_tiny("models/tiny/tiny-llama-f32.gguf");
    if (!m) skip();
    slm_model_desc d;
    slm_model_describe(m, &d);
    const size_t nv = (size_t)d.n_vocab;
    const int half = N_PROMPT / 2;
    float *alone = malloc(N_PROMPT * nv * sizeof(float)), *got = malloc(N_PROMPT * nv * sizeof(float));
    assert_true(alone && got);
    slm_ctx *c = new_ctx(m, 2, SLM_CACHE_F16, 4);
    decode_all(c, prompt, N_PROMPT, 0, 0, alone, d.n_vocab);

    /* interleave: seq 1 gets the prompt, seq 2 gets the same prompt, token by token alternating */
    int32_t tok[2 * N_PROMPT], pos[2 * N_PROMPT], sq[2 * N_PROMPT];
    bool want[2 * N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++)
        for (int s = 0; s < 2; s++) {
            tok[2 * i + s] = prompt[i], pos[2 * i + s] = i, sq[2 * i + s] = 1 + s, want[2 * i + s] = true;
        }
    slm_batch b = {.n_tokens = 2 * N_PROMPT, .token = tok, .pos = pos, .seq_id = sq, .logits = want};
    assert_int_equal(slm_ctx_decode(c, &b, NULL), SLM_OK);
    for (int i = 0; i < 2 * N_PROMPT; i++)
        assert_memory_equal(slm_ctx_logits(c, i), alone + (size_t)(i / 2) * nv, nv * sizeof(float));

    /* prefix sharing: seq 3 = seq 0's first half, then its own second half */
    assert_int_equal(slm_ctx_seq_rm(c, 1, -1, -1, NULL), SLM_OK);
    assert_int_equal(slm_ctx_seq_rm(c, 2, -1, -1, NULL), SLM_OK);
    assert_int_equal(slm_ctx_seq_cp(c, 0, 3, 0, half, NULL), SLM_OK);
    assert_int_equal(slm_ctx_seq_pos_max(c, 3), half - 1);
    decode_all(c, prompt + half, N_PROMPT - half, half, 3, got, d.n_vocab);
    assert_memory_equal(got, alone + half * nv, (N_PROMPT - half) * nv * sizeof(float));

    /* seq_rm the tail of seq 0 and decode it again */
    assert_int_equal(slm_ctx_seq_rm(c, 0, half, -1, NULL), SLM_OK);
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), half - 1);
    decode_all(c, prompt + half, N_PROMPT - half, half, 0, got, d.n_vocab);
    assert_memory_equal(got, alone + half * nv, (N_PROMPT - half) * nv * sizeof(float));

    slm_ctx_stats stats;
    slm_ctx_get_stats(c, &stats);
    assert_int_equal(stats.n_decode, 4);
    assert_int_equal(stats.n_tokens, 3 * N_PROMPT + 2 * (N_PROMPT - half));
    assert_int_equal(stats.n_outputs, stats.n_tokens);
    assert_int_equal(stats.kv_used, N_PROMPT + (N_PROMPT - half)); /* seq 3 shares seq 0's first half */
    assert_int_equal(stats.kv_cells, 64);
    assert_true(stats.kv_bytes > 0 && stats.scratch_bytes > 0 && stats.decode_ms > 0);

    /* errors leave the cache as it was */
    int32_t bad = d.n_vocab, p = N_PROMPT, s0 = 0;
    slm_batch bb = {.n_tokens = 1, .token = &bad, .pos = &p, .seq_id = &s0};
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_decode(c, &bb, err), SLM_ERR_RANGE);
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), N_PROMPT - 1);
    s0 = 4;
    bad = 1;
    assert_int_equal(slm_ctx_decode(c, &bb, err), SLM_ERR_RANGE);
    assert_null(slm_ctx_logits(c, 0));
    assert_int_equal(slm_ctx_seq_cp(c, 0, 9, 0, 1, NULL), SLM_ERR_RANGE);
    slm_ctx_clear(c);
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), -1);
    /* a full cache: 64 cells, 3 batches of 32 */
    int32_t many[32], mpos[32], mseq[32];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 32; i++) many[i] = 1 + i, mpos[i] = 32 * r + i, mseq[i] = 0;
        slm_batch mb = {.n_tokens = 32, .token = many, .pos = mpos, .seq_id = mseq};
        assert_int_equal(slm_ctx_decode(c, &mb, err), r < 2 ? SLM_OK : SLM_ERR_FULL);
    }
    slm_ctx_destroy(c);
    free(alone), free(got);
    slm_model_close(m);
}

/* F32 and Q8_0 caches stay close to the F16 cache. */
static void test_kv_types(void **state) {
    (void)state;
    slm_model *m = open_tiny("models/tiny/tiny-llama-f32.gguf");
    if (!m) skip();
    slm_model_desc d;
    slm_model_describe(m, &d);
    const size_t nv = (size_t)d.n_vocab;
    float *ref = malloc(N_PROMPT * nv * sizeof(float)), *got = malloc(N_PROMPT * nv * sizeof(float));
    assert_true(ref && got);
    slm_ctx *c = new_ctx(m, 2, SLM_CACHE_F16, 1);
    decode_all(c, prompt, N_PROMPT, 0, 0, ref, d.n_vocab);
    slm_ctx_destroy(c);
    const slm_cache_type types[2] = {SLM_CACHE_F32, SLM_CACHE_Q8_0};
    for (int t = 0; t < 2; t++) {
        c = new_ctx(m, 2, types[t], 1);
        decode_all(c, prompt, N_PROMPT, 0, 0, got, d.n_vocab);
        slm_ctx_destroy(c);
        double worst = 0;
        for (int p = 0; p < N_PROMPT; p++) {
            /* compare log-softmax rows */
            const float *a = ref + p * nv, *b = got + p * nv;
            double ma = -INFINITY, mb = -INFINITY, sa = 0, sb = 0;
            for (size_t i = 0; i < nv; i++) ma = fmax(ma, a[i]), mb = fmax(mb, b[i]);
            for (size_t i = 0; i < nv; i++) sa += exp(a[i] - ma), sb += exp(b[i] - mb);
            for (size_t i = 0; i < nv; i++) {
                double da = a[i] - ma - log(sa), db = b[i] - mb - log(sb);
                if (da > -10 && fabs(da - db) > worst) worst = fabs(da - db);
            }
        }
        assert_true(worst <= KV_TYPE_MAX_DIFF);
        assert_true(worst > 0); /* a different storage type really is in use */
    }
    free(ref), free(got);
    slm_model_close(m);
}

/* Embeddings: unit length, independent of the batch size, leave other sequences alone. */
static void test_embed(void **state) {
    (void)state;
    slm_model *m = open_tiny("models/tiny/tiny-qwen2-f32.gguf");
    if (!m) skip();
    slm_ctx *c = new_ctx(m, 2, SLM_CACHE_F16, 2);
    const int32_t ne = slm_ctx_n_embd(c);
    float *a = malloc((size_t)ne * sizeof(float)), *b = malloc((size_t)ne * sizeof(float));
    float *lg = malloc(512 * sizeof(float) * N_PROMPT);
    assert_true(a && b && lg);
    decode_all(c, prompt, 4, 0, 0, lg, 512);
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_embed(c, 1, prompt, N_PROMPT, a, err), SLM_OK);
    double ss = 0;
    for (int i = 0; i < ne; i++) ss += (double)a[i] * a[i];
    assert_true(fabs(ss - 1.0) < 1e-5);
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), 3);  /* untouched */
    assert_int_equal(slm_ctx_seq_pos_max(c, 1), -1); /* cleared */
    slm_ctx_destroy(c);
    /* a batch of 5 tokens at a time gives the same vector */
    slm_ctx_params p = {.n_ctx = 64, .n_batch = 5, .n_threads = 1};
    assert_int_equal(slm_ctx_create(m, &p, &c, err), SLM_OK);
    assert_int_equal(slm_ctx_embed(c, 0, prompt, N_PROMPT, b, err), SLM_OK);
    assert_true(max_rel_diff(b, a, (size_t)ne) <= BATCH_REL_TOL);
    assert_int_equal(slm_ctx_embed(c, 0, prompt, N_PROMPT - 2, b, err), SLM_OK);
    assert_true(max_rel_diff(b, a, (size_t)ne) > BATCH_REL_TOL);
    assert_int_equal(slm_ctx_embed(c, 0, prompt, 0, b, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_ctx_embed(c, 3, prompt, 2, b, err), SLM_ERR_RANGE);
    slm_ctx_destroy(c);
    /* batches of 3 on 2 threads (the replicated decode steps leave the final rows in the
     * shared scratch too) */
    p.n_batch = 3, p.n_threads = 2;
    assert_int_equal(slm_ctx_create(m, &p, &c, err), SLM_OK);
    assert_int_equal(slm_ctx_embed(c, 0, prompt, N_PROMPT, b, err), SLM_OK);
    assert_true(max_rel_diff(b, a, (size_t)ne) <= BATCH_REL_TOL);
    slm_ctx_destroy(c);
    free(a), free(b), free(lg);
    slm_model_close(m);
}

/* A copy of a shared model whose <arch>.pooling_type is `pooling`, in a temporary file
 * (the caller unlinks and frees the returned path). */
static char *with_pooling(const char *rel, const char *arch, uint32_t pooling) {
    char path[1024], err[SLM_ERR_LEN], key[64];
    if (!tu_shared_path(path, sizeof path, rel)) return NULL;
    slm_gguf *g = NULL;
    slm_gguf_writer *w = NULL;
    assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(slm_gguf_writer_copy_kv(w, g, NULL, NULL), SLM_OK);
    snprintf(key, sizeof key, "%s.pooling_type", arch);
    assert_int_equal(slm_gguf_writer_set_u32(w, key, pooling), SLM_OK);
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        assert_int_equal(slm_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->size, err), SLM_OK);
    }
    char *out = tu_write_temp("", 0, ".gguf");
    assert_non_null(out);
    assert_int_equal(slm_gguf_writer_write(w, out, err), SLM_OK);
    slm_gguf_writer_destroy(w);
    slm_gguf_close(g);
    return out;
}

/* Embedding of tokens[n] with a model; batch sets how many tokens go through per step. */
static void embed_with(const slm_model *m, int32_t batch, const int32_t *tokens, size_t n, float *out) {
    slm_ctx_params p = {.n_ctx = 64, .n_batch = batch, .n_threads = 1};
    slm_ctx *c = NULL;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_create(m, &p, &c, err), SLM_OK);
    assert_int_equal(slm_ctx_embed(c, 0, tokens, n, out, err), SLM_OK);
    slm_ctx_destroy(c);
}

/* Pooling follows <arch>.pooling_type. With causal attention the first token's state does
 * not depend on what follows, so CLS pooling of the prompt equals any pooling of its first
 * token alone; LAST pooling must pick the last state whatever the batch split. */
static void test_embed_pooling(void **state) {
    (void)state;
    slm_model *mean = open_tiny("models/tiny/tiny-qwen2-f32.gguf");
    if (!mean) skip();
    slm_model_desc d;
    slm_model_describe(mean, &d);
    assert_int_equal(d.pooling, SLM_POOLING_MEAN); /* absent from the file */
    const int32_t ne = d.n_embd;
    float *first = malloc((size_t)ne * sizeof(float)), *all = malloc((size_t)ne * sizeof(float));
    float *x = malloc((size_t)ne * sizeof(float)), *y = malloc((size_t)ne * sizeof(float));
    assert_true(first && all && x && y);
    embed_with(mean, 32, prompt, 1, first);
    embed_with(mean, 32, prompt, N_PROMPT, all);
    char err[SLM_ERR_LEN];

    char *path = with_pooling("models/tiny/tiny-qwen2-f32.gguf", "qwen2", SLM_POOLING_CLS);
    slm_model *m = NULL;
    assert_int_equal(slm_model_open(path, NULL, &m, err), SLM_OK);
    slm_model_describe(m, &d);
    assert_int_equal(d.pooling, SLM_POOLING_CLS);
    embed_with(m, 5, prompt, N_PROMPT, x);
    assert_true(max_rel_diff(x, first, (size_t)ne) <= BATCH_REL_TOL);
    slm_model_close(m);
    unlink(path), free(path);

    path = with_pooling("models/tiny/tiny-qwen2-f32.gguf", "qwen2", SLM_POOLING_LAST);
    assert_int_equal(slm_model_open(path, NULL, &m, err), SLM_OK);
    embed_with(m, 32, prompt, 1, x); /* one token: last == mean */
    assert_true(max_rel_diff(x, first, (size_t)ne) <= BATCH_REL_TOL);
    embed_with(m, 32, prompt, N_PROMPT, x);
    embed_with(m, 5, prompt, N_PROMPT, y); /* the last state sits in the third chunk */
    assert_true(max_rel_diff(y, x, (size_t)ne) <= BATCH_REL_TOL);
    assert_true(max_rel_diff(x, all, (size_t)ne) > BATCH_REL_TOL); /* not the mean */
    assert_true(max_rel_diff(x, first, (size_t)ne) > BATCH_REL_TOL); /* not the first */
    slm_model_close(m);
    unlink(path), free(path);

    path = with_pooling("models/tiny/tiny-qwen2-f32.gguf", "qwen2", SLM_POOLING_RANK);
    assert_int_equal(slm_model_open(path, NULL, &m, err), SLM_OK); /* it still generates */
    slm_ctx_params p = {.n_ctx = 64, .n_threads = 1};
    slm_ctx *c = NULL;
    assert_int_equal(slm_ctx_create(m, &p, &c, err), SLM_OK);
    assert_int_equal(slm_ctx_embed(c, 0, prompt, N_PROMPT, x, err), SLM_ERR_UNSUPPORTED);
    slm_ctx_destroy(c);
    slm_model_close(m);
    unlink(path), free(path);

    path = with_pooling("models/tiny/tiny-qwen2-f32.gguf", "qwen2", 9); /* not a pooling type */
    assert_int_equal(slm_model_open(path, NULL, &m, err), SLM_ERR_LIMIT);
    unlink(path), free(path);

    free(first), free(all), free(x), free(y);
    slm_model_close(mean);
}

static double lp_of(const float *l, int n, int id) {
    double m = l[0], z = 0;
    for (int i = 1; i < n; i++) m = fmax(m, l[i]);
    for (int i = 0; i < n; i++) z += exp(l[i] - m);
    return l[id] - m - log(z);
}

/* Label scores equal the log-probabilities of the same tokens decoded in full. */
static void test_score_labels(void **state) {
    (void)state;
    slm_model *m = open_tiny("models/tiny/tiny-llama-q8_0.gguf");
    if (!m) skip();
    const int nv = 512, np = 8;
    float *full = malloc((size_t)N_PROMPT * nv * sizeof(float)), *alt = malloc(2 * (size_t)nv * sizeof(float));
    assert_true(full && alt);
    slm_ctx *c = new_ctx(m, 2, SLM_CACHE_F16, 2);
    decode_all(c, prompt, N_PROMPT, 0, 0, full, nv);
    slm_ctx_clear(c);
    const int32_t other[2] = {5, 6};
    decode_all(c, prompt, np, 0, 1, full, nv); /* rows 0..7 are the same as before */
    decode_all(c, other, 2, np, 1, alt, nv);
    slm_ctx_clear(c);
    const int32_t *labels[3] = {prompt + np, prompt + np, other};
    const size_t n_label[3] = {1, 3, 2};
    float lp[3];
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_ctx_score_labels(c, 0, prompt, np, labels, n_label, 3, lp, err), SLM_OK);
    const double want0 = lp_of(full + (np - 1) * nv, nv, prompt[np]);
    double want1 = want0;
    /* the full decode of the whole prompt: rows np..np+1 predict prompt[np+1], prompt[np+2] */
    slm_ctx_clear(c);
    float *fullrows = malloc((size_t)N_PROMPT * nv * sizeof(float));
    decode_all(c, prompt, N_PROMPT, 0, 0, fullrows, nv);
    want1 += lp_of(fullrows + np * nv, nv, prompt[np + 1]) + lp_of(fullrows + (np + 1) * nv, nv, prompt[np + 2]);
    const double want2 = lp_of(full + (np - 1) * nv, nv, 5) + lp_of(alt, nv, 6);
    assert_true(fabs(lp[0] - want0) < 1e-4 && fabs(lp[1] - want1) < 1e-4 && fabs(lp[2] - want2) < 1e-4);
    assert_true(lp[1] < lp[0]);
    /* the sequence holds the prompt again (after the clear above: score on a fresh seq 1) */
    slm_ctx_clear(c);
    assert_int_equal(slm_ctx_score_labels(c, 1, prompt, np, labels, n_label, 3, lp, err), SLM_OK);
    assert_int_equal(slm_ctx_seq_pos_max(c, 1), np - 1);
    assert_null(slm_ctx_logits(c, 0));
    /* bad arguments */
    const size_t bad_len[1] = {0};
    assert_int_equal(slm_ctx_score_labels(c, 1, prompt, np, labels, bad_len, 1, lp, err), SLM_ERR_RANGE);
    assert_int_equal(slm_ctx_score_labels(c, 1, prompt, 0, labels, n_label, 1, lp, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_ctx_score_labels(c, 2, prompt, np, labels, n_label, 1, lp, err), SLM_ERR_RANGE);
    slm_ctx_destroy(c);
    free(full), free(alt), free(fullrows);
    slm_model_close(m);
}

static void test_ctx_oom(void **state) {
    (void)state;
    slm_model *m = open_tiny("models/tiny/tiny-llama-q4_k.gguf");
    if (!m) skip();
    for (long n = 1;; n++) {
        slm_ctx *c = NULL;
        slm_ctx_params p = {.n_ctx = 32, .n_threads = 2};
        slm_fault_arm(n);
        slm_status st = slm_ctx_create(m, &p, &c, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_ctx_destroy(c);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(c);
    }
    slm_ctx *c = NULL;
    slm_ctx_params p = {.n_ctx = -1};
    assert_int_equal(slm_ctx_create(m, &p, &c, NULL), SLM_ERR_RANGE);
    slm_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_vs_single_llama), cmocka_unit_test(test_batch_vs_single_qwen2),
        cmocka_unit_test(test_sequences), cmocka_unit_test(test_kv_types), cmocka_unit_test(test_embed),
        cmocka_unit_test(test_embed_pooling),
        cmocka_unit_test(test_score_labels),
        cmocka_unit_test(test_ctx_oom),
        cmocka_unit_test(test_repack_same_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
