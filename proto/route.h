/*  route: the frame that carries an envelope between peers through the p2p
    actors. Every message to, from or through a p2p actor is

        [route frame][envelope frames...]      (after any ROUTER routing id)

    A local actor (DEALER) sends a request to another peer's actor by
    sending [route: kind request, dst peer (or dst uri), actor, uid, shard]
    [envelope] to its own p2p actor (ROUTER at paths_p2p_endpoint). The p2p
    actor fills src, gives the request a token, and sends it over tcp to the
    destination's p2p actor, which delivers the bare envelope to the named
    local actor (raft: paths_raft_endpoint; shard: paths_shard_endpoint) and
    carries its reply back the same way (kind reply, same token). The
    requester receives [route: kind reply][envelope reply] with its own
    request id. One-way messages (RAFT_MESSAGE) have kind oneway and no
    reply.

    Layout, 48 bytes little-endian, then uri_len bytes of uri (no NUL):
      magic "SP" (2), version u8 (ROUTE_VERSION), kind u8 (route_kind_t),
      actor u8 (route_actor_t), flags u8 (0), uri_len u16,
      src peer u64, dst peer u64, uid u64, shard u32, reserved u32 (0),
      token u64
    A dst peer of 0 means "the peer at uri" (a bootstrap address whose id is
    not known yet). The decoder checks every field; anything else is
    -SH_EPROTO.
*/
#ifndef SH_ROUTE_H
#define SH_ROUTE_H

#include "proto/envelope.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTE_VERSION     1
#define ROUTE_HEADER_SIZE 48
#define ROUTE_MAX_URI     1024

typedef enum {
    ROUTE_REQUEST = 0,              //  expects one reply
    ROUTE_REPLY = 1,                //  answers a request (same token)
    ROUTE_ONEWAY = 2,               //  no reply
    ROUTE_KIND_COUNT
} route_kind_t;

typedef enum {
    ROUTE_RAFT = 1,                 //  the raft actor
    ROUTE_SHARD = 2,                //  shard actor (uid, shard)
    ROUTE_P2P = 3,                  //  the p2p actor itself
    ROUTE_ACTOR_END
} route_actor_t;

typedef struct {
    uint8_t kind;                   //  route_kind_t
    uint8_t actor;                  //  route_actor_t
    uint64_t src;                   //  sending peer id (filled by its p2p actor)
    uint64_t dst;                   //  destination peer id, 0 = the peer at uri
    uint64_t uid;                   //  ROUTE_SHARD: collection uid
    uint32_t shard;                 //  ROUTE_SHARD: shard id
    uint64_t token;                 //  the sending p2p actor's request token
    char uri [ROUTE_MAX_URI + 1];   //  dst 0: "http://host:port" (p2p port); else ""
} route_t;

//  The frame for route (yours). NULL if the uri is longer than ROUTE_MAX_URI.
zframe_t *route_encode (const route_t *route);
//  Parses a frame. 0, or -SH_EPROTO (bad magic, version, kind, actor, sizes).
int route_decode (const void *data, size_t size, route_t *out);

//  What the p2p actor reads of the envelope behind a route frame without
//  decoding it: the JSON is parsed only by the actor it is for.
typedef struct {
    uint16_t type;                  //  msg_type_t
    bool is_reply;                  //  envelope kind 1
    int32_t status;                 //  0 or -SH_E... (replies)
    uint64_t request_id;            //  the sender's request id
    uint64_t deadline;              //  unix ms, 0 = none
} route_env_t;

//  Checks that the frames of msg (the envelope's frames only: no routing id,
//  no route frame) are laid out as envelope.h says (a 32-byte header with
//  the right magic, version, kind and a status <= 0, a JSON frame of at most
//  ENVELOPE_MAX_JSON bytes, at most ENVELOPE_MAX_BLOBS blobs, each a multiple
//  of 4 bytes and at most ENVELOPE_MAX_BLOB) and reads its header into out.
//  The JSON itself is not parsed. 0 or -SH_EPROTO.
int route_peek_envelope (zmsg_t *msg, route_env_t *out);
//  Rewrites the request id of an envelope header frame in place.
//  0, or -SH_EPROTO if head is not a 32-byte envelope header.
int route_set_request_id (zframe_t *head, uint64_t request_id);

//  --- [route][envelope] messages over a stream socket ----------------------
//  The gateway's threads reach their node's p2p actor on a unix stream
//  socket too (<ipc dir>/ROUTE_STREAM_NAME), beside its ROUTER: the frames
//  of each message as the ROUTER takes them (no routing id), preceded by
//  their count and lengths (u32 n, n x u32 length, the n frames; little-
//  endian), as proto/envelope.h frames a lone envelope. Unlike the shards'
//  direct sockets, many requests may be in flight on one connection and
//  replies come back in any order (the request id tells them apart).

#define ROUTE_STREAM_NAME   "p2ps.sock"
//  Frames of a message: route, envelope header and JSON, the blobs.
#define ROUTE_STREAM_FRAMES (3 + ENVELOPE_MAX_BLOBS)

typedef struct _route_stream_t route_stream_t;

//  A connection's buffers (the fd stays the caller's).
route_stream_t *route_stream_new (void);
void route_stream_destroy (route_stream_t **self_p);
//  Reads what fd (non-blocking) has for us. 0 (perhaps nothing new),
//  -SH_EIO (closed or failed), -SH_EPROTO (a count or length out of bounds:
//  the stream cannot be trusted after it). Sizes are checked before the
//  buffer grows, and it grows only with the bytes that came.
int route_stream_read (route_stream_t *self, int fd);
//  The next whole message read (yours), or NULL.
zmsg_t *route_stream_next (route_stream_t *self);
//  Queues msg's frames (kept) for route_stream_flush. -SH_EINVAL if msg has
//  no frame or more than ROUTE_STREAM_FRAMES.
int route_stream_queue (route_stream_t *self, zmsg_t *msg);
//  Writes what is queued without blocking: 0 (all written, or the rest
//  waits for room), -SH_EIO (the other side is gone).
int route_stream_flush (route_stream_t *self, int fd);
//  Bytes queued and not written yet.
size_t route_stream_pending (const route_stream_t *self);

//  Host and port of a peer uri such as "http://10.0.0.1:6335" or
//  "tcp://[::1]:6335" (scheme http, https, grpc or tcp; default port 6335),
//  written as a zmq tcp endpoint "tcp://host:port" into buf. 0 or -SH_EINVAL.
int route_uri_endpoint (const char *uri, char *buf, size_t size);

#endif
