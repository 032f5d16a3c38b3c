/*  test_pindex: payload indexes of every type (match value / any / except,
    ranges, datetimes, UUID normalization, is_empty / is_null /
    values_count) through adds, removes and updates; the planner's bounds
    and candidate bitmaps checked against filter_match over random payloads
    and random filters; schemas, payload_schema and a 200k-point load.
*/
#include "actors/shard/pindex.h"
#include "common/err.h"
#include "test/unit/check_main.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

static json_t *
s_json (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &error);
    ck_assert_msg (json, "bad test JSON: %s: %s", text, error.text);
    return json;
}

static filter_t *
s_filter (const char *text)
{
    json_t *json = s_json (text);
    filter_t *filter = NULL;
    char err [256];
    int rc = filter_parse (json, &filter, err, sizeof err);
    ck_assert_msg (rc == 0, "filter %s rejected: %s", text, err);
    json_decref (json);
    return filter;
}

//  A filter that lives until the next call (NULL frees the last).
static const filter_t *
s_filter_tmp (const char *text)
{
    static filter_t *last;
    filter_destroy (&last);
    if (text)
        last = s_filter (text);
    return last;
}

//  A little segment: payloads per slot, and the index kept beside them.
#define S_CAP 4096
typedef struct {
    pindex_t *index;
    json_t *payloads [S_CAP];
    bool live [S_CAP];
} fix_t;

static fix_t *
s_fix_new (void)
{
    fix_t *fix = calloc (1, sizeof (fix_t));
    ck_assert_ptr_nonnull (fix);
    fix->index = pindex_new ();
    ck_assert_ptr_nonnull (fix->index);
    return fix;
}

static void
s_fix_destroy (fix_t **fix_p)
{
    fix_t *fix = *fix_p;
    for (size_t i = 0; i < S_CAP; i++)
        json_decref (fix->payloads [i]);
    pindex_destroy (&fix->index);
    ck_assert_ptr_null (fix->index);
    free (fix);
    *fix_p = NULL;
}

static pointid_t
s_id (uint32_t slot)
{
    pointid_t id = { .is_uuid = false, .num = 100 + slot };
    return id;
}

static bool
s_slot_of (const pointid_t *id, uint32_t *slot, void *arg)
{
    fix_t *fix = arg;
    if (id->is_uuid || id->num < 100 || id->num - 100 >= S_CAP || !fix->live [id->num - 100])
        return false;
    *slot = (uint32_t) (id->num - 100);
    return true;
}

static const json_t *
s_payload_of (uint32_t slot, void *arg)
{
    fix_t *fix = arg;
    return fix->payloads [slot];
}

//  Upsert: a new point, or an update (remove with the old payload first).
static void
s_put (fix_t *fix, uint32_t slot, json_t *payload)
{
    if (fix->live [slot]) {
        ck_assert_int_eq (pindex_remove_point (fix->index, slot, fix->payloads [slot]), 0);
        json_decref (fix->payloads [slot]);
    }
    fix->payloads [slot] = payload;
    fix->live [slot] = true;
    ck_assert_int_eq (pindex_add_point (fix->index, slot, payload), 0);
}

static void
s_put_text (fix_t *fix, uint32_t slot, const char *payload)
{
    s_put (fix, slot, payload ? s_json (payload) : NULL);
}

static void
s_del (fix_t *fix, uint32_t slot)
{
    ck_assert (fix->live [slot]);
    ck_assert_int_eq (pindex_remove_point (fix->index, slot, fix->payloads [slot]), 0);
    json_decref (fix->payloads [slot]);
    fix->payloads [slot] = NULL;
    fix->live [slot] = false;
}

static void
s_index (fix_t *fix, const char *path, const char *schema)
{
    json_t *json = s_json (schema);
    char err [256];
    int rc = pindex_create_field (fix->index, path, json, s_payload_of, fix, err, sizeof err);
    ck_assert_msg (rc == 0, "index %s %s: %s", path, schema, err);
    json_decref (json);
}

static roaring_bitmap_t *
s_brute (fix_t *fix, const filter_t *filter)
{
    roaring_bitmap_t *bm = roaring_bitmap_create ();
    for (uint32_t slot = 0; slot < S_CAP; slot++)
        if (fix->live [slot]) {
            pointid_t id = s_id (slot);
            if (filter_match (filter, &id, fix->payloads [slot]))
                roaring_bitmap_add (bm, slot);
        }
    return bm;
}

static char *
s_slots_text (const roaring_bitmap_t *bm)
{
    static char text [4][512];
    static int which;
    char *out = text [which++ % 4];
    size_t len = 0;
    out [0] = 0;
    roaring_uint32_iterator_t *it = roaring_create_iterator (bm);
    while (it->has_value && len < 480) {
        len += (size_t) snprintf (out + len, 512 - len, "%s%u", len ? "," : "",
                                  it->current_value);
        roaring_advance_uint32_iterator (it);
    }
    roaring_free_uint32_iterator (it);
    return out;
}

//  Checks select and estimate of filter against brute force; returns
//  whether select was exact.
static bool
s_check (fix_t *fix, const filter_t *filter, const char *what)
{
    roaring_bitmap_t *truth = s_brute (fix, filter);
    roaring_bitmap_t *got = NULL;
    bool exact = false;
    pindex_select (fix->index, filter, s_slot_of, fix, &got, &exact);
    ck_assert_ptr_nonnull (got);
    if (exact)
        ck_assert_msg (roaring_bitmap_equals (got, truth),
                       "%s: exact select {%s} != brute force {%s}", what,
                       s_slots_text (got), s_slots_text (truth));
    else
        ck_assert_msg (roaring_bitmap_is_subset (truth, got),
                       "%s: select {%s} misses matches of {%s}", what,
                       s_slots_text (got), s_slots_text (truth));
    pindex_card_t card;
    pindex_estimate (fix->index, filter, s_slot_of, fix, &card);
    size_t count = (size_t) roaring_bitmap_get_cardinality (truth);
    ck_assert_msg (card.min <= count && count <= card.max,
                   "%s: estimate %zu..%zu misses the count %zu", what, card.min, card.max,
                   count);
    ck_assert (card.min <= card.exp && card.exp <= card.max);
    roaring_bitmap_free (got);
    roaring_bitmap_free (truth);
    return exact;
}

//  Select of filter text: exactly these slots (comma list), decided by the
//  index alone (want_exact) or after checking.
static void
s_expect (fix_t *fix, const char *filter_text, const char *slots, bool want_exact)
{
    filter_t *filter = s_filter (filter_text);
    bool exact = s_check (fix, filter, filter_text);
    roaring_bitmap_t *truth = s_brute (fix, filter);
    ck_assert_msg (strcmp (s_slots_text (truth), slots) == 0, "%s: matches {%s}, want {%s}",
                   filter_text, s_slots_text (truth), slots);
    ck_assert_msg (exact == want_exact, "%s: exact %d, want %d", filter_text, exact,
                   want_exact);
    roaring_bitmap_free (truth);
    filter_destroy (&filter);
}

//  --------------------------------------------------------------------------

START_TEST (test_keyword_match_any_except_through_updates)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "color", "\"keyword\"");
    s_put_text (fix, 0, "{\"color\": \"red\"}");
    s_put_text (fix, 1, "{\"color\": [\"red\", \"blue\"]}");
    s_put_text (fix, 2, "{\"color\": \"blue\"}");
    s_put_text (fix, 3, "{\"color\": 7}");
    s_put_text (fix, 4, "{\"other\": 1}");
    s_put_text (fix, 5, NULL);
    s_put_text (fix, 6, "{\"color\": null}");
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"value\": \"red\"}}}", "0,1",
              true);
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"any\": [\"blue\", \"x\"]}}}",
              "1,2", true);
    //  except: a value not listed (1 has blue), or of another type (3).
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"except\": [\"red\"]}}}",
              "1,2,3", true);
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"except\": [\"red\", "
              "\"blue\"]}}}", "3", true);
    //  An integer asked of a keyword index: only other values can match.
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"value\": 7}}}", "3", false);
    s_expect (fix, "{\"must_not\": {\"key\": \"color\", \"match\": {\"value\": \"red\"}}}",
              "2,3,4,5,6", true);
    //  Update 0 to blue, delete 1, and the answers follow.
    s_put_text (fix, 0, "{\"color\": \"blue\"}");
    s_del (fix, 1);
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"value\": \"red\"}}}", "",
              true);
    s_expect (fix, "{\"must\": {\"key\": \"color\", \"match\": {\"value\": \"blue\"}}}", "0,2",
              true);
    ck_assert_uint_eq (pindex_field_points (fix->index, "color"), 2);
    ck_assert_uint_eq (pindex_size (fix->index), 6);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_integer_lookup_and_range_with_int_and_float_bounds)
{
    const char *schemas [] = { "\"integer\"", "{\"type\": \"integer\", \"lookup\": false}",
                               "{\"type\": \"integer\", \"range\": false}" };
    for (size_t s = 0; s < 3; s++) {
        fix_t *fix = s_fix_new ();
        s_put_text (fix, 0, "{\"n\": 1}");
        s_put_text (fix, 1, "{\"n\": [5, 10]}");
        //  Created after some points: they are indexed too.
        s_index (fix, "n", schemas [s]);
        s_put_text (fix, 2, "{\"n\": -3}");
        s_put_text (fix, 3, "{\"n\": 2.5}");
        s_put_text (fix, 4, "{\"n\": \"5\"}");
        s_put_text (fix, 5, "{\"n\": 9007199254740993}");
        bool lookup = s != 1, range = s != 2;
        s_expect (fix, "{\"must\": {\"key\": \"n\", \"match\": {\"value\": 5}}}", "1", true);
        s_expect (fix, "{\"must\": {\"key\": \"n\", \"match\": {\"any\": [1, -3, 4]}}}", "0,2",
                  true);
        s_expect (fix, "{\"must\": {\"key\": \"n\", \"match\": {\"except\": [5, 1]}}}",
                  "1,2,3,4,5", true);
        //  2.5 is a float: an integer index does not hold it.
        s_expect (fix, "{\"must\": {\"key\": \"n\", \"range\": {\"gte\": 1, \"lt\": 6}}}",
                  "0,1,3", false);
        s_expect (fix, "{\"must\": {\"key\": \"n\", \"range\": {\"gt\": 9.5}}}", "1,5", false);
        (void) lookup;
        if (range) {
            //  Without float payloads a range is decided by the index.
            s_del (fix, 3);
            s_expect (fix, "{\"must\": {\"key\": \"n\", \"range\": {\"gte\": 1, \"lt\": 6}}}",
                      "0,1", true);
            s_expect (fix, "{\"must\": {\"key\": \"n\", \"range\": {\"gte\": "
                      "9007199254740992}}}", "5", true);
            s_put_text (fix, 1, "{\"n\": 6}");
            s_expect (fix, "{\"must\": {\"key\": \"n\", \"range\": {\"lte\": 6}}}", "0,1,2",
                      true);
        }
        s_fix_destroy (&fix);
    }
}
END_TEST

START_TEST (test_float_range_and_int_match_bound)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "f", "{\"type\": \"float\"}");
    s_put_text (fix, 0, "{\"f\": 1.5}");
    s_put_text (fix, 1, "{\"f\": 3}");
    s_put_text (fix, 2, "{\"f\": 3.0}");
    s_put_text (fix, 3, "{\"f\": -0.0}");
    s_put_text (fix, 4, "{\"f\": [\"x\", 10.25]}");
    s_put_text (fix, 5, "{\"f\": true}");
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"range\": {\"gt\": 1.5, \"lte\": 3}}}", "1,2",
              true);
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"range\": {\"gte\": 0}}}", "0,1,2,3,4", true);
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"range\": {\"lt\": 0}}}", "", true);
    //  3 and 3.0 share a key; only the integer matches an integer.
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"match\": {\"value\": 3}}}", "1", false);
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"match\": {\"value\": \"x\"}}}", "4", false);
    s_put_text (fix, 0, "{\"f\": 2.75}");
    s_expect (fix, "{\"must\": {\"key\": \"f\", \"range\": {\"gt\": 1.5, \"lte\": 3}}}",
              "0,1,2", true);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_bool_match_and_except)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "b", "\"bool\"");
    s_put_text (fix, 0, "{\"b\": true}");
    s_put_text (fix, 1, "{\"b\": false}");
    s_put_text (fix, 2, "{\"b\": [true, false]}");
    s_put_text (fix, 3, "{\"b\": null}");
    s_put_text (fix, 4, "{\"b\": \"true\"}");
    s_expect (fix, "{\"must\": {\"key\": \"b\", \"match\": {\"value\": true}}}", "0,2", true);
    s_expect (fix, "{\"must\": {\"key\": \"b\", \"match\": {\"value\": false}}}", "1,2", true);
    //  Booleans are never of an except list's type: every one matches.
    s_expect (fix, "{\"must\": {\"key\": \"b\", \"match\": {\"except\": [1]}}}", "0,1,2,4",
              true);
    s_expect (fix, "{\"must\": {\"key\": \"b\", \"match\": {\"except\": [\"true\"]}}}", "0,1,2",
              false);
    s_put_text (fix, 0, "{\"b\": false}");
    s_expect (fix, "{\"must\": {\"key\": \"b\", \"match\": {\"value\": true}}}", "2", true);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_uuid_values_are_normalized)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "u", "\"uuid\"");
    s_put_text (fix, 0, "{\"u\": \"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}");
    s_put_text (fix, 1, "{\"u\": \"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\"}");
    s_put_text (fix, 2, "{\"u\": \"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}\"}");
    s_put_text (fix, 3, "{\"u\": \"urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}");
    s_put_text (fix, 4, "{\"u\": \"a0eebc999c0b4ef8bb6d6bb9bd380a11\"}");
    s_put_text (fix, 5, "{\"u\": \"b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}");
    s_put_text (fix, 6, "{\"u\": \"not-a-uuid\"}");
    //  Five spellings, one UUID: one map entry holds all five slots.
    json_t *schema = pindex_payload_schema (fix->index);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (schema, "u"),
                                                           "points")), 6);
    json_decref (schema);
    //  Filters compare the strings, so the canonical query matches only the
    //  canonical value (decided exactly: the others are marked).
    filter_t *filter = s_filter ("{\"must\": {\"key\": \"u\", \"match\": {\"value\": "
                                 "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}}}");
    roaring_bitmap_t *got;
    bool exact;
    pindex_select (fix->index, filter, NULL, NULL, &got, &exact);
    ck_assert_str_eq (s_slots_text (got), "0,1,2,3,4");
    ck_assert (!exact);
    ck_assert (!s_check (fix, filter, "canonical uuid"));
    roaring_bitmap_free (got);
    filter_destroy (&filter);
    //  With only canonical spellings left the index decides alone.
    for (uint32_t slot = 1; slot <= 4; slot++)
        s_del (fix, slot);
    s_expect (fix, "{\"must\": {\"key\": \"u\", \"match\": {\"value\": "
              "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}}}", "0", true);
    //  Two spellings of one UUID in one point: still not decided alone.
    s_put_text (fix, 7, "{\"u\": [\"b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\", "
                "\"B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\"]}");
    s_put_text (fix, 8, "{\"u\": [\"B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\", "
                "\"b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]}");
    s_expect (fix, "{\"must\": {\"key\": \"u\", \"match\": {\"value\": "
              "\"B0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\"}}}", "7,8", false);
    s_del (fix, 7);
    s_del (fix, 8);
    s_expect (fix, "{\"must\": {\"key\": \"u\", \"match\": {\"value\": \"not-a-uuid\"}}}", "6",
              false);
    s_expect (fix, "{\"must\": {\"key\": \"u\", \"match\": {\"value\": "
              "\"c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"}}}", "", true);
    s_expect (fix, "{\"must\": {\"key\": \"u\", \"match\": {\"except\": ["
              "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]}}}", "5,6", false);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_datetime_ranges_to_the_nanosecond)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "d", "\"datetime\"");
    s_put_text (fix, 0, "{\"d\": \"2024-01-01T00:00:00Z\"}");
    s_put_text (fix, 1, "{\"d\": \"2024-01-01T02:00:00+01:00\"}");
    s_put_text (fix, 2, "{\"d\": \"2024-01-02\"}");
    s_put_text (fix, 3, "{\"d\": \"2023-12-31 23:59\"}");
    s_put_text (fix, 4, "{\"d\": \"yesterday\"}");
    s_put_text (fix, 5, "{\"d\": \"1969-12-31T23:59:59.5Z\"}");
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gte\": "
              "\"2024-01-01T00:00:00Z\"}}}", "0,1,2", true);
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gt\": "
              "\"2024-01-01T00:00:00Z\", \"lt\": \"2024-01-02T00:00:00Z\"}}}", "1", true);
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"lt\": "
              "\"1970-01-01T00:00:00Z\"}}}", "5", true);
    //  Bounds finer than a microsecond, values still whole microseconds.
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gt\": "
              "\"2023-12-31T23:59:59.9999999Z\", \"lte\": \"2024-01-01T00:00:00.0000001Z\"}}}",
              "0", true);
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"lt\": "
              "\"2024-01-01T00:00:00.0000001Z\", \"gte\": \"2024-01-01T00:00:00.0000001Z\"}}}",
              "", true);
    //  A value finer than a microsecond: answers near it are checked.
    s_put_text (fix, 6, "{\"d\": \"2024-01-01T00:00:00.0000005Z\"}");
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gt\": "
              "\"2024-01-01T00:00:00Z\", \"lt\": \"2024-01-01T00:00:01Z\"}}}", "6", false);
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gte\": "
              "\"2024-01-01T00:00:01Z\"}}}", "1,2", true);
    //  Both share a microsecond with the bound: 0 is decided, 6 checked.
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"lte\": "
              "\"2024-01-01T00:00:00.0000005Z\", \"gt\": \"2023-12-31T23:59:59Z\"}}}", "0,6",
              false);
    //  Two values in one microsecond, one of them finer (and the only finer
    //  ones): the finer one matches "after the whole microsecond".
    s_del (fix, 6);
    const char *twins [] = { "[\"2024-01-01T00:00:00Z\", \"2024-01-01T00:00:00.0000005Z\"]",
                             "[\"2024-01-01T00:00:00.0000005Z\", \"2024-01-01T00:00:00Z\"]" };
    for (int i = 0; i < 2; i++) {
        char text [128];
        snprintf (text, sizeof text, "{\"d\": %s}", twins [i]);
        s_put_text (fix, 7, text);
        s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gt\": "
                  "\"2024-01-01T00:00:00Z\", \"lt\": \"2024-01-01T00:00:01Z\"}}}", "7", false);
        s_del (fix, 7);
    }
    s_put_text (fix, 0, "{\"d\": \"2025-06-01T00:00:00Z\"}");
    s_expect (fix, "{\"must\": {\"key\": \"d\", \"range\": {\"gt\": "
              "\"2024-01-01T00:00:00Z\"}}}", "0,1,2", true);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_is_empty_is_null_values_count)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "a", "\"keyword\"");
    s_put_text (fix, 0, "{\"a\": \"x\"}");
    s_put_text (fix, 1, "{\"a\": []}");
    s_put_text (fix, 2, "{\"a\": null}");
    s_put_text (fix, 3, "{\"a\": [null]}");
    s_put_text (fix, 4, "{\"a\": [\"x\", \"y\", \"z\"]}");
    s_put_text (fix, 5, "{}");
    s_put_text (fix, 6, NULL);
    s_expect (fix, "{\"must\": {\"is_empty\": {\"key\": \"a\"}}}", "1,2,5,6", true);
    s_expect (fix, "{\"must\": {\"is_null\": {\"key\": \"a\"}}}", "2", true);
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"is_null\": true}}", "2,3", true);
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"is_null\": false}}", "0,1,4,5,6", true);
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"is_empty\": false}}", "0,3,4", true);
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"values_count\": {\"gte\": 2}}}", "4", true);
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"values_count\": {\"lt\": 1}}}", "1,2,5,6",
              true);
    s_expect (fix, "{\"must_not\": {\"is_empty\": {\"key\": \"a\"}}}", "0,3,4", true);
    s_put_text (fix, 4, "{\"a\": \"w\"}");
    s_expect (fix, "{\"must\": {\"key\": \"a\", \"values_count\": {\"gte\": 2}}}", "", true);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_nested_and_array_paths)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "diet[].food", "\"keyword\"");
    s_index (fix, "diet[].likes", "\"bool\"");
    s_put_text (fix, 0, "{\"diet\": [{\"food\": \"meat\", \"likes\": false}, "
                "{\"food\": \"leaves\", \"likes\": true}]}");
    s_put_text (fix, 1, "{\"diet\": [{\"food\": \"meat\", \"likes\": true}]}");
    s_put_text (fix, 2, "{\"diet\": [{\"food\": \"leaves\", \"likes\": false}]}");
    s_put_text (fix, 3, "{\"diet\": {\"food\": \"meat\"}}");
    //  The array path itself is decided by the index.
    s_expect (fix, "{\"must\": {\"key\": \"diet[].food\", \"match\": {\"value\": \"meat\"}}}",
              "0,1", true);
    //  nested: both on one element; the index bounds it, the check decides.
    s_expect (fix, "{\"must\": {\"nested\": {\"key\": \"diet\", \"filter\": {\"must\": ["
              "{\"key\": \"food\", \"match\": {\"value\": \"meat\"}}, "
              "{\"key\": \"likes\", \"match\": {\"value\": true}}]}}}}", "1", false);
    filter_t *filter = s_filter ("{\"must\": {\"nested\": {\"key\": \"diet\", \"filter\": "
                                 "{\"must\": [{\"key\": \"food\", \"match\": {\"value\": "
                                 "\"meat\"}}, {\"key\": \"likes\", \"match\": {\"value\": "
                                 "true}}]}}}}");
    roaring_bitmap_t *got;
    bool exact;
    pindex_select (fix->index, filter, NULL, NULL, &got, &exact);
    ck_assert_str_eq (s_slots_text (got), "0,1");
    roaring_bitmap_free (got);
    filter_destroy (&filter);
    //  The same key spelled with quotes is the same index.
    ck_assert_uint_eq (pindex_field_points (fix->index, "\"diet\"[].food"), 3);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_has_id_unindexed_keys_and_combinations)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "k", "\"keyword\"");
    for (uint32_t slot = 0; slot < 8; slot++) {
        char text [64];
        snprintf (text, sizeof text, "{\"k\": \"%s\", \"z\": %u}", slot % 2 ? "odd" : "even",
                  slot);
        s_put_text (fix, slot, text);
    }
    s_expect (fix, "{\"must\": {\"has_id\": [100, 103, 5000]}}", "0,3", true);
    s_expect (fix, "{\"must\": [{\"has_id\": [100, 103, 105]}, {\"key\": \"k\", \"match\": "
              "{\"value\": \"odd\"}}]}", "3,5", true);
    s_expect (fix, "{\"must\": {\"key\": \"z\", \"range\": {\"lt\": 3}}}", "0,1,2", false);
    //  An exact must narrows an unknown one: still a superset.
    s_expect (fix, "{\"must\": [{\"key\": \"k\", \"match\": {\"value\": \"odd\"}}, "
              "{\"key\": \"z\", \"range\": {\"lt\": 3}}]}", "1", false);
    //  An exact empty must decides the whole filter.
    s_expect (fix, "{\"must\": [{\"key\": \"k\", \"match\": {\"value\": \"none\"}}, "
              "{\"key\": \"z\", \"range\": {\"lt\": 3}}]}", "", true);
    s_expect (fix, "{\"should\": [{\"key\": \"k\", \"match\": {\"value\": \"odd\"}}, "
              "{\"has_id\": [100]}]}", "0,1,3,5,7", true);
    s_expect (fix, "{\"min_should\": {\"min_count\": 2, \"conditions\": [{\"key\": \"k\", "
              "\"match\": {\"value\": \"odd\"}}, {\"has_id\": [100, 101]}, {\"has_id\": "
              "[101, 103]}]}}", "1,3", true);
    s_expect (fix, "{\"must_not\": [{\"key\": \"k\", \"match\": {\"value\": \"odd\"}}, "
              "{\"has_id\": [100]}]}", "2,4,6", true);
    //  has_id without a lookup: not decided.
    filter_t *filter = s_filter ("{\"must\": {\"has_id\": [100]}}");
    roaring_bitmap_t *got;
    bool exact;
    pindex_select (fix->index, filter, NULL, NULL, &got, &exact);
    ck_assert (!exact);
    ck_assert_uint_eq (roaring_bitmap_get_cardinality (got), 8);
    roaring_bitmap_free (got);
    pindex_card_t card;
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 0);
    ck_assert_uint_eq (card.max, 8);
    filter_destroy (&filter);
    //  No filter: everything, exactly.
    pindex_select (fix->index, NULL, NULL, NULL, &got, &exact);
    ck_assert (exact);
    ck_assert_uint_eq (roaring_bitmap_get_cardinality (got), 8);
    roaring_bitmap_free (got);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_estimate_counts_from_indexes)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "k", "\"keyword\"");
    s_index (fix, "n", "\"integer\"");
    for (uint32_t slot = 0; slot < 1000; slot++) {
        char text [64];
        snprintf (text, sizeof text, "{\"k\": \"v%u\", \"n\": %u}", slot % 10, slot);
        s_put_text (fix, slot, text);
    }
    pindex_card_t card;
    filter_t *filter = s_filter ("{\"must\": {\"key\": \"k\", \"match\": "
                                 "{\"value\": \"v3\"}}}");
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 100);
    ck_assert_uint_eq (card.exp, 100);
    ck_assert_uint_eq (card.max, 100);
    filter_destroy (&filter);
    filter = s_filter ("{\"must\": {\"key\": \"n\", \"range\": "
                       "{\"gte\": 100, \"lt\": 300}}}");
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 200);
    ck_assert_uint_eq (card.max, 200);
    filter_destroy (&filter);
    //  Two conditions: the smaller bounds the max, the product is expected.
    filter = s_filter ("{\"must\": [{\"key\": \"k\", \"match\": {\"value\": \"v3\"}}, "
                       "{\"key\": \"n\", \"range\": {\"lt\": 500}}]}");
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 0);
    ck_assert_uint_eq (card.exp, 50);
    ck_assert_uint_eq (card.max, 100);
    filter_destroy (&filter);
    //  An unindexed key: anything, half expected.
    filter = s_filter ("{\"must\": {\"key\": \"q\", \"match\": {\"value\": 1}}}");
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 0);
    ck_assert_uint_eq (card.exp, 500);
    ck_assert_uint_eq (card.max, 1000);
    filter_destroy (&filter);
    filter = s_filter ("{\"must_not\": {\"key\": \"k\", \"match\": {\"value\": \"v3\"}}}");
    pindex_estimate (fix->index, filter, NULL, NULL, &card);
    ck_assert_uint_eq (card.min, 900);
    ck_assert_uint_eq (card.max, 900);
    filter_destroy (&filter);
    s_fix_destroy (&fix);
}
END_TEST

START_TEST (test_value_sets_grow_past_arrays_and_shrink)
{
    //  One value held by more points than an array keeps, then by few.
    fix_t *fix = s_fix_new ();
    s_index (fix, "k", "\"keyword\"");
    s_index (fix, "n", "\"integer\"");
    const char *filters [] = {
        "{\"must\": {\"key\": \"k\", \"match\": {\"value\": \"a\"}}}",
        "{\"must\": {\"key\": \"k\", \"match\": {\"except\": [\"a\"]}}}",
        "{\"must\": {\"key\": \"n\", \"match\": {\"any\": [1, 2]}}}",
        "{\"must\": {\"key\": \"n\", \"match\": {\"except\": [1]}}}",
        "{\"must\": {\"key\": \"n\", \"range\": {\"gt\": 1}}}"
    };
    for (uint32_t slot = 0; slot < 300; slot++) {
        char text [96];
        snprintf (text, sizeof text, "{\"k\": %s, \"n\": %s}",
                  slot % 3 ? "\"a\"" : "[\"a\", \"b\"]", slot % 2 ? "1" : "[1, 2]");
        s_put_text (fix, slot, text);
    }
    for (int step = 0; step < 4; step++) {
        for (size_t i = 0; i < sizeof filters / sizeof filters [0]; i++)
            ck_assert_msg (s_check (fix, s_filter_tmp (filters [i]), filters [i]),
                           "%s not decided at step %d", filters [i], step);
        //  Remove or rewrite most points holding "a".
        for (uint32_t slot = (uint32_t) step; slot < 300; slot += 2)
            if (fix->live [slot]) {
                if (slot % 4 == 0)
                    s_del (fix, slot);
                else
                    s_put_text (fix, slot, "{\"k\": \"b\", \"n\": 2}");
            }
    }
    s_filter_tmp (NULL);
    s_fix_destroy (&fix);
}
END_TEST

//  Readers share one index: select and estimate from several threads give
//  what one thread gets.
typedef struct {
    fix_t *fix;
    const filter_t *filter;
    uint64_t want;
    bool ok;
} s_reader_t;

static void *
s_reader (void *arg)
{
    s_reader_t *r = arg;
    r->ok = true;
    for (int i = 0; i < 200 && r->ok; i++) {
        roaring_bitmap_t *got;
        bool exact;
        pindex_select (r->fix->index, r->filter, s_slot_of, r->fix, &got, &exact);
        r->ok = exact && roaring_bitmap_get_cardinality (got) == r->want;
        roaring_bitmap_free (got);
        pindex_card_t card;
        pindex_estimate (r->fix->index, r->filter, s_slot_of, r->fix, &card);
        r->ok = r->ok && card.min <= r->want && r->want <= card.max;
    }
    return NULL;
}

START_TEST (test_concurrent_readers)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "n", "\"integer\"");
    s_index (fix, "d", "\"datetime\"");
    for (uint32_t slot = 0; slot < 3000; slot++) {
        char text [96];
        snprintf (text, sizeof text, "{\"n\": %u, \"d\": \"2024-01-01T00:%02u:00Z\"}",
                  slot % 100, slot % 60);
        s_put_text (fix, slot, text);
    }
    filter_t *filter = s_filter ("{\"must\": {\"key\": \"n\", \"range\": {\"lt\": 30}}, "
                                 "\"must_not\": {\"key\": \"d\", \"range\": {\"gte\": "
                                 "\"2024-01-01T00:30:00Z\"}}}");
    roaring_bitmap_t *truth = s_brute (fix, filter);
    s_reader_t readers [4];
    pthread_t threads [4];
    for (int i = 0; i < 4; i++) {
        readers [i] = (s_reader_t) { fix, filter, roaring_bitmap_get_cardinality (truth),
                                     false };
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_reader, &readers [i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_msg (readers [i].ok, "reader %d saw another answer", i);
    }
    roaring_bitmap_free (truth);
    filter_destroy (&filter);
    s_fix_destroy (&fix);
}
END_TEST

//  --------------------------------------------------------------------------
//  Random payloads and filters against filter_match

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t
s_rand (rng_t *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static size_t
s_pick (rng_t *r, size_t n)
{
    return (size_t) (s_rand (r) % n);
}

static const char *s_strs [] = {
    "red", "blue", "", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
    "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.0000005Z", "2024-01-01 01:00", "2024-01-02",
    "2023-12-31T23:59:59.999999999+00:00", "2024-01-01T00:00:00.000001Z", "soon"
};
static const json_int_t s_ints [] = { -2, 0, 1, 2, 3, 7, 9007199254740992LL,
                                      9007199254740993LL };
static const double s_reals [] = { 1.5, 3.0, -0.0, 2.0000001, 9007199254740992.0, -2.5 };
#define S_NELEM(a) (sizeof (a) / sizeof ((a) [0]))

//  Some rounds keep to strings an index decides alone (no time finer than a
//  microsecond, UUIDs only in canonical form), so those paths are checked
//  too.
static bool s_plain;

static const char *
s_rand_str (rng_t *r)
{
    for (;;) {
        const char *text = s_strs [s_pick (r, S_NELEM (s_strs))];
        bool fine = strstr (text, "0000005") || strstr (text, "999999999");
        bool spelled = strchr (text, 'A') || strchr (text, '{') || strlen (text) == 32;
        if (!s_plain || (!fine && !spelled))
            return text;
    }
}

static json_t *
s_rand_scalar (rng_t *r)
{
    switch (s_pick (r, 9)) {
        case 0:
        case 1:
        case 2:
            return json_string (s_rand_str (r));
        case 3:
        case 4:
            return json_integer (s_ints [s_pick (r, S_NELEM (s_ints))]);
        case 5:
            return json_real (s_reals [s_pick (r, S_NELEM (s_reals))]);
        case 6:
            return json_boolean (s_pick (r, 2));
        case 7:
            return json_null ();
        default:
            return s_pick (r, 2) ? json_pack ("{s:f, s:f}", "lon", 1.0, "lat", 1.0)
                                 : json_pack ("{s:i}", "a", 1);
    }
}

static json_t *
s_rand_value (rng_t *r)
{
    size_t kind = s_pick (r, 6);
    if (kind < 3)
        return s_rand_scalar (r);
    json_t *array = json_array ();
    size_t n = s_pick (r, 4);
    for (size_t i = 0; i < n; i++)
        json_array_append_new (array, kind == 5 && i == 0 ? json_pack ("[i]", 1)
                                                          : s_rand_scalar (r));
    return array;
}

static const char *s_keys [] = { "k", "n", "f", "b", "u", "d", "z" };

static json_t *
s_rand_payload (rng_t *r)
{
    if (s_pick (r, 10) == 0)
        return NULL;
    json_t *payload = json_object ();
    for (size_t i = 0; i < S_NELEM (s_keys); i++)
        if (s_pick (r, 4))
            json_object_set_new (payload, s_keys [i], s_rand_value (r));
    if (s_pick (r, 2)) {
        json_t *arr = json_array ();
        size_t n = s_pick (r, 4);
        for (size_t i = 0; i < n; i++) {
            json_t *elem = json_object ();
            if (s_pick (r, 4))
                json_object_set_new (elem, "x", s_rand_value (r));
            if (s_pick (r, 4))
                json_object_set_new (elem, "y", s_rand_value (r));
            json_array_append_new (arr, elem);
        }
        json_object_set_new (payload, "arr", arr);
    }
    return payload;
}

static json_t *
s_rand_bounds (rng_t *r, bool datetime)
{
    static const char *dates [] = {
        "2024-01-01T00:00:00Z", "2024-01-01T00:00:00.0000005Z", "2023-12-31T23:59:59Z",
        "2024-01-01T00:00:00.000001Z", "2024-01-01T01:00:00+00:00", "2024-01-02T00:00:00Z"
    };
    static const double numbers [] = { -2, 0, 1, 1.5, 2.5, 3, 7, 9007199254740992.0 };
    static const char *names [] = { "lt", "gt", "lte", "gte" };
    json_t *range = json_object ();
    size_t n = 1 + s_pick (r, 2);
    for (size_t i = 0; i < n; i++) {
        const char *name = names [s_pick (r, 4)];
        if (datetime)
            json_object_set_new (range, name,
                                 json_string (dates [s_pick (r, S_NELEM (dates))]));
        else
            json_object_set_new (range, name,
                                 json_real (numbers [s_pick (r, S_NELEM (numbers))]));
    }
    return range;
}

static json_t *
s_rand_list (rng_t *r)
{
    json_t *list = json_array ();
    bool ints = s_pick (r, 2);
    size_t n = s_pick (r, 4);
    for (size_t i = 0; i < n; i++)
        json_array_append_new (list, ints
                               ? json_integer (s_ints [s_pick (r, S_NELEM (s_ints))])
                               : json_string (s_strs [s_pick (r, S_NELEM (s_strs))]));
    return list;
}

static json_t *s_rand_filter (rng_t *r, int depth, bool nested);

static json_t *
s_rand_field (rng_t *r, const char *key)
{
    json_t *cond = json_pack ("{s:s}", "key", key);
    switch (s_pick (r, 12)) {
        case 0:
            json_object_set_new (cond, "match", json_pack ("{s:s}", "value",
                                 s_strs [s_pick (r, S_NELEM (s_strs))]));
            break;
        case 1:
            json_object_set_new (cond, "match", json_pack ("{s:I}", "value",
                                 s_ints [s_pick (r, S_NELEM (s_ints))]));
            break;
        case 2:
            json_object_set_new (cond, "match", json_pack ("{s:b}", "value", s_pick (r, 2)));
            break;
        case 3:
            json_object_set_new (cond, "match", json_pack ("{s:o}", "any", s_rand_list (r)));
            break;
        case 4:
            json_object_set_new (cond, "match", json_pack ("{s:o}", "except",
                                                           s_rand_list (r)));
            break;
        case 5:
            json_object_set_new (cond, "range", s_rand_bounds (r, false));
            break;
        case 6:
            json_object_set_new (cond, "range", s_rand_bounds (r, true));
            break;
        case 7: {
            json_t *count = json_object ();
            json_object_set_new (count, s_pick (r, 2) ? "gte" : "lt",
                                 json_integer ((json_int_t) s_pick (r, 3)));
            json_object_set_new (cond, "values_count", count);
            break;
        }
        case 8:
            json_object_set_new (cond, "is_empty", json_boolean (s_pick (r, 2)));
            break;
        case 9:
            json_object_set_new (cond, "is_null", json_boolean (s_pick (r, 2)));
            break;
        case 10:
            json_object_set_new (cond, "match", json_pack ("{s:s}", "text", "e"));
            json_object_set_new (cond, "range", s_rand_bounds (r, false));
            break;
        default:
            json_object_set_new (cond, "geo_radius",
                                 json_pack ("{s:{s:f,s:f}, s:f}", "center", "lon", 1.0,
                                            "lat", 1.0, "radius", 1000.0));
            break;
    }
    return cond;
}

static json_t *
s_rand_cond (rng_t *r, int depth, bool nested)
{
    const char *key = nested ? (s_pick (r, 2) ? "x" : "y")
                    : s_pick (r, 5) == 0 ? (s_pick (r, 2) ? "arr[].x" : "arr[].y")
                    : s_keys [s_pick (r, S_NELEM (s_keys))];
    switch (s_pick (r, 14)) {
        case 0:
            return json_pack ("{s:{s:s}}", "is_empty", "key", key);
        case 1:
            return json_pack ("{s:{s:s}}", "is_null", "key", key);
        case 2:
            return json_pack ("{s:[i,i,i]}", "has_id", 100 + (int) s_pick (r, 60),
                              100 + (int) s_pick (r, 60), 7);
        case 3:
            if (depth > 0)
                return json_pack ("{s:{s:s, s:o}}", "nested", "key", "arr", "filter",
                                  s_rand_filter (r, depth - 1, true));
            break;
        case 4:
            if (depth > 0)
                return s_rand_filter (r, depth - 1, nested);
            break;
        case 5:
            return json_pack ("{s:s}", "has_vector", "v");
        default:
            break;
    }
    return s_rand_field (r, key);
}

static json_t *
s_rand_filter (rng_t *r, int depth, bool nested)
{
    json_t *filter = json_object ();
    static const char *clauses [] = { "must", "should", "must_not" };
    for (size_t c = 0; c < 3; c++) {
        size_t n = s_pick (r, 3);
        if (!n)
            continue;
        json_t *list = json_array ();
        for (size_t i = 0; i < n; i++)
            json_array_append_new (list, s_rand_cond (r, depth, nested));
        json_object_set_new (filter, clauses [c], list);
    }
    if (s_pick (r, 5) == 0) {
        json_t *list = json_array ();
        size_t n = 1 + s_pick (r, 3);
        for (size_t i = 0; i < n; i++)
            json_array_append_new (list, s_rand_cond (r, depth, nested));
        json_object_set_new (filter, "min_should",
                             json_pack ("{s:o, s:i}", "conditions", list, "min_count",
                                        1 + (int) s_pick (r, n)));
    }
    return filter;
}

START_TEST (test_random_filters_agree_with_filter_match)
{
    static const char *types [] = { "\"keyword\"", "\"integer\"", "\"float\"", "\"bool\"",
                                    "\"uuid\"", "\"datetime\"", "\"geo\"", "\"text\"",
                                    "{\"type\": \"integer\", \"lookup\": false}",
                                    "{\"type\": \"integer\", \"range\": false}" };
    size_t n_exact = 0, n_checks = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        rng_t r = { seed * 0x9e3779b97f4a7c15ULL };
        s_plain = seed % 3 == 0;
        fix_t *fix = s_fix_new ();
        //  Every key gets a random type, so mismatched values are common.
        const char *paths [] = { "k", "n", "f", "b", "u", "d", "arr[].x", "arr[].y" };
        //  The last seeds hold values on more points than an array keeps.
        size_t n_points = seed > 50 ? 300 + s_pick (&r, 200) : 40 + s_pick (&r, 40);
        for (uint32_t slot = 0; slot < n_points / 2; slot++)
            s_put (fix, slot, s_rand_payload (&r));
        for (size_t i = 0; i < S_NELEM (paths); i++)
            if (s_pick (&r, 5))
                s_index (fix, paths [i], types [s_pick (&r, S_NELEM (types))]);
        for (uint32_t slot = (uint32_t) n_points / 2; slot < n_points; slot++)
            s_put (fix, slot, s_rand_payload (&r));
        for (int round = 0; round < 4; round++) {
            for (int q = 0; q < 40; q++) {
                json_t *fj = s_rand_filter (&r, 2, false);
                char *text = json_dumps (fj, JSON_COMPACT);
                filter_t *filter = NULL;
                char err [256];
                int rc = filter_parse (fj, &filter, err, sizeof err);
                ck_assert_msg (rc == 0, "seed %" PRIu64 ": %s: %s", seed, text, err);
                char what [2048];
                snprintf (what, sizeof what, "seed %" PRIu64 " round %d: %.1900s", seed,
                          round, text);
                n_exact += s_check (fix, filter, what);
                n_checks++;
                free (text);
                filter_destroy (&filter);
                json_decref (fj);
            }
            //  Updates, deletes and new points between rounds.
            for (int i = 0; i < 20; i++) {
                uint32_t slot = (uint32_t) s_pick (&r, n_points + 10);
                if (fix->live [slot] && s_pick (&r, 3) == 0)
                    s_del (fix, slot);
                else
                    s_put (fix, slot, s_rand_payload (&r));
            }
        }
        s_fix_destroy (&fix);
    }
    //  Random filters mix in unindexed keys and undecidable conditions, yet
    //  the index must decide a good share of them alone.
    ck_assert_msg (n_exact * 4 > n_checks, "only %zu of %zu decided exactly", n_exact,
                   n_checks);
}
END_TEST

START_TEST (test_schemas_and_payload_schema)
{
    pindex_schema_t schema;
    char err [256];
    json_t *json = s_json ("{\"type\": \"integer\", \"lookup\": false, \"range\": true}");
    ck_assert_int_eq (pindex_schema_parse (json, &schema, err, sizeof err), 0);
    ck_assert_int_eq (schema.type, PINDEX_INTEGER);
    ck_assert (!schema.lookup && schema.range);
    json_decref (json);
    const char *bad [] = { "\"vector\"", "{\"lookup\": true}", "{\"type\": 3}",
                           "{\"type\": \"integer\", \"lookup\": false, \"range\": false}",
                           "{\"type\": \"keyword\", \"is_tenant\": \"yes\"}", "[]", "null" };
    for (size_t i = 0; i < S_NELEM (bad); i++) {
        json = s_json (bad [i]);
        ck_assert_int_eq (pindex_schema_parse (json, &schema, err, sizeof err), -SH_EINVAL);
        ck_assert_msg (err [0], "no message for %s", bad [i]);
        json_decref (json);
    }
    fix_t *fix = s_fix_new ();
    json = s_json ("\"keyword\"");
    ck_assert_int_eq (pindex_create_field (fix->index, "a..b", json, NULL, NULL, err,
                                           sizeof err), -SH_EINVAL);
    json_decref (json);
    s_put_text (fix, 0, "{\"city\": \"Berlin\", \"n\": 1}");
    s_put_text (fix, 1, "{\"city\": [\"Paris\", \"Rome\"], \"n\": 2.5}");
    s_index (fix, "city", "\"keyword\"");
    s_index (fix, "n", "{\"type\": \"integer\", \"range\": false}");
    json_t *ps = pindex_payload_schema (fix->index);
    json_t *want = s_json ("{\"city\": {\"data_type\": \"keyword\", \"points\": 2}, "
                           "\"n\": {\"data_type\": \"integer\", \"points\": 1, \"params\": "
                           "{\"type\": \"integer\", \"range\": false}}}");
    ck_assert_msg (json_equal (ps, want), "payload_schema %s", json_dumps (ps, JSON_COMPACT));
    json_decref (ps);
    json_decref (want);
    //  Same schema again: nothing changes; another type: rebuilt.
    s_index (fix, "city", "\"keyword\"");
    ck_assert_uint_eq (pindex_field_count (fix->index), 2);
    s_index (fix, "n", "\"float\"");
    ck_assert_uint_eq (pindex_field_points (fix->index, "n"), 2);
    ck_assert_int_eq (pindex_field_schema (fix->index, "n", &schema), 0);
    ck_assert_int_eq (schema.type, PINDEX_FLOAT);
    ck_assert_str_eq (pindex_field_name (fix->index, 1), "n");
    ck_assert_int_eq (pindex_drop_field (fix->index, "city"), 0);
    ck_assert_int_eq (pindex_drop_field (fix->index, "city"), -SH_ENOTFOUND);
    ck_assert_uint_eq (pindex_field_count (fix->index), 1);
    ck_assert_int_eq (pindex_field_schema (fix->index, "city", &schema), -SH_ENOTFOUND);
    //  Point bookkeeping errors are answered, not fatal.
    ck_assert_int_eq (pindex_add_point (fix->index, 0, NULL), -SH_EEXIST);
    ck_assert_int_eq (pindex_remove_point (fix->index, 7, NULL), -SH_ENOTFOUND);
    ck_assert_uint_gt (pindex_memory (fix->index), 0);
    s_fix_destroy (&fix);
}
END_TEST

//  --------------------------------------------------------------------------
//  A 200k-point load (not timed: it must just finish well within the limit)

typedef struct {
    json_t **payloads;
} big_t;

static const json_t *
s_big_payload (uint32_t slot, void *arg)
{
    return ((big_t *) arg)->payloads [slot];
}

static bool
s_big_check (pindex_t *index, json_t **payloads, bool *live, uint32_t n, const char *text)
{
    filter_t *filter = s_filter (text);
    roaring_bitmap_t *got;
    bool exact;
    pindex_select (index, filter, NULL, NULL, &got, &exact);
    size_t truth = 0, found = 0;
    for (uint32_t slot = 0; slot < n; slot++) {
        if (!live [slot])
            continue;
        pointid_t id = s_id (slot);
        bool match = filter_match (filter, &id, payloads [slot]);
        truth += match;
        if (match)
            ck_assert_msg (roaring_bitmap_contains (got, slot), "%s: slot %u missed", text,
                           slot);
        found += match && roaring_bitmap_contains (got, slot);
    }
    if (exact)
        ck_assert_uint_eq (roaring_bitmap_get_cardinality (got), truth);
    pindex_card_t card;
    pindex_estimate (index, filter, NULL, NULL, &card);
    ck_assert_msg (card.min <= truth && truth <= card.max, "%s: %zu..%zu vs %zu", text,
                   card.min, card.max, truth);
    roaring_bitmap_free (got);
    filter_destroy (&filter);
    return exact;
}

START_TEST (test_200k_points_load_and_query)
{
    const uint32_t n = 200000;
    json_t **payloads = calloc (n, sizeof (json_t *));
    bool *live = calloc (n, sizeof (bool));
    ck_assert (payloads && live);
    pindex_t *index = pindex_new ();
    big_t big = { payloads };
    char err [256];
    json_t *kw = s_json ("\"keyword\""), *in = s_json ("\"integer\"");
    json_t *fl = s_json ("\"float\""), *dt = s_json ("\"datetime\"");
    //  Two indexes before the load, two built over the loaded points.
    ck_assert_int_eq (pindex_create_field (index, "city", kw, s_big_payload, &big, err,
                                           sizeof err), 0);
    ck_assert_int_eq (pindex_create_field (index, "price", in, s_big_payload, &big, err,
                                           sizeof err), 0);
    rng_t r = { 42 };
    for (uint32_t slot = 0; slot < n; slot++) {
        char ts [40];
        uint64_t x = s_rand (&r);
        snprintf (ts, sizeof ts, "2024-%02u-%02uT%02u:00:00Z", (unsigned) (x % 12) + 1,
                  (unsigned) (x / 12 % 28) + 1, (unsigned) (x / 400 % 24));
        payloads [slot] = json_pack ("{s:s#, s:I, s:f, s:s}", "city",
                                     "c0c1c2c3c4c5c6c7c8c9" + 2 * (x % 10), 2,
                                     "price", (json_int_t) (x % 100000), "score",
                                     (double) (x % 1000) / 10.0, "ts", ts);
        live [slot] = true;
        ck_assert_int_eq (pindex_add_point (index, slot, payloads [slot]), 0);
    }
    ck_assert_int_eq (pindex_create_field (index, "score", fl, s_big_payload, &big, err,
                                           sizeof err), 0);
    ck_assert_int_eq (pindex_create_field (index, "ts", dt, s_big_payload, &big, err,
                                           sizeof err), 0);
    ck_assert_uint_eq (pindex_field_points (index, "ts"), n);
    ck_assert (s_big_check (index, payloads, live, n,
                            "{\"must\": [{\"key\": \"city\", \"match\": "
                            "{\"value\": \"c3\"}}, {\"key\": \"price\", \"range\": "
                            "{\"gte\": 1000, \"lt\": 50000}}]}"));
    ck_assert (s_big_check (index, payloads, live, n,
                            "{\"must\": {\"key\": \"score\", \"range\": {\"gt\": 12.5}}, "
                            "\"must_not\": {\"key\": \"ts\", \"range\": {\"lt\": "
                            "\"2024-06-01T00:00:00Z\"}}}"));
    //  Updates and deletes of a tenth of the points, then the same queries.
    for (uint32_t i = 0; i < n / 10; i++) {
        uint32_t slot = (uint32_t) (s_rand (&r) % n);
        if (!live [slot])
            continue;
        ck_assert_int_eq (pindex_remove_point (index, slot, payloads [slot]), 0);
        json_decref (payloads [slot]);
        payloads [slot] = NULL;
        live [slot] = false;
        if (i % 2) {
            payloads [slot] = json_pack ("{s:s, s:I, s:f}", "city", "c3", "price",
                                         (json_int_t) 7, "score", 99.5);
            live [slot] = true;
            ck_assert_int_eq (pindex_add_point (index, slot, payloads [slot]), 0);
        }
    }
    ck_assert (s_big_check (index, payloads, live, n,
                            "{\"must\": [{\"key\": \"city\", \"match\": "
                            "{\"value\": \"c3\"}}, {\"key\": \"price\", \"range\": "
                            "{\"gte\": 5, \"lt\": 50000}}]}"));
    pindex_optimize (index);
    ck_assert (s_big_check (index, payloads, live, n,
                            "{\"should\": [{\"key\": \"score\", \"range\": {\"gte\": 99.5}}, "
                            "{\"is_empty\": {\"key\": \"ts\"}}]}"));
    ck_assert_uint_gt (pindex_memory (index), 0);
    json_decref (kw);
    json_decref (in);
    json_decref (fl);
    json_decref (dt);
    pindex_destroy (&index);
    for (uint32_t slot = 0; slot < n; slot++)
        json_decref (payloads [slot]);
    free (payloads);
    free (live);
}
END_TEST


//  --- building in the background ------------------------------------------

static bool
s_yield_always (void *arg)
{
    (void) arg;
    return true;
}

//  A payload for slot in round r: k a keyword (or missing / a number now
//  and then), n an integer.
static void
s_put_round (fix_t *fix, uint32_t slot, unsigned r)
{
    char text [96];
    unsigned x = slot * 7 + r * 3;
    if (x % 11 == 0)
        snprintf (text, sizeof text, "{\"n\": %u}", x % 50);
    else
    if (x % 13 == 0)
        snprintf (text, sizeof text, "{\"k\": %u, \"n\": %u}", x % 5, x % 50);
    else
        snprintf (text, sizeof text, "{\"k\": \"v%u\", \"n\": %u}", x % 7, x % 50);
    s_put_text (fix, slot, text);
}

static size_t
s_count_strings (fix_t *fix, const char *key)
{
    size_t n = 0;
    for (uint32_t slot = 0; slot < S_CAP; slot++)
        n += fix->live [slot] && json_is_string (json_object_get (fix->payloads [slot], key));
    return n;
}

//  A field begun over points already held is filled a step at a time while
//  points are added, updated and removed on both sides of the build's
//  cursor: meanwhile it is shown (payload_schema, points filling in) but
//  answers nothing (filters on its key are checked supersets), and once
//  published it answers exactly, as one built at once would.
START_TEST (test_background_build_catches_up_with_writes)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "n", "\"integer\"");
    for (uint32_t slot = 0; slot < 3000; slot++)
        s_put_round (fix, slot, 0);
    json_t *schema = s_json ("\"keyword\"");
    char err [256];
    ck_assert_int_eq (pindex_begin_field (fix->index, "k", schema, err, sizeof err), 0);
    ck_assert (pindex_building (fix->index));
    ck_assert (!pindex_field_ready (fix->index, "k"));
    ck_assert (pindex_field_ready (fix->index, "n"));
    ck_assert_uint_eq (pindex_field_count (fix->index), 2);
    ck_assert_uint_eq (pindex_field_points (fix->index, "k"), 0);
    json_t *shown = pindex_payload_schema (fix->index);
    ck_assert_ptr_nonnull (json_object_get (shown, "k"));
    json_decref (shown);
    const char *filters [] = {
        "{\"must\": {\"key\": \"k\", \"match\": {\"value\": \"v3\"}}}",
        "{\"must\": [{\"key\": \"k\", \"match\": {\"any\": [\"v1\", \"v5\"]}}, "
        "{\"key\": \"n\", \"range\": {\"lt\": 25}}]}",
        "{\"must_not\": {\"key\": \"k\", \"match\": {\"value\": \"v0\"}}}",
        "{\"must\": {\"is_empty\": {\"key\": \"k\"}}}",
    };
    size_t n_filters = sizeof filters / sizeof filters [0];
    rng_t rng = { 3 };
    unsigned round = 1, steps = 0;
    size_t last_points = 0;
    bool grew = false;
    while (pindex_build_work (fix->index, s_payload_of, fix, s_yield_always, NULL)) {
        steps++;
        size_t points = pindex_field_points (fix->index, "k");
        grew = grew || points > last_points;
        last_points = points;
        //  Writes between two steps, anywhere in the slots.
        for (int w = 0; w < 40; w++) {
            uint32_t slot = (uint32_t) s_pick (&rng, 3600);
            if (fix->live [slot] && s_pick (&rng, 4) == 0)
                s_del (fix, slot);
            else
                s_put_round (fix, slot, round++);
        }
        for (size_t i = 0; i < n_filters; i++) {
            filter_t *filter = s_filter (filters [i]);
            s_check (fix, filter, filters [i]);
            filter_destroy (&filter);
        }
        //  The key reads as unindexed: match on it alone is never exact.
        filter_t *filter = s_filter (filters [0]);
        ck_assert (!s_check (fix, filter, filters [0]));
        filter_destroy (&filter);
        ck_assert (!pindex_field_ready (fix->index, "k"));
    }
    //  Several steps, and the shown count filled in along the way.
    ck_assert_uint_gt (steps, 5);
    ck_assert (grew);
    //  Filled, not published: still not answering.
    ck_assert (pindex_publish_due (fix->index));
    ck_assert (!pindex_field_ready (fix->index, "k"));
    //  Writes between the last step and the publish are kept too.
    for (uint32_t slot = 0; slot < 3600; slot += 97)
        s_put_round (fix, slot, round++);
    ck_assert_uint_eq (pindex_publish (fix->index), 1);
    ck_assert (!pindex_publish_due (fix->index));
    ck_assert (!pindex_building (fix->index));
    ck_assert (pindex_field_ready (fix->index, "k"));
    ck_assert_uint_eq (pindex_field_points (fix->index, "k"), s_count_strings (fix, "k"));
    //  Now the index decides: match on it is exact and right, and the other
    //  filters agree with brute force.
    filter_t *filter = s_filter (filters [0]);
    ck_assert (s_check (fix, filter, filters [0]));
    filter_destroy (&filter);
    for (size_t i = 0; i < n_filters; i++) {
        filter = s_filter (filters [i]);
        s_check (fix, filter, filters [i]);
        filter_destroy (&filter);
    }
    //  And it keeps up with writes like any built field.
    for (uint32_t slot = 0; slot < 3600; slot += 5)
        s_put_round (fix, slot, round++);
    ck_assert_uint_eq (pindex_field_points (fix->index, "k"), s_count_strings (fix, "k"));
    filter = s_filter (filters [0]);
    ck_assert (s_check (fix, filter, filters [0]));
    filter_destroy (&filter);

    //  A field dropped or retyped while it builds: the build follows.
    ck_assert_int_eq (pindex_begin_field (fix->index, "m", schema, err, sizeof err), 0);
    ck_assert (pindex_build_work (fix->index, s_payload_of, fix, s_yield_always, NULL));
    ck_assert_int_eq (pindex_drop_field (fix->index, "m"), 0);
    ck_assert (!pindex_building (fix->index));
    ck_assert (!pindex_build_work (fix->index, s_payload_of, fix, s_yield_always, NULL));
    json_t *integer = s_json ("\"integer\"");
    ck_assert_int_eq (pindex_begin_field (fix->index, "k", integer, err, sizeof err), 0);
    ck_assert (!pindex_field_ready (fix->index, "k"));
    ck_assert (pindex_build_work (fix->index, s_payload_of, fix, s_yield_always, NULL));
    //  Same schema again while building: nothing restarts.
    ck_assert_int_eq (pindex_begin_field (fix->index, "k", integer, err, sizeof err), 0);
    //  A field built at once finishes the one building too.
    s_index (fix, "z", "\"bool\"");
    ck_assert (!pindex_publish_due (fix->index));
    ck_assert (pindex_field_ready (fix->index, "k"));
    pindex_schema_t got;
    ck_assert_int_eq (pindex_field_schema (fix->index, "k", &got), 0);
    ck_assert_int_eq (got.type, PINDEX_INTEGER);
    filter = s_filter ("{\"must\": {\"key\": \"k\", \"match\": {\"value\": 3}}}");
    ck_assert (s_check (fix, filter, "k == 3 after the retype"));
    filter_destroy (&filter);
    json_decref (integer);
    json_decref (schema);
    s_fix_destroy (&fix);
}
END_TEST

//  Readers run while a build fills a field (the gate's read side holds
//  both): they get right answers from the built fields and never look at
//  the one being filled.
typedef struct {
    fix_t *fix;                 //  shared
    int done;                   //  atomic: the build finished
    bool ok;                    //  every answer was right
    size_t reads;               //  answers checked
} s_side_reader_t;

static void *
s_side_reader (void *arg)
{
    s_side_reader_t *r = arg;
    filter_t *on_n = s_filter ("{\"must\": {\"key\": \"n\", \"range\": {\"lt\": 10}}}");
    filter_t *on_k = s_filter ("{\"must\": {\"key\": \"k\", \"match\": {\"value\": \"v2\"}}}");
    roaring_bitmap_t *want_n = s_brute (r->fix, on_n);
    roaring_bitmap_t *want_k = s_brute (r->fix, on_k);
    bool ok = true;
    while (ok && !__atomic_load_n (&r->done, __ATOMIC_ACQUIRE)) {
        roaring_bitmap_t *got;
        bool exact;
        pindex_select (r->fix->index, on_n, s_slot_of, r->fix, &got, &exact);
        ok = exact && roaring_bitmap_equals (got, want_n);
        roaring_bitmap_free (got);
        pindex_select (r->fix->index, on_k, s_slot_of, r->fix, &got, &exact);
        ok = ok && !exact && roaring_bitmap_is_subset (want_k, got);
        roaring_bitmap_free (got);
        __atomic_store_n (&r->ok, ok, __ATOMIC_RELAXED);
        __atomic_add_fetch (&r->reads, 1, __ATOMIC_RELAXED);
    }
    roaring_bitmap_free (want_n);
    roaring_bitmap_free (want_k);
    filter_destroy (&on_n);
    filter_destroy (&on_k);
    return NULL;
}

START_TEST (test_background_build_beside_readers)
{
    fix_t *fix = s_fix_new ();
    s_index (fix, "n", "\"integer\"");
    for (uint32_t slot = 0; slot < S_CAP; slot++)
        s_put_round (fix, slot, 0);
    json_t *schema = s_json ("\"keyword\"");
    char err [256];
    ck_assert_int_eq (pindex_begin_field (fix->index, "k", schema, err, sizeof err), 0);
    s_side_reader_t r [3];
    pthread_t threads [3];
    for (int i = 0; i < 3; i++) {
        r [i] = (s_side_reader_t) { .fix = fix, .ok = true };
        ck_assert_int_eq (pthread_create (&threads [i], NULL, s_side_reader, &r [i]), 0);
    }
    //  Readers have started before the build goes on (no sleep: wait for
    //  their first answers).
    for (int i = 0; i < 3; i++)
        while (!__atomic_load_n (&r [i].reads, __ATOMIC_RELAXED)
               && __atomic_load_n (&r [i].ok, __ATOMIC_RELAXED))
            sched_yield ();
    while (pindex_build_work (fix->index, s_payload_of, fix, s_yield_always, NULL))
        ;
    for (int i = 0; i < 3; i++)
        __atomic_store_n (&r [i].done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++) {
        pthread_join (threads [i], NULL);
        ck_assert_msg (r [i].ok, "reader %d got a wrong answer during the build", i);
        ck_assert_uint_gt (r [i].reads, 0);
    }
    ck_assert_uint_eq (pindex_publish (fix->index), 1);
    filter_t *filter = s_filter ("{\"must\": {\"key\": \"k\", \"match\": {\"value\": \"v2\"}}}");
    ck_assert (s_check (fix, filter, "k == v2 once published"));
    filter_destroy (&filter);
    json_decref (schema);
    s_fix_destroy (&fix);
}
END_TEST

Suite *
pindex_suite (void)
{
    Suite *s = suite_create ("pindex");
    TCase *tc = tcase_create ("types");
    tcase_add_test (tc, test_keyword_match_any_except_through_updates);
    tcase_add_test (tc, test_integer_lookup_and_range_with_int_and_float_bounds);
    tcase_add_test (tc, test_float_range_and_int_match_bound);
    tcase_add_test (tc, test_bool_match_and_except);
    tcase_add_test (tc, test_uuid_values_are_normalized);
    tcase_add_test (tc, test_datetime_ranges_to_the_nanosecond);
    tcase_add_test (tc, test_is_empty_is_null_values_count);
    tcase_add_test (tc, test_value_sets_grow_past_arrays_and_shrink);
    suite_add_tcase (s, tc);
    tc = tcase_create ("planner");
    tcase_add_test (tc, test_nested_and_array_paths);
    tcase_add_test (tc, test_has_id_unindexed_keys_and_combinations);
    tcase_add_test (tc, test_estimate_counts_from_indexes);
    tcase_add_test (tc, test_random_filters_agree_with_filter_match);
    tcase_add_test (tc, test_concurrent_readers);
    suite_add_tcase (s, tc);
    tc = tcase_create ("schema");
    tcase_add_test (tc, test_schemas_and_payload_schema);
    suite_add_tcase (s, tc);
    tc = tcase_create ("background build");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_background_build_catches_up_with_writes);
    tcase_add_test (tc, test_background_build_beside_readers);
    suite_add_tcase (s, tc);
    tc = tcase_create ("load");
    tcase_set_timeout (tc, 100);
    tcase_add_test (tc, test_200k_points_load_and_query);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (pindex_suite)
