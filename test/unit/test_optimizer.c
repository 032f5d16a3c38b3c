/*  test_optimizer: the thread indexes what is written (kicked after each
    write), lets a writer in while it builds, and saves the graphs when it
    stops, so a new vindex loads them with every vector current. Waiting is
    polling a condition with a deadline, never a fixed sleep.
*/
#include "actors/shard/optimizer.h"
#include "common/paths.h"
#include "test/unit/check_main.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM 16

static uint64_t s_rng = 0x9E3779B97F4A7C15ULL;

static float
s_randf (void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float) ((s_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static segment_t *
s_segment (void)
{
    segment_vspec_t spec;
    memset (&spec, 0, sizeof spec);
    spec.dim = DIM;
    spec.distance = DIST_COSINE;
    return segment_new (&spec, 1);
}

//  Writes points [from, to) holding the gate, which close_it closes before
//  it lets go (as a failed commit does).
static void
s_write_ex (segment_t *seg, vindex_t *vi, rwgate_t *gate, uint64_t from, uint64_t to,
            uint64_t seq, bool close_it)
{
    rwgate_write_lock (gate);
    for (uint64_t i = from; i < to; i++) {
        pointid_t id;
        memset (&id, 0, sizeof id);
        id.num = i;
        float v [DIM];
        for (int d = 0; d < DIM; d++)
            v [d] = s_randf ();
        segment_vec_t vec = { .name = "", .dense = v, .dim = DIM };
        char err [64];
        ck_assert_int_eq (segment_upsert (seg, &id, seq, &vec, 1, NULL, err, sizeof err), 0);
    }
    vindex_after_writes (vi, seq);
    if (close_it)
        rwgate_close (gate);
    rwgate_write_unlock (gate);
}

static void
s_write (segment_t *seg, vindex_t *vi, rwgate_t *gate, uint64_t from, uint64_t to,
         uint64_t seq)
{
    s_write_ex (seg, vi, gate, from, to, seq, false);
}

static bool
s_caught_up (vindex_t *vi, rwgate_t *gate, size_t want)
{
    ck_assert (rwgate_read_lock (gate));
    bool done = !vindex_behind (vi) && vindex_indexed_count (vi) == want;
    rwgate_read_unlock (gate);
    return done;
}

static void
s_wait_caught_up (vindex_t *vi, rwgate_t *gate, size_t want)
{
    time_t deadline = time (NULL) + 60;
    while (!s_caught_up (vi, gate, want)) {
        ck_assert_msg (time (NULL) < deadline, "the optimizer did not catch up");
        nanosleep (&(struct timespec) { 0, 1000000 }, NULL);
    }
}

START_TEST (test_indexes_in_the_background_and_saves_on_stop)
{
    char dir [] = "/tmp/test_optimizer.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    segment_t *seg = s_segment ();
    rwgate_t *gate = rwgate_new ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_params_t p = { .m = 8, .ef_construct = 32, .full_scan_kb = 0, .indexing_kb = 1 };
    vindex_configure (vi, "", &p);
    optimizer_t *opt = optimizer_new (vi, gate);
    ck_assert_ptr_nonnull (opt);
    //  Writes keep coming while it builds: each gets the gate.
    for (uint64_t b = 0; b < 20; b++) {
        s_write (seg, vi, gate, b * 500, (b + 1) * 500, b + 1);
        optimizer_kick (opt);
    }
    s_wait_caught_up (vi, gate, 10000);
    optimizer_destroy (&opt);
    ck_assert_ptr_null (opt);
    char manifest [PATHS_MAX];
    snprintf (manifest, sizeof manifest, "%s/%s", dir, VINDEX_MANIFEST);
    FILE *f = fopen (manifest, "rb");
    ck_assert_ptr_nonnull (f);
    fclose (f);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    rwgate_destroy (&gate);
    paths_remove_tree (dir);
}
END_TEST

START_TEST (test_a_closed_gate_stops_it_without_a_save)
{
    char dir [] = "/tmp/test_optimizer.XXXXXX";
    ck_assert_ptr_nonnull (mkdtemp (dir));
    segment_t *seg = s_segment ();
    rwgate_t *gate = rwgate_new ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_params_t p = { .m = 8, .ef_construct = 32, .full_scan_kb = 0, .indexing_kb = 1 };
    vindex_configure (vi, "", &p);
    optimizer_t *opt = optimizer_new (vi, gate);
    s_write_ex (seg, vi, gate, 0, 300, 1, true);
    optimizer_kick (opt);
    optimizer_destroy (&opt);
    char manifest [PATHS_MAX];
    snprintf (manifest, sizeof manifest, "%s/%s", dir, VINDEX_MANIFEST);
    FILE *f = fopen (manifest, "rb");
    ck_assert_ptr_null (f);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    rwgate_destroy (&gate);
    paths_remove_tree (dir);
}
END_TEST

static Suite *
optimizer_suite (void)
{
    Suite *s = suite_create ("optimizer");
    TCase *tc = tcase_create ("optimizer");
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_indexes_in_the_background_and_saves_on_stop);
    tcase_add_test (tc, test_a_closed_gate_stops_it_without_a_save);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (optimizer_suite)
