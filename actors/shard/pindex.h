/*  pindex: a shard's payload indexes (Qdrant's PUT /collections/{c}/index),
    and the part of the query planner that reads them: cardinality estimates
    and candidate bitmaps for a filter.

    A field index is keyed by a payload path ("a.b", "a[].b", as filters
    write keys) and has a type: keyword, integer, float, bool, uuid, datetime
    (and geo / text, which are recorded and counted but answer no condition).
    Values are kept per slot (the segment's point slots) in CRoaring bitmaps:
    value -> slots for keyword, uuid (canonical lowercase UUID), integer and
    bool; a sorted column of (value, slot) for integer, float and datetime
    (microseconds since the epoch) ranges. Every field also keeps bitmaps of
    the slots where its key has a value, a null, an empty value, values of
    other types, and the slots per values_count, so is_empty, is_null,
    values_count and except are decided from the index too.

    Answers agree with filter_match exactly: pindex_select returns a set that
    is either exactly the matching slots (*exact) or a superset that the
    caller still checks with filter_match. Conditions on keys without an
    index, or that an index cannot decide (text match, geo, has_vector,
    slice), make the answer a superset, never a wrong one.

    Threads: reads (select, estimate, counts) take a const pindex and may run
    at the same time as each other, never with a write.

    Building a field in the background (the shard's optimizer thread): the
    writer adds the field with pindex_begin_field (it is shown at once, and
    answers nothing yet), a thread fills it with pindex_build_work while
    only readers run beside it (the gate's read side), the writes in
    between keep the part already filled up to date, and pindex_publish
    (writer side again) makes it answer reads. Until then a condition on
    its key is answered as without an index: a superset to check, never a
    wrong one. pindex_field_points and pindex_building may be called by the
    writer's thread at any time, even while a build runs.
*/
#ifndef SH_PINDEX_H
#define SH_PINDEX_H

#include "common/filter.h"
#include "common/pointid.h"
#include <jansson.h>
#include <roaring/roaring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PINDEX_KEYWORD, PINDEX_INTEGER, PINDEX_FLOAT, PINDEX_BOOL, PINDEX_UUID,
    PINDEX_DATETIME, PINDEX_GEO, PINDEX_TEXT
} pindex_type_t;

typedef struct {
    pindex_type_t type;     //  data type
    bool lookup;            //  integer: value -> slots map ("lookup", default true)
    bool range;             //  integer: sorted column for ranges ("range", default true)
} pindex_schema_t;

typedef struct _pindex_t pindex_t;

//  What a filter's has_id asks: the slot of a point id. true and *slot if
//  the point is in the segment.
typedef bool (pindex_slot_fn) (const pointid_t *id, uint32_t *slot, void *arg);
//  A live slot's payload (object or NULL), for building a new field index.
typedef const json_t *(pindex_payload_fn) (uint32_t slot, void *arg);

//  An estimate of how many points match: min <= true count <= max.
typedef struct {
    size_t min;             //  at least this many match
    size_t exp;             //  expected (min <= exp <= max)
    size_t max;             //  at most this many match
} pindex_card_t;

//  Parses a field_schema: "keyword" | "integer" | ... or {"type": ...,
//  options}. Qdrant's options are accepted (integer's lookup and range are
//  used; is_tenant, is_principal, on_disk, memory, enable_hnsw, prefix are
//  accepted and have no effect). 0, or -SH_EINVAL with a message in err.
int pindex_schema_parse (const json_t *json, pindex_schema_t *out, char *err,
                         size_t errlen);
//  Qdrant's name of a type ("keyword" ...).
const char *pindex_type_name (pindex_type_t type);

pindex_t *pindex_new (void);
void pindex_destroy (pindex_t **self_p);

//  --- writes ---------------------------------------------------------------
//  Every point of the segment is added once with its payload (NULL for none)
//  and removed before its slot is reused; an update is a remove with the old
//  payload, then an add with the new one. The pindex keeps no payloads: the
//  payload given to remove must be the one given to add.
//  0, or -SH_EEXIST (slot already added) / -SH_ENOTFOUND (slot not added).
int pindex_add_point (pindex_t *self, uint32_t slot, const json_t *payload);
int pindex_remove_point (pindex_t *self, uint32_t slot, const json_t *payload);

//  Creates the index of path with field_schema (JSON as in the REST body)
//  and fills it from every point added so far, asking payload_of for their
//  payloads (NULL only while no point was added). Creating an index that
//  exists with the same schema changes nothing but the params shown; with
//  another schema it is rebuilt, as Qdrant does. 0, or -SH_EINVAL (bad path
//  or schema; message in err). Fields still building are finished too.
int pindex_create_field (pindex_t *self, const char *path, const json_t *field_schema,
                         pindex_payload_fn *payload_of, void *arg, char *err,
                         size_t errlen);
//  The same, but the new index starts empty and building (see the top):
//  pindex_build_work fills it, pindex_publish makes it answer. A field
//  that exists (built or building) with the same schema only takes the new
//  params. 0, or -SH_EINVAL (message in err).
int pindex_begin_field (pindex_t *self, const char *path, const json_t *field_schema,
                        char *err, size_t errlen);
//  Drops the index of path, built or building. 0, or -SH_ENOTFOUND.
int pindex_drop_field (pindex_t *self, const char *path);

//  Asks a build whether to stop for now (a writer waits).
typedef bool (pindex_yield_fn) (void *arg);
//  Reader side, one thread at a time: fills the building fields from the
//  points' payloads (payload_of), a few hundred points between two looks
//  at should_yield (NULL: never), and prepares a filled field for reads.
//  true if filling is left.
bool pindex_build_work (pindex_t *self, pindex_payload_fn *payload_of, void *arg,
                        pindex_yield_fn *should_yield, void *yield_arg);
//  True when a filled field waits for pindex_publish.
bool pindex_publish_due (const pindex_t *self);
//  Writer side: filled fields answer reads from now on. Returns how many.
size_t pindex_publish (pindex_t *self);
//  True while some field is building (filled or not, not published).
bool pindex_building (const pindex_t *self);
//  True if path has an index that answers reads.
bool pindex_field_ready (const pindex_t *self, const char *path);

//  Merges the sorted columns' pending inserts and drops dead entries. Writes
//  do it when enough has piled up; call it after a batch to make later reads
//  as fast as they can be (optional).
void pindex_optimize (pindex_t *self);

//  --- reads ----------------------------------------------------------------
size_t pindex_size (const pindex_t *self);          //  points added
size_t pindex_field_count (const pindex_t *self);   //  field indexes (also building)
//  Canonical path of field index (< pindex_field_count), in creation order.
const char *pindex_field_name (const pindex_t *self, size_t index);
//  0 and *out with the schema of path's index, or -SH_ENOTFOUND.
int pindex_field_schema (const pindex_t *self, const char *path, pindex_schema_t *out);
//  Number of points with a value of the index's type at path (Qdrant's
//  payload_schema "points"); 0 if path has no index; while it builds, the
//  points it has taken so far.
size_t pindex_field_points (const pindex_t *self, const char *path);
//  Qdrant's payload_schema object: {path: {"data_type", "params"?, "points"}}.
//  Yours (json_decref).
json_t *pindex_payload_schema (const pindex_t *self);
//  Bytes of memory the indexes use (telemetry).
size_t pindex_memory (const pindex_t *self);

//  Estimates how many points match filter (NULL: all), from the indexes
//  alone, combining conditions as Qdrant's planner does. has_id is counted
//  through slot_of (NULL: has_id is not estimated).
void pindex_estimate (const pindex_t *self, const filter_t *filter,
                      pindex_slot_fn *slot_of, void *arg, pindex_card_t *out);
//  Candidate slots for filter (NULL: every point): a new bitmap in *out
//  (roaring_bitmap_free it). *exact is true when *out is exactly the set of
//  points filter_match accepts, false when it is a superset whose points must
//  still be checked.
void pindex_select (const pindex_t *self, const filter_t *filter,
                    pindex_slot_fn *slot_of, void *arg, roaring_bitmap_t **out,
                    bool *exact);

#endif
