"""Answers of the read routes, kept until the store changes.

A dashboard polls, pipelines query in loops and many clients ask the same questions: between two
changes to the store, the same request gets the same answer. ``ReadCache`` keeps the answers
computed at the store's current ``Store.version()`` and forgets them all when it moves on (anyone,
in any process, committed something). An answer is never older than the store: the version is read
before the data, so an answer kept under it is at least as new as it.

Only routes whose answer depends on the request's path and query alone use it; the route's own
dependencies (API keys, rate limits) run before, on every request. ``CELLAR_READ_CACHE_MB`` bounds
the memory it holds (0 turns it off).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request, Response
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

    def get(self, key: str, build: Callable[[], T], size: Callable[[T], int] = len) -> T:  # type: ignore[assignment]
        """The value kept under ``key`` at the store's current version, else ``build()`` (kept when
        the store has not changed meanwhile and ``size(value)`` fits in a tenth of the bound)."""
        if self._max_bytes <= 0:
            return build()
        version = self._store.version()
        if version is None:
            return build()
        with self._lock:
            if version != self._version:
                self._version, self._kept, self._bytes = version, {}, 0
            kept = self._kept.get(key)
            if kept is not None:
                self.hits += 1
                return kept[0]  # type: ignore[return-value]
            self.misses += 1
        value = build()
        weight = size(value)
        with self._lock:
            if version == self._version and weight <= self._max_bytes // 10:
                while self._kept and self._bytes + weight > self._max_bytes:
                    _, dropped = self._kept.pop(next(iter(self._kept)))  # the oldest
                    self._bytes -= dropped
                self._kept[key] = (value, weight)
                self._bytes += weight
        return value


def cached_json(request: Request, build: Callable[[], BaseModel]) -> Response:
    """The JSON of ``build()``'s model, from the app's ``ReadCache`` while the store has not changed."""
    cache: ReadCache = request.app.state.read_cache
    body = cache.get(cache_key(request), lambda: json_bytes(build()))
    return Response(body, media_type="application/json")


def json_bytes(model: BaseModel) -> bytes:
    """``model`` as JSON, written by pydantic at once. A route that declares the model as its
    ``response_model`` (for the docs) and returns these bytes spares FastAPI validating the model it
    was just given again (in another trip to the thread pool) and encoding it twice."""
    return model.__pydantic_serializer__.to_json(model)
