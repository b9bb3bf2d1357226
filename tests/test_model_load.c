/*
 * tests/test_model_load.c: model validation at open. Variants of tiny-llama-f32.gguf are
 * written with one thing broken (a missing tensor, a wrong shape, a type without kernels, a
 * non-f32 norm, an unknown architecture, a missing or inconsistent hyper-parameter, a limit
 * exceeded); each must fail with the right status and a detail naming the culprit. Also:
 * tied output (no output.weight) opens; the description; allocation failures.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "slmesh/slmesh.h"

#define BASE_MODEL "models/tiny/tiny-llama-f32.gguf"

/* One change to the base model. */
typedef struct variant {
    const char *drop_tensor;     /* leave this tensor out */
    const char *retype_tensor;   /* declare this tensor with new_type (zero data of the right size) */
    slm_type new_type;
    bool swap_dims;              /* of retype_tensor: declare [ne1, ne0] with the same data */
    const char *key;             /* set this metadata key ... */
    const char *str_val;         /* ... to a string, or */
    int64_t int_val;             /* ... to this u32 */
    const char *drop_key;        /* leave this key out */
} variant;

static bool skip_key(const char *key, void *ctx) {
    const variant *v = ctx;
    return v->drop_key && !strcmp(key, v->drop_key);
}

/* Write the variant to a temporary file; returns its path (caller unlinks, frees). */
static char *write_variant(const slm_gguf *g, const variant *v) {
    slm_gguf_writer *w = NULL;
    void *zeros = NULL;
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    assert_int_equal(slm_gguf_writer_copy_kv(w, g, skip_key, (void *)v), SLM_OK);
    if (v->key && v->str_val) assert_int_equal(slm_gguf_writer_set_str(w, v->key, v->str_val), SLM_OK);
    else if (v->key) assert_int_equal(slm_gguf_writer_set_u32(w, v->key, (uint32_t)v->int_val), SLM_OK);
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        if (v->drop_tensor && !strcmp(t->name, v->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        slm_type type = t->type;
        const void *data = t->data;
        size_t size = t->size;
        if (v->retype_tensor && !strcmp(t->name, v->retype_tensor)) {
            if (v->swap_dims) {
                ne[0] = t->ne[1], ne[1] = t->ne[0];
            } else {
                type = v->new_type;
                size_t row;
                assert_true(slm_type_row_bytes(type, ne[0], &row));
                size = row * (size_t)(ne[1] * ne[2] * ne[3]);
                zeros = calloc(1, size);
                data = zeros;
            }
        }
        char err[SLM_ERR_LEN];
        assert_int_equal(slm_gguf_writer_add_tensor(w, t->name, type, t->n_dims, ne, data, size, err), SLM_OK);
    }
    char *path = tu_write_temp("", 0, ".gguf");
    assert_non_null(path);
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_gguf_writer_write(w, path, err), SLM_OK);
    slm_gguf_writer_destroy(w);
    free(zeros);
    return path;
}

/* Open the variant; check the status and that the detail mentions `needle`. */
static void expect_open(const slm_gguf *g, const variant *v, slm_status want, const char *needle) {
    char *path = write_variant(g, v);
    slm_model *m = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_model_open(path, NULL, &m, err);
    if (st != want || (needle && !strstr(err, needle)))
        fprintf(stderr, "want %s containing '%s', got %s: %s\n", slm_status_str(want), needle ? needle : "",
                slm_status_str(st), err);
    assert_int_equal(st, want);
    if (needle) assert_non_null(strstr(err, needle));
    if (st == SLM_OK) slm_model_close(m);
    else assert_null(m);
    unlink(path);
    free(path);
}

static void test_validation(void **state) {
    (void)state;
    char path[1024], err[SLM_ERR_LEN];
    TU_SHARED_OR_SKIP(path, BASE_MODEL);
    slm_gguf *g = NULL;
    assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);

    expect_open(g, &(variant){0}, SLM_OK, NULL);
    expect_open(g, &(variant){.drop_tensor = "blk.1.ffn_up.weight"}, SLM_ERR_CORRUPT, "missing tensor blk.1.ffn_up.weight");
    expect_open(g, &(variant){.drop_tensor = "output_norm.weight"}, SLM_ERR_CORRUPT, "output_norm.weight");
    expect_open(g, &(variant){.retype_tensor = "blk.0.attn_k.weight", .swap_dims = true}, SLM_ERR_CORRUPT,
                "blk.0.attn_k.weight: shape [128, 256");
    expect_open(g, &(variant){.retype_tensor = "blk.0.ffn_down.weight", .new_type = SLM_TYPE_IQ2_XXS},
                SLM_ERR_UNSUPPORTED, "blk.0.ffn_down.weight: type iq2_xxs");
    expect_open(g, &(variant){.retype_tensor = "blk.1.attn_norm.weight", .new_type = SLM_TYPE_F16},
                SLM_ERR_UNSUPPORTED, "blk.1.attn_norm.weight: type f16");
    expect_open(g, &(variant){.key = "general.architecture", .str_val = "gpt2"}, SLM_ERR_UNSUPPORTED, "gpt2");
    expect_open(g, &(variant){.drop_key = "llama.block_count"}, SLM_ERR_CORRUPT, "missing key llama.block_count");
    expect_open(g, &(variant){.key = "llama.attention.head_count_kv", .int_val = 3}, SLM_ERR_CORRUPT, "head_count_kv");
    expect_open(g, &(variant){.key = "llama.block_count", .int_val = 100000}, SLM_ERR_LIMIT, "llama.block_count");
    expect_open(g, &(variant){.key = "llama.feed_forward_length", .int_val = 512}, SLM_ERR_CORRUPT,
                "blk.0.ffn_gate.weight: shape [256, 768, 1, 1], expected [256, 512]");
    expect_open(g, &(variant){.key = "llama.embedding_length", .int_val = 128}, SLM_ERR_CORRUPT, "rope.dimension_count");
    expect_open(g, &(variant){.key = "llama.rope.scaling.type", .str_val = "yarn"}, SLM_ERR_UNSUPPORTED, "yarn");
    /* tied embeddings: no output.weight */
    expect_open(g, &(variant){.drop_tensor = "output.weight"}, SLM_OK, NULL);
    slm_gguf_close(g);
}

static void test_describe_and_oom(void **state) {
    (void)state;
    char path[1024];
    TU_SHARED_OR_SKIP(path, "models/tiny/tiny-qwen2-q4_k_m.gguf");
    slm_model *m = NULL;
    assert_int_equal(slm_model_open(path, &(slm_model_params){.no_mmap = true}, &m, NULL), SLM_OK);
    slm_model_desc d;
    slm_model_describe(m, &d);
    assert_string_equal(d.arch, "qwen2");
    assert_int_equal(d.n_vocab, 512);
    assert_int_equal(d.n_embd, 256);
    assert_int_equal(d.n_layer, 2);
    assert_int_equal(d.n_head, 4);
    assert_int_equal(d.n_head_kv, 2);
    assert_int_equal(d.n_ff, 768);
    assert_int_equal(d.n_ctx_train, 512);
    assert_true(d.rope_base == 1e6f);
    assert_true(d.rms_eps == 1e-6f);
    assert_true(d.n_params > 0 && d.weight_bytes > 0);
    const char *tpl;
    size_t len;
    assert_int_equal(slm_model_meta_str(m, "general.architecture", &tpl, &len), SLM_OK);
    assert_int_equal(len, 5);
    assert_int_equal(slm_model_meta_str(m, "no.such.key", &tpl, &len), SLM_ERR_NOT_FOUND);
    slm_model_close(m);
    slm_model_close(NULL);

    /* every allocation failure is reported, without leaks (ASan) */
    for (long n = 1; n < 100000; n++) {
        m = NULL;
        slm_fault_arm(n);
        slm_status st = slm_model_open(path, NULL, &m, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_model_close(m);
            break;
        }
        assert_int_not_equal(st, SLM_OK);
        assert_null(m);
    }
    assert_int_equal(slm_model_open("/nonexistent/model.gguf", NULL, &m, NULL), SLM_ERR_IO);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_validation), cmocka_unit_test(test_describe_and_oom)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
