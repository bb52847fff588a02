"""`rag ingest --watch` against a real watcher process: a new, edited, renamed and deleted file is searchable
(or gone) within 10 s, a rename keeps its vectors, a file still being written is read once it is whole, a
burst of files is one batch, `rag status` shows the watcher, an admin's run waits its turn for the writer
lock instead of being refused, and a watcher killed mid-batch leaves the last published version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rag.search import Searcher, build_searcher
from rag.settings import load_settings
from tests.conftest import RAG, rag_cli

pytestmark = pytest.mark.slow
TARGET_S = 10.0


@dataclass
class WatchProcess:
    process: subprocess.Popen
    docs: Path
    index: Path
    env: dict[str, str]
    batches: list[tuple[float, dict]] = field(default_factory=list)  # (when printed, the run's summary)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.batches.append((time.monotonic(), json.loads(line)))


@pytest.fixture()
def watcher(tmp_path: Path, model_cache: Path) -> Iterator[WatchProcess]:
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    (docs / "lunch.txt").write_text("Lunch is served in the cafeteria from 11:30 to 14:00.")
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_ACL_ROOTS": json.dumps({str(docs): ["everyone"]})}
    process = subprocess.Popen([str(RAG), "ingest", str(docs), "--watch", "--index", str(index), "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=open(tmp_path / "watch.log", "wb"), text=True)
    watch = WatchProcess(process, docs, index, env)
    threading.Thread(target=watch.read, daemon=True).start()
    try:
        wait_until(lambda: watch.batches, 120, "the first run")
        yield watch
    finally:
        process.terminate()
        process.wait(30)


def wait_until(condition, seconds: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` held; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def searcher_for(watch: WatchProcess) -> Searcher:
    """A reader of the watched index as `rag search` makes it (the embedding backend follows the index)."""
    return build_searcher(load_settings(index_dir=watch.index, device="cpu",
                                        model_cache_dir=Path(watch.env["RAG_MODEL_CACHE_DIR"])))


def paths_for(searcher: Searcher, word: str) -> set[str]:
    return {h.path for h in searcher.search(word, 5, "keyword").hits}


def batches_after(watch: WatchProcess, searcher: Searcher) -> int:
    """How many batch summaries we have read once the one that published the searcher's version is among
    them: that line may reach us after the version itself does."""
    version = searcher.search("the", 1, "keyword").version
    wait_until(lambda: any(s["version"] >= version for _, s in watch.batches), 5, "the last batch's summary")
    return len(watch.batches)


def test_changes_are_searchable_within_seconds(watcher: WatchProcess) -> None:
    searcher = searcher_for(watcher)
    note = watcher.docs / "birds" / "note.txt"
    note.parent.mkdir()
    timings = {}

    note.write_text("The zebrafinch nests in the courtyard.")
    timings["new"] = wait_until(lambda: str(note) in paths_for(searcher, "zebrafinch"), TARGET_S, "a new file")

    note.write_text("The kingfisher nests by the pond.")
    timings["edit"] = wait_until(lambda: str(note) in paths_for(searcher, "kingfisher")
                                 and not paths_for(searcher, "zebrafinch"), TARGET_S, "an edited file")

    seen = batches_after(watcher, searcher)
    renamed = watcher.docs / "archive" / "pond.txt"
    renamed.parent.mkdir()
    note.rename(renamed)
    timings["rename"] = wait_until(lambda: paths_for(searcher, "kingfisher") == {str(renamed)}, TARGET_S, "a rename")
    wait_until(lambda: len(watcher.batches) > seen, 5, "the rename's batch")
    moved = [s for _, s in watcher.batches[seen:] if s["files_indexed"]]
    assert moved and all(s["chunks_embedded"] == 0 for s in moved), moved  # its stored vectors, reused

    renamed.unlink()
    timings["delete"] = wait_until(lambda: not paths_for(searcher, "kingfisher"), TARGET_S, "a deleted file")
    print("seconds to searchable:", timings)

    # rag status shows the watcher: running, what it watches, its last publish and the lag
    status = json.loads(rag_cli("status", "--index", str(watcher.index), "--json", env=watcher.env))
    w = status["watcher"]
    assert w["running"] and w["roots"] == [str(watcher.docs.resolve())] and w["errors"] == 0
    assert w["last_published"] and 0 < w["lag_s"] < TARGET_S and w["batches"] >= 5
    assert "watcher: running" in rag_cli("status", "--index", str(watcher.index), env=watcher.env)
    # and so does the page's Documents view, to an admin (single-user mode: the local operator)
    from tests.conftest import require_chromium, serve_page

    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with serve_page(watcher.docs.parent, watcher.index, watcher.env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("link", name="Documents").click()
            line = page.get_by_text("Watcher: running", exact=False).first
            line.wait_for(timeout=60_000)
            assert str(watcher.docs.resolve()) in line.inner_text() and "batches" in line.inner_text()
        finally:
            browser.close()


def test_a_file_being_written_is_read_whole_and_a_burst_is_one_batch(watcher: WatchProcess) -> None:
    searcher = searcher_for(watcher)
    report = watcher.docs / "report.txt"
    started = time.monotonic()
    with open(report, "w") as f:  # written over 2 s, in pieces 0.4 s apart (under the 1 s settle time)
        for i in range(6):
            f.write(f"Part {i} of the quarterly report. ")
            f.flush()
            time.sleep(0.4)
        f.write("The report ends with the word albatross.")
    written = time.monotonic()
    wait_until(lambda: str(report) in paths_for(searcher, "albatross"), TARGET_S, "the whole report")
    early = [s for t, s in watcher.batches if started <= t < written and s["files_indexed"]]
    assert not early, f"read while being written: {early}"

    burst = watcher.docs / "burst"
    burst.mkdir()
    seen = batches_after(watcher, searcher)
    for i in range(300):
        (burst / f"memo-{i:04}.txt").write_text(f"Memo {i}: the meeting room {i} is booked for the pelican review.")
    wait_until(lambda: sum(s["files_indexed"] for _, s in watcher.batches[seen:]) >= 300, 120, "the burst")
    indexing = [s for _, s in watcher.batches[seen:] if s["files_indexed"]]
    assert len(indexing) <= 2, [s["files_indexed"] for s in indexing]  # one batch (two if it straddled a quiet gap)


def test_an_admin_run_waits_for_the_watcher_and_a_killed_watcher_leaves_the_index(watcher: WatchProcess) -> None:
    burst = watcher.docs / "many"
    burst.mkdir()
    for i in range(200):
        (burst / f"page-{i:04}.txt").write_text(f"Page {i} of the manual describes the heron valve number {i}.")
    # while the watcher's batch holds the writer lock, an admin's run waits its turn (RAG_LOCK_TIMEOUT_S)
    wait_until(lambda: (watcher.index / "run.json").exists() or any(
        s["files_indexed"] >= 200 for _, s in watcher.batches), 30, "the watcher's batch to start")
    extra = watcher.docs.parent / "extra"
    extra.mkdir()
    (extra / "memo.txt").write_text("The osprey project starts in May.")
    out = json.loads(rag_cli("ingest", str(extra), "--index", str(watcher.index), "--json", env=watcher.env))
    assert out["files_indexed"] == 1

    # killed mid-batch: the last published version stays searchable, and the next run completes the work
    for i in range(100):  # a batch long enough to be killed in
        (burst / f"late-{i:03}.txt").write_text(f"Late page {i} about the cormorant pump number {i}.")
    wait_until(lambda: (watcher.index / "run.json").exists(), 30, "a batch in flight")
    watcher.process.send_signal(signal.SIGKILL)
    watcher.process.wait(10)
    searcher = searcher_for(watcher)
    assert paths_for(searcher, "osprey") == {str(extra / "memo.txt")}
    out = json.loads(rag_cli("ingest", str(watcher.docs), "--index", str(watcher.index), "--json",
                             env=watcher.env))
    assert not out["files_failed"]
    assert str(burst / "late-000.txt") in paths_for(searcher_for(watcher), "cormorant")
