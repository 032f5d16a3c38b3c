/*  optimizer: one thread running vindex upkeep (see optimizer.h).

    Each round takes the gate for reading, lets vindex_work run until it is
    caught up or a writer waits, then pindex_build_work likewise, takes what
    a save writes if one is due and nothing is left, gives the gate back and
    writes the save's files without it; a rebuilt
    graph is swapped in and filled payload indexes are published under the
    gate's write side. Rounds repeat while work is left; then the thread
    sleeps until kicked or a second has passed (periodic saves). While the
    graphs are held, rounds leave vindex alone.
*/
#include "actors/shard/optimizer.h"
#include "common/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

//  Longest sleep between rounds (ms): periodic saves are checked this often.
#define S_IDLE_MS 1000

struct _optimizer_t {
    vindex_t *vindex;           //  what to keep up (borrowed)
    rwgate_t *gate;             //  the shard's gate (borrowed)
    pthread_t thread;           //  the optimizer thread
    pthread_mutex_t mutex;      //  guards kicked and stopping
    pthread_cond_t cv;          //  signalled by kicks and the stop
    bool kicked;                //  work may be waiting
    bool stopping;              //  atomic: leave as soon as possible
    bool hold;                  //  graphs held (under mutex)
    pindex_t *pindex;           //  payload indexes to fill, or NULL (under mutex)
    pindex_payload_fn *payload_of;  //  their payload reader (under mutex)
    void *payload_arg;          //  its argument (under mutex)
};

static bool
s_should_yield (void *arg)
{
    optimizer_t *self = (optimizer_t *) arg;
    return rwgate_writer_waiting (self->gate)
        || __atomic_load_n (&self->stopping, __ATOMIC_RELAXED);
}

//  Rounds until caught up (or stopping). false if the gate is closed.
static bool
s_rounds (optimizer_t *self)
{
    pthread_mutex_lock (&self->mutex);
    pindex_t *pindex = self->pindex;
    pindex_payload_fn *payload_of = self->payload_of;
    void *payload_arg = self->payload_arg;
    pthread_mutex_unlock (&self->mutex);
    bool more = true;
    while (more && !__atomic_load_n (&self->stopping, __ATOMIC_RELAXED)) {
        pthread_mutex_lock (&self->mutex);
        bool hold = self->hold;
        pthread_mutex_unlock (&self->mutex);
        if (!rwgate_read_lock (self->gate))
            return false;
        more = !hold && vindex_work (self->vindex, s_should_yield, self);
        //  A step at least even when a writer waits, so a payload index
        //  build moves on under a steady stream of writes.
        if (pindex && pindex_build_work (pindex, payload_of, payload_arg, s_should_yield,
                                         self))
            more = true;
        bool publish = pindex && pindex_publish_due (pindex);
        bool swap = !hold && vindex_swap_due (self->vindex);
        vindex_save_t *save = NULL;
        if (!more && !swap && !publish && vindex_save_due (self->vindex, false))
            save = vindex_save_begin (self->vindex);
        rwgate_read_unlock (self->gate);
        //  The files are written with the gate free: writers and searches
        //  go on (only this thread changes the graphs).
        if (save)
            vindex_save_finish (self->vindex, &save);
        if (swap || publish) {
            rwgate_write_lock (self->gate);
            if (swap)
                vindex_swap (self->vindex);
            size_t published = publish ? pindex_publish (pindex) : 0;
            rwgate_write_unlock (self->gate);
            if (published)
                log_info ("optimizer: %zu payload index(es) built and in use", published);
            more = true;
        }
    }
    return true;
}

static void *
s_main (void *arg)
{
    optimizer_t *self = (optimizer_t *) arg;
    bool open = true;
    while (open) {
        pthread_mutex_lock (&self->mutex);
        if (!self->kicked && !self->stopping) {
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_sec += S_IDLE_MS / 1000;
            until.tv_nsec += (long) (S_IDLE_MS % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait (&self->cv, &self->mutex, &until);
        }
        self->kicked = false;
        bool stop = self->stopping;
        pthread_mutex_unlock (&self->mutex);
        if (stop)
            break;
        open = s_rounds (self);
    }
    //  A clean stop keeps what was built, so a restart does not redo it.
    if (open && rwgate_read_lock (self->gate)) {
        vindex_save_t *save = vindex_save_due (self->vindex, true)
                            ? vindex_save_begin (self->vindex) : NULL;
        rwgate_read_unlock (self->gate);
        if (save)
            vindex_save_finish (self->vindex, &save);
    }
    return NULL;
}

optimizer_t *
optimizer_new (vindex_t *vindex, rwgate_t *gate)
{
    assert (vindex && gate);
    optimizer_t *self = calloc (1, sizeof *self);
    assert (self);
    self->vindex = vindex;
    self->gate = gate;
    pthread_mutex_init (&self->mutex, NULL);
    pthread_cond_init (&self->cv, NULL);
    if (pthread_create (&self->thread, NULL, s_main, self) != 0) {
        log_error ("optimizer: cannot start its thread");
        pthread_mutex_destroy (&self->mutex);
        pthread_cond_destroy (&self->cv);
        free (self);
        return NULL;
    }
    return self;
}

void
optimizer_destroy (optimizer_t **self_p)
{
    assert (self_p);
    optimizer_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->mutex);
    __atomic_store_n (&self->stopping, true, __ATOMIC_RELAXED);
    pthread_cond_signal (&self->cv);
    pthread_mutex_unlock (&self->mutex);
    pthread_join (self->thread, NULL);
    pthread_mutex_destroy (&self->mutex);
    pthread_cond_destroy (&self->cv);
    free (self);
    *self_p = NULL;
}

void
optimizer_set_pindex (optimizer_t *self, pindex_t *pindex, pindex_payload_fn *payload_of,
                      void *arg)
{
    pthread_mutex_lock (&self->mutex);
    self->pindex = pindex;
    self->payload_of = payload_of;
    self->payload_arg = arg;
    self->kicked = true;
    pthread_cond_signal (&self->cv);
    pthread_mutex_unlock (&self->mutex);
}

void
optimizer_hold_graphs (optimizer_t *self, bool hold)
{
    pthread_mutex_lock (&self->mutex);
    if (self->hold && !hold) {
        self->kicked = true;
        pthread_cond_signal (&self->cv);
    }
    self->hold = hold;
    pthread_mutex_unlock (&self->mutex);
}

void
optimizer_kick (optimizer_t *self)
{
    pthread_mutex_lock (&self->mutex);
    self->kicked = true;
    pthread_cond_signal (&self->cv);
    pthread_mutex_unlock (&self->mutex);
}
