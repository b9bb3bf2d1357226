/*
 * server/registry.c: the models a server offers: the config file (docs/server.md), loading
 * on first use (one scheduler and one engine thread per model), keep-alive, and
 * least-recently-used eviction of idle models under a memory budget.
 *
 * States: UNLOADED -> LOADING (one thread loads, others wait) -> READY (or FAILED, retried
 * on the next request) -> UNLOADED when evicted or idle past keep-alive. A READY model with
 * holders (refs > 0) is never unloaded.
 * Thread-safety: one mutex and condition variable over every entry; loading happens outside
 * the mutex. Non-goals: reloading a changed config, per-model API keys.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "server/server.h"

#define REG_ENGINE_WAIT_MS 100 /* an idle engine thread re-checks its stop flag this often */

/* ---- config ------------------------------------------------------------------------------- */

static void model_cfg_free(slm_server_model_cfg *m) {
    slm_free(m->name), slm_free(m->path), slm_free(m->chat_template);
    for (int32_t i = 0; i < m->n_aliases; i++) slm_free(m->aliases[i]);
}

void slm_server_config_free(slm_server_config *cfg) {
    for (int32_t i = 0; cfg->models && i < cfg->n_models; i++) model_cfg_free(&cfg->models[i]);
    slm_free(cfg->models);
    cfg->models = NULL;
    cfg->n_models = 0;
}

static char *name_from_path(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    return slm_strndup(b, n);
}

slm_status slm_server_config_single(const char *path, const slm_sched_params *sp, slm_server_config *cfg, char *err) {
    cfg->models = slm_calloc(1, sizeof *cfg->models);
    if (!cfg->models) return slm_errf(err, SLM_ERR_NOMEM, "config");
    cfg->n_models = 1;
    slm_server_model_cfg *m = &cfg->models[0];
    m->name = name_from_path(path);
    m->path = slm_strdup(path);
    m->sched = *sp;
    m->sampling = slm_sampling_default();
    if (!m->name || !m->path) return slm_errf(err, SLM_ERR_NOMEM, "config");
    return SLM_OK;
}

static bool get_num(json_t *o, const char *key, double lo, double hi, double *out, char *err, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!v) return true;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"%s\" must be a number in [%g, %g]", where, key, lo, hi);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static slm_status parse_model(json_t *o, int idx, slm_server_model_cfg *m, char *err) {
    char where[64];
    snprintf(where, sizeof where, "models[%d]", idx);
    if (!json_is_object(o)) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: not an object", where);
    const char *path = json_string_value(json_object_get(o, "path"));
    if (!path) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"path\" (string) is required", where);
    const char *name = json_string_value(json_object_get(o, "name"));
    m->path = slm_strdup(path);
    m->name = name ? slm_strdup(name) : name_from_path(path);
    if (!m->path || !m->name) return slm_errf(err, SLM_ERR_NOMEM, "config");
    if (strlen(m->name) == 0 || strlen(m->name) >= SLM_SERVER_NAME_MAX)
        return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: name must be 1..%d bytes", where, SLM_SERVER_NAME_MAX - 1);
    json_t *al = json_object_get(o, "aliases");
    if (al && (!json_is_array(al) || json_array_size(al) > SLM_SERVER_MAX_ALIASES))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"aliases\" must be an array of at most %d strings", where,
                        SLM_SERVER_MAX_ALIASES);
    size_t i;
    json_t *v;
    json_array_foreach(al, i, v) {
        if (!json_is_string(v)) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: aliases[%zu] is not a string", where, i);
        if (!(m->aliases[m->n_aliases++] = slm_strdup(json_string_value(v)))) return slm_errf(err, SLM_ERR_NOMEM, "config");
    }
    const char *tpl = json_string_value(json_object_get(o, "chat_template"));
    if (tpl) {
        slm_chat_template t;
        if (slm_chat_template_from_name(tpl, &t, err) != SLM_OK) return SLM_ERR_INVALID_ARG;
        if (!(m->chat_template = slm_strdup(tpl))) return slm_errf(err, SLM_ERR_NOMEM, "config");
    }
    /* Ollama's and llama-cpp-python's names: use_mmap (default true), use_mlock (false) */
    const json_t *mm = json_object_get(o, "use_mmap"), *ml = json_object_get(o, "use_mlock");
    if ((mm && !json_is_boolean(mm)) || (ml && !json_is_boolean(ml)))
        return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"use_mmap\" and \"use_mlock\" must be true or false", where);
    m->load.no_mmap = mm && json_is_false(mm);
    m->load.mlock = ml && json_is_true(ml);
    double ctx = 0, par = 0, queue = 0, threads = 0, keep = 0, cache = 0;
    if (!get_num(o, "ctx_size", 0, 1 << 22, &ctx, err, where) || !get_num(o, "parallel", 0, SLM_SCHED_MAX_PARALLEL, &par, err, where) ||
        !get_num(o, "cache_tokens", 0, 1 << 22, &cache, err, where) ||
        !get_num(o, "queue", 0, SLM_SCHED_MAX_QUEUE, &queue, err, where) ||
        !get_num(o, "threads", 0, 256, &threads, err, where) || !get_num(o, "keep_alive_s", 0, 1e9, &keep, err, where))
        return SLM_ERR_INVALID_ARG;
    m->sched.n_ctx = (int32_t)ctx, m->sched.n_parallel = (int32_t)par, m->sched.n_queue = (int32_t)queue;
    m->sched.n_threads = (int32_t)threads;
    m->sched.cache_tokens = (int32_t)cache;
    m->keep_alive_s = keep;
    m->sampling = slm_sampling_default();
    json_t *s = json_object_get(o, "sampling");
    if (s && !json_is_object(s)) return slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"sampling\" must be an object", where);
    if (s) {
        double t = m->sampling.temperature, tp = m->sampling.top_p, mp = m->sampling.min_p, tk = m->sampling.top_k;
        double rp = m->sampling.repeat_penalty;
        snprintf(where, sizeof where, "models[%d].sampling", idx);
        if (!get_num(s, "temperature", 0, 2, &t, err, where) || !get_num(s, "top_p", 0, 1, &tp, err, where) ||
            !get_num(s, "min_p", 0, 1, &mp, err, where) || !get_num(s, "top_k", 0, 1 << 20, &tk, err, where) ||
            !get_num(s, "repeat_penalty", 0.01, 10, &rp, err, where))
            return SLM_ERR_INVALID_ARG;
        m->sampling.temperature = (float)t, m->sampling.top_p = tp > 0 ? (float)tp : 1.0f, m->sampling.min_p = (float)mp;
        m->sampling.top_k = (int32_t)tk, m->sampling.repeat_penalty = (float)rp;
    }
    return SLM_OK;
}

static slm_status config_from_json(json_t *root, const char *path, slm_server_config *cfg, char *err);

slm_status slm_server_config_load(const char *path, slm_server_config *cfg, char *err) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return slm_errf(err, SLM_ERR_CORRUPT, "%s:%d: %s", path, je.line, je.text);
    const slm_status st = config_from_json(root, path, cfg, err);
    json_decref(root);
    return st;
}

slm_status slm_server_config_parse(const char *text, size_t len, slm_server_config *cfg, char *err) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return slm_errf(err, SLM_ERR_CORRUPT, "config:%d: %s", je.line, je.text);
    const slm_status st = config_from_json(root, "config", cfg, err);
    json_decref(root);
    return st;
}

static slm_status config_from_json(json_t *root, const char *path, slm_server_config *cfg, char *err) {
    slm_status st = SLM_OK;
    json_t *models = json_object_get(root, "models");
    if (!json_is_array(models) || json_array_size(models) == 0 || json_array_size(models) > SLM_SERVER_MAX_MODELS) {
        st = slm_errf(err, SLM_ERR_INVALID_ARG, "%s: \"models\" must be an array of 1..%d models", path,
                      SLM_SERVER_MAX_MODELS);
        goto done;
    }
    double budget_mb = 0;
    if (!get_num(root, "memory_budget_mb", 0, 1e9, &budget_mb, err, path)) {
        st = SLM_ERR_INVALID_ARG;
        goto done;
    }
    cfg->memory_budget = (size_t)(budget_mb * 1048576.0);
    cfg->models = slm_calloc(json_array_size(models), sizeof *cfg->models);
    if (!cfg->models) {
        st = slm_errf(err, SLM_ERR_NOMEM, "config");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(models) && st == SLM_OK; i++) {
        cfg->n_models = (int32_t)i + 1;
        st = parse_model(json_array_get(models, i), (int)i, &cfg->models[i], err);
    }
    for (int32_t i = 0; st == SLM_OK && i < cfg->n_models; i++)
        for (int32_t j = 0; j < i; j++)
            if (!strcmp(cfg->models[i].name, cfg->models[j].name))
                st = slm_errf(err, SLM_ERR_INVALID_ARG, "%s: model name \"%s\" is used twice", path, cfg->models[i].name);
done:
    if (st) slm_server_config_free(cfg);
    return st;
}

/* ---- registry ------------------------------------------------------------------------------ */

typedef enum { M_UNLOADED = 0, M_LOADING, M_READY, M_FAILED } mstate;

typedef struct rmodel {
    slm_server_model pub;   /* m, sched owned when READY */
    mstate state;
    int32_t refs;
    double last_used;       /* slm_sched_now_ms */
    size_t bytes;           /* weights + KV when loaded */
    pthread_t engine;
    atomic_bool stop;
    char err[SLM_ERR_LEN];
} rmodel;

struct slm_server_registry {
    const slm_server_config *cfg; /* borrowed */
    rmodel *models;               /* [n], owned */
    int32_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed;
};

slm_status slm_server_registry_create(const slm_server_config *cfg, slm_server_registry **out, char *err) {
    slm_server_registry *r = slm_calloc(1, sizeof *r);
    if (r) r->models = slm_calloc((size_t)cfg->n_models, sizeof *r->models);
    if (!r || !r->models) {
        slm_free(r);
        return slm_errf(err, SLM_ERR_NOMEM, "registry");
    }
    r->cfg = cfg;
    r->n = cfg->n_models;
    for (int32_t i = 0; i < r->n; i++) r->models[i].pub.cfg = &cfg->models[i];
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    *out = r;
    return SLM_OK;
}

static void *engine_main(void *arg) {
    rmodel *m = arg;
    while (!atomic_load(&m->stop)) slm_sched_step(m->pub.sched, REG_ENGINE_WAIT_MS, NULL);
    return NULL;
}

/* Stop the engine thread and free the model (called without the mutex, refs == 0). */
static void unload(rmodel *m) {
    if (m->pub.sched) {
        atomic_store(&m->stop, true);
        slm_sched_wake(m->pub.sched);
        pthread_join(m->engine, NULL);
    }
    slm_sched_destroy(m->pub.sched);
    slm_model_close(m->pub.m);
    m->pub.sched = NULL, m->pub.m = NULL;
}

void slm_server_registry_destroy(slm_server_registry *r) {
    if (!r) return;
    for (int32_t i = 0; i < r->n; i++) unload(&r->models[i]);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    slm_free(r->models);
    slm_free(r);
}

static slm_chat_template pick_template(const slm_server_model_cfg *c, const slm_model *m) {
    slm_chat_template t = SLM_CHAT_CHATML; /* llama-server's fallback */
    if (c->chat_template && slm_chat_template_from_name(c->chat_template, &t, NULL) == SLM_OK) return t;
    const char *jinja;
    size_t len;
    if (slm_model_meta_str(m, SLM_CHAT_GGUF_KEY, &jinja, &len) == SLM_OK &&
        slm_chat_template_detect(jinja, len, &t, NULL) == SLM_OK)
        return t;
    return SLM_CHAT_CHATML;
}

static slm_status load(rmodel *m, char *err) {
    const slm_server_model_cfg *c = m->pub.cfg;
    slm_status st = slm_model_open(c->path, &c->load, &m->pub.m, err);
    if (st == SLM_OK) st = slm_sched_create(m->pub.m, &c->sched, &m->pub.sched, err);
    if (st == SLM_OK) {
        atomic_store(&m->stop, false);
        if (pthread_create(&m->engine, NULL, engine_main, m) != 0) {
            slm_sched_destroy(m->pub.sched);
            m->pub.sched = NULL;
            st = slm_errf(err, SLM_ERR_NOMEM, "engine thread");
        }
    }
    if (st) {
        slm_model_close(m->pub.m);
        m->pub.m = NULL;
        return st;
    }
    slm_model_desc d;
    slm_model_describe(m->pub.m, &d);
    slm_sched_stats ss;
    slm_sched_stats_get(m->pub.sched, &ss);
    m->bytes = (size_t)d.weight_bytes + ss.kv_bytes;
    m->pub.tpl = pick_template(c, m->pub.m);
    m->pub.n_ctx_slot = slm_sched_n_ctx_slot(m->pub.sched);
    return SLM_OK;
}

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* Unload idle models, least recently used first, until `need` more bytes fit the budget.
 * Called with the mutex held; releases it around each unload. */
static void evict_for(slm_server_registry *r, const rmodel *keep, size_t need) {
    if (r->cfg->memory_budget == 0) return;
    for (;;) {
        size_t used = 0;
        rmodel *victim = NULL;
        for (int32_t i = 0; i < r->n; i++) {
            rmodel *m = &r->models[i];
            if (m->state != M_READY) continue;
            used += m->bytes;
            if (m != keep && m->refs == 0 && (!victim || m->last_used < victim->last_used)) victim = m;
        }
        if (used + need <= r->cfg->memory_budget || !victim) return;
        victim->state = M_LOADING; /* nobody may take it while it goes */
        pthread_mutex_unlock(&r->mu);
        unload(victim);
        pthread_mutex_lock(&r->mu);
        victim->state = M_UNLOADED;
        pthread_cond_broadcast(&r->cv);
    }
}

static rmodel *find(slm_server_registry *r, const char *name) {
    if (!name || !*name) return &r->models[0];
    for (int32_t i = 0; i < r->n; i++) {
        const slm_server_model_cfg *c = r->models[i].pub.cfg;
        if (!strcmp(c->name, name)) return &r->models[i];
        for (int32_t j = 0; j < c->n_aliases; j++)
            if (!strcmp(c->aliases[j], name)) return &r->models[i];
    }
    return NULL;
}

slm_status slm_server_registry_acquire(slm_server_registry *r, const char *name, const slm_server_model **out,
                                       char *err) {
    *out = NULL;
    pthread_mutex_lock(&r->mu);
    rmodel *m = find(r, name);
    slm_status st = SLM_OK;
    if (!m) {
        st = slm_errf(err, SLM_ERR_NOT_FOUND, "The model '%s' does not exist", name);
        goto done;
    }
    for (;;) {
        if (r->closed) {
            st = slm_errf(err, SLM_ERR_STATE, "the server is shutting down");
            goto done;
        }
        if (m->state == M_READY) break;
        if (m->state == M_LOADING) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        m->state = M_LOADING;
        evict_for(r, m, file_size(m->pub.cfg->path));
        pthread_mutex_unlock(&r->mu);
        char lerr[SLM_ERR_LEN] = "";
        st = load(m, lerr);
        pthread_mutex_lock(&r->mu);
        m->state = st == SLM_OK ? M_READY : M_FAILED;
        snprintf(m->err, sizeof m->err, "%s", lerr);
        pthread_cond_broadcast(&r->cv);
        if (st) {
            slm_errf(err, st, "model '%s' failed to load: %s", m->pub.cfg->name, lerr);
            goto done;
        }
    }
    m->refs++;
    m->last_used = slm_sched_now_ms();
    *out = &m->pub;
done:
    pthread_mutex_unlock(&r->mu);
    return st;
}

void slm_server_registry_release(slm_server_registry *r, const slm_server_model *pm) {
    if (!pm) return;
    pthread_mutex_lock(&r->mu);
    rmodel *m = (rmodel *)pm; /* pub is the first member */
    m->refs--;
    m->last_used = slm_sched_now_ms();
    pthread_mutex_unlock(&r->mu);
}

bool slm_server_registry_ready(slm_server_registry *r) {
    pthread_mutex_lock(&r->mu);
    const bool ok = r->models[0].state == M_READY;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void slm_server_registry_preload(slm_server_registry *r) {
    const slm_server_model *m;
    if (slm_server_registry_acquire(r, NULL, &m, NULL) == SLM_OK) slm_server_registry_release(r, m);
}

void slm_server_registry_tick(slm_server_registry *r) {
    pthread_mutex_lock(&r->mu);
    const double now = slm_sched_now_ms();
    for (int32_t i = 0; i < r->n; i++) {
        rmodel *m = &r->models[i];
        const double keep = m->pub.cfg->keep_alive_s;
        if (m->state != M_READY || m->refs > 0 || keep <= 0 || now - m->last_used < keep * 1e3) continue;
        m->state = M_LOADING;
        pthread_mutex_unlock(&r->mu);
        unload(m);
        pthread_mutex_lock(&r->mu);
        m->state = M_UNLOADED;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

void slm_server_registry_close(slm_server_registry *r, bool cancel_all) {
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    for (int32_t i = 0; i < r->n; i++) {
        rmodel *m = &r->models[i];
        if (m->state != M_READY) continue;
        slm_sched_close(m->pub.sched);
        if (cancel_all) slm_sched_cancel_all(m->pub.sched);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void slm_server_registry_list(slm_server_registry *r, json_t *arr) {
    for (int32_t i = 0; i < r->n; i++) {
        const slm_server_model_cfg *c = r->models[i].pub.cfg;
        json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:s}", "id", c->name, "object", "model", "created", 0,
                                             "owned_by", "slmesh"));
        for (int32_t j = 0; j < c->n_aliases; j++)
            json_array_append_new(arr, json_pack("{s:s,s:s,s:i,s:s}", "id", c->aliases[j], "object", "model",
                                                 "created", 0, "owned_by", "slmesh"));
    }
}

void slm_server_registry_metrics(slm_server_registry *r, char **buf, size_t *len, size_t *cap) {
    static const char *const gauges[][2] = {
        {"slmesh_model_loaded", "1 when the model is in memory"},
        {"slmesh_queue_depth", "requests waiting for a slot"},
        {"slmesh_busy_slots", "slots serving a request"},
        {"slmesh_slots", "slots (parallel sequences)"},
        {"slmesh_kv_cells_used", "KV cache cells in use"},
        {"slmesh_kv_cells", "KV cache cells"},
        {"slmesh_prefix_cache_tokens", "tokens held by prefix-cache entries"},
    };
    static const char *const counters[][2] = {
        {"slmesh_prefix_cache_lookups_total", "generation requests that looked for a cached prefix"},
        {"slmesh_prefix_cache_hits_total", "requests that reused a cached prefix"},
        {"slmesh_prefix_cache_tokens_reused_total", "prompt tokens reused from the prefix cache"},
        {"slmesh_decode_steps_total", "batched decode steps"},
    };
    pthread_mutex_lock(&r->mu);
    slm_sched_stats st[SLM_SERVER_MAX_MODELS];
    bool loaded[SLM_SERVER_MAX_MODELS];
    for (int32_t i = 0; i < r->n; i++) {
        loaded[i] = r->models[i].state == M_READY;
        memset(&st[i], 0, sizeof st[i]);
        if (loaded[i]) slm_sched_stats_get(r->models[i].pub.sched, &st[i]);
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        slm_server_appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g][0], gauges[g][1], gauges[g][0]);
        for (int32_t i = 0; i < r->n; i++) {
            const int64_t v[] = {loaded[i], st[i].queue_depth, st[i].busy_slots, st[i].n_parallel, st[i].kv_used,
                                 st[i].kv_cells, st[i].cache_tokens};
            slm_server_appendf(buf, len, cap, "%s{model=\"%s\"} %lld\n", gauges[g][0], r->models[i].pub.cfg->name,
                               (long long)v[g]);
        }
    }
    for (size_t g = 0; g < sizeof counters / sizeof counters[0]; g++) {
        slm_server_appendf(buf, len, cap, "# HELP %s %s\n# TYPE %s counter\n", counters[g][0], counters[g][1],
                           counters[g][0]);
        for (int32_t i = 0; i < r->n; i++) {
            const uint64_t v[] = {st[i].prefix_lookups, st[i].prefix_hits, st[i].cached_tokens, st[i].steps};
            slm_server_appendf(buf, len, cap, "%s{model=\"%s\"} %llu\n", counters[g][0], r->models[i].pub.cfg->name,
                               (unsigned long long)v[g]);
        }
    }
}
