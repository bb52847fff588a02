"""Ingest benchmark: our `rag ingest` against LangChain's tutorial pipeline on the same corpus.

The corpus is generated from real text (the passages of ../shared/eval/boolq-dev and the stories of
narrativeqa-dev), at least 1,500 .txt/.md files. Each pipeline runs as a fresh process, alternating,
and we record whole-process wall time and the peak memory of its whole process tree (our parser
worker included), then print the ratios. Usage:

    .venv/bin/python bench/ingest_vs_langchain.py [--files 1500] [--rounds 2] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "eval"


def shared_passages(size: int = 700) -> list[str]:
    """Every text of ../shared/eval's corpora, long stories cut into paragraph-sized passages of `size`
    characters like the rest."""
    passages = []
    for name in ("boolq-dev", "narrativeqa-dev"):
        with open(SHARED / name / "corpus.jsonl") as f:
            for line in f:
                text = json.loads(line)["text"]
                passages.extend(text[i:i + size] for i in range(0, len(text), size))
    return passages


def make_corpus(folder: Path, files: int, seed: int = 7) -> tuple[int, int]:
    """Files of 1-3 real passages each, no passage used twice (no duplicate chunks to exploit)."""
    passages = shared_passages()
    rng = random.Random(seed)
    rng.shuffle(passages)
    if folder.exists():
        shutil.rmtree(folder)
    total = 0
    for i in range(files):
        sub = folder / f"dept-{i % 12:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        take = rng.randint(1, 3)
        if len(passages) < take:
            raise SystemExit("not enough distinct passages in ../shared/eval for this many files")
        body = "\n\n".join(passages.pop() for _ in range(take))
        path = sub / (f"note-{i:05d}.md" if i % 3 == 0 else f"note-{i:05d}.txt")
        path.write_text(body)
        total += len(body.encode())
    return files, total


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float | str]:
    """Wall time and peak process-tree memory of one command; its last stdout line as JSON."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with exit code {proc.returncode}")
    return {"wall_s": wall, "peak_mb": peak / 1024, "result": out.decode().strip().splitlines()[-1]}


def corpus_arguments(doc: str) -> argparse.Namespace:
    """The options of the benchmarks that ingest the generated corpus: its size, rounds, output folder."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    return parser.parse_args()


def ingest_env(out: Path) -> dict[str, str]:
    """A `rag ingest` process's environment: CPU, this checkout, a model cache kept under `out`."""
    return dict(os.environ, RAG_DEVICE="cpu", PYTHONPATH=str(REPO), RAG_MODEL_CACHE_DIR=str(out / "model-cache"))


def main() -> None:
    args = corpus_arguments(__doc__ or "")

    corpus = args.out / "corpus"
    files, size = make_corpus(corpus, args.files)
    backend = subprocess.run([sys.executable, "-m", "ui.cli", "doctor"], capture_output=True, text=True, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    print("".join(line for line in backend.splitlines(keepends=True) if "embedding backend" in line), end="")
    print(f"corpus: {files} files, {size / 1e6:.2f} MB of text from ../shared/eval", flush=True)
    # the ONNX conversion is made once per model cache, before any timed run (as on a deployed site)
    env = ingest_env(args.out)
    warm = args.out / "warm"
    warm.mkdir(parents=True, exist_ok=True)
    (warm / "a.txt").write_text("warm-up")
    for backend in ("onnx-int8", "onnx"):
        measure([sys.executable, "-m", "ui.cli", "ingest", str(warm), "--index", str(args.out / f"warm-{backend}"),
                 "--json"], dict(env, RAG_EMBEDDING_BACKEND=backend))
    ours_cmd = lambda name: [sys.executable, "-m", "ui.cli", "ingest", str(corpus), "--index", str(args.out / name), "--json"]  # noqa: E731
    theirs_cmd = lambda name: [sys.executable, str(REPO / "bench" / "langchain_pipeline.py"), str(corpus), str(args.out / name)]  # noqa: E731
    # ours: the default (auto: int8 on a CPU with VNNI, fp32 ONNX without) and PyTorch fp32 as before
    pipelines = {"ours": (ours_cmd, {}), "ours_torch": (ours_cmd, {"RAG_EMBEDDING_BACKEND": "torch"}),
                 "langchain": (theirs_cmd, {})}
    runs: dict[str, list[dict[str, float | str]]] = {name: [] for name in pipelines}
    for round_ in range(args.rounds):
        for name, (cmd, extra) in pipelines.items():
            shutil.rmtree(args.out / name, ignore_errors=True)
            result = measure(cmd(name), dict(env, **extra))
            runs[name].append(result)
            print(f"round {round_ + 1} {name:9s} wall {result['wall_s']:7.1f} s  peak {result['peak_mb']:7.0f} MB  "
                  f"{result['result'][:160]}", flush=True)
    # and a no-op rerun of ours over the unchanged corpus
    noop = measure(ours_cmd("ours"), env)
    best = {name: min(r["wall_s"] for r in rs) for name, rs in runs.items()}
    peak = {name: max(r["peak_mb"] for r in rs) for name, rs in runs.items()}
    ours_chunks = json.loads(str(runs["ours"][-1]["result"]))["chunks_added"]
    theirs_chunks = json.loads(str(runs["langchain"][-1]["result"]))["chunks"]
    summary = {
        "files": files, "mb": round(size / 1e6, 2),
        "ours_wall_s": round(best["ours"], 1), "langchain_wall_s": round(best["langchain"], 1),
        "ours_torch_wall_s": round(best["ours_torch"], 1),
        "speedup": round(best["langchain"] / best["ours"], 2),
        "speedup_torch": round(best["langchain"] / best["ours_torch"], 2),
        "ours_torch_peak_mb": round(peak["ours_torch"]),
        "ours_peak_mb": round(peak["ours"]), "langchain_peak_mb": round(peak["langchain"]),
        "memory_ratio": round(peak["ours"] / peak["langchain"], 2),
        "ours_chunks": ours_chunks, "langchain_chunks": theirs_chunks,
        "ours_chunks_per_s": round(ours_chunks / best["ours"], 1),
        "langchain_chunks_per_s": round(theirs_chunks / best["langchain"], 1),
        "noop_rerun_s": round(float(noop["wall_s"]), 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
