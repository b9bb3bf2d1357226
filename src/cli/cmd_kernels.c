/*
 * cli/cmd_kernels.c: `slmesh kernels`: which kernel set this machine uses, and how fast each
 * runnable set multiplies a matrix by N activation rows, per weight type and per path.
 *
 * For each type: a random rows x cols matrix (quantized with the reference quantizer) times
 * --vectors random activation rows (1: a decode step; 64 or more: a prompt), repeated for
 * about --ms milliseconds of thread CPU time per path. The paths are the ones the engine
 * may take: "dot" (the set's vec_dot, row by row), "gemm" (its tiled product, when it has
 * one) and "packed" (its packed layout, kernels.h, when it has one and rows are whole
 * groups). Prints the fastest product's time, multiply-adds and weight bytes per second,
 * and the largest difference from the scalar results relative to the largest scalar
 * output (the tiled and packed paths equal their set's vec_dot bit for bit).
 * Thread-safety: single-threaded program. Non-goals: end-to-end model speed (that is the
 * engine's benchmark, `slmesh bench`); multi-threaded products.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "quant/kernels.h"

/* Limits on the benchmark shape: enough for a 7B model's largest matrix row count, a
 * buffer of at most 2^31 floats of weights before quantization, and a prompt's worth of
 * activation rows. */
#define KERNELS_MAX_DIM 65536
#define KERNELS_MAX_ELEMS (INT64_C(1) << 31)
#define KERNELS_MAX_MS 60000
#define KERNELS_MAX_VECTORS 4096

static const char kernels_usage[] =
    "usage: slmesh kernels [--type T] [--rows N] [--cols N] [--vectors N] [--ms MS]\n"
    "  --type T      one weight type (q4_k, q8_0, f16, ...); default: the common ones\n"
    "  --rows N      matrix rows (default 1024)\n"
    "  --cols N      matrix columns, whole blocks of the type (any type: a multiple of 256; default 1024)\n"
    "  --vectors N   activation rows per product (default 1: decoding; e.g. 64: a prompt)\n"
    "  --ms MS       time spent per type, kernel set and path (default 200)\n"
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

/* The shape and buffers of one type's benchmark. */
typedef struct kbench {
    slm_type t;
    int64_t rows, cols, nv;
    size_t row_bytes, xq_bytes;
    const void *w;   /* rows x row_bytes, the file's layout */
    const void *wp;  /* the same packed by the set being timed, or NULL */
    const void *xq;  /* nv activation rows of xq_bytes */
    float *y;        /* [nv][rows] */
    const float *y0; /* the scalar set's results */
    double ms;
} kbench;

enum { PATH_DOT, PATH_GEMM, PATH_PACKED };
static const char *const path_names[] = {"dot", "gemm", "packed"};

static void run_path(const slm_quant_kernel_set *k, const kbench *b, int path) {
    if (path == PATH_GEMM) {
        k->gemm[b->t](b->cols, b->w, b->row_bytes, 0, b->rows, b->xq, b->xq_bytes, b->nv, b->y, (size_t)b->rows);
    } else if (path == PATH_PACKED) {
        k->gemm_packed[b->t](b->cols, b->wp, b->row_bytes, 0, b->rows / SLM_QUANT_PACK_ROWS, b->xq, b->xq_bytes, b->nv,
                             b->y, (size_t)b->rows, NULL);
    } else {
        for (int64_t v = 0; v < b->nv; v++)
            for (int64_t r = 0; r < b->rows; r++)
                b->y[v * b->rows + r] = k->vec_dot[b->t](b->cols, (const char *)b->w + (size_t)r * b->row_bytes,
                                                         (const char *)b->xq + (size_t)v * b->xq_bytes);
    }
}

/* Times one path of one set; prints its line. */
static void time_path(const slm_quant_kernel_set *k, const kbench *b, int path) {
    const slm_type_traits *tr = slm_type_traits_of(b->t);
    const double t0 = now_s();
    double per = INFINITY; /* the fastest of repeated products: other load only ever slows a run down */
    do {
        const double t1 = now_s();
        run_path(k, b, path);
        per = fmin(per, now_s() - t1);
    } while (now_s() - t0 < b->ms / 1000.0);
    /* difference from scalar relative to the outputs' scale (single outputs can be ~0) */
    double diff = 0, scale = 1e-30;
    const size_t n = (size_t)b->nv * (size_t)b->rows;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)b->y[i] - (double)b->y0[i]));
        scale = fmax(scale, fabs((double)b->y0[i]));
    }
    printf("%-7s %-7s %-6s %10.3f ms %8.2f GMAC/s %8.2f GB/s  max |diff| / max |y| vs scalar %.2e\n", tr->name,
           k->name, path_names[path], per * 1e3, (double)n * (double)b->cols / per / 1e9,
           (double)b->row_bytes * (double)b->rows / per / 1e9, diff / scale);
}

/* Times one type over every runnable set and path. */
static int bench_type(slm_type t, int64_t rows, int64_t cols, int64_t nv, double ms) {
    const slm_type_traits *tr = slm_type_traits_of(t);
    kbench b = {.t = t, .rows = rows, .cols = cols, .nv = nv, .ms = ms};
    float *wf = NULL, *x = NULL, *y = NULL, *y0 = NULL; /* owned */
    void *w = NULL, *wp = NULL, *xq = NULL;             /* owned */
    size_t nout;
    int rc = CLI_FAIL;
    if (!slm_type_row_bytes(t, cols, &b.row_bytes) || !slm_type_row_bytes(tr->vec_dot_type, cols, &b.xq_bytes) ||
        !slm_mul_size((size_t)nv, (size_t)rows, &nout))
        goto done;
    wf = slm_malloc((size_t)cols * sizeof(float));
    x = slm_malloc((size_t)cols * sizeof(float));
    y = slm_malloc(nout * sizeof(float));
    y0 = slm_malloc(nout * sizeof(float));
    w = slm_malloc(b.row_bytes * (size_t)rows);
    wp = slm_malloc(b.row_bytes * (size_t)rows);
    xq = slm_malloc(b.xq_bytes * (size_t)nv);
    if (!wf || !x || !y || !y0 || !w || !wp || !xq) goto done;
    uint64_t seed = 42;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) wf[c] = 0.05f * rand_unit(&seed);
        tr->from_float(wf, (char *)w + (size_t)r * b.row_bytes, cols);
    }
    for (int64_t v = 0; v < nv; v++) {
        for (int64_t c = 0; c < cols; c++) x[c] = rand_unit(&seed);
        /* Only F32 rows are used as they are; Q8_0 and F16 are their own vec_dot_type but
         * still take converted rows (copying the floats' bytes made garbage blocks). */
        if (tr->vec_dot_type == SLM_TYPE_F32) memcpy((char *)xq + (size_t)v * b.xq_bytes, x, b.xq_bytes);
        else slm_quant_act_convert(tr->vec_dot_type, x, (char *)xq + (size_t)v * b.xq_bytes, cols);
    }
    b.w = w, b.xq = xq, b.y = y, b.y0 = y0;
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        const slm_quant_kernel_set *k = slm_quant_kernels_isa((slm_quant_isa)isa);
        if (!k) continue;
        if (isa == SLM_QUANT_ISA_SCALAR) {
            b.y = y0; /* the reference results, timed like the others */
            time_path(k, &b, PATH_DOT);
            b.y = y;
            continue;
        }
        time_path(k, &b, PATH_DOT);
        if (k->gemm[t]) time_path(k, &b, PATH_GEMM);
        if (k->pack[t] && rows % SLM_QUANT_PACK_ROWS == 0 && cols <= SLM_QUANT_PACK_MAX_COLS) {
            for (int64_t g = 0; g < rows / SLM_QUANT_PACK_ROWS; g++) {
                const size_t off = (size_t)g * SLM_QUANT_PACK_ROWS * b.row_bytes;
                k->pack[t]((const char *)w + off, b.row_bytes, cols, (char *)wp + off);
            }
            b.wp = wp;
            time_path(k, &b, PATH_PACKED);
        }
    }
    rc = CLI_OK;
done:
    if (rc != CLI_OK) fprintf(stderr, "slmesh kernels: %s: out of memory or bad shape\n", tr->name);
    slm_free(wf), slm_free(x), slm_free(y), slm_free(y0), slm_free(w), slm_free(wp), slm_free(xq);
    return rc;
}

int cmd_kernels(int argc, char **argv) {
    static const slm_type defaults[] = {SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_Q8_0, SLM_TYPE_Q4_0,
                                        SLM_TYPE_Q5_0, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    long rows = 1024, cols = 1024, ms = 200, nv = 1;
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
            if (!cli_parse_long(v, 1, KERNELS_MAX_DIM, &cols))
                return cli_usage("kernels", kernels_usage, "--cols: '%s' is not in 1..%d", v, KERNELS_MAX_DIM);
        } else if (!strcmp(o, "--vectors")) {
            if (!cli_parse_long(v, 1, KERNELS_MAX_VECTORS, &nv))
                return cli_usage("kernels", kernels_usage, "--vectors: '%s' is not in 1..%d", v, KERNELS_MAX_VECTORS);
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
    /* whole blocks of the type (and of its activation type, which has the same block or a
     * divisor of it), or of every default type */
    const int64_t block = one != SLM_TYPE_COUNT ? slm_type_traits_of(one)->block_size : SLM_QK_K;
    if (cols % block)
        return cli_usage("kernels", kernels_usage, "--cols: %ld is not a multiple of %lld (%s)", cols, (long long)block,
                         one != SLM_TYPE_COUNT ? "the type's block" : "a K type's block; --type allows others");
    if ((int64_t)rows * cols > KERNELS_MAX_ELEMS)
        return cli_usage("kernels", kernels_usage, "--rows x --cols exceeds %lld elements", (long long)KERNELS_MAX_ELEMS);
    const char *env = getenv("SLMESH_KERNELS");
    printf("kernel set: %s (SLMESH_KERNELS=%s); runnable:", slm_quant_kernels()->name, env ? env : "");
    for (int isa = 0; isa < SLM_QUANT_ISA_COUNT; isa++) {
        if (slm_quant_kernels_isa((slm_quant_isa)isa)) printf(" %s", slm_quant_isa_name((slm_quant_isa)isa));
    }
    printf("\nmatrix %ld x %ld times %ld activation rows, one thread\n", rows, cols, nv);
    if (one != SLM_TYPE_COUNT) return bench_type(one, rows, cols, nv, (double)ms);
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        const int rc = bench_type(defaults[i], rows, cols, nv, (double)ms);
        if (rc != CLI_OK) return rc;
    }
    return CLI_OK;
}
