/*  test_meta: the metadata state machine: every op, every error, Qdrant's
    wording, determinism and the snapshot round trip; the peers map as conf
    entries and set_peer build it in cluster mode.
*/
#include "actors/raft/meta.h"
#include "common/err.h"
#include "test/unit/check_main.h"
#include <string.h>

static meta_t *s_meta;
static char s_err [512];
static uint64_t s_index;

static void
s_setup (void)
{
    s_meta = meta_new ();
    meta_set_peer (s_meta, 42, "http://127.0.0.1:6335");
    s_index = 0;
    s_err [0] = 0;
}

static void
s_teardown (void)
{
    meta_destroy (&s_meta);
}

//  Applies op (JSON text) as the next entry; returns the code, fills s_err,
//  and checks the result is given exactly on success.
static int
s_apply_on (meta_t *meta, const char *text, json_t **result_out)
{
    json_error_t error;
    json_t *op = json_loads (text, 0, &error);
    ck_assert_msg (op != NULL, "bad test JSON: %s", text);
    json_t *result = NULL;
    int rc = meta_apply (meta, ++s_index, op, &result, s_err, sizeof s_err);
    json_decref (op);
    ck_assert_uint_eq (meta_applied (meta), s_index);
    if (rc == 0)
        ck_assert_ptr_nonnull (result);
    else {
        ck_assert_ptr_null (result);
        ck_assert (s_err [0] != 0);
    }
    if (result_out)
        *result_out = result;
    else
        json_decref (result);
    return rc;
}

static int
s_apply (const char *text)
{
    return s_apply_on (s_meta, text, NULL);
}

static json_t *
s_collection (const char *name)
{
    return json_object_get ((json_t *) meta_collections (s_meta), name);
}

static const char *
s_alias (const char *name)
{
    return json_string_value (json_object_get ((json_t *) meta_aliases (s_meta), name));
}

START_TEST (test_create_places_shards_and_sets_uid)
{
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta,
                                  "{\"type\":\"create_collection\",\"name\":\"books\","
                                  "\"config\":{\"params\":{\"vectors\":{\"size\":4,"
                                  "\"distance\":\"Cosine\"},\"shard_number\":3}}}", &result),
                      0);
    ck_assert (json_is_true (result));
    json_decref (result);
    json_t *coll = s_collection ("books");
    ck_assert_ptr_nonnull (coll);
    ck_assert_int_eq (json_integer_value (json_object_get (coll, "uid")), 1);
    ck_assert (json_is_object (json_object_get (coll, "payload_schema")));
    ck_assert_int_eq (json_object_size (json_object_get (coll, "payload_schema")), 0);
    json_t *shards = json_object_get (coll, "shards");
    ck_assert_int_eq (json_array_size (shards), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *shard = json_array_get (shards, i);
        ck_assert_int_eq (json_integer_value (json_object_get (shard, "shard_id")), (int) i);
        json_t *replicas = json_object_get (shard, "replicas");
        ck_assert_int_eq (json_object_size (replicas), 1);
        ck_assert_str_eq (json_string_value (json_object_get (replicas, "42")), "Active");
    }
    json_t *config = json_object_get (coll, "config");
    ck_assert_int_eq (json_integer_value (json_object_get (
                          json_object_get (json_object_get (config, "params"), "vectors"),
                          "size")), 4);

    //  Without shard_number: one shard per peer (one peer here), recorded.
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"b\","
                               "\"config\":{}}"), 0);
    coll = s_collection ("b");
    ck_assert_int_eq (json_integer_value (json_object_get (coll, "uid")), 2);
    ck_assert_int_eq (json_array_size (json_object_get (coll, "shards")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (
                          json_object_get (json_object_get (coll, "config"), "params"),
                          "shard_number")), 1);
}
END_TEST

START_TEST (test_create_places_round_robin_over_sorted_peers)
{
    meta_set_peer (s_meta, 7, "http://b:6335");
    meta_set_peer (s_meta, 1000, "http://c:6335");
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"c\",\"config\":"
                               "{\"params\":{\"shard_number\":4,\"replication_factor\":2}}}"),
                      0);
    //  Sorted peers: 7, 42, 1000. Shard i on peers i and i+1 (mod 3).
    const char *expect [4][2] = { { "7", "42" }, { "42", "1000" }, { "1000", "7" },
                                  { "7", "42" } };
    json_t *shards = json_object_get (s_collection ("c"), "shards");
    for (size_t i = 0; i < 4; i++) {
        json_t *replicas = json_object_get (json_array_get (shards, i), "replicas");
        ck_assert_int_eq (json_object_size (replicas), 2);
        ck_assert_ptr_nonnull (json_object_get (replicas, expect [i][0]));
        ck_assert_ptr_nonnull (json_object_get (replicas, expect [i][1]));
    }
    //  A replication factor above the peer count places one replica per peer.
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"d\",\"config\":"
                               "{\"params\":{\"shard_number\":1,\"replication_factor\":9}}}"),
                      0);
    json_t *replicas = json_object_get (json_array_get (json_object_get (s_collection ("d"),
                                                                         "shards"), 0),
                                        "replicas");
    ck_assert_int_eq (json_object_size (replicas), 3);
}
END_TEST

START_TEST (test_create_existing_collection_is_refused_with_qdrant_wording)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"x\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"x\",\"config\":{}}"),
                      -SH_EEXIST);
    ck_assert_str_eq (s_err, "Wrong input: Collection `x` already exists!");
    //  The first one is untouched (uid still 1).
    ck_assert_int_eq (json_integer_value (json_object_get (s_collection ("x"), "uid")), 1);
}
END_TEST

START_TEST (test_create_named_like_an_alias_is_refused)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"x\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"x\",\"alias_name\":\"prod\"}}]}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"prod\"}"),
                      -SH_EEXIST);
    ck_assert_str_eq (s_err, "Wrong input: Can't create collection with name prod. Alias "
                             "with the same name already exists");
    ck_assert_ptr_null (s_collection ("prod"));
}
END_TEST

START_TEST (test_create_with_bad_shape_is_refused_and_still_consumes_the_entry)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":5}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\","
                               "\"config\":[]}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\","
                               "\"config\":{\"params\":{\"shard_number\":0}}}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\","
                               "\"config\":{\"params\":{\"shard_number\":100000000}}}"),
                      -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\","
                               "\"config\":{\"params\":{\"replication_factor\":\"2\"}}}"),
                      -SH_EINVAL);
    char long_name [400];
    memset (long_name, 'n', 256);
    long_name [256] = 0;
    char op [512];
    snprintf (op, sizeof op, "{\"type\":\"create_collection\",\"name\":\"%s\"}", long_name);
    ck_assert_int_eq (s_apply (op), -SH_EINVAL);
    ck_assert_int_eq (json_object_size ((json_t *) meta_collections (s_meta)), 0);
    ck_assert_uint_eq (meta_applied (s_meta), 8);
}
END_TEST

START_TEST (test_unknown_or_malformed_ops_are_refused)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"drop_everything\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"name\":\"x\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("[1,2]"), -SH_EINVAL);
    json_t *result = NULL;
    ck_assert_int_eq (meta_apply_entry (s_meta, 10, "{not json", 9, &result, s_err,
                                        sizeof s_err), -SH_EINVAL);
    ck_assert_ptr_null (result);
    ck_assert_uint_eq (meta_applied (s_meta), 10);
    ck_assert_int_eq (meta_apply_entry (s_meta, 11, "", 0, &result, s_err, sizeof s_err),
                      -SH_EINVAL);
    const char *ok = "{\"type\":\"create_collection\",\"name\":\"e\"}";
    ck_assert_int_eq (meta_apply_entry (s_meta, 12, ok, strlen (ok), &result, s_err,
                                        sizeof s_err), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_int_eq (json_integer_value (json_object_get (s_collection ("e"), "uid")), 12);
    meta_skip (s_meta, 13);
    ck_assert_uint_eq (meta_applied (s_meta), 13);
}
END_TEST

START_TEST (test_update_deep_merges_config)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"u\",\"config\":"
                               "{\"params\":{\"shard_number\":1,\"on_disk_payload\":false,"
                               "\"vectors\":{\"size\":4}},"
                               "\"hnsw_config\":{\"m\":16,\"ef_construct\":100},"
                               "\"optimizer_config\":{\"indexing_threshold\":20000}}}"), 0);
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta,
                                  "{\"type\":\"update_collection\",\"name\":\"u\",\"config\":"
                                  "{\"metadata\":{\"keep\":1,\"drop\":null},\"hnsw_config\":{\"m\":32},\"params\":{\"on_disk_payload\":"
                                  "true},\"optimizer_config\":null,"
                                  "\"quantization_config\":{\"scalar\":{\"type\":\"int8\"}}}}",
                                  &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    json_t *config = json_object_get (s_collection ("u"), "config");
    json_t *hnsw = json_object_get (config, "hnsw_config");
    ck_assert_int_eq (json_integer_value (json_object_get (hnsw, "m")), 32);
    ck_assert_int_eq (json_integer_value (json_object_get (hnsw, "ef_construct")), 100);
    json_t *params = json_object_get (config, "params");
    ck_assert (json_is_true (json_object_get (params, "on_disk_payload")));
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (params, "vectors"),
                                                           "size")), 4);
    //  null removes the key (a JSON merge patch, as Qdrant merges metadata)
    ck_assert_ptr_null (json_object_get (config, "optimizer_config"));
    ck_assert_ptr_nonnull (json_object_get (config, "quantization_config"));
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (config, "metadata"),
                                                           "keep")), 1);
    ck_assert_ptr_null (json_object_get (json_object_get (config, "metadata"), "drop"));
    //  uid and shards untouched
    ck_assert_int_eq (json_integer_value (json_object_get (s_collection ("u"), "uid")), 1);
}
END_TEST

START_TEST (test_update_errors)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"update_collection\",\"name\":\"ghost\","
                               "\"config\":{}}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Collection `ghost` doesn't exist!");
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"u\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"update_collection\",\"name\":\"u\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"update_collection\",\"name\":\"u\","
                               "\"config\":{\"params\":{\"shard_number\":5}}}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"update_collection\",\"name\":\"u\","
                               "\"config\":{\"params\":7}}"), -SH_EINVAL);
    //  Restating the same shard_number is fine.
    ck_assert_int_eq (s_apply ("{\"type\":\"update_collection\",\"name\":\"u\","
                               "\"config\":{\"params\":{\"shard_number\":1}}}"), 0);
}
END_TEST

START_TEST (test_delete_collection_and_its_aliases)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"b\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":["
                               "{\"create_alias\":{\"collection_name\":\"a\",\"alias_name\":\"a1\"}},"
                               "{\"create_alias\":{\"collection_name\":\"a\",\"alias_name\":\"a2\"}},"
                               "{\"create_alias\":{\"collection_name\":\"b\",\"alias_name\":\"b1\"}}"
                               "]}"), 0);
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"delete_collection\",\"name\":\"a\"}",
                                  &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_ptr_null (s_collection ("a"));
    ck_assert_ptr_null (s_alias ("a1"));
    ck_assert_ptr_null (s_alias ("a2"));
    ck_assert_str_eq (s_alias ("b1"), "b");
    //  Deleting what is not there answers false, not an error (Qdrant).
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"delete_collection\",\"name\":\"a\"}",
                                  &result), 0);
    ck_assert (json_is_false (result));
    json_decref (result);
    ck_assert_int_eq (s_apply ("{\"type\":\"delete_collection\"}"), -SH_EINVAL);
    //  A re-created collection gets a new uid.
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"a\"}"), 0);
    ck_assert_int_eq (json_integer_value (json_object_get (s_collection ("a"), "uid")), 7);
}
END_TEST

START_TEST (test_aliases_create_rename_delete)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"v1\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"v2\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"v1\",\"alias_name\":\"prod\"}}]}"), 0);
    ck_assert_str_eq (s_alias ("prod"), "v1");
    //  The blue/green switch: delete then create, in one op.
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":["
                               "{\"delete_alias\":{\"alias_name\":\"prod\"}},"
                               "{\"create_alias\":{\"collection_name\":\"v2\",\"alias_name\":"
                               "\"prod\"}}]}"), 0);
    ck_assert_str_eq (s_alias ("prod"), "v2");
    //  Creating an existing alias re-points it (Qdrant).
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"v1\",\"alias_name\":\"prod\"}}]}"), 0);
    ck_assert_str_eq (s_alias ("prod"), "v1");
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"rename_alias\":"
                               "{\"old_alias_name\":\"prod\",\"new_alias_name\":\"live\"}}]}"),
                      0);
    ck_assert_ptr_null (s_alias ("prod"));
    ck_assert_str_eq (s_alias ("live"), "v1");
    //  Deleting a missing alias is not an error (Qdrant).
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"delete_alias\":"
                               "{\"alias_name\":\"nope\"}}]}"), 0);
}
END_TEST

START_TEST (test_alias_errors_change_nothing)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"c\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"d\"}"), 0);
    //  All or nothing: the first action would succeed, the second fails.
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":["
                               "{\"create_alias\":{\"collection_name\":\"c\",\"alias_name\":\"ok\"}},"
                               "{\"create_alias\":{\"collection_name\":\"ghost\",\"alias_name\":"
                               "\"bad\"}}]}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Collection `ghost` doesn't exist!");
    ck_assert_ptr_null (s_alias ("ok"));
    //  One namespace: an alias may not take a collection's name.
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"c\",\"alias_name\":\"d\"}}]}"),
                      -SH_EEXIST);
    ck_assert_str_eq (s_err, "Wrong input: Collection `d` already exists!");
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"rename_alias\":"
                               "{\"old_alias_name\":\"none\",\"new_alias_name\":\"x\"}}]}"),
                      -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Alias none does not exists!");
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"c\",\"alias_name\":\"al\"}}]}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"rename_alias\":"
                               "{\"old_alias_name\":\"al\",\"new_alias_name\":\"d\"}}]}"),
                      -SH_EEXIST);
    ck_assert_str_eq (s_alias ("al"), "c");
    //  Shapes
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{}]}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"explode\":{}}]}"),
                      -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":"
                               "{\"collection_name\":\"c\"}}]}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"change_aliases\",\"actions\":[{\"delete_alias\":"
                               "{}}]}"), -SH_EINVAL);
    ck_assert_int_eq (json_object_size ((json_t *) meta_aliases (s_meta)), 1);
}
END_TEST

START_TEST (test_state_layout_and_soft_fields)
{
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"s\"}"), 0);
    json_t *state = meta_state (s_meta, 3, 42, 42);
    ck_assert_int_eq (json_integer_value (json_object_get (state, "applied")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (state, "term")), 3);
    ck_assert_int_eq (json_integer_value (json_object_get (state, "leader")), 42);
    ck_assert_int_eq (json_integer_value (json_object_get (state, "peer_id")), 42);
    ck_assert_str_eq (json_string_value (json_object_get (json_object_get (state, "peers"),
                                                          "42")), "http://127.0.0.1:6335");
    ck_assert (json_is_object (json_object_get (json_object_get (state, "collections"), "s")));
    ck_assert (json_is_object (json_object_get (state, "aliases")));
    //  A copy: changing it does not change the machine.
    json_object_clear (json_object_get (state, "collections"));
    ck_assert_ptr_nonnull (s_collection ("s"));
    json_decref (state);
}
END_TEST

START_TEST (test_same_ops_give_same_state_and_dump_round_trips)
{
    const char *ops [] = {
        "{\"type\":\"create_collection\",\"name\":\"a\",\"config\":{\"params\":{\"shard_number\":2}}}",
        "{\"type\":\"create_collection\",\"name\":\"a\"}",
        "{\"type\":\"change_aliases\",\"actions\":[{\"create_alias\":{\"collection_name\":\"a\","
        "\"alias_name\":\"x\"}}]}",
        "{\"type\":\"update_collection\",\"name\":\"a\",\"config\":{\"hnsw_config\":{\"m\":8}}}",
        "{\"type\":\"create_collection\",\"name\":\"b\"}",
        "{\"type\":\"delete_collection\",\"name\":\"b\"}",
    };
    meta_t *other = meta_new ();
    meta_set_peer (other, 42, "http://127.0.0.1:6335");
    uint64_t start = s_index;
    for (size_t i = 0; i < sizeof ops / sizeof ops [0]; i++)
        s_apply (ops [i]);
    s_index = start;
    for (size_t i = 0; i < sizeof ops / sizeof ops [0]; i++)
        s_apply_on (other, ops [i], NULL);
    size_t len_a = 0, len_b = 0;
    char *a = meta_dump (s_meta, &len_a);
    char *b = meta_dump (other, &len_b);
    ck_assert_str_eq (a, b);

    //  A snapshot restores the same state into a fresh machine.
    meta_t *restored = meta_new ();
    ck_assert_int_eq (meta_load (restored, a, len_a), 0);
    char *c = meta_dump (restored, NULL);
    ck_assert_str_eq (a, c);
    ck_assert_uint_eq (meta_applied (restored), meta_applied (s_meta));
    ck_assert_int_eq (meta_load (restored, "{\"applied\":\"x\"}", 15), -SH_EINVAL);
    ck_assert_int_eq (meta_load (restored, "garbage", 7), -SH_EINVAL);
    char *d = meta_dump (restored, NULL);
    ck_assert_str_eq (a, d);            //  unchanged by the failed loads
    free (a);
    free (b);
    free (c);
    free (d);
    meta_destroy (&restored);
    meta_destroy (&other);
}
END_TEST

START_TEST (test_an_op_id_seen_before_ends_as_it_did)
{
    //  A forwarder's retry of an op that was applied after all.
    const char *create = "{\"type\":\"create_collection\",\"name\":\"x\",\"op_id\":\"7-a\"}";
    json_t *first = NULL, *again = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, create, &first), 0);
    ck_assert_int_eq (s_apply_on (s_meta, create, &again), 0);
    ck_assert (json_equal (first, again));
    json_decref (first);
    json_decref (again);
    ck_assert_int_eq (json_integer_value (json_object_get (s_collection ("x"), "uid")), 1);
    ck_assert_uint_eq (meta_applied (s_meta), 2);
    //  Another op under another id is applied (and refused) as usual; its
    //  retry is refused with the same words.
    const char *other = "{\"type\":\"create_collection\",\"name\":\"x\",\"op_id\":\"7-b\"}";
    ck_assert_int_eq (s_apply (other), -SH_EEXIST);
    ck_assert_str_eq (s_err, "Wrong input: Collection `x` already exists!");
    s_err [0] = 0;
    ck_assert_int_eq (s_apply (other), -SH_EEXIST);
    ck_assert_str_eq (s_err, "Wrong input: Collection `x` already exists!");
    //  Without an op_id nothing is remembered: a delete, then the first
    //  create's retry still ends as the create did, without creating.
    ck_assert_int_eq (s_apply ("{\"type\":\"delete_collection\",\"name\":\"x\"}"), 0);
    ck_assert_int_eq (s_apply (create), 0);
    ck_assert_ptr_null (s_collection ("x"));
    //  An op_id must be a non-empty string of at most META_MAX_OP_ID bytes.
    char long_id [META_MAX_OP_ID + 2];
    memset (long_id, 'z', sizeof long_id - 1);
    long_id [sizeof long_id - 1] = 0;
    char text [256];
    snprintf (text, sizeof text, "{\"type\":\"create_collection\",\"name\":\"y\",\"op_id\":\"%s\"}",
              long_id);
    const char *bad [] = { "{\"type\":\"create_collection\",\"name\":\"y\",\"op_id\":3}",
                           "{\"type\":\"create_collection\",\"name\":\"y\",\"op_id\":\"\"}",
                           text };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        ck_assert_int_eq (s_apply (bad [i]), -SH_EINVAL);
    ck_assert_ptr_null (s_collection ("y"));
}
END_TEST

START_TEST (test_op_ids_are_bounded_and_carried_by_the_snapshot)
{
    const char *create = "{\"type\":\"create_collection\",\"name\":\"x\",\"op_id\":\"1-first\"}";
    ck_assert_int_eq (s_apply (create), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"delete_collection\",\"name\":\"x\"}"), 0);
    //  A snapshot remembers it: the restored machine does not create again.
    size_t len = 0;
    char *dump = meta_dump (s_meta, &len);
    meta_t *restored = meta_new ();
    ck_assert_int_eq (meta_load (restored, dump, len), 0);
    free (dump);
    ck_assert_int_eq (s_apply_on (restored, create, NULL), 0);
    ck_assert_ptr_null (json_object_get (meta_collections (restored), "x"));
    meta_destroy (&restored);
    //  META_DONE_MAX ops later it is forgotten, and applies again.
    for (int i = 0; i < META_DONE_MAX; i++) {
        char text [160];
        snprintf (text, sizeof text, "{\"type\":\"set_peer\",\"peer_id\":42,"
                  "\"uri\":\"http://127.0.0.1:6335\",\"op_id\":\"2-%d\"}", i);
        ck_assert_int_eq (s_apply (text), 0);
    }
    ck_assert_int_eq (s_apply (create), 0);
    ck_assert_ptr_nonnull (s_collection ("x"));
    //  A snapshot whose list is malformed is refused.
    const char *bad [] = {
        "{\"applied\":1,\"peers\":{},\"collections\":{},\"aliases\":{},\"done\":{}}",
        "{\"applied\":1,\"peers\":{},\"collections\":{},\"aliases\":{},\"done\":[{}]}",
        "{\"applied\":1,\"peers\":{},\"collections\":{},\"aliases\":{},"
        "\"done\":[{\"op_id\":\"a\",\"rc\":5,\"error\":\"\"}]}",
    };
    restored = meta_new ();
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        ck_assert_int_eq (meta_load (restored, bad [i], strlen (bad [i])), -SH_EINVAL);
    //  One from before op ids (no list) loads.
    const char *old = "{\"applied\":1,\"peers\":{},\"collections\":{},\"aliases\":{}}";
    ck_assert_int_eq (meta_load (restored, old, strlen (old)), 0);
    meta_destroy (&restored);
}
END_TEST

START_TEST (test_create_without_peers_is_refused)
{
    meta_t *bare = meta_new ();
    json_t *op = json_pack ("{ssss}", "type", "create_collection", "name", "x");
    json_t *result = NULL;
    ck_assert_int_eq (meta_apply (bare, 1, op, &result, s_err, sizeof s_err), -SH_EUNAVAIL);
    ck_assert_ptr_null (result);
    json_decref (op);
    meta_destroy (&bare);
}
END_TEST

START_TEST (test_field_indexes_are_set_replaced_and_dropped)
{
    ck_assert_int_eq (s_apply ("{\"type\": \"create_collection\", \"name\": \"c\", "
                               "\"config\": {\"params\": {\"shard_number\": 1}}}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\": \"create_field_index\", \"name\": \"c\", "
                               "\"field_name\": \"a.b\", \"field_schema\": "
                               "{\"data_type\": \"keyword\", \"params\": null}}"), 0);
    json_t *schema = json_object_get (json_object_get (s_collection ("c"), "payload_schema"),
                                      "a.b");
    ck_assert_str_eq (json_string_value (json_object_get (schema, "data_type")), "keyword");
    //  Again with another type: replaced, as Qdrant does.
    ck_assert_int_eq (s_apply ("{\"type\": \"create_field_index\", \"name\": \"c\", "
                               "\"field_name\": \"a.b\", \"field_schema\": "
                               "{\"data_type\": \"integer\", \"params\": null}}"), 0);
    schema = json_object_get (json_object_get (s_collection ("c"), "payload_schema"), "a.b");
    ck_assert_str_eq (json_string_value (json_object_get (schema, "data_type")), "integer");
    ck_assert_int_eq (s_apply ("{\"type\": \"delete_field_index\", \"name\": \"c\", "
                               "\"field_name\": \"a.b\"}"), 0);
    ck_assert_int_eq (json_object_size (json_object_get (s_collection ("c"), "payload_schema")),
                      0);
    //  Dropping an absent index is fine; an unknown collection or a bad op is not.
    ck_assert_int_eq (s_apply ("{\"type\": \"delete_field_index\", \"name\": \"c\", "
                               "\"field_name\": \"zz\"}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\": \"create_field_index\", \"name\": \"nope\", "
                               "\"field_name\": \"a\", \"field_schema\": "
                               "{\"data_type\": \"keyword\"}}"), -SH_ENOTFOUND);
    ck_assert_int_eq (s_apply ("{\"type\": \"create_field_index\", \"name\": \"c\", "
                               "\"field_name\": \"a\"}"), -SH_EINVAL);
}
END_TEST

//  Applies a conf entry (JSON text) as the next entry.
static int
s_conf (meta_t *meta, const char *text)
{
    int rc = meta_apply_conf (meta, ++s_index, text, strlen (text), s_err, sizeof s_err);
    ck_assert_uint_eq (meta_applied (meta), s_index);
    if (rc)
        ck_assert (s_err [0] != 0);
    return rc;
}

START_TEST (test_conf_entries_add_and_remove_peer_uris)
{
    meta_t *meta = meta_new ();
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"add_learner\",\"peer_id\":7,"
                                    "\"voters\":[42],\"learners\":[7],"
                                    "\"uri\":\"http://10.0.0.7:6335\"}"), 0);
    ck_assert_str_eq (meta_peer_uri (meta, 7), "http://10.0.0.7:6335");
    //  A promote without a uri keeps the recorded one.
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"promote\",\"peer_id\":7,"
                                    "\"voters\":[7,42],\"learners\":[]}"), 0);
    ck_assert_str_eq (meta_peer_uri (meta, 7), "http://10.0.0.7:6335");
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"remove\",\"peer_id\":7,"
                                    "\"voters\":[42],\"learners\":[]}"), 0);
    ck_assert_ptr_null (meta_peer_uri (meta, 7));
    //  Removing a peer that is not in the map is not an error (it may never
    //  have had a uri recorded).
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"remove\",\"peer_id\":99,"
                                    "\"voters\":[42],\"learners\":[]}"), 0);
    meta_destroy (&meta);
}
END_TEST

START_TEST (test_malformed_conf_entries_are_refused_and_consume_the_index)
{
    meta_t *meta = meta_new ();
    meta_set_peer (meta, 42, "http://a:6335");
    ck_assert_int_eq (s_conf (meta, "not json"), -SH_EINVAL);
    ck_assert_int_eq (s_conf (meta, "[1]"), -SH_EINVAL);
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"remove\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"remove\",\"peer_id\":0}"), -SH_EINVAL);
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"remove\",\"peer_id\":\"42\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"explode\",\"peer_id\":42}"), -SH_EINVAL);
    ck_assert_int_eq (meta_apply_conf (meta, ++s_index, NULL, 0, s_err, sizeof s_err),
                      -SH_EINVAL);
    ck_assert_uint_eq (meta_applied (meta), s_index);
    //  Nothing changed: peer 42 is still there.
    ck_assert_str_eq (meta_peer_uri (meta, 42), "http://a:6335");
    //  A uri that is not a usable string is ignored, the change still applies.
    ck_assert_int_eq (s_conf (meta, "{\"change\":\"add_learner\",\"peer_id\":5,\"uri\":7}"), 0);
    ck_assert_ptr_null (meta_peer_uri (meta, 5));
    meta_destroy (&meta);
}
END_TEST

START_TEST (test_set_peer_records_and_replaces_a_uri)
{
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"set_peer\",\"peer_id\":9,"
                                          "\"uri\":\"http://n9:6335\"}", &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_str_eq (meta_peer_uri (s_meta, 9), "http://n9:6335");
    ck_assert_int_eq (s_apply ("{\"type\":\"set_peer\",\"peer_id\":9,"
                               "\"uri\":\"http://n9b:6335\"}"), 0);
    ck_assert_str_eq (meta_peer_uri (s_meta, 9), "http://n9b:6335");
    //  Shapes
    ck_assert_int_eq (s_apply ("{\"type\":\"set_peer\",\"uri\":\"http://x:1\"}"), -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"set_peer\",\"peer_id\":-3,\"uri\":\"http://x:1\"}"),
                      -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"set_peer\",\"peer_id\":3,\"uri\":\"\"}"),
                      -SH_EINVAL);
    ck_assert_int_eq (s_apply ("{\"type\":\"set_peer\",\"peer_id\":3}"), -SH_EINVAL);
    char op [META_MAX_URI + 128];
    char uri [META_MAX_URI + 2];
    memset (uri, 'u', META_MAX_URI + 1);
    uri [META_MAX_URI + 1] = 0;
    snprintf (op, sizeof op, "{\"type\":\"set_peer\",\"peer_id\":3,\"uri\":\"%s\"}", uri);
    ck_assert_int_eq (s_apply (op), -SH_EINVAL);
    ck_assert_ptr_null (meta_peer_uri (s_meta, 3));
    //  remove_peer is a conf change, never an op in the log.
    ck_assert_int_eq (s_apply ("{\"type\":\"remove_peer\",\"peer_id\":9}"), -SH_EINVAL);
    ck_assert_str_eq (meta_peer_uri (s_meta, 9), "http://n9b:6335");
}
END_TEST

START_TEST (test_peer_has_shards_and_removal_drops_its_replicas)
{
    meta_set_peer (s_meta, 7, "http://b:6335");
    meta_set_peer (s_meta, 1000, "http://c:6335");
    //  Two shards, one replica each: on 7 and on 42 (sorted peers 7, 42, 1000).
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"c\",\"config\":"
                               "{\"params\":{\"shard_number\":2}}}"), 0);
    ck_assert (meta_peer_has_shards (s_meta, 7));
    ck_assert (meta_peer_has_shards (s_meta, 42));
    ck_assert (!meta_peer_has_shards (s_meta, 1000));
    ck_assert (!meta_peer_has_shards (s_meta, 5));
    ck_assert_int_eq (s_conf (s_meta, "{\"change\":\"remove\",\"peer_id\":7,"
                                      "\"voters\":[42,1000],\"learners\":[]}"), 0);
    ck_assert (!meta_peer_has_shards (s_meta, 7));
    ck_assert_ptr_null (meta_peer_uri (s_meta, 7));
    json_t *shards = json_object_get (s_collection ("c"), "shards");
    ck_assert_int_eq (json_object_size (json_object_get (json_array_get (shards, 0),
                                                         "replicas")), 0);
    ck_assert_ptr_nonnull (json_object_get (json_object_get (json_array_get (shards, 1),
                                                             "replicas"), "42"));
    //  Deleting the collection frees peer 42 too.
    ck_assert_int_eq (s_apply ("{\"type\":\"delete_collection\",\"name\":\"c\"}"), 0);
    ck_assert (!meta_peer_has_shards (s_meta, 42));
}
END_TEST

START_TEST (test_reset_peers_keeps_only_this_peer)
{
    meta_set_peer (s_meta, 7, "http://b:6335");
    meta_reset_peers (s_meta, 42, "http://me:6335");
    ck_assert_ptr_null (meta_peer_uri (s_meta, 7));
    ck_assert_str_eq (meta_peer_uri (s_meta, 42), "http://me:6335");
    json_t *state = meta_state (s_meta, 1, 42, 42);
    ck_assert_int_eq (json_object_size (json_object_get (state, "peers")), 1);
    json_decref (state);
}
END_TEST

START_TEST (test_dump_and_load_carry_the_replicated_peers)
{
    meta_t *a = meta_new ();
    ck_assert_int_eq (s_conf (a, "{\"change\":\"add_learner\",\"peer_id\":7,"
                                 "\"voters\":[42],\"learners\":[7],"
                                 "\"uri\":\"http://b:6335\"}"), 0);
    ck_assert_int_eq (s_apply_on (a, "{\"type\":\"set_peer\",\"peer_id\":42,"
                                     "\"uri\":\"http://a:6335\"}", NULL), 0);
    ck_assert_int_eq (s_apply_on (a, "{\"type\":\"create_collection\",\"name\":\"x\"}", NULL),
                      0);
    size_t len = 0;
    char *dump = meta_dump (a, &len);
    meta_t *b = meta_new ();
    meta_set_peer (b, 99, "http://stale:6335");
    ck_assert_int_eq (meta_load (b, dump, len), 0);
    //  The snapshot's peers replace whatever b had.
    ck_assert_ptr_null (meta_peer_uri (b, 99));
    ck_assert_str_eq (meta_peer_uri (b, 7), "http://b:6335");
    ck_assert_str_eq (meta_peer_uri (b, 42), "http://a:6335");
    ck_assert (meta_peer_has_shards (b, 7) || meta_peer_has_shards (b, 42));
    ck_assert_uint_eq (meta_applied (b), 3);
    char *again = meta_dump (b, NULL);
    ck_assert_str_eq (dump, again);
    //  The same entries applied after the snapshot give the same state on both.
    ck_assert_int_eq (s_conf (a, "{\"change\":\"remove\",\"peer_id\":7,"
                                 "\"voters\":[42],\"learners\":[]}"), 0);
    s_index--;
    ck_assert_int_eq (s_conf (b, "{\"change\":\"remove\",\"peer_id\":7,"
                                 "\"voters\":[42],\"learners\":[]}"), 0);
    char *da = meta_dump (a, NULL);
    char *db = meta_dump (b, NULL);
    ck_assert_str_eq (da, db);
    free (dump);
    free (again);
    free (da);
    free (db);
    meta_destroy (&a);
    meta_destroy (&b);
}
END_TEST

//  --- shard transfers --------------------------------------------------------

//  Three peers 7, 42, 1000 and collection "c" with 3 shards, one replica
//  each: shard 0 on 7, shard 1 on 42, shard 2 on 1000.
static void
s_three_peers_and_c (void)
{
    meta_set_peer (s_meta, 7, "http://b:6335");
    meta_set_peer (s_meta, 1000, "http://c:6335");
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"c\",\"config\":"
                               "{\"params\":{\"shard_number\":3}}}"), 0);
}

static json_t *
s_replicas_of (const char *name, size_t shard)
{
    return json_object_get (json_array_get (json_object_get (s_collection (name), "shards"),
                                            shard), "replicas");
}

static const char *
s_replica_state (const char *name, size_t shard, const char *peer)
{
    return json_string_value (json_object_get (s_replicas_of (name, shard), peer));
}

static json_t *
s_transfers_of (const char *name)
{
    return json_object_get (s_collection (name), "transfers");
}

//  s_apply, and checks that a refused op left the collections unchanged.
static int
s_apply_unchanged_on_error (const char *text)
{
    json_t *before = json_deep_copy (meta_collections (s_meta));
    int rc = s_apply (text);
    if (rc)
        ck_assert (json_equal (before, (json_t *) meta_collections (s_meta)));
    json_decref (before);
    return rc;
}

START_TEST (test_create_lists_no_transfers)
{
    s_three_peers_and_c ();
    ck_assert (json_is_array (s_transfers_of ("c")));
    ck_assert_int_eq (json_array_size (s_transfers_of ("c")), 0);
}
END_TEST

START_TEST (test_start_transfer_adds_a_partial_replica_and_an_entry)
{
    s_three_peers_and_c ();
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"start_transfer\",\"collection\":\"c\","
                                  "\"shard_id\":1,\"from\":42,\"to\":7,"
                                  "\"method\":\"stream_records\"}", &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_str_eq (s_replica_state ("c", 1, "42"), "Active");
    ck_assert_str_eq (s_replica_state ("c", 1, "7"), "Partial");
    json_t *transfers = s_transfers_of ("c");
    ck_assert_int_eq (json_array_size (transfers), 1);
    json_t *expect = json_pack ("{sisisisssb}", "shard_id", 1, "from", 42, "to", 7,
                                "method", "stream_records", "sync", 0);
    ck_assert (json_equal (json_array_get (transfers, 0), expect));
    json_decref (expect);
    //  The peer holding only the copy holds shards now (removal is refused).
    ck_assert (meta_peer_has_shards (s_meta, 7));
    //  Without a method, stream_records is meant.
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":2,\"from\":1000,\"to\":42}"), 0);
    ck_assert_int_eq (json_array_size (s_transfers_of ("c")), 2);
    ck_assert_str_eq (json_string_value (json_object_get (
                          json_array_get (s_transfers_of ("c"), 1), "method")),
                      "stream_records");
}
END_TEST

START_TEST (test_start_transfer_errors_change_nothing)
{
    s_three_peers_and_c ();
    //  To itself: 422 with Qdrant's words.
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":42}"), -SH_EUNPROC);
    ck_assert_ptr_nonnull (strstr (s_err, "cannot transfer shard to itself"));
    //  Other methods are not there yet.
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":7,\"method\":\"snapshot\"}"), -SH_EINVAL);
    ck_assert_ptr_nonnull (strstr (s_err, "method `snapshot` is not supported yet"));
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":7,\"method\":5}"), -SH_EINVAL);
    //  No such collection, shard or peer.
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"nope\",\"shard_id\":1,"
                          "\"from\":42,\"to\":7}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Collection `nope` doesn't exist!");
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":3,"
                          "\"from\":42,\"to\":7}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Shard 3 of c does not exist");
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":5}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Peer 5 does not exist");
    //  The source holds no Active replica; the target already holds one.
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":7,\"to\":1000}"), -SH_EINVAL);
    ck_assert_str_eq (s_err, "Bad request: Shard 1 is not active on peer 7");
    //  Malformed fields.
    const char *bad [] = {
        "{\"type\":\"start_transfer\",\"shard_id\":1,\"from\":42,\"to\":7}",
        "{\"type\":\"start_transfer\",\"collection\":\"c\",\"from\":42,\"to\":7}",
        "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":-1,\"from\":42,\"to\":7}",
        "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,\"from\":0,\"to\":7}",
        "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,\"from\":42,\"to\":\"7\"}",
        "{\"type\":\"finish_transfer\",\"collection\":\"c\",\"shard_id\":\"1\",\"from\":42,\"to\":7}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        ck_assert_int_eq (s_apply_unchanged_on_error (bad [i]), -SH_EINVAL);
    //  One transfer per shard at a time, and never onto a replica.
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":7}"), 0);
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":1000}"), -SH_EINVAL);
    ck_assert_str_eq (s_err, "Bad request: Shard 1 is already involved in transfer 42 -> 7");
    //  Two replicas (on 7 and 42, sorted peers 7, 42, 1000): 42 holds one.
    ck_assert_int_eq (s_apply ("{\"type\":\"create_collection\",\"name\":\"r\",\"config\":"
                               "{\"params\":{\"shard_number\":1,\"replication_factor\":2}}}"),
                      0);
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"start_transfer\",\"collection\":\"r\",\"shard_id\":0,"
                          "\"from\":7,\"to\":42}"), -SH_EINVAL);
    ck_assert_str_eq (s_err, "Bad request: Shard 0 already has a replica on peer 42");
}
END_TEST

START_TEST (test_finish_transfer_switches_the_placement)
{
    s_three_peers_and_c ();
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":7}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":2,\"from\":1000,\"to\":7}"), 0);
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"finish_transfer\",\"collection\":\"c\","
                                  "\"shard_id\":1,\"from\":42,\"to\":7}", &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_int_eq (json_object_size (s_replicas_of ("c", 1)), 1);
    ck_assert_str_eq (s_replica_state ("c", 1, "7"), "Active");
    //  Only the finished entry went.
    ck_assert_int_eq (json_array_size (s_transfers_of ("c")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (
                          json_array_get (s_transfers_of ("c"), 0), "shard_id")), 2);
    ck_assert (!meta_peer_has_shards (s_meta, 42));
    //  Finishing it again, or one that never was: not found, nothing changes.
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"finish_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":7}"), -SH_ENOTFOUND);
    ck_assert_str_eq (s_err, "Not found: Shard transfer 42 -> 7 for collection c:1 does not "
                             "exist");
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"finish_transfer\",\"collection\":\"c\",\"shard_id\":2,"
                          "\"from\":7,\"to\":1000}"), -SH_ENOTFOUND);
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"finish_transfer\",\"collection\":\"x\",\"shard_id\":2,"
                          "\"from\":1000,\"to\":7}"), -SH_ENOTFOUND);
    //  The shard can move on (and back) once the transfer is over.
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":7,\"to\":42}"), 0);
}
END_TEST

START_TEST (test_abort_transfer_drops_the_copy_and_keeps_the_source)
{
    s_three_peers_and_c ();
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":7}"), 0);
    json_t *result = NULL;
    ck_assert_int_eq (s_apply_on (s_meta, "{\"type\":\"abort_transfer\",\"collection\":\"c\","
                                  "\"shard_id\":1,\"from\":42,\"to\":7}", &result), 0);
    ck_assert (json_is_true (result));
    json_decref (result);
    ck_assert_int_eq (json_object_size (s_replicas_of ("c", 1)), 1);
    ck_assert_str_eq (s_replica_state ("c", 1, "42"), "Active");
    ck_assert_int_eq (json_array_size (s_transfers_of ("c")), 0);
    ck_assert_int_eq (s_apply_unchanged_on_error (
                          "{\"type\":\"abort_transfer\",\"collection\":\"c\",\"shard_id\":1,"
                          "\"from\":42,\"to\":7}"), -SH_ENOTFOUND);
    //  A transfer can start again after an abort.
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":7}"), 0);
    ck_assert_str_eq (s_replica_state ("c", 1, "7"), "Partial");
}
END_TEST

START_TEST (test_removed_peer_takes_its_transfers_along)
{
    s_three_peers_and_c ();
    //  1: 42 -> 7 (the target leaves), 2: 1000 -> 42 (the source leaves),
    //  0: 7 -> 1000 (untouched).
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":1000}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":2,\"from\":1000,\"to\":7}"), 0);
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":0,\"from\":7,\"to\":42}"), 0);
    ck_assert_int_eq (s_conf (s_meta, "{\"change\":\"remove\",\"peer_id\":1000,"
                                      "\"voters\":[7,42],\"learners\":[]}"), 0);
    json_t *transfers = s_transfers_of ("c");
    ck_assert_int_eq (json_array_size (transfers), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (json_array_get (transfers, 0),
                                                           "shard_id")), 0);
    //  Shard 1 keeps its source; shard 2's unfinished copy on 7 is gone with
    //  its source.
    ck_assert_int_eq (json_object_size (s_replicas_of ("c", 1)), 1);
    ck_assert_str_eq (s_replica_state ("c", 1, "42"), "Active");
    ck_assert_int_eq (json_object_size (s_replicas_of ("c", 2)), 0);
    ck_assert_str_eq (s_replica_state ("c", 0, "42"), "Partial");
}
END_TEST

START_TEST (test_transfers_survive_dump_and_load)
{
    s_three_peers_and_c ();
    ck_assert_int_eq (s_apply ("{\"type\":\"start_transfer\",\"collection\":\"c\","
                               "\"shard_id\":1,\"from\":42,\"to\":7}"), 0);
    size_t len;
    char *dump = meta_dump (s_meta, &len);
    meta_t *copy = meta_new ();
    ck_assert_int_eq (meta_load (copy, dump, len), 0);
    ck_assert (json_equal (json_object_get (json_object_get ((json_t *) meta_collections (copy),
                                                             "c"), "transfers"),
                           s_transfers_of ("c")));
    //  The loaded machine finishes it as the original would.
    ck_assert_int_eq (s_apply_on (copy, "{\"type\":\"finish_transfer\",\"collection\":\"c\","
                                  "\"shard_id\":1,\"from\":42,\"to\":7}", NULL), 0);
    ck_assert_str_eq (json_string_value (json_object_get (json_object_get (json_array_get (
                          json_object_get (json_object_get ((json_t *) meta_collections (copy),
                                                            "c"), "shards"), 1), "replicas"),
                          "7")), "Active");
    free (dump);
    meta_destroy (&copy);
}
END_TEST

Suite *
meta_suite (void)
{
    Suite *s = suite_create ("meta");
    TCase *tc = tcase_create ("ops");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_create_places_shards_and_sets_uid);
    tcase_add_test (tc, test_create_places_round_robin_over_sorted_peers);
    tcase_add_test (tc, test_create_existing_collection_is_refused_with_qdrant_wording);
    tcase_add_test (tc, test_create_named_like_an_alias_is_refused);
    tcase_add_test (tc, test_create_with_bad_shape_is_refused_and_still_consumes_the_entry);
    tcase_add_test (tc, test_unknown_or_malformed_ops_are_refused);
    tcase_add_test (tc, test_update_deep_merges_config);
    tcase_add_test (tc, test_update_errors);
    tcase_add_test (tc, test_delete_collection_and_its_aliases);
    tcase_add_test (tc, test_aliases_create_rename_delete);
    tcase_add_test (tc, test_alias_errors_change_nothing);
    tcase_add_test (tc, test_state_layout_and_soft_fields);
    tcase_add_test (tc, test_same_ops_give_same_state_and_dump_round_trips);
    tcase_add_test (tc, test_an_op_id_seen_before_ends_as_it_did);
    tcase_add_test (tc, test_op_ids_are_bounded_and_carried_by_the_snapshot);
    tcase_add_test (tc, test_create_without_peers_is_refused);
    tcase_add_test (tc, test_field_indexes_are_set_replaced_and_dropped);
    suite_add_tcase (s, tc);
    TCase *peers = tcase_create ("peers");
    tcase_add_checked_fixture (peers, s_setup, s_teardown);
    tcase_add_test (peers, test_conf_entries_add_and_remove_peer_uris);
    tcase_add_test (peers, test_malformed_conf_entries_are_refused_and_consume_the_index);
    tcase_add_test (peers, test_set_peer_records_and_replaces_a_uri);
    tcase_add_test (peers, test_peer_has_shards_and_removal_drops_its_replicas);
    tcase_add_test (peers, test_reset_peers_keeps_only_this_peer);
    tcase_add_test (peers, test_dump_and_load_carry_the_replicated_peers);
    suite_add_tcase (s, peers);
    TCase *transfers = tcase_create ("transfers");
    tcase_add_checked_fixture (transfers, s_setup, s_teardown);
    tcase_add_test (transfers, test_create_lists_no_transfers);
    tcase_add_test (transfers, test_start_transfer_adds_a_partial_replica_and_an_entry);
    tcase_add_test (transfers, test_start_transfer_errors_change_nothing);
    tcase_add_test (transfers, test_finish_transfer_switches_the_placement);
    tcase_add_test (transfers, test_abort_transfer_drops_the_copy_and_keeps_the_source);
    tcase_add_test (transfers, test_removed_peer_takes_its_transfers_along);
    tcase_add_test (transfers, test_transfers_survive_dump_and_load);
    suite_add_tcase (s, transfers);
    return s;
}

SH_CHECK_MAIN (meta_suite)
