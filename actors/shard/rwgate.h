/*  rwgate: the shard's readers-writer lock over its segment, payload and
    vector indexes, with writers first.

    The shard actor's main thread is the only writer: it takes the gate for
    writing at the first write of a loop turn and gives it back after that
    turn's commit, so a read never sees a point a crash could take back.
    Search workers and the optimizer read. A waiting writer holds back new
    readers (a stream of searches must not starve writes), and a long reader
    (the optimizer inserting into a graph) asks rwgate_writer_waiting between
    steps and steps aside.

    A gate can be closed: readers waiting or arriving get false from
    rwgate_read_lock instead of the lock, so a shard that must stop with
    memory ahead of disk (a failed commit) never lets a read see it.
*/
#ifndef SH_RWGATE_H
#define SH_RWGATE_H

#include <stdbool.h>

typedef struct _rwgate_t rwgate_t;

rwgate_t *rwgate_new (void);
//  NULL-safe; nulls *self_p. Nobody may hold or wait for the gate.
void rwgate_destroy (rwgate_t **self_p);

//  Shared access: true once held, false if the gate is closed (not held
//  then). Not reentrant: a reader must not take it twice (a writer waiting
//  in between would deadlock both).
bool rwgate_read_lock (rwgate_t *self);
void rwgate_read_unlock (rwgate_t *self);
//  Exclusive access; waits for the readers in flight, holds new ones back.
void rwgate_write_lock (rwgate_t *self);
void rwgate_write_unlock (rwgate_t *self);
//  True if a writer is waiting (for readers that can pause).
bool rwgate_writer_waiting (rwgate_t *self);
//  Closes the gate for readers (for good); the writer keeps it if held.
void rwgate_close (rwgate_t *self);

#endif
