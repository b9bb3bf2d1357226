/*
 * cli/cmd_run.c: `slmesh run`: tokenize a prompt (BOS added), generate a continuation and
 * stream it to stdout as it is produced (whole UTF-8 characters only); statistics go to
 * stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "slmesh/grammar.h"

#define RUN_DEFAULT_N    128   /* tokens generated when -n is absent */
#define RUN_MAX_N        (1 << 20)
#define RUN_DEFAULT_CTX  2048  /* KV cells when --ctx is absent (capped by the model's) */

static const char run_usage[] =
    "usage: slmesh run -m MODEL -p TEXT [options]\n"
    "  -m, --model PATH       GGUF model file\n"
    "  -p, --prompt TEXT      prompt (BOS is added when the vocabulary says so)\n"
    "  -n N                   tokens to generate (default 128)\n"
    "  --temp T               temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K              keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P              nucleus sampling, 1 = off (default 0.95)\n"
    "  --min-p P              drop tokens below P * the best probability (default 0.05)\n"
    "  --repeat-penalty R     penalise the last 64 tokens, 1 = off (default 1.0)\n"
    "  --seed S               random seed (default: from the clock, printed)\n"
    "  -t, --threads N        threads (default: physical cores)\n"
    "  -c, --ctx N            context size (default 2048, at most the model's)\n"
    "  --no-mmap              read the model into memory instead of mapping it\n"
    "  --mlock                lock the model in memory (best effort)\n"
    "  --no-repack            keep the file's weight layout (default: repacked at load for this CPU)\n"
    "  --json-schema FILE     constrain the output to JSON valid under the schema\n"
    "  --grammar FILE         constrain the output to a GBNF grammar\n"
    "  --regex RE             constrain the output to match the regular expression\n";

static bool print_token(const slm_gen_token *t, void *user) {
    (void)user;
    if (t->text_len) {
        fwrite(t->text, 1, t->text_len, stdout);
        fflush(stdout);
    }
    return true;
}

static const char *stop_name(slm_gen_stop s) {
    static const char *const names[] = {"error", "end of generation", "length", "stop string", "callback",
                                        "cancelled", "context full", "grammar complete"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

/* Compile the --json-schema / --grammar file or --regex text. Exit code: 0, 1 (I/O), 2 (the
 * grammar is rejected: unsupported keyword or syntax error, named on stderr). */
static int load_grammar(const char *schema_path, const char *gbnf_path, const char *regex, slm_grammar **out) {
    char err[SLM_ERR_LEN] = "";
    slm_status st;
    if (regex) {
        st = slm_grammar_from_regex(regex, strlen(regex), out, err);
    } else {
        const char *path = schema_path ? schema_path : gbnf_path;
        FILE *f = fopen(path, "rb");
        if (!f) return cli_fail("run", SLM_ERR_IO, path);
        char *buf = malloc(SLM_GRAMMAR_MAX_SOURCE + 1);
        size_t n = buf ? fread(buf, 1, SLM_GRAMMAR_MAX_SOURCE + 1, f) : 0;
        fclose(f);
        if (!buf) return cli_fail("run", SLM_ERR_NOMEM, path);
        st = schema_path ? slm_grammar_from_json_schema(buf, n, out, err) : slm_grammar_from_gbnf(buf, n, out, err);
        free(buf);
    }
    if (st == SLM_ERR_NOMEM || st == SLM_ERR_IO) return cli_fail("run", st, err);
    if (st) return cli_usage("run", run_usage, "%s: %s", schema_path ? "--json-schema" : gbnf_path ? "--grammar" : "--regex", err);
    return CLI_OK;
}

int cmd_run(int argc, char **argv) {
    cli_model_opts mo = {0};
    const char *schema_path = NULL, *gbnf_path = NULL, *regex = NULL;
    const char *prompt = NULL;
    long n_gen = RUN_DEFAULT_N;
    slm_sampling s = slm_sampling_default();
    bool seeded = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt("run", run_usage, argc, argv, &i, &mo);
        if (r == 0) r = cli_sampling_opt("run", run_usage, argc, argv, &i, &s, &seeded);
        if (r < 0) return CLI_USAGE;
        if (r > 0) continue;
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!cli_opt_value(argc, argv, &i, &prompt)) return cli_usage("run", run_usage, "option %s needs a value", a);
        } else if (!strcmp(a, "-n")) {
            if (!cli_opt_value(argc, argv, &i, &v) || !cli_parse_long(v, 1, RUN_MAX_N, &n_gen))
                return cli_usage("run", run_usage, "bad value for -n (1..%d)", RUN_MAX_N);
        } else if (!strcmp(a, "--json-schema") || !strcmp(a, "--grammar") || !strcmp(a, "--regex")) {
            if (!cli_opt_value(argc, argv, &i, &v)) return cli_usage("run", run_usage, "option %s needs a value", a);
            *(a[2] == 'j' ? &schema_path : a[2] == 'g' ? &gbnf_path : &regex) = v;
        } else {
            return cli_usage("run", run_usage, "unknown option '%s'", a);
        }
    }
    if ((schema_path != NULL) + (gbnf_path != NULL) + (regex != NULL) > 1)
        return cli_usage("run", run_usage, "--json-schema, --grammar and --regex exclude each other");
    slm_grammar *gr = NULL;
    if (schema_path || gbnf_path || regex) {
        int grc = load_grammar(schema_path, gbnf_path, regex, &gr);
        if (grc) return grc;
    }
    if (!mo.model || !prompt) {
        slm_grammar_release(gr);
        return cli_usage("run", run_usage, !mo.model ? "missing -m MODEL" : "missing -p TEXT");
    }
    if (!seeded) s.seed = (uint64_t)time(NULL);

    slm_model *m;
    slm_ctx *c;
    int rc = cli_model_load("run", &mo, RUN_DEFAULT_CTX, &m, &c);
    if (rc) {
        slm_grammar_release(gr);
        return rc;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    rc = cli_tokenize("run", m, prompt, strlen(prompt), SLM_TOKENIZE_ADD_BOS, &ids, &n_ids);
    if (rc == CLI_OK && n_ids == 0) rc = cli_fail("run", SLM_ERR_INVALID_ARG, "the prompt has no tokens");
    if (rc == CLI_OK) {
        slm_gen_params gp = {.max_tokens = (int32_t)n_gen, .sampling = s, .grammar = gr};
        slm_gen_result res;
        char err[SLM_ERR_LEN] = "";
        slm_status st = slm_ctx_generate(c, 0, ids, n_ids, &gp, print_token, NULL, &res, err);
        fputc('\n', stdout);
        fflush(stdout);
        if (st) {
            rc = cli_fail("run", st, err);
        } else {
            fprintf(stderr, "prompt: %d tokens in %.1f ms (%.1f tok/s); generated: %d tokens in %.1f ms (%.1f tok/s); "
                            "stop: %s; seed %llu\n",
                    res.n_prompt, res.prompt_ms, res.prompt_ms > 0 ? res.n_prompt * 1e3 / res.prompt_ms : 0.0,
                    res.n_generated, res.gen_ms, res.gen_ms > 0 ? res.n_generated * 1e3 / res.gen_ms : 0.0,
                    stop_name(res.stop), (unsigned long long)s.seed);
        }
    }
    free(ids);
    slm_grammar_release(gr);
    slm_ctx_destroy(c);
    slm_model_close(m);
    return rc;
}
