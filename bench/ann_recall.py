"""Recall and latency of the approximate (IVF) index against exact search, at 100k and 1M vectors.

Synthetic vectors are easy to make too easy (separated clusters: recall 1.0) or too hard (isotropic
noise: recall 0.1), so the vectors here are derived from real ones: the MiniLM embeddings of the
BoolQ and NarrativeQA passages in ../shared/eval, mixed pairwise (x = a*u + (1-a)*v + small noise,
normalised), which keeps the real embedding space's shape. The queries are real questions, embedded.

    .venv/bin/python bench/ann_recall.py [--sizes 100000 1000000] [--nprobe 16 32 64]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rag.embedding import Embedder, SentenceTransformerEmbedder
from rag.index import FaissVectorIndex
from rag.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "eval"
CACHE = REPO / "bench" / "out" / "real-vectors.npz"


def real_vectors(embedder: Embedder | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(passage vectors, question vectors), embedded once by `embedder` (default: PyTorch fp32, whose
    vectors ONNX fp32 shares) and cached under bench/out, a file per kind of vectors."""
    cache = CACHE if embedder is None or embedder.model_id == SentenceTransformerEmbedder(
        load_settings(device="cpu").embedding).model_id else CACHE.with_name(
        f"real-vectors-{embedder.model_id.rsplit('@', 1)[-1].replace(':', '-')}.npz")
    if cache.is_file():
        data = np.load(cache)
        return data["passages"], data["questions"]
    passages, questions = [], []
    for name in ("boolq-dev", "narrativeqa-dev"):
        with open(SHARED / name / "corpus.jsonl") as f:
            for line in f:
                text = json.loads(line)["text"]
                passages.extend(text[i:i + 900] for i in range(0, len(text), 900))
        with open(SHARED / name / "queries.jsonl") as f:
            questions.extend(json.loads(line)["question"] for line in f)
    rng = np.random.default_rng(1)
    questions = [questions[i] for i in rng.choice(len(questions), 1000, replace=False)]
    embedder = embedder or SentenceTransformerEmbedder(load_settings(device="cpu").embedding)
    p, q = embedder.embed_batch(passages), embedder.embed_queries(questions)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, passages=p, questions=q)
    return p, q


def derived(n: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a = rng.random((m, 1), dtype=np.float32)
        mix = a * base[rng.integers(0, len(base), m)] + (1 - a) * base[rng.integers(0, len(base), m)]
        mix += rng.standard_normal(mix.shape, dtype=np.float32) * 0.01
        out[start:start + m] = mix / np.linalg.norm(mix, axis=1, keepdims=True)
    return out


def median_latency_ms(index: FaissVectorIndex, queries: np.ndarray, k: int) -> float:
    times = []
    for q in queries[:300]:
        started = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    base, queries = real_vectors()
    dim = base.shape[1]
    rng = np.random.default_rng(0)
    settings = load_settings(device="cpu")
    for n in args.sizes:
        data = derived(n, base, rng)
        ids = np.arange(n, dtype=np.int64)
        flat = FaissVectorIndex.empty(dim, "flat", settings.index)
        flat.add(data, ids)
        _, truth = flat.search(queries, args.k)
        flat_ms = median_latency_ms(flat, queries, args.k)
        started = time.perf_counter()
        sample = data[rng.choice(n, FaissVectorIndex.training_size(n), replace=False)]
        ivf = FaissVectorIndex.empty(dim, "ivf", settings.index, sample, n_vectors=n)
        ivf.add(data, ids)
        build_s = time.perf_counter() - started
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            _, found = ivf.search(queries, args.k)
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(truth, found)])
            print(json.dumps({
                "vectors": n, "nlist": int(ivf.index.nlist), "nprobe": nprobe,
                "recall_at_10": round(float(recall), 4), "ivf_p50_ms": round(median_latency_ms(ivf, queries, args.k), 3),
                "flat_p50_ms": round(flat_ms, 3), "ivf_build_s": round(build_s, 1), "bytes_per_vector": dim * 4 + 8,
            }), flush=True)
        del flat, ivf, data


if __name__ == "__main__":
    main()
