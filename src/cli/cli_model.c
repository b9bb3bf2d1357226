/*
 * cli/cli_model.c: shared option handling and model loading of the inference subcommands
 * (see cli_model.h).
 */
#include "cli/cli_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

bool cli_opt_value(int argc, char **argv, int *i, const char **val) {
    if (*i + 1 >= argc) return false;
    *val = argv[++*i];
    return true;
}

int cli_model_opt(const char *cmd, const char *usage, int argc, char **argv, int *i, cli_model_opts *o) {
    const char *a = argv[*i], *v = NULL;
    long n;
    if (!strcmp(a, "--no-mmap")) {
        o->no_mmap = true;
        return 1;
    }
    if (!strcmp(a, "--no-repack")) {
        o->no_repack = true;
        return 1;
    }
    if (!strcmp(a, "--mlock")) {
        o->mlock = true;
        return 1;
    }
    if (strcmp(a, "-m") && strcmp(a, "--model") && strcmp(a, "-t") && strcmp(a, "--threads") && strcmp(a, "--ctx") &&
        strcmp(a, "-c"))
        return 0;
    if (!cli_opt_value(argc, argv, i, &v)) return cli_usage(cmd, usage, "option %s needs a value", a), -1;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        o->model = v;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!cli_parse_long(v, 1, CLI_MAX_THREADS, &n))
            return cli_usage(cmd, usage, "bad thread count '%s' (1..%d)", v, CLI_MAX_THREADS), -1;
        o->n_threads = (int32_t)n;
    } else {
        if (!cli_parse_long(v, 1, CLI_MAX_CTX, &n))
            return cli_usage(cmd, usage, "bad context size '%s' (1..%d)", v, CLI_MAX_CTX), -1;
        o->n_ctx = (int32_t)n;
    }
    return 1;
}

int cli_model_load(const char *cmd, const cli_model_opts *o, int32_t default_ctx, slm_model **m, slm_ctx **c) {
    char err[SLM_ERR_LEN] = "";
    slm_model_params mp = {.no_mmap = o->no_mmap, .mlock = o->mlock, .no_repack = o->no_repack};
    *m = NULL, *c = NULL;
    slm_status st = slm_model_open(o->model, &mp, m, err);
    if (st) return cli_fail(cmd, st, err);
    slm_model_desc d;
    slm_model_describe(*m, &d);
    int32_t n_ctx = o->n_ctx ? o->n_ctx : default_ctx < d.n_ctx_train ? default_ctx : d.n_ctx_train;
    slm_ctx_params cp = {.n_ctx = n_ctx, .n_batch = n_ctx < 512 ? n_ctx : 512, .n_threads = o->n_threads};
    st = slm_ctx_create(*m, &cp, c, err);
    if (st) {
        slm_model_close(*m);
        *m = NULL;
        return cli_fail(cmd, st, err);
    }
    return CLI_OK;
}

int cli_tokenize(const char *cmd, const slm_model *m, const char *text, size_t len, int flags, int32_t **ids,
                 size_t *n) {
    char err[SLM_ERR_LEN] = "";
    size_t cap = len + 8; /* usually enough: most tokens cover a byte or more, plus BOS/EOS */
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return cli_fail(cmd, SLM_ERR_NOMEM, "token buffer");
    slm_status st = slm_model_tokenize(m, text, len, flags, *ids, cap, n, err);
    if (st == SLM_ERR_FULL && *n > cap) { /* a vocabulary without byte tokens can give more: *n says how many */
        int32_t *grown = realloc(*ids, *n * sizeof **ids);
        if (!grown) snprintf(err, sizeof err, "token buffer of %zu tokens", *n);
        st = grown ? slm_model_tokenize(m, text, len, flags, grown, *n, n, err) : SLM_ERR_NOMEM;
        *ids = grown ? grown : *ids;
    }
    if (st) {
        free(*ids);
        *ids = NULL;
        return cli_fail(cmd, st, err);
    }
    return CLI_OK;
}

int cli_sampling_opt(const char *cmd, const char *usage, int argc, char **argv, int *i, slm_sampling *s,
                     bool *seeded) {
    const char *a = argv[*i], *v = NULL;
    double d = 0;
    long n = 0;
    uint64_t u = 0;
    if (strcmp(a, "--temp") && strcmp(a, "--top-k") && strcmp(a, "--top-p") && strcmp(a, "--min-p") &&
        strcmp(a, "--repeat-penalty") && strcmp(a, "--seed"))
        return 0;
    if (!cli_opt_value(argc, argv, i, &v)) return cli_usage(cmd, usage, "option %s needs a value", a), -1;
    bool ok;
    if (!strcmp(a, "--temp")) ok = cli_parse_double(v, 0, 100, &d), s->temperature = (float)d;
    else if (!strcmp(a, "--top-k")) ok = cli_parse_long(v, 0, 1 << 21, &n), s->top_k = (int32_t)n;
    else if (!strcmp(a, "--top-p")) ok = cli_parse_double(v, 1e-9, 1, &d), s->top_p = (float)d;
    else if (!strcmp(a, "--min-p")) ok = cli_parse_double(v, 0, 1, &d), s->min_p = (float)d;
    else if (!strcmp(a, "--repeat-penalty")) ok = cli_parse_double(v, 1e-3, 100, &d), s->repeat_penalty = (float)d;
    else ok = cli_parse_u64(v, &u), s->seed = u, *seeded = true;
    if (!ok) return cli_usage(cmd, usage, "bad value '%s' for %s", v, a), -1;
    return 1;
}
