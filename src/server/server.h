/*
 * server/server.h: the OpenAI-compatible HTTP server (`slmesh serve`), and what its files
 * share: server.c (HTTP with libmicrohttpd, routing, auth, limits, errors, streaming,
 * access log, shutdown), registry.c (models from a config file: load on first use,
 * keep-alive, LRU eviction under a memory budget, one scheduler and engine thread each),
 * api.c (the OpenAI request parsing and JSON/SSE formatting over the scheduler), metrics.c
 * (Prometheus text).
 *
 * Request flow: MHD connection thread -> body (limits) -> auth -> JSON (UTF-8, depth) ->
 * api handler -> registry acquire (load) -> slm_sched_submit per choice -> the engine thread
 * delivers events into the request's job -> the connection thread formats them (SSE chunks
 * as they come, or one JSON at the end) -> registry release, metrics, access log.
 * Thread-safety: the server, registry and metrics are shared by every connection thread and
 * guarded by their own mutexes; a job is shared by one connection and one engine thread.
 * Non-goals: TLS (put a proxy in front), tools/function calling, images, audio.
 */
#ifndef SLMESH_SERVER_H
#define SLMESH_SERVER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "slmesh/grammar.h"
#include "slmesh/sched.h"
#include "slmesh/slmesh.h"

/* ---- limits (defaults; each is a --option) ----------------------------------------------- */
#define SLM_SERVER_MAX_BODY        (1u << 20) /* request bytes: 1 MiB holds ~250k tokens of text */
#define SLM_SERVER_MAX_JSON_DEPTH  32         /* nesting of the request JSON; OpenAI bodies use < 6 */
#define SLM_SERVER_MAX_MESSAGES    256        /* chat messages per request */
#define SLM_SERVER_MAX_TOKENS      4096       /* max_tokens a request may ask for */
#define SLM_SERVER_MAX_N           8          /* choices per request */
#define SLM_SERVER_MAX_PROMPTS     32         /* prompts (completions) or inputs (embeddings) per request */
#define SLM_SERVER_MAX_MODELS      32         /* models in a config file */
#define SLM_SERVER_MAX_ALIASES     8          /* aliases per model */
#define SLM_SERVER_MAX_CONNECTIONS 256        /* open connections (one thread each) */
#define SLM_SERVER_MAX_KEY         512        /* bytes of an API key */
#define SLM_SERVER_GRAMMAR_CACHE   64         /* compiled response_format grammars kept (LRU): a
                                                 service uses a handful of schemas */
#define SLM_SERVER_NAME_MAX        128        /* bytes of a model name */

/* ---- configuration ------------------------------------------------------------------------ */

/* One model of the registry (a config file entry, or -m PATH). Strings owned by the config. */
typedef struct slm_server_model_cfg {
    char *name;                            /* what requests put in "model" */
    char *path;                            /* GGUF file */
    char *aliases[SLM_SERVER_MAX_ALIASES]; /* other accepted names */
    int32_t n_aliases;
    char *chat_template;                   /* family name override, or NULL (the file's, else chatml) */
    slm_sched_params sched;                /* ctx size, parallel slots, queue, threads */
    slm_sampling sampling;                 /* defaults for fields a request leaves out */
    double keep_alive_s;                   /* unload after this long unused; 0 = never */
    slm_model_params load;                 /* mapped or read into memory, locked or not */
} slm_server_model_cfg;

typedef struct slm_server_config {
    const char *host;            /* listen address (borrowed) */
    uint16_t port;
    const char *api_key;         /* NULL = no auth (borrowed) */
    bool log_prompts;            /* access log includes prompt text */
    size_t max_body;
    int32_t max_json_depth, max_messages, max_tokens, max_n, max_prompt_tokens; /* 0 = no extra cap */
    double timeout_s;            /* per-request deadline; 0 = none */
    double grace_s;              /* shutdown grace period */
    size_t memory_budget;        /* bytes of loaded models; 0 = unlimited */
    slm_server_model_cfg *models; /* [n_models], owned by the caller; models[0] is the default */
    int32_t n_models;
    void (*log)(void *user, const char *line); /* access log and notices (one line each), may be NULL */
    void *log_user;
} slm_server_config;

/* Parse a JSON config file (format in docs/server.md) into cfg->models and budget; strings
 * are owned by cfg and freed by slm_server_config_free. */
slm_status slm_server_config_load(const char *path, slm_server_config *cfg, char *err);
/* The same from len bytes of JSON text (borrowed for the call). */
slm_status slm_server_config_parse(const char *text, size_t len, slm_server_config *cfg, char *err);
/* A one-model config for -m PATH (name = file name without .gguf). */
slm_status slm_server_config_single(const char *path, const slm_sched_params *sp, slm_server_config *cfg, char *err);
void slm_server_config_free(slm_server_config *cfg);

/* ---- the server ---------------------------------------------------------------------------- */

typedef struct slm_server slm_server;

/* Start listening (the default model loads in the background: /health is 503 until it is
 * ready). cfg is borrowed for the server's life. */
slm_status slm_server_start(const slm_server_config *cfg, slm_server **out, char *err);
/* Stop accepting, let requests finish for the grace period, cancel the rest, stop. */
void slm_server_shutdown(slm_server *s);
void slm_server_destroy(slm_server *s); /* NULL allowed; shuts down first if needed */
uint16_t slm_server_port(const slm_server *s);

/* ---- internal: registry (registry.c) -------------------------------------------------------- */

typedef struct slm_server_registry slm_server_registry;

/* A loaded model while a request holds it. */
typedef struct slm_server_model {
    const slm_server_model_cfg *cfg; /* borrowed from the config */
    slm_model *m;
    slm_sched *sched;
    slm_chat_template tpl;
    int32_t n_ctx_slot;
} slm_server_model;

slm_status slm_server_registry_create(const slm_server_config *cfg, slm_server_registry **out, char *err);
void slm_server_registry_destroy(slm_server_registry *r);
/* Find by name or alias (NULL or "" = the default model), load if needed, hold it.
 * SLM_ERR_NOT_FOUND (404), SLM_ERR_STATE (shutting down: 503), other = load failure (503). */
slm_status slm_server_registry_acquire(slm_server_registry *r, const char *name, const slm_server_model **out,
                                       char *err);
void slm_server_registry_release(slm_server_registry *r, const slm_server_model *m);
/* Is the default model loaded? */
bool slm_server_registry_ready(slm_server_registry *r);
/* Load the default model now (the server calls it from a background thread). */
void slm_server_registry_preload(slm_server_registry *r);
/* Unload models idle past their keep-alive. */
void slm_server_registry_tick(slm_server_registry *r);
/* Shutdown: refuse new submissions; cancel_all cancels what is running. */
void slm_server_registry_close(slm_server_registry *r, bool cancel_all);
/* Append every model as an OpenAI model object to arr. */
void slm_server_registry_list(slm_server_registry *r, json_t *arr);
/* Append Prometheus lines for each loaded model. */
void slm_server_registry_metrics(slm_server_registry *r, char **buf, size_t *len, size_t *cap);

/* ---- internal: metrics (metrics.c) ----------------------------------------------------------- */

typedef enum slm_server_endpoint {
    SLM_EP_CHAT = 0, SLM_EP_COMPLETIONS, SLM_EP_EMBEDDINGS, SLM_EP_MODELS, SLM_EP_HEALTH, SLM_EP_METRICS,
    SLM_EP_OTHER, SLM_EP_COUNT
} slm_server_endpoint;

typedef struct slm_server_metrics slm_server_metrics;
slm_status slm_server_metrics_create(slm_server_metrics **out);
void slm_server_metrics_destroy(slm_server_metrics *m);
/* One finished request: times in ms (ttft < 0: none), tokens. */
void slm_server_metrics_request(slm_server_metrics *m, slm_server_endpoint ep, int status, double ttft_ms,
                                double total_ms, int64_t prompt_tokens, int64_t gen_tokens);
/* The Prometheus text (malloc'd, caller frees) with the registry's gauges. */
char *slm_server_metrics_text(slm_server_metrics *m, slm_server_registry *r, size_t *len);

/* printf into a growable buffer (*buf malloc'd); false on allocation failure. */
bool slm_server_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Is s[n] valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF)? */
bool slm_server_utf8_valid(const char *s, size_t n);
/* A JSON string of text[n] with every invalid UTF-8 byte replaced by U+FFFD (new reference). */
json_t *slm_server_json_text(const char *text, size_t n);

/* ---- internal: API handlers (api.c) ------------------------------------------------------------ */

/* What a handler answers: either a complete body (status, JSON text) or a stream. */
typedef struct slm_server_reply {
    int status;                 /* HTTP status */
    char *body;                 /* malloc'd JSON text (non-stream) */
    size_t body_len;
    struct slm_server_job *job; /* streaming: a job reference the response owns */
    /* for the access log and metrics */
    char model[SLM_SERVER_NAME_MAX];
    int64_t prompt_tokens, gen_tokens, cached_tokens;
    double ttft_ms;
    char *prompt_text;          /* malloc'd, only with log_prompts */
} slm_server_reply;

typedef struct slm_server_api {
    const slm_server_config *cfg;
    slm_server_registry *reg;
    slm_grammar_cache *grammars; /* owned by the server: response_format grammars by source */
    atomic_uint_fast64_t next_id;
} slm_server_api;

/* A waiting connection's liveness probe: false once the client has gone. */
typedef bool (*slm_server_alive_fn)(void *user);

/* Handle a POST to an API endpoint with the parsed body. Fills rep (an error in OpenAI's
 * shape with the right status on failure). alive is polled while waiting. */
void slm_server_api_handle(slm_server_api *a, slm_server_endpoint ep, json_t *body, slm_server_alive_fn alive,
                           void *alive_user, slm_server_reply *rep);
/* An OpenAI error body for status (message formatted); sets rep->status and rep->body. */
void slm_server_api_error(slm_server_reply *rep, int status, const char *type, const char *param, const char *code,
                          const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Streaming: fill up to max bytes of SSE into buf; waits for events (polling alive).
 * Returns bytes written, 0 never (it waits), -1 at the end of the stream, -2 when the client
 * is gone (the job is cancelled). */
long slm_server_job_read(struct slm_server_job *j, char *buf, size_t max, slm_server_alive_fn alive, void *alive_user);
/* Drop the response's reference to the job (the last reference frees it). */
void slm_server_job_release(struct slm_server_job *j);
/* Usage of a finished stream for the access log. */
void slm_server_job_usage(struct slm_server_job *j, slm_server_reply *rep);

#endif /* SLMESH_SERVER_H */
