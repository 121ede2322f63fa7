"""Results tables: the migration, build (through Ray and resumed), export and import, and searches
the job manager runs on the tabular executor's simulated clock."""

from __future__ import annotations

import json
import lzma
import random
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from search_spaces import get_search_space
from search_spaces.nb201.genotype import Cell
from service.jobs.identity import dedup_hash
from service.jobs.manager import JobManager
from service.jobs.spec import JobCreate
from service.settings import Settings
from service.store import Job, Store, TabularResult, TabularTable, Trial, current_revision, downgrade, upgrade
from service.store import queries
from service.tabular import (
    FORMAT,
    BuildConfig,
    BuildProgress,
    TabularTableError,
    build_table,
    export_table,
    import_table,
    list_tables,
    load_table,
)
from tests.service.bodies import PRM
from workers.inline_executor import InlineExecutor
from workers.tabular_executor import TabularExecutor

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "benchmarks" / "tables" / "nb201-c4-4ops-digits.jsonl.xz"
SPACE = {"kind": "nb201", "params": {"channels": 4, "cells_per_stage": 1}}
A = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


# ---- helpers ----------------------------------------------------------------------------------
def write_table(
    path: Path, cells: list[str], *, name: str = "toy", seed: int = 0, **header: Any
) -> list[dict[str, Any]]:
    """A table file as `cellar table export` writes it, with made-up (seeded) results."""
    space = get_search_space("nb201", SPACE["params"])
    rng = random.Random(seed)
    rows = []
    for arch in cells:
        accuracy, elapsed, curve = round(rng.random(), 6), 0.0, []
        for epoch in (1, 2, 3):
            elapsed = round(elapsed + rng.uniform(1.0, 3.0), 4)
            curve.append(
                {
                    "epoch": epoch,
                    "loss": round(1 / epoch, 6),
                    "val_loss": round(1.5 / epoch, 6),
                    "val_metric": round(accuracy * epoch / 3, 6),
                    "elapsed_seconds": elapsed,
                }
            )
        rows.append(
            {
                "arch": arch,
                "dedup_hash": dedup_hash(space, arch, [1, 1, 8, 8], [10]),
                "original": arch,
                "params": 1000 + len(arch),
                "flops": 5000,
                "latency_ms": 1.5,
                "curve": curve,
                "test_metric": round(accuracy - 0.01, 6),
                "train_seconds": elapsed,
            }
        )
    head = {
        "format": FORMAT,
        "format_version": 1,
        "name": name,
        "search_space": "nb201",
        "space_params": SPACE["params"],
        "dataset": "digits",
        "metric": "acc",
        "epochs": 3,
        "seed": 0,
        "cellar_version": "0.1.0",
        "cells": len(rows),
        "training": {
            "prm": PRM,
            "split": {"fractions": [0.6, 0.2, 0.2], "seed": 0},
            "split_fractions": [0.6, 0.2, 0.2],
        },
        **header,
    }
    with lzma.open(path, "wt") if path.suffix == ".xz" else path.open("w") as handle:
        for record in [head, *rows]:
            handle.write(json.dumps(record) + "\n")
    return rows


ALL_CELLS = [cell.to_string() for cell in Cell.all()]


def submit(store: Store, **body: Any) -> int:
    spec = JobCreate.model_validate({"search_space": SPACE, "dataset": "digits"} | body)
    with store.write() as session:
        return queries.create_job(
            session,
            name="sim",
            search_space="nb201",
            dataset="digits",
            task="img-classification",
            metric="acc",
            spec=spec.model_dump(mode="json"),
        ).job_id


def run(store: Store, executor: Any, job_id: int, ticks: int = 100_000) -> Job:
    settings = Settings(database_url=str(store.url), api_key="k", poll_interval_s=0.0001, start_manager=False)
    manager = JobManager(store, executor, settings, max_running_jobs=1)
    for _ in range(ticks):
        manager.tick()
        if not manager.runners:
            with store.read() as session:
                job = session.get(Job, job_id)
                assert job is not None
                if job.status in ("succeeded", "failed", "cancelled"):
                    return job
    raise AssertionError(f"job {job_id} did not finish in {ticks} ticks")


def trials(store: Store, job_id: int) -> list[Trial]:
    with store.read() as session:
        rows = session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)).all()
        for trial in rows:
            _ = trial.architecture, trial.epoch_rows
        return list(rows)


@pytest.fixture
def migrated(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'sim.db'}")
    upgrade(store)
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def full_table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tables") / "full.jsonl"
    write_table(path, ALL_CELLS, name="full")
    return path


# ---- the store --------------------------------------------------------------------------------
def test_the_migration_adds_and_removes_the_tables(empty_store: Store) -> None:
    upgrade(empty_store, "0002")
    assert "cellar_tabular_results" not in inspect(empty_store.engine).get_table_names()
    upgrade(empty_store, "0003")
    names = set(inspect(empty_store.engine).get_table_names())
    assert {"cellar_tabular_tables", "cellar_tabular_results"} <= names
    upgrade(empty_store)
    downgrade(empty_store, "0002")
    assert current_revision(empty_store) == "0002"
    assert not {"cellar_tabular_tables", "cellar_tabular_results"} & set(inspect(empty_store.engine).get_table_names())


def test_export_and_import_round_trip_and_import_is_idempotent(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "toy.jsonl.xz"
    rows = write_table(source, ALL_CELLS[:50])
    assert import_table(store, source) == ("toy", 50, 50)
    assert import_table(store, source) == ("toy", 50, 0)
    out = tmp_path / "again.jsonl.gz"
    assert export_table(store, "toy", out) == 50
    # the exported file holds exactly what was imported (floats survive both backends unchanged)
    again = tmp_path / "again.db"
    other = Store(f"sqlite:///{again}")
    upgrade(other)
    assert import_table(other, out) == ("toy", 50, 50)
    loaded = load_table(other, "toy")
    by_arch = {row["arch"]: row for row in rows}
    for arch, result in loaded.results.items():
        assert result.test_metric == by_arch[arch]["test_metric"]
        assert [e.val_metric for e in result.epochs] == [e["val_metric"] for e in by_arch[arch]["curve"]]
    other.dispose()
    [listed] = list_tables(store)
    assert (
        listed["cells"] == 50 and listed["epochs"] == 3 and listed["best_test"] == max(r["test_metric"] for r in rows)
    )


def test_import_adds_missing_rows_and_never_overwrites(store: Store, tmp_path: Path) -> None:
    write_table(tmp_path / "part.jsonl.xz", ALL_CELLS[:10])
    write_table(tmp_path / "more.jsonl.xz", ALL_CELLS[:20])
    assert import_table(store, tmp_path / "part.jsonl.xz")[2] == 10
    assert import_table(store, tmp_path / "more.jsonl.xz")[2] == 10
    write_table(tmp_path / "other.jsonl.xz", ALL_CELLS[:20], seed=1)  # other results for the same cells
    with pytest.raises(TabularTableError, match="is stored with different .*nothing was written"):
        import_table(store, tmp_path / "other.jsonl.xz")
    write_table(tmp_path / "epochs.jsonl.xz", ALL_CELLS[:5], seed=1, dataset="digits32")
    with pytest.raises(TabularTableError, match="already in .* with a different dataset .*--name"):
        import_table(store, tmp_path / "epochs.jsonl.xz")
    assert import_table(store, tmp_path / "other.jsonl.xz", name="toy-seed1")[2] == 20
    with store.read() as session:
        assert len(session.scalars(select(TabularResult).where(TabularResult.table_name == "toy")).all()) == 20
        assert session.get(TabularTable, "toy-seed1").origin == "import: other.jsonl.xz"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["not json"], "line 1: not JSON"),
        (['{"arch": "x"}'], 'line 1: the first record must be the header with "format": "cellar-results-table"'),
        (["HEADER", '{"arch": "' + A + '"}'], "line 2: dedup_hash: Field required; original: Field required"),
        (["HEADER", "ROW", "ROW"], "line 3: arch .* appears twice"),
        (["HEADER", "ROW:test_metric=high"], "line 2: test_metric: Input should be a valid number"),
        (["HEADER", "ROW:arch=|conv~0|"], "line 2: arch: arch string '|conv~0|' has 1 node segments"),
        (["HEADER", "ROW:curve=[]"], "line 2: curve: List should have at least 1 item"),
        (["HEADER"], "the header announces 1 cells but the file holds 0"),
        ([], "the file is empty"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_line_and_the_problem(
    migrated: Store, tmp_path: Path, lines: list[str], message: str
) -> None:
    good = tmp_path / "good.jsonl"
    write_table(tmp_path / "good.jsonl.xz", [A])
    header, row = lzma.open(tmp_path / "good.jsonl.xz", "rt").read().splitlines()
    text = []
    for line in lines:
        if line == "HEADER":
            line = header
        elif line.startswith("ROW"):
            record = json.loads(row)
            if ":" in line:
                key, value = line.split(":", 1)[1].split("=", 1)
                record[key] = json.loads(value) if value.startswith("[") else value
            line = json.dumps(record)
        text.append(line)
    good.write_text("\n".join(text) + ("\n" if text else ""))
    with pytest.raises(TabularTableError, match=message):
        import_table(migrated, good)
    with migrated.read() as session:
        assert session.scalars(select(TabularResult)).first() is None, "nothing is written"


def test_a_truncated_compressed_file_is_refused(migrated: Store, tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.xz"
    write_table(path, ALL_CELLS[:200])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(TabularTableError, match="damaged or truncated"):
        import_table(migrated, path)


# ---- searches on the simulated clock ----------------------------------------------------------
def test_a_time_limit_is_a_simulated_budget(migrated: Store, full_table_file: Path) -> None:
    import_table(migrated, full_table_file)
    table = load_table(migrated, "full")
    executor = TabularExecutor(table)
    job_id = submit(
        migrated,
        strategy={"sampler": "random", "seed": 0, "cache": False},
        training={"seed": 0},
        budget={"time_limit_s": 60, "epochs": 3, "parallelism": 2},
    )
    started = time.monotonic()
    job = run(migrated, executor, job_id)
    assert time.monotonic() - started < 30, "simulated, not waited for"
    assert job.status == "succeeded" and job.started_at is not None and job.finished_at is not None
    deadline = job.started_at + timedelta(seconds=60)
    rows = trials(migrated, job_id)
    complete = [t for t in rows if t.state == "complete"]
    assert len(complete) >= 10
    assert all(t.finished_at is not None and t.finished_at <= deadline for t in complete)
    stopped = [t for t in rows if t.state == "failed"]
    assert stopped and all("time_limit_s (60 s) was reached" in (t.error or "") for t in stopped)
    assert job.finished_at > deadline
    # two slots: the trials' training seconds add up to at most twice the budget (a duplicate
    # carries its original's seconds, but trained nothing)
    assert sum(t.train_seconds or 0.0 for t in complete if t.duplicate_of_trial_id is None) <= 2 * 60
    by_id = {t.trial_id: t for t in rows}
    for trial in complete:
        if trial.duplicate_of_trial_id is not None:
            # an isomorphic repeat (the made-up table gives each cell results of its own): the
            # original's result, recorded at once without a simulated training
            original = by_id[trial.duplicate_of_trial_id]
            assert trial.test_metric == original.test_metric and trial.values == original.values
            continue
        recorded = table.results[trial.architecture.encoding]  # type: ignore[union-attr]
        assert trial.test_metric == recorded.test_metric
        assert [e.val_metric for e in trial.epoch_rows] == [e.val_metric for e in recorded.epochs]
        assert trial.finished_at - trial.started_at == timedelta(seconds=recorded.train_seconds)  # type: ignore[operator]


def test_an_architecture_missing_from_the_table_fails_its_trial(migrated: Store, tmp_path: Path) -> None:
    write_table(tmp_path / "one.jsonl.xz", [A], name="one")
    import_table(migrated, tmp_path / "one.jsonl.xz")
    missing = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    job_id = submit(
        migrated,
        strategy={"sampler": "random", "seed": 0, "initial_architectures": [missing, A]},
        training={"seed": 0},
        budget={"max_trials": 2, "epochs": 3, "parallelism": 1},
    )
    job = run(migrated, TabularExecutor(load_table(migrated, "one")), job_id)
    assert job.status == "succeeded"
    failed, complete = trials(migrated, job_id)
    assert failed.state == "failed" and failed.error is not None
    assert failed.error.startswith(f"TabularLookupError: architecture '{missing}' is not in results table 'one'")
    assert complete.state == "complete"


def test_loading_an_unknown_table_names_the_known_ones(migrated: Store, tmp_path: Path) -> None:
    write_table(tmp_path / "one.jsonl.xz", [A], name="one")
    import_table(migrated, tmp_path / "one.jsonl.xz")
    with pytest.raises(TabularTableError, match="no results table 'two' in .*; it has: one"):
        load_table(migrated, "two")


@pytest.mark.skipif(not SHIPPED.exists(), reason=f"{SHIPPED.name} is not built yet (cellar table build)")
def test_a_random_search_over_the_shipped_table_finds_what_the_table_says(migrated: Store) -> None:
    name, cells, added = import_table(migrated, SHIPPED)
    table = load_table(migrated, name)
    assert cells == added == len(table.results) == 4**6  # NAS-Bench-201 without avg_pool_3x3
    job_id = submit(
        migrated,
        search_space={"kind": table.search_space, "params": table.space_params},
        strategy={"sampler": "random", "seed": 0, "cache": False},
        training={"seed": table.seed},
        budget={"max_trials": 50, "epochs": table.epochs, "parallelism": 2},
    )
    job = run(migrated, TabularExecutor(table), job_id)
    assert job.status == "succeeded"
    complete = [t for t in trials(migrated, job_id) if t.state == "complete"]
    assert len(complete) == 50
    best = max(complete, key=lambda t: (t.val_metric, -t.number))
    recorded = table.results[best.architecture.encoding]  # type: ignore[union-attr]
    assert best.val_metric == recorded.epochs[-1].val_metric
    assert best.test_metric == recorded.test_metric
    assert best.val_metric == max(table.results[t.architecture.encoding].epochs[-1].val_metric for t in complete)  # type: ignore[union-attr]
    # simulated results never enter the result cache: the same search with the cache on looks
    # every cell up again, and a real job in this store could not take them for trainings
    again = submit(
        migrated,
        search_space={"kind": table.search_space, "params": table.space_params},
        strategy={"sampler": "random", "seed": 0, "cache": True},
        training={"seed": table.seed},
        budget={"max_trials": 50, "epochs": table.epochs, "parallelism": 2},
    )
    assert run(migrated, TabularExecutor(table), again).status == "succeeded"
    rows = trials(migrated, job_id) + trials(migrated, again)
    assert not [t for t in rows if t.cache_hit or t.cache_key is not None]


# ---- building ---------------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_build_through_ray_then_export_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    store = Store(f"sqlite:///{tmp_path / 'build.db'}")
    config = BuildConfig(name="tiny", epochs=1, max_cells=3, parallelism=2)
    progress = build_table(config, store, poll_s=0.2)
    assert (progress.covered, progress.classes, progress.failed) == (3, 3, 0)
    out = tmp_path / "tiny.jsonl.xz"
    assert export_table(store, "tiny", out) == 3
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    assert import_table(other, out) == ("tiny", 3, 3)
    table = load_table(other, "tiny")
    assert table.epochs == 1 and table.dataset == "digits" and table.prm["lr"] == 0.05
    with store.read() as session:
        trained = session.scalars(select(Trial).where(Trial.state == "complete")).all()
        for trial in trained:
            result = table.results[trial.architecture.encoding]  # type: ignore[union-attr]
            assert result.test_metric == round(trial.test_metric, 6)  # type: ignore[arg-type]
            assert result.params == trial.architecture.num_params  # type: ignore[union-attr]
    store.dispose()
    other.dispose()


@pytest.mark.slow
def test_a_stopped_build_resumes_and_trains_no_cell_twice(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'build.db'}")
    config = BuildConfig(name="resumed", epochs=1, max_cells=6, parallelism=2)
    stop = threading.Event()

    def stop_early(progress: BuildProgress) -> None:
        if progress.trained >= 1:
            stop.set()

    first = build_table(config, store, executor=InlineExecutor(), on_progress=stop_early, stop=stop, poll_s=0.02)
    assert first.covered < first.classes == 6
    with store.read() as session:
        assert session.get(TabularTable, "resumed") is None, "a stopped build writes no table"
    final = build_table(config, store, executor=InlineExecutor(), poll_s=0.02)
    assert (final.covered, final.classes) == (6, 6)
    with store.read() as session:
        rows = session.scalars(
            select(Trial).where(Trial.state == "complete", Trial.duplicate_of_trial_id.is_(None))
        ).all()
        archs = [t.architecture.encoding for t in rows]  # type: ignore[union-attr]
        # retries take grid numbers (Optuna's GridSampler skips the grid point of an enqueued
        # trial), so a limited build may train a cell past its first 6; never one twice
        assert len(archs) == len(set(archs)) >= 6, "no cell trained twice"
        assert len(session.scalars(select(TabularResult)).all()) == 6
    # running it again once it is complete trains nothing and adds nothing
    again = build_table(config, store, executor=InlineExecutor(), poll_s=0.02)
    assert again.trained == final.trained
    with pytest.raises(TabularTableError, match="was started with epochs 1 \\(asked: 2\\)"):
        build_table(BuildConfig(name="resumed", epochs=2, max_cells=6), store, executor=InlineExecutor())
    store.dispose()


# ---- the command ------------------------------------------------------------------------------
def cellar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cellar")), *args], capture_output=True, text=True, timeout=300
    )


def test_the_table_commands_import_list_and_export(tmp_path: Path) -> None:
    source = tmp_path / "toy.jsonl.xz"
    write_table(source, ALL_CELLS[:30])
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    done = cellar("table", "import", str(source), "--database", database)
    assert done.returncode == 1 and f"no store at {tmp_path / 'cli.db'}" in done.stderr
    store = Store(database)
    store.engine.connect().close()
    done = cellar("table", "import", str(source), "--database", database)
    assert done.returncode == 1 and "run `cellar migrate`" in done.stderr, "an unmigrated store is refused"
    upgrade(store)
    store.dispose()
    done = cellar("table", "import", str(source), "--database", database)
    assert done.returncode == 0, done.stderr
    assert "table toy: 30 cells in toy.jsonl.xz, 30 added, 0 already stored" in done.stdout
    done = cellar("table", "list", "--database", database, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)[0]["cells"] == 30
    out = tmp_path / "out" / "toy.jsonl.xz"
    done = cellar("table", "export", "toy", "--database", database, "--out", str(out))
    assert done.returncode == 0 and "30 cells written" in done.stdout, done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lzma.open(out, "rt").readline() + '{"arch": 1}\n')
    done = cellar("table", "import", str(bad), "--database", database)
    assert done.returncode == 1 and "bad.jsonl: line 2: arch: Input should be a valid string" in done.stderr
