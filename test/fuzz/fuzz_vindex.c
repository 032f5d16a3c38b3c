/*  fuzz_vindex: arbitrary bytes as a saved vindex manifest. The input is the
    manifest body; the fuzzer appends the BLAKE2b hash the loader checks, so
    mutations reach the structure (graph entries, slot count, point ids,
    marks) instead of dying at the checksum. Beside it lies a real graph
    file named by the tag the input carries (bytes 20..27, where a manifest
    keeps it), so an input whose graph entry matches the config loads that
    graph and drives the slot hints and the reconciliation. Whatever the
    bytes, the load must finish, and a search must be safe afterwards.
*/
#include "actors/shard/planner.h"
#include "actors/shard/vindex.h"
#include "common/paths.h"
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 4

static segment_t *
s_segment (void)
{
    segment_vspec_t spec;
    memset (&spec, 0, sizeof spec);
    spec.dim = DIM;
    spec.distance = DIST_EUCLID;
    return segment_new (&spec, 1);
}

static void
s_vec (uint64_t i, float *v)
{
    for (int d = 0; d < DIM; d++)
        v [d] = (float) ((i * 2654435761u + (uint64_t) d * 40503u) % 1000) / 1000.0f;
}

//  A graph of 64 slots (m 4, ef_construct 16, dim 4, Euclid) saved at seq 1
//  as the file a manifest with this tag names.
static void
s_write_graph (const char *dir, uint64_t tag)
{
    static float data [64 * DIM];
    for (uint64_t i = 0; i < 64; i++)
        s_vec (i, data + i * DIM);
    hnsw_params_t p = { .m = 4, .ef_construct = 16, .seed = 1 };
    hnsw_t *graph = hnsw_new (DIST_EUCLID, DIM, &p);
    hnsw_set_vectors (graph, data, DIM);
    for (uint32_t i = 0; i < 64; i++)
        hnsw_insert (graph, i);
    char path [PATHS_MAX];
    snprintf (path, sizeof path, "%s/hnsw--%016llx.graph", dir, (unsigned long long) tag);
    hnsw_save (graph, path, 1);
    hnsw_destroy (&graph);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static int ready = 0;
    if (!ready) {
        ready = sodium_init () >= 0;
        if (!ready)
            return 0;
    }
    char dir [] = "/tmp/fuzz_vindex.XXXXXX";
    if (!mkdtemp (dir))
        return 0;
    uint64_t tag = 0;
    for (int i = 7; i >= 0 && size >= 28; i--)
        tag = tag << 8 | data [20 + i];
    s_write_graph (dir, tag);
    char path [PATHS_MAX];
    snprintf (path, sizeof path, "%s/%s", dir, VINDEX_MANIFEST);
    FILE *f = fopen (path, "wb");
    uint8_t hash [crypto_generichash_BYTES];
    crypto_generichash (hash, sizeof hash, data, size, NULL, 0);
    if (!f || fwrite (data, 1, size, f) != size || fwrite (hash, 1, sizeof hash, f) != sizeof hash) {
        if (f)
            fclose (f);
        paths_remove_tree (dir);
        return 0;
    }
    fclose (f);

    segment_t *seg = s_segment ();
    vindex_t *vi = vindex_new (seg, dir);
    vindex_params_t params = { .m = 4, .ef_construct = 16, .full_scan_kb = 0,
                               .indexing_kb = 1, .threads = 1 };
    vindex_configure (vi, "", &params);
    vindex_load_begin (vi, 5);
    for (uint64_t i = 0; i < 80; i++) {
        pointid_t id;
        memset (&id, 0, sizeof id);
        id.num = i;
        float v [DIM];
        s_vec (i, v);
        segment_vec_t vec = { .name = "", .dense = v, .dim = DIM };
        char err [64];
        uint32_t slot;
        if (!vindex_slot_hint (vi, &id, &slot)
            || segment_upsert_at (seg, slot, &id, 1 + i % 3, &vec, 1, NULL, err, sizeof err))
            segment_upsert (seg, &id, 1 + i % 3, &vec, 1, NULL, err, sizeof err);
    }
    vindex_load_end (vi, 5);
    while (vindex_work (vi, NULL, NULL))
        ;
    planner_t planner = { seg, vi, NULL };
    float q [DIM] = { 0.5f, 0.5f, 0.5f, 0.5f };
    planner_search_t req = { .search = { .name = "", .query = { .name = "", .dense = q,
                                                                .dim = DIM }, .limit = 10 } };
    segment_hit_t hits [10];
    char err [64];
    (void) planner_search (&planner, &req, hits, err, sizeof err);
    vindex_destroy (&vi);
    segment_destroy (&seg);
    paths_remove_tree (dir);
    return 0;
}
