"""The job manager's guarantees, driven tick by tick with the in-process executor (real training,
real SQLite store), where the order in which trials finish can be chosen."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.jobs.manager import JobManager
from service.jobs.spec import JobCreate
from service.settings import Settings
from service.store import Job, Store, Trial, TrialEpoch, upgrade, utcnow
from service.store import queries
from tests.service.bodies import job_body
from workers.inline_executor import InlineExecutor

TINY = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}
GOOD = [
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
]
HOPELESS = [  # no path from input to output
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


def make_store(path: Path, **options: Any) -> Store:
    store = Store(f"sqlite:///{path}", **options)
    upgrade(store)
    return store


def submit(store: Store, **changes: Any) -> int:
    spec = JobCreate.model_validate(job_body(**changes))
    with store.write() as session:
        return queries.create_job(
            session, name=spec.name or "job", search_space=spec.search_space.kind, dataset=spec.dataset,
            task="img-classification", metric="acc", spec=spec.model_dump(mode="json"),
        ).job_id


def manager(store: Store, executor: InlineExecutor, *, lease_s: float = 30.0, artifacts: Path | None = None) -> JobManager:
    settings = Settings(
        database_url=str(store.url), api_key="k", poll_interval_s=0.001, start_manager=False, lease_s=lease_s,
        **({"artifacts_dir": artifacts} if artifacts is not None else {}),
    )
    return JobManager(store, executor, settings)


def run(mgr: JobManager, job_id: int, ticks: int = 5000) -> Job:
    for _ in range(ticks):
        mgr.tick()
        with mgr.store.read() as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.status in ("succeeded", "failed", "cancelled"):
                return job
    raise AssertionError(f"job {job_id} did not finish in {ticks} ticks")


def trials(store: Store, job_id: int) -> list[Trial]:
    """The job's trials, with their epochs and architecture loaded (usable after the session)."""
    with store.read() as session:
        rows = list(session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all())
        for row in rows:
            _ = row.epoch_rows, row.architecture
        return rows


def search(tmp_path: Path, name: str, shuffle_seed: int, **changes: Any) -> tuple[list[str], list[int]]:
    """Run a job; return its architectures by trial number and the order trials finished in."""
    store = make_store(tmp_path / f"{name}.db")
    job_id = submit(store, **changes)
    assert run(manager(store, InlineExecutor(shuffle_seed=shuffle_seed)), job_id).status == "succeeded"
    rows = trials(store, job_id)
    with store.read() as session:
        archs = [session.get(Trial, t.trial_id).architecture.encoding for t in rows]  # type: ignore[union-attr]
    finished = [t.number for t in sorted(rows, key=lambda t: (t.finished_at, t.trial_id))]
    store.dispose()
    return archs, finished


def test_reproducible_order_samples_the_same_whatever_order_trials_finish(tmp_path: Path) -> None:
    changes = {"search_space": TINY, "budget": {"max_trials": 16, "epochs": 1, "parallelism": 3}}
    runs = [search(tmp_path, f"r{seed}", seed, **changes) for seed in (0, 1, 2)]
    assert len({tuple(order) for _, order in runs}) > 1, "the shuffles should change the finishing order"
    assert runs[0][0] == runs[1][0] == runs[2][0]


def test_without_it_the_architectures_depend_on_the_finishing_order(tmp_path: Path) -> None:
    # the control experiment: the same jobs asking as soon as a slot frees
    changes = {
        "search_space": TINY,
        "strategy": {"sampler": "tpe", "seed": 0, "reproducible": False},
        "budget": {"max_trials": 16, "epochs": 1, "parallelism": 3},
    }
    runs = [search(tmp_path, f"f{seed}", seed, **changes) for seed in (0, 1, 2)]
    assert len({tuple(archs) for archs, _ in runs}) > 1


def test_duplicates_are_judged_against_the_trials_the_sampler_has_seen(tmp_path: Path) -> None:
    twin = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    same = "|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|skip_connect~2|none~1|skip_connect~0|"  # twin, reordered
    changes = {
        "search_space": TINY,
        "strategy": {"sampler": "random", "seed": 0, "initial_architectures": [GOOD[1], twin, HOPELESS[0], same, twin]},
        "budget": {"max_trials": 5, "epochs": 1, "parallelism": 3},
    }
    flags = []
    for seed in (0, 1, 2, 3):
        store = make_store(tmp_path / f"d{seed}.db")
        job_id = submit(store, **changes)
        run(manager(store, InlineExecutor(shuffle_seed=seed)), job_id)
        flags.append([t.duplicate_of_trial_id is not None for t in trials(store, job_id)])
        store.dispose()
    # trial 3 is asked before trial 1 is visible (3 in flight): trained; trial 4 sees trial 1: duplicate
    assert flags == [[False, False, False, False, True]] * 4


def test_the_pruner_judges_the_objective_in_its_direction(tmp_path: Path) -> None:
    store = make_store(tmp_path / "p.db")
    job_id = submit(
        store,
        search_space=TINY,
        objectives=[{"metric": "val_loss", "direction": "minimize"}],
        strategy={"sampler": "random", "seed": 0, "pruner": "median", "initial_architectures": GOOD + HOPELESS},
        budget={"max_trials": 4, "epochs": 3, "parallelism": 1},
    )
    run(manager(store, InlineExecutor()), job_id)
    assert [t.state for t in trials(store, job_id)] == ["complete", "complete", "pruned", "pruned"]


def _expire_lease(store: Store, job_id: int) -> None:
    """As if the lease of the server running the job had run out (it went away without a word)."""
    with store.write() as session:
        session.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]


def _until_running(mgr: JobManager, store: Store, job_id: int, complete: int) -> list[Trial]:
    for _ in range(2000):  # until ``complete`` trials have finished and two are in flight
        mgr.tick()
        rows = trials(store, job_id)
        states = [t.state for t in rows]
        if states.count("complete") >= complete and states.count("running") == 2:
            return rows
    raise AssertionError(states)


def test_a_restart_runs_interrupted_trials_again_in_place(tmp_path: Path) -> None:
    store = make_store(tmp_path / "restart.db")
    job_id = submit(store, search_space=TINY, budget={"max_trials": 6, "epochs": 2, "parallelism": 2})
    first = manager(store, InlineExecutor(shuffle_seed=0))
    before = _until_running(first, store, job_id, complete=2)
    interrupted = {t.trial_id: t for t in before if t.state == "running"}
    # the first manager is dropped mid-job, as a killed server would be: nothing is cleaned up. Its
    # lease holds the job for another manager until it expires.
    second = manager(store, InlineExecutor(shuffle_seed=1))
    second.tick()
    assert not second.runners and [t.state for t in trials(store, job_id)] == [t.state for t in before]
    _expire_lease(store, job_id)
    job = run(second, job_id)
    assert job.status == "succeeded"
    rows = trials(store, job_id)
    # nothing lost, nothing added: the same six trials, numbered densely, each complete once
    assert [t.number for t in rows] == list(range(6)) and all(t.state == "complete" for t in rows)
    assert not [t for t in rows if t.requeued or t.origin == "retry"]
    by_id = {t.trial_id: t for t in rows}
    for trial_id, old in interrupted.items():
        again = by_id[trial_id]  # the same row: same number, same configuration, run from the start
        assert (again.number, again.params, again.interruptions) == (old.number, old.params, 1)
        assert [e.epoch for e in again.epoch_rows] == [1, 2] and again.error is None
    assert all(t.interruptions == 0 for t in rows if t.trial_id not in interrupted)


@pytest.mark.parametrize(
    ("sampler", "params"),
    # TPE's first 10 trials are its random start-up: the random sampler's case is in there too
    [("tpe", {}), ("evolution", {"population_size": 4, "sample_size": 2}), ("nsga2", {"population_size": 4})],
)
@pytest.mark.parametrize("stop", ["killed", "clean"])
def test_a_resumed_job_samples_what_it_would_have_without_the_restart(
    tmp_path: Path, sampler: str, params: dict[str, Any], stop: str
) -> None:
    """Issue #10: a TPE job (seed 11, 16 trials) stopped after 4 trials and restarted proposed its
    first architectures again (trials 8-12 repeated 0-4): the rebuilt sampler replayed its stream."""
    changes = {
        "search_space": TINY,
        "strategy": {"sampler": sampler, "sampler_params": params, "seed": 11, "cache": False},
        "budget": {"max_trials": 14, "epochs": 1, "parallelism": 2},
    }
    reference = search(tmp_path, "reference", 0, **changes)[0]

    store = make_store(tmp_path / "restarted.db")
    job_id = submit(store, **changes)
    first = manager(store, InlineExecutor(shuffle_seed=1))
    _until_running(first, store, job_id, complete=5)
    if stop == "clean":
        first.close()  # what a server does on SIGTERM: the lease is handed back
    else:
        _expire_lease(store, job_id)  # a killed server: its lease runs out
    second = manager(store, InlineExecutor(shuffle_seed=2))
    assert run(second, job_id).status == "succeeded"
    restarted = [t.architecture.encoding for t in trials(store, job_id)]  # type: ignore[union-attr]
    assert restarted == reference
    assert len(set(reference)) > len(reference) // 2  # a search, not one architecture repeated


def test_two_servers_on_one_store_never_run_the_same_job(tmp_path: Path) -> None:
    store = make_store(tmp_path / "two.db")
    first_job = submit(store, search_space=TINY, budget={"max_trials": 2, "epochs": 1, "parallelism": 1})
    one, two = manager(store, InlineExecutor(), lease_s=60), manager(store, InlineExecutor(), lease_s=60)
    one.tick()
    second_job = submit(store, search_space=TINY, budget={"max_trials": 2, "epochs": 1, "parallelism": 1})
    two.tick()
    assert set(one.runners) == {first_job} and set(two.runners) == {second_job}
    for mgr, job_id in ((one, first_job), (two, second_job)):
        assert run(mgr, job_id).status == "succeeded"
    with store.read() as session:
        jobs = session.scalars(select(Job)).all()
        assert [(j.lease_owner, j.lease_expires_at) for j in jobs] == [(None, None), (None, None)]
    assert {t.job_id for t in trials(store, first_job)} == {first_job}


def test_a_server_that_lost_its_lease_stops_running_the_job(tmp_path: Path) -> None:
    store = make_store(tmp_path / "stolen.db")
    job_id = submit(store, search_space=TINY, budget={"max_trials": 4, "epochs": 1, "parallelism": 1})
    one = manager(store, InlineExecutor(), lease_s=0.3)
    one.tick()
    assert job_id in one.runners
    time.sleep(0.4)  # ``one`` stalls past its lease; another server takes the job over
    two = manager(store, InlineExecutor(), lease_s=30)
    two.tick()
    assert job_id in two.runners
    one.tick()
    assert job_id not in one.runners  # it noticed and let go, writing nothing more
    assert run(two, job_id).status == "succeeded"


def test_cancel_keeps_a_result_that_has_already_arrived(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cancel.db")
    job_id = submit(store, search_space=TINY, budget={"max_trials": 6, "epochs": 1, "parallelism": 2})
    mgr = manager(store, InlineExecutor())
    for _ in range(100):  # until trial 0's epoch is stored: its test evaluation is then ready too
        mgr.tick()
        with store.read() as session:
            if session.scalars(select(TrialEpoch)).first() is not None:
                break
    with store.write() as session:
        queries.request_cancel(session, job_id)
    job = run(mgr, job_id)
    assert job.status == "cancelled"
    rows = trials(store, job_id)
    assert rows[0].state == "complete" and rows[0].test_metric is not None
    assert all(t.state == "failed" and "cancelled" in t.error for t in rows[1:])


def test_a_store_outage_loses_no_result(tmp_path: Path) -> None:
    path = tmp_path / "outage.db"
    store = make_store(path, busy_timeout_s=0.1)
    job_id = submit(store, search_space=TINY, budget={"max_trials": 4, "epochs": 2, "parallelism": 2})
    mgr = manager(store, InlineExecutor(shuffle_seed=0))
    mgr.tick()  # the job starts
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database: every write times out
    failures = 0
    for _ in range(5):
        try:
            mgr.tick()
        except Exception as error:  # noqa: BLE001 - the manager thread logs these and goes on
            assert "failed" in str(error) and "locked" in str(error)
            failures += 1
    blocker.rollback()
    blocker.close()
    assert failures == 5
    job = run(mgr, job_id)
    assert job.status == "succeeded"
    with store.read() as session:
        for trial in session.scalars(select(Trial).where(Trial.job_id == job_id)):
            assert trial.state == "complete" and [e.epoch for e in trial.epoch_rows] == [1, 2]


def test_an_architecture_trained_under_the_same_protocol_is_not_trained_again(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cache.db")
    strategy = {"sampler": "random", "seed": 0, "initial_architectures": GOOD}
    budget = {"max_trials": 2, "epochs": 1, "parallelism": 1}
    first = submit(store, search_space=TINY, strategy=strategy, budget=budget)
    assert run(manager(store, InlineExecutor()), first).status == "succeeded"
    objectives = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]
    again = submit(store, search_space=TINY, strategy=strategy, budget=budget, objectives=objectives)
    other_seed = submit(store, search_space=TINY, strategy=strategy, budget=budget, training={"seed": 7})
    no_cache = submit(store, search_space=TINY, strategy={**strategy, "cache": False}, budget=budget)
    mgr = manager(store, InlineExecutor())
    for job_id in (again, other_seed, no_cache):
        assert run(mgr, job_id).status == "succeeded"
    originals = trials(store, first)
    hits = trials(store, again)
    assert [t.cache_hit for t in hits] == [True, True]
    assert [t.duplicate_of_trial_id for t in hits] == [t.trial_id for t in originals]
    assert not [t for t in hits if t.epoch_rows]  # nothing was trained
    for hit, original in zip(hits, originals):
        # the values follow this job's objectives, not the original's
        assert hit.values == [original.val_metric, original.architecture.num_params]
        assert hit.test_metric == original.test_metric and hit.cache_key == original.cache_key
    for job_id in (other_seed, no_cache):
        rows = trials(store, job_id)
        assert not [t for t in rows if t.cache_hit or t.duplicate_of_trial_id] and all(t.epoch_rows for t in rows)
    assert trials(store, other_seed)[0].cache_key != originals[0].cache_key


def test_a_multi_objective_job_prunes_a_trial_dominated_at_a_rung_and_keeps_its_curve(tmp_path: Path) -> None:
    # three 3x3 convs and no path to the output: more parameters than GOOD[0] and no accuracy
    broken = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    store = make_store(tmp_path / "mo.db")
    objectives = [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]
    job_id = submit(
        store,
        search_space=TINY,
        objectives=objectives,
        strategy={"sampler": "nsga2", "seed": 0, "pruner": "median", "initial_architectures": [*GOOD, broken]},
        budget={"max_trials": 3, "epochs": 3, "parallelism": 1},
    )
    assert run(manager(store, InlineExecutor()), job_id).status == "succeeded"
    rows = trials(store, job_id)
    assert [t.state for t in rows] == ["complete", "complete", "pruned"]
    pruned = rows[2]
    assert [e.epoch for e in pruned.epoch_rows] == [1]  # judged at the first rung, its curve kept
    assert pruned.epoch_rows[0].val_metric < min(t.epoch_rows[0].val_metric for t in rows[:2])
    assert pruned.architecture.num_params > rows[0].architecture.num_params


@pytest.mark.parametrize(
    ("changes", "kept"),
    [
        ({}, "best 3"),
        ({"keep_weights": 1}, "best 1"),
        ({"keep_weights": 0}, "none"),
        ({"objectives": [{"metric": "val_accuracy", "direction": "maximize"}, {"metric": "params", "direction": "minimize"}]},
         "front"),
    ],
    ids=["default", "keep-1", "keep-0", "pareto"],
)
def test_a_job_keeps_the_weights_its_policy_names(tmp_path: Path, changes: dict[str, Any], kept: str) -> None:
    """Workers write each finished trial's weights; the job keeps the best 3 (default), the best N,
    none, or the Pareto set, and the kept files rebuild the trained networks."""
    import torch

    from service.api.views import non_dominated
    from workers.nn_module import load_nn_module

    store = make_store(tmp_path / "cellar.db")
    job_id = submit(store, search_space=TINY, strategy={"sampler": "random", "seed": 3},
                    budget={"max_trials": 6, "epochs": 1, "parallelism": 2}, **changes)
    folder = tmp_path / "artifacts"
    assert run(manager(store, InlineExecutor(shuffle_seed=2), artifacts=folder), job_id).status == "succeeded"
    done = [t for t in trials(store, job_id) if t.state == "complete" and t.duplicate_of_trial_id is None]
    by_value = sorted(done, key=lambda t: (-t.values[0], t.number))
    expected = {
        "best 3": {t.number for t in by_value[:3]},
        "best 1": {by_value[0].number},
        "none": set(),
        "front": {t.number for t in non_dominated(done, ["maximize", "minimize"])},
    }[kept]
    on_disk = {int(p.stem.removeprefix("trial-")) for p in (folder / f"job-{job_id}").glob("trial-*.pt")}
    assert on_disk == expected and (kept == "none" or on_disk)
    for number in on_disk:
        trial = next(t for t in done if t.number == number)
        saved = torch.load(folder / f"job-{job_id}" / f"trial-{number}.pt", weights_only=True)
        module = load_nn_module(trial.architecture.nn_code, trial.architecture.nn_name)
        net = module.Net(tuple(saved["in_shape"]), tuple(saved["out_shape"]), saved["prm"], torch.device("cpu"))
        net.load_state_dict(saved["state_dict"])  # strict: every tensor of the trained network
        assert saved["nn"] == trial.architecture.nn_name and sum(p.numel() for p in net.parameters()) == trial.architecture.num_params
    assert not list(folder.rglob("*.part"))


class _CountingExecutor(InlineExecutor):
    asked = 0

    def status(self) -> dict[str, Any]:
        self.asked += 1
        return {"asked": self.asked}


def test_the_executors_status_is_kept_for_a_second_and_ask_false_never_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz answers from the event loop with ``status(ask=False)``: the kept answer, or ``None``
    when only a round trip to the executor could tell."""
    executor = _CountingExecutor()
    mgr = manager(make_store(tmp_path / "s.db"), executor)
    mgr.state = "ok"  # as after the manager's thread connected the executor
    assert mgr.status(ask=False) is None and executor.asked == 0
    assert mgr.status() == {"status": "ok", "running_jobs": 0, "asked": 1}
    assert mgr.status(ask=False) == mgr.status() == {"status": "ok", "running_jobs": 0, "asked": 1}
    later = time.monotonic() + 1.5
    monkeypatch.setattr("service.jobs.manager.time.monotonic", lambda: later)
    assert mgr.status(ask=False) is None and executor.asked == 1
    assert mgr.status(ask=False, stale=True) == {"status": "ok", "running_jobs": 0, "asked": 1}  # the stale one
    assert mgr.status()["asked"] == 2
    mgr.state, mgr.error = "error", "Ray is not reachable"
    assert mgr.status(ask=False) == {"status": "error", "running_jobs": 0, "error": "Ray is not reachable"}


def test_probes_that_find_the_executors_status_stale_ask_it_once_and_wait_only_the_first_time(tmp_path: Path) -> None:
    """Under load many /healthz probes arrive in the second after the kept status went stale: one
    thread asks the executor, and the probes meanwhile get the stale status without waiting."""
    import asyncio
    from types import SimpleNamespace

    from service.api.meta import _executor_status
    from tests.aio import run_async

    class Slow(_CountingExecutor):
        def status(self) -> dict[str, Any]:
            time.sleep(0.3)
            return super().status()

    executor = Slow()
    mgr = manager(make_store(tmp_path / "s.db"), executor)
    mgr.state = "ok"
    app = SimpleNamespace(state=SimpleNamespace())

    async def probes() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        first = await asyncio.gather(*(_executor_status(app, mgr) for _ in range(20)))  # nothing kept: all wait
        mgr._status_cache = (time.monotonic() - 5, mgr._status_cache[1])  # gone stale
        stale = await asyncio.gather(*(_executor_status(app, mgr) for _ in range(20)))
        answered_before_the_executor = not app.state.asking_executor.done()
        await app.state.asking_executor
        return first, stale, answered_before_the_executor

    first, stale, early = run_async(probes)
    assert [s["asked"] for s in first] == [1] * 20  # one question for the twenty
    assert [s["asked"] for s in stale] == [1] * 20 and early  # the stale answer, without waiting for the question
    assert executor.asked == 2 and mgr.status(ask=False)["asked"] == 2  # the one refresh, kept
