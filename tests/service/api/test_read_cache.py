"""Read answers are kept until the store changes (``service.api.cache``): a repeated read is served
from memory, and a change committed by any process, or a weights file kept or dropped, shows in the
very next answer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.api.cache import ReadCache
from service.settings import Settings
from service.store import Store, upgrade
from tests.aio import run_async
from tests.service.bodies import job_body
from tests.service.jobs.test_manager import manager, run, submit
from workers.inline_executor import InlineExecutor

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def serve(store_url: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(database_url=store_url, api_key=KEY, start_manager=False, **settings)))


@pytest.fixture
def migrated(store_url: str) -> Iterator[str]:
    store = Store(store_url)
    upgrade(store)
    store.dispose()
    yield store_url


def rename_elsewhere(store_url: str, job_id: int, name: str) -> None:
    """Rename the job from another process, as another server or a CLI would write."""
    script = textwrap.dedent(f"""
        from sqlalchemy import update
        from service.store import Job, Store
        store = Store({store_url!r})
        with store.write() as session:
            session.execute(update(Job).where(Job.job_id == {job_id}).values(name={name!r}))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3], timeout=120)


def test_a_repeated_read_is_served_from_memory_until_another_process_writes(migrated: str) -> None:
    with serve(migrated) as client:
        cache: ReadCache = client.app.state.read_cache
        job_id = client.post("/v1/jobs", json=job_body(name="first"), headers=AUTH).json()["id"]
        reads = [f"/v1/jobs/{job_id}", "/v1/jobs?limit=20", f"/v1/jobs/{job_id}/trials", "/v1/data?dataset=digits"]
        first = {path: client.get(path).json() for path in reads}
        hits = cache.hits
        assert {path: client.get(path).json() for path in reads} == first
        assert cache.hits == hits + len(reads)

        rename_elsewhere(migrated, job_id, "renamed")
        assert client.get(f"/v1/jobs/{job_id}").json()["name"] == "renamed"
        assert client.get("/v1/jobs?limit=20").json()["data"][0]["name"] == "renamed"
        # a write through this server is seen at once too
        client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH).raise_for_status()
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"


def test_with_the_cache_off_every_read_asks_the_store(migrated: str) -> None:
    with serve(migrated, read_cache_mb=0) as client:
        job_id = client.post("/v1/jobs", json=job_body(), headers=AUTH).json()["id"]
        for _ in range(3):
            assert client.get(f"/v1/jobs/{job_id}").json()["id"] == job_id
        assert client.app.state.read_cache.hits == 0
        rename_elsewhere(migrated, job_id, "renamed")
        assert client.get(f"/v1/jobs/{job_id}").json()["name"] == "renamed"


def test_a_trials_weights_follow_the_disk_without_a_change_to_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cellar.db'}"
    store = Store(url)
    upgrade(store)
    artifacts = tmp_path / "artifacts"
    job_id = submit(store, budget={"max_trials": 1, "epochs": 1, "parallelism": 1})
    assert run(manager(store, InlineExecutor(), artifacts=artifacts), job_id).status == "succeeded"
    store.dispose()
    with serve(url, artifacts_dir=artifacts) as client:
        assert client.get(f"/v1/jobs/{job_id}/trials/0").json()["weights"] is True
        kept = artifacts / f"job-{job_id}" / "trial-0.pt"
        kept.unlink()
        hits = client.app.state.read_cache.hits
        assert client.get(f"/v1/jobs/{job_id}/trials/0").json()["weights"] is False
        assert client.app.state.read_cache.hits == hits + 1  # the answer came from memory, the flag from the disk


def test_the_cache_holds_at_most_its_bound(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cellar.db'}")
    upgrade(store)
    cache = ReadCache(store, max_bytes=1000)
    for index in range(50):
        assert run_async(cache.aget, f"k{index}", lambda: b"x" * 90) == b"x" * 90
    assert cache._bytes <= 1000 and len(cache._kept) == 11  # the newest answers
    assert "k49" in cache._kept and "k0" not in cache._kept
    assert run_async(cache.aget, "big", lambda: b"y" * 500) == b"y" * 500 and "big" not in cache._kept  # over a tenth
