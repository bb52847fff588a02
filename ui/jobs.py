"""Indexing jobs started from the web page: checked against the allowed roots, run in the background,
one at a time per process (and one writer per index across processes, by the index's own lock)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.job import IngestProgress, IngestSummary, documents_under, remove_paths, restore_paths, run_ingest
from rag.embedding import Embedder
from rag.index import IndexView, RagIndexError, recorded_model_id
from rag.settings import ConfigError, Settings
from ui.appdb import AppDB

log = logging.getLogger(__name__)


class PathNotAllowedError(ValueError):
    """A folder outside the roots the page may index."""


class JobBusyError(RuntimeError):
    """Another indexing job is running."""


def _require_roots(roots: Sequence[Path], what: str) -> None:
    if not roots:
        raise PathNotAllowedError(f"no folders may be {what} from the page: set RAG_UI_ALLOWED_ROOTS "
                                  "(e.g. '[\"/srv/documents\"]') and restart")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def allowed_path(text: str, roots: Sequence[Path]) -> Path:
    """The absolute, resolved path for `text` if it lies under one of `roots`; else PathNotAllowedError.

    `..` is refused outright, even where it would resolve inside a root: an admin who types it is
    most likely probing, and a clear refusal beats a surprising success.
    """
    text = text.strip()
    _require_roots(roots, "indexed")
    if not text:
        raise PathNotAllowedError("enter a folder path")
    if ".." in Path(text).parts:
        raise PathNotAllowedError(f"{text}: paths with '..' are refused")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = roots[0] / path  # relative to the first allowed root
    shown = text if len(text) <= 200 else text[:200] + "…"
    try:
        resolved = path.resolve()  # symbolic links resolved: a link may not lead out of the roots
        if not any(_inside(resolved, root) for root in roots):
            raise PathNotAllowedError(f"{shown} is outside the folders the page may index "
                                      f"({', '.join(map(str, roots))}): to allow it, add it to the setting "
                                      f"RAG_UI_ALLOWED_ROOTS and restart the page")
        if not resolved.exists():
            raise PathNotAllowedError(f"{resolved} does not exist")
    except OSError as exc:  # a name too long for the file system, a folder that may not be entered
        raise PathNotAllowedError(f"{shown}: {exc.strerror or exc}") from None
    return resolved


def removable_path(text: str, roots: Sequence[Path]) -> str:
    """The absolute path of a document or folder to remove, if it lies under the allowed roots (the
    file need not exist any more: removing what was deleted from disk is normal)."""
    text = text.strip()
    if not text or ".." in Path(text).parts or not os.path.isabs(text):
        raise PathNotAllowedError("enter the absolute path of an indexed document or folder (no '..')")
    _require_roots(roots, "changed")
    path = os.path.normpath(text)
    resolved = Path(os.path.realpath(path))  # a link may not lead out of the roots
    if not any(_inside(Path(path), root) and _inside(resolved, root) for root in roots):
        raise PathNotAllowedError(f"{text} is outside the folders the page may change "
                                  f"({', '.join(map(str, roots))}): to allow it, add it to the setting "
                                  f"RAG_UI_ALLOWED_ROOTS and restart the page")
    return path


@dataclass
class Job:
    """The state of one run, read by the page while the job's thread writes it."""

    run_id: int
    username: str
    kind: str
    paths: list[str]
    started: float = field(default_factory=time.time)
    phase: str = "starting"  # then scanning, indexing, publishing (ingest); removing (removal)
    files_done: int = 0
    files_total: int = 0  # files found by the scan so far; final once the phase is indexing
    chunks: int = 0
    finished: float | None = None
    summary: dict | None = None
    error: str = ""

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def fraction(self) -> float:
        return self.files_done / self.files_total if self.files_total else 0.0


class JobManager:
    """Runs one indexing or removal job at a time in a background thread; others are refused clearly."""

    def __init__(self, settings: Settings, embedder: Embedder, db: AppDB) -> None:
        self.settings = settings
        self.embedder = embedder
        self.db = db
        self.current: Job | None = None
        self._lock = threading.Lock()

    def start_ingest(self, folder: str, username: str) -> Job:
        """Index `folder` (checked against the allowed roots) in the background."""
        path = allowed_path(folder, self.settings.page.allowed_roots)
        return self._start(username, "ingest", [str(path)])

    def start_removal(self, paths: list[str], username: str) -> Job:
        """Take documents, or every document under folders, out of the index in the background (each path
        checked against the allowed roots); the removal sticks (later ingest runs leave them out) until
        `restore` undoes it."""
        return self._start(username, "remove", [removable_path(p, self.settings.page.allowed_roots) for p in paths])

    def indexed_under(self, paths: list[str], view: IndexView) -> int:
        """How many documents of `view` lie at or under `paths` (checked against the allowed roots): a
        removal that would match nothing is a typo to report, not a job to run."""
        checked = [removable_path(p, self.settings.page.allowed_roots) for p in paths]
        return len(documents_under(view.live_documents(), checked))

    def restore(self, path: str) -> int:
        """Undo a removal (checked against the allowed roots like any removal); the next indexing run of
        its folder adds it back. How many removals were undone."""
        return restore_paths(self.settings.index, [removable_path(path, self.settings.page.allowed_roots)],
                             self._index_model())

    def _index_model(self) -> str:
        """The model id to open the index with for a job that embeds nothing (a removal): what it records."""
        return recorded_model_id(self.settings.index) or self.embedder.model_id

    def _ingest_embedder(self) -> Embedder | None:
        """The page's loaded embedder, unless "auto" should follow an index another run switched to other
        vectors (None: `run_ingest` makes the one that does); an explicit backend is meant to switch it."""
        recorded = recorded_model_id(self.settings.index)
        if recorded in (None, self.embedder.model_id) or self.settings.embedding.backend != "auto":
            return self.embedder
        return None

    def _start(self, username: str, kind: str, paths: list[str]) -> Job:
        with self._lock:
            if self.current is not None and self.current.running:
                c = self.current
                raise JobBusyError(f"an indexing job is already running ({c.kind} of {', '.join(c.paths)}, "
                                   f"started by {c.username} at {time.strftime('%H:%M:%S', time.localtime(c.started))}): "
                                   f"wait for it to finish")
            job = Job(self.db.start_run(username, kind, paths), username, kind, paths)
            self.current = job
        threading.Thread(target=self._run, args=(job,), name=f"rag-{kind}-{job.run_id}", daemon=True).start()
        return job

    def _run(self, job: Job) -> None:
        def progress(report: IngestProgress) -> None:
            job.phase, job.files_total, job.files_done, job.chunks = (report.phase, report.files_seen,
                                                                      report.files_done, report.chunks)

        try:
            if job.kind == "ingest":
                summary: IngestSummary = run_ingest(self.settings, [Path(p) for p in job.paths],
                                                    embedder=self._ingest_embedder(), progress=False,
                                                    on_progress=progress,
                                                    within=list(self.settings.page.allowed_roots))
                job.summary = summary.to_dict()
            else:
                job.phase = "removing"
                removed = remove_paths(self.settings.index, job.paths, self._index_model(), job.username)
                job.summary = {"documents_removed": removed.documents_removed,
                               "chunks_removed": removed.chunks_removed, "version": removed.version}
        except (RagIndexError, ConfigError, OSError, ValueError) as exc:
            job.error = str(exc)
        except Exception as exc:  # recorded, shown to the admin and logged with its trace: never lost
            log.exception("indexing job %d failed", job.run_id)
            job.error = f"unexpected error: {exc!r}"
        finally:
            self.db.finish_run(job.run_id, job.summary, job.error)
            job.finished = time.time()
