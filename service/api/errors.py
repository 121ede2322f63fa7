"""The one border where errors become HTTP: ``CellarError`` subclasses and validation errors.

Only this module knows status codes. Every 422 has the same shape, whether pydantic or Cellar's
own checks raised it: ``detail`` is a list of ``{"loc", "msg", "type"}`` and ``message`` joins them.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, Field

from ..errors import CellarError, ConflictError, InvalidRequestError, NotFoundError, ServiceStoppingError, StoreError

__all__ = ["STATUS_CODES", "ErrorPublic", "LimitExceededError", "install_error_handlers", "responses"]


class LimitExceededError(CellarError):
    """A key past one of its rate limits or quotas (``service.api.ratelimit``): a 429 whose
    ``Retry-After`` says, in whole seconds, when asking again may succeed."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


#: Cellar's errors by the status they answer with (the first match wins; anything else is a 500)
STATUS_CODES: dict[type[CellarError], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    InvalidRequestError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    LimitExceededError: status.HTTP_429_TOO_MANY_REQUESTS,
    StoreError: status.HTTP_503_SERVICE_UNAVAILABLE,
    ServiceStoppingError: status.HTTP_503_SERVICE_UNAVAILABLE,
}


class ErrorPublic(BaseModel):
    """Every error answer: ``detail`` (a text, or for a 422 one entry per problem) and ``message``."""

    detail: str | list[dict[str, Any]] = Field(
        description="what went wrong; for a 422 a list of {loc, msg, type}, one per problem"
    )
    message: str = Field(description="the whole problem as one line, naming the field and the fix")


_DESCRIPTIONS = {
    401: "missing or wrong API key (send 'Authorization: Bearer <key>')",
    403: "the key lacks the scope this needs, or the job is another key's",
    404: "no such job, trial or run",
    409: "the job's state does not allow it (e.g. cancelling a finished job)",
    422: "invalid request: each problem names its field (loc) and the allowed values",
    429: "the key is past a rate limit or quota: the message names it and its setting; Retry-After says when to "
    "ask again (seconds)",
    503: "the store cannot be reached, or the server is stopping",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error answers a route may give."""
    return {code: {"model": ErrorPublic, "description": _DESCRIPTIONS[code]} for code in codes}


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


#: FastAPI's answer to a body it cannot read as text
_UNPARSABLE_BODY = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = _json_safe(jsonable_encoder(error.errors()))
        message = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in error.errors())
        return JSONResponse({"detail": detail, "message": message}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """FastAPI's and Starlette's own errors (a 401 or 403 of the keys, an unknown path, a wrong
        method) in Cellar's shape: ``detail`` and ``message``, with their headers."""
        if error.status_code == 400 and error.detail == _UNPARSABLE_BODY:
            # a body that is not text (not UTF-8): the 422 of every other body that is not JSON
            message = "body: the request body is not UTF-8 text; send JSON"
            detail = [{"loc": ["body"], "msg": message.removeprefix("body: "), "type": "json_invalid"}]
            return JSONResponse({"detail": detail, "message": message}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
        text = error.detail if isinstance(error.detail, str) else str(error.detail)
        return JSONResponse({"detail": error.detail, "message": text}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(CellarError)
    async def _cellar_error(request: Request, error: CellarError) -> JSONResponse:
        status_code = next((c for kind, c in STATUS_CODES.items() if isinstance(error, kind)), 500)
        if isinstance(error, InvalidRequestError) and error.field:
            # the shape of a validation error, so clients handle every 422 alike
            detail = [{"loc": list(error.field), "msg": str(error), "type": "value_error"}]
            return JSONResponse({"detail": detail, "message": str(error)}, status_code=status_code)
        headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, LimitExceededError) else None
        return JSONResponse({"detail": str(error), "message": str(error)}, status_code=status_code, headers=headers)
