"""The ingest job: walk folders, parse what changed, embed, write batches, publish a version."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from ingest.acl import AclResolver
from ingest.walk import FoundFile, Skipped, display_path, is_under, resolve_roots, walk
from ingest.worker import Outcome, ParserPool, Task, WorkerConfig
from rag.embedding import Embedder, make_embedder, model_max_tokens, resolve_embedding_folder
from rag.index import IndexWriter
from rag.store import StoredDocument
from rag.settings import Settings
from rag.types import ChunkInput, DocumentInput

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FailedFile:
    """A file that was not indexed, with the one-line reason."""

    path: str
    error: str


@dataclass
class IngestSummary:
    """What one run did; `rag ingest --json` prints it."""

    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    files_failed: list[FailedFile] = field(default_factory=list)
    files_skipped: int = 0
    files_excluded: int = 0  # removed by an admin: left out until the removal is undone
    chunks_added: int = 0
    chunks_embedded: int = 0  # chunks_added minus those whose text (and so vector) was already stored
    chunks_removed: int = 0
    permissions_changed: int = 0  # unchanged files whose readers changed (applied without re-embedding)
    vectors_total: int = 0
    version: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True)
class IngestProgress:
    """Where a run is, for a display: scanning (files found so far), indexing (done of total), publishing."""

    phase: Literal["scanning", "indexing", "publishing"]
    files_seen: int
    files_done: int = 0
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]
SCAN_REPORT_EVERY = 200  # folder entries walked between two "scanning" reports


class _Progress:
    """A tqdm bar on a terminal; a log line every few seconds otherwise; and the caller's callback."""

    def __init__(self, total: int, enabled: bool | None, callback: ProgressCallback | None = None) -> None:
        tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=total, unit="file", desc="ingest", disable=not tty, dynamic_ncols=True)
        self.tty = tty
        self.total = total
        self.done = 0
        self.chunks = 0
        self.started = self.last_log = time.monotonic()
        self.callback = callback
        self._report()

    def update(self, files: int = 0, chunks: int = 0) -> None:
        self.done += files
        self.chunks += chunks
        self._report()
        self.bar.set_postfix(chunks=self.chunks, refresh=False)
        self.bar.update(files)
        now = time.monotonic()
        if not self.tty and (now - self.last_log >= 5 or self.done == self.total):
            self.last_log = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("ingest: %d/%d files, %d chunks, %.1f files/s, eta %.0f s",
                     self.done, self.total, self.chunks, rate, eta)

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(IngestProgress("indexing", self.total, self.done, self.chunks))

    def close(self) -> None:
        self.bar.close()


class _Batch:
    """Parsed documents waiting to be embedded and committed together."""

    def __init__(self) -> None:
        self.docs: list[DocumentInput] = []
        self.vectors: list[np.ndarray | None] = []  # per document, when an engine embedded it already
        self.replaced: list[int] = []
        self.chunks = 0

    def add(self, doc: DocumentInput | None, replaces: int | None, vectors: np.ndarray | None = None) -> None:
        if doc is not None:
            self.docs.append(doc)
            self.vectors.append(vectors)
            self.chunks += len(doc.chunks)
        if replaces is not None:
            self.replaced.append(replaces)


def run_ingest(settings: Settings, paths: list[Path], *, embedder: Embedder | None = None,
               progress: bool | None = None, on_progress: ProgressCallback | None = None,
               engine: Literal["local", "ray"] = "local",
               after_scan: Callable[[], None] | None = None) -> IngestSummary:
    """Bring the index in `settings.index_dir` up to date with the files under `paths`.

    `progress`: a terminal progress bar (None: when stderr is a terminal); `on_progress`: called with an
    `IngestProgress` while the folders are scanned, as files are committed and before publishing, e.g. by
    the web page's job.
    `engine`: "local" parses in sandboxed processes here and embeds in this process; "ray" parses and
    embeds on a Ray cluster (ingest/ray_engine.py) while this process decides what changed, commits and
    publishes, exactly as the local engine does. `after_scan`: called once the folders are scanned and
    before any file is parsed (tests use it to change the files in between, as an attacker would).

    Safe to re-run and to kill: unchanged files are skipped by size and modification time (then by
    content hash), each batch is one transaction, and the new version is published atomically at
    the end. Files that cannot be indexed are listed in the summary with a reason.
    """
    started = time.perf_counter()
    roots = resolve_roots(paths)
    embedder = embedder or make_embedder(settings)  # lazy: the Ray engine never loads it here
    model_folder = resolve_embedding_folder(settings)
    summary = IngestSummary()
    max_bytes = int(settings.max_file_mb * 2**20)

    acl = AclResolver(settings.acl_roots)
    with IndexWriter.open(settings, embedder.model_id) as writer:
        live = writer.live_documents()
        excluded = [Path(e.path) for e in writer.exclusions()]
        tasks: list[tuple[Task, FoundFile]] = []
        seen_keys: set[bytes] = set()
        stale: list[int] = []  # live documents whose file is gone or now refused
        for walked, item in enumerate(walk(roots)):
            if on_progress is not None and walked % SCAN_REPORT_EVERY == 0:
                on_progress(IngestProgress("scanning", summary.files_seen))
            if isinstance(item, Skipped):
                if item.is_failure:
                    summary.files_failed.append(FailedFile(display_path(item.path), item.reason))
                else:
                    summary.files_skipped += 1
                continue
            if excluded and is_under(item.path, excluded):
                summary.files_excluded += 1  # like a vanished file: a stored copy goes below
                continue
            summary.files_seen += 1
            key = item.path_key
            seen_keys.add(key)
            stored = live.get(key)
            if item.size > max_bytes:
                summary.files_failed.append(FailedFile(
                    item.display, f"file of {item.size / 2**20:.0f} MiB is larger than the "
                                  f"{settings.max_file_mb:g} MiB limit (RAG_MAX_FILE_MB)"))
                if stored is not None:
                    stale.append(stored.doc_id)
                continue
            if stored is not None and stored.size == item.size and stored.mtime_ns == item.mtime_ns:
                summary.files_unchanged += 1
                _update_groups(summary, writer, stored, acl.groups_for(item.path))
                continue
            tasks.append((Task.of(item, stored.content_hash if stored else None), item))
        for key, stored in live.items():
            if key not in seen_keys and is_under(os.fsdecode(key), roots):
                stale.append(stored.doc_id)
                summary.files_removed += 1
        if stale:
            _, removed = writer.write_batch([], np.zeros((0, 0), dtype=np.float32), stale)
            summary.chunks_removed += removed

        if after_scan is not None:
            after_scan()
        bar = _Progress(summary.files_seen, progress, on_progress)
        bar.update(files=summary.files_unchanged)
        found_by_path = {task.path: found for task, found in tasks}
        batch = _Batch()

        dim: int | None = None

        def flush() -> None:
            nonlocal batch, dim
            if not batch.docs and not batch.replaced:
                return
            if batch.docs and all(v is not None for v in batch.vectors):
                vectors = np.concatenate([v for v in batch.vectors if v is not None])
                embedded = len(vectors)
            else:
                vectors, embedded = writer.embed_reusing(embedder, [c.text for d in batch.docs for c in d.chunks])
            if len(vectors):
                dim = vectors.shape[1]
            added, removed = writer.write_batch(batch.docs, vectors, batch.replaced)
            summary.chunks_embedded += embedded
            summary.chunks_added += added
            summary.chunks_removed += removed
            # a parsed file counts as done once it is embedded and committed: rate and ETA stay honest
            bar.update(files=len(batch.docs), chunks=added)
            batch = _Batch()

        if tasks:
            config = WorkerConfig(
                model_folder=str(model_folder), chunk_tokens=settings.chunk_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                max_tokens=model_max_tokens(model_folder) - 2,  # [CLS] and [SEP]
                max_file_bytes=max_bytes, memory_bytes=settings.parse_memory_mb * 2**20,
                zip_max_uncompressed=int(settings.zip_max_uncompressed_mb * 2**20),
                zip_max_ratio=settings.zip_max_ratio,
            )
            if engine == "ray":
                from ingest.ray_engine import parse_and_embed

                results = parse_and_embed(config, [t for t, _ in tasks], settings)
            else:
                pool = ParserPool(config, settings.parse_workers, settings.parse_timeout_s)
                results = ((t, o, None) for t, o in pool.map_unordered(t for t, _ in tasks))
            try:
                for task, outcome, vectors in results:
                    found = found_by_path[task.path]
                    stored = live.get(found.path_key)
                    if not _record(summary, writer, batch, found, stored, acl.groups_for(found.path), outcome,
                                   vectors):
                        bar.update(files=1)
                    if batch.chunks >= settings.commit_chunks:  # one embedding call, one transaction
                        flush()
                flush()
            finally:
                bar.close()
        else:
            bar.close()
        summary.files_failed.extend(FailedFile(display_path(path), error) for path, error in acl.problems())
        if dim is None and writer.published is None:
            dim = embedder.dim  # a first run that added nothing still publishes an empty index
        if on_progress is not None:
            on_progress(IngestProgress("publishing", summary.files_seen, summary.files_seen, summary.chunks_added))
        report = writer.publish(dim)
        summary.vectors_total = report.vectors_total
        summary.version = report.version
    summary.seconds = time.perf_counter() - started
    return summary


def _update_groups(summary: IngestSummary, writer: IndexWriter, stored: StoredDocument,
                   groups: tuple[str, ...]) -> None:
    if stored.groups != groups:
        writer.set_groups(stored.doc_id, groups)
        summary.permissions_changed += 1


def _record(summary: IngestSummary, writer: IndexWriter, batch: _Batch, found: FoundFile,
            stored: StoredDocument | None, groups: tuple[str, ...], outcome: Outcome,
            vectors: np.ndarray | None = None) -> bool:
    """Fold one parsed file into the summary and the pending batch; True if it waits in the batch."""
    old_doc_id = stored.doc_id if stored else None
    if not outcome.ok:
        summary.files_failed.append(FailedFile(found.display, outcome.error))
        batch.add(None, old_doc_id)  # its old text is stale now: it goes with the next commit
        return False
    if outcome.unchanged:
        assert stored is not None
        writer.touch(stored.doc_id, found.size, found.mtime_ns)
        _update_groups(summary, writer, stored, groups)
        summary.files_unchanged += 1
        return False
    doc = DocumentInput(
        path_key=found.path_key, path=found.display, title=outcome.title, size=found.size,
        mtime_ns=found.mtime_ns, content_hash=outcome.content_hash,
        chunks=tuple(ChunkInput(text=text, position=i, page=page) for i, (text, page) in enumerate(outcome.chunks)),
        groups=groups,
    )
    batch.add(doc, old_doc_id, vectors)
    summary.files_indexed += 1
    return True


@dataclass
class RemovalSummary:
    """What `remove_paths` took out of the index."""

    documents_removed: int = 0
    chunks_removed: int = 0
    version: int = 0


def documents_under(live: dict[bytes, StoredDocument], paths: list[str]) -> list[StoredDocument]:
    """The documents of `live` at or under `paths` (as stored): what a removal of `paths` takes."""
    folders = [Path(p) for p in paths]
    return [doc for key, doc in live.items() if is_under(os.fsdecode(key), folders)]


def remove_paths(settings: Settings, paths: list[str], model_id: str, by: str = "") -> RemovalSummary:
    """Take the documents at or under `paths` (as stored) out of the index, publishing a new version.

    The files themselves are untouched; the removal sticks: later ingest runs leave these paths out
    until `restore_paths` undoes it (a scheduled run must not bring back what an admin removed).
    """
    summary = RemovalSummary()
    with IndexWriter.open(settings, model_id) as writer:
        writer.exclude(paths, by)
        doomed = [doc.doc_id for doc in documents_under(writer.live_documents(), paths)]
        if doomed:
            summary.documents_removed = len(doomed)
            _, summary.chunks_removed = writer.write_batch([], np.zeros((0, 0), dtype=np.float32), doomed)
        summary.version = writer.publish(None).version
    return summary


def restore_paths(settings: Settings, paths: list[str], model_id: str) -> int:
    """Undo removals: the next ingest of a folder holding these paths indexes them again. How many
    removals were undone."""
    with IndexWriter.open(settings, model_id) as writer:
        return writer.include(paths)
