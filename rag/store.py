"""Chunk text, metadata and embeddings in SQLite (WAL), versioned so readers see one published state.

Every row carries the index version that added it and, once superseded, the version that removed
it. A reader pinned to published version V sees rows with ``added_version <= V`` and not removed
at or before V, so an ingest run writing version V+1 never disturbs it. Chunk ids are the FAISS ids.
Embeddings are stored too, so the FAISS file can always be rebuilt without re-embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.types import ChunkInput, DocumentInput, Hit, OcrPageInput

if TYPE_CHECKING:
    from rag.analysis import Analyzer

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path_key BLOB NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    added_version INTEGER NOT NULL,
    removed_version INTEGER,
    parser_version INTEGER NOT NULL DEFAULT 0,
    -- what a source needs to tell next time whether the item changed, beyond size and modification time
    -- (a web page's ETag, Last-Modified and links, as JSON; '' for files), opaque to the store
    source_state TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS documents_path ON documents(path_key);
-- Who may read a document (a row per group). Not versioned: a permission change applies at once.
CREATE TABLE IF NOT EXISTS document_groups (
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    grp TEXT NOT NULL,
    PRIMARY KEY (grp, doc_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS document_groups_doc ON document_groups(doc_id);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    page INTEGER,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    text_hash BLOB NOT NULL,
    embedding BLOB NOT NULL,
    added_version INTEGER NOT NULL,
    removed_version INTEGER,
    section TEXT NOT NULL DEFAULT '',
    lang TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS chunks_text_hash ON chunks(text_hash);
CREATE INDEX IF NOT EXISTS chunks_added ON chunks(added_version);
CREATE INDEX IF NOT EXISTS chunks_removed ON chunks(removed_version);
-- Paths an admin removed from the index: ingest runs leave them out until the removal is undone.
CREATE TABLE IF NOT EXISTS exclusions (
    path_key BLOB PRIMARY KEY,
    path TEXT NOT NULL,
    excluded_by TEXT NOT NULL,
    created REAL NOT NULL
);
-- Pages whose text OCR read (scans, images): the engine, its confidence and the word boxes a viewer
-- highlights. Rows belong to a document version (doc_id) and go with it.
CREATE TABLE IF NOT EXISTS ocr_pages (
    doc_id INTEGER NOT NULL REFERENCES documents(id),
    page INTEGER NOT NULL,
    engine TEXT NOT NULL,
    confidence REAL NOT NULL,
    seconds REAL NOT NULL,
    words TEXT NOT NULL,
    PRIMARY KEY (doc_id, page)
) WITHOUT ROWID;
"""
# The keyword index: each chunk's text, its document's title and its heading path as rag.analysis makes them
# for the chunk's language (stop words out, Snowball stems, German and Dutch compounds split), a row per chunk
# (rowid = the chunk's id). Written with the chunk (insert_documents), removed with it by a trigger.
KEYWORD_INDEX = """CREATE VIRTUAL TABLE IF NOT EXISTS chunk_terms USING fts5(
    text, title, section, tokenize='unicode61 remove_diacritics 2'
)"""
KEYWORD_TRIGGER = """CREATE TRIGGER IF NOT EXISTS chunk_terms_ad AFTER DELETE ON chunks BEGIN
    DELETE FROM chunk_terms WHERE rowid = old.id;
END"""
# The keyword index of releases before analysis by language (Porter's English stemmer inside FTS5, over the
# chunks' own text): still read, until the writer's next run migrates the index.
LEGACY_KEYWORD_TABLE = "chunks_fts"
# BM25 weights of the keyword index's columns: text, title, heading path
BM25_WEIGHTS = "1.0, 0.5, 0.5"
# The languages the keyword index holds (JSON list, rag.analysis codes), for analysing questions.
LANGUAGES_KEY = "keyword_languages"


def migrate(conn: sqlite3.Connection) -> None:
    """Create the keyword index and its trigger, and bring an index written by an earlier release up to this
    schema in one transaction: chunks gain their heading path and language, documents the parser version that
    read them, and the keyword index is rebuilt from the chunks, analysed by language (once; no chunk is
    re-embedded; about a minute per 100,000 chunks on two cores)."""
    chunk_columns = {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}
    document_columns = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    if ({"section", "lang"} <= chunk_columns and {"parser_version", "source_state"} <= document_columns
            and {"chunk_terms", "chunk_terms_ad"} <= tables and LEGACY_KEYWORD_TABLE not in tables):
        return
    started = time.monotonic()
    with conn:
        conn.execute("BEGIN IMMEDIATE")  # the columns, the keyword index and its trigger change together
        if "section" not in chunk_columns:
            conn.execute("ALTER TABLE chunks ADD COLUMN section TEXT NOT NULL DEFAULT ''")
        if "lang" not in chunk_columns:
            conn.execute("ALTER TABLE chunks ADD COLUMN lang TEXT NOT NULL DEFAULT ''")
        if "parser_version" not in document_columns:
            conn.execute("ALTER TABLE documents ADD COLUMN parser_version INTEGER NOT NULL DEFAULT 0")
        if "source_state" not in document_columns:
            conn.execute("ALTER TABLE documents ADD COLUMN source_state TEXT NOT NULL DEFAULT ''")
        for trigger in ("chunks_ai", "chunks_ad"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute(f"DROP TABLE IF EXISTS {LEGACY_KEYWORD_TABLE}")
        fill = "chunk_terms" not in tables
        conn.execute(KEYWORD_INDEX)
        conn.execute(KEYWORD_TRIGGER)
        if fill:
            chunks = _fill_keyword_index(conn)
            if chunks:
                log.info("keyword index rebuilt by language: %d chunks in %.1f s", chunks, time.monotonic() - started)


def _fill_keyword_index(conn: sqlite3.Connection) -> int:
    """Analyse every stored chunk (each document's in one go: its language is the fallback of its short
    chunks) into the keyword index; record the languages. Returns the chunks analysed."""
    from rag.analysis import analyzer

    analysis, languages, done = analyzer(), set(), 0
    doc_ids = [r[0] for r in conn.execute("SELECT DISTINCT doc_id FROM chunks ORDER BY doc_id")]
    for doc_id in doc_ids:
        rows = conn.execute("SELECT id, title, text, section FROM chunks WHERE doc_id = ? ORDER BY position",
                            (doc_id,)).fetchall()
        seen: dict[tuple[str, str], str] = {}
        langs = _chunk_languages(analysis, [r[2] for r in rows])
        conn.executemany("UPDATE chunks SET lang = ? WHERE id = ?", [(lang, r[0]) for r, lang in zip(rows, langs)])
        conn.executemany("INSERT INTO chunk_terms(rowid, text, title, section) VALUES (?, ?, ?, ?)",
                         [(r[0], *_terms(analysis, r[2], r[1], r[3], lang, seen)) for r, lang in zip(rows, langs)])
        languages.update(langs)
        done += len(rows)
    _record_languages(conn, languages)
    return done


def _chunk_languages(analysis: "Analyzer", texts: list[str]) -> list[str]:
    """Each chunk's language; a chunk too short to tell takes its document's."""
    return analysis.languages(texts, default=analysis.document_language(texts))


def _terms(analysis: "Analyzer", text: str, title: str, section: str, language: str,
           seen: dict[tuple[str, str], str]) -> tuple[str, str, str]:
    """A chunk's text, title and heading path as the keyword index stores them; the title and heading path,
    shared by a document's chunks, are analysed once per document (`seen`)."""
    def shared(value: str) -> str:
        key = (value, language)
        if key not in seen:
            seen[key] = analysis.passage_terms(value, language)
        return seen[key]

    return analysis.passage_terms(text, language), shared(title), shared(section)


def _record_languages(conn: sqlite3.Connection, languages: "set[str]") -> None:
    """Add `languages` to the ones the index records (never removed: a language of removed chunks costs a
    question one more stem to look up, nothing else)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (LANGUAGES_KEY,)).fetchone()
    known = set(json.loads(row[0])) if row else set()
    if languages - known:
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                     "excluded.value", (LANGUAGES_KEY, json.dumps(sorted(known | languages))))


DB_NAME = "chunks.sqlite"


@dataclass(frozen=True)
class StoredDocument:
    """What the ingest job needs to know about a live document to decide whether it changed."""

    doc_id: int
    size: int
    mtime_ns: int
    content_hash: str
    groups: tuple[str, ...] = ()
    parser_version: int = 0  # the parsers' version that read it (an older one's documents are read again)
    source_state: str = ""  # what its source keeps to tell a change next time (ingest.sources), '' for files


@dataclass(frozen=True)
class SourceRecord:
    """A source the index was built from, as `rag sources` lists it: registered at its first run, updated by
    each (the index's meta row `sources`)."""

    kind: str  # "folder" or "web"
    name: str  # the folders, or the site's start address
    last_sync: float  # seconds since the epoch: when its last run ended
    items: int  # documents (files, pages) its last run found
    failed: int  # of them, or of its known documents, those that could not be indexed
    errors: tuple[str, ...] = ()  # the first few failures: "where: why"
    first_sync: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "SourceRecord":
        return cls(**{**data, "errors": tuple(data.get("errors", ()))})


SOURCES_KEY = "sources"


@dataclass(frozen=True)
class Exclusion:
    """A document or folder an admin removed: ingest runs leave it out until the removal is undone."""

    path: str
    excluded_by: str
    created: float


@dataclass(frozen=True)
class DocumentInfo:
    """A live document as the admin page lists it."""

    path: str
    title: str
    chunks: int
    size: int
    modified: float  # the file's mtime, seconds since the epoch
    version: int  # the index version that (re)indexed it
    doc_id: int = 0
    content_hash: str = ""  # sha256 of the file's bytes as indexed


def text_hash(text: str) -> bytes:
    """The key under which a chunk's embedding is reused: same text, same vector."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


_DOCUMENT_INFO = "path, title, chunk_count, size, mtime_ns, added_version, id, content_hash"


def _document_info(row: Sequence) -> DocumentInfo:
    return DocumentInfo(row[0], row[1], row[2], row[3], row[4] / 1e9, row[5], row[6], row[7])


def _readable_by(groups: Sequence[str] | None, params: dict[str, object]) -> str:
    """SQL restricting documents `d` to those `groups` may read (binding the groups into `params`);
    nothing for None (an admin)."""
    if groups is None:
        return ""
    params.update({f"g{i}": g for i, g in enumerate(groups)})
    marks = ",".join(f":g{i}" for i in range(len(groups))) or "NULL"
    return f" AND d.id IN (SELECT doc_id FROM document_groups WHERE grp IN ({marks}))"


# Up to this many rows a reader does not see (retired, or not yet published), word counts check matches
# against their list; above it, each match's row (rag.store.ChunkStore._unseen_counter)
_FEW_UNSEEN = 5000


def _visible(alias: str) -> str:
    return (
        f"{alias}.added_version <= :version AND "
        f"({alias}.removed_version IS NULL OR {alias}.removed_version > :version)"
    )


def connect(index_dir: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index database; the writer creates the schema, readers open it read-only."""
    path = index_dir / DB_NAME
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
        os.chmod(path, 0o600)  # every document's text: the owner's alone
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed batch survives power loss as well as kill -9.
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        migrate(conn)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class StoreReader(Protocol):
    """What a published version's readers (the searcher, the page, the API) may do with the chunk store;
    the writes are `ChunkStore`'s other methods, called only by `IndexWriter`."""

    def get_meta(self, key: str) -> str | None: ...

    def live_documents(self, version: int) -> dict[bytes, StoredDocument]: ...

    def stored_document(self, version: int, path_key: bytes) -> StoredDocument | None: ...

    def exclusions(self) -> list[Exclusion]: ...

    def allowed_chunk_ids(self, version: int, groups: Sequence[str]) -> np.ndarray: ...

    def embeddings(self, ids: Sequence[int], dim: int) -> np.ndarray: ...

    def list_documents(self, version: int, contains: str = "", limit: int = 200, *,
                       groups: Sequence[str] | None = None, prefix: str = "", suffix: str = "",
                       offset: int = 0) -> list[DocumentInfo]: ...

    def document(self, version: int, doc_id: int, groups: Sequence[str] | None = None) -> DocumentInfo | None: ...

    def document_chunks(self, version: int, doc_id: int) -> list[Hit]: ...

    def counts(self, version: int) -> tuple[int, int]: ...

    def language_counts(self, version: int) -> dict[str, int]: ...

    def ocr_pages(self, doc_id: int, page: int | None = None) -> tuple[OcrPageInput, ...]: ...

    def ocr_page_count(self, version: int) -> int: ...

    def pending_counts(self, version: int) -> tuple[int, int]: ...

    def keyword_languages(self) -> list[str]: ...

    def word_match(self, word: str, prefix: bool = False) -> str: ...

    def word_forms(self, word: str) -> list[str]: ...

    def visible_ids(self, ids: Sequence[int], version: int) -> set[int]: ...

    def keyword_search(self, match: str, k: int, version: int,
                       groups: Sequence[str] | None = None) -> list[tuple[int, float]]: ...

    def term_counts(self, terms: Sequence[str], version: int | None = None,
                    groups: Sequence[str] | None = None, prefix: bool = False) -> dict[str, int]: ...

    def term_presence(self, terms: Sequence[str], ids: Sequence[int], version: int | None = None,
                      groups: Sequence[str] | None = None) -> dict[str, tuple[int, bool]]: ...

    def fetch_hits(self, ids: Sequence[int], scores: Sequence[float]) -> list[Hit]: ...

    def integrity(self) -> str: ...


class ChunkStore:
    """Typed access to the SQLite file: the `StoreReader` methods, and the writes `IndexWriter` makes."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        # a reader of an index an earlier release wrote (not migrated until its next ingest) sees no heading
        # paths and parser version 0
        chunk_columns = {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}
        document_columns = {r[1] for r in conn.execute("PRAGMA table_info(documents)")}
        self._section = "c.section" if "section" in chunk_columns else "''"
        self._parser_version = "d.parser_version" if "parser_version" in document_columns else "0"
        self._source_state = "d.source_state" if "source_state" in document_columns else "''"
        self._languages_lock = threading.Lock()
        self._languages: list[str] = []
        self._languages_raw: str | None = None

    def integrity(self) -> str:
        """SQLite's quick check: "ok", or what is wrong."""
        return str(self.conn.execute("PRAGMA quick_check").fetchone()[0])

    # -- metadata -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> None:
        self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- the working state seen by a writer ---------------------------------------------------
    def live_documents(self, version: int) -> dict[bytes, StoredDocument]:
        """Documents visible at `version`, keyed by raw path."""
        rows = self.conn.execute(
            "SELECT path_key, id, size, mtime_ns, content_hash, (SELECT group_concat(grp, char(10)) FROM "
            f"(SELECT grp FROM document_groups g WHERE g.doc_id = d.id ORDER BY grp)), {self._parser_version}, "
            f"{self._source_state} FROM documents d WHERE {_visible('d')}",
            {"version": version},
        )
        return {bytes(r[0]): StoredDocument(r[1], r[2], r[3], r[4], tuple(r[5].split("\n")) if r[5] else (), r[6],
                                            r[7]) for r in rows}

    def stored_document(self, version: int, path_key: bytes) -> StoredDocument | None:
        """The document visible at `version` under `path_key` (as `live_documents` has it), or None."""
        r = self.conn.execute(
            "SELECT id, size, mtime_ns, content_hash, (SELECT group_concat(grp, char(10)) FROM "
            f"(SELECT grp FROM document_groups g WHERE g.doc_id = d.id ORDER BY grp)), {self._parser_version}, "
            f"{self._source_state} FROM documents d WHERE d.path_key = :key AND {_visible('d')}",
            {"version": version, "key": path_key}).fetchone()
        return None if r is None else StoredDocument(r[0], r[1], r[2], r[3], tuple(r[4].split("\n")) if r[4] else (),
                                                     r[5], r[6])

    def exclusions(self) -> list[Exclusion]:
        """Every removed path, oldest first (none for an index made before removals stuck)."""
        try:
            rows = self.conn.execute("SELECT path, excluded_by, created FROM exclusions ORDER BY created").fetchall()
        except sqlite3.OperationalError:  # an older index, opened read-only: no table yet
            return []
        return [Exclusion(r[0], r[1], r[2]) for r in rows]

    def add_exclusions(self, paths: Sequence[str], by: str, now: float) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO exclusions(path_key, path, excluded_by, created) VALUES "
                              "(?, ?, ?, ?)", [(os.fsencode(p), p, by, now) for p in paths])

    def remove_exclusions(self, paths: Sequence[str]) -> int:
        return sum(self.conn.execute("DELETE FROM exclusions WHERE path_key = ?", (os.fsencode(p),)).rowcount
                   for p in paths)

    def set_groups(self, doc_id: int, groups: Sequence[str]) -> None:
        """Replace who may read a document (no re-embedding: chunks and vectors stay as they are)."""
        self.conn.execute("DELETE FROM document_groups WHERE doc_id = ?", (doc_id,))
        self.conn.executemany("INSERT OR IGNORE INTO document_groups(doc_id, grp) VALUES (?, ?)",
                              [(doc_id, g) for g in groups])

    @staticmethod
    def _readable_chunks(groups: Sequence[str]) -> str:
        """SQL selecting the ids of chunks visible at ? (bound twice, after the groups) in documents
        readable by any of `groups` (bound first)."""
        return (f"SELECT c.id FROM document_groups g JOIN chunks c ON c.doc_id = g.doc_id WHERE g.grp IN "
                f"({','.join('?' * len(groups))}) AND c.added_version <= ? AND (c.removed_version IS NULL OR "
                f"c.removed_version > ?)")

    def allowed_chunk_ids(self, version: int, groups: Sequence[str]) -> np.ndarray:
        """Ids of the chunks visible at `version` in documents readable by any of `groups`, ascending."""
        if not groups:
            return np.zeros(0, dtype=np.int64)
        rows = self.conn.execute(f"SELECT DISTINCT id FROM ({self._readable_chunks(groups)}) ORDER BY id",
                                 (*groups, version, version)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def insert_documents(self, version: int, docs: Sequence[DocumentInput], vectors: np.ndarray) -> int:
        """Insert documents and their chunks (rows of `vectors` in chunk order), each chunk analysed into the
        keyword index in its language; returns chunks added."""
        from rag.analysis import analyzer

        analysis, languages = analyzer(), set()
        row = 0
        for doc in docs:
            cur = self.conn.execute(
                "INSERT INTO documents(path_key, path, title, size, mtime_ns, content_hash, chunk_count, "
                "added_version, parser_version, source_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (doc.path_key, doc.path, doc.title, doc.size, doc.mtime_ns, doc.content_hash,
                 len(doc.chunks), version, doc.parser_version, doc.source_state),
            )
            doc_id = cur.lastrowid
            assert doc_id is not None
            self.set_groups(doc_id, doc.groups)
            langs = _chunk_languages(analysis, [c.text for c in doc.chunks])
            languages.update(langs)
            ids = []
            for i, (c, lang) in enumerate(zip(doc.chunks, langs)):
                ids.append(self.conn.execute(
                    "INSERT INTO chunks(doc_id, position, page, title, text, text_hash, embedding, added_version, "
                    "section, lang) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (doc_id, c.position, c.page, doc.title, c.text, text_hash(c.embed_input),
                     vectors[row + i].tobytes(), version, c.section, lang)).lastrowid)
            seen: dict[tuple[str, str], str] = {}
            self.conn.executemany(
                "INSERT INTO chunk_terms(rowid, text, title, section) VALUES (?, ?, ?, ?)",
                [(chunk_id, *_terms(analysis, c.text, doc.title, c.section, lang, seen))
                 for chunk_id, c, lang in zip(ids, doc.chunks, langs)])
            self.conn.executemany(
                "INSERT OR REPLACE INTO ocr_pages(doc_id, page, engine, confidence, seconds, words) VALUES "
                "(?, ?, ?, ?, ?, ?)", [(doc_id, p.page, p.engine, p.confidence, p.seconds,
                                        json.dumps(p.words, separators=(",", ":"))) for p in doc.ocr_pages])
            row += len(doc.chunks)
        if row != len(vectors):
            raise ValueError(f"{len(vectors)} vectors for {row} chunks")
        _record_languages(self.conn, languages)
        return row

    def remove_documents(self, version: int, doc_ids: Iterable[int]) -> int:
        """Retire documents at `version`; rows never published are deleted outright. Returns chunks removed."""
        removed = 0
        for doc_id in doc_ids:
            added = self.conn.execute("SELECT added_version FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if added is None:
                continue
            if added[0] >= version:  # written by this (or a crashed) run, never published
                removed += self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,)).rowcount
                self.conn.execute("DELETE FROM document_groups WHERE doc_id = ?", (doc_id,))
                self.conn.execute("DELETE FROM ocr_pages WHERE doc_id = ?", (doc_id,))
                self.conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            else:
                removed += self.conn.execute(
                    "UPDATE chunks SET removed_version = ? WHERE doc_id = ? AND removed_version IS NULL",
                    (version, doc_id),
                ).rowcount
                self.conn.execute("UPDATE documents SET removed_version = ? WHERE id = ?", (version, doc_id))
        return removed

    def max_document_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM documents").fetchone()[0])

    def documents_below(self, version: int, max_id: int, max_chunks: int) -> list[tuple[int, DocumentInput]]:
        """Documents visible at `version` with ids up to `max_id`, as inputs to store again (with their
        chunks and groups), lowest id first, about `max_chunks` chunks (at least one document)."""
        rows = self.conn.execute(
            f"SELECT id, path_key, path, title, size, mtime_ns, content_hash, chunk_count, {self._parser_version}, "
            f"{self._source_state} FROM documents d "
            f"WHERE d.id <= :max_id AND {_visible('d')} ORDER BY id", {"max_id": max_id, "version": version})
        picked: list[tuple] = []
        chunks = 0
        for row in rows:
            if picked and chunks + row[7] > max_chunks:
                break
            picked.append(row)
            chunks += row[7]
        out = []
        for doc_id, path_key, path, title, size, mtime_ns, content_hash, _, parser_version, source_state in picked:
            parts = tuple(ChunkInput(text, position, page, section) for text, position, page, section in self.conn.execute(
                f"SELECT text, position, page, {self._section} FROM chunks c WHERE doc_id = :id AND {_visible('c')} "
                "ORDER BY position", {"id": doc_id, "version": version}))
            groups = tuple(g for (g,) in self.conn.execute(
                "SELECT grp FROM document_groups WHERE doc_id = ? ORDER BY grp", (doc_id,)))
            out.append((doc_id, DocumentInput(bytes(path_key), path, title, size, mtime_ns, content_hash, parts,
                                              groups, self.ocr_pages(doc_id), parser_version, source_state)))
        return out

    def touch_document(self, doc_id: int, size: int, mtime_ns: int, source_state: str | None = None) -> None:
        """Record a new modification time (and source state) for a document whose content did not change."""
        if source_state is None:
            self.conn.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, doc_id))
        else:
            self.conn.execute("UPDATE documents SET size = ?, mtime_ns = ?, source_state = ? WHERE id = ?",
                              (size, mtime_ns, source_state, doc_id))

    def changes_at(self, version: int) -> tuple[list[int], list[int]]:
        """(ids of chunks to remove from the previous FAISS index, ids of chunks to add) for `version`."""
        removed = [r[0] for r in self.conn.execute(
            "SELECT id FROM chunks WHERE removed_version = ? AND added_version < ?", (version, version))]
        added = [r[0] for r in self.conn.execute(
            "SELECT id FROM chunks WHERE added_version = ? AND removed_version IS NULL ORDER BY id", (version,))]
        return removed, added

    def reusable_embeddings(self, hashes: Sequence[bytes], above_doc: int = 0) -> dict[bytes, bytes]:
        """Stored embeddings of chunks with these text hashes (any version: the model is the index's), from
        documents with ids above `above_doc` (those below hold another kind of vectors, see IndexWriter)."""
        found: dict[bytes, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 900):
            part = unique[start:start + 900]
            marks = ",".join("?" * len(part))
            found.update((bytes(h), bytes(e)) for h, e in self.conn.execute(
                f"SELECT text_hash, embedding FROM chunks WHERE text_hash IN ({marks}) AND doc_id > ? "
                f"GROUP BY text_hash", [*part, above_doc]))
        return found

    def embeddings(self, ids: Sequence[int], dim: int) -> np.ndarray:
        """The stored vectors of the given chunk ids, in that order."""
        out = np.empty((len(ids), dim), dtype=np.float32)
        for start in range(0, len(ids), 900):
            part = ids[start:start + 900]
            marks = ",".join("?" * len(part))
            rows = dict(self.conn.execute(f"SELECT id, embedding FROM chunks WHERE id IN ({marks})", part))
            for i, chunk_id in enumerate(part):
                out[start + i] = np.frombuffer(rows[chunk_id], dtype=np.float32)
        return out

    def visible_chunk_ids(self, version: int) -> Iterator[list[int]]:
        """All chunk ids visible at `version`, in batches (for full index rebuilds)."""
        cur = self.conn.execute(f"SELECT id FROM chunks c WHERE {_visible('c')} ORDER BY id", {"version": version})
        while batch := cur.fetchmany(50_000):
            yield [r[0] for r in batch]

    def collect_garbage(self, version: int) -> None:
        """Delete rows retired before `version`: no reader pinned to `version` - 1 or later sees them."""
        self.conn.execute("DELETE FROM chunks WHERE removed_version IS NOT NULL AND removed_version < ?", (version,))
        for table in ("document_groups", "ocr_pages"):
            self.conn.execute(f"DELETE FROM {table} WHERE doc_id IN (SELECT id FROM documents WHERE "
                              "removed_version IS NOT NULL AND removed_version < ?)", (version,))
        self.conn.execute("DELETE FROM documents WHERE removed_version IS NOT NULL AND removed_version < ?",
                          (version,))

    # -- readers ------------------------------------------------------------------------------
    def list_documents(self, version: int, contains: str = "", limit: int = 200, *,
                       groups: Sequence[str] | None = None, prefix: str = "", suffix: str = "",
                       offset: int = 0) -> list[DocumentInfo]:
        """Documents visible at `version` whose path or title contains `contains` (any case), whose path
        starts with `prefix` and ends with `suffix` (any case), by path. `groups`: only the documents
        those groups may read (None: all, for an admin)."""
        params: dict[str, object] = {"version": version, "q": contains.lower(), "limit": limit, "offset": offset,
                                     "prefix": prefix, "suffix": suffix.lower()}
        rows = self.conn.execute(
            f"SELECT {_DOCUMENT_INFO} FROM documents d "
            f"WHERE {_visible('d')} AND (instr(lower(path), :q) OR instr(lower(title), :q)) "
            "AND substr(path, 1, length(:prefix)) = :prefix "
            f"AND (:suffix = '' OR substr(lower(path), -length(:suffix)) = :suffix){_readable_by(groups, params)} "
            "ORDER BY path LIMIT :limit OFFSET :offset", params)
        return [_document_info(r) for r in rows]

    def document(self, version: int, doc_id: int, groups: Sequence[str] | None = None) -> DocumentInfo | None:
        """The document `doc_id` if it is visible at `version` and (with `groups`) readable by them."""
        params: dict[str, object] = {"version": version, "id": doc_id}
        r = self.conn.execute(f"SELECT {_DOCUMENT_INFO} FROM documents d WHERE d.id = :id AND {_visible('d')}"
                              f"{_readable_by(groups, params)}", params).fetchone()
        return None if r is None else _document_info(r)

    def document_chunks(self, version: int, doc_id: int) -> list[Hit]:
        """The chunks of document `doc_id` visible at `version`, in reading order (score 0)."""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT c.id FROM chunks c WHERE c.doc_id = :id AND {_visible('c')} ORDER BY c.position",
            {"id": doc_id, "version": version})]
        return self.fetch_hits(ids, [0.0] * len(ids))

    def ocr_pages(self, doc_id: int, page: int | None = None) -> tuple[OcrPageInput, ...]:
        """The OCR'd pages of a stored document (or that one page), by page; none in an index made before OCR."""
        try:
            rows = self.conn.execute(
                "SELECT page, engine, confidence, seconds, words FROM ocr_pages WHERE doc_id = ? AND (? IS NULL OR "
                "page = ?) ORDER BY page", (doc_id, page, page)).fetchall()
        except sqlite3.OperationalError:  # an older index, opened read-only: no table yet
            return ()
        return tuple(OcrPageInput(r[0], r[1], r[2], r[3], tuple(tuple(w) for w in json.loads(r[4])))  # type: ignore[misc]
                     for r in rows)

    def ocr_page_count(self, version: int) -> int:
        """Pages read by OCR in the documents visible at `version`."""
        try:
            return int(self.conn.execute(f"SELECT count(*) FROM ocr_pages o JOIN documents d ON d.id = o.doc_id "
                                         f"WHERE {_visible('d')}", {"version": version}).fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    def counts(self, version: int) -> tuple[int, int]:
        """(documents, chunks) visible at `version`."""
        docs = self.conn.execute(f"SELECT count(*) FROM documents d WHERE {_visible('d')}",
                                 {"version": version}).fetchone()[0]
        chunks = self.conn.execute(f"SELECT count(*) FROM chunks c WHERE {_visible('c')}",
                                   {"version": version}).fetchone()[0]
        return int(docs), int(chunks)

    def language_counts(self, version: int) -> dict[str, int]:
        """Chunks visible at `version` per language (rag.analysis codes; "" for text not recognised), most
        first; {} for an index no run has migrated yet."""
        if "lang" not in {r[1] for r in self.conn.execute("PRAGMA table_info(chunks)")}:
            return {}
        rows = self.conn.execute(f"SELECT lang, count(*) AS n FROM chunks c WHERE {_visible('c')} GROUP BY lang "
                                 "ORDER BY n DESC, lang", {"version": version}).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def pending_counts(self, version: int) -> tuple[int, int]:
        """(documents, chunks) committed after `version` and not retired: what the next publish adds."""
        docs = self.conn.execute("SELECT count(*) FROM documents WHERE added_version > ? AND removed_version IS "
                                 "NULL", (version,)).fetchone()[0]
        chunks = self.conn.execute("SELECT count(*) FROM chunks WHERE added_version > ? AND removed_version IS "
                                   "NULL", (version,)).fetchone()[0]
        return int(docs), int(chunks)

    # -- the keyword index -----------------------------------------------------------------------
    def keyword_table(self) -> str:
        """The keyword index to query: analysed by language, or, in an index an earlier release wrote and no
        run has migrated yet, the legacy one (checked at each query: a writer may migrate it meanwhile)."""
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunk_terms'").fetchone()
        return "chunk_terms" if row else LEGACY_KEYWORD_TABLE

    def keyword_languages(self) -> list[str]:
        """The languages the keyword index holds (rag.analysis codes), [] for a legacy index."""
        raw = self.get_meta(LANGUAGES_KEY) or "[]"
        with self._languages_lock:
            if raw != self._languages_raw:
                self._languages, self._languages_raw = list(json.loads(raw)), raw
            return self._languages

    def word_forms(self, word: str) -> list[str]:
        """The index terms one of a question's words may meet: its forms in each of the index's languages
        (rag.analysis); the word itself where analysis leaves nothing."""
        from rag.analysis import analyzer

        return analyzer().word_forms(word, self.keyword_languages()) or [word.lower()]

    def word_match(self, word: str, prefix: bool = False) -> str:
        """The FTS5 MATCH expression for one of a question's words: its forms (`word_forms`), each quoted (no
        FTS5 syntax gets through); `prefix`: words starting with it. In a legacy index, the word itself
        (FTS5's Porter stemmer stems it)."""
        word = word.replace('"', "")
        if prefix or self.keyword_table() == LEGACY_KEYWORD_TABLE:
            return f'"{word.lower()}"' + ("*" if prefix else "")
        forms = [f.replace('"', "") for f in self.word_forms(word)]
        return "(" + " OR ".join(f'"{f}"' for f in forms) + ")" if len(forms) > 1 else f'"{forms[0]}"'

    def visible_ids(self, ids: Sequence[int], version: int) -> set[int]:
        """Those of `ids` that are chunks visible at `version`."""
        if not ids:
            return set()
        marks = ",".join(str(int(i)) for i in ids)
        return {int(r[0]) for r in self.conn.execute(f"SELECT id FROM chunks c WHERE id IN ({marks}) AND "
                                                     f"{_visible('c')}", {"version": version})}

    def keyword_search(self, match: str, k: int, version: int,
                       groups: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """BM25 over chunk text and title (FTS5 `match` syntax): [(chunk id, score)], best first.

        Scores are FTS5's bm25 negated, so higher is better. FTS5 ranks first (over-fetching), and only
        the top rows are checked against `version`: joining every match to filter it first cost 2.5x the
        time at 100k chunks. Rows invisible at `version` are rare (unpublished or retired ones), and when
        too many of the top rows are, the fetch widens until k visible rows are found or matches run out.
        """
        if groups is not None:
            return self._keyword_search_allowed(match, k, version, groups)
        table = self.keyword_table()
        fetch = 2 * k
        while True:
            rows = self.conn.execute(
                f"SELECT c.id, f.score FROM (SELECT rowid, -bm25({table}, {BM25_WEIGHTS}) AS score FROM {table} "
                f"WHERE {table} MATCH :match ORDER BY bm25({table}, {BM25_WEIGHTS}) LIMIT :fetch) f "
                f"JOIN chunks c ON c.id = f.rowid WHERE {_visible('c')} ORDER BY f.score DESC LIMIT :k",
                {"match": match, "version": version, "k": k, "fetch": fetch},
            ).fetchall()
            if len(rows) >= k or fetch >= 1 << 20 or self.match_count(match) <= fetch:
                return [(int(r[0]), float(r[1])) for r in rows]
            fetch *= 4

    def _keyword_search_allowed(self, match: str, k: int, version: int, groups: Sequence[str]) -> list[tuple[int, float]]:
        """BM25 restricted, inside the query, to chunks of documents `groups` may read: however many
        better matches lie in other documents, the readable ones are found."""
        if not groups:
            return []
        table = self.keyword_table()
        rows = self.conn.execute(
            f"SELECT rowid, -bm25({table}, {BM25_WEIGHTS}) FROM {table} WHERE {table} MATCH ? AND rowid IN "
            f"({self._readable_chunks(groups)}) ORDER BY bm25({table}, {BM25_WEIGHTS}) LIMIT ?",
            (match, *groups, version, version, k)).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def match_count(self, match: str) -> int:
        """How many chunk rows (any version) an FTS5 `match` expression matches."""
        table = self.keyword_table()
        return int(self.conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (match,)).fetchone()[0])

    def _unseen_counter(self, version: int) -> Callable[[str], int]:
        """A count of the chunk rows an FTS5 match expression matches that a reader of `version` does not see:
        rows retired at or before it (kept until the next publish collects them) and rows of a run not
        published yet. Few at rest (the last run's replacements): the matches are checked against their list
        (`+rowid`: a list of ids pushed into FTS5 would run the match once an id). Many after a run that
        replaced everything (an upgrade) or during a large one: each match's row is looked up instead.
        Which of the two is decided once, for all the words of a question."""
        table = self.keyword_table()
        unseen = "{0}added_version > :version OR {0}removed_version <= :version"
        few = self.conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM chunks WHERE {unseen.format('')} LIMIT :limit)",
                                {"version": version, "limit": _FEW_UNSEEN + 1}).fetchone()[0] <= _FEW_UNSEEN
        if few:
            sql = (f"SELECT count(*) FROM {table} WHERE {table} MATCH :match AND "
                   f"+rowid IN (SELECT id FROM chunks WHERE {unseen.format('')})")
        else:
            sql = (f"SELECT count(*) FROM {table} t JOIN chunks c ON c.id = t.rowid WHERE {table} MATCH :match AND "
                   f"({unseen.format('c.')})")
        return lambda match: int(self.conn.execute(sql, {"match": match, "version": version}).fetchone()[0])

    def _term_scope(self, version: int | None, groups: Sequence[str] | None) -> tuple[str, tuple]:
        """SQL (and its parameters) restricting an FTS5 count to the chunks `groups` may read at `version`;
        nothing for an unrestricted count (admins)."""
        if groups is None:
            return "", ()
        if not groups:
            return " AND 0", ()
        return f" AND rowid IN ({self._readable_chunks(groups)})", (*groups, version, version)

    def term_counts(self, terms: Sequence[str], version: int | None = None,
                    groups: Sequence[str] | None = None, prefix: bool = False) -> dict[str, int]:
        """How many chunks contain each word (in any of its forms, `word_match`); with `groups`, only among the
        chunks those groups may read at `version`, so no statistic reflects unreadable text. `prefix`: chunks
        with a word that starts with it."""
        if groups is None:  # count(*) alone (FTS5 need not visit the rows), less the rows `version` does not see
            unseen = self._unseen_counter(version) if version is not None else (lambda match: 0)
            return {t: self.match_count(match) - unseen(match) for t in terms for match in [self.word_match(t, prefix)]}
        scope, params = self._term_scope(version, groups)
        table = self.keyword_table()
        return {t: int(self.conn.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?{scope}",
                                          (self.word_match(t, prefix), *params)).fetchone()[0]) for t in terms}

    def term_presence(self, terms: Sequence[str], ids: Sequence[int], version: int | None = None,
                      groups: Sequence[str] | None = None) -> dict[str, tuple[int, bool]]:
        """For each word: (chunks containing it; whether one of `ids` contains it), by FTS5. Counted over the
        chunks visible at `version` (every row without one), or with `groups` over the chunks those groups
        may read at `version`. `ids` are chunks of `version`."""
        marks = ",".join("?" * len(ids)) or "NULL"
        scope, params = self._term_scope(version, groups)
        table = self.keyword_table()
        unseen = self._unseen_counter(version) if groups is None and version is not None else None
        out = {}
        for term in terms:
            match = self.word_match(term)
            count, present = self.conn.execute(
                f"SELECT count(*), coalesce(max(rowid IN ({marks})), 0) FROM {table} WHERE {table} MATCH ?"
                f"{scope}", (*ids, match, *params)).fetchone()
            if unseen is not None:
                count -= unseen(match)
            out[term] = (int(count), bool(present))
        return out

    def fetch_hits(self, ids: Sequence[int], scores: Sequence[float]) -> list[Hit]:
        """Hits for chunk ids, in the given order; ids no longer stored are left out."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        select = (f"SELECT c.id, d.path, c.title, c.page, c.position, c.text, d.mtime_ns, d.id, {self._section}, "
                  "{ocr} FROM chunks c "
                  "JOIN documents d ON d.id = c.doc_id {join} WHERE c.id IN ({marks})")
        try:
            cursor = self.conn.execute(select.format(
                ocr="o.confidence", marks=marks,
                join="LEFT JOIN ocr_pages o ON o.doc_id = c.doc_id AND o.page = c.page"), list(ids))
        except sqlite3.OperationalError:  # an older index, opened read-only: no OCR table yet
            cursor = self.conn.execute(select.format(ocr="NULL", join="", marks=marks), list(ids))
        rows = {r[0]: r for r in cursor}
        hits = []
        for chunk_id, score in zip(ids, scores):
            r = rows.get(chunk_id)
            if r is not None:
                hits.append(Hit(chunk_id=r[0], path=r[1], title=r[2], page=r[3], position=r[4],
                                score=float(score), text=r[5], mtime=r[6] / 1e9, doc_id=r[7], section=r[8],
                                ocr_confidence=r[9]))
        return hits
