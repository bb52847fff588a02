"""The push API against a running `rag api` (PUT and DELETE /v1/sources/{source}/documents/{id}): what an
integrator's script does, and what a token holder would try.

Attackers: an ingest token's holder (read anything, push to a source it is not bound to, push a huge body),
a reading token's holder (push), a pushed document's readers (it must reach them and nobody else)."""

from __future__ import annotations

import base64

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AclSite, acl_site, rag_cli, serve_api
from tests.docgen import write_pdf

pytestmark = pytest.mark.slow  # a real server with the real models


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> AclSite:  # type: ignore[no-untyped-def]
    return acl_site(tmp_path_factory.mktemp("push"), embedder, model_cache, [("ada", ["user", "admin"], [])],
                    RAG_MAX_NEW_TOKENS="8", RAG_API_PUSH_INTERVAL_S="1", RAG_API_PUSH_MAX_MB="1")


@pytest.fixture(scope="module")
def api(site: AclSite) -> Iterator[str]:
    with serve_api(site.base, site.index, site.env) as url:
        yield url


def token(site: AclSite, name: str, *args: str) -> str:
    return rag_cli("token", "create", name, *args, env=site.env).strip()


def search(url: str, reader: str, query: str) -> list[str]:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "k": 5}, headers={"Authorization": f"Bearer {reader}"},
                   timeout=60)
    r.raise_for_status()
    return [h["path"] for h in r.json()["results"][0]["hits"]]


def test_pushed_documents_are_created_replaced_unchanged_deleted_and_reach_only_their_readers(
        site: AclSite, api: str) -> None:
    ingest = {"Authorization": f"Bearer {token(site, 'tickets-feed', '--user', 'sam', '--scope', 'ingest', '--source', 'tickets')}"}
    hanna = token(site, "hanna-read", "--user", "hanna")
    sam = token(site, "sam-read", "--user", "sam")
    doc = f"{api}/v1/sources/tickets/documents/INC-1042"
    body = {"title": "INC-1042 Badge reader broken", "text": "The badge reader at the loading dock rejects every "
            "card since the firmware update; security opened the gate by hand.", "groups": ["hr"],
            "url": "https://tickets.example/INC-1042", "modified": "2026-12-01T09:00:00Z"}

    r = httpx.put(doc, json=body, headers=ingest, params={"publish": "true"}, timeout=180)
    assert r.status_code == 201 and r.json() == {"source": "tickets", "id": "INC-1042", "status": "created",
                                                 "published": True}
    assert search(api, hanna, "badge reader loading dock firmware")[0] == "push://tickets/INC-1042"
    assert "push://tickets/INC-1042" not in search(api, sam, "badge reader loading dock firmware")  # sales

    assert httpx.put(doc, json=body, headers=ingest, timeout=60).status_code == 204  # unchanged: nothing queued
    body["text"] += " Fixed on 2 December by reflashing the reader."
    r = httpx.put(doc, json=body, headers=ingest, params={"publish": "true"}, timeout=180)
    assert r.status_code == 200 and r.json()["status"] == "replaced"
    pdf = write_pdf(site.base / "runbook.pdf", ["Runbook: restart the badge controller with the red switch."])
    r = httpx.put(f"{api}/v1/sources/tickets/documents/kb%2Frunbooks%2Fbadge", headers=ingest, timeout=180,
                  params={"publish": "true"}, json={"content_base64": base64.b64encode(pdf.read_bytes()).decode(),
                                                    "filename": "runbook.pdf", "users": ["hanna"], "groups": []})
    assert r.status_code == 201, r.text
    assert "push://tickets/kb%2Frunbooks%2Fbadge" in search(api, hanna, "how to restart the badge controller")

    assert httpx.delete(doc, headers=ingest, params={"publish": "true"}, timeout=180).status_code == 204
    assert "push://tickets/INC-1042" not in search(api, hanna, "badge reader loading dock firmware")
    assert httpx.delete(doc, headers=ingest, timeout=60).status_code == 404

    audit = rag_cli("audit", "export", env=site.env) if False else (site.base / "app.sqlite")
    import sqlite3

    with sqlite3.connect(audit) as db:
        outcomes = [r[0] for r in db.execute("SELECT outcome FROM audit WHERE username = 'sam' ORDER BY id")]
    assert outcomes.count("pushed document (created)") == 2 and "deleted pushed document" in outcomes
    assert "pushed document (unchanged)" in outcomes and "pushed document (replaced)" in outcomes
    sources = rag_cli("sources", "--index", str(site.index), env=site.env)
    assert "push tickets" in sources


def test_an_ingest_token_cannot_read_or_stray_and_a_reading_token_cannot_push(site: AclSite, api: str) -> None:
    ingest = {"Authorization": f"Bearer {token(site, 'wiki-feed', '--user', 'ada', '--scope', 'ingest', '--source', 'wiki')}"}
    reader = {"Authorization": f"Bearer {token(site, 'ada-admin', '--user', 'ada', '--scope', 'admin')}"}
    for method, path, kwargs in [("POST", "/v1/search", {"json": {"query": "salary"}}), ("GET", "/v1/documents", {}),
                                 ("POST", "/v1/chat/completions", {"json": {"messages": [
                                     {"role": "user", "content": "salary band"}]}}), ("GET", "/v1/audit", {}),
                                 ("GET", "/v1/conversations", {})]:
        r = httpx.request(method, f"{api}{path}", headers=ingest, timeout=60, **kwargs)
        assert r.status_code == 403, (path, r.status_code, r.text)
    mcp = httpx.post(f"{api}/mcp", headers={**ingest, "Accept": "application/json, text/event-stream"}, timeout=60,
                     json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert mcp.status_code == 403
    r = httpx.put(f"{api}/v1/sources/tickets/documents/x", json={"text": "x"}, headers=ingest, timeout=60)
    assert r.status_code == 403 and "wiki" in r.json()["error"]["message"]
    hanna = {"Authorization": f"Bearer {token(site, 'hanna-push', '--user', 'hanna')}"}
    assert httpx.put(f"{api}/v1/sources/wiki/documents/x", json={"text": "x"}, headers=hanna,
                     timeout=60).status_code == 403
    big = {"text": "word " * 300_000}  # 1.5 MB against RAG_API_PUSH_MAX_MB=1
    assert httpx.put(f"{api}/v1/sources/wiki/documents/big", json=big, headers=ingest, timeout=60).status_code == 413
    r = httpx.put(f"{api}/v1/sources/wiki/documents/x", json={"text": "a", "content_base64": "YQ==", "filename": "a.txt"},
                  headers=ingest, timeout=60)
    assert r.status_code == 400
    r = httpx.put(f"{api}/v1/sources/wiki/documents/x", json={"text": "x", "groups": ["hr; DROP"]}, headers=ingest,
                  timeout=60)
    assert r.status_code == 400
    # an admin token may push too (the page's admins feed systems by hand)
    assert httpx.put(f"{api}/v1/sources/wiki/documents/admin-note", json={"text": "Admin note."}, headers=reader,
                     timeout=60).status_code == 201


def test_a_killed_server_loses_no_accepted_push(site: AclSite, tmp_path: Path) -> None:
    procs: list[subprocess.Popen] = []
    ingest = {"Authorization": f"Bearer {token(site, 'crash-feed', '--user', 'sam', '--scope', 'ingest')}"}
    env = {**site.env, "RAG_API_PUSH_INTERVAL_S": "3600"}  # accepted, never committed before the kill
    with serve_api(site.base, site.index, env, procs) as url:
        r = httpx.put(f"{url}/v1/sources/crm/documents/acct-7", headers=ingest, timeout=60,
                      json={"title": "Account 7", "text": "Globex renews its support contract every March.",
                            "groups": ["sales"]})
        assert r.status_code == 201
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
    assert any((site.index / "push-queue").glob("*.json"))
    sam = token(site, "sam-after", "--user", "sam")
    with serve_api(site.base, site.index, site.env) as url:  # the queue is drained at start-up
        import time

        deadline = time.monotonic() + 120
        while "push://crm/acct-7" not in search(url, sam, "when does Globex renew its support contract"):
            assert time.monotonic() < deadline
            time.sleep(1)
    assert not any((site.index / "push-queue").glob("*.json"))



def test_the_example_integration_pushes_a_folder_and_deletes_what_left_it(site: AclSite, api: str,
                                                                          tmp_path: Path) -> None:
    import sys

    feed = token(site, "export-feed", "--user", "sam", "--scope", "ingest", "--source", "export")
    export = tmp_path / "export"
    (export / "hr").mkdir(parents=True)
    (export / "hr" / "leave-policy.md").write_text("# Leave policy\n\nParental leave is sixteen weeks, fully paid.")
    (export / "travel.md").write_text("Train travel is booked through the travel desk.")
    script = Path(__file__).resolve().parents[1] / "docs" / "examples" / "push_folder.py"

    def run() -> str:
        done = subprocess.run([sys.executable, str(script), api, "export", str(export), "--group", "sales",
                               "--publish"], env={**site.env, "RAG_TOKEN": feed}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "2 created, 0 replaced, 0 unchanged, 0 deleted"
    (export / "travel.md").unlink()
    assert run() == "0 created, 0 replaced, 1 unchanged, 1 deleted"
    sam = token(site, "sam-export", "--user", "sam")
    assert "push://export/hr%2Fleave-policy.md" in search(api, sam, "how long is parental leave")
