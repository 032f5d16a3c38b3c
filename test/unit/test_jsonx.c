/*  test_jsonx: the fast body parser must build exactly the tree jansson
    builds (same types, same doubles to the bit) and refuse what it refuses.
*/
#include "common/jsonx.h"
#include "test/unit/check_main.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static json_t *
s_load (const char *text)
{
    char err [256];
    return jsonx_loadb (text, strlen (text), 0, err, sizeof err);
}

static void
s_assert_same_as_jansson (const char *text)
{
    json_error_t error;
    json_t *want = json_loadb (text, strlen (text), JSON_DECODE_ANY, &error);
    ck_assert_msg (want, "jansson refused %s: %s", text, error.text);
    json_t *got = s_load (text);
    ck_assert_msg (got, "jsonx refused %s", text);
    ck_assert_msg (json_equal (want, got), "trees differ for %s", text);
    json_decref (want);
    json_decref (got);
}

START_TEST (test_documents_parse_to_the_same_tree_as_jansson)
{
    s_assert_same_as_jansson ("{\"a\": [1, 2.5, -3e-2, true, false, null, \"x\\u00e9\\n\"],"
                              " \"b\": {\"c\": {}}, \"d\": []}");
    s_assert_same_as_jansson ("[]");
    s_assert_same_as_jansson ("42");
    s_assert_same_as_jansson ("\"just a string\"");
    s_assert_same_as_jansson ("{\"dup\": 1, \"dup\": 2}");
    s_assert_same_as_jansson ("[-0, 0.0, -0.0, 9223372036854775807, -9223372036854775808]");
    s_assert_same_as_jansson ("{\"\\ud83d\\ude00\": \"\xf0\x9f\x98\x80\"}");
}
END_TEST

START_TEST (test_numbers_are_bit_identical_to_strtod)
{
    //  Random doubles printed in the ways clients print them, plus the
    //  corners of the fast path (2^53, 10^22, long mantissas).
    const char *fixed [] = {
        "0.1", "0.2", "0.3", "1e22", "1e23", "9007199254740992", "9007199254740993.0",
        "123456789012345678901234567890", "0.000001", "1e-300", "2.2250738585072014e-308",
        "4.9e-324", "1.7976931348623157e308", "3.141592653589793238462643383279",
        "0.1000000000000000055511151231257827", "-0.49304536", "1E5", "1e+5", "5e-1"
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed [0]; i++) {
        double want = strtod (fixed [i], NULL);
        double got = jsonx_strtod (fixed [i], strlen (fixed [i]));
        ck_assert_msg (memcmp (&want, &got, sizeof want) == 0, "%s: %.17g != %.17g",
                       fixed [i], got, want);
    }
    uint64_t state = 88172645463325252ULL;
    char text [64];
    const char *formats [] = { "%.17g", "%.6f", "%.9g", "%g", "%.3e", "%.15g" };
    for (int i = 0; i < 200000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double value = ((double) (state >> 11) / (double) (1ULL << 53) - 0.5)
                     * pow (10, (int) (state % 40) - 20);
        snprintf (text, sizeof text, formats [i % 6], value);
        double want = strtod (text, NULL);
        double got = jsonx_strtod (text, strlen (text));
        ck_assert_msg (memcmp (&want, &got, sizeof want) == 0, "%s: %.17g != %.17g", text,
                       got, want);
    }
}
END_TEST

START_TEST (test_bad_input_is_refused_with_a_message)
{
    const char *bad [] = {
        "", "{", "[1,]", "{\"a\" 1}", "[1] 2", "nul", "[\"\xff\"]", "{\"a\":01}",
        "[99999999999999999999]", "[-9223372036854775809]", "[1e999]", "{\"a\\u0000b\": 1}"
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        char err [256] = "";
        json_t *got = jsonx_loadb (bad [i], strlen (bad [i]), 0, err, sizeof err);
        ck_assert_msg (got == NULL, "accepted %s", bad [i]);
        ck_assert_msg (strlen (err) > 0, "no message for %s", bad [i]);
    }
}
END_TEST

START_TEST (test_deep_nesting_is_refused_not_overflowed)
{
    size_t depth = 100000;
    char *text = (char *) malloc (2 * depth + 1);
    memset (text, '[', depth);
    memset (text + depth, ']', depth);
    text [2 * depth] = 0;
    char err [256];
    ck_assert_ptr_null (jsonx_loadb (text, 2 * depth, 0, err, sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "depth"));
    //  Just inside the limit is fine.
    memset (text, '[', JSONX_MAX_DEPTH);
    memset (text + JSONX_MAX_DEPTH, ']', JSONX_MAX_DEPTH);
    json_t *ok = jsonx_loadb (text, 2 * JSONX_MAX_DEPTH, 0, err, sizeof err);
    ck_assert_ptr_nonnull (ok);
    json_decref (ok);
    free (text);
}
END_TEST

START_TEST (test_duplicate_keys_are_refused_when_asked)
{
    const char *text = "{\"a\": {\"b\": 1, \"b\": 2}}";
    char err [256];
    ck_assert_ptr_null (jsonx_loadb (text, strlen (text), JSONX_REJECT_DUPLICATES, err,
                                     sizeof err));
    ck_assert_ptr_nonnull (strstr (err, "duplicate"));
    json_t *last = jsonx_loadb (text, strlen (text), 0, err, sizeof err);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (last, "a"), "b")),
                      2);
    json_decref (last);
}
END_TEST


static const char *s_vector_keys [] = { "vector", "query", NULL };

START_TEST (test_number_arrays_under_a_pack_key_become_floats)
{
    const char *text = "{\"vector\": [1, 2.5, -3e-2, 0.1], \"limit\": 3,"
                       " \"searches\": [{\"vector\": [7]}, {\"vector\": {\"name\": \"a\","
                       " \"vector\": [8, 9]}}], \"other\": [1, 2]}";
    char err [256];
    jsonx_packed_t *packed = NULL;
    json_t *json = jsonx_loadb_packed (text, strlen (text), 0, s_vector_keys, &packed,
                                       err, sizeof err);
    ck_assert_msg (json, "refused: %s", err);
    ck_assert_ptr_nonnull (packed);
    size_t n = 0;
    const float *v = jsonx_packed_find (packed, json_object_get (json, "vector"), &n);
    ck_assert_ptr_nonnull (v);
    ck_assert_uint_eq (n, 4);
    //  As (float) json_number_value () of jansson's values.
    ck_assert (v [0] == 1.0f && v [1] == 2.5f && v [2] == (float) -3e-2 && v [3] == 0.1f);
    json_t *searches = json_object_get (json, "searches");
    v = jsonx_packed_find (packed, json_object_get (json_array_get (searches, 0), "vector"),
                           &n);
    ck_assert (v && n == 1 && v [0] == 7.0f);
    json_t *named = json_object_get (json_array_get (searches, 1), "vector");
    ck_assert (json_is_object (named));
    ck_assert_str_eq (json_string_value (json_object_get (named, "name")), "a");
    v = jsonx_packed_find (packed, json_object_get (named, "vector"), &n);
    ck_assert (v && n == 2 && v [0] == 8.0f && v [1] == 9.0f);
    //  Other keys are ordinary arrays; a look-alike {} is not a placeholder.
    ck_assert_uint_eq (json_array_size (json_object_get (json, "other")), 2);
    ck_assert_ptr_null (jsonx_packed_find (packed, json_object_get (json, "other"), &n));
    json_t *user = json_object ();
    ck_assert_ptr_null (jsonx_packed_find (packed, user, &n));
    ck_assert_ptr_null (jsonx_packed_find (NULL, user, &n));
    json_decref (user);
    json_decref (json);
    jsonx_packed_destroy (&packed);
    ck_assert_ptr_null (packed);
}
END_TEST

START_TEST (test_arrays_that_are_not_all_numbers_are_built_as_usual)
{
    const char *texts [] = {
        "{\"vector\": [1, 2, \"x\", 3]}",
        "{\"vector\": [1, [2, 3], 4]}",
        "{\"vector\": [1, {\"a\": [5]}, true, null, false]}",
        "{\"vector\": []}",
        "{\"vector\": [[1, 2], [3]]}",
        "{\"query\": {\"nearest\": [1]}, \"vector\": 5}",
        "[1, 2, {\"vector\": [\"a\"]}]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        char err [256];
        jsonx_packed_t *packed = NULL;
        json_t *got = jsonx_loadb_packed (texts [i], strlen (texts [i]), 0, s_vector_keys,
                                          &packed, err, sizeof err);
        ck_assert_msg (got, "refused %s: %s", texts [i], err);
        ck_assert_msg (!packed, "packed something of %s", texts [i]);
        json_error_t error;
        json_t *want = json_loadb (texts [i], strlen (texts [i]), 0, &error);
        ck_assert_msg (json_equal (want, got), "trees differ for %s", texts [i]);
        json_decref (want);
        json_decref (got);
    }
}
END_TEST

START_TEST (test_packing_keeps_errors_and_survives_duplicates)
{
    const char *bad [] = {
        "{\"vector\": [1, 2",
        "{\"vector\": [1, 99999999999999999999]}",
        "{\"vector\": [1, 1e999]}",
        "{\"vector\": [1, 2]]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        char err [256] = "";
        jsonx_packed_t *packed = (jsonx_packed_t *) &err;   //  must be reset
        ck_assert_ptr_null (jsonx_loadb_packed (bad [i], strlen (bad [i]), 0, s_vector_keys,
                                                &packed, err, sizeof err));
        ck_assert_ptr_null (packed);
        ck_assert_msg (err [0], "no message for %s", bad [i]);
    }
    //  The last of duplicate keys wins, as in jsonx_loadb; the first
    //  placeholder stays valid (and distinct) while the set lives.
    const char *dup = "{\"vector\": [1, 2], \"vector\": [3]}";
    char err [256];
    jsonx_packed_t *packed = NULL;
    json_t *json = jsonx_loadb_packed (dup, strlen (dup), 0, s_vector_keys, &packed, err,
                                       sizeof err);
    ck_assert_ptr_nonnull (json);
    size_t n = 0;
    const float *v = jsonx_packed_find (packed, json_object_get (json, "vector"), &n);
    ck_assert (v && n == 1 && v [0] == 3.0f);
    json_decref (json);
    jsonx_packed_destroy (&packed);
    //  With JSONX_REJECT_DUPLICATES the duplicate is refused.
    ck_assert_ptr_null (jsonx_loadb_packed (dup, strlen (dup), JSONX_REJECT_DUPLICATES,
                                            s_vector_keys, &packed, err, sizeof err));
    ck_assert_ptr_null (packed);
}
END_TEST

static char *
s_write (const json_t *json)
{
    jsonx_buf_t buf = { 0 };
    jsonx_write (&buf, json);
    ck_assert_uint_eq (strlen (buf.data), buf.len);
    return buf.data;
}

START_TEST (test_write_matches_json_dumps_but_reals_are_short)
{
    //  What json_dumps (compact) writes, when no real is involved.
    const char *texts [] = {
        "{\"a\":[1,-2,9223372036854775807,-9223372036854775808,true,false,null],"
        "\"b\":{\"c\":{},\"d\":[]},\"e\":\"x\\u00e9\\n\\t\\\"\\\\/\"}",
        "[]", "{}", "\"\"", "0",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        json_t *json = json_loads (texts [i], JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull (json);
        char *want = json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY);
        char *got = s_write (json);
        ck_assert_str_eq (got, want);
        free (want);
        free (got);
        json_decref (json);
    }
    //  Control characters as serde_json writes them (lower-case hex; jansson
    //  writes upper case), a NUL escaped, not a terminator.
    json_t *ctl = json_string ("\x01\x1f\b\f\r");
    char *text = s_write (ctl);
    ck_assert_str_eq (text, "\"\\u0001\\u001f\\b\\f\\r\"");
    free (text);
    json_decref (ctl);
    json_t *nul = json_stringn ("a\0b", 3);
    char *got = s_write (nul);
    ck_assert_str_eq (got, "\"a\\u0000b\"");
    free (got);
    json_decref (nul);
    //  For programs (envelopes): short when that is quick, else 17 digits;
    //  always the same double back, and always a real.
    double exact [] = { 0.1, 482.29660034179688, (double) 0.1f, 1e300 * 1e8, 3.0, -2e-310 };
    const char *exact_text [] = { "0.1", "482.29660034179688", "0.10000000149011612",
                                  "1e+308", "3.0", "-1.9999999999999939e-310" };
    for (size_t i = 0; i < sizeof exact / sizeof exact [0]; i++) {
        json_t *real = json_real (exact [i]);
        jsonx_buf_t buf = { 0 };
        jsonx_write_exact (&buf, real);
        ck_assert_str_eq (buf.data, exact_text [i]);
        json_t *back = json_loads (buf.data, JSON_DECODE_ANY, NULL);
        ck_assert (json_is_real (back) && json_real_value (back) == exact [i]);
        json_decref (back);
        free (buf.data);
        json_decref (real);
    }
    //  Reals: shortest round trip, ".0" on integral values, same doubles back.
    double reals [] = { 0.1, 1.0, -2.5, 1e-7, 1.5e16, 482.29660034179688,
                        (double) 0.1f, 5e-324, 1.7976931348623157e308, -0.0 };
    const char *short_ [] = { "0.1", "1.0", "-2.5", "1e-7", "1.5e16", "482.2966003417969",
                              "0.10000000149011612", "5e-324", "1.7976931348623157e308",
                              "-0.0" };
    for (size_t i = 0; i < sizeof reals / sizeof reals [0]; i++) {
        json_t *real = json_real (reals [i]);
        got = s_write (real);
        ck_assert_str_eq (got, short_ [i]);
        json_t *back = json_loads (got, JSON_DECODE_ANY, NULL);
        ck_assert (json_is_real (back) && json_real_value (back) == reals [i]);
        json_decref (back);
        free (got);
        json_decref (real);
    }
}
END_TEST

//  Parses text packed with s_vector_keys: the floats of its top-level
//  "vector", or NULL (*count 0) if it was not packed.
static const float *
s_packed_vector (const char *text, json_t **json, jsonx_packed_t **packed, size_t *count)
{
    char err [256];
    *json = jsonx_loadb_packed (text, strlen (text), 0, s_vector_keys, packed, err,
                                sizeof err);
    ck_assert_msg (*json, "refused %s: %s", text, err);
    *count = 0;
    return jsonx_packed_find (*packed, json_object_get (*json, "vector"), count);
}

START_TEST (test_packed_numbers_are_those_of_the_tree_whatever_their_spelling)
{
    //  Each list of numbers packs to what (float) json_number_value () of
    //  the plain tree gives, spaces, signs, exponents and all.
    const char *texts [] = {
        "{\"vector\":[1,2,3]}",
        "{ \"vector\" :\n\t[ -0 , 0.5e-3,1E+2 ,\r\n-1.25e1, 123456789012345678,"
        " 9223372036854775807, -9223372036854775808, 3.4028235677973366e38,"
        " 0.1, 1e-50 ] , \"limit\": 3}",
        "{\"a\": \"\\\"vector\\\": [9, 9]\", \"vector\": [7, 8], \"b\": [\"vector\"]}",
        "{\"vec\\u0074or\": [4, 5]}",
        "{\"x\": {\"vectors\": [6]}, \"vector\": [1.5]}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts [0]; i++) {
        json_t *json;
        jsonx_packed_t *packed;
        size_t n;
        const float *v = s_packed_vector (texts [i], &json, &packed, &n);
        ck_assert_msg (v, "not packed: %s", texts [i]);
        json_t *plain = json_loads (texts [i], 0, NULL);
        json_t *want = json_object_get (plain, "vector");
        ck_assert_uint_eq (n, json_array_size (want));
        for (size_t k = 0; k < n; k++)
            ck_assert_msg (v [k] == (float) json_number_value (json_array_get (want, k)),
                           "%s [%zu]: %g", texts [i], k, (double) v [k]);
        //  Everything else as the plain tree has it.
        json_object_del (plain, "vector");
        json_object_del (json, "vector");
        ck_assert_msg (json_equal (plain, json), "trees differ for %s", texts [i]);
        json_decref (plain);
        json_decref (json);
        jsonx_packed_destroy (&packed);
    }
}
END_TEST

START_TEST (test_lists_the_scan_declines_get_the_loaders_answers)
{
    //  Refused as jsonx_loadb refuses them, at the same offsets.
    const char *bad [] = {
        "{\"vector\": [1, 99999999999999999999]}",
        "{\"vector\": [01, 2]}",
        "{\"vector\": [1., 2]}",
        "{\"vector\": [1, 2,]}",
        "{\"vector\": [1 2]}",
        "{\"vector\": [-, 2]}",
        "{\"vector\": [1, 1e999]}",
        "{\"vector\": [1, 2]",
        "{\"vector\": [1, 2]]}",
        "{\"vector\": [1, 2], \"x\": \"unterminated}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        char want [256] = "", got [256] = "";
        json_t *plain = jsonx_loadb (bad [i], strlen (bad [i]), 0, want, sizeof want);
        jsonx_packed_t *packed = NULL;
        json_t *json = jsonx_loadb_packed (bad [i], strlen (bad [i]), 0, s_vector_keys,
                                           &packed, got, sizeof got);
        ck_assert_msg (!plain && !json && !packed, "accepted %s", bad [i]);
        ck_assert_str_eq (got, want);
    }
}
END_TEST

//  An upsert's packs: a point's "vector" (depth 3) and a batch's column of
//  vectors (depth 2, nested).
static const jsonx_pack_t s_upsert_packs [] = {
    { "vector", 3, false }, { "vectors", 2, true }, { NULL, 0, false }
};

//  A copy of json in which each placeholder of packed is an array of its
//  numbers (as integers: the tests' numbers are), counted in *found.
static json_t *
s_unpacked (const json_t *json, const jsonx_packed_t *packed, size_t *found)
{
    size_t n = 0;
    const float *f = jsonx_packed_find (packed, json, &n);
    if (f) {
        (*found)++;
        json_t *array = json_array ();
        for (size_t k = 0; k < n; k++)
            json_array_append_new (array, json_integer ((json_int_t) f [k]));
        return array;
    }
    if (json_is_object (json)) {
        json_t *copy = json_object ();
        const char *key;
        json_t *value;
        json_object_foreach ((json_t *) json, key, value)
            json_object_set_new (copy, key, s_unpacked (value, packed, found));
        return copy;
    }
    if (json_is_array (json)) {
        json_t *copy = json_array ();
        size_t i;
        json_t *value;
        json_array_foreach (json, i, value)
            json_array_append_new (copy, s_unpacked (value, packed, found));
        return copy;
    }
    return json_incref ((json_t *) json);
}

//  Parses text with s_upsert_packs: want_n arrays packed, and the tree is
//  the plain one with each packed array a placeholder of its numbers.
static void
s_check_packed (const char *text, size_t want_n)
{
    char err [256];
    jsonx_packed_t *packed = NULL;
    json_t *got = jsonx_loadb_packs (text, strlen (text), 0, s_upsert_packs, &packed, err,
                                     sizeof err);
    ck_assert_msg (got, "refused %s: %s", text, err);
    json_t *plain = jsonx_loadb (text, strlen (text), 0, err, sizeof err);
    ck_assert (plain);
    //  Every placeholder replaced by an array of its floats: then the trees
    //  are equal (the numbers here are all exact in float32).
    size_t found = 0;
    json_t *unpacked = s_unpacked (got, packed, &found);
    ck_assert_msg (found == want_n, "%s: %zu packed, want %zu", text, found, want_n);
    ck_assert_msg (json_equal (plain, unpacked), "trees differ for %s", text);
    json_decref (plain);
    json_decref (unpacked);
    json_decref (got);
    jsonx_packed_destroy (&packed);
}

START_TEST (test_packs_take_columns_and_keys_at_their_depth_only)
{
    //  A batch's column: every element packed; payloads' own "vector" and
    //  "vectors" keys (deeper) left alone.
    s_check_packed ("{\"batch\": {\"ids\": [1, 2, 3], \"vectors\": [[1, 2], [3, 4], [5, 6]],"
                    " \"payloads\": [{\"vector\": [7, 8]}, {\"vectors\": [[9]]}, null]}}", 3);
    //  Points: each point's "vector"; a payload's is not.
    s_check_packed ("{\"points\": [{\"id\": 1, \"vector\": [1, 2], \"payload\": {\"vector\":"
                    " [3]}}, {\"id\": 2, \"vector\": [4, 5]}]}", 2);
    //  Named vectors (an object) and a named column stay as they are.
    s_check_packed ("{\"points\": [{\"id\": 1, \"vector\": {\"a\": [1, 2]}}]}", 0);
    s_check_packed ("{\"batch\": {\"ids\": [1], \"vectors\": {\"a\": [[1, 2]]}}}", 0);
    //  A column holding something else: the arrays in it still pack, the
    //  rest is built (the pre-scan declines, the loader decides).
    s_check_packed ("{\"batch\": {\"ids\": [1, 2, 3], \"vectors\": [[1, 2], {\"indices\":"
                    " [1], \"values\": [2]}, [3, 4]]}}", 2);
    s_check_packed ("{\"batch\": {\"ids\": [1, 2], \"vectors\": [[[1], [2]], [3, 4]]}}", 1);
    s_check_packed ("{\"batch\": {\"ids\": [], \"vectors\": []}}", 0);
    s_check_packed ("{\"batch\": {\"ids\": [1], \"vectors\": [[]]}}", 0);
    //  A top-level "vectors" (depth 1) is not a column here.
    s_check_packed ("{\"vectors\": [[1, 2]], \"x\": {\"vectors\": [[3]]}}", 1);
}
END_TEST

static Suite *
jsonx_suite (void)
{
    Suite *s = suite_create ("jsonx");
    TCase *tc = tcase_create ("jsonx");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_documents_parse_to_the_same_tree_as_jansson);
    tcase_add_test (tc, test_numbers_are_bit_identical_to_strtod);
    tcase_add_test (tc, test_bad_input_is_refused_with_a_message);
    tcase_add_test (tc, test_deep_nesting_is_refused_not_overflowed);
    tcase_add_test (tc, test_duplicate_keys_are_refused_when_asked);
    tcase_add_test (tc, test_number_arrays_under_a_pack_key_become_floats);
    tcase_add_test (tc, test_arrays_that_are_not_all_numbers_are_built_as_usual);
    tcase_add_test (tc, test_packing_keeps_errors_and_survives_duplicates);
    tcase_add_test (tc, test_write_matches_json_dumps_but_reals_are_short);
    tcase_add_test (tc, test_packed_numbers_are_those_of_the_tree_whatever_their_spelling);
    tcase_add_test (tc, test_lists_the_scan_declines_get_the_loaders_answers);
    tcase_add_test (tc, test_packs_take_columns_and_keys_at_their_depth_only);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (jsonx_suite)
