/*  p2p_peers: the p2p actor's table of the other peers and its connections
    to them.

    The table maps peer id -> uri. It is filled from the consensus state
    this node's raft actor publishes (<state>.peers) and from the "peers" a
    join reply brings to a peer that is joining (whose own state does not
    list anyone yet). A state that lists this peer is authoritative: peers
    it does not list are dropped. Any other update only adds or re-addresses.

    Each peer gets a link: one DEALER connected to route_uri_endpoint (uri)
    with ZMQ_IMMEDIATE (nothing queues towards a peer that is not connected),
    a bounded send queue (P2P_SNDHWM), sends that never block, zmq
    heartbeats (a dead peer is noticed within P2P_HEARTBEAT_TIMEOUT_MS) and
    a socket monitor that tells when the connection and its handshake
    (CURVE, when configured) are up. A message for an address whose id is
    not known yet (dst 0: a bootstrap uri) gets a link keyed by that uri,
    closed once idle for P2P_URI_LINK_IDLE_MS.

    A link just made has not had time to connect: what is sent on it in its
    first P2P_CONNECT_GRACE_MS waits in a short queue (P2P_QUEUE_MAX), sent
    when the handshake succeeds and failed through the fail handler when the
    connection fails or the grace time ends. So the first request to a new
    peer does not fail just because TCP had not connected yet.

    Every failed send is counted per peer uri as Qdrant reports
    message_send_failures: count, latest error and its time (RFC 3339). The
    entry goes on the first successful send to that uri, as Qdrant documents.

    Time comes in as arguments (now: zclock_mono ms) so the table logic is
    testable without waiting. Links retired by an update stay valid (their
    sockets open) until the next p2p_peers_tick, so the actor may hold link
    pointers for one turn of its loop.
*/
#ifndef SH_P2P_PEERS_H
#define SH_P2P_PEERS_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Largest frame accepted from a peer (ZMQ_MAXMSGSIZE on every tcp socket):
//  the largest JSON frame an envelope may carry. A peer that sends a larger
//  frame is disconnected by zmq before anything is allocated for it.
#define P2P_MAX_FRAME            (256u * 1024 * 1024)
//  Messages queued towards one peer before sends fail as "queue full".
#define P2P_SNDHWM               1000
//  A new link queues what is sent to it this long while it connects.
#define P2P_CONNECT_GRACE_MS     2000
//  Most messages waiting for a link to connect.
#define P2P_QUEUE_MAX            256
//  A link made for a bootstrap uri is closed after this long unused.
#define P2P_URI_LINK_IDLE_MS     (5 * 60 * 1000)
//  zmq heartbeats on peer connections.
#define P2P_HEARTBEAT_IVL_MS     1000
#define P2P_HEARTBEAT_TIMEOUT_MS 5000
//  Reconnect attempts back off from 100 ms to this.
#define P2P_RECONNECT_MAX_MS     2000

typedef struct _p2p_peers_t p2p_peers_t;
typedef struct _p2p_link_t p2p_link_t;

//  A message queued on a connecting link could not be sent: token is what
//  p2p_peers_send was given (0 for one-way messages, which are not
//  reported), status -SH_EUNAVAIL, why a message naming the peer.
typedef void (p2p_peers_fail_fn) (void *arg, uint64_t token, int status, const char *why);

//  A table for this peer (self_id). curve_public/curve_secret: the cluster
//  key pair (Z85), or both NULL for plain tcp. With keys, every link is a
//  CURVE client whose server key and own key pair are the cluster's.
p2p_peers_t *p2p_peers_new (uint64_t self_id, const char *curve_public,
                            const char *curve_secret);
void p2p_peers_destroy (p2p_peers_t **self_p);
void p2p_peers_set_fail_handler (p2p_peers_t *self, p2p_peers_fail_fn *fn, void *arg);

//  Applies a "peers" object {"<id>": "uri"}: adds and connects new peers,
//  reconnects a peer whose uri changed; authoritative also drops (closes)
//  peers not listed. This peer's own id is skipped; an entry whose id is not
//  a decimal u64 > 0 or whose uri route_uri_endpoint refuses is skipped and
//  logged. Returns the number of peers added, changed or dropped, or
//  -SH_EINVAL if peers is not an object.
int p2p_peers_update (p2p_peers_t *self, json_t *peers, bool authoritative, int64_t now);
//  The uri of peer id (borrowed), NULL if not in the table.
const char *p2p_peers_uri (p2p_peers_t *self, uint64_t id);
//  Peers in the table.
size_t p2p_peers_size (p2p_peers_t *self);

//  Sends msg (taken in every case) to peer dst, or when dst is 0 to the
//  peer at uri (a link for that uri is made if needed). token is handed
//  back to the fail handler should a queued message fail later.
//  0: sent, or queued on a link still within its connect grace time.
//  -SH_EUNAVAIL: unknown peer, not connected, queue full (counted as a
//  send failure of that uri); -SH_EINVAL: a uri that is not a peer address.
//  why gets a message naming the peer on error.
int p2p_peers_send (p2p_peers_t *self, uint64_t dst, const char *uri, zmsg_t **msg_p,
                    uint64_t token, int64_t now, char *why, size_t whylen);

//  Failure accounting, per peer uri (what p2p_peers_send does itself).
//  unix_ms is the wall-clock time of the failure.
void p2p_peers_note_failure (p2p_peers_t *self, const char *uri, const char *error,
                             uint64_t unix_ms);
void p2p_peers_note_success (p2p_peers_t *self, const char *uri);

//  P2P_INFO's reply (yours): {"message_send_failures": {"<uri>": {"count",
//  "latest_error", "latest_error_timestamp"}}, "peers": {"<id>": {"uri",
//  "connected"}}}.
json_t *p2p_peers_info (p2p_peers_t *self);

//  Links, for the actor's poll loop. Fills links with up to max of them
//  (live ones and those retired since the last tick) and returns how many
//  there are in all.
size_t p2p_peers_links (p2p_peers_t *self, p2p_link_t **links, size_t max);
//  The link's DEALER (replies from the peer arrive on it) and monitor.
zsock_t *p2p_link_socket (p2p_link_t *link);
zsock_t *p2p_link_monitor (p2p_link_t *link);
//  Peer id (0 for a uri link) and uri of a link.
uint64_t p2p_link_peer (p2p_link_t *link);
const char *p2p_link_uri (p2p_link_t *link);
bool p2p_link_connected (p2p_link_t *link);
//  Reads the link's pending monitor events: marks it up (and sends what
//  waits in its queue) or down (and fails the queue).
void p2p_peers_on_monitor (p2p_peers_t *self, p2p_link_t *link);

//  Ends connect grace times that ran out (failing their queues), closes
//  idle uri links, and destroys retired links. Call once per loop turn.
void p2p_peers_tick (p2p_peers_t *self, int64_t now);

//  Sends msg on sock without blocking (ZMQ_DONTWAIT), every frame; msg is
//  kept. 0, or -SH_EUNAVAIL if zmq would block or refused the first frame.
int p2p_peers_sendmsg (zsock_t *sock, zmsg_t *msg);

//  Formats unix_ms as RFC 3339 UTC with milliseconds into buf (>= 25 bytes).
void p2p_peers_rfc3339 (uint64_t unix_ms, char *buf, size_t size);

#endif
