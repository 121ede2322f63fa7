"""Property-based fuzzing of the whole HTTP API from its OpenAPI document (schemathesis).

Every operation gets a few derandomized examples (valid and invalid ones, plus schemathesis's
boundary cases: huge integers, empty strings, wrong content types), sent with the key so that writes
pass the auth check and reach the code behind it. Each answer must be no 5xx, a status the document
lists for the route, the content type it lists and, for JSON, the schema it lists; an error is a
4xx in the shape of ``ErrorPublic`` (``detail`` and ``message``). Each operation runs on both
backends, on its own copy of a seeded store. ``test_an_integer_past_the_database_is_a_4xx`` sends
2**63 to every integer parameter the document lists, which random examples rarely reach.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from service.api import create_app
from service.settings import Settings
from service.store import Store, Trial, TrialEpoch, TrialState, queries, upgrade
from tests.service.bodies import job_body

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


#: what each answer is checked for: no 5xx, a status, a content type and (for JSON) a body that the
#: document lists for the route. Left out: ``negative_data_rejection`` (it takes a query value
#: written from a generated object, e.g. ``?metric={'a': []}``, for a non-string, yet every query
#: value is a string), ``positive_data_acceptance`` (a valid request for a job that does not exist
#: is rightly a 404), ``use_after_free`` and ``ensure_resource_availability`` (stateful checks
#: over links; the document has none), ``ignored_auth`` (test_keys.py covers the keys).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _seed(url: str) -> dict[str, int]:
    """A finished two-objective job with complete and failed trials, their epochs and code: ids that
    the fuzzer's path parameters are steered to, so that reads go past the 404."""
    store = Store(url)
    upgrade(store)
    try:
        with store.write() as session:
            spec = job_body(objectives=[{"metric": "val_accuracy", "direction": "maximize"},
                                        {"metric": "params", "direction": "minimize"}])  # fmt: skip
            job = queries.create_job(
                session, name="seeded", search_space="nb201", dataset="digits", task="img-classification",
                metric="acc", spec=spec,
            )  # fmt: skip
            job.status = "succeeded"
            first = 0
            for number in range(3):
                arch = queries.get_or_create_architecture(
                    session, arch_hash=f"{number:0>64}", search_space="nb201", space_params={"channels": 8},
                    encoding=f"|nor_conv_3x3~0|+|none~0|skip_connect~{number}|", dedup_hash=f"{number:d>64}",
                    in_shape=[1, 1, 8, 8], out_shape=[10], nn_name=f"cell-{number}", num_params=1000 * (number + 1),
                    nn_code="import torch\n\nclass Net(torch.nn.Module):\n    pass\n",
                )  # fmt: skip
                failed = number == 2
                trial = Trial(
                    job_id=job.job_id, number=number, architecture_id=arch.architecture_id,
                    state=TrialState.FAILED if failed else TrialState.COMPLETE,
                    params={}, distributions={}, prm={"lr": 0.05, "batch": 64, "epoch": 2},
                    seed=0, epochs=2, values=None if failed else [0.5 + number / 10, 1000.0 * (number + 1)],
                    val_metric=None if failed else 0.5 + number / 10, error="ValueError: boom" if failed else None,
                )  # fmt: skip
                session.add(trial)
                session.flush()
                first = first or trial.trial_id
                for epoch in (1, 2):
                    session.add(TrialEpoch(trial_id=trial.trial_id, epoch=epoch, val_metric=0.4 + epoch / 10,
                                           loss=1.0 / epoch, elapsed_seconds=0.5 * epoch))  # fmt: skip
            return {"job_id": job.job_id, "trial_id": first}
    finally:
        store.dispose()


#: the seeded job and its first trial (a fresh store numbers both from 1)
JOB_ID = TRIAL_ID = 1
#: seconds a request may take: an event stream that has not ended by then is cut there, and its
#: events so far are checked (``/v1/jobs/{id}/events`` ends with a finished job, the seeded one)
TIMEOUT_S = 10

# The document comes from an app that is only built (its store opens when it starts); the requests
# go to each test's own app (``fuzzed_app``): schemathesis's lazy ``from_fixture`` fails on pytest 9
# (it sets ``request.node._nodeid``, which pytest 9's items no longer have).
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite://", api_key=KEY, start_manager=False)).openapi()
)


@schema.hook
def flatmap_path_parameters(ctx: Any, path: dict[str, Any] | None) -> Any:
    """Half the cases name the seeded job (its trial 0, its trial's id), so that reads go past the 404."""
    if not path:
        return st.just(path)
    seeded = {"job_id": JOB_ID, "number": 0, "trial_id": TRIAL_ID}
    return st.sampled_from([path, {**path, **{k: v for k, v in seeded.items() if k in path}}])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def seeded_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The seeded store, on each backend: a SQLite file, or a PostgreSQL database to copy as a template."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'seeded.db'}"
        assert _seed(url) == {"job_id": JOB_ID, "trial_id": TRIAL_ID}
        yield url
        return
    with _database(request.getfixturevalue("postgres_admin")) as url:
        assert _seed(url) == {"job_id": JOB_ID, "trial_id": TRIAL_ID}
        yield url


@contextmanager
def _database(admin: Engine, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template``), dropped afterwards."""
    name = f"cellar_fuzz_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fuzzed_app(seeded_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An app per operation on a copy of the seeded store: a fuzzed DELETE of the seeded job leaves
    the next operation's copy whole. schemathesis starts the app's lifespan with the first request
    and stops it when the test ends."""
    with ExitStack() as stack:
        if seeded_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / 'cellar.db'}"
            shutil.copyfile(make_url(seeded_url).database, make_url(url).database)
        else:
            admin = request.getfixturevalue("postgres_admin")
            url = stack.enter_context(_database(admin, template=make_url(seeded_url).database))
        yield create_app(Settings(database_url=url, api_key=KEY, start_manager=False, events_poll_s=0.05))


@schema.parametrize()
@settings(max_examples=5, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
def test_api(case: Any, fuzzed_app: Any) -> None:
    case.call_and_validate(app=fuzzed_app, headers=AUTH, checks=CHECKS, timeout=TIMEOUT_S)


def _integer_parameters() -> list[Any]:
    found = []
    for path, item in schema.raw_schema["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                kinds = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
                if any(kind.get("type") == "integer" or kind.get("items", {}).get("type") == "integer" for kind in kinds):
                    key = (method.upper(), path, parameter["name"])
                    found.append(pytest.param(*key, parameter["in"], id=" ".join(key)))
    return found


@pytest.mark.parametrize(("method", "path", "name", "where"), _integer_parameters())
def test_an_integer_past_the_database_is_a_4xx(fuzzed_app: Any, method: str, path: str, name: str, where: str) -> None:
    huge = 2**63
    url = re.sub(r"\{(\w+)\}", lambda m: str(huge if m[1] == name else JOB_ID), path)
    with TestClient(fuzzed_app) as client:
        response = client.request(method, url, params={name: huge} if where == "query" else None, headers=AUTH)
    documented = schema.raw_schema["paths"][path][method.lower()]["responses"]
    assert response.status_code < 500 and str(response.status_code) in documented, response.text
    if response.status_code >= 400:
        assert response.json()["message"], response.text
