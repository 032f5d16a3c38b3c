/*  optimizer: the shard's background thread that builds and keeps up its
    vector indexes (vindex.h), as Qdrant's optimizers do, without blocking
    the shard: it works holding the gate for reading, so searches go on,
    and steps aside whenever the main thread waits to write.

    It wakes when kicked (after a turn's writes) and once a second, works
    until the graphs are caught up, saves them when a save is due, and on
    stop saves what changed before its thread ends.
*/
#ifndef SH_OPTIMIZER_H
#define SH_OPTIMIZER_H

#include "actors/shard/rwgate.h"
#include "actors/shard/vindex.h"

typedef struct _optimizer_t optimizer_t;

//  Starts the thread over vindex and gate (both borrowed, outliving it).
//  NULL if the thread cannot start.
optimizer_t *optimizer_new (vindex_t *vindex, rwgate_t *gate);
//  Stops the thread (a last save if anything changed) and joins it. The
//  caller must not hold the gate. NULL-safe; nulls *self_p.
void optimizer_destroy (optimizer_t **self_p);
//  Tells the thread there may be work.
void optimizer_kick (optimizer_t *self);

#endif
