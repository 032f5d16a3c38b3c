/*  gw_meta: the gateway's copy of the cluster metadata (proto/msg.h <state>).

    A thread (a czmq actor) subscribes to the raft actor's META_STATE
    publications and, until a first state has arrived, asks for one with
    META_GET once a second, so a gateway that starts after the raft actor
    does not wait for the next publication. The newest state by "applied"
    is kept as one json_t that is never modified once installed: readers
    take a reference under the lock and read it without one; a writer swaps
    the pointer. A condition variable wakes handlers that wait for their own
    proposal to be applied (gw_meta_wait_applied).
*/
#include "actors/gateway/gw.h"
#include "common/log.h"
#include "common/paths.h"
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

//  How often META_GET is retried while no state has arrived (ms).
#define S_GET_INTERVAL_MS 1000

struct _gw_meta_t {
    pthread_mutex_t lock;               //  guards state, applied, ready
    pthread_cond_t changed;             //  broadcast on every install
    json_t *state;                      //  newest state; never NULL; read-only
    uint64_t applied;                   //  state's "applied"
    bool ready;                         //  a real state has been installed
    uint64_t received_ms;               //  unix ms of the last state received
    char meta_endpoint [PATHS_MAX];     //  raft actor's PUB
    char raft_endpoint [PATHS_MAX];     //  raft actor's ROUTER
    zactor_t *actor;                    //  the subscriber thread
};

static json_t *
s_empty_state (void)
{
    return json_pack ("{sIsIsIsIs{}s{}s{}}", "applied", (json_int_t) 0, "term",
                      (json_int_t) 0, "leader", (json_int_t) 0, "peer_id", (json_int_t) 0,
                      "peers", "collections", "aliases");
}

//  Installs the "state" of a META_STATE publication or a META_GET reply.
static void
s_take_state (gw_meta_t *self, envelope_t *env, const char *what)
{
    json_t *state = json_object_get (envelope_json (env), "state");
    if (!json_is_object (state) || !json_is_integer (json_object_get (state, "applied"))
        || json_integer_value (json_object_get (state, "applied")) < 0) {
        log_debug ("gateway: meta: %s without a usable state, ignored", what);
        return;
    }
    gw_meta_update (self, json_incref (state));
}

static void
s_meta_actor (zsock_t *pipe, void *args)
{
    gw_meta_t *self = (gw_meta_t *) args;
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (sub && dealer);
    zsock_set_linger (sub, 0);
    zsock_set_reconnect_ivl (sub, 100);
    zsock_set_subscribe (sub, "");
    zsock_set_linger (dealer, 0);
    zsock_set_reconnect_ivl (dealer, 100);
    //  No queueing for an absent raft actor, and never block: a GET that
    //  cannot go now is simply retried a second later.
    zsock_set_immediate (dealer, 1);
    zsock_set_sndtimeo (dealer, 0);
    if (zsock_connect (sub, "%s", self->meta_endpoint)
        || zsock_connect (dealer, "%s", self->raft_endpoint))
        log_error ("gateway: meta: cannot connect to %s / %s", self->meta_endpoint,
                   self->raft_endpoint);
    zpoller_t *poller = zpoller_new (pipe, sub, dealer, NULL);
    assert (poller);
    zsock_signal (pipe, 0);

    uint64_t next_get = 0;
    uint64_t request_id = 0;
    while (true) {
        void *which = zpoller_wait (poller, S_GET_INTERVAL_MS);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
        else if (which == sub) {
            envelope_t *env = NULL;
            if (envelope_recv (sub, &env) == 0) {
                if (envelope_type (env) == MSG_META_STATE)
                    s_take_state (self, env, "publication");
                envelope_destroy (&env);
            }
        }
        else if (which == dealer) {
            envelope_t *env = NULL;
            if (envelope_recv (dealer, &env) == 0) {
                if (envelope_type (env) == MSG_META_GET && envelope_status (env) == 0)
                    s_take_state (self, env, "meta_get reply");
                else if (envelope_status (env) != 0)
                    log_debug ("gateway: meta: meta_get failed: %s", envelope_error (env));
                envelope_destroy (&env);
            }
        }
        else if (zpoller_terminated (poller))
            break;
        if (!gw_meta_ready (self)) {
            uint64_t now = envelope_now_ms ();
            if (now >= next_get) {
                envelope_t *get = envelope_new (MSG_META_GET, ++request_id,
                                                now + S_GET_INTERVAL_MS);
                envelope_send (&get, dealer);     //  failure: retried next turn
                next_get = now + S_GET_INTERVAL_MS;
            }
        }
    }
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&sub);
}

gw_meta_t *
gw_meta_new (const char *storage_path)
{
    gw_meta_t *self = (gw_meta_t *) zmalloc (sizeof (gw_meta_t));
    assert (self);
    if (paths_meta_endpoint (storage_path, self->meta_endpoint)
        || paths_raft_endpoint (storage_path, self->raft_endpoint)) {
        log_error ("gateway: meta: storage path too long for ipc endpoints: %s",
                   storage_path);
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->changed, NULL);
    self->state = s_empty_state ();
    self->actor = zactor_new (s_meta_actor, self);
    if (!self->actor) {
        gw_meta_destroy (&self);
        return NULL;
    }
    return self;
}

void
gw_meta_destroy (gw_meta_t **self_p)
{
    assert (self_p);
    gw_meta_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->actor);
    json_decref (self->state);
    pthread_cond_destroy (&self->changed);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

void
gw_meta_update (gw_meta_t *self, json_t *state)
{
    if (!json_is_object (state)) {
        if (state)
            json_decref (state);
        return;
    }
    json_int_t applied = json_integer_value (json_object_get (state, "applied"));
    if (applied < 0)
        applied = 0;
    uint64_t now = envelope_now_ms ();
    pthread_mutex_lock (&self->lock);
    //  Any state shows the raft actor alive, installed or not (GET /cluster's
    //  consensus_thread_status).
    self->received_ms = now;
    //  ">=": the periodic publication at the same index may carry a newer
    //  leader or term; an older index never replaces a newer one.
    if (!self->ready || (uint64_t) applied >= self->applied) {
        json_t *old = self->state;
        self->state = state;
        state = NULL;
        if (!self->ready || (uint64_t) applied > self->applied)
            log_debug ("gateway: meta: state applied=%" JSON_INTEGER_FORMAT, applied);
        self->applied = (uint64_t) applied;
        self->ready = true;
        pthread_cond_broadcast (&self->changed);
        pthread_mutex_unlock (&self->lock);
        json_decref (old);
        return;
    }
    pthread_mutex_unlock (&self->lock);
    json_decref (state);
}

json_t *
gw_meta_state (gw_meta_t *self)
{
    pthread_mutex_lock (&self->lock);
    json_t *state = json_incref (self->state);
    pthread_mutex_unlock (&self->lock);
    return state;
}

uint64_t
gw_meta_received_ms (gw_meta_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t received = self->received_ms;
    pthread_mutex_unlock (&self->lock);
    return received;
}

bool
gw_meta_ready (gw_meta_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool ready = self->ready;
    pthread_mutex_unlock (&self->lock);
    return ready;
}

json_t *
gw_meta_collection (gw_meta_t *self, const char *name, char **real_name)
{
    if (real_name)
        *real_name = NULL;
    if (!name)
        return NULL;
    json_t *state = gw_meta_state (self);
    json_t *collections = json_object_get (state, "collections");
    const char *own = name;
    json_t *collection = json_object_get (collections, name);
    if (!json_is_object (collection)) {
        const char *target = json_string_value (
            json_object_get (json_object_get (state, "aliases"), name));
        collection = target ? json_object_get (collections, target) : NULL;
        own = target;
    }
    if (!json_is_object (collection)) {
        json_decref (state);
        return NULL;
    }
    json_incref (collection);
    if (real_name) {
        *real_name = strdup (own);
        assert (*real_name);
    }
    json_decref (state);
    return collection;
}

bool
gw_meta_wait_applied (gw_meta_t *self, uint64_t applied, uint64_t deadline_ms)
{
    //  deadline_ms is unix time, as pthread_cond_timedwait's default clock.
    struct timespec until = { .tv_sec = (time_t) (deadline_ms / 1000),
                              .tv_nsec = (long) (deadline_ms % 1000) * 1000000L };
    pthread_mutex_lock (&self->lock);
    while (self->applied < applied || !self->ready) {
        int rc = pthread_cond_timedwait (&self->changed, &self->lock, &until);
        if (rc == ETIMEDOUT)
            break;
    }
    bool reached = self->ready && self->applied >= applied;
    pthread_mutex_unlock (&self->lock);
    return reached;
}
