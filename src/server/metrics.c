/*
 * server/metrics.c: the counters and histograms behind GET /metrics, written in the
 * Prometheus text exposition format (version 0.0.4): requests by endpoint and status,
 * time-to-first-token and request-duration histograms, prompt and generated tokens, a
 * tokens-per-second gauge over a sliding window, plus the registry's per-model gauges.
 *
 * Invariants: histogram buckets are cumulative only when written; counts are stored per
 * bucket. Thread-safety: one mutex. Non-goals: labels beyond endpoint/status/model.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "server/server.h"

#define MET_STATUS_MIN 100
#define MET_STATUS_N   500     /* statuses 100..599 */
#define MET_WINDOW_S   10      /* tokens-per-second window (seconds) */

/* Bucket upper bounds in seconds: small models answer in ms, large ones in seconds. */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define MET_NB (sizeof buckets / sizeof buckets[0])

static const char *const ep_names[SLM_EP_COUNT] = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                                   "/v1/models", "/health", "/metrics", "other"};

typedef struct histo {
    uint64_t count[MET_NB + 1]; /* last = +Inf */
    double sum;
    uint64_t n;
} histo;

struct slm_server_metrics {
    pthread_mutex_t mu;
    uint64_t requests[SLM_EP_COUNT][MET_STATUS_N];
    histo ttft, duration;
    uint64_t prompt_tokens, gen_tokens;
    uint64_t win[MET_WINDOW_S]; /* generated tokens per second, ring by second */
    int64_t win_sec[MET_WINDOW_S];
};

bool slm_server_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    size_t need;
    if (!slm_add_size(*len, (size_t)n + 1, &need)) return false;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need) nc *= 2;
        char *b = slm_realloc(*buf, nc);
        if (!b) return false;
        *buf = b, *cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(*buf + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
    return true;
}

slm_status slm_server_metrics_create(slm_server_metrics **out) {
    slm_server_metrics *m = slm_calloc(1, sizeof *m);
    if (!m) return SLM_ERR_NOMEM;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return SLM_OK;
}

void slm_server_metrics_destroy(slm_server_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    slm_free(m);
}

static void observe(histo *h, double s) {
    size_t i = 0;
    while (i < MET_NB && s > buckets[i]) i++;
    h->count[i]++;
    h->sum += s;
    h->n++;
}

void slm_server_metrics_request(slm_server_metrics *m, slm_server_endpoint ep, int status, double ttft_ms,
                                double total_ms, int64_t prompt_tokens, int64_t gen_tokens) {
    pthread_mutex_lock(&m->mu);
    if (status >= MET_STATUS_MIN && status < MET_STATUS_MIN + MET_STATUS_N) m->requests[ep][status - MET_STATUS_MIN]++;
    if (ep == SLM_EP_CHAT || ep == SLM_EP_COMPLETIONS || ep == SLM_EP_EMBEDDINGS) {
        observe(&m->duration, total_ms / 1e3);
        if (ttft_ms >= 0) observe(&m->ttft, ttft_ms / 1e3);
        m->prompt_tokens += (uint64_t)(prompt_tokens > 0 ? prompt_tokens : 0);
        m->gen_tokens += (uint64_t)(gen_tokens > 0 ? gen_tokens : 0);
        const int64_t sec = (int64_t)(slm_sched_now_ms() / 1e3);
        const int k = (int)(sec % MET_WINDOW_S);
        if (m->win_sec[k] != sec) m->win_sec[k] = sec, m->win[k] = 0;
        m->win[k] += (uint64_t)(gen_tokens > 0 ? gen_tokens : 0);
    }
    pthread_mutex_unlock(&m->mu);
}

static void write_histo(char **b, size_t *len, size_t *cap, const char *name, const char *help, const histo *h) {
    slm_server_appendf(b, len, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < MET_NB; i++) {
        cum += h->count[i];
        slm_server_appendf(b, len, cap, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i], (unsigned long long)cum);
    }
    cum += h->count[MET_NB];
    slm_server_appendf(b, len, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                       (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->n);
}

char *slm_server_metrics_text(slm_server_metrics *m, slm_server_registry *r, size_t *out_len) {
    char *b = NULL;
    size_t len = 0, cap = 0;
    pthread_mutex_lock(&m->mu);
    slm_server_appendf(&b, &len, &cap, "# HELP slmesh_requests_total HTTP requests by endpoint and status\n"
                                       "# TYPE slmesh_requests_total counter\n");
    for (int e = 0; e < SLM_EP_COUNT; e++)
        for (int s = 0; s < MET_STATUS_N; s++)
            if (m->requests[e][s])
                slm_server_appendf(&b, &len, &cap, "slmesh_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                                   ep_names[e], s + MET_STATUS_MIN, (unsigned long long)m->requests[e][s]);
    write_histo(&b, &len, &cap, "slmesh_time_to_first_token_seconds", "time from request to the first token", &m->ttft);
    write_histo(&b, &len, &cap, "slmesh_request_duration_seconds", "time from request to the last byte", &m->duration);
    const int64_t sec = (int64_t)(slm_sched_now_ms() / 1e3);
    uint64_t recent = 0;
    for (int k = 0; k < MET_WINDOW_S; k++)
        if (sec - m->win_sec[k] < MET_WINDOW_S) recent += m->win[k];
    slm_server_appendf(&b, &len, &cap,
                       "# HELP slmesh_prompt_tokens_total prompt tokens of finished requests\n"
                       "# TYPE slmesh_prompt_tokens_total counter\nslmesh_prompt_tokens_total %llu\n"
                       "# HELP slmesh_generated_tokens_total generated tokens of finished requests\n"
                       "# TYPE slmesh_generated_tokens_total counter\nslmesh_generated_tokens_total %llu\n"
                       "# HELP slmesh_tokens_per_second generated tokens per second over the last %d s\n"
                       "# TYPE slmesh_tokens_per_second gauge\nslmesh_tokens_per_second %.3f\n",
                       (unsigned long long)m->prompt_tokens, (unsigned long long)m->gen_tokens, MET_WINDOW_S,
                       (double)recent / MET_WINDOW_S);
    pthread_mutex_unlock(&m->mu);
    slm_server_registry_metrics(r, &b, &len, &cap);
    *out_len = len;
    return b;
}
