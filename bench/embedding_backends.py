"""Embedding backends on this CPU: chunk rate, question latency, cosine to PyTorch fp32, retrieval quality.

Speed: the same chunks (passages of ../shared/eval, cut like the ingest benchmark's) through each
backend's `embed_batch`, best of two passes, and single-question latency (median of 50; the product's
backends through `embed_queries`, which is fp32 for onnx-int8 too). Besides the product's backends (torch,
onnx, onnx-int8), two measured only: PyTorch bf16 autocast and OpenVINO (when installed) reading the same
ONNX file. Quality: `rag eval`'s retrieval measure (each dev set indexed by the real pipeline with the
backend, every query) for the product's backends; a backend is acceptable when hybrid recall@5 and MRR@10
drop by at most 0.003 on both sets. Usage:

    .venv/bin/python bench/embedding_backends.py [--chunks 600] [--no-quality] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "eval"

from bench.ingest_vs_langchain import shared_passages  # noqa: E402
BACKENDS = ("torch", "onnx", "onnx-int8")
QUESTIONS = ["how many vacation days do new employees get", "what is the capital of the region",
             "who wrote the letter to the captain", "is the northern lights visible from london"]


def chunk_texts(count: int) -> list[str]:
    texts = shared_passages(700)
    return texts[::max(1, len(texts) // count)][:count]


def timed(embed: Callable[[list[str]], np.ndarray], texts: list[str],
          ask: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, float | np.ndarray]:
    """Chunks through `embed`; a question alone through `ask` (the backend's question path; `embed`
    without one)."""
    ask = ask or embed
    embed(texts[:16])  # warm-up: conversion, load, first-call allocations
    ask(QUESTIONS[:1])
    best, vectors = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        vectors = embed(texts)
        best = min(best, time.perf_counter() - started)
    latencies = []
    for i in range(50):
        started = time.perf_counter()
        ask([QUESTIONS[i % len(QUESTIONS)]])
        latencies.append(time.perf_counter() - started)
    return {"chunks_per_s": len(texts) / best, "question_ms": 1000 * float(np.median(latencies)), "vectors": vectors}


def measure_speed(texts: list[str], cache: Path) -> list[dict[str, object]]:
    from rag.embedding import make_embedder
    from rag.embedding.onnx_backend import converted_model
    from rag.settings import load_settings

    settings = load_settings(device="cpu", model_cache_dir=cache).embedding
    rows: list[dict[str, object]] = []
    reference = None
    for backend in BACKENDS:
        embedder = make_embedder(replace(settings, backend=backend))
        result = timed(embedder.embed_batch, texts, embedder.embed_queries)
        reference = result["vectors"] if reference is None else reference
        rows.append({"backend": backend, "model_id": embedder.model_id, **result})
    torch_embedder = make_embedder(replace(settings, backend="torch"))

    def bf16(batch: list[str]) -> np.ndarray:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch_embedder.embed_batch(batch)

    rows.append({"backend": "torch bf16 autocast (measured only)", **timed(bf16, texts)})
    try:
        import openvino
    except ImportError:
        openvino = None
    if openvino is not None:
        from tokenizers import Tokenizer

        folder = torch_embedder.folder  # type: ignore[attr-defined]
        compiled = openvino.Core().compile_model(str(converted_model(folder, cache, "fp32")), "CPU")
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=256)
        tokenizer.enable_padding()

        def ov(batch: list[str]) -> np.ndarray:
            out = np.zeros((len(batch), 384), dtype=np.float32)
            order = np.argsort([-len(t) for t in batch], kind="stable")
            for start in range(0, len(batch), 8):
                rows_ = order[start:start + 8]
                enc = tokenizer.encode_batch([batch[i] for i in rows_])
                ids = np.array([e.ids for e in enc], dtype=np.int64)
                mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
                hidden = compiled({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
                vec = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
                out[rows_] = vec / np.linalg.norm(vec, axis=1, keepdims=True)
            return out

        rows.append({"backend": f"openvino {openvino.__version__} default precision (measured only)",
                     **timed(ov, texts)})
    base_rate = float(rows[0]["chunks_per_s"])  # type: ignore[arg-type]
    for row in rows:
        vectors = row.pop("vectors")
        cosines = np.sum(vectors * reference, axis=1)  # type: ignore[operator]
        row.update(speedup=round(float(row["chunks_per_s"]) / base_rate, 2),  # type: ignore[arg-type]
                   cosine_mean=round(float(cosines.mean()), 5), cosine_min=round(float(cosines.min()), 5),
                   chunks_per_s=round(float(row["chunks_per_s"]), 1),  # type: ignore[arg-type]
                   question_ms=round(float(row["question_ms"]), 2))  # type: ignore[arg-type]
    return rows


def measure_quality(cache: Path, workdir: Path) -> dict[str, dict[str, dict[str, float]]]:
    from ingest.datasets import run_eval
    from rag.settings import load_settings

    out: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in ("boolq-dev", "narrativeqa-dev"):
        out[dataset] = {}
        for backend in BACKENDS:
            settings = load_settings(device="cpu", model_cache_dir=cache, embedding_backend=backend)
            report = run_eval(settings, SHARED / dataset)
            retrieval = report["retrieval"]
            out[dataset][backend] = {f"{mode} {key}": value for mode in ("hybrid", "dense")
                                     for key, value in retrieval[mode].items()  # type: ignore[index]
                                     if key in ("recall@1", "recall@5", "mrr@10")}
            out[dataset][backend]["ingest_s"] = report["ingest_seconds"]  # type: ignore[assignment]
            print(dataset, backend, json.dumps(out[dataset][backend]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=600)
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    cache = args.out / "model-cache"
    flags = sorted(f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith(("avx", "amx")))
    print(f"cpu: {platform.processor() or platform.machine()}, flags {' '.join(sorted(set(flags)))}")
    texts = chunk_texts(args.chunks)
    for row in [] if args.no_speed else measure_speed(texts, cache):
        print(json.dumps(row), flush=True)
    if not args.no_quality:
        measure_quality(cache, args.out)


if __name__ == "__main__":
    main()
