#!/usr/bin/env python3
"""test_index: the HNSW index and the payload indexes behind search, seen
through REST.

A collection with a low optimizers_config.indexing_threshold builds its
graph within the test: status is yellow while points wait to be indexed and
green once indexed_vectors_count equals the points. Search recall@10 against
a brute force computed here is >= 0.95 with default params and exactly 1.0
with params.exact; hnsw_ef is accepted. While the graph is being built, a
point written a moment ago is found (the exact scan covers what the graph
lacks), and deleted or updated points never show up stale. A restart after
SIGTERM and after kill -9 loads the saved graph (the shard's log says so;
it does not say it builds one) and answers stay right. Payload indexes of
every type, created over REST, keep filtered search equal to a brute force
at 50%, 10% and 1% selectivity (exactly where the planner scans: exact=true
and filters below the full scan threshold; recall >= 0.95 through the
graph), and count and scroll with filters agree, also after payload
updates, deletes by filter, an index dropped, and a restart.

Standard library only; waiting is polling with a deadline (wait_for).
"""
import math
import os
import random
import re
import signal
import struct
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test, wait_for  # noqa: E402

DIM = 24
N_POINTS = 6000
BATCH = 1500
NAME = "indexed"
#  KB of vectors: 6,000 x 24 floats are 562 KB, so the graph is built once
#  about 1,000 points are in; the full scan threshold (10 KB, the smallest
#  the API takes) is ~100 points, so searches go through the graph.
INDEXING_KB = 100
FULL_SCAN_KB = 10
N_QUERIES = 40
TOL = 1e-4

_state = {}


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def ok(n, method, path, body=None):
    status, answer = n.request(method, path, body, timeout=60)
    assert status == 200, (method, path, status, answer)
    assert answer["status"] == "ok", answer
    return answer["result"]


def l2(a, b):
    return math.sqrt(sum((x - y) * (x - y) for x, y in zip(a, b)))


def rand_vec(rng):
    return [f32(rng.uniform(-1.0, 1.0)) for _ in range(DIM)]


def brute(model, q, k, keep=None):
    """[(id, score)] of the k nearest points of model (Euclid)."""
    scored = [(l2(v, q), pid) for pid, (v, p) in model.items() if keep is None or keep(p)]
    scored.sort()
    return [(pid, s) for s, pid in scored[:k]]


def info(n, name=NAME):
    return ok(n, "GET", f"/collections/{name}")


def search(n, q, limit=10, params=None, flt=None, name=NAME):
    body = {"vector": q, "limit": limit, "with_payload": False}
    if params is not None:
        body["params"] = params
    if flt is not None:
        body["filter"] = flt
    return ok(n, "POST", f"/collections/{name}/points/search", body)


def recall(n, model, queries, params=None):
    found = total = 0
    for q in queries:
        want = {pid for pid, _ in brute(model, q, 10)}
        got = [h["id"] for h in search(n, q, 10, params)]
        assert len(got) == len(set(got)), got
        found += len(want & set(got))
        total += len(want)
    return found / total


def shard_log(n):
    with open(n.log_path, errors="replace") as f:
        return [line for line in f if " shard:" in line]


def upload(n, model, ids, rng, name=NAME):
    points = []
    for pid in ids:
        v = rand_vec(rng)
        p = {"n": pid, "g": pid % 10}
        model[pid] = (v, p)
        points.append({"id": pid, "vector": v, "payload": p})
    return ok(n, "PUT", f"/collections/{name}/points?wait=true", {"points": points})


def state():
    """The shared node: the collection filled in batches, the statuses seen
    right after each batch, and the model of its points."""
    if _state and _state["node"].running():
        return _state
    if _state:
        _state["node"].stop()
        _state.clear()
    n = Node()
    rng = random.Random(7)
    ok(n, "PUT", f"/collections/{NAME}", {
        "vectors": {"size": DIM, "distance": "Euclid"}, "shard_number": 1,
        "optimizers_config": {"indexing_threshold": INDEXING_KB},
        #  Default max_indexing_threads (one per core): a point searched
        #  for with its own vector must be found in a graph built by
        #  several threads too.
        "hnsw_config": {"full_scan_threshold": FULL_SCAN_KB, "m": 16,
                        "ef_construct": 100}})
    model = {}
    seen = []
    for start in range(0, N_POINTS, BATCH):
        upload(n, model, range(start, start + BATCH), rng)
        got = info(n)
        seen.append((got["status"], got["indexed_vectors_count"], got["points_count"]))
    _state.update(node=n, model=model, rng=rng, seen=seen,
                  queries=[rand_vec(rng) for _ in range(N_QUERIES)])
    return _state


def wait_green(n, count, name=NAME):
    def green():
        got = info(n, name)
        return got["status"] == "green" and got["indexed_vectors_count"] == count and got
    return wait_for(green, what=f"{name} green with {count} indexed vectors")


@test
def test_status_goes_yellow_then_green_with_every_vector_indexed():
    s = state()
    n = s["node"]
    #  Right after a batch the new points cannot all be indexed yet; the
    #  first batch is below the threshold (nothing to index: green).
    for status, indexed, points in s["seen"]:
        assert status in ("yellow", "green"), s["seen"]
        if status == "green" and points * DIM * 4 >= INDEXING_KB * 1024:
            assert indexed == points, s["seen"]
        if status == "yellow":
            assert indexed < points, s["seen"]
    assert any(st == "yellow" for st, _, _ in s["seen"]), s["seen"]
    got = wait_green(n, N_POINTS)
    assert got["points_count"] == N_POINTS, got
    assert any("vindex: the graph of vector" in line and "is built" in line
               for line in shard_log(n)), "no build in the shard's log"


@test
def test_recall_at_10_against_brute_force():
    s = state()
    n = s["node"]
    wait_green(n, len(s["model"]))
    default = recall(n, s["model"], s["queries"])
    assert default >= 0.95, default
    exact = recall(n, s["model"], s["queries"], {"exact": True})
    assert exact == 1.0, exact
    wide = recall(n, s["model"], s["queries"], {"hnsw_ef": 256})
    assert wide >= 0.95, wide
    #  Scores are the exact ones, whichever way a hit was found.
    for q in s["queries"][:10]:
        for h in search(n, q, 10):
            assert abs(h["score"] - l2(s["model"][h["id"]][0], q)) <= TOL, h
    status, answer = n.request("POST", f"/collections/{NAME}/points/search",
                               {"vector": s["queries"][0], "limit": 3,
                                "params": {"hnsw_ef": 0}})
    assert status in (400, 422), (status, answer)


@test
def test_points_written_during_a_build_are_found_and_stale_ones_never():
    s = state()
    n = s["node"]
    model, rng = s["model"], s["rng"]
    #  Force a fresh build: a new m drops the graph, the optimizer rebuilds.
    ok(n, "PATCH", f"/collections/{NAME}", {"hnsw_config": {"m": 12}})
    #  New points, each searched for at once with its own vector; updates
    #  that move points far away; deletes of points that were nearest.
    base = 100000
    for i in range(30):
        pid = base + i
        upload(n, model, [pid], rng)
        v = model[pid][0]
        hits = search(n, v, 5)
        assert hits and hits[0]["id"] == pid and hits[0]["score"] <= TOL, (pid, hits[:2])
        near = [h["id"] for h in hits[1:3]]
        ok(n, "POST", f"/collections/{NAME}/points/delete?wait=true", {"points": near[:1]})
        for pid_gone in near[:1]:
            model.pop(pid_gone, None)
        far = [10.0 + x for x in v]
        moved = near[1]
        ok(n, "PUT", f"/collections/{NAME}/points?wait=true",
           {"points": [{"id": moved, "vector": far, "payload": model[moved][1]}]})
        model[moved] = ([f32(x) for x in far], model[moved][1])
        for h in search(n, v, 10):
            assert h["id"] in model, f"deleted point {h['id']} answered"
            assert abs(h["score"] - l2(model[h["id"]][0], v)) <= TOL, (h, "stale vector")
    wait_green(n, len(model))
    assert recall(n, model, s["queries"]) >= 0.95


def restart_and_check(n, s, how):
    before = len(shard_log(n))
    if how == "term":
        n.kill(signal.SIGTERM)
        assert n.wait_exit() == 0
    else:
        n.kill(signal.SIGKILL)
        n.wait_exit()
        for pid in n.all_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait_for(lambda: n.all_pids() == [], what="every process of the node to be gone")
    n.start()
    wait_green(n, len(s["model"]))
    after = shard_log(n)[before:]
    loaded = [line for line in after if "vindex: loaded the graph" in line]
    assert loaded, "the graph was not loaded:\n" + "".join(after[-20:])
    assert not any("vindex: building the graph" in line for line in after), \
        "the graph was rebuilt:\n" + "".join(after[-20:])
    assert recall(n, s["model"], s["queries"]) >= 0.95
    assert recall(n, s["model"], s["queries"], {"exact": True}) == 1.0
    return loaded[0]


@test
def test_sigterm_restart_loads_the_saved_graph():
    s = state()
    n = s["node"]
    wait_green(n, len(s["model"]))
    line = restart_and_check(n, s, "term")
    #  A clean stop saved everything: nothing to re-index.
    assert re.search(r" 0 to re-index", line), line


@test
def test_kill_9_restart_loads_the_graph_and_reindexes_what_came_after():
    s = state()
    n = s["node"]
    model, rng = s["model"], s["rng"]
    wait_green(n, len(model))
    #  The save after the build covers everything so far (wait for it),
    #  then writes the save does not cover: a kill -9 loses no write but
    #  the graph file is older than them.
    wait_for(lambda: any("vindex: saved" in line for line in shard_log(n)),
             what="a graph save")
    saves = len([line for line in shard_log(n) if "vindex: saved" in line])
    changed = list(model)[:50]
    upload(n, model, changed, rng)
    gone = list(model)[50:80]
    ok(n, "POST", f"/collections/{NAME}/points/delete?wait=true", {"points": gone})
    for pid in gone:
        del model[pid]
    still = len([line for line in shard_log(n) if "vindex: saved" in line])
    line = restart_and_check(n, s, "kill")
    if still == saves:
        #  No periodic save came in between: the writes are re-indexed.
        m = re.search(r"(\d+) to re-index, (\d+) deleted since", line)
        assert m and int(m.group(1)) >= 1, line
    for q in s["queries"][:10]:
        for h in search(n, q, 10):
            assert h["id"] in model, f"deleted point {h['id']} answered"


FNAME = "filtered"
F_POINTS = 6000
F_DIM = 16
BUCKET_UUIDS = [str(uuid.UUID(int=(b + 1) * 7919)) for b in range(100)]


def day(b):
    return f"2024-01-{1 + b % 28:02d}T{(b // 28) % 24:02d}:00:00Z"


def f_payload(pid):
    b = pid % 100
    return {"kw": "even" if pid % 2 == 0 else "odd", "num": b, "fl": b / 10.0,
            "flag": pid % 2 == 1, "u": BUCKET_UUIDS[b], "ts": day(b)}


#  (filter, test on a payload, share of points it keeps)
F_FILTERS = [
    ({"must": [{"key": "kw", "match": {"value": "even"}}]},
     lambda p: p.get("kw") == "even", "50%"),
    ({"must": [{"key": "flag", "match": {"value": True}}]},
     lambda p: p.get("flag") is True, "50% bool"),
    ({"must": [{"key": "num", "range": {"gte": 0, "lt": 10}}]},
     lambda p: 0 <= p.get("num", -1) < 10, "10%"),
    ({"must": [{"key": "fl", "range": {"gte": 5.0, "lt": 6.0}}]},
     lambda p: 5.0 <= p.get("fl", -1) < 6.0, "10% float"),
    ({"must": [{"key": "u", "match": {"value": BUCKET_UUIDS[42]}}]},
     lambda p: p.get("u") == BUCKET_UUIDS[42], "1% uuid"),
    ({"must": [{"key": "ts", "range": {"gte": day(42), "lt": "2024-01-15T02:00:00Z"}}]},
     lambda p: p.get("ts") == day(42), "1% datetime"),
    ({"must": [{"key": "num", "match": {"value": 7}}],
      "must_not": [{"key": "kw", "match": {"value": "even"}}]},
     lambda p: p.get("num") == 7 and p.get("kw") != "even", "1% combined"),
]
F_TYPES = {"kw": "keyword", "num": "integer", "fl": "float", "flag": "bool", "u": "uuid",
           "ts": "datetime"}

_fstate = {}


def fstate():
    """A second collection with a payload index of every type."""
    s = state()
    if _fstate.get("node") is s["node"]:
        return _fstate
    n = s["node"]
    rng = random.Random(11)
    ok(n, "PUT", f"/collections/{FNAME}", {
        "vectors": {"size": F_DIM, "distance": "Cosine"}, "shard_number": 1,
        "optimizers_config": {"indexing_threshold": INDEXING_KB},
        "hnsw_config": {"full_scan_threshold": FULL_SCAN_KB}})
    for field, kind in F_TYPES.items():
        result = ok(n, "PUT", f"/collections/{FNAME}/index?wait=true",
                    {"field_name": field, "field_schema": kind})
        assert result["status"] == "completed", result
    model = {}
    for start in range(0, F_POINTS, BATCH):
        points = []
        for pid in range(start, start + BATCH):
            v = [f32(rng.uniform(-1, 1)) for _ in range(F_DIM)]
            model[pid] = (v, f_payload(pid))
            points.append({"id": pid, "vector": v, "payload": model[pid][1]})
        ok(n, "PUT", f"/collections/{FNAME}/points?wait=true", {"points": points})
    _fstate.update(node=n, model=model, rng=rng,
                   queries=[[f32(rng.uniform(-1, 1)) for _ in range(F_DIM)]
                            for _ in range(15)])
    return _fstate


def cosine(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na and nb else 0.0


def f_brute(model, q, k, keep):
    scored = [(-cosine(v, q), pid) for pid, (v, p) in model.items() if keep(p)]
    scored.sort()
    return [pid for _, pid in scored[:k]]


def f_check(n, model, queries, exact_share):
    """Filtered search against the brute force: exactly equal (ids) where the
    planner scans (exact=true, and the 1% filters, below the full scan
    threshold), recall >= 0.95 through the graph. count and a scroll over
    every page agree with the brute force too."""
    for flt, keep, share in F_FILTERS:
        found = total = 0
        for q in queries:
            want = f_brute(model, q, 10, keep)
            body = {"vector": q, "limit": 10, "filter": flt}
            got = [h["id"] for h in ok(n, "POST", f"/collections/{FNAME}/points/search", body)]
            assert all(keep(model[pid][1]) for pid in got), (share, got)
            assert len(got) == len(want), (share, got, want)
            found += len(set(got) & set(want))
            total += len(want)
            body["params"] = {"exact": True}
            exact = [h["id"] for h in
                     ok(n, "POST", f"/collections/{FNAME}/points/search", body)]
            assert exact == want, (share, exact, want)
            if share.startswith("1%") and exact_share:
                assert got == want, (share, got, want)
        assert found / total >= 0.95, (share, found / total)
        matching = {pid for pid, (v, p) in model.items() if keep(p)}
        count = ok(n, "POST", f"/collections/{FNAME}/points/count",
                   {"filter": flt, "exact": True})["count"]
        assert count == len(matching), (share, count, len(matching))
        seen, offset = [], None
        while True:
            body = {"filter": flt, "limit": 250, "with_payload": False}
            if offset is not None:
                body["offset"] = offset
            page = ok(n, "POST", f"/collections/{FNAME}/points/scroll", body)
            seen += [p["id"] for p in page["points"]]
            offset = page["next_page_offset"]
            if offset is None:
                break
        assert seen == sorted(matching), (share, len(seen), len(matching))


@test
def test_payload_indexes_of_every_type_are_shown_with_their_points():
    f = fstate()
    n = f["node"]
    schema = info(n, FNAME)["payload_schema"]
    assert set(schema) == set(F_TYPES), schema
    for field, kind in F_TYPES.items():
        assert schema[field]["data_type"] == kind, schema
        assert schema[field]["points"] == F_POINTS, (field, schema[field])


@test
def test_filtered_search_count_and_scroll_equal_brute_force_at_50_10_and_1_percent():
    f = fstate()
    n = f["node"]
    wait_green(n, len(f["model"]), FNAME)
    f_check(n, f["model"], f["queries"], True)


@test
def test_payload_changes_and_index_drops_keep_filters_right():
    f = fstate()
    n, model = f["node"], f["model"]
    #  Payload updates of every kind move points between index values.
    moved = list(range(0, 600, 3))
    ok(n, "POST", f"/collections/{FNAME}/points/payload?wait=true",
       {"payload": {"kw": "odd", "num": 42, "u": BUCKET_UUIDS[42]}, "points": moved})
    for pid in moved:
        model[pid][1].update({"kw": "odd", "num": 42, "u": BUCKET_UUIDS[42]})
    cleared = list(range(1, 300, 5))
    ok(n, "POST", f"/collections/{FNAME}/points/payload/clear?wait=true", {"points": cleared})
    for pid in cleared:
        model[pid] = (model[pid][0], {})
    gone = list(range(2, 300, 7))
    ok(n, "POST", f"/collections/{FNAME}/points/delete?wait=true", {"points": gone})
    for pid in gone:
        model.pop(pid, None)
    #  Delete by a filter the indexes answer.
    flt = {"must": [{"key": "num", "match": {"value": 99}}]}
    ok(n, "POST", f"/collections/{FNAME}/points/delete?wait=true", {"filter": flt})
    for pid in [pid for pid, (v, p) in model.items() if p.get("num") == 99]:
        del model[pid]
    f_check(n, model, f["queries"], False)
    #  Dropping an index: filters on the field are still answered, by a scan.
    ok(n, "DELETE", f"/collections/{FNAME}/index/u?wait=true")
    schema = info(n, FNAME)["payload_schema"]
    assert "u" not in schema and "kw" in schema, schema
    assert schema["kw"]["points"] == len([p for v, p in model.values() if "kw" in p]), schema
    f_check(n, model, f["queries"], False)


@test
def test_payload_indexes_come_back_after_a_restart():
    f = fstate()
    n, model = f["node"], f["model"]
    before = len(shard_log(n))
    n.kill(signal.SIGTERM)
    assert n.wait_exit() == 0
    wait_for(lambda: n.all_pids() == [], what="every process of the node to be gone")
    n.start()
    wait_green(n, len(model), FNAME)
    after = "".join(shard_log(n)[before:])
    assert "built the payload index of \"kw\"" in after, after[-2000:]
    schema = info(n, FNAME)["payload_schema"]
    assert schema["num"]["points"] == len([p for v, p in model.values() if "num" in p]), schema
    f_check(n, model, f["queries"], False)


B_NAME = "bigpayload"
B_POINTS = 40000
B_DIM = 4


@test
def test_a_new_payload_index_builds_beside_reads_and_writes():
    """PUT /index over a shard that already holds many points: with wait=true
    the answer comes once it is built; with wait=false the field is
    shown at once, and while the optimizer fills the index off the main
    thread, upserts and filtered counts and searches keep being answered,
    right (by a scan until the index is published). Then the shard says the
    index is in use and its points count is every point with a value."""
    n = state()["node"]
    rng = random.Random(23)
    ok(n, "PUT", f"/collections/{B_NAME}", {
        "vectors": {"size": B_DIM, "distance": "Euclid"}, "shard_number": 1,
        "optimizers_config": {"indexing_threshold": 0}})
    model = {}

    def payload(pid, r):
        #  Several keywords a point (more for the build to do), one of 8
        #  "main" tags that the filters ask for.
        return {"tags": [f"m{(pid + r) % 8}"] + [f"x{(pid * 7 + i + r) % 997}"
                                                  for i in range(15)], "r": r}

    for start in range(0, B_POINTS, 4000):
        points = []
        for pid in range(start, start + 4000):
            v = [f32(rng.uniform(-1, 1)) for _ in range(B_DIM)]
            model[pid] = (v, payload(pid, 0))
            points.append({"id": pid, "vector": v, "payload": model[pid][1]})
        ok(n, "PUT", f"/collections/{B_NAME}/points?wait=true", {"points": points})
    #  wait=true answers once the index is built, as Qdrant's does: its
    #  points are all there at once.
    result = ok(n, "PUT", f"/collections/{B_NAME}/index?wait=true",
                {"field_name": "r", "field_schema": "integer"})
    assert result["status"] == "completed", result
    schema = info(n, B_NAME)["payload_schema"]
    assert schema["r"]["points"] == B_POINTS, schema
    #  wait=false answers at once: the build goes on beside what follows.
    before = len(shard_log(n))
    result = ok(n, "PUT", f"/collections/{B_NAME}/index?wait=false",
                {"field_name": "tags", "field_schema": "keyword"})
    assert result["status"] == "acknowledged", result
    schema = info(n, B_NAME)["payload_schema"]
    assert schema["tags"]["data_type"] == "keyword", schema
    assert 0 <= schema["tags"]["points"] <= B_POINTS, schema

    def in_use():
        return any("payload index(es) built and in use" in line
                   for line in shard_log(n)[before:])

    flt = {"must": [{"key": "tags", "match": {"value": "m3"}}]}
    rounds = during = 0
    next_id = B_POINTS
    while rounds < 6 or not in_use():
        assert rounds < 2000, "the payload index was never published"
        building = not in_use()
        #  A write: retag some points, add one.
        r = rounds + 1
        points = []
        for pid in [rng.randrange(next_id) for _ in range(20)] + [next_id]:
            v = [f32(rng.uniform(-1, 1)) for _ in range(B_DIM)]
            model[pid] = (v, payload(pid, r))
            points.append({"id": pid, "vector": v, "payload": model[pid][1]})
        next_id += 1
        ok(n, "PUT", f"/collections/{B_NAME}/points?wait=true", {"points": points})
        #  Reads: a count and a search with the filter, against the model.
        keep = [pid for pid, (v, p) in model.items() if "m3" in p["tags"]]
        count = ok(n, "POST", f"/collections/{B_NAME}/points/count",
                   {"filter": flt, "exact": True})["count"]
        assert count == len(keep), (rounds, count, len(keep))
        q = [f32(rng.uniform(-1, 1)) for _ in range(B_DIM)]
        want = [pid for pid, _ in brute({pid: model[pid] for pid in keep}, q, 5)]
        got = [h["id"] for h in ok(n, "POST", f"/collections/{B_NAME}/points/search",
                                   {"vector": q, "limit": 5, "filter": flt})]
        assert got == want, (rounds, got, want)
        rounds += 1
        during += building
    after = "".join(shard_log(n)[before:])
    assert "building the payload index of \"tags\"" in after, after[-2000:]
    schema = info(n, B_NAME)["payload_schema"]
    assert schema["tags"]["points"] == len(model), (schema, len(model))
    print(f"    {rounds} rounds of writes and reads, {during} of them while it built")
    ok(n, "DELETE", f"/collections/{B_NAME}")


def main():
    harness.main(shared=state)


if __name__ == "__main__":
    main()
