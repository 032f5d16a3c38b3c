/*  supervisor: the process users start. It owns the storage directory and
    the peer id, and keeps the node's actors running as child processes:
    one raft actor, one gateway, one shard actor per shard replica that the
    consensus state places on this peer, and with cluster.enabled the p2p
    actor. A crashed actor is restarted with backoff; SIGTERM/SIGINT stop
    every actor in order (gateway, shards, raft, p2p) and exit cleanly.

    Each actor is this same binary re-executed as `shoal --actor NAME
    --peer-id N [--collection-uid U --shard-id S]`, with the merged config as
    JSON in the environment variable SHOAL_RUN_CONFIG (see actors/actors.h).
*/
#ifndef SH_SUPERVISOR_H
#define SH_SUPERVISOR_H

#include "common/config.h"
#include <stddef.h>
#include <stdint.h>

//  The environment variable that carries the merged config to the actors.
#define SUPERVISOR_RUN_CONFIG_ENV "SHOAL_RUN_CONFIG"
//  Peer ids are in [1, 2^53] so that they survive a trip through JSON numbers.
#define SUPERVISOR_PEER_ID_MAX (UINT64_C (1) << 53)

typedef struct _supervisor_t supervisor_t;

//  Prepares the node: creates the storage and snapshots dirs, takes the
//  storage lock (one supervisor per storage dir), reads or creates the peer
//  id and builds the run config handed to the actors. The command line's
//  --uri, --bootstrap and --reinit go into the run config under "run" (see
//  supervisor.c); --disable-telemetry sets "telemetry_disabled".
//  0, or -SH_EIO / -SH_EINVAL / -SH_EEXIST with a message in err.
int supervisor_new (const config_t *config, const cli_t *cli, supervisor_t **out,
                    char *err, size_t errlen);
void supervisor_destroy (supervisor_t **self_p);

//  Runs the node until SIGTERM or SIGINT, then stops every actor. Returns 0
//  after a clean shutdown, -SH_EIO if the loop could not be set up.
int supervisor_run (supervisor_t *self);

//  This node's peer id (valid after supervisor_new).
uint64_t supervisor_peer_id (const supervisor_t *self);

//  Reads <storage>/peer_id, or creates it with a random id in
//  [1, SUPERVISOR_PEER_ID_MAX] (written to a temp file, fsynced, renamed).
//  0, or -SH_EIO / -SH_EINVAL (a peer_id file that is not a valid id: never
//  silently replaced, the node would change identity) with a message in err.
int supervisor_load_peer_id (const char *storage, uint64_t *peer_id, char *err,
                             size_t errlen);

#endif
