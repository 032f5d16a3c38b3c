/*  planner: exact scan or graph + exact scan of what the graph lacks (see
    planner.h).

    The order matters: the exact scan of unindexed slots runs first, the
    graph search second. Marks only go from clear to set while a reader
    holds the gate (the optimizer sets them; only writers clear them), so a
    slot the scan skipped (marked) is still marked when the graph filter
    looks at it, and a slot marked after the scan saw it clear is at worst
    found twice, which the merge removes. The other order could lose it.
*/
#include "actors/shard/planner.h"
#include "common/err.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t
planner_full_scan_points (uint64_t full_scan_kb, uint32_t dim)
{
    if (dim == 0)
        return 0;
    uint64_t bytes = full_scan_kb > UINT64_MAX / 1024 ? UINT64_MAX : full_scan_kb * 1024;
    return (size_t) (bytes / ((uint64_t) dim * sizeof (float)));
}

//  What the graph's filter callback needs.
typedef struct {
    const segment_t *segment;   //  for payloads
    const filter_t *filter;     //  the search's filter
} s_filter_arg_t;

static bool
s_filter_accept (uint32_t slot, void *argp)
{
    s_filter_arg_t *a = (s_filter_arg_t *) argp;
    return segment_slot_match (a->segment, a->filter, slot);
}

//  One candidate of the merge.
typedef struct {
    float score;            //  reported score
    uint32_t slot;          //  the point's slot
    pointid_t id;           //  its id (ties)
} s_cand_t;

static int
s_cand_cmp_higher (const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return pointid_cmp (&x->id, &y->id);
}

static int
s_cand_cmp_lower (const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return pointid_cmp (&x->id, &y->id);
}

static int
s_slot_cmp (const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

//  True if score passes the threshold (as segment_search applies it).
static bool
s_passes (const segment_search_t *s, bool higher, float score)
{
    if (isnan (score))
        return false;
    if (!s->has_threshold)
        return true;
    return higher ? score >= s->score_threshold : score <= s->score_threshold;
}

int
planner_search (const segment_t *segment, vindex_t *vindex, const planner_search_t *req,
                segment_hit_t *hits, char *err, size_t errlen)
{
    const segment_search_t *s = &req->search;
    const char *name = s->name ? s->name : "";
    const segment_vspec_t *spec = segment_vspec (segment, name);
    vindex_params_t params;
    bool graph = spec && !spec->sparse && !req->exact && vindex
              && vindex_has_graph (vindex, name) && vindex_params (vindex, name, &params)
              && s->query.dense && s->query.dim == spec->dim && s->limit > 0;
    if (graph && segment_vector_count_of (segment, name)
                 < planner_full_scan_points (params.full_scan_kb, spec->dim))
        graph = false;
    if (!graph)
        return segment_search (segment, s, hits, err, errlen);

    //  1. Exact over what the graph does not hold (first: see above).
    size_t k = s->limit;
    segment_hit_t *exact_hits = calloc (k, sizeof *exact_hits);
    uint32_t *exact_slots = calloc (k, sizeof *exact_slots);
    uint32_t *graph_slots = calloc (k, sizeof *graph_slots);
    s_cand_t *cands = calloc (2 * k, sizeof *cands);
    float *query = malloc (spec->dim * sizeof (float));
    assert (exact_hits && exact_slots && graph_slots && cands && query);
    int n_exact = segment_search_slots (segment, s, NULL, 0, true, exact_hits, exact_slots,
                                        err, errlen);
    int rc = n_exact;
    if (n_exact >= 0) {
        //  2. The graph, over the slots it holds current.
        memcpy (query, s->query.dense, spec->dim * sizeof (float));
        if (spec->distance == DIST_COSINE)
            distance_normalize (query, spec->dim);
        s_filter_arg_t farg = { segment, s->filter };
        size_t n_graph = vindex_search (vindex, name, query, k, req->ef,
                                        s->filter ? s_filter_accept : NULL, &farg,
                                        graph_slots);
        //  3. Merge: scores as the exact scan reports them, each slot once.
        bool higher = distance_higher_is_better (spec->distance);
        size_t n = 0;
        for (int i = 0; i < n_exact; i++)
            cands [n++] = (s_cand_t) { exact_hits [i].score, exact_slots [i],
                                       exact_hits [i].id };
        for (size_t i = 0; i < n_graph; i++) {
            uint32_t slot = graph_slots [i];
            float score = segment_slot_score (segment, name, query, slot);
            if (s_passes (s, higher, score))
                cands [n++] = (s_cand_t) { score, slot, *segment_slot_id (segment, slot) };
        }
        qsort (cands, n, sizeof *cands, s_slot_cmp);
        size_t unique = 0;
        for (size_t i = 0; i < n; i++)
            if (unique == 0 || cands [unique - 1].slot != cands [i].slot)
                cands [unique++] = cands [i];
        qsort (cands, unique, sizeof *cands, higher ? s_cand_cmp_higher : s_cand_cmp_lower);
        size_t out = unique < k ? unique : k;
        for (size_t i = 0; i < out; i++) {
            hits [i].id = cands [i].id;
            hits [i].score = cands [i].score;
        }
        rc = (int) out;
    }
    free (exact_hits);
    free (exact_slots);
    free (graph_slots);
    free (cands);
    free (query);
    return rc;
}
