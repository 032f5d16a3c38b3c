/*  gw_client: one HTTP connection's sockets to the other actors, and calls
    with deadlines over them.

    A gw_conn_t holds a DEALER to the raft actor, one to the p2p actor (for
    replicas on other peers: [route request, dst peer, actor shard, uid,
    shard][envelope] out, [route reply][envelope] back, proto/route.h) and a
    small cache of DEALERs to local shard actors keyed by (collection uid,
    shard id), each made on first use. They are connected with a 10 ms
    reconnect interval: a shard actor that the supervisor is still starting
    is reached as soon as it binds, and requests sent meanwhile wait in the
    socket's queue.

    A call to shards picks each shard's replicas from the metadata cache
    (gw_replicas.h) and keeps every request until its shard has answered, so
    that it can go elsewhere when the placement moves under it: a replica
    that answers "unavailable" (stopping, moved off its peer, its peer
    unreachable) or leaves the placement while asked is replaced by the one
    the metadata names next. Every point operation is idempotent (an upsert
    replaces the whole point, a delete or payload edit gives the same result
    twice), so a write sent again to the new owner is safe; an answer of
    "unavailable" means the old one did not apply it.

    Reads of a local replica (search, retrieve, scroll, count) go on the
    shard's direct socket instead when it has one (paths_shard_direct,
    proto/envelope.h): a unix stream connection per (uid, shard), cached
    like the DEALERs, on which the shard's worker thread reads the request
    and answers itself. That is one wake-up of the shard and one of this
    thread per read, where the DEALER costs the ZeroMQ I/O threads of both
    processes and the shard's main thread on the way in and out. A
    connection that cannot be made (the shard is starting, or older) or
    that breaks before the request is written falls back to the DEALER; one
    that closes while a read waits on it is an "unavailable" answer.

    Requests for replicas on other peers go to the p2p actor on its stream
    socket when it has one (route.h): one unix stream connection per
    gw_conn_t, on which a call's requests are written together and replies
    come back in any order, matched by request id; the DEALER to the p2p
    actor carries them while that connection cannot be made, and carries
    again the requests of one that breaks (the p2p actor restarted).

    Calls are numbered per connection (the request id of every envelope is
    re-stamped here), so a reply that arrives after its call gave up is
    recognised by its id and dropped. A socket whose call timed out is also
    closed (linger 0), so requests still queued in it are never delivered
    late and its stale replies never read; it is reopened on next use.

    The struct is created on MHD's listening thread but its sockets are made,
    used and closed only on the connection's own thread, except the final
    destroy, which MHD calls after it has joined that thread.
*/
#include "actors/gateway/gw.h"
#include "actors/gateway/gw_replicas.h"
#include "common/log.h"
#include "common/paths.h"
#include "proto/route.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

//  Shard sockets kept per connection before the least recently used go.
#define S_SHARD_CACHE 64
//  Deadline used when a request carries none (ms), as the default ?timeout.
#define S_DEFAULT_DEADLINE_MS 60000
//  Reconnect interval of actor sockets (ms).
#define S_RECONNECT_MS 10
//  Send buffer asked for on a direct read connection (bytes).
#define S_DIRECT_SNDBUF (1024 * 1024)
//  The p2p actor's stream socket, when it could not be connected, is tried
//  again after this long (ms); the DEALER carries remote requests meanwhile.
#define S_STREAM_RETRY_MS 1000

//  What a connection keeps for one local shard actor.
typedef struct {
    uint64_t uid;                       //  collection uid
    uint32_t shard;                     //  shard id
    zsock_t *sock;                      //  DEALER to its actor, or NULL
    int fd;                             //  direct read connection, or -1
    uint64_t used;                      //  conn->clock at last use (LRU)
} s_shard_conn_t;

struct _gw_conn_t {
    gw_t *gw;                           //  for the storage path (endpoints)
    zsock_t *raft;                      //  DEALER to the raft actor, or NULL
    zsock_t *p2p;                       //  DEALER to the p2p actor (remote replicas)
    s_shard_conn_t *shards;             //  local shard actors' sockets (LRU)
    size_t n_shards;                    //  entries in use
    size_t cap_shards;                  //  entries allocated
    uint64_t next_id;                   //  next request id on this connection
    uint64_t clock;                     //  counts calls, for LRU
    int p2p_fd;                         //  stream connection to the p2p actor, or -1
    route_stream_t *p2p_stream;         //  its buffers, while it is open
    uint64_t p2p_retry;                 //  unix ms before which it is not tried again
};

gw_conn_t *
gw_conn_new (gw_t *gw)
{
    gw_conn_t *self = (gw_conn_t *) zmalloc (sizeof (gw_conn_t));
    assert (self);
    self->gw = gw;
    self->next_id = 1;
    self->p2p_fd = -1;
    return self;
}

void
gw_conn_destroy (gw_conn_t **self_p)
{
    assert (self_p);
    gw_conn_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->raft);
    zsock_destroy (&self->p2p);
    for (size_t i = 0; i < self->n_shards; i++) {
        zsock_destroy (&self->shards [i].sock);
        if (self->shards [i].fd >= 0)
            close (self->shards [i].fd);
    }
    free (self->shards);
    if (self->p2p_fd >= 0)
        close (self->p2p_fd);
    route_stream_destroy (&self->p2p_stream);
    free (self);
    *self_p = NULL;
}

static zsock_t *
s_dealer (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_reconnect_ivl (sock, S_RECONNECT_MS);
    //  Never block a connection thread on a full queue: fail the send.
    zsock_set_sndtimeo (sock, 0);
    if (zsock_connect (sock, "%s", endpoint)) {
        log_warn ("gateway: cannot connect to %s", endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

static zsock_t *
s_raft_sock (gw_conn_t *self)
{
    if (!self->raft) {
        char endpoint [PATHS_MAX];
        if (paths_raft_endpoint (gw_config (self->gw)->storage_path, endpoint))
            return NULL;
        self->raft = s_dealer (endpoint);
    }
    return self->raft;
}

//  The entry of (uid, shard), made on first use. When the cache is full
//  the least recently used entry not used by the current call (used <
//  clock) goes, its sockets closed; when every one is in use it grows.
static s_shard_conn_t *
s_shard_conn (gw_conn_t *self, uint64_t uid, uint32_t shard)
{
    for (size_t i = 0; i < self->n_shards; i++)
        if (self->shards [i].uid == uid && self->shards [i].shard == shard) {
            self->shards [i].used = self->clock;
            return &self->shards [i];
        }
    if (self->n_shards >= S_SHARD_CACHE) {
        size_t victim = SIZE_MAX;
        for (size_t i = 0; i < self->n_shards; i++)
            if (self->shards [i].used < self->clock
                && (victim == SIZE_MAX || self->shards [i].used < self->shards [victim].used))
                victim = i;
        if (victim != SIZE_MAX) {
            zsock_destroy (&self->shards [victim].sock);
            if (self->shards [victim].fd >= 0)
                close (self->shards [victim].fd);
            self->shards [victim] = self->shards [--self->n_shards];
        }
    }
    if (self->n_shards == self->cap_shards) {
        self->cap_shards = self->cap_shards ? self->cap_shards * 2 : 8;
        self->shards = (s_shard_conn_t *) realloc (self->shards,
                                                   self->cap_shards * sizeof (s_shard_conn_t));
        assert (self->shards);
    }
    self->shards [self->n_shards] = (s_shard_conn_t) {
        .uid = uid, .shard = shard, .fd = -1, .used = self->clock
    };
    return &self->shards [self->n_shards++];
}

//  The DEALER to the actor of (uid, shard), connected on first use, or NULL.
static zsock_t *
s_shard_sock (gw_conn_t *self, uint64_t uid, uint32_t shard)
{
    s_shard_conn_t *entry = s_shard_conn (self, uid, shard);
    if (!entry->sock) {
        char endpoint [PATHS_MAX];
        if (paths_shard_endpoint (gw_config (self->gw)->storage_path, uid, shard, endpoint))
            return NULL;
        entry->sock = s_dealer (endpoint);
    }
    return entry->sock;
}

//  Closes a socket whose call timed out (see the file comment).
static void
s_drop_sock (gw_conn_t *self, zsock_t *sock)
{
    if (self->raft == sock) {
        zsock_destroy (&self->raft);
        return;
    }
    if (self->p2p == sock) {
        zsock_destroy (&self->p2p);
        return;
    }
    for (size_t i = 0; i < self->n_shards; i++)
        if (self->shards [i].sock == sock)
            zsock_destroy (&self->shards [i].sock);
}

//  The reads a shard serves on its direct socket (its workers' reads).
static bool
s_direct_type (int type)
{
    return type == MSG_SHARD_SEARCH || type == MSG_SHARD_RETRIEVE
        || type == MSG_SHARD_SCROLL || type == MSG_SHARD_COUNT;
}

//  A new connection to the direct socket of (uid, shard), or -1.
static int
s_direct_connect (gw_conn_t *self, uint64_t uid, uint32_t shard)
{
    char path [PATHS_MAX];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (!self->gw
        || paths_shard_direct (gw_config (self->gw)->storage_path, uid, shard, path)
        || strlen (path) >= sizeof addr.sun_path)
        return -1;
    strcpy (addr.sun_path, path);
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    //  A unix socket connects at once or not at all (no EINPROGRESS).
    if (connect (fd, (struct sockaddr *) &addr, sizeof addr)) {
        close (fd);
        return -1;
    }
    //  Room for a whole batch request (64 x 784-d is 200 KB), so that a
    //  call to several shards sends to each without waiting for a worker
    //  of the first to start reading (capped by net.core.wmem_max).
    int room = S_DIRECT_SNDBUF;
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    return fd;
}

//  The direct connection of (uid, shard), made if need be: its fd, or -1
//  when the shard has no direct socket (yet).
static int
s_direct_fd (gw_conn_t *self, uint64_t uid, uint32_t shard)
{
    s_shard_conn_t *entry = s_shard_conn (self, uid, shard);
    if (entry->fd < 0)
        entry->fd = s_direct_connect (self, uid, shard);
    return entry->fd;
}

//  Closes a direct connection (broken, or a read on it given up on, whose
//  late answer must never be taken for the next one's).
static void
s_direct_drop (gw_conn_t *self, int fd)
{
    for (size_t i = 0; i < self->n_shards; i++)
        if (self->shards [i].fd == fd) {
            close (fd);
            self->shards [i].fd = -1;
            return;
        }
}

static uint64_t
s_deadline_of (const envelope_t *request)
{
    uint64_t deadline = envelope_deadline (request);
    return deadline ? deadline : envelope_now_ms () + S_DEFAULT_DEADLINE_MS;
}

int
gw_call_raft (gw_conn_t *conn, envelope_t **request, envelope_t **reply)
{
    assert (request && reply);
    *reply = NULL;
    envelope_t *env = *request;
    *request = NULL;
    if (!env)
        return -SH_EINVAL;
    conn->clock++;
    zsock_t *sock = s_raft_sock (conn);
    if (!sock) {
        envelope_destroy (&env);
        return -SH_EUNAVAIL;
    }
    uint64_t id = conn->next_id++;
    uint64_t deadline = s_deadline_of (env);
    int type = envelope_type (env);
    envelope_set_request_id (env, id);
    if (envelope_send (&env, sock)) {
        log_debug ("gateway: req=%" PRIu64 " %s: send to raft failed", id,
                   msg_type_name (type));
        s_drop_sock (conn, sock);
        return -SH_EUNAVAIL;
    }
    while (true) {
        uint64_t now = envelope_now_ms ();
        if (now >= deadline)
            break;
        zmq_pollitem_t item = { zsock_resolve (sock), 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, (long) (deadline - now));
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (rc <= 0 || !(item.revents & ZMQ_POLLIN))
            continue;
        envelope_t *got = NULL;
        if (envelope_recv (sock, &got))
            continue;                   //  malformed: already logged and dropped
        if (envelope_request_id (got) != id || !envelope_is_reply (got)) {
            log_debug ("gateway: dropped stale reply req=%" PRIu64 " (waiting for %" PRIu64
                       ")", envelope_request_id (got), id);
            envelope_destroy (&got);
            continue;
        }
        *reply = got;
        return 0;
    }
    log_debug ("gateway: req=%" PRIu64 " %s: no reply from raft by the deadline", id,
               msg_type_name (type));
    s_drop_sock (conn, sock);
    return -SH_ETIMEDOUT;
}

//  ---------------------------------------------------------------------------
//  Calls to shard replicas (see the file comment)

//  How long a shard being moved whose replica answered -SH_EUNAVAIL
//  (stopping, moved off its peer) waits for the metadata to name another
//  replica before that answer stands (ms, within the request's deadline).
#define S_REROUTE_GRACE_MS 2000
//  How often a call in flight looks for a placement change (ms).
#define S_REROUTE_CHECK_MS 50
//  Re-sends of one shard's request, at most.
#define S_REROUTE_MAX 4
//  Replicas one shard's request goes to, at most (a write goes to each).
#define S_MAX_TARGETS 16

typedef enum { S_LEG_PENDING, S_LEG_DONE, S_LEG_ABANDONED } s_leg_state_t;

//  One request sent to one replica.
typedef struct {
    size_t slot;                        //  the shard request it carries
    uint64_t peer;                      //  the replica's peer
    bool remote;                        //  sent through the p2p actor
    zsock_t *sock;                      //  the socket it left on
    uint64_t id;                        //  its request id on this connection
    bool direct;                        //  sent on a direct connection (not sock)
    int fd;                             //  that connection, when direct
    bool stream;                        //  remote, sent on the p2p stream (not sock)
    bool deferred;                      //  local, sent once the remote ones are out
    s_leg_state_t state;                //  waiting, answered, or given up
    bool unanswered;                    //  given up while still waiting
    envelope_t *reply;                  //  the answer once in (owned)
} s_leg_t;

//  One shard's request of the call.
typedef struct {
    uint32_t shard;                     //  shard id
    bool write;                         //  to every writable replica
    bool routed;                        //  replicas chosen here (re-routable)
    uint64_t peer;                      //  !routed: the replica asked for
    envelope_t *request;                //  kept to (re)send, owned
    envelope_t *reply;                  //  the final answer, owned until handed out
    bool timed_out;                     //  reply made here at the deadline
    uint64_t wait_until;                //  unix ms a re-route is waited for, 0 = none
    envelope_t *unavail;                //  the -SH_EUNAVAIL answer waiting on, owned
    uint64_t unavail_peer;              //  who gave it
    uint64_t unavail_applied;           //  metadata index when it came
    int reroutes;                       //  re-sends so far
} s_slot_t;

typedef struct {
    gw_conn_t *conn;                    //  the connection
    uint64_t uid;                       //  collection uid
    uint64_t self_peer;                 //  this node's peer id
    json_t *state;                      //  metadata in use (ref), or NULL
    const json_t *coll;                 //  the collection in it, or NULL
    const char *name;                   //  its name, or NULL
    uint64_t applied;                   //  the metadata's applied index
    uint64_t deadline;                  //  unix ms: the whole fan-out's bound
    bool remote_first;                  //  first routing: local legs wait (deferred)
    s_slot_t *slots;                    //  one per request
    size_t n_slots;                     //  requests
    s_leg_t *legs;                      //  every send
    size_t n_legs;                      //  entries used
    size_t cap_legs;                    //  entries allocated
} s_call_t;

static zsock_t *
s_p2p_sock (gw_conn_t *self)
{
    if (!self->p2p) {
        char endpoint [PATHS_MAX];
        if (paths_p2p_endpoint (gw_config (self->gw)->storage_path, endpoint))
            return NULL;
        self->p2p = s_dealer (endpoint);
    }
    return self->p2p;
}

//  The stream connection to the p2p actor (route.h), connected if need be:
//  true when it is open.
static bool
s_p2p_stream (gw_conn_t *self)
{
    if (self->p2p_fd >= 0)
        return true;
    uint64_t now = envelope_now_ms ();
    if (!self->gw || now < self->p2p_retry)
        return false;
    self->p2p_retry = now + S_STREAM_RETRY_MS;
    char dir [PATHS_MAX];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (paths_ipc_dir (gw_config (self->gw)->storage_path, dir)
        || (size_t) snprintf (addr.sun_path, sizeof addr.sun_path, "%s/%s", dir,
                              ROUTE_STREAM_NAME) >= sizeof addr.sun_path)
        return false;
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    if (connect (fd, (struct sockaddr *) &addr, sizeof addr)) {
        log_debug ("gateway: no stream connection to the p2p actor (%s): its DEALER"
                   " carries remote requests", strerror (errno));
        close (fd);
        return false;
    }
    int room = S_DIRECT_SNDBUF;
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    self->p2p_fd = fd;
    self->p2p_stream = route_stream_new ();
    return true;
}

//  The metadata and the collection uid in it (by uid: a name may have been
//  reused since the caller looked it up).
static void
s_call_load (s_call_t *call)
{
    json_decref (call->state);
    call->state = call->conn->gw ? gw_meta_state (gw_meta (call->conn->gw)) : NULL;
    call->coll = NULL;
    call->name = NULL;
    call->applied = (uint64_t) json_integer_value (json_object_get (call->state, "applied"));
    const char *name;
    json_t *coll;
    json_object_foreach (json_object_get (call->state, "collections"), name, coll) {
        json_t *uid = json_object_get (coll, "uid");
        if (json_is_integer (uid) && (uint64_t) json_integer_value (uid) == call->uid) {
            call->coll = coll;
            call->name = name;
            break;
        }
    }
}

//  The applied index of the newest metadata, without keeping it.
static uint64_t
s_applied_now (s_call_t *call)
{
    if (!call->conn->gw)
        return call->applied;
    json_t *state = gw_meta_state (gw_meta (call->conn->gw));
    uint64_t applied = (uint64_t) json_integer_value (json_object_get (state, "applied"));
    json_decref (state);
    return applied;
}

//  A reply to slot's request made here: status and a message naming the
//  shard and its collection.
static envelope_t *
s_slot_error (s_slot_t *slot, int status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static envelope_t *
s_slot_error (s_slot_t *slot, int status, const char *fmt, ...)
{
    char text [768];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    envelope_t *reply = envelope_new_reply (slot->request, status);
    envelope_set_error (reply, status, "%s", text);
    return reply;
}

//  "shard 3 of collection `c`" into buf.
static const char *
s_shard_name (s_call_t *call, const s_slot_t *slot, char *buf, size_t size)
{
    if (call->name)
        snprintf (buf, size, "shard %" PRIu32 " of collection `%.200s`", slot->shard,
                  call->name);
    else
        snprintf (buf, size, "shard %" PRIu32 " of collection uid %" PRIu64, slot->shard,
                  call->uid);
    return buf;
}

//  An unavailable or timed-out answer from (or for) a replica, reworded to
//  name the shard and the peer, as the user sees it.
static envelope_t *
s_named_failure (s_call_t *call, s_slot_t *slot, uint64_t peer, envelope_t **reply_p)
{
    envelope_t *reply = *reply_p;
    *reply_p = NULL;
    int status = envelope_status (reply);
    char shard [300];
    s_shard_name (call, slot, shard, sizeof shard);
    envelope_t *named = status == -SH_ETIMEDOUT
        ? s_slot_error (slot, status, "Timeout error: %s on peer %" PRIu64 " did not "
                        "answer in time (%s)", shard, peer, envelope_error (reply))
        : s_slot_error (slot, status, "Service unavailable: %s on peer %" PRIu64
                        " cannot serve the request: %s", shard, peer, envelope_error (reply));
    envelope_destroy (&reply);
    return named;
}

//  Sends a local leg's request on the shard's direct connection when it is a
//  read the shard serves so and the connection is free (no other leg of
//  this call still owes an answer on it); true if it went.
static bool
s_direct_send (s_call_t *call, s_leg_t *leg)
{
    s_slot_t *slot = &call->slots [leg->slot];
    if (!s_direct_type (envelope_type (slot->request)))
        return false;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = s_direct_fd (call->conn, call->uid, slot->shard);
        if (fd < 0)
            return false;
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *other = &call->legs [k];
            if (other != leg && other->direct && other->fd == fd
                && (other->state == S_LEG_PENDING || other->unanswered))
                return false;
        }
        envelope_set_request_id (slot->request, leg->id);
        int rc = envelope_write_fd (slot->request, fd, call->deadline);
        if (rc == 0) {
            leg->direct = true;
            leg->fd = fd;
            return true;
        }
        //  A connection to an actor since restarted fails here: a fresh
        //  one is tried once, then the DEALER.
        s_direct_drop (call->conn, fd);
        if (rc == -SH_ETIMEDOUT)
            return false;
    }
    return false;
}

//  Sends slot's request to peer's replica; the leg is pending, and holds its
//  answer already (-SH_EUNAVAIL, no socket) when it could not be sent.
static void s_leg_put (s_call_t *call, s_leg_t *leg, bool stream);

static void
s_leg_send (s_call_t *call, size_t index, uint64_t peer)
{
    gw_conn_t *conn = call->conn;
    if (call->n_legs == call->cap_legs) {
        call->cap_legs = call->cap_legs ? call->cap_legs * 2 : 16;
        call->legs = (s_leg_t *) realloc (call->legs, call->cap_legs * sizeof (s_leg_t));
        assert (call->legs);
    }
    s_leg_t *leg = &call->legs [call->n_legs++];
    *leg = (s_leg_t) { .slot = index, .peer = peer, .remote = peer != call->self_peer,
                       .state = S_LEG_PENDING, .id = conn->next_id++, .fd = -1 };
    if (!leg->remote && call->remote_first) {
        leg->deferred = true;
        return;
    }
    if (!leg->remote && s_direct_send (call, leg))
        return;
    s_leg_put (call, leg, true);
}

//  Sends leg's request on its DEALER (a local shard's, or the p2p actor's),
//  or for a remote leg when stream is true on the p2p actor's stream if it
//  is open. A request that cannot be sent leaves its answer in the leg.
static void
s_leg_put (s_call_t *call, s_leg_t *leg, bool stream)
{
    s_slot_t *slot = &call->slots [leg->slot];
    gw_conn_t *conn = call->conn;
    uint64_t peer = leg->peer;
    leg->sock = leg->remote ? s_p2p_sock (conn) : s_shard_sock (conn, call->uid, slot->shard);
    int rc = -SH_EUNAVAIL;
    if (leg->sock) {
        envelope_set_request_id (slot->request, leg->id);
        zmsg_t *msg = envelope_encode (slot->request);
        if (leg->remote) {
            route_t route;
            memset (&route, 0, sizeof route);
            route.kind = ROUTE_REQUEST;
            route.actor = ROUTE_SHARD;
            route.dst = peer;
            route.uid = call->uid;
            route.shard = slot->shard;
            zframe_t *frame = route_encode (&route);
            assert (frame);                 //  no uri: always fits
            zmsg_prepend (msg, &frame);
            //  On the p2p actor's stream when it is open: written with
            //  the call's other requests before it waits (s_call_run).
            if (stream && s_p2p_stream (conn)
                && route_stream_queue (conn->p2p_stream, msg) == 0) {
                zmsg_destroy (&msg);
                leg->stream = true;
                leg->sock = NULL;
                return;
            }
        }
        rc = zmsg_send (&msg, leg->sock) == 0 ? 0 : -SH_EIO;
        zmsg_destroy (&msg);
    }
    if (rc) {
        log_debug ("gateway: req=%" PRIu64 " %s to shard %" PRIu64 "/%" PRIu32 " on peer %"
                   PRIu64 " not sent", leg->id, msg_type_name (envelope_type (slot->request)),
                   call->uid, slot->shard, peer);
        //  Answered at the top of the next turn (s_call_run), as if the
        //  replica had said so.
        leg->reply = envelope_new_reply (slot->request, -SH_EUNAVAIL);
        envelope_set_error (leg->reply, -SH_EUNAVAIL, "%s",
                            leg->remote ? "the p2p actor is not taking requests"
                                        : "the shard actor is not taking requests");
        leg->sock = NULL;
    }
}

//  Counts slot index's legs in state.
static size_t
s_legs_in (s_call_t *call, size_t index, s_leg_state_t state)
{
    size_t count = 0;
    for (size_t k = 0; k < call->n_legs; k++)
        count += call->legs [k].slot == index && call->legs [k].state == state;
    return count;
}

static bool
s_has_leg (s_call_t *call, size_t index, uint64_t peer)
{
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        if (leg->slot == index && leg->peer == peer && leg->state != S_LEG_ABANDONED)
            return true;
    }
    return false;
}

//  Gives the slot its final answer (taken).
static void
s_slot_finish (s_slot_t *slot, envelope_t *reply)
{
    assert (!slot->reply);
    slot->reply = reply;
    envelope_destroy (&slot->unavail);
    slot->wait_until = 0;
}

//  Decides whether the slot has its answer: a read once one replica
//  answered, a write once no replica it went to is still pending (the first
//  failure, else the first success); else, with nothing pending, the
//  "unavailable" it waits on once its grace is over, or "no replica".
static void
s_slot_settle (s_call_t *call, size_t index, int n_targets, uint64_t now)
{
    s_slot_t *slot = &call->slots [index];
    if (slot->reply || s_legs_in (call, index, S_LEG_PENDING))
        return;
    //  A write that a replica still placed to take it could not take has
    //  failed, whatever the others said, once the grace is over.
    if (slot->write && slot->unavail && slot->routed && call->coll
        && gw_replicas_writable (gw_replicas_state (call->coll, slot->shard,
                                                    slot->unavail_peer))) {
        if (now < slot->wait_until)
            return;
        envelope_t *reply = s_named_failure (call, slot, slot->unavail_peer, &slot->unavail);
        s_slot_finish (slot, reply);
        return;
    }
    s_leg_t *answer = NULL;
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        if (leg->slot != index || leg->state != S_LEG_DONE)
            continue;
        if (!answer || (envelope_status (answer->reply) == 0
                        && envelope_status (leg->reply) != 0))
            answer = leg;
    }
    if (answer) {
        envelope_t *reply = answer->reply;
        answer->reply = NULL;
        int status = envelope_status (reply);
        if (status == -SH_EUNAVAIL || status == -SH_ETIMEDOUT)
            reply = s_named_failure (call, slot, answer->peer, &reply);
        s_slot_finish (slot, reply);
        return;
    }
    if (slot->unavail && now < slot->wait_until)
        return;                         //  waiting for the placement to move on
    if (slot->unavail) {
        envelope_t *reply = s_named_failure (call, slot, slot->unavail_peer, &slot->unavail);
        s_slot_finish (slot, reply);
        return;
    }
    char shard [300];
    s_shard_name (call, slot, shard, sizeof shard);
    s_slot_finish (slot, n_targets < 0
        ? s_slot_error (slot, -SH_EUNAVAIL, "Service unavailable: %s is not in the "
                        "cluster metadata of this peer", shard)
        : s_slot_error (slot, -SH_EUNAVAIL, "Service unavailable: no %s replica of %s",
                        slot->write ? "writable (Active)" : "readable (Active)", shard));
}

//  Sends the slot where the metadata says it goes now: gives up pending legs
//  to replicas that no longer serve it, and sends to the replicas that have
//  no leg yet (a read: only when none is pending). Then settles it.
static void
s_slot_route (s_call_t *call, size_t index, uint64_t now)
{
    s_slot_t *slot = &call->slots [index];
    if (slot->reply)
        return;
    uint64_t targets [S_MAX_TARGETS];
    int n;
    if (!slot->routed) {
        targets [0] = slot->peer;
        n = 1;
    }
    else {
        //  A replica that answered "unavailable" is asked again only once
        //  the metadata changed (it may not have started yet, or be back).
        uint64_t avoid = slot->unavail && slot->unavail_applied == call->applied
                       ? slot->unavail_peer : 0;
        n = call->coll ? gw_replicas_choose (call->coll, slot->shard, slot->write,
                                             call->self_peer, avoid, call->conn->next_id,
                                             targets, S_MAX_TARGETS)
                       : -1;
        if (n == 1 && !slot->write && targets [0] == avoid && avoid)
            n = 0;                      //  the only one failed: wait for a change
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *leg = &call->legs [k];
            if (leg->slot != index || leg->state != S_LEG_PENDING)
                continue;
            const char *state = call->coll
                              ? gw_replicas_state (call->coll, slot->shard, leg->peer) : NULL;
            if (slot->write ? gw_replicas_writable (state) : gw_replicas_readable (state))
                continue;
            log_debug ("gateway: req=%" PRIu64 " shard %" PRIu64 "/%" PRIu32 " is no longer"
                       " served by peer %" PRIu64 ": re-routed", leg->id, call->uid,
                       slot->shard, leg->peer);
            leg->state = S_LEG_ABANDONED;
            leg->unanswered = true;
        }
    }
    bool busy = !slot->write && s_legs_in (call, index, S_LEG_PENDING) > 0;
    for (int t = 0; t < n && !busy; t++) {
        //  (A write's targets are all the writable replicas, the one that
        //  just refused included: it is asked again once the metadata moved.)
        if (s_has_leg (call, index, targets [t])
            || (slot->routed && slot->unavail && slot->unavail_applied == call->applied
                && targets [t] == slot->unavail_peer))
            continue;
        s_leg_send (call, index, targets [t]);
        busy = !slot->write;
    }
    s_slot_settle (call, index, n, now);
}

//  A slot sent to a named replica (not routed) whose replica the metadata
//  no longer lists (a move finished, the replica was dropped): that actor
//  stops without answering, so the slot is answered "unavailable" now
//  rather than at its deadline.
static void
s_slot_check_named (s_call_t *call, size_t index)
{
    s_slot_t *slot = &call->slots [index];
    if (slot->reply || slot->routed || !call->coll
        || gw_replicas_state (call->coll, slot->shard, slot->peer)
        || !s_legs_in (call, index, S_LEG_PENDING))
        return;
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        if (leg->slot == index && leg->state == S_LEG_PENDING) {
            leg->state = S_LEG_ABANDONED;
            leg->unanswered = true;
        }
    }
    char shard [300];
    s_shard_name (call, slot, shard, sizeof shard);
    s_slot_finish (slot, s_slot_error (slot, -SH_EUNAVAIL, "Service unavailable: %s is no "
                                       "longer on peer %" PRIu64, shard, slot->peer));
}

//  A leg's answer. "Unavailable" from a replica the gateway chose (it is
//  stopping, moved off its peer, or its peer cannot be reached) is not the
//  end while re-routes are left: the slot waits a grace for the metadata to
//  name another replica.
static void
s_leg_answered (s_call_t *call, s_leg_t *leg, envelope_t *reply, uint64_t now)
{
    s_slot_t *slot = &call->slots [leg->slot];
    leg->reply = reply;
    leg->state = S_LEG_DONE;
    if (envelope_status (reply) == -SH_EUNAVAIL && slot->routed
        && slot->reroutes < S_REROUTE_MAX && now < call->deadline) {
        log_debug ("gateway: req=%" PRIu64 " shard %" PRIu64 "/%" PRIu32 " on peer %" PRIu64
                   " unavailable (%s): waiting for another replica", leg->id, call->uid,
                   slot->shard, leg->peer, envelope_error (reply));
        envelope_destroy (&slot->unavail);
        slot->unavail = leg->reply;
        leg->reply = NULL;
        leg->state = S_LEG_ABANDONED;
        slot->unavail_peer = leg->peer;
        slot->unavail_applied = call->applied;
        slot->reroutes++;
        //  Only a shard being moved may come back elsewhere soon (the
        //  source refuses writes once it proposed the finish, and stops
        //  once the finish is applied): then the metadata is waited for.
        //  Otherwise another replica is asked at once, if there is one.
        bool moving = call->coll && gw_replicas_in_transfer (call->coll, slot->shard);
        uint64_t grace = moving ? S_REROUTE_GRACE_MS : 0;
        slot->wait_until = now + grace < call->deadline ? now + grace : call->deadline;
        s_slot_route (call, leg->slot, now);
        return;
    }
    if (slot->unavail && slot->unavail_peer == leg->peer) {
        envelope_destroy (&slot->unavail);     //  it answered after all
        slot->wait_until = 0;
    }
    s_slot_settle (call, leg->slot, 1, now);
}

//  Reads one answer from sock (a local shard's socket or the p2p socket):
//  the envelope, or NULL for something malformed or not a reply.
static envelope_t *
s_recv_reply (gw_conn_t *conn, zsock_t *sock)
{
    envelope_t *got = NULL;
    if (sock != conn->p2p) {
        if (envelope_recv (sock, &got))
            return NULL;                //  malformed: already logged and dropped
        return got;
    }
    zmsg_t *msg = zmsg_recv (sock);
    if (!msg)
        return NULL;
    zframe_t *frame = zmsg_pop (msg);
    route_t route;
    if (!frame || route_decode (zframe_data (frame), zframe_size (frame), &route)
        || route.kind != ROUTE_REPLY) {
        log_debug ("gateway: dropped a message from the p2p actor that is not a routed reply");
        zframe_destroy (&frame);
        zmsg_destroy (&msg);
        return NULL;
    }
    zframe_destroy (&frame);
    if (envelope_decode (&msg, false, &got))
        return NULL;
    return got;
}

//  The answer on direct connection fd (readable, or closed): given to the
//  leg waiting on it. A connection that closed or broke is dropped, and the
//  leg answered "unavailable" (the shard stopped, or died, while asked).
static void
s_direct_recv (s_call_t *call, int fd, uint64_t now)
{
    s_leg_t *leg = NULL;
    for (size_t k = 0; k < call->n_legs && !leg; k++)
        if (call->legs [k].direct && call->legs [k].fd == fd
            && call->legs [k].state == S_LEG_PENDING)
            leg = &call->legs [k];
    if (!leg)
        return;
    envelope_t *got = NULL;
    int rc = envelope_read_fd (fd, call->deadline, &got);
    if (rc == 0 && (!envelope_is_reply (got) || envelope_request_id (got) != leg->id)) {
        envelope_destroy (&got);
        rc = -SH_EPROTO;
    }
    if (rc) {
        log_debug ("gateway: req=%" PRIu64 " shard %" PRIu64 "/%" PRIu32 ": direct "
                   "connection lost: %s", leg->id, call->uid,
                   call->slots [leg->slot].shard, sh_strerror (rc));
        s_direct_drop (call->conn, fd);
        leg->direct = false;
        leg->fd = -1;
        got = envelope_new_reply (call->slots [leg->slot].request, -SH_EUNAVAIL);
        envelope_set_error (got, -SH_EUNAVAIL, "the shard actor closed its connection");
    }
    s_leg_answered (call, leg, got, now);
}

//  The stream to the p2p actor broke (the p2p actor restarted, or died):
//  closed, and every leg waiting on it sent again on the DEALER, which
//  reaches the p2p actor once it is back, within the call's deadline. A
//  request that the old actor had forwarded already is harmless twice: a
//  read, or an idempotent point write (see the file comment).
static void
s_stream_lost (s_call_t *call, int rc)
{
    gw_conn_t *conn = call->conn;
    log_debug ("gateway: stream connection to the p2p actor lost (%s): its requests go"
               " again on the DEALER", rc == -SH_EPROTO ? "malformed" : "closed");
    close (conn->p2p_fd);
    conn->p2p_fd = -1;
    route_stream_destroy (&conn->p2p_stream);
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        if (!leg->stream || leg->state != S_LEG_PENDING || leg->reply)
            continue;
        leg->stream = false;
        s_leg_put (call, leg, false);
    }
}

//  Answers on the p2p stream (readable, or closed), each given to the leg
//  it names; one nobody waits for (a call given up on) is dropped.
static void
s_stream_recv (s_call_t *call, uint64_t now)
{
    gw_conn_t *conn = call->conn;
    int rc = route_stream_read (conn->p2p_stream, conn->p2p_fd);
    zmsg_t *msg;
    while ((msg = route_stream_next (conn->p2p_stream))) {
        zframe_t *frame = zmsg_pop (msg);
        route_t route;
        envelope_t *got = NULL;
        if (!frame || route_decode (zframe_data (frame), zframe_size (frame), &route)
            || route.kind != ROUTE_REPLY) {
            log_debug ("gateway: dropped a message from the p2p actor that is not a routed"
                       " reply");
            zmsg_destroy (&msg);
        }
        else
        if (envelope_decode (&msg, false, &got) == 0) {
            s_leg_t *match = NULL;
            for (size_t k = 0; k < call->n_legs && !match; k++)
                if (call->legs [k].stream && call->legs [k].state == S_LEG_PENDING
                    && !call->legs [k].reply
                    && call->legs [k].id == envelope_request_id (got))
                    match = &call->legs [k];
            if (match && envelope_is_reply (got))
                s_leg_answered (call, match, got, now);
            else {
                log_debug ("gateway: dropped stale remote reply req=%" PRIu64,
                           envelope_request_id (got));
                envelope_destroy (&got);
            }
        }
        zframe_destroy (&frame);
    }
    if (rc)
        s_stream_lost (call, rc);
}

//  Runs the call: every slot routed and sent, answers gathered until each
//  slot has one or the deadline passed.
static void
s_call_run (s_call_t *call)
{
    uint64_t now = envelope_now_ms ();
    //  The remote requests leave first: theirs is the longer way, and a
    //  local shard's worker woken first would take a core from them.
    call->remote_first = true;
    for (size_t i = 0; i < call->n_slots; i++)
        if (call->slots [i].request)
            s_slot_route (call, i, now);
    call->remote_first = false;
    if (call->conn->p2p_fd >= 0 && route_stream_pending (call->conn->p2p_stream)) {
        int rc = route_stream_flush (call->conn->p2p_stream, call->conn->p2p_fd);
        if (rc)
            s_stream_lost (call, rc);
    }
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        if (!leg->deferred)
            continue;
        leg->deferred = false;
        if (!s_direct_send (call, leg))
            s_leg_put (call, leg, true);
    }
    size_t cap_items = 4;
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc (cap_items, sizeof (zmq_pollitem_t));
    zsock_t **item_socks = (zsock_t **) calloc (cap_items, sizeof (zsock_t *));
    assert (items && item_socks);
    uint64_t next_check = now + S_REROUTE_CHECK_MS;
    while (true) {
        now = envelope_now_ms ();
        //  Legs that could not be sent hold their answer: take it (which
        //  may send, and fail, more).
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *leg = &call->legs [k];
            if (leg->state == S_LEG_PENDING && leg->reply) {
                envelope_t *reply = leg->reply;
                leg->reply = NULL;
                s_leg_answered (call, leg, reply, now);
                k = (size_t) -1;        //  the legs may have moved: rescan
            }
        }
        bool open = false;
        uint64_t wake = call->deadline;
        for (size_t i = 0; i < call->n_slots; i++) {
            s_slot_t *slot = &call->slots [i];
            if (!slot->request || slot->reply)
                continue;
            open = true;
            if (call->coll)
                wake = next_check < wake ? next_check : wake;
            if (slot->wait_until && slot->wait_until < wake)
                wake = slot->wait_until;
        }
        if (!open || now >= call->deadline)
            break;
        //  Metadata moved on (a transfer finished, a replica was dropped):
        //  slots still open go where it says now.
        if (now >= next_check) {
            next_check = now + S_REROUTE_CHECK_MS;
            if (call->coll && s_applied_now (call) != call->applied) {
                s_call_load (call);
                for (size_t i = 0; i < call->n_slots; i++)
                    if (call->slots [i].request && call->slots [i].routed)
                        s_slot_route (call, i, now);
                    else if (call->slots [i].request)
                        s_slot_check_named (call, i);
            }
        }
        for (size_t i = 0; i < call->n_slots; i++) {
            s_slot_t *slot = &call->slots [i];
            if (slot->request && !slot->reply && slot->wait_until && now >= slot->wait_until)
                s_slot_settle (call, i, 1, now);
        }
        //  Poll each distinct socket that still owes an answer.
        size_t n_items = 0;
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *leg = &call->legs [k];
            if (leg->state != S_LEG_PENDING || !leg->sock)
                continue;
            bool seen = false;
            for (size_t j = 0; j < n_items && !seen; j++)
                seen = item_socks [j] == leg->sock;
            if (seen)
                continue;
            if (n_items == cap_items) {
                cap_items *= 2;
                items = (zmq_pollitem_t *) realloc (items, cap_items * sizeof *items);
                item_socks = (zsock_t **) realloc (item_socks, cap_items * sizeof *item_socks);
                assert (items && item_socks);
            }
            item_socks [n_items] = leg->sock;
            items [n_items] = (zmq_pollitem_t) { zsock_resolve (leg->sock), 0, ZMQ_POLLIN, 0 };
            n_items++;
        }
        //  The p2p stream, while a leg waits on it or requests wait to go.
        int stream_item = -1;
        if (call->conn->p2p_fd >= 0) {
            int rc = route_stream_flush (call->conn->p2p_stream, call->conn->p2p_fd);
            if (rc) {
                s_stream_lost (call, rc);
                continue;                   //  its legs are on the DEALER now
            }
        }
        bool on_stream = false;
        for (size_t k = 0; k < call->n_legs && !on_stream; k++)
            on_stream = call->legs [k].stream && call->legs [k].state == S_LEG_PENDING
                     && !call->legs [k].reply;
        if (call->conn->p2p_fd >= 0 && on_stream) {
            if (n_items == cap_items) {
                cap_items *= 2;
                items = (zmq_pollitem_t *) realloc (items, cap_items * sizeof *items);
                item_socks = (zsock_t **) realloc (item_socks, cap_items * sizeof *item_socks);
                assert (items && item_socks);
            }
            short events = ZMQ_POLLIN;
            if (route_stream_pending (call->conn->p2p_stream))
                events |= ZMQ_POLLOUT;
            item_socks [n_items] = NULL;
            items [n_items] = (zmq_pollitem_t) { NULL, call->conn->p2p_fd, events, 0 };
            stream_item = (int) n_items++;
        }
        //  And each direct connection that still owes one (one leg each).
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *leg = &call->legs [k];
            if (leg->state != S_LEG_PENDING || !leg->direct)
                continue;
            if (n_items == cap_items) {
                cap_items *= 2;
                items = (zmq_pollitem_t *) realloc (items, cap_items * sizeof *items);
                item_socks = (zsock_t **) realloc (item_socks, cap_items * sizeof *item_socks);
                assert (items && item_socks);
            }
            item_socks [n_items] = NULL;
            items [n_items] = (zmq_pollitem_t) { NULL, leg->fd, ZMQ_POLLIN, 0 };
            n_items++;
        }
        now = envelope_now_ms ();
        long wait_ms = wake > now ? (long) (wake - now) : 0;
        int rc = zmq_poll (items, (int) n_items, wait_ms);
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (rc <= 0)
            continue;
        now = envelope_now_ms ();
        for (size_t j = 0; j < n_items; j++) {
            if ((int) j == stream_item) {
                if (items [j].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
                    s_stream_recv (call, now);
                continue;                   //  POLLOUT: flushed on the next turn
            }
            if (!item_socks [j] && items [j].revents) {
                s_direct_recv (call, items [j].fd, now);
                continue;
            }
            if (!(items [j].revents & ZMQ_POLLIN))
                continue;
            //  Drain what is ready on this socket without blocking.
            while (zsock_events (item_socks [j]) & ZMQ_POLLIN) {
                envelope_t *got = s_recv_reply (call->conn, item_socks [j]);
                if (!got)
                    continue;
                s_leg_t *match = NULL;
                for (size_t k = 0; k < call->n_legs && !match; k++)
                    if (call->legs [k].sock == item_socks [j]
                        && call->legs [k].state == S_LEG_PENDING
                        && call->legs [k].id == envelope_request_id (got))
                        match = &call->legs [k];
                if (!match || !envelope_is_reply (got)) {
                    log_debug ("gateway: dropped stale shard reply req=%" PRIu64,
                               envelope_request_id (got));
                    envelope_destroy (&got);
                    continue;
                }
                s_leg_answered (call, match, got, now);
            }
        }
    }
    free (items);
    free (item_socks);

    //  The deadline: what is still open times out, naming who owed it.
    for (size_t i = 0; i < call->n_slots; i++) {
        s_slot_t *slot = &call->slots [i];
        if (!slot->request || slot->reply)
            continue;
        if (slot->unavail && !s_legs_in (call, i, S_LEG_PENDING)) {
            envelope_t *reply = s_named_failure (call, slot, slot->unavail_peer,
                                                 &slot->unavail);
            s_slot_finish (slot, reply);
            continue;
        }
        char peers [256] = "";
        for (size_t k = 0; k < call->n_legs; k++) {
            s_leg_t *leg = &call->legs [k];
            size_t len = strlen (peers);
            if (leg->slot == i && leg->state == S_LEG_PENDING && len < sizeof peers - 24)
                snprintf (peers + len, sizeof peers - len, "%s%" PRIu64, len ? ", " : "",
                          leg->peer);
        }
        char shard [300];
        s_shard_name (call, slot, shard, sizeof shard);
        log_debug ("gateway: no reply from %s (peer %s) by the deadline", shard, peers);
        s_slot_finish (slot, s_slot_error (slot, -SH_ETIMEDOUT, "Timeout error: %s on "
                                           "peer %s did not answer in time", shard,
                                           *peers ? peers : "?"));
        slot->timed_out = true;
    }
    //  Sockets with requests still in them are closed, so that nothing
    //  queued there is delivered late and no stale answer is read later.
    for (size_t k = 0; k < call->n_legs; k++) {
        s_leg_t *leg = &call->legs [k];
        //  A local replica given up on is gone from this peer, or going:
        //  its socket goes too. The p2p socket stays for those (the p2p
        //  actor answers them itself; a late answer matches nothing).
        bool stale = leg->state == S_LEG_PENDING
                  || (leg->state == S_LEG_ABANDONED && leg->unanswered && !leg->remote);
        if (leg->direct && stale) {
            s_direct_drop (call->conn, leg->fd);
            leg->direct = false;
        }
        if (leg->sock && stale) {
            zsock_t *late = leg->sock;
            s_drop_sock (call->conn, late);
            for (size_t j = 0; j < call->n_legs; j++)
                if (call->legs [j].sock == late)
                    call->legs [j].sock = NULL;
        }
    }
}

//  Runs n requests (taken) as slots; peers NULL: replicas chosen here.
static int
s_call (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
        const uint64_t *peers, envelope_t **requests, envelope_t **replies)
{
    for (size_t i = 0; i < n; i++)
        replies [i] = NULL;
    if (n == 0)
        return 0;
    conn->clock++;
    s_call_t call = { .conn = conn, .uid = uid,
                      .self_peer = conn->gw ? gw_peer_id (conn->gw) : 0 };
    call.slots = (s_slot_t *) calloc (n, sizeof (s_slot_t));
    assert (call.slots);
    call.n_slots = n;
    s_call_load (&call);
    for (size_t i = 0; i < n; i++) {
        s_slot_t *slot = &call.slots [i];
        slot->shard = shard_ids [i];
        slot->request = requests [i];
        requests [i] = NULL;
        if (!slot->request)
            continue;
        uint64_t d = s_deadline_of (slot->request);
        if (d > call.deadline)
            call.deadline = d;
        slot->write = gw_replicas_is_write (envelope_type (slot->request));
        //  A collection this metadata does not know (not yet, or no more)
        //  is asked where it always was: the local replica.
        slot->routed = !peers && call.coll;
        slot->peer = peers ? peers [i] : call.self_peer;
    }
    s_call_run (&call);
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        s_slot_t *slot = &call.slots [i];
        if (slot->timed_out)
            result = -SH_ETIMEDOUT;
        replies [i] = slot->reply;
        slot->reply = NULL;
        envelope_destroy (&slot->request);
        envelope_destroy (&slot->unavail);
    }
    for (size_t k = 0; k < call.n_legs; k++)
        envelope_destroy (&call.legs [k].reply);
    free (call.legs);
    free (call.slots);
    json_decref (call.state);
    return result;
}

int
gw_call_shards (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
                envelope_t **requests, envelope_t **replies)
{
    return s_call (conn, uid, n, shard_ids, NULL, requests, replies);
}

int
gw_call_replicas (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
                  const uint64_t *peers, envelope_t **requests, envelope_t **replies)
{
    assert (peers || n == 0);
    return s_call (conn, uid, n, shard_ids, peers, requests, replies);
}
