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
from pathlib import Path

from ingest.walk import is_under

log = logging.getLogger(__name__)

ACL_FILE = ".rag-acl"
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
    """Groups for file paths under the ingest roots; each folder's `.rag-acl` is read once per run."""

    def __init__(self, roots: list[Path], configured: dict[Path, list[str]]) -> None:
        self.roots = [str(r) for r in roots]
        # longest first: the most specific configured folder wins
        self.configured = sorted(((str(Path(p).expanduser().resolve()), tuple(sorted(set(g))))
                                  for p, g in configured.items()), key=lambda item: -len(item[0]))
        self._folders: dict[str, tuple[str, ...] | None] = {}

    def groups_for(self, path: str) -> tuple[str, ...]:
        """Who may read the file at `path` (empty: admins only)."""
        from_file = self._from_files(os.path.dirname(path))
        if from_file is not None:
            return from_file
        for folder, groups in self.configured:
            if is_under(path, [Path(folder)]):
                return groups
        return ()

    def _from_files(self, folder: str) -> tuple[str, ...] | None:
        if folder in self._folders:
            return self._folders[folder]
        acl = os.path.join(folder, ACL_FILE)
        result: tuple[str, ...] | None
        if os.path.lexists(acl):
            try:
                result = parse_acl(Path(acl).read_text(encoding="utf-8"), acl)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                # fail closed: a permission file that cannot be read opens nothing
                log.warning("%s cannot be used (%s): its folder is visible to admins only", acl, exc)
                result = ()
        elif folder in self.roots or os.path.dirname(folder) == folder:
            result = None  # nothing above an ingest root is consulted
        else:
            result = self._from_files(os.path.dirname(folder))
        self._folders[folder] = result
        return result
