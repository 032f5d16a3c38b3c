/*  shard_actor: the process that owns one local replica of one shard of a
    collection (DESIGN.md §1, §4).

    It learns its collection's vector config from the raft actor (META_GET,
    then the META_STATE publications), rebuilds its segment from the shard
    store, and serves the MSG_SHARD_* requests of proto/msg.h on a ROUTER at
    its shard endpoint. Writes are applied to the segment at once and made
    durable once per loop turn: one SQLite transaction for every point the
    turn changed, then the replies that were waiting for it.

    Threads. The main thread owns the ROUTER, every write and every commit.
    Reads (search, retrieve, scroll, count) go to a pool of worker threads
    (workers.h), one per core, which hand their replies back over an inproc
    PULL that the main thread forwards to the ROUTER; reads that come on
    the direct socket (the local gateway's, paths_shard_direct) are read
    and answered by the worker itself, with no other thread woken. The
    segment is guarded
    by a writer-first gate (rwgate.h): the main thread takes it for writing
    at the first write of a turn and gives it back only after that turn's
    commit, so no read ever sees data a crash could take back, and no write
    is answered before it is durable.

    Vector indexes (vindex.h) are built and kept up by an optimizer thread
    (optimizer.h) that reads under the same gate; searches go through the
    planner (planner.h), which merges the graph with an exact scan of what
    the graph does not hold yet. The graphs are saved beside the store with
    the seq they cover and put back on start, so a restart re-indexes only
    what changed since. Payload indexes (pindex.h) of the fields in the
    collection's payload_schema follow every payload change through the
    segment's observer; the planner reads them to narrow filtered searches,
    counts, scrolls and selections.

    Every write gets seq = ++last_seq: the "operation_id" of its reply and the
    "version" of each point it touches. A write is checked whole before
    anything changes: a batch with one bad point is refused with nothing
    applied.
*/
#include "actors/actors.h"
#include "actors/shard/optimizer.h"
#include "actors/shard/pindex.h"
#include "actors/shard/planner.h"
#include "actors/shard/rwgate.h"
#include "actors/shard/segment.h"
#include "actors/shard/shard_store.h"
#include "actors/shard/transfer.h"
#include "actors/shard/vindex.h"
#include "actors/shard/workers.h"
#include "common/err.h"
#include "common/filter.h"
#include "common/fmtnum.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/pointid.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include "proto/route.h"
#include "proto/vecref.h"
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

//  Messages handled per turn before the commit: many small writes share one
//  fsync-free commit, yet a turn stays short enough to keep replies flowing.
#define S_MAX_PER_TURN 64
//  META_GET at start: attempts and the wait for each (the raft actor may
//  still be starting).
#define S_META_ATTEMPTS 10
#define S_META_WAIT_MS 2000
//  Longest poll wait: the loop has no ticks of its own.
#define S_POLL_MS 1000
//  Bytes of bad input quoted in a log line.
#define S_SAMPLE 48
#define S_ERRLEN 512
//  Results pulled from the workers per turn before the ROUTER is looked at
//  again.
#define S_MAX_RESULTS_PER_TURN 256

//  Shard transfers (the s_xfer_* functions, "Shard transfers" below).
typedef struct {
    char collection [256];      //  this collection's name (the ops name it)
    uint64_t want_to;           //  the state lists a transfer of this shard from
                                //  this peer to this peer id, 0 = none
    bool active;                //  this replica is Active in the state
    bool listed;                //  this replica is in the shard's replicas
    transfer_t *run;            //  source: the run, NULL when none
    uint64_t run_to;            //  source: its target peer
    transfer_phase_t logged;    //  source: the phase last logged
    zsock_t *p2p;               //  source: DEALER to the p2p actor (stream, probes)
    zsock_t *raft;              //  source: DEALER to the raft actor (proposals)
    uint64_t probe_id;          //  source: probes sent
    uint64_t propose_id;        //  source: proposals sent
    zlist_t *turn;              //  source: s_xitem_t of the writes applied this turn
    transfer_in_t in;           //  target: the order of the stream applied here
    bool lenient;               //  target: the write being applied came with "transfer"
    uint64_t in_seq;            //  target: its seq
    bool hold;                  //  target: a transfer fills this replica, its
                                //  graphs wait (optimizer_hold_graphs)
    bool turn_batches;          //  target: this turn applied stream batches
    bool turn_sync;             //  this turn holds a write whose reply must
                                //  wait for its commit (anything but a batch
                                //  before the last into a replica not Active)
    uint64_t deferred_seq;      //  target: seq of the last turn handed to the
                                //  store's deferred writer
} s_xfer_t;

typedef struct {
    const config_t *config;     //  the node's config (borrowed)
    uint64_t peer_id;           //  this node
    uint64_t uid;               //  collection uid (names the storage dir)
    uint32_t shard_id;          //  shard number in the collection
    char dir [PATHS_MAX];       //  the shard's directory
    segment_vspec_t *specs;     //  vector specs in the segment, in config order
    size_t n_specs;             //  entries in specs
    segment_t *segment;         //  the points, in memory
    vindex_t *vindex;           //  their HNSW graphs
    pindex_t *pindex;           //  their payload indexes (payload_schema's fields)
    optimizer_t *optimizer;     //  the thread that builds and saves the graphs
    shard_store_t *store;       //  the points, on disk
    zsock_t *router;            //  ROUTER at the shard endpoint
    zsock_t *sub;               //  SUB to the raft actor's META_STATE
    zsock_t *results;           //  PULL: replies the workers made
    zpoller_t *poller;          //  over router, sub and results
    rwgate_t *gate;             //  readers-writer gate over the segment
    bool write_held;            //  this turn holds the gate for writing
    workers_t *workers;         //  the read pool
    uint64_t last_seq;          //  last seq handed to a write
    uint64_t meta_applied;      //  "applied" of the newest state seen
    json_t *payload_schema;     //  the collection's indexed fields (from the state)
    pointid_t *dirty;           //  ids written this turn (may repeat)
    size_t n_dirty;             //  entries in dirty
    size_t cap_dirty;           //  capacity of dirty
    zlist_t *pending;           //  envelope_t replies waiting for the flush
    bool stopping;              //  leave the loop after this turn
    bool store_failed;          //  a commit failed: memory is ahead of disk
    int exit_code;              //  what shard_actor_main returns
    s_xfer_t xfer;              //  shard transfers, source and target side
} s_shard_t;

//  Shard transfers (defined below, "Shard transfers").
static void s_xfer_on_state (s_shard_t *self, const json_t *state, const json_t *coll);
static void s_xfer_info (s_shard_t *self, json_t *json);
static int s_apply_records (s_shard_t *self, envelope_t *req, envelope_t *reply);
static size_t s_xfer_keep_held (s_shard_t *self, pointid_t *ids, size_t n);
static bool s_xfer_before (s_shard_t *self, bool write, envelope_t *req, envelope_t *reply);
static bool s_xfer_after (s_shard_t *self, bool write, envelope_t **req_p, envelope_t *reply);
static void s_xfer_flush (s_shard_t *self);
static void s_xfer_pump (s_shard_t *self);
static int s_xfer_wait_ms (s_shard_t *self);

//  ---------------------------------------------------------------------------
//  Small helpers

//  Printable sample of untrusted bytes for a log line.
static void
s_sample (const void *data, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *) data;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < outlen && i < S_SAMPLE; i++)
        out [n++] = (p [i] >= 0x20 && p [i] < 0x7f && p [i] != '"') ? (char) p [i] : '?';
    if (len > S_SAMPLE && n + 4 < outlen) {
        memcpy (out + n, "...", 3);
        n += 3;
    }
    out [n] = 0;
}

static void
s_mark_dirty (s_shard_t *self, const pointid_t *id)
{
    if (self->n_dirty == self->cap_dirty) {
        self->cap_dirty = self->cap_dirty ? self->cap_dirty * 2 : 256;
        self->dirty = (pointid_t *) realloc (self->dirty, self->cap_dirty * sizeof (pointid_t));
        assert (self->dirty);
    }
    self->dirty [self->n_dirty++] = *id;
}

static int
s_cmp_ids (const void *a, const void *b)
{
    return pointid_cmp ((const pointid_t *) a, (const pointid_t *) b);
}

//  Sorts ids and drops repeats; returns the new count.
static size_t
s_unique_ids (pointid_t *ids, size_t n)
{
    if (n < 2)
        return n;
    qsort (ids, n, sizeof *ids, s_cmp_ids);
    size_t out = 1;
    for (size_t i = 1; i < n; i++)
        if (!pointid_eq (&ids [i], &ids [out - 1]))
            ids [out++] = ids [i];
    return out;
}

//  A JSON number that jansson will accept (it refuses NaN and infinities).
static json_t *
s_real (double value)
{
    return json_real (isfinite (value) ? value : 0.0);
}

//  Reads an optional non-negative integer field; -SH_EINVAL (message set)
//  if present and not one.
static int
s_get_count (envelope_t *reply, const json_t *obj, const char *name, size_t dflt,
             size_t *out)
{
    const json_t *v = json_object_get (obj, name);
    if (!v || json_is_null (v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer (v) || json_integer_value (v) < 0) {
        envelope_set_error (reply, -SH_EINVAL, "\"%s\" must be a non-negative integer", name);
        return -SH_EINVAL;
    }
    *out = (size_t) json_integer_value (v);
    return 0;
}

//  ---------------------------------------------------------------------------
//  Vector specs from the collection config

//  Builds the specs from config.params (vectors and sparse_vectors). *specs
//  is yours. -SH_EINVAL (logged) for a config we cannot serve.
static int
s_specs_from_config (const json_t *config, segment_vspec_t **specs, size_t *n_specs)
{
    *specs = NULL;
    *n_specs = 0;
    const json_t *params = json_object_get (config, "params");
    const json_t *vectors = json_object_get (params, "vectors");
    const json_t *sparse = json_object_get (params, "sparse_vectors");
    size_t cap = (json_is_object (vectors) ? json_object_size (vectors) : 0)
               + (json_is_object (sparse) ? json_object_size (sparse) : 0) + 1;
    segment_vspec_t *out = (segment_vspec_t *) calloc (cap, sizeof *out);
    assert (out);
    size_t n = 0;

    //  One unnamed vector {"size", "distance"}, or a map name -> that.
    bool unnamed = json_is_object (vectors)
                && json_is_integer (json_object_get (vectors, "size"));
    const char *name;
    const json_t *params_of;
    json_t *single = NULL;
    if (unnamed) {
        single = json_pack ("{sO}", "", vectors);
        vectors = single;
    }
    json_object_foreach ((json_t *) vectors, name, params_of) {
        const json_t *size = json_object_get (params_of, "size");
        const char *dist = json_string_value (json_object_get (params_of, "distance"));
        int d = dist ? distance_parse (dist) : -1;
        if (strlen (name) >= sizeof out [n].name || !json_is_integer (size)
            || json_integer_value (size) <= 0 || json_integer_value (size) > UINT32_MAX
            || d < 0) {
            log_error ("cannot serve vector \"%.64s\": bad name, size or distance", name);
            json_decref (single);
            free (out);
            return -SH_EINVAL;
        }
        snprintf (out [n].name, sizeof out [n].name, "%s", name);
        out [n].dim = (uint32_t) json_integer_value (size);
        out [n].distance = (distance_t) d;
        n++;
    }
    json_decref (single);
    if (json_is_object (sparse)) {
        json_object_foreach ((json_t *) sparse, name, params_of) {
            if (strlen (name) >= sizeof out [n].name) {
                log_error ("cannot serve sparse vector \"%.64s\": name too long", name);
                free (out);
                return -SH_EINVAL;
            }
            snprintf (out [n].name, sizeof out [n].name, "%s", name);
            out [n].sparse = true;
            n++;
        }
    }
    *specs = out;
    *n_specs = n;
    return 0;
}

//  Takes the gate for writing until the end of the turn (s_flush): called
//  before anything the readers look at changes.
static void
s_write_begin (s_shard_t *self)
{
    if (self->write_held || !self->gate)
        return;
    rwgate_write_lock (self->gate);
    self->write_held = true;
}

//  The collection with our uid in a state, or NULL (borrowed).
static json_t *
s_find_collection (s_shard_t *self, const json_t *state)
{
    const char *name;
    json_t *coll;
    json_object_foreach (json_object_get (state, "collections"), name, coll) {
        const json_t *uid = json_object_get (coll, "uid");
        if (json_is_integer (uid) && (uint64_t) json_integer_value (uid) == self->uid)
            return coll;
    }
    return NULL;
}

//  Keeps the collection's payload_schema (the fields to index).
static void
s_set_schema (s_shard_t *self, const json_t *coll)
{
    const json_t *schema = json_object_get (coll, "payload_schema");
    json_decref (self->payload_schema);
    self->payload_schema = json_is_object (schema) ? json_deep_copy (schema) : json_object ();
}

//  The payload indexes follow every payload change of the segment.
static void
s_on_payload (uint32_t slot, const json_t *old_payload, bool was_live,
              const json_t *new_payload, bool is_live, void *arg)
{
    pindex_t *pindex = (pindex_t *) arg;
    int rc = 0;
    if (was_live)
        rc = pindex_remove_point (pindex, slot, old_payload);
    if (rc == 0 && is_live)
        rc = pindex_add_point (pindex, slot, new_payload);
    //  The segment hands every slot over once and takes it back once.
    assert (rc == 0);
}

static const json_t *
s_payload_of (uint32_t slot, void *arg)
{
    return segment_slot_payload ((const segment_t *) arg, slot);
}

//  Makes the payload indexes those of payload_schema: new fields are built
//  over the points held, removed ones dropped. Caller holds the gate for
//  writing (or no reader exists yet). background: a new field only starts
//  here, the optimizer fills it under the read side (a big shard must not
//  stop writes and searches while it builds) and publishes it; filters on
//  it are answered without it until then. Else (at start, before the
//  points load) it is built at once.
static void
s_sync_fields (s_shard_t *self, bool background)
{
    for (size_t i = pindex_field_count (self->pindex); i-- > 0;) {
        char *have = strdup (pindex_field_name (self->pindex, i));
        assert (have);
        bool keep = false;
        const char *field;
        json_t *entry;
        json_object_foreach (self->payload_schema, field, entry) {
            char *canonical = filter_path_canonical (field);
            keep = keep || (canonical && strcmp (canonical, have) == 0);
            free (canonical);
        }
        if (!keep) {
            pindex_drop_field (self->pindex, have);
            log_info ("dropped the payload index of \"%.100s\"", have);
        }
        free (have);
    }
    const char *field;
    json_t *entry;
    json_object_foreach (self->payload_schema, field, entry) {
        //  The stored form: {"data_type", "params"}; params (when given) is
        //  the REST field_schema object, else the type name is.
        const json_t *params = json_object_get (entry, "params");
        const json_t *schema = json_is_object (params) ? params
                             : json_object_get (entry, "data_type");
        pindex_schema_t old;
        bool had = pindex_field_schema (self->pindex, field, &old) == 0;
        char err [S_ERRLEN] = "";
        int rc = background
               ? pindex_begin_field (self->pindex, field, schema, err, sizeof err)
               : pindex_create_field (self->pindex, field, schema, s_payload_of,
                                      self->segment, err, sizeof err);
        if (rc)
            log_error ("cannot index payload field \"%.100s\": %s", field, err);
        else
        if (!had)
            log_info ("%s the payload index of \"%.100s\" (%s) over %zu points",
                      background ? "building" : "built", field,
                      json_string_value (json_object_get (entry, "data_type")),
                      segment_size (self->segment));
    }
}

//  What a read plans over.
static planner_t
s_planner (s_shard_t *self)
{
    return (planner_t) { self->segment, self->vindex, self->pindex };
}

//  Hands every dense vector's index params (hnsw_config, its own override,
//  optimizer_config) to the vindex.
static void
s_configure_vindex (s_shard_t *self, const json_t *config)
{
    for (size_t i = 0; i < self->n_specs; i++) {
        if (self->specs [i].sparse)
            continue;
        vindex_params_t params;
        vindex_params_from_config (config, self->specs [i].name, &params);
        vindex_configure (self->vindex, self->specs [i].name, &params);
    }
}

//  A newer state: stop if our collection is gone, add named vectors that
//  appeared since. Older or equal states are ignored, so a publication
//  that predates our META_GET answer cannot make us think we were deleted.
static void
s_on_state (s_shard_t *self, const json_t *state)
{
    const json_t *applied = json_object_get (state, "applied");
    if (!json_is_integer (applied))
        return;
    uint64_t index = (uint64_t) json_integer_value (applied);
    log_trace ("meta state applied=%" PRIu64 " (have %" PRIu64 ")", index, self->meta_applied);
    if (index <= self->meta_applied)
        return;
    self->meta_applied = index;
    const json_t *coll = s_find_collection (self, state);
    if (!coll) {
        log_info ("collection uid=%" PRIu64 " was deleted, stopping", self->uid);
        self->stopping = true;
        self->exit_code = 0;
        return;
    }
    s_xfer_on_state (self, state, coll);
    s_write_begin (self);
    s_set_schema (self, coll);
    s_sync_fields (self, true);
    segment_vspec_t *specs = NULL;
    size_t n = 0;
    if (s_specs_from_config (json_object_get (coll, "config"), &specs, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        if (segment_vspec (self->segment, specs [i].name))
            continue;
        int rc = segment_add_vspec (self->segment, &specs [i]);
        if (rc) {
            log_error ("cannot add vector \"%s\": %s", specs [i].name, sh_strerror (rc));
            continue;
        }
        self->specs = (segment_vspec_t *) realloc (self->specs,
                                                   (self->n_specs + 1) * sizeof *self->specs);
        assert (self->specs);
        self->specs [self->n_specs++] = specs [i];
        log_info ("added %s vector \"%s\"", specs [i].sparse ? "sparse" : "dense",
                  specs [i].name);
    }
    free (specs);
    s_configure_vindex (self, json_object_get (coll, "config"));
}

//  Asks the raft actor for the state, retrying while it starts. 0 and
//  *state (yours), -SH_EUNAVAIL if it never answered, -SH_EIO on SIGTERM.
static int
s_fetch_state (s_shard_t *self, json_t **state)
{
    *state = NULL;
    char endpoint [PATHS_MAX];
    if (paths_raft_endpoint (self->config->storage_path, endpoint))
        return -SH_EINVAL;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_sndtimeo (dealer, 0);
    if (zsock_connect (dealer, "%s", endpoint)) {
        log_error ("cannot connect to %s", endpoint);
        zsock_destroy (&dealer);
        return -SH_EIO;
    }
    zpoller_t *poller = zpoller_new (dealer, NULL);
    assert (poller);
    int rc = -SH_EUNAVAIL;
    for (uint64_t attempt = 1; attempt <= S_META_ATTEMPTS && !*state; attempt++) {
        uint64_t deadline = envelope_now_ms () + S_META_WAIT_MS;
        envelope_t *req = envelope_new (MSG_META_GET, attempt, deadline);
        if (envelope_send (&req, dealer))
            log_debug ("meta_get attempt=%" PRIu64 ": send refused", attempt);
        //  Wait for the answer to this attempt; answers to earlier attempts
        //  that arrive late are as good.
        while (!*state) {
            uint64_t now = envelope_now_ms ();
            if (now >= deadline)
                break;
            void *which = zpoller_wait (poller, (int) (deadline - now));
            if (zpoller_terminated (poller)) {
                rc = -SH_EIO;
                attempt = S_META_ATTEMPTS;
                break;
            }
            if (!which)
                continue;
            envelope_t *reply = NULL;
            if (envelope_recv (dealer, &reply))
                continue;
            json_t *got = json_object_get (envelope_json (reply), "state");
            if (envelope_is_reply (reply) && envelope_type (reply) == MSG_META_GET
                && envelope_status (reply) == 0 && json_is_object (got))
                *state = json_incref (got);
            else
                log_info ("meta_get req=%" PRIu64 ": no state: %s",
                          envelope_request_id (reply), envelope_error (reply));
            envelope_destroy (&reply);
        }
        if (!*state && rc != -SH_EIO)
            log_info ("meta_get attempt=%" PRIu64 "/%d: raft actor not answering yet",
                      attempt, S_META_ATTEMPTS);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    return *state ? 0 : rc;
}

//  ---------------------------------------------------------------------------
//  Loading the store into the segment

typedef struct {
    s_shard_t *self;
    size_t loaded;          //  points put in the segment
    size_t dropped;         //  vectors left out (no longer in the config)
    size_t failed;          //  points the segment refused
    uint64_t max_version;   //  highest point version seen
} s_load_t;

static int
s_load_point (const shard_store_point_t *point, void *arg)
{
    s_load_t *load = (s_load_t *) arg;
    s_shard_t *self = load->self;
    if (point->version > load->max_version)
        load->max_version = point->version;
    //  Keep only vectors the config still has, with the same shape: a stored
    //  vector that no longer fits must not cost the whole point.
    segment_vec_t *vecs = (segment_vec_t *) calloc (point->n_vecs + 1, sizeof *vecs);
    assert (vecs);
    size_t n = 0;
    for (size_t i = 0; i < point->n_vecs; i++) {
        const segment_vec_t *v = &point->vecs [i];
        const segment_vspec_t *spec = segment_vspec (self->segment, v->name);
        if (!spec || spec->sparse != (v->dense == NULL) || (v->dense && v->dim != spec->dim))
            load->dropped++;
        else
            vecs [n++] = *v;
    }
    char err [S_ERRLEN] = "";
    json_t *payload = point->payload ? json_incref (point->payload) : NULL;
    //  Back into the slot a saved graph knows it by, if there is one.
    uint32_t slot;
    int rc = vindex_slot_hint (self->vindex, &point->id, &slot)
           ? segment_upsert_at (self->segment, slot, &point->id, point->version, vecs, n,
                                payload, err, sizeof err)
           : segment_upsert (self->segment, &point->id, point->version, vecs, n, payload,
                             err, sizeof err);
    json_decref (payload);
    free (vecs);
    if (rc) {
        char idtext [POINTID_TEXT_SIZE];
        pointid_format (&point->id, idtext);
        log_error ("load: point %s refused by the segment: %s", idtext, err);
        load->failed++;
    }
    else
        load->loaded++;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Reading requests: selectors and records

typedef enum { S_PAY_NONE, S_PAY_ALL, S_PAY_INCLUDE, S_PAY_EXCLUDE } s_paymode_t;

typedef struct {
    s_paymode_t pay;            //  which payload to return
    const json_t *pay_keys;     //  include/exclude paths (array of strings)
    bool vec_all;               //  every vector
    const json_t *vec_names;    //  else these names (array of strings) or NULL
    envelope_t *reply;          //  where dense vectors go
    int blob;                   //  reply blob for dense vectors, -1 until needed
} s_out_t;

static bool
s_is_string_array (const json_t *json)
{
    if (!json_is_array (json))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach (json, i, v)
        if (!json_is_string (v))
            return false;
    return true;
}

//  Parses "with_payload" and "with_vector" of obj (absent = false: records
//  carry payload and vectors only when asked, proto/msg.h).
static int
s_out_init (s_out_t *out, envelope_t *reply, const json_t *obj)
{
    memset (out, 0, sizeof *out);
    out->reply = reply;
    out->blob = -1;
    const json_t *wp = json_object_get (obj, "with_payload");
    if (!wp || json_is_false (wp) || json_is_null (wp))
        out->pay = S_PAY_NONE;
    else
    if (json_is_true (wp))
        out->pay = S_PAY_ALL;
    else
    if (s_is_string_array (wp)) {
        out->pay = S_PAY_INCLUDE;
        out->pay_keys = wp;
    }
    else
    if (json_is_object (wp) && json_object_size (wp) == 1
        && s_is_string_array (json_object_get (wp, "include"))) {
        out->pay = S_PAY_INCLUDE;
        out->pay_keys = json_object_get (wp, "include");
    }
    else
    if (json_is_object (wp) && json_object_size (wp) == 1
        && s_is_string_array (json_object_get (wp, "exclude"))) {
        out->pay = S_PAY_EXCLUDE;
        out->pay_keys = json_object_get (wp, "exclude");
    }
    else {
        envelope_set_error (reply, -SH_EINVAL,
                            "\"with_payload\" must be a boolean, a list of keys, "
                            "{\"include\": [...]} or {\"exclude\": [...]}");
        return -SH_EINVAL;
    }
    const json_t *wv = json_object_get (obj, "with_vector");
    if (!wv || json_is_boolean (wv) || json_is_null (wv))
        out->vec_all = json_is_true (wv);
    else
    if (s_is_string_array (wv))
        out->vec_names = wv;
    else {
        envelope_set_error (reply, -SH_EINVAL,
                            "\"with_vector\" must be a boolean or a list of vector names");
        return -SH_EINVAL;
    }
    return 0;
}

//  One step of a payload path: "key", "key[]" (every element), "key[n]",
//  or a quoted "\"a.b\"" key that holds dots, as Qdrant's paths allow.
typedef struct {
    const char *key;        //  key bytes (not NUL-terminated)
    size_t key_len;         //  their count
    int bracket;            //  0 none, 1 [], 2 [n]
    size_t index;           //  n of [n]
    const char *rest;       //  the path after this step, or NULL if last
} s_step_t;

static void
s_step (const char *path, s_step_t *step)
{
    memset (step, 0, sizeof *step);
    const char *p = path;
    const char *close = *p == '"' ? strchr (p + 1, '"') : NULL;
    if (close) {
        step->key = p + 1;
        step->key_len = (size_t) (close - p - 1);
        p = close + 1;
    }
    else {
        step->key = p;
        while (*p && *p != '.' && *p != '[')
            p++;
        step->key_len = (size_t) (p - step->key);
    }
    if (*p == '[') {
        const char *end = strchr (p, ']');
        size_t index = 0;
        bool digits = end != NULL;
        for (const char *d = p + 1; digits && d < end; d++) {
            digits = *d >= '0' && *d <= '9' && index <= SIZE_MAX / 10 - 1;
            index = index * 10 + (size_t) (*d - '0');
        }
        if (digits) {
            step->bracket = end == p + 1 ? 1 : 2;
            step->index = index;
            p = end + 1;
        }
    }
    //  Anything else up to the next dot ("a[0][1]", a stray "[") is not a
    //  path we can follow: it stays part of the key, which then matches
    //  nothing.
    if (*p && *p != '.') {
        while (*p && *p != '.')
            p++;
        step->key = path;
        step->key_len = (size_t) (p - path);
        step->bracket = 0;
    }
    step->rest = *p == '.' ? p + 1 : NULL;
}

static json_t *s_pick (const json_t *value, const char *path);

//  Projects every element of array along rest (NULL = whole elements).
static json_t *
s_pick_elements (const json_t *array, const char *rest)
{
    json_t *out = json_array ();
    size_t i;
    const json_t *elem;
    json_array_foreach (array, i, elem) {
        json_t *sub = rest ? s_pick (elem, rest) : json_deep_copy (elem);
        if (sub)
            json_array_append_new (out, sub);
    }
    if (rest && json_array_size (out) == 0) {
        json_decref (out);
        return NULL;
    }
    return out;
}

//  The part of value that path reaches, as a new object with the same
//  nesting ({"a": {"b": 1}} for "a.b"), or NULL if the path reaches nothing.
static json_t *
s_pick (const json_t *value, const char *path)
{
    if (!json_is_object (value))
        return NULL;
    s_step_t step;
    s_step (path, &step);
    const json_t *child = json_object_getn (value, step.key, step.key_len);
    if (!child)
        return NULL;
    json_t *sub = NULL;
    if (step.bracket == 2) {
        const json_t *elem = json_array_get (child, step.index);
        json_t *picked = !elem ? NULL : step.rest ? s_pick (elem, step.rest)
                                                  : json_deep_copy (elem);
        if (picked)
            sub = json_pack ("[o]", picked);
    }
    else
    if (json_is_array (child) && (step.bracket == 1 || step.rest))
        //  A path through an array goes through each element, as filters do.
        sub = s_pick_elements (child, step.rest);
    else
        sub = step.rest ? s_pick (child, step.rest) : json_deep_copy (child);
    if (!sub)
        return NULL;
    json_t *out = json_object ();
    json_object_setn_new (out, step.key, step.key_len, sub);
    return out;
}

//  Merges src into dst (objects key by key, arrays element by element).
static void
s_merge (json_t *dst, json_t *src)
{
    if (json_is_object (dst) && json_is_object (src)) {
        const char *key;
        json_t *value;
        json_object_foreach (src, key, value) {
            json_t *have = json_object_get (dst, key);
            if (have && ((json_is_object (have) && json_is_object (value))
                         || (json_is_array (have) && json_is_array (value)
                             && json_array_size (have) == json_array_size (value))))
                s_merge (have, value);
            else
                json_object_set (dst, key, value);
        }
    }
    else
    if (json_is_array (dst) && json_is_array (src)) {
        for (size_t i = 0; i < json_array_size (src); i++) {
            json_t *have = json_array_get (dst, i);
            json_t *value = json_array_get (src, i);
            if (json_is_object (have) && json_is_object (value))
                s_merge (have, value);
            else
                json_array_set (dst, i, value);
        }
    }
}

//  The payload a record carries under the selector (new), or NULL for none.
static json_t *
s_payload_out (const s_out_t *out, const json_t *payload)
{
    if (out->pay == S_PAY_NONE)
        return NULL;
    if (!payload)
        return json_object ();
    if (out->pay == S_PAY_ALL)
        return json_deep_copy (payload);
    size_t i;
    const json_t *key;
    if (out->pay == S_PAY_EXCLUDE) {
        json_t *copy = json_deep_copy (payload);
        //  The same path edit as delete_payload, so both read paths alike.
        json_array_foreach (out->pay_keys, i, key)
            filter_path_remove (copy, json_string_value (key));
        return copy;
    }
    json_t *result = json_object ();
    json_array_foreach (out->pay_keys, i, key) {
        json_t *picked = s_pick (payload, json_string_value (key));
        if (picked) {
            s_merge (result, picked);
            json_decref (picked);
        }
    }
    return result;
}

static bool
s_vec_wanted (const s_out_t *out, const char *name)
{
    if (out->vec_all)
        return true;
    size_t i;
    const json_t *v;
    json_array_foreach (out->vec_names, i, v)
        if (strcmp (json_string_value (v), name) == 0)
            return true;
    return false;
}

//  A record for point id (proto/msg.h), or NULL if the point is gone.
static json_t *
s_record (s_shard_t *self, s_out_t *out, const pointid_t *id, const float *score)
{
    segment_point_t point;
    if (segment_get (self->segment, id, &point))
        return NULL;
    json_t *record = json_object ();
    json_object_set_new (record, "id", pointid_to_json (id));
    json_object_set_new (record, "version", json_integer ((json_int_t) point.version));
    if (score)
        //  The double nearest the float's shortest decimal: written short
        //  in the reply and read back fast, and the same float again for
        //  the gateway, which ranks and prints scores as floats.
        json_object_set_new (record, "score",
                             s_real (isfinite (*score) ? fmtnum_float_as_double (*score) : 0));
    json_t *payload = s_payload_out (out, point.payload);
    if (payload)
        json_object_set_new (record, "payload", payload);
    if (!out->vec_all && !out->vec_names)
        return record;
    json_t *vectors = json_object ();
    for (size_t i = 0; i < self->n_specs; i++) {
        const segment_vspec_t *spec = &self->specs [i];
        segment_vec_t v;
        if (!s_vec_wanted (out, spec->name)
            || segment_get_vector (self->segment, id, spec->name, &v))
            continue;
        if (v.dense) {
            if (out->blob < 0)
                out->blob = envelope_new_blob (out->reply);
            assert (out->blob >= 0);    //  one blob per reply, created here
            json_object_set_new (vectors, spec->name,
                                 vecref_put (out->reply, out->blob, v.dense, v.dim));
        }
        else {
            json_t *indices = json_array ();
            json_t *values = json_array ();
            for (uint32_t k = 0; k < v.nnz; k++) {
                json_array_append_new (indices, json_integer (v.indices [k]));
                json_array_append_new (values, s_real (v.values [k]));
            }
            json_object_set_new (vectors, spec->name,
                                 json_pack ("{soso}", "indices", indices, "values", values));
        }
    }
    json_object_set_new (record, "vectors", vectors);
    return record;
}

//  Parses an optional "filter" of obj into *filter (NULL when absent/null).
static int
s_get_filter (envelope_t *reply, const json_t *obj, filter_t **filter)
{
    *filter = NULL;
    const json_t *json = json_object_get (obj, "filter");
    if (!json)
        return 0;
    char err [S_ERRLEN] = "";
    int rc = filter_parse (json, filter, err, sizeof err);
    if (rc) {
        envelope_set_error (reply, rc, "Bad filter: %s", err [0] ? err : sh_strerror (rc));
        return rc;
    }
    return 0;
}

//  Parses an array of point ids; *ids is yours.
static int
s_get_ids (envelope_t *reply, const json_t *json, const char *field, pointid_t **ids,
           size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!json_is_array (json)) {
        envelope_set_error (reply, -SH_EINVAL, "\"%s\" must be a list of point ids", field);
        return -SH_EINVAL;
    }
    size_t count = json_array_size (json);
    pointid_t *out = (pointid_t *) calloc (count + 1, sizeof *out);
    assert (out);
    for (size_t i = 0; i < count; i++)
        if (pointid_from_json (json_array_get (json, i), &out [i])) {
            envelope_set_error (reply, -SH_EINVAL,
                                "%s[%zu]: a point id must be an unsigned integer or a UUID",
                                field, i);
            free (out);
            return -SH_EINVAL;
        }
    *ids = out;
    *n = count;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Read handlers. Each fills reply and returns 0, or sets an error on the
//  reply and returns its code.

typedef int (s_handler_fn) (s_shard_t *self, envelope_t *req, envelope_t *reply);

//  One search of a SHARD_SEARCH: its ranked records.
static int
s_search_one (s_shard_t *self, const json_t *search, size_t index, envelope_t *req,
              envelope_t *reply, json_t **records)
{
    *records = NULL;
    if (!json_is_object (search)) {
        envelope_set_error (reply, -SH_EINVAL, "searches[%zu] must be an object", index);
        return -SH_EINVAL;
    }
    segment_search_t sreq;
    memset (&sreq, 0, sizeof sreq);
    const json_t *vector = json_object_get (search, "vector");
    const json_t *name = json_object_get (vector, "name");
    if (!json_is_object (vector) || (name && !json_is_string (name))) {
        envelope_set_error (reply, -SH_EINVAL,
                            "searches[%zu]: \"vector\" must be {\"name\", \"dense\"|\"sparse\"}",
                            index);
        return -SH_EINVAL;
    }
    sreq.name = name ? json_string_value (name) : "";
    sreq.query.name = sreq.name;
    const json_t *dense = json_object_get (vector, "dense");
    const json_t *sparse = json_object_get (vector, "sparse");
    uint32_t *indices = NULL;
    float *values = NULL;
    int rc = 0;
    if (dense) {
        if (vecref_get (req, dense, &sreq.query.dense, &sreq.query.dim)) {
            envelope_set_error (reply, -SH_EPROTO,
                                "searches[%zu]: bad dense vector reference", index);
            return -SH_EPROTO;
        }
    }
    else {
        const json_t *ji = json_object_get (sparse, "indices");
        const json_t *jv = json_object_get (sparse, "values");
        if (!json_is_array (ji) || !json_is_array (jv)
            || json_array_size (ji) != json_array_size (jv)
            || json_array_size (ji) > UINT32_MAX) {
            envelope_set_error (reply, -SH_EINVAL,
                                "searches[%zu]: the query needs \"dense\" or \"sparse\" "
                                "{\"indices\", \"values\"} of equal length", index);
            return -SH_EINVAL;
        }
        size_t nnz = json_array_size (ji);
        indices = (uint32_t *) calloc (nnz + 1, sizeof *indices);
        values = (float *) calloc (nnz + 1, sizeof *values);
        assert (indices && values);
        for (size_t k = 0; k < nnz; k++) {
            const json_t *i = json_array_get (ji, k), *v = json_array_get (jv, k);
            if (!json_is_integer (i) || json_integer_value (i) < 0
                || json_integer_value (i) > UINT32_MAX || !json_is_number (v)) {
                envelope_set_error (reply, -SH_EINVAL,
                                    "searches[%zu]: sparse indices must be u32 and values "
                                    "numbers", index);
                free (indices);
                free (values);
                return -SH_EINVAL;
            }
            indices [k] = (uint32_t) json_integer_value (i);
            values [k] = (float) json_number_value (v);
        }
        sreq.query.indices = indices;
        sreq.query.values = values;
        sreq.query.nnz = (uint32_t) nnz;
    }
    size_t limit = 0, offset = 0;
    filter_t *filter = NULL;
    s_out_t out;
    const json_t *threshold = json_object_get (search, "score_threshold");
    if (s_get_count (reply, search, "limit", 10, &limit)
        || s_get_count (reply, search, "offset", 0, &offset)
        || s_out_init (&out, reply, search)
        || s_get_filter (reply, search, &filter)) {
        free (indices);
        free (values);
        return envelope_status (reply);
    }
    if (threshold && !json_is_null (threshold)) {
        if (!json_is_number (threshold)) {
            envelope_set_error (reply, -SH_EINVAL,
                                "searches[%zu]: \"score_threshold\" must be a number", index);
            rc = -SH_EINVAL;
            goto done;
        }
        sreq.has_threshold = true;
        sreq.score_threshold = (float) json_number_value (threshold);
    }
    const json_t *exact = json_object_get (search, "exact");
    if (exact && !json_is_null (exact) && !json_is_boolean (exact)) {
        envelope_set_error (reply, -SH_EINVAL, "searches[%zu]: \"exact\" must be a boolean",
                            index);
        rc = -SH_EINVAL;
        goto done;
    }
    size_t ef = 0;
    if (s_get_count (reply, search, "hnsw_ef", 0, &ef)) {
        rc = -SH_EINVAL;
        goto done;
    }
    sreq.filter = filter;
    //  offset + limit hits, but never more than there are points: the sizes
    //  come from outside and bound an allocation.
    size_t want = limit > SIZE_MAX - offset ? SIZE_MAX : limit + offset;
    size_t have = segment_size (self->segment);
    sreq.limit = want < have ? want : have;
    planner_search_t plan = { .search = sreq, .exact = json_is_true (exact),
                              .ef = ef < HNSW_MAX_EF ? ef : HNSW_MAX_EF };
    segment_hit_t *hits = (segment_hit_t *) calloc (sreq.limit + 1, sizeof *hits);
    assert (hits);
    char err [S_ERRLEN] = "";
    planner_t planner = s_planner (self);
    int n = planner_search (&planner, &plan, hits, err, sizeof err);
    if (n < 0) {
        envelope_set_error (reply, n, "searches[%zu]: %s", index,
                            err [0] ? err : sh_strerror (n));
        rc = n;
    }
    else {
        *records = json_array ();
        for (int i = 0; i < n; i++) {
            json_t *record = s_record (self, &out, &hits [i].id, &hits [i].score);
            if (record)
                json_array_append_new (*records, record);
        }
    }
    free (hits);
done:
    filter_destroy (&filter);
    free (indices);
    free (values);
    return rc;
}

//  A batch of searches shared out among the workers (s_on_search). The
//  worker that got the request and the helpers it queued each claim the
//  next search until none is left; the owner waits only for helpers that
//  are claiming (never for a queued one, which may wait behind other work:
//  then the owner does it all), so no worker ever waits on a job that has
//  not started. Helpers take no gate of their own: they only search while
//  the owner holds its read gate, waiting for them.
typedef struct {
    s_shard_t *self;            //  the shard
    envelope_t *req;            //  the request (the owner's)
    const json_t *searches;     //  its "searches"
    size_t n;                   //  how many
    json_t **records;           //  out: the records of search i
    envelope_t **failed;        //  out: the error reply of search i, or NULL
    pthread_mutex_t mutex;      //  guards what follows
    pthread_cond_t idle;        //  signalled when active drops to 0
    size_t next;                //  the next search to claim
    size_t active;              //  helpers claiming now
    size_t refs;                //  the owner and the helper jobs not yet run
} s_split_t;

static void
s_split_unref (s_split_t *sp)
{
    pthread_mutex_lock (&sp->mutex);
    size_t refs = --sp->refs;
    pthread_mutex_unlock (&sp->mutex);
    if (refs)
        return;
    for (size_t i = 0; i < sp->n; i++) {
        json_decref (sp->records [i]);
        envelope_destroy (&sp->failed [i]);
    }
    free (sp->records);
    free (sp->failed);
    pthread_mutex_destroy (&sp->mutex);
    pthread_cond_destroy (&sp->idle);
    free (sp);
}

//  Claims and runs searches until none is left. Each writes its errors on
//  a reply of its own: the real one is the owner's alone.
static void
s_split_run (s_split_t *sp)
{
    for (;;) {
        pthread_mutex_lock (&sp->mutex);
        size_t i = sp->next < sp->n ? sp->next++ : SIZE_MAX;
        pthread_mutex_unlock (&sp->mutex);
        if (i == SIZE_MAX)
            return;
        envelope_t *scratch = envelope_new_reply (sp->req, 0);
        if (s_search_one (sp->self, json_array_get (sp->searches, i), i, sp->req, scratch,
                          &sp->records [i]))
            sp->failed [i] = scratch;
        else
            envelope_destroy (&scratch);
    }
}

//  A helper job (s_work) of a split batch.
static void
s_split_help (s_split_t *sp)
{
    pthread_mutex_lock (&sp->mutex);
    bool work = sp->next < sp->n;
    if (work)
        sp->active++;
    pthread_mutex_unlock (&sp->mutex);
    if (work) {
        s_split_run (sp);
        pthread_mutex_lock (&sp->mutex);
        if (--sp->active == 0)
            pthread_cond_broadcast (&sp->idle);
        pthread_mutex_unlock (&sp->mutex);
    }
    s_split_unref (sp);
}

//  True when a search asks for vectors, which its records put in the
//  reply's blob: such a batch is not shared out (one blob, one writer).
static bool
s_wants_vectors (const json_t *search)
{
    const json_t *wv = json_object_get (search, "with_vector");
    return wv && !json_is_false (wv) && !json_is_null (wv);
}

static void s_submit_helper (s_shard_t *self, s_split_t *sp);

static int
s_on_search (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    const json_t *searches = json_object_get (envelope_json (req), "searches");
    if (!json_is_array (searches)) {
        envelope_set_error (reply, -SH_EINVAL, "\"searches\" must be a list");
        return -SH_EINVAL;
    }
    size_t n = json_array_size (searches);
    size_t helpers = self->workers ? workers_size (self->workers) - 1 : 0;
    if (helpers > n - (n > 0))
        helpers = n ? n - 1 : 0;
    for (size_t i = 0; i < n && helpers; i++)
        if (s_wants_vectors (json_array_get (searches, i)))
            helpers = 0;
    json_t *results = json_array ();
    if (helpers == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *records = NULL;
            int rc = s_search_one (self, json_array_get (searches, i), i, req, reply,
                                   &records);
            if (rc) {
                json_decref (results);
                return rc;
            }
            json_array_append_new (results, records);
        }
        json_object_set_new (envelope_json (reply), "results", results);
        return 0;
    }
    //  Shared out: a batch from one client uses every core, as searches
    //  from many clients do.
    s_split_t *sp = (s_split_t *) calloc (1, sizeof *sp);
    assert (sp);
    *sp = (s_split_t) { .self = self, .req = req, .searches = searches, .n = n,
                        .refs = 1 + helpers };
    sp->records = (json_t **) calloc (n, sizeof *sp->records);
    sp->failed = (envelope_t **) calloc (n, sizeof *sp->failed);
    assert (sp->records && sp->failed);
    pthread_mutex_init (&sp->mutex, NULL);
    pthread_cond_init (&sp->idle, NULL);
    for (size_t h = 0; h < helpers; h++)
        s_submit_helper (self, sp);
    s_split_run (sp);
    pthread_mutex_lock (&sp->mutex);
    while (sp->active)
        pthread_cond_wait (&sp->idle, &sp->mutex);
    pthread_mutex_unlock (&sp->mutex);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (sp->failed [i]) {
            //  The first failure, as the loop above would have answered.
            rc = envelope_status (sp->failed [i]);
            envelope_set_error (reply, rc, "%s", envelope_error (sp->failed [i]));
            continue;
        }
        json_array_append (results, sp->records [i]);
    }
    s_split_unref (sp);
    if (rc) {
        json_decref (results);
        return rc;
    }
    json_object_set_new (envelope_json (reply), "results", results);
    return 0;
}

//  An id and where it was in the request.
typedef struct {
    pointid_t id;
    size_t pos;
} s_ranked_t;

static int
s_cmp_ranked (const void *a, const void *b)
{
    const s_ranked_t *x = (const s_ranked_t *) a, *y = (const s_ranked_t *) b;
    int c = pointid_cmp (&x->id, &y->id);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int
s_on_retrieve (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    json_t *json = envelope_json (req);
    s_out_t out;
    pointid_t *ids = NULL;
    size_t n = 0;
    if (s_out_init (&out, reply, json)
        || s_get_ids (reply, json_object_get (json, "ids"), "ids", &ids, &n))
        return envelope_status (reply);
    //  Each point once, in the order first asked for: sort positions by id
    //  (then position), and mark every later repeat.
    s_ranked_t *ranked = (s_ranked_t *) calloc (n + 1, sizeof *ranked);
    bool *repeat = (bool *) calloc (n + 1, sizeof *repeat);
    assert (ranked && repeat);
    for (size_t i = 0; i < n; i++) {
        ranked [i].id = ids [i];
        ranked [i].pos = i;
    }
    qsort (ranked, n, sizeof *ranked, s_cmp_ranked);
    for (size_t i = 1; i < n; i++)
        if (pointid_eq (&ranked [i].id, &ranked [i - 1].id))
            repeat [ranked [i].pos] = true;
    json_t *points = json_array ();
    for (size_t i = 0; i < n; i++) {
        json_t *record = repeat [i] ? NULL : s_record (self, &out, &ids [i], NULL);
        if (record)
            json_array_append_new (points, record);
    }
    free (ranked);
    free (repeat);
    free (ids);
    json_object_set_new (envelope_json (reply), "points", points);
    return 0;
}

static int
s_on_scroll (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    json_t *json = envelope_json (req);
    s_out_t out;
    size_t limit = 0;
    filter_t *filter = NULL;
    if (s_out_init (&out, reply, json) || s_get_count (reply, json, "limit", 10, &limit))
        return envelope_status (reply);
    if (limit == 0) {
        envelope_set_error (reply, -SH_EINVAL, "\"limit\" must be at least 1");
        return -SH_EINVAL;
    }
    pointid_t offset;
    const json_t *joffset = json_object_get (json, "offset");
    bool has_offset = joffset && !json_is_null (joffset);
    if (has_offset && pointid_from_json (joffset, &offset)) {
        envelope_set_error (reply, -SH_EINVAL,
                            "\"offset\" must be a point id (unsigned integer or UUID)");
        return -SH_EINVAL;
    }
    if (s_get_filter (reply, json, &filter))
        return envelope_status (reply);
    //  A page never holds more than the segment has: bounds the allocation.
    size_t have = segment_size (self->segment);
    size_t cap = limit < have ? limit : have;
    pointid_t *ids = (pointid_t *) calloc (cap + 1, sizeof *ids);
    assert (ids);
    pointid_t next;
    bool has_next = false;
    planner_t planner = s_planner (self);
    size_t n = cap ? planner_scroll (&planner, filter, has_offset ? &offset : NULL, cap, ids,
                                     &next, &has_next)
                   : 0;
    json_t *points = json_array ();
    for (size_t i = 0; i < n; i++) {
        json_t *record = s_record (self, &out, &ids [i], NULL);
        if (record)
            json_array_append_new (points, record);
    }
    json_t *rj = envelope_json (reply);
    json_object_set_new (rj, "points", points);
    json_object_set_new (rj, "next_page_offset", has_next ? pointid_to_json (&next)
                                                          : json_null ());
    free (ids);
    filter_destroy (&filter);
    return 0;
}

static int
s_on_count (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    filter_t *filter = NULL;
    if (s_get_filter (reply, envelope_json (req), &filter))
        return envelope_status (reply);
    planner_t planner = s_planner (self);
    size_t count = planner_count (&planner, filter);
    filter_destroy (&filter);
    json_object_set_new (envelope_json (reply), "count", json_integer ((json_int_t) count));
    return 0;
}

static int
s_on_info (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    json_object_update_new (
        envelope_json (reply),
        json_pack ("{sIsIsIsIsssI}", "points_count",
                   (json_int_t) segment_size (self->segment), "vectors_count",
                   (json_int_t) segment_vector_count (self->segment),
                   "indexed_vectors_count", (json_int_t) vindex_indexed_count (self->vindex),
                   "segments_count", (json_int_t) 1, "status",
                   vindex_behind (self->vindex) ? "yellow" : "green", "seq",
                   (json_int_t) self->last_seq));
    //  Points holding a value for each indexed field (Qdrant's
    //  PayloadIndexInfo.points), as the payload index counts them.
    //  And whether each is built (filled and in use), so that a wait=true
    //  index creation can wait for it, as Qdrant's builds it before it
    //  answers.
    json_t *points = json_object ();
    json_t *ready = json_object ();
    const char *field;
    json_t *entry;
    json_object_foreach (self->payload_schema, field, entry) {
        json_object_set_new (points, field, json_integer (
            (json_int_t) pindex_field_points (self->pindex, field)));
        json_object_set_new (ready, field,
                             json_boolean (pindex_field_ready (self->pindex, field)));
    }
    json_object_set_new (envelope_json (reply), "payload_points", points);
    json_object_set_new (envelope_json (reply), "payload_ready", ready);
    s_xfer_info (self, envelope_json (reply));
    return 0;
}

//  ---------------------------------------------------------------------------
//  Write handlers

//  The vectors of one point in a write, checked against the specs.
typedef struct {
    pointid_t id;               //  the point
    segment_vec_t *vecs;        //  into the batch's vecs
    size_t n_vecs;              //  its vectors
    json_t *payload;            //  upsert: object or NULL (borrowed from the request)
} s_wpoint_t;

typedef struct {
    s_wpoint_t *points;         //  n_points entries
    size_t n_points;
    segment_vec_t *vecs;        //  every point's vectors
    zlist_t *allocs;            //  sparse arrays to free with the batch
} s_batch_t;

static void
s_batch_free (s_batch_t *batch)
{
    free (batch->points);
    free (batch->vecs);
    if (batch->allocs) {
        void *mem;
        while ((mem = zlist_pop (batch->allocs)))
            free (mem);
        zlist_destroy (&batch->allocs);
    }
    memset (batch, 0, sizeof *batch);
}

//  Formats "points[i] (id X): " into prefix.
static void
s_point_prefix (size_t index, const pointid_t *id, char *prefix, size_t len)
{
    char idtext [POINTID_TEXT_SIZE];
    pointid_format (id, idtext);
    snprintf (prefix, len, "points[%zu] (id %s)", index, idtext);
}

//  Checks one {name: vecref | sparse} entry and fills *v.
static int
s_parse_vector (s_shard_t *self, envelope_t *req, s_batch_t *batch, const char *name,
                const json_t *json, segment_vec_t *v, char *err, size_t errlen)
{
    memset (v, 0, sizeof *v);
    const segment_vspec_t *spec = segment_vspec (self->segment, name);
    if (!spec) {
        snprintf (err, errlen, "Wrong input: Not existing vector name error: %s", name);
        return -SH_EINVAL;
    }
    v->name = spec->name;       //  lives as long as the segment
    if (vecref_is (json)) {
        if (spec->sparse) {
            snprintf (err, errlen, "Wrong input: vector \"%s\" is sparse, got a dense vector",
                      name);
            return -SH_EINVAL;
        }
        if (vecref_get (req, json, &v->dense, &v->dim)) {
            snprintf (err, errlen, "vector \"%s\": bad vector reference", name);
            return -SH_EPROTO;
        }
        if (v->dim != spec->dim) {
            snprintf (err, errlen,
                      "Wrong input: Vector dimension error: expected dim: %u, got %u",
                      spec->dim, v->dim);
            return -SH_EINVAL;
        }
        return 0;
    }
    const json_t *ji = json_object_get (json, "indices");
    const json_t *jv = json_object_get (json, "values");
    if (!json_is_array (ji) || !json_is_array (jv)) {
        snprintf (err, errlen, "vector \"%s\" must be a vector reference or a sparse "
                  "vector {\"indices\", \"values\"}", name);
        return -SH_EINVAL;
    }
    if (!spec->sparse) {
        snprintf (err, errlen, "Wrong input: vector \"%s\" is dense, got a sparse vector",
                  name);
        return -SH_EINVAL;
    }
    size_t nnz = json_array_size (ji);
    if (nnz != json_array_size (jv) || nnz > UINT32_MAX) {
        snprintf (err, errlen, "Wrong input: sparse vector \"%s\": indices and values must "
                  "have the same length", name);
        return -SH_EINVAL;
    }
    uint32_t *indices = (uint32_t *) calloc (nnz + 1, sizeof *indices);
    float *values = (float *) calloc (nnz + 1, sizeof *values);
    assert (indices && values);
    zlist_append (batch->allocs, indices);
    zlist_append (batch->allocs, values);
    for (size_t k = 0; k < nnz; k++) {
        const json_t *i = json_array_get (ji, k), *x = json_array_get (jv, k);
        if (!json_is_integer (i) || json_integer_value (i) < 0
            || json_integer_value (i) > UINT32_MAX || !json_is_number (x)) {
            snprintf (err, errlen, "Wrong input: sparse vector \"%s\": indices must be "
                      "unsigned 32-bit integers and values numbers", name);
            return -SH_EINVAL;
        }
        indices [k] = (uint32_t) json_integer_value (i);
        values [k] = (float) json_number_value (x);
    }
    //  Qdrant refuses repeated indices; check on a sorted copy.
    uint32_t *sorted = (uint32_t *) malloc ((nnz + 1) * sizeof *sorted);
    assert (sorted);
    memcpy (sorted, indices, nnz * sizeof *sorted);
    zlist_append (batch->allocs, sorted);
    for (size_t k = 1; k < nnz; k++)
        for (size_t j = k; j > 0 && sorted [j - 1] > sorted [j]; j--) {
            uint32_t t = sorted [j];
            sorted [j] = sorted [j - 1];
            sorted [j - 1] = t;
        }
    for (size_t k = 1; k < nnz; k++)
        if (sorted [k] == sorted [k - 1]) {
            snprintf (err, errlen, "Wrong input: sparse vector \"%s\": indices must be "
                      "unique (%u repeats)", name, sorted [k]);
            return -SH_EINVAL;
        }
    v->indices = indices;
    v->values = values;
    v->nnz = (uint32_t) nnz;
    return 0;
}

//  Parses and checks every point of a "points" list before anything is
//  applied. with_payload: upsert (payload allowed, vectors replace all).
static int
s_parse_points (s_shard_t *self, envelope_t *req, envelope_t *reply, bool with_payload,
                s_batch_t *batch)
{
    memset (batch, 0, sizeof *batch);
    const json_t *points = json_object_get (envelope_json (req), "points");
    if (!json_is_array (points)) {
        envelope_set_error (reply, -SH_EINVAL, "\"points\" must be a list");
        return -SH_EINVAL;
    }
    size_t n = json_array_size (points);
    size_t total_vecs = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *vectors = json_object_get (json_array_get (points, i), "vectors");
        if (json_is_object (vectors))
            total_vecs += json_object_size (vectors);
    }
    batch->points = (s_wpoint_t *) calloc (n + 1, sizeof *batch->points);
    batch->vecs = (segment_vec_t *) calloc (total_vecs + 1, sizeof *batch->vecs);
    batch->allocs = zlist_new ();
    assert (batch->points && batch->vecs && batch->allocs);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *point = json_array_get (points, i);
        s_wpoint_t *wp = &batch->points [i];
        char prefix [96];
        if (!json_is_object (point)
            || pointid_from_json (json_object_get (point, "id"), &wp->id)) {
            envelope_set_error (reply, -SH_EINVAL, "points[%zu]: \"id\" must be an unsigned "
                                "integer or a UUID", i);
            return -SH_EINVAL;
        }
        s_point_prefix (i, &wp->id, prefix, sizeof prefix);
        const json_t *vectors = json_object_get (point, "vectors");
        if (vectors && !json_is_object (vectors) && !json_is_null (vectors)) {
            envelope_set_error (reply, -SH_EINVAL, "%s: \"vectors\" must be a map", prefix);
            return -SH_EINVAL;
        }
        wp->vecs = batch->vecs + used;
        const char *name;
        const json_t *vjson;
        json_object_foreach ((json_t *) vectors, name, vjson) {
            char err [S_ERRLEN] = "";
            int rc = s_parse_vector (self, req, batch, name, vjson, &batch->vecs [used], err,
                                     sizeof err);
            if (rc) {
                envelope_set_error (reply, rc, "%s: %s", prefix, err);
                return rc;
            }
            used++;
            wp->n_vecs++;
        }
        if (with_payload) {
            const json_t *payload = json_object_get (point, "payload");
            if (payload && !json_is_object (payload) && !json_is_null (payload)) {
                envelope_set_error (reply, -SH_EINVAL, "%s: \"payload\" must be an object",
                                    prefix);
                return -SH_EINVAL;
            }
            wp->payload = json_is_object (payload) ? (json_t *) payload : NULL;
        }
    }
    batch->n_points = n;
    return 0;
}

//  A write was accepted: its seq, and the reply that waits for the flush.
static uint64_t
s_next_seq (s_shard_t *self, envelope_t *reply)
{
    uint64_t seq = ++self->last_seq;
    json_object_set_new (envelope_json (reply), "operation_id", json_integer ((json_int_t) seq));
    return seq;
}

static int
s_on_upsert (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    if (json_object_get (envelope_json (req), "records"))
        return s_apply_records (self, req, reply);
    s_batch_t batch;
    int rc = s_parse_points (self, req, reply, true, &batch);
    if (rc) {
        s_batch_free (&batch);
        return rc;
    }
    uint64_t seq = s_next_seq (self, reply);
    for (size_t i = 0; i < batch.n_points && rc == 0; i++) {
        s_wpoint_t *wp = &batch.points [i];
        char err [S_ERRLEN] = "";
        //  The segment takes a reference and edits payloads copy-on-write,
        //  so sharing the request's object costs no copy and is never
        //  changed under the request (which nobody changes either).
        rc = segment_upsert (self->segment, &wp->id, seq, wp->vecs, wp->n_vecs, wp->payload,
                             err, sizeof err);
        if (rc) {
            char prefix [96];
            s_point_prefix (i, &wp->id, prefix, sizeof prefix);
            envelope_set_error (reply, rc, "%s: %s", prefix, err [0] ? err : sh_strerror (rc));
        }
        else
            s_mark_dirty (self, &wp->id);
    }
    s_batch_free (&batch);
    return rc;
}

//  A forwarded write (transfer) skips the points this replica does not
//  hold yet: a later batch carries them whole.
static void
s_xfer_keep_held_points (s_shard_t *self, s_batch_t *batch)
{
    size_t out = 0;
    for (size_t i = 0; i < batch->n_points; i++) {
        segment_point_t point;
        if (segment_get (self->segment, &batch->points [i].id, &point) == 0)
            batch->points [out++] = batch->points [i];
    }
    batch->n_points = out;
}

static int
s_on_update_vectors (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    s_batch_t batch;
    int rc = s_parse_points (self, req, reply, false, &batch);
    if (rc == 0 && self->xfer.lenient)
        s_xfer_keep_held_points (self, &batch);
    for (size_t i = 0; i < batch.n_points && rc == 0; i++) {
        segment_point_t point;
        if (segment_get (self->segment, &batch.points [i].id, &point)) {
            char idtext [POINTID_TEXT_SIZE];
            pointid_format (&batch.points [i].id, idtext);
            envelope_set_error (reply, -SH_ENOTFOUND, "No point with id %s found", idtext);
            rc = -SH_ENOTFOUND;
        }
    }
    if (rc) {
        s_batch_free (&batch);
        return rc;
    }
    uint64_t seq = s_next_seq (self, reply);
    for (size_t i = 0; i < batch.n_points && rc == 0; i++) {
        s_wpoint_t *wp = &batch.points [i];
        char err [S_ERRLEN] = "";
        rc = segment_update_vectors (self->segment, &wp->id, seq, wp->vecs, wp->n_vecs, err,
                                     sizeof err);
        if (rc) {
            char prefix [96];
            s_point_prefix (i, &wp->id, prefix, sizeof prefix);
            envelope_set_error (reply, rc, "%s: %s", prefix, err [0] ? err : sh_strerror (rc));
        }
        else
            s_mark_dirty (self, &wp->id);
    }
    s_batch_free (&batch);
    return rc;
}

//  The points a write selects: "ids" (each must exist when must_exist, as
//  Qdrant answers 404 for a payload update of a missing point) and/or
//  "filter" (both given: both apply, as in Qdrant). *ids is yours, sorted
//  and without repeats.
static int
s_select (s_shard_t *self, envelope_t *req, envelope_t *reply, bool must_exist,
          pointid_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    json_t *json = envelope_json (req);
    const json_t *jids = json_object_get (json, "ids");
    const json_t *jfilter = json_object_get (json, "filter");
    if (jids && json_is_null (jids))
        jids = NULL;
    if (jfilter && json_is_null (jfilter))
        jfilter = NULL;
    if (!jids && !jfilter) {
        envelope_set_error (reply, -SH_EINVAL, "either \"ids\" or \"filter\" is required");
        return -SH_EINVAL;
    }
    if (jfilter && !json_is_object (jfilter)) {
        envelope_set_error (reply, -SH_EINVAL, "\"filter\" must be an object");
        return -SH_EINVAL;
    }
    pointid_t *from_ids = NULL;
    size_t n_ids = 0;
    if (jids && s_get_ids (reply, jids, "ids", &from_ids, &n_ids))
        return -SH_EINVAL;
    if (must_exist && self->xfer.lenient)
        n_ids = s_xfer_keep_held (self, from_ids, n_ids);
    for (size_t i = 0; must_exist && i < n_ids; i++) {
        segment_point_t point;
        if (segment_get (self->segment, &from_ids [i], &point)) {
            char idtext [POINTID_TEXT_SIZE];
            pointid_format (&from_ids [i], idtext);
            envelope_set_error (reply, -SH_ENOTFOUND, "No point with id %s found", idtext);
            free (from_ids);
            return -SH_ENOTFOUND;
        }
    }
    pointid_t *from_filter = NULL;
    size_t n_filter = 0;
    if (jfilter) {
        filter_t *filter = NULL;
        if (s_get_filter (reply, json, &filter)) {
            free (from_ids);
            return envelope_status (reply);
        }
        planner_t planner = s_planner (self);
        n_filter = planner_select (&planner, filter, &from_filter);
        filter_destroy (&filter);
    }
    pointid_t *all = (pointid_t *) malloc ((n_ids + n_filter + 1) * sizeof *all);
    assert (all);
    if (n_ids)
        memcpy (all, from_ids, n_ids * sizeof *all);
    if (n_filter)
        memcpy (all + n_ids, from_filter, n_filter * sizeof *all);
    free (from_ids);
    free (from_filter);
    *n = s_unique_ids (all, n_ids + n_filter);
    *ids = all;
    return 0;
}

static int
s_on_delete (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    pointid_t *ids = NULL;
    size_t n = 0;
    int rc = s_select (self, req, reply, false, &ids, &n);
    if (rc)
        return rc;
    s_next_seq (self, reply);
    for (size_t i = 0; i < n; i++)
        //  A missing id is not an error (Qdrant's delete is idempotent).
        if (segment_delete (self->segment, &ids [i]) == 0)
            s_mark_dirty (self, &ids [i]);
    free (ids);
    return 0;
}

typedef enum { S_SET, S_OVERWRITE, S_DELETE_KEYS, S_CLEAR } s_payload_op_t;

//  The four payload updates share selection, checks and bookkeeping.
static int
s_payload_update (s_shard_t *self, envelope_t *req, envelope_t *reply, s_payload_op_t op)
{
    json_t *json = envelope_json (req);
    const json_t *payload = json_object_get (json, "payload");
    const json_t *key = json_object_get (json, "key");
    const json_t *keys = json_object_get (json, "keys");
    if ((op == S_SET || op == S_OVERWRITE) && !json_is_object (payload)) {
        envelope_set_error (reply, -SH_EINVAL, "\"payload\" must be an object");
        return -SH_EINVAL;
    }
    if (op == S_SET && key && !json_is_null (key)
        && (!json_is_string (key) || json_string_length (key) == 0)) {
        envelope_set_error (reply, -SH_EINVAL, "\"key\" must be a non-empty path");
        return -SH_EINVAL;
    }
    if (op == S_SET && json_is_string (key) && !filter_path_valid (json_string_value (key))) {
        envelope_set_error (reply, -SH_EINVAL, "\"key\": not a valid payload path: %.64s",
                            json_string_value (key));
        return -SH_EINVAL;
    }
    if (op == S_DELETE_KEYS && !s_is_string_array (keys)) {
        envelope_set_error (reply, -SH_EINVAL, "\"keys\" must be a list of paths");
        return -SH_EINVAL;
    }
    for (size_t k = 0; op == S_DELETE_KEYS && k < json_array_size (keys); k++) {
        const char *path = json_string_value (json_array_get (keys, k));
        if (!filter_path_valid (path)) {
            envelope_set_error (reply, -SH_EINVAL, "keys[%zu]: not a valid payload path: %.64s",
                                k, path);
            return -SH_EINVAL;
        }
    }
    pointid_t *ids = NULL;
    size_t n = 0;
    int rc = s_select (self, req, reply, true, &ids, &n);
    if (rc)
        return rc;
    uint64_t seq = s_next_seq (self, reply);
    size_t n_keys = op == S_DELETE_KEYS ? json_array_size (keys) : 0;
    const char **key_list = (const char **) calloc (n_keys + 1, sizeof *key_list);
    assert (key_list);
    for (size_t k = 0; k < n_keys; k++)
        key_list [k] = json_string_value (json_array_get (keys, k));
    const char *path = json_is_string (key) ? json_string_value (key) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (op == S_SET)
            rc = segment_set_payload (self->segment, &ids [i], seq, payload, path);
        else
        if (op == S_OVERWRITE)
            rc = segment_overwrite_payload (self->segment, &ids [i], seq, payload);
        else
        if (op == S_DELETE_KEYS)
            rc = segment_delete_payload (self->segment, &ids [i], seq, key_list, n_keys);
        else
            rc = segment_clear_payload (self->segment, &ids [i], seq);
        if (rc == 0)
            s_mark_dirty (self, &ids [i]);
        else {
            char idtext [POINTID_TEXT_SIZE];
            pointid_format (&ids [i], idtext);
            envelope_set_error (reply, rc, "point %s: %s", idtext, sh_strerror (rc));
            break;
        }
    }
    free (key_list);
    free (ids);
    return rc;
}

static int
s_on_set_payload (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    return s_payload_update (self, req, reply, S_SET);
}

static int
s_on_overwrite_payload (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    return s_payload_update (self, req, reply, S_OVERWRITE);
}

static int
s_on_delete_payload (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    return s_payload_update (self, req, reply, S_DELETE_KEYS);
}

static int
s_on_clear_payload (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    return s_payload_update (self, req, reply, S_CLEAR);
}

static int
s_on_delete_vectors (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    const json_t *names = json_object_get (envelope_json (req), "vector");
    if (!s_is_string_array (names) || json_array_size (names) == 0) {
        envelope_set_error (reply, -SH_EINVAL, "\"vector\" must be a list of vector names");
        return -SH_EINVAL;
    }
    size_t n_names = json_array_size (names);
    for (size_t k = 0; k < n_names; k++) {
        const char *name = json_string_value (json_array_get (names, k));
        if (!segment_vspec (self->segment, name)) {
            envelope_set_error (reply, -SH_EINVAL,
                                "Wrong input: Not existing vector name error: %s", name);
            return -SH_EINVAL;
        }
    }
    pointid_t *ids = NULL;
    size_t n = 0;
    int rc = s_select (self, req, reply, true, &ids, &n);
    if (rc)
        return rc;
    uint64_t seq = s_next_seq (self, reply);
    const char **list = (const char **) calloc (n_names + 1, sizeof *list);
    assert (list);
    for (size_t k = 0; k < n_names; k++)
        list [k] = json_string_value (json_array_get (names, k));
    for (size_t i = 0; i < n; i++) {
        rc = segment_delete_vectors (self->segment, &ids [i], seq, list, n_names);
        if (rc == 0)
            s_mark_dirty (self, &ids [i]);
        else {
            char idtext [POINTID_TEXT_SIZE];
            pointid_format (&ids [i], idtext);
            envelope_set_error (reply, rc, "point %s: %s", idtext, sh_strerror (rc));
            break;
        }
    }
    free (list);
    free (ids);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Dispatch, flush, loop

typedef struct {
    const char *name;       //  for logs
    s_handler_fn *fn;       //  the handler
    bool read;              //  a read: refused once its deadline has passed
} s_handler_t;

static const s_handler_t s_handlers [MSG_TYPE_COUNT] = {
    [MSG_SHARD_UPSERT] = { "upsert", s_on_upsert, false },
    [MSG_SHARD_DELETE] = { "delete", s_on_delete, false },
    [MSG_SHARD_SET_PAYLOAD] = { "set_payload", s_on_set_payload, false },
    [MSG_SHARD_OVERWRITE_PAYLOAD] = { "overwrite_payload", s_on_overwrite_payload, false },
    [MSG_SHARD_DELETE_PAYLOAD] = { "delete_payload", s_on_delete_payload, false },
    [MSG_SHARD_CLEAR_PAYLOAD] = { "clear_payload", s_on_clear_payload, false },
    [MSG_SHARD_UPDATE_VECTORS] = { "update_vectors", s_on_update_vectors, false },
    [MSG_SHARD_DELETE_VECTORS] = { "delete_vectors", s_on_delete_vectors, false },
    [MSG_SHARD_SEARCH] = { "search", s_on_search, true },
    [MSG_SHARD_RETRIEVE] = { "retrieve", s_on_retrieve, true },
    [MSG_SHARD_SCROLL] = { "scroll", s_on_scroll, true },
    [MSG_SHARD_COUNT] = { "count", s_on_count, true },
    [MSG_SHARD_INFO] = { "info", s_on_info, true },
};

//  Whether a read goes to the workers: all but INFO, which reads the main
//  thread's own counters and is answered after the turn's commit like a
//  write, so it never counts a point that is not durable yet.
static bool
s_on_worker (uint16_t type)
{
    return type != MSG_SHARD_INFO && s_handlers [type].read;
}

//  Runs handler on req into reply and logs the outcome.
static void
s_run_handler (s_shard_t *self, const s_handler_t *handler, envelope_t *req,
               envelope_t *reply)
{
    uint16_t type = envelope_type (req);
    uint64_t rid = envelope_request_id (req);
    int rc;
    if (!handler || !handler->fn) {
        envelope_set_error (reply, -SH_EPROTO, "unknown message type %u for a shard", type);
        rc = -SH_EPROTO;
    }
    else
    if (handler->read && envelope_deadline (req)
        && envelope_now_ms () > envelope_deadline (req)) {
        envelope_set_error (reply, -SH_ETIMEDOUT, "deadline passed before the shard got to it");
        rc = -SH_ETIMEDOUT;
    }
    else {
        rc = handler->fn (self, req, reply);
        if (rc && envelope_status (reply) == 0)
            envelope_set_error (reply, rc, "%s", sh_strerror (rc));
    }
    if (rc == -SH_ENOTFOUND || rc == -SH_ETIMEDOUT)
        log_debug ("req=%" PRIu64 " %s: %s", rid, msg_type_name (type), envelope_error (reply));
    else
    if (rc)
        log_info ("req=%" PRIu64 " %s: %s: %s", rid, msg_type_name (type), sh_errname (rc),
                  envelope_error (reply));
    else
        log_trace ("req=%" PRIu64 " %s: ok", rid, msg_type_name (type));
}

//  A read handed to the workers, or a helper of a split batch.
typedef struct {
    s_shard_t *self;            //  the shard (its read side only)
    envelope_t *req;            //  the request (the job's own), or NULL for
    s_split_t *split;           //  a helper of this batch (one reference)
} s_job_t;

static void
s_submit_helper (s_shard_t *self, s_split_t *sp)
{
    s_job_t *job = (s_job_t *) calloc (1, sizeof *job);
    assert (job);
    job->self = self;
    job->split = sp;
    workers_submit (self->workers, job);
}

//  Serves one read under the gate, on a worker thread: its reply.
static envelope_t *
s_serve_read (s_shard_t *self, envelope_t *req)
{
    envelope_t *reply = envelope_new_reply (req, 0);
    if (rwgate_read_lock (self->gate)) {
        s_run_handler (self, &s_handlers [envelope_type (req)], req, reply);
        rwgate_read_unlock (self->gate);
    }
    else
        envelope_set_error (reply, -SH_EUNAVAIL, "the shard is stopping");
    return reply;
}

//  How long a direct connection may take to deliver the rest of a request
//  or to take an answer (ms): the gateway writes and reads them whole.
#define S_DIRECT_IO_MS 10000

//  A request on a direct connection (workers_listen), on a worker thread:
//  read, served and answered on the same socket, with no other thread in
//  between (see workers.h). Only the reads the workers serve come this way.
static bool
s_serve_direct (int fd, void *arg)
{
    s_shard_t *self = (s_shard_t *) arg;
    envelope_t *req = NULL;
    int rc = envelope_read_fd (fd, envelope_now_ms () + S_DIRECT_IO_MS, &req);
    if (rc) {
        if (rc != -SH_EIO)
            log_info ("direct read connection dropped: %s", sh_strerror (rc));
        return false;
    }
    uint16_t type = envelope_type (req);
    envelope_t *reply;
    if (envelope_is_reply (req) || type >= MSG_TYPE_COUNT || !s_handlers [type].fn
        || !s_on_worker (type)) {
        reply = envelope_new_reply (req, 0);
        envelope_set_error (reply, -SH_EPROTO, "%s is not served on the direct read path",
                            msg_type_name (type));
    }
    else
        reply = s_serve_read (self, req);
    rc = envelope_write_fd (reply, fd, envelope_now_ms () + S_DIRECT_IO_MS);
    envelope_destroy (&reply);
    envelope_destroy (&req);
    return rc == 0;
}

//  A worker thread: serve one read under the gate and hand the reply back.
static void
s_work (void *jobp, zsock_t *out, void *arg)
{
    s_job_t *job = (s_job_t *) jobp;
    s_shard_t *self = job->self;
    if (job->split) {
        s_split_help (job->split);
        free (job);
        return;
    }
    envelope_t *reply = s_serve_read (self, job->req);
    //  Encoding (JSON text) happens here, in parallel, not on the main thread.
    zmsg_t *msg = envelope_encode (reply);
    envelope_destroy (&reply);
    if (zmsg_send (&msg, out))
        zmsg_destroy (&msg);
    envelope_destroy (&job->req);
    free (job);
}

//  A read the workers never started (the shard is stopping): answered so
//  the sender does not wait for its deadline. Runs on the main thread.
static void
s_drop_job (void *jobp, void *arg)
{
    s_job_t *job = (s_job_t *) jobp;
    if (job->split) {
        //  Its batch was done by the others (the pool is joined).
        s_split_unref (job->split);
        free (job);
        return;
    }
    envelope_t *reply = envelope_new_reply (job->req, 0);
    envelope_set_error (reply, -SH_EUNAVAIL, "the shard is stopping");
    if (envelope_send (&reply, job->self->router))
        log_debug ("a reply could not be sent (peer gone)");
    envelope_destroy (&job->req);
    free (job);
}

//  Handles one request: reads go to the workers (the request with them),
//  the rest runs here and its reply waits for the flush.
static void
s_dispatch (s_shard_t *self, envelope_t **req_p)
{
    envelope_t *req = *req_p;
    uint16_t type = envelope_type (req);
    if (envelope_is_reply (req)) {
        log_info ("req=%" PRIu64 ": dropped a reply (type %u) sent to a shard",
                  envelope_request_id (req), type);
        return;
    }
    const s_handler_t *handler = type < MSG_TYPE_COUNT ? &s_handlers [type] : NULL;
    if (handler && handler->fn && s_on_worker (type) && self->workers) {
        s_job_t *job = (s_job_t *) calloc (1, sizeof *job);
        assert (job);
        job->self = self;
        job->req = req;
        *req_p = NULL;
        workers_submit (self->workers, job);
        return;
    }
    bool write = handler && handler->fn && !handler->read;
    if (write)
        s_write_begin (self);
    envelope_t *reply = envelope_new_reply (req, 0);
    if (s_xfer_before (self, write, req, reply))
        s_run_handler (self, handler, req, reply);
    if (!s_xfer_after (self, write, req_p, reply))
        zlist_append (self->pending, reply);
}

//  A message that did not decode: answer it if the header names a request
//  we can answer, so the sender gets an error instead of a timeout.
static void
s_answer_malformed (s_shard_t *self, zframe_t *routing, const uint8_t *head, size_t head_len,
                    const char *sample)
{
    uint16_t type = 0;
    uint64_t rid = 0, deadline = 0;
    if (!routing || envelope_peek_request (head, head_len, &type, &rid, &deadline)) {
        log_info ("dropped a malformed message: %s", sample);
        return;
    }
    log_info ("req=%" PRIu64 " %s: malformed envelope: %s", rid, msg_type_name (type), sample);
    envelope_t *request = envelope_new (type, rid, deadline);
    envelope_t *reply = envelope_new_reply (request, -SH_EPROTO);
    envelope_destroy (&request);
    envelope_set_error (reply, -SH_EPROTO, "malformed envelope or JSON");
    zmsg_t *msg = envelope_encode (reply);
    envelope_destroy (&reply);
    zmsg_prepend (msg, &(zframe_t *) { zframe_dup (routing) });
    if (zmsg_send (&msg, self->router))
        zmsg_destroy (&msg);
}

//  Receives and handles one message from the ROUTER; false if none came.
static bool
s_recv_request (s_shard_t *self)
{
    zmsg_t *msg = zmsg_recv (self->router);
    if (!msg)
        return false;
    //  Keep what an error reply needs before the decoder takes the message.
    zframe_t *routing = zmsg_first (msg) ? zframe_dup (zmsg_first (msg)) : NULL;
    zframe_t *head = zmsg_next (msg);
    zframe_t *body = zmsg_next (msg);
    uint8_t head_copy [ENVELOPE_HEADER_SIZE] = { 0 };
    size_t head_len = head ? zframe_size (head) : 0;
    if (head_len == ENVELOPE_HEADER_SIZE)
        memcpy (head_copy, zframe_data (head), head_len);
    char sample [S_SAMPLE + 8];
    if (body)
        s_sample (zframe_data (body), zframe_size (body), sample, sizeof sample);
    else
        snprintf (sample, sizeof sample, "(%zu frames)", zmsg_size (msg));
    envelope_t *req = NULL;
    if (envelope_decode (&msg, true, &req))
        s_answer_malformed (self, routing, head_copy, head_len, sample);
    else
        s_dispatch (self, &req);
    envelope_destroy (&req);
    zframe_destroy (&routing);
    return true;
}

static void
s_recv_state (s_shard_t *self)
{
    envelope_t *env = NULL;
    if (envelope_recv (self->sub, &env))
        return;
    json_t *state = json_object_get (envelope_json (env), "state");
    if (envelope_type (env) == MSG_META_STATE && json_is_object (state))
        s_on_state (self, state);
    envelope_destroy (&env);
}

//  Writes the points this turn changed, as the segment now has them: in a
//  transaction of its own, or handed to the store's deferred writer (defer:
//  a turn of stream batches into a replica not Active, see s_xfer_before).
//  A turn that is not deferred first waits for the deferred ones.
static int
s_stage_dirty (s_shard_t *self, bool defer)
{
    int rc = 0;
    if (!defer && shard_store_deferring (self->store))
        rc = shard_store_defer_sync (self->store);
    if (rc == 0 && !defer)
        rc = shard_store_begin (self->store);
    segment_vec_t *vecs = (segment_vec_t *) calloc (self->n_specs + 1, sizeof *vecs);
    assert (vecs);
    size_t n = s_unique_ids (self->dirty, self->n_dirty);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const pointid_t *id = &self->dirty [i];
        segment_point_t point;
        if (segment_get (self->segment, id, &point)) {
            rc = defer ? shard_store_defer_delete (self->store, id)
                       : shard_store_delete_point (self->store, id);
            continue;
        }
        size_t n_vecs = 0;
        for (size_t k = 0; k < self->n_specs; k++)
            if (segment_get_vector (self->segment, id, self->specs [k].name,
                                    &vecs [n_vecs]) == 0) {
                vecs [n_vecs].name = self->specs [k].name;
                n_vecs++;
            }
        rc = defer ? shard_store_defer_put (self->store, id, point.version, vecs, n_vecs,
                                            point.payload)
                   : shard_store_put_point (self->store, id, point.version, vecs, n_vecs,
                                            point.payload);
    }
    free (vecs);
    if (defer) {
        if (rc == 0)
            rc = shard_store_defer_turn (self->store, self->last_seq);
        if (rc == 0)
            self->xfer.deferred_seq = self->last_seq;
        return rc;
    }
    if (rc == 0)
        rc = shard_store_set_seq (self->store, self->last_seq);
    if (rc == 0)
        rc = shard_store_commit (self->store);
    if (rc)
        shard_store_rollback (self->store);
    return rc;
}

//  End of a turn: commit its writes, then send every reply it made.
static void
s_flush (s_shard_t *self)
{
    //  After a failed commit nothing more is written: the restart reloads
    //  what is durable, and a later commit must not seal a half-lost turn.
    s_xfer_t *x = &self->xfer;
    bool defer = x->turn_batches && !x->turn_sync;
    bool deferring = shard_store_deferring (self->store);
    uint64_t stored = deferring ? x->deferred_seq : shard_store_seq (self->store);
    x->turn_batches = x->turn_sync = false;
    if (!self->store_failed
        && (self->n_dirty || self->last_seq != stored)) {
        int rc = s_stage_dirty (self, defer);
        self->n_dirty = 0;
        if (rc) {
            //  Memory is now ahead of disk: refuse this turn's replies and
            //  exit so the supervisor restarts us from what is durable.
            log_error ("commit failed (%s); failing %zu replies and exiting",
                       sh_strerror (rc), zlist_size (self->pending));
            envelope_t *reply;
            for (reply = (envelope_t *) zlist_first (self->pending); reply;
                 reply = (envelope_t *) zlist_next (self->pending))
                envelope_set_error (reply, -SH_EIO, "storage I/O error: write not durable");
            self->stopping = true;
            self->store_failed = true;
            self->exit_code = 1;
            //  No reader may see what the failed commit did not keep.
            if (self->gate)
                rwgate_close (self->gate);
        }
    }
    if (self->write_held) {
        //  Graphs follow the segment's arrays (moved by growth) and learn
        //  what seq is durable, before any reader comes back.
        if (!self->store_failed)
            vindex_after_writes (self->vindex, self->last_seq);
        rwgate_write_unlock (self->gate);
        self->write_held = false;
        if (self->optimizer && !self->store_failed)
            optimizer_kick (self->optimizer);
    }
    s_xfer_flush (self);
    envelope_t *reply;
    while ((reply = (envelope_t *) zlist_pop (self->pending)))
        if (envelope_send (&reply, self->router))
            log_info ("a reply could not be sent (peer gone)");
}

//  Forwards up to max replies the workers made to the ROUTER.
static void
s_forward_results (s_shard_t *self, int max)
{
    for (int i = 0; i < max && (zsock_events (self->results) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv (self->results);
        if (!msg)
            break;
        if (zmsg_send (&msg, self->router)) {
            log_info ("a reply could not be sent (peer gone)");
            zmsg_destroy (&msg);
        }
    }
}

static void
s_run (s_shard_t *self)
{
    while (!self->stopping) {
        void *which = zpoller_wait (self->poller, s_xfer_wait_ms (self));
        if (zpoller_terminated (self->poller))
            break;
        //  Every turn, whichever socket woke us: a busy ROUTER must not
        //  hold finished replies back.
        s_forward_results (self, S_MAX_RESULTS_PER_TURN);
        if (which == self->sub) {
            while (zsock_events (self->sub) & ZMQ_POLLIN)
                s_recv_state (self);
        }
        if (which == self->router || (zsock_events (self->router) & ZMQ_POLLIN)) {
            //  Drain a batch so its writes share one commit.
            for (int i = 0; i < S_MAX_PER_TURN && !zsys_interrupted; i++) {
                if (i > 0 && !(zsock_events (self->router) & ZMQ_POLLIN))
                    break;
                if (!s_recv_request (self))
                    break;
            }
        }
        s_flush (self);
        s_xfer_pump (self);
    }
    s_flush (self);
    //  Reads in flight finish (the gate is free again), queued ones are
    //  refused; then every reply made is sent.
    workers_destroy (&self->workers);
    s_forward_results (self, INT_MAX);
    //  The optimizer saves what changed before it goes.
    optimizer_destroy (&self->optimizer);
}

//  ---------------------------------------------------------------------------
//  Shard transfers, stream_records (proto/msg.h; transfer.h has the state
//  machine and the choices made for restarts).
//
//  Source side: when the state lists a transfer of this shard from this
//  peer and this replica is Active, a run starts (s_xfer_pump, once per
//  turn after the flush). Batches are read on this main thread between
//  turns, after the commit, so a batch never holds a write that is not
//  durable and every write the turn applied has already been pushed ahead
//  of it: the target sees the source's order. The main thread is the only
//  writer, so no gate is needed for that read. Writes applied while the run
//  forwards are pushed after their commit and their client replies are
//  held until the target acknowledged them (or the source is sure to keep
//  the shard), so no write acknowledged to a client is lost by the move.
//
//  Target side: a write with "transfer" is applied only in seq order
//  (transfer_in_check); seq 1 empties a replica that is not Active first;
//  updates of points not held yet are skipped; the reply carries "seq".
//
//  Batches travel as "records" (proto/msg.h) to a target whose SHARD_INFO
//  says it takes them (the first probe's answer tells): ids and payloads in
//  two lists and every dense row in one float frame that the target reads
//  in place, so neither side builds, writes, parses or frees a JSON object
//  and a vecref per point (that was most of the source's CPU in a move and
//  much of the target's).

//  Top bit of a probe's request id: the stream's envelopes use their seq.
#define S_XFER_PROBE_BIT (1ull << 63)
//  How long a stopping source waits for the answers to writes in flight.
#define S_XFER_DRAIN_MS 2000

//  An envelope the run holds until its fate is known.
typedef struct {
    envelope_t *req;            //  forwarded write: the request as applied
    envelope_t *reply;          //  forwarded write: the client's reply, held
    zmsg_t *msg;                //  batch: [route][envelope], until sent
} s_xitem_t;

static void
s_xitem_destroy (s_xitem_t **item_p)
{
    s_xitem_t *item = *item_p;
    if (!item)
        return;
    envelope_destroy (&item->req);
    envelope_destroy (&item->reply);
    zmsg_destroy (&item->msg);
    free (item);
    *item_p = NULL;
}

//  transfer_release_fn: the held reply goes out with the write's fate.
static void
s_xfer_release (void *item_ptr, int status, void *arg)
{
    s_shard_t *self = (s_shard_t *) arg;
    s_xitem_t *item = (s_xitem_t *) item_ptr;
    if (item->reply) {
        if (status)
            envelope_set_error (item->reply, status, "Service unavailable: shard %u is "
                                "moving to peer %" PRIu64 " and this write may not have "
                                "reached it; retry", self->shard_id, self->xfer.run_to);
        if (envelope_send (&item->reply, self->router))
            log_info ("a reply could not be sent (peer gone)");
    }
    s_xitem_destroy (&item);
}

static uint64_t
s_xfer_u64 (const json_t *obj, const char *key)
{
    const json_t *value = json_object_get (obj, key);
    return json_is_integer (value) && json_integer_value (value) > 0
         ? (uint64_t) json_integer_value (value) : 0;
}

//  What a state (newer than the last, or the first) says about this shard:
//  its collection's name, this replica's state, a transfer from this peer.
static void
s_xfer_on_state (s_shard_t *self, const json_t *state, const json_t *coll)
{
    s_xfer_t *x = &self->xfer;
    const char *name;
    json_t *each;
    json_object_foreach (json_object_get (state, "collections"), name, each)
        if (each == coll)
            snprintf (x->collection, sizeof x->collection, "%s", name);
    char me [24];
    snprintf (me, sizeof me, "%" PRIu64, self->peer_id);
    x->want_to = 0;
    x->active = false;
    x->listed = false;
    size_t i;
    const json_t *shard, *transfer;
    json_array_foreach (json_object_get (coll, "shards"), i, shard) {
        const json_t *id = json_object_get (shard, "shard_id");
        if (!json_is_integer (id) || json_integer_value (id) != (json_int_t) self->shard_id)
            continue;
        const json_t *mine = json_object_get (json_object_get (shard, "replicas"), me);
        x->listed = mine != NULL;
        x->active = json_is_string (mine) && strcmp (json_string_value (mine), "Active") == 0;
    }
    bool receiving = false;
    json_array_foreach (json_object_get (coll, "transfers"), i, transfer) {
        const json_t *id = json_object_get (transfer, "shard_id");
        const char *method = json_string_value (json_object_get (transfer, "method"));
        if (!json_is_integer (id) || json_integer_value (id) != (json_int_t) self->shard_id)
            continue;
        if (s_xfer_u64 (transfer, "to") == self->peer_id)
            receiving = true;
        if (s_xfer_u64 (transfer, "from") != self->peer_id)
            continue;
        if (method && strcmp (method, "stream_records") != 0) {
            log_debug ("transfer to peer %" PRIu64 ": method %.32s is not ours to drive",
                       s_xfer_u64 (transfer, "to"), method);
            continue;
        }
        x->want_to = s_xfer_u64 (transfer, "to");
    }
    if (x->run)
        transfer_on_state (x->run, x->want_to == x->run_to, x->listed, envelope_now_ms ());
    //  A replica being filled by a transfer serves no reads: its graphs wait
    //  for the stream's end (the move finishes sooner, the build costs the
    //  same after it), and it serves searches exactly until they are built.
    x->hold = receiving && !x->active;
    if (self->optimizer)
        optimizer_hold_graphs (self->optimizer, x->hold);
}

//  [route to the target's replica of this shard][env] (env kept).
static zmsg_t *
s_xfer_routed (s_shard_t *self, envelope_t *env)
{
    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = ROUTE_REQUEST;
    route.actor = ROUTE_SHARD;
    route.dst = self->xfer.run_to;
    route.uid = self->uid;
    route.shard = self->shard_id;
    zframe_t *frame = route_encode (&route);
    assert (frame);             //  no uri
    zmsg_t *msg = envelope_encode (env);
    zmsg_prepend (msg, &frame);
    return msg;
}

//  A rough size of a JSON value as text, for the batch and queue bounds.
static size_t
s_xfer_json_size (const json_t *json)
{
    size_t size = 8;
    if (json_is_string (json))
        size += json_string_length (json);
    else
    if (json_is_array (json)) {
        size_t i;
        const json_t *v;
        json_array_foreach (json, i, v)
            size += s_xfer_json_size (v);
    }
    else
    if (json_is_object (json)) {
        const char *key;
        const json_t *v;
        json_object_foreach ((json_t *) json, key, v)
            size += strlen (key) + s_xfer_json_size (v);
    }
    return size;
}

static json_t *
s_xfer_tag (s_shard_t *self, uint64_t seq)
{
    return json_pack ("{sIsI}", "seq", (json_int_t) seq, "from", (json_int_t) self->peer_id);
}

//  Encodes a batch envelope (destroyed) and pushes it: 0, or -1 if the run
//  did not take it.
static int
s_xfer_push_batch (s_shard_t *self, envelope_t *env, uint64_t seq, size_t used,
                   size_t n_points)
{
    s_xitem_t *item = (s_xitem_t *) calloc (1, sizeof *item);
    assert (item);
    item->msg = s_xfer_routed (self, env);
    envelope_destroy (&env);
    size_t size = zmsg_content_size (item->msg);
    if (transfer_push_batch (self->xfer.run, used, n_points, size, item) == 0)
        return -1;
    log_debug ("transfer to peer %" PRIu64 ": batch seq=%" PRIu64 " of %zu points "
               "(%zu bytes)", self->xfer.run_to, seq, n_points, size);
    return 0;
}

//  The cursor's next point still held, read into *point: its id, or NULL
//  once the batch is full (n_points, bytes) or the turn is over. *used
//  counts the cursor's ids read, held or not.
static const pointid_t *
s_xfer_next (s_shard_t *self, const pointid_t *ids, size_t left,
             const transfer_params_t *params, size_t *used, size_t n_points, size_t bytes,
             segment_point_t *point)
{
    //  Ids deleted since the snapshot cost little, but a turn stays short.
    size_t max_used = params->batch_points * 8;
    while (*used < left && *used < max_used && n_points < params->batch_points
           && bytes < params->batch_bytes) {
        const pointid_t *id = &ids [(*used)++];
        if (segment_get (self->segment, id, point) == 0)
            return id;
        //  Deleted since: its delete was forwarded.
    }
    return NULL;
}

//  The next batch as "records" (proto/msg.h): ids, payloads and sparse
//  vectors in lists, every dense row in one blob, point by point. Builds
//  env's JSON; *used ids of the cursor read, *n_points of them still there.
static void
s_xfer_records (s_shard_t *self, envelope_t *env, const pointid_t *ids, size_t left,
                const transfer_params_t *params, size_t *used_p, size_t *n_points_p)
{
    json_t *jids = json_array ();
    json_t *payloads = json_array ();
    json_t *sparse = NULL;
    //  Per spec: the points of the batch without that vector (dense), or
    //  its list of vectors (sparse).
    json_t **per_spec = (json_t **) calloc (self->n_specs + 1, sizeof *per_spec);
    assert (per_spec);
    for (size_t k = 0; k < self->n_specs; k++)
        per_spec [k] = json_array ();
    int blob = -1;
    size_t used = 0, n_points = 0, bytes = 0;
    const pointid_t *id;
    segment_point_t point;
    while ((id = s_xfer_next (self, ids, left, params, &used, n_points, bytes, &point))) {
        for (size_t k = 0; k < self->n_specs; k++) {
            segment_vec_t v;
            bool has = segment_get_vector (self->segment, id, self->specs [k].name, &v) == 0;
            if (self->specs [k].sparse) {
                json_t *entry = json_null ();
                if (has) {
                    json_t *indices = json_array ();
                    json_t *values = json_array ();
                    for (uint32_t j = 0; j < v.nnz; j++) {
                        json_array_append_new (indices, json_integer (v.indices [j]));
                        json_array_append_new (values, s_real (v.values [j]));
                    }
                    entry = json_pack ("{soso}", "indices", indices, "values", values);
                    bytes += 24 * (size_t) v.nnz;
                }
                json_array_append_new (per_spec [k], entry);
            }
            else
            if (has) {
                if (blob < 0)
                    blob = envelope_new_blob (env);
                assert (blob >= 0);     //  the one blob of this envelope
                envelope_append_floats (env, blob, v.dense, v.dim);
                bytes += 4 * (size_t) v.dim;
            }
            else
                json_array_append_new (per_spec [k], json_integer ((json_int_t) n_points));
        }
        //  The payload is shared, not copied: the envelope is encoded before
        //  any write can touch the point (and writes copy on write).
        json_array_append_new (payloads, point.payload ? json_incref ((json_t *) point.payload)
                                                       : json_null ());
        bytes += (point.payload ? s_xfer_json_size (point.payload) : 0) + 24;
        json_array_append_new (jids, pointid_to_json (id));
        n_points++;
    }
    json_t *dense = json_array ();
    for (size_t k = 0; k < self->n_specs; k++) {
        if (self->specs [k].sparse) {
            if (!sparse)
                sparse = json_object ();
            json_object_set_new (sparse, self->specs [k].name, per_spec [k]);
        }
        else
            json_array_append_new (dense, json_pack ("{sssIso}", "name", self->specs [k].name,
                                                     "dim", (json_int_t) self->specs [k].dim,
                                                     "missing", per_spec [k]));
    }
    free (per_spec);
    json_t *records = json_pack ("{sososo}", "ids", jids, "payloads", payloads, "dense", dense);
    if (blob >= 0)
        json_object_set_new (records, "blob", json_integer (blob));
    if (sparse)
        json_object_set_new (records, "sparse", sparse);
    json_object_set_new (envelope_json (env), "records", records);
    *used_p = used;
    *n_points_p = n_points;
}

//  Reads the next batch (whole points in id order) and pushes it. 0, or -1
//  if nothing could be pushed.
static int
s_xfer_batch (s_shard_t *self, uint64_t now)
{
    transfer_t *run = self->xfer.run;
    const transfer_params_t *params = transfer_params (run);
    const pointid_t *ids = NULL;
    size_t left = transfer_cursor (run, &ids);
    uint64_t seq = transfer_next_seq (run);
    envelope_t *env = envelope_new (MSG_SHARD_UPSERT, seq, now + params->ack_timeout_ms);
    size_t used = 0, n_points = 0;
    s_xfer_records (self, env, ids, left, params, &used, &n_points);
    json_t *tag = s_xfer_tag (self, seq);
    //  A batch (not a forwarded write); the target makes the batches before
    //  the last durable before it answers the last (s_xfer_before).
    json_object_set_new (tag, "batch", json_true ());
    if (used >= left)
        json_object_set_new (tag, "last", json_true ());
    json_object_set_new (envelope_json (env), "transfer", tag);
    return s_xfer_push_batch (self, env, seq, used, n_points);
}

//  The message that forwards a held write as seq (the request's JSON gets
//  "transfer"; its vectors are copied into a new envelope).
static zmsg_t *
s_xfer_forward_msg (s_shard_t *self, s_xitem_t *item, uint64_t seq, uint64_t now)
{
    const transfer_params_t *params = transfer_params (self->xfer.run);
    envelope_t *env = envelope_new (envelope_type (item->req), seq,
                                    now + params->ack_timeout_ms);
    json_t *json = envelope_json (item->req);
    json_object_set_new (json, "transfer", s_xfer_tag (self, seq));
    envelope_set_json (env, json_incref (json));
    for (size_t b = 0; b < envelope_blob_count (item->req); b++) {
        size_t count = 0;
        const float *data = envelope_floats (item->req, b, &count);
        int index = envelope_add_floats (env, data, count);
        assert (index == (int) b);  //  as many blobs as the request had
    }
    zmsg_t *msg = s_xfer_routed (self, env);
    envelope_destroy (&env);
    envelope_destroy (&item->req);
    return msg;
}

//  Sends what the window lets go.
static void
s_xfer_send (s_shard_t *self, uint64_t now)
{
    s_xfer_t *x = &self->xfer;
    uint64_t seq;
    bool is_batch;
    void *ptr;
    while (transfer_next_send (x->run, now, &seq, &is_batch, &ptr)) {
        s_xitem_t *item = (s_xitem_t *) ptr;
        zmsg_t *msg = item->msg ? item->msg : s_xfer_forward_msg (self, item, seq, now);
        item->msg = NULL;
        if (zmsg_send (&msg, x->p2p)) {
            zmsg_destroy (&msg);
            transfer_fail (x->run, -SH_EUNAVAIL, "the p2p actor is not taking messages", now);
            break;
        }
    }
}

static void
s_xfer_probe (s_shard_t *self, uint64_t now)
{
    s_xfer_t *x = &self->xfer;
    const transfer_params_t *params = transfer_params (x->run);
    uint64_t id = S_XFER_PROBE_BIT | ++x->probe_id;
    envelope_t *env = envelope_new (MSG_SHARD_INFO, id, now + params->ack_timeout_ms);
    zmsg_t *msg = s_xfer_routed (self, env);
    envelope_destroy (&env);
    if (zmsg_send (&msg, x->p2p))
        zmsg_destroy (&msg);
    transfer_probe_sent (x->run, id, now);
}

static void
s_xfer_propose (s_shard_t *self, transfer_op_t op, uint64_t now)
{
    s_xfer_t *x = &self->xfer;
    const transfer_params_t *params = transfer_params (x->run);
    const char *type = op == TRANSFER_OP_FINISH ? "finish_transfer" : "abort_transfer";
    //  The op rides in the low bits of the request id: a late answer to a
    //  finish is not taken for the abort's.
    uint64_t rid = ++x->propose_id << 2 | (uint64_t) op;
    envelope_t *env = envelope_new (MSG_META_PROPOSE, rid, now + params->propose_timeout_ms);
    envelope_set_json (env, json_pack ("{s{sssssIsIsI}}", "op", "type", type, "collection",
                                       x->collection, "shard_id", (json_int_t) self->shard_id,
                                       "from", (json_int_t) self->peer_id, "to",
                                       (json_int_t) x->run_to));
    transfer_proposal_sent (x->run, op, now);
    if (envelope_send (&env, x->raft))
        transfer_proposal_reply (x->run, op, -SH_EUNAVAIL, now);
    else
        log_info ("transfer to peer %" PRIu64 ": proposed %s", x->run_to, type);
}

//  Answers from the target (through p2p) and from the raft actor.
static void
s_xfer_recv (s_shard_t *self, uint64_t now)
{
    s_xfer_t *x = &self->xfer;
    for (int i = 0; i < 1024 && (zsock_events (x->p2p) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv (x->p2p);
        if (!msg)
            break;
        zframe_t *frame = zmsg_pop (msg);
        route_t route;
        envelope_t *env = NULL;
        if (!frame || route_decode (zframe_data (frame), zframe_size (frame), &route)
            || route.kind != ROUTE_REPLY || envelope_decode (&msg, false, &env)) {
            log_info ("transfer to peer %" PRIu64 ": dropped a malformed answer", x->run_to);
            zframe_destroy (&frame);
            zmsg_destroy (&msg);
            continue;
        }
        zframe_destroy (&frame);
        uint64_t rid = envelope_request_id (env);
        int status = envelope_status (env);
        if (rid & S_XFER_PROBE_BIT) {
            if (status)
                log_debug ("transfer to peer %" PRIu64 ": the target is not there yet: %s",
                           x->run_to, envelope_error (env));
            transfer_probe_reply (x->run, rid, status, now);
        }
        else {
            if (status == 0 && s_xfer_u64 (envelope_json (env), "seq") != rid)
                status = -SH_EPROTO;
            if (status)
                log_info ("transfer to peer %" PRIu64 ": seq=%" PRIu64 " failed: %s: %s",
                          x->run_to, rid, sh_errname (status), envelope_error (env));
            if (transfer_ack (x->run, rid, status, now) == -SH_ENOTFOUND)
                log_debug ("transfer to peer %" PRIu64 ": a late answer to seq=%" PRIu64,
                           x->run_to, rid);
        }
        envelope_destroy (&env);
    }
    for (int i = 0; i < 64 && (zsock_events (x->raft) & ZMQ_POLLIN); i++) {
        envelope_t *env = NULL;
        if (envelope_recv (x->raft, &env))
            continue;
        transfer_op_t op = (transfer_op_t) (envelope_request_id (env) & 3);
        int status = envelope_status (env);
        if (status)
            log_info ("transfer to peer %" PRIu64 ": %s proposal: %s", x->run_to,
                      op == TRANSFER_OP_FINISH ? "finish" : "abort", envelope_error (env));
        transfer_proposal_reply (x->run, op, status, now);
        envelope_destroy (&env);
    }
}

static int
s_xfer_start (s_shard_t *self, uint64_t now)
{
    s_xfer_t *x = &self->xfer;
    char p2p_ep [PATHS_MAX], raft_ep [PATHS_MAX];
    if (paths_p2p_endpoint (self->config->storage_path, p2p_ep)
        || paths_raft_endpoint (self->config->storage_path, raft_ep))
        return -SH_EINVAL;
    x->p2p = zsock_new (ZMQ_DEALER);
    x->raft = zsock_new (ZMQ_DEALER);
    assert (x->p2p && x->raft);
    zsock_set_sndtimeo (x->p2p, 0);
    zsock_set_sndtimeo (x->raft, 0);
    zsock_set_linger (x->p2p, 0);
    zsock_set_linger (x->raft, 0);
    if (zsock_connect (x->p2p, "%s", p2p_ep) || zsock_connect (x->raft, "%s", raft_ep)) {
        log_error ("transfer: cannot connect to the p2p or raft actor");
        zsock_destroy (&x->p2p);
        zsock_destroy (&x->raft);
        return -SH_EIO;
    }
    zpoller_add (self->poller, x->p2p);
    zpoller_add (self->poller, x->raft);
    transfer_params_t params;
    transfer_params_default (&params);
    x->run_to = x->want_to;
    x->run = transfer_new (&params, x->run_to, now, s_xfer_release, self);
    x->logged = TRANSFER_CONNECTING;
    log_info ("transfer to peer %" PRIu64 ": starting (stream_records)", x->run_to);
    return 0;
}

//  Ends the run: what it still holds is released, its sockets closed.
static void
s_xfer_end (s_shard_t *self)
{
    s_xfer_t *x = &self->xfer;
    transfer_destroy (&x->run);
    if (self->poller) {
        zpoller_remove (self->poller, x->p2p);
        zpoller_remove (self->poller, x->raft);
    }
    zsock_destroy (&x->p2p);
    zsock_destroy (&x->raft);
}

//  Once per turn, after the flush: start, feed and end the run.
static void
s_xfer_pump (s_shard_t *self)
{
    s_xfer_t *x = &self->xfer;
    uint64_t now = envelope_now_ms ();
    if (!x->run) {
        if (!x->want_to || !x->active || self->stopping || self->store_failed
            || s_xfer_start (self, now))
            return;
    }
    s_xfer_recv (self, now);
    transfer_tick (x->run, now);
    if (transfer_probe_due (x->run, now))
        s_xfer_probe (self, now);
    if (transfer_phase (x->run) == TRANSFER_READY) {
        pointid_t *ids = NULL;
        size_t n = segment_select (self->segment, NULL, &ids);
        transfer_begin (x->run, ids, n);
        log_info ("transfer to peer %" PRIu64 ": the target answers; streaming %zu points",
                  x->run_to, n);
    }
    while (transfer_wants_batch (x->run))
        if (s_xfer_batch (self, now))
            break;
    s_xfer_send (self, now);
    transfer_op_t op = transfer_proposal_due (x->run, now);
    if (op != TRANSFER_OP_NONE)
        s_xfer_propose (self, op, now);
    transfer_phase_t phase = transfer_phase (x->run);
    if (phase != x->logged) {
        x->logged = phase;
        if (transfer_status (x->run) && phase == TRANSFER_ABORTING)
            log_warn ("transfer to peer %" PRIu64 ": aborting after %zu/%zu points: %s (%s)",
                      x->run_to, transfer_transferred (x->run), transfer_total (x->run),
                      transfer_reason (x->run), sh_errname (transfer_status (x->run)));
        else
            log_info ("transfer to peer %" PRIu64 ": %s, %zu/%zu points", x->run_to,
                      transfer_phase_name (phase), transfer_transferred (x->run),
                      transfer_total (x->run));
    }
    if (phase == TRANSFER_STOPPED)
        s_xfer_end (self);
}

//  The loop's longest wait: short while the run waits on a clock (probes,
//  proposals) rather than on an answer that wakes the loop.
static int
s_xfer_wait_ms (s_shard_t *self)
{
    transfer_t *run = self->xfer.run;
    if (!run)
        return S_POLL_MS;
    transfer_phase_t phase = transfer_phase (run);
    if (phase == TRANSFER_CONNECTING || phase == TRANSFER_READY
        || phase == TRANSFER_FINISHING || phase == TRANSFER_ABORTING)
        return (int) transfer_params (run)->probe_ms;
    return S_POLL_MS;
}

//  Before a write runs. false: refused (the reply holds the error).
static bool
s_xfer_before (s_shard_t *self, bool write, envelope_t *req, envelope_t *reply)
{
    s_xfer_t *x = &self->xfer;
    if (!write)
        return true;
    if (x->run && transfer_refuses_writes (x->run)) {
        envelope_set_error (reply, -SH_EUNAVAIL, "Service unavailable: shard %u is being "
                            "moved to peer %" PRIu64 "; retry", self->shard_id, x->run_to);
        return false;
    }
    const json_t *tag = json_object_get (envelope_json (req), "transfer");
    //  Batches before the stream's last, into a replica that is not Active,
    //  are committed behind the replies (shard_store_defer_put); anything
    //  else waits for its commit, and for the deferred ones before it.
    if (tag && !x->active && json_is_true (json_object_get (tag, "batch"))
        && !json_is_true (json_object_get (tag, "last")))
        x->turn_batches = true;
    else
        x->turn_sync = true;
    if (!tag)
        return true;
    uint64_t seq = s_xfer_u64 (tag, "seq"), from = s_xfer_u64 (tag, "from");
    char err [S_ERRLEN];
    int rc = transfer_in_check (&x->in, from, seq, x->active, err, sizeof err);
    if (rc < 0) {
        envelope_set_error (reply, rc, "%s", err);
        return false;
    }
    if (rc == 1) {
        //  A stream (re)starts: what an earlier run left here goes.
        pointid_t *ids = NULL;
        size_t n = segment_select (self->segment, NULL, &ids);
        for (size_t i = 0; i < n; i++)
            if (segment_delete (self->segment, &ids [i]) == 0)
                s_mark_dirty (self, &ids [i]);
        free (ids);
        log_info ("transfer from peer %" PRIu64 ": a stream starts; dropped the %zu points "
                  "held", from, n);
    }
    x->lenient = true;
    x->in_seq = seq;
    return true;
}

//  After a write ran. true: the reply is held (the write is forwarded).
static bool
s_xfer_after (s_shard_t *self, bool write, envelope_t **req_p, envelope_t *reply)
{
    s_xfer_t *x = &self->xfer;
    if (x->lenient) {
        json_object_set_new (envelope_json (reply), "seq", json_integer ((json_int_t) x->in_seq));
        x->lenient = false;
    }
    if (!write || !x->run || !transfer_forwarding (x->run) || envelope_status (reply))
        return false;
    s_xitem_t *item = (s_xitem_t *) calloc (1, sizeof *item);
    assert (item);
    item->req = *req_p;
    *req_p = NULL;
    item->reply = reply;
    if (!x->turn)
        x->turn = zlist_new ();
    zlist_append (x->turn, item);
    return true;
}

//  In the flush, after the commit: the turn's forwarded writes join the
//  stream (their replies held), or share a failed commit's error.
static void
s_xfer_flush (s_shard_t *self)
{
    s_xfer_t *x = &self->xfer;
    uint64_t now = envelope_now_ms ();
    s_xitem_t *item;
    while (x->turn && (item = (s_xitem_t *) zlist_pop (x->turn))) {
        if (self->store_failed || !x->run) {
            if (self->store_failed)
                envelope_set_error (item->reply, -SH_EIO, "storage I/O error: write not durable");
            zlist_append (self->pending, item->reply);
            item->reply = NULL;
            s_xitem_destroy (&item);
            continue;
        }
        size_t bytes = s_xfer_json_size (envelope_json (item->req));
        for (size_t b = 0; b < envelope_blob_count (item->req); b++) {
            size_t count = 0;
            envelope_floats (item->req, b, &count);
            bytes += 4 * count;
        }
        transfer_push_write (x->run, bytes, item, now);
    }
}

//  One named vector of a "records" upsert, as the shard reads it.
typedef struct {
    const segment_vspec_t *spec;    //  its spec here
    const json_t *list;             //  dense: "missing" (ascending point indexes);
                                    //  sparse: one entry per point
    size_t next;                    //  dense: the next entry of "missing" to meet
} s_xrec_vec_t;

static int
s_records_error (envelope_t *reply, int rc, const char *what)
{
    envelope_set_error (reply, rc, "records: %s", what);
    return rc;
}

//  SHARD_UPSERT with "records" (the gateway's upserts and a transfer's
//  batches, proto/msg.h): checked whole
//  first, then applied as one write, each record replacing its whole point as
//  an upsert does. Dense rows are read in place from the request's blob.
static int
s_apply_records (s_shard_t *self, envelope_t *req, envelope_t *reply)
{
    const json_t *records = json_object_get (envelope_json (req), "records");
    const json_t *jids = json_object_get (records, "ids");
    const json_t *payloads = json_object_get (records, "payloads");
    const json_t *dense = json_object_get (records, "dense");
    const json_t *sparse = json_object_get (records, "sparse");
    const json_t *jblob = json_object_get (records, "blob");
    if (!json_is_array (jids) || !json_is_array (payloads) || !json_is_array (dense)
        || (sparse && !json_is_object (sparse)) || (jblob && !json_is_integer (jblob))
        || json_array_size (payloads) != json_array_size (jids))
        return s_records_error (reply, -SH_EPROTO, "\"ids\", \"payloads\" and "
                                     "\"dense\" must be lists of one size, \"sparse\" a map");
    size_t n = json_array_size (jids);
    size_t n_vecs = json_array_size (dense) + (sparse ? json_object_size (sparse) : 0);
    if (n_vecs > self->n_specs)
        return s_records_error (reply, -SH_EINVAL, "more vectors than the collection has");
    s_xrec_vec_t *vs = (s_xrec_vec_t *) calloc (n_vecs + 1, sizeof *vs);
    pointid_t *ids = (pointid_t *) calloc (n + 1, sizeof *ids);
    segment_vec_t *vecs = (segment_vec_t *) calloc (n_vecs + 1, sizeof *vecs);
    assert (vs && ids && vecs);
    s_batch_t batch;            //  holds the sparse arrays parsed
    memset (&batch, 0, sizeof batch);
    batch.allocs = zlist_new ();
    segment_vec_t *sparse_vecs = NULL;
    char err [S_ERRLEN] = "";
    int rc = 0;
    //  The dense vectors: name, dim, the points without one.
    size_t rows = 0;            //  floats the blob must hold
    size_t i;
    const json_t *entry;
    json_array_foreach (dense, i, entry) {
        const char *name = json_string_value (json_object_get (entry, "name"));
        const json_t *jdim = json_object_get (entry, "dim");
        const json_t *missing = json_object_get (entry, "missing");
        const segment_vspec_t *spec = name ? segment_vspec (self->segment, name) : NULL;
        if (!spec || spec->sparse || !json_is_integer (jdim)
            || json_integer_value (jdim) != (json_int_t) spec->dim || !json_is_array (missing)
            || json_array_size (missing) > n) {
            snprintf (err, sizeof err, "dense[%zu]: not a dense vector of this collection "
                      "with its dim and a \"missing\" list", i);
            rc = -SH_EINVAL;
            break;
        }
        size_t k;
        const json_t *m;
        json_int_t last = -1;
        json_array_foreach (missing, k, m) {
            if (!json_is_integer (m) || json_integer_value (m) <= last
                || json_integer_value (m) >= (json_int_t) n) {
                snprintf (err, sizeof err, "dense[%zu]: \"missing\" must list ascending "
                          "point indexes", i);
                rc = -SH_EPROTO;
                break;
            }
            last = json_integer_value (m);
        }
        if (rc)
            break;
        vs [i].spec = spec;
        vs [i].list = missing;
        rows += (n - json_array_size (missing)) * (size_t) spec->dim;
    }
    size_t n_dense = i;
    //  The sparse vectors: one entry (null or {"indices", "values"}) per point.
    if (rc == 0 && sparse) {
        sparse_vecs = (segment_vec_t *) calloc (n * json_object_size (sparse) + 1,
                                                sizeof *sparse_vecs);
        assert (sparse_vecs);
        const char *name;
        const json_t *list;
        size_t at = n_dense;
        json_object_foreach ((json_t *) sparse, name, list) {
            const segment_vspec_t *spec = segment_vspec (self->segment, name);
            if (!spec || !spec->sparse || !json_is_array (list) || json_array_size (list) != n) {
                snprintf (err, sizeof err, "sparse \"%.64s\": not a sparse vector of this "
                          "collection with one entry per point", name);
                rc = -SH_EINVAL;
                break;
            }
            vs [at].spec = spec;
            vs [at].list = list;
            for (size_t p = 0; p < n && rc == 0; p++) {
                const json_t *v = json_array_get (list, p);
                segment_vec_t *out = &sparse_vecs [(at - n_dense) * n + p];
                if (!json_is_null (v))
                    rc = s_parse_vector (self, req, &batch, name, v, out, err, sizeof err);
            }
            at++;
        }
    }
    //  No vector twice.
    for (size_t a = 0; rc == 0 && a < n_vecs; a++)
        for (size_t b = 0; b < a; b++)
            if (vs [a].spec == vs [b].spec) {
                snprintf (err, sizeof err, "vector \"%.64s\" given twice", vs [a].spec->name);
                rc = -SH_EINVAL;
            }
    //  The blob holds every dense row, point by point, no more and no less.
    const float *floats = NULL;
    size_t n_floats = 0;
    if (rc == 0 && rows) {
        floats = jblob && json_integer_value (jblob) >= 0
               ? envelope_floats (req, (size_t) json_integer_value (jblob), &n_floats) : NULL;
        if (!floats || n_floats != rows) {
            snprintf (err, sizeof err, "the blob does not hold the %zu floats of the dense "
                      "vectors", rows);
            rc = -SH_EPROTO;
        }
    }
    json_array_foreach (jids, i, entry) {
        if (rc)
            break;
        const json_t *payload = json_array_get (payloads, i);
        if (pointid_from_json (entry, &ids [i])
            || (!json_is_object (payload) && !json_is_null (payload))) {
            snprintf (err, sizeof err, "record %zu: the id must be an unsigned integer or a "
                      "UUID and the payload an object or null", i);
            rc = -SH_EINVAL;
        }
    }
    if (rc) {
        envelope_set_error (reply, rc, "records: %s", err);
        goto done;
    }
    uint64_t seq = s_next_seq (self, reply);
    size_t offset = 0;
    for (size_t p = 0; p < n && rc == 0; p++) {
        size_t used = 0;
        for (size_t k = 0; k < n_dense; k++) {
            const json_t *next = json_array_get (vs [k].list, vs [k].next);
            if (next && json_integer_value (next) == (json_int_t) p) {
                vs [k].next++;      //  this point has no such vector
                continue;
            }
            segment_vec_t *v = &vecs [used++];
            memset (v, 0, sizeof *v);
            v->name = vs [k].spec->name;
            v->dim = vs [k].spec->dim;
            v->dense = floats + offset;
            offset += v->dim;
        }
        for (size_t k = n_dense; k < n_vecs; k++) {
            const segment_vec_t *v = &sparse_vecs [(k - n_dense) * n + p];
            if (v->name)
                vecs [used++] = *v;
        }
        json_t *payload = json_array_get (payloads, p);
        rc = segment_upsert (self->segment, &ids [p], seq, vecs, used,
                             json_is_object (payload) ? payload : NULL, err, sizeof err);
        if (rc) {
            char prefix [96];
            s_point_prefix (p, &ids [p], prefix, sizeof prefix);
            envelope_set_error (reply, rc, "records: %s: %s", prefix,
                                err [0] ? err : sh_strerror (rc));
        }
        else
            s_mark_dirty (self, &ids [p]);
    }
    assert (rc || offset == rows);
done:
    s_batch_free (&batch);
    free (sparse_vecs);
    free (vecs);
    free (ids);
    free (vs);
    return rc;
}

//  A forwarded write of points this replica does not hold yet skips them:
//  a later batch carries them whole.
static size_t
s_xfer_keep_held (s_shard_t *self, pointid_t *ids, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        segment_point_t point;
        if (segment_get (self->segment, &ids [i], &point) == 0)
            ids [out++] = ids [i];
    }
    return out;
}

//  SHARD_INFO of a source: the run's progress.
static void
s_xfer_info (s_shard_t *self, json_t *json)
{
    transfer_t *run = self->xfer.run;
    if (run && transfer_running (run))
        json_object_set_new (json, "transfer", json_pack (
            "{sIsIsI}", "to", (json_int_t) self->xfer.run_to, "transferred",
            (json_int_t) transfer_transferred (run), "total",
            (json_int_t) transfer_total (run)));
}

//  Stopping: answers to writes in flight get a moment to arrive, then the
//  run ends and releases the rest.
static void
s_xfer_stop (s_shard_t *self)
{
    s_xfer_t *x = &self->xfer;
    s_xitem_t *item;
    while (x->turn && (item = (s_xitem_t *) zlist_pop (x->turn))) {
        envelope_set_error (item->reply, -SH_EUNAVAIL, "the shard is stopping");
        if (envelope_send (&item->reply, self->router))
            log_info ("a reply could not be sent (peer gone)");
        s_xitem_destroy (&item);
    }
    zlist_destroy (&x->turn);
    if (!x->run)
        return;
    uint64_t until = envelope_now_ms () + S_XFER_DRAIN_MS;
    while (transfer_forwarding (x->run)
           && transfer_inflight (x->run) + transfer_queued (x->run)) {
        uint64_t now = envelope_now_ms ();
        if (now >= until)
            break;
        s_xfer_send (self, now);
        zmq_pollitem_t item = { zsock_resolve (x->p2p), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) (until - now)) < 0 && zmq_errno () != EINTR)
            break;
        s_xfer_recv (self, envelope_now_ms ());
    }
    s_xfer_end (self);
}

//  ---------------------------------------------------------------------------
//  Setup and teardown

static void
s_destroy (s_shard_t *self)
{
    s_xfer_stop (self);
    if (self->pending) {
        envelope_t *reply;
        while ((reply = (envelope_t *) zlist_pop (self->pending)))
            envelope_destroy (&reply);
        zlist_destroy (&self->pending);
    }
    workers_destroy (&self->workers);
    optimizer_destroy (&self->optimizer);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->results);
    rwgate_destroy (&self->gate);
    zsock_destroy (&self->router);
    zsock_destroy (&self->sub);
    shard_store_destroy (&self->store);
    vindex_destroy (&self->vindex);
    segment_destroy (&self->segment);
    pindex_destroy (&self->pindex);
    free (self->specs);
    json_decref (self->payload_schema);
    free (self->dirty);
}

//  Steps 1-4 of a start: dir, config, store, socket. 0 to run, 1 to exit
//  with *exit_code.
static int
s_start (s_shard_t *self, int *exit_code)
{
    const char *storage = self->config->storage_path;
    char endpoint [PATHS_MAX];
    if (paths_shard_dir (storage, self->uid, self->shard_id, self->dir)
        || paths_mkdirs (self->dir)) {
        log_error ("cannot create the shard directory under %s", storage);
        return 1;
    }
    //  Subscribe before asking, so no change between the answer and the
    //  first publication is missed (s_on_state ignores older states).
    self->sub = zsock_new (ZMQ_SUB);
    assert (self->sub);
    zsock_set_subscribe (self->sub, "");
    if (paths_meta_endpoint (storage, endpoint) || zsock_connect (self->sub, "%s", endpoint)) {
        log_error ("cannot subscribe to the meta endpoint");
        return 1;
    }
    json_t *state = NULL;
    int rc = s_fetch_state (self, &state);
    if (rc) {
        if (rc == -SH_EIO && zsys_interrupted) {
            *exit_code = 0;
            return 1;
        }
        log_error ("no metadata from the raft actor: %s", sh_strerror (rc));
        return 1;
    }
    const json_t *applied = json_object_get (state, "applied");
    self->meta_applied = json_is_integer (applied) ? (uint64_t) json_integer_value (applied) : 0;
    json_t *coll = s_find_collection (self, state);
    if (!coll) {
        log_info ("collection uid=%" PRIu64 " does not exist (deleted); exiting", self->uid);
        json_decref (state);
        *exit_code = 0;
        return 1;
    }
    s_set_schema (self, coll);
    s_xfer_on_state (self, state, coll);
    rc = s_specs_from_config (json_object_get (coll, "config"), &self->specs, &self->n_specs);
    if (rc) {
        json_decref (state);
        return 1;
    }
    self->segment = segment_new (self->specs, self->n_specs);
    if (!self->segment) {
        json_decref (state);
        log_error ("the segment refused the collection's vector config");
        return 1;
    }
    self->vindex = vindex_new (self->segment, self->dir);
    s_configure_vindex (self, json_object_get (coll, "config"));
    //  Fields first: the points then go into them as they load.
    self->pindex = pindex_new ();
    segment_set_observer (self->segment, s_on_payload, self->pindex);
    s_sync_fields (self, false);
    json_decref (state);

    if (shard_store_open (self->dir, &self->store))
        return 1;
    vindex_load_begin (self->vindex, shard_store_seq (self->store));
    s_load_t load = { .self = self };
    size_t corrupt = 0;
    rc = shard_store_load (self->store, s_load_point, &load, &corrupt);
    if (rc) {
        log_error ("loading the store failed: %s", sh_strerror (rc));
        return 1;
    }
    self->last_seq = shard_store_seq (self->store);
    if (load.max_version > self->last_seq)
        self->last_seq = load.max_version;
    if (corrupt || load.failed || load.dropped)
        log_error ("load: %zu corrupt rows skipped, %zu points refused, %zu vectors no "
                   "longer in the config", corrupt, load.failed, load.dropped);
    log_info ("loaded %zu points, seq=%" PRIu64, load.loaded, self->last_seq);
    vindex_load_end (self->vindex, self->last_seq);

    self->router = zsock_new (ZMQ_ROUTER);
    assert (self->router);
    char ipc_dir [PATHS_MAX];
    if (paths_ipc_dir (storage, ipc_dir) || paths_mkdirs (ipc_dir)) {
        log_error ("cannot create the ipc dir for %s", storage);
        return 1;
    }
    if (paths_shard_endpoint (storage, self->uid, self->shard_id, endpoint)
        || zsock_bind (self->router, "%s", endpoint) != 0) {
        log_error ("cannot bind the shard endpoint: %s", zmq_strerror (zmq_errno ()));
        return 1;
    }
    //  The workers' replies come back here; inproc names are per process.
    self->results = zsock_new (ZMQ_PULL);
    assert (self->results);
    zsock_set_rcvhwm (self->results, 0);
    char results_ep [64];
    snprintf (results_ep, sizeof results_ep, "inproc://shard-results-%p", (void *) self);
    if (zsock_bind (self->results, "%s", results_ep) != 0) {
        log_error ("cannot bind %s: %s", results_ep, zmq_strerror (zmq_errno ()));
        return 1;
    }
    self->gate = rwgate_new ();
    size_t n_workers = workers_default_count ();
    self->workers = workers_new (n_workers, results_ep, s_work, s_drop_job, self);
    if (!self->workers) {
        log_error ("cannot start %zu worker threads", n_workers);
        return 1;
    }
    //  Reads also come straight to the workers (the gateway's fast path);
    //  without it they all come through the ROUTER, which works too.
    char direct [PATHS_MAX];
    if (paths_shard_direct (storage, self->uid, self->shard_id, direct)
        || workers_listen (self->workers, direct, s_serve_direct))
        log_warn ("no direct read socket (%s): reads go through %s", strerror (errno),
                  endpoint);
    self->optimizer = optimizer_new (self->vindex, self->gate);
    if (!self->optimizer)
        return 1;
    optimizer_hold_graphs (self->optimizer, self->xfer.hold);
    optimizer_set_pindex (self->optimizer, self->pindex, s_payload_of, self->segment);
    self->poller = zpoller_new (self->router, self->sub, self->results, NULL);
    self->pending = zlist_new ();
    assert (self->poller && self->pending);
    log_info ("serving at %s with %zu read workers", endpoint, n_workers);
    return 0;
}

int
shard_actor_main (const config_t *config, uint64_t peer_id, uint64_t collection_uid,
                  uint32_t shard_id)
{
    char tag [64];
    snprintf (tag, sizeof tag, "shard:%" PRIu64 "/%u", collection_uid, shard_id);
    log_set_actor (tag);
    s_shard_t self = {
        .config = config,
        .peer_id = peer_id,
        .uid = collection_uid,
        .shard_id = shard_id,
    };
    int exit_code = 1;
    if (s_start (&self, &exit_code) == 0) {
        s_run (&self);
        exit_code = self.exit_code;
        log_info ("stopped, seq=%" PRIu64, self.last_seq);
    }
    s_destroy (&self);
    return exit_code;
}
