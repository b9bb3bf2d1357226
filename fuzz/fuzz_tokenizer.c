/*
 * fuzz/fuzz_tokenizer.c: libFuzzer target for encoding and decoding arbitrary bytes.
 *
 * Tokenizers are built once, on the first input, from small vocabularies in shared/ ($SLMESH_SHARED
 * or ../shared): stories260K (SentencePiece), gpt-2 and qwen2 (byte-level BPE, qwen2 with
 * special tokens), deepseek-llm (the longest regex list) and bert-bge (WordPiece). Without
 * shared/ a tiny SentencePiece vocabulary is written in memory with the GGUF writer.
 * Input byte 0 picks the vocabulary, byte 1 the flags, the rest is the text. Every input is
 * encoded, decoded, rendered piece by piece and streamed; for byte-level BPE without special
 * parsing, strictly valid UTF-8 must round-trip exactly or the target aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"

#define MAX_TEXT 4096 /* bytes of text per input: long enough for every code path */
#define MAX_TOK 8

static slm_tokenizer *toks[MAX_TOK];
static bool bpe[MAX_TOK]; /* byte-level BPE: lossless on valid UTF-8 */
static int n_toks = -1;
static volatile unsigned sink;

static void add_file(const char *dir, const char *rel, bool is_bpe) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    slm_gguf *g = NULL;
    if (slm_gguf_open(path, NULL, &g, NULL) != SLM_OK) return;
    if (slm_tok_create(g, &toks[n_toks], NULL) == SLM_OK) bpe[n_toks++] = is_bpe;
    slm_gguf_close(g);
}

/* Tokens: <unk> <s> </s> <|x|> (control), the 256 byte tokens, a few pieces. */
static void add_tiny(void) {
    static char names[256][8];
    const char *strs[270];
    int32_t types[270];
    float scores[270];
    int n = 0;
    const char *head[] = {"<unk>", "<s>", "</s>", "<|x|>"};
    for (int i = 0; i < 4; i++) strs[n] = head[i], types[n] = i == 0 ? 2 : 3, scores[n++] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], sizeof names[b], "<0x%02X>", b);
        strs[n] = names[b], types[n] = 6, scores[n++] = 0;
    }
    const char *p[] = {"\xe2\x96\x81", "a", "b", "ab", ("\xe2\x96\x81" "ab"), "ba"};
    for (int i = 0; i < 6; i++) strs[n] = p[i], types[n] = 1, scores[n++] = -(float)i;
    slm_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t size = 0;
    if (slm_gguf_writer_create(&w) != SLM_OK) abort();
    slm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    slm_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", strs, (uint64_t)n);
    slm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SLM_GGUF_F32, scores, (uint64_t)n);
    slm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SLM_GGUF_I32, types, (uint64_t)n);
    if (slm_gguf_writer_to_memory(w, &buf, &size, NULL) != SLM_OK) abort();
    slm_gguf_writer_destroy(w);
    slm_gguf *g = NULL;
    if (slm_gguf_open_memory(buf, size, &g, NULL) != SLM_OK) abort();
    if (slm_tok_create(g, &toks[n_toks], NULL) != SLM_OK) abort();
    bpe[n_toks++] = false;
    slm_gguf_close(g);
    slm_free(buf);
}

static void init(void) {
    const char *dir = getenv("SLMESH_SHARED");
    if (!dir) dir = "../shared";
    n_toks = 0;
    add_file(dir, "models/stories260K.gguf", false);
    add_file(dir, "models/vocab/ggml-vocab-gpt-2.gguf", true);
    add_file(dir, "models/vocab/ggml-vocab-qwen2.gguf", true);
    add_file(dir, "models/vocab/ggml-vocab-deepseek-llm.gguf", true);
    add_file(dir, "models/vocab/ggml-vocab-bert-bge.gguf", false);
    if (n_toks == 0) add_tiny();
}

/* Strict UTF-8 (what a round trip can reproduce byte for byte). */
static bool valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t k = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return false;
        if ((b == 0xe0 && s[i + 1] < 0xa0) || (b == 0xed && s[i + 1] > 0x9f) || (b == 0xf0 && s[i + 1] < 0x90) ||
            (b == 0xf4 && s[i + 1] > 0x8f))
            return false;
        i += k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (n_toks < 0) init();
    if (size < 2) return 0;
    const slm_tokenizer *t = toks[data[0] % n_toks];
    bool lossless = bpe[data[0] % n_toks];
    int flags = data[1] & (SLM_TOK_ADD_BOS | SLM_TOK_ADD_EOS | SLM_TOK_PARSE_SPECIAL);
    size_t len = size - 2 > MAX_TEXT ? MAX_TEXT : size - 2;
    char *text = malloc(len ? len : 1); /* exact copy: over-reads are ASan reports */
    memcpy(text, data + 2, len);

    size_t n = 0;
    slm_status st = slm_tok_encode(t, text, len, flags, NULL, 0, &n, NULL);
    if (st != SLM_OK && st != SLM_ERR_FULL) abort();
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t n2 = 0;
    if (slm_tok_encode(t, text, len, flags, ids, n, &n2, NULL) != SLM_OK || n2 != n) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= slm_tok_n_vocab(t)) abort();

    size_t dn = slm_tok_decode(t, ids, n, data[1] & SLM_TOK_PARSE_SPECIAL, NULL, 0);
    char *dec = malloc(dn ? dn : 1);
    if (slm_tok_decode(t, ids, n, data[1] & SLM_TOK_PARSE_SPECIAL, dec, dn) != dn) abort();
    if (lossless && !(flags & SLM_TOK_PARSE_SPECIAL) && valid_utf8((const unsigned char *)text, len) &&
        (dn != len || memcmp(dec, text, len)))
        abort();

    slm_tok_stream s;
    slm_tok_stream_init(&s);
    char out[SLM_TOK_STREAM_OUT_MAX(SLM_TOK_STREAM_PIECE_MAX)];
    size_t on;
    for (size_t i = 0; i < n; i++) {
        char piece[64];
        sink += (unsigned)slm_tok_piece(t, ids[i], SLM_TOK_PARSE_SPECIAL, piece, sizeof piece);
        st = slm_tok_stream_token(&s, t, ids[i], 0, out, sizeof out, &on);
        if (st != SLM_OK || !valid_utf8((const unsigned char *)out, on)) abort();
    }
    if (slm_tok_stream_flush(&s, out, sizeof out, &on) != SLM_OK) abort();
    free(dec);
    free(ids);
    free(text);
    return 0;
}
