/*  hnsw: a Hierarchical Navigable Small World graph (Malkov & Yashunin,
    "Efficient and robust approximate nearest neighbor search using HNSW
    graphs", 2016/2018) over vectors the caller owns: the segment's flat
    float32 array of one named vector. The graph keeps only links; node ids
    are the segment's slot numbers, so a hit is a slot and no memory is
    duplicated.

    Layout: level 0 holds every node's link list in one flat array (a count
    then 2*M ids per node, one stride apart), which is what a search walks
    almost all the time; the few nodes above level 0 get their upper lists
    (count + M ids per level) in one allocation each. Deleted nodes are
    marked in a bitmap and stay in the graph as waypoints: searches walk
    through them but never return them.

    No node is left out of reach: the neighbour heuristic can drop a node
    from every level-0 list that held it (hnswlib leaves 0.3% of
    Fashion-MNIST so, unreturnable even for their own vector), so the graph
    counts for each node the level-0 lists holding it and links one whose
    count falls to zero back in from its own nearest neighbours.

    Distances are the raw kernels of common/distance.h as a "smaller is
    closer" value: squared L2 (Euclid), L1 (Manhattan), and the negated dot
    product (Cosine, Dot). Cosine vectors and queries must be normalized by
    the caller (the segment normalizes on insert).

    Concurrency (as hnswlib):
    - Any number of threads may call hnsw_search at once, while any number
      of threads call hnsw_insert / hnsw_delete for DIFFERENT slots. Link
      lists are written under a per-node spinlock (one held at a time, so
      no lock order exists to get wrong) and read without locks: a writer
      stores the ids before publishing the count, and every id ever stored
      names a node whose lists already exist, so a reader sees a valid,
      possibly slightly stale, list. An insert writes its links level 0
      first and its own list before any back-link to it, so a node another
      thread can reach has every list below already in place. The entry
      point and top level change together in one atomic word.
    - The vector of a slot must be complete before hnsw_insert (slot) and
      must not change while the slot is in the graph, except through
      hnsw_insert again (an update, see there), which the caller must not
      run concurrently with searches that could read the half-written
      vector if torn reads matter to it (they never crash the graph).
    - Growing the node arrays (an insert past the capacity, hnsw_reserve)
      and hnsw_set_vectors take an internal write lock: they wait for the
      searches and inserts in flight and hold new ones back until done.
    - hnsw_save must not run concurrently with writers (inserts, deletes,
      hnsw_reserve); searches and hnsw_set_vectors may go on: it holds no
      lock while it writes.
*/
#ifndef SH_HNSW_H
#define SH_HNSW_H

#include "common/distance.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _hnsw_t hnsw_t;

//  Build parameters; zeros take the defaults.
typedef struct {
    uint32_t m;                 //  links per node above level 0 (2*m at level 0); 16
    uint32_t ef_construct;      //  candidate list size while inserting; 100
    uint64_t seed;              //  level draw: level(slot) depends on seed and slot only
} hnsw_params_t;

//  Largest m and ef_construct accepted (bigger ones are -SH_EINVAL / NULL).
#define HNSW_MAX_M 256
#define HNSW_MAX_EF 65536
//  Slots are uint32; this one is reserved.
#define HNSW_NO_SLOT UINT32_MAX

//  Where the graph reads vector `slot` when not a base + stride array; must
//  return dim floats for every slot that is in the graph, from any thread.
typedef const float *(*hnsw_vector_fn) (uint32_t slot, void *arg);
//  A search filter: true if slot may be returned. Called from the searching
//  thread, only for slots not deleted; it must not call back into the graph.
typedef bool (*hnsw_accept_fn) (uint32_t slot, void *arg);

typedef struct {
    uint32_t slot;              //  node id = the caller's slot
    float distance;             //  raw distance (see above), smaller = closer
} hnsw_hit_t;

//  A new, empty graph for dim-float vectors compared with distance. params
//  may be NULL (defaults). NULL if dim is 0 or > 65536 or a parameter is out
//  of range. No vectors until hnsw_set_vectors / hnsw_set_vector_fn.
hnsw_t *hnsw_new (distance_t distance, uint32_t dim, const hnsw_params_t *params);
//  Frees the graph (not the vectors); NULL-safe, nulls *self_p.
void hnsw_destroy (hnsw_t **self_p);

//  Vector of slot i = base + i * stride floats (stride >= dim). Waits for
//  searches and inserts in flight: to move the array, the caller copies it
//  to the new place, calls this, then frees the old one.
void hnsw_set_vectors (hnsw_t *self, const float *base, size_t stride);
//  Vector of slot i = fn (i, arg) instead.
void hnsw_set_vector_fn (hnsw_t *self, hnsw_vector_fn fn, void *arg);

//  Grows the node arrays so slots below capacity need no growth later
//  (inserts grow them as needed anyway). 0 or -SH_EINVAL (capacity above
//  HNSW_NO_SLOT).
int hnsw_reserve (hnsw_t *self, uint32_t capacity);

//  Links slot (its vector readable now) into the graph: 0, or -SH_EINVAL for
//  HNSW_NO_SLOT. If the slot is already in the graph (live or deleted), its
//  vector is taken to have changed in place: the slot is relinked where the
//  new vector belongs (its old neighbours' lists are repaired and it gets
//  new ones, as hnswlib's updatePoint) and is live again. One thread per
//  slot at a time; different slots from any number of threads.
int hnsw_insert (hnsw_t *self, uint32_t slot);
//  Marks slot deleted: never returned again, still walked through. 0 (also
//  if already deleted), or -SH_ENOTFOUND if slot is not in the graph.
int hnsw_delete (hnsw_t *self, uint32_t slot);
//  True if slot is in the graph and not deleted.
bool hnsw_contains (hnsw_t *self, uint32_t slot);

//  The k nearest live slots to query (dim floats; normalized for Cosine)
//  that accept (slot, arg) takes (accept NULL = all), best first, written
//  to hits (room for k). ef = candidate list size (raised to k); larger is
//  slower and more exact. Returns the number of hits (< k only if fewer
//  live nodes pass the filter, or the graph is disconnected from them).
size_t hnsw_search (hnsw_t *self, const float *query, size_t k, size_t ef,
                    hnsw_accept_fn accept, void *arg, hnsw_hit_t *hits);

//  Nodes in the graph, deleted ones included.
size_t hnsw_node_count (hnsw_t *self);
//  Nodes marked deleted: when too many, the caller rebuilds the graph.
size_t hnsw_deleted_count (hnsw_t *self);
//  Live nodes (node count - deleted count).
size_t hnsw_size (hnsw_t *self);
uint32_t hnsw_dim (const hnsw_t *self);
distance_t hnsw_distance (const hnsw_t *self);
//  The parameters in use (defaults filled in).
hnsw_params_t hnsw_params (const hnsw_t *self);
//  Bytes the graph allocates (links, levels, locks, bitmaps; not vectors).
size_t hnsw_memory (hnsw_t *self);
//  Nodes (deleted ones included) that no walk from the entry point reaches
//  at level 0, i.e. that no search can ever find: a health check for tests
//  and diagnostics that visits the whole graph. Not concurrent with writers.
size_t hnsw_unreachable (hnsw_t *self);

//  Writes the graph and the sequence number it covers to path (via
//  path.tmp, fsync, rename, so path is the old or the new file after a
//  crash). The file ends in a BLAKE2b checksum over everything before it.
//  0 or -SH_EIO.
int hnsw_save (hnsw_t *self, const char *path, uint64_t covered_seq);
//  Reads a graph hnsw_save wrote: 0, *self_p (a new graph, no vectors set)
//  and *covered_seq; -SH_EIO if it cannot be read or is truncated,
//  -SH_EPROTO if it is corrupt (bad magic, version, checksum or contents).
//  The caller compares hnsw_distance/hnsw_dim with what it expects.
int hnsw_load (const char *path, hnsw_t **self_p, uint64_t *covered_seq);

#endif
