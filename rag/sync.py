"""A local copy of an index kept in step with its writer's published versions, for readers on another host
(`rag index sync SRC DEST`): SQLite's write-ahead log must not be shared over a network file system, so each
host reads its own copy.

A sync copies the newest published version of SRC (its manifest, its vectors file, and the chunk store by
SQLite's online backup API, as `rag backup` does) into a hidden folder inside DEST, verifies it (the vectors
file's sha256 against the manifest, SQLite's quick check, the chunks visible at that version against the
manifest's count), then installs it: the vectors file and the chunk store are renamed into DEST, the
manifest last. A reader of DEST sees the old version or the new one, never a mix: it re-reads the manifest
at each question and reopens the chunk store when its file was replaced, while views of the old version
keep the file they opened. A sync killed at any point leaves DEST serving its last version; the next one
clears what it left. DEST is a reader's copy: never point a writer (`rag ingest`) at it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.backup import clear_stale_partials, snapshot_index
from rag.files import atomic_write, file_sha256, private_dir
from rag.keywords import KEYWORDS_DIR, install as install_keywords, remove_folder

if TYPE_CHECKING:
    from rag.index import Manifest


class SyncError(RuntimeError):
    """The copy could not be made or did not verify; DEST still serves its previous version."""


@dataclass(frozen=True)
class SyncReport:
    version: int  # the version DEST serves now
    copied: bool  # False: it already served the newest one
    bytes: int = 0


STAGING = "sync"  # the hidden folder a copy is made in: DEST/.sync.partial-HOST-PID


def sync_index(source: Path, dest: Path) -> SyncReport:
    """Bring `dest` to `source`'s newest published version (see the module)."""
    from rag.index import MANIFEST, Manifest, vectors_file_name
    from rag.store import DB_NAME

    published = Manifest.read(source)
    if published is None:
        raise SyncError(f"{source} has no published index version: run `rag ingest` there first")
    current = Manifest.read(dest)
    if dest.is_dir():  # a sync killed after installing its version still left its folder behind
        clear_stale_partials(dest / STAGING)
    if current is not None and current.version >= published.version:
        return SyncReport(current.version, copied=False)
    private_dir(dest)
    staging = dest / f".{STAGING}.partial-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        copied = snapshot_index(source, staging)
        manifest = Manifest(**copied)  # type: ignore[arg-type]
        _verify(staging, manifest)
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        os.replace(staging / manifest.vectors_file, dest / manifest.vectors_file)
        keywords = (staging / KEYWORDS_DIR).is_dir()
        if keywords:  # before the store that names it: readers check that the two agree
            install_keywords(staging / KEYWORDS_DIR, dest)
        os.replace(staging / DB_NAME, dest / DB_NAME)
        if not keywords:  # the source has no keyword copy (any more)
            remove_folder(dest / KEYWORDS_DIR)
        atomic_write(dest / MANIFEST, (staging / MANIFEST).read_bytes())  # the new version is visible now
    except SyncError:
        raise
    except (OSError, sqlite3.Error, ValueError, KeyError) as exc:
        raise SyncError(f"copying {source} into {dest} failed ({exc}); {dest} still serves its last version") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # readers may still hold the previous version's vectors file: keep it, remove older ones
    keep = {vectors_file_name(manifest.version), vectors_file_name(manifest.version - 1)}
    if current is not None:
        keep.add(current.vectors_file)
    for path in dest.glob("vectors-*.faiss"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
    return SyncReport(manifest.version, copied=True, bytes=size)


def _verify(staging: Path, manifest: "Manifest") -> None:
    """The copy holds what its manifest says: the vectors file's checksum (manifests written before it was
    recorded have none), a sound chunk store with as many chunks visible at that version as vectors."""
    from rag.store import DB_NAME

    if manifest.vectors_sha256 and file_sha256(staging / manifest.vectors_file) != manifest.vectors_sha256:
        raise SyncError("the copied vectors file does not match the manifest's checksum; nothing was installed")
    version = manifest.version
    with sqlite3.connect(f"file:{staging / DB_NAME}?mode=ro", uri=True) as conn:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise SyncError(f"the copied chunk store fails SQLite's check ({check}); nothing was installed")
        visible = conn.execute("SELECT count(*) FROM chunks WHERE added_version <= ? AND (removed_version IS NULL "
                               "OR removed_version > ?)", (version, version)).fetchone()[0]
    if visible != manifest.vectors:
        raise SyncError(f"the copied chunk store holds {visible} chunks of version {version}, the manifest "
                        f"{manifest.vectors}; nothing was installed")
