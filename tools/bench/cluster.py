#!/usr/bin/env python3
"""cluster: shoal's sharding measured the way a client sees it — one node
against a cluster of N nodes on this machine, with the same total number of
shards, and one shard move.

For each of the two set-ups it starts the nodes in cluster mode (the
integration harness's Cluster: free loopback ports, temp storage dirs,
every process stopped by pid at the end), creates a collection of --shards
shards, upserts the points through REST (batches of --batch, wait=true,
--upload-clients streams, spread over the nodes), then measures exact and
HNSW top-10 searches: latency with one client through the first node (p50,
p99) and throughput with --threads clients spread over the nodes. The HNSW
rows search real graphs: the collection is made with full_scan_threshold
and indexing_threshold at 10 KB, so every shard builds and uses its index
(the rows wait for status green). On the cluster it then upserts the same
points into a second collection of one shard, moves that shard to another
peer and times the move until every node shows it settled (a whole data
set in one shard, so the stream dominates the move's fixed costs: the
consensus round trips and the target's new shard actor). It prints a table
with the issue's yardsticks beside the numbers:

- fan-out overhead per search (p50 of one client, N nodes minus 1 node):
  under 1 ms; an exact count row shows the fan-out's cost alone (every
  shard asked, next to no work in each);
- shard move throughput (vector and payload bytes of the moved points per
  second of the move): 50 MB/s or more.

A cluster on one machine cannot be faster than one node (the same cores do
the same work plus the hops); the overhead is what is looked at.

    tools/bench/cluster.py                                    # 100k x 128 random
    tools/bench/cluster.py --data build/data --name gmm-100k-128-euclidean
    tools/bench/cluster.py --data build/data --name fashion-mnist-784-euclidean

Request bodies are encoded before the clock starts. Standard library only;
the node-starting code is the harness's and the data/percentile code is
bench.py's (imported, not copied).
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "test", "integration"))
import bench  # noqa: E402
import harness  # noqa: E402

NAME = "bench"
MOVE_NAME = "bench_move"
COMMENT = re.compile(r"^Transferring records \((\d+)/(\d+)\)$")
OVERHEAD_TARGET_MS = 1.0
MOVE_TARGET_MBS = 50.0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "shoal"))
    ap.add_argument("--nodes", type=int, default=3, help="nodes of the cluster set-up")
    ap.add_argument("--shards", type=int, default=6, help="shards, the same in both set-ups")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--distance", default="Euclid")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--searches", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="concurrent clients for the throughput rows")
    ap.add_argument("--upload-clients", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--data", help="dir of an fvecs data set (with --name)")
    ap.add_argument("--name", help="data set name, e.g. gmm-100k-128-euclidean")
    ap.add_argument("--no-hnsw", action="store_true", help="skip the HNSW rows")
    ap.add_argument("--move-only", action="store_true",
                    help="only the shard move on the cluster set-up (no 1-node run, no "
                         "searches): for iterating on the move")
    ap.add_argument("--perf", metavar="FILE",
                    help="with --move-only: perf record -a -g into FILE.N during move N "
                         "(the actors' pids are printed for perf report --pid)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="with --move-only: an environment variable for every node "
                         "(repeatable), e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    ap.add_argument("--moves", type=int, default=1,
                    help="with --move-only: moves of the shard, back and forth, each timed")
    ap.add_argument("--fanout-only", action="store_true",
                    help="only the 1-client latency rows: no move, no --threads rows")
    args = ap.parse_args()
    if args.nodes < 2 or args.shards < args.nodes:
        ap.error("--nodes must be 2 or more and --shards at least --nodes")
    return args


class Workload:
    """The points (as encoded upsert bodies) and the search bodies."""

    def __init__(self, args):
        rng = random.Random(42)
        if args.data:
            stem = os.path.join(args.data, args.name or "")
            base = bench.read_vecs(stem + ".base.fvecs", "f")[:args.points]
            queries = bench.read_vecs(stem + ".query.fvecs", "f")[:args.searches]
            args.points, args.dim = len(base), len(base[0])
            if "angular" in (args.name or ""):
                args.distance = "Cosine"
            self.what = args.name
        else:
            base = None
            queries = [[rng.uniform(-1, 1) for _ in range(args.dim)]
                       for _ in range(args.searches)]
            self.what = "uniform random"
        self.points = args.points
        self.bodies = []
        payload_bytes = 0
        for start in range(0, args.points, args.batch):
            ids = list(range(start, min(args.points, start + args.batch)))
            vectors = (base[start:start + len(ids)] if base else
                       [[round(rng.uniform(-1, 1), 6) for _ in range(args.dim)] for _ in ids])
            payloads = [{"i": i, "g": i % 10} for i in ids]
            payload_bytes += sum(len(json.dumps(p, separators=(",", ":"))) for p in payloads)
            self.bodies.append(json.dumps({"batch": {"ids": ids, "vectors": vectors,
                                                     "payloads": payloads}}).encode())
        #  What a point weighs in a move: its float32 vector and its payload.
        self.point_bytes = 4 * args.dim + payload_bytes / args.points
        self.queries = {
            "exact": [json.dumps({"vector": q, "limit": 10,
                                  "params": {"exact": True}}).encode() for q in queries],
            "hnsw": [json.dumps({"vector": q, "limit": 10}).encode() for q in queries],
        }


def conn(node):
    return bench.Conn("127.0.0.1", node.http_port)


def upload(nodes, work, clients, name=NAME):
    """Upserts every body into name, over `clients` streams spread over
    nodes; the seconds it took."""
    errors = []

    def stream(node, parts):
        try:
            c = conn(node)
            for body in parts:
                c.call("PUT", f"/collections/{name}/points?wait=true", body)
        except Exception as exc:    # reported after the join
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(nodes[i % len(nodes)],
                                                     work.bodies[i::clients]))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def searches(nodes, bodies, threads, path="/points/search"):
    """(requests/s, p50 ms, p99 ms) of bodies POSTed to path over `threads`
    clients, client i through nodes[i % len(nodes)]."""
    lat = []
    lock = threading.Lock()
    errors = []

    def worker(node, chunk):
        try:
            c = conn(node)
            mine = []
            for body in chunk:
                s = time.perf_counter()
                c.call("POST", f"/collections/{NAME}{path}", body)
                mine.append(time.perf_counter() - s)
            with lock:
                lat.extend(mine)
        except Exception as exc:
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(nodes[i % len(nodes)], bodies[i::threads]))
          for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return len(lat) / wall, bench.percentile(lat, 50) * 1e3, bench.percentile(lat, 99) * 1e3


def cluster_info(node, name):
    return conn(node).call("GET", f"/collections/{name}/cluster")["result"]


def placement(node, name):
    info = cluster_info(node, name)
    out = {}
    for s in info["local_shards"]:
        out.setdefault(s["shard_id"], {})[info["peer_id"]] = (s["state"], s["points_count"])
    for s in info["remote_shards"]:
        out.setdefault(s["shard_id"], {})[s["peer_id"]] = (s["state"], None)
    return out, info["shard_transfers"]


def cpu_seconds(pid, tid=None):
    """utime + stime of pid (or of its thread tid) in seconds, None once it
    is gone."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU seconds each actor of the cluster used between start() and the
    last sample(): actors that start meanwhile count from zero, actors that
    exit keep their last sample."""

    def __init__(self, c):
        self.c = c
        self.first = {}
        self.last = {}
        self.roles = {}

    def _scan(self):
        for i, node in enumerate(self.c.nodes):
            for pid, role in node.children().items():
                #  A child caught between fork and exec has no role yet.
                if role and pid not in self.roles:
                    self.roles[pid] = f"node{i + 1}/peer {node.peer_id()} {role}"
                    if role.startswith("shard"):
                        #  Its main thread apart from the rest (workers,
                        #  optimizer): which one a move loads matters.
                        self.roles[(pid, pid)] = f"  ... of which its main thread"

    def _cpu(self, key):
        return cpu_seconds(*key) if isinstance(key, tuple) else cpu_seconds(key)

    def start(self):
        self._scan()
        for key in self.roles:
            self.first[key] = self._cpu(key) or 0.0
        self.last = dict(self.first)

    def sample(self, rescan=False):
        if rescan:
            self._scan()
        for key in self.roles:
            v = self._cpu(key)
            if v is not None:
                self.last[key] = v

    def report(self):
        """[(cpu seconds, what)], busiest actor first, each shard actor's
        main thread right after it."""
        def used(key):
            return self.last.get(key, 0.0) - self.first.get(key, 0.0)
        rows = []
        for key in sorted((k for k in self.roles if not isinstance(k, tuple)),
                          key=used, reverse=True):
            if used(key) < 0.005:
                continue
            rows.append((used(key), self.roles[key]))
            if (key, key) in self.roles:
                rows.append((used((key, key)), self.roles[(key, key)]))
        return rows


def measure_move(c, work, name, cpu=None):
    """Moves the biggest shard of name to the peer holding fewest shards;
    returns (shard, points, seconds end to end, seconds streaming or None).
    cpu (a CpuWatch) is sampled all along."""
    by_id = {n.peer_id(): n for n in c.nodes}
    sizes = {}
    for node in c.nodes:
        for s in cluster_info(node, name)["local_shards"]:
            sizes[s["shard_id"]] = (s["points_count"], node.peer_id())
    sid = max(sizes, key=lambda s: sizes[s][0])
    points, src = sizes[sid]
    load = {p: 0 for p in by_id}
    for _, p in sizes.values():
        load[p] += 1
    dst = min((p for p in load if p != src), key=lambda p: (load[p], p))
    source = by_id[src]
    body = {"move_shard": {"shard_id": sid, "from_peer_id": src, "to_peer_id": dst}}
    if cpu:
        cpu.start()
    t0 = time.perf_counter()
    conn(source).call("POST", f"/collections/{name}/cluster", body)
    streaming_since = None
    polls = 0
    while True:
        pl, transfers = placement(source, name)
        now = time.perf_counter()
        if cpu:
            cpu.sample(rescan=polls % 5 == 0)
            polls += 1
        if not transfers and set(pl[sid]) == {dst} and pl[sid][dst][0] == "Active":
            break
        if not transfers and src in pl[sid]:
            raise RuntimeError(f"the move of shard {sid} was aborted (see the nodes' logs)")
        for t in transfers:
            m = COMMENT.match(t.get("comment", ""))
            if streaming_since is None and m and int(m.group(2)) > 0:
                streaming_since = now
        if now - t0 > 3600:
            raise RuntimeError("the move did not finish within an hour")
        #  Every poll asks the source's gateway and shard actor, on the cores
        #  the move needs: 20 ms is 2% of a 1 s move and half the load of 10.
        time.sleep(0.02)
    end = time.perf_counter()
    if cpu:
        cpu.sample(rescan=True)
    #  Settled on every node, not only the source.
    harness.wait_for(lambda: all(not placement(n, name)[1]
                                 and set(placement(n, name)[0][sid]) == {dst}
                                 for n in c.nodes), what="every node to show the move")
    return sid, points, end - t0, (end - streaming_since) if streaming_since else None


def move_setup(nodes, args, work):
    """A collection of one shard holding every point, its index built."""
    conn(nodes[0]).call("PUT", f"/collections/{MOVE_NAME}", {
        "vectors": {"size": args.dim, "distance": args.distance},
        "shard_number": 1})
    harness.wait_same_collections(nodes, [MOVE_NAME])
    upload(nodes, work, args.upload_clients, MOVE_NAME)
    #  The source's index built first: the move is timed alone.
    harness.wait_for(lambda: conn(nodes[0]).call(
        "GET", f"/collections/{MOVE_NAME}")["result"]["status"] == "green",
        timeout=3600, what="the moving shard's index", interval=0.5)


def run_moves(args, work):
    """--move-only: the cluster set-up's moves alone, each one's numbers
    printed as it ends."""
    env = {"QDRANT__LOG_LEVEL": "warn"}
    env.update(kv.split("=", 1) for kv in args.env)
    with harness.Cluster(args.nodes, env=env) as c:
        move_setup(c.nodes, args, work)
        for i in range(args.moves):
            if i:
                #  The target's index is built before the next move, as the
                #  source's was before the first.
                harness.wait_for(lambda: all(
                    conn(n).call("GET", f"/collections/{MOVE_NAME}")["result"]["status"]
                    == "green" for n in c.nodes), timeout=3600,
                    what="the moved shard's index", interval=0.5)
            cpu = CpuWatch(c)
            perf = None
            if args.perf:
                perf = subprocess.Popen(["perf", "record", "-a", "--call-graph", "dwarf,8192", "-F", "1999", "-q",
                                         "-o", f"{args.perf}.{i + 1}"],
                                        stdout=subprocess.DEVNULL)
                time.sleep(0.3)     # perf's own start, before the clock
            try:
                sid, points, secs, streaming = measure_move(c, work, MOVE_NAME, cpu)
            finally:
                if perf:
                    perf.send_signal(signal.SIGINT)
                    perf.wait()
            mb = points * work.point_bytes / 1e6
            line = (f"move {i + 1}: shard {sid}, {points:,} points, {mb:.1f} MB: "
                    f"{secs:.2f} s, {mb / secs:.1f} MB/s")
            if streaming:
                line += f" (streaming {streaming:.2f} s: {mb / streaming:.1f} MB/s)"
            print(line, flush=True)
            for secs_cpu, role in cpu.report():
                print(f"    cpu {secs_cpu:6.2f} s  {role}", flush=True)
            if perf:
                print("    pids: " + ", ".join(f"{pid} {role}" for pid, role in
                                                cpu.roles.items() if isinstance(pid, int)))
    return 0


def run(args, work, n_nodes):
    """One set-up: a dict of measurements."""
    out = {"nodes": n_nodes}
    env = {"QDRANT__LOG_LEVEL": "warn"}
    with harness.Cluster(n_nodes, env=env) as c:
        nodes = c.nodes
        conn(nodes[0]).call("PUT", f"/collections/{NAME}", {
            "vectors": {"size": args.dim, "distance": args.distance},
            "shard_number": args.shards,
            "hnsw_config": {"full_scan_threshold": 10},
            "optimizers_config": {"indexing_threshold": 10}})
        harness.wait_same_collections(nodes, [NAME])
        secs = upload(nodes, work, args.upload_clients)
        out["upsert"] = work.points / secs
        for node in nodes:
            got = conn(node).call("POST", f"/collections/{NAME}/points/count",
                                  {"exact": True})["result"]["count"]
            if got != work.points:
                raise RuntimeError(f"count {got} != {work.points} through peer {node.peer_id()}")
        #  An exact count asks every shard and computes next to nothing:
        #  its latency is the fan-out's own cost.
        counts = [b'{"exact": true}'] * len(work.queries["exact"])
        out["count"] = (searches(nodes[:1], counts, 1, "/points/count"),
                        (0, 0, 0) if args.fanout_only
                        else searches(nodes, counts, args.threads, "/points/count"))
        kinds = ["exact"] if args.no_hnsw else ["exact", "hnsw"]
        for kind in kinds:
            if kind == "hnsw":
                t0 = time.perf_counter()
                harness.wait_for(lambda: all(
                    conn(n).call("GET", f"/collections/{NAME}")["result"]["status"] == "green"
                    for n in nodes), timeout=3600, what="the HNSW indexes", interval=0.5)
                out["index_wait"] = time.perf_counter() - t0
                indexed = conn(nodes[0]).call("GET", f"/collections/{NAME}")["result"][
                    "indexed_vectors_count"]
                if indexed < work.points:
                    raise RuntimeError(f"green with {indexed} of {work.points} vectors indexed")
            bodies = work.queries[kind]
            one = searches(nodes[:1], bodies, 1)
            many = (0, 0, 0) if args.fanout_only else searches(nodes, bodies, args.threads)
            out[kind] = (one, many)
        if n_nodes > 1 and not args.fanout_only:
            #  The collection measured so far goes: its indexes would only
            #  compete with the move for the cores.
            conn(nodes[0]).call("DELETE", f"/collections/{NAME}")
            move_setup(nodes, args, work)
            out["move"] = measure_move(c, work, MOVE_NAME)
    return out


def main():
    args = parse_args()
    harness.SHOAL_BIN = os.path.abspath(args.bin)
    if not os.access(harness.SHOAL_BIN, os.X_OK):
        sys.exit(f"no shoal binary at {harness.SHOAL_BIN} (--bin)")
    work = Workload(args)
    if args.move_only:
        return run_moves(args, work)
    results = [run(args, work, 1), run(args, work, args.nodes)]
    single, multi = results

    print(f"shoal cluster benchmark ({work.what}): {work.points} points x {args.dim} dims, "
          f"{args.distance}, {args.shards} shards, batches of {args.batch} with wait=true "
          f"over {args.upload_clients} streams, {os.cpu_count()} cores, every node on this "
          f"machine")
    print()
    print(f"| operation | 1 node | {args.nodes} nodes | yardstick |")
    print("|---|---|---|---|")
    print(f"| upsert | {single['upsert']:,.0f} points/s | {multi['upsert']:,.0f} points/s | |")
    for kind, label in (("count", "count exact (fan-out alone)"),
                        ("exact", "exact search top-10"), ("hnsw", "HNSW search top-10")):
        if kind not in single:
            continue
        (q1, p50_1, p99_1), (qn1, _, _) = single[kind]
        (q3, p50_3, p99_3), (qn3, _, _) = multi[kind]
        overhead = p50_3 - p50_1
        verdict = "met" if overhead < OVERHEAD_TARGET_MS else "MISSED"
        print(f"| {label}, 1 client: p50 / p99 | {p50_1:.2f} / {p99_1:.2f} ms | "
              f"{p50_3:.2f} / {p99_3:.2f} ms | fan-out overhead {overhead:+.2f} ms at p50 "
              f"(< {OVERHEAD_TARGET_MS:g} ms: {verdict}) |")
        unit = "counts/s" if kind == "count" else "searches/s"
        print(f"| {label}, {args.threads} clients | {qn1:,.0f} {unit} | "
              f"{qn3:,.0f} {unit} | |")
    if "move" not in multi:
        return 0
    sid, points, secs, streaming = multi["move"]
    mb = points * work.point_bytes / 1e6
    mbs = mb / secs
    verdict = "met" if mbs >= MOVE_TARGET_MBS else "MISSED"
    line = (f"| move shard {sid} ({points:,} points, {mb:.1f} MB of vectors and payload) | - | "
            f"{secs:.2f} s: {points / secs:,.0f} points/s, {mbs:.1f} MB/s")
    if streaming:
        line += f" (streaming phase {streaming:.2f} s: {mb / streaming:.1f} MB/s)"
    print(f"{line} | >= {MOVE_TARGET_MBS:g} MB/s: {verdict} |")
    print()
    for r in results:
        if "index_wait" in r:
            print(f"{r['nodes']} node(s): HNSW indexes green {r['index_wait']:.1f} s after the "
                  f"exact searches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
