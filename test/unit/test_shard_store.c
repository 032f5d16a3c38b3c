/*  test_shard_store: the shard's SQLite store: points survive a reopen with
    their versions, vectors and payloads; deletes and rollbacks stick; the
    vectors blob round-trips and a corrupt one is caught, never read past.
    Deferred turns are written in order by the writer thread and are all
    durable after the sync or the close.
*/
#include "actors/shard/shard_store.h"
#include "common/err.h"
#include "common/log.h"
#include "test/unit/check_main.h"
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char s_dir [512];

static void
s_setup (void)
{
    log_set_level (LOG_LEVEL_ERROR);
    const char *tmp = getenv ("TMPDIR");
    snprintf (s_dir, sizeof s_dir, "%s/test_shard_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    const char *files [] = { "shard.db", "shard.db-wal", "shard.db-shm" };
    char path [600];
    for (size_t i = 0; i < sizeof files / sizeof files [0]; i++) {
        snprintf (path, sizeof path, "%s/%s", s_dir, files [i]);
        unlink (path);
    }
    rmdir (s_dir);
}

static pointid_t
s_num (uint64_t n)
{
    pointid_t id = { .is_uuid = false, .num = n };
    return id;
}

static pointid_t
s_uuid (const char *text)
{
    pointid_t id;
    ck_assert_int_eq (pointid_parse (text, &id), 0);
    return id;
}

//  What the load callback saw, copied out.
typedef struct {
    pointid_t id;
    uint64_t version;
    size_t n_vecs;
    char names [4][16];
    uint32_t counts [4];            //  dim or nnz
    float first [4];                //  first dense value or first sparse value
    uint32_t first_index [4];       //  first sparse index
    char *payload;                  //  compact JSON or NULL
} s_seen_t;

typedef struct {
    s_seen_t points [16];
    size_t count;
    int stop_after;                 //  return an error after this many (0 = never)
} s_loaded_t;

static int
s_collect (const shard_store_point_t *point, void *arg)
{
    s_loaded_t *loaded = (s_loaded_t *) arg;
    ck_assert_uint_lt (loaded->count, 16);
    s_seen_t *seen = &loaded->points [loaded->count++];
    memset (seen, 0, sizeof *seen);
    seen->id = point->id;
    seen->version = point->version;
    seen->n_vecs = point->n_vecs;
    for (size_t i = 0; i < point->n_vecs && i < 4; i++) {
        const segment_vec_t *v = &point->vecs [i];
        snprintf (seen->names [i], sizeof seen->names [i], "%s", v->name);
        if (v->dense) {
            seen->counts [i] = v->dim;
            seen->first [i] = v->dim ? v->dense [0] : 0;
        }
        else {
            seen->counts [i] = v->nnz;
            seen->first [i] = v->nnz ? v->values [0] : 0;
            seen->first_index [i] = v->nnz ? v->indices [0] : 0;
        }
    }
    seen->payload = point->payload ? json_dumps (point->payload, JSON_COMPACT | JSON_SORT_KEYS)
                                   : NULL;
    if (loaded->stop_after && (int) loaded->count >= loaded->stop_after)
        return -SH_EINTERNAL;
    return 0;
}

static void
s_loaded_free (s_loaded_t *loaded)
{
    for (size_t i = 0; i < loaded->count; i++)
        free (loaded->points [i].payload);
    loaded->count = 0;
}

static const float s_dense [4] = { 1.5f, -2.0f, 3.25f, 0.0f };
static const uint32_t s_indices [3] = { 7, 2, 100000 };
static const float s_values [3] = { 0.5f, -1.0f, 9.0f };

static void
s_two_vectors (segment_vec_t vecs [2])
{
    memset (vecs, 0, 2 * sizeof vecs [0]);
    vecs [0].name = "";
    vecs [0].dense = s_dense;
    vecs [0].dim = 4;
    vecs [1].name = "text";
    vecs [1].indices = s_indices;
    vecs [1].values = s_values;
    vecs [1].nnz = 3;
}

START_TEST (test_vectors_blob_round_trips_dense_and_sparse)
{
    segment_vec_t vecs [2];
    s_two_vectors (vecs);
    uint8_t *blob = NULL;
    size_t len = 0;
    ck_assert_int_eq (shard_store_encode_vectors (vecs, 2, &blob, &len), 0);
    ck_assert_uint_eq (blob [0], SHARD_STORE_VECTORS_VERSION);

    segment_vec_t *out = NULL;
    size_t n = 0;
    ck_assert_int_eq (shard_store_decode_vectors (blob, len, &out, &n), 0);
    ck_assert_uint_eq (n, 2);
    ck_assert_str_eq (out [0].name, "");
    ck_assert_ptr_nonnull (out [0].dense);
    ck_assert_uint_eq (out [0].dim, 4);
    ck_assert_mem_eq (out [0].dense, s_dense, sizeof s_dense);
    ck_assert_str_eq (out [1].name, "text");
    ck_assert_ptr_null (out [1].dense);
    ck_assert_uint_eq (out [1].nnz, 3);
    ck_assert_mem_eq (out [1].indices, s_indices, sizeof s_indices);
    ck_assert_mem_eq (out [1].values, s_values, sizeof s_values);
    free (out);
    free (blob);
}
END_TEST

START_TEST (test_vectors_blob_with_no_vectors_round_trips)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    ck_assert_int_eq (shard_store_encode_vectors (NULL, 0, &blob, &len), 0);
    ck_assert_uint_eq (len, 5);
    segment_vec_t *out = NULL;
    size_t n = 99;
    ck_assert_int_eq (shard_store_decode_vectors (blob, len, &out, &n), 0);
    ck_assert_uint_eq (n, 0);
    free (out);
    free (blob);
}
END_TEST

START_TEST (test_decode_rejects_every_truncation_of_a_blob)
{
    segment_vec_t vecs [2];
    s_two_vectors (vecs);
    uint8_t *blob = NULL;
    size_t len = 0;
    ck_assert_int_eq (shard_store_encode_vectors (vecs, 2, &blob, &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        //  A copy of exactly `cut` bytes, so a read past it is a real overrun
        //  (ASan/valgrind would see it).
        uint8_t *prefix = (uint8_t *) malloc (cut ? cut : 1);
        memcpy (prefix, blob, cut);
        segment_vec_t *out = (segment_vec_t *) 1;
        size_t n = 99;
        ck_assert_int_eq (shard_store_decode_vectors (prefix, cut, &out, &n), -SH_EIO);
        ck_assert_ptr_null (out);
        ck_assert_uint_eq (n, 0);
        free (prefix);
    }
    free (blob);
}
END_TEST

START_TEST (test_decode_rejects_bad_version_count_kind_and_trailing_bytes)
{
    segment_vec_t vecs [2];
    s_two_vectors (vecs);
    uint8_t *blob = NULL;
    size_t len = 0;
    ck_assert_int_eq (shard_store_encode_vectors (vecs, 2, &blob, &len), 0);
    segment_vec_t *out = NULL;
    size_t n = 0;

    uint8_t *bad = (uint8_t *) malloc (len + 1);
    memcpy (bad, blob, len);
    bad [0] = SHARD_STORE_VECTORS_VERSION + 1;                  //  unknown version
    ck_assert_int_eq (shard_store_decode_vectors (bad, len, &out, &n), -SH_EIO);

    memcpy (bad, blob, len);
    bad [1] = bad [2] = bad [3] = bad [4] = 0xff;               //  4 billion vectors
    ck_assert_int_eq (shard_store_decode_vectors (bad, len, &out, &n), -SH_EIO);

    memcpy (bad, blob, len);
    bad [5] = 7;                                                //  unknown kind
    ck_assert_int_eq (shard_store_decode_vectors (bad, len, &out, &n), -SH_EIO);

    memcpy (bad, blob, len);
    bad [8] = bad [9] = bad [10] = bad [11] = 0xff;             //  dim 4 billion
    ck_assert_int_eq (shard_store_decode_vectors (bad, len, &out, &n), -SH_EIO);

    memcpy (bad, blob, len);
    bad [len] = 0;                                              //  one byte too many
    ck_assert_int_eq (shard_store_decode_vectors (bad, len + 1, &out, &n), -SH_EIO);

    ck_assert_int_eq (shard_store_decode_vectors (NULL, 0, &out, &n), -SH_EIO);
    ck_assert_ptr_null (out);
    free (bad);
    free (blob);
}
END_TEST

START_TEST (test_decode_rejects_a_name_with_a_nul_byte)
{
    segment_vec_t vec = { .name = "ab", .dense = s_dense, .dim = 1 };
    uint8_t *blob = NULL;
    size_t len = 0;
    ck_assert_int_eq (shard_store_encode_vectors (&vec, 1, &blob, &len), 0);
    //  version(1) count(4) kind(1) name_len(2) then "ab"
    blob [8] = 0;
    segment_vec_t *out = NULL;
    size_t n = 0;
    ck_assert_int_eq (shard_store_decode_vectors (blob, len, &out, &n), -SH_EIO);
    free (blob);
}
END_TEST

START_TEST (test_new_store_has_seq_zero_and_no_points)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 0);
    s_loaded_t loaded = { .count = 0 };
    size_t corrupt = 99;
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, &corrupt), 0);
    ck_assert_uint_eq (loaded.count, 0);
    ck_assert_uint_eq (corrupt, 0);
    shard_store_destroy (&store);
    ck_assert_ptr_null (store);
    shard_store_destroy (&store);           //  NULL-safe
}
END_TEST

//  Writes three points and seq 3 in one transaction.
static void
s_write_three (shard_store_t *store)
{
    segment_vec_t vecs [2];
    s_two_vectors (vecs);
    json_t *payload = json_pack ("{sssi}", "city", "Berlin", "n", 7);
    pointid_t a = s_num (42), b = s_uuid ("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"),
              c = s_num (1);
    ck_assert_int_eq (shard_store_begin (store), 0);
    ck_assert_int_eq (shard_store_put_point (store, &a, 1, vecs, 2, payload), 0);
    ck_assert_int_eq (shard_store_put_point (store, &b, 2, vecs, 1, NULL), 0);
    ck_assert_int_eq (shard_store_put_point (store, &c, 3, NULL, 0, payload), 0);
    ck_assert_int_eq (shard_store_set_seq (store, 3), 0);
    ck_assert_int_eq (shard_store_commit (store), 0);
    json_decref (payload);
}

START_TEST (test_points_survive_a_reopen_in_id_order)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    ck_assert_uint_eq (shard_store_seq (store), 3);
    shard_store_destroy (&store);

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 3);
    s_loaded_t loaded = { .count = 0 };
    size_t corrupt = 99;
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, &corrupt), 0);
    ck_assert_uint_eq (corrupt, 0);
    ck_assert_uint_eq (loaded.count, 3);

    //  Integers before UUIDs, integers by value.
    ck_assert (!loaded.points [0].id.is_uuid);
    ck_assert_uint_eq (loaded.points [0].id.num, 1);
    ck_assert_uint_eq (loaded.points [0].version, 3);
    ck_assert_uint_eq (loaded.points [0].n_vecs, 0);
    ck_assert_str_eq (loaded.points [0].payload, "{\"city\":\"Berlin\",\"n\":7}");

    ck_assert_uint_eq (loaded.points [1].id.num, 42);
    ck_assert_uint_eq (loaded.points [1].version, 1);
    ck_assert_uint_eq (loaded.points [1].n_vecs, 2);
    ck_assert_str_eq (loaded.points [1].names [0], "");
    ck_assert_uint_eq (loaded.points [1].counts [0], 4);
    ck_assert_float_eq (loaded.points [1].first [0], 1.5f);
    ck_assert_str_eq (loaded.points [1].names [1], "text");
    ck_assert_uint_eq (loaded.points [1].counts [1], 3);
    ck_assert_uint_eq (loaded.points [1].first_index [1], 7);
    ck_assert_float_eq (loaded.points [1].first [1], 0.5f);

    ck_assert (loaded.points [2].id.is_uuid);
    ck_assert_uint_eq (loaded.points [2].version, 2);
    ck_assert_uint_eq (loaded.points [2].n_vecs, 1);
    ck_assert_ptr_null (loaded.points [2].payload);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

START_TEST (test_put_replaces_and_delete_removes_across_reopen)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    pointid_t a = s_num (42), c = s_num (1), missing = s_num (999);
    json_t *payload = json_pack ("{sb}", "new", 1);
    ck_assert_int_eq (shard_store_begin (store), 0);
    ck_assert_int_eq (shard_store_put_point (store, &a, 4, NULL, 0, payload), 0);
    ck_assert_int_eq (shard_store_delete_point (store, &c), 0);
    ck_assert_int_eq (shard_store_delete_point (store, &missing), 0);
    ck_assert_int_eq (shard_store_set_seq (store, 5), 0);
    ck_assert_int_eq (shard_store_commit (store), 0);
    json_decref (payload);
    shard_store_destroy (&store);

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 5);
    s_loaded_t loaded = { .count = 0 };
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, NULL), 0);
    ck_assert_uint_eq (loaded.count, 2);
    ck_assert_uint_eq (loaded.points [0].id.num, 42);
    ck_assert_uint_eq (loaded.points [0].version, 4);
    ck_assert_uint_eq (loaded.points [0].n_vecs, 0);
    ck_assert_str_eq (loaded.points [0].payload, "{\"new\":true}");
    ck_assert (loaded.points [1].id.is_uuid);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

START_TEST (test_rollback_and_close_without_commit_discard_writes)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    pointid_t a = s_num (42), d = s_num (7);
    ck_assert_int_eq (shard_store_begin (store), 0);
    ck_assert_int_eq (shard_store_delete_point (store, &a), 0);
    ck_assert_int_eq (shard_store_set_seq (store, 9), 0);
    shard_store_rollback (store);
    ck_assert_uint_eq (shard_store_seq (store), 3);
    //  An open transaction at close is rolled back too.
    ck_assert_int_eq (shard_store_begin (store), 0);
    ck_assert_int_eq (shard_store_put_point (store, &d, 10, NULL, 0, NULL), 0);
    ck_assert_int_eq (shard_store_set_seq (store, 10), 0);
    shard_store_destroy (&store);

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 3);
    s_loaded_t loaded = { .count = 0 };
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, NULL), 0);
    ck_assert_uint_eq (loaded.count, 3);
    ck_assert_uint_eq (loaded.points [1].id.num, 42);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

//  Deferred turns (a transfer target's batches): written in order by the
//  writer, several turns to a transaction, durable after the sync, with the
//  last turn's seq; synchronous writes work again after it.
START_TEST (test_deferred_turns_are_written_in_order_and_survive_a_reopen)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    ck_assert (!shard_store_deferring (store));
    segment_vec_t vecs [2];
    s_two_vectors (vecs);
    json_t *payload = json_pack ("{sb}", "new", 1);
    pointid_t a = s_num (42), c = s_num (1), p500 = s_num (500), p600 = s_num (600),
              p700 = s_num (700);
    ck_assert_int_eq (shard_store_defer_put (store, &a, 4, NULL, 0, payload), 0);
    ck_assert (shard_store_deferring (store));
    ck_assert_int_eq (shard_store_defer_delete (store, &c), 0);
    ck_assert_int_eq (shard_store_defer_turn (store, 4), 0);
    ck_assert_int_eq (shard_store_defer_put (store, &p500, 5, vecs, 2, NULL), 0);
    ck_assert_int_eq (shard_store_defer_turn (store, 5), 0);
    ck_assert_int_eq (shard_store_defer_delete (store, &p500), 0);
    ck_assert_int_eq (shard_store_defer_put (store, &p600, 6, vecs, 1, payload), 0);
    ck_assert_int_eq (shard_store_defer_turn (store, 6), 0);
    //  A turn with no writes still moves the seq on.
    ck_assert_int_eq (shard_store_defer_turn (store, 7), 0);
    //  A point that cannot be stored is refused and queues nothing.
    json_t *not_object = json_integer (3);
    ck_assert_int_eq (shard_store_defer_put (store, &p700, 8, NULL, 0, not_object),
                      -SH_EINVAL);
    json_decref (not_object);
    ck_assert_int_eq (shard_store_defer_sync (store), 0);
    ck_assert (!shard_store_deferring (store));
    ck_assert_uint_eq (shard_store_seq (store), 7);
    ck_assert_int_eq (shard_store_defer_sync (store), 0);      //  nothing deferred
    ck_assert_int_eq (shard_store_begin (store), 0);
    ck_assert_int_eq (shard_store_put_point (store, &p700, 8, NULL, 0, NULL), 0);
    ck_assert_int_eq (shard_store_set_seq (store, 8), 0);
    ck_assert_int_eq (shard_store_commit (store), 0);
    json_decref (payload);
    shard_store_destroy (&store);

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 8);
    s_loaded_t loaded = { .count = 0 };
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, NULL), 0);
    ck_assert_uint_eq (loaded.count, 4);
    ck_assert_uint_eq (loaded.points [0].id.num, 42);
    ck_assert_uint_eq (loaded.points [0].version, 4);
    ck_assert_str_eq (loaded.points [0].payload, "{\"new\":true}");
    ck_assert_uint_eq (loaded.points [1].id.num, 600);
    ck_assert_uint_eq (loaded.points [1].version, 6);
    ck_assert_uint_eq (loaded.points [1].n_vecs, 1);
    ck_assert_float_eq (loaded.points [1].first [0], 1.5f);
    ck_assert_uint_eq (loaded.points [2].id.num, 700);
    ck_assert (loaded.points [3].id.is_uuid);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

static int
s_count (const shard_store_point_t *point, void *arg)
{
    (*(size_t *) arg)++;
    return 0;
}

//  Closing the store writes what was handed over (a turn still being
//  filled is dropped, as an uncommitted transaction is); many turns queued
//  faster than they are written all arrive.
START_TEST (test_destroy_writes_every_turn_handed_over)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    float row [128];
    for (int d = 0; d < 128; d++)
        row [d] = (float) d;
    segment_vec_t vec = { .name = "", .dense = row, .dim = 128 };
    json_t *payload = json_pack ("{si}", "sel", 5);
    uint64_t next = 1;
    for (uint64_t turn = 1; turn <= 200; turn++) {
        for (int i = 0; i < 100; i++) {
            pointid_t id = s_num (next++);
            ck_assert_int_eq (shard_store_defer_put (store, &id, turn, &vec, 1, payload), 0);
        }
        ck_assert_int_eq (shard_store_defer_turn (store, turn), 0);
    }
    pointid_t dropped = s_num (next);
    ck_assert_int_eq (shard_store_defer_put (store, &dropped, 201, &vec, 1, payload), 0);
    json_decref (payload);
    shard_store_destroy (&store);

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    ck_assert_uint_eq (shard_store_seq (store), 200);
    size_t count = 0;
    ck_assert_int_eq (shard_store_load (store, s_count, &count, NULL), 0);
    ck_assert_uint_eq (count, 20000);
    shard_store_destroy (&store);
}
END_TEST

//  Runs one SQL statement on the store's file behind its back.
static void
s_tamper (const char *sql)
{
    char path [600];
    snprintf (path, sizeof path, "%s/%s", s_dir, SHARD_STORE_FILE);
    sqlite3 *db = NULL;
    ck_assert_int_eq (sqlite3_open (path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    ck_assert_msg (rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_close (db);
}

START_TEST (test_load_skips_and_counts_corrupt_rows)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    shard_store_destroy (&store);
    //  Point 42 (key 00 ... 2a): a vectors blob cut short.
    s_tamper ("UPDATE points SET vectors = substr (vectors, 1, 10) "
              "WHERE key = x'000000000000000000000000000000002a'");
    //  Point 1: a payload that is not an object.
    s_tamper ("UPDATE points SET payload = '[1,2' "
              "WHERE key = x'0000000000000000000000000000000001'");
    //  A row whose key is no point id.
    s_tamper ("INSERT INTO points VALUES (x'0102', 1, x'0100000000', NULL)");

    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_loaded_t loaded = { .count = 0 };
    size_t corrupt = 0;
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, &corrupt), 0);
    ck_assert_uint_eq (corrupt, 3);
    ck_assert_uint_eq (loaded.count, 1);
    ck_assert (loaded.points [0].id.is_uuid);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

START_TEST (test_load_stops_with_the_callbacks_error)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    s_write_three (store);
    s_loaded_t loaded = { .count = 0, .stop_after = 2 };
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, NULL), -SH_EINTERNAL);
    ck_assert_uint_eq (loaded.count, 2);
    s_loaded_free (&loaded);
    //  The statement was reset: a second load starts over.
    loaded.stop_after = 0;
    ck_assert_int_eq (shard_store_load (store, s_collect, &loaded, NULL), 0);
    ck_assert_uint_eq (loaded.count, 3);
    s_loaded_free (&loaded);
    shard_store_destroy (&store);
}
END_TEST

START_TEST (test_open_refuses_a_newer_format)
{
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), 0);
    shard_store_destroy (&store);
    s_tamper ("UPDATE meta SET value = 99 WHERE name = 'format'");
    ck_assert_int_eq (shard_store_open (s_dir, &store), -SH_EIO);
    ck_assert_ptr_null (store);
}
END_TEST

START_TEST (test_open_refuses_a_file_that_is_not_a_database)
{
    char path [600];
    snprintf (path, sizeof path, "%s/%s", s_dir, SHARD_STORE_FILE);
    FILE *file = fopen (path, "w");
    ck_assert_ptr_nonnull (file);
    for (int i = 0; i < 200; i++)
        fputs ("this is not sqlite ", file);
    fclose (file);
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (s_dir, &store), -SH_EIO);
    ck_assert_ptr_null (store);
}
END_TEST

START_TEST (test_open_fails_cleanly_on_a_missing_dir)
{
    char path [600];
    snprintf (path, sizeof path, "%s/no/such/dir", s_dir);
    shard_store_t *store = NULL;
    ck_assert_int_eq (shard_store_open (path, &store), -SH_EIO);
    ck_assert_ptr_null (store);
}
END_TEST

static Suite *
shard_store_suite (void)
{
    Suite *s = suite_create ("shard_store");
    TCase *blob = tcase_create ("vectors_blob");
    tcase_add_test (blob, test_vectors_blob_round_trips_dense_and_sparse);
    tcase_add_test (blob, test_vectors_blob_with_no_vectors_round_trips);
    tcase_add_test (blob, test_decode_rejects_every_truncation_of_a_blob);
    tcase_add_test (blob, test_decode_rejects_bad_version_count_kind_and_trailing_bytes);
    tcase_add_test (blob, test_decode_rejects_a_name_with_a_nul_byte);
    suite_add_tcase (s, blob);

    TCase *db = tcase_create ("database");
    tcase_add_checked_fixture (db, s_setup, s_teardown);
    tcase_add_test (db, test_new_store_has_seq_zero_and_no_points);
    tcase_add_test (db, test_points_survive_a_reopen_in_id_order);
    tcase_add_test (db, test_put_replaces_and_delete_removes_across_reopen);
    tcase_add_test (db, test_rollback_and_close_without_commit_discard_writes);
    tcase_add_test (db, test_load_skips_and_counts_corrupt_rows);
    tcase_add_test (db, test_load_stops_with_the_callbacks_error);
    tcase_add_test (db, test_open_refuses_a_newer_format);
    tcase_add_test (db, test_open_refuses_a_file_that_is_not_a_database);
    tcase_add_test (db, test_open_fails_cleanly_on_a_missing_dir);
    tcase_add_test (db, test_deferred_turns_are_written_in_order_and_survive_a_reopen);
    tcase_add_test (db, test_destroy_writes_every_turn_handed_over);
    suite_add_tcase (s, db);
    return s;
}

SH_CHECK_MAIN (shard_store_suite)
