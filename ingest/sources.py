"""Where documents come from: the `Source` seam every kind of source implements, and the factory that picks them.

A source lists its items (`scan`: a `FoundFile` per document, with a stable key, its size and modification time,
or for a fetched item the bytes spooled to a file of its own and the state that tells a change next time),
says which stored documents are its own (`owns`: what it did not find is gone), and who may read each item
(`groups_for`). Everything after the scan is shared: ingest/plan.py decides what changed, the sandboxed
parsers read the bytes, ingest/commit.py embeds and writes, the index publishes a version; so incremental runs,
deletions, permissions and crash safety are the same for a folder and for a web site. The contract every
source passes is tests/test_sources.py.

- `FolderSource`: folders on this machine (ingest/walk.py), readers from `.rag-acl` files, RAG_ACL_ROOTS or the
  file system's permissions (ingest/acl.py).
- `WebSource`: an intranet site crawled over HTTP(S) (ingest/web.py), readers by site or path prefix from the
  sources file.
- `MailSource`: an IMAP mailbox, a maildir or an mbox (ingest/mail.py), readers from the server's mailbox ACL
  or the sources file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ingest.acl import make_readers
from ingest.walk import FoundFile, Skipped, display_path, is_under, resolve_roots, walk
from rag.store import StoredDocument

if TYPE_CHECKING:
    from rag.settings import IngestSettings


class Source(Protocol):
    """What an ingest run asks of a source (see the module's docstring)."""

    kind: str  # "folder" or "web": how `rag sources` lists it
    name: str  # the folders, or the start URL

    def scan(self, known: Mapping[bytes, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        """Every item the source holds now. `known`: the index's live documents (a crawl sends their stored
        validators, so an unchanged page costs a 304)."""
        ...

    def owns(self, key: str) -> bool:
        """Whether a stored document not found by the scan is gone (asked after the scan)."""
        ...

    def groups_for(self, key: str) -> tuple[str, ...]:
        """Who may read the item found at `key` (empty: admins only)."""
        ...

    def problems(self) -> list[tuple[str, str]]:
        """(key, reason) of permission rules that could not be used (their items are admins-only)."""
        ...

    @property
    def nobody(self) -> int:
        """How many items the source found no reader for."""
        ...

    def close(self) -> None:
        """Release what the scan holds (a crawl's spooled pages), after the run."""
        ...


class FolderSource:
    """Folders on this machine: regular files only, no link followed, never outside the roots."""

    kind = "folder"

    def __init__(self, ingest: "IngestSettings", paths: Sequence[Path], within: Sequence[Path] | None = None) -> None:
        self.roots = resolve_roots(list(paths))
        if within is not None:
            allowed = [Path(os.path.realpath(p)) for p in within]
            for root in self.roots:
                if not any(root == a or a in root.parents for a in allowed):
                    raise ValueError(f"{display_path(str(root))} is no longer inside the folders that may be indexed "
                                     "(a folder on the way was replaced by a link?): not indexed")
        self.readers = make_readers(ingest, self.roots)
        self.name = ", ".join(display_path(str(r)) for r in self.roots)

    def scan(self, known: Mapping[bytes, StoredDocument]) -> Iterator[FoundFile | Skipped]:
        return walk(self.roots)

    def owns(self, key: str) -> bool:
        return is_under(key, self.roots)

    def groups_for(self, key: str) -> tuple[str, ...]:
        return self.readers.groups_for(key)

    def problems(self) -> list[tuple[str, str]]:
        return self.readers.problems()

    @property
    def nobody(self) -> int:
        return self.readers.nobody

    def close(self) -> None:
        pass


class Spool:
    """Fetched bytes kept for the run's parsers: a private temporary folder (0700), a file per item, each handed
    to the parser like a scanned file (its device and inode checked); removed by `close`."""

    def __init__(self, prefix: str) -> None:
        self.folder = tempfile.mkdtemp(prefix=prefix)

    def add(self, key: str, data: bytes, kind: str, mtime_ns: int, state: str) -> FoundFile:
        """The item `key` with `data` as its bytes, parsed as `kind` (an extension)."""
        name = os.path.join(self.folder, hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest())
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            st = os.fstat(f.fileno())
        return FoundFile(key, len(data), mtime_ns, self.folder, st.st_dev, st.st_ino, spool=name, kind=kind,
                         source_state=state)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class FetchingSource:
    """What the sources that fetch their items share: a spool per scan, and the count of items nobody reads."""

    _spool: Spool | None = None
    _admins_only = 0

    def new_spool(self, prefix: str) -> Spool:
        """A fresh spool for a scan (the last scan's removed)."""
        self.close()
        self._spool, self._admins_only = Spool(prefix), 0
        return self._spool

    @property
    def spool(self) -> Spool:
        assert self._spool is not None, "scan() makes the spool"
        return self._spool

    def counted(self, groups: tuple[str, ...]) -> tuple[str, ...]:
        """`groups`, counting the item in `nobody` when they are empty (admins only)."""
        if not groups:
            self._admins_only += 1
        return groups

    def problems(self) -> list[tuple[str, str]]:
        return []

    @property
    def nobody(self) -> int:
        return self._admins_only

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def read_sources_table(ingest: "IngestSettings") -> dict:
    """RAG_SOURCES_FILE as a TOML table ({} without one): [[site]] and [[mailbox]] entries."""
    import tomllib

    if ingest.sources_file is None:
        return {}
    try:
        return tomllib.loads(Path(ingest.sources_file).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"sources file {ingest.sources_file} cannot be used: {exc}") from None


def is_url(target: "str | Path") -> bool:
    """Whether a target of `rag ingest` is a web site's address rather than a folder."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in ("http", "https") and "://" in target


def make_sources(ingest: "IngestSettings", targets: Sequence["str | Path | Source"],
                 within: Sequence[Path] | None = None) -> list[Source]:
    """The sources for `rag ingest TARGET...`: one `FolderSource` for the folders given, one `WebSource` per
    site address (configured by its entry in RAG_SOURCES_FILE, credentials from RAG_SECRETS_FILE). Bad input
    fails here, before anything is read: a missing folder, an address that is not a site's, a secrets file
    others may read."""
    from ingest.mail import is_mailbox

    given: list[Source] = [t for t in targets if hasattr(t, "scan")]  # type: ignore[misc]  # sources made by a caller
    targets = [t for t in targets if not hasattr(t, "scan")]
    urls = [str(t) for t in targets if is_url(t)]
    boxes = [str(t) for t in targets if isinstance(t, str) and is_mailbox(t)]
    folders = [Path(t) for t in targets if not is_url(t) and not (isinstance(t, str) and is_mailbox(t))]
    sources: list[Source] = list(given)
    if folders:
        sources.append(FolderSource(ingest, folders, within))
    if (urls or boxes) and within is not None:
        raise ValueError("sites and mailboxes are indexed from the command line or the sources file, not from here")
    if urls:
        from ingest.web import WebSource, load_sites

        sites = load_sites(ingest)
        sources.extend(WebSource.configured(url, sites, ingest) for url in urls)
    if boxes:
        from ingest.mail import MailSource, load_mailboxes

        mailboxes = load_mailboxes(ingest)
        sources.extend(MailSource.configured(box, mailboxes, ingest) for box in boxes)
    return sources
