"""This tree against a baseline checkout, side by side in one run: ingest wall time and search latency.

For changes that must not slow the product down (issue 11: at most 5%). The baseline is another checkout
of the repository (`git worktree add /tmp/base <commit>`); both run from the same virtual environment,
alternating, on the same generated corpus (bench/ingest_vs_langchain.py's) and the same questions.

    .venv/bin/python bench/ab_ingest_search.py --baseline /tmp/base [--files 600] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_vs_langchain import SHARED, make_corpus  # noqa: E402


def run(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAG_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", "ui.cli", *args], cwd=tree, env=env, capture_output=True,
                          text=True, check=True)


def ingest_seconds(tree: Path, corpus: Path, index: Path) -> float:
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    run(tree, "ingest", str(corpus), "--index", str(index), "--json")
    return time.perf_counter() - started


def search_ms(tree: Path, index: Path, queries: Path, *extra: str) -> float:
    """The median in-process search time per query (embedding included), as `rag search --json` reports."""
    out = run(tree, "search", "--queries", str(queries), "--index", str(index), "--json", "--k", "5", *extra)
    return statistics.median(json.loads(line)["timings_ms"]["total"] for line in out.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    corpus = work / "corpus"
    make_corpus(corpus, args.files)
    queries = work / "queries.txt"
    with open(SHARED / "boolq-dev" / "queries.jsonl") as f:
        questions = [json.loads(line)["question"] for _, line in zip(range(args.queries), f)]
    queries.write_text("\n".join(questions) + "\n")
    trees = {"baseline": args.baseline.resolve(), "this tree": REPO}
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            times[name].append(ingest_seconds(tree, corpus, work / f"index-{name.replace(' ', '-')}"))
    print(f"ingest of {args.files} files (best of {args.rounds}, alternating):")
    for name, values in times.items():
        print(f"  {name:10s} {min(values):6.1f} s   (all: {', '.join(f'{v:.1f}' for v in values)})")
    print(f"  ratio this/baseline: {min(times['this tree']) / min(times['baseline']):.3f}")
    index = work / "index-this-tree"
    for label, extra in (("admin", ()), ("one group", ("--as-group", "everyone"))):
        medians: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                medians[name].append(search_ms(tree, index, queries, *extra))
        base, this = min(medians["baseline"]), min(medians["this tree"])
        print(f"hybrid search p50 as {label}: baseline {base:.2f} ms, this tree {this:.2f} ms, ratio {this / base:.3f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
