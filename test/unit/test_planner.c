/*  test_planner: a search answered through the graph equals the exact one
    where the graph finds everything (same ids, same scores); points the
    graph does not hold yet (new, changed) are found by the exact part;
    deleted points never come back; filters, score thresholds, exact=true,
    sparse vectors and the full-scan threshold behave as the exact scan.
*/
#include "actors/shard/planner.h"
#include "common/err.h"
#include "common/paths.h"
#include "test/unit/check_main.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM 8
#define N 1500

static uint64_t s_rng = 0x2545F4914F6CDD1DULL;

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

typedef struct {
    segment_t *seg;
    vindex_t *vi;
    pindex_t *pi;
    planner_t plan;
    char *dir;
    distance_t distance;
} s_fix_t;

//  Keeps the payload indexes in step with the segment, as the shard does.
static void
s_observe (uint32_t slot, const json_t *old_payload, bool was_live, const json_t *new_payload,
           bool is_live, void *arg)
{
    pindex_t *pi = arg;
    if (was_live)
        ck_assert_int_eq (pindex_remove_point (pi, slot, old_payload), 0);
    if (is_live)
        ck_assert_int_eq (pindex_add_point (pi, slot, new_payload), 0);
}

static void
s_put (s_fix_t *f, uint64_t id, uint64_t version, const float *v)
{
    pointid_t pid = s_num (id);
    segment_vec_t vecs [2] = { { .name = "", .dense = v, .dim = DIM } };
    uint32_t idx [2] = { (uint32_t) (id % 5), 7 };
    float val [2] = { 1.0f, (float) (id % 3) };
    vecs [1] = (segment_vec_t) { .name = "sp", .indices = idx, .values = val, .nnz = 2 };
    char payload [64];
    snprintf (payload, sizeof payload, "{\"g\": %u, \"r\": %u, \"k\": \"k%u\"}",
              (unsigned) (id % 4), (unsigned) (id % 100), (unsigned) (id % 2));
    json_t *p = json_loads (payload, 0, NULL);
    char err [128];
    ck_assert_int_eq (segment_upsert (f->seg, &pid, version, vecs, 2, p, err, sizeof err), 0);
    json_decref (p);
}

static void
s_setup (s_fix_t *f, distance_t distance, uint64_t full_scan_kb)
{
    segment_vspec_t specs [2];
    memset (specs, 0, sizeof specs);
    specs [0].dim = DIM;
    specs [0].distance = distance;
    snprintf (specs [1].name, sizeof specs [1].name, "sp");
    specs [1].sparse = true;
    f->distance = distance;
    f->seg = segment_new (specs, 2);
    f->dir = strdup ("/tmp/test_planner.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (f->dir));
    f->vi = vindex_new (f->seg, f->dir);
    f->pi = pindex_new ();
    segment_set_observer (f->seg, s_observe, f->pi);
    char err [128];
    json_t *integer = json_string ("integer"), *keyword = json_string ("keyword");
    ck_assert_int_eq (pindex_create_field (f->pi, "r", integer, NULL, NULL, err, sizeof err), 0);
    ck_assert_int_eq (pindex_create_field (f->pi, "k", keyword, NULL, NULL, err, sizeof err), 0);
    json_decref (integer);
    json_decref (keyword);
    f->plan = (planner_t) { f->seg, f->vi, f->pi };
    //  One insert thread: these tests want every node reachable (a graph
    //  built by several threads can leave one out).
    vindex_params_t p = { .m = 16, .ef_construct = 200, .full_scan_kb = full_scan_kb,
                          .indexing_kb = 1, .threads = 1 };
    ck_assert_int_eq (vindex_configure (f->vi, "", &p), 0);
    for (uint64_t i = 0; i < N; i++) {
        float v [DIM];
        for (int d = 0; d < DIM; d++)
            v [d] = s_randf ();
        s_put (f, i, 1, v);
    }
    vindex_after_writes (f->vi, 1);
    while (vindex_work (f->vi, NULL, NULL))
        ;
}

static void
s_teardown (s_fix_t *f)
{
    vindex_destroy (&f->vi);
    segment_destroy (&f->seg);
    pindex_destroy (&f->pi);
    paths_remove_tree (f->dir);
    free (f->dir);
}

//  planner and exact answers for q; returns the planner's count.
static int
s_both (s_fix_t *f, const float *q, size_t limit, const filter_t *filter, bool exact,
        segment_hit_t *got, segment_hit_t *want, int *n_want)
{
    planner_search_t req = {
        .search = { .name = "", .query = { .name = "", .dense = q, .dim = DIM },
                    .filter = filter, .limit = limit },
        .exact = exact, .ef = 400 };
    char err [128];
    int n = planner_search (&f->plan, &req, got, err, sizeof err);
    *n_want = segment_search (f->seg, &req.search, want, err, sizeof err);
    return n;
}

static void
s_check_equal (s_fix_t *f, const float *q, size_t limit, const filter_t *filter)
{
    segment_hit_t got [64], want [64];
    int nw;
    int n = s_both (f, q, limit, filter, false, got, want, &nw);
    ck_assert_int_eq (n, nw);
    for (int i = 0; i < n; i++) {
        ck_assert_msg (pointid_eq (&got [i].id, &want [i].id), "hit %d: id %llu, want %llu",
                       i, (unsigned long long) got [i].id.num,
                       (unsigned long long) want [i].id.num);
        ck_assert (got [i].score == want [i].score);
    }
}

static void
s_check_all_distances_match (distance_t d)
{
    s_fix_t f;
    s_setup (&f, d, 0);
    ck_assert (vindex_has_graph (f.vi, ""));
    for (int qi = 0; qi < 20; qi++) {
        float q [DIM];
        for (int k = 0; k < DIM; k++)
            q [k] = s_randf ();
        s_check_equal (&f, q, 10, NULL);
    }
    s_teardown (&f);
}

START_TEST (test_graph_answers_equal_exact_ones_euclid)
{
    s_check_all_distances_match (DIST_EUCLID);
}
END_TEST

START_TEST (test_graph_answers_equal_exact_ones_cosine)
{
    s_check_all_distances_match (DIST_COSINE);
}
END_TEST

START_TEST (test_graph_answers_equal_exact_ones_dot_and_manhattan)
{
    s_check_all_distances_match (DIST_DOT);
    s_check_all_distances_match (DIST_MANHATTAN);
}
END_TEST

START_TEST (test_points_the_graph_lacks_are_found_and_deleted_ones_never)
{
    s_fix_t f;
    s_setup (&f, DIST_EUCLID, 0);
    //  New point and changed point, both exactly at the query; a deleted
    //  point that was nearest before.
    float q [DIM];
    for (int k = 0; k < DIM; k++)
        q [k] = 5.0f + (float) k;
    float near [DIM];
    memcpy (near, q, sizeof near);
    near [0] += 0.001f;
    s_put (&f, 7, 1, near);
    vindex_after_writes (f.vi, 2);
    while (vindex_work (f.vi, NULL, NULL))
        ;
    segment_hit_t got [64], want [64];
    int nw;
    int n = s_both (&f, q, 3, NULL, false, got, want, &nw);
    ck_assert_uint_eq (got [0].id.num, 7);
    //  Writes after the graph: no upkeep runs between them and the search.
    pointid_t seven = s_num (7);
    ck_assert_int_eq (segment_delete (f.seg, &seven), 0);
    s_put (&f, 90001, 3, q);            //  new
    s_put (&f, 11, 3, near);            //  changed
    vindex_after_writes (f.vi, 3);
    n = s_both (&f, q, 3, NULL, false, got, want, &nw);
    ck_assert_int_eq (n, 3);
    ck_assert_uint_eq (got [0].id.num, 90001);
    ck_assert_uint_eq (got [1].id.num, 11);
    for (int i = 0; i < n; i++)
        ck_assert_uint_ne (got [i].id.num, 7);
    s_check_equal (&f, q, 10, NULL);
    s_teardown (&f);
}
END_TEST

START_TEST (test_filters_thresholds_and_exact_as_the_exact_scan)
{
    s_fix_t f;
    s_setup (&f, DIST_DOT, 0);
    json_t *json = json_loads ("{\"must\": [{\"key\": \"g\", \"match\": {\"value\": 2}}]}", 0,
                               NULL);
    filter_t *filter = NULL;
    char err [128];
    ck_assert_int_eq (filter_parse (json, &filter, err, sizeof err), 0);
    json_decref (json);
    for (int qi = 0; qi < 10; qi++) {
        float q [DIM];
        for (int k = 0; k < DIM; k++)
            q [k] = s_randf ();
        s_check_equal (&f, q, 10, filter);
        segment_hit_t got [64], want [64];
        int nw;
        int n = s_both (&f, q, 10, filter, true, got, want, &nw);
        ck_assert_int_eq (n, nw);
        //  A threshold between the 3rd and 4th best.
        planner_search_t req = {
            .search = { .name = "", .query = { .name = "", .dense = q, .dim = DIM },
                        .limit = 10, .has_threshold = true,
                        .score_threshold = (want [2].score + want [3].score) / 2 } };
        n = planner_search (&f.plan, &req, got, err, sizeof err);
        nw = segment_search (f.seg, &req.search, want, err, sizeof err);
        ck_assert_int_eq (n, nw);
    }
    filter_destroy (&filter);
    //  Sparse vectors and bad requests go the exact way.
    uint32_t idx [1] = { 7 };
    float val [1] = { 1.0f };
    planner_search_t sp = {
        .search = { .name = "sp", .query = { .name = "sp", .indices = idx, .values = val,
                                             .nnz = 1 }, .limit = 5 } };
    segment_hit_t hits [8];
    ck_assert_int_eq (planner_search (&f.plan, &sp, hits, err, sizeof err), 5);
    float q [DIM + 1] = { 0 };
    planner_search_t bad = {
        .search = { .name = "", .query = { .name = "", .dense = q, .dim = DIM + 1 },
                    .limit = 5 } };
    ck_assert_int_eq (planner_search (&f.plan, &bad, hits, err, sizeof err), -SH_EINVAL);
    bad.search.name = "nope";
    ck_assert_int_eq (planner_search (&f.plan, &bad, hits, err, sizeof err), -SH_EINVAL);
    planner_t bare = { f.seg, NULL, NULL };
    ck_assert_int_eq (planner_search (&bare, &sp, hits, err, sizeof err), 5);
    s_teardown (&f);
}
END_TEST

START_TEST (test_full_scan_threshold_counts_vectors)
{
    ck_assert_uint_eq (planner_full_scan_points (10000, 128), 20000);
    ck_assert_uint_eq (planner_full_scan_points (10, 256), 10);
    ck_assert_uint_eq (planner_full_scan_points (1, 0), 0);
    //  Below the threshold the answer is the exact one even with ef 1.
    s_fix_t f;
    s_setup (&f, DIST_EUCLID, 1000);        //  1000 KB of 8 floats: 32000 vectors
    for (int qi = 0; qi < 5; qi++) {
        float q [DIM];
        for (int k = 0; k < DIM; k++)
            q [k] = s_randf ();
        planner_search_t req = {
            .search = { .name = "", .query = { .name = "", .dense = q, .dim = DIM },
                        .limit = 20 }, .ef = 1 };
        segment_hit_t got [20], want [20];
        char err [64];
        int n = planner_search (&f.plan, &req, got, err, sizeof err);
        int nw = segment_search (f.seg, &req.search, want, err, sizeof err);
        ck_assert_int_eq (n, nw);
        for (int i = 0; i < n; i++)
            ck_assert (pointid_eq (&got [i].id, &want [i].id));
    }
    s_teardown (&f);
}
END_TEST

static filter_t *
s_filter (const char *text)
{
    json_t *json = json_loads (text, 0, NULL);
    ck_assert_ptr_nonnull (json);
    filter_t *filter = NULL;
    char err [128];
    ck_assert_int_eq (filter_parse (json, &filter, err, sizeof err), 0);
    json_decref (json);
    return filter;
}

START_TEST (test_indexed_filters_at_every_selectivity_equal_the_exact_scan)
{
    s_fix_t f;
    //  Full scan below 1 KB of 8 floats = 32 points: the 1% filters (15
    //  points) are scanned over their candidates, the others walk the graph.
    s_setup (&f, DIST_COSINE, 1);
    const char *filters [] = {
        "{\"must\": [{\"key\": \"k\", \"match\": {\"value\": \"k1\"}}]}",        //  50%
        "{\"must\": [{\"key\": \"r\", \"range\": {\"lt\": 10}}]}",               //  10%
        "{\"must\": [{\"key\": \"r\", \"match\": {\"value\": 42}}]}",            //  1%
        "{\"must\": [{\"key\": \"r\", \"match\": {\"value\": 42}}, "
        "{\"key\": \"g\", \"match\": {\"value\": 2}}]}",                         //  not indexed: checked
        "{\"must_not\": [{\"key\": \"k\", \"match\": {\"value\": \"k1\"}}], "
        "\"should\": [{\"has_id\": [1, 3, 5, 8]}]}",
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters [0]; i++) {
        filter_t *filter = s_filter (filters [i]);
        for (int qi = 0; qi < 10; qi++) {
            float q [DIM];
            for (int k = 0; k < DIM; k++)
                q [k] = s_randf ();
            s_check_equal (&f, q, 10, filter);
        }
        //  Count, scroll and select agree with the scan.
        ck_assert_uint_eq (planner_count (&f.plan, filter), segment_count (f.seg, filter));
        pointid_t *a, *b;
        size_t na = planner_select (&f.plan, filter, &a);
        size_t nb = segment_select (f.seg, filter, &b);
        ck_assert_uint_eq (na, nb);
        free (a);
        free (b);
        pointid_t pa [20], pb [20], next_a, next_b;
        bool more_a, more_b;
        pointid_t from = s_num (300);
        na = planner_scroll (&f.plan, filter, &from, 20, pa, &next_a, &more_a);
        nb = segment_scroll (f.seg, filter, &from, 20, pb, &next_b, &more_b);
        ck_assert_uint_eq (na, nb);
        ck_assert (more_a == more_b);
        for (size_t k = 0; k < na; k++)
            ck_assert (pointid_eq (&pa [k], &pb [k]));
        if (more_a)
            ck_assert (pointid_eq (&next_a, &next_b));
        filter_destroy (&filter);
    }
    ck_assert_uint_eq (planner_count (&f.plan, NULL), N);
    s_teardown (&f);
}
END_TEST

static Suite *
planner_suite (void)
{
    Suite *s = suite_create ("planner");
    TCase *tc = tcase_create ("planner");
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_graph_answers_equal_exact_ones_euclid);
    tcase_add_test (tc, test_graph_answers_equal_exact_ones_cosine);
    tcase_add_test (tc, test_graph_answers_equal_exact_ones_dot_and_manhattan);
    tcase_add_test (tc, test_points_the_graph_lacks_are_found_and_deleted_ones_never);
    tcase_add_test (tc, test_filters_thresholds_and_exact_as_the_exact_scan);
    tcase_add_test (tc, test_full_scan_threshold_counts_vectors);
    tcase_add_test (tc, test_indexed_filters_at_every_selectivity_equal_the_exact_scan);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (planner_suite)
