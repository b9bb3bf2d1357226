/*
 * slmesh/status.h: the status codes every fallible slmesh call returns.
 *
 * Library code never prints and never exits: it returns one of these and, where the caller
 * passes one, writes a one-line detail into a buffer of SLM_ERR_LEN bytes ("tensor
 * blk.0.attn_q.weight: data ends at 1234567 past the file size 1000000"). One table
 * (slm_status_str) maps codes to short text; only the CLI and the server decide what to
 * do with an error. Codes are stable: append new ones before SLM_STATUS_COUNT.
 */
#ifndef SLMESH_STATUS_H
#define SLMESH_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Size of a caller's detail buffer (char err[SLM_ERR_LEN]); longer details are truncated. */
#define SLM_ERR_LEN 256

typedef enum slm_status {
    SLM_OK = 0,
    SLM_ERR_NOMEM,        /* an allocation failed */
    SLM_ERR_IO,           /* open/read/write/mmap failed (errno text in the detail) */
    SLM_ERR_INVALID_ARG,  /* the caller passed something out of contract */
    SLM_ERR_CORRUPT,      /* input data is malformed, truncated or inconsistent */
    SLM_ERR_UNSUPPORTED,  /* well-formed, but a feature/type/version slmesh does not do */
    SLM_ERR_LIMIT,        /* a size or count exceeds a named limit */
    SLM_ERR_NOT_FOUND,    /* a named key, tensor, model or record does not exist */
    SLM_ERR_RANGE,        /* an index or value is outside its valid range */
    SLM_ERR_STATE,        /* the object is not in a state that allows this call */
    SLM_ERR_UTF8,         /* text is not valid UTF-8 */
    SLM_ERR_CANCELLED,    /* the caller's cancel flag was set */
    SLM_ERR_FULL,         /* a bounded resource (context, queue, cache) is full */
    SLM_ERR_DB,           /* the database backend reported an error */
    SLM_ERR_CRYPTO,       /* a cryptographic operation failed */
    SLM_ERR_TAMPERED,     /* an integrity check failed (audit chain, checksum) */
    SLM_ERR_POLICY,       /* a policy rule blocked the request */
    SLM_ERR_INTERNAL,     /* a bug: an invariant did not hold */
    SLM_STATUS_COUNT
} slm_status;

/* Short, static, human-readable text for a status ("corrupt input"); never NULL. */
const char *slm_status_str(slm_status status);

#ifdef __cplusplus
}
#endif
#endif /* SLMESH_STATUS_H */
