#!/usr/bin/env python3
"""bench: shoal's REST throughput, measured the way a client sees it.

Starts a node (build/shoal, free loopback ports, a temp storage dir) unless
--url names a running one, upserts N random points through REST in batches
with wait=true, then runs exact searches, and prints a table:

    tools/bench/bench.py                       # 100k x 128, batches of 1000
    tools/bench/bench.py --points 20000 --dim 64 --searches 500

Request bodies are encoded before the clock starts, so the numbers are the
server's (HTTP parse, JSON, envelopes, shard storage), not Python's json.
Standard library only.
"""
import argparse
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
    args = ap.parse_args()

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
        conn.call("PUT", f"/collections/{name}",
                  {"vectors": {"size": args.dim, "distance": args.distance}, "shard_number": args.shards})

        rng = random.Random(42)
        bodies = []
        for start in range(0, args.points, args.batch):
            n = min(args.batch, args.points - start)
            ids = list(range(start, start + n))
            vectors = [[round(rng.uniform(-1, 1), 6) for _ in range(args.dim)] for _ in range(n)]
            payloads = [{"i": i, "g": i % 10} for i in ids]
            bodies.append(json.dumps({"batch": {"ids": ids, "vectors": vectors, "payloads": payloads}}).encode())
        mb = sum(len(b) for b in bodies) / 1e6

        def upload(parts):
            c = Conn(host, port)
            for body in parts:
                c.call("PUT", f"/collections/{name}/points?wait=true", body)

        #  One stream first (the latency a single client sees), then the
        #  same points again over several streams (re-upserting replaces).
        upserts = []
        for clients in sorted({1, args.upload_clients}):
            t0 = time.perf_counter()
            ts = [threading.Thread(target=upload, args=(bodies[i::clients],)) for i in range(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            upserts.append((clients, time.perf_counter() - t0))
        count = conn.call("POST", f"/collections/{name}/points/count", {"exact": True})["result"]["count"]
        assert count == args.points, f"count {count} != {args.points}"

        queries = [json.dumps({"vector": [rng.uniform(-1, 1) for _ in range(args.dim)], "limit": 10,
                               "params": {"exact": True}}).encode() for _ in range(args.searches)]
        rows = []
        for threads in sorted({1, args.threads}):
            lat = []
            lock = threading.Lock()
            chunks = [queries[i::threads] for i in range(threads)]

            def worker(chunk):
                c = Conn(host, port)
                mine = []
                for q in chunk:
                    s = time.perf_counter()
                    c.call("POST", f"/collections/{name}/points/search", q)
                    mine.append(time.perf_counter() - s)
                with lock:
                    lat.extend(mine)

            t0 = time.perf_counter()
            ts = [threading.Thread(target=worker, args=(ch,)) for ch in chunks]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            wall = time.perf_counter() - t0
            rows.append((threads, len(lat) / wall, percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3))

        print(f"shoal REST benchmark: {args.points} points x {args.dim} dims, {args.distance}, "
              f"{args.shards} shard(s), batches of {args.batch}, {os.cpu_count()} cores")
        print()
        print("| operation | clients | throughput | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        for clients, upsert_s in upserts:
            print(f"| upsert wait=true ({mb:.0f} MB JSON) | {clients} | {args.points / upsert_s:,.0f} points/s | "
                  f"{upsert_s / len(bodies) * clients * 1e3:.1f} (per batch) | - |")
        for threads, qps, p50, p99 in rows:
            print(f"| exact search top-10 | {threads} | {qps:,.0f} searches/s | {p50:.2f} | {p99:.2f} |")
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
