/*  gw_client: one HTTP connection's sockets to the other actors, and calls
    with deadlines over them.

    A gw_conn_t holds a DEALER to the raft actor and a small cache of
    DEALERs to shard actors keyed by (collection uid, shard id), each made on
    first use. They are connected with a 10 ms reconnect interval: a shard
    actor that the supervisor is still starting is reached as soon as it
    binds, and requests sent meanwhile wait in the socket's queue.

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
#include "common/log.h"
#include "common/paths.h"
#include <string.h>

//  Shard sockets kept per connection before the least recently used go.
#define S_SHARD_CACHE 64
//  Deadline used when a request carries none (ms), as the default ?timeout.
#define S_DEFAULT_DEADLINE_MS 60000
//  Reconnect interval of actor sockets (ms).
#define S_RECONNECT_MS 10

typedef struct {
    uint64_t uid;                       //  collection uid
    uint32_t shard;                     //  shard id
    zsock_t *sock;                      //  DEALER to its actor
    uint64_t used;                      //  conn->clock at last use (LRU)
} s_shard_sock_t;

struct _gw_conn_t {
    gw_t *gw;                           //  for the storage path (endpoints)
    zsock_t *raft;                      //  DEALER to the raft actor, or NULL
    s_shard_sock_t *shards;             //  shard socket cache
    size_t n_shards;                    //  entries in use
    size_t cap_shards;                  //  entries allocated
    uint64_t next_id;                   //  next request id on this connection
    uint64_t clock;                     //  counts calls, for LRU
};

gw_conn_t *
gw_conn_new (gw_t *gw)
{
    gw_conn_t *self = (gw_conn_t *) zmalloc (sizeof (gw_conn_t));
    assert (self);
    self->gw = gw;
    self->next_id = 1;
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
    for (size_t i = 0; i < self->n_shards; i++)
        zsock_destroy (&self->shards [i].sock);
    free (self->shards);
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

//  The cached socket for (uid, shard), made on first use. Evicts the least
//  recently used socket not used by the current call (used < clock) when
//  the cache is full.
static zsock_t *
s_shard_sock (gw_conn_t *self, uint64_t uid, uint32_t shard)
{
    for (size_t i = 0; i < self->n_shards; i++)
        if (self->shards [i].uid == uid && self->shards [i].shard == shard) {
            if (!self->shards [i].sock) {
                char endpoint [PATHS_MAX];
                if (paths_shard_endpoint (gw_config (self->gw)->storage_path, uid, shard,
                                          endpoint))
                    return NULL;
                self->shards [i].sock = s_dealer (endpoint);
            }
            self->shards [i].used = self->clock;
            return self->shards [i].sock;
        }
    if (self->n_shards >= S_SHARD_CACHE) {
        size_t victim = SIZE_MAX;
        for (size_t i = 0; i < self->n_shards; i++)
            if (self->shards [i].used < self->clock
                && (victim == SIZE_MAX || self->shards [i].used < self->shards [victim].used))
                victim = i;
        if (victim != SIZE_MAX) {
            zsock_destroy (&self->shards [victim].sock);
            self->shards [victim] = self->shards [--self->n_shards];
        }
    }
    char endpoint [PATHS_MAX];
    if (paths_shard_endpoint (gw_config (self->gw)->storage_path, uid, shard, endpoint))
        return NULL;
    zsock_t *sock = s_dealer (endpoint);
    if (!sock)
        return NULL;
    if (self->n_shards == self->cap_shards) {
        self->cap_shards = self->cap_shards ? self->cap_shards * 2 : 8;
        self->shards = (s_shard_sock_t *) realloc (self->shards,
                                                   self->cap_shards * sizeof (s_shard_sock_t));
        assert (self->shards);
    }
    self->shards [self->n_shards++] = (s_shard_sock_t) {
        .uid = uid, .shard = shard, .sock = sock, .used = self->clock
    };
    return sock;
}

//  Closes a socket whose call timed out (see the file comment).
static void
s_drop_sock (gw_conn_t *self, zsock_t *sock)
{
    if (self->raft == sock) {
        zsock_destroy (&self->raft);
        return;
    }
    for (size_t i = 0; i < self->n_shards; i++)
        if (self->shards [i].sock == sock)
            zsock_destroy (&self->shards [i].sock);
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

int
gw_call_shards (gw_conn_t *conn, uint64_t uid, size_t n, const uint32_t *shard_ids,
                envelope_t **requests, envelope_t **replies)
{
    if (n == 0)
        return 0;
    conn->clock++;
    zsock_t **socks = (zsock_t **) calloc (n, sizeof (zsock_t *));
    uint64_t *ids = (uint64_t *) calloc (n, sizeof (uint64_t));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc (n, sizeof (zmq_pollitem_t));
    zsock_t **item_socks = (zsock_t **) calloc (n, sizeof (zsock_t *));
    assert (socks && ids && items && item_socks);

    uint64_t deadline = 0;
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        replies [i] = NULL;
        if (!requests [i])
            continue;
        uint64_t d = s_deadline_of (requests [i]);
        if (d > deadline)
            deadline = d;
        socks [i] = s_shard_sock (conn, uid, shard_ids [i]);
        if (!socks [i]) {
            envelope_destroy (&requests [i]);
            continue;
        }
        ids [i] = conn->next_id++;
        envelope_set_request_id (requests [i], ids [i]);
        if (envelope_send (&requests [i], socks [i])) {
            log_debug ("gateway: req=%" PRIu64 " send to shard %" PRIu64 "/%u failed",
                       ids [i], uid, shard_ids [i]);
            socks [i] = NULL;           //  nothing to wait for
            continue;
        }
        pending++;
    }

    while (pending > 0) {
        uint64_t now = envelope_now_ms ();
        if (now >= deadline)
            break;
        //  Poll each distinct socket that still owes a reply.
        size_t n_items = 0;
        for (size_t i = 0; i < n; i++) {
            if (!socks [i] || replies [i])
                continue;
            bool seen = false;
            for (size_t k = 0; k < n_items && !seen; k++)
                seen = item_socks [k] == socks [i];
            if (seen)
                continue;
            item_socks [n_items] = socks [i];
            items [n_items] = (zmq_pollitem_t) { zsock_resolve (socks [i]), 0, ZMQ_POLLIN, 0 };
            n_items++;
        }
        int rc = zmq_poll (items, (int) n_items, (long) (deadline - now));
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        if (rc <= 0)
            continue;
        for (size_t k = 0; k < n_items; k++) {
            if (!(items [k].revents & ZMQ_POLLIN))
                continue;
            //  Drain what is ready on this socket without blocking.
            while (zsock_events (item_socks [k]) & ZMQ_POLLIN) {
                envelope_t *got = NULL;
                if (envelope_recv (item_socks [k], &got))
                    continue;
                size_t match = SIZE_MAX;
                for (size_t i = 0; i < n && match == SIZE_MAX; i++)
                    if (socks [i] == item_socks [k] && !replies [i]
                        && ids [i] == envelope_request_id (got))
                        match = i;
                if (match == SIZE_MAX || !envelope_is_reply (got)) {
                    log_debug ("gateway: dropped stale shard reply req=%" PRIu64,
                               envelope_request_id (got));
                    envelope_destroy (&got);
                    continue;
                }
                replies [match] = got;
                pending--;
            }
        }
    }

    int result = 0;
    for (size_t i = 0; i < n; i++) {
        if (replies [i])
            continue;
        result = -SH_ETIMEDOUT;
        if (socks [i]) {
            log_debug ("gateway: req=%" PRIu64 " no reply from shard %" PRIu64
                       "/%u by the deadline", ids [i], uid, shard_ids [i]);
            zsock_t *late = socks [i];
            s_drop_sock (conn, late);
            for (size_t j = 0; j < n; j++)
                if (socks [j] == late)
                    socks [j] = NULL;
        }
    }
    free (item_socks);
    free (items);
    free (ids);
    free (socks);
    return result;
}
