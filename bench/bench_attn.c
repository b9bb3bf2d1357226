/*
 * bench/bench_attn.c: cost of one layer's attention (slm_attn_run) for the head shapes of
 * the benchmark models, single-threaded, over a KV cache filled with synthetic K/V rows of
 * one sequence: "pp" is a whole prompt of n_ctx tokens attending causally in one batch
 * (prefill), "tg" is one more token attending to all n_ctx cells (decode).
 *
 * Values are normal(0, 1) from a fixed seed, so runs are comparable. Prints one line per
 * case: thread-CPU microseconds per call (median and fastest of REPS) and the kernel set. Not a test:
 * run by hand (see docs/benchmarks.md).
 *   usage: bench_attn [n_ctx] [reps] [pp|tg]   (both by default; SLMESH_KERNELS=scalar|avx2
 *   picks the kernels; one case alone is for profiling)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kv/kv.h"
#include "model/attn.h"
#include "quant/kernels.h"

#define DEFAULT_CTX 512 /* the pp512 benchmark's prompt */
#define DEFAULT_REPS 5  /* calls timed per case; the median is printed */
#define MAX_REPS 101

typedef struct shape {
    const char *name;
    int32_t n_head, n_head_kv, head_dim;
} shape;

static const shape shapes[] = {
    {"smollm2-135m", 9, 3, 64},
    {"qwen2.5-0.5b", 14, 2, 64},
    {"llama3.2-1b", 32, 8, 64},
};

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "bench_attn: %s: %s\n", what, err);
    exit(1);
}

/* Median microseconds of reps calls of slm_attn_run over args; *min the fastest call (on
 * the shared machine the least disturbed one). */
static double time_calls(slm_attn *a, const slm_attn_args *args, int reps, double *min) {
    double t[MAX_REPS];
    slm_attn_run(a, args, 0, 1); /* warm-up */
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_cpu_us();
        slm_attn_run(a, args, 0, 1);
        t[r] = bench_cpu_us() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    *min = t[0];
    return t[reps / 2];
}

static void run_shape(const shape *s, int32_t n_ctx, int reps, const char *only) {
    uint64_t rng = BENCH_SEED;
    char err[SLM_ERR_LEN];
    const slm_hparams hp = {.n_head = s->n_head, .n_head_kv = s->n_head_kv, .head_dim = s->head_dim,
                            .n_embd = s->n_head * s->head_dim, .n_layer = 1, .n_rot = s->head_dim};
    const int64_t nkv = (int64_t)s->n_head_kv * s->head_dim, nq = (int64_t)s->n_head * s->head_dim;
    const slm_kv_params kp = {.type = SLM_TYPE_F16, .n_cells = n_ctx + 1, .n_layer = 1, .n_embd_kv = nkv, .n_seq_max = 1};
    slm_kv *kv = NULL;
    slm_attn *a = NULL;
    if (slm_kv_create(&kp, &kv, err) != SLM_OK) die("kv", err);
    if (slm_attn_create(&hp, n_ctx + 1, SLM_TYPE_F16, 1, &a, err) != SLM_OK) die("attn", err);
    const int32_t n = n_ctx + 1;
    int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    int32_t *cells = malloc((size_t)n * sizeof *cells);
    float *k = malloc((size_t)nkv * sizeof *k), *v = malloc((size_t)nkv * sizeof *v);
    float *q = malloc((size_t)n * (size_t)nq * sizeof *q), *out = malloc((size_t)n * (size_t)nq * sizeof *out);
    if (!pos || !seq || !cells || !k || !v || !q || !out) die("memory", "out of memory");
    for (int32_t i = 0; i < n; i++) pos[i] = i;
    if (slm_kv_alloc(kv, n, pos, seq, cells, err) != SLM_OK) die("kv alloc", err);
    for (int32_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < nkv; j++) k[j] = bench_normal(&rng), v[j] = bench_normal(&rng);
        slm_kv_store(kv, 0, cells[i], k, v);
    }
    for (int64_t j = 0; j < (int64_t)n * nq; j++) q[j] = bench_normal(&rng);

    const slm_attn_args pp = {.hp = &hp, .kv = kv, .il = 0, .n = n_ctx, .pos = pos, .seq = seq, .q = q, .out = out};
    const slm_attn_args tg = {.hp = &hp, .kv = kv, .il = 0, .n = 1, .pos = pos + n_ctx, .seq = seq,
                              .q = q + (size_t)n_ctx * (size_t)nq, .out = out};
    double min_pp = 0, min_tg = 0;
    const double t_pp = strcmp(only, "tg") ? time_calls(a, &pp, reps, &min_pp) : 0;
    const double t_tg = strcmp(only, "pp") ? time_calls(a, &tg, reps, &min_tg) : 0;
    printf("%-13s %-6s pp%-5d %9.0f us/layer (min %6.0f)   tg@%-5d %7.1f us/layer (min %6.1f)\n", s->name,
           slm_quant_kernels()->name, n_ctx, t_pp, min_pp, n_ctx, t_tg, min_tg);
    free(pos), free(seq), free(cells), free(k), free(v), free(q), free(out);
    slm_attn_destroy(a);
    slm_kv_destroy(kv);
}

int main(int argc, char **argv) {
    const int32_t n_ctx = argc > 1 ? atoi(argv[1]) : DEFAULT_CTX;
    const int reps = argc > 2 ? atoi(argv[2]) : DEFAULT_REPS;
    const char *only = argc > 3 ? argv[3] : "both";
    if (n_ctx < 1 || n_ctx > 65536 || reps < 1 || reps > MAX_REPS || (strcmp(only, "pp") && strcmp(only, "tg") && strcmp(only, "both"))) {
        fprintf(stderr, "usage: bench_attn [n_ctx 1..65536] [reps 1..%d] [pp|tg|both]\n", MAX_REPS);
        return 2;
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(&shapes[i], n_ctx, reps, only);
    return 0;
}
