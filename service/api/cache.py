"""Answers of the read routes, kept until the store changes.

A dashboard polls, pipelines query in loops and many clients ask the same questions: between two
changes to the store, the same request gets the same answer. ``ReadCache`` keeps the answers
computed at the store's current ``Store.version()``. When the version moves on (anyone, in any
process, committed something), the notes of migration 0015's triggers (``service.store.changes``)
say which jobs changed: the answers about those jobs go, with every answer that is about no one job
(the job list, LEMUR's data); the answers about other jobs stay. A job training reports an epoch
every few seconds and drops its own answers, not the rest. An answer is never older than the store:
the version is read before the notes and the notes before the data, so what is kept under a version
is at least as new as it. Without the triggers (a store that lost them), every change drops every
answer.

Only routes whose answer depends on the request's path and query alone use it; the route's own
dependencies (API keys, rate limits) run before, on every request. Those routes are ``async``: an
answer kept is served from the event loop, and only a miss goes to the thread pool to be built.
``CELLAR_READ_CACHE_MB`` bounds the memory it holds (0 turns it off).

The version is read from the event loop too (``StoreVersion``): SQLite's is a local ``PRAGMA``;
PostgreSQL's is one query on a connection of the cache's own, shared by every request that arrives
while the query before is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import pydantic_core
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ..errors import StoreUnavailableError
from ..store import Store
from ..store._store import PG_VERSION_SQL
from ..store.changes import ALL, PG_CHANGED_SQL, PRUNE_SQL, missing_triggers

__all__ = ["ReadCache", "StoreVersion", "cache_key", "cached_json", "json_bytes"]

T = TypeVar("T")
log = logging.getLogger(__name__)
#: seconds between two prunings of PostgreSQL's notes by this process (``PRUNE_SQL`` itself waits a minute)
_PRUNE_EVERY_S = 30.0


def cache_key(request: Request) -> str:
    """The route's path and query, as the client sent them."""
    return f"{request.url.path}?{request.url.query}"


class StoreVersion:
    """``Store.version()`` read from the event loop, with no trip to the thread pool.

    SQLite's is a ``PRAGMA`` on a local file, read inline. PostgreSQL's (``pg_current_snapshot()``)
    is read on one autocommit connection of its own (psycopg's async), one query at a time: a
    request that arrives while a query is in flight waits for the next one, which starts after it
    arrived, so the version it gets is never older than its arrival; under load one round trip
    serves every request that arrived during the one before. A lost connection is opened again once
    before the read fails."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._connection: psycopg.AsyncConnection | None = None
        self._started = self._finished = 0  # queries started, and the number of the last one that finished
        self._last: str | None = None
        self._pruned = 0.0

    async def read(self) -> str | None:
        return (await self.read_numbered())[1]

    async def read_numbered(self) -> tuple[int, str | None]:
        """(the number of the read, the version): a read with a larger number is newer."""
        if self._store.is_sqlite:
            self._started += 1
            return self._started, self._store.version()
        arrived = self._started
        async with self._lock:
            if self._finished > arrived:  # a query that started after this request arrived has answered
                return self._finished, self._last
            self._started += 1
            number = self._started
            self._last = await self._query()
            self._finished = number
            return number, self._last

    async def changed(self, mark: Any, version: str) -> tuple[set[int] | None, Any]:
        """(the jobs changed since ``mark``, None for "any": no mark yet, or one older than the
        notes kept; the mark that stands for ``version``). Ask it after reading ``version``."""
        if self._store.is_sqlite:
            return self._store.changed_jobs(mark)
        if mark is None:
            return None, version
        async with self._lock:
            jobs, too_old = await self._query(PG_CHANGED_SQL, {"mark": mark})
            if time.monotonic() - self._pruned > _PRUNE_EVERY_S:
                self._pruned = time.monotonic()
                await self._query(PRUNE_SQL, fetch=False)
        return (None if too_old else set(jobs)), version

    async def _query(self, sql: str = PG_VERSION_SQL, params: dict[str, Any] | None = None, fetch: bool = True) -> Any:
        for attempt in (1, 2):
            try:
                if self._connection is None or self._connection.closed:
                    url = self._store.url.set(drivername="postgresql").render_as_string(hide_password=False)
                    self._connection = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
                cursor = await self._connection.execute(sql, params)
                if not fetch:
                    return None
                row = await cursor.fetchone()
                return str(row[0]) if sql is PG_VERSION_SQL else row  # type: ignore[index]
            except psycopg.OperationalError as error:
                await self.aclose()
                if attempt == 2:
                    raise StoreUnavailableError(
                        f"the store at {self._store.display_url} failed: {error}. Check CELLAR_DATABASE_URL and "
                        "that the database server is running and reachable."
                    ) from error
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


class ReadCache:
    """Values computed at the store's current version, by key."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self._store = store
        self.version = StoreVersion(store)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._version: str | None = None
        self._mark: Any = None  # what the kept answers have seen of the notes (``StoreVersion.changed``)
        self._moving = asyncio.Lock()
        self._read = 0  # the number (``StoreVersion.read_numbered``) of the read that gave ``_version``
        #: key: (value, its size, the job it is about or None)
        self._kept: dict[str, tuple[object, int, int | None]] = {}
        self._bytes = 0
        #: whether the store's notes say which jobs changed (else every change drops every answer)
        self.scoped = max_bytes > 0 and self._notes_kept()
        self._building: dict[tuple[str, str], asyncio.Future[object]] = {}  # (version, key): its build in flight
        #: answers served from memory, answers computed (misses), and requests that waited for a
        #: build of the same answer that another request had begun (shared), since start
        self.hits = 0
        self.misses = 0
        self.shared = 0

    def _notes_kept(self) -> bool:
        with self._store.read() as session:
            missing = missing_triggers(session)
        if missing:
            log.warning(
                "the store lacks the triggers %s (migration 0015): every change to the store drops every kept "
                "answer; run `cellar migrate` again to restore them", ", ".join(sorted(missing))
            )
        return not missing

    async def aget(
        self, key: str, build: Callable[[], T], size: Callable[[T], int] = len, job: int | None = None  # type: ignore[assignment]
    ) -> T:
        """The value kept under ``key`` at the store's current version, else ``build()``, run in the
        thread pool (kept when the store has not changed meanwhile and ``size(value)`` fits in a
        tenth of the bound). ``job``: the one job the answer is about (it stays while other jobs
        change). A kept answer is served without a trip to the pool. Requests that miss the same
        answer at the same version while it is being built wait for that one build (fifty agents
        asking for the same prompt examples at once build them once); a request that goes away does
        not stop the build the others wait for."""
        number, version = await self.version.read_numbered() if self._max_bytes > 0 else (0, None)
        if version is not None and version != self._version and number > self._read:
            await self._move(number, version)
        version, kept = self._lookup(key, version)
        if kept is not None:
            return kept  # type: ignore[return-value]
        if version is None:
            return await run_in_threadpool(build)
        building = self._building.get((version, key))
        if building is not None:
            self.shared += 1
        else:
            building = self._building[(version, key)] = asyncio.ensure_future(run_in_threadpool(build))
            building.add_done_callback(lambda done: self._built(key, version, done, size, job))
        return await asyncio.shield(building)  # type: ignore[return-value]

    async def _move(self, number: int, version: str) -> None:
        """The cache moves on to ``version``: the answers about jobs that changed go (all of them
        when the notes cannot say), those about no one job too. One move at a time: requests that
        read the same version meanwhile wait for it."""
        async with self._moving:
            if number <= self._read or version == self._version:
                return  # read before the version the cache is at (what is kept is newer), or moved to meanwhile
            changed, mark = await self.version.changed(self._mark, version) if self.scoped else (None, None)
            with self._lock:
                if changed is None or ALL in changed:
                    self._kept, self._bytes = {}, 0
                else:
                    for key in [k for k, (_, _, job) in self._kept.items() if job is None or job in changed]:
                        self._bytes -= self._kept.pop(key)[1]
                self._version, self._mark, self._read = version, mark, number

    def _built(
        self, key: str, version: str, done: asyncio.Future[object], size: Callable[[T], int], job: int | None
    ) -> None:
        del self._building[(version, key)]
        if not done.cancelled() and done.exception() is None:
            self._keep(key, version, done.result(), size, job)  # type: ignore[arg-type]

    def _lookup(self, key: str, version: str | None) -> tuple[str | None, object | None]:
        if version is None:
            return None, None
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self.hits += 1
                return version, kept[0]
            self.misses += 1
        return version, None

    def _keep(self, key: str, version: str, value: T, size: Callable[[T], int], job: int | None) -> None:
        weight = size(value)
        with self._lock:
            if version == self._version and weight <= self._max_bytes // 10:
                while self._kept and self._bytes + weight > self._max_bytes:
                    self._bytes -= self._kept.pop(next(iter(self._kept)))[1]  # the oldest
                self._kept[key] = (value, weight, job)
                self._bytes += weight


async def cached_json(
    request: Request, build: Callable[[], BaseModel | dict[str, Any]], job: int | None = None
) -> Response:
    """The JSON of ``build()``'s answer (built in the thread pool), from the app's ``ReadCache``
    while the store has not changed (``job``: while the one job it is about has not)."""
    cache: ReadCache = request.app.state.read_cache
    body = await cache.aget(cache_key(request), lambda: json_bytes(build()), job=job)
    return Response(body, media_type="application/json")


def json_bytes(answer: BaseModel | dict[str, Any]) -> bytes:
    """``answer`` as JSON, written by pydantic at once. A route that declares the model as its
    ``response_model`` (for the docs) and returns these bytes spares FastAPI validating the model it
    was just given again (in another trip to the thread pool) and encoding it twice. A plain dict is
    written as FastAPI writes a route's ``dict[str, Any]`` answer (pydantic's JSON mode, then
    Starlette's ``JSONResponse``), byte for byte."""
    if isinstance(answer, BaseModel):
        return answer.__pydantic_serializer__.to_json(answer)
    return JSONResponse(pydantic_core.to_jsonable_python(answer)).body
