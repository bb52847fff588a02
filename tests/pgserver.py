"""A real PostgreSQL server on loopback (Debian's postgresql-15), started once per test session in a folder of
its own, as its own user (PostgreSQL refuses to run as root): password sign-in (SCRAM) on 127.0.0.1 only, a
fresh database and role per test (`database`), so tests never see each other's rows."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port


@dataclass
class PgServer:
    port: int
    admin_password: str
    base: Path

    def admin(self, database: str = "postgres"):  # noqa: ANN201 (psycopg is imported lazily)
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=self.admin_password,
                               dbname=database, autocommit=True)

    def database(self, folder: Path) -> tuple[str, Path]:
        """A new empty database owned by a new role: its URL (no password) and a password file (0600) in
        `folder`, as an operator configures RAG_APP_DB and RAG_APP_DB_PASSWORD_FILE."""
        name = f"rag_{secrets.token_hex(6)}"
        password = secrets.token_urlsafe(16)
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            conn.execute(f"CREATE DATABASE {name} OWNER {name}")
        password_file = folder / f"{name}.password"
        password_file.write_text(password + "\n")
        os.chmod(password_file, 0o600)
        return f"postgresql://{name}@127.0.0.1:{self.port}/{name}", password_file


def binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        if os.environ.get("RAG_CI"):
            pytest.fail("PostgreSQL not found: apt-get install postgresql-15")
        pytest.skip("PostgreSQL not found (apt-get install postgresql-15)")
    return found[-1]


@contextmanager
def postgres() -> Iterator[PgServer]:
    """PostgreSQL until the block ends (see the module's docstring)."""
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = pwd.getpwnam("nobody")
        user, group = account.pw_uid, account.pw_gid
    else:
        user, group = os.getuid(), os.getgid()
    base = Path(tempfile.mkdtemp(prefix="rag-postgres-"))
    os.chmod(base, 0o755)
    password = secrets.token_urlsafe(16)
    (base / "pwfile").write_text(password + "\n")
    try:
        os.chown(base / "pwfile", user, group)
        os.chown(base, user, group)
    except OSError as exc:  # a user namespace that maps root only
        pytest.skip(f"PostgreSQL's user cannot own its folder here ({exc})")
    port = free_port()
    as_owner: dict = {"env": {"PATH": "/usr/bin:/bin", "HOME": str(base), "LC_ALL": "C.UTF-8"}, "cwd": base}
    if os.geteuid() == 0:  # the server's programs run as its account, with none of root's groups
        as_owner.update(user=user, group=group, extra_groups=[])
    subprocess.run([initdb, "-D", str(base / "data"), "-U", "postgres", "--pwfile", str(base / "pwfile"),
                    "--auth-host=scram-sha-256", "--auth-local=reject", "-E", "UTF8", "--no-sync"],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=120, **as_owner)
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=300")
    started = subprocess.run([pg_ctl, "-D", str(base / "data"), "-l", str(base / "log"), "-o", options, "-w",
                              "-t", "60", "start"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, timeout=120, **as_owner)
    try:
        if started.returncode != 0:
            log = (base / "log").read_text() if (base / "log").exists() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stderr.decode()[-500:]} {log[-1500:]}")
        deadline = time.monotonic() + 30
        server = PgServer(port, password, base)
        while True:
            try:
                server.admin().close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run([pg_ctl, "-D", str(base / "data"), "-m", "immediate", "-w", "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, **as_owner)
        shutil.rmtree(base, ignore_errors=True)
