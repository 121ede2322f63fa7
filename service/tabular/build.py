"""Building a results table: train every cell of a space once, through the normal job path.

A results table holds the per-epoch results of an exhaustively trained search space, so that a
search can look its trials up instead of training them (``workers.tabular_executor``), as
NAS-Bench-201's benchmark protocol does.

Building goes through the normal path: a job with the ``grid`` sampler in a store, run by an
in-process ``JobManager`` on Ray until it ends. The manager trains one cell per isomorphism class
and records the others as duplicates. Whatever the grid job left uncovered (a stopped build's
retries take grid numbers, a worker crash fails a trial, a ``--max-cells`` limit was raised)
is trained by "fill" jobs that enqueue one cell per missing class. When every class is covered
the table is written into ``cellar_tabular_results``: one row per cell, isomorphic cells carrying
their trained twin's curve and test metric (``original``) and their own parameter count and FLOPs.

A build is resumable: stop it (Ctrl-C, SIGTERM, or a kill) and run it again; the manager runs the
trials that were interrupted again and goes on.
"""

from __future__ import annotations

import itertools
import math
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from search_spaces import SearchSpace, get_search_space
from search_spaces.datasets import get_dataset

from .. import __version__
from ..errors import TabularTableError
from ..jobs.identity import dedup_hash
from ..store import Job, JobStatus, Store, TabularTable, Trial, TrialState, tables, upgrade
from ..store.queries import create_job
from .load import merge_rows, round_decimals, round_significant

__all__ = [
    "JOB_PREFIX",
    "MAX_FILL_ROUNDS",
    "BuildConfig",
    "BuildProgress",
    "build_progress",
    "build_table",
    "default_build_url",
    "install_sigterm_as_interrupt",
    "materialize",
]

#: build jobs are named ``table:<name>`` (the grid) and ``table:<name>:fill<k>``
JOB_PREFIX = "table:"
#: fill jobs a build runs at most before it gives up on classes that keep failing
MAX_FILL_ROUNDS = 3


def default_build_url(name: str) -> str:
    """Where ``cellar table build NAME`` keeps its store unless ``--database`` says otherwise."""
    return f"sqlite:///{Path('.cellar') / 'tables' / f'{name}.db'}"


# ---- building ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildConfig:
    """What a table is: a space at fixed parameters, trained on one dataset under one protocol."""

    name: str
    search_space: str = "nb201"
    space_params: Mapping[str, Any] = field(default_factory=lambda: {"channels": 4, "cells_per_stage": 1})
    dataset: str = "digits"
    epochs: int = 3
    seed: int = 0
    parallelism: int = 2
    #: train only the first cells of the grid's (seeded) order; None: all of them
    max_cells: int | None = None

    def job_body(self, *, fill: list[str] | None = None, round_: int = 0) -> dict[str, Any]:
        """The job that trains the grid, or (``fill``) exactly the given cells."""
        if fill is None:
            name, strategy = f"{JOB_PREFIX}{self.name}", {"sampler": "grid", "seed": self.seed}
            budget: dict[str, Any] = {"max_trials": self.max_cells}
        else:
            name = f"{JOB_PREFIX}{self.name}:fill{round_}"
            strategy = {"sampler": "random", "seed": self.seed, "initial_architectures": fill}
            budget = {"max_trials": len(fill)}
        if budget["max_trials"] is None:
            budget["max_trials"] = math.prod(len(v) for v in self.space().grid().values())  # type: ignore[union-attr]
        budget.update(epochs=self.epochs, parallelism=self.parallelism)
        return {
            "name": name,
            "search_space": {"kind": self.search_space, "params": dict(self.space_params)},
            "dataset": self.dataset,
            "strategy": strategy,
            "budget": budget,
        }

    def space(self) -> SearchSpace:
        info = get_dataset(self.dataset).info
        space = get_search_space(self.search_space, dict(self.space_params), task=info.task)
        if space.grid() is None:
            raise TabularTableError(f"search space {self.search_space!r} has no grid to train exhaustively")
        return space


@dataclass(frozen=True)
class BuildProgress:
    #: isomorphism classes of the target cells, and those with a trained result
    classes: int
    covered: int
    #: trials the build jobs trained (complete, not duplicates), failed, and still running
    trained: int
    failed: int
    running: int
    #: duplicates the manager recorded without training
    duplicates: int


@dataclass
class _Target:
    """The cells a build must cover, their classes, and one representative per class.

    Classes are the current ``dedup_hash`` of each encoding, computed here rather than read from
    the store: a store written by an older Cellar may hold hashes of another form."""

    space: SearchSpace
    in_shape: list[int]
    out_shape: list[int]
    cells: list[str]
    dedup: dict[str, str]  # encoding -> dedup hash
    representative: dict[str, str]  # dedup hash -> first cell of the class

    def class_of(self, encoding: str) -> str:
        found = self.dedup.get(encoding)
        if found is None:
            found = self.dedup[encoding] = dedup_hash(self.space, encoding, self.in_shape, self.out_shape)
        return found


_TARGETS: dict[tuple[Any, ...], _Target] = {}


def _target(config: BuildConfig) -> _Target:
    space = config.space()
    key = (space.kind, space.params_key(), config.dataset, config.seed, config.max_cells)
    if key in _TARGETS:
        return _TARGETS[key]
    grid = space.grid()
    assert grid is not None
    if config.max_cells is None:
        names = list(grid)
        cells = [space.decode_params(dict(zip(names, values))) for values in itertools.product(*grid.values())]
    else:
        cells = _grid_order(space, grid, config.seed, config.max_cells)
    info = get_dataset(config.dataset).info
    target = _Target(space, [1, *info.in_shape], list(info.out_shape), cells, {}, {})
    for cell in cells:
        target.representative.setdefault(target.class_of(cell), cell)
    _TARGETS[key] = target
    return target


def _grid_order(space: SearchSpace, grid: dict[str, list[Any]], seed: int, count: int) -> list[str]:
    """The first ``count`` cells in the order the job's grid sampler proposes them (seeded)."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=seed))
    return [space.sample(study.ask()) for _ in range(count)]


def _build_jobs(session: Session, name: str) -> list[Job]:
    return tables.build_jobs(session, f"{JOB_PREFIX}{name}")


def _covered(target: _Target, session: Session, job_ids: list[int]) -> set[str]:
    """The classes of the target with a trained result."""
    return {target.class_of(encoding) for encoding in tables.trained_encodings(session, job_ids)} & set(target.representative)


def build_progress(store: Store, config: BuildConfig) -> BuildProgress:
    target = _target(config)
    with store.read() as session:
        job_ids = [job.job_id for job in _build_jobs(session, config.name)]
        covered = _covered(target, session, job_ids)
        counts = tables.build_counts(session, job_ids)
    return BuildProgress(
        classes=len(target.representative),
        covered=len(covered),
        trained=counts.get((TrialState.COMPLETE, False), 0),
        failed=counts.get((TrialState.FAILED, False), 0),
        running=counts.get((TrialState.RUNNING, False), 0),
        duplicates=counts.get((TrialState.COMPLETE, True), 0),
    )


def _check_job(job: Job, config: BuildConfig) -> None:
    spec = job.spec
    kind = spec["search_space"]["kind"]
    found = {
        "search_space": kind,
        # through this Cellar's parameter model: a job stored before a parameter existed has its default
        "space_params": get_search_space(kind, spec["search_space"]["params"]).params_dict(),
        "dataset": spec["dataset"],
        "epochs": spec["budget"]["epochs"],
        "seed": spec["strategy"]["seed"],
    }
    wanted = {
        "search_space": config.search_space,
        "space_params": config.space().params_dict(),
        "dataset": config.dataset,
        "epochs": config.epochs,
        "seed": config.seed,
    }
    differ = [f"{k} {found[k]!r} (asked: {wanted[k]!r})" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise TabularTableError(
            f"table {config.name!r} in this store was started with {', '.join(differ)}; build it with the "
            "same options to resume it, or choose another name or --database"
        )


def _submit(store: Store, body: dict[str, Any]) -> int:
    from ..jobs.spec import JobCreate

    spec = JobCreate.model_validate(body)
    info = get_dataset(spec.dataset).info
    with store.write() as session:
        return create_job(
            session,
            name=body["name"],
            search_space=spec.search_space.kind,
            dataset=spec.dataset,
            task=info.task,
            metric=info.metric,
            spec=spec.model_dump(mode="json"),
        ).job_id


def build_table(
    config: BuildConfig,
    store: Store,
    *,
    executor: Any = None,
    on_progress: Callable[[BuildProgress], None] | None = None,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
) -> BuildProgress:
    """Train the table's cells (creating or resuming its jobs) and write it into the store.

    ``executor`` defaults to a local Ray with ``parallelism`` CPUs. Returns the final progress; if
    ``stop`` is set, returns early leaving the jobs resumable (nothing is written as a table).
    """
    from ..jobs import JobManager
    from ..settings import Settings, get_settings

    upgrade(store)
    target = _target(config)
    with store.read() as session:
        jobs = _build_jobs(session, config.name)
    for job in jobs:
        _check_job(job, config)
    if not jobs:
        _submit(store, config.job_body())
    if executor is None:
        from workers.ray_executor import RayExecutor

        executor = RayExecutor(None, num_cpus=config.parallelism, object_store_mb=256)
    settings = Settings(
        database_url=store.url.render_as_string(hide_password=False),
        api_key="unused",
        poll_interval_s=0.05,
        data_dir=get_settings().data_dir,
    )
    manager = JobManager(store, executor, settings, max_running_jobs=1)
    stop = stop or threading.Event()
    manager.start()
    try:
        rounds = sum(1 for job in jobs if ":fill" in job.name)
        while not stop.is_set():
            progress = build_progress(store, config)
            if on_progress is not None:
                on_progress(progress)
            with store.read() as session:
                active = [job for job in _build_jobs(session, config.name) if job.status in JobStatus.ACTIVE]
            if active:
                stop.wait(poll_s)
                continue
            with store.read() as session:
                covered = _covered(target, session, [job.job_id for job in _build_jobs(session, config.name)])
            missing = [cell for dedup, cell in target.representative.items() if dedup not in covered]
            if not missing or rounds >= MAX_FILL_ROUNDS:
                break
            rounds += 1
            _submit(store, config.job_body(fill=missing, round_=rounds))
            manager.wake()
    finally:
        manager.stop()
    progress = build_progress(store, config)
    if on_progress is not None:
        on_progress(progress)
    if not stop.is_set():
        materialize(store, config)
    return progress


def _curve(trial: Trial) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e.epoch,
            "loss": round_significant(e.loss),
            "val_loss": round_significant(e.val_loss),
            "val_metric": round_decimals(e.val_metric, 6),
            "elapsed_seconds": round_decimals(e.elapsed_seconds, 4),
        }
        for e in trial.epoch_rows
    ]


def _cost_key(space: SearchSpace, encoding: str) -> str:
    """Architectures with equal keys have equal parameter counts and FLOPs. For NB-201 cells,
    the numbers of 3x3 and 1x1 convolutions (pooling, skip and zero ops have no weights and
    no FLOPs as PyTorch counts them); elsewhere the architecture itself."""
    if space.kind == "nb201":
        from search_spaces.nb201.genotype import Cell

        ops = Cell.from_string(encoding).ops
        return f"conv3x3={ops.count('nor_conv_3x3')},conv1x1={ops.count('nor_conv_1x1')}"
    return encoding


def materialize(store: Store, config: BuildConfig) -> int:
    """Write the build's results as table ``config.name``; returns the rows written (new ones)."""
    space = config.space()
    target = _target(config)
    info = get_dataset(config.dataset).info
    with store.read() as session:
        jobs = _build_jobs(session, config.name)
        trained = tables.trained_trials(session, [job.job_id for job in jobs])
    if not trained:
        raise TabularTableError(f"table {config.name!r}: no cell was trained in {store.display_url}")
    original: dict[str, Trial] = {}
    costs: dict[str, tuple[int, int | None]] = {}
    for trial in trained:
        arch = trial.architecture
        assert arch is not None and arch.num_params is not None
        original.setdefault(target.class_of(arch.encoding), trial)
        key = _cost_key(space, arch.encoding)
        if costs.setdefault(key, (arch.num_params, arch.flops)) != (arch.num_params, arch.flops):
            raise TabularTableError(  # the cost key's premise is broken: say so rather than guess
                f"{arch.encoding} has {arch.num_params} parameters and {arch.flops} FLOPs, another cell with "
                f"{key} has {costs[key]}"
            )
    first = trained[0]
    prm = {k: v for k, v in first.prm.items()}
    header = TabularTable(
        name=config.name,
        search_space=space.kind,
        space_params=space.params_dict(),
        dataset=config.dataset,
        metric=info.metric,
        epochs=config.epochs,
        seed=first.seed,
        training={"prm": prm, "split": first.split, "split_fractions": jobs[0].spec["training"]["split"]},
        cellar_version=__version__,
        origin=f"build: jobs {', '.join(str(job.job_id) for job in jobs)} of {store.display_url}",
    )
    rows = []
    missing = []
    for cell in target.cells:
        dedup = target.dedup[cell]
        trial = original.get(dedup)
        if trial is None:
            missing.append(cell)
            continue
        key = _cost_key(space, cell)
        if key not in costs:
            costs[key] = _measure(space, cell, config.dataset)
        params, flops = costs[key]
        rows.append(
            {
                "arch": cell,
                "dedup_hash": dedup,
                "original": trial.architecture.encoding,  # type: ignore[union-attr]
                "params": params,
                "flops": flops,
                "latency_ms": round_decimals(trial.latency_ms, 4),
                "curve": _curve(trial),
                "test_metric": round_decimals(trial.test_metric, 6),
                "train_seconds": round_decimals(trial.train_seconds, 4),
            }
        )
    if missing:
        raise TabularTableError(
            f"table {config.name!r}: {len(missing)} cell(s) have no trained result (e.g. {missing[0]}); "
            "their trials failed: see `cellar trials` on the build store, then run the build again"
        )
    return merge_rows(store, header, rows)


def _measure(space: SearchSpace, encoding: str, dataset: str) -> tuple[int, int | None]:
    from workers.inspect import describe_architecture

    described = describe_architecture(space.kind, encoding, space.params_dict(), dataset=dataset)
    return int(described["params"]), described.get("flops")


def install_sigterm_as_interrupt() -> None:
    """SIGTERM stops a build as Ctrl-C does (its jobs stay resumable)."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
