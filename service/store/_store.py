"""Engines and sessions: the one place where database errors become Cellar's own.

SQLite gets WAL mode and a single writer: write sessions take a process-wide lock and open their
transaction with ``BEGIN IMMEDIATE`` (a deferred transaction that later upgrades to a write lock is
what raises "database is locked" even with a busy timeout). Readers never wait for the writer.

``Store.version()`` changes whenever anyone, in any process, commits a change to the database: the
API keeps answers computed at one version until it changes (``service.api.cache``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError, StoreUnavailableError
from .changes import SQLITE_MARK_SQL, sqlite_changed

__all__ = ["Store"]

T = TypeVar("T")
_WRITE = "cellar_write"
#: PostgreSQL's version of the store (``Store.version``; ``service.api.cache.StoreVersion`` asks it too)
PG_VERSION_SQL = "SELECT pg_current_snapshot()::text"


class Store:
    """A database behind ``read()`` and ``write()`` sessions."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout_s: float = 60.0, pool_size: int = 12) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            # busy_timeout_s: how long a writer waits for another process's lock before giving up
            # a file database: a pool of connections as for a server; a connection past the pool
            # would be opened (and its PRAGMAs run) for each request and closed after
            self.engine = create_engine(
                self.url, echo=echo, connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
                **({"pool_size": pool_size, "max_overflow": pool_size} if self.url.database not in (None, "", ":memory:") else {}),
            )  # fmt: skip
            _configure_sqlite(self.engine, busy_timeout_s)
        else:
            self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._readers = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lock: Any = threading.Lock() if self.is_sqlite else nullcontext()
        self._version_lock = threading.Lock()
        self._watcher: sqlite3.Connection | None = None

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries. Closing it ends its transaction; the rows it loaded stay
        readable afterwards (detached), but nothing it did not load can be loaded from them."""
        with self._translate(), self._readers() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back (nothing written) if it raises."""
        with self._write_lock, self._translate(), self._writers() as session, session.begin():
            yield session

    def version(self) -> str | None:
        """A value that differs from every earlier one once a change has been committed to the
        database since (by this process or any other); ``None`` for an in-memory database.

        SQLite: ``PRAGMA data_version`` of a connection of its own, which changes when any other
        connection commits. PostgreSQL: the server's current snapshot (``pg_current_snapshot()``),
        which changes when a transaction that may write starts or ends, in any database of the
        server; transactions that only read leave it as it is. Read it before reading the data
        that it stands for: what a read then sees is at least as new as the version."""
        if not self.is_sqlite:
            with self._translate(), self.engine.connect() as connection:
                return str(connection.exec_driver_sql(PG_VERSION_SQL).scalar())
        if self.url.database in (None, "", ":memory:"):
            return None
        return self._watch(lambda watcher: str(watcher.execute("PRAGMA data_version").fetchone()[0]))

    def changed_jobs(self, mark: int | None) -> tuple[set[int] | None, int]:
        """SQLite: (the jobs changed after ``mark``, or None when there is no mark yet; the new mark),
        from the notes of migration 0015's triggers (``service.store.changes``), on the connection
        that reads the version. Read it after the version: the new mark is at least as new."""
        if mark is None:
            return None, self._watch(lambda watcher: watcher.execute(SQLITE_MARK_SQL).fetchone()[0])
        return self._watch(lambda watcher: sqlite_changed(watcher, mark))

    def _watch(self, read: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with self._version_lock:
                if self._watcher is None:
                    self._watcher = sqlite3.connect(self.url.database, check_same_thread=False, isolation_level=None)
                return read(self._watcher)
        except sqlite3.Error as error:
            raise StoreUnavailableError(
                f"the store at {self.display_url} failed: {error}. Check CELLAR_DATABASE_URL and that the file "
                "is readable."
            ) from error

    def dispose(self) -> None:
        with self._version_lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
        self.engine.dispose()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as error:
            raise StoreUnavailableError(
                f"the store at {self.display_url} failed: {error.orig}. Check CELLAR_DATABASE_URL "
                "and that the database server is running and reachable."
            ) from error
        except DBAPIError as error:
            raise StoreError(f"the store at {self.display_url} refused the operation: {error.orig}") from error
        except SQLAlchemyError as error:
            raise StoreError(f"store error at {self.display_url}: {error}") from error


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" event (below) issue BEGIN, instead of pysqlite's implicit one
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
