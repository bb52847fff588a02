"""Wall time of each `rag` command on the sample index, this tree beside a baseline checkout, in one run.

A newcomer runs `rag status` or `rag search` and waits for models that the command never uses (issue 12).
Each command is run `--rounds` times per tree, alternating trees, and the median is reported; the work
itself (a search, a status read) takes milliseconds, so the figure is the start-up cost.

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/cli_startup.py --baseline /tmp/base [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "status": ["status"],
    "search --mode keyword": ["search", "lunch", "--mode", "keyword"],
    "search (hybrid)": ["search", "When is lunch served?"],
    "check": ["check", "Lunch costs 6.50 EUR."],
    "ask": ["ask", "When is lunch served in the cafeteria?"],
}


def run(tree: Path, index: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "RAG_DEVICE": "cpu", "RAG_INDEX_DIR": str(index)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ui.cli", *args], cwd=tree, env=env, capture_output=True, text=True,
                   check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"this": REPO} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        subprocess.run([sys.executable, "-m", "ui.cli", "ingest", str(REPO / "samples"), "--index", str(index)],
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        times: dict[str, dict[str, list[float]]] = {name: {c: [] for c in COMMANDS} for name in trees}
        for _ in range(args.rounds):
            for command, argv in COMMANDS.items():
                for name, tree in trees.items():
                    times[name][command].append(run(tree, index, argv))
    report = {name: {c: round(statistics.median(t), 2) for c, t in per.items()} for name, per in times.items()}
    print(json.dumps({"cpu_count": os.cpu_count(), "rounds": args.rounds, "seconds": report}, indent=2))
    if args.baseline:
        print(f"\n{'command':24s} {'baseline s':>10s} {'this s':>8s} {'ratio':>7s}")
        for command in COMMANDS:
            before, after = report["baseline"][command], report["this"][command]
            print(f"{command:24s} {before:10.2f} {after:8.2f} {before / after:6.1f}x")


if __name__ == "__main__":
    main()
