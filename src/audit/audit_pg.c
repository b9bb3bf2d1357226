/*
 * audit/audit_pg.c: the PostgreSQL audit log store (libpq). Placeholder until the backend
 * lands: connection strings are recognised and refused with a clear status.
 */
#include "audit/audit_int.h"

#include "core/core.h"

slm_status slm_audit_pg_open(const char *conninfo, audit_backend **be,
                             const audit_backend_ops **ops, char *err) {
    (void)conninfo;
    (void)ops;
    *be = NULL;
    return slm_errf(err, SLM_ERR_UNSUPPORTED, "PostgreSQL backend not built yet");
}
