"""Who is using the page: a users file with bcrypt-hashed passwords, OIDC through Streamlit, or nobody.

The users file uses streamlit-authenticator's layout, so its tooling (and ours, `rag user add`) can
write it:

    credentials:
      usernames:
        alice:
          name: Alice Martin
          password: $2b$12$...        # bcrypt hash, never the password
          roles: [admin]
          groups: [hr, finance]      # for document permissions
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

from rag.settings import ConfigError

ROLES = ("user", "admin")


@dataclass(frozen=True)
class User:
    """A signed-in person and what they may do."""

    username: str
    name: str
    roles: tuple[str, ...] = ("user",)
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


# The single-user mode's user: the only person at the machine, so also its admin.
LOCAL_ADMIN = User("local", "Local user", ("user", "admin"))


@dataclass(frozen=True)
class StoredUser:
    user: User
    password_hash: bytes


def hash_password(password: str) -> str:
    """A bcrypt hash (cost 12) of `password`."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()


def group_list(value: object, what: str) -> tuple[str, ...]:
    """`value` as groups: a list of names. A string is refused, never split into one group per letter."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) and g.strip() for g in value):
        raise ConfigError(f"{what}: groups must be a list of names (e.g. [hr, finance]), got {type(value).__name__} "
                          f"{str(value)[:60]!r}")
    return tuple(g.strip() for g in value)


def oidc_user(claims: "Mapping[str, object]", admin_group: str, now: float) -> User | None:
    """The user an identity provider's claims describe; None once the token's `exp` has passed (sign in
    again, so removed users and changed groups apply); ConfigError for a `groups` claim that is not a list."""
    expires = claims.get("exp")
    if isinstance(expires, (int, float)) and now >= expires:
        return None
    groups = group_list(claims.get("groups"), "the identity provider's groups claim")
    roles = ("user", "admin") if admin_group in groups else ("user",)
    name = str(claims.get("email") or claims.get("sub") or "unknown")
    return User(name, str(claims.get("name") or name), roles, groups)


def load_users(path: Path) -> dict[str, StoredUser]:
    """Read and check the users file; a broken file is a start-up error, never an open door."""
    if not path.is_file():
        raise ConfigError(f"users file {path} not found: create it with `rag user add NAME --users-file {path}`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = data["credentials"]["usernames"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"users file {path} is not valid (expected credentials.usernames.<name>): {exc}") from exc
    users = {}
    for username, entry in (entries or {}).items():
        hashed = str((entry or {}).get("password", ""))
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"users file {path}: the password of {username!r} is not a bcrypt hash: set it "
                              f"with `rag user add {username} --users-file {path}`")
        raw_roles = entry.get("roles") or ["user"]
        if not isinstance(raw_roles, list):  # a string would be one role per letter
            raise ConfigError(f"users file {path}: the roles of {username!r} must be a list (e.g. [admin])")
        roles = tuple(str(r) for r in raw_roles)
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ConfigError(f"users file {path}: {username!r} has unknown roles {sorted(unknown)} (known: {ROLES})")
        groups = group_list(entry.get("groups"), f"users file {path}, user {username!r}")
        users[str(username)] = StoredUser(User(str(username), str(entry.get("name") or username), roles, groups),
                                          hashed.encode())
    if not users:
        raise ConfigError(f"users file {path} has no users: add one with `rag user add NAME --users-file {path}`")
    return users


class UsersFile:
    """The users file as it is now: re-read whenever it changed, so a removed user, a demoted admin or a
    changed group applies at the next request, never after a restart.

    Each `current()` costs one stat(); the file is parsed again only when its identity, size, modification
    or change time moved (an editor's in-place write, `rag user add`'s atomic rename, a restored backup).
    A file that became invalid is an error at every request until it is fixed (fail closed): the last
    good copy is never used, since it may be the one that still lists a removed user."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._users: dict[str, StoredUser] = {}
        self.current()  # a broken file is a start-up error

    def _stat(self) -> tuple[int, ...]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"users file {self.path} cannot be read ({exc.strerror}): restore it, or create "
                              f"it with `rag user add NAME --users-file {self.path}`") from None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def current(self) -> dict[str, StoredUser]:
        """The users the file lists now; ConfigError when it is missing or invalid."""
        stamp = self._stat()  # taken before reading: what is read is at least this new
        with self._lock:
            if stamp != self._stamp:
                self._stamp = None  # a failed read leaves nothing behind to be trusted
                self._users = load_users(self.path)
                self._stamp = stamp
            return self._users


# Checked against when the name is unknown, so a wrong name costs the same time as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(12))


def verify(users: dict[str, StoredUser], username: str, password: str) -> User | None:
    """The user when the password matches, else None (constant work either way)."""
    stored = users.get(username)
    ok = bcrypt.checkpw(password.encode(), stored.password_hash if stored else _DUMMY_HASH)
    return stored.user if stored is not None and ok else None


def add_user(path: Path, username: str, password: str, name: str = "", roles: list[str] | None = None,
             groups: list[str] | None = None) -> None:
    """Add or replace one user in the users file (created if missing), storing only the bcrypt hash."""
    roles = roles or ["user"]
    if set(roles) - set(ROLES):
        raise ValueError(f"unknown roles {roles}: use {ROLES}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    data = data or {}
    usernames = data.setdefault("credentials", {}).setdefault("usernames", {}) or {}
    data["credentials"]["usernames"] = usernames
    usernames[username] = {"name": name or username, "password": hash_password(password), "roles": roles,
                           "groups": groups or []}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    # created private: the hashes are never readable by others, not even for a moment
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "w",
                   encoding="utf-8") as f:
        f.write(yaml.safe_dump(data, sort_keys=True))
    tmp.replace(path)


class ThrottledError(RuntimeError):
    """Too many failed sign-ins for this user name or from this address: wait before the next try."""


class LoginThrottle:
    """Process-wide sign-in throttling, shared by every session of the page.

    Failures are counted per account (the user name, whoever tries it) and per client address, so a script
    opening a new session (a new websocket) per guess gains nothing. After `free` failures each further
    try must wait `base_s * 2**(n - free)` seconds (at most `max_s`), refused at once rather than slept on,
    so no server thread is held. Guessing one account's password slows that account; guessing from one
    address slows that address. An address that is not a client's own (None: unknown, or a reverse proxy
    that did not say whom it forwards) is never throttled: behind a proxy it would be everyone's, and one
    person guessing made-up names would lock every other account out. Failures against many accounts from
    one address (password spraying) are reported to `on_spraying` (the admins' log), once per window.
    At most `concurrent` bcrypt checks run at once: a flood of guesses queues behind them instead of taking
    every core from the people asking questions.
    """

    def __init__(self, free: int = 5, base_s: float = 1.0, max_s: float = 300.0, concurrent: int = 2,
                 clock: "Callable[[], float]" = time.monotonic, spraying_accounts: int = 5,
                 spraying_window_s: float = 600.0, on_spraying: "Callable[[str, int], None] | None" = None) -> None:
        self.free, self.base_s, self.max_s = free, base_s, max_s
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last one)
        self._accounts: dict[str, dict[str, float]] = {}  # address -> {account: time of its last failure}
        self._reported: dict[str, float] = {}  # address -> when spraying from it was last reported
        self.spraying_accounts, self.spraying_window_s = spraying_accounts, spraying_window_s
        self.on_spraying = on_spraying
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(concurrent)

    def _wait(self, key: str, now: float) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free:
            return 0.0
        return max(0.0, last + min(self.max_s, self.base_s * 2 ** (count - self.free)) - now)

    def verify(self, users: dict[str, StoredUser], username: str, password: str, address: str | None) -> User | None:
        """The user when the password matches; None when it does not; ThrottledError while throttled.
        `address`: the client's own address, None when it is not known (see the class)."""
        account = username.lower()
        keys = [f"user:{account}"] + ([f"addr:{address}"] if address else [])
        with self._lock:
            now = self._clock()
            wait = max(self._wait(k, now) for k in keys)
            if wait > 0:
                raise ThrottledError(f"too many failed sign-ins: wait {wait:.0f} s before trying again")
        if not self._checks.acquire(timeout=10):
            raise ThrottledError("the server is busy checking sign-ins: try again in a moment")
        try:
            user = verify(users, username, password)
        finally:
            self._checks.release()
        spraying = 0
        with self._lock:
            now = self._clock()
            for key in keys:
                if user is not None:
                    self._failures.pop(key, None)
                else:
                    count, _ = self._failures.get(key, (0, 0.0))
                    self._failures[key] = (count + 1, now)
            if user is None and address:
                recent = {a: t for a, t in self._accounts.get(address, {}).items() if now - t < self.spraying_window_s}
                recent[account] = now
                self._accounts[address] = recent
                if len(recent) >= self.spraying_accounts and now - self._reported.get(address, -1e18) >= \
                        self.spraying_window_s:
                    self._reported[address] = now
                    spraying = len(recent)
            for table in (self._failures, self._accounts):
                if len(table) > 100_000:  # bounded memory under a flood of fresh names or addresses
                    for key in list(table)[:50_000]:
                        del table[key]
        if spraying and self.on_spraying is not None:
            self.on_spraying(address or "", spraying)
        return user
