/*
 * server/job.h: the job of one API request (job.c): what api.c fills in before submitting
 * its choices to the scheduler, and the events the engine thread leaves for the connection.
 * Thread-safety: see job.c (one mutex per job). Non-goals: parsing requests (api.c).
 */
#ifndef SLMESH_SERVER_JOB_H
#define SLMESH_SERVER_JOB_H

#include "server/server.h"

typedef enum slm_server_job_kind { SLM_SERVER_JOB_CHAT = 0, SLM_SERVER_JOB_COMPLETION, SLM_SERVER_JOB_EMBED } slm_server_job_kind;

/* What the handler decided; copied into the job. */
typedef struct slm_server_job_spec {
    slm_server_job_kind kind;
    slm_server_registry *reg;          /* borrowed */
    const slm_server_model *model;     /* held; the job's free releases it */
    char model_name[SLM_SERVER_NAME_MAX];
    int32_t n_choices;                 /* n_prompts * n_per_prompt */
    int32_t n_prompts, n_per_prompt;
    bool stream, include_usage, logprobs, echo;
    int32_t n_top;
} slm_server_job_spec;

/* One prompt of the request (owned by the job). */
typedef struct slm_server_prompt {
    int32_t *ids;
    size_t n_ids;
    char *text;                        /* the prompt as text (echo), NUL-terminated */
} slm_server_prompt;

typedef enum { SLM_SERVER_EV_TOKEN = 0, SLM_SERVER_EV_PROMPT, SLM_SERVER_EV_DONE } slm_server_ev_kind;

/* One scheduler event, copied. */
typedef struct slm_server_ev {
    int32_t choice;
    slm_server_ev_kind kind;
    int32_t id, index;
    float logprob;
    int32_t n_top;
    slm_token_prob top[SLM_GEN_MAX_TOP];
    char *text;                        /* owned; text to show */
    size_t text_len;
    char *piece;                       /* owned; the token's bytes (with logprobs) */
    size_t piece_len;
} slm_server_ev;

typedef struct slm_server_choice {
    bool done;
    slm_sched_result res;              /* embedding pointer cleared */
    float *embd;                       /* [n_embd] for embed jobs, owned */
    int64_t n_tokens;
} slm_server_choice;

typedef struct slm_server_job {
    slm_server_job_spec spec;
    char id[48];
    long created;
    double t0;
    slm_server_prompt *prompts;        /* [spec.n_prompts], owned */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t refs;
    atomic_bool cancel;
    slm_server_choice *ch;             /* [n_choices], owned */
    int32_t n_done, n_expected;
    slm_server_ev *ev;                 /* [n_ev], owned */
    size_t n_ev, cap_ev, cursor;
    char *out;                         /* SSE bytes not yet sent, owned */
    size_t out_len, out_cap, out_off;
    bool stream_opened, stream_closed;
} slm_server_job;

slm_status slm_server_job_create(const slm_server_job_spec *spec, slm_server_job **out);
/* Submit choice `choice` (cb, user and cancel are the job's). */
slm_status slm_server_job_submit(slm_server_job *j, int32_t choice, const slm_sched_request *rq, char *err);
/* After a failed submission: cancel, and only n_submitted choices will report. */
void slm_server_job_cancel(slm_server_job *j, int32_t n_submitted);
/* Wait for every (expected) choice; polls alive; false when the client went away. */
bool slm_server_job_wait(slm_server_job *j, slm_server_alive_fn alive, void *user);
/* The complete chat.completion / text_completion object (choices done). */
json_t *slm_server_job_final(slm_server_job *j);
const char *slm_server_finish_reason(const slm_sched_result *r);
void slm_server_job_totals(const slm_server_job *j, int64_t *prompt, int64_t *gen, int64_t *cached, double *ttft);

#endif /* SLMESH_SERVER_JOB_H */
