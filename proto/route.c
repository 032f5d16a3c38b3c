/*  route: encode/decode of the frame in front of every envelope that goes
    through a p2p actor (see route.h), a structural check of the envelope
    frames behind it, and the parsing of peer uris into zmq tcp endpoints.

    Everything here reads bytes a remote peer chose: every size is checked
    before it is used, and anything that is not exactly what the layout
    says is -SH_EPROTO (frames) or -SH_EINVAL (uris).
*/
#include "proto/route.h"
#include "proto/le.h"
#include "common/err.h"
#include "common/fdio.h"
#include "proto/envelope.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

//  The default p2p port, as Qdrant's.
#define S_DEFAULT_PORT 6335
//  Longest DNS name (RFC 1035) and longest IPv6 text form (with IPv4 tail).
#define S_MAX_HOST 253
#define S_MAX_IPV6 45

zframe_t *
route_encode (const route_t *route)
{
    assert (route);
    size_t uri_len = strnlen (route->uri, ROUTE_MAX_URI + 1);
    if (uri_len > ROUTE_MAX_URI)
        return NULL;
    zframe_t *frame = zframe_new (NULL, ROUTE_HEADER_SIZE + uri_len);
    assert (frame);
    uint8_t *p = zframe_data (frame);
    p [0] = 'S';
    p [1] = 'P';
    p [2] = ROUTE_VERSION;
    p [3] = route->kind;
    p [4] = route->actor;
    p [5] = 0;                      //  flags
    le_put_u16 (p + 6, (uint16_t) uri_len);
    le_put_u64 (p + 8, route->src);
    le_put_u64 (p + 16, route->dst);
    le_put_u64 (p + 24, route->uid);
    le_put_u32 (p + 32, route->shard);
    le_put_u32 (p + 36, 0);          //  reserved
    le_put_u64 (p + 40, route->token);
    memcpy (p + ROUTE_HEADER_SIZE, route->uri, uri_len);
    return frame;
}

int
route_decode (const void *data, size_t size, route_t *out)
{
    assert (out);
    memset (out, 0, sizeof *out);
    if (!data || size < ROUTE_HEADER_SIZE)
        return -SH_EPROTO;
    const uint8_t *p = (const uint8_t *) data;
    if (p [0] != 'S' || p [1] != 'P' || p [2] != ROUTE_VERSION)
        return -SH_EPROTO;
    uint8_t kind = p [3], actor = p [4], flags = p [5];
    uint16_t uri_len = le_get_u16 (p + 6);
    if (kind >= ROUTE_KIND_COUNT || actor == 0 || actor >= ROUTE_ACTOR_END || flags != 0
    ||  uri_len > ROUTE_MAX_URI || size - ROUTE_HEADER_SIZE != uri_len
    ||  le_get_u32 (p + 36) != 0)
        return -SH_EPROTO;
    uint64_t dst = le_get_u64 (p + 16);
    uint64_t uid = le_get_u64 (p + 24);
    uint32_t shard = le_get_u32 (p + 32);
    //  Only shard routes name a shard; only a route to "the peer at uri"
    //  carries a uri. A field that means nothing must be zero, so that no
    //  two frames mean the same thing.
    if (actor != ROUTE_SHARD && (uid != 0 || shard != 0))
        return -SH_EPROTO;
    if (uri_len > 0 && dst != 0)
        return -SH_EPROTO;
    //  A uri is printable ASCII without spaces: it goes into logs and JSON.
    const uint8_t *uri = p + ROUTE_HEADER_SIZE;
    for (size_t i = 0; i < uri_len; i++)
        if (uri [i] < 0x21 || uri [i] > 0x7e)
            return -SH_EPROTO;
    out->kind = kind;
    out->actor = actor;
    out->src = le_get_u64 (p + 8);
    out->dst = dst;
    out->uid = uid;
    out->shard = shard;
    out->token = le_get_u64 (p + 40);
    memcpy (out->uri, uri, uri_len);
    out->uri [uri_len] = 0;
    return 0;
}

int
route_peek_envelope (zmsg_t *msg, route_env_t *out)
{
    assert (out);
    memset (out, 0, sizeof *out);
    if (!msg)
        return -SH_EPROTO;
    size_t frames = zmsg_size (msg);
    if (frames < 2 || frames - 2 > ENVELOPE_MAX_BLOBS)
        return -SH_EPROTO;
    zframe_t *head = zmsg_first (msg);
    if (zframe_size (head) != ENVELOPE_HEADER_SIZE)
        return -SH_EPROTO;
    const uint8_t *h = zframe_data (head);
    if (h [0] != 'S' || h [1] != 'H' || h [2] != ENVELOPE_VERSION || h [3] > 1)
        return -SH_EPROTO;
    int32_t status = (int32_t) le_get_u32 (h + 8);
    if (status > 0)
        return -SH_EPROTO;
    zframe_t *json = zmsg_next (msg);
    if (zframe_size (json) > ENVELOPE_MAX_JSON)
        return -SH_EPROTO;
    for (zframe_t *blob = zmsg_next (msg); blob; blob = zmsg_next (msg))
        if (zframe_size (blob) % sizeof (float) != 0
        ||  zframe_size (blob) > ENVELOPE_MAX_BLOB)
            return -SH_EPROTO;
    out->type = le_get_u16 (h + 4);
    out->is_reply = h [3] == 1;
    out->status = status;
    out->request_id = le_get_u64 (h + 12);
    out->deadline = le_get_u64 (h + 20);
    return 0;
}

int
route_set_request_id (zframe_t *head, uint64_t request_id)
{
    if (!head || zframe_size (head) != ENVELOPE_HEADER_SIZE)
        return -SH_EPROTO;
    uint8_t *h = zframe_data (head);
    if (h [0] != 'S' || h [1] != 'H')
        return -SH_EPROTO;
    le_put_u64 (h + 12, request_id);
    return 0;
}

//  A DNS name or IPv4 address as a uri may hold it: letters, digits, '-',
//  '.' and '_' (container names), not starting or ending with '.' or '-'.
static bool
s_valid_hostname (const char *host, size_t len)
{
    if (len == 0 || len > S_MAX_HOST)
        return false;
    if (host [0] == '.' || host [0] == '-' || host [len - 1] == '.' || host [len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) host [i];
        if (!isalnum (c) && c != '-' && c != '.' && c != '_')
            return false;
        if (c == '.' && host [i + 1] == '.')
            return false;
    }
    return true;
}

int
route_uri_endpoint (const char *uri, char *buf, size_t size)
{
    if (!buf || size == 0)
        return -SH_EINVAL;
    buf [0] = 0;
    if (!uri)
        return -SH_EINVAL;
    static const char *schemes [] = { "http://", "https://", "grpc://", "tcp://" };
    const char *p = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes [0] && !p; i++)
        if (strncasecmp (uri, schemes [i], strlen (schemes [i])) == 0)
            p = uri + strlen (schemes [i]);
    if (!p)
        return -SH_EINVAL;

    const char *host = p;
    size_t host_len;
    bool ipv6 = false;
    if (*p == '[') {
        const char *close = strchr (p, ']');
        if (!close)
            return -SH_EINVAL;
        host = p + 1;
        host_len = (size_t) (close - host);
        if (host_len == 0 || host_len > S_MAX_IPV6)
            return -SH_EINVAL;
        char text [S_MAX_IPV6 + 1];
        memcpy (text, host, host_len);
        text [host_len] = 0;
        struct in6_addr addr;
        if (inet_pton (AF_INET6, text, &addr) != 1)
            return -SH_EINVAL;
        ipv6 = true;
        p = close + 1;
    }
    else {
        host_len = strcspn (p, ":/");
        if (!s_valid_hostname (host, host_len))
            return -SH_EINVAL;
        p += host_len;
    }

    unsigned long port = S_DEFAULT_PORT;
    if (*p == ':') {
        p++;
        size_t digits = strspn (p, "0123456789");
        if (digits == 0 || digits > 5)
            return -SH_EINVAL;
        port = 0;
        for (size_t i = 0; i < digits; i++)
            port = port * 10 + (unsigned long) (p [i] - '0');
        if (port == 0 || port > 65535)
            return -SH_EINVAL;
        p += digits;
    }
    //  "http://node1:6335/" is how some write it; any other path, a query
    //  or user info is not an address of a p2p port.
    if (*p == '/')
        p++;
    if (*p)
        return -SH_EINVAL;

    int len = snprintf (buf, size, ipv6 ? "tcp://[%.*s]:%lu" : "tcp://%.*s:%lu",
                        (int) host_len, host, port);
    if (len < 0 || (size_t) len >= size) {
        buf [0] = 0;
        return -SH_EINVAL;
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  [route][envelope] messages over a stream socket

//  Bytes read at once; buffers larger than S_STREAM_KEEP shrink once empty.
#define S_STREAM_CHUNK 65536
#define S_STREAM_KEEP  (1024 * 1024)

typedef struct {
    uint8_t *data;                  //  bytes (owned)
    size_t start;                   //  first byte not consumed
    size_t len;                     //  bytes held (start included)
    size_t cap;                     //  allocated size
} s_buf_t;

struct _route_stream_t {
    s_buf_t in;                     //  bytes read, not yet taken as messages
    uint64_t in_total;              //  size of the message at in.start once known, else 0
    s_buf_t out;                    //  bytes queued, not yet written
};

route_stream_t *
route_stream_new (void)
{
    route_stream_t *self = (route_stream_t *) calloc (1, sizeof *self);
    assert (self);
    return self;
}

void
route_stream_destroy (route_stream_t **self_p)
{
    assert (self_p);
    route_stream_t *self = *self_p;
    if (!self)
        return;
    free (self->in.data);
    free (self->out.data);
    free (self);
    *self_p = NULL;
}

//  Drops consumed bytes, and makes room for at least want more bytes.
static void
s_buf_room (s_buf_t *buf, size_t want)
{
    if (buf->start == buf->len) {
        buf->start = buf->len = 0;
        if (buf->cap > S_STREAM_KEEP) {
            free (buf->data);
            buf->data = NULL;
            buf->cap = 0;
        }
    }
    if (buf->cap - buf->len >= want)
        return;
    if (buf->start) {
        memmove (buf->data, buf->data + buf->start, buf->len - buf->start);
        buf->len -= buf->start;
        buf->start = 0;
        if (buf->cap - buf->len >= want)
            return;
    }
    size_t cap = buf->cap ? buf->cap : S_STREAM_CHUNK;
    while (cap - buf->len < want)
        cap *= 2;
    buf->data = (uint8_t *) realloc (buf->data, cap);
    assert (buf->data);
    buf->cap = cap;
}

//  The size of the message at in.start once its prefix is in (checked),
//  0 while it is not, -SH_EPROTO.
static int
s_stream_measure (route_stream_t *self)
{
    if (self->in_total)
        return 0;
    const uint8_t *p = self->in.data + self->in.start;
    size_t have = self->in.len - self->in.start;
    if (have < 4)
        return 0;
    uint32_t n = le_get_u32 (p);
    if (n < 3 || n > ROUTE_STREAM_FRAMES)
        return -SH_EPROTO;
    if (have < 4 * (1 + (size_t) n))
        return 0;
    uint64_t total = 4 * (1 + (uint64_t) n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = le_get_u32 (p + 4 * (1 + i));
        uint64_t limit = i == 0 ? ROUTE_HEADER_SIZE + ROUTE_MAX_URI
                       : i == 1 ? ENVELOPE_HEADER_SIZE
                       : i == 2 ? ENVELOPE_MAX_JSON : ENVELOPE_MAX_BLOB;
        if (len > limit || (i == 0 && len < ROUTE_HEADER_SIZE)
            || (i == 1 && len != limit) || (i >= 3 && len % sizeof (float)))
            return -SH_EPROTO;
        total += len;
    }
    if (total > SIZE_MAX / 4)
        return -SH_EPROTO;
    self->in_total = total;
    return 0;
}

int
route_stream_read (route_stream_t *self, int fd)
{
    assert (self);
    while (true) {
        int rc = s_stream_measure (self);
        if (rc)
            return rc;
        //  Room for the rest of a known message, or for another chunk.
        size_t have = self->in.len - self->in.start;
        size_t want = S_STREAM_CHUNK;
        if (self->in_total && self->in_total > have && self->in_total - have > want)
            want = (size_t) (self->in_total - have) < 2 * self->in.cap + S_STREAM_CHUNK
                 ? (size_t) (self->in_total - have) : 2 * self->in.cap + S_STREAM_CHUNK;
        s_buf_room (&self->in, want);
        long got = fdio_recv_some (fd, self->in.data + self->in.len,
                                   self->in.cap - self->in.len);
        if (got <= 0)
            return (int) got;
        self->in.len += (size_t) got;
    }
}

zmsg_t *
route_stream_next (route_stream_t *self)
{
    assert (self);
    if (s_stream_measure (self) || !self->in_total
        || self->in.len - self->in.start < self->in_total)
        return NULL;
    const uint8_t *p = self->in.data + self->in.start;
    uint32_t n = le_get_u32 (p);
    size_t at = 4 * (1 + (size_t) n);
    zmsg_t *msg = zmsg_new ();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = le_get_u32 (p + 4 * (1 + i));
        zmsg_addmem (msg, p + at, len);
        at += len;
    }
    self->in.start += (size_t) self->in_total;
    self->in_total = 0;
    return msg;
}

int
route_stream_queue (route_stream_t *self, zmsg_t *msg)
{
    assert (self && msg);
    size_t n = zmsg_size (msg);
    if (n == 0 || n > ROUTE_STREAM_FRAMES)
        return -SH_EINVAL;
    size_t size = 4 * (1 + n);
    for (zframe_t *frame = zmsg_first (msg); frame; frame = zmsg_next (msg))
        size += zframe_size (frame);
    s_buf_room (&self->out, size);
    uint8_t *p = self->out.data + self->out.len;
    le_put_u32 (p, (uint32_t) n);
    size_t at = 4 * (1 + n), i = 1;
    for (zframe_t *frame = zmsg_first (msg); frame; frame = zmsg_next (msg), i++) {
        le_put_u32 (p + 4 * i, (uint32_t) zframe_size (frame));
        memcpy (p + at, zframe_data (frame), zframe_size (frame));
        at += zframe_size (frame);
    }
    self->out.len += size;
    return 0;
}

int
route_stream_flush (route_stream_t *self, int fd)
{
    assert (self);
    int rc = fdio_send_some (fd, self->out.data, self->out.len, &self->out.start);
    if (rc == 0 && self->out.start == self->out.len)
        self->out.start = self->out.len = 0;
    return rc;
}

size_t
route_stream_pending (const route_stream_t *self)
{
    assert (self);
    return self->out.len - self->out.start;
}
