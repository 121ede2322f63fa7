"""The job manager: one thread that runs every active job's search.

Each job has a ``JobRunner`` holding its Optuna study (in memory, rebuilt from the store when the
server starts again) and its search space. The runner asks the study for trials, hands them to the
executor, persists every report the moment it arrives and tells the study how trials ended. The
store is the single source of truth and the manager thread is its only writer of trial state;
every handler writes before it changes anything in memory, so a failed write can simply be retried.

Reproducible order (``strategy.reproducible``, the default): trial ``k`` is asked only once trials
``0 .. k-p`` have finished (``p`` = parallelism, so at most ``p`` trials are in flight), and a
finished trial is told to the study only when trial ``number + p`` is asked. So the sampler always
sees exactly trials ``0 .. k-p`` when it proposes trial ``k``, whatever order the workers finish
in: the same job and seed sample the same architectures. Duplicates are judged against the same
trials. Without it, a trial is asked as soon as a slot frees and told as soon as it ends.

Restarts: trials a stopped server left running are marked failed and ``requeued``; their
configurations run again first (``origin = retry``) and only the retries count towards
``max_trials``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState as OptunaState
from sqlalchemy import or_, select, update

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.metrics import METRICS
from search_spaces.transforms import parse_transform
from workers.executor import Executor, ExecutorError, ExecutorEvent, TrialResources
from workers.protocol import TrialPayload

from .errors import StoreUnavailableError
from .identity import arch_hash, dedup_hash
from .schemas import CURVE_OBJECTIVES, JobCreate
from .settings import Settings
from .store import Job, JobStatus, Store, Trial, TrialEpoch, TrialState
from .store.models import utcnow
from .store.queries import get_or_create_architecture, metric_source_id, transform_source_id
from .strategies import CURVE_ATTR, STATIC_ATTR, make_multi_objective_pruner, make_pruner, make_sampler

__all__ = ["JobManager", "JobRunner"]

log = logging.getLogger(__name__)

optuna.logging.set_verbosity(optuna.logging.WARNING)

_MAX_ASKS_PER_TICK = 256
_ORIGIN = "cellar_origin"
_RETRY_OF = "cellar_retry_of"
#: bump when training changes in a way that makes earlier results incomparable (the cache key)
_PROTOCOL_VERSION = 1
_WORKER_LOST = "WorkerLost"


@dataclass
class _Running:
    """A trial whose worker is busy with it."""

    trial_id: int
    number: int
    optuna_trial: optuna.Trial
    call_started: float = field(default_factory=time.monotonic)
    setup: dict[str, Any] = field(default_factory=dict)
    last_epoch: dict[str, Any] = field(default_factory=dict)
    #: the curve objective by epoch (multi-objective pruning reads it from the trial's user attrs)
    curve: dict[str, float] = field(default_factory=dict)


@dataclass
class _Told:
    """How a finished trial ended, waiting to be told to the study (reproducible order)."""

    state: OptunaState
    values: list[float] | None


@dataclass
class _Unsaved:
    """A trial asked from the study whose row is not written yet (the store failed)."""

    trial: optuna.Trial
    encoding: str
    attempted: bool = False


def _make_sampler(spec: JobCreate) -> optuna.samplers.BaseSampler:
    strategy = spec.strategy
    return make_sampler(
        strategy.sampler,
        strategy.sampler_params,
        seed=strategy.seed,
        n_objectives=len(spec.objectives),
        grid=spec.search_space.build().grid() if strategy.sampler == "grid" else None,
    )


def _make_pruner(spec: JobCreate) -> optuna.pruners.BasePruner:
    strategy, budget = spec.strategy, spec.budget
    if len(spec.objectives) == 1:
        return make_pruner(strategy.pruner, strategy.pruner_params, epochs=budget.epochs, parallelism=budget.parallelism)
    return make_multi_objective_pruner(
        strategy.pruner,
        strategy.pruner_params,
        epochs=budget.epochs,
        parallelism=budget.parallelism,
        directions=[o.direction for o in spec.objectives],
        curve_index=_curve_index(spec),
    )


def _curve_index(spec: JobCreate) -> int:
    """Index of the objective with a per-epoch curve (a pruned job has exactly one)."""
    return next((i for i, o in enumerate(spec.objectives) if o.metric in CURVE_OBJECTIVES), 0)


class JobRunner:
    """Drives one job's search. Every method runs on the manager thread."""

    def __init__(self, job_id: int, store: Store, executor: Executor, settings: Settings) -> None:
        self.job_id = job_id
        self.store = store
        self.executor = executor
        self.settings = settings
        with store.read() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise LookupError(f"job {job_id} vanished from the store")
            self.spec = JobCreate.model_validate(job.spec)
            self.started_at: datetime = job.started_at or self.executor.now()
        self.info = get_dataset(self.spec.dataset).describe(settings.data_dir)
        self.space = get_search_space(self.spec.search_space.kind, self.spec.search_space.params, task=self.info.task)
        # the shape the model sees: the dataset's, resized by a sized transform (norm_299, ...)
        self.in_shape = [1, *parse_transform(self.spec.transform).out_shape(self.info.in_shape)]
        self.out_shape = list(self.info.out_shape)
        self.metric_key = f"val_{METRICS[self.info.metric][0]}"
        self.parallelism = self.spec.budget.parallelism
        self.reproducible = self.spec.strategy.reproducible
        self.pruning = self.spec.strategy.pruner != "none"
        #: several objectives: Optuna's report/should_prune refuse, the manager drives the pruner
        self.multi_objective = len(self.spec.objectives) > 1
        self.curve_index = _curve_index(self.spec)
        self.pruner = _make_pruner(self.spec)
        self.study = optuna.create_study(
            study_name=f"cellar-job-{job_id}",
            directions=[o.direction for o in self.spec.objectives],
            sampler=_make_sampler(self.spec),
            pruner=self.pruner,
        )
        grid = self.space.grid() if self.spec.strategy.sampler == "grid" else None
        self.grid_size = math.prod(len(values) for values in grid.values()) if grid is not None else None
        self.slots = 0
        #: trials asked so far, i.e. the next trial's number (``study.trials`` also holds enqueued ones)
        self.asked = 0
        #: trials whose configuration was handed to a retry; they do not count towards max_trials
        self.requeued = 0
        self.running: dict[int, _Running] = {}
        self.untold: dict[int, _Told] = {}  # number -> outcome not yet told to the study
        self.complete_by_dedup: dict[str, tuple[int, int]] = {}  # dedup hash -> (trial_id, number)
        #: trial id -> worker losses in its retry chain (itself included)
        self.losses: dict[int, int] = {}
        self.stop_reason: str | None = None
        self.done = False
        self.metric_source_id: int | None = None
        self.transform_source_id: int | None = None
        self._unsaved: _Unsaved | None = None

    # ---- resources ---------------------------------------------------------------------------
    @property
    def demand(self) -> dict[str, float]:
        """What one slot of this job holds while the job runs."""
        resources = self.spec.resources
        return {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}

    def slots_within(self, free: dict[str, float]) -> int:
        """How many of its ``parallelism`` slots fit in ``free`` resources (0: none)."""
        slots = self.parallelism
        for name, need in self.demand.items():
            if need > 0:
                available = round(free.get(name, 0.0), 4)  # Ray counts resources in 1e-4 units
                slots = min(slots, math.floor(available / need + 1e-9))
        return max(0, slots)

    # ---- start / resume ----------------------------------------------------------------------
    def resume(self, slots: int, owner: str, lease_s: float) -> None:
        """Claim the job's lease, mark it running, requeue trials a previous server left running
        (their server's lease expired: it stopped heartbeating), replay the study.

        ``slots`` may be below ``parallelism`` on a small cluster; the reproducible order still
        follows ``parallelism``, so the architectures sampled do not depend on the cluster.
        """
        now = self.executor.now()
        wall = utcnow()
        with self.store.write() as session:
            started = session.execute(
                update(Job)
                .where(
                    Job.job_id == self.job_id,
                    Job.status.in_(JobStatus.ACTIVE),
                    or_(Job.lease_owner.is_(None), Job.lease_owner == owner, Job.lease_expires_at < wall),
                )
                .values(
                    status=JobStatus.RUNNING,
                    error=None,
                    updated_at=wall,
                    lease_owner=owner,
                    lease_expires_at=wall + timedelta(seconds=lease_s),
                )
            )
            if started.rowcount == 0:  # cancelled, or another server holds it, since the manager's read
                self.done = True
                return
            job = session.get(Job, self.job_id)
            assert job is not None
            job.started_at = job.started_at or now
            self.started_at = job.started_at
            session.execute(
                update(Trial)
                .where(Trial.job_id == self.job_id, Trial.state == TrialState.RUNNING)
                .values(
                    state=TrialState.FAILED,
                    requeued=True,
                    error=(
                        "interrupted: the server running this job stopped (its lease expired) while this "
                        "trial ran; its configuration runs again"
                    ),
                    finished_at=now,
                )
            )
            self.metric_source_id = metric_source_id(session, self.info.metric)
            self.transform_source_id = transform_source_id(session, self.spec.transform)
        with self.store.read() as session:
            trials = session.scalars(select(Trial).where(Trial.job_id == self.job_id).order_by(Trial.number)).all()
            hidden_from = len(trials) - self.parallelism + 1 if self.reproducible else len(trials)
            for trial in trials:
                self._replay(trial, hidden=trial.number >= hidden_from)
            retried = {t.retry_of_trial_id for t in trials if t.retry_of_trial_id is not None}
            pending_retries = [t for t in trials if t.requeued and t.trial_id not in retried]
            initial_asked = sum(1 for t in trials if t.origin == "initial")
        for trial in pending_retries:
            self.study.enqueue_trial(trial.params, user_attrs={_ORIGIN: "retry", _RETRY_OF: trial.trial_id})
        for encoding in self.spec.strategy.initial_architectures[initial_asked:]:
            self.study.enqueue_trial(self.space.encode_params(encoding), user_attrs={_ORIGIN: "initial"})
        self.slots = slots
        self.executor.open_job(
            self.job_id,
            slots,
            TrialResources(cpus=self.spec.resources.cpus_per_trial, gpus=self.spec.resources.gpus_per_trial),
        )

    def _pruning_value(self, epoch: TrialEpoch | dict[str, Any]) -> float | None:
        """The per-epoch value the pruner judges: the curve objective's own metric."""
        get = epoch.get if isinstance(epoch, dict) else lambda key: getattr(epoch, key)
        metric = self.spec.objectives[self.curve_index].metric
        value = get("val_loss") if metric == "val_loss" else get("val_metric")
        return None if value is None else float(value)

    def _replay(self, trial: Trial, *, hidden: bool) -> None:
        """Put a stored trial back into the study; ``hidden`` ones stay untold (reproducible order)."""
        if trial.number != self.asked:
            raise RuntimeError(f"job {self.job_id}: trial numbers in the store are not dense at {trial.number}")
        state = {
            TrialState.COMPLETE: OptunaState.COMPLETE,
            TrialState.PRUNED: OptunaState.PRUNED,
        }.get(trial.state, OptunaState.FAIL)
        values = trial.values if state == OptunaState.COMPLETE else None
        intermediate: dict[int, float] = {}
        user_attrs: dict[str, Any] = {}
        if self.pruning:
            intermediate = {e.epoch: v for e in trial.epoch_rows if (v := self._pruning_value(e)) is not None}
            if self.multi_objective:
                architecture = trial.architecture
                user_attrs = {
                    CURVE_ATTR: {str(k): v for k, v in intermediate.items()},
                    STATIC_ATTR: self._static_values(
                        params=architecture.num_params if architecture is not None else None,
                        flops=architecture.flops if architecture is not None else None,
                        latency_ms=trial.latency_ms,
                    ),
                }
                intermediate = {}  # Optuna keeps no intermediate values for multi-objective trials
        self.study.add_trial(
            optuna.trial.create_trial(
                state=OptunaState.RUNNING if hidden else state,
                params=trial.params,
                distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
                values=None if hidden else values,
                intermediate_values=intermediate or None,
                user_attrs=user_attrs or None,
            )
        )
        if hidden:
            self.untold[trial.number] = _Told(state, values)
        self.asked += 1
        self.requeued += int(trial.requeued)
        self._count_losses(trial.trial_id, trial.retry_of_trial_id, trial.error)
        if state == OptunaState.COMPLETE and trial.architecture is not None and trial.duplicate_of_trial_id is None:
            self.complete_by_dedup.setdefault(trial.architecture.dedup_hash, (trial.trial_id, trial.number))

    def _count_losses(self, trial_id: int, retry_of: int | None, error: str | None) -> None:
        """Worker losses in the trial's retry chain, itself included (bounds its retries)."""
        inherited = self.losses.get(retry_of, 0) if retry_of is not None else 0
        self.losses[trial_id] = inherited + int(bool(error and error.startswith(_WORKER_LOST)))

    # ---- the loop's entry points -------------------------------------------------------------
    def advance(self, cancel_requested: bool) -> None:
        """Apply cancel and limits, start trials while slots are free, finish the job when done."""
        if self.done:
            return
        if cancel_requested and self.stop_reason is None:
            self._stop("cancelled", "the job was cancelled")
        limit = self.spec.budget.time_limit_s
        if limit is not None and self.stop_reason is None and self.executor.now() - self.started_at > timedelta(seconds=limit):
            self._stop("time limit", f"stopped: the job's time_limit_s ({limit:g} s) was reached")
        self._check_timeouts()
        # bounded, so that a space that only yields duplicates cannot keep the loop from time limits
        for _ in range(_MAX_ASKS_PER_TICK):
            if not (
                self.stop_reason is None
                and self.executor.free_slots(self.job_id) > 0
                and (self._unsaved is not None or self._may_ask())
            ):
                break
            self._launch()
        if not self.running and (self.stop_reason is not None or self._budget_spent()):
            self._finish_job()

    def on_event(self, event: ExecutorEvent) -> None:
        running = self.running.get(event.trial_id)
        if running is None:
            return  # the trial was stopped; its late results are of no use
        if event.kind == "setup":
            self._on_setup(running, event.data)
        elif event.kind == "epoch":
            self._on_epoch(running, event.data)
        elif event.kind == "final":
            self._on_final(running, event.data)
        else:
            self._on_error(running, event)

    # ---- asking ------------------------------------------------------------------------------
    def _budget_spent(self) -> bool:
        max_trials = self.spec.budget.max_trials
        if max_trials is not None and self.asked - self.requeued >= max_trials:
            return True
        # a grid search ends when every point was asked (Optuna would start over)
        return self.grid_size is not None and self.asked - self.requeued >= self.grid_size

    @property
    def _horizon(self) -> int:
        """Trials numbered below this are the ones the sampler sees when it proposes the next."""
        return self.asked - self.parallelism + 1 if self.reproducible else self.asked

    def _may_ask(self) -> bool:
        if self._budget_spent():
            return False
        if not self.reproducible:
            return True
        horizon = self._horizon
        if any(r.number < horizon for r in self.running.values()):
            return False
        self._tell_until(horizon)
        return True

    def _tell_until(self, horizon: int) -> None:
        """Tell the study every finished trial numbered below ``horizon``, in number order."""
        for number in sorted(n for n in self.untold if n < horizon):
            told = self.untold.pop(number)
            self.study.tell(number, values=told.values, state=told.state, skip_if_finished=True)

    def _record_outcome(self, number: int, state: OptunaState, values: list[float] | None) -> None:
        if self.reproducible:
            self.untold[number] = _Told(state, values)
        else:
            self.study.tell(number, values=values, state=state, skip_if_finished=True)

    def _original_of(self, dedup: str) -> int | None:
        """A complete trial computing the same function, among those the sampler has seen."""
        found = self.complete_by_dedup.get(dedup)
        if found is None or (self.reproducible and found[1] >= self._horizon):
            return None
        return found[0]

    def _launch(self) -> None:
        if self._unsaved is None:
            trial = self.study.ask()
            self._unsaved = _Unsaved(trial, self.space.sample(trial))
        unsaved = self._unsaved
        trial, encoding = unsaved.trial, unsaved.encoding
        if trial.number != self.asked:
            raise RuntimeError(f"job {self.job_id}: the study numbered trial {self.asked} as {trial.number}")
        prm = {**self._prm(), **self.space.hyperparameters(encoding)}
        dedup = dedup_hash(self.space, encoding, self.in_shape, self.out_shape)
        duplicate_id = self._original_of(dedup)
        now = self.executor.now()
        # If the write fails, nothing is stored and ``_unsaved`` keeps the trial for the next try,
        # so the numbers in the store stay dense (the study is replayed from them on restart). A
        # commit whose answer was lost may have landed: then the row is already there.
        retrying, unsaved.attempted = unsaved.attempted, True
        with self.store.write() as session:
            row = None
            if retrying:
                row = session.scalars(
                    select(Trial).where(Trial.job_id == self.job_id, Trial.number == trial.number)
                ).first()
            if row is None:
                row = self._new_row(session, trial, encoding, dedup, prm, duplicate_id, now)
            trial_id, values = row.trial_id, row.values
            nn_code, nn_name = row.architecture.nn_code, row.architecture.nn_name  # type: ignore[union-attr]
            duplicate_id, retry_of, cache_hit = row.duplicate_of_trial_id, row.retry_of_trial_id, row.cache_hit
        self._unsaved = None
        self.asked += 1
        self._count_losses(trial_id, retry_of, None)
        if duplicate_id is not None:
            what = "is a cache hit of" if cache_hit else "duplicates"
            log.info("job %s trial %s %s trial %s", self.job_id, trial.number, what, duplicate_id)
            self._record_outcome(trial.number, OptunaState.COMPLETE, values)
            return
        payload = TrialPayload(
            trial_id=trial_id,
            job_id=self.job_id,
            number=trial.number,
            nn_name=nn_name,
            nn_code=nn_code,
            dataset=self.spec.dataset,
            prm=prm,
            epochs=self.spec.budget.epochs,
            seed=self.spec.training_seed,
            split_seed=self.spec.training_seed,
            split_fractions=tuple(self.spec.training.split),
            data_dir=str(self.settings.data_dir) if self.settings.data_dir else None,
            threads=max(1, int(self.spec.resources.cpus_per_trial)),
            use_gpu=self.spec.resources.gpus_per_trial > 0,
            max_params=self.spec.constraints.max_params,
            max_flops=self.spec.constraints.max_flops,
            memory_limit_mb=self.spec.resources.memory_mb_per_trial,
            arch=encoding,
            search_space=self.space.kind,
        )
        self.running[trial_id] = _Running(trial_id=trial_id, number=trial.number, optuna_trial=trial)
        self.executor.start_trial(self.job_id, payload)

    def _new_row(
        self,
        session: Any,
        trial: optuna.Trial,
        encoding: str,
        dedup: str,
        prm: dict[str, Any],
        duplicate_id: int | None,
        now: datetime,
    ) -> Trial:
        """The trial's row; complete at once when it duplicates a trial of this job, or when the
        cache holds the same network trained under the same protocol by another job."""
        architecture = get_or_create_architecture(
            session,
            search_space=self.space.kind,
            space_params=self.space.params_dict(),
            encoding=encoding,
            arch_hash=arch_hash(self.space, encoding, self.in_shape, self.out_shape),
            dedup_hash=dedup,
            in_shape=self.in_shape,
            out_shape=self.out_shape,
            nn_name=self.space.nn_name(encoding),
            nn_code=self.space.nn_code(encoding),
        )
        row = Trial(
            job_id=self.job_id,
            number=trial.number,
            architecture_id=architecture.architecture_id,
            state=TrialState.RUNNING,
            params=dict(trial.params),
            distributions={k: distribution_to_json(v) for k, v in trial.distributions.items()},
            prm=prm,
            seed=self.spec.training_seed,
            epochs=self.spec.budget.epochs,
            origin=trial.user_attrs.get(_ORIGIN, "sampler"),
            retry_of_trial_id=trial.user_attrs.get(_RETRY_OF),
            metric_source_id=self.metric_source_id,
            transform_source_id=self.transform_source_id,
            started_at=now,
            heartbeat_at=now,
        )
        row.architecture = architecture
        # simulated results (a tabular executor) neither enter the cache nor take from it
        row.cache_key = None if self.executor.simulated else self._cache_key(architecture.arch_hash, prm)
        cached = None
        if duplicate_id is None and self.spec.strategy.cache and row.cache_key is not None:
            cached = session.scalars(
                select(Trial)
                .where(
                    Trial.cache_key == row.cache_key,
                    Trial.job_id != self.job_id,
                    Trial.state == TrialState.COMPLETE,
                    Trial.duplicate_of_trial_id.is_(None),
                )
                .order_by(Trial.trial_id)
                .limit(1)
            ).first()
        original = session.get(Trial, duplicate_id) if duplicate_id is not None else cached
        values = None
        if original is not None:
            last = original.epoch_rows[-1] if original.epoch_rows else None
            # recomputed, not copied: a cache hit's job may have other objectives than the original's
            values = self._objective_values(
                val_metric=original.val_metric,
                val_loss=last.val_loss if last is not None else None,
                params=original.architecture.num_params if original.architecture is not None else None,
                flops=original.architecture.flops if original.architecture is not None else None,
                latency_ms=original.latency_ms,
                train_seconds=original.train_seconds,
            )
        if original is not None and values is not None:
            row.state = TrialState.COMPLETE
            row.duplicate_of_trial_id = original.trial_id
            row.cache_hit = cached is not None
            row.values = values
            for name in ("val_metric", "test_metric", "loss", "train_seconds", "latency_ms", "split", "worker"):
                setattr(row, name, getattr(original, name))
            row.finished_at = now
        session.add(row)
        session.flush()
        return row

    def _cache_key(self, arch_hash: str, prm: dict[str, Any]) -> str:
        """Equal for trainings that must give the same result: the same concrete network, data,
        split and training hyperparameters, epochs and seed, under the same training code."""
        protocol = {
            "version": _PROTOCOL_VERSION,
            "arch": arch_hash,
            "dataset": self.spec.dataset,
            "samples": self.info.num_samples,
            "split": list(self.spec.training.split),
            "prm": prm,
            "epochs": self.spec.budget.epochs,
            "seed": self.spec.training_seed,
        }
        return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()).hexdigest()

    def _objective_values(self, **metrics: Any) -> list[float] | None:
        """The job's objective values, in its order, from a trial's metrics (None if one is missing)."""
        by_name = {self.metric_key: metrics.get("val_metric"), **metrics}
        values = [by_name.get(o.metric) for o in self.spec.objectives]
        if any(v is None for v in values):
            return None
        return [float(v) for v in values]  # type: ignore[arg-type]

    def _static_values(self, **metrics: Any) -> list[float | None]:
        """Per objective, its value when known before training ends (None for the curve)."""
        return [
            None if i == self.curve_index else metrics.get(o.metric) for i, o in enumerate(self.spec.objectives)
        ]

    def _prm(self) -> dict[str, Any]:
        t = self.spec.training
        return {
            "lr": t.lr,
            "momentum": t.momentum,
            "weight_decay": t.weight_decay,
            "batch": t.batch_size,
            "epoch": self.spec.budget.epochs,
            "optimizer": t.optimizer,
            "nesterov": t.nesterov,
            "scheduler": t.scheduler,
            "transform": self.spec.transform,
        }

    # ---- reports -----------------------------------------------------------------------------
    def _on_setup(self, running: _Running, data: dict[str, Any]) -> None:
        with self.store.write() as session:
            trial = session.get(Trial, running.trial_id)
            assert trial is not None
            trial.worker = data.get("worker")
            trial.split = data.get("split")
            trial.latency_ms = data.get("latency_ms")
            trial.heartbeat_at = utcnow()
            if trial.architecture is not None and trial.architecture.num_params is None:
                trial.architecture.num_params = int(data["num_params"])
                trial.architecture.flops = data.get("flops")
        running.setup = data
        if self.pruning and self.multi_objective:
            static = self._static_values(
                params=data.get("num_params"), flops=data.get("flops"), latency_ms=data.get("latency_ms")
            )
            running.optuna_trial.set_user_attr(STATIC_ATTR, static)

    def _on_epoch(self, running: _Running, data: dict[str, Any]) -> None:
        epoch = int(data["epoch"])
        with self.store.write() as session:
            session.merge(
                TrialEpoch(
                    trial_id=running.trial_id,
                    epoch=epoch,
                    loss=data.get("loss"),
                    val_loss=data.get("val_loss"),
                    val_metric=data.get("val_metric"),
                    elapsed_seconds=float(data["elapsed_seconds"]),
                )
            )
            session.execute(
                update(Trial)
                .where(Trial.trial_id == running.trial_id)
                .values(
                    loss=data.get("loss"),
                    val_metric=data.get("val_metric"),
                    train_seconds=float(data["elapsed_seconds"]),
                    heartbeat_at=utcnow(),
                )
            )
        running.last_epoch = data
        if self.pruning:
            value = self._pruning_value(data)
            if value is not None and self.multi_objective:
                running.curve[str(epoch)] = value
                running.optuna_trial.set_user_attr(CURVE_ATTR, dict(running.curve))
            elif value is not None:
                running.optuna_trial.report(value, epoch)
            if epoch < self.spec.budget.epochs and self._should_prune(running):
                self._end_trial(running, TrialState.PRUNED, error=None)
                self.executor.release(running.trial_id)
                return
        running.call_started = time.monotonic()
        if epoch < self.spec.budget.epochs:
            self.executor.train_epoch(running.trial_id)
        else:
            self.executor.finish(running.trial_id)

    def _should_prune(self, running: _Running) -> bool:
        if not self.multi_objective:
            return running.optuna_trial.should_prune()
        frozen = self.study.get_trials(deepcopy=False)[running.number]
        return self.pruner.prune(self.study, frozen)

    def _on_final(self, running: _Running, data: dict[str, Any]) -> None:
        values = self._objective_values(
            val_metric=running.last_epoch.get("val_metric"),
            val_loss=running.last_epoch.get("val_loss"),
            params=running.setup.get("num_params"),
            flops=running.setup.get("flops"),
            latency_ms=running.setup.get("latency_ms"),
            train_seconds=data.get("train_seconds"),
        )
        if values is None:
            raise RuntimeError(f"trial {running.trial_id}: the worker did not report every objective's metric")
        now = self.executor.now()
        with self.store.write() as session:
            trial = session.get(Trial, running.trial_id)
            assert trial is not None
            trial.state = TrialState.COMPLETE
            trial.values = values
            trial.test_metric = data.get("test_metric")
            trial.train_seconds = data.get("train_seconds")
            trial.finished_at = now
            trial.heartbeat_at = now
            dedup = trial.architecture.dedup_hash if trial.architecture is not None else None
        self.running.pop(running.trial_id, None)
        self.executor.release(running.trial_id)
        if dedup is not None:
            self.complete_by_dedup.setdefault(dedup, (running.trial_id, running.number))
        self._record_outcome(running.number, OptunaState.COMPLETE, values)

    def _on_error(self, running: _Running, event: ExecutorEvent) -> None:
        message = event.error or "Error: the trial failed without a message"
        if not event.worker_lost:
            if event.traceback:
                message = f"{message}\n\n{event.traceback}"
            self._end_trial(running, TrialState.FAILED, error=message)
            return
        # the worker process died (killed, out of host memory, node lost): not the trial's fault
        if not message.startswith(_WORKER_LOST):
            message = f"{_WORKER_LOST}: {message}"
        losses = self.losses.get(running.trial_id, 0) + 1
        allowed = self.spec.budget.trial_retries
        retry = losses <= allowed
        note = (
            f"; its configuration runs again (retry {losses} of {allowed})"
            if retry
            else f"; not retried (budget.trial_retries = {allowed} used up)"
        )
        detail = f"{message}{note}" + (f"\n\n{event.traceback}" if event.traceback else "")
        self._end_trial(running, TrialState.FAILED, error=detail, requeued=retry)
        self.losses[running.trial_id] = losses
        if retry:
            self.requeued += 1
            self.study.enqueue_trial(dict(running.optuna_trial.params), user_attrs={_ORIGIN: "retry", _RETRY_OF: running.trial_id})
            log.warning("job %s trial %s lost its worker; retrying", self.job_id, running.number)

    def _end_trial(self, running: _Running, state: str, error: str | None, *, requeued: bool = False) -> None:
        """Persist a trial that ended without completing (pruned, failed, stopped)."""
        now = self.executor.now()
        with self.store.write() as session:
            session.execute(
                update(Trial)
                .where(Trial.trial_id == running.trial_id)
                .values(state=state, error=error, finished_at=now, heartbeat_at=utcnow(), requeued=requeued)
            )
        self.running.pop(running.trial_id, None)
        self._record_outcome(
            running.number, OptunaState.PRUNED if state == TrialState.PRUNED else OptunaState.FAIL, None
        )

    # ---- stopping ----------------------------------------------------------------------------
    def _check_timeouts(self) -> None:
        limit = self.spec.budget.epoch_timeout_s
        if limit is None:
            return
        now = time.monotonic()
        for running in list(self.running.values()):
            if now - running.call_started > limit:
                self._end_trial(
                    running,
                    TrialState.FAILED,
                    error=f"EpochTimeout: a step of this trial took longer than budget.epoch_timeout_s ({limit:g} s)",
                )
                self.executor.abort(running.trial_id)

    def _stop(self, reason: str, message: str) -> None:
        """Stop asking; stop running trials now (their finished epochs stay in the store).

        Each trial is written off before its worker is stopped; if the store fails half-way, the
        next tick stops the rest (``stop_reason`` is set only once all are done)."""
        for running in list(self.running.values()):
            self._end_trial(running, TrialState.FAILED, error=message)
            self.executor.abort(running.trial_id)
        self.stop_reason = reason

    def _finish_job(self) -> None:
        self._tell_until(self.asked)
        with self.store.write() as session:
            job = session.get(Job, self.job_id)
            assert job is not None
            states = [t.state for t in session.scalars(select(Trial).where(Trial.job_id == self.job_id))]
            complete = states.count(TrialState.COMPLETE)
            if self.stop_reason == "cancelled":
                job.status, job.error = JobStatus.CANCELLED, None
            elif complete == 0:
                first_error = session.scalars(
                    select(Trial.error)
                    .where(Trial.job_id == self.job_id, Trial.error.is_not(None))
                    .order_by(Trial.number)
                ).first()
                job.status = JobStatus.FAILED
                job.error = f"no trial completed ({len(states)} ended without a result)" + (
                    f"; first error: {first_error[:2000]}" if first_error else ""
                )
            else:
                job.status, job.error = JobStatus.SUCCEEDED, None
            job.finished_at = self.executor.now()
            job.lease_owner, job.lease_expires_at = None, None
        self.executor.close_job(self.job_id)
        self.done = True
        log.info("job %s finished", self.job_id)

    def abandon(self) -> None:
        """Server shutdown: drop the workers; running trials stay ``running`` for the next start."""
        self.executor.close_job(self.job_id)


class JobManager:
    """Owns the executor and the runners; one thread, started and stopped with the API.

    ``tick()`` is one round of work; the thread calls it in a loop (tests may call it directly).
    """

    def __init__(self, store: Store, executor: Executor, settings: Settings, *, max_running_jobs: int = 4) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.max_running_jobs = max_running_jobs
        self.runners: dict[int, JobRunner] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: events whose handling failed on a store outage; handled again before new ones
        self._retry: list[ExecutorEvent] = []
        #: this server's name on the leases of the jobs it runs
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0
        self.state = "starting"
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="cellar-job-manager", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look at the store now (a job was submitted or cancelled)."""
        self._wake.set()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"status": self.state, "running_jobs": len(self.runners)}
        if self.error:
            status["error"] = self.error
        if self.state == "ok":
            try:
                status.update(self.executor.status())
            except Exception as error:  # status is diagnostic; never fail a health check on it
                status["status"], status["error"] = "error", str(error)
        return status

    # ---- the thread --------------------------------------------------------------------------
    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.connect()
                break
            except ExecutorError as error:
                self.state, self.error = "error", str(error)
                log.error("%s; trying again in 5 s", error)
                self._stop.wait(5.0)
        else:
            return
        self.state, self.error = "ok", None
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                    self.error = None
                except StoreUnavailableError as error:
                    self.error = str(error)
                    log.warning("store unavailable, retrying: %s", error)
                    self._stop.wait(1.0)
                except Exception as error:  # a bug or an executor outage must not end the thread
                    self.error = f"{type(error).__name__}: {error}"
                    log.exception("job manager tick failed; continuing")
                    self._stop.wait(1.0)
        finally:
            for runner in self.runners.values():
                runner.abandon()
            self.executor.shutdown()
            self._release_leases()
            self.state = "stopped"

    def tick(self) -> None:
        """One round: start jobs, handle the workers' reports, then apply cancels and limits and
        start new trials. Reports come first, so a cancel never discards a result already in."""
        self._renew_leases()
        self._adopt()
        if any(runner.running for runner in self.runners.values()):
            self._handle_events(self.executor.poll(self.settings.poll_interval_s))
        elif self._retry:
            self._handle_events([])
        else:
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()
        cancels = self._cancel_requests()
        for job_id, runner in list(self.runners.items()):
            if not runner.done:
                self._guard(runner, runner.advance, cancels.get(job_id, False))
            if runner.done:
                del self.runners[job_id]

    # ---- leases ------------------------------------------------------------------------------
    def _renew_leases(self) -> None:
        """Extend this server's leases (every third of ``lease_s``) and heartbeat its running
        trials. A job whose lease another server took over (this one stalled past it) is dropped
        here without writing anything more."""
        lease_s = self.settings.lease_s
        if not self.runners or time.monotonic() - self._renewed < lease_s / 3:
            return
        now = utcnow()
        job_ids = list(self.runners)
        with self.store.write() as session:
            session.execute(
                update(Job)
                .where(Job.job_id.in_(job_ids), Job.lease_owner == self.owner)
                .values(lease_expires_at=now + timedelta(seconds=lease_s))
            )
            session.execute(
                update(Trial)
                .where(Trial.job_id.in_(job_ids), Trial.state == TrialState.RUNNING)
                .values(heartbeat_at=now)
            )
            held = set(
                session.scalars(select(Job.job_id).where(Job.job_id.in_(job_ids), Job.lease_owner == self.owner))
            )
        self._renewed = time.monotonic()
        for job_id in job_ids:
            if job_id not in held and not self.runners[job_id].done:
                log.error("job %s: lease lost to another server; this server stops running it", job_id)
                runner = self.runners.pop(job_id)
                for trial_id in list(runner.running):
                    self.executor.abort(trial_id)
                runner.running.clear()
                runner.abandon()

    def _release_leases(self) -> None:
        """On a clean stop: give the leases back, so a server started next takes over at once."""
        try:
            with self.store.write() as session:
                session.execute(
                    update(Job).where(Job.lease_owner == self.owner).values(lease_owner=None, lease_expires_at=None)
                )
        except Exception:  # the store may be what stopped us; the leases then simply expire
            log.warning("could not release job leases; they expire after %s s", self.settings.lease_s)

    def _handle_events(self, events: list[ExecutorEvent]) -> None:
        events, self._retry = self._retry + events, []
        for index, event in enumerate(events):
            runner = next((r for r in self.runners.values() if not r.done and event.trial_id in r.running), None)
            if runner is None:
                continue
            try:
                self._guard(runner, runner.on_event, event)
            except StoreUnavailableError:
                # handlers write before they change any state: handle it again once the store answers
                self._retry = events[index:]
                raise

    def _guard(self, runner: JobRunner, method: Any, *args: Any) -> None:
        """Run a runner step; a bug or a permanent store error fails that job, never the manager."""
        try:
            method(*args)
        except StoreUnavailableError:
            raise
        except Exception as error:
            log.exception("job %s failed in the manager", runner.job_id)
            try:
                for trial_id in list(runner.running):
                    self.executor.abort(trial_id)
            finally:
                runner.running.clear()
                runner.done = True
                self.executor.close_job(runner.job_id)
            self._fail_job(runner.job_id, error)

    def _fail_job(self, job_id: int, error: Exception) -> None:
        message = str(error) if isinstance(error, ExecutorError) else f"internal error: {error!r}"
        with self.store.write() as session:
            session.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.state == TrialState.RUNNING)
                .values(state=TrialState.FAILED, error=f"job failed: {message}", finished_at=utcnow())
            )
            session.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.status.in_(JobStatus.ACTIVE))
                .values(
                    status=JobStatus.FAILED, error=message, finished_at=utcnow(), lease_owner=None, lease_expires_at=None
                )
            )

    def _note(self, job_id: int, note: str) -> None:
        """Tell a waiting job's readers why it waits (the job's ``error`` field while queued)."""
        with self.store.write() as session:
            session.execute(
                update(Job)
                .where(Job.job_id == job_id, Job.status == JobStatus.QUEUED, Job.error.is_distinct_from(note))
                .values(error=note, updated_at=utcnow())
            )

    def _adopt(self) -> None:
        """Start queued (and resume interrupted) jobs, first come first served, while the cluster
        has room for at least one slot of the next job. A job holds its slots until it ends, so
        admitting more than fits could leave two jobs each waiting for the other's workers."""
        free_jobs = self.max_running_jobs - len(self.runners)
        if free_jobs <= 0:
            return
        now = utcnow()
        with self.store.read() as session:
            job_ids = session.scalars(
                select(Job.job_id)
                .where(
                    Job.status.in_(JobStatus.ACTIVE),
                    Job.job_id.not_in(list(self.runners) or [-1]),
                    # a job another live server runs is not ours to take until its lease expires
                    or_(Job.lease_owner.is_(None), Job.lease_owner == self.owner, Job.lease_expires_at < now),
                )
                .order_by(Job.status.desc(), Job.job_id)  # running ones (resumed) before queued
                .limit(free_jobs)
            ).all()
        if not job_ids:
            return
        total = self.executor.capacity()
        nodes = self.executor.node_resources()
        free = dict(total)
        for runner in self.runners.values():
            for name, need in runner.demand.items():
                free[name] = free.get(name, 0.0) - need * runner.slots
        for job_id in job_ids:
            try:
                runner = JobRunner(job_id, self.store, self.executor, self.settings)
            except StoreUnavailableError:
                raise
            except Exception as error:  # e.g. a stored spec this version can no longer read
                log.exception("job %s cannot be run", job_id)
                self._fail_job(job_id, error)
                continue
            if total and not any(runner.slots_within(node) for node in nodes):
                needs = ", ".join(f"{v:g} {k}" for k, v in runner.demand.items() if v > 0)
                have = "; ".join(", ".join(f"{v:g} {k}" for k, v in node.items()) for node in nodes) or "no nodes"
                message = f"one trial needs {needs} but no Ray node has that (nodes: {have})"
                if not self.executor.elastic:
                    self._fail_job(job_id, ExecutorError(
                        f"{message}; lower resources.cpus_per_trial / gpus_per_trial"
                    ))
                    continue
                self._note(job_id, f"waiting: {message}; the job starts when such a node joins")
                break
            slots = runner.slots_within(free) if total else runner.parallelism
            if slots == 0:
                break  # wait for running jobs to free workers; keep the queue's order
            self._guard(runner, runner.resume, slots, self.owner, self.settings.lease_s)
            if not runner.done:
                self.runners[job_id] = runner
                for name, need in runner.demand.items():
                    free[name] = free.get(name, 0.0) - need * slots
                log.info("job %s started with %s slot(s)", job_id, slots)

    def _cancel_requests(self) -> dict[int, bool]:
        if not self.runners:
            return {}
        with self.store.read() as session:
            rows = session.execute(
                select(Job.job_id, Job.cancel_requested).where(Job.job_id.in_(list(self.runners)))
            ).all()
        return {job_id: bool(flag) for job_id, flag in rows}
