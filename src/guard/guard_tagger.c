/*
 * guard/guard_tagger.c: placeholder until the sequence tagger lands: loading weights is
 * unsupported and training reports so.
 */
#include "guard/guard_int.h"

#include "core/core.h"

slm_status slm_guard_tagger_load(const char *path, guard_tagger **out, char *err) {
    (void)out;
    return slm_errf(err, SLM_ERR_UNSUPPORTED, "%s: tagger not built yet", path);
}
void slm_guard_tagger_destroy(guard_tagger *t) { (void)t; }
uint32_t slm_guard_tagger_types(const guard_tagger *t) { (void)t; return 0; }
slm_status slm_guard_tagger_run(const guard_tagger *t, const char *text, size_t len, uint32_t types,
                                guard_cands *c, char *err) {
    (void)t; (void)text; (void)len; (void)types; (void)c; (void)err;
    return SLM_OK;
}
slm_status slm_guard_train(const slm_guard_train_opts *opts, slm_guard_train_stats *stats, char *err) {
    (void)opts; (void)stats;
    return slm_errf(err, SLM_ERR_UNSUPPORTED, "tagger training not built yet");
}
