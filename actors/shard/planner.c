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

#include <roaring/roaring.h>

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
    const roaring_bitmap_t *cands;  //  the indexes' candidates, or NULL
    bool cands_exact;           //  cands is exactly the matching set
} s_filter_arg_t;

static bool
s_filter_accept (uint32_t slot, void *argp)
{
    s_filter_arg_t *a = (s_filter_arg_t *) argp;
    if (a->cands) {
        if (!roaring_bitmap_contains (a->cands, slot))
            return false;
        if (a->cands_exact)
            return true;
    }
    return segment_slot_match (a->segment, a->filter, slot);
}

static bool
s_slot_of (const pointid_t *id, uint32_t *slot, void *arg)
{
    return segment_slot_of ((const segment_t *) arg, id, slot);
}

//  The indexes' estimate for filter; false without indexes or filter.
static bool
s_estimate (const planner_t *self, const filter_t *filter, pindex_card_t *card)
{
    if (!filter || !self->pindex)
        return false;
    pindex_estimate (self->pindex, filter, s_slot_of, (void *) self->segment, card);
    return true;
}

//  The indexes' candidates for filter as an ascending slot array (*slots,
//  free it) when they narrow the points down; *filter_out is what is left to
//  check (NULL when the indexes decided it exactly). false: no narrowing,
//  scan everything with the filter.
static bool
s_candidates (const planner_t *self, const filter_t *filter, const pindex_card_t *card,
              uint32_t **slots, size_t *n_slots, const filter_t **filter_out)
{
    if (!self->pindex || !filter || card->max >= segment_size (self->segment))
        return false;
    roaring_bitmap_t *bm = NULL;
    bool exact = false;
    pindex_select (self->pindex, filter, s_slot_of, (void *) self->segment, &bm, &exact);
    if (!bm)
        return false;
    size_t n = (size_t) roaring_bitmap_get_cardinality (bm);
    uint32_t *out = malloc ((n ? n : 1) * sizeof *out);
    assert (out);
    roaring_bitmap_to_uint32_array (bm, out);
    roaring_bitmap_free (bm);
    *slots = out;
    *n_slots = n;
    *filter_out = exact ? NULL : filter;
    return true;
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

//  Exact search, over the indexes' candidates when they narrow it.
static int
s_exact (const planner_t *self, const segment_search_t *s, const pindex_card_t *card,
         bool have_card, segment_hit_t *hits, char *err, size_t errlen)
{
    pindex_card_t own;
    if (!have_card) {
        have_card = s_estimate (self, s->filter, &own);
        card = &own;
    }
    uint32_t *slots = NULL;
    size_t n_slots = 0;
    segment_search_t narrowed = *s;
    if (!have_card
        || !s_candidates (self, s->filter, card, &slots, &n_slots, &narrowed.filter))
        return segment_search (self->segment, s, hits, err, errlen);
    int rc = segment_search_slots (self->segment, &narrowed, slots, n_slots, false, hits,
                                   NULL, err, errlen);
    free (slots);
    return rc;
}

int
planner_search (const planner_t *self, const planner_search_t *req, segment_hit_t *hits,
                char *err, size_t errlen)
{
    const segment_t *segment = self->segment;
    vindex_t *vindex = self->vindex;
    const segment_search_t *s = &req->search;
    const char *name = s->name ? s->name : "";
    const segment_vspec_t *spec = segment_vspec (segment, name);
    vindex_params_t params;
    bool graph = spec && !spec->sparse && !req->exact && vindex
              && vindex_has_graph (vindex, name) && vindex_params (vindex, name, &params)
              && s->query.dense && s->query.dim == spec->dim && s->limit > 0;
    size_t threshold = graph ? planner_full_scan_points (params.full_scan_kb, spec->dim) : 0;
    if (graph && segment_vector_count_of (segment, name) < threshold)
        graph = false;
    //  A filter that keeps few points: scan those (Qdrant: below the full
    //  scan threshold by the estimate's max, or by its expectation when the
    //  bounds straddle it).
    pindex_card_t card;
    bool have_card = graph && s_estimate (self, s->filter, &card);
    if (have_card && (card.max < threshold || (card.min <= threshold && card.exp < threshold)))
        graph = false;
    if (!graph)
        return s_exact (self, s, &card, have_card, hits, err, errlen);

    //  1. Exact over what the graph does not hold (first: see above).
    size_t k = s->limit;
    segment_hit_t *exact_hits = calloc (k, sizeof *exact_hits);
    uint32_t *exact_slots = calloc (k, sizeof *exact_slots);
    uint32_t *graph_slots = calloc (k, sizeof *graph_slots);
    s_cand_t *cands = calloc (2 * k, sizeof *cands);
    float *query = malloc (spec->dim * sizeof (float));
    assert (exact_hits && exact_slots && graph_slots && cands && query);
    //  Once the graph holds every vector there is nothing to scan (the
    //  common case: skips a pass over the segment's bitmaps per search).
    int n_exact = segment_indexed_count (segment, name) >= segment_vector_count_of (segment, name)
                ? 0
                : segment_search_slots (segment, s, NULL, 0, true, exact_hits, exact_slots,
                                        err, errlen);
    int rc = n_exact;
    if (n_exact >= 0) {
        //  2. The graph, over the slots it holds current.
        memcpy (query, s->query.dense, spec->dim * sizeof (float));
        if (spec->distance == DIST_COSINE)
            distance_normalize (query, spec->dim);
        s_filter_arg_t farg = { segment, s->filter, NULL, false };
        roaring_bitmap_t *allowed = NULL;
        if (s->filter && self->pindex) {
            pindex_select (self->pindex, s->filter, s_slot_of, (void *) segment, &allowed,
                           &farg.cands_exact);
            farg.cands = allowed;
        }
        size_t n_graph = vindex_search (vindex, name, query, k, req->ef,
                                        s->filter ? s_filter_accept : NULL, &farg,
                                        graph_slots);
        if (allowed)
            roaring_bitmap_free (allowed);
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

size_t
planner_count (const planner_t *self, const filter_t *filter)
{
    pindex_card_t card;
    uint32_t *slots = NULL;
    size_t n_slots = 0;
    const filter_t *left = filter;
    if (!s_estimate (self, filter, &card)
        || !s_candidates (self, filter, &card, &slots, &n_slots, &left))
        return segment_count (self->segment, filter);
    size_t n = left ? segment_count_slots (self->segment, left, slots, n_slots) : n_slots;
    free (slots);
    return n;
}

size_t
planner_scroll (const planner_t *self, const filter_t *filter, const pointid_t *offset,
                size_t limit, pointid_t *ids, pointid_t *next, bool *has_next)
{
    pindex_card_t card;
    uint32_t *slots = NULL;
    size_t n_slots = 0;
    const filter_t *left = filter;
    if (!s_estimate (self, filter, &card)
        || !s_candidates (self, filter, &card, &slots, &n_slots, &left))
        return segment_scroll (self->segment, filter, offset, limit, ids, next, has_next);
    size_t n = segment_scroll_slots (self->segment, left, slots, n_slots, offset, limit, ids,
                                     next, has_next);
    free (slots);
    return n;
}

size_t
planner_select (const planner_t *self, const filter_t *filter, pointid_t **ids)
{
    pindex_card_t card;
    uint32_t *slots = NULL;
    size_t n_slots = 0;
    const filter_t *left = filter;
    if (!s_estimate (self, filter, &card)
        || !s_candidates (self, filter, &card, &slots, &n_slots, &left))
        return segment_select (self->segment, filter, ids);
    size_t n = segment_select_slots (self->segment, left, slots, n_slots, ids);
    free (slots);
    return n;
}
