"""The service's own SQLite database: answer feedback, the audit log, indexing runs, API tokens and
conversations; shared by the web page and the HTTP API.

Separate from the index: the index is rebuilt or replaced freely; feedback is the organisation's record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.qa import Answer, Source

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
    index_version INTEGER NOT NULL DEFAULT 0,
    seconds REAL                  -- how long the answer took (NULL: not an answer, or not measured)
);
CREATE INDEX IF NOT EXISTS audit_created ON audit(created);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback(created);
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
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,          -- read | admin | ingest
    groups TEXT NOT NULL,         -- JSON list: the user's groups when no users file says them
    sources TEXT NOT NULL DEFAULT '[]',  -- JSON list: the push sources an ingest token may write ([]: any)
    secret_hash BLOB NOT NULL UNIQUE,  -- sha256 of the token: the token itself is shown once, never stored
    created REAL NOT NULL,
    expires REAL,                 -- NULL: never
    revoked REAL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,          -- random, so one user cannot guess another's
    username TEXT NOT NULL,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations(username, updated);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    created REAL NOT NULL,
    question TEXT NOT NULL,
    searched TEXT NOT NULL,
    answer TEXT NOT NULL,         -- JSON: the answer as `rag ask --json` gives it ({} for an error)
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (conversation_id, position)
);
"""

SCHEMA_VERSION = 1  # 1: conversations keep sources by reference (ui/conversations.py)

TOKEN_PREFIX = "rag_"
SCOPES = ("read", "admin", "ingest")

AUDIT_COLUMNS = ("created", "username", "question", "searched", "outcome", "shown", "model", "index_version",
                 "seconds")
FEEDBACK_COLUMNS = ("created", "username", "question", "answer", "sources", "rating", "comment", "model",
                    "index_version")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@dataclass(frozen=True)
class ShownSource:
    """A source shown with an answer, as the audit log keeps it."""

    path: str
    cited: bool  # the answer cited it (entries from before this was kept: False)


@dataclass(frozen=True)
class AuditEntry:
    created: float
    username: str
    question: str
    outcome: str  # answered | abstained | error: ... | viewed source | downloaded
    shown: tuple[ShownSource, ...]
    seconds: float | None  # how long the answer took (None: not an answer, or not measured)


@dataclass(frozen=True)
class FeedbackEntry:
    created: float
    question: str
    rating: int  # 1 helpful, -1 not helpful
    comment: str


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV with a header row (none when `header` is empty); cells a spreadsheet would run as formulas are
    defused (`spreadsheet_safe`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(header)
    writer.writerows([spreadsheet_safe(v) for v in row] for row in rows)
    return out.getvalue()


def spreadsheet_safe(value: object) -> object:
    """A cell that a spreadsheet shows as text, never runs as a formula (OWASP CSV injection): a text
    starting with = + - @, tab or a line break (or their full-width forms) gets a leading apostrophe.
    Numbers stay numbers."""
    if isinstance(value, str) and value.lstrip(" ").startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass(frozen=True)
class ApiToken:
    """An API token as stored: who it acts as and until when (never the token itself)."""

    id: int
    name: str
    username: str
    scope: str
    groups: tuple[str, ...]
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None
    sources: tuple[str, ...] = ()  # an ingest token's push sources (empty: any)

    def state(self, now: float) -> str:
        """active, expired or revoked."""
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expires is not None and now >= self.expires else "active"


@dataclass(frozen=True)
class Conversation:
    id: str
    username: str
    title: str
    created: float
    updated: float
    turns: int = 0


@dataclass(frozen=True)
class StoredTurn:
    position: int
    created: float
    question: str
    searched: str
    answer: dict
    error: str


def hash_secret(token: str) -> bytes:
    """The stored form of a token: sha256 (a token is 256 random bits, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).digest()


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
        from rag.files import private_dir

        private_dir(path.parent)  # everyone's questions: the service's alone
        self.path = path
        self.audit_retention_s = audit_retention_days * 86400
        self.clock = clock  # a test's stand-in moves time on without waiting
        self._purged = 0.0
        self._conn = sqlite3.connect(path, check_same_thread=False)
        os.chmod(path, 0o600)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # deleted rows (a conversation a user deletes) are overwritten, not left in free pages
        self._conn.execute("PRAGMA secure_delete=ON")
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(audit)")}
        if columns and "seconds" not in columns:  # a database from before answer times were kept
            self._conn.execute("ALTER TABLE audit ADD COLUMN seconds REAL")
        self._conn.executescript(SCHEMA)
        tokens = {r[1] for r in self._conn.execute("PRAGMA table_info(api_tokens)")}
        if "sources" not in tokens:  # a database from before ingest tokens
            self._conn.execute("ALTER TABLE api_tokens ADD COLUMN sources TEXT NOT NULL DEFAULT '[]'")
        self._migrate()
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Bring a database an earlier release wrote up to SCHEMA_VERSION (PRAGMA user_version), each step in
        one transaction: a run stopped half-way leaves the database as it was."""
        from ui.conversations import stored_answer

        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version < 1:  # conversations keep their sources by reference, without the passages' text
            converted = 0
            with self._conn:
                for rowid, answer in self._conn.execute("SELECT rowid, answer FROM turns").fetchall():
                    data = json.loads(answer)
                    if data:
                        self._conn.execute("UPDATE turns SET answer = ? WHERE rowid = ?",
                                           (json.dumps(stored_answer(data)), rowid))
                        converted += 1
                self._conn.execute("PRAGMA user_version = 1")
            if converted:  # secure_delete overwrote the old rows; the write-ahead log still holds them
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
              model: str = "", index_version: int = 0, seconds: float | None = None) -> None:
        """Record who asked what and which documents they were shown; entries past the retention go."""
        if self.audit_retention_s <= 0:
            return
        now = self.clock()
        with self._lock, self._conn:
            self._conn.execute(
                f"INSERT INTO audit({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})",
                (now, username, question, searched, outcome, json.dumps(shown), model, index_version, seconds))
            if now - self._purged > 3600:  # at most hourly: the delete scans the created index
                self._conn.execute("DELETE FROM audit WHERE created < ?", (now - self.audit_retention_s,))
                self._purged = now

    def audit_answer(self, username: str, question: str, searched: str, answer: Answer | None,
                     error: str = "", seconds: float | None = None, sources: "list[Source] | None" = None) -> None:
        """Record a question with what came of it (the page's and the API's one way to do so): answered,
        abstained or the error, the sources shown (and which the answer cited) and how long it took.
        `sources`: what the reader was shown when no `answer` came (a stream cut before its end)."""
        outcome = f"error: {error}" if error else "abstained" if answer and answer.abstained else "answered"
        shown = [{"path": s.path, "page": s.page, "chunk_id": s.chunk_id, "cited": s.cited}
                 for s in (answer.sources if answer else sources or [])]
        self.audit(username, question, searched, outcome, shown, answer.model if answer else "",
                   answer.index_version if answer else 0, seconds)

    def audit_source(self, username: str, outcome: str, path: str, doc_id: int, page: int | None = None) -> None:
        """Record that a user viewed ("viewed source"), read ("read document") or downloaded ("downloaded") a
        document."""
        self.audit(username, "", "", outcome, [{"path": path, "page": page, "doc_id": doc_id}])

    def audit_shown(self, username: str, outcome: str, request: str, shown: list[dict]) -> None:
        """Record what a request that is no question showed a user: the passages of a search ("searched"),
        the documents of a list ("listed documents"), a stored conversation ("read conversation")."""
        self.audit(username, request, "", outcome, shown)

    def audit_csv(self) -> str:
        """The audit log as CSV, oldest first."""
        return self._csv("audit", AUDIT_COLUMNS)

    def _csv(self, table: str, columns: tuple[str, ...]) -> str:
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id").fetchall()
        return csv_text(columns, [(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row[0])), *row[1:])
                                  for row in rows])

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

    def run(self, run_id: int) -> Run | None:
        with self._lock:
            r = self._conn.execute(
                "SELECT id, started, finished, username, kind, paths, status, summary, error FROM runs WHERE id = ?",
                (run_id,)).fetchone()
        return None if r is None else Run(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], json.loads(r[7]), r[8])

    def rows(self, table: str, limit: int = 1000, since: float = 0.0) -> list[dict[str, object]]:
        """The audit log or the feedback as dicts, newest first (`table`: audit or feedback)."""
        columns = {"audit": AUDIT_COLUMNS, "feedback": FEEDBACK_COLUMNS}[table]
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE created >= ? "
                                      "ORDER BY id DESC LIMIT ?", (since, limit)).fetchall()
        out = []
        for row in rows:
            item = dict(zip(columns, row))
            for key in ("shown", "sources"):
                if key in item:
                    item[key] = json.loads(str(item[key]))
            out.append(item)
        return out

    def audit_entries(self, since: float, until: float) -> list[AuditEntry]:
        """The audit log's entries created in [since, until), oldest first, typed (for Insights)."""
        with self._lock:
            rows = self._conn.execute("SELECT created, username, question, outcome, shown, seconds FROM audit "
                                      "WHERE created >= ? AND created < ? ORDER BY id", (since, until)).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], tuple(ShownSource(str(s.get("path", "")), bool(s.get("cited")))
                                                        for s in json.loads(r[4])), r[5]) for r in rows]

    def feedback_entries(self, since: float, until: float) -> list[FeedbackEntry]:
        """Feedback created in [since, until), oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT created, question, rating, comment FROM feedback WHERE created >= ? "
                                      "AND created < ? ORDER BY id", (since, until)).fetchall()
        return [FeedbackEntry(r[0], r[1], int(r[2]), r[3]) for r in rows]

    # -- API tokens --------------------------------------------------------------------------------------
    def create_token(self, name: str, username: str, scope: str, groups: tuple[str, ...] = (),
                     expires_days: float | None = None, sources: tuple[str, ...] = ()) -> str:
        """A new random token for `username`; returned once, only its hash is kept. `sources`: the push sources
        an ingest token may write (empty: any)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if sources and scope != "ingest":
            raise ValueError("only an ingest token is bound to sources (--scope ingest)")
        if not name.strip():
            raise ValueError("a token needs a name (what it is for, e.g. 'mattermost-bot')")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + expires_days * 86400 if expires_days else None
        try:
            with self._lock, self._conn:
                self._conn.execute(
                    "INSERT INTO api_tokens(name, username, scope, groups, secret_hash, created, expires, sources) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name.strip(), username, scope, json.dumps(list(groups)), hash_secret(token), now, expires,
                     json.dumps(list(sources))))
        except sqlite3.IntegrityError:
            raise ValueError(f"a token named {name!r} exists: revoke it or choose another name") from None
        return token

    def tokens(self) -> list[ApiToken]:
        with self._lock:
            rows = self._conn.execute("SELECT id, name, username, scope, groups, created, expires, revoked, last_used, "
                                      "sources FROM api_tokens ORDER BY id").fetchall()
        return [ApiToken(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7], r[8],
                         tuple(json.loads(r[9]))) for r in rows]

    def revoke_token(self, name: str) -> bool:
        """Revoke the token named `name` (at once: the next request with it is refused)."""
        with self._lock, self._conn:
            cur = self._conn.execute("UPDATE api_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                                     (self.clock(), name))
        return cur.rowcount > 0

    def token_for(self, token: str) -> ApiToken | None:
        """The stored token matching `token`, if any (expired and revoked ones too: the caller says why)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with self._lock:
            r = self._conn.execute("SELECT id, name, username, scope, groups, created, expires, revoked, last_used, "
                                   "sources FROM api_tokens WHERE secret_hash = ?", (hash_secret(token),)).fetchone()
            if r is not None and (r[8] is None or self.clock() - r[8] > 60):  # at most a write a minute
                with self._conn:
                    self._conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (self.clock(), r[0]))
        return None if r is None else ApiToken(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7],
                                               r[8], tuple(json.loads(r[9])))

    # -- conversations -----------------------------------------------------------------------------------
    def start_conversation(self, username: str, title: str) -> str:
        conversation_id = secrets.token_urlsafe(12)
        now = self.clock()
        with self._lock, self._conn:
            self._conn.execute("INSERT INTO conversations(id, username, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                               (conversation_id, username, title.strip()[:120] or "Conversation", now, now))
        return conversation_id

    def conversations(self, username: str, limit: int = 100) -> list[Conversation]:
        """`username`'s conversations, the most recently used first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT c.id, c.username, c.title, c.created, c.updated, "
                "(SELECT count(*) FROM turns t WHERE t.conversation_id = c.id) FROM conversations c "
                "WHERE c.username = ? ORDER BY c.updated DESC LIMIT ?", (username, limit)).fetchall()
        return [Conversation(*r) for r in rows]

    def conversation(self, username: str, conversation_id: str) -> Conversation | None:
        """The conversation if it is `username`'s (another user's is as absent as a missing one)."""
        with self._lock:
            r = self._conn.execute(
                "SELECT c.id, c.username, c.title, c.created, c.updated, "
                "(SELECT count(*) FROM turns t WHERE t.conversation_id = c.id) FROM conversations c "
                "WHERE c.id = ? AND c.username = ?", (conversation_id, username)).fetchone()
        return None if r is None else Conversation(*r)

    def turns(self, username: str, conversation_id: str) -> list[StoredTurn]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT t.position, t.created, t.question, t.searched, t.answer, t.error FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id WHERE c.id = ? AND c.username = ? "
                "ORDER BY t.position", (conversation_id, username)).fetchall()
        return [StoredTurn(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    def add_turn(self, username: str, conversation_id: str, question: str, searched: str, answer: dict,
                 error: str = "") -> None:
        """Append a turn; `answer` (`Answer.to_dict`, {} for an error) is kept without its passages' text
        (`ui.conversations.stored_answer`): `ui.conversations.shown_answer` resolves it when shown."""
        from ui.conversations import stored_answer

        now = self.clock()
        with self._lock, self._conn:
            owned = self._conn.execute("SELECT 1 FROM conversations WHERE id = ? AND username = ?",
                                       (conversation_id, username)).fetchone()
            if owned is None:
                raise KeyError(conversation_id)
            self._conn.execute(
                "INSERT INTO turns(conversation_id, position, created, question, searched, answer, error) VALUES "
                "(?, (SELECT coalesce(max(position), -1) + 1 FROM turns WHERE conversation_id = ?), ?, ?, ?, ?, ?)",
                (conversation_id, conversation_id, now, question, searched,
                 json.dumps(stored_answer(answer) if answer else {}), error))
            self._conn.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))

    def rename_conversation(self, username: str, conversation_id: str, title: str) -> bool:
        with self._lock, self._conn:
            cur = self._conn.execute("UPDATE conversations SET title = ? WHERE id = ? AND username = ?",
                                     (title.strip()[:120] or "Conversation", conversation_id, username))
        return cur.rowcount > 0

    def delete_conversation(self, username: str, conversation_id: str) -> bool:
        """Delete the conversation and its text (the audit log keeps what its retention says)."""
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM turns WHERE conversation_id IN (SELECT id FROM conversations WHERE "
                               "id = ? AND username = ?)", (conversation_id, username))
            cur = self._conn.execute("DELETE FROM conversations WHERE id = ? AND username = ?",
                                     (conversation_id, username))
        with self._lock:  # the write-ahead log still holds the old pages until a checkpoint
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
