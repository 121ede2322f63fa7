"""After a job ends: extend it (its search goes on where it stopped) or delete it (other jobs'
cache hits on it keep their results). Real training in process, a real SQLite store, HTTP through
the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.api import create_app
from service.settings import Settings
from service.store import Job, Store, Trial, TrialEpoch
from tests.service.bodies import job_body
from tests.service.jobs.test_manager import TINY, make_store, manager, run, trials
from workers.inline_executor import InlineExecutor

KEY = "k"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: TPE that models after two trials: what it asks depends on every result before
TPE = {"sampler": "tpe", "seed": 4, "sampler_params": {"n_startup_trials": 2}}


def client_for(store: Store, tmp_path: Path) -> TestClient:
    settings = Settings(database_url=str(store.url), api_key=KEY, start_manager=False, artifacts_dir=tmp_path / "artifacts")
    return TestClient(create_app(settings))


def submit(client: TestClient, **changes: Any) -> int:
    response = client.post("/v1/jobs", json=job_body(search_space=TINY, **changes), headers=AUTH)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def archs(store: Store, job_id: int) -> list[str]:
    return [t.architecture.encoding for t in trials(store, job_id)]  # type: ignore[union-attr]


def test_an_extended_job_searches_on_as_if_it_had_never_stopped(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    budget = {"max_trials": 3, "epochs": 1, "parallelism": 1}
    with client_for(store, tmp_path) as client:
        short = submit(client, strategy=TPE, budget=budget)
        assert run(manager(store, InlineExecutor()), short).status == "succeeded"
        first = archs(store, short)
        extended = client.post(f"/v1/jobs/{short}/extend", json={"max_trials": 6}, headers=AUTH)
        assert extended.status_code == 200, extended.text
        assert extended.json()["status"] == "queued" and extended.json()["max_trials"] == 6
        job = run(manager(store, InlineExecutor()), short)
        assert job.status == "succeeded" and job.finished_at is not None
        # the same six trials as a job that had six from the start (trained anew: its cache is off)
        whole = submit(client, strategy={**TPE, "cache": False}, budget={**budget, "max_trials": 6})
        assert run(manager(store, InlineExecutor()), whole).status == "succeeded"
        assert archs(store, short)[:3] == first
        assert archs(store, short) == archs(store, whole)
        assert [t.state for t in trials(store, short)] == ["complete"] * 6


def test_extending_says_what_is_wrong(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    with client_for(store, tmp_path) as client:
        queued = submit(client, budget={"max_trials": 2, "epochs": 1})
        refused = client.post(f"/v1/jobs/{queued}/extend", json={"max_trials": 5}, headers=AUTH)
        assert refused.status_code == 409 and "only a job that has ended can be extended" in refused.json()["detail"]
        assert run(manager(store, InlineExecutor()), queued).status == "succeeded"
        cases = [
            ({}, 'give max_trials (a new total) or time_limit_s (seconds more)'),
            ({"max_trials": 2}, "the job has asked 2 trials already; give a larger total, e.g. 12"),
            ({"time_limit_s": 60}, "the job stopped at its max_trials (2); more time alone would not run another trial"),
            ({"max_trials": "5"}, "Input should be a valid integer"),
        ]
        for body, message in cases:
            answer = client.post(f"/v1/jobs/{queued}/extend", json=body, headers=AUTH)
            assert answer.status_code == 422 and message in answer.text, (body, answer.text)
        assert client.post(f"/v1/jobs/{queued}/extend", json={"max_trials": 3}).status_code == 401
        assert client.post("/v1/jobs/999/extend", json={"max_trials": 3}, headers=AUTH).status_code == 404
        assert client.get(f"/v1/jobs/{queued}").json()["status"] == "succeeded"  # nothing changed


def test_deleting_a_job_keeps_other_jobs_cache_hits_on_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    budget = {"max_trials": 3, "epochs": 2, "parallelism": 1}
    strategy = {"sampler": "random", "seed": 7}
    with client_for(store, tmp_path) as client:
        original = submit(client, strategy=strategy, budget=budget)
        assert run(manager(store, InlineExecutor(), artifacts=tmp_path / "artifacts"), original).status == "succeeded"
        again = submit(client, strategy=strategy, budget=budget)  # the same trainings: answered from the cache
        assert run(manager(store, InlineExecutor(), artifacts=tmp_path / "artifacts"), again).status == "succeeded"
        before = client.get(f"/v1/jobs/{again}/trials").json()["data"]
        assert all(t["cache_hit"] and t["epochs"] == [] for t in before)
        assert (tmp_path / "artifacts" / f"job-{original}").is_dir()

        assert client.delete(f"/v1/jobs/{original}").status_code == 401
        assert client.delete(f"/v1/jobs/{original}", headers=AUTH).status_code == 204
        assert client.get(f"/v1/jobs/{original}").status_code == 404
        assert not (tmp_path / "artifacts" / f"job-{original}").exists()
        after = client.get(f"/v1/jobs/{again}/trials").json()["data"]
        original_epochs = {t["number"]: t["epochs"] for t in before}
        for kept, was in zip(after, before):
            assert kept["state"] == "complete" and kept["values"] == was["values"] and kept["cache_hit"]
            assert kept["duplicate_of"] is None and len(kept["epochs"]) == 2
        rows = client.get("/v1/data", params={"dataset": "digits"}).json()["data"]
        assert {r["job_id"] for r in rows} == {again} and len(rows) == 6
        assert original_epochs  # the hits had no epochs of their own before
        with store.read() as session:
            assert session.scalar(select(Job).where(Job.job_id == original)) is None
            assert not session.scalars(select(Trial).where(Trial.job_id == original)).all()
            assert len(session.scalars(select(TrialEpoch)).all()) == 6
        assert client.delete(f"/v1/jobs/{original}", headers=AUTH).status_code == 404


def test_a_running_job_is_not_deleted(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    with client_for(store, tmp_path) as client:
        job_id = submit(client, budget={"max_trials": 2, "epochs": 1})
        with store.write() as session:
            session.get(Job, job_id).status = "running"  # type: ignore[union-attr]
        refused = client.delete(f"/v1/jobs/{job_id}", headers=AUTH)
        assert refused.status_code == 409 and f"cancel it (POST /v1/jobs/{job_id}/cancel)" in refused.json()["detail"]
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
