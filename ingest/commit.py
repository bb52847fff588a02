"""The one commit path of an ingest run, whatever engine parsed the files.

Parsed documents wait in a batch; a batch is embedded in one call (texts already stored reuse their
vector, by content hash) and written in one transaction, so a killed run loses at most a batch and a
re-run skips what was committed.
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

from ingest.plan import FailedFile, IngestProgress, IngestSummary, PlannedFile, ProgressCallback
from ingest.worker import Outcome
from rag.embedding import Embedder
from rag.index import IndexWriter
from rag.types import ChunkInput, DocumentInput

log = logging.getLogger(__name__)

FIRST_BATCH_CHUNKS = 32


class Progress:
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


class Committer:
    """Folds parsed files into batches and commits each: embed what is new, write, count."""

    def __init__(self, writer: IndexWriter, embedder: Embedder, summary: IngestSummary, progress: Progress,
                 commit_chunks: int, publish_interval_s: float = 0.0) -> None:
        self.writer = writer
        self.publish_interval_s = publish_interval_s
        self._last_publish = time.monotonic()
        self._publish_cost = 0.0
        self.embedder = embedder
        self.summary = summary
        self.progress = progress
        self.commit_chunks = commit_chunks
        self.dim: int | None = None  # of the vectors written, once any are
        self._docs: list[DocumentInput] = []
        self._replaced: list[int] = []
        self._chunks = 0

    def use(self, embedder: Embedder, commit_chunks: int) -> None:
        """Embed with the engine's embedder, in the engine's batch size, from now on."""
        self.embedder, self.commit_chunks = embedder, commit_chunks

    def add(self, planned: PlannedFile, outcome: Outcome) -> None:
        """One parsed file: failed or nothing to index (its stored copy goes), unchanged by content (touched)
        or new text."""
        found, stored, summary = planned.found, planned.stored, self.summary
        if not outcome.ok or outcome.skipped:
            if outcome.skipped:
                summary.nothing_to_index.append(FailedFile(found.display, outcome.skipped))
                summary.files_skipped += 1
            else:
                summary.files_failed.append(FailedFile(found.display, outcome.error))
            if stored is not None:
                self._replaced.append(stored.doc_id)  # its old text is stale now: it goes with the next commit
            self.progress.update(files=1)
        elif outcome.unchanged:
            assert stored is not None
            self.writer.touch(stored.doc_id, found.size, found.mtime_ns, found.source_state)
            if stored.groups != planned.groups:
                self.set_groups(stored.doc_id, planned.groups)
            summary.files_unchanged += 1
            self.progress.update(files=1)
        else:
            self._docs.append(DocumentInput(
                path_key=found.path_key, path=found.display, title=outcome.title, size=found.size,
                mtime_ns=found.mtime_ns, content_hash=outcome.content_hash,
                chunks=tuple(ChunkInput(text=text, position=i, page=page, section=section)
                             for i, (text, page, section) in enumerate(outcome.chunks)),
                groups=planned.groups, ocr_pages=tuple(outcome.ocr_pages), parser_version=outcome.parser_version,
                source_state=found.source_state,
            ))
            summary.pages_ocr += len(outcome.ocr_pages)
            summary.parts_unread.extend(FailedFile(found.display, warning) for warning in outcome.warnings)
            if stored is not None:
                self._replaced.append(stored.doc_id)
            self._chunks += len(outcome.chunks)
            summary.files_indexed += 1
        # one embedding call, one transaction; a first run's first batch is small, so its first documents
        # are searchable within seconds (published at once, see _maybe_publish)
        first = self.writer.published is None and self.publish_interval_s > 0
        if self._chunks >= (min(self.commit_chunks, FIRST_BATCH_CHUNKS) if first else self.commit_chunks):
            self.flush()

    def set_groups(self, doc_id: int, groups: tuple[str, ...]) -> None:
        """New readers for a stored document, applied without re-embedding it."""
        self.writer.set_groups(doc_id, groups)
        self.summary.permissions_changed += 1

    def remove(self, doc_ids: list[int]) -> None:
        """Take documents out in one transaction now (stale ones, before any parsing)."""
        if doc_ids:
            self.summary.chunks_removed += self.writer.remove(doc_ids)

    def flush(self) -> None:
        if not self._docs and not self._replaced:
            return
        texts = [c.embed_input for d in self._docs for c in d.chunks]
        vectors, embedded = self.writer.embed_reusing(self.embedder, texts)
        if len(vectors):
            self.dim = vectors.shape[1]
        added, removed = self.writer.write_batch(self._docs, vectors, self._replaced)
        self.summary.chunks_embedded += embedded
        self.summary.chunks_added += added
        self.summary.chunks_removed += removed
        # a parsed file counts as done once it is embedded and committed: rate and ETA stay honest
        self.progress.update(files=len(self._docs), chunks=added)
        self._docs, self._replaced, self._chunks = [], [], 0
        self._maybe_publish()

    def _maybe_publish(self) -> None:
        """Publish what is committed so far: at once on a first run (its first documents searchable in
        seconds), then every `publish_interval_s`, stretched to 50x the last publish's cost so publishing
        stays under 2% of a run whose index has grown large."""
        if self.publish_interval_s <= 0 or self.writer.switching:
            return
        dim = self.dim if self.dim is not None else (self.writer.published.dim if self.writer.published else None)
        if dim is None:
            return
        now = time.monotonic()
        due = self._last_publish + max(self.publish_interval_s, 50 * self._publish_cost)
        if self.writer.published is not None and now < due:
            return
        report = self.writer.publish(dim)
        self._last_publish = time.monotonic()
        self._publish_cost = self._last_publish - now
        if report.published:
            self.summary.versions_published += 1
            log.info("published version %d during the run (%d vectors, %.2f s)", report.version,
                     report.vectors_total, self._publish_cost)
