/*  workers: a pool of threads that serve a shard's reads (search, retrieve,
    scroll, count) while its main thread owns the ROUTER, the writes and
    the commits, so searches/s grows with cores (DESIGN.md §5).

    The main thread submits jobs (the caller's pointers) to one queue; an
    idle worker takes the oldest. Each worker owns a PUSH socket connected
    to an endpoint the main thread has bound a PULL on (inproc://...), and
    hands its results back through it: ZeroMQ sockets are not shared between
    threads, and the main thread, which alone may touch the ROUTER, forwards
    what it pulls.

    Stopping finishes the jobs in flight and hands the ones still queued to
    the drop callback, then joins every thread.
*/
#ifndef SH_WORKERS_H
#define SH_WORKERS_H

#include <czmq.h>
#include <stddef.h>

typedef struct _workers_t workers_t;

//  Runs one job on a worker thread; out is that worker's PUSH socket.
typedef void (workers_fn) (void *job, zsock_t *out, void *arg);
//  Disposes of a job that never ran (the pool is stopping).
typedef void (workers_drop_fn) (void *job, void *arg);

//  Starts n threads (n >= 1), each connecting a PUSH socket to endpoint.
//  NULL if a thread cannot be started.
workers_t *workers_new (size_t n, const char *endpoint, workers_fn *fn,
                        workers_drop_fn *drop, void *arg);
//  Stops the pool as described above; NULL-safe, nulls *self_p.
void workers_destroy (workers_t **self_p);
//  Starts no more jobs from now on (those running go on); returns at once.
//  workers_destroy then joins and drops what is queued.
void workers_stop (workers_t *self);

//  Queues a job (taken: the worker or drop gets it).
void workers_submit (workers_t *self, void *job);
//  Jobs queued and not started.
size_t workers_queued (workers_t *self);
size_t workers_size (const workers_t *self);

//  Threads a shard should run: the online cores, at least 2 (one core still
//  gets a second thread so a long search does not hold up a short one).
size_t workers_default_count (void);

#endif
