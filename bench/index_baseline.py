"""Baselines for bench/index.bench.js (outside the package): FAISS IndexFlatIP and numpy
matmul + argpartition on the same vectors and queries, plus this machine's measured memory read
bandwidth and sgemm rate. Needs Debian's python3-faiss (python3-numpy comes with it).

usage: python3 index_baseline.py DB.f32 QUERIES.f32 DIM THREADS [--serve]
Prints one JSON object on the last line of stdout. With --serve it loads the data, prints "ready",
then answers each stdin line "Q K REPEATS" with a JSON list of numpy search times in seconds, so
that the benchmark can alternate numpy and camembed on a machine whose speed drifts.
"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np


def median_seconds(fn, repeats):
    fn()  # warm-up: first-touch page faults and caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def read_bandwidth(db, threads):
    """Bytes/s of summing the rows in `threads` parallel slices (numpy releases the GIL in reductions)."""
    parts = np.array_split(db, threads)
    with ThreadPoolExecutor(threads) as pool:
        seconds = median_seconds(lambda: list(pool.map(lambda p: np.add.reduce(p, axis=0), parts)), 3)
    return db.nbytes / seconds


def numpy_search(db, qs, k):
    """What a Python user writes: one preallocated matmul, then argpartition and a sort of the k."""
    scores = np.empty((qs.shape[0], db.shape[0]), dtype=np.float32)

    def search():
        np.matmul(qs, db.T, out=scores)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1)
    return search


def serve(db, queries):
    print("ready", flush=True)
    shape, search = None, None  # the paired rounds ask for one shape several times in a row
    for line in sys.stdin:
        q, k, repeats = (int(x) for x in line.split())
        if (q, k) != shape:  # one score buffer at a time (1 GB at Q = 256)
            shape, search = (q, k), numpy_search(db, np.ascontiguousarray(queries[:q]), k)
            search()  # warm-up: first touch of the score buffer
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            search()
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)


def main():
    db_path, queries_path, dim, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    faiss.omp_set_num_threads(threads)
    db = np.fromfile(db_path, dtype=np.float32).reshape(-1, dim)
    db /= np.linalg.norm(db, axis=1, keepdims=True)  # unit rows: inner product = cosine
    queries = np.fromfile(queries_path, dtype=np.float32).reshape(-1, dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    if "--serve" in sys.argv:
        serve(db, queries)
        return
    n = db.shape[0]
    out = {"n": n, "dim": dim, "threads": threads, "numpy": np.__version__, "faiss": faiss.__version__}
    try:
        from threadpoolctl import threadpool_info
        out["blas"] = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                       for i in threadpool_info()]
    except ImportError:
        out["blas"] = "threadpoolctl not installed"

    out["readBandwidth1"] = read_bandwidth(db, 1)
    out["readBandwidthAll"] = read_bandwidth(db, threads)
    a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    c = np.empty_like(a)
    out["sgemmFlops"] = 2 * 4096 ** 3 / median_seconds(lambda: np.matmul(a, a, out=c), 3)
    del a, c

    index = faiss.IndexFlatIP(dim)
    index.add(db)
    rows = []
    for q in (1, 16, 256):
        qs = np.ascontiguousarray(queries[:q])
        for k in (10, 100):
            numpy_topk = numpy_search(db, qs, k)
            repeats = 3 if q < 256 else 2
            rows.append({"tool": "numpy matmul+argpartition", "q": q, "k": k, "seconds": median_seconds(numpy_topk, repeats)})
            rows.append({"tool": "faiss IndexFlatIP", "q": q, "k": k,
                         "seconds": median_seconds(lambda: index.search(qs, k), repeats)})
            # Same answers (ids) as numpy, apart from ties: a check that both did the work.
            _, ids = index.search(qs, k)
            numpy_ids = numpy_topk()
            agree = float(np.mean([len(set(ids[i]) & set(numpy_ids[i])) / k for i in range(q)]))
            rows[-1]["agreeWithNumpy"] = agree
            print(f"{rows[-2]['tool']:28} Q={q:<4} k={k:<4} {rows[-2]['seconds'] * 1e3:10.1f} ms", file=sys.stderr)
            print(f"{rows[-1]['tool']:28} Q={q:<4} k={k:<4} {rows[-1]['seconds'] * 1e3:10.1f} ms", file=sys.stderr)
    out["rows"] = rows
    print(json.dumps(out))


if __name__ == "__main__":
    main()
