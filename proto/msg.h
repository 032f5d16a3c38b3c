/*  msg: every message type between shoal's actors, and the JSON each carries.
    This header is the contract; envelope.h is the wire format.

    Conventions for every request/reply pair below:
    - a reply has the request's type and id; status 0 or -SH_E...; a failed
      reply's JSON is {"error": "message for the user"}.
    - "id" fields are point ids as in Qdrant's JSON: an unsigned integer or a
      UUID string (common/pointid.h).
    - dense vectors are vecrefs ({"b","o","d"}, proto/vecref.h) into the
      envelope's float blobs; sparse vectors are {"indices": [u32...],
      "values": [f32...]} inline.
    - a "vectors" map is {vector name: vecref | sparse}; the unnamed default
      vector has the name "".
    - "filter" is a Qdrant Filter object, verbatim (common/filter.h parses it).
    - "with_payload": true | false | [keys] | {"include": [keys]} |
      {"exclude": [keys]}; "with_vector": true | false | [names].
    - a record in a reply: {"id", "version" (the shard seq that last wrote
      it), "payload"? (object, only if asked), "vectors"? (map, only if asked),
      "score"? (searches only)}.

    Sockets (common/paths.h gives the endpoints):
    - raft actor: ROUTER at paths raft endpoint (META_GET, META_PROPOSE) and
      PUB at the meta endpoint (META_STATE, topic is the header frame).
    - shard actor: ROUTER at its shard endpoint (SHARD_*).
    - p2p actor: ROUTER at paths p2p endpoint for the node's own actors,
      ROUTER on tcp cluster.p2p.port for other peers; every message through
      it is [route frame][envelope frames] (proto/route.h).
*/
#ifndef SH_MSG_H
#define SH_MSG_H

typedef enum {
    MSG_NONE = 0,

    //  --- raft actor -------------------------------------------------------
    //  META_GET      req {}            reply {"state": <state>}
    //  META_PROPOSE  req {"op": <op>}  reply {"result": <json>, "state": <state>}
    //      The reply comes once the op is committed and applied. -SH_ENOLEADER
    //      while there is no leader; the op's own errors as listed below.
    //  META_STATE    published (PUB, no reply): {"state": <state>} after every
    //      apply and once a second.
    //
    //  <state> (the metadata state machine, actors/raft/meta.h):
    //    {"applied": u64 index of the last applied entry,
    //     "term": u64,
    //     "leader": peer id or 0, "peer_id": u64 of the publishing node,
    //     "peers": {"<peer id>": "uri", ...},
    //     "collections": {"<name>": {
    //          "uid": u64 (log index of the create; names the storage dir),
    //          "config": <Qdrant CollectionConfig as GET /collections/{name}
    //                     returns it under "config": params (vectors,
    //                     shard_number, replication_factor,
    //                     write_consistency_factor, on_disk_payload,
    //                     sparse_vectors), hnsw_config, optimizer_config,
    //                     wal_config, quantization_config>,
    //          "shards": [{"shard_id": n, "replicas": {"<peer id>": "Active"}}],
    //          "transfers": [{"shard_id", "from": peer, "to": peer,
    //                         "method": "stream_records", "sync": false}],
    //          "payload_schema": {"<field path>": {"data_type", "params"}} }},
    //     "aliases": {"<alias>": "<collection name>"}}
    //
    //  <op>:
    //    {"type": "create_collection", "name": s, "config": <config>}
    //        -SH_EEXIST if the name (or an alias) exists; result true
    //    {"type": "update_collection", "name": s, "config": <partial config>}
    //        deep-merged into config as a JSON merge patch (RFC 7386: objects
    //        merge, a null value removes the key); -SH_ENOTFOUND; result true
    //    {"type": "delete_collection", "name": s}
    //        result true, or false if there was no such collection; its
    //        aliases go with it
    //    {"type": "change_aliases", "actions": [ {"create_alias":
    //        {"collection_name", "alias_name"}} | {"delete_alias":
    //        {"alias_name"}} | {"rename_alias": {"old_alias_name",
    //        "new_alias_name"}} ]}  all or nothing; -SH_ENOTFOUND; result true
    //
    //  Cluster mode adds to <state>:
    //     "voters": [peer id...], "learners": [peer id...] (the Raft
    //       configuration in effect on the publishing node),
    //     "raft": {"term", "commit", "pending_operations", "leader" (id|null),
    //       "role": "Leader"|"Follower"|"Candidate"|"PreCandidate",
    //       "is_voter": bool} (GET /cluster's raft_info, as this node sees it),
    //     "cluster": true
    //  and ops (the gateway proposes them with META_PROPOSE like the others;
    //  the raft actor turns the peer ones into Raft conf changes):
    //    {"type": "remove_peer", "peer_id": u64, "force": bool}
    //        -SH_ENOTFOUND unknown peer; -SH_EUNPROC while it holds shard
    //        replicas and force is false; result true
    //    {"type": "set_peer", "peer_id": u64, "uri": s}  (a peer's own address,
    //        proposed by a leader that finds its uri missing or changed)
    //
    //  Shard transfers (POST /collections/{c}/cluster):
    //    {"type": "start_transfer", "collection": s, "shard_id": n,
    //     "from": peer, "to": peer, "method": "stream_records"}
    //        the shard gets a replica on "to" in state "Partial" and an entry
    //        in "transfers". -SH_EUNPROC "cannot transfer shard to itself"
    //        (from == to); -SH_ENOTFOUND no such collection/shard/peer;
    //        -SH_EINVAL "from" holds no Active replica, "to" already holds one,
    //        a transfer of that shard runs, or an unknown method; result true
    //    {"type": "finish_transfer", "collection", "shard_id", "from", "to"}
    //        the "to" replica becomes Active, the "from" replica and the
    //        transfer entry go; -SH_ENOTFOUND no such transfer; result true
    //    {"type": "abort_transfer", "collection", "shard_id", "from", "to"}
    //        the "to" replica (if not Active) and the entry go;
    //        -SH_ENOTFOUND no such transfer; result true
    //
    //  A META_PROPOSE reaching a follower is forwarded to the leader through
    //  p2p (route kind request, actor raft) and its reply relayed; while no
    //  leader is known it waits (up to its deadline) for one. The leader's
    //  reply also carries "index" (the op's log index): the follower relays
    //  a success once it has applied that index itself, with its own state.
    //  A forwarded copy of any request carries "forwarded": true; a
    //  non-leader answers it -SH_ENOLEADER rather than forward it again, and
    //  the forwarder retries (on -SH_ENOLEADER or -SH_EUNAVAIL) until its
    //  deadline. A forwarded op carries "op_id": "<peer id>-<16 hex
    //  digits>", the same in every copy: a copy that reaches the log after
    //  another did ends as the first one ended (meta.h), so a retry whose
    //  first copy was applied after all is not applied twice.
    MSG_META_GET = 1,
    MSG_META_PROPOSE = 2,
    MSG_META_STATE = 3,

    //  --- consensus between peers (raft actor <-> p2p <-> raft actor) -------
    //  RAFT_MESSAGE  one-way, no reply: one Raft message, JSON as rmsg.h
    //      encodes it ({"type", "from", "to", "term", ..., "entries": [...],
    //      "snapshot": {...}}, entry and snapshot bytes base64).
    //  RAFT_JOIN     req {"peer_id": u64, "uri": s | null, "p2p_port": n}
    //      from a peer started with --bootstrap to any peer's raft actor; a
    //      follower forwards it to the leader. A null uri is filled in by the
    //      first raft actor that gets it as "http://<address the p2p actor saw
    //      the request come from>:<p2p_port>" (the p2p actor adds
    //      "observed_host" to a RAFT_JOIN's JSON). The leader proposes
    //      add_learner (with the uri) and replies once it is committed:
    //      {"peer_id": leader id, "uri": the joiner's uri as recorded,
    //       "peers": {id: uri}}. A peer already a member: the same reply at once.
    //      "fresh": true marks a joiner without consensus state (a rejoin
    //      after --reinit: the leader sends it a recovery snapshot); without
    //      it a member is only telling a changed --uri, which the leader
    //      records (set_peer) before it replies.
    //  RAFT_RECOVER  req {"peer_id": u64} to the leader's raft actor: it
    //      compacts and sends that peer its snapshot (rcore_send_snapshot);
    //      reply {"result": true}. POST /cluster/recover on a follower asks its
    //      raft actor (same message, no peer_id) which forwards it.
    //  (On SIGTERM a leader's raft actor first promotes caught-up learners,
    //  then transfers leadership to the most up-to-date voter, giving up
    //  after an election timeout.)
    MSG_RAFT_MESSAGE = 4,
    MSG_RAFT_JOIN = 5,
    MSG_RAFT_RECOVER = 6,

    //  --- p2p actor ----------------------------------------------------------
    //  P2P_INFO  req {} reply {"message_send_failures": {"<peer uri>":
    //      {"count": n, "latest_error": s, "latest_error_timestamp": RFC 3339}},
    //      "peers": {"<id>": {"uri": s, "connected": bool}}}
    //  A failed send (peer unknown, unreachable, queue full, deadline passed)
    //  of a request is answered by the p2p actor itself with the request's
    //  type and id and -SH_EUNAVAIL (or -SH_ETIMEDOUT), so callers never hang.
    MSG_P2P_INFO = 10,

    //  --- shard actor (one replica of one shard) ----------------------------
    //  Writes: reply {"operation_id": seq} once durable (SQLite committed).
    //  Every write selects points by "ids": [id...] or "filter": <filter>.
    //  SHARD_UPSERT   {"points": [{"id", "vectors": <map>, "payload": obj|null}]}
    //                 or {"records": ...} (the layout of a transfer's batches,
    //                 below: ids and payloads as lists, the dense rows in one
    //                 blob), which the gateway sends
    //                 replaces each whole point (vectors and payload)
    //  SHARD_DELETE   {"ids"|"filter"}
    //  SHARD_SET_PAYLOAD       {"payload": obj, "key"?: path, "ids"|"filter"}
    //                 merges keys into the payload (under "key" if given)
    //  SHARD_OVERWRITE_PAYLOAD {"payload": obj, "ids"|"filter"}
    //  SHARD_DELETE_PAYLOAD    {"keys": [path...], "ids"|"filter"}
    //  SHARD_CLEAR_PAYLOAD     {"ids"|"filter"}
    //  SHARD_UPDATE_VECTORS    {"points": [{"id", "vectors": <map>}]}
    //                 replaces only the named vectors given; -SH_ENOTFOUND if
    //                 a point does not exist
    //  SHARD_DELETE_VECTORS    {"vector": [name...], "ids"|"filter"}
    //
    //  Reads:
    //  SHARD_SEARCH   {"searches": [{"vector": {"name": s, "dense": vecref} |
    //                   {"name": s, "sparse": {"indices","values"}},
    //                   "filter"?, "limit": n, "offset"?: n, "score_threshold"?,
    //                   "with_payload"?, "with_vector"?, "exact"?: bool,
    //                   "hnsw_ef"?: n}]}
    //                 reply {"results": [[record with score...]...]}, each list
    //                 best first, holding at most offset+limit records (the
    //                 gateway merges shards and applies the offset)
    //  SHARD_RETRIEVE {"ids": [...], "with_payload"?, "with_vector"?}
    //                 reply {"points": [record...]} (missing ids left out)
    //  SHARD_SCROLL   {"filter"?, "offset"?: id, "limit": n, "with_payload"?,
    //                  "with_vector"?}
    //                 reply {"points": [record...] in id order (integers
    //                 before UUIDs) from offset, at most limit,
    //                 "next_page_offset": id|null}
    //  SHARD_COUNT    {"filter"?} reply {"count": n}
    //  SHARD_INFO     {} reply {"points_count": n, "vectors_count": n,
    //                  "indexed_vectors_count": n, "segments_count": n,
    //                  "status": "green"|"yellow", "seq": last seq,
    //                  "payload_points": {field: points with a value, for
    //                  every field in the collection's payload_schema},
    //                  "transfer"?: {"to": peer, "transferred": n, "total": n}
    //                  while this replica is the source of a running transfer}
    //
    //  Shards across peers (cluster mode): a request for a replica on another
    //  peer goes through the p2p actors as [route kind request, dst peer,
    //  actor shard, uid, shard][envelope] (proto/route.h); the shard actor
    //  gets the bare envelope and replies as to a local caller.
    //
    //  Shard transfer, stream_records (the source replica drives it; it
    //  learns of the transfer from the META_STATE "transfers" entry naming it
    //  as "from"): the source sends the target, through p2p, a stream of
    //  ordinary write envelopes each with "transfer": {"seq": n (1, 2, ...),
    //  "from": source peer} added to its JSON:
    //    - record batches: SHARD_UPSERT of the next points in id order (whole
    //      points: vectors and payload), read between the source's own writes.
    //      A batch is {"records": {"ids": [id...], "payloads": [obj|null...]
    //      (one per id), "dense": [{"name": s, "dim": n, "missing": [i...]}]
    //      (every dense vector of the collection; "missing": the indexes,
    //      ascending, of the records without it), "blob"?: b, "sparse"?:
    //      {name: [{"indices", "values"}|null...] (one per id)}}}, blob b
    //      holding the dense rows record by record, each record's in the
    //      order of "dense" (no vecref objects: one float frame, exactly as
    //      long as the rows, read in place); a record replaces its whole
    //      point; the tag of a batch has "batch": true;
    //    - every write the source applies while the transfer runs, forwarded
    //      after it applied it locally (so the target sees the same order).
    //  The target applies them strictly in seq order (a gap or repeat is
    //  -SH_EPROTO and the source aborts); with "transfer" set, an update of a
    //  point the target does not hold yet is skipped, not an error (a later
    //  batch carries the point). It replies {"operation_id", "seq"}. Seq 1
    //  (re)starts a stream: a target that is not Active first drops every
    //  point it holds, so a source that restarted streams again from seq 1
    //  (a target that restarted expects seq 1 and refuses the rest). The
    //  source's batch that ends its snapshot has "last": true in its tag: the
    //  target answers the batches before it (into a replica not Active) as
    //  soon as they are applied, committing them behind the replies, and
    //  makes all of them durable before it answers the last; every other
    //  write is answered after its commit. The
    //  source asks the target SHARD_INFO through p2p until it answers before
    //  seq 1, and again when the stream goes unanswered (the path is first
    //  in, first out). The source keeps a bounded window of unacknowledged
    //  envelopes; when the last batch and everything before it are
    //  acknowledged it proposes finish_transfer (a write the source applied
    //  during the transfer is answered to its client only once the target
    //  acknowledged it, so writes forwarded later are safe); on a failed or
    //  unanswered send (p2p -SH_EUNAVAIL, deadline) it proposes
    //  abort_transfer. A replica dropped from a peer
    //  (moved off, aborted target) is stopped and its files removed by that
    //  peer's supervisor.
    MSG_SHARD_UPSERT = 20,
    MSG_SHARD_DELETE = 21,
    MSG_SHARD_SET_PAYLOAD = 22,
    MSG_SHARD_OVERWRITE_PAYLOAD = 23,
    MSG_SHARD_DELETE_PAYLOAD = 24,
    MSG_SHARD_CLEAR_PAYLOAD = 25,
    MSG_SHARD_UPDATE_VECTORS = 26,
    MSG_SHARD_DELETE_VECTORS = 27,
    MSG_SHARD_SEARCH = 30,
    MSG_SHARD_RETRIEVE = 31,
    MSG_SHARD_SCROLL = 32,
    MSG_SHARD_COUNT = 33,
    MSG_SHARD_INFO = 34,

    MSG_TYPE_COUNT = 64
} msg_type_t;

//  "shard_upsert" etc. for logs; "unknown" for anything else.
const char *msg_type_name (int type);

#endif
