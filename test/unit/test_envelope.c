/*  test_envelope: the inter-process message format (proto/envelope.c) and
    vector references into its blobs (proto/vecref.c): round trips, the
    wire layout of the header, ROUTER routing ids over real sockets, and
    every kind of malformed input a peer could send.
*/
#include "common/err.h"
#include "proto/envelope.h"
#include "proto/vecref.h"
#include "test/unit/check_main.h"
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

//  A valid header as a peer would write it.
static void
s_header (uint8_t *h, uint8_t version, uint8_t kind, uint16_t type, int32_t status,
          uint64_t request_id, uint64_t deadline)
{
    memset (h, 0, ENVELOPE_HEADER_SIZE);
    h [0] = 'S';
    h [1] = 'H';
    h [2] = version;
    h [3] = kind;
    h [4] = (uint8_t) type;
    h [5] = (uint8_t) (type >> 8);
    for (int i = 0; i < 4; i++)
        h [8 + i] = (uint8_t) ((uint32_t) status >> (8 * i));
    for (int i = 0; i < 8; i++) {
        h [12 + i] = (uint8_t) (request_id >> (8 * i));
        h [20 + i] = (uint8_t) (deadline >> (8 * i));
    }
}

//  A message of a header, a JSON frame (unless NULL) and n_blobs blobs of
//  blob_len bytes each.
static zmsg_t *
s_message (const uint8_t *header, size_t header_len, const char *json, size_t n_blobs,
           size_t blob_len)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, header, header_len);
    if (json)
        zmsg_addmem (msg, json, strlen (json));
    uint8_t blob [64] = { 0 };
    ck_assert_uint_le (blob_len, sizeof blob);
    for (size_t i = 0; i < n_blobs; i++)
        zmsg_addmem (msg, blob, blob_len);
    return msg;
}

//  Decodes msg, which must be refused as malformed and consumed.
static void
s_decode_fails (zmsg_t *msg, bool has_routing_id, const char *why)
{
    envelope_t *env = (envelope_t *) 1;
    int rc = envelope_decode (&msg, has_routing_id, &env);
    ck_assert_msg (rc == -SH_EPROTO, "%s: rc %d", why, rc);
    ck_assert_msg (env == NULL, "%s: envelope returned", why);
    ck_assert_msg (msg == NULL, "%s: message not consumed", why);
}

static envelope_t *
s_decode_ok (zmsg_t *msg, bool has_routing_id)
{
    envelope_t *env = NULL;
    ck_assert_int_eq (envelope_decode (&msg, has_routing_id, &env), 0);
    ck_assert_ptr_null (msg);
    ck_assert_ptr_nonnull (env);
    return env;
}

START_TEST (test_request_round_trips_with_json_and_blobs)
{
    envelope_t *env = envelope_new (42, 0x0102030405060708ULL, 1700000000123ULL);
    ck_assert (!envelope_is_reply (env));
    json_object_set_new (envelope_json (env), "collection", json_string ("c1"));
    float a [3] = { 1.0f, -2.5f, 3.25f };
    float b [1] = { 7.0f };
    ck_assert_int_eq (envelope_add_floats (env, a, 3), 0);
    ck_assert_int_eq (envelope_add_floats (env, b, 1), 1);
    int empty = envelope_new_blob (env);
    ck_assert_int_eq (empty, 2);

    zmsg_t *msg = envelope_encode (env);
    ck_assert_uint_eq (zmsg_size (msg), 5);         //  header, JSON, three blobs
    envelope_t *back = s_decode_ok (msg, false);
    ck_assert_uint_eq (envelope_type (back), 42);
    ck_assert_uint_eq (envelope_request_id (back), 0x0102030405060708ULL);
    ck_assert_uint_eq (envelope_deadline (back), 1700000000123ULL);
    ck_assert (!envelope_is_reply (back));
    ck_assert_int_eq (envelope_status (back), 0);
    ck_assert (json_equal (envelope_json (back), envelope_json (env)));
    ck_assert_uint_eq (envelope_blob_count (back), 3);
    size_t count = 0;
    const float *f = envelope_floats (back, 0, &count);
    ck_assert_uint_eq (count, 3);
    ck_assert (memcmp (f, a, sizeof a) == 0);
    f = envelope_floats (back, 1, &count);
    ck_assert_uint_eq (count, 1);
    ck_assert (f [0] == 7.0f);
    //  An empty blob is there (not NULL, which means "no such blob").
    ck_assert_ptr_nonnull (envelope_floats (back, 2, &count));
    ck_assert_uint_eq (count, 0);
    ck_assert_ptr_null (envelope_floats (back, 3, &count));

    //  A received blob can still grow: its data is copied out of the frame.
    float more [2] = { 8.0f, 9.0f };
    ck_assert_int_eq (envelope_append_floats (back, 0, more, 2), 3);
    f = envelope_floats (back, 0, &count);
    ck_assert_uint_eq (count, 5);
    ck_assert (f [0] == 1.0f && f [2] == 3.25f && f [3] == 8.0f && f [4] == 9.0f);
    ck_assert_int_eq (envelope_append_floats (back, 7, more, 2), -SH_EINVAL);

    envelope_destroy (&env);
    envelope_destroy (&back);
    ck_assert_ptr_null (back);
    envelope_destroy (&back);       //  NULL-safe
}
END_TEST

START_TEST (test_empty_envelope_sends_an_empty_object)
{
    envelope_t *env = envelope_new (1, 2, 0);
    zmsg_t *msg = envelope_encode (env);
    ck_assert_uint_eq (zmsg_size (msg), 2);
    zframe_t *json = zmsg_last (msg);
    ck_assert_uint_eq (zframe_size (json), 2);
    ck_assert (memcmp (zframe_data (json), "{}", 2) == 0);
    envelope_t *back = s_decode_ok (msg, false);
    ck_assert (json_is_object (envelope_json (back)));
    ck_assert_uint_eq (json_object_size (envelope_json (back)), 0);
    ck_assert_uint_eq (envelope_blob_count (back), 0);
    envelope_destroy (&env);
    envelope_destroy (&back);
}
END_TEST

START_TEST (test_header_layout_is_little_endian_at_fixed_offsets)
{
    envelope_t *env = envelope_new (0x1234, 0x1122334455667788ULL, 0x0A0B0C0D0E0F1011ULL);
    envelope_t *reply = envelope_new_reply (env, -SH_ENOTFOUND);
    zmsg_t *msg = envelope_encode (reply);
    zframe_t *head = zmsg_first (msg);
    ck_assert_uint_eq (zframe_size (head), ENVELOPE_HEADER_SIZE);
    uint8_t expect [ENVELOPE_HEADER_SIZE];
    s_header (expect, ENVELOPE_VERSION, 1, 0x1234, -SH_ENOTFOUND, 0x1122334455667788ULL,
              0x0A0B0C0D0E0F1011ULL);
    ck_assert (memcmp (zframe_data (head), expect, sizeof expect) == 0);
    zmsg_destroy (&msg);

    //  And a header written by hand decodes to those fields.
    msg = s_message (expect, sizeof expect, "{\"error\":\"no such point\"}", 0, 0);
    envelope_t *back = s_decode_ok (msg, false);
    ck_assert (envelope_is_reply (back));
    ck_assert_uint_eq (envelope_type (back), 0x1234);
    ck_assert_int_eq (envelope_status (back), -SH_ENOTFOUND);
    ck_assert_uint_eq (envelope_request_id (back), 0x1122334455667788ULL);
    ck_assert_uint_eq (envelope_deadline (back), 0x0A0B0C0D0E0F1011ULL);
    ck_assert_str_eq (envelope_error (back), "no such point");
    envelope_destroy (&env);
    envelope_destroy (&reply);
    envelope_destroy (&back);
}
END_TEST

START_TEST (test_reply_carries_the_request_and_its_error)
{
    envelope_t *req = envelope_new (9, 77, 123);
    envelope_set_request_id (req, 78);
    ck_assert_uint_eq (envelope_request_id (req), 78);
    envelope_t *reply = envelope_new_reply (req, 0);
    ck_assert (envelope_is_reply (reply));
    ck_assert_uint_eq (envelope_type (reply), 9);
    ck_assert_uint_eq (envelope_request_id (reply), 78);
    ck_assert_uint_eq (envelope_deadline (reply), 123);
    ck_assert_int_eq (envelope_status (reply), 0);
    envelope_set_error (reply, -SH_EEXIST, "collection %s exists", "c1");
    ck_assert_int_eq (envelope_status (reply), -SH_EEXIST);
    ck_assert_str_eq (envelope_error (reply), "collection c1 exists");
    envelope_t *back = s_decode_ok (envelope_encode (reply), false);
    ck_assert_int_eq (envelope_status (back), -SH_EEXIST);
    ck_assert_str_eq (envelope_error (back), "collection c1 exists");
    //  Without an "error" field the table's message stands in.
    envelope_set_json (back, json_object ());
    ck_assert_str_eq (envelope_error (back), sh_strerror (SH_EEXIST));
    envelope_set_status (back, -SH_ETIMEDOUT);
    ck_assert_int_eq (envelope_status (back), -SH_ETIMEDOUT);
    envelope_destroy (&req);
    envelope_destroy (&reply);
    envelope_destroy (&back);
}
END_TEST

START_TEST (test_router_reply_reaches_the_dealer_that_asked)
{
    zsock_t *router = zsock_new_router ("inproc://test_envelope_router");
    zsock_t *dealer_a = zsock_new_dealer (">inproc://test_envelope_router");
    zsock_t *dealer_b = zsock_new_dealer (">inproc://test_envelope_router");
    ck_assert (router && dealer_a && dealer_b);
    //  A lost message fails the test instead of hanging it.
    zsock_set_rcvtimeo (router, 10000);
    zsock_set_rcvtimeo (dealer_a, 10000);
    zsock_set_rcvtimeo (dealer_b, 10000);

    envelope_t *req_a = envelope_new (5, 1001, 0);
    json_object_set_new (envelope_json (req_a), "who", json_string ("a"));
    envelope_t *req_b = envelope_new (5, 2002, 0);
    json_object_set_new (envelope_json (req_b), "who", json_string ("b"));
    ck_assert_int_eq (envelope_send (&req_a, dealer_a), 0);
    ck_assert_ptr_null (req_a);
    ck_assert_int_eq (envelope_send (&req_b, dealer_b), 0);

    for (int i = 0; i < 2; i++) {
        envelope_t *req = NULL;
        ck_assert_int_eq (envelope_recv (router, &req), 0);
        const char *who = json_string_value (json_object_get (envelope_json (req), "who"));
        ck_assert_ptr_nonnull (who);
        envelope_t *reply = envelope_new_reply (req, 0);
        json_object_set_new (envelope_json (reply), "to", json_string (who));
        ck_assert_int_eq (envelope_send (&reply, router), 0);
        envelope_destroy (&req);
    }
    envelope_t *got = NULL;
    ck_assert_int_eq (envelope_recv (dealer_a, &got), 0);
    ck_assert (envelope_is_reply (got));
    ck_assert_uint_eq (envelope_request_id (got), 1001);
    ck_assert_str_eq (json_string_value (json_object_get (envelope_json (got), "to")), "a");
    envelope_destroy (&got);
    ck_assert_int_eq (envelope_recv (dealer_b, &got), 0);
    ck_assert_uint_eq (envelope_request_id (got), 2002);
    ck_assert_str_eq (json_string_value (json_object_get (envelope_json (got), "to")), "b");
    envelope_destroy (&got);

    //  A malformed message on the socket is refused and discarded.
    zstr_send (dealer_a, "garbage");
    ck_assert_int_eq (envelope_recv (router, &got), -SH_EPROTO);
    ck_assert_ptr_null (got);

    zsock_destroy (&dealer_a);
    zsock_destroy (&dealer_b);
    zsock_destroy (&router);
}
END_TEST

START_TEST (test_routing_id_frame_is_kept_for_the_reply)
{
    uint8_t head [ENVELOPE_HEADER_SIZE];
    s_header (head, ENVELOPE_VERSION, 0, 3, 0, 55, 0);
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, "\x00peer-id", 8);
    zmsg_addmem (msg, head, sizeof head);
    zmsg_addstr (msg, "{}");
    envelope_t *req = s_decode_ok (msg, true);
    envelope_t *reply = envelope_new_reply (req, 0);
    zmsg_t *out = envelope_encode (reply);
    ck_assert_uint_eq (zmsg_size (out), 3);
    zframe_t *rid = zmsg_first (out);
    ck_assert_uint_eq (zframe_size (rid), 8);
    ck_assert (memcmp (zframe_data (rid), "\x00peer-id", 8) == 0);
    zmsg_destroy (&out);
    envelope_destroy (&req);
    envelope_destroy (&reply);

    //  has_routing_id with nothing at all, or with only the routing id.
    s_decode_fails (zmsg_new (), true, "empty, routed");
    msg = zmsg_new ();
    zmsg_addmem (msg, "id", 2);
    s_decode_fails (msg, true, "routing id only");
}
END_TEST

START_TEST (test_malformed_headers_are_refused)
{
    uint8_t head [ENVELOPE_HEADER_SIZE + 1];
    s_decode_fails (zmsg_new (), false, "empty message");
    zmsg_t *null_msg = NULL;
    envelope_t *env = NULL;
    ck_assert_int_eq (envelope_decode (&null_msg, false, &env), -SH_EPROTO);

    s_header (head, ENVELOPE_VERSION, 0, 1, 0, 1, 0);
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE - 1, "{}", 0, 0), false,
                    "short header");
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE + 1, "{}", 0, 0), false,
                    "long header");
    s_decode_fails (s_message (head, 0, "{}", 0, 0), false, "empty header");

    s_header (head, ENVELOPE_VERSION, 0, 1, 0, 1, 0);
    head [0] = 'X';
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false, "bad magic");
    s_header (head, ENVELOPE_VERSION, 0, 1, 0, 1, 0);
    head [1] = 'h';
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false, "bad magic 2");
    s_header (head, ENVELOPE_VERSION + 1, 0, 1, 0, 1, 0);
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false, "bad version");
    s_header (head, 0, 0, 1, 0, 1, 0);
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false, "version 0");
    s_header (head, ENVELOPE_VERSION, 2, 1, 0, 1, 0);
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false, "bad kind");
    //  Status is 0 or a negative code: a positive one is not ours.
    s_header (head, ENVELOPE_VERSION, 1, 1, SH_ENOTFOUND, 1, 0);
    s_decode_fails (s_message (head, ENVELOPE_HEADER_SIZE, "{}", 0, 0), false,
                    "positive status");
}
END_TEST

START_TEST (test_peek_reads_what_a_malformed_request_header_names)
{
    uint8_t head [ENVELOPE_HEADER_SIZE];
    uint16_t type = 0;
    uint64_t rid = 0, deadline = 0;
    //  A future version still names its request: it can be answered.
    s_header (head, ENVELOPE_VERSION + 1, 0, 0x1234, 0, 0x0102030405060708ULL, 99);
    ck_assert_int_eq (envelope_peek_request (head, sizeof head, &type, &rid, &deadline), 0);
    ck_assert_uint_eq (type, 0x1234);
    ck_assert_uint_eq (rid, 0x0102030405060708ULL);
    ck_assert_uint_eq (deadline, 99);
    ck_assert_int_eq (envelope_peek_request (head, sizeof head, NULL, NULL, NULL), 0);
    //  No request header: nothing read, nothing to answer.
    ck_assert_int_eq (envelope_peek_request (head, sizeof head - 1, &type, &rid, &deadline),
                      -SH_EPROTO);
    ck_assert_int_eq (envelope_peek_request (NULL, 0, &type, &rid, &deadline), -SH_EPROTO);
    s_header (head, ENVELOPE_VERSION, 1, 7, 0, 1, 0);
    ck_assert_int_eq (envelope_peek_request (head, sizeof head, &type, &rid, &deadline),
                      -SH_EPROTO);
    s_header (head, ENVELOPE_VERSION, 0, 7, 0, 1, 0);
    head [1] = 'X';
    ck_assert_int_eq (envelope_peek_request (head, sizeof head, &type, &rid, &deadline),
                      -SH_EPROTO);
}
END_TEST

START_TEST (test_malformed_json_frames_are_refused)
{
    uint8_t head [ENVELOPE_HEADER_SIZE];
    s_header (head, ENVELOPE_VERSION, 0, 1, 0, 1, 0);
    s_decode_fails (s_message (head, sizeof head, NULL, 0, 0), false, "no JSON frame");
    const char *bad [] = { "", "{", "[]", "[1,2]", "3", "\"text\"", "null", "true",
                           "{\"a\":1,\"a\":2}", "{\"a\":1} trailing" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        s_decode_fails (s_message (head, sizeof head, bad [i], 0, 0), false, bad [i]);
    //  Invalid UTF-8 inside a string.
    s_decode_fails (s_message (head, sizeof head, "{\"a\":\"\xff\"}", 0, 0), false,
                    "bad UTF-8");
}
END_TEST

START_TEST (test_malformed_blobs_are_refused)
{
    uint8_t head [ENVELOPE_HEADER_SIZE];
    s_header (head, ENVELOPE_VERSION, 0, 1, 0, 1, 0);
    for (size_t len = 1; len < 8; len++) {
        if (len % 4 == 0)
            continue;
        s_decode_fails (s_message (head, sizeof head, "{}", 1, len), false,
                        "blob not a multiple of 4");
    }
    //  One bad blob after good ones still spoils the message.
    zmsg_t *msg = s_message (head, sizeof head, "{}", 2, 8);
    zmsg_addmem (msg, "abc", 3);
    s_decode_fails (msg, false, "third blob of 3 bytes");
    //  The most blobs allowed decode; one more is refused.
    envelope_t *env = s_decode_ok (s_message (head, sizeof head, "{}", ENVELOPE_MAX_BLOBS, 8),
                                   false);
    ck_assert_uint_eq (envelope_blob_count (env), ENVELOPE_MAX_BLOBS);
    envelope_destroy (&env);
    s_decode_fails (s_message (head, sizeof head, "{}", ENVELOPE_MAX_BLOBS + 1, 8), false,
                    "too many blobs");
    //  Building one with too many blobs is refused too.
    env = envelope_new (1, 1, 0);
    float f = 1.0f;
    for (int i = 0; i < ENVELOPE_MAX_BLOBS; i++)
        ck_assert_int_eq (envelope_add_floats (env, &f, 1), i);
    ck_assert_int_eq (envelope_add_floats (env, &f, 1), -SH_EINVAL);
    ck_assert_int_eq (envelope_new_blob (env), -SH_EINVAL);
    envelope_destroy (&env);
}
END_TEST

//  -----------------------------------------------------------------------
//  vecref

START_TEST (test_vecref_round_trips_through_the_wire)
{
    envelope_t *env = envelope_new (1, 1, 0);
    int blob = envelope_new_blob (env);
    float v1 [4] = { 1, 2, 3, 4 };
    float v2 [2] = { 5, 6 };
    json_t *r1 = vecref_put (env, blob, v1, 4);
    json_t *r2 = vecref_put (env, blob, v2, 2);
    ck_assert (vecref_is (r1) && vecref_is (r2));
    ck_assert_int_eq (json_integer_value (json_object_get (r2, "o")), 4);
    json_t *list = json_array ();
    json_array_append_new (list, r1);
    json_array_append_new (list, r2);
    json_object_set_new (envelope_json (env), "vectors", list);

    envelope_t *back = s_decode_ok (envelope_encode (env), false);
    json_t *refs = json_object_get (envelope_json (back), "vectors");
    const float *v;
    uint32_t dim;
    ck_assert_int_eq (vecref_get (back, json_array_get (refs, 0), &v, &dim), 0);
    ck_assert_uint_eq (dim, 4);
    ck_assert (memcmp (v, v1, sizeof v1) == 0);
    ck_assert_int_eq (vecref_get (back, json_array_get (refs, 1), &v, &dim), 0);
    ck_assert_uint_eq (dim, 2);
    ck_assert (memcmp (v, v2, sizeof v2) == 0);
    //  A zero-dimension reference at the very end is in bounds.
    json_t *end = json_pack ("{sisisi}", "b", 0, "o", 6, "d", 0);
    ck_assert_int_eq (vecref_get (back, end, &v, &dim), 0);
    ck_assert_uint_eq (dim, 0);
    json_decref (end);
    envelope_destroy (&env);
    envelope_destroy (&back);
}
END_TEST

START_TEST (test_vecref_out_of_bounds_or_malformed_is_refused)
{
    envelope_t *env = envelope_new (1, 1, 0);
    float data [8] = { 0 };
    envelope_add_floats (env, data, 8);
    const char *bad [] = {
        "{\"b\":1,\"o\":0,\"d\":1}",                           //  no such blob
        "{\"b\":-1,\"o\":0,\"d\":1}",
        "{\"b\":0,\"o\":-1,\"d\":1}",
        "{\"b\":0,\"o\":0,\"d\":-1}",
        "{\"b\":0,\"o\":0,\"d\":9}",                           //  past the end
        "{\"b\":0,\"o\":8,\"d\":1}",
        "{\"b\":0,\"o\":9,\"d\":0}",
        "{\"b\":0,\"o\":7,\"d\":2}",
        "{\"b\":0,\"o\":9223372036854775807,\"d\":2}",         //  o + d overflows
        "{\"b\":0,\"o\":2,\"d\":9223372036854775807}",
        "{\"b\":0,\"o\":0,\"d\":4294967296}",                  //  dim beyond u32
        "{\"b\":9223372036854775807,\"o\":0,\"d\":1}",
        "{\"b\":0,\"o\":0}",                                   //  not a vecref
        "{\"b\":0,\"o\":\"0\",\"d\":1}",
        "{\"b\":0,\"o\":0,\"d\":1.0}",
        "[0,0,1]",
        "null",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        json_t *ref = json_loads (bad [i], JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull (ref);
        const float *v = NULL;
        uint32_t dim = 0;
        ck_assert_msg (vecref_get (env, ref, &v, &dim) == -SH_EPROTO, "%s accepted", bad [i]);
        json_decref (ref);
    }
    const float *v;
    uint32_t dim;
    ck_assert_int_eq (vecref_get (env, NULL, &v, &dim), -SH_EPROTO);
    ck_assert (!vecref_is (NULL));
    envelope_destroy (&env);
}
END_TEST

//  --- envelopes over a stream socket -----------------------------------------

static void
s_socketpair (int fds [2])
{
    ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
}

START_TEST (test_stream_round_trips_json_blobs_and_large_frames)
{
    int fds [2];
    s_socketpair (fds);
    envelope_t *env = envelope_new (30, 77, 123456789);
    json_object_set_new (envelope_json (env), "k", json_string ("v"));
    float small [3] = { 1.5f, -2.0f, 3.25f };
    envelope_add_floats (env, small, 3);
    //  A blob larger than any socket buffer: both ends wait for each other.
    size_t big_n = 400000;
    float *big = malloc (big_n * sizeof (float));
    ck_assert_ptr_nonnull (big);
    for (size_t i = 0; i < big_n; i++)
        big [i] = (float) i;
    envelope_add_floats (env, big, big_n);
    //  The writer runs beside the reader, in a child process.
    pid_t pid = fork ();
    ck_assert_int_ge (pid, 0);
    if (pid == 0) {
        close (fds [1]);
        _exit (envelope_write_fd (env, fds [0], envelope_now_ms () + 10000) == 0 ? 0 : 1);
    }
    close (fds [0]);
    envelope_t *got = NULL;
    ck_assert_int_eq (envelope_read_fd (fds [1], envelope_now_ms () + 10000, &got), 0);
    int status = 0;
    waitpid (pid, &status, 0);
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    ck_assert_ptr_nonnull (got);
    ck_assert_uint_eq (envelope_type (got), 30);
    ck_assert_uint_eq (envelope_request_id (got), 77);
    ck_assert_uint_eq (envelope_deadline (got), 123456789);
    ck_assert_str_eq (json_string_value (json_object_get (envelope_json (got), "k")), "v");
    ck_assert_uint_eq (envelope_blob_count (got), 2);
    size_t n = 0;
    const float *f = envelope_floats (got, 0, &n);
    ck_assert (n == 3 && f [0] == 1.5f && f [2] == 3.25f);
    f = envelope_floats (got, 1, &n);
    ck_assert_uint_eq (n, big_n);
    ck_assert (memcmp (f, big, big_n * sizeof (float)) == 0);
    //  The writer has gone: -SH_EIO, nothing made.
    envelope_t *none = got;
    ck_assert_int_eq (envelope_read_fd (fds [1], envelope_now_ms () + 1000, &none), -SH_EIO);
    ck_assert_ptr_null (none);
    envelope_destroy (&got);
    envelope_destroy (&env);
    free (big);
    close (fds [1]);
}
END_TEST

START_TEST (test_stream_reply_keeps_its_status_and_a_gone_reader_is_an_error)
{
    int fds [2];
    s_socketpair (fds);
    envelope_t *req = envelope_new (33, 5, 0);
    envelope_t *reply = envelope_new_reply (req, 0);
    envelope_set_error (reply, -SH_ENOTFOUND, "no %s", "such thing");
    ck_assert_int_eq (envelope_write_fd (reply, fds [0], 0), 0);
    envelope_t *got = NULL;
    ck_assert_int_eq (envelope_read_fd (fds [1], 0, &got), 0);
    ck_assert (envelope_is_reply (got));
    ck_assert_uint_eq (envelope_request_id (got), 5);
    ck_assert_int_eq (envelope_status (got), -SH_ENOTFOUND);
    ck_assert_str_eq (envelope_error (got), "no such thing");
    //  Writing to a socket whose reader closed fails (no SIGPIPE).
    close (fds [1]);
    ck_assert_int_eq (envelope_write_fd (reply, fds [0], envelope_now_ms () + 1000), -SH_EIO);
    envelope_destroy (&got);
    envelope_destroy (&reply);
    envelope_destroy (&req);
    close (fds [0]);
}
END_TEST

//  Writes raw bytes (then closes the writing end, unless keep_open) and
//  reads them as an envelope: the code it got; *out the envelope if any.
static int
s_read_raw (const void *data, size_t len, bool keep_open, envelope_t **out)
{
    int fds [2];
    s_socketpair (fds);
    ck_assert_int_eq (write (fds [0], data, len), (ssize_t) len);
    if (!keep_open)
        close (fds [0]);
    int rc = envelope_read_fd (fds [1], envelope_now_ms () + 200, out);
    if (keep_open)
        close (fds [0]);
    close (fds [1]);
    return rc;
}

START_TEST (test_stream_malformed_or_short_messages_are_refused)
{
    envelope_t *got = NULL;
    //  Frame counts out of bounds.
    uint32_t many [1] = { 200 };
    ck_assert_int_eq (s_read_raw (many, sizeof many, false, &got), -SH_EPROTO);
    uint32_t one [1] = { 1 };
    ck_assert_int_eq (s_read_raw (one, sizeof one, false, &got), -SH_EPROTO);
    //  A header frame of the wrong size, a JSON frame past the limit, a
    //  blob that is not whole floats: refused before anything is allocated.
    uint32_t bad_head [3] = { 2, ENVELOPE_HEADER_SIZE - 1, 2 };
    ck_assert_int_eq (s_read_raw (bad_head, sizeof bad_head, false, &got), -SH_EPROTO);
    uint32_t huge_json [3] = { 2, ENVELOPE_HEADER_SIZE, ENVELOPE_MAX_JSON + 1 };
    ck_assert_int_eq (s_read_raw (huge_json, sizeof huge_json, false, &got), -SH_EPROTO);
    uint32_t odd_blob [4] = { 3, ENVELOPE_HEADER_SIZE, 2, 7 };
    ck_assert_int_eq (s_read_raw (odd_blob, sizeof odd_blob, false, &got), -SH_EPROTO);
    //  A blob claimed at the limit that never comes: memory grows with what
    //  arrives, and the cut stream is -SH_EIO.
    uint32_t claim [4 + 16] = { 3, ENVELOPE_HEADER_SIZE, 2, ENVELOPE_MAX_BLOB };
    ck_assert_int_eq (s_read_raw (claim, sizeof claim, false, &got), -SH_EIO);
    ck_assert_ptr_null (got);
    //  Well framed, but the header is not an envelope's.
    uint8_t msg [12 + ENVELOPE_HEADER_SIZE + 2] = { 0 };
    uint32_t prefix [3] = { 2, ENVELOPE_HEADER_SIZE, 2 };
    memcpy (msg, prefix, sizeof prefix);
    msg [12] = 'X';
    memcpy (msg + 12 + ENVELOPE_HEADER_SIZE, "{}", 2);
    ck_assert_int_eq (s_read_raw (msg, sizeof msg, false, &got), -SH_EPROTO);
    ck_assert_ptr_null (got);
    //  With an envelope's header it reads...
    envelope_t *model = envelope_new (33, 9, 0);
    zmsg_t *frames = envelope_encode (model);
    ck_assert_uint_eq (zframe_size (zmsg_first (frames)), ENVELOPE_HEADER_SIZE);
    memcpy (msg + 12, zframe_data (zmsg_first (frames)), ENVELOPE_HEADER_SIZE);
    zmsg_destroy (&frames);
    envelope_destroy (&model);
    ck_assert_int_eq (s_read_raw (msg, sizeof msg, false, &got), 0);
    ck_assert_uint_eq (envelope_type (got), 33);
    envelope_destroy (&got);
    //  ...not when bytes follow it (one message in flight at a time)...
    uint8_t twice [2 * sizeof msg];
    memcpy (twice, msg, sizeof msg);
    memcpy (twice + sizeof msg, msg, sizeof msg);
    ck_assert_int_eq (s_read_raw (twice, sizeof twice, false, &got), -SH_EPROTO);
    //  ...and cut short it is -SH_EIO once the writer is gone, or
    //  -SH_ETIMEDOUT while it is still there.
    ck_assert_int_eq (s_read_raw (msg, sizeof msg - 1, false, &got), -SH_EIO);
    ck_assert_int_eq (s_read_raw (msg, sizeof msg - 1, true, &got), -SH_ETIMEDOUT);
    ck_assert_ptr_null (got);
}
END_TEST

Suite *
envelope_suite (void)
{
    Suite *s = suite_create ("envelope");
    TCase *tc = tcase_create ("codec");
    tcase_add_test (tc, test_request_round_trips_with_json_and_blobs);
    tcase_add_test (tc, test_empty_envelope_sends_an_empty_object);
    tcase_add_test (tc, test_header_layout_is_little_endian_at_fixed_offsets);
    tcase_add_test (tc, test_reply_carries_the_request_and_its_error);
    suite_add_tcase (s, tc);
    tc = tcase_create ("routing");
    tcase_add_test (tc, test_router_reply_reaches_the_dealer_that_asked);
    tcase_add_test (tc, test_routing_id_frame_is_kept_for_the_reply);
    suite_add_tcase (s, tc);
    tc = tcase_create ("malformed");
    tcase_add_test (tc, test_malformed_headers_are_refused);
    tcase_add_test (tc, test_peek_reads_what_a_malformed_request_header_names);
    tcase_add_test (tc, test_malformed_json_frames_are_refused);
    tcase_add_test (tc, test_malformed_blobs_are_refused);
    suite_add_tcase (s, tc);
    tc = tcase_create ("vecref");
    tcase_add_test (tc, test_vecref_round_trips_through_the_wire);
    tcase_add_test (tc, test_vecref_out_of_bounds_or_malformed_is_refused);
    tcase_add_test (tc, test_stream_round_trips_json_blobs_and_large_frames);
    tcase_add_test (tc, test_stream_reply_keeps_its_status_and_a_gone_reader_is_an_error);
    tcase_add_test (tc, test_stream_malformed_or_short_messages_are_refused);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (envelope_suite)
