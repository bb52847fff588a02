"""The sources' credentials: one TOML file (RAG_SECRETS_FILE), readable by its owner only, never anywhere else.

    [intranet]                      # the name a site's `secret` refers to
    header = "Authorization: Bearer 0123..."   # or: headers = {"X-Api-Key" = "..."}
    # cookie = "session=abc"
    # username = "svc-rag"          # HTTP basic, and the IMAP login of a mailbox
    # password = "..."

Credentials never come from the command line (other users see it in `ps`), the environment (inherited by every
child process) or a log line: a `Secret` prints as its name only. The file is refused, with what to do, when
it is not a regular file, when another user owns it, or when its mode lets group or others read it.
"""

from __future__ import annotations

import base64
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rag.files import read_private_file

MAX_SECRETS_BYTES = 1 << 20
_KEYS = {"header", "headers", "cookie", "username", "password"}


@dataclass(frozen=True)
class Secret:
    """One entry's credentials: the request headers they make. Its repr never shows a value."""

    name: str
    _headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    _login: tuple[str, str] | None = field(default=None, repr=False)  # user name and password (IMAP, basic)

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def login(self) -> tuple[str, str] | None:
        return self._login

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, <{len(self._headers)} header(s) hidden>)"


def named_secret(path: Path | None, name: str, who: str) -> Secret:
    """The entry `name` of the secrets file at `path`, which `who` (a site, a mailbox) names; ValueError saying
    what to set when there is no secrets file or no such entry."""
    if path is None:
        raise ValueError(f"{who} names the secret {name!r}: set RAG_SECRETS_FILE to the secrets file that holds it")
    secrets = load_secrets(path)
    if name not in secrets:
        raise ValueError(f"{who} names the secret {name!r}, which {path} does not hold")
    return secrets[name]


def load_secrets(path: Path) -> dict[str, Secret]:
    """The entries of the secrets file at `path`; ValueError (one line, what to do) when it must not be used."""
    data = read_private_file(path, "secrets file", MAX_SECRETS_BYTES)
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # the message names the line, never its content
        raise ValueError(f"secrets file {path} is not valid TOML ({str(exc).split('(')[0].strip()})") from None
    return {name: _entry(path, name, value) for name, value in table.items()}


def _entry(path: Path, name: str, value: object) -> Secret:
    if not isinstance(value, dict):
        raise ValueError(f"secrets file {path}: [{name}] must be a table")
    unknown = set(value) - _KEYS
    if unknown:
        raise ValueError(f"secrets file {path}: [{name}] has unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    headers: list[tuple[str, str]] = []
    login: tuple[str, str] | None = None
    if "header" in value:
        header = str(value["header"])
        if ":" not in header:
            raise ValueError(f"secrets file {path}: [{name}] header must be 'Name: value'")
        key, _, val = header.partition(":")
        headers.append((key.strip(), val.strip()))
    for key, val in dict(value.get("headers", {})).items():
        headers.append((str(key), str(val)))
    if "cookie" in value:
        headers.append(("Cookie", str(value["cookie"])))
    if "username" in value or "password" in value:
        if "username" not in value or "password" not in value:
            raise ValueError(f"secrets file {path}: [{name}] needs both username and password")
        login = (str(value["username"]), str(value["password"]))
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    for key, val in headers:
        if not key or any(c in key + val for c in "\r\n\0"):
            raise ValueError(f"secrets file {path}: [{name}] holds a header name or value with a line break")
    if not headers:
        raise ValueError(f"secrets file {path}: [{name}] holds no credentials (header, headers, cookie, username)")
    return Secret(name, tuple(headers), login)
