"""Searchable while it grows: time to the first searchable document, and what publishing during a run costs.

The ingest benchmark's corpus (real passages, 1,500 files) indexed by a fresh `rag ingest` process into
an empty folder, alternating: publishing only at the end (RAG_PUBLISH_INTERVAL_S=0, as before), the
default (60 s), and a stress setting (5 s). A watcher polls the folder's manifest every 50 ms for the
first published version. Usage:

    .venv/bin/python bench/publish_while_growing.py [--files 1500] [--rounds 2] [--out bench/out]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest_vs_langchain import corpus_arguments, ingest_env, make_corpus  # noqa: E402

SETTINGS = {"end only": "0", "default 60 s": "60", "every 5 s": "5"}


def run(corpus: Path, index: Path, interval: str, env: dict[str, str]) -> dict[str, float]:
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ui.cli", "ingest", str(corpus), "--index", str(index), "--json"],
                            env=dict(env, RAG_PUBLISH_INTERVAL_S=interval), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=REPO)
    first = None
    while proc.poll() is None:
        if first is None and (index / "manifest.json").exists():
            first = time.perf_counter() - started
        time.sleep(0.05)
    wall = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"rag ingest failed with exit code {proc.returncode}")
    summary = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "first_searchable_s": first if first is not None else wall,
            "versions_during_run": summary["versions_published"], "chunks": summary["chunks_added"]}


def main() -> None:
    args = corpus_arguments(__doc__ or "")
    corpus = args.out / "corpus"
    make_corpus(corpus, args.files)
    env = ingest_env(args.out)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, interval in SETTINGS.items():
            result = run(corpus, args.out / "growing", interval, env)
            results[name].append(result)
            print(f"round {round_ + 1} {name:13s} {json.dumps(result)}", flush=True)
    base = min(r["wall_s"] for r in results["end only"])
    summary = {name: {"best_wall_s": round(min(r["wall_s"] for r in rs), 1),
                      "cost_vs_end_only": round(min(r["wall_s"] for r in rs) / base - 1, 3),
                      "first_searchable_s": round(min(r["first_searchable_s"] for r in rs), 1),
                      "versions_during_run": max(r["versions_during_run"] for r in rs)}
               for name, rs in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
