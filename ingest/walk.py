"""Walking document folders safely: regular files only, never outside the given roots."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.settings import SUPPORTED_EXTENSIONS

# Folders that hold no documents of the organization's own: OS, sync and tool clutter.
SYSTEM_DIRS = frozenset({
    "$recycle.bin", "system volume information", "lost+found", "__pycache__", "node_modules",
    "~snapshot", "#recycle", "@eadir", "__macosx",
})


@dataclass(frozen=True)
class FoundFile:
    """An item a source found: a regular file under one of the roots, or a fetched item (a web page) whose
    bytes the source spooled into a file of its own (`spool`, under `root`)."""

    path: str  # str with surrogate escapes: opens any name the file system holds; a fetched item's URL
    size: int
    mtime_ns: int
    root: str = ""  # the (resolved) root it was found under
    dev: int = 0  # identity at scan time: what is parsed must be this very file (open_verified)
    ino: int = 0
    spool: str = ""  # a fetched item: the file holding the bytes fetched (its content hash decides a change)
    kind: str = ""  # a fetched item: the extension its content type maps to (a URL need not end in one)
    source_state: str = ""  # a fetched item: what its source keeps to tell a change next time (ETag, links)

    @property
    def path_key(self) -> bytes:
        return os.fsencode(self.path)

    @property
    def display(self) -> str:
        return display_path(self.path)

    @property
    def extension(self) -> str:
        return self.kind or os.path.splitext(self.path)[1].lower()


@dataclass(frozen=True)
class Skipped:
    """Something under a root that is not indexed, and why."""

    path: str
    reason: str
    is_failure: bool  # reported in files_failed (a link out of the roots, an unreadable folder)


class FileChangedError(OSError):
    """The file at a scanned path is no longer the file the scan saw (swapped for a link or another file)."""


def open_verified(root: str, path: str, dev: int, ino: int) -> int:
    """A read-only descriptor of the regular file the scan saw at `path`, or FileChangedError/OSError.

    Every folder from `root` down and the file itself are opened relative to their parent's descriptor
    with O_NOFOLLOW, so a link swapped in anywhere below the root after the scan (for the file or any
    folder above it) is refused instead of followed; O_NONBLOCK keeps a FIFO swapped in from blocking;
    the device and inode must still be the scanned ones. The caller owns the descriptor.
    """
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    if rel.startswith(os.pardir) or os.path.isabs(rel) or not parts or parts[-1] in ("", ".", os.pardir):
        raise FileChangedError(f"{display_path(path)} is not under {display_path(root)}")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        folder = open_directory_nofollow(root)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileChangedError("a folder on the way to it was replaced by a link after the scan; not read") \
                from exc
        raise
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, flags | os.O_DIRECTORY, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FileChangedError("a folder above it was replaced by a link or a file after the "
                                           "scan; not read") from exc
                raise
            os.close(folder)
            folder = child
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FileChangedError("replaced by a symbolic link after the scan; not read") from exc
            raise
    finally:
        os.close(folder)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        raise FileChangedError("replaced by another file after the scan; not read (indexed at the next run)")
    return fd


def open_directory_nofollow(path: str) -> int:
    """A descriptor of the folder at absolute `path`, every component opened relative to its parent with
    O_NOFOLLOW from "/" down: a link anywhere on the way (not only at its end) is refused (ELOOP)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_DIRECTORY
    folder = os.open("/", flags)
    try:
        for part in [p for p in os.path.abspath(path).split(os.sep) if p]:
            child = os.open(part, flags, dir_fd=folder)
            os.close(folder)
            folder = child
    except BaseException:
        os.close(folder)
        raise
    return folder


def display_path(path: str) -> str:
    """A printable, UTF-8-safe form of a path whose name may not be valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("~$") or name.lower() in SYSTEM_DIRS


def resolve_roots(paths: list[Path]) -> list[Path]:
    """Absolute, link-free roots; raises FileNotFoundError for a missing one (bad input fails at start)."""
    roots = []
    for path in paths:
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            raise FileNotFoundError(f"folder {path} not found (or not a folder)")
        roots.append(real)
    return roots


def is_under(path: str, roots: "Sequence[Path | str]") -> bool:
    """Whether `path` is one of `roots` or below one (paths, or URLs given as strings)."""
    return any(path == str(r) or path.startswith(str(r).rstrip("/") + "/") for r in roots)


def walk(roots: list[Path]) -> Iterator[FoundFile | Skipped]:
    """Every regular file under `roots` (sorted, depth first); links are never followed.

    A symbolic link whose target lies inside the roots is skipped quietly, because the target is
    indexed under its own path; one that points outside is reported. Not following links also means
    no link loop can trap the walk.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        stack = [str(root)]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder, follow_symlinks=False)
                if (st.st_dev, st.st_ino) in seen_dirs:  # nested or repeated roots
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                yield Skipped(folder, f"folder not readable: {exc.strerror or exc}", True)
                continue
            subdirs = []
            for entry in entries:
                if _is_hidden(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    yield Skipped(entry.path, f"cannot stat: {exc.strerror or exc}", True)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    target = os.path.realpath(entry.path)
                    if not is_under(target, roots):
                        yield Skipped(entry.path, "symbolic link points outside the indexed folders", True)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    found = FoundFile(entry.path, st.st_size, st.st_mtime_ns, str(root), st.st_dev, st.st_ino)
                    if found.extension in SUPPORTED_EXTENSIONS:
                        yield found
                    else:
                        yield Skipped(entry.path, f"unsupported type {found.extension or '(none)'}", False)
                # sockets, FIFOs and devices are not documents: reading a FIFO would block forever
            stack.extend(reversed(subdirs))
