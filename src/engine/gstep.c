/*
 * engine/gstep.c: the per-token steps of grammar-constrained generation, shared by
 * slm_ctx_generate (generate.c) and the batching scheduler (src/sched), so that both apply
 * exactly the same rules: only tokens that keep the output a valid prefix are sampled (the
 * matcher is the sampler's mask hook), end-of-generation only where the grammar is complete,
 * every sampled piece is fed to the matcher, and the sequence ends once the grammar is
 * complete and can take nothing more.
 *
 * Invariants: the token trie and the EOG id list depend only on the model's vocabulary, so
 * they are built once per context (c->gvocab, c->geog) and shared by every matcher of it.
 * Thread-safety: as the context (one thread at a time). Non-goals: the sampling loop itself.
 */
#include "core/core.h"
#include "engine/engine.h"
#include "sample/sample.h"
#include "slmesh/grammar.h"

/* ---- per-context vocabulary data ----------------------------------------------------------- */

static slm_status vocab_init(slm_ctx *c, char *err) {
    if (c->gvocab) return SLM_OK;
    const int32_t n_vocab = c->m->hp.n_vocab;
    int32_t n = 0;
    for (int32_t id = 0; id < n_vocab; id++) n += slm_model_is_eog(c->m, id);
    int32_t *eog = n > 0 ? slm_malloc((size_t)n * sizeof *eog) : NULL;
    if (n > 0 && !eog) return slm_errf(err, SLM_ERR_NOMEM, "grammar EOG list");
    for (int32_t id = 0, k = 0; id < n_vocab; id++)
        if (slm_model_is_eog(c->m, id)) eog[k++] = id;
    const slm_status st = slm_grammar_vocab_from_model(c->m, &c->gvocab, err);
    if (st) {
        slm_free(eog);
        return st;
    }
    c->geog = eog, c->n_geog = n;
    return SLM_OK;
}

/* ---- steps --------------------------------------------------------------------------------- */

slm_status slm_engine_grammar_begin(slm_ctx *c, slm_grammar *g, slm_sampler *sampler, slm_grammar_matcher **out,
                                    char *err) {
    *out = NULL;
    slm_grammar_matcher *gm = NULL;
    slm_status st = vocab_init(c, err);
    if (st == SLM_OK) st = slm_grammar_matcher_create(g, c->gvocab, &gm, err);
    if (st == SLM_OK) st = slm_grammar_matcher_set_eog(gm, c->geog, (size_t)c->n_geog, err);
    if (st) {
        slm_grammar_matcher_destroy(gm);
        return st;
    }
    slm_sample_set_mask_fn(sampler, slm_grammar_mask_hook, gm);
    *out = gm;
    return SLM_OK;
}

slm_status slm_engine_grammar_accept(slm_grammar_matcher *m, int32_t id, const char *piece, size_t plen, char *err) {
    if (plen == 0) /* masked tokens have bytes: the piece buffer could not grow */
        return slm_errf(err, SLM_ERR_NOMEM, "piece of token %d", id);
    const slm_status st = slm_grammar_matcher_accept(m, piece, plen, err);
    if (st == SLM_ERR_STATE) return slm_errf(err, SLM_ERR_INTERNAL, "masked token %d rejected by the grammar", id);
    return st;
}

bool slm_engine_grammar_done(const slm_grammar_matcher *m) {
    return slm_grammar_matcher_complete(m) && !slm_grammar_matcher_can_continue(m);
}

slm_status slm_engine_grammar_sample_error(slm_status st, char *err) {
    if (st == SLM_ERR_STATE) return slm_errf(err, st, "no token of the vocabulary continues the grammar here");
    return st;
}
