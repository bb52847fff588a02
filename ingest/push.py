"""Documents other systems push (the API's `PUT /v1/sources/{source}/documents/{external_id}`): a durable queue,
and the `Source` that drains it into the index through the same run as every other source.

A push is answered once it is on disk: the document's bytes and its metadata are written to the queue folder
(`<index>/push-queue`, 0700) as two files, the metadata last and renamed into place, so an entry is complete
or absent. `PushCommitter` (a thread of `rag api`) drains the queue every `interval_s`, or at once when a
caller asks to publish: one `run_ingest` over a `PushSource` per pushing source, so the parse happens in the
parser sandbox, vectors are reused by text, the writer lock is the index's and a publish makes it searchable.
Entries are removed only after their run published; a process killed at any point leaves them for the next
run (the content hash makes a repeat cost nothing). An entry never changes once written (a newer push of the
same document is a newer entry), so the file a run parses is the file it scanned.

A pushed document's key is `push://<source>/<external id>`: re-pushing the same id replaces it, identical bytes
and readers change nothing (the API answers 204), DELETE removes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from ingest.walk import FoundFile, Skipped
from rag.store import StoredDocument

log = logging.getLogger(__name__)

KEY_PREFIX = "push://"
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_EXTERNAL_ID = 512
QUEUE_DIR = "push-queue"


def push_key(source: str, external_id: str) -> str:
    return f"{KEY_PREFIX}{source}/{quote(external_id, safe='')}"


@dataclass(frozen=True)
class Entry:
    """One queued push (or deletion) of a document."""

    seq: int  # its order in the queue: a later entry for the same key wins
    key: str
    source: str
    deleted: bool = False
    extension: str = ""  # how its bytes are parsed (".md" for text)
    groups: tuple[str, ...] = ()
    url: str = ""
    modified_ns: int = 0
    content_hash: str = ""  # sha256 of the bytes
    size: int = 0
    username: str = ""  # who pushed it (the audit has the rest)


class PushQueue:
    """The queue folder: `<seq>.bin` (the bytes) and `<seq>.json` (the entry), written in that order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        paths = sorted((p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem))
        self._seq = int(paths[-1].stem) if paths else 0  # an unreadable entry's number is never reused
        self._latest: dict[str, Entry] = {}  # the newest entry of each queued document
        self._seqs: dict[str, list[int]] = {}  # every queued entry of each document, oldest first
        for path in paths:
            try:
                data = json.loads(path.read_text())
                data["groups"] = tuple(data.get("groups", ()))
                self._remember(Entry(**data))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("push queue entry %s not read (%s): left for an operator", path.name, exc)

    def _remember(self, entry: Entry) -> None:
        self._latest[entry.key] = entry
        self._seqs.setdefault(entry.key, []).append(entry.seq)

    def put(self, entry: Entry, data: bytes | None) -> Entry:
        """Queue `entry` (and its bytes); durable when this returns."""
        with self._lock:
            self._seq += 1
            entry = Entry(**{**asdict(entry), "seq": self._seq})
            if data is not None:
                self._write(self.folder / f"{entry.seq}.bin", data)
            self._write(self.folder / f"{entry.seq}.json", json.dumps(asdict(entry)).encode())
            self._remember(entry)
            return entry

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def pending(self, key: str) -> Entry | None:
        with self._lock:
            return self._latest.get(key)

    def snapshot(self) -> list[Entry]:
        """The latest entry of every queued document, oldest first."""
        with self._lock:
            return sorted(self._latest.values(), key=lambda e: e.seq)

    def bytes_path(self, entry: Entry) -> Path:
        return self.folder / f"{entry.seq}.bin"

    def done(self, entries: list[Entry]) -> None:
        """Drop `entries` and every older entry of their documents (a newer one, queued meanwhile, stays)."""
        with self._lock:
            for entry in entries:
                seqs = self._seqs.get(entry.key, [])
                for seq in [s for s in seqs if s <= entry.seq]:
                    (self.folder / f"{seq}.bin").unlink(missing_ok=True)
                    (self.folder / f"{seq}.json").unlink(missing_ok=True)
                    seqs.remove(seq)
                if not seqs:
                    self._seqs.pop(entry.key, None)
                if entry.key in self._latest and self._latest[entry.key].seq <= entry.seq:
                    del self._latest[entry.key]


class PushSource:
    """The queued documents of one pushing source, as an ingest run's source (ingest/sources.py)."""

    kind = "push"

    def __init__(self, name: str, queue: PushQueue) -> None:
        self.name = name
        self.queue = queue
        self.entries: dict[str, Entry] = {}  # what the last scan took from the queue (by key)

    def scan(self, known: Mapping[bytes, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        self.entries = {e.key: e for e in self.queue.snapshot() if e.source == self.name}
        for entry in self.entries.values():
            if entry.deleted:
                continue
            path = self.queue.bytes_path(entry)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError as exc:
                yield Skipped(entry.key, f"pushed bytes missing from the queue ({exc.strerror or exc})", True)
                continue
            state = json.dumps({"url": entry.url}) if entry.url else ""
            yield FoundFile(entry.key, entry.size, entry.modified_ns, str(self.queue.folder), st.st_dev, st.st_ino,
                            spool=str(path), kind=entry.extension, source_state=state)

    def owns(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.deleted

    def groups_for(self, key: str) -> tuple[str, ...]:
        return self.entries[key].groups if key in self.entries else ()

    def problems(self) -> list[tuple[str, str]]:
        return []

    @property
    def nobody(self) -> int:
        return sum(1 for e in self.entries.values() if not e.deleted and not e.groups)

    def close(self) -> None:
        pass


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PushCommitter:
    """Drains the queue into the index (a thread of `rag api`): every `interval_s`, or at once on `request()`."""

    def __init__(self, queue: PushQueue, run: Callable[[list[PushSource]], object], interval_s: float) -> None:
        self.queue = queue
        self.run = run
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cycle = threading.Condition()
        self._published_seq = 0  # every entry up to this one is published
        self._thread = threading.Thread(target=self._loop, name="push-committer", daemon=True)
        self.last_error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def request(self) -> None:
        self._wake.set()

    def wait_published(self, seq: int, timeout_s: float) -> bool:
        """Ask for a run now and wait until entry `seq` is published (False after `timeout_s`)."""
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._cycle:
            while self._published_seq < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cycle.wait(left)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.drain()
                self.last_error = ""
            except Exception as exc:  # a busy index (another writer), a full disk: kept, tried again
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("pushed documents not committed yet (%s): tried again in %g s", self.last_error,
                            self.interval_s)

    def drain(self) -> None:
        """One run over everything queued now: then what each source's scan took leaves the queue."""
        names = sorted({e.source for e in self.queue.snapshot()})
        if not names:
            return
        sources = [PushSource(name, self.queue) for name in names]
        self.run(sources)
        entries = [e for source in sources for e in source.entries.values()]
        self.queue.done(entries)
        if entries:
            with self._cycle:
                self._published_seq = max(self._published_seq, max(e.seq for e in entries))
                self._cycle.notify_all()
