"""Recall and latency of the approximate (IVF) index against exact search, on synthetic vectors.

Vectors are drawn around random cluster centres (like embeddings of topical documents), normalised;
queries are perturbed copies of stored vectors. Reports recall@10 of IVF against IndexFlatIP and the
median single-query latency of both, for each size.

    .venv/bin/python bench/ann_recall.py [--sizes 100000 1000000] [--nprobe 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from rag.index import FaissVectorIndex
from rag.settings import load_settings


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    labels = rng.integers(0, len(centres), n)
    out = centres[labels] + rng.standard_normal((n, dim), dtype=np.float32) * 0.6
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def median_latency_ms(index: FaissVectorIndex, queries: np.ndarray, k: int) -> float:
    times = []
    for q in queries[:200]:
        started = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, args.dim)).astype(np.float32)
    for n in args.sizes:
        data = clustered(n, args.dim, rng, centres)
        ids = np.arange(n, dtype=np.int64)
        queries = data[rng.choice(n, 1000, replace=False)] + rng.standard_normal((1000, args.dim)).astype(np.float32) * 0.02
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        settings = load_settings(device="cpu")
        flat = FaissVectorIndex.empty(args.dim, "flat", settings)
        flat.add(data, ids)
        _, truth = flat.search(queries, args.k)
        flat_ms = median_latency_ms(flat, queries, args.k)
        started = time.perf_counter()
        sample = data[rng.choice(n, min(n, 100_000), replace=False)]
        ivf = FaissVectorIndex.empty(args.dim, "ivf", settings, sample)
        ivf.add(data, ids)
        build_s = time.perf_counter() - started
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            _, found = ivf.search(queries, args.k)
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(truth, found)])
            print(json.dumps({
                "vectors": n, "nlist": int(ivf.index.nlist), "nprobe": nprobe, "recall_at_10": round(float(recall), 4),
                "ivf_p50_ms": round(median_latency_ms(ivf, queries, args.k), 3), "flat_p50_ms": round(flat_ms, 3),
                "ivf_build_s": round(build_s, 1), "bytes_per_vector": args.dim * 4 + 8,
            }), flush=True)
        del flat, ivf, data


if __name__ == "__main__":
    main()
