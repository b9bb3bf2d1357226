/*
 * cli/cmd_audit.c: `slmesh audit ACTION`: append records from stdin, verify, export,
 * checkpoint the hash-chained audit log, and make checkpoint signing keys.
 *
 * Invariants: append prints "SEQ HASH" and flushes stdout only after the record is
 * committed, so a script (or the crash test) can rely on every printed seq being durable.
 * verify exits 0 when the log is intact, 1 when it is not (naming the first bad record),
 * 2 on usage errors.
 * Thread-safety: single-threaded program. Non-goals: interactive editing of the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slmesh/audit.h"

static const char audit_usage[] =
    "usage: slmesh audit ACTION [OPTIONS]\n"
    "  append      --db DB [--key KEY.pem] [--checkpoint-every N]\n"
    "              read JSON records from stdin, one per line; print \"SEQ HASH\" per commit\n"
    "  verify      --db DB [--pub PUB.pem]   check the chain and checkpoints (exit 1: tampered)\n"
    "  export      --db DB [--checkpoints]   write records (or checkpoints) as JSON lines\n"
    "  checkpoint  --db DB [--key KEY.pem]   record (count, head hash, time), signed with KEY\n"
    "  keygen      --key KEY.pem --pub PUB.pem   make an Ed25519 key pair for checkpoints\n"
    "DB is a SQLite file path or a postgresql:// connection URI.\n";

typedef struct {
    const char *action;     /* append, verify, ... */
    const char *db;         /* --db */
    const char *key;        /* --key: private key PEM */
    const char *pub;        /* --pub: public key PEM */
    uint64_t every;         /* --checkpoint-every */
    bool checkpoints;       /* --checkpoints */
} audit_args;

/* Parse argv into a; returns CLI_OK, or CLI_USAGE after printing the problem. */
static int parse_args(int argc, char **argv, audit_args *a) {
    memset(a, 0, sizeof *a);
    if (argc < 2) return cli_usage("audit", audit_usage, "missing ACTION");
    a->action = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--checkpoints")) {
            a->checkpoints = true;
            continue;
        }
        if (!strcmp(o, "--help") || !strcmp(o, "-h"))
            return cli_usage("audit", audit_usage, "help");
        if (i + 1 >= argc) return cli_usage("audit", audit_usage, "%s: missing value or unknown option", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--db")) a->db = v;
        else if (!strcmp(o, "--key")) a->key = v;
        else if (!strcmp(o, "--pub")) a->pub = v;
        else if (!strcmp(o, "--checkpoint-every")) {
            if (!cli_parse_u64(v, &a->every) || a->every == 0)
                return cli_usage("audit", audit_usage, "--checkpoint-every: '%s' is not a positive integer", v);
        } else
            return cli_usage("audit", audit_usage, "unknown option '%s'", o);
    }
    if (strcmp(a->action, "keygen") != 0 && !a->db)
        return cli_usage("audit", audit_usage, "%s: --db is required", a->action);
    return CLI_OK;
}

/* ---- actions -------------------------------------------------------------------------------- */

static int do_append(slm_audit *log) {
    char err[SLM_ERR_LEN];
    size_t cap = SLM_AUDIT_MAX_RECORD + 2; /* the record, its newline, the NUL */
    char *line = malloc(cap);
    long lineno = 0;
    int rc = CLI_OK;
    if (!line) return cli_fail("audit", SLM_ERR_NOMEM, "line buffer");
    while (fgets(line, (int)cap, stdin)) {
        size_t n = strlen(line);
        lineno++;
        if (n == cap - 1 && line[n - 1] != '\n') {
            fprintf(stderr, "slmesh audit: line %ld: longer than %u bytes\n", lineno, SLM_AUDIT_MAX_RECORD);
            rc = CLI_FAIL;
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0) continue;
        uint64_t seq = 0;
        char hash[SLM_AUDIT_HASH_HEX];
        slm_status st = slm_audit_append_json(log, line, n, &seq, hash, err);
        if (seq) { /* committed, even if a checkpoint after it failed */
            printf("%llu %s\n", (unsigned long long)seq, hash);
            fflush(stdout);
        }
        if (st != SLM_OK) {
            fprintf(stderr, "slmesh audit: line %ld: %s: %s\n", lineno, slm_status_str(st), err);
            rc = CLI_FAIL;
            break;
        }
    }
    if (rc == CLI_OK && ferror(stdin)) rc = cli_fail("audit", SLM_ERR_IO, "reading stdin");
    free(line);
    return rc;
}

static int do_verify(slm_audit *log, const char *pub_path) {
    char err[SLM_ERR_LEN];
    slm_audit_key *pub = NULL;
    slm_audit_report rep;
    slm_status st;
    if (pub_path && (st = slm_audit_key_load(pub_path, false, &pub, err)) != SLM_OK)
        return cli_fail("audit", st, err);
    st = slm_audit_verify(log, pub, &rep, err);
    slm_audit_key_free(pub);
    if (st == SLM_ERR_TAMPERED) {
        fprintf(stderr, "slmesh audit: TAMPERED: %s (%llu good records before it)\n", rep.what,
                (unsigned long long)rep.records);
        return CLI_FAIL;
    }
    if (st != SLM_OK) return cli_fail("audit", st, err);
    printf("ok: %llu records, %llu checkpoints (%llu signatures verified), head %s\n",
           (unsigned long long)rep.records, (unsigned long long)rep.checkpoints,
           (unsigned long long)rep.signatures, rep.head);
    return CLI_OK;
}

static slm_status print_line(void *ctx, const char *line, size_t len) {
    FILE *out = ctx;
    if (fwrite(line, 1, len, out) != len || fputc('\n', out) == EOF) return SLM_ERR_IO;
    return SLM_OK;
}

static int do_export(slm_audit *log, bool checkpoints) {
    char err[SLM_ERR_LEN];
    slm_status st = slm_audit_export(log, checkpoints, print_line, stdout, err);
    if (st == SLM_OK && fflush(stdout) != 0) st = SLM_ERR_IO;
    return st == SLM_OK ? CLI_OK : cli_fail("audit", st, err);
}

static int do_checkpoint(slm_audit *log) {
    char err[SLM_ERR_LEN];
    uint64_t count = 0;
    slm_status st = slm_audit_checkpoint(log, &count, err);
    if (st != SLM_OK) return cli_fail("audit", st, err);
    printf("checkpoint at %llu records\n", (unsigned long long)count);
    return CLI_OK;
}

/* ---- entry ----------------------------------------------------------------------------------- */

int cmd_audit(int argc, char **argv) {
    audit_args a;
    char err[SLM_ERR_LEN];
    slm_audit_key *key = NULL;
    slm_audit *log = NULL;
    slm_status st;
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK) return rc;
    if (!strcmp(a.action, "keygen")) {
        if (!a.key || !a.pub) return cli_usage("audit", audit_usage, "keygen: --key and --pub are required");
        st = slm_audit_keygen(a.key, a.pub, err);
        return st == SLM_OK ? CLI_OK : cli_fail("audit", st, err);
    }
    bool known = !strcmp(a.action, "append") || !strcmp(a.action, "verify") ||
                 !strcmp(a.action, "export") || !strcmp(a.action, "checkpoint");
    if (!known) return cli_usage("audit", audit_usage, "unknown action '%s'", a.action);
    if (a.key && (st = slm_audit_key_load(a.key, true, &key, err)) != SLM_OK)
        return cli_fail("audit", st, err);
    slm_audit_options opt = {.checkpoint_every = a.every, .sign_key = key};
    st = slm_audit_open(a.db, &opt, &log, err);
    if (st != SLM_OK) {
        rc = cli_fail("audit", st, err);
        goto done;
    }
    if (!strcmp(a.action, "append")) rc = do_append(log);
    else if (!strcmp(a.action, "verify")) rc = do_verify(log, a.pub);
    else if (!strcmp(a.action, "export")) rc = do_export(log, a.checkpoints);
    else rc = do_checkpoint(log);
done:
    slm_audit_close(log);
    slm_audit_key_free(key);
    return rc;
}
