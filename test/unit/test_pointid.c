/*  test_pointid: parsing, formatting, order, hashing and binary keys of
    point ids, including every UUID spelling Qdrant accepts and the inputs
    it rejects.
*/
#include "common/err.h"
#include "common/pointid.h"
#include "test/unit/check_main.h"
#include <string.h>

static pointid_t
s_num (uint64_t v)
{
    pointid_t id = { .is_uuid = false, .num = v };
    return id;
}

static pointid_t
s_uuid (const char *text)
{
    pointid_t id;
    ck_assert_int_eq (pointid_parse (text, &id), 0);
    ck_assert (id.is_uuid);
    return id;
}

static int
s_from_json_text (const char *text, pointid_t *id)
{
    json_t *json = json_loads (text, JSON_DECODE_ANY, NULL);
    ck_assert_ptr_nonnull (json);
    int rc = pointid_from_json (json, id);
    json_decref (json);
    return rc;
}

START_TEST (test_json_integer_is_read)
{
    pointid_t id;
    ck_assert_int_eq (s_from_json_text ("42", &id), 0);
    ck_assert (!id.is_uuid);
    ck_assert_uint_eq (id.num, 42);
    ck_assert_int_eq (s_from_json_text ("0", &id), 0);
    ck_assert_uint_eq (id.num, 0);
    ck_assert_int_eq (s_from_json_text ("9223372036854775807", &id), 0);
    ck_assert_uint_eq (id.num, (uint64_t) INT64_MAX);
}
END_TEST

START_TEST (test_json_rejects_negative_float_and_other_types)
{
    pointid_t id;
    const char *bad [] = { "-1", "1.5", "1.0", "true", "null", "[1]", "{}",
                           "\"123\"", "\"\"", "\"not-a-uuid\"" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        ck_assert_msg (s_from_json_text (bad [i], &id) == -SH_EINVAL, "%s accepted", bad [i]);
    ck_assert_int_eq (pointid_from_json (NULL, &id), -SH_EINVAL);
    //  u64 ids above INT64_MAX never reach us: jansson refuses the number.
    ck_assert_ptr_null (json_loads ("18446744073709551615", JSON_DECODE_ANY, NULL));
}
END_TEST

START_TEST (test_every_uuid_spelling_gives_the_same_id)
{
    const char *forms [] = {
        "550e8400-e29b-41d4-a716-446655440000",
        "550E8400-E29B-41D4-A716-446655440000",
        "550e8400e29b41d4a716446655440000",
        "{550e8400-e29b-41d4-a716-446655440000}",
        "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
        "URN:UUID:550E8400-e29b-41d4-a716-446655440000",
    };
    pointid_t first = s_uuid (forms [0]);
    for (size_t i = 0; i < sizeof forms / sizeof forms [0]; i++) {
        pointid_t id = s_uuid (forms [i]);
        ck_assert_msg (pointid_eq (&id, &first), "%s differs", forms [i]);
        char quoted [80];
        snprintf (quoted, sizeof quoted, "\"%s\"", forms [i]);
        ck_assert_int_eq (s_from_json_text (quoted, &id), 0);
        ck_assert (pointid_eq (&id, &first));
    }
    ck_assert_uint_eq (first.uuid [0], 0x55);
    ck_assert_uint_eq (first.uuid [15], 0x00);
    ck_assert_uint_eq (first.uuid [6], 0x41);
}
END_TEST

START_TEST (test_malformed_uuids_are_rejected)
{
    const char *bad [] = {
        "550e8400-e29b-41d4-a716-44665544000",         //  one short
        "550e8400-e29b-41d4-a716-4466554400000",       //  one long
        "550e8400xe29b-41d4-a716-446655440000",        //  hyphen misplaced
        "550e840-0e29b-41d4-a716-446655440000",
        "550e8400-e29b-41d4-a716-44665544000g",        //  not hex
        "{550e8400-e29b-41d4-a716-446655440000",       //  unbalanced brace
        "550e8400-e29b-41d4-a716-446655440000}",
        "{550e8400e29b41d4a716446655440000}",          //  braced must be hyphenated
        "urn:uuid:550e8400e29b41d4a716446655440000",
        "urn:uid:550e8400-e29b-41d4-a716-446655440000",
        " 550e8400-e29b-41d4-a716-446655440000",
        "",
        "-1",
        "12a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        pointid_t id;
        ck_assert_msg (pointid_parse (bad [i], &id) == -SH_EINVAL, "%s accepted", bad [i]);
    }
    pointid_t id;
    ck_assert_int_eq (pointid_parse (NULL, &id), -SH_EINVAL);
}
END_TEST

START_TEST (test_url_text_accepts_digits_up_to_int64_max)
{
    pointid_t id;
    ck_assert_int_eq (pointid_parse ("123", &id), 0);
    ck_assert (!id.is_uuid);
    ck_assert_uint_eq (id.num, 123);
    ck_assert_int_eq (pointid_parse ("0", &id), 0);
    ck_assert_uint_eq (id.num, 0);
    ck_assert_int_eq (pointid_parse ("9223372036854775807", &id), 0);
    ck_assert_uint_eq (id.num, (uint64_t) INT64_MAX);
    //  Beyond what a JSON integer can carry between actors.
    ck_assert_int_eq (pointid_parse ("9223372036854775808", &id), -SH_EINVAL);
    ck_assert_int_eq (pointid_parse ("18446744073709551616", &id), -SH_EINVAL);
    ck_assert_int_eq (pointid_parse ("99999999999999999999999", &id), -SH_EINVAL);
}
END_TEST

START_TEST (test_format_and_json_round_trip)
{
    char buf [POINTID_TEXT_SIZE];
    pointid_t n = s_num (9223372036854775807ULL);
    pointid_format (&n, buf);
    ck_assert_str_eq (buf, "9223372036854775807");
    pointid_t u = s_uuid ("{550E8400-E29B-41D4-A716-446655440000}");
    pointid_format (&u, buf);
    ck_assert_str_eq (buf, "550e8400-e29b-41d4-a716-446655440000");
    ck_assert_uint_eq (strlen (buf) + 1, POINTID_TEXT_SIZE);

    pointid_t ids [] = { s_num (0), s_num (7), n, u };
    for (size_t i = 0; i < 4; i++) {
        json_t *json = pointid_to_json (&ids [i]);
        ck_assert_ptr_nonnull (json);
        ck_assert (ids [i].is_uuid ? json_is_string (json) : json_is_integer (json));
        pointid_t back;
        ck_assert_int_eq (pointid_from_json (json, &back), 0);
        ck_assert (pointid_eq (&back, &ids [i]));
        json_decref (json);
        pointid_format (&ids [i], buf);
        ck_assert_int_eq (pointid_parse (buf, &back), 0);
        ck_assert (pointid_eq (&back, &ids [i]));
    }
}
END_TEST

START_TEST (test_integers_order_before_uuids_and_keys_sort_the_same)
{
    pointid_t ids [] = {
        s_num (0), s_num (1), s_num (255), s_num (256), s_num (1ULL << 40),
        s_num ((uint64_t) INT64_MAX),
        s_uuid ("00000000-0000-0000-0000-000000000000"),
        s_uuid ("00000000-0000-0000-0000-000000000001"),
        s_uuid ("7fffffff-ffff-ffff-ffff-ffffffffffff"),
        s_uuid ("80000000-0000-0000-0000-000000000000"),
        s_uuid ("ffffffff-ffff-ffff-ffff-ffffffffffff"),
    };
    size_t n = sizeof ids / sizeof ids [0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int expect = i < j ? -1 : i > j ? 1 : 0;
            ck_assert_int_eq (pointid_cmp (&ids [i], &ids [j]), expect);
            uint8_t ki [POINTID_KEY_SIZE], kj [POINTID_KEY_SIZE];
            ck_assert_uint_eq (pointid_key (&ids [i], ki), POINTID_KEY_SIZE);
            pointid_key (&ids [j], kj);
            int rc = memcmp (ki, kj, POINTID_KEY_SIZE);
            ck_assert_int_eq (rc < 0 ? -1 : rc > 0 ? 1 : 0, expect);
            ck_assert (pointid_eq (&ids [i], &ids [j]) == (i == j));
        }
}
END_TEST

START_TEST (test_key_round_trip_and_bad_keys)
{
    pointid_t ids [] = { s_num (0), s_num (123456789),
                         s_uuid ("550e8400-e29b-41d4-a716-446655440000") };
    for (size_t i = 0; i < 3; i++) {
        uint8_t key [POINTID_KEY_SIZE];
        pointid_key (&ids [i], key);
        pointid_t back;
        ck_assert_int_eq (pointid_from_key (key, sizeof key, &back), 0);
        ck_assert (pointid_eq (&back, &ids [i]));
    }
    uint8_t key [POINTID_KEY_SIZE];
    pointid_t out;
    pointid_key (&ids [1], key);
    ck_assert_int_eq (pointid_from_key (key, 16, &out), -SH_EINVAL);
    ck_assert_int_eq (pointid_from_key (key, 18, &out), -SH_EINVAL);
    key [0] = 2;
    ck_assert_int_eq (pointid_from_key (key, sizeof key, &out), -SH_EINVAL);
    key [0] = 0;
    key [3] = 1;            //  an integer key's high half must be zero
    ck_assert_int_eq (pointid_from_key (key, sizeof key, &out), -SH_EINVAL);
    memset (key, 0, sizeof key);
    key [9] = 0x80;         //  above INT64_MAX
    ck_assert_int_eq (pointid_from_key (key, sizeof key, &out), -SH_EINVAL);
}
END_TEST

START_TEST (test_hash_spreads_sequential_ids)
{
    //  Sequential integers must not land in sequential buckets: the low 10
    //  bits of 64k hashes should fill 1024 buckets about evenly.
    enum { N = 65536, BUCKETS = 1024 };
    static int counts [BUCKETS];
    memset (counts, 0, sizeof counts);
    for (uint64_t i = 0; i < N; i++) {
        pointid_t id = s_num (i);
        counts [pointid_hash (&id) % BUCKETS]++;
    }
    for (int b = 0; b < BUCKETS; b++)
        ck_assert_msg (counts [b] > 20 && counts [b] < 110, "bucket %d has %d", b, counts [b]);

    pointid_t a = s_num (5), b = s_num (5);
    ck_assert_uint_eq (pointid_hash (&a), pointid_hash (&b));
    pointid_t u1 = s_uuid ("00000000-0000-0000-0000-000000000001");
    pointid_t u2 = s_uuid ("00000000-0000-0001-0000-000000000000");
    pointid_t one = s_num (1);
    ck_assert_uint_ne (pointid_hash (&u1), pointid_hash (&u2));
    ck_assert_uint_ne (pointid_hash (&u1), pointid_hash (&one));
}
END_TEST

Suite *
pointid_suite (void)
{
    Suite *s = suite_create ("pointid");
    TCase *tc = tcase_create ("parse");
    tcase_add_test (tc, test_json_integer_is_read);
    tcase_add_test (tc, test_json_rejects_negative_float_and_other_types);
    tcase_add_test (tc, test_every_uuid_spelling_gives_the_same_id);
    tcase_add_test (tc, test_malformed_uuids_are_rejected);
    tcase_add_test (tc, test_url_text_accepts_digits_up_to_int64_max);
    suite_add_tcase (s, tc);
    tc = tcase_create ("format");
    tcase_add_test (tc, test_format_and_json_round_trip);
    suite_add_tcase (s, tc);
    tc = tcase_create ("order");
    tcase_add_test (tc, test_integers_order_before_uuids_and_keys_sort_the_same);
    tcase_add_test (tc, test_key_round_trip_and_bad_keys);
    tcase_add_test (tc, test_hash_spreads_sequential_ids);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (pointid_suite)
