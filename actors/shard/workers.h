/*  workers: a pool of threads that serve a shard's reads (search, retrieve,
    scroll, count) while its main thread owns the ROUTER, the writes and
    the commits, so searches/s grows with cores (DESIGN.md §5).

    The main thread submits jobs (the caller's pointers) to one queue; an
    idle worker takes the oldest. Each worker owns a PUSH socket connected
    to an endpoint the main thread has bound a PULL on (inproc://...), and
    hands its results back through it: ZeroMQ sockets are not shared between
    threads, and the main thread, which alone may touch the ROUTER, forwards
    what it pulls.

    The workers also serve direct connections (workers_listen): a unix
    stream socket on which another process (the gateway) writes read
    requests; a worker reads one, serves it and writes the answer back on
    the same connection itself. A search then wakes one thread of the
    shard instead of four (the ZeroMQ I/O thread, the main thread, the
    worker, the main thread again to forward), which on a small machine is
    most of what a search costs beyond the search (proto/envelope.h).

    Stopping finishes the jobs in flight and hands the ones still queued to
    the drop callback, then joins every thread and closes the connections.
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

//  Runs on a worker thread when direct connection fd (workers_listen) has
//  a request, or was closed: reads one request and answers it on fd.
//  Returns false when the connection is done with (closed by the peer, or
//  broken), which closes it.
typedef bool (workers_conn_fn) (int fd, void *arg);

//  Starts n threads (n >= 1), each connecting a PUSH socket to endpoint.
//  NULL if a thread cannot be started.
workers_t *workers_new (size_t n, const char *endpoint, workers_fn *fn,
                        workers_drop_fn *drop, void *arg);
//  Stops the pool as described above; NULL-safe, nulls *self_p.
void workers_destroy (workers_t **self_p);
//  Starts no more jobs from now on (those running go on); returns at once.
//  workers_destroy then joins and drops what is queued.
void workers_stop (workers_t *self);

//  Also serves connections on a unix stream socket bound at path (a file
//  left there is replaced; workers_destroy removes it): a worker accepts
//  them, and runs fn (with the pool's arg) whenever one has a request, one
//  worker at a time per connection, so a connection's requests are answered
//  in order. 0, or -SH_EIO (logged by the caller) when the socket cannot be
//  made or the pool listens already.
int workers_listen (workers_t *self, const char *path, workers_conn_fn *fn);

//  Queues a job (taken: the worker or drop gets it).
void workers_submit (workers_t *self, void *job);
//  Jobs queued and not started.
size_t workers_queued (workers_t *self);
size_t workers_size (const workers_t *self);

//  Threads a shard should run: the online cores, at least 2 (one core still
//  gets a second thread so a long search does not hold up a short one).
size_t workers_default_count (void);

#endif
