"""The vector index: FAISS files published atomically beside the SQLite chunk store.

Layout of an index folder::

    chunks.sqlite            chunk text, metadata, embeddings, FTS5 (WAL)
    vectors-000007.faiss     FAISS index of version 7 (native FAISS format, never pickle)
    manifest.json            the published version: which FAISS file, model, counts
    write.lock               held by the one ingest run allowed at a time (with a PostgreSQL app database:
                             its advisory lock instead, which holds across hosts)
    index.id                 the index's random name: the advisory lock's key, whatever path mounts it

A version becomes visible only when ``manifest.json`` is replaced by an fsync'd rename, after its
FAISS file and its SQLite rows are durable; a reader therefore sees the old version or the new one,
never half of one, and a run killed at any point leaves the last published version intact.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from filelock import FileLock, Timeout

from rag.settings import IndexSettings
from rag.embedding import Embedder, vector_space, without_space
from rag.files import atomic_replace, atomic_write, file_sha256, private_dir, process_alive
from rag.keywords import (KEYWORDS_DIR, META_INSTANCE as KEYWORDS_INSTANCE, META_VERSION as KEYWORDS_VERSION,
                          KeywordWriter, available as keywords_available, drop as drop_keywords,
                          earlier_release as keywords_of_earlier_release, read_instance as read_keywords_instance)
from rag.store import (DB_NAME, SOURCES_KEY, ChunkStore, DocumentInfo, Exclusion, SourceRecord, StoredDocument,
                       StoreReader, connect, text_hash)
from rag.types import DocumentInput, Hit

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# meta key changed whenever a document's groups change (see IndexWriter.set_groups)
ACL_STAMP = "acl_stamp"
LOCK = "write.lock"
# meta keys of a switch to another kind of vectors: the target model id, and the highest document id
# whose vectors are of the old kind (later documents hold new vectors, reusable by content hash)
SWITCH_TO = "embedding_switch_to"
SPACE_FLOOR = "embedding_space_floor"


class RagIndexError(RuntimeError):
    """Base class of index errors with a message that says what to do."""


class IndexNotFoundError(RagIndexError):
    """No published index in the folder."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"no index in {folder}")
        self.folder = folder


def find_indexes(near: list[Path], depth: int = 2, budget: int = 500) -> list[Path]:
    """Published indexes in and below the `near` folders (at most `depth` levels down, `budget` folders in
    all, so a folder beside / or a huge share costs little), for a message that says where the index is when
    the configured folder has none. Hidden folders are not searched."""
    found: dict[Path, None] = {}
    for root in near:
        level = [root.resolve()]
        for _ in range(depth + 1):
            below = []
            for folder in level:
                budget -= 1
                if budget < 0:
                    break
                if (folder / MANIFEST).is_file():
                    found[folder.resolve()] = None
                    continue
                try:
                    below += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
                except OSError:
                    pass
            level = below
    cwd = Path.cwd().resolve()
    return [p.relative_to(cwd) if p.is_relative_to(cwd) else p for p in found]


class ModelMismatchError(RagIndexError):
    """The index was built with another embedding model than the configured one."""


class IndexBusyError(RagIndexError):
    """Another ingest run holds the write lock."""


@dataclass(frozen=True)
class Manifest:
    """The published state of an index folder."""

    version: int
    vectors_file: str
    vectors: int
    index_type: str
    embedding_model: str
    dim: int
    published_at: float
    vectors_sha256: str = ""  # of the vectors file, for copies on other hosts (`rag index sync`); "" before

    @classmethod
    def read(cls, index_dir: Path) -> Manifest | None:
        path = index_dir / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # a newer release's fields left out


def faiss_gpu_count() -> int:
    """GPUs FAISS can use (0 on a CPU-only host, where faiss-gpu runs its CPU indexes)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


class FaissVectorIndex:
    """Exact inner-product search (IndexFlatIP) or IVF-Flat above a size threshold, with our chunk ids."""

    def __init__(self, index: object, index_type: str, nprobe: int = 32) -> None:
        self.index = index
        self.index_type = index_type
        self.nprobe = nprobe
        self._search_index = index
        self.device = "cpu"

    # -- construction -----------------------------------------------------------------------------
    @staticmethod
    def choose_type(n_vectors: int, settings: IndexSettings) -> str:
        """flat (exact) for small indexes, IVF above `exact_max_vectors`, IVF-PQ from `compressed_min_vectors`."""
        if n_vectors <= settings.exact_max_vectors:
            return "flat"
        return "ivfpq" if n_vectors >= settings.compressed_min_vectors else "ivf"

    @staticmethod
    def ivf_lists(n_vectors: int) -> int:
        """IVF list count for an index of `n_vectors`: 4·sqrt(N), FAISS's usual rule."""
        return max(1, min(int(4 * math.sqrt(n_vectors)), 65536))

    @classmethod
    def training_size(cls, n_vectors: int) -> int:
        """How many vectors to train IVF on: about 40 per list (FAISS warns below 39), at least 100k."""
        return min(n_vectors, max(100_000, 40 * cls.ivf_lists(n_vectors)))

    @classmethod
    def empty(cls, dim: int, index_type: str, settings: IndexSettings, train: np.ndarray | None = None,
              n_vectors: int = 0) -> FaissVectorIndex:
        """A new index; IVF is sized for `n_vectors` and trained on `train` (a sample of them)."""
        import faiss

        if index_type == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif index_type == "ivf":
            if train is None or len(train) == 0:
                raise ValueError("an IVF index needs training vectors")
            nlist = min(cls.ivf_lists(max(n_vectors, len(train))), max(1, len(train) // 39))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(train, dtype=np.float32))
        elif index_type == "ivfpq":
            if train is None or len(train) < 10_000:
                raise ValueError("an IVF-PQ index needs at least 10,000 training vectors")
            if dim % settings.pq_bytes:
                raise ValueError(f"pq_bytes ({settings.pq_bytes}) must divide the dimension ({dim})")
            nlist = min(cls.ivf_lists(max(n_vectors, len(train))), max(1, len(train) // 39))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, settings.pq_bytes, 8, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(train, dtype=np.float32))
        else:
            raise ValueError(f"unknown index type {index_type!r}")
        return cls(index, index_type, settings.ivf_nprobe)

    @classmethod
    def read(cls, path: Path, index_type: str, nprobe: int) -> FaissVectorIndex:
        import faiss

        return cls(faiss.read_index(str(path)), index_type, nprobe)

    def write(self, path: Path) -> None:
        """Write durably (the caller renames nothing: the manifest is what publishes it)."""
        import faiss

        atomic_replace(path, lambda tmp: faiss.write_index(self.index, str(tmp)))

    # -- updates --------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)  # type: ignore[attr-defined]

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),  # type: ignore[attr-defined]
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))  # type: ignore[attr-defined]

    # -- search -------------------------------------------------------------------------------
    def to_device(self, device: str) -> None:
        """Serve searches from the GPU(s) when asked for and FAISS sees one; otherwise stay on CPU."""
        if device != "cuda" or faiss_gpu_count() == 0:
            return
        import faiss

        try:
            options = faiss.GpuMultipleClonerOptions()
            options.useFloat16 = True
            options.shard = True
            self._search_index = faiss.index_cpu_to_all_gpus(self.index, co=options)
            self.device = f"cuda x{faiss_gpu_count()}"
        except RuntimeError as exc:  # an index type without a GPU implementation
            log.warning("FAISS index stays on the CPU: %s", exc)

    @staticmethod
    def selector(allowed: np.ndarray) -> object:
        """An id selector for `search` (reusable: build it once for a set of ids searched many times)."""
        import faiss

        return faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               selector: object = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; with `allowed`, only among those ids (the filter runs inside the
        search, on the CPU index: FAISS's GPU indexes take no id selector); `selector`: `allowed`'s, built
        before (`selector`)."""
        import faiss

        if self.ntotal == 0 or (allowed is not None and len(allowed) == 0):
            empty = np.full((len(queries), k), -1, dtype=np.int64)
            return np.zeros((len(queries), k), dtype=np.float32), empty
        if allowed is not None:
            selector = selector if selector is not None else self.selector(allowed)
            params = (faiss.SearchParametersIVF(sel=selector, nprobe=self.nprobe)
                      if self.index_type in ("ivf", "ivfpq") else faiss.SearchParameters(sel=selector))
            return self.index.search(  # type: ignore[attr-defined]
                np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        if self.index_type in ("ivf", "ivfpq"):
            try:
                faiss.extract_index_ivf(self._search_index).nprobe = self.nprobe
            except RuntimeError:
                faiss.GpuParameterSpace().set_index_parameter(self._search_index, "nprobe", self.nprobe)
        scores, ids = self._search_index.search(  # type: ignore[attr-defined]
            np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids


def check_model(manifest: Manifest, folder: Path, model_id: str) -> None:
    """Refuse to search `manifest`'s vectors with queries embedded as `model_id`."""
    recorded = manifest.embedding_model
    if recorded == model_id:
        return
    if without_space(recorded) == without_space(model_id):
        raise ModelMismatchError(
            f"index {folder} holds {vector_space(recorded)} vectors of {without_space(recorded)}, but the "
            f"configured embedding backend makes {vector_space(model_id)} ones: set RAG_EMBEDDING_BACKEND=auto "
            f"to follow the index, or run `rag ingest` with this backend to re-embed it")
    raise ModelMismatchError(
        f"index {folder} was built with embedding model {recorded}, but {model_id} is configured: configure "
        f"the same model, or re-index with this one into a new folder")


T = TypeVar("T")


def _peek(folder: Path, read: Callable[[ChunkStore], T], default: T) -> T | None:
    """`read` on the folder's database opened read-only, without a writer's lock; None when there is no
    database, `default` while a first run is still creating its schema."""
    if not (folder / DB_NAME).is_file():
        return None
    conn = connect(folder, readonly=True)
    try:
        return read(ChunkStore(conn))
    except sqlite3.OperationalError:
        return default
    finally:
        conn.close()


def recorded_model_id(settings: IndexSettings) -> str | None:
    """The embedding model id the index in `settings.dir` records (None: no index yet). Cheap: reads the
    manifest, or the database of a first run that has not published yet."""
    manifest = Manifest.read(settings.dir)
    if manifest is not None:
        return manifest.embedding_model
    return _peek(settings.dir, lambda store: store.get_meta("embedding_model"), None)


RUN_FILE = "run.json"


@dataclass
class RunState:
    """What the run writing an index is doing, in the index folder for `rag status` and the page."""

    pid: int
    host: str
    started_at: float
    phase: str = "starting"
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    updated_at: float = 0.0

    @classmethod
    def read(cls, folder: Path) -> RunState | None:
        try:
            return cls(**json.loads((folder / RUN_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        """Whether the process that wrote this still runs (a killed run leaves its file behind)."""
        return process_alive(self.pid, self.host)


@dataclass(frozen=True)
class IndexState:
    """An index folder as `rag status` reports it, published or not, without loading any vectors."""

    pending_documents: int  # committed by a run since the last publish, not searchable yet
    pending_chunks: int
    run: RunState | None  # the run writing the index now (None: none alive)

    @property
    def running(self) -> bool:
        return self.run is not None

    def fields(self) -> dict[str, object]:
        """The `rag status --json` fields about unpublished work and the run."""
        run = self.run
        return {"pending_documents": self.pending_documents, "pending_chunks": self.pending_chunks,
                "running": self.running, "run_started_at": run.started_at if run else None,
                "run_phase": run.phase if run else None, "run_files_done": run.files_done if run else None,
                "run_files_total": run.files_total if run else None}

    def describe(self) -> str:
        """One line for a person: what the running ingest is doing, or what a dead one left unpublished."""
        run = self.run
        if run is not None:
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at))
            if run.phase == "indexing" and run.files_total:
                doing = f"indexing: {run.files_done:,} of {run.files_total:,} files"
            else:
                doing = f"indexing ({run.phase})"
            return f"{doing} since {since}; answers use what is indexed so far"
        if self.pending_documents:
            return (f"{self.pending_documents:,} documents committed by an interrupted run are not searchable "
                    f"yet: run `rag ingest` again to publish them")
        return ""


def index_state(settings: IndexSettings) -> IndexState | None:
    """The folder's unpublished work and running run; None when nothing is there."""
    manifest = Manifest.read(settings.dir)
    version = manifest.version if manifest else 0
    pending = _peek(settings.dir, lambda store: store.pending_counts(version), (0, 0))
    if pending is None:
        return None
    documents, chunks = pending
    run = RunState.read(settings.dir)
    return IndexState(documents, chunks, run if run is not None and run.alive() else None)


def vectors_file_name(version: int) -> str:
    return f"vectors-{version:06d}.faiss"


@dataclass
class PublishReport:
    """What one publish did."""

    version: int
    vectors_total: int
    published: bool


ID_FILE = "index.id"


class WriterLock(Protocol):
    """What makes an index's writer single (`writer_lock` picks it): held for a whole run."""

    def acquire(self, timeout: float) -> None:
        """Take it, waiting up to `timeout` seconds; TimeoutError (its message: who holds it, if known) when
        another writer keeps it."""
        ...

    def check(self) -> None:
        """Raise when the lock may have been lost during the run (before publishing)."""
        ...

    def release(self) -> None: ...


class FolderLock:
    """The index folder's lock file: every writer on this host (and on a local file system) agrees."""

    def __init__(self, folder: Path) -> None:
        self._lock = FileLock(str(folder / LOCK))

    def acquire(self, timeout: float) -> None:
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError("") from None

    def check(self) -> None:
        pass

    def release(self) -> None:
        self._lock.release()


def index_identity(folder: Path) -> str:
    """The index's own name, the same from every host whatever path mounts it: a random id written once into
    the folder (O_EXCL: two first writers agree on one)."""
    path = folder / ID_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.1)
        raise RagIndexError(f"{path} is empty: delete it (no writer may run meanwhile) and run again") from None
    identity = uuid.uuid4().hex
    with os.fdopen(fd, "w") as f:
        f.write(identity + "\n")
        f.flush()
        os.fsync(f.fileno())
    return identity


def writer_lock(settings: IndexSettings) -> WriterLock:
    """With a PostgreSQL app database, its advisory lock (one writer across hosts, which a lock file on a
    network file system does not guarantee); else the folder's lock file."""
    if settings.lock_db:
        from rag.pg import AdvisoryLock

        return AdvisoryLock(settings.lock_db, settings.lock_db_password_file,
                            f"index {index_identity(settings.dir)}")
    return FolderLock(settings.dir)


class IndexWriter:
    """The single writer of an index folder: one per run, holding the folder's write lock.

    Usage: ``with IndexWriter.open(settings.index, model_id) as w: w.write_batch(...); w.publish(dim)``.
    Batches of documents are committed as single SQLite transactions; `publish` then builds the
    next FAISS file from the previous one plus the committed changes and swaps the manifest.
    A run that dies before publishing leaves its committed batches in place: the next run adopts
    them as its own (same working version) and only embeds what is still missing.
    """

    def __init__(self, settings: IndexSettings, model_id: str, switch: bool = False) -> None:
        self.settings = settings
        self.dir = settings.dir
        self.model_id = model_id
        self.allow_switch = switch
        self.switching = False  # re-embedding every document into `model_id`'s vectors (see `_start`)
        self._run: RunState | None = None
        self._lock: WriterLock | None = None
        self.conn: sqlite3.Connection | None = None
        self.store: ChunkStore
        self.published: Manifest | None = None
        self.version = 0  # the working version this run writes
        self.keywords: KeywordWriter | None = None  # the keyword index's tantivy copy (rag.keywords)

    @classmethod
    @contextmanager
    def open(cls, settings: IndexSettings, model_id: str, *, switch: bool = False) -> Iterator[IndexWriter]:
        """`switch`: an index whose vectors are the same model's in another kind (fp32, int8) is re-embedded
        into `model_id`'s kind by this run (`reembed_batch`), instead of refused."""
        private_dir(settings.dir)
        writer = cls(settings, model_id, switch)
        lock = writer_lock(settings)
        try:
            lock.acquire(timeout=settings.lock_timeout_s)
        except TimeoutError as exc:
            holder = f" ({exc})" if str(exc) else ""
            raise IndexBusyError(
                f"another ingest run is writing {settings.dir}{holder}; wait for it to finish "
                f"(or set RAG_LOCK_TIMEOUT_S to wait automatically)"
            ) from exc
        writer._lock = lock
        try:
            writer._run = RunState(os.getpid(), socket.gethostname(), time.time())
            writer._write_run_state()
            writer._start()
            yield writer
        finally:
            try:
                if writer.keywords is not None:
                    writer.keywords.close()  # waits for tantivy's merges; a failure there must not skip the rest
            finally:
                try:
                    if writer.conn is not None:
                        writer.conn.close()
                    (settings.dir / RUN_FILE).unlink(missing_ok=True)
                finally:
                    lock.release()

    def _start(self) -> None:
        self.conn = connect(self.dir)
        self.store = ChunkStore(self.conn)
        stored_model = self.store.get_meta("embedding_model")
        pending = self.store.get_meta(SWITCH_TO)
        if stored_model is None:
            with self.conn:
                self.store.set_meta("embedding_model", self.model_id)
        elif stored_model != self.model_id or (self.allow_switch and pending not in (None, self.model_id)):
            if without_space(stored_model) != without_space(self.model_id):
                raise ModelMismatchError(
                    f"index {self.dir} was built with embedding model {stored_model}, but {self.model_id} is "
                    f"configured: set RAG_EMBEDDING_MODEL back, or index into a new folder with --index")
            if not self.allow_switch:
                raise ModelMismatchError(
                    f"index {self.dir} holds {vector_space(stored_model)} vectors, but this embedder makes "
                    f"{vector_space(self.model_id)} ones: run `rag ingest` to re-embed it, or set "
                    f"RAG_EMBEDDING_BACKEND=auto")
            if pending != self.model_id:
                # documents up to this id hold the old vectors; a killed switch resumes from here
                with self.conn:
                    self.store.set_meta(SWITCH_TO, self.model_id)
                    self.store.set_meta(SPACE_FLOOR, str(self.store.max_document_id()))
            self.switching = True
            log.info("re-embedding index %s from %s to %s", self.dir, stored_model, self.model_id)
        self._space_floor = int(self.store.get_meta(SPACE_FLOOR) or 0)
        self.published = Manifest.read(self.dir)
        published_version = self.published.version if self.published else 0
        self.version = published_version + 1
        self._start_keywords()  # before collecting garbage: the rows it deletes leave the copy too
        with self.conn:
            self.store.collect_garbage(published_version)
        self._remove_stale_files(published_version)

    def _start_keywords(self) -> None:
        """Keep the keyword index's tantivy copy (RAG_KEYWORD_ENGINE=tantivy) or remove it (sqlite). A copy
        that cannot be kept is only logged: readers use FTS5 for the versions it does not cover."""
        assert self.conn is not None
        if self.settings.keyword_engine != "tantivy":
            if drop_keywords(self.dir, self.store):
                log.info("removed the keyword index's tantivy copy (RAG_KEYWORD_ENGINE=sqlite)")
            return
        if not keywords_available():
            log.warning("RAG_KEYWORD_ENGINE=tantivy, but the tantivy package is not installed: keyword search "
                        "uses FTS5 (pip install -r requirements.txt)")
            return
        keywords = KeywordWriter(self.dir, self.store)
        try:
            keywords.start()
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.warning("the keyword index's tantivy copy in %s cannot be kept (%s): keyword search uses FTS5",
                        self.dir, exc)
            return
        self.keywords = keywords

    def _catch_up_keywords(self, version: int) -> None:
        """Bring the tantivy copy up to the rows stored now, as covering `version` (before its manifest)."""
        if self.keywords is None:
            return
        started = time.monotonic()
        try:
            added, deleted = self.keywords.catch_up(version)
        except (OSError, ValueError, RuntimeError, sqlite3.Error) as exc:
            log.warning("the keyword index's tantivy copy was not brought up to version %d (%s): keyword search "
                        "uses FTS5 for it; the next run tries again", version, exc)
            return
        if added or deleted:
            log.info("keyword index (tantivy): %d rows added, %d deleted in %.1f s", added, deleted,
                     time.monotonic() - started)

    def _remove_stale_files(self, published_version: int) -> None:
        """Keep the published FAISS file and its predecessor (readers may still hold it)."""
        keep = {vectors_file_name(published_version), vectors_file_name(published_version - 1)}
        for path in self.dir.glob("vectors-*.faiss"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        for path in self.dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)

    # -- batch writes ---------------------------------------------------------------------------
    def live_documents(self) -> dict[bytes, StoredDocument]:
        """The working state: published documents plus what an earlier, crashed run committed."""
        return self.store.live_documents(self.version)

    def write_batch(self, add: list[DocumentInput], vectors: np.ndarray, remove: list[int]) -> tuple[int, int]:
        """Atomically retire `remove` documents and insert `add` with their vectors: (added, removed)."""
        with self.conn:
            removed = self.store.remove_documents(self.version, remove)
            added = self.store.insert_documents(self.version, add, vectors)
        return added, removed

    def remove(self, doc_ids: list[int]) -> int:
        """Retire documents in one transaction; how many chunks went with them."""
        return self.write_batch([], np.zeros((0, 0), dtype=np.float32), doc_ids)[1]

    def embed_reusing(self, embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, int]:
        """Vectors for `texts`, embedding only texts not already stored (or repeated in the batch).

        Unchanged paragraphs of an edited document, and copies of a document, cost no model time.
        Returns (vectors in order, how many texts the model embedded).
        """
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), 0
        hashes = [text_hash(t) for t in texts]
        known = self.store.reusable_embeddings(hashes, self._space_floor)
        todo: dict[bytes, str] = {}
        for h, t in zip(hashes, texts):
            if h not in known and h not in todo:
                todo[h] = t
        if todo:
            fresh = embedder.embed_batch(list(todo.values()))
            known.update((h, v.tobytes()) for h, v in zip(todo, fresh))
        return np.vstack([np.frombuffer(known[h], dtype=np.float32) for h in hashes]), len(todo)

    def report_progress(self, phase: str, files_total: int, files_done: int, chunks: int) -> None:
        """Tell `rag status` and the page where this run is (written at most once a second)."""
        run = self._run
        if run is None:
            return
        now = time.time()
        changed_phase = phase != run.phase
        run.phase, run.files_total, run.files_done, run.chunks = phase, files_total, files_done, chunks
        if changed_phase or now - run.updated_at >= 1.0:
            self._write_run_state()

    def _write_run_state(self) -> None:
        assert self._run is not None
        self._run.updated_at = time.time()
        atomic_write(self.dir / RUN_FILE, json.dumps(asdict(self._run)).encode())

    def reembed_batch(self, embedder: Embedder, max_chunks: int) -> tuple[int, int]:
        """Re-embed the next documents holding the old kind of vectors (about `max_chunks` chunks), in one
        transaction: each is retired and added again with new vectors, so readers pinned to the published
        version keep the old ones. Returns (documents, chunks embedded); (0, 0) once the switch is done,
        which records the new model id (published by the next `publish`)."""
        assert self.switching
        docs = self.store.documents_below(self.version, self._space_floor, max_chunks)
        if not docs:
            with self.conn:
                self.store.set_meta("embedding_model", self.model_id)
                self.store.delete_meta(SWITCH_TO)
            self.switching = False
            log.info("index %s re-embedded as %s", self.dir, self.model_id)
            return 0, 0
        texts = [c.embed_input for _, doc in docs for c in doc.chunks]
        vectors, embedded = self.embed_reusing(embedder, texts)
        self.write_batch([doc for _, doc in docs], vectors, [doc_id for doc_id, _ in docs])
        return len(docs), embedded

    def record_sources(self, records: "list[SourceRecord]") -> None:
        """Register or update the sources of this run (`rag sources`), committed with the next publish's
        meta: a source keeps the time of its first run."""
        known = sources_of(self.store)
        for record in records:
            first = known[(record.kind, record.name)].first_sync if (record.kind, record.name) in known else 0.0
            known[(record.kind, record.name)] = replace(record, first_sync=first or record.last_sync)
        with self.conn:
            self.store.set_meta(SOURCES_KEY, json.dumps([asdict(r) for r in known.values()]))

    def touch(self, doc_id: int, size: int, mtime_ns: int, source_state: str | None = None) -> None:
        with self.conn:
            self.store.touch_document(doc_id, size, mtime_ns, source_state)

    def exclusions(self) -> list[Exclusion]:
        """The paths admins removed, which this run must leave out."""
        return self.store.exclusions()

    def exclude(self, paths: list[str], by: str) -> None:
        """Record removed paths, so later runs leave them out (committed at once)."""
        assert self.conn is not None
        with self.conn:
            self.store.add_exclusions(paths, by, time.time())

    def include(self, paths: list[str]) -> int:
        """Undo removals: the next ingest run of a folder holding them adds them back."""
        assert self.conn is not None
        with self.conn:
            return self.store.remove_exclusions(paths)

    def set_groups(self, doc_id: int, groups: tuple[str, ...]) -> None:
        """Change who may read a document. Applies at the next search, published or not: the stamp
        tells searchers that what they cached about permissions is out of date."""
        with self.conn:
            self.store.set_groups(doc_id, groups)
            self.store.set_meta(ACL_STAMP, str(time.time_ns()))

    # -- publishing -------------------------------------------------------------------------------
    def publish(self, dim: int | None) -> PublishReport:
        """Build and publish the working version if anything changed since the published one."""
        if self._lock is not None:
            try:
                self._lock.check()  # a lock lost on the way (another host may write now): publish nothing
            except RuntimeError as exc:
                raise RagIndexError(str(exc)) from None
        removed, added = self.store.changes_at(self.version)
        previous = self.published
        _, visible = self.store.counts(self.version)
        if self.switching or self.store.get_meta(SWITCH_TO) is not None:
            # the working state mixes two kinds of vectors until every document is re-embedded
            raise RagIndexError(f"index {self.dir} is being re-embedded into other vectors (an interrupted run): "
                                f"run `rag ingest` to finish it; this change is kept and published with it")
        if not removed and not added and previous is not None and previous.embedding_model == self.model_id:
            if self.keywords is not None and self.keywords.behind(previous.version):
                # readers changed or rows collected without a new version; an index from before the copy
                self._catch_up_keywords(previous.version)
            return PublishReport(previous.version, previous.vectors, published=False)
        if dim is None:
            dim = previous.dim if previous else 0
        index = self._next_index(previous, removed, added, visible, dim)
        if index.ntotal != visible:
            log.warning("incremental FAISS update gave %d vectors for %d chunks; rebuilding",
                        index.ntotal, visible)
            index = self._rebuild(visible, dim)
        name = vectors_file_name(self.version)
        index.write(self.dir / name)
        self._catch_up_keywords(self.version)
        manifest = Manifest(
            version=self.version, vectors_file=name, vectors=index.ntotal, index_type=index.index_type,
            embedding_model=self.model_id, dim=dim, published_at=time.time(),
            vectors_sha256=file_sha256(self.dir / name),
        )
        atomic_write(self.dir / MANIFEST, json.dumps(asdict(manifest), indent=2).encode())
        self.published = manifest
        log.info("published index version %d with %d vectors", self.version, index.ntotal)
        report = PublishReport(self.version, index.ntotal, published=True)
        self.version += 1
        return report

    def _next_index(self, previous: Manifest | None, removed: list[int], added: list[int],
                    visible: int, dim: int) -> FaissVectorIndex:
        wanted = FaissVectorIndex.choose_type(visible, self.settings)
        grew_too_much = (
            previous is not None and wanted != "flat" and previous.vectors > 0 and visible > 4 * previous.vectors
        )
        if (previous is None or previous.index_type != wanted or grew_too_much
                or previous.embedding_model != self.model_id):
            return self._rebuild(visible, dim)
        index = FaissVectorIndex.read(self.dir / previous.vectors_file, previous.index_type,
                                      self.settings.ivf_nprobe)
        index.remove(np.asarray(removed, dtype=np.int64))
        for start in range(0, len(added), 50_000):
            part = added[start:start + 50_000]
            index.add(self.store.embeddings(part, dim), np.asarray(part, dtype=np.int64))
        return index

    def _rebuild(self, visible: int, dim: int) -> FaissVectorIndex:
        """A fresh index from every visible stored embedding (no re-embedding)."""
        index_type = FaissVectorIndex.choose_type(visible, self.settings)
        train = None
        if index_type in ("ivf", "ivfpq"):
            rng = np.random.default_rng(0)
            all_ids = [i for batch in self.store.visible_chunk_ids(self.version) for i in batch]
            size = FaissVectorIndex.training_size(len(all_ids))
            sample = sorted(rng.choice(all_ids, size=size, replace=False).tolist())
            train = self.store.embeddings(sample, dim)
        index = FaissVectorIndex.empty(dim, index_type, self.settings, train, n_vectors=visible)
        for batch in self.store.visible_chunk_ids(self.version):
            index.add(self.store.embeddings(batch, dim), np.asarray(batch, dtype=np.int64))
        return index


@dataclass(frozen=True)
class IndexView:
    """One published version as a searcher sees it; swapped whole, so a search never mixes two versions.

    Its methods are the read interface the interfaces use (the page, the command line, the API); writes
    go through `IndexWriter` only.
    """

    manifest: Manifest
    vectors: FaissVectorIndex
    store: StoreReader
    dir: Path | None = None  # the index folder (for the keyword copy's status)

    def list_documents(self, contains: str = "", limit: int = 200, *, groups: Sequence[str] | None = None,
                       prefix: str = "", suffix: str = "", offset: int = 0) -> list[DocumentInfo]:
        """This version's documents whose path or title contains `contains`, at most `limit` from `offset`;
        with `groups`, only those the groups may read (None: all)."""
        return self.store.list_documents(self.manifest.version, contains, limit, groups=groups, prefix=prefix,
                                         suffix=suffix, offset=offset)

    def document(self, doc_id: int, groups: Sequence[str] | None = None) -> DocumentInfo | None:
        """Document `doc_id` of this version, if `groups` (None: anyone) may read it."""
        return self.store.document(self.manifest.version, doc_id, groups)

    def document_chunks(self, doc_id: int) -> list[Hit]:
        """Document `doc_id`'s chunks in this version, in reading order (check `document` first)."""
        return self.store.document_chunks(self.manifest.version, doc_id)

    def live_documents(self) -> dict[bytes, StoredDocument]:
        """This version's documents by path key (what a removal would match)."""
        return self.store.live_documents(self.manifest.version)

    def exclusions(self) -> list[Exclusion]:
        """The paths admins removed, which ingest runs leave out."""
        return self.store.exclusions()

    def stored_document(self, key: str) -> StoredDocument | None:
        """This version's document under `key` (a path, an address), or None."""
        return self.store.stored_document(self.manifest.version, os.fsencode(key))

    def integrity(self) -> str:
        """SQLite's quick check of the chunk store: "ok", or what is wrong."""
        return self.store.integrity()

    def sources(self) -> "list[SourceRecord]":
        """The sources the index was built from, most recently synced first."""
        return sorted(sources_of(self.store).values(), key=lambda r: -r.last_sync)

    def keyword_engine(self) -> str:
        """Which engine answers this version's keyword searches: "tantivy" where its copy covers the version
        (rag.keywords), else "fts5" (with why, when a copy exists but is behind)."""
        instance = self.store.get_meta(KEYWORDS_INSTANCE)
        folder = read_keywords_instance(self.dir / KEYWORDS_DIR) if self.dir is not None else instance
        if instance is None or folder != instance:
            if keywords_of_earlier_release(self.store, folder):
                return "fts5 (the tantivy copy was written by an earlier release; the next ingest rebuilds it)"
            return "fts5"
        covered = int(self.store.get_meta(KEYWORDS_VERSION) or 0)
        return "tantivy" if covered >= self.manifest.version else f"fts5 (the tantivy copy covers version {covered})"

    def status(self) -> dict[str, object]:
        """What this version holds and which model built it (for `rag status` and the admin page)."""
        documents, chunks = self.store.counts(self.manifest.version)
        return {
            "documents": documents, "chunks": chunks, "vectors": self.vectors.ntotal,
            "ocr_pages": self.store.ocr_page_count(self.manifest.version),
            "languages": self.store.language_counts(self.manifest.version),
            "keyword_engine": self.keyword_engine(),
            "embedding_model": self.manifest.embedding_model, "index_type": self.manifest.index_type,
            "device": self.vectors.device, "version": self.manifest.version,
            "published_at": self.manifest.published_at,
        }


class IndexReader:
    """A reader pinned to one published version; `refresh` moves it to a newer one when there is one.

    Safe to share between threads (the web page's sessions): `view` is replaced in one assignment.
    """

    def __init__(self, settings: IndexSettings) -> None:
        self.settings = settings
        self.dir = settings.dir
        self.manifest: Manifest | None = None
        self.vectors: FaissVectorIndex | None = None
        self.store: ChunkStore | None = None
        self.view: IndexView | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._db_file: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _manifest_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.dir / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Load the published version if it changed since the last call (a stat, when it has not)."""
        stamp = self._manifest_stamp()
        if stamp is None:
            raise IndexNotFoundError(self.dir)
        if stamp == self._stamp:
            return False
        with self._lock:
            if stamp == self._stamp:  # another thread loaded it meanwhile
                return False
            return self._load(stamp)

    def _load(self, stamp: tuple[int, int, int]) -> bool:
        manifest = Manifest.read(self.dir)
        assert manifest is not None
        vectors = FaissVectorIndex.read(self.dir / manifest.vectors_file, manifest.index_type,
                                        self.settings.ivf_nprobe)
        # a copy kept in step by `rag index sync` replaces the chunk store's file: open the new one (views of
        # the old version keep theirs until they are dropped)
        db = (self.dir / DB_NAME).stat()
        if self.store is None or (db.st_dev, db.st_ino) != self._db_file:
            self.store = ChunkStore(connect(self.dir, readonly=True))
            self._db_file = (db.st_dev, db.st_ino)
        vectors.to_device(self._device())
        self.view = IndexView(manifest, vectors, self.store, self.dir)
        self.manifest, self.vectors, self._stamp = manifest, vectors, stamp
        log.info("index version %d loaded (%d vectors, %s)", manifest.version, manifest.vectors,
                 manifest.index_type)
        return True

    def _device(self) -> str:
        if self.settings.device == "cpu":
            return "cpu"
        return "cuda" if faiss_gpu_count() > 0 else "cpu"


def sources_of(store: "StoreReader") -> "dict[tuple[str, str], SourceRecord]":
    """The sources recorded in an index's meta, by (kind, name)."""
    raw = store.get_meta(SOURCES_KEY)
    records = [SourceRecord.from_dict(d) for d in json.loads(raw)] if raw else []
    return {(r.kind, r.name): r for r in records}
