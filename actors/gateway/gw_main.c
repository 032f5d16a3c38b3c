/*  gw_main: the gateway process. Starts the metadata cache (gw_meta) and the
    HTTP server (gw_http), then waits for SIGTERM/SIGINT and stops both, in
    reverse order, so that no connection thread outlives the cache it reads.

    The gw_t it builds is the one object handlers reach through req->gw: the
    config, the peer id, the metadata cache and the start time.
*/
#include "actors/actors.h"
#include "actors/gateway/gw.h"
#include "common/log.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

struct _gw_t {
    const config_t *config;             //  the node's config (borrowed)
    uint64_t peer_id;                   //  this node's peer id
    gw_meta_t *meta;                    //  metadata cache
    gw_http_t *http;                    //  HTTP server
    struct timespec started;            //  CLOCK_MONOTONIC at start, for uptime
};

const config_t *
gw_config (gw_t *gw)
{
    return gw->config;
}

gw_meta_t *
gw_meta (gw_t *gw)
{
    return gw->meta;
}

uint64_t
gw_peer_id (gw_t *gw)
{
    return gw->peer_id;
}

gw_http_t *
gw_http (gw_t *gw)
{
    return gw->http;
}

double
gw_uptime (gw_t *gw)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double) (now.tv_sec - gw->started.tv_sec)
         + (double) (now.tv_nsec - gw->started.tv_nsec) / 1e9;
}

int
gateway_actor_main (const config_t *config, uint64_t peer_id)
{
    log_set_actor ("gateway");
    log_set_level ((log_level_t) config->log_level);
#ifdef __linux__
    //  If the supervisor dies without stopping us, stop too: a gateway alone
    //  would hold the HTTP port against the next supervisor.
    prctl (PR_SET_PDEATHSIG, SIGTERM);
#endif
    //  Signals are taken synchronously with sigwait below: block them before
    //  any thread exists (MHD's, czmq's, zmq's) so every thread inherits the
    //  mask, and keep czmq from installing its own handler.
    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGTERM);
    sigaddset (&stop, SIGINT);
    sigaddset (&stop, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    //  Each HTTP connection has its own sockets: lift czmq's 1024 default
    //  to zmq's own limit. Through the environment, which czmq reads when it
    //  first makes a socket: zsys_set_max_sockets asserts if one exists.
    char limit [32];
    snprintf (limit, sizeof limit, "%zu", zsys_socket_limit ());
    setenv ("ZSYS_MAX_SOCKETS", limit, 0);

    gw_t self = { .config = config, .peer_id = peer_id };
    clock_gettime (CLOCK_MONOTONIC, &self.started);
    self.meta = gw_meta_new (config->storage_path);
    if (!self.meta) {
        log_error ("gateway: cannot start the metadata cache");
        return 1;
    }
    self.http = gw_http_new (&self, config);
    if (!self.http) {
        gw_meta_destroy (&self.meta);
        return 1;
    }
    log_info ("gateway: started peer=%" PRIu64, peer_id);

    while (true) {
        int sig = 0;
        if (sigwait (&stop, &sig) != 0)
            continue;
        if (sig == SIGHUP)
            continue;                   //  logs go to stderr: nothing to reopen
        log_info ("gateway: stopping on signal %d", sig);
        break;
    }
    gw_http_destroy (&self.http);
    gw_meta_destroy (&self.meta);
    log_info ("gateway: stopped");
    return 0;
}
