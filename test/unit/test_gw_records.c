/*  test_gw_records: shard records (proto/msg.h) into Qdrant's Record and
    ScoredPoint JSON, with vectors resolved from the reply envelope's blobs.
*/
#include "actors/gateway/gw.h"
#include "proto/vecref.h"
#include "test/unit/check_main.h"
#include <math.h>
#include <string.h>

//  A collection object as the metadata state holds it, with `vectors` as
//  its params.vectors config (a JSON text).
static json_t *
s_collection (const char *vectors)
{
    json_error_t error;
    json_t *v = json_loads (vectors, 0, &error);
    ck_assert_ptr_nonnull (v);
    return json_pack ("{sIs{s{so}}s[]}", "uid", (json_int_t) 7, "config", "params", "vectors",
                      v, "shards");
}

//  A reply envelope whose blob 0 holds `floats`, and a vecref into it.
static envelope_t *
s_reply_with (const float *floats, uint32_t n, json_t **ref)
{
    envelope_t *reply = envelope_new (MSG_SHARD_RETRIEVE, 1, 0);
    int blob = envelope_new_blob (reply);
    ck_assert_int_eq (blob, 0);
    *ref = vecref_put (reply, blob, floats, n);
    return reply;
}

static bool
s_array_is (const json_t *array, const double *expected, size_t n)
{
    if (!json_is_array (array) || json_array_size (array) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_real_value (json_array_get (array, i)) != expected [i])
            return false;
    return true;
}

START_TEST (test_unnamed_vector_comes_out_as_an_array)
{
    json_t *collection = s_collection ("{\"size\": 3, \"distance\": \"Dot\"}");
    const float v [3] = { 0.1f, 0.5f, 1.0f };
    json_t *ref;
    envelope_t *reply = s_reply_with (v, 3, &ref);
    json_t *record = json_pack ("{sIsIs{so}}", "id", (json_int_t) 42, "version",
                                (json_int_t) 5, "vectors", "", ref);
    json_t *out = gw_record_to_json (collection, reply, record);
    ck_assert_ptr_nonnull (out);
    ck_assert_int_eq (json_integer_value (json_object_get (out, "id")), 42);
    //  Shortest float decimals: 0.1f is 0.1, not 0.10000000149011612.
    const double expected [3] = { 0.1, 0.5, 1.0 };
    ck_assert (s_array_is (json_object_get (out, "vector"), expected, 3));
    //  A Record has no version, score or payload unless asked.
    ck_assert_ptr_null (json_object_get (out, "version"));
    ck_assert_ptr_null (json_object_get (out, "score"));
    ck_assert_ptr_null (json_object_get (out, "payload"));
    json_decref (out);
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_scored_point_has_version_and_shortest_score)
{
    json_t *collection = s_collection ("{\"size\": 2, \"distance\": \"Cosine\"}");
    envelope_t *reply = envelope_new (MSG_SHARD_SEARCH, 1, 0);
    json_t *record = json_pack ("{sssIsfs{ss}}", "id", "550e8400-e29b-41d4-a716-446655440000",
                                "version", (json_int_t) 3, "score", (double) 0.9f, "payload",
                                "city", "Berlin");
    json_t *out = gw_record_to_json (collection, reply, record);
    ck_assert_ptr_nonnull (out);
    ck_assert_str_eq (json_string_value (json_object_get (out, "id")),
                      "550e8400-e29b-41d4-a716-446655440000");
    ck_assert_int_eq (json_integer_value (json_object_get (out, "version")), 3);
    ck_assert (json_real_value (json_object_get (out, "score")) == 0.9);
    ck_assert_str_eq (json_string_value (json_object_get (json_object_get (out, "payload"),
                                                          "city")), "Berlin");
    ck_assert_ptr_null (json_object_get (out, "vector"));
    //  Qdrant's order: id, version, score, payload.
    void *it = json_object_iter (out);
    ck_assert_str_eq (json_object_iter_key (it), "id");
    it = json_object_iter_next (out, it);
    ck_assert_str_eq (json_object_iter_key (it), "version");
    it = json_object_iter_next (out, it);
    ck_assert_str_eq (json_object_iter_key (it), "score");
    json_decref (out);
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_named_and_sparse_vectors_come_out_as_a_map)
{
    json_t *collection = s_collection ("{\"image\": {\"size\": 2, \"distance\": \"Dot\"}}");
    const float v [2] = { 2.0f, -0.25f };
    json_t *ref;
    envelope_t *reply = s_reply_with (v, 2, &ref);
    json_t *record = json_pack ("{sIs{sos{s[ii]s[ff]}}}", "id", (json_int_t) 1, "vectors",
                                "image", ref, "text", "indices", 3, 9, "values", 0.5,
                                (double) 0.3f);
    json_t *out = gw_record_to_json (collection, reply, record);
    ck_assert_ptr_nonnull (out);
    json_t *vector = json_object_get (out, "vector");
    ck_assert (json_is_object (vector));
    const double image [2] = { 2.0, -0.25 };
    ck_assert (s_array_is (json_object_get (vector, "image"), image, 2));
    json_t *text = json_object_get (vector, "text");
    ck_assert_int_eq (json_integer_value (json_array_get (json_object_get (text, "indices"), 1)),
                      9);
    const double values [2] = { 0.5, 0.3 };
    ck_assert (s_array_is (json_object_get (text, "values"), values, 2));
    json_decref (out);
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_unnamed_vector_beside_a_sparse_one_comes_out_as_a_map)
{
    json_t *collection = s_collection ("{\"size\": 1, \"distance\": \"Dot\"}");
    const float v [1] = { 4.0f };
    json_t *ref;
    envelope_t *reply = s_reply_with (v, 1, &ref);
    json_t *record = json_pack ("{sIs{sos{s[]s[]}}}", "id", (json_int_t) 1, "vectors", "", ref,
                                "bm25", "indices", "values");
    json_t *out = gw_record_to_json (collection, reply, record);
    ck_assert_ptr_nonnull (out);
    json_t *vector = json_object_get (out, "vector");
    ck_assert (json_is_object (vector));
    const double expected [1] = { 4.0 };
    ck_assert (s_array_is (json_object_get (vector, ""), expected, 1));
    ck_assert (json_is_array (json_object_get (json_object_get (vector, "bm25"), "indices")));
    json_decref (out);
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_null_payload_and_empty_vectors)
{
    json_t *collection = s_collection ("{\"a\": {\"size\": 2, \"distance\": \"Dot\"}}");
    envelope_t *reply = envelope_new (MSG_SHARD_SCROLL, 1, 0);
    json_t *record = json_pack ("{sIsnsIs{}}", "id", (json_int_t) 5, "payload", "version",
                                (json_int_t) 1, "vectors");
    json_t *out = gw_record_to_json (collection, reply, record);
    ck_assert_ptr_nonnull (out);
    //  A null payload is left out; vectors asked for but absent are {}.
    ck_assert_ptr_null (json_object_get (out, "payload"));
    ck_assert (json_is_object (json_object_get (out, "vector")));
    ck_assert_int_eq (json_object_size (json_object_get (out, "vector")), 0);
    json_decref (out);
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_vecref_outside_the_blob_is_rejected)
{
    json_t *collection = s_collection ("{\"size\": 4, \"distance\": \"Dot\"}");
    const float v [2] = { 1.0f, 2.0f };
    json_t *ref;
    envelope_t *reply = s_reply_with (v, 2, &ref);
    //  Claims 4 floats where the blob holds 2.
    json_object_set_new (ref, "d", json_integer (4));
    json_t *record = json_pack ("{sIs{so}}", "id", (json_int_t) 1, "vectors", "", ref);
    ck_assert_ptr_null (gw_record_to_json (collection, reply, record));
    json_decref (record);

    //  A blob index that does not exist.
    record = json_pack ("{sIs{s{sisisi}}}", "id", (json_int_t) 1, "vectors", "", "b", 3, "o",
                        0, "d", 1);
    ck_assert_ptr_null (gw_record_to_json (collection, reply, record));
    json_decref (record);
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_malformed_records_are_rejected)
{
    json_t *collection = s_collection ("{\"size\": 1, \"distance\": \"Dot\"}");
    envelope_t *reply = envelope_new (MSG_SHARD_SEARCH, 1, 0);
    const char *bad [] = {
        "{\"version\": 1}",                                 //  no id
        "{\"id\": [1]}",                                    //  id not an id
        "{\"id\": 1, \"score\": \"high\"}",                 //  score not a number
        "{\"id\": 1, \"vectors\": [1, 2]}",                 //  vectors not a map
        "{\"id\": 1, \"vectors\": {\"s\": {\"indices\": [1, 2], \"values\": [0.5]}}}",
        "{\"id\": 1, \"vectors\": {\"s\": {\"indices\": [\"x\"], \"values\": [0.5]}}}",
        "{\"id\": 1, \"vectors\": {\"s\": 3}}",             //  neither dense nor sparse
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad [0]); i++) {
        json_t *record = json_loads (bad [i], 0, NULL);
        ck_assert_ptr_nonnull (record);
        ck_assert_msg (gw_record_to_json (collection, reply, record) == NULL, "accepted %s",
                       bad [i]);
        json_decref (record);
    }
    envelope_destroy (&reply);
    json_decref (collection);
}
END_TEST

START_TEST (test_json_float_is_the_shortest_decimal)
{
    json_t *j = gw_json_float (0.1f);
    ck_assert (json_real_value (j) == 0.1);
    json_decref (j);
    j = gw_json_float (1.0f / 3.0f);
    //  Reads back as the same float.
    ck_assert ((float) json_real_value (j) == 1.0f / 3.0f);
    json_decref (j);
    j = gw_json_float (-2.5e-7f);
    ck_assert (json_real_value (j) == -2.5e-7);
    json_decref (j);
    j = gw_json_float (NAN);
    ck_assert (json_is_null (j));
    json_decref (j);
    j = gw_json_float (INFINITY);
    ck_assert (json_is_null (j));
    json_decref (j);
}
END_TEST

Suite *
gw_records_suite (void)
{
    Suite *s = suite_create ("gw_records");
    TCase *tc = tcase_create ("records");
    tcase_add_test (tc, test_unnamed_vector_comes_out_as_an_array);
    tcase_add_test (tc, test_scored_point_has_version_and_shortest_score);
    tcase_add_test (tc, test_named_and_sparse_vectors_come_out_as_a_map);
    tcase_add_test (tc, test_unnamed_vector_beside_a_sparse_one_comes_out_as_a_map);
    tcase_add_test (tc, test_null_payload_and_empty_vectors);
    tcase_add_test (tc, test_vecref_outside_the_blob_is_rejected);
    tcase_add_test (tc, test_malformed_records_are_rejected);
    suite_add_tcase (s, tc);
    TCase *tf = tcase_create ("floats");
    tcase_add_test (tf, test_json_float_is_the_shortest_decimal);
    suite_add_tcase (s, tf);
    return s;
}

SH_CHECK_MAIN (gw_records_suite)
