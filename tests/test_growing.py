"""An index searchable while it grows: a long run publishes as it goes, and `rag status` reports a run
that has not published yet instead of failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ingest.job import run_ingest
from ingest.plan import IngestProgress
from rag.embedding import SentenceTransformerEmbedder
from rag.index import IndexNotFoundError, IndexReader, IndexWriter, index_state
from rag.settings import Settings
from rag.types import ChunkInput, DocumentInput
from tests.conftest import SAMPLES, consistent

RAG = [sys.executable, "-m", "ui.cli"]


def test_a_first_run_is_searchable_while_it_runs(make_settings: Callable[..., Settings],
                                                 embedder: SentenceTransformerEmbedder) -> None:
    settings = make_settings(commit_chunks=2, publish_interval_s=0.01)
    reader = IndexReader(settings.index)
    seen: list[tuple[int, int]] = []  # (files committed, documents searchable) while the run goes
    states = []

    def watch(progress: IngestProgress) -> None:
        if progress.phase != "indexing" or progress.files_done == 0:
            return
        states.append(index_state(settings.index))
        try:
            reader.refresh()
        except IndexNotFoundError:
            return
        assert reader.view is not None
        seen.append((progress.files_done, reader.view.status()["documents"]))  # type: ignore[arg-type]

    summary = run_ingest(settings, [SAMPLES], progress=False, embedder=embedder, on_progress=watch)
    total = summary.files_indexed
    assert summary.versions_published >= 1
    # documents became searchable before the run ended, and never more than were committed
    assert any(0 < documents < total for _, documents in seen)
    assert all(documents <= done for done, documents in seen)
    running = [s for s in states if s is not None and s.running]
    assert running and running[-1].run is not None and running[-1].run.pid == os.getpid()
    assert "indexing:" in running[-1].describe() and f"of {summary.files_seen} files" in running[-1].describe()
    finished = index_state(settings.index)
    assert finished is not None and not finished.running and finished.pending_documents == 0
    assert consistent(settings.index.dir)[0] == total


def test_publishing_can_be_left_to_the_end(make_settings: Callable[..., Settings],
                                           embedder: SentenceTransformerEmbedder) -> None:
    settings = make_settings(commit_chunks=2, publish_interval_s=0)
    versions = []

    def watch(progress: IngestProgress) -> None:
        versions.append(IndexReader(settings.index).dir.joinpath("manifest.json").exists())

    summary = run_ingest(settings, [SAMPLES], progress=False, embedder=embedder, on_progress=watch)
    assert summary.versions_published == 0 and not any(versions) and summary.version == 1


def status(index: Path) -> tuple[int, dict[str, object], str]:
    env = dict(os.environ, RAG_DEVICE="cpu", PYTHONPATH=str(Path(__file__).parents[1]))
    done = subprocess.run([*RAG, "status", "--index", str(index), "--json"], capture_output=True, env=env,
                          timeout=60)
    text = subprocess.run([*RAG, "status", "--index", str(index)], capture_output=True, env=env, timeout=60)
    data = json.loads(done.stdout) if done.returncode == 0 else {}
    return done.returncode, data, text.stdout.decode()


def test_status_of_a_first_run_that_has_not_published(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    doc = DocumentInput(b"/srv/a.txt", "/srv/a.txt", "a", 10, 1, "h", (ChunkInput("some text", 0),
                                                                        ChunkInput("more text", 1)))
    vectors = np.eye(2, 384, dtype=np.float32)
    with IndexWriter.open(settings.index, "all-MiniLM-L6-v2@test") as writer:
        writer.write_batch([doc], vectors, [])
        writer.report_progress("indexing", 8000, 1240, 2)
        # which folders a run reads and how far it is: the service account's alone, like the index
        assert (settings.index.dir / "run.json").stat().st_mode & 0o777 == 0o600
        code, data, text = status(settings.index.dir)
        assert code == 0, text
        assert (data["documents"], data["pending_documents"], data["pending_chunks"]) == (0, 1, 2)
        assert data["running"] is True and isinstance(data["run_started_at"], float)
        assert data["run_files_done"] == 1240 and data["embedding_model"] == "all-MiniLM-L6-v2@test"
        assert "indexing: 1,240 of 8,000 files since" in text and "answers use what is indexed so far" in text
    # the run died without publishing: still exit 0, and the way out
    code, data, text = status(settings.index.dir)
    assert code == 0 and data["running"] is False and data["pending_documents"] == 1
    assert "run `rag ingest` again" in text
    # no index at all: still the one-line advice and exit 2
    code, _, _ = status(settings.index.dir.parent / "nothing")
    assert code == 2


def test_the_documents_page_says_a_first_run_is_indexing(make_settings: Callable[..., Settings]) -> None:
    from streamlit.testing.v1 import AppTest

    def script(index_dir: str) -> None:
        from pathlib import Path
        from types import SimpleNamespace

        from rag.index import IndexNotFoundError
        from rag.settings import load_settings
        from ui.auth import LOCAL_ADMIN
        from ui.web.page import documents_page

        def nothing_published() -> None:
            raise IndexNotFoundError(Path(index_dir))

        state = SimpleNamespace(settings=load_settings(index_dir=Path(index_dir), device="cpu"),
                                service=SimpleNamespace(searcher=SimpleNamespace(current=nothing_published)))
        documents_page(state, LOCAL_ADMIN)  # type: ignore[arg-type]

    settings = make_settings()
    doc = DocumentInput(b"/srv/a.txt", "/srv/a.txt", "a", 10, 1, "h", (ChunkInput("some text", 0),))
    with IndexWriter.open(settings.index, "all-MiniLM-L6-v2@test") as writer:
        writer.write_batch([doc], np.eye(1, 384, dtype=np.float32), [])
        writer.report_progress("indexing", 8000, 1240, 1)
        at = AppTest.from_function(script, args=(str(settings.index.dir),), default_timeout=60).run()
    assert not at.exception, at.exception
    shown = [i.value for i in at.info]
    assert len(shown) == 1 and shown[0].startswith("Indexing: 1,240 of 8,000 files since"), shown
    assert "answers use what is indexed so far" in shown[0]
