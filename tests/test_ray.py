"""`rag ingest --engine ray` on a local Ray: the same summary, incremental behaviour and index as the
local engine."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ingest.job import run_ingest
from rag.index import IndexReader
from rag.search import Searcher
from ingest.ocr import find_tessdata
from tests.conftest import SAMPLES
from tests.docgen import write_scanned_pdf

pytestmark = pytest.mark.slow  # a local Ray cluster


def test_ray_engine_matches_the_local_engine(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    ocr = find_tessdata(None) is not None
    if ocr:  # a scanned page: read by OCR in the Ray actors' sandboxed workers as in the local ones
        write_scanned_pdf(docs / "scan.pdf", [("scan", ["Scanned notice.", "The archive room key is at desk C."])])
    ray_settings = make_settings(index_dir=tmp_path / "ray-index")
    local_settings = make_settings(index_dir=tmp_path / "local-index")
    by_ray = run_ingest(ray_settings, [docs], embedder=embedder, progress=False, engine="ray")
    local = run_ingest(local_settings, [docs], embedder=embedder, progress=False)
    for name, value in local.to_dict().items():
        if name == "files_failed":
            assert sorted(f.path for f in by_ray.files_failed) == sorted(f.path for f in local.files_failed) != []
        elif name != "seconds":
            assert getattr(by_ray, name) == value, name
    assert local.chunks_embedded > 0
    assert local.pages_ocr == (1 if ocr else 0)

    # same vectors for the same chunks (ids may differ: the order of arrival does)
    def texts(index_dir: Path) -> dict[str, bytes]:
        with sqlite3.connect(index_dir / "chunks.sqlite") as conn:  # the real file, read directly
            return dict(conn.execute("SELECT text, embedding FROM chunks"))

    ta, tb = texts(ray_settings.index_dir), texts(local_settings.index_dir)
    assert ta.keys() == tb.keys()
    assert all(np.allclose(np.frombuffer(ta[t], np.float32), np.frombuffer(tb[t], np.float32), atol=1e-5) for t in ta)

    (docs / "intranet" / "cafeteria.html").unlink()
    again = run_ingest(ray_settings, [docs], embedder=embedder, progress=False, engine="ray")
    assert again.files_indexed == 0 and again.files_removed == 1 and again.version == 2
    hits = Searcher(embedder, IndexReader(ray_settings.index), ray_settings.search).search("How do I connect to the VPN?", 1).hits
    assert hits[0].path.endswith("it-handbook.docx")
