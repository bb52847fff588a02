"""Backups of a running service: the newest published index version and the app database, consistent, taken
while the page and the API serve and an ingest run writes, each file listed with its checksum.

A backup folder holds::

    index/manifest.json         the published version it holds
    index/vectors-000007.faiss  that version's vectors (immutable once published)
    index/chunks.sqlite         the chunk store, by SQLite's online backup API (a consistent snapshot)
    app.sqlite                  the app database (conversations, tokens, feedback, audit), the same way; a
                                PostgreSQL app database as a SQLite copy of one REPEATABLE READ snapshot
    backup.json                 what it holds, and each file's size and sha256; written last

It is written under a hidden temporary name beside the destination and renamed into place only once
complete and synced, so a backup killed at any point leaves no folder under the destination's name, and
`verify` refuses anything without a `backup.json` whose every checksum holds. Restoring copies a verified
backup into an empty or new index folder (and app database path) the same way.

The snapshot is consistent because published vectors files never change and the chunk store keeps every
row a published version needs until the writer opens again after a newer one: the manifest is read first,
its vectors file opened, then the store copied, then the manifest read again; should two versions have
been published meanwhile (the rows of the first could have been collected), it starts over.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.files import atomic_write, file_sha256, fsync_path, process_alive
from rag.keywords import KEYWORDS_DIR, snapshot as keyword_snapshot

log = logging.getLogger(__name__)

BACKUP_FILE = "backup.json"
FORMAT = 1
ATTEMPTS = 5


class BackupError(RuntimeError):
    """A backup cannot be taken, verified or restored; the message says why and what to do."""


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative to the backup folder
    size: int
    sha256: str


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds (`backup.json`)."""

    created: float
    index_version: int
    embedding_model: str
    files: tuple[BackupFile, ...]
    app_db: bool
    format: int = FORMAT
    source: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "BackupManifest":
        try:
            data = json.loads((folder / BACKUP_FILE).read_text(encoding="utf-8"))
            files = tuple(BackupFile(**f) for f in data.pop("files"))
            manifest = cls(files=files, **data)
        except FileNotFoundError:
            raise BackupError(f"{folder} is not a backup (no {BACKUP_FILE}): it may be one that was interrupted; "
                              "take a new one with `rag backup`") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{folder / BACKUP_FILE} cannot be read ({exc}): take a new backup") from None
        if manifest.format != FORMAT:
            raise BackupError(f"{folder} is a backup of format {manifest.format}; this release reads {FORMAT}")
        return manifest


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database that others may be writing (the online backup API, a few
    hundred pages at a time so writers are not held up), synced to disk."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=1024, sleep=0.01)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file; a reader turns WAL back on
        dst.commit()
    finally:
        dst.close()
        src.close()
    os.chmod(target, 0o600)
    fsync_path(target)


def _partial_name(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.partial-{socket.gethostname()}-{os.getpid()}"


def clear_stale_partials(dest: Path) -> None:
    """Temporary folders of backups or restores to `dest` that were killed (their process is gone)."""
    for path in dest.parent.glob(f".{dest.name}.partial-*"):
        host, _, pid = path.name.split(".partial-", 1)[-1].rpartition("-")
        if pid.isdigit() and not process_alive(int(pid), host):
            shutil.rmtree(path, ignore_errors=True)


def _empty_destination(dest: Path, what: str) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not empty: give a new folder for the {what}")


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished temporary folder to `dest` (an empty `dest` is replaced), synced."""
    if dest.exists():
        dest.rmdir()
    os.rename(tmp, dest)
    fsync_path(dest.parent)


def snapshot_index(index_dir: Path, target: Path) -> dict[str, object]:
    """Copy the newest published version of `index_dir` into `target`; its manifest's fields."""
    from rag.index import MANIFEST
    from rag.store import DB_NAME

    for _ in range(ATTEMPTS):
        try:
            published = json.loads((index_dir / MANIFEST).read_text())
        except FileNotFoundError:
            raise BackupError(f"{index_dir} has no published index version: nothing to back up") from None
        try:
            vectors = open(index_dir / published["vectors_file"], "rb")  # kept readable even if removed now
        except FileNotFoundError:
            continue  # a newer version was published and this one cleaned up: read the manifest again
        with vectors:
            with open(target / published["vectors_file"], "wb") as out:
                shutil.copyfileobj(vectors, out, 1 << 20)
        sqlite_copy(index_dir / DB_NAME, target / DB_NAME)
        # after the chunk store: the keyword copy's commit then covers at least what the copied store says
        try:
            keyword_snapshot(index_dir, target)
        except OSError as exc:  # the copy's readers use FTS5 until a writer rebuilds it
            log.warning("the keyword index was not copied (%s): searches of the copy use FTS5", exc)
            shutil.rmtree(target / KEYWORDS_DIR, ignore_errors=True)
        now = json.loads((index_dir / MANIFEST).read_text())
        if now["version"] <= published["version"] + 1:  # its rows cannot have been collected
            atomic_write(target / MANIFEST, json.dumps(published, indent=1).encode())
            fsync_path(target / published["vectors_file"])
            return published
        for path in target.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    raise BackupError(f"{index_dir} published new versions faster than it could be copied ({ATTEMPTS} tries): "
                      "try again when ingest is quieter")


def take_backup(index_dir: Path, app_db: Path | Callable[[Path], None] | None, dest: Path,
                app_db_label: str = "") -> BackupManifest:
    """Back up the newest published version of `index_dir` and the app database into the new folder `dest`.
    `app_db`: its SQLite file, or a function writing a consistent SQLite copy of it at the path it is given
    (a PostgreSQL database's snapshot, named `app_db_label`), or None: none."""
    _empty_destination(dest, "backup")
    dest.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_partials(dest)
    tmp = _partial_name(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "index").mkdir(parents=True, mode=0o700)
    tmp.chmod(0o700)
    try:
        published = snapshot_index(index_dir, tmp / "index")
        if callable(app_db):
            app_db(tmp / "app.sqlite")
            os.chmod(tmp / "app.sqlite", 0o600)
            fsync_path(tmp / "app.sqlite")
        elif app_db is not None:
            if not app_db.is_file():
                raise BackupError(f"the app database {app_db} does not exist: check RAG_APP_DB")
            sqlite_copy(app_db, tmp / "app.sqlite")
        files = tuple(BackupFile(p.relative_to(tmp).as_posix(), p.stat().st_size, file_sha256(p))
                      for p in sorted(tmp.rglob("*")) if p.is_file())
        manifest = BackupManifest(created=time.time(), index_version=int(published["version"]),  # type: ignore[call-overload]
                                  embedding_model=str(published["embedding_model"]), files=files,
                                  app_db=app_db is not None,
                                  source={"index": str(index_dir), "app_db": app_db_label or str(app_db or "")})
        atomic_write(tmp / BACKUP_FILE, json.dumps(asdict(manifest), indent=1).encode())
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def verify(folder: Path) -> BackupManifest:
    """The backup's manifest, once every file it lists is there with its size and checksum, and nothing is
    missing; BackupError saying what is wrong otherwise."""
    manifest = BackupManifest.read(folder)
    for f in manifest.files:
        path = folder / f.path
        if ".." in Path(f.path).parts or Path(f.path).is_absolute():
            raise BackupError(f"{folder / BACKUP_FILE} names a file outside the backup ({f.path}): refused")
        if not path.is_file() or path.stat().st_size != f.size or file_sha256(path) != f.sha256:
            raise BackupError(f"{path} is missing or does not match its checksum: the backup is damaged; use "
                              "another one")
    names = {f.path for f in manifest.files}
    if not {"index/manifest.json", "index/chunks.sqlite"} <= names:
        raise BackupError(f"{folder} holds no index: take a new backup")
    return manifest


def restore(folder: Path, index_dir: Path, app_db: Path | None) -> BackupManifest:
    """Verify the backup in `folder`, then install its index into the new (or empty) folder `index_dir` and,
    when it holds one and `app_db` is given, its app database at the new path `app_db`."""
    manifest = verify(folder)
    _empty_destination(index_dir, "restored index")
    if app_db is not None and manifest.app_db and app_db.exists():
        raise BackupError(f"{app_db} exists: give a new path for the restored app database (RAG_APP_DB)")
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_partials(index_dir)
    tmp = _partial_name(index_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        for f in manifest.files:
            if f.path.startswith("index/"):
                target = tmp / f.path.removeprefix("index/")
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the keyword index's folder
                shutil.copyfile(folder / f.path, target)
                os.chmod(target, 0o600)
                fsync_path(target)
        with sqlite3.connect(tmp / "chunks.sqlite") as conn:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the backup's chunk store fails SQLite's check ({check}): use another backup")
        if app_db is not None and manifest.app_db:
            app_db.parent.mkdir(parents=True, exist_ok=True)
            partial = _partial_name(app_db)
            shutil.copyfile(folder / "app.sqlite", partial)
            os.chmod(partial, 0o600)
            fsync_path(partial)
            os.rename(partial, app_db)
        _publish(tmp, index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
