/*
 * cli/cli_model.h: what the inference subcommands (run, score, perplexity, chat) share:
 * the model and context options (-m, -t, --ctx, --no-mmap), opening the model and a
 * context with messages on failure, and tokenizing into a right-sized array.
 * Only the CLI prints; these helpers print the messages of their failures.
 */
#ifndef SLMESH_CLI_MODEL_H
#define SLMESH_CLI_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/slmesh.h"

#define CLI_MAX_CTX     (1 << 20) /* --ctx upper bound (the KV limit is larger; RAM is not) */
#define CLI_MAX_THREADS 256       /* -t upper bound (SLM_POOL_MAX_THREADS) */

typedef struct cli_model_opts {
    const char *model;  /* -m PATH (borrowed from argv) */
    int32_t n_threads;  /* -t N; 0 = physical cores */
    int32_t n_ctx;      /* --ctx N; 0 = the command's default */
    bool no_mmap;       /* --no-mmap */
    bool mlock;         /* --mlock: lock the weights in memory (best effort) */
    bool no_repack;     /* --no-repack: keep the file's weight layout */
} cli_model_opts;

/* If argv[*i] is a common option, consume it (and its value: *i advances) and return 1;
 * return 0 when it is not one; on a bad or missing value print usage and return -1. */
int cli_model_opt(const char *cmd, const char *usage, int argc, char **argv, int *i, cli_model_opts *o);

/* Open o->model and a context of o->n_ctx cells, or when that is 0 of default_ctx capped
 * by the model's training context (n_batch = min(n_ctx, 512)).
 * On failure print the reason and return CLI_FAIL (nothing to free); CLI_OK otherwise. */
int cli_model_load(const char *cmd, const cli_model_opts *o, int32_t default_ctx, slm_model **m, slm_ctx **c);

/* Tokenize len bytes (flags SLM_TOKENIZE_*) into *ids (malloc'd, caller frees), *n ids. */
int cli_tokenize(const char *cmd, const slm_model *m, const char *text, size_t len, int flags, int32_t **ids,
                 size_t *n);

/* Sampling options --temp, --top-k, --top-p, --min-p, --repeat-penalty, --seed: same
 * protocol as cli_model_opt; *seeded is set when --seed was given. */
int cli_sampling_opt(const char *cmd, const char *usage, int argc, char **argv, int *i, slm_sampling *s,
                     bool *seeded);

/* Fetch the value of option argv[*i] into *val (advancing *i); false when missing. */
bool cli_opt_value(int argc, char **argv, int *i, const char **val);

#endif /* SLMESH_CLI_MODEL_H */
