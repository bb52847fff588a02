"""The web page's own SQLite database: answer feedback and the history of indexing runs.

Separate from the index: the index is rebuilt or replaced freely; feedback is the organisation's record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    username TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,        -- JSON list of {path, page, chunk_id, cited}
    rating INTEGER NOT NULL,      -- 1 helpful, -1 not helpful
    comment TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    index_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    username TEXT NOT NULL,
    question TEXT NOT NULL,
    searched TEXT NOT NULL,       -- the standalone question retrieval used
    outcome TEXT NOT NULL,        -- answered | abstained | error: ...
    shown TEXT NOT NULL,          -- JSON list of {path, page, chunk_id} shown with the answer
    model TEXT NOT NULL DEFAULT '',
    index_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS audit_created ON audit(created);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    username TEXT NOT NULL,
    kind TEXT NOT NULL,           -- ingest | remove
    paths TEXT NOT NULL,          -- JSON list
    status TEXT NOT NULL,         -- running | done | failed
    summary TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT ''
);
"""

AUDIT_COLUMNS = ("created", "username", "question", "searched", "outcome", "shown", "model", "index_version")
FEEDBACK_COLUMNS = ("created", "username", "question", "answer", "sources", "rating", "comment", "model",
                    "index_version")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(value: object) -> object:
    """A cell that a spreadsheet shows as text, never runs as a formula (OWASP CSV injection): a text
    starting with = + - @, tab or a line break (or their full-width forms) gets a leading apostrophe.
    Numbers stay numbers."""
    if isinstance(value, str) and value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass(frozen=True)
class Run:
    """One indexing or removal run started from the page."""

    id: int
    started: float
    finished: float | None
    username: str
    kind: str
    paths: list[str]
    status: str
    summary: dict
    error: str


class AppDB:
    """Thread-safe access (one connection, one lock) shared by every session of the page."""

    def __init__(self, path: Path, audit_retention_days: float = 90.0,
                 clock: Callable[[], float] = time.time) -> None:
        from rag.index import private_dir

        private_dir(path.parent)  # everyone's questions: the service's alone
        self.path = path
        self.audit_retention_s = audit_retention_days * 86400
        self.clock = clock  # a test's stand-in moves time on without waiting
        self._purged = 0.0
        self._conn = sqlite3.connect(path, check_same_thread=False)
        os.chmod(path, 0o600)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add_feedback(self, username: str, question: str, answer: str, sources: list[dict], rating: int,
                     comment: str = "", model: str = "", index_version: int = 0) -> None:
        """Store one thumbs up (rating 1) or down (-1) with the question, answer and sources it was about."""
        if rating not in (1, -1):
            raise ValueError("rating must be 1 or -1")
        with self._lock, self._conn:
            self._conn.execute(
                f"INSERT INTO feedback({', '.join(FEEDBACK_COLUMNS)}) VALUES ({', '.join('?' * len(FEEDBACK_COLUMNS))})",
                (self.clock(), username, question, answer, json.dumps(sources), rating, comment.strip(), model,
                 index_version))

    def feedback_csv(self) -> str:
        """All feedback as CSV (a header row, then oldest first), with ISO timestamps."""
        return self._csv("feedback", FEEDBACK_COLUMNS)

    def audit(self, username: str, question: str, searched: str, outcome: str, shown: list[dict],
              model: str = "", index_version: int = 0) -> None:
        """Record who asked what and which documents they were shown; entries past the retention go."""
        if self.audit_retention_s <= 0:
            return
        now = self.clock()
        with self._lock, self._conn:
            self._conn.execute(
                f"INSERT INTO audit({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})",
                (now, username, question, searched, outcome, json.dumps(shown), model, index_version))
            if now - self._purged > 3600:  # at most hourly: the delete scans the created index
                self._conn.execute("DELETE FROM audit WHERE created < ?", (now - self.audit_retention_s,))
                self._purged = now

    def audit_csv(self) -> str:
        """The audit log as CSV, oldest first."""
        return self._csv("audit", AUDIT_COLUMNS)

    def _csv(self, table: str, columns: tuple[str, ...]) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
        for row in rows:
            writer.writerow((time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row[0])),
                             *(spreadsheet_safe(v) for v in row[1:])))
        return out.getvalue()

    def feedback_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM feedback").fetchone()[0])

    def start_run(self, username: str, kind: str, paths: list[str]) -> int:
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO runs(started, username, kind, paths, status) VALUES (?, ?, ?, ?, 'running')",
                (time.time(), username, kind, json.dumps(paths)))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, summary: dict | None = None, error: str = "") -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE runs SET finished = ?, status = ?, summary = ?, error = ? WHERE id = ?",
                (time.time(), "failed" if error else "done", json.dumps(summary or {}), error, run_id))

    def last_runs(self, limit: int = 20) -> list[Run]:
        """The newest runs first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, started, finished, username, kind, paths, status, summary, error FROM runs "
                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [Run(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], json.loads(r[7]), r[8]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
