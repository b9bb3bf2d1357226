/*
 * model/vocab.c: the public token functions over the model's tokenizer.
 *
 * Until the tokenizer module lands, the model opens without one and the token functions
 * report SLM_ERR_UNSUPPORTED (bos/eos -1, nothing is end-of-generation).
 */
#include "model/vocab.h"

#include "core/core.h"

slm_status slm_model_vocab_open(slm_model *m, char *err) {
    (void)err;
    m->tok = NULL;
    return SLM_OK;
}

void slm_model_vocab_close(slm_model *m) { m->tok = NULL; }

slm_status slm_model_tokenize(const slm_model *m, const char *text, size_t len, int flags, int32_t *ids,
                              size_t cap, size_t *n, char *err) {
    (void)m, (void)text, (void)len, (void)flags, (void)ids, (void)cap;
    *n = 0;
    return slm_errf(err, SLM_ERR_UNSUPPORTED, "no tokenizer in this build");
}

size_t slm_model_token_piece(const slm_model *m, int32_t id, char *buf, size_t cap) {
    (void)m, (void)id, (void)buf, (void)cap;
    return 0;
}

size_t slm_model_detokenize(const slm_model *m, const int32_t *ids, size_t n, char *buf, size_t cap) {
    (void)m, (void)ids, (void)n, (void)buf, (void)cap;
    return 0;
}

int32_t slm_model_bos(const slm_model *m) { (void)m; return -1; }
int32_t slm_model_eos(const slm_model *m) { (void)m; return -1; }
bool slm_model_is_eog(const slm_model *m, int32_t id) { (void)m, (void)id; return false; }
