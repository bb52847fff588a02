"""A messy, hostile file share: every bad file is skipped in bounded time with a reason; the rest is indexed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ingest.job import run_ingest
from ingest.walk import Skipped, resolve_roots, walk
from ingest.worker import ParserPool, WorkerConfig
from rag.embedding import default_embedding_folder
from tests import docgen
from tests.conftest import task_for


def build_hostile_folder(root: Path) -> dict[str, str]:
    """Good and bad files side by side; returns {bad file name: expected reason fragment}."""
    root.mkdir()
    (root / "good.txt").write_text("The staff handbook says badges are renewed every spring.\n")
    docgen.write_docx(root / "good.docx", ["Meeting rooms are booked in the calendar."])
    pdf = docgen.write_pdf(root / "whole.pdf", ["A complete PDF."])
    (root / "truncated.pdf").write_bytes(pdf.read_bytes()[:150])
    docgen.write_pdf(root / "encrypted.pdf", ["secret salary table"], password="hunter2")
    docx = docgen.write_docx(root / "whole.docx", ["A complete document."])
    (root / "truncated.docx").write_bytes(docx.read_bytes()[: len(docx.read_bytes()) // 2])
    docgen.write_zip_bomb_docx(root / "bomb.docx", expanded_mb=1024)
    docgen.write_entity_bomb_xlsx(root / "entities.xlsx")
    (root / "binary.txt").write_bytes(os.urandom(4096))
    with open(root / "huge.csv", "wb") as f:  # 8 GiB, sparse: costs no disk, must cost no time either
        f.truncate(8 * 2**30)
    (root / "cp1252.txt").write_bytes("Kündigungsfrist: drei Monate zum Quartalsende. Grüße, Personalabteilung".encode("cp1252"))
    (root / "empty.md").write_text("")
    (root / "program.exe").write_bytes(b"MZ\x90\x00")  # not a document type: skipped
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a truncated image: read by OCR, refused
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.txt").write_text("hidden folder content must not be indexed\n")
    (root / "~$lockfile.docx").write_bytes(b"owner lock")
    os.symlink("/etc/passwd", root / "passwd.txt")
    os.symlink(root, root / "loop")  # a link back to the root: must not loop
    os.mkfifo(root / "pipe.txt")  # a FIFO: reading it would block forever
    name = os.fsdecode(b"caf\xe9-latin1-name.txt")  # not valid UTF-8
    Path(name if os.path.isabs(name) else root / name).write_text("The Latin-1 named file talks about espresso.\n")
    (root / "whole.pdf").unlink()
    (root / "whole.docx").unlink()
    return {
        "truncated.pdf": "corrupt",
        "encrypted.pdf": "encrypted PDF",
        "truncated.docx": "corrupt or truncated",
        "bomb.docx": "zip bomb",
        "entities.xlsx": "DTD or entities",
        "binary.txt": "binary",
        "huge.csv": "larger than",
        "empty.md": "no extractable text",
        "passwd.txt": "points outside",
        "picture.png": "corrupt or unsupported image",
    }


@pytest.mark.slow
def test_hostile_folder(make_settings, embedder, tmp_path: Path) -> None:
    root = tmp_path / "share"
    expected = build_hostile_folder(root)
    settings = make_settings()
    started = time.monotonic()
    summary = run_ingest(settings, [root], embedder=embedder, progress=False)
    assert time.monotonic() - started < 120
    failed = {Path(f.path).name: f.error for f in summary.files_failed}
    assert set(failed) == set(expected), failed
    for name, fragment in expected.items():
        assert fragment in failed[name], (name, failed[name])
    assert all("\n" not in error for error in failed.values())
    assert summary.files_indexed == 4  # good.txt, good.docx, cp1252.txt, the Latin-1 named file
    assert summary.files_skipped == 1  # program.exe
    from rag.index import IndexReader
    from rag.search import Searcher

    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    hit = searcher.search("Kündigungsfrist Quartalsende", k=1).hits[0]
    assert hit.path.endswith("cp1252.txt") and "Kündigungsfrist" in hit.text
    hit = searcher.search("espresso", k=1).hits[0]
    assert hit.path.endswith("caf\\xe9-latin1-name.txt")
    every = searcher.search("hidden folder content", k=20).hits
    assert not any(".hidden" in h.path for h in every)


def test_walk_never_leaves_roots_or_loops(tmp_path: Path) -> None:
    inside = tmp_path / "root"
    (inside / "a" / "b").mkdir(parents=True)
    (inside / "a" / "b" / "doc.txt").write_text("x")
    os.symlink(inside / "a", inside / "a" / "b" / "up")  # loop inside the root
    os.symlink(tmp_path, inside / "out")  # a folder link out of the root
    items = list(walk(resolve_roots([inside])))
    found = {Path(i.path).relative_to(inside).as_posix(): i for i in items}
    assert sorted(found) == ["a/b/doc.txt", "out"]
    assert isinstance(found["out"], Skipped) and found["out"].is_failure


def _config(**overrides: object) -> WorkerConfig:
    values = dict(model_folder=str(default_embedding_folder()), chunk_tokens=200, overlap_tokens=20,
                  max_tokens=254, max_file_bytes=2**26, memory_bytes=2**31, zip_max_uncompressed=2**29,
                  zip_max_ratio=200.0)
    values.update(overrides)
    return WorkerConfig(**values)  # type: ignore[arg-type]


def test_slow_parse_is_stopped_and_the_worker_replaced(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("name,comment\n" + "".join(f"row{i},{'lorem ipsum dolor ' * 20}\n" for i in range(40_000)))
    small = tmp_path / "small.txt"
    small.write_text("still indexed after a timeout")
    pool = ParserPool(_config(), workers=1, timeout_s=1.0)
    started = time.monotonic()
    outcomes = {Path(t.path).name: o for t, o in pool.map_unordered([task_for(big), task_for(small)], idle_s=None)}
    assert "longer than 1 s" in outcomes["big.csv"].error
    assert outcomes["small.txt"].ok and outcomes["small.txt"].chunks[0][0] == "still indexed after a timeout"
    assert time.monotonic() - started < 60


def test_memory_limit_is_reported(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text(("word " * 100 + "\n\n") * 120_000)  # 60 MB of text: decoding and cleaning it needs > 256 MiB
    pool = ParserPool(_config(memory_bytes=256 * 2**20, max_file_bytes=2**27), workers=1, timeout_s=60.0)
    [(_, outcome)] = list(pool.map_unordered([task_for(big)], idle_s=None))
    assert not outcome.ok and ("memory" in outcome.error or "crashed" in outcome.error), outcome.error


def test_vanished_file_is_reported(tmp_path: Path) -> None:
    pool = ParserPool(_config(), workers=1, timeout_s=30.0)
    [(_, outcome)] = list(pool.map_unordered([task_for(tmp_path / "gone.txt")], idle_s=None))
    assert outcome.error.startswith("cannot read: No such file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_reported(make_settings, embedder, tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    (root / "locked.txt").write_text("x")
    (root / "locked.txt").chmod(0)
    summary = run_ingest(make_settings(), [root], embedder=embedder, progress=False)
    assert "cannot read" in summary.files_failed[0].error
