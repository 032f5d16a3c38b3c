#!/usr/bin/env python3
"""test_sharding: issue 5 end to end, with real nodes on loopback.

Three nodes hold a collection of 6 shards (2 per peer); 50,000 points are
upserted through one peer. Then:

- each peer holds exactly its shards' points: the per-shard counts of every
  peer's GET /collections/{c}/cluster equal what the hash ring says (the
  ring is modelled here in Python: SipHash-2-4 with a zero key over the
  id's 17-byte key, 4000 vnodes a shard, as common/hashring.c, and checked
  against test_hashring's frozen table), and a scroll through any peer
  returns every id exactly once;
- searches through every peer equal brute force over all the points
  (exact=true), and, once the HNSW indexes are built (green), find the
  true top-10 with high recall;
- a shard moves while a writer keeps upserting (wait=true) and setting
  payloads, and a reader keeps searching through every peer: every
  acknowledged write is there exactly once afterwards, no search failed or
  came back different from brute force, the transfer was listed with
  Qdrant's "Transferring records (n/total)" comment while it ran, and the
  source's copy is gone (from the placement and from its disk);
- a move aborted right after it started leaves the source serving every
  point and the target's copy gone (placement and disk);
- kill -9 of the node a shard is moving to: the transfer is aborted, the
  placement stays, the source keeps serving, and the restarted node drops
  its partial copy;
- a move to the same peer is refused (422 "cannot transfer shard to
  itself"), so is an unknown method;
- tools/shoal-move-shard moves a shard and waits for it, and
  tools/shoal-rebalance --dry-run prints a plan that changes nothing, and
  without --dry-run evens out shards piled on one peer, losing no point;
- DELETE /cluster/peer/{id} of a peer that holds shards is refused (400)
  without force; once its shards are moved off (scale down) it succeeds.

A fourth node joins after the collection is made (so it starts empty): it
is the target of the killed transfer and of the rebalance, and the peer
removed at the end. Waits are conditions polled with a deadline, never
sleeps; nothing asserts how long anything took."""
import array
import bisect
import json
import operator
import os
import random
import re
import struct
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Cluster, test, wait_for, wait_same_collections  # noqa: E402

NAME = "sharding"
SHARDS = 6
DIM = 16
N_INTS = 45000
N_UUIDS = 5000
BATCH = 1000
TOL = 1e-3
#  Moves stream whole shards between loaded processes: generous deadlines.
MOVE_TIMEOUT = max(harness.WAIT_TIMEOUT, 300.0)
TOOLS = os.path.join(harness.REPO, "tools")
COMMENT = re.compile(r"^Transferring records \((\d+)/(\d+)\)$")


# --- the hash ring, as common/hashring.c places points ------------------------

_M64 = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64


def siphash24(data, k0=0, k1=0):
    """SipHash-2-4 of data (bytes) as a u64 (libsodium's crypto_shorthash,
    its 8 output bytes read little-endian)."""
    v0 = k0 ^ 0x736f6d6570736575
    v1 = k1 ^ 0x646f72616e646f6d
    v2 = k0 ^ 0x6c7967656e657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n, v0, v1, v2, v3):
        for _ in range(n):
            v0 = (v0 + v1) & _M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        return v0, v1, v2, v3

    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = rounds(2, v0, v1, v2, v3)
        v0 ^= m
    m = (len(data) & 0xff) << 56 | int.from_bytes(data[end:], "little")
    v3 ^= m
    v0, v1, v2, v3 = rounds(2, v0, v1, v2, v3)
    v0 ^= m
    v2 ^= 0xff
    v0, v1, v2, v3 = rounds(4, v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


class Ring:
    """Which shard a point id belongs to: each shard's 4000 vnodes at the
    SipHash of (shard u32 LE, vnode u32 LE); a point at the SipHash of its
    key (tag byte 0 and the integer as 16 bytes big-endian, or tag 1 and the
    UUID's bytes) goes to the first vnode at or after it, wrapping."""

    VNODES = 4000

    def __init__(self, shards):
        nodes = sorted((siphash24(struct.pack("<II", s, v)), s)
                       for s in range(shards) for v in range(self.VNODES))
        self.pos = [p for p, _ in nodes]
        self.shard = [s for _, s in nodes]
        self.cache = {}

    def of(self, pid):
        got = self.cache.get(pid)
        if got is None:
            key = (b"\0" + pid.to_bytes(16, "big") if isinstance(pid, int)
                   else b"\1" + uuid.UUID(pid).bytes)
            i = bisect.bisect_left(self.pos, siphash24(key))
            got = self.cache[pid] = self.shard[0 if i == len(self.pos) else i]
        return got


_ring = None


def ring():
    global _ring
    if _ring is None:
        _ring = Ring(SHARDS)
        #  The model is the contract only if it agrees with the frozen
        #  table of test/unit/test_hashring.c (6 shards).
        for pid, shard in [(0, 1), (1, 2), (3, 5), (42, 3), (1000, 4),
                           (9223372036854775807, 3),
                           ("550e8400-e29b-41d4-a716-446655440000", 2),
                           ("f47ac10b-58cc-4372-a567-0e02b2c3d479", 5),
                           ("ffffffff-ffff-ffff-ffff-ffffffffffff", 1)]:
            assert _ring.of(pid) == shard, ("ring model differs from hashring.c", pid)
    return _ring


# --- data and checks -----------------------------------------------------------

def f32s(values):
    return array.array("f", values).tolist()


def dot(a, b):
    return sum(map(operator.mul, a, b))


class Data:
    """The points the cluster should hold: {id: vector}, {id: payload}."""

    def __init__(self, seed):
        rng = random.Random(seed)
        ids = rng.sample(range(1, 10 ** 12), N_INTS)
        ids += [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_UUIDS)]
        rng.shuffle(ids)
        self.vectors = {pid: f32s([rng.uniform(-1.0, 1.0) for _ in range(DIM)]) for pid in ids}
        self.payloads = {pid: {"g": i % 7} for i, pid in enumerate(ids)}

    def ids(self):
        return list(self.vectors)

    def shard_counts(self):
        counts = [0] * SHARDS
        r = ring()
        for pid in self.vectors:
            counts[r.of(pid)] += 1
        return counts

    def truth(self, query):
        return {pid: dot(v, query) for pid, v in self.vectors.items()}


def top(truth, k):
    return sorted(truth.items(), key=lambda kv: -kv[1])[:k]


def same_hits(hits, want):
    """None when hits (a search answer) equal want (brute force's top-k as
    (id, score)) up to ties, else what differs."""
    got = [(h["id"], h["score"]) for h in hits]
    if len(got) != len(want):
        return f"{len(got)} hits, want {len(want)}"
    if len({p for p, _ in got}) != len(got):
        return f"duplicate ids in {got}"
    for i, ((pid, s), (wpid, ws)) in enumerate(zip(got, want)):
        if abs(s - ws) > TOL:
            return f"hit {i}: {pid} score {s}, want {wpid} score {ws}"
    wanted = {p for p, _ in want}
    for pid, s in got:
        if pid not in wanted and abs(s - want[-1][1]) > TOL:
            return f"{pid} (score {s}) is not in the top {len(want)}"
    return None


def ok(node, method, path, body=None, timeout=120):
    status, answer = node.request(method, path, body, timeout=timeout)
    assert status == 200, (node.peer_id(), method, path, status, answer)
    assert answer["status"] == "ok", answer
    return answer["result"]


def cluster_info(node):
    return ok(node, "GET", f"/collections/{NAME}/cluster")


def placement(info):
    """{shard_id: {peer_id: state}} from one peer's cluster info."""
    out = {}
    for s in info["local_shards"]:
        out.setdefault(s["shard_id"], {})[info["peer_id"]] = s["state"]
    for s in info["remote_shards"]:
        out.setdefault(s["shard_id"], {})[s["peer_id"]] = s["state"]
    return out


def owners(node):
    """{shard_id: peer_id} of a settled placement (one Active replica each)."""
    return {sid: next(iter(peers)) for sid, peers in placement(cluster_info(node)).items()}


def per_peer(owned, peers):
    """{peer_id: [shard ids]} for every peer of peers, empty ones too."""
    out = {p: [] for p in peers}
    for sid, p in sorted(owned.items()):
        out.setdefault(p, []).append(sid)
    return out


def settled(nodes):
    """The placement ({shard: peer}) when every node shows the same one,
    with no transfer and one Active replica per shard; else None."""
    seen = None
    for node in nodes:
        info = cluster_info(node)
        if info["shard_transfers"]:
            return None
        pl = placement(info)
        if sorted(pl) != list(range(SHARDS)):
            return None
        if any(len(peers) != 1 or list(peers.values()) != ["Active"] for peers in pl.values()):
            return None
        if seen is not None and pl != seen:
            return None
        seen = pl
    return {sid: next(iter(peers)) for sid, peers in seen.items()}


def wait_settled(nodes, what="the placement to settle"):
    return wait_for(lambda: settled(nodes), MOVE_TIMEOUT, what)


def move(node, sid, src, dst):
    return ok(node, "POST", f"/collections/{NAME}/cluster",
              {"move_shard": {"shard_id": sid, "from_peer_id": src, "to_peer_id": dst}})


def collection_dir(node):
    """<storage>/collections/<uid> of the suite's (only) collection."""
    root = os.path.join(node.storage, "collections")
    uids = [d for d in os.listdir(root) if d.isdigit()] if os.path.isdir(root) else []
    return os.path.join(root, uids[0]) if len(uids) == 1 else None


def shard_dirs(node):
    path = collection_dir(node)
    if path is None or not os.path.isdir(path):
        return set()
    return {int(d) for d in os.listdir(path) if d.isdigit()}


def scroll_all(node, with_payload=False, page=2000):
    out = []
    offset = None
    while True:
        body = {"limit": page, "with_payload": with_payload, "with_vector": False}
        if offset is not None:
            body["offset"] = offset
        res = ok(node, "POST", f"/collections/{NAME}/points/scroll", body)
        out.extend(res["points"])
        offset = res["next_page_offset"]
        if offset is None:
            return out
        assert len(out) <= 10 ** 6, "scroll does not end"


def count(node):
    return ok(node, "POST", f"/collections/{NAME}/points/count", {"exact": True})["count"]


def check_whole(nodes, data, scroll_through):
    """Every node counts exactly data's points, and a scroll through
    scroll_through returns each of them once, in id order."""
    want = sorted(data.vectors, key=harness.id_key)
    got = [p["id"] for p in scroll_all(scroll_through)]
    assert len(got) == len(set(got)), "a point is there twice"
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    some_missing = sorted(missing, key=harness.id_key)[:5]
    some_extra = sorted(extra, key=harness.id_key)[:5]
    assert not missing and not extra, (f"{len(missing)} points missing, e.g. {some_missing};"
                                       f" {len(extra)} unexpected, e.g. {some_extra}")
    assert got == want, "scroll is not in id order"
    for node in nodes:
        assert count(node) == len(want), (node.peer_id(), count(node), len(want))


def search(node, q, limit=10, exact=True, timeout=120):
    return ok(node, "POST", f"/collections/{NAME}/points/search",
              {"vector": q, "limit": limit, "params": {"exact": exact}}, timeout=timeout)


def check_searches(nodes, data, seed, rounds=2):
    rng = random.Random(seed)
    for node in nodes:
        for _ in range(rounds):
            q = f32s([rng.uniform(-1, 1) for _ in range(DIM)])
            diff = same_hits(search(node, q), top(data.truth(q), 10))
            assert diff is None, (node.peer_id(), diff)


def run_tool(name, *args, timeout=None):
    """Runs tools/<name> args...; (exit code, stdout, stderr)."""
    proc = subprocess.run([os.path.join(TOOLS, name), *map(str, args)],
                          capture_output=True, text=True,
                          timeout=timeout or MOVE_TIMEOUT * 3,
                          env=harness.clean_env({"QDRANT_API_KEY": ""}),
                          stdin=subprocess.DEVNULL)
    print(f"$ {name} {' '.join(map(str, args))}  (exit {proc.returncode})\n"
          f"{proc.stdout}{proc.stderr}", end="", flush=True)
    return proc.returncode, proc.stdout, proc.stderr


# --- the shared cluster ----------------------------------------------------------

_cluster = None
_data = None


def cluster():
    """Three nodes with the collection filled, and a fourth (empty) node
    that joined afterwards: (Cluster, Data). Made once; made again if a
    test left a node down."""
    global _cluster, _data
    if _cluster is not None and all(n.running() for n in _cluster.nodes):
        return _cluster, _data
    if _cluster is not None:
        _cluster.stop()
    _cluster = Cluster(3)
    first = _cluster.nodes[0]
    ok(first, "PUT", f"/collections/{NAME}",
       {"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": SHARDS,
        "hnsw_config": {"full_scan_threshold": 10},
        "optimizers_config": {"indexing_threshold": 100}})
    wait_same_collections(_cluster.nodes, [NAME])
    _data = Data("sharding")
    ids = _data.ids()
    started = time.monotonic()
    for at in range(0, len(ids), BATCH):
        chunk = ids[at:at + BATCH]
        body = json.dumps({"batch": {"ids": chunk, "vectors": [_data.vectors[p] for p in chunk],
                                     "payloads": [_data.payloads[p] for p in chunk]}})
        ok(first, "PUT", f"/collections/{NAME}/points?wait=true", body)
    print(f"{len(ids)} points upserted through one peer in {time.monotonic() - started:.1f} s",
          flush=True)
    _cluster.add()
    _cluster.wait_agree()
    return _cluster, _data


def nodes_and_ids(c):
    return {n.peer_id(): n for n in c.nodes if n.running()}


# --- tests ---------------------------------------------------------------------

@test
def test_50k_points_land_on_their_shards_and_nowhere_else():
    c, data = cluster()
    _, b, _, e = c.nodes
    want = data.shard_counts()
    assert max(want) - min(want) <= 0.1 * len(data.vectors) / SHARDS, want
    held = {}
    for node in c.nodes:
        info = cluster_info(node)
        assert info["peer_id"] == node.peer_id() and info["shard_count"] == SHARDS, info
        assert info["shard_transfers"] == [], info
        for s in info["local_shards"]:
            assert s["shard_id"] not in held, ("shard on two peers", s)
            assert s["state"] == "Active", s
            held[s["shard_id"]] = node.peer_id()
            #  This peer's replica holds exactly the points the ring gives it.
            assert s["points_count"] == want[s["shard_id"]], \
                (node.peer_id(), s, want[s["shard_id"]])
        #  The files are where the placement says (the late node: none).
        assert shard_dirs(node) == {s["shard_id"] for s in info["local_shards"]}, node.peer_id()
    assert sorted(held) == list(range(SHARDS)), held
    load = per_peer(held, [n.peer_id() for n in c.nodes])
    assert sorted(len(v) for v in load.values()) == [0, 2, 2, 2], load
    assert load[e.peer_id()] == [], "the node that joined later got shards"
    #  The union is exact: each id once through any peer (the empty one too).
    check_whole(c.nodes, data, scroll_through=e)
    sample = random.Random("retrieve").sample(data.ids(), 200)
    got = ok(b, "POST", f"/collections/{NAME}/points",
             {"ids": sample, "with_payload": True, "with_vector": True})
    assert [p["id"] for p in got] == sample
    for p in got:
        assert p["payload"] == data.payloads[p["id"]]
        assert all(abs(x - y) <= 1e-6 for x, y in zip(p["vector"], data.vectors[p["id"]]))


@test
def test_searches_through_every_peer_equal_brute_force():
    c, data = cluster()
    check_searches(c.nodes, data, "exact", rounds=3)
    #  The HNSW indexes of every shard (green everywhere), then searches
    #  through the graphs: the merged top-10 is the true one but for a few.
    wait_for(lambda: all(ok(n, "GET", f"/collections/{NAME}")["status"] == "green"
                         for n in c.nodes),
             MOVE_TIMEOUT, "every shard's index (status green)")
    info = ok(c.nodes[0], "GET", f"/collections/{NAME}")
    assert info["indexed_vectors_count"] >= len(data.vectors), info
    rng = random.Random("hnsw")
    found = total = 0
    for node in c.nodes:
        for _ in range(5):
            q = f32s([rng.uniform(-1, 1) for _ in range(DIM)])
            hits = ok(node, "POST", f"/collections/{NAME}/points/search",
                      {"vector": q, "limit": 10, "params": {"hnsw_ef": 64}})
            want = {p for p, _ in top(data.truth(q), 10)}
            found += len(want & {h["id"] for h in hits})
            total += 10
    print(f"HNSW recall@10 through the gateways: {found / total:.3f}")
    assert found / total >= 0.95, found / total


@test
def test_a_move_under_writes_and_searches_loses_nothing():
    c, data = cluster()
    by_id = nodes_and_ids(c)
    owned = wait_settled(c.nodes)
    load = per_peer(owned, by_id)
    #  The biggest shard of a peer holding two, to a peer holding two.
    counts = data.shard_counts()
    src = next(p for p, sids in sorted(load.items()) if len(sids) == 2)
    sid = max(load[src], key=lambda s: counts[s])
    dst = next(p for p, sids in sorted(load.items()) if len(sids) == 2 and p != src)
    source, target = by_id[src], by_id[dst]
    writer_via = next(n for n in c.nodes if n not in (source, target))
    r = ring()
    moving = [pid for pid in data.vectors if r.of(pid) == sid]
    rng = random.Random("move")
    queries = [f32s([rng.uniform(-1, 1) for _ in range(DIM)]) for _ in range(4)]
    truths = [top(data.truth(q), 10) for q in queries]

    stop = threading.Event()
    transfer_on = threading.Event()
    acked, refused, attempted = {}, [], {}
    touches = {}                # id -> [(t, acknowledged)] of the payload writes
    reads = {"ok": 0, "during": 0, "failed": []}

    def writer():
        k = 0
        next_id = 2 * 10 ** 12
        wrng = random.Random("writer")
        while not stop.is_set():
            k += 1
            if k % 2:
                #  New points; tiny vectors, so they never enter a top-10
                #  and the reader's brute force answers stay true.
                pts = {next_id + i: f32s([wrng.uniform(-1e-3, 1e-3) for _ in range(DIM)])
                       for i in range(25)}
                next_id += 25
                attempted.update(pts)
                status, reply = writer_via.try_request(
                    "PUT", f"/collections/{NAME}/points?wait=true",
                    {"points": [{"id": p, "vector": v, "payload": {"w": k}}
                                for p, v in pts.items()]}, timeout=120)
                if status == 200:
                    acked.update({p: (v, k) for p, v in pts.items()})
                else:
                    refused.append((status, reply))
            else:
                #  Payload writes on points of the moving shard.
                some = wrng.sample(moving, 10)
                status, reply = writer_via.try_request(
                    "POST", f"/collections/{NAME}/points/payload?wait=true",
                    {"payload": {"t": k}, "points": some}, timeout=120)
                for p in some:
                    touches.setdefault(p, []).append((k, status == 200))
                if status != 200:
                    refused.append((status, reply))

    def reader():
        i = 0
        while not stop.is_set():
            node = c.nodes[i % len(c.nodes)]
            q = i % len(queries)
            during = transfer_on.is_set()
            status, reply = node.try_request(
                "POST", f"/collections/{NAME}/points/search",
                {"vector": queries[q], "limit": 10, "params": {"exact": True}}, timeout=120)
            diff = (same_hits(reply["result"], truths[q]) if status == 200
                    else f"HTTP {status}: {reply}")
            if diff is None:
                reads["ok"] += 1
                reads["during"] += during and transfer_on.is_set()
            else:
                reads["failed"].append((node.peer_id(), diff))
            i += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    comments = []
    try:
        wait_for(lambda: len(acked) >= 100 and reads["ok"] >= 4, what="the writer and reader")
        transfer_on.set()
        assert move(source, sid, src, dst) is True
        #  Poll the transfer as the source shows it (it applied the start
        #  before it answered) until the shard is on the target.
        deadline = time.monotonic() + MOVE_TIMEOUT
        while True:
            info = cluster_info(source)
            transfers = info["shard_transfers"]
            if not transfers:
                assert placement(info)[sid] == {dst: "Active"}, \
                    ("the move ended, not on the target", placement(info)[sid])
                break
            assert [(t["shard_id"], t["from"], t["to"], t["method"]) for t in transfers] == \
                [(sid, src, dst, "stream_records")], transfers
            if "comment" in transfers[0]:
                comments.append(transfers[0]["comment"])
            assert time.monotonic() < deadline, f"the move did not end: {transfers}"
        transfer_on.clear()
        owned = wait_settled(c.nodes, f"shard {sid} to settle on peer {dst}")
        assert owned[sid] == dst, owned
        before = len(acked)
        wait_for(lambda: len(acked) >= before + 100, what="writes after the move")
    finally:
        stop.set()
        for t in threads:
            t.join()
    shown = [COMMENT.match(x) for x in comments]
    print(f"move of shard {sid} ({len(moving)} points): {len(acked)} points acknowledged,"
          f" {len(refused)} writes refused {refused[:2]}, {reads['ok']} searches"
          f" ({reads['during']} while it ran); progress seen: {sorted(set(comments))[:8]}")
    assert comments and all(shown), ("no progress comment while the move ran", comments)
    assert any(int(m.group(2)) >= len(moving) for m in shown), comments
    assert not reads["failed"], reads["failed"][:5]
    assert reads["ok"] > 0

    #  Every acknowledged write is there, once; nothing that was never
    #  attempted is.
    points = scroll_all(source, with_payload=True)
    ids = [p["id"] for p in points]
    assert len(ids) == len(set(ids)), "a point is there twice"
    present = set(ids)
    lost = [p for p in acked if p not in present]
    assert not lost, f"{len(lost)} acknowledged points lost, e.g. {lost[:5]}"
    assert all(p in data.vectors or p in attempted for p in present), "unknown points"
    assert all(p in present for p in data.vectors), "original points lost"
    payload = {p["id"]: p["payload"] for p in points}
    for pid, writes in touches.items():
        last_ok = max((i for i, (_, good) in enumerate(writes) if good), default=-1)
        allowed = {t for t, _ in writes[max(last_ok, 0):]}
        if last_ok < 0:
            allowed.add(None)
        assert payload[pid].get("t") in allowed, (pid, payload[pid], writes)
    for pid, (vector, k) in acked.items():
        assert payload[pid] == {"w": k}, (pid, payload[pid])
    #  Record the new points (those of refused writes that landed too).
    for pid in present - set(data.vectors):
        data.vectors[pid] = attempted[pid]
        data.payloads[pid] = payload[pid]
    for pid in touches:
        data.payloads[pid] = payload[pid]
    check_whole(c.nodes, data, scroll_through=target)
    #  The source's copy is gone: placement, and its files.
    assert sid not in {s["shard_id"] for s in cluster_info(source)["local_shards"]}
    wait_for(lambda: sid not in shard_dirs(source), what=f"shard {sid}'s dir to go from the source")
    assert sid in shard_dirs(target)
    got = {s["shard_id"]: s["points_count"] for s in cluster_info(target)["local_shards"]}
    assert got[sid] == data.shard_counts()[sid], (got, data.shard_counts())
    check_searches(c.nodes, data, "after-move", rounds=1)


@test
def test_an_aborted_move_leaves_the_source_serving_and_the_target_clean():
    c, data = cluster()
    by_id = nodes_and_ids(c)
    counts = data.shard_counts()
    aborted = None
    for attempt in range(3):
        owned = wait_settled(c.nodes)
        load = per_peer(owned, by_id)
        #  The biggest shard, to the peer holding fewest shards.
        sid = max(owned, key=lambda s: counts[s])
        src = owned[sid]
        dst = min((p for p in load if p != src), key=lambda p: (len(load[p]), p))
        source, target = by_id[src], by_id[dst]
        assert move(source, sid, src, dst) is True
        status, reply = source.request("POST", f"/collections/{NAME}/cluster", {
            "abort_transfer": {"shard_id": sid, "from_peer_id": src, "to_peer_id": dst}})
        if status == 200:
            aborted = (sid, source, target)
            break
        #  404: the move finished before the abort reached it; try again.
        assert status == 404, (status, reply)
        print(f"attempt {attempt}: the move finished before its abort", flush=True)
    assert aborted, "every move finished before its abort"
    sid, source, target = aborted
    owned = wait_settled(c.nodes, f"the aborted move of shard {sid} to settle")
    assert owned[sid] == source.peer_id(), (sid, owned)
    #  The target's copy is gone from the placement and from its disk.
    assert sid not in {s["shard_id"] for s in cluster_info(target)["local_shards"]}
    wait_for(lambda: sid not in shard_dirs(target),
             what=f"the aborted copy of shard {sid} to leave the target's disk")
    #  The source serves every point of it, and the collection is whole.
    mine = {s["shard_id"]: s["points_count"] for s in cluster_info(source)["local_shards"]}
    assert mine[sid] == counts[sid], (mine, counts)
    check_whole(c.nodes, data, scroll_through=target)
    check_searches(c.nodes, data, "after-abort", rounds=1)


@test
def test_moves_to_the_same_peer_or_by_an_unknown_method_are_refused():
    c, data = cluster()
    a = c.nodes[0]
    owned = wait_settled(c.nodes)
    sid, src = sorted(owned.items())[0]
    other = next(n.peer_id() for n in c.nodes if n.peer_id() != src)
    path = f"/collections/{NAME}/cluster"
    status, reply = a.request("POST", path, {"move_shard": {
        "shard_id": sid, "from_peer_id": src, "to_peer_id": src}})
    assert status == 422, (status, reply)
    assert "cannot transfer shard to itself" in reply["status"]["error"], reply
    for method, wording in (("teleport", "unknown variant"), ("snapshot", "not supported")):
        status, reply = a.request("POST", path, {"move_shard": {
            "shard_id": sid, "from_peer_id": src, "to_peer_id": other, "method": method}})
        assert status == 400, (method, status, reply)
        assert wording in reply["status"]["error"], reply
    #  The script says the same, with its exit code for a refusal.
    code, out, err = run_tool("shoal-move-shard", "--url", f"http://127.0.0.1:{a.http_port}",
                              NAME, sid, src, src)
    assert code == 1 and "cannot transfer shard to itself" in err, (code, err)
    assert wait_settled(c.nodes) == owned


@test
def test_killing_the_target_of_a_transfer_aborts_it_and_the_source_keeps_serving():
    c, data = cluster()
    by_id = nodes_and_ids(c)
    counts = data.shard_counts()
    owned = wait_settled(c.nodes)
    load = per_peer(owned, by_id)
    empty = [p for p, sids in load.items() if not sids]
    assert empty, ("the late node should hold no shard", load)
    dst = empty[0]
    target = by_id[dst]
    live = [n for n in c.nodes if n is not target]
    sid = max(owned, key=lambda s: counts[s])
    src = owned[sid]
    source = by_id[src]

    def streaming():
        """The transfer's (n, total) once records flow, False once it is
        gone (finished), None meanwhile."""
        transfers = cluster_info(source)["shard_transfers"]
        if not transfers:
            return False
        m = COMMENT.match(transfers[0].get("comment", ""))
        return (int(m.group(1)), int(m.group(2))) if m and int(m.group(2)) > 0 else None

    #  Kill the target midway: once the source streams records to it.
    for attempt in range(3):
        assert move(source, sid, src, dst) is True
        seen = []
        wait_for(lambda: seen.append(streaming()) or seen[-1] is not None, MOVE_TIMEOUT,
                 "the transfer to stream records or end")
        progress = seen[-1]
        if progress:
            break
        #  It finished before it was seen streaming: move it back, again.
        print(f"attempt {attempt}: the move finished before it was seen streaming", flush=True)
        wait_settled(c.nodes)
        assert move(target, sid, dst, src) is True
        assert wait_settled(c.nodes)[sid] == src
    assert progress, "every move finished before it was seen streaming"
    target.crash()
    print(f"killed the target at {progress[0]}/{progress[1]} records", flush=True)
    #  The source notices, aborts; every live peer shows the old placement.
    after = wait_settled(live, "the transfer to the killed node to be aborted")
    assert after == owned, (after, owned)
    info = cluster_info(source)
    assert {(s["shard_id"], s["state"]) for s in info["local_shards"]} >= {(sid, "Active")}
    assert all(s["peer_id"] != dst for s in info["remote_shards"]), info
    #  The source serves the shard and the collection is whole without the
    #  dead node (it held nothing but the copy).
    check_whole(live, data, scroll_through=source)
    check_searches(live, data, "after-kill", rounds=1)
    #  Back up, the node drops its leftover copy and serves again.
    target.restart()
    c.wait_agree()
    wait_for(lambda: not shard_dirs(target), what="the killed node's partial copy to go")
    assert wait_settled(c.nodes) == owned
    assert count(target) == len(data.vectors)


@test
def test_move_script_and_rebalance_script_even_out_the_shards():
    c, data = cluster()
    by_id = nodes_and_ids(c)
    url = f"http://127.0.0.1:{c.nodes[0].http_port}"
    owned = wait_settled(c.nodes)
    load = per_peer(owned, by_id)
    #  Pile shards on one peer: the script moves one from the peer holding
    #  fewest (but some) to the one holding most, and waits for it.
    pile = max(load, key=lambda p: (len(load[p]), p))
    donor = min((p for p in load if load[p] and p != pile), key=lambda p: (len(load[p]), p))
    sid = load[donor][0]
    code, out, err = run_tool("shoal-move-shard", "--url", url, "--interval", "0.2",
                              NAME, sid, pile)
    assert code == 0, (code, out, err)
    assert f"is on peer {pile}" in out, out
    #  Done when the script returns: no waiting here.
    owned = settled(c.nodes)
    assert owned and owned[sid] == pile, owned
    wait_for(lambda: sid not in shard_dirs(by_id[donor]), what="the moved copy's files to go")
    load = per_peer(owned, by_id)
    assert max(map(len, load.values())) - min(map(len, load.values())) >= 2, load

    #  --dry-run prints a plan and changes nothing.
    code, out, err = run_tool("shoal-rebalance", "--url", url, "--dry-run")
    assert code == 0, (code, out, err)
    planned = re.findall(r"move shard (\d+) of (\S+) from peer (\d+) to peer (\d+)", out)
    assert planned and f"plan: {len(planned)} move(s)" in out, out
    assert all(n == NAME and int(f) == pile for _, n, f, _ in planned), planned
    assert settled(c.nodes) == owned
    #  Applied: every peer ends within one shard of the others.
    code, out, err = run_tool("shoal-rebalance", "--url", url, "--interval", "0.2")
    assert code == 0, (code, out, err)
    assert out.count("is on peer") == len(planned), out
    final = wait_settled(c.nodes)
    sizes = [len(v) for v in per_peer(final, by_id).values()]
    assert max(sizes) - min(sizes) <= 1, final
    for s, _, f, t in planned:
        assert final[int(s)] == int(t), (final, planned)
    #  Nothing to do the second time.
    code, out, err = run_tool("shoal-rebalance", "--url", url)
    assert code == 0 and "plan: 0 move(s)" in out, (code, out, err)
    #  Each peer's files follow the placement; no point was lost.
    for p, node in by_id.items():
        mine = {s for s, q in final.items() if q == p}
        wait_for(lambda: shard_dirs(node) == mine, what=f"peer {p}'s shard dirs to be {mine}")
    check_whole(c.nodes, data, scroll_through=c.nodes[1])
    check_searches(c.nodes, data, "after-rebalance", rounds=1)


@test
def test_scale_down_removing_a_peer_is_refused_until_its_shards_are_moved_off():
    c, data = cluster()
    by_id = nodes_and_ids(c)
    owned = wait_settled(c.nodes)
    load = per_peer(owned, by_id)
    gone = c.nodes[-1]
    if not load[gone.peer_id()]:
        #  Run alone: give it a shard first.
        sid = sorted(owned)[0]
        code, _, err = run_tool("shoal-move-shard", "--url",
                                f"http://127.0.0.1:{gone.http_port}", NAME, sid,
                                gone.peer_id())
        assert code == 0, err
        owned = wait_settled(c.nodes)
        load = per_peer(owned, by_id)
    stay = [n for n in c.nodes if n is not gone]
    a = stay[0]
    status, reply = a.request("DELETE", f"/cluster/peer/{gone.peer_id()}")
    assert status == 400 and "shards on it" in reply["status"]["error"], (status, reply)
    assert str(gone.peer_id()) in a.cluster()["peers"]
    #  Move its shards to the peers left, fewest first.
    for sid in load[gone.peer_id()]:
        counts = per_peer(wait_settled(c.nodes), [n.peer_id() for n in stay])
        to = min((p for p in counts if p != gone.peer_id()), key=lambda p: (len(counts[p]), p))
        code, out, err = run_tool("shoal-move-shard", "--url", f"http://127.0.0.1:{a.http_port}",
                                  "--interval", "0.2", NAME, sid, gone.peer_id(), to)
        assert code == 0, (code, out, err)
    owned = wait_settled(c.nodes)
    assert gone.peer_id() not in owned.values(), owned
    sizes = [len(v) for v in per_peer(owned, [n.peer_id() for n in stay]).values()]
    assert max(sizes) - min(sizes) <= 1, owned
    assert ok(a, "DELETE", f"/cluster/peer/{gone.peer_id()}?timeout=60") is True
    c.wait_agree(nodes=stay, members=stay)
    check_whole(stay, data, scroll_through=stay[-1])
    check_searches(stay, data, "after-scale-down", rounds=1)


if __name__ == "__main__":
    harness.main(shared=cluster)
