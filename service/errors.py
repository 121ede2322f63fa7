"""Exceptions of the service. One root; the API layer alone maps them to HTTP status codes."""

from __future__ import annotations

__all__ = [
    "CellarError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "ServiceStoppingError",
    "StoreError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "TabularTableError",
]


class CellarError(Exception):
    """Root of the service's errors."""


class NotFoundError(CellarError):
    """A job, trial or other entity that does not exist."""


class ConflictError(CellarError):
    """An action the entity's current state does not allow (e.g. cancelling a finished job)."""


class InvalidRequestError(CellarError):
    """A request that passed schema validation but is wrong for this server (e.g. dataset files absent)."""

    def __init__(self, message: str, field: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.field = field


class StoreError(CellarError):
    """The store could not be reached or refused an operation; the message says what to check."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (server down, connection lost, lock timeout):
    worth retrying, unlike a refused statement."""


class StoreSchemaError(StoreError):
    """The store's schema is not at this version's migration head."""


class ServiceStoppingError(CellarError):
    """The server is stopping; what was asked goes on (a submission stays queued), ask again later."""


class TabularTableError(CellarError):
    """A results table cannot be built, exported, imported or loaded; the message says why."""
