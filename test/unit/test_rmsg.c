/*  test_rmsg: Raft messages as RAFT_MESSAGE JSON and back: every message
    type round trips (through text too, as it crosses the wire), absent
    fields read as zero, and every malformed field is refused with
    -SH_EPROTO leaving the output empty.
*/
#include "actors/raft/rmsg.h"
#include "common/err.h"
#include "test/unit/check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_check_equal (const rcore_msg_t *a, const rcore_msg_t *b)
{
    ck_assert_int_eq (a->type, b->type);
    ck_assert_uint_eq (a->from, b->from);
    ck_assert_uint_eq (a->to, b->to);
    ck_assert_uint_eq (a->term, b->term);
    ck_assert_uint_eq (a->index, b->index);
    ck_assert_uint_eq (a->log_term, b->log_term);
    ck_assert_uint_eq (a->commit, b->commit);
    ck_assert_int_eq (a->reject, b->reject);
    ck_assert_uint_eq (a->reject_hint, b->reject_hint);
    ck_assert_int_eq (a->force, b->force);
    ck_assert_uint_eq (a->n_entries, b->n_entries);
    for (size_t i = 0; i < a->n_entries; i++) {
        ck_assert_uint_eq (a->entries [i].index, b->entries [i].index);
        ck_assert_uint_eq (a->entries [i].term, b->entries [i].term);
        ck_assert_int_eq (a->entries [i].type, b->entries [i].type);
        ck_assert_uint_eq (a->entries [i].len, b->entries [i].len);
        if (a->entries [i].len)
            ck_assert (memcmp (a->entries [i].data, b->entries [i].data,
                               a->entries [i].len) == 0);
        else
            ck_assert_ptr_null (b->entries [i].data);
    }
    const rcore_snapshot_t *x = &a->snapshot, *y = &b->snapshot;
    ck_assert_uint_eq (x->index, y->index);
    ck_assert_uint_eq (x->term, y->term);
    ck_assert_uint_eq (x->len, y->len);
    if (x->len)
        ck_assert (memcmp (x->data, y->data, x->len) == 0);
    ck_assert_uint_eq (x->conf.n_voters, y->conf.n_voters);
    ck_assert_uint_eq (x->conf.n_learners, y->conf.n_learners);
    for (size_t i = 0; i < x->conf.n_voters; i++)
        ck_assert_uint_eq (x->conf.voters [i], y->conf.voters [i]);
    for (size_t i = 0; i < x->conf.n_learners; i++)
        ck_assert_uint_eq (x->conf.learners [i], y->conf.learners [i]);
}

//  msg -> JSON -> text -> JSON -> msg, checked equal.
static void
s_round_trip (const rcore_msg_t *msg)
{
    json_t *json = rmsg_encode (msg);
    ck_assert_ptr_nonnull (json);
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    ck_assert_ptr_nonnull (text);
    json_error_t error;
    json = json_loads (text, 0, &error);
    free (text);
    ck_assert_ptr_nonnull (json);
    rcore_msg_t back;
    ck_assert_int_eq (rmsg_decode (json, &back), 0);
    json_decref (json);
    s_check_equal (msg, &back);
    rmsg_free (&back);
    ck_assert_ptr_null (back.entries);
}

START_TEST (test_every_message_type_round_trips)
{
    //  Bytes that are not text (NULs, high bits) must survive exactly.
    uint8_t blob [300];
    for (size_t i = 0; i < sizeof blob; i++)
        blob [i] = (uint8_t) (i * 7);
    rcore_entry_t entries [4] = {
        { 11, 3, RCORE_ENTRY_NOOP, NULL, 0 },
        { 12, 3, RCORE_ENTRY_NORMAL, blob, sizeof blob },
        { 13, 4, RCORE_ENTRY_CONF, (uint8_t *) "{\"change\":\"promote\"}", 20 },
        { 14, 4, RCORE_ENTRY_NORMAL, blob, 1 },
    };
    uint64_t voters [3] = { 1, 9007199254740992ULL, 42 }, learners [1] = { 7 };
    for (int type = RCORE_MSG_NONE + 1; type < RCORE_MSG_TYPE_COUNT; type++) {
        rcore_msg_t m = { .type = type, .from = 9007199254740992ULL, .to = 2, .term = 77 };
        s_round_trip (&m);
        m.index = 10;
        m.log_term = 3;
        m.commit = 9;
        m.reject = true;
        m.reject_hint = 5;
        m.force = true;
        s_round_trip (&m);
        if (type == RCORE_MSG_APPEND) {
            m.entries = entries;
            m.n_entries = 4;
            s_round_trip (&m);
        }
        if (type == RCORE_MSG_SNAPSHOT) {
            m.snapshot = (rcore_snapshot_t) { .index = 99, .term = 4, .data = blob,
                                              .len = sizeof blob,
                                              .conf = { voters, 3, learners, 1 } };
            s_round_trip (&m);
            //  An empty snapshot (no bytes, no configuration) too.
            m.snapshot = (rcore_snapshot_t) { .index = 1, .term = 1 };
            s_round_trip (&m);
        }
    }
}
END_TEST

START_TEST (test_encoding_is_the_documented_json)
{
    rcore_entry_t entry = { 5, 2, RCORE_ENTRY_NORMAL, (uint8_t *) "hi", 2 };
    rcore_msg_t m = { .type = RCORE_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 4,
                      .log_term = 1, .commit = 3, .entries = &entry, .n_entries = 1 };
    json_t *json = rmsg_encode (&m);
    ck_assert_int_eq (json_integer_value (json_object_get (json, "type")), RCORE_MSG_APPEND);
    ck_assert_int_eq (json_integer_value (json_object_get (json, "log_term")), 1);
    json_t *e = json_array_get (json_object_get (json, "entries"), 0);
    ck_assert_str_eq (json_string_value (json_object_get (e, "data")), "aGk=");
    ck_assert_ptr_null (json_object_get (json, "snapshot"));
    json_decref (json);

    //  A value JSON integers cannot carry is refused rather than mangled.
    m.term = UINT64_MAX;
    ck_assert_ptr_null (rmsg_encode (&m));
}
END_TEST

START_TEST (test_absent_fields_read_as_zero)
{
    json_error_t error;
    json_t *json = json_loads ("{\"type\": 7, \"from\": 1, \"to\": 2, \"term\": 3, "
                               "\"future\": {\"x\": 1}}", 0, &error);
    rcore_msg_t m;
    ck_assert_int_eq (rmsg_decode (json, &m), 0);
    ck_assert_int_eq (m.type, RCORE_MSG_HEARTBEAT);
    ck_assert_uint_eq (m.term, 3);
    ck_assert_uint_eq (m.index, 0);
    ck_assert (!m.reject);
    ck_assert (!m.force);
    ck_assert_uint_eq (m.n_entries, 0);
    ck_assert_ptr_null (m.entries);
    ck_assert_uint_eq (m.snapshot.index, 0);
    rmsg_free (&m);
    json_decref (json);
    //  An entry without data, a snapshot without bytes or configuration.
    json = json_loads ("{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 3, \"entries\": "
                       "[{\"index\": 1, \"term\": 3}], \"snapshot\": {}}", 0, &error);
    ck_assert_int_eq (rmsg_decode (json, &m), 0);
    ck_assert_uint_eq (m.n_entries, 1);
    ck_assert_uint_eq (m.entries [0].len, 0);
    ck_assert_int_eq (m.entries [0].type, RCORE_ENTRY_NORMAL);
    ck_assert_uint_eq (m.snapshot.conf.n_voters, 0);
    rmsg_free (&m);
    json_decref (json);
}
END_TEST

//  A valid APPEND with one entry and a SNAPSHOT, as text, with one field
//  replaced by bad: must be refused, out left zeroed.
static void
s_refused (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &error);
    ck_assert_msg (json != NULL, "test JSON does not parse: %s", text);
    rcore_msg_t m;
    memset (&m, 0xAB, sizeof m);
    ck_assert_msg (rmsg_decode (json, &m) == -SH_EPROTO, "accepted: %s", text);
    ck_assert_ptr_null (m.entries);
    ck_assert_uint_eq (m.n_entries, 0);
    ck_assert_ptr_null (m.snapshot.data);
    ck_assert_ptr_null (m.snapshot.conf.voters);
    ck_assert_int_eq (m.type, 0);
    json_decref (json);
}

START_TEST (test_each_malformed_field_is_refused)
{
    const char *bad [] = {
        "[]",
        "\"append\"",
        "{}",                                                       //  no type
        "{\"type\": 0, \"from\": 1, \"to\": 2, \"term\": 1}",
        "{\"type\": 12, \"from\": 1, \"to\": 2, \"term\": 1}",
        "{\"type\": -1, \"from\": 1, \"to\": 2, \"term\": 1}",
        "{\"type\": \"1\", \"from\": 1, \"to\": 2, \"term\": 1}",
        "{\"type\": 1.0, \"from\": 1, \"to\": 2, \"term\": 1}",
        "{\"type\": 1, \"from\": -1, \"to\": 2, \"term\": 1}",
        "{\"type\": 1, \"from\": \"1\", \"to\": 2, \"term\": 1}",
        "{\"type\": 1, \"from\": 1, \"to\": 2.5, \"term\": 1}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": true}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"index\": null}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"log_term\": -3}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"commit\": [1]}",
        "{\"type\": 2, \"from\": 1, \"to\": 2, \"term\": 1, \"hint\": {}}",
        "{\"type\": 2, \"from\": 1, \"to\": 2, \"term\": 1, \"reject\": 1}",
        "{\"type\": 2, \"from\": 1, \"to\": 2, \"term\": 1, \"reject\": \"true\"}",
        "{\"type\": 3, \"from\": 1, \"to\": 2, \"term\": 1, \"force\": null}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": {}}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": [1]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": -1, \"term\": 1}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": \"1\"}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"type\": 3}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"type\": -1}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": 5}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"QQ\"}]}",          //  unpadded
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"Q===\"}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"====\"}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"QU JD\"}]}",
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"QR==\"}]}",        //  stray bits
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"aGk-\"}]}",        //  URL-safe variant
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"QUJD\"}, 7]}",     //  a later entry
        "{\"type\": 1, \"from\": 1, \"to\": 2, \"term\": 1, \"entries\": "
            "[{\"index\": 1, \"term\": 1, \"data\": \"QUJD\"}, "
            "{\"index\": 2, \"term\": 1, \"data\": \"!!!!\"}]}",        //  decoded late
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": []}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"index\": \"1\"}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"term\": -1}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"data\": false}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"data\": \"A\"}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"voters\": 1}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"voters\": [-1]}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"voters\": [\"1\"]}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": {\"learners\": {}}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": "
            "{\"voters\": [1], \"learners\": [1.5]}}",
        "{\"type\": 9, \"from\": 1, \"to\": 2, \"term\": 1, \"snapshot\": "
            "{\"voters\": [1], \"data\": \"QUJD\", \"learners\": [null]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        s_refused (bad [i]);
    rcore_msg_t m;
    ck_assert_int_eq (rmsg_decode (NULL, &m), -SH_EPROTO);
}
END_TEST

START_TEST (test_counts_and_sizes_are_bounded)
{
    //  One entry too many.
    json_t *json = json_pack ("{sisisisi}", "type", RCORE_MSG_APPEND, "from", 1, "to", 2,
                              "term", 1);
    json_t *entries = json_array ();
    json_t *entry = json_pack ("{sisi}", "index", 1, "term", 1);
    for (size_t i = 0; i <= RMSG_MAX_ENTRIES; i++)
        json_array_append (entries, entry);
    json_object_set_new (json, "entries", entries);
    rcore_msg_t m;
    ck_assert_int_eq (rmsg_decode (json, &m), -SH_EPROTO);
    //  Exactly the limit is fine.
    json_array_remove (entries, 0);
    ck_assert_int_eq (rmsg_decode (json, &m), 0);
    ck_assert_uint_eq (m.n_entries, RMSG_MAX_ENTRIES);
    rmsg_free (&m);
    json_decref (json);
    json_decref (entry);

    //  More bytes than RMSG_MAX_BYTES in all: refused before any decoding
    //  (the same 32 KiB text shared by every entry, so the test stays small).
    size_t chunk = 32 * 1024;
    char *text = malloc (chunk + 1);
    memset (text, 'A', chunk);
    text [chunk] = '\0';
    json_t *data = json_string (text);
    free (text);
    json = json_pack ("{sisisisi}", "type", RCORE_MSG_APPEND, "from", 1, "to", 2, "term", 1);
    entries = json_array ();
    size_t count = RMSG_MAX_BYTES / (chunk / 4 * 3) + 1;
    ck_assert_uint_le (count, RMSG_MAX_ENTRIES);
    for (size_t i = 0; i < count; i++) {
        entry = json_pack ("{sisisO}", "index", (int) i + 1, "term", 1, "data", data);
        json_array_append_new (entries, entry);
    }
    json_object_set_new (json, "entries", entries);
    ck_assert_int_eq (rmsg_decode (json, &m), -SH_EPROTO);
    ck_assert_ptr_null (m.entries);
    //  One entry less fits; the snapshot's bytes count against the same
    //  limit.
    json_array_remove (entries, 0);
    json_object_set_new (json, "snapshot", json_pack ("{sisisO}", "index", 1, "term", 1,
                                                      "data", data));
    ck_assert_int_eq (rmsg_decode (json, &m), -SH_EPROTO);
    json_object_del (json, "snapshot");
    ck_assert_int_eq (rmsg_decode (json, &m), 0);
    rmsg_free (&m);
    json_decref (json);
    json_decref (data);

    //  One voter too many.
    json = json_pack ("{sisisisi}", "type", RCORE_MSG_SNAPSHOT, "from", 1, "to", 2, "term", 1);
    json_t *voters = json_array ();
    for (int i = 0; i <= RCORE_MAX_VOTERS; i++)
        json_array_append_new (voters, json_integer (i + 1));
    json_object_set_new (json, "snapshot", json_pack ("{sisisO}", "index", 1, "term", 1,
                                                      "voters", voters));
    ck_assert_int_eq (rmsg_decode (json, &m), -SH_EPROTO);
    json_array_remove (voters, 0);
    ck_assert_int_eq (rmsg_decode (json, &m), 0);
    ck_assert_uint_eq (m.snapshot.conf.n_voters, RCORE_MAX_VOTERS);
    rmsg_free (&m);
    json_decref (voters);
    json_decref (json);
}
END_TEST

START_TEST (test_decoded_messages_feed_rcore)
{
    //  What a leader's core sends, encoded and decoded, is what a
    //  follower's core accepts.
    uint64_t voters [2] = { 1, 2 };
    rcore_config_t config;
    rcore_config_defaults (&config);
    config.voters = voters;
    config.n_voters = 2;
    config.id = 1;
    rcore_t *one = rcore_new (&config, NULL);
    config.id = 2;
    rcore_t *two = rcore_new (&config, NULL);
    rcore_t *cores [2] = { one, two };
    rcore_campaign (one);
    for (int round = 0; round < 20; round++)
        for (int c = 0; c < 2; c++) {
            rcore_ready_t rd;
            while (rcore_ready (cores [c], &rd)) {
                for (size_t k = 0; k < rd.n_messages; k++) {
                    json_t *json = rmsg_encode (&rd.messages [k]);
                    rcore_msg_t m;
                    ck_assert_int_eq (rmsg_decode (json, &m), 0);
                    json_decref (json);
                    ck_assert_int_eq (rcore_step (cores [1 - c], &m), 0);
                    rmsg_free (&m);
                }
                rcore_advance (cores [c], &rd);
            }
            if (c == 0 && round == 3)
                ck_assert_int_eq (rcore_propose (one, RCORE_ENTRY_NORMAL, "\x00\xff", 2,
                                                 NULL, NULL), 0);
        }
    ck_assert_int_eq (rcore_role (one), RCORE_LEADER);
    ck_assert_uint_eq (rcore_commit (two), 2);
    ck_assert_uint_eq (rcore_entry (two, 2)->len, 2);
    ck_assert (memcmp (rcore_entry (two, 2)->data, "\x00\xff", 2) == 0);
    rcore_destroy (&one);
    rcore_destroy (&two);
}
END_TEST

Suite *
rmsg_suite (void)
{
    Suite *s = suite_create ("rmsg");
    TCase *tc = tcase_create ("codec");
    tcase_add_test (tc, test_every_message_type_round_trips);
    tcase_add_test (tc, test_encoding_is_the_documented_json);
    tcase_add_test (tc, test_absent_fields_read_as_zero);
    tcase_add_test (tc, test_each_malformed_field_is_refused);
    tcase_add_test (tc, test_counts_and_sizes_are_bounded);
    tcase_add_test (tc, test_decoded_messages_feed_rcore);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (rmsg_suite)
