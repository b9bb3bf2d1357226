/*
 * bench/bench.h: the library part of `slmesh bench`: random-weight models of real shapes
 * (built with the project's quantizer and GGUF writer) and the pp/tg measurement itself.
 *
 * Shapes: the architectures and sizes of public small models (../shared/bench/README.md):
 * weights normal(0, sigma) (2-D), embeddings normal(0, 0.5), norms uniform 1 +- 0.1, biases
 * normal(0, sigma), from a seeded counter-based generator (each row has its own stream, so
 * the file is the same for any thread count), and a made-up SentencePiece vocabulary of the
 * right size (<unk>, <s>, </s>, the 256 byte tokens, then synthetic pieces) so that the
 * model loads like any other. Weights are generated and quantized row by row on a thread
 * pool straight into the quantized buffers (no F32 copy of a tensor is ever held); the
 * quantized tensors are held until the file is written.
 * Measurement (as llama-bench): pp = one batch of n_prompt random tokens on an empty cache
 * (logits of the last token only); tg = n_gen single-token decodes from an empty cache;
 * one warm-up run of each, then reps timed runs; tokens/s per run, mean and sample standard
 * deviation over the runs (llama-bench's avg_ts and stddev_ts), and the median.
 *
 * Thread-safety: functions are reentrant; a context is used by one thread (slmesh.h).
 * Non-goals: batched multi-sequence throughput (the server's benchmark), GPU.
 */
#ifndef SLMESH_BENCH_H
#define SLMESH_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "quantize/quantize.h"
#include "slmesh/slmesh.h"

/* ---- shapes -------------------------------------------------------------------------------- */

#define SLM_BENCH_MAX_TENSORS (3 + 12 * 256) /* per model: 3 globals + 12 per layer */

typedef struct slm_bench_shape {
    const char *name;      /* "smollm2-135m" */
    const char *arch;      /* general.architecture: "llama", "qwen2" */
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
    bool qkv_bias;         /* q/k/v biases (qwen2) */
    float rope_base, rms_eps;
    float sigma;           /* standard deviation of the 2-D weights */
} slm_bench_shape;

/* The shape called name, or NULL. Static storage. */
const slm_bench_shape *slm_bench_shape_find(const char *name);
/* Names of the shapes, "|"-separated (usage texts). */
const char *slm_bench_shape_list(void);

/* One tensor of a shape's model as it will be written. */
typedef struct slm_bench_tensor {
    char name[48];
    uint32_t n_dims;
    int64_t ne[2];
    slm_type type;         /* after the mixture rules */
    uint64_t bytes;
} slm_bench_tensor;

/* The tensors of shape s (with n_layer_override layers when > 0) quantized as ftype, in
 * the order they are written (the reference quantizer's order). *n gets the count (at most
 * SLM_BENCH_MAX_TENSORS); totals of bytes and elements in *bytes and *params (may be
 * NULL). */
slm_status slm_bench_shape_plan(const slm_bench_shape *s, int32_t n_layer_override, slm_ftype ftype,
                                slm_bench_tensor *out, int32_t *n, uint64_t *bytes, uint64_t *params, char *err);

/* Build the random model and write it to path (atomically). n_threads 0 = physical cores. */
slm_status slm_bench_shape_build(const slm_bench_shape *s, int32_t n_layer_override, slm_ftype ftype, uint64_t seed,
                                 int32_t n_threads, const char *path, char *err);

/* ---- measurement ----------------------------------------------------------------------------- */

#define SLM_BENCH_MAX_REPS 100     /* -r upper bound */
#define SLM_BENCH_MAX_TOKENS 8192  /* -p / -n upper bound (SLM_CTX_MAX_BATCH) */

typedef struct slm_bench_params {
    int32_t n_prompt;      /* pp test tokens; 0 = no pp test */
    int32_t n_gen;         /* tg test tokens; 0 = no tg test */
    int32_t reps;          /* timed runs per test, 1..SLM_BENCH_MAX_REPS */
    int32_t n_threads;     /* 0 = physical cores */
    uint64_t seed;         /* random tokens */
} slm_bench_params;

typedef struct slm_bench_result {
    int32_t n_prompt, n_gen;   /* what was measured (one of them is 0) */
    int32_t reps;
    double ts[SLM_BENCH_MAX_REPS]; /* tokens/s of each run */
    double ns[SLM_BENCH_MAX_REPS]; /* wall time of each run */
    double avg_ts, stddev_ts, median_ts, avg_ns;
    double cores_busy;     /* process CPU time / wall time over the timed runs: below the
                              thread count when the machine is shared (others had the cores) */
} slm_bench_result;

/* Run the pp and tg tests on m (borrowed). pp/tg receive the figures of the tests that
 * ran (n_prompt / n_gen > 0); either may be NULL when that test is off. */
slm_status slm_bench_run(const slm_model *m, const slm_bench_params *p, slm_bench_result *pp, slm_bench_result *tg,
                         char *err);

/* ---- memory bandwidth ------------------------------------------------------------------------ */

#define SLM_BENCH_BANDWIDTH_BYTES ((size_t)512 << 20) /* buffer read: far beyond the caches */

/* Read bandwidth of this machine with n_threads threads (0 = physical cores): a buffer of
 * bytes (>= 1 MiB) is written once, then read reps times by all threads, each its own
 * slice; *gbs gets the best pass in GB/s (1e9 bytes per second), the bound of decoding:
 * every weight byte is read once per generated token. */
slm_status slm_bench_bandwidth(int32_t n_threads, size_t bytes, int32_t reps, double *gbs, char *err);

#endif /* SLMESH_BENCH_H */
