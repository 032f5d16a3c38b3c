#!/usr/bin/env python3
"""test_shards_gw: the gateway's fan-out across peers, with three real nodes
on loopback and a collection of 6 shards spread over them (2 per peer).

Every read path (search, batch search, recommend, query, scroll in id
order, count, retrieve, collection info) answered through each peer is
checked against brute force over the points the test wrote; every write
path (upsert split by shard, delete, payload and vector edits by ids and by
filter, batch updates) sent to one peer is checked through the others.
Then the collection cluster endpoints (GET and POST
/collections/{name}/cluster: info, Qdrant's validation, a move started and
aborted, the moved replica's files removed by the supervisor), the refusal
of DELETE /cluster/peer while the peer holds shards, a remote shard actor
or the gateway's p2p actor killed or a shard actor hung under reads (an
error naming the shard, then served again), and a
clear error naming the shard and the peer when a peer is down.

Waits are conditions polled with a deadline, never sleeps; nothing asserts
how long anything took."""
import math
import os
import random
import signal
import struct
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Cluster, test, wait_for, wait_same_collections  # noqa: E402

NAME = "sharded"
SHARDS = 6
DIM_A = 8                   # named vector "a": Dot
DIM_B = 4                   # named vector "b": Euclid
N_INTS = 1800
N_UUIDS = 200
TOL = 1e-4

_cluster = None
_data = None


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def vec(rng, dim):
    return [f32(rng.uniform(-1.0, 1.0)) for _ in range(dim)]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def ok(node, method, path, body=None):
    status, answer = node.request(method, path, body, timeout=60)
    assert status == 200, (node.peer_id(), method, path, status, answer)
    assert answer["status"] == "ok", answer
    return answer["result"]


class Data:
    """What the test wrote: {id: {"a": [...], "b": [...]}} and payloads."""

    def __init__(self, seed):
        rng = random.Random(seed)
        ints = rng.sample(range(1, 10 ** 12), N_INTS)
        uuids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_UUIDS)]
        self.ids = ints + uuids
        rng.shuffle(self.ids)
        self.vectors = {pid: {"a": vec(rng, DIM_A), "b": vec(rng, DIM_B)} for pid in self.ids}
        self.payloads = {pid: {"g": rng.randrange(5), "tag": rng.choice(["x", "y", "z"])}
                         for pid in self.ids}

    def truth(self, query, pred=None, exclude=()):
        return {pid: dot(v["a"], query) for pid, v in self.vectors.items()
                if pid not in exclude and (pred is None or pred(pid, self.payloads[pid]))}


def ranked(truth):
    return sorted(truth.items(), key=lambda kv: -kv[1])


def check_hits(hits, truth, limit, what, offset=0):
    """hits equal the brute force ranking [offset:offset+limit] up to ties."""
    want = ranked(truth)[offset:offset + limit]
    got = [(h["id"], h["score"]) for h in hits]
    assert len(got) == len(want), (what, len(got), len(want))
    assert len({p for p, _ in got}) == len(got), (what, "duplicates", got)
    for i, ((pid, s), (_, ws)) in enumerate(zip(got, want)):
        assert pid in truth, (what, i, pid)
        assert abs(s - ws) <= TOL, (what, i, s, ws)
        assert abs(truth[pid] - s) <= TOL, (what, i, pid, truth[pid], s)


def cluster():
    """The shared 3-node cluster with the collection filled (made once)."""
    global _cluster, _data
    if _cluster is not None and all(n.running() for n in _cluster.nodes):
        return _cluster, _data
    _cluster = Cluster(3)
    first = _cluster.nodes[0]
    ok(first, "PUT", f"/collections/{NAME}",
       {"vectors": {"a": {"size": DIM_A, "distance": "Dot"},
                    "b": {"size": DIM_B, "distance": "Euclid"}},
        "shard_number": SHARDS})
    wait_same_collections(_cluster.nodes, [NAME])
    _data = Data("shards-gw")
    batch = 400
    for start in range(0, len(_data.ids), batch):
        points = [{"id": pid, "vector": _data.vectors[pid], "payload": _data.payloads[pid]}
                  for pid in _data.ids[start:start + batch]]
        ok(first, "PUT", f"/collections/{NAME}/points?wait=true", {"points": points})
    return _cluster, _data


def cluster_info(node):
    return ok(node, "GET", f"/collections/{NAME}/cluster")


def scroll_all(node, body=None, page=97):
    """Every point scroll gives through node, page by page."""
    out = []
    offset = None
    while True:
        req = dict(body or {}, limit=page, with_payload=True)
        if offset is not None:
            req["offset"] = offset
        res = ok(node, "POST", f"/collections/{NAME}/points/scroll", req)
        out.extend(res["points"])
        offset = res["next_page_offset"]
        if offset is None:
            return out
        assert len(out) <= len(_data.ids) + page, "scroll does not end"


def collection_dir(node):
    """<storage>/collections/<uid> of the (only) collection on node."""
    root = os.path.join(node.storage, "collections")
    uids = [d for d in os.listdir(root) if d.isdigit()] if os.path.isdir(root) else []
    return os.path.join(root, uids[0]) if len(uids) == 1 else None


def shard_dirs(node):
    path = collection_dir(node)
    if path is None:
        return set()
    return {int(d) for d in os.listdir(path) if d.isdigit()}


# --- tests ------------------------------------------------------------------

@test
def test_shards_are_spread_and_every_peer_shows_the_same_placement():
    c, data = cluster()
    infos = {n: cluster_info(n) for n in c.nodes}
    owners = {}
    total = 0
    for node, info in infos.items():
        assert info["peer_id"] == node.peer_id(), info
        assert info["shard_count"] == SHARDS, info
        assert info["shard_transfers"] == [], info
        assert len(info["local_shards"]) == SHARDS // 3, info
        for s in info["local_shards"]:
            assert s["state"] == "Active", s
            assert s["shard_id"] not in owners, ("shard on two peers", s)
            owners[s["shard_id"]] = node.peer_id()
            total += s["points_count"]
    assert sorted(owners) == list(range(SHARDS)), owners
    #  Each peer's remote_shards are the others' local ones.
    for node, info in infos.items():
        remote = {(s["shard_id"], s["peer_id"]) for s in info["remote_shards"]}
        assert remote == {(sid, p) for sid, p in owners.items() if p != node.peer_id()}, info
        assert all(s["state"] == "Active" for s in info["remote_shards"]), info
    #  The points went to their shards, each exactly once.
    assert total == len(data.ids), total
    for node in c.nodes:
        info = ok(node, "GET", f"/collections/{NAME}")
        assert info["points_count"] == len(data.ids), (node.peer_id(), info)
        assert "warnings" not in info, info
        #  The shards' files are where the placement says.
        assert shard_dirs(node) == {s["shard_id"] for s in infos[node]["local_shards"]}


@test
def test_search_batch_recommend_and_query_through_every_peer_equal_brute_force():
    c, data = cluster()
    rng = random.Random("search")
    for node in c.nodes:
        for round_ in range(3):
            q = vec(rng, DIM_A)
            g = rng.randrange(5)
            flt = {"must": [{"key": "g", "match": {"value": g}}]}
            pred = (lambda pid, p, g=g: p["g"] == g)
            hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                      {"vector": {"name": "a", "vector": q}, "limit": 10,
                       "params": {"exact": True}})
            check_hits(hits, data.truth(q), 10, f"search via {node.peer_id()}")
            hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                      {"vector": {"name": "a", "vector": q}, "limit": 7, "offset": 5,
                       "filter": flt, "with_payload": True, "params": {"exact": True}})
            check_hits(hits, data.truth(q, pred), 7, "search with filter and offset", 5)
            assert all(h["payload"] == data.payloads[h["id"]] for h in hits), hits
            batch = ok(node, "POST", f"/collections/{NAME}/points/search/batch",
                       {"searches": [{"vector": {"name": "a", "vector": q}, "limit": 3,
                                      "params": {"exact": True}},
                                     {"vector": {"name": "a", "vector": q}, "limit": 4,
                                      "filter": flt, "params": {"exact": True}}]})
            check_hits(batch[0], data.truth(q), 3, "batch 0")
            check_hits(batch[1], data.truth(q, pred), 4, "batch 1")
            res = ok(node, "POST", f"/collections/{NAME}/points/query",
                     {"query": q, "using": "a", "limit": 6, "params": {"exact": True}})
            check_hits(res["points"], data.truth(q), 6, "query")
        #  Recommend by a point that lives on some other peer's shard.
        pid = rng.choice(data.ids)
        hits = ok(node, "POST", f"/collections/{NAME}/points/recommend",
                  {"positive": [pid], "using": "a", "limit": 5, "params": {"exact": True}})
        check_hits(hits, data.truth(data.vectors[pid]["a"], exclude={pid}), 5,
                   f"recommend {pid} via {node.peer_id()}")


@test
def test_scroll_count_and_retrieve_through_every_peer():
    c, data = cluster()
    want = sorted(data.ids, key=harness.id_key)
    for node in c.nodes:
        points = scroll_all(node)
        assert [p["id"] for p in points] == want, node.peer_id()
        assert all(p["payload"] == data.payloads[p["id"]] for p in points)
        flt = {"must": [{"key": "tag", "match": {"value": "y"}}]}
        got = [p["id"] for p in scroll_all(node, {"filter": flt}, page=50)]
        assert got == [p for p in want if data.payloads[p]["tag"] == "y"], node.peer_id()
        assert ok(node, "POST", f"/collections/{NAME}/points/count",
                  {"exact": True}) == {"count": len(data.ids)}
        assert ok(node, "POST", f"/collections/{NAME}/points/count",
                  {"exact": True, "filter": flt}) == {"count": len(got)}
        sample = random.Random(str(node.peer_id())).sample(data.ids, 40)
        res = ok(node, "POST", f"/collections/{NAME}/points",
                 {"ids": sample + [7], "with_payload": True, "with_vector": ["a"]})
        assert [p["id"] for p in res] == [p for p in sample], "request order, 7 left out"
        for p in res:
            assert p["payload"] == data.payloads[p["id"]]
            assert all(abs(x - y) <= 1e-6 for x, y in zip(p["vector"]["a"],
                                                          data.vectors[p["id"]]["a"]))
        one = ok(node, "GET", f"/collections/{NAME}/points/{sample[0]}")
        assert one["id"] == sample[0], one


@test
def test_writes_through_one_peer_are_seen_through_the_others():
    c, data = cluster()
    a, b, d = c.nodes
    rng = random.Random("writes")
    #  Upsert new points through a (a batch split over the shards).
    new = {pid: {"a": vec(rng, DIM_A), "b": vec(rng, DIM_B)}
           for pid in rng.sample(range(10 ** 12, 2 * 10 ** 12), 60)}
    ok(a, "PUT", f"/collections/{NAME}/points?wait=true",
       {"points": [{"id": pid, "vector": v, "payload": {"g": 9, "tag": "new"}}
                   for pid, v in new.items()]})
    for pid, v in new.items():
        data.ids.append(pid)
        data.vectors[pid] = v
        data.payloads[pid] = {"g": 9, "tag": "new"}
    for node in (b, d):
        assert ok(node, "POST", f"/collections/{NAME}/points/count",
                  {"exact": True}) == {"count": len(data.ids)}
    #  Payload by ids through b, by filter through d.
    some = rng.sample(sorted(new), 10)
    ok(b, "POST", f"/collections/{NAME}/points/payload?wait=true",
       {"payload": {"extra": 1}, "points": some})
    ok(d, "POST", f"/collections/{NAME}/points/payload?wait=true",
       {"payload": {"seen": True}, "filter": {"must": [{"key": "g", "match": {"value": 9}}]}})
    for pid in new:
        data.payloads[pid]["seen"] = True
        if pid in some:
            data.payloads[pid]["extra"] = 1
    got = ok(a, "POST", f"/collections/{NAME}/points", {"ids": sorted(new), "with_payload": True})
    assert {p["id"]: p["payload"] for p in got} == {pid: data.payloads[pid] for pid in new}
    #  Overwrite, delete keys and clear through different peers.
    ok(a, "PUT", f"/collections/{NAME}/points/payload?wait=true",
       {"payload": {"g": 8, "tag": "over"}, "points": some[:3]})
    ok(b, "POST", f"/collections/{NAME}/points/payload/delete?wait=true",
       {"keys": ["seen"], "filter": {"must": [{"key": "tag", "match": {"value": "new"}}]}})
    ok(d, "POST", f"/collections/{NAME}/points/payload/clear?wait=true", {"points": some[3:5]})
    for pid in new:
        data.payloads[pid].pop("seen", None)
    for pid in some[:3]:
        data.payloads[pid] = {"g": 8, "tag": "over"}
    for pid in some[3:5]:
        data.payloads[pid] = {}
    for node in c.nodes:
        got = ok(node, "POST", f"/collections/{NAME}/points",
                 {"ids": sorted(new), "with_payload": True})
        assert {p["id"]: p["payload"] for p in got} == {pid: data.payloads[pid] for pid in new}
    #  Vectors: update "a" of some through d, delete "b" of others through a.
    for pid in some[:4]:
        data.vectors[pid]["a"] = vec(rng, DIM_A)
    ok(d, "PUT", f"/collections/{NAME}/points/vectors?wait=true",
       {"points": [{"id": pid, "vector": {"a": data.vectors[pid]["a"]}} for pid in some[:4]]})
    ok(a, "POST", f"/collections/{NAME}/points/vectors/delete?wait=true",
       {"points": some[4:6], "vector": ["b"]})
    got = ok(b, "POST", f"/collections/{NAME}/points",
             {"ids": some[:6], "with_vector": True})
    for p in got:
        if p["id"] in some[:4]:
            assert all(abs(x - y) <= 1e-6 for x, y in zip(p["vector"]["a"],
                                                          data.vectors[p["id"]]["a"]))
        else:
            assert "b" not in p["vector"], p
    q = data.vectors[some[0]]["a"]
    hits = ok(b, "POST", f"/collections/{NAME}/points/search",
              {"vector": {"name": "a", "vector": q}, "limit": 5, "params": {"exact": True}})
    check_hits(hits, data.truth(q), 5, "search after vector update")
    #  Batch updates through b: delete by ids, then by filter.
    gone = some[6:8]
    ok(b, "POST", f"/collections/{NAME}/points/batch?wait=true",
       {"operations": [{"delete": {"points": gone}},
                       {"set_payload": {"payload": {"last": True}, "points": some[8:10]}}]})
    ok(a, "POST", f"/collections/{NAME}/points/delete?wait=true",
       {"filter": {"must": [{"key": "g", "match": {"value": 9}}]}})
    removed = set(gone) | {pid for pid in new if data.payloads[pid].get("g") == 9}
    for pid in removed:
        data.ids.remove(pid)
        del data.vectors[pid]
        del data.payloads[pid]
    for pid in some[8:10]:
        if pid in data.payloads:
            data.payloads[pid]["last"] = True
    for node in c.nodes:
        assert ok(node, "POST", f"/collections/{NAME}/points/count",
                  {"exact": True}) == {"count": len(data.ids)}, node.peer_id()
        assert [p["id"] for p in scroll_all(node)] == sorted(data.ids, key=harness.id_key)
        assert ok(node, "GET", f"/collections/{NAME}")["points_count"] == len(data.ids)


@test
def test_collection_cluster_update_is_validated_as_qdrant_does():
    c, data = cluster()
    a = c.nodes[0]
    info = cluster_info(a)
    sid = info["local_shards"][0]["shard_id"]
    me = a.peer_id()
    other = info["remote_shards"][0]["peer_id"]
    path = f"/collections/{NAME}/cluster"

    def post(body, expect):
        status, reply = a.request("POST", path, body)
        assert status == expect, (body, status, reply)
        return reply["status"]["error"] if status >= 400 else reply["result"]

    err = post({"move_shard": {"shard_id": sid, "from_peer_id": me, "to_peer_id": me}}, 422)
    assert "cannot transfer shard to itself" in err, err
    err = post({"move_shard": {"shard_id": sid, "from_peer_id": me, "to_peer_id": other,
                               "method": "snapshot"}}, 400)
    assert "method `snapshot` is not supported yet" in err, err
    err = post({"move_shard": {"shard_id": sid, "from_peer_id": me, "to_peer_id": other,
                               "method": "teleport"}}, 400)
    assert "unknown variant" in err, err
    err = post({"move_shard": {"shard_id": 99, "from_peer_id": me, "to_peer_id": other}}, 400)
    assert err == f"Bad request: Shard 99 of {NAME} does not exist", err
    err = post({"move_shard": {"shard_id": sid, "from_peer_id": me, "to_peer_id": 12345}}, 400)
    assert err == "Bad request: Peer 12345 does not exist", err
    err = post({"move_shard": {"shard_id": sid, "from_peer_id": other, "to_peer_id": me}}, 400)
    assert f"Shard {sid} is not active on peer {other}" in err, err
    err = post({"move_shard": {"shard_id": -1, "from_peer_id": me, "to_peer_id": other}}, 400)
    assert "expected an unsigned integer" in err, err
    err = post({"move_shard": {"shard_id": sid, "to_peer_id": other}}, 400)
    assert "missing field `from_peer_id`" in err, err
    post({"teleport_shard": {}}, 400)
    post([1, 2], 400)
    for kind in ("replicate_shard", "drop_replica", "restart_transfer"):
        err = post({kind: {"shard_id": sid, "from_peer_id": me, "to_peer_id": other,
                           "peer_id": other, "method": "stream_records"}}, 400)
        assert "not supported yet" in err and "replication" in err, err
    err = post({"abort_transfer": {"shard_id": sid, "from_peer_id": me, "to_peer_id": other}},
               404)
    assert err == (f"Not found: Shard transfer {me} -> {other} for collection "
                   f"{NAME}:{sid} does not exist"), err
    status, reply = a.request("POST", "/collections/nope/cluster",
                              {"move_shard": {"shard_id": 0, "from_peer_id": me,
                                              "to_peer_id": other}})
    assert status == 404, (status, reply)
    status, reply = a.request("GET", "/collections/nope/cluster")
    assert status == 404, (status, reply)
    #  Nothing of that changed the placement.
    assert cluster_info(a) == info


@test
def test_a_started_move_shows_and_an_abort_or_finish_leaves_files_where_the_placement_is():
    c, data = cluster()
    a = c.nodes[0]
    info = cluster_info(a)
    sid = info["local_shards"][0]["shard_id"]
    me = a.peer_id()
    target = c.by_id(info["remote_shards"][0]["peer_id"])
    path = f"/collections/{NAME}/cluster"
    assert ok(a, "POST", path, {"move_shard": {"shard_id": sid, "from_peer_id": me,
                                               "to_peer_id": target.peer_id()}}) is True
    #  Listed at once on this peer (the proposal's state is installed), with
    #  the copy Partial on the target (unless the move already finished).
    now = cluster_info(a)
    listed = [t for t in now["shard_transfers"] if t["shard_id"] == sid]
    if listed:
        t = listed[0]
        assert (t["from"], t["to"], t["sync"], t["method"]) == \
            (me, target.peer_id(), False, "stream_records"), t
        assert {"shard_id": sid, "peer_id": target.peer_id(), "state": "Partial"} in \
            now["remote_shards"], now
        #  A second move of the same shard is refused while this one runs.
        status, reply = a.request("POST", path, {"move_shard": {
            "shard_id": sid, "from_peer_id": me, "to_peer_id": c.nodes[2].peer_id()
            if c.nodes[2] is not target else c.nodes[1].peer_id()}})
        assert status in (400, 200), (status, reply)
        if status == 400:
            assert "already involved in transfer" in reply["status"]["error"], reply
    #  Searches and counts stay whole whatever the transfer does.
    q = vec(random.Random("move"), DIM_A)
    for node in c.nodes:
        hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                  {"vector": {"name": "a", "vector": q}, "limit": 10,
                   "params": {"exact": True}})
        check_hits(hits, data.truth(q), 10, f"search during move via {node.peer_id()}")
    status, reply = a.request("POST", path, {"abort_transfer": {
        "shard_id": sid, "from_peer_id": me, "to_peer_id": target.peer_id()}})
    assert status in (200, 404), (status, reply)   # 404: it finished first

    #  Settled: no transfer, every shard Active on one peer, and each
    #  peer's shard dirs exactly its replicas (the dropped copy's files are
    #  removed by its supervisor).
    def settled():
        infos = {n: cluster_info(n) for n in c.nodes}
        if any(i["shard_transfers"] for i in infos.values()):
            return None
        owned = {n: {s["shard_id"] for s in i["local_shards"]} for n, i in infos.items()}
        if sorted(s for ids in owned.values() for s in ids) != list(range(SHARDS)):
            return None
        if any(s["state"] != "Active" for i in infos.values() for s in i["local_shards"]):
            return None
        if any(shard_dirs(n) != ids for n, ids in owned.items()):
            return None
        return owned
    owned = wait_for(settled, what="the move to settle and the files to follow the placement")
    for node in c.nodes:
        assert ok(node, "POST", f"/collections/{NAME}/points/count",
                  {"exact": True}) == {"count": len(data.ids)}, owned
        hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                  {"vector": {"name": "a", "vector": q}, "limit": 10,
                   "params": {"exact": True}})
        check_hits(hits, data.truth(q), 10, f"search after the move via {node.peer_id()}")


@test
def test_removing_a_peer_that_holds_shards_is_refused():
    c, data = cluster()
    a, b, _ = c.nodes
    status, reply = a.request("DELETE", f"/cluster/peer/{b.peer_id()}")
    assert status == 400, (status, reply)
    assert "shards on it" in reply["status"]["error"], reply
    assert str(b.peer_id()) in {str(p) for p in a.cluster()["peers"]}


def wait_counts_whole(node, data, sid):
    """Until an exact count through node is whole again; until then each
    answer is an error naming shard sid."""
    def whole():
        status, reply = node.request("POST", f"/collections/{NAME}/points/count?timeout=5",
                                     {"exact": True}, timeout=60)
        if status != 200:
            assert status in (408, 500, 503), (status, reply)
            assert f"shard {sid} " in reply["status"]["error"], reply
            return None
        return reply["result"]["count"] == len(data.ids) or None
    wait_for(whole, what="counts whole again after the shard actor's restart")


@test
def test_reads_of_a_remote_shard_actor_killed_name_the_shard_or_wait_and_are_served_again():
    """Remote reads reach a shard through its peer's p2p actor and the
    shard's direct socket: with the shard actor killed, a read is an error
    naming the shard (a connection closed under it) or waits for the
    restarted actor (a new connection is refused, the shard's queue holds
    it), never a hang; once the supervisor has restarted it every read is
    whole again."""
    c, data = cluster()
    a, _, d = c.nodes
    victim = next(pid for pid in harness._pids_in(d.dir)
                  if (harness.actor_role(pid) or "").startswith("shard:"))
    sid = int(harness.actor_role(victim).split("/")[1])
    q = vec(random.Random("killed"), DIM_A)
    search = {"vector": {"name": "a", "vector": q}, "limit": 10, "params": {"exact": True}}
    #  The connections are open and in use before the kill.
    ok(a, "POST", f"/collections/{NAME}/points/search", search)
    os.kill(victim, 9)
    wait_counts_whole(a, data, sid)
    assert not harness.pid_alive(victim)
    hits = ok(a, "POST", f"/collections/{NAME}/points/search", search)
    check_hits(hits, data.truth(q), 10, "search after the shard actor's restart")


@test
def test_a_remote_shard_actor_that_hangs_is_a_timeout_naming_it_then_served_again():
    """A remote shard actor stopped (SIGSTOP) with a read on its direct
    connection: the read ends at its deadline with an error naming the
    shard (a second one too, while the first still holds a connection),
    and once the actor is killed and restarted every read is whole again."""
    c, data = cluster()
    a, _, d = c.nodes
    victim = next(pid for pid in harness._pids_in(d.dir)
                  if (harness.actor_role(pid) or "").startswith("shard:"))
    sid = int(harness.actor_role(victim).split("/")[1])
    ok(a, "POST", f"/collections/{NAME}/points/count", {"exact": True})
    os.kill(victim, signal.SIGSTOP)
    try:
        for _ in range(2):
            status, reply = a.request("POST", f"/collections/{NAME}/points/count?timeout=1",
                                      {"exact": True}, timeout=60)
            assert status in (408, 500, 503), (status, reply)
            assert f"shard {sid} " in reply["status"]["error"], reply
    finally:
        os.kill(victim, signal.SIGKILL)
    wait_counts_whole(a, data, sid)


@test
def test_reads_through_a_peer_whose_p2p_actor_was_killed_are_served_again():
    """The gateway sends remote requests to its p2p actor on a stream
    connection: with that actor killed, the connection breaks and what it
    carried goes again on the DEALER; every answer is whole or an error
    naming a shard (never a hang), and reads through every peer are whole
    again once the supervisor has restarted the actor."""
    c, data = cluster()
    a = c.nodes[0]
    ok(a, "POST", f"/collections/{NAME}/points/count", {"exact": True})
    victim = next(pid for pid in harness._pids_in(a.dir) if harness.actor_role(pid) == "p2p")
    os.kill(victim, 9)

    #  Through every peer: the others' links to this one reconnect too.
    def whole():
        for node in c.nodes:
            status, reply = node.request("POST",
                                         f"/collections/{NAME}/points/count?timeout=5",
                                         {"exact": True}, timeout=60)
            if status != 200:
                assert status in (408, 500, 503), (status, reply)
                assert "shard" in reply["status"]["error"], reply
                return None
            if reply["result"]["count"] != len(data.ids):
                return None
        return True
    wait_for(whole, what="counts whole again after the p2p actor's restart")
    assert not harness.pid_alive(victim)
    q = vec(random.Random("p2p-killed"), DIM_A)
    hits = ok(a, "POST", f"/collections/{NAME}/points/search",
              {"vector": {"name": "a", "vector": q}, "limit": 10, "params": {"exact": True}})
    check_hits(hits, data.truth(q), 10, "search after the p2p actor's restart")


@test
def test_a_dead_peer_is_a_clear_error_naming_the_shard_and_the_peer():
    c, data = cluster()
    a, b, d = c.nodes
    info = cluster_info(a)
    dead_shards = {s["shard_id"] for s in cluster_info(d)["local_shards"]}
    d.crash()
    q = vec(random.Random("dead"), DIM_A)
    asks = [("POST", "/points/search", {"vector": {"name": "a", "vector": q}, "limit": 3}),
            ("POST", "/points/count", {"exact": True}),
            ("POST", "/points/scroll", {"limit": 5})]
    for method, suffix, body in asks:
        for node in (a, b):
            status, reply = node.request(method, f"/collections/{NAME}{suffix}?timeout=3",
                                         body, timeout=60)
            assert status in (408, 503), (suffix, status, reply)
            err = reply["status"]["error"]
            assert "shard" in err and str(d.peer_id()) in err, err
            assert any(f"shard {s} " in err for s in dead_shards), err
    #  A write to a point of a live shard still works; one to the dead
    #  peer's shards fails naming it.
    results = []
    for pid in random.Random("dead-w").sample(range(3 * 10 ** 12, 4 * 10 ** 12), 12):
        status, reply = a.request("PUT", f"/collections/{NAME}/points?wait=true&timeout=3",
                                  {"points": [{"id": pid, "vector": {"a": q, "b": q[:DIM_B]}}]})
        results.append((pid, status, reply))
    assert any(s == 200 for _, s, _ in results), results
    failed = [(p, s, r) for p, s, r in results if s != 200]
    assert failed, "some of 12 points should belong to the dead peer's 2 of 6 shards"
    for pid, status, reply in failed:
        assert status in (408, 503), (pid, status, reply)
        assert str(d.peer_id()) in reply["status"]["error"], reply
    for pid, status, _ in results:
        if status == 200:
            data.ids.append(pid)
            data.vectors[pid] = {"a": q, "b": q[:DIM_B]}
            data.payloads[pid] = {}
    #  Back up: every path works again through every peer.
    d.restart()
    c.wait_agree()

    def whole():
        for node in c.nodes:
            status, reply = node.request("POST", f"/collections/{NAME}/points/count",
                                         {"exact": True})
            if status != 200 or reply["result"]["count"] != len(data.ids):
                return None
        return True
    wait_for(whole, what="counts through every peer after the restart")

    def placement(i):
        return ([(s["shard_id"], s["state"]) for s in i["local_shards"]], i["remote_shards"])
    assert placement(info) == placement(cluster_info(a))
    for node in c.nodes:
        hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                  {"vector": {"name": "a", "vector": q}, "limit": 10, "params": {"exact": True}})
        check_hits(hits, data.truth(q), 10, f"search after the restart via {node.peer_id()}")


if __name__ == "__main__":
    harness.main(shared=cluster)
