"""How long a change takes to be searchable under `rag ingest --watch`, on an index of 20,000+ chunks.

A folder of generated memos (each several chunks) is indexed first; then a real watcher process
(`rag ingest DOCS --watch --json`) watches it while this script makes 20 changes of each kind, one at a
time: a new file, an edit, a rename (into another folder), a delete. Each is timed from the change to the
moment a keyword search (the same reader `rag search` uses) sees it, or no longer sees it. Then a burst of
2,000 new files is timed to searchable, against the same 2,000 files indexed by one plain `rag ingest` run
into a copy of the index (the baseline: the normal ingest speed).

    python bench/watch_latency.py [--files 2000] [--changes 20] [--json]

Target (issue 27): each kind's p95 under 10 s; the burst in one or two batches at the plain run's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RAG = Path(sys.executable).with_name("rag")
WORDS = ("ledger invoice pallet forklift audit budget quarter vendor shipment contract warehouse freight "
         "customs tariff payroll roster shift rota canteen parking badge elevator boiler chiller").split()


def memo(i: int, paragraphs: int = 10) -> str:
    """A memo of about `paragraphs` chunks, with words that make each paragraph distinct."""
    out = []
    for p in range(paragraphs):
        words = " ".join(WORDS[(i * 7 + p * 3 + k) % len(WORDS)] for k in range(60))
        out.append(f"Memo {i}, section {p}. {words}. Reference M{i:05}S{p:02}.")
    return "\n\n".join(out)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-files", type=int, default=4200, help="memos indexed first (~5 chunks each)")
    parser.add_argument("--files", type=int, default=2000, help="files in the burst")
    parser.add_argument("--changes", type=int, default=20, help="changes of each kind")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from rag.search import build_searcher
    from rag.settings import load_settings

    work = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    docs, index = work / "docs", work / "index"
    (docs / "base").mkdir(parents=True)
    for i in range(args.base_files):
        (docs / "base" / f"memo-{i:05}.txt").write_text(memo(i))
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_ACL_ROOTS": json.dumps({str(docs): ["everyone"]})}
    started = time.perf_counter()
    base = json.loads(subprocess.run([str(RAG), "ingest", str(docs), "--index", str(index), "--json"], env=env,
                                     check=True, capture_output=True, text=True).stdout)
    print(f"base index: {base['chunks_added']} chunks in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    watcher = subprocess.Popen([str(RAG), "ingest", str(docs), "--watch", "--index", str(index), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    batches: list[dict] = []
    threading.Thread(target=lambda: [batches.append(json.loads(line)) for line in watcher.stdout  # type: ignore[union-attr]
                                     if line.startswith("{")], daemon=True).start()
    while not batches:
        time.sleep(0.1)
    searcher = build_searcher(load_settings(index_dir=index, device="cpu"))

    def paths(word: str) -> set[str]:
        return {h.path for h in searcher.search(word, 5, "keyword").hits}

    def timed(change, condition) -> float:  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        change()
        while not condition():
            if time.perf_counter() - t > 120:
                raise TimeoutError("not searchable within 120 s")
            time.sleep(0.02)
        return time.perf_counter() - t

    results: dict[str, list[float]] = {"new": [], "edit": [], "rename": [], "delete": []}
    (docs / "moved").mkdir()
    try:
        for n in range(args.changes):
            f, word, word2 = docs / f"change-{n}.txt", f"zebrafinch{n}x", f"kingfisher{n}x"
            g = docs / "moved" / f"change-{n}.txt"
            results["new"].append(timed(lambda: f.write_text(f"The {word} nests here."),
                                        lambda: str(f) in paths(word)))
            results["edit"].append(timed(lambda: f.write_text(f"The {word2} nests here."),
                                         lambda: str(f) in paths(word2) and not paths(word)))
            results["rename"].append(timed(lambda: f.rename(g), lambda: paths(word2) == {str(g)}))
            results["delete"].append(timed(g.unlink, lambda: not paths(word2)))
        burst = docs / "burst"
        burst.mkdir()
        seen = len(batches)
        t = time.perf_counter()
        for i in range(args.files):
            (burst / f"memo-{i:05}.txt").write_text(memo(100_000 + i, 2))
        while sum(b["files_indexed"] for b in batches[seen:]) < args.files:
            time.sleep(0.1)
        burst_s = time.perf_counter() - t
        burst_batches = sum(1 for b in batches[seen:] if b["files_indexed"])
    finally:
        watcher.terminate()
        watcher.wait(60)
    # the baseline: the same burst by one plain run, into a copy of the index as it was before the burst
    plain_docs = work / "plain"
    shutil.copytree(burst, plain_docs)
    t = time.perf_counter()
    subprocess.run([str(RAG), "ingest", str(plain_docs), "--index", str(work / "plain-index"), "--json"], env=env,
                   check=True, capture_output=True)
    plain_s = time.perf_counter() - t
    report = {"chunks": base["chunks_added"],
              **{kind: {"p50_s": round(percentile(v, 0.5), 2), "p95_s": round(percentile(v, 0.95), 2),
                        "max_s": round(max(v), 2)} for kind, v in results.items()},
              "burst": {"files": args.files, "seconds": round(burst_s, 1), "batches": burst_batches,
                        "plain_run_seconds": round(plain_s, 1)}}
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return
    for kind in results:
        print(f"{kind:7} p50 {report[kind]['p50_s']:5.2f} s  p95 {report[kind]['p95_s']:5.2f} s  "
              f"max {report[kind]['max_s']:5.2f} s")
    b = report["burst"]
    print(f"burst of {b['files']} files: {b['seconds']} s in {b['batches']} batch(es); one plain run: "
          f"{b['plain_run_seconds']} s (on an index of {report['chunks']} chunks)")


if __name__ == "__main__":
    main()
