"""The FastAPI application factory."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import CellarError, ConflictError, InvalidRequestError, NotFoundError, StoreError
from ..settings import Settings, get_settings
from ..store import Store, check_schema
from ..submissions import ModelChecker
from . import data, jobs, meta, models

__all__ = ["create_app"]

log = logging.getLogger("cellar")


def _location(loc: tuple[object, ...] | list[object]) -> str:
    return ".".join(str(part) for part in loc)


def _json_safe(value: object) -> object:
    """Non-finite floats (a rejected NaN input) as text: JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def create_app(settings: Settings | None = None, *, executor: object | None = None) -> FastAPI:
    """Build the app. The store is opened and the job manager started when the app starts,
    never at import time. ``executor`` replaces the Ray executor (e.g. a Ray cluster set up by a
    test); with ``settings.start_manager`` false no manager runs (a read-only API)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.database_url)
        check_schema(store)
        app.state.settings = settings
        app.state.store = store
        app.state.api_key = settings.resolved_api_key()
        app.state.manager = None
        app.state.models = ModelChecker(store, settings)
        if settings.start_manager:
            from ..manager import JobManager

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
        log.info("Cellar %s serving; store %s", __version__, store.display_url)
        try:
            yield
        finally:
            if app.state.manager is not None:
                await run_in_threadpool(app.state.manager.stop)
            store.dispose()

    app = FastAPI(
        title="Cellar",
        version=__version__,
        description="Neural architecture search as a service: submit jobs, read LEMUR-style results.",
        lifespan=lifespan,
    )
    app.include_router(meta.router)
    app.include_router(jobs.router)
    app.include_router(data.router)
    app.include_router(models.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = _json_safe(jsonable_encoder(error.errors()))
        message = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in error.errors())
        return JSONResponse({"detail": detail, "message": message}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(CellarError)
    async def _cellar_error(request: Request, error: CellarError) -> JSONResponse:
        code = {
            NotFoundError: status.HTTP_404_NOT_FOUND,
            ConflictError: status.HTTP_409_CONFLICT,
            InvalidRequestError: status.HTTP_422_UNPROCESSABLE_CONTENT,
            StoreError: status.HTTP_503_SERVICE_UNAVAILABLE,
        }
        status_code = next((c for kind, c in code.items() if isinstance(error, kind)), 500)
        if isinstance(error, InvalidRequestError) and error.field:
            # the shape of a validation error, so clients handle every 422 alike
            detail = [{"loc": list(error.field), "msg": str(error), "type": "value_error"}]
            return JSONResponse({"detail": detail, "message": str(error)}, status_code=status_code)
        return JSONResponse({"detail": str(error), "message": str(error)}, status_code=status_code)

    return app
