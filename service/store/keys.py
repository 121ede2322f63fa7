"""API keys the server issued (``/v1/keys``), and which key created each job and submission.

A key is ``cellar_<key_id>_<secret>``; the store keeps the SHA-256 of the secret, never the
secret. A key is looked up by its id and the hashes compared in constant time (``find_key``; what
a key may do is ``service.api.deps``'s). Keys are revoked, not deleted, so that the jobs and
submissions they created keep their owner.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, String, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..errors import ConflictError, NotFoundError
from .models import Base, utcnow

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "Scope",
    "create_key",
    "find_key",
    "get_key",
    "list_keys",
    "revoke_key",
    "touch_key",
]


#: an issued key is ``cellar_<key_id>_<secret>``: the id says which row to compare against
KEY_PREFIX = "cellar_"


class Scope(StrEnum):
    """What a key may do; each scope includes the ones below it."""

    READ = "read"
    SUBMIT = "submit"
    ADMIN = "admin"

    @classmethod
    def granted(cls, scopes: list[Any]) -> frozenset[Scope]:
        """The scopes a key holds, implied ones included (``admin`` → ``submit`` → ``read``)."""
        order = list(cls)
        highest = max((order.index(cls(s)) for s in scopes if s in cls._value2member_map_), default=-1)
        return frozenset(order[: highest + 1])


def _hash(secret: str) -> str:
    # the secret is 256 random bits: a plain SHA-256 is as strong as a slow password hash here
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(Base):
    """One issued key: its name, scopes, the SHA-256 of its secret, and when it was revoked."""

    __tablename__ = "cellar_api_keys"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    #: hex SHA-256 of the secret part of ``cellar_<key_id>_<secret>``
    secret_hash: Mapped[str] = mapped_column(String(64))
    #: as issued, e.g. ``["submit"]``; ``admin`` implies ``submit``, which implies ``read``
    scopes: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: to the minute (see ``touch_key``)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: this key's own rate limit and quotas, e.g. ``{"rate_limit": 120}``, over the server's
    #: ``CELLAR_KEY_*`` settings (``service.api.ratelimit``); null: the settings
    limits: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)


def create_key(
    session: Session, *, name: str, scopes: list[str], limits: dict[str, int] | None = None
) -> tuple[ApiKey, str]:
    """A new key and its text, ``cellar_<key_id>_<secret>``: shown once, only its hash is kept."""
    secret = secrets.token_urlsafe(32)
    key = ApiKey(name=name, scopes=scopes, secret_hash=_hash(secret), created_at=utcnow(), limits=limits or None)
    session.add(key)
    session.flush()
    return key, f"{KEY_PREFIX}{key.key_id}_{secret}"


def find_key(session: Session, text: str) -> ApiKey | None:
    """The issued key ``text`` is (revoked or not), or None: looked up by its id, its secret's hash
    compared in constant time."""
    key_id, _, secret = text.removeprefix(KEY_PREFIX).partition("_")
    # at most 9 digits: an INTEGER on every backend
    if not text.startswith(KEY_PREFIX) or not (key_id.isascii() and key_id.isdigit() and len(key_id) <= 9) or not secret:
        return None
    key = session.get(ApiKey, int(key_id))
    if key is None or not hmac.compare_digest(_hash(secret).encode(), key.secret_hash.encode()):
        return None
    return key


def get_key(session: Session, key_id: int) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query.order_by(ApiKey.key_id)).all())


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key at once: the next request that sends it is refused."""
    key = get_key(session, key_id)
    if key is None:
        raise NotFoundError(f"no API key has id {key_id}; GET /v1/keys lists them")
    if key.revoked_at is not None:
        raise ConflictError(f"API key {key_id} ({key.name!r}) was revoked already, at {key.revoked_at.isoformat()}")
    key.revoked_at = utcnow()
    session.flush()
    return key


def touch_key(session: Session, key_id: int, *, every: timedelta = timedelta(minutes=1)) -> None:
    """Record that the key was used, at most once per ``every`` (a write per request would make
    every read a write)."""
    now = utcnow()
    session.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every))
        .values(last_used_at=now)
    )
