/*
 * tests/test_tokenizer.c: unit tests of the tokenizer on a tiny SentencePiece vocabulary
 * built in memory (special tokens, byte fallback, merges by score), and on the shared
 * qwen2 / gpt-2 vocabularies when ../shared is present: special-token parsing on and off,
 * BOS/EOS flags, the SLM_ERR_FULL protocol, invalid UTF-8, allocation failures, decoding
 * and the UTF-8 stream.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

/* ---- a tiny GGUF, written byte by byte (v3, no tensors) ------------------------------------- */

typedef struct gbuf {
    unsigned char *b;
    size_t n, cap;
} gbuf;

static void put(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2;
        g->b = realloc(g->b, g->cap);
        assert_non_null(g->b);
    }
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void put_u32(gbuf *g, uint32_t v) { put(g, &v, 4); }
static void put_u64(gbuf *g, uint64_t v) { put(g, &v, 8); }
static void put_str(gbuf *g, const char *s) {
    put_u64(g, strlen(s));
    put(g, s, strlen(s));
}
static void kv_head(gbuf *g, const char *key, uint32_t type) {
    put_str(g, key);
    put_u32(g, type);
}

enum { T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7, T_STR = 8, T_ARR = 9 };

/* Vocabulary: 0 <unk>, 1 <s>, 2 </s>, 3 <|im_start|> (control), 4 <tool> (user-defined),
 * 5..260 <0x00>..<0xFF>, then normal pieces that merge "hello" step by step. */
#define ID_BYTE(b) (5 + (b))
static const char *const pieces[] = {"\xe2\x96\x81", "h", "e", "l", "o", "ll", "he", "hell", "hello",
                                     "\xe2\x96\x81hello"};
static const float piece_scores[] = {-1.0f, -2.0f, -2.0f, -2.0f, -2.0f, -1.0f, -1.2f, -0.9f, -0.5f, -0.1f};
#define N_PIECES ((int)(sizeof pieces / sizeof pieces[0]))
#define ID_SPACE 261
#define ID_HELLO_W (261 + N_PIECES - 1) /* "▁hello" */
#define N_TINY (261 + N_PIECES)

static unsigned char *tiny_vocab(size_t *len, bool add_eos) {
    gbuf g = {0};
    char names[N_TINY][16];
    put(&g, "GGUF", 4);
    put_u32(&g, 3);
    put_u64(&g, 0); /* tensors */
    put_u64(&g, 8); /* key/value pairs */
    kv_head(&g, "tokenizer.ggml.model", T_STR);
    put_str(&g, "llama");
    kv_head(&g, "tokenizer.ggml.tokens", T_ARR);
    put_u32(&g, T_STR);
    put_u64(&g, N_TINY);
    for (int i = 0; i < N_TINY; i++) {
        const char *s;
        if (i == 0) s = "<unk>";
        else if (i == 1) s = "<s>";
        else if (i == 2) s = "</s>";
        else if (i == 3) s = "<|im_start|>";
        else if (i == 4) s = "<tool>";
        else if (i < 261) snprintf(names[i], sizeof names[i], "<0x%02X>", i - 5), s = names[i];
        else s = pieces[i - 261];
        put_str(&g, s);
    }
    kv_head(&g, "tokenizer.ggml.scores", T_ARR);
    put_u32(&g, T_F32);
    put_u64(&g, N_TINY);
    for (int i = 0; i < N_TINY; i++) {
        float f = i < 261 ? 0.0f : piece_scores[i - 261];
        put(&g, &f, 4);
    }
    kv_head(&g, "tokenizer.ggml.token_type", T_ARR);
    put_u32(&g, T_I32);
    put_u64(&g, N_TINY);
    for (int i = 0; i < N_TINY; i++) {
        int32_t ty = i == 0 ? 2 : i <= 3 ? 3 : i == 4 ? 4 : i < 261 ? 6 : 1;
        put(&g, &ty, 4);
    }
    kv_head(&g, "tokenizer.ggml.bos_token_id", T_U32);
    put_u32(&g, 1);
    kv_head(&g, "tokenizer.ggml.eos_token_id", T_U32);
    put_u32(&g, 2);
    kv_head(&g, "tokenizer.ggml.add_bos_token", T_BOOL);
    put(&g, "\1", 1);
    kv_head(&g, "tokenizer.ggml.add_eos_token", T_BOOL);
    put(&g, add_eos ? "\1" : "\0", 1);
    while (g.n % 32) put(&g, "", 1); /* the (empty) data section starts aligned */
    *len = g.n;
    return g.b;
}

static slm_tokenizer *tiny(bool add_eos) {
    size_t len;
    unsigned char *buf = tiny_vocab(&len, add_eos);
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_gguf_open_memory(buf, len, &g, err), SLM_OK);
    slm_status st = slm_tok_create(g, &t, err);
    if (st != SLM_OK) fprintf(stderr, "create: %s\n", err);
    assert_int_equal(st, SLM_OK);
    slm_gguf_close(g);
    free(buf); /* the tokenizer copied what it needs */
    return t;
}

static size_t enc(const slm_tokenizer *t, const char *s, int flags, int32_t *ids, size_t cap) {
    size_t n = 0;
    assert_int_equal(slm_tok_encode(t, s, strlen(s), flags, ids, cap, &n, NULL), SLM_OK);
    return n;
}

/* ---- tiny SentencePiece vocabulary -------------------------------------------------------- */

static void test_spm_merges_and_prefix(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[16];
    assert_int_equal(slm_tok_n_vocab(t), N_TINY);
    assert_int_equal(enc(t, "hello", 0, ids, 16), 1);
    assert_int_equal(ids[0], ID_HELLO_W);
    /* two words: the second space is escaped too */
    assert_int_equal(enc(t, "hello hello", 0, ids, 16), 2);
    assert_int_equal(ids[1], ID_HELLO_W);
    /* byte fallback: "\n" is not a piece */
    assert_int_equal(enc(t, "\n", 0, ids, 16), 2);
    assert_int_equal(ids[0], ID_SPACE);
    assert_int_equal(ids[1], ID_BYTE(0x0A));
    assert_string_equal(slm_tok_text(t, ID_HELLO_W), "\xe2\x96\x81hello");
    assert_null(slm_tok_text(t, N_TINY));
    slm_tok_destroy(t);
}

static void test_bos_eos_flags(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[16];
    assert_true(slm_tok_adds_bos(t));
    assert_int_equal(slm_tok_bos(t), 1);
    assert_int_equal(slm_tok_eos(t), 2);
    assert_true(slm_tok_is_eog(t, 2));
    assert_false(slm_tok_is_eog(t, 1));
    assert_int_equal(enc(t, "hello", SLM_TOK_ADD_BOS, ids, 16), 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], ID_HELLO_W);
    /* the vocabulary says not to add EOS: the flag alone adds nothing */
    assert_int_equal(enc(t, "hello", SLM_TOK_ADD_BOS | SLM_TOK_ADD_EOS, ids, 16), 2);
    assert_int_equal(enc(t, "", SLM_TOK_ADD_BOS, ids, 16), 1);
    assert_int_equal(enc(t, "", 0, ids, 16), 0);
    slm_tok_destroy(t);
    t = tiny(true);
    assert_int_equal(enc(t, "hello", SLM_TOK_ADD_BOS | SLM_TOK_ADD_EOS, ids, 16), 3);
    assert_int_equal(ids[2], 2);
    assert_int_equal(enc(t, "hello", SLM_TOK_ADD_EOS, ids, 16), 2);
    assert_int_equal(ids[0], ID_HELLO_W);
    slm_tok_destroy(t);
}

static bool contains(const int32_t *ids, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void test_special_parsing(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[64];
    /* off: the marker is plain text (byte fallback), never the control id */
    size_t n = enc(t, "<|im_start|>hello", 0, ids, 64);
    assert_false(contains(ids, n, 3));
    assert_int_equal(ids[0], ID_SPACE);
    assert_int_equal(ids[1], ID_BYTE('<'));
    /* on: one id, and the text after it gets the SentencePiece space prefix */
    n = enc(t, "<|im_start|>hello", SLM_TOK_PARSE_SPECIAL, ids, 64);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], ID_HELLO_W);
    n = enc(t, "hello<|im_start|><|im_start|>", SLM_TOK_PARSE_SPECIAL, ids, 64);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 3);
    /* user-defined tokens are matched either way (as the reference does) */
    n = enc(t, "<tool>", 0, ids, 64);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 4);
    assert_true(slm_tok_is_control(t, 3));
    assert_false(slm_tok_is_control(t, 4));
    slm_tok_destroy(t);
}

static void test_full_protocol(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 0;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_tok_encode(t, "hello hello", 11, SLM_TOK_ADD_BOS, ids, 1, &n, err), SLM_ERR_FULL);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], -7); /* nothing past cap */
    assert_true(strlen(err) > 0);
    assert_int_equal(slm_tok_encode(t, "hello hello", 11, SLM_TOK_ADD_BOS, NULL, 0, &n, NULL), SLM_ERR_FULL);
    assert_int_equal(n, 3);
    assert_int_equal(slm_tok_encode(t, "hello hello", 11, SLM_TOK_ADD_BOS, ids, n, &n, NULL), SLM_OK);
    /* piece/decode: the size is returned even when it does not fit */
    char buf[4];
    assert_int_equal(slm_tok_piece(t, ID_HELLO_W, 0, buf, 2), 6);
    assert_int_equal(slm_tok_piece(t, ID_HELLO_W, 0, NULL, 0), 6);
    assert_int_equal(slm_tok_decode(t, ids, 3, 0, buf, sizeof buf), 11);
    slm_tok_destroy(t);
}

static void test_decode(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[64];
    char out[128];
    size_t n = enc(t, "hello hello\n\xc3\xa9", SLM_TOK_ADD_BOS, ids, 64);
    size_t dn = slm_tok_decode(t, ids, n, 0, out, sizeof out);
    assert_int_equal(dn, 14);
    assert_memory_equal(out, "hello hello\n\xc3\xa9", 14);
    /* control tokens render only on request */
    assert_int_equal(slm_tok_piece(t, 1, 0, out, sizeof out), 0);
    assert_int_equal(slm_tok_piece(t, 1, SLM_TOK_PARSE_SPECIAL, out, sizeof out), 3);
    assert_memory_equal(out, "<s>", 3);
    assert_int_equal(slm_tok_piece(t, ID_BYTE(0x0A), 0, out, sizeof out), 1);
    assert_int_equal(out[0], '\n');
    assert_int_equal(slm_tok_piece(t, ID_HELLO_W, 0, out, sizeof out), 6);
    assert_memory_equal(out, " hello", 6);
    assert_int_equal(slm_tok_piece(t, -1, 0, out, sizeof out), 0);
    slm_tok_destroy(t);
}

static void test_invalid_utf8(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    int32_t ids[64];
    /* bytes that are no UTF-8 fall back to byte tokens, one per byte */
    size_t n = enc(t, "\xff\xc3(\xe2\x82", 0, ids, 64);
    assert_int_equal(n, 6);
    assert_int_equal(ids[1], ID_BYTE(0xff));
    assert_int_equal(ids[5], ID_BYTE(0x82));
    slm_tok_destroy(t);
}

static void test_alloc_failures(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = tiny_vocab(&len, false);
    slm_gguf *g = NULL;
    assert_int_equal(slm_gguf_open_memory(buf, len, &g, NULL), SLM_OK);
    int failures = 0;
    for (long k = 1;; k++) {
        slm_tokenizer *t = (slm_tokenizer *)1;
        slm_fault_arm(k);
        slm_status st = slm_tok_create(g, &t, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            /* and encoding under failures */
            for (long e = 1;; e++) {
                int32_t ids[16];
                size_t n;
                slm_fault_arm(e);
                st = slm_tok_encode(t, "hello \xff", 7, SLM_TOK_ADD_BOS, ids, 16, &n, NULL);
                fired = slm_fault_fired();
                slm_fault_arm(0);
                if (!fired) {
                    assert_int_equal(st, SLM_OK);
                    break;
                }
                assert_int_equal(st, SLM_ERR_NOMEM);
            }
            slm_tok_destroy(t);
            break;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(t);
        failures++;
    }
    assert_true(failures > 3);
    slm_gguf_close(g);
    free(buf);
}

static void test_bad_metadata(void **state) {
    (void)state;
    /* an out-of-range special id is corrupt */
    size_t len;
    unsigned char *buf = tiny_vocab(&len, false);
    /* patch the bos id value (the u32 after the key "tokenizer.ggml.bos_token_id") */
    unsigned char *k = NULL;
    for (size_t i = 0; i + 27 < len; i++)
        if (!memcmp(buf + i, "tokenizer.ggml.bos_token_id", 27)) k = buf + i + 27 + 4;
    assert_non_null(k);
    uint32_t bad = 100000;
    memcpy(k, &bad, 4);
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_gguf_open_memory(buf, len, &g, NULL), SLM_OK);
    assert_int_equal(slm_tok_create(g, &t, err), SLM_ERR_CORRUPT);
    assert_null(t);
    assert_non_null(strstr(err, "bos_token_id"));
    slm_gguf_close(g);
    free(buf);
    slm_tok_destroy(NULL);
}

/* ---- UTF-8 stream ------------------------------------------------------------------------- */

static void test_stream(void **state) {
    (void)state;
    slm_tokenizer *t = tiny(false);
    slm_tok_stream s;
    char out[64];
    size_t n;
    slm_tok_stream_init(&s);
    /* "é" = C3 A9 split over two byte tokens: nothing until the second */
    assert_int_equal(slm_tok_stream_token(&s, t, ID_BYTE(0xc3), 0, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(slm_tok_stream_token(&s, t, ID_BYTE(0xa9), 0, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xc3\xa9", 2);
    /* a 4-byte emoji in three pieces, then text */
    assert_int_equal(slm_tok_stream_put(&s, "\xf0\x9f", 2, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(slm_tok_stream_put(&s, "\xa6", 1, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(slm_tok_stream_token(&s, t, ID_BYTE(0x99), 0, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\xf0\x9f\xa6\x99", 4);
    assert_int_equal(slm_tok_stream_token(&s, t, ID_HELLO_W, 0, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 6);
    /* invalid bytes become U+FFFD at once; a lead followed by a bad byte too */
    assert_int_equal(slm_tok_stream_put(&s, "\xff" "a\xe0\x80", 4, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 3 + 1 + 3 + 3);
    assert_memory_equal(out, "\xef\xbf\xbd" "a\xef\xbf\xbd\xef\xbf\xbd", 10);
    /* an incomplete tail is released by flush as one U+FFFD */
    assert_int_equal(slm_tok_stream_put(&s, "\xe2\x82", 2, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(slm_tok_stream_flush(&s, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    assert_int_equal(slm_tok_stream_flush(&s, out, sizeof out, &n), SLM_OK);
    assert_int_equal(n, 0);
    /* too small an output buffer: nothing consumed */
    assert_int_equal(slm_tok_stream_put(&s, "abc", 3, out, 4, &n), SLM_ERR_FULL);
    assert_int_equal(n, 0);
    slm_tok_destroy(t);
}

/* ---- shared vocabularies (skipped without ../shared) -------------------------------------- */

static slm_tokenizer *shared_tok(const char *rel) {
    char path[512];
    if (!tu_shared_path(path, sizeof path, rel)) return NULL;
    slm_gguf *g = NULL;
    slm_tokenizer *t = NULL;
    assert_int_equal(slm_gguf_open(path, NULL, &g, NULL), SLM_OK);
    assert_int_equal(slm_tok_create(g, &t, NULL), SLM_OK);
    slm_gguf_close(g);
    return t;
}

static void test_qwen2_special(void **state) {
    (void)state;
    slm_tokenizer *t = shared_tok("models/vocab/ggml-vocab-qwen2.gguf");
    if (!t) skip();
    int32_t ids[64];
    const char *chat = "<|im_start|>user\nHi<|im_end|>\n";
    size_t n = enc(t, chat, SLM_TOK_PARSE_SPECIAL, ids, 64);
    assert_int_equal(ids[0], 151644);
    assert_true(contains(ids, n, 151645));
    n = enc(t, chat, 0, ids, 64);
    assert_false(contains(ids, n, 151644));
    assert_false(contains(ids, n, 151645));
    char out[128];
    size_t dn = slm_tok_decode(t, ids, n, 0, out, sizeof out);
    assert_int_equal(dn, strlen(chat));
    assert_memory_equal(out, chat, dn);
    assert_true(slm_tok_is_eog(t, 151645));
    assert_true(slm_tok_is_eog(t, 151643));
    assert_false(slm_tok_adds_bos(t));
    /* user-defined <think> is one token even without special parsing */
    n = enc(t, "<think>", 0, ids, 64);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 151667);
    slm_tok_destroy(t);
}

static void test_gpt2_invalid_and_random(void **state) {
    (void)state;
    slm_tokenizer *t = shared_tok("models/vocab/ggml-vocab-gpt-2.gguf");
    if (!t) skip();
    int32_t ids[512];
    char out[2048];
    /* each malformed byte is read as U+FFFD, as the reference does */
    size_t n = enc(t, "a\xff" "b", 0, ids, 512);
    size_t dn = slm_tok_decode(t, ids, n, 0, out, sizeof out);
    assert_int_equal(dn, 5);
    assert_memory_equal(out, "a\xef\xbf\xbd" "b", 5);
    /* 🦙 is three byte-level tokens: the stream releases it whole, never a fragment */
    const char *llama = " this is \xf0\x9f\xa6\x99.cpp";
    n = enc(t, llama, 0, ids, 512);
    slm_tok_stream st;
    slm_tok_stream_init(&st);
    size_t o = 0, on, held = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(slm_tok_stream_token(&st, t, ids[i], 0, out + o, sizeof out - o, &on), SLM_OK);
        if (on == 0) held++;
        o += on;
    }
    assert_int_equal(slm_tok_stream_flush(&st, out + o, sizeof out - o, &on), SLM_OK);
    assert_int_equal(on, 0);
    assert_true(held >= 1); /* a token holding only the middle of the emoji produced nothing */
    assert_int_equal(o, strlen(llama));
    assert_memory_equal(out, llama, o);
    /* random bytes: never a crash; valid UTF-8 round-trips */
    unsigned seed = 12345;
    for (int k = 0; k < 300; k++) {
        char s[64];
        size_t len = (size_t)(k % 60);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            s[i] = (char)(k % 2 ? (seed >> 16) & 0xff : 0x20 + ((seed >> 16) % 95));
        }
        size_t m = 0;
        assert_int_equal(slm_tok_encode(t, s, len, SLM_TOK_PARSE_SPECIAL, ids, 512, &m, NULL), SLM_OK);
        dn = slm_tok_decode(t, ids, m, 0, out, sizeof out);
        if (k % 2 == 0) {
            assert_int_equal(dn, len);
            assert_memory_equal(out, s, len);
        }
    }
    slm_tok_destroy(t);
}

/* One tokenizer, four threads encoding at once: every result equals the single-threaded one. */
typedef struct thread_job {
    const slm_tokenizer *t;
    const int32_t *want;
    size_t n_want;
    int bad;
} thread_job;

static const char thread_text[] = "Hello, y'all! How are you \xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3 3333 <think>";

static void *thread_run(void *arg) {
    thread_job *j = arg;
    int32_t ids[128];
    for (int k = 0; k < 200; k++) {
        size_t n = 0;
        if (slm_tok_encode(j->t, thread_text, strlen(thread_text), SLM_TOK_PARSE_SPECIAL, ids, 128, &n, NULL) != SLM_OK ||
            n != j->n_want || memcmp(ids, j->want, n * sizeof *ids))
            j->bad++;
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    slm_tokenizer *t = shared_tok("models/vocab/ggml-vocab-qwen2.gguf");
    if (!t) skip();
    int32_t want[128];
    size_t n = enc(t, thread_text, SLM_TOK_PARSE_SPECIAL, want, 128);
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){t, want, n, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thread_run, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
    slm_tok_destroy(t);
}

static void test_bert_decode(void **state) {
    (void)state;
    slm_tokenizer *t = shared_tok("models/vocab/ggml-vocab-bert-bge.gguf");
    if (!t) skip();
    int32_t ids[64];
    char out[128];
    /* [CLS] ... [SEP] with BOS; lower-cased, accents dropped, continuation pieces joined */
    size_t n = enc(t, "Hello Wörld tokenization", SLM_TOK_ADD_BOS, ids, 64);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[n - 1], 102);
    size_t dn = slm_tok_decode(t, ids, n, 0, out, sizeof out);
    assert_int_equal(dn, strlen("hello world tokenization"));
    assert_memory_equal(out, "hello world tokenization", dn);
    slm_tok_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_merges_and_prefix),
        cmocka_unit_test(test_bos_eos_flags),
        cmocka_unit_test(test_special_parsing),
        cmocka_unit_test(test_full_protocol),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_qwen2_special),
        cmocka_unit_test(test_gpt2_invalid_and_random),
        cmocka_unit_test(test_bert_decode),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
