#!/usr/bin/env python3
"""test_cluster5: cluster mode with five real nodes on loopback. Bootstrap
and agreement; losing the leader and one more peer (three of five remain, a
majority: still works), then a third (no majority: collection operations
fail cleanly within their ?timeout=), then all of them coming back (works
again, everyone agrees); and a peer restarted with --reinit --bootstrap
rejoining with its peer id.

Every node has its own ports and storage dir and is stopped by pid (the
harness's Cluster). Waits are conditions polled with a deadline."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Cluster, assert_no_leader_op_fails, check_status_shape,  # noqa: E402
                     create, names, test, wait_for, wait_same_collections)


@test
def test_five_nodes_bootstrap_and_agree():
    with Cluster(5) as cluster:
        wait_for(lambda: all(s and s["raft_info"]["is_voter"]
                             for s in cluster.statuses().values()),
                 what="every peer to be a voter")
        leader = cluster.wait_agree()
        statuses = cluster.statuses()
        assert len({n.peer_id() for n in cluster.nodes}) == 5
        for node, status in statuses.items():
            check_status_shape(node, status)
            assert len(status["peers"]) == 5
            assert status["raft_info"]["role"] == ("Leader" if node is leader else "Follower")
        for i, node in enumerate(cluster.nodes):
            create(node, f"from-{i}")
        wait_same_collections(cluster.nodes, [f"from-{i}" for i in range(5)])


@test
def test_losing_peers_down_to_no_majority_and_back():
    with Cluster(5) as cluster:
        leader = cluster.wait_agree()
        create(leader, "start")
        wait_same_collections(cluster.nodes, ["start"])
        #  The leader and one follower die: three of five still decide.
        follower = next(n for n in cluster.nodes if n is not leader)
        first_down = [leader, follower]
        for node in first_down:
            node.crash()
        alive = [n for n in cluster.nodes if n not in first_down]
        new = cluster.wait_agree(alive, members=cluster.nodes)
        assert new not in first_down
        for node in alive:
            create(node, f"three-of-five-{node.peer_id()}")
        wait_same_collections(alive)
        #  A third dies (the new leader): two of five cannot decide anything.
        new.crash()
        down = first_down + [new]
        alive = [n for n in cluster.nodes if n not in down]
        for node in alive:
            assert_no_leader_op_fails(node, f"no-majority-{node.peer_id()}", "start")
        #  Everyone back, with their storage: it works again, all agree.
        for node in down:
            node.restart(args=[], wait_ready=False)
        cluster.wait_agree()
        create(alive[0], "back")
        final = wait_same_collections(cluster.nodes)
        assert "back" in final and "start" in final, final
        assert all(f"three-of-five-{n.peer_id()}" in final
                   for n in cluster.nodes if n not in down)


@test
def test_reinit_with_bootstrap_rejoins_with_the_same_peer_id():
    with Cluster(5) as cluster:
        leader = cluster.wait_agree()
        create(leader, "before-reinit")
        wait_same_collections(cluster.nodes, ["before-reinit"])
        peer = next(n for n in cluster.nodes if n is not leader)
        peer_id = peer.peer_id()
        assert peer.terminate() == 0
        #  While it is away the cluster moves on.
        create(leader, "while-away")
        peer.restart(args=["--reinit", "--bootstrap", leader.p2p_uri], wait_ready=False)
        cluster.wait_agree()
        assert peer.peer_id() == peer_id
        assert str(peer_id) in leader.cluster()["peers"]
        assert len(leader.cluster()["peers"]) == 5
        wait_same_collections(cluster.nodes, ["before-reinit", "while-away"])
        create(peer, "after-reinit")
        wait_same_collections(cluster.nodes, ["before-reinit", "while-away", "after-reinit"])
        assert names(peer) == sorted(["before-reinit", "while-away", "after-reinit"])


if __name__ == "__main__":
    harness.main()
