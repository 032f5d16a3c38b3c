/*  gw_service: the service endpoints that are about the node rather than a
    collection: version (/), Kubernetes probes, /telemetry, /metrics
    (Prometheus text format 0.0.4), /cluster and /issues, answered as
    Qdrant answers them.

    Collection counts come from the metadata cache; point counts from a
    SHARD_INFO fan-out (gw_collection_stats) with a short deadline, so a
    scrape never hangs on a shard that is restarting (its numbers are then
    left out).
*/
#include "actors/gateway/gw.h"
#include "common/log.h"
#include "common/paths.h"
#include "proto/route.h"
#include <errno.h>
#include <sodium.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  The Qdrant REST API version shoal speaks: clients compare it with their
//  own (@qdrant/js-client-rest: same major, minor within one).
#define S_API_VERSION "1.19.0"
//  Longest a /telemetry or /metrics request waits for shard counts (ms).
#define S_STATS_WAIT_MS 2000
//  The raft actor publishes its state once a second: silent this long (ms),
//  its consensus thread is reported stopped.
#define S_CONSENSUS_STALE_MS 5000
//  Longest GET /cluster waits for the p2p actor's send failures (ms).
#define S_P2P_INFO_MS 500
//  Peer ids are drawn from [1, 2^53] (exact in every JSON client).
#define S_MAX_PEER_ID (1ULL << 53)

static void
s_root (gw_req_t *req)
{
    json_t *info = json_pack ("{sssssssn}", "title",
                              "shoal - vector search engine, Qdrant compatible", "version",
                              S_API_VERSION, "shoal_version", SHOAL_VERSION, "commit");
    //  Qdrant answers / with the bare VersionInfo, not the usual envelope.
    char *text = json_dumps (info, JSON_COMPACT);
    json_decref (info);
    gw_text (req, text, "application/json");
}

static void
s_probe_text (gw_req_t *req, int status, const char *text)
{
    char *copy = strdup (text);
    assert (copy);
    gw_text (req, copy, "text/plain; charset=utf-8");
    req->status = status;
}

static void
s_healthz (gw_req_t *req)
{
    s_probe_text (req, 200, "healthz check passed");
}

static void
s_readyz (gw_req_t *req)
{
    //  Ready once the metadata has arrived (before that, every collection
    //  request would answer as if there were none) and names a leader (before
    //  that, every collection change would be refused for want of one).
    bool ready = gw_meta_ready (gw_meta (req->gw));
    if (ready) {
        json_t *state = gw_meta_state (gw_meta (req->gw));
        ready = json_integer_value (json_object_get (state, "leader")) > 0;
        json_decref (state);
    }
    if (ready)
        s_probe_text (req, 200, "all shards are ready");
    else
        s_probe_text (req, 503, "some shards are not ready");
}

//  RFC 3339 UTC time of a unix time in seconds (fractional).
static json_t *
s_iso_time (double unix_s)
{
    time_t secs = (time_t) unix_s;
    struct tm tm;
    gmtime_r (&secs, &tm);
    char text [64];
    int micros = (int) ((unix_s - (double) secs) * 1e6 + 0.5);
    if (micros < 0)
        micros = 0;
    if (micros > 999999)
        micros = 999999;
    snprintf (text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
    return json_string (text);
}

static double
s_now_unix (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

//  A stable UUID for this node (telemetry "id"): a hash of its peer id, so
//  it survives restarts without being stored anywhere.
static json_t *
s_node_uuid (uint64_t peer_id)
{
    uint8_t hash [16];
    char seed [64];
    snprintf (seed, sizeof seed, "shoal-telemetry-%" PRIu64, peer_id);
    crypto_generichash (hash, sizeof hash, (const uint8_t *) seed, strlen (seed), NULL, 0);
    hash [6] = (uint8_t) ((hash [6] & 0x0f) | 0x40);   //  version 4 layout
    hash [8] = (uint8_t) ((hash [8] & 0x3f) | 0x80);   //  RFC 4122 variant
    char text [37];
    snprintf (text, sizeof text,
              "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
              hash [0], hash [1], hash [2], hash [3], hash [4], hash [5], hash [6], hash [7],
              hash [8], hash [9], hash [10], hash [11], hash [12], hash [13], hash [14],
              hash [15]);
    return json_string (text);
}

//  Collection names sorted, for stable listings.
static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static const char **
s_sorted_names (const json_t *object, size_t *count)
{
    size_t n = json_object_size (object);
    const char **names = (const char **) calloc (n + 1, sizeof (char *));
    assert (names);
    size_t i = 0;
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) object, key, value)
        names [i++] = key;
    qsort (names, i, sizeof (char *), s_cmp_str);
    *count = i;
    return names;
}

static uint64_t
s_stats_deadline (gw_req_t *req)
{
    uint64_t cap = envelope_now_ms () + S_STATS_WAIT_MS;
    return req->deadline_ms && req->deadline_ms < cap ? req->deadline_ms : cap;
}

//  Anonymised name for ?anonymize=true (a short stable hash).
static char *
s_anonymize (const char *name)
{
    uint8_t hash [8];
    crypto_generichash (hash, sizeof hash, (const uint8_t *) name, strlen (name), NULL, 0);
    char *text = (char *) malloc (17);
    assert (text);
    for (int i = 0; i < 8; i++)
        snprintf (text + 2 * i, 3, "%02x", hash [i]);
    return text;
}

static void
s_add_stat_json (const gw_stat_t *stat, void *arg)
{
    json_t *responses = (json_t *) arg;
    char key [512];
    snprintf (key, sizeof key, "%s %s", stat->method, stat->pattern);
    json_t *by_status = json_object_get (responses, key);
    if (!by_status) {
        by_status = json_object ();
        json_object_set_new (responses, key, by_status);
    }
    json_object_set_new (
        by_status, stat->status,
        json_pack ("{sIsIsfsfsfsI}", "count", (json_int_t) stat->count, "fail_count",
                   (json_int_t) stat->fail_count, "avg_duration_micros",
                   (double) stat->total_us / (double) stat->count, "min_duration_micros",
                   (double) stat->min_us, "max_duration_micros", (double) stat->max_us,
                   "total_duration_micros", (json_int_t) stat->total_us));
}

//  --- cluster state, shared by /cluster, /telemetry and /metrics ------------------

//  raft_info of GET /cluster (Qdrant's RaftInfo): the state's "raft" object
//  as the raft actor publishes it. A state without one (no state yet)
//  gives zeros, no leader and no role. New object.
static json_t *
s_raft_info (gw_req_t *req, json_t *state)
{
    json_t *raft = json_object_get (state, "raft");
    json_t *leader = json_object_get (raft, "leader");
    json_t *role = json_object_get (raft, "role");
    json_t *is_voter = json_object_get (raft, "is_voter");
    json_int_t leader_id = json_integer_value (leader);
    if (!json_is_object (raft)) {
        //  Only the top-level fields (proto/msg.h's pre-cluster <state>).
        leader_id = json_integer_value (json_object_get (state, "leader"));
        if (gw_meta_ready (gw_meta (req->gw)))
            role = json_string (leader_id > 0 && (uint64_t) leader_id == gw_peer_id (req->gw)
                                ? "Leader" : "Follower");
        else
            role = NULL;
        json_t *info = json_pack (
            "{sIsIsIsososb}", "term", json_integer_value (json_object_get (state, "term")),
            "commit", json_integer_value (json_object_get (state, "applied")),
            "pending_operations", (json_int_t) 0, "leader",
            leader_id > 0 ? json_integer (leader_id) : json_null (), "role",
            role ? role : json_null (), "is_voter", role != NULL);
        return info;
    }
    return json_pack ("{sIsIsIsosOsb}", "term",
                      json_integer_value (json_object_get (raft, "term")), "commit",
                      json_integer_value (json_object_get (raft, "commit")),
                      "pending_operations",
                      json_integer_value (json_object_get (raft, "pending_operations")),
                      "leader", leader_id > 0 ? json_integer (leader_id) : json_null (),
                      "role", json_is_string (role) ? role : json_null (), "is_voter",
                      json_is_true (is_voter));
}

//  consensus_thread_status (Qdrant's ConsensusThreadStatus). New object.
static json_t *
s_consensus_status (gw_req_t *req)
{
    uint64_t received = gw_meta_received_ms (gw_meta (req->gw));
    uint64_t now = envelope_now_ms ();
    if (received && now <= received + S_CONSENSUS_STALE_MS)
        return json_pack ("{ssso}", "consensus_thread_status", "working", "last_update",
                          s_iso_time ((double) received / 1000.0));
    char err [128];
    if (received)
        snprintf (err, sizeof err, "the raft actor has published no state for %.1f s",
                  (double) (now - received) / 1000.0);
    else
        snprintf (err, sizeof err, "no state received from the raft actor since the "
                                   "gateway started");
    return json_pack ("{ssss}", "consensus_thread_status", "stopped_with_err", "err", err);
}

//  message_send_failures from the p2p actor (P2P_INFO): {} when it does not
//  answer in time or answers something unusable (logged). New object.
static json_t *
s_send_failures (gw_req_t *req)
{
    char endpoint [PATHS_MAX];
    if (paths_p2p_endpoint (gw_config (req->gw)->storage_path, endpoint))
        return json_object ();
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        log_warn ("gateway: cluster: no socket for P2P_INFO");
        return json_object ();
    }
    zsock_set_linger (sock, 0);
    zsock_set_sndtimeo (sock, 0);
    json_t *failures = NULL;
    uint64_t deadline = envelope_now_ms () + S_P2P_INFO_MS;
    if (req->deadline_ms && req->deadline_ms < deadline)
        deadline = req->deadline_ms;
    route_t route = { .kind = ROUTE_REQUEST, .actor = ROUTE_P2P,
                      .dst = gw_peer_id (req->gw) };
    zframe_t *head = route_encode (&route);
    envelope_t *request = envelope_new (MSG_P2P_INFO, 1, deadline);
    zmsg_t *msg = envelope_encode (request);
    envelope_destroy (&request);
    if (!head || !msg || zsock_connect (sock, "%s", endpoint)) {
        zframe_destroy (&head);
        zmsg_destroy (&msg);
        log_warn ("gateway: cluster: cannot ask the p2p actor at %s", endpoint);
        zsock_destroy (&sock);
        return json_object ();
    }
    zmsg_prepend (msg, &head);
    if (zmsg_send (&msg, sock)) {
        zmsg_destroy (&msg);
        log_warn ("gateway: cluster: P2P_INFO not sent to %s", endpoint);
    }
    else
        while (!failures) {
            uint64_t now = envelope_now_ms ();
            if (now >= deadline) {
                log_warn ("gateway: cluster: no P2P_INFO reply from the p2p actor in time");
                break;
            }
            zmq_pollitem_t item = { zsock_resolve (sock), 0, ZMQ_POLLIN, 0 };
            int rc = zmq_poll (&item, 1, (long) (deadline - now));
            if (rc < 0 && zmq_errno () != EINTR)
                break;
            if (rc <= 0 || !(item.revents & ZMQ_POLLIN))
                continue;
            zmsg_t *got = zmsg_recv (sock);
            zframe_t *frame = got ? zmsg_pop (got) : NULL;
            route_t back;
            envelope_t *reply = NULL;
            if (!frame || route_decode (zframe_data (frame), zframe_size (frame), &back)
                || back.kind != ROUTE_REPLY || envelope_decode (&got, false, &reply)) {
                log_warn ("gateway: cluster: malformed reply from the p2p actor, dropped");
                zframe_destroy (&frame);
                zmsg_destroy (&got);
                continue;
            }
            zframe_destroy (&frame);
            if (envelope_request_id (reply) == 1 && envelope_type (reply) == MSG_P2P_INFO) {
                json_t *value = json_object_get (envelope_json (reply), "message_send_failures");
                if (envelope_status (reply))
                    log_warn ("gateway: cluster: P2P_INFO failed: %s", envelope_error (reply));
                else if (!json_is_object (value))
                    log_warn ("gateway: cluster: P2P_INFO reply without message_send_failures");
                failures = json_is_object (value) && !envelope_status (reply)
                         ? json_deep_copy (value) : json_object ();
            }
            envelope_destroy (&reply);
        }
    zsock_destroy (&sock);
    return failures ? failures : json_object ();
}

//  Qdrant's ClusterStatusTelemetry.
static json_t *
s_cluster_status_telemetry (gw_req_t *req, json_t *state)
{
    json_t *raft = s_raft_info (req, state);
    json_t *telemetry = json_pack (
        "{sIsOsOsOsOsOsIso}", "number_of_peers",
        (json_int_t) json_object_size (json_object_get (state, "peers")), "term",
        json_object_get (raft, "term"), "commit", json_object_get (raft, "commit"),
        "pending_operations", json_object_get (raft, "pending_operations"), "role",
        json_object_get (raft, "role"), "is_voter", json_object_get (raft, "is_voter"),
        "peer_id", (json_int_t) gw_peer_id (req->gw), "consensus_thread_status",
        s_consensus_status (req));
    json_decref (raft);
    return telemetry;
}

static void
s_telemetry (gw_req_t *req)
{
    bool bad = false;
    bool anonymize = gw_query_bool (req, "anonymize", false, &bad);
    const char *level_text = gw_query (req, "details_level");
    long level = 0;
    if (level_text && *level_text) {
        char *end = NULL;
        level = strtol (level_text, &end, 10);
        if (*end || level < 0)
            bad = true;
    }
    if (bad) {
        gw_fail (req, -SH_EINVAL,
                 "Bad request: anonymize must be true or false and details_level a "
                 "non-negative integer");
        return;
    }
    const config_t *config = gw_config (req->gw);
    json_t *state = gw_meta_state (gw_meta (req->gw));
    json_t *collections = json_object_get (state, "collections");

    json_t *app = json_pack ("{sssssos{sbsbsbsbsbsb}}", "name", "shoal", "version",
                             SHOAL_VERSION, "startup",
                             s_iso_time (s_now_unix () - gw_uptime (req->gw)), "features",
                             "debug", 0, "service_debug_feature", 0, "recovery_mode", 0,
                             "gpu", 0, "rocksdb", 0, "staging", 0);

    //  One CollectionTelemetry per collection: its id and config, plus its
    //  shards' replica states from details_level 1 on.
    json_t *list = json_array ();
    size_t n_names = 0;
    const char **names = s_sorted_names (collections, &n_names);
    for (size_t i = 0; i < n_names; i++) {
        json_t *collection = json_object_get (collections, names [i]);
        json_t *config_json = json_object_get (collection, "config");
        char *id = anonymize ? s_anonymize (names [i]) : strdup (names [i]);
        assert (id);
        json_t *entry = json_pack ("{ssso}", "id", id, "config",
                                   config_json ? json_incref (config_json) : json_null ());
        free (id);
        if (level >= 1) {
            json_t *shards = json_array ();
            json_t *shard;
            size_t k;
            json_array_foreach (json_object_get (collection, "shards"), k, shard) {
                json_t *replicas = json_object_get (shard, "replicas");
                json_t *shard_id = json_object_get (shard, "shard_id");
                json_array_append_new (
                    shards, json_pack ("{sOs[]so}", "id", shard_id ? shard_id : json_null (),
                                       "remote", "replicate_states",
                                       json_is_object (replicas) ? json_incref (replicas)
                                                                 : json_object ()));
            }
            json_object_set_new (entry, "shards", shards);
        }
        json_array_append_new (list, entry);
    }
    free (names);

    json_t *cluster = json_pack ("{sb}", "enabled", config->cluster_enabled);
    if (config->cluster_enabled)
        json_object_set_new (cluster, "status", s_cluster_status_telemetry (req, state));

    json_t *responses = json_object ();
    gw_http_stats (gw_http (req->gw), s_add_stat_json, responses);

    json_t *result = json_pack (
        "{sosos{sIso}sos{s{so}s{s{}}}}", "id", s_node_uuid (gw_peer_id (req->gw)), "app", app,
        "collections", "number_of_collections", (json_int_t) n_names, "collections", list,
        "cluster", cluster, "requests", "rest", "responses", responses, "grpc", "responses");
    json_decref (state);
    gw_ok (req, result);
}

//  --- /metrics ------------------------------------------------------------------

typedef struct {
    char *data;                         //  text so far
    size_t len;                         //  bytes used
    size_t cap;                         //  bytes allocated
} s_text_t;

static void
s_printf (s_text_t *t, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_printf (s_text_t *t, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (NULL, 0, fmt, args);
    va_end (args);
    if (n < 0)
        return;
    if (t->len + (size_t) n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t) n + 1)
            cap *= 2;
        t->data = (char *) realloc (t->data, cap);
        assert (t->data);
        t->cap = cap;
    }
    va_start (args, fmt);
    vsnprintf (t->data + t->len, (size_t) n + 1, fmt, args);
    va_end (args);
    t->len += (size_t) n;
}

static void
s_family (s_text_t *t, const char *name, const char *type, const char *help)
{
    s_printf (t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

//  A label value escaped per the text format (backslash, quote, newline).
static char *
s_label (const char *value)
{
    size_t len = strlen (value);
    char *out = (char *) malloc (2 * len + 1);
    assert (out);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (value [i] == '\\' || value [i] == '"') {
            out [o++] = '\\';
            out [o++] = value [i];
        }
        else if (value [i] == '\n') {
            out [o++] = '\\';
            out [o++] = 'n';
        }
        else
            out [o++] = value [i];
    }
    out [o] = 0;
    return out;
}

//  Collected first so each metric family is written in one block.
typedef struct {
    gw_stat_t *stats;                   //  copies (strings are static)
    size_t n;                           //  in use
    size_t cap;                         //  allocated
} s_stats_t;

static void
s_collect_stat (const gw_stat_t *stat, void *arg)
{
    s_stats_t *all = (s_stats_t *) arg;
    if (all->n == all->cap) {
        all->cap = all->cap ? all->cap * 2 : 64;
        all->stats = (gw_stat_t *) realloc (all->stats, all->cap * sizeof (gw_stat_t));
        assert (all->stats);
    }
    all->stats [all->n++] = *stat;
}

static void
s_metrics (gw_req_t *req)
{
    bool bad = false;
    gw_query_bool (req, "anonymize", false, &bad);
    gw_query_bool (req, "per_collection", false, &bad);
    if (bad) {
        gw_fail (req, -SH_EINVAL, "Bad request: anonymize and per_collection must be true "
                                  "or false");
        return;
    }
    const config_t *config = gw_config (req->gw);
    json_t *state = gw_meta_state (gw_meta (req->gw));
    json_t *collections = json_object_get (state, "collections");
    uint64_t vectors = 0;
    uint64_t deadline = s_stats_deadline (req);
    const char *name;
    json_t *collection;
    json_object_foreach (collections, name, collection) {
        gw_coll_stats_t stats;
        gw_collection_stats (req, collection, deadline, &stats);
        vectors += stats.points;
        gw_coll_stats_reset (&stats);
    }

    s_text_t t = { 0 };
    s_family (&t, "app_info", "gauge", "information about shoal server");
    s_printf (&t, "app_info{name=\"shoal\",version=\"%s\"} 1\n", SHOAL_VERSION);
    s_family (&t, "app_status_recovery_mode", "gauge", "features enabled in shoal server");
    s_printf (&t, "app_status_recovery_mode 0\n");
    s_family (&t, "collections_total", "gauge", "number of collections");
    s_printf (&t, "collections_total %zu\n", json_object_size (collections));
    s_family (&t, "collections_vector_total", "gauge",
              "total number of vectors in all collections");
    s_printf (&t, "collections_vector_total %" PRIu64 "\n", vectors);
    s_family (&t, "cluster_enabled", "gauge", "is cluster support enabled");
    s_printf (&t, "cluster_enabled %d\n", config->cluster_enabled ? 1 : 0);
    if (config->cluster_enabled) {
        json_t *raft = s_raft_info (req, state);
        s_family (&t, "cluster_peers_total", "gauge", "total number of cluster peers");
        s_printf (&t, "cluster_peers_total %zu\n",
                  json_object_size (json_object_get (state, "peers")));
        s_family (&t, "cluster_term", "counter", "current cluster term");
        s_printf (&t, "cluster_term %" JSON_INTEGER_FORMAT "\n",
                  json_integer_value (json_object_get (raft, "term")));
        s_family (&t, "cluster_commit", "counter",
                  "index of last committed (finalized) operation cluster peer is aware of");
        s_printf (&t, "cluster_commit{peer_id=\"%" PRIu64 "\"} %" JSON_INTEGER_FORMAT "\n",
                  gw_peer_id (req->gw), json_integer_value (json_object_get (raft, "commit")));
        s_family (&t, "cluster_pending_operations_total", "gauge",
                  "total number of pending operations for cluster peer");
        s_printf (&t, "cluster_pending_operations_total %" JSON_INTEGER_FORMAT "\n",
                  json_integer_value (json_object_get (raft, "pending_operations")));
        s_family (&t, "cluster_voter", "gauge", "is cluster peer a voter or learner");
        s_printf (&t, "cluster_voter %d\n",
                  json_is_true (json_object_get (raft, "is_voter")) ? 1 : 0);
        json_decref (raft);
    }
    json_decref (state);

    s_stats_t all = { 0 };
    gw_http_stats (gw_http (req->gw), s_collect_stat, &all);
    if (all.n) {
        char **labels = (char **) calloc (all.n, sizeof (char *));
        assert (labels);
        for (size_t i = 0; i < all.n; i++) {
            char *endpoint = s_label (all.stats [i].pattern);
            if (asprintf (&labels [i], "method=\"%s\",endpoint=\"%s\",status=\"%s\"",
                          all.stats [i].method, endpoint, all.stats [i].status) < 0)
                labels [i] = NULL;
            free (endpoint);
        }
        s_family (&t, "rest_responses_total", "counter", "total number of responses");
        for (size_t i = 0; i < all.n; i++)
            s_printf (&t, "rest_responses_total{%s} %" PRIu64 "\n", labels [i],
                      all.stats [i].count);
        s_family (&t, "rest_responses_fail_total", "counter",
                  "total number of failed responses");
        for (size_t i = 0; i < all.n; i++)
            s_printf (&t, "rest_responses_fail_total{%s} %" PRIu64 "\n", labels [i],
                      all.stats [i].fail_count);
        s_family (&t, "rest_responses_avg_duration_seconds", "gauge",
                  "average response duration");
        for (size_t i = 0; i < all.n; i++)
            s_printf (&t, "rest_responses_avg_duration_seconds{%s} %.9g\n", labels [i],
                      (double) all.stats [i].total_us / (double) all.stats [i].count / 1e6);
        s_family (&t, "rest_responses_min_duration_seconds", "gauge",
                  "minimum response duration");
        for (size_t i = 0; i < all.n; i++)
            s_printf (&t, "rest_responses_min_duration_seconds{%s} %.9g\n", labels [i],
                      (double) all.stats [i].min_us / 1e6);
        s_family (&t, "rest_responses_max_duration_seconds", "gauge",
                  "maximum response duration");
        for (size_t i = 0; i < all.n; i++)
            s_printf (&t, "rest_responses_max_duration_seconds{%s} %.9g\n", labels [i],
                      (double) all.stats [i].max_us / 1e6);
        s_family (&t, "rest_responses_duration_seconds", "histogram",
                  "response duration histogram");
        for (size_t i = 0; i < all.n; i++) {
            for (size_t b = 0; b < GW_HIST_BUCKETS; b++)
                s_printf (&t, "rest_responses_duration_seconds_bucket{%s,le=\"%g\"} %" PRIu64
                          "\n", labels [i], GW_HIST_LE [b], all.stats [i].buckets [b]);
            s_printf (&t, "rest_responses_duration_seconds_bucket{%s,le=\"+Inf\"} %" PRIu64
                      "\n", labels [i], all.stats [i].count);
            s_printf (&t, "rest_responses_duration_seconds_sum{%s} %.9g\n", labels [i],
                      (double) all.stats [i].total_us / 1e6);
            s_printf (&t, "rest_responses_duration_seconds_count{%s} %" PRIu64 "\n",
                      labels [i], all.stats [i].count);
        }
        for (size_t i = 0; i < all.n; i++)
            free (labels [i]);
        free (labels);
    }
    free (all.stats);
    gw_text (req, t.data, "text/plain; version=0.0.4; charset=utf-8");
}

//  --- /cluster and /issues ---------------------------------------------------------

//  GET /cluster in cluster mode, as Qdrant's ClusterStatus:
//  - peers, raft_info: from the cached state (the "raft" object the raft
//    actor publishes: its own view of term, commit, leader and role);
//  - consensus_thread_status: "working" while the raft actor publishes
//    (once a second, and after every apply), last_update being the time the
//    last state arrived; "stopped_with_err" once it has been silent for
//    S_CONSENSUS_STALE_MS;
//  - message_send_failures: asked of the p2p actor (P2P_INFO through its ipc
//    ROUTER, as any local actor sends it a request); {} when it does not
//    answer within S_P2P_INFO_MS (logged).
static void
s_cluster (gw_req_t *req)
{
    const config_t *config = gw_config (req->gw);
    if (!config->cluster_enabled) {
        gw_ok (req, json_pack ("{ss}", "status", "disabled"));
        return;
    }
    json_t *state = gw_meta_state (gw_meta (req->gw));
    json_t *peers = json_object ();
    const char *id;
    json_t *uri;
    json_object_foreach (json_object_get (state, "peers"), id, uri)
        json_object_set_new (peers, id, json_pack ("{sO}", "uri", uri));
    json_t *result = json_pack ("{sssIsosososo}", "status", "enabled", "peer_id",
                                (json_int_t) gw_peer_id (req->gw), "peers", peers, "raft_info",
                                s_raft_info (req, state), "consensus_thread_status",
                                s_consensus_status (req), "message_send_failures",
                                s_send_failures (req));
    json_decref (state);
    gw_ok (req, result);
}

//  Consensus proposals and requests to the local raft actor fail alike when it
//  does not answer in time: the raft actor waits for a leader up to the
//  request's deadline (?timeout=), so a timeout means none was found.
static bool
s_raft_call (gw_req_t *req, envelope_t **request, envelope_t **reply)
{
    int rc = gw_call_raft (req->conn, request, reply);
    if (rc == -SH_ETIMEDOUT) {
        gw_fail (req, -SH_EUNAVAIL,
                 "Service unavailable: the consensus did not commit the operation in time "
                 "(no consensus leader, or the raft actor is not answering); retry");
        return false;
    }
    if (rc) {
        gw_fail (req, rc, "Service unavailable: cannot reach the consensus: %s",
                 sh_strerror (rc));
        return false;
    }
    return true;
}

//  True if peer (decimal) holds a replica of any shard in state.
static bool
s_peer_has_shards (json_t *state, const char *peer)
{
    const char *name;
    json_t *collection;
    json_object_foreach (json_object_get (state, "collections"), name, collection) {
        size_t i;
        json_t *shard;
        json_array_foreach (json_object_get (collection, "shards"), i, shard)
            if (json_object_get (json_object_get (shard, "replicas"), peer))
                return true;
    }
    return false;
}

//  Without cluster mode Qdrant refuses the cluster operations so.
static bool
s_cluster_enabled_or_400 (gw_req_t *req)
{
    if (gw_config (req->gw)->cluster_enabled)
        return true;
    gw_fail (req, -SH_EINVAL, "Bad request: Distributed deployment is disabled.");
    return false;
}

//  POST /cluster/recover: the local raft actor asks the leader for a
//  consensus snapshot (RAFT_RECOVER, forwarded when this peer is a follower).
static void
s_recover (gw_req_t *req)
{
    if (!s_cluster_enabled_or_400 (req))
        return;
    envelope_t *request = envelope_new (MSG_RAFT_RECOVER, 0, req->deadline_ms);
    envelope_t *reply = NULL;
    if (!s_raft_call (req, &request, &reply))
        return;
    if (envelope_status (reply))
        gw_fail_reply (req, reply);
    else
        gw_ok (req, json_true ());
    envelope_destroy (&reply);
}

//  DELETE /cluster/peer/{peer_id}?force=&timeout=: proposes remove_peer. As
//  Qdrant, a peer that holds shard replicas is refused (400) unless force;
//  the raft actor checks it again against the state it applies to.
static void
s_remove_peer (gw_req_t *req)
{
    const char *text = req->params [0];
    char *end = NULL;
    errno = 0;
    unsigned long long peer_id = strtoull (text, &end, 10);
    if (!*text || *end || text [0] == '-' || errno) {
        gw_fail (req, -SH_EINVAL, "Bad request: peer_id must be an unsigned integer, got `%s`",
                 text);
        return;
    }
    bool bad = false;
    bool force = gw_query_bool (req, "force", false, &bad);
    if (bad) {
        gw_fail (req, -SH_EINVAL, "Bad request: force must be true or false");
        return;
    }
    if (!s_cluster_enabled_or_400 (req))
        return;
    if (peer_id == 0 || peer_id > S_MAX_PEER_ID) {
        gw_fail (req, -SH_ENOTFOUND, "Not found: Peer %llu does not exist", peer_id);
        return;
    }
    char key [24];
    snprintf (key, sizeof key, "%llu", peer_id);
    json_t *state = gw_meta_state (gw_meta (req->gw));
    bool has_shards = s_peer_has_shards (state, key);
    json_decref (state);
    if (has_shards && !force) {
        gw_fail_http (req, 400, "Bad request: Cannot remove peer %llu as there are shards on it",
                      peer_id);
        return;
    }
    envelope_t *request = envelope_new (MSG_META_PROPOSE, 0, req->deadline_ms);
    json_object_set_new (envelope_json (request), "op",
                         json_pack ("{sssIsb}", "type", "remove_peer", "peer_id",
                                    (json_int_t) peer_id, "force", force));
    envelope_t *reply = NULL;
    if (!s_raft_call (req, &request, &reply))
        return;
    int status = envelope_status (reply);
    if (status == -SH_ENOTFOUND)
        gw_fail (req, status, "Not found: Peer %llu does not exist", peer_id);
    else if (status == -SH_EUNPROC)
        gw_fail_http (req, 400, "Bad request: Cannot remove peer %llu as there are shards on it",
                      peer_id);
    else if (status)
        gw_fail_reply (req, reply);
    else {
        json_t *applied = json_object_get (envelope_json (reply), "state");
        if (json_is_object (applied))
            gw_meta_update (gw_meta (req->gw), json_incref (applied));
        gw_ok (req, json_true ());
    }
    envelope_destroy (&reply);
}

static void
s_get_issues (gw_req_t *req)
{
    gw_ok (req, json_pack ("{s[]}", "issues"));
}

static void
s_clear_issues (gw_req_t *req)
{
    gw_ok (req, json_true ());
}

void
gw_service_routes (void (*add) (const gw_route_t *route, void *arg), void *arg)
{
    static const gw_route_t routes [] = {
        { "GET", "/", s_root, false },
        { "GET", "/healthz", s_healthz, false },
        { "GET", "/livez", s_healthz, false },
        { "GET", "/readyz", s_readyz, false },
        { "GET", "/telemetry", s_telemetry, false },
        { "GET", "/metrics", s_metrics, false },
        { "GET", "/cluster", s_cluster, false },
        { "POST", "/cluster/recover", s_recover, true },
        { "DELETE", "/cluster/peer/{peer_id}", s_remove_peer, true },
        { "GET", "/issues", s_get_issues, false },
        { "DELETE", "/issues", s_clear_issues, true },
    };
    for (size_t i = 0; i < sizeof (routes) / sizeof (routes [0]); i++)
        add (&routes [i], arg);
}
