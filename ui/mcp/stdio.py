"""`rag mcp`: the MCP server over stdio, for agents that start a local process (desktop assistants, coding
agents). It acts as the user of the token in RAG_TOKEN (or a token file):

- on a local index (`--index`): the same server as `/mcp` in this process. Whoever runs it can read the index
  files anyway, so there the token says whose view to show, it is not a boundary (docs/security.md);
- with `--url`: a relay to a remote `rag api`'s `/mcp`, which checks the token, the permissions and the rate
  limits and writes the audit rows; the desktop never holds the index.

stdout carries the protocol only: logs go to stderr.
"""

from __future__ import annotations

from typing import Any

from ui.api.auth import ApiError


class TokenRefused(RuntimeError):
    """The server cannot be used: the token was refused (unknown, expired, its user removed), or the remote
    API cannot be reached; one line, to stderr."""


def remote_client(url: str, token: str):  # type: ignore[no-untyped-def]
    """An MCP client of a remote `rag api`'s /mcp, sending the token."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    endpoint = url.rstrip("/") + "/mcp"
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(endpoint, http_client=http))


async def check_remote(url: str, token: str) -> None:
    """TokenRefused when the remote API refuses the token (before the agent is told anything)."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(url.rstrip("/") + "/mcp", headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream"}, json={
                "jsonrpc": "2.0", "id": 0, "method": "ping"})
    except httpx.HTTPError as exc:
        raise TokenRefused(f"cannot reach {url}/mcp ({exc.__class__.__name__}: {exc}): check the address and "
                           "that rag api runs there") from None
    if response.status_code == 404:
        raise TokenRefused(f"{url} has no /mcp: give the address rag api answers at (its /v1 routes' base)")
    if response.status_code in (401, 403):
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise TokenRefused(f"{url} refused the token: {message}")


async def serve_remote(url: str, token: str) -> None:
    """Relay stdio to the remote server: its tools, resources and errors, as it answers them."""
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    await check_remote(url, token)
    async with remote_client(url, token) as remote:
        async def list_tools(ctx: Any, params: Any) -> Any:
            return await remote.list_tools(cursor=params.cursor if params else None)

        async def call_tool(ctx: Any, params: Any) -> Any:
            return await remote.call_tool(params.name, params.arguments or {})

        async def list_resources(ctx: Any, params: Any) -> Any:
            return await remote.list_resources(cursor=params.cursor if params else None)

        async def list_templates(ctx: Any, params: Any) -> Any:
            return await remote.list_resource_templates(cursor=params.cursor if params else None)

        async def read_resource(ctx: Any, params: Any) -> Any:
            return await remote.read_resource(params.uri)

        server = Server(name="rag", instructions=remote.instructions, on_list_tools=list_tools,
                        on_call_tool=call_tool, on_list_resources=list_resources,
                        on_list_resource_templates=list_templates, on_read_resource=read_resource)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def serve_local(settings: Any, token: str) -> None:
    """The MCP server in this process over the local index, as the token's user."""
    from ui.api.app import Metrics, build_state
    from ui.api.context import Context
    from ui.mcp.server import CALLER, build_server

    state = build_state(settings)
    ctx = Context(state, Metrics(state))
    try:
        who = ctx.authenticate(f"Bearer {token}" if token else "")
    except ApiError as exc:
        raise TokenRefused(exc.message) from None
    CALLER.set(who)  # the tools run in copies of this context
    build_server(ctx).run("stdio")
