"""Embedding throughput by batch size on this host (the default of `embed_batch_size` comes from here).

    .venv/bin/python bench/embed_batch_size.py [--texts 384] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rag.embedding import SentenceTransformerEmbedder
from rag.settings import load_settings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=384)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with open(SHARED / "boolq-dev" / "corpus.jsonl") as f:
        texts = [json.loads(line)["text"][:1000] for line, _ in zip(f, range(args.texts))]
    embedder = SentenceTransformerEmbedder(load_settings(device=args.device).embedding)
    embedder.warm_up()
    best: dict[int, float] = {}
    for _ in range(args.rounds):
        for size in (4, 8, 16, 32, 64):
            embedder.batch_size = size
            started = time.perf_counter()
            embedder.embed_batch(texts)
            best[size] = min(best.get(size, float("inf")), time.perf_counter() - started)
    for size, seconds in best.items():
        print(f"batch {size:3d}: {len(texts) / seconds:6.1f} texts/s  ({best[32] / seconds:.2f}x batch 32)")


if __name__ == "__main__":
    main()
