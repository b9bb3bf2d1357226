/*
 * model/vocab.c: the model's tokenizer and the public token functions of slmesh.h over it.
 *
 * The tokenizer is built from the model's own GGUF metadata at open; its vocabulary may not
 * be larger than the output matrix (every id it produces must be a valid row).
 * Thread-safety: the tokenizer is immutable; these functions are reentrant.
 */
#include "model/vocab.h"

#include "core/core.h"

slm_status slm_model_vocab_open(slm_model *m, char *err) {
    slm_status st = slm_tok_create(m->gguf, &m->tok, err);
    if (st) return st;
    if (slm_tok_n_vocab(m->tok) > m->hp.n_vocab)
        return slm_errf(err, SLM_ERR_CORRUPT, "tokenizer has %d tokens, the model's output only %d",
                        slm_tok_n_vocab(m->tok), m->hp.n_vocab);
    return SLM_OK;
}

void slm_model_vocab_close(slm_model *m) {
    slm_tok_destroy(m->tok);
    m->tok = NULL;
}

slm_status slm_model_tokenize(const slm_model *m, const char *text, size_t len, int flags, int32_t *ids,
                              size_t cap, size_t *n, char *err) {
    int tf = 0;
    if (flags & SLM_TOKENIZE_ADD_BOS) tf |= SLM_TOK_ADD_BOS;
    if (flags & SLM_TOKENIZE_PARSE_SPECIAL) tf |= SLM_TOK_PARSE_SPECIAL;
    return slm_tok_encode(m->tok, text, len, tf, ids, cap, n, err);
}

size_t slm_model_token_piece(const slm_model *m, int32_t id, char *buf, size_t cap) {
    return slm_tok_piece(m->tok, id, 0, buf, cap);
}

size_t slm_model_detokenize(const slm_model *m, const int32_t *ids, size_t n, char *buf, size_t cap) {
    return slm_tok_decode(m->tok, ids, n, 0, buf, cap);
}

int32_t slm_model_bos(const slm_model *m) { return slm_tok_bos(m->tok); }
int32_t slm_model_eos(const slm_model *m) { return slm_tok_eos(m->tok); }
bool slm_model_is_eog(const slm_model *m, int32_t id) { return slm_tok_is_eog(m->tok, id); }
