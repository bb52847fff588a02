"""PostgreSQL, when the deployment keeps its shared state there (RAG_APP_DB=postgresql://…): the connection
information without a password in it, and the advisory lock that makes one index writer across hosts.

The password never comes from RAG_APP_DB (a URL is shown in `ps`, logs and error messages): libpq's own
PGPASSWORD, PGPASSFILE (~/.pgpass) and PG* variables apply as for psql, or RAG_APP_DB_PASSWORD_FILE names a
file holding the password alone (the form a container secret takes: the official postgres image reads the
same file as POSTGRES_PASSWORD_FILE), refused when others may read it.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rag.files import read_private_file

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql", "postgres")


def is_url(value: object) -> bool:
    """Whether a RAG_APP_DB value is a PostgreSQL URL (anything else is a SQLite file)."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in SCHEMES and "://" in value


def check_url(url: str) -> str:
    """`url` when it is a usable PostgreSQL URL; ValueError saying what to change otherwise (a password in it)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: the message never echoes the URL's password
        raise ValueError(f"RAG_APP_DB is not a valid PostgreSQL URL ({type(exc).__name__}): "
                         "postgresql://USER@HOST:PORT/DATABASE") from None
    if params.get("password"):
        raise ValueError("RAG_APP_DB holds a password: remove it and give it in RAG_APP_DB_PASSWORD_FILE, "
                         "PGPASSFILE or PGPASSWORD")
    return url


def redact(url: str) -> str:
    """`url` without any password (for messages and `rag doctor`)."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def conninfo(url: str, password_file: Path | None) -> str:
    """The libpq connection string for `url`, with the password from `password_file` when given."""
    from psycopg.conninfo import make_conninfo

    check_url(url)
    extra: dict[str, str] = {"application_name": "rag"}
    if password_file is not None:
        password = read_private_file(password_file, "password file", 4096).decode("utf-8").strip("\r\n")
        if not password:
            raise ValueError(f"password file {password_file} is empty")
        extra["password"] = password
    return make_conninfo(url, **extra)


class Unreachable(ValueError):
    """The server cannot be reached or refuses the sign-in; the message, one line, never holds the password."""


def connect(url: str, password_file: Path | None, timeout_s: float = 10.0, **kwargs: object) -> "psycopg.Connection":
    """One connection to `url`, its password from `password_file` (see `conninfo`)."""
    return connect_with(conninfo(url, password_file), url, timeout_s, **kwargs)


def connect_with(info: str, url: str, timeout_s: float = 10.0, **kwargs: object) -> "psycopg.Connection":
    """One connection from libpq connection information `info` (`url` names it in messages); Unreachable when
    the server cannot be reached or refuses it."""
    import psycopg

    try:
        return psycopg.connect(info, connect_timeout=max(1, int(timeout_s)), **kwargs)
    except psycopg.OperationalError as exc:
        raise Unreachable(f"cannot reach the app database {redact(url)}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.sha256(f"rag:{name}".encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on its own connection: held until `release` or until the
    process dies (the server drops the session, and the lock with it, when the connection breaks). The lock
    every host agrees on, where a file lock on a network file system is not reliable.

    `acquire(timeout)` tries, then polls every 0.2 s until `timeout` (0: once); TimeoutError when another
    session holds it. A keepalive thread sends `SELECT 1` every 30 s so that a firewall's idle timeout does
    not cut the session during a long run; if the connection is lost, `lost` is set and `check()` raises.
    """

    def __init__(self, url: str, password_file: Path | None, name: str) -> None:
        self.url = url
        self.password_file = password_file
        self.name = name
        self.key = lock_key(name)
        self._conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self.lost = False

    def acquire(self, timeout: float) -> None:
        # keepalives: the server notices a dead client (a host powered off) within about a minute
        conn = connect(self.url, self.password_file, autocommit=True, keepalives=1, keepalives_idle=20,
                       keepalives_interval=5, keepalives_count=4)
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(self.holder(conn))
                time.sleep(0.2)
            # who holds it, for the next one's message (application_name is visible in pg_stat_activity)
            conn.execute("SELECT set_config('application_name', %s, false)",
                         (f"rag writer pid {os.getpid()} on {socket.gethostname()}"[:63],))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._stop.clear()
        threading.Thread(target=self._keepalive, name="rag-advisory-lock", daemon=True).start()

    def holder(self, conn: "psycopg.Connection") -> str:
        """Who holds the lock, as the server knows it ('' when it cannot say)."""
        row = conn.execute(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (%s::bigint & 4294967295) "
            "AND l.classid = ((%s::bigint >> 32) & 4294967295) LIMIT 1", (self.key, self.key)).fetchone()
        if not row:
            return ""
        return f"{row[0] or 'another session'}" + (f" from {row[1]}" if row[1] else "")

    def _keepalive(self) -> None:
        while not self._stop.wait(30):
            with self._guard:
                if self._conn is None:
                    return
                try:
                    self._conn.execute("SELECT 1")
                except Exception:
                    self.lost = True
                    return

    def check(self) -> None:
        """RuntimeError when the session holding the lock is gone (another host may be writing now): asked of
        the server now, not only seen by the keepalive. A live session still holds the lock (a session-level
        advisory lock ends only with an unlock or the session)."""
        with self._guard:
            if not self.lost and self._conn is not None:
                try:
                    self._conn.execute("SELECT 1")
                except Exception:
                    self.lost = True
        if self.lost or self._conn is None:
            raise RuntimeError(f"the connection holding the write lock on {self.name} to {redact(self.url)} "
                               "was lost: stopped before publishing; run again")

    def release(self) -> None:
        self._stop.set()
        with self._guard:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except Exception:
                pass  # the session ends below: the server releases its locks with it
            finally:
                conn.close()
