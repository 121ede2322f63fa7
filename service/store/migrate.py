"""Schema migrations: run Alembic programmatically and check a store is at this version's head."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from ..errors import StoreSchemaError
from ._store import Store

__all__ = ["VERSION_TABLE", "check_schema", "current_revision", "downgrade", "head_revision", "upgrade"]

#: Cellar's own version table, so Optuna's ``alembic_version`` in a shared database never collides
VERSION_TABLE = "cellar_alembic_version"


def _config(store: Store) -> Config:
    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", store.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def _run(store: Store, action: str, revision: str) -> None:
    config = _config(store)
    with store._write_lock, store.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (default: the newest)."""
    _run(store, "upgrade", revision)


def downgrade(store: Store, revision: str) -> None:
    """Take the schema down to ``revision`` (``base`` removes every Cellar table)."""
    _run(store, "downgrade", revision)


@functools.cache
def head_revision() -> str:
    """The newest revision in ``migrations/``: fixed for a release, so read once (Alembic parses
    every migration file to find it, about 3 ms)."""
    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


def current_revision(store: Store) -> str | None:
    """The store's revision, read from Cellar's version table (None: no Cellar tables yet)."""
    with store.read() as session:
        connection = session.connection()
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def check_schema(store: Store) -> str:
    """The store's revision; ``StoreSchemaError`` unless it is the head revision."""
    current, head = current_revision(store), head_revision()
    if current != head:
        state = "has no Cellar tables" if current is None else f"is at revision {current}"
        raise StoreSchemaError(
            f"the store at {store.display_url} {state}, this Cellar needs revision {head}: "
            "run `cellar migrate` (or `make migrate`) first"
        )
    return current
