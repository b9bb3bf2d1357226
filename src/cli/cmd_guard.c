/*
 * cli/cmd_guard.c: `slmesh guard SUBCOMMAND`: governance tools around the redaction guard.
 *
 *   check  apply the input (or --output) rules of a policy file to a text; print the verdict
 *          as JSON; exit 0 for allow/redact, 1 for block (or failure), 2 for usage
 *   train  train the name/address/organisation/place tagger on labelled PII data and write
 *          the weights file (deterministic for a given --seed)
 *   bench  redaction throughput on generated ticket-like text, one thread
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "slmesh/guard.h"
#include "slmesh/policy.h"

static const char usage[] =
    "usage: slmesh guard check --policy FILE [--output] [--tagger PATH | --no-tagger] [FILE]\n"
    "       slmesh guard train --data FILE -o OUT [--templates FILE] [--fills N] [--epochs N]\n"
    "                         [--dropout X] [--seed N] [--synthetic-orgs N]\n"
    "       slmesh guard bench [--mb N] [--no-tagger | --tagger PATH] [FILE]\n";

/* ---- shared ---------------------------------------------------------------------------- */

/* Tagger path: the option, else the default location next to the binary; NULL = none. */
static const char *tagger_path(const char *given, bool none, char *buf, size_t cap) {
    char exe[PATH_MAX];
    if (none) return NULL;
    if (given) return given;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    return slm_guard_default_tagger(n > 0 ? exe : NULL, buf, cap);
}

/* Read all of a file (or stdin for NULL / "-") up to limit bytes; malloc'd, NUL-ended. */
static char *read_input(const char *path, size_t limit, size_t *len) {
    FILE *f = !path || !strcmp(path, "-") ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap > limit) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) free(buf);
        buf = nb;
        cap *= 2;
    }
    bool failed = !buf || ferror(f) || n > limit;
    if (f != stdin) fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- check ------------------------------------------------------------------------------ */

static int guard_check(int argc, char **argv) {
    const char *policy_path = NULL, *file = NULL, *tagger = NULL;
    bool output = false, no_tagger = false;
    char err[SLM_ERR_LEN] = "", pathbuf[PATH_MAX];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--policy") && i + 1 < argc) policy_path = argv[++i];
        else if (!strcmp(a, "--output")) output = true;
        else if (!strcmp(a, "--no-tagger")) no_tagger = true;
        else if (!strcmp(a, "--tagger") && i + 1 < argc) tagger = argv[++i];
        else if (a[0] == '-' && a[1]) return cli_usage("guard check", usage, "unknown or incomplete option '%s'", a);
        else if (!file) file = a;
        else return cli_usage("guard check", usage, "more than one FILE");
    }
    if (!policy_path) return cli_usage("guard check", usage, "--policy is required");
    slm_policy *pol = NULL;
    slm_guard *guard = NULL;
    slm_policy_verdict v = {0};
    char *text = NULL;
    size_t len = 0;
    int rc = CLI_FAIL;
    slm_policy_dir dir = output ? SLM_POLICY_OUTPUT : SLM_POLICY_INPUT;
    slm_status st = slm_policy_load(policy_path, &pol, err);
    if (st) {
        rc = cli_fail("guard check", st, err);
        goto done;
    }
    if (slm_policy_pii_types(pol, dir)) {
        slm_guard_opts go;
        slm_guard_opts_default(&go);
        go.types = slm_policy_pii_types(pol, dir);
        go.tagger_path = tagger_path(tagger, no_tagger, pathbuf, sizeof pathbuf);
        if ((st = slm_guard_create(&go, &guard, err))) {
            rc = cli_fail("guard check", st, err);
            goto done;
        }
    }
    if (!(text = read_input(file, SLM_GUARD_MAX_INPUT, &len))) {
        rc = cli_fail("guard check", SLM_ERR_IO, file ? file : "standard input");
        goto done;
    }
    if ((st = slm_policy_check(pol, dir, guard, text, len, NULL, &v, err))) {
        rc = cli_fail("guard check", st, err);
        goto done;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "action", slm_policy_action_name(v.action), "rule", v.rule,
                          "reason", v.reason, "fired", (json_int_t)v.fired);
    if (o && v.redacted) json_object_set_new(o, "redacted", json_stringn(v.redacted, v.redacted_len));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        rc = cli_fail("guard check", SLM_ERR_NOMEM, "verdict");
        goto done;
    }
    puts(s);
    free(s);
    rc = v.action == SLM_POLICY_BLOCK ? CLI_FAIL : CLI_OK;
done:
    slm_policy_verdict_clear(&v);
    free(text);
    slm_guard_destroy(guard);
    slm_policy_destroy(pol);
    return rc;
}

/* ---- train ------------------------------------------------------------------------------- */

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
        } else if (!strcmp(a, "--fills")) {
            long v;
            if (!has_val || !cli_parse_long(argv[++i], 1, 100, &v))
                return cli_usage("guard train", usage, "--fills needs an integer in [1, 100]");
            o.template_fills = (unsigned)v;
        } else if (!strcmp(a, "--dropout")) {
            if (!has_val || !cli_parse_double(argv[++i], 0.0, 0.9, &o.dropout))
                return cli_usage("guard train", usage, "--dropout needs a number in [0, 0.9]");
        } else if (!strcmp(a, "--epochs")) {
            long v;
            if (!has_val || !cli_parse_long(argv[++i], 1, 1000, &v))
                return cli_usage("guard train", usage, "--epochs needs an integer in [1, 1000]");
            o.epochs = (unsigned)v;
        } else if (!strcmp(a, "--synthetic-orgs")) {
            long v;
            if (!has_val || !cli_parse_long(argv[++i], 0, 10000, &v))
                return cli_usage("guard train", usage, "--synthetic-orgs needs an integer in [0, 10000]");
            o.synthetic_orgs = (unsigned)v;
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

/* ---- bench ------------------------------------------------------------------------------- */

/* Ticket-like sentences with personal data in them; {N} is replaced by a counter so that
 * values differ. */
static const char *const bench_lines[] = {
    "Hi, this is Maria Lopez from Northwind Traders. My order {N} has not arrived yet. ",
    "Please call me back on +44 20 7946 {N} or write to maria.lopez{N}@example.com. ",
    "The card ending 4111 1111 1111 1111 was charged twice on 2024-03-1{N}. ",
    "I moved to 42 Harbour Street, Bristol BS1 4DJ last month, please update the address. ",
    "Our IBAN is GB82 WEST 1234 5698 7654 32 and the reference is INV-{N}. ",
    "The app shows error 500 when I open the billing page from 10.0.{N}.7 behind our VPN. ",
    "Thanks for the quick help yesterday, the refund arrived this morning. ",
    "Can you transfer the ticket to John Carter? He handles the enterprise accounts in Denver. ",
    "Login fails since the update; I reset the password twice and cleared the cache. ",
    "My colleague Priya Natarajan (priya.n@contoso.example) needs access to the dashboard too. ",
};

/* Bytes per benchmark document: the size of a long support ticket. */
#define BENCH_DOC 4096

static int guard_bench(int argc, char **argv) {
    const char *file = NULL, *tagger = NULL;
    bool no_tagger = false;
    long mb = 4;
    char err[SLM_ERR_LEN] = "", pathbuf[PATH_MAX];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mb")) {
            if (i + 1 >= argc || !cli_parse_long(argv[++i], 1, 16, &mb))
                return cli_usage("guard bench", usage, "--mb needs an integer in [1, 16]");
        } else if (!strcmp(a, "--no-tagger")) no_tagger = true;
        else if (!strcmp(a, "--tagger") && i + 1 < argc) tagger = argv[++i];
        else if (a[0] == '-' && a[1]) return cli_usage("guard bench", usage, "unknown or incomplete option '%s'", a);
        else file = a;
    }
    size_t len = 0, cap = (size_t)mb << 20;
    char *text = NULL;
    if (file) {
        if (!(text = read_input(file, SLM_GUARD_MAX_INPUT, &len))) return cli_fail("guard bench", SLM_ERR_IO, file);
    } else {
        if (!(text = malloc(cap + 256))) return cli_fail("guard bench", SLM_ERR_NOMEM, "text");
        for (unsigned k = 0; len < cap; k++) {
            const char *line = bench_lines[k % (sizeof bench_lines / sizeof bench_lines[0])];
            for (const char *p = line; *p && len < cap + 200; p++) {
                if (p[0] == '{' && p[1] == 'N' && p[2] == '}') {
                    len += (size_t)snprintf(text + len, 8, "%u", k % 10);
                    p += 2;
                } else {
                    text[len++] = *p;
                }
            }
            if (k % 7 == 6) text[len++] = '\n';
        }
        text[len] = '\0';
    }
    size_t tokens = 0;
    for (size_t i = 0; i < len; i++)
        tokens += (text[i] != ' ' && text[i] != '\n') && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\n');
    slm_guard_opts go;
    slm_guard *g = NULL;
    slm_guard_opts_default(&go);
    go.tagger_path = tagger_path(tagger, no_tagger, pathbuf, sizeof pathbuf);
    slm_status st = slm_guard_create(&go, &g, err);
    if (st) {
        free(text);
        return cli_fail("guard bench", st, err);
    }
    /* Detect + redact document by document (tickets are a few KB; a document ends at the
     * first newline after BENCH_DOC bytes), best of three runs. */
    double best = 1e30;
    size_t nf = 0, docs = 0;
    for (int run = 0; run < 3 && !st; run++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        nf = docs = 0;
        for (size_t at = 0; at < len && !st; docs++) {
            const char *nl = len - at > BENCH_DOC ? memchr(text + at + BENCH_DOC, '\n', len - at - BENCH_DOC) : NULL;
            size_t end = nl ? (size_t)(nl - text) + 1 : len, n = 0, olen;
            slm_pii_finding *f = NULL;
            char *out = NULL;
            st = slm_guard_detect(g, text + at, end - at, &f, &n, err);
            if (!st) st = slm_guard_redact(text + at, end - at, f, n, NULL, NULL, &out, &olen, err);
            nf += n;
            slm_free(f);
            slm_free(out);
            at = end;
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (s < best) best = s;
    }
    slm_guard_destroy(g);
    free(text);
    if (st) return cli_fail("guard bench", st, err);
    printf("redact: %zu bytes in %zu documents, %zu tokens, %zu findings, tagger %s\n", len, docs, tokens, nf,
           go.tagger_path ? "on" : "off");
    printf("redact: %.1f MB/s, %.3f ms per 1000 tokens (CPU time of one thread, best of 3)\n", (double)len / best / 1e6,
           1000.0 * best / ((double)tokens / 1000.0));
    return CLI_OK;
}

int cmd_guard(int argc, char **argv) {
    if (argc < 2) return cli_usage("guard", usage, "missing subcommand");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "train")) return guard_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return guard_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "bench")) return guard_bench(argc - 1, argv + 1);
    return cli_usage("guard", usage, "unknown subcommand '%s'", argv[1]);
}
