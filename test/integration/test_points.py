#!/usr/bin/env python3
"""test_points: point writes and reads as Qdrant's REST API defines them.
Upsert (list and batch forms; integer and UUID ids in every spelling Qdrant
accepts, answered lowercase hyphenated; payloads of every JSON type;
wait=true/false), retrieve by GET and POST with payload and vector
selectors, whole-point replacement, delete by ids and by filter, payload
set (also at a nested "key"), overwrite, delete (nested paths) and clear,
named vector update and delete, batch updates applied in order, scroll
pagination over 1,000 points on 3 shards, exact counts with filters, and
Cosine vectors stored normalized."""
import math
import os
import random
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test, wait_for  # noqa: E402

_node = None


def node():
    """One node for the suite; each test uses its own collections."""
    global _node
    if _node is None or not _node.running():
        _node = Node()
    return _node


def ok(n, method, path, body=None):
    status, answer = n.request(method, path, body)
    assert status == 200, (method, path, status, answer)
    assert answer["status"] == "ok" and isinstance(answer["time"], (int, float)), answer
    return answer["result"]


def fails(n, method, path, body, want):
    status, answer = n.request(method, path, body)
    assert status == want, (method, path, status, answer)
    assert isinstance(answer["status"]["error"], str), answer
    return answer["status"]["error"]


def create(n, name, config):
    status, answer = n.request("DELETE", f"/collections/{name}")
    assert status == 200, (status, answer)
    assert ok(n, "PUT", f"/collections/{name}", config) is True


def completed(result):
    assert result["status"] == "completed", result
    assert isinstance(result["operation_id"], int) and result["operation_id"] >= 0, result
    return result


def upsert(n, name, points, wait=True):
    result = ok(n, "PUT", f"/collections/{name}/points?wait={'true' if wait else 'false'}",
                {"points": points})
    return completed(result) if wait else result


def retrieve(n, name, ids, **selectors):
    body = {"ids": ids}
    body.update(selectors)
    return ok(n, "POST", f"/collections/{name}/points", body)


def by_id(records):
    return {r["id"]: r for r in records}


def count(n, name, flt=None):
    body = {"exact": True}
    if flt is not None:
        body["filter"] = flt
    return ok(n, "POST", f"/collections/{name}/points/count", body)["count"]


def close(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def normalized(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


EVERY_TYPE = {
    "str": "text", "unicode": "ünïcødé ✓ 日本", "empty_str": "", "int": 42, "neg": -7,
    "zero": 0, "big": 2 ** 62, "float": 3.25, "tiny": 1e-7, "negf": -0.5,
    "true": True, "false": False, "null": None,
    "arr": [1, "two", 3.5, False, None, [1, 2], {"k": "v"}], "empty_arr": [],
    "obj": {"nested": {"deep": [1, 2, 3], "s": "x"}, "other": 1}, "empty_obj": {},
    "quote\"key": "back\\slash\nnewline\ttab",
}


# --- upsert ----------------------------------------------------------------

@test
def test_upsert_list_form_with_every_payload_type():
    n = node()
    create(n, "types", {"vectors": {"size": 3, "distance": "Dot"}})
    upsert(n, "types", [{"id": 1, "vector": [0.5, -1.0, 2.0], "payload": EVERY_TYPE},
                        {"id": 2, "vector": [1.0, 1.0, 1.0]},
                        {"id": 3, "vector": [0.0, 0.0, 1.0], "payload": {}}])
    records = by_id(retrieve(n, "types", [1, 2, 3], with_payload=True, with_vector=True))
    assert records[1]["payload"] == EVERY_TYPE, records[1]
    assert records[1]["vector"] == [0.5, -1.0, 2.0], records[1]
    assert records[2]["payload"] == {}, records[2]
    assert records[3]["payload"] == {}, records[3]
    assert count(n, "types") == 3


@test
def test_upsert_batch_form():
    n = node()
    create(n, "batchform", {"vectors": {"size": 2, "distance": "Euclid"}, "shard_number": 2})
    ids = list(range(100, 120)) + [str(uuid.UUID(int=i + 1)) for i in range(5)]
    vectors = [[float(i), float(-i)] for i in range(len(ids))]
    payloads = [{"i": i} for i in range(len(ids))]
    result = ok(n, "PUT", "/collections/batchform/points?wait=true",
                {"batch": {"ids": ids, "vectors": vectors, "payloads": payloads}})
    completed(result)
    assert count(n, "batchform") == len(ids)
    records = by_id(retrieve(n, "batchform", ids, with_payload=True, with_vector=True))
    assert sorted(records, key=str) == sorted(ids, key=str), records.keys()
    for i, pid in enumerate(ids):
        assert records[pid]["payload"] == {"i": i}, records[pid]
        assert records[pid]["vector"] == vectors[i], records[pid]
    #  Batch form without payloads: points get an empty payload.
    ok(n, "PUT", "/collections/batchform/points?wait=true",
       {"batch": {"ids": [7, 8], "vectors": [[1.0, 2.0], [3.0, 4.0]]}})
    records = by_id(retrieve(n, "batchform", [7, 8]))
    assert records[7]["payload"] == {} and records[8]["payload"] == {}, records


@test
def test_payload_keys_named_like_vectors_stay_json():
    """The gateway parses a point's "vector" and a batch's "vectors" column
    straight to floats; payloads holding keys of those names (at any depth),
    named vectors and a batch's named columns stay what the JSON said."""
    n = node()
    create(n, "vecnames", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    tricky = {"vector": [1, 2.5, 1e20], "vectors": [[3, 4], [5]],
              "deep": {"vector": [0.1], "points": [{"vector": [7]}]}}
    upsert(n, "vecnames", [{"id": 1, "vector": [0.25, -1.5], "payload": tricky},
                           {"id": 2, "vector": [1.0, 2.0], "payload": {"vector": "text"}}])
    completed(ok(n, "PUT", "/collections/vecnames/points?wait=true",
                 {"batch": {"ids": [3, 4], "vectors": [[3.0, 4.0], [0.1, 0.2]],
                            "payloads": [tricky, {"vectors": []}]}}))
    records = by_id(retrieve(n, "vecnames", [1, 2, 3, 4], with_payload=True, with_vector=True))
    assert records[1]["payload"] == tricky and records[3]["payload"] == tricky, records
    assert records[2]["payload"] == {"vector": "text"}, records[2]
    assert records[4]["payload"] == {"vectors": []}, records[4]
    assert records[1]["vector"] == [0.25, -1.5] and records[3]["vector"] == [3.0, 4.0], records
    assert close(records[4]["vector"], [0.1, 0.2]), records[4]
    #  A vector of the wrong size is refused, in either form.
    fails(n, "PUT", "/collections/vecnames/points?wait=true",
          {"points": [{"id": 5, "vector": [1.0, 2.0, 3.0]}]}, 400)
    fails(n, "PUT", "/collections/vecnames/points?wait=true",
          {"batch": {"ids": [5], "vectors": [[1.0]]}}, 400)
    assert count(n, "vecnames") == 4
    #  Named vectors and a batch's named columns.
    create(n, "vecnamed", {"vectors": {"a": {"size": 2, "distance": "Dot"},
                                       "b": {"size": 3, "distance": "Euclid"}}})
    upsert(n, "vecnamed", [{"id": 1, "vector": {"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]},
                            "payload": {"vector": {"a": [9]}}},
                           {"id": 2, "vector": {"b": [4.0, 5.0, 6.0]}}])
    completed(ok(n, "PUT", "/collections/vecnamed/points?wait=true",
                 {"batch": {"ids": [3], "vectors": {"a": [[7.0, 8.0]]}}}))
    records = by_id(retrieve(n, "vecnamed", [1, 2, 3], with_payload=True, with_vector=True))
    assert records[1]["vector"] == {"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0]}, records[1]
    assert records[1]["payload"] == {"vector": {"a": [9]}}, records[1]
    assert records[2]["vector"] == {"b": [4.0, 5.0, 6.0]}, records[2]
    assert records[3]["vector"] == {"a": [7.0, 8.0]}, records[3]


@test
def test_uuid_ids_in_every_spelling_answer_lowercase_hyphenated():
    n = node()
    create(n, "uuids", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    u = uuid.UUID("5c56c793-69f3-4fbf-87e6-c4bf54c28c26")
    canonical = str(u)
    spellings = [canonical, canonical.upper(), u.hex, u.hex.upper(), "{" + canonical + "}",
                 "urn:uuid:" + canonical]
    for i, spelling in enumerate(spellings):
        upsert(n, "uuids", [{"id": spelling, "vector": [float(i), 1.0], "payload": {"v": i}}])
        assert count(n, "uuids") == 1, spelling
        got = retrieve(n, "uuids", [canonical], with_vector=True)
        assert len(got) == 1 and got[0]["id"] == canonical, (spelling, got)
        assert got[0]["payload"] == {"v": i} and got[0]["vector"] == [float(i), 1.0], got
    #  Every spelling finds it again, by POST and by GET.
    for spelling in spellings:
        got = retrieve(n, "uuids", [spelling])
        assert [r["id"] for r in got] == [canonical], (spelling, got)
    for spelling in (canonical, canonical.upper(), u.hex):
        record = ok(n, "GET", f"/collections/uuids/points/{spelling}")
        assert record["id"] == canonical, record
    scrolled = ok(n, "POST", "/collections/uuids/points/scroll", {})
    assert [r["id"] for r in scrolled["points"]] == [canonical], scrolled
    hits = ok(n, "POST", "/collections/uuids/points/search", {"vector": [1.0, 0.0], "limit": 1})
    assert [h["id"] for h in hits] == [canonical], hits


@test
def test_wait_false_is_acknowledged_and_applied():
    n = node()
    create(n, "nowait", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    result = upsert(n, "nowait", [{"id": i, "vector": [1.0, float(i)]} for i in range(1, 51)],
                    wait=False)
    assert result["status"] == "acknowledged", result
    assert isinstance(result["operation_id"], int), result
    wait_for(lambda: count(n, "nowait") == 50, what="50 points after wait=false")
    result = ok(n, "POST", "/collections/nowait/points/delete?wait=false",
                {"points": list(range(1, 11))})
    assert result["status"] == "acknowledged", result
    wait_for(lambda: count(n, "nowait") == 40, what="40 points after a wait=false delete")


# --- retrieve --------------------------------------------------------------

@test
def test_get_point_by_id_and_404_for_a_missing_one():
    n = node()
    create(n, "getone", {"vectors": {"size": 3, "distance": "Dot"}})
    upsert(n, "getone", [{"id": 7, "vector": [1.0, 2.0, 3.0], "payload": {"a": "b"}}])
    record = ok(n, "GET", "/collections/getone/points/7")
    #  GET by id returns the payload and the vector.
    assert record["id"] == 7 and record["payload"] == {"a": "b"}, record
    assert record["vector"] == [1.0, 2.0, 3.0], record
    error = fails(n, "GET", "/collections/getone/points/8", None, 404)
    assert error == "Not found: No point with id 8 found", error
    fails(n, "GET", "/collections/getone/points/11111111-2222-3333-4444-555555555555", None, 404)


@test
def test_retrieve_with_payload_and_vector_selectors():
    n = node()
    create(n, "selectors", {"vectors": {"img": {"size": 2, "distance": "Dot"},
                                        "txt": {"size": 3, "distance": "Euclid"}}})
    upsert(n, "selectors", [{"id": 1, "payload": EVERY_TYPE,
                             "vector": {"img": [1.0, 2.0], "txt": [3.0, 4.0, 5.0]}}])

    def one(**selectors):
        got = retrieve(n, "selectors", [1, 999], **selectors)
        assert len(got) == 1 and got[0]["id"] == 1, got
        return got[0]

    #  Defaults: payload yes, vector no.
    record = one()
    assert record["payload"] == EVERY_TYPE and record.get("vector") is None, record
    record = one(with_payload=False, with_vector=False)
    assert record.get("payload") is None and record.get("vector") is None, record
    record = one(with_payload=True, with_vector=True)
    assert record["payload"] == EVERY_TYPE, record
    assert record["vector"] == {"img": [1.0, 2.0], "txt": [3.0, 4.0, 5.0]}, record
    record = one(with_payload=["str", "int", "missing"], with_vector=["txt"])
    assert record["payload"] == {"str": "text", "int": 42}, record
    assert record["vector"] == {"txt": [3.0, 4.0, 5.0]}, record
    record = one(with_payload={"include": ["obj.nested", "true"]})
    assert record["payload"] == {"obj": {"nested": EVERY_TYPE["obj"]["nested"]},
                                 "true": True}, record
    record = one(with_payload={"exclude": ["arr", "obj", "unicode"]})
    want = {k: v for k, v in EVERY_TYPE.items() if k not in ("arr", "obj", "unicode")}
    assert record["payload"] == want, record
    #  Missing ids are left out; several ids come back once each.
    got = retrieve(n, "selectors", [999, 1, 1000])
    assert [r["id"] for r in got] == [1], got


# --- whole-point replacement and deletes -----------------------------------

@test
def test_upsert_replaces_the_whole_point():
    n = node()
    create(n, "replace", {"vectors": {"a": {"size": 2, "distance": "Dot"},
                                      "b": {"size": 2, "distance": "Dot"}}})
    upsert(n, "replace", [{"id": 5, "vector": {"a": [1.0, 0.0], "b": [0.0, 1.0]},
                           "payload": {"old": 1, "keep": "no"}}])
    upsert(n, "replace", [{"id": 5, "vector": {"a": [2.0, 2.0]}, "payload": {"new": 2}}])
    [record] = retrieve(n, "replace", [5], with_vector=True)
    assert record["payload"] == {"new": 2}, record
    assert record["vector"] == {"a": [2.0, 2.0]}, record
    assert count(n, "replace") == 1


@test
def test_delete_by_ids_and_by_filter():
    n = node()
    create(n, "deletes", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    upsert(n, "deletes", [{"id": i, "vector": [1.0, 0.0], "payload": {"k": i % 4}}
                          for i in range(1, 101)])
    completed(ok(n, "POST", "/collections/deletes/points/delete?wait=true",
                 {"points": [1, 2, 3, 500]}))
    assert count(n, "deletes") == 97
    assert retrieve(n, "deletes", [1, 2, 3]) == []
    completed(ok(n, "POST", "/collections/deletes/points/delete?wait=true",
                 {"filter": {"must": [{"key": "k", "match": {"value": 0}}]}}))
    remaining = [i for i in range(4, 101) if i % 4 != 0]
    assert count(n, "deletes") == len(remaining)
    assert count(n, "deletes", {"must": [{"key": "k", "match": {"value": 0}}]}) == 0
    scrolled = ok(n, "POST", "/collections/deletes/points/scroll", {"limit": 1000})
    assert [r["id"] for r in scrolled["points"]] == remaining


# --- payload edits ---------------------------------------------------------

def payload_of(n, name, pid):
    [record] = retrieve(n, name, [pid])
    return record["payload"]


@test
def test_set_overwrite_delete_and_clear_payload():
    n = node()
    create(n, "payloads", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    base = {"a": 1, "obj": {"x": 1, "inner": {"y": 2}}, "list": [1, 2]}
    upsert(n, "payloads", [{"id": i, "vector": [1.0, 1.0], "payload": base}
                           for i in range(1, 7)])
    path = "/collections/payloads/points/payload?wait=true"
    #  set merges top-level keys.
    completed(ok(n, "POST", path, {"payload": {"b": "new", "a": 10}, "points": [1, 2]}))
    assert payload_of(n, "payloads", 1) == {**base, "a": 10, "b": "new"}
    assert payload_of(n, "payloads", 3) == base
    #  set with a key merges into the object at that path...
    completed(ok(n, "POST", path, {"payload": {"z": True}, "points": [3], "key": "obj.inner"}))
    assert payload_of(n, "payloads", 3) == {**base, "obj": {"x": 1, "inner": {"y": 2, "z": True}}}
    #  ...and creates the path when it does not exist.
    completed(ok(n, "POST", path, {"payload": {"c": 3}, "points": [4], "key": "fresh"}))
    assert payload_of(n, "payloads", 4) == {**base, "fresh": {"c": 3}}
    #  set by filter.
    completed(ok(n, "POST", path, {"payload": {"tag": "f"},
                                   "filter": {"must": [{"has_id": [5, 6]}]}}))
    assert payload_of(n, "payloads", 5) == {**base, "tag": "f"}
    assert payload_of(n, "payloads", 6) == {**base, "tag": "f"}
    #  overwrite replaces the whole payload.
    completed(ok(n, "PUT", path, {"payload": {"only": [1]}, "points": [1]}))
    assert payload_of(n, "payloads", 1) == {"only": [1]}
    #  delete keys, top-level and nested.
    completed(ok(n, "POST", "/collections/payloads/points/payload/delete?wait=true",
                 {"keys": ["a", "obj.inner.y", "nope"], "points": [2]}))
    assert payload_of(n, "payloads", 2) == {"b": "new", "obj": {"x": 1, "inner": {}},
                                            "list": [1, 2]}
    #  clear empties it.
    completed(ok(n, "POST", "/collections/payloads/points/payload/clear?wait=true",
                 {"points": [5, 6]}))
    assert payload_of(n, "payloads", 5) == {} and payload_of(n, "payloads", 6) == {}
    assert payload_of(n, "payloads", 4) == {**base, "fresh": {"c": 3}}
    #  Payload edits on a missing point are a 404.
    fails(n, "POST", path, {"payload": {"x": 1}, "points": [404]}, 404)


# --- named vectors ---------------------------------------------------------

@test
def test_update_and_delete_named_vectors():
    n = node()
    create(n, "vecs", {"vectors": {"img": {"size": 2, "distance": "Cosine"},
                                   "txt": {"size": 3, "distance": "Dot"}},
                       "sparse_vectors": {"kw": {}}, "shard_number": 2})
    upsert(n, "vecs", [{"id": i, "vector": {"img": [1.0, 0.0], "txt": [1.0, 2.0, 3.0],
                                            "kw": {"indices": [3, 1], "values": [0.5, 1.5]}},
                        "payload": {"i": i}} for i in range(1, 5)])
    [record] = retrieve(n, "vecs", [1], with_vector=True)
    #  Sparse vectors come back sorted by index.
    assert record["vector"]["kw"] == {"indices": [1, 3], "values": [1.5, 0.5]}, record
    completed(ok(n, "PUT", "/collections/vecs/points/vectors?wait=true",
                 {"points": [{"id": 1, "vector": {"img": [0.0, 2.0]}},
                             {"id": 2, "vector": {"txt": [9.0, 8.0, 7.0]}}]}))
    records = by_id(retrieve(n, "vecs", [1, 2], with_vector=True))
    assert records[1]["vector"]["img"] == [0.0, 1.0], records[1]
    assert records[1]["vector"]["txt"] == [1.0, 2.0, 3.0], records[1]
    assert records[2]["vector"]["txt"] == [9.0, 8.0, 7.0], records[2]
    assert records[2]["vector"]["img"] == [1.0, 0.0], records[2]
    assert records[1]["payload"] == {"i": 1}, "update_vectors leaves the payload"
    completed(ok(n, "POST", "/collections/vecs/points/vectors/delete?wait=true",
                 {"points": [3], "vector": ["txt", "kw"]}))
    [record] = retrieve(n, "vecs", [3], with_vector=True)
    assert record["vector"] == {"img": [1.0, 0.0]}, record
    completed(ok(n, "POST", "/collections/vecs/points/vectors/delete?wait=true",
                 {"filter": {"must": [{"has_id": [4]}]}, "vector": ["img"]}))
    [record] = retrieve(n, "vecs", [4], with_vector=True)
    assert sorted(record["vector"]) == ["kw", "txt"], record
    assert count(n, "vecs") == 4
    #  A point without the vector is not a search hit for it.
    hits = ok(n, "POST", "/collections/vecs/points/search",
              {"vector": {"name": "txt", "vector": [1.0, 1.0, 1.0]}, "limit": 10})
    assert sorted(h["id"] for h in hits) == [1, 2, 4], hits
    error = fails(n, "PUT", "/collections/vecs/points/vectors",
                  {"points": [{"id": 1, "vector": {"nope": [1.0, 2.0]}}]}, 400)
    assert "nope" in error, error


# --- batch -----------------------------------------------------------------

@test
def test_batch_update_applies_operations_in_order():
    n = node()
    create(n, "batch", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    ops = [
        {"upsert": {"points": [{"id": i, "vector": [1.0, float(i)], "payload": {"n": i}}
                               for i in range(1, 11)]}},
        {"set_payload": {"payload": {"s": 1}, "points": [1, 2, 3]}},
        {"overwrite_payload": {"payload": {"o": 1}, "points": [3]}},
        {"delete_payload": {"keys": ["n"], "points": [2]}},
        {"clear_payload": {"points": [4]}},
        {"update_vectors": {"points": [{"id": 5, "vector": [7.0, 7.0]}]}},
        {"delete": {"points": [6, 7]}},
        {"upsert": {"points": [{"id": 7, "vector": [0.0, 1.0], "payload": {"back": True}}]}},
        {"delete": {"filter": {"must": [{"key": "n", "range": {"gte": 9}}]}}},
    ]
    result = ok(n, "POST", "/collections/batch/points/batch?wait=true", {"operations": ops})
    assert len(result) == len(ops), result
    for r in result:
        completed(r)
    records = by_id(retrieve(n, "batch", list(range(1, 11)), with_vector=True))
    assert sorted(records) == [1, 2, 3, 4, 5, 7, 8], sorted(records)
    assert records[1]["payload"] == {"n": 1, "s": 1}
    assert records[2]["payload"] == {"s": 1}
    assert records[3]["payload"] == {"o": 1}
    assert records[4]["payload"] == {}
    assert records[5]["vector"] == [7.0, 7.0] and records[5]["payload"] == {"n": 5}
    assert records[7]["payload"] == {"back": True}
    assert records[8]["payload"] == {"n": 8}


# --- scroll and count ------------------------------------------------------

def scroll_all(n, name, limit, flt=None):
    """Every page of a scroll: (ids in order, number of pages)."""
    seen, offset, pages = [], None, 0
    while True:
        body = {"limit": limit, "with_payload": True}
        if offset is not None:
            body["offset"] = offset
        if flt is not None:
            body["filter"] = flt
        page = ok(n, "POST", f"/collections/{name}/points/scroll", body)
        pages += 1
        assert len(page["points"]) <= limit, page
        ids = [p["id"] for p in page["points"]]
        if seen and ids:
            assert ids[0] == offset, (offset, ids[:3])
        seen.extend(ids)
        offset = page["next_page_offset"]
        if offset is None:
            return seen, pages
        assert len(page["points"]) == limit, "a page before the last one is full"
        assert pages < 1000, "scroll does not end"


def id_order(pid):
    """Qdrant's point order: integers by value, then UUIDs by their bytes."""
    return (1, uuid.UUID(pid).bytes) if isinstance(pid, str) else (0, pid)


@test
def test_scroll_pages_every_point_once_in_order_over_three_shards():
    n = node()
    create(n, "scroll", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    rng = random.Random(97)
    ints = rng.sample(range(0, 10 ** 12), 800)
    uuids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
    ids = ints + uuids
    rng.shuffle(ids)
    payload = {pid: {"g": rng.randrange(3), "pos": i} for i, pid in enumerate(ids)}
    for start in range(0, len(ids), 250):
        upsert(n, "scroll", [{"id": pid, "vector": [1.0, 0.0], "payload": payload[pid]}
                             for pid in ids[start:start + 250]])
    assert count(n, "scroll") == 1000
    want = sorted(ids, key=id_order)
    seen, pages = scroll_all(n, "scroll", 97)
    assert seen == want, "every id once, integers ascending then UUIDs"
    assert pages == math.ceil(1000 / 97)
    flt = {"must": [{"key": "g", "match": {"value": 1}}]}
    seen, _ = scroll_all(n, "scroll", 97, flt)
    assert seen == [pid for pid in want if payload[pid]["g"] == 1]
    #  A page's payloads are the points' own.
    page = ok(n, "POST", "/collections/scroll/points/scroll", {"limit": 5, "offset": want[500]})
    assert [p["id"] for p in page["points"]] == want[500:505], page
    for p in page["points"]:
        assert p["payload"] == payload[p["id"]] and p.get("vector") is None, p
    assert page["next_page_offset"] == want[505], page
    #  The last page's next offset is null, also when it is exactly full.
    page = ok(n, "POST", "/collections/scroll/points/scroll", {"limit": 10, "offset": want[990]})
    assert [p["id"] for p in page["points"]] == want[990:] and page["next_page_offset"] is None


@test
def test_count_exact_with_filters():
    n = node()
    create(n, "counting", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    rng = random.Random(5)
    points = []
    for i in range(1, 301):
        points.append({"id": i, "vector": [1.0, 0.0], "payload": {
            "color": rng.choice(["red", "green", "blue"]), "n": rng.randrange(100),
            "tags": rng.sample(["x", "y", "z"], rng.randrange(4)),
            "meta": {"level": rng.randrange(5)}}})
    upsert(n, "counting", points)
    cases = [
        (None, lambda p: True),
        ({"must": [{"key": "color", "match": {"value": "red"}}]},
         lambda p: p["color"] == "red"),
        ({"must": [{"key": "n", "range": {"gte": 20, "lt": 60}}],
          "must_not": [{"key": "color", "match": {"any": ["blue"]}}]},
         lambda p: 20 <= p["n"] < 60 and p["color"] != "blue"),
        ({"should": [{"key": "tags", "match": {"value": "x"}},
                     {"key": "meta.level", "match": {"value": 4}}]},
         lambda p: "x" in p["tags"] or p["meta"]["level"] == 4),
        ({"must": [{"is_empty": {"key": "tags"}}]}, lambda p: not p["tags"]),
        ({"must": [{"has_id": list(range(1, 301, 7))}]}, None),
    ]
    for flt, pred in cases:
        if pred is None:
            want = len(range(1, 301, 7))
        else:
            want = sum(1 for p in points if pred(p["payload"]))
        assert count(n, "counting", flt) == want, flt
    #  exact=false is allowed and, with nothing changing, equal here.
    approx = ok(n, "POST", "/collections/counting/points/count", {"exact": False})
    assert approx == {"count": 300}, approx


@test
def test_duplicate_ids_in_one_upsert_last_wins_and_missing_deletes_are_fine():
    n = node()
    create(n, "dups", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    upsert(n, "dups", [{"id": 1, "vector": [1.0, 1.0], "payload": {"v": "first"}},
                       {"id": 2, "vector": [2.0, 2.0], "payload": {"v": "two"}},
                       {"id": 1, "vector": [3.0, 3.0], "payload": {"v": "last"}}])
    records = by_id(retrieve(n, "dups", [1, 2], with_vector=True))
    assert records[1]["payload"] == {"v": "last"} and records[1]["vector"] == [3.0, 3.0], records
    assert count(n, "dups") == 2
    #  Deleting ids that do not exist succeeds and changes nothing.
    completed(ok(n, "POST", "/collections/dups/points/delete?wait=true",
                 {"points": [77, "11111111-2222-3333-4444-555555555555"]}))
    assert count(n, "dups") == 2
    info = ok(n, "GET", "/collections/dups")
    assert info["points_count"] == 2, info
    create(n, "empty", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    assert count(n, "empty") == 0
    assert ok(n, "POST", "/collections/empty/points/scroll", {}) == \
        {"points": [], "next_page_offset": None}
    assert retrieve(n, "empty", [1, 2]) == []


@test
def test_concurrent_writers_and_readers_lose_nothing():
    import threading
    n = node()
    create(n, "concurrent", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3})
    errors = []

    def writer(t):
        try:
            for start in range(0, 250, 50):
                upsert(n, "concurrent", [{"id": t * 1000 + i, "vector": [float(t), float(i)],
                                          "payload": {"t": t, "i": i}}
                                         for i in range(start, start + 50)])
                #  Every writer also rewrites one shared point: whichever
                #  write lands last, its vector and payload belong together.
                upsert(n, "concurrent", [{"id": 999999, "vector": [float(t), float(start)],
                                          "payload": {"t": t, "start": start}}])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    def reader():
        try:
            for _ in range(20):
                ok(n, "POST", "/collections/concurrent/points/search",
                   {"vector": [1.0, 1.0], "limit": 5})
                ok(n, "POST", "/collections/concurrent/points/count", {"exact": True})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(1, 9)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert count(n, "concurrent") == 8 * 250 + 1
    ids = [t * 1000 + i for t in range(1, 9) for i in range(0, 250, 7)]
    for record in retrieve(n, "concurrent", ids, with_vector=True):
        t, i = divmod(record["id"], 1000)
        assert record["vector"] == [float(t), float(i)], record
        assert record["payload"] == {"t": t, "i": i}, record
    [shared] = retrieve(n, "concurrent", [999999], with_vector=True)
    assert shared["vector"] == [float(shared["payload"]["t"]),
                                float(shared["payload"]["start"])], shared


# --- Cosine ----------------------------------------------------------------

@test
def test_cosine_vectors_come_back_normalized():
    n = node()
    create(n, "cosine", {"vectors": {"size": 4, "distance": "Cosine"}})
    raw = [[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [-2.0, 0.5, 7.0, 0.25]]
    upsert(n, "cosine", [{"id": i + 1, "vector": v} for i, v in enumerate(raw)])
    records = by_id(retrieve(n, "cosine", [1, 2, 3], with_vector=True))
    assert records[1]["vector"] == [0.6, 0.8, 0.0, 0.0], records[1]
    assert records[2]["vector"] == [0.5, 0.5, 0.5, 0.5], records[2]
    assert close(records[3]["vector"], normalized(raw[2]), 1e-6), records[3]
    assert abs(sum(x * x for x in records[3]["vector"]) - 1.0) < 1e-5
    record = ok(n, "GET", "/collections/cosine/points/1")
    assert record["vector"] == [0.6, 0.8, 0.0, 0.0], record


if __name__ == "__main__":
    harness.main(shared=node)
