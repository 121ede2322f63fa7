"""Simulated jobs in memory: a search on a results table run without the store, written once.

The job manager runs a job on the ``TabularExecutor`` as it runs any job: every ask, report and
end is a store transaction, which a real training needs (a crash loses nothing) and a simulation
does not (it takes microseconds to run again). That bookkeeping held simulated searches to about
30 trials a second. ``simulate_job`` runs the same search in memory, with the runner's own parts
(the job's Optuna study and ``AskTellGate``, the search space, the identity hashes, the
``Objectives``, the table's executor and its clock) in the runner's order, and writes the job's
trials, epochs and architectures in one transaction at the end: the same rows the manager would
have written (``tests/service/tabular/test_simulate.py`` compares the two paths row by row).

What it does not do, because a fresh simulated job never needs it: resume (a job interrupted
mid-simulation is simply run again; nothing was written), retries of lost workers (a table loses
none), the cross-job result cache (simulated results never enter it) and ``epoch_timeout_s`` (a
table lookup takes no wall time). A job with a ``cancel`` request before it starts ends cancelled.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState as OptunaState

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.errors import DatasetUnavailableError
from search_spaces.metrics import METRICS
from search_spaces.transforms import parse_transform
from workers.executor import ExecutorEvent, TrialResources
from workers.protocol import TrialPayload
from workers.tabular_executor import ResultsTable, TabularExecutor

from ..jobs.gate import AskTellGate
from ..jobs.identity import arch_hash, dedup_hash
from ..jobs.objectives import Objectives, build_study
from ..jobs.reports import ORIGIN, error_signature, fail_fast_error
from ..jobs.runner import job_payload
from ..jobs.screen import draw, rank
from ..jobs.spec import JobCreate
from ..jobs.strategies import CURVE_ATTR, STATIC_ATTR
from ..store import Job, JobStatus, Store, TrialState, leases, simulated
from ..store.queries import metric_source_id, transform_source_id

__all__ = ["Simulation", "Stopped", "simulate_job", "write_simulation"]

log = logging.getLogger(__name__)

#: as the runner: asks per round, so that a space yielding only duplicates still reaches its limits
_MAX_ASKS_PER_ROUND = 256


class Stopped(Exception):
    """The simulation was abandoned (its server stops); nothing is written."""


def _dataset_info(name: str, data_dir: Path | None) -> Any:
    """The dataset as its files describe it; without them its static facts (a simulation trains
    nothing, so it needs no files)."""
    dataset = get_dataset(name)
    try:
        return dataset.describe(data_dir)
    except DatasetUnavailableError:
        return dataset.info


@dataclass
class SimTrial:
    """One trial of a simulated job, as its row will be written."""

    number: int
    encoding: str
    arch_hash: str
    dedup: str
    params: dict[str, Any]
    distributions: dict[str, Any]
    prm: dict[str, Any]
    origin: str
    started_at: datetime
    sampler_attrs: dict[str, Any] | None
    optuna_trial: optuna.Trial = field(repr=False)
    state: str = TrialState.RUNNING
    values: list[float] | None = None
    val_metric: float | None = None
    test_metric: float | None = None
    loss: float | None = None
    train_seconds: float | None = None
    latency_ms: float | None = None
    split: dict[str, Any] | None = None
    worker: str | None = None
    error: str | None = None
    finished_at: datetime | None = None
    duplicate_of: int | None = None  # the original's number
    setup: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    curve: dict[str, float] = field(default_factory=dict)


class Simulation:
    """One job's search on ``table``, in memory, as the job runner would run it."""

    def __init__(self, spec: JobCreate, table: ResultsTable, *, job_id: int = 0, data_dir: Path | None = None) -> None:
        self.spec = spec
        self.job_id = job_id
        self.executor = TabularExecutor(table)
        self.info = _dataset_info(spec.dataset, data_dir)
        self.space = get_search_space(spec.search_space.kind, spec.search_space.params, task=self.info.task)
        #: what every trial's payload shares (``_payload`` fills in the trial's own fields)
        self.template = job_payload(job_id, spec, None, self.space.kind)
        self.in_shape = [1, *parse_transform(spec.transform).out_shape(self.info.in_shape)]
        self.out_shape = list(self.info.out_shape)
        self.objectives = Objectives(spec, f"val_{METRICS[self.info.metric][0]}")
        self.study = build_study(job_id, spec, self.space)
        self.gate = AskTellGate(
            self.study, parallelism=spec.budget.parallelism, reproducible=spec.strategy.reproducible, seed=spec.strategy.seed
        )
        grid = self.space.grid() if spec.strategy.sampler == "grid" else None
        self.grid_size = math.prod(len(values) for values in grid.values()) if grid is not None else None
        self.trials: list[SimTrial] = []
        self.running: dict[int, SimTrial] = {}  # by number (the executor's trial id here)
        self.complete_by_dedup: dict[str, int] = {}  # dedup hash -> the lowest complete number
        #: first setup report per concrete network: its parameters and FLOPs, as the architecture row
        self.measured: dict[str, tuple[int | None, int | None]] = {}
        self.study_attrs: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.fatal_error: str | None = None
        self.status: str | None = None
        self.job_error: str | None = None
        self.started_at = self.executor.now()
        self.finished_at: datetime | None = None
        self._settled = False
        self._failures: list[str] = []
        self._arch_cache: dict[str, tuple[str, str]] = {}  # encoding -> (arch hash, dedup hash)
        self._json_cache: dict[Any, str] = {}

    # ---- the loop: the manager's tick, for one job -------------------------------------------
    def run(
        self, *, cancelled: bool = False, stop: threading.Event | None = None, abandon: threading.Event | None = None
    ) -> str:
        """Run the search to its end; returns the job's status. ``stop`` set: the job ends
        cancelled where it is; ``abandon`` set: raises ``Stopped``."""
        for encoding in self.spec.strategy.initial_architectures:
            self.study.enqueue_trial(self.space.encode_params(encoding), user_attrs={ORIGIN: "initial"})
        for encoding in self.screened():
            self.study.enqueue_trial(self.space.encode_params(encoding), user_attrs={ORIGIN: "screened"})
        resources = self.spec.resources
        self.executor.open_job(self.job_id, self.spec.budget.parallelism,
                               TrialResources(cpus=resources.cpus_per_trial, gpus=resources.gpus_per_trial))  # fmt: skip
        rounds = 0
        while self.status is None:
            rounds += 1
            if rounds % 64 == 0 and (stop is not None or abandon is not None):
                if abandon is not None and abandon.is_set():
                    raise Stopped
                cancelled = cancelled or (stop is not None and stop.is_set())
            if self.running:
                for event in self.executor.poll(0.0):
                    if event.trial_id in self.running:
                        self._handle(event)
            self._advance(cancelled)
        return self.status

    def screened(self) -> list[str]:
        """``strategy.screen``: the ``keep`` best of ``samples`` random candidates by the table's proxy,
        best first (``service.jobs.screen``: the candidates a job that trains would score)."""
        screen = self.spec.strategy.screen
        if screen is None:
            return []
        encodings = draw(self.space, self.spec.strategy.seed, screen.samples)
        values = []
        for encoding in encodings:
            found = self.executor.lookup(encoding)
            values.append((found.proxies or {}).get(screen.proxy) if found is not None else None)
        return [encoding for encoding, _ in rank(encodings, values, screen.keep)]

    def _advance(self, cancelled: bool) -> None:
        if cancelled and self.stop_reason is None:
            self._stop("cancelled", "the job was cancelled")
        limit = self.spec.budget.time_limit_s
        now = self.executor.now()
        if limit is not None and self.stop_reason is None and now - self.started_at > timedelta(seconds=limit):
            self._stop("time limit", f"stopped: the job's time_limit_s ({limit:g} s) was reached")
        if self.stop_reason is None and self.fatal_error is not None:
            self._stop("failed", self.fatal_error)
        for _ in range(_MAX_ASKS_PER_ROUND):
            if not (self.stop_reason is None and self.executor.free_slots(self.job_id) > 0 and self._may_ask()):
                break
            self._launch()
        if not self.running and (self.stop_reason is not None or self._budget_spent()):
            self._finish()

    def _budget_spent(self) -> bool:
        max_trials = self.spec.budget.max_trials
        if max_trials is not None and self.gate.asked >= max_trials:
            return True
        return self.grid_size is not None and self.gate.asked >= self.grid_size

    def _may_ask(self) -> bool:
        return not self._budget_spent() and self.gate.may_ask(list(self.running))

    # ---- asking ------------------------------------------------------------------------------
    def _hashes(self, encoding: str) -> tuple[str, str]:
        found = self._arch_cache.get(encoding)
        if found is None:
            found = self._arch_cache[encoding] = (
                arch_hash(self.space, encoding, self.in_shape, self.out_shape),
                dedup_hash(self.space, encoding, self.in_shape, self.out_shape),
            )
        return found

    def _distribution_json(self, distribution: Any) -> str:
        found = self._json_cache.get(distribution)
        if found is None:
            found = self._json_cache[distribution] = distribution_to_json(distribution)
        return found

    def _launch(self) -> None:
        trial = self.gate.ask()
        encoding = self.space.sample(trial)
        prm = {**self.spec.prm, **self.space.hyperparameters(encoding)}
        hashed, dedup = self._hashes(encoding)
        now = self.executor.now()
        # the study's own record (``trial.params`` and ``trial.distributions`` are deep copies of it)
        frozen = self.study._storage.get_trial(trial._trial_id)
        row = SimTrial(
            number=trial.number,
            encoding=encoding,
            arch_hash=hashed,
            dedup=dedup,
            params=dict(frozen.params),
            distributions={k: self._distribution_json(v) for k, v in frozen.distributions.items()},
            prm=prm,
            origin=trial.user_attrs.get(ORIGIN, "sampler"),
            started_at=now,
            sampler_attrs=self.gate.sampler_attrs(trial),
            optuna_trial=trial,
        )
        # as ``JobRunner._launch``: the original is looked up before the trial counts as asked
        original = self.complete_by_dedup.get(dedup)
        if original is not None and self.gate.reproducible and not self.gate.sees(original):
            original = None
        self.trials.append(row)
        self.study_attrs = self.gate.study_attrs()
        self.gate.asked_one()
        if original is not None and self._reuse(row, self.trials[original], now):
            self.gate.record(row.number, OptunaState.COMPLETE, row.values)
            return
        self.running[row.number] = row
        self.executor.start_trial(self.job_id, self._payload(row))

    def _reuse(self, row: SimTrial, original: SimTrial, now: datetime) -> bool:
        """Complete ``row`` from a trial of this job computing the same function (``reuse_result``)."""
        last = original.epochs[-1] if original.epochs else None
        params, flops = self.measured.get(original.arch_hash, (None, None))
        values = self.objectives.values(
            val_metric=original.val_metric,
            val_loss=last.get("val_loss") if last is not None else None,
            params=params,
            flops=flops,
            latency_ms=original.latency_ms,
            train_seconds=original.train_seconds,
            **(original.setup.get("proxies") or {}),
        )
        if values is None:
            return False
        row.setup = {"proxies": original.setup.get("proxies")} if original.setup.get("proxies") else {}
        row.state, row.duplicate_of, row.values, row.finished_at = TrialState.COMPLETE, original.number, values, now
        for name in ("val_metric", "test_metric", "loss", "train_seconds", "latency_ms", "split", "worker"):
            setattr(row, name, getattr(original, name))
        return True

    def _payload(self, row: SimTrial) -> TrialPayload:
        return replace(self.template, trial_id=row.number, number=row.number, prm=row.prm, arch=row.encoding)

    # ---- reports: the runner's TrialReports, in memory -----------------------------------------
    @property
    def _pruning(self) -> bool:
        return self.spec.strategy.pruner != "none"

    def _handle(self, event: ExecutorEvent) -> None:
        row = self.running[event.trial_id]
        if event.kind == "setup":
            data = event.data
            row.setup, row.worker, row.split, row.latency_ms = data, data.get("worker"), data.get("split"), data.get("latency_ms")
            self.measured.setdefault(row.arch_hash, (int(data["num_params"]), data.get("flops")))
            if self._pruning and self.objectives.multi:
                static = self.objectives.static(params=data.get("num_params"), flops=data.get("flops"),
                                                latency_ms=data.get("latency_ms"), **(data.get("proxies") or {}))  # fmt: skip
                row.optuna_trial.set_user_attr(STATIC_ATTR, static)
        elif event.kind == "epoch":
            self._on_epoch(row, event.data)
        elif event.kind == "final":
            self._on_final(row, event.data)
        else:
            message = event.error or "Error: the trial failed without a message"
            self._end(row, TrialState.FAILED, f"{message}\n\n{event.traceback}" if event.traceback else message)
            self._note_failure(message)

    def _on_epoch(self, row: SimTrial, data: dict[str, Any]) -> None:
        epoch, epochs = int(data["epoch"]), self.spec.budget.epochs
        keys = ("loss", "val_loss", "val_metric", "train_metric")
        row.epochs = [e for e in row.epochs if e["epoch"] != epoch]
        row.epochs.append({"epoch": epoch, **{k: data.get(k) for k in keys}, "elapsed_seconds": float(data["elapsed_seconds"])})
        row.loss, row.val_metric, row.train_seconds = data.get("loss"), data.get("val_metric"), float(data["elapsed_seconds"])
        if self._pruning:
            value = self.objectives.pruning_value(data)
            if value is not None and self.objectives.multi:
                row.curve[str(epoch)] = value
                row.optuna_trial.set_user_attr(CURVE_ATTR, dict(row.curve))
            elif value is not None:
                row.optuna_trial.report(value, epoch)
            if epoch < epochs and self._should_prune(row):
                self._end(row, TrialState.PRUNED, None)
                self.executor.release(row.number)
                return
        if epoch < epochs:
            self.executor.train_epoch(row.number)
        else:
            self.executor.finish(row.number)

    def _should_prune(self, row: SimTrial) -> bool:
        if not self.objectives.multi:
            return row.optuna_trial.should_prune()
        frozen = self.study.get_trials(deepcopy=False)[row.number]
        return self.study.pruner.prune(self.study, frozen)

    def _on_final(self, row: SimTrial, data: dict[str, Any]) -> None:
        values = self.objectives.final_values(row.epochs[-1] if row.epochs else {}, row.setup, data)
        if values is None:
            raise RuntimeError(f"trial {row.number}: the table did not hold every objective's metric")
        row.sampler_attrs = self.gate.sampler_attrs(row.optuna_trial) or None
        row.state, row.values, row.finished_at = TrialState.COMPLETE, values, self.executor.now()
        row.test_metric, row.train_seconds = data.get("test_metric"), data.get("train_seconds")
        del self.running[row.number]
        self.executor.release(row.number)
        found = self.complete_by_dedup.get(row.dedup)
        if found is None or row.number < found:
            self.complete_by_dedup[row.dedup] = row.number
        self._settled = True
        self.gate.record(row.number, OptunaState.COMPLETE, values)

    def _end(self, row: SimTrial, state: str, error: str | None) -> None:
        if state == TrialState.PRUNED:
            self._settled = True
        row.sampler_attrs = self.gate.sampler_attrs(row.optuna_trial) or None
        row.state, row.error, row.finished_at = state, error, self.executor.now()
        del self.running[row.number]
        self.gate.record(row.number, OptunaState.PRUNED if state == TrialState.PRUNED else OptunaState.FAIL, None)

    def _note_failure(self, error: str) -> None:
        limit = self.spec.budget.fail_fast_after
        if self._settled or limit == 0 or self.fatal_error is not None:
            return
        self._failures.append(error_signature(error))
        self.fatal_error = fail_fast_error(self._failures, limit)

    # ---- the end -----------------------------------------------------------------------------
    def _stop(self, reason: str, message: str) -> None:
        for row in list(self.running.values()):
            self._end(row, TrialState.FAILED, message)
            self.executor.abort(row.number)
        self.stop_reason = reason

    def _finish(self) -> None:
        """``runs.finish_job``'s rules, on the trials in memory."""
        self.gate.tell_all()
        self.finished_at = self.executor.now()
        self.executor.close_job(self.job_id)
        if self.stop_reason == "cancelled":
            self.status = JobStatus.CANCELLED
        elif self.stop_reason == "failed":
            self.status, self.job_error = JobStatus.FAILED, self.fatal_error
        elif not any(t.state == TrialState.COMPLETE for t in self.trials):
            first = next((t.error for t in self.trials if t.error is not None), None)
            self.status = JobStatus.FAILED
            self.job_error = f"no trial completed ({len(self.trials)} ended without a result)" + (
                f"; first error: {first[:2000]}" if first else ""
            )
        else:
            self.status = JobStatus.SUCCEEDED


def simulate_job(store: Store, job_id: int, table: ResultsTable, *, data_dir: Path | None = None) -> str:
    """Run the stored, queued job ``job_id`` on ``table`` in memory and write its trials, epochs and
    end in one transaction; returns the job's status. The job is leased to this process while it
    runs, so that no server starts it too; if the simulation raises, the job is failed with the error.
    """
    owner = f"simulation:{socket.gethostname()[:20]}:{os.getpid()}"
    with store.write() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        spec = JobCreate.model_validate(job.spec)
        cancelled = bool(job.cancel_requested)
        if not leases.claim_job(session, job_id, owner=owner, lease_s=3600.0):
            raise RuntimeError(f"job {job_id} is not queued, or another server holds it")
    try:
        simulation = Simulation(spec, table, job_id=job_id, data_dir=data_dir)
        status = simulation.run(cancelled=cancelled)
        with store.write() as session:
            write_simulation(session, simulation)
    except Exception as error:
        log.exception("simulated job %s failed", job_id)
        with store.write() as session:
            leases.fail_job(session, job_id, f"internal error: {error!r}")
        raise
    return status


def write_simulation(session: Any, sim: Simulation) -> None:
    """The job's rows, as the runner writes them."""
    spec, space = sim.spec, sim.space

    def row_of(trial: SimTrial) -> Callable[[], dict[str, Any]]:
        def make() -> dict[str, Any]:
            params, flops = sim.measured.get(trial.arch_hash, (None, None))
            return {
                "search_space": space.kind, "space_params": space.params_dict(), "encoding": trial.encoding,
                "arch_hash": trial.arch_hash, "dedup_hash": trial.dedup, "in_shape": sim.in_shape,
                "out_shape": sim.out_shape, "num_params": params, "flops": flops,
                "nn_name": space.nn_name(trial.encoding), "nn_code": space.nn_code(trial.encoding),
            }  # fmt: skip

        return make

    archs = simulated.architecture_ids(session, {t.arch_hash: row_of(t) for t in reversed(sim.trials)}, sim.measured)
    metric_id, transform_id = metric_source_id(session, sim.info.metric), transform_source_id(session, spec.transform)
    rows = [
        {
            "number": t.number, "architecture_id": archs[t.arch_hash][0], "state": t.state,
            "params": t.params, "distributions": t.distributions, "prm": t.prm, "seed": spec.training_seed,
            "split": t.split, "epochs": spec.budget.epochs, "values": t.values, "val_metric": t.val_metric,
            "test_metric": t.test_metric, "loss": t.loss, "train_seconds": t.train_seconds,
            "latency_ms": t.latency_ms, "proxies": t.setup.get("proxies"), "cache_hit": False, "origin": t.origin, "requeued": False,
            "interruptions": 0, "sampler_attrs": t.sampler_attrs, "metric_source_id": metric_id,
            "transform_source_id": transform_id, "worker": t.worker, "error": t.error,
            "started_at": t.started_at, "finished_at": t.finished_at,
            "heartbeat_at": t.finished_at or t.started_at,
        }
        for t in sim.trials
    ]  # fmt: skip
    simulated.write_job(
        session,
        sim.job_id,
        trials=rows,
        epochs={t.number: (archs[t.arch_hash][1], t.epochs) for t in sim.trials if t.duplicate_of is None and t.epochs},
        duplicates={t.number: t.duplicate_of for t in sim.trials if t.duplicate_of is not None},
        status=sim.status or JobStatus.FAILED,
        error=sim.job_error,
        started_at=sim.started_at,
        finished_at=sim.finished_at,
        sampler_attrs=sim.study_attrs,
    )
    log.info("simulated job %s %s: %d trials", sim.job_id, sim.status, len(rows))
