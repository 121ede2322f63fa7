"""The store going away under a real ``cellar serve``: PostgreSQL refusing and dropping every
connection mid-job, and a SQLite server killed again and again while it writes. Nothing finished is
lost, the file stays whole, and the job completes."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine, make_url

from tests.postgres import connections_refused
from tests.service.bodies import job_body
from tests.service.jobs.test_faults import _snapshot, submit, trials, wait_for
from tests.service.server import Server

pytestmark = [pytest.mark.ray, pytest.mark.slow]

_SMALL = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}


@pytest.mark.postgres
def test_postgresql_going_away_mid_job_loses_nothing(postgres_url: str, postgres_admin: Engine, tmp_path: Path) -> None:
    name = make_url(postgres_url).database
    server = Server(tmp_path, postgres_url, CELLAR_STORE_RETRY_S="0.5").start()
    try:
        job_id = submit(server, job_body(
            name="pg-outage", search_space=_SMALL, strategy={"sampler": "random", "seed": 1, "cache": False},
            budget={"max_trials": 8, "epochs": 3, "parallelism": 2},
        ))  # fmt: skip
        wait_for(lambda: any(t["state"] == "complete" for t in trials(server, job_id)), 240, "a finished trial")
        before = {k: v for k, v in _snapshot(postgres_url, job_id).items() if v[1] == "complete"}
        # what a restart does to the server's connections: every one dropped, new ones refused
        with connections_refused(postgres_admin, name):
            down = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30)
            assert down.status_code == 503 and "store" in down.json()["message"], down.text
            time.sleep(4)  # trials go on training on Ray meanwhile; their reports wait for the store
        job = server.wait(job_id, timeout=300)
        rows = trials(server, job_id)
        health = httpx.get(f"{server.url}/healthz", timeout=30).json()
    finally:
        server.stop()
    assert job["status"] == "succeeded" and health["store"]["status"] == "ok", (job, health)
    assert "store unavailable, retrying" in server.log.read_text()
    after = _snapshot(postgres_url, job_id)
    assert all(after[trial_id] == row for trial_id, row in before.items())  # nothing finished changed
    assert len(rows) == 8 and all(t["state"] == "complete" and len(t["epochs"]) == 3 for t in rows)


def test_a_sqlite_server_killed_again_and_again_leaves_a_whole_file_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "cellar.db"
    url = f"sqlite:///{path}"
    lease = {"CELLAR_LEASE_S": "2"}  # the next server takes the dead one's job over soon
    rng = random.Random(0)
    server = Server(tmp_path, url, **lease).start()
    job_id = submit(server, job_body(
        name="killed-again", search_space=_SMALL, strategy={"sampler": "tpe", "seed": 5, "cache": False},
        budget={"max_trials": 16, "epochs": 2, "parallelism": 2},
    ))  # fmt: skip
    finished: dict[int, tuple[object, ...]] = {}
    for kill in range(3):
        target = 2 * (kill + 1)  # kill once this many trials are done, at a random moment after
        wait_for(lambda: sum(t["state"] == "complete" for t in trials(server, job_id)) >= target, 240, f"{target} trials")
        time.sleep(rng.uniform(0.0, 0.6))  # trials finish every few tenths of a second: a write is likely under way
        server.kill()
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        now = _snapshot(url, job_id)
        assert all(now[trial_id] == row for trial_id, row in finished.items()), f"kill {kill} changed a finished trial"
        finished = {k: v for k, v in now.items() if v[1] == "complete"}
        server = Server(tmp_path, url, **lease).start()
    try:
        job = server.wait(job_id, timeout=300)
        rows = trials(server, job_id)
    finally:
        server.stop()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert job["status"] == "succeeded", job
    after = _snapshot(url, job_id)
    assert all(after[trial_id] == row for trial_id, row in finished.items())
    # each trial complete, trained for both epochs or a repeat of one that was
    summary = [(t["number"], t["state"], len(t["epochs"]), t["duplicate_of"], t["interruptions"]) for t in rows]
    assert len(rows) == 16 and all(t["state"] == "complete" for t in rows), summary
    assert all(len(t["epochs"]) == 2 or t["duplicate_of"] is not None for t in rows), summary
    assert [t["number"] for t in rows] == list(range(16))
