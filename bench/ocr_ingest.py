"""Ingest of scans: pages per second through the sandboxed parser workers, and a long scan beside small files.

1. A folder of scanned PDFs (pages of real passages from ../shared/eval rendered at 200 DPI, no text
   layer), ingested with 1 and with 2 parser workers: wall time and OCR'd pages per second, end to end
   (render, OCR, chunk, embed, commit).
2. A 200-page scanned PDF among small text files, with 2 workers: when the last small file is indexed,
   against the same small files alone. One worker reads the scan page by page (reporting progress every
   ten pages) while the other takes the small files, so they are not held up behind it.

    .venv/bin/python -m bench.ocr_ingest [--scans 20] [--long-pages 200] [--small 200]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import textwrap
import time
from pathlib import Path

from bench.ingest_vs_langchain import REPO, shared_passages
from ingest.job import run_ingest
from ingest.plan import IngestProgress
from rag.settings import load_settings
from tests.docgen import write_scanned_pdf


def page_lines(rng: random.Random, passages: list[str]) -> list[str]:
    return textwrap.wrap(" ".join(rng.sample(passages, 2)), 80)[:40]


def timed_ingest(folder: Path, index: Path, workers: int, cache: Path) -> tuple[float, list[tuple[float, int]], dict]:
    """(seconds, [(seconds, files done)] as the run reported them, summary)."""
    shutil.rmtree(index, ignore_errors=True)
    settings = load_settings(index_dir=index, device="cpu", parse_workers=workers, model_cache_dir=cache,
                             parse_timeout_s=60)
    marks: list[tuple[float, int]] = []
    started = time.perf_counter()

    def seen(progress: IngestProgress) -> None:
        if progress.phase == "indexing":
            marks.append((time.perf_counter() - started, progress.files_done))

    summary = run_ingest(settings, [folder], progress=False, on_progress=seen)
    return time.perf_counter() - started, marks, summary.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--long-pages", type=int, default=200)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ocr-ingest")
    args = parser.parse_args()
    rng = random.Random(5)
    passages = [p for p in shared_passages() if p.isascii() and len(p) > 500]
    out, cache = args.out, args.out / "model-cache"
    shutil.rmtree(out / "scans", ignore_errors=True)
    (out / "scans").mkdir(parents=True)
    pages = 0
    for n in range(args.scans):
        count = 1 + n % 3
        write_scanned_pdf(out / "scans" / f"scan-{n:03}.pdf", [("scan", page_lines(rng, passages))
                                                               for _ in range(count)])
        pages += count
    for workers in (1, 2):
        seconds, _, summary = timed_ingest(out / "scans", out / "index", workers, cache)
        print(json.dumps({"case": "folder of scans", "workers": workers, "files": args.scans, "pages": pages,
                          "pages_ocr": summary["pages_ocr"], "seconds": round(seconds, 1),
                          "pages_per_s": round(summary["pages_ocr"] / seconds, 2)}), flush=True)

    small = out / "small"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir(parents=True)
    for n in range(args.small):
        (small / f"note-{n:04}.txt").write_text(rng.choice(passages) + "\n")
    alone, marks, _ = timed_ingest(small, out / "index", 2, cache)
    done_alone = next((t for t, done in marks if done >= args.small), alone)
    mixed = out / "mixed"
    shutil.rmtree(mixed, ignore_errors=True)
    shutil.copytree(small, mixed)
    write_scanned_pdf(mixed / "long-scan.pdf", [("scan", page_lines(rng, passages)) for _ in range(args.long_pages)])
    total, marks, summary = timed_ingest(mixed, out / "index", 2, cache)
    done_small = next((t for t, done in marks if done >= args.small), total)
    print(json.dumps({"case": "long scan beside small files", "workers": 2, "long_pages": args.long_pages,
                      "small_files": args.small, "small_files_alone_s": round(done_alone, 1),
                      "small_files_done_beside_scan_s": round(done_small, 1), "whole_run_s": round(total, 1),
                      "pages_ocr": summary["pages_ocr"], "failed": summary["files_failed"]}), flush=True)


if __name__ == "__main__":
    main()
