/*  envelope: the one message format between shoal's processes.

    Frames on the wire (after any ROUTER routing-id frame):
      0  header, 32 bytes little-endian:
           magic "SH" (2), version u8 (ENVELOPE_VERSION), kind u8 (0 request,
           1 reply), type u16 (msg_type_t), reserved u16, status i32 (0 or a
           negative SH_E code, replies only), request id u64, deadline u64
           (unix ms; 0 = none), reserved u32
      1  JSON metadata (UTF-8, a JSON object; "{}" when empty)
      2.. raw little-endian float32 blobs ("vector frames"), at most
           ENVELOPE_MAX_BLOBS, each a multiple of 4 bytes

    Vectors never travel as JSON text: a JSON field refers to them by blob
    index, offset and dimension (see proto/vecref.h). Every decoder bound is
    checked: a malformed envelope is -SH_EPROTO, never trusted, never fatal.
*/
#ifndef SH_ENVELOPE_H
#define SH_ENVELOPE_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define ENVELOPE_VERSION     1
#define ENVELOPE_HEADER_SIZE 32
#define ENVELOPE_MAX_BLOBS   16
//  Largest JSON frame accepted (bytes): bounds what a peer can make us parse.
#define ENVELOPE_MAX_JSON    (256u * 1024 * 1024)
//  Largest blob accepted (bytes).
#define ENVELOPE_MAX_BLOB    (1024u * 1024 * 1024)

typedef struct _envelope_t envelope_t;

//  A new request of the given type. deadline_ms is an absolute unix time in
//  ms, 0 for none.
envelope_t *envelope_new (uint16_t type, uint64_t request_id, uint64_t deadline_ms);
//  A reply to request: same type, request id, deadline and routing id.
//  status is 0 or a negative SH_E code.
envelope_t *envelope_new_reply (const envelope_t *request, int status);
void envelope_destroy (envelope_t **self_p);

uint16_t envelope_type (const envelope_t *self);
bool     envelope_is_reply (const envelope_t *self);
int      envelope_status (const envelope_t *self);
uint64_t envelope_request_id (const envelope_t *self);
uint64_t envelope_deadline (const envelope_t *self);
void     envelope_set_status (envelope_t *self, int status);
//  Re-stamps a request's id (the gateway numbers a connection's calls itself,
//  so that a late reply to an abandoned call is recognised and dropped).
void     envelope_set_request_id (envelope_t *self, uint64_t request_id);

//  The JSON frame. envelope_json never returns NULL (an empty object is made
//  on demand); the reference is borrowed. envelope_set_json steals json.
json_t *envelope_json (envelope_t *self);
void    envelope_set_json (envelope_t *self, json_t *json);
//  Convenience for error replies: sets status and {"error": message}.
void    envelope_set_error (envelope_t *self, int status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The error message of a failed reply ({"error": ...}), or sh_strerror.
const char *envelope_error (envelope_t *self);

//  Appends a float32 blob (copied, converted to little-endian); returns its
//  index, or -SH_EINVAL if there are already ENVELOPE_MAX_BLOBS.
int envelope_add_floats (envelope_t *self, const float *data, size_t count);
//  Starts an empty blob and returns its index; grow it with envelope_append_floats.
int envelope_new_blob (envelope_t *self);
//  Appends to blob index; returns the float offset at which data starts.
int64_t envelope_append_floats (envelope_t *self, int index, const float *data, size_t count);
size_t envelope_blob_count (const envelope_t *self);
//  Borrowed view of blob index as floats (host order; aligned); NULL if no such blob.
const float *envelope_floats (const envelope_t *self, size_t index, size_t *count);

//  Sends and destroys the envelope (nulls *self_p) whatever happens.
//  0, or -SH_EIO if zmq refused it.
int envelope_send (envelope_t **self_p, zsock_t *sock);
//  Receives one envelope from sock (blocking; use a poller first). A ROUTER
//  socket's routing id is kept for the reply. *out is NULL on error:
//  -SH_EPROTO for a malformed message (already discarded), -SH_EIO when the
//  receive was interrupted.
int envelope_recv (zsock_t *sock, envelope_t **out);
//  Decodes from a zmsg (destroyed). has_routing_id: first frame is a routing id.
int envelope_decode (zmsg_t **msg_p, bool has_routing_id, envelope_t **out);
//  What can be read of a request's header frame when the envelope did not
//  decode as a whole (bad version, JSON or blobs), so that its sender still
//  gets an error reply: 0 with its type, request id and deadline, or
//  -SH_EPROTO when the frame is no request header at all (wrong size or
//  magic, or a reply). Any out pointer may be NULL.
int envelope_peek_request (const uint8_t *head, size_t len, uint16_t *type,
                           uint64_t *request_id, uint64_t *deadline_ms);
//  Encodes to a zmsg (routing id first if set). The envelope is kept.
zmsg_t *envelope_encode (const envelope_t *self);

//  --- envelopes over a stream socket ---------------------------------------
//  The shard actors' direct read path (actors/shard/workers.h): a gateway
//  connection writes a read request on a unix stream socket and the worker
//  thread that serves it answers on the same socket, with no other thread
//  in between. The frames are those above, preceded by their count and
//  lengths: u32 n, n x u32 length, then the n frames (little-endian; no
//  routing id). One request is in flight on a socket at a time.

//  Writes the envelope (kept) to a non-blocking stream socket, waiting for
//  room until deadline_ms (unix ms; 0 = 10 s from now). 0, -SH_EIO (the
//  peer is gone) or -SH_ETIMEDOUT.
int envelope_write_fd (const envelope_t *self, int fd, uint64_t deadline_ms);
//  Reads one envelope so written from a non-blocking stream socket, waiting
//  until deadline_ms (as above). 0; -SH_EPROTO for a malformed message (the
//  stream cannot be trusted after it); -SH_EIO when the peer closed or the
//  socket failed; -SH_ETIMEDOUT. *out is NULL on error.
int envelope_read_fd (int fd, uint64_t deadline_ms, envelope_t **out);

//  Unix time in ms (for deadlines).
uint64_t envelope_now_ms (void);

#endif
