/*
 * server/job.c: one API request's link between its connection thread and the engine
 * thread: the scheduler's events for each choice are copied into the job (under its
 * mutex) and the connection formats them: OpenAI JSON at the end, or SSE chunks as they
 * arrive (chat.completion.chunk / text_completion, finish chunks, the usage chunk, [DONE]).
 *
 * Lifetime: a reference count: one for the handler, one per submitted choice (dropped at
 * its DONE event), one for a streaming response; the last release frees the job and lets
 * go of the model. Thread-safety: mu guards everything that changes after submission.
 * Non-goals: formatting errors (api.c), HTTP (server.c).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "server/job.h"

#define JOB_POLL_MS 50 /* how often a waiting connection checks that its client is still there */

/* ---- create, submit, release ----------------------------------------------------------------- */

slm_status slm_server_job_create(const slm_server_job_spec *spec, slm_server_job **out) {
    slm_server_job *j = slm_calloc(1, sizeof *j);
    if (!j) return SLM_ERR_NOMEM;
    j->spec = *spec;
    j->ch = slm_calloc((size_t)spec->n_choices, sizeof *j->ch);
    if (!j->ch) {
        slm_free(j);
        return SLM_ERR_NOMEM;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1;
    j->t0 = slm_sched_now_ms();
    j->created = (long)time(NULL);
    *out = j;
    return SLM_OK;
}

static void job_free(slm_server_job *j) {
    for (size_t i = 0; i < j->n_ev; i++) slm_free(j->ev[i].text), slm_free(j->ev[i].piece);
    slm_free(j->ev);
    for (int32_t i = 0; i < j->spec.n_choices; i++) slm_free(j->ch[i].embd);
    slm_free(j->ch);
    for (int32_t i = 0; i < j->spec.n_prompts; i++) slm_free(j->prompts[i].ids), slm_free(j->prompts[i].text);
    slm_free(j->prompts);
    slm_free(j->out);
    if (j->spec.model) slm_server_registry_release(j->spec.reg, j->spec.model);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    slm_free(j);
}

void slm_server_job_release(slm_server_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    const bool last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (last) job_free(j);
}

static char *memdup(const char *p, size_t n) {
    char *d = slm_malloc(n + 1);
    if (d) memcpy(d, p, n), d[n] = '\0';
    return d;
}

static bool ev_push(slm_server_job *j, const slm_server_ev *e) {
    if (j->n_ev == j->cap_ev) {
        const size_t nc = j->cap_ev ? j->cap_ev * 2 : 64;
        slm_server_ev *ne = slm_realloc(j->ev, nc * sizeof *ne);
        if (!ne) return false;
        j->ev = ne, j->cap_ev = nc;
    }
    j->ev[j->n_ev++] = *e;
    return true;
}

typedef struct cb_arg {
    slm_server_job *j;
    int32_t choice;
} cb_arg;

/* The scheduler's callback (engine thread). */
static bool on_event(const slm_sched_event *ev, void *user) {
    slm_server_job *j = ((cb_arg *)user)->j;
    const int32_t ci = ((cb_arg *)user)->choice;
    pthread_mutex_lock(&j->mu);
    slm_server_choice *c = &j->ch[ci];
    if (ev->kind == SLM_SCHED_DONE) {
        c->res = *ev->result;
        c->res.embedding = NULL;
        if (ev->result->embedding && c->embd)
            memcpy(c->embd, ev->result->embedding, (size_t)ev->result->n_embd * sizeof *c->embd);
        c->done = true;
        j->n_done++;
        const slm_server_ev e = {.choice = ci, .kind = SLM_SERVER_EV_DONE};
        ev_push(j, &e);
        pthread_cond_broadcast(&j->cv);
        const bool last = --j->refs == 0;
        pthread_mutex_unlock(&j->mu);
        slm_free(user);
        if (last) job_free(j);
        return true;
    }
    const slm_gen_token *t = ev->tok;
    slm_server_ev e = {.choice = ci, .kind = ev->kind == SLM_SCHED_TOKEN ? SLM_SERVER_EV_TOKEN : SLM_SERVER_EV_PROMPT,
                       .id = t->id, .index = ev->index, .logprob = t->logprob};
    bool ok = true;
    if (t->text_len) ok = (e.text = memdup(t->text, t->text_len)) != NULL, e.text_len = t->text_len;
    if (j->spec.logprobs && t->id >= 0) {
        e.n_top = t->n_top < j->spec.n_top ? t->n_top : j->spec.n_top;
        memcpy(e.top, t->top, (size_t)e.n_top * sizeof *e.top);
        if (t->piece_len) ok = ok && (e.piece = memdup(t->piece, t->piece_len)) != NULL, e.piece_len = t->piece_len;
    }
    const bool keep = j->spec.stream || e.text_len || j->spec.logprobs || e.kind == SLM_SERVER_EV_PROMPT;
    if (ok && keep) ok = ev_push(j, &e);
    if (!ok || !keep) slm_free(e.text), slm_free(e.piece);
    if (e.kind == SLM_SERVER_EV_TOKEN && t->id >= 0) c->n_tokens++;
    pthread_cond_broadcast(&j->cv);
    const bool go_on = !atomic_load(&j->cancel);
    pthread_mutex_unlock(&j->mu);
    return go_on;
}

slm_status slm_server_job_submit(slm_server_job *j, int32_t choice, const slm_sched_request *rq, char *err) {
    cb_arg *a = slm_malloc(sizeof *a);
    if (!a) return slm_errf(err, SLM_ERR_NOMEM, "request");
    a->j = j, a->choice = choice;
    slm_sched_request r = *rq;
    r.cb = on_event;
    r.user = a;
    r.gen.cancel = &j->cancel;
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
    const slm_status st = slm_sched_submit(j->spec.model->sched, &r, err);
    if (st) {
        slm_free(a);
        pthread_mutex_lock(&j->mu);
        j->refs--;
        pthread_mutex_unlock(&j->mu);
    }
    return st;
}

void slm_server_job_cancel(slm_server_job *j, int32_t n_submitted) {
    atomic_store(&j->cancel, true);
    pthread_mutex_lock(&j->mu);
    j->n_expected = n_submitted;
    pthread_mutex_unlock(&j->mu);
}

bool slm_server_job_wait(slm_server_job *j, slm_server_alive_fn alive, void *user) {
    bool gone = false;
    pthread_mutex_lock(&j->mu);
    const int32_t want = j->n_expected ? j->n_expected : j->spec.n_choices;
    while (j->n_done < want) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += JOB_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0 && !gone && alive && !alive(user)) {
            gone = true;
            atomic_store(&j->cancel, true);
        }
    }
    pthread_mutex_unlock(&j->mu);
    return !gone;
}

/* ---- formatting ------------------------------------------------------------------------------ */

/* A token's bytes as a JSON string: itself when valid UTF-8, else OpenAI's "bytes:\xNN". */
static json_t *token_str(const char *p, size_t n) {
    if (slm_server_utf8_valid(p, n)) return json_stringn(p, n);
    char buf[6 + 4 * 64 + 1];
    size_t k = (size_t)snprintf(buf, sizeof buf, "bytes:");
    for (size_t i = 0; i < n && i < 64; i++) k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02x", (unsigned char)p[i]);
    return json_string(buf);
}

static json_t *token_bytes(const char *p, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

static json_t *piece_of(const slm_server_job *j, int32_t id) {
    char buf[256];
    size_t n = slm_model_token_piece(j->spec.model->m, id, buf, sizeof buf);
    if (n > sizeof buf) n = sizeof buf;
    return token_str(buf, n);
}

/* Chat logprobs entry: {token, logprob, bytes, top_logprobs:[...]}. */
static json_t *chat_lp(const slm_server_job *j, const slm_server_ev *e) {
    json_t *top = json_array();
    for (int32_t i = 0; i < e->n_top; i++) {
        char buf[256];
        size_t n = slm_model_token_piece(j->spec.model->m, e->top[i].id, buf, sizeof buf);
        if (n > sizeof buf) n = sizeof buf;
        json_array_append_new(top, json_pack("{s:o,s:f,s:o}", "token", token_str(buf, n), "logprob",
                                             (double)e->top[i].logprob, "bytes", token_bytes(buf, n)));
    }
    return json_pack("{s:o,s:f,s:o,s:o}", "token", token_str(e->piece ? e->piece : "", e->piece_len), "logprob",
                     (double)e->logprob, "bytes", token_bytes(e->piece ? e->piece : "", e->piece_len), "top_logprobs",
                     top);
}

/* Completions logprobs: append one token to {tokens, token_logprobs, top_logprobs, text_offset}. */
static void comp_lp_add(const slm_server_job *j, json_t *lp, json_t *tok, json_t *logprob, const slm_server_ev *e,
                        size_t offset) {
    json_array_append_new(json_object_get(lp, "tokens"), tok);
    json_array_append_new(json_object_get(lp, "token_logprobs"), logprob);
    json_t *top = json_null();
    if (e) {
        top = json_object();
        for (int32_t i = 0; i < e->n_top; i++) {
            json_t *k = piece_of(j, e->top[i].id);
            json_object_set_new(top, json_string_value(k), json_real(e->top[i].logprob));
            json_decref(k);
        }
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
}

static json_t *comp_lp_new(void) {
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

const char *slm_server_finish_reason(const slm_sched_result *r) {
    switch (r->stop) {
    case SLM_GEN_STOP_LENGTH:
    case SLM_GEN_STOP_CONTEXT: return "length";
    case SLM_GEN_STOP_CANCEL: return r->timed_out ? "length" : "stop";
    default: return "stop";
    }
}

void slm_server_job_totals(const slm_server_job *j, int64_t *prompt, int64_t *gen, int64_t *cached, double *ttft) {
    *prompt = *gen = *cached = 0;
    *ttft = -1;
    for (int32_t i = 0; i < j->spec.n_choices; i++) {
        const slm_server_choice *c = &j->ch[i];
        if (i % j->spec.n_per_prompt == 0) *prompt += c->res.n_prompt, *cached += c->res.n_cached;
        *gen += c->res.n_generated;
        if (c->res.ttft_ms > 0 && (*ttft < 0 || c->res.ttft_ms < *ttft)) *ttft = c->res.ttft_ms;
    }
}

static json_t *usage_json(const slm_server_job *j) {
    int64_t p, g, c;
    double t;
    slm_server_job_totals(j, &p, &g, &c, &t);
    return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)p, "completion_tokens", (json_int_t)g,
                     "total_tokens", (json_int_t)(p + g), "prompt_tokens_details", "cached_tokens", (json_int_t)c);
}

static json_t *head_json(const slm_server_job *j, const char *object) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", j->id, "object", object, "created", (json_int_t)j->created, "model",
                     j->spec.model_name, "system_fingerprint", "slmesh");
}

/* The whole non-streamed response (call after every choice is done). */
json_t *slm_server_job_final(slm_server_job *j) {
    const bool chat = j->spec.kind == SLM_SERVER_JOB_CHAT;
    json_t *root = head_json(j, chat ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    for (int32_t ci = 0; ci < j->spec.n_choices; ci++) {
        char *text = NULL;
        size_t len = 0, cap = 0;
        const slm_server_prompt *pr = &j->prompts[ci / j->spec.n_per_prompt];
        json_t *lp = NULL;
        if (j->spec.logprobs) lp = chat ? json_pack("{s:[]}", "content") : comp_lp_new();
        if (j->spec.echo && !chat) {
            slm_server_appendf(&text, &len, &cap, "%s", pr->text ? pr->text : "");
            if (lp && pr->n_ids > 0) comp_lp_add(j, lp, piece_of(j, pr->ids[0]), json_null(), NULL, 0);
        }
        size_t offset = 0; /* of the next prompt token in the echoed text */
        if (lp && j->spec.echo && pr->n_ids > 0) {
            char b[256];
            size_t n = slm_model_token_piece(j->spec.model->m, pr->ids[0], b, sizeof b);
            offset = n < sizeof b ? n : 0;
        }
        for (size_t k = 0; k < j->n_ev; k++) {
            const slm_server_ev *e = &j->ev[k];
            if (e->choice != ci) continue;
            if (e->kind == SLM_SERVER_EV_PROMPT) {
                if (lp && j->spec.echo && !chat) {
                    comp_lp_add(j, lp, token_str(e->piece ? e->piece : "", e->piece_len), json_real(e->logprob), e,
                                offset);
                    offset += e->piece_len;
                }
                continue;
            }
            if (e->kind != SLM_SERVER_EV_TOKEN) continue;
            const size_t before = len;
            if (e->text_len) {
                char *nb = len + e->text_len + 1 > cap ? slm_realloc(text, (cap = (len + e->text_len + 1) * 2)) : text;
                if (nb) {
                    text = nb;
                    memcpy(text + len, e->text, e->text_len);
                    len += e->text_len;
                    text[len] = '\0';
                }
            }
            if (lp && e->id >= 0) {
                if (chat) json_array_append_new(json_object_get(lp, "content"), chat_lp(j, e));
                else comp_lp_add(j, lp, token_str(e->piece ? e->piece : "", e->piece_len), json_real(e->logprob), e, before);
            }
        }
        json_t *content = slm_server_json_text(text ? text : "", len);
        const char *fr = slm_server_finish_reason(&j->ch[ci].res);
        json_t *c;
        if (chat)
            c = json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", ci, "message", "role", "assistant", "content", content,
                          "logprobs", lp ? lp : json_null(), "finish_reason", fr);
        else
            c = json_pack("{s:i,s:o,s:o,s:s}", "index", ci, "text", content, "logprobs", lp ? lp : json_null(),
                          "finish_reason", fr);
        json_array_append_new(choices, c);
        slm_free(text);
    }
    json_object_set_new(root, "choices", choices);
    json_object_set_new(root, "usage", usage_json(j));
    return root;
}

/* ---- streaming ----------------------------------------------------------------------------- */

static void sse(slm_server_job *j, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s) return;
    slm_server_appendf(&j->out, &j->out_len, &j->out_cap, "data: %s\n\n", s);
    free(s);
}

static json_t *chunk(slm_server_job *j, json_t *choice) {
    const bool chat = j->spec.kind == SLM_SERVER_JOB_CHAT;
    json_t *o = head_json(j, chat ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(o, "choices", choice ? json_pack("[o]", choice) : json_array());
    return o;
}

/* First chunks: the assistant role (chat) or the echoed prompt (completions). */
static void stream_open(slm_server_job *j) {
    for (int32_t ci = 0; ci < j->spec.n_choices; ci++) {
        if (j->spec.kind == SLM_SERVER_JOB_CHAT)
            sse(j, chunk(j, json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", ci, "delta", "role", "assistant", "content",
                                      "", "logprobs", "finish_reason")));
        else if (j->spec.echo) {
            const char *t = j->prompts[ci / j->spec.n_per_prompt].text;
            sse(j, chunk(j, json_pack("{s:i,s:s,s:n,s:n}", "index", ci, "text", t ? t : "", "logprobs", "finish_reason")));
        }
    }
}

static void stream_event(slm_server_job *j, const slm_server_ev *e) {
    const bool chat = j->spec.kind == SLM_SERVER_JOB_CHAT;
    if (e->kind == SLM_SERVER_EV_DONE) {
        const char *fr = slm_server_finish_reason(&j->ch[e->choice].res);
        if (chat)
            sse(j, chunk(j, json_pack("{s:i,s:{},s:n,s:s}", "index", e->choice, "delta", "logprobs", "finish_reason", fr)));
        else
            sse(j, chunk(j, json_pack("{s:i,s:s,s:n,s:s}", "index", e->choice, "text", "", "logprobs", "finish_reason", fr)));
        return;
    }
    if (e->kind != SLM_SERVER_EV_TOKEN) return;
    const bool with_lp = j->spec.logprobs && e->id >= 0;
    if (!e->text_len && !with_lp) return;
    const char *t = e->text ? e->text : "";
    json_t *text = slm_server_json_text(t, e->text_len);
    json_t *lp = json_null();
    if (with_lp) {
        if (chat) lp = json_pack("{s:[o]}", "content", chat_lp(j, e));
        else {
            lp = comp_lp_new();
            comp_lp_add(j, lp, token_str(e->piece ? e->piece : "", e->piece_len), json_real(e->logprob), e, 0);
        }
    }
    if (chat)
        sse(j, chunk(j, json_pack("{s:i,s:{s:o},s:o,s:n}", "index", e->choice, "delta", "content", text, "logprobs", lp,
                                  "finish_reason")));
    else
        sse(j, chunk(j, json_pack("{s:i,s:o,s:o,s:n}", "index", e->choice, "text", text, "logprobs", lp, "finish_reason")));
}

long slm_server_job_read(slm_server_job *j, char *buf, size_t max, slm_server_alive_fn alive, void *user) {
    long ret = 0;
    pthread_mutex_lock(&j->mu);
    for (;;) {
        if (j->out_off < j->out_len) {
            const size_t n = j->out_len - j->out_off < max ? j->out_len - j->out_off : max;
            memcpy(buf, j->out + j->out_off, n);
            j->out_off += n;
            ret = (long)n;
            break;
        }
        j->out_len = j->out_off = 0;
        if (j->stream_closed) {
            ret = -1;
            break;
        }
        if (!j->stream_opened) {
            j->stream_opened = true;
            stream_open(j);
            continue;
        }
        if (j->cursor < j->n_ev) {
            while (j->cursor < j->n_ev) stream_event(j, &j->ev[j->cursor++]);
            continue;
        }
        if (j->n_done == j->spec.n_choices) {
            if (j->spec.include_usage) {
                json_t *o = chunk(j, NULL);
                json_object_set_new(o, "usage", usage_json(j));
                sse(j, o);
            }
            slm_server_appendf(&j->out, &j->out_len, &j->out_cap, "data: [DONE]\n\n");
            j->stream_closed = true;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += JOB_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0 && alive && !alive(user)) {
            atomic_store(&j->cancel, true);
            ret = -2;
            break;
        }
    }
    pthread_mutex_unlock(&j->mu);
    return ret;
}

void slm_server_job_usage(slm_server_job *j, slm_server_reply *rep) {
    pthread_mutex_lock(&j->mu);
    slm_server_job_totals(j, &rep->prompt_tokens, &rep->gen_tokens, &rep->cached_tokens, &rep->ttft_ms);
    pthread_mutex_unlock(&j->mu);
}
