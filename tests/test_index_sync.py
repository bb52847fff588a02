"""`rag index sync SRC DEST`: a reader's copy of an index on another host, kept in step with the writer's
published versions. A running `rag api` reading the copy answers from the new version at its next
question; a sync killed at any point leaves the copy serving its last version; a copy that does not verify
is never installed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ingest.job import run_ingest
from rag.index import Manifest
from rag.sync import SyncError, sync_index
from tests.conftest import RAG, SAMPLES, rag_cli, serve_api, wait_for_partial


def hits(url: str, query: str) -> list[str]:
    response = httpx.post(f"{url}/v1/search", json={"query": query, "k": 3, "mode": "keyword"}, timeout=60)
    assert response.status_code == 200, response.text
    return [Path(h["path"]).name for h in response.json()["results"][0]["hits"]]


@pytest.mark.slow
def test_a_running_api_on_the_copy_follows_the_writers_versions(tmp_path: Path, make_settings, embedder,  # type: ignore[no-untyped-def]
                                                               model_cache: Path) -> None:
    settings = make_settings()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.txt").write_text("The zebrafinch count is taken every spring.")
    run_ingest(settings, [SAMPLES, docs], embedder=embedder, progress=False)
    copy = tmp_path / "copy"
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_APP_DB": str(tmp_path / "app.sqlite")}
    assert "now serves version 1" in rag_cli("index", "sync", str(settings.index_dir), str(copy), env=env)
    assert "already serves version 1" in rag_cli("index", "sync", str(settings.index_dir), str(copy), env=env)
    with serve_api(tmp_path, copy, env) as url:
        assert hits(url, "zebrafinch") == ["first.txt"]
        # the writer publishes twice (a new file, then that file removed and another edited); each sync is
        # picked up at the next question, by a server that keeps running
        (docs / "second.txt").write_text("The kingfisher nests by the pond.")
        run_ingest(settings, [SAMPLES, docs], embedder=embedder, progress=False)
        out = json.loads(rag_cli("index", "sync", str(settings.index_dir), str(copy), "--json", env=env))
        assert out == {"version": 2, "copied": True, "bytes": out["bytes"]} and out["bytes"] > 0
        assert hits(url, "kingfisher") == ["second.txt"]
        (docs / "second.txt").unlink()
        (docs / "first.txt").write_text("The zebrafinch count moved to the autumn.")
        run_ingest(settings, [SAMPLES, docs], embedder=embedder, progress=False)
        sync_index(settings.index_dir, copy)
        assert hits(url, "kingfisher") == [] and hits(url, "autumn") == ["first.txt"]
    assert Manifest.read(copy).version == 3  # type: ignore[union-attr]
    assert sorted(p.name for p in copy.glob("vectors-*.faiss")) == ["vectors-000002.faiss", "vectors-000003.faiss"]


def test_a_sync_killed_at_any_point_leaves_the_copy_serving(tmp_path: Path, make_settings, embedder,  # type: ignore[no-untyped-def]
                                                           model_cache: Path) -> None:
    from rag.search import build_searcher
    from rag.settings import load_settings

    settings = make_settings()
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    copy = tmp_path / "copy"
    sync_index(settings.index_dir, copy)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heron.txt").write_text("The heron count is taken in May.")
    run_ingest(settings, [SAMPLES, docs], embedder=embedder, progress=False)
    with sqlite3.connect(settings.index_dir / "chunks.sqlite") as conn:  # a store that takes a while to copy
        conn.execute("INSERT INTO meta(key, value) VALUES ('padding', ?)", ("x" * 60_000_000,))
    env = {**os.environ, "RAG_DEVICE": "cpu"}
    # when the copying starts (its hidden folder appears) and when the new version is installed
    process = subprocess.Popen([str(RAG), "index", "sync", str(settings.index_dir), str(tmp_path / "timed")],
                               env=env, stdout=subprocess.DEVNULL)
    started, copying = time.monotonic(), None
    while process.poll() is None:
        if copying is None and list((tmp_path / "timed").glob(".sync.partial-*")):
            copying = time.monotonic() - started
        time.sleep(0.005)
    whole = time.monotonic() - started
    assert process.returncode == 0 and copying is not None and whole - copying > 0.1, (copying, whole)
    reader = build_searcher(load_settings(index_dir=copy, device="cpu", model_cache_dir=model_cache))
    rng = random.Random(3)
    interrupted = 0
    for _ in range(6):
        process = subprocess.Popen([str(RAG), "index", "sync", str(settings.index_dir), str(copy)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_partial(copy, ".sync.partial-*", process)  # then somewhere while it copies and installs
        time.sleep(rng.uniform(0, 0.9 * (whole - copying)))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        version = Manifest.read(copy).version  # type: ignore[union-attr]
        interrupted += version == 1
        found = reader.search("heron count", 3, "keyword").hits
        assert version in (1, 2) and (bool(found) == (version == 2)), version  # the old version, or all of the new
        assert reader.search("When is lunch served?", 3).hits  # and it answers either way
        if version == 2:
            break
    assert interrupted, "every sync finished before its kill: nothing was tested"
    report = sync_index(settings.index_dir, copy)
    assert report.version == 2 and not list(copy.glob(".sync.partial-*"))


def test_a_copy_that_does_not_verify_is_not_installed(tmp_path: Path, make_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    copy = tmp_path / "copy"
    sync_index(settings.index_dir, copy)
    (SAMPLES_COPY := tmp_path / "docs").mkdir()
    (SAMPLES_COPY / "new.txt").write_text("The heron count is taken in May.")
    run_ingest(settings, [SAMPLES, SAMPLES_COPY], embedder=embedder, progress=False)
    manifest = json.loads((settings.index_dir / "manifest.json").read_text())
    manifest["vectors_sha256"] = "0" * 64  # as if the file were damaged in transit
    (settings.index_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SyncError, match="checksum"):
        sync_index(settings.index_dir, copy)
    assert Manifest.read(copy).version == 1  # type: ignore[union-attr]
    assert not list(copy.glob(".sync.partial-*"))
    with pytest.raises(SyncError, match="no published"):
        sync_index(tmp_path / "nothing", tmp_path / "copy2")


def test_a_folder_left_by_a_sync_killed_after_installing_is_removed_by_the_next(tmp_path: Path, make_settings,  # type: ignore[no-untyped-def]
                                                                               embedder) -> None:
    # the kill fell between installing the new manifest and removing the copying folder: the next sync has
    # nothing to copy, and still removes the dead process's folder (a live process's folder is left alone)
    settings = make_settings()
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    copy = tmp_path / "copy"
    sync_index(settings.index_dir, copy)
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = copy / f".sync.partial-{socket.gethostname()}-{dead.pid}"
    live = copy / f".sync.partial-{socket.gethostname()}-{os.getpid()}"
    for folder in (left, live):
        folder.mkdir()
        (folder / "chunks.sqlite").write_bytes(b"half")
    report = sync_index(settings.index_dir, copy)
    assert not report.copied and not left.exists() and live.exists()
