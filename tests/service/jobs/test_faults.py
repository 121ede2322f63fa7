"""Faults, for real: worker processes killed mid-trial, the server killed with SIGKILL and started
again. Real ``cellar serve`` processes with their own local Ray; real training on digits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from service.store import Job, Store, Trial
from tests.service.bodies import job_body
from tests.service.server import KEY, Server

pytestmark = [pytest.mark.ray, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {KEY}"}
#: slow enough per epoch (about 0.1-0.3 s here) that a trial is caught mid-training
_SLOW = {"kind": "nb201", "params": {"channels": 16, "cells_per_stage": 1}}
_CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("faults")
    running = Server(workdir, f"sqlite:///{workdir / 'cellar.db'}").start()
    yield running
    running.stop()


def submit(server: Server, body: dict[str, Any]) -> int:
    response = httpx.post(f"{server.url}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def trials(server: Server, job_id: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}/trials", timeout=30)
    assert response.status_code == 200, response.text
    return sorted(response.json()["data"], key=lambda t: t["number"])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_worker_mid_trial(server: Server, job_id: int) -> dict[str, Any]:
    """SIGKILL the worker process of the first trial once it has finished an epoch; that trial."""

    def training() -> dict[str, Any] | None:
        return next((t for t in trials(server, job_id) if t["state"] == "running" and t["epochs"]), None)

    victim = wait_for(training, 240, "a trial in training")
    pid = int(victim["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    return victim


def test_a_killed_worker_s_trial_runs_again_and_the_job_goes_on(server: Server) -> None:
    body = job_body(
        name="worker-killed",
        search_space=_SLOW,
        strategy={"sampler": "random", "seed": 0, "initial_architectures": _CELLS[:3], "cache": False},
        budget={"max_trials": 3, "epochs": 12, "parallelism": 1},
    )
    job_id = submit(server, body)
    victim = kill_worker_mid_trial(server, job_id)
    job = server.wait(job_id)
    assert job["status"] == "succeeded", job
    rows = trials(server, job_id)
    lost = next(t for t in rows if t["id"] == victim["id"])
    assert lost["state"] == "failed" and lost["requeued"]
    assert lost["error"].startswith("WorkerLost: the worker process running this trial died")
    assert "runs again (retry 1 of 1)" in lost["error"]
    assert lost["epochs"], "the epochs it finished before the kill are kept"
    retry = next(t for t in rows if t["retry_of"] == victim["id"])
    assert retry["origin"] == "retry" and retry["arch"] == victim["arch"] and retry["state"] == "complete"
    assert retry["worker"] != victim["worker"]  # a fresh worker process replaced the killed one
    # the retry replaces the lost trial: three trials count, every architecture completes once
    counted = [t for t in rows if not t["requeued"]]
    assert len(counted) == 3 and job["counts"]["complete"] == 3
    assert sorted(t["arch"] for t in counted) == sorted(_CELLS[:3])


def test_without_retries_a_killed_worker_s_trial_fails_with_the_reason(server: Server) -> None:
    body = job_body(
        name="worker-killed-no-retry",
        search_space=_SLOW,
        strategy={"sampler": "random", "seed": 0, "initial_architectures": _CELLS[1:4], "cache": False},
        budget={"max_trials": 3, "epochs": 12, "parallelism": 1, "trial_retries": 0},
    )
    job_id = submit(server, body)
    victim = kill_worker_mid_trial(server, job_id)
    job = server.wait(job_id)
    rows = trials(server, job_id)
    lost = next(t for t in rows if t["id"] == victim["id"])
    assert lost["state"] == "failed" and not lost["requeued"]
    assert "not retried (budget.trial_retries = 0 used up)" in lost["error"]
    assert not [t for t in rows if t["retry_of"] is not None]
    assert job["status"] == "succeeded" and job["counts"] == {
        "total": 3, "running": 0, "complete": 2, "pruned": 0, "failed": 1
    }


def _snapshot(url: str, job_id: int) -> dict[int, tuple[Any, ...]]:
    store = Store(url)
    try:
        with store.read() as session:
            rows = session.scalars(select(Trial).where(Trial.job_id == job_id)).all()
            return {
                t.trial_id: (t.number, t.state, t.values, t.test_metric, t.finished_at, len(t.epoch_rows))
                for t in rows
            }
    finally:
        store.dispose()


def test_a_server_killed_mid_job_resumes_it_losing_and_repeating_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    lease = {"CELLAR_LEASE_S": "3"}
    first = Server(tmp_path, url, **lease).start()
    try:
        body = job_body(
            name="server-killed",
            search_space=_SLOW,
            strategy={"sampler": "tpe", "seed": 3, "cache": False},
            budget={"max_trials": 6, "epochs": 6, "parallelism": 2},
        )
        job_id = submit(first, body)

        def progressed() -> bool:
            rows = trials(first, job_id)
            complete = [t for t in rows if t["state"] == "complete"]
            return len(complete) >= 2 and any(t["state"] == "running" and t["epochs"] for t in rows)

        wait_for(progressed, 300, "two finished trials and one in training")
    finally:
        first.kill()
    before = _snapshot(url, job_id)
    finished_before = {k: v for k, v in before.items() if v[1] == "complete"}
    interrupted = {k for k, v in before.items() if v[1] == "running"}
    assert finished_before and interrupted

    store = Store(url)
    with store.read() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "running" and job.lease_owner is not None
    store.dispose()

    second = Server(tmp_path, url, **lease).start()
    try:
        job = second.wait(job_id, timeout=300)
        rows = trials(second, job_id)
    finally:
        second.stop()
    assert job["status"] == "succeeded", job
    after = _snapshot(url, job_id)
    # no finished trial lost or changed
    for trial_id, row in finished_before.items():
        assert after[trial_id] == row
    # the interrupted ones ran again from their start, in place: the same rows, numbers and
    # architectures, each complete once; nothing was added
    by_id = {t["id"]: t for t in rows}
    for trial_id in interrupted:
        assert by_id[trial_id]["state"] == "complete" and by_id[trial_id]["interruptions"] == 1
        assert by_id[trial_id]["number"] == before[trial_id][0] and not by_id[trial_id]["requeued"]
    assert not [t for t in rows if t["origin"] == "retry" or t["requeued"]]
    assert len(rows) == 6 and job["counts"]["complete"] == 6
    assert [t["number"] for t in rows] == list(range(len(rows)))
    assert "taking it over from server" in second.log.read_text()
    assert "were running when the server running the job went away without handing it back (its lease expired)" in (
        second.log.read_text()
    )
    with Store(url).read() as session:
        assert session.get(Job, job_id).lease_owner is None  # type: ignore[union-attr]
