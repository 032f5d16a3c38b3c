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
#include "proto/envelope.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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
