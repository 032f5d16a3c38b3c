/*  test_route: the frame in front of every envelope between peers
    (proto/route.c): round trips of every field, the exact wire layout, every
    malformed frame a peer could send, the structural check of the envelope
    behind it, peer uris turned into zmq tcp endpoints, and [route][envelope]
    messages over a stream socket (framing, bounds).
*/
#include "common/err.h"
#include "proto/envelope.h"
#include "proto/le.h"
#include "proto/msg.h"
#include "proto/route.h"
#include "test/unit/check_main.h"
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static route_t
s_route (void)
{
    route_t r;
    memset (&r, 0, sizeof r);
    r.kind = ROUTE_REQUEST;
    r.actor = ROUTE_SHARD;
    r.src = UINT64_C (0x0102030405060708);
    r.dst = UINT64_C (0x1112131415161718);
    r.uid = UINT64_C (0x2122232425262728);
    r.shard = 0x31323334;
    r.token = UINT64_C (0x4142434445464748);
    return r;
}

//  The frame of r as bytes (caller frees), size in *size.
static uint8_t *
s_bytes (const route_t *r, size_t *size)
{
    zframe_t *frame = route_encode (r);
    ck_assert_ptr_nonnull (frame);
    *size = zframe_size (frame);
    uint8_t *copy = (uint8_t *) malloc (*size + 1);
    memcpy (copy, zframe_data (frame), *size);
    zframe_destroy (&frame);
    return copy;
}

static void
s_refused (const uint8_t *data, size_t size, const char *why)
{
    route_t out;
    out.kind = 99;
    ck_assert_msg (route_decode (data, size, &out) == -SH_EPROTO, "%s: accepted", why);
    ck_assert_msg (out.kind == 0 && out.uri [0] == 0, "%s: output not cleared", why);
}

START_TEST (test_every_field_round_trips)
{
    route_t r = s_route ();
    zframe_t *frame = route_encode (&r);
    ck_assert_ptr_nonnull (frame);
    ck_assert_uint_eq (zframe_size (frame), ROUTE_HEADER_SIZE);
    route_t out;
    ck_assert_int_eq (route_decode (zframe_data (frame), zframe_size (frame), &out), 0);
    ck_assert_uint_eq (out.kind, ROUTE_REQUEST);
    ck_assert_uint_eq (out.actor, ROUTE_SHARD);
    ck_assert_uint_eq (out.src, r.src);
    ck_assert_uint_eq (out.dst, r.dst);
    ck_assert_uint_eq (out.uid, r.uid);
    ck_assert_uint_eq (out.shard, r.shard);
    ck_assert_uint_eq (out.token, r.token);
    ck_assert_str_eq (out.uri, "");
    zframe_destroy (&frame);
}
END_TEST

START_TEST (test_every_kind_and_actor_round_trips)
{
    for (int kind = 0; kind < ROUTE_KIND_COUNT; kind++)
        for (int actor = 1; actor < ROUTE_ACTOR_END; actor++) {
            route_t r = s_route ();
            r.kind = (uint8_t) kind;
            r.actor = (uint8_t) actor;
            if (actor != ROUTE_SHARD)
                r.uid = r.shard = 0;
            size_t size;
            uint8_t *data = s_bytes (&r, &size);
            route_t out;
            ck_assert_int_eq (route_decode (data, size, &out), 0);
            ck_assert_uint_eq (out.kind, kind);
            ck_assert_uint_eq (out.actor, actor);
            free (data);
        }
}
END_TEST

START_TEST (test_wire_layout_is_little_endian_as_documented)
{
    route_t r = s_route ();
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    ck_assert_uint_eq (size, 48);
    ck_assert (p [0] == 'S' && p [1] == 'P');
    ck_assert_uint_eq (p [2], ROUTE_VERSION);
    ck_assert_uint_eq (p [3], ROUTE_REQUEST);
    ck_assert_uint_eq (p [4], ROUTE_SHARD);
    ck_assert_uint_eq (p [5], 0);
    ck_assert (p [6] == 0 && p [7] == 0);
    ck_assert_uint_eq (p [8], 0x08);        //  src, least significant byte first
    ck_assert_uint_eq (p [15], 0x01);
    ck_assert_uint_eq (p [16], 0x18);       //  dst
    ck_assert_uint_eq (p [24], 0x28);       //  uid
    ck_assert_uint_eq (p [32], 0x34);       //  shard
    ck_assert_uint_eq (p [35], 0x31);
    for (int i = 36; i < 40; i++)
        ck_assert_uint_eq (p [i], 0);       //  reserved
    ck_assert_uint_eq (p [40], 0x48);       //  token
    ck_assert_uint_eq (p [47], 0x41);
    free (p);
}
END_TEST

START_TEST (test_uri_round_trips_after_the_header)
{
    route_t r = s_route ();
    r.actor = ROUTE_RAFT;
    r.uid = r.shard = 0;
    r.dst = 0;
    snprintf (r.uri, sizeof r.uri, "http://10.0.0.1:6335");
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    ck_assert_uint_eq (size, 48 + strlen ("http://10.0.0.1:6335"));
    ck_assert_uint_eq (p [6], strlen ("http://10.0.0.1:6335"));
    ck_assert_mem_eq (p + 48, "http://10.0.0.1:6335", size - 48);
    route_t out;
    ck_assert_int_eq (route_decode (p, size, &out), 0);
    ck_assert_str_eq (out.uri, "http://10.0.0.1:6335");
    ck_assert_uint_eq (out.dst, 0);
    free (p);
}
END_TEST

START_TEST (test_uri_of_the_maximum_length_round_trips_and_longer_is_refused)
{
    route_t r = s_route ();
    r.actor = ROUTE_RAFT;
    r.uid = r.shard = 0;
    r.dst = 0;
    memset (r.uri, 'a', ROUTE_MAX_URI);
    r.uri [ROUTE_MAX_URI] = 0;
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    route_t out;
    ck_assert_int_eq (route_decode (p, size, &out), 0);
    ck_assert_uint_eq (strlen (out.uri), ROUTE_MAX_URI);
    free (p);

    //  A uri field that is not NUL-terminated within its bound: refused.
    route_t *big = (route_t *) malloc (sizeof (route_t) + 16);
    *big = r;
    memset (big->uri, 'a', sizeof big->uri);
    ck_assert_ptr_null (route_encode (big));
    free (big);
}
END_TEST

START_TEST (test_short_and_empty_frames_are_refused)
{
    route_t r = s_route ();
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    for (size_t len = 0; len < ROUTE_HEADER_SIZE; len++)
        s_refused (p, len, "truncated header");
    route_t out;
    ck_assert_int_eq (route_decode (NULL, 48, &out), -SH_EPROTO);
    free (p);
}
END_TEST

START_TEST (test_bad_magic_version_kind_actor_flags_reserved_are_refused)
{
    route_t r = s_route ();
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    struct { size_t at; uint8_t value; const char *why; } cases [] = {
        { 0, 'X', "magic 0" }, { 1, 'H', "magic 1 (an envelope, not a route)" },
        { 2, 0, "version 0" }, { 2, ROUTE_VERSION + 1, "future version" },
        { 3, ROUTE_KIND_COUNT, "kind past the last" }, { 3, 0xff, "kind 255" },
        { 4, 0, "actor 0" }, { 4, ROUTE_ACTOR_END, "actor past the last" },
        { 5, 1, "flags" }, { 36, 1, "reserved byte 0" }, { 39, 0x80, "reserved byte 3" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        uint8_t copy [48];
        memcpy (copy, p, 48);
        copy [cases [i].at] = cases [i].value;
        s_refused (copy, 48, cases [i].why);
    }
    free (p);
}
END_TEST

START_TEST (test_uri_length_must_match_the_frame)
{
    route_t r = s_route ();
    r.dst = 0;
    r.actor = ROUTE_RAFT;
    r.uid = r.shard = 0;
    snprintf (r.uri, sizeof r.uri, "tcp://a:1");
    size_t size;
    uint8_t *p = s_bytes (&r, &size);
    uint8_t copy [128];
    memcpy (copy, p, size);
    s_refused (copy, size - 1, "uri shorter than its length");
    copy [size] = 'x';
    s_refused (copy, size + 1, "bytes after the uri");
    copy [6] = (uint8_t) (ROUTE_MAX_URI + 1);
    copy [7] = (uint8_t) ((ROUTE_MAX_URI + 1) >> 8);
    s_refused (copy, size, "uri length over the maximum");
    copy [6] = 0xff;
    copy [7] = 0xff;
    s_refused (copy, size, "uri length 65535");
    free (p);
}
END_TEST

START_TEST (test_uri_with_control_bytes_space_or_nul_is_refused)
{
    const uint8_t bad [] = { 0, ' ', '\n', 0x7f, 0x80, 0xff };
    for (size_t i = 0; i < sizeof bad; i++) {
        route_t r = s_route ();
        r.dst = 0;
        r.actor = ROUTE_RAFT;
        r.uid = r.shard = 0;
        snprintf (r.uri, sizeof r.uri, "http://a:1");
        size_t size;
        uint8_t *p = s_bytes (&r, &size);
        p [ROUTE_HEADER_SIZE + 3] = bad [i];
        s_refused (p, size, "bad uri byte");
        free (p);
    }
}
END_TEST

START_TEST (test_uri_with_a_peer_id_is_refused)
{
    route_t r = s_route ();
    r.actor = ROUTE_RAFT;
    r.uid = r.shard = 0;
    snprintf (r.uri, sizeof r.uri, "http://a:1");
    size_t size;
    uint8_t *p = s_bytes (&r, &size);          //  dst set and a uri
    s_refused (p, size, "dst and uri both given");
    free (p);
}
END_TEST

START_TEST (test_uid_or_shard_on_a_non_shard_route_is_refused)
{
    for (int actor = ROUTE_RAFT; actor < ROUTE_ACTOR_END; actor++) {
        if (actor == ROUTE_SHARD)
            continue;
        route_t r = s_route ();
        r.actor = (uint8_t) actor;
        r.shard = 0;
        size_t size;
        uint8_t *p = s_bytes (&r, &size);
        s_refused (p, size, "uid on a non-shard route");
        free (p);
        r.uid = 0;
        r.shard = 3;
        p = s_bytes (&r, &size);
        s_refused (p, size, "shard on a non-shard route");
        free (p);
    }
}
END_TEST

//  --- the envelope behind a route ------------------------------------------

static zmsg_t *
s_envelope (uint8_t kind, int32_t status, size_t n_blobs)
{
    envelope_t *env = envelope_new (5, 77, 123456);
    if (kind) {
        envelope_t *reply = envelope_new_reply (env, status);
        envelope_destroy (&env);
        env = reply;
    }
    float floats [16] = { 0 };
    for (size_t i = 0; i < n_blobs; i++)
        envelope_add_floats (env, floats, 4);
    zmsg_t *msg = envelope_encode (env);
    envelope_destroy (&env);
    return msg;
}

START_TEST (test_peek_reads_the_envelope_header)
{
    zmsg_t *msg = s_envelope (0, 0, 2);
    route_env_t head;
    ck_assert_int_eq (route_peek_envelope (msg, &head), 0);
    ck_assert_uint_eq (head.type, 5);
    ck_assert (!head.is_reply);
    ck_assert_uint_eq (head.request_id, 77);
    ck_assert_uint_eq (head.deadline, 123456);
    zmsg_destroy (&msg);

    msg = s_envelope (1, -SH_EUNAVAIL, 0);
    ck_assert_int_eq (route_peek_envelope (msg, &head), 0);
    ck_assert (head.is_reply);
    ck_assert_int_eq (head.status, -SH_EUNAVAIL);
    zmsg_destroy (&msg);
}
END_TEST

START_TEST (test_peek_refuses_frames_that_are_not_an_envelope)
{
    route_env_t head;
    ck_assert_int_eq (route_peek_envelope (NULL, &head), -SH_EPROTO);
    zmsg_t *msg = zmsg_new ();
    ck_assert_int_eq (route_peek_envelope (msg, &head), -SH_EPROTO);
    zmsg_addstr (msg, "garbage");
    zmsg_addstr (msg, "{}");
    ck_assert_int_eq (route_peek_envelope (msg, &head), -SH_EPROTO);
    zmsg_destroy (&msg);

    //  Header only, no JSON frame.
    msg = s_envelope (0, 0, 0);
    zframe_t *json = zmsg_last (msg);
    zmsg_remove (msg, json);
    zframe_destroy (&json);
    ck_assert_int_eq (route_peek_envelope (msg, &head), -SH_EPROTO);
    zmsg_destroy (&msg);

    //  Each header byte that must hold a given value.
    struct { size_t at; uint8_t value; } cases [] = {
        { 0, 'X' }, { 1, 'P' }, { 2, ENVELOPE_VERSION + 1 }, { 3, 2 }, { 8, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        msg = s_envelope (0, 0, 0);
        zframe_data (zmsg_first (msg)) [cases [i].at] = cases [i].value;
        ck_assert_msg (route_peek_envelope (msg, &head) == -SH_EPROTO, "byte %zu",
                       cases [i].at);
        zmsg_destroy (&msg);
    }

    //  A blob that is not whole floats.
    msg = s_envelope (0, 0, 1);
    zmsg_addmem (msg, "abc", 3);
    ck_assert_int_eq (route_peek_envelope (msg, &head), -SH_EPROTO);
    zmsg_destroy (&msg);

    //  One blob too many.
    msg = s_envelope (0, 0, 0);
    for (int i = 0; i < ENVELOPE_MAX_BLOBS; i++)
        zmsg_addmem (msg, "abcd", 4);
    ck_assert_int_eq (route_peek_envelope (msg, &head), 0);
    zmsg_addmem (msg, "abcd", 4);
    ck_assert_int_eq (route_peek_envelope (msg, &head), -SH_EPROTO);
    zmsg_destroy (&msg);
}
END_TEST

START_TEST (test_set_request_id_rewrites_the_header_in_place)
{
    zmsg_t *msg = s_envelope (0, 0, 1);
    ck_assert_int_eq (route_set_request_id (zmsg_first (msg), UINT64_C (0xabcdef0123)), 0);
    envelope_t *env = NULL;
    ck_assert_int_eq (envelope_decode (&msg, false, &env), 0);
    ck_assert_uint_eq (envelope_request_id (env), UINT64_C (0xabcdef0123));
    ck_assert_uint_eq (envelope_deadline (env), 123456);
    ck_assert_uint_eq (envelope_blob_count (env), 1);
    envelope_destroy (&env);

    zframe_t *frame = zframe_new ("short", 5);
    ck_assert_int_eq (route_set_request_id (frame, 1), -SH_EPROTO);
    zframe_destroy (&frame);
    ck_assert_int_eq (route_set_request_id (NULL, 1), -SH_EPROTO);
}
END_TEST

//  --- peer uris ---------------------------------------------------------------

static void
s_endpoint_is (const char *uri, const char *expected)
{
    char buf [300];
    int rc = route_uri_endpoint (uri, buf, sizeof buf);
    ck_assert_msg (rc == 0, "%s: rc %d", uri, rc);
    ck_assert_msg (streq (buf, expected), "%s -> %s, expected %s", uri, buf, expected);
}

static void
s_endpoint_refused (const char *uri)
{
    char buf [300] = "x";
    ck_assert_msg (route_uri_endpoint (uri, buf, sizeof buf) == -SH_EINVAL,
                   "%s accepted as %s", uri ? uri : "(null)", buf);
    ck_assert_str_eq (buf, "");
}

START_TEST (test_uri_forms_map_to_tcp_endpoints)
{
    s_endpoint_is ("http://10.0.0.1:6335", "tcp://10.0.0.1:6335");
    s_endpoint_is ("https://node1:7000", "tcp://node1:7000");
    s_endpoint_is ("grpc://node-1.example.com:6335", "tcp://node-1.example.com:6335");
    s_endpoint_is ("tcp://127.0.0.1:1", "tcp://127.0.0.1:1");
    s_endpoint_is ("HTTP://Node1:65535", "tcp://Node1:65535");
    s_endpoint_is ("http://node_1", "tcp://node_1:6335");
    s_endpoint_is ("http://10.0.0.1", "tcp://10.0.0.1:6335");
    s_endpoint_is ("http://10.0.0.1/", "tcp://10.0.0.1:6335");
    s_endpoint_is ("http://10.0.0.1:6335/", "tcp://10.0.0.1:6335");
    s_endpoint_is ("http://10.0.0.1:06335", "tcp://10.0.0.1:6335");
}
END_TEST

START_TEST (test_ipv6_uris_keep_their_brackets)
{
    s_endpoint_is ("tcp://[::1]:6335", "tcp://[::1]:6335");
    s_endpoint_is ("http://[::1]", "tcp://[::1]:6335");
    s_endpoint_is ("http://[fe80::1:2:3:4]:7000/", "tcp://[fe80::1:2:3:4]:7000");
    s_endpoint_is ("http://[::ffff:10.0.0.1]:9", "tcp://[::ffff:10.0.0.1]:9");
}
END_TEST

START_TEST (test_bad_uris_are_refused)
{
    const char *bad [] = {
        "", "10.0.0.1:6335", "node1", "ftp://node1:6335", "http:/node1:6335",
        "http://", "http://:6335", "http://node1:", "http://node1:0",
        "http://node1:65536", "http://node1:123456", "http://node1:-1",
        "http://node1:63a5", "http://node1:6335/path", "http://node1:6335?x=1",
        "http://user@node1:6335", "http://node 1:6335", "http://node1:6335 ",
        "http://.node1", "http://node1.", "http://-node1", "http://no..de",
        "http://[::1", "http://[]:6335", "http://[::1]x", "http://[::g]:6335",
        "http://[10.0.0.1]:6335", "http://[::1]:", "http://[fe80::1%eth0]:6335",
        "http://node1:6335//", "http://n\xc3\xb6" "de:6335",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        s_endpoint_refused (bad [i]);
    s_endpoint_refused (NULL);

    char host [400];
    memset (host, 'a', sizeof host);
    memcpy (host, "http://", 7);
    host [7 + 254] = 0;
    s_endpoint_refused (host);              //  a 254-byte host name
}
END_TEST

START_TEST (test_endpoint_that_does_not_fit_the_buffer_is_refused)
{
    char buf [16] = "x";
    ck_assert_int_eq (route_uri_endpoint ("http://10.0.0.1:6335", buf, sizeof buf),
                      -SH_EINVAL);
    ck_assert_str_eq (buf, "");
    ck_assert_int_eq (route_uri_endpoint ("http://a:1", buf, 0), -SH_EINVAL);
    ck_assert_int_eq (route_uri_endpoint ("http://a:1", buf, 11), 0);
    ck_assert_str_eq (buf, "tcp://a:1");
}
END_TEST

//  --- [route][envelope] messages over a stream ------------------------------

//  A routed request with a blob of n floats.
static zmsg_t *
s_routed (uint64_t request_id, size_t floats)
{
    envelope_t *env = envelope_new (MSG_SHARD_COUNT, request_id, 0);
    json_object_set_new (envelope_json (env), "exact", json_true ());
    if (floats) {
        float *data = (float *) calloc (floats, sizeof (float));
        for (size_t i = 0; i < floats; i++)
            data [i] = (float) i;
        envelope_add_floats (env, data, floats);
        free (data);
    }
    zmsg_t *msg = envelope_encode (env);
    envelope_destroy (&env);
    route_t r = s_route ();
    zframe_t *frame = route_encode (&r);
    zmsg_prepend (msg, &frame);
    return msg;
}

static bool
s_same (zmsg_t *a, zmsg_t *b)
{
    if (zmsg_size (a) != zmsg_size (b))
        return false;
    for (zframe_t *x = zmsg_first (a), *y = zmsg_first (b); x;
         x = zmsg_next (a), y = zmsg_next (b))
        if (!zframe_eq (x, y))
            return false;
    return true;
}

static void
s_pair (int sv [2])
{
    ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

START_TEST (test_stream_messages_round_trip_in_order_whatever_the_read_sizes)
{
    int sv [2];
    s_pair (sv);
    route_stream_t *out = route_stream_new ();
    route_stream_t *in = route_stream_new ();
    zmsg_t *sent [3] = { s_routed (1, 0), s_routed (2, 100000), s_routed (3, 7) };
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (route_stream_queue (out, sent [i]), 0);
    ck_assert (route_stream_pending (out) > 400000);
    int got = 0;
    while (got < 3) {
        ck_assert_int_eq (route_stream_flush (out, sv [0]), 0);
        ck_assert_int_eq (route_stream_read (in, sv [1]), 0);
        zmsg_t *msg;
        while ((msg = route_stream_next (in))) {
            ck_assert (got < 3);
            ck_assert (s_same (msg, sent [got]));
            route_env_t head;
            zframe_t *route = zmsg_pop (msg);
            ck_assert_int_eq (route_peek_envelope (msg, &head), 0);
            ck_assert_uint_eq (head.request_id, (uint64_t) got + 1);
            zframe_destroy (&route);
            zmsg_destroy (&msg);
            got++;
        }
    }
    ck_assert_uint_eq (route_stream_pending (out), 0);
    ck_assert_ptr_null (route_stream_next (in));
    //  The writer gone: the reader says so.
    close (sv [0]);
    ck_assert_int_eq (route_stream_read (in, sv [1]), -SH_EIO);
    for (int i = 0; i < 3; i++)
        zmsg_destroy (&sent [i]);
    route_stream_destroy (&out);
    route_stream_destroy (&in);
    ck_assert_ptr_null (in);
    close (sv [1]);
}
END_TEST

//  Writes raw bytes and reads them as a stream: the read's result.
static int
s_read_raw (const uint8_t *bytes, size_t size)
{
    int sv [2];
    s_pair (sv);
    ck_assert_int_eq (write (sv [0], bytes, size), (ssize_t) size);
    route_stream_t *in = route_stream_new ();
    int rc = route_stream_read (in, sv [1]);
    ck_assert_ptr_null (route_stream_next (in));
    route_stream_destroy (&in);
    close (sv [0]);
    close (sv [1]);
    return rc;
}

START_TEST (test_stream_counts_and_lengths_out_of_bounds_are_refused_before_allocating)
{
    uint8_t b [4 * 8];
    memset (b, 0, sizeof b);
    //  Too few and too many frames.
    le_put_u32 (b, 2);
    ck_assert_int_eq (s_read_raw (b, 4), -SH_EPROTO);
    le_put_u32 (b, ROUTE_STREAM_FRAMES + 1);
    ck_assert_int_eq (s_read_raw (b, 4), -SH_EPROTO);
    //  A route frame shorter than its header, longer than header and uri.
    le_put_u32 (b, 3);
    le_put_u32 (b + 4, ROUTE_HEADER_SIZE - 1);
    le_put_u32 (b + 8, ENVELOPE_HEADER_SIZE);
    le_put_u32 (b + 12, 2);
    ck_assert_int_eq (s_read_raw (b, 16), -SH_EPROTO);
    le_put_u32 (b + 4, ROUTE_HEADER_SIZE + ROUTE_MAX_URI + 1);
    ck_assert_int_eq (s_read_raw (b, 16), -SH_EPROTO);
    //  An envelope header of the wrong size, a huge JSON frame, an odd blob.
    le_put_u32 (b + 4, ROUTE_HEADER_SIZE);
    le_put_u32 (b + 8, ENVELOPE_HEADER_SIZE + 1);
    ck_assert_int_eq (s_read_raw (b, 16), -SH_EPROTO);
    le_put_u32 (b + 8, ENVELOPE_HEADER_SIZE);
    le_put_u32 (b + 12, ENVELOPE_MAX_JSON + 1);
    ck_assert_int_eq (s_read_raw (b, 16), -SH_EPROTO);
    le_put_u32 (b, 4);
    le_put_u32 (b + 12, 2);
    le_put_u32 (b + 16, 6);
    ck_assert_int_eq (s_read_raw (b, 20), -SH_EPROTO);
    //  A blob that claims a gigabyte is fine until its bytes come: no
    //  message yet, and nothing allocated for it.
    le_put_u32 (b + 16, ENVELOPE_MAX_BLOB);
    ck_assert_int_eq (s_read_raw (b, 20), 0);
}
END_TEST

START_TEST (test_stream_queue_refuses_empty_and_oversized_messages)
{
    route_stream_t *out = route_stream_new ();
    zmsg_t *msg = zmsg_new ();
    ck_assert_int_eq (route_stream_queue (out, msg), -SH_EINVAL);
    for (int i = 0; i <= ROUTE_STREAM_FRAMES; i++)
        zmsg_addmem (msg, "abcd", 4);
    ck_assert_int_eq (route_stream_queue (out, msg), -SH_EINVAL);
    ck_assert_uint_eq (route_stream_pending (out), 0);
    zmsg_destroy (&msg);
    route_stream_destroy (&out);
}
END_TEST

static Suite *
route_suite (void)
{
    Suite *s = suite_create ("route");
    TCase *tc = tcase_create ("frame");
    tcase_add_test (tc, test_every_field_round_trips);
    tcase_add_test (tc, test_every_kind_and_actor_round_trips);
    tcase_add_test (tc, test_wire_layout_is_little_endian_as_documented);
    tcase_add_test (tc, test_uri_round_trips_after_the_header);
    tcase_add_test (tc, test_uri_of_the_maximum_length_round_trips_and_longer_is_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("malformed");
    tcase_add_test (tc, test_short_and_empty_frames_are_refused);
    tcase_add_test (tc, test_bad_magic_version_kind_actor_flags_reserved_are_refused);
    tcase_add_test (tc, test_uri_length_must_match_the_frame);
    tcase_add_test (tc, test_uri_with_control_bytes_space_or_nul_is_refused);
    tcase_add_test (tc, test_uri_with_a_peer_id_is_refused);
    tcase_add_test (tc, test_uid_or_shard_on_a_non_shard_route_is_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("envelope");
    tcase_add_test (tc, test_peek_reads_the_envelope_header);
    tcase_add_test (tc, test_peek_refuses_frames_that_are_not_an_envelope);
    tcase_add_test (tc, test_set_request_id_rewrites_the_header_in_place);
    suite_add_tcase (s, tc);

    tc = tcase_create ("uri");
    tcase_add_test (tc, test_uri_forms_map_to_tcp_endpoints);
    tcase_add_test (tc, test_ipv6_uris_keep_their_brackets);
    tcase_add_test (tc, test_bad_uris_are_refused);
    tcase_add_test (tc, test_endpoint_that_does_not_fit_the_buffer_is_refused);
    suite_add_tcase (s, tc);

    tc = tcase_create ("stream");
    tcase_add_test (tc, test_stream_messages_round_trip_in_order_whatever_the_read_sizes);
    tcase_add_test (tc, test_stream_counts_and_lengths_out_of_bounds_are_refused_before_allocating);
    tcase_add_test (tc, test_stream_queue_refuses_empty_and_oversized_messages);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (route_suite)
