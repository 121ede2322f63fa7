"""The HTTP contract in this process (no manager, no Ray): validation, auth, reads, 404s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings
from search_spaces import search_space_kinds
from search_spaces.datasets import dataset_names
from service.store import Store, upgrade
from tests.service.bodies import job_body as body

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    store = Store(store_url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=store_url, api_key=KEY, start_manager=False)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def job_count(client: TestClient) -> int:
    return client.get("/v1/jobs").json()["count"]


def test_a_valid_job_is_queued_with_its_full_spec(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=body(), headers=AUTH)
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["task"] == "img-classification" and job["metric"] == "acc"
    assert job["counts"] == {"total": 0, "running": 0, "complete": 0, "pruned": 0, "failed": 0}
    assert job["spec"]["training"]["batch_size"] == 64  # defaults are filled in and stored
    assert job["spec"]["objectives"] == [{"metric": "val_accuracy", "direction": "maximize"}]
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    assert client.get(f"/v1/jobs/{job['id']}/trials").json() == {"data": [], "count": 0}


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        (
            {"search_space__kind": "resnet"},
            "body.search_space.kind",
            "unknown search space 'resnet'; allowed: " + ", ".join(map(repr, search_space_kinds())),
        ),
        ({"strategy__sampler": "annealing"}, "body.strategy.sampler", "'tpe', 'random', 'gp', 'nsga2', 'evolution' or 'grid'"),
        (
            {"strategy__sampler": "evolution", "strategy__sampler_params": {"popsize": 10}},
            "body.strategy",
            "sampler_params.popsize: unknown parameter for sampler 'evolution'; allowed: population_size, sample_size",
        ),
        (
            {"strategy__sampler": "evolution", "objectives": [
                {"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]},
            "body.strategy",
            "sampler 'evolution' handles a single objective and the job has 2",
        ),
        (
            {"strategy__sampler": "grid", "search_space": {"kind": "gnn", "params": {}}, "dataset": "karate"},
            "body.strategy",
            "search space 'gnn' is conditional and has no grid",
        ),
        ({"strategy__pruner": "asha", "strategy__pruner_params": {"reduction_factor": 1}}, "body.strategy",
         "pruner_params.reduction_factor"),
        ({"dataset": "imagenet"}, "body.dataset", "unknown dataset 'imagenet'; allowed: " + ", ".join(map(repr, dataset_names()))),
        ({"dataset": "iris"}, "body.dataset", "search space 'nb201' builds models for img-classification, but dataset 'iris' is a tab-classification task"),
        ({"budget__max_trials": -3}, "body.budget.max_trials", "greater than 0"),
        ({"budget__epochs": 0}, "body.budget.epochs", "greater than 0"),
        ({"budget__parallelism": -1}, "body.budget.parallelism", "greater than 0"),
        ({"budget": ...}, "body.budget", "Field required"),
        ({"search_space": ...}, "body.search_space", "Field required"),
        ({"dataset": ...}, "body.dataset", "Field required"),
        ({"budget__max_trials": ...}, "body.budget", "budget needs max_trials or time_limit_s"),
        ({"search_space__params__channels": 0}, "body.search_space", "search_space.params.channels: Input should be greater than or equal to 1"),
        ({"search_space__params__depth": 3}, "body.search_space", "search_space.params.depth: Extra inputs are not permitted"),
        ({"strategy__pruner": "magic"}, "body.strategy.pruner", "'none', 'median', 'asha', 'successive_halving' or 'hyperband'"),
        ({"objectives": [{"metric": "val_bleu", "direction": "maximize"}]}, "body.objectives", "unknown metric 'val_bleu'"),
        (
            {"strategy__pruner": "median", "objectives": [{"metric": "params", "direction": "minimize"}]},
            "body.strategy",
            "pruning needs exactly one objective with a per-epoch curve",
        ),
        (
            {"strategy__pruner": "median", "objectives": [
                {"metric": "val_accuracy", "direction": "maximize"}, {"metric": "train_seconds", "direction": "minimize"}]},
            "body.strategy",
            "others known before training ends ('params', 'flops', 'latency_ms', 'synflow'",
        ),
        ({"training__split": [0.9996, 0.0002, 0.0002]}, "body.training", "leave the validation part of 1797 samples empty"),
        ({"training__split": [0.5, 0.5, 0.5]}, "body.training.split", "must be positive and sum to 1"),
        ({"resources__cpus_per_trial": 0.00001}, "body.resources.cpus_per_trial", "multiple of 0.0001"),
        ({"resources__memory_mb_per_trial": 10**9}, "body.resources.memory_mb_per_trial", "less than or equal to 1048576"),
        ({"budget__epoch_timeout_s": 0}, "body.budget.epoch_timeout_s", "greater than 0"),
        ({"training__optimizer": "lbfgs"}, "body.training.optimizer", "'sgd', 'adam' or 'adamw'"),
        ({"training__transform": "norm_299x"}, "body.training.transform", "unknown transform 'norm_299x'; allowed: norm[_<size>][_flip]"),
        ({"training__transform": "norm_64", "dataset": "iris", "search_space": {"kind": "kan"}}, "body.training", "works on images"),
        ({"resources__cpus_per_trial": 0}, "body.resources.cpus_per_trial", "greater than 0"),
        ({"budgett": {"max_trials": 3}}, "body.budgett", "Extra inputs are not permitted"),
        (
            {"strategy__initial_architectures": ["|none~0|+|none~0|"]},
            "body.strategy",
            "initial_architectures[0]: arch string '|none~0|+|none~0|' has 2 node segments",
        ),
    ],
)
def test_bad_bodies_get_422_naming_the_field_and_nothing_is_written(
    client: TestClient, changes: dict[str, Any], field: str, fragment: str
) -> None:
    response = client.post("/v1/jobs", json=body(**changes), headers=AUTH)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert any(".".join(map(str, e["loc"])) == field and fragment in e["msg"] for e in payload["detail"]), payload
    assert field in payload["message"] and fragment in payload["message"]
    assert job_count(client) == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'"time_limit_s": 1e400', "body.budget.time_limit_s"),  # valid JSON, parses to infinity
        (b'"time_limit_s": NaN', "body.budget.time_limit_s"),  # Python's parser accepts NaN
    ],
)
def test_infinite_and_nan_numbers_are_refused(client: TestClient, raw: bytes, field: str) -> None:
    content = b'{"search_space": {"kind": "nb201"}, "dataset": "digits", "budget": {"max_trials": 2, ' + raw + b"}}"
    response = client.post("/v1/jobs", content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert any(".".join(map(str, e["loc"])) == field and "finite number" in e["msg"] for e in response.json()["detail"])
    assert job_count(client) == 0


def test_list_filters_are_validated(client: TestClient) -> None:
    response = client.get("/v1/jobs", params={"status": "bogus"})
    assert response.status_code == 422 and "'queued'" in response.json()["message"]
    job = client.post("/v1/jobs", json=body(), headers=AUTH).json()
    assert client.get(f"/v1/jobs/{job['id']}/trials", params={"state": "done"}).status_code == 422
    assert client.get("/v1/jobs", params={"status": "queued"}).json()["count"] == 1


def test_a_body_that_is_not_json_is_a_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert job_count(client) == 0


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [({}, "missing API key"), ({"Authorization": "Bearer nope"}, "wrong API key"), ({"Authorization": "Basic abc"}, "missing API key")],
)
def test_writes_need_the_key(client: TestClient, headers: dict[str, str], fragment: str) -> None:
    response = client.post("/v1/jobs", json=body(), headers=headers)
    assert response.status_code == 401 and fragment in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/jobs/1/cancel", headers=headers).status_code == 401
    assert job_count(client) == 0


def test_reads_can_require_the_key(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=sqlite_url, api_key=KEY, start_manager=False, reads_require_key=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/jobs").status_code == 401
        assert client.get("/v1/jobs", headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200  # liveness stays open


def test_unknown_ids_are_404_and_finished_jobs_cannot_be_cancelled(client: TestClient) -> None:
    assert client.get("/v1/jobs/42").status_code == 404
    assert "job 42 does not exist" in client.get("/v1/jobs/42").json()["detail"]
    assert client.get("/v1/jobs/42/trials").status_code == 404
    assert client.get("/v1/trials/42").status_code == 404
    assert client.post("/v1/jobs/42/cancel", headers=AUTH).status_code == 404
    job = client.post("/v1/jobs", json=body(), headers=AUTH).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH).json()
    assert cancelled["status"] == "cancelled"  # a queued job stops at once
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_discovery_endpoints(client: TestClient) -> None:
    spaces = {s["kind"]: s for s in client.get("/v1/search-spaces").json()}
    assert sorted(spaces) == search_space_kinds()
    assert set(spaces["nb201"]["params"]["properties"]) == {"channels", "cells_per_stage", "ops"}
    assert spaces["nb201"]["tasks"] == ["img-classification"]
    strategies = client.get("/v1/strategies").json()
    samplers = {s["name"]: s for s in strategies["samplers"]}
    assert list(samplers) == ["tpe", "random", "gp", "nsga2", "evolution", "grid"]
    assert set(samplers["evolution"]["params"]["properties"]) == {"population_size", "sample_size"}
    assert not samplers["evolution"]["multi_objective"] and samplers["nsga2"]["multi_objective"]
    assert [p["name"] for p in strategies["pruners"]] == ["none", "median", "asha", "successive_halving", "hyperband"]
    datasets = {d["name"]: d for d in client.get("/v1/datasets").json()}
    assert sorted(datasets) == dataset_names()
    assert datasets["digits"]["in_shape"] == [1, 8, 8] and datasets["digits"]["available"]
    assert datasets["kan-exp-sin"]["metric"] == "rmse" and datasets["kan-exp-sin"]["metric_direction"] == "minimize"
    assert datasets["karate"]["task"] == "node-classification" and datasets["karate"]["out_shape"] == [4]
    assert not datasets["cifar-10"]["available"] and "set CELLAR_DATA_DIR" in datasets["cifar-10"]["reason"]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["store"]["revision"] == health["store"]["head"]
    assert health["executor"] == {"status": "disabled"}
    assert client.get("/v1/data", params={"task": "img-classification"}).json() == {"data": [], "count": 0, "next_offset": None, "codes": None}


def test_liveness_and_metadata_are_answered_without_the_thread_pool(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz, the search spaces, strategies and datasets are answered on the event loop, so a
    probe never queues behind reads waiting for a thread (docs/benchmarks.md#api-speed)."""
    import anyio.to_thread

    client.get("/v1/datasets")  # made once, in a thread; from then on the stat calls tell

    async def no_threads(*args: object, **kwargs: object) -> None:
        raise AssertionError("a thread was asked for")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_threads)
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["store"]["status"] == "ok", health.text
    for path in ("/v1/datasets", "/v1/search-spaces", "/v1/strategies"):
        assert client.get(path).status_code == 200, path
    with pytest.raises(AssertionError, match="a thread was asked for"):
        client.get("/v1/jobs")  # a sync read does go to the pool: the patch bites


@pytest.mark.postgres
def test_liveness_is_a_503_naming_the_store_while_postgres_refuses_connections(postgres_url: str, postgres_admin) -> None:  # noqa: ANN001
    from sqlalchemy.engine import make_url

    from tests.postgres import connections_refused

    store = Store(postgres_url)
    upgrade(store)
    store.dispose()
    name = make_url(postgres_url).database
    with TestClient(create_app(Settings(database_url=postgres_url, api_key=KEY, start_manager=False))) as client:
        assert client.get("/healthz").status_code == 200
        with connections_refused(postgres_admin, name):
            down = client.get("/healthz")
        assert down.status_code == 503 and down.json()["store"]["status"] == "error", down.text
        assert "Check CELLAR_DATABASE_URL" in down.json()["store"]["error"]
        assert client.get("/healthz").status_code == 200  # back once the server lets it in again


def test_readiness_asks_the_store_its_revision_on_each_call(store_url: str) -> None:
    from sqlalchemy import text

    from service.store import head_revision
    from service.store.migrate import VERSION_TABLE

    store = Store(store_url)
    upgrade(store)
    with TestClient(create_app(Settings(database_url=store_url, api_key=KEY, start_manager=False))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        assert ready.json()["store"]["revision"] == head_revision() and ready.json()["executor"] == {"status": "disabled"}
        with store.write() as session:  # another process moves the store to an older revision
            session.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
        moved = client.get("/readyz")
        assert moved.status_code == 503 and moved.json()["status"] == "not ready"
        assert f"the store is at revision 0001, this server needs {head_revision()}" in moved.json()["store"]["error"]
        assert client.get("/healthz").status_code == 200  # liveness: the server itself is fine
        with store.write() as session:
            session.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '{head_revision()}'"))
        assert client.get("/readyz").status_code == 200
    store.dispose()


def test_a_file_dataset_without_its_files_is_a_422_that_says_where_they_go(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=body(dataset="cifar-10"), headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "dataset"]
    assert "set CELLAR_DATA_DIR to a folder holding cifar-10-batches-py/" in error["msg"]
    assert job_count(client) == 0


def test_the_server_refuses_an_unmigrated_store(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, api_key=KEY, start_manager=False)
    with pytest.raises(Exception, match="run `cellar migrate`"):
        with TestClient(create_app(settings)):
            pass


def test_file_datasets_are_described_from_their_files(tmp_path: Path) -> None:
    from tests.search_spaces.formats import write_planetoid

    write_planetoid(tmp_path / "data", "Cora", "cora", nodes=30, features=8, classes=3, test=6)
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=url, api_key=KEY, start_manager=False, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        datasets = {d["name"]: d for d in client.get("/v1/datasets").json()}
        cora = datasets["cora"]
        assert cora["available"] and cora["in_shape"] == [8] and cora["out_shape"] == [3] and cora["num_samples"] == 30
        assert not datasets["citeseer"]["available"] and "CiteSeer/raw/ind.citeseer.x" in datasets["citeseer"]["reason"]
        job = body(dataset="cora", search_space={"kind": "gnn", "params": {"max_layers": 1}})
        assert client.post("/v1/jobs", json=job, headers=AUTH).status_code == 201


def test_the_dataset_list_notices_files_that_arrive_while_it_serves(store_url: str, tmp_path: Path) -> None:
    from tests.search_spaces.formats import write_cifar10

    store = Store(store_url)
    upgrade(store)
    store.dispose()
    settings = Settings(database_url=store_url, api_key=KEY, start_manager=False, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        before = {d["name"]: d for d in client.get("/v1/datasets").json()}
        assert not before["cifar-10"]["available"]
        assert client.get("/v1/datasets").json() == list(before.values())  # answered from memory, the same
        write_cifar10(tmp_path, per_batch=4)
        after = {d["name"]: d for d in client.get("/v1/datasets").json()}
        assert after["cifar-10"]["available"] and after["cifar-10"]["num_samples"] == 24
        assert {k: v for k, v in after.items() if k != "cifar-10"} == {k: v for k, v in before.items() if k != "cifar-10"}
