/*
 * tests/test_quantize.c: `slmesh quantize`'s library (src/quantize) against the reference
 * runtime's quantize tool.
 *
 * The tiny models of ../shared/models/tiny were made by the reference tool from
 * tiny-llama-f32.gguf (--pure for the single types; the _m files are its mixtures): our
 * quantization of that file must give the same tensors byte for byte and the same
 * per-tensor types, and the engine on our file must match the reference logits of the
 * reference's file within the README's quantized tolerances (tests/reflogits.h). Rules
 * that the tiny shapes cannot reach (row lengths that are not multiples of 256, many
 * layers) are checked on synthetic names and shapes.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "quantize/quantize.h"
#include "reflogits.h"

/* ---- file types and rules ----------------------------------------------------------------- */

static void test_ftype_names(void **state) {
    (void)state;
    slm_ftype f;
    assert_true(slm_quantize_ftype_from_name("q4_k_m", &f));
    assert_int_equal(f, 15);
    assert_true(slm_quantize_ftype_from_name("Q4_K", &f)); /* the reference tool's alias */
    assert_int_equal(f, SLM_FTYPE_MOSTLY_Q4_K_M);
    assert_true(slm_quantize_ftype_from_name("Q3_K", &f));
    assert_int_equal(f, 12);
    assert_true(slm_quantize_ftype_from_name("q8_0", &f));
    assert_int_equal(f, 7);
    assert_true(slm_quantize_ftype_from_name("Q5_0", &f));
    assert_int_equal(f, 8);
    assert_true(slm_quantize_ftype_from_name("q6_k", &f));
    assert_int_equal(f, 18);
    assert_false(slm_quantize_ftype_from_name("q7_0", &f));
    assert_false(slm_quantize_ftype_from_name("", &f));
    assert_string_equal(slm_quantize_ftype_name(SLM_FTYPE_MOSTLY_Q5_K_M), "Q5_K_M");
    assert_int_equal(slm_quantize_ftype_default_type(SLM_FTYPE_MOSTLY_Q3_K_M), SLM_TYPE_Q3_K);
}

static void test_wanted(void **state) {
    (void)state;
    assert_true(slm_quantize_wanted("blk.0.attn_q.weight", 2));
    assert_false(slm_quantize_wanted("blk.0.attn_norm.weight", 1));
    assert_false(slm_quantize_wanted("blk.0.attn_q.bias", 1));
    assert_false(slm_quantize_wanted("blk.0.attn_q.bias", 2));
    assert_false(slm_quantize_wanted("blk.0.ffn_gate_inp.weight", 2));
    assert_false(slm_quantize_wanted("position_embd.weight", 2));
    assert_true(slm_quantize_wanted("token_embd.weight", 2));
}

static void test_order(void **state) {
    (void)state;
    const char *names[] = {"blk.10.attn_q.weight", "token_embd.weight", "blk.2.ffn_up.weight", "output.weight",
                           "blk.2.attn_k.weight", "blk.0.ffn_down.weight", "output_norm.weight"};
    const char *want[] = {"output.weight", "output_norm.weight", "token_embd.weight", "blk.0.ffn_down.weight",
                          "blk.2.attn_k.weight", "blk.2.ffn_up.weight", "blk.10.attn_q.weight"};
    size_t idx[7];
    slm_quantize_order(names, 7, idx);
    for (int i = 0; i < 7; i++) assert_string_equal(names[idx[i]], want[i]);
}

/* ffn_down of a 32-layer Q4_K_M model: Q6_K in the first and last 4 layers and every third
 * layer between (use_more_bits), Q4_K elsewhere; Q3_K_M: Q5_K in the first 2, then Q4_K. */
static void test_layer_rules(void **state) {
    (void)state;
    const int64_t ne[2] = {4096, 4096};
    slm_quantize_chooser c = {.ftype = SLM_FTYPE_MOSTLY_Q4_K_M, .has_output = true, .n_layer = 32, .n_gqa = 4,
                              .n_attn_v = 32};
    char name[64];
    for (int il = 0; il < 32; il++) {
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        const bool more = il < 4 || il >= 28 || (il - 4) % 3 == 2;
        assert_int_equal(slm_quantize_choose(&c, name, 2, ne, SLM_TYPE_F32), more ? SLM_TYPE_Q6_K : SLM_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", il);
        assert_int_equal(slm_quantize_choose(&c, name, 2, ne, SLM_TYPE_F32), more ? SLM_TYPE_Q6_K : SLM_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", il);
        assert_int_equal(slm_quantize_choose(&c, name, 2, ne, SLM_TYPE_F32), SLM_TYPE_Q4_K);
    }
    slm_quantize_chooser m3 = {.ftype = SLM_FTYPE_MOSTLY_Q3_K_M, .has_output = true, .n_layer = 32, .n_attn_v = 32};
    for (int il = 0; il < 4; il++) {
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        assert_int_equal(slm_quantize_choose(&m3, name, 2, ne, SLM_TYPE_F32), il < 2 ? SLM_TYPE_Q5_K : SLM_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", il);
        assert_int_equal(slm_quantize_choose(&m3, name, 2, ne, SLM_TYPE_F32), SLM_TYPE_Q4_K);
    }
    /* Q2_K: attn_v by GQA */
    slm_quantize_chooser q2 = {.ftype = SLM_FTYPE_MOSTLY_Q2_K, .has_output = true, .n_layer = 2, .n_gqa = 4, .n_attn_v = 2};
    assert_int_equal(slm_quantize_choose(&q2, "blk.0.attn_v.weight", 2, ne, SLM_TYPE_F32), SLM_TYPE_Q4_K);
    q2.n_gqa = 2;
    assert_int_equal(slm_quantize_choose(&q2, "blk.1.attn_v.weight", 2, ne, SLM_TYPE_F32), SLM_TYPE_Q3_K);
}

/* Rows of 576 (SmolLM2): the tied embedding is the output and gets Q8_0 (576 % 256 != 0),
 * K types fall back (Q4_K -> Q5_0, Q6_K -> Q8_0, Q3_K -> IQ4_NL), 1-D stays. */
static void test_fallbacks(void **state) {
    (void)state;
    const int64_t e[2] = {576, 49152}, d[2] = {1536, 576}, q[2] = {576, 576};
    slm_quantize_chooser c = {.ftype = SLM_FTYPE_MOSTLY_Q4_K_M, .has_output = false, .n_layer = 30, .n_attn_v = 30};
    assert_int_equal(slm_quantize_choose(&c, "token_embd.weight", 2, e, SLM_TYPE_F32), SLM_TYPE_Q8_0);
    assert_int_equal(slm_quantize_choose(&c, "output_norm.weight", 1, e, SLM_TYPE_F32), SLM_TYPE_F32);
    assert_int_equal(slm_quantize_choose(&c, "blk.0.attn_q.weight", 2, q, SLM_TYPE_F32), SLM_TYPE_Q5_0);
    assert_int_equal(slm_quantize_choose(&c, "blk.0.attn_v.weight", 2, q, SLM_TYPE_F32), SLM_TYPE_Q8_0);
    assert_int_equal(slm_quantize_choose(&c, "blk.0.ffn_down.weight", 2, d, SLM_TYPE_F32), SLM_TYPE_Q6_K);
    assert_true(c.n_fallback == 2);
    slm_quantize_chooser q4 = {.ftype = SLM_FTYPE_MOSTLY_Q4_0, .has_output = false, .n_layer = 30};
    assert_int_equal(slm_quantize_choose(&q4, "token_embd.weight", 2, e, SLM_TYPE_F32), SLM_TYPE_Q8_0);
    assert_int_equal(slm_quantize_choose(&q4, "blk.0.attn_q.weight", 2, q, SLM_TYPE_F32), SLM_TYPE_Q4_0);
    slm_quantize_chooser q3 = {.ftype = SLM_FTYPE_MOSTLY_Q3_K_S, .pure = true, .has_output = true, .n_layer = 30};
    assert_int_equal(slm_quantize_choose(&q3, "blk.0.attn_q.weight", 2, q, SLM_TYPE_F32), SLM_TYPE_IQ4_NL);
    const int64_t odd[2] = {100, 3};
    assert_int_equal(slm_quantize_choose(&q3, "blk.0.attn_k.weight", 2, odd, SLM_TYPE_F32), SLM_TYPE_F16);
}

/* ---- the tiny models ------------------------------------------------------------------------ */

static const char *const pure_types[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
static const char *const mixtures[] = {"q3_k_m", "q4_k_m", "q5_k_m"};

/* The engine check of a quantized file costs ~10 s under ASan on the shared machine, and
 * files whose bytes equal the reference's (checked first) give the reference file's
 * figures, which test_reference_logits checks anyway: under the sanitizers only a legacy
 * type, a K type and a mixture are run through the engine; all of them otherwise. */
#if defined(__SANITIZE_ADDRESS__)
static bool logits_wanted(const char *type) {
    return !strcmp(type, "q4_0") || !strcmp(type, "q6_k") || !strcmp(type, "q4_k_m");
}
#else
static bool logits_wanted(const char *type) { (void)type; return true; }
#endif

/* Quantize shared/models/tiny/SRC.gguf to a temp file; returns its malloc'd path. */
static char *quantize_tiny(const char *src, const char *type, bool pure) {
    char in[1024], rel[256];
    snprintf(rel, sizeof rel, "models/tiny/%s.gguf", src);
    if (!tu_shared_path(in, sizeof in, rel)) return NULL;
    char *out = tu_write_temp("", 0, ".gguf");
    assert_non_null(out);
    slm_quantize_params p = {.pure = pure, .n_threads = 2};
    assert_true(slm_quantize_ftype_from_name(type, &p.ftype));
    char err[SLM_ERR_LEN] = "";
    slm_quantize_stats s;
    slm_status st = slm_quantize_file(in, out, &p, &s, err);
    if (st) fprintf(stderr, "quantize %s %s: %s\n", src, type, err);
    assert_int_equal(st, SLM_OK);
    assert_int_equal(s.n_fallback, 0);
    return out;
}

/* Every tensor of ours equals the reference's: name, type, shape; bytes too when
 * same_bytes. Also general.file_type. */
static void compare_files(const char *ours, const char *ref_rel, bool same_bytes) {
    char ref[1024], err[SLM_ERR_LEN] = "";
    assert_non_null(tu_shared_path(ref, sizeof ref, ref_rel));
    slm_gguf *a = NULL, *b = NULL;
    assert_int_equal(slm_gguf_open(ours, NULL, &a, err), SLM_OK);
    assert_int_equal(slm_gguf_open(ref, NULL, &b, err), SLM_OK);
    assert_int_equal(slm_gguf_n_tensors(a), slm_gguf_n_tensors(b));
    int differ = 0;
    for (int64_t i = 0; i < slm_gguf_n_tensors(b); i++) {
        const slm_gguf_tensor *tb = slm_gguf_tensor_at(b, i);
        const slm_gguf_tensor *ta = slm_gguf_find_tensor(a, tb->name);
        assert_non_null(ta);
        if (ta->type != tb->type) fprintf(stderr, "%s: %s is %s, reference %s\n", ref_rel, tb->name, slm_type_name(ta->type), slm_type_name(tb->type));
        assert_int_equal(ta->type, tb->type);
        assert_int_equal(ta->n_dims, tb->n_dims);
        for (uint32_t d = 0; d < tb->n_dims; d++) assert_int_equal(ta->ne[d], tb->ne[d]);
        assert_int_equal(ta->size, tb->size);
        if (same_bytes && memcmp(ta->data, tb->data, tb->size)) {
            fprintf(stderr, "%s: %s differs from the reference\n", ref_rel, tb->name);
            differ++;
        }
    }
    assert_int_equal(differ, 0);
    uint32_t fa, fb;
    assert_int_equal(slm_gguf_get_u32(a, "general.file_type", &fa, NULL), SLM_OK);
    assert_int_equal(slm_gguf_get_u32(b, "general.file_type", &fb, NULL), SLM_OK);
    assert_int_equal(fa, fb);
    slm_gguf_close(a);
    slm_gguf_close(b);
}

/* Quantize tiny-llama-f32 to `type` (pure or as the mixture rules say), compare it with the
 * reference's tiny-llama-<type>.gguf, and check the engine's log-probabilities on it against
 * the reference's where wanted; returns 1 when the logits check failed, else 0. */
static int check_tiny_type(const char *type, bool pure) {
    char *out = quantize_tiny("tiny-llama-f32", type, pure);
    char rel[256], json[256];
    int failed = 0;
    snprintf(rel, sizeof rel, "models/tiny/tiny-llama-%s.gguf", type);
    compare_files(out, rel, true);
    snprintf(json, sizeof json, "tiny-llama-%s.json", type);
    if (logits_wanted(type)) failed = reflogits_check(tu_shared_dir(), json, out) != 0;
    unlink(out);
    free(out);
    return failed;
}

/* Pure types: the same blocks as the reference, and the engine within tolerance. */
static void test_tiny_pure(void **state) {
    (void)state;
    char probe[1024];
    TU_SHARED_OR_SKIP(probe, "models/tiny/tiny-llama-f32.gguf");
    int failed = 0;
    for (size_t i = 0; i < sizeof pure_types / sizeof pure_types[0]; i++) failed += check_tiny_type(pure_types[i], true);
    assert_int_equal(failed, 0);
}

/* Mixtures: the same type for every tensor (and here the same bytes, as the blocks of each
 * type are the reference's), and the engine within tolerance. */
static void test_tiny_mixtures(void **state) {
    (void)state;
    char probe[1024];
    TU_SHARED_OR_SKIP(probe, "models/tiny/tiny-llama-f32.gguf");
    int failed = 0;
    for (size_t i = 0; i < sizeof mixtures / sizeof mixtures[0]; i++) failed += check_tiny_type(mixtures[i], false);
    /* qwen2 (biases stay F32, default mixture rules, not --pure) */
    const char *qw[] = {"q8_0", "q4_k_m"};
    for (int i = 0; i < 2; i++) {
        char *out = quantize_tiny("tiny-qwen2-f32", qw[i], false);
        char rel[256];
        snprintf(rel, sizeof rel, "models/tiny/tiny-qwen2-%s.gguf", qw[i]);
        compare_files(out, rel, true);
        unlink(out);
        free(out);
    }
    assert_int_equal(failed, 0);
}

/* Quantized input: refused without allow_requantize, dequantized with it; F16 input. */
static void test_requantize(void **state) {
    (void)state;
    char q8[1024], f16[1024], err[SLM_ERR_LEN] = "";
    TU_SHARED_OR_SKIP(q8, "models/tiny/tiny-llama-q8_0.gguf");
    TU_SHARED_OR_SKIP(f16, "models/tiny/tiny-llama-f16.gguf");
    char *out = tu_write_temp("", 0, ".gguf");
    slm_quantize_params p = {.ftype = SLM_FTYPE_MOSTLY_Q4_0, .pure = true, .n_threads = 1};
    assert_int_equal(slm_quantize_file(q8, out, &p, NULL, err), SLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err, "allow-requantize"));
    p.allow_requantize = true;
    slm_quantize_stats s;
    assert_int_equal(slm_quantize_file(q8, out, &p, &s, err), SLM_OK);
    assert_int_equal(s.n_of_type[SLM_TYPE_Q4_0], 16);
    /* to the same type: copied, not converted */
    p.ftype = SLM_FTYPE_MOSTLY_Q8_0;
    assert_int_equal(slm_quantize_file(q8, out, &p, &s, err), SLM_OK);
    assert_int_equal(s.n_converted, 0);
    compare_files(out, "models/tiny/tiny-llama-q8_0.gguf", true);
    p.allow_requantize = false;
    assert_int_equal(slm_quantize_file(f16, out, &p, &s, err), SLM_OK);
    assert_int_equal(s.n_of_type[SLM_TYPE_Q8_0], 16);
    assert_int_equal(slm_quantize_file("/nonexistent/x.gguf", out, &p, &s, err), SLM_ERR_IO);
    unlink(out);
    free(out);
}

/* Allocation failures at every point: an error, no crash, no leak. */
static void test_alloc_failures(void **state) {
    (void)state;
    char in[1024], err[SLM_ERR_LEN];
    TU_SHARED_OR_SKIP(in, "models/tiny/tiny-llama-f32.gguf");
    char *out = tu_write_temp("", 0, ".gguf");
    slm_quantize_params p = {.ftype = SLM_FTYPE_MOSTLY_Q8_0, .n_threads = 2}; /* fastest quantizer */
    int failures = 0;
    for (long n = 1; n < 400; n++) {
        slm_fault_arm(n);
        slm_status st = slm_quantize_file(in, out, &p, NULL, err);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            break;
        }
        assert_int_not_equal(st, SLM_OK);
        failures++;
    }
    assert_true(failures > 5);
    unlink(out);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ftype_names),   cmocka_unit_test(test_wanted),        cmocka_unit_test(test_order),
        cmocka_unit_test(test_layer_rules),   cmocka_unit_test(test_fallbacks),     cmocka_unit_test(test_tiny_pure),
        cmocka_unit_test(test_tiny_mixtures), cmocka_unit_test(test_requantize),    cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
