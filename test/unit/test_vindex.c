/*  test_vindex: params read from a collection config as Qdrant layers them;
    no graph below the indexing threshold, one above it, built by
    vindex_work until every vector is marked indexed; writes clear marks
    and upkeep relinks changed slots and deletes removed ones; graph search
    returns only indexed slots; a save and load round trip puts points back
    in their slots and re-indexes only what changed after the save; a
    corrupt manifest or truncated graph file is rebuilt, never trusted; a
    change of m drops the graph; many deletes trigger a rebuild that keeps
    every current slot; several insert threads build one graph.
*/
#include "actors/shard/rwgate.h"
#include "actors/shard/vindex.h"
#include "common/err.h"
#include "common/paths.h"
#include "test/unit/check_main.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 8

static uint64_t s_rng = 88172645463325252ULL;

static float
s_randf (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float) ((s_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static pointid_t
s_num (uint64_t n)
{
    pointid_t id;
    memset (&id, 0, sizeof id);
    id.num = n;
    return id;
}

static json_t *
s_json (const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, 0, &error);
    ck_assert_msg (json, "bad test JSON: %s", text);
    return json;
}

static segment_t *
s_segment (void)
{
    segment_vspec_t spec;
    memset (&spec, 0, sizeof spec);
    spec.dim = DIM;
    spec.distance = DIST_EUCLID;
    segment_t *seg = segment_new (&spec, 1);
    ck_assert_ptr_nonnull (seg);
    return seg;
}

static void
s_put (segment_t *seg, uint64_t id, uint64_t version, const float *v)
{
    pointid_t pid = s_num (id);
    segment_vec_t vec = { .name = "", .dense = v, .dim = DIM };
    char err [128];
    ck_assert_int_eq (segment_upsert (seg, &pid, version, &vec, 1, NULL, err, sizeof err), 0);
}

static void
s_put_random (segment_t *seg, uint64_t id, uint64_t version)
{
    float v [DIM];
    for (int d = 0; d < DIM; d++)
        v [d] = s_randf ();
    s_put (seg, id, version, v);
}

//  A fresh temp dir.
static char *
s_tempdir (void)
{
    char *dir = strdup ("/tmp/test_vindex.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (dir));
    return dir;
}

//  Insert threads: the default, one per core.
static const vindex_params_t s_low = { .m = 8, .ef_construct = 64, .full_scan_kb = 0,
                                       .indexing_kb = 1 };

static void
s_work_all (vindex_t *vi)
{
    int rounds = 0;
    while (vindex_work (vi, NULL, NULL))
        ck_assert_int_lt (++rounds, 1000);
}

START_TEST (test_params_follow_qdrant_layering)
{
    vindex_params_t p;
    vindex_params_from_config (NULL, "", &p);
    ck_assert_uint_eq (p.m, 16);
    ck_assert_uint_eq (p.ef_construct, 100);
    ck_assert_uint_eq (p.full_scan_kb, 10000);
    ck_assert_uint_eq (p.indexing_kb, 10000);
    json_t *config = s_json (
        "{\"params\": {\"vectors\": {\"a\": {\"size\": 4, \"distance\": \"Dot\", "
        "\"hnsw_config\": {\"m\": 32, \"full_scan_threshold\": null}}, "
        "\"b\": {\"size\": 4, \"distance\": \"Dot\"}}}, "
        "\"hnsw_config\": {\"m\": 8, \"ef_construct\": 50, \"full_scan_threshold\": 20}, "
        "\"optimizer_config\": {\"indexing_threshold\": 0}}");
    vindex_params_from_config (config, "a", &p);
    ck_assert_uint_eq (p.m, 32);
    ck_assert_uint_eq (p.ef_construct, 50);
    ck_assert_uint_eq (p.full_scan_kb, 20);
    ck_assert_uint_eq (p.indexing_kb, 0);
    vindex_params_from_config (config, "b", &p);
    ck_assert_uint_eq (p.m, 8);
    json_decref (config);
    //  One unnamed vector: its own hnsw_config is the default vector's.
    config = s_json ("{\"params\": {\"vectors\": {\"size\": 4, \"distance\": \"Dot\", "
                     "\"hnsw_config\": {\"ef_construct\": 64}}}, "
                     "\"optimizers_config\": {\"indexing_threshold\": 77}}");
    vindex_params_from_config (config, "", &p);
    ck_assert_uint_eq (p.ef_construct, 64);
    ck_assert_uint_eq (p.indexing_kb, 77);
    json_decref (config);
}
END_TEST

START_TEST (test_no_graph_below_the_indexing_threshold)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_params_t p = s_low;
    p.indexing_kb = 4;          //  4096 bytes = 128 vectors of 8 floats
    ck_assert_int_eq (vindex_configure (vi, "", &p), 0);
    ck_assert_int_eq (vindex_configure (vi, "nope", &p), -SH_EINVAL);
    for (uint64_t i = 0; i < 127; i++)
        s_put_random (seg, i, 1);
    ck_assert (!vindex_work (vi, NULL, NULL));
    ck_assert (!vindex_has_graph (vi, ""));
    ck_assert (!vindex_behind (vi));
    s_put_random (seg, 127, 2);
    ck_assert (vindex_behind (vi));     //  over the threshold, nothing indexed yet
    s_work_all (vi);
    ck_assert (vindex_has_graph (vi, ""));
    ck_assert (!vindex_behind (vi));
    ck_assert_uint_eq (vindex_indexed_count (vi), 128);
    //  Indexing off: never a graph.
    segment_t *seg2 = s_segment ();
    vindex_t *off = vindex_new (seg2, dir);
    p.indexing_kb = 0;
    vindex_configure (off, "", &p);
    for (uint64_t i = 0; i < 500; i++)
        s_put_random (seg2, i, 1);
    ck_assert (!vindex_work (off, NULL, NULL));
    ck_assert (!vindex_has_graph (off, ""));
    ck_assert (!vindex_behind (off));
    vindex_destroy (&off);
    segment_destroy (&seg2);
    vindex_destroy (&vi);
    ck_assert_ptr_null (vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
}
END_TEST

//  Brute-force nearest slots to q among marked ones.
static size_t
s_recall (segment_t *seg, vindex_t *vi, int queries, size_t k)
{
    size_t found = 0;
    uint32_t *slots = malloc (k * sizeof *slots);
    segment_hit_t *truth = malloc (k * sizeof *truth);
    for (int qi = 0; qi < queries; qi++) {
        float q [DIM];
        for (int d = 0; d < DIM; d++)
            q [d] = s_randf ();
        segment_search_t req = { .name = "", .query = { .name = "", .dense = q, .dim = DIM },
                                 .limit = k };
        char err [64];
        int nt = segment_search (seg, &req, truth, err, sizeof err);
        size_t n = vindex_search (vi, "", q, k, 64, NULL, NULL, slots);
        for (size_t i = 0; i < n; i++) {
            ck_assert (segment_is_indexed (seg, "", slots [i]));
            for (int j = 0; j < nt; j++)
                if (pointid_eq (segment_slot_id (seg, slots [i]), &truth [j].id))
                    found++;
        }
    }
    free (slots);
    free (truth);
    return found;
}

START_TEST (test_upkeep_follows_writes_and_search_returns_indexed_slots_only)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    for (uint64_t i = 0; i < 2000; i++)
        s_put_random (seg, i, 1);
    vindex_after_writes (vi, 1);
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), 2000);
    ck_assert_uint_ge (s_recall (seg, vi, 50, 10), 50 * 10 * 95 / 100);
    //  Writes: 100 changed, 100 deleted, 100 new. The changed and new are
    //  unmarked until upkeep; the deleted ones are never returned.
    for (uint64_t i = 0; i < 100; i++) {
        s_put_random (seg, i, 2);
        pointid_t gone = s_num (1000 + i);
        ck_assert_int_eq (segment_delete (seg, &gone), 0);
        s_put_random (seg, 5000 + i, 2);
    }
    vindex_after_writes (vi, 2);
    ck_assert_uint_eq (vindex_indexed_count (vi), 1800);
    ck_assert (vindex_behind (vi));
    float q [DIM] = { 0 };
    uint32_t slots [2000];
    size_t n = vindex_search (vi, "", q, 2000, 2000, NULL, NULL, slots);
    ck_assert_uint_eq (n, 1800);
    for (size_t i = 0; i < n; i++)
        ck_assert (segment_is_indexed (seg, "", slots [i]));
    s_work_all (vi);
    ck_assert (!vindex_behind (vi));
    ck_assert_uint_eq (vindex_indexed_count (vi), 2000);
    n = vindex_search (vi, "", q, 2000, 2000, NULL, NULL, slots);
    ck_assert_uint_eq (n, 2000);
    for (size_t i = 0; i < n; i++) {
        ck_assert (segment_slot_live (seg, slots [i]));
        const pointid_t *id = segment_slot_id (seg, slots [i]);
        ck_assert (id->num < 1000 || id->num >= 1100);
    }
    ck_assert_uint_ge (s_recall (seg, vi, 50, 10), 50 * 10 * 95 / 100);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
}
END_TEST

//  Builds a segment of n points (version 1) and indexes it; returns the
//  vectors (n x DIM) for a reload.
static float *
s_fill (segment_t *seg, vindex_t *vi, uint64_t n)
{
    float *data = malloc (n * DIM * sizeof (float));
    for (uint64_t i = 0; i < n; i++) {
        for (int d = 0; d < DIM; d++)
            data [i * DIM + d] = s_randf ();
        s_put (seg, i, 1, data + i * DIM);
    }
    vindex_after_writes (vi, 1);
    s_work_all (vi);
    return data;
}

//  Reloads: a new segment and vindex over dir, points given back in id
//  order with their versions, as the shard store does.
static void
s_reload (const char *dir, const float *data, const uint64_t *versions, const bool *gone,
          uint64_t n, uint64_t seq, segment_t **seg_p, vindex_t **vi_p)
{
    segment_t *seg = s_segment ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    ck_assert_int_eq (vindex_load_begin (vi, seq), 0);
    for (uint64_t i = 0; i < n; i++) {
        if (gone && gone [i])
            continue;
        pointid_t id = s_num (i);
        segment_vec_t vec = { .name = "", .dense = data + i * DIM, .dim = DIM };
        char err [128];
        uint32_t slot;
        int rc = vindex_slot_hint (vi, &id, &slot)
               ? segment_upsert_at (seg, slot, &id, versions [i], &vec, 1, NULL, err,
                                    sizeof err)
               : segment_upsert (seg, &id, versions [i], &vec, 1, NULL, err, sizeof err);
        ck_assert_int_eq (rc, 0);
    }
    vindex_load_end (vi, seq);
    *seg_p = seg;
    *vi_p = vi;
}

START_TEST (test_save_and_load_reindex_only_what_changed)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    enum { N = 1500 };
    //  Deletes first, so slots are reused and differ from id order.
    float *data = s_fill (seg, vi, N);
    for (uint64_t i = 0; i < 50; i++) {
        pointid_t id = s_num (i * 7);
        segment_delete (seg, &id);
    }
    for (uint64_t i = 0; i < 50; i++)
        s_put (seg, i * 7, 2, data + i * 7 * DIM);
    vindex_after_writes (vi, 2);
    s_work_all (vi);
    ck_assert (vindex_save_due (vi, true));
    ck_assert_int_eq (vindex_save (vi), 0);
    ck_assert (!vindex_save_due (vi, true));
    uint32_t slot_of [N];
    for (uint64_t i = 0; i < N; i++) {
        pointid_t id = s_num (i);
        ck_assert (segment_slot_of (seg, &id, &slot_of [i]));
    }
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  After the save: 10 points changed (version 3), 10 deleted.
    uint64_t versions [N];
    bool gone [N];
    for (uint64_t i = 0; i < N; i++) {
        versions [i] = i % 7 == 0 && i < 350 ? 2 : 1;
        gone [i] = false;
    }
    for (uint64_t i = 0; i < 10; i++) {
        versions [100 + i] = 3;
        for (int d = 0; d < DIM; d++)
            data [(100 + i) * DIM + d] = s_randf ();
        gone [200 + i] = true;
    }
    s_reload (dir, data, versions, gone, N, 3, &seg, &vi);
    for (uint64_t i = 0; i < N; i++) {
        pointid_t id = s_num (i);
        uint32_t slot;
        if (gone [i]) {
            ck_assert (!segment_slot_of (seg, &id, &slot));
            continue;
        }
        ck_assert (segment_slot_of (seg, &id, &slot));
        ck_assert_uint_eq (slot, slot_of [i]);
        ck_assert (segment_is_indexed (seg, "", slot) == (versions [i] <= 2));
    }
    ck_assert_uint_eq (vindex_indexed_count (vi), N - 20);
    ck_assert (vindex_behind (vi));
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), N - 10);
    ck_assert_uint_ge (s_recall (seg, vi, 50, 10), 50 * 10 * 95 / 100);
    //  The deleted points' slots are free again: a new point takes one.
    s_put_random (seg, 99999, 4);
    pointid_t fresh = s_num (99999);
    uint32_t slot;
    ck_assert (segment_slot_of (seg, &fresh, &slot));
    ck_assert_uint_lt (slot, N);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

//  The one graph file in dir.
static void
s_graph_file (const char *dir, char *path, size_t len)
{
    DIR *d = opendir (dir);
    ck_assert_ptr_nonnull (d);
    struct dirent *e;
    int found = 0;
    while ((e = readdir (d)))
        if (strncmp (e->d_name, "hnsw-", 5) == 0) {
            snprintf (path, len, "%s/%s", dir, e->d_name);
            found++;
        }
    closedir (d);
    ck_assert_int_eq (found, 1);
}

static void
s_truncate (const char *path, long keep_fraction_pct)
{
    FILE *f = fopen (path, "rb");
    ck_assert_ptr_nonnull (f);
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fclose (f);
    ck_assert_int_eq (truncate (path, size * keep_fraction_pct / 100), 0);
}

static void
s_flip_byte (const char *path, long at)
{
    FILE *f = fopen (path, "r+b");
    ck_assert_ptr_nonnull (f);
    fseek (f, at, SEEK_SET);
    int c = fgetc (f);
    fseek (f, at, SEEK_SET);
    fputc (c ^ 0x5a, f);
    fclose (f);
}

START_TEST (test_corrupt_or_truncated_files_are_rebuilt)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    enum { N = 600 };
    float *data = s_fill (seg, vi, N);
    ck_assert_int_eq (vindex_save (vi), 0);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    uint64_t versions [N];
    for (uint64_t i = 0; i < N; i++)
        versions [i] = 1;
    char graph [PATHS_MAX], manifest [PATHS_MAX];
    s_graph_file (dir, graph, sizeof graph);
    snprintf (manifest, sizeof manifest, "%s/%s", dir, VINDEX_MANIFEST);

    //  A truncated graph file: no graph, nothing marked; rebuilt by upkeep.
    s_truncate (graph, 60);
    s_reload (dir, data, versions, NULL, N, 1, &seg, &vi);
    ck_assert (!vindex_has_graph (vi, ""));
    ck_assert_uint_eq (vindex_indexed_count (vi), 0);
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), N);
    ck_assert_int_eq (vindex_save (vi), 0);
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  A flipped byte in the manifest: its checksum fails.
    s_flip_byte (manifest, 20);
    s_reload (dir, data, versions, NULL, N, 1, &seg, &vi);
    ck_assert (!vindex_has_graph (vi, ""));
    ck_assert_uint_eq (vindex_indexed_count (vi), 0);
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  A truncated manifest.
    s_truncate (manifest, 50);
    s_reload (dir, data, versions, NULL, N, 1, &seg, &vi);
    ck_assert (!vindex_has_graph (vi, ""));
    s_work_all (vi);
    ck_assert_int_eq (vindex_save (vi), 0);
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  A store behind the save (another store's files): not used.
    s_reload (dir, data, versions, NULL, N, 0, &seg, &vi);
    ck_assert (!vindex_has_graph (vi, ""));
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  Untouched files load: everything current at once.
    s_reload (dir, data, versions, NULL, N, 1, &seg, &vi);
    ck_assert (vindex_has_graph (vi, ""));
    ck_assert_uint_eq (vindex_indexed_count (vi), N);
    ck_assert (!vindex_behind (vi));
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

START_TEST (test_a_new_m_drops_the_graph_and_a_config_mismatch_skips_the_file)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    float *data = s_fill (seg, vi, 300);
    ck_assert_int_eq (vindex_save (vi), 0);
    vindex_params_t p = s_low;
    p.full_scan_kb = 99;            //  not a graph parameter: kept
    vindex_configure (vi, "", &p);
    ck_assert (vindex_has_graph (vi, ""));
    ck_assert_uint_eq (vindex_indexed_count (vi), 300);
    p.m = 12;
    vindex_configure (vi, "", &p);
    ck_assert (!vindex_has_graph (vi, ""));
    ck_assert_uint_eq (vindex_indexed_count (vi), 0);
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), 300);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    //  The saved graph has m = 8; a vindex configured with m = 12 skips it.
    seg = s_segment ();
    vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &p);
    vindex_load_begin (vi, 1);
    pointid_t id = s_num (0);
    uint32_t slot;
    ck_assert (!vindex_slot_hint (vi, &id, &slot));
    vindex_load_end (vi, 1);
    ck_assert (!vindex_has_graph (vi, ""));
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

START_TEST (test_many_deletes_rebuild_the_graph_with_every_current_slot)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    enum { N = 3000 };
    float *data = s_fill (seg, vi, N);
    //  Delete 40%: the graph keeps them as deleted nodes, then rebuilds.
    for (uint64_t i = 0; i < N; i += 5) {
        pointid_t a = s_num (i), b = s_num (i + 1);
        segment_delete (seg, &a);
        segment_delete (seg, &b);
    }
    vindex_after_writes (vi, 2);
    s_work_all (vi);
    ck_assert (vindex_swap_due (vi));
    //  A write between the rebuild and the swap: its slot is relinked after.
    s_put_random (seg, 2, 3);
    vindex_after_writes (vi, 3);
    vindex_swap (vi);
    ck_assert (!vindex_swap_due (vi));
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), segment_size (seg));
    ck_assert (!vindex_behind (vi));
    float q [DIM] = { 0 };
    uint32_t slots [N];
    size_t n = vindex_search (vi, "", q, N, N, NULL, NULL, slots);
    ck_assert_uint_eq (n, segment_size (seg));
    ck_assert_uint_ge (s_recall (seg, vi, 50, 10), 50 * 10 * 95 / 100);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

START_TEST (test_several_threads_build_one_graph)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_params_t p = s_low;
    p.threads = 4;
    p.m = 16;
    vindex_configure (vi, "", &p);
    for (uint64_t i = 0; i < 5000; i++)
        s_put_random (seg, i, 1);
    vindex_after_writes (vi, 1);
    s_work_all (vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), 5000);
    ck_assert (!vindex_behind (vi));
    ck_assert_uint_ge (s_recall (seg, vi, 100, 10), 100 * 10 * 95 / 100);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
}
END_TEST


//  The graph reads rows at the segment's stride: with dim 20 rows are 32
//  floats apart, and every point is still found by its own vector.
START_TEST (test_the_graph_reads_padded_rows)
{
    segment_vspec_t spec;
    memset (&spec, 0, sizeof spec);
    spec.dim = 20;
    spec.distance = DIST_EUCLID;
    segment_t *seg = segment_new (&spec, 1);
    ck_assert_uint_eq (segment_dense_stride (seg, ""), 32);
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    enum { N = 3000 };
    float *data = malloc ((size_t) N * 20 * sizeof (float));
    for (uint64_t i = 0; i < N; i++) {
        for (int d = 0; d < 20; d++)
            data [i * 20 + d] = s_randf ();
        pointid_t id = s_num (i);
        segment_vec_t vec = { .name = "", .dense = data + i * 20, .dim = 20 };
        char err [128];
        ck_assert_int_eq (segment_upsert (seg, &id, 1, &vec, 1, NULL, err, sizeof err), 0);
        //  Growth moves the array while the graph is built.
        if (i % 1000 == 999) {
            vindex_after_writes (vi, 1);
            s_work_all (vi);
        }
    }
    ck_assert_uint_eq (vindex_indexed_count (vi), N);
    size_t found = 0;
    for (uint64_t i = 0; i < N; i += 10) {
        uint32_t slot, got;
        pointid_t id = s_num (i);
        ck_assert (segment_slot_of (seg, &id, &slot));
        found += vindex_search (vi, "", data + i * 20, 1, 64, NULL, NULL, &got) == 1
              && got == slot;
    }
    ck_assert_uint_ge (found, N / 10 * 99 / 100);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

//  --- a save beside writes ----------------------------------------------------

typedef struct {
    segment_t *seg;             //  shared segment
    vindex_t *vi;               //  its vindex
    rwgate_t *gate;             //  the gate over both
    uint64_t first_id;          //  ids this writer adds start here
    int turns;                  //  write turns to make
    int done;                   //  atomic: turns made
    size_t searches;            //  atomic: searches made
    vindex_save_t *snap;        //  finisher: the save to write
    int rc;                     //  finisher: what it returned
} s_side_t;

static void *
s_finisher (void *arg)
{
    s_side_t *side = arg;
    side->rc = vindex_save_finish (side->vi, &side->snap);
    return NULL;
}

//  Write turns as the shard's main thread makes them: new points, changed
//  vectors, deletes, the graph told where the arrays went.
static void *
s_writer (void *arg)
{
    s_side_t *side = arg;
    for (int t = 0; t < side->turns; t++) {
        rwgate_write_lock (side->gate);
        uint64_t seq = 100 + (uint64_t) t;
        for (uint64_t i = 0; i < 40; i++)
            s_put_random (side->seg, side->first_id + (uint64_t) t * 40 + i, seq);
        for (uint64_t i = 0; i < 10; i++)
            s_put_random (side->seg, (uint64_t) (t * 10 + i) % 500, seq);
        pointid_t id = s_num (600 + (uint64_t) t);
        segment_delete (side->seg, &id);
        vindex_after_writes (side->vi, seq);
        rwgate_write_unlock (side->gate);
        __atomic_store_n (&side->done, t + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *
s_searcher (void *arg)
{
    s_side_t *side = arg;
    do {
        ck_assert (rwgate_read_lock (side->gate));
        float q [DIM];
        for (int d = 0; d < DIM; d++)
            q [d] = 0.5f;
        uint32_t slots [10];
        vindex_search (side->vi, "", q, 10, 32, NULL, NULL, slots);
        rwgate_read_unlock (side->gate);
        __atomic_fetch_add (&side->searches, 1, __ATOMIC_RELAXED);
    } while (__atomic_load_n (&side->done, __ATOMIC_ACQUIRE) < side->turns);
    return NULL;
}

//  A save holds the gate only while it takes what it writes: the files are
//  written while a writer holds the gate (it used to hold the read side
//  throughout, so a writer waited for every fsync of a large save), and
//  they are the state taken, whatever the writes after it did (the graph
//  dropped meanwhile included).
START_TEST (test_a_save_writes_what_it_took_while_a_writer_holds_the_gate)
{
    segment_t *seg = s_segment ();
    char *dir = s_tempdir ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_configure (vi, "", &s_low);
    rwgate_t *gate = rwgate_new ();
    enum { N = 3000 };
    float *data = s_fill (seg, vi, N);
    ck_assert_uint_eq (vindex_indexed_count (vi), N);

    ck_assert (rwgate_read_lock (gate));
    ck_assert (vindex_save_due (vi, true));
    vindex_save_t *snap = vindex_save_begin (vi);
    ck_assert_ptr_nonnull (snap);
    rwgate_read_unlock (gate);

    //  The writer takes the gate and keeps it while the save is written:
    //  points move, go and come, and a new m drops the graph being saved.
    rwgate_write_lock (gate);
    for (uint64_t i = 0; i < 200; i++)
        s_put_random (seg, i, 2);
    for (uint64_t i = 0; i < 5000; i++)
        s_put_random (seg, N + i, 2);
    for (uint64_t i = 300; i < 400; i++) {
        pointid_t id = s_num (i);
        ck_assert_int_eq (segment_delete (seg, &id), 0);
    }
    vindex_after_writes (vi, 2);
    vindex_params_t other = s_low;
    other.m = 12;
    vindex_configure (vi, "", &other);
    ck_assert (!vindex_has_graph (vi, ""));
    s_side_t fin = { .vi = vi, .snap = snap, .rc = -1 };
    pthread_t thread;
    ck_assert_int_eq (pthread_create (&thread, NULL, s_finisher, &fin), 0);
    pthread_join (thread, NULL);
    rwgate_write_unlock (gate);
    ck_assert_int_eq (fin.rc, 0);
    ck_assert_ptr_null (fin.snap);
    vindex_destroy (&vi);
    segment_destroy (&seg);

    //  The save is the state at seq 1: every point there, all indexed.
    uint64_t versions [N];
    for (uint64_t i = 0; i < N; i++)
        versions [i] = 1;
    s_reload (dir, data, versions, NULL, N, 1, &seg, &vi);
    ck_assert_uint_eq (vindex_indexed_count (vi), N);
    ck_assert (!vindex_behind (vi));
    ck_assert_uint_ge (s_recall (seg, vi, 50, 10), 50 * 10 * 95 / 100);

    //  And once more with a writer and a searcher running while the files
    //  are written (for the sanitizers): all of them finish.
    ck_assert (rwgate_read_lock (gate));
    s_side_t side = { .seg = seg, .vi = vi, .gate = gate, .first_id = 100000,
                      .turns = 30 };
    side.snap = vindex_save_begin (vi);
    rwgate_read_unlock (gate);
    pthread_t threads [2];
    ck_assert_int_eq (pthread_create (&threads [0], NULL, s_writer, &side), 0);
    ck_assert_int_eq (pthread_create (&threads [1], NULL, s_searcher, &side), 0);
    ck_assert_int_eq (vindex_save_finish (vi, &side.snap), 0);
    pthread_join (threads [0], NULL);
    pthread_join (threads [1], NULL);
    ck_assert_int_eq (side.done, 30);
    ck_assert_uint_gt (side.searches, 0);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    rwgate_destroy (&gate);
    paths_remove_tree (dir);
    free (dir);
    free (data);
}
END_TEST

static Suite *
vindex_suite (void)
{
    Suite *s = suite_create ("vindex");
    TCase *tc = tcase_create ("vindex");
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_params_follow_qdrant_layering);
    tcase_add_test (tc, test_no_graph_below_the_indexing_threshold);
    tcase_add_test (tc, test_upkeep_follows_writes_and_search_returns_indexed_slots_only);
    tcase_add_test (tc, test_save_and_load_reindex_only_what_changed);
    tcase_add_test (tc, test_corrupt_or_truncated_files_are_rebuilt);
    tcase_add_test (tc, test_a_new_m_drops_the_graph_and_a_config_mismatch_skips_the_file);
    tcase_add_test (tc, test_many_deletes_rebuild_the_graph_with_every_current_slot);
    tcase_add_test (tc, test_several_threads_build_one_graph);
    tcase_add_test (tc, test_the_graph_reads_padded_rows);
    tcase_add_test (tc, test_a_save_writes_what_it_took_while_a_writer_holds_the_gate);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (vindex_suite)
