#!/usr/bin/env python3
"""test_badinput: input that is wrong is answered with Qdrant's error status
and envelope, never with a crash. Malformed JSON, bodies that are not
objects, wrong vector sizes and element types, unknown enum values, bad
point ids, missing required fields, invalid filters, out-of-range limits,
bodies over service.max_request_size_mb (413, with and without a declared
length), unknown paths (404) and methods (405). After all of it the node
still answers searches correctly and no actor was restarted.

Unknown top-level fields follow Qdrant: its request bodies ignore fields
they do not know (so clients can send newer fields; see qdrant issue
#3345), while a Filter and the payload selectors reject them (400)."""
import json
import os
import select
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, test  # noqa: E402

zmq = harness.debian_module("zmq", __file__)

NAME = "bad"
POINTS = [{"id": i, "vector": [float(i), 1.0, 0.0, -1.0], "payload": {"i": i, "even": i % 2 == 0}}
          for i in range(1, 21)]
_state = {}


def node():
    """The suite's node (1 MB request limit) with a 4-d Dot collection, and
    the pids of its processes when the suite began."""
    if not _state or not _state["node"].running():
        n = Node(env={"QDRANT__SERVICE__MAX_REQUEST_SIZE_MB": "1"})
        status, body = n.request("PUT", f"/collections/{NAME}",
                                 {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 2})
        assert status == 200, (status, body)
        status, body = n.request("PUT", f"/collections/{NAME}/points?wait=true",
                                 {"points": POINTS})
        assert status == 200, (status, body)
        _state.update(node=n, children=n.children(), pids=n.all_pids())
    return _state["node"]


def error(status, body, *want):
    """Asserts an error answer with one of the wanted statuses and Qdrant's
    error envelope; returns the message."""
    assert status in want, (status, body, want)
    assert isinstance(body, dict), (status, body)
    assert isinstance(body.get("status"), dict), body
    message = body["status"].get("error")
    assert isinstance(message, str) and message, body
    assert isinstance(body.get("time"), (int, float)), body
    return message


def send(method, path, body, *want):
    n = node()
    return error(*n.request(method, path, body), *want)


def points_path(suffix=""):
    return f"/collections/{NAME}/points{suffix}"


def raw(port, head, body, chunk=1 << 16):
    """Sends a request byte for byte; stops sending as soon as the server
    answers (an early 413) and returns (status, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(head)
        answered = bool(select.select([s], [], [], 0.3)[0])
        sent = 0
        try:
            while not answered and sent < len(body):
                s.sendall(body[sent:sent + chunk])
                sent += chunk
                answered = bool(select.select([s], [], [], 0)[0])
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while True:
                part = s.recv(1 << 16)
                if not part:
                    break
                data += part
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    headers = data[:head_end].decode("latin-1").lower()
                    length = [int(line.split(":", 1)[1]) for line in headers.split("\r\n")
                              if line.startswith("content-length:")]
                    if length and len(data) >= head_end + 4 + length[0]:
                        break
        except ConnectionResetError:
            pass
        assert data.startswith(b"HTTP/1."), data[:200]
        status = int(data.split(b" ", 2)[1])
        return status, data[data.find(b"\r\n\r\n") + 4:]
    finally:
        s.close()


@test
def test_malformed_json_is_400():
    for body in (b"{", b"{\"points\": [", b"not json", b"{\"a\": 1,}", b"\xff\xfe{}",
                 b"{\"points\": [{\"id\": 1, \"vector\": [NaN, 1, 2, 3]}]}"):
        send("PUT", points_path("?wait=true"), body, 400)
        send("POST", points_path("/search"), body, 400)
    send("PUT", "/collections/newone", b"{\"vectors\": ", 400)
    assert node().request("GET", "/collections/newone/exists")[1]["result"] == {"exists": False}


@test
def test_deeply_nested_json_is_400_not_a_crash():
    deep = b"[" * 200000 + b"]" * 200000
    send("POST", points_path("/search"), deep, 400)
    deep_payload = ("{\"points\": [{\"id\": 1, \"vector\": [1, 2, 3, 4], \"payload\": "
                    + "{\"a\": " * 5000 + "1" + "}" * 5000 + "}]}").encode()
    send("PUT", points_path("?wait=true"), deep_payload, 400)


@test
def test_body_that_is_not_an_object_is_400():
    for body in ([1, 2, 3], "text", 42, None, True):
        data = json.dumps(body)
        send("PUT", points_path("?wait=true"), data, 400)
        send("POST", points_path("/search"), data, 400)
        send("POST", points_path("/scroll"), data, 400)
        send("PUT", "/collections/notobj", data, 400)


@test
def test_wrong_vector_size_and_element_types_are_400():
    message = send("PUT", points_path("?wait=true"),
                   {"points": [{"id": 1, "vector": [1.0, 2.0, 3.0]}]}, 400)
    assert "dim" in message.lower(), message
    send("PUT", points_path("?wait=true"),
         {"points": [{"id": 1, "vector": [1.0, 2.0, 3.0, 4.0, 5.0]}]}, 400)
    send("PUT", points_path("?wait=true"),
         {"batch": {"ids": [1, 2], "vectors": [[1.0, 2.0, 3.0, 4.0], [1.0]]}}, 400)
    send("PUT", points_path("?wait=true"),
         {"points": [{"id": 1, "vector": [1.0, "2", 3.0, 4.0]}]}, 400)
    send("PUT", points_path("?wait=true"),
         {"points": [{"id": 1, "vector": [1.0, None, 3.0, 4.0]}]}, 400)
    send("PUT", points_path("?wait=true"), {"points": [{"id": 1, "vector": []}]}, 400, 422)
    send("PUT", points_path("?wait=true"),
         {"points": [{"id": 1, "vector": {"nope": [1.0, 2.0, 3.0, 4.0]}}]}, 400)
    send("POST", points_path("/search"), {"vector": [1.0, 2.0], "limit": 3}, 400)
    send("POST", points_path("/query"), {"query": [1.0, 2.0, 3.0, 4.0, 5.0]}, 400)
    send("PUT", points_path("/vectors?wait=true"),
         {"points": [{"id": 1, "vector": [1.0]}]}, 400)
    #  Batch form whose lists differ in length.
    send("PUT", points_path("?wait=true"),
         {"batch": {"ids": [1, 2, 3], "vectors": [[1.0, 2.0, 3.0, 4.0]]}}, 400, 422)


@test
def test_bad_sparse_vectors_payloads_and_query_parameters_are_rejected():
    create = {"vectors": {"d": {"size": 2, "distance": "Dot"}}, "sparse_vectors": {"s": {}}}
    status, body = node().request("PUT", "/collections/sparse_bad", create)
    assert status == 200, (status, body)
    path = "/collections/sparse_bad/points?wait=true"
    for sparse in ({"indices": [1, 2], "values": [1.0]},
                   {"indices": [3, 3], "values": [1.0, 2.0]},
                   {"indices": [-1], "values": [1.0]},
                   {"indices": [1.5], "values": [1.0]},
                   {"indices": [1], "values": ["x"]},
                   {"indices": [1]},
                   [1.0, 2.0]):
        send("PUT", path, {"points": [{"id": 1, "vector": {"s": sparse}}]}, 400, 422)
    #  A dense vector given for a sparse name and the reverse.
    send("PUT", path, {"points": [{"id": 1, "vector": {"d": {"indices": [0],
                                                             "values": [1.0]}}}]}, 400, 422)
    for payload in ([1], "text", 5):
        send("PUT", path, {"points": [{"id": 1, "vector": {"d": [1.0, 2.0]},
                                       "payload": payload}]}, 400)
    send("PUT", "/collections/sparse_bad/points?wait=maybe",
         {"points": [{"id": 1, "vector": {"d": [1.0, 2.0]}}]}, 400)
    send("POST", "/collections/sparse_bad/points/count?timeout=soon", {}, 400)
    status, body = node().request("POST", "/collections/sparse_bad/points/count", {})
    assert status == 200 and body["result"] == {"count": 0}, body
    status, body = node().request("DELETE", "/collections/sparse_bad")
    assert status == 200, (status, body)


@test
def test_bad_collection_names_are_rejected():
    send("PUT", "/collections/" + "n" * 300, {"vectors": {"size": 2, "distance": "Dot"}},
         400, 422)
    status, body = node().request("GET", "/collections")
    assert [c["name"] for c in body["result"]["collections"]] == [NAME], body


@test
def test_unknown_distance_and_bad_collection_configs_are_rejected():
    for config in ({"vectors": {"size": 4, "distance": "Hamming"}},
                   {"vectors": {"size": 4}},
                   {"vectors": {"size": "4", "distance": "Dot"}},
                   {"vectors": {"size": -4, "distance": "Dot"}},
                   {"vectors": {"v": {"size": 4, "distance": "Jaccard"}}},
                   {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": "two"}):
        send("PUT", "/collections/badcfg", config, 400, 422)
    for config in ({"vectors": {"size": 0, "distance": "Dot"}},
                   {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 0}):
        send("PUT", "/collections/badcfg", config, 422)
    status, body = node().request("GET", "/collections/badcfg/exists")
    assert status == 200 and body["result"] == {"exists": False}, body


@test
def test_bad_point_ids_are_400():
    for bad in (-1, 1.5, "not-a-uuid", {}, [], None, True, 2 ** 64,
                "5c56c793-69f3-4fbf-87e6-c4bf54c28c2", "5c56c793-69f3-4fbf-87e6-c4bf54c28c26x"):
        send("PUT", points_path("?wait=true"),
             {"points": [{"id": bad, "vector": [1.0, 2.0, 3.0, 4.0]}]}, 400)
        send("POST", points_path(), {"ids": [bad]}, 400)
        send("POST", points_path("/delete?wait=true"), {"points": [1, bad]}, 400)
        if bad is not None:
            send("POST", points_path("/scroll"), {"offset": bad}, 400)
    send("GET", points_path("/not-a-uuid"), None, 400, 404)
    send("GET", points_path("/-5"), None, 400, 404)
    #  Nothing was written or deleted by the refused requests.
    status, body = node().request("POST", points_path("/count"), {"exact": True})
    assert status == 200 and body["result"] == {"count": len(POINTS)}, body


@test
def test_missing_required_fields_are_rejected():
    send("POST", points_path("/search"), {"limit": 3}, 400, 422)
    send("POST", points_path("/search"), {"vector": [1.0, 2.0, 3.0, 4.0]}, 400, 422)
    send("POST", points_path("/search/batch"), {}, 400, 422)
    send("POST", points_path("/search/batch"), {"searches": [{"limit": 1}]}, 400, 422)
    send("PUT", points_path("?wait=true"), {}, 400, 422)
    send("PUT", points_path("?wait=true"), {"points": [{"vector": [1.0, 2.0, 3.0, 4.0]}]}, 400)
    send("POST", points_path(), {}, 400, 422)
    send("POST", points_path("/payload?wait=true"), {"points": [1]}, 400, 422)
    send("POST", points_path("/payload/delete?wait=true"), {"points": [1]}, 400, 422)
    send("POST", points_path("/recommend"), {"limit": 3}, 400, 422)
    send("POST", "/collections/aliases", {}, 400, 422)


@test
def test_unknown_fields_rejected_in_filters_ignored_at_top_level_as_qdrant():
    n = node()
    send("POST", points_path("/scroll"), {"filter": {"bogus": []}}, 400)
    send("POST", points_path("/count"), {"filter": {"must": [], "oops": 1}}, 400)
    send("POST", points_path("/search"), {"vector": [1.0, 0, 0, 0], "limit": 2,
                                         "with_payload": {"include": ["i"], "extra": 1}}, 400)
    #  Qdrant ignores unknown top-level fields of a request body.
    status, body = n.request("POST", points_path("/search"),
                             {"vector": [1.0, 0.0, 0.0, 0.0], "limit": 2, "future_field": 1})
    assert status == 200 and [h["id"] for h in body["result"]] == [20, 19], (status, body)
    status, body = n.request("POST", points_path("/count"), {"exact": True, "new_flag": True})
    assert status == 200 and body["result"] == {"count": len(POINTS)}, (status, body)


@test
def test_unknown_top_level_fields_in_create_collection_are_ignored_as_qdrant():
    n = node()
    status, body = n.request("PUT", "/collections/extra_fields",
                             {"vectors": {"size": 2, "distance": "Dot"}, "future_option": True})
    assert status == 200 and body["result"] is True, (status, body)
    status, body = n.request("DELETE", "/collections/extra_fields")
    assert status == 200, (status, body)


@test
def test_invalid_filters_are_400():
    for flt in ({"must": "x"}, {"must": [{"key": "i", "match": {"nope": 1}}]},
                {"must": [{"key": "i"}]}, {"must": [{"match": {"value": 1}}]},
                {"must": [{"key": "i", "range": {"gt": "ten"}}]},
                {"must": [{"has_id": ["not-a-uuid"]}]}, {"should": {"key": "i"}},
                {"must": [{"key": "", "match": {"value": 1}}]}, [1]):
        send("POST", points_path("/scroll"), {"filter": flt}, 400, 422)
        send("POST", points_path("/search"), {"vector": [1.0, 0, 0, 0], "limit": 2,
                                             "filter": flt}, 400, 422)
        send("POST", points_path("/delete?wait=true"), {"filter": flt}, 400, 422)
    status, body = node().request("POST", points_path("/count"), {"exact": True})
    assert status == 200 and body["result"] == {"count": len(POINTS)}, body


@test
def test_limit_zero_or_negative_is_rejected():
    vec = [1.0, 0.0, 0.0, 0.0]
    send("POST", points_path("/query"), {"query": vec, "limit": 0}, 422)
    send("POST", points_path("/scroll"), {"limit": 0}, 422)
    send("POST", points_path("/search"), {"vector": vec, "limit": 0}, 400, 422)
    for path, body in (("/search", {"vector": vec, "limit": -1}),
                       ("/query", {"query": vec, "limit": -5}),
                       ("/scroll", {"limit": -1}),
                       ("/search", {"vector": vec, "limit": 3, "offset": -1}),
                       ("/search", {"vector": vec, "limit": 1.5})):
        send("POST", points_path(path), body, 400)


@test
def test_body_over_max_request_size_is_413():
    n = node()
    dim_ok = {"points": [{"id": 1000 + i, "vector": [0.5, 0.5, 0.5, 0.5],
                          "payload": {"pad": "x" * 800}} for i in range(1000)]}
    small = json.dumps(dim_ok).encode()
    assert 0.7e6 < len(small) < 1 << 20, len(small)
    status, body = n.request("PUT", points_path("?wait=true"), small)
    assert status == 200, (status, body)
    status, body = n.request("POST", points_path("/delete?wait=true"),
                             {"points": [1000 + i for i in range(1000)]})
    assert status == 200, (status, body)
    big = json.dumps({"points": [{"id": 5000 + i, "vector": [0.5, 0.5, 0.5, 0.5],
                                  "payload": {"pad": "y" * 1000}}
                                 for i in range(2000)]}).encode()
    assert len(big) > 2 * 1024 * 1024, len(big)
    path = points_path("?wait=true")
    head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n").encode()
    status, _ = raw(n.http_port, head, big)
    assert status == 413, status
    #  Without a declared length (chunked), the limit holds as well.
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 65536]), big[i:i + 65536])
                      for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
    head = (f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, _ = raw(n.http_port, head, chunks)
    assert status == 413, status
    status, body = n.request("POST", points_path("/count"), {"exact": True})
    assert status == 200 and body["result"] == {"count": len(POINTS)}, body


@test
def test_unknown_path_is_404_and_wrong_method_is_405():
    n = node()
    for method, path in (("GET", "/nope"), ("GET", "/collections/bad/nope"),
                         ("POST", "/collections/bad/points/nope/deeper"),
                         ("GET", "/collection")):
        status, _ = n.request(method, path)
        assert status == 404, (method, path, status)
    for method, path in (("DELETE", "/healthz"), ("POST", "/collections"),
                         ("DELETE", points_path("/search")), ("PUT", points_path("/scroll")),
                         ("DELETE", points_path("/count"))):
        status, _ = n.request(method, path, {} if method != "GET" else None)
        assert status == 405, (method, path, status)


def _header(version, kind, msg_type, request_id):
    """An envelope header (proto/envelope.h): 32 bytes little-endian."""
    return (b"SH" + bytes([version, kind]) + struct.pack("<HHiQQI", msg_type, 0, 0,
                                                       request_id, 0, 0))


@test
def test_malformed_envelopes_on_actor_sockets_are_answered_not_fatal():
    """Whatever reaches an actor's ipc socket: a frame that is no envelope is
    dropped (or answered as request 0), a request the actor cannot decode is
    answered -SH_EPROTO under its own type and request id, and the actors
    keep running (the last test checks none restarted)."""
    assert zmq is not None, "python3-zmq is needed (tools/deps installs it)"
    n = node()
    ipc = os.path.join(n.storage, "ipc")
    shard = sorted(f for f in os.listdir(ipc) if f.startswith("shard-"))[0]
    ctx = zmq.Context()
    try:
        for sock_name in ("raft.sock", shard):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.RCVTIMEO, 10000)
            dealer.connect("ipc://" + os.path.join(ipc, sock_name))
            #  A single garbage frame, then a header of a future version.
            dealer.send(b"\xff" * 40)
            dealer.send_multipart([_header(9, 0, 30, 4242), b"{}"])
            while True:
                frames = dealer.recv_multipart()
                head = frames[0]
                assert len(head) == 32 and head[:2] == b"SH" and head[3] == 1, (sock_name,
                                                                                  frames)
                msg_type, _, status, rid = struct.unpack("<HHiQ", head[4:20])
                assert status < 0, (sock_name, status)
                if rid == 4242:
                    assert msg_type == 30, (sock_name, msg_type)
                    break
                assert rid == 0, (sock_name, rid)
            dealer.close()
    finally:
        ctx.term()


@test
def test_node_still_serves_correctly_and_no_actor_restarted():
    n = node()
    status, body = n.request("POST", points_path("/search"),
                             {"vector": [1.0, 0.5, 0.0, 0.0], "limit": 5, "with_payload": True})
    assert status == 200, (status, body)
    #  Dot with [1, 0.5, 0, 0]: score = i + 0.5, highest ids first.
    assert [(h["id"], h["score"]) for h in body["result"]] == \
        [(i, i + 0.5) for i in range(20, 15, -1)], body
    assert [h["payload"] for h in body["result"]] == \
        [{"i": i, "even": i % 2 == 0} for i in range(20, 15, -1)], body
    status, body = n.request("POST", points_path("/count"), {"exact": True})
    assert status == 200 and body["result"] == {"count": len(POINTS)}, body
    assert n.children() == _state["children"], (n.children(), _state["children"])
    assert n.all_pids() == _state["pids"], (n.all_pids(), _state["pids"])
    with open(n.log_path, errors="replace") as f:
        log = f.read()
    assert "restarting" not in log, log[-2000:]


if __name__ == "__main__":
    harness.main(shared=node)
