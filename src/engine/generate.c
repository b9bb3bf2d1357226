/*
 * engine/generate.c: the generation helper of slmesh.h: prompt evaluation in batches, then
 * one decode per token with the sample module's sampler (choice, log-probability, top-N,
 * entropy) and stop-string detector (which also holds back incomplete UTF-8).
 *
 * Per call it allocates the sampler, the detector and the batch arrays; the token loop
 * allocates nothing (the piece buffer grows only for a token longer than any before).
 * With a grammar (slm_gen_params.grammar) a matcher drives the sampler's mask hook: the
 * tokens whose bytes keep the output a valid prefix, plus the end-of-generation tokens when
 * the grammar is complete; each sampled token's bytes are fed to the matcher, and generation
 * stops (SLM_GEN_STOP_GRAMMAR) once the grammar is complete and allows nothing more. The
 * vocabulary's token trie is built once per context (c->gvocab).
 * Thread-safety: as the context (one thread at a time). Non-goals: several sequences at
 * once (the server's scheduler batches sequences over slm_ctx_decode); label scoring is in
 * classify.c.
 */
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "engine/engine.h"
#include "sample/sample.h"
#include "slmesh/grammar.h"

#define PIECE_INITIAL 256 /* bytes; real vocabularies' longest tokens are shorter */

slm_sampling slm_sampling_default(void) {
    const slm_sample_params d = slm_sample_params_default();
    return (slm_sampling){.temperature = d.temperature, .top_k = d.top_k, .top_p = d.top_p, .min_p = d.min_p,
                          .repeat_penalty = d.repeat_penalty, .repeat_last_n = d.repeat_last_n,
                          .frequency_penalty = d.frequency_penalty, .presence_penalty = d.presence_penalty,
                          .seed = d.seed};
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* State of one generate call; everything owned is freed in gen_free. */
typedef struct gen_state {
    slm_ctx *c;                /* borrowed */
    int32_t seq;               /* the sequence */
    slm_sampler *sampler;      /* owned */
    slm_sample_stop *stop;     /* owned */
    int32_t *tok, *pos, *sq;   /* [n_batch] batch arrays, owned */
    bool *want;                /* [n_batch], owned */
    char *piece;               /* [piece_cap], owned */
    size_t piece_cap;
    slm_grammar_matcher *gm;   /* owned, NULL without a grammar */
    int32_t *eog;              /* [n_eog] end-of-generation ids (grammar only, given to the
                                  matcher), owned */
    int32_t n_eog;
} gen_state;

static void gen_free(gen_state *g) {
    slm_sample_destroy(g->sampler);
    slm_sample_stop_destroy(g->stop);
    slm_free(g->tok), slm_free(g->pos), slm_free(g->sq), slm_free(g->want), slm_free(g->piece);
    slm_grammar_matcher_destroy(g->gm);
    slm_free(g->eog);
}

/* ---- grammar ------------------------------------------------------------------------------ */

static slm_status grammar_init(gen_state *g, slm_grammar *gr, char *err) {
    slm_ctx *c = g->c;
    const int32_t n_vocab = c->m->hp.n_vocab;
    slm_status st = SLM_OK;
    if (!c->gvocab && (st = slm_grammar_vocab_from_model(c->m, &c->gvocab, err))) return st;
    if ((st = slm_grammar_matcher_create(gr, c->gvocab, &g->gm, err))) return st;
    for (int32_t id = 0; id < n_vocab; id++) g->n_eog += slm_model_is_eog(c->m, id);
    if (g->n_eog > 0 && !(g->eog = slm_malloc((size_t)g->n_eog * sizeof *g->eog)))
        return slm_errf(err, SLM_ERR_NOMEM, "grammar EOG list");
    for (int32_t id = 0, k = 0; id < n_vocab; id++)
        if (slm_model_is_eog(c->m, id)) g->eog[k++] = id;
    if ((st = slm_grammar_matcher_set_eog(g->gm, g->eog, (size_t)g->n_eog, err))) return st;
    slm_sample_set_mask_fn(g->sampler, slm_grammar_mask_hook, g->gm);
    return SLM_OK;
}

static slm_status check_params(const slm_ctx *c, int32_t seq, size_t n_prompt, const slm_gen_params *p, char *err) {
    if (seq < 0 || seq >= c->n_seq_max)
        return slm_errf(err, SLM_ERR_RANGE, "sequence %d outside [0, %d)", seq, c->n_seq_max);
    if (n_prompt < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "empty prompt");
    if (n_prompt > (size_t)c->n_ctx)
        return slm_errf(err, SLM_ERR_FULL, "prompt of %zu tokens exceeds the context of %d", n_prompt, c->n_ctx);
    if (p->max_tokens < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "max_tokens %d < 1", p->max_tokens);
    if (p->n_top < 0 || p->n_top > SLM_GEN_MAX_TOP)
        return slm_errf(err, SLM_ERR_RANGE, "n_top %d outside [0, %d]", p->n_top, SLM_GEN_MAX_TOP);
    if (p->n_stop < 0 || p->n_stop > SLM_GEN_MAX_STOP || (p->n_stop > 0 && !p->stop))
        return slm_errf(err, SLM_ERR_RANGE, "n_stop %d outside [0, %d]", p->n_stop, SLM_GEN_MAX_STOP);
    return SLM_OK;
}

static slm_status gen_init(gen_state *g, const slm_gen_params *p, char *err) {
    const slm_sampling *s = &p->sampling;
    slm_sample_params sp = slm_sample_params_default();
    sp.temperature = s->temperature, sp.top_k = s->top_k, sp.top_p = s->top_p, sp.min_p = s->min_p;
    sp.repeat_penalty = s->repeat_penalty, sp.repeat_last_n = s->repeat_last_n;
    sp.frequency_penalty = s->frequency_penalty, sp.presence_penalty = s->presence_penalty;
    sp.seed = s->seed, sp.n_probs = p->n_top;
    slm_status st = slm_sample_create(&sp, g->c->m->hp.n_vocab, &g->sampler, err);
    if (st == SLM_OK) st = slm_sample_stop_create(p->stop, (size_t)p->n_stop, &g->stop, err);
    if (st) return st;
    const size_t nb = (size_t)g->c->n_batch;
    g->tok = slm_malloc(nb * sizeof *g->tok);
    g->pos = slm_malloc(nb * sizeof *g->pos);
    g->sq = slm_malloc(nb * sizeof *g->sq);
    g->want = slm_malloc(nb * sizeof *g->want);
    g->piece = slm_malloc(PIECE_INITIAL);
    g->piece_cap = PIECE_INITIAL;
    if (!g->tok || !g->pos || !g->sq || !g->want || !g->piece) return slm_errf(err, SLM_ERR_NOMEM, "generation buffers");
    return p->grammar ? grammar_init(g, p->grammar, err) : SLM_OK;
}

/* Decode tokens[n] of g->seq from position p0, n_batch at a time; logits for the last. */
static slm_status gen_decode(gen_state *g, const int32_t *tokens, size_t n, int32_t p0, char *err) {
    for (size_t i0 = 0; i0 < n; i0 += (size_t)g->c->n_batch) {
        const size_t k = n - i0 < (size_t)g->c->n_batch ? n - i0 : (size_t)g->c->n_batch;
        for (size_t i = 0; i < k; i++) {
            g->tok[i] = tokens[i0 + i];
            g->pos[i] = p0 + (int32_t)(i0 + i);
            g->sq[i] = g->seq;
            g->want[i] = i0 + i == n - 1;
        }
        slm_batch b = {.n_tokens = (int32_t)k, .token = g->tok, .pos = g->pos, .seq_id = g->sq, .logits = g->want};
        slm_status st = slm_ctx_decode(g->c, &b, err);
        if (st) return st;
    }
    return SLM_OK;
}

/* The bytes of token id into g->piece (grown when needed); returns the length. */
static size_t gen_piece(gen_state *g, int32_t id) {
    size_t n = slm_model_token_piece(g->c->m, id, g->piece, g->piece_cap);
    if (n > g->piece_cap) {
        char *p = slm_realloc(g->piece, n);
        if (!p) return 0; /* the text of one token is lost rather than the generation */
        g->piece = p, g->piece_cap = n;
        n = slm_model_token_piece(g->c->m, id, g->piece, g->piece_cap);
    }
    return n;
}

/* One delivered token: its sampling output, piece and releasable text. */
static bool deliver(slm_gen_cb cb, void *user, const slm_sample_out *so, const char *piece, size_t piece_len,
                    const slm_sample_stop_out *text) {
    if (!cb) return true;
    slm_token_prob top[SLM_GEN_MAX_TOP];
    for (int32_t i = 0; so && i < so->n_alts && i < SLM_GEN_MAX_TOP; i++)
        top[i] = (slm_token_prob){.id = so->alts[i].id, .logprob = so->alts[i].logprob};
    const slm_gen_token t = {.id = so ? so->id : -1, .piece = piece, .piece_len = piece_len,
                             .text = text->len ? text->text : NULL, .text_len = text->len,
                             .logprob = so ? so->logprob : 0.0f, .entropy = so ? so->entropy : 0.0f,
                             .n_top = so ? (so->n_alts < SLM_GEN_MAX_TOP ? so->n_alts : SLM_GEN_MAX_TOP) : 0,
                             .top = top};
    return cb(&t, user);
}

static slm_status gen_loop(gen_state *g, const slm_gen_params *p, slm_gen_cb cb, void *user, slm_gen_result *r,
                           char *err) {
    const slm_model *m = g->c->m;
    int32_t pos = slm_ctx_seq_pos_max(g->c, g->seq) + 1;
    slm_sample_out so;
    slm_sample_stop_out text;
    for (;;) {
        if (p->cancel && atomic_load(p->cancel)) {
            r->stop = SLM_GEN_STOP_CANCEL;
            break;
        }
        if (g->gm && slm_grammar_matcher_complete(g->gm) && !slm_grammar_matcher_can_continue(g->gm)) {
            r->stop = SLM_GEN_STOP_GRAMMAR;
            break;
        }
        slm_status st = slm_sample_next(g->sampler, slm_ctx_logits(g->c, g->c->last_n - 1), m->hp.n_vocab, NULL, &so, err);
        if (st == SLM_ERR_STATE && g->gm)
            return slm_errf(err, st, "no token of the vocabulary continues the grammar here");
        if (st) return st;
        if (slm_model_is_eog(m, so.id)) {
            r->stop = SLM_GEN_STOP_EOG;
            break;
        }
        const size_t plen = gen_piece(g, so.id);
        if (g->gm && plen == 0) /* masked tokens have bytes: the piece buffer could not grow */
            return slm_errf(err, SLM_ERR_NOMEM, "piece of token %d", so.id);
        if (g->gm && (st = slm_grammar_matcher_accept(g->gm, g->piece, plen, err)))
            return st == SLM_ERR_STATE ? slm_errf(err, SLM_ERR_INTERNAL, "masked token %d rejected by the grammar", so.id) : st;
        if ((st = slm_sample_stop_feed(g->stop, g->piece, plen, &text, err))) return st;
        r->n_generated++;
        if (!deliver(cb, user, &so, g->piece, plen, &text)) {
            r->stop = SLM_GEN_STOP_CALLBACK;
            return SLM_OK;
        }
        if (text.matched >= 0) {
            r->stop = SLM_GEN_STOP_STRING;
            return SLM_OK;
        }
        if (g->gm && slm_grammar_matcher_complete(g->gm) && !slm_grammar_matcher_can_continue(g->gm)) {
            r->stop = SLM_GEN_STOP_GRAMMAR;
            break;
        }
        if (r->n_generated >= p->max_tokens) {
            r->stop = SLM_GEN_STOP_LENGTH;
            break;
        }
        if (pos >= g->c->n_ctx) {
            r->stop = SLM_GEN_STOP_CONTEXT;
            break;
        }
        if ((st = slm_sample_accept(g->sampler, &so.id, 1, err))) return st;
        st = gen_decode(g, &so.id, 1, pos++, err);
        if (st == SLM_ERR_FULL) {
            r->stop = SLM_GEN_STOP_CONTEXT;
            break;
        }
        if (st) return st;
    }
    /* no stop string matched: release what the detector still holds */
    slm_sample_stop_flush(g->stop, &text);
    if (text.len > 0) deliver(cb, user, NULL, NULL, 0, &text);
    return SLM_OK;
}

slm_status slm_ctx_generate(slm_ctx *c, int32_t seq, const int32_t *prompt, size_t n_prompt,
                            const slm_gen_params *p, slm_gen_cb cb, void *user, slm_gen_result *res,
                            char *err) {
    slm_gen_result r = {0};
    gen_state g = {.c = c, .seq = seq};
    slm_status st = check_params(c, seq, n_prompt, p, err);
    if (st == SLM_OK) st = gen_init(&g, p, err);
    if (st == SLM_OK && p->sampling.repeat_last_n > 0) st = slm_sample_accept(g.sampler, prompt, n_prompt, err);
    const double t0 = now_ms();
    if (st == SLM_OK) st = gen_decode(&g, prompt, n_prompt, slm_ctx_seq_pos_max(c, seq) + 1, err);
    const double t1 = now_ms();
    r.n_prompt = st == SLM_OK ? (int32_t)n_prompt : 0;
    if (st == SLM_OK) st = gen_loop(&g, p, cb, user, &r, err);
    r.prompt_ms = t1 - t0;
    r.gen_ms = now_ms() - t1;
    gen_free(&g);
    if (res) *res = r;
    return st;
}
