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
        roles = tuple(entry.get("roles") or ["user"])
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ConfigError(f"users file {path}: {username!r} has unknown roles {sorted(unknown)} (known: {ROLES})")
        users[str(username)] = StoredUser(
            User(str(username), str(entry.get("name") or username), roles, tuple(entry.get("groups") or ())),
            hashed.encode())
    if not users:
        raise ConfigError(f"users file {path} has no users: add one with `rag user add NAME --users-file {path}`")
    return users


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
    tmp.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
