/*
 * sample/sample.h: choose the next token from one step's logits, report how confident the
 * model was, and detect stop strings in the streamed text.
 *
 * A sampler (slm_sampler) belongs to one sequence. It owns its parameters, its PRNG state,
 * the penalty history (the tokens it was told about with slm_sample_accept) and all scratch
 * memory; after slm_sample_create it never allocates. One step, slm_sample_next, runs the
 * llama.cpp default chain over a private copy of the logits (the caller's array is never
 * written):
 *
 *   1. logit bias      logit[id] += bias (a bias of -INFINITY bans the token)
 *   2. penalties       over the last repeat_last_n accepted tokens, for each distinct token
 *                      with count c > 0 (llama.cpp's llama_sampler_penalties):
 *                        logit = logit <= 0 ? logit * repeat_penalty : logit / repeat_penalty
 *                        logit -= c * frequency_penalty + presence_penalty
 *   -- the REPORTED distribution is taken here: log-softmax of these logits at T = 1 --
 *   3. mask            tokens outside the allowed set (argument and/or mask hook) -> -inf
 *   4. top_k           keep the k largest logits (ties broken by lower id)
 *   5. top_p           on the softmax of the survivors (T = 1), keep the smallest prefix in
 *                      descending order whose probability sum reaches top_p
 *   6. min_p           keep tokens with p >= min_p * p_max (T = 1)
 *   7. temperature     divide the survivors' logits by T; T == 0 means greedy: the largest
 *                      logit wins, ties broken by the lowest id, and 4-6 are skipped
 *   8. sample          draw from the softmax of the survivors with the sampler's PRNG
 *
 * Confidence signals (slm_sample_out): the chosen token's log-probability, the top-N
 * alternatives and the entropy are all of the distribution taken after step 2: the model's
 * own distribution as adjusted by the request's bias and penalties, before the mask,
 * truncation and temperature (llama-server's n_probs with post_sampling = false; OpenAI's
 * logprobs). A grammar-forced token therefore shows its true, possibly low, probability.
 *
 * Reproducibility: the PRNG is xoshiro256** seeded from params.seed through splitmix64; the
 * same seed, parameters, accepted history and logits give the same tokens on any thread,
 * every time, with the same build. (Another compiler may round a multiply-add differently
 * in the last bit, which can move a draw that falls exactly on a boundary.) The sampler
 * never reads a clock or an entropy source: a caller that wants a random seed picks one.
 * Token streams are not bit-identical to llama.cpp's, whose PRNG is std::mt19937.
 *
 * Cost per step (docs/benchmarks.md): O(n_vocab) without sorting. A copy pass, a max pass
 * and an exp/sum pass (vectorizable) give the confidence signals; greedy, top_k (k <=
 * 1024) and the alternatives add one threshold-compare pass with a small heap; top_p
 * without top_k skips the tokens that provably cannot be in the nucleus, then finds it with
 * a mass-directed quickselect (expected O(n)). About 0.5 ms for 151,936 logits.
 *
 * Thread-safety: a sampler is used by one thread at a time; different samplers are
 * independent. The stateless helpers (slm_sample_probs) are reentrant. A stop detector
 * (slm_sample_stop) is likewise one per sequence.
 * Non-goals: mirostat, typical-p, XTC, DRY, beam search; a grammar engine (only its hook).
 */
#ifndef SLMESH_SAMPLE_H
#define SLMESH_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slmesh/status.h"

/* ---- limits ------------------------------------------------------------------------------ */
#define SLM_SAMPLE_MAX_VOCAB   (1 << 21) /* = SLM_TOK_MAX_VOCAB; real vocabularies are ~260k */
#define SLM_SAMPLE_MAX_PROBS   20        /* top-N alternatives; OpenAI's top_logprobs max is 20 */
#define SLM_SAMPLE_MAX_BIAS    1024      /* logit-bias entries; OpenAI accepts up to 300 */
#define SLM_SAMPLE_MAX_LAST_N  32768     /* repeat_last_n window; a whole 32k context */

/* ---- parameters -------------------------------------------------------------------------- */

/* One logit-bias entry: logits[id] += bias before anything else; -INFINITY bans id. */
typedef struct slm_sample_bias {
    int32_t id;  /* token id, 0 <= id < n_vocab */
    float bias;  /* added to the raw logit; finite or -INFINITY */
} slm_sample_bias;

/* What a request asks of the sampler. Start from slm_sample_params_default() and override.
 * The "off" value of each stage is given; a stage that is off costs nothing. */
typedef struct slm_sample_params {
    float temperature;        /* >= 0; 0 = greedy (argmax, lowest id on ties). Default 0.8 */
    int32_t top_k;            /* >= 0; 0 = off. Default 40 */
    float top_p;              /* (0, 1]; 1 = off. Default 0.95 */
    float min_p;              /* [0, 1]; 0 = off. Default 0.05 */
    float repeat_penalty;     /* > 0; 1 = off. Default 1.0 */
    int32_t repeat_last_n;    /* [0, SLM_SAMPLE_MAX_LAST_N] tokens of history the three
                                 penalties look at; 0 = penalties off. Default 64. (llama.cpp's
                                 -1 = "whole context" is the caller's to map to n_ctx.) */
    float frequency_penalty;  /* finite; 0 = off. Default 0 */
    float presence_penalty;   /* finite; 0 = off. Default 0 */
    uint64_t seed;            /* PRNG seed; any value. Default 0 (fixed: see the top) */
    int32_t n_probs;          /* [0, SLM_SAMPLE_MAX_PROBS] alternatives to report. Default 0 */
    const slm_sample_bias *bias; /* n_bias entries, copied by slm_sample_create; may be NULL */
    size_t n_bias;               /* [0, SLM_SAMPLE_MAX_BIAS]; a repeated id adds up */
} slm_sample_params;

/* The llama.cpp / llama-server defaults listed above (an OpenAI request that sets
 * temperature/top_p/penalties overrides those fields; top_k and min_p stay as llama-server
 * leaves them unless the request sets them). */
slm_sample_params slm_sample_params_default(void);

/* SLM_OK, or SLM_ERR_INVALID_ARG / SLM_ERR_LIMIT naming the first bad field. n_vocab is
 * needed to range-check the bias ids. slm_sample_create calls this. */
slm_status slm_sample_params_check(const slm_sample_params *p, int32_t n_vocab, char *err);

/* ---- the allowed-token mask (grammar hook) ------------------------------------------------ */

/* A mask is a bitset of ceil(n_vocab / 32) uint32 words: token id is allowed when bit
 * (id % 32) of word (id / 32) is set. Bits at or beyond n_vocab are ignored.
 * SLM_SAMPLE_MASK_WORDS(n) gives the word count. */
#define SLM_SAMPLE_MASK_WORDS(n_vocab) (((size_t)(n_vocab) + 31u) / 32u)

/* A mask hook, set once per sampler with slm_sample_set_mask_fn and called at step 3 of
 * every slm_sample_next (the structured-output engine supplies it; there is no grammar
 * engine yet). It receives the sampler's own zeroed scratch bitset (n_words words; the
 * sampler owns it and reuses it every step) and sets the bits of the tokens that may come
 * next. It must not call back into the sampler. A non-SLM_OK return aborts the step with
 * that status (its detail should go into err, which may be NULL). A hook that allows no
 * token at all makes slm_sample_next fail with SLM_ERR_STATE.
 *   user: the pointer given to slm_sample_set_mask_fn, borrowed for the sampler's life. */
typedef slm_status (*slm_sample_mask_fn)(void *user, uint32_t *allowed, size_t n_words, char *err);

/* ---- per-step output ---------------------------------------------------------------------- */

typedef struct slm_sample_alt {
    int32_t id;     /* token id */
    float logprob;  /* natural log of its probability in the reported distribution (<= 0) */
} slm_sample_alt;

/* What one step produced; a plain value the caller owns (no pointers). */
typedef struct slm_sample_out {
    int32_t id;       /* the chosen token */
    float logprob;    /* its log-probability in the reported distribution (may be -INFINITY
                         when the mask forced a token that the bias had banned) */
    float entropy;    /* nats, of the reported distribution: -sum p log p, >= 0 */
    int32_t n_alts;   /* = params.n_probs (or n_vocab if smaller) */
    slm_sample_alt alts[SLM_SAMPLE_MAX_PROBS]; /* the n_alts most probable tokens, by logprob
                         descending, ties by id ascending; the chosen token may or may not be
                         among them (the mask does not apply to them) */
} slm_sample_out;

/* ---- the sampler --------------------------------------------------------------------------- */

typedef struct slm_sampler slm_sampler;

/* Validate p (see slm_sample_params_check), copy it (bias list included) and allocate the
 * scratch for n_vocab tokens (about 20 bytes per token). p is borrowed for the call only.
 * SLM_ERR_INVALID_ARG for n_vocab < 1, SLM_ERR_LIMIT above SLM_SAMPLE_MAX_VOCAB. */
slm_status slm_sample_create(const slm_sample_params *p, int32_t n_vocab, slm_sampler **out, char *err);
void slm_sample_destroy(slm_sampler *s); /* NULL allowed */

/* Forget the history and restart the PRNG from params.seed (a new request on a reused
 * sampler). The mask hook stays set. */
void slm_sample_reset(slm_sampler *s);

/* Install (or with fn == NULL remove) the mask hook; user is borrowed while installed. */
void slm_sample_set_mask_fn(slm_sampler *s, slm_sample_mask_fn fn, void *user);

/* Tell the sampler n tokens were accepted into the sequence (the prompt, if the caller wants
 * the penalties to see it, then each generated token). Only the last repeat_last_n count.
 * SLM_ERR_RANGE when an id is outside [0, n_vocab) (nothing is recorded then). */
slm_status slm_sample_accept(slm_sampler *s, const int32_t *ids, size_t n, char *err);

/* One step. logits: n_vocab floats (borrowed, read only; NaN is treated as -inf).
 * allowed: an optional mask bitset of SLM_SAMPLE_MASK_WORDS(n_vocab) words (borrowed; NULL =
 * all allowed); it is combined (AND) with the hook's mask when both are present.
 * Writes *out on SLM_OK. Does NOT accept the token: call slm_sample_accept with out->id.
 * Errors: SLM_ERR_INVALID_ARG (n_vocab differs from the sampler's), SLM_ERR_STATE (every
 * token is masked or banned: no token can be chosen), or the mask hook's status. */
slm_status slm_sample_next(slm_sampler *s, const float *logits, int32_t n_vocab, const uint32_t *allowed,
                           slm_sample_out *out, char *err);

/* ---- stateless helper ---------------------------------------------------------------------- */

/* The confidence signals of a raw distribution, without sampling: for prompt logprobs and
 * label scoring. Fills out->logprob for token id (id = -1: none, logprob 0), out->entropy,
 * and the top n_probs alternatives; out->id = id. logits: n_vocab floats, borrowed.
 * O(n_vocab); no allocation. SLM_ERR_INVALID_ARG / SLM_ERR_RANGE for bad sizes or ids. */
slm_status slm_sample_probs(const float *logits, int32_t n_vocab, int32_t id, int32_t n_probs,
                            slm_sample_out *out, char *err);

/* ---- stop strings -------------------------------------------------------------------------- */

#define SLM_SAMPLE_STOP_MAX      16   /* stop strings per request; OpenAI accepts 4 */
#define SLM_SAMPLE_STOP_MAX_LEN  256  /* bytes in one stop string */
#define SLM_SAMPLE_STOP_MAX_PIECE (1u << 20) /* bytes in one fed piece (a token is < 256) */

/* Finds the first occurrence of any of a set of stop strings in text that arrives in pieces
 * (the detokenized tokens), across piece boundaries, and says which bytes are safe to send
 * to the client now. Text is held back while its end could still be the start of a stop
 * string, and while it ends inside an incomplete UTF-8 sequence (so a client never receives
 * half a character). On a match, the text before the stop string is released and the stop
 * string itself and anything after it are not. The earliest match in the text received so
 * far wins; among stop strings matching at the same position, the first in the list
 * (llama-server's rule). Matching is decided as text arrives: with stops "xy" and "xyz", "xy"
 * ends the stream as soon as it is complete. */
typedef struct slm_sample_stop slm_sample_stop;

typedef struct slm_sample_stop_out {
    const char *text; /* bytes safe to emit now; points into the detector, valid until the
                         next call on it. Not NUL-terminated. NULL when len == 0 */
    size_t len;       /* byte count */
    int32_t matched;  /* -1, or the index of the stop string that matched (generation
                         should end; the detector then refuses feeds until reset) */
} slm_sample_stop_out;

/* stops: n strings (NUL-terminated, copied; borrowed for the call). n may be 0 (the
 * detector then only holds back incomplete UTF-8). SLM_ERR_INVALID_ARG for an empty or NULL
 * string, SLM_ERR_LIMIT above the limits. */
slm_status slm_sample_stop_create(const char *const *stops, size_t n, slm_sample_stop **out, char *err);
void slm_sample_stop_destroy(slm_sample_stop *d); /* NULL allowed */
void slm_sample_stop_reset(slm_sample_stop *d);   /* forget held text and any match */

/* Feed the next piece (len bytes, borrowed for the call). SLM_ERR_STATE after a match,
 * SLM_ERR_LIMIT for a piece over SLM_SAMPLE_STOP_MAX_PIECE, SLM_ERR_NOMEM if the internal
 * buffer cannot grow (it grows only for pieces longer than any seen before). */
slm_status slm_sample_stop_feed(slm_sample_stop *d, const char *piece, size_t len, slm_sample_stop_out *out,
                                char *err);

/* Generation ended without a match: release everything still held (possibly an incomplete
 * UTF-8 tail; the caller decides whether to send it). matched = -1. After a match it
 * releases nothing. */
void slm_sample_stop_flush(slm_sample_stop *d, slm_sample_stop_out *out);

#endif /* SLMESH_SAMPLE_H */
