#!/usr/bin/env python3
"""ann: shoal's HNSW graph in-process, the same through the REST API of a
running node, native hnswlib and faiss's IndexHNSWFlat, on one data set, in
one invocation, as one markdown table.

    tools/bench/ann.py                        # Fashion-MNIST, M=16, ef_construct=100
    tools/bench/ann.py --build build --data build/data \\
        --name fashion-mnist-784-euclidean --ef 16,32,64,128 --rounds 3

The data set comes from ../shared/data (see its README), e.g.
    /usr/bin/python3 ../shared/data/make_fashion_mnist.py --out build/data
The peers: BUILD/tools/bench/ann_bench (shoal), BUILD/tools/bench/hnswlib_bench
(Debian's libhnswlib-dev compiled -O3 -march=native; built when a C++
compiler and the header are there) and tools/bench/faiss_bench.py run by
/usr/bin/python3 (python3-faiss, python3-numpy); `tools/deps --bench`
installs them. An engine that cannot run shows why in its row.

Each library engine builds its index with every thread, then for each ef
measures recall@10 and searches/s on one thread and on all threads (whole
passes over the queries for at least a second).

The REST engine starts BUILD/shoal on free loopback ports with a temp
storage dir, creates a collection with the same M and ef_construct and an
integer payload index on "sel", upserts the base vectors (ids = row
numbers, payload {"sel": id % 100}) in batches of 1,000 over two
connections with wait=true, waits for the collection to go green, and
then measures with BUILD/tools/bench/rest_bench, a C client (keep-alive
connections, request texts made before the clock starts): recall@10 and
searches/s through POST /points/search on one connection and on THREADS at
once, the same through POST /points/search/batch with --batch searches a
request, and filtered searches (a range on "sel" that keeps 50%, 10% and 1%
of the points) with recall@10 against a brute force over the kept points.
Its build time is from the first upsert to green; its memory is the RSS of
the node's processes.

The engines run one after another, `--rounds` times in turn (the REST node
is loaded once and measured each round); the table keeps each engine's
best (shortest build, most searches/s) over the rounds, since on a shared
machine a slow round is other work getting in the way, and the mean recall.
Standard library only.
"""
import argparse
import array
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (start_node, Conn)

ENGINES = ("shoal", "rest", "hnswlib", "faiss")
TITLES = {"shoal": "shoal (in-process)", "hnswlib": "hnswlib (native -O3 -march=native)",
          "faiss": "faiss IndexHNSWFlat (Debian)", "rest": "shoal REST search",
          "batch": "shoal REST batch search", "filtered": "shoal REST search, filtered"}
COLLECTION = "ann"
SELECTIVITIES = (50, 10, 1)         # percent of the points a filter keeps


def command(engine, args):
    tail = [args.data, args.name, str(args.m), str(args.efc), args.ef, str(args.threads)]
    if engine == "shoal":
        return [os.path.join(args.build, "tools", "bench", "ann_bench")] + tail
    if engine == "hnswlib":
        return [os.path.join(args.build, "tools", "bench", "hnswlib_bench")] + tail
    return [args.python, os.path.join(HERE, "faiss_bench.py")] + tail


def parse_lines(text):
    """The key/value lines the bench programs print: "key value", and
    "ef EF key value key value ..." per ef."""
    out = {"efs": {}}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "ef" and len(words) >= 4 and len(words) % 2 == 0:
            ef = int(words[1])
            out["efs"][ef] = {words[i]: float(words[i + 1]) for i in range(2, len(words), 2)}
        elif words[0] == "floor" and len(words) % 2 == 1:
            out["floor"] = {words[i]: float(words[i + 1]) for i in range(1, len(words), 2)}
        elif len(words) == 2:
            try:
                out[words[0]] = float(words[1])
            except ValueError:
                out[words[0]] = words[1]
    return out


def run_cmd(cmd):
    """Runs one bench program: its parsed lines, or an error."""
    if not os.path.exists(cmd[0]):
        return {"error": f"{cmd[0]} not found"}
    print(f"ann: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        return {"error": last[:120]}
    return parse_lines(proc.stdout)


def run(engine, args, node=None):
    """One run of one engine: its key/value lines as a dict, or an error."""
    if engine == "rest":
        return run_rest(args, node)
    return run_cmd(command(engine, args))


#  --- the REST engine --------------------------------------------------------

def node_rss_mb(pid):
    """RSS of a process and its children (the node's actors), in MB."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def read_fvecs(path):
    """(rows, dim, values as one array('f'))."""
    with open(path, "rb") as f:
        raw = f.read()
    dim = array.array("i", raw[:4])[0]
    if dim <= 0 or len(raw) % (4 * (dim + 1)):
        raise RuntimeError(f"{path}: not an fvecs file")
    values = array.array("f", raw)
    if sys.byteorder != "little":
        values.byteswap()
    return len(raw) // (4 * (dim + 1)), dim, values


class Node:
    """A shoal node started and loaded with the data set, for every round."""

    def __init__(self, args):
        self.proc = None
        self.workdir = None
        self.error = None
        try:
            self.start(args)
        except (OSError, RuntimeError) as e:
            self.error = str(e)[:120]
            self.stop()

    def start(self, args):
        binary = os.path.abspath(os.path.join(args.build, "shoal"))
        if not os.path.exists(binary):
            raise RuntimeError(f"{binary} not found")
        rows, dim, values = read_fvecs(os.path.join(args.data, args.name + ".base.fvecs"))
        distance = "Cosine" if "angular" in args.name else "Euclid"
        #  Upsert bodies made before the clock starts.
        bodies = []
        for start in range(0, rows, 1000):
            ids = list(range(start, min(start + 1000, rows)))
            vectors = [values[i * (dim + 1) + 1:(i + 1) * (dim + 1)].tolist() for i in ids]
            payloads = [{"sel": i % 100} for i in ids]
            bodies.append(json.dumps({"batch": {"ids": ids, "vectors": vectors,
                                                "payloads": payloads}}).encode())
        del values
        self.workdir = tempfile.mkdtemp(prefix="shoal-ann-")
        print(f"ann: starting {binary} in {self.workdir}", file=sys.stderr, flush=True)
        self.proc, self.port = bench.start_node(binary, self.workdir)
        conn = bench.Conn("127.0.0.1", self.port)
        conn.call("PUT", f"/collections/{COLLECTION}",
                  {"vectors": {"size": dim, "distance": distance},
                   "hnsw_config": {"m": args.m, "ef_construct": args.efc}})
        conn.call("PUT", f"/collections/{COLLECTION}/index?wait=true",
                  {"field_name": "sel", "field_schema": "integer"})

        def upload(part):
            c = bench.Conn("127.0.0.1", self.port)
            for body in part:
                c.call("PUT", f"/collections/{COLLECTION}/points?wait=true", body)

        print(f"ann: upserting {rows} points through REST", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=upload, args=(bodies[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.upload_s = time.perf_counter() - t0
        while True:
            info = conn.call("GET", f"/collections/{COLLECTION}")["result"]
            if info["status"] == "green":
                break
            time.sleep(0.1)
        self.build_s = time.perf_counter() - t0
        if info.get("points_count") != rows or info.get("indexed_vectors_count") != rows:
            raise RuntimeError(f"node holds {info.get('points_count')} points, "
                               f"{info.get('indexed_vectors_count')} indexed, of {rows}")
        self.mem_mb = node_rss_mb(self.proc.pid)

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def run_rest(args, node):
    """One round of REST measurements on the loaded node."""
    if node is None or node.error:
        return {"error": node.error if node else "no node"}
    client = os.path.join(args.build, "tools", "bench", "rest_bench")
    base = [client, "127.0.0.1", str(node.port), COLLECTION, args.data, args.name]
    common = ["--clients", str(args.threads), "--seconds", str(args.seconds)]
    got = run_cmd(base + [args.ef] + common + ["--batch", str(args.batch), "--floor", "1"])
    if "error" in got:
        return got
    out = {"build_s": node.build_s, "upload_s": node.upload_s, "mem_mb": node.mem_mb,
           "efs": {}, "batch": {}, "filtered": {}, "floor": got.get("floor", {})}
    for ef, row in got["efs"].items():
        out["efs"][ef] = {"recall": row["recall"], "qps1": row["qps1"], "qpsN": row["qpsN"]}
        out["batch"][ef] = {"recall": row["recall"], "qps1": row["qpsB"], "qpsN": row["qpsBN"]}
    for pct in SELECTIVITIES:
        got = run_cmd(base + [args.filter_ef] + common
                      + ["--filter-mod", "100", "--filter-lt", str(pct)])
        if "error" in got:
            return got
        out["filtered"][pct] = got["efs"]
    return out


def merge_efs(rows_by_run):
    """Per ef: mean recall, most searches/s over the runs."""
    out = {}
    for ef in rows_by_run[-1]:
        rows = [r[ef] for r in rows_by_run if ef in r]
        out[ef] = {
            "recall": sum(x["recall"] for x in rows) / len(rows),
            "qps1": max(x["qps1"] for x in rows),
            "qpsN": max(x["qpsN"] for x in rows),
        }
    return out


def merge(runs):
    """Best build and throughput over the rounds, mean recall."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    best = dict(good[-1])
    for key in ("build_s", "build_cpu_s"):
        values = [r[key] for r in good if key in r]
        if values:
            best[key] = min(values)
    best["efs"] = merge_efs([r["efs"] for r in good])
    if "batch" in good[-1]:
        best["batch"] = merge_efs([r["batch"] for r in good])
        best["filtered"] = {pct: merge_efs([r["filtered"][pct] for r in good])
                            for pct in good[-1]["filtered"]}
        floors = [r["floor"] for r in good if r.get("floor")]
        best["floor"] = {k: max(f[k] for f in floors) for k in floors[-1]} if floors else {}
    return best


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="meson build dir holding tools/bench/ann_bench (default: build)")
    ap.add_argument("--data", default=os.path.join(REPO, "build", "data"),
                    help="dir with NAME.base.fvecs, NAME.query.fvecs, NAME.gt.ivecs")
    ap.add_argument("--name", default="fashion-mnist-784-euclidean")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=100, help="ef_construct")
    ap.add_argument("--ef", default="16,32,64,128", help="search ef values, comma separated")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter that sees python3-faiss (Debian's)")
    ap.add_argument("--batch", type=int, default=64,
                    help="searches a REST batch request carries")
    ap.add_argument("--filter-ef", default="32,64",
                    help="hnsw_ef of the filtered REST searches (comma separated)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="length of each REST throughput run")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e} (know {', '.join(ENGINES)})")
    base = os.path.join(args.data, args.name + ".base.fvecs")
    if not os.path.exists(base):
        sys.exit(f"ann: {base} is missing; make it with\n"
                 f"  /usr/bin/python3 ../shared/data/make_fashion_mnist.py --out {args.data}")

    node = Node(args) if "rest" in engines else None
    try:
        runs = {e: [] for e in engines}
        for _ in range(max(1, args.rounds)):
            for e in engines:
                runs[e].append(run(e, args, node))
    finally:
        if node is not None:
            node.stop()
    results = {e: merge(runs[e]) for e in engines}
    print_table(args, engines, results)
    return 0


def ratio(value, ref):
    return f"{value / ref:.2f}x" if value and ref else ""


def print_table(args, engines, results):
    def efs_of(engine):
        r = results.get(engine, {})
        return r.get("efs", {}) if "error" not in r else {}

    peer, inproc = efs_of("hnswlib"), efs_of("shoal")
    isa = results.get("shoal", {}).get("isa", "?")
    n = args.threads
    print(f"{args.name}: M={args.m}, ef_construct={args.efc}, k=10, {n} threads, "
          f"{cpu_model()}, shoal kernels {isa}, best of {max(1, args.rounds)} round(s).")
    print()
    print("build s: index build with every thread (REST: from the first upsert to status "
          "green, REST upload included). memory MB: RSS the build added (hnswlib and "
          "faiss copy the vectors, shoal's graph reads them in place; REST: every process "
          "of the node, vectors, graph and SQLite cache included). REST rows: 1 and "
          f"{n} client connections instead of threads, each waiting for its answer "
          f"before the next request; batch rows count searches ({args.batch} a request); "
          "filtered rows: a range on an indexed integer payload keeps that share of the "
          "points, recall against the brute force over them.")
    print()
    print(f"| engine | build s | memory MB | ef | recall@10 | searches/s 1 thread "
          f"| searches/s {n} threads | vs hnswlib 1 / {n} | vs shoal in-process 1 / {n} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def rows(title, efs, build, mem, vs_peer, vs_inproc):
        first = True
        for ef, row in sorted(efs.items()):
            cells = [title if first else "", fmt(build, ".1f") if first else "",
                     fmt(mem, ".0f") if first else "", str(ef), f"{row['recall']:.4f}",
                     f"{row['qps1']:,.0f}", f"{row['qpsN']:,.0f}"]
            p, i = vs_peer.get(ef, {}), vs_inproc.get(ef, {})
            cells.append(" / ".join(x for x in (ratio(row["qps1"], p.get("qps1")),
                                                 ratio(row["qpsN"], p.get("qpsN"))) if x))
            cells.append(" / ".join(x for x in (ratio(row["qps1"], i.get("qps1")),
                                                 ratio(row["qpsN"], i.get("qpsN"))) if x))
            print("| " + " | ".join(cells) + " |")
            first = False

    for e in engines:
        r = results[e]
        if "error" in r:
            print(f"| {TITLES[e]} | not run: {r['error']} | | | | | | | |")
            continue
        if e == "rest":
            rows(TITLES["rest"], r["efs"], r.get("build_s"), r.get("mem_mb"), peer, inproc)
            rows(f"{TITLES['batch']} ({args.batch} a request)", r["batch"], None, None,
                 peer, inproc)
            for pct, efs in r["filtered"].items():
                rows(f"{TITLES['filtered']} to {pct}%", efs, None, None, {}, {})
            continue
        mem = r.get("index_mb")
        rows(TITLES[e], r["efs"], r.get("build_s"), mem, peer if e != "hnswlib" else {},
             inproc if e != "shoal" else {})
    print_floor(results.get("rest", {}), inproc, n)


def print_floor(rest, inproc, n):
    """The REST transport floor: requests that search nothing, and what it
    leaves of the in-process rate for one client."""
    floor = rest.get("floor") if "error" not in rest else None
    if not floor:
        return
    print()
    print("REST transport floor (requests that search nothing, on the same node):")
    print()
    print(f"| request | requests/s 1 client | us a request | requests/s {n} clients |")
    print("|---|---:|---:|---:|")
    for title, one, many in (("GET / (gateway only)", "gw1", "gwN"),
                             ("retrieve 1 id (gateway -> shard -> gateway)",
                              "shard1", "shardN")):
        print(f"| {title} | {floor[one]:,.0f} | {1e6 / floor[one]:.0f} "
              f"| {floor[many]:,.0f} |")
    if not inproc or not floor.get("shard1"):
        return
    print()
    print("One client: a REST search cannot take less than an in-process search "
          "plus the retrieve's round trip; the best REST / in-process ratio that "
          "leaves, and what was measured:")
    print()
    print("| ef | in-process us | + floor us | best ratio possible | REST search 1 client |")
    print("|---:|---:|---:|---:|---:|")
    hop = 1e6 / floor["shard1"]
    for ef, row in sorted(inproc.items()):
        us = 1e6 / row["qps1"]
        got = rest.get("efs", {}).get(ef, {}).get("qps1")
        print(f"| {ef} | {us:.0f} | {us + hop:.0f} | {us / (us + hop):.2f}x "
              f"| {ratio(got, row['qps1']) if got else ''} |")


if __name__ == "__main__":
    sys.exit(main())
