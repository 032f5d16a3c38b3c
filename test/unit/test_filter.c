/*  test_filter: every condition kind of Qdrant's Filter, their combinations,
    nested filters, array paths, missing keys, payload edits by path, and the
    errors bad filters get.
*/
#include "common/err.h"
#include "common/filter.h"
#include "test/unit/check_main.h"

#include <string.h>

static json_t *
s_json (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &error);
    ck_assert_msg (json, "bad test JSON: %s: %s", text, error.text);
    return json;
}

static pointid_t
s_num (uint64_t n)
{
    pointid_t id = { .is_uuid = false, .num = n };
    return id;
}

static bool s_vector_a_present;

static bool
s_has_vector (const char *name, void *arg)
{
    (void) arg;
    return strcmp (name, "a") == 0 && s_vector_a_present;
}

//  Does filter (JSON text) match a point with this id and payload?
static bool
s_matches_id (const char *filter_text, const char *payload_text, const pointid_t *id)
{
    json_t *fj = s_json (filter_text);
    filter_t *filter = NULL;
    char err [256];
    int rc = filter_parse (fj, &filter, err, sizeof err);
    ck_assert_msg (rc == 0, "filter %s rejected: %s", filter_text, err);
    json_t *payload = payload_text ? s_json (payload_text) : NULL;
    bool result = filter_match_ex (filter, id, payload, s_has_vector, NULL);
    //  filter_match agrees whenever no has_vector is involved.
    if (!strstr (filter_text, "has_vector"))
        ck_assert_int_eq (filter_match (filter, id, payload), result);
    json_decref (payload);
    filter_destroy (&filter);
    ck_assert_ptr_null (filter);
    json_decref (fj);
    return result;
}

static bool
s_matches (const char *filter_text, const char *payload_text)
{
    pointid_t id = s_num (1);
    return s_matches_id (filter_text, payload_text, &id);
}

//  The error message a bad filter gets (static buffer).
static const char *
s_rejects (const char *filter_text)
{
    static char err [256];
    json_t *fj = s_json (filter_text);
    filter_t *filter = (filter_t *) 1;
    int rc = filter_parse (fj, &filter, err, sizeof err);
    ck_assert_msg (rc == -SH_EINVAL, "filter %s accepted", filter_text);
    ck_assert_ptr_null (filter);
    ck_assert_msg (strlen (err) > 0, "no message for %s", filter_text);
    json_decref (fj);
    return err;
}

//  --- clauses --------------------------------------------------------------

START_TEST (test_null_filter_is_no_filter_and_matches_everything)
{
    json_t *null = json_null ();
    filter_t *filter = (filter_t *) 1;
    ck_assert_int_eq (filter_parse (null, &filter, NULL, 0), 0);
    ck_assert_ptr_null (filter);
    pointid_t id = s_num (3);
    ck_assert (filter_match (NULL, &id, NULL));
    json_decref (null);
    ck_assert (s_matches ("{}", "{\"a\": 1}"));
    ck_assert (s_matches ("{}", NULL));
    ck_assert (s_matches ("{\"must\": null, \"should\": null}", "{}"));
}
END_TEST

START_TEST (test_must_requires_every_condition)
{
    const char *f = "{\"must\": [{\"key\": \"city\", \"match\": {\"value\": \"London\"}},"
                    "{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}";
    ck_assert (s_matches (f, "{\"city\": \"London\", \"color\": \"red\"}"));
    ck_assert (!s_matches (f, "{\"city\": \"London\", \"color\": \"blue\"}"));
    ck_assert (!s_matches (f, "{\"city\": \"Berlin\", \"color\": \"red\"}"));
    ck_assert (!s_matches (f, NULL));
    //  A single condition instead of an array.
    ck_assert (s_matches ("{\"must\": {\"key\": \"city\", \"match\": {\"value\": \"London\"}}}",
                          "{\"city\": \"London\"}"));
    ck_assert (s_matches ("{\"must\": []}", "{}"));
}
END_TEST

START_TEST (test_should_requires_one_when_not_empty)
{
    const char *f = "{\"should\": [{\"key\": \"city\", \"match\": {\"value\": \"London\"}},"
                    "{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}";
    ck_assert (s_matches (f, "{\"city\": \"London\", \"color\": \"blue\"}"));
    ck_assert (s_matches (f, "{\"city\": \"Berlin\", \"color\": \"red\"}"));
    ck_assert (!s_matches (f, "{\"city\": \"Berlin\", \"color\": \"blue\"}"));
    //  Empty should is no constraint (as Qdrant's optimized filter).
    ck_assert (s_matches ("{\"should\": []}", "{\"city\": \"Berlin\"}"));
    ck_assert (s_matches ("{\"should\": {\"has_id\": [1]}}", "{}"));
}
END_TEST

START_TEST (test_must_not_rejects_any_match)
{
    const char *f = "{\"must_not\": [{\"key\": \"city\", \"match\": {\"value\": \"London\"}},"
                    "{\"key\": \"color\", \"match\": {\"value\": \"red\"}}]}";
    ck_assert (!s_matches (f, "{\"city\": \"London\", \"color\": \"blue\"}"));
    ck_assert (!s_matches (f, "{\"city\": \"Berlin\", \"color\": \"red\"}"));
    ck_assert (s_matches (f, "{\"city\": \"Berlin\", \"color\": \"blue\"}"));
    ck_assert (s_matches (f, "{}"));
}
END_TEST

START_TEST (test_clauses_combine_and_filters_nest)
{
    const char *f =
        "{\"must\": [{\"key\": \"city\", \"match\": {\"value\": \"London\"}}],"
        " \"must_not\": [{\"key\": \"color\", \"match\": {\"value\": \"red\"}}],"
        " \"should\": [{\"key\": \"size\", \"range\": {\"gte\": 10}},"
        "              {\"must\": [{\"key\": \"color\", \"match\": {\"value\": \"blue\"}},"
        "                          {\"key\": \"size\", \"range\": {\"lt\": 3}}]}]}";
    ck_assert (s_matches (f, "{\"city\": \"London\", \"color\": \"green\", \"size\": 12}"));
    ck_assert (s_matches (f, "{\"city\": \"London\", \"color\": \"blue\", \"size\": 1}"));
    ck_assert (!s_matches (f, "{\"city\": \"London\", \"color\": \"blue\", \"size\": 5}"));
    ck_assert (!s_matches (f, "{\"city\": \"London\", \"color\": \"red\", \"size\": 12}"));
    ck_assert (!s_matches (f, "{\"city\": \"Paris\", \"color\": \"green\", \"size\": 12}"));
}
END_TEST

START_TEST (test_min_should_counts_matching_conditions)
{
    const char *f =
        "{\"min_should\": {\"min_count\": 2, \"conditions\": ["
        "  {\"key\": \"a\", \"match\": {\"value\": 1}},"
        "  {\"key\": \"b\", \"match\": {\"value\": 1}},"
        "  {\"key\": \"c\", \"match\": {\"value\": 1}}]}}";
    ck_assert (s_matches (f, "{\"a\": 1, \"b\": 1}"));
    ck_assert (s_matches (f, "{\"a\": 1, \"b\": 1, \"c\": 1}"));
    ck_assert (s_matches (f, "{\"b\": 1, \"c\": 1}"));
    ck_assert (!s_matches (f, "{\"a\": 1, \"b\": 2, \"c\": 2}"));
    ck_assert (!s_matches (f, "{}"));
    //  Not enough conditions to ever reach min_count.
    ck_assert (!s_matches ("{\"min_should\": {\"min_count\": 1, \"conditions\": []}}", "{}"));
    //  Together with must.
    ck_assert (!s_matches ("{\"must\": {\"key\": \"z\", \"match\": {\"value\": 1}},"
                           " \"min_should\": {\"min_count\": 1, \"conditions\": ["
                           " {\"key\": \"a\", \"match\": {\"value\": 1}}]}}",
                           "{\"a\": 1}"));
}
END_TEST

//  --- match ----------------------------------------------------------------

START_TEST (test_match_value_compares_strings_integers_and_booleans)
{
    ck_assert (s_matches ("{\"must\": {\"key\": \"s\", \"match\": {\"value\": \"x\"}}}",
                          "{\"s\": \"x\"}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"s\", \"match\": {\"value\": \"x\"}}}",
                           "{\"s\": \"xy\"}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"n\", \"match\": {\"value\": 5}}}",
                          "{\"n\": 5}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"n\", \"match\": {\"value\": -7}}}",
                          "{\"n\": -7}"));
    //  As Qdrant: integers only match integer payloads.
    ck_assert (!s_matches ("{\"must\": {\"key\": \"n\", \"match\": {\"value\": 5}}}",
                           "{\"n\": 5.0}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"n\", \"match\": {\"value\": 5}}}",
                           "{\"n\": \"5\"}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"b\", \"match\": {\"value\": true}}}",
                          "{\"b\": true}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"b\", \"match\": {\"value\": true}}}",
                           "{\"b\": false}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"b\", \"match\": {\"value\": true}}}",
                           "{\"b\": 1}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"b\", \"match\": {\"value\": false}}}",
                          "{\"b\": false}"));
    //  An array matches if any element does.
    ck_assert (s_matches ("{\"must\": {\"key\": \"s\", \"match\": {\"value\": \"y\"}}}",
                          "{\"s\": [\"x\", \"y\"]}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"s\", \"match\": {\"value\": \"z\"}}}",
                           "{\"s\": [\"x\", \"y\"]}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"s\", \"match\": {\"value\": \"x\"}}}",
                           "{}"));
}
END_TEST

START_TEST (test_match_any_is_membership)
{
    const char *fs = "{\"must\": {\"key\": \"c\", \"match\": {\"any\": [\"red\", \"blue\"]}}}";
    ck_assert (s_matches (fs, "{\"c\": \"red\"}"));
    ck_assert (s_matches (fs, "{\"c\": [\"green\", \"blue\"]}"));
    ck_assert (!s_matches (fs, "{\"c\": \"green\"}"));
    ck_assert (!s_matches (fs, "{}"));
    const char *fi = "{\"must\": {\"key\": \"n\", \"match\": {\"any\": [3, 1, 2]}}}";
    ck_assert (s_matches (fi, "{\"n\": 2}"));
    ck_assert (!s_matches (fi, "{\"n\": 4}"));
    ck_assert (!s_matches (fi, "{\"n\": \"2\"}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"c\", \"match\": {\"any\": []}}}",
                           "{\"c\": \"red\"}"));
    //  A long list (searched, not scanned).
    char f [2048];
    int n = snprintf (f, sizeof f, "{\"must\": {\"key\": \"n\", \"match\": {\"any\": [");
    for (int i = 0; i < 100; i++)
        n += snprintf (f + n, sizeof f - (size_t) n, "%s%d", i ? "," : "", i * 7);
    snprintf (f + n, sizeof f - (size_t) n, "]}}}");
    ck_assert (s_matches (f, "{\"n\": 693}"));
    ck_assert (!s_matches (f, "{\"n\": 694}"));
}
END_TEST

START_TEST (test_match_except_is_not_any_on_present_values)
{
    const char *f = "{\"must\": {\"key\": \"c\", \"match\": {\"except\": [\"red\", \"blue\"]}}}";
    ck_assert (s_matches (f, "{\"c\": \"green\"}"));
    ck_assert (!s_matches (f, "{\"c\": \"red\"}"));
    //  An array needs one value outside the list.
    ck_assert (s_matches (f, "{\"c\": [\"red\", \"green\"]}"));
    ck_assert (!s_matches (f, "{\"c\": [\"red\", \"blue\"]}"));
    ck_assert (!s_matches (f, "{\"c\": []}"));
    //  As Qdrant: a missing key or null does not match; another type does.
    ck_assert (!s_matches (f, "{}"));
    ck_assert (!s_matches (f, "{\"c\": null}"));
    ck_assert (s_matches (f, "{\"c\": 5}"));
    ck_assert (s_matches (f, "{\"c\": true}"));
    const char *fi = "{\"must\": {\"key\": \"n\", \"match\": {\"except\": [1, 2]}}}";
    ck_assert (s_matches (fi, "{\"n\": 3}"));
    ck_assert (!s_matches (fi, "{\"n\": 2}"));
    ck_assert (s_matches (fi, "{\"n\": 2.5}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"c\", \"match\": {\"except\": []}}}",
                          "{\"c\": \"red\"}"));
}
END_TEST

START_TEST (test_match_text_phrase_text_any_and_prefix)
{
    const char *payload = "{\"d\": \"good cheap hotel\"}";
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text\": \"cheap\"}}}",
                          payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text\": \"od ch\"}}}",
                          payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text\": \"Cheap\"}}}",
                           payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"phrase\": \"cheap hotel\"}}}",
                          payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"phrase\": \"hotel cheap\"}}}",
                           payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text_any\": \"pricey hotel\"}}}",
                          payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text_any\": \"pricey motel\"}}}",
                           payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"prefix\": \"good c\"}}}",
                          payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"prefix\": \"cheap\"}}}",
                           payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text\": \"5\"}}}",
                           "{\"d\": 5}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"d\", \"match\": {\"text\": \"bb\"}}}",
                          "{\"d\": [\"aa\", \"abba\"]}"));
}
END_TEST

//  --- range ----------------------------------------------------------------

START_TEST (test_range_on_integer_and_float_payloads)
{
    const char *f = "{\"must\": {\"key\": \"p\", \"range\": {\"gte\": 100, \"lt\": 450.5}}}";
    ck_assert (s_matches (f, "{\"p\": 100}"));
    ck_assert (s_matches (f, "{\"p\": 450.25}"));
    ck_assert (!s_matches (f, "{\"p\": 450.5}"));
    ck_assert (!s_matches (f, "{\"p\": 99.99}"));
    ck_assert (!s_matches (f, "{\"p\": \"200\"}"));
    ck_assert (!s_matches (f, "{}"));
    ck_assert (s_matches (f, "{\"p\": [1, 200]}"));
    ck_assert (!s_matches (f, "{\"p\": [1, 2]}"));
    const char *g = "{\"must\": {\"key\": \"p\", \"range\": {\"gt\": 1, \"lte\": 2}}}";
    ck_assert (!s_matches (g, "{\"p\": 1}"));
    ck_assert (s_matches (g, "{\"p\": 2}"));
    ck_assert (s_matches (g, "{\"p\": 1.5}"));
    //  No bounds: any number.
    ck_assert (s_matches ("{\"must\": {\"key\": \"p\", \"range\": {\"gt\": null}}}",
                          "{\"p\": -3}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"p\", \"range\": {}}}", "{\"p\": true}"));
}
END_TEST

START_TEST (test_datetime_range_compares_instants)
{
    const char *f = "{\"must\": {\"key\": \"t\", \"range\": {"
                    "\"gte\": \"2023-02-08T10:49:00Z\", \"lt\": \"2023-02-08T12:00:00+01:00\"}}}";
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T10:49:00Z\"}"));
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T10:59:59.999999Z\"}"));
    //  12:00+01:00 is 11:00Z: excluded bound.
    ck_assert (!s_matches (f, "{\"t\": \"2023-02-08T11:00:00Z\"}"));
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T12:50:00+02:00\"}"));
    ck_assert (!s_matches (f, "{\"t\": \"2023-02-08T10:48:59.5Z\"}"));
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T05:50:00-05:00\"}"));
    //  Qdrant's lenient forms: no zone (UTC), space separator, no seconds.
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08 10:55:00\"}"));
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T10:55\"}"));
    ck_assert (s_matches (f, "{\"t\": \"2023-02-08T13:55:00+0300\"}"));
    ck_assert (!s_matches (f, "{\"t\": \"2023-02-08\"}"));
    ck_assert (!s_matches (f, "{\"t\": \"not a date\"}"));
    ck_assert (!s_matches (f, "{\"t\": 1675853340}"));
    ck_assert (s_matches (f, "{\"t\": [\"2020-01-01T00:00:00Z\", \"2023-02-08T11:50:00+01:00\"]}"));
    //  Across years and leap days.
    const char *g = "{\"must\": {\"key\": \"t\", \"range\": {\"gt\": \"2024-02-28\", "
                    "\"lt\": \"2024-03-01T00:00:00Z\"}}}";
    ck_assert (s_matches (g, "{\"t\": \"2024-02-29T23:59:59Z\"}"));
    ck_assert (!s_matches (g, "{\"t\": \"2024-03-01T00:00:00.000Z\"}"));
    ck_assert (s_matches ("{\"must\": {\"key\": \"t\", \"range\": {\"lt\": \"1970-01-01T00:00:00Z\"}}}",
                          "{\"t\": \"1969-12-31T23:59:59Z\"}"));
}
END_TEST

//  --- counts, empty, null ---------------------------------------------------

START_TEST (test_values_count_counts_values_at_the_key)
{
    const char *gt1 = "{\"must\": {\"key\": \"c\", \"values_count\": {\"gt\": 1}}}";
    ck_assert (s_matches (gt1, "{\"c\": [\"a\", \"b\"]}"));
    ck_assert (!s_matches (gt1, "{\"c\": [\"a\"]}"));
    ck_assert (!s_matches (gt1, "{\"c\": \"ab\"}"));
    ck_assert (s_matches (gt1, "{\"c\": [{\"x\": 1}, {\"x\": 2}]}"));
    const char *lte0 = "{\"must\": {\"key\": \"c\", \"values_count\": {\"lte\": 0}}}";
    ck_assert (s_matches (lte0, "{}"));
    ck_assert (s_matches (lte0, "{\"c\": []}"));
    ck_assert (s_matches (lte0, "{\"c\": null}"));
    ck_assert (!s_matches (lte0, "{\"c\": 0}"));
    const char *range = "{\"must\": {\"key\": \"c\", \"values_count\": {\"gte\": 2, \"lt\": 4}}}";
    ck_assert (!s_matches (range, "{\"c\": [1]}"));
    ck_assert (s_matches (range, "{\"c\": [1, 2, 3]}"));
    ck_assert (!s_matches (range, "{\"c\": [1, 2, 3, 4]}"));
}
END_TEST

START_TEST (test_is_empty_matches_missing_null_and_empty_array)
{
    const char *f = "{\"must\": {\"is_empty\": {\"key\": \"r\"}}}";
    ck_assert (s_matches (f, "{}"));
    ck_assert (s_matches (f, NULL));
    ck_assert (s_matches (f, "{\"r\": null}"));
    ck_assert (s_matches (f, "{\"r\": []}"));
    ck_assert (!s_matches (f, "{\"r\": [null]}"));
    ck_assert (!s_matches (f, "{\"r\": \"\"}"));
    ck_assert (!s_matches (f, "{\"r\": 0}"));
    ck_assert (!s_matches (f, "{\"r\": {}}"));
    //  The field-condition form.
    const char *t = "{\"must\": {\"key\": \"r\", \"is_empty\": true}}";
    ck_assert (s_matches (t, "{}"));
    ck_assert (s_matches (t, "{\"r\": []}"));
    ck_assert (!s_matches (t, "{\"r\": [1]}"));
    const char *nf = "{\"must\": {\"key\": \"r\", \"is_empty\": false}}";
    ck_assert (!s_matches (nf, "{}"));
    ck_assert (s_matches (nf, "{\"r\": [1]}"));
    ck_assert (s_matches ("{\"must_not\": {\"is_empty\": {\"key\": \"r\"}}}", "{\"r\": 1}"));
}
END_TEST

START_TEST (test_is_null_matches_null_but_not_missing_or_empty)
{
    const char *f = "{\"must\": {\"is_null\": {\"key\": \"r\"}}}";
    ck_assert (s_matches (f, "{\"r\": null}"));
    ck_assert (!s_matches (f, "{}"));
    ck_assert (!s_matches (f, "{\"r\": []}"));
    ck_assert (!s_matches (f, "{\"r\": 1}"));
    ck_assert (!s_matches (f, "{\"r\": \"null\"}"));
    //  Some element of an array of objects has it null.
    ck_assert (s_matches ("{\"must\": {\"is_null\": {\"key\": \"a[].b\"}}}",
                          "{\"a\": [{\"b\": 1}, {\"b\": null}]}"));
    const char *t = "{\"must\": {\"key\": \"r\", \"is_null\": true}}";
    ck_assert (s_matches (t, "{\"r\": null}"));
    ck_assert (s_matches (t, "{\"r\": [1, null]}"));
    ck_assert (!s_matches (t, "{}"));
    const char *nf = "{\"must\": {\"key\": \"r\", \"is_null\": false}}";
    ck_assert (s_matches (nf, "{}"));
    ck_assert (s_matches (nf, "{\"r\": 1}"));
    ck_assert (!s_matches (nf, "{\"r\": null}"));
}
END_TEST

//  --- ids, vectors, slices ---------------------------------------------------

START_TEST (test_has_id_matches_listed_ids)
{
    const char *f = "{\"must\": {\"has_id\": [1, 3, \"550e8400-e29b-41d4-a716-446655440000\"]}}";
    pointid_t one = s_num (1), two = s_num (2), three = s_num (3);
    ck_assert (s_matches_id (f, "{}", &one));
    ck_assert (!s_matches_id (f, "{}", &two));
    ck_assert (s_matches_id (f, NULL, &three));
    pointid_t uuid;
    json_t *text = json_string ("550E8400E29B41D4A716446655440000");
    ck_assert_int_eq (pointid_from_json (text, &uuid), 0);
    json_decref (text);
    ck_assert (s_matches_id (f, "{}", &uuid));
    uuid.uuid [15] ^= 1;
    ck_assert (!s_matches_id (f, "{}", &uuid));
    ck_assert (!s_matches_id ("{\"must\": {\"has_id\": []}}", "{}", &one));
    ck_assert (s_matches_id ("{\"must_not\": {\"has_id\": [2]}}", "{}", &one));
}
END_TEST

START_TEST (test_has_vector_asks_the_caller)
{
    const char *f = "{\"must\": {\"has_vector\": \"a\"}}";
    s_vector_a_present = true;
    ck_assert (s_matches (f, "{}"));
    s_vector_a_present = false;
    ck_assert (!s_matches (f, "{}"));
    s_vector_a_present = true;
    ck_assert (!s_matches ("{\"must\": {\"has_vector\": \"b\"}}", "{}"));
    //  Without a callback it never matches.
    json_t *fj = s_json (f);
    filter_t *filter;
    ck_assert_int_eq (filter_parse (fj, &filter, NULL, 0), 0);
    pointid_t id = s_num (1);
    ck_assert (!filter_match (filter, &id, NULL));
    filter_destroy (&filter);
    json_decref (fj);
}
END_TEST

START_TEST (test_slice_uses_qdrants_siphash_contract)
{
    //  Qdrant's frozen vectors: hash(0) = 0xe849e8bb6ffe2567,
    //  hash(42) = 0x0fc2553f07619dd3, hash(550e8400-...) = 0xf5d0ca21ba34d504;
    //  the expected slices are those hashes modulo total.
    pointid_t zero = s_num (0), answer = s_num (42), uuid;
    json_t *text = json_string ("550e8400-e29b-41d4-a716-446655440000");
    ck_assert_int_eq (pointid_from_json (text, &uuid), 0);
    json_decref (text);
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 7, \"index\": 3}}}", "{}", &zero));
    ck_assert (!s_matches_id ("{\"must\": {\"slice\": {\"total\": 7, \"index\": 2}}}", "{}", &zero));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 1000, \"index\": 119}}}", "{}",
                             &zero));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 4294967295, \"index\": "
                             "1481117219}}}", "{}", &zero));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 1000, \"index\": 819}}}", "{}",
                             &answer));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 4294967295, \"index\": "
                             "388231954}}}", "{}", &answer));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 1000, \"index\": 868}}}", "{}",
                             &uuid));
    ck_assert (s_matches_id ("{\"must\": {\"slice\": {\"total\": 4294967295, \"index\": "
                             "2953158438}}}", "{}", &uuid));
    //  Every id is in exactly one slice of a total.
    for (uint64_t n = 0; n < 50; n++) {
        pointid_t id = s_num (n);
        int hits = 0;
        for (int i = 0; i < 5; i++) {
            char f [128];
            snprintf (f, sizeof f, "{\"must\": {\"slice\": {\"total\": 5, \"index\": %d}}}", i);
            hits += s_matches_id (f, "{}", &id);
        }
        ck_assert_int_eq (hits, 1);
    }
}
END_TEST

//  --- nested and paths --------------------------------------------------------

static const char *s_dinos [2] = {
    "{\"dinosaur\": \"t-rex\", \"diet\": [{\"food\": \"leaves\", \"likes\": false},"
    " {\"food\": \"meat\", \"likes\": true}]}",
    "{\"dinosaur\": \"diplodocus\", \"diet\": [{\"food\": \"leaves\", \"likes\": true},"
    " {\"food\": \"meat\", \"likes\": false}]}"
};

START_TEST (test_nested_requires_one_element_to_match_alone)
{
    const char *flat = "{\"must\": [{\"key\": \"diet[].food\", \"match\": {\"value\": \"meat\"}},"
                       "{\"key\": \"diet[].likes\", \"match\": {\"value\": true}}]}";
    ck_assert (s_matches (flat, s_dinos [0]));
    ck_assert (s_matches (flat, s_dinos [1]));
    const char *nested =
        "{\"must\": [{\"nested\": {\"key\": \"diet\", \"filter\": {\"must\": ["
        "{\"key\": \"food\", \"match\": {\"value\": \"meat\"}},"
        "{\"key\": \"likes\", \"match\": {\"value\": true}}]}}}]}";
    ck_assert (s_matches (nested, s_dinos [0]));
    ck_assert (!s_matches (nested, s_dinos [1]));
    //  "diet[]" is the same key.
    const char *brackets =
        "{\"must\": {\"nested\": {\"key\": \"diet[]\", \"filter\": {\"must\": ["
        "{\"key\": \"food\", \"match\": {\"value\": \"meat\"}},"
        "{\"key\": \"likes\", \"match\": {\"value\": true}}]}}}}";
    ck_assert (s_matches (brackets, s_dinos [0]));
    ck_assert (!s_matches (brackets, s_dinos [1]));
    //  must_not inside nested applies per element.
    const char *none_liked =
        "{\"must_not\": {\"nested\": {\"key\": \"diet\", \"filter\": {\"must\": "
        "{\"key\": \"likes\", \"match\": {\"value\": true}}}}}}";
    ck_assert (!s_matches (none_liked, s_dinos [0]));
    ck_assert (s_matches (none_liked, "{\"diet\": [{\"likes\": false}]}"));
    ck_assert (s_matches (none_liked, "{}"));
    //  Not an array of objects: nothing to match.
    ck_assert (!s_matches (nested, "{\"diet\": {\"food\": \"meat\", \"likes\": true}}"));
    ck_assert (!s_matches (nested, "{\"diet\": [\"meat\"]}"));
    //  has_id is not applied inside nested (as Qdrant).
    ck_assert (!s_matches ("{\"must\": {\"nested\": {\"key\": \"diet\", \"filter\": "
                           "{\"must\": {\"has_id\": [1]}}}}}", s_dinos [0]));
    //  Nested inside nested, with deeper paths.
    const char *deep =
        "{\"must\": {\"nested\": {\"key\": \"country.cities\", \"filter\": {\"must\": ["
        "{\"key\": \"name\", \"match\": {\"value\": \"Tokyo\"}},"
        "{\"nested\": {\"key\": \"sights\", \"filter\": {\"must\": "
        "{\"key\": \"rating\", \"range\": {\"gte\": 4}}}}}]}}}}";
    ck_assert (s_matches (deep, "{\"country\": {\"cities\": [{\"name\": \"Osaka\", \"sights\": "
                                "[{\"rating\": 5}]}, {\"name\": \"Tokyo\", \"sights\": "
                                "[{\"rating\": 3}, {\"rating\": 4.5}]}]}}"));
    ck_assert (!s_matches (deep, "{\"country\": {\"cities\": [{\"name\": \"Osaka\", \"sights\": "
                                 "[{\"rating\": 5}]}, {\"name\": \"Tokyo\", \"sights\": "
                                 "[{\"rating\": 3}]}]}}"));
}
END_TEST

START_TEST (test_paths_reach_into_objects_and_arrays)
{
    const char *payload =
        "{\"country\": {\"name\": \"Japan\", \"cities\": [{\"name\": \"Tokyo\", "
        "\"population\": 9.3, \"sightseeing\": [\"Tokyo Tower\", \"Tokyo Skytree\"]}, "
        "{\"name\": \"Osaka\", \"population\": 2.7, \"sightseeing\": [\"Osaka Castle\"]}]},"
        " \"a.b\": 1, \"m\": [[1, 2], [3]]}";
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.name\", \"match\": {\"value\": \"Japan\"}}}",
                          payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.cities[].population\", "
                          "\"range\": {\"gte\": 9.0}}}", payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"country.cities[].population\", "
                           "\"range\": {\"gte\": 10.0}}}", payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.cities[].sightseeing\", "
                          "\"match\": {\"value\": \"Osaka Castle\"}}}", payload));
    //  A key applied to an array reaches into every element.
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.cities.name\", "
                          "\"match\": {\"value\": \"Osaka\"}}}", payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.cities[1].name\", "
                          "\"match\": {\"value\": \"Osaka\"}}}", payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"country.cities[0].name\", "
                           "\"match\": {\"value\": \"Osaka\"}}}", payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"country.cities[5].name\", "
                           "\"match\": {\"value\": \"Osaka\"}}}", payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"\\\"a.b\\\"\", \"match\": {\"value\": 1}}}",
                          payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"a.b\", \"match\": {\"value\": 1}}}",
                           payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"m[1]\", \"match\": {\"value\": 3}}}",
                          payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"m[]\", \"match\": {\"value\": 2}}}",
                          payload));
    ck_assert (s_matches ("{\"must\": {\"key\": \"country.cities[].sightseeing\", "
                          "\"values_count\": {\"gt\": 1}}}", payload));
    //  A scalar does not have keys or elements.
    ck_assert (!s_matches ("{\"must\": {\"key\": \"country.name.x\", \"match\": {\"value\": 1}}}",
                           payload));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"country.name[0]\", \"match\": {\"value\": \"J\"}}}",
                           payload));
}
END_TEST

static void
s_count_visit (const json_t *value, void *arg)
{
    (void) value;
    (*(int *) arg)++;
}

START_TEST (test_path_visit_flattens_arrays)
{
    json_t *payload = s_json ("{\"a\": [{\"b\": [1, 2]}, {\"b\": 3}, {\"c\": 4}], \"s\": \"x\"}");
    int n = 0;
    ck_assert_uint_eq (filter_path_visit (payload, "a[].b", s_count_visit, &n), 3);
    ck_assert_int_eq (n, 3);
    n = 0;
    ck_assert_uint_eq (filter_path_visit (payload, "a.b", s_count_visit, &n), 3);
    ck_assert_uint_eq (filter_path_visit (payload, "a", s_count_visit, &n), 3);
    ck_assert_uint_eq (filter_path_visit (payload, "s", s_count_visit, &n), 1);
    ck_assert_uint_eq (filter_path_visit (payload, "nope", s_count_visit, &n), 0);
    ck_assert_uint_eq (filter_path_visit (payload, "a..b", s_count_visit, &n), 0);
    ck_assert_uint_eq (filter_path_visit (NULL, "a", s_count_visit, &n), 0);
    json_decref (payload);
    ck_assert (filter_path_valid ("a.b[0].c[]"));
    ck_assert (filter_path_valid ("\"a b\".c-d_e"));
    ck_assert (!filter_path_valid (""));
    ck_assert (!filter_path_valid ("a."));
    ck_assert (!filter_path_valid ("a[x]"));
    ck_assert (!filter_path_valid ("[0]"));
    ck_assert (!filter_path_valid ("a b"));
    ck_assert (!filter_path_valid (NULL));
}
END_TEST

START_TEST (test_path_set_merges_at_key_as_qdrant)
{
    json_t *payload = s_json ("{\"a\": {\"x\": 1}, \"l\": [{\"k\": 1}, {\"k\": 2}], \"s\": 5}");
    json_t *obj = s_json ("{\"y\": 2, \"x\": null}");
    ck_assert_int_eq (filter_path_set (payload, "a", obj), 0);
    ck_assert_int_eq (filter_path_set (payload, "n.m", obj), 0);
    ck_assert_int_eq (filter_path_set (payload, "l[]", obj), 0);
    ck_assert_int_eq (filter_path_set (payload, "s", obj), 0);
    ck_assert_int_eq (filter_path_set (payload, "a.b[", obj), -SH_EINVAL);
    json_t *top = s_json ("{\"t\": [1], \"n\": null}");
    ck_assert_int_eq (filter_path_set (payload, NULL, top), 0);
    json_t *expect = s_json ("{\"a\": {\"y\": 2}, \"l\": [{\"k\": 1, \"y\": 2}, "
                             "{\"k\": 2, \"y\": 2}], \"s\": {\"y\": 2}, \"t\": [1]}");
    char *got = json_dumps (payload, JSON_SORT_KEYS);
    ck_assert_msg (json_equal (payload, expect), "got %s", got);
    free (got);
    //  Values are copied, not shared.
    json_object_set_new (obj, "y", json_integer (99));
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (payload, "a"), "y")),
                      2);
    json_decref (expect);
    json_decref (top);
    json_decref (obj);
    json_decref (payload);
}
END_TEST

START_TEST (test_path_remove_deletes_nested_keys)
{
    json_t *payload = s_json ("{\"a\": {\"b\": 1, \"c\": 2}, \"l\": [{\"k\": 1, \"j\": 0}, "
                              "{\"k\": 2}], \"arr\": [1, 2], \"keep\": true}");
    ck_assert_int_eq (filter_path_remove (payload, "a.b"), 1);
    ck_assert_int_eq (filter_path_remove (payload, "l[].k"), 2);
    ck_assert_int_eq (filter_path_remove (payload, "arr[0]"), 0);
    ck_assert_int_eq (filter_path_remove (payload, "nothing.here"), 0);
    ck_assert_int_eq (filter_path_remove (payload, "bad..path"), -SH_EINVAL);
    json_t *expect = s_json ("{\"a\": {\"c\": 2}, \"l\": [{\"j\": 0}, {}], \"arr\": [1, 2], "
                             "\"keep\": true}");
    ck_assert (json_equal (payload, expect));
    ck_assert_int_eq (filter_path_remove (payload, "arr[]"), 1);
    ck_assert_uint_eq (json_array_size (json_object_get (payload, "arr")), 0);
    json_decref (expect);
    json_decref (payload);
}
END_TEST

//  --- geo -------------------------------------------------------------------

START_TEST (test_geo_radius_bounding_box_and_polygon)
{
    const char *berlin_moscow = "{\"loc\": [{\"lat\": 52.52197645, \"lon\": 13.413637435864272},"
                                "{\"lat\": 55.7536283, \"lon\": 37.62137960067377}]}";
    ck_assert (s_matches ("{\"must\": {\"key\": \"loc\", \"geo_radius\": {\"center\": "
                          "{\"lat\": 52.511, \"lon\": 13.423637}, \"radius\": 2000.0}}}",
                          berlin_moscow));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"loc\", \"geo_radius\": {\"center\": "
                           "{\"lat\": 52.511, \"lon\": 20.423637}, \"radius\": 2000.0}}}",
                           berlin_moscow));
    //  ~1 degree of latitude is ~111.2 km.
    ck_assert (s_matches ("{\"must\": {\"key\": \"loc\", \"geo_radius\": {\"center\": "
                          "{\"lat\": 0, \"lon\": 0}, \"radius\": 111300}}}",
                          "{\"loc\": {\"lat\": 1, \"lon\": 0}}"));
    ck_assert (!s_matches ("{\"must\": {\"key\": \"loc\", \"geo_radius\": {\"center\": "
                           "{\"lat\": 0, \"lon\": 0}, \"radius\": 111100}}}",
                           "{\"loc\": {\"lat\": 1, \"lon\": 0}}"));
    const char *box = "{\"must\": {\"key\": \"loc\", \"geo_bounding_box\": {"
                      "\"bottom_right\": {\"lon\": 13.455868, \"lat\": 52.495862},"
                      "\"top_left\": {\"lon\": 13.403683, \"lat\": 52.520711}}}}";
    ck_assert (s_matches (box, "{\"loc\": {\"lon\": 13.43, \"lat\": 52.51}}"));
    ck_assert (!s_matches (box, "{\"loc\": {\"lon\": 13.50, \"lat\": 52.51}}"));
    ck_assert (!s_matches (box, "{\"loc\": {\"lon\": 13.43}}"));
    ck_assert (!s_matches (box, "{\"loc\": \"13.43,52.51\"}"));
    const char *dateline = "{\"must\": {\"key\": \"loc\", \"geo_bounding_box\": {"
                           "\"top_left\": {\"lon\": 170, \"lat\": 10},"
                           "\"bottom_right\": {\"lon\": -170, \"lat\": -10}}}}";
    ck_assert (s_matches (dateline, "{\"loc\": {\"lon\": 179, \"lat\": 0}}"));
    ck_assert (s_matches (dateline, "{\"loc\": {\"lon\": -175, \"lat\": 0}}"));
    ck_assert (!s_matches (dateline, "{\"loc\": {\"lon\": 0, \"lat\": 0}}"));
    const char *poly =
        "{\"must\": {\"key\": \"loc\", \"geo_polygon\": {"
        "\"exterior\": {\"points\": [{\"lon\": 0, \"lat\": 0}, {\"lon\": 10, \"lat\": 0},"
        "{\"lon\": 10, \"lat\": 10}, {\"lon\": 0, \"lat\": 10}, {\"lon\": 0, \"lat\": 0}]},"
        "\"interiors\": [{\"points\": [{\"lon\": 4, \"lat\": 4}, {\"lon\": 6, \"lat\": 4},"
        "{\"lon\": 6, \"lat\": 6}, {\"lon\": 4, \"lat\": 6}, {\"lon\": 4, \"lat\": 4}]}]}}}";
    ck_assert (s_matches (poly, "{\"loc\": {\"lon\": 2, \"lat\": 2}}"));
    ck_assert (!s_matches (poly, "{\"loc\": {\"lon\": 5, \"lat\": 5}}"));
    ck_assert (!s_matches (poly, "{\"loc\": {\"lon\": 11, \"lat\": 5}}"));
    ck_assert (!s_matches (poly, "{\"loc\": {\"lon\": 10, \"lat\": 5}}"));
}
END_TEST

//  --- bad input -------------------------------------------------------------

START_TEST (test_bad_filters_are_rejected_with_a_location)
{
    ck_assert_str_eq (s_rejects ("{\"must\": [{\"key\": \"a\", \"match\": {\"value\": 1}}, "
                                 "{\"foo\": 1}]}"),
                      "filter.must[1]: unknown condition (unexpected field \"foo\")");
    ck_assert_str_eq (s_rejects ("{\"muts\": []}"),
                      "filter: unknown field \"muts\" (expected must, should, must_not, "
                      "min_should)");
    ck_assert (strstr (s_rejects ("[]"), "filter: a filter must be an object"));
    ck_assert (strstr (s_rejects ("{\"must\": 5}"), "filter.must: must be a condition"));
    ck_assert (strstr (s_rejects ("{\"must\": [5]}"), "filter.must[0]: a condition must be an object"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"match\": {\"value\": 1.5}}}"),
                       "filter.must.match.value: must be a string, an integer or a boolean"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"match\": {\"value\": null}}}"),
                       "match.value"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"match\": {\"valeu\": 1}}}"),
                       "filter.must.match: expected one of"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"match\": {\"any\": [1, \"x\"]}}}"),
                       "filter.must.match.any[1]"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"match\": {\"any\": \"x\"}}}"),
                       "match.any: must be an array"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": 5, \"match\": {\"value\": 1}}}"),
                       "filter.must.key: must be a string"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a..b\", \"match\": {\"value\": 1}}}"),
                       "invalid payload key"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\"}}"),
                       "at least one field condition"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"range\": {\"gt\": 1, "
                                  "\"lt\": \"2020-01-01T00:00:00Z\"}}}"),
                       "all numbers or all datetime"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"range\": {\"gt\": \"yesterday\"}}}"),
                       "filter.must.range.gt: 'yesterday' does not match"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"range\": {\"gt\": \"2020-02-30\"}}}"),
                       "range.gt"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"range\": {\"gt\": true}}}"),
                       "range.gt"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"values_count\": {\"gt\": -1}}}"),
                       "values_count.gt: must be a non-negative integer"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"a\", \"is_empty\": \"yes\"}}"),
                       "is_empty: must be a boolean"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"is_empty\": {\"field\": \"a\"}}}"),
                       "filter.must.is_empty.key: must be a string"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"has_id\": [1, -2]}}"),
                       "filter.must.has_id[1]"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"has_id\": [\"not-a-uuid\"]}}"), "has_id[0]"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"has_id\": 1}}"), "has_id: must be an array"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"has_vector\": 1}}"), "has_vector"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"slice\": {\"total\": 2, \"index\": 2}}}"),
                       "Slice index must be less than"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"slice\": {\"total\": 0, \"index\": 0}}}"),
                       "slice"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"nested\": {\"key\": \"a\"}}}"),
                       "filter.must.nested.filter: must be a filter object"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"nested\": {\"key\": \"a\", \"filter\": "
                                  "{\"must\": {\"bogus\": 1}}}}}"),
                       "filter.must.nested.filter.must: unknown condition"));
    ck_assert (strstr (s_rejects ("{\"min_should\": {\"conditions\": [], \"min_count\": 0}}"),
                       "min_count must be greater than 0"));
    ck_assert (strstr (s_rejects ("{\"min_should\": {\"min_count\": 1}}"),
                       "filter.min_should.conditions"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"l\", \"geo_radius\": {\"center\": "
                                  "{\"lat\": 91, \"lon\": 0}, \"radius\": 1}}}"),
                       "within [-90;90]"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"l\", \"geo_polygon\": {\"exterior\": "
                                  "{\"points\": [{\"lat\": 0, \"lon\": 0}, {\"lat\": 1, \"lon\": 0},"
                                  "{\"lat\": 0, \"lon\": 0}]}}}}"),
                       "at least 4"));
    ck_assert (strstr (s_rejects ("{\"must\": {\"key\": \"l\", \"geo_polygon\": {\"exterior\": "
                                  "{\"points\": [{\"lat\": 0, \"lon\": 0}, {\"lat\": 1, \"lon\": 0},"
                                  "{\"lat\": 1, \"lon\": 1}, {\"lat\": 0, \"lon\": 1}]}}}}"),
                       "first and the last points"));
    ck_assert (strstr (s_rejects ("{\"should\": [{\"must\": [{\"must_not\": {\"key\": \"x\"}}]}]}"),
                       "filter.should[0].must[0].must_not: at least one"));
}
END_TEST

START_TEST (test_deep_nesting_is_refused_not_recursed)
{
    char f [8192] = "";
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t) snprintf (f + n, sizeof f - n, "{\"must\": ");
    n += (size_t) snprintf (f + n, sizeof f - n, "{}");
    for (int i = 0; i < 200; i++)
        n += (size_t) snprintf (f + n, sizeof f - n, "}");
    ck_assert (strstr (s_rejects (f), "nested too deeply"));
}
END_TEST

START_TEST (test_error_buffer_may_be_small_or_absent)
{
    json_t *fj = s_json ("{\"must\": {\"key\": \"a\", \"match\": {\"valeu\": 1}}}");
    filter_t *filter;
    char tiny [8];
    ck_assert_int_eq (filter_parse (fj, &filter, tiny, sizeof tiny), -SH_EINVAL);
    ck_assert_uint_eq (strlen (tiny), 7);
    ck_assert_int_eq (filter_parse (fj, &filter, NULL, 0), -SH_EINVAL);
    json_decref (fj);
}
END_TEST

Suite *
filter_suite (void)
{
    Suite *s = suite_create ("filter");
    TCase *tc = tcase_create ("clauses");
    tcase_add_test (tc, test_null_filter_is_no_filter_and_matches_everything);
    tcase_add_test (tc, test_must_requires_every_condition);
    tcase_add_test (tc, test_should_requires_one_when_not_empty);
    tcase_add_test (tc, test_must_not_rejects_any_match);
    tcase_add_test (tc, test_clauses_combine_and_filters_nest);
    tcase_add_test (tc, test_min_should_counts_matching_conditions);
    suite_add_tcase (s, tc);
    tc = tcase_create ("match");
    tcase_add_test (tc, test_match_value_compares_strings_integers_and_booleans);
    tcase_add_test (tc, test_match_any_is_membership);
    tcase_add_test (tc, test_match_except_is_not_any_on_present_values);
    tcase_add_test (tc, test_match_text_phrase_text_any_and_prefix);
    suite_add_tcase (s, tc);
    tc = tcase_create ("range");
    tcase_add_test (tc, test_range_on_integer_and_float_payloads);
    tcase_add_test (tc, test_datetime_range_compares_instants);
    suite_add_tcase (s, tc);
    tc = tcase_create ("count_empty_null");
    tcase_add_test (tc, test_values_count_counts_values_at_the_key);
    tcase_add_test (tc, test_is_empty_matches_missing_null_and_empty_array);
    tcase_add_test (tc, test_is_null_matches_null_but_not_missing_or_empty);
    suite_add_tcase (s, tc);
    tc = tcase_create ("ids");
    tcase_add_test (tc, test_has_id_matches_listed_ids);
    tcase_add_test (tc, test_has_vector_asks_the_caller);
    tcase_add_test (tc, test_slice_uses_qdrants_siphash_contract);
    suite_add_tcase (s, tc);
    tc = tcase_create ("paths");
    tcase_add_test (tc, test_nested_requires_one_element_to_match_alone);
    tcase_add_test (tc, test_paths_reach_into_objects_and_arrays);
    tcase_add_test (tc, test_path_visit_flattens_arrays);
    tcase_add_test (tc, test_path_set_merges_at_key_as_qdrant);
    tcase_add_test (tc, test_path_remove_deletes_nested_keys);
    suite_add_tcase (s, tc);
    tc = tcase_create ("geo");
    tcase_add_test (tc, test_geo_radius_bounding_box_and_polygon);
    suite_add_tcase (s, tc);
    tc = tcase_create ("bad_input");
    tcase_add_test (tc, test_bad_filters_are_rejected_with_a_location);
    tcase_add_test (tc, test_deep_nesting_is_refused_not_recursed);
    tcase_add_test (tc, test_error_buffer_may_be_small_or_absent);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (filter_suite)
