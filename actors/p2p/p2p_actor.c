/*  p2p_actor: the only process that listens on the p2p port (DESIGN.md
    §1-2). It carries envelopes between this node's actors and other peers'
    p2p actors, every message being [route frame][envelope frames]
    (proto/route.h).

    Sockets:
      local   ROUTER at paths_p2p_endpoint: the node's own actors (DEALERs)
              send requests and one-way messages for other peers here and
              get their replies back here.
      stream  unix stream socket <ipc dir>/ROUTE_STREAM_NAME (route.h): the
              same messages without ZeroMQ, from the gateway's threads (a
              connection each). Each connection stands for a routing id of
              the local ROUTER, so both are handled alike; what is sent to
              it is written once per loop turn, a call's replies together.
      tcp     ROUTER on tcp://<service.host>:<cluster.p2p.port>: other peers'
              p2p actors connect to it; their requests arrive and our
              replies leave on it. With the cluster key a CURVE server.
      zap     REP at inproc://zeromq.zap.01 (RFC 27), only with the cluster
              key: admits CURVE clients whose key is the cluster key.
      sub     SUB at paths_meta_endpoint: META_STATE, for <state>.peers
              (who to connect to) and the shards placed on this peer.
      raft    DEALER to paths_raft_endpoint: remote raft messages go there.
      shards  one DEALER per (uid, shard) to paths_shard_endpoint, made on
              demand, closed when idle or when the shard leaves this peer;
              and up to S_DIRECT_MAX direct connections to the shard's
              workers (paths_shard_direct), which carry the reads (search,
              retrieve, scroll, count): the worker reads, serves and answers
              on its connection, no ZeroMQ I/O thread and no hop through the
              shard's main thread. A read finds a free one or goes on the
              DEALER; a connection that closes under a read answers it
              -SH_EUNAVAIL, one whose read was given up on is closed.
      links   one DEALER per remote peer (p2p_peers): requests we forward
              leave on it and their replies come back on it.

    Outgoing (local -> remote): a request gets src (this peer) and a fresh
    token, remembered with the requester's routing id, request id and
    deadline; its reply (matched by token) goes back to the requester with
    its own request id. A request that cannot be sent is answered at once
    with -SH_EUNAVAIL naming the peer, one that is not answered by its
    deadline with -SH_ETIMEDOUT (a late reply is dropped).

    Incoming (remote -> local): the envelope goes to the actor the route
    names with its request id re-stamped to a local id, mapped back to (tcp
    connection, route, original id) so that the actor's reply returns on
    the connection it came from. A RAFT_JOIN gets "observed_host" (the
    address zmq saw it come from) added to its JSON.

    Anything malformed from the tcp side is dropped and logged (rate
    limited), never fatal; a malformed request from a local actor is
    answered with an error when its header can be read.
*/
#include "actors/actors.h"
#include "actors/p2p/p2p_peers.h"
#include "common/err.h"
#include "common/fdio.h"
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
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

//  Messages read from one socket before the others get a turn.
#define S_BATCH              64
//  Longest the loop sleeps.
#define S_POLL_MS            100
//  Deadlines, idle sockets and link timers are checked this often (a walk
//  over every pending request: not on every message).
#define S_SWEEP_MS           50
//  A forwarded request without a deadline is given up after this long.
#define S_DEFAULT_WAIT_MS    60000
//  A remote request delivered here is remembered this long past its
//  deadline: peers' clocks differ, the requester's p2p actor times it out.
#define S_INCOMING_GRACE_MS  5000
//  A shard actor's DEALER with nothing pending is closed after this.
#define S_SHARD_IDLE_MS      60000
//  Queue bounds on the node-local sockets.
#define S_LOCAL_HWM          10000
//  How soon a local shard's socket tries again to reach an actor that is
//  not bound yet (ms).
#define S_LOCAL_RECONNECT_MS 10
//  Frames a message may have: routing id, route, envelope header and JSON,
//  and the envelope's blobs. More is malformed.
#define S_MAX_FRAMES         (4 + ENVELOPE_MAX_BLOBS)
//  Rate limit of the warnings about bad input: this many per window.
#define S_LOG_BURST          10
#define S_LOG_WINDOW_MS      10000
//  The ZAP domain of the tcp ROUTER (RFC 27).
#define S_ZAP_DOMAIN         "shoal-p2p"
#define S_ZAP_ENDPOINT       "inproc://zeromq.zap.01"
//  A CURVE handshake that has not finished by then is dropped.
#define S_HANDSHAKE_MS       10000
//  Direct read connections kept per local shard (one request in flight on
//  each): reads beyond that many at once go through the shard's DEALER.
#define S_DIRECT_MAX         4
//  A shard whose direct socket could not be connected is tried again after
//  this long (ms); its reads use the DEALER meanwhile.
#define S_DIRECT_RETRY_MS    1000
//  Send buffer asked for on a direct connection (a whole batch request).
#define S_DIRECT_SNDBUF      (1024 * 1024)
//  Bytes read at once from a direct connection; answer buffers larger than
//  S_DIRECT_KEEP are freed once the answer is passed on.
#define S_DIRECT_CHUNK       65536
#define S_DIRECT_KEEP        (1024 * 1024)
//  Frames of an envelope on a stream: header, JSON, blobs.
#define S_DIRECT_FRAMES      (2 + ENVELOPE_MAX_BLOBS)

typedef enum {
    S_LIM_TCP,                      //  malformed input on the p2p port
    S_LIM_LOCAL,                    //  malformed input from a local actor
    S_LIM_SEND,                     //  messages that could not be sent
    S_LIM_ZAP,                      //  refused connections
    S_LIM_LATE,                     //  replies nobody waits for any more
    S_LIM_COUNT
} s_limit_kind_t;

typedef struct {
    int64_t window;                 //  zclock_mono start of the current window
    unsigned count;                 //  lines logged in it
    unsigned suppressed;            //  lines not logged in it
} s_limit_t;

//  A request forwarded to a remote peer, waiting for its reply (by token).
typedef struct {
    zframe_t *routing;              //  the local requester (ROUTER routing id)
    uint64_t request_id;            //  its request id
    uint16_t type;                  //  msg_type_t of the request
    uint8_t actor;                  //  route_actor_t it was for
    uint64_t uid;                   //  ROUTE_SHARD: collection uid
    uint32_t shard;                 //  ROUTE_SHARD: shard id
    uint64_t dst;                   //  peer asked, 0 = by uri
    char *target;                   //  "peer N" or the uri, for messages
    uint64_t deadline;              //  unix ms when it is answered -SH_ETIMEDOUT
} s_out_t;

//  A direct read connection to a local shard's workers (paths_shard_direct,
//  the stream format of proto/envelope.h): the worker that reads a request
//  answers it on the same socket before it reads the next, so one request
//  is in flight on a connection and its answer is the next message on it.
typedef struct {
    int fd;                         //  unix stream socket, -1 when closed
    uint64_t local_id;              //  the request in flight, 0 when free
    uint8_t *out;                   //  the request's stream bytes (owned)
    size_t out_len;                 //  bytes of it in out
    size_t out_pos;                 //  bytes of it written so far
    size_t out_cap;                 //  out's allocated size
    uint8_t *in;                    //  the answer's bytes read so far (owned)
    size_t in_len;                  //  bytes in in
    size_t in_cap;                  //  in's allocated size
    uint64_t in_total;              //  the answer's size once its prefix is in, else 0
} s_direct_t;

//  A local actor's DEALER for one shard.
typedef struct {
    uint64_t uid;                   //  collection uid
    uint32_t shard;                 //  shard id
    char key [48];                  //  "uid/shard"
    zsock_t *dealer;                //  to paths_shard_endpoint
    int64_t last_used;              //  zclock_mono of the last delivery
    size_t pending;                 //  requests delivered, not answered
    bool gone;                      //  not on this peer any more: close
    s_direct_t directs [S_DIRECT_MAX];  //  direct read connections
    int64_t direct_retry;           //  zclock_mono before which none is opened
} s_shard_t;

//  A remote request delivered to a local actor (by local request id).
typedef struct {
    zframe_t *conn;                 //  tcp ROUTER routing id of the requester
    uint8_t actor;                  //  route fields for the reply route
    uint64_t src;                   //  requesting peer
    uint64_t uid;                   //  ROUTE_SHARD: collection uid
    uint32_t shard;                 //  ROUTE_SHARD: shard id
    uint64_t token;                 //  requester's token
    uint64_t request_id;            //  requester's request id
    uint16_t type;                  //  msg_type_t
    uint64_t expires;               //  unix ms after which it is forgotten
    char shard_key [48];            //  its s_shard_t, "" for raft
} s_in_t;

typedef enum { S_I_LOCAL, S_I_TCP, S_I_TCP_MONITOR, S_I_ZAP, S_I_SUB, S_I_RAFT, S_I_SHARD,
               S_I_LINK, S_I_MONITOR, S_I_DIRECT, S_I_ACCEPT, S_I_STREAM } s_item_kind_t;

//  A local actor's connection to the stream socket (route.h): what it
//  sends is handled as if it came on the ROUTER from a routing id of
//  S_STREAM_ID_SIZE bytes, S_STREAM_MARK then the id, and what is sent to
//  that routing id is queued on the connection (written once per turn).
#define S_STREAM_MARK    0xff
#define S_STREAM_ID_SIZE 9
//  Local stream connections at most (one per gateway connection thread);
//  the gateway's DEALERs carry what more connections would.
#define S_STREAM_MAX     256

typedef struct {
    uint64_t id;                    //  its routing id's number
    int fd;                         //  the unix stream socket, -1 once closed
    route_stream_t *stream;         //  its buffers
} s_lconn_t;

typedef struct {
    uint64_t peer_id;               //  this peer
    char storage [PATHS_MAX];       //  storage dir (ipc endpoints)
    char tcp_endpoint [300];        //  what the tcp ROUTER is bound to
    zsock_t *local;                 //  ROUTER for the node's actors
    zsock_t *tcp;                   //  ROUTER on the p2p port
    zsock_t *tcp_monitor;           //  its failed handshakes (logged)
    zsock_t *zap;                   //  ZAP handler, NULL without CURVE
    zsock_t *sub;                   //  META_STATE
    zsock_t *raft;                  //  DEALER to the raft actor
    zhashx_t *shards;               //  "uid/shard" -> s_shard_t
    p2p_peers_t *peers;             //  the peer table and links
    zhashx_t *outgoing;             //  token (hex) -> s_out_t
    zhashx_t *incoming;             //  local id (hex) -> s_in_t
    uint64_t next_token;            //  last token given
    uint64_t next_local_id;         //  last local request id given
    int64_t next_sweep;             //  zclock_mono of the next housekeeping
    bool curve;                     //  CURVE on the p2p port
    uint8_t curve_public [32];      //  the cluster public key (ZAP compares)
    bool have_state;                //  a META_STATE was read
    uint64_t applied;               //  its applied index
    zhashx_t *placed;               //  "uid/shard" on this peer in that state
    s_limit_t limits [S_LIM_COUNT]; //  log rate limits
    zsock_t **touched;              //  sockets to look at before sleeping
    size_t n_touched;               //  entries in touched
    size_t cap_touched;             //  its allocated size
    bool links_touched;             //  every link and its monitor too
    int stream_fd;                  //  listening stream socket, -1 if none
    char stream_path [PATHS_MAX];   //  its file
    s_lconn_t **lconns;             //  local stream connections
    size_t n_lconns;                //  entries used
    size_t cap_lconns;              //  entries allocated
    uint64_t next_lconn;            //  last connection id given
    int64_t accept_after;           //  zclock_mono: no accept before (out of fds)
} s_actor_t;

//  --------------------------------------------------------------------------
//  Helpers

static bool
s_limit (s_actor_t *self, s_limit_kind_t kind)
{
    static const char *names [] = { "malformed messages from peers",
                                    "malformed messages from local actors",
                                    "failed sends", "refused connections",
                                    "late replies" };
    s_limit_t *limit = &self->limits [kind];
    int64_t now = zclock_mono ();
    if (now - limit->window >= S_LOG_WINDOW_MS) {
        if (limit->suppressed)
            log_warn ("p2p: %u more %s not logged", limit->suppressed, names [kind]);
        limit->window = now;
        limit->count = 0;
        limit->suppressed = 0;
    }
    if (limit->count < S_LOG_BURST) {
        limit->count++;
        return true;
    }
    limit->suppressed++;
    return false;
}

#define S_WARN_LIMITED(self, kind, ...) \
    do { if (log_get_level () >= LOG_LEVEL_WARN && s_limit ((self), (kind))) \
            log_warn (__VA_ARGS__); } while (0)

static void
s_key (uint64_t value, char *buf)
{
    snprintf (buf, 17, "%016" PRIx64, value);
}

static void
s_out_destroy (void **item_p)
{
    s_out_t *out = (s_out_t *) *item_p;
    if (!out)
        return;
    zframe_destroy (&out->routing);
    free (out->target);
    free (out);
    *item_p = NULL;
}

static void
s_in_destroy (void **item_p)
{
    s_in_t *in = (s_in_t *) *item_p;
    if (!in)
        return;
    zframe_destroy (&in->conn);
    free (in);
    *item_p = NULL;
}

//  Closes a direct connection: whatever was in flight on it is not
//  answered there any more (the caller answers it).
static void
s_direct_close (s_direct_t *d)
{
    if (d->fd >= 0)
        close (d->fd);
    d->fd = -1;
    d->local_id = 0;
    d->out_len = d->out_pos = 0;
    d->in_len = 0;
    d->in_total = 0;
}

static void
s_shard_destroy (void **item_p)
{
    s_shard_t *shard = (s_shard_t *) *item_p;
    if (!shard)
        return;
    zsock_destroy (&shard->dealer);
    for (size_t i = 0; i < S_DIRECT_MAX; i++) {
        s_direct_close (&shard->directs [i]);
        free (shard->directs [i].out);
        free (shard->directs [i].in);
    }
    free (shard);
    *item_p = NULL;
}

static void
s_set_int (zsock_t *sock, int option, int value)
{
    if (zmq_setsockopt (zsock_resolve (sock), option, &value, sizeof value))
        log_warn ("p2p: setsockopt %d=%d failed: %s", option, value,
                  zmq_strerror (zmq_errno ()));
}

//  The loop sleeps in a plain poll on the sockets' ZMQ_FDs and asks a
//  socket for ZMQ_EVENTS only when its fd fired or when this actor used it
//  since it was last asked (a send or a read may take the fd's signal of
//  a message that then waits unseen): asking every socket on every wake-up
//  costs two system calls per socket, most of the p2p actor's time when
//  one request fans out to many shards.
static void
s_touch (s_actor_t *self, zsock_t *sock)
{
    for (size_t i = 0; i < self->n_touched; i++)
        if (self->touched [i] == sock)
            return;
    if (self->n_touched == self->cap_touched) {
        self->cap_touched = self->cap_touched ? self->cap_touched * 2 : 16;
        self->touched = (zsock_t **) realloc (self->touched,
                                              self->cap_touched * sizeof *self->touched);
        assert (self->touched);
    }
    self->touched [self->n_touched++] = sock;
}

//  The local stream connection a routing id names, or NULL (a ROUTER
//  routing id, or a connection since closed).
static s_lconn_t *
s_lconn_of (s_actor_t *self, zframe_t *routing)
{
    if (!routing || zframe_size (routing) != S_STREAM_ID_SIZE
        || zframe_data (routing) [0] != S_STREAM_MARK)
        return NULL;
    uint64_t id;
    memcpy (&id, zframe_data (routing) + 1, sizeof id);
    for (size_t i = 0; i < self->n_lconns; i++)
        if (self->lconns [i]->id == id)
            return self->lconns [i]->fd >= 0 ? self->lconns [i] : NULL;
    return NULL;
}

//  p2p_peers_sendmsg, remembering that sock was used; msg is kept. On the
//  local ROUTER, a message for a stream connection's routing id is queued
//  on that connection instead (without the routing id).
static int
s_sendmsg (s_actor_t *self, zsock_t *sock, zmsg_t *msg)
{
    if (sock == self->local) {
        zframe_t *routing = zmsg_first (msg);
        if (routing && zframe_size (routing) == S_STREAM_ID_SIZE
            && zframe_data (routing) [0] == S_STREAM_MARK) {
            s_lconn_t *lconn = s_lconn_of (self, routing);
            if (!lconn) {
                log_debug ("p2p: dropped a reply for a local connection since closed");
                return 0;
            }
            routing = zmsg_pop (msg);
            int rc = route_stream_queue (lconn->stream, msg);
            zmsg_prepend (msg, &routing);
            return rc ? -SH_EUNAVAIL : 0;
        }
    }
    s_touch (self, sock);
    return p2p_peers_sendmsg (sock, msg);
}

//  Receives one message, at most max_frames of it: the rest of a longer
//  one is read and dropped frame by frame, never held (NULL, *too_many).
static zmsg_t *
s_recv_bounded (zsock_t *sock, size_t max_frames, bool *too_many)
{
    *too_many = false;
    zmsg_t *msg = zmsg_new ();
    while (true) {
        zframe_t *frame = zframe_recv (sock);
        if (!frame) {
            zmsg_destroy (&msg);
            return NULL;            //  interrupted
        }
        bool more = zframe_more (frame);
        if (zmsg_size (msg) < max_frames && !*too_many)
            zmsg_append (msg, &frame);
        else {
            *too_many = true;
            zframe_destroy (&frame);
        }
        if (!more)
            break;
    }
    if (*too_many)
        zmsg_destroy (&msg);
    return msg;
}

//  A short printable sample of bad input, for logs.
static const char *
s_sample (zframe_t *frame, char *buf, size_t size)
{
    size_t n = frame ? zframe_size (frame) : 0;
    const uint8_t *data = frame ? zframe_data (frame) : NULL;
    size_t used = 0;
    for (size_t i = 0; i < n && used + 4 < size && i < 16; i++)
        used += (size_t) snprintf (buf + used, size - used, "%02x", data [i]);
    buf [used] = 0;
    return buf;
}

//  An error envelope for a request known by its header fields.
static zmsg_t *
s_error_envelope (uint16_t type, uint64_t request_id, uint64_t deadline, int status,
                  const char *why)
{
    envelope_t *stub = envelope_new (type, request_id, deadline);
    envelope_t *reply = envelope_new_reply (stub, status);
    envelope_destroy (&stub);
    envelope_set_error (reply, status, "%s", why ? why : sh_strerror (status));
    zmsg_t *msg = envelope_encode (reply);
    envelope_destroy (&reply);
    return msg;
}

//  Sends [routing][route][envelope...] (envelope taken) on sock.
static int
s_send_routed (s_actor_t *self, zsock_t *sock, zframe_t *routing, const route_t *route,
               zmsg_t **env_p)
{
    zmsg_t *msg = *env_p;
    *env_p = NULL;
    zframe_t *frame = route_encode (route);
    assert (frame);                 //  our own routes carry no long uri
    zmsg_prepend (msg, &frame);
    zframe_t *copy = zframe_dup (routing);
    zmsg_prepend (msg, &copy);
    int rc = s_sendmsg (self, sock, msg);
    zmsg_destroy (&msg);
    if (rc)
        S_WARN_LIMITED (self, S_LIM_SEND, "p2p: a reply could not be sent to %s (%s)",
                        sock == self->tcp ? "a peer" : "a local actor",
                        zmq_strerror (zmq_errno ()));
    return rc;
}

//  The reply route to a request's route.
static route_t
s_reply_route (s_actor_t *self, uint8_t actor, uint64_t to, uint64_t uid, uint32_t shard,
               uint64_t token)
{
    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = ROUTE_REPLY;
    route.actor = actor;
    route.src = self->peer_id;
    route.dst = to;
    if (actor == ROUTE_SHARD) {
        route.uid = uid;
        route.shard = shard;
    }
    route.token = token;
    return route;
}

//  Answers a local requester: [routing][route reply][error envelope].
static void
s_answer_local (s_actor_t *self, zframe_t *routing, const route_t *asked, uint16_t type,
                uint64_t request_id, uint64_t deadline, int status, const char *why)
{
    route_t route = s_reply_route (self, asked ? asked->actor : ROUTE_P2P, self->peer_id,
                                   asked ? asked->uid : 0, asked ? asked->shard : 0, 0);
    route.src = asked ? asked->dst : self->peer_id;
    zmsg_t *env = s_error_envelope (type, request_id, deadline, status, why);
    s_send_routed (self, self->local, routing, &route, &env);
}

//  Answers a remote requester on its tcp connection.
static void
s_answer_remote (s_actor_t *self, zframe_t *conn, const route_t *asked,
                 const route_env_t *head, int status, const char *why)
{
    route_t route = s_reply_route (self, asked->actor, asked->src, asked->uid, asked->shard,
                                   asked->token);
    zmsg_t *env = s_error_envelope (head->type, head->request_id, head->deadline, status, why);
    s_send_routed (self, self->tcp, conn, &route, &env);
}

//  --------------------------------------------------------------------------
//  The p2p actor's own requests (route actor p2p)

static zmsg_t *
s_serve (s_actor_t *self, const route_env_t *head)
{
    if (head->type != MSG_P2P_INFO) {
        char why [96];
        snprintf (why, sizeof why, "the p2p actor does not serve %s",
                  msg_type_name (head->type));
        return s_error_envelope (head->type, head->request_id, head->deadline, -SH_EPROTO,
                                 why);
    }
    envelope_t *stub = envelope_new (head->type, head->request_id, head->deadline);
    envelope_t *reply = envelope_new_reply (stub, 0);
    envelope_destroy (&stub);
    envelope_set_json (reply, p2p_peers_info (self->peers));
    zmsg_t *msg = envelope_encode (reply);
    envelope_destroy (&reply);
    return msg;
}

//  --------------------------------------------------------------------------
//  Local actors -> remote peers

//  Reads what it can of an envelope header that route_peek_envelope
//  refused, so that a malformed local request can still be answered.
static bool
s_loose_header (zmsg_t *msg, route_env_t *out)
{
    memset (out, 0, sizeof *out);
    zframe_t *head = zmsg_first (msg);
    return head && envelope_peek_request (zframe_data (head), zframe_size (head), &out->type,
                                          &out->request_id, &out->deadline) == 0;
}

static void
s_on_send_failed (void *arg, uint64_t token, int status, const char *why)
{
    s_actor_t *self = (s_actor_t *) arg;
    char key [17];
    s_key (token, key);
    s_out_t *out = (s_out_t *) zhashx_lookup (self->outgoing, key);
    if (!out)
        return;
    route_t asked;
    memset (&asked, 0, sizeof asked);
    asked.actor = out->actor;
    asked.dst = out->dst;
    asked.uid = out->uid;
    asked.shard = out->shard;
    S_WARN_LIMITED (self, S_LIM_SEND, "p2p: %s rid=%" PRIu64 " to %s failed: %s",
                    msg_type_name (out->type), out->request_id, out->target, why);
    s_answer_local (self, out->routing, &asked, out->type, out->request_id, out->deadline,
                    status, why);
    zhashx_delete (self->outgoing, key);
}

static void
s_on_local (s_actor_t *self, zmsg_t *msg)
{
    char sample [40];
    if (zmsg_size (msg) < 3) {
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: dropped a local message of %zu frame(s)",
                        zmsg_size (msg));
        zmsg_destroy (&msg);
        return;
    }
    zframe_t *routing = zmsg_pop (msg);
    zframe_t *route_frame = zmsg_pop (msg);
    route_t route;
    route_env_t head;
    int route_rc = route_decode (zframe_data (route_frame), zframe_size (route_frame), &route);
    int head_rc = route_peek_envelope (msg, &head);
    if (route_rc || head_rc) {
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: malformed %s from a local actor (route %s)",
                        route_rc ? "route frame" : "envelope",
                        s_sample (route_frame, sample, sizeof sample));
        route_env_t loose;
        if ((head_rc == 0 && !head.is_reply) || (head_rc && s_loose_header (msg, &loose))) {
            const route_env_t *h = head_rc == 0 ? &head : &loose;
            s_answer_local (self, routing, route_rc ? NULL : &route, h->type, h->request_id,
                            h->deadline, -SH_EPROTO, route_rc ? "malformed route frame"
                                                              : "malformed envelope");
        }
        goto done;
    }
    if (route.kind == ROUTE_REPLY || head.is_reply) {
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: dropped a reply sent to the p2p actor by a"
                        " local actor: %s rid=%" PRIu64, msg_type_name (head.type),
                        head.request_id);
        goto done;
    }
    bool request = route.kind == ROUTE_REQUEST;
    bool to_self = route.dst == self->peer_id || (route.dst == 0 && !route.uri [0]);
    if (route.actor == ROUTE_P2P && to_self) {
        if (request) {
            zmsg_t *reply = s_serve (self, &head);
            route_t back = s_reply_route (self, ROUTE_P2P, self->peer_id, 0, 0, 0);
            s_send_routed (self, self->local, routing, &back, &reply);
        }
        goto done;
    }
    if (to_self) {
        const char *why = route.dst ? "route to this peer itself: talk to the actor directly"
                                    : "route names no peer (dst 0 needs a uri)";
        if (request)
            s_answer_local (self, routing, &route, head.type, head.request_id, head.deadline,
                            -SH_EINVAL, why);
        else
            S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: dropped a one-way %s: %s",
                            msg_type_name (head.type), why);
        goto done;
    }

    uint64_t now_ms = envelope_now_ms ();
    char target [ROUTE_MAX_URI + 32];
    if (route.dst)
        snprintf (target, sizeof target, "peer %" PRIu64, route.dst);
    else
        snprintf (target, sizeof target, "%s", route.uri);
    char key [17] = "";
    if (request) {
        if (head.deadline && head.deadline <= now_ms) {
            s_answer_local (self, routing, &route, head.type, head.request_id, head.deadline,
                            -SH_ETIMEDOUT, "deadline passed before the request was sent");
            goto done;
        }
        if (++self->next_token == 0)
            self->next_token = 1;
        route.token = self->next_token;
        s_key (route.token, key);
        s_out_t *out = (s_out_t *) zmalloc (sizeof (s_out_t));
        out->routing = zframe_dup (routing);
        out->request_id = head.request_id;
        out->type = head.type;
        out->actor = route.actor;
        out->uid = route.uid;
        out->shard = route.shard;
        out->dst = route.dst;
        out->target = strdup (target);
        out->deadline = head.deadline ? head.deadline : now_ms + S_DEFAULT_WAIT_MS;
        zhashx_insert (self->outgoing, key, out);
    }
    else
        route.token = 0;
    route.src = self->peer_id;

    zframe_t *frame = route_encode (&route);
    assert (frame);                 //  it decoded, so it encodes
    zmsg_prepend (msg, &frame);
    char why [ROUTE_MAX_URI + 200] = "";
    self->links_touched = true;
    int rc = p2p_peers_send (self->peers, route.dst, route.uri, &msg, route.token,
                             zclock_mono (), why, sizeof why);
    if (rc) {
        S_WARN_LIMITED (self, S_LIM_SEND, "p2p: %s %s rid=%" PRIu64 " not sent: %s",
                        request ? "request" : "one-way", msg_type_name (head.type),
                        head.request_id, why);
        if (request) {
            s_answer_local (self, routing, &route, head.type, head.request_id, head.deadline,
                            rc == -SH_EINVAL ? -SH_EINVAL : -SH_EUNAVAIL, why);
            zhashx_delete (self->outgoing, key);
        }
    }
    else
        log_trace ("p2p: forwarded %s rid=%" PRIu64 " to %s token=%" PRIu64,
                   msg_type_name (head.type), head.request_id, target, route.token);
done:
    zframe_destroy (&routing);
    zframe_destroy (&route_frame);
    zmsg_destroy (&msg);
}

//  A join reply tells a joining peer who the members are before its own
//  state does: learn them, so the leader's messages can be answered.
static void
s_learn_from_join (s_actor_t *self, zmsg_t *env_frames)
{
    zmsg_t *copy = zmsg_dup (env_frames);
    envelope_t *env = NULL;
    if (envelope_decode (&copy, false, &env) != 0)
        return;
    json_t *peers = json_object_get (envelope_json (env), "peers");
    if (json_is_object (peers)) {
        self->links_touched = true;
        int changes = p2p_peers_update (self->peers, peers, false, zclock_mono ());
        if (changes > 0)
            log_info ("p2p: learned %d peer(s) from a join reply", changes);
    }
    envelope_destroy (&env);
}

//  A reply from a remote peer on one of our links: [route][envelope].
static void
s_on_link (s_actor_t *self, p2p_link_t *link, zmsg_t *msg)
{
    char sample [40];
    zframe_t *route_frame = zmsg_pop (msg);
    route_t route;
    route_env_t head;
    if (!route_frame
    ||  route_decode (zframe_data (route_frame), zframe_size (route_frame), &route) != 0
    ||  route.kind != ROUTE_REPLY || route_peek_envelope (msg, &head) != 0
    ||  !head.is_reply) {
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a malformed reply from %s (route %s)",
                        p2p_link_uri (link), s_sample (route_frame, sample, sizeof sample));
        goto done;
    }
    char key [17];
    s_key (route.token, key);
    s_out_t *out = (s_out_t *) zhashx_lookup (self->outgoing, key);
    if (!out) {
        if (log_get_level () >= LOG_LEVEL_DEBUG && s_limit (self, S_LIM_LATE))
            log_debug ("p2p: dropped a late reply from %s: %s token=%" PRIu64,
                       p2p_link_uri (link), msg_type_name (head.type), route.token);
        goto done;
    }
    if ((out->dst && route.src != out->dst) || head.type != out->type) {
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a reply from %s that does not match"
                        " its request: %s from peer %" PRIu64 " for %s to %s",
                        p2p_link_uri (link), msg_type_name (head.type), route.src,
                        msg_type_name (out->type), out->target);
        goto done;
    }
    route_set_request_id (zmsg_first (msg), out->request_id);
    if (head.type == MSG_RAFT_JOIN && head.status == 0)
        s_learn_from_join (self, msg);
    //  The requester sees the route as the peer sent it: src tells a
    //  bootstrap request which peer answered.
    zframe_t *routing = zframe_dup (out->routing);
    zhashx_delete (self->outgoing, key);
    zmsg_prepend (msg, &route_frame);
    zmsg_prepend (msg, &routing);
    if (s_sendmsg (self, self->local, msg))
        S_WARN_LIMITED (self, S_LIM_SEND, "p2p: a reply could not be passed to its local"
                        " requester: %s", zmq_strerror (zmq_errno ()));
done:
    zframe_destroy (&route_frame);
    zmsg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Remote peers -> local actors

static void
s_shard_key (uint64_t uid, uint32_t shard, char *buf, size_t size)
{
    snprintf (buf, size, "%" PRIu64 "/%" PRIu32, uid, shard);
}

static s_shard_t *
s_shard_get (s_actor_t *self, uint64_t uid, uint32_t shard_id)
{
    char key [48];
    s_shard_key (uid, shard_id, key, sizeof key);
    s_shard_t *shard = (s_shard_t *) zhashx_lookup (self->shards, key);
    if (shard)
        return shard->gone ? NULL : shard;
    char endpoint [PATHS_MAX];
    if (paths_shard_endpoint (self->storage, uid, shard_id, endpoint))
        return NULL;
    shard = (s_shard_t *) zmalloc (sizeof (s_shard_t));
    shard->uid = uid;
    shard->shard = shard_id;
    snprintf (shard->key, sizeof shard->key, "%s", key);
    for (size_t i = 0; i < S_DIRECT_MAX; i++)
        shard->directs [i].fd = -1;
    shard->dealer = zsock_new (ZMQ_DEALER);
    assert (shard->dealer);
    s_set_int (shard->dealer, ZMQ_LINGER, 0);
    s_set_int (shard->dealer, ZMQ_SNDTIMEO, 0);
    s_set_int (shard->dealer, ZMQ_SNDHWM, S_LOCAL_HWM);
    //  No ZMQ_IMMEDIATE: a shard actor being (re)started gets what was
    //  queued for it once it binds, S_LOCAL_RECONNECT_MS after at most (not
    //  zmq's 100 ms: the first request to a shard placed here by a move
    //  usually comes before the new actor binds, and waited that long).
    s_set_int (shard->dealer, ZMQ_RECONNECT_IVL, S_LOCAL_RECONNECT_MS);
    if (zsock_connect (shard->dealer, "%s", endpoint)) {
        zsock_destroy (&shard->dealer);
        free (shard);
        return NULL;
    }
    shard->last_used = zclock_mono ();
    zhashx_insert (self->shards, key, shard);
    log_debug ("p2p: opened shard %s", key);
    return shard;
}

//  The reads a shard's workers serve on its direct socket.
static bool
s_direct_type (uint16_t type)
{
    return type == MSG_SHARD_SEARCH || type == MSG_SHARD_RETRIEVE
        || type == MSG_SHARD_SCROLL || type == MSG_SHARD_COUNT;
}

//  Connects d to the shard's direct socket. 0, or -1 (no socket: the shard
//  is starting, stopping or older; not tried again for S_DIRECT_RETRY_MS).
static int
s_direct_open (s_actor_t *self, s_shard_t *shard, s_direct_t *d)
{
    int64_t now = zclock_mono ();
    if (now < shard->direct_retry)
        return -1;
    char path [PATHS_MAX];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (paths_shard_direct (self->storage, shard->uid, shard->shard, path)
        || strlen (path) >= sizeof addr.sun_path) {
        shard->direct_retry = INT64_MAX;
        return -1;
    }
    strcpy (addr.sun_path, path);
    int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    //  A unix socket connects at once or not at all (no EINPROGRESS).
    if (fd >= 0 && connect (fd, (struct sockaddr *) &addr, sizeof addr)) {
        close (fd);
        fd = -1;
    }
    if (fd < 0) {
        log_debug ("p2p: no direct connection to shard %s (%s): reads use its DEALER",
                   shard->key, strerror (errno));
        shard->direct_retry = now + S_DIRECT_RETRY_MS;
        return -1;
    }
    int room = S_DIRECT_SNDBUF;
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    d->fd = fd;
    return 0;
}

//  Writes what is left of d's request without blocking. 0 (all written, or
//  the rest waits for room), -SH_EIO (the shard's side is gone).
static int
s_direct_flush (s_direct_t *d)
{
    return fdio_send_some (d->fd, d->out, d->out_len, &d->out_pos);
}

//  Sends a read request (envelope frames, kept; its id already the local
//  id) on a free direct connection of shard, opening one if fewer than
//  S_DIRECT_MAX are open. true if it went; false leaves it to the DEALER
//  (no direct socket, every connection busy, or two that broke at once).
static bool
s_direct_send (s_actor_t *self, s_shard_t *shard, zmsg_t *env, uint64_t local_id)
{
    size_t n = zmsg_size (env);
    if (n < 2 || n > S_DIRECT_FRAMES)
        return false;
    for (int attempt = 0; attempt < 2; attempt++) {
        s_direct_t *d = NULL;
        for (size_t i = 0; i < S_DIRECT_MAX && !d; i++)
            if (shard->directs [i].fd >= 0 && !shard->directs [i].local_id)
                d = &shard->directs [i];
        for (size_t i = 0; i < S_DIRECT_MAX && !d; i++)
            if (shard->directs [i].fd < 0) {
                if (s_direct_open (self, shard, &shard->directs [i]))
                    return false;
                d = &shard->directs [i];
            }
        if (!d)
            return false;
        //  u32 count, count x u32 length, the frames (proto/envelope.h).
        size_t size = 4 * (1 + n);
        for (zframe_t *frame = zmsg_first (env); frame; frame = zmsg_next (env))
            size += zframe_size (frame);
        if (size > d->out_cap) {
            free (d->out);
            d->out = (uint8_t *) malloc (size);
            assert (d->out);
            d->out_cap = size;
        }
        le_put_u32 (d->out, (uint32_t) n);
        size_t at = 4 * (1 + n), i = 1;
        for (zframe_t *frame = zmsg_first (env); frame; frame = zmsg_next (env), i++) {
            le_put_u32 (d->out + 4 * i, (uint32_t) zframe_size (frame));
            memcpy (d->out + at, zframe_data (frame), zframe_size (frame));
            at += zframe_size (frame);
        }
        d->out_len = size;
        d->out_pos = 0;
        if (s_direct_flush (d) == 0) {
            d->local_id = local_id;
            return true;
        }
        //  A connection to a shard actor since restarted (or stopped)
        //  fails here: a fresh one is tried once.
        log_debug ("p2p: direct connection to shard %s lost: reconnecting", shard->key);
        s_direct_close (d);
    }
    return false;
}

//  Adds "observed_host" to a RAFT_JOIN's JSON: the address its connection
//  comes from, for a joiner that does not know its own address.
static int
s_add_observed_host (zmsg_t **env_p, const char *host)
{
    envelope_t *env = NULL;
    int rc = envelope_decode (env_p, false, &env);
    if (rc)
        return rc;
    json_object_set_new (envelope_json (env), "observed_host",
                         host ? json_string (host) : json_null ());
    *env_p = envelope_encode (env);
    envelope_destroy (&env);
    return 0;
}

//  Delivers a remote request or one-way message (envelope frames taken) to
//  a local actor's DEALER, re-stamped with a local id.
static void
s_deliver (s_actor_t *self, zsock_t *sock, s_shard_t *shard, zframe_t *conn,
           const route_t *route, const route_env_t *head, zframe_t *route_frame,
           zmsg_t **env_p)
{
    bool request = route->kind == ROUTE_REQUEST;
    if (head->type == MSG_RAFT_JOIN && route->actor == ROUTE_RAFT) {
        const char *host = zframe_meta (route_frame, "Peer-Address");
        if (s_add_observed_host (env_p, host) != 0) {
            S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a raft_join from peer %" PRIu64
                            " whose JSON is malformed", route->src);
            if (request)
                s_answer_remote (self, conn, route, head, -SH_EPROTO, "malformed envelope");
            return;
        }
    }
    //  Every delivery gets a fresh local id, one-way ones too: a reply the
    //  actor makes to a one-way message then matches nothing.
    if (++self->next_local_id == 0)
        self->next_local_id = 1;
    uint64_t local_id = self->next_local_id;
    route_set_request_id (zmsg_first (*env_p), local_id);
    char key [17];
    s_key (local_id, key);
    if (request) {
        s_in_t *in = (s_in_t *) zmalloc (sizeof (s_in_t));
        in->conn = zframe_dup (conn);
        in->actor = route->actor;
        in->src = route->src;
        in->uid = route->uid;
        in->shard = route->shard;
        in->token = route->token;
        in->request_id = head->request_id;
        in->type = head->type;
        uint64_t now_ms = envelope_now_ms ();
        uint64_t deadline = head->deadline > now_ms ? head->deadline : now_ms;
        in->expires = head->deadline ? deadline + S_INCOMING_GRACE_MS
                                     : now_ms + S_DEFAULT_WAIT_MS;
        if (shard)
            snprintf (in->shard_key, sizeof in->shard_key, "%s", shard->key);
        zhashx_insert (self->incoming, key, in);
    }
    //  A read for a shard goes to its workers' direct socket when it can:
    //  no ZeroMQ I/O thread on either side, no hop through the shard's
    //  main thread. The answer comes back through s_on_direct.
    int rc = 0;
    if (!(shard && request && s_direct_type (head->type)
          && s_direct_send (self, shard, *env_p, local_id)))
        rc = s_sendmsg (self, sock, *env_p);
    zmsg_destroy (env_p);
    if (rc) {
        char why [128];
        snprintf (why, sizeof why, "%s actor on peer %" PRIu64 " is not taking messages"
                  " (queue full)", route->actor == ROUTE_RAFT ? "raft" : "shard",
                  self->peer_id);
        S_WARN_LIMITED (self, S_LIM_SEND, "p2p: %s from peer %" PRIu64 " not delivered: %s",
                        msg_type_name (head->type), route->src, why);
        if (request) {
            zhashx_delete (self->incoming, key);
            s_answer_remote (self, conn, route, head, -SH_EUNAVAIL, why);
        }
        return;
    }
    if (shard) {
        shard->last_used = zclock_mono ();
        if (request)
            shard->pending++;
    }
    log_trace ("p2p: delivered %s from peer %" PRIu64 " as local id %" PRIu64,
               msg_type_name (head->type), route->src, local_id);
}

//  A message from another peer on the p2p port: [conn][route][envelope].
static void
s_on_tcp (s_actor_t *self, zmsg_t *msg)
{
    char sample [40];
    if (zmsg_size (msg) < 4) {
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a message of %zu frame(s) from a"
                        " peer", zmsg_size (msg) ? zmsg_size (msg) - 1 : 0);
        zmsg_destroy (&msg);
        return;
    }
    zframe_t *conn = zmsg_pop (msg);
    zframe_t *route_frame = zmsg_pop (msg);
    const char *from = zframe_meta (route_frame, "Peer-Address");
    route_t route;
    route_env_t head;
    if (route_decode (zframe_data (route_frame), zframe_size (route_frame), &route) != 0) {
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a message with a malformed route from"
                        " %s (%zu bytes: %s)", from ? from : "?", zframe_size (route_frame),
                        s_sample (route_frame, sample, sizeof sample));
        goto done;
    }
    if (route.kind == ROUTE_REPLY || route_peek_envelope (msg, &head) != 0 || head.is_reply) {
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: dropped a %s from peer %" PRIu64 " at %s",
                        route.kind == ROUTE_REPLY ? "reply sent to the listening port"
                                                  : "malformed envelope",
                        route.src, from ? from : "?");
        goto done;
    }
    bool request = route.kind == ROUTE_REQUEST;
    if (route.dst != 0 && route.dst != self->peer_id) {
        char why [96];
        snprintf (why, sizeof why, "this is peer %" PRIu64 ", not peer %" PRIu64,
                  self->peer_id, route.dst);
        S_WARN_LIMITED (self, S_LIM_TCP, "p2p: %s from peer %" PRIu64 ": %s",
                        msg_type_name (head.type), route.src, why);
        if (request)
            s_answer_remote (self, conn, &route, &head, -SH_EUNAVAIL, why);
        goto done;
    }
    if (route.actor == ROUTE_P2P) {
        if (request) {
            zmsg_t *reply = s_serve (self, &head);
            route_t back = s_reply_route (self, ROUTE_P2P, route.src, 0, 0, route.token);
            s_send_routed (self, self->tcp, conn, &back, &reply);
        }
        goto done;
    }
    if (route.actor == ROUTE_RAFT) {
        s_deliver (self, self->raft, NULL, conn, &route, &head, route_frame, &msg);
        goto done;
    }
    //  ROUTE_SHARD. A state recent enough to know the collection that does
    //  not place the shard here proves it is not here; anything else may be
    //  a shard this peer is about to start.
    char key [48];
    s_shard_key (route.uid, route.shard, key, sizeof key);
    bool absent = self->have_state && route.uid <= self->applied
               && !zhashx_lookup (self->placed, key);
    s_shard_t *shard = absent ? NULL : s_shard_get (self, route.uid, route.shard);
    if (!shard) {
        char why [128];
        snprintf (why, sizeof why, "shard %s is not on peer %" PRIu64, key, self->peer_id);
        log_debug ("p2p: %s from peer %" PRIu64 ": %s", msg_type_name (head.type), route.src,
                   why);
        if (request)
            s_answer_remote (self, conn, &route, &head, -SH_EUNAVAIL, why);
        goto done;
    }
    s_deliver (self, shard->dealer, shard, conn, &route, &head, route_frame, &msg);
done:
    zframe_destroy (&conn);
    zframe_destroy (&route_frame);
    zmsg_destroy (&msg);
}

//  A reply from a local actor to a remote request: [envelope].
static void
s_on_actor_reply (s_actor_t *self, zmsg_t *msg)
{
    route_env_t head;
    if (route_peek_envelope (msg, &head) != 0 || !head.is_reply) {
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: dropped a malformed reply from a local actor");
        zmsg_destroy (&msg);
        return;
    }
    char key [17];
    s_key (head.request_id, key);
    s_in_t *in = (s_in_t *) zhashx_lookup (self->incoming, key);
    if (!in) {
        log_debug ("p2p: dropped a local reply nobody waits for: %s local id %" PRIu64,
                   msg_type_name (head.type), head.request_id);
        zmsg_destroy (&msg);
        return;
    }
    route_set_request_id (zmsg_first (msg), in->request_id);
    route_t route = s_reply_route (self, in->actor, in->src, in->uid, in->shard, in->token);
    if (in->shard_key [0]) {
        s_shard_t *shard = (s_shard_t *) zhashx_lookup (self->shards, in->shard_key);
        if (shard && shard->pending)
            shard->pending--;
    }
    zframe_t *conn = zframe_dup (in->conn);
    zhashx_delete (self->incoming, key);
    s_send_routed (self, self->tcp, conn, &route, &msg);
    zframe_destroy (&conn);
}

//  A request delivered to a local actor that will not be answered there:
//  answered to its requester with status and why, and forgotten.
static void
s_in_fail (s_actor_t *self, uint64_t local_id, int status, const char *why)
{
    char key [17];
    s_key (local_id, key);
    s_in_t *in = (s_in_t *) zhashx_lookup (self->incoming, key);
    if (!in)
        return;
    route_t asked;
    memset (&asked, 0, sizeof asked);
    asked.actor = in->actor;
    asked.src = in->src;
    asked.uid = in->uid;
    asked.shard = in->shard;
    asked.token = in->token;
    route_env_t head = { .type = in->type, .request_id = in->request_id };
    s_answer_remote (self, in->conn, &asked, &head, status, why);
    if (in->shard_key [0]) {
        s_shard_t *shard = (s_shard_t *) zhashx_lookup (self->shards, in->shard_key);
        if (shard && shard->pending)
            shard->pending--;
    }
    zhashx_delete (self->incoming, key);
}

//  Reads what the shard's worker wrote on d: 1 once the answer is whole
//  (in[0..in_total)), 0 while more is to come, -SH_EIO (closed, failed) or
//  -SH_EPROTO (bad counts or sizes, or more than one message). Every bound
//  of the prefix is checked before the buffer grows past what came.
static int
s_direct_read (s_direct_t *d)
{
    while (true) {
        if (d->in_len == d->in_cap) {
            size_t cap = d->in_cap ? d->in_cap * 2 : S_DIRECT_CHUNK;
            if (d->in_total && cap > d->in_total)
                cap = (size_t) d->in_total;
            if (cap <= d->in_len)
                return -SH_EPROTO;  //  more bytes than the message has
            d->in = (uint8_t *) realloc (d->in, cap);
            assert (d->in);
            d->in_cap = cap;
        }
        long got = fdio_recv_some (d->fd, d->in + d->in_len, d->in_cap - d->in_len);
        if (got <= 0)
            return (int) got;
        d->in_len += (size_t) got;
        if (!d->in_total && d->in_len >= 4) {
            uint32_t n = le_get_u32 (d->in);
            if (n < 2 || n > S_DIRECT_FRAMES)
                return -SH_EPROTO;
            if (d->in_len >= 4 * (1 + (size_t) n)) {
                uint64_t total = 4 * (1 + (uint64_t) n);
                for (uint32_t i = 0; i < n; i++) {
                    uint32_t len = le_get_u32 (d->in + 4 * (1 + i));
                    uint64_t limit = i == 0 ? ENVELOPE_HEADER_SIZE
                                   : i == 1 ? ENVELOPE_MAX_JSON : ENVELOPE_MAX_BLOB;
                    if (len > limit || (i == 0 && len != limit)
                        || (i >= 2 && len % sizeof (float)))
                        return -SH_EPROTO;
                    total += len;
                }
                if (total > SIZE_MAX / 2)
                    return -SH_EPROTO;
                d->in_total = total;
            }
        }
        if (d->in_total && d->in_len > d->in_total)
            return -SH_EPROTO;
        if (d->in_total && d->in_len == d->in_total)
            return 1;
    }
}

//  A direct connection is readable (or writable with a request left to
//  write, or broken): the shard's answer goes back to the requester as
//  s_on_actor_reply sends it; a broken connection or a malformed answer
//  closes it and answers the request it carried "unavailable".
static void
s_on_direct (s_actor_t *self, s_direct_t *d, short revents)
{
    if (d->fd < 0 || !d->local_id)
        return;
    uint64_t local_id = d->local_id;
    int rc = 0;
    if ((revents & ZMQ_POLLOUT) && d->out_pos < d->out_len)
        rc = s_direct_flush (d);
    if (rc == 0 && (revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        rc = s_direct_read (d);
    if (rc == 0)
        return;
    zmsg_t *msg = NULL;
    route_env_t head;
    if (rc == 1) {
        uint32_t n = le_get_u32 (d->in);
        size_t at = 4 * (1 + (size_t) n);
        msg = zmsg_new ();
        for (uint32_t i = 0; i < n; i++) {
            uint32_t len = le_get_u32 (d->in + 4 * (1 + i));
            zmsg_addmem (msg, d->in + at, len);
            at += len;
        }
        d->local_id = 0;
        d->in_len = 0;
        d->in_total = 0;
        if (d->in_cap > S_DIRECT_KEEP) {
            free (d->in);
            d->in = NULL;
            d->in_cap = 0;
        }
        if (route_peek_envelope (msg, &head) == 0 && head.is_reply
            && head.request_id == local_id) {
            s_on_actor_reply (self, msg);
            return;
        }
        zmsg_destroy (&msg);
        rc = -SH_EPROTO;
    }
    if (rc == -SH_EPROTO)
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: malformed answer on a shard's direct"
                        " connection (local id %" PRIu64 "): connection closed", local_id);
    else
        log_debug ("p2p: a shard's direct connection closed with local id %" PRIu64
                   " in flight", local_id);
    s_direct_close (d);
    s_in_fail (self, local_id, -SH_EUNAVAIL, rc == -SH_EPROTO
               ? "the shard actor's answer was malformed"
               : "the shard actor closed its connection");
}

//  --------------------------------------------------------------------------
//  State, ZAP, housekeeping

static void
s_on_state (s_actor_t *self, json_t *state)
{
    json_t *from = json_object_get (state, "peer_id");
    if (json_is_integer (from) && (uint64_t) json_integer_value (from) != self->peer_id)
        return;
    json_t *peers = json_object_get (state, "peers");
    if (json_is_object (peers)) {
        char me [24];
        snprintf (me, sizeof me, "%" PRIu64, self->peer_id);
        //  A state that does not list this peer yet (a joining peer that
        //  has not caught up) says nothing about who left.
        bool authoritative = json_object_get (peers, me) != NULL;
        self->links_touched = true;
        p2p_peers_update (self->peers, peers, authoritative, zclock_mono ());
    }
    json_t *applied = json_object_get (state, "applied");
    json_t *collections = json_object_get (state, "collections");
    if (!json_is_integer (applied) || json_integer_value (applied) < 0
    ||  !json_is_object (collections))
        return;
    char me [24];
    snprintf (me, sizeof me, "%" PRIu64, self->peer_id);
    zhashx_t *placed = zhashx_new ();
    const char *name;
    json_t *coll;
    json_object_foreach (collections, name, coll) {
        json_t *uid = json_object_get (coll, "uid");
        json_t *shards = json_object_get (coll, "shards");
        if (!json_is_integer (uid) || json_integer_value (uid) <= 0
        ||  !json_is_array (shards)) {
            zhashx_destroy (&placed);
            return;                 //  not a state to judge placements by
        }
        size_t index;
        json_t *shard;
        json_array_foreach (shards, index, shard) {
            json_t *id = json_object_get (shard, "shard_id");
            json_t *replicas = json_object_get (shard, "replicas");
            if (!json_is_integer (id) || json_integer_value (id) < 0
            ||  json_integer_value (id) > UINT32_MAX || !json_is_object (replicas)) {
                zhashx_destroy (&placed);
                return;
            }
            if (!json_object_get (replicas, me))
                continue;
            char key [48];
            s_shard_key ((uint64_t) json_integer_value (uid),
                         (uint32_t) json_integer_value (id), key, sizeof key);
            zhashx_insert (placed, key, (void *) "");
        }
    }
    zhashx_destroy (&self->placed);
    self->placed = placed;
    self->have_state = true;
    self->applied = (uint64_t) json_integer_value (applied);
    for (s_shard_t *shard = (s_shard_t *) zhashx_first (self->shards); shard;
         shard = (s_shard_t *) zhashx_next (self->shards))
        if (shard->uid <= self->applied && !zhashx_lookup (self->placed, shard->key))
            shard->gone = true;
}

static void
s_on_sub (s_actor_t *self)
{
    envelope_t *latest = NULL;
    for (int i = 0; i < S_BATCH && (zsock_events (self->sub) & ZMQ_POLLIN); i++) {
        envelope_t *env = NULL;
        int rc = envelope_recv (self->sub, &env);
        if (rc == -SH_EIO)
            break;
        if (rc || envelope_type (env) != MSG_META_STATE) {
            envelope_destroy (&env);
            continue;
        }
        envelope_destroy (&latest);
        latest = env;
    }
    if (latest) {
        json_t *state = json_object_get (envelope_json (latest), "state");
        if (json_is_object (state))
            s_on_state (self, state);
        envelope_destroy (&latest);
    }
}

//  One ZAP request (RFC 27): admit CURVE clients holding the cluster key.
static void
s_on_zap (s_actor_t *self)
{
    zmsg_t *request = zmsg_recv (self->zap);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    zframe_t *request_id = zmsg_pop (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *identity = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *key = zmsg_pop (request);
    bool ours = domain && streq (domain, S_ZAP_DOMAIN);
    bool allow;
    if (mechanism && streq (mechanism, "CURVE"))
        allow = ours && key && zframe_size (key) == 32
             && memcmp (zframe_data (key), self->curve_public, 32) == 0;
    else
        //  Only the p2p port is guarded; it takes CURVE clients only.
        allow = !ours && mechanism && streq (mechanism, "NULL");
    if (!allow)
        S_WARN_LIMITED (self, S_LIM_ZAP, "p2p: refused a %s connection from %s: %s",
                        mechanism ? mechanism : "?", address ? address : "?",
                        ours ? "it does not hold the cluster key" : "not a p2p connection");
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    if (request_id)
        zmsg_append (reply, &request_id);
    else
        zmsg_addstr (reply, "");
    zmsg_addstr (reply, allow ? "200" : "400");
    zmsg_addstr (reply, allow ? "OK" : "not a member of the cluster");
    zmsg_addstr (reply, "");
    zmsg_addmem (reply, NULL, 0);
    s_touch (self, self->zap);
    if (zmsg_send (&reply, self->zap))
        zmsg_destroy (&reply);
    zstr_free (&version);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zframe_destroy (&request_id);
    zframe_destroy (&identity);
    zframe_destroy (&key);
    zmsg_destroy (&request);
}

//  Failed handshakes on the p2p port: a client without the cluster key
//  (its HELLO does not decrypt), plain ZMTP against CURVE, or not ZMTP at
//  all. ZAP refusals are logged by s_on_zap, with the address.
static void
s_on_tcp_monitor (s_actor_t *self)
{
    while (zsock_events (self->tcp_monitor) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv (self->tcp_monitor);
        if (!msg)
            return;
        zframe_t *head = zmsg_first (msg);
        uint16_t event = head && zframe_size (head) >= 6
                       ? (uint16_t) (zframe_data (head) [0] | zframe_data (head) [1] << 8) : 0;
        zmsg_destroy (&msg);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
        ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            S_WARN_LIMITED (self, S_LIM_ZAP, "p2p: a handshake on the p2p port failed%s",
                            self->curve ? " (a client without the cluster key, or plain"
                                          " tcp)" : "");
    }
}

//  Times out forwarded requests, forgets delivered ones nobody will answer,
//  closes shard DEALERs that are gone or idle.
static void
s_housekeeping (s_actor_t *self)
{
    uint64_t now_ms = envelope_now_ms ();
    zlistx_t *keys = zhashx_keys (self->outgoing);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        s_out_t *out = (s_out_t *) zhashx_lookup (self->outgoing, key);
        if (!out || out->deadline > now_ms)
            continue;
        char why [ROUTE_MAX_URI + 96];
        snprintf (why, sizeof why, "%s did not answer %s in time", out->target,
                  msg_type_name (out->type));
        S_WARN_LIMITED (self, S_LIM_SEND, "p2p: rid=%" PRIu64 ": %s", out->request_id, why);
        route_t asked;
        memset (&asked, 0, sizeof asked);
        asked.actor = out->actor;
        asked.dst = out->dst;
        asked.uid = out->uid;
        asked.shard = out->shard;
        s_answer_local (self, out->routing, &asked, out->type, out->request_id,
                        out->deadline, -SH_ETIMEDOUT, why);
        zhashx_delete (self->outgoing, key);
    }
    zlistx_destroy (&keys);

    keys = zhashx_keys (self->incoming);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        s_in_t *in = (s_in_t *) zhashx_lookup (self->incoming, key);
        if (!in)
            continue;
        s_shard_t *shard = in->shard_key [0]
                         ? (s_shard_t *) zhashx_lookup (self->shards, in->shard_key) : NULL;
        if (shard && shard->gone) {
            char why [96];
            snprintf (why, sizeof why, "shard %s left peer %" PRIu64, shard->key,
                      self->peer_id);
            route_t asked;
            memset (&asked, 0, sizeof asked);
            asked.actor = in->actor;
            asked.src = in->src;
            asked.uid = in->uid;
            asked.shard = in->shard;
            asked.token = in->token;
            route_env_t head = { .type = in->type, .request_id = in->request_id };
            s_answer_remote (self, in->conn, &asked, &head, -SH_EUNAVAIL, why);
        }
        else
        if (in->expires > now_ms)
            continue;
        if (shard && shard->pending)
            shard->pending--;
        zhashx_delete (self->incoming, key);
    }
    zlistx_destroy (&keys);

    int64_t now = zclock_mono ();
    keys = zhashx_keys (self->shards);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        s_shard_t *shard = (s_shard_t *) zhashx_lookup (self->shards, key);
        //  A direct connection whose request was given up on (expired, or
        //  its shard gone) is closed: its late answer must never be taken
        //  for the next request's.
        for (size_t i = 0; shard && i < S_DIRECT_MAX; i++) {
            s_direct_t *d = &shard->directs [i];
            char id [17];
            s_key (d->local_id, id);
            if (d->fd >= 0 && d->local_id && !zhashx_lookup (self->incoming, id))
                s_direct_close (d);
        }
        if (shard && (shard->gone || (shard->pending == 0
                                      && now - shard->last_used >= S_SHARD_IDLE_MS))) {
            log_debug ("p2p: closed shard %s (%s)", key, shard->gone ? "gone" : "idle");
            zhashx_delete (self->shards, key);
        }
    }
    zlistx_destroy (&keys);
    self->links_touched = true;
    p2p_peers_tick (self->peers, now);
}

//  --------------------------------------------------------------------------
//  Local stream connections (route.h)

static void
s_lconn_close (s_lconn_t *lconn, const char *why)
{
    if (lconn->fd < 0)
        return;
    log_debug ("p2p: local stream connection %" PRIu64 " closed: %s", lconn->id, why);
    close (lconn->fd);
    lconn->fd = -1;
}

static void
s_on_accept (s_actor_t *self)
{
    while (true) {
        int fd = accept4 (self->stream_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                //  Out of fds: the pending connection would wake every
                //  turn; it waits for the next sweep instead.
                S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: cannot accept a local stream"
                                " connection: %s", strerror (errno));
                self->accept_after = zclock_mono () + S_SWEEP_MS;
            }
            return;
        }
        if (self->n_lconns >= S_STREAM_MAX) {
            S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: refused a local stream connection:"
                            " %d open already", S_STREAM_MAX);
            close (fd);
            continue;
        }
        if (self->n_lconns == self->cap_lconns) {
            self->cap_lconns = self->cap_lconns ? self->cap_lconns * 2 : 16;
            self->lconns = (s_lconn_t **) realloc (self->lconns,
                                                   self->cap_lconns * sizeof *self->lconns);
            assert (self->lconns);
        }
        s_lconn_t *lconn = (s_lconn_t *) zmalloc (sizeof (s_lconn_t));
        lconn->id = ++self->next_lconn;
        lconn->fd = fd;
        lconn->stream = route_stream_new ();
        self->lconns [self->n_lconns++] = lconn;
    }
}

//  What a local stream connection sent: each message handled as if it had
//  come on the ROUTER (s_on_local), from the connection's routing id.
static void
s_on_stream (s_actor_t *self, s_lconn_t *lconn)
{
    if (lconn->fd < 0)
        return;
    int rc = route_stream_read (lconn->stream, lconn->fd);
    zmsg_t *msg;
    while (lconn->fd >= 0 && (msg = route_stream_next (lconn->stream))) {
        uint8_t id [S_STREAM_ID_SIZE];
        id [0] = S_STREAM_MARK;
        memcpy (id + 1, &lconn->id, sizeof lconn->id);
        zmsg_pushmem (msg, id, sizeof id);
        s_on_local (self, msg);
    }
    if (rc == -SH_EPROTO)
        S_WARN_LIMITED (self, S_LIM_LOCAL, "p2p: malformed message on a local stream"
                        " connection: closed");
    if (rc)
        s_lconn_close (lconn, rc == -SH_EIO ? "the local actor closed it" : "malformed");
}

//  Writes what the turn queued on the stream connections; forgets those
//  closed.
static void
s_streams_flush (s_actor_t *self)
{
    for (size_t i = 0; i < self->n_lconns; ) {
        s_lconn_t *lconn = self->lconns [i];
        if (lconn->fd >= 0 && route_stream_pending (lconn->stream)
            && route_stream_flush (lconn->stream, lconn->fd))
            s_lconn_close (lconn, "the local actor is gone");
        if (lconn->fd < 0) {
            route_stream_destroy (&lconn->stream);
            free (lconn);
            self->lconns [i] = self->lconns [--self->n_lconns];
        }
        else
            i++;
    }
}

//  --------------------------------------------------------------------------
//  Setup and loop

static void
s_destroy (s_actor_t **self_p)
{
    s_actor_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->outgoing);
    zhashx_destroy (&self->incoming);
    zhashx_destroy (&self->shards);
    zhashx_destroy (&self->placed);
    p2p_peers_destroy (&self->peers);
    zsock_destroy (&self->raft);
    zsock_destroy (&self->sub);
    if (self->tcp_monitor)
        zmq_socket_monitor (zsock_resolve (self->tcp), NULL, 0);
    zsock_destroy (&self->tcp_monitor);
    zsock_destroy (&self->tcp);
    zsock_destroy (&self->local);
    zsock_destroy (&self->zap);
    free (self->touched);
    for (size_t i = 0; i < self->n_lconns; i++) {
        s_lconn_close (self->lconns [i], "stopping");
        route_stream_destroy (&self->lconns [i]->stream);
        free (self->lconns [i]);
    }
    free (self->lconns);
    if (self->stream_fd >= 0) {
        close (self->stream_fd);
        unlink (self->stream_path);
    }
    free (self);
    *self_p = NULL;
}

static void
s_set_bounds (zsock_t *sock, int hwm)
{
    s_set_int (sock, ZMQ_LINGER, 0);
    s_set_int (sock, ZMQ_SNDTIMEO, 0);
    s_set_int (sock, ZMQ_SNDHWM, hwm);
    s_set_int (sock, ZMQ_RCVHWM, hwm);
}

static int
s_setup (s_actor_t *self, const config_t *config)
{
    char endpoint [PATHS_MAX], ipc_dir [PATHS_MAX];
    if (paths_ipc_dir (self->storage, ipc_dir) || paths_mkdirs (ipc_dir)
    ||  paths_p2p_endpoint (self->storage, endpoint)) {
        log_error ("p2p: cannot prepare the ipc dir of storage %s", self->storage);
        return -SH_EIO;
    }
    //  The ZAP handler before the port: no handshake may happen unchecked.
    if (self->curve) {
        self->zap = zsock_new (ZMQ_REP);
        assert (self->zap);
        s_set_int (self->zap, ZMQ_LINGER, 0);
        if (zsock_bind (self->zap, S_ZAP_ENDPOINT) != 0) {
            log_error ("p2p: cannot bind the ZAP handler: %s", zmq_strerror (zmq_errno ()));
            return -SH_EIO;
        }
    }
    self->local = zsock_new (ZMQ_ROUTER);
    assert (self->local);
    s_set_bounds (self->local, S_LOCAL_HWM);
    s_set_int (self->local, ZMQ_ROUTER_MANDATORY, 1);
    if (zsock_bind (self->local, "%s", endpoint) != 0) {
        log_error ("p2p: cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }

    //  The stream socket beside the ROUTER; without it the gateway uses the
    //  ROUTER alone.
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int len = snprintf (self->stream_path, sizeof self->stream_path, "%s/%s", ipc_dir,
                        ROUTE_STREAM_NAME);
    if (len > 0 && (size_t) len < sizeof addr.sun_path) {
        strcpy (addr.sun_path, self->stream_path);
        int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        //  A file left by a previous life of this actor is in the way.
        unlink (self->stream_path);
        if (fd >= 0 && (bind (fd, (struct sockaddr *) &addr, sizeof addr)
                        || listen (fd, 128))) {
            close (fd);
            fd = -1;
        }
        self->stream_fd = fd;
    }
    if (self->stream_fd < 0)
        log_warn ("p2p: no local stream socket at %s (%s): local actors use %s alone",
                  self->stream_path, strerror (errno), endpoint);

    self->tcp = zsock_new (ZMQ_ROUTER);
    assert (self->tcp);
    s_set_bounds (self->tcp, P2P_SNDHWM);
    s_set_int (self->tcp, ZMQ_ROUTER_MANDATORY, 1);
    s_set_int (self->tcp, ZMQ_HEARTBEAT_IVL, P2P_HEARTBEAT_IVL_MS);
    s_set_int (self->tcp, ZMQ_HEARTBEAT_TIMEOUT, P2P_HEARTBEAT_TIMEOUT_MS);
    s_set_int (self->tcp, ZMQ_HEARTBEAT_TTL, P2P_HEARTBEAT_TIMEOUT_MS);
    s_set_int (self->tcp, ZMQ_HANDSHAKE_IVL, S_HANDSHAKE_MS);
    int64_t max_frame = P2P_MAX_FRAME;
    zmq_setsockopt (zsock_resolve (self->tcp), ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    if (self->curve) {
        zsock_set_zap_domain (self->tcp, S_ZAP_DOMAIN);
        zsock_set_curve_server (self->tcp, 1);
        zsock_set_curve_secretkey (self->tcp, config->curve_secret_key);
    }
    //  Monitored before it binds, so no handshake goes unseen. The pipe is
    //  unbounded: libzmq's I/O thread blocks on a full monitor pipe.
    char monitor [96];
    snprintf (monitor, sizeof monitor, "inproc://p2p-tcp-monitor-%p", (void *) self);
    if (zmq_socket_monitor (zsock_resolve (self->tcp), monitor,
                            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        self->tcp_monitor = zsock_new (ZMQ_PAIR);
        assert (self->tcp_monitor);
        s_set_int (self->tcp_monitor, ZMQ_LINGER, 0);
        s_set_int (self->tcp_monitor, ZMQ_RCVHWM, 0);
        if (zsock_connect (self->tcp_monitor, "%s", monitor) != 0) {
            zmq_socket_monitor (zsock_resolve (self->tcp), NULL, 0);
            zsock_destroy (&self->tcp_monitor);
        }
    }
    const char *host = config->host && *config->host ? config->host : "0.0.0.0";
    bool ipv6 = strchr (host, ':') != NULL;
    if (ipv6)
        s_set_int (self->tcp, ZMQ_IPV6, 1);
    snprintf (self->tcp_endpoint, sizeof self->tcp_endpoint,
              ipv6 ? "tcp://[%s]:%d" : "tcp://%s:%d", host, config->p2p_port);
    if (zsock_bind (self->tcp, "%s", self->tcp_endpoint) < 0) {
        int err = zmq_errno ();
        log_error ("p2p: cannot listen on %s: %s%s", self->tcp_endpoint, zmq_strerror (err),
                   err == EADDRINUSE ? " (another process holds cluster.p2p.port)" : "");
        return -SH_EIO;
    }

    char meta [PATHS_MAX], raft [PATHS_MAX];
    if (paths_meta_endpoint (self->storage, meta) || paths_raft_endpoint (self->storage, raft))
        return -SH_EINVAL;
    self->sub = zsock_new (ZMQ_SUB);
    self->raft = zsock_new (ZMQ_DEALER);
    assert (self->sub && self->raft);
    s_set_int (self->sub, ZMQ_LINGER, 0);
    zsock_set_subscribe (self->sub, "");
    s_set_bounds (self->raft, S_LOCAL_HWM);
    if (zsock_connect (self->sub, "%s", meta) || zsock_connect (self->raft, "%s", raft)) {
        log_error ("p2p: cannot connect to the raft actor: %s", zmq_strerror (zmq_errno ()));
        return -SH_EIO;
    }
    log_info ("p2p: peer_id=%" PRIu64 " listening on %s (%s), local actors at %s",
              self->peer_id, self->tcp_endpoint,
              self->curve ? "CURVE, cluster key required" : "plain tcp", endpoint);
    return 0;
}

static s_actor_t *
s_new (const config_t *config, uint64_t peer_id)
{
    s_actor_t *self = (s_actor_t *) zmalloc (sizeof (s_actor_t));
    self->peer_id = peer_id;
    snprintf (self->storage, sizeof self->storage, "%s",
              config->storage_path ? config->storage_path : "./storage");
    self->curve = config->curve_public_key && config->curve_secret_key;
    if (self->curve && !zmq_z85_decode (self->curve_public, config->curve_public_key))
        self->curve = false;        //  config_load checked it; never here
    self->peers = p2p_peers_new (peer_id, self->curve ? config->curve_public_key : NULL,
                                 self->curve ? config->curve_secret_key : NULL);
    p2p_peers_set_fail_handler (self->peers, s_on_send_failed, self);
    self->outgoing = zhashx_new ();
    zhashx_set_destructor (self->outgoing, s_out_destroy);
    self->incoming = zhashx_new ();
    zhashx_set_destructor (self->incoming, s_in_destroy);
    self->shards = zhashx_new ();
    zhashx_set_destructor (self->shards, s_shard_destroy);
    self->placed = zhashx_new ();
    self->stream_fd = -1;
    //  Tokens and local ids start at random points, so a restarted actor
    //  does not take a reply meant for its previous life as its own.
    randombytes_buf (&self->next_token, sizeof self->next_token);
    randombytes_buf (&self->next_local_id, sizeof self->next_local_id);
    return self;
}

//  Reads up to S_BATCH messages from a socket through handler; a socket
//  left with more is looked at again before the loop sleeps.
static void
s_drain (s_actor_t *self, s_item_kind_t kind, zsock_t *sock, void *tag)
{
    for (int i = 0; zsock_events (sock) & ZMQ_POLLIN; i++) {
        if (i == S_BATCH) {
            s_touch (self, sock);
            return;
        }
        bool too_many = false;
        zmsg_t *msg = s_recv_bounded (sock, S_MAX_FRAMES, &too_many);
        if (!msg) {
            if (too_many)
                S_WARN_LIMITED (self, kind == S_I_LOCAL ? S_LIM_LOCAL : S_LIM_TCP,
                                "p2p: dropped a message of more than %d frames from %s",
                                S_MAX_FRAMES, kind == S_I_TCP ? "a peer"
                                            : kind == S_I_LINK ? p2p_link_uri (tag)
                                            : "a local actor");
            if (zsys_interrupted)
                return;
            continue;
        }
        switch (kind) {
            case S_I_LOCAL: s_on_local (self, msg); break;
            case S_I_TCP: s_on_tcp (self, msg); break;
            case S_I_LINK: s_on_link (self, (p2p_link_t *) tag, msg); break;
            case S_I_RAFT:
            case S_I_SHARD: s_on_actor_reply (self, msg); break;
            default: zmsg_destroy (&msg); break;
        }
    }
}

static int
s_run (s_actor_t *self)
{
    size_t cap = 0;
    zmq_pollitem_t *items = NULL;
    zsock_t **socks = NULL;
    s_item_kind_t *kinds = NULL;
    void **tags = NULL;
    p2p_link_t **links = NULL;
    size_t cap_links = 0;
    zsock_t **checking = NULL;
    size_t cap_checking = 0;
    size_t last_n = 0;
    bool check_all = true;
    while (!zsys_interrupted) {
        size_t n_links = p2p_peers_links (self->peers, links, cap_links);
        if (n_links > cap_links) {
            cap_links = n_links * 2;
            links = (p2p_link_t **) realloc (links, cap_links * sizeof *links);
            assert (links);
            n_links = p2p_peers_links (self->peers, links, cap_links);
        }
        size_t need = 7 + (1 + S_DIRECT_MAX) * zhashx_size (self->shards) + 2 * n_links
                    + self->n_lconns;
        if (need > cap) {
            cap = need * 2;
            items = (zmq_pollitem_t *) realloc (items, cap * sizeof *items);
            socks = (zsock_t **) realloc (socks, cap * sizeof *socks);
            kinds = (s_item_kind_t *) realloc (kinds, cap * sizeof *kinds);
            tags = (void **) realloc (tags, cap * sizeof *tags);
            assert (items && socks && kinds && tags);
        }
        size_t n = 0;
#define S_ADD(sock_, kind_, tag_) \
        do { items [n] = (zmq_pollitem_t) { NULL, zsock_fd (sock_), ZMQ_POLLIN, 0 }; \
             socks [n] = (sock_); kinds [n] = (kind_); tags [n] = (tag_); n++; } while (0)
        S_ADD (self->local, S_I_LOCAL, self->local);
        S_ADD (self->tcp, S_I_TCP, self->tcp);
        if (self->tcp_monitor)
            S_ADD (self->tcp_monitor, S_I_TCP_MONITOR, self->tcp_monitor);
        if (self->zap)
            S_ADD (self->zap, S_I_ZAP, self->zap);
        S_ADD (self->sub, S_I_SUB, self->sub);
        S_ADD (self->raft, S_I_RAFT, self->raft);
        for (s_shard_t *shard = (s_shard_t *) zhashx_first (self->shards); shard;
             shard = (s_shard_t *) zhashx_next (self->shards))
            S_ADD (shard->dealer, S_I_SHARD, shard);
        for (size_t i = 0; i < n_links; i++) {
            S_ADD (p2p_link_socket (links [i]), S_I_LINK, links [i]);
            S_ADD (p2p_link_monitor (links [i]), S_I_MONITOR, links [i]);
        }
#undef S_ADD
        //  Direct connections with a request in flight: plain fds, looked
        //  at only when poll says so (not counted in last_n).
        size_t n_zmq = n;
        for (s_shard_t *shard = (s_shard_t *) zhashx_first (self->shards); shard;
             shard = (s_shard_t *) zhashx_next (self->shards))
            for (size_t i = 0; i < S_DIRECT_MAX; i++) {
                s_direct_t *d = &shard->directs [i];
                if (d->fd < 0 || !d->local_id)
                    continue;
                short events = ZMQ_POLLIN;
                if (d->out_pos < d->out_len)
                    events |= ZMQ_POLLOUT;
                items [n] = (zmq_pollitem_t) { NULL, d->fd, events, 0 };
                socks [n] = NULL;
                kinds [n] = S_I_DIRECT;
                tags [n] = d;
                n++;
            }
        if (self->stream_fd >= 0 && zclock_mono () >= self->accept_after) {
            items [n] = (zmq_pollitem_t) { NULL, self->stream_fd, ZMQ_POLLIN, 0 };
            socks [n] = NULL;
            kinds [n] = S_I_ACCEPT;
            tags [n] = NULL;
            n++;
        }
        for (size_t i = 0; i < self->n_lconns; i++) {
            s_lconn_t *lconn = self->lconns [i];
            short events = ZMQ_POLLIN;
            if (route_stream_pending (lconn->stream))
                events |= ZMQ_POLLOUT;
            items [n] = (zmq_pollitem_t) { NULL, lconn->fd, events, 0 };
            socks [n] = NULL;
            kinds [n] = S_I_STREAM;
            tags [n] = lconn;
            n++;
        }
        //  A socket new since the last turn is asked at once.
        if (n_zmq != last_n)
            check_all = true;
        last_n = n_zmq;
        int64_t wait = self->next_sweep - zclock_mono ();
        if (check_all || self->n_touched || self->links_touched)
            wait = 0;
        int rc = zmq_poll (items, (int) n, wait < 0 ? 0 : wait > S_POLL_MS ? S_POLL_MS : wait);
        if (rc < 0) {
            if (zmq_errno () == EINTR)
                continue;
            log_error ("p2p: poll failed: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        //  What was used since the last look is looked at now; what the
        //  handlers below use is looked at on the next turn.
        if (self->n_touched > cap_checking) {
            cap_checking = self->n_touched * 2;
            checking = (zsock_t **) realloc (checking, cap_checking * sizeof *checking);
            assert (checking);
        }
        size_t n_checking = self->n_touched;
        if (n_checking)
            memcpy (checking, self->touched, n_checking * sizeof *checking);
        self->n_touched = 0;
        bool links_touched = self->links_touched;
        self->links_touched = false;
        bool all = check_all;
        check_all = false;
        //  Handlers add links and shards but never free one before the
        //  housekeeping below, so the pointers in tags stay valid.
        for (size_t i = 0; i < n; i++) {
            if (kinds [i] == S_I_DIRECT) {
                if (items [i].revents)
                    s_on_direct (self, (s_direct_t *) tags [i], items [i].revents);
                continue;
            }
            if (kinds [i] == S_I_ACCEPT) {
                if (items [i].revents)
                    s_on_accept (self);
                continue;
            }
            if (kinds [i] == S_I_STREAM) {
                //  Writes wait for the flush below.
                if (items [i].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
                    s_on_stream (self, (s_lconn_t *) tags [i]);
                continue;
            }
            bool look = all || (items [i].revents & ZMQ_POLLIN)
                     || (links_touched && (kinds [i] == S_I_LINK || kinds [i] == S_I_MONITOR));
            for (size_t j = 0; j < n_checking && !look; j++)
                look = checking [j] == socks [i];
            if (!look)
                continue;
            switch (kinds [i]) {
                case S_I_ZAP:
                    if (zsock_events (self->zap) & ZMQ_POLLIN)
                        s_on_zap (self);
                    break;
                case S_I_TCP_MONITOR: s_on_tcp_monitor (self); break;
                case S_I_SUB:
                    if (zsock_events (self->sub) & ZMQ_POLLIN) {
                        s_on_sub (self);
                        s_touch (self, self->sub);
                    }
                    break;
                case S_I_MONITOR:
                    if (zsock_events (socks [i]) & ZMQ_POLLIN) {
                        self->links_touched = true;
                        p2p_peers_on_monitor (self->peers, (p2p_link_t *) tags [i]);
                    }
                    break;
                case S_I_SHARD:
                    s_drain (self, kinds [i], ((s_shard_t *) tags [i])->dealer, tags [i]);
                    break;
                case S_I_LINK:
                    s_drain (self, kinds [i], p2p_link_socket ((p2p_link_t *) tags [i]),
                             tags [i]);
                    break;
                default: s_drain (self, kinds [i], (zsock_t *) tags [i], NULL); break;
            }
        }
        if (zclock_mono () >= self->next_sweep) {
            s_housekeeping (self);
            self->next_sweep = zclock_mono () + S_SWEEP_MS;
            //  Now and then every socket is asked, whatever its fd said.
            check_all = true;
        }
        s_streams_flush (self);
    }
    free (items);
    free (socks);
    free (kinds);
    free (tags);
    free (links);
    free (checking);
    return 0;
}

int
p2p_actor_main (const config_t *config, uint64_t peer_id)
{
    s_actor_t *self = s_new (config, peer_id);
    int rc = s_setup (self, config);
    if (rc == 0) {
        rc = s_run (self);
        log_info ("p2p: stopping");
    }
    s_destroy (&self);
    return rc ? 1 : 0;
}
