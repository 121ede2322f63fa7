"""Scoped API keys against a real ``cellar serve`` (no job manager, no Ray) on SQLite and
PostgreSQL: what each scope may do, revocation at once, secrets kept only as hashes, jobs and
submissions owned by the key that created them, and ``cellar keys`` over HTTP."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from service.store import ApiKey, Job, QueuedModel, Store
from tests.service.bodies import job_body
from tests.service.server import KEY, Server

BOOTSTRAP = {"Authorization": f"Bearer {KEY}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def server(tmp_path: Any, store_url: str) -> Iterator[Server]:
    running = Server(tmp_path, store_url, CELLAR_START_MANAGER="false", CELLAR_MODEL_MEMORY_MB="512").start()
    yield running
    running.stop()


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def issue(http: httpx.Client, name: str, *scopes: str, key: str = KEY) -> dict[str, Any]:
    response = http.post("/v1/keys", json={"name": name, "scopes": list(scopes)}, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


def stored(url: str, model: type, **where: Any) -> list[Any]:
    store = Store(url)
    try:
        with store.read() as session:
            query = select(model).filter_by(**where)
            rows = list(session.scalars(query).all())
            for row in rows:
                session.expunge(row)
            return rows
    finally:
        store.dispose()


def test_each_scope_does_what_it_names_and_no_more(server: Server, http: httpx.Client) -> None:
    read, submit, admin = issue(http, "reader", "read"), issue(http, "ci", "submit"), issue(http, "ops", "admin")
    assert read["key"].startswith(f"cellar_{read['id']}_") and read["scopes"] == ["read"]
    assert issue(http, "both", "admin", "read")["scopes"] == ["read", "admin"]  # stored in scope order

    # read: reads yes (open here anyway), writes and keys no, each 403 naming the scope needed
    assert http.get("/v1/jobs", headers=bearer(read["key"])).status_code == 200
    refused = http.post("/v1/jobs", json=job_body(), headers=bearer(read["key"]))
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"API key {read['id']} ('reader') holds scope(s) read; POST /v1/jobs needs scope 'submit': "
        "use a key with it (an admin issues keys with POST /v1/keys)"
    )
    assert http.post("/v1/submissions", json={"models": []}, headers=bearer(read["key"])).status_code == 403
    assert http.get("/v1/jobs").json()["count"] == 0

    # submit: jobs yes, keys no (listing included)
    job = http.post("/v1/jobs", json=job_body(), headers=bearer(submit["key"]))
    assert job.status_code == 201, job.text
    for method, path in (("POST", "/v1/keys"), ("GET", "/v1/keys"), ("DELETE", f"/v1/keys/{read['id']}")):
        answer = http.request(method, path, json={"name": "x", "scopes": ["read"]} if method == "POST" else None,
                              headers=bearer(submit["key"]))  # fmt: skip
        assert answer.status_code == 403 and "needs scope 'admin'" in answer.json()["detail"], (method, path)

    # admin: keys too, and whatever submit does
    assert issue(http, "minted", "read", key=admin["key"])["scopes"] == ["read"]
    assert http.post("/v1/jobs", json=job_body(), headers=bearer(admin["key"])).status_code == 201
    listed = http.get("/v1/keys", headers=bearer(admin["key"])).json()
    assert [k["name"] for k in listed["data"]] == ["reader", "ci", "ops", "both", "minted"]
    assert all("key" not in k and "secret_hash" not in k for k in listed["data"])
    assert {k["name"]: k["last_used_at"] is not None for k in listed["data"]}["reader"]

    # keys the server never issued, or malformed ones, are a 401; the bootstrap key still works
    for wrong in (f"cellar_{read['id']}_not-its-secret", "cellar_999_x", "cellar_x_y", "cellar_", "nope"):
        answer = http.post("/v1/jobs", json=job_body(), headers=bearer(wrong))
        assert answer.status_code == 401 and "wrong API key" in answer.json()["detail"], wrong
        assert answer.headers["www-authenticate"] == "Bearer"
    assert http.get("/v1/keys").status_code == 401
    assert http.post("/v1/jobs", json=job_body(), headers=BOOTSTRAP).status_code == 201


def test_a_revoked_key_is_refused_at_once_and_secrets_are_kept_hashed(
    server: Server, http: httpx.Client, store_url: str
) -> None:
    key = issue(http, "laptop", "submit")
    assert http.post("/v1/jobs", json=job_body(), headers=bearer(key["key"])).status_code == 201
    revoked = http.delete(f"/v1/keys/{key['id']}", headers=BOOTSTRAP)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = http.post("/v1/jobs", json=job_body(), headers=bearer(key["key"]))
    assert refused.status_code == 401 and f"API key {key['id']} ('laptop') was revoked at" in refused.json()["detail"]
    again = http.delete(f"/v1/keys/{key['id']}", headers=BOOTSTRAP)
    assert again.status_code == 409 and "revoked already" in again.json()["detail"]
    assert http.delete("/v1/keys/4242", headers=BOOTSTRAP).status_code == 404
    active = http.get("/v1/keys", params={"revoked": "false"}, headers=BOOTSTRAP).json()
    assert active == {"data": [], "count": 0}

    [row] = stored(store_url, ApiKey)
    secret = key["key"].removeprefix(f"cellar_{key['id']}_")
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps([row.name, row.secret_hash, row.scopes]) and row.revoked_at is not None
    # what a 422 says about scopes
    bad = http.post("/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=BOOTSTRAP)
    assert bad.status_code == 422 and "'read', 'submit' or 'admin'" in bad.json()["message"]


BROKEN_MODEL = {"nn_code": "def broken(:\n", "task": "img-classification", "dataset": "digits", "metric": "acc",
                "prm": {"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 1, "transform": "norm"}}  # fmt: skip


def test_a_key_cancels_and_deletes_only_its_own_jobs(server: Server, http: httpx.Client, store_url: str) -> None:
    alice, bob, ops = issue(http, "alice", "submit"), issue(http, "bob", "submit"), issue(http, "ops", "admin")
    mine = http.post("/v1/jobs", json=job_body(name="alice's"), headers=bearer(alice["key"])).json()["id"]
    theirs = http.post("/v1/jobs", json=job_body(name="bob's"), headers=bearer(bob["key"])).json()["id"]
    boot = http.post("/v1/jobs", json=job_body(name="boot's"), headers=BOOTSTRAP).json()["id"]
    owners = {job.job_id: job.owner_key_id for job in stored(store_url, Job)}
    assert owners == {mine: alice["id"], theirs: bob["id"], boot: None}

    for job_id, owner in ((theirs, f"API key {bob['id']}"), (boot, "the bootstrap key")):
        refused = http.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(alice["key"]))
        assert refused.status_code == 403
        assert refused.json()["detail"] == (
            f"job {job_id} was submitted by {owner}; API key {alice['id']} ('alice') may cancel only what it "
            "submitted (a key with scope 'admin' may any)"
        )
    refused = http.delete(f"/v1/jobs/{theirs}", headers=bearer(alice["key"]))
    assert refused.status_code == 403 and "may delete only what it submitted" in refused.json()["detail"]
    refused = http.post(f"/v1/jobs/{theirs}/extend", json={"max_trials": 20}, headers=bearer(alice["key"]))
    assert refused.status_code == 403 and "may extend only" in refused.json()["detail"]
    assert http.get(f"/v1/jobs/{theirs}").json()["status"] == "queued"  # untouched

    assert http.post(f"/v1/jobs/{mine}/cancel", headers=bearer(alice["key"])).json()["status"] == "cancelled"
    assert http.delete(f"/v1/jobs/{mine}", headers=bearer(alice["key"])).status_code == 204
    # an admin key (issued or the bootstrap one) any
    assert http.post(f"/v1/jobs/{theirs}/cancel", headers=bearer(ops["key"])).json()["status"] == "cancelled"
    assert http.delete(f"/v1/jobs/{theirs}", headers=BOOTSTRAP).status_code == 204
    assert http.get(f"/v1/jobs/{mine}").status_code == http.get(f"/v1/jobs/{theirs}").status_code == 404

    # submissions record their key too (code that does not parse: it fails fast, nothing trains)
    queued = http.post("/v1/submissions", json={"models": [BROKEN_MODEL]}, headers=bearer(bob["key"]))
    assert queued.status_code == 202, queued.text
    by_boot = http.post("/v1/submissions", json={"models": [BROKEN_MODEL]}, headers=BOOTSTRAP).json()
    owners = {row.submission_id: row.owner_key_id for row in stored(store_url, QueuedModel)}
    assert owners == {queued.json()["data"][0]["id"]: bob["id"], by_boot["data"][0]["id"]: None}


def test_reads_that_require_a_key_take_any_scope(tmp_path: Any, sqlite_url: str) -> None:
    server = Server(tmp_path, sqlite_url, CELLAR_START_MANAGER="false", CELLAR_READS_REQUIRE_KEY="true").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            read = issue(http, "reader", "read")
            assert http.get("/v1/jobs").status_code == 401
            assert http.get("/v1/jobs", headers=bearer(read["key"])).status_code == 200
            http.delete(f"/v1/keys/{read['id']}", headers=BOOTSTRAP)
            assert http.get("/v1/jobs", headers=bearer(read["key"])).status_code == 401
    finally:
        server.stop()


def cellar(server: Server, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    """``cellar ARGS --url`` the server, sending ``key`` (CELLAR_API_KEY)."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args, "--url", server.url],
        cwd=server.workdir, env={**server.env, "CELLAR_API_KEY": key}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cellar_keys_create_list_revoke(tmp_path: Any, sqlite_url: str) -> None:
    server = Server(tmp_path, sqlite_url, CELLAR_START_MANAGER="false").start()
    try:
        created = cellar(server, "keys", "create", "ci", "--scope", "read")
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()  # the key alone on stdout: KEY=$(cellar keys create ci)
        assert key.startswith("cellar_1_") and "shown once" in created.stderr
        ops = json.loads(cellar(server, "keys", "create", "ops", "--scope", "admin", "--json").stdout)
        assert ops["scopes"] == ["admin"] and ops["key"].startswith(f"cellar_{ops['id']}_")

        listed = cellar(server, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        assert "ci" in listed.stdout and "ops" in listed.stdout and key not in listed.stdout
        # an issued admin key administers keys as the bootstrap key does; a read key cannot
        revoked = cellar(server, "keys", "revoke", "1", key=ops["key"])
        assert revoked.returncode == 0 and "key 1 'ci' revoked" in revoked.stdout
        active = json.loads(cellar(server, "keys", "list", "--active", "--json").stdout)
        assert [k["name"] for k in active] == ["ops"]
        refused = cellar(server, "keys", "list", key=key)
        assert refused.returncode == 1 and "was revoked at" in refused.stderr
        submit = cellar(server, "keys", "create", "bob").stdout.strip()  # scope submit by default
        refused = cellar(server, "keys", "list", key=submit)
        assert refused.returncode == 1 and "needs scope 'admin'" in refused.stderr
        bad = cellar(server, "keys", "create", "x", "--scope", "root")
        assert bad.returncode == 2 and "read, submit, admin" in bad.stderr
    finally:
        server.stop()
