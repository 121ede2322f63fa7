"""How the job manager lets go of its jobs: a clean stop hands them back at once (their running
trials to run again in place), before the executor stops; a server that went away
without a word is named by the one that waits for its lease and by the one that takes over.
In-process executor, real training, real SQLite store."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from service.store import Job, Store, utcnow
from tests.service.jobs.test_manager import TINY, make_store, manager, run, submit, trials
from workers.inline_executor import InlineExecutor


class _SlowToStop(InlineExecutor):
    """Stops only when the test says so, as a Ray that takes long to stop (or is killed meanwhile)."""

    def __init__(self) -> None:
        super().__init__(shuffle_seed=0)
        self.stopping = threading.Event()
        self.may_stop = threading.Event()

    def shutdown(self) -> None:
        self.stopping.set()
        self.may_stop.wait(60)


def _lease(store: Store, job_id: int) -> tuple[str, str | None, object]:
    with store.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status, job.lease_owner, job.lease_expires_at


def _wait_for_running(store: Store, job_id: int, count: int) -> None:
    deadline = time.monotonic() + 180
    while [t.state for t in trials(store, job_id)].count("running") < count:
        assert time.monotonic() < deadline, [t.state for t in trials(store, job_id)]
        time.sleep(0.02)


def test_a_clean_stop_hands_the_job_back_before_the_executor_stops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path / "stop.db")
    job_id = submit(store, search_space=TINY, budget={"max_trials": 6, "epochs": 4, "parallelism": 2})
    executor = _SlowToStop()
    first = manager(store, executor)  # a 30 s lease: only a hand-back frees the job at once
    first.start()
    try:
        _wait_for_running(store, job_id, 2)
        first.request_stop()  # what the API does on SIGTERM; it does not wait
        assert executor.stopping.wait(60), "the manager never stopped its executor"
        # the executor is still stopping, and the job is back already
        assert _lease(store, job_id) == ("running", None, None)
        rows = trials(store, job_id)
    finally:
        executor.may_stop.set()
        first.stop()
    assert first.state == "stopped"
    interrupted = {t.trial_id: t for t in rows if t.state == "running"}
    assert len(interrupted) == 2 and not [t for t in rows if t.state == "failed" or t.requeued]

    second = manager(store, InlineExecutor(shuffle_seed=1))
    with caplog.at_level(logging.INFO):
        second.tick()
    assert job_id in second.runners  # at once, not once the 30 s lease expired
    assert not [r for r in caplog.records if "taking it over" in r.getMessage()]
    assert run(second, job_id).status == "succeeded"
    rows = trials(store, job_id)
    assert len(rows) == 6 and all(t.state == "complete" for t in rows)
    for t in rows:  # the interrupted ones ran again in place, with their own configurations
        if t.trial_id in interrupted:
            assert (t.number, t.params, t.interruptions) == (interrupted[t.trial_id].number, interrupted[t.trial_id].params, 1)


def test_a_job_whose_server_went_away_waits_for_its_lease_and_says_whose(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(tmp_path / "expired.db")
    job_id = submit(store, search_space=TINY, budget={"max_trials": 4, "epochs": 3, "parallelism": 2})
    first = manager(store, InlineExecutor())
    for _ in range(500):
        first.tick()
        if [t.state for t in trials(store, job_id)].count("running") == 2:
            break
    running = {t.trial_id for t in trials(store, job_id) if t.state == "running"}
    assert len(running) == 2
    # ``first`` is dropped mid-job, as a killed server would be: it hands nothing back
    second = manager(store, InlineExecutor(), lease_s=30)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            second.tick()
        assert not second.runners
        holding = [r.getMessage() for r in caplog.records if "is held by server" in r.getMessage()]
        assert len(holding) == 1 and holding[0].startswith(f"job {job_id} is held by server {first.owner} until ")
        with store.write() as session:  # as if the lease's 30 s had passed
            session.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        caplog.clear()
        second.tick()
    assert job_id in second.runners
    taking = [r for r in caplog.records if "taking it over" in r.getMessage()]
    assert len(taking) == 1 and taking[0].levelname == "WARNING"
    assert taking[0].getMessage().startswith(
        f"job {job_id}: taking it over from server {first.owner}, whose lease expired at "
    )
    interrupted = [r.getMessage() for r in caplog.records if "were running when" in r.getMessage()]
    assert len(interrupted) == 1 and "went away without handing it back (its lease expired)" in interrupted[0]
    assert run(second, job_id).status == "succeeded"
    rows = {t.trial_id: t for t in trials(store, job_id)}
    assert len(rows) == 4 and all(t.state == "complete" for t in rows.values())
    assert {trial_id for trial_id, t in rows.items() if t.interruptions == 1} == running
