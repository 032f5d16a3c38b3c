/*  planner: how a shard answers a search: exactly (a scan of the segment) or
    through the vector's HNSW graph, as Qdrant's segment search decides.

    - exact was asked, the vector is sparse, it has no graph, or it has
      fewer vectors than hnsw_config.full_scan_threshold (kilobytes of
      vectors, converted to a count: KB * 1024 / (dim * 4)): exact scan;
    - else the graph is searched for the slots it holds current (ef =
      hnsw_ef, default ef_construct; a filter is checked as the graph is
      walked), the slots it does not hold yet are scanned exactly, and the
      two are merged, so a point is never missed because the index is
      behind and a deleted or changed point is never answered from a stale
      node.
    Scores are always computed as the exact scan computes them.

    A filter is planned from the payload indexes (pindex.h), as Qdrant's
    planner does: when the estimated matches are below the full-scan
    threshold, the candidates the indexes select are scanned exactly
    (checked with the filter unless the indexes decided it exactly);
    otherwise the graph is walked with the filter as its accept test
    (membership in the candidate set, plus the filter where the indexes
    could not decide). Count, scroll and select use the candidates when the
    indexes narrow the set.

    Callers hold the shard's gate for reading.
*/
#ifndef SH_PLANNER_H
#define SH_PLANNER_H

#include "actors/shard/pindex.h"
#include "actors/shard/segment.h"
#include "actors/shard/vindex.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    segment_search_t search;    //  what to find (limit = offset + limit)
    bool exact;                 //  params.exact
    size_t ef;                  //  params.hnsw_ef, 0 = default
} planner_search_t;

//  What a shard plans over (borrowed; vindex and pindex may be NULL).
typedef struct {
    const segment_t *segment;   //  the points
    vindex_t *vindex;           //  their graphs, or NULL (exact only)
    const pindex_t *pindex;     //  their payload indexes, or NULL (filters scanned)
} planner_t;

//  Writes up to req->search.limit hits, best first (ties by smaller id), and
//  returns how many, or -SH_EINVAL with a message in err (unknown vector,
//  wrong dimension).
int planner_search (const planner_t *self, const planner_search_t *req, segment_hit_t *hits,
                    char *err, size_t errlen);
//  segment_count, segment_scroll and segment_select through the indexes.
size_t planner_count (const planner_t *self, const filter_t *filter);
size_t planner_scroll (const planner_t *self, const filter_t *filter, const pointid_t *offset,
                       size_t limit, pointid_t *ids, pointid_t *next, bool *has_next);
size_t planner_select (const planner_t *self, const filter_t *filter, pointid_t **ids);

//  The vector count below which `name` is searched exactly: full_scan_kb
//  in vectors of dim floats.
size_t planner_full_scan_points (uint64_t full_scan_kb, uint32_t dim);

#endif
