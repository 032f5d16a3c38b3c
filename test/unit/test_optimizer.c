/*  test_optimizer: the thread indexes what is written (kicked after each
    write), lets a writer in while it builds, and saves the graphs when it
    stops, so a new vindex loads them with every vector current. It fills a
    payload index begun over many points while writes and filtered reads go
    on, and publishes it. Graphs held stay untouched while payload indexes
    are filled, and are built once released. Waiting is polling a condition with a deadline,
    never a fixed sleep.
*/
#include "actors/shard/optimizer.h"
#include "common/err.h"
#include "common/paths.h"
#include "test/unit/check_main.h"

#include <pthread.h>
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

//  A number below n (n > 0).
static uint64_t
s_below (uint64_t n)
{
    s_randf ();
    return (s_rng >> 11) % n;
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

//  The segment's observer when a test keeps payload indexes.
static void
s_on_payload (uint32_t slot, const json_t *old_payload, bool was_live,
              const json_t *new_payload, bool is_live, void *arg)
{
    pindex_t *pindex = arg;
    if (was_live)
        ck_assert_int_eq (pindex_remove_point (pindex, slot, old_payload), 0);
    if (is_live)
        ck_assert_int_eq (pindex_add_point (pindex, slot, new_payload), 0);
}

//  What every test works on: a segment and its gate, graphs over it in a
//  temp dir configured with p, and, with_pindex, payload indexes the
//  segment's observer keeps.
typedef struct {
    char dir [32];              //  the temp dir
    segment_t *seg;             //  the points
    rwgate_t *gate;             //  their gate
    vindex_t *vi;               //  their graphs
    pindex_t *pindex;           //  their payload indexes, or NULL
} s_rig_t;

static void
s_rig_init (s_rig_t *r, const vindex_params_t *p, bool with_pindex)
{
    snprintf (r->dir, sizeof r->dir, "/tmp/test_optimizer.XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (r->dir));
    r->seg = s_segment ();
    r->gate = rwgate_new ();
    r->vi = vindex_new (r->seg, r->dir);
    vindex_configure (r->vi, "", p);
    r->pindex = with_pindex ? pindex_new () : NULL;
    if (r->pindex)
        segment_set_observer (r->seg, s_on_payload, r->pindex);
}

static void
s_rig_fini (s_rig_t *r)
{
    segment_set_observer (r->seg, NULL, NULL);
    pindex_destroy (&r->pindex);
    vindex_destroy (&r->vi);
    segment_destroy (&r->seg);
    rwgate_destroy (&r->gate);
    paths_remove_tree (r->dir);
}

START_TEST (test_indexes_in_the_background_and_saves_on_stop)
{
    vindex_params_t p = { .m = 8, .ef_construct = 32, .full_scan_kb = 0, .indexing_kb = 1 };
    s_rig_t r;
    s_rig_init (&r, &p, false);
    segment_t *seg = r.seg;
    rwgate_t *gate = r.gate;
    vindex_t *vi = r.vi;
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
    snprintf (manifest, sizeof manifest, "%s/%s", r.dir, VINDEX_MANIFEST);
    FILE *f = fopen (manifest, "rb");
    ck_assert_ptr_nonnull (f);
    fclose (f);
    s_rig_fini (&r);
}
END_TEST

START_TEST (test_a_closed_gate_stops_it_without_a_save)
{
    vindex_params_t p = { .m = 8, .ef_construct = 32, .full_scan_kb = 0, .indexing_kb = 1 };
    s_rig_t r;
    s_rig_init (&r, &p, false);
    segment_t *seg = r.seg;
    rwgate_t *gate = r.gate;
    vindex_t *vi = r.vi;
    optimizer_t *opt = optimizer_new (vi, gate);
    s_write_ex (seg, vi, gate, 0, 300, 1, true);
    optimizer_kick (opt);
    optimizer_destroy (&opt);
    char manifest [PATHS_MAX];
    snprintf (manifest, sizeof manifest, "%s/%s", r.dir, VINDEX_MANIFEST);
    FILE *f = fopen (manifest, "rb");
    ck_assert_ptr_null (f);
    s_rig_fini (&r);
}
END_TEST


//  --- payload indexes -------------------------------------------------------


static const json_t *
s_payload_of (uint32_t slot, void *arg)
{
    return segment_slot_payload ((const segment_t *) arg, slot);
}

//  Upserts point id with payload {"tag": "t<tag>", "n": id}, gate held.
static void
s_put_tagged (segment_t *seg, uint64_t id_num, unsigned tag, uint64_t seq)
{
    pointid_t id;
    memset (&id, 0, sizeof id);
    id.num = id_num;
    float v [DIM];
    for (int d = 0; d < DIM; d++)
        v [d] = s_randf ();
    segment_vec_t vec = { .name = "", .dense = v, .dim = DIM };
    char text [8];
    snprintf (text, sizeof text, "t%u", tag);
    json_t *payload = json_pack ("{s:s, s:I}", "tag", text, "n", (json_int_t) id_num);
    char err [64];
    ck_assert_int_eq (segment_upsert (seg, &id, seq, &vec, 1, payload, err, sizeof err), 0);
    json_decref (payload);
}

//  The slots matching filter, counted from the index's candidates (checked
//  with filter_match when not exact), as a shard's count does.
static size_t
s_indexed_count (segment_t *seg, pindex_t *pindex, const filter_t *filter, bool *exact)
{
    roaring_bitmap_t *cands;
    pindex_select (pindex, filter, NULL, NULL, &cands, exact);
    size_t n = 0;
    roaring_uint32_iterator_t it;
    roaring_init_iterator (cands, &it);
    for (; it.has_value; roaring_advance_uint32_iterator (&it))
        n += *exact || segment_slot_match (seg, filter, it.current_value);
    roaring_bitmap_free (cands);
    return n;
}

START_TEST (test_fills_a_new_payload_index_beside_writes_and_reads)
{
    vindex_params_t p = { .m = 0 };         //  no graph: payload indexes only
    s_rig_t r;
    s_rig_init (&r, &p, true);
    segment_t *seg = r.seg;
    rwgate_t *gate = r.gate;
    vindex_t *vi = r.vi;
    pindex_t *pindex = r.pindex;
    //  Enough points that the build takes many steps.
    const uint64_t n = 60000;
    rwgate_write_lock (gate);
    for (uint64_t i = 0; i < n; i++)
        s_put_tagged (seg, i, (unsigned) (i % 4), 1);
    rwgate_write_unlock (gate);
    optimizer_t *opt = optimizer_new (vi, gate);
    ck_assert_ptr_nonnull (opt);
    optimizer_set_pindex (opt, pindex, s_payload_of, seg);

    //  The field is added under the write side, as the shard does on a new
    //  payload_schema, and the optimizer is kicked.
    rwgate_write_lock (gate);
    json_t *schema = json_string ("keyword");
    char err [128];
    ck_assert_int_eq (pindex_begin_field (pindex, "tag", schema, err, sizeof err), 0);
    json_decref (schema);
    rwgate_write_unlock (gate);
    optimizer_kick (opt);

    //  Writes (retagging points, adding new ones) and filtered reads go on
    //  while it builds; every count is right whether the index answered yet
    //  or not.
    filter_t *filter;
    json_t *fj = json_loads ("{\"must\": {\"key\": \"tag\", \"match\": {\"value\": \"t1\"}}}",
                             0, NULL);
    ck_assert_int_eq (filter_parse (fj, &filter, err, sizeof err), 0);
    json_decref (fj);
    uint64_t want = n / 4, next_id = n, seq = 2;
    size_t rounds = 0, answered_exact = 0;
    time_t deadline = time (NULL) + 60;
    bool ready = false;
    while (!ready || rounds < 5) {
        ck_assert_msg (time (NULL) < deadline, "the payload index was never published");
        rwgate_write_lock (gate);
        //  Points 4k+2 become t1, a new t1 point comes.
        for (int w = 0; w < 50; w++) {
            uint64_t id = (s_rng % (n / 4)) * 4 + 2;
            s_randf ();
            pointid_t pid;
            memset (&pid, 0, sizeof pid);
            pid.num = id;
            segment_point_t pt;
            ck_assert_int_eq (segment_get (seg, &pid, &pt), 0);
            if (strcmp (json_string_value (json_object_get (pt.payload, "tag")), "t1") != 0)
                want++;
            s_put_tagged (seg, id, 1, seq);
        }
        s_put_tagged (seg, next_id++, 1, seq);
        want++;
        seq++;
        rwgate_write_unlock (gate);
        optimizer_kick (opt);
        ck_assert (rwgate_read_lock (gate));
        bool exact;
        size_t got = s_indexed_count (seg, pindex, filter, &exact);
        ck_assert_uint_eq (segment_count (seg, filter), want);
        ck_assert_msg (got == want, "count %zu, want %zu (index %s)", got, (size_t) want,
                       exact ? "exact" : "not used");
        answered_exact += exact;
        ready = pindex_field_ready (pindex, "tag");
        ck_assert (ready == exact);
        rwgate_read_unlock (gate);
        rounds++;
    }
    //  Published and in use: the index alone answers, and counts everything.
    ck_assert_uint_gt (answered_exact, 0);
    ck_assert (!pindex_building (pindex));
    ck_assert_uint_eq (pindex_field_points (pindex, "tag"), next_id);
    filter_destroy (&filter);
    optimizer_destroy (&opt);
    s_rig_fini (&r);
}
END_TEST

//  Held graphs (a replica receiving a transfer): rounds still run (a payload
//  index is filled and published), the graph is not touched; released, it
//  is built over everything written meanwhile.
START_TEST (test_held_graphs_wait_while_payload_indexes_go_on)
{
    vindex_params_t p = { .m = 8, .ef_construct = 32, .full_scan_kb = 0, .indexing_kb = 1 };
    s_rig_t r;
    s_rig_init (&r, &p, true);
    segment_t *seg = r.seg;
    rwgate_t *gate = r.gate;
    vindex_t *vi = r.vi;
    pindex_t *pindex = r.pindex;
    optimizer_t *opt = optimizer_new (vi, gate);
    ck_assert_ptr_nonnull (opt);
    optimizer_hold_graphs (opt, true);
    optimizer_set_pindex (opt, pindex, s_payload_of, seg);
    rwgate_write_lock (gate);
    for (uint64_t i = 0; i < 3000; i++)
        s_put_tagged (seg, i, (unsigned) (i % 4), 1);
    vindex_after_writes (vi, 1);
    json_t *schema = json_string ("keyword");
    char err [128];
    ck_assert_int_eq (pindex_begin_field (pindex, "tag", schema, err, sizeof err), 0);
    json_decref (schema);
    rwgate_write_unlock (gate);
    optimizer_kick (opt);

    time_t deadline = time (NULL) + 60;
    for (bool ready = false; !ready; ) {
        ck_assert_msg (time (NULL) < deadline, "the payload index was never published");
        ck_assert (rwgate_read_lock (gate));
        ready = pindex_field_ready (pindex, "tag");
        rwgate_read_unlock (gate);
        if (!ready)
            nanosleep (&(struct timespec) { 0, 1000000 }, NULL);
    }
    ck_assert (rwgate_read_lock (gate));
    ck_assert_uint_eq (vindex_indexed_count (vi), 0);
    ck_assert (vindex_behind (vi));
    rwgate_read_unlock (gate);

    optimizer_hold_graphs (opt, false);
    s_wait_caught_up (vi, gate, 3000);
    optimizer_destroy (&opt);
    s_rig_fini (&r);
}
END_TEST

//  --- stress: the writer, searches and the optimizer all make progress ----

typedef struct {
    segment_t *seg;             //  shared
    vindex_t *vi;               //  its graphs
    pindex_t *pindex;           //  its payload indexes
    rwgate_t *gate;             //  the gate over all three
    optimizer_t *opt;           //  the optimizer thread
    int turns;                  //  writer turns to make
    int turns_done;             //  atomic
    int writer_done;            //  atomic: the writer left
    size_t searches;            //  atomic: searches made
    size_t bad;                 //  atomic: wrong answers seen
} s_stress_t;

//  The main thread's part: turns of upserts (new points, moved vectors,
//  retagged payloads), deletes, payload indexes added and dropped, and a
//  change of m that drops the graph; each turn holds the gate for writing
//  and kicks the optimizer after, as the shard does.
static void *
s_stress_writer (void *arg)
{
    s_stress_t *st = arg;
    uint64_t next = 0;
    for (int t = 0; t < st->turns; t++) {
        rwgate_write_lock (st->gate);
        uint64_t seq = (uint64_t) t + 2;
        for (int i = 0; i < 150; i++, next++)
            s_put_tagged (st->seg, next, (unsigned) (next % 4), seq);
        for (int i = 0; i < 40; i++)
            s_put_tagged (st->seg, s_below (next), (unsigned) (t % 4), seq);
        for (int i = 0; i < 60; i++) {
            pointid_t id;
            memset (&id, 0, sizeof id);
            id.num = s_below (next);
            segment_delete (st->seg, &id);
        }
        //  Once, many deletes: the graph is rebuilt and swapped in.
        if (t == st->turns / 4)
            for (uint64_t n = 0; n < next; n++)
                if (n % 5 < 2) {
                    pointid_t id;
                    memset (&id, 0, sizeof id);
                    id.num = n;
                    segment_delete (st->seg, &id);
                }
        //  Payload indexes: one kept, one retyped (rebuilt) and dropped
        //  again and again.
        char err [128];
        if (t == 3 || t % 5 == 2) {
            json_t *schema = json_string (t == 3 ? "keyword" : t % 2 ? "integer" : "float");
            ck_assert_int_eq (pindex_begin_field (st->pindex, t == 3 ? "tag" : "n", schema,
                                                  err, sizeof err), 0);
            json_decref (schema);
        }
        if (t % 13 == 6)
            pindex_drop_field (st->pindex, "n");
        //  Twice a new m: the graph being built (or saved) is dropped.
        if (t == st->turns / 3 || t == 2 * st->turns / 3) {
            vindex_params_t p = { .m = t == st->turns / 3 ? 12 : 10, .ef_construct = 32,
                                  .indexing_kb = 1, .threads = 4 };
            ck_assert_int_eq (vindex_configure (st->vi, "", &p), 0);
        }
        vindex_after_writes (st->vi, seq);
        rwgate_write_unlock (st->gate);
        optimizer_kick (st->opt);
        __atomic_store_n (&st->turns_done, t + 1, __ATOMIC_RELEASE);
        //  After the many deletes, let it catch up once: the deletes reach
        //  the graph and its rebuild starts (and is swapped in while the
        //  turns go on).
        if (t == st->turns / 4)
            s_wait_caught_up (st->vi, st->gate, segment_size (st->seg));
    }
    __atomic_store_n (&st->writer_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

//  A search worker's part: graph searches and filtered counts under the
//  read side, checked against the segment.
static void *
s_stress_searcher (void *arg)
{
    s_stress_t *st = arg;
    filter_t *filter;
    json_t *fj = json_loads ("{\"must\": {\"key\": \"tag\", \"match\": {\"value\": \"t2\"}}}",
                             0, NULL);
    char err [128];
    ck_assert_int_eq (filter_parse (fj, &filter, err, sizeof err), 0);
    json_decref (fj);
    do {
        ck_assert (rwgate_read_lock (st->gate));
        float q [DIM];
        for (int d = 0; d < DIM; d++)
            q [d] = 0.25f;
        uint32_t slots [10];
        size_t n = vindex_search (st->vi, "", q, 10, 32, NULL, NULL, slots);
        for (size_t i = 0; i < n; i++)
            if (!segment_slot_live (st->seg, slots [i]))
                __atomic_fetch_add (&st->bad, 1, __ATOMIC_RELAXED);
        bool exact;
        if (s_indexed_count (st->seg, st->pindex, filter, &exact)
            != segment_count (st->seg, filter))
            __atomic_fetch_add (&st->bad, 1, __ATOMIC_RELAXED);
        rwgate_read_unlock (st->gate);
        __atomic_fetch_add (&st->searches, 1, __ATOMIC_RELAXED);
    } while (!__atomic_load_n (&st->writer_done, __ATOMIC_ACQUIRE));
    filter_destroy (&filter);
    return NULL;
}

//  Writes, searches and the optimizer (inserts on 4 threads, rebuilds after
//  many deletes, saves, payload index builds published under the write
//  side, a graph dropped by a new m) all at once on few cores: every
//  operation completes (a stuck gate would hang the test), every answer is
//  right, and in the end the graph is caught up and the indexes built.
START_TEST (test_stress_writes_searches_and_optimizer_all_progress)
{
    vindex_params_t p = { .m = 8, .ef_construct = 32, .indexing_kb = 1, .threads = 4 };
    s_rig_t r;
    s_rig_init (&r, &p, true);
    segment_t *seg = r.seg;
    rwgate_t *gate = r.gate;
    vindex_t *vi = r.vi;
    pindex_t *pindex = r.pindex;
    optimizer_t *opt = optimizer_new (vi, gate);
    ck_assert_ptr_nonnull (opt);
    optimizer_set_pindex (opt, pindex, s_payload_of, seg);
    s_stress_t st = { .seg = seg, .vi = vi, .pindex = pindex, .gate = gate, .opt = opt,
                      .turns = 120 };
    pthread_t writer, searchers [3];
    ck_assert_int_eq (pthread_create (&writer, NULL, s_stress_writer, &st), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (pthread_create (&searchers [i], NULL, s_stress_searcher, &st), 0);
    pthread_join (writer, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join (searchers [i], NULL);
    ck_assert_int_eq (st.turns_done, st.turns);
    ck_assert_uint_ge (st.searches, 3);
    ck_assert_uint_eq (st.bad, 0);
    //  The optimizer catches up: every vector indexed, no index building.
    size_t points = segment_size (seg);
    time_t deadline = time (NULL) + 90;
    for (;;) {
        ck_assert (rwgate_read_lock (gate));
        bool done = !vindex_behind (vi) && vindex_indexed_count (vi) == points
                 && !pindex_building (pindex);
        rwgate_read_unlock (gate);
        if (done)
            break;
        ck_assert_msg (time (NULL) < deadline, "the optimizer did not catch up");
        optimizer_kick (opt);
        nanosleep (&(struct timespec) { 0, 2000000 }, NULL);
    }
    ck_assert (pindex_field_ready (pindex, "tag"));
    optimizer_destroy (&opt);
    s_rig_fini (&r);
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
    tcase_add_test (tc, test_fills_a_new_payload_index_beside_writes_and_reads);
    tcase_add_test (tc, test_held_graphs_wait_while_payload_indexes_go_on);
    tcase_add_test (tc, test_stress_writes_searches_and_optimizer_all_progress);
    suite_add_tcase (s, tc);
    return s;
}

SH_CHECK_MAIN (optimizer_suite)
