/*
 * cli/cmd_chat.c: `slmesh chat`: an interactive conversation over stdin. Each line is a
 * user message; the whole conversation is rendered with the model's chat template (or
 * --chat-template NAME), tokenized with special tokens, and only the part not already in
 * the KV cache is evaluated (the common token prefix with the previous turn is kept).
 * Replies stream to stdout; the "> " prompt and statistics go to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/chat.h"
#include "core/core.h"
#include "cli/cli.h"
#include "cli/cli_model.h"

#define CHAT_DEFAULT_N   512  /* most tokens per reply when -n is absent */
#define CHAT_DEFAULT_CTX 4096 /* KV cells when --ctx is absent (capped by the model's) */

static const char chat_usage[] =
    "usage: slmesh chat -m MODEL [--chat-template NAME] [--system TEXT] [options]\n"
    "  -m, --model PATH        GGUF model file\n"
    "  --chat-template NAME    template family (default: detected from the model)\n"
    "  --system TEXT           system message\n"
    "  -n N                    most tokens per reply (default 512)\n"
    "  --temp, --top-k, --top-p, --min-p, --repeat-penalty, --seed   as for `slmesh run`\n"
    "  -t N, -c/--ctx N, --no-mmap                                   as for `slmesh run`\n";

typedef struct chat_state {
    slm_chat_message *msgs; /* [n_msgs], contents malloc'd */
    size_t n_msgs, cap_msgs;
    int32_t *cached;        /* tokens whose K/V are in sequence 0, malloc'd */
    size_t n_cached;
    char *reply;            /* the reply being generated, malloc'd */
    size_t reply_len, reply_cap;
    int32_t *gen;           /* tokens of the reply, malloc'd */
    size_t n_gen, gen_cap;
    bool oom;               /* an append failed */
} chat_state;

static bool chat_token(const slm_gen_token *t, void *user) {
    chat_state *s = user;
    if (t->text_len) {
        fwrite(t->text, 1, t->text_len, stdout);
        fflush(stdout);
        if (s->reply_len + t->text_len + 1 > s->reply_cap) {
            size_t cap = 2 * (s->reply_len + t->text_len + 1);
            char *r = realloc(s->reply, cap);
            if (!r) return s->oom = true, false;
            s->reply = r, s->reply_cap = cap;
        }
        memcpy(s->reply + s->reply_len, t->text, t->text_len);
        s->reply_len += t->text_len;
        s->reply[s->reply_len] = '\0';
    }
    if (t->id >= 0) {
        if (s->n_gen == s->gen_cap) {
            size_t cap = s->gen_cap ? 2 * s->gen_cap : 256;
            int32_t *g = realloc(s->gen, cap * sizeof *g);
            if (!g) return s->oom = true, false;
            s->gen = g, s->gen_cap = cap;
        }
        s->gen[s->n_gen++] = t->id;
    }
    return true;
}

static bool add_message(chat_state *s, const char *role, const char *content) {
    if (s->n_msgs == s->cap_msgs) {
        size_t cap = s->cap_msgs ? 2 * s->cap_msgs : 16;
        slm_chat_message *m = realloc(s->msgs, cap * sizeof *m);
        if (!m) return false;
        s->msgs = m, s->cap_msgs = cap;
    }
    char *c = strdup(content);
    if (!c) return false;
    s->msgs[s->n_msgs++] = (slm_chat_message){.role = role, .content = c};
    return true;
}

static void chat_free(chat_state *s) {
    for (size_t i = 0; i < s->n_msgs; i++) free((char *)s->msgs[i].content);
    free(s->msgs), free(s->cached), free(s->reply), free(s->gen);
}

/* One turn: render, evaluate the new suffix, generate and record the reply. */
static int chat_turn(slm_ctx *c, slm_chat_template tpl, chat_state *s, const slm_gen_params *gp) {
    const slm_model *m = slm_ctx_model(c);
    char err[SLM_ERR_LEN] = "", *text = NULL;
    size_t text_len = 0, n = 0;
    int32_t *ids = NULL;
    slm_status st = slm_chat_render(tpl, s->msgs, s->n_msgs, SLM_CHAT_ADD_GENERATION_PROMPT, &text, &text_len, err);
    if (st) return cli_fail("chat", st, err);
    int rc = cli_tokenize("chat", m, text, text_len, SLM_TOKENIZE_ADD_BOS | SLM_TOKENIZE_PARSE_SPECIAL, &ids, &n);
    slm_free(text);
    if (rc) return rc;
    size_t k = 0; /* tokens already in the cache */
    while (k < n && k < s->n_cached && ids[k] == s->cached[k]) k++;
    if (k == n) k = n - 1; /* re-evaluate one token to get its logits */
    slm_ctx_seq_rm(c, 0, (int32_t)k, -1, NULL);
    s->reply_len = 0, s->n_gen = 0;
    slm_gen_result res;
    st = slm_ctx_generate(c, 0, ids + k, n - k, gp, chat_token, s, &res, err);
    fputc('\n', stdout);
    fflush(stdout);
    if (st == SLM_OK && !s->oom) {
        /* the cache now holds ids and the reply's tokens but its last */
        int32_t *cached = realloc(ids, (n + s->n_gen) * sizeof *ids);
        if (cached) {
            if (s->n_gen > 1) memcpy(cached + n, s->gen, (s->n_gen - 1) * sizeof *cached);
            free(s->cached);
            s->cached = cached, s->n_cached = n + (s->n_gen > 0 ? s->n_gen - 1 : 0);
            ids = NULL;
        }
        fprintf(stderr, "[%d new prompt tokens (%zu cached), %d generated, %.1f tok/s]\n", res.n_prompt, k,
                res.n_generated, res.gen_ms > 0 ? res.n_generated * 1e3 / res.gen_ms : 0.0);
        if (!add_message(s, "assistant", s->reply ? s->reply : "")) rc = cli_fail("chat", SLM_ERR_NOMEM, "history");
    } else {
        rc = cli_fail("chat", s->oom ? SLM_ERR_NOMEM : st, err);
    }
    free(ids);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    cli_model_opts mo = {0};
    const char *tpl_name = NULL, *system = NULL, *v = NULL;
    long n_gen = CHAT_DEFAULT_N;
    slm_sampling sp = slm_sampling_default();
    bool seeded = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_model_opt("chat", chat_usage, argc, argv, &i, &mo);
        if (r == 0) r = cli_sampling_opt("chat", chat_usage, argc, argv, &i, &sp, &seeded);
        if (r < 0) return CLI_USAGE;
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(chat_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--chat-template")) {
            if (!cli_opt_value(argc, argv, &i, &tpl_name)) return cli_usage("chat", chat_usage, "option %s needs a value", a);
        } else if (!strcmp(a, "--system")) {
            if (!cli_opt_value(argc, argv, &i, &system)) return cli_usage("chat", chat_usage, "option %s needs a value", a);
        } else if (!strcmp(a, "-n")) {
            if (!cli_opt_value(argc, argv, &i, &v) || !cli_parse_long(v, 1, 1 << 20, &n_gen))
                return cli_usage("chat", chat_usage, "bad value for -n");
        } else {
            return cli_usage("chat", chat_usage, "unknown option '%s'", a);
        }
    }
    if (!mo.model) return cli_usage("chat", chat_usage, "missing -m MODEL");
    slm_chat_template tpl = SLM_CHAT_CHATML;
    char err[SLM_ERR_LEN] = "";
    if (tpl_name && slm_chat_template_from_name(tpl_name, &tpl, err) != SLM_OK)
        return cli_usage("chat", chat_usage, "%s", err);
    if (!seeded) sp.seed = (uint64_t)time(NULL);

    slm_model *m;
    slm_ctx *c;
    int rc = cli_model_load("chat", &mo, CHAT_DEFAULT_CTX, &m, &c);
    if (rc) return rc;
    const char *jinja;
    size_t jlen;
    if (!tpl_name) {
        if (slm_model_meta_str(m, "tokenizer.chat_template", &jinja, &jlen) != SLM_OK)
            fprintf(stderr, "slmesh chat: the model has no chat template; using chatml\n");
        else if (slm_chat_template_detect(jinja, jlen, &tpl, err) != SLM_OK)
            fprintf(stderr, "slmesh chat: %s; using chatml\n", err);
    }
    const slm_chat_info *info = slm_chat_template_info(tpl);
    int32_t n_stop = 0;
    while (n_stop < SLM_CHAT_MAX_STOPS && info->stops[n_stop]) n_stop++;
    slm_gen_params gp = {.max_tokens = (int32_t)n_gen, .sampling = sp, .stop = info->stops, .n_stop = n_stop};
    chat_state s = {0};
    if (system && !add_message(&s, "system", system)) rc = cli_fail("chat", SLM_ERR_NOMEM, "history");
    fprintf(stderr, "slmesh chat: template %s; end with Ctrl-D\n", info->name);
    char *line = NULL;
    size_t line_cap = 0;
    while (rc == CLI_OK) {
        fputs("> ", stderr);
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (!add_message(&s, "user", line)) rc = cli_fail("chat", SLM_ERR_NOMEM, "history");
        else rc = chat_turn(c, tpl, &s, &gp);
    }
    free(line);
    chat_free(&s);
    slm_ctx_destroy(c);
    slm_model_close(m);
    return rc;
}
