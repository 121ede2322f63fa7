"""Read answers are kept until the store changes (``service.api.cache``): a repeated read is served
from memory, and a change committed by any process, or a weights file kept or dropped, shows in the
very next answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.api import create_app
from service.api.cache import ReadCache, StoreVersion
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


def repeated(client: TestClient, reads: list[str], store_url: str) -> dict[str, object]:
    """The answers to ``reads`` again, each served from memory. PostgreSQL's version is the whole
    server's: a write in another database (another test suite, autovacuum's statistics) rightly
    empties the cache, so a round that saw the version move is tried again, at most twice."""
    cache: ReadCache = client.app.state.read_cache
    watch = Store(store_url)
    try:
        for _ in range(3):
            version, hits = watch.version(), cache.hits
            answers = {path: client.get(path).json() for path in reads}
            if watch.version() == version:
                break
        assert cache.hits == hits + len(reads)
        return answers
    finally:
        watch.dispose()


def test_a_repeated_read_is_served_from_memory_until_another_process_writes(migrated: str) -> None:
    with serve(migrated) as client:
        cache: ReadCache = client.app.state.read_cache
        job_id = client.post("/v1/jobs", json=job_body(name="first"), headers=AUTH).json()["id"]
        reads = [f"/v1/jobs/{job_id}", "/v1/jobs?limit=20", f"/v1/jobs/{job_id}/trials", "/v1/data?dataset=digits"]
        first = {path: client.get(path).json() for path in reads}
        assert repeated(client, reads, migrated) == first  # every answer from memory

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


@pytest.mark.postgres
def test_postgres_versions_are_shared_by_requests_that_arrive_during_a_query(postgres_url: str) -> None:
    store = Store(postgres_url)
    upgrade(store)
    job_id = submit(store)
    versions = StoreVersion(store)

    async def many() -> tuple[list[str | None], int, str | None, str | None]:
        answers = await asyncio.gather(*(versions.read() for _ in range(50)))
        queries = versions._started
        before = await versions.read()
        rename_elsewhere(postgres_url, job_id, "renamed")  # a write transaction, committed by another process
        after = await versions.read()
        await versions.aclose()
        return answers, queries, before, after

    answers, queries, before, after = run_async(many)
    # the first query, and at most one for all who waited on it (two answers only if something
    # wrote on the server meanwhile: the version is the whole server's)
    assert len(set(answers)) <= queries <= 2
    assert after != before  # the other process's commit moved it


def test_a_request_that_arrives_during_a_query_waits_for_the_next_one() -> None:
    """The rule that keeps an answer no older than its request: a query that began before the
    request arrived may have missed a commit made just before it, so its answer is not shared."""
    versions = StoreVersion(Store("postgresql+psycopg://nobody@127.0.0.1:9/never"))  # never connected
    gates: list[asyncio.Event] = []

    async def query() -> str:  # in place of the round trip: each answers when its gate opens
        gates.append(asyncio.Event())
        number = len(gates)
        await gates[-1].wait()
        return f"v{number}"

    versions._query = query  # type: ignore[method-assign]

    async def scenario() -> list[str | None]:
        first = asyncio.create_task(versions.read())
        await asyncio.sleep(0)  # the first query is in flight
        during = [asyncio.create_task(versions.read()) for _ in range(3)]
        await asyncio.sleep(0)
        gates[0].set()
        assert await first == "v1"
        while len(gates) < 2:
            await asyncio.sleep(0)
        gates[1].set()
        return [await task for task in during]

    assert run_async(scenario) == ["v2", "v2", "v2"]  # one more query for the three, none of them served v1


@pytest.mark.postgres
def test_postgres_version_reconnects_after_the_server_drops_its_connection(postgres_url: str, postgres_admin) -> None:  # noqa: ANN001
    store = Store(postgres_url)
    upgrade(store)
    versions = StoreVersion(store)

    async def scenario() -> tuple[str | None, str | None]:
        first = await versions.read()
        pid = versions._connection.info.backend_pid  # type: ignore[union-attr]
        with postgres_admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        second = await versions.read()
        await versions.aclose()
        return first, second

    first, second = run_async(scenario)
    assert first and second


def test_requests_that_miss_the_same_answer_at_once_build_it_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cellar.db'}")
    upgrade(store)
    cache = ReadCache(store, max_bytes=10_000)
    builds: list[int] = []

    def build() -> bytes:  # slow enough that every request arrives while it runs
        builds.append(1)
        time.sleep(0.3)
        return b"answer"

    async def scenario() -> tuple[list[bytes], bytes]:
        first = asyncio.create_task(cache.aget("examples", build))
        others = [asyncio.create_task(cache.aget("examples", build)) for _ in range(19)]
        await asyncio.sleep(0.05)
        first.cancel()  # the request that began the build goes away; the others still get it
        answers = await asyncio.gather(*others)
        return answers, await cache.aget("examples", build)

    answers, later = run_async(scenario)
    assert answers == [b"answer"] * 19 and later == b"answer"
    assert len(builds) == 1 and cache.shared == 19 and cache.hits == 1


def test_the_llm_and_dashboard_reads_are_kept_too(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    upgrade(store)
    job_id = submit(store, budget={"max_trials": 2, "epochs": 1, "parallelism": 1})
    assert run(manager(store, InlineExecutor()), job_id).status == "succeeded"
    store.dispose()
    reads = [f"/v1/jobs/{job_id}/summary?top=3", f"/v1/jobs/{job_id}/pareto", f"/v1/jobs/{job_id}/importance",
             "/v1/nn-stats?max_rows=5", "/v1/prompt-examples?task=img-classification&k=2"]  # fmt: skip
    with serve(sqlite_url) as client:
        first = [client.get(path) for path in reads]
        assert [r.status_code for r in first] == [200] * len(reads), [r.text for r in first]
        assert first[0].json()["job"]["trials"]["complete"] == 2 and first[4].json()["count"] == 2
        hits = client.app.state.read_cache.hits
        assert [client.get(path).content for path in reads] == [r.content for r in first]
        assert client.app.state.read_cache.hits == hits + len(reads)
        # a wrong input is still refused, and nothing of it is kept
        wrong = client.get(f"/v1/jobs/{job_id}/pareto?reference=1&reference=2")
        assert wrong.status_code == 422 and "one finite value per objective" in wrong.text


def write_elsewhere(store_url: str, statement: str, **params: object) -> None:
    """One SQL statement committed by another process, as another server, a CLI or a person at a
    SQL prompt would write it: no Cellar code says what it changed."""
    script = textwrap.dedent(f"""
        from sqlalchemy import text
        from service.store import Store
        with Store({store_url!r}).write() as session:
            session.execute(text({statement!r}), {params!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[3], timeout=120)


def test_a_change_to_one_job_keeps_the_answers_about_the_others(store_url: str) -> None:
    store = Store(store_url)
    upgrade(store)
    first, second = (submit(store, budget={"max_trials": 1, "epochs": 1, "parallelism": 1}) for _ in range(2))
    runner = manager(store, InlineExecutor())
    for job_id in (first, second):
        assert run(runner, job_id).status == "succeeded"
    with store.read() as session:
        trial_of = dict(session.execute(text("SELECT job_id, trial_id FROM cellar_trials")).all())
        arch_of = dict(session.execute(text("SELECT job_id, architecture_id FROM cellar_trials")).all())
    store.dispose()
    about_first = [f"/v1/jobs/{first}", f"/v1/jobs/{first}/trials", f"/v1/jobs/{first}/trials/0", f"/v1/jobs/{first}/summary"]
    with serve(store_url) as client:
        cache: ReadCache = client.app.state.read_cache
        assert cache.scoped
        before = {path: client.get(path).json() for path in about_first}
        client.get(f"/v1/jobs/{second}/trials").raise_for_status()
        client.get("/v1/jobs?limit=20").raise_for_status()

        # an epoch of the second job changes: its answers and the job list follow, the first job's stay
        write_elsewhere(store_url, "UPDATE cellar_trial_epochs SET val_metric = 0.125 WHERE trial_id = :t", t=trial_of[second])
        hits = cache.hits
        assert {path: client.get(path).json() for path in about_first} == before
        assert cache.hits == hits + len(about_first)  # all four from memory
        assert client.get(f"/v1/jobs/{second}/trials").json()["data"][0]["epochs"][0]["val_metric"] == 0.125
        hits = cache.hits
        client.get("/v1/jobs?limit=20").raise_for_status()
        assert cache.hits == hits  # about every job: built again

        # a row added to the first job's trial shows in the very next answers about it
        write_elsewhere(
            store_url,
            "INSERT INTO cellar_trial_epochs (trial_id, epoch, val_metric, created_at, task, dataset, metric, nn, score) "
            "SELECT trial_id, 2, 0.5, created_at, task, dataset, metric, nn, 0.5 FROM cellar_trial_epochs WHERE trial_id = :t",
            t=trial_of[first],
        )
        epochs = client.get(f"/v1/jobs/{first}/trials/0").json()["epochs"]
        assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["elapsed_seconds"] is None  # unknown, as LEMUR's may be
        assert [e["epoch"] for e in client.get(f"/v1/jobs/{first}/trials").json()["data"][0]["epochs"]] == [1, 2]

        # an architecture is shared by trials of any job: its change drops every answer
        hits = cache.hits
        client.get(f"/v1/jobs/{first}/trials/0").raise_for_status()
        assert cache.hits == hits + 1
        write_elsewhere(store_url, "UPDATE cellar_architectures SET num_params = 4321 WHERE architecture_id = :a", a=arch_of[first])
        assert client.get(f"/v1/jobs/{first}/trials/0").json()["params"] == 4321

        # a job deleted through the API: its answers go, the other's stay
        client.get(f"/v1/jobs/{first}").raise_for_status()
        hits = cache.hits
        assert client.delete(f"/v1/jobs/{second}", headers=AUTH).status_code == 204
        assert client.get(f"/v1/jobs/{second}").status_code == 404
        assert client.get(f"/v1/jobs/{first}").json()["id"] == first and cache.hits == hits + 1


def test_a_store_that_lost_its_change_triggers_drops_every_answer_on_any_change(sqlite_url: str, caplog) -> None:  # noqa: ANN001
    store = Store(sqlite_url)
    upgrade(store)
    first, second = submit(store), submit(store)
    with store.write() as session:
        session.execute(text("DROP TRIGGER cellar_trials_update_changes"))
    store.dispose()
    with serve(sqlite_url) as client:
        cache: ReadCache = client.app.state.read_cache
        assert not cache.scoped
        assert "cellar_trials_update_changes" in caplog.text and "cellar migrate" in caplog.text
        client.get(f"/v1/jobs/{first}").raise_for_status()
        rename_elsewhere(sqlite_url, second, "renamed")
        hits = cache.hits
        client.get(f"/v1/jobs/{first}").raise_for_status()
        assert cache.hits == hits  # built again: without the notes no answer can be trusted past a change


@pytest.mark.postgres
def test_postgres_notes_are_pruned_and_a_mark_older_than_the_pruning_means_every_job(postgres_url: str) -> None:
    store = Store(postgres_url)
    upgrade(store)
    first, second = submit(store), submit(store)
    versions = StoreVersion(store)

    async def scenario() -> tuple[object, object, object]:
        mark = await versions.read()
        rename_elsewhere(postgres_url, second, "renamed")
        now = await versions.read()
        changed = await versions.changed(mark, now)
        for _ in range(2):  # two prunings: the second removes what was older than the first saw
            with store.write() as session:
                session.execute(text("UPDATE cellar_changes_horizon SET pruned_at = now() - interval '1 hour'"))
            versions._pruned = 0.0
            pruned = await versions.changed(now, now)
        after_pruning = await versions.changed(mark, now)
        await versions.aclose()
        return changed, pruned, after_pruning

    changed, pruned, after_pruning = run_async(scenario)
    assert changed == ({second}, pytest.approx(changed[1]))  # type: ignore[index]
    assert pruned[0] == set()  # type: ignore[index]
    assert after_pruning[0] is None  # the notes it would need are gone: every job counts as changed
    with store.read() as session:
        left = session.execute(text("SELECT count(*) FROM cellar_changes")).scalar()
    assert left == 0 and first


def test_a_cache_hits_view_follows_the_deletion_of_its_originals_job(sqlite_url: str) -> None:
    """Deleting a job gives the cache hits that other jobs took from it their original's epochs and
    no ``duplicate_of``: the other job's view shows that at once, as its trial's page does."""
    store = Store(sqlite_url)
    upgrade(store)
    budget = {"max_trials": 1, "epochs": 1, "parallelism": 1}
    runner = manager(store, InlineExecutor())
    original = submit(store, budget=budget)
    run(runner, original)
    reuser = submit(store, budget=budget)
    run(runner, reuser)
    store.dispose()
    with serve(sqlite_url) as client:
        hit = client.get(f"/v1/jobs/{reuser}").json()["best_trial"]
        assert hit["cache_hit"] and hit["duplicate_of"] is not None and hit["epochs"] == []
        assert client.delete(f"/v1/jobs/{original}", headers=AUTH).status_code == 204
        shown = client.get(f"/v1/jobs/{reuser}").json()["best_trial"]
        page = client.get(f"/v1/jobs/{reuser}/trials/0").json()
        assert shown["duplicate_of"] is None and len(shown["epochs"]) == 1
        assert shown["epochs"] == page["epochs"] and page["duplicate_of"] is None
