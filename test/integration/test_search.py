#!/usr/bin/env python3
"""test_search: every search the node answers equals a brute-force top-k
computed here in Python over the same points.

For each distance (Cosine, Euclid, Dot, Manhattan) and 1 and 3 shards:
2,000 random 16-d points (integer and UUID ids, varied payloads), 30 random
queries through /points/search and /points/query, plain, with offset, with
score_threshold (>= for similarities, <= for distances, as Qdrant) and with
filters of every kind (must/should/must_not, match value/any/except, range,
is_empty, is_null, has_id, nested keys, values_count, nested filters),
checked against the brute force over the matching subset. Then batch search
and batch query, named vectors, sparse vectors (dot product over shared
indices, only points sharing one), payload and vector selection in results,
recommend with Qdrant's average_vector rule (avg_pos + avg_pos - avg_neg),
and query by point id. The referenced points are left out of recommend and
query-by-id results, as Qdrant does.

Ids must come in the brute force's order and scores within 1e-4; where
scores tie (within that tolerance) any order of the tied ids is accepted.
"""
import math
import os
import random
import struct
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test  # noqa: E402

DIM = 16
N_POINTS = 2000
N_UUIDS = 100               # of N_POINTS, the rest have integer ids
N_QUERIES = 30
TOL = 1e-4
DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
SHARDS = (1, 3)

_node = None
_data = {}                  # (distance, shards) -> Data of a filled collection
_named = {}                 # "points" -> the points of the "named" collection


def node():
    global _node
    if _node is None or not _node.running():
        _node = Node()
        _data.clear()
        _named.clear()
    return _node


def ok(n, method, path, body=None):
    status, answer = n.request(method, path, body, timeout=60)
    assert status == 200, (method, path, status, answer)
    assert answer["status"] == "ok", answer
    return answer["result"]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def rand_vec(rng, dim=DIM):
    return [f32(rng.uniform(-1.0, 1.0)) for _ in range(dim)]


def normalized(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else list(v)


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def higher_is_better(distance):
    return distance in ("Cosine", "Dot")


def score(distance, stored, query):
    """Qdrant's score of a stored vector (already normalized for Cosine)
    against a query vector."""
    if distance == "Cosine":
        return dot(stored, normalized(query))
    if distance == "Dot":
        return dot(stored, query)
    if distance == "Euclid":
        return math.sqrt(sum((x - y) * (x - y) for x, y in zip(stored, query)))
    return sum(abs(x - y) for x, y in zip(stored, query))


def rank(truth, distance):
    """[(id, score)] best first."""
    sign = -1.0 if higher_is_better(distance) else 1.0
    return sorted(truth.items(), key=lambda kv: sign * kv[1])


def check_hits(hits, ranked, truth, limit, offset=0, what=""):
    """hits equal ranked[offset:offset+limit] up to ties: same length, scores
    in the same order within TOL, each id a point of truth (the matching
    subset) scored as truth says, no id twice."""
    want = ranked[offset:offset + limit]
    got = [(h["id"], h["score"]) for h in hits]
    assert len(got) == len(want), (what, len(got), len(want), got[:5], want[:5])
    assert len({pid for pid, _ in got}) == len(got), (what, "duplicate ids", got)
    for i, ((pid, s), (wid, ws)) in enumerate(zip(got, want)):
        assert pid in truth, (what, i, f"{pid!r} is not a matching point", got[:i + 1])
        assert abs(s - ws) <= TOL, (what, i, f"score {s} != {ws} (id {pid} vs {wid})")
        assert abs(truth[pid] - s) <= TOL, (what, i, f"id {pid} has score {truth[pid]},"
                                            f" answered {s}")
    for h in hits:
        assert isinstance(h["version"], int), h


class Data:
    """The points of one collection as the test wrote them."""

    def __init__(self, name, distance, shards, seed):
        rng = random.Random(seed)
        self.name, self.distance, self.shards = name, distance, shards
        ints = rng.sample(range(1, 10 ** 9), N_POINTS - N_UUIDS)
        uuids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_UUIDS)]
        self.ids = ints + uuids
        rng.shuffle(self.ids)
        self.vectors = {pid: rand_vec(rng) for pid in self.ids}
        self.stored = {pid: normalized(v) if distance == "Cosine" else v
                       for pid, v in self.vectors.items()}
        self.payloads = {pid: random_payload(rng) for pid in self.ids}

    def truth(self, query, pred=None):
        return {pid: score(self.distance, v, query) for pid, v in self.stored.items()
                if pred is None or pred(pid, self.payloads[pid])}


def random_payload(rng):
    payload = {
        "cat": rng.choice(["red", "green", "blue", "black"]),
        "n": rng.randrange(100),
        "f": round(rng.random(), 3),
        "tags": rng.sample(["a", "b", "c", "d"], rng.randrange(4)),
        "a": {"b": rng.randrange(10)},
        "flag": rng.random() < 0.5,
    }
    r = rng.randrange(3)
    if r == 0:
        payload["maybe"] = None
    elif r == 1:
        payload["maybe"] = rng.randrange(5)
    return payload


def collection(distance, shards):
    """The Data of the (distance, shards) collection, created and filled on
    first use."""
    n = node()
    key = (distance, shards)
    if key not in _data:
        name = f"s_{distance.lower()}_{shards}"
        data = Data(name, distance, shards, seed=f"data-{distance}-{shards}")
        ok(n, "PUT", f"/collections/{name}",
           {"vectors": {"size": DIM, "distance": distance}, "shard_number": shards})
        for start in range(0, N_POINTS, 500):
            batch = data.ids[start:start + 500]
            result = ok(n, "PUT", f"/collections/{name}/points?wait=true", {"points": [
                {"id": pid, "vector": data.vectors[pid], "payload": data.payloads[pid]}
                for pid in batch]})
            assert result["status"] == "completed", result
        assert ok(n, "POST", f"/collections/{name}/points/count",
                  {"exact": True}) == {"count": N_POINTS}
        _data[key] = data
    return _data[key]


def filters(data):
    """[(Filter JSON, predicate(id, payload))]: every condition kind."""
    rng = random.Random(4242)
    some_ids = rng.sample(data.ids, 300)
    some = set(some_ids)
    return [
        ({"must": [{"key": "cat", "match": {"value": "red"}}]},
         lambda i, p: p["cat"] == "red"),
        ({"must": [{"key": "cat", "match": {"any": ["red", "blue"]}}],
          "must_not": [{"key": "n", "range": {"gte": 50}}]},
         lambda i, p: p["cat"] in ("red", "blue") and p["n"] < 50),
        ({"should": [{"key": "tags", "match": {"value": "a"}},
                     {"key": "a.b", "range": {"lt": 3}}]},
         lambda i, p: "a" in p["tags"] or p["a"]["b"] < 3),
        ({"must": [{"key": "cat", "match": {"except": ["red", "green"]}}]},
         lambda i, p: p["cat"] not in ("red", "green")),
        ({"must": [{"is_empty": {"key": "tags"}}]}, lambda i, p: p["tags"] == []),
        ({"must": [{"is_empty": {"key": "maybe"}}]}, lambda i, p: p.get("maybe") is None),
        ({"must": [{"is_null": {"key": "maybe"}}]},
         lambda i, p: "maybe" in p and p["maybe"] is None),
        ({"must": [{"has_id": some_ids}]}, lambda i, p: i in some),
        ({"must": [{"key": "tags", "values_count": {"gte": 2}}]},
         lambda i, p: len(p["tags"]) >= 2),
        ({"must": [{"key": "flag", "match": {"value": True}},
                   {"key": "f", "range": {"gt": 0.3, "lte": 0.7}}]},
         lambda i, p: p["flag"] and 0.3 < p["f"] <= 0.7),
        ({"must": [{"should": [{"key": "cat", "match": {"value": "red"}},
                               {"key": "cat", "match": {"value": "green"}}]},
                   {"must_not": [{"key": "a.b", "match": {"any": [1, 2, 3]}}]}]},
         lambda i, p: p["cat"] in ("red", "green") and p["a"]["b"] not in (1, 2, 3)),
        ({"must": [{"key": "tags", "match": {"any": ["c", "d"]}}],
          "must_not": [{"is_empty": {"key": "tags"}}]},
         lambda i, p: bool({"c", "d"} & set(p["tags"]))),
        ({"must": [{"key": "flag", "match": {"value": False}},
                   {"key": "maybe", "range": {"gte": 2}}]},
         lambda i, p: not p["flag"] and isinstance(p.get("maybe"), int) and p["maybe"] >= 2),
        ({"must": [{"key": "f", "range": {"lt": 0.02}}]}, lambda i, p: p["f"] < 0.02),
        ({"must_not": [{"has_id": some_ids}, {"key": "cat", "match": {"value": "black"}}]},
         lambda i, p: i not in some and p["cat"] != "black"),
        ({"must": [{"key": "a.b", "values_count": {"lt": 2}},
                   {"key": "n", "range": {"gte": 10, "lt": 20}}],
          "should": [{"key": "cat", "match": {"value": "blue"}},
                     {"key": "tags", "values_count": {"gt": 2}}]},
         lambda i, p: 10 <= p["n"] < 20 and (p["cat"] == "blue" or len(p["tags"]) > 2)),
    ]


def threshold_for(ranked, rng):
    """(k, threshold) such that exactly the k best pass: a threshold half way
    between two neighbouring scores that are clearly apart."""
    for _ in range(200):
        k = rng.randrange(1, 60)
        a, b = ranked[k - 1][1], ranked[k][1]
        if abs(a - b) > 4 * TOL:
            return k, (a + b) / 2
    raise AssertionError("no clear gap between scores")


def search(n, name, body):
    return ok(n, "POST", f"/collections/{name}/points/search", body)


def query(n, name, body):
    return ok(n, "POST", f"/collections/{name}/points/query", body)["points"]


def run_queries(distance, shards):
    n = node()
    data = collection(distance, shards)
    rng = random.Random(f"{distance}/{shards}")
    flts = filters(data)
    for qi in range(N_QUERIES):
        q = rand_vec(rng)
        truth = data.truth(q)
        ranked = rank(truth, distance)
        what = f"{data.name} query {qi}"
        hits = search(n, data.name, {"vector": q, "limit": 10})
        check_hits(hits, ranked, truth, 10, 0, what + " search")
        assert all(h.get("payload") is None and h.get("vector") is None for h in hits), hits[0]
        points = query(n, data.name, {"query": q, "limit": 10, "offset": 7})
        check_hits(points, ranked, truth, 10, 7, what + " query offset 7")
        #  Search params are accepted; exact or not, this many points are
        #  searched exactly (below Qdrant's default indexing threshold).
        params = {"hnsw_ef": 32 + qi, "exact": qi % 2 == 0}
        hits = search(n, data.name, {"vector": q, "limit": 5, "offset": 3, "params": params})
        check_hits(hits, ranked, truth, 5, 3, what + f" search offset 3 params {params}")

        fjson, pred = flts[(qi + shards) % len(flts)]
        sub = data.truth(q, pred)
        if qi % 2:
            got = search(n, data.name, {"vector": q, "filter": fjson, "limit": 15})
        else:
            got = query(n, data.name, {"query": {"nearest": q}, "filter": fjson, "limit": 15})
        check_hits(got, rank(sub, distance), sub, 15, 0, f"{what} filter {fjson}")

        k, threshold = threshold_for(ranked, rng)
        body = {"score_threshold": threshold, "limit": 100}
        if qi % 2:
            got = search(n, data.name, dict(body, vector=q))
        else:
            got = query(n, data.name, dict(body, query=q))
        check_hits(got, ranked, truth, k, 0, f"{what} score_threshold {threshold} (k={k})")


def make_query_test(distance, shards):
    def fn():
        run_queries(distance, shards)
    fn.__name__ = f"test_search_and_query_equal_brute_force_{distance.lower()}_{shards}_shards"
    return fn


for _distance in DISTANCES:
    for _shards in SHARDS:
        test(make_query_test(_distance, _shards))


@test
def test_search_batch_and_query_batch():
    n = node()
    data = collection("Dot", 3)
    rng = random.Random(77)
    flts = filters(data)
    queries = [rand_vec(rng) for _ in range(6)]
    specs = [(queries[i], flts[i * 2] if i % 2 else (None, None), 3 + i, i) for i in range(6)]
    searches, expected = [], []
    for q, (fjson, pred), limit, offset in specs:
        body = {"vector": q, "limit": limit, "offset": offset}
        if fjson is not None:
            body["filter"] = fjson
        searches.append(body)
        sub = data.truth(q, pred)
        expected.append((rank(sub, "Dot"), sub, limit, offset))
    result = ok(n, "POST", f"/collections/{data.name}/points/search/batch",
                {"searches": searches})
    assert len(result) == len(searches), result
    for i, (hits, (ranked, sub, limit, offset)) in enumerate(zip(result, expected)):
        check_hits(hits, ranked, sub, limit, offset, f"search/batch #{i}")
    result = ok(n, "POST", f"/collections/{data.name}/points/query/batch", {"searches": [
        {"query": s["vector"], "limit": s["limit"], "offset": s["offset"],
         **({"filter": s["filter"]} if "filter" in s else {})} for s in searches]})
    assert len(result) == len(searches), result
    for i, (res, (ranked, sub, limit, offset)) in enumerate(zip(result, expected)):
        check_hits(res["points"], ranked, sub, limit, offset, f"query/batch #{i}")


@test
def test_results_carry_payload_and_vector_when_asked():
    n = node()
    for distance in ("Cosine", "Euclid"):
        data = collection(distance, 3)
        q = rand_vec(random.Random(distance))
        truth = data.truth(q)
        ranked = rank(truth, distance)
        for hits in (search(n, data.name, {"vector": q, "limit": 8, "with_payload": True,
                                           "with_vector": True}),
                     query(n, data.name, {"query": q, "limit": 8, "with_payload": True,
                                          "with_vector": True})):
            check_hits(hits, ranked, truth, 8)
            for h in hits:
                assert h["payload"] == data.payloads[h["id"]], h
                stored = data.stored[h["id"]]
                assert len(h["vector"]) == DIM, h
                assert all(abs(x - y) <= 1e-6 for x, y in zip(h["vector"], stored)), h
        hits = search(n, data.name, {"vector": q, "limit": 4,
                                     "with_payload": {"include": ["cat", "a.b"]}})
        for h in hits:
            p = data.payloads[h["id"]]
            assert h["payload"] == {"cat": p["cat"], "a": {"b": p["a"]["b"]}}, h
            assert h.get("vector") is None, h
        hits = search(n, data.name, {"vector": q, "limit": 4, "with_payload": ["n", "flag"]})
        for h in hits:
            p = data.payloads[h["id"]]
            assert h["payload"] == {"n": p["n"], "flag": p["flag"]}, h


@test
def test_edge_limits_empty_matches_and_query_without_vector():
    n = node()
    data = collection("Euclid", 3)
    flts = filters(data)
    q = rand_vec(random.Random("edges"))
    #  A filter that leaves few points, with a limit above their number.
    fjson, pred = flts[13]
    sub = data.truth(q, pred)
    assert 0 < len(sub) < 200, len(sub)
    hits = search(n, data.name, {"vector": q, "filter": fjson, "limit": 500})
    check_hits(hits, rank(sub, "Euclid"), sub, len(sub), 0, "limit above the matches")
    #  A filter nothing matches, and an offset past the end.
    none = {"must": [{"key": "cat", "match": {"value": "no-such-colour"}}]}
    assert search(n, data.name, {"vector": q, "filter": none, "limit": 5}) == []
    assert query(n, data.name, {"query": q, "filter": none, "limit": 5}) == []
    assert search(n, data.name, {"vector": q, "limit": 5, "offset": N_POINTS}) == []
    #  A query without a vector lists points in id order (as scroll does).
    want = sorted((pid for pid in data.ids if pred(pid, data.payloads[pid])),
                  key=lambda pid: (1, uuid.UUID(pid).bytes) if isinstance(pid, str)
                  else (0, pid))
    points = query(n, data.name, {"filter": fjson, "limit": 20, "with_payload": True})
    assert [p["id"] for p in points] == want[:20], ([p["id"] for p in points], want[:20])
    assert all(p["payload"] == data.payloads[p["id"]] for p in points)
    #  An empty collection answers every search with nothing.
    ok(n, "PUT", "/collections/s_empty", {"vectors": {"size": DIM, "distance": "Cosine"},
                                          "shard_number": 2})
    assert search(n, "s_empty", {"vector": q, "limit": 5}) == []
    assert query(n, "s_empty", {"query": q, "limit": 5}) == []
    assert ok(n, "DELETE", "/collections/s_empty") is True


SHAPES = {
    1: {"items": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}], "nums": [1, 5, 9],
        "ts": "2024-01-01T00:00:00Z", "desc": "the quick brown fox"},
    2: {"items": [{"k": 1, "v": "b"}], "nums": [20], "ts": "2024-06-15T12:30:00Z",
        "desc": "lazy dog"},
    3: {"items": [], "nums": [], "ts": "2023-12-31T23:59:59Z", "desc": "quick"},
    4: {"items": [{"k": 3, "v": "c"}, {"k": 2, "v": "a"}, {"k": 2, "v": "b"}],
        "nums": [7, 8], "ts": "2025-02-01T00:00:00Z", "desc": "slow"},
    5: {"nums": 6, "desc": "no items at all"},
}


@test
def test_filters_on_arrays_of_objects_nested_min_should_datetime_and_text():
    n = node()
    ok(n, "PUT", "/collections/shapes", {"vectors": {"size": 2, "distance": "Dot"},
                                         "shard_number": 2})
    ok(n, "PUT", "/collections/shapes/points?wait=true", {"points": [
        {"id": pid, "vector": [1.0, float(pid)], "payload": payload}
        for pid, payload in SHAPES.items()]})
    cases = [
        #  A path through an array of objects matches if any element does.
        ({"must": [{"key": "items[].k", "match": {"value": 2}}]}, [1, 4]),
        ({"must": [{"key": "items[].v", "match": {"any": ["c"]}}]}, [4]),
        #  Two conditions on the array match different elements...
        ({"must": [{"key": "items[].k", "match": {"value": 1}},
                   {"key": "items[].v", "match": {"value": "b"}}]}, [1, 2]),
        #  ...while nested asks for one element satisfying both.
        ({"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "k", "match": {"value": 1}}, {"key": "v", "match": {"value": "b"}}]}}}]},
         [2]),
        ({"must": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "k", "match": {"value": 2}}, {"key": "v", "match": {"value": "a"}}]}}}]},
         [4]),
        ({"must_not": [{"nested": {"key": "items", "filter": {"must": [
            {"key": "k", "match": {"value": 2}}]}}}]}, [2, 3, 5]),
        #  Arrays of numbers: range and match hit if any element does.
        ({"must": [{"key": "nums", "range": {"gt": 8}}]}, [1, 2]),
        ({"must": [{"key": "nums", "match": {"any": [5, 6, 7]}}]}, [1, 4, 5]),
        ({"must": [{"key": "nums", "values_count": {"gte": 2}}]}, [1, 4]),
        #  A missing field has 0 values (Qdrant's FieldCondition::check_empty
        #  evaluates values_count against 0), so point 5 matches too.
        ({"must": [{"key": "items", "values_count": {"lt": 2}}]}, [2, 3, 5]),
        ({"must": [{"is_empty": {"key": "items"}}]}, [3, 5]),
        ({"must": [{"is_empty": {"key": "nums"}}]}, [3]),
        #  min_should: at least min_count of the conditions.
        ({"min_should": {"conditions": [
            {"key": "nums", "match": {"value": 1}}, {"key": "desc", "match": {"text": "quick"}},
            {"key": "items[].k", "match": {"value": 2}}], "min_count": 2}}, [1]),
        ({"min_should": {"conditions": [
            {"key": "nums", "match": {"value": 20}}, {"key": "desc", "match": {"text": "quick"}},
            {"key": "items[].k", "match": {"value": 3}}], "min_count": 1}}, [1, 2, 3, 4]),
        #  RFC 3339 datetimes in a range.
        ({"must": [{"key": "ts", "range": {"gte": "2024-01-01T00:00:00Z",
                                            "lt": "2025-01-01T00:00:00Z"}}]}, [1, 2]),
        ({"must": [{"key": "ts", "range": {"lt": "2024-01-01T00:00:00Z"}}]}, [3]),
        #  Text match without a full-text index: substring.
        ({"must": [{"key": "desc", "match": {"text": "quick"}}]}, [1, 3]),
    ]
    for flt, want in cases:
        got = ok(n, "POST", "/collections/shapes/points/scroll",
                 {"filter": flt, "limit": 10, "with_payload": False})
        assert [p["id"] for p in got["points"]] == want, (flt, got, want)
        assert ok(n, "POST", "/collections/shapes/points/count",
                  {"filter": flt, "exact": True}) == {"count": len(want)}, flt
        hits = search(n, "shapes", {"vector": [0.0, 1.0], "filter": flt, "limit": 10})
        assert [h["id"] for h in hits] == sorted(want, reverse=True), (flt, hits)
    assert ok(n, "DELETE", "/collections/shapes") is True


def _recommend_target(data, positive, negative):
    """Qdrant's average_vector rule over the stored vectors."""
    def avg(ids):
        return [sum(data.stored[i][d] for i in ids) / len(ids) for d in range(DIM)]
    pos = avg(positive)
    if not negative:
        return pos
    neg = avg(negative)
    return [p + (p - m) for p, m in zip(pos, neg)]


@test
def test_recommend_and_query_by_id_equal_brute_force():
    n = node()
    for distance in DISTANCES:
        data = collection(distance, 3)
        rng = random.Random(f"reco-{distance}")
        flts = filters(data)
        for round_ in range(4):
            positive = rng.sample(data.ids, rng.randrange(1, 4))
            negative = rng.sample([i for i in data.ids if i not in positive],
                                  rng.randrange(0, 3))
            used = set(positive) | set(negative)
            fjson, pred = flts[round_ * 3] if round_ % 2 else (None, None)
            target = _recommend_target(data, positive, negative)
            truth = {pid: s for pid, s in data.truth(target, pred).items() if pid not in used}
            ranked = rank(truth, distance)
            body = {"positive": positive, "negative": negative, "limit": 10}
            if fjson is not None:
                body["filter"] = fjson
            what = f"{distance} recommend +{positive} -{negative}"
            hits = ok(n, "POST", f"/collections/{data.name}/points/recommend", body)
            check_hits(hits, ranked, truth, 10, 0, what)
            qbody = {"query": {"recommend": {"positive": positive, "negative": negative}},
                     "limit": 10}
            if fjson is not None:
                qbody["filter"] = fjson
            check_hits(query(n, data.name, qbody), ranked, truth, 10, 0, what + " (query)")
        #  query {"nearest": id}: that point's vector, the point itself left out.
        for pid in rng.sample(data.ids, 3):
            truth = {i: s for i, s in data.truth(data.stored[pid]).items() if i != pid}
            points = query(n, data.name, {"query": {"nearest": pid}, "limit": 7})
            check_hits(points, rank(truth, distance), truth, 7, 0, f"{distance} nearest {pid}")
        batch = ok(n, "POST", f"/collections/{data.name}/points/recommend/batch",
                   {"searches": [{"positive": [data.ids[0]], "limit": 3},
                                 {"positive": [data.ids[1]], "negative": [data.ids[2]],
                                  "limit": 4}]})
        assert [len(b) for b in batch] == [3, 4], batch
        truth = {i: s for i, s in data.truth(data.stored[data.ids[0]]).items()
                 if i != data.ids[0]}
        check_hits(batch[0], rank(truth, distance), truth, 3, 0, f"{distance} recommend/batch")


# --- named and sparse vectors ----------------------------------------------

def named_collection():
    n = node()
    if not _named:
        rng = random.Random(99)
        points = []
        for i in range(1, 501):
            vec = {"img": rand_vec(rng, 8)}
            if i % 3:
                vec["txt"] = rand_vec(rng, 4)
            if i % 4:
                nnz = rng.randrange(1, 6)
                indices = rng.sample(range(50), nnz)
                vec["kw"] = {"indices": indices,
                             "values": [f32(rng.uniform(0.1, 2.0)) for _ in indices]}
            points.append({"id": i, "vector": vec, "payload": {"odd": i % 2 == 1}})
        ok(n, "PUT", "/collections/named", {
            "vectors": {"img": {"size": 8, "distance": "Dot"},
                        "txt": {"size": 4, "distance": "Euclid"}},
            "sparse_vectors": {"kw": {}}, "shard_number": 2})
        result = ok(n, "PUT", "/collections/named/points?wait=true", {"points": points})
        assert result["status"] == "completed", result
        _named["points"] = points
    return _named["points"]


@test
def test_named_vector_search_and_query_using():
    n = node()
    points = named_collection()
    rng = random.Random(3)
    for name, dim, distance in (("img", 8, "Dot"), ("txt", 4, "Euclid")):
        for _ in range(5):
            q = rand_vec(rng, dim)
            truth = {p["id"]: score(distance, p["vector"][name], q) for p in points
                     if name in p["vector"]}
            ranked = rank(truth, distance)
            hits = search(n, "named", {"vector": {"name": name, "vector": q}, "limit": 10})
            check_hits(hits, ranked, truth, 10, 0, f"named {name}")
            check_hits(query(n, "named", {"query": q, "using": name, "limit": 10}),
                       ranked, truth, 10, 0, f"query using {name}")
            flt = {"must": [{"key": "odd", "match": {"value": True}}]}
            sub = {i: s for i, s in truth.items() if i % 2 == 1}
            check_hits(query(n, "named", {"query": q, "using": name, "limit": 10,
                                          "filter": flt}),
                       rank(sub, distance), sub, 10, 0, f"query using {name} filtered")
    hits = search(n, "named", {"vector": {"name": "img", "vector": [1.0] * 8}, "limit": 2,
                               "with_vector": ["txt"]})
    for h in hits:
        want = next(p for p in points if p["id"] == h["id"])["vector"]
        if "txt" in want:
            assert list(h["vector"]) == ["txt"], h
            assert [f32(x) for x in h["vector"]["txt"]] == want["txt"], (h, want)
        else:
            assert h["vector"] in ({}, None), h


def sparse_score(point_vec, q_indices, q_values):
    mine = dict(zip(point_vec["indices"], point_vec["values"]))
    shared = [i for i in q_indices if i in mine]
    if not shared:
        return None
    return sum(mine[i] * v for i, v in zip(q_indices, q_values) if i in mine)


@test
def test_sparse_vector_search_scores_shared_indices_only():
    n = node()
    points = named_collection()
    rng = random.Random(11)
    for _ in range(8):
        q_indices = rng.sample(range(50), 3)
        q_values = [f32(rng.uniform(0.1, 2.0)) for _ in q_indices]
        truth = {}
        for p in points:
            if "kw" in p["vector"]:
                s = sparse_score(p["vector"]["kw"], q_indices, q_values)
                if s is not None:
                    truth[p["id"]] = s
        ranked = rank(truth, "Dot")
        sparse = {"indices": q_indices, "values": q_values}
        hits = search(n, "named", {"vector": {"name": "kw", "vector": sparse}, "limit": 10})
        check_hits(hits, ranked, truth, 10, 0, f"sparse search {sparse}")
        #  With a limit above the number of points sharing an index, exactly
        #  those come back.
        got = query(n, "named", {"query": sparse, "using": "kw", "limit": 500})
        check_hits(got, ranked, truth, len(truth), 0, f"sparse query {sparse}")
        assert len(got) == len(truth) < 500


@test
def test_query_vector_errors_are_qdrants_whatever_the_array_holds():
    """The gateway parses a search's vector straight to floats when it is an
    array of numbers (common/jsonx.h): its checks must answer as those of
    any other vector."""
    n = node()
    named_collection()
    cases = [
        ({"vector": {"name": "img", "vector": [1.0] * 7}, "limit": 1}, 400,
         "Wrong input: Vector dimension error: expected dim: 8, got 7"),
        ({"vector": {"name": "nope", "vector": [1.0] * 8}, "limit": 1}, 400,
         "Wrong input: Not existing vector name error: nope"),
        ({"vector": {"name": "kw", "vector": [1.0] * 8}, "limit": 1}, 400,
         "Wrong input: Wrong usage of sparse vectors"),
        ({"vector": {"name": "img", "vector": []}, "limit": 1}, 422,
         "Validation error in JSON body: [vector: dense vector must not be empty]"),
        ({"vector": {"name": "img", "vector": [1, 2, "x", 4, 5, 6, 7, 8]}, "limit": 1}, 400,
         "Format error in JSON body: vector[2]: expected a number"),
        ({"vector": {"name": "img", "vector": [[1.0] * 8]}, "limit": 1}, 400,
         "Wrong input: Wrong usage of multi vectors"),
        ({"vector": {}, "limit": 1}, 400, "Format error in JSON body: vector: data did not "
         "match any variant of untagged enum NamedVectorStruct"),
    ]
    for body, status, message in cases:
        got, answer = n.request("POST", "/collections/named/points/search", body)
        assert (got, answer["status"]["error"]) == (status, message), (body, got, answer)
        batch = {"searches": [{"vector": {"name": "img", "vector": [0.5] * 8}, "limit": 1},
                              body]}
        got, answer = n.request("POST", "/collections/named/points/search/batch", batch)
        assert (got, answer["status"]["error"]) == (status, message), (batch, got, answer)
    for body, status, message in [
            ({"query": [1.0] * 5, "using": "img"}, 400,
             "Wrong input: Vector dimension error: expected dim: 8, got 5"),
            ({"query": {"nearest": [1.0] * 8}, "using": "kw"}, 400,
             "Wrong input: Wrong usage of sparse vectors"),
            ({"query": [1.0] * 8, "using": "nope"}, 400,
             "Wrong input: Not existing vector name error: nope")]:
        got, answer = n.request("POST", "/collections/named/points/query", body)
        assert (got, answer["status"]["error"]) == (status, message), (body, got, answer)
    #  The same vector given as integers, reals and exponents finds the same.
    a = search(n, "named", {"vector": {"name": "img", "vector": [1, 2, 3, 4, 5, 6, 7, 8]},
                            "limit": 5})
    b = search(n, "named", {"vector": {"name": "img", "vector": [1.0, 2.0, 0.3e1, 4, 5, 6, 7,
                                                                 80e-1]}, "limit": 5})
    assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)


if __name__ == "__main__":
    harness.main(shared=node)
