"""Sandboxed parser processes: read, hash, parse and chunk one file at a time.

Each worker is a fresh interpreter (no torch, no inherited state, a scrubbed environment) confined by
ingest/sandbox.py (no network, no writable path, reads only of its code and model, resource limits),
fed tasks as JSON lines on stdin and answering JSON lines on stdout. It never opens a document by
path: the parent opens the file the scan saw (`open_verified`: no link followed, same device and
inode) and hands the worker that descriptor over a Unix socket, so a file swapped for a link between
the scan and the parse is refused, not read. The parent enforces a wall-clock limit per file and
replaces a worker that overran, crashed or ran out of memory, so one hostile file costs at most its
time limit and never stops the job. JSON, not pickle, crosses the pipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.sandbox import SandboxReport, confine, limit_resources, scrubbed_environment
from ingest.walk import FileChangedError, FoundFile, open_verified
from rag.types import OcrPageInput

if TYPE_CHECKING:
    from ingest.ocr import OcrPage
    from ingest.parsers import OcrOptions

log = logging.getLogger(__name__)
# CPU seconds a worker may use in all before it is retired and replaced (a backstop to the wall clock)
CPU_BUDGET_FACTOR = 20
# How long the pool waits for a result before telling its caller it is waiting (`map_unordered`)
IDLE_S = 2.0


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to know, sent as its first line."""

    model_folder: str
    chunk_tokens: int
    overlap_tokens: int
    max_tokens: int
    max_file_bytes: int
    memory_bytes: int
    zip_max_uncompressed: int
    zip_max_ratio: float
    # OCR, as the parent chose it (ingest.ocr.choose_ocr): the worker loads that engine and nothing else
    ocr_engine: str = "none"
    ocr_languages: str = "eng"
    ocr_tessdata_dir: str = ""
    ocr_off_reason: str = "OCR is off"
    ocr_dpi: int = 200
    ocr_page_timeout_s: float = 30.0
    ocr_file_timeout_s: float = 1800.0
    ocr_max_pixels: int = 80_000_000


@dataclass(frozen=True)
class Task:
    """Parse the file the scan found at `path` (under `root`, with that device and inode; for a fetched
    item, the file `spool` its source wrote the bytes to) unless its content hash equals `known_hash`."""

    path: str
    extension: str
    known_hash: str | None = None
    root: str = ""
    dev: int = 0
    ino: int = 0
    spool: str = ""

    @classmethod
    def of(cls, found: FoundFile, known_hash: str | None = None) -> "Task":
        return cls(found.path, found.extension, known_hash, found.root, found.dev, found.ino, found.spool)

    def open(self) -> int:
        """The verified descriptor of the scanned (or spooled) file (see `open_verified`)."""
        return open_verified(self.root, self.spool or self.path, self.dev, self.ino)


@dataclass
class Outcome:
    """A worker's answer for one task."""

    ok: bool
    error: str = ""
    unchanged: bool = False
    skipped: str = ""  # why a file read without fault is not indexed (ParsedDocument.nothing_to_index)
    content_hash: str = ""
    title: str = ""
    chunks: list[tuple[str, int | None, str]] = field(default_factory=list)  # (text, page, heading path)
    cpu_s: float = 0.0  # the worker's CPU time so far
    ocr_pages: list[OcrPageInput] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # parts not read (an OCR page over its time limit)
    parser_version: int = 0  # ingest.parsers.PARSER_VERSION of the worker that parsed it

    @classmethod
    def from_json(cls, line: str) -> "Outcome":
        data = json.loads(line)
        data["chunks"] = [tuple(c) for c in data.get("chunks", [])]
        data["ocr_pages"] = [OcrPageInput.from_json(p) for p in data.get("ocr_pages", [])]
        return cls(**data)


def cpu_budget(timeout_s: float, config: WorkerConfig | None = None) -> int:
    """CPU seconds a worker may use in all: many files at their time limit, never one parse unbounded
    (with OCR, at least one scanned file at its own, longer limit)."""
    budget = max(600.0, CPU_BUDGET_FACTOR * timeout_s)
    if config is not None and config.ocr_engine != "none":
        budget = max(budget, 2 * config.ocr_file_timeout_s)
    return int(budget)


def file_deadline(timeout_s: float, config: WorkerConfig) -> float:
    """The longest a file may take: the parse limit, or for OCR'd files the OCR file limit (each page read
    extends the parse limit, see `_Worker.run`)."""
    return max(timeout_s, config.ocr_file_timeout_s) if config.ocr_engine != "none" else timeout_s


# -- the worker process ------------------------------------------------------------------------------
def _ocr_record(page: int, engine: str, result: "OcrPage") -> OcrPageInput:
    words = tuple((round(w.box[0], 4), round(w.box[1], 4), round(w.box[2], 4), round(w.box[3], 4), w.text)
                  for w in result.words)
    return OcrPageInput(page, engine, round(result.confidence, 4), round(result.seconds, 3), words)


def _handle(task: Task, config: WorkerConfig, chunker: object, fd: int, ocr: OcrOptions) -> Outcome:
    from ingest.parsers import PARSER_VERSION, Limits, ParseError, ParseOptions, parser_for

    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(config.max_file_bytes + 1)
    except OSError as exc:
        return Outcome(False, f"cannot read: {exc.strerror or exc}")
    if len(data) > config.max_file_bytes:
        return Outcome(False, f"file larger than the {config.max_file_bytes // 2**20} MiB limit")
    digest = hashlib.sha256(data).hexdigest()
    if digest == task.known_hash:
        return Outcome(True, unchanged=True, content_hash=digest)
    limits = Limits(zip_max_uncompressed=config.zip_max_uncompressed, zip_max_ratio=config.zip_max_ratio)
    ocr_pages: list[OcrPageInput] = []
    warnings: list[str] = []
    try:
        parsed = parser_for(task.extension)(data, task.path, ParseOptions(limits, ocr))
        del data
        chunks = [(p.text, p.page, p.section) for p in chunker.split_units(parsed.units)]  # type: ignore[attr-defined]
        for unit in parsed.units:
            if unit.warning:
                warnings.append(unit.warning)
            if unit.ocr is not None and unit.page is not None and ocr.engine is not None:
                ocr_pages.append(_ocr_record(unit.page, ocr.engine.name, unit.ocr))
    except ParseError as exc:
        return Outcome(False, str(exc), content_hash=digest)
    except MemoryError:
        return Outcome(False, f"needs more than the {config.memory_bytes // 2**20} MiB parse memory limit",
                       content_hash=digest)
    except RecursionError:
        return Outcome(False, "structure nested too deeply", content_hash=digest)
    if not chunks:
        if parsed.nothing_to_index:
            return Outcome(True, skipped=parsed.nothing_to_index, content_hash=digest, parser_version=PARSER_VERSION)
        if warnings:
            return Outcome(False, "no text read: " + "; ".join(warnings[:3]), content_hash=digest)
        if ocr_pages:
            return Outcome(False, "OCR found no text (a blank page or a picture)", content_hash=digest)
        return Outcome(False, "no extractable text (empty)", content_hash=digest)
    title = " ".join(parsed.title.split())[:300]
    return Outcome(True, content_hash=digest, title=title, chunks=chunks, ocr_pages=ocr_pages, warnings=warnings,
                   parser_version=PARSER_VERSION)


def _receive_fd(channel: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(channel, 1, 1)
    if not fds:
        raise EOFError("the parent closed the descriptor channel")
    return fds[0]


def worker_main() -> None:
    """Entry point of a worker process (``python -m ingest.worker FD``, FD: the descriptor channel)."""
    channel = socket.socket(fileno=int(sys.argv[1]))
    first = json.loads(sys.stdin.readline())
    config, cpu_seconds = WorkerConfig(**first["config"]), int(first["cpu_seconds"])
    # first: one thread so far, so every later thread is held too
    report = confine(config.model_folder, [config.ocr_tessdata_dir] if config.ocr_tessdata_dir else [])
    from ingest.chunking import Chunker
    from ingest.ocr import OcrChoice, make_ocr, warm_up
    from ingest.parsers import OcrOptions

    chunker = Chunker(Path(config.model_folder), config.chunk_tokens, config.overlap_tokens, config.max_tokens)
    chunker.split("warm up")  # the tokenizer starts its threads before the process limit below
    engine = make_ocr(OcrChoice(config.ocr_engine, config.ocr_languages, config.ocr_tessdata_dir),
                      config.ocr_page_timeout_s)
    if engine is not None:
        warm_up(engine)  # so do the OCR libraries
    limit_resources(config.memory_bytes, cpu_seconds)
    out = sys.stdout

    def progress(done: int, total: int) -> None:
        out.write(json.dumps({"progress": [done, total]}) + "\n")
        out.flush()

    ocr = OcrOptions(engine, config.ocr_off_reason, config.ocr_dpi, config.ocr_max_pixels, progress=progress)
    out.write(json.dumps({"ready": True, "sandbox": asdict(report)}) + "\n")
    out.flush()
    for line in sys.stdin:
        task = Task(**json.loads(line))
        fd = _receive_fd(channel)
        try:
            outcome = _handle(task, config, chunker, fd, ocr)
        except Exception as exc:  # a parser bug: reported for this file, the worker lives on
            outcome = Outcome(False, f"parser error {type(exc).__name__}: {exc}"[:500])
        usage = resource.getrusage(resource.RUSAGE_SELF)
        outcome.cpu_s = usage.ru_utime + usage.ru_stime
        out.write(json.dumps(asdict(outcome)) + "\n")
        out.flush()


# -- the parent side ---------------------------------------------------------------------------------
class _Worker:
    """One worker subprocess with a line reader that honours deadlines."""

    def __init__(self, config: WorkerConfig, start_timeout: float, cpu_seconds: int) -> None:
        self.config = config
        self.channel, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest.worker", str(child.fileno())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=scrubbed_environment(sys.path),
                close_fds=True, pass_fds=(child.fileno(),), cwd="/",
            )
        finally:
            child.close()
        self.cpu_seconds = cpu_seconds
        self.cpu_used = 0.0
        self._buffer = b""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"config": asdict(config), "cpu_seconds": cpu_seconds}) + "\n").encode())
        self.proc.stdin.flush()
        ready = self.read_line(start_timeout)
        if ready is None:
            code = self.stop()
            raise RuntimeError(f"parser process failed to start (exit code {code})")
        self.sandbox = SandboxReport(**json.loads(ready).get("sandbox", {}))

    def read_line(self, timeout: float) -> str | None:
        """The next line, or None on timeout or exit."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            data = os.read(fd, 1 << 20)
            if not data:
                return None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def run(self, task: Task, fd: int, timeout: float,
            progress: Callable[[Task, int, int], None] | None = None) -> Outcome | None:
        """The outcome for the file open at `fd` (closed here), or None if the worker overran or died
        (the caller replaces it). A file gets `timeout`; each OCR'd page the worker reports gives it
        `timeout` plus the page limit again, up to the OCR file limit."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(asdict(task)) + "\n").encode())
            self.proc.stdin.flush()
            socket.send_fds(self.channel, [b"f"], [fd])
        except (BrokenPipeError, ConnectionError):
            return None
        finally:
            os.close(fd)
        started = time.monotonic()
        deadline, last = started + timeout, started + file_deadline(timeout, self.config)
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            if line.startswith('{"progress"'):
                done, total = json.loads(line)["progress"]
                deadline = min(last, time.monotonic() + timeout + self.config.ocr_page_timeout_s)
                if progress is not None:
                    progress(task, done, total)
                continue
            outcome = Outcome.from_json(line)
            self.cpu_used = outcome.cpu_s
            return outcome

    def spent(self, timeout: float) -> bool:
        """Too little CPU budget left for another file at its time limit: replace before the next."""
        return self.cpu_used + timeout >= self.cpu_seconds

    def stop(self) -> int | None:
        self.channel.close()
        self.proc.kill()
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill that did not land
            return None


class ParserPool:
    """N worker processes; `map_unordered` yields (task, outcome) as files finish."""

    def __init__(self, config: WorkerConfig, workers: int, timeout_s: float) -> None:
        self.config = config
        self.workers = workers
        self.timeout_s = timeout_s

    def _new_worker(self) -> _Worker:
        worker = _Worker(self.config, start_timeout=max(60.0, self.timeout_s),
                         cpu_seconds=cpu_budget(self.timeout_s, self.config))
        if worker.sandbox.missing:
            log.warning("parser sandbox incomplete on this host: %s (the other limits still hold; see "
                        "docs/security.md)", "; ".join(worker.sandbox.missing))
        return worker

    def _progress(self, task: Task, done: int, total: int) -> None:
        """A long scan shows in the log as it goes: every 10th page read, and the last."""
        if done % 10 == 0 or done == total:
            log.info("OCR %s: %d pages read (of %d)", task.path, done, total)

    def _serve(self, tasks: "queue.Queue[Task | None]", results: "queue.Queue[tuple[Task, Outcome] | BaseException]") -> None:
        worker: _Worker | None = None
        try:
            while (task := tasks.get()) is not None:
                try:
                    fd = task.open()
                except FileChangedError as exc:
                    results.put((task, Outcome(False, str(exc))))
                    continue
                except OSError as exc:
                    results.put((task, Outcome(False, f"cannot read: {exc.strerror or exc}")))
                    continue
                if worker is not None and worker.spent(self.timeout_s):
                    worker.stop()
                    worker = None
                if worker is None:
                    try:
                        worker = self._new_worker()
                    except BaseException:
                        os.close(fd)
                        raise
                outcome = worker.run(task, fd, self.timeout_s, self._progress)
                if outcome is None:
                    code = worker.proc.poll()
                    worker.stop()
                    worker = None
                    if code is None:
                        reason = f"parsing took longer than {self.timeout_s:g} s"
                        if self.config.ocr_engine != "none":
                            reason += (f" (with {self.config.ocr_page_timeout_s:g} s more per page read by OCR, up "
                                       f"to {file_deadline(self.timeout_s, self.config):g} s)")
                        reason += "; stopped"
                    elif code < 0:
                        reason = f"parser crashed (signal {-code}); likely a malformed or hostile file"
                    else:
                        reason = f"parser ran out of memory or crashed (exit code {code})"
                    outcome = Outcome(False, reason)
                results.put((task, outcome))
        except BaseException as exc:  # surfaced to the consumer, which re-raises it
            results.put(exc)
        finally:
            if worker is not None:
                worker.stop()

    def map_unordered(self, tasks: Iterable[Task],
                      idle_s: float | None = IDLE_S) -> Iterator[tuple[Task, Outcome] | None]:
        """Run every task; yields each (task, outcome) once, in completion order, and None after each
        `idle_s` without one (so the caller can commit what it holds while a long file is parsed; None:
        never)."""
        todo: queue.Queue[Task | None] = queue.Queue()
        count = 0
        for task in tasks:
            todo.put(task)
            count += 1
        if count == 0:
            return
        n = min(self.workers, count)
        for _ in range(n):
            todo.put(None)
        # bounded: parsing runs ahead of embedding by a few files, not by the whole corpus
        results: queue.Queue[tuple[Task, Outcome] | BaseException] = queue.Queue(maxsize=4 * n)
        threads = [threading.Thread(target=self._serve, args=(todo, results), daemon=True) for _ in range(n)]
        for thread in threads:
            thread.start()
        try:
            received = 0
            while received < count:
                try:
                    item = results.get(timeout=idle_s)
                except queue.Empty:
                    yield None
                    continue
                if isinstance(item, BaseException):
                    raise item
                received += 1
                yield item
        finally:
            while True:  # on early exit, drain the queue so the threads stop after their current file
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
            for _ in range(n):
                todo.put(None)


if __name__ == "__main__":
    worker_main()
