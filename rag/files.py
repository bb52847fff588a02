"""Files written so that a crash or a concurrent writer never leaves a reader with part of one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Make a file's bytes durable, or, for a folder, a rename or a new file in it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_path


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) if needed and make it the owner's alone (0700): it holds document
    text, vectors or questions, whatever umask the process was started with."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temporary file beside `path`, which is made the owner's alone, fsync'd and renamed
    over `path`, and the folder fsync'd: readers see the old file or the new one, never part of one."""
    # per process: services converting a model into one shared cache at once must not share a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), 0o600)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """`data` as the new content of `path` (see `atomic_replace`)."""

    def write(tmp: Path) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "wb") as f:
            f.write(data)

    atomic_replace(path, write)


def process_alive(pid: int, host: str) -> bool:
    """Whether process `pid` of machine `host` still runs (another machine's, on a shared folder, is taken
    as running: its file is trusted)."""
    import socket

    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
