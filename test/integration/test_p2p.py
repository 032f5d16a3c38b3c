#!/usr/bin/env python3
"""test_p2p: the p2p port of real nodes. With cluster.enabled the supervisor
runs a p2p actor, the only process listening on cluster.p2p.port; it is
restarted when killed and stopped after the raft actor. Garbage on the port
(raw bytes, well-formed ZMTP with bad frames, oversized frames) is dropped
and the node keeps serving REST and /cluster. Two nodes exchange requests
through their p2p actors (a local actor's request to the other node's raft
actor and p2p actor). With the cluster CURVE key pair only peers holding it
are admitted: a plain ZMTP client and a CURVE client with another key get
nothing delivered. The key config is validated and shoal
--generate-cluster-key prints a pair that works.

ZMTP needs pyzmq: Debian's python3-zmq (tools/deps installs it), which only
/usr/bin/python3 sees; the suite re-runs itself with that interpreter when
the one it was started with lacks it."""
import glob
import json
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, run_shoal, test, wait_for  # noqa: E402

zmq = harness.debian_module("zmq", __file__)

CLUSTER = {"QDRANT__CLUSTER__ENABLED": "true"}

ROUTE_REQUEST, ROUTE_REPLY, ROUTE_ONEWAY = 0, 1, 2
ROUTE_RAFT, ROUTE_SHARD, ROUTE_P2P = 1, 2, 3
MSG_META_GET, MSG_RAFT_JOIN, MSG_P2P_INFO = 1, 5, 10
RECV_MS = 10000               # bound of a receive that must succeed


def _error_codes():
    """{"SH_EINVAL": -1001, ...} from common/err.h: codes count up from 1001
    in the order of its table."""
    with open(os.path.join(harness.REPO, "common", "err.h")) as f:
        names = re.findall(r"X \((SH_E[A-Z]+),", f.read())
    return {name: -(1001 + i) for i, name in enumerate(names)}


SH_EUNAVAIL = _error_codes()["SH_EUNAVAIL"]
def need_zmq():
    assert zmq is not None, ("pyzmq is missing: install Debian's python3-zmq"
                             " (tools/deps does) for /usr/bin/python3")


# -- frames -------------------------------------------------------------------

def route(kind, actor, dst=0, uri="", src=0, uid=0, shard=0, token=0, version=1):
    raw = uri.encode()
    return (b"SP" + struct.pack("<BBBBHQQQIIQ", version, kind, actor, 0, len(raw), src, dst,
                                uid, shard, 0, token) + raw)


def envelope(type_, rid, body=None, deadline=0, kind=0):
    head = b"SH" + struct.pack("<BBHHiQQI", 1, kind, type_, 0, 0, rid, deadline, 0)
    return [head, json.dumps(body or {}).encode()]


def parse(frames):
    """(route dict, envelope dict) of [route][envelope frames]."""
    r = frames[0]
    assert r[:2] == b"SP" and len(r) >= 48, r[:16]
    (version, kind, actor, flags, uri_len, src, dst, uid, shard, _reserved,
     token) = struct.unpack("<BBBBHQQQIIQ", r[2:48])
    head = frames[1]
    assert head[:2] == b"SH" and len(head) == 32, head[:16]
    _v, ekind, type_, _r, status, rid, deadline, _r2 = struct.unpack("<BBHHiQQI", head[2:])
    return ({"kind": kind, "actor": actor, "src": src, "dst": dst, "token": token,
             "uri": r[48:48 + uri_len].decode()},
            {"reply": ekind == 1, "type": type_, "status": status, "rid": rid,
             "json": json.loads(frames[2])})


def peer_id(node):
    with open(os.path.join(node.storage, "peer_id")) as f:
        return int(f.read())


def ipc_endpoint(node):
    """The p2p actor's ipc endpoint (storage/ipc for the short test paths)."""
    path = os.path.join(node.storage, "ipc", "p2p.sock")
    wait_for(lambda: os.path.exists(path), what=f"{path} to exist")
    return "ipc://" + path


class Zmq:
    """The sockets a test opens, closed (linger 0) by the end of the with."""

    def __init__(self):
        need_zmq()
        self.ctx = zmq.Context()
        self.socks = []

    def dealer(self, endpoint, curve=None):
        """curve: (public, secret, server public) in Z85, or None."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, RECV_MS)
        if curve:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = (
                k.encode() for k in curve)
        sock.connect(endpoint)
        self.socks.append(sock)
        return sock

    def monitor(self, sock):
        mon = sock.get_monitor_socket()
        mon.setsockopt(zmq.RCVTIMEO, RECV_MS)
        self.socks.append(mon)
        return mon

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sock in self.socks:
            try:
                if sock.socket_type != zmq.PAIR:
                    sock.disable_monitor()
            except zmq.ZMQError:
                pass
        for sock in self.socks:
            sock.close(linger=0)
        self.ctx.term()
        return False


def handshake(mon):
    """'ok' when the ZMTP handshake succeeds, 'refused' when it fails, the
    peer drops the connection, or no handshake succeeds within the monitor's
    receive timeout (a refusing server may close the connection before the
    client's monitor reports anything, depending on timing)."""
    from zmq.utils.monitor import recv_monitor_message
    failed = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
              | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_DISCONNECTED)
    while True:
        try:
            event = recv_monitor_message(mon)["event"]
        except zmq.Again:
            return "refused"
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return "ok"
        if event & failed:
            return "refused"


def p2p_info(sock, rid, dst=0, uri=""):
    sock.send_multipart([route(ROUTE_REQUEST, ROUTE_P2P, dst=dst, uri=uri),
                         *envelope(MSG_P2P_INFO, rid)])
    r, env = parse(sock.recv_multipart())
    assert r["kind"] == ROUTE_REPLY and env["reply"] and env["rid"] == rid, (r, env)
    return r, env


def oversized_frame_is_refused(port):
    """Speaks ZMTP 3.0 (NULL mechanism) by hand: greeting, READY as a
    DEALER, then a data frame whose header says 2^40 bytes. True when the
    node closes the connection (it must not try to read, let alone
    allocate, the frame)."""
    greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
                + b"\x00" + b"\x00" * 31)
    prop = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    ready = b"\x05READY" + prop
    with socket.create_connection(("127.0.0.1", port), timeout=RECV_MS / 1000) as s:
        s.sendall(greeting + b"\x04" + bytes([len(ready)]) + ready)
        s.sendall(b"\x02" + struct.pack(">Q", 1 << 40) + b"x" * 1024)
        try:
            while s.recv(65536):
                pass                # the node's greeting and READY, then EOF
        except ConnectionResetError:
            pass
    return True


# -- processes and ports -------------------------------------------------------

def listeners(port):
    """Socket inodes listening on 127.0.0.1/0.0.0.0/:: port (TCP state 0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def holders(inodes):
    """Pids holding any of the socket inodes."""
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                    pids.add(int(name))
                    break
        except OSError:
            continue
    return pids


def p2p_pid(node):
    pids = node.actors("p2p")
    return pids[0] if len(pids) == 1 else None


def cluster_ok(node):
    status, body = node.try_request("GET", "/cluster", timeout=5)
    return status == 200 and body["result"]["status"] == "enabled"


def serves(node):
    """REST and /cluster answer, and a collection can be created and used."""
    assert cluster_ok(node), node.try_request("GET", "/cluster")
    name = f"c{time.monotonic_ns()}"
    status, body = node.request("PUT", f"/collections/{name}",
                                {"vectors": {"size": 2, "distance": "Dot"}})
    assert status == 200, (status, body)
    status, body = node.request("PUT", f"/collections/{name}/points?wait=true",
                                {"points": [{"id": 1, "vector": [1.0, 0.5]}]})
    assert status == 200, (status, body)
    status, body = node.request("POST", f"/collections/{name}/points/count", {"exact": True})
    assert status == 200 and body["result"]["count"] == 1, (status, body)


def log_text(node):
    with open(node.log_path, errors="replace") as f:
        return f.read()


def curve_env(public, secret):
    return {"QDRANT__CLUSTER__P2P__CURVE_PUBLIC_KEY": public,
            "QDRANT__CLUSTER__P2P__CURVE_SECRET_KEY": secret}


def generate_keys():
    result = run_shoal(["--generate-cluster-key"])
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    keys = {}
    for line in lines:
        key, _, value = line.partition(": ")
        assert value.startswith('"') and value.endswith('"'), line
        keys[key] = value[1:-1]
    assert sorted(keys) == ["curve_public_key", "curve_secret_key"], keys
    assert all(len(v) == 40 for v in keys.values()), keys
    return keys["curve_public_key"], keys["curve_secret_key"]


# -- tests ---------------------------------------------------------------------

@test
def test_cluster_node_runs_a_p2p_actor_that_alone_listens_on_the_p2p_port():
    with Node(env=CLUSTER) as node:
        pid = wait_for(lambda: p2p_pid(node), what="a p2p actor")
        assert sorted(node.children().values()) == ["gateway", "p2p", "raft"], node.children()
        assert f"--peer-id {peer_id(node)}" in " ".join(harness._cmdline(pid))
        inodes = wait_for(lambda: listeners(node.p2p_port), what="a listener on the p2p port")
        assert holders(inodes) == {pid}, (holders(inodes), node.children())
        assert cluster_ok(node)


@test
def test_node_without_cluster_mode_has_no_p2p_actor_and_no_p2p_port():
    with Node() as node:
        wait_for(lambda: sorted(node.children().values()) == ["gateway", "raft"],
                 what="raft and gateway")
        assert not listeners(node.p2p_port)


@test
def test_p2p_actor_killed_is_restarted_and_stopped_after_raft():
    node = Node(env=CLUSTER)
    try:
        old = wait_for(lambda: p2p_pid(node), what="a p2p actor")
        os.kill(old, 9)
        new = wait_for(lambda: (p2p_pid(node) or old) != old and p2p_pid(node),
                       what="a new p2p actor")
        wait_for(lambda: holders(listeners(node.p2p_port)) == {new},
                 what="the new p2p actor on the port")
        assert "restarting p2p after signal 9" in log_text(node)
        node.kill(15)
        assert node.wait_exit() == 0
        log = log_text(node)
        assert log.index("raft exited with exit status 0") < log.index(
            "p2p exited with exit status 0"), log[-2000:]
    finally:
        node.stop()


@test
def test_garbage_on_the_p2p_port_is_dropped_and_the_node_keeps_serving():
    need_zmq()
    with Node(env=CLUSTER) as node, Zmq() as z:
        pid = wait_for(lambda: p2p_pid(node), what="a p2p actor")
        wait_for(lambda: listeners(node.p2p_port), what="the p2p port")
        # Raw bytes that are not ZMTP, a half greeting, an HTTP request.
        for junk in (os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f\x03\x01NULL",
                     b"GET /cluster HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 70000):
            with socket.create_connection(("127.0.0.1", node.p2p_port), timeout=5) as s:
                s.sendall(junk)
        # Well-formed ZMTP, bad frames.
        peer = z.dealer(f"tcp://127.0.0.1:{node.p2p_port}")
        peer.send(b"garbage")
        peer.send_multipart([b"two", b"frames"])
        peer.send_multipart([b"many"] * 100)
        peer.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, version=9),
                             *envelope(MSG_META_GET, 1)])
        peer.send_multipart([route(ROUTE_REQUEST, 77), *envelope(MSG_META_GET, 2)])
        peer.send_multipart([route(ROUTE_REPLY, ROUTE_RAFT), *envelope(MSG_META_GET, 3,
                                                                        kind=1)])
        peer.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT), b"not an envelope", b"{}"])
        peer.send_multipart([route(ROUTE_REQUEST, ROUTE_SHARD, uid=0, shard=0)[:-1],
                             *envelope(MSG_META_GET, 4)])
        # A request for another peer id is answered with an error, not delivered.
        peer.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, dst=peer_id(node) + 1),
                             *envelope(MSG_META_GET, 5)])
        r, env = parse(peer.recv_multipart())
        assert env["rid"] == 5 and env["status"] == SH_EUNAVAIL, env
        # The port still answers a well-formed request, on the same connection.
        r, env = p2p_info(peer, 6, dst=peer_id(node))
        assert env["status"] == 0 and r["src"] == peer_id(node), (r, env)
        assert "peers" in env["json"] and "message_send_failures" in env["json"], env
        # A frame announcing 1 TiB: the connection is dropped, nothing allocated.
        assert oversized_frame_is_refused(node.p2p_port)
        serves(node)
        r, env = p2p_info(z.dealer(f"tcp://127.0.0.1:{node.p2p_port}"), 7)
        assert env["status"] == 0, env
        assert p2p_pid(node) == pid, "the p2p actor did not restart"
        assert "dropped" in log_text(node)


@test
def test_two_nodes_exchange_requests_through_their_p2p_actors():
    need_zmq()
    with Node(env=CLUSTER) as a, Node(env=CLUSTER) as b, Zmq() as z:
        wait_for(lambda: p2p_pid(a) and p2p_pid(b), what="two p2p actors")
        wait_for(lambda: cluster_ok(b), what="node b's consensus")
        local = z.dealer(ipc_endpoint(a))       # as node a's raft actor would
        b_uri = f"http://127.0.0.1:{b.p2p_port}"

        # To b's raft actor by uri (a bootstrap address): its state comes back.
        def meta_get(rid):
            local.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, uri=b_uri),
                                  *envelope(MSG_META_GET, rid,
                                            deadline=int(time.time() * 1000) + RECV_MS)])
            return parse(local.recv_multipart())
        r, env = wait_for(lambda: (lambda x: x[1]["status"] == 0 and x)(meta_get(11)),
                          what="node b's raft actor to answer through p2p")
        assert env["type"] == MSG_META_GET and env["reply"], env
        assert r["src"] == peer_id(b), r
        assert env["json"]["state"]["peer_id"] == peer_id(b), env
        # To b's p2p actor.
        r, env = p2p_info(local, 12, uri=b_uri)
        assert env["status"] == 0 and r["src"] == peer_id(b), (r, env)
        # a's own p2p actor answers P2P_INFO with the shape the gateway reads.
        r, env = p2p_info(local, 13)
        assert set(env["json"]) == {"message_send_failures", "peers"}, env
        # An unknown peer id: answered at once.
        local.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, dst=12345),
                              *envelope(MSG_RAFT_JOIN, 14)])
        r, env = parse(local.recv_multipart())
        assert env["rid"] == 14 and env["status"] == SH_EUNAVAIL and "12345" in \
            env["json"]["error"], env
        # A node that is gone: unavailable, and counted as a send failure.
        dead = f"http://127.0.0.1:{harness.free_ports(1)[0]}"
        local.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, uri=dead),
                              *envelope(MSG_RAFT_JOIN, 15)])
        r, env = parse(local.recv_multipart())
        assert env["rid"] == 15 and env["status"] == SH_EUNAVAIL, env
        r, env = p2p_info(local, 16)
        failure = env["json"]["message_send_failures"][dead]
        assert failure["count"] >= 1 and failure["latest_error"], failure
        assert failure["latest_error_timestamp"].endswith("Z"), failure


@test
def test_curve_admits_only_peers_holding_the_cluster_key():
    need_zmq()
    public, secret = generate_keys()
    other_public, other_secret = generate_keys()
    keyed = {**CLUSTER, **curve_env(public, secret)}
    with Node(env=keyed) as a, Node(env=keyed) as b, Zmq() as z:
        wait_for(lambda: p2p_pid(a) and p2p_pid(b), what="two p2p actors")
        wait_for(lambda: listeners(b.p2p_port), what="node b's p2p port")
        endpoint = f"tcp://127.0.0.1:{b.p2p_port}"
        # Plain ZMTP: refused in the handshake, nothing delivered.
        plain = z.dealer(endpoint)
        plain_mon = z.monitor(plain)
        plain.send_multipart([route(ROUTE_REQUEST, ROUTE_P2P), *envelope(MSG_P2P_INFO, 1)])
        assert handshake(plain_mon) == "refused"
        assert plain.poll(0) == 0
        wait_for(lambda: "a handshake on the p2p port failed" in log_text(b),
                 what="node b to log the failed handshake")
        # CURVE with b's public key but a key pair of its own: refused by ZAP.
        stranger = z.dealer(endpoint, curve=(other_public, other_secret, public))
        stranger_mon = z.monitor(stranger)
        stranger.send_multipart([route(ROUTE_REQUEST, ROUTE_P2P),
                                 *envelope(MSG_P2P_INFO, 2)])
        assert handshake(stranger_mon) == "refused"
        assert stranger.poll(0) == 0
        wait_for(lambda: "it does not hold the cluster key" in log_text(b),
                 what="node b to log the refusal")
        # The cluster key pair: admitted.
        member = z.dealer(endpoint, curve=(public, secret, public))
        r, env = p2p_info(member, 3)
        assert env["status"] == 0 and r["src"] == peer_id(b), (r, env)
        # And node a, holding the key, reaches node b's raft actor.
        local = z.dealer(ipc_endpoint(a))
        local.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT,
                                    uri=f"http://127.0.0.1:{b.p2p_port}"),
                              *envelope(MSG_META_GET, 4,
                                        deadline=int(time.time() * 1000) + RECV_MS)])
        r, env = parse(local.recv_multipart())
        assert env["rid"] == 4 and env["status"] == 0, env
        assert env["json"]["state"]["peer_id"] == peer_id(b), env
        serves(b)


@test
def test_a_node_with_another_cluster_key_cannot_reach_a_keyed_node():
    need_zmq()
    public, secret = generate_keys()
    other_public, other_secret = generate_keys()
    with Node(env={**CLUSTER, **curve_env(public, secret)}) as b, \
            Node(env={**CLUSTER, **curve_env(other_public, other_secret)}) as c, \
            Node(env=CLUSTER) as plain, Zmq() as z:
        wait_for(lambda: p2p_pid(b) and p2p_pid(c) and p2p_pid(plain), what="p2p actors")
        wait_for(lambda: listeners(b.p2p_port), what="node b's p2p port")
        b_uri = f"http://127.0.0.1:{b.p2p_port}"
        for node, rid in ((c, 1), (plain, 2)):
            local = z.dealer(ipc_endpoint(node))
            local.send_multipart([route(ROUTE_REQUEST, ROUTE_RAFT, uri=b_uri),
                                  *envelope(MSG_META_GET, rid,
                                            deadline=int(time.time() * 1000) + RECV_MS)])
            r, env = parse(local.recv_multipart())
            assert env["rid"] == rid and env["status"] == SH_EUNAVAIL, env
            assert b_uri in env["json"]["error"], env
        serves(b)


@test
def test_cluster_key_config_is_validated():
    public, secret = generate_keys()
    other_public, _ = generate_keys()
    cases = [
        (public, None, "go together"),
        (public, other_public.replace(other_public[0], "~" if other_public[0] != "~" else "x"),
         "Z85"),
        (public[:39], secret, "40 characters"),
        (other_public, secret, "not the public key"),
    ]
    for pub, sec, message in cases:
        env = {**CLUSTER, "QDRANT__CLUSTER__P2P__CURVE_PUBLIC_KEY": pub}
        if sec is not None:
            env["QDRANT__CLUSTER__P2P__CURVE_SECRET_KEY"] = sec
        result = run_shoal([], env=env)
        assert result.returncode == 2, (pub, sec, result)
        assert message in result.stderr, result.stderr
        assert secret not in result.stderr, "the secret key must never be printed"


@test
def test_generated_keys_work_from_a_config_file():
    need_zmq()
    public, secret = generate_keys()
    yaml = ("cluster:\n  enabled: true\n  p2p:\n"
            f'    curve_public_key: "{public}"\n    curve_secret_key: "{secret}"\n')
    with Node(files={"config/config.yaml": yaml}) as node, Zmq() as z:
        wait_for(lambda: p2p_pid(node), what="a p2p actor")
        assert "CURVE, cluster key required" in log_text(node)
        member = z.dealer(f"tcp://127.0.0.1:{node.p2p_port}", curve=(public, secret, public))
        r, env = p2p_info(member, 1)
        assert env["status"] == 0, env
        assert secret not in log_text(node), "the secret key must never be logged"


@test
def test_p2p_port_in_use_is_logged_and_the_rest_of_the_node_works():
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    try:
        node = Node(env=CLUSTER, start=False)
        holder.bind(("127.0.0.1", node.p2p_port))
        holder.listen(1)
        node.start()
        wait_for(lambda: "cannot listen on tcp://127.0.0.1:%d" % node.p2p_port
                 in log_text(node), what="the p2p actor to log the port in use")
        assert "Address already in use" in log_text(node)
        status, body = node.request("GET", "/collections")
        assert status == 200, (status, body)
        holder.close()
        pid = wait_for(lambda: holders(listeners(node.p2p_port)) & set(node.actors("p2p"))
                       and p2p_pid(node), what="the p2p actor once the port is free")
        assert holders(listeners(node.p2p_port)) == {pid}
        node.stop()
    finally:
        holder.close()


if __name__ == "__main__":
    harness.main()
