/*
 * cli/main.c: entry point of the slmesh program: find the subcommand, run it.
 *
 * The table below is the single list of subcommands; `slmesh help` prints it. Each
 * subcommand owns its option parsing (cli_parse_* for values) and its usage text.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>

#include "cli/cli.h"

typedef struct {
    const char *name;                 /* what the user types */
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
    const char *summary;              /* one line for `slmesh help` */
} cli_command;

/* Keep one entry per line, with a blank line between groups: parallel work adds entries
 * to different groups without touching the same lines. */
static const cli_command commands[] = {
    {"version", cmd_version, "print the version"},

    /* model files */
    {"info", cmd_info, "show a GGUF file's metadata, tokenizer and tensors"},
    {"quantize", cmd_quantize, "convert a model's weights to Q8_0, Q4_K_M, ... as the reference tool does"},

    /* tokenizer */
    {"tokenize", cmd_tokenize, "print the token ids of a text"},

    /* inference */
    {"run", cmd_run, "generate a continuation of a prompt"},
    {"score", cmd_score, "log-probabilities of the next token at every prompt position"},
    {"perplexity", cmd_perplexity, "perplexity of a text file"},
    {"chat", cmd_chat, "interactive chat with the model's template"},

    /* speed */
    {"kernels", cmd_kernels, "show the chosen kernel set and time matrix-vector products per type"},
    {"bench", cmd_bench, "prompt (pp) and generation (tg) speed of a model or of a random model of a real shape"},

    /* serving */
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},

    /* structured output */

    /* governance */
    {"audit", cmd_audit, "append, verify, export, checkpoint the hash-chained audit log"},
    {"guard", cmd_guard, "train the PII tagger, check text against a policy"},
    {"redact", cmd_redact, "find and redact personal data in text"},

    /* task heads */
    {"head", cmd_head, "task heads: train, eval, predict, bench"},
};

static void print_help(FILE *out) {
    fprintf(out, "usage: slmesh COMMAND [OPTIONS]   (slmesh COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int cli_fail(const char *cmd, slm_status st, const char *detail) {
    if (detail && *detail)
        fprintf(stderr, "slmesh %s: %s: %s\n", cmd, slm_status_str(st), detail);
    else
        fprintf(stderr, "slmesh %s: %s\n", cmd, slm_status_str(st));
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *usage, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "slmesh %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage ? usage : "");
    return CLI_USAGE;
}

bool cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v;
    if (!s || !*s) return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    if (!s || !*s) return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || isnan(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v;
    if (!s || !*s || *s == '-') return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = (uint64_t)v;
    return true;
}

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("slmesh 0.1.0\n");
    return CLI_OK;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "slmesh: unknown command '%s'\n", argv[1]);
    print_help(stderr);
    return CLI_USAGE;
}
