"""Dependencies shared by the routers: the store, the manager, the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..manager import JobManager
from ..settings import Settings
from ..store import Store

__all__ = ["ReadAccess", "StoreDep", "WriteAccess", "get_manager", "get_settings_dep", "get_store"]

_bearer = HTTPBearer(auto_error=False, description="the key in CELLAR_API_KEY")


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_manager(request: Request) -> JobManager | None:
    return request.app.state.manager


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def _check_key(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected: str = request.app.state.api_key
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>' with the server's CELLAR_API_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="wrong API key: use the server's CELLAR_API_KEY (or the key in its .cellar-api-key file)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_write(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    _check_key(request, credentials)


def require_read(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if request.app.state.settings.reads_require_key:
        _check_key(request, credentials)


StoreDep = Annotated[Store, Depends(get_store)]
WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)
