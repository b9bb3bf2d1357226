/*
 * cli/cli.h: the slmesh command-line program: one subcommand per file (cmd_<name>.c), each
 * an `int cmd_<name>(int argc, char **argv)` that receives argv[0] = its own name.
 *
 * Exit codes, for every subcommand:
 *   CLI_OK (0)    success
 *   CLI_FAIL (1)  the operation failed (bad model file, I/O error); message on stderr
 *   CLI_USAGE (2) bad usage: unknown option, missing or invalid value; usage on stderr
 * Only the CLI prints or exits; it turns library statuses into messages.
 */
#ifndef SLMESH_CLI_H
#define SLMESH_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "slmesh/status.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Print "slmesh CMD: <status text>: <detail>" to stderr and return CLI_FAIL. */
int cli_fail(const char *cmd, slm_status st, const char *detail);

/* Print "slmesh CMD: <message>" and the usage text to stderr; return CLI_USAGE. */
int cli_usage(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Strict number parsing for option values: the whole string must be a number in [lo, hi].
 * Return false on any junk, overflow or range error. */
bool cli_parse_long(const char *s, long lo, long hi, long *out);
bool cli_parse_double(const char *s, double lo, double hi, double *out);
bool cli_parse_u64(const char *s, uint64_t *out);

/* Subcommands, grouped as in main.c's table; each lives in cmd_<name>.c. Keep a blank line
 * between groups so that parallel work adds lines without touching the same ones. */
int cmd_version(int argc, char **argv);

/* model files */
int cmd_info(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

/* tokenizer */
int cmd_tokenize(int argc, char **argv);

/* inference */
int cmd_chat(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_score(int argc, char **argv);

/* speed */
int cmd_bench(int argc, char **argv);
int cmd_kernels(int argc, char **argv);

/* serving */
int cmd_serve(int argc, char **argv);

/* structured output */

/* governance */
int cmd_audit(int argc, char **argv);
int cmd_guard(int argc, char **argv);
int cmd_redact(int argc, char **argv);

/* task heads */
int cmd_head(int argc, char **argv);

#endif
