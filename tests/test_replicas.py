"""Several hosts on one PostgreSQL app database (tests/pgserver.py: a real server on loopback): real `rag api`
processes and `rag ingest` runs, as two hosts would run them, sharing no file lock and no memory.

Attackers and accidents: a token holder whose token an admin revoked on another replica; a second host's
ingest run starting while the first writes (never two writers); a writer killed -9 (its lock must not outlive
it); a replica killed in the middle of an answer (nothing already written lost; the client retries on
another); the database going away (replicas say so, and refuse rather than guess).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag.index import IndexBusyError, IndexWriter, RagIndexError
from rag.settings import IndexSettings
from tests.conftest import (RAG, AclSite, acl_site, browser_ask, browser_sign_in, rag_cli, require_chromium, serve_api,
                            serve_page, until_it_lands, wait_for, write)
from ui.appdb import AppDB


def shared_env(pg_server, folder: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    url, password_file = pg_server.database(folder)
    return {"RAG_APP_DB": url, "RAG_APP_DB_PASSWORD_FILE": str(password_file)}


@pytest.mark.parametrize("kind", ["folder", "advisory"])
def test_every_writer_lock_keeps_one_writer(kind: str, tmp_path: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    """The WriterLock contract, on each implementation `writer_lock` picks: one holder; another waits its timeout
    and is refused; a release lets the next in; `check` passes while held."""
    from rag.index import FolderLock, writer_lock
    from rag.pg import AdvisoryLock

    folder = tmp_path / "index"
    folder.mkdir()
    if kind == "folder":
        make = lambda: FolderLock(folder)  # noqa: E731
    else:
        url, password_file = pg_server.database(tmp_path)
        make = lambda: AdvisoryLock(url, password_file, "index test")  # noqa: E731
        settings = IndexSettings(dir=folder, device="cpu", exact_max_vectors=1, compressed_min_vectors=1,
                                 ivf_nprobe=1, pq_bytes=8, lock_timeout_s=0, keyword_engine="sqlite", lock_db=url,
                                 lock_db_password_file=password_file)
        assert isinstance(writer_lock(settings), AdvisoryLock)
    first, second = make(), make()
    first.acquire(timeout=0)
    first.check()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        second.acquire(timeout=0.5)
    assert time.monotonic() - started >= 0.4
    first.release()
    second.acquire(timeout=5)
    second.check()
    second.release()


def test_two_hosts_never_write_one_index_at_once(tmp_path: Path, pg_server, make_settings, embedder) -> None:  # type: ignore[no-untyped-def]
    shared = shared_env(pg_server, tmp_path)
    settings = make_settings(app_db=shared["RAG_APP_DB"], app_db_password_file=Path(shared["RAG_APP_DB_PASSWORD_FILE"]),
                             lock_timeout_s=0.5)
    docs = tmp_path / "docs"
    write(docs / "leave.txt", "Staff take 30 days of leave a year.")
    env = {**os.environ, **shared, "RAG_DEVICE": "cpu", "RAG_MODEL_CACHE_DIR": str(settings.model_cache_dir),
           "RAG_LOCK_TIMEOUT_S": "1"}
    # host A writes (the advisory lock alone: no lock file is made, so nothing local could refuse host B)
    with IndexWriter.open(settings.index, embedder.model_id):
        assert not (settings.index_dir / "write.lock").exists()
        done = subprocess.run([str(RAG), "ingest", str(docs), "--index", str(settings.index_dir)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "another ingest run is writing" in done.stderr and f"rag writer pid {os.getpid()}" in done.stderr
        with pytest.raises(IndexBusyError):  # the same process's second writer too
            with IndexWriter.open(settings.index, embedder.model_id):
                pass
    # the lock's session ended under a writer (the server restarted, a firewall cut it): it publishes nothing
    with IndexWriter.open(settings.index, embedder.model_id) as writer:
        with pg_server.admin() as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                         "'rag writer pid%'")
        with pytest.raises(RagIndexError, match="was lost: stopped before publishing"):
            writer.publish(None)
    # a writer killed -9 in the middle: the server drops its session and the lock with it
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from rag.index import IndexWriter\nfrom rag.settings import load_settings\n"
        f"s = load_settings(index_dir={str(settings.index_dir)!r}, app_db={shared['RAG_APP_DB']!r}, "
        f"app_db_password_file={shared['RAG_APP_DB_PASSWORD_FILE']!r})\n"
        f"with IndexWriter.open(s.index, {embedder.model_id!r}):\n"
        "    print('writing', flush=True)\n    time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "writing"
        with pytest.raises(IndexBusyError):
            with IndexWriter.open(settings.index, embedder.model_id):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    finally:
        holder.kill()
    done = subprocess.run([str(RAG), "ingest", str(docs), "--index", str(settings.index_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path, pg_server) -> AclSite:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("replicas")
    site = acl_site(base, embedder, model_cache, [("ada", ["user", "admin"], [])], RAG_MAX_NEW_TOKENS="24")
    site.env.update(shared_env(pg_server, base))
    return site


@pytest.mark.slow
def test_replicas_share_tokens_conversations_and_the_audit_log(site: AclSite, pg_server) -> None:  # type: ignore[no-untyped-def]
    (site.base / "a").mkdir()
    (site.base / "b").mkdir()
    processes: list[subprocess.Popen] = []
    token = rag_cli("token", "create", "hanna-bot", "--user", "hanna", env=site.env).strip()
    auth = {"Authorization": f"Bearer {token}"}
    with serve_api(site.base / "a", site.index, site.env, processes) as a, \
            serve_api(site.base / "b", site.index, site.env) as b:
        ask = {"model": "rag", "messages": [{"role": "user", "content": "When is lunch served?"}]}
        first = httpx.post(f"{a}/v1/chat/completions", json=ask, headers=auth, timeout=120)
        assert first.status_code == 200, first.text
        conversation = first.json()["rag"]["conversation_id"]
        # continued on the other replica: it knows the first turn
        follow = {**ask, "messages": [{"role": "user", "content": "and until when?"}], "conversation_id": conversation}
        second = httpx.post(f"{b}/v1/chat/completions", json=follow, headers=auth, timeout=120)
        assert second.status_code == 200 and "lunch" in second.json()["rag"]["searched"].lower(), second.text
        # a replica killed -9 in the middle of an answer: what was written stays; the client retries on the other
        with httpx.Client(timeout=120) as client:
            with client.stream("POST", f"{a}/v1/chat/completions", headers=auth,
                               json={**follow, "stream": True, "messages": [{"role": "user", "content": "where?"}]}) as r:
                assert r.status_code == 200
                next(r.iter_lines())
                processes[0].send_signal(signal.SIGKILL)
                processes[0].wait(30)
        retried = httpx.post(f"{b}/v1/chat/completions", headers=auth, timeout=120,
                             json={**follow, "messages": [{"role": "user", "content": "where?"}]})
        assert retried.status_code == 200
        turns = httpx.get(f"{b}/v1/conversations/{conversation}", headers=auth, timeout=60).json()["turns"]
        assert [t["question"] for t in turns][:2] == ["When is lunch served?", "and until when?"]
        assert turns[-1]["question"] == "where?" and len(turns) in (3, 4)
        # revoked through the shared database: refused at the next request, on every replica
        with serve_api(site.base / "a", site.index, site.env) as a:
            assert httpx.get(f"{a}/v1/conversations", headers=auth, timeout=60).status_code == 200
            rag_cli("token", "revoke", "hanna-bot", env=site.env)
            for replica in (a, b):
                refused = httpx.get(f"{replica}/v1/conversations", headers=auth, timeout=60)
                assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
            # the audit log holds the questions both replicas answered
            db = AppDB(site.env["RAG_APP_DB"], password_file=Path(site.env["RAG_APP_DB_PASSWORD_FILE"]))
            asked = [e.question for e in db.audit_entries(0, 2e9) if e.username == "hanna"]
            assert {"When is lunch served?", "and until when?", "where?"} <= set(asked)
            db.close()
            # the database goes away (the role may no longer sign in, its sessions ended): not ready, and 503
            name = site.env["RAG_APP_DB"].rsplit("/", 1)[1]
            with pg_server.admin() as conn:
                conn.execute(f"ALTER ROLE {name} NOLOGIN")
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            try:
                ready = httpx.get(f"{a}/readyz", timeout=60)
                assert ready.status_code == 503 and "app database" in " ".join(ready.json()["problems"])
                down = httpx.get(f"{b}/v1/conversations", headers=auth, timeout=60)
                assert down.status_code == 503 and down.headers["Retry-After"], down.text
                assert "password" not in down.text
            finally:
                with pg_server.admin() as conn:
                    conn.execute(f"ALTER ROLE {name} LOGIN")
            wait_for(lambda: httpx.get(f"{a}/readyz", timeout=60).status_code == 200, 30)


@pytest.mark.slow
def test_the_page_and_the_api_replicas_share_conversations(site: AclSite) -> None:
    """A conversation started through one replica's API is in the page's sidebar on another host's `rag ui`, and
    continues there; what the page asks is in the API's list."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    token = rag_cli("token", "create", "sam-bot", "--user", "sam", env=site.env).strip()
    auth = {"Authorization": f"Bearer {token}"}
    (site.base / "api").mkdir(exist_ok=True)
    (site.base / "page").mkdir(exist_ok=True)
    with serve_api(site.base / "api", site.index, site.env) as api, \
            serve_page(site.base / "page", site.index, site.env) as url, sync_playwright() as p:
        started = httpx.post(f"{api}/v1/chat/completions", headers=auth, timeout=120, json={
            "model": "rag", "messages": [{"role": "user", "content": "When does the Acme deal close?"}]})
        assert started.status_code == 200, started.text
        browser = p.chromium.launch(executable_path=str(require_chromium()), args=["--no-sandbox"])
        try:
            page = browser.new_context().new_page()
            browser_sign_in(page, url, "sam")
            # the sidebar's button opens it (clicked again if the first click fell into a rerun of the page)
            opened = page.locator('[data-testid="stChatMessage"]').filter(has_text="When does the Acme deal close?")

            def open_conversation() -> None:
                if opened.count() == 0:
                    page.get_by_role("button", name="When does the Acme deal close").click(timeout=30_000)
                opened.first.wait_for(timeout=10_000)
                # and its answer drawn too (Streamlit draws element by element): else browser_ask would count
                # no answers yet and take this one's footer for the next answer's
                page.get_by_text("index version").first.wait_for(timeout=10_000)

            until_it_lands(open_conversation, "the conversation never opened")
            browser_ask(page, "When is lunch served?", 120_000)
        finally:
            browser.close()
        mine = httpx.get(f"{api}/v1/conversations", headers=auth, timeout=60).json()["conversations"]
        [continued] = [c for c in mine if c["id"] == started.json()["rag"]["conversation_id"]]
        assert continued["turns"] == 2
