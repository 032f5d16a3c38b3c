#!/usr/bin/env python3
"""ann: shoal's HNSW graph in-process against native hnswlib and faiss's
IndexHNSWFlat on one data set, in one invocation, as one markdown table.

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

Each engine builds its index with every thread, then for each ef measures
recall@10 and searches/s on one thread and on all threads (whole passes over
the queries for at least a second). The engines run one after another,
`--rounds` times in turn; the table keeps each engine's best (shortest
build, most searches/s) over the rounds, since on a shared machine a slow
round is other work getting in the way, and the mean recall. Standard
library only.
"""
import argparse
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ENGINES = ("shoal", "hnswlib", "faiss")
TITLES = {"shoal": "shoal (in-process)", "hnswlib": "hnswlib (native -O3 -march=native)",
          "faiss": "faiss IndexHNSWFlat (Debian)"}


def command(engine, args):
    tail = [args.data, args.name, str(args.m), str(args.efc), args.ef, str(args.threads)]
    if engine == "shoal":
        return [os.path.join(args.build, "tools", "bench", "ann_bench")] + tail
    if engine == "hnswlib":
        return [os.path.join(args.build, "tools", "bench", "hnswlib_bench")] + tail
    return [args.python, os.path.join(HERE, "faiss_bench.py")] + tail


def run(engine, args):
    """One run of one engine: its key/value lines as a dict, or an error."""
    cmd = command(engine, args)
    if not os.path.exists(cmd[0]):
        return {"error": f"{cmd[0]} not found"}
    print(f"ann: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        return {"error": last[:120]}
    out = {"efs": {}}
    for line in proc.stdout.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "ef" and len(words) == 8:
            ef = int(words[1])
            out["efs"][ef] = {words[i]: float(words[i + 1]) for i in range(2, 8, 2)}
        elif len(words) == 2:
            try:
                out[words[0]] = float(words[1])
            except ValueError:
                out[words[0]] = words[1]
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
    best["efs"] = {}
    for ef in good[-1]["efs"]:
        rows = [r["efs"][ef] for r in good if ef in r["efs"]]
        best["efs"][ef] = {
            "recall": sum(x["recall"] for x in rows) / len(rows),
            "qps1": max(x["qps1"] for x in rows),
            "qpsN": max(x["qpsN"] for x in rows),
        }
    return best


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def ratio(value, ref):
    return f"{value / ref:.2f}x" if value and ref else ""


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
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e} (know {', '.join(ENGINES)})")
    base = os.path.join(args.data, args.name + ".base.fvecs")
    if not os.path.exists(base):
        sys.exit(f"ann: {base} is missing; make it with\n"
                 f"  /usr/bin/python3 ../shared/data/make_fashion_mnist.py --out {args.data}")

    runs = {e: [] for e in engines}
    for _ in range(max(1, args.rounds)):
        for e in engines:
            runs[e].append(run(e, args))
    results = {e: merge(runs[e]) for e in engines}

    ref = results.get("hnswlib", {})
    ref = ref.get("efs", {}) if "error" not in ref else {}
    isa = results.get("shoal", {}).get("isa", "?")
    print(f"{args.name}: M={args.m}, ef_construct={args.efc}, k=10, {args.threads} threads, "
          f"{cpu_model()}, shoal kernels {isa}, best of {max(1, args.rounds)} round(s); "
          f"index MB = RSS the build added (hnswlib and faiss copy the vectors, shoal's "
          f"graph reads them in place), peak RSS includes the loaded data set")
    print()
    n = args.threads
    print(f"| engine | build s | build CPU s | index MB | peak RSS MB | ef | recall@10 "
          f"| searches/s 1 thread | searches/s {n} threads | 1 thread vs hnswlib "
          f"| {n} threads vs hnswlib |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in engines:
        r = results[e]
        if "error" in r:
            print(f"| {TITLES[e]} | not run: {r['error']} | | | | | | | | | |")
            continue
        first = True
        for ef, row in sorted(r["efs"].items()):
            build = (fmt(r.get("build_s"), ".1f"), fmt(r.get("build_cpu_s"), ".1f"),
                     fmt(r.get("index_mb"), ".0f"),
                     fmt(r.get("rss_peak_mb"), ".0f")) if first else ("", "", "", "")
            peer = ref.get(ef, {})
            print(f"| {TITLES[e] if first else ''} | {' | '.join(build)} "
                  f"| {ef} | {row['recall']:.4f} | {row['qps1']:.0f} | {row['qpsN']:.0f} "
                  f"| {ratio(row['qps1'], peer.get('qps1'))} "
                  f"| {ratio(row['qpsN'], peer.get('qpsN'))} |")
            first = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
