"""`rag api`: the HTTP API over the same QA service, permissions, audit log and conversations as the page.

One process, models loaded once. JSON under /v1 (the OpenAPI schema at /openapi.json is the contract);
`POST /v1/chat/completions` speaks OpenAI's protocol so existing clients work unchanged, with the
sources, abstention and per-sentence support in an extra `rag` field. Every request but the health
probes, the metrics and the docs needs a bearer token (with no users configured at all, the API only
listens on loopback and needs none). The threat model is in docs/security.md.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.followup import standalone_question
from rag.generation.base import GenerationParams, GeneratorBusyError
from rag.index import IndexNotFoundError, IndexView, RagIndexError
from rag.network import is_loopback
from rag.qa import Answer, QAService
from rag.settings import ConfigError, Settings
from rag.store import DocumentInfo
from rag.types import page_unit
from ui.api.auth import ApiError, Caller, RateLimiter, authenticate
from ui.api.schemas import AskRequest, ChatRequest, IngestRequest, RenameRequest, SearchRequest
from ui.appdb import AppDB
from ui.auth import StoredUser
from ui.jobs import JobBusyError, JobManager, PathNotAllowedError
from ui.sources import SourceChangedError, SourceViewer, read_indexed_file

log = logging.getLogger(__name__)
MODEL_NAME = "rag"  # the one model this API offers, as OpenAI clients name it
BUSY_RETRY_S = 2
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass
class ApiState:
    """What every request shares: built once per process."""

    settings: Settings
    service: QAService
    db: AppDB
    jobs: JobManager
    users: dict[str, StoredUser] | None
    single_user: bool
    limiter: RateLimiter
    clock: Callable[[], float] = time.time
    viewer: SourceViewer | None = None  # the source viewer's render cache (made from the settings if None)


def build_state(settings: Settings) -> ApiState:
    """The models (loaded now, not at the first request), the app database and the job runner."""
    from rag.qa import build_service
    from ui.auth import load_users

    page = settings.page
    users = load_users(page.users_file) if page.users_file else None
    service = build_service(settings)
    try:
        service.warm_up()
    except IndexNotFoundError:
        pass  # an empty index is a normal first state: /readyz says so, admins can ingest
    db = AppDB(settings.audit.app_db, settings.audit.retention_days)
    return ApiState(settings, service, db, JobManager(settings, service.embedder, db), users,
                    single_user=users is None and not page.oidc, limiter=RateLimiter(settings.api.rate_per_minute))


# -- plumbing -------------------------------------------------------------------------------------------
def error_body(message: str, kind: str) -> dict[str, Any]:
    """OpenAI's error shape, so its clients show the message: {"error": {"message", "type"}}."""
    return {"error": {"message": message, "type": kind}}


class Guard:
    """Pure ASGI middleware, before any body is parsed: refuses bodies over the limit (413), bodies that
    are not JSON (415: a web page cannot post JSON cross-site without a CORS preflight, which this API
    never grants), foreign Host names in single-user mode (DNS rebinding: 421), and counts requests."""

    def __init__(self, app: ASGIApp, max_body: int, single_user: bool, metrics: "Metrics") -> None:
        self.app = app
        self.max_body = max_body
        self.single_user = single_user
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        started = time.perf_counter()
        status_seen = [0]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = int(message["status"])
            await send(message)

        refusal = self.refusal(scope, headers)
        refused = [False]  # set once this middleware answered: what the app sends after is dropped
        received = [0]

        async def refuse(status: int, message: str, kind: str) -> None:
            refused[0] = True
            await JSONResponse(error_body(message, kind), status)(scope, receive, counting_send)

        async def app_send(message: Message) -> None:
            if not refused[0]:
                await counting_send(message)

        async def limited_receive() -> Message:
            """The body, cut off at the limit even when no Content-Length was sent (chunked)."""
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > self.max_body and not refused[0]:
                    await refuse(413, f"request body larger than {self.max_body} bytes (RAG_API_MAX_BODY_KB)",
                                 "invalid_request_error")
                    return {"type": "http.disconnect"}
            return message

        try:
            if refusal is not None:
                await refuse(*refusal)
                return
            await self.app(scope, limited_receive, app_send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.observe(endpoint, scope["method"], status_seen[0], time.perf_counter() - started)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if self.single_user:
            try:
                host = urlsplit(f"//{headers.get('host', '')}").hostname or ""  # "[::1]:8000" -> "::1"
            except ValueError:
                host = "invalid"
            if host and host not in LOOPBACK_HOSTS and not is_loopback(host):
                return 421, "this API answers only at localhost in single-user mode", "invalid_request_error"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return 413, f"request body larger than {self.max_body} bytes (RAG_API_MAX_BODY_KB)", "invalid_request_error"
        if scope["method"] in ("POST", "PUT", "PATCH") and (length not in (None, "0")
                                                             or "transfer-encoding" in headers):
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, "send the body as JSON with 'Content-Type: application/json'", "invalid_request_error"
        return None


class Metrics:
    """Prometheus series, in a registry of this app's own (no process-wide state)."""

    def __init__(self, state: ApiState) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_api_requests", "Requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("rag_api_request_seconds", "Request latency by endpoint", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.busy = Counter("rag_api_busy_refusals", "Questions refused because the generator was busy",
                            registry=self.registry)
        slots = state.service.generator.slots
        Gauge("rag_generations_in_flight", "Answers being generated now", registry=self.registry
              ).set_function(lambda: slots.in_use)
        Gauge("rag_generation_slots", "Answers that may be generated at once", registry=self.registry
              ).set_function(lambda: slots.limit)
        reader = state.service.searcher.reader
        Gauge("rag_index_version", "Published index version being searched", registry=self.registry
              ).set_function(lambda: reader.manifest.version if reader.manifest else 0)
        Gauge("rag_index_vectors", "Vectors in the searched index version", registry=self.registry
              ).set_function(lambda: reader.manifest.vectors if reader.manifest else 0)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


async def iterate_closing(items: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking iterator (the model's pieces) as an async one, each step in a worker thread. When the
    consumer stops (the client went away), the iterator is closed at once, after any step in flight, so
    the generation slot is given back immediately."""
    lock = threading.Lock()
    done = object()

    def step() -> Any:
        with lock:
            return next(items, done)

    try:
        while True:
            item = await anyio.to_thread.run_sync(step)
            if item is done:
                return
            yield item
    finally:
        def close() -> None:
            with lock:
                getattr(items, "close", lambda: None)()

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)


def sse(data: Any) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


# -- the application ------------------------------------------------------------------------------------
def create_app(state: ApiState) -> FastAPI:
    from swagger_ui_bundle import swagger_ui_path

    app = FastAPI(title="On-prem document Q&A", version="1", docs_url=None, redoc_url=None,
                  description="Answers from the organization's own documents, with sources. Every call acts "
                              "as the token's user and sees only what that user may read.")
    metrics = Metrics(state)
    app.add_middleware(Guard, max_body=state.settings.api.max_body_bytes, single_user=state.single_user,
                       metrics=metrics)
    # the docs page's scripts come from this server (swagger-ui-bundle), never from a CDN
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    service, db = state.service, state.db
    answers = state.settings.answers

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error"), 400)

    bearer = HTTPBearer(auto_error=False, description="An API token from `rag token create`")

    def caller(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
        # (the bearer dependency documents the scheme in the schema; the header is checked here)
        who = authenticate(request.headers.get("authorization", ""), db, state.users, state.single_user,
                           state.clock())
        state.limiter.take(who.key)
        return who

    def admin(who: Caller = Depends(caller)) -> Caller:
        if who.scope != "admin":
            raise ApiError(403, "this needs an admin token (`rag token create ... --scope admin` for an admin user)",
                           "permission_error")
        return who

    def view() -> IndexView:
        reader = service.searcher.reader
        try:
            reader.refresh()
        except IndexNotFoundError:
            raise ApiError(503, "no documents have been indexed yet: an admin indexes a folder first",
                           "service_unavailable", {"Retry-After": "60"}) from None
        assert reader.view is not None
        return reader.view

    def busy(exc: BaseException) -> ApiError:
        metrics.busy.inc()
        return ApiError(429, str(exc), "rate_limit_error", {"Retry-After": str(BUSY_RETRY_S)})

    def failure(exc: BaseException, who: Caller) -> ApiError:
        """What went wrong, in one line (details for admins only, as on the page)."""
        if isinstance(exc, GeneratorBusyError):
            return busy(exc)
        if isinstance(exc, IndexNotFoundError):
            return ApiError(503, "no documents have been indexed yet", "service_unavailable", {"Retry-After": "60"})
        if isinstance(exc, ValueError):
            return ApiError(400, str(exc))
        detail = f": {exc}" if who.user.is_admin else ""
        if isinstance(exc, TimeoutError):
            return ApiError(504, f"the model took too long to answer{detail}", "timeout")
        if isinstance(exc, (ConnectionError, ConfigError, RagIndexError)):
            return ApiError(503, f"the answer service is not available{detail}: tell an administrator",
                            "service_unavailable", {"Retry-After": "30"})
        log.exception("request failed")
        return ApiError(500, "the request failed: tell an administrator", "server_error")

    # -- health and metrics -----------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    def readyz() -> JSONResponse:
        """Ready to answer: the index is readable and the models are loaded."""
        problems = []
        try:
            version = view().manifest.version
        except ApiError as exc:
            problems.append(exc.message)
            version = 0
        if service.embedder is not None and getattr(service.embedder, "device", "") == "unloaded":
            problems.append("the embedding model is not loaded")
        if service.generator.device == "unloaded":
            problems.append("the answer model is not loaded")
        body = {"status": "ready" if not problems else "not ready", "index_version": version, "problems": problems}
        return JSONResponse(body, 200 if not problems else 503)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics_text() -> Response:
        """Prometheus metrics: requests and latency per endpoint, generations in flight, busy refusals,
        the index version and size."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs/openapi-3.0.json", include_in_schema=False)
    def docs_schema() -> dict[str, Any]:
        return as_openapi_30(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # the bundled Swagger UI (4.x) renders OpenAPI 3.0: it gets a 3.0 copy of the 3.1 contract
        return get_swagger_ui_html(openapi_url="/docs/openapi-3.0.json", title="Document Q&A API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from swagger.io

    # -- search and answers ----------------------------------------------------------------------------
    # search and ask return their JSON directly: FastAPI's response-model pass over every hit's text
    # cost more than the rest of the API's work per call
    @app.post("/v1/search", tags=["answers"], response_class=JSONResponse)
    def search(body: SearchRequest, who: Caller = Depends(caller)) -> JSONResponse:
        """Passages for one query or a batch, best first (`rag search --json`'s shape per query), only from
        documents the caller may read."""
        try:
            results = service.searcher.search_batch(body.texts, body.k, body.mode, who.principal)
        except Exception as exc:
            raise failure(exc, who) from exc
        return JSONResponse({"results": [{"query": r.query, "hits": [{**h.metadata(), "text": h.text} for h in r.hits],
                                          "timings_ms": r.timings_ms} for r in results]})

    @app.post("/v1/ask", tags=["answers"], response_class=JSONResponse)
    def ask(body: AskRequest, who: Caller = Depends(caller)) -> JSONResponse:
        """Answers for one question or a batch (`rag ask --json`'s shape), each with its sources, the support
        of each sentence and whether the service abstained."""
        out = []
        for question in body.texts:
            started = time.perf_counter()
            try:
                answer = service.ask(question, passages=body.passages, mode=body.mode, principal=who.principal)
            except Exception as exc:
                error = failure(exc, who)
                db.audit_answer(who.user.username, question, question, None, error.message)
                raise error from exc
            db.audit_answer(who.user.username, question, question, answer, seconds=time.perf_counter() - started)
            out.append(answer.to_dict())
        return JSONResponse({"answers": out})

    @app.get("/v1/models", tags=["answers"])
    def models(who: Caller = Depends(caller)) -> dict[str, Any]:
        """OpenAI's model list: the one model, `rag`."""
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "local"}]}

    @app.post("/v1/chat/completions", tags=["answers"])
    async def chat(body: ChatRequest, who: Caller = Depends(caller)) -> Response:
        """OpenAI-compatible: the last user message is the question, earlier ones make a follow-up stand
        alone (or the stored turns of `conversation_id`). The answer comes with an extra `rag` field (sources,
        support, abstention, the conversation's id); streamed, in the last chunk before `[DONE]`."""
        if body.model != MODEL_NAME:
            raise ApiError(404, f"unknown model {body.model!r}: this service has one model, {MODEL_NAME!r}",
                           "invalid_request_error")
        users_turns = [m.text for m in body.messages if m.role == "user"]
        if not users_turns or not users_turns[-1].strip():
            raise ApiError(400, "messages: the last user message (the question) is missing or empty")
        question = users_turns[-1].strip()
        username = who.user.username
        if body.conversation_id:
            if db.conversation(username, body.conversation_id) is None:
                raise ApiError(404, "no such conversation for this user", "not_found_error")
            history = [t.question for t in db.turns(username, body.conversation_id)]
        else:
            history = users_turns[:-1]
        searched = standalone_question(history, question)
        if len(searched) > answers.max_question_chars:
            raise ApiError(400, f"the question is longer than {answers.max_question_chars} characters "
                                "(RAG_MAX_QUESTION_CHARS): shorten it")
        params = GenerationParams(max_new_tokens=body.max_completion_tokens or body.max_tokens or answers.max_new_tokens,
                                  temperature=answers.temperature if body.temperature is None else body.temperature,
                                  timeout_s=answers.timeout_s)
        try:
            service.generator.slots.refuse_if_full()  # before any byte, not mid-stream
        except GeneratorBusyError as exc:
            raise busy(exc) from None
        # a conversation is started only for a question that will be answered (not a refused one)
        conversation_id = body.conversation_id or db.start_conversation(username, question)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        started = time.perf_counter()

        def finish(answer: Answer | None, error: str = "") -> dict[str, Any]:
            db.audit_answer(username, question, searched, answer, error,
                            time.perf_counter() - started if answer else None)
            data = answer.to_dict() if answer else {}
            db.add_turn(username, conversation_id, question, searched, data, error)
            return {**data, "searched": searched, "conversation_id": conversation_id}

        if not body.stream:
            try:
                answer = await anyio.to_thread.run_sync(
                    lambda: service.ask(searched, params, principal=who.principal))
            except Exception as exc:
                error = failure(exc, who)
                finish(None, error.message)
                raise error from exc
            extra = finish(answer)
            usage = {"prompt_tokens": 0, "completion_tokens": service.generator.count_tokens(answer.answer),
                     "total_tokens": service.generator.count_tokens(answer.answer)}
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created, "model": MODEL_NAME,
                                 "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                              "message": {"role": "assistant", "content": answer.answer}}],
                                 "usage": usage, "rag": extra})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            return sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
                        **extra})

        async def events() -> AsyncIterator[bytes]:
            streamed = ""
            answer: Answer | None = None
            recorded = False
            try:
                yield chunk({"role": "assistant", "content": ""})
                try:
                    async for item in iterate_closing(service.ask_stream(searched, params, principal=who.principal)):
                        if isinstance(item, Answer):
                            answer = item
                        else:
                            streamed += item
                            yield chunk({"content": item})
                except Exception as exc:  # after the headers: the error travels as OpenAI streams it
                    error = failure(exc, who)
                    recorded = True
                    finish(None, error.message)
                    yield sse(error_body(error.message, error.kind))
                    return
                assert answer is not None
                if answer.answer.strip() != streamed.strip():
                    # the model's text was not backed and a quote replaces it: said plainly, never silently
                    yield chunk({"content": ("\n\n" if streamed else "") + (f"{answer.note}\n\n" if answer.note else "")
                                 + answer.answer})
                recorded = True
                yield chunk({}, "stop", rag=finish(answer))
                yield b"data: [DONE]\n\n"
            finally:
                if not recorded:  # the client went away mid-answer: the question is still on the record
                    finish(None, "the client disconnected before the answer ended")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- conversations --------------------------------------------------------------------------------
    @app.get("/v1/conversations", tags=["conversations"])
    def conversations(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The caller's conversations, the most recent first (the same store as the page's)."""
        return {"conversations": [c.__dict__ for c in db.conversations(who.user.username)]}

    @app.get("/v1/conversations/{conversation_id}", tags=["conversations"])
    def conversation(conversation_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        found = db.conversation(who.user.username, conversation_id)
        if found is None:
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        return {**found.__dict__, "turns": [t.__dict__ for t in db.turns(who.user.username, conversation_id)]}

    @app.patch("/v1/conversations/{conversation_id}", tags=["conversations"])
    def rename(conversation_id: str, body: RenameRequest, who: Caller = Depends(caller)) -> dict[str, str]:
        if not db.rename_conversation(who.user.username, conversation_id, body.title):
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        return {"id": conversation_id, "title": body.title}

    @app.delete("/v1/conversations/{conversation_id}", tags=["conversations"], status_code=204)
    def forget(conversation_id: str, who: Caller = Depends(caller)) -> Response:
        """Delete the conversation and its text (the audit log keeps what its retention says)."""
        if not db.delete_conversation(who.user.username, conversation_id):
            raise ApiError(404, "no such conversation for this user", "not_found_error")
        return Response(status_code=204)

    # -- documents ----------------------------------------------------------------------------------------
    @app.get("/v1/documents", tags=["documents"])
    def documents(who: Caller = Depends(caller), prefix: str = Query("", max_length=4096),
                  type: str = Query("", max_length=16, pattern=r"^[A-Za-z0-9]*$",  # noqa: A002 - the API's name
                                    description="File extension without the dot, e.g. pdf"),
                  contains: str = Query("", max_length=200), offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The documents the caller may read, by path, a page at a time."""
        docs = view().list_documents(contains, limit, groups=who.groups, prefix=prefix,
                                     suffix=f".{type}" if type else "", offset=offset)
        return {"documents": [document_dict(d) for d in docs], "offset": offset, "limit": limit}

    @app.get("/v1/documents/{doc_id}", tags=["documents"])
    def document(doc_id: int, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A document's metadata and its chunks (404 when it does not exist or the caller may not read it:
        the two are not told apart)."""
        v = view()
        found = v.document(doc_id, who.groups)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        return {**document_dict(found), "chunks": [{"chunk_id": h.chunk_id, "position": h.position, "page": h.page,
                                                    "title": h.title, "text": h.text}
                                                   for h in v.document_chunks(doc_id)]}

    @app.get("/v1/documents/{doc_id}/file", tags=["documents"])
    def document_file(doc_id: int, who: Caller = Depends(caller)) -> Response:
        """The original file, as it was indexed: refused (409) when the file on disk is no longer what was
        indexed, so a link or a swapped file never serves anything else."""
        found = view().document(doc_id, who.groups)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        try:
            data = read_indexed_file(Path(found.path), found.content_hash,
                                     int(state.settings.ingest.max_file_mb * 2**20))
        except SourceChangedError as exc:
            raise ApiError(409, str(exc), "conflict") from None
        db.audit_source(who.user.username, "downloaded", found.path, found.doc_id)
        kind = mimetypes.guess_type(found.path)[0] or "application/octet-stream"
        name = Path(found.path).name
        return Response(data, media_type=kind, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    viewer = state.viewer or SourceViewer(int(state.settings.ingest.max_file_mb * 2**20), state.settings.ocr.max_pixels)

    @app.get("/v1/chunks/{chunk_id}/page", tags=["documents"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def chunk_page(chunk_id: int, page: int | None = Query(None, ge=1, le=100_000),
                   who: Caller = Depends(caller)) -> Response:
        """The page holding a cited chunk (or another `page` of its document) as a PNG, the passage
        highlighted: what the page's source viewer shows. 404 when the chunk is not in the current version or
        the caller may not read its document (not told apart); 409 when the file changed since it was
        indexed; 415 for formats without page images (their text is in /v1/documents/{id})."""
        shown = viewer.page(view(), chunk_id, who.principal, page)
        if shown is None:
            raise ApiError(404, "no such chunk", "not_found_error")
        if shown.kind != "image":
            if shown.note:
                raise ApiError(409, shown.note, "conflict")
            raise ApiError(415, "this format has no page images: read the text at /v1/documents/{id}",
                           "unsupported_media_type")
        db.audit_source(who.user.username, "viewed source", shown.document.path, shown.document.doc_id, shown.page)
        return Response(shown.png, media_type="image/png", headers={
            "X-Page": str(shown.page), "X-Pages": str(shown.pages or ""), "X-Highlighted": str(shown.highlighted).lower(),
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})

    # -- administration -----------------------------------------------------------------------------------
    @app.post("/v1/ingest", tags=["admin"], status_code=202)
    def ingest(body: IngestRequest, who: Caller = Depends(admin)) -> dict[str, Any]:
        """Index a folder (under RAG_UI_ALLOWED_ROOTS) in the background; follow it at /v1/jobs/{id}."""
        try:
            job = state.jobs.start_ingest(body.folder, who.user.username)
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), "permission_error") from None
        except JobBusyError as exc:
            raise ApiError(409, str(exc), "conflict", {"Retry-After": "30"}) from None
        return {"job_id": job.run_id, "kind": job.kind, "paths": job.paths}

    @app.get("/v1/jobs/{job_id}", tags=["admin"])
    def job(job_id: int, who: Caller = Depends(admin)) -> dict[str, Any]:
        """An indexing or removal job: its progress while it runs, its summary once done."""
        live = state.jobs.current
        if live is not None and live.run_id == job_id and live.running:
            return {"job_id": job_id, "status": "running", "kind": live.kind, "phase": live.phase,
                    "files_done": live.files_done, "files_total": live.files_total, "chunks": live.chunks}
        run = db.run(job_id)
        if run is None:
            raise ApiError(404, "no such job", "not_found_error")
        return {"job_id": run.id, "status": run.status, "kind": run.kind, "paths": run.paths, "started": run.started,
                "finished": run.finished, "summary": run.summary, "error": run.error}

    @app.delete("/v1/documents/{doc_id}", tags=["admin"], status_code=202)
    def remove(doc_id: int, who: Caller = Depends(admin)) -> dict[str, Any]:
        """Take a document out of the index (it stays out of later runs until restored on the page)."""
        found = view().document(doc_id)
        if found is None:
            raise ApiError(404, "no such document", "not_found_error")
        try:
            job = state.jobs.start_removal([found.path], who.user.username)
        except PathNotAllowedError as exc:
            raise ApiError(403, str(exc), "permission_error") from None
        except JobBusyError as exc:
            raise ApiError(409, str(exc), "conflict", {"Retry-After": "30"}) from None
        return {"job_id": job.run_id, "kind": job.kind, "paths": job.paths}

    def export(table: str, format: str, limit: int) -> Response:  # noqa: A002 - the API's name
        if format == "csv":
            text = db.audit_csv() if table == "audit" else db.feedback_csv()
            return Response(text, media_type="text/csv", headers={
                "Content-Disposition": f"attachment; filename={table}.csv"})
        return JSONResponse({table: db.rows(table, limit)})

    @app.get("/v1/audit", tags=["admin"])
    def audit(who: Caller = Depends(admin), format: str = Query("json", pattern="^(json|csv)$"),  # noqa: A002
              limit: int = Query(1000, ge=1, le=100_000)) -> Response:
        """Who asked what and which documents they were shown, newest first (CSV: everything, oldest first)."""
        return export("audit", format, limit)

    @app.get("/v1/feedback", tags=["admin"])
    def feedback(who: Caller = Depends(admin), format: str = Query("json", pattern="^(json|csv)$"),  # noqa: A002
                 limit: int = Query(1000, ge=1, le=100_000)) -> Response:
        """The thumbs up and down staff gave answers, newest first."""
        return export("feedback", format, limit)

    return app


def as_openapi_30(schema: Any) -> Any:
    """An OpenAPI 3.1 schema as 3.0 for older viewers: `anyOf [X, null]` becomes X with `nullable`,
    `examples` lists become one `example`, and the version says 3.0.3."""
    if isinstance(schema, list):
        return [as_openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: as_openapi_30(value) for key, value in schema.items()}
    if "openapi" in out:
        out["openapi"] = "3.0.3"
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        if len(rest) == 1:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if isinstance(out.get("examples"), list) and "properties" not in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    if out.get("type") == "null":
        out.pop("type")
        out["nullable"] = True
    return out


def document_dict(doc: DocumentInfo) -> dict[str, Any]:
    return {"id": doc.doc_id, "path": doc.path, "title": doc.title, "chunks": doc.chunks, "size": doc.size,
            "modified": doc.modified, "version": doc.version, "unit": page_unit(doc.path)}


