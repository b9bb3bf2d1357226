/*
 * bench/bench_sample.c: per-step cost of the sampler on a Qwen2-sized vocabulary
 * (151,936 logits), for the chains a server runs: greedy, llama.cpp's default (top_k 40,
 * top_p 0.95, min_p 0.05, T 0.8), top_p 0.95 alone over the whole vocabulary, and the
 * stateless confidence pass (slm_sample_probs) by itself.
 *
 * Logits are synthetic, from a fixed seed so runs are comparable: normal(0, LOGIT_SIGMA)
 * noise for the bulk of the vocabulary and N_PEAK tokens standing a gap above it, in two
 * shapes: "peaked" (gap PEAK_GAP: the likely tokens hold most of the mass, as a trained
 * model's next-token distribution usually does) and "flat" (gap FLAT_GAP: the 150k-token
 * tail holds most of the mass, the worst case for top_p, whose nucleus is then huge). Prints one line per case: thread-CPU microseconds per step (mean over STEPS,
 * after WARMUP). Not a test: run by hand (see docs/benchmarks.md).
 *   usage: bench_sample [n_vocab] [steps]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "sample/sample.h"

#define DEFAULT_VOCAB 151936 /* Qwen2/2.5's vocabulary, the largest of the target models */
#define DEFAULT_STEPS 300    /* steps per case; ~0.1-1 ms each */
#define WARMUP 20            /* steps before timing (caches, page faults) */
#define N_LOGIT_SETS 8       /* distinct logit vectors cycled through */
#define LOGIT_SIGMA 2.0f     /* spread of the bulk of the logits */
#define PEAK_GAP 18.0f       /* "peaked": the likely tokens stand this far above the bulk */
#define FLAT_GAP 8.0f        /* "flat": a gap small enough for the tail to dominate */
#define N_PEAK 5             /* likely tokens per step */

static void run(const char *name, slm_sample_params p, float **sets, int32_t n, int steps) {
    slm_sampler *s = NULL;
    char err[SLM_ERR_LEN];
    if (slm_sample_create(&p, n, &s, err) != SLM_OK) {
        fprintf(stderr, "%s: %s\n", name, err);
        exit(1);
    }
    double t0 = 0;
    long checksum = 0;
    for (int i = 0; i < WARMUP + steps; i++) {
        if (i == WARMUP) t0 = bench_cpu_us();
        slm_sample_out o;
        if (slm_sample_next(s, sets[i % N_LOGIT_SETS], n, NULL, &o, err) != SLM_OK) {
            fprintf(stderr, "%s: %s\n", name, err);
            exit(1);
        }
        slm_sample_accept(s, &o.id, 1, NULL);
        checksum += o.id;
    }
    double us = (bench_cpu_us() - t0) / steps;
    printf("%-40s %8.1f us/step   (checksum %ld)\n", name, us, checksum);
    slm_sample_destroy(s);
}

static void make_sets(float **sets, int32_t n, float gap) {
    uint64_t rng = BENCH_SEED;
    for (int k = 0; k < N_LOGIT_SETS; k++) {
        for (int32_t i = 0; i < n; i++) sets[k][i] = LOGIT_SIGMA * bench_normal(&rng);
        for (int j = 0; j < N_PEAK; j++) sets[k][(int32_t)(bench_uniform(&rng) * n)] += gap + (float)j;
    }
}

static void run_all(const char *shape, float **sets, int32_t n, int steps) {
    char name[96];
    slm_sample_params greedy = slm_sample_params_default();
    greedy.temperature = 0.0f;
    snprintf(name, sizeof name, "%s: greedy", shape);
    run(name, greedy, sets, n, steps);
    greedy.n_probs = 5;
    snprintf(name, sizeof name, "%s: greedy + 5 alternatives", shape);
    run(name, greedy, sets, n, steps);

    slm_sample_params def = slm_sample_params_default();
    snprintf(name, sizeof name, "%s: default chain", shape);
    run(name, def, sets, n, steps);
    def.repeat_penalty = 1.1f;
    snprintf(name, sizeof name, "%s: default + repeat_penalty", shape);
    run(name, def, sets, n, steps);

    slm_sample_params topk = slm_sample_params_default();
    topk.top_p = 1.0f;
    topk.min_p = 0.0f;
    snprintf(name, sizeof name, "%s: top_k 40 only", shape);
    run(name, topk, sets, n, steps);

    slm_sample_params topp = slm_sample_params_default();
    topp.top_k = 0;
    topp.min_p = 0.0f;
    snprintf(name, sizeof name, "%s: top_p 0.95 only", shape);
    run(name, topp, sets, n, steps);

    double t0 = bench_cpu_us();
    double acc = 0;
    for (int i = 0; i < steps; i++) {
        slm_sample_out o;
        slm_sample_probs(sets[i % N_LOGIT_SETS], n, 0, 5, &o, NULL);
        acc += o.entropy;
    }
    snprintf(name, sizeof name, "%s: slm_sample_probs (5 alts)", shape);
    printf("%-40s %8.1f us/step   (mean entropy %.2f nats)\n", name, (bench_cpu_us() - t0) / steps, acc / steps);
}

int main(int argc, char **argv) {
    int32_t n = argc > 1 ? (int32_t)atol(argv[1]) : DEFAULT_VOCAB;
    int steps = argc > 2 ? atoi(argv[2]) : DEFAULT_STEPS;
    if (n < 100 || steps < 1) {
        fprintf(stderr, "usage: bench_sample [n_vocab >= 100] [steps >= 1]\n");
        return 2;
    }
    float *sets[N_LOGIT_SETS];
    for (int k = 0; k < N_LOGIT_SETS; k++) {
        sets[k] = malloc((size_t)n * sizeof(float));
        if (!sets[k]) return 1;
    }
    printf("n_vocab %d, %d steps per case, thread CPU time\n", (int)n, steps);
    make_sets(sets, n, PEAK_GAP);
    run_all("peaked", sets, n, steps);
    make_sets(sets, n, FLAT_GAP);
    run_all("flat", sets, n, steps);
    for (int k = 0; k < N_LOGIT_SETS; k++) free(sets[k]);
    return 0;
}
