"""Planning an ingest run, on its own: no index, no parser, no model."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from ingest.parsers import PARSER_VERSION
from ingest.plan import GroupChange, plan_changes
from ingest.walk import FoundFile, Skipped, is_under
from rag.store import StoredDocument

ROOT = Path("/share")
OWNS = partial(is_under, roots=[ROOT])  # the run's folder: what it does not find there is gone


def found(name: str, size: int = 10, mtime_ns: int = 1) -> FoundFile:
    return FoundFile(str(ROOT / name), size, mtime_ns, str(ROOT))


def stored(doc_id: int, size: int = 10, mtime_ns: int = 1, groups: tuple[str, ...] = ()) -> StoredDocument:
    return StoredDocument(doc_id, size, mtime_ns, f"hash{doc_id}", groups, PARSER_VERSION)


def key(name: str) -> bytes:
    return os.fsencode(str(ROOT / name))


def test_a_plan_parses_what_changed_and_removes_what_is_gone() -> None:
    live = {key("same.txt"): stored(1), key("edited.txt"): stored(2), key("gone.txt"): stored(3),
            key("big.pdf"): stored(4), key("removed/a.txt"): stored(5), key("readers.txt"): stored(6),
            os.fsencode("/elsewhere/b.txt"): stored(7)}
    walked = [found("same.txt"), found("edited.txt", mtime_ns=2), found("new.txt"),
              found("big.pdf", size=3 * 2**20), found("removed/a.txt"), found("readers.txt"),
              Skipped(str(ROOT / "notes.xyz"), "unsupported type", False),
              Skipped(str(ROOT / "link"), "a link out of the folders", True)]
    groups = {str(ROOT / "readers.txt"): ("hr",)}
    plan = plan_changes(walked, OWNS, live, [ROOT / "removed"], lambda p: groups.get(p, ()), max_file_mb=2)

    assert [(p.found.path, p.task.known_hash) for p in plan.parse] == [
        (str(ROOT / "edited.txt"), "hash2"), (str(ROOT / "new.txt"), None)]
    # gone, too large and removed by an admin are stale; another folder's document is left alone
    assert sorted(plan.stale) == [3, 4, 5]
    assert plan.group_changes == [GroupChange(6, ("hr",))]
    s = plan.summary
    # the admin's removal counts as excluded and, its stored copy going, as removed
    assert (s.files_seen, s.files_unchanged, s.files_removed, s.files_skipped, s.files_excluded) == (5, 2, 2, 1, 1)
    assert [f.path for f in s.files_failed] == [str(ROOT / "big.pdf"), str(ROOT / "link")]
    assert "larger than the 2 MiB limit (RAG_MAX_FILE_MB)" in s.files_failed[0].error


def test_scanning_reports_progress_while_it_walks() -> None:
    seen = []
    walked = [found(f"f{i}.txt") for i in range(450)]
    plan_changes(walked, OWNS, {}, [], lambda p: (), 1, seen.append)
    assert [(r.phase, r.files_seen) for r in seen] == [("scanning", 0), ("scanning", 200), ("scanning", 400)]


def test_documents_an_earlier_release_parsed_are_read_again_whatever_their_bytes() -> None:
    old = StoredDocument(1, 10, 1, "hash1", (), PARSER_VERSION - 1)
    plan = plan_changes([found("same.txt")], OWNS, {key("same.txt"): old}, [], lambda p: (), max_file_mb=2)
    # parsed with no known hash, so the worker does not skip it as unchanged content
    assert [(p.found.path, p.task.known_hash) for p in plan.parse] == [(str(ROOT / "same.txt"), None)]
    assert plan.summary.files_reparsed == 1 and plan.summary.files_unchanged == 0
