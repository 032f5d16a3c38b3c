/*  gw_http: the gateway's HTTP server. libmicrohttpd with one thread per
    connection: a handler may block on calls to other actors without holding
    up anyone else, and each connection owns its zmq sockets (gw_conn_t, made
    and freed through MHD's connection notifications).

    This module owns what every route shares: the route table ({param}
    segments, URL-decoded), API key checks, CORS, the request body (bounded
    by service.max_request_size_mb, never read past the limit), JSON parsing,
    ?timeout=, Qdrant's response envelope {"result", "status", "time"} and
    error envelope {"status": {"error"}, "time"}, and the per-route response
    statistics that /telemetry and /metrics render.

    Responses are serialised here rather than with json_dumps so that reals
    come out in their shortest round-trip form (0.1, not
    0.10000000000000001) and keep a ".0" when integral, as Qdrant's serde
    output does.
*/
#include "actors/gateway/gw.h"
#include "common/hex.h"
#include "common/fmtnum.h"
#include "common/jsonx.h"
#include "common/log.h"
#include <microhttpd.h>
#include <sodium.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

//  Default deadline of a request without ?timeout=, as Qdrant's.
#define S_DEFAULT_TIMEOUT_S 60
//  Longest ?timeout= honoured (a day): keeps deadline arithmetic far from overflow.
#define S_MAX_TIMEOUT_S 86400
//  Idle keep-alive connections are closed after this many seconds.
#define S_IDLE_TIMEOUT_S 120
//  Most query parameters kept per request; more are ignored.
#define S_MAX_QUERY 32
//  Most path segments a URL may have (longer paths match no route anyway).
#define S_MAX_SEGS 16

const double GW_HIST_LE [GW_HIST_BUCKETS] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0
};

//  The statuses counted one by one; anything else is counted by class.
static const struct {
    int code;
    const char *label;
} s_codes [] = {
    { 200, "200" }, { 202, "202" }, { 400, "400" }, { 401, "401" }, { 403, "403" },
    { 404, "404" }, { 405, "405" }, { 408, "408" }, { 409, "409" }, { 413, "413" },
    { 422, "422" }, { 429, "429" }, { 500, "500" }, { 501, "501" }, { 503, "503" },
    { 504, "504" },
};
#define S_N_CODES (sizeof (s_codes) / sizeof (s_codes [0]))
static const char *s_class_labels [5] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
#define S_N_SLOTS (S_N_CODES + 5)

//  Response statistics of one (route, status) slot; updated by many
//  connection threads at once, hence atomics.
typedef struct {
    atomic_uint_fast64_t count;         //  responses
    atomic_uint_fast64_t total_us;      //  summed duration
    atomic_uint_fast64_t min_us;        //  shortest (UINT64_MAX before the first)
    atomic_uint_fast64_t max_us;        //  longest
    atomic_uint_fast64_t buckets [GW_HIST_BUCKETS];   //  responses <= GW_HIST_LE[i]
} s_stat_t;

typedef struct {
    gw_route_t route;                   //  as registered (static strings)
    char *segs [S_MAX_SEGS];            //  the pattern split at '/'
    size_t n_segs;                      //  segments in segs
    size_t n_literals;                  //  segments that are not {params}
    s_stat_t stats [S_N_SLOTS];         //  per status slot
} s_route_t;

struct _gw_http_t {
    gw_t *gw;                           //  the gateway (handlers reach it via req->gw)
    const config_t *config;             //  borrowed; outlives us
    struct MHD_Daemon *daemon;          //  the server, NULL until started
    s_route_t **routes;                 //  route table, fixed once serving
    size_t n_routes;                    //  routes in use
    size_t cap_routes;                  //  routes allocated
    size_t max_body;                    //  largest request body accepted (bytes)
    bool has_keys;                      //  an API key is configured
    uint8_t rw_hash [32];               //  hash of service.api_key (if set)
    bool has_rw;                        //  service.api_key is set
    uint8_t ro_hash [32];               //  hash of service.read_only_api_key
    bool has_ro;                        //  service.read_only_api_key is set
};

//  One HTTP request from its first callback to its completion.
typedef struct {
    gw_req_t req;                       //  what handlers see; first so casts work
    gw_http_t *http;                    //  the server
    s_route_t *route;                   //  matched route, NULL for 404/405/OPTIONS
    uint64_t start_us;                  //  monotonic start, for "time" and stats
    char *body;                         //  accumulated body (NUL-terminated)
    size_t body_len;                    //  bytes in body
    size_t body_cap;                    //  bytes allocated for body
    bool too_big;                       //  body passed the limit: discarded, 413
    bool answered;                      //  a response is queued already
    bool early;                         //  answered before the body (404, 401...)
    bool preflight;                     //  a CORS preflight to answer
    char *path_buf;                     //  decoded path segments, NUL-separated
    char *qkeys [S_MAX_QUERY];          //  decoded query parameter names
    char *qvals [S_MAX_QUERY];          //  decoded values ("" when absent)
    size_t n_query;                     //  parameters kept
} s_request_t;

//  --- small helpers ---------------------------------------------------------

static uint64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

//  Percent-decodes in[0..len) into out (room for len + 1). A malformed escape
//  is kept literally, as browsers and MHD do. Returns the decoded length, or
//  -1 if the text decodes to a NUL byte (it could not be a C string).
static ssize_t
s_pct_decode (const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in [i] == '%' && i + 2 < len && hex_value (in [i + 1]) >= 0
            && hex_value (in [i + 2]) >= 0) {
            char c = (char) (hex_value (in [i + 1]) * 16 + hex_value (in [i + 2]));
            if (c == 0)
                return -1;
            out [o++] = c;
            i += 2;
        }
        else
            out [o++] = in [i];
    }
    out [o] = 0;
    return (ssize_t) o;
}

//  --- JSON output -------------------------------------------------------------
//  common/jsonx.h writes the text: reals in their shortest round-trip form,
//  ".0" kept on integral values, as Qdrant's serde output does.

typedef jsonx_buf_t s_buf_t;

static void
s_buf_puts (s_buf_t *b, const char *s)
{
    jsonx_write_raw (b, s, strlen (s));
}

static void
s_put_real (s_buf_t *b, double v)
{
    char tmp [FMTNUM_SIZE];
    size_t n = fmtnum_double (v, tmp);
    jsonx_write_raw (b, tmp, n);
}

//  --- the handler API (gw.h) -----------------------------------------------

const char *
gw_query (gw_req_t *req, const char *name)
{
    s_request_t *r = (s_request_t *) req;
    for (size_t i = 0; i < r->n_query; i++)
        if (streq (r->qkeys [i], name))
            return r->qvals [i];
    return NULL;
}

bool
gw_query_bool (gw_req_t *req, const char *name, bool dflt, bool *bad)
{
    const char *value = gw_query (req, name);
    if (!value || !*value)
        return dflt;
    if (streq (value, "true"))
        return true;
    if (streq (value, "false"))
        return false;
    if (bad)
        *bad = true;
    return dflt;
}

const float *
gw_body_floats (gw_req_t *req, const json_t *value, size_t *count)
{
    return jsonx_packed_find (req->packed, value, count);
}

static void
s_reset_answer (gw_req_t *req)
{
    if (req->result)
        json_decref (req->result);
    req->result = NULL;
    free (req->error);
    req->error = NULL;
    free (req->text);
    req->text = NULL;
    req->content_type = NULL;
}

void
gw_ok (gw_req_t *req, json_t *result)
{
    s_reset_answer (req);
    req->status = 200;
    req->result = result ? result : json_null ();
}

static void
s_fail_v (gw_req_t *req, int http_status, const char *fmt, va_list args)
{
    s_reset_answer (req);
    req->status = http_status;
    if (vasprintf (&req->error, fmt, args) < 0)
        req->error = NULL;
}

void
gw_fail (gw_req_t *req, int code, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_fail_v (req, sh_http_status (code), fmt, args);
    va_end (args);
}

void
gw_fail_http (gw_req_t *req, int http_status, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_fail_v (req, http_status, fmt, args);
    va_end (args);
}

void
gw_text (gw_req_t *req, char *text, const char *content_type)
{
    s_reset_answer (req);
    req->status = 200;
    req->text = text;
    req->content_type = content_type;
}

void
gw_fail_reply (gw_req_t *req, envelope_t *reply)
{
    int status = envelope_status (reply);
    if (status == 0)
        status = -SH_EINTERNAL;
    gw_fail (req, status, "%s", envelope_error (reply));
}

//  --- statistics -----------------------------------------------------------

static size_t
s_slot_of (int status)
{
    for (size_t i = 0; i < S_N_CODES; i++)
        if (s_codes [i].code == status)
            return i;
    int cls = status / 100;
    if (cls < 1)
        cls = 1;
    if (cls > 5)
        cls = 5;
    return S_N_CODES + (size_t) (cls - 1);
}

static const char *
s_slot_label (size_t slot)
{
    return slot < S_N_CODES ? s_codes [slot].label : s_class_labels [slot - S_N_CODES];
}

static void
s_record (s_route_t *route, int status, uint64_t us)
{
    s_stat_t *st = &route->stats [s_slot_of (status)];
    atomic_fetch_add (&st->count, 1);
    atomic_fetch_add (&st->total_us, us);
    uint_fast64_t seen = atomic_load (&st->min_us);
    while (us < seen && !atomic_compare_exchange_weak (&st->min_us, &seen, us))
        ;
    seen = atomic_load (&st->max_us);
    while (us > seen && !atomic_compare_exchange_weak (&st->max_us, &seen, us))
        ;
    double secs = (double) us / 1e6;
    for (size_t i = 0; i < GW_HIST_BUCKETS; i++)
        if (secs <= GW_HIST_LE [i])
            atomic_fetch_add (&st->buckets [i], 1);
}

void
gw_http_stats (gw_http_t *self, void (*fn) (const gw_stat_t *stat, void *arg), void *arg)
{
    for (size_t r = 0; r < self->n_routes; r++) {
        s_route_t *route = self->routes [r];
        for (size_t slot = 0; slot < S_N_SLOTS; slot++) {
            s_stat_t *st = &route->stats [slot];
            gw_stat_t out = {
                .method = route->route.method,
                .pattern = route->route.pattern,
                .status = s_slot_label (slot),
                .count = atomic_load (&st->count),
            };
            if (out.count == 0)
                continue;
            out.total_us = atomic_load (&st->total_us);
            out.min_us = atomic_load (&st->min_us);
            out.max_us = atomic_load (&st->max_us);
            if (out.min_us > out.max_us)
                out.min_us = out.max_us;    //  raced with the first response
            int code = slot < S_N_CODES ? s_codes [slot].code : (int) (slot - S_N_CODES + 1) * 100;
            out.fail_count = code >= 400 ? out.count : 0;
            for (size_t i = 0; i < GW_HIST_BUCKETS; i++)
                out.buckets [i] = atomic_load (&st->buckets [i]);
            fn (&out, arg);
        }
    }
}

//  --- routes ------------------------------------------------------------------

static bool
s_is_param (const char *seg)
{
    size_t len = strlen (seg);
    return len >= 2 && seg [0] == '{' && seg [len - 1] == '}';
}

static void
s_add_route (const gw_route_t *route, void *arg)
{
    gw_http_t *self = (gw_http_t *) arg;
    s_route_t *r = (s_route_t *) zmalloc (sizeof (s_route_t));
    assert (r);
    r->route = *route;
    //  Split the pattern; patterns are ours, so a bad one is a programming error.
    const char *p = route->pattern;
    assert (p [0] == '/');
    p++;
    while (*p) {
        const char *slash = strchr (p, '/');
        size_t len = slash ? (size_t) (slash - p) : strlen (p);
        assert (r->n_segs < S_MAX_SEGS);
        r->segs [r->n_segs++] = strndup (p, len);
        p += len;
        if (*p == '/')
            p++;
    }
    for (size_t i = 0; i < r->n_segs; i++)
        if (!s_is_param (r->segs [i]))
            r->n_literals++;
    for (size_t i = 0; i < S_N_SLOTS; i++)
        atomic_store (&r->stats [i].min_us, UINT64_MAX);
    if (self->n_routes == self->cap_routes) {
        self->cap_routes = self->cap_routes ? self->cap_routes * 2 : 64;
        self->routes = (s_route_t **) realloc (self->routes,
                                               self->cap_routes * sizeof (s_route_t *));
        assert (self->routes);
    }
    self->routes [self->n_routes++] = r;
}

//  Matches the decoded segments against route; fills params on a match.
static bool
s_match (const s_route_t *route, char **segs, size_t n_segs, const char **params)
{
    if (route->n_segs != n_segs)
        return false;
    size_t n_params = 0;
    for (size_t i = 0; i < n_segs; i++) {
        if (s_is_param (route->segs [i])) {
            if (!*segs [i])
                return false;
            if (n_params < GW_MAX_PARAMS)
                params [n_params++] = segs [i];
        }
        else if (!streq (route->segs [i], segs [i]))
            return false;
    }
    return true;
}

//  --- responses ----------------------------------------------------------------

static const char *
s_status_text (int status)
{
    switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Payload Too Large";
        case 422: return "Unprocessable Entity";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

//  Serialises the answer held in r->req and queues it on the connection.
static enum MHD_Result
s_respond (s_request_t *r, struct MHD_Connection *connection)
{
    gw_req_t *req = &r->req;
    uint64_t elapsed_us = s_now_us () - r->start_us;
    double secs = (double) elapsed_us / 1e6;
    if (req->status == 0)
        gw_fail (req, -SH_EINTERNAL, "Service internal error: the handler gave no answer");

    char *body;
    size_t len;
    const char *content_type;
    if (req->text) {
        body = req->text;
        req->text = NULL;
        len = strlen (body);
        content_type = req->content_type ? req->content_type : "text/plain; charset=utf-8";
    }
    else {
        s_buf_t b = { 0 };
        if (req->status >= 400) {
            s_buf_puts (&b, "{\"status\":{\"error\":");
            const char *msg = req->error ? req->error : s_status_text (req->status);
            jsonx_write_string (&b, msg, strlen (msg));
            s_buf_puts (&b, "},\"time\":");
        }
        else {
            s_buf_puts (&b, "{\"result\":");
            jsonx_write (&b, req->result ? req->result : json_null ());
            s_buf_puts (&b, ",\"status\":\"ok\",\"time\":");
        }
        s_put_real (&b, secs);
        s_buf_puts (&b, "}");
        body = b.data;
        len = b.len;
        content_type = "application/json";
    }
    struct MHD_Response *response
        = MHD_create_response_from_buffer (len, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (r->http->config->enable_cors)
        MHD_add_response_header (response, "Access-Control-Allow-Origin", "*");
    enum MHD_Result rc = MHD_queue_response (connection, (unsigned) req->status, response);
    MHD_destroy_response (response);
    r->answered = true;

    if (r->route)
        s_record (r->route, req->status, elapsed_us);
    log_debug ("gateway: %s %s -> %d %.2fms", req->method, req->path, req->status,
               (double) elapsed_us / 1000.0);
    return rc;
}

static enum MHD_Result
s_respond_error (s_request_t *r, struct MHD_Connection *connection, int http_status,
                 const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

static enum MHD_Result
s_respond_error (s_request_t *r, struct MHD_Connection *connection, int http_status,
                 const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_fail_v (&r->req, http_status, fmt, args);
    va_end (args);
    return s_respond (r, connection);
}

//  An answer decided before the body: filled now, sent by s_access (at
//  once when a body would follow, so it is never read; else at the last
//  callback, which keeps the connection alive).
static enum MHD_Result
s_early_error (s_request_t *r, int http_status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static enum MHD_Result
s_early_error (s_request_t *r, int http_status, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_fail_v (&r->req, http_status, fmt, args);
    va_end (args);
    r->early = true;
    return MHD_YES;
}

//  CORS preflight: any path, no key needed (browsers send none).
static enum MHD_Result
s_respond_preflight (s_request_t *r, struct MHD_Connection *connection)
{
    struct MHD_Response *response
        = MHD_create_response_from_buffer (0, (void *) "", MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    const char *headers = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                       "Access-Control-Request-Headers");
    MHD_add_response_header (response, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header (response, "Access-Control-Allow-Methods",
                             "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD");
    MHD_add_response_header (response, "Access-Control-Allow-Headers",
                             headers && *headers ? headers : "*");
    MHD_add_response_header (response, "Access-Control-Max-Age", "3600");
    enum MHD_Result rc = MHD_queue_response (connection, MHD_HTTP_OK, response);
    MHD_destroy_response (response);
    r->answered = true;
    log_debug ("gateway: OPTIONS %s -> 200 (preflight)", r->req.path);
    return rc;
}

//  --- request processing ------------------------------------------------------

//  Constant-time check of a presented key against a configured one: both are
//  hashed to a fixed length first so neither the content nor the length of
//  the configured key leaks through timing.
static bool
s_key_matches (const char *presented, const uint8_t *configured_hash)
{
    uint8_t hash [32];
    crypto_generichash (hash, sizeof hash, (const uint8_t *) presented, strlen (presented),
                        NULL, 0);
    return sodium_memcmp (hash, configured_hash, sizeof hash) == 0;
}

//  True when allowed; else answers 401/403 and returns the MHD result via *rc.
static bool
s_check_auth (s_request_t *r, struct MHD_Connection *connection, enum MHD_Result *rc)
{
    gw_http_t *self = r->http;
    if (!self->has_keys)
        return true;
    //  Qdrant's whitelist: the version info and the probes stay open.
    const char *path = r->req.path;
    if (streq (path, "/") || streq (path, "/healthz") || streq (path, "/livez")
        || streq (path, "/readyz"))
        return true;
    const char *key = MHD_lookup_connection_value (connection, MHD_HEADER_KIND, "api-key");
    if (!key) {
        const char *auth = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_AUTHORIZATION);
        if (auth && strncmp (auth, "Bearer ", 7) == 0)
            key = auth + 7;
    }
    if (!key) {
        *rc = s_early_error (r, 401,
                             "Must provide an API key or an Authorization bearer token");
        return false;
    }
    if (self->has_rw && s_key_matches (key, self->rw_hash))
        return true;
    if (self->has_ro && s_key_matches (key, self->ro_hash)) {
        if (r->route && r->route->route.writes) {
            *rc = s_early_error (r, 403, "Forbidden: Global manage access is required");
            return false;
        }
        return true;
    }
    *rc = s_early_error (r, 401, "Invalid API key or JWT");
    return false;
}

static enum MHD_Result
s_collect_query (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    s_request_t *r = (s_request_t *) cls;
    if (r->n_query >= S_MAX_QUERY || !key)
        return MHD_YES;
    //  MHD has turned '+' into ' ' already; %XX is ours to decode (the
    //  unescape callback is a no-op so that paths can keep %2F in a segment).
    size_t klen = strlen (key);
    char *k = (char *) malloc (klen + 1);
    assert (k);
    if (s_pct_decode (key, klen, k) < 0) {
        free (k);
        return MHD_YES;
    }
    size_t vlen = value ? strlen (value) : 0;
    char *v = (char *) malloc (vlen + 1);
    assert (v);
    if (s_pct_decode (value ? value : "", vlen, v) < 0) {
        free (k);
        free (v);
        return MHD_YES;
    }
    r->qkeys [r->n_query] = k;
    r->qvals [r->n_query] = v;
    r->n_query++;
    return MHD_YES;
}

//  Splits and decodes the raw URL path into segs (pointing into r->path_buf).
//  -1 when a segment decodes to a NUL byte or there are too many segments.
static int
s_split_path (s_request_t *r, const char *url, char **segs, size_t *n_segs)
{
    size_t len = strlen (url);
    //  "/collections/" is "/collections": clients differ on trailing slashes.
    while (len > 1 && url [len - 1] == '/')
        len--;
    r->path_buf = (char *) malloc (len + 2);
    assert (r->path_buf);
    *n_segs = 0;
    if (len <= 1)
        return 0;                       //  "/" has no segments
    const char *p = url [0] == '/' ? url + 1 : url;
    const char *end = url + len;
    char *out = r->path_buf;
    while (p <= end) {
        const char *slash = memchr (p, '/', (size_t) (end - p));
        size_t seg_len = slash ? (size_t) (slash - p) : (size_t) (end - p);
        if (*n_segs >= S_MAX_SEGS)
            return -1;
        ssize_t n = s_pct_decode (p, seg_len, out);
        if (n < 0)
            return -1;
        segs [(*n_segs)++] = out;
        out += n + 1;
        if (!slash)
            break;
        p = slash + 1;
    }
    return 0;
}

//  True when a body follows the headers (a non-zero Content-Length or a
//  chunked transfer).
static bool
s_has_body (struct MHD_Connection *connection)
{
    const char *length = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull (length, NULL, 10) > 0)
        return true;
    const char *encoding = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return encoding && strcasestr (encoding, "chunked");
}

static bool
s_all_space (const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s [i] != ' ' && s [i] != '\t' && s [i] != '\r' && s [i] != '\n')
            return false;
    return true;
}

static const char *
s_json_type_name (const json_t *json)
{
    switch (json_typeof (json)) {
        case JSON_ARRAY: return "sequence";
        case JSON_STRING: return "string";
        case JSON_INTEGER: return "integer";
        case JSON_REAL: return "floating point";
        case JSON_TRUE:
        case JSON_FALSE: return "boolean";
        case JSON_NULL: return "null";
        default: return "map";
    }
}

//  First callback of a request: everything that can be decided before the
//  body arrives (route, method, key, declared size), so that a refused
//  request is answered without reading its body.
static enum MHD_Result
s_begin (s_request_t *r, struct MHD_Connection *connection, const char *url,
         const char *method)
{
    gw_http_t *self = r->http;
    gw_req_t *req = &r->req;
    enum MHD_Result rc = MHD_YES;

    if (streq (method, "OPTIONS") && self->config->enable_cors) {
        r->preflight = true;
        return MHD_YES;
    }

    char *segs [S_MAX_SEGS];
    size_t n_segs = 0;
    if (s_split_path (r, url, segs, &n_segs))
        return s_early_error (r, 404, "Not found");

    //  HEAD is GET without a body (MHD drops the body).
    const char *match_method = streq (method, "HEAD") ? "GET" : method;
    //  The most literal match wins: POST /collections/aliases is not
    //  /collections/{collection_name}.
    bool path_known = false;
    for (size_t i = 0; i < self->n_routes; i++) {
        const char *params [GW_MAX_PARAMS] = { 0 };
        if (!s_match (self->routes [i], segs, n_segs, params))
            continue;
        path_known = true;
        if (!streq (self->routes [i]->route.method, match_method))
            continue;
        if (!r->route || self->routes [i]->n_literals > r->route->n_literals) {
            r->route = self->routes [i];
            memcpy (req->params, params, sizeof params);
        }
    }
    if (!r->route) {
        if (!s_check_auth (r, connection, &rc))
            return rc;
        if (path_known)
            return s_early_error (r, 405, "Method Not Allowed");
        return s_early_error (r, 404, "Not found");
    }
    if (!s_check_auth (r, connection, &rc))
        return rc;

    const char *length = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length) {
        char *end = NULL;
        errno = 0;
        unsigned long long declared = strtoull (length, &end, 10);
        if (errno == 0 && end != length && declared > self->max_body)
            return s_early_error (r, 413,
                                  "Payload too large: the request body of %llu bytes "
                                  "exceeds the limit of %zu bytes "
                                  "(service.max_request_size_mb)",
                                  declared, self->max_body);
    }
    return MHD_YES;
}

//  Last callback: the whole body is here. Parses it and ?timeout=, runs the
//  handler and sends its answer.
static enum MHD_Result
s_finish (s_request_t *r, struct MHD_Connection *connection)
{
    gw_http_t *self = r->http;
    gw_req_t *req = &r->req;
    if (r->too_big)
        return s_respond_error (r, connection, 413,
                                "Payload too large: the request body exceeds the limit "
                                "of %zu bytes (service.max_request_size_mb)",
                                self->max_body);

    MHD_get_connection_values (connection, MHD_GET_ARGUMENT_KIND, s_collect_query, r);
    uint64_t timeout_s = S_DEFAULT_TIMEOUT_S;
    const char *timeout = gw_query (req, "timeout");
    if (timeout && *timeout) {
        char *end = NULL;
        errno = 0;
        unsigned long long value = strtoull (timeout, &end, 10);
        if (errno || *end || end == timeout || value < 1 || timeout [0] == '-')
            return s_respond_error (r, connection, 400,
                                    "Bad request: query parameter timeout must be a "
                                    "positive integer (seconds), got `%s`", timeout);
        timeout_s = value > S_MAX_TIMEOUT_S ? S_MAX_TIMEOUT_S : value;
    }
    req->deadline_ms = envelope_now_ms () + timeout_s * 1000;

    if (r->body_len && !s_all_space (r->body, r->body_len)) {
        char error [256];
        gw_handler_fn *handler = r->route->route.handler;
        const jsonx_pack_t *packs = gw_search_vectors (handler);
        if (!packs)
            packs = gw_points_vectors (handler);
        json_t *body = packs ? jsonx_loadb_packs (r->body, r->body_len, 0, packs,
                                                  &req->packed, error, sizeof error)
                             : jsonx_loadb (r->body, r->body_len, 0, error, sizeof error);
        if (!body)
            return s_respond_error (r, connection, 400, "Format error in JSON body: %s",
                                    error);
        if (!json_is_object (body)) {
            const char *type = s_json_type_name (body);
            json_decref (body);
            return s_respond_error (r, connection, 400,
                                    "Format error in JSON body: invalid type: %s, "
                                    "expected a JSON object", type);
        }
        req->body = body;
    }
    free (r->body);
    r->body = NULL;

    r->route->route.handler (req);
    return s_respond (r, connection);
}

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **con_cls)
{
    gw_http_t *self = (gw_http_t *) cls;
    s_request_t *r = (s_request_t *) *con_cls;
    if (!r) {
        r = (s_request_t *) zmalloc (sizeof (s_request_t));
        assert (r);
        *con_cls = r;
        r->http = self;
        r->start_us = s_now_us ();
        r->req.gw = self->gw;
        const union MHD_ConnectionInfo *info
            = MHD_get_connection_info (connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->req.conn = info ? (gw_conn_t *) info->socket_context : NULL;
        r->req.method = method;
        r->req.path = url;
        r->req.http = connection;
        enum MHD_Result rc = s_begin (r, connection, url, method);
        if (rc == MHD_YES && (r->early || r->preflight) && s_has_body (connection))
            return r->preflight ? s_respond_preflight (r, connection) : s_respond (r, connection);
        return rc;
    }
    if (r->answered) {
        *upload_data_size = 0;          //  refused early: drop what still comes
        return MHD_YES;
    }
    if (*upload_data_size && (r->early || r->preflight)) {
        *upload_data_size = 0;          //  refused: the body is not kept
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big)
            return MHD_YES;
        //  Subtraction, not addition: body_len + n could wrap.
        if (n > self->max_body - r->body_len) {
            r->too_big = true;          //  keep reading (to answer), stop storing
            free (r->body);
            r->body = NULL;
            r->body_len = r->body_cap = 0;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap * 2 : 4096;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            r->body = (char *) realloc (r->body, cap);
            assert (r->body);
            r->body_cap = cap;
        }
        memcpy (r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body [r->body_len] = 0;
        return MHD_YES;
    }
    if (r->preflight)
        return s_respond_preflight (r, connection);
    if (r->early)
        return s_respond (r, connection);
    return s_finish (r, connection);
}

static void
s_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    s_request_t *r = (s_request_t *) *con_cls;
    if (!r)
        return;
    if (r->req.body)
        json_decref (r->req.body);
    jsonx_packed_destroy (&r->req.packed);
    s_reset_answer (&r->req);
    free (r->body);
    free (r->path_buf);
    for (size_t i = 0; i < r->n_query; i++) {
        free (r->qkeys [i]);
        free (r->qvals [i]);
    }
    free (r);
    *con_cls = NULL;
}

//  A connection's sockets: made when MHD accepts it, freed when MHD has
//  closed it and joined its thread (so no call can be using them).
static void
s_notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode code)
{
    gw_http_t *self = (gw_http_t *) cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        *socket_context = gw_conn_new (self->gw);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        gw_conn_t *conn = (gw_conn_t *) *socket_context;
        gw_conn_destroy (&conn);
        *socket_context = NULL;
    }
}

//  Keeps %XX in the URL as it came: the path is decoded per segment (so
//  %2F stays inside a collection name), query values in s_collect_query.
static size_t
s_no_unescape (void *cls, struct MHD_Connection *connection, char *s)
{
    return strlen (s);
}

static void
s_mhd_log (void *cls, const char *fmt, va_list ap)
{
    if (log_get_level () < LOG_LEVEL_DEBUG)
        return;
    char text [512];
    vsnprintf (text, sizeof text, fmt, ap);
    size_t len = strlen (text);
    while (len && (text [len - 1] == '\n' || text [len - 1] == '\r'))
        text [--len] = 0;
    log_debug ("gateway: microhttpd: %s", text);
}

//  --- the server -----------------------------------------------------------------

gw_http_t *
gw_http_new (gw_t *gw, const config_t *config)
{
    gw_http_t *self = (gw_http_t *) zmalloc (sizeof (gw_http_t));
    assert (self);
    self->gw = gw;
    self->config = config;
    size_t mb = config->max_request_size_mb ? config->max_request_size_mb : 32;
    self->max_body = mb > SIZE_MAX / (1024 * 1024) ? SIZE_MAX : mb * 1024 * 1024;
    if (sodium_init () < 0) {
        log_error ("gateway: libsodium failed to initialise");
        free (self);
        return NULL;
    }
    //  An empty key is no key, as in Qdrant.
    if (config->api_key && *config->api_key) {
        crypto_generichash (self->rw_hash, sizeof self->rw_hash,
                            (const uint8_t *) config->api_key, strlen (config->api_key),
                            NULL, 0);
        self->has_rw = true;
    }
    if (config->read_only_api_key && *config->read_only_api_key) {
        crypto_generichash (self->ro_hash, sizeof self->ro_hash,
                            (const uint8_t *) config->read_only_api_key,
                            strlen (config->read_only_api_key), NULL, 0);
        self->has_ro = true;
    }
    self->has_keys = self->has_rw || self->has_ro;

    gw_service_routes (s_add_route, self);
    gw_collections_routes (s_add_route, self);
    gw_points_routes (s_add_route, self);
    gw_search_routes (s_add_route, self);

    const char *host = config->host && *config->host ? config->host : "0.0.0.0";
    char port [16];
    snprintf (port, sizeof port, "%d", config->http_port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *addrs = NULL;
    int gai = getaddrinfo (host, port, &hints, &addrs);
    if (gai != 0 || !addrs) {
        log_error ("gateway: cannot resolve service.host=%s: %s", host, gai_strerror (gai));
        gw_http_destroy (&self);
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD
                   | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (addrs->ai_family == AF_INET6) {
        //  "::" listens on IPv4 too, as Qdrant does.
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) addrs->ai_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED (&a6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    self->daemon = MHD_start_daemon (
        flags, (uint16_t) config->http_port, NULL, NULL, s_access, self,
        MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self,
        MHD_OPTION_SOCK_ADDR, addrs->ai_addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) S_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) (64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, self,
        MHD_OPTION_NOTIFY_CONNECTION, s_notify_connection, self,
        MHD_OPTION_UNESCAPE_CALLBACK, s_no_unescape, self,
        MHD_OPTION_END);
    int err = errno;
    freeaddrinfo (addrs);
    if (!self->daemon) {
        log_error ("gateway: cannot listen on %s:%d: %s", host, config->http_port,
                   strerror (err));
        gw_http_destroy (&self);
        return NULL;
    }
    log_info ("gateway: listening on %s:%d routes=%zu max_body=%zu api_key=%s",
              host, config->http_port, self->n_routes, self->max_body,
              self->has_keys ? "yes" : "no");
    return self;
}

void
gw_http_destroy (gw_http_t **self_p)
{
    assert (self_p);
    gw_http_t *self = *self_p;
    if (!self)
        return;
    if (self->daemon)
        MHD_stop_daemon (self->daemon);
    for (size_t i = 0; i < self->n_routes; i++) {
        for (size_t s = 0; s < self->routes [i]->n_segs; s++)
            free (self->routes [i]->segs [s]);
        free (self->routes [i]);
    }
    free (self->routes);
    free (self);
    *self_p = NULL;
}
