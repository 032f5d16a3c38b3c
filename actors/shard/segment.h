/*  segment: a shard's points in memory: ids, versions, payloads and vectors,
    and every read over them (exact search, scroll, count, retrieve). Pure: no
    I/O; shard_store persists what the segment holds.

    Dense vectors of each named vector live in one flat, contiguous float32
    array (slot-major, dim floats per slot) so exact search streams through
    memory; a point has one slot, reused after deletes. Cosine vectors are
    normalized on insert. Sparse vectors are kept sorted by index.
    An id -> slot hash map gives O(1) lookups.
*/
#ifndef SH_SEGMENT_H
#define SH_SEGMENT_H

#include "common/distance.h"
#include "common/filter.h"
#include "common/pointid.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char name [64];         //  vector name, "" for the unnamed default
    bool sparse;            //  sparse vector (dim/distance unused)
    uint32_t dim;           //  dense dimension
    distance_t distance;    //  dense distance
} segment_vspec_t;

//  One vector of a point, as given to or read from the segment.
typedef struct {
    const char *name;           //  vector name
    const float *dense;         //  dim floats (dense), or NULL if sparse
    uint32_t dim;               //  dense dimension
    const uint32_t *indices;    //  sparse: nnz indices (any order on input)
    const float *values;        //  sparse: nnz values
    uint32_t nnz;               //  sparse: number of entries
} segment_vec_t;

typedef struct _segment_t segment_t;

//  A segment for these vector specs (copied). NULL if a spec is invalid
//  (dense dim 0 or > 65536, duplicate names).
segment_t *segment_new (const segment_vspec_t *specs, size_t n_specs);
void segment_destroy (segment_t **self_p);

size_t segment_size (const segment_t *self);          //  live points
size_t segment_vector_count (const segment_t *self);  //  vectors over all names
//  Spec by name; NULL if none.
const segment_vspec_t *segment_vspec (const segment_t *self, const char *name);
//  Adds a vector spec (a named vector created after the collection); 0 or
//  -SH_EEXIST / -SH_EINVAL.
int segment_add_vspec (segment_t *self, const segment_vspec_t *spec);

//  --- writes ---------------------------------------------------------------
//  Every write checks vector names and dims first: -SH_EINVAL with a message
//  in err and nothing changed. payload: an object or NULL, referenced (not
//  copied): the caller must not change it afterwards.
//  Replaces the whole point (vectors and payload).
int segment_upsert (segment_t *self, const pointid_t *id, uint64_t version,
                    const segment_vec_t *vecs, size_t n_vecs, json_t *payload,
                    char *err, size_t errlen);
//  0, or -SH_ENOTFOUND.
int segment_delete (segment_t *self, const pointid_t *id);
//  Merges the keys of payload into the point's (at path `key` if not NULL).
int segment_set_payload (segment_t *self, const pointid_t *id, uint64_t version,
                         const json_t *payload, const char *key);
int segment_overwrite_payload (segment_t *self, const pointid_t *id, uint64_t version,
                               const json_t *payload);
int segment_delete_payload (segment_t *self, const pointid_t *id, uint64_t version,
                            const char *const *keys, size_t n_keys);
int segment_clear_payload (segment_t *self, const pointid_t *id, uint64_t version);
//  Replaces only the given vectors; -SH_ENOTFOUND if no such point.
int segment_update_vectors (segment_t *self, const pointid_t *id, uint64_t version,
                            const segment_vec_t *vecs, size_t n_vecs, char *err,
                            size_t errlen);
int segment_delete_vectors (segment_t *self, const pointid_t *id, uint64_t version,
                            const char *const *names, size_t n_names);

//  --- reads ----------------------------------------------------------------
//  A borrowed view of one point, valid until the next write.
typedef struct {
    pointid_t id;
    uint64_t version;
    const json_t *payload;      //  object or NULL
} segment_point_t;

//  0 and *out, or -SH_ENOTFOUND.
int segment_get (const segment_t *self, const pointid_t *id, segment_point_t *out);
//  The point's vector `name`: 0 and *out (borrowed), or -SH_ENOTFOUND if the
//  point or that vector is absent.
int segment_get_vector (const segment_t *self, const pointid_t *id, const char *name,
                        segment_vec_t *out);
//  Ids of the points matching filter (NULL = all), in no particular order.
//  *ids is yours (free); returns the count.
size_t segment_select (const segment_t *self, const filter_t *filter, pointid_t **ids);
size_t segment_count (const segment_t *self, const filter_t *filter);
//  Up to limit ids >= offset (NULL = from the start) matching filter, in
//  pointid_cmp order. *next is set to the id after the page, has_next false
//  when there is none. Returns the count written to ids (limit capacity).
size_t segment_scroll (const segment_t *self, const filter_t *filter,
                       const pointid_t *offset, size_t limit, pointid_t *ids,
                       pointid_t *next, bool *has_next);

typedef struct {
    pointid_t id;
    float score;
} segment_hit_t;

typedef struct {
    const char *name;           //  vector to search
    segment_vec_t query;        //  dense (dim floats) or sparse query
    const filter_t *filter;     //  NULL = no filter
    size_t limit;               //  best `limit` hits (the caller adds offset)
    bool has_threshold;         //  score_threshold given
    float score_threshold;      //  Cosine/Dot: score >= t; Euclid/Manhattan: <= t
} segment_search_t;

//  Exact top-k: writes up to req->limit hits into hits, best first (ties by
//  smaller id), and returns how many. -SH_EINVAL (message in err) for an
//  unknown vector name or a wrong dimension.
int segment_search (const segment_t *self, const segment_search_t *req,
                    segment_hit_t *hits, char *err, size_t errlen);

#endif
