/*  test_p2p_peers: the p2p actor's peer table and links
    (actors/p2p/p2p_peers.c), then whole p2p actors (p2p_actor_main) run in
    threads over loopback with stand-in raft and shard actors: forwarding by
    uri and by id, re-stamped request ids, one-way messages, join replies
    that teach peers, observed_host, deadlines and late replies, unknown and
    unreachable peers, garbage on the p2p port and from local actors, and
    CURVE refusing clients without the cluster key.

    Waiting is on sockets with a receive timeout or on monitor events, never
    a sleep; the timeouts only bound a failure.
*/
#include "actors/actors.h"
#include "actors/p2p/p2p_peers.h"
#include "common/err.h"
#include "common/paths.h"
#include "proto/envelope.h"
#include "proto/msg.h"
#include "proto/route.h"
#include "test/unit/check_main.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  Bounds every wait of a test that fails (ms).
#define S_WAIT_MS 10000

//  A loopback port nothing listens on right now (bound and closed at once).
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (bind (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    ck_assert_int_eq (getsockname (fd, (struct sockaddr *) &addr, &len), 0);
    close (fd);
    return ntohs (addr.sin_port);
}

static zmsg_t *
s_message (const char *text)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, text);
    return msg;
}

//  Reads monitor events of every link until done (or the wait bound).
static bool
s_pump_until (p2p_peers_t *peers, bool (*done) (p2p_peers_t *, void *), void *arg)
{
    int64_t end = zclock_mono () + S_WAIT_MS;
    while (!done (peers, arg)) {
        if (zclock_mono () > end)
            return false;
        p2p_link_t *links [16];
        size_t n = p2p_peers_links (peers, links, 16);
        zmq_pollitem_t items [16];
        for (size_t i = 0; i < n && i < 16; i++)
            items [i] = (zmq_pollitem_t) { zsock_resolve (p2p_link_monitor (links [i])), 0,
                                           ZMQ_POLLIN, 0 };
        zmq_poll (items, (int) (n < 16 ? n : 16), 50);
        for (size_t i = 0; i < n && i < 16; i++)
            p2p_peers_on_monitor (peers, links [i]);
    }
    return true;
}

//  --- the table -------------------------------------------------------------

START_TEST (test_update_adds_peers_and_skips_self_and_bad_entries)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    json_t *state = json_pack ("{ssssssssssssss}",
        "1", "http://127.0.0.1:1",                  //  this peer: skipped
        "2", "http://127.0.0.1:2",
        "3", "tcp://[::1]:3",
        "0", "http://127.0.0.1:4",                  //  id 0
        "x5", "http://127.0.0.1:5",                 //  not decimal
        "6", "ftp://127.0.0.1:6",                   //  not a peer uri
        "18446744073709551616", "http://a:7");      //  2^64
    json_object_set_new (state, "8", json_integer (8));  //  not a string
    ck_assert_int_eq (p2p_peers_update (peers, state, false, 0), 2);
    ck_assert_uint_eq (p2p_peers_size (peers), 2);
    ck_assert_str_eq (p2p_peers_uri (peers, 2), "http://127.0.0.1:2");
    ck_assert_str_eq (p2p_peers_uri (peers, 3), "tcp://[::1]:3");
    ck_assert_ptr_null (p2p_peers_uri (peers, 1));
    ck_assert_ptr_null (p2p_peers_uri (peers, 6));
    //  The same again changes nothing.
    ck_assert_int_eq (p2p_peers_update (peers, state, true, 0), 0);
    json_decref (state);

    json_t *array = json_array ();
    ck_assert_int_eq (p2p_peers_update (peers, array, true, 0), -SH_EINVAL);
    json_decref (array);
    ck_assert_uint_eq (p2p_peers_size (peers), 2);
    p2p_peers_destroy (&peers);
    ck_assert_ptr_null (peers);
}
END_TEST

START_TEST (test_authoritative_update_drops_unlisted_peers_others_only_add)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    json_t *two = json_pack ("{ssss}", "2", "http://127.0.0.1:2", "3", "http://127.0.0.1:3");
    ck_assert_int_eq (p2p_peers_update (peers, two, true, 0), 2);
    json_t *one = json_pack ("{ss}", "4", "http://127.0.0.1:4");
    ck_assert_int_eq (p2p_peers_update (peers, one, false, 0), 1);
    ck_assert_uint_eq (p2p_peers_size (peers), 3);
    ck_assert_int_eq (p2p_peers_update (peers, one, true, 0), 2);   //  2 and 3 dropped
    ck_assert_uint_eq (p2p_peers_size (peers), 1);
    ck_assert_ptr_null (p2p_peers_uri (peers, 2));
    ck_assert_str_eq (p2p_peers_uri (peers, 4), "http://127.0.0.1:4");

    //  A retired link stays listed (its sockets readable) until the tick.
    p2p_link_t *links [8];
    ck_assert_uint_eq (p2p_peers_links (peers, links, 8), 3);
    p2p_peers_tick (peers, 0);
    ck_assert_uint_eq (p2p_peers_links (peers, links, 8), 1);
    ck_assert_uint_eq (p2p_link_peer (links [0]), 4);
    json_decref (two);
    json_decref (one);
    p2p_peers_destroy (&peers);
}
END_TEST

START_TEST (test_a_changed_uri_re_addresses_the_peer)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    json_t *before = json_pack ("{ss}", "2", "http://127.0.0.1:2");
    json_t *after = json_pack ("{ss}", "2", "http://127.0.0.1:22");
    p2p_peers_update (peers, before, true, 0);
    p2p_peers_note_failure (peers, "http://127.0.0.1:2", "boom", 1000);
    ck_assert_int_eq (p2p_peers_update (peers, after, true, 0), 1);
    ck_assert_str_eq (p2p_peers_uri (peers, 2), "http://127.0.0.1:22");
    json_t *info = p2p_peers_info (peers);
    ck_assert_uint_eq (json_object_size (json_object_get (info, "message_send_failures")), 0);
    ck_assert_str_eq (json_string_value (json_object_get (json_object_get (
        json_object_get (info, "peers"), "2"), "uri")), "http://127.0.0.1:22");
    json_decref (info);
    json_decref (before);
    json_decref (after);
    p2p_peers_destroy (&peers);
}
END_TEST

START_TEST (test_failures_are_counted_per_uri_and_cleared_by_a_success)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    p2p_peers_note_failure (peers, "http://a:1", "first", UINT64_C (1700000000123));
    p2p_peers_note_failure (peers, "http://a:1", "second", UINT64_C (1700000001456));
    p2p_peers_note_failure (peers, "http://b:1", NULL, 0);
    p2p_peers_note_failure (peers, NULL, "ignored", 0);
    p2p_peers_note_failure (peers, "", "ignored", 0);
    json_t *info = p2p_peers_info (peers);
    json_t *failures = json_object_get (info, "message_send_failures");
    ck_assert_uint_eq (json_object_size (failures), 2);
    json_t *a = json_object_get (failures, "http://a:1");
    ck_assert_int_eq (json_integer_value (json_object_get (a, "count")), 2);
    ck_assert_str_eq (json_string_value (json_object_get (a, "latest_error")), "second");
    ck_assert_str_eq (json_string_value (json_object_get (a, "latest_error_timestamp")),
                      "2023-11-14T22:13:21.456Z");
    ck_assert_str_eq (json_string_value (json_object_get (
        json_object_get (failures, "http://b:1"), "latest_error")), "send failed");
    ck_assert (json_is_object (json_object_get (info, "peers")));
    json_decref (info);

    p2p_peers_note_success (peers, "http://a:1");
    info = p2p_peers_info (peers);
    failures = json_object_get (info, "message_send_failures");
    ck_assert_ptr_null (json_object_get (failures, "http://a:1"));
    ck_assert_ptr_nonnull (json_object_get (failures, "http://b:1"));
    json_decref (info);
    p2p_peers_destroy (&peers);
}
END_TEST

START_TEST (test_rfc3339_is_utc_with_milliseconds)
{
    char buf [40];
    p2p_peers_rfc3339 (0, buf, sizeof buf);
    ck_assert_str_eq (buf, "1970-01-01T00:00:00.000Z");
    p2p_peers_rfc3339 (UINT64_C (1700000000007), buf, sizeof buf);
    ck_assert_str_eq (buf, "2023-11-14T22:13:20.007Z");
}
END_TEST

//  --- sending ------------------------------------------------------------------

typedef struct {
    uint64_t tokens [8];            //  tokens reported failed
    int statuses [8];               //  their status
    char why [256];                 //  the last reason
    size_t count;                   //  reports
} s_failed_t;

static void
s_on_failed (void *arg, uint64_t token, int status, const char *why)
{
    s_failed_t *failed = (s_failed_t *) arg;
    if (failed->count < 8) {
        failed->tokens [failed->count] = token;
        failed->statuses [failed->count] = status;
    }
    failed->count++;
    snprintf (failed->why, sizeof failed->why, "%s", why);
}

START_TEST (test_send_to_an_unknown_peer_or_a_bad_uri_fails_at_once)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    char why [256];
    zmsg_t *msg = s_message ("x");
    ck_assert_int_eq (p2p_peers_send (peers, 424242, NULL, &msg, 1, 0, why, sizeof why),
                      -SH_EUNAVAIL);
    ck_assert_ptr_null (msg);
    ck_assert_ptr_nonnull (strstr (why, "424242"));
    msg = s_message ("x");
    ck_assert_int_eq (p2p_peers_send (peers, 0, "not a uri", &msg, 1, 0, why, sizeof why),
                      -SH_EINVAL);
    ck_assert_ptr_null (msg);
    msg = s_message ("x");
    ck_assert_int_eq (p2p_peers_send (peers, 0, NULL, &msg, 1, 0, why, sizeof why),
                      -SH_EINVAL);
    json_t *info = p2p_peers_info (peers);
    ck_assert_uint_eq (json_object_size (json_object_get (info, "message_send_failures")), 0);
    json_decref (info);
    p2p_peers_destroy (&peers);
}
END_TEST

static bool
s_failed_some (p2p_peers_t *peers, void *arg)
{
    return ((s_failed_t *) arg)->count > 0;
}

START_TEST (test_a_refused_connection_fails_the_queued_requests_and_counts_them)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    s_failed_t failed = { .count = 0 };
    p2p_peers_set_fail_handler (peers, s_on_failed, &failed);
    char uri [64];
    snprintf (uri, sizeof uri, "http://127.0.0.1:%d", s_free_port ());
    json_t *state = json_pack ("{ss}", "2", uri);
    p2p_peers_update (peers, state, true, zclock_mono ());
    json_decref (state);

    char why [256] = "";
    zmsg_t *msg = s_message ("request");
    ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, 77, zclock_mono (), why,
                                      sizeof why), 0);
    msg = s_message ("one-way");
    ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, 0, zclock_mono (), why,
                                      sizeof why), 0);
    ck_assert (s_pump_until (peers, s_failed_some, &failed));
    //  The one-way message is counted but not reported.
    ck_assert_uint_eq (failed.count, 1);
    ck_assert_uint_eq (failed.tokens [0], 77);
    ck_assert_int_eq (failed.statuses [0], -SH_EUNAVAIL);
    ck_assert_ptr_nonnull (strstr (failed.why, "peer 2"));
    json_t *info = p2p_peers_info (peers);
    json_t *entry = json_object_get (json_object_get (info, "message_send_failures"), uri);
    ck_assert_int_eq (json_integer_value (json_object_get (entry, "count")), 2);
    ck_assert (json_is_false (json_object_get (json_object_get (
        json_object_get (info, "peers"), "2"), "connected")));
    json_decref (info);

    //  Down now: the next send fails at once.
    msg = s_message ("again");
    ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, 78, zclock_mono (), why,
                                      sizeof why), -SH_EUNAVAIL);
    ck_assert_ptr_nonnull (strstr (why, "not connected"));
    p2p_peers_destroy (&peers);
}
END_TEST

START_TEST (test_the_connect_grace_time_ends_in_the_tick)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    s_failed_t failed = { .count = 0 };
    p2p_peers_set_fail_handler (peers, s_on_failed, &failed);
    //  An address that never answers: sends wait for the grace time.
    json_t *state = json_pack ("{ss}", "2", "http://192.0.2.1:6335");
    p2p_peers_update (peers, state, true, 1000);
    json_decref (state);
    char why [256];
    for (uint64_t token = 1; token <= 3; token++) {
        zmsg_t *msg = s_message ("x");
        ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, token, 1000, why, sizeof why),
                          0);
    }
    p2p_peers_tick (peers, 1000 + P2P_CONNECT_GRACE_MS - 1);
    ck_assert_uint_eq (failed.count, 0);
    p2p_peers_tick (peers, 1000 + P2P_CONNECT_GRACE_MS);
    ck_assert_uint_eq (failed.count, 3);
    ck_assert_uint_eq (failed.tokens [0], 1);
    ck_assert_uint_eq (failed.tokens [2], 3);
    zmsg_t *msg = s_message ("x");
    ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, 4, 1000 + P2P_CONNECT_GRACE_MS,
                                      why, sizeof why), -SH_EUNAVAIL);
    p2p_peers_destroy (&peers);
}
END_TEST

START_TEST (test_the_connect_queue_is_bounded)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    char why [256];
    for (int i = 0; i < P2P_QUEUE_MAX; i++) {
        zmsg_t *msg = s_message ("x");
        ck_assert_int_eq (p2p_peers_send (peers, 0, "http://192.0.2.1:6335", &msg, 0, 0, why,
                                          sizeof why), 0);
    }
    zmsg_t *msg = s_message ("x");
    ck_assert_int_eq (p2p_peers_send (peers, 0, "http://192.0.2.1:6335", &msg, 0, 0, why,
                                      sizeof why), -SH_EUNAVAIL);
    ck_assert_ptr_nonnull (strstr (why, "still connecting"));
    p2p_peers_destroy (&peers);
}
END_TEST

static bool
s_connected (p2p_peers_t *peers, void *arg)
{
    p2p_link_t *links [4];
    size_t n = p2p_peers_links (peers, links, 4);
    return n > 0 && p2p_link_connected (links [0]);
}

START_TEST (test_queued_messages_go_out_in_order_once_connected_and_replies_come_back)
{
    zsock_t *server = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (server, "tcp://127.0.0.1:*");
    ck_assert_int_gt (port, 0);
    zsock_set_rcvtimeo (server, S_WAIT_MS);
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    char uri [64];
    snprintf (uri, sizeof uri, "http://127.0.0.1:%d", port);
    json_t *state = json_pack ("{ss}", "2", uri);
    p2p_peers_update (peers, state, true, zclock_mono ());
    json_decref (state);
    p2p_peers_note_failure (peers, uri, "earlier", 1);
    char why [256];
    const char *texts [] = { "one", "two", "three" };
    for (int i = 0; i < 3; i++) {
        zmsg_t *msg = s_message (texts [i]);
        ck_assert_int_eq (p2p_peers_send (peers, 2, NULL, &msg, (uint64_t) i + 1,
                                          zclock_mono (), why, sizeof why), 0);
    }
    ck_assert (s_pump_until (peers, s_connected, NULL));
    zframe_t *conn = NULL;
    for (int i = 0; i < 3; i++) {
        zmsg_t *got = zmsg_recv (server);
        ck_assert_ptr_nonnull (got);
        zframe_destroy (&conn);
        conn = zmsg_pop (got);
        char *text = zmsg_popstr (got);
        ck_assert_str_eq (text, texts [i]);
        zstr_free (&text);
        zmsg_destroy (&got);
    }
    //  Delivered: the earlier failure is gone, the peer shows connected.
    json_t *info = p2p_peers_info (peers);
    ck_assert_uint_eq (json_object_size (json_object_get (info, "message_send_failures")), 0);
    ck_assert (json_is_true (json_object_get (json_object_get (
        json_object_get (info, "peers"), "2"), "connected")));
    json_decref (info);

    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, &conn);
    zmsg_addstr (reply, "answer");
    ck_assert_int_eq (zmsg_send (&reply, server), 0);
    p2p_link_t *links [2];
    ck_assert_uint_eq (p2p_peers_links (peers, links, 2), 1);
    zsock_set_rcvtimeo (p2p_link_socket (links [0]), S_WAIT_MS);
    char *text = zstr_recv (p2p_link_socket (links [0]));
    ck_assert_str_eq (text, "answer");
    zstr_free (&text);
    p2p_peers_destroy (&peers);
    zsock_destroy (&server);
}
END_TEST

START_TEST (test_uri_links_close_when_idle)
{
    p2p_peers_t *peers = p2p_peers_new (1, NULL, NULL);
    char why [256];
    zmsg_t *msg = s_message ("x");
    p2p_peers_send (peers, 0, "http://192.0.2.1:6335", &msg, 0, 0, why, sizeof why);
    p2p_link_t *links [2];
    ck_assert_uint_eq (p2p_peers_links (peers, links, 2), 1);
    ck_assert_uint_eq (p2p_link_peer (links [0]), 0);
    ck_assert_str_eq (p2p_link_uri (links [0]), "http://192.0.2.1:6335");
    p2p_peers_tick (peers, P2P_URI_LINK_IDLE_MS - 1);
    ck_assert_uint_eq (p2p_peers_links (peers, links, 2), 1);
    p2p_peers_tick (peers, P2P_URI_LINK_IDLE_MS);      //  retired
    p2p_peers_tick (peers, P2P_URI_LINK_IDLE_MS + 1);  //  destroyed
    ck_assert_uint_eq (p2p_peers_links (peers, links, 2), 0);
    p2p_peers_destroy (&peers);
}
END_TEST

//  --- whole p2p actors in threads ------------------------------------------------

typedef struct {
    uint64_t id;                    //  peer id
    char dir [256];                 //  storage dir
    char uri [64];                  //  http://127.0.0.1:<p2p port>
    config_t *config;               //  its config
    pthread_t thread;               //  running p2p_actor_main
    int rc;                         //  its exit code
} s_node_t;

static void *
s_node_run (void *arg)
{
    s_node_t *node = (s_node_t *) arg;
    node->rc = p2p_actor_main (node->config, node->id);
    return NULL;
}

//  A fresh storage dir under $TMPDIR (default /tmp).
static void
s_tmpdir (char *buf, size_t size)
{
    const char *base = getenv ("TMPDIR");
    snprintf (buf, size, "%s/test_p2p.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull (mkdtemp (buf));
}

static void
s_node_start (s_node_t *node, uint64_t id, const char *public_key, const char *secret_key)
{
    memset (node, 0, sizeof *node);
    //  zsys_init is not thread-safe: done here before two actors race to it.
    zsys_init ();
    node->id = id;
    s_tmpdir (node->dir, sizeof node->dir);
    node->config = config_new_default ();
    free (node->config->storage_path);
    node->config->storage_path = strdup (node->dir);
    free (node->config->host);
    node->config->host = strdup ("127.0.0.1");
    node->config->p2p_port = s_free_port ();
    node->config->cluster_enabled = true;
    if (public_key) {
        node->config->curve_public_key = strdup (public_key);
        node->config->curve_secret_key = strdup (secret_key);
    }
    snprintf (node->uri, sizeof node->uri, "http://127.0.0.1:%d", node->config->p2p_port);
    ck_assert_int_eq (pthread_create (&node->thread, NULL, s_node_run, node), 0);
}

static void
s_nodes_stop (s_node_t *nodes, size_t count)
{
    zsys_interrupted = 1;
    for (size_t i = 0; i < count; i++) {
        pthread_join (nodes [i].thread, NULL);
        ck_assert_int_eq (nodes [i].rc, 0);
        config_destroy (&nodes [i].config);
        paths_remove_tree (nodes [i].dir);
    }
    zsys_interrupted = 0;
}

//  A DEALER to node's local endpoint, as a local actor has.
static zsock_t *
s_client (s_node_t *node)
{
    char endpoint [PATHS_MAX];
    ck_assert_int_eq (paths_p2p_endpoint (node->dir, endpoint), 0);
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zsock_set_rcvtimeo (sock, S_WAIT_MS);
    zsock_set_linger (sock, 0);
    ck_assert_int_eq (zsock_connect (sock, "%s", endpoint), 0);
    return sock;
}

//  A ROUTER standing in for node's raft actor.
static zsock_t *
s_fake_raft (s_node_t *node)
{
    char endpoint [PATHS_MAX];
    ck_assert_int_eq (paths_raft_endpoint (node->dir, endpoint), 0);
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    zsock_set_rcvtimeo (sock, S_WAIT_MS);
    zsock_set_linger (sock, 0);
    ck_assert_int_eq (zsock_bind (sock, "%s", endpoint), 0);
    return sock;
}

static void
s_send (zsock_t *sock, uint8_t kind, uint8_t actor, uint64_t dst, const char *uri,
        uint16_t type, uint64_t rid, uint64_t deadline, json_t *json)
{
    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = kind;
    route.actor = actor;
    route.dst = dst;
    if (uri)
        snprintf (route.uri, sizeof route.uri, "%s", uri);
    envelope_t *env = envelope_new (type, rid, deadline);
    if (json)
        envelope_set_json (env, json);
    zmsg_t *msg = envelope_encode (env);
    envelope_destroy (&env);
    zframe_t *frame = route_encode (&route);
    zmsg_prepend (msg, &frame);
    ck_assert_int_eq (zmsg_send (&msg, sock), 0);
}

//  Receives [route][envelope] (a ROUTER's routing id first if router).
static envelope_t *
s_recv (zsock_t *sock, route_t *route)
{
    zmsg_t *msg = zmsg_recv (sock);
    ck_assert_msg (msg != NULL, "nothing received within %d ms", S_WAIT_MS);
    if (zsock_type (sock) == ZMQ_ROUTER) {
        zframe_t *routing = zmsg_pop (msg);
        zframe_destroy (&routing);
    }
    zframe_t *frame = zmsg_pop (msg);
    ck_assert_int_eq (route_decode (zframe_data (frame), zframe_size (frame), route), 0);
    zframe_destroy (&frame);
    envelope_t *env = NULL;
    ck_assert_int_eq (envelope_decode (&msg, false, &env), 0);
    return env;
}

//  Waits until node's actor answers P2P_INFO: it is bound and looping.
static void
s_wait_ready (s_node_t *node)
{
    zsock_t *client = s_client (node);
    s_send (client, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 1, 0, NULL);
    route_t route;
    envelope_t *env = s_recv (client, &route);
    ck_assert_int_eq (envelope_status (env), 0);
    envelope_destroy (&env);
    zsock_destroy (&client);
}

//  The fake raft's side of a request: the envelope as delivered.
static envelope_t *
s_fake_recv (zsock_t *raft)
{
    envelope_t *env = NULL;
    ck_assert_int_eq (envelope_recv (raft, &env), 0);
    return env;
}

START_TEST (test_a_request_by_uri_reaches_the_remote_raft_actor_and_its_reply_comes_back)
{
    s_node_t nodes [2];
    s_node_start (&nodes [0], 11, NULL, NULL);
    s_node_start (&nodes [1], 22, NULL, NULL);
    s_wait_ready (&nodes [0]);
    s_wait_ready (&nodes [1]);
    zsock_t *raft = s_fake_raft (&nodes [1]);
    zsock_t *client = s_client (&nodes [0]);

    uint64_t deadline = envelope_now_ms () + S_WAIT_MS;
    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, nodes [1].uri, MSG_META_GET, 4242, deadline,
            json_pack ("{si}", "n", 7));
    envelope_t *delivered = s_fake_recv (raft);
    ck_assert_uint_eq (envelope_type (delivered), MSG_META_GET);
    ck_assert_uint_ne (envelope_request_id (delivered), 4242);    //  re-stamped
    ck_assert_uint_eq (envelope_deadline (delivered), deadline);
    ck_assert_int_eq (json_integer_value (json_object_get (envelope_json (delivered), "n")), 7);
    envelope_t *reply = envelope_new_reply (delivered, 0);
    envelope_set_json (reply, json_pack ("{ss}", "state", "ok"));
    ck_assert_int_eq (envelope_send (&reply, raft), 0);
    envelope_destroy (&delivered);

    route_t route;
    envelope_t *env = s_recv (client, &route);
    ck_assert_uint_eq (route.kind, ROUTE_REPLY);
    ck_assert_uint_eq (route.actor, ROUTE_RAFT);
    ck_assert_uint_eq (route.src, 22);             //  who answered
    ck_assert (envelope_is_reply (env));
    ck_assert_uint_eq (envelope_request_id (env), 4242);
    ck_assert_int_eq (envelope_status (env), 0);
    ck_assert_str_eq (json_string_value (json_object_get (envelope_json (env), "state")), "ok");
    envelope_destroy (&env);
    zsock_destroy (&client);
    zsock_destroy (&raft);
    s_nodes_stop (nodes, 2);
}
END_TEST

START_TEST (test_a_join_gets_observed_host_and_its_reply_teaches_the_peers)
{
    s_node_t nodes [2];
    s_node_start (&nodes [0], 11, NULL, NULL);
    s_node_start (&nodes [1], 22, NULL, NULL);
    s_wait_ready (&nodes [0]);
    s_wait_ready (&nodes [1]);
    zsock_t *raft = s_fake_raft (&nodes [1]);
    zsock_t *client = s_client (&nodes [0]);

    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, nodes [1].uri, MSG_RAFT_JOIN, 1,
            envelope_now_ms () + S_WAIT_MS,
            json_pack ("{sIsnsi}", "peer_id", (json_int_t) 11, "uri", "p2p_port",
                       nodes [0].config->p2p_port));
    envelope_t *join = s_fake_recv (raft);
    json_t *json = envelope_json (join);
    ck_assert_str_eq (json_string_value (json_object_get (json, "observed_host")),
                      "127.0.0.1");
    ck_assert_int_eq (json_integer_value (json_object_get (json, "peer_id")), 11);
    ck_assert (json_is_null (json_object_get (json, "uri")));
    envelope_t *reply = envelope_new_reply (join, 0);
    envelope_set_json (reply, json_pack ("{sIss s{ssss}}", "peer_id", (json_int_t) 22,
                                         "uri", nodes [0].uri, "peers", "22", nodes [1].uri,
                                         "11", nodes [0].uri));
    envelope_send (&reply, raft);
    envelope_destroy (&join);
    route_t route;
    envelope_t *env = s_recv (client, &route);
    ck_assert_int_eq (envelope_status (env), 0);
    ck_assert_uint_eq (envelope_request_id (env), 1);
    envelope_destroy (&env);

    //  Node 11 now knows node 22 by id: a one-way message by id arrives.
    s_send (client, ROUTE_ONEWAY, ROUTE_RAFT, 22, NULL, MSG_RAFT_MESSAGE, 9, 0,
            json_pack ("{ss}", "type", "append"));
    envelope_t *oneway = s_fake_recv (raft);
    ck_assert_uint_eq (envelope_type (oneway), MSG_RAFT_MESSAGE);
    ck_assert_str_eq (json_string_value (json_object_get (envelope_json (oneway), "type")),
                      "append");
    //  A reply to a one-way message matches nothing and is dropped.
    envelope_t *stray = envelope_new_reply (oneway, 0);
    envelope_send (&stray, raft);
    envelope_destroy (&oneway);

    //  P2P_INFO lists the peer learned (and not this node itself).
    s_send (client, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 2, 0, NULL);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 2);
    json_t *peers = json_object_get (envelope_json (env), "peers");
    ck_assert_uint_eq (json_object_size (peers), 1);
    ck_assert_str_eq (json_string_value (json_object_get (json_object_get (peers, "22"),
                                                          "uri")), nodes [1].uri);
    envelope_destroy (&env);
    zsock_destroy (&client);
    zsock_destroy (&raft);
    s_nodes_stop (nodes, 2);
}
END_TEST

START_TEST (test_a_request_past_its_deadline_times_out_and_its_late_reply_is_dropped)
{
    s_node_t nodes [2];
    s_node_start (&nodes [0], 11, NULL, NULL);
    s_node_start (&nodes [1], 22, NULL, NULL);
    s_wait_ready (&nodes [0]);
    s_wait_ready (&nodes [1]);
    zsock_t *raft = s_fake_raft (&nodes [1]);
    zsock_t *client = s_client (&nodes [0]);

    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, nodes [1].uri, MSG_META_GET, 1,
            envelope_now_ms () + 300, NULL);
    envelope_t *slow = s_fake_recv (raft);
    route_t route;
    envelope_t *env = s_recv (client, &route);      //  the timeout, not an answer
    ck_assert_uint_eq (envelope_request_id (env), 1);
    ck_assert_int_eq (envelope_status (env), -SH_ETIMEDOUT);
    ck_assert_ptr_nonnull (strstr (envelope_error (env), nodes [1].uri));
    envelope_destroy (&env);

    envelope_t *late = envelope_new_reply (slow, 0);
    envelope_send (&late, raft);
    envelope_destroy (&slow);
    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, nodes [1].uri, MSG_META_GET, 2,
            envelope_now_ms () + S_WAIT_MS, NULL);
    envelope_t *second = s_fake_recv (raft);
    envelope_t *answer = envelope_new_reply (second, 0);
    envelope_send (&answer, raft);
    envelope_destroy (&second);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 2);   //  not the late one
    ck_assert_int_eq (envelope_status (env), 0);
    envelope_destroy (&env);

    //  A deadline already passed is answered without sending.
    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, nodes [1].uri, MSG_META_GET, 3, 1, NULL);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 3);
    ck_assert_int_eq (envelope_status (env), -SH_ETIMEDOUT);
    envelope_destroy (&env);
    zsock_destroy (&client);
    zsock_destroy (&raft);
    s_nodes_stop (nodes, 2);
}
END_TEST

START_TEST (test_shard_requests_reach_the_shard_actor_named_by_the_route)
{
    s_node_t nodes [2];
    s_node_start (&nodes [0], 11, NULL, NULL);
    s_node_start (&nodes [1], 22, NULL, NULL);
    s_wait_ready (&nodes [0]);
    s_wait_ready (&nodes [1]);
    char endpoint [PATHS_MAX];
    paths_shard_endpoint (nodes [1].dir, 9, 2, endpoint);
    zsock_t *shard = zsock_new (ZMQ_ROUTER);
    zsock_set_rcvtimeo (shard, S_WAIT_MS);
    ck_assert_int_eq (zsock_bind (shard, "%s", endpoint), 0);
    zsock_t *client = s_client (&nodes [0]);

    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = ROUTE_REQUEST;
    route.actor = ROUTE_SHARD;
    route.uid = 9;
    route.shard = 2;
    snprintf (route.uri, sizeof route.uri, "%s", nodes [1].uri);
    envelope_t *request = envelope_new (MSG_SHARD_COUNT, 55, envelope_now_ms () + S_WAIT_MS);
    float floats [4] = { 1, 2, 3, 4 };
    envelope_add_floats (request, floats, 4);
    zmsg_t *msg = envelope_encode (request);
    envelope_destroy (&request);
    zframe_t *frame = route_encode (&route);
    zmsg_prepend (msg, &frame);
    zmsg_send (&msg, client);

    envelope_t *delivered = NULL;
    ck_assert_int_eq (envelope_recv (shard, &delivered), 0);
    ck_assert_uint_eq (envelope_type (delivered), MSG_SHARD_COUNT);
    size_t count = 0;
    const float *got = envelope_floats (delivered, 0, &count);
    ck_assert_uint_eq (count, 4);
    ck_assert (got [3] == 4.0f);
    envelope_t *reply = envelope_new_reply (delivered, 0);
    envelope_set_json (reply, json_pack ("{si}", "count", 3));
    envelope_send (&reply, shard);
    envelope_destroy (&delivered);

    envelope_t *env = s_recv (client, &route);
    ck_assert_uint_eq (route.actor, ROUTE_SHARD);
    ck_assert_uint_eq (route.uid, 9);
    ck_assert_uint_eq (route.shard, 2);
    ck_assert_uint_eq (envelope_request_id (env), 55);
    ck_assert_int_eq (json_integer_value (json_object_get (envelope_json (env), "count")), 3);
    envelope_destroy (&env);
    zsock_destroy (&client);
    zsock_destroy (&shard);
    s_nodes_stop (nodes, 2);
}
END_TEST

START_TEST (test_unknown_and_unreachable_peers_are_answered_at_once_and_counted)
{
    s_node_t node;
    s_node_start (&node, 11, NULL, NULL);
    s_wait_ready (&node);
    zsock_t *client = s_client (&node);
    route_t route;

    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 424242, NULL, MSG_RAFT_JOIN, 1,
            envelope_now_ms () + S_WAIT_MS, NULL);
    envelope_t *env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 1);
    ck_assert_uint_eq (envelope_type (env), MSG_RAFT_JOIN);
    ck_assert_int_eq (envelope_status (env), -SH_EUNAVAIL);
    ck_assert_ptr_nonnull (strstr (envelope_error (env), "424242"));
    envelope_destroy (&env);

    char dead [64];
    snprintf (dead, sizeof dead, "http://127.0.0.1:%d", s_free_port ());
    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, dead, MSG_RAFT_JOIN, 2,
            envelope_now_ms () + S_WAIT_MS, NULL);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 2);
    ck_assert_int_eq (envelope_status (env), -SH_EUNAVAIL);
    ck_assert_ptr_nonnull (strstr (envelope_error (env), dead));
    envelope_destroy (&env);

    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 0, "gopher://x", MSG_RAFT_JOIN, 3, 0, NULL);
    env = s_recv (client, &route);
    ck_assert_int_eq (envelope_status (env), -SH_EINVAL);
    envelope_destroy (&env);

    s_send (client, ROUTE_REQUEST, ROUTE_RAFT, 11, NULL, MSG_RAFT_JOIN, 4, 0, NULL);
    env = s_recv (client, &route);
    ck_assert_int_eq (envelope_status (env), -SH_EINVAL);       //  to itself
    envelope_destroy (&env);

    s_send (client, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 5, 0, NULL);
    env = s_recv (client, &route);
    json_t *entry = json_object_get (json_object_get (envelope_json (env),
                                                      "message_send_failures"), dead);
    ck_assert_int_ge (json_integer_value (json_object_get (entry, "count")), 1);
    const char *stamp = json_string_value (json_object_get (entry, "latest_error_timestamp"));
    ck_assert_uint_eq (strlen (stamp), 24);
    ck_assert (stamp [10] == 'T' && stamp [23] == 'Z');
    envelope_destroy (&env);

    s_send (client, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_META_GET, 6, 0, NULL);
    env = s_recv (client, &route);
    ck_assert_int_eq (envelope_status (env), -SH_EPROTO);       //  not served by p2p
    envelope_destroy (&env);
    zsock_destroy (&client);
    s_nodes_stop (&node, 1);
}
END_TEST

START_TEST (test_malformed_local_requests_are_answered_with_an_error)
{
    s_node_t node;
    s_node_start (&node, 11, NULL, NULL);
    s_wait_ready (&node);
    zsock_t *client = s_client (&node);
    route_t route;

    //  A bad route frame before a readable request: answered by its id.
    envelope_t *request = envelope_new (MSG_RAFT_JOIN, 31, 0);
    zmsg_t *msg = envelope_encode (request);
    envelope_destroy (&request);
    zmsg_pushstr (msg, "not a route");
    zmsg_send (&msg, client);
    envelope_t *env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 31);
    ck_assert_int_eq (envelope_status (env), -SH_EPROTO);
    envelope_destroy (&env);

    //  A good route before an envelope whose JSON frame is missing.
    route_t bad;
    memset (&bad, 0, sizeof bad);
    bad.kind = ROUTE_REQUEST;
    bad.actor = ROUTE_RAFT;
    bad.dst = 5;
    request = envelope_new (MSG_RAFT_JOIN, 32, 0);
    msg = envelope_encode (request);
    envelope_destroy (&request);
    zframe_t *json = zmsg_last (msg);
    zmsg_remove (msg, json);
    zframe_destroy (&json);
    zframe_t *frame = route_encode (&bad);
    zmsg_prepend (msg, &frame);
    zmsg_send (&msg, client);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 32);
    ck_assert_int_eq (envelope_status (env), -SH_EPROTO);
    envelope_destroy (&env);

    //  Garbage of one and two frames, and too many frames: dropped; the
    //  actor still answers the next request.
    zstr_send (client, "x");
    zstr_sendm (client, "x");
    zstr_send (client, "y");
    for (int i = 0; i < 40; i++)
        zstr_sendm (client, "z");
    zstr_send (client, "z");
    s_send (client, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 33, 0, NULL);
    env = s_recv (client, &route);
    ck_assert_uint_eq (envelope_request_id (env), 33);
    ck_assert_int_eq (envelope_status (env), 0);
    envelope_destroy (&env);
    zsock_destroy (&client);
    s_nodes_stop (&node, 1);
}
END_TEST

//  A DEALER straight to node's p2p port, as another peer's link.
static zsock_t *
s_peer_socket (s_node_t *node, const char *public_key, const char *secret_key,
               const char *server_key)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zsock_set_rcvtimeo (sock, S_WAIT_MS);
    zsock_set_linger (sock, 0);
    if (server_key) {
        zsock_set_curve_serverkey (sock, server_key);
        zsock_set_curve_publickey (sock, public_key);
        zsock_set_curve_secretkey (sock, secret_key);
    }
    ck_assert_int_eq (zsock_connect (sock, "tcp://127.0.0.1:%d",
                                     node->config->p2p_port), 0);
    return sock;
}

START_TEST (test_garbage_on_the_p2p_port_is_dropped_and_the_actor_keeps_serving)
{
    s_node_t node;
    s_node_start (&node, 11, NULL, NULL);
    s_wait_ready (&node);

    //  Raw bytes that are not ZMTP.
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) node.config->p2p_port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    const char junk [] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\xff\x00\x01garbage";
    ck_assert_int_eq (write (fd, junk, sizeof junk), (ssize_t) sizeof junk);
    close (fd);

    //  Well-formed ZMTP with bad frames.
    zsock_t *peer = s_peer_socket (&node, NULL, NULL, NULL);
    zstr_send (peer, "garbage");
    zstr_sendm (peer, "two");
    zstr_send (peer, "frames");
    for (int i = 0; i < 40; i++)
        zstr_sendm (peer, "many");
    zstr_send (peer, "many");
    route_t route;
    memset (&route, 0, sizeof route);
    route.kind = ROUTE_REPLY;
    route.actor = ROUTE_RAFT;
    envelope_t *env = envelope_new (MSG_META_GET, 1, 0);
    zmsg_t *msg = envelope_encode (env);
    envelope_destroy (&env);
    zframe_t *frame = route_encode (&route);
    zmsg_prepend (msg, &frame);
    zmsg_send (&msg, peer);                         //  a reply to no one
    uint8_t bad_route [ROUTE_HEADER_SIZE] = { 'S', 'P', 9 };
    zmsg_t *bad = zmsg_new ();
    zmsg_addmem (bad, bad_route, sizeof bad_route);
    zmsg_addstr (bad, "x");
    zmsg_addstr (bad, "{}");
    zmsg_send (&bad, peer);                         //  wrong version

    //  A request for another peer id is answered, not delivered.
    s_send (peer, ROUTE_REQUEST, ROUTE_RAFT, 999, NULL, MSG_META_GET, 7, 0, NULL);
    env = s_recv (peer, &route);
    ck_assert_uint_eq (route.kind, ROUTE_REPLY);
    ck_assert_uint_eq (envelope_request_id (env), 7);
    ck_assert_int_eq (envelope_status (env), -SH_EUNAVAIL);
    envelope_destroy (&env);

    //  And the port still serves a well-formed request.
    s_send (peer, ROUTE_REQUEST, ROUTE_P2P, 11, NULL, MSG_P2P_INFO, 8, 0, NULL);
    env = s_recv (peer, &route);
    ck_assert_uint_eq (envelope_request_id (env), 8);
    ck_assert_int_eq (envelope_status (env), 0);
    ck_assert_uint_eq (route.src, 11);
    envelope_destroy (&env);
    zsock_destroy (&peer);
    s_wait_ready (&node);
    s_nodes_stop (&node, 1);
}
END_TEST

//  Waits for a handshake outcome on a monitored socket: 1 succeeded,
//  -1 failed or disconnected, 0 nothing within the bound.
static int
s_handshake (zsock_t *monitor)
{
    zsock_set_rcvtimeo (monitor, S_WAIT_MS);
    while (true) {
        zmsg_t *msg = zmsg_recv (monitor);
        if (!msg)
            return 0;
        const uint8_t *data = zframe_data (zmsg_first (msg));
        uint16_t event = (uint16_t) (data [0] | data [1] << 8);
        zmsg_destroy (&msg);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            return 1;
        if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED))
            return -1;
    }
}

//  Stops monitoring before closing: a monitored socket whose monitor reader
//  is gone blocks libzmq's I/O thread on its next event.
static void
s_monitored_destroy (zsock_t **sock, zsock_t **monitor)
{
    zmq_socket_monitor (zsock_resolve (*sock), NULL, 0);
    zsock_destroy (sock);
    zsock_destroy (monitor);
}

static zsock_t *
s_monitored_peer (s_node_t *node, const char *public_key, const char *secret_key,
                  const char *server_key, zsock_t **monitor, const char *name)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zsock_set_rcvtimeo (sock, S_WAIT_MS);
    zsock_set_linger (sock, 0);
    if (server_key) {
        zsock_set_curve_serverkey (sock, server_key);
        zsock_set_curve_publickey (sock, public_key);
        zsock_set_curve_secretkey (sock, secret_key);
    }
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://test-monitor-%s", name);
    ck_assert_int_eq (zmq_socket_monitor (zsock_resolve (sock), endpoint, ZMQ_EVENT_ALL), 0);
    *monitor = zsock_new (ZMQ_PAIR);
    //  libzmq's I/O thread blocks on a full monitor pipe: never let it fill.
    zsock_set_rcvhwm (*monitor, 0);
    ck_assert_int_eq (zsock_connect (*monitor, "%s", endpoint), 0);
    ck_assert_int_eq (zsock_connect (sock, "tcp://127.0.0.1:%d", node->config->p2p_port), 0);
    return sock;
}

START_TEST (test_curve_admits_only_clients_holding_the_cluster_key)
{
    char public_key [41], secret_key [41], other_public [41], other_secret [41];
    ck_assert_int_eq (zmq_curve_keypair (public_key, secret_key), 0);
    ck_assert_int_eq (zmq_curve_keypair (other_public, other_secret), 0);
    s_node_t node;
    s_node_start (&node, 11, public_key, secret_key);
    s_wait_ready (&node);

    zsock_t *monitor;
    //  Plain ZMTP: the mechanisms do not match.
    zsock_t *plain = s_monitored_peer (&node, NULL, NULL, NULL, &monitor, "plain");
    s_send (plain, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 1, 0, NULL);
    ck_assert_int_eq (s_handshake (monitor), -1);
    s_monitored_destroy (&plain, &monitor);

    //  CURVE with the server's key but a key pair of its own: ZAP says no.
    zsock_t *stranger = s_monitored_peer (&node, other_public, other_secret, public_key,
                                          &monitor, "stranger");
    s_send (stranger, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 2, 0, NULL);
    ck_assert_int_eq (s_handshake (monitor), -1);
    s_monitored_destroy (&stranger, &monitor);

    //  The cluster key pair: admitted, answered.
    zsock_t *member = s_monitored_peer (&node, public_key, secret_key, public_key, &monitor,
                                        "member");
    s_send (member, ROUTE_REQUEST, ROUTE_P2P, 0, NULL, MSG_P2P_INFO, 3, 0, NULL);
    ck_assert_int_eq (s_handshake (monitor), 1);
    route_t route;
    envelope_t *env = s_recv (member, &route);
    ck_assert_uint_eq (envelope_request_id (env), 3);
    ck_assert_int_eq (envelope_status (env), 0);
    envelope_destroy (&env);
    s_monitored_destroy (&member, &monitor);
    s_nodes_stop (&node, 1);
}
END_TEST

START_TEST (test_a_port_in_use_makes_the_actor_exit_non_zero)
{
    zsock_t *holder = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (holder, "tcp://127.0.0.1:*");
    ck_assert_int_gt (port, 0);
    s_node_t node;
    memset (&node, 0, sizeof node);
    s_tmpdir (node.dir, sizeof node.dir);
    node.config = config_new_default ();
    free (node.config->storage_path);
    node.config->storage_path = strdup (node.dir);
    free (node.config->host);
    node.config->host = strdup ("127.0.0.1");
    node.config->p2p_port = port;
    ck_assert_int_ne (p2p_actor_main (node.config, 11), 0);
    config_destroy (&node.config);
    paths_remove_tree (node.dir);
    zsock_destroy (&holder);
}
END_TEST

static Suite *
p2p_peers_suite (void)
{
    Suite *s = suite_create ("p2p_peers");
    TCase *tc = tcase_create ("table");
    tcase_add_test (tc, test_update_adds_peers_and_skips_self_and_bad_entries);
    tcase_add_test (tc, test_authoritative_update_drops_unlisted_peers_others_only_add);
    tcase_add_test (tc, test_a_changed_uri_re_addresses_the_peer);
    tcase_add_test (tc, test_failures_are_counted_per_uri_and_cleared_by_a_success);
    tcase_add_test (tc, test_rfc3339_is_utc_with_milliseconds);
    suite_add_tcase (s, tc);

    tc = tcase_create ("send");
    tcase_set_timeout (tc, 30);
    tcase_add_test (tc, test_send_to_an_unknown_peer_or_a_bad_uri_fails_at_once);
    tcase_add_test (tc, test_a_refused_connection_fails_the_queued_requests_and_counts_them);
    tcase_add_test (tc, test_the_connect_grace_time_ends_in_the_tick);
    tcase_add_test (tc, test_the_connect_queue_is_bounded);
    tcase_add_test (tc, test_queued_messages_go_out_in_order_once_connected_and_replies_come_back);
    tcase_add_test (tc, test_uri_links_close_when_idle);
    suite_add_tcase (s, tc);

    tc = tcase_create ("actor");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_a_request_by_uri_reaches_the_remote_raft_actor_and_its_reply_comes_back);
    tcase_add_test (tc, test_a_join_gets_observed_host_and_its_reply_teaches_the_peers);
    tcase_add_test (tc, test_a_request_past_its_deadline_times_out_and_its_late_reply_is_dropped);
    tcase_add_test (tc, test_shard_requests_reach_the_shard_actor_named_by_the_route);
    tcase_add_test (tc, test_unknown_and_unreachable_peers_are_answered_at_once_and_counted);
    tcase_add_test (tc, test_malformed_local_requests_are_answered_with_an_error);
    tcase_add_test (tc, test_garbage_on_the_p2p_port_is_dropped_and_the_actor_keeps_serving);
    tcase_add_test (tc, test_curve_admits_only_clients_holding_the_cluster_key);
    tcase_add_test (tc, test_a_port_in_use_makes_the_actor_exit_non_zero);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (p2p_peers_suite)
