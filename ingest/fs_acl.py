"""Who may read a file, from its permissions as the kernel enforces them (`RAG_ACL_SOURCE=filesystem`).

A user may read a file when they may search (x) every folder from the file-system root down to the file's
folder and read (r) the file, each decided by POSIX's first-match rules on that object: the owner's entry
if the user owns it (an owner without r is refused, whatever the group or others may do), else a named-user
ACL entry, else the owning group and named-group ACL entries (any that grants, masked by the ACL mask),
else the "other" entry. The rules are applied to each object's own mode bits and POSIX ACL (the
`system.posix_acl_access` attribute), never following a link, whatever folder a run was given.

Readers are expanded per known user, not stored as an expression of groups: for every account the system's
user database knows (NSS: /etc/passwd, sssd, winbind), with the groups NSS gives it, the rules are evaluated
and the file's readers are `user:<name>` for each account that may read it, plus `unix-other` when someone
who is none of them (POSIX's "other") may. The search filter stays what it is (a document is shown when
one of its readers is one of the asker's), and it is exact: an AND across the parent folders, an owner
refused despite a readable group, a mask that limits a named entry all come out right per user, which an
OR of groups cannot express. The cost is one evaluation per user and file (folders are cached) and that
an account added to NSS reads nothing until the next run (or the watcher's rescan): closed, never open.

A signed-in user is matched to an account by name (`rag.types.Principal.signed_in`): an account gets its
`user:` token, anyone else counts as "other". Root is no reader here: admins see every document anyway.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.types import EVERYONE, UNIX_OTHER, USER_READER

ACL_XATTR = "system.posix_acl_access"
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
READ, SEARCH = 4, 1


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gids: frozenset[int]

    @property
    def group_names(self) -> frozenset[str]:
        """The names NSS gives this account's groups."""
        import grp

        names = set()
        for gid in self.gids:
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
        return frozenset(names)


NOBODY_ELSE = Account("", -1, frozenset())  # POSIX's "other": owns nothing, in no group


@dataclass(frozen=True)
class Permissions:
    """One object's owner, group, mode bits and POSIX ACL entries ((tag, id, perm); empty: none)."""

    uid: int
    gid: int
    mode: int
    acl: tuple[tuple[int, int, int], ...] = ()

    def allows(self, who: Account, want: int) -> bool:
        """Whether `who` gets the `want` bit (READ or SEARCH), by POSIX's first-match rules."""
        if who.uid == self.uid:
            return bool((self.mode >> 6) & want)
        if not self.acl:
            if self.gid in who.gids:
                return bool((self.mode >> 3) & want)
            return bool(self.mode & want)
        mask = next((perm for tag, _, perm in self.acl if tag == MASK), 7)
        named = next((perm for tag, ident, perm in self.acl if tag == USER and ident == who.uid), None)
        if named is not None:
            return bool(named & mask & want)
        groups = [perm for tag, ident, perm in self.acl
                  if (tag == GROUP_OBJ and self.gid in who.gids) or (tag == GROUP and ident in who.gids)]
        if groups:
            return any(perm & mask & want for perm in groups)
        return bool(next((perm for tag, _, perm in self.acl if tag == OTHER), 0) & want)


def parse_acl_xattr(data: bytes) -> tuple[tuple[int, int, int], ...]:
    """The entries (tag, id, perm) of a `system.posix_acl_access` value (version 2, 8 bytes an entry)."""
    if len(data) < 4 or (len(data) - 4) % 8 or struct.unpack_from("<I", data)[0] != 2:
        raise ValueError("not a POSIX ACL (version 2)")
    return tuple((tag, ident, perm & 7) for tag, perm, ident in struct.iter_unpack("<HHI", data[4:]))


def permissions(path: str) -> Permissions:
    """`path`'s owner, mode and ACL, the link itself if it is one (OSError when it cannot be read)."""
    info = os.lstat(path)
    try:
        acl = parse_acl_xattr(os.getxattr(path, ACL_XATTR, follow_symlinks=False))
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        acl = ()
    return Permissions(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode), acl)


def known_accounts() -> list[Account]:
    """Every account NSS lists but root, with the groups NSS gives it."""
    out = []
    for entry in pwd.getpwall():
        if entry.pw_uid == 0:
            continue
        try:
            gids = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        except OSError:
            gids = frozenset({entry.pw_gid})
        out.append(Account(entry.pw_name, entry.pw_uid, gids))
    return out


def synthetic_permissions(path: Path, mountinfo: str | None = None) -> str:
    """Why the permission bits under `path` do not say who may read (a cifs mount without `cifsacl`, where
    every file shows the mount's file_mode; FUSE without `default_permissions`, where the kernel does not
    check them), or "" when they do. `mountinfo`: /proc/self/mountinfo's text (read when None)."""
    best, fstype, options = "", "", ""
    try:
        lines = (Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo).splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    for line in lines:
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 6 or len(rest) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype, options = point, rest[0], f"{fields[5]},{rest[2]}"
    opts = set(options.split(","))
    if fstype in ("cifs", "smb3") and "cifsacl" not in opts:
        return (f"{best} is a {fstype} mount without cifsacl: every file shows the mount's file_mode, so its "
                "permissions say nothing about the server's; mount it with cifsacl (and winbind id mapping)")
    if fstype.startswith("fuse") and "default_permissions" not in opts:
        return (f"{best} is a FUSE mount without default_permissions: the kernel does not check its permission "
                "bits; mount it with default_permissions")
    return ""


class FilesystemReaders:
    """Readers (`user:<name>`, `unix-other`) of file paths from their permissions; folders cached per run."""

    def __init__(self, accounts: Iterable[Account] | None = None) -> None:
        self.accounts = [*(known_accounts() if accounts is None else accounts), NOBODY_ELSE]
        self._enterable: dict[str, frozenset[Account]] = {}
        self._members: dict[tuple[str, ...], frozenset[str]] = {}  # per .rag-acl rule: its accounts' readers
        self._problems: dict[str, str] = {}
        self.nobody = 0  # files no known account and nobody else may read (admins only)

    def groups_for(self, path: str) -> tuple[str, ...]:
        """The readers of the file at `path` (empty: admins only)."""
        try:
            who = self._enter(os.path.dirname(path))
            if who:
                own = permissions(path)
                who = frozenset(a for a in who if own.allows(a, READ))
        except OSError as exc:
            self._problems[path] = f"its permissions cannot be read ({exc.strerror or exc}): admins only"
            return ()
        if not who:
            self.nobody += 1
        return tuple(sorted(UNIX_OTHER if a is NOBODY_ELSE else f"{USER_READER}{a.name}" for a in who))

    def problems(self) -> list[tuple[str, str]]:
        return sorted(self._problems.items())

    def readers_within(self, path: str, groups: tuple[str, ...]) -> tuple[str, ...]:
        """The file's readers who are also in one of `groups` (by NSS membership; `everyone` keeps all of
        them, POSIX's other included): `RAG_ACL_SOURCE=both`."""
        readers = self.groups_for(path)
        if EVERYONE in groups:
            return readers
        if groups not in self._members:  # the group database is asked once per rule, not once per file
            wanted = set(groups)
            self._members[groups] = frozenset(f"{USER_READER}{a.name}" for a in self.accounts
                                              if a is not NOBODY_ELSE and a.group_names & wanted)
        kept = tuple(r for r in readers if r in self._members[groups])
        if readers and not kept:
            self.nobody += 1
        return kept

    def _enter(self, folder: str) -> frozenset[Account]:
        """The accounts that may search every folder from / down to `folder`, `folder` included."""
        if folder in self._enterable:
            return self._enterable[folder]
        parent = os.path.dirname(folder)
        above = frozenset(self.accounts) if parent == folder else self._enter(parent)
        if above:
            own = permissions(folder)
            above = frozenset(a for a in above if own.allows(a, SEARCH))
        self._enterable[folder] = above
        return above

