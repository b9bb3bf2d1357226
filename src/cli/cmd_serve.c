/*
 * cli/cmd_serve.c: `slmesh serve`: the OpenAI-compatible HTTP server (src/server) on one
 * model (-m PATH) or the models of a config file (--config FILE, docs/server.md).
 * Signals: SIGINT and SIGTERM are blocked in every thread and taken by sigwait here, which
 * then shuts the server down gracefully (exit 0). The access log goes to stdout as JSON
 * lines; notices go to stderr.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_model.h"
#include "core/core.h"
#include "server/server.h"

static const char serve_usage[] =
    "usage: slmesh serve (-m MODEL | --config FILE) [options]\n"
    "  -m, --model PATH        GGUF model (its name: the file name without .gguf)\n"
    "  --config FILE           JSON config with several models (docs/server.md)\n"
    "  --host ADDR             listen address (default 127.0.0.1)\n"
    "  --port N                port (default 8080)\n"
    "  --api-key KEY           require 'Authorization: Bearer KEY' (all routes but /health)\n"
    "  --api-key-file FILE     the same, the key read from FILE (first line)\n"
    "  --parallel N            sequences decoded together (default 4)\n"
    "  --queue N               requests waiting for a slot before 429 (default 64)\n"
    "  --ctx N                 KV cells shared by the slots (default: parallel x min(4096, model context))\n"
    "  -t N                    threads (default: physical cores)\n"
    "  --no-mmap               read the model files into memory instead of mapping them\n"
    "  --mlock                 lock the models' weights in memory (best effort)\n"
    "  --chat-template NAME    template family instead of the model's\n"
    "  --cache-tokens N        prefix-cache budget in tokens (default: the KV size)\n"
    "  --timeout S             per-request deadline in seconds (default 600; 0 = none)\n"
    "  --grace S               shutdown grace period in seconds (default 10)\n"
    "  --max-body BYTES        request body limit (default 1048576)\n"
    "  --max-tokens N          largest max_tokens (default 4096)\n"
    "  --max-n N               largest n (default 8)\n"
    "  --max-messages N        most chat messages (default 256)\n"
    "  --max-prompt-tokens N   longest prompt (default: the slot's context)\n"
    "  --memory-budget MB      bytes of loaded models before LRU eviction (default: unlimited)\n"
    "  --log-prompts           include prompt text in the access log\n";

#define SERVE_DEFAULT_CTX    4096 /* positions per slot unless the model's context is smaller */
#define SERVE_DEFAULT_PARALLEL 4   /* the scheduler's default */
#define SERVE_DEFAULT_PORT   8080
#define SERVE_DEFAULT_TIMEOUT 600.0
#define SERVE_DEFAULT_GRACE  10.0

static void log_line(void *user, const char *line) {
    (void)user;
    printf("%s\n", line);
    fflush(stdout);
}

static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char buf[SLM_SERVER_MAX_KEY + 2];
    char *k = NULL;
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[0]) k = slm_strdup(buf);
    }
    fclose(f);
    return k;
}

int cmd_serve(int argc, char **argv) {
    slm_server_config cfg = {.host = "127.0.0.1", .port = SERVE_DEFAULT_PORT, .max_body = SLM_SERVER_MAX_BODY,
                             .timeout_s = SERVE_DEFAULT_TIMEOUT, .grace_s = SERVE_DEFAULT_GRACE, .log = log_line};
    slm_sched_params sp = {0};
    const char *model = NULL, *config = NULL, *key_file = NULL, *tpl = NULL;
    long ctx = 0;
    slm_model_params load = {0}; /* --no-mmap, --mlock: every model (a config may also set them per model) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long n;
        double d;
#define NEED_VALUE() \
    if (!cli_opt_value(argc, argv, &i, &v)) return cli_usage("serve", serve_usage, "%s needs a value", a)
#define LONG_OPT(lo, hi) \
    NEED_VALUE(); \
    if (!cli_parse_long(v, (lo), (hi), &n)) return cli_usage("serve", serve_usage, "bad value for %s: %s", a, v)
#define DOUBLE_OPT(lo, hi) \
    NEED_VALUE(); \
    if (!cli_parse_double(v, (lo), (hi), &d)) return cli_usage("serve", serve_usage, "bad value for %s: %s", a, v)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(serve_usage, stdout);
            return CLI_OK;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_VALUE(); model = v; }
        else if (!strcmp(a, "--config")) { NEED_VALUE(); config = v; }
        else if (!strcmp(a, "--host")) { NEED_VALUE(); cfg.host = v; }
        else if (!strcmp(a, "--port")) { LONG_OPT(0, 65535); cfg.port = (uint16_t)n; }
        else if (!strcmp(a, "--api-key")) { NEED_VALUE(); cfg.api_key = v; }
        else if (!strcmp(a, "--api-key-file")) { NEED_VALUE(); key_file = v; }
        else if (!strcmp(a, "--parallel")) { LONG_OPT(1, SLM_SCHED_MAX_PARALLEL); sp.n_parallel = (int32_t)n; }
        else if (!strcmp(a, "--queue")) { LONG_OPT(0, SLM_SCHED_MAX_QUEUE); sp.n_queue = n ? (int32_t)n : -1; }
        else if (!strcmp(a, "--ctx")) { LONG_OPT(1, CLI_MAX_CTX); ctx = n; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { LONG_OPT(1, CLI_MAX_THREADS); sp.n_threads = (int32_t)n; }
        else if (!strcmp(a, "--chat-template")) { NEED_VALUE(); tpl = v; }
        else if (!strcmp(a, "--cache-tokens")) { LONG_OPT(0, CLI_MAX_CTX); sp.cache_tokens = (int32_t)n; }
        else if (!strcmp(a, "--timeout")) { DOUBLE_OPT(0, 86400); cfg.timeout_s = d; }
        else if (!strcmp(a, "--grace")) { DOUBLE_OPT(0, 3600); cfg.grace_s = d; }
        else if (!strcmp(a, "--max-body")) { LONG_OPT(64, 1L << 30); cfg.max_body = (size_t)n; }
        else if (!strcmp(a, "--max-tokens")) { LONG_OPT(1, 1 << 20); cfg.max_tokens = (int32_t)n; }
        else if (!strcmp(a, "--max-n")) { LONG_OPT(1, 64); cfg.max_n = (int32_t)n; }
        else if (!strcmp(a, "--max-messages")) { LONG_OPT(1, 4096); cfg.max_messages = (int32_t)n; }
        else if (!strcmp(a, "--max-prompt-tokens")) { LONG_OPT(1, CLI_MAX_CTX); cfg.max_prompt_tokens = (int32_t)n; }
        else if (!strcmp(a, "--memory-budget")) { LONG_OPT(0, 1L << 30); cfg.memory_budget = (size_t)n << 20; }
        else if (!strcmp(a, "--log-prompts")) cfg.log_prompts = true;
        else if (!strcmp(a, "--no-mmap")) load.no_mmap = true;
        else if (!strcmp(a, "--mlock")) load.mlock = true;
        else return cli_usage("serve", serve_usage, "unknown option %s", a);
#undef NEED_VALUE
#undef LONG_OPT
#undef DOUBLE_OPT
    }
    if (!model == !config) return cli_usage("serve", serve_usage, "give one of -m MODEL or --config FILE");
    char err[SLM_ERR_LEN] = "";
    char *key = NULL;
    if (key_file && !(key = read_key_file(key_file)))
        return cli_fail("serve", SLM_ERR_IO, "cannot read an API key from --api-key-file");
    if (key) cfg.api_key = key;
    if (cfg.api_key && strlen(cfg.api_key) > SLM_SERVER_MAX_KEY) {
        slm_free(key);
        return cli_usage("serve", serve_usage, "the API key is longer than %d bytes", SLM_SERVER_MAX_KEY);
    }
    slm_status st;
    if (model) {
        if (ctx == 0) {
            slm_model *m;
            if ((st = slm_model_open(model, &load, &m, err))) {
                slm_free(key);
                return cli_fail("serve", st, err);
            }
            slm_model_desc dsc;
            slm_model_describe(m, &dsc);
            /* each slot gets the model's context (at most the default); the cache holds them all */
            sp.n_ctx_slot = dsc.n_ctx_train < SERVE_DEFAULT_CTX ? dsc.n_ctx_train : SERVE_DEFAULT_CTX;
            ctx = (long)sp.n_ctx_slot * (sp.n_parallel ? sp.n_parallel : SERVE_DEFAULT_PARALLEL);
            slm_model_close(m);
        }
        sp.n_ctx = (int32_t)ctx;
        st = slm_server_config_single(model, &sp, &cfg, err);
        if (st == SLM_OK && tpl) {
            slm_chat_template t;
            if (slm_chat_template_from_name(tpl, &t, err) != SLM_OK) {
                slm_server_config_free(&cfg);
                slm_free(key);
                return cli_usage("serve", serve_usage, "%s", err);
            }
            cfg.models[0].chat_template = slm_strdup(tpl);
        }
    } else {
        st = slm_server_config_load(config, &cfg, err);
    }
    if (st) {
        slm_free(key);
        return cli_fail("serve", st, err);
    }
    for (int32_t i = 0; i < cfg.n_models; i++) {
        cfg.models[i].load.no_mmap |= load.no_mmap;
        cfg.models[i].load.mlock |= load.mlock;
    }
    /* every thread created from here on inherits the blocked signals; sigwait takes them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    slm_server *srv = NULL;
    st = slm_server_start(&cfg, &srv, err);
    int rc = CLI_OK;
    if (st) {
        rc = cli_fail("serve", st, err);
    } else {
        fprintf(stderr, "slmesh serve: listening on http://%s:%u (default model %s)\n", cfg.host, slm_server_port(srv),
                cfg.models[0].name);
        int sig = 0;
        sigwait(&set, &sig);
        fprintf(stderr, "slmesh serve: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        slm_server_destroy(srv);
        fprintf(stderr, "slmesh serve: stopped\n");
    }
    slm_server_config_free(&cfg);
    slm_free(key);
    return rc;
}
