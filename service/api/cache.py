"""Answers of the read routes, kept until the store changes.

A dashboard polls, pipelines query in loops and many clients ask the same questions: between two
changes to the store, the same request gets the same answer. ``ReadCache`` keeps the answers
computed at the store's current ``Store.version()`` and forgets them all when it moves on (anyone,
in any process, committed something). An answer is never older than the store: the version is read
before the data, so an answer kept under it is at least as new as it.

Only routes whose answer depends on the request's path and query alone use it; the route's own
dependencies (API keys, rate limits) run before, on every request. Those routes are ``async``: an
answer kept is served from the event loop, and only a miss goes to the thread pool to be built.
``CELLAR_READ_CACHE_MB`` bounds the memory it holds (0 turns it off).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ..store import Store

__all__ = ["ReadCache", "cache_key", "cached_json", "json_bytes"]

T = TypeVar("T")


def cache_key(request: Request) -> str:
    """The route's path and query, as the client sent them."""
    return f"{request.url.path}?{request.url.query}"


class ReadCache:
    """Values computed at the store's current version, by key."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._version: str | None = None
        self._kept: dict[str, tuple[object, int]] = {}
        self._bytes = 0
        #: answers served from memory and answers computed (misses), since start
        self.hits = 0
        self.misses = 0

    async def aget(self, key: str, build: Callable[[], T], size: Callable[[T], int] = len) -> T:  # type: ignore[assignment]
        """The value kept under ``key`` at the store's current version, else ``build()``, run in the
        thread pool (kept when the store has not changed meanwhile and ``size(value)`` fits in a
        tenth of the bound). A kept answer is served without a trip to the pool on SQLite, whose
        version is a local ``PRAGMA``; PostgreSQL's takes a round trip, in the pool."""
        version = None
        if self._max_bytes > 0:
            version = self._store.version() if self._store.is_sqlite else await run_in_threadpool(self._store.version)
        version, kept = self._lookup(key, version)
        if kept is not None:
            return kept  # type: ignore[return-value]
        value = await run_in_threadpool(build)
        self._keep(key, version, value, size)
        return value

    def _lookup(self, key: str, version: str | None) -> tuple[str | None, object | None]:
        if version is None:
            return None, None
        with self._lock:
            if version != self._version:
                self._version, self._kept, self._bytes = version, {}, 0
            kept = self._kept.get(key)
            if kept is not None:
                self.hits += 1
                return version, kept[0]
            self.misses += 1
        return version, None

    def _keep(self, key: str, version: str | None, value: T, size: Callable[[T], int]) -> None:
        if version is None:
            return
        weight = size(value)
        with self._lock:
            if version == self._version and weight <= self._max_bytes // 10:
                while self._kept and self._bytes + weight > self._max_bytes:
                    _, dropped = self._kept.pop(next(iter(self._kept)))  # the oldest
                    self._bytes -= dropped
                self._kept[key] = (value, weight)
                self._bytes += weight


async def cached_json(request: Request, build: Callable[[], BaseModel]) -> Response:
    """The JSON of ``build()``'s model (built in the thread pool), from the app's ``ReadCache``
    while the store has not changed."""
    cache: ReadCache = request.app.state.read_cache
    body = await cache.aget(cache_key(request), lambda: json_bytes(build()))
    return Response(body, media_type="application/json")


def json_bytes(model: BaseModel) -> bytes:
    """``model`` as JSON, written by pydantic at once. A route that declares the model as its
    ``response_model`` (for the docs) and returns these bytes spares FastAPI validating the model it
    was just given again (in another trip to the thread pool) and encoding it twice."""
    return model.__pydantic_serializer__.to_json(model)
