/*  optimizer: the shard's background thread that builds and keeps up its
    vector indexes (vindex.h), as Qdrant's optimizers do, and fills the
    payload indexes a new payload_schema field asks for (pindex.h), without
    blocking the shard: it works holding the gate for reading, so searches
    go on, and steps aside whenever the main thread waits to write. What it
    finished (a rebuilt graph, a filled payload index) it puts in place
    under the gate's write side, for as long as a pointer swap takes.

    It wakes when kicked (after a turn's writes) and once a second, works
    until the graphs are caught up, saves them when a save is due, and on
    stop saves what changed before its thread ends.
*/
#ifndef SH_OPTIMIZER_H
#define SH_OPTIMIZER_H

#include "actors/shard/pindex.h"
#include "actors/shard/rwgate.h"
#include "actors/shard/vindex.h"

#include <stdbool.h>

typedef struct _optimizer_t optimizer_t;

//  Starts the thread over vindex and gate (both borrowed, outliving it).
//  NULL if the thread cannot start.
optimizer_t *optimizer_new (vindex_t *vindex, rwgate_t *gate);
//  Stops the thread (a last save if anything changed) and joins it. The
//  caller must not hold the gate. NULL-safe; nulls *self_p.
void optimizer_destroy (optimizer_t **self_p);
//  Tells the thread there may be work.
void optimizer_kick (optimizer_t *self);
//  While held, the graphs are neither built nor updated (payload indexes
//  and saves go on): a replica that receives a shard transfer serves no
//  reads, and the stream needs the cores. Releasing kicks the thread, which
//  then indexes everything that arrived.
void optimizer_hold_graphs (optimizer_t *self, bool hold);
//  Also fills pindex's building fields (borrowed, outliving the optimizer),
//  reading the points' payloads with payload_of (arg), and publishes them.
void optimizer_set_pindex (optimizer_t *self, pindex_t *pindex,
                           pindex_payload_fn *payload_of, void *arg);

#endif
