"""The keyword index's engine: tantivy beside the chunk store, derived from it.

The chunk store (SQLite) stays the index's truth: every chunk's analysed terms are in its `chunk_terms` table
(rag.store), which SQLite FTS5 searches. Tantivy, Quickwit's Rust search library, keeps a second, derived
copy of those terms in INDEX_DIR/keywords, where BM25 top-k is exact and fast at millions of chunks
(block-max WAND over compressed postings: bench/keyword_engines.py; FTS5 must prune posting lists to be
fast there, which changes results).

How the copy stays safe:
- The writer brings it up to date (`KeywordWriter.catch_up`) while publishing a version, before the manifest
  names it, and only then records in the chunk store's meta which version it covers (`keywords_version`) and
  the last chunk it holds (`keywords_chunk_id`). A run killed anywhere leaves a copy that covers an older
  version, or rows a later catch-up deletes and adds again; readers use the copy only for versions it covers.
- Deleted chunk rows are logged by a trigger (`keyword_removed`) and deleted from the copy at the next
  catch-up. Until then a stale row only costs a lookup: every hit is checked against the chunk store's
  visibility at the reader's version, as FTS5's are.
- Readers never block on the writer: they search the last commit, which covers their version or is ignored
  (FTS5 answers that version instead).
- Permissions: each row carries its document's readers (groups), so a restricted search is filtered inside
  tantivy by the asker's groups (a few terms, however many rows they may read). Readers changed in the
  store are logged by triggers and the document's rows re-indexed at the next catch-up; meanwhile every
  hit is also checked against what the store says the asker may read at their version (`Readable.ids`),
  so a revoked reader never sees a row, at once.
- The copy is tied to the chunk store by an instance id (a file in the folder and a meta key): a copy from
  elsewhere, or a store from elsewhere, is never trusted; the writer rebuilds it from `chunk_terms` (no
  re-embedding), which is also how an index written before this engine migrates, in a normal run.

Tokens: the analysed text is folded as FTS5's unicode61 tokenizer folds it (lower case, diacritics removed,
split at anything but letters and digits), here in Python for the documents and the questions alike.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.files import fsync_path

if TYPE_CHECKING:
    from rag.store import ChunkStore, StoreReader

log = logging.getLogger(__name__)

KEYWORDS_DIR = "keywords"
INSTANCE_FILE = "instance"
# The store records the copy's instance under a key of the copy's schema: a reader of an earlier release (a
# replica not yet upgraded, or after a downgrade) finds no copy and uses FTS5, rather than querying fields
# this schema does not have (schema 2's readers failed on "Field `text` is not defined"). The writer
# forgets the earlier schemas' keys when it starts.
META_INSTANCE = "keywords_instance_3"
EARLIER_INSTANCES = ("keywords_instance",)  # schema 2's
META_VERSION = "keywords_version"
META_CHUNK = "keywords_chunk_id"
# One field holds a row's analysed text, its document's title and its heading path, so that BM25 counts a word
# once per row, saturates it once and normalises by one length, as FTS5's bm25 over its columns does. Three
# fields scored apart and summed (schema 2) gave a word in a title a second saturation and a short field's
# length: hybrid recall on BoolQ fell 0.3 points below FTS5's, and each question made three term queries a
# word. Title and headings count here as the text does (FTS5 weighs them 0.5; tantivy cannot within a field).
FIELD = "words"
LONGEST_TOKEN = 39  # bytes; tantivy drops longer tokens at indexing, so they are dropped here first, everywhere
WRITER_HEAP = 64_000_000
SCHEMA_VERSION = "3"  # the copy's fields; a copy of another schema is rebuilt (its instance id starts with it)
# What the next catch-up must apply: chunk rows deleted, documents whose readers changed (logged by triggers).
LOGS = (
    "CREATE TABLE IF NOT EXISTS keyword_removed (chunk_id INTEGER PRIMARY KEY)",
    """CREATE TRIGGER IF NOT EXISTS keyword_removed_ad AFTER DELETE ON chunks BEGIN
    INSERT OR IGNORE INTO keyword_removed(chunk_id) VALUES (old.id);
END""",
    "CREATE TABLE IF NOT EXISTS keyword_regroup (doc_id INTEGER PRIMARY KEY)",
    """CREATE TRIGGER IF NOT EXISTS keyword_regroup_ai AFTER INSERT ON document_groups BEGIN
    INSERT OR IGNORE INTO keyword_regroup(doc_id) VALUES (new.doc_id);
END""",
    """CREATE TRIGGER IF NOT EXISTS keyword_regroup_ad AFTER DELETE ON document_groups BEGIN
    INSERT OR IGNORE INTO keyword_regroup(doc_id) VALUES (old.doc_id);
END""",
)
LOG_OBJECTS = (("trigger", "keyword_removed_ad"), ("trigger", "keyword_regroup_ai"), ("trigger", "keyword_regroup_ad"),
               ("table", "keyword_removed"), ("table", "keyword_regroup"))

_TOKEN = re.compile(r"[^\W_]+")
_MARKS = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def tokens(text: str) -> list[str]:
    """Index tokens of analysed text (or of one query form): lower case, diacritics removed, split at
    anything but letters and digits, tokens over LONGEST_TOKEN bytes dropped."""
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFKD", text)))
    return [t for t in _TOKEN.findall(text) if len(t.encode()) <= LONGEST_TOKEN]


def row_tokens(text: str, title: str, section: str) -> list[str]:
    """What the copy indexes of a row (chunk_terms' analysed text, title, heading path): one field's tokens."""
    return tokens(text) + place_tokens(title, section)


def place_tokens(title: str, section: str) -> list[str]:
    """The tokens a row's title and heading path add to its text (the same over a document's chunks)."""
    return tokens(title) + tokens(section)


def earlier_release(store: "StoreReader", folder_instance: str | None) -> bool:
    """Whether the copy in the folder (its instance id), or the store's record of one, is an earlier release's
    schema: FTS5 answers until the next run rebuilds it."""
    return ((folder_instance is not None and not folder_instance.startswith(f"{SCHEMA_VERSION}-"))
            or any(store.get_meta(key) is not None for key in EARLIER_INSTANCES))


def available() -> bool:
    """Whether the tantivy package is installed."""
    import importlib.util

    return importlib.util.find_spec("tantivy") is not None


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("chunk_id", indexed=True, fast=True)
    builder.add_unsigned_field("doc_id", indexed=True)
    builder.add_text_field("readers", tokenizer_name="raw", index_option="basic")  # the document's groups
    builder.add_text_field(FIELD, tokenizer_name="whitespace", index_option="freq")
    return builder.build()


ROWS = ("SELECT c.id, c.doc_id, t.text, t.title, t.section FROM chunks c JOIN chunk_terms t ON t.rowid = c.id")


def _parts(values: list[int], size: int = 20_000) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def manual_reader(index: Any) -> Any:
    """`index` with a reader that reloads only when told (`Index.reload`). Tantivy's default reader polls
    meta.json from a thread of its own and reloads after each commit, taking the folder's meta lock, which
    recreates its lock file: in a folder being removed, that left a file behind and failed the removal (CI,
    stop 49). Both sides here reload explicitly, at the commits they mean to read."""
    index.config_reader("Manual")
    return index


def remove_folder(folder: Path) -> None:
    """Delete a copy's folder without a window where its path holds a half-deleted one: it is renamed aside
    first (atomic), then removed. A reader in another process reloading meanwhile recreates tantivy's lock
    file at the path, not in the folder being deleted, and a new copy can be made there at once."""
    aside = _aside(folder)
    try:
        os.replace(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


REMOVED_PREFIX = f".{KEYWORDS_DIR}.removed-"  # a copy being deleted; a killed run leaves it, the writer sweeps it


def _aside(folder: Path) -> Path:
    """A new name beside `folder` for a copy on its way out (`remove_folder`, `install`): unique, so no
    leftover of a killed run is in its way, and under REMOVED_PREFIX, so the writer's start deletes one."""
    return folder.with_name(f"{REMOVED_PREFIX}{uuid.uuid4().hex}")


def read_instance(folder: Path) -> str | None:
    try:
        return (folder / INSTANCE_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


class KeywordWriter:
    """The writer's side: keeps INDEX_DIR/keywords in step with the chunk store (one per `IndexWriter`)."""

    def __init__(self, index_dir: Path, store: "ChunkStore") -> None:
        self.folder = index_dir / KEYWORDS_DIR
        self.store = store
        self.conn = store.conn
        self._index: Any = None
        self._writer: Any = None
        self._schema: Any = None

    def _forget(self, *keys: str) -> None:
        """Drop the copy's records from the store's meta (in the caller's transaction): readers stop using it."""
        for key in keys:
            self.store.delete_meta(key)

    def start(self) -> None:
        """At the writer's start: log deleted chunks from now on; a copy this store does not know (none yet,
        another store's, a damaged one) is replaced by an empty one that the next catch-up fills."""
        with self.conn:
            for statement in LOGS:
                self.conn.execute(statement)
            self._forget(*EARLIER_INSTANCES)  # before this copy replaces an earlier release's
        for left in self.folder.parent.glob(f"{REMOVED_PREFIX}*"):  # by a run killed while deleting a copy
            shutil.rmtree(left, ignore_errors=True)
        instance = read_instance(self.folder)
        known = self.store.get_meta(META_INSTANCE)
        if instance is not None and instance == known and instance.startswith(f"{SCHEMA_VERSION}-"):
            try:
                self._open()
                return
            except (OSError, ValueError) as exc:
                log.warning("the keyword index in %s cannot be opened (%s): rebuilding it", self.folder, exc)
        self._create()

    def _open(self) -> None:
        import tantivy

        self._index = manual_reader(tantivy.Index.open(str(self.folder)))
        self._schema = self._index.schema

    def _create(self) -> None:
        import tantivy

        with self.conn:  # readers stop using the old copy before it goes
            self._forget(META_INSTANCE, META_VERSION, META_CHUNK)
            self.conn.execute("DELETE FROM keyword_removed")
            self.conn.execute("DELETE FROM keyword_regroup")
        remove_folder(self.folder)
        self.folder.mkdir(mode=0o700)
        self._schema = _schema()
        self._index = manual_reader(tantivy.Index(self._schema, path=str(self.folder), reuse=False))
        instance = f"{SCHEMA_VERSION}-{uuid.uuid4().hex}"
        (self.folder / INSTANCE_FILE).write_text(instance + "\n")
        fsync_path(self.folder / INSTANCE_FILE)
        fsync_path(self.folder)
        with self.conn:
            for key, value in ((META_INSTANCE, instance), (META_CHUNK, "0"), (META_VERSION, "0")):
                self.store.set_meta(key, value)

    def behind(self, version: int) -> bool:
        """Whether the copy needs a catch-up for `version`: it covers an older one, or the store logged
        deleted rows or changed readers since its last one."""
        return (int(self.store.get_meta(META_VERSION) or 0) < version
                or self.conn.execute("SELECT EXISTS (SELECT 1 FROM keyword_removed) OR EXISTS (SELECT 1 FROM "
                                     "keyword_regroup)").fetchone()[0] == 1)

    def catch_up(self, version: int) -> tuple[int, int]:
        """Make the copy hold every chunk row stored now and none deleted, and record that it covers
        `version` (about to be published). Returns (rows added, rows deleted)."""
        if self.store.get_meta(META_INSTANCE) is None:  # a failed catch-up of this run invalidated it: start again
            self._create()
        if self._writer is None:
            self._writer = self._index.writer(heap_size=WRITER_HEAP, num_threads=1)
        try:
            return self._catch_up(version)
        except BaseException:
            # what the writer holds after a failure is unknown: drop it, and the copy's claim until a rebuild
            writer, self._writer = self._writer, None
            try:
                writer.rollback()
            except Exception:  # noqa: BLE001 - the copy is invalidated below whatever the rollback says
                pass
            with self.conn:
                self._forget(META_INSTANCE, META_VERSION)
            raise

    def _catch_up(self, version: int) -> tuple[int, int]:
        import tantivy

        writer, schema = self._writer, self._schema
        covered = int(self.store.get_meta(META_CHUNK) or 0)
        # rows after the last recorded one: a catch-up that committed and died before recording it
        writer.delete_documents_by_query(tantivy.Query.range_query(
            schema, "chunk_id", tantivy.FieldType.Unsigned, lower_bound=covered, include_lower=False))
        removed = [int(r[0]) for r in self.conn.execute("SELECT chunk_id FROM keyword_removed WHERE chunk_id <= ?",
                                                        (covered,))]
        for part in _parts(removed):
            writer.delete_documents_by_query(tantivy.Query.term_set_query(schema, "chunk_id", part))
        # documents whose readers changed: their rows again, with the new readers (deletes apply to earlier adds)
        regrouped = [int(r[0]) for r in self.conn.execute("SELECT doc_id FROM keyword_regroup")]
        again = 0
        for part in _parts(regrouped):
            writer.delete_documents_by_query(tantivy.Query.term_set_query(schema, "doc_id", part))
            again += self._add(writer, self.conn.execute(
                f"{ROWS} WHERE c.doc_id IN ({','.join(map(str, part))}) AND c.id <= ? ORDER BY c.id", (covered,)))
        added = self._add(writer, self.conn.execute(f"{ROWS} WHERE c.id > ? ORDER BY c.id", (covered,)))
        last = int(self.conn.execute("SELECT coalesce(max(id), ?) FROM chunks", (covered,)).fetchone()[0])
        writer.commit()
        # the copy holds exactly the stored rows, or it is not trusted
        self._index.reload()
        held = int(self._index.searcher().num_docs)
        stored = int(self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        if held != stored:
            raise RuntimeError(f"the copy holds {held} rows for {stored} stored; it is rebuilt at the next run")
        with self.conn:
            self.conn.execute("DELETE FROM keyword_removed WHERE chunk_id <= ?", (max(last, covered),))
            self.conn.executemany("DELETE FROM keyword_regroup WHERE doc_id = ?", [(d,) for d in regrouped])
            self.store.set_meta(META_CHUNK, str(max(last, covered)))
            self.store.set_meta(META_VERSION, str(version))
        return added + again, len(removed)

    def _add(self, writer: Any, rows: Iterable[tuple[int, int, str, str, str]]) -> int:
        """Add chunk rows (id, document id, analysed text, title, heading path) with their document's readers."""
        import tantivy

        added = 0
        shared: dict[tuple[str, str], str] = {}  # a document's title and heading paths repeat over its chunks
        readers: dict[int, list[str]] = {}
        for chunk_id, doc_id, text, title, section in rows:
            if len(shared) > 10_000 or len(readers) > 10_000:
                shared.clear()
                readers.clear()
            if (title, section) not in shared:
                shared[title, section] = " ".join(place_tokens(title, section))
            if doc_id not in readers:
                readers[doc_id] = [str(r[0]) for r in self.conn.execute(
                    "SELECT grp FROM document_groups WHERE doc_id = ?", (doc_id,))]
            doc = tantivy.Document()
            doc.add_unsigned("chunk_id", int(chunk_id))  # (a keyword argument would be a signed integer)
            doc.add_unsigned("doc_id", int(doc_id))
            for group in readers[doc_id]:
                doc.add_text("readers", group)
            doc.add_text(FIELD, f"{' '.join(tokens(text))} {shared[title, section]}")  # row_tokens' order
            writer.add_document(doc)
            added += 1
        return added

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.wait_merging_threads()
            finally:
                self._writer = None


def drop(index_dir: Path, store: "ChunkStore") -> bool:
    """Remove the tantivy copy (RAG_KEYWORD_ENGINE=sqlite): readers go back to FTS5 first. Returns whether
    there was one."""
    folder, conn = index_dir / KEYWORDS_DIR, store.conn
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    had = folder.exists() or any(name in names for _, name in LOG_OBJECTS)
    if had:
        with conn:
            for key in (META_INSTANCE, META_VERSION, META_CHUNK, *EARLIER_INSTANCES):
                store.delete_meta(key)
            for kind, name in LOG_OBJECTS:
                conn.execute(f"DROP {kind.upper()} IF EXISTS {name}")
        remove_folder(folder)
    return had


@dataclass
class _Opened:
    index: Any
    schema: Any
    folder_id: tuple[int, int]
    instance: str
    commit: tuple[int, int]  # the commit its searcher was last reloaded for (meta.json's inode and time)


EARLIER_RELEASE = ("the keyword index was written by an earlier release: FTS5 answers until the next `rag ingest` "
                   "rebuilds it (from the stored rows; nothing is embedded again)")


class KeywordReader:
    """The readers' side: the copy's searcher for a published version it covers, or None (FTS5 answers).

    Safe to share between threads; reopens the folder when it is replaced (`rag index sync`)."""

    def __init__(self, index_dir: Path) -> None:
        self.folder = index_dir / KEYWORDS_DIR
        self._opened: _Opened | None = None
        self._lock = threading.Lock()
        self._warned: str | None = None

    def searcher(self, store: "StoreReader", version: int) -> tuple[Any, Any] | None:
        """(tantivy searcher, schema) over a commit covering `version`, or None when the copy does not cover
        it (being built, behind after a failure, absent, or not this store's)."""
        instance = store.get_meta(META_INSTANCE)
        covered = int(store.get_meta(META_VERSION) or 0)
        if instance is None:
            if earlier_release(store, None):
                self._warn(EARLIER_RELEASE)
            return None
        if covered < version:
            self._warn(f"the keyword index covers version {covered}, not {version}: FTS5 answers until it does")
            return None
        try:
            st = self.folder.stat()
            with self._lock:
                opened = self._opened
                if opened is None or opened.folder_id != (st.st_dev, st.st_ino) or opened.instance != instance:
                    folder_instance = read_instance(self.folder)
                    if folder_instance != instance:
                        self._warn(EARLIER_RELEASE if earlier_release(store, folder_instance) else
                                   "the keyword index folder is not this chunk store's: FTS5 answers")
                        return None
                    import tantivy

                    index = manual_reader(tantivy.Index.open(str(self.folder)))
                    opened = self._opened = _Opened(index, index.schema, (st.st_dev, st.st_ino), instance, (0, 0))
                meta = (self.folder / "meta.json").stat()  # replaced by each commit
                if opened.commit != (meta.st_ino, meta.st_mtime_ns):
                    opened.index.reload()
                    opened.commit = (meta.st_ino, meta.st_mtime_ns)
                return opened.index.searcher(), opened.schema
        except (OSError, ValueError) as exc:
            self._warn(f"the keyword index in {self.folder} cannot be read ({exc}): FTS5 answers")
            return None

    def _warn(self, message: str) -> None:
        if message != self._warned:
            self._warned = message
            log.warning("%s", message)


def query_for(schema: Any, words: Sequence[Sequence[str]], allowed: Any = None) -> Any:
    """The BM25 query: every form's tokens, OR-ed; `allowed`: a filter query that adds no score (the readable
    chunk ids)."""
    import tantivy

    terms = list(dict.fromkeys(t for forms in words for form in forms for t in tokens(form)))
    clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, FIELD, term, index_option="freq"))
               for term in terms]
    if not clauses:
        return None
    query = tantivy.Query.boolean_query(clauses)
    if allowed is not None:
        query = tantivy.Query.boolean_query([(tantivy.Occur.Must, query),
                                             (tantivy.Occur.Must, tantivy.Query.boost_query(allowed, 0.0))])
    return query


def allowed_query(schema: Any, groups: Sequence[str]) -> Any:
    """Rows of documents any of `groups` may read, as the copy last recorded their readers (the caller checks
    each hit against what the store says now: a reader removed since is never shown a row)."""
    import tantivy

    return tantivy.Query.term_set_query(schema, "readers", list(groups))


def top(searcher: Any, query: Any, fetch: int) -> list[tuple[int, float]]:
    """The query's best `fetch` rows: [(chunk id, score)], best first."""
    hits = searcher.search(query, fetch, count=False).hits
    if not hits:
        return []
    ids = searcher.fast_field_values("chunk_id", [address for _, address in hits])
    return [(int(i), float(score)) for i, (score, _) in zip(ids, hits)]


def snapshot(index_dir: Path, target: Path, attempts: int = 5) -> bool:
    """Copy the keyword index's last commit (its meta.json, the files of the segments it names, the instance
    file) into `target`/keywords while a writer may be committing and merging: files are immutable once
    named by a commit, so a file gone means a newer commit; read it again. Returns whether there was one."""
    source = index_dir / KEYWORDS_DIR
    if read_instance(source) is None:
        return False
    dest = target / KEYWORDS_DIR
    for _ in range(attempts):
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(mode=0o700)
        try:
            meta = (source / "meta.json").read_bytes()
            segments = [s["segment_id"].replace("-", "") for s in json.loads(meta)["segments"]]
            for segment in segments:
                for path in source.glob(f"{segment}.*"):
                    shutil.copy2(path, dest / path.name)
            (dest / "meta.json").write_bytes(meta)
            shutil.copy2(source / INSTANCE_FILE, dest / INSTANCE_FILE)
            for path in dest.iterdir():
                fsync_path(path)
            fsync_path(dest)
            return True
        except FileNotFoundError:
            continue
    raise OSError(f"the keyword index in {source} changed faster than it could be copied ({attempts} tries)")


def install(staged: Path, dest_index: Path) -> None:
    """Put a copied keyword folder in place of `dest_index`/keywords (readers reopen it: its inode changes)."""
    dest = dest_index / KEYWORDS_DIR
    old = _aside(dest)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staged, dest)
    fsync_path(dest_index)
    shutil.rmtree(old, ignore_errors=True)
