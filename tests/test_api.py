"""The HTTP API, driven as its users' clients drive it: a real server on loopback, and clients others wrote
(the `openai` package, LangChain's `ChatOpenAI`, httpx, Chromium for /docs).

Attackers: a signed-in user with a read token probing for other groups' documents (search, answers,
documents, files, conversations); an anonymous client (no, unknown, revoked or expired token); a client
flooding the service or sending oversized, malformed or non-JSON bodies; an insider who swaps an indexed
file for a link to another; a web page the admin visits (no CDN on /docs, JSON-only bodies).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ingest.job import run_ingest
from rag.generation import make_generator
from rag.index import IndexReader
from rag.qa import QAService
from rag.search import Searcher
from rag.settings import Settings, load_settings
from tests.conftest import (BOARD_MARK, CROWD_QUESTION, HR_MARK, PROBES, REPO, SALES_MARK, require_chromium,
                            scripted_generator, wait_for, write, write_acl_corpus, write_crowd)
from ui.api.app import ApiState, create_app
from ui.api.auth import RateLimiter
from ui.appdb import AppDB
from ui.auth import UsersFile, add_user
from ui.jobs import JobManager

pytestmark = pytest.mark.slow  # one server with the real models for the module


@dataclass
class Api:
    url: str
    state: ApiState
    docs: Path
    tokens: dict[str, str]  # who -> token

    def client(self, who: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, embedder, model_cache: Path) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("api")
    docs = write_crowd(write_acl_corpus(base / "docs"))
    users_file = base / "users.yaml"
    add_user(users_file, "ada", "ada password", "Ada", ["user", "admin"])
    add_user(users_file, "sam", "sam password", "Sam", ["user"], ["sales"])
    add_user(users_file, "hanna", "hanna password", "Hanna", ["user"], ["hr"])
    settings = load_settings(index_dir=base / "index", device="cpu", model_cache_dir=model_cache,
                             ui_users_file=users_file, app_db=base / "app.sqlite", ui_allowed_roots=[docs],
                             acl_roots={docs / "handbook": ["everyone"]}, max_new_tokens=24,
                             api_rate_per_minute=1200, max_concurrent_generations=1, generation_queue_s=0)
    run_ingest(settings, [docs], embedder=embedder, progress=False)
    state = make_state(settings, embedder)
    db = state.db
    tokens = {who: db.create_token(who, who, "admin" if who == "ada" else "read") for who in ("ada", "sam", "hanna")}
    tokens["flood"] = db.create_token("flood", "sam", "read")
    tokens["revoked"] = db.create_token("revoked", "sam", "read")
    db.revoke_token("revoked")
    tokens["expired"] = db.create_token("expired", "sam", "read", expires_days=0.5 / 86400)
    with serve(state) as url:
        time.sleep(0.6)  # the expired token's half second passes
        yield Api(url, state, docs, tokens)


def make_state(settings: Settings, embedder) -> ApiState:  # type: ignore[no-untyped-def]
    generator = make_generator(settings.generation)
    generator.warm_up()
    service = QAService(Searcher(embedder, IndexReader(settings.index), settings.search), generator, settings.answers)
    service.searcher.warm_up()
    db = AppDB(settings.audit.app_db, settings.audit.retention_days)
    users = UsersFile(settings.page.users_file) if settings.page.users_file else None
    return ApiState(settings, service, db, JobManager(settings, embedder, db), users, single_user=users is None,
                    limiter=RateLimiter(settings.api.rate_per_minute))


class serve:
    """uvicorn serving the app on a free loopback port, in a thread (a context manager yielding the URL)."""

    def __init__(self, state: ApiState) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as `rag api` does
        self.sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(uvicorn.Config(create_app(state), log_config=None, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, 30)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def shown_text(answer: dict) -> str:
    return json.dumps(answer, ensure_ascii=False)


# -- the contract ---------------------------------------------------------------------------------------
def test_the_openapi_schema_lists_every_endpoint(api: Api) -> None:
    schema = httpx.get(f"{api.url}/openapi.json").json()
    assert set(schema["paths"]) == {
        "/healthz", "/readyz", "/metrics", "/v1/search", "/v1/ask", "/v1/models", "/v1/chat/completions",
        "/v1/conversations", "/v1/conversations/{conversation_id}", "/v1/documents", "/v1/documents/{doc_id}",
        "/v1/documents/{doc_id}/file", "/v1/chunks/{chunk_id}/page", "/v1/ingest", "/v1/jobs/{job_id}", "/v1/audit",
        "/v1/feedback", "/v1/sources/{source}/documents/{external_id}"}
    assert set(schema["paths"]["/v1/documents/{doc_id}"]) == {"get", "delete"}
    assert "SearchRequest" in schema["components"]["schemas"]


def test_health_readiness_and_metrics(api: Api) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api.url}/readyz")
    version = ready.json()["index_version"]  # 1, or 2 when the run published its first batch early
    assert ready.status_code == 200 and version in (1, 2)
    with api.client("sam") as client:
        assert client.post("/v1/search", json={"query": "lunch"}).status_code == 200
    text = httpx.get(f"{api.url}/metrics").text
    assert 'rag_api_requests_total{endpoint="/v1/search",method="POST",status="200"}' in text
    assert "rag_generations_in_flight 0.0" in text and f"rag_index_version {float(version)}" in text
    assert 'rag_api_request_seconds_bucket{endpoint="/v1/search"' in text


# -- who may call it ------------------------------------------------------------------------------------
@pytest.mark.parametrize("who, reason", [(None, "required"), ("revoked", "revoked"), ("expired", "expired")])
def test_tokens_that_do_not_let_you_in(api: Api, who: str | None, reason: str) -> None:
    with api.client(who) as client:
        response = client.post("/v1/search", json={"query": "lunch"})
    assert response.status_code == 401 and reason in response.json()["error"]["message"]
    assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]["message"]
    unknown = httpx.post(f"{api.url}/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer rag_nope"})
    assert unknown.status_code == 401


def test_read_tokens_cannot_administer(api: Api) -> None:
    with api.client("sam") as client:
        for method, path in (("GET", "/v1/audit"), ("GET", "/v1/feedback"), ("GET", "/v1/jobs/1"),
                             ("DELETE", "/v1/documents/1")):
            assert client.request(method, path).status_code == 403, path
        assert client.post("/v1/ingest", json={"folder": str(api.docs)}).status_code == 403


def test_a_salesperson_never_sees_other_groups_documents(api: Api) -> None:
    hidden = (HR_MARK, BOARD_MARK, "7 percent")
    with api.client("sam") as client:
        for mode, distinct in (("dense", True), ("keyword", True), ("hybrid", True), ("hybrid", False)):
            results = client.post("/v1/search", json={"queries": PROBES, "k": 10, "mode": mode,
                                                      "distinct": distinct}).json()["results"]
            assert len(results) == len(PROBES)
            hits = [r["hits"] for r in results]  # (the queries themselves name the markers)
            assert not any(mark in shown_text(hits) for mark in hidden), mode
        assert SALES_MARK in shown_text(client.post("/v1/search", json={"query": "Acme deal"}).json())
        answers = client.post("/v1/ask", json={"questions": PROBES[:4]}).json()["answers"]
        assert len(answers) == 4 and not any(mark in shown_text(answers) for mark in hidden)
        asked = client.post("/v1/ask", json={"question": f"What does {HR_MARK} say?"}).json()["answers"][0]
        assert HR_MARK not in shown_text({k: v for k, v in asked.items() if k != "question"})
        # the crowd: 300 closer finance documents do not push out the three the salesperson may read
        crowd = client.post("/v1/search", json={"query": CROWD_QUESTION, "k": 3}).json()["results"][0]["hits"]
        assert sorted(Path(h["path"]).name for h in crowd) == ["note-0.txt", "note-1.txt", "note-2.txt"]
        listed = client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
        folders = {Path(d["path"]).parent.name for d in listed}
        assert folders == {"sales", "handbook"}
        hr_doc = next(d for d in api.state.service.searcher.reader.view.list_documents("salary-review"))
        assert client.get(f"/v1/documents/{hr_doc.doc_id}").status_code == 404  # as if it did not exist
        assert client.get(f"/v1/documents/{hr_doc.doc_id}/file").status_code == 404
    with api.client("hanna") as client:
        assert HR_MARK in shown_text(client.post("/v1/search", json={"query": "salary review"}).json())
        detail = client.get(f"/v1/documents/{hr_doc.doc_id}").json()
        assert detail["path"].endswith("salary-review.txt") and HR_MARK in detail["chunks"][0]["text"]


def test_documents_listing_filters_and_pages(api: Api) -> None:
    with api.client("ada") as client:
        everything = client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
        assert len(everything) == 308  # the admin reads all, the board's unlabelled minutes too
        page = client.get("/v1/documents", params={"prefix": str(api.docs / "finance"), "limit": 10,
                                                   "offset": 10}).json()["documents"]
        assert [Path(d["path"]).name for d in page] == [f"claim-{i:03d}.txt" for i in range(10, 20)]
        assert client.get("/v1/documents", params={"type": "pdf"}).json()["documents"] == []
        assert client.get("/v1/documents", params={"type": "../x"}).status_code == 400


def test_files_are_served_only_as_they_were_indexed(api: Api) -> None:
    pipeline = api.docs / "sales" / "pipeline.txt"
    doc = next(iter(api.state.service.searcher.reader.view.list_documents("pipeline")))
    original = pipeline.read_bytes()
    with api.client("sam") as client:
        got = client.get(f"/v1/documents/{doc.doc_id}/file")
        assert got.status_code == 200 and got.content == original
        assert got.headers["content-disposition"].startswith("attachment") and "sandbox" in got.headers[
            "content-security-policy"]
        try:  # an insider with write access to the share swaps the file for a link to HR's
            pipeline.unlink()
            pipeline.symlink_to(api.docs / "hr" / "salary-review.txt")
            swapped = client.get(f"/v1/documents/{doc.doc_id}/file")
            assert swapped.status_code == 409 and HR_MARK not in swapped.text
            pipeline.unlink()
            pipeline.write_bytes(original + b" edited")
            assert client.get(f"/v1/documents/{doc.doc_id}/file").status_code == 409
        finally:
            pipeline.unlink()
            pipeline.write_bytes(original)
        assert client.get(f"/v1/documents/{doc.doc_id}/file").content == original
    downloads = [r for r in api.state.db.rows("audit") if r["outcome"] == "downloaded"]
    assert downloads and downloads[0]["username"] == "sam" and downloads[0]["shown"][0]["path"] == str(pipeline)


# -- OpenAI's clients -------------------------------------------------------------------------------------
def test_openai_client_asks_streams_and_continues_a_conversation(api: Api) -> None:
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=f"{api.url}/v1", api_key=api.tokens["sam"], max_retries=0)
    reply = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "When is lunch served?"}])
    assert "11:30" in reply.choices[0].message.content
    extra = reply.model_extra["rag"]
    assert extra["sources"][0]["path"].endswith("lunch.txt") and extra["abstained"] is False
    conversation = extra["conversation_id"]
    stream = client.chat.completions.create(model="rag", stream=True, extra_body={"conversation_id": conversation},
                                            messages=[{"role": "user", "content": "and until when?"}])
    text, last = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        last = chunk
    assert last is not None and last.choices[0].finish_reason == "stop"
    final = last.model_extra["rag"]
    assert text.strip().endswith(final["answer"].strip())
    assert final["searched"] != "and until when?" and "lunch" in final["searched"].lower()  # stood alone
    with api.client("sam") as http:
        turns = http.get(f"/v1/conversations/{conversation}").json()["turns"]
        assert [t["question"] for t in turns] == ["When is lunch served?", "and until when?"]
    # another user can neither read nor continue it
    other = OpenAI(base_url=f"{api.url}/v1", api_key=api.tokens["hanna"], max_retries=0)
    with pytest.raises(NotFoundError):
        other.chat.completions.create(model="rag", extra_body={"conversation_id": conversation},
                                      messages=[{"role": "user", "content": "what did I ask?"}])
    with api.client("hanna") as http:
        assert http.get(f"/v1/conversations/{conversation}").status_code == 404
        assert conversation not in shown_text(http.get("/v1/conversations").json())
        assert http.delete(f"/v1/conversations/{conversation}").status_code == 404
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_deleting_a_conversation_removes_its_text(api: Api) -> None:
    secret = "Is the QUOKKA-PROJECT budget approved?"
    with api.client("hanna") as http:
        done = http.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": secret}]})
        conversation = done.json()["rag"]["conversation_id"]
        assert http.patch(f"/v1/conversations/{conversation}", json={"title": "budget"}).json()["title"] == "budget"
        assert http.delete(f"/v1/conversations/{conversation}").status_code == 204
        assert http.get(f"/v1/conversations/{conversation}").status_code == 404
    # the audit log keeps the question (its retention decides); the conversation tables hold it no more
    db_path = api.state.settings.audit.app_db
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM turns WHERE question LIKE '%QUOKKA%'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM audit WHERE question LIKE '%QUOKKA%'").fetchone()[0] == 1


def test_langchain_chat_openai_talks_to_the_api(api: Api) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=f"{api.url}/v1", api_key=api.tokens["sam"], model="rag", max_retries=0)
    assert "11:30" in chat.invoke("When is lunch served in the cafeteria?").content
    assert "11:30" in "".join(str(c.content) for c in chat.stream("When is lunch served in the cafeteria?"))


# -- limits -------------------------------------------------------------------------------------------------
def test_bad_bodies_are_refused_with_one_line(api: Api) -> None:
    with api.client("sam") as client:
        big = client.post("/v1/search", json={"query": "x" * (300 * 1024)})
        assert big.status_code == 413 and "RAG_API_MAX_BODY_KB" in big.json()["error"]["message"]
        chunked = client.post("/v1/search", content=iter([b'{"query": "', b"x" * (300 * 1024), b'"}']),
                              headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        broken = client.post("/v1/search", content=b'{"query": ', headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and list(broken.json()) == ["error"]
        form = client.post("/v1/search", content=b"query=x", headers={"Content-Type": "text/plain"})
        assert form.status_code == 415  # a web page's cross-site form post never reaches the handler
        assert client.post("/v1/search", json={"query": "x", "queries": ["y"]}).status_code == 400
        assert client.post("/v1/search", json={"query": "x", "k": 0}).status_code == 400
        assert client.post("/v1/ask", json={"question": "lunch " * 1000}).status_code == 400


def test_a_flood_gets_429_and_the_service_answers_right_after(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with api.client("flood") as client, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.get("/v1/models"), range(400)))
        refused = [r for r in codes if r.status_code == 429]
        assert refused and int(refused[0].headers["retry-after"]) >= 1
    with api.client("sam") as client:  # another token is not slowed by the flood
        assert client.get("/v1/models").status_code == 200
    time.sleep(int(refused[0].headers["retry-after"]))
    with api.client("flood") as client:
        assert client.get("/v1/models").status_code == 200


def test_a_busy_generator_is_429_not_a_hang(api: Api) -> None:
    slots = api.state.service.generator.slots
    slots.acquire()  # another question is being answered
    try:
        with api.client("sam") as client:
            started = time.monotonic()
            chat = client.post("/v1/chat/completions", json={"model": "rag", "stream": True,
                                                             "messages": [{"role": "user", "content": "lunch?"}]})
            assert chat.status_code == 429 and chat.headers["retry-after"] == "2"
            assert not any(c["title"] == "lunch?" for c in client.get("/v1/conversations").json()["conversations"])
            ask = client.post("/v1/ask", json={"question": "When is lunch served?"})
            assert ask.status_code == 429 and "busy" in ask.json()["error"]["message"]
            assert time.monotonic() - started < 10
    finally:
        slots.release()
    assert "rag_api_busy_refusals_total 2.0" in httpx.get(f"{api.url}/metrics").text


def test_a_client_that_leaves_mid_stream_frees_the_generator(api: Api) -> None:
    """A second server over the same index whose model writes a word every 20 ms for 20 s: the client
    reads a few words and leaves; the slot is free at once and the model stopped."""
    settings = api.state.settings.model_copy(update={"answer_mode": "generative"})
    generator = scripted_generator(" ".join(f"word{i}" for i in range(1000)), delay_s=0.02)
    service = QAService(api.state.service.searcher, generator, settings.answers)
    state = ApiState(settings, service, api.state.db, api.state.jobs, api.state.users, False, RateLimiter(1000))
    body = {"model": "rag", "stream": True, "max_tokens": 1000,
            "messages": [{"role": "user", "content": "When is lunch served in the cafeteria?"}]}
    with serve(state) as url, api.client("sam") as client:
        client.base_url = httpx.URL(url)
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            words = [line for line, _ in zip((x for x in response.iter_lines() if "word" in x), range(5))]
            assert len(words) == 5 and generator.slots.in_use == 1
        left = time.monotonic()
        wait_for(lambda: generator.slots.in_use == 0, 2)
        assert time.monotonic() - left < 2 and generator.backend.closed == 1  # the model was told to stop
    wait_for(lambda: any("disconnected" in r["outcome"] for r in api.state.db.rows("audit", 5)), 5)
    [left_turn] = [r for r in api.state.db.rows("audit", 5) if "disconnected" in r["outcome"]]
    assert left_turn["username"] == "sam" and left_turn["question"] == body["messages"][0]["content"]
    # the client was shown words built from passages: those passages are on the record
    assert any(str(s["path"]).endswith("lunch.txt") for s in left_turn["shown"])  # type: ignore[union-attr]


# Every route, by whether it shows document content (a passage, a document's text or file, a page image, a
# stored answer, the list of what a user may read). A new route must be put in one of the two, and the
# first is checked to write an audit row for each successful call.
SHOWS_CONTENT = {("POST", "/v1/search"), ("POST", "/v1/ask"), ("POST", "/v1/chat/completions"),
                 ("GET", "/v1/documents"), ("GET", "/v1/documents/{doc_id}"), ("GET", "/v1/documents/{doc_id}/file"),
                 ("GET", "/v1/chunks/{chunk_id}/page"), ("GET", "/v1/conversations/{conversation_id}")}
SHOWS_NO_CONTENT = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/v1/models"),
                    ("GET", "/v1/conversations"),  # titles: the user's own first questions
                    ("PATCH", "/v1/conversations/{conversation_id}"), ("DELETE", "/v1/conversations/{conversation_id}"),
                    ("POST", "/v1/ingest"), ("GET", "/v1/jobs/{job_id}"), ("DELETE", "/v1/documents/{doc_id}"),
                    ("GET", "/v1/audit"), ("GET", "/v1/feedback"),  # admins' own records
                    ("GET", "/docs/openapi-3.0.json"), ("GET", "/docs"), ("GET", "/openapi.json")}


def test_every_route_that_shows_document_content_is_audited(api: Api) -> None:
    from fastapi.routing import APIRoute

    routes = {(method, r.path) for r in create_app(api.state).routes if isinstance(r, APIRoute)
              for method in r.methods if method != "HEAD"}
    assert routes - SHOWS_CONTENT - SHOWS_NO_CONTENT == set(), "classify the new route above"
    with api.client("hanna") as client:
        [hr] = client.get("/v1/documents", params={"contains": "salary"}).json()["documents"]
        answer = client.post("/v1/chat/completions", json={
            "model": "rag", "messages": [{"role": "user", "content": "What is the salary band?"}]}).json()
        calls = {("POST", "/v1/search"): lambda: client.post("/v1/search", json={"query": "salary review"}),
                 ("POST", "/v1/ask"): lambda: client.post("/v1/ask", json={"question": "What is the salary band?"}),
                 ("POST", "/v1/chat/completions"): lambda: client.post("/v1/chat/completions", json={
                     "model": "rag", "messages": [{"role": "user", "content": "Who gets a raise?"}]}),
                 ("GET", "/v1/documents"): lambda: client.get("/v1/documents"),
                 ("GET", "/v1/documents/{doc_id}"): lambda: client.get(f"/v1/documents/{hr['id']}"),
                 ("GET", "/v1/documents/{doc_id}/file"): lambda: client.get(f"/v1/documents/{hr['id']}/file"),
                 ("GET", "/v1/conversations/{conversation_id}"): lambda: client.get(
                     f"/v1/conversations/{answer['rag']['conversation_id']}")}
        # the page image of a chunk is audited as "viewed source" (a PDF's, tests/test_browser_sources.py)
        assert set(calls) == SHOWS_CONTENT - {("GET", "/v1/chunks/{chunk_id}/page")}
        for route, call in calls.items():
            before = len(api.state.db.rows("audit", 100_000))
            response = call()
            assert response.status_code == 200, (route, response.text)
            after = api.state.db.rows("audit", 100_000)
            assert len(after) > before and after[0]["username"] == "hanna", route


# -- administration ---------------------------------------------------------------------------------------
def job_done(client: httpx.Client, job: int, seconds: float = 120) -> dict:
    """The job once it stopped running, polled four times a second (well inside the request budget, however
    long the first run takes to load its models)."""
    deadline = time.monotonic() + seconds
    while (state := client.get(f"/v1/jobs/{job}").json())["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.25)
    return state


def test_admin_indexes_follows_the_job_removes_and_reads_the_audit(api: Api) -> None:
    write(api.docs / "handbook" / "api-new" / "parking.txt", "Visitors park in the north garage, level 2.")
    with api.client("ada") as client:
        started = client.post("/v1/ingest", json={"folder": str(api.docs / "handbook" / "api-new")})
        assert started.status_code == 202
        job = started.json()["job_id"]
        finished = job_done(client, job)
        assert finished["status"] == "done" and finished["summary"]["files_indexed"] == 1, finished
        [doc] = client.get("/v1/documents", params={"contains": "parking"}).json()["documents"]
        assert client.post("/v1/ingest", json={"folder": "/etc"}).status_code == 403
        removal = client.delete(f"/v1/documents/{doc['id']}")
        assert removal.status_code == 202
        assert job_done(client, removal.json()["job_id"])["status"] == "done"
        assert client.get("/v1/documents", params={"contains": "parking"}).json()["documents"] == []
        assert client.get("/v1/jobs/999999").status_code == 404
        with api.client("sam") as sam:  # another user's search: the admin reads it in the audit log
            assert sam.post("/v1/search", json={"query": "lunch"}).status_code == 200
        audit = client.get("/v1/audit").json()["audit"]
        assert any(row["username"] == "sam" and row["outcome"] == "searched" for row in audit)
        csv = client.get("/v1/audit", params={"format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("created,username")
        assert client.get("/v1/feedback").json() == {"feedback": []}


def test_docs_page_loads_nothing_from_outside(api: Api) -> None:
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(require_chromium()), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{api.url}/docs")
        page.locator(".opblock-summary-path").first.wait_for(timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        browser.close()
    assert any("/v1/chat/completions" in p for p in paths), paths
    assert requested and all(u.startswith(api.url) or u.startswith("data:") for u in requested), requested


# -- the command line ---------------------------------------------------------------------------------------
def test_rag_token_and_rag_api_from_the_command_line(api: Api, tmp_path: Path) -> None:
    settings = api.state.settings
    env = dict(os.environ, PYTHONPATH=str(REPO), RAG_DEVICE="cpu", RAG_UI_USERS_FILE=str(settings.page.users_file),
               RAG_APP_DB=str(tmp_path / "app.sqlite"), RAG_MODEL_CACHE_DIR=str(settings.model_cache_dir),
               RAG_INDEX_DIR=str(settings.index_dir))
    rag = [sys.executable, "-m", "ui.cli"]
    created = subprocess.run([*rag, "token", "create", "bot", "--user", "sam"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("rag_") and token not in (tmp_path / "app.sqlite").read_bytes().decode("latin-1")
    refused = subprocess.run([*rag, "token", "create", "root", "--user", "sam", "--scope", "admin"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "not an admin" in refused.stderr
    listed = json.loads(subprocess.run([*rag, "token", "list", "--json"], env=env, capture_output=True, text=True,
                                       timeout=60).stdout)
    assert [(t["name"], t["user"], t["state"]) for t in listed] == [("bot", "sam", "active")]
    server = subprocess.Popen([*rag, "api", "--host", "127.0.0.1", "--port", "0"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "serving the API on http://127.0.0.1:" in line, line
        url = line.split()[4]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{url}/v1/search", json={"query": "Acme"}, headers=headers).status_code == 200
        assert httpx.post(f"{url}/v1/search", json={"query": "Acme"}).status_code == 401
        subprocess.run([*rag, "token", "revoke", "bot"], env=env, check=True, capture_output=True, timeout=60)
        assert httpx.post(f"{url}/v1/search", json={"query": "Acme"}, headers=headers).status_code == 401
    finally:
        server.terminate()
        server.wait(10)
    alone = {k: v for k, v in env.items() if k != "RAG_UI_USERS_FILE"}
    single = subprocess.run([*rag, "api", "--host", "0.0.0.0"], env=alone,
                            capture_output=True, text=True, timeout=60)
    assert single.returncode != 0 and "binds to 127.0.0.1 only" in single.stderr


def test_anonymous_clients_cannot_grow_the_metrics_and_huge_ids_are_refused(api: Api) -> None:
    """Requests are counted before their token is checked: random methods and paths from anyone must not add
    series. Ids past SQLite's 64 bits were a 500 (OverflowError)."""
    def series() -> int:
        return sum(1 for line in httpx.get(f"{api.url}/metrics").text.splitlines()
                   if line.startswith("rag_api_requests_total{"))

    with httpx.Client(base_url=api.url, timeout=30) as anonymous:
        for i in range(40):
            anonymous.request(f"X{i}METHOD", f"/v1/random-{i}")
        first = series()
        for i in range(40, 400):
            anonymous.request(f"X{i}METHOD", f"/v1/random-{i}")
        assert series() <= first + 3  # a handful of (method "other", status) pairs, never one per request
    huge = 2**64 + 5
    with api.client("ada") as client:
        for path in (f"/v1/documents/{huge}", f"/v1/documents/{huge}/file", f"/v1/chunks/{huge}/page",
                     f"/v1/jobs/{huge}"):
            assert client.get(path).status_code == 400, path


def test_one_tokens_batch_does_not_starve_anothers_question(api: Api) -> None:
    """One generator, a model that takes 0.3 s per answer: sam's batch of 8 questions waits its turn like
    everyone's; hanna's one question, asked while it runs, is answered after at most one more of sam's
    (turns between users), not after all of them and not with 429. A batch counts each question against the
    token's answer budget, and max_tokens cannot exceed the settings'."""
    from rag.generation import Generation, GenerationSlots
    from rag.generation.formats import DollyFormat
    from tests.conftest import ScriptedBackend

    settings = api.state.settings.model_copy(update={"answer_mode": "generative", "max_new_tokens": 12})
    generator = Generation(ScriptedBackend(" ".join(f"w{i}" for i in range(40)), delay_s=0.025), DollyFormat(),
                           GenerationSlots(1, 30.0))
    service = QAService(api.state.service.searcher, generator, settings.answers)
    state = ApiState(settings, service, api.state.db, api.state.jobs, api.state.users, False, RateLimiter(1000),
                     answer_limiter=RateLimiter(60, burst=10))
    finished: dict[str, float] = {}
    with serve(state) as url:
        def batch() -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api.tokens['sam']}"}, timeout=120) as c:
                response = c.post("/v1/ask", json={"questions": [f"When is lunch served? ({i})" for i in range(8)]})
                assert response.status_code == 200
                finished["batch"] = time.monotonic()

        started = time.monotonic()
        runner = threading.Thread(target=batch)
        runner.start()
        time.sleep(0.5)  # the batch holds the generator
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api.tokens['hanna']}"}, timeout=120) as c:
            response = c.post("/v1/chat/completions", json={
                "model": "rag", "max_tokens": 4000, "messages": [{"role": "user", "content": "Who gets a raise?"}]})
            finished["single"] = time.monotonic()
        runner.join()
        assert response.status_code == 200
        assert len(response.json()["choices"][0]["message"]["content"].split()) <= 12  # the settings' cap
        assert finished["single"] - started < 0.5 * (finished["batch"] - started)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api.tokens['sam']}"}, timeout=120) as c:
            refused = c.post("/v1/ask", json={"questions": [f"q{i}" for i in range(12)]})  # over what is left
            assert refused.status_code == 429 and "questions" in refused.json()["error"]["message"]
