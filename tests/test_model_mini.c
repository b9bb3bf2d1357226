/*
 * tests/test_model_mini.c: the forward pass against a naive double-precision transformer
 * written here from the textbook definition, on tiny generated models (llama: adjacent-pair
 * RoPE; qwen2: q/k/v biases, half-split RoPE; qwen3: per-head q/k RMSNorm; GQA; linear RoPE
 * scaling), so the engine is checked independently of the reference outputs and of
 * ../shared. Also writes the seeds of
 * fuzz/fuzz_model.c (SLMESH_WRITE_SEEDS=1) and checks that the committed ones load.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/model.h"

/* Float (engine) vs double (naive) logits: relative to the largest logit. */
#define MINI_TOL 1e-4

enum { E = 32, H = 2, HKV = 1, HD = 24, FF = 16, V = 8, L = 2, CTX = 16, NTOK = 6 };
/* Floats in the largest tensor (attn_q / attn_output: E x H*HD; the FFN ones are E x FF). */
enum { TMAX = E * H * HD > E * FF ? E * H * HD : E * FF };

static uint32_t rng = 12345;
static float rnd(float scale) {
    rng = rng * 1664525u + 1013904223u;
    return scale * ((float)(rng >> 8) / (float)(1u << 24) - 0.5f) * 2.0f;
}

/* Tensor table: name pattern, ne0, ne1 (1 = vector), scale of the values. */
typedef struct tdesc { const char *name; int ne0, ne1; float scale; bool bias, qk_norm; } tdesc;
static const tdesc tensors[] = {
    {"attn_norm.weight", E, 1, 0.2f, false, false}, {"attn_q.weight", E, H * HD, 0.3f, false, false},
    {"attn_k.weight", E, HKV * HD, 0.3f, false, false}, {"attn_v.weight", E, HKV * HD, 0.3f, false, false},
    {"attn_output.weight", H * HD, E, 0.3f, false, false}, {"attn_q.bias", H * HD, 1, 0.2f, true, false},
    {"attn_k.bias", HKV * HD, 1, 0.2f, true, false}, {"attn_v.bias", HKV * HD, 1, 0.2f, true, false},
    {"ffn_norm.weight", E, 1, 0.2f, false, false}, {"ffn_gate.weight", E, FF, 0.3f, false, false},
    {"ffn_up.weight", E, FF, 0.3f, false, false}, {"ffn_down.weight", FF, E, 0.3f, false, false},
    {"attn_q_norm.weight", HD, 1, 0.2f, false, true}, {"attn_k_norm.weight", HD, 1, 0.2f, false, true},
};
#define N_LAYER_T (sizeof tensors / sizeof tensors[0])

/* data[l][t] for layer tensors, then token_embd, output_norm, output */
static float data_l[L][N_LAYER_T][TMAX], emb[V * E], onorm[E], outw[V * E];

static void fill(int variant) {
    rng = 12345u + 1000u * (uint32_t)variant;
    for (int l = 0; l < L; l++)
        for (size_t t = 0; t < N_LAYER_T; t++)
            for (int i = 0; i < tensors[t].ne0 * tensors[t].ne1; i++)
                data_l[l][t][i] = (tensors[t].ne1 == 1 && !tensors[t].bias ? 1.0f : 0.0f) + rnd(tensors[t].scale);
    for (int i = 0; i < V * E; i++) emb[i] = rnd(1.0f), outw[i] = rnd(0.3f);
    for (int i = 0; i < E; i++) onorm[i] = 1.0f + rnd(0.2f);
}

static void *build(const char *arch, float rope_scale, size_t *size) {
    const bool qwen = !strcmp(arch, "qwen2"), qwen3 = !strcmp(arch, "qwen3");
    fill(qwen ? 1 : qwen3 ? 2 : 0);
    slm_gguf_writer *w;
    char key[96], err[SLM_ERR_LEN];
    assert_int_equal(slm_gguf_writer_create(&w), SLM_OK);
    slm_gguf_writer_set_str(w, "general.architecture", arch);
#define KEY(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    slm_gguf_writer_set_u32(w, KEY("context_length"), CTX);
    slm_gguf_writer_set_u32(w, KEY("embedding_length"), E);
    slm_gguf_writer_set_u32(w, KEY("block_count"), L);
    slm_gguf_writer_set_u32(w, KEY("feed_forward_length"), FF);
    slm_gguf_writer_set_u32(w, KEY("attention.head_count"), H);
    slm_gguf_writer_set_u32(w, KEY("attention.head_count_kv"), HKV);
    slm_gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    slm_gguf_writer_set_f32(w, KEY("rope.freq_base"), qwen || qwen3 ? 1e6f : 1e4f);
    slm_gguf_writer_set_u32(w, KEY("attention.key_length"), HD);
    if (rope_scale > 0) {
        slm_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
        slm_gguf_writer_set_f32(w, KEY("rope.scaling.factor"), rope_scale);
    }
#undef KEY
    int64_t ne[2];
    char name[64];
    ne[0] = E, ne[1] = V;
    assert_int_equal(slm_gguf_writer_add_tensor(w, "token_embd.weight", SLM_TYPE_F32, 2, ne, emb, sizeof emb, err), SLM_OK);
    assert_int_equal(slm_gguf_writer_add_tensor(w, "output.weight", SLM_TYPE_F32, 2, ne, outw, sizeof outw, err), SLM_OK);
    ne[0] = E;
    assert_int_equal(slm_gguf_writer_add_tensor(w, "output_norm.weight", SLM_TYPE_F32, 1, ne, onorm, sizeof onorm, err), SLM_OK);
    for (int l = 0; l < L; l++)
        for (size_t t = 0; t < N_LAYER_T; t++) {
            if ((tensors[t].bias && !qwen) || (tensors[t].qk_norm && !qwen3)) continue;
            snprintf(name, sizeof name, "blk.%d.%s", l, tensors[t].name);
            ne[0] = tensors[t].ne0, ne[1] = tensors[t].ne1;
            assert_int_equal(slm_gguf_writer_add_tensor(w, name, SLM_TYPE_F32, ne[1] == 1 ? 1 : 2, ne, data_l[l][t],
                                                        (size_t)(ne[0] * ne[1]) * sizeof(float), err), SLM_OK);
        }
    void *mem;
    assert_int_equal(slm_gguf_writer_to_memory(w, &mem, size, err), SLM_OK);
    slm_gguf_writer_destroy(w);
    return mem;
}

/* ---- the naive model (double, textbook) ---- */

static void matvec(const float *w, int n_in, int n_out, const double *x, double *y) {
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += (double)w[o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void rmsnorm(const double *x, const float *w, double *y) {
    double ss = 0;
    for (int i = 0; i < E; i++) ss += x[i] * x[i];
    const double inv = 1.0 / sqrt(ss / E + 1e-5);
    for (int i = 0; i < E; i++) y[i] = x[i] * inv * w[i];
}

static void head_norm(double *v, const float *w) {
    double ss = 0;
    for (int i = 0; i < HD; i++) ss += v[i] * v[i];
    const double inv = 1.0 / sqrt(ss / HD + 1e-5);
    for (int i = 0; i < HD; i++) v[i] = v[i] * inv * w[i];
}

static void rope(double *v, int pos, bool neox, double base, double scale) {
    for (int i = 0; i < HD / 2; i++) {
        const double theta = pos * scale * pow(base, -2.0 * i / HD);
        const int a = neox ? i : 2 * i, b = neox ? i + HD / 2 : 2 * i + 1;
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(theta) - x1 * sin(theta);
        v[b] = x0 * sin(theta) + x1 * cos(theta);
    }
}

/* variant: 0 llama, 1 qwen2 (biases), 2 qwen3 (q/k head norms); both qwen use NeoX RoPE. */
static void naive_logits(int variant, float rope_scale, const int32_t *tok, int n, double out[][V]) {
    static double K[L][NTOK][HKV * HD], Vv[L][NTOK][HKV * HD];
    const bool qwen = variant == 1, neox = variant > 0;
    const double base = neox ? 1e6 : 1e4, scale = rope_scale > 0 ? 1.0 / rope_scale : 1.0;
    for (int p = 0; p < n; p++) {
        double x[E], h[E], q[H * HD], att[H * HD], o[E], g[FF], u[FF];
        for (int i = 0; i < E; i++) x[i] = emb[tok[p] * E + i];
        for (int l = 0; l < L; l++) {
            rmsnorm(x, data_l[l][0], h);
            matvec(data_l[l][1], E, H * HD, h, q);
            matvec(data_l[l][2], E, HKV * HD, h, K[l][p]);
            matvec(data_l[l][3], E, HKV * HD, h, Vv[l][p]);
            if (qwen) {
                for (int i = 0; i < H * HD; i++) q[i] += data_l[l][5][i];
                for (int i = 0; i < HKV * HD; i++) K[l][p][i] += data_l[l][6][i], Vv[l][p][i] += data_l[l][7][i];
            }
            for (int hh = 0; variant == 2 && hh < H; hh++) head_norm(q + hh * HD, data_l[l][12]);
            for (int hh = 0; variant == 2 && hh < HKV; hh++) head_norm(K[l][p] + hh * HD, data_l[l][13]);
            for (int hh = 0; hh < H; hh++) rope(q + hh * HD, p, neox, base, scale);
            for (int hh = 0; hh < HKV; hh++) rope(K[l][p] + hh * HD, p, neox, base, scale);
            for (int hh = 0; hh < H; hh++) {
                const int kh = hh / (H / HKV);
                double s[NTOK], mx = -1e300, z = 0;
                for (int j = 0; j <= p; j++) {
                    s[j] = 0;
                    for (int d = 0; d < HD; d++) s[j] += q[hh * HD + d] * K[l][j][kh * HD + d];
                    s[j] /= sqrt((double)HD);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j <= p; j++) z += s[j] = exp(s[j] - mx);
                for (int d = 0; d < HD; d++) {
                    double a = 0;
                    for (int j = 0; j <= p; j++) a += s[j] / z * Vv[l][j][kh * HD + d];
                    att[hh * HD + d] = a;
                }
            }
            matvec(data_l[l][4], H * HD, E, att, o);
            for (int i = 0; i < E; i++) x[i] += o[i];
            rmsnorm(x, data_l[l][8], h);
            matvec(data_l[l][9], E, FF, h, g);
            matvec(data_l[l][10], E, FF, h, u);
            for (int i = 0; i < FF; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            matvec(data_l[l][11], FF, E, g, o);
            for (int i = 0; i < E; i++) x[i] += o[i];
        }
        rmsnorm(x, onorm, h);
        matvec(outw, E, V, h, out[p]);
    }
}

static void check_arch(const char *arch, float rope_scale) {
    size_t size;
    void *mem = build(arch, rope_scale, &size);
    slm_model m = {0};
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_gguf_open_memory(mem, size, &m.gguf, err), SLM_OK);
    slm_status st = slm_model_load_weights(&m, err);
    if (st) fprintf(stderr, "%s: %s\n", arch, err);
    assert_int_equal(st, SLM_OK);
    slm_kv *kv;
    slm_fwd *f;
    slm_kv_params kp = {.type = SLM_TYPE_F32, .n_cells = CTX, .n_layer = L, .n_embd_kv = HKV * HD, .n_seq_max = 1};
    assert_int_equal(slm_kv_create(&kp, &kv, err), SLM_OK);
    assert_int_equal(slm_fwd_create(&m, NTOK, CTX, SLM_TYPE_F32, 1, &f, err), SLM_OK);
    const int32_t tok[NTOK] = {1, 5, 2, 7, 7, 3}, pos[NTOK] = {0, 1, 2, 3, 4, 5}, seq[NTOK] = {0};
    int32_t cells[NTOK], out_idx[NTOK] = {0, 1, 2, 3, 4, 5};
    float logits[NTOK][V];
    assert_int_equal(slm_kv_alloc(kv, NTOK, pos, seq, cells, err), SLM_OK);
    assert_int_equal(slm_model_forward(&m, f, kv, NULL, NTOK, tok, pos, seq, cells, NTOK, out_idx, &logits[0][0], NULL, err), SLM_OK);
    double want[NTOK][V], big = 0, worst = 0;
    naive_logits(!strcmp(arch, "qwen2") ? 1 : !strcmp(arch, "qwen3") ? 2 : 0, rope_scale, tok, NTOK, want);
    for (int p = 0; p < NTOK; p++)
        for (int v = 0; v < V; v++) big = fmax(big, fabs(want[p][v])), worst = fmax(worst, fabs(want[p][v] - logits[p][v]));
    if (worst > MINI_TOL * big) fprintf(stderr, "%s: worst %.3g of %.3g\n", arch, worst, big);
    assert_true(worst <= MINI_TOL * big);
    slm_fwd_destroy(f);
    slm_kv_destroy(kv);
    slm_free(m.layers);
    slm_gguf_close(m.gguf);
    slm_free(mem);
}

static void test_llama(void **state) { (void)state; check_arch("llama", 0); }
static void test_qwen2(void **state) { (void)state; check_arch("qwen2", 0); }
static void test_qwen3(void **state) { (void)state; check_arch("qwen3", 0); }
static void test_linear_rope(void **state) { (void)state; check_arch("llama", 4.0f); }

/* fuzz/seeds/fuzz_model/: regenerated with SLMESH_WRITE_SEEDS=1, else checked to load. */
static void test_fuzz_seeds(void **state) {
    (void)state;
    const char *src = getenv("SLMESH_SOURCE_DIR");
    if (!src) skip();
    const char *archs[3] = {"llama", "qwen2", "qwen3"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fuzz/seeds/fuzz_model/mini-%s.gguf", src, archs[i]);
        if (getenv("SLMESH_WRITE_SEEDS")) {
            size_t size;
            void *mem = build(archs[i], 0, &size);
            FILE *fp = fopen(path, "wb");
            assert_non_null(fp);
            assert_int_equal(fwrite(mem, 1, size, fp), size);
            fclose(fp);
            slm_free(mem);
        }
        size_t len;
        char *data = tu_read_file(path, &len);
        assert_non_null(data);
        assert_true(len <= 65536); /* scripts/fuzz.sh's -max_len */
        slm_model m = {0};
        assert_int_equal(slm_gguf_open_memory(data, len, &m.gguf, NULL), SLM_OK);
        assert_int_equal(slm_model_load_weights(&m, NULL), SLM_OK);
        slm_free(m.layers);
        slm_gguf_close(m.gguf);
        free(data);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_llama), cmocka_unit_test(test_qwen2),
                                       cmocka_unit_test(test_qwen3), cmocka_unit_test(test_linear_rope), cmocka_unit_test(test_fuzz_seeds)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
