"""Walking document folders safely: regular files only, never outside the given roots."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
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
    """A regular file under one of the roots."""

    path: str  # str with surrogate escapes: opens any name the file system holds
    size: int
    mtime_ns: int

    @property
    def path_key(self) -> bytes:
        return os.fsencode(self.path)

    @property
    def display(self) -> str:
        return display_path(self.path)

    @property
    def extension(self) -> str:
        return os.path.splitext(self.path)[1].lower()


@dataclass(frozen=True)
class Skipped:
    """Something under a root that is not indexed, and why."""

    path: str
    reason: str
    is_failure: bool  # reported in files_failed (a link out of the roots, an unreadable folder)


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


def is_under(path: str, roots: list[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)


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
                    found = FoundFile(entry.path, st.st_size, st.st_mtime_ns)
                    if found.extension in SUPPORTED_EXTENSIONS:
                        yield found
                    else:
                        yield Skipped(entry.path, f"unsupported type {found.extension or '(none)'}", False)
                # sockets, FIFOs and devices are not documents: reading a FIFO would block forever
            stack.extend(reversed(subdirs))
