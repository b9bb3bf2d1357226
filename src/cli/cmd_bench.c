/*
 * cli/cmd_bench.c: `slmesh bench`: prompt processing (pp) and generation (tg) speed of a
 * model file, or of a random-weight model of a real shape built on the spot (--shape), as
 * llama-bench measures them; Markdown table or JSON lines with llama-bench's field names.
 *
 * A --shape model is built in a child process (so that the peak RSS reported is that of
 * the benchmark, not of the build), written to --save FILE or to a temporary file that is
 * removed afterwards, then opened like any model.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "cli/cli_model.h"
#include "quant/kernels.h"

static const char bench_usage[] =
    "usage: slmesh bench (-m MODEL | --shape S [--type T] [--save FILE.gguf]) [-t N] [-p N] [-n N] [-r N]\n"
    "                    [-o md|jsonl] [--no-mmap] [--no-repack] [--seed N]\n"
    "  -m, --model PATH   GGUF model file\n"
    "  --shape S          random-weight model of a real shape: smollm2-135m|qwen2.5-0.5b|llama3.2-1b\n"
    "  --type T           its weight types: q8_0, q4_k_m, q4_0, ... (slmesh quantize's names; default q8_0)\n"
    "  --save FILE        keep the built model there (else a temporary file is removed)\n"
    "  --shape-layers N   build only N layers (for fast tests; not the real shape)\n"
    "  -t, --threads N    threads (default: physical cores)\n"
    "  -p, --n-prompt N   pp test: N prompt tokens in one batch (default 512; 0 = no pp test)\n"
    "  -n, --n-gen N      tg test: N tokens generated one by one (default 128; 0 = no tg test)\n"
    "  -r, --repetitions N timed runs per test after one warm-up (default 5)\n"
    "  -o md|jsonl        Markdown table (default) or one JSON object per test (llama-bench fields)\n"
    "  --no-mmap          read the model into memory instead of mapping it\n"
    "  --no-repack        keep the file's weight layout (default: repacked at load for this CPU)\n"
    "  --seed N           seed of the random weights and tokens (default 1)\n"
    "  --bandwidth        instead: measure the memory read bandwidth with -t threads (the tg bound)\n";

#define BENCH_DEFAULT_PROMPT 512
#define BENCH_DEFAULT_GEN    128
#define BENCH_DEFAULT_REPS   5

typedef struct bench_opts {
    cli_model_opts mo;
    const char *shape, *type, *save;
    int32_t shape_layers, n_prompt, n_gen, reps;
    bool jsonl, bandwidth;
    uint64_t seed;
} bench_opts;

/* Parse argv into o; returns CLI_OK, or CLI_USAGE after printing the reason (or -1 for --help). */
static int parse(int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt("bench", bench_usage, argc, argv, &i, &o->mo);
        if (r < 0) return CLI_USAGE;
        if (r > 0) continue;
        const char *a = argv[i], *val = NULL;
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(bench_usage, stdout);
            return -1;
        }
        if (!strcmp(a, "--bandwidth")) {
            o->bandwidth = true;
            continue;
        }
        const bool takes = !strcmp(a, "--shape") || !strcmp(a, "--type") || !strcmp(a, "--save") ||
                           !strcmp(a, "--shape-layers") || !strcmp(a, "-p") || !strcmp(a, "--n-prompt") ||
                           !strcmp(a, "-n") || !strcmp(a, "--n-gen") || !strcmp(a, "-r") ||
                           !strcmp(a, "--repetitions") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
                           !strcmp(a, "--seed");
        if (!takes) return cli_usage("bench", bench_usage, "unknown option '%s'", a);
        if (!cli_opt_value(argc, argv, &i, &val)) return cli_usage("bench", bench_usage, "option %s needs a value", a);
        if (!strcmp(a, "--shape")) {
            if (!slm_bench_shape_find(val))
                return cli_usage("bench", bench_usage, "unknown shape '%s' (%s)", val, slm_bench_shape_list());
            o->shape = val;
        } else if (!strcmp(a, "--type")) {
            slm_ftype f;
            if (!slm_quantize_ftype_from_name(val, &f)) return cli_usage("bench", bench_usage, "unknown type '%s'", val);
            o->type = val;
        } else if (!strcmp(a, "--save")) {
            o->save = val;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (strcmp(val, "md") && strcmp(val, "jsonl"))
                return cli_usage("bench", bench_usage, "bad output format '%s' (md or jsonl)", val);
            o->jsonl = !strcmp(val, "jsonl");
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_u64(val, &o->seed)) return cli_usage("bench", bench_usage, "bad seed '%s'", val);
        } else {
            const bool reps = !strcmp(a, "-r") || !strcmp(a, "--repetitions"), layers = !strcmp(a, "--shape-layers");
            const long lo = reps || layers ? 1 : 0, hi = reps ? SLM_BENCH_MAX_REPS : layers ? 256 : SLM_BENCH_MAX_TOKENS;
            if (!cli_parse_long(val, lo, hi, &v))
                return cli_usage("bench", bench_usage, "bad value '%s' for %s (%ld..%ld)", val, a, lo, hi);
            if (reps) o->reps = (int32_t)v;
            else if (layers) o->shape_layers = (int32_t)v;
            else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) o->n_prompt = (int32_t)v;
            else o->n_gen = (int32_t)v;
        }
    }
    if (o->bandwidth) {
        if (o->mo.model || o->shape) return cli_usage("bench", bench_usage, "--bandwidth goes without -m and --shape");
        return CLI_OK;
    }
    if (!o->mo.model == !o->shape) return cli_usage("bench", bench_usage, "give either -m MODEL or --shape S");
    if (!o->shape && (o->type || o->save || o->shape_layers))
        return cli_usage("bench", bench_usage, "--type, --save and --shape-layers go with --shape");
    if (o->n_prompt == 0 && o->n_gen == 0) return cli_usage("bench", bench_usage, "-p 0 and -n 0: nothing to measure");
    return CLI_OK;
}

/* Build the shape into path in a child process; CLI_OK or CLI_FAIL (message printed). */
static int build_shape(const bench_opts *o, const char *path) {
    slm_ftype ftype = SLM_FTYPE_MOSTLY_Q8_0;
    if (o->type) slm_quantize_ftype_from_name(o->type, &ftype);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return cli_fail("bench", SLM_ERR_IO, "fork");
    if (pid == 0) {
        char err[SLM_ERR_LEN] = "";
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        slm_status st = slm_bench_shape_build(slm_bench_shape_find(o->shape), o->shape_layers, ftype, o->seed,
                                              o->mo.n_threads, path, err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (st) _exit(cli_fail("bench", st, err));
        fprintf(stderr, "slmesh bench: built %s %s in %.1f s\n", o->shape, slm_quantize_ftype_name(ftype),
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        _exit(CLI_OK);
    }
    int ws = 0;
    if (waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return CLI_FAIL;
    return CLI_OK;
}

/* ---- output ----------------------------------------------------------------------------- */

static void print_md_header(void) {
    printf("| model | size | params | threads | test | t/s | peak RSS |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
}

static void print_md_row(const char *model, const slm_model_desc *d, int32_t threads, const slm_bench_result *r,
                         long rss_kib) {
    char test[32];
    if (r->n_prompt) snprintf(test, sizeof test, "pp%d", r->n_prompt);
    else snprintf(test, sizeof test, "tg%d", r->n_gen);
    printf("| %s | %.2f MiB | %.2f M | %d | %s | %.2f ± %.2f | %.1f MiB |\n", model, (double)d->weight_bytes / 1048576.0,
           (double)d->n_params / 1e6, threads, test, r->avg_ts, r->stddev_ts, (double)rss_kib / 1024.0);
}

static void print_jsonl_row(const char *filename, const char *model_type, const slm_model_desc *d, int32_t threads,
                            const slm_bench_result *r, long rss_kib) {
    json_t *o = json_object(), *samples = json_array();
    for (int i = 0; i < r->reps; i++) json_array_append_new(samples, json_real(r->ts[i]));
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(o, "model_filename", json_string(filename));
    json_object_set_new(o, "model_type", json_string(model_type));
    json_object_set_new(o, "model_size", json_integer((json_int_t)d->weight_bytes));
    json_object_set_new(o, "model_n_params", json_integer((json_int_t)d->n_params));
    json_object_set_new(o, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(o, "n_gen", json_integer(r->n_gen));
    json_object_set_new(o, "n_threads", json_integer(threads));
    json_object_set_new(o, "kernels", json_string(slm_quant_kernels()->name));
    json_object_set_new(o, "test_time", json_string(date));
    json_object_set_new(o, "avg_ns", json_integer((json_int_t)r->avg_ns));
    json_object_set_new(o, "avg_ts", json_real(r->avg_ts));
    json_object_set_new(o, "stddev_ts", json_real(r->stddev_ts));
    json_object_set_new(o, "median_ts", json_real(r->median_ts));
    json_object_set_new(o, "samples_ts", samples);
    json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)rss_kib * 1024));
    json_object_set_new(o, "cores_busy", json_real(r->cores_busy));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (s) puts(s);
    free(s);
    json_decref(o);
}

/* ---- command -------------------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.n_prompt = BENCH_DEFAULT_PROMPT, .n_gen = BENCH_DEFAULT_GEN, .reps = BENCH_DEFAULT_REPS, .seed = 1};
    int rc = parse(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    if (o.bandwidth) {
        char err[SLM_ERR_LEN] = "";
        double gbs = 0;
        const int32_t threads = o.mo.n_threads > 0 ? o.mo.n_threads : slm_pool_default_threads();
        slm_status st = slm_bench_bandwidth(threads, SLM_BENCH_BANDWIDTH_BYTES, o.reps, &gbs, err);
        if (st) return cli_fail("bench", st, err);
        if (o.jsonl) printf("{\"test\":\"read_bandwidth\",\"n_threads\":%d,\"read_gbs\":%.3f}\n", threads, gbs);
        else printf("read bandwidth: %.2f GB/s with %d threads (best of %d passes over %zu MiB)\n", gbs, threads, o.reps,
                    SLM_BENCH_BANDWIDTH_BYTES >> 20);
        return CLI_OK;
    }

    char tmp[4096] = "", filename[256];
    const char *path = o.mo.model;
    if (o.shape) {
        slm_ftype ftype = SLM_FTYPE_MOSTLY_Q8_0;
        if (o.type) slm_quantize_ftype_from_name(o.type, &ftype);
        char lower[16];
        snprintf(lower, sizeof lower, "%s", slm_quantize_ftype_name(ftype));
        for (char *c = lower; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        snprintf(filename, sizeof filename, "%s-shape-%s.gguf", o.shape, lower); /* the reference rows' names */
        if (o.save) {
            path = o.save;
        } else {
            const char *td = getenv("TMPDIR");
            snprintf(tmp, sizeof tmp, "%s/slmesh-bench-XXXXXX.gguf", td && *td ? td : "/tmp");
            int fd = mkstemps(tmp, 5);
            if (fd < 0) return cli_fail("bench", SLM_ERR_IO, tmp);
            close(fd);
            path = tmp;
        }
        if ((rc = build_shape(&o, path)) != CLI_OK) {
            if (*tmp) unlink(tmp);
            return rc;
        }
    } else {
        const char *slash = strrchr(path, '/');
        snprintf(filename, sizeof filename, "%s", slash ? slash + 1 : path);
    }

    char err[SLM_ERR_LEN] = "";
    slm_model *m = NULL;
    slm_model_params mp = {.no_mmap = o.mo.no_mmap, .no_repack = o.mo.no_repack};
    slm_status st = slm_model_open(path, &mp, &m, err);
    if (*tmp) unlink(tmp); /* the mapping keeps the data until the model is closed */
    if (st) return cli_fail("bench", st, err);
    slm_model_desc d;
    slm_model_describe(m, &d);
    const int32_t threads = o.mo.n_threads > 0 ? o.mo.n_threads : slm_pool_default_threads();
    slm_bench_params bp = {.n_prompt = o.n_prompt, .n_gen = o.n_gen, .reps = o.reps, .n_threads = threads, .seed = o.seed};
    slm_bench_result pp, tg;
    st = slm_bench_run(m, &bp, &pp, &tg, err);
    if (st) {
        slm_model_close(m);
        return cli_fail("bench", st, err);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char model_type[96];
    snprintf(model_type, sizeof model_type, "%s %s%s%s", d.arch, o.shape ? o.shape : d.ftype, o.shape ? " " : "",
             o.shape ? filename + strlen(o.shape) + 7 : "");
    if (o.shape) model_type[strlen(model_type) - 5] = '\0'; /* drop ".gguf" */
    if (o.jsonl) {
        if (o.n_prompt) print_jsonl_row(filename, model_type, &d, threads, &pp, ru.ru_maxrss);
        if (o.n_gen) print_jsonl_row(filename, model_type, &d, threads, &tg, ru.ru_maxrss);
    } else {
        print_md_header();
        if (o.n_prompt) print_md_row(model_type, &d, threads, &pp, ru.ru_maxrss);
        if (o.n_gen) print_md_row(model_type, &d, threads, &tg, ru.ru_maxrss);
        printf("\nkernels: %s; %d timed runs per test after a warm-up; mean ± sd (median pp %.2f, tg %.2f t/s);\n"
               "cores busy (CPU time / wall time; below %d when the machine is shared): pp %.2f, tg %.2f\n",
               slm_quant_kernels()->name, o.reps, o.n_prompt ? pp.median_ts : 0.0, o.n_gen ? tg.median_ts : 0.0,
               threads, o.n_prompt ? pp.cores_busy : 0.0, o.n_gen ? tg.cores_busy : 0.0);
    }
    slm_model_close(m);
    return CLI_OK;
}
