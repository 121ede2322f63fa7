"""Shared fixtures: stores on SQLite and PostgreSQL (real servers, fresh databases)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from service.store import Store, upgrade

#: where to create throw-away test databases; CI points it at the machine's PostgreSQL
POSTGRES_ADMIN_URL = os.environ.get(
    "CELLAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
#: set to 1 (CI does) to make an unreachable PostgreSQL a failure instead of a skip
REQUIRE_POSTGRES = os.environ.get("CELLAR_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session", autouse=True)
def artifacts_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Trained weights (``CELLAR_ARTIFACTS_DIR``) of servers and managers that tests start without
    choosing a folder go to a temporary one, never into the checkout. Tests that read weights give
    their server its own folder."""
    previous = os.environ.get("CELLAR_ARTIFACTS_DIR")
    os.environ["CELLAR_ARTIFACTS_DIR"] = str(tmp_path_factory.mktemp("artifacts"))
    yield
    if previous is None:
        os.environ.pop("CELLAR_ARTIFACTS_DIR", None)
    else:
        os.environ["CELLAR_ARTIFACTS_DIR"] = previous


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # any connection failure means "no PostgreSQL here"
        engine.dispose()
        message = (
            f"PostgreSQL not reachable at {make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)} "
            f"({type(error).__name__}); set CELLAR_TEST_POSTGRES_URL to a server where the tests may create databases"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped after the test."""
    name = f"cellar_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with postgres_admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # noqa: ANN001
    return f"sqlite:///{tmp_path / 'cellar.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def empty_store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    yield store
    store.dispose()


@pytest.fixture
def store(empty_store: Store) -> Store:
    """A store migrated to head."""
    upgrade(empty_store)
    return empty_store
