"""kill -9 a real `rag ingest` at random moments: the published index stays readable and consistent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import consistent

pytestmark = pytest.mark.slow  # ingest runs killed with SIGKILL, again and again

RAG = [sys.executable, "-m", "ui.cli"]


def make_files(folder: Path, rng: random.Random, n: int, tag: str) -> None:
    folder.mkdir(exist_ok=True)
    topics = ["parking", "vacation", "laptops", "expenses", "security", "travel", "canteen", "payroll"]
    for i in range(n):
        body = "\n\n".join(
            f"Memo {tag}-{i}, part {p}: the {rng.choice(topics)} rule number {rng.randint(1, 999)} applies to "
            f"team {rng.randint(1, 50)} from week {rng.randint(1, 52)}. " * 4
            for p in range(rng.randint(1, 4)))
        (folder / f"memo-{i:03d}.txt").write_text(body)


def run(index: Path, docs: Path, env: dict[str, str], kill_after: float | None) -> dict[str, object] | None:
    proc = subprocess.Popen([*RAG, "ingest", str(docs), "--index", str(index), "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return None
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    return json.loads(out.decode().strip().splitlines()[-1])


def test_killed_runs_leave_a_consistent_index(tmp_path: Path, model_cache: Path) -> None:
    rng = random.Random(20261124)
    docs, index = tmp_path / "docs", tmp_path / "index"
    make_files(docs, rng, 120, "a")
    # publishing during the runs too (RAG_PUBLISH_INTERVAL_S): a kill may land in the middle of one
    env = dict(os.environ, RAG_DEVICE="cpu", RAG_COMMIT_CHUNKS="24", RAG_PUBLISH_INTERVAL_S="0.3",
               RAG_MODEL_CACHE_DIR=str(model_cache), PYTHONPATH=str(Path(__file__).parents[1]))

    # a first run killed early: status still answers (exit 0), whatever was or was not published yet (a
    # larger folder, so the run is still going when killed)
    early, early_docs = tmp_path / "early", tmp_path / "early-docs"
    make_files(early_docs, rng, 600, "e")
    assert run(early, early_docs, env, kill_after=rng.uniform(4.0, 6.0)) is None
    state = subprocess.run([*RAG, "status", "--index", str(early), "--json"], env=env, capture_output=True)
    assert state.returncode == 0, state.stderr
    report = json.loads(state.stdout)
    assert report["running"] is False and (report["version"] >= 1) == (report["documents"] > 0)
    if report["documents"]:
        assert consistent(early)[0] == report["documents"]

    first = run(index, docs, env, kill_after=None)  # a published baseline to protect
    assert first is not None and first["files_indexed"] == 120
    killed = 0
    for round_ in range(5):
        # change the corpus, then interrupt the run that would index the change
        for path in rng.sample(sorted(p for p in docs.rglob("*.txt")), 15):
            path.unlink()
        make_files(docs / f"r{round_}", rng, 200, f"r{round_}")
        started = time.monotonic()
        result = run(index, docs, env, kill_after=rng.uniform(1.5, 4.0))
        killed += result is None
        assert time.monotonic() - started < 300
        consistent(index)  # the last published version, intact and readable

    final = run(index, docs, env, kill_after=None)
    assert final is not None and final["files_failed"] == []
    assert killed >= 3
    documents, chunks = consistent(index)
    assert documents == final["files_seen"]

    again = run(index, docs, env, kill_after=None)  # nothing left to do
    assert again is not None and again["files_unchanged"] == documents and again["chunks_added"] == 0

    fresh = tmp_path / "fresh"
    clean = run(fresh, docs, env, kill_after=None)
    assert clean is not None
    assert consistent(fresh) == (documents, chunks)
