/*
 * chat/chat.c: chat-template families: recognition of a GGUF's Jinja template and rendering
 * of a conversation (see chat.h).
 *
 * Data flow: Jinja text -> detect (substring tests in llama.cpp's order) -> family;
 * messages -> validate (roles, UTF-8, limits) -> render (one function per family shape,
 * appending to a growable buffer) -> caller-owned string.
 *
 * Invariants: the family table is indexed by slm_chat_template and lists every family once;
 * detection runs llama.cpp's tests in llama.cpp's order, including the tests for families
 * slmesh does not render (so that such a template is refused by name rather than taken for
 * a later family in the chain).
 * Thread-safety: pure functions over constant tables. Non-goals: see chat.h.
 */
#include "chat/chat.h"

#include <string.h>

#include "core/core.h"

#define MARKUP_GUESS 32 /* bytes of template text per message for the first allocation */

/* ---- the family table ------------------------------------------------------------------------ */

static const slm_chat_info FAMILIES[SLM_CHAT_TEMPLATE_COUNT] = {
    [SLM_CHAT_CHATML] = {"chatml", false, true, {"<|im_end|>", "<|endoftext|>"}, NULL, NULL},
    [SLM_CHAT_QWEN3] = {"qwen3", false, true, {"<|im_end|>", "<|endoftext|>"}, "<think>", "</think>"},
    [SLM_CHAT_LLAMA3] = {"llama3", false, true, {"<|eot_id|>", "<|end_of_text|>"}, NULL, NULL},
    [SLM_CHAT_LLAMA2] = {"llama2", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_LLAMA2_SYS] = {"llama2-sys", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_LLAMA2_SYS_BOS] = {"llama2-sys-bos", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_LLAMA2_SYS_STRIP] = {"llama2-sys-strip", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_MISTRAL_V1] = {"mistral-v1", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_MISTRAL_V3] = {"mistral-v3", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_MISTRAL_V3_TEKKEN] = {"mistral-v3-tekken", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_MISTRAL_V7] = {"mistral-v7", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_MISTRAL_V7_TEKKEN] = {"mistral-v7-tekken", false, false, {"</s>"}, NULL, NULL},
    [SLM_CHAT_PHI3] = {"phi3", false, true, {"<|end|>", "<|endoftext|>"}, NULL, NULL},
    [SLM_CHAT_PHI4] = {"phi4", false, true, {"<|im_end|>", "<|endoftext|>"}, NULL, NULL},
    [SLM_CHAT_ZEPHYR] = {"zephyr", false, true, {"<|endoftext|>"}, NULL, NULL},
    [SLM_CHAT_GEMMA] = {"gemma", false, true, {"<end_of_turn>", "<eos>"}, NULL, NULL},
};

/* Kept in table order; a test checks it against the table. */
static const char NAMES[] = "chatml, qwen3, llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, "
                            "mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, "
                            "phi3, phi4, zephyr, gemma";

const slm_chat_info *slm_chat_template_info(slm_chat_template t) {
    return (unsigned)t < SLM_CHAT_TEMPLATE_COUNT ? &FAMILIES[t] : NULL;
}

const char *slm_chat_template_name(slm_chat_template t) {
    return (unsigned)t < SLM_CHAT_TEMPLATE_COUNT ? FAMILIES[t].name : "unknown";
}

const char *slm_chat_template_names(void) { return NAMES; }

static bool lookup_name(const char *s, size_t len, slm_chat_template *out) {
    for (int t = 0; t < SLM_CHAT_TEMPLATE_COUNT; t++) {
        const char *n = FAMILIES[t].name;
        if (strlen(n) == len && memcmp(n, s, len) == 0) {
            *out = (slm_chat_template)t;
            return true;
        }
    }
    return false;
}

slm_status slm_chat_template_from_name(const char *name, slm_chat_template *out, char *err) {
    if (!name || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "chat template: NULL argument");
    if (lookup_name(name, strlen(name), out)) return SLM_OK;
    return slm_errf(err, SLM_ERR_NOT_FOUND, "chat template \"%.64s\" is not one of: %s", name, NAMES);
}

/* ---- detection ------------------------------------------------------------------------------- */

typedef struct tmpl {
    const char *s; /* the Jinja text, borrowed */
    size_t len;    /* bytes */
} tmpl;

static bool has(const tmpl *t, const char *needle) {
    size_t nl = strlen(needle);
    if (nl > t->len) return false;
    for (size_t i = 0; i + nl <= t->len; i++) {
        if (t->s[i] == needle[0] && memcmp(t->s + i, needle, nl) == 0) return true;
    }
    return false;
}

/* A family llama.cpp recognises that slmesh does not render: its test, in chain order. */
typedef struct foreign {
    const char *a, *b; /* both must occur (b may be NULL) */
    const char *name;  /* llama.cpp's name */
} foreign;

/* The tail of llama.cpp's chain after gemma, up to (not including) llama3. */
static const foreign BEFORE_LLAMA3[] = {
    {"'\\n\\nAssistant: ' + eos_token", NULL, "orion"},
    {"GPT4 Correct ", NULL, "openchat"},
    {"USER: ", "ASSISTANT: ", "vicuna"},
    {"### Instruction:", "<|EOT|>", "deepseek"},
    {"<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "command-r"},
};

/* The rest of the chain after llama3. */
static const foreign AFTER_LLAMA3[] = {
    {"[gMASK]sop", NULL, "chatglm3"},
    {"<\xe7\x94\xa8\xe6\x88\xb7>", NULL, "minicpm"}, /* "<用户>" */
    {"'Assistant: ' + message['content'] + eos_token", NULL, "deepseek2"},
    {"<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", "<\xef\xbd\x9c" "User\xef\xbd\x9c>", "deepseek3"}, /* full-width bars */
    {"[|system|]", "[|endofturn|]", "exaone"},
    {"rwkv-world", NULL, "rwkv-world"},
    {"<|start_of_role|>", NULL, "granite"},
    {"additional_special_tokens[0]", NULL, "gigachat"},
    {"<|role_start|>", NULL, "megrez"},
    {" \xd0\x90\xd1\x81\xd1\x81\xd0\xb8\xd1\x81\xd1\x82\xd0\xb5\xd0\xbd\xd1\x82:", NULL, "yandex"}, /* " Ассистент:" */
    {"<role>ASSISTANT</role>", NULL, "bailing"},
    {"<|header_start|>", "<|header_end|>", "llama4"},
    {"<|endofuserprompt|>", NULL, "dots1"},
    {"<|startoftext|>", "<|extra_4|>", "hunyuan-moe"},
    {"<|im_assistant|>assistant<|im_middle|>", NULL, "kimi-k2"},
};

static const char *foreign_match(const tmpl *t, const foreign *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (has(t, f[i].a) && (!f[i].b || has(t, f[i].b))) return f[i].name;
    }
    return NULL;
}

/* The [INST] families (llama.cpp: template starts with "mistral" or contains "[INST]"). */
static slm_chat_template detect_inst(const tmpl *t) {
    if (has(t, "[SYSTEM_PROMPT]")) return SLM_CHAT_MISTRAL_V7;
    if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
        if (has(t, " [INST]")) return SLM_CHAT_MISTRAL_V1;
        if (has(t, "\"[INST]\"")) return SLM_CHAT_MISTRAL_V3_TEKKEN;
        return SLM_CHAT_MISTRAL_V3;
    }
    if (has(t, "content.strip()")) return SLM_CHAT_LLAMA2_SYS_STRIP;
    if (has(t, "bos_token + '[INST]")) return SLM_CHAT_LLAMA2_SYS_BOS;
    if (has(t, "<<SYS>>")) return SLM_CHAT_LLAMA2_SYS;
    return SLM_CHAT_LLAMA2;
}

/* Returns the family, or -1 with *foreign_name set (possibly to NULL: nothing matched). */
static int detect(const tmpl *t, const char **foreign_name) {
    *foreign_name = NULL;
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) return SLM_CHAT_PHI4;
        if (has(t, "<end_of_utterance>")) {
            *foreign_name = "smolvlm";
            return -1;
        }
        return has(t, "<think>") ? SLM_CHAT_QWEN3 : SLM_CHAT_CHATML;
    }
    if ((t->len >= 7 && memcmp(t->s, "mistral", 7) == 0) || has(t, "[INST]")) return detect_inst(t);
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return SLM_CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) {
        *foreign_name = "chatglm4";
        return -1;
    }
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        *foreign_name = has(t, "</s>") ? "falcon3" : "glmedge";
        return -1;
    }
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) {
        *foreign_name = "glmedge";
        return -1;
    }
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return SLM_CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']")) {
        *foreign_name = "monarch";
        return -1;
    }
    if (has(t, "<start_of_turn>")) return SLM_CHAT_GEMMA;
    *foreign_name = foreign_match(t, BEFORE_LLAMA3, sizeof BEFORE_LLAMA3 / sizeof BEFORE_LLAMA3[0]);
    if (*foreign_name) return -1;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return SLM_CHAT_LLAMA3;
    *foreign_name = foreign_match(t, AFTER_LLAMA3, sizeof AFTER_LLAMA3 / sizeof AFTER_LLAMA3[0]);
    return -1;
}

slm_status slm_chat_template_detect(const char *jinja, size_t len, slm_chat_template *out, char *err) {
    if (!out || (!jinja && len > 0)) return slm_errf(err, SLM_ERR_INVALID_ARG, "chat template: NULL argument");
    if (len > SLM_CHAT_MAX_TEMPLATE)
        return slm_errf(err, SLM_ERR_LIMIT, "chat template: %zu bytes, limit %u", len, SLM_CHAT_MAX_TEMPLATE);
    if (len == 0) return slm_errf(err, SLM_ERR_UNSUPPORTED, "chat template: empty (choose one by name: %s)", NAMES);
    if (lookup_name(jinja, len, out)) return SLM_OK;
    tmpl t = {jinja, len};
    const char *foreign_name;
    int f = detect(&t, &foreign_name);
    if (f >= 0) {
        *out = (slm_chat_template)f;
        return SLM_OK;
    }
    if (foreign_name)
        return slm_errf(err, SLM_ERR_UNSUPPORTED, "chat template family \"%s\" is not supported (choose one by name: %s)",
                        foreign_name, NAMES);
    return slm_errf(err, SLM_ERR_UNSUPPORTED, "chat template not recognised (%zu bytes; choose one by name: %s)", len,
                    NAMES);
}

slm_status slm_chat_template_from_gguf(const slm_gguf *g, slm_chat_template *out, char *err) {
    if (!g || !out) return slm_errf(err, SLM_ERR_INVALID_ARG, "chat template: NULL argument");
    slm_gguf_str js;
    slm_status st = slm_gguf_get_str(g, SLM_CHAT_GGUF_KEY, &js, NULL);
    if (st == SLM_ERR_NOT_FOUND)
        return slm_errf(err, st, "the model has no %s (choose one by name: %s)", SLM_CHAT_GGUF_KEY, NAMES);
    if (st != SLM_OK) return slm_errf(err, st, "%s: not a string", SLM_CHAT_GGUF_KEY);
    if (js.len > SLM_CHAT_MAX_TEMPLATE)
        return slm_errf(err, SLM_ERR_LIMIT, "%s: %llu bytes, limit %u", SLM_CHAT_GGUF_KEY, (unsigned long long)js.len,
                        SLM_CHAT_MAX_TEMPLATE);
    return slm_chat_template_detect(js.ptr, (size_t)js.len, out, err);
}

/* ---- validation ------------------------------------------------------------------------------- */

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

static bool parse_role(const char *s, role *r) {
    if (strcmp(s, "system") == 0) *r = ROLE_SYSTEM;
    else if (strcmp(s, "user") == 0) *r = ROLE_USER;
    else if (strcmp(s, "assistant") == 0) *r = ROLE_ASSISTANT;
    else return false;
    return true;
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). Returns the offset
 * of the first bad byte, or len when all is well. */
static size_t utf8_bad_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            if (c == 0xED) hi = 0x9F;      /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            if (c == 0xF4) hi = 0x8F;      /* above U+10FFFF */
        } else {
            return i;
        }
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
        }
        i += n;
    }
    return len;
}

/* Validate the messages; fills roles[] (the caller's array of n) and *total (content bytes). */
static slm_status validate(const slm_chat_message *msgs, size_t n, role *roles, size_t *total, char *err) {
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return slm_errf(err, SLM_ERR_INVALID_ARG, "message %zu: NULL %s", i, msgs[i].role ? "content" : "role");
        if (!parse_role(msgs[i].role, &roles[i]))
            return slm_errf(err, SLM_ERR_INVALID_ARG, "message %zu: role \"%.32s\" is not system, user or assistant", i,
                            msgs[i].role);
        size_t l = strnlen(msgs[i].content, SLM_CHAT_MAX_BYTES + 1);
        sum += l; /* each l <= SLM_CHAT_MAX_BYTES + 1 and n <= 4096: no overflow */
        if (sum > SLM_CHAT_MAX_BYTES)
            return slm_errf(err, SLM_ERR_LIMIT, "messages: more than %u bytes of content (at message %zu)",
                            SLM_CHAT_MAX_BYTES, i);
        size_t bad = utf8_bad_at((const unsigned char *)msgs[i].content, l);
        if (bad < l) return slm_errf(err, SLM_ERR_UTF8, "message %zu: invalid UTF-8 at byte %zu", i, bad);
    }
    *total = sum;
    return SLM_OK;
}

/* ---- output buffer ---------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;    /* slm_malloc'd, NUL-terminated when ok */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    bool oom;   /* an append failed; everything after is dropped */
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) { /* len, n <= SLM_CHAT_MAX_BYTES-ish: no overflow */
        size_t cap = b->cap * 2 > b->len + n + 1 ? b->cap * 2 : b->len + n + 1;
        char *np = slm_realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

/* ASCII whitespace, as C's isspace in the "C" locale (llama.cpp's trim). */
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static void put_trimmed(sbuf *b, const char *s) {
    size_t start = 0, end = strlen(s);
    while (start < end && is_space(s[start])) start++;
    while (end > start && is_space(s[end - 1])) end--;
    put_n(b, s + start, end - start);
}

/* Message content, trimmed or as given. */
static void put_content(sbuf *b, const char *s, bool trim) {
    if (trim) put_trimmed(b, s);
    else put(b, s);
}

/* ---- renderers (one per family shape; llama.cpp's llm_chat_apply_template) ------------------------ */

typedef struct conv {
    const slm_chat_message *m; /* messages */
    const role *r;             /* their parsed roles */
    size_t n;                  /* count */
    bool add_ass;              /* end with the assistant's header */
} conv;

/* Families of the form  OPEN role MID content CLOSE ... [OPEN assistant MID]. */
static void render_simple(sbuf *b, const conv *c, const char *open, const char *mid, const char *close, bool trim) {
    for (size_t i = 0; i < c->n; i++) {
        put(b, open);
        put(b, c->m[i].role);
        put(b, mid);
        put_content(b, c->m[i].content, trim);
        put(b, close);
    }
    if (c->add_ass) {
        put(b, open);
        put(b, "assistant");
        put(b, mid);
    }
}

static void render_llama2(sbuf *b, const conv *c, slm_chat_template t) {
    const bool sys = t != SLM_CHAT_LLAMA2;
    const bool bos_inside = t == SLM_CHAT_LLAMA2_SYS_BOS;
    const bool strip = t == SLM_CHAT_LLAMA2_SYS_STRIP;
    bool inside = true; /* the first [INST] is written up front; BOS is the tokenizer's */
    put(b, "[INST] ");
    for (size_t i = 0; i < c->n; i++) {
        if (!inside) {
            inside = true;
            put(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        const char *content = c->m[i].content;
        switch (c->r[i]) {
        case ROLE_SYSTEM:
            if (sys) put(b, "<<SYS>>\n");
            put_content(b, content, strip);
            put(b, sys ? "\n<</SYS>>\n\n" : "\n");
            break;
        case ROLE_USER:
            put_content(b, content, strip);
            put(b, " [/INST]");
            break;
        case ROLE_ASSISTANT:
            put_content(b, content, strip);
            put(b, "</s>");
            inside = false;
            break;
        }
    }
}

static void render_mistral(sbuf *b, const conv *c, slm_chat_template t) {
    const char *lead = t == SLM_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == SLM_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    const bool trim_assistant = t == SLM_CHAT_MISTRAL_V3;
    bool inside = false;
    for (size_t i = 0; i < c->n; i++) {
        if (!inside) {
            put(b, lead);
            put(b, "[INST]");
            put(b, trail);
            inside = true;
        }
        switch (c->r[i]) {
        case ROLE_SYSTEM:
            put(b, c->m[i].content);
            put(b, "\n\n");
            break;
        case ROLE_USER:
            put(b, c->m[i].content);
            put(b, lead);
            put(b, "[/INST]");
            break;
        case ROLE_ASSISTANT:
            put(b, trail);
            put_content(b, c->m[i].content, trim_assistant);
            put(b, "</s>");
            inside = false;
            break;
        }
    }
}

static void render_mistral_v7(sbuf *b, const conv *c, slm_chat_template t) {
    const char *sp = t == SLM_CHAT_MISTRAL_V7 ? " " : "";
    for (size_t i = 0; i < c->n; i++) {
        switch (c->r[i]) {
        case ROLE_SYSTEM:
            put(b, "[SYSTEM_PROMPT]");
            put(b, sp);
            put(b, c->m[i].content);
            put(b, "[/SYSTEM_PROMPT]");
            break;
        case ROLE_USER:
            put(b, "[INST]");
            put(b, sp);
            put(b, c->m[i].content);
            put(b, "[/INST]");
            break;
        case ROLE_ASSISTANT:
            put(b, sp);
            put(b, c->m[i].content);
            put(b, "</s>");
            break;
        }
    }
}

/* Gemma has no system turn: system text (trimmed, concatenated) opens the next user turn. */
static void render_gemma(sbuf *b, const conv *c) {
    size_t sys_from = 0, sys_n = 0; /* pending system messages: indices [sys_from, sys_from + n) */
    for (size_t i = 0; i < c->n; i++) {
        if (c->r[i] == ROLE_SYSTEM) {
            if (sys_n == 0) sys_from = i;
            sys_n = i - sys_from + 1;
            continue;
        }
        const bool model = c->r[i] == ROLE_ASSISTANT;
        put(b, "<start_of_turn>");
        put(b, model ? "model" : c->m[i].role);
        put(b, "\n");
        if (!model && sys_n > 0) {
            size_t before = b->len;
            for (size_t k = sys_from; k < sys_from + sys_n; k++) {
                if (c->r[k] == ROLE_SYSTEM) put_trimmed(b, c->m[k].content);
            }
            if (b->len > before) put(b, "\n\n"); /* llama.cpp: only when the text is not empty */
            sys_n = 0;
        }
        put_trimmed(b, c->m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (c->add_ass) put(b, "<start_of_turn>model\n");
}

static void render(sbuf *b, const conv *c, slm_chat_template t, int flags) {
    switch (t) {
    case SLM_CHAT_CHATML:
    case SLM_CHAT_QWEN3:
        render_simple(b, c, "<|im_start|>", "\n", "<|im_end|>\n", false);
        if (t == SLM_CHAT_QWEN3 && c->add_ass && (flags & SLM_CHAT_THINK_OFF)) put(b, "<think>\n\n</think>\n\n");
        break;
    case SLM_CHAT_LLAMA3:
        render_simple(b, c, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true);
        break;
    case SLM_CHAT_LLAMA2:
    case SLM_CHAT_LLAMA2_SYS:
    case SLM_CHAT_LLAMA2_SYS_BOS:
    case SLM_CHAT_LLAMA2_SYS_STRIP:
        render_llama2(b, c, t);
        break;
    case SLM_CHAT_MISTRAL_V1:
    case SLM_CHAT_MISTRAL_V3:
    case SLM_CHAT_MISTRAL_V3_TEKKEN:
        render_mistral(b, c, t);
        break;
    case SLM_CHAT_MISTRAL_V7:
    case SLM_CHAT_MISTRAL_V7_TEKKEN:
        render_mistral_v7(b, c, t);
        break;
    case SLM_CHAT_PHI3:
        render_simple(b, c, "<|", "|>\n", "<|end|>\n", false);
        break;
    case SLM_CHAT_PHI4:
        render_simple(b, c, "<|im_start|>", "<|im_sep|>", "<|im_end|>", false);
        break;
    case SLM_CHAT_ZEPHYR:
        render_simple(b, c, "<|", "|>\n", "<|endoftext|>\n", false);
        break;
    case SLM_CHAT_GEMMA:
        render_gemma(b, c);
        break;
    case SLM_CHAT_TEMPLATE_COUNT:
        break;
    }
}

/* SLM_CHAT_STRIP_THINK: in v (a copy of the messages), assistant contents before the last
 * user message (all of them when there is none, as in Qwen3's template) start after their
 * last `close` tag and its newlines. Contents stay suffixes of the caller's strings. */
static void strip_past_thinking(slm_chat_message *v, const role *r, size_t n, const char *close) {
    size_t limit = n;
    for (size_t i = n; i-- > 0;) {
        if (r[i] == ROLE_USER) {
            limit = i;
            break;
        }
    }
    const size_t cl = strlen(close);
    for (size_t i = 0; i < limit; i++) {
        if (r[i] != ROLE_ASSISTANT) continue;
        const char *after = NULL;
        for (const char *p = strstr(v[i].content, close); p; p = strstr(p + 1, close)) after = p + cl;
        if (!after) continue;
        while (*after == '\n') after++;
        v[i].content = after;
    }
}

slm_status slm_chat_render(slm_chat_template t, const slm_chat_message *msgs, size_t n, int flags, char **out,
                           size_t *out_len, char *err) {
    if (!out || !out_len || (n > 0 && !msgs)) return slm_errf(err, SLM_ERR_INVALID_ARG, "chat render: NULL argument");
    *out = NULL;
    *out_len = 0;
    if ((unsigned)t >= SLM_CHAT_TEMPLATE_COUNT)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "chat render: template %d out of range", (int)t);
    if (n > SLM_CHAT_MAX_MESSAGES)
        return slm_errf(err, SLM_ERR_LIMIT, "chat render: %zu messages, limit %d", n, SLM_CHAT_MAX_MESSAGES);
    const char *think_close = FAMILIES[t].think_close;
    const bool strip = (flags & SLM_CHAT_STRIP_THINK) && think_close;
    slm_chat_message *view = NULL; /* owned: msgs with past reasoning stripped (strip only) */
    role *r = slm_malloc((n > 0 ? n : 1) * sizeof *r); /* n <= SLM_CHAT_MAX_MESSAGES: no overflow */
    if (!r) return slm_errf(err, SLM_ERR_NOMEM, "chat render: out of memory");
    size_t total = 0;
    slm_status st = validate(msgs, n, r, &total, err);
    if (st != SLM_OK) goto done;
    if (strip && n > 0) {
        view = slm_malloc(n * sizeof *view);
        if (!view) {
            st = slm_errf(err, SLM_ERR_NOMEM, "chat render: out of memory");
            goto done;
        }
        memcpy(view, msgs, n * sizeof *view);
        strip_past_thinking(view, r, n, think_close);
        msgs = view;
    }
    /* A first guess at the markup per message; longer markup (llama3's headers) grows it. */
    sbuf b = {NULL, 0, 0, false};
    b.cap = total + MARKUP_GUESS * (n + 1);
    b.p = slm_malloc(b.cap);
    if (!b.p) {
        st = slm_errf(err, SLM_ERR_NOMEM, "chat render: out of memory");
        goto done;
    }
    b.p[0] = '\0';
    conv c = {msgs, r, n, (flags & SLM_CHAT_ADD_GENERATION_PROMPT) != 0};
    render(&b, &c, t, flags);
    if (b.oom) {
        slm_free(b.p);
        st = slm_errf(err, SLM_ERR_NOMEM, "chat render: out of memory");
        goto done;
    }
    *out = b.p;
    *out_len = b.len;
done:
    slm_free(view);
    slm_free(r);
    return st;
}
