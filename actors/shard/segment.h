/*  segment: a shard's points in memory: ids, versions, payloads and vectors,
    and every read over them (exact search, scroll, count, retrieve). Pure: no
    I/O; shard_store persists what the segment holds.

    Dense vectors of each named vector live in one flat, contiguous float32
    array (slot-major, dim floats per slot) so exact search streams through
    memory; a point has one slot, reused after deletes. Cosine vectors are
    normalized on insert. Sparse vectors are kept sorted by index.
    An id -> slot hash map gives O(1) lookups.

    Slots are also the node ids of the shard's indexes (the HNSW graph of
    each dense vector, the payload indexes), so the segment exposes them:
    per-slot reads, the flat dense arrays, an "indexed" mark per slot and
    dense vector (the graph holds this slot's current vector; any change to
    the vector clears it), an observer told of every payload change, and a
    way to put points back into the slots a saved graph knows them by.

    Threads: writes need exclusive access; reads (everything const, and
    segment_set_indexed) may run on many threads at once.
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
//  As segment_search over only some slots: those in slots (ascending; NULL
//  = every slot), and of those, when unindexed_only, only the ones whose
//  vector is not marked indexed. hit_slots (may be NULL; room for limit)
//  gets each hit's slot.
int segment_search_slots (const segment_t *self, const segment_search_t *req,
                          const uint32_t *slots, size_t n_slots, bool unindexed_only,
                          segment_hit_t *hits, uint32_t *hit_slots, char *err,
                          size_t errlen);
//  The score segment_search reports for a slot's vector `name` against
//  query (dim floats, already normalized for Cosine). NAN if the slot has
//  no such vector.
float segment_slot_score (const segment_t *self, const char *name, const float *query,
                          uint32_t slot);

//  --- slots ----------------------------------------------------------------
//  Every slot ever used is below this (live, free or a hole).
uint32_t segment_slot_count (const segment_t *self);
//  true and *slot if the point is here.
bool segment_slot_of (const segment_t *self, const pointid_t *id, uint32_t *slot);
bool segment_slot_live (const segment_t *self, uint32_t slot);
//  A live slot's id, version and payload (object or NULL; borrowed until
//  the next write).
const pointid_t *segment_slot_id (const segment_t *self, uint32_t slot);
uint64_t segment_slot_version (const segment_t *self, uint32_t slot);
const json_t *segment_slot_payload (const segment_t *self, uint32_t slot);
//  filter_match for a live slot (has_vector answered from the segment).
bool segment_slot_match (const segment_t *self, const filter_t *filter, uint32_t slot);
//  True if live slot has vector `name`.
bool segment_slot_has_vector (const segment_t *self, const char *name, uint32_t slot);
//  Live slots matching filter among slots (ascending; NULL = all), in
//  pointid_cmp order from offset as segment_scroll; the same with a
//  candidate list for segment_count / segment_select.
size_t segment_scroll_slots (const segment_t *self, const filter_t *filter,
                             const uint32_t *slots, size_t n_slots,
                             const pointid_t *offset, size_t limit, pointid_t *ids,
                             pointid_t *next, bool *has_next);
size_t segment_count_slots (const segment_t *self, const filter_t *filter,
                            const uint32_t *slots, size_t n_slots);
size_t segment_select_slots (const segment_t *self, const filter_t *filter,
                             const uint32_t *slots, size_t n_slots, pointid_t **ids);

//  --- dense vectors as the graph sees them --------------------------------
//  The flat array of dense vector `name` (slot i at base + i * stride, see
//  segment_dense_stride), or NULL (no such dense vector, or nothing
//  allocated yet). It starts on a 64-byte boundary. It moves when the
//  segment grows: read it again after writes.
const float *segment_dense_base (const segment_t *self, const char *name);
//  Floats from one row of dense vector `name` to the next: dim padded so
//  every row starts on a 64-byte cache line (a multiple of 16, or below 16
//  the next power of two). 0 for an unknown or sparse name.
size_t segment_dense_stride (const segment_t *self, const char *name);
//  Vectors of `name` present (0 for an unknown name).
size_t segment_vector_count_of (const segment_t *self, const char *name);

//  Marks slot's current vector `name` as held by the index. May run while
//  other threads read (atomic); a write to that vector clears the mark.
//  0, or -SH_ENOTFOUND if the slot has no such vector.
int segment_set_indexed (segment_t *self, const char *name, uint32_t slot);
bool segment_is_indexed (const segment_t *self, const char *name, uint32_t slot);
//  Vectors of `name` marked indexed.
size_t segment_indexed_count (const segment_t *self, const char *name);
//  Clears every mark of `name` (an index dropped). Writer only.
void segment_clear_indexed (segment_t *self, const char *name);
//  Keeps only the marks of `name` whose bit is set in keep (n_words words
//  over slots; slots beyond lose theirs): a rebuilt graph takes over.
//  Writer only.
void segment_keep_indexed (segment_t *self, const char *name, const uint64_t *keep,
                           size_t n_words);
//  The marks as a bitmap over slots (bit i of word i/64), borrowed until the
//  next write; NULL for an unknown or sparse name. Fast membership for
//  graph filters.
const uint64_t *segment_indexed_bits (const segment_t *self, const char *name);
//  The first slot >= from whose vector `name` is present and not indexed,
//  or UINT32_MAX.
uint32_t segment_next_unindexed (const segment_t *self, const char *name, uint32_t from);

//  --- payload observer -------------------------------------------------------
//  Called after every change to a slot's payload or liveness: a new point
//  (was_live false), a deleted one (is_live false), an upsert or payload
//  edit of an existing one (both true). old_payload is what the slot had,
//  new_payload what it has now (objects or NULL; borrowed for the call).
typedef void (segment_observer_fn) (uint32_t slot, const json_t *old_payload, bool was_live,
                                    const json_t *new_payload, bool is_live, void *arg);
//  One observer (NULL to remove).
void segment_set_observer (segment_t *self, segment_observer_fn *fn, void *arg);

//  --- putting points back where an index knows them ----------------------
//  Grows the slot range to n: slots from the old end to n become holes,
//  neither live nor handed out by segment_upsert, until segment_upsert_at
//  fills one or segment_reclaim_holes frees the rest. 0, or -SH_ETOOBIG.
int segment_reserve_slots (segment_t *self, uint32_t n);
//  As segment_upsert for a point not in the segment, placed in hole slot.
//  -SH_EINVAL if slot is not a hole, -SH_EEXIST if the id is here already.
int segment_upsert_at (segment_t *self, uint32_t slot, const pointid_t *id,
                       uint64_t version, const segment_vec_t *vecs, size_t n_vecs,
                       json_t *payload, char *err, size_t errlen);
//  Frees every remaining hole for reuse.
void segment_reclaim_holes (segment_t *self);

#endif
