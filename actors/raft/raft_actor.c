/*  raft_actor: the process that runs consensus for the node's metadata.

    It owns the Raft core (rcore), its SQLite storage (raft_store) and the
    metadata state machine (meta). At start it reloads the store, restores
    the state machine from the latest snapshot and re-applies the committed
    log after it, so the state survives restarts. It serves, on a ROUTER at
    paths_raft_endpoint:
      META_GET      -> {"state": <state>}
      META_PROPOSE  -> proposes the op; answered once the entry is committed
                       and applied, with {"result", "state"} or the op's
                       error; -SH_ENOLEADER when this node is not the leader
    and publishes META_STATE {"state"} on a PUB at paths_meta_endpoint after
    every turn that applied entries, when a subscriber joins, and once a
    second.

    One loop, per STYLE.md: wait on the ROUTER until the next tick, handle
    messages, tick, then run the ready cycle in order: persist, send, apply,
    advance. Replies leave only from apply, so nothing is acknowledged
    before it is durable. In this version the cluster has one voter (this
    peer); messages for other peers come with the p2p actor.
*/
#include "actors/actors.h"
#include "actors/raft/meta.h"
#include "actors/raft/raft_store.h"
#include "actors/raft/rcore.h"
#include "common/err.h"
#include "common/log.h"
#include "common/paths.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include <inttypes.h>
#include <unistd.h>

//  Largest op accepted in a proposal (JSON text); metadata ops are small.
#define S_MAX_OP_BYTES (8u * 1024 * 1024)
//  How long a proposal without a deadline may wait for its entry.
#define S_DEFAULT_WAIT_MS 30000
//  Republish the state this often even when nothing changed.
#define S_REPUBLISH_MS 1000
//  Messages handled per loop turn before ticking and flushing.
#define S_BATCH 64

//  A proposal waiting for its entry to be applied.
typedef struct {
    uint64_t index;                 //  log index it was given
    uint64_t term;                  //  term it was proposed in
    envelope_t *reply;              //  reply to fill (routing id, request id)
    uint64_t deadline;              //  unix ms after which it times out
} s_pending_t;

typedef struct {
    uint64_t peer_id;               //  this node
    char storage [PATHS_MAX];       //  storage dir
    raft_store_t *store;            //  consensus.db
    rcore_t *core;                  //  the Raft core
    meta_t *meta;                   //  the state machine
    zsock_t *router;                //  META_GET / META_PROPOSE
    zsock_t *pub;                   //  META_STATE (an XPUB: it sees subscribers join)
    zpoller_t *poller;              //  on router and pub
    int64_t tick_ms;                //  tick period
    int64_t next_tick;              //  zclock_mono time of the next tick
    int64_t next_publish;           //  zclock_mono time of the next republish
    bool applied_since_publish;     //  state changed since the last publication
    uint64_t compact_entries;       //  snapshot every so many applied entries; 0 = never
    s_pending_t *pending;           //  proposals waiting for apply
    size_t n_pending;
    size_t cap_pending;
    uint64_t publish_seq;           //  request id of the publications
    uint64_t last_leader;           //  leader last logged (to log changes)
    uint64_t last_term;             //  term last logged
    bool warned_no_transport;       //  said once that peer messages are dropped
} s_actor_t;

typedef int (s_handler_fn) (s_actor_t *self, envelope_t *request);
typedef struct {
    const char *name;               //  for logs
    s_handler_fn *fn;               //  NULL: not served here
} s_handler_t;

//  --------------------------------------------------------------------------
//  Replies and publications

static json_t *
s_state (s_actor_t *self)
{
    return meta_state (self->meta, rcore_term (self->core), rcore_leader (self->core),
                       self->peer_id);
}

static void
s_send_reply (s_actor_t *self, envelope_t **reply)
{
    if (envelope_send (reply, self->router))
        log_warn ("raft: reply not sent (client gone?)");
}

static void
s_reply_error (s_actor_t *self, envelope_t *request, int status, const char *message)
{
    envelope_t *reply = envelope_new_reply (request, status);
    envelope_set_error (reply, status, "%s", message ? message : sh_strerror (status));
    s_send_reply (self, &reply);
}

static void
s_publish (s_actor_t *self)
{
    envelope_t *env = envelope_new (MSG_META_STATE, ++self->publish_seq, 0);
    envelope_set_json (env, json_pack ("{so}", "state", s_state (self)));
    if (envelope_send (&env, self->pub))
        log_warn ("raft: state publication failed");
    self->applied_since_publish = false;
    self->next_publish = zclock_mono () + S_REPUBLISH_MS;
}

//  --------------------------------------------------------------------------
//  Requests

static int
s_on_get (s_actor_t *self, envelope_t *request)
{
    envelope_t *reply = envelope_new_reply (request, 0);
    envelope_set_json (reply, json_pack ("{so}", "state", s_state (self)));
    s_send_reply (self, &reply);
    return 0;
}

static int
s_on_propose (s_actor_t *self, envelope_t *request)
{
    uint64_t rid = envelope_request_id (request);
    json_t *op = json_object_get (envelope_json (request), "op");
    if (!json_is_object (op) || !json_is_string (json_object_get (op, "type"))) {
        s_reply_error (self, request, -SH_EINVAL,
                       "Wrong input: meta_propose needs an \"op\" object with a \"type\"");
        return 0;
    }
    if (rcore_role (self->core) != RCORE_LEADER) {
        //  §6.2: only the leader takes commands; the client retries.
        s_reply_error (self, request, -SH_ENOLEADER, NULL);
        return 0;
    }
    uint64_t now = envelope_now_ms ();
    uint64_t deadline = envelope_deadline (request);
    if (deadline && deadline <= now) {
        s_reply_error (self, request, -SH_ETIMEDOUT, NULL);
        return 0;
    }
    char *text = json_dumps (op, JSON_COMPACT);
    if (!text) {
        s_reply_error (self, request, -SH_EINVAL, "Wrong input: op cannot be serialized");
        return 0;
    }
    size_t len = strlen (text);
    if (len > S_MAX_OP_BYTES) {
        free (text);
        s_reply_error (self, request, -SH_ETOOBIG, NULL);
        return 0;
    }
    uint64_t index = 0, term = 0;
    int rc = rcore_propose (self->core, RCORE_ENTRY_NORMAL, text, len, &index, &term);
    free (text);
    if (rc) {
        s_reply_error (self, request, rc, NULL);
        return 0;
    }
    if (self->n_pending == self->cap_pending) {
        self->cap_pending = self->cap_pending ? self->cap_pending * 2 : 16;
        self->pending = (s_pending_t *) realloc (self->pending,
                                                 self->cap_pending * sizeof (s_pending_t));
        assert (self->pending);
    }
    s_pending_t *p = &self->pending [self->n_pending++];
    p->index = index;
    p->term = term;
    p->reply = envelope_new_reply (request, 0);
    p->deadline = deadline ? deadline : now + S_DEFAULT_WAIT_MS;
    log_debug ("raft: proposed rid=%" PRIu64 " op=%s index=%" PRIu64 " term=%" PRIu64, rid,
               json_string_value (json_object_get (op, "type")), index, term);
    return 0;
}

static const s_handler_t s_handlers [MSG_TYPE_COUNT] = {
    [MSG_META_GET] = { "meta_get", s_on_get },
    [MSG_META_PROPOSE] = { "meta_propose", s_on_propose },
};

//  Answers a message that could not be decoded, naming the request if its
//  header was readable, so the client is not left waiting.
static void
s_reply_malformed (s_actor_t *self, zframe_t **routing, zframe_t *head)
{
    uint16_t type = MSG_NONE;
    uint64_t rid = 0;
    if (head && zframe_size (head) >= ENVELOPE_HEADER_SIZE) {
        const uint8_t *h = zframe_data (head);
        if (h [0] == 'S' && h [1] == 'H') {
            type = (uint16_t) (h [4] | h [5] << 8);
            for (int i = 7; i >= 0; i--)
                rid = rid << 8 | h [12 + i];
        }
    }
    envelope_t *stub = envelope_new (type, rid, 0);
    envelope_t *reply = envelope_new_reply (stub, -SH_EPROTO);
    envelope_destroy (&stub);
    envelope_set_error (reply, -SH_EPROTO, "%s", sh_strerror (SH_EPROTO));
    zmsg_t *msg = envelope_encode (reply);
    envelope_destroy (&reply);
    zmsg_prepend (msg, routing);
    if (zmsg_send (&msg, self->router))
        zmsg_destroy (&msg);
}

static void
s_dispatch (s_actor_t *self)
{
    zmsg_t *msg = zmsg_recv (self->router);
    if (!msg)
        return;                         //  interrupted
    if (zmsg_size (msg) < 2) {
        zmsg_destroy (&msg);
        log_warn ("raft: dropped a message without routing id or header");
        return;
    }
    //  Kept aside in case the envelope is malformed and must be answered.
    zframe_t *routing = zframe_dup (zmsg_first (msg));
    zframe_t *head = zframe_dup (zmsg_next (msg));
    envelope_t *request = NULL;
    int rc = envelope_decode (&msg, true, &request);
    if (rc) {
        log_warn ("raft: malformed envelope (%zu byte header): %s", zframe_size (head),
                  sh_strerror (rc));
        s_reply_malformed (self, &routing, head);
    }
    zframe_destroy (&head);
    zframe_destroy (&routing);
    if (rc)
        return;

    uint16_t type = envelope_type (request);
    if (envelope_is_reply (request)) {
        log_warn ("raft: dropped a reply it did not ask for: type=%s rid=%" PRIu64,
                  msg_type_name (type), envelope_request_id (request));
    }
    else
    if (type >= MSG_TYPE_COUNT || !s_handlers [type].fn) {
        log_warn ("raft: unexpected message type=%u rid=%" PRIu64, type,
                  envelope_request_id (request));
        s_reply_error (self, request, -SH_EPROTO, "raft actor does not serve this message");
    }
    else {
        log_trace ("raft: %s rid=%" PRIu64, s_handlers [type].name,
                   envelope_request_id (request));
        s_handlers [type].fn (self, request);
    }
    envelope_destroy (&request);
}

//  Drains subscription notices; true if someone subscribed.
static bool
s_subscribed (s_actor_t *self)
{
    bool joined = false;
    while (zsock_events (self->pub) & ZMQ_POLLIN) {
        zframe_t *frame = zframe_recv (self->pub);
        if (!frame)
            break;
        if (zframe_size (frame) > 0 && zframe_data (frame) [0] == 1)
            joined = true;
        zframe_destroy (&frame);
    }
    return joined;
}

//  --------------------------------------------------------------------------
//  The ready cycle

static void
s_send (s_actor_t *self, const rcore_msg_t *messages, size_t count)
{
    //  One voter: the core has no one to write to. With more voters the p2p
    //  actor carries these; until it exists they are dropped, which Raft
    //  tolerates (it retries) but cannot make progress with.
    if (count && !self->warned_no_transport) {
        log_warn ("raft: no peer transport yet: dropping %zu message(s), first %s to peer=%"
                  PRIu64, count, rcore_msg_type_name (messages [0].type), messages [0].to);
        self->warned_no_transport = true;
    }
}

//  Answers the proposal waiting for index, if any.
static void
s_answer (s_actor_t *self, const rcore_entry_t *entry, int rc, json_t *result,
          const char *err)
{
    for (size_t i = 0; i < self->n_pending; i++) {
        s_pending_t *p = &self->pending [i];
        if (p->index != entry->index)
            continue;
        envelope_t *reply = p->reply;
        if (p->term != entry->term) {
            //  Another leader's entry took the slot: ours was never committed.
            envelope_set_error (reply, -SH_ENOLEADER,
                                "consensus leader changed before the operation was "
                                "committed, retry");
        }
        else
        if (rc)
            envelope_set_error (reply, rc, "%s", err);
        else
            envelope_set_json (reply, json_pack ("{sOso}", "result", result, "state",
                                                 s_state (self)));
        s_send_reply (self, &reply);
        self->pending [i] = self->pending [--self->n_pending];
        return;
    }
}

static void
s_apply (s_actor_t *self, const rcore_entry_t *entries, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const rcore_entry_t *e = &entries [i];
        if (e->index <= meta_applied (self->meta))
            continue;                   //  already in the restored snapshot
        json_t *result = NULL;
        char err [512] = "";
        int rc = 0;
        if (e->type == RCORE_ENTRY_NORMAL) {
            rc = meta_apply_entry (self->meta, e->index, e->data, e->len, &result, err,
                                   sizeof err);
            if (rc)
                log_info ("raft: entry index=%" PRIu64 " refused: %s", e->index, err);
            else
                log_debug ("raft: applied index=%" PRIu64, e->index);
        }
        else
            meta_skip (self->meta, e->index);
        s_answer (self, e, rc, result, err);
        json_decref (result);
        self->applied_since_publish = true;
    }
}

static int
s_install_snapshot (s_actor_t *self, const rcore_snapshot_t *snap)
{
    if (meta_load (self->meta, snap->data, snap->len)) {
        log_error ("raft: snapshot at index=%" PRIu64 " does not hold a state", snap->index);
        return -SH_EIO;
    }
    self->applied_since_publish = true;
    log_info ("raft: installed snapshot index=%" PRIu64 " term=%" PRIu64, snap->index,
              snap->term);
    return 0;
}

static int
s_flush (s_actor_t *self)
{
    rcore_ready_t rd;
    while (rcore_ready (self->core, &rd)) {
        //  1. persist: the snapshot, then hard state and entries (§3.8)
        if (rd.snapshot && raft_store_install_snapshot (self->store, rd.snapshot))
            return -SH_EIO;
        if ((rd.hard_state_changed || rd.n_entries)
            && raft_store_save (self->store, &rd.hard_state, rd.entries, rd.n_entries))
            return -SH_EIO;
        //  2. send, only once it is durable
        s_send (self, rd.messages, rd.n_messages);
        //  3. apply (which answers the proposals)
        if (rd.snapshot && s_install_snapshot (self, rd.snapshot))
            return -SH_EIO;
        s_apply (self, rd.committed, rd.n_committed);
        //  4. advance
        rcore_advance (self->core, &rd);
    }
    if (rcore_leader (self->core) != self->last_leader
        || rcore_term (self->core) != self->last_term) {
        log_info ("raft: term=%" PRIu64 " leader=%" PRIu64 " role=%s",
                  rcore_term (self->core), rcore_leader (self->core),
                  rcore_role_name (rcore_role (self->core)));
        self->last_leader = rcore_leader (self->core);
        self->last_term = rcore_term (self->core);
        self->applied_since_publish = true;     //  subscribers see the new leader
    }
    return 0;
}

//  §5.1: once enough entries are applied, the state machine's state
//  replaces them (a snapshot), so the log and the restart replay stay short.
static int
s_compact (s_actor_t *self, bool force)
{
    uint64_t applied = rcore_applied (self->core);
    uint64_t snap = rcore_snapshot (self->core)->index;
    if (applied <= snap)
        return 0;
    if (!force && (self->compact_entries == 0 || applied - snap < self->compact_entries))
        return 0;
    assert (meta_applied (self->meta) == applied);
    const rcore_entry_t *entry = rcore_entry (self->core, applied);
    assert (entry);
    size_t len = 0;
    char *dump = meta_dump (self->meta, &len);
    rcore_conf_t conf;
    rcore_conf_at (self->core, applied, &conf);
    int rc = raft_store_compact (self->store, applied, entry->term, dump, len, &conf);
    if (rc == 0)
        rc = rcore_compact (self->core, applied, dump, len);
    free (dump);
    if (rc)
        log_error ("raft: compaction at index=%" PRIu64 " failed: %s", applied,
                   sh_strerror (rc));
    else
        log_info ("raft: compacted the log into a snapshot at index=%" PRIu64, applied);
    return rc;
}

static void
s_expire_pending (s_actor_t *self)
{
    uint64_t now = envelope_now_ms ();
    for (size_t i = 0; i < self->n_pending; ) {
        s_pending_t *p = &self->pending [i];
        if (p->deadline > now) {
            i++;
            continue;
        }
        envelope_set_error (p->reply, -SH_ETIMEDOUT,
                            "timed out waiting for the operation to be committed");
        s_send_reply (self, &p->reply);
        self->pending [i] = self->pending [--self->n_pending];
    }
}

//  --------------------------------------------------------------------------
//  Setup

//  This peer's address as the state records it.
static void
s_peer_uri (const config_t *config, char *buf, size_t size)
{
    json_t *run = json_object_get (config->tree, "run");
    const char *uri = json_string_value (json_object_get (run, "uri"));
    if (config->cluster_enabled && uri && *uri)
        snprintf (buf, size, "%s", uri);
    else
        snprintf (buf, size, "http://127.0.0.1:%d", config->p2p_port);
}

static int
s_open (s_actor_t *self, const config_t *config)
{
    char dir [PATHS_MAX], raft_ep [PATHS_MAX], meta_ep [PATHS_MAX], ipc [PATHS_MAX];
    const char *storage = config->storage_path ? config->storage_path : "./storage";
    snprintf (self->storage, sizeof self->storage, "%s", storage);
    if (paths_raft_dir (storage, dir) || paths_raft_endpoint (storage, raft_ep)
        || paths_meta_endpoint (storage, meta_ep) || paths_ipc_dir (storage, ipc)) {
        log_error ("raft: storage path too long: %s", storage);
        return -SH_EINVAL;
    }
    if (paths_mkdirs (dir) || paths_mkdirs (ipc)) {
        log_error ("raft: cannot create %s or %s", dir, ipc);
        return -SH_EIO;
    }
    int rc = raft_store_open (dir, &self->store);
    if (rc)
        return rc;
    rcore_storage_t stored;
    rc = raft_store_load (self->store, &stored);
    if (rc)
        return rc;

    //  The state machine starts from the latest snapshot; the committed log
    //  after it is re-applied through the first ready cycles.
    self->meta = meta_new ();
    if (stored.snapshot.index && meta_load (self->meta, stored.snapshot.data,
                                            stored.snapshot.len)) {
        log_error ("raft: the snapshot at index=%" PRIu64 " in %s is damaged",
                   stored.snapshot.index, dir);
        return -SH_EIO;
    }
    char uri [1024];
    s_peer_uri (config, uri, sizeof uri);
    meta_set_peer (self->meta, self->peer_id, uri);

    rcore_config_t rconfig;
    rcore_config_defaults (&rconfig);
    rconfig.id = self->peer_id;
    rconfig.voters = &self->peer_id;
    rconfig.n_voters = 1;
    rconfig.seed = self->peer_id ^ (uint64_t) zclock_usecs () ^ ((uint64_t) getpid () << 32);
    rconfig.applied = stored.snapshot.index;
    self->core = rcore_new (&rconfig, &stored);
    if (!self->core) {
        log_error ("raft: the log in %s is not consistent (term=%" PRIu64 " commit=%" PRIu64
                   " entries=%zu snapshot=%" PRIu64 ")", dir, stored.hard_state.term,
                   stored.hard_state.commit, stored.n_entries, stored.snapshot.index);
        return -SH_EIO;
    }
    log_info ("raft: loaded term=%" PRIu64 " commit=%" PRIu64 " entries=%zu snapshot=%" PRIu64
              " uri=%s", stored.hard_state.term, stored.hard_state.commit, stored.n_entries,
              stored.snapshot.index, uri);

    self->router = zsock_new (ZMQ_ROUTER);
    //  An XPUB is a PUB that hears subscriptions: a subscriber that joins
    //  late (the gateway, the supervisor after a restart) gets the state at
    //  once instead of at the next republish.
    self->pub = zsock_new (ZMQ_XPUB);
    assert (self->router && self->pub);
    zsock_set_linger (self->router, 0);
    zsock_set_linger (self->pub, 0);
    zsock_set_xpub_verbose (self->pub, 1);
    if (zsock_bind (self->router, "%s", raft_ep) != 0) {
        log_error ("raft: cannot bind %s: %s", raft_ep, zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }
    if (zsock_bind (self->pub, "%s", meta_ep) != 0) {
        log_error ("raft: cannot bind %s: %s", meta_ep, zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }
    self->poller = zpoller_new (self->router, self->pub, NULL);
    assert (self->poller);
    return 0;
}

static void
s_close (s_actor_t *self)
{
    for (size_t i = 0; i < self->n_pending; i++)
        envelope_destroy (&self->pending [i].reply);
    free (self->pending);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    rcore_destroy (&self->core);
    meta_destroy (&self->meta);
    raft_store_destroy (&self->store);
}

int
raft_actor_main (const config_t *config, uint64_t peer_id)
{
    log_set_actor ("raft");
    log_set_level ((log_level_t) config->log_level);
    if (peer_id == 0) {
        log_error ("raft: no peer id");
        return 1;
    }
    s_actor_t actor = { 0 };
    s_actor_t *self = &actor;
    self->peer_id = peer_id;
    self->tick_ms = config->tick_period_ms > 0 ? config->tick_period_ms : 100;
    self->compact_entries = config->compact_wal_entries > 0
                          ? (uint64_t) config->compact_wal_entries : 0;
    int rc = s_open (self, config);

    json_t *run = json_object_get (config->tree, "run");
    bool reinit = json_is_true (json_object_get (run, "reinit"));
    const char *bootstrap = json_string_value (json_object_get (run, "bootstrap"));

    //  Replay what is committed before serving anyone.
    if (rc == 0)
        rc = s_flush (self);
    if (rc == 0 && reinit) {
        //  Qdrant's --reinit without a bootstrap peer: this peer is the
        //  single voter and its log is compacted into a snapshot.
        if (bootstrap)
            log_warn ("raft: --reinit with --bootstrap is not supported yet: keeping state");
        else
            rc = s_compact (self, true);
    }
    if (rc) {
        s_close (self);
        return 1;
    }
    self->next_tick = zclock_mono ();
    log_info ("raft: serving peer_id=%" PRIu64 " tick=%" PRId64 "ms applied=%" PRIu64,
              peer_id, self->tick_ms, meta_applied (self->meta));

    while (true) {
        int64_t now = zclock_mono ();
        int64_t wait = self->next_tick - now;
        if (self->next_publish - now < wait)
            wait = self->next_publish - now;
        if (wait < 0)
            wait = 0;
        void *which = zpoller_wait (self->poller, (int) wait);
        if (!which && zpoller_terminated (self->poller)) {
            if (zsys_interrupted)
                break;                  //  SIGTERM: leave and clean up
            continue;                   //  another signal interrupted the wait
        }
        if (which == self->router)
            for (int n = 0; n < S_BATCH && (zsock_events (self->router) & ZMQ_POLLIN); n++)
                s_dispatch (self);
        if (which == self->pub && s_subscribed (self))
            self->applied_since_publish = true;     //  publish below, this turn
        now = zclock_mono ();
        if (now >= self->next_tick) {
            rcore_tick (self->core);
            self->next_tick += self->tick_ms;
            if (self->next_tick <= now)
                self->next_tick = now + self->tick_ms;      //  fell behind: don't burst
        }
        if (s_flush (self) || s_compact (self, false)) {
            rc = -SH_EIO;
            break;                      //  storage failed: exit, the supervisor restarts us
        }
        s_expire_pending (self);
        if (self->applied_since_publish || zclock_mono () >= self->next_publish)
            s_publish (self);
    }
    log_info ("raft: %s", rc ? "stopping on a storage error" : "stopping");
    s_close (self);
    return rc ? 1 : 0;
}
