"""A job's study in an Optuna storage: plain Optuna loads it and finds Cellar's trials, values,
states, parameters with their distributions, and per-epoch intermediate values; over HTTP as a
SQLite file, and with ``cellar export-optuna`` into PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.api import create_app
from service.cli import app as cli
from service.settings import Settings
from tests.browser.conftest import LocalServer
from tests.service.bodies import job_body
from tests.service.jobs.test_manager import GOOD, HOPELESS, TINY, make_store, manager, run
from workers.inline_executor import InlineExecutor

KEY = "k"
STATES = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL", "running": "RUNNING"}


@pytest.fixture
def finished(tmp_path: Path) -> tuple[Settings, int]:
    """A job with complete and pruned trials (hopeless cells stopped by the median pruner)."""
    store = make_store(tmp_path / "cellar.db")
    settings = Settings(database_url=str(store.url), api_key=KEY, start_manager=False, artifacts_dir=tmp_path / "a")
    body = job_body(
        name="to-optuna", search_space=TINY,
        strategy={"sampler": "tpe", "seed": 0, "pruner": "median", "initial_architectures": GOOD + HOPELESS},
        budget={"max_trials": 6, "epochs": 3, "parallelism": 1},
    )
    with TestClient(create_app(settings)) as client:
        job_id = client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEY}"}).json()["id"]
    assert run(manager(store, InlineExecutor()), job_id).status == "succeeded"
    store.dispose()
    return settings, job_id


def _same(study: optuna.Study, trials: list[dict[str, Any]]) -> None:
    assert [t.number for t in study.trials] == [t["number"] for t in trials]
    assert {t["state"] for t in trials} >= {"complete", "pruned"}
    for frozen, trial in zip(study.trials, trials):
        assert frozen.state.name == STATES[trial["state"]]
        assert frozen.values == (trial["values"] if trial["state"] == "complete" else None)
        assert frozen.params == trial["choices"] and set(frozen.distributions) == set(trial["choices"])
        assert all(isinstance(d, optuna.distributions.CategoricalDistribution) for d in frozen.distributions.values())
        assert frozen.intermediate_values == {e["epoch"]: e["val_metric"] for e in trial["epochs"]}
        assert frozen.user_attrs["arch"] == trial["arch"] and frozen.user_attrs["cellar_trial_id"] == trial["id"]
        assert frozen.datetime_start is not None and frozen.datetime_complete is not None
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert study.metric_names == ["val_accuracy"]


def test_the_study_loads_in_plain_optuna(finished: tuple[Settings, int], tmp_path: Path) -> None:
    settings, job_id = finished
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/v1/jobs/{job_id}/optuna")
        trials = client.get(f"/v1/jobs/{job_id}/trials").json()["data"]
        assert client.get("/v1/jobs/99/optuna").status_code == 404
    assert response.status_code == 200 and response.headers["content-type"] == "application/vnd.sqlite3"
    (tmp_path / "study.db").write_bytes(response.content)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert study.study_name == f"cellar-job-{job_id}-to-optuna"
    _same(study, trials)
    complete = [t for t in trials if t["state"] == "complete"]
    assert study.best_trial.number == max(complete, key=lambda t: (t["values"][0], -t["number"]))["number"]
    # Optuna's own tools run on it
    assert set(optuna.importance.get_param_importances(study)) <= set(complete[0]["choices"])


@pytest.mark.postgres
def test_cellar_export_optuna_writes_into_postgresql(finished: tuple[Settings, int], postgres_url: str) -> None:
    settings, job_id = finished
    with LocalServer(settings) as server:
        trials = CliRunner().invoke(cli, ["trials", str(job_id), "--json", "--url", server.url])
        written = CliRunner().invoke(cli, ["export-optuna", str(job_id), "--storage", postgres_url, "--url", server.url])
        assert written.exit_code == 0, written.output
        again = CliRunner().invoke(cli, ["export-optuna", str(job_id), "--storage", postgres_url, "--url", server.url])
        assert again.exit_code == 1 and "exists in" in again.output and "--study-name" in again.output
    import json

    study = optuna.load_study(study_name=f"cellar-job-{job_id}-to-optuna", storage=postgres_url)
    _same(study, json.loads(trials.output))
