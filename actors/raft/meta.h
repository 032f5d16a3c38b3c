/*  meta: the metadata state machine that Raft replicates (proto/msg.h gives
    its JSON layout and its ops). It owns the peers (id -> uri), the
    collections (config, uid, shards with their replica sets) and the aliases,
    plus the index of the last entry applied.

    Applying is deterministic: the same ops at the same indexes give the same
    state on every node (nothing here reads a clock, a random source or local
    settings; a collection's uid is the index of the entry that created it).
    A bad op is refused with an error and changes nothing but the applied
    index, so every node still agrees.

    Peers (id -> uri): in cluster mode the map is replicated only, learnt
    from Raft conf entries (meta_apply_conf: an "add_learner" carries the
    new peer's "uri", a "remove" drops the peer) and from set_peer ops; a
    single node without cluster mode records itself with meta_set_peer.
    Errors carry Qdrant's wording:
      -SH_EEXIST     "Wrong input: Collection `x` already exists!"
      -SH_ENOTFOUND  "Not found: Collection `x` doesn't exist!"
      -SH_EINVAL     "Wrong input: ..." for an op of the wrong shape

    Ops beyond those of msg.h's list that apply here: set_peer {"peer_id",
    "uri"} (result true). remove_peer is a Raft conf change, not an op: the
    raft actor checks it (meta_peer_has_shards) and proposes the change, and
    meta_apply refuses it.
*/
#ifndef SH_META_H
#define SH_META_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Most shards a collection may ask for (bounds what an op makes us build).
#define META_MAX_SHARDS 65536
//  Longest collection or alias name, in bytes (Qdrant's limit).
#define META_MAX_NAME 255

typedef struct _meta_t meta_t;

meta_t *meta_new (void);
void meta_destroy (meta_t **self_p);

//  Longest peer uri kept in the state, in bytes.
#define META_MAX_URI 1024

//  Sets peer id -> uri in the state, outside the log: only a node without
//  cluster mode (the only peer) records itself this way.
void meta_set_peer (meta_t *self, uint64_t peer_id, const char *uri);
//  Replaces the peers map with {peer_id: uri} (--reinit without a bootstrap
//  peer: this node becomes the whole cluster).
void meta_reset_peers (meta_t *self, uint64_t peer_id, const char *uri);
//  The uri recorded for peer_id, or NULL (borrowed until the next change).
const char *meta_peer_uri (const meta_t *self, uint64_t peer_id);
//  True if any shard of any collection has a replica on peer_id.
bool meta_peer_has_shards (const meta_t *self, uint64_t peer_id);

//  Ops remembered by their "op_id", at most.
#define META_DONE_MAX 1024
//  Longest op_id, in bytes.
#define META_MAX_OP_ID 64

//  Applies op, the command of the committed entry at index (> applied).
//  0 with *result (yours: true or false, see msg.h), or -SH_E... with the
//  message for the user in err. Either way applied becomes index. An op
//  with an "op_id" (a string a forwarder gives it, the same on each retry)
//  that one of the last META_DONE_MAX such ops had is not applied again:
//  it ends as that one ended, with its result or error. The list is part
//  of the state (meta_dump/meta_load), so every node answers alike.
int meta_apply (meta_t *self, uint64_t index, const json_t *op, json_t **result, char *err,
                size_t errlen);
//  Same from the entry's bytes (JSON text); text that is not a JSON object
//  is -SH_EINVAL.
int meta_apply_entry (meta_t *self, uint64_t index, const void *data, size_t len,
                      json_t **result, char *err, size_t errlen);
//  An entry with no op (a leader's no-op): only applied moves.
void meta_skip (meta_t *self, uint64_t index);
//  Applies a Raft conf entry (rcore.h gives its JSON: {"change", "peer_id",
//  "voters", "learners", "uri"?}): "add_learner" and "promote" with a
//  "uri" string record that peer's uri; "remove" drops the peer from the
//  peers map and from every shard's replicas (Qdrant's remove_peer).
//  0, or -SH_EINVAL with err for text that is not such an entry. Either
//  way applied becomes index.
int meta_apply_conf (meta_t *self, uint64_t index, const void *data, size_t len, char *err,
                     size_t errlen);

uint64_t meta_applied (const meta_t *self);
//  The state as msg.h lays it out, with the fields only the node knows
//  (term, leader, peer_id) added. A new reference (a copy).
json_t *meta_state (const meta_t *self, uint64_t term, uint64_t leader, uint64_t peer_id);
//  Borrowed views for readers in this process.
const json_t *meta_collections (const meta_t *self);
const json_t *meta_aliases (const meta_t *self);

//  Serializes the replicated part ({"applied", "peers", "collections",
//  "aliases"}, keys sorted) for a Raft snapshot; the text is yours.
char *meta_dump (const meta_t *self, size_t *len);
//  Replaces the state with a dump. 0, or -SH_EINVAL (state unchanged).
int meta_load (meta_t *self, const void *data, size_t len);

#endif
