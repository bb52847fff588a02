"""`rag api`: the HTTP API over the same QA service, permissions, audit log and conversations as the page.

One process, models loaded once. JSON under /v1 (the OpenAPI schema at /openapi.json is the contract);
`POST /v1/chat/completions` speaks OpenAI's protocol so existing clients work unchanged, with the
sources, abstention and per-sentence support in an extra `rag` field. Every request but the health
probes, the metrics and the docs needs a bearer token (with no users configured at all, the API only
listens on loopback and needs none). The threat model is in docs/security.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.index import IndexNotFoundError
from rag.network import is_loopback
from rag.qa import QAService
from rag.settings import Settings
from ui.api.auth import ApiError, RateLimiter
from ui.api.context import Context, error_body
from ui.api.routes import admin, answers, conversations, documents, push, service
from ui.appdb import AppDB, AppDBUnavailable
from ui.auth import UsersFile
from ui.jobs import JobManager
from ui.sources import SourceViewer

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# one router per feature, in this order in the schema
ROUTERS = (service.router, answers.router, conversations.router, documents.router, push.router, admin.router)
PUSH_PATH = "/v1/sources/"  # the push routes: their own body limit (RAG_API_PUSH_MAX_MB)


@dataclass
class ApiState:
    """What every request shares: built once per process."""

    settings: Settings
    service: QAService
    db: AppDB
    jobs: JobManager
    users: UsersFile | None  # re-read when it changes: revocation applies at the next request
    single_user: bool
    limiter: RateLimiter
    clock: Callable[[], float] = time.time
    answer_limiter: RateLimiter | None = None  # questions per token (a batch counts each); made from the settings
    viewer: SourceViewer | None = None  # the source viewer's render cache (made from the settings if None)


def build_state(settings: Settings) -> ApiState:
    """The models (loaded now, not at the first request), the app database and the job runner."""
    from rag.qa import build_service
    page = settings.page
    users = UsersFile(page.users_file) if page.users_file else None
    service = build_service(settings)
    try:
        service.warm_up()
    except IndexNotFoundError:
        pass  # an empty index is a normal first state: /readyz says so, admins can ingest
    db = AppDB.from_settings(settings.audit)
    return ApiState(settings, service, db, JobManager(settings, service.embedder, db), users,
                    single_user=users is None and not page.oidc, limiter=RateLimiter(settings.api.rate_per_minute))




# -- plumbing -------------------------------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware, before any body is parsed: refuses bodies over the limit (413), bodies that
    are not JSON (415: a web page cannot post JSON cross-site without a CORS preflight, which this API
    never grants), foreign Host names in single-user mode (DNS rebinding: 421), and counts requests."""

    def __init__(self, app: ASGIApp, max_body: int, single_user: bool, metrics: "Metrics",
                 push_max_body: int | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.push_max_body = push_max_body if push_max_body is not None else max_body
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

        limit, setting = ((self.push_max_body, "RAG_API_PUSH_MAX_MB") if scope["path"].startswith(PUSH_PATH)
                          else (self.max_body, "RAG_API_MAX_BODY_KB"))
        refusal = self.refusal(scope, headers, limit, setting)
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
                if received[0] > limit and not refused[0]:
                    await refuse(413, f"request body larger than {limit} bytes ({setting})", "invalid_request_error")
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

    def refusal(self, scope: Scope, headers: dict[str, str], limit: int, setting: str) -> tuple[int, str, str] | None:
        if self.single_user:
            try:
                host = urlsplit(f"//{headers.get('host', '')}").hostname or ""  # "[::1]:8000" -> "::1"
            except ValueError:
                host = "invalid"
            if host and host not in LOOPBACK_HOSTS and not is_loopback(host):
                return 421, "this API answers only at localhost in single-user mode", "invalid_request_error"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return 413, f"request body larger than {limit} bytes ({setting})", "invalid_request_error"
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
        """Count a request. Every label has a bounded set of values whatever a client sends (anyone may call:
        requests are counted before their token is checked): the route's template or "unmatched", a known
        HTTP method or "other", a status code."""
        method = method if method in HTTP_METHODS else "other"
        status_label = str(status) if 100 <= status <= 599 else "other"
        self.requests.labels(endpoint, method, status_label).inc()
        self.latency.labels(endpoint).observe(seconds)



# -- the application ------------------------------------------------------------------------------------
def create_app(state: ApiState) -> FastAPI:
    """The app: the guard and the metrics, then one router per feature (ui/api/routes/), each depending on
    `Context.caller` or `Context.admin` where its boundary is."""
    from swagger_ui_bundle import swagger_ui_path

    from ui.mcp.http import PATH as MCP_PATH
    from ui.mcp.http import McpEndpoint

    metrics = Metrics(state)
    ctx = Context(state, metrics)
    mcp = McpEndpoint(ctx)  # the MCP server over the same context (ui/mcp/)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ctx.resume_pushes()
        try:
            async with mcp.running():
                yield
        finally:
            ctx.stop_pushes()

    app = FastAPI(title="On-prem document Q&A", version="1", docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Answers from the organization's own documents, with sources. Every call acts "
                              "as the token's user and sees only what that user may read. Agents: the MCP "
                              f"server at {MCP_PATH} (streamable HTTP, the same bearer tokens).")
    app.add_middleware(Guard, max_body=state.settings.api.max_body_bytes, single_user=state.single_user,
                       metrics=metrics, push_max_body=state.settings.api.push_max_bytes)
    # the docs page's scripts come from this server (swagger-ui-bundle), never from a CDN
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {**exc.headers, **({"WWW-Authenticate": 'Bearer realm="rag"'} if exc.status == 401 else {})}
        return JSONResponse(error_body(exc.message, exc.kind), exc.status, headers=headers)

    @app.exception_handler(AppDBUnavailable)
    async def app_db_down(request: Request, exc: AppDBUnavailable) -> JSONResponse:
        """The shared database cannot be reached: this replica answers nothing that needs it (the client may
        retry on another); /readyz says so too."""
        log.error("%s", exc)
        return JSONResponse(error_body("the service's database cannot be reached: try again shortly",
                                       "service_unavailable"), 503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid request')}", "invalid_request_error"), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (a body that is not UTF-8, an unknown path, a method a path does not take)
        in the error shape; a 405's Allow names every method of the path, whichever router declares it."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            methods = {m for route in app.routes if isinstance(route, APIRoute)
                       and route.matches(request.scope)[0] != Match.NONE for m in route.methods}
            headers["Allow"] = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
        kinds = {404: "not_found_error", 405: "invalid_request_error"}
        return JSONResponse(error_body(str(exc.detail), kinds.get(exc.status_code, "invalid_request_error")),
                            exc.status_code, headers=headers)

    for router in ROUTERS:
        app.include_router(router(ctx))
    # the MCP endpoint: authenticated in McpEndpoint, then the SDK (not in the OpenAPI schema: MCP's own)
    app.router.routes.append(Route(MCP_PATH, endpoint=mcp, methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))
    app.openapi = lambda: contract(app)  # type: ignore[method-assign]
    return app


def contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema as this API answers: a request that fails validation is a 400 in the error shape
    (`invalid` above), never FastAPI's 422, so the 422 entries and their schemas are left out."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema
