"""Dependencies shared by the routers: the store, the manager, the settings, and who the caller is
(the bootstrap key or an issued one, its scopes)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from search_spaces import DatasetUnavailableError
from search_spaces.datasets import get_dataset

from ..errors import InvalidRequestError
from ..jobs.manager import JobManager
from ..settings import Settings
from ..store import Store, keys, utcnow
from ..store.keys import Scope
from .ratelimit import RateLimiter, cap, limited

__all__ = [
    "BOOTSTRAP",
    "AdminAccess",
    "Caller",
    "ManagerDep",
    "ReadAccess",
    "SettingsDep",
    "StoreDep",
    "WriteAccess",
    "WriterDep",
    "check_dataset_files",
    "check_owner",
    "get_manager",
    "get_settings_dep",
    "get_store",
    "require_admin",
    "require_read",
    "require_write",
]

_bearer = HTTPBearer(auto_error=False, description="the key in CELLAR_API_KEY, or one issued by POST /v1/keys")

#: how often a key's ``last_used_at`` is written (at most)
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the bootstrap key (``key_id`` None) or an issued key, with its scopes
    (implied ones included), and its own limits over the server's (``service.api.ratelimit``)."""

    key_id: int | None
    name: str
    scopes: frozenset[Scope]
    limits: Mapping[str, int] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return "the bootstrap key" if self.key_id is None else f"API key {self.key_id} ({self.name!r})"


BOOTSTRAP = Caller(None, "bootstrap", Scope.granted([Scope.ADMIN]))


# The dependencies that only read the app's state are ``async``: FastAPI runs a plain ``def``
# dependency in its thread pool, a hop that costs more than the lookup (see docs/benchmarks.md#api-speed)
async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_manager(request: Request) -> JobManager | None:
    return request.app.state.manager


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller the request's key names; a 401 for a missing, unknown or revoked key."""
    expected: str = request.app.state.api_key
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(
            "missing API key: send 'Authorization: Bearer <key>' with the server's CELLAR_API_KEY or a key it issued"
        )
    given = credentials.credentials
    if hmac.compare_digest(given.encode(), expected.encode()):
        return BOOTSTRAP
    store: Store = request.app.state.store
    with store.read() as session:
        key = keys.find_key(session, given)
        found = None if key is None else (
            key.key_id, key.name, list(key.scopes), key.revoked_at, key.last_used_at, dict(key.limits or {})
        )  # fmt: skip
    if found is None:
        raise _unauthorized(
            "wrong API key: use the server's CELLAR_API_KEY (or the key in its .cellar-api-key file), "
            "or a key from POST /v1/keys (`cellar keys create`)"
        )
    key_id, name, scopes, revoked_at, last_used_at, limits = found
    if revoked_at is not None:
        raise _unauthorized(f"API key {key_id} ({name!r}) was revoked at {revoked_at.isoformat()}; ask an admin for a new one")
    if last_used_at is None or utcnow() - last_used_at > _TOUCH_EVERY:
        with store.write() as session:
            keys.touch_key(session, key_id, every=_TOUCH_EVERY)
    return Caller(key_id, name, Scope.granted(scopes), limits)


def _rate_limit(request: Request, caller: Caller) -> None:
    """A 429 once the caller's key is past its request rate (``service.api.ratelimit``)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    settings = request.app.state.settings
    if limiter is not None and limited(caller.key_id, settings):
        limiter.check(caller.key_id, cap(caller.limits, "rate_limit", settings), caller.limits)


def _authorize(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: Scope) -> Caller:
    caller = _authenticate(request, credentials)
    _rate_limit(request, caller)
    if scope not in caller.scopes:
        held = ", ".join(s.value for s in Scope if s in caller.scopes) or "none"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"{caller.describe()} holds scope(s) {held}; {request.method} {request.url.path} needs scope "
            f"'{scope.value}': use a key with it (an admin issues keys with POST /v1/keys)",
        )
    request.state.caller = caller
    return caller


def require_write(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """A key with scope ``submit`` (or ``admin``)."""
    return _authorize(request, credentials, Scope.SUBMIT)


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """A key with scope ``admin``: the bootstrap key, or an issued admin key."""
    return _authorize(request, credentials, Scope.ADMIN)


def _count_open_read(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """An open read that sends a key counts against that key's rate, when the key is valid; a
    wrong key is ignored there (the read needs none)."""
    try:
        caller = _authenticate(request, credentials)
    except HTTPException:
        return
    _rate_limit(request, caller)


async def require_read(request: Request) -> None:
    """Any valid key, when ``reads_require_key`` is set. The header is read here rather than declared,
    so that open reads are not documented as needing a key (``create_app`` documents keyed ones)."""
    credentials = await _bearer(request)
    if request.app.state.settings.reads_require_key:
        await run_in_threadpool(_authorize, request, credentials, Scope.READ)
    elif credentials is not None:
        await run_in_threadpool(_count_open_read, request, credentials)


def check_owner(caller: Caller, owner_key_id: int | None, what: str, action: str) -> None:
    """A 403 unless ``caller`` is an admin or the key that created ``what``."""
    if Scope.ADMIN in caller.scopes or (caller.key_id is not None and caller.key_id == owner_key_id):
        return
    owner = "the bootstrap key" if owner_key_id is None else f"API key {owner_key_id}"
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        detail=f"{what} was submitted by {owner}; {caller.describe()} may {action} only what it submitted "
        "(a key with scope 'admin' may any)",
    )


def check_dataset_files(name: str, settings: Settings) -> None:
    """A 422 on ``body.dataset`` when a dataset that comes in files has none on this server."""
    try:
        get_dataset(name).check_available(settings.data_dir)
    except DatasetUnavailableError as error:
        raise InvalidRequestError(str(error), field=("body", "dataset")) from None


StoreDep = Annotated[Store, Depends(get_store)]
ManagerDep = Annotated[JobManager | None, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
WriteAccess = Depends(require_write)
AdminAccess = Depends(require_admin)
WriterDep = Annotated[Caller, Depends(require_write)]
ReadAccess = Depends(require_read)
