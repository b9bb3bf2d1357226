/*
 * tests/test_tokenizer_vectors.c: acceptance test against the reference runtime's tokenizer
 * vectors (shared/reference/vocab/ggml-vocab-NAME.gguf.inp/.out, vocabularies in
 * shared/models/vocab): every string is encoded without BOS and without special parsing and
 * must give exactly the reference ids. Lossless vocabularies must also round-trip:
 * decode(encode(s)) == s (byte-level BPE always; SentencePiece too, its leading space being
 * removed by the decoder as the reference's llama_detokenize does). WordPiece lower-cases
 * and drops accents, so it is not round-tripped.
 *
 * Vectors whose vocabulary file is not in shared/ (chameleon, command-r, roberta-bpe: only
 * their vectors are published) are skipped by name, with a message; deepseek-r1-qwen's run
 * against the qwen2 vocabulary, which is the same tokenizer.
 */
#include "testutil.h"

#include <dirent.h>
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#define SEP "\n__ggml_vocab_test__\n"
#define MAX_IDS 4096 /* ids in one reference line; the longest has < 400 */

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static void run_vocab(const char *name, const char *vocab, bool round_trip) {
    char gpath[512], ipath[512], opath[512], rel[256], err[SLM_ERR_LEN] = "";
    snprintf(rel, sizeof rel, "reference/vocab/ggml-vocab-%s.gguf.inp", name);
    TU_SHARED_OR_SKIP(ipath, rel);
    snprintf(rel, sizeof rel, "reference/vocab/ggml-vocab-%s.gguf.out", name);
    TU_SHARED_OR_SKIP(opath, rel);
    snprintf(rel, sizeof rel, "models/vocab/ggml-vocab-%s.gguf", vocab);
    TU_SHARED_OR_SKIP(gpath, rel);

    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    assert_int_equal(slm_gguf_open(gpath, NULL, &g, err), SLM_OK);
    slm_status st = slm_tok_create(g, &t, err);
    if (st != SLM_OK) fprintf(stderr, "%s: %s\n", name, err);
    assert_int_equal(st, SLM_OK);
    slm_gguf_close(g); /* the tokenizer keeps copies */

    size_t ilen, olen;
    char *inp = tu_read_file(ipath, &ilen), *outp = tu_read_file(opath, &olen);
    assert_non_null(inp);
    assert_non_null(outp);
    static int32_t want[MAX_IDS], got[MAX_IDS];
    static char dec[1 << 16];
    int mismatches = 0, strings = 0;
    char *s = inp, *line = outp;
    for (char *e; (e = strstr(s, SEP)) != NULL; s = e + strlen(SEP), strings++) {
        size_t slen = (size_t)(e - s);
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        size_t nw = 0;
        for (char *p = line, *q; nw < MAX_IDS; p = q) {
            long v = strtol(p, &q, 10);
            if (q == p) break;
            want[nw++] = (int32_t)v;
        }
        line = nl + 1;

        size_t n = 0;
        st = slm_tok_encode(t, s, slen, 0, got, MAX_IDS, &n, err);
        assert_int_equal(st, SLM_OK);
        if (n != nw || memcmp(got, want, n * sizeof *got)) {
            fprintf(stderr, "MISMATCH vocab %s string %d: '%.*s'\n", name, strings, (int)slen, s);
            print_ids("expected", want, nw);
            print_ids("actual  ", got, n);
            mismatches++;
            continue;
        }
        if (round_trip) {
            size_t dn = slm_tok_decode(t, got, n, 0, dec, sizeof dec);
            assert_true(dn <= sizeof dec);
            if (dn != slen || memcmp(dec, s, slen)) {
                fprintf(stderr, "ROUND TRIP vocab %s string %d: '%.*s' -> '%.*s'\n", name, strings, (int)slen, s,
                        (int)dn, dec);
                mismatches++;
            }
        }
    }
    fprintf(stderr, "vocab %s: %d strings, %d mismatches\n", name, strings, mismatches);
    assert_true(strings > 0);
    free(inp);
    free(outp);
    slm_tok_destroy(t);
    assert_int_equal(mismatches, 0);
}

#define VOCAB_TEST(fn, name, rt) \
    static void fn(void **state) { (void)state; run_vocab(name, name, rt); }

VOCAB_TEST(test_llama_spm, "llama-spm", true)
VOCAB_TEST(test_phi_3, "phi-3", true)
VOCAB_TEST(test_gpt_2, "gpt-2", true)
VOCAB_TEST(test_llama_bpe, "llama-bpe", true)
VOCAB_TEST(test_qwen2, "qwen2", true)
VOCAB_TEST(test_smollm2, "smollm2", true)
VOCAB_TEST(test_deepseek_llm, "deepseek-llm", true)
VOCAB_TEST(test_deepseek_coder, "deepseek-coder", true)
VOCAB_TEST(test_falcon, "falcon", true)
VOCAB_TEST(test_starcoder, "starcoder", true)
VOCAB_TEST(test_refact, "refact", true)
VOCAB_TEST(test_mpt, "mpt", true)
VOCAB_TEST(test_bert_bge, "bert-bge", false)
/* Vectors without a vocabulary file in shared/: these skip (the file is named as missing). */
VOCAB_TEST(test_chameleon, "chameleon", true)
VOCAB_TEST(test_command_r, "command-r", true)
/* deepseek-r1-qwen is the qwen2 tokenizer (same vocabulary, same pre-tokenizer name class):
 * its vectors run against ggml-vocab-qwen2.gguf. */
static void test_deepseek_r1_qwen(void **state) {
    (void)state;
    run_vocab("deepseek-r1-qwen", "qwen2", true);
}
VOCAB_TEST(test_roberta_bpe, "roberta-bpe", true)

/* The prompts of shared/reference/logits/NAME.json: encoded with BOS they must give the
 * reference's "tokens"; for stories260K the pieces of "greedy" must concatenate to
 * "greedy_text" (the random-weight models' continuations hold invalid UTF-8 there). */
static void test_logits_prompts(void **state) {
    (void)state;
    char dir[512], path[1024], err[SLM_ERR_LEN] = "";
    TU_SHARED_OR_SKIP(dir, "reference/logits");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int checked = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 5, ".json")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        assert_non_null(j);
        const char *model = json_string_value(json_object_get(j, "model"));
        const char *prompt = json_string_value(json_object_get(j, "prompt"));
        json_t *toks = json_object_get(j, "tokens");
        assert_non_null(model);
        assert_non_null(prompt);
        char rel[256], mpath[512];
        snprintf(rel, sizeof rel, strncmp(model, "tiny-", 5) ? "models/%s" : "models/tiny/%s", model);
        if (!tu_shared_path(mpath, sizeof mpath, rel)) {
            json_decref(j);
            continue;
        }
        slm_gguf *g = NULL;
        slm_tokenizer *t = NULL;
        assert_int_equal(slm_gguf_open(mpath, NULL, &g, err), SLM_OK);
        assert_int_equal(slm_tok_create(g, &t, err), SLM_OK);
        slm_gguf_close(g);
        int32_t ids[1024];
        size_t n = 0;
        assert_int_equal(slm_tok_encode(t, prompt, strlen(prompt), SLM_TOK_ADD_BOS, ids, 1024, &n, err), SLM_OK);
        assert_int_equal(n, json_array_size(toks));
        for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], json_integer_value(json_array_get(toks, i)));
        if (!strcmp(model, "stories260K.gguf")) {
            json_t *greedy = json_object_get(j, "greedy");
            const char *want = json_string_value(json_object_get(j, "greedy_text"));
            char text[4096];
            size_t o = 0;
            for (size_t i = 0; i < json_array_size(greedy); i++) {
                int32_t id = (int32_t)json_integer_value(json_array_get(greedy, i));
                o += slm_tok_piece(t, id, 0, text + o, sizeof text - o);
                assert_true(o < sizeof text);
            }
            assert_non_null(want);
            assert_int_equal(o, strlen(want));
            assert_memory_equal(text, want, o);
        }
        slm_tok_destroy(t);
        json_decref(j);
        checked++;
    }
    closedir(d);
    fprintf(stderr, "logits prompts: %d files checked\n", checked);
    assert_true(checked > 0);
}

/* Every vocabulary file in shared/models/vocab builds (also those without vectors:
 * baichuan, gpt-neox) and encodes a mixed string with special parsing on. */
static void test_all_vocabs_load(void **state) {
    (void)state;
    char dir[512], path[1024], err[SLM_ERR_LEN] = "";
    TU_SHARED_OR_SKIP(dir, "models/vocab");
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n_files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 5, ".gguf")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        slm_gguf *g = NULL;
        slm_tokenizer *t = NULL;
        assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);
        slm_status st = slm_tok_create(g, &t, err);
        if (st != SLM_OK) fprintf(stderr, "%s: %s\n", e->d_name, err);
        assert_int_equal(st, SLM_OK);
        slm_gguf_close(g);
        const char *s = "Hello <|endoftext|><s> world \xe4\xbd\xa0\xe5\xa5\xbd 123";
        int32_t ids[64];
        size_t n = 0;
        assert_int_equal(slm_tok_encode(t, s, strlen(s), SLM_TOK_ADD_BOS | SLM_TOK_PARSE_SPECIAL, ids, 64, &n, err),
                         SLM_OK);
        assert_true(n > 0);
        slm_tok_destroy(t);
        n_files++;
    }
    closedir(d);
    assert_true(n_files >= 13);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm),      cmocka_unit_test(test_phi_3),
        cmocka_unit_test(test_gpt_2),          cmocka_unit_test(test_llama_bpe),
        cmocka_unit_test(test_qwen2),          cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_deepseek_llm),   cmocka_unit_test(test_deepseek_coder),
        cmocka_unit_test(test_falcon),         cmocka_unit_test(test_starcoder),
        cmocka_unit_test(test_refact),         cmocka_unit_test(test_mpt),
        cmocka_unit_test(test_bert_bge),       cmocka_unit_test(test_chameleon),
        cmocka_unit_test(test_command_r),      cmocka_unit_test(test_deepseek_r1_qwen),
        cmocka_unit_test(test_roberta_bpe),    cmocka_unit_test(test_logits_prompts),
        cmocka_unit_test(test_all_vocabs_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
