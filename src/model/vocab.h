/*
 * model/vocab.h: the model's tokenizer (built from the same GGUF at open) and the public
 * token functions of slmesh.h over it. Thread-safety: as the tokenizer (immutable).
 */
#ifndef SLMESH_MODEL_VOCAB_H
#define SLMESH_MODEL_VOCAB_H

#include "model/model.h"

/* Build m->tok from m->gguf; SLM_ERR_* from the tokenizer, or SLM_ERR_CORRUPT when its
 * vocabulary is larger than the model's output. */
slm_status slm_model_vocab_open(slm_model *m, char *err);
void slm_model_vocab_close(slm_model *m);

#endif /* SLMESH_MODEL_VOCAB_H */
