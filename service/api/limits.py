"""Bounds on what a request may send, before any route reads it.

``BodyLimit`` refuses a body larger than ``CELLAR_MAX_REQUEST_MB`` with a 413: at once when its
``Content-Length`` says so, else (a chunked body) as soon as the bytes received pass the bound,
before the route has parsed anything. The fields inside a body have their own bounds (model code
500,000 characters, 1,000 models per submission, ...), checked by the schemas as 422s.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BodyLimit"]

Scope = dict[str, Any]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a 413 for a request body over ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        received, refused, started = 0, False, False

        async def limited_receive() -> Any:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and started:  # it answered already: stop reading
                    raise _TooLarge
                if received > self.max_bytes and not refused:
                    # answer now: the route may turn the error below into an answer of its own
                    # (FastAPI makes a failed body read a 400), which watched_send then drops
                    refused = True
                    await self._refuse(send)
                    raise _TooLarge
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            if not refused:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            pass

    async def _refuse(self, send: Any) -> None:
        mb = self.max_bytes / 2**20
        message = (
            f"the request body is larger than this server takes ({mb:g} MiB, CELLAR_MAX_REQUEST_MB): send less at "
            "once (e.g. fewer models per POST /v1/submissions), or raise the setting"
        )
        body = json.dumps({"detail": message, "message": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
