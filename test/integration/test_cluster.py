#!/usr/bin/env python3
"""test_cluster: cluster mode with three real nodes on loopback (and a fourth
joining). Raft over the p2p port: bootstrap, GET /cluster agreeing on every
node, collection metadata going through consensus from any peer, a new
leader after kill -9 of the old one and the old one rejoining, refusal
without a majority and recovery once it is back, peer removal, recovery of
a follower from the leader's snapshot, a late peer catching up from a
snapshot, joining through a follower, leadership handed over on SIGTERM,
and CURVE keeping a peer without the cluster key out.

Every node has its own ports and storage dir and is stopped by pid (the
harness's Cluster). Waits are conditions polled with a deadline, never
sleeps; no test asserts how long anything took."""
import os
import re
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Cluster, aliases, assert_no_leader_op_fails, check_status_shape,  # noqa: E402
                     config_of, create, names, run_shoal, test, vectors, wait_for,
                     wait_same_collections)

def replica_peers(node, name):
    """Peer ids holding a replica of a shard of collection name, from
    GET /telemetry?details_level=1 (the shards' replicate_states)."""
    status, body = node.request("GET", "/telemetry?details_level=1")
    assert status == 200, body
    for c in body["result"]["collections"]["collections"]:
        if c["id"] == name:
            return {int(p) for shard in c["shards"] for p in shard["replicate_states"]}
    raise AssertionError(f"no collection {name} in telemetry")


def send_failures(node, unknown=None):
    """GET /cluster's message_send_failures of node; unknown (default {})
    when the node does not answer."""
    status = node.cluster()
    if status is None:
        return {} if unknown is None else unknown
    return status["message_send_failures"]


def log_count(node, text):
    return node.log_text().count(text)


# --- tests ------------------------------------------------------------------

@test
def test_bootstrap_and_every_node_agrees():
    with Cluster(3) as cluster:
        first, *others = cluster.nodes
        leader = cluster.wait_agree()
        #  Voters all, once the learners are promoted.
        wait_for(lambda: all(s and s["raft_info"]["is_voter"]
                             for s in cluster.statuses().values()),
                 what="every peer to be a voter")
        leader = cluster.wait_agree()
        statuses = cluster.statuses()
        for node, status in statuses.items():
            check_status_shape(node, status)
            assert status["raft_info"]["role"] == ("Leader" if node is leader else "Follower")
        peers = statuses[first]["peers"]
        ids = {n.peer_id() for n in cluster.nodes}
        assert len(ids) == 3, "three distinct peer ids"
        #  The first peer is reached at its --uri; the others at the address
        #  their join came from, on their own p2p port.
        assert {int(k): v["uri"] for k, v in peers.items()} == \
            {n.peer_id(): n.p2p_uri for n in cluster.nodes}, peers
        #  /telemetry and /metrics say the same.
        for node, status in statuses.items():
            tel = node.request("GET", "/telemetry")[1]["result"]["cluster"]
            assert tel["enabled"] is True
            assert tel["status"]["number_of_peers"] == 3
            assert tel["status"]["peer_id"] == node.peer_id()
            assert tel["status"]["term"] == status["raft_info"]["term"]
            metrics = node.request("GET", "/metrics")[1]
            assert "cluster_peers_total 3\n" in metrics, metrics
            assert "cluster_voter 1\n" in metrics


@test
def test_consensus_thread_status_follows_the_raft_actor():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        follower = next(n for n in cluster.nodes if n is not leader)
        raft = follower.actors("raft")
        assert len(raft) == 1, follower.children()
        os.kill(raft[0], signal.SIGSTOP)
        try:
            status = wait_for(
                lambda: (follower.cluster() or {}).get("consensus_thread_status", {})
                .get("consensus_thread_status") == "stopped_with_err"
                and follower.cluster(), what="a stopped raft actor to be reported")
            assert status["consensus_thread_status"]["err"], status
        finally:
            os.kill(raft[0], signal.SIGCONT)
        wait_for(lambda: (follower.cluster() or {}).get("consensus_thread_status", {})
                 .get("consensus_thread_status") == "working",
                 what="the raft actor to be reported working again")
        cluster.wait_agree()


@test
def test_collections_created_on_followers_appear_everywhere():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        followers = [n for n in cluster.nodes if n is not leader]
        for i in range(6):
            create(followers[i % 2], f"c{i}")
        wait_same_collections(cluster.nodes, [f"c{i}" for i in range(6)])
        #  Update, aliases and delete from followers too.
        status, reply = followers[0].request(
            "PATCH", "/collections/c1", {"optimizers_config": {"indexing_threshold": 12345}})
        assert status == 200, reply
        status, reply = followers[1].request("POST", "/collections/aliases", {"actions": [
            {"create_alias": {"collection_name": "c2", "alias_name": "a2"}}]})
        assert status == 200, reply
        status, reply = followers[1].request("DELETE", "/collections/c0")
        assert status == 200 and reply["result"] is True, reply
        wait_same_collections(cluster.nodes, [f"c{i}" for i in range(1, 6)])
        wait_for(lambda: all((config_of(n, "c1") or {}).get("optimizer_config", {})
                             .get("indexing_threshold") == 12345 for n in cluster.nodes),
                 what="the update on every node")
        assert all(aliases(n) == {"a2": "c2"} for n in cluster.nodes)
        #  One order for everyone: the same name created at once from every
        #  peer with a different size: exactly one create wins (the others
        #  see it exists) and every node holds the winner's config.
        results = {}

        def race(node, size):
            results[size] = create(node, "race", vectors(size), expect=None)[0]
        threads = [threading.Thread(target=race, args=(n, 4 + i))
                   for i, n in enumerate(cluster.nodes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [size for size, status in results.items() if status == 200]
        assert len(winners) == 1 and sorted(results.values()) == [200, 409, 409], results
        wait_for(lambda: all((config_of(n, "race") or {}).get("params", {}).get("vectors", {})
                             .get("size") == winners[0] for n in cluster.nodes),
                 what="the winning create on every node")
        wait_same_collections(cluster.nodes)
        cluster.wait_agree()


@test
def test_kill_leader_new_leader_and_old_one_rejoins():
    with Cluster(3) as cluster:
        old = cluster.wait_agree()
        old_id = old.peer_id()
        create(old, "before")
        wait_same_collections(cluster.nodes, ["before"])
        term = old.cluster()["raft_info"]["term"]
        old.crash()
        survivors = [n for n in cluster.nodes if n is not old]
        new = cluster.wait_agree(survivors, members=cluster.nodes)
        assert new is not old and new.cluster()["raft_info"]["term"] > term
        #  The survivors report that they cannot reach the dead peer.
        failures = wait_for(lambda: send_failures(new).get(old.p2p_uri),
                            what="send failures to the dead peer in GET /cluster")
        assert failures["count"] >= 1 and failures["latest_error"], failures
        #  Collection operations work again, from either survivor.
        for node in survivors:
            create(node, f"after-{node.peer_id()}")
        expected = ["before"] + [f"after-{n.peer_id()}" for n in survivors]
        wait_same_collections(survivors, expected)
        #  Restarted with its storage and no --bootstrap, the old leader
        #  rejoins as a follower with its id and catches up.
        old.restart(args=[])
        leader = cluster.wait_agree()
        assert old.peer_id() == old_id
        assert leader is not old and old.cluster()["raft_info"]["role"] == "Follower"
        wait_same_collections(cluster.nodes, expected)
        wait_for(lambda: old.p2p_uri not in send_failures(new, {old.p2p_uri: None}),
                 what="the send failures to the restarted peer to clear")


@test
def test_majority_lost_ops_fail_cleanly_then_work_again():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        create(leader, "kept")
        wait_same_collections(cluster.nodes, ["kept"])
        survivor = next(n for n in cluster.nodes if n is not leader)
        down = [n for n in cluster.nodes if n is not survivor]
        for node in down:
            node.crash()
        assert_no_leader_op_fails(survivor, "lonely", "kept")
        #  Reads still answer.
        assert names(survivor) == ["kept"]
        for node in down:
            node.restart(args=[], wait_ready=False)
        cluster.wait_agree()
        create(survivor, "again")
        #  The refused operations never half-applied: every node holds the
        #  same collections, with "again" among them.
        final = wait_same_collections(cluster.nodes)
        assert "again" in final and "kept" in final, final


@test
def test_remove_peer():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        a, b = [n for n in cluster.nodes if n is not leader]
        #  Refused: an unknown id, a malformed one.
        unknown = max(n.peer_id() for n in cluster.nodes) + 1
        status, reply = a.request("DELETE", f"/cluster/peer/{unknown}")
        assert status == 404, (status, reply)
        status, reply = a.request("DELETE", "/cluster/peer/x1")
        assert status == 400, (status, reply)
        status, reply = a.request("DELETE", f"/cluster/peer/{2 ** 64 - 1}")
        assert status == 404, (status, reply)
        #  A peer holding a shard replica is refused unless force.
        create(leader, "spread", {**vectors(), "shard_number": 3})
        wait_same_collections(cluster.nodes, ["spread"])
        status, reply = a.request("DELETE", f"/cluster/peer/{b.peer_id()}")
        assert status == 400 and "shards" in reply["status"]["error"], (status, reply)
        status, reply = a.request("DELETE", "/collections/spread")
        assert status == 200, reply
        wait_same_collections(cluster.nodes, [])
        #  Removing a live follower, asked on the other follower.
        removed = b.peer_id()
        status, reply = a.request("DELETE", f"/cluster/peer/{removed}?timeout=30")
        assert status == 200 and reply["result"] is True, (status, reply)
        remaining = [leader, a]
        cluster.wait_agree(remaining)
        #  It stops participating: it knows it was removed, and what the others
        #  commit next never reaches it.
        wait_for(lambda: "removed from the consensus" in b.log_text(),
                 what="the removed peer to notice its removal")
        create(a, "without-b")
        wait_same_collections(remaining, ["without-b"])
        cluster.wait_agree(remaining)
        assert "without-b" not in (names(b) or []), "the removed peer still applies entries"
        assert str(removed) not in leader.cluster()["peers"]
        #  Force removes a peer with shards (its replicas go with it).
        create(leader, "spread2", {**vectors(), "shard_number": 2, "replication_factor": 2})
        wait_same_collections(remaining, ["without-b", "spread2"])
        assert a.peer_id() in replica_peers(leader, "spread2")
        status, reply = leader.request("DELETE", f"/cluster/peer/{a.peer_id()}?force=true")
        assert status == 200 and reply["result"] is True, (status, reply)
        cluster.wait_agree([leader])
        wait_for(lambda: a.peer_id() not in replica_peers(leader, "spread2"),
                 what="the removed peer's replicas to go")


@test
def test_remove_the_leader():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        follower = next(n for n in cluster.nodes if n is not leader)
        status, reply = follower.request("DELETE", f"/cluster/peer/{leader.peer_id()}")
        assert status == 200 and reply["result"] is True, (status, reply)
        remaining = [n for n in cluster.nodes if n is not leader]
        new = cluster.wait_agree(remaining)
        assert new is not leader
        create(follower, "after-leader-removed")
        wait_same_collections(remaining, ["after-leader-removed"])


@test
def test_recover_on_follower():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        follower = next(n for n in cluster.nodes if n is not leader)
        for i in range(3):
            create(leader, f"r{i}")
        wait_same_collections(cluster.nodes, ["r0", "r1", "r2"])
        installed = log_count(follower, "installed snapshot")
        status, reply = follower.request("POST", "/cluster/recover")
        assert status == 200 and reply["result"] is True, (status, reply)
        wait_for(lambda: log_count(follower, "installed snapshot") > installed,
                 what="the follower to install the leader's snapshot")
        cluster.wait_agree()
        wait_same_collections(cluster.nodes, ["r0", "r1", "r2"])
        create(follower, "r3")
        wait_same_collections(cluster.nodes, ["r0", "r1", "r2", "r3"])


@test
def test_late_peer_catches_up_from_a_snapshot():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        for i in range(4):
            create(cluster.nodes[i % 3], f"s{i}")
        wait_same_collections(cluster.nodes, [f"s{i}" for i in range(4)])
        #  1,000 metadata operations (alias create/delete), from every node
        #  at once: well past compact_wal_entries (128), so the log is
        #  compacted into snapshots several times.
        errors = []

        def churn(node, k):
            for j in range(250):
                alias = f"a{k}-{j % 5}"
                action = ({"create_alias": {"collection_name": f"s{j % 4}", "alias_name": alias}}
                          if (j // 5) % 2 == 0 else {"delete_alias": {"alias_name": alias}})
                status, reply = node.request("POST", "/collections/aliases",
                                             {"actions": [action]})
                if status != 200:
                    errors.append((status, reply))
        threads = [threading.Thread(target=churn, args=(cluster.nodes[k % 3], k))
                   for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        #  A few aliases that stay, so the newcomer has something to show.
        for i in range(3):
            status, reply = leader.request("POST", "/collections/aliases", {"actions": [
                {"create_alias": {"collection_name": f"s{i}", "alias_name": f"keep{i}"}}]})
            assert status == 200, reply
        commit = leader.cluster()["raft_info"]["commit"]
        assert commit >= 1000, commit
        expected = aliases(leader)
        late = cluster.add(bootstrap=leader)
        cluster.wait_agree()
        wait_same_collections(cluster.nodes, [f"s{i}" for i in range(4)])
        assert aliases(late) == expected
        assert {f"keep{i}" for i in range(3)} <= set(expected)
        assert "installed snapshot" in late.log_text(), \
            "the late peer did not start from a snapshot"


@test
def test_join_through_a_follower():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        follower = next(n for n in cluster.nodes if n is not leader)
        create(follower, "seen-by-newcomer")
        newcomer = cluster.add(bootstrap=follower)
        cluster.wait_agree()
        assert len(leader.cluster()["peers"]) == 4
        wait_same_collections(cluster.nodes, ["seen-by-newcomer"])
        create(newcomer, "from-newcomer")
        wait_same_collections(cluster.nodes, ["seen-by-newcomer", "from-newcomer"])


@test
def test_sigterm_leader_hands_leadership_over():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        term = leader.cluster()["raft_info"]["term"]
        assert leader.terminate() == 0
        survivors = [n for n in cluster.nodes if n is not leader]
        new = cluster.wait_agree(survivors, members=cluster.nodes)
        assert new.cluster()["raft_info"]["term"] == term + 1, cluster.describe(survivors)
        create(new, "after-handover")
        leader.restart(args=[])
        cluster.wait_agree()
        wait_same_collections(cluster.nodes, ["after-handover"])


@test
def test_reinit_alone_makes_a_single_voter_cluster_over_its_data():
    with Cluster(3) as cluster:
        leader = cluster.wait_agree()
        create(leader, "kept-by-reinit")
        wait_same_collections(cluster.nodes, ["kept-by-reinit"])
        for node in cluster.nodes:
            assert node.terminate() == 0
        survivor = next(n for n in cluster.nodes if n is not leader)
        peer_id = survivor.peer_id()
        survivor.restart(args=["--reinit"], wait_ready=False)
        alone = cluster.wait_agree([survivor])
        assert alone is survivor and survivor.peer_id() == peer_id
        assert names(survivor) == ["kept-by-reinit"]
        create(survivor, "new-era")
        wait_same_collections([survivor], ["kept-by-reinit", "new-era"])


def generate_key_pair():
    """(public, secret) from `shoal --generate-cluster-key`, which prints the
    config keys to set (YAML or KEY=VALUE lines)."""
    result = run_shoal(["--generate-cluster-key"])
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        m = re.search(r"(curve_public_key|curve_secret_key|CURVE_PUBLIC_KEY|CURVE_SECRET_KEY)"
                      r"\s*[:=]\s*\"?([^\"\s]+)\"?", line)
        if m:
            found[m.group(1).lower()] = m.group(2)
    assert set(found) == {"curve_public_key", "curve_secret_key"}, result.stdout
    return found["curve_public_key"], found["curve_secret_key"]


def key_env(public, secret):
    return {"QDRANT__CLUSTER__P2P__CURVE_PUBLIC_KEY": public,
            "QDRANT__CLUSTER__P2P__CURVE_SECRET_KEY": secret}


@test
def test_curve_cluster_works_and_keeps_a_keyless_peer_out():
    public, secret = generate_key_pair()
    other_public, other_secret = generate_key_pair()
    assert (public, secret) != (other_public, other_secret)
    with Cluster(3, env=key_env(public, secret)) as cluster:
        leader = cluster.wait_agree()
        follower = next(n for n in cluster.nodes if n is not leader)
        create(follower, "secret-stuff")
        wait_same_collections(cluster.nodes, ["secret-stuff"])
        members = list(cluster.nodes)
        #  A peer with another key pair tries to join, then a good one does:
        #  once the good one is in, the intruder still is not.
        intruder = cluster.add(bootstrap=leader, env=key_env(other_public, other_secret),
                               wait_ready=False)
        wait_for(lambda: intruder.peer_id() is not None and intruder.running(),
                 what="the intruder to start")
        good = cluster.add(bootstrap=follower)
        members.append(good)
        cluster.wait_agree(members)
        for node in members:
            assert str(intruder.peer_id()) not in node.cluster()["peers"]
        create(good, "still-secret")
        wait_same_collections(members, ["secret-stuff", "still-secret"])
        assert names(intruder) in ([], None), "the intruder got the cluster's metadata"
        status = intruder.cluster() or {}
        assert str(leader.peer_id()) not in status.get("peers", {}), status


if __name__ == "__main__":
    harness.main()
