"""Files written so that a crash or a concurrent writer never leaves a reader with part of one."""

from __future__ import annotations

import os
import stat
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


def read_private_file(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a file holding credentials (`what`: "secrets file", ...); ValueError (one line, what to do)
    when it is a link or not a regular file, when another user owns it, when group or others may read it, or
    when it is larger than `max_bytes`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read ({exc.strerror or exc}; a link is refused)") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what} {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise ValueError(f"{what} {path} belongs to another user (uid {st.st_uid}): it must be owned "
                             "by the user the service runs as")
        if st.st_mode & 0o077:
            raise ValueError(f"{what} {path} may be read by others (mode {stat.S_IMODE(st.st_mode):o}): "
                             f"run chmod 600 {path}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {path} is larger than {max_bytes} bytes")
    return data
