"""Planning an ingest run: what the folders hold against what the index holds, decided before any parse.

Pure over its inputs (the walk's items, the live documents, the admins' removals, a readers function):
no index, no parser, no model; so what a run will do is testable on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ingest.parsers import PARSER_VERSION
from ingest.walk import FoundFile, Skipped, display_path, is_under
from ingest.worker import Task
from rag.store import StoredDocument


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
    # indexed files with a part left unread (an OCR'd page over its time limit; a scan while OCR is off)
    parts_unread: list[FailedFile] = field(default_factory=list)
    pages_ocr: int = 0  # pages and image frames whose text OCR read
    files_skipped: int = 0  # not indexed, and no fault: an unsupported type, a page of only navigation
    # the files among those read whole that hold nothing to index, with the reason (a page of only navigation)
    nothing_to_index: list[FailedFile] = field(default_factory=list)
    files_excluded: int = 0  # removed by an admin: left out until the removal is undone
    files_reparsed: int = 0  # unchanged files read again because an earlier release's parsers read them
    chunks_added: int = 0
    chunks_embedded: int = 0  # chunks_added minus those whose text (and so vector) was already stored
    chunks_removed: int = 0
    chunks_reembedded: int = 0  # stored chunks embedded again in the configured backend's kind of vectors
    permissions_changed: int = 0  # unchanged files whose readers changed (applied without re-embedding)
    files_admins_only: int = 0  # files whose file-system permissions let no known account or other read them
    vectors_total: int = 0
    version: int = 0
    versions_published: int = 0  # during the run, before the final one (RAG_PUBLISH_INTERVAL_S)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True)
class IngestProgress:
    """Where a run is, for a display: scanning (files found so far), indexing (done of total), publishing."""

    phase: Literal["scanning", "re-embedding", "indexing", "publishing"]
    files_seen: int
    files_done: int = 0
    chunks: int = 0


ProgressCallback = Callable[[IngestProgress], None]
SCAN_REPORT_EVERY = 200  # folder entries walked between two "scanning" reports


@dataclass(frozen=True)
class PlannedFile:
    """A file to parse: new, or changed by size or modification time (its content hash decides)."""

    task: Task
    found: FoundFile
    stored: StoredDocument | None
    groups: tuple[str, ...]


@dataclass(frozen=True)
class GroupChange:
    """An unchanged file whose readers changed: applied without parsing or embedding."""

    doc_id: int
    groups: tuple[str, ...]


@dataclass
class IngestPlan:
    """What a run must do; `summary` holds the counts the scan already knows."""

    summary: IngestSummary
    parse: list[PlannedFile] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)  # live documents whose file is gone, too large or removed
    group_changes: list[GroupChange] = field(default_factory=list)


def plan_changes(walked: Iterable[FoundFile | Skipped], owns: Callable[[str], bool],
                 live: dict[bytes, StoredDocument], excluded: Sequence[Path | str],
                 groups_for: Callable[[str], tuple[str, ...]], max_file_mb: float,
                 on_progress: ProgressCallback | None = None) -> IngestPlan:
    """Compare the items a source's scan found (`walked`) with the index's `live` documents.

    Unchanged files (same size and modification time) are not parsed; only their readers are compared. A
    fetched item (bytes in hand, `FoundFile.spool`) is left to its content hash. A live document the
    source `owns` (under the run's folders; a web page in a crawl's scope) that the scan did not find, that
    is larger than `max_file_mb` or under an admin's removal (`excluded`) is stale. A live document the
    source does not own is another source's, left alone. `owns` is asked after the scan (a crawl knows only
    then whether it saw the whole site).
    """
    summary = IngestSummary()
    plan = IngestPlan(summary)
    max_bytes = int(max_file_mb * 2**20)
    seen_keys: set[bytes] = set()
    for walked_count, item in enumerate(walked):
        if on_progress is not None and walked_count % SCAN_REPORT_EVERY == 0:
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
        seen_keys.add(item.path_key)
        stored = live.get(item.path_key)
        if item.size > max_bytes:
            summary.files_failed.append(FailedFile(
                item.display, f"file of {item.size / 2**20:.0f} MiB is larger than the "
                              f"{max_file_mb:g} MiB limit (RAG_MAX_FILE_MB)"))
            if stored is not None:
                plan.stale.append(stored.doc_id)
            continue
        groups = groups_for(item.path)
        outdated = stored is not None and stored.parser_version < PARSER_VERSION
        if (stored is not None and not outdated and not item.spool and stored.size == item.size
                and stored.mtime_ns == item.mtime_ns):
            summary.files_unchanged += 1
            if stored.groups != groups:
                plan.group_changes.append(GroupChange(stored.doc_id, groups))
            continue
        if outdated:  # read again whatever its bytes: the text, sections and chunks of today's parsers
            summary.files_reparsed += 1
        known = stored.content_hash if stored is not None and not outdated else None
        plan.parse.append(PlannedFile(Task.of(item, known), item, stored, groups))
    for key, stored in live.items():
        if key not in seen_keys and owns(os.fsdecode(key)):
            plan.stale.append(stored.doc_id)
            summary.files_removed += 1
    return plan
