"""The GPU embedding path on a real GPU: the vectors it gives, how fast, and at which batch size.

The product embeds on a CUDA GPU with PyTorch in fp16 (`RAG_EMBEDDING_BACKEND=auto` picks it there); its
vectors share the index with the fp32 CPU ones (`base_model_id`), which holds only if fp16 on the GPU gives
the fp32 vectors to within rounding. This measures that with the product's own factory and embedder:

1. `--make-reference` (on any CPU host): real chunks of indexes and the dev sets' questions, and their
   vectors from the PyTorch fp32 backend on the CPU, written to a folder (a few MB) to take to the GPU host.
2. On the GPU host (`RAG_DEVICE=cuda`): `make_embedder` must choose PyTorch on CUDA in fp16; then
   - cosine of its passage, question and compared-passage vectors to the CPU ones (min, 1st percentile,
     mean), and whether each question's top 10 among the reference chunks is the same set and the same first;
   - chunks a second through `embed_batch` by batch size (best of three passes; the product's default is
     128 on a GPU), a question alone through `embed_queries` (median of 100), peak GPU memory.

    .venv/bin/python bench/gpu_embedding.py --make-reference --index DIR [--index DIR ...] --out FOLDER
    RAG_DEVICE=cuda RAG_EMBEDDING_MODEL=MODEL python3 bench/gpu_embedding.py --reference FOLDER --out FOLDER

MODEL may be an fp16 copy of the model's folder (what `.half()` makes of the fp32 weights on the GPU anyway):
it lets the folder travel to a GPU host half the size.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag.embedding import make_embedder  # noqa: E402
from rag.settings import load_settings  # noqa: E402

REFERENCE_CHUNKS = 1000  # chunks with CPU vectors; all of them are timed
BATCH_SIZES = (32, 64, 128, 256, 512)


def devset_questions() -> list[str]:
    questions = []
    for path in sorted((REPO / "tests" / "data" / "devsets").glob("*.jsonl")):
        questions += [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]
    return questions


def index_chunks(index: Path, count: int) -> list[str]:
    with sqlite3.connect(f"file:{index / 'chunks.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT text FROM chunks WHERE removed_version IS NULL ORDER BY id").fetchall()
    texts = [r[0] for r in rows]
    return texts[::max(1, len(texts) // count)][:count]


def make_reference(indexes: list[Path], per_index: int, out: Path) -> None:
    texts = [t for index in indexes for t in index_chunks(index, per_index)]
    texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))]  # every index among the first
    questions = devset_questions()
    embedder = make_embedder(load_settings(device="cpu", embedding_backend="torch").embedding)
    out.mkdir(parents=True, exist_ok=True)
    (out / "texts.json").write_text(json.dumps({"chunks": texts, "questions": questions}))
    np.save(out / "chunks.npy", embedder.embed_batch(texts[:REFERENCE_CHUNKS]))
    np.save(out / "questions.npy", embedder.embed_queries(questions))
    print(f"{len(texts)} chunks ({REFERENCE_CHUNKS} with vectors), {len(questions)} questions -> {out}")


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(c.min()), 5), "p1": round(float(np.percentile(c, 1)), 5),
            "mean": round(float(c.mean()), 6)}


def on_gpu(reference: Path, out: Path, timed: int) -> None:
    import torch

    cuda = torch.cuda.is_available()  # without one (a dry run of this script) the same on the CPU

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    data = json.loads((reference / "texts.json").read_text())
    chunks, questions = data["chunks"][:timed], data["questions"]
    cpu_chunks, cpu_questions = np.load(reference / "chunks.npy"), np.load(reference / "questions.npy")
    settings = load_settings()
    embedder = make_embedder(settings.embedding)
    embedder.warm_up()
    model = embedder.model  # type: ignore[attr-defined]
    report: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "torch": torch.__version__,
        "backend": type(embedder).__name__, "device": embedder.device,  # type: ignore[attr-defined]
        "dtype": str(next(model.parameters()).dtype), "default_batch": embedder.batch_size,  # type: ignore[attr-defined]
        "model_id": embedder.model_id}
    gpu_chunks = embedder.embed_batch(chunks[:REFERENCE_CHUNKS])
    gpu_questions = embedder.embed_queries(questions)
    report["cosine_to_cpu_fp32"] = {"chunks": cosines(gpu_chunks, cpu_chunks),
                                    "questions": cosines(gpu_questions, cpu_questions),
                                    "compared": cosines(embedder.embed_to_compare(chunks[:200]), cpu_chunks[:200])}
    top_cpu = np.argsort(-(cpu_questions @ cpu_chunks.T), axis=1)[:, :10]
    top_gpu = np.argsort(-(gpu_questions @ gpu_chunks.T), axis=1)[:, :10]
    report["top10_same_set"] = round(float(np.mean([set(a) == set(b) for a, b in zip(top_cpu, top_gpu)])), 4)
    report["top1_same"] = round(float(np.mean(top_cpu[:, 0] == top_gpu[:, 0])), 4)
    rates = {}
    for size in BATCH_SIZES:
        embedder.batch_size = size  # type: ignore[attr-defined]
        embedder.embed_batch(chunks[:size])
        best = float("inf")
        for _ in range(3):
            synchronize()
            started = time.perf_counter()
            embedder.embed_batch(chunks)
            synchronize()
            best = min(best, time.perf_counter() - started)
        rates[size] = round(len(chunks) / best, 1)
    report["chunks_per_s_by_batch"] = rates
    report["chunks_timed"] = len(chunks)
    report["mean_chunk_chars"] = round(sum(map(len, chunks)) / len(chunks))
    latencies = []
    for i in range(100):
        started = time.perf_counter()
        embedder.embed_queries([questions[i % len(questions)]])
        latencies.append(time.perf_counter() - started)
    report["question_ms_median"] = round(1000 * float(np.median(latencies)), 2)
    report["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_embedding.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-reference", action="store_true")
    parser.add_argument("--index", type=Path, action="append", default=[])
    parser.add_argument("--per-index", type=int, default=1500)
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000, help="time at most this many chunks")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.make_reference:
        make_reference(args.index, args.per_index, args.out)
    else:
        on_gpu(args.reference, args.out, max(REFERENCE_CHUNKS, args.chunks))


if __name__ == "__main__":
    main()
