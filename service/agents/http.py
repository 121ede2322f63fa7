"""The MCP tools over streamable HTTP at ``/mcp`` on Cellar's own server.

The tools call the API in process (an ``httpx.ASGITransport`` of the app: no network, the same
validation, keys and errors as any client). ``/mcp`` needs the server's key (``Authorization:
Bearer``), for reads too: agents act. Answers are JSON, one per request (stateless sessions), so
that nothing of an agent's session lives on the server between requests.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import httpx
from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from .tools import ApiCaller, build_server

__all__ = ["MCP_PATH", "install_mcp"]

MCP_PATH = "/mcp"


class _KeyGuard:
    """An ASGI wrapper: requests without the server's key get a 401 that says how to send it."""

    def __init__(self, app: Any, fastapi_app: FastAPI) -> None:
        self.app, self.fastapi_app = app, fastapi_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        key = getattr(self.fastapi_app.state, "api_key", None)
        if key and hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"detail": "the MCP endpoint needs the server's key: send 'Authorization: Bearer <CELLAR_API_KEY>'"}
        ).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})


def install_mcp(app: FastAPI) -> Any:
    """Add ``/mcp`` to ``app``; returns the MCP server, whose ``session_manager.run()`` the app's
    lifespan must hold open, and whose caller gets the key once the app has started."""
    caller = ApiCaller("http://cellar.internal", None, transport=httpx.ASGITransport(app=app))
    server = build_server(caller)
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        # the key is a header, never a cookie: a rebinding page in a browser cannot send it
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    endpoint = next(r for r in mcp_app.routes if getattr(r, "path", None) == MCP_PATH)
    app.router.routes.append(Route(MCP_PATH, endpoint=_KeyGuard(endpoint.app, app)))
    server.cellar_caller = caller  # type: ignore[attr-defined]
    return server
