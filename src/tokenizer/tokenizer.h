/*
 * tokenizer/tokenizer.h: text <-> token ids for the vocabularies GGUF files carry:
 * SentencePiece (tokenizer.ggml.model = "llama"), byte-level BPE ("gpt2", with the
 * pre-tokenizer named by tokenizer.ggml.pre) and WordPiece ("bert").
 *
 * A tokenizer is built once from a GGUF's metadata (it copies what it needs, so the
 * slm_gguf may be closed afterwards) and is immutable afterwards: any number of threads may
 * encode and decode with it at once.
 *
 * Special (control / user-defined) tokens are recognised in text only when the caller asks
 * (SLM_TOK_PARSE_SPECIAL, as a chat template's output needs); user text is never parsed
 * for them by default (user-defined tokens - added vocabulary such as runs of spaces in
 * gpt-neox/mpt vocabularies - are always matched first, as the reference runtime and
 * Hugging Face tokenizers do; they are ordinary text, not markers). Non-goals: training,
 * normalisers beyond what the supported GGUF vocabularies need (NFKC for some BERT models is
 * listed in docs as not supported), the UGM/RWKV vocabulary types.
 */
#ifndef SLMESH_TOKENIZER_H
#define SLMESH_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "slmesh/status.h"

typedef struct slm_tokenizer slm_tokenizer;

/* Limits on what a GGUF may declare. */
#define SLM_TOK_MAX_VOCAB  (1 << 21) /* tokens; the largest real vocabularies are ~260k */

enum {
    SLM_TOK_ADD_BOS = 1 << 0,       /* prepend BOS if the vocabulary says to add it */
    SLM_TOK_ADD_EOS = 1 << 1,       /* append EOS if the vocabulary says to add it */
    SLM_TOK_PARSE_SPECIAL = 1 << 2, /* match control/user-defined token texts in the input */
    SLM_TOK_CLEAN_SPACES = 1 << 3,  /* decode: apply the reference's clean_up_tokenization_spaces
                                       (" ," -> ",", " 's" -> "'s") when the vocabulary asks for it;
                                       off by default so that decode(encode(s)) == s */
};

/* Build from tokenizer.ggml.* metadata. SLM_ERR_UNSUPPORTED names an unknown model or
 * pre-tokenizer; SLM_ERR_CORRUPT names inconsistent metadata. */
slm_status slm_tok_create(const slm_gguf *g, slm_tokenizer **out, char *err);
void slm_tok_destroy(slm_tokenizer *t); /* NULL allowed */

int32_t slm_tok_n_vocab(const slm_tokenizer *t);
int32_t slm_tok_bos(const slm_tokenizer *t); /* -1 when the vocabulary has none */
int32_t slm_tok_eos(const slm_tokenizer *t); /* -1 when none */
/* True for tokens that end generation (EOS, EOT, and the like). */
bool slm_tok_is_eog(const slm_tokenizer *t, int32_t id);
/* True when the GGUF says BOS is added to prompts (tokenizer.ggml.add_bos_token, or the
 * model family's default). */
bool slm_tok_adds_bos(const slm_tokenizer *t);

/* Encode len bytes of text (flags: SLM_TOK_*). Writes up to cap ids into ids and the total
 * count into *n (which may exceed cap: call again with a larger buffer; nothing is
 * truncated silently, the status is SLM_ERR_FULL then). Invalid UTF-8 is encoded the way the
 * reference runtime does for the vocabulary type (byte fallback), never rejected here. */
slm_status slm_tok_encode(const slm_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                          size_t cap, size_t *n, char *err);

/* The raw vocabulary text of a token (SentencePiece "▁the", BPE "Ġthe"), owned by t. */
const char *slm_tok_text(const slm_tokenizer *t, int32_t id);

/* The bytes a token stands for when detokenized (▁ -> space, Ġ -> space, <0x0A> -> "\n").
 * Writes up to cap bytes into buf and returns the byte count (may be larger than cap).
 * Control tokens produce nothing unless SLM_TOK_PARSE_SPECIAL is in flags (then their text). */
size_t slm_tok_piece(const slm_tokenizer *t, int32_t id, int flags, char *buf, size_t cap);

/* Detokenize a sequence (handles the leading space SentencePiece strips after BOS, and
 * WordPiece's ## joins: GGUF spells word starts with U+2581 and continuations bare). Same
 * buffer protocol as slm_tok_piece (ids outside the vocabulary produce nothing); with
 * SLM_TOK_CLEAN_SPACES a count larger than cap is an upper bound (the cleanup runs only on a
 * buffer that holds everything). For text generated after a prompt, concatenate
 * slm_tok_piece (or use the stream below): decode treats its first token as the start. */
size_t slm_tok_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags, char *buf, size_t cap);

/* Special ids beyond BOS/EOS (-1 when none). */
int32_t slm_tok_eot(const slm_tokenizer *t);
int32_t slm_tok_unk(const slm_tokenizer *t);
/* True for control tokens (chat markers, BOS/EOS and the like), which decode to nothing by
 * default. */
bool slm_tok_is_control(const slm_tokenizer *t, int32_t id);

/* ---- streaming detokenization ---------------------------------------------------------------
 * A server sends text as tokens arrive, but one character may span several tokens (byte
 * fallback, byte-level BPE). The stream holds back an incomplete UTF-8 sequence until it is
 * complete and releases only whole characters. A byte that cannot start or continue a valid
 * sequence (strict UTF-8: no overlongs, surrogates or code points above U+10FFFF) is released
 * as U+FFFD at once (one per maximal invalid subpart, as WHATWG decoders do); flush releases
 * an incomplete tail as one U+FFFD. Plain struct: zero it (or slm_tok_stream_init), no
 * destroy. One stream per sequence; not shared between threads. */
typedef struct slm_tok_stream {
    unsigned char pend[4]; /* bytes of the incomplete sequence held back */
    uint8_t n_pend;        /* how many (0..3) */
    uint8_t need;          /* total length of the sequence they start (2..4), 0 when none */
} slm_tok_stream;

/* Output bytes slm_tok_stream_put may write for n input bytes (worst case: every byte
 * replaced by the 3-byte U+FFFD, plus the held-back bytes). */
#define SLM_TOK_STREAM_OUT_MAX(n) (3 * ((size_t)(n) + 4))

void slm_tok_stream_init(slm_tok_stream *s);
/* Feed n bytes (a token's piece); write the complete characters to out and their byte count
 * to *n_out. SLM_ERR_FULL (nothing consumed) when cap < SLM_TOK_STREAM_OUT_MAX(n). */
slm_status slm_tok_stream_put(slm_tok_stream *s, const char *in, size_t n, char *out, size_t cap, size_t *n_out);
/* Convenience: feed the piece of token id (flags as slm_tok_piece); same protocol, with
 * SLM_ERR_FULL also when the piece itself is longer than the internal bound
 * SLM_TOK_STREAM_PIECE_MAX. */
#define SLM_TOK_STREAM_PIECE_MAX 1024 /* bytes of one token's piece; real tokens are < 256 */
slm_status slm_tok_stream_token(slm_tok_stream *s, const slm_tokenizer *t, int32_t id, int flags, char *out,
                                size_t cap, size_t *n_out);
/* End of sequence: release what is held back (as U+FFFD: it is incomplete). cap >= 3. */
slm_status slm_tok_stream_flush(slm_tok_stream *s, char *out, size_t cap, size_t *n_out);

#endif /* SLMESH_TOKENIZER_H */
