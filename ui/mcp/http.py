"""`/mcp` on `rag api`: the MCP server over the protocol's streamable HTTP transport, stateless (no session is
kept between requests, so any replica answers any call) with plain JSON responses.

The boundary is here: every request is authenticated with the API's bearer tokens (the users file read as
now), counted against a protocol bucket per token (ten times its rate: tool calls count against the rate
itself, in ui/mcp/server.py), and only then handed to the SDK with the caller set for the
tools (`ui.mcp.server.CALLER`). Without a valid token: 401 with `WWW-Authenticate: Bearer`, before the SDK
sees a byte. The API's `Guard` (body size, JSON only, the Host check in single-user mode) runs before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi.responses import JSONResponse
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from ui.api.auth import ApiError, RateLimiter
from ui.api.context import Context, error_body
from ui.mcp.server import CALLER, build_server

PATH = "/mcp"
PROTOCOL_FACTOR = 10


class McpEndpoint:
    """The ASGI endpoint of `/mcp`: authenticate, rate-limit, then the SDK's stateless transport."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.server = build_server(ctx)
        # An agent's session sends several protocol messages per tool call (discovery, the tool list it
        # validates results against, the call): those count against a bucket ten times the token's rate;
        # each tool call and resource read counts against the token's own rate, as a REST request does.
        per_minute = ctx.state.settings.api.rate_per_minute * PROTOCOL_FACTOR
        self.protocol = RateLimiter(per_minute, burst=max(1.0, per_minute / 10))
        # the API's Guard already refuses foreign Host names where it matters (single-user mode on loopback)
        self.manager = StreamableHTTPSessionManager(
            app=self.server._lowlevel_server, json_response=True, stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's task group, for the app's lifespan."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            import anyio

            who = await anyio.to_thread.run_sync(self.ctx.authenticate, headers.get("authorization", ""))
            self.protocol.take(who.key)
        except ApiError as exc:
            extra: dict[str, Any] = dict(exc.headers or {})
            if exc.status == 401:
                extra["WWW-Authenticate"] = 'Bearer realm="rag"'
            await JSONResponse(error_body(exc.message, exc.kind), exc.status, headers=extra)(scope, receive, send)
            return
        token = CALLER.set(who)
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            CALLER.reset(token)
