"""The app database on both backends: every test here runs on a SQLite file and on a real PostgreSQL server
(Debian's postgresql-15, tests/pgserver.py), through the same `AppDB` calls the page and the API make.

Attackers: a signed-in user reading another's conversation by its id (refused on both); a token holder whose
token was revoked on another replica; an operator's URL with a password in it (refused, never echoed).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import RAG
from ui.appdb import SCHEMA_VERSION, AppDB, AppDBUnavailable


def open_db(at: tuple[Path | str, Path | None], **kwargs: object) -> AppDB:
    location, password_file = at
    return AppDB(location, password_file=password_file, **kwargs)  # type: ignore[arg-type]


def test_the_record_is_kept_the_same_way_on_both(app_db_at: tuple[Path | str, Path | None]) -> None:
    clock = [1_800_000_000.0]
    db = open_db(app_db_at, clock=lambda: clock[0])
    assert db.schema_version() == SCHEMA_VERSION
    # tokens: shown once, kept hashed, unique by name, revoked at once
    token = db.create_token("bot", "ada", "read", ("staff",), expires_days=1)
    with pytest.raises(ValueError, match="exists"):
        db.create_token("bot", "ada", "read")
    stored = db.token_for(token)
    assert stored is not None and stored.groups == ("staff",) and stored.state(clock[0]) == "active"
    assert db.token_for(token + "x") is None and db.token_for("not-a-token") is None
    clock[0] += 86400
    assert db.token_for(token).state(clock[0]) == "expired"  # type: ignore[union-attr]
    push = db.create_token("wiki", "svc", "ingest", sources=("wiki",))
    assert db.revoke_token("wiki") and not db.revoke_token("wiki")
    assert db.token_for(push).state(clock[0]) == "revoked"  # type: ignore[union-attr]
    # conversations: only their owner sees them; turns numbered in order
    conversation = db.start_conversation("ada", "  Leave policy  ")
    db.add_turn("ada", conversation, "How many days?", "How many days of leave?", {})
    db.add_turn("ada", conversation, "And for part-time?", "Leave days part-time", {}, error="timeout")
    assert [t.position for t in db.turns("ada", conversation)] == [0, 1]
    assert db.conversation("sam", conversation) is None and db.turns("sam", conversation) == []
    with pytest.raises(KeyError):
        db.add_turn("sam", conversation, "mine now?", "", {})
    assert not db.rename_conversation("sam", conversation, "taken") and db.rename_conversation("ada", conversation, "Leave")
    assert [(c.title, c.turns) for c in db.conversations("ada")] == [("Leave", 2)]
    # runs, feedback and the audit log, with timestamps to the microsecond (a float4 would lose minutes)
    run = db.start_run("ada", "ingest", ["/docs"])
    db.finish_run(run, {"added": 3})
    assert db.run(run).status == "done" and db.last_runs()[0].summary == {"added": 3}  # type: ignore[union-attr]
    db.add_feedback("ada", "q", "a", [{"path": "/docs/a.txt"}], -1, "  wrong  ")
    db.audit("ada", "q", "q", "answered", [{"path": "/docs/a.txt", "cited": True}], "m", 3, seconds=0.25)
    [entry] = db.audit_entries(0, 2e9)
    assert entry.created == clock[0] and entry.seconds == 0.25 and entry.shown[0].cited
    assert db.feedback_entries(0, 2e9)[0].comment == "wrong" and db.feedback_count() == 1
    assert "=cmd" not in db.audit_csv()
    assert db.rows("audit")[0]["shown"] == [{"path": "/docs/a.txt", "cited": True}]
    assert db.delete_conversation("ada", conversation) and db.conversations("ada") == []
    assert db.counts() == {"feedback": 1, "audit": 1, "runs": 1, "api_tokens": 2, "conversations": 0, "turns": 0}
    db.ping()
    db.close()
    # opened again (a restart, another replica): nothing more to migrate, everything kept
    again = open_db(app_db_at)
    assert again.schema_version() == SCHEMA_VERSION and again.token_for(token) is not None
    again.close()


def test_replicas_starting_together_migrate_once(app_db_at: tuple[Path | str, Path | None]) -> None:
    opened: list[AppDB] = []
    failed: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(open_db(app_db_at))
        except BaseException as exc:  # noqa: BLE001
            failed.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and len(opened) == 4
    with opened[0]._db.tx() as c:
        assert [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()] == \
            list(range(1, SCHEMA_VERSION + 1))
    # two replicas appending to one conversation at once: every turn kept, numbered without a gap
    conversation = opened[0].start_conversation("ada", "busy")
    threads = [threading.Thread(target=lambda db=db: [db.add_turn("ada", conversation, f"q{i}", "", {}) for i in range(5)])
               for db in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t.position for t in opened[1].turns("ada", conversation)] == list(range(20))
    for db in opened:
        db.close()


def test_an_app_database_moves_to_postgresql_and_back_with_every_row(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    """`rag appdb migrate --to postgresql://…` as an operator runs it, on a SQLite file with every kind of row;
    then back into a new SQLite file: the same rows, and new rows continue after the copied ids."""
    source = AppDB(tmp_path / "app.sqlite")
    token = source.create_token("bot", "ada", "read")
    source.revoke_token("bot")
    kept = source.create_token("reader", "sam", "read")
    conversation = source.start_conversation("ada", "Leave")
    source.add_turn("ada", conversation, "How many days?", "leave days", {})
    for i in range(2500):  # more than one batch
        source.audit("ada", f"question {i}", "", "answered", [])
    source.add_feedback("ada", "q", "a", [], 1)
    runs = [source.start_run("ada", "ingest", ["/docs"]) for _ in range(3)]
    source.close()
    url, password_file = pg_server.database(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "RAG_APP_DB": str(tmp_path / "app.sqlite"),
           "RAG_APP_DB_PASSWORD_FILE": str(password_file), "RAG_INDEX_DIR": str(tmp_path / "index")}
    done = subprocess.run([str(RAG), "appdb", "migrate", "--to", url, "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    copied = json.loads(done.stdout)["rows"]
    assert copied == {"feedback": 1, "audit": 2500, "runs": 3, "api_tokens": 2, "conversations": 1, "turns": 1}
    again = subprocess.run([str(RAG), "appdb", "migrate", "--to", url], env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "already holds rows" in again.stderr and "Traceback" not in again.stderr
    shared = AppDB(url, password_file=password_file)
    assert shared.counts() == copied
    assert shared.token_for(token).state(0) == "revoked" and shared.token_for(kept).state(0) == "active"  # type: ignore[union-attr]
    assert shared.turns("ada", conversation)[0].question == "How many days?"
    assert shared.start_run("ada", "ingest", []) == runs[-1] + 1  # the ids continue
    shared.close()
    back = subprocess.run([str(RAG), "appdb", "migrate", "--to", str(tmp_path / "back.sqlite")],
                          env={**env, "RAG_APP_DB": url}, capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    with sqlite3.connect(tmp_path / "back.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 2500
        assert conn.execute("SELECT max(id) FROM runs").fetchone()[0] == runs[-1] + 1


def test_an_unreachable_or_misconfigured_database_is_one_line_without_the_password(tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    url, password_file = pg_server.database(tmp_path)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    with pytest.raises(AppDBUnavailable, match="password authentication failed") as caught:
        AppDB(url, password_file=wrong)
    assert "not the password" not in str(caught.value)
    wrong.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        AppDB(url, password_file=wrong)
    nowhere = url.replace(f":{pg_server.port}/", ":1/")
    env = {"PATH": "/usr/bin:/bin", "RAG_APP_DB": nowhere, "RAG_APP_DB_PASSWORD_FILE": str(password_file),
           "RAG_INDEX_DIR": str(tmp_path / "index")}
    done = subprocess.run([str(RAG), "token", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot reach the app database" in done.stderr and "Traceback" not in done.stderr
    assert password_file.read_text().strip() not in done.stderr
