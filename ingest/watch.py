"""`rag ingest FOLDER... --watch`: keep an index current with its folders, until stopped.

File-system events (inotify, through watchdog) say that something changed; a periodic rescan
(`RAG_WATCH_RESCAN_S`) catches what no event announced (a network share does not tell about other hosts'
writes). Events are debounced and batched: a burst of thousands of files is one run. Before a batch runs,
the changed files must have settled (the same size and modification time for `RAG_WATCH_SETTLE_S`), so a
file still being written is not read half-written.

Each batch is a normal incremental run (`run_ingest` over the watched folders, the embedder loaded once):
unchanged files are skipped by size and modification time, a moved or renamed file keeps its stored
vectors (content hash), and the run publishes at its end, at once. The writer lock is taken per batch and
released between them, so an admin's job from the page or the API waits its turn (`RAG_LOCK_TIMEOUT_S`)
instead of being refused. A watcher killed at any point leaves the last published version, like any run.

`watch.json` in the index folder says what the watcher does (`rag status`, the page's Documents view):
since when it watches what, the last change seen, the last publish, the lag between them, errors.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rag.files import atomic_write, process_alive
from rag.index import IndexBusyError

if TYPE_CHECKING:
    from ingest.job import IngestSummary
    from rag.settings import IngestSettings

log = logging.getLogger(__name__)
STATE_FILE = "watch.json"
QUIET_S = 0.3  # a batch starts once no event came for this long (a burst of copies ends first)
MAX_SETTLE_S = 60.0  # a file written for longer than this is read as it is then (the next event reads it again)
BUSY_RETRY_S = 2.0


@dataclass
class WatchState:
    """What a watcher is doing, as `rag status` shows it."""

    pid: int
    host: str
    roots: list[str]
    since: float
    last_change: float | None = None  # when the newest change was seen (an event, or found by a rescan)
    last_published: float | None = None  # when the newest batch was published
    version: int = 0
    lag_s: float | None = None  # from the last batch's first change seen to its publish
    batches: int = 0
    files_indexed: int = 0
    files_removed: int = 0
    errors: int = 0
    last_error: str = ""
    rescans: int = 0
    events: int = 0

    def write(self, index_dir: Path) -> None:
        atomic_write(index_dir / STATE_FILE, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def read(cls, index_dir: Path) -> WatchState | None:
        try:
            return cls(**json.loads((index_dir / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        """Whether the watcher process still runs (on this host; another host's is taken as running)."""
        return process_alive(self.pid, self.host)

    def fields(self) -> dict[str, object]:
        return {**asdict(self), "running": self.alive}

    def describe(self) -> str:
        """One line: running or stopped, since when, what it last saw and published, its errors."""
        def when(t: float | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "never"

        lag = f" ({self.lag_s:.1f} s after the change)" if self.lag_s is not None else ""
        errors = f"; {self.errors} errors, the last: {self.last_error}" if self.errors else ""
        return (f"watcher: {'running' if self.alive else 'stopped'} (pid {self.pid} on {self.host}), watching "
                f"{', '.join(self.roots)} since {when(self.since)}; last change seen {when(self.last_change)}, "
                f"last published {when(self.last_published)}{lag}, version {self.version}, {self.batches} "
                f"batches{errors}")


@dataclass
class Changes:
    """Paths events named since the last batch, and when the first and the newest came (thread-safe)."""

    ignore: tuple[str, ...] = ()  # folders whose events are ours (the index, when it lies in a watched folder)
    paths: set[str] = field(default_factory=set)
    first: float | None = None
    newest: float | None = None
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Event = field(default_factory=threading.Event)

    def add(self, *paths: str) -> None:
        kept = [p for p in paths if p and not any(p == i or p.startswith(i + os.sep) for i in self.ignore)]
        if not kept:
            return
        now = time.time()
        with self._lock:
            self.paths.update(kept)
            self.first = self.first or now
            self.newest = now
            self.count += 1
        self._arrived.set()

    def wait(self, timeout: float) -> bool:
        """Until an event arrives (True) or `timeout` passes (False)."""
        return self._arrived.wait(timeout)

    def take(self) -> tuple[set[str], float | None, int]:
        with self._lock:
            out = (self.paths, self.first, self.count)
            self.paths, self.first, self.count = set(), None, 0
            self._arrived.clear()
        return out


def _signature(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def settle(paths: set[str], settle_s: float, stop: threading.Event, max_s: float = MAX_SETTLE_S) -> None:
    """Return once each path's size and modification time held for `settle_s` (a gone path has settled),
    or after `max_s`, or when `stop` is set."""
    if settle_s <= 0 or not paths:
        return
    deadline = time.monotonic() + max_s
    last = {p: _signature(p) for p in paths}
    while not stop.wait(settle_s):
        now = {p: _signature(p) for p in last}
        if now == last or time.monotonic() > deadline:
            return
        last = {p: now[p] for p in last if now[p] != last[p]}  # only the ones still moving are watched on


class Watcher:
    """Watches `roots` and runs `run_ingest` per batch of changes (see the module's description)."""

    def __init__(self, ingest: IngestSettings, index_dir: Path, roots: list[Path],
                 run: Callable[[list[Path]], IngestSummary], *,
                 on_summary: Callable[[IngestSummary], None] | None = None) -> None:
        """`run`: one incremental run over the roots (`run_ingest` with the embedder loaded once)."""
        from ingest.walk import resolve_roots

        self.ingest = ingest
        self.index_dir = index_dir
        self.roots = resolve_roots(roots)
        self.run_ingest = run
        self.on_summary = on_summary
        self.changes = Changes(ignore=(os.path.realpath(index_dir),))
        self.state = WatchState(os.getpid(), socket.gethostname(), [str(r) for r in self.roots], time.time())

    def _run_batch(self, first_change: float | None) -> None:
        try:
            summary = self.run_ingest(list(self.roots))
        except IndexBusyError as exc:  # another writer past the lock's wait: the changes are taken again
            self._failed(str(exc), logging.WARNING, "%s")
            raise
        except Exception as exc:  # a failed batch is reported; the next change or rescan runs again
            self._failed(f"{type(exc).__name__}: {exc}", logging.ERROR, "watch batch failed: %s")
            return
        now = time.time()
        self.state.batches += 1
        self.state.version = summary.version
        self.state.files_indexed += summary.files_indexed
        self.state.files_removed += summary.files_removed
        if summary.files_indexed or summary.files_removed or summary.chunks_removed or summary.permissions_changed:
            self.state.last_published = now
            self.state.last_change = max(self.state.last_change or 0, first_change or now)
            if first_change is not None:
                self.state.lag_s = round(now - first_change, 3)
        self.state.write(self.index_dir)
        if self.on_summary is not None:
            self.on_summary(summary)

    def _failed(self, error: str, level: int, message: str) -> None:
        """Count a failed batch and say why, in watch.json and (as `message`) in the log."""
        self.state.errors += 1
        self.state.last_error = error
        log.log(level, message, error)
        self.state.write(self.index_dir)

    def run(self, stop: threading.Event) -> None:
        """Watch until `stop` is set: a first run over the folders, then a batch per burst of events and a
        rescan every `watch_rescan_s`."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        changes = self.changes

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return  # reads (ours included) change nothing
                changes.add(os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or ""))

        observer = Observer()
        for root in self.roots:
            observer.schedule(Handler(), str(root), recursive=True)
        observer.start()  # before the first run: a change made during it is caught by the next batch
        ingest = self.ingest
        try:
            while not stop.is_set():  # the first run: until it gets the writer lock
                try:
                    self._run_batch(None)
                    break
                except IndexBusyError:
                    stop.wait(BUSY_RETRY_S)
            next_rescan = time.monotonic() + ingest.watch_rescan_s
            while not stop.is_set():
                arrived = changes.wait(min(1.0, max(0.0, next_rescan - time.monotonic())))
                if stop.is_set():
                    break
                if arrived:
                    while not stop.is_set() and changes.newest and time.time() - changes.newest < QUIET_S:
                        stop.wait(QUIET_S / 3)
                    paths, first, count = changes.take()
                    self.state.events += count
                    settle(paths, ingest.watch_settle_s, stop)
                elif time.monotonic() >= next_rescan:
                    paths, first = set(), None
                    self.state.rescans += 1
                    next_rescan = time.monotonic() + ingest.watch_rescan_s
                else:
                    continue
                try:
                    self._run_batch(first)
                except IndexBusyError:
                    changes.add(*(paths or {str(r) for r in self.roots}))  # run again once the writer is free
                    stop.wait(BUSY_RETRY_S)
        finally:
            observer.stop()
            observer.join(5)
