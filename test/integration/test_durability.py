#!/usr/bin/env python3
"""test_durability: what a write acknowledged with wait=true promises. 5,000
points on 3 shards survive a kill -9 of every shard actor, a kill -9 of the
whole node (supervisor and every actor) and a SIGTERM, each followed by a
restart on the same storage; so do deletes and payload updates made just
before, collection metadata (config, aliases), and a collection deleted
before a restart stays deleted.

The suite keeps a model of what the node must hold (ids, vectors, payloads)
and after every restart compares all ids and payloads (a full scroll) and the
vectors of a sample with it."""
import os
import random
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test, wait_for  # noqa: E402

N_POINTS = 5000
BATCH = 500
DIM = 8
NAME = "durable"

_state = {}


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def ok(n, method, path, body=None):
    status, answer = n.request(method, path, body, timeout=60)
    assert status == 200, (method, path, status, answer)
    assert answer["status"] == "ok", answer
    return answer["result"]


def try_count(n, name=NAME):
    status, answer = n.try_request("POST", f"/collections/{name}/points/count",
                                   {"exact": True}, timeout=5)
    return answer["result"]["count"] if status == 200 else None


def completed(result):
    assert result["status"] == "completed", result
    return result


def state():
    """The shared node and the model of what it holds, created on first use:
    5,000 points written with wait=true in batches."""
    if not _state or not _state["node"].running():
        if _state:
            _state["node"].stop()
        n = Node()
        rng = random.Random(2024)
        model = {}
        ok(n, "PUT", f"/collections/{NAME}",
           {"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 3})
        ids = rng.sample(range(1, 10 ** 6), N_POINTS)
        for start in range(0, N_POINTS, BATCH):
            points = []
            for pid in ids[start:start + BATCH]:
                vec = [f32(rng.uniform(-10, 10)) for _ in range(DIM)]
                payload = {"pid": pid, "bucket": pid % 10, "name": f"p{pid}",
                           "nested": {"x": [pid, -pid]}}
                model[pid] = (vec, payload)
                points.append({"id": pid, "vector": vec, "payload": payload})
            completed(ok(n, "PUT", f"/collections/{NAME}/points?wait=true", {"points": points}))
        _state.update(node=n, model=model, rng=rng, deleted=set())
    return _state


def scroll_payloads(n):
    """{id: payload} of every point, by a full scroll."""
    out, offset = {}, None
    while True:
        body = {"limit": 1000, "with_payload": True, "with_vector": False}
        if offset is not None:
            body["offset"] = offset
        page = ok(n, "POST", f"/collections/{NAME}/points/scroll", body)
        for p in page["points"]:
            assert p["id"] not in out, p["id"]
            out[p["id"]] = p["payload"]
        offset = page["next_page_offset"]
        if offset is None:
            return out


def verify(s, sample=300):
    """The node holds exactly the model: count, every id and payload, and the
    vectors of a sample; deleted ids are gone."""
    n, model = s["node"], s["model"]
    wait_for(lambda: try_count(n) == len(model),
             what=f"count {len(model)} (last: {try_count(n)})")
    payloads = scroll_payloads(n)
    assert sorted(payloads) == sorted(model), "the same ids"
    bad = [pid for pid in model if payloads[pid] != model[pid][1]]
    assert not bad, [(pid, payloads[pid], model[pid][1]) for pid in bad[:3]]
    ids = s["rng"].sample(sorted(model), min(sample, len(model)))
    got = ok(n, "POST", f"/collections/{NAME}/points",
             {"ids": ids, "with_payload": True, "with_vector": True})
    assert sorted(r["id"] for r in got) == sorted(ids)
    for r in got:
        #  Vectors are float32: the node prints the shortest text of each.
        assert [f32(x) for x in r["vector"]] == model[r["id"]][0], (r, model[r["id"]])
        assert r["payload"] == model[r["id"]][1], (r, model[r["id"]])
    if s["deleted"]:
        gone = sorted(s["deleted"])[:200]
        assert ok(n, "POST", f"/collections/{NAME}/points", {"ids": gone}) == []


def mutate(s, tag):
    """Deletes (by ids and by filter) and payload updates, all wait=true,
    recorded in the model."""
    n, model, rng = s["node"], s["model"], s["rng"]
    victims = rng.sample(sorted(model), 100)
    completed(ok(n, "POST", f"/collections/{NAME}/points/delete?wait=true",
                 {"points": victims}))
    for pid in victims:
        del model[pid]
        s["deleted"].add(pid)
    #  Delete a slice by filter: bucket == b and pid below a bound.
    bucket, bound = rng.randrange(10), rng.randrange(10 ** 5, 2 * 10 ** 5)
    completed(ok(n, "POST", f"/collections/{NAME}/points/delete?wait=true", {"filter": {
        "must": [{"key": "bucket", "match": {"value": bucket}},
                 {"key": "pid", "range": {"lt": bound}}]}}))
    for pid in [p for p, (_, pl) in model.items()
                if pl.get("bucket") == bucket and pl.get("pid", bound) < bound]:
        del model[pid]
        s["deleted"].add(pid)
    changed = rng.sample(sorted(model), 200)
    completed(ok(n, "POST", f"/collections/{NAME}/points/payload?wait=true",
                 {"payload": {"tag": tag, "nested": {"y": tag}}, "points": changed}))
    for pid in changed:
        vec, payload = model[pid]
        model[pid] = (vec, dict(payload, tag=tag, nested={"y": tag}))
    overwritten = rng.sample(sorted(model), 50)
    completed(ok(n, "PUT", f"/collections/{NAME}/points/payload?wait=true",
                 {"payload": {"only": tag}, "points": overwritten}))
    for pid in overwritten:
        model[pid] = (model[pid][0], {"only": tag})
    fresh = rng.sample(range(2 * 10 ** 6, 3 * 10 ** 6), 100)
    points = []
    for pid in fresh:
        vec = [f32(rng.uniform(-1, 1)) for _ in range(DIM)]
        model[pid] = (vec, {"fresh": tag})
        s["deleted"].discard(pid)
        points.append({"id": pid, "vector": vec, "payload": {"fresh": tag}})
    completed(ok(n, "PUT", f"/collections/{NAME}/points?wait=true", {"points": points}))


def kill_everything(n):
    """kill -9 of the supervisor, then of any process of the node left."""
    n.kill(signal.SIGKILL)
    n.wait_exit()
    for pid in n.all_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: n.all_pids() == [], what="every process of the node to be gone")


@test
def test_points_written_with_wait_survive_kill_9_of_every_shard_actor():
    s = state()
    n = s["node"]
    verify(s, sample=100)
    old = n.actors("shard")
    assert len(old) == 3, n.children()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(n.actors("shard")) == 3 and not set(n.actors("shard")) & set(old),
             what="three new shard actors")
    verify(s)


@test
def test_kill_9_of_the_whole_node_keeps_points_deletes_and_payload_updates():
    s = state()
    n = s["node"]
    mutate(s, "before-kill")
    kill_everything(n)
    n.start()
    verify(s)


@test
def test_sigterm_and_restart_keeps_everything():
    s = state()
    n = s["node"]
    mutate(s, "before-term")
    n.kill(signal.SIGTERM)
    assert n.wait_exit() == 0
    wait_for(lambda: n.all_pids() == [], what="every actor to exit")
    n.start()
    verify(s)


@test
def test_collection_metadata_and_deletes_survive_restarts():
    s = state()
    n = s["node"]
    ok(n, "PUT", "/collections/meta_keep", {
        "vectors": {"a": {"size": 3, "distance": "Cosine"}, "b": {"size": 5, "distance": "Euclid"}},
        "sparse_vectors": {"s": {}}, "shard_number": 2, "replication_factor": 1,
        "write_consistency_factor": 1})
    assert ok(n, "PATCH", "/collections/meta_keep",
              {"optimizers_config": {"indexing_threshold": 4321}, "hnsw_config": {"m": 24}})
    ok(n, "POST", "/collections/aliases", {"actions": [
        {"create_alias": {"collection_name": "meta_keep", "alias_name": "keep_alias"}}]})
    ok(n, "PUT", "/collections/meta_keep/points?wait=true", {"points": [
        {"id": 1, "vector": {"a": [1.0, 0.0, 0.0], "s": {"indices": [4], "values": [2.0]}},
         "payload": {"k": "v"}}]})
    ok(n, "PUT", "/collections/meta_gone", {"vectors": {"size": 2, "distance": "Dot"}})
    ok(n, "PUT", "/collections/meta_gone/points?wait=true",
       {"points": [{"id": 1, "vector": [1.0, 1.0]}]})
    before = ok(n, "GET", "/collections/meta_keep")["config"]
    assert ok(n, "DELETE", "/collections/meta_gone") is True

    for how in ("kill", "term"):
        if how == "kill":
            kill_everything(n)
        else:
            n.kill(signal.SIGTERM)
            assert n.wait_exit() == 0
        n.start()
        names = sorted(c["name"] for c in ok(n, "GET", "/collections")["collections"])
        assert names == sorted([NAME, "meta_keep"]), (how, names)
        after = ok(n, "GET", "/collections/meta_keep")["config"]
        assert after["params"] == before["params"], (how, before["params"], after["params"])
        assert after["hnsw_config"]["m"] == 24, (how, after)
        assert after["optimizer_config"]["indexing_threshold"] == 4321, (how, after)
        aliases = ok(n, "GET", "/aliases")["aliases"]
        assert aliases == [{"alias_name": "keep_alias", "collection_name": "meta_keep"}], aliases
        assert ok(n, "GET", "/collections/meta_gone/exists") == {"exists": False}
        status, _ = n.request("GET", "/collections/meta_gone")
        assert status == 404, (how, status)
        wait_for(lambda: try_count(n, "keep_alias") == 1, what="the point behind the alias")
        [record] = ok(n, "POST", "/collections/keep_alias/points",
                      {"ids": [1], "with_vector": True})
        assert record["payload"] == {"k": "v"}, record
        assert record["vector"] == {"a": [1.0, 0.0, 0.0],
                                    "s": {"indices": [4], "values": [2.0]}}, record
        verify(s, sample=50)
    #  The name of a deleted collection is free, with nothing of the old one.
    ok(n, "PUT", "/collections/meta_gone", {"vectors": {"size": 2, "distance": "Dot"}})
    assert try_count(n, "meta_gone") == 0


if __name__ == "__main__":
    harness.main(shared=state)
