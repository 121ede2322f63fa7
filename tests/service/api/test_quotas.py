"""Per-key rate limits and quotas over real HTTP (no job manager: jobs stay queued), with keys
issued by ``POST /v1/keys``: a 429 with ``Retry-After`` past a rate or a quota, a 422 for a job no
wait would let through, other keys unaffected and the bootstrap key exempt; SQLite and PostgreSQL
where the store counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from service.api import create_app
from service.settings import Settings
from service.store import QueuedModel, Store, upgrade, utcnow
from tests.service.bodies import job_body
from tests.service.server import KEY as SERVER_KEY
from tests.service.server import Server

KEY = "test-key"
BOOTSTRAP = {"Authorization": f"Bearer {KEY}"}
BROKEN_MODEL = {"nn_code": "def broken(:\n", "task": "img-classification", "dataset": "digits", "metric": "acc",
                "prm": {"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 1, "transform": "norm"}}  # fmt: skip


def _client(url: str, **limits: Any) -> TestClient:
    store = Store(url)
    upgrade(store)
    store.dispose()
    return TestClient(create_app(Settings(database_url=url, api_key=KEY, start_manager=False, **limits)))


def issue(client: TestClient, name: str, scope: str = "submit") -> dict[str, str]:
    created = client.post("/v1/keys", json={"name": name, "scopes": [scope]}, headers=BOOTSTRAP)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def refused(response: Any, *, setting: str) -> int:
    """The 429's Retry-After, after checking its shape: a message that names the setting."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["detail"] == body["message"] and setting in body["message"] and "retry" in body["message"]
    return int(response.headers["retry-after"])


def test_a_key_past_its_rate_waits_retry_after_and_others_go_on(sqlite_url: str) -> None:
    with _client(sqlite_url, key_rate_limit=3, key_rate_window_s=6) as client:
        alice, bob = issue(client, "alice"), issue(client, "bob")
        # open reads that send a key count against it; a wrong key there is ignored, as no key is needed
        assert [client.get("/v1/jobs", headers=alice).status_code for _ in range(3)] == [200] * 3
        retry = refused(client.get("/v1/jobs", headers=alice), setting="CELLAR_KEY_RATE_LIMIT")
        assert 1 <= retry <= 2
        assert "more than 3 requests in 6 s" in client.get("/v1/jobs", headers=alice).json()["message"]
        refused(client.post("/v1/jobs", json=job_body(), headers=alice), setting="CELLAR_KEY_RATE_LIMIT")
        assert client.get("/v1/jobs", headers=bob).status_code == 200  # each key has its own bucket
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer cellar_1_wrong"}).status_code == 200
        assert client.get("/v1/jobs").status_code == 200  # no key: not limited
        assert all(client.get("/v1/jobs", headers=BOOTSTRAP).status_code == 200 for _ in range(10))
        time.sleep(retry)
        assert client.post("/v1/jobs", json=job_body(), headers=alice).status_code == 201


def test_the_bootstrap_key_is_limited_when_the_setting_says_so(sqlite_url: str) -> None:
    with _client(sqlite_url, key_rate_limit=2, key_rate_window_s=60, limit_bootstrap_key=True) as client:
        assert [client.get("/v1/keys", headers=BOOTSTRAP).status_code for _ in range(2)] == [200, 200]
        assert refused(client.get("/v1/keys", headers=BOOTSTRAP), setting="CELLAR_KEY_RATE_WINDOW_S") == 30
        assert "the bootstrap key sent more than 2 requests" in client.get("/v1/keys", headers=BOOTSTRAP).text


def test_a_key_may_own_so_many_active_jobs(store_url: str) -> None:
    with _client(store_url, key_max_active_jobs=2) as app:
        alice, bob = issue(app, "alice"), issue(app, "bob")
        first, _ = (app.post("/v1/jobs", json=job_body(), headers=alice).json()["id"] for _ in range(2))
        answer = app.post("/v1/jobs", json=job_body(), headers=alice)
        assert refused(answer, setting="CELLAR_KEY_MAX_ACTIVE_JOBS=2") == 30
        assert "has 2 queued or running jobs" in answer.json()["message"]
        assert app.get("/v1/jobs").json()["count"] == 2  # nothing written
        assert app.post("/v1/jobs", json=job_body(), headers=bob).status_code == 201
        assert all(app.post("/v1/jobs", json=job_body(), headers=BOOTSTRAP).status_code == 201 for _ in range(3))

        assert app.post(f"/v1/jobs/{first}/cancel", headers=alice).json()["status"] == "cancelled"
        third = app.post("/v1/jobs", json=job_body(), headers=alice)
        assert third.status_code == 201, third.text
        # extending an ended job queues it again: it counts like a new one
        extended = app.post(f"/v1/jobs/{first}/extend", json={"max_trials": 20}, headers=alice)
        refused(extended, setting="CELLAR_KEY_MAX_ACTIVE_JOBS")
        app.post(f"/v1/jobs/{third.json()['id']}/cancel", headers=alice)
        assert app.post(f"/v1/jobs/{first}/extend", json={"max_trials": 20}, headers=alice).status_code == 200


def test_a_job_of_more_trials_than_the_cap_is_a_422_naming_it(store_url: str) -> None:
    with _client(store_url, key_max_trials_per_job=10) as app:
        alice = issue(app, "alice")
        answer = app.post("/v1/jobs", json=job_body(budget__max_trials=11), headers=alice)
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["detail"]
        assert problem["loc"] == ["body", "budget", "max_trials"]
        assert "at most 10 trials (CELLAR_KEY_MAX_TRIALS_PER_JOB)" in answer.json()["message"]
        unbounded = app.post("/v1/jobs", json=job_body(budget={"time_limit_s": 60, "epochs": 1}), headers=alice)
        assert unbounded.status_code == 422 and "no max_trials" in unbounded.json()["message"]
        job = app.post("/v1/jobs", json=job_body(budget__max_trials=10), headers=alice)
        assert job.status_code == 201, job.text
        assert app.post("/v1/jobs", json=job_body(budget__max_trials=500), headers=BOOTSTRAP).status_code == 201
        app.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=alice)
        extended = app.post(f"/v1/jobs/{job.json()['id']}/extend", json={"max_trials": 11}, headers=alice)
        assert extended.status_code == 422 and extended.json()["detail"][0]["loc"] == ["body", "max_trials"]


def test_a_key_may_submit_so_many_models_per_hour(store_url: str) -> None:
    with _client(store_url, key_max_models_per_hour=3) as app:
        alice, bob = issue(app, "alice"), issue(app, "bob")
        assert app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 2}, headers=alice).status_code == 202
        answer = app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 2}, headers=alice)
        retry = refused(answer, setting="CELLAR_KEY_MAX_MODELS_PER_HOUR")
        assert 3500 < retry <= 3600 and "submitted 2 models in the last hour" in answer.json()["message"]
        assert app.post("/v1/models", json=BROKEN_MODEL, headers=alice).json()["status"] == "failed"  # the 3rd
        refused(app.post("/v1/models", json=BROKEN_MODEL, headers=alice), setting="CELLAR_KEY_MAX_MODELS_PER_HOUR")
        too_many = app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 4}, headers=bob)
        assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "models"]
        assert app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 3}, headers=bob).status_code == 202
        assert app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 5}, headers=BOOTSTRAP).status_code == 202

        # an hour later alice's first two no longer count
        store = Store(store_url)
        try:
            with store.write() as session:
                first = app.get("/v1/submissions", params={"limit": 2}).json()["data"]
                session.execute(
                    update(QueuedModel)
                    .where(QueuedModel.submission_id.in_([s["id"] for s in first]))
                    .values(created_at=utcnow() - timedelta(hours=1, seconds=1))
                )
        finally:
            store.dispose()
        assert app.post("/v1/submissions", json={"models": [BROKEN_MODEL] * 2}, headers=alice).status_code == 202


def test_a_key_may_carry_limits_of_its_own(store_url: str) -> None:
    with _client(store_url, key_rate_limit=0, key_max_active_jobs=0) as app:
        body = {"name": "tight", "scopes": ["submit"], "limits": {"rate_limit": 3, "max_active_jobs": 1}}
        created = app.post("/v1/keys", json=body, headers=BOOTSTRAP)
        assert created.status_code == 201, created.text
        own = {"rate_limit": 3, "max_active_jobs": 1, "max_trials_per_job": None, "max_models_per_hour": None}
        assert created.json()["limits"] == own
        assert app.get("/v1/keys", headers=BOOTSTRAP).json()["data"][0]["limits"] == own
        tight, loose = {"Authorization": f"Bearer {created.json()['key']}"}, issue(app, "loose")
        assert app.post("/v1/jobs", json=job_body(), headers=tight).status_code == 201
        answer = app.post("/v1/jobs", json=job_body(), headers=tight)
        assert refused(answer, setting="the key's own limit=1") == 30
        assert app.get("/v1/jobs", headers=tight).status_code == 200
        refused(app.get("/v1/jobs", headers=tight), setting="the key's own limit per CELLAR_KEY_RATE_WINDOW_S")
        # the server's settings (0 here: unlimited) hold for a key without limits of its own
        assert all(app.post("/v1/jobs", json=job_body(), headers=loose).status_code == 201 for _ in range(5))
        bad = app.post("/v1/keys", json={"name": "x", "scopes": ["read"], "limits": {"rate": 1}}, headers=BOOTSTRAP)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "limits", "rate"]


def test_cellar_keys_create_with_limits(tmp_path: Any, sqlite_url: str) -> None:
    server = Server(tmp_path, sqlite_url, CELLAR_START_MANAGER="false").start()
    try:
        created = subprocess.run(
            [sys.executable, "-m", "service.cli", "keys", "create", "ci", "--rate", "120", "--trials", "50", "--json",
             "--url", server.url],
            cwd=server.workdir, env={**server.env, "CELLAR_API_KEY": SERVER_KEY}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        limits = json.loads(created.stdout)["limits"]
        assert limits == {"rate_limit": 120, "max_active_jobs": None, "max_trials_per_job": 50,
                          "max_models_per_hour": None}  # fmt: skip
    finally:
        server.stop()


def test_openapi_lists_the_429(sqlite_url: str) -> None:
    with _client(sqlite_url) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/jobs", "post"), ("/v1/jobs", "get"), ("/v1/submissions", "post"), ("/v1/models", "post"),
                         ("/v1/jobs/{job_id}/extend", "post"), ("/v1/keys", "get")):  # fmt: skip
        assert "429" in paths[path][method]["responses"], (method, path)
    assert "429" not in paths["/healthz"]["get"]["responses"]
