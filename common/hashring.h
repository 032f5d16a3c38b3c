/*  hashring: which shard owns a point id. A consistent hash ring, like
    Qdrant's: each shard places HASHRING_VNODES virtual nodes on a 64-bit ring
    by SipHash-2-4 (libsodium crypto_shorthash, fixed zero key so every peer
    and every version agrees), and a point goes to the first vnode at or after
    the SipHash of its id. Adding a shard moves only ~1/n of the points, and
    only onto the new shard.

    Qdrant places 100 vnodes per shard; a shard's share of the ring then
    varies by ~1/sqrt(100) = 10% (17% measured at 6 shards). shoal places
    4000, which keeps every shard within ~3% of its fair share up to 16
    shards for ~100 ns a lookup and 48 KB of ring per shard. The count is part
    of the placement contract: changing it moves stored points.
*/
#ifndef SH_HASHRING_H
#define SH_HASHRING_H

#include "common/pointid.h"
#include <stdint.h>

#define HASHRING_VNODES 4000

typedef struct _hashring_t hashring_t;

//  A ring over shards 0..n_shards-1; NULL if n_shards is 0.
hashring_t *hashring_new (uint32_t n_shards);
void hashring_destroy (hashring_t **self_p);
uint32_t hashring_shard (const hashring_t *self, const pointid_t *id);
uint32_t hashring_shards (const hashring_t *self);

#endif
