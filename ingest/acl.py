"""Who may read each document: `.rag-acl` files in the folders, or the groups configured per folder root.

A `.rag-acl` file lists group names (one or more per line, `#` starts a comment) and applies to its
folder and every subfolder, until a deeper `.rag-acl` replaces it. Where no file applies, the longest
matching `acl_roots` entry of the settings does. Where neither does, the document has no known
permission and only admins see it: unknown means closed, never open.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ingest.fs_acl import FilesystemReaders
    from rag.settings import IngestSettings

from rag.text import printable

log = logging.getLogger(__name__)

ACL_FILE = ".rag-acl"
MAX_ACL_BYTES = 64 * 1024
_GROUP = re.compile(r"^[\w.@-]{1,128}$")


def parse_acl(text: str, source: str = ACL_FILE) -> tuple[str, ...]:
    """The sorted, distinct group names in an ACL file's text; a malformed name is an error."""
    groups = set()
    for line in text.splitlines():
        for name in re.split(r"[\s,]+", line.split("#", 1)[0].strip()):
            if not name:
                continue
            if not _GROUP.match(name):
                raise ValueError(f"{source}: {name!r} is not a group name (letters, digits, . _ @ -)")
            groups.add(name)
    return tuple(sorted(groups))


class AclResolver:
    """Groups for file paths; each folder's `.rag-acl` is read once per resolver (one ingest run).

    A document's groups are a function of its real path alone: `.rag-acl` files are looked for in its
    folder and every folder above it up to the file-system root, and the configured roots match on the
    whole path, so the same file gets the same groups whichever folder a run was given (the parent, a
    subfolder, the page's job or the Ray engine). The deepest rule wins: a `.rag-acl` file, or else a
    configured root, in the nearest folder that has one.
    """

    nobody = 0  # a folder without a rule is admins-only by design, not a count of the run's

    def __init__(self, configured: dict[Path, list[str]]) -> None:
        self.configured = {str(Path(p).expanduser().resolve()): tuple(sorted(set(g))) for p, g in configured.items()}
        self._folders: dict[str, tuple[str, ...] | None] = {}
        self._problems: dict[str, str] = {}

    def groups_for(self, path: str) -> tuple[str, ...]:
        """Who may read the file at `path` (empty: admins only)."""
        groups = self._rule(os.path.dirname(path))
        return () if groups is None else groups

    def problems(self) -> list[tuple[str, str]]:
        """(path, reason) of every `.rag-acl` file that could not be used: its folder is admins-only."""
        return sorted(self._problems.items())

    def _rule(self, folder: str) -> tuple[str, ...] | None:
        if folder in self._folders:
            return self._folders[folder]
        result = self._read(os.path.join(folder, ACL_FILE))
        if result is None:
            result = self.configured.get(folder)
        if result is None:
            parent = os.path.dirname(folder)
            result = None if parent == folder else self._rule(parent)
        self._folders[folder] = result
        return result

    def _read(self, acl: str) -> tuple[str, ...] | None:
        """The groups in `acl`, None when there is none, () (closed) when it cannot be used."""
        try:
            st = os.lstat(acl)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._refuse(acl, f"cannot be checked ({exc.strerror or exc})")
        if not stat.S_ISREG(st.st_mode):
            return self._refuse(acl, "is not a regular file (a link, FIFO or device)")
        try:
            # no link followed, no blocking on a FIFO swapped in after the lstat, a bounded read
            fd = os.open(acl, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return self._refuse(acl, "is not a regular file (a link, FIFO or device)")
                data = f.read(MAX_ACL_BYTES + 1)
        except OSError as exc:
            return self._refuse(acl, f"cannot be read ({exc.strerror or exc})")
        if len(data) > MAX_ACL_BYTES:
            return self._refuse(acl, f"is larger than {MAX_ACL_BYTES // 1024} KiB")
        try:
            return parse_acl(data.decode("utf-8"), os.path.basename(acl))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._refuse(acl, f"is not valid ({exc})")

    def _refuse(self, acl: str, reason: str) -> tuple[str, ...]:
        # fail closed: a permission file that cannot be used opens nothing
        message = f"permission file {reason}: its folder is visible to admins only until it is fixed"
        if acl not in self._problems:
            log.warning("%s: %s", printable(acl), message)
        self._problems[acl] = message
        return ()


class Readers(Protocol):
    """Who may read each file of a run: the `groups` rows a document is stored with (the search shows it to a
    principal holding one of them), the files whose permissions could not be used (admins only), and how many
    files the source found no reader for (`files_admins_only`; `.rag-acl` rules do not count theirs)."""

    nobody: int

    def groups_for(self, path: str) -> tuple[str, ...]: ...

    def problems(self) -> list[tuple[str, str]]: ...


def make_readers(ingest: IngestSettings, roots: Sequence[Path]) -> Readers:
    """The readers' source the settings choose (`RAG_ACL_SOURCE`): `files` (.rag-acl files and
    RAG_ACL_ROOTS), `filesystem` (the files' own permissions, ingest/fs_acl.py) or `both` (the accounts in
    both), the last two refused with a one-line
    reason on a mount whose permission bits say nothing (cifs without cifsacl, FUSE without
    default_permissions), where "others may read" would open everything to everyone."""
    if ingest.acl_source in ("filesystem", "both"):
        from ingest.fs_acl import FilesystemReaders, synthetic_permissions

        for root in roots:
            reason = synthetic_permissions(root)
            if reason:
                raise ValueError(f"RAG_ACL_SOURCE={ingest.acl_source} cannot be used here: {reason}")
        if ingest.acl_source == "both":
            return BothReaders(AclResolver(ingest.acl_roots), FilesystemReaders())
        return FilesystemReaders()
    return AclResolver(ingest.acl_roots)


class BothReaders:
    """`RAG_ACL_SOURCE=both`: a file's readers are the accounts its permissions let read it that are also
    members (by NSS) of a group its `.rag-acl` / RAG_ACL_ROOTS rule names; POSIX's other only when the rule
    says `everyone`. No rule, or a broken one: admins only, as in `files`."""

    def __init__(self, files: AclResolver, filesystem: "FilesystemReaders") -> None:
        self.files = files
        self.filesystem = filesystem

    @property
    def nobody(self) -> int:
        return self.filesystem.nobody

    def groups_for(self, path: str) -> tuple[str, ...]:
        groups = self.files.groups_for(path)
        return self.filesystem.readers_within(path, groups) if groups else ()

    def problems(self) -> list[tuple[str, str]]:
        return sorted([*self.files.problems(), *self.filesystem.problems()])
