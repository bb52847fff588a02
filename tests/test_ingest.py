"""The ingest job end to end, with the real model, SQLite files and FAISS indexes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ingest.job import run_ingest
from rag.embedding import SentenceTransformerEmbedder
from rag.index import IndexBusyError, IndexReader, IndexWriter, Manifest, ModelMismatchError
from rag.search import Searcher
from rag.settings import Settings
from tests.conftest import consistent, write_corpus




def test_every_format_is_indexed_and_found(make_settings, embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    questions = write_corpus(tmp_path / "docs")
    settings = make_settings()
    summary = run_ingest(settings, [tmp_path / "docs"], embedder=embedder, progress=False)
    assert summary.files_failed == []
    assert summary.files_indexed == summary.files_seen == 11
    assert summary.vectors_total == summary.chunks_added > 0
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    results = searcher.search_batch(list(questions), k=3)
    for result in results:
        assert Path(result.hits[0].path).name == questions[result.query], result
    kiln = next(r for r in results if "kiln" in r.query)
    assert kiln.hits[0].page == 2 and kiln.hits[0].title == "Pottery Studio Rules"
    assert consistent(settings.index_dir) == (11, summary.chunks_added)


def test_reruns_are_incremental(make_settings, embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs)
    settings = make_settings()
    first = run_ingest(settings, [docs], embedder=embedder, progress=False)

    again = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert (again.files_unchanged, again.files_indexed, again.chunks_added, again.version) == (11, 0, 0, first.version)

    os.utime(docs / "piano.txt", ns=(1, 1))  # touched, same content: no re-embedding
    touched = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert (touched.files_unchanged, touched.files_indexed, touched.version) == (11, 0, first.version)

    (docs / "piano.txt").write_text("The lobby piano was moved to the canteen in May.\n")
    (docs / "drone.md").unlink()
    (docs / "new.txt").write_text("The new visitor wifi network is called Guest-5G.\n")
    changed = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert (changed.files_indexed, changed.files_removed, changed.files_unchanged) == (2, 1, 9)
    assert changed.chunks_removed == 2 and changed.chunks_added == 2
    assert changed.version == first.version + 1
    assert consistent(settings.index_dir) == (11, first.chunks_added)

    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    assert Path(searcher.search("what is the guest wifi called", k=1).hits[0].path).name == "new.txt"
    hits = searcher.search("drone permit parking lot security office", k=20).hits
    assert all(Path(h.path).name != "drone.md" for h in hits)


def index_one_file(make_settings, embedder, tmp_path: Path, text: str) -> tuple[Path, Settings]:  # type: ignore[no-untyped-def]
    """A folder holding a.txt with `text`, indexed; returns (folder, settings)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(text)
    settings = make_settings()
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    return docs, settings


def test_long_running_reader_picks_up_new_version(make_settings, embedder, tmp_path: Path) -> None:
    docs, settings = index_one_file(make_settings, embedder, tmp_path, "The fire assembly point is the north car park.\n")
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    assert searcher.search("fire assembly point", k=5).hits[0].path.endswith("a.txt")
    (docs / "b.txt").write_text("The quarterly town hall is streamed from the auditorium.\n")
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert searcher.search("where is the town hall streamed from", k=1).hits[0].path.endswith("b.txt")
    assert searcher.reader.manifest is not None and searcher.reader.manifest.version == 2


def test_index_refuses_another_model(make_settings, embedder, tmp_path: Path) -> None:
    docs, _ = index_one_file(make_settings, embedder, tmp_path, "Hello world.\n")
    other = tmp_path / "other-model"
    shutil.copytree(embedder.folder, other, symlinks=True)
    (other / "config.json").write_text((other / "config.json").read_text().replace("}", ', "note": "x"}', 1))
    other_settings = make_settings(embedding_model=str(other))
    other_embedder = SentenceTransformerEmbedder(other_settings.embedding)
    with pytest.raises(ModelMismatchError, match="built with embedding model all-MiniLM-L6-v2"):
        Searcher(other_embedder, IndexReader(other_settings.index), other_settings.search).search("hello")
    with pytest.raises(ModelMismatchError):
        run_ingest(other_settings, [docs], embedder=other_embedder, progress=False)


def test_second_writer_is_refused(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    settings = make_settings(lock_timeout_s=0.5)  # a bounded wait, then the one-line refusal
    with IndexWriter.open(settings.index, embedder.model_id):
        with pytest.raises(IndexBusyError, match="another ingest run"):
            run_ingest(settings, [docs], embedder=embedder, progress=False)


def test_approximate_index_above_threshold(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    questions = write_corpus(docs)
    for i in range(40):
        (docs / f"filler{i}.txt").write_text(f"Filler memo {i}: the meeting about budget line {i} was moved.\n")
    settings = make_settings(exact_max_vectors=20, ivf_nprobe=64)
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False)
    manifest = Manifest.read(settings.index_dir)
    assert manifest is not None and manifest.index_type == "ivf" and summary.vectors_total == manifest.vectors
    searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
    for result in searcher.search_batch(list(questions), k=3):
        assert Path(result.hits[0].path).name == questions[result.query]
    (docs / "filler0.txt").unlink()
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert summary.chunks_removed == 1
    consistent(settings.index_dir)


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_unchanged_paragraphs_and_copies_are_not_re_embedded(make_settings, embedder, tmp_path: Path,
                                                             engine: str) -> None:
    """Every engine's chunks go through the one commit path that reuses stored vectors: an edit to one
    section of a manual embeds that section, on Ray as locally."""
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraphs = [f"Section {i}. " + f"The procedure for workstream {i} requires sign-off by the lead. " * 12
                  for i in range(8)]
    (docs / "manual.txt").write_text("\n\n".join(paragraphs))
    settings = make_settings(chunk_tokens=160, chunk_overlap_tokens=0)
    first = run_ingest(settings, [docs], embedder=embedder, progress=False, engine=engine)
    assert first.chunks_embedded == first.chunks_added >= 8

    paragraphs[3] = "Section 3. This workstream was cancelled in October and needs no sign-off."
    (docs / "manual.txt").write_text("\n\n".join(paragraphs))
    (docs / "manual-copy.txt").write_text((docs / "manual.txt").read_text())
    edited = run_ingest(settings, [docs], embedder=embedder, progress=False, engine=engine)
    assert edited.files_indexed == 2
    assert edited.chunks_removed == first.chunks_added and edited.chunks_added == edited.vectors_total
    assert edited.chunks_embedded == 1  # only the rewritten section; the copy costs nothing
    consistent(settings.index_dir)
    hit = Searcher(embedder, IndexReader(settings.index), settings.search).search("which workstream was cancelled", k=1).hits[0]
    assert "cancelled in October" in hit.text
