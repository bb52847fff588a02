"""What every router of the API shares: who the caller is (`caller`, `admin`: the authentication and
authorization boundary, used as FastAPI dependencies), the published index version (`view`), the answer
budget and generation parameters, and how failures become one-line API errors."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.generation.base import GenerationParams, GeneratorBusyError
from rag.index import IndexNotFoundError, IndexView, RagIndexError
from rag.settings import ConfigError
from ui.api.auth import ApiError, Caller, RateLimiter, authenticate
from ui.api.links import neutralise
from ui.sources import SourceViewer

if TYPE_CHECKING:
    from ingest.push import PushCommitter, PushQueue
    from ui.api.app import ApiState, Metrics

log = logging.getLogger("ui.api.app")
BUSY_RETRY_S = 2
MAX_ID = 2**63 - 1  # SQLite's integer: a larger id names nothing (and must not reach the database)


def error_body(message: str, kind: str) -> dict[str, Any]:
    """OpenAI's error shape, so its clients show the message: {"error": {"message", "type"}}."""
    return {"error": {"message": message, "type": kind}}


class Context:
    """Built once per app from its `ApiState`; each router reads what it needs from here."""

    def __init__(self, state: ApiState, metrics: Metrics) -> None:
        self.state = state
        self.metrics = metrics
        self.service, self.db = state.service, state.db
        self.answers = state.settings.answers
        self.link_hosts = state.settings.api.link_hosts
        self.answer_limiter = state.answer_limiter or RateLimiter(
            state.settings.api.answers_per_minute, burst=max(1.0, state.settings.api.answers_per_minute / 2))
        self.viewer = state.viewer or SourceViewer(int(state.settings.ingest.max_file_mb * 2**20),
                                                   state.settings.ocr.max_pixels)
        bearer = HTTPBearer(auto_error=False, description="An API token from `rag token create`")

        def caller(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
            """The token's user, as the users file says now (the boundary every reading /v1 route depends on:
            an ingest token is refused here)."""
            # (the bearer dependency documents the scheme in the schema; the header is checked here)
            who = self.authenticate(request.headers.get("authorization", ""))
            state.limiter.take(who.key)
            return who

        self.push_limiter = RateLimiter(state.settings.api.push_per_minute)

        def pusher(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
            """The caller, if its token may push documents: an ingest token, or an admin's (the boundary of the
            push routes, which have their own rate limit)."""
            who = self.authenticate(request.headers.get("authorization", ""), allow_ingest=True)
            if who.scope not in ("ingest", "admin"):
                raise ApiError(403, "pushing documents needs an ingest token (`rag token create NAME --user U "
                                    "--scope ingest`)", "permission_error")
            self.push_limiter.take(who.key, what="pushes")
            return who

        def admin(who: Caller = Depends(caller)) -> Caller:
            """The caller, if their token has the admin scope (the boundary of the admin routes)."""
            if who.scope != "admin":
                raise ApiError(403, "this needs an admin token (`rag token create ... --scope admin` for an admin "
                                    "user)", "permission_error")
            return who

        self.caller = caller
        self.admin = admin
        self.pusher = pusher
        self._push_lock = threading.Lock()
        self._push_queue: PushQueue | None = None
        self._push_committer: PushCommitter | None = None

    def push_queue(self) -> "PushQueue":
        """The queue of pushed documents (`<index>/push-queue`), made at the first push."""
        from ingest.push import QUEUE_DIR, PushQueue

        with self._push_lock:
            if self._push_queue is None:
                self._push_queue = PushQueue(self.state.settings.index_dir / QUEUE_DIR)
            return self._push_queue

    def push_committer(self) -> "PushCommitter":
        """The thread that commits pushed documents, started at the first push (or at start-up, when a killed
        process left some queued)."""
        from ingest.job import run_ingest
        from ingest.push import PushCommitter

        queue = self.push_queue()
        with self._push_lock:
            if self._push_committer is None:
                settings, embedder = self.state.settings, self.service.embedder
                self._push_committer = PushCommitter(
                    queue, lambda sources: run_ingest(settings, sources, embedder=embedder, progress=False),
                    settings.api.push_interval_s)
                self._push_committer.start()
            return self._push_committer

    def resume_pushes(self) -> None:
        """At start-up: drain what a stopped or killed process left queued."""
        from ingest.push import QUEUE_DIR

        folder = self.state.settings.index_dir / QUEUE_DIR
        if folder.is_dir() and any(folder.glob("*.json")):
            self.push_committer().request()

    def stop_pushes(self) -> None:
        """At shutdown: the run in progress finishes (or, killed, leaves the queue for the next start)."""
        with self._push_lock:
            committer = self._push_committer
        if committer is not None:
            committer.stop()

    def authenticate(self, authorization: str, allow_ingest: bool = False) -> Caller:
        """The caller an Authorization header names, as the users file says now (ApiError 401 or 503 when
        none): the REST routes' `caller` and the MCP endpoint both go through here. An ingest token is refused
        (403) unless `allow_ingest` (the push routes): it may write documents, never read them."""
        state = self.state
        try:
            people = state.users.current() if state.users is not None else None
        except ConfigError as exc:  # fail closed: never the last good copy, which may list a removed user
            log.error("%s", exc)
            raise ApiError(503, "sign-in is unavailable: the users file is not valid; tell an administrator",
                           "service_unavailable", {"Retry-After": "30"}) from None
        who = authenticate(authorization, state.db, people, state.single_user, state.clock())
        if who.scope == "ingest" and not allow_ingest:
            raise ApiError(403, "an ingest token may only push documents (PUT /v1/sources/...), never read",
                           "permission_error")
        return replace(who, accounts=state.settings.page.accounts)

    def inert(self, data: dict[str, Any]) -> dict[str, Any]:
        """An answer's dict with the text a client may render (answer, quote, the model's own, and their
        sentences in the support checks) made inert."""
        out = {**data, **{key: neutralise(str(data[key]), self.link_hosts)
                          for key in ("answer", "quote", "generated") if data.get(key)}}
        for key in ("support", "generated_support"):
            if data.get(key):
                out[key] = [{**s, "sentence": neutralise(str(s.get("sentence", "")), self.link_hosts)}
                            for s in data[key]]
        return out

    def answer_params(self, who: Caller, max_tokens: int | None = None,
                      temperature: float | None = None) -> GenerationParams:
        """Generation for `who`: at most the settings' tokens whatever the client asks, waiting for the
        generator in turn with other users."""
        answers = self.answers
        return GenerationParams(max_new_tokens=min(max_tokens or answers.max_new_tokens, answers.max_new_tokens),
                                temperature=answers.temperature if temperature is None else temperature,
                                timeout_s=answers.timeout_s, owner=who.user.username)

    def view(self) -> IndexView:
        """The newest published index version (503 when nothing has been indexed yet)."""
        reader = self.service.searcher.reader
        try:
            reader.refresh()
        except IndexNotFoundError:
            raise ApiError(503, "no documents have been indexed yet: an admin indexes a folder first",
                           "service_unavailable", {"Retry-After": "60"}) from None
        assert reader.view is not None
        return reader.view

    def busy(self, exc: BaseException) -> ApiError:
        self.metrics.busy.inc()
        return ApiError(429, str(exc), "rate_limit_error", {"Retry-After": str(BUSY_RETRY_S)})

    def failure(self, exc: BaseException, who: Caller) -> ApiError:
        """What went wrong, in one line (details for admins only, as on the page)."""
        if isinstance(exc, GeneratorBusyError):
            return self.busy(exc)
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
