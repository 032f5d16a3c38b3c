/*  raft_actor: the process that runs consensus for the node's metadata.

    It owns the Raft core (rcore), its SQLite storage (raft_store) and the
    metadata state machine (meta). At start it reloads the store, restores
    the state machine from the latest snapshot and re-applies the committed
    log after it, so the state survives restarts. It serves, on a ROUTER at
    paths_raft_endpoint (local actors, and the p2p actor delivering what
    other peers send):
      META_GET      -> {"state": <state>}
      META_PROPOSE  -> proposes the op; answered once the entry is committed
                       and applied, with {"result", "state", "index"} or the
                       op's error
      RAFT_MESSAGE  -> one Raft message from a peer (never answered)
      RAFT_JOIN     -> a new peer asks to join (cluster mode)
      RAFT_RECOVER  -> a follower asks for a consensus snapshot (cluster mode)
    and publishes META_STATE {"state"} on a PUB at paths_meta_endpoint after
    every turn that changed something (applied entries, leader, term, role,
    configuration), when a subscriber joins, and once a second.

    One loop, per STYLE.md: wait on the sockets until the next tick, handle
    messages, tick, then run the ready cycle in order: persist, send, apply,
    advance. Replies leave only from apply, so nothing is acknowledged
    before it is durable.

    Without cluster.enabled the cluster has one voter (this peer) and no
    transport. In cluster mode (see proto/msg.h for the messages):
    - Raft messages travel through the p2p actor: a DEALER to
      paths_p2p_endpoint carries [route oneway][RAFT_MESSAGE] out, a full
      queue drops them (Raft retries); they come back in on the ROUTER.
    - Membership: the first peer (fresh storage, no --bootstrap) is the
      single voter of a new cluster. A peer with fresh storage and
      --bootstrap starts with no voters and sends RAFT_JOIN to the bootstrap
      address until it is accepted; the leader adds it as a learner (the
      conf entry carries its uri) and promotes it once it has caught up.
      The peers map is the replicated one only: conf entries and set_peer
      ops build it, the leader proposes set_peer for itself when the map
      lacks its uri (or --uri changed it).
    - This peer's uri: --uri, else the one the cluster recorded for it, else
      "http://<service.host>:<p2p port>" with 127.0.0.1 for an unspecified
      host. A joining peer without --uri is recorded at the address the
      bootstrap peer saw its join come from; the first peer should be given
      --uri (as Qdrant asks) unless every peer runs on one host.
    - A request that only the leader serves (META_PROPOSE, RAFT_JOIN,
      RAFT_RECOVER) reaching a follower is forwarded to the leader through
      p2p and its reply relayed; while no leader is known it waits, up to
      its deadline. A forwarded request reaching a non-leader is answered
      -SH_ENOLEADER (never forwarded twice), and the forwarder tries again
      as it learns of a new leader. A proposal's success is relayed once
      this peer has applied the entry too, so the requester reads its write
      here at once.
*/
#include "actors/actors.h"
#include "actors/raft/meta.h"
#include "actors/raft/raft_store.h"
#include "actors/raft/rcore.h"
#include "actors/raft/rmsg.h"
#include "common/err.h"
#include "common/log.h"
#include "common/paths.h"
#include "proto/envelope.h"
#include "proto/le.h"
#include "proto/msg.h"
#include "proto/route.h"
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <unistd.h>

//  Largest op accepted in a proposal (JSON text); metadata ops are small.
#define S_MAX_OP_BYTES (8u * 1024 * 1024)
//  How long a request without a deadline may wait for its answer.
#define S_DEFAULT_WAIT_MS 30000
//  Republish the state this often even when nothing changed.
#define S_REPUBLISH_MS 1000
//  Messages handled per socket per loop turn before ticking and flushing.
#define S_BATCH 64
//  A joining peer asks again this long after a failed RAFT_JOIN...
#define S_JOIN_RETRY_MS 1000
//  ...and gives one attempt this long to be answered.
#define S_JOIN_ATTEMPT_MS 5000
//  A follower given --uri re-checks that the cluster recorded it this often.
#define S_URI_CHECK_MS 5000
//  A forwarded request refused for now (no leader there, leader busy or
//  unreachable) is tried again after this long, until its deadline.
#define S_FORWARD_RETRY_MS 200
//  A learner whose log is this close to the leader's is promoted to voter.
#define S_PROMOTE_LAG 8
//  At most one log line this often about malformed messages from peers.
#define S_BAD_LOG_MS 1000
//  SIGTERM: a leader promotes caught-up learners and hands leadership over
//  for at most this long, about an election timeout at the default tick
//  (the supervisor allows the raft actor 2 s before SIGKILL).
#define S_SHUTDOWN_MAX_MS 1500

//  A proposal of this leader waiting for its entry to be applied.
typedef enum {
    S_WAIT_PROPOSE,                 //  META_PROPOSE: {"result", "state", "index"}
    S_WAIT_JOIN                     //  RAFT_JOIN: {"peer_id", "uri", "peers"}
} s_wait_kind_t;

typedef struct {
    uint64_t index;                 //  log index it was given
    uint64_t term;                  //  term it was proposed in
    int kind;                       //  s_wait_kind_t
    envelope_t *reply;              //  reply to fill (routing id, request id)
    uint64_t deadline;              //  unix ms after which it is answered anyway
    char *uri;                      //  S_WAIT_JOIN: the joiner's uri as recorded
} s_pending_t;

//  A request that the leader must serve, held by this peer.
typedef enum {
    S_FWD_QUEUED,                   //  waiting for a leader (or a retry time)
    S_FWD_SENT,                     //  sent to the leader, waiting for its reply
    S_FWD_APPLIED_WAIT              //  answered; relayed once applied here too
} s_fwd_state_t;

typedef struct {
    envelope_t *request;            //  the original request (routing id, its id)
    int state;                      //  s_fwd_state_t
    uint64_t rid;                   //  S_FWD_SENT: our request id on the DEALER
    uint64_t to;                    //  S_FWD_SENT: the leader it went to
    int64_t retry_at;               //  S_FWD_QUEUED: zclock_mono time to try again
    uint64_t deadline;              //  unix ms: answered by then whatever happens
    char *last_error;               //  why the last try failed, for the final answer
    envelope_t *reply;              //  S_FWD_APPLIED_WAIT: the leader's answer
    uint64_t wait_index;            //  S_FWD_APPLIED_WAIT: relay once applied this far
} s_forward_t;

typedef struct {
    uint64_t peer_id;               //  this node
    bool cluster;                   //  cluster.enabled
    int p2p_port;                   //  cluster.p2p.port
    char uri [META_MAX_URI + 1];    //  this peer's uri (see the file comment)
    bool uri_given;                 //  --uri was given (it wins over the record)
    char *bootstrap;                //  --bootstrap while joining, else NULL
    bool reinit;                    //  --reinit on this start
    char storage [PATHS_MAX];       //  storage dir
    char raft_dir [PATHS_MAX];      //  its raft dir (consensus.db)
    raft_store_t *store;            //  consensus.db
    rcore_t *core;                  //  the Raft core
    meta_t *meta;                   //  the state machine
    zsock_t *router;                //  requests from local actors and from p2p
    zsock_t *pub;                   //  META_STATE (an XPUB: it sees subscribers join)
    zsock_t *dealer;                //  to the p2p actor (cluster mode), else NULL
    zpoller_t *poller;              //  on router, pub and dealer
    int64_t tick_ms;                //  tick period
    int64_t next_tick;              //  zclock_mono time of the next tick
    int64_t next_publish;           //  zclock_mono time of the next republish
    bool publish_due;               //  state changed since the last publication
    uint64_t compact_entries;       //  snapshot every so many applied entries; 0 = never
    s_pending_t *pending;           //  own proposals waiting for apply
    size_t n_pending;
    size_t cap_pending;
    s_forward_t *forwards;          //  requests for the leader held here
    size_t n_forwards;
    size_t cap_forwards;
    uint64_t next_rid;              //  request ids of what this actor sends
    uint64_t publish_seq;           //  request id of the publications
    //  joining (and a follower's uri update, which is the same request)
    uint64_t join_rid;              //  the RAFT_JOIN in flight, 0 = none
    uint64_t join_deadline;         //  its deadline (unix ms)
    int64_t join_at;                //  zclock_mono time of the next attempt
    int64_t uri_check_at;           //  zclock_mono time of the next uri check
    //  own set_peer proposal
    uint64_t set_peer_index;        //  its index, 0 = none
    uint64_t set_peer_term;         //  its term
    //  what was last logged / published, to notice changes
    uint64_t last_leader;
    uint64_t last_term;
    int last_role;
    uint64_t last_conf_sig;         //  a hash of the configuration
    bool member;                    //  in the configuration last time we looked
    bool warned_no_transport;       //  said once that peer messages are dropped
    //  malformed input from peers, logged at most once per S_BAD_LOG_MS
    uint64_t bad_count;             //  dropped since the last line
    int64_t bad_logged_at;          //  zclock_mono of the last line
    //  shutdown
    bool stopping;                  //  SIGTERM seen
    int64_t stop_by;                //  zclock_mono: leave by then whatever happens
} s_actor_t;

//  A handler takes the request; it may keep it (*request set to NULL).
typedef int (s_handler_fn) (s_actor_t *self, envelope_t **request);
typedef struct {
    const char *name;               //  for logs
    s_handler_fn *fn;               //  NULL: not served here
} s_handler_t;

static void s_handle (s_actor_t *self, envelope_t **request);
static int s_compact (s_actor_t *self, bool force);

//  --------------------------------------------------------------------------
//  Small helpers

static uint64_t
s_json_u64 (const json_t *obj, const char *key)
{
    json_t *value = json_object_get (obj, key);
    if (!json_is_integer (value) || json_integer_value (value) < 1)
        return 0;
    return (uint64_t) json_integer_value (value);
}

static bool
s_conf_has (const uint64_t *ids, size_t count, uint64_t id)
{
    for (size_t i = 0; i < count; i++)
        if (ids [i] == id)
            return true;
    return false;
}

//  Whether peer is a voter or learner of the latest configuration.
static bool
s_is_member (s_actor_t *self, uint64_t peer)
{
    rcore_conf_t conf;
    rcore_conf (self->core, &conf);
    return s_conf_has (conf.voters, conf.n_voters, peer)
        || s_conf_has (conf.learners, conf.n_learners, peer);
}

//  Whether peer is a member as of the applied index (its joining is done).
static bool
s_is_applied_member (s_actor_t *self, uint64_t peer)
{
    rcore_conf_t conf;
    if (rcore_conf_at (self->core, rcore_applied (self->core), &conf))
        return s_is_member (self, peer);
    return s_conf_has (conf.voters, conf.n_voters, peer)
        || s_conf_has (conf.learners, conf.n_learners, peer);
}

static uint64_t
s_conf_signature (s_actor_t *self)
{
    rcore_conf_t conf;
    rcore_conf (self->core, &conf);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < conf.n_voters; i++)
        h = (h ^ conf.voters [i]) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (size_t i = 0; i < conf.n_learners; i++)
        h = (h ^ conf.learners [i]) * 1099511628211ull;
    return h;
}

//  Qdrant's StateRole names, as GET /cluster shows them.
static const char *
s_role_name (rcore_role_t role)
{
    switch (role) {
        case RCORE_LEADER: return "Leader";
        case RCORE_CANDIDATE: return "Candidate";
        case RCORE_PRE_CANDIDATE: return "PreCandidate";
        default: return "Follower";
    }
}

//  Malformed input from a peer: dropped, counted, logged at most once per
//  S_BAD_LOG_MS so a flood cannot fill the log.
static void
s_bad_input (s_actor_t *self, const char *what, int rc)
{
    self->bad_count++;
    int64_t now = zclock_mono ();
    if (self->bad_logged_at && now - self->bad_logged_at < S_BAD_LOG_MS)
        return;
    log_warn ("raft: dropped %s: %s (%" PRIu64 " dropped since the last report)", what,
              sh_strerror (rc), self->bad_count);
    self->bad_count = 0;
    self->bad_logged_at = now;
}

//  A request's deadline, or the default wait from now.
static uint64_t
s_deadline_of (envelope_t *request)
{
    uint64_t deadline = envelope_deadline (request);
    return deadline ? deadline : envelope_now_ms () + S_DEFAULT_WAIT_MS;
}

static bool
s_is_forwarded (envelope_t *request)
{
    return json_is_true (json_object_get (envelope_json (request), "forwarded"));
}

//  --------------------------------------------------------------------------
//  Replies and publications

static json_t *
s_state (s_actor_t *self)
{
    uint64_t leader = rcore_leader (self->core);
    json_t *state = meta_state (self->meta, rcore_term (self->core), leader, self->peer_id);
    if (!self->cluster)
        return state;
    rcore_conf_t conf;
    rcore_conf (self->core, &conf);
    json_t *voters = json_array ();
    json_t *learners = json_array ();
    for (size_t i = 0; i < conf.n_voters; i++)
        json_array_append_new (voters, json_integer ((json_int_t) conf.voters [i]));
    for (size_t i = 0; i < conf.n_learners; i++)
        json_array_append_new (learners, json_integer ((json_int_t) conf.learners [i]));
    json_object_set_new (state, "voters", voters);
    json_object_set_new (state, "learners", learners);
    //  pending_operations: committed entries not applied yet, plus the
    //  requests this peer holds for the consensus (own proposals waiting
    //  for their entry, requests waiting for or on the leader).
    //  (meta's applied: this may run while a ready's entries are applied)
    uint64_t commit = rcore_commit (self->core);
    uint64_t applied = meta_applied (self->meta);
    uint64_t pending = (commit > applied ? commit - applied : 0) + self->n_pending
                     + self->n_forwards;
    json_t *raft = json_pack ("{sIsIsIsssb}", "term", (json_int_t) rcore_term (self->core),
                              "commit", (json_int_t) commit,
                              "pending_operations", (json_int_t) pending,
                              "role", s_role_name (rcore_role (self->core)),
                              "is_voter", rcore_is_voter (self->core));
    assert (raft);
    json_object_set_new (raft, "leader", leader ? json_integer ((json_int_t) leader)
                                                : json_null ());
    json_object_set_new (state, "raft", raft);
    json_object_set_new (state, "cluster", json_true ());
    return state;
}

static void
s_send_reply (s_actor_t *self, envelope_t **reply)
{
    if (envelope_send (reply, self->router))
        log_warn ("raft: reply not sent (client gone?)");
}

static void
s_reply_error (s_actor_t *self, envelope_t *request, int status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static void
s_reply_error (s_actor_t *self, envelope_t *request, int status, const char *fmt, ...)
{
    char message [1024];
    if (fmt) {
        va_list args;
        va_start (args, fmt);
        vsnprintf (message, sizeof message, fmt, args);
        va_end (args);
    }
    else
        snprintf (message, sizeof message, "%s", sh_strerror (status));
    envelope_t *reply = envelope_new_reply (request, status);
    envelope_set_error (reply, status, "%s", message);
    s_send_reply (self, &reply);
}

static void
s_reply_json (s_actor_t *self, envelope_t *request, json_t *json)
{
    envelope_t *reply = envelope_new_reply (request, 0);
    envelope_set_json (reply, json);
    s_send_reply (self, &reply);
}

static void
s_publish (s_actor_t *self)
{
    envelope_t *env = envelope_new (MSG_META_STATE, ++self->publish_seq, 0);
    envelope_set_json (env, json_pack ("{so}", "state", s_state (self)));
    if (envelope_send (&env, self->pub))
        log_warn ("raft: state publication failed");
    self->publish_due = false;
    self->next_publish = zclock_mono () + S_REPUBLISH_MS;
}

//  --------------------------------------------------------------------------
//  The p2p transport

//  Sends [route][envelope] to the p2p actor without blocking (the DEALER's
//  send timeout is 0): a full queue drops it. 0, or -SH_EUNAVAIL.
static int
s_p2p_send (s_actor_t *self, const route_t *route, envelope_t **env)
{
    assert (self->dealer);
    zframe_t *head = route_encode (route);
    if (!head) {
        envelope_destroy (env);
        return -SH_EINVAL;
    }
    zmsg_t *msg = envelope_encode (*env);
    envelope_destroy (env);
    zmsg_prepend (msg, &head);
    if (zmsg_send (&msg, self->dealer)) {
        zmsg_destroy (&msg);
        return -SH_EUNAVAIL;
    }
    return 0;
}

//  A request to a peer's raft actor: dst, or (dst 0) the peer at uri.
static int
s_p2p_request (s_actor_t *self, uint64_t dst, const char *uri, envelope_t **env)
{
    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = ROUTE_REQUEST;
    route.actor = ROUTE_RAFT;
    route.dst = dst;
    if (uri)
        snprintf (route.uri, sizeof route.uri, "%s", uri);
    return s_p2p_send (self, &route, env);
}

static void
s_send (s_actor_t *self, const rcore_msg_t *messages, size_t count)
{
    if (!self->dealer) {
        //  One voter: the core has no one to write to; should it ever, the
        //  messages are dropped (Raft tolerates it) and that is said once.
        if (count && !self->warned_no_transport) {
            log_warn ("raft: no peer transport without cluster mode: dropping %zu "
                      "message(s), first %s to peer=%" PRIu64, count,
                      rcore_msg_type_name (messages [0].type), messages [0].to);
            self->warned_no_transport = true;
        }
        return;
    }
    size_t dropped = 0;
    for (size_t i = 0; i < count; i++) {
        const rcore_msg_t *m = &messages [i];
        json_t *json = rmsg_encode (m);
        if (!json) {
            dropped++;
            continue;
        }
        envelope_t *env = envelope_new (MSG_RAFT_MESSAGE, ++self->next_rid, 0);
        envelope_set_json (env, json);
        route_t route;
        memset (&route, 0, sizeof route);
        route.kind = ROUTE_ONEWAY;
        route.actor = ROUTE_RAFT;
        route.dst = m->to;
        if (s_p2p_send (self, &route, &env))
            dropped++;
        else
            log_trace ("raft: sent %s to peer=%" PRIu64 " term=%" PRIu64 " index=%" PRIu64
                       " entries=%zu", rcore_msg_type_name (m->type), m->to, m->term,
                       m->index, m->n_entries);
    }
    if (dropped)
        log_debug ("raft: %zu of %zu message(s) to peers dropped (p2p queue full)", dropped,
                   count);
}

//  --------------------------------------------------------------------------
//  Requests held for the leader (see the file comment)

static void
s_forward_free (s_forward_t *f)
{
    envelope_destroy (&f->request);
    envelope_destroy (&f->reply);
    free (f->last_error);
    f->last_error = NULL;
}

static void
s_forward_remove (s_actor_t *self, size_t i)
{
    s_forward_free (&self->forwards [i]);
    self->forwards [i] = self->forwards [--self->n_forwards];
}

//  Keeps request (taken) until a leader serves it or its deadline passes.
static void
s_forward_queue (s_actor_t *self, envelope_t **request, int64_t retry_at, const char *why)
{
    if (self->n_forwards == self->cap_forwards) {
        self->cap_forwards = self->cap_forwards ? self->cap_forwards * 2 : 16;
        self->forwards = (s_forward_t *) realloc (self->forwards,
                                                  self->cap_forwards * sizeof (s_forward_t));
        assert (self->forwards);
    }
    s_forward_t *f = &self->forwards [self->n_forwards++];
    memset (f, 0, sizeof *f);
    f->request = *request;
    *request = NULL;
    //  A proposal may reach the log twice (a copy sent, its answer lost, sent
    //  again): one op_id for every copy lets the state machine apply it once.
    json_t *op = json_object_get (envelope_json (f->request), "op");
    if (envelope_type (f->request) == MSG_META_PROPOSE && json_is_object (op)
        && !json_object_get (op, "op_id")) {
        uint8_t nonce [8];
        randombytes_buf (nonce, sizeof nonce);
        char id [64];
        snprintf (id, sizeof id, "%" PRIu64 "-%016" PRIx64, self->peer_id, le_get_u64 (nonce));
        json_object_set_new (op, "op_id", json_string (id));
    }
    f->state = S_FWD_QUEUED;
    f->retry_at = retry_at;
    f->deadline = s_deadline_of (f->request);
    f->last_error = why ? strdup (why) : NULL;
    log_debug ("raft: holding %s rid=%" PRIu64 " for the leader (%s)",
               msg_type_name (envelope_type (f->request)),
               envelope_request_id (f->request), why ? why : "no leader yet");
}

//  A request that a leader could not take now: a peer that forwarded it
//  retries itself, a local one waits here. The request is taken.
static void
s_retry_later (s_actor_t *self, envelope_t **request, int status, const char *why)
{
    if (s_is_forwarded (*request))
        s_reply_error (self, *request, status, "%s", why);
    else
        s_forward_queue (self, request, zclock_mono () + S_FORWARD_RETRY_MS, why);
}

static void
s_forward_send (s_actor_t *self, s_forward_t *f, uint64_t leader)
{
    envelope_t *env = envelope_new (envelope_type (f->request), ++self->next_rid, f->deadline);
    json_t *json = json_deep_copy (envelope_json (f->request));
    json_object_set_new (json, "forwarded", json_true ());
    envelope_set_json (env, json);
    uint64_t rid = self->next_rid;
    if (s_p2p_request (self, leader, NULL, &env)) {
        f->retry_at = zclock_mono () + S_FORWARD_RETRY_MS;
        return;
    }
    f->state = S_FWD_SENT;
    f->rid = rid;
    f->to = leader;
    log_debug ("raft: forwarded %s rid=%" PRIu64 " to leader=%" PRIu64 " as rid=%" PRIu64,
               msg_type_name (envelope_type (f->request)), envelope_request_id (f->request),
               leader, rid);
}

//  Relays the leader's answer held in f with this peer's state.
static void
s_forward_relay (s_actor_t *self, s_forward_t *f)
{
    envelope_t *reply = f->reply;
    f->reply = NULL;
    json_t *json = envelope_json (reply);
    if (json_object_get (json, "state"))
        json_object_set_new (json, "state", s_state (self));
    s_send_reply (self, &reply);
}

static void
s_on_forward_reply (s_actor_t *self, size_t i, envelope_t *answer)
{
    s_forward_t *f = &self->forwards [i];
    int status = envelope_status (answer);
    uint64_t rid = envelope_request_id (f->request);
    if ((status == -SH_EUNAVAIL || status == -SH_ENOLEADER)
        && envelope_now_ms () < f->deadline) {
        //  The leader is changing, busy with another membership change, or
        //  unreachable (p2p answered): try again, with whoever leads then.
        log_debug ("raft: %s rid=%" PRIu64 " refused by peer=%" PRIu64 " (%s): retrying",
                   msg_type_name (envelope_type (f->request)), rid, f->to,
                   envelope_error (answer));
        free (f->last_error);
        f->last_error = strdup (envelope_error (answer));
        f->state = S_FWD_QUEUED;
        f->rid = 0;
        f->retry_at = zclock_mono () + S_FORWARD_RETRY_MS;
        return;
    }
    envelope_t *reply = envelope_new_reply (f->request, status);
    envelope_set_json (reply, json_incref (envelope_json (answer)));
    if (status == 0 && envelope_type (f->request) == MSG_META_PROPOSE) {
        //  Read your writes: answer once this peer has applied the entry too.
        json_t *json = envelope_json (answer);
        uint64_t index = s_json_u64 (json, "index");
        if (!index)
            index = s_json_u64 (json_object_get (json, "state"), "applied");
        f->reply = reply;
        f->state = S_FWD_APPLIED_WAIT;
        f->wait_index = index;
        if (meta_applied (self->meta) < index) {
            log_debug ("raft: rid=%" PRIu64 " committed at index=%" PRIu64
                       ", answering once applied here", rid, index);
            return;
        }
        s_forward_relay (self, f);
    }
    else
        s_send_reply (self, &reply);
    s_forward_remove (self, i);
}

//  Sends what waits for a leader, serves it here if this peer leads now,
//  relays answers whose entry is applied here, and answers what is due.
static void
s_pump_forwards (s_actor_t *self)
{
    if (self->n_forwards == 0)
        return;
    uint64_t leader = rcore_leader (self->core);
    bool leading = rcore_role (self->core) == RCORE_LEADER;
    int64_t now = zclock_mono ();
    uint64_t now_ms = envelope_now_ms ();
    //  Requests to serve here are taken out first: serving one may hold it
    //  again (a new record), which must not disturb this walk.
    envelope_t **mine = NULL;
    size_t n_mine = 0;
    for (size_t i = 0; i < self->n_forwards; ) {
        s_forward_t *f = &self->forwards [i];
        if (f->state == S_FWD_APPLIED_WAIT
            && (meta_applied (self->meta) >= f->wait_index || now_ms >= f->deadline)) {
            s_forward_relay (self, f);
            s_forward_remove (self, i);
            continue;
        }
        if (now_ms >= f->deadline) {
            if (f->state == S_FWD_SENT)
                s_reply_error (self, f->request, -SH_EUNAVAIL,
                               "Service unavailable: the consensus leader (peer %" PRIu64
                               ") did not answer in time; the operation may still be "
                               "applied", f->to);
            else
                s_reply_error (self, f->request, -SH_ENOLEADER,
                               "Service unavailable: no consensus leader answered before "
                               "the deadline, the operation was not applied%s%s",
                               f->last_error ? ": " : "",
                               f->last_error ? f->last_error : "");
            log_info ("raft: %s rid=%" PRIu64 " timed out waiting for the leader",
                      msg_type_name (envelope_type (f->request)),
                      envelope_request_id (f->request));
            s_forward_remove (self, i);
            continue;
        }
        if (f->state == S_FWD_QUEUED && f->retry_at <= now) {
            if (leading) {
                mine = (envelope_t **) realloc (mine, (n_mine + 1) * sizeof (envelope_t *));
                assert (mine);
                mine [n_mine++] = f->request;
                f->request = NULL;
                s_forward_remove (self, i);
                continue;
            }
            if (leader && self->dealer && leader != self->peer_id)
                s_forward_send (self, f, leader);
        }
        i++;
    }
    for (size_t k = 0; k < n_mine; k++) {
        s_handle (self, &mine [k]);
        envelope_destroy (&mine [k]);
    }
    free (mine);
}

//  --------------------------------------------------------------------------
//  Own proposals (leader)

static s_pending_t *
s_pending_add (s_actor_t *self, envelope_t *request, int kind, uint64_t index,
               uint64_t term)
{
    if (self->n_pending == self->cap_pending) {
        self->cap_pending = self->cap_pending ? self->cap_pending * 2 : 16;
        self->pending = (s_pending_t *) realloc (self->pending,
                                                 self->cap_pending * sizeof (s_pending_t));
        assert (self->pending);
    }
    s_pending_t *p = &self->pending [self->n_pending++];
    memset (p, 0, sizeof *p);
    p->index = index;
    p->term = term;
    p->kind = kind;
    p->reply = envelope_new_reply (request, 0);
    p->deadline = s_deadline_of (request);
    return p;
}

static void
s_pending_remove (s_actor_t *self, size_t i)
{
    envelope_destroy (&self->pending [i].reply);
    free (self->pending [i].uri);
    self->pending [i] = self->pending [--self->n_pending];
}

//  The peers map for a join reply: the replicated one, with this leader's
//  own uri even before its set_peer is applied.
static json_t *
s_peers_for_reply (s_actor_t *self)
{
    json_t *state = meta_state (self->meta, 0, 0, 0);
    json_t *peers = json_incref (json_object_get (state, "peers"));
    json_decref (state);
    char key [24];
    snprintf (key, sizeof key, "%" PRIu64, self->peer_id);
    if (!json_object_get (peers, key))
        json_object_set_new (peers, key, json_string (self->uri));
    return peers;
}

//  Answers the proposal waiting for entry, if any.
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
                                "Service unavailable: the consensus leader changed before "
                                "the operation was committed, retry");
        }
        else
        if (rc)
            envelope_set_error (reply, rc, "%s", err);
        else
        if (p->kind == S_WAIT_JOIN)
            envelope_set_json (reply, json_pack ("{sIsiso}",
                                                 "peer_id", (json_int_t) self->peer_id,
                                                 "uri", p->uri ? p->uri : "",
                                                 "peers", s_peers_for_reply (self)));
        else
            envelope_set_json (reply, json_pack ("{sOsosI}", "result", result ? result
                                                 : json_true (), "state", s_state (self),
                                                 "index", (json_int_t) entry->index));
        p->reply = NULL;
        s_send_reply (self, &reply);
        s_pending_remove (self, i);
        return;
    }
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
        //  A 5xx either way: the cluster cannot commit now. The entry is in
        //  the log and may still commit once a majority answers.
        if (rcore_role (self->core) == RCORE_LEADER)
            envelope_set_error (p->reply, -SH_EUNAVAIL,
                                "Service unavailable: the operation was not committed "
                                "before the deadline (no majority of the consensus "
                                "answering?); it may still be applied later");
        else
            envelope_set_error (p->reply, -SH_ENOLEADER,
                                "Service unavailable: this peer lost the consensus "
                                "leadership before the operation was committed; it may "
                                "still be applied later");
        s_send_reply (self, &p->reply);
        s_pending_remove (self, i);
    }
}

//  --------------------------------------------------------------------------
//  Requests

static int
s_on_get (s_actor_t *self, envelope_t **request)
{
    s_reply_json (self, *request, json_pack ("{so}", "state", s_state (self)));
    return 0;
}

//  remove_peer on the leader: checked, then a Raft conf change.
static int
s_propose_remove (s_actor_t *self, envelope_t **request, const json_t *op)
{
    uint64_t peer = s_json_u64 (op, "peer_id");
    bool force = json_is_true (json_object_get (op, "force"));
    if (!peer) {
        s_reply_error (self, *request, -SH_EINVAL,
                       "Wrong input: remove_peer needs a positive \"peer_id\"");
        return 0;
    }
    if (!s_is_member (self, peer)) {
        s_reply_error (self, *request, -SH_ENOTFOUND, "Not found: Peer %" PRIu64
                       " does not exist", peer);
        return 0;
    }
    if (!force && meta_peer_has_shards (self->meta, peer)) {
        s_reply_error (self, *request, -SH_EUNPROC, "Bad request: Cannot remove peer %"
                       PRIu64 " as there are shards on it", peer);
        return 0;
    }
    uint64_t index = 0, term = 0;
    int rc = rcore_propose_conf (self->core, RCORE_CONF_REMOVE, peer, NULL, &index, &term);
    if (rc == -SH_EUNAVAIL || rc == -SH_ENOLEADER) {
        s_retry_later (self, request, rc == -SH_EUNAVAIL ? -SH_EUNAVAIL : -SH_ENOLEADER,
                       "Service unavailable: another membership change or a leadership "
                       "transfer is in progress");
        return 0;
    }
    if (rc == -SH_EINVAL) {
        s_reply_error (self, *request, -SH_EINVAL, "Bad request: Cannot remove peer %" PRIu64
                       ": it is the last voter of the consensus", peer);
        return 0;
    }
    if (rc) {
        s_reply_error (self, *request, rc, NULL);
        return 0;
    }
    s_pending_add (self, *request, S_WAIT_PROPOSE, index, term);
    log_info ("raft: removing peer=%" PRIu64 "%s at index=%" PRIu64, peer,
              force ? " (forced)" : "", index);
    return 0;
}

static int
s_on_propose (s_actor_t *self, envelope_t **request)
{
    uint64_t rid = envelope_request_id (*request);
    json_t *op = json_object_get (envelope_json (*request), "op");
    if (!json_is_object (op) || !json_is_string (json_object_get (op, "type"))) {
        s_reply_error (self, *request, -SH_EINVAL,
                       "Wrong input: meta_propose needs an \"op\" object with a \"type\"");
        return 0;
    }
    uint64_t now = envelope_now_ms ();
    uint64_t deadline = envelope_deadline (*request);
    if (deadline && deadline <= now) {
        s_reply_error (self, *request, -SH_ETIMEDOUT, NULL);
        return 0;
    }
    const char *type = json_string_value (json_object_get (op, "type"));
    if (rcore_role (self->core) != RCORE_LEADER) {
        //  §6.2: only the leader takes commands. A peer that forwarded it
        //  asks again once it knows better; otherwise it waits here for a
        //  leader to forward it to.
        if (s_is_forwarded (*request))
            s_reply_error (self, *request, -SH_ENOLEADER,
                           "Service unavailable: peer %" PRIu64 " is not the consensus "
                           "leader", self->peer_id);
        else
            s_forward_queue (self, request, 0, NULL);
        return 0;
    }
    if (strcmp (type, "remove_peer") == 0)
        return s_propose_remove (self, request, op);
    char *text = json_dumps (op, JSON_COMPACT);
    if (!text) {
        s_reply_error (self, *request, -SH_EINVAL, "Wrong input: op cannot be serialized");
        return 0;
    }
    size_t len = strlen (text);
    if (len > S_MAX_OP_BYTES) {
        free (text);
        s_reply_error (self, *request, -SH_ETOOBIG, NULL);
        return 0;
    }
    uint64_t index = 0, term = 0;
    int rc = rcore_propose (self->core, RCORE_ENTRY_NORMAL, text, len, &index, &term);
    free (text);
    if (rc == -SH_ENOLEADER || rc == -SH_EUNAVAIL) {
        //  Leading, but handing leadership over: the next leader takes it.
        s_retry_later (self, request, -SH_ENOLEADER,
                       "Service unavailable: the consensus leadership is being transferred");
        return 0;
    }
    if (rc) {
        s_reply_error (self, *request, rc, NULL);
        return 0;
    }
    s_pending_add (self, *request, S_WAIT_PROPOSE, index, term);
    log_debug ("raft: proposed rid=%" PRIu64 " op=%s index=%" PRIu64 " term=%" PRIu64, rid,
               type, index, term);
    return 0;
}

static int
s_on_raft_message (s_actor_t *self, envelope_t **request)
{
    if (!self->cluster) {
        s_bad_input (self, "a raft message (cluster mode is disabled)", -SH_EINVAL);
        return 0;
    }
    rcore_msg_t msg;
    int rc = rmsg_decode (envelope_json (*request), &msg);
    if (rc) {
        s_bad_input (self, "an undecodable raft message", rc);
        return 0;
    }
    rc = rcore_step (self->core, &msg);
    if (rc) {
        char what [96];
        snprintf (what, sizeof what, "a %s from peer=%" PRIu64 " the core refused",
                  rcore_msg_type_name (msg.type), msg.from);
        s_bad_input (self, what, rc);
    }
    rmsg_free (&msg);
    return 0;
}

//  "http://<host>:<port>", with IPv6 hosts in brackets.
static void
s_host_uri (char *buf, size_t size, const char *host, int port)
{
    bool v6 = strchr (host, ':') && host [0] != '[';
    snprintf (buf, size, "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

static int
s_on_join (s_actor_t *self, envelope_t **request)
{
    if (!self->cluster) {
        s_reply_error (self, *request, -SH_EINVAL, "Bad request: Distributed mode disabled");
        return 0;
    }
    json_t *json = envelope_json (*request);
    uint64_t peer = s_json_u64 (json, "peer_id");
    json_t *uri_json = json_object_get (json, "uri");
    json_t *port_json = json_object_get (json, "p2p_port");
    if (!peer || (uri_json && !json_is_null (uri_json) && !json_is_string (uri_json))) {
        s_reply_error (self, *request, -SH_EINVAL,
                       "Wrong input: raft_join needs a positive \"peer_id\" and a \"uri\" "
                       "string or null");
        return 0;
    }
    if (!json_is_string (uri_json)) {
        //  No --uri on the joiner: it is where the first peer it reached saw
        //  it come from, on its p2p port (filled here, before any forward, so
        //  that the leader does not see the forwarder's address instead).
        const char *host = json_string_value (json_object_get (json, "observed_host"));
        json_int_t port = json_integer_value (port_json);
        if (!host || !*host || strlen (host) > 255 || !json_is_integer (port_json) || port < 1
            || port > 65535) {
            s_reply_error (self, *request, -SH_EINVAL,
                           "Wrong input: raft_join without a \"uri\" needs the peer's "
                           "\"p2p_port\" and the address it was seen at");
            return 0;
        }
        char uri [META_MAX_URI + 1];
        s_host_uri (uri, sizeof uri, host, (int) port);
        json_object_set_new (json, "uri", json_string (uri));
    }
    const char *uri = json_string_value (json_object_get (json, "uri"));
    if (!*uri || strlen (uri) > META_MAX_URI) {
        s_reply_error (self, *request, -SH_EINVAL, "Wrong input: raft_join \"uri\" must be 1 "
                       "to %d bytes", META_MAX_URI);
        return 0;
    }
    if (rcore_role (self->core) != RCORE_LEADER) {
        if (s_is_forwarded (*request))
            s_reply_error (self, *request, -SH_ENOLEADER,
                           "Service unavailable: peer %" PRIu64 " is not the consensus "
                           "leader", self->peer_id);
        else
            s_forward_queue (self, request, 0, NULL);
        return 0;
    }
    if (peer == self->peer_id) {
        s_reply_error (self, *request, -SH_EINVAL,
                       "Bad request: peer %" PRIu64 " cannot join itself", peer);
        return 0;
    }
    if (s_is_applied_member (self, peer)) {
        //  Already a member (a restart after --reinit, a lost reply, or a
        //  member telling its new --uri): answered at once, unless its uri
        //  changed, which is recorded first.
        if (json_is_true (json_object_get (json, "fresh"))) {
            //  It has lost its log (--reinit): what this leader believes it
            //  holds is wrong, and Raft never moves that belief back. A
            //  recovery snapshot resets both its state and that belief.
            int rc = s_compact (self, true);
            if (rc == 0)
                rc = rcore_send_snapshot (self->core, peer);
            if (rc)
                log_warn ("raft: cannot send rejoining peer=%" PRIu64 " a snapshot: %s", peer,
                          sh_strerror (rc));
            else
                log_info ("raft: peer=%" PRIu64 " rejoins with empty storage: sending it a "
                          "snapshot at index=%" PRIu64, peer,
                          rcore_snapshot (self->core)->index);
        }
        const char *recorded = meta_peer_uri (self->meta, peer);
        if (recorded && strcmp (recorded, uri) == 0) {
            log_info ("raft: peer=%" PRIu64 " asked to join again; already a member at %s",
                      peer, uri);
            s_reply_json (self, *request, json_pack ("{sIssso}", "peer_id",
                                                     (json_int_t) self->peer_id, "uri", uri,
                                                     "peers", s_peers_for_reply (self)));
            return 0;
        }
        json_t *op = json_pack ("{sssIss}", "type", "set_peer", "peer_id", (json_int_t) peer,
                                "uri", uri);
        char *text = json_dumps (op, JSON_COMPACT);
        json_decref (op);
        uint64_t index = 0, term = 0;
        int rc = rcore_propose (self->core, RCORE_ENTRY_NORMAL, text, strlen (text), &index,
                                &term);
        free (text);
        if (rc) {
            s_retry_later (self, request, -SH_EUNAVAIL,
                           "Service unavailable: the leader cannot take proposals now, retry");
            return 0;
        }
        s_pending_t *p = s_pending_add (self, *request, S_WAIT_JOIN, index, term);
        p->uri = strdup (uri);
        log_info ("raft: member peer=%" PRIu64 " now at %s (was %s), index=%" PRIu64, peer,
                  uri, recorded ? recorded : "unknown", index);
        return 0;
    }
    if (s_is_member (self, peer)) {
        s_reply_error (self, *request, -SH_EUNAVAIL, "Service unavailable: the membership "
                       "change adding peer %" PRIu64 " is not committed yet, retry", peer);
        return 0;
    }
    json_t *extra = json_pack ("{ss}", "uri", uri);
    char *text = json_dumps (extra, JSON_COMPACT);
    json_decref (extra);
    uint64_t index = 0, term = 0;
    int rc = rcore_propose_conf (self->core, RCORE_CONF_ADD_LEARNER, peer, text, &index,
                                 &term);
    free (text);
    if (rc == -SH_EUNAVAIL || rc == -SH_ENOLEADER) {
        s_reply_error (self, *request, -SH_EUNAVAIL, "Service unavailable: another "
                       "membership change is in progress, retry");
        return 0;
    }
    if (rc) {
        s_reply_error (self, *request, rc, "Bad request: peer %" PRIu64 " cannot be added: %s",
                       peer, sh_strerror (rc));
        return 0;
    }
    s_pending_t *p = s_pending_add (self, *request, S_WAIT_JOIN, index, term);
    p->uri = strdup (uri);
    log_info ("raft: adding peer=%" PRIu64 " at %s as a learner, index=%" PRIu64, peer, uri,
              index);
    return 0;
}

//  §5 / Qdrant's POST /cluster/recover: the leader compacts its log now and
//  sends the asking follower that snapshot, which resets its state machine.
static int
s_on_recover (s_actor_t *self, envelope_t **request)
{
    if (!self->cluster) {
        s_reply_error (self, *request, -SH_EINVAL, "Bad request: Distributed mode disabled");
        return 0;
    }
    json_t *json = envelope_json (*request);
    json_t *peer_json = json_object_get (json, "peer_id");
    uint64_t peer = s_json_u64 (json, "peer_id");
    if (peer_json && !json_is_null (peer_json) && !peer) {
        s_reply_error (self, *request, -SH_EINVAL,
                       "Wrong input: raft_recover \"peer_id\" must be a positive integer");
        return 0;
    }
    if (rcore_role (self->core) != RCORE_LEADER) {
        if (s_is_forwarded (*request)) {
            s_reply_error (self, *request, -SH_ENOLEADER,
                           "Service unavailable: peer %" PRIu64 " is not the consensus "
                           "leader", self->peer_id);
            return 0;
        }
        if (!peer)
            json_object_set_new (json, "peer_id", json_integer ((json_int_t) self->peer_id));
        s_forward_queue (self, request, 0, NULL);
        return 0;
    }
    if (!peer || peer == self->peer_id) {
        //  The leader's state is the consensus: nothing to recover.
        s_reply_json (self, *request, json_pack ("{sb}", "result", 1));
        return 0;
    }
    if (!s_is_member (self, peer)) {
        s_reply_error (self, *request, -SH_ENOTFOUND, "Not found: Peer %" PRIu64
                       " does not exist", peer);
        return 0;
    }
    int rc = s_compact (self, true);
    if (rc == 0)
        rc = rcore_send_snapshot (self->core, peer);
    if (rc) {
        s_reply_error (self, *request, rc == -SH_EINVAL ? -SH_EUNAVAIL : rc,
                       "Service unavailable: no consensus snapshot to send to peer %" PRIu64
                       ": %s", peer, sh_strerror (rc));
        return 0;
    }
    log_info ("raft: sending peer=%" PRIu64 " a recovery snapshot at index=%" PRIu64, peer,
              rcore_snapshot (self->core)->index);
    s_reply_json (self, *request, json_pack ("{sb}", "result", 1));
    return 0;
}

static const s_handler_t s_handlers [MSG_TYPE_COUNT] = {
    [MSG_META_GET] = { "meta_get", s_on_get },
    [MSG_META_PROPOSE] = { "meta_propose", s_on_propose },
    [MSG_RAFT_MESSAGE] = { "raft_message", s_on_raft_message },
    [MSG_RAFT_JOIN] = { "raft_join", s_on_join },
    [MSG_RAFT_RECOVER] = { "raft_recover", s_on_recover },
};

//  Serves one request (taken, or kept by its handler).
static void
s_handle (s_actor_t *self, envelope_t **request)
{
    uint16_t type = envelope_type (*request);
    if (type >= MSG_TYPE_COUNT || !s_handlers [type].fn) {
        log_warn ("raft: unexpected message type=%u rid=%" PRIu64, type,
                  envelope_request_id (*request));
        s_reply_error (self, *request, -SH_EPROTO, "raft actor does not serve this message");
    }
    else {
        if (type != MSG_RAFT_MESSAGE)
            log_trace ("raft: %s rid=%" PRIu64, s_handlers [type].name,
                       envelope_request_id (*request));
        s_handlers [type].fn (self, request);
    }
    envelope_destroy (request);
}

//  Answers a message that could not be decoded, naming the request if its
//  header was readable, so the client is not left waiting.
static void
s_reply_malformed (s_actor_t *self, zframe_t **routing, zframe_t *head)
{
    uint16_t type = MSG_NONE;
    uint64_t rid = 0;
    //  What cannot be read is answered as type none, request 0.
    if (!head || envelope_peek_request (zframe_data (head), zframe_size (head), &type, &rid,
                                        NULL)) {
        type = MSG_NONE;
        rid = 0;
    }
    if (type == MSG_RAFT_MESSAGE)
        return;                         //  one-way: nobody waits for an answer
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
        s_bad_input (self, "a message without routing id or header", -SH_EPROTO);
        return;
    }
    //  Kept aside in case the envelope is malformed and must be answered.
    zframe_t *routing = zframe_dup (zmsg_first (msg));
    zframe_t *head = zframe_dup (zmsg_next (msg));
    envelope_t *request = NULL;
    int rc = envelope_decode (&msg, true, &request);
    if (rc) {
        s_bad_input (self, "a malformed envelope", rc);
        s_reply_malformed (self, &routing, head);
    }
    zframe_destroy (&head);
    zframe_destroy (&routing);
    if (rc)
        return;
    if (envelope_is_reply (request)) {
        log_warn ("raft: dropped a reply it did not ask for: type=%s rid=%" PRIu64,
                  msg_type_name (envelope_type (request)), envelope_request_id (request));
        envelope_destroy (&request);
        return;
    }
    s_handle (self, &request);
}

//  --------------------------------------------------------------------------
//  Joining, and telling the cluster this peer's new --uri

static void
s_send_join (s_actor_t *self, uint64_t dst, const char *uri)
{
    self->join_deadline = envelope_now_ms () + S_JOIN_ATTEMPT_MS;
    envelope_t *env = envelope_new (MSG_RAFT_JOIN, ++self->next_rid, self->join_deadline);
    json_t *json = json_pack ("{sIsi}", "peer_id", (json_int_t) self->peer_id, "p2p_port",
                              self->p2p_port);
    json_object_set_new (json, "uri", self->uri_given ? json_string (self->uri)
                                                       : json_null ());
    //  "fresh": this peer holds no consensus state (it joins, or rejoins
    //  after --reinit), as opposed to a member telling its new --uri.
    if (self->bootstrap)
        json_object_set_new (json, "fresh", json_true ());
    envelope_set_json (env, json);
    uint64_t rid = self->next_rid;
    int rc = s_p2p_request (self, dst, uri, &env);
    if (rc) {
        log_info ("raft: cannot send a join request (%s), retrying", sh_strerror (rc));
        self->join_at = zclock_mono () + S_JOIN_RETRY_MS;
        return;
    }
    self->join_rid = rid;
}

static void
s_pump_join (s_actor_t *self)
{
    if (!self->dealer)
        return;
    int64_t now = zclock_mono ();
    if (self->join_rid && envelope_now_ms () > self->join_deadline + S_JOIN_RETRY_MS) {
        self->join_rid = 0;             //  lost: ask again
        self->join_at = now;
    }
    if (self->bootstrap) {
        if (s_is_member (self, self->peer_id)) {
            //  The log made us a member (the reply may have been lost).
            log_info ("raft: joined the cluster (this peer is in the configuration)");
            free (self->bootstrap);
            self->bootstrap = NULL;
            self->join_rid = 0;
            return;
        }
        if (!self->join_rid && now >= self->join_at) {
            log_info ("raft: asking %s to join the cluster as peer=%" PRIu64,
                      self->bootstrap, self->peer_id);
            s_send_join (self, 0, self->bootstrap);
        }
        return;
    }
    //  A member started with another --uri: the leader records it (a join of
    //  a member that changes only its uri).
    uint64_t leader = rcore_leader (self->core);
    if (!self->uri_given || self->join_rid || now < self->uri_check_at || !leader
        || leader == self->peer_id || !self->member
        || rcore_applied (self->core) < rcore_commit (self->core))
        return;
    self->uri_check_at = now + S_URI_CHECK_MS;
    const char *recorded = meta_peer_uri (self->meta, self->peer_id);
    if (recorded && strcmp (recorded, self->uri) == 0)
        return;
    log_info ("raft: the cluster records this peer at %s, asking leader=%" PRIu64
              " to record %s", recorded ? recorded : "no address", leader, self->uri);
    s_send_join (self, leader, NULL);
}

static void
s_on_join_reply (s_actor_t *self, envelope_t *reply)
{
    self->join_rid = 0;
    int status = envelope_status (reply);
    if (status) {
        log_info ("raft: join %s refused: %s; retrying",
                  self->bootstrap ? "through the bootstrap peer" : "(uri update)",
                  envelope_error (reply));
        self->join_at = zclock_mono () + S_JOIN_RETRY_MS;
        return;
    }
    json_t *json = envelope_json (reply);
    log_info ("raft: %s: leader=%" PRIu64 " records this peer at %s",
              self->bootstrap ? "joined the cluster" : "uri recorded",
              s_json_u64 (json, "peer_id"),
              json_string_value (json_object_get (json, "uri"))
              ? json_string_value (json_object_get (json, "uri")) : "?");
    free (self->bootstrap);
    self->bootstrap = NULL;
}

//  One message from the p2p actor: [route reply][envelope reply].
static void
s_on_p2p (s_actor_t *self)
{
    zmsg_t *msg = zmsg_recv (self->dealer);
    if (!msg)
        return;
    zframe_t *head = zmsg_pop (msg);
    route_t route;
    int rc = head ? route_decode (zframe_data (head), zframe_size (head), &route) : -SH_EPROTO;
    zframe_destroy (&head);
    if (rc == 0 && route.kind != ROUTE_REPLY)
        rc = -SH_EPROTO;
    envelope_t *reply = NULL;
    if (rc == 0)
        rc = envelope_decode (&msg, false, &reply);
    zmsg_destroy (&msg);
    if (rc == 0 && !envelope_is_reply (reply))
        rc = -SH_EPROTO;
    if (rc) {
        s_bad_input (self, "a malformed message from the p2p actor", rc);
        envelope_destroy (&reply);
        return;
    }
    uint64_t rid = envelope_request_id (reply);
    if (rid && rid == self->join_rid)
        s_on_join_reply (self, reply);
    else {
        size_t i = 0;
        while (i < self->n_forwards
               && !(self->forwards [i].state == S_FWD_SENT && self->forwards [i].rid == rid))
            i++;
        if (i < self->n_forwards)
            s_on_forward_reply (self, i, reply);
        else
            log_debug ("raft: dropped a late reply rid=%" PRIu64 " type=%s", rid,
                       msg_type_name (envelope_type (reply)));
    }
    envelope_destroy (&reply);
}

//  --------------------------------------------------------------------------
//  Subscribers

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
        if (e->type == RCORE_ENTRY_CONF) {
            rc = meta_apply_conf (self->meta, e->index, e->data, e->len, err, sizeof err);
            if (rc)
                log_error ("raft: conf entry index=%" PRIu64 " not understood: %s", e->index,
                           err);
            else {
                log_info ("raft: applied conf entry index=%" PRIu64 ": %.*s", e->index,
                          (int) (e->len < 300 ? e->len : 300), (const char *) e->data);
                result = json_true ();
            }
        }
        else
            meta_skip (self->meta, e->index);
        s_answer (self, e, rc, result, err);
        json_decref (result);
        self->publish_due = true;
    }
}

static int
s_install_snapshot (s_actor_t *self, const rcore_snapshot_t *snap)
{
    if (meta_load (self->meta, snap->data, snap->len)) {
        log_error ("raft: snapshot at index=%" PRIu64 " does not hold a state", snap->index);
        return -SH_EIO;
    }
    self->publish_due = true;
    log_info ("raft: installed snapshot index=%" PRIu64 " term=%" PRIu64 " voters=%zu "
              "learners=%zu", snap->index, snap->term, snap->conf.n_voters,
              snap->conf.n_learners);
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
    uint64_t leader = rcore_leader (self->core);
    uint64_t term = rcore_term (self->core);
    int role = (int) rcore_role (self->core);
    uint64_t sig = s_conf_signature (self);
    if (leader != self->last_leader || term != self->last_term || role != self->last_role) {
        log_info ("raft: term=%" PRIu64 " leader=%" PRIu64 " role=%s", term, leader,
                  rcore_role_name (role));
        self->last_leader = leader;
        self->last_term = term;
        self->last_role = role;
        self->publish_due = true;       //  subscribers see the new leader
    }
    if (sig != self->last_conf_sig) {
        self->last_conf_sig = sig;
        self->publish_due = true;
        bool member = s_is_member (self, self->peer_id);
        if (self->member && !member)
            log_warn ("raft: this peer was removed from the consensus: it no longer takes "
                      "part (start it with --bootstrap and --reinit to join again)");
        self->member = member;
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

//  --------------------------------------------------------------------------
//  Leader duties

//  §4.2.1: a learner that has caught up becomes a voter, one at a time
//  (rcore refuses a second change while one is uncommitted). Checked every
//  turn: until then a cluster that lost one voter may have no majority.
//  True if a learner was waiting to be promoted.
static bool
s_promote (s_actor_t *self)
{
    if (!self->cluster || rcore_role (self->core) != RCORE_LEADER)
        return false;
    rcore_conf_t conf;
    rcore_conf (self->core, &conf);
    uint64_t candidate = 0;
    for (size_t i = 0; i < conf.n_learners && !candidate; i++)
        if (rcore_caught_up (self->core, conf.learners [i], S_PROMOTE_LAG))
            candidate = conf.learners [i];
    if (!candidate)
        return false;
    uint64_t index = 0;
    if (rcore_propose_conf (self->core, RCORE_CONF_PROMOTE, candidate, NULL, &index, NULL)
        == 0)
        log_info ("raft: promoting learner peer=%" PRIu64 " to voter, index=%" PRIu64,
                  candidate, index);
    return true;
}

//  Whether the configuration in effect is committed (no change in flight).
static bool
s_conf_settled (s_actor_t *self)
{
    rcore_conf_t latest, committed;
    rcore_conf (self->core, &latest);
    if (rcore_conf_at (self->core, rcore_commit (self->core), &committed))
        return false;
    return latest.n_voters == committed.n_voters && latest.n_learners == committed.n_learners
        && (latest.n_voters == 0
            || memcmp (latest.voters, committed.voters,
                       latest.n_voters * sizeof (uint64_t)) == 0)
        && (latest.n_learners == 0
            || memcmp (latest.learners, committed.learners,
                       latest.n_learners * sizeof (uint64_t)) == 0);
}

//  Once per tick: this peer's own address in the replicated peers map,
//  missing (a new cluster) or changed by --uri.
static void
s_lead (s_actor_t *self)
{
    if (!self->cluster || rcore_role (self->core) != RCORE_LEADER || self->stopping)
        return;
    const char *recorded = meta_peer_uri (self->meta, self->peer_id);
    bool wanted = recorded ? (self->uri_given && strcmp (recorded, self->uri) != 0) : true;
    bool in_flight = self->set_peer_index > meta_applied (self->meta)
                  && self->set_peer_term == rcore_term (self->core);
    if (!wanted || in_flight)
        return;
    json_t *op = json_pack ("{sssIss}", "type", "set_peer", "peer_id",
                            (json_int_t) self->peer_id, "uri", self->uri);
    char *text = json_dumps (op, JSON_COMPACT);
    json_decref (op);
    uint64_t index = 0, term = 0;
    if (rcore_propose (self->core, RCORE_ENTRY_NORMAL, text, strlen (text), &index, &term)
        == 0) {
        self->set_peer_index = index;
        self->set_peer_term = term;
        log_info ("raft: recording this peer's uri %s, index=%" PRIu64, self->uri, index);
    }
    free (text);
}

//  SIGTERM on a leader (§3.10): first the caught-up learners become voters
//  (a cluster of two voters and a learner would otherwise be left with no
//  majority), then leadership goes to the most up-to-date voter, so the
//  cluster does not wait an election timeout for a new leader. Gives up at
//  stop_by. True once this actor may exit.
static bool
s_stop_step (s_actor_t *self)
{
    int64_t now = zclock_mono ();
    if (!self->cluster || rcore_role (self->core) != RCORE_LEADER || now >= self->stop_by)
        return true;
    if (rcore_transferee (self->core))
        return false;                   //  handing over: wait for the new leader
    //  Promotions may take the first half of the time left.
    if (now < self->stop_by - S_SHUTDOWN_MAX_MS / 2
        && (s_promote (self) || !s_conf_settled (self)))
        return false;
    rcore_conf_t conf;
    rcore_conf (self->core, &conf);
    uint64_t target = 0, best = 0;
    for (size_t i = 0; i < conf.n_voters; i++) {
        uint64_t id = conf.voters [i];
        if (id == self->peer_id)
            continue;
        uint64_t match = rcore_match (self->core, id);
        if (!target || match > best) {
            target = id;
            best = match;
        }
    }
    if (!target || rcore_transfer_leader (self->core, target))
        return true;
    log_info ("raft: stopping: transferring leadership to peer=%" PRIu64 " (match=%" PRIu64
              ")", target, best);
    return false;
}

//  --------------------------------------------------------------------------
//  Setup

//  This peer's uri (see the file comment); the record is consulted later.
static void
s_own_uri (s_actor_t *self, const config_t *config)
{
    json_t *run = json_object_get (config->tree, "run");
    const char *uri = json_string_value (json_object_get (run, "uri"));
    if (config->cluster_enabled && uri && *uri && strlen (uri) <= META_MAX_URI) {
        snprintf (self->uri, sizeof self->uri, "%s", uri);
        self->uri_given = true;
        return;
    }
    if (config->cluster_enabled && uri && *uri)
        log_warn ("raft: --uri longer than %d bytes ignored", META_MAX_URI);
    const char *host = config->host;
    if (!config->cluster_enabled || !host || !*host || strcmp (host, "0.0.0.0") == 0
        || strcmp (host, "::") == 0 || strcmp (host, "[::]") == 0)
        host = "127.0.0.1";
    s_host_uri (self->uri, sizeof self->uri, host, config->p2p_port);
}

//  Deletes dir/consensus.db and its WAL files.
static int
s_remove_db_files (const char *dir)
{
    const char *suffixes [] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes [0]; i++) {
        char path [PATHS_MAX + 64];
        snprintf (path, sizeof path, "%s/consensus.db%s", dir, suffixes [i]);
        if (unlink (path) && errno != ENOENT) {
            log_error ("raft: cannot remove %s: %s", path, strerror (errno));
            return -SH_EIO;
        }
    }
    return 0;
}

//  A core from what the store holds.
static int
s_core_open (s_actor_t *self)
{
    rcore_storage_t stored;
    int rc = raft_store_load (self->store, &stored);
    if (rc)
        return rc;
    bool fresh = stored.snapshot.index == 0 && stored.n_entries == 0;
    //  The initial voters count only while storage holds no configuration.
    //  Then this peer is the single voter if it founds the cluster (fresh,
    //  no bootstrap peer) or founded it earlier (only a voter votes for
    //  itself, and with no configuration stored it was the only one); a
    //  joining peer has none and waits for the leader to reach it.
    bool founder = !self->cluster || (fresh ? !self->bootstrap
                                            : stored.hard_state.vote == self->peer_id);
    rcore_config_t rconfig;
    rcore_config_defaults (&rconfig);
    rconfig.id = self->peer_id;
    rconfig.voters = founder ? &self->peer_id : NULL;
    rconfig.n_voters = founder ? 1 : 0;
    rconfig.seed = self->peer_id ^ (uint64_t) zclock_usecs () ^ ((uint64_t) getpid () << 32);
    rconfig.applied = stored.snapshot.index;
    self->core = rcore_new (&rconfig, &stored);
    if (!self->core) {
        log_error ("raft: the log in %s is not consistent (term=%" PRIu64 " commit=%" PRIu64
                   " entries=%zu snapshot=%" PRIu64 ")", self->raft_dir,
                   stored.hard_state.term, stored.hard_state.commit, stored.n_entries,
                   stored.snapshot.index);
        return -SH_EIO;
    }
    log_info ("raft: loaded term=%" PRIu64 " commit=%" PRIu64 " entries=%zu snapshot=%" PRIu64
              "%s", stored.hard_state.term, stored.hard_state.commit, stored.n_entries,
              stored.snapshot.index, fresh ? " (fresh)" : "");
    return 0;
}

static int
s_open (s_actor_t *self, const config_t *config)
{
    char raft_ep [PATHS_MAX], meta_ep [PATHS_MAX], ipc [PATHS_MAX], p2p_ep [PATHS_MAX];
    const char *storage = config->storage_path ? config->storage_path : "./storage";
    snprintf (self->storage, sizeof self->storage, "%s", storage);
    if (paths_raft_dir (storage, self->raft_dir) || paths_raft_endpoint (storage, raft_ep)
        || paths_meta_endpoint (storage, meta_ep) || paths_ipc_dir (storage, ipc)
        || paths_p2p_endpoint (storage, p2p_ep)) {
        log_error ("raft: storage path too long: %s", storage);
        return -SH_EINVAL;
    }
    if (paths_mkdirs (self->raft_dir) || paths_mkdirs (ipc)) {
        log_error ("raft: cannot create %s or %s", self->raft_dir, ipc);
        return -SH_EIO;
    }
    if (self->cluster && self->reinit && self->bootstrap) {
        //  Qdrant's --reinit with a bootstrap peer: forget the consensus
        //  state (the peer id stays, the supervisor owns it) and join again.
        log_info ("raft: --reinit: dropping the local consensus state to join through %s",
                  self->bootstrap);
        int rc = s_remove_db_files (self->raft_dir);
        if (rc)
            return rc;
    }
    int rc = raft_store_open (self->raft_dir, &self->store);
    if (rc)
        return rc;
    rcore_storage_t stored;
    rc = raft_store_load (self->store, &stored);
    if (rc)
        return rc;
    bool fresh = stored.snapshot.index == 0 && stored.n_entries == 0;

    //  The state machine starts from the latest snapshot; the committed log
    //  after it is re-applied through the first ready cycles.
    self->meta = meta_new ();
    if (stored.snapshot.index && meta_load (self->meta, stored.snapshot.data,
                                            stored.snapshot.len)) {
        log_error ("raft: the snapshot at index=%" PRIu64 " in %s is damaged",
                   stored.snapshot.index, self->raft_dir);
        return -SH_EIO;
    }
    if (!self->cluster)
        meta_set_peer (self->meta, self->peer_id, self->uri);
    if (self->bootstrap && !fresh) {
        log_info ("raft: --bootstrap %s ignored: this peer's storage already holds its "
                  "consensus state", self->bootstrap);
        free (self->bootstrap);
        self->bootstrap = NULL;
    }
    if (self->bootstrap) {
        char endpoint [ROUTE_MAX_URI + 16];
        if (strlen (self->bootstrap) > ROUTE_MAX_URI
            || route_uri_endpoint (self->bootstrap, endpoint, sizeof endpoint)) {
            log_error ("raft: --bootstrap %.100s is not a peer uri (http://host:port); not "
                       "joining", self->bootstrap);
            free (self->bootstrap);
            self->bootstrap = NULL;
        }
    }
    rc = s_core_open (self);
    if (rc)
        return rc;
    self->member = s_is_member (self, self->peer_id);
    self->last_conf_sig = s_conf_signature (self);

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
    if (self->cluster) {
        //  To the p2p actor, which may start after us (zmq connects later).
        //  Sends never block: a full queue drops (Raft retries).
        self->dealer = zsock_new (ZMQ_DEALER);
        assert (self->dealer);
        zsock_set_linger (self->dealer, 0);
        zsock_set_sndtimeo (self->dealer, 0);
        if (zsock_connect (self->dealer, "%s", p2p_ep) != 0) {
            log_error ("raft: cannot connect %s: %s", p2p_ep, zmq_strerror (zmq_errno ()));
            return -SH_EIO;
        }
        zpoller_add (self->poller, self->dealer);
    }
    //  SIGTERM sets zsys_interrupted; the loop sees it and may keep running
    //  a little to hand leadership over.
    zpoller_set_nonstop (self->poller, true);
    return 0;
}

//  Qdrant's --reinit without a bootstrap peer: this peer becomes the single
//  voter of a new consensus over its current state. A snapshot at the
//  applied index, whose configuration is {voters: [self]} and whose peers
//  map holds only this peer, replaces the whole log (uncommitted entries
//  too: they may name the old cluster's members). It is written to a new
//  database beside the old one that then replaces it with one rename, so a
//  crash leaves either the old state or the new one.
static int
s_reinit_alone (s_actor_t *self)
{
    uint64_t applied = rcore_applied (self->core);
    char tmp_dir [PATHS_MAX + 16];
    snprintf (tmp_dir, sizeof tmp_dir, "%s/reinit", self->raft_dir);
    int rc = paths_mkdirs (tmp_dir) ? -SH_EIO : s_remove_db_files (tmp_dir);
    raft_store_t *fresh = NULL;
    if (rc == 0)
        rc = raft_store_open (tmp_dir, &fresh);
    if (rc == 0 && applied) {
        const rcore_entry_t *entry = rcore_entry (self->core, applied);
        uint64_t term = entry ? entry->term : rcore_snapshot (self->core)->term;
        char uri [META_MAX_URI + 1];
        const char *recorded = meta_peer_uri (self->meta, self->peer_id);
        snprintf (uri, sizeof uri, "%s", self->uri_given || !recorded ? self->uri : recorded);
        meta_reset_peers (self->meta, self->peer_id, uri);
        size_t len = 0;
        char *dump = meta_dump (self->meta, &len);
        rcore_snapshot_t snapshot;
        memset (&snapshot, 0, sizeof snapshot);
        snapshot.index = applied;
        snapshot.term = term;
        snapshot.data = (uint8_t *) dump;
        snapshot.len = len;
        snapshot.conf.voters = &self->peer_id;
        snapshot.conf.n_voters = 1;
        //  A new term in which this peer has voted for itself: the old
        //  cluster's votes and leaders are history.
        rcore_hard_state_t hs = { .term = rcore_term (self->core) + 1,
                                  .vote = self->peer_id, .commit = applied };
        rc = raft_store_install_snapshot (fresh, &snapshot);
        if (rc == 0)
            rc = raft_store_save (fresh, &hs, NULL, 0);
        free (dump);
    }
    raft_store_destroy (&fresh);
    char from [PATHS_MAX + 64], to [PATHS_MAX + 64];
    snprintf (from, sizeof from, "%s/consensus.db-wal", tmp_dir);
    if (rc == 0 && access (from, F_OK) == 0) {
        log_error ("raft: --reinit: %s was not checkpointed; keeping the old state", from);
        rc = -SH_EIO;
    }
    if (rc) {
        log_error ("raft: --reinit failed (%s); the consensus state is unchanged",
                   sh_strerror (rc));
        return rc;
    }
    rcore_destroy (&self->core);
    raft_store_destroy (&self->store);
    snprintf (from, sizeof from, "%s/consensus.db", tmp_dir);
    snprintf (to, sizeof to, "%s/consensus.db", self->raft_dir);
    //  The old database's WAL must not be replayed into the new one.
    rc = s_remove_db_files (self->raft_dir);
    if (rc == 0 && rename (from, to)) {
        log_error ("raft: --reinit: cannot rename %s to %s: %s", from, to, strerror (errno));
        rc = -SH_EIO;
    }
    rmdir (tmp_dir);
    if (rc == 0)
        rc = raft_store_open (self->raft_dir, &self->store);
    if (rc == 0)
        rc = s_core_open (self);
    if (rc == 0)
        log_info ("raft: --reinit: this peer is the single voter of a new consensus over its "
                  "state at index=%" PRIu64, applied);
    self->publish_due = true;
    return rc;
}

static void
s_close (s_actor_t *self)
{
    for (size_t i = 0; i < self->n_pending; i++) {
        envelope_destroy (&self->pending [i].reply);
        free (self->pending [i].uri);
    }
    free (self->pending);
    for (size_t i = 0; i < self->n_forwards; i++)
        s_forward_free (&self->forwards [i]);
    free (self->forwards);
    free (self->bootstrap);
    zpoller_destroy (&self->poller);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    zsock_destroy (&self->dealer);
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
    self->cluster = config->cluster_enabled;
    self->p2p_port = config->p2p_port;
    self->tick_ms = config->tick_period_ms > 0 ? config->tick_period_ms : 100;
    self->compact_entries = config->compact_wal_entries > 0
                          ? (uint64_t) config->compact_wal_entries : 0;
    self->last_role = -1;
    json_t *run = json_object_get (config->tree, "run");
    self->reinit = json_is_true (json_object_get (run, "reinit"));
    const char *bootstrap = json_string_value (json_object_get (run, "bootstrap"));
    if (bootstrap && *bootstrap) {
        if (self->cluster)
            self->bootstrap = strdup (bootstrap);
        else
            log_warn ("raft: --bootstrap ignored: cluster mode is disabled");
    }
    s_own_uri (self, config);
    bool reinit_with_bootstrap = self->reinit && self->bootstrap;
    int rc = s_open (self, config);

    //  Replay what is committed before serving anyone.
    if (rc == 0)
        rc = s_flush (self);
    if (rc == 0 && self->reinit && !reinit_with_bootstrap)
        rc = s_reinit_alone (self);
    if (rc == 0)
        rc = s_flush (self);
    if (rc) {
        s_close (self);
        return 1;
    }
    self->next_tick = zclock_mono ();
    log_info ("raft: serving peer_id=%" PRIu64 " tick=%" PRId64 "ms applied=%" PRIu64
              " cluster=%s uri=%s%s", peer_id, self->tick_ms, meta_applied (self->meta),
              self->cluster ? "yes" : "no", self->uri, self->bootstrap ? " (joining)" : "");

    while (true) {
        if (zsys_interrupted && !self->stopping) {
            self->stopping = true;
            self->stop_by = zclock_mono () + S_SHUTDOWN_MAX_MS;
        }
        if (self->stopping && s_stop_step (self))
            break;                      //  SIGTERM: leave and clean up
        int64_t now = zclock_mono ();
        int64_t wait = self->next_tick - now;
        if (self->next_publish - now < wait)
            wait = self->next_publish - now;
        if (wait < 0)
            wait = 0;
        void *which = zpoller_wait (self->poller, (int) wait);
        if (which == self->router)
            for (int n = 0; n < S_BATCH && (zsock_events (self->router) & ZMQ_POLLIN); n++)
                s_dispatch (self);
        if (self->dealer && (zsock_events (self->dealer) & ZMQ_POLLIN))
            for (int n = 0; n < S_BATCH && (zsock_events (self->dealer) & ZMQ_POLLIN); n++)
                s_on_p2p (self);
        if (which == self->pub && s_subscribed (self))
            self->publish_due = true;   //  publish below, this turn
        now = zclock_mono ();
        if (now >= self->next_tick) {
            rcore_tick (self->core);
            s_lead (self);
            self->next_tick += self->tick_ms;
            if (self->next_tick <= now)
                self->next_tick = now + self->tick_ms;      //  fell behind: don't burst
        }
        if (s_flush (self) || s_compact (self, false)) {
            rc = -SH_EIO;
            break;                      //  storage failed: exit, the supervisor restarts us
        }
        if (!self->stopping)
            s_promote (self);
        s_pump_join (self);
        s_pump_forwards (self);
        if (s_flush (self)) {           //  what serving held requests proposed
            rc = -SH_EIO;
            break;
        }
        s_expire_pending (self);
        if (self->publish_due || zclock_mono () >= self->next_publish)
            s_publish (self);
    }
    log_info ("raft: %s", rc ? "stopping on a storage error" : "stopping");
    s_close (self);
    return rc ? 1 : 0;
}
