/*  err: messages and HTTP statuses for the codes in err.h.  */
#include "common/err.h"
#include <stdlib.h>

typedef struct {
    int code;           //  positive SH_E... value
    int http;           //  HTTP status the gateway answers with
    const char *name;   //  enum name, for logs
    const char *msg;    //  default message
} s_err_row_t;

static const s_err_row_t s_rows [] = {
#define SH_ERR_ROW(code, http, msg) { code, http, #code, msg },
    SH_ERRORS (SH_ERR_ROW)
#undef SH_ERR_ROW
};

static const s_err_row_t *
s_find (int code)
{
    if (code < 0)
        code = -code;
    for (size_t i = 0; i < sizeof (s_rows) / sizeof (s_rows [0]); i++)
        if (s_rows [i].code == code)
            return &s_rows [i];
    return NULL;
}

const char *
sh_strerror (int code)
{
    if (code == 0)
        return "ok";
    const s_err_row_t *row = s_find (code);
    return row ? row->msg : "unknown error";
}

int
sh_http_status (int code)
{
    if (code == 0)
        return 200;
    const s_err_row_t *row = s_find (code);
    return row ? row->http : 500;
}

const char *
sh_errname (int code)
{
    if (code == 0)
        return "SH_OK";
    const s_err_row_t *row = s_find (code);
    return row ? row->name : "SH_E?";
}
