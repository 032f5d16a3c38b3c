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

    Callers hold the shard's gate for reading.
*/
#ifndef SH_PLANNER_H
#define SH_PLANNER_H

#include "actors/shard/segment.h"
#include "actors/shard/vindex.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    segment_search_t search;    //  what to find (limit = offset + limit)
    bool exact;                 //  params.exact
    size_t ef;                  //  params.hnsw_ef, 0 = default
} planner_search_t;

//  Writes up to req->search.limit hits, best first (ties by smaller id), and
//  returns how many, or -SH_EINVAL with a message in err (unknown vector,
//  wrong dimension). vindex may be NULL (exact only).
int planner_search (const segment_t *segment, vindex_t *vindex, const planner_search_t *req,
                    segment_hit_t *hits, char *err, size_t errlen);

//  The vector count below which `name` is searched exactly: full_scan_kb
//  in vectors of dim floats.
size_t planner_full_scan_points (uint64_t full_scan_kb, uint32_t dim);

#endif
