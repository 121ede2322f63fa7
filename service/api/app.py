"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi

from .. import __version__
from ..lemur.dispatch import SubmissionQueue
from ..lemur.submissions import ModelChecker
from ..settings import Settings, get_settings
from ..store import Store, check_schema
from . import data, events, jobs, keys, meta, models, submissions, summary, trials
from ..agents.http import install_mcp
from ..dashboard import install_dashboard
from .cache import ReadCache
from .docs import install_docs
from .errors import install_error_handlers, responses
from .limits import BodyLimit
from .params import reject_unknown_query_parameters
from .ratelimit import RateLimiter
from .shutdown import ShutdownSignal

__all__ = ["create_app"]

log = logging.getLogger("cellar")


def create_app(settings: Settings | None = None, *, executor: object | None = None) -> FastAPI:
    """Build the app. The store is opened and the job manager started when the app starts,
    never at import time. ``executor`` replaces the Ray executor (e.g. a Ray cluster set up by a
    test); with ``settings.start_manager`` false no manager runs (a read-only API)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # set when a stop begins (CellarServer, on SIGTERM / Ctrl-C; else the shutdown below):
        # event streams end on it and the job manager hands its jobs back
        app.state.shutdown.bind(asyncio.get_running_loop())
        # plain routes run in anyio's thread pool: sized by the setting, not by anyio's 40
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        store = Store(settings.database_url, pool_size=settings.db_pool_size)
        app.state.revision = check_schema(store)  # once: /healthz reports it without asking again
        app.state.settings = settings
        app.state.store = store
        app.state.read_cache = ReadCache(store, settings.read_cache_mb * 1024 * 1024)
        app.state.api_key = settings.resolved_api_key()
        app.state.manager = None
        app.state.models = ModelChecker(store, settings)
        app.state.queue = SubmissionQueue(store, settings, app.state.models, ray_ready=lambda: _ray_ready(app, settings))
        if settings.start_manager:
            from ..jobs.manager import JobManager

            if executor is None:
                from workers.ray_executor import RayExecutor

                chosen = RayExecutor(
                    settings.ray_address,
                    num_cpus=settings.ray_num_cpus,
                    num_gpus=settings.ray_num_gpus,
                    object_store_mb=settings.ray_object_store_mb,
                )
            else:
                chosen = executor
            app.state.manager = JobManager(store, chosen, settings)  # type: ignore[arg-type]
            app.state.manager.start()
            app.state.shutdown.on_set(app.state.manager.request_stop)
        app.state.queue.start()
        app.state.shutdown.on_set(app.state.queue.request_stop)
        log.info("Cellar %s serving; store %s", __version__, store.display_url)
        app.state.mcp.cellar_caller.headers = {"Authorization": f"Bearer {app.state.api_key}"}
        try:
            async with app.state.mcp.session_manager.run():
                yield
        finally:
            app.state.shutdown.set()
            await run_in_threadpool(app.state.queue.stop)  # before the manager stops Ray
            if app.state.manager is not None:
                await run_in_threadpool(app.state.manager.stop)
            await app.state.read_cache.version.aclose()
            store.dispose()

    app = FastAPI(
        title="Cellar",
        version=__version__,
        description="Neural architecture search as a service: submit jobs, read LEMUR-style results.",
        lifespan=lifespan,
        # Cellar serves the pages itself, with local assets (service.api.docs)
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(reject_unknown_query_parameters)],
    )
    app.state.shutdown = ShutdownSignal()  # CellarServer sets it; the lifespan binds it
    # requests per key, counted in this process (deps._rate_limit)
    app.state.rate_limiter = RateLimiter(settings.key_rate_window_s)
    for module in (meta, jobs, summary, trials, events, data, models, submissions, keys):
        app.include_router(module.router)
    install_error_handlers(app)
    install_docs(app, title="Cellar")
    install_dashboard(app)
    app.state.mcp = install_mcp(app)
    if settings.cors_origins:  # closed unless origins are named: browsers then refuse cross-origin calls
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_mb * 2**20)
    _document_keys(app, keyed_reads=settings.reads_require_key)
    return app


def _ray_ready(app: FastAPI, settings: Settings) -> bool | None:
    """Where the submission queue trains: None locally (no job manager on Ray, or it failed to
    start Ray with ``model_executor=auto``), else whether the manager's Ray is connected yet."""
    manager = app.state.manager
    if manager is None:
        return None if settings.model_executor == "auto" else False
    from workers.ray_executor import RayExecutor

    if not isinstance(manager.executor, RayExecutor):
        return None if settings.model_executor == "auto" else False
    if manager.state == "error" and settings.model_executor == "auto":
        return None
    return manager.state == "ok"


#: reads sent as POST (their arguments are a structured body); they change nothing
_POST_READS = {("post", "/v1/data/query")}


def _document_keys(app: FastAPI, *, keyed_reads: bool) -> None:
    """With ``reads_require_key``, every ``/v1`` read needs the key too; any ``/v1`` request that
    sends a key may be a 429 (its rate limit, a setting or the key's own): say so in the document."""

    def error(code: int) -> dict[str, Any]:
        return {
            "description": responses(code)[code]["description"],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}},
        }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for path, item in schema["paths"].items():
                for method, operation in item.items():
                    if not path.startswith("/v1/"):
                        continue
                    if keyed_reads and (method == "get" or (method, path) in _POST_READS):
                        operation["security"] = [{"HTTPBearer": []}]
                        operation["responses"]["401"] = error(401)
                    operation["responses"].setdefault("429", error(429))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
