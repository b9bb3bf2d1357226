/*
 * tests/test_generate.c: slm_ctx_generate on tiny-llama-f32 (stories260K's vocabulary):
 * greedy output equals an argmax decode loop; confidence outputs are consistent; stop
 * strings, the callback, the cancel flag, max_tokens and a full context end generation as
 * documented; concatenated text equals the detokenized tokens; bad parameters are refused.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slmesh/slmesh.h"

#define MODEL "models/tiny/tiny-llama-f32.gguf"
#define N_GEN 24

typedef struct collect {
    int32_t ids[256];
    int n_ids;
    char text[4096];
    size_t text_len;
    int stop_after;        /* return false after this many tokens (0 = never) */
    atomic_bool *cancel_at_2; /* set after 2 tokens when not NULL */
    bool consistent;       /* confidence outputs looked right */
    int n_top;
} collect;

static bool on_token(const slm_gen_token *t, void *user) {
    collect *c = user;
    if (t->text_len) {
        memcpy(c->text + c->text_len, t->text, t->text_len);
        c->text_len += t->text_len;
    }
    if (t->id < 0) return true;
    c->ids[c->n_ids++] = t->id;
    if (!(t->logprob <= 0.0f) || !(t->entropy >= 0.0f) || t->n_top != c->n_top) c->consistent = false;
    for (int i = 1; i < t->n_top; i++)
        if (t->top[i].logprob > t->top[i - 1].logprob) c->consistent = false;
    if (t->n_top > 0 && t->top[0].logprob < t->logprob) c->consistent = false;
    if (c->cancel_at_2 && c->n_ids == 2) atomic_store(c->cancel_at_2, true);
    return !(c->stop_after && c->n_ids >= c->stop_after);
}

static slm_ctx *ctx_for(const slm_model *m, int32_t n_ctx) {
    slm_ctx_params p = {.n_ctx = n_ctx, .n_threads = 2};
    slm_ctx *c = NULL;
    assert_int_equal(slm_ctx_create(m, &p, &c, NULL), SLM_OK);
    return c;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void test_generate(void **state) {
    (void)state;
    char path[1024], err[SLM_ERR_LEN];
    TU_SHARED_OR_SKIP(path, MODEL);
    slm_model *m = NULL;
    assert_int_equal(slm_model_open(path, NULL, &m, err), SLM_OK);
    const char *prompt_text = "Once upon a time, there was a little girl";
    int32_t prompt[64];
    size_t n_prompt = 0;
    assert_int_equal(slm_model_tokenize(m, prompt_text, strlen(prompt_text), SLM_TOKENIZE_ADD_BOS, prompt, 64, &n_prompt, err), SLM_OK);
    assert_true(n_prompt > 3);

    /* the argmax path by hand */
    int32_t want[N_GEN];
    slm_ctx *c = ctx_for(m, 128);
    int32_t pos[64], seq[64] = {0};
    for (size_t i = 0; i < n_prompt; i++) pos[i] = (int32_t)i;
    slm_batch b = {.n_tokens = (int32_t)n_prompt, .token = prompt, .pos = pos, .seq_id = seq};
    assert_int_equal(slm_ctx_decode(c, &b, err), SLM_OK);
    int32_t p = (int32_t)n_prompt, s0 = 0;
    const float *lg = slm_ctx_logits(c, (int32_t)n_prompt - 1);
    for (int i = 0; i < N_GEN; i++) {
        want[i] = argmax(lg, 512);
        slm_batch b1 = {.n_tokens = 1, .token = &want[i], .pos = &p, .seq_id = &s0};
        assert_int_equal(slm_ctx_decode(c, &b1, err), SLM_OK);
        p++;
        lg = slm_ctx_logits(c, 0);
    }
    slm_ctx_clear(c);

    /* greedy generation reproduces it, with 5 alternatives per token */
    slm_gen_params gp = {.max_tokens = N_GEN, .sampling = slm_sampling_default(), .n_top = 5};
    gp.sampling.temperature = 0;
    collect col = {.consistent = true, .n_top = 5};
    slm_gen_result res;
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &col, &res, err), SLM_OK);
    assert_int_equal(res.stop, SLM_GEN_STOP_LENGTH);
    assert_int_equal(res.n_generated, N_GEN);
    assert_int_equal(res.n_prompt, (int)n_prompt);
    assert_int_equal(col.n_ids, N_GEN);
    assert_memory_equal(col.ids, want, sizeof want);
    assert_true(col.consistent);
    /* the cache holds the prompt and every token but the last */
    assert_int_equal(slm_ctx_seq_pos_max(c, 0), (int32_t)n_prompt + N_GEN - 2);
    /* the streamed text is the detokenized continuation */
    char full[4096];
    size_t fl = slm_model_detokenize(m, want, N_GEN, full, sizeof full);
    assert_int_equal(col.text_len, fl);
    assert_memory_equal(col.text, full, fl);

    /* a stop string from the middle of the text: output ends right before it */
    const size_t cut = fl / 2;
    char stop[8];
    memcpy(stop, full + cut, 4);
    stop[4] = '\0';
    const char *first = strstr(full, stop);
    const char *stops[1] = {stop};
    slm_ctx_clear(c);
    collect c2 = {.consistent = true};
    gp.n_top = 0, gp.stop = stops, gp.n_stop = 1;
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &c2, &res, err), SLM_OK);
    assert_int_equal(res.stop, SLM_GEN_STOP_STRING);
    assert_int_equal(c2.text_len, (size_t)(first - full));
    assert_memory_equal(c2.text, full, c2.text_len);
    gp.stop = NULL, gp.n_stop = 0;

    /* the callback ends it */
    slm_ctx_clear(c);
    collect c3 = {.consistent = true, .stop_after = 3};
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &c3, &res, err), SLM_OK);
    assert_int_equal(res.stop, SLM_GEN_STOP_CALLBACK);
    assert_int_equal(res.n_generated, 3);

    /* the cancel flag: set during the callback of the 2nd token, seen before the 3rd */
    atomic_bool cancel = false;
    slm_ctx_clear(c);
    collect c4 = {.consistent = true, .cancel_at_2 = &cancel};
    gp.cancel = &cancel;
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &c4, &res, err), SLM_OK);
    assert_int_equal(res.stop, SLM_GEN_STOP_CANCEL);
    assert_int_equal(res.n_generated, 2);
    gp.cancel = NULL;
    slm_ctx_destroy(c);

    /* a full context */
    c = ctx_for(m, (int32_t)n_prompt + 4);
    collect c5 = {.consistent = true};
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &c5, &res, err), SLM_OK);
    assert_int_equal(res.stop, SLM_GEN_STOP_CONTEXT);
    assert_int_equal(res.n_generated, 5);
    assert_memory_equal(c5.ids, want, 5 * sizeof(int32_t));

    /* bad parameters */
    slm_ctx_clear(c);
    gp.max_tokens = 0;
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, NULL, NULL, NULL, err), SLM_ERR_INVALID_ARG);
    gp.max_tokens = 4, gp.n_top = SLM_GEN_MAX_TOP + 1;
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, NULL, NULL, NULL, err), SLM_ERR_RANGE);
    gp.n_top = 0;
    assert_int_equal(slm_ctx_generate(c, 1, prompt, n_prompt, &gp, NULL, NULL, NULL, err), SLM_ERR_RANGE);
    assert_int_equal(slm_ctx_generate(c, 0, prompt, 0, &gp, NULL, NULL, NULL, err), SLM_ERR_INVALID_ARG);
    gp.sampling.top_p = 0;
    assert_int_not_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, NULL, NULL, NULL, err), SLM_OK);
    /* sampled generation with a seed is reproducible; no callback is fine */
    gp.sampling = slm_sampling_default();
    gp.sampling.seed = 5;
    slm_ctx_destroy(c);
    c = ctx_for(m, 128);
    collect s1 = {.consistent = true}, s2 = {.consistent = true};
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &s1, &res, err), SLM_OK);
    slm_ctx_clear(c);
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, on_token, &s2, &res, err), SLM_OK);
    assert_int_equal(s1.n_ids, s2.n_ids);
    assert_memory_equal(s1.ids, s2.ids, (size_t)s1.n_ids * sizeof(int32_t));
    slm_ctx_clear(c);
    assert_int_equal(slm_ctx_generate(c, 0, prompt, n_prompt, &gp, NULL, NULL, NULL, err), SLM_OK);
    slm_ctx_destroy(c);
    slm_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_generate)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
