/*  err: the one table of shoal's error codes, their messages and HTTP status.

    Functions that can fail return 0 or a negative code from this table
    (-SH_ENOTFOUND ...). The gateway maps a code to an HTTP status with
    sh_http_status () and never invents a mapping of its own; envelopes carry
    the code in their header so a reply's failure crosses process boundaries
    unchanged.
*/
#ifndef SH_ERR_H
#define SH_ERR_H

#define SH_ERRORS(X) \
    X (SH_EINVAL,      400, "bad request") \
    X (SH_EPROTO,      400, "malformed envelope") \
    X (SH_EJSON,       400, "malformed JSON") \
    X (SH_EUNAUTH,     401, "must provide an API key or an authorization token") \
    X (SH_EFORBIDDEN,  403, "forbidden") \
    X (SH_ENOTFOUND,   404, "not found") \
    X (SH_ENOMETHOD,   405, "method not allowed") \
    X (SH_ETIMEDOUT,   408, "timed out") \
    X (SH_EEXIST,      409, "already exists") \
    X (SH_ETOOBIG,     413, "payload too large") \
    X (SH_EUNPROC,     422, "unprocessable entity") \
    X (SH_EINTERNAL,   500, "internal error") \
    X (SH_EIO,         500, "storage I/O error") \
    X (SH_ENOMEM,      500, "out of memory") \
    X (SH_EUNAVAIL,    503, "service unavailable") \
    X (SH_ENOLEADER,   503, "no consensus leader, retry") \
    X (SH_ENOTIMPL,    501, "not implemented")

typedef enum {
    SH_OK = 0,
#define SH_ERR_ENUM(code, http, msg) code,
    SH_ERR_FIRST_ = 1000,
    SH_ERRORS (SH_ERR_ENUM)
#undef SH_ERR_ENUM
    SH_ERR_LAST_
} sh_err_t;

//  Message for a code (accepts the code or its negation); never NULL.
const char *sh_strerror (int code);
//  HTTP status for a code (accepts the code or its negation); 500 if unknown.
int sh_http_status (int code);
//  The enum name ("SH_ENOTFOUND") for logs; never NULL.
const char *sh_errname (int code);

#endif
