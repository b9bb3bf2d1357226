/*
 * cli/cmd_quantize.c: `slmesh quantize IN.gguf OUT.gguf TYPE`: convert a model's weights
 * as the reference runtime's quantize tool does (same per-tensor types, same blocks for the
 * same input), with the library in src/quantize/. Prints one summary line.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "quantize/quantize.h"

static const char quantize_usage[] =
    "usage: slmesh quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize] [-t N]\n"
    "  TYPE                one of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L,\n"
    "                      Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, F16, BF16, F32 (case-insensitive);\n"
    "                      Q3_K, Q4_K, Q5_K are the reference tool's aliases of the _M mixtures\n"
    "  --pure              every quantized tensor in TYPE's base type (no mixture rules: output\n"
    "                      and attn_v/ffn_down keep the base type too)\n"
    "  --allow-requantize  accept an already quantized input (dequantized first)\n"
    "  -t, --threads N     threads (default: physical cores)\n"
    "Input: F32/F16/BF16 (or quantized with --allow-requantize). 1-D tensors and norms keep\n"
    "their type; general.file_type is set to TYPE's number.\n";

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    slm_quantize_params p = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(quantize_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--pure")) {
            p.pure = true;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *val;
            if (!cli_opt_value(argc, argv, &i, &val)) return cli_usage("quantize", quantize_usage, "option %s needs a value", a);
            if (!cli_parse_long(val, 1, CLI_MAX_THREADS, &v))
                return cli_usage("quantize", quantize_usage, "bad thread count '%s'", val);
            p.n_threads = (int32_t)v;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("quantize", quantize_usage, "unknown option '%s'", a);
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            return cli_usage("quantize", quantize_usage, "unexpected argument '%s'", a);
        }
    }
    if (n_pos < 3) return cli_usage("quantize", quantize_usage, "need IN.gguf OUT.gguf TYPE");
    if (!slm_quantize_ftype_from_name(pos[2], &p.ftype))
        return cli_usage("quantize", quantize_usage, "unknown type '%s'", pos[2]);
    if (!strcmp(pos[0], pos[1])) return cli_usage("quantize", quantize_usage, "IN and OUT are the same file");

    char err[SLM_ERR_LEN] = "";
    slm_quantize_stats s;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    slm_status st = slm_quantize_file(pos[0], pos[1], &p, &s, err);
    if (st) return cli_fail("quantize", st, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s -> %s (%s%s): %lld tensors, %lld converted, %d fallbacks, %.2f MiB -> %.2f MiB, %.2f s; types:",
           pos[0], pos[1], slm_quantize_ftype_name(p.ftype), p.pure ? ", pure" : "", (long long)s.n_tensors,
           (long long)s.n_converted, s.n_fallback, (double)s.bytes_in / 1048576.0, (double)s.bytes_out / 1048576.0, secs);
    for (int t = 0; t < SLM_TYPE_COUNT; t++)
        if (s.n_of_type[t]) printf(" %s %lld", slm_type_name((slm_type)t), (long long)s.n_of_type[t]);
    printf("\n");
    return CLI_OK;
}
