/*
 * tests/test_chat.c: chat-template recognition (llama.cpp's substring tests and their
 * order), rendering of one 3-turn conversation in every family against the exact text
 * llama.cpp's llama_chat_apply_template produces, names, roles, UTF-8 and size limits,
 * allocation failures.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "core/core.h"

/* ---- recognition --------------------------------------------------------------------------------- */

static slm_status detect_str(const char *jinja, slm_chat_template *t, char *err) {
    return slm_chat_template_detect(jinja, strlen(jinja), t, err);
}

static void expect_family(const char *jinja, slm_chat_template want) {
    slm_chat_template t = SLM_CHAT_TEMPLATE_COUNT;
    char err[SLM_ERR_LEN] = "";
    slm_status st = detect_str(jinja, &t, err);
    if (st != SLM_OK || t != want)
        fprintf(stderr, "template %.60s...: status %d (%s), got %s, want %s\n", jinja, (int)st, err,
                slm_chat_template_name(t), slm_chat_template_name(want));
    assert_int_equal(st, SLM_OK);
    assert_int_equal(t, want);
}

static void expect_unsupported(const char *jinja, const char *word) {
    slm_chat_template t;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(detect_str(jinja, &t, err), SLM_ERR_UNSUPPORTED);
    if (!strstr(err, word)) fprintf(stderr, "detail \"%s\" lacks \"%s\"\n", err, word);
    assert_non_null(strstr(err, word));
    assert_non_null(strstr(err, "chatml, qwen3")); /* the detail lists the names */
}

static void test_detect_families(void **state) {
    (void)state;
    /* Short template fragments carrying each family's distinctive text. */
    expect_family("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}"
                  "{% endfor %}",
                  SLM_CHAT_CHATML);
    expect_family("{{'<|im_start|>' + m.role }}{% if x %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}", SLM_CHAT_QWEN3);
    expect_family("{{ '<|im_start|>' + m.role + '<|im_sep|>' + m.content + '<|im_end|>' }}", SLM_CHAT_PHI4);
    expect_family("{% set c = '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim "
                  "+ '<|eot_id|>' %}",
                  SLM_CHAT_LLAMA3);
    expect_family("{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}", SLM_CHAT_LLAMA2);
    expect_family("{{ '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}", SLM_CHAT_LLAMA2_SYS);
    expect_family("{{ bos_token + '[INST] ' + c + ' [/INST]' }}{{ '<<SYS>>' }}", SLM_CHAT_LLAMA2_SYS_BOS);
    expect_family("{{ '[INST] ' + content.strip() + ' [/INST]' }}", SLM_CHAT_LLAMA2_SYS_STRIP);
    expect_family("mistral-ish: no [INST] text at all", SLM_CHAT_LLAMA2); /* starts with "mistral" */
    expect_family("{{- ' [INST] ' + system_message + '\\n\\n' + m['content'] + ' [/INST]' }}", SLM_CHAT_MISTRAL_V1);
    expect_family("{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[INST] \" + m[\"content\"] + \"[/INST]\" }}", SLM_CHAT_MISTRAL_V3);
    expect_family("{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[INST]\" + m[\"content\"] + \"[/INST]\" }}",
                  SLM_CHAT_MISTRAL_V3_TEKKEN);
    expect_family("{{ '[SYSTEM_PROMPT] ' + c + '[/SYSTEM_PROMPT]' }}{{ '[INST] ' + c + '[/INST]' }}",
                  SLM_CHAT_MISTRAL_V7);
    expect_family("{{'<|user|>' + '\\n' + c + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}", SLM_CHAT_PHI3);
    expect_family("{% if r == 'user' %}{{ '<|user|>\\n' + c + '<|endoftext|>\\n' }}{% else %}{{ '<|' + r + '|>\\n' "
                  "+ c + '<|endoftext|>\\n' }}{% endif %}",
                  SLM_CHAT_ZEPHYR);
    expect_family("{{ '<start_of_turn>' + role + '\\n' + c | trim + '<end_of_turn>\\n' }}", SLM_CHAT_GEMMA);
    /* exact names are accepted as templates, as llama.cpp does */
    expect_family("mistral-v7-tekken", SLM_CHAT_MISTRAL_V7_TEKKEN);
    expect_family("chatml", SLM_CHAT_CHATML);
    /* the template need not be NUL-terminated */
    slm_chat_template t;
    assert_int_equal(slm_chat_template_detect("gemmaXYZ", 5, &t, NULL), SLM_OK);
    assert_int_equal(t, SLM_CHAT_GEMMA);
}

static void test_detect_unsupported(void **state) {
    (void)state;
    expect_unsupported("{{ 'hello' }}", "not recognised");
    expect_unsupported("{{ '<|user|>\\n' }}{{ '<|assistant|>\\n' }}{{ eos }}</s>", "falcon3");
    expect_unsupported("{{ '<|user|>\\n' }}{{ '<|assistant|>\\n' }}", "glmedge");
    expect_unsupported("{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' }}", "command-r");
    expect_unsupported("{{'<|im_start|>'}}User:<end_of_utterance>", "smolvlm");
    /* chain order: vicuna's test comes before llama3's */
    expect_unsupported("USER: ASSISTANT: <|start_header_id|><|end_header_id|>", "vicuna");
    expect_unsupported("{{ '<|header_start|>' + r + '<|header_end|>' }}", "llama4");
    slm_chat_template t;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_chat_template_detect("", 0, &t, err), SLM_ERR_UNSUPPORTED);
    assert_int_equal(slm_chat_template_detect(NULL, 0, &t, err), SLM_ERR_UNSUPPORTED);
    assert_int_equal(slm_chat_template_detect("x", SLM_CHAT_MAX_TEMPLATE + 1, &t, err), SLM_ERR_LIMIT);
}

/* The real templates of the shared vocabulary files (read through the GGUF reader). */
static void expect_gguf(const char *rel, slm_chat_template want) {
    char path[4096];
    TU_SHARED_OR_SKIP(path, rel);
    slm_gguf *g = NULL;
    char err[SLM_ERR_LEN] = "";
    assert_int_equal(slm_gguf_open(path, NULL, &g, err), SLM_OK);
    slm_chat_template t = SLM_CHAT_TEMPLATE_COUNT;
    slm_status st = slm_chat_template_from_gguf(g, &t, err);
    if (st != SLM_OK || t != want) fprintf(stderr, "%s: %s (%s)\n", rel, slm_chat_template_name(t), err);
    assert_int_equal(st, SLM_OK);
    assert_int_equal(t, want);
    slm_gguf_close(g);
}

static void test_detect_real_templates(void **state) {
    (void)state;
    expect_gguf("models/vocab/ggml-vocab-qwen2.gguf", SLM_CHAT_QWEN3);   /* Qwen3's template */
    expect_gguf("models/vocab/ggml-vocab-llama-bpe.gguf", SLM_CHAT_LLAMA3);
    expect_gguf("models/vocab/ggml-vocab-smollm2.gguf", SLM_CHAT_CHATML);
    expect_gguf("models/vocab/ggml-vocab-phi-3.gguf", SLM_CHAT_PHI3);
    /* a model without a template */
    char path[4096];
    TU_SHARED_OR_SKIP(path, "models/vocab/ggml-vocab-llama-spm.gguf");
    slm_gguf *g = NULL;
    assert_int_equal(slm_gguf_open(path, NULL, &g, NULL), SLM_OK);
    slm_chat_template t;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_chat_template_from_gguf(g, &t, err), SLM_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "tokenizer.chat_template"));
    slm_gguf_close(g);
}

static void test_names(void **state) {
    (void)state;
    char joined[1024] = "";
    for (int i = 0; i < SLM_CHAT_TEMPLATE_COUNT; i++) {
        const slm_chat_info *info = slm_chat_template_info((slm_chat_template)i);
        assert_non_null(info);
        assert_string_equal(info->name, slm_chat_template_name((slm_chat_template)i));
        assert_false(info->bos_in_text);
        assert_non_null(info->stops[0]);
        slm_chat_template t;
        assert_int_equal(slm_chat_template_from_name(info->name, &t, NULL), SLM_OK);
        assert_int_equal(t, i);
        if (i) strcat(joined, ", ");
        strcat(joined, info->name);
    }
    assert_string_equal(joined, slm_chat_template_names());
    assert_null(slm_chat_template_info(SLM_CHAT_TEMPLATE_COUNT));
    assert_string_equal(slm_chat_template_name((slm_chat_template)-1), "unknown");
    slm_chat_template t;
    char err[SLM_ERR_LEN];
    assert_int_equal(slm_chat_template_from_name("llama-3", &t, err), SLM_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "llama3"));
    assert_string_equal(slm_chat_template_info(SLM_CHAT_LLAMA3)->stops[0], "<|eot_id|>");
    assert_string_equal(slm_chat_template_info(SLM_CHAT_CHATML)->stops[0], "<|im_end|>");
    assert_string_equal(slm_chat_template_info(SLM_CHAT_QWEN3)->think_close, "</think>");
    assert_null(slm_chat_template_info(SLM_CHAT_CHATML)->think_open);
}

/* ---- rendering ------------------------------------------------------------------------------------- */

/* llama.cpp's test conversation: three user turns, a system prompt, and an assistant reply
 * with surrounding spaces that some families trim. */
static const slm_chat_message CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV (sizeof CONV / sizeof CONV[0])

static const struct {
    slm_chat_template t;
    const char *want;
} RENDERED[] = {
    {SLM_CHAT_CHATML,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n"},
    {SLM_CHAT_QWEN3,
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
     "<|im_start|>assistant\n"},
    {SLM_CHAT_LLAMA3,
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {SLM_CHAT_LLAMA2,
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]"},
    {SLM_CHAT_LLAMA2_SYS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "   I am an assistant   </s>[INST] Another question [/INST]"},
    {SLM_CHAT_LLAMA2_SYS_BOS,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] Who are you [/INST]"
     "   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {SLM_CHAT_LLAMA2_SYS_STRIP,
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
     "I am an assistant</s>[INST] Another question [/INST]"},
    {SLM_CHAT_MISTRAL_V1,
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    I am an "
     "assistant   </s> [INST] Another question [/INST]"},
    {SLM_CHAT_MISTRAL_V3,
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
     "[INST] Another question[/INST]"},
    {SLM_CHAT_MISTRAL_V3_TEKKEN,
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   "
     "</s>[INST]Another question[/INST]"},
    {SLM_CHAT_MISTRAL_V7,
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] Who are you"
     "[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
    {SLM_CHAT_MISTRAL_V7_TEKKEN,
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>[INST]Who are you"
     "[/INST]   I am an assistant   </s>[INST]Another question[/INST]"},
    {SLM_CHAT_PHI3,
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
     "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
     "<|assistant|>\n"},
    {SLM_CHAT_PHI4,
     "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|>"
     "<|im_start|>assistant<|im_sep|>Hi there<|im_end|><|im_start|>user<|im_sep|>Who are you<|im_end|>"
     "<|im_start|>assistant<|im_sep|>   I am an assistant   <|im_end|><|im_start|>user<|im_sep|>Another question"
     "<|im_end|><|im_start|>assistant<|im_sep|>"},
    {SLM_CHAT_ZEPHYR,
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there"
     "<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n"
     "<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n"},
    {SLM_CHAT_GEMMA,
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\nHi there"
     "<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant"
     "<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
};

static char *render_ok(slm_chat_template t, const slm_chat_message *m, size_t n, int flags) {
    char *out = NULL;
    size_t len = 0;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_chat_render(t, m, n, flags, &out, &len, err);
    if (st != SLM_OK) fprintf(stderr, "render %s: %s\n", slm_chat_template_name(t), err);
    assert_int_equal(st, SLM_OK);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_render_every_family(void **state) {
    (void)state;
    bool covered[SLM_CHAT_TEMPLATE_COUNT] = {false};
    for (size_t i = 0; i < sizeof RENDERED / sizeof RENDERED[0]; i++) {
        char *out = render_ok(RENDERED[i].t, CONV, N_CONV, SLM_CHAT_ADD_GENERATION_PROMPT);
        if (strcmp(out, RENDERED[i].want) != 0)
            fprintf(stderr, "%s:\n got [%s]\nwant [%s]\n", slm_chat_template_name(RENDERED[i].t), out, RENDERED[i].want);
        assert_string_equal(out, RENDERED[i].want);
        slm_free(out);
        covered[RENDERED[i].t] = true;
    }
    for (int t = 0; t < SLM_CHAT_TEMPLATE_COUNT; t++) assert_true(covered[t]);
}

static void test_render_flags(void **state) {
    (void)state;
    /* without the generation prompt the text ends after the last message */
    char *out = render_ok(SLM_CHAT_CHATML, CONV + 1, 1, 0);
    assert_string_equal(out, "<|im_start|>user\nHello<|im_end|>\n");
    slm_free(out);
    out = render_ok(SLM_CHAT_LLAMA3, CONV + 1, 1, 0);
    assert_string_equal(out, "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
    slm_free(out);
    /* qwen3 with thinking off */
    out = render_ok(SLM_CHAT_QWEN3, CONV + 1, 1, SLM_CHAT_ADD_GENERATION_PROMPT | SLM_CHAT_THINK_OFF);
    assert_string_equal(out, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    slm_free(out);
    /* ignored by other families */
    out = render_ok(SLM_CHAT_CHATML, CONV + 1, 1, SLM_CHAT_ADD_GENERATION_PROMPT | SLM_CHAT_THINK_OFF);
    assert_string_equal(out, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    slm_free(out);
    /* qwen3: past reasoning stripped on request, the turns after the last user kept */
    const slm_chat_message think[] = {
        {"user", "Q1"},
        {"assistant", "<think>\nfirst\n</think>\n\nA1"},
        {"user", "Q2"},
        {"assistant", "<think>\nnow</think>A2"},
    };
    out = render_ok(SLM_CHAT_QWEN3, think, 3, SLM_CHAT_ADD_GENERATION_PROMPT | SLM_CHAT_STRIP_THINK);
    assert_string_equal(out, "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                             "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n");
    slm_free(out);
    out = render_ok(SLM_CHAT_QWEN3, think, 4, SLM_CHAT_STRIP_THINK);
    assert_string_equal(out, "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                             "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nnow</think>A2"
                             "<|im_end|>\n");
    slm_free(out);
    const slm_chat_message two_blocks[] = {{"assistant", "<think>a</think>x</think>\n\ny"}};
    out = render_ok(SLM_CHAT_QWEN3, two_blocks, 1, SLM_CHAT_STRIP_THINK); /* no user: all past */
    assert_string_equal(out, "<|im_start|>assistant\ny<|im_end|>\n");
    slm_free(out);
    out = render_ok(SLM_CHAT_CHATML, think, 3, SLM_CHAT_STRIP_THINK); /* ignored */
    assert_non_null(strstr(out, "<think>\nfirst"));
    slm_free(out);
    /* no messages: just the generation prompt */
    out = render_ok(SLM_CHAT_GEMMA, NULL, 0, SLM_CHAT_ADD_GENERATION_PROMPT);
    assert_string_equal(out, "<start_of_turn>model\n");
    slm_free(out);
    /* gemma: several system messages join, trimmed, into the next user turn */
    const slm_chat_message sys2[] = {{"system", " A "}, {"system", "B\n"}, {"user", " hi "}};
    out = render_ok(SLM_CHAT_GEMMA, sys2, 3, 0);
    assert_string_equal(out, "<start_of_turn>user\nAB\n\nhi<end_of_turn>\n");
    slm_free(out);
    /* UTF-8 content passes through untouched */
    const slm_chat_message u[] = {{"user", "caf\xc3\xa9 \xf0\x9f\x98\x80"}};
    out = render_ok(SLM_CHAT_CHATML, u, 1, 0);
    assert_string_equal(out, "<|im_start|>user\ncaf\xc3\xa9 \xf0\x9f\x98\x80<|im_end|>\n");
    slm_free(out);
}

static void test_render_errors(void **state) {
    (void)state;
    char *out = (char *)&out;
    size_t len = 7;
    char err[SLM_ERR_LEN];
    const slm_chat_message bad_role[] = {{"user", "a"}, {"tool", "b"}};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, bad_role, 2, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, "message 1"));
    assert_non_null(strstr(err, "tool"));
    const slm_chat_message null_content[] = {{"user", NULL}};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, null_content, 1, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
    const slm_chat_message null_role[] = {{NULL, "x"}};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, null_role, 1, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
    const slm_chat_message upper[] = {{"User", "x"}};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, upper, 1, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
    /* invalid UTF-8: a lone continuation, an overlong, a surrogate, a truncated sequence */
    const char *bad_utf8[] = {"a\x80", "\xc0\xaf", "\xed\xa0\x80", "ok\xe2\x82", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        const slm_chat_message m[] = {{"user", bad_utf8[i]}};
        assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, m, 1, 0, &out, &len, err), SLM_ERR_UTF8);
    }
    assert_int_equal(slm_chat_render(SLM_CHAT_TEMPLATE_COUNT, CONV, 1, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, NULL, 1, 0, &out, &len, err), SLM_ERR_INVALID_ARG);
}

static void test_render_limits(void **state) {
    (void)state;
    char *out = NULL;
    size_t len;
    char err[SLM_ERR_LEN];
    /* message count */
    slm_chat_message *many = calloc(SLM_CHAT_MAX_MESSAGES + 1, sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i <= SLM_CHAT_MAX_MESSAGES; i++) many[i] = (slm_chat_message){"user", "x"};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, many, SLM_CHAT_MAX_MESSAGES + 1, 0, &out, &len, err),
                     SLM_ERR_LIMIT);
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, many, SLM_CHAT_MAX_MESSAGES, 0, &out, &len, err), SLM_OK);
    assert_int_equal(len, SLM_CHAT_MAX_MESSAGES * strlen("<|im_start|>user\nx<|im_end|>\n"));
    slm_free(out);
    /* total bytes: two messages that are each under the limit but not together */
    size_t half = SLM_CHAT_MAX_BYTES / 2 + 1;
    char *big = malloc(half + 1);
    assert_non_null(big);
    memset(big, 'a', half);
    big[half] = '\0';
    many[0] = (slm_chat_message){"user", big};
    many[1] = (slm_chat_message){"assistant", big};
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, many, 1, 0, &out, &len, err), SLM_OK);
    slm_free(out);
    assert_int_equal(slm_chat_render(SLM_CHAT_CHATML, many, 2, 0, &out, &len, err), SLM_ERR_LIMIT);
    assert_non_null(strstr(err, "message 1"));
    free(big);
    free(many);
}

/* Every allocation of a rendering fails in turn; returns how many there were. */
static int oom_walk(slm_chat_template t, int flags) {
    int fired_count = 0;
    for (long n = 1;; n++) {
        char *out = NULL;
        size_t len;
        slm_fault_arm(n);
        slm_status st = slm_chat_render(t, CONV, N_CONV, flags, &out, &len, NULL);
        bool fired = slm_fault_fired();
        slm_fault_arm(0);
        if (!fired) {
            assert_int_equal(st, SLM_OK);
            slm_free(out);
            return fired_count;
        }
        assert_int_equal(st, SLM_ERR_NOMEM);
        assert_null(out);
        fired_count++;
    }
}

static void test_render_oom(void **state) {
    (void)state;
    /* roles, first buffer, and at least one growth (llama3's headers outgrow the guess) */
    assert_true(oom_walk(SLM_CHAT_LLAMA3, SLM_CHAT_ADD_GENERATION_PROMPT) >= 3);
    /* and the stripped view of the messages */
    assert_true(oom_walk(SLM_CHAT_QWEN3, SLM_CHAT_ADD_GENERATION_PROMPT | SLM_CHAT_STRIP_THINK) >= 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_families),
        cmocka_unit_test(test_detect_unsupported),
        cmocka_unit_test(test_detect_real_templates),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_render_every_family),
        cmocka_unit_test(test_render_flags),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_render_limits),
        cmocka_unit_test(test_render_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
