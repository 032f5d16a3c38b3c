#!/usr/bin/python3
"""faiss_bench: the faiss peer of tools/bench/ann_bench.c.

Builds faiss's IndexHNSWFlat at the same M and ef_construct over
DATA_DIR/NAME.base.fvecs with all threads, then for each ef measures
recall@10 against NAME.gt.ivecs and searches/s with one thread and with all
threads. Prints the same "key value" lines as ann_bench, which
tools/bench/ann.py gathers into one table:

    /usr/bin/python3 tools/bench/faiss_bench.py DATA_DIR NAME [M [EF_CONSTRUCT [EF,EF,... [THREADS]]]]

Run it with Debian's /usr/bin/python3, which sees python3-faiss and
python3-numpy (another python3 first on PATH may not). Debian's faiss is
built without AVX2, so it understates faiss on this CPU; that is the faiss
the issue asks for. Queries go to faiss as one batch per pass (a Python call
per query would time the interpreter); with one thread faiss runs the batch
one query after another.
"""
import os
import resource
import sys
import time

import faiss
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        sys.exit(f"faiss_bench: {path} is empty")
    d = int(raw[0])
    if d <= 0 or raw.size % (d + 1):
        sys.exit(f"faiss_bench: {path} is not a whole number of rows")
    rows = raw.reshape(-1, d + 1)
    if not (rows[:, 0] == d).all():
        sys.exit(f"faiss_bench: {path} has rows of other dims")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def rss_now_mb():
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGESIZE") / 1048576.0


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def throughput(index, queries, k, threads):
    """Whole passes over the queries for at least a second."""
    faiss.omp_set_num_threads(threads)
    done = 0
    start = time.perf_counter()
    while True:
        index.search(queries, k)
        done += len(queries)
        if time.perf_counter() - start >= 1.0:
            break
    return done / (time.perf_counter() - start)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: faiss_bench.py DATA_DIR NAME [M [EF_CONSTRUCT [EF,EF,... [THREADS]]]]")
    data_dir, name = sys.argv[1], sys.argv[2]
    m = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    efc = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    efs = [int(x) for x in (sys.argv[5] if len(sys.argv) > 5 else "16,32,64,128").split(",")]
    threads = int(sys.argv[6]) if len(sys.argv) > 6 else os.cpu_count()
    base = read_vecs(os.path.join(data_dir, name + ".base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(data_dir, name + ".query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(data_dir, name + ".gt.ivecs"), np.int32)
    if base.shape[1] != queries.shape[1] or gt.shape[0] != queries.shape[0] or gt.shape[1] < 10:
        sys.exit("faiss_bench: data set files do not match")
    k = 10
    metric = faiss.METRIC_INNER_PRODUCT if "angular" in name else faiss.METRIC_L2
    rss_before = rss_now_mb()

    faiss.omp_set_num_threads(threads)
    t0, cpu0 = time.perf_counter(), cpu_s()
    index = faiss.IndexHNSWFlat(base.shape[1], m, metric)
    index.hnsw.efConstruction = efc
    index.add(base)
    build_s, build_cpu_s = time.perf_counter() - t0, cpu_s() - cpu0
    print("engine faiss")
    print(f"build_s {build_s:.3f}")
    print(f"build_cpu_s {build_cpu_s:.3f}")
    #  The index holds its own copy of the vectors (counted here, as for
    #  hnswlib; shoal's graph reads the segment's array instead).
    print(f"index_mb {rss_now_mb() - rss_before:.1f}")
    sys.stdout.flush()
    truth = gt[:, :k]
    for ef in efs:
        index.hnsw.efSearch = ef
        faiss.omp_set_num_threads(threads)
        _, found = index.search(queries, k)
        hits = sum(len(np.intersect1d(found[i], truth[i])) for i in range(len(queries)))
        recall = hits / (k * len(queries))
        qps1 = throughput(index, queries, k, 1)
        qpsn = throughput(index, queries, k, threads)
        print(f"ef {ef} recall {recall:.4f} qps1 {qps1:.0f} qpsN {qpsn:.0f}")
        sys.stdout.flush()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"rss_peak_mb {peak:.1f}")


if __name__ == "__main__":
    main()
