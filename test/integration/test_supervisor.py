#!/usr/bin/env python3
"""test_supervisor: the process tree of a node. One supervisor runs a raft
actor, a gateway and one shard actor per local shard replica; it restarts any
actor that dies, removes a deleted collection's actors and files, stops every
actor on SIGTERM, and its actors die with it even on kill -9."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, run_shoal, test, wait_for  # noqa: E402


def create_collection(node, name, shards=2, size=4):
    status, body = node.request("PUT", f"/collections/{name}", {
        "vectors": {"size": size, "distance": "Dot"}, "shard_number": shards})
    assert status == 200 and body["result"] is True, (status, body)


def shard_actors(node):
    """{'<uid>/<shard>': pid} of the node's shard actors."""
    return {role.split(":", 1)[1]: pid for pid, role in node.children().items()
            if role and role.startswith("shard:")}


def wait_shards(node, count):
    return wait_for(lambda: len(shard_actors(node)) == count and shard_actors(node),
                    what=f"{count} shard actors")


def upsert(node, name, ids):
    points = [{"id": i, "vector": [float(i), 1.0, 0.0, 0.5], "payload": {"n": i}}
              for i in ids]
    status, body = node.request("PUT", f"/collections/{name}/points?wait=true",
                                {"points": points})
    assert status == 200, (status, body)


def count(node, name):
    status, body = node.try_request("POST", f"/collections/{name}/points/count",
                                    {"exact": True})
    return body["result"]["count"] if status == 200 else None


def collection_dir(node, uid):
    return os.path.join(node.storage, "collections", str(uid))


@test
def test_node_runs_one_supervisor_with_raft_and_gateway():
    with Node() as node:
        wait_for(lambda: sorted(node.children().values()) == ["gateway", "raft"],
                 what="a raft actor and a gateway")
        assert node.all_pids() == sorted([node.pid, *node.children()]), \
            "every process of the node is the supervisor or one of its actors"
        with open(os.path.join(node.storage, "peer_id")) as f:
            peer_id = int(f.read())
        assert 1 <= peer_id <= 2 ** 53
        assert f"--peer-id {peer_id}" in " ".join(
            harness._cmdline(node.actors("raft")[0]))


@test
def test_collection_shards_get_one_actor_each_and_delete_removes_them_and_files():
    with Node() as node:
        create_collection(node, "procs", shards=2)
        shards = wait_shards(node, 2)
        uids = {key.split("/")[0] for key in shards}
        assert len(uids) == 1, shards
        uid = uids.pop()
        assert sorted(key.split("/")[1] for key in shards) == ["0", "1"], shards
        upsert(node, "procs", range(1, 21))
        assert count(node, "procs") == 20
        assert shard_actors(node) == shards, "the same two actors serve the writes"
        assert os.path.isdir(collection_dir(node, uid))

        status, body = node.request("DELETE", "/collections/procs")
        assert status == 200 and body["result"] is True, (status, body)
        wait_for(lambda: not shard_actors(node), what="shard actors to stop")
        wait_for(lambda: not os.path.exists(collection_dir(node, uid)),
                 what=f"collection dir {uid} to be removed")
        for pid in shards.values():
            assert not harness.pid_alive(pid)
        assert sorted(node.children().values()) == ["gateway", "raft"]


@test
def test_gateway_killed_is_restarted_and_serves_again():
    with Node() as node:
        old = node.actors("gateway")
        assert len(old) == 1
        os.kill(old[0], signal.SIGKILL)
        new = wait_for(lambda: [p for p in node.actors("gateway") if p not in old],
                       what="a new gateway pid")
        assert len(new) == 1
        node.wait_ready()
        status, body = node.request("GET", "/collections")
        assert status == 200, (status, body)
        with open(node.log_path) as f:
            assert "restarting gateway after signal 9" in f.read()


@test
def test_shard_actor_killed_is_restarted_with_its_points():
    with Node() as node:
        create_collection(node, "crashy", shards=2)
        shards = wait_shards(node, 2)
        upsert(node, "crashy", range(1, 51))
        assert count(node, "crashy") == 50
        victim_key, victim = sorted(shards.items())[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: shard_actors(node).get(victim_key) not in (None, victim),
                 what=f"shard {victim_key} to be restarted")
        assert len(shard_actors(node)) == 2
        wait_for(lambda: count(node, "crashy") == 50, what="all 50 points back")
        status, body = node.request("POST", "/collections/crashy/points",
                                    {"ids": list(range(1, 51)), "with_payload": True})
        assert status == 200, (status, body)
        assert sorted(p["id"] for p in body["result"]) == list(range(1, 51))
        assert all(p["payload"] == {"n": p["id"]} for p in body["result"])


@test
def test_raft_actor_killed_is_restarted_and_collections_remain():
    with Node() as node:
        create_collection(node, "meta", shards=2)
        shards = wait_shards(node, 2)
        upsert(node, "meta", range(1, 11))
        uid = next(iter(shards)).split("/")[0]
        old = node.actors("raft")
        os.kill(old[0], signal.SIGKILL)
        wait_for(lambda: [p for p in node.actors("raft") if p not in old],
                 what="a new raft pid")

        def listed():
            status, body = node.try_request("GET", "/collections")
            return status == 200 and "meta" in [c["name"] for c in
                                                 body["result"]["collections"]]
        wait_for(listed, what="the collection listed after the raft restart")
        status, body = node.request("GET", "/collections/meta")
        assert status == 200 and body["result"]["config"]["params"]["shard_number"] == 2
        #  A restarted raft actor must not make the supervisor drop shards.
        assert shard_actors(node) == shards
        assert os.path.isdir(collection_dir(node, uid))
        wait_for(lambda: count(node, "meta") == 10, what="the points after the restart")
        #  Metadata operations work again.
        create_collection(node, "meta2", shards=1)
        wait_shards(node, 3)


@test
def test_sigterm_stops_every_actor_and_exits_zero():
    with Node() as node:
        create_collection(node, "bye", shards=2)
        wait_shards(node, 2)
        pids = node.all_pids()
        assert len(pids) == 5, node.children()       # supervisor, raft, gateway, 2 shards
        node.kill(signal.SIGTERM)
        assert node.wait_exit() == 0
        wait_for(lambda: not any(harness.pid_alive(p) for p in pids),
                 what="every actor to exit")
        assert node.all_pids() == []
        with open(node.log_path) as f:
            log = f.read()
        assert "shutting down" in log and "did not stop in time" not in log, log[-2000:]


@test
def test_supervisor_killed_takes_its_actors_with_it():
    with Node() as node:
        create_collection(node, "orphans", shards=2)
        wait_shards(node, 2)
        actors = list(node.children())
        assert len(actors) == 4
        node.kill(signal.SIGKILL)
        node.wait_exit()
        wait_for(lambda: not any(harness.pid_alive(p) for p in actors),
                 what="the actors of a killed supervisor to die")
        assert node.all_pids() == []


@test
def test_restart_keeps_peer_id_and_collection_and_cleans_files_deleted_while_down():
    node = Node()
    try:
        with open(os.path.join(node.storage, "peer_id")) as f:
            peer_id = f.read()
        create_collection(node, "kept", shards=1)
        create_collection(node, "gone", shards=1)
        shards = wait_shards(node, 2)
        upsert(node, "kept", [1, 2, 3])
        status, body = node.request("GET", "/collections/gone")
        assert status == 200
        gone_uid = max(int(k.split("/")[0]) for k in shards)
        status, _ = node.request("DELETE", "/collections/gone")
        assert status == 200
        wait_for(lambda: not os.path.exists(collection_dir(node, gone_uid)),
                 what="the deleted collection's dir to go")

        #  A second supervisor on the same storage is refused.
        second = run_shoal([], env=node.env)
        assert second.returncode != 0 and "in use" in second.stderr, second.stderr

        node.kill(signal.SIGTERM)
        assert node.wait_exit() == 0
        #  Files of a collection deleted while the node was down (here: put
        #  back by hand) are removed once the state says it is gone.
        leftover = os.path.join(collection_dir(node, gone_uid), "0")
        os.makedirs(leftover)
        with open(os.path.join(leftover, "junk"), "w") as f:
            f.write("stale")
        node.start()
        with open(os.path.join(node.storage, "peer_id")) as f:
            assert f.read() == peer_id
        wait_for(lambda: not os.path.exists(collection_dir(node, gone_uid)),
                 what="files of a collection deleted while down to be removed")
        wait_for(lambda: count(node, "kept") == 3, what="the kept collection's points")
        assert len(shard_actors(node)) == 1
    finally:
        node.stop()


if __name__ == "__main__":
    harness.main()
