/*
 * cli/cmd_guard.c: `slmesh guard SUBCOMMAND`: governance tools around the redaction guard.
 *
 *   train  train the name/address/organisation/place tagger on labelled PII data and write
 *          the weights file (deterministic for a given --seed)
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "slmesh/guard.h"

static const char usage[] =
    "usage: slmesh guard train --data FILE -o OUT [--templates FILE] [--epochs N] [--dropout X] [--seed N]\n";

static int guard_train(int argc, char **argv) {
    slm_guard_train_opts o = {0};
    slm_guard_train_stats stats = {0};
    char err[SLM_ERR_LEN] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--data") && has_val) {
            o.data_path = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has_val) {
            o.out_path = argv[++i];
        } else if (!strcmp(a, "--templates") && has_val) {
            o.templates_path = argv[++i];
        } else if (!strcmp(a, "--dropout")) {
            if (!has_val || !cli_parse_double(argv[++i], 0.0, 0.9, &o.dropout))
                return cli_usage("guard train", usage, "--dropout needs a number in [0, 0.9]");
        } else if (!strcmp(a, "--epochs")) {
            long v;
            if (!has_val || !cli_parse_long(argv[++i], 1, 1000, &v))
                return cli_usage("guard train", usage, "--epochs needs an integer in [1, 1000]");
            o.epochs = (unsigned)v;
        } else if (!strcmp(a, "--seed")) {
            if (!has_val || !cli_parse_u64(argv[++i], &o.seed))
                return cli_usage("guard train", usage, "--seed needs an unsigned integer");
        } else {
            return cli_usage("guard train", usage, "unknown or incomplete option '%s'", a);
        }
    }
    if (!o.data_path || !o.out_path) return cli_usage("guard train", usage, "--data and -o are required");
    slm_status st = slm_guard_train(&o, &stats, err);
    if (st) return cli_fail("guard train", st, err);
    printf("trained on %zu sentences (%zu tokens), training token accuracy %.4f, wrote %s (%zu bytes)\n",
           stats.sentences, stats.tokens, stats.train_token_acc, o.out_path, stats.file_bytes);
    return CLI_OK;
}

int cmd_guard(int argc, char **argv) {
    if (argc < 2) return cli_usage("guard", usage, "missing subcommand");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "train")) return guard_train(argc - 1, argv + 1);
    return cli_usage("guard", usage, "unknown subcommand '%s'", argv[1]);
}
