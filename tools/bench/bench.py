#!/usr/bin/env python3
"""bench: shoal's REST throughput, measured the way a client sees it.

Starts a node (build/shoal, free loopback ports, a temp storage dir) unless
--url names a running one, upserts N random points through REST in batches
with wait=true (one stream, then --upload-clients streams into a new
collection), runs exact searches, waits for the HNSW index to be built
(collection status green), runs searches through the index at a few
hnsw_ef values with their recall@10 against the exact answers, and prints a
table:

    tools/bench/bench.py                       # 100k x 128, batches of 1000
    tools/bench/bench.py --points 20000 --dim 64 --searches 500
    tools/bench/bench.py --data build/data --name gmm-100k-128-euclidean

With --data and --name, the points are an fvecs data set of ../shared/data
(NAME.base.fvecs, NAME.query.fvecs, NAME.gt.ivecs; see its README) and
recall@10 is measured against its ground truth; otherwise they are uniform
random (a hard case for any graph index: no structure to exploit) and
recall is against the node's own exact answers.

Request bodies are encoded before the clock starts, so the numbers are the
server's (HTTP parse, JSON, envelopes, shard storage), not Python's json.
Standard library only.
"""
import argparse
import array
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One keep-alive HTTP connection."""

    def __init__(self, host, port):
        self.c = http.client.HTTPConnection(host, port, timeout=300)

    def call(self, method, path, body=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if data is not None else {}
        self.c.request(method, path, body=data, headers=headers)
        r = self.c.getresponse()
        raw = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {r.status}: {raw[:300]!r}")
        return json.loads(raw)


def start_node(binary, workdir):
    ports = {k: free_port() for k in ("http", "grpc", "p2p")}
    env = dict(os.environ,
               QDRANT__SERVICE__HTTP_PORT=str(ports["http"]),
               QDRANT__SERVICE__GRPC_PORT=str(ports["grpc"]),
               QDRANT__CLUSTER__P2P__PORT=str(ports["p2p"]),
               QDRANT__SERVICE__HOST="127.0.0.1",
               QDRANT__STORAGE__STORAGE_PATH=os.path.join(workdir, "storage"),
               QDRANT__STORAGE__SNAPSHOTS_PATH=os.path.join(workdir, "snapshots"),
               QDRANT__LOG_LEVEL="warn")
    log = open(os.path.join(workdir, "node.log"), "wb")
    proc = subprocess.Popen([binary], cwd=workdir, env=env, stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, ports["http"]
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("node did not become ready; see " + os.path.join(workdir, "node.log"))


def read_vecs(path, typecode):
    """Rows of an fvecs ('f') or ivecs ('i') file: int32 dim, then dim values."""
    with open(path, "rb") as f:
        raw = f.read()
    dim = array.array("i", raw[:4])[0]
    row = 4 * (dim + 1)
    if dim <= 0 or len(raw) % row:
        raise RuntimeError(f"{path}: not an fvecs/ivecs file")
    values = array.array(typecode, raw)
    if sys.byteorder != "little":
        values.byteswap()
    return [values[i * (dim + 1) + 1:(i + 1) * (dim + 1)].tolist()
            for i in range(len(raw) // row)]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running node instead of starting one")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "shoal"))
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--searches", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                    help="concurrent clients for searches")
    ap.add_argument("--upload-clients", type=int, default=os.cpu_count() or 2,
                    help="concurrent upload streams (as qdrant-client's parallel=)")
    ap.add_argument("--distance", default="Euclid")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--data", help="dir of an fvecs data set (with --name)")
    ap.add_argument("--name", help="data set name, e.g. gmm-100k-128-euclidean")
    ap.add_argument("--bulk", action="store_true",
                    help="upload with indexing off (optimizers_config.indexing_threshold 0, "
                         "as Qdrant's docs advise for bulk loads), then turn it on")
    ap.add_argument("--ef", default="default,64,128",
                    help="hnsw_ef values for the index rows (default = ef_construct)")
    args = ap.parse_args()
    base = data_queries = gt = None
    if args.data:
        stem = os.path.join(args.data, args.name or "")
        base = read_vecs(stem + ".base.fvecs", "f")
        data_queries = read_vecs(stem + ".query.fvecs", "f")[:args.searches]
        gt = read_vecs(stem + ".gt.ivecs", "i")
        args.points, args.dim = len(base), len(base[0])
        if "angular" in args.name:
            args.distance = "Cosine"

    workdir = None
    proc = None
    try:
        if args.url:
            u = urllib.parse.urlparse(args.url)
            host, port = u.hostname, u.port or 6333
        else:
            workdir = tempfile.mkdtemp(prefix="shoal-bench-")
            proc, port = start_node(os.path.abspath(args.bin), workdir)
            host = "127.0.0.1"
        conn = Conn(host, port)
        name = "bench"
        try:
            conn.call("DELETE", f"/collections/{name}")
        except RuntimeError:
            pass
        config = {"vectors": {"size": args.dim, "distance": args.distance},
                  "shard_number": args.shards}
        if args.bulk:
            config["optimizers_config"] = {"indexing_threshold": 0}
        conn.call("PUT", f"/collections/{name}", config)

        rng = random.Random(42)
        bodies = []
        for start in range(0, args.points, args.batch):
            n = min(args.batch, args.points - start)
            ids = list(range(start, start + n))
            if base:
                vectors = base[start:start + n]
            else:
                vectors = [[round(rng.uniform(-1, 1), 6) for _ in range(args.dim)]
                           for _ in range(n)]
            payloads = [{"i": i, "g": i % 10} for i in ids]
            bodies.append(json.dumps({"batch": {"ids": ids, "vectors": vectors, "payloads": payloads}}).encode())
        mb = sum(len(b) for b in bodies) / 1e6

        def upload(parts):
            c = Conn(host, port)
            for body in parts:
                c.call("PUT", f"/collections/{name}/points?wait=true", body)

        #  One stream first (the latency a single client sees), then the
        #  same points over several streams, each into a new collection: an
        #  upload of 100k points, not a re-upsert racing the index build the
        #  first upload started.
        upserts = []
        for k, clients in enumerate(sorted({1, args.upload_clients})):
            if k:
                conn.call("DELETE", f"/collections/{name}")
                conn.call("PUT", f"/collections/{name}", config)
            t0 = time.perf_counter()
            ts = [threading.Thread(target=upload, args=(bodies[i::clients],)) for i in range(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            upserts.append((clients, time.perf_counter() - t0, len(bodies)))
        if args.bulk:
            #  Indexing back on (shoal's default threshold): the index builds now.
            conn.call("PATCH", f"/collections/{name}",
                      {"optimizers_config": {"indexing_threshold": 10000}})
        count = conn.call("POST", f"/collections/{name}/points/count", {"exact": True})["result"]["count"]
        assert count == args.points, f"count {count} != {args.points}"

        qvecs = data_queries or [[rng.uniform(-1, 1) for _ in range(args.dim)]
                                 for _ in range(args.searches)]
        queries = [json.dumps({"vector": q, "limit": 10, "params": {"exact": True}}).encode()
                   for q in qvecs]
        def measure(bodies, label):
            """Searches bodies over 1 and --threads clients: table rows, and
            the answers (ids) of the one-client run in order."""
            out = []
            answers = {}
            for threads in sorted({1, args.threads}):
                lat = []
                lock = threading.Lock()
                chunks = [list(range(len(bodies)))[i::threads] for i in range(threads)]

                def worker(chunk):
                    c = Conn(host, port)
                    mine = []
                    for i in chunk:
                        s = time.perf_counter()
                        r = c.call("POST", f"/collections/{name}/points/search", bodies[i])
                        mine.append(time.perf_counter() - s)
                        if threads == 1:
                            answers[i] = [h["id"] for h in r["result"]]
                    with lock:
                        lat.extend(mine)

                t0 = time.perf_counter()
                ts = [threading.Thread(target=worker, args=(ch,)) for ch in chunks]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                wall = time.perf_counter() - t0
                out.append((label, threads, len(lat) / wall, percentile(lat, 50) * 1e3,
                            percentile(lat, 99) * 1e3))
            return out, answers

        rows, exact_answers = measure(queries, "exact search top-10")
        truth = ({i: gt[i][:10] for i in range(len(queries))} if gt else exact_answers)
        recalls = {}

        def recall_of(answers):
            hit = sum(len(set(answers[i]) & set(truth[i])) for i in answers)
            return hit / max(1, sum(len(truth[i]) for i in answers))

        recalls["exact search top-10"] = recall_of(exact_answers)

        #  The index: built in the background once the points are in.
        t0 = time.perf_counter()
        while True:
            got = conn.call("GET", f"/collections/{name}")["result"]
            if got["status"] == "green":
                break
            time.sleep(0.2)
        index_wait = time.perf_counter() - t0
        indexed = got["indexed_vectors_count"]
        for ef in (args.ef.split(",") if indexed else []):
            params = {} if ef == "default" else {"hnsw_ef": int(ef)}
            ef_queries = []
            for q in queries:
                body = json.loads(q)
                body["params"] = params
                ef_queries.append(json.dumps(body).encode())
            label = f"HNSW search top-10, hnsw_ef={ef}"
            more, answers = measure(ef_queries, label)
            rows += more
            recalls[label] = recall_of(answers)

        what = args.name if args.data else "uniform random"
        print(f"shoal REST benchmark ({what}): {args.points} points x {args.dim} dims, "
              f"{args.distance}, "
              f"{args.shards} shard(s), batches of {args.batch}, {os.cpu_count()} cores")
        print()
        print("| operation | clients | throughput | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        for clients, upsert_s, n_batches in upserts:
            print(f"| upsert wait=true ({mb:.0f} MB JSON) | {clients} | {args.points / upsert_s:,.0f} points/s | "
                  f"{upsert_s / n_batches * clients * 1e3:.1f} (per batch) | - |")
        for label, threads, qps, p50, p99 in rows:
            recall = f" (recall@10 {recalls[label]:.3f})" if label in recalls else ""
            print(f"| {label}{recall} | {threads} | {qps:,.0f} searches/s | {p50:.2f} | {p99:.2f} |")
        print()
        if indexed:
            print(f"index of {indexed} vectors built {index_wait:.1f} s after the last upload "
                  f"returned (collection status green)")
        else:
            print("no index: the points are below optimizers_config.indexing_threshold")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
