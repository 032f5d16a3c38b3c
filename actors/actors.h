/*  actors: the entry point of each actor process. The supervisor re-executes
    the shoal binary as `shoal --actor NAME --peer-id N [...]` with the merged
    config as JSON in the environment variable SHOAL_RUN_CONFIG, and the
    child's main() calls one of these. Each returns the process exit code:
    0 on a clean shutdown (SIGTERM), non-zero when the supervisor should
    restart it.
*/
#ifndef SH_ACTORS_H
#define SH_ACTORS_H

#include "common/config.h"
#include <stdint.h>

int raft_actor_main (const config_t *config, uint64_t peer_id);
int gateway_actor_main (const config_t *config, uint64_t peer_id);
int p2p_actor_main (const config_t *config, uint64_t peer_id);
int shard_actor_main (const config_t *config, uint64_t peer_id, uint64_t collection_uid,
                      uint32_t shard_id);

#endif
