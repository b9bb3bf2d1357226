/*
 * cli/cmd_info.c: `slmesh info [--json] MODEL`: what a GGUF file holds, without loading it.
 *
 * Sections, in this order (text and JSON alike): the file (size, GGUF version, alignment,
 * data offset); the architecture and every `<arch>.*` key (its hyper-parameters); the
 * tokenizer (model, pre-tokenizer, vocabulary size, special token ids with their texts,
 * add_bos_token); the chat template (first line and length, or none); the general.* keys;
 * every other key; the tensor table (name, type, dims, bytes); totals (parameters, bytes by
 * type). The file is opened with the validating reader, so a bad file is one error line
 * and exit 1, never a crash. --json prints one object (jansson) with the same content.
 *
 * Non-goals: editing, dumping tensor values or whole vocabularies.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"

static const char info_usage[] =
    "usage: slmesh info [--json] MODEL.gguf\n"
    "  print a GGUF file's metadata, tokenizer summary and tensor table\n"
    "  --json   one JSON object instead of text\n";

/* Special tokens reported by id and text. */
static const struct {
    const char *name;          /* shown as */
    const char *key;           /* metadata key holding the id */
} special_tokens[] = {
    {"bos", "tokenizer.ggml.bos_token_id"},
    {"eos", "tokenizer.ggml.eos_token_id"},
    {"eot", "tokenizer.ggml.eot_token_id"},
    {"pad", "tokenizer.ggml.padding_token_id"},
};
#define N_SPECIAL (sizeof special_tokens / sizeof special_tokens[0])

#define VALUE_CAP 256          /* bytes of a value in JSON fallbacks */
#define TEXT_VALUE_CAP 100     /* bytes of a value on a text line (longer strings are cut) */
#define TEMPLATE_LINE_MAX 80   /* bytes of the chat template's first line shown */

/* ---- gathering ------------------------------------------------------------------------------ */

/* Facts derived from the file that both output formats print. */
typedef struct info_facts {
    slm_gguf_str arch;         /* general.architecture, or {NULL, 0} */
    char arch_prefix[80];      /* "<arch>." or "" */
    int64_t vocab_kv;          /* tokenizer.ggml.tokens pair, or -1 */
    uint64_t vocab_size;       /* its element count (0 without one) */
    int64_t n_params;          /* sum of tensor elements */
    uint64_t n_bytes;          /* sum of tensor bytes */
    struct {
        int64_t tensors, params;
        uint64_t bytes;
    } by_type[SLM_TYPE_COUNT]; /* per tensor type */
} info_facts;

static bool has_prefix(const char *s, const char *prefix) {
    return *prefix && !strncmp(s, prefix, strlen(prefix));
}

static void gather(const slm_gguf *g, info_facts *f) {
    slm_gguf_vtype et;
    memset(f, 0, sizeof *f);
    if (slm_gguf_get_str(g, "general.architecture", &f->arch, NULL) == SLM_OK && f->arch.len < 64)
        snprintf(f->arch_prefix, sizeof f->arch_prefix, "%.*s.", (int)f->arch.len, f->arch.ptr);
    f->vocab_kv = slm_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (slm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &f->vocab_size, NULL) != SLM_OK || et != SLM_GGUF_STRING) {
        f->vocab_kv = -1;
        f->vocab_size = 0;
    }
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        int64_t nel = slm_gguf_tensor_nelements(t);
        f->n_params += nel;
        f->n_bytes += t->size;
        f->by_type[t->type].tensors++;
        f->by_type[t->type].params += nel;
        f->by_type[t->type].bytes += t->size;
    }
}

/* Text of token id in the vocabulary, or {NULL, 0} when there is no such token. */
static slm_gguf_str token_text(const slm_gguf *g, const info_facts *f, int64_t id) {
    slm_gguf_str none = {NULL, 0};
    if (f->vocab_kv < 0 || id < 0 || (uint64_t)id >= f->vocab_size) return none;
    return slm_gguf_arr_str(g, f->vocab_kv, (uint64_t)id);
}

/* The chat template's first line (cut to TEMPLATE_LINE_MAX) and its total length. */
static bool chat_template(const slm_gguf *g, slm_gguf_str *first_line, uint64_t *len) {
    slm_gguf_str t;
    if (slm_gguf_get_str(g, "tokenizer.chat_template", &t, NULL) != SLM_OK) return false;
    *len = t.len;
    const char *nl = t.len ? memchr(t.ptr, '\n', (size_t)t.len) : NULL;
    first_line->ptr = t.ptr;
    first_line->len = nl ? (uint64_t)(nl - t.ptr) : t.len;
    if (first_line->len > TEMPLATE_LINE_MAX) first_line->len = TEMPLATE_LINE_MAX;
    return true;
}

/* ---- text output ---------------------------------------------------------------------------- */

/* s with control bytes, quotes and backslashes escaped. */
static void print_escaped(const char *s, uint64_t len) {
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

static void print_kv_line(const slm_gguf *g, int64_t i) {
    char buf[TEXT_VALUE_CAP];
    slm_gguf_value_str(g, i, buf, sizeof buf);
    /* A full buffer (less at most one escape that did not fit) means the value was cut. */
    bool cut = slm_gguf_kv_type(g, i) == SLM_GGUF_STRING && strlen(buf) + 4 >= sizeof buf;
    printf("  %-44s %s%s\n", slm_gguf_key(g, i), buf, cut ? "..." : "");
}

static void text_file(const char *path, const slm_gguf *g) {
    printf("file           %s\n", path);
    printf("size           %" PRIu64 " bytes\n", slm_gguf_file_size(g));
    printf("gguf           version %" PRIu32 ", alignment %" PRIu64 ", data at offset %" PRIu64 "\n",
           slm_gguf_version(g), slm_gguf_alignment(g), slm_gguf_data_offset(g));
}

static void text_arch(const slm_gguf *g, const info_facts *f) {
    if (!f->arch.ptr) {
        printf("\narchitecture   (none)\n");
        return;
    }
    printf("\narchitecture   %.*s\n", (int)f->arch.len, f->arch.ptr);
    for (int64_t i = 0; i < slm_gguf_n_kv(g); i++)
        if (has_prefix(slm_gguf_key(g, i), f->arch_prefix)) print_kv_line(g, i);
}

static void text_str_key(const slm_gguf *g, const char *label, const char *key) {
    slm_gguf_str s;
    printf("  %-12s ", label);
    if (slm_gguf_get_str(g, key, &s, NULL) == SLM_OK) print_escaped(s.ptr, s.len);
    else fputs("(none)", stdout);
    putchar('\n');
}

static void text_tokenizer(const slm_gguf *g, const info_facts *f) {
    bool add_bos;
    printf("\ntokenizer\n");
    text_str_key(g, "model", "tokenizer.ggml.model");
    text_str_key(g, "pre", "tokenizer.ggml.pre");
    printf("  %-12s %" PRIu64 "\n", "vocab size", f->vocab_size);
    for (size_t k = 0; k < N_SPECIAL; k++) {
        int64_t id;
        printf("  %-12s ", special_tokens[k].name);
        if (slm_gguf_get_i64(g, special_tokens[k].key, &id, NULL) != SLM_OK) {
            fputs("(none)\n", stdout);
            continue;
        }
        slm_gguf_str t = token_text(g, f, id);
        printf("%" PRId64 " ", id);
        if (t.ptr) {
            putchar('"');
            print_escaped(t.ptr, t.len);
            fputs("\"\n", stdout);
        } else {
            fputs("(not in the vocabulary)\n", stdout);
        }
    }
    if (slm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, NULL) == SLM_OK)
        printf("  %-12s %s\n", "add_bos", add_bos ? "true" : "false");
    else
        printf("  %-12s (unset)\n", "add_bos");
}

static void text_chat_template(const slm_gguf *g) {
    slm_gguf_str line;
    uint64_t len;
    printf("\nchat template  ");
    if (!chat_template(g, &line, &len)) {
        printf("none\n");
        return;
    }
    printf("%" PRIu64 " bytes, first line: \"", len);
    print_escaped(line.ptr, line.len);
    printf("\"\n");
}

/* Pairs under general.* (general = true) or outside general.* and <arch>.*. */
static void text_keys(const slm_gguf *g, const info_facts *f, bool general) {
    printf(general ? "\ngeneral\n" : "\nother metadata\n");
    for (int64_t i = 0; i < slm_gguf_n_kv(g); i++) {
        const char *key = slm_gguf_key(g, i);
        bool is_general = has_prefix(key, "general.");
        if (general ? is_general : !is_general && !has_prefix(key, f->arch_prefix)) print_kv_line(g, i);
    }
}

static void text_tensors(const slm_gguf *g, const info_facts *f) {
    printf("\ntensors        %" PRId64 "\n", slm_gguf_n_tensors(g));
    if (slm_gguf_n_tensors(g)) printf("  %-36s %-8s %-24s %12s\n", "name", "type", "dims", "bytes");
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        char dims[96];
        int o = 0;
        for (uint32_t j = 0; j < t->n_dims; j++)
            o += snprintf(dims + o, sizeof dims - (size_t)o, "%s%" PRId64, j ? " x " : "", t->ne[j]);
        printf("  %-36s %-8s %-24s %12zu\n", t->name, slm_type_name(t->type), dims, t->size);
    }
    printf("\ntotals         %" PRId64 " parameters (%.3f M), %" PRIu64 " bytes\n", f->n_params,
           (double)f->n_params / 1e6, f->n_bytes);
    for (int ty = 0; ty < SLM_TYPE_COUNT; ty++) {
        if (!f->by_type[ty].tensors) continue;
        printf("  %-8s %5" PRId64 " tensors %14" PRId64 " parameters %14" PRIu64 " bytes\n", slm_type_name((slm_type)ty),
               f->by_type[ty].tensors, f->by_type[ty].params, f->by_type[ty].bytes);
    }
}

static int info_text(const char *path, const slm_gguf *g, const info_facts *f) {
    text_file(path, g);
    text_arch(g, f);
    text_tokenizer(g, f);
    text_chat_template(g);
    text_keys(g, f, true);
    text_keys(g, f, false);
    text_tensors(g, f);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

/* ---- JSON output ---------------------------------------------------------------------------- */

/* A string view as JSON; bytes that are not UTF-8 fall back to an escaped copy. */
static json_t *json_view(const char *s, uint64_t len) {
    json_t *j = json_stringn(s, (size_t)len);
    if (j) return j;
    size_t cap = (size_t)len * 4 + 1; /* every byte may become \xNN */
    char *buf = malloc(cap), *o = buf;
    if (!buf) return json_null();
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        o += c < 0x80 ? snprintf(o, 2, "%c", c) : snprintf(o, 5, "\\x%02x", c);
    }
    j = json_stringn(buf, (size_t)(o - buf));
    free(buf);
    return j ? j : json_null();
}

/* Pair i as a JSON value: numbers, bools and strings as themselves, arrays summarized. */
static json_t *json_kv(const slm_gguf *g, int64_t i) {
    const char *key = slm_gguf_key(g, i);
    slm_gguf_vtype t = slm_gguf_kv_type(g, i);
    char buf[VALUE_CAP];
    int64_t v;
    bool b;
    slm_gguf_str s;
    slm_gguf_vtype et;
    uint64_t n;
    if (t == SLM_GGUF_STRING && slm_gguf_get_str(g, key, &s, NULL) == SLM_OK) return json_view(s.ptr, s.len);
    if (t == SLM_GGUF_BOOL && slm_gguf_get_bool(g, key, &b, NULL) == SLM_OK) return json_boolean(b);
    if (t == SLM_GGUF_ARRAY && slm_gguf_get_arr(g, key, &et, &n, NULL) == SLM_OK)
        return json_pack("{s:s, s:I}", "array_of", slm_gguf_vtype_name(et), "length", (json_int_t)n);
    if (t == SLM_GGUF_F32 || t == SLM_GGUF_F64) return json_real(strtod(slm_gguf_value_str(g, i, buf, sizeof buf), NULL));
    if (slm_gguf_get_i64(g, key, &v, NULL) == SLM_OK) return json_integer(v);
    return json_string(slm_gguf_value_str(g, i, buf, sizeof buf)); /* u64 above INT64_MAX */
}

static json_t *json_special(const slm_gguf *g, const info_facts *f, const char *key) {
    int64_t id;
    if (slm_gguf_get_i64(g, key, &id, NULL) != SLM_OK) return json_null();
    slm_gguf_str t = token_text(g, f, id);
    return json_pack("{s:I, s:o}", "id", (json_int_t)id, "text", t.ptr ? json_view(t.ptr, t.len) : json_null());
}

static json_t *json_tokenizer(const slm_gguf *g, const info_facts *f) {
    slm_gguf_str s;
    bool add_bos;
    json_t *o = json_object();
    json_object_set_new(o, "model", slm_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL) ? json_null() : json_view(s.ptr, s.len));
    json_object_set_new(o, "pre", slm_gguf_get_str(g, "tokenizer.ggml.pre", &s, NULL) ? json_null() : json_view(s.ptr, s.len));
    json_object_set_new(o, "vocab_size", json_integer((json_int_t)f->vocab_size));
    for (size_t k = 0; k < N_SPECIAL; k++)
        json_object_set_new(o, special_tokens[k].name, json_special(g, f, special_tokens[k].key));
    json_object_set_new(o, "add_bos_token",
                        slm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, NULL) ? json_null() : json_boolean(add_bos));
    return o;
}

static json_t *json_chat_template(const slm_gguf *g) {
    slm_gguf_str line;
    uint64_t len;
    if (!chat_template(g, &line, &len)) return json_null();
    return json_pack("{s:o, s:I}", "first_line", json_view(line.ptr, line.len), "length", (json_int_t)len);
}

/* Object of the pairs that belong to a section: "arch", "general" or "other". */
static json_t *json_keys(const slm_gguf *g, const info_facts *f, const char *section) {
    json_t *o = json_object();
    for (int64_t i = 0; i < slm_gguf_n_kv(g); i++) {
        const char *key = slm_gguf_key(g, i);
        bool is_arch = has_prefix(key, f->arch_prefix), is_general = has_prefix(key, "general.");
        bool want = !strcmp(section, "arch") ? is_arch : !strcmp(section, "general") ? is_general : !is_arch && !is_general;
        if (want) json_object_set_new(o, key, json_kv(g, i));
    }
    return o;
}

static json_t *json_tensors(const slm_gguf *g) {
    json_t *a = json_array();
    for (int64_t i = 0; i < slm_gguf_n_tensors(g); i++) {
        const slm_gguf_tensor *t = slm_gguf_tensor_at(g, i);
        json_t *dims = json_array();
        for (uint32_t j = 0; j < t->n_dims; j++) json_array_append_new(dims, json_integer(t->ne[j]));
        json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type", slm_type_name(t->type),
                                           "dims", dims, "bytes", (json_int_t)t->size, "offset", (json_int_t)t->offset));
    }
    return a;
}

static json_t *json_totals(const slm_gguf *g, const info_facts *f) {
    json_t *by = json_object();
    for (int ty = 0; ty < SLM_TYPE_COUNT; ty++) {
        if (!f->by_type[ty].tensors) continue;
        json_object_set_new(by, slm_type_name((slm_type)ty),
                            json_pack("{s:I, s:I, s:I}", "tensors", (json_int_t)f->by_type[ty].tensors, "parameters",
                                      (json_int_t)f->by_type[ty].params, "bytes", (json_int_t)f->by_type[ty].bytes));
    }
    return json_pack("{s:I, s:I, s:I, s:o}", "tensors", (json_int_t)slm_gguf_n_tensors(g), "parameters",
                     (json_int_t)f->n_params, "bytes", (json_int_t)f->n_bytes, "by_type", by);
}

static int info_json(const char *path, const slm_gguf *g, const info_facts *f) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_view(path, strlen(path)));
    json_object_set_new(o, "file_size", json_integer((json_int_t)slm_gguf_file_size(g)));
    json_object_set_new(o, "version", json_integer(slm_gguf_version(g)));
    json_object_set_new(o, "alignment", json_integer((json_int_t)slm_gguf_alignment(g)));
    json_object_set_new(o, "data_offset", json_integer((json_int_t)slm_gguf_data_offset(g)));
    json_object_set_new(o, "architecture", f->arch.ptr ? json_view(f->arch.ptr, f->arch.len) : json_null());
    json_object_set_new(o, "hparams", json_keys(g, f, "arch"));
    json_object_set_new(o, "tokenizer", json_tokenizer(g, f));
    json_object_set_new(o, "chat_template", json_chat_template(g));
    json_object_set_new(o, "general", json_keys(g, f, "general"));
    json_object_set_new(o, "metadata", json_keys(g, f, "other"));
    json_object_set_new(o, "tensors", json_tensors(g));
    json_object_set_new(o, "totals", json_totals(g, f));
    int rc = json_dumpf(o, stdout, JSON_INDENT(2)) == 0 && putchar('\n') != EOF && fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    json_decref(o);
    return rc;
}

/* ---- command -------------------------------------------------------------------------------- */

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(info_usage, stdout);
            return CLI_OK;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("info", info_usage, "unknown option '%s'", argv[i]);
        } else if (path) {
            return cli_usage("info", info_usage, "more than one model given ('%s')", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return cli_usage("info", info_usage, "no model given");

    char err[SLM_ERR_LEN] = "";
    slm_gguf *g = NULL;
    slm_status st = slm_gguf_open(path, NULL, &g, err);
    if (st) return cli_fail("info", st, err);
    info_facts f;
    gather(g, &f);
    int rc = json ? info_json(path, g, &f) : info_text(path, g, &f);
    slm_gguf_close(g);
    return rc;
}
