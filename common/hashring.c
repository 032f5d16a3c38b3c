/*  hashring: the consistent hash ring that maps point ids to shards (see
    hashring.h). Owns the sorted array of virtual nodes of one ring.

    Every byte that goes into a hash is spelled out here (little-endian u32s
    for vnodes, pointid_key for points) because all peers, and every future
    version, must place every point on the same shard: changing any of it
    moves data. test_hashring freezes a table of placements to catch that.
*/
#include "common/hashring.h"
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t pos;       //  place on the ring
    uint32_t shard;     //  shard that owns the arc ending here
} s_vnode_t;

struct _hashring_t {
    uint32_t n_shards;  //  shards 0..n_shards-1
    size_t n_vnodes;    //  n_shards * HASHRING_VNODES
    s_vnode_t *vnodes;  //  sorted by pos, then shard
};

//  All zero and fixed: the ring must be the same on every peer, and SipHash
//  here is a well-spread hash, not a defence against chosen ids.
#define S_MAX_SHARDS 65536

static const unsigned char s_key [crypto_shorthash_KEYBYTES] = { 0 };

static uint64_t
s_siphash (const uint8_t *data, size_t len)
{
    unsigned char out [crypto_shorthash_BYTES];
    crypto_shorthash (out, data, len, s_key);
    uint64_t v = 0;
    for (int i = crypto_shorthash_BYTES - 1; i >= 0; i--)
        v = v << 8 | out [i];
    return v;
}

static void
s_put_u32le (uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p [i] = (uint8_t) (v >> (8 * i));
}

static int
s_vnode_cmp (const void *a, const void *b)
{
    const s_vnode_t *x = (const s_vnode_t *) a;
    const s_vnode_t *y = (const s_vnode_t *) b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    //  A collision of two positions is astronomically rare, but the order
    //  must still not depend on qsort's whims.
    return x->shard < y->shard ? -1 : x->shard > y->shard ? 1 : 0;
}

hashring_t *
hashring_new (uint32_t n_shards)
{
    //  More shards than any collection can sensibly have would only make a
    //  huge vnode array out of a bad request: NULL, as for 0.
    if (n_shards == 0 || n_shards > S_MAX_SHARDS)
        return NULL;
    if (sodium_init () < 0)
        return NULL;
    hashring_t *self = (hashring_t *) calloc (1, sizeof (hashring_t));
    assert (self);
    self->n_shards = n_shards;
    self->n_vnodes = (size_t) n_shards * HASHRING_VNODES;
    self->vnodes = (s_vnode_t *) calloc (self->n_vnodes, sizeof (s_vnode_t));
    assert (self->vnodes);
    size_t i = 0;
    for (uint32_t shard = 0; shard < n_shards; shard++)
        for (uint32_t v = 0; v < HASHRING_VNODES; v++) {
            uint8_t bytes [8];
            s_put_u32le (bytes, shard);
            s_put_u32le (bytes + 4, v);
            self->vnodes [i].pos = s_siphash (bytes, sizeof bytes);
            self->vnodes [i].shard = shard;
            i++;
        }
    qsort (self->vnodes, self->n_vnodes, sizeof (s_vnode_t), s_vnode_cmp);
    return self;
}

void
hashring_destroy (hashring_t **self_p)
{
    assert (self_p);
    hashring_t *self = *self_p;
    if (!self)
        return;
    free (self->vnodes);
    free (self);
    *self_p = NULL;
}

uint32_t
hashring_shard (const hashring_t *self, const pointid_t *id)
{
    assert (self && id);
    uint8_t key [POINTID_KEY_SIZE];
    pointid_key (id, key);
    uint64_t h = s_siphash (key, sizeof key);
    //  First vnode with pos >= h; past the last one the ring wraps to 0.
    size_t lo = 0, hi = self->n_vnodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->vnodes [mid].pos < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return self->vnodes [lo == self->n_vnodes ? 0 : lo].shard;
}

uint32_t
hashring_shards (const hashring_t *self)
{
    return self->n_shards;
}
