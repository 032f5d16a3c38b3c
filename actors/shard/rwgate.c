/*  rwgate: a writer-preferring readers-writer lock (see rwgate.h).

    A mutex and two condition variables rather than pthread_rwlock_t: glibc's
    rwlock prefers readers by default, and neither kind tells a reader that
    a writer is waiting, which the optimizer needs to step aside between two
    graph inserts. writers_waiting is also read without the mutex (an atomic
    load) so that check costs nothing in the optimizer's inner loop.
*/
#include "actors/shard/rwgate.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct _rwgate_t {
    pthread_mutex_t mutex;      //  guards the fields below
    pthread_cond_t readers_cv;  //  readers wait here for the writer to leave
    pthread_cond_t writer_cv;   //  the writer waits here for readers to leave
    unsigned readers;           //  readers holding the gate
    unsigned writers_waiting;   //  writers waiting (atomic reads outside the mutex)
    bool writer;                //  a writer holds the gate
    bool closed;                //  readers are refused for good
};

rwgate_t *
rwgate_new (void)
{
    rwgate_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->readers_cv, NULL);
    pthread_cond_init (&self->writer_cv, NULL);
    return self;
}

void
rwgate_destroy (rwgate_t **self_p)
{
    assert (self_p);
    rwgate_t *self = *self_p;
    if (!self)
        return;
    assert (self->readers == 0 && self->writers_waiting == 0);
    pthread_mutex_destroy (&self->mutex);
    pthread_cond_destroy (&self->readers_cv);
    pthread_cond_destroy (&self->writer_cv);
    free (self);
    *self_p = NULL;
}

bool
rwgate_read_lock (rwgate_t *self)
{
    pthread_mutex_lock (&self->mutex);
    while (!self->closed && (self->writer || self->writers_waiting))
        pthread_cond_wait (&self->readers_cv, &self->mutex);
    bool held = !self->closed;
    if (held)
        self->readers++;
    pthread_mutex_unlock (&self->mutex);
    return held;
}

void
rwgate_read_unlock (rwgate_t *self)
{
    pthread_mutex_lock (&self->mutex);
    assert (self->readers > 0);
    if (--self->readers == 0 && self->writers_waiting)
        pthread_cond_signal (&self->writer_cv);
    pthread_mutex_unlock (&self->mutex);
}

void
rwgate_write_lock (rwgate_t *self)
{
    pthread_mutex_lock (&self->mutex);
    __atomic_add_fetch (&self->writers_waiting, 1, __ATOMIC_RELAXED);
    while (self->writer || self->readers)
        pthread_cond_wait (&self->writer_cv, &self->mutex);
    __atomic_sub_fetch (&self->writers_waiting, 1, __ATOMIC_RELAXED);
    self->writer = true;
    pthread_mutex_unlock (&self->mutex);
}

void
rwgate_write_unlock (rwgate_t *self)
{
    pthread_mutex_lock (&self->mutex);
    assert (self->writer);
    self->writer = false;
    if (self->writers_waiting)
        pthread_cond_signal (&self->writer_cv);
    else
        pthread_cond_broadcast (&self->readers_cv);
    pthread_mutex_unlock (&self->mutex);
}

bool
rwgate_writer_waiting (rwgate_t *self)
{
    return __atomic_load_n (&self->writers_waiting, __ATOMIC_RELAXED) != 0;
}

void
rwgate_close (rwgate_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->closed = true;
    pthread_cond_broadcast (&self->readers_cv);
    pthread_mutex_unlock (&self->mutex);
}
