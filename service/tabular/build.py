"""Results tables: build one by training every cell of a space, export it, import it, load it.

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

Exported tables are JSON lines compressed with xz: a header record, then one record per cell.
Floats are rounded (6 significant digits for losses, 6 decimals for metrics, 0.1 ms for times) in
the store as in the file, so a table survives export and import unchanged.
"""

from __future__ import annotations

import gzip
import itertools
import json
import lzma
import math
import signal
import statistics
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from search_spaces import SearchSpace, SearchSpaceError, get_search_space
from search_spaces.datasets import get_dataset
from workers.tabular_executor import CellResult, EpochResult, ResultsTable

from . import __version__
from .errors import CellarError
from .identity import dedup_hash
from .store import Job, JobStatus, Store, TabularResult, TabularTable, Trial, TrialState, upgrade
from .store.queries import create_job

__all__ = [
    "FORMAT",
    "BuildConfig",
    "BuildProgress",
    "TabularTableError",
    "build_progress",
    "build_table",
    "default_build_url",
    "export_table",
    "import_table",
    "install_sigterm_as_interrupt",
    "list_tables",
    "load_table",
    "materialize",
]

#: the ``format`` of an exported table's header record
FORMAT = "cellar-results-table"
FORMAT_VERSION = 1
#: build jobs are named ``table:<name>`` (the grid) and ``table:<name>:fill<k>``
JOB_PREFIX = "table:"
#: fill jobs a build runs at most before it gives up on classes that keep failing
MAX_FILL_ROUNDS = 3


class TabularTableError(CellarError):
    """A results table cannot be built, exported, imported or loaded; the message says why."""


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
    grid_name = f"{JOB_PREFIX}{name}"
    jobs = session.scalars(
        select(Job).where((Job.name == grid_name) | Job.name.like(f"{grid_name}:fill%")).order_by(Job.job_id)
    ).all()
    return list(jobs)


def _trained_trials(session: Session, job_ids: list[int]) -> list[Trial]:
    """Trials of the build that trained (complete, not a duplicate), oldest first."""
    if not job_ids:
        return []
    return list(
        session.scalars(
            select(Trial)
            .where(
                Trial.job_id.in_(job_ids),
                Trial.state == TrialState.COMPLETE,
                Trial.duplicate_of_trial_id.is_(None),
            )
            .options(selectinload(Trial.architecture), selectinload(Trial.epoch_rows))
            .order_by(Trial.job_id, Trial.number)
        ).all()
    )


def _trained_encodings(session: Session, job_ids: list[int]) -> list[str]:
    from .store import Architecture

    if not job_ids:
        return []
    return list(
        session.scalars(
            select(Architecture.encoding)
            .join(Trial, Trial.architecture_id == Architecture.architecture_id)
            .where(
                Trial.job_id.in_(job_ids),
                Trial.state == TrialState.COMPLETE,
                Trial.duplicate_of_trial_id.is_(None),
            )
        ).all()
    )


def _covered(target: _Target, session: Session, job_ids: list[int]) -> set[str]:
    """The classes of the target with a trained result."""
    return {target.class_of(encoding) for encoding in _trained_encodings(session, job_ids)} & set(target.representative)


def build_progress(store: Store, config: BuildConfig) -> BuildProgress:
    target = _target(config)
    with store.read() as session:
        job_ids = [job.job_id for job in _build_jobs(session, config.name)]
        covered = _covered(target, session, job_ids)
        counts: dict[tuple[str, bool], int] = {}
        if job_ids:
            rows = session.execute(
                select(Trial.state, Trial.duplicate_of_trial_id.is_not(None), func.count())
                .where(Trial.job_id.in_(job_ids))
                .group_by(Trial.state, Trial.duplicate_of_trial_id.is_not(None))
            ).all()
            counts = {(state, bool(dup)): n for state, dup, n in rows}
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
    from .schemas import JobCreate

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
    from .manager import JobManager
    from .settings import Settings, get_settings

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


# ---- the table in the store -------------------------------------------------------------------
def _sig(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def _dec(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _curve(trial: Trial) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e.epoch,
            "loss": _sig(e.loss),
            "val_loss": _sig(e.val_loss),
            "val_metric": _dec(e.val_metric, 6),
            "elapsed_seconds": _dec(e.elapsed_seconds, 4),
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
        trained = _trained_trials(session, [job.job_id for job in jobs])
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
                "latency_ms": _dec(trial.latency_ms, 4),
                "curve": _curve(trial),
                "test_metric": _dec(trial.test_metric, 6),
                "train_seconds": _dec(trial.train_seconds, 4),
            }
        )
    if missing:
        raise TabularTableError(
            f"table {config.name!r}: {len(missing)} cell(s) have no trained result (e.g. {missing[0]}); "
            "their trials failed: see `cellar trials` on the build store, then run the build again"
        )
    return _merge(store, header, rows)


def _measure(space: SearchSpace, encoding: str, dataset: str) -> tuple[int, int | None]:
    from workers.inspect import describe_architecture

    described = describe_architecture(space.kind, encoding, space.params_dict(), dataset=dataset)
    return int(described["params"]), described.get("flops")


_HEADER_FIELDS = ("search_space", "space_params", "dataset", "metric", "epochs", "seed", "training")
#: derived from ``arch`` by this Cellar's identity hash, whose form may change between versions:
#: not a result, so a row that differs only there is the same row
_DERIVED = frozenset({"dedup_hash"})


def _header_value(table: TabularTable, name: str) -> Any:
    value = getattr(table, name)
    if name == "space_params":  # through this Cellar's parameter model, defaults filled in
        try:
            return get_search_space(table.search_space, value).params_dict()
        except (SearchSpaceError, ValidationError):
            return value
    return value


def _merge(store: Store, header: TabularTable, rows: list[dict[str, Any]]) -> int:
    """Add a table's rows to the store: new rows are inserted, identical ones skipped; a row or a
    header that differs from what is stored is an error and nothing is written."""
    with store.write() as session:
        stored = session.get(TabularTable, header.name)
        if stored is None:
            session.add(header)
            session.flush()
            existing: dict[str, TabularResult] = {}
        else:
            differ = [f for f in _HEADER_FIELDS if _header_value(stored, f) != _header_value(header, f)]
            if differ:
                raise TabularTableError(
                    f"table {header.name!r} is already in {store.display_url} with a different "
                    f"{', '.join(differ)} (stored {', '.join(f'{f}={getattr(stored, f)!r}' for f in differ)}); "
                    "import it under another name (--name)"
                )
            existing = {
                r.arch: r for r in session.scalars(select(TabularResult).where(TabularResult.table_name == header.name))
            }
        new = []
        for row in rows:
            old = existing.get(row["arch"])
            if old is None:
                new.append(
                    {
                        "table_name": header.name,
                        "search_space": header.search_space,
                        "space_params": header.space_params,
                        "dataset": header.dataset,
                        "metric": header.metric,
                        **row,
                    }
                )
                continue
            differ = [k for k, v in row.items() if k not in _DERIVED and getattr(old, k) != v]
            if differ:
                raise TabularTableError(
                    f"table {header.name!r}: {row['arch']} is stored with different {', '.join(differ)} "
                    f"(stored {getattr(old, differ[0])!r}, new {row[differ[0]]!r}); nothing was written"
                )
        if new:
            session.execute(TabularResult.__table__.insert(), new)
        return len(new)


def list_tables(store: Store) -> list[dict[str, Any]]:
    """Every table in the store with its size, classes and best and median test metric."""
    with store.read() as session:
        tables = session.scalars(select(TabularTable).order_by(TabularTable.name)).all()
        out = []
        for table in tables:
            results = session.execute(
                select(TabularResult.original, TabularResult.test_metric).where(TabularResult.table_name == table.name)
            ).all()
            metrics = [m for _, m in results]
            out.append(
                {
                    "name": table.name,
                    "search_space": table.search_space,
                    "space_params": table.space_params,
                    "dataset": table.dataset,
                    "metric": table.metric,
                    "epochs": table.epochs,
                    "cells": len(results),
                    "unique": len({d for d, _ in results}),
                    "best_test": max(metrics) if metrics else None,
                    "median_test": statistics.median(metrics) if metrics else None,
                    "origin": table.origin,
                }
            )
        return out


def load_table(store: Store, name: str) -> ResultsTable:
    """Table ``name`` as the tabular executor reads it."""
    with store.read() as session:
        table = session.get(TabularTable, name)
        if table is None:
            known = session.scalars(select(TabularTable.name).order_by(TabularTable.name)).all()
            raise TabularTableError(
                f"no results table {name!r} in {store.display_url}"
                + (f"; it has: {', '.join(known)}" if known else "; import one with `cellar table import FILE`")
            )
        rows = session.execute(
            select(
                TabularResult.arch,
                TabularResult.params,
                TabularResult.flops,
                TabularResult.latency_ms,
                TabularResult.curve,
                TabularResult.test_metric,
                TabularResult.train_seconds,
                TabularResult.original,
            ).where(TabularResult.table_name == name)
        ).all()
    results = {
        arch: CellResult(
            params=params,
            flops=flops,
            latency_ms=latency,
            epochs=tuple(EpochResult(**e) for e in curve),
            test_metric=test,
            train_seconds=seconds,
            original=original,
        )
        for arch, params, flops, latency, curve, test, seconds, original in rows
    }
    return ResultsTable(
        name=table.name,
        search_space=table.search_space,
        space_params=dict(table.space_params),
        dataset=table.dataset,
        metric=table.metric,
        epochs=table.epochs,
        seed=table.seed,
        prm=dict(table.training.get("prm", {})),
        split=table.training.get("split"),
        results=results,
    )


# ---- files ------------------------------------------------------------------------------------
class _Header(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str
    format_version: int
    name: str = Field(min_length=1, max_length=200)
    search_space: str
    space_params: dict[str, Any]
    dataset: str
    metric: str
    epochs: int = Field(ge=1)
    seed: int
    training: dict[str, Any]
    cellar_version: str
    cells: int = Field(ge=0)


class _Epoch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=1)
    loss: float | None
    val_loss: float | None
    val_metric: float | None
    elapsed_seconds: float = Field(ge=0)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str
    dedup_hash: str = Field(min_length=1, max_length=64)
    original: str
    params: int = Field(ge=0)
    flops: int | None = Field(ge=0)
    latency_ms: float | None
    curve: list[_Epoch] = Field(min_length=1)
    test_metric: float
    train_seconds: float = Field(ge=0)


def _create(path: Path, compression: str) -> Any:
    if compression == ".xz":
        return lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME)
    if compression == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=9)
    return path.open("w", encoding="utf-8")


def _open(path: Path) -> Any:
    """xz, gzip or plain text, by the file's first bytes."""
    with path.open("rb") as raw:
        magic = raw.read(6)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rt", encoding="utf-8")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def export_table(store: Store, name: str, out: Path) -> int:
    """Write table ``name`` to ``out`` (``.jsonl.xz``, ``.jsonl.gz`` or ``.jsonl``); returns the cells written."""
    with store.read() as session:
        table = session.get(TabularTable, name)
        if table is None:
            raise TabularTableError(f"no results table {name!r} in {store.display_url}; build or import it first")
        # sorted here, not by the database, whose collation may differ: the same table, the same file
        rows = sorted(
            session.scalars(select(TabularResult).where(TabularResult.table_name == name)).all(), key=lambda r: r.arch
        )
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": table.name,
        "search_space": table.search_space,
        "space_params": table.space_params,
        "dataset": table.dataset,
        "metric": table.metric,
        "epochs": table.epochs,
        "seed": table.seed,
        "training": table.training,
        "cellar_version": table.cellar_version,
        "exported_by": __version__,
        "cells": len(rows),
        "unique": len({r.original for r in rows}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")  # compressed by out's suffix; renamed once complete
    with _create(tmp, out.suffix) as handle:
        handle.write(json.dumps(header, sort_keys=True) + "\n")
        for r in rows:
            record = {
                "arch": r.arch,
                "dedup_hash": r.dedup_hash,
                "original": r.original,
                "params": r.params,
                "flops": r.flops,
                "latency_ms": r.latency_ms,
                "curve": r.curve,
                "test_metric": r.test_metric,
                "train_seconds": r.train_seconds,
            }
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    tmp.replace(out)
    return len(rows)


def _problem(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in error.errors(include_url=False)
    )


def _read(path: Path) -> tuple[_Header, list[dict[str, Any]]]:
    try:
        handle = _open(path)
    except OSError as error:
        raise TabularTableError(f"{path}: cannot read it: {error}") from None
    header: _Header | None = None
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    space: SearchSpace | None = None
    try:
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}: line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TabularTableError(f"{where}: not JSON ({error})") from None
                if not isinstance(record, dict):
                    raise TabularTableError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
                if header is None:
                    if record.get("format") != FORMAT:
                        raise TabularTableError(
                            f'{where}: the first record must be the header with "format": "{FORMAT}" '
                            "(is this a file written by `cellar table export`?)"
                        )
                    try:
                        header = _Header.model_validate(record)
                    except ValidationError as error:
                        raise TabularTableError(f"{where}: header: {_problem(error)}") from None
                    if header.format_version > FORMAT_VERSION:
                        raise TabularTableError(
                            f"{where}: format_version {header.format_version} is newer than this Cellar "
                            f"reads ({FORMAT_VERSION}); upgrade Cellar"
                        )
                    try:
                        space = get_search_space(header.search_space, header.space_params)
                    except (SearchSpaceError, ValidationError) as error:
                        raise TabularTableError(f"{where}: header: {error}") from None
                    continue
                try:
                    row = _Row.model_validate(record)
                except ValidationError as error:
                    raise TabularTableError(f"{where}: {_problem(error)}") from None
                assert space is not None
                try:
                    canonical = space.canonical(row.arch)
                    space.canonical(row.original)
                except SearchSpaceError as error:
                    raise TabularTableError(f"{where}: arch: {error}") from None
                if canonical != row.arch:
                    raise TabularTableError(f"{where}: arch {row.arch!r} is not canonical ({canonical!r})")
                if row.arch in seen:
                    raise TabularTableError(f"{where}: arch {row.arch} appears twice")
                if len(row.curve) != header.epochs or [e.epoch for e in row.curve] != list(range(1, header.epochs + 1)):
                    raise TabularTableError(
                        f"{where}: curve: expected epochs 1..{header.epochs}, got {[e.epoch for e in row.curve]}"
                    )
                seen.add(row.arch)
                rows.append(row.model_dump())
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, UnicodeDecodeError, OSError) as error:
        raise TabularTableError(f"{path}: the file is damaged or truncated: {error}") from None
    if header is None:
        raise TabularTableError(f"{path}: the file is empty (no header record)")
    if header.cells != len(rows):
        raise TabularTableError(
            f"{path}: the header announces {header.cells} cells but the file holds {len(rows)} (truncated?)"
        )
    return header, rows


def import_table(store: Store, path: Path, *, name: str | None = None) -> tuple[str, int, int]:
    """Load an exported table into the store (idempotent); returns (name, cells in file, rows added).

    Rows already stored stay as they are: identical ones are skipped, a differing one is an error
    and nothing is written."""
    header, rows = _read(path)
    table = TabularTable(
        name=name or header.name,
        search_space=header.search_space,
        space_params=header.space_params,
        dataset=header.dataset,
        metric=header.metric,
        epochs=header.epochs,
        seed=header.seed,
        training=header.training,
        cellar_version=header.cellar_version,
        origin=f"import: {path.name}",
    )
    added = _merge(store, table, rows)
    return table.name, len(rows), added


def install_sigterm_as_interrupt() -> None:
    """SIGTERM stops a build as Ctrl-C does (its jobs stay resumable)."""

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
