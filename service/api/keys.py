"""``/v1/keys``: API keys issued, listed and revoked by an admin.

A key is ``cellar_<id>_<secret>``, shown once when it is issued; the store keeps the SHA-256 of its
secret. Scopes: ``read`` (reads, where the server requires a key for them), ``submit`` (also jobs
and models, and cancelling, extending and deleting its own jobs) and ``admin`` (everything, keys
included). The server's ``CELLAR_API_KEY`` stays the bootstrap admin key. A key may carry its own
rate limit and quotas (``limits``) over the server's ``CELLAR_KEY_*`` settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..store import keys
from ..store.keys import ApiKey, Scope
from .deps import AdminAccess, StoreDep
from .schemas import MAX_INT
from .errors import responses

__all__ = ["KeyCreate", "KeyCreated", "KeyLimits", "KeyPublic", "KeysPublic", "router"]

router = APIRouter(prefix="/v1", tags=["keys"], responses=responses(422, 503))


class KeyLimits(BaseModel):
    """A key's own rate limit and quotas; a field left out (null) follows the server's setting of
    the same name (``CELLAR_KEY_<NAME>``); 0 is unlimited."""

    model_config = ConfigDict(extra="forbid")

    rate_limit: int | None = Field(
        None, ge=0, le=1_000_000, description="requests per CELLAR_KEY_RATE_WINDOW_S (by default a minute)"
    )
    max_active_jobs: int | None = Field(None, ge=0, le=1_000_000, description="queued and running jobs at once")
    max_trials_per_job: int | None = Field(None, ge=0, le=1_000_000, description="largest budget.max_trials")
    max_models_per_hour: int | None = Field(None, ge=0, le=1_000_000, description="models submitted per hour")


class KeyCreate(BaseModel):
    """``POST /v1/keys``: a name to recognise the key by, and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="who or what uses the key, e.g. 'ci' or 'alice'")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=3,
        description="'read', 'submit' or 'admin'; admin includes submit, which includes read",
    )

    limits: KeyLimits | None = Field(
        None, description="this key's own rate limit and quotas; unset ones follow the server's CELLAR_KEY_* settings"
    )

    @field_validator("scopes")
    @classmethod
    def _in_order(cls, scopes: list[Scope]) -> list[Scope]:
        return [s for s in Scope if s in scopes]


class KeyPublic(BaseModel):
    id: int = Field(description="the key's id, the number in cellar_<id>_...")
    name: str
    scopes: list[Scope] = Field(description="as issued (admin includes submit, which includes read)")
    created_at: datetime
    revoked_at: datetime | None = Field(description="when it was revoked; a revoked key is refused (401)")
    last_used_at: datetime | None = Field(description="when a request last sent it (to the minute)")
    limits: KeyLimits = Field(description="its own limits; null ones follow the server's CELLAR_KEY_* settings")


class KeyCreated(KeyPublic):
    key: str = Field(description="the key to send as 'Authorization: Bearer <key>': shown this once, never stored")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


def key_public(key: ApiKey) -> KeyPublic:
    return KeyPublic(
        id=key.key_id, name=key.name, scopes=[Scope(s) for s in key.scopes], created_at=key.created_at,
        revoked_at=key.revoked_at, last_used_at=key.last_used_at, limits=KeyLimits(**(key.limits or {})),
    )  # fmt: skip


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    dependencies=[AdminAccess],
    responses=responses(401, 422, 403),
)
def create_key(body: KeyCreate, store: StoreDep, response: Response) -> KeyCreated:
    """Issue a key (needs scope ``admin``). The answer holds the key itself, which the server
    keeps only as a hash: store it now."""
    with store.write() as session:
        limits = body.limits.model_dump(exclude_none=True) if body.limits is not None else None
        key, text = keys.create_key(session, name=body.name, scopes=[s.value for s in body.scopes], limits=limits)
        created = KeyCreated(**key_public(key).model_dump(), key=text)
    response.headers["Location"] = f"/v1/keys/{created.id}"
    return created


@router.get("/keys", dependencies=[AdminAccess], responses=responses(401, 403, 422))
def list_keys(store: StoreDep, revoked: bool = True) -> KeysPublic:
    """The issued keys, oldest first, without their secrets (needs scope ``admin``: send
    ``Authorization: Bearer <key>``). ``revoked=false`` leaves revoked ones out."""
    with store.read() as session:
        rows = keys.list_keys(session, include_revoked=revoked)
        return KeysPublic(data=[key_public(k) for k in rows], count=len(rows))


@router.delete("/keys/{key_id}", dependencies=[AdminAccess], responses=responses(401, 404, 409, 422, 403))
def revoke_key(key_id: Annotated[int, Path(ge=1, le=MAX_INT)], store: StoreDep) -> KeyPublic:
    """Revoke a key (needs scope ``admin``): the next request that sends it gets a 401. It stays
    listed, and the jobs and submissions it created keep it as their owner."""
    with store.write() as session:
        return key_public(keys.revoke_key(session, key_id))
