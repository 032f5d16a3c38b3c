#!/usr/bin/env python3
"""test_auth: service.api_key and service.read_only_api_key as Qdrant
enforces them. Without a key, or with a wrong one, every endpoint answers
401, except those Qdrant leaves open: the root (version info) and the
/healthz, /livez, /readyz probes. The key is accepted in an `api-key` header
and as `Authorization: Bearer`. The read-only key reads (list and get
collections, search, query, scroll, count, retrieve) and gets 403 on every
write (collection create/update/delete, aliases, point writes)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test  # noqa: E402

RW = "rw-secret-key-0123456789"
RO = "ro-secret-key-9876543210"
NAME = "guarded"
_node = None


def node():
    """A node with both keys and a collection of 10 points."""
    global _node
    if _node is None or not _node.running():
        _node = Node(env={"QDRANT__SERVICE__API_KEY": RW,
                          "QDRANT__SERVICE__READ_ONLY_API_KEY": RO}, api_key=RW)
        status, body = _node.request("PUT", f"/collections/{NAME}",
                                     {"vectors": {"size": 2, "distance": "Dot"},
                                      "shard_number": 2})
        assert status == 200, (status, body)
        status, body = _node.request("PUT", f"/collections/{NAME}/points?wait=true", {
            "points": [{"id": i, "vector": [float(i), 1.0], "payload": {"i": i}}
                       for i in range(1, 11)]})
        assert status == 200, (status, body)
    return _node


def call(method, path, body=None, key=None, bearer=None):
    """(status, body) with exactly the credentials given."""
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return node().request(method, path, body, headers=headers, api_key=key)


READS = [
    ("GET", "/collections", None),
    ("GET", f"/collections/{NAME}", None),
    ("GET", f"/collections/{NAME}/exists", None),
    ("GET", "/aliases", None),
    ("GET", f"/collections/{NAME}/points/3", None),
    ("POST", f"/collections/{NAME}/points", {"ids": [1, 2]}),
    ("POST", f"/collections/{NAME}/points/search", {"vector": [1.0, 0.0], "limit": 3}),
    ("POST", f"/collections/{NAME}/points/search/batch",
     {"searches": [{"vector": [1.0, 0.0], "limit": 3}]}),
    ("POST", f"/collections/{NAME}/points/query", {"query": [1.0, 0.0], "limit": 3}),
    ("POST", f"/collections/{NAME}/points/recommend", {"positive": [1], "limit": 3}),
    ("POST", f"/collections/{NAME}/points/scroll", {"limit": 4}),
    ("POST", f"/collections/{NAME}/points/count", {"exact": True}),
]

WRITES = [
    ("PUT", "/collections/ro_made", {"vectors": {"size": 2, "distance": "Dot"}}),
    ("PATCH", f"/collections/{NAME}", {"optimizers_config": {"indexing_threshold": 1}}),
    ("DELETE", f"/collections/{NAME}", None),
    ("POST", "/collections/aliases",
     {"actions": [{"create_alias": {"collection_name": NAME, "alias_name": "ro_alias"}}]}),
    ("PUT", f"/collections/{NAME}/points?wait=true",
     {"points": [{"id": 99, "vector": [1.0, 1.0]}]}),
    ("POST", f"/collections/{NAME}/points/delete?wait=true", {"points": [1]}),
    ("POST", f"/collections/{NAME}/points/payload?wait=true",
     {"payload": {"x": 1}, "points": [1]}),
    ("PUT", f"/collections/{NAME}/points/payload?wait=true",
     {"payload": {"x": 1}, "points": [1]}),
    ("POST", f"/collections/{NAME}/points/payload/clear?wait=true", {"points": [1]}),
    ("PUT", f"/collections/{NAME}/points/vectors?wait=true",
     {"points": [{"id": 1, "vector": [0.0, 0.0]}]}),
    ("POST", f"/collections/{NAME}/points/batch?wait=true",
     {"operations": [{"delete": {"points": [2]}}]}),
]


def unchanged():
    """The collection as node() made it: 10 points, payloads intact, no
    extra collections or aliases."""
    status, body = call("POST", f"/collections/{NAME}/points/scroll", {"limit": 20}, key=RW)
    assert status == 200, (status, body)
    assert [(p["id"], p["payload"]) for p in body["result"]["points"]] == \
        [(i, {"i": i}) for i in range(1, 11)], body
    status, body = call("GET", "/collections", key=RW)
    assert [c["name"] for c in body["result"]["collections"]] == [NAME], body
    status, body = call("GET", "/aliases", key=RW)
    assert body["result"]["aliases"] == [], body


@test
def test_no_key_is_401_except_root_and_probes():
    for method, path, body in READS + WRITES:
        status, answer = call(method, path, body)
        assert status == 401, (method, path, status, answer)
    for path in ("/healthz", "/livez", "/readyz"):
        status, answer = call("GET", path)
        assert status == 200, (path, status, answer)
    #  Qdrant leaves the root open (its api_key whitelist is "/", /healthz,
    #  /readyz, /livez), so clients can check the version before a key is set.
    status, answer = call("GET", "/")
    assert status == 200 and "version" in answer, (status, answer)
    for path in ("/telemetry", "/metrics", "/cluster"):
        status, answer = call("GET", path)
        assert status == 401, (path, status, answer)
    unchanged()


@test
def test_wrong_key_is_401():
    for key, bearer in (("wrong", None), (None, "wrong"), (RW + "x", None), (RW[:-1], None),
                        (None, RO + "x"), (RW.upper(), None)):
        for method, path, body in READS[:3] + WRITES[:2]:
            status, answer = call(method, path, body, key=key, bearer=bearer)
            assert status == 401, (key, bearer, method, path, status, answer)
    status, answer = node().request("GET", "/collections", headers={"api-key": ""},
                                    api_key=None)
    assert status == 401, (status, answer)
    #  "Bearer" is the only scheme Qdrant takes in Authorization.
    status, answer = node().request("GET", "/collections", headers={"Authorization": RW},
                                    api_key=None)
    assert status == 401, (status, answer)
    status, answer = node().request("GET", "/collections",
                                    headers={"Authorization": f"Basic {RW}"}, api_key=None)
    assert status == 401, (status, answer)
    unchanged()


@test
def test_api_key_header_and_bearer_token_both_work():
    for creds in ({"key": RW}, {"bearer": RW}):
        status, answer = call("GET", "/collections", **creds)
        assert status == 200, (creds, status, answer)
        status, answer = call("PUT", "/collections/made_with_key",
                              {"vectors": {"size": 2, "distance": "Dot"}}, **creds)
        assert status == 200 and answer["result"] is True, (creds, status, answer)
        status, answer = call("PUT", "/collections/made_with_key/points?wait=true",
                              {"points": [{"id": 1, "vector": [1.0, 2.0]}]}, **creds)
        assert status == 200 and answer["result"]["status"] == "completed", (status, answer)
        status, answer = call("POST", "/collections/made_with_key/points/count", {}, **creds)
        assert status == 200 and answer["result"] == {"count": 1}, (status, answer)
        status, answer = call("DELETE", "/collections/made_with_key", **creds)
        assert status == 200 and answer["result"] is True, (creds, status, answer)
        for path in ("/", "/telemetry", "/metrics", "/cluster"):
            status, answer = call("GET", path, **creds)
            assert status == 200, (creds, path, status, answer)
    unchanged()


@test
def test_read_only_key_reads_and_is_forbidden_to_write():
    for creds in ({"key": RO}, {"bearer": RO}):
        for method, path, body in READS:
            status, answer = call(method, path, body, **creds)
            assert status == 200, (creds, method, path, status, answer)
            assert answer["status"] == "ok", answer
        status, answer = call("POST", f"/collections/{NAME}/points/search",
                              {"vector": [1.0, 0.0], "limit": 3, "with_payload": True}, **creds)
        assert [(h["id"], h["payload"]) for h in answer["result"]] == \
            [(10, {"i": 10}), (9, {"i": 9}), (8, {"i": 8})], answer
        status, answer = call("POST", f"/collections/{NAME}/points/count", {}, **creds)
        assert answer["result"] == {"count": 10}, answer
        for method, path, body in WRITES:
            status, answer = call(method, path, body, **creds)
            assert status == 403, (creds, method, path, status, answer)
        unchanged()


if __name__ == "__main__":
    harness.main(shared=node)
