/*
 * cli/cmd_redact.c: `slmesh redact`: find personal data in text and print it redacted.
 *
 * Input is FILE or standard input: plain text (one document), or with --jsonl one JSON
 * object per line whose "text" field is redacted. Output: the redacted text; with --json a
 * JSON object {"text", "redacted", "findings":[{"type","start","end","score"}]} with
 * character offsets (end exclusive). With --jsonl each input object is printed back with
 * "redacted" (and "findings" under --json) added.
 * The tagger weights come from --tagger, $SLMESH_PII_TAGGER, or models/pii-tagger.bin next
 * to the binary's repository; --no-tagger uses the pattern detectors only.
 */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "slmesh/guard.h"

static const char usage[] =
    "usage: slmesh redact [OPTIONS] [FILE]\n"
    "  --types LIST       comma-separated types to find (default: all), e.g. PERSON,EMAIL_ADDRESS\n"
    "  --operator OP      replace | numbered | mask | hash | pseudo (default replace)\n"
    "  --threshold X      report findings with score >= X (0..1); TYPE=X for one type\n"
    "                     (default 0.3 for names/addresses/orgs/places/titles/NRP, else 0.5)\n"
    "  --mask-keep N      mask: characters kept at the end (default 4)\n"
    "  --salt TEXT        hash: salt (default empty)\n"
    "  --json             print {\"text\",\"redacted\",\"findings\":[...]} (character offsets)\n"
    "  --jsonl            input is JSON lines with a \"text\" field\n"
    "  --tagger PATH      tagger weights (default $SLMESH_PII_TAGGER or models/pii-tagger.bin)\n"
    "  --no-tagger        pattern detectors only\n";

/* ---- input ------------------------------------------------------------------------------ */

/* Read all of f into a malloc'd buffer of at most `limit` bytes. */
static char *read_all(FILE *f, size_t limit, size_t *len, bool *too_big) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    *too_big = false;
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap > limit) {
            *too_big = true;
            free(buf);
            return NULL;
        }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) free(buf);
        buf = nb;
        cap *= 2;
    }
    if (!buf || ferror(f)) {
        free(buf);
        return NULL;
    }
    if (n > limit) {
        *too_big = true;
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- one document ------------------------------------------------------------------------------ */

typedef struct {
    const slm_guard *guard;
    slm_redact_opts ropts;
    bool json;
} redact_ctx;

/* Redact text; on success *red (slm_free) and, when want_findings, *arr (a new JSON array). */
static slm_status redact_one(const redact_ctx *rc, const char *text, size_t len, char **red,
                             json_t **arr, char *err) {
    slm_pii_finding *f = NULL;
    size_t n = 0, rlen;
    slm_vault *vault = NULL;
    slm_status st = slm_guard_detect(rc->guard, text, len, &f, &n, err);
    if (st) return st;
    if ((st = slm_vault_create(&vault, err))) goto done;
    if ((st = slm_guard_redact(text, len, f, n, &rc->ropts, vault, red, &rlen, err))) goto done;
    if (arr) {
        *arr = json_array();
        for (size_t i = 0; *arr && i < n; i++)
            json_array_append_new(*arr, json_pack("{s:s, s:I, s:I, s:f}", "type", slm_pii_type_name(f[i].type),
                                                  "start", (json_int_t)f[i].cstart, "end", (json_int_t)f[i].cend,
                                                  "score", (double)((int)(f[i].score * 1000 + 0.5f)) / 1000.0));
        if (!*arr) st = slm_errf(err, SLM_ERR_NOMEM, "findings JSON");
    }
done:
    slm_vault_destroy(vault);
    slm_free(f);
    return st;
}

static int print_json(json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(4));
    if (!s) return CLI_FAIL;
    puts(s);
    free(s);
    return CLI_OK;
}

static int run_text(const redact_ctx *rc, const char *text, size_t len) {
    char err[SLM_ERR_LEN] = "";
    char *red = NULL;
    json_t *arr = NULL;
    slm_status st = redact_one(rc, text, len, &red, rc->json ? &arr : NULL, err);
    if (st) return cli_fail("redact", st, err);
    int rcode = CLI_OK;
    if (rc->json) {
        json_t *obj = json_pack("{s:s%, s:s, s:o}", "text", text, len, "redacted", red, "findings", arr);
        rcode = obj ? print_json(obj) : cli_fail("redact", SLM_ERR_NOMEM, "JSON");
        json_decref(obj);
    } else {
        fwrite(red, 1, strlen(red), stdout);
    }
    slm_free(red);
    return rcode;
}

static int run_jsonl(const redact_ctx *rc, FILE *in, size_t limit) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int rcode = CLI_OK;
    while (rcode == CLI_OK && (got = getline(&line, &cap, in)) != -1) {
        lineno++;
        if ((size_t)got > limit) {
            rcode = cli_fail("redact", SLM_ERR_LIMIT, "line too long");
            break;
        }
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)got, 0, &jerr);
        json_t *text = obj ? json_object_get(obj, "text") : NULL;
        char err[SLM_ERR_LEN] = "", *red = NULL;
        json_t *arr = NULL;
        if (!obj || !json_is_object(obj) || !json_is_string(text)) {
            snprintf(err, sizeof err, "line %zu: %s", lineno, obj ? "no string \"text\" field" : jerr.text);
            rcode = cli_fail("redact", SLM_ERR_CORRUPT, err);
        } else {
            slm_status st = redact_one(rc, json_string_value(text), json_string_length(text), &red,
                                       rc->json ? &arr : NULL, err);
            if (st) {
                rcode = cli_fail("redact", st, err);
            } else {
                json_object_set_new(obj, "redacted", json_string(red));
                if (arr) json_object_set_new(obj, "findings", arr);
                rcode = print_json(obj);
            }
        }
        slm_free(red);
        json_decref(obj);
    }
    free(line);
    return rcode;
}

/* ---- options ------------------------------------------------------------------------------ */

int cmd_redact(int argc, char **argv) {
    slm_guard_opts gopts;
    redact_ctx rc = {0};
    const char *file = NULL, *tagger = NULL;
    bool jsonl = false, no_tagger = false;
    char err[SLM_ERR_LEN] = "", pathbuf[PATH_MAX], exe[PATH_MAX];
    slm_guard_opts_default(&gopts);
    slm_redact_opts_default(&rc.ropts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--json")) {
            rc.json = true;
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = true;
        } else if (!strcmp(a, "--no-tagger")) {
            no_tagger = true;
        } else if (!strcmp(a, "--types")) {
            if (!has_val || !slm_pii_types_parse(argv[++i], &gopts.types))
                return cli_usage("redact", usage, "--types needs known type names, e.g. PERSON,CREDIT_CARD");
        } else if (!strcmp(a, "--operator")) {
            slm_redact_op op;
            if (!has_val || !slm_redact_op_parse(argv[++i], &op))
                return cli_usage("redact", usage, "--operator needs replace|numbered|mask|hash|pseudo");
            slm_redact_opts_all(&rc.ropts, op);
        } else if (!strcmp(a, "--threshold")) {
            double th;
            const char *v = has_val ? argv[++i] : "", *eq = strchr(v, '=');
            slm_pii_type one;
            if (eq && (!slm_pii_type_parse(v, (size_t)(eq - v), &one) || !cli_parse_double(eq + 1, 0.0, 1.0, &th)))
                return cli_usage("redact", usage, "--threshold TYPE=X needs a known type and X in [0, 1]");
            if (!eq && !cli_parse_double(v, 0.0, 1.0, &th))
                return cli_usage("redact", usage, "--threshold needs a number in [0, 1]");
            for (int t = 0; t < SLM_PII_COUNT; t++)
                if (!eq || t == (int)one) gopts.threshold[t] = (float)th;
        } else if (!strcmp(a, "--mask-keep")) {
            long k;
            if (!has_val || !cli_parse_long(argv[++i], 0, 64, &k))
                return cli_usage("redact", usage, "--mask-keep needs an integer in [0, 64]");
            rc.ropts.mask_keep = (unsigned)k;
        } else if (!strcmp(a, "--salt")) {
            if (!has_val || strlen(argv[i + 1]) > SLM_REDACT_MAX_SALT)
                return cli_usage("redact", usage, "--salt needs at most %d bytes", SLM_REDACT_MAX_SALT);
            rc.ropts.salt_len = strlen(argv[++i]);
            memcpy(rc.ropts.salt, argv[i], rc.ropts.salt_len);
        } else if (!strcmp(a, "--tagger")) {
            if (!has_val) return cli_usage("redact", usage, "--tagger needs a path");
            tagger = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage("redact", usage, "unknown option '%s'", a);
        } else if (!file) {
            file = a;
        } else {
            return cli_usage("redact", usage, "more than one FILE");
        }
    }
    if (!no_tagger && !tagger) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        tagger = slm_guard_default_tagger(n > 0 ? exe : NULL, pathbuf, sizeof pathbuf);
    }
    gopts.tagger_path = no_tagger ? NULL : tagger;
    if (!no_tagger && !tagger)
        fprintf(stderr, "slmesh redact: no tagger weights found (models/pii-tagger.bin, $SLMESH_PII_TAGGER); "
                        "names, addresses, organisations and places are not detected\n");

    FILE *in = stdin;
    if (file && strcmp(file, "-") && !(in = fopen(file, "rb"))) {
        snprintf(err, sizeof err, "%s: cannot open", file);
        return cli_fail("redact", SLM_ERR_IO, err);
    }
    slm_guard *guard = NULL;
    slm_status st = slm_guard_create(&gopts, &guard, err);
    int rcode;
    if (st) {
        rcode = cli_fail("redact", st, err);
    } else {
        rc.guard = guard;
        if (jsonl) {
            rcode = run_jsonl(&rc, in, SLM_GUARD_MAX_INPUT);
        } else {
            size_t len = 0;
            bool too_big;
            char *text = read_all(in, SLM_GUARD_MAX_INPUT, &len, &too_big);
            if (!text)
                rcode = cli_fail("redact", too_big ? SLM_ERR_LIMIT : SLM_ERR_IO, too_big ? "input too large" : "read failed");
            else
                rcode = run_text(&rc, text, len);
            free(text);
        }
    }
    slm_guard_destroy(guard);
    if (in != stdin) fclose(in);
    return rcode;
}
