/*  gw: the gateway's internal contract between its modules.

    gw_http   libmicrohttpd server (thread per connection), body limits, API
              key checks, the route table, Qdrant's response envelope, metrics.
    gw_meta   the metadata cache: a thread subscribed to the raft actor's
              META_STATE publications; read by handlers under a lock.
    gw_client per-connection DEALER sockets to the raft and shard actors,
              calls with deadlines, parallel fan-out.
    gw_service     /, /healthz, /livez, /readyz, /telemetry, /metrics, /cluster
    gw_collections /collections..., aliases (proposals to the raft actor)
    gw_points      point writes, retrieve, scroll, count, batch update
    gw_search      search, search/batch, query, query/batch, recommend

    Handlers run on connection threads and may block on gw_client calls; the
    connection's sockets are its own, so nothing is shared but gw_meta and the
    metrics counters (atomics).
*/
#ifndef SH_GW_H
#define SH_GW_H

#include "common/config.h"
#include "common/distance.h"
#include "common/pointid.h"
#include "common/err.h"
#include "common/jsonx.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include <jansson.h>
#include <stdbool.h>

typedef struct _gw_t gw_t;            //  the gateway process (gw_main.c)
typedef struct _gw_meta_t gw_meta_t;  //  metadata cache (gw_meta.c)
typedef struct _gw_conn_t gw_conn_t;  //  one HTTP connection's sockets (gw_client.c)

//  --- one request --------------------------------------------------------
#define GW_MAX_PARAMS 4

typedef struct {
    gw_t *gw;                       //  the gateway (config, meta)
    gw_conn_t *conn;                //  this connection's sockets
    const char *method;             //  "GET", "PUT", ...
    const char *path;               //  URL path without the query string
    const char *params [GW_MAX_PARAMS];  //  {placeholders} of the route, in order
    json_t *body;                   //  parsed JSON body, or NULL if empty
    jsonx_packed_t *packed;         //  the body's number arrays taken to floats
                                    //  (gw_search_vectors, gw_points_vectors),
                                    //  or NULL
    void *http;                     //  struct MHD_Connection *, for gw_query
    uint64_t deadline_ms;           //  from ?timeout= (seconds) or the default
    //  the response, filled by gw_ok / gw_fail / gw_text:
    int status;                     //  HTTP status
    json_t *result;                 //  "result" of the envelope (stolen)
    char *error;                    //  error message, when status >= 400
    char *text;                     //  raw body (metrics), when not NULL
    const char *content_type;       //  for text
} gw_req_t;

typedef void (gw_handler_fn) (gw_req_t *req);

//  Query string parameter, or NULL.
const char *gw_query (gw_req_t *req, const char *name);
//  ?wait=true|false (default false). -SH_EINVAL via *bad if malformed.
bool gw_query_bool (gw_req_t *req, const char *name, bool dflt, bool *bad);
//  The floats (borrowed, *count of them) of a number array of the body that
//  was parsed straight to float32 (see gw_search_vectors), when value is
//  its placeholder in req->body; else NULL (value is what the JSON said).
const float *gw_body_floats (gw_req_t *req, const json_t *value, size_t *count);
//  Answer 200 with {"result": result, "status": "ok", "time": s}; steals result
//  (NULL means JSON null).
void gw_ok (gw_req_t *req, json_t *result);
//  Answer with sh_http_status (code) and {"status": {"error": msg}, "time": s}.
void gw_fail (gw_req_t *req, int code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  Answer with an explicit HTTP status.
void gw_fail_http (gw_req_t *req, int http_status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  Answer 200 with a raw text body.
void gw_text (gw_req_t *req, char *text, const char *content_type);
//  Forward a failed shard/raft reply: its status code and error message.
void gw_fail_reply (gw_req_t *req, envelope_t *reply);

//  --- the gateway ----------------------------------------------------------
const config_t *gw_config (gw_t *gw);
gw_meta_t *gw_meta (gw_t *gw);
uint64_t gw_peer_id (gw_t *gw);
double gw_uptime (gw_t *gw);

//  --- metadata cache ------------------------------------------------------
//  Starts the subscriber thread; NULL on failure.
gw_meta_t *gw_meta_new (const char *storage_path);
void gw_meta_destroy (gw_meta_t **self_p);
//  Installs a state if newer ("applied") than the cached one (steals).
void gw_meta_update (gw_meta_t *self, json_t *state);
//  A copy-free snapshot of the whole state (incref'd; json_decref it). Never
//  NULL (an empty state before the first publication). Treat as read-only.
json_t *gw_meta_state (gw_meta_t *self);
//  The collection named `name` or through an alias: incref'd object from the
//  state (see proto/msg.h), NULL if none. *real_name (optional) gets the
//  collection's own name (strdup'd, yours).
json_t *gw_meta_collection (gw_meta_t *self, const char *name, char **real_name);
//  Waits until the cached state has applied >= `applied` (read your own
//  writes after a proposal), or the deadline; true if it has.
bool gw_meta_wait_applied (gw_meta_t *self, uint64_t applied, uint64_t deadline_ms);

//  --- calls to actors -------------------------------------------------------
gw_conn_t *gw_conn_new (gw_t *gw);
void gw_conn_destroy (gw_conn_t **self_p);

//  One request to the raft actor (taken: *request is set to NULL; its
//  request id is re-stamped); *reply is yours (its status may be an error).
//  -SH_ETIMEDOUT if no reply by the request's deadline.
int gw_call_raft (gw_conn_t *conn, envelope_t **request, envelope_t **reply);
//  Requests to shards of collection uid, all sent at once, replies gathered
//  until the deadline (the latest of the requests'): requests[i] goes to
//  shard shard_ids[i], to the replicas the metadata names (gw_replicas.h: a
//  read to one Active replica, this peer's first; a write, SHARD_UPSERT ..
//  SHARD_DELETE_VECTORS, to every replica that takes direct writes), local
//  ones over ipc, remote ones through the p2p actor. A replica that answers
//  -SH_EUNAVAIL, or leaves the placement while asked, is replaced by the one
//  the metadata names next (waiting up to 2 s for it). replies[i] is always
//  set (yours): the replica's reply (for a write to several, the first
//  failure, else the first success), or one made here whose message names
//  the shard, its collection and the peer: -SH_ETIMEDOUT when it did not
//  answer in time, -SH_EUNAVAIL when no replica can serve it. Returns 0, or
//  -SH_ETIMEDOUT if some shard did not answer in time. The requests are
//  taken (requests[i] set to NULL); their request ids are re-stamped from
//  the connection's counter. A collection the metadata does not know goes
//  to this peer's replicas.
int gw_call_shards (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
                    envelope_t **requests, envelope_t **replies);
//  The same, but requests[i] goes to the replica of shard shard_ids[i] on
//  peer peers[i], whatever its state (SHARD_INFO of a local or a transfer's
//  source replica), and is never re-routed.
int gw_call_replicas (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
                      const uint64_t *peers, envelope_t **requests, envelope_t **replies);

//  --- route registration --------------------------------------------------
//  Each module registers its routes into the table at start. Patterns use
//  {name} for one path segment: "/collections/{collection_name}/points/{id}".
//  writes: needs the full API key (not the read-only one).
typedef struct {
    const char *method;
    const char *pattern;
    gw_handler_fn *handler;
    bool writes;
} gw_route_t;

void gw_service_routes (void (*add) (const gw_route_t *route, void *arg), void *arg);
void gw_collections_routes (void (*add) (const gw_route_t *route, void *arg), void *arg);
void gw_points_routes (void (*add) (const gw_route_t *route, void *arg), void *arg);
void gw_search_routes (void (*add) (const gw_route_t *route, void *arg), void *arg);
//  Where the arrays of numbers in the body of handler's requests are parsed
//  straight to float32 (common/jsonx.h: packs ended by a NULL key), to be
//  read with gw_body_floats, or NULL for a handler that reads its body as
//  plain JSON: gw_search_vectors for the search handlers, gw_points_vectors
//  for the point writes.
const jsonx_pack_t *gw_search_vectors (gw_handler_fn *handler);
const jsonx_pack_t *gw_points_vectors (gw_handler_fn *handler);

//  --- helpers shared by the point and search handlers (gw_records.c) -------
//  Looks up the collection of req->params[0]; on failure answers 404 and
//  returns NULL. Returned object is incref'd.
json_t *gw_collection_or_404 (gw_req_t *req);
//  Converts a shard record (proto/msg.h) into Qdrant's Record/ScoredPoint JSON,
//  resolving vecrefs against the reply; vectors of a collection whose only
//  dense vector is unnamed come out as "vector": [..], else as a map. NULL
//  (logged) when the record is malformed.
json_t *gw_record_to_json (const json_t *collection, envelope_t *reply, const json_t *record);
//  A JSON real for a float32 value (a score, a vector component), holding the
//  shortest decimal that reads back as the same float, so 0.9f is output as
//  0.9 and not 0.8999999761581421 (Qdrant prints f32 values so).
json_t *gw_json_float (float value);

//  --- the HTTP server (gw_http.c), started by gw_main ---------------------
typedef struct _gw_http_t gw_http_t;
//  Builds the route table (the four gw_*_routes), binds config host and
//  http_port and starts serving; NULL (logged) when it cannot bind.
gw_http_t *gw_http_new (gw_t *gw, const config_t *config);
//  Stops serving (waits for connection threads) and frees; NULL-safe.
void gw_http_destroy (gw_http_t **self_p);
gw_http_t *gw_http (gw_t *gw);

//  Response statistics of one (route, status) pair, for /telemetry and
//  /metrics. Durations in microseconds; buckets are cumulative counts of
//  responses at or under GW_HIST_LE[i] seconds.
#define GW_HIST_BUCKETS 10
extern const double GW_HIST_LE [GW_HIST_BUCKETS];
typedef struct {
    const char *method;             //  "GET", ...
    const char *pattern;            //  "/collections/{collection_name}"
    const char *status;             //  "200", ... ("4xx" for an unlisted one)
    uint64_t count;                 //  responses
    uint64_t fail_count;            //  responses with status >= 400
    uint64_t total_us;              //  summed duration
    uint64_t min_us;                //  shortest
    uint64_t max_us;                //  longest
    uint64_t buckets [GW_HIST_BUCKETS];   //  cumulative histogram
} gw_stat_t;
//  Calls fn for every (route, status) that has answered at least once.
void gw_http_stats (gw_http_t *self, void (*fn) (const gw_stat_t *stat, void *arg),
                    void *arg);

//  True once a metadata state has arrived (from META_GET or a publication);
//  /readyz answers 503 before.
bool gw_meta_ready (gw_meta_t *self);
//  Unix ms at which the last state arrived (a publication, a META_GET or a
//  proposal's reply, installed or not), 0 before the first: how long the raft
//  actor has been silent.
uint64_t gw_meta_received_ms (gw_meta_t *self);

//  Point counts of one collection summed over its local shard replicas by a
//  SHARD_INFO fan-out (gw_collections.c), for telemetry and metrics. Shards
//  that do not answer by the deadline are counted in `missing`; their
//  numbers are left out.
typedef struct {
    uint64_t points;                //  points_count
    uint64_t vectors;               //  vectors_count
    uint64_t indexed;               //  indexed_vectors_count
    uint64_t segments;              //  segments_count
    size_t shards;                  //  shards asked
    size_t missing;                 //  shards that did not answer
    bool yellow;                    //  a shard reported "yellow"
    json_t *payload_points;         //  {field: points with an indexed value},
                                    //  summed; NULL if no shard said (yours)
    json_t *payload_ready;          //  {field: shards whose index of it is
                                    //  built}; NULL if none said (yours)
} gw_coll_stats_t;
int gw_collection_stats (gw_req_t *req, const json_t *collection, uint64_t deadline_ms,
                         gw_coll_stats_t *out);
//  The same over every shard of the collection, each asked at a replica the
//  metadata picks (local or remote), as collection info counts.
int gw_collection_stats_all (gw_req_t *req, const json_t *collection, uint64_t deadline_ms,
                             gw_coll_stats_t *out);
//  Frees what stats holds and zeroes it.
void gw_coll_stats_reset (gw_coll_stats_t *stats);

//  --- helpers shared by the point and search handlers (gw_points.c) -------
//  ?wait (default false) and ?ordering (weak|medium|strong) of any write:
//  false after answering 400 when malformed.
bool gw_points_write_params (gw_req_t *req, bool *wait);

//  A collection as gw_points and gw_search see it: its metadata object, uid,
//  shard ids in order, the hash ring that routes a point id to its shard, and
//  its vector specs. Built per request from gw_meta; rings are cached per
//  shard count.
typedef struct _gw_points_coll_t gw_points_coll_t;

typedef struct {
    const char *name;               //  vector name, "" for the unnamed default
    bool sparse;                    //  a sparse vector (dim/distance unused)
    uint32_t dim;                   //  dense dimension
    distance_t distance;            //  dense distance (sparse: dot product)
} gw_points_vspec_t;

//  One vector given by a user, parsed and checked against its spec.
typedef struct {
    char *name;                     //  vector name (owned)
    bool sparse;                    //  which of the two forms below
    float *dense;                   //  dense: dim floats (owned)
    uint32_t dim;                   //  dense: dimension
    uint32_t *indices;              //  sparse: nnz indices (owned)
    float *values;                  //  sparse: nnz values (owned)
    uint32_t nnz;                   //  sparse: entry count
} gw_points_vec_t;

//  The collection of req->params[0] (or an alias); on failure answers (404,
//  or 500 for unusable metadata) and returns NULL.
gw_points_coll_t *gw_points_coll (gw_req_t *req);
//  The collection `name` (lookup_from); answers 404 and NULL if none.
gw_points_coll_t *gw_points_coll_named (gw_req_t *req, const char *name);
void gw_points_coll_destroy (gw_points_coll_t **self_p);
//  The collection's metadata object (borrowed), for gw_record_to_json.
const json_t *gw_points_coll_json (const gw_points_coll_t *self);
//  The shard ids (borrowed, ascending) and their count.
size_t gw_points_coll_shards (const gw_points_coll_t *self, const uint32_t **shard_ids);
//  The shard id that owns point id.
uint32_t gw_points_shard_of (const gw_points_coll_t *self, const pointid_t *id);
//  The spec of vector `name`, or NULL if the collection has none so named.
const gw_points_vspec_t *gw_points_vspec (const gw_points_coll_t *self, const char *name);

//  Parses value (a dense array, or a sparse {"indices","values"}) as vector
//  `name` of coll and checks it (name exists, dense/sparse kind, dimension,
//  sparse lengths and unique indices). `where` names the field in messages.
//  On failure answers 400/422 with Qdrant's wording and returns -SH_EINVAL.
int gw_points_vec_parse (gw_req_t *req, const gw_points_coll_t *coll, const char *name,
                         const json_t *value, const char *where, gw_points_vec_t *out);
//  Frees what a vec owns and zeroes it; NULL-safe.
void gw_points_vec_reset (gw_points_vec_t *self);
//  The vec inside a request envelope: a vecref into blob `blob` (dense) or an
//  inline {"indices","values"} (sparse). New JSON, yours.
json_t *gw_points_vec_json (envelope_t *env, int blob, const gw_points_vec_t *vec);

//  Checks a Filter (JSON null or absent is fine) with filter_parse; answers
//  400 with its message and returns -SH_EINVAL when bad.
int gw_points_check_filter (gw_req_t *req, const json_t *filter);
//  Checks with_payload / with_vector values (NULL = absent) against Qdrant's
//  shapes and the collection's vector names; answers and returns -SH_EINVAL.
int gw_points_check_with (gw_req_t *req, const gw_points_coll_t *coll,
                          const json_t *with_payload, const json_t *with_vector);

//  A new request envelope of `type` with the request's deadline, for
//  gw_points_call / gw_call_shards (which give it its request id).
envelope_t *gw_points_request (gw_req_t *req, int type);
//  Sends requests[i] to shard_ids[i] of coll (all at once) and gathers the
//  replies. Leftover requests are destroyed. On a timeout or any failed reply
//  answers the request, destroys the replies and returns the error; on 0
//  every replies[i] is a successful reply (yours).
int gw_points_call (gw_req_t *req, const gw_points_coll_t *coll, size_t n,
                    const uint32_t *shard_ids, envelope_t **requests, envelope_t **replies);
//  Reads vector `name` of each point ids[0..n) from the shards of coll into
//  out[i] (zeroed first; reset them after). Answers 404 "Not found: No point
//  with id X found" for a missing point, 400 for a point without that
//  vector, and returns the error.
int gw_points_fetch_vectors (gw_req_t *req, const gw_points_coll_t *coll, const char *name,
                             const pointid_t *ids, size_t n, gw_points_vec_t *out);

#endif
