/*  gw_replicas: which replicas of a shard a gateway request goes to, and the
    collection's placement as Qdrant's CollectionClusterInfo shows it. Pure
    functions of a collection's metadata object (proto/msg.h <state>
    collections entry): no sockets, no clock, so every choice is testable.

    Replica states are Qdrant's. A read goes to one readable replica
    (Active, or ActiveRead), this peer's own when it has one; a write goes to
    every replica that takes writes from the gateway (Active, Initializing,
    Listener, ActiveRead). A Partial replica is the target of a transfer and
    gets its writes from the transfer source (msg.h "Shard transfer"), so the
    gateway never writes to it directly.
*/
#ifndef SH_GW_REPLICAS_H
#define SH_GW_REPLICAS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  True if a replica in `state` serves reads.
bool gw_replicas_readable (const char *state);
//  True if a replica in `state` takes writes from the gateway.
bool gw_replicas_writable (const char *state);
//  True for the message types that write (SHARD_UPSERT ... SHARD_DELETE_VECTORS).
bool gw_replicas_is_write (int msg_type);

//  The peers that a request on shard shard_id of collection goes to, in out
//  (at most max), and their count:
//    read:  one readable replica: this peer's (self) if it is readable, else
//           another, never `avoid` unless it is the only one (a replica that
//           just failed), picked by `spread` among the rest (pass a request
//           id to spread reads over replicas);
//    write: every writable replica, ascending peer ids.
//  0 when no replica fits; -1 when the collection has no such shard (or its
//  metadata is malformed).
int gw_replicas_choose (const json_t *collection, uint32_t shard_id, bool write,
                        uint64_t self, uint64_t avoid, uint64_t spread, uint64_t *out,
                        size_t max);

//  True if the collection lists a running transfer of shard shard_id (its
//  placement is about to change).
bool gw_replicas_in_transfer (const json_t *collection, uint32_t shard_id);

//  The state of the replica of shard shard_id on peer, or NULL (borrowed).
const char *gw_replicas_state (const json_t *collection, uint32_t shard_id, uint64_t peer);

//  Qdrant's CollectionClusterInfo of collection as peer self sees it:
//  {"peer_id", "shard_count", "local_shards": [{"shard_id", "points_count",
//  "state"}], "remote_shards": [{"shard_id", "peer_id", "state"}],
//  "shard_transfers": [{"shard_id", "from", "to", "sync", "method",
//  "comment"?}]}, shards in shard id order, remote replicas by peer id.
//  points: {"<shard id>": points_count} of this peer's replicas (a shard
//  missing from it shows 0); progress: {"<shard id>": {"transferred",
//  "total"}} from the transfer sources' SHARD_INFO (a transfer missing from
//  it has no comment). Either may be NULL. New JSON (yours).
json_t *gw_replicas_cluster_info (const json_t *collection, uint64_t self,
                                  const json_t *points, const json_t *progress);

#endif
