/*  workers: a fixed pool of threads over one FIFO queue (see workers.h).

    The queue is a ring of job pointers grown by doubling under the pool's
    mutex; a condition variable wakes one idle worker per job. Each worker
    creates, uses and destroys its PUSH socket on its own thread, as ZeroMQ
    requires, with a linger so results sent just before a stop still reach
    the main thread's PULL.
*/
#include "actors/shard/workers.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  How long a worker's socket keeps undelivered results once closed (ms).
#define S_LINGER_MS 2000

typedef struct {
    struct _workers_t *pool;    //  the pool this thread serves
    pthread_t thread;           //  the thread
    bool started;               //  pthread_create succeeded
} s_worker_t;

struct _workers_t {
    char *endpoint;             //  where the PUSH sockets connect
    workers_fn *fn;             //  runs a job
    workers_drop_fn *drop;      //  disposes of a job never run
    void *arg;                  //  for fn and drop
    pthread_mutex_t mutex;      //  guards the queue and stopping
    pthread_cond_t cv;          //  signalled per job and on stop
    void **ring;                //  queued jobs, a ring of cap entries
    size_t cap;                 //  ring capacity (a power of two)
    size_t head;                //  index of the oldest job
    size_t count;               //  jobs queued
    bool stopping;              //  workers leave once they see it
    s_worker_t *threads;        //  n_threads entries
    size_t n_threads;           //  threads started
};

static void *
s_worker_main (void *argp)
{
    s_worker_t *worker = (s_worker_t *) argp;
    workers_t *self = worker->pool;
    zsock_t *out = zsock_new (ZMQ_PUSH);
    assert (out);
    zsock_set_linger (out, S_LINGER_MS);
    //  Results must never be dropped by a full pipe: the main thread
    //  always drains, so a blocked send only waits for it.
    zsock_set_sndhwm (out, 0);
    int rc = zsock_connect (out, "%s", self->endpoint);
    assert (rc == 0);
    for (;;) {
        pthread_mutex_lock (&self->mutex);
        while (!self->stopping && self->count == 0)
            pthread_cond_wait (&self->cv, &self->mutex);
        if (self->stopping) {
            pthread_mutex_unlock (&self->mutex);
            break;
        }
        void *job = self->ring [self->head];
        self->head = (self->head + 1) & (self->cap - 1);
        self->count--;
        pthread_mutex_unlock (&self->mutex);
        self->fn (job, out, self->arg);
    }
    zsock_destroy (&out);
    return NULL;
}

workers_t *
workers_new (size_t n, const char *endpoint, workers_fn *fn, workers_drop_fn *drop,
             void *arg)
{
    assert (endpoint && fn);
    if (n == 0)
        n = 1;
    workers_t *self = calloc (1, sizeof *self);
    assert (self);
    self->endpoint = strdup (endpoint);
    self->fn = fn;
    self->drop = drop;
    self->arg = arg;
    self->cap = 64;
    self->ring = calloc (self->cap, sizeof *self->ring);
    self->threads = calloc (n, sizeof *self->threads);
    assert (self->endpoint && self->ring && self->threads);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cv, NULL);
    for (size_t i = 0; i < n; i++) {
        s_worker_t *worker = &self->threads [i];
        worker->pool = self;
        if (pthread_create (&worker->thread, NULL, s_worker_main, worker) != 0) {
            workers_destroy (&self);
            return NULL;
        }
        worker->started = true;
        self->n_threads++;
    }
    return self;
}

void
workers_destroy (workers_t **self_p)
{
    assert (self_p);
    workers_t *self = *self_p;
    if (!self)
        return;
    workers_stop (self);
    for (size_t i = 0; i < self->n_threads; i++)
        if (self->threads [i].started)
            pthread_join (self->threads [i].thread, NULL);
    //  Threads are gone: the queue is ours alone.
    while (self->count) {
        void *job = self->ring [self->head];
        self->head = (self->head + 1) & (self->cap - 1);
        self->count--;
        if (self->drop)
            self->drop (job, self->arg);
    }
    pthread_mutex_destroy (&self->mutex);
    pthread_cond_destroy (&self->cv);
    free (self->ring);
    free (self->threads);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

void
workers_stop (workers_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->stopping = true;
    pthread_cond_broadcast (&self->cv);
    pthread_mutex_unlock (&self->mutex);
}

void
workers_submit (workers_t *self, void *job)
{
    pthread_mutex_lock (&self->mutex);
    if (self->count == self->cap) {
        //  Unroll the ring into a twice larger one.
        void **ring = calloc (self->cap * 2, sizeof *ring);
        assert (ring);
        for (size_t i = 0; i < self->count; i++)
            ring [i] = self->ring [(self->head + i) & (self->cap - 1)];
        free (self->ring);
        self->ring = ring;
        self->head = 0;
        self->cap *= 2;
    }
    self->ring [(self->head + self->count) & (self->cap - 1)] = job;
    self->count++;
    pthread_cond_signal (&self->cv);
    pthread_mutex_unlock (&self->mutex);
}

size_t
workers_queued (workers_t *self)
{
    pthread_mutex_lock (&self->mutex);
    size_t n = self->count;
    pthread_mutex_unlock (&self->mutex);
    return n;
}

size_t
workers_size (const workers_t *self)
{
    return self->n_threads;
}

size_t
workers_default_count (void)
{
    long n = sysconf (_SC_NPROCESSORS_ONLN);
    return n >= 2 ? (size_t) n : 2;
}
