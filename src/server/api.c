/*
 * server/api.c: the OpenAI endpoints over the scheduler: /v1/chat/completions,
 * /v1/completions and /v1/embeddings. Each handler validates every field it reads (type,
 * range, named limits) and answers 400 naming the parameter; fields that would change the
 * meaning of a request and that slmesh does not implement (tools, logit_bias, ...) are
 * refused rather than ignored. response_format json_object / json_schema, or one of the
 * llama-server / vLLM fields ("grammar", "regex", "json_schema", "guided_regex",
 * "guided_json"), becomes a grammar (compiled once per distinct text in the
 * server's grammar cache; a schema keyword the grammar module cannot enforce, or a syntax
 * error, is a 400 naming it) that every choice's scheduler request carries. Then it holds
 * the model, tokenizes, submits one scheduler request per choice and either waits (JSON) or
 * hands the job to the connection (SSE).
 *
 * Thread-safety: handlers run on connection threads; shared state is the registry's.
 * Non-goals: tools/function calling, logit_bias, images/audio, best_of > n, suffix.
 * Ownership: gen_opts.gen.grammar is a reference held for the handler's duration (the
 * scheduler retains its own per request).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "server/job.h"

#define API_DEFAULT_COMPLETION_TOKENS 16  /* OpenAI's default max_tokens for /v1/completions */
#define API_TOKENS_SLACK              16  /* tokenizer output beyond one token per byte (BOS, specials) */
#define API_MAX_STOP_LEN              256 /* bytes per stop string (the sampler's SLM_SAMPLE_STOP_MAX_LEN) */
#define API_MAX_STOPS (SLM_GEN_MAX_STOP - SLM_CHAT_MAX_STOPS) /* a request's; the template's end-of-turn
                                                                 strings take the rest */

/* ---- errors --------------------------------------------------------------------------------- */

void slm_server_api_error(slm_server_reply *rep, int status, const char *type, const char *param, const char *code,
                          const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", msg, "type", type, "param", param, "code", code);
    if (!e) e = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", "error", "type", type, "param", "code");
    slm_free(rep->body);
    rep->body = json_dumps(e, JSON_COMPACT);
    rep->body_len = rep->body ? strlen(rep->body) : 0;
    rep->status = status;
    json_decref(e);
}

#define BAD(rep, param, ...) slm_server_api_error((rep), 400, "invalid_request_error", (param), NULL, __VA_ARGS__)

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t k;
    uint32_t cp, min;
    if ((s[0] & 0xE0) == 0xC0) k = 1, cp = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) k = 2, cp = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) k = 3, cp = s[0] & 0x07, min = 0x10000;
    else return 0;
    if (k >= n) return 0;
    for (size_t j = 1; j <= k; j++) {
        if ((s[j] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k + 1;
}

bool slm_server_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_seq(s + i, n - i))) return false;
    return true;
}

json_t *slm_server_json_text(const char *text, size_t n) {
    if (!text) return json_string("");
    if (slm_server_utf8_valid(text, n)) return json_stringn(text, n);
    size_t cap = n * 3 + 1, w = 0; /* each bad byte becomes U+FFFD (3 bytes) */
    char *b = slm_malloc(cap);
    if (!b) return json_string("");
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        const size_t k = utf8_seq(s + i, n - i);
        if (k) {
            memcpy(b + w, s + i, k), w += k, i += k;
        } else {
            memcpy(b + w, "\xEF\xBF\xBD", 3), w += 3, i++;
        }
    }
    json_t *j = json_stringn(b, w);
    slm_free(b);
    return j;
}

/* ---- field readers: 0 absent (or null), 1 read, -1 bad (rep filled) ----------------------------- */

static int get_number(json_t *body, const char *key, double lo, double hi, double *out, slm_server_reply *rep) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD(rep, key, "'%s' must be a number", key), -1;
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return BAD(rep, key, "'%s' is %g; it must be in [%g, %g]", key, x, lo, hi), -1;
    *out = x;
    return 1;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, slm_server_reply *rep) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return BAD(rep, key, "'%s' must be an integer", key), -1;
    const long long x = json_integer_value(v);
    if (x < lo || x > hi) return BAD(rep, key, "'%s' is %lld; it must be in [%lld, %lld]", key, x, lo, hi), -1;
    *out = x;
    return 1;
}

static int get_bool(json_t *body, const char *key, bool *out, slm_server_reply *rep) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD(rep, key, "'%s' must be a boolean", key), -1;
    *out = json_is_true(v);
    return 1;
}

/* ---- the generation parameters shared by chat and completions ---------------------------------- */

typedef struct gen_opts {
    slm_gen_params gen;
    const char *stops[SLM_GEN_MAX_STOP]; /* borrowed from the body */
    int32_t n_stop;
    int32_t n;
    bool seeded;
    bool stream, include_usage, logprobs, echo;
    int32_t n_top;
} gen_opts;

/* Fields that change what a request means and that slmesh does not do. */
static bool refuse_unsupported(json_t *body, slm_server_reply *rep) {
    static const char *const fields[] = {"tools",      "tool_choice", "functions",     "function_call",
                                         "logit_bias", "suffix",      "audio",         "prediction",
                                         "guided_choice", "guided_grammar"}; /* vLLM's: use regex / grammar */
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) { /* null, [] and {} mean "none" */
        json_t *v = json_object_get(body, fields[i]);
        if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0) &&
            !(json_is_object(v) && json_object_size(v) == 0))
            return BAD(rep, fields[i], "'%s' is not supported by this server", fields[i]), false;
    }
    json_t *mod = json_object_get(body, "modalities");
    if (mod && !json_is_null(mod)) {
        size_t i;
        json_t *v;
        if (!json_is_array(mod)) return BAD(rep, "modalities", "'modalities' must be an array"), false;
        json_array_foreach(mod, i, v) if (!json_is_string(v) || strcmp(json_string_value(v), "text"))
            return BAD(rep, "modalities", "only the \"text\" modality is supported"), false;
    }
    return true;
}

#define RF "response_format"

/* response_format: {"type":"text"} (nothing), {"type":"json_object"}, or {"type":"json_schema",
 * "json_schema":{"name","schema","strict"}}; the grammar (a new reference) goes to o->gen.grammar. */
static bool parse_response_format(slm_grammar_cache *gc, json_t *body, gen_opts *o, slm_server_reply *rep) {
    json_t *rf = json_object_get(body, RF);
    if (!rf || json_is_null(rf)) return true;
    const char *t = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !t)
        return BAD(rep, RF, "'response_format' must be an object with 'type' \"text\", \"json_object\" or \"json_schema\""),
               false;
    if (!strcmp(t, "text")) return true;
    char err[SLM_ERR_LEN] = "";
    slm_status st;
    if (!strcmp(t, "json_object")) {
        st = slm_grammar_cache_get(gc, SLM_GRAMMAR_JSON_OBJECT, "", 0, &o->gen.grammar, NULL, err);
    } else if (!strcmp(t, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return BAD(rep, RF, "'response_format.json_schema' must be an object with 'name' and 'schema'"), false;
        json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
        if (name && !json_is_string(name)) return BAD(rep, RF, "'response_format.json_schema.name' must be a string"), false;
        if (strict && !json_is_null(strict) && !json_is_boolean(strict))
            return BAD(rep, RF, "'response_format.json_schema.strict' must be a boolean"), false;
        json_t *schema = json_object_get(js, "schema");
        if (!json_is_object(schema))
            return BAD(rep, RF, "'response_format.json_schema.schema' must be a JSON Schema object"), false;
        /* the canonical text is the compact dump (member order kept: it orders the output) */
        char *src = json_dumps(schema, JSON_COMPACT);
        if (!src) return slm_server_api_error(rep, 500, "server_error", NULL, NULL, "out of memory"), false;
        st = slm_grammar_cache_get(gc, SLM_GRAMMAR_JSON_SCHEMA, src, strlen(src), &o->gen.grammar, NULL, err);
        free(src);
    } else {
        return BAD(rep, RF, "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\""), false;
    }
    if (st == SLM_ERR_NOMEM) return slm_server_api_error(rep, 500, "server_error", NULL, NULL, "out of memory"), false;
    if (st) return BAD(rep, RF, "response_format.json_schema.schema: %s", err), false;
    return true;
}

/* The other ways clients ask for a grammar, compiled through the same cache as
 * response_format and exclusive with it and with each other: llama-server's "grammar"
 * (GBNF text), "regex" (the whole output must match) and top-level "json_schema" (a schema
 * object); vLLM's "guided_regex" and "guided_json" (a schema object or its JSON text).
 * null and "" mean none (llama-server's default grammar is ""). */
static bool parse_grammar_fields(slm_grammar_cache *gc, json_t *body, gen_opts *o, slm_server_reply *rep) {
    static const struct {
        const char *field;
        slm_grammar_kind kind;
        bool text, object; /* the value may be the grammar's text / a JSON Schema object */
    } f[] = {{"grammar", SLM_GRAMMAR_GBNF, true, false},
             {"regex", SLM_GRAMMAR_REGEX, true, false},
             {"guided_regex", SLM_GRAMMAR_REGEX, true, false},
             {"json_schema", SLM_GRAMMAR_JSON_SCHEMA, false, true},
             {"guided_json", SLM_GRAMMAR_JSON_SCHEMA, true, true}};
    const char *by = o->gen.grammar ? RF : NULL; /* the field that set the grammar */
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        json_t *v = json_object_get(body, f[i].field);
        if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) continue;
        const bool object = f[i].object && json_is_object(v);
        if (!object && !(f[i].text && json_is_string(v)))
            return BAD(rep, f[i].field, "'%s' must be %s", f[i].field, f[i].object ? "a JSON Schema object" : "a string"),
                   false;
        if (by) return BAD(rep, f[i].field, "'%s' cannot be combined with '%s'", f[i].field, by), false;
        /* an object's compact text (member order kept: it orders the output), owned */
        char *dumped = object ? json_dumps(v, JSON_COMPACT) : NULL;
        if (object && !dumped) return slm_server_api_error(rep, 500, "server_error", NULL, NULL, "out of memory"), false;
        const char *text = object ? dumped : json_string_value(v);
        const size_t len = object ? strlen(dumped) : json_string_length(v); /* a string may hold NULs */
        char err[SLM_ERR_LEN] = "";
        slm_status st = slm_grammar_cache_get(gc, f[i].kind, text, len, &o->gen.grammar, NULL, err);
        free(dumped);
        if (st == SLM_ERR_NOMEM) return slm_server_api_error(rep, 500, "server_error", NULL, NULL, "out of memory"), false;
        if (st) return BAD(rep, f[i].field, "%s: %s", f[i].field, err), false;
        by = f[i].field;
    }
    return true;
}

static bool parse_gen(const slm_server_api *a, const slm_server_model *m, json_t *body, bool chat, gen_opts *o,
                      slm_server_reply *rep) {
    const slm_server_config *cfg = a->cfg;
    memset(o, 0, sizeof *o);
    o->gen.sampling = m->cfg->sampling;
    slm_sampling *s = &o->gen.sampling;
    const long long max_tok = cfg->max_tokens > 0 ? cfg->max_tokens : SLM_SERVER_MAX_TOKENS;
    long long mt = chat ? max_tok : API_DEFAULT_COMPLETION_TOKENS, n = 1, seed = 0, top = 0;
    double d;
    int r;
    if (!refuse_unsupported(body, rep)) return false;
    if (!parse_response_format(a->grammars, body, o, rep)) return false;
    if (!parse_grammar_fields(a->grammars, body, o, rep)) return false;
    char gerr[SLM_ERR_LEN] = ""; /* a new grammar's token tables, here rather than on the engine thread */
    if (o->gen.grammar && slm_grammar_cache_prepare(a->grammars, o->gen.grammar, m->m, gerr))
        return slm_server_api_error(rep, 500, "server_error", NULL, NULL, "%s", gerr), false;
    if ((r = get_int(body, "max_tokens", chat ? 1 : 0, max_tok, &mt, rep)) < 0) return false;
    if (chat && (r = get_int(body, "max_completion_tokens", 1, max_tok, &mt, rep)) < 0) return false;
    o->gen.max_tokens = (int32_t)mt;
    if ((r = get_number(body, "temperature", 0, 2, &d, rep)) < 0) return false;
    if (r) s->temperature = (float)d;
    if ((r = get_number(body, "top_p", 0, 1, &d, rep)) < 0) return false;
    if (r) s->top_p = d > 0 ? (float)d : 1e-9f;
    if ((r = get_number(body, "min_p", 0, 1, &d, rep)) < 0) return false;
    if (r) s->min_p = (float)d;
    long long tk;
    if ((r = get_int(body, "top_k", 0, 1 << 20, &tk, rep)) < 0) return false;
    if (r) s->top_k = (int32_t)tk;
    if ((r = get_number(body, "presence_penalty", -2, 2, &d, rep)) < 0) return false;
    if (r) s->presence_penalty = (float)d;
    if ((r = get_number(body, "frequency_penalty", -2, 2, &d, rep)) < 0) return false;
    if (r) s->frequency_penalty = (float)d;
    if ((r = get_number(body, "repeat_penalty", 0.01, 10, &d, rep)) < 0) return false;
    if (r) s->repeat_penalty = (float)d;
    if ((r = get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, rep)) < 0) return false;
    o->seeded = r == 1;
    s->seed = r ? (uint64_t)seed : ((uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull) ^ (uint64_t)clock();
    const long long max_n = cfg->max_n > 0 ? cfg->max_n : SLM_SERVER_MAX_N;
    if ((r = get_int(body, "n", 1, max_n, &n, rep)) < 0) return false;
    o->n = (int32_t)n;
    long long best_of = n;
    if (!chat && (r = get_int(body, "best_of", 1, max_n, &best_of, rep)) < 0) return false;
    if (best_of != n) return BAD(rep, "best_of", "'best_of' other than n is not supported"), false;
    if (get_bool(body, "stream", &o->stream, rep) < 0) return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return BAD(rep, "stream_options", "'stream_options' must be an object"), false;
        if (get_bool(so, "include_usage", &o->include_usage, rep) < 0) return false;
    }
    json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) o->stops[o->n_stop++] = json_string_value(stop);
        else if (json_is_array(stop) && json_array_size(stop) <= API_MAX_STOPS) {
            size_t i;
            json_t *v;
            json_array_foreach(stop, i, v) {
                if (!json_is_string(v)) return BAD(rep, "stop", "'stop' entries must be strings"), false;
                o->stops[o->n_stop++] = json_string_value(v);
            }
        } else return BAD(rep, "stop", "'stop' must be a string or an array of at most %d strings", API_MAX_STOPS), false;
        for (int32_t i = 0; i < o->n_stop; i++)
            if (!*o->stops[i] || strlen(o->stops[i]) > API_MAX_STOP_LEN)
                return BAD(rep, "stop", "stop strings must be 1..%d bytes", API_MAX_STOP_LEN), false;
    }
    if (chat) { /* the template's end-of-turn strings end generation too (as `slmesh chat`); not
                   under a grammar, which decides the end itself (they could only cut it) */
        const slm_chat_info *info = o->gen.grammar ? NULL : slm_chat_template_info(m->tpl);
        for (int32_t i = 0; info && i < SLM_CHAT_MAX_STOPS && info->stops[i]; i++) o->stops[o->n_stop++] = info->stops[i];
        if (get_bool(body, "logprobs", &o->logprobs, rep) < 0) return false;
        if ((r = get_int(body, "top_logprobs", 0, SLM_GEN_MAX_TOP, &top, rep)) < 0) return false;
        if (r && !o->logprobs) return BAD(rep, "top_logprobs", "'top_logprobs' needs 'logprobs': true"), false;
    } else {
        if ((r = get_int(body, "logprobs", 0, SLM_GEN_MAX_TOP, &top, rep)) < 0) return false;
        o->logprobs = r == 1;
        if (get_bool(body, "echo", &o->echo, rep) < 0) return false;
    }
    o->n_top = (int32_t)top;
    o->gen.n_top = o->n_top;
    return true;
}

/* ---- tokens --------------------------------------------------------------------------------- */

static slm_status tokenize(const slm_model *m, const char *text, size_t len, int flags, int32_t **ids, size_t *n) {
    size_t cap = len + API_TOKENS_SLACK;
    *ids = slm_malloc(cap * sizeof **ids);
    if (!*ids) return SLM_ERR_NOMEM;
    slm_status st = slm_model_tokenize(m, text, len, flags, *ids, cap, n, NULL);
    if (st == SLM_ERR_FULL) {
        int32_t *b = slm_realloc(*ids, *n * sizeof **ids);
        if (!b) return SLM_ERR_NOMEM;
        *ids = b;
        st = slm_model_tokenize(m, text, len, flags, *ids, *n, n, NULL);
    }
    return st;
}

static bool check_prompt_len(const slm_server_config *cfg, const slm_server_model *m, size_t n, const char *param,
                             slm_server_reply *rep) {
    size_t limit = (size_t)m->n_ctx_slot;
    if (cfg->max_prompt_tokens > 0 && (size_t)cfg->max_prompt_tokens < limit) limit = (size_t)cfg->max_prompt_tokens;
    if (n > limit) {
        slm_server_api_error(rep, 400, "invalid_request_error", param, "context_length_exceeded",
                             "This model's maximum context length is %zu tokens, but the prompt has %zu tokens. "
                             "Shorten the prompt.", limit, n);
        return false;
    }
    if (n == 0) return BAD(rep, param, "the prompt is empty"), false;
    return true;
}

/* ---- chat ------------------------------------------------------------------------------------ */

/* Render the messages with the model's template into *text (malloc'd). */
static bool chat_prompt(const slm_server_config *cfg, const slm_server_model *m, json_t *body, char **text, size_t *len,
                        slm_server_reply *rep) {
    json_t *msgs = json_object_get(body, "messages");
    const size_t max_msgs = cfg->max_messages > 0 ? (size_t)cfg->max_messages : SLM_SERVER_MAX_MESSAGES;
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return BAD(rep, "messages", "'messages' must be a non-empty array"), false;
    if (json_array_size(msgs) > max_msgs)
        return BAD(rep, "messages", "%zu messages exceed the limit of %zu", json_array_size(msgs), max_msgs), false;
    const size_t n = json_array_size(msgs);
    slm_chat_message *cm = slm_calloc(n, sizeof *cm);
    char **owned = slm_calloc(n, sizeof *owned);
    bool ok = cm && owned;
    if (!ok) slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *msg = json_array_get(msgs, i);
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (!json_is_object(msg) || !role) {
            ok = false, BAD(rep, param, "%s must be an object with a string 'role'", param);
            break;
        }
        if (!strcmp(role, "developer")) role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            ok = false, BAD(rep, param, "%s: role '%s' is not supported (system, developer, user, assistant)", param, role);
            break;
        }
        if (json_object_get(msg, "tool_calls") && !json_is_null(json_object_get(msg, "tool_calls"))) {
            ok = false, BAD(rep, param, "%s: tool calls are not supported", param);
            break;
        }
        json_t *content = json_object_get(msg, "content");
        cm[i].role = role;
        if (json_is_string(content)) {
            cm[i].content = json_string_value(content);
        } else if (json_is_array(content)) { /* content parts: text only */
            char *b = NULL;
            size_t bl = 0, bc = 0;
            size_t k;
            json_t *part;
            slm_server_appendf(&b, &bl, &bc, "%s", "");
            json_array_foreach(content, k, part) {
                const char *type = json_string_value(json_object_get(part, "type"));
                const char *t = json_string_value(json_object_get(part, "text"));
                if (!type || strcmp(type, "text") || !t) {
                    ok = false, BAD(rep, param, "%s: only text content parts are supported", param);
                    break;
                }
                slm_server_appendf(&b, &bl, &bc, "%s", t);
            }
            owned[i] = b;
            cm[i].content = b ? b : "";
        } else if (json_is_null(content) && !strcmp(role, "assistant")) {
            cm[i].content = "";
        } else {
            ok = false, BAD(rep, param, "%s: 'content' must be a string or an array of text parts", param);
        }
    }
    if (ok) {
        char err[SLM_ERR_LEN] = "";
        const slm_status st = slm_chat_render(m->tpl, cm, n, SLM_CHAT_ADD_GENERATION_PROMPT, text, len, err);
        if (st) ok = false, BAD(rep, "messages", "%s", err);
    }
    for (size_t i = 0; owned && i < n; i++) slm_free(owned[i]);
    slm_free(owned);
    slm_free(cm);
    return ok;
}

/* ---- completions prompts --------------------------------------------------------------------- */

/* Read one prompt (string or token ids) into pr. */
static bool check_prompt_len(const slm_server_config *cfg, const slm_server_model *m, size_t n, const char *param,
                             slm_server_reply *rep);

static bool read_prompt(const slm_server_config *cfg, const slm_server_model *m, json_t *v, const char *param,
                        slm_server_prompt *pr, int flags, slm_server_reply *rep) {
    slm_model_desc d;
    slm_model_describe(m->m, &d);
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        const size_t len = json_string_length(v);
        if (!(pr->text = slm_strndup(t, len))) return slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory"), false;
        if (tokenize(m->m, t, len, flags, &pr->ids, &pr->n_ids))
            return BAD(rep, param, "%s could not be tokenized", param), false;
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return BAD(rep, param, "%s must be a string or a non-empty array of token ids", param), false;
    const size_t n = json_array_size(v);
    if (!check_prompt_len(cfg, m, n, param, rep)) return false; /* before allocating for it */
    if (!(pr->ids = slm_malloc(n * sizeof *pr->ids))) return slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory"), false;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(v, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= d.n_vocab)
            return BAD(rep, param, "%s[%zu] must be a token id in [0, %d)", param, i, d.n_vocab), false;
        pr->ids[i] = (int32_t)json_integer_value(t);
    }
    pr->n_ids = n;
    char *buf = slm_malloc(n * 64 + 1);
    if (buf) {
        size_t w = slm_model_detokenize(m->m, pr->ids, n, buf, n * 64);
        if (w > n * 64 || !slm_server_utf8_valid(buf, w)) w = 0;
        buf[w] = '\0';
    }
    pr->text = buf;
    return true;
}

/* 'prompt' (or embeddings' 'input'): string, array of strings, token ids, arrays of ids. */
static bool read_prompts(const slm_server_config *cfg, const slm_server_model *m, json_t *body, const char *key,
                         int flags, slm_server_job *j, slm_server_reply *rep) {
    json_t *p = json_object_get(body, key);
    json_t *list[SLM_SERVER_MAX_PROMPTS];
    size_t n = 0;
    if (json_is_string(p) || (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0)))) {
        list[n++] = p;
    } else if (json_is_array(p) && json_array_size(p) > 0) {
        if (json_array_size(p) > SLM_SERVER_MAX_PROMPTS)
            return BAD(rep, key, "'%s' has %zu entries; the limit is %d", key, json_array_size(p), SLM_SERVER_MAX_PROMPTS), false;
        for (size_t i = 0; i < json_array_size(p); i++) list[n++] = json_array_get(p, i);
    } else {
        return BAD(rep, key, "'%s' must be a string, an array of strings, or token ids", key), false;
    }
    j->prompts = slm_calloc(n, sizeof *j->prompts);
    if (!j->prompts) return slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory"), false;
    j->spec.n_prompts = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        char param[48];
        snprintf(param, sizeof param, n > 1 ? "%s[%zu]" : "%s", key, i);
        if (!read_prompt(cfg, m, list[i], param, &j->prompts[i], flags, rep)) return false;
        if (!check_prompt_len(cfg, m, j->prompts[i].n_ids, param, rep)) return false;
    }
    return true;
}

/* ---- handlers -------------------------------------------------------------------------------- */

typedef struct handle_ctx {
    slm_server_api *a;
    const slm_server_model *m;
    slm_server_job *j;
} handle_ctx;

/* Submit every choice; on failure answer 429/503/400 and cancel what went in. */
static bool submit_all(slm_server_api *a, slm_server_job *j, const gen_opts *o, bool embed, slm_server_reply *rep) {
    const double deadline = a->cfg->timeout_s > 0 ? slm_sched_now_ms() + a->cfg->timeout_s * 1e3 : 0;
    for (int32_t ci = 0; ci < j->spec.n_choices; ci++) {
        const slm_server_prompt *pr = &j->prompts[ci / j->spec.n_per_prompt];
        slm_sched_request rq = {.prompt = pr->ids, .n_prompt = pr->n_ids, .embed = embed, .deadline_ms = deadline};
        if (!embed) {
            rq.gen = o->gen;
            rq.gen.stop = o->stops;
            rq.gen.n_stop = o->n_stop;
            rq.gen.sampling.seed = o->gen.sampling.seed + (uint64_t)(ci % j->spec.n_per_prompt);
            rq.prompt_logprobs = rq.gen.max_tokens == 0 || (o->echo && o->logprobs);
        }
        char err[SLM_ERR_LEN] = "";
        const slm_status st = slm_server_job_submit(j, ci, &rq, err);
        if (st == SLM_OK) continue;
        slm_server_job_cancel(j, ci);
        slm_server_job_wait(j, NULL, NULL);
        if (st == SLM_ERR_FULL && strstr(err, "queue"))
            slm_server_api_error(rep, 429, "rate_limit_error", NULL, "queue_full", "The server is busy: %s; retry later", err);
        else if (st == SLM_ERR_STATE)
            slm_server_api_error(rep, 503, "server_error", NULL, "shutting_down", "%s", err);
        else BAD(rep, NULL, "%s", err);
        return false;
    }
    return true;
}

static void fill_log(slm_server_job *j, slm_server_reply *rep) {
    slm_server_job_totals(j, &rep->prompt_tokens, &rep->gen_tokens, &rep->cached_tokens, &rep->ttft_ms);
}

/* A failed choice (engine error) makes the whole answer an error. */
static bool choices_ok(slm_server_job *j, slm_server_reply *rep) {
    for (int32_t i = 0; i < j->spec.n_choices; i++) {
        const slm_sched_result *r = &j->ch[i].res;
        if (r->status == SLM_OK || r->status == SLM_ERR_CANCELLED) continue;
        if (r->status == SLM_ERR_FULL)
            slm_server_api_error(rep, 503, "server_error", NULL, "overloaded", "no room in the KV cache: %s", r->err);
        else slm_server_api_error(rep, 500, "server_error", NULL, NULL, "generation failed: %s", r->err);
        return false;
    }
    return true;
}

static void reply_json(slm_server_reply *rep, json_t *o) {
    rep->body = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    rep->body_len = rep->body ? strlen(rep->body) : 0;
    rep->status = rep->body ? 200 : 500;
    json_decref(o);
}

static void embed_reply(slm_server_job *j, json_t *body, slm_server_reply *rep) {
    const char *fmt = json_string_value(json_object_get(body, "encoding_format"));
    const bool b64 = fmt && !strcmp(fmt, "base64");
    slm_model_desc d;
    slm_model_describe(j->spec.model->m, &d);
    const int32_t ne = d.n_embd;
    json_t *data = json_array();
    for (int32_t i = 0; i < j->spec.n_choices; i++) {
        const float *e = j->ch[i].embd;
        json_t *v;
        if (b64) {
            static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const unsigned char *p = (const unsigned char *)e; /* little-endian float32, as OpenAI */
            const size_t nb = (size_t)ne * sizeof(float);
            char *s = slm_malloc((nb + 2) / 3 * 4 + 1);
            size_t w = 0;
            for (size_t k = 0; s && k < nb; k += 3) {
                const uint32_t x = (uint32_t)p[k] << 16 | (k + 1 < nb ? (uint32_t)p[k + 1] << 8 : 0) |
                                   (k + 2 < nb ? p[k + 2] : 0);
                s[w++] = tbl[x >> 18 & 63], s[w++] = tbl[x >> 12 & 63];
                s[w++] = k + 1 < nb ? tbl[x >> 6 & 63] : '=';
                s[w++] = k + 2 < nb ? tbl[x & 63] : '=';
            }
            v = s ? json_stringn(s, w) : json_null();
            slm_free(s);
        } else {
            v = json_array();
            for (int32_t k = 0; k < ne; k++) json_array_append_new(v, json_real(e[k]));
        }
        json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", v));
    }
    int64_t p, g, c;
    double t;
    slm_server_job_totals(j, &p, &g, &c, &t);
    reply_json(rep, json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model", j->spec.model_name,
                              "usage", "prompt_tokens", (json_int_t)p, "total_tokens", (json_int_t)p));
}

static void handle(slm_server_api *a, slm_server_endpoint ep, json_t *body, slm_server_alive_fn alive,
                   void *alive_user, slm_grammar **grammar, slm_server_reply *rep) {
    const slm_server_config *cfg = a->cfg;
    if (!json_is_object(body)) return BAD(rep, NULL, "the request body must be a JSON object");
    json_t *jm = json_object_get(body, "model");
    if (jm && !json_is_null(jm) && !json_is_string(jm)) return BAD(rep, "model", "'model' must be a string");
    const char *name = json_string_value(jm);
    const slm_server_model *m = NULL;
    char err[SLM_ERR_LEN] = "";
    slm_status st = slm_server_registry_acquire(a->reg, name, &m, err);
    if (st == SLM_ERR_NOT_FOUND) return slm_server_api_error(rep, 404, "invalid_request_error", "model", "model_not_found", "%s", err);
    if (st) return slm_server_api_error(rep, 503, "server_error", NULL, "model_unavailable", "%s", err);
    snprintf(rep->model, sizeof rep->model, "%s", m->cfg->name);

    const bool chat = ep == SLM_EP_CHAT, embed = ep == SLM_EP_EMBEDDINGS;
    gen_opts o = {.n = 1};
    const bool parsed = embed || parse_gen(a, m, body, chat, &o, rep);
    *grammar = o.gen.grammar; /* released by the caller, whatever happens below */
    if (!parsed) goto release;
    if (embed) {
        const char *fmt = json_string_value(json_object_get(body, "encoding_format"));
        json_t *f = json_object_get(body, "encoding_format");
        if (f && !json_is_null(f) && (!fmt || (strcmp(fmt, "float") && strcmp(fmt, "base64")))) {
            BAD(rep, "encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
            goto release;
        }
        slm_model_desc d;
        slm_model_describe(m->m, &d);
        long long dims = d.n_embd;
        if (get_int(body, "dimensions", 1, 1 << 20, &dims, rep) < 0) goto release;
        if (dims != d.n_embd) {
            BAD(rep, "dimensions", "this model's embeddings have %d dimensions; %lld was asked", d.n_embd, dims);
            goto release;
        }
    }
    slm_server_job_spec spec = {.kind = chat ? SLM_SERVER_JOB_CHAT : embed ? SLM_SERVER_JOB_EMBED : SLM_SERVER_JOB_COMPLETION,
                                .reg = a->reg, .model = NULL, .n_choices = 1, .n_per_prompt = o.n, .stream = o.stream,
                                .include_usage = o.include_usage, .logprobs = o.logprobs, .echo = o.echo, .n_top = o.n_top};
    snprintf(spec.model_name, sizeof spec.model_name, "%s", name && *name ? name : m->cfg->name);
    slm_server_job *j = NULL;
    if (slm_server_job_create(&spec, &j)) {
        slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory");
        goto release;
    }
    snprintf(j->id, sizeof j->id, "%s-%llx", chat ? "chatcmpl" : embed ? "embd" : "cmpl",
             (unsigned long long)atomic_fetch_add(&a->next_id, 1) + ((unsigned long long)j->created << 20));
    bool ok;
    if (chat) {
        char *text = NULL;
        size_t len = 0;
        ok = chat_prompt(cfg, m, body, &text, &len, rep);
        if (ok && !(j->prompts = slm_calloc(1, sizeof *j->prompts))) ok = false;
        if (ok) {
            j->spec.n_prompts = 1;
            j->prompts[0].text = text;
            text = NULL;
            const int flags = SLM_TOKENIZE_PARSE_SPECIAL | SLM_TOKENIZE_ADD_BOS;
            if (tokenize(m->m, j->prompts[0].text, len, flags, &j->prompts[0].ids, &j->prompts[0].n_ids))
                ok = false, BAD(rep, "messages", "the messages could not be tokenized");
            ok = ok && check_prompt_len(cfg, m, j->prompts[0].n_ids, "messages", rep);
        }
        slm_free(text);
    } else {
        ok = read_prompts(cfg, m, body, embed ? "input" : "prompt", SLM_TOKENIZE_ADD_BOS | SLM_TOKENIZE_PARSE_SPECIAL, j, rep);
    }
    if (cfg->log_prompts && j->prompts && j->prompts[0].text) rep->prompt_text = slm_strdup(j->prompts[0].text);
    if (ok) {
        /* n_choices is known only now: resize the choices */
        const int32_t nc = j->spec.n_prompts * j->spec.n_per_prompt;
        if (nc > j->spec.n_choices) {
            slm_server_choice *ch = slm_realloc(j->ch, (size_t)nc * sizeof *ch);
            if (!ch) ok = false;
            else {
                memset(ch + j->spec.n_choices, 0, (size_t)(nc - j->spec.n_choices) * sizeof *ch);
                j->ch = ch;
                j->spec.n_choices = nc;
            }
        }
        if (nc > (cfg->max_n > 0 ? cfg->max_n : SLM_SERVER_MAX_N) * SLM_SERVER_MAX_PROMPTS) ok = false;
    }
    if (ok && embed) {
        slm_model_desc d;
        slm_model_describe(m->m, &d);
        const int32_t ne = d.n_embd;
        for (int32_t i = 0; i < j->spec.n_prompts && ok; i++)
            ok = (j->ch[i].embd = slm_calloc((size_t)ne, sizeof(float))) != NULL;
    }
    j->spec.model = m; /* from here the job releases the model */
    m = NULL;
    if (!ok) {
        if (rep->status == 0) slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory");
        slm_server_job_release(j);
        return;
    }
    if (!submit_all(a, j, &o, embed, rep)) {
        slm_server_job_release(j);
        return;
    }
    if (o.stream) { /* the connection streams it; the response owns this reference */
        rep->status = 200;
        rep->job = j;
        return;
    }
    slm_server_job_wait(j, alive, alive_user);
    fill_log(j, rep);
    if (choices_ok(j, rep)) {
        if (embed) embed_reply(j, body, rep);
        else reply_json(rep, slm_server_job_final(j));
    }
    slm_server_job_release(j);
    return;
release:
    slm_server_registry_release(a->reg, m);
}

void slm_server_api_handle(slm_server_api *a, slm_server_endpoint ep, json_t *body, slm_server_alive_fn alive,
                           void *alive_user, slm_server_reply *rep) {
    slm_grammar *grammar = NULL; /* owned: response_format's grammar, if any */
    handle(a, ep, body, alive, alive_user, &grammar, rep);
    slm_grammar_release(grammar);
}
