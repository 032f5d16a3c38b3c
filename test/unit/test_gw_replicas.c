/*  test_gw_replicas: which replicas a gateway request goes to (reads to one
    readable replica, this peer's first; writes to every replica that takes
    direct writes, never a transfer's Partial target) and the collection's
    CollectionClusterInfo.
*/
#include "actors/gateway/gw_replicas.h"
#include "proto/msg.h"
#include "test/unit/check_main.h"
#include <string.h>

static json_t *
s_load (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, 0, &error);
    ck_assert_msg (json != NULL, "bad test JSON: %s (%s)", text, error.text);
    return json;
}

//  Shard 0: Active on 1 and 2, Partial on 3; shard 1: Active on 3 only;
//  shard 2: Dead on 1, Partial on 2; shard 3: Listener on 2, Active on 9.
static json_t *
s_collection (void)
{
    return s_load ("{\"uid\": 5, \"shards\": ["
                   "{\"shard_id\": 0, \"replicas\": {\"2\": \"Active\", \"1\": \"Active\","
                   "                                 \"3\": \"Partial\"}},"
                   "{\"shard_id\": 1, \"replicas\": {\"3\": \"Active\"}},"
                   "{\"shard_id\": 2, \"replicas\": {\"1\": \"Dead\", \"2\": \"Partial\"}},"
                   "{\"shard_id\": 3, \"replicas\": {\"9\": \"Active\", \"2\": \"Listener\","
                   "                                 \"x\": \"Active\"}}],"
                   "\"transfers\": [{\"shard_id\": 0, \"from\": 1, \"to\": 3,"
                   "                 \"method\": \"stream_records\", \"sync\": false}]}");
}

START_TEST (test_states_read_and_written)
{
    ck_assert (gw_replicas_readable ("Active"));
    ck_assert (gw_replicas_readable ("ActiveRead"));
    const char *unreadable [] = { "Partial", "Dead", "Initializing", "Listener", "Recovery",
                                  "ManualRecovery", "Resharding", "PartialSnapshot", "", NULL };
    for (size_t i = 0; i < sizeof unreadable / sizeof unreadable [0]; i++)
        ck_assert (!gw_replicas_readable (unreadable [i]));
    ck_assert (gw_replicas_writable ("Active"));
    ck_assert (gw_replicas_writable ("Initializing"));
    ck_assert (gw_replicas_writable ("Listener"));
    ck_assert (!gw_replicas_writable ("Partial"));
    ck_assert (!gw_replicas_writable ("Dead"));
    ck_assert (!gw_replicas_writable ("Recovery"));
    ck_assert (!gw_replicas_writable (NULL));
    for (int type = MSG_SHARD_UPSERT; type <= MSG_SHARD_DELETE_VECTORS; type++)
        ck_assert (gw_replicas_is_write (type));
    const int reads [] = { MSG_SHARD_SEARCH, MSG_SHARD_RETRIEVE, MSG_SHARD_SCROLL,
                           MSG_SHARD_COUNT, MSG_SHARD_INFO, MSG_META_GET };
    for (size_t i = 0; i < sizeof reads / sizeof reads [0]; i++)
        ck_assert (!gw_replicas_is_write (reads [i]));
}
END_TEST

START_TEST (test_read_prefers_this_peer_then_spreads_over_others)
{
    json_t *coll = s_collection ();
    uint64_t out [4];
    //  Peer 2 holds an Active replica of shard 0: its own.
    for (uint64_t spread = 0; spread < 4; spread++) {
        ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 2, 0, spread, out, 4), 1);
        ck_assert_uint_eq (out [0], 2);
    }
    //  Peer 3 holds only the Partial copy: it reads from 1 or 2, by spread.
    ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 3, 0, 0, out, 4), 1);
    ck_assert_uint_eq (out [0], 1);
    ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 3, 0, 1, out, 4), 1);
    ck_assert_uint_eq (out [0], 2);
    //  A replica that just failed is avoided while another is readable...
    ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 2, 2, 0, out, 4), 1);
    ck_assert_uint_eq (out [0], 1);
    ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 3, 1, 0, out, 4), 1);
    ck_assert_uint_eq (out [0], 2);
    //  ... and asked again when it is the only one.
    ck_assert_int_eq (gw_replicas_choose (coll, 1, false, 1, 3, 0, out, 4), 1);
    ck_assert_uint_eq (out [0], 3);
    //  No readable replica (Dead, Partial); no such shard; a bad peer key is
    //  skipped.
    ck_assert_int_eq (gw_replicas_choose (coll, 2, false, 1, 0, 0, out, 4), 0);
    ck_assert_int_eq (gw_replicas_choose (coll, 7, false, 1, 0, 0, out, 4), -1);
    for (uint64_t spread = 0; spread < 3; spread++) {
        ck_assert_int_eq (gw_replicas_choose (coll, 3, false, 2, 0, spread, out, 4), 1);
        ck_assert_uint_eq (out [0], 9);
    }
    json_decref (coll);
}
END_TEST

START_TEST (test_write_goes_to_every_replica_that_takes_writes)
{
    json_t *coll = s_collection ();
    uint64_t out [4];
    //  Never to the Partial copy: the transfer source forwards to it.
    ck_assert_int_eq (gw_replicas_choose (coll, 0, true, 3, 0, 0, out, 4), 2);
    ck_assert_uint_eq (out [0], 1);
    ck_assert_uint_eq (out [1], 2);
    ck_assert_int_eq (gw_replicas_choose (coll, 1, true, 1, 0, 0, out, 4), 1);
    ck_assert_uint_eq (out [0], 3);
    ck_assert_int_eq (gw_replicas_choose (coll, 2, true, 1, 0, 0, out, 4), 0);
    ck_assert_int_eq (gw_replicas_choose (coll, 3, true, 1, 0, 0, out, 4), 2);
    ck_assert_uint_eq (out [0], 2);
    ck_assert_uint_eq (out [1], 9);
    //  out is bounded by max.
    ck_assert_int_eq (gw_replicas_choose (coll, 0, true, 3, 0, 0, out, 1), 1);
    ck_assert_uint_eq (out [0], 1);
    json_decref (coll);
}
END_TEST

START_TEST (test_malformed_metadata_is_no_shard)
{
    const char *bad [] = { "{}", "{\"shards\": 3}", "{\"shards\": [{\"shard_id\": 0}]}",
                           "{\"shards\": [{\"shard_id\": \"0\", \"replicas\": {}}]}",
                           "{\"shards\": [{\"shard_id\": 0, \"replicas\": []}]}" };
    uint64_t out [2];
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        json_t *coll = s_load (bad [i]);
        ck_assert_int_eq (gw_replicas_choose (coll, 0, false, 1, 0, 0, out, 2), -1);
        ck_assert_int_eq (gw_replicas_choose (coll, 0, true, 1, 0, 0, out, 2), -1);
        json_t *info = gw_replicas_cluster_info (coll, 1, NULL, NULL);
        ck_assert_ptr_nonnull (info);
        ck_assert_int_eq (json_array_size (json_object_get (info, "local_shards")), 0);
        json_decref (info);
        json_decref (coll);
    }
    ck_assert_int_eq (gw_replicas_choose (NULL, 0, false, 1, 0, 0, out, 2), -1);
}
END_TEST

START_TEST (test_replica_state_and_transfer_lookup)
{
    json_t *coll = s_collection ();
    ck_assert_str_eq (gw_replicas_state (coll, 0, 3), "Partial");
    ck_assert_str_eq (gw_replicas_state (coll, 2, 1), "Dead");
    ck_assert_ptr_null (gw_replicas_state (coll, 1, 1));
    ck_assert_ptr_null (gw_replicas_state (coll, 8, 1));
    ck_assert (gw_replicas_in_transfer (coll, 0));
    ck_assert (!gw_replicas_in_transfer (coll, 1));
    ck_assert (!gw_replicas_in_transfer (coll, 9));
    ck_assert (!gw_replicas_in_transfer (NULL, 0));
    json_decref (coll);
}
END_TEST

START_TEST (test_cluster_info_as_qdrant_shows_it)
{
    json_t *coll = s_collection ();
    json_t *points = s_load ("{\"0\": 120, \"2\": 7}");
    json_t *progress = s_load ("{\"0\": {\"transferred\": 40, \"total\": 120}}");
    json_t *info = gw_replicas_cluster_info (coll, 2, points, progress);
    json_t *expect = s_load (
        "{\"peer_id\": 2, \"shard_count\": 4,"
        " \"local_shards\": [{\"shard_id\": 0, \"points_count\": 120, \"state\": \"Active\"},"
        "                    {\"shard_id\": 2, \"points_count\": 7, \"state\": \"Partial\"},"
        "                    {\"shard_id\": 3, \"points_count\": 0, \"state\": \"Listener\"}],"
        " \"remote_shards\": [{\"shard_id\": 0, \"peer_id\": 1, \"state\": \"Active\"},"
        "                     {\"shard_id\": 0, \"peer_id\": 3, \"state\": \"Partial\"},"
        "                     {\"shard_id\": 1, \"peer_id\": 3, \"state\": \"Active\"},"
        "                     {\"shard_id\": 2, \"peer_id\": 1, \"state\": \"Dead\"},"
        "                     {\"shard_id\": 3, \"peer_id\": 9, \"state\": \"Active\"}],"
        " \"shard_transfers\": [{\"shard_id\": 0, \"from\": 1, \"to\": 3, \"sync\": false,"
        "                        \"method\": \"stream_records\","
        "                        \"comment\": \"Transferring records (40/120)\"}]}");
    char *got = json_dumps (info, JSON_SORT_KEYS);
    ck_assert_msg (json_equal (info, expect), "got %s", got);
    free (got);
    json_decref (info);

    //  Without progress there is no comment; a count above the total (points
    //  written meanwhile are streamed too) raises the total.
    info = gw_replicas_cluster_info (coll, 2, NULL, NULL);
    ck_assert_ptr_null (json_object_get (json_array_get (json_object_get (info,
                                                                          "shard_transfers"),
                                                         0), "comment"));
    ck_assert_int_eq (json_integer_value (json_object_get (json_array_get (
                          json_object_get (info, "local_shards"), 0), "points_count")), 0);
    json_decref (info);
    json_decref (progress);
    progress = s_load ("{\"0\": {\"transferred\": 130, \"total\": 120}}");
    info = gw_replicas_cluster_info (coll, 9, NULL, progress);
    ck_assert_str_eq (json_string_value (json_object_get (json_array_get (
                          json_object_get (info, "shard_transfers"), 0), "comment")),
                      "Transferring records (130/130)");
    ck_assert_int_eq (json_array_size (json_object_get (info, "local_shards")), 1);
    ck_assert_int_eq (json_array_size (json_object_get (info, "remote_shards")), 7);
    json_decref (info);
    json_decref (expect);
    json_decref (progress);
    json_decref (points);
    json_decref (coll);
}
END_TEST

Suite *
gw_replicas_suite (void)
{
    Suite *s = suite_create ("gw_replicas");
    TCase *tc = tcase_create ("choice");
    tcase_add_test (tc, test_states_read_and_written);
    tcase_add_test (tc, test_read_prefers_this_peer_then_spreads_over_others);
    tcase_add_test (tc, test_write_goes_to_every_replica_that_takes_writes);
    tcase_add_test (tc, test_malformed_metadata_is_no_shard);
    tcase_add_test (tc, test_replica_state_and_transfer_lookup);
    suite_add_tcase (s, tc);
    TCase *info = tcase_create ("cluster_info");
    tcase_add_test (info, test_cluster_info_as_qdrant_shows_it);
    suite_add_tcase (s, info);
    return s;
}

SH_CHECK_MAIN (gw_replicas_suite)
