/*
 * chat/chat.h: turn a conversation (system/user/assistant messages) into the prompt text a
 * chat model was trained on.
 *
 * GGUF files carry a Jinja template (tokenizer.chat_template). slmesh does not run Jinja:
 * like the reference runtime's llama_chat_apply_template, it RECOGNISES the template's
 * family by distinctive substrings (the same tests, in the same order, as llama.cpp's
 * llm_chat_detect_template) and renders that family with fixed code. The rendered text is
 * byte-for-byte what llama_chat_apply_template produces for the family (tests hold the
 * expected strings). Where a model's Jinja differs from that (Qwen2.5's default system
 * prompt, Llama 3's bos_token), slmesh follows llama_chat_apply_template.
 *
 * BOS: the rendered text never contains the BOS token for the families here (info->
 * bos_in_text is false for all of them). The caller tokenizes it with special-token parsing
 * and adds BOS exactly when the vocabulary says so:
 *     flags = SLM_TOK_PARSE_SPECIAL | (info->bos_in_text ? 0 : SLM_TOK_ADD_BOS)
 * (SLM_TOK_ADD_BOS itself honours tokenizer.ggml.add_bos_token), which gives the same
 * tokens as llama-server for Llama 3 ("<|begin_of_text|>" once) and Qwen (no BOS).
 *
 * Thread-safety: everything here is pure; the tables are constant.
 * Non-goals: a Jinja interpreter; tool calls and the "tool" role; multimodal content.
 */
#ifndef SLMESH_CHAT_H
#define SLMESH_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "slmesh/status.h"

/* ---- limits ------------------------------------------------------------------------------ */
#define SLM_CHAT_MAX_MESSAGES  4096       /* messages in one conversation */
#define SLM_CHAT_MAX_BYTES     (16u << 20) /* bytes of message content in total (a 32k-token
                                              context is ~128 KiB of text; 16 MiB is ample) */
#define SLM_CHAT_MAX_TEMPLATE  (1u << 20) /* bytes of a Jinja template to inspect (real ones
                                              are < 16 KiB) */
#define SLM_CHAT_MAX_STOPS     4          /* stop strings per family */

/* ---- families ---------------------------------------------------------------------------- */

/* The template families slmesh renders. Names (slm_chat_template_name) are llama.cpp's
 * (--chat-template NAME), plus "qwen3". */
typedef enum slm_chat_template {
    SLM_CHAT_CHATML = 0,        /* "chatml": Qwen2/2.5, SmolLM/SmolLM2, Hermes, ... */
    SLM_CHAT_QWEN3,             /* "qwen3": chatml with <think> reasoning (Qwen3) */
    SLM_CHAT_LLAMA3,            /* "llama3": <|start_header_id|> ... <|eot_id|> */
    SLM_CHAT_LLAMA2,            /* "llama2": [INST] ... [/INST], system as plain text */
    SLM_CHAT_LLAMA2_SYS,        /* "llama2-sys": [INST] <<SYS>> ... <</SYS>> */
    SLM_CHAT_LLAMA2_SYS_BOS,    /* "llama2-sys-bos": and <s> before later [INST]s */
    SLM_CHAT_LLAMA2_SYS_STRIP,  /* "llama2-sys-strip": and message content trimmed */
    SLM_CHAT_MISTRAL_V1,        /* "mistral-v1":  " [INST] ... [/INST]" */
    SLM_CHAT_MISTRAL_V3,        /* "mistral-v3":  "[INST] ...[/INST]" */
    SLM_CHAT_MISTRAL_V3_TEKKEN, /* "mistral-v3-tekken": "[INST]...[/INST]" */
    SLM_CHAT_MISTRAL_V7,        /* "mistral-v7":  [SYSTEM_PROMPT] ... */
    SLM_CHAT_MISTRAL_V7_TEKKEN, /* "mistral-v7-tekken" */
    SLM_CHAT_PHI3,              /* "phi3": <|user|> ... <|end|> */
    SLM_CHAT_PHI4,              /* "phi4": <|im_start|>role<|im_sep|> */
    SLM_CHAT_ZEPHYR,            /* "zephyr": <|user|> ... <|endoftext|> */
    SLM_CHAT_GEMMA,             /* "gemma": <start_of_turn>user|model */
    SLM_CHAT_TEMPLATE_COUNT
} slm_chat_template;

/* What the engine and server need to know about a family. Static storage. */
typedef struct slm_chat_info {
    const char *name;         /* "chatml", ... (the --chat-template name) */
    bool bos_in_text;         /* rendered text starts with BOS (false for every family here) */
    bool generation_prompt;   /* SLM_CHAT_ADD_GENERATION_PROMPT appends an assistant header
                                 (false for llama2/mistral: the prompt ends with [/INST]) */
    const char *stops[SLM_CHAT_MAX_STOPS]; /* end-of-turn strings as text ("<|im_end|>"),
                                 at least one; unused entries are NULL (stop at the first NULL
                                 or at SLM_CHAT_MAX_STOPS). Usually single special tokens,
                                 which the engine should also treat as end of generation */
    const char *think_open;   /* "<think>" for families with reasoning blocks, else NULL */
    const char *think_close;  /* "</think>", else NULL */
} slm_chat_info;

/* Recognise a Jinja template (len bytes, borrowed; need not be NUL-terminated). A template
 * that is exactly a family name is that family. SLM_ERR_UNSUPPORTED with a detail when no
 * family here matches (naming llama.cpp's family when it is one slmesh does not render);
 * SLM_ERR_LIMIT above SLM_CHAT_MAX_TEMPLATE. */
slm_status slm_chat_template_detect(const char *jinja, size_t len, slm_chat_template *out, char *err);

/* The GGUF key that holds the Jinja template. */
#define SLM_CHAT_GGUF_KEY "tokenizer.chat_template"

/* Detect the family of g's SLM_CHAT_GGUF_KEY (g borrowed for the call). SLM_ERR_NOT_FOUND
 * when the file has no template (the caller then needs --chat-template NAME), else as
 * slm_chat_template_detect. */
slm_status slm_chat_template_from_gguf(const slm_gguf *g, slm_chat_template *out, char *err);

/* By name (the CLI's --chat-template NAME). SLM_ERR_NOT_FOUND lists the valid names. */
slm_status slm_chat_template_from_name(const char *name, slm_chat_template *out, char *err);

/* Family facts; NULL for an out-of-range value. */
const slm_chat_info *slm_chat_template_info(slm_chat_template t);
/* The name, or "unknown" for an out-of-range value. Static storage. */
const char *slm_chat_template_name(slm_chat_template t);
/* All names, comma-separated, for usage text ("chatml, qwen3, llama3, ..."). Static. */
const char *slm_chat_template_names(void);

/* ---- rendering ---------------------------------------------------------------------------- */

/* One message; both strings NUL-terminated and borrowed for the call. */
typedef struct slm_chat_message {
    const char *role;     /* "system", "user" or "assistant" */
    const char *content;  /* UTF-8 text */
} slm_chat_message;

enum {
    SLM_CHAT_ADD_GENERATION_PROMPT = 1 << 0, /* end with the assistant's header (add_ass) */
    SLM_CHAT_THINK_OFF = 1 << 1, /* qwen3 only: after the generation prompt, add the empty
                                    "<think>\n\n</think>\n\n" block (Qwen3's enable_thinking =
                                    false); ignored by other families */
    SLM_CHAT_STRIP_THINK = 1 << 2, /* qwen3 only: assistant messages before the last user
                                    message keep only the text after their last "</think>"
                                    (leading newlines dropped), as Qwen3's own template does
                                    with past reasoning; llama_chat_apply_template does not.
                                    Ignored by other families */
};

/* Render n messages (flags: SLM_CHAT_*). On SLM_OK *out is a NUL-terminated string of
 * *out_len bytes, allocated with slm_malloc and owned by the caller (slm_free).
 * Errors: SLM_ERR_INVALID_ARG (a NULL string or an unknown role, naming the message index),
 * SLM_ERR_UTF8 (content that is not valid UTF-8), SLM_ERR_LIMIT (more than
 * SLM_CHAT_MAX_MESSAGES messages or SLM_CHAT_MAX_BYTES of content), SLM_ERR_NOMEM.
 * n == 0 is allowed (the text is just the generation prompt, if any). */
slm_status slm_chat_render(slm_chat_template t, const slm_chat_message *msgs, size_t n, int flags, char **out,
                           size_t *out_len, char *err);

#endif /* SLMESH_CHAT_H */
