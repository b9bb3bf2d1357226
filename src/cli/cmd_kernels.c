/*
 * cli/cmd_kernels.c: `slmesh kernels`: which kernel set this machine uses, and how fast each
 * runnable set does a matrix-vector product per weight type.
 *
 * For each type: a random rows x cols matrix (quantized with the reference quantizer) times
 * a random vector, repeated for about --ms milliseconds of thread CPU time per kernel set;
 * prints the fastest product's time, the weight bytes streamed per second, and the largest difference of the set's
 * results from the scalar ones relative to the largest scalar output.
 * Thread-safety: single-threaded program. Non-goals: end-to-end model speed (that is the
 * engine's benchmark); multi-threaded products.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "quant/kernels.h"

/* Limits on the benchmark shape: enough for a 7B model's largest matrix row count, and
 * a buffer of at most 2^31 floats of weights before quantization. */
#define KERNELS_MAX_DIM 65536
#define KERNELS_MAX_ELEMS (INT64_C(1) << 31)
#define KERNELS_MAX_MS 60000

static const char kernels_usage[] =
    "usage: slmesh kernels [--type T] [--rows N] [--cols N] [--ms MS]\n"
    "  --type T   one weight type (q4_k, q8_0, f16, ...); default: the common ones\n"
    "  --rows N   matrix rows (default 1024)\n"
    "  --cols N   matrix columns, a multiple of 256 (default 1024)\n"
    "  --ms MS    time spent per type and kernel set (default 200)\n"
    "The set used by slmesh is chosen from the CPU; SLMESH_KERNELS=scalar|avx2|avx512 overrides.\n";

/* Thread CPU time: on a shared machine, waiting for a core does not count. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Deterministic pseudo-random floats in [-1, 1). */
static float rand_unit(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* Times one type over every runnable set; prints one line per set. */
static int bench_type(slm_type t, int64_t rows, int64_t cols, double ms) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    const slm_type_traits *vt = slm_type_traits_of(tr->vec_dot_type);
    size_t row_bytes, xq_bytes;
    float *wf = NULL, *x = NULL, *y = NULL, *y0 = NULL; /* owned */
    void *w = NULL, *xq = NULL;                         /* owned */
    int rc = CLI_FAIL;
    if (!slm_type_row_bytes(t, cols, &row_bytes) || !slm_type_row_bytes(tr->vec_dot_type, cols, &xq_bytes)) goto done;
    wf = slm_malloc((size_t)cols * sizeof(float));
    x = slm_malloc((size_t)cols * sizeof(float));
    y = slm_malloc((size_t)rows * sizeof(float));
    y0 = slm_malloc((size_t)rows * sizeof(float));
    w = slm_malloc(row_bytes * (size_t)rows);
    xq = slm_malloc(xq_bytes);
    if (!wf || !x || !y || !y0 || !w || !xq) goto done;
    uint64_t seed = 42;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) wf[c] = 0.05f * rand_unit(&seed);
        tr->from_float(wf, (char *)w + (size_t)r * row_bytes, cols);
    }
    for (int64_t c = 0; c < cols; c++) x[c] = rand_unit(&seed);
    vt->from_float(x, xq, cols);
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        const slm_vec_dot_fn dot = k->vec_dot[t];
        /* the fastest of repeated products: other load only ever slows a run down */
        const double t0 = now_s();
        double per = INFINITY;
        do {
            const double t1 = now_s();
            for (int64_t r = 0; r < rows; r++) y[r] = dot(cols, (const char *)w + (size_t)r * row_bytes, xq);
            per = fmin(per, now_s() - t1);
        } while (now_s() - t0 < ms / 1000.0);
        /* difference from scalar relative to the outputs' scale (single outputs can be ~0) */
        double diff = 0, scale = 1e-30;
        if (isa == SLM_QUANT_ISA_SCALAR) memcpy(y0, y, (size_t)rows * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            diff = fmax(diff, fabs((double)y[r] - (double)y0[r]));
            scale = fmax(scale, fabs((double)y0[r]));
        }
        printf("%-7s %-7s %10.3f ms %8.2f GB/s  max |diff| / max |y| vs scalar %.2e\n", tr->name, k->name, per * 1e3,
               (double)row_bytes * (double)rows / per / 1e9, diff / scale);
    }
    rc = CLI_OK;
done:
    if (rc != CLI_OK) fprintf(stderr, "slmesh kernels: %s: out of memory or bad shape\n", tr->name);
    slm_free(wf), slm_free(x), slm_free(y), slm_free(y0), slm_free(w), slm_free(xq);
    return rc;
}

int cmd_kernels(int argc, char **argv) {
    static const slm_type defaults[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_Q8_0, SLM_TYPE_Q4_0,
                                        SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    long rows = 1024, cols = 1024, ms = 200;
    slm_type one = SLM_TYPE_COUNT;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return cli_usage("kernels", kernels_usage, "help");
        if (i + 1 >= argc) return cli_usage("kernels", kernels_usage, "%s: missing value or unknown option", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--rows")) {
            if (!cli_parse_long(v, 1, KERNELS_MAX_DIM, &rows))
                return cli_usage("kernels", kernels_usage, "--rows: '%s' is not in 1..%d", v, KERNELS_MAX_DIM);
        } else if (!strcmp(o, "--cols")) {
            if (!cli_parse_long(v, SLM_QK_K, KERNELS_MAX_DIM, &cols) || cols % SLM_QK_K)
                return cli_usage("kernels", kernels_usage, "--cols: '%s' is not a multiple of %d up to %d", v, SLM_QK_K,
                                 KERNELS_MAX_DIM);
        } else if (!strcmp(o, "--ms")) {
            if (!cli_parse_long(v, 1, KERNELS_MAX_MS, &ms))
                return cli_usage("kernels", kernels_usage, "--ms: '%s' is not in 1..%d", v, KERNELS_MAX_MS);
        } else if (!strcmp(o, "--type")) {
            const slm_type_traits *tr;
            if (!slm_type_from_name(v, &one) || !(tr = slm_type_traits_of(one)) || !tr->from_float || !tr->vec_dot)
                return cli_usage("kernels", kernels_usage, "--type: '%s' is not a type slmesh computes with", v);
        } else {
            return cli_usage("kernels", kernels_usage, "unknown option '%s'", o);
        }
    }
    if ((int64_t)rows * cols > KERNELS_MAX_ELEMS)
        return cli_usage("kernels", kernels_usage, "--rows x --cols exceeds %lld elements", (long long)KERNELS_MAX_ELEMS);
    const char *env = getenv("SLMESH_KERNELS");
    printf("kernel set: %s (SLMESH_KERNELS=%s); runnable:", slm_quant_kernels()->name, env ? env : "");
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        if (slm_quant_kernels_isa((slm_quant_isa)isa)) printf(" %s", slm_quant_isa_name((slm_quant_isa)isa));
    }
    printf("\nmatrix %ld x %ld, one thread\n", rows, cols);
    if (one != SLM_TYPE_COUNT) return bench_type(one, rows, cols, (double)ms);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        const int rc = bench_type(defaults[i], rows, cols, (double)ms);
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}
