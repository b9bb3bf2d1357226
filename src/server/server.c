/*
 * server/server.c: HTTP for `slmesh serve` on libmicrohttpd: one thread per connection
 * (a connection may block while its request generates; a streamed response is a content
 * reader that waits for the job's next events), routing, Bearer authentication, the body
 * limit, UTF-8 and JSON-depth checks, /health, /v1/models, /metrics, the JSON-lines access
 * log, and the graceful shutdown (stop accepting, let in-flight requests finish for the
 * grace period, cancel the rest).
 *
 * Client disconnects: a waiting connection probes its socket (a zero-byte peek means the
 * peer closed) every poll interval; the job is then cancelled and the scheduler frees the
 * slot at its next step.
 * Thread-safety: the server object is read-only after start except atomics; per-request
 * state (struct conn) belongs to its connection thread. Non-goals: TLS, HTTP/2.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "server/job.h"

#define SRV_STREAM_BLOCK   16384 /* bytes MHD asks the stream reader for at most */
#define SRV_POLL_MS        20    /* shutdown: how often in-flight requests are counted */
#define SRV_CANCEL_WAIT_S  5.0   /* shutdown: after cancelling, how long requests get to end */
#define SRV_JANITOR_MS     500   /* keep-alive checks */
#define SRV_TIMEOUT_S      600   /* idle connection timeout */

struct slm_server {
    const slm_server_config *cfg; /* borrowed */
    struct MHD_Daemon *d;
    slm_server_registry *reg;     /* owned */
    slm_server_metrics *met;      /* owned */
    slm_server_api api;
    pthread_t janitor;
    bool janitor_started, shut;
    atomic_bool stop;
    atomic_int inflight;
    atomic_uint_fast64_t next_req;
    uint16_t port;
};

/* Per-request state, owned by the connection. */
typedef struct conn {
    slm_server *s;
    uint64_t id;
    double t0;
    slm_server_endpoint ep;
    char method[8], path[96];
    char *body;                  /* [len] request bytes, owned */
    size_t len, cap;
    bool too_large;
    int fd;
    slm_server_reply rep;
    slm_server_job *job;         /* a reference for the access log (streams), owned */
} conn;

typedef struct stream_ctx {
    slm_server_job *job;         /* the response's reference */
    int fd;
} stream_ctx;

/* ---- helpers -------------------------------------------------------------------------------- */

static bool fd_alive(void *user) {
    const int fd = *(const int *)user;
    if (fd < 0) return true;
    char b;
    const ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    return true;
}

static slm_server_endpoint route(const char *url) {
    if (!strcmp(url, "/v1/chat/completions")) return SLM_EP_CHAT;
    if (!strcmp(url, "/v1/completions")) return SLM_EP_COMPLETIONS;
    if (!strcmp(url, "/v1/embeddings")) return SLM_EP_EMBEDDINGS;
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) return SLM_EP_MODELS;
    if (!strcmp(url, "/health")) return SLM_EP_HEALTH;
    if (!strcmp(url, "/metrics")) return SLM_EP_METRICS;
    return SLM_EP_OTHER;
}

/* Constant-time comparison of the presented key with the configured one. */
static bool key_ok(const char *want, const char *got) {
    if (!got) return false;
    const size_t a = strlen(want), b = strlen(got);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned)(got[i] ^ want[i % (a ? a : 1)]);
    return diff == 0;
}

/* Deepest nesting of objects/arrays, outside strings; stops counting past limit. */
static int json_depth(const char *p, size_t n, int limit) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        const char c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
            if (max > limit) return max;
        } else if (c == '}' || c == ']') depth--;
    }
    return max;
}

static void reply_text(slm_server_reply *rep, int status, const char *text) {
    free(rep->body);
    rep->body = strdup(text);
    rep->body_len = rep->body ? strlen(rep->body) : 0;
    rep->status = status;
}

static void reply_json(slm_server_reply *rep, json_t *o) {
    free(rep->body);
    rep->body = json_dumps(o, JSON_COMPACT);
    rep->body_len = rep->body ? strlen(rep->body) : 0;
    rep->status = 200;
    json_decref(o);
}

/* ---- GET endpoints ---------------------------------------------------------------------------- */

static void handle_get(slm_server *s, conn *c, const char *url) {
    slm_server_reply *rep = &c->rep;
    if (c->ep == SLM_EP_HEALTH) {
        if (slm_server_registry_ready(s->reg)) reply_text(rep, 200, "{\"status\":\"ok\"}");
        else slm_server_api_error(rep, 503, "server_error", NULL, "loading", "the model is loading");
        return;
    }
    if (c->ep == SLM_EP_METRICS) {
        size_t len = 0;
        char *t = slm_server_metrics_text(s->met, s->reg, &len);
        if (!t) return slm_server_api_error(rep, 503, "server_error", NULL, NULL, "out of memory");
        free(rep->body);
        rep->body = t, rep->body_len = len, rep->status = 200;
        return;
    }
    json_t *arr = json_array();
    slm_server_registry_list(s->reg, arr);
    if (!strcmp(url, "/v1/models")) return reply_json(rep, json_pack("{s:s,s:o}", "object", "list", "data", arr));
    const char *id = url + strlen("/v1/models/");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (!strcmp(json_string_value(json_object_get(v, "id")), id)) {
        reply_json(rep, json_incref(v));
        json_decref(arr);
        return;
    }
    json_decref(arr);
    slm_server_api_error(rep, 404, "invalid_request_error", "model", "model_not_found", "The model '%s' does not exist", id);
}

/* ---- POST endpoints --------------------------------------------------------------------------- */

static void handle_post(slm_server *s, conn *c) {
    const slm_server_config *cfg = s->cfg;
    slm_server_reply *rep = &c->rep;
    if (!slm_server_utf8_valid(c->body ? c->body : "", c->len))
        return slm_server_api_error(rep, 400, "invalid_request_error", NULL, "invalid_utf8",
                                    "The request body is not valid UTF-8; send UTF-8 encoded JSON");
    const int max_depth = cfg->max_json_depth > 0 ? cfg->max_json_depth : SLM_SERVER_MAX_JSON_DEPTH;
    if (json_depth(c->body ? c->body : "", c->len, max_depth) > max_depth)
        return slm_server_api_error(rep, 400, "invalid_request_error", NULL, "json_too_deep",
                                    "The request JSON nests deeper than %d levels", max_depth);
    json_error_t je;
    json_t *body = json_loadb(c->body ? c->body : "", c->len, 0, &je);
    if (!body)
        return slm_server_api_error(rep, 400, "invalid_request_error", NULL, "invalid_json",
                                    "The request body is not valid JSON (line %d, column %d: %s)", je.line, je.column,
                                    je.text);
    slm_server_api_handle(&s->api, c->ep, body, fd_alive, &c->fd, rep);
    json_decref(body);
}

/* ---- MHD callbacks ---------------------------------------------------------------------------- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *sc = cls;
    const long n = slm_server_job_read(sc->job, buf, max, fd_alive, &sc->fd);
    if (n == -1) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    atomic_store(&sc->job->cancel, true); /* the client is gone or the stream ended: nothing more to make */
    slm_server_job_release(sc->job);
    slm_free(sc);
}

static enum MHD_Result send_reply(struct MHD_Connection *mc, conn *c) {
    struct MHD_Response *r;
    if (c->rep.job) {
        stream_ctx *sc = slm_malloc(sizeof *sc);
        if (!sc) {
            slm_server_job_release(c->rep.job);
            c->rep.job = NULL;
            slm_server_api_error(&c->rep, 503, "server_error", NULL, NULL, "out of memory");
            return send_reply(mc, c);
        }
        sc->job = c->rep.job, sc->fd = c->fd;
        c->job = c->rep.job; /* the log's reference */
        pthread_mutex_lock(&c->job->mu);
        c->job->refs++;
        pthread_mutex_unlock(&c->job->mu);
        c->rep.job = NULL;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SRV_STREAM_BLOCK, stream_read, sc, stream_free);
        if (!r) {
            stream_free(sc);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
    } else {
        if (!c->rep.body) slm_server_api_error(&c->rep, 500, "server_error", NULL, NULL, "no response");
        r = MHD_create_response_from_buffer(c->rep.body_len, c->rep.body, MHD_RESPMEM_MUST_COPY);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", c->ep == SLM_EP_METRICS && c->rep.status == 200
                                                       ? "text/plain; version=0.0.4"
                                                       : "application/json");
    }
    char rid[32];
    snprintf(rid, sizeof rid, "req-%llu", (unsigned long long)c->id);
    MHD_add_response_header(r, "X-Request-Id", rid);
    const enum MHD_Result ret = MHD_queue_response(mc, (unsigned)c->rep.status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    slm_server *s = cls;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = slm_calloc(1, sizeof *c))) return MHD_NO;
        c->s = s;
        c->t0 = slm_sched_now_ms();
        c->id = atomic_fetch_add(&s->next_req, 1) + 1;
        c->ep = route(url);
        snprintf(c->method, sizeof c->method, "%s", method);
        snprintf(c->path, sizeof c->path, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        *con_cls = c;
        atomic_fetch_add(&s->inflight, 1);
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->cfg->max_body) {
            slm_server_api_error(&c->rep, 413, "invalid_request_error", NULL, "request_too_large",
                                 "The request body of %s bytes exceeds the limit of %zu bytes", cl, s->cfg->max_body);
            return send_reply(mc, c);
        }
        return MHD_YES;
    }
    if (c->rep.status) return MHD_YES; /* answered early; discard the rest */
    if (*upload_size) {
        size_t need;
        if (!c->too_large && (!slm_add_size(c->len, *upload_size, &need) || need > s->cfg->max_body)) {
            c->too_large = true;
            slm_free(c->body);
            c->body = NULL, c->len = c->cap = 0;
        }
        if (!c->too_large) {
            if (need > c->cap) {
                const size_t nc = need * 2 < s->cfg->max_body ? need * 2 : s->cfg->max_body;
                char *b = slm_realloc(c->body, nc);
                if (!b) return MHD_NO;
                c->body = b, c->cap = nc;
            }
            memcpy(c->body + c->len, upload, *upload_size);
            c->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* the whole request is here */
    const bool is_get = !strcmp(method, "GET"), is_post = !strcmp(method, "POST");
    const bool post_ep = c->ep == SLM_EP_CHAT || c->ep == SLM_EP_COMPLETIONS || c->ep == SLM_EP_EMBEDDINGS;
    if (c->ep == SLM_EP_OTHER) {
        slm_server_api_error(&c->rep, 404, "invalid_request_error", NULL, "not_found", "Unknown route %s %s", method, url);
    } else if ((post_ep && !is_post) || (!post_ep && !is_get)) {
        slm_server_api_error(&c->rep, 405, "invalid_request_error", NULL, "method_not_allowed",
                             "%s is not allowed on %s", method, url);
    } else if (c->ep != SLM_EP_HEALTH && s->cfg->api_key) {
        const char *auth = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        const char *tok = auth && !strncmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
        if (!key_ok(s->cfg->api_key, tok))
            slm_server_api_error(&c->rep, 401, "invalid_request_error", NULL, "invalid_api_key",
                                 "Incorrect or missing API key; send 'Authorization: Bearer KEY'");
    }
    if (!c->rep.status) {
        if (c->too_large)
            slm_server_api_error(&c->rep, 413, "invalid_request_error", NULL, "request_too_large",
                                 "The request body exceeds the limit of %zu bytes", s->cfg->max_body);
        else if (is_get) handle_get(s, c, url);
        else handle_post(s, c);
    }
    return send_reply(mc, c);
}

static void access_log(slm_server *s, conn *c, double total_ms) {
    if (!s->cfg->log) return;
    char ts[32];
    const time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char rid[32];
    snprintf(rid, sizeof rid, "req-%llu", (unsigned long long)c->id);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:b,s:I,s:I,s:I,s:f,s:f}", "ts", ts, "id", rid, "method", c->method,
                          "path", c->path, "status", c->rep.status, "model", c->rep.model, "stream", c->job != NULL,
                          "prompt_tokens", (json_int_t)c->rep.prompt_tokens, "completion_tokens",
                          (json_int_t)c->rep.gen_tokens, "cached_tokens", (json_int_t)c->rep.cached_tokens, "ttft_ms",
                          c->rep.ttft_ms > 0 ? c->rep.ttft_ms : 0.0, "total_ms", total_ms);
    if (!o) return;
    if (s->cfg->log_prompts && c->rep.prompt_text && slm_server_utf8_valid(c->rep.prompt_text, strlen(c->rep.prompt_text)))
        json_object_set_new(o, "prompt", json_string(c->rep.prompt_text));
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (line) s->cfg->log(s->cfg->log_user, line);
    free(line);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe) {
    slm_server *s = cls;
    conn *c = *con_cls;
    if (!c) return;
    if (c->job) {
        /* a stream cut short: its generation stops at the next step; wait for it so that the
         * log and the metrics count what was generated */
        atomic_store(&c->job->cancel, true);
        slm_server_job_wait(c->job, NULL, NULL);
        slm_server_job_usage(c->job, &c->rep);
        slm_server_job_release(c->job);
    }
    if (c->rep.job) slm_server_job_release(c->rep.job);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && c->rep.status == 200) c->rep.status = 499; /* client closed */
    const double total = slm_sched_now_ms() - c->t0;
    slm_server_metrics_request(s->met, c->ep, c->rep.status, c->rep.ttft_ms > 0 ? c->rep.ttft_ms : -1, total,
                               c->rep.prompt_tokens, c->rep.gen_tokens);
    access_log(s, c, total);
    free(c->rep.body);
    slm_free(c->rep.prompt_text);
    slm_free(c->body);
    slm_free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void *janitor_main(void *arg) {
    slm_server *s = arg;
    slm_server_registry_preload(s->reg);
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = SRV_JANITOR_MS * 1000000L};
        nanosleep(&ts, NULL);
        slm_server_registry_tick(s->reg);
    }
    return NULL;
}

slm_status slm_server_start(const slm_server_config *cfg, slm_server **out, char *err) {
    *out = NULL;
    if (cfg->n_models < 1) return slm_errf(err, SLM_ERR_INVALID_ARG, "no model to serve");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
    const char *host = cfg->host && strcmp(cfg->host, "localhost") ? cfg->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "--host %s is not an IPv4 address", host);
    slm_server *s = slm_calloc(1, sizeof *s);
    if (!s) return slm_errf(err, SLM_ERR_NOMEM, "server");
    s->cfg = cfg;
    s->api.cfg = cfg;
    slm_status st = slm_server_registry_create(cfg, &s->reg, err);
    if (st == SLM_OK && slm_server_metrics_create(&s->met)) st = slm_errf(err, SLM_ERR_NOMEM, "metrics");
    if (st) goto fail;
    s->api.reg = s->reg;
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, cfg->port,
                            NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)SLM_SERVER_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SRV_TIMEOUT_S,
                            MHD_OPTION_END);
    if (!s->d) {
        st = slm_errf(err, SLM_ERR_IO, "cannot listen on %s:%u (%s)", host, cfg->port, strerror(errno));
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    if (pthread_create(&s->janitor, NULL, janitor_main, s) != 0) {
        st = slm_errf(err, SLM_ERR_NOMEM, "janitor thread");
        goto fail;
    }
    s->janitor_started = true;
    *out = s;
    return SLM_OK;
fail:
    slm_server_destroy(s);
    return st;
}

uint16_t slm_server_port(const slm_server *s) { return s->port; }

static bool drained(slm_server *s, double until_ms) {
    while (atomic_load(&s->inflight) > 0 && slm_sched_now_ms() < until_ms) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = SRV_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&s->inflight) == 0;
}

void slm_server_shutdown(slm_server *s) {
    if (!s || s->shut) return;
    s->shut = true;
    if (s->d) {
        const MHD_socket ls = MHD_quiesce_daemon(s->d); /* no new connections */
        if (ls != MHD_INVALID_SOCKET) close(ls);
    }
    if (s->reg) {
        slm_server_registry_close(s->reg, false); /* no new requests; running ones go on */
        if (!drained(s, slm_sched_now_ms() + s->cfg->grace_s * 1e3)) {
            slm_server_registry_close(s->reg, true);
            drained(s, slm_sched_now_ms() + SRV_CANCEL_WAIT_S * 1e3);
        }
    }
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
    atomic_store(&s->stop, true);
    if (s->janitor_started) pthread_join(s->janitor, NULL);
    s->janitor_started = false;
}

void slm_server_destroy(slm_server *s) {
    if (!s) return;
    slm_server_shutdown(s);
    slm_server_registry_destroy(s->reg);
    slm_server_metrics_destroy(s->met);
    slm_free(s);
}
