/*
 * tests/test_grammar.c: the grammar module: GBNF constructs and errors (with positions),
 * incremental matching fed in every split, UTF-8 split across pieces, token masks checked
 * against brute force (tokens spanning several elements, partial characters), JSON Schema
 * (exact integer ranges, lengths, every unsupported keyword named), regexes (and against
 * PCRE2), the cache, allocation failures, masks from the position tables against the trie
 * walk on real vocabularies, and constrained generation on a tiny model (tables prepared
 * ahead for its vocabulary).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "grammar/grammar_int.h"
#include "slmesh/grammar.h"
#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "slmesh/slmesh.h"
#include "testutil.h"

enum { REJECT = 0, PREFIX = 1, COMPLETE = 2 };

/* REJECT, PREFIX (valid but not complete) or COMPLETE for text fed in one piece. */
static int match(slm_grammar *g, const char *text, size_t n) {
    slm_grammar_matcher *m;
    assert_int_equal(slm_grammar_matcher_create(g, NULL, &m, NULL), SLM_OK);
    int r = slm_grammar_matcher_accept(m, text, n, NULL) != SLM_OK ? REJECT
          : slm_grammar_matcher_complete(m)                        ? COMPLETE
                                                                   : PREFIX;
    slm_grammar_matcher_destroy(m);
    return r;
}

static slm_grammar *gbnf(const char *src) {
    slm_grammar *g = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_grammar_from_gbnf(src, strlen(src), &g, err);
    if (st) fprintf(stderr, "grammar error: %s\n", err);
    assert_int_equal(st, SLM_OK);
    return g;
}

typedef struct mcase {
    const char *grammar;
    const char *text;
    int want;
} mcase;

/* ---- GBNF -------------------------------------------------------------------------------- */

static void test_gbnf_constructs(void **state) {
    (void)state;
    static const mcase cases[] = {
        {"root ::= \"abc\"", "abc", COMPLETE},
        {"root ::= \"abc\"", "ab", PREFIX},
        {"root ::= \"abc\"", "abd", REJECT},
        {"root ::= \"a\" | \"b\" | \"\"", "", COMPLETE},
        {"root ::= \"a\" | \"b\"", "b", COMPLETE},
        {"root ::= [a-c]+", "abcab", COMPLETE},
        {"root ::= [a-c]+", "", PREFIX},
        {"root ::= [a-c]+", "abd", REJECT},
        {"root ::= [^a-c]*", "xyz\n", COMPLETE},
        {"root ::= [^a-c]*", "xa", REJECT},
        {"root ::= [a-cx-z0]", "0", COMPLETE},
        {"root ::= .", "\xe4\xb8\x96", COMPLETE},
        {"root ::= \"a\"? \"b\"", "b", COMPLETE},
        {"root ::= \"a\"? \"b\"", "ab", COMPLETE},
        {"root ::= \"a\"{3}", "aa", PREFIX},
        {"root ::= \"a\"{3}", "aaa", COMPLETE},
        {"root ::= \"a\"{3}", "aaaa", REJECT},
        {"root ::= \"a\"{2,}", "aaaaaa", COMPLETE},
        {"root ::= \"a\"{2,}", "a", PREFIX},
        {"root ::= \"ab\"{1,2}", "abab", COMPLETE},
        {"root ::= \"ab\"{1,2}", "ababa", REJECT},
        {"root ::= \"a\"{0,0} \"b\"", "b", COMPLETE},
        {"root ::= ( \"x\" | \"y\" \"z\" )* \"!\"", "xyzx!", COMPLETE},
        {"root ::= ( \"x\" | \"y\" \"z\" )* \"!\"", "xy!", REJECT},
        {"root ::= \"(\" root \")\" | \"\"", "((()))", COMPLETE},
        {"root ::= \"(\" root \")\" | \"\"", "(()", PREFIX},
        {"root ::= \"(\" root \")\" | \"\"", "())", REJECT},
        {"root ::= a b\na ::= \"x\" # comment\nb ::= ( \"y\"\n  | \"z\" )", "xz", COMPLETE},
        {"root ::= \"\\x41\\u00e9\\U0001F600\\n\\t\\\"\\\\\"", "A\xc3\xa9\xf0\x9f\x98\x80\n\t\"\\", COMPLETE},
        {"root ::= [\\x41-\\x43\\]\\-]+", "AB]-C", COMPLETE},
        {"root ::= \"é\" [à-ÿ]", "\xc3\xa9\xc3\xbf", COMPLETE},
        {"root ::= x*\nx ::= \"\" | \"a\"", "aaa", COMPLETE}, /* nullable loop terminates */
        {"root ::= (\"a\" | \"\")* \"b\"", "aab", COMPLETE},
        {"root-1 ::= \"q\"\nroot ::= root-1 under_score\nunder_score ::= \"_\"", "q_", COMPLETE},
        {"root ::= root-2 ( \"a\" )\nroot-2 ::= \"b\"", "ba", COMPLETE}, /* helper names never collide */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_grammar *g = gbnf(cases[i].grammar);
        int got = match(g, cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want) fprintf(stderr, "case %zu: %s / '%s': got %d\n", i, cases[i].grammar, cases[i].text, got);
        assert_int_equal(got, cases[i].want);
        slm_grammar_release(g);
    }
}

static void test_gbnf_errors(void **state) {
    (void)state;
    static const struct { const char *src; slm_status st; const char *detail; } cases[] = {
        {"root ::= \"abc", SLM_ERR_CORRUPT, "line 1:10: unterminated literal"},
        {"root ::= [a-", SLM_ERR_CORRUPT, "line 1:10"},
        {"root ::= foo", SLM_ERR_CORRUPT, "undefined rule 'foo'"},
        {"foo ::= \"a\"", SLM_ERR_CORRUPT, "no rule named 'root'"},
        {"root ::= \"a\"\nroot ::= \"b\"", SLM_ERR_CORRUPT, "line 2:1: rule 'root' defined twice"},
        {"root ::= x\nx ::= x \"a\" | \"b\"", SLM_ERR_CORRUPT, "left recursion in rule 'x'"},
        {"root ::= y \"a\"\ny ::= \"\" | root", SLM_ERR_CORRUPT, "left recursion"},
        {"root ::= \"a\" )", SLM_ERR_CORRUPT, "line 1:14: unbalanced ')'"},
        {"root ::= ( \"a\"", SLM_ERR_CORRUPT, "expected ')'"},
        {"root ::= * \"a\"", SLM_ERR_CORRUPT, "nothing to repeat"},
        {"root ::= \"a\"{3,2}", SLM_ERR_CORRUPT, "max < min"},
        {"root ::= \"a\"{5000}", SLM_ERR_LIMIT, "repetition count above"},
        {"root ::= \"\\q\"", SLM_ERR_CORRUPT, "unknown escape"},
        {"root ::= [z-a]", SLM_ERR_CORRUPT, "reversed"},
        {"root \"a\"", SLM_ERR_CORRUPT, "line 1:6: expected '::='"},
        {"root ::= \"\\xZZ\"", SLM_ERR_CORRUPT, "hex digits"},
        {"root ::= \"\xff\"", SLM_ERR_CORRUPT, "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[SLM_ERR_LEN] = "";
        slm_grammar *g = (slm_grammar *)1;
        slm_status st = slm_grammar_from_gbnf(cases[i].src, strlen(cases[i].src), &g, err);
        if (st != cases[i].st || !strstr(err, cases[i].detail)) fprintf(stderr, "case %zu: status %d, '%s'\n", i, st, err);
        assert_int_equal(st, cases[i].st);
        assert_non_null(strstr(err, cases[i].detail));
        assert_null(g);
    }
    /* deep nesting is bounded */
    char deep[4 * SLM_GRAMMAR_MAX_DEPTH + 64];
    size_t n = (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i <= SLM_GRAMMAR_MAX_DEPTH; i++) deep[n++] = '(';
    deep[n] = 0;
    slm_grammar *g;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_grammar_from_gbnf(deep, n, &g, err), SLM_ERR_LIMIT);
}

/* Feed text in two pieces at every split point, and byte by byte; every prefix must stay
 * valid and only the whole text complete (when want_complete_only_at_end). */
static void feed_splits(slm_grammar *g, const char *text) {
    const size_t n = strlen(text);
    for (size_t cut = 0; cut <= n; cut++) {
        slm_grammar_matcher *m;
        assert_int_equal(slm_grammar_matcher_create(g, NULL, &m, NULL), SLM_OK);
        assert_int_equal(slm_grammar_matcher_accept(m, text, cut, NULL), SLM_OK);
        assert_int_equal(slm_grammar_matcher_accept(m, text + cut, n - cut, NULL), SLM_OK);
        assert_true(slm_grammar_matcher_complete(m));
        slm_grammar_matcher_destroy(m);
    }
    slm_grammar_matcher *m;
    assert_int_equal(slm_grammar_matcher_create(g, NULL, &m, NULL), SLM_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(slm_grammar_matcher_accept(m, text + i, 1, NULL), SLM_OK);
        if (i + 1 < n && ((unsigned char)text[i + 1] & 0xC0) == 0x80) assert_false(slm_grammar_matcher_complete(m));
    }
    assert_true(slm_grammar_matcher_complete(m));
    slm_grammar_matcher_reset(m);
    assert_false(slm_grammar_matcher_complete(m));
    slm_grammar_matcher_destroy(m);
}

static void test_every_prefix(void **state) {
    (void)state;
    slm_grammar *g = gbnf("root ::= \"{\" ws kv ( \",\" ws kv )* \"}\"\nkv ::= str \":\" ws ( str | [0-9]+ ) ws\n"
                          "str ::= \"\\\"\" [^\"]* \"\\\"\"\nws ::= \" \"?");
    feed_splits(g, "{\"a\": \"x\xc3\xa9\xe4\xb8\x96\xf0\x9f\x98\x80\", \"b\":12}");
    slm_grammar_release(g);
}

static void test_utf8(void **state) {
    (void)state;
    slm_grammar *g = gbnf("root ::= [a-z\\u00e9\\u4e16]*");
    assert_int_equal(match(g, "\xc3\xa9", 2), COMPLETE);
    assert_int_equal(match(g, "\xc3", 1), PREFIX);         /* é begun */
    assert_int_equal(match(g, "\xc3\xa8", 2), REJECT);     /* è not in the class */
    assert_int_equal(match(g, "\xc4", 1), REJECT);         /* no allowed character starts with C4 */
    assert_int_equal(match(g, "\xe4\xb8", 2), PREFIX);     /* 世 begun */
    assert_int_equal(match(g, "\xe4\xb9", 2), REJECT);
    assert_int_equal(match(g, "\xc0\x80", 2), REJECT);     /* overlong */
    assert_int_equal(match(g, "\x80", 1), REJECT);         /* stray continuation */
    slm_grammar_release(g);
    g = gbnf("root ::= .*");
    assert_int_equal(match(g, "\xed\xa0\x80", 3), REJECT); /* surrogate */
    assert_int_equal(match(g, "\xe0\x80\x80", 3), REJECT); /* overlong */
    assert_int_equal(match(g, "\xf4\x90\x80\x80", 4), REJECT); /* beyond U+10FFFF */
    assert_int_equal(match(g, "\xf0\x9f\x98", 3), PREFIX);
    assert_int_equal(match(g, "\xf0\x9f\x98\x80", 4), COMPLETE);
    slm_grammar_release(g);
}

static slm_grammar *schema_g(const char *s) {
    slm_grammar *g = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_grammar_from_json_schema(s, strlen(s), &g, err);
    if (st) fprintf(stderr, "schema error: %s\n", err);
    assert_int_equal(st, SLM_OK);
    return g;
}

/* ---- masks ------------------------------------------------------------------------------- */

static const char *const toy_vocab[] = {
    "", "{", "}", "\"", "\":", "\"}", "\",", ", \"", "a", "ab", "abc", "name", "\"name\":", "1", "12", "123", "0",
    "-", " ", "\n", "\xc3", "\xa9", "\xc3\xa9", "\xe4\xb8", "\x96", "\xe4\xb8\x96", "true", "tr", "ue", "null", "[", "]",
    "[1", "1,", "1]", "}\n", "x\"}", "\xff", "\xa9\"", "é\"}", "abcd", "bc", "b", "zz!", "z", "qz", "c\"", "a\xe4\xb8\x96", "\xe4\xb8\x96\xc3\xa9" "b", "\x7f", "a\x01",
};
#define TOY_N ((int32_t)(sizeof toy_vocab / sizeof toy_vocab[0]))

static size_t toy_piece(void *user, int32_t id, char *buf, size_t cap) {
    (void)user;
    const size_t n = strlen(toy_vocab[id]);
    memcpy(buf, toy_vocab[id], n < cap ? n : cap);
    return n;
}

/* Compare the mask after prefix with accepting each token separately. */
static void check_mask(slm_grammar *g, const slm_grammar_vocab *v, const char *prefix) {
    slm_grammar_matcher *m;
    assert_int_equal(slm_grammar_matcher_create(g, v, &m, NULL), SLM_OK);
    assert_int_equal(slm_grammar_matcher_accept(m, prefix, strlen(prefix), NULL), SLM_OK);
    uint32_t mask[(TOY_N + 31) / 32] = {0};
    assert_int_equal(slm_grammar_matcher_mask(m, mask, (TOY_N + 31) / 32, NULL), SLM_OK);
    for (int32_t id = 0; id < TOY_N; id++) {
        slm_grammar_matcher *t;
        assert_int_equal(slm_grammar_matcher_create(g, NULL, &t, NULL), SLM_OK);
        assert_int_equal(slm_grammar_matcher_accept(t, prefix, strlen(prefix), NULL), SLM_OK);
        bool ok = toy_vocab[id][0] && slm_grammar_matcher_accept(t, toy_vocab[id], strlen(toy_vocab[id]), NULL) == SLM_OK;
        bool bit = mask[id >> 5] >> (id & 31) & 1;
        if (ok != bit) fprintf(stderr, "prefix '%s' token %d '%s': mask %d, accept %d\n", prefix, id, toy_vocab[id], bit, ok);
        assert_int_equal(ok, bit);
        slm_grammar_matcher_destroy(t);
    }
    /* a second call is served from the cache and is identical */
    uint32_t again[(TOY_N + 31) / 32] = {0};
    assert_int_equal(slm_grammar_matcher_mask(m, again, (TOY_N + 31) / 32, NULL), SLM_OK);
    assert_memory_equal(mask, again, sizeof mask);
    slm_grammar_matcher_destroy(m);
}

static void test_mask_bruteforce(void **state) {
    (void)state;
    slm_grammar_vocab *v;
    assert_int_equal(slm_grammar_vocab_create(TOY_N, toy_piece, NULL, &v, NULL), SLM_OK);
    assert_int_equal(slm_grammar_vocab_n(v), TOY_N);
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                                 "\"n\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120},"
                                 "\"l\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},\"b\":{\"type\":[\"boolean\",\"null\"]}}}";
    slm_grammar *g;
    assert_int_equal(slm_grammar_from_json_schema(schema, sizeof schema - 1, &g, NULL), SLM_OK);
    static const char *const prefixes[] = {"", "{", "{\"name\":", "{\"name\": \"a", "{\"name\":\"\xc3", "{\"name\":\"\xe4\xb8",
                                           "{\"n\":", "{\"n\":1", "{\"n\":12", "{\"n\":-", "{\"l\":[", "{\"l\":[1",
                                           "{\"b\":tr", "{\"name\":\"x\"}"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) check_mask(g, v, prefixes[i]);
    slm_grammar_release(g);
    g = schema_g("{\"type\":\"string\",\"maxLength\":3}"); /* counted plain runs */
    check_mask(g, v, "");
    check_mask(g, v, "\"");
    check_mask(g, v, "\"a");
    check_mask(g, v, "\"ab");
    check_mask(g, v, "\"abc");
    check_mask(g, v, "\"\xc3\xa9");
    check_mask(g, v, "\"\xe4\xb8\x96" "a");
    check_mask(g, v, "\"\xe4\xb8");
    slm_grammar_release(g);
    g = schema_g("{\"type\":\"string\",\"pattern\":\"^[a-z\\u00e9]{0,4}$\"}"); /* covers only some plain characters */
    check_mask(g, v, "\"");
    check_mask(g, v, "\"ab");
    slm_grammar_release(g);
    g = gbnf("root ::= \"x\" ( [a-z] [a-z] )* \"!\""); /* a plain cycle of two states */
    check_mask(g, v, "x");
    check_mask(g, v, "xa");
    slm_grammar_release(g);
    g = gbnf("root ::= [a-c]* \"é\"");
    check_mask(g, v, "");
    check_mask(g, v, "ab");
    slm_grammar_release(g);
    /* below "ab" lies a rule that derives nothing (a cycle of tail references): "ab" and
     * "abc" end where w's window empties, and the stack below expands to nothing */
    g = gbnf("root ::= w v | \"z\"\nw ::= \"ab\" \"c\"?\nv ::= q\nq ::= r\nr ::= q");
    check_mask(g, v, "");
    check_mask(g, v, "a");
    slm_grammar_release(g);
    g = gbnf("root ::= w v | \"b\"\nw ::= \"zz!\"\nv ::= q\nq ::= r\nr ::= q"); /* "zz!": no longer token */
    check_mask(g, v, "");
    check_mask(g, v, "z");
    slm_grammar_release(g);
    slm_grammar_vocab_destroy(v);
}

/* The sampler hook allows end-of-generation only where the grammar is complete. */
static void test_mask_hook(void **state) {
    (void)state;
    slm_grammar_vocab *v;
    assert_int_equal(slm_grammar_vocab_create(TOY_N, toy_piece, NULL, &v, NULL), SLM_OK);
    slm_grammar *g = gbnf("root ::= \"1\" \"2\"?");
    slm_grammar_matcher *m;
    assert_int_equal(slm_grammar_matcher_create(g, v, &m, NULL), SLM_OK);
    const int32_t eog = 0; /* the empty piece: a control token */
    assert_int_equal(slm_grammar_matcher_set_eog(m, &eog, 1, NULL), SLM_OK);
    const int32_t bad = TOY_N;
    assert_int_equal(slm_grammar_matcher_set_eog(m, &bad, 1, NULL), SLM_ERR_RANGE);
    uint32_t mask[(TOY_N + 31) / 32] = {0};
    assert_int_equal(slm_grammar_mask_hook(m, mask, (TOY_N + 31) / 32, NULL), SLM_OK);
    assert_false(mask[0] & 1); /* not complete yet */
    assert_true(mask[13 >> 5] >> (13 & 31) & 1); /* "1" */
    assert_int_equal(slm_grammar_matcher_accept(m, "1", 1, NULL), SLM_OK);
    memset(mask, 0, sizeof mask);
    assert_int_equal(slm_grammar_mask_hook(m, mask, (TOY_N + 31) / 32, NULL), SLM_OK);
    assert_true(mask[0] & 1);                       /* complete: EOG allowed */
    assert_false(mask[13 >> 5] >> (13 & 31) & 1);   /* "1" no more */
    assert_true(slm_grammar_matcher_can_continue(m)); /* "2" may follow */
    assert_int_equal(slm_grammar_matcher_accept(m, "3", 1, NULL), SLM_ERR_STATE);
    assert_true(slm_grammar_matcher_complete(m)); /* a rejected piece changes nothing */
    slm_grammar_matcher_destroy(m);
    slm_grammar_release(g);
    slm_grammar_vocab_destroy(v);
}

/* ---- JSON Schema ------------------------------------------------------------------------- */

static void test_schema_integer_ranges(void **state) {
    (void)state;
    static const long long bounds[][2] = {{0, 0}, {-5, 123}, {7, 1000}, {-1000, -20}, {-99, 99}, {1, 9}, {10, 99},
                                          {19, 201}, {-101, 0}, {250, 255}, {0, 1099}};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        char s[160];
        snprintf(s, sizeof s, "{\"type\":\"integer\",\"minimum\":%lld,\"maximum\":%lld}", bounds[b][0], bounds[b][1]);
        slm_grammar *g = schema_g(s);
        for (long long x = -1200; x <= 1200; x++) {
            char t[32];
            int n = snprintf(t, sizeof t, "%lld", x);
            const bool in = x >= bounds[b][0] && x <= bounds[b][1];
            const int got = match(g, t, (size_t)n);
            if ((got == COMPLETE) != in) fprintf(stderr, "[%lld,%lld] %lld: %d\n", bounds[b][0], bounds[b][1], x, got);
            assert_int_equal(got == COMPLETE, in);
        }
        assert_int_equal(match(g, "007", 3) == COMPLETE, false); /* no leading zeros */
        assert_int_equal(match(g, "-0", 2) == COMPLETE, false);
        slm_grammar_release(g);
    }
    slm_grammar *g = schema_g("{\"type\":\"integer\",\"minimum\":1.5}");
    assert_int_equal(match(g, "1", 1), PREFIX); /* only as the start of 10.. */
    assert_int_equal(match(g, "2", 1), COMPLETE);
    slm_grammar_release(g);
}

static void test_schema_values(void **state) {
    (void)state;
    static const mcase cases[] = {
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"ab\"", COMPLETE},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"a\"", REJECT},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"\\u00e9\\n\\\"\"", COMPLETE},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", "\"abcd", REJECT},
        {"{\"type\":\"string\"}", "\"\\ud800\"", REJECT}, /* surrogate escapes never generated */
        {"{\"type\":\"string\"}", "\"a\nb\"", REJECT},    /* raw control character */
        {"{\"type\":\"number\"}", "-12.5e+3", COMPLETE},
        {"{\"type\":\"number\"}", "01", REJECT},
        {"{\"type\":\"number\"}", "1e999", REJECT},       /* bounded exponent: always finite */
        {"{\"type\":\"boolean\"}", "false", COMPLETE},
        {"{\"type\":[\"null\",\"integer\"]}", "null", COMPLETE},
        {"{\"type\":[\"null\",\"integer\"]}", "3", COMPLETE},
        {"{\"enum\":[\"a\",{\"b\":[1,null]},2.5]}", "{\"b\":[1,null]}", COMPLETE},
        {"{\"enum\":[\"a\",{\"b\":[1,null]},2.5]}", "2.5", COMPLETE},
        {"{\"type\":\"string\",\"enum\":[\"a\",1]}", "1", REJECT},
        {"{\"const\":\"x\\\"y\"}", "\"x\\\"y\"", COMPLETE},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":2}", "[]", REJECT},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":2}", "[1, 2]", COMPLETE},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":2}", "[1,2,3]", REJECT},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"null\"}},\"required\":[\"b\"]}",
         "{\"b\":null}", COMPLETE},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"null\"}},\"required\":[\"b\"]}",
         "{\"a\":null}", REJECT},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"null\"}},\"required\":[\"b\"]}",
         "{\"b\":null,\"a\":null}", REJECT}, /* schema order */
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"}}}", "{}", COMPLETE},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"}}}", "{\"z\":null}", REJECT},
        {"{\"type\":\"object\"}", "{\"z\": [1, {\"y\": \"\"}]}", COMPLETE},
        {"{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}}}},"
         "\"$ref\":\"#/$defs/n\"}", "{\"c\":[{\"c\":[{}]},{}]}", COMPLETE},
        {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}", "\"ab\"", REJECT},
        {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "\"ab\"", COMPLETE},
        {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-28\"", COMPLETE},
        {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-30\"", REJECT},
        {"{\"type\":\"string\",\"format\":\"date\"}", "\"2024-04-31\"", REJECT},
        {"{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-01-31T23:59:59.5+05:30\"", COMPLETE},
        {"{\"type\":\"string\",\"format\":\"date-time\"}", "\"2024-01-31T24:00:00Z\"", REJECT},
        {"{\"type\":\"string\",\"format\":\"uuid\"}", "\"123e4567-e89b-12d3-a456-426614174000\"", COMPLETE},
        {"{\"type\":\"string\",\"format\":\"email\"}", "\"a.b+c@ex-ample.co\"", COMPLETE},
        {"{\"type\":\"string\",\"format\":\"email\"}", "\"a..b@x.co\"", REJECT},
        {"{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}$\"}", "\"AB-123\"", COMPLETE},
        {"{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}$\"}", "\"AB-1234\"", REJECT},
        {"{\"type\":\"string\",\"pattern\":\"\\\\d{2}\"}", "\"xx12yy\"", COMPLETE}, /* a search */
        {"{\"type\":\"string\",\"pattern\":\"^a|b$\"}", "\"ax\"", COMPLETE},
        {"{\"type\":\"string\",\"pattern\":\"^a|b$\"}", "\"xb\"", COMPLETE},
        {"{\"type\":\"string\",\"pattern\":\"^a|b$\"}", "\"xa\"", REJECT},
        {"{\"type\":\"string\",\"pattern\":\"^q\\\"$\"}", "\"q\\\"\"", COMPLETE},
        {"true", "[1,\"a\",{}]", COMPLETE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_grammar *g = schema_g(cases[i].grammar);
        int got = match(g, cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want) fprintf(stderr, "case %zu: %s / '%s': got %d\n", i, cases[i].grammar, cases[i].text, got);
        assert_int_equal(got, cases[i].want);
        slm_grammar_release(g);
    }
}

static void test_schema_unsupported(void **state) {
    (void)state;
    static const struct { const char *schema; slm_status st; const char *detail; } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"patternProperties\":{}}}}", SLM_ERR_UNSUPPORTED,
         "unsupported JSON Schema keyword 'patternProperties' at /properties/x"},
        {"{\"allOf\":[{}]}", SLM_ERR_UNSUPPORTED, "'allOf' at /"},
        {"{\"not\":{}}", SLM_ERR_UNSUPPORTED, "'not'"},
        {"{\"if\":{},\"then\":{}}", SLM_ERR_UNSUPPORTED, "'if'"},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0}", SLM_ERR_UNSUPPORTED, "'exclusiveMinimum'"},
        {"{\"type\":\"number\",\"multipleOf\":2}", SLM_ERR_UNSUPPORTED, "'multipleOf'"},
        {"{\"type\":\"array\",\"prefixItems\":[]}", SLM_ERR_UNSUPPORTED, "'prefixItems'"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", SLM_ERR_UNSUPPORTED, "'uniqueItems'"},
        {"{\"type\":\"array\",\"contains\":{}}", SLM_ERR_UNSUPPORTED, "'contains'"},
        {"{\"type\":\"object\",\"minProperties\":1}", SLM_ERR_UNSUPPORTED, "'minProperties'"},
        {"{\"type\":\"object\",\"dependentRequired\":{}}", SLM_ERR_UNSUPPORTED, "'dependentRequired'"},
        {"{\"type\":\"object\",\"propertyNames\":{}}", SLM_ERR_UNSUPPORTED, "'propertyNames'"},
        {"{\"type\":\"object\",\"unevaluatedProperties\":false}", SLM_ERR_UNSUPPORTED, "'unevaluatedProperties'"},
        {"{\"$anchor\":\"a\"}", SLM_ERR_UNSUPPORTED, "'$anchor'"},
        {"{\"$dynamicRef\":\"#a\"}", SLM_ERR_UNSUPPORTED, "'$dynamicRef'"},
        {"{\"type\":\"string\",\"contentEncoding\":\"base64\"}", SLM_ERR_UNSUPPORTED, "'contentEncoding'"},
        {"{\"type\":\"string\",\"format\":\"uri\"}", SLM_ERR_UNSUPPORTED, "format 'uri'"},
        {"{\"type\":\"number\",\"minimum\":0}", SLM_ERR_UNSUPPORTED, "non-integer"},
        {"{\"type\":\"string\",\"pattern\":\"(?=a)\"}", SLM_ERR_UNSUPPORTED, "lookaround"},
        {"{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", SLM_ERR_UNSUPPORTED, "backreference"},
        {"{\"type\":\"string\",\"pattern\":\"a\",\"maxLength\":3}", SLM_ERR_UNSUPPORTED, "combination"},
        {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", SLM_ERR_UNSUPPORTED, "not provably exclusive"},
        {"{\"$ref\":\"http://x/y\"}", SLM_ERR_UNSUPPORTED, "unsupported $ref 'http://x/y' at /: remote references are never fetched"},
        {"{\"properties\":{\"a\":{\"$ref\":\"other.json#/x\"}}}", SLM_ERR_UNSUPPORTED, "'other.json#/x' at /properties/a: remote"},
        {"{\"type\":\"object\",\"anyOf\":[{}]}", SLM_ERR_UNSUPPORTED, "'type' next to 'anyOf'"},
        {"{\"$ref\":\"#\"}", SLM_ERR_CORRUPT, "matches nothing"},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", SLM_ERR_CORRUPT, "matches nothing"},
        {"false", SLM_ERR_UNSUPPORTED, "allows nothing"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", SLM_ERR_UNSUPPORTED, "no integer"},
        {"{\"type\":\"object\",\"required\":[\"a\"]}", SLM_ERR_UNSUPPORTED, "'a'"},
        {"{\"type\":\"array\",\"items\":[{}]}", SLM_ERR_UNSUPPORTED, "'items' as an array"},
        {"{\"type\":\"strin\"}", SLM_ERR_CORRUPT, "bad type"},
        {"{\"type\":", SLM_ERR_CORRUPT, "schema JSON"},
        {"{\"$ref\":\"#/$defs/missing\"}", SLM_ERR_CORRUPT, "does not resolve"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[SLM_ERR_LEN] = "";
        slm_grammar *g = (slm_grammar *)1;
        slm_status st = slm_grammar_from_json_schema(cases[i].schema, strlen(cases[i].schema), &g, err);
        if (st != cases[i].st || !strstr(err, cases[i].detail)) fprintf(stderr, "case %zu: status %d, '%s'\n", i, st, err);
        assert_int_equal(st, cases[i].st);
        assert_non_null(strstr(err, cases[i].detail));
        assert_null(g);
    }
}

/* ---- regex, json_object, cache ------------------------------------------------------------------ */

/* xorshift64: random choices of the randomized tests below */
static uint64_t diff_rand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

/* The automaton against an independent regex engine: for random strings of whole UTF-8
 * characters, the matcher completes exactly when PCRE2 matches the whole string, and rejects
 * exactly when no extension could match (PCRE2's hard partial match). Covers transitions
 * copied for character sets with runs and the dead bytes of new states. Patterns avoid the
 * places where ECMAScript and PCRE2 differ (\s, ., Unicode classes). */
static void test_regex_vs_pcre2(void **state) {
    (void)state;
    static const char *const res[] = {"[a-c]{2,4}x?", "(ab|a)*c", "[^x\\n]{0,3}\u00e9+", "\\d{1,3}(\\.\\d{1,3}){0,2}",
                                      "(a|bc|[d-f]{2})+", "x(y|z)*[0-9]?", "[a-z0-9_+-]{1,6}@[a-z]{1,3}(\\.[a-z]{2,3}){1,2}",
                                      "\"([^\"\\\\]|\\\\.){0,5}\""};
    static const char *const alphabet[] = {"a", "b", "c", "d", "e", "x", "y", "z", "0", "9", ".", "@", "_", "\"", "\\",
                                           "\n", "\xc3\xa9", "\xe4\xb8\x96"};
    const size_t n_alpha = sizeof alphabet / sizeof alphabet[0];
    uint64_t seed = 0x2545F4914F6CDD1DULL;
    for (size_t r = 0; r < sizeof res / sizeof res[0]; r++) {
        slm_grammar *g;
        char err[SLM_ERR_LEN] = "";
        assert_int_equal(slm_grammar_from_regex(res[r], strlen(res[r]), &g, err), SLM_OK);
        int code;
        PCRE2_SIZE off;
        char whole[256]; /* the whole subject; ALT_BSUX: ECMAScript's \\uHHHH */
        snprintf(whole, sizeof whole, "(?:%s)\\z", res[r]);
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)whole, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ALT_BSUX, &code, &off, NULL);
        if (!re) fprintf(stderr, "pcre2 cannot compile %s: error %d at %zu\n", whole, code, (size_t)off);
        assert_non_null(re);
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        int agree[3] = {0};
        for (int k = 0; k < 3000; k++) {
            char text[64];
            size_t n = 0;
            const int len = (int)(diff_rand(&seed) % 9);
            for (int i = 0; i < len; i++) {
                const char *c = alphabet[diff_rand(&seed) % n_alpha];
                memcpy(text + n, c, strlen(c)), n += strlen(c);
            }
            const int got = match(g, text, n);
            const bool full = pcre2_match(re, (PCRE2_SPTR)text, n, 0, 0, md, NULL) >= 0;
            const int part = pcre2_match(re, (PCRE2_SPTR)text, n, 0, PCRE2_PARTIAL_HARD, md, NULL);
            /* (PCRE2 reports no partial match of an empty subject: every language here is
             * non-empty, so the empty prefix is viable) */
            const int want = full ? COMPLETE : part == PCRE2_ERROR_PARTIAL || n == 0 ? PREFIX : REJECT;
            if (got != want) fprintf(stderr, "/%s/ on '%.*s': matcher %d, pcre2 %d\n", res[r], (int)n, text, got, want);
            assert_int_equal(got, want);
            agree[want]++;
        }
        assert_true(agree[REJECT] > 0 && agree[PREFIX] + agree[COMPLETE] > 0); /* both sides seen */
        pcre2_match_data_free(md);
        pcre2_code_free(re);
        slm_grammar_release(g);
    }
}

static void test_regex(void **state) {
    (void)state;
    static const struct { const char *re; const char *text; int want; } cases[] = {
        {"[a-z]+@(x|y)\\.com", "ab@y.com", COMPLETE},
        {"[a-z]+@(x|y)\\.com", "ab@z.com", REJECT},
        {"^\\d{3}-\\d{4}$", "555-1234", COMPLETE},
        {"(?:ab)+c?", "ababc", COMPLETE},
        {"a.c", "a\nc", REJECT},
        {"[^\\s]+", "ab\xc3\xa9", COMPLETE},
        {"\\w+\\s\\W", "ab !", COMPLETE},
        {"x{2,3}?", "xxx", COMPLETE},
        {"\\u00e9|\\x41", "A", COMPLETE},
        {"a{", "a{", COMPLETE}, /* a literal brace */
        {"(?<year>\\d{4})", "2024", COMPLETE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        slm_grammar *g;
        char err[SLM_ERR_LEN] = "";
        assert_int_equal(slm_grammar_from_regex(cases[i].re, strlen(cases[i].re), &g, err), SLM_OK);
        int got = match(g, cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want) fprintf(stderr, "case %zu: %s / '%s': got %d\n", i, cases[i].re, cases[i].text, got);
        assert_int_equal(got, cases[i].want);
        slm_grammar_release(g);
    }
    static const char *const bad[] = {"\\bword", "(?!x)", "a(", "a)", "[z-a]", "a^b", "a$b", "\\p{L}", "**"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slm_grammar *g = (slm_grammar *)1;
        char err[SLM_ERR_LEN] = "";
        slm_status st = slm_grammar_from_regex(bad[i], strlen(bad[i]), &g, err);
        assert_true(st == SLM_ERR_UNSUPPORTED || st == SLM_ERR_CORRUPT);
        assert_non_null(strstr(err, "regex at offset"));
        assert_null(g);
    }
}

static void test_json_object_and_cache(void **state) {
    (void)state;
    slm_grammar *g;
    assert_int_equal(slm_grammar_json_object(&g, NULL), SLM_OK);
    { static const char t[] = "{\"a\": [1, 2.5, \"x\", true, null, {}]}"; assert_int_equal(match(g, t, sizeof t - 1), COMPLETE); }
    assert_int_equal(match(g, "[1]", 3), REJECT);
    slm_grammar_release(g);

    slm_grammar_cache *c;
    assert_int_equal(slm_grammar_cache_create(2, &c, NULL), SLM_OK);
    slm_grammar *a, *b, *x;
    bool hit;
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_GBNF, "root ::= \"a\"", 12, &a, &hit, NULL), SLM_OK);
    assert_false(hit);
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_GBNF, "root ::= \"a\"", 12, &b, &hit, NULL), SLM_OK);
    assert_true(hit);
    assert_ptr_equal(a, b);
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_REGEX, "a(", 2, &x, &hit, NULL), SLM_ERR_CORRUPT);
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_REGEX, "a", 1, &x, &hit, NULL), SLM_OK);
    assert_false(hit);
    slm_grammar_release(x);
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_JSON_OBJECT, NULL, 0, &x, &hit, NULL), SLM_OK);
    slm_grammar_release(x); /* evicts the gbnf entry: a and b still hold it */
    assert_int_equal(match(a, "a", 1), COMPLETE);
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_grammar_cache_get(c, SLM_GRAMMAR_JSON_SCHEMA, "{\"not\":{}}", 10, &x, &hit, err), SLM_ERR_UNSUPPORTED);
    slm_grammar_release(a);
    slm_grammar_release(b);
    slm_grammar_cache_destroy(c);
}

/* Every allocation failure while compiling, matching and masking is reported, never a crash
 * or a leak (ASan). */
static void test_alloc_failures(void **state) {
    (void)state;
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"format\":\"date\"},"
                                 "\"b\":{\"type\":\"integer\",\"minimum\":3,\"maximum\":77}},\"required\":[\"a\"]}";
    for (long n = 1;; n++) {
        slm_fault_arm(n);
        slm_grammar *g = NULL;
        slm_grammar_vocab *v = NULL;
        slm_grammar_matcher *m = NULL;
        uint32_t mask[(TOY_N + 31) / 32] = {0};
        slm_status st = slm_grammar_from_json_schema(schema, sizeof schema - 1, &g, NULL);
        if (st == SLM_OK) st = slm_grammar_vocab_create(TOY_N, toy_piece, NULL, &v, NULL);
        if (st == SLM_OK) st = slm_grammar_matcher_create(g, v, &m, NULL);
        if (st == SLM_OK) st = slm_grammar_matcher_accept(m, "{\"a\":\"2024-0", 12, NULL);
        if (st == SLM_OK) st = slm_grammar_matcher_mask(m, mask, (TOY_N + 31) / 32, NULL);
        const bool fired = slm_fault_fired();
        slm_fault_arm(0);
        slm_grammar_matcher_destroy(m);
        slm_grammar_vocab_destroy(v);
        slm_grammar_release(g);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            break;
        }
        assert_int_not_equal(st, SLM_OK);
    }
}

/* ---- position tables against the trie walk -------------------------------------------------- */

/* The mask composed from the position tables (slm_grammar_matcher_mask) must equal the full
 * trie walk (slm_grammar_matcher_mask_walk, the specification) in every state. States come
 * from random walks: each step picks a random allowed token of a real vocabulary, so strings,
 * escapes, partial UTF-8 tokens, closing tokens and nesting are all reached. Sanitizer
 * builds (~15x slower) run every 6th grammar on one vocabulary. */
#if defined(__SANITIZE_ADDRESS__)
#define TU_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_SANITIZED 1
#endif
#endif
#ifndef TU_SANITIZED
#define TU_SANITIZED 0
#endif

#define DIFF_STEPS 40 /* tokens per random walk */
#define DIFF_RUNS  2  /* random walks per grammar and vocabulary */

typedef struct real_vocab {
    slm_gguf *gg;
    slm_tokenizer *t;
    slm_grammar_vocab *v;
    int32_t n;
    uint32_t *tables, *walk; /* [words] */
} real_vocab;

static size_t real_piece(void *user, int32_t id, char *buf, size_t cap) { return slm_tok_piece(user, id, 0, buf, cap); }

static bool real_vocab_open(real_vocab *r, const char *path) {
    char err[SLM_ERR_LEN];
    memset(r, 0, sizeof *r);
    if (slm_gguf_open(path, NULL, &r->gg, err) || slm_tok_create(r->gg, &r->t, err)) return false;
    r->n = slm_tok_n_vocab(r->t);
    assert_int_equal(slm_grammar_vocab_create(r->n, real_piece, r->t, &r->v, err), SLM_OK);
    r->tables = malloc(((size_t)r->n + 31) / 32 * 4);
    r->walk = malloc(((size_t)r->n + 31) / 32 * 4);
    return true;
}

static void real_vocab_close(real_vocab *r) {
    slm_grammar_vocab_destroy(r->v);
    slm_tok_destroy(r->t);
    slm_gguf_close(r->gg);
    free(r->tables), free(r->walk);
}

static void diff_grammar(slm_grammar *g, real_vocab *r, const char *name, uint64_t seed) {
    const size_t words = ((size_t)r->n + 31) / 32;
    char piece[SLM_GRAMMAR_MAX_PIECE + 1];
    /* every 3rd grammar with partial tables (a seed-chosen window count, sometimes none):
     * the windows left out are then computed on demand, deepening along the real stacks */
    if (seed % 3 == 0) assert_int_equal(slm_grammar_prepare_limited(g, r->v, (uint32_t)(seed / 3 % 4 * 7), NULL), SLM_OK);
    for (int run = 0; run < DIFF_RUNS; run++) {
        slm_grammar_matcher *m;
        assert_int_equal(slm_grammar_matcher_create(g, r->v, &m, NULL), SLM_OK);
        for (int step = 0; step < DIFF_STEPS; step++) {
            memset(r->tables, 0, words * 4);
            memset(r->walk, 0, words * 4);
            assert_int_equal(slm_grammar_matcher_mask(m, r->tables, words, NULL), SLM_OK);
            assert_int_equal(slm_grammar_matcher_mask_walk(m, r->walk, words, NULL), SLM_OK);
            uint32_t allowed = 0;
            for (int32_t id = 0; id < r->n; id++) {
                const bool a = r->tables[id >> 5] >> (id & 31) & 1, b = r->walk[id >> 5] >> (id & 31) & 1;
                if (a != b) {
                    size_t n = slm_tok_piece(r->t, id, 0, piece, sizeof piece - 1);
                    piece[n < sizeof piece - 1 ? n : sizeof piece - 1] = 0;
                    fprintf(stderr, "%s run %d step %d: token %d '%s': tables %d, walk %d\n", name, run, step, id, piece, a, b);
                }
                assert_int_equal(a, b);
                allowed += a;
            }
            if (allowed == 0) break;
            uint32_t pick = (uint32_t)(diff_rand(&seed) % allowed);
            int32_t id = 0;
            for (;; id++)
                if ((r->walk[id >> 5] >> (id & 31) & 1) && pick-- == 0) break;
            const size_t n = slm_tok_piece(r->t, id, 0, piece, sizeof piece);
            assert_int_equal(slm_grammar_matcher_accept(m, piece, n, NULL), SLM_OK);
            if (slm_grammar_matcher_complete(m) && !slm_grammar_matcher_can_continue(m)) break;
        }
        slm_grammar_matcher_destroy(m);
    }
}

static void test_tables_vs_walk(void **state) {
    (void)state;
    char path[1024];
    TU_SHARED_OR_SKIP(path, "models/vocab/ggml-vocab-smollm2.gguf");
    static const char *const vocabs[] = {"models/vocab/ggml-vocab-smollm2.gguf", "models/vocab/ggml-vocab-qwen2.gguf"};
    static const char *const gbnfs[] = {
        /* generic JSON with free whitespace: nullable tail loops, recursion through values */
        "root ::= value\nvalue ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
        "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\" ws\n"
        "array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
        "string ::= \"\\\"\" ( [^\"\\\\] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
        "number ::= \"-\"? ([0-9] | [1-9] [0-9]*) (\".\" [0-9]+)? ws\nws ::= [ \\t\\n]*",
        /* arithmetic: deep recursion, tokens closing several levels at once */
        "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") factor)*\n"
        "factor ::= [0-9]+ | \"(\" expr \")\" | \"-\" factor",
        /* free text that may end anywhere, lines, non-ASCII classes */
        "root ::= line+\nline ::= [^\\n]* \"\\n\"",
        "root ::= ( [a-z ]+ | [\\u4e00-\\u9fff]+ | [\\u00e0-\\u00ff] )* \".\"",
        "root ::= \"<\" tag \">\" [^<]* \"</\" tag \">\"\ntag ::= [a-z]{1,8}",
        /* below "ab" lies a rule that derives nothing (a cycle of tail references): the
         * window's end-of-token pop must not be trusted (the tables fall back to the walk) */
        "root ::= w v | [a-z]+ \".\"\nw ::= \"ab\"\nv ::= q\nq ::= r\nr ::= q",
    };
    static const char *const regexes[] = {"[A-Z][a-z]+( [A-Z][a-z]+)*", "\\d{3}-\\d{4}|\\(\\d+\\)", ".{0,12}é"};
    const char *src = getenv("SLMESH_SOURCE_DIR");
    for (size_t vi = 0; vi < (TU_SANITIZED ? 1 : 2); vi++) {
        real_vocab r;
        if (!tu_shared_path(path, sizeof path, vocabs[vi]) || !real_vocab_open(&r, path)) continue;
        uint64_t seed = 0x9E3779B97F4A7C15ULL + vi;
        int n = 0;
        for (size_t i = 0; i < sizeof gbnfs / sizeof gbnfs[0]; i++) {
            slm_grammar *g = gbnf(gbnfs[i]);
            diff_grammar(g, &r, gbnfs[i], seed + i);
            slm_grammar_release(g);
        }
        for (size_t i = 0; i < sizeof regexes / sizeof regexes[0]; i++) {
            slm_grammar *g;
            assert_int_equal(slm_grammar_from_regex(regexes[i], strlen(regexes[i]), &g, NULL), SLM_OK);
            diff_grammar(g, &r, regexes[i], seed + 100 + i);
            slm_grammar_release(g);
        }
        for (int k = 1; src && k < 100; k++) { /* tests/schema_corpus/NN_*.json */
            char pat[64];
            snprintf(pat, sizeof pat, "%02d_", k);
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/tests/schema_corpus", src);
            DIR *dp = opendir(dir);
            if (!dp) break;
            struct dirent *de;
            char file[2048] = "";
            while ((de = readdir(dp)))
                if (!strncmp(de->d_name, pat, 3) && strstr(de->d_name, ".json")) snprintf(file, sizeof file, "%s/%s", dir, de->d_name);
            closedir(dp);
            if (!file[0]) break;
            if (TU_SANITIZED && k % 6) continue;
            size_t len;
            char *text = tu_read_file(file, &len);
            assert_non_null(text);
            slm_grammar *g;
            assert_int_equal(slm_grammar_from_json_schema(text, len, &g, NULL), SLM_OK);
            diff_grammar(g, &r, file, seed + 1000 + (uint64_t)k);
            slm_grammar_release(g);
            free(text);
            n++;
        }
        fprintf(stderr, "%s: %d corpus schemas and %zu grammars agree\n", vocabs[vi], n,
                sizeof gbnfs / sizeof gbnfs[0] + sizeof regexes / sizeof regexes[0]);
        real_vocab_close(&r);
    }
}

/* ---- generation on a tiny model --------------------------------------------------------------- */

typedef struct out_buf {
    char text[8192];
    size_t n;
} out_buf;

static bool collect(const slm_gen_token *t, void *user) {
    out_buf *o = user;
    if (t->text_len && o->n + t->text_len < sizeof o->text) memcpy(o->text + o->n, t->text, t->text_len), o->n += t->text_len;
    return true;
}

static void test_generate_constrained(void **state) {
    (void)state;
    char path[1024];
    TU_SHARED_OR_SKIP(path, "models/tiny/tiny-qwen2-q8_0.gguf");
    slm_model *m;
    slm_ctx *c;
    assert_int_equal(slm_model_open(path, NULL, &m, NULL), SLM_OK);
    slm_ctx_params cp = {.n_ctx = 512, .n_threads = 1};
    assert_int_equal(slm_ctx_create(m, &cp, &c, NULL), SLM_OK);
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":99},"
                                 "\"tag\":{\"enum\":[\"x\",\"y\"]}},\"required\":[\"id\",\"tag\"]}";
    slm_grammar *g;
    assert_int_equal(slm_grammar_from_json_schema(schema, sizeof schema - 1, &g, NULL), SLM_OK);
    int32_t prompt[8];
    size_t n_prompt;
    assert_int_equal(slm_model_tokenize(m, "hi", 2, SLM_TOKENIZE_ADD_BOS, prompt, 8, &n_prompt, NULL), SLM_OK);
    /* tables prepared ahead for the model (as the server does) are the ones generation finds:
     * the model's vocabulary hash equals its trie's, and a second preparation adds nothing */
    slm_grammar_vocab *v;
    assert_int_equal(slm_grammar_vocab_from_model(m, &v, NULL), SLM_OK);
    uint64_t fp;
    int32_t n_vocab;
    slm_grammar_model_vocab_id(m, &fp, &n_vocab);
    assert_true(fp == v->fp && n_vocab == v->n_vocab);
    slm_grammar_cache *gc;
    assert_int_equal(slm_grammar_cache_create(4, &gc, NULL), SLM_OK);
    assert_false(slm_grammar_prepared_for(g, m));
    assert_int_equal(slm_grammar_cache_prepare(gc, g, m, NULL), SLM_OK);
    assert_true(slm_grammar_prepared_for(g, m));
    assert_int_equal(g->n_prep, 1);
    assert_int_equal(slm_grammar_prepare(g, v, NULL), SLM_OK); /* found: same vocabulary */
    assert_int_equal(g->n_prep, 1);
    slm_grammar *g2; /* a second grammar reuses the cached trie */
    assert_int_equal(slm_grammar_from_regex("[a-z]{1,5}", 10, &g2, NULL), SLM_OK);
    assert_int_equal(slm_grammar_cache_prepare(gc, g2, m, NULL), SLM_OK);
    assert_int_equal(slm_grammar_prepare_model(g2, m, NULL), SLM_OK);
    assert_int_equal(g2->n_prep, 1);
    slm_grammar_release(g2);
    slm_grammar_cache_destroy(gc);
    slm_grammar_vocab_destroy(v);
    for (uint64_t seed = 1; seed <= 6; seed++) {
        slm_gen_params p = {.max_tokens = seed == 6 ? 3 : 200, .sampling = slm_sampling_default(), .grammar = g};
        p.sampling.temperature = 1.5f, p.sampling.seed = seed;
        out_buf o = {.n = 0};
        slm_gen_result r;
        char err[SLM_ERR_LEN] = "";
        slm_ctx_clear(c);
        assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &p, collect, &o, &r, err), SLM_OK);
        const int got = match(g, o.text, o.n);
        if (seed == 6) { /* truncated: reported as length, never as complete */
            assert_int_equal(r.stop, SLM_GEN_STOP_LENGTH);
            assert_int_equal(got, PREFIX);
        } else {
            assert_true(r.stop == SLM_GEN_STOP_GRAMMAR || r.stop == SLM_GEN_STOP_EOG || r.stop == SLM_GEN_STOP_LENGTH);
            assert_int_equal(got, r.stop == SLM_GEN_STOP_LENGTH ? PREFIX : COMPLETE);
        }
    }
    slm_grammar_release(g);
    slm_ctx_destroy(c);
    slm_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gbnf_constructs),     cmocka_unit_test(test_gbnf_errors),
        cmocka_unit_test(test_every_prefix),        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_mask_bruteforce),     cmocka_unit_test(test_mask_hook),
        cmocka_unit_test(test_schema_integer_ranges),
        cmocka_unit_test(test_schema_values),       cmocka_unit_test(test_schema_unsupported),
        cmocka_unit_test(test_regex),               cmocka_unit_test(test_regex_vs_pcre2),
        cmocka_unit_test(test_json_object_and_cache),
        cmocka_unit_test(test_alloc_failures),      cmocka_unit_test(test_tables_vs_walk),
        cmocka_unit_test(test_generate_constrained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
