"""IVF-PQ (the compressed index used from `compressed_min_vectors` on) against exact search and IVF-Flat:
recall@10, latency and memory per vector, with and without the exact re-scoring the searcher does.

Vectors are derived from real MiniLM embeddings as in bench/ann_recall.py; queries are real questions.
The vectors live in a memory-mapped file under bench/out, so the exact ground truth is computed by
streaming over them, not by holding an exact index in memory.

    .venv/bin/python bench/compressed_index.py [--sizes 1000000] [--nprobe 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from bench.ann_recall import derived, real_vectors  # noqa: E402
from rag.index import FaissVectorIndex  # noqa: E402
from rag.settings import load_settings  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def vectors_file(n: int, base: np.ndarray) -> np.memmap:
    path = OUT / f"derived-{n}.f32"
    dim = base.shape[1]
    if path.is_file() and path.stat().st_size == n * dim * 4:
        return np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))
    out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
    rng = np.random.default_rng(0)
    for start in range(0, n, 1_000_000):
        m = min(1_000_000, n - start)
        out[start:start + m] = derived(m, base, rng)
    out.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The exact top-k ids per query, streaming over `data` in blocks."""
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(data), 500_000):
        block = np.asarray(data[start:start + 500_000])
        scores = queries @ block.T
        ids = np.argpartition(-scores, k, axis=1)[:, :k]
        cand = np.concatenate([best, np.take_along_axis(scores, ids, 1)], axis=1)
        cand_ids = np.concatenate([best_ids, ids + start], axis=1)
        keep = np.argsort(-cand, axis=1)[:, :k]
        best, best_ids = np.take_along_axis(cand, keep, 1), np.take_along_axis(cand_ids, keep, 1)
    return best_ids


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b[:k])) / k for a, b in zip(truth, found)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pq-bytes", type=int, nargs="+", default=[48])
    parser.add_argument("--candidates", type=int, nargs="+", default=[40],
                        help="PQ candidates re-scored exactly per query")
    parser.add_argument("--nlist", type=int, default=0,
                        help="IVF lists (0: the product's 4*sqrt(N); fewer make a 10M run feasible on a small CPU)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    base, questions = real_vectors()
    queries = np.ascontiguousarray(questions[: args.queries])
    k, rng = 10, np.random.default_rng(1)
    for n, pq_bytes in ((n, b) for n in args.sizes for b in args.pq_bytes):
        settings = load_settings(device="cpu", pq_bytes=pq_bytes)
        data = vectors_file(n, base)
        truth = exact_top(data, queries, k)
        started = time.perf_counter()
        lists = args.nlist or FaissVectorIndex.ivf_lists(n)
        train_n = min(n, max(100_000, 40 * lists))
        sample = np.asarray(data[np.sort(rng.choice(n, train_n, replace=False))])
        # n_vectors sized so FaissVectorIndex.empty picks `lists` lists (its rule: 4*sqrt(n_vectors))
        index = FaissVectorIndex.empty(base.shape[1], "ivfpq", settings.index, sample, n_vectors=(lists // 4) ** 2)
        for start in range(0, n, 200_000):
            index.add(np.asarray(data[start:start + 200_000]), np.arange(start, min(n, start + 200_000)))
        build_s = time.perf_counter() - started
        import faiss

        bytes_per_vector = len(faiss.serialize_index(index.index)) / n
        for nprobe, candidates in ((p, c) for p in args.nprobe for c in args.candidates):
            index.nprobe = nprobe
            _, raw = index.search(queries, k)
            times, rescored = [], []
            for q in queries:
                t0 = time.perf_counter()
                _, cand = index.search(q[None, :], candidates)
                ids = cand[0][cand[0] >= 0]
                exact = np.asarray(data[np.sort(ids)]) @ q  # the searcher reads these from SQLite
                order = np.sort(ids)[np.argsort(-exact)]
                times.append((time.perf_counter() - t0) * 1000)
                rescored.append(order[:k])
            print(json.dumps({
                "vectors": n, "index": f"IVF{index.index.nlist},PQ{settings.pq_bytes}", "nprobe": nprobe,
                "recall_at_10_pq": round(recall(truth, raw), 4),
                "candidates_rescored": candidates,
                "recall_at_10_rescored": round(recall(truth, np.array(rescored)), 4),
                "p50_ms_with_rescoring": round(float(np.median(times)), 3),
                "bytes_per_vector": round(bytes_per_vector, 1), "ivf_flat_bytes_per_vector": base.shape[1] * 4 + 8,
                "build_s": round(build_s, 1),
            }), flush=True)
        del index


if __name__ == "__main__":
    main()
