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
 * for them by default. Non-goals: training, normalisers beyond what the supported GGUF
 * vocabularies need (NFKC for some BERT models is listed in docs as not supported).
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
 * WordPiece's ## joins). Same buffer protocol as slm_tok_piece. */
size_t slm_tok_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags, char *buf, size_t cap);

#endif /* SLMESH_TOKENIZER_H */
