"""`rag backup` and `rag restore` as an operator runs them, while the service is used: a backup is consistent,
a backup killed at any point leaves nothing `rag restore` accepts, a damaged one is refused, and a restored
folder answers the same searches and holds the same conversations.

Attacker and accident: an operator's cron job killed mid-copy (kill -9 at random points); a backup folder
edited or truncated afterwards (a checksum fails); a backup whose manifest names a file outside it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.backup import BACKUP_FILE, BackupError, restore, take_backup, verify
from rag.search import build_searcher
from rag.settings import load_settings
from tests.conftest import RAG, SAMPLES, rag_cli, wait_for_partial, write
from ui.appdb import AppDB


@pytest.fixture()
def served(tmp_path: Path, make_settings, embedder) -> dict:  # type: ignore[no-untyped-def]
    """An index of the samples and an app database with a conversation in it."""
    settings = make_settings(app_db=tmp_path / "app.sqlite")
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    db = AppDB(settings.audit.app_db, 30)
    conversation = db.start_conversation("ada", "When is lunch served?")
    return {"settings": settings, "conversation": conversation}


def searched(index: Path, model_cache: Path, query: str) -> list[tuple[str, int | None]]:
    searcher = build_searcher(load_settings(index_dir=index, device="cpu", model_cache_dir=model_cache))
    return [(h.path, h.page) for h in searcher.search(query, 5).hits]


def test_a_restored_backup_answers_the_same_and_keeps_the_conversations(served: dict, tmp_path: Path,
                                                                       model_cache: Path) -> None:
    settings = served["settings"]
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_INDEX_DIR": str(settings.index_dir), "RAG_APP_DB": str(settings.audit.app_db)}
    out = json.loads(rag_cli("backup", str(tmp_path / "backup"), "--json", env=env))
    manifest = verify(tmp_path / "backup")
    paths = {f.path for f in manifest.files}
    keywords = {p for p in paths if p.startswith("index/keywords/")}  # the keyword index's tantivy copy
    assert paths - keywords == {"index/manifest.json", "index/chunks.sqlite", "app.sqlite",
                                "index/vectors-000001.faiss"}
    assert {"index/keywords/meta.json", "index/keywords/instance"} < keywords
    assert out["index_version"] == 1 and out["app_db"] and out["files"] == len(paths)
    restored_env = {**env, "RAG_INDEX_DIR": str(tmp_path / "restored"), "RAG_APP_DB": str(tmp_path / "restored.sqlite")}
    assert "restored index version 1" in rag_cli("restore", str(tmp_path / "backup"), env=restored_env)
    for query in ("When is lunch served?", "How many vacation days do I get?", "VPN portal address"):
        assert searched(tmp_path / "restored", model_cache, query) == searched(settings.index_dir, model_cache, query)
    db = AppDB(tmp_path / "restored.sqlite", 30)
    assert [c.id for c in db.conversations("ada")] == [served["conversation"]]
    # the restored folder is a normal index: the next run writes it, re-embedding nothing
    summary = json.loads(rag_cli("ingest", str(SAMPLES), "--json", env=restored_env).strip().splitlines()[-1])
    assert summary["files_unchanged"] == 12 and summary["chunks_embedded"] == 0 and not summary["files_failed"]
    assert oct((tmp_path / "backup").stat().st_mode & 0o777) == "0o700"  # every document's text: the owner's
    # restoring over a folder that holds something, or onto an existing app database, is refused
    again = subprocess.run([str(RAG), "restore", str(tmp_path / "backup")], env=restored_env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr


def test_a_backup_taken_while_ingest_publishes_is_one_version(served: dict, tmp_path: Path, embedder,
                                                             model_cache: Path) -> None:
    """Versions published during the copy: every backup holds exactly the rows of the version it names."""
    settings = served["settings"]
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"memo-{i}.txt").write_text(f"Memo {i}: the quarterly zebrafinch count is {i * 7}.")
        run_ingest(settings, [SAMPLES, docs], embedder=embedder, progress=False)
        manifest = take_backup(settings.index_dir, None, tmp_path / f"b{i}")
        restore(tmp_path / f"b{i}", tmp_path / f"r{i}", None)
        conn = sqlite3.connect(tmp_path / f"r{i}" / "chunks.sqlite")
        version = manifest.index_version
        visible = conn.execute("SELECT count(*) FROM chunks WHERE added_version <= ? AND (removed_version IS NULL "
                               "OR removed_version > ?)", (version, version)).fetchone()[0]
        published = json.loads((tmp_path / f"r{i}" / "manifest.json").read_text())
        assert published["version"] == version and published["vectors"] == visible


def test_a_backup_killed_at_any_point_leaves_nothing_restore_accepts(served: dict, tmp_path: Path,
                                                                    model_cache: Path) -> None:
    settings = served["settings"]
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_INDEX_DIR": str(settings.index_dir), "RAG_APP_DB": str(settings.audit.app_db)}
    with sqlite3.connect(settings.audit.app_db) as conn:  # a year of audit rows: a copy that takes a while
        conn.executemany("INSERT INTO audit(created, username, question, searched, outcome, shown, model, "
                         "index_version, seconds) VALUES (?, 'ada', ?, '', 'answered', '[]', '', 1, 0.1)",
                         [(time.time(), f"question {i} " + "x" * 200) for i in range(150_000)])
    # when the copying starts (the hidden folder appears) and ends (the backup appears under its name)
    process = subprocess.Popen([str(RAG), "backup", str(tmp_path / "timed")], env=env, stdout=subprocess.DEVNULL)
    started, copying = time.monotonic(), None
    while process.poll() is None:
        if copying is None and list(tmp_path.glob(".timed.partial-*")):
            copying = time.monotonic() - started
        time.sleep(0.005)
    whole = time.monotonic() - started
    assert process.returncode == 0 and copying is not None and whole - copying > 0.1, (copying, whole)
    rng = random.Random(7)
    interrupted = []
    for attempt in range(8):
        dest = tmp_path / f"killed-{attempt}"
        process = subprocess.Popen([str(RAG), "backup", str(dest)], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        # somewhere while it copies: from when its hidden folder appears (start-up time varies from run to run)
        wait_for_partial(tmp_path, f".killed-{attempt}.partial-*", process)
        time.sleep(rng.uniform(0, 0.9 * (whole - copying)))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        if dest.exists():  # it finished before the kill: then it is whole
            verify(dest)
            continue
        interrupted.append(dest)
        with pytest.raises(BackupError):  # nothing under its name; what it left is no backup either
            restore(dest, tmp_path / f"restored-{attempt}", None)
        for partial in tmp_path.glob(f".killed-{attempt}.partial-*"):
            with pytest.raises(BackupError):
                verify(partial)
    assert len(interrupted) >= 3, "most kills came after the backup had finished: too little was tested"
    # the next backup to the same place clears what the killed one left, and succeeds
    rag_cli("backup", str(interrupted[0]), env=env)
    verify(interrupted[0])
    assert not list(tmp_path.glob(f".{interrupted[0].name}.partial-*"))


def test_a_damaged_or_hostile_backup_is_refused(served: dict, tmp_path: Path) -> None:
    settings = served["settings"]
    take_backup(settings.index_dir, settings.audit.app_db, tmp_path / "b")
    chunks = tmp_path / "b" / "index" / "chunks.sqlite"
    data = bytearray(chunks.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunks.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="checksum"):
        restore(tmp_path / "b", tmp_path / "r", None)
    assert not (tmp_path / "r").exists()

    take_backup(settings.index_dir, None, tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / BACKUP_FILE).read_text())
    manifest["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0"})
    (tmp_path / "c" / BACKUP_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="outside"):
        verify(tmp_path / "c")


def test_a_postgresql_app_database_is_backed_up_and_restored_into_an_empty_one(tmp_path: Path, make_settings,
                                                                              embedder, pg_server) -> None:  # type: ignore[no-untyped-def]
    """The shared database's snapshot travels in the backup as a SQLite copy; `rag restore` puts its rows into
    an empty PostgreSQL database (and refuses one that holds rows)."""
    url, password_file = pg_server.database(tmp_path)
    settings = make_settings(app_db=url, app_db_password_file=password_file)
    write(tmp_path / "docs" / "lunch.txt", "Lunch is served in the cafeteria from 11:30 to 14:00.")
    run_ingest(settings, [tmp_path / "docs"], embedder=embedder, progress=False)
    db = AppDB.from_settings(settings.audit)
    conversation = db.start_conversation("ada", "When is lunch served?")
    token = db.create_token("bot", "ada", "read")
    db.close()
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_INDEX_DIR": str(settings.index_dir), "RAG_APP_DB": url,
           "RAG_APP_DB_PASSWORD_FILE": str(password_file)}
    out = json.loads(rag_cli("backup", str(tmp_path / "backup"), "--json", env=env))
    assert out["app_db"] and "app.sqlite" in {f.path for f in verify(tmp_path / "backup").files}
    assert password_file.read_text().strip() not in (tmp_path / "backup" / "backup.json").read_text()
    refused = subprocess.run([str(RAG), "restore", str(tmp_path / "backup"), "--index", str(tmp_path / "r1")],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "already holds rows" in refused.stderr
    new_url, new_password = pg_server.database(tmp_path)
    restored_env = {**env, "RAG_INDEX_DIR": str(tmp_path / "restored"), "RAG_APP_DB": new_url,
                    "RAG_APP_DB_PASSWORD_FILE": str(new_password)}
    assert "restored index version 1" in rag_cli("restore", str(tmp_path / "backup"), env=restored_env)
    restored = AppDB(new_url, password_file=new_password)
    assert [c.id for c in restored.conversations("ada")] == [conversation] and restored.token_for(token) is not None
    restored.close()
