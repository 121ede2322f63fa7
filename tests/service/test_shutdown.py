"""Stopping a real ``cellar serve`` (with its local Ray) while a client follows a job's events:
the stream ends, the server exits within seconds, hands the job back and leaves no Ray process
behind; the next server resumes the job at once, and stops cleanly on a double Ctrl-C too."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.store import Job, Store, Trial
from tests.service.bodies import job_body
from tests.service.jobs.test_faults import _SLOW, submit, trials, wait_for
from tests.service.server import KEY, Server, _session_members

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _job(url: str, job_id: int) -> tuple[Job, list[Trial]]:
    store = Store(url)
    try:
        with store.read() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job, list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)))
    finally:
        store.dispose()


def _stopped(server: Server, signals: list[signal.Signals]) -> float:
    """Send ``signals`` (0.2 s apart); seconds until the server exited. Nothing of its session
    (its local Ray) may outlive it."""
    assert server.process is not None
    signalled = time.monotonic()
    for sig in signals:
        server.process.send_signal(sig)
        time.sleep(0.2)
    server.process.wait(timeout=60)
    exited = time.monotonic() - signalled
    assert not _session_members(server.process.pid), f"Ray processes outlived the server:\n{server.log.read_text()}"
    return exited


def test_a_stop_while_a_client_follows_events_hands_the_job_back_to_the_next_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    first = Server(tmp_path, url).start()  # the default 30 s lease: only a hand-back frees the job at once
    assert first.process is not None
    try:
        job_id = submit(first, job_body(
            name="stopped", search_space=_SLOW, strategy={"sampler": "random", "seed": 0, "cache": False},
            budget={"max_trials": 3, "epochs": 12, "parallelism": 1},
        ))
        wait_for(lambda: any(t["state"] == "running" and t["epochs"] for t in trials(first, job_id)), 240, "training")
        with httpx.stream(
            "GET", f"{first.url}/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        ) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: job"
            signalled = time.monotonic()
            first.process.send_signal(signal.SIGTERM)
            rest = list(lines)  # a stream that goes on fails on the 30 s read timeout
        ended = time.monotonic() - signalled
        exited = _stopped(first, [])
    finally:
        if first.process.poll() is None:
            first.kill()
    assert "event: shutdown" in rest and ended < 5, (ended, rest[-3:])
    assert exited < 30, exited
    # Ray's failure handler would take SIGTERM for a crash, dump a stack and abort 3 s later
    assert "SIGTERM received" not in first.log.read_text()
    job, rows = _job(url, job_id)
    assert (job.status, job.lease_owner, job.lease_expires_at) == ("running", None, None)
    # the trial in training stays `running`, to run again in place where the job resumes
    interrupted = [t for t in rows if t.state == "running"]
    assert len(interrupted) == 1 and not [t for t in rows if t.state == "failed" or t.requeued]

    second = Server(tmp_path, url).start()
    assert second.process is not None
    try:
        # at once: the lease is free, no 30 s wait for it to expire
        owner = wait_for(lambda: _job(url, job_id)[0].lease_owner, 10, "the second server to resume the job")
        assert owner.split(":")[1] == str(second.process.pid)
        assert "taking it over" not in second.log.read_text()
        wait_for(lambda: _job(url, job_id)[1][interrupted[0].number].interruptions == 1, 10, "the trial to run again")
        assert f"trial(s) #{interrupted[0].number} were running when the server running the job stopped" in (
            second.log.read_text()
        )
        # a double Ctrl-C stops waiting for requests, not for the job manager's hand-back and Ray's stop
        exited = _stopped(second, [signal.SIGINT, signal.SIGINT])
    finally:
        if second.process.poll() is None:
            second.kill()
    assert second.process.returncode == 0 and exited < 30, (second.process.returncode, exited)
    job, rows = _job(url, job_id)
    assert (job.lease_owner, job.lease_expires_at) == (None, None)
    assert not [t for t in rows if t.state == "failed" or t.requeued]
