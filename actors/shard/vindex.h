/*  vindex: a shard's vector indexes: one HNSW graph (hnsw.h) per dense
    vector, over the segment's slots, built and kept up to date in the
    background, saved next to the shard's store and loaded on start.

    Who calls what (the gate is the shard's rwgate):
    - the main thread, holding the gate for writing: vindex_configure when
      the collection config arrives or changes, vindex_after_writes at the
      end of every turn that wrote (graphs follow the segment's moved
      arrays; the committed seq is what a save covers);
    - at start, around loading the store: vindex_load_begin, then
      vindex_slot_hint per point (put it in that slot with
      segment_upsert_at), then vindex_load_end;
    - the optimizer thread (one), holding the gate for reading:
      vindex_work, vindex_save_begin (or vindex_save); then, holding no
      side of the gate, vindex_save_finish, before its next vindex call.
      Only this thread changes a graph, so a save writes the graphs as they
      are, with no lock, while the main thread writes and searches run; a
      graph the main thread drops meanwhile is freed later, by this thread;
    - readers, holding the gate for reading: vindex_search and the
      getters.

    Indexing follows Qdrant's thresholds: a vector's graph is built once its
    vectors take more than optimizer_config.indexing_threshold kilobytes
    (0: never; hnsw_config.m 0: no graph), and then kept for good. A slot is
    searchable through the graph when the segment marks it indexed (the
    graph holds its current vector); every other slot is scanned exactly,
    so a search is right while the graph is behind.

    New and changed vectors go into a graph in batches, inserted by
    hnsw_config.max_indexing_threads threads at once (0: one per core), all
    under the optimizer's hold of the gate.

    Files in the shard dir: vindex.manifest (the seq the save covers, every
    slot's point id, and per graph which slots it held current), and one
    hnsw-<hex name>-<tag>.graph per vector, the tag new for every save. A
    save writes the graphs, then the manifest (tmp, fsync, rename), then
    removes the graph files it does not name, so a crash leaves the old or
    the new save whole. A file that does not check
    out is logged and its graph rebuilt.
*/
#ifndef SH_VINDEX_H
#define SH_VINDEX_H

#include "actors/shard/hnsw.h"
#include "actors/shard/segment.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VINDEX_MANIFEST "vindex.manifest"

typedef struct _vindex_t vindex_t;

//  Index parameters of one dense vector (Qdrant's names).
typedef struct {
    uint32_t m;                 //  hnsw_config.m; 0 = no graph
    uint32_t ef_construct;      //  hnsw_config.ef_construct (also the default search ef)
    uint64_t full_scan_kb;      //  hnsw_config.full_scan_threshold: below, search exactly
    uint64_t indexing_kb;       //  optimizer_config.indexing_threshold; 0 = never index
    uint32_t threads;           //  hnsw_config.max_indexing_threads; 0 = one per core
} vindex_params_t;

//  The params of vector `name` in a collection config: hnsw_config, then the
//  vector's own params.vectors[name].hnsw_config over it, and
//  optimizer_config.indexing_threshold (Qdrant's defaults where absent).
void vindex_params_from_config (const json_t *config, const char *name,
                                vindex_params_t *out);

//  Indexes over segment (borrowed; outlives the vindex), files in dir.
vindex_t *vindex_new (segment_t *segment, const char *dir);
void vindex_destroy (vindex_t **self_p);

//  --- main thread, gate held for writing -------------------------------------
//  Sets the params of dense vector name. A change of m or ef_construct drops
//  its graph (rebuilt in the background). -SH_EINVAL if the segment has no
//  such dense vector.
int vindex_configure (vindex_t *self, const char *name, const vindex_params_t *params);
//  After a turn's writes were committed at seq: graphs read the segment's
//  arrays where they are now.
void vindex_after_writes (vindex_t *self, uint64_t committed_seq);

//  --- start -------------------------------------------------------------------
//  Loads the saved graphs that match the configured vectors and reserves
//  their slots in the (empty) segment. store_seq is the store's committed
//  seq: a save that claims to cover more is not this store's and is not
//  used. Always 0: what does not load is logged and rebuilt later.
int vindex_load_begin (vindex_t *self, uint64_t store_seq);
//  The slot a saved graph knows point id by: true and *slot.
bool vindex_slot_hint (vindex_t *self, const pointid_t *id, uint32_t *slot);
//  With every point loaded (committed seq given): reconciles the graphs with
//  the points (what changed since the save is re-indexed, what is gone is
//  deleted from the graph) and frees the unused reserved slots.
void vindex_load_end (vindex_t *self, uint64_t committed_seq);

//  --- optimizer thread, gate held for reading ------------------------------
//  Asks whether to stop early (a writer waits, the shard stops).
typedef bool (vindex_yield_fn) (void *arg);
//  Builds, extends and repairs the graphs until caught up or should_yield
//  says so. true if work is left.
bool vindex_work (vindex_t *self, vindex_yield_fn *should_yield, void *arg);
//  True when a rebuilt graph is ready to replace its old one; the optimizer
//  then takes the gate for writing and calls vindex_swap.
bool vindex_swap_due (vindex_t *self);
void vindex_swap (vindex_t *self);
//  True when a save is due now (the graphs or points changed since the last
//  one, and it is long enough ago, or a build has just finished). force:
//  due whenever anything changed (a clean shutdown).
bool vindex_save_due (vindex_t *self, bool force);
//  A save in two steps, so that the gate is held only while what it writes
//  is taken: vindex_save_begin (read side) takes the manifest (every slot's
//  point id, the marks, the committed seq) and the graphs to write, in a
//  pass over the slots that copies a few bytes each; vindex_save_finish
//  (no side needed; destroys the snapshot) writes the graphs and the
//  manifest and fsyncs them. 0 or -SH_EIO (logged; the old save stays).
typedef struct _vindex_save_t vindex_save_t;
vindex_save_t *vindex_save_begin (vindex_t *self);
int vindex_save_finish (vindex_t *self, vindex_save_t **snap_p);
//  Both steps at once (read side held throughout).
int vindex_save (vindex_t *self);

//  --- readers ------------------------------------------------------------------
//  The params of dense vector name; false if not configured.
bool vindex_params (vindex_t *self, const char *name, vindex_params_t *out);
//  True if name has a graph to search.
bool vindex_has_graph (vindex_t *self, const char *name);
//  Graph search for the k nearest indexed slots of `name` that accept takes
//  (NULL: all), best first, into slots (room for k). query: dim floats,
//  normalized for Cosine. ef 0: the graph's ef_construct. Returns the count.
size_t vindex_search (vindex_t *self, const char *name, const float *query, size_t k,
                      size_t ef, hnsw_accept_fn accept, void *arg, uint32_t *slots);
//  Vectors the graphs hold current, over every dense vector.
size_t vindex_indexed_count (vindex_t *self);
//  True while some vector's graph is behind its points (collection status
//  yellow): indexing is on for it and not every vector is indexed.
bool vindex_behind (vindex_t *self);

#endif
