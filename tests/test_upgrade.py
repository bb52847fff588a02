"""An index written by the release before structured parsing (tests/data/index-v1) opens with today's code and
migrates with a normal incremental run: its schema gains heading paths and parser versions, its documents
are read again by today's parsers, unchanged text keeps its vectors, and search works before and after."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.parsers import PARSER_VERSION
from rag.search import build_searcher
from rag.settings import load_settings

FIXTURE = Path(__file__).resolve().parent / "data" / "index-v1"
WRITTEN_AT = "/tmp/rag-index-v1/docs"  # where the old release indexed the documents


@pytest.fixture()
def moved(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture copied to a temporary folder, as if the organisation had moved its share: the stored paths
    rewritten to the new place (the files' modification times are new too)."""
    shutil.copytree(FIXTURE / "docs", tmp_path / "docs")
    shutil.copytree(FIXTURE / "index", tmp_path / "index")
    conn = sqlite3.connect(tmp_path / "index" / "chunks.sqlite")
    with conn:
        for doc_id, path in conn.execute("SELECT id, path FROM documents").fetchall():
            new = path.replace(WRITTEN_AT, str(tmp_path / "docs"), 1)
            conn.execute("UPDATE documents SET path = ?, path_key = ? WHERE id = ?", (new, os.fsencode(new), doc_id))
    conn.close()
    return tmp_path / "docs", tmp_path / "index"


def search(index: Path, model_cache: Path, query: str, mode: str = "hybrid"):  # type: ignore[no-untyped-def]
    """A search as `rag search` makes it: the embedding backend follows the index (its vectors are int8)."""
    return build_searcher(load_settings(index_dir=index, device="cpu", model_cache_dir=model_cache)).search(
        query, 3, mode)  # type: ignore[arg-type]


def test_an_old_index_is_searchable_then_migrates_with_an_incremental_run(moved, model_cache: Path) -> None:  # type: ignore[no-untyped-def]
    docs, index = moved
    columns = {r[1] for r in sqlite3.connect(index / "chunks.sqlite").execute("PRAGMA table_info(chunks)")}
    assert "section" not in columns  # really the old schema
    before = search(index, model_cache, "When is lunch served in the cafeteria?")
    assert before.hits[0].path.endswith("cafeteria.html") and before.hits[0].section == ""

    settings = load_settings(index_dir=index, device="cpu", model_cache_dir=model_cache)
    summary = run_ingest(settings, [docs], progress=False)
    assert summary.files_reparsed == 12 and summary.files_indexed == 12 and not summary.files_failed
    # text that reads the same under today's parsers keeps its vector; the rest is embedded anew
    assert 0 < summary.chunks_embedded < summary.chunks_added
    conn = sqlite3.connect(index / "chunks.sqlite", isolation_level=None, timeout=10)
    assert {r[0] for r in conn.execute("SELECT parser_version FROM documents WHERE removed_version IS NULL")} == {
        PARSER_VERSION}
    # the keyword index is analysed by language now: a row per stored chunk, the old Porter index gone
    assert conn.execute("INSERT INTO chunk_terms(chunk_terms) VALUES ('integrity-check')") is not None
    assert conn.execute("SELECT count(*) FROM chunks").fetchone() == conn.execute(
        "SELECT count(*) FROM chunk_terms").fetchone()
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'chunks_fts'").fetchall()
    assert {r[0] for r in conn.execute("SELECT lang FROM chunks WHERE removed_version IS NULL")} == {"en"}
    sections = {r[0] for r in conn.execute("SELECT section FROM chunks WHERE removed_version IS NULL")}
    assert {"Your first day", "Your buddy"} <= sections  # the slides' titles
    after = search(index, model_cache, "Which ticket fixed the CSV export bug?")
    # the release notes' short sections share one chunk, each under its heading
    assert after.hits[0].path.endswith("release-notes-4.2.md") and "Fixed\n\n- CSV exports" in after.hits[0].text
    buddy = search(index, model_cache, "Your buddy", "keyword").hits  # the heading path is in the keyword index
    assert buddy and buddy[0].section == "Your buddy"

    again = run_ingest(settings, [docs], progress=False)
    assert again.files_reparsed == 0 and again.files_unchanged == 12 and again.chunks_embedded == 0


def test_rag_ingest_says_what_the_upgrade_read_again_and_what_it_kept(moved, model_cache: Path) -> None:  # type: ignore[no-untyped-def]
    """An admin running today's `rag ingest` over an earlier release's index sees why every file is indexed
    again, and that most of it was not embedded again."""
    import re
    import subprocess
    import sys

    docs, index = moved
    env = dict(os.environ, RAG_DEVICE="cpu", RAG_MODEL_CACHE_DIR=str(model_cache))
    env.pop("RAG_INDEX_DIR", None)
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "ui.cli", "ingest", str(docs), "--index", str(index)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "12 indexed" in lines[0]
    [line] = [x for x in lines if "read again by this release's parsers" in x]
    embedded, added = map(int, re.search(r"(\d+) of (\d+) chunks embedded", line).groups())
    assert line.startswith("  12 files read again") and 0 < embedded < added
    again = subprocess.run([sys.executable, "-m", "ui.cli", "ingest", str(docs), "--index", str(index)],
                           capture_output=True, text=True, env=env, timeout=600, cwd=repo)
    assert "12 unchanged" in again.stdout and "read again" not in again.stdout
