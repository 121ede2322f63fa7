"""The job manager: one thread that runs every active job's search.

Each job has a ``JobRunner`` holding its Optuna study (in memory, rebuilt from the store when the
server starts again) and its search space. The runner asks the study for trials, hands them to the
executor, persists every report the moment it arrives and tells the study how trials ended. The
store is the single source of truth and the manager thread is its only writer of trial state.

Reproducible order (``strategy.reproducible``, the default): trial ``k`` is asked only once trials
``0 .. k-p`` have finished (``p`` = parallelism, so at most ``p`` trials are in flight), and a
finished trial is told to the study only when trial ``number + p`` is asked. So the sampler always
sees exactly trials ``0 .. k-p`` when it proposes trial ``k``, whatever order the workers finish
in: the same job and seed sample the same architectures. Without it, a trial is asked as soon as a
slot frees and told as soon as it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState as OptunaState
from sqlalchemy import select, update

from search_spaces import get_search_space
from search_spaces._codegen import module_source
from search_spaces.datasets import get_dataset
from search_spaces.metrics import METRICS, metric_module
from search_spaces.transforms import transform_module
from workers.executor import Executor, ExecutorError, ExecutorEvent, TrialResources
from workers.protocol import TrialPayload

from .errors import StoreError
from .identity import arch_hash, dedup_hash
from .schemas import JobCreate
from .settings import Settings
from .store import Job, JobStatus, Store, Trial, TrialEpoch, TrialState
from .store.models import utcnow
from .store.queries import get_or_create_architecture, get_or_create_source

__all__ = ["JobManager", "JobRunner"]

log = logging.getLogger(__name__)

optuna.logging.set_verbosity(optuna.logging.WARNING)

_MAX_ASKS_PER_TICK = 256


@dataclass
class _Running:
    """A trial whose worker is busy with it."""

    trial_id: int
    number: int
    optuna_trial: optuna.Trial
    num_params: int | None = None
    last_epoch: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Told:
    """How a finished trial ended, waiting to be told to the study (reproducible order)."""

    state: OptunaState
    values: list[float] | None


def _make_sampler(spec: JobCreate) -> optuna.samplers.BaseSampler:
    seed = spec.strategy.seed
    if spec.strategy.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _make_pruner(spec: JobCreate) -> optuna.pruners.BasePruner:
    name, epochs = spec.strategy.pruner, spec.budget.epochs
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, spec.budget.parallelism), n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


class JobRunner:
    """Drives one job's search. Every method runs on the manager thread."""

    def __init__(self, job_id: int, store: Store, executor: Executor, settings: Settings) -> None:
        self.job_id = job_id
        self.store = store
        self.executor = executor
        self.settings = settings
        with store.read() as session:
            job = session.get(Job, job_id)
            assert job is not None
            self.spec = JobCreate.model_validate(job.spec)
            self.started_at: datetime = job.started_at or utcnow()
        self.space = get_search_space(self.spec.search_space.kind, self.spec.search_space.params)
        self.info = get_dataset(self.spec.dataset).info
        self.in_shape = [1, *self.info.in_shape]
        self.out_shape = [self.info.num_classes]
        self.metric_key = f"val_{METRICS[self.info.metric][0]}"
        self.parallelism = self.spec.budget.parallelism
        self.reproducible = self.spec.strategy.reproducible
        self.study = optuna.create_study(
            study_name=f"cellar-job-{job_id}",
            directions=[o.direction for o in self.spec.objectives],
            sampler=_make_sampler(self.spec),
            pruner=_make_pruner(self.spec),
        )
        self.slots = 0
        #: trials asked so far (the next trial's number); ``study.trials`` also holds enqueued ones
        self.asked = 0
        self.running: dict[int, _Running] = {}
        self.untold: dict[int, _Told] = {}  # number -> outcome not yet told to the study
        self.finished: set[int] = set()
        self.complete_by_dedup: dict[str, int] = {}  # dedup hash -> trial_id of a complete trial
        self.stop_reason: str | None = None
        self.done = False
        #: a trial asked from the study whose row could not be written yet (store outage)
        self._unsaved: tuple[optuna.Trial, str] | None = None
        self.metric_source_id: int | None = None
        self.transform_source_id: int | None = None

    # ---- start / resume ----------------------------------------------------------------------
    @property
    def demand(self) -> dict[str, float]:
        """What one slot of this job holds while the job runs."""
        resources = self.spec.resources
        return {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}

    def slots_within(self, free: dict[str, float]) -> int:
        """How many of its ``parallelism`` slots fit in ``free`` resources (0: none)."""
        slots = self.parallelism
        for name, need in self.demand.items():
            if need > 0 and name in free:
                slots = min(slots, int(free[name] // need + 1e-9))
        return max(0, slots)

    def resume(self, slots: int) -> None:
        """Mark the job running, fail trials a previous server left running, replay the study.

        ``slots`` may be below ``parallelism`` on a small cluster; the reproducible order still
        follows ``parallelism``, so the architectures sampled do not depend on the cluster.
        """
        now = utcnow()
        with self.store.write() as session:
            job = session.get(Job, self.job_id)
            assert job is not None
            job.status = JobStatus.RUNNING
            job.started_at = job.started_at or now
            self.started_at = job.started_at
            session.execute(
                update(Trial)
                .where(Trial.job_id == self.job_id, Trial.state == TrialState.RUNNING)
                .values(
                    state=TrialState.FAILED,
                    error="interrupted: the server stopped while this trial ran",
                    finished_at=now,
                )
            )
            self.metric_source_id = get_or_create_source(
                session, kind="metric", name=self.info.metric, code=module_source(metric_module(self.info.metric))
            ).source_id
            transform = self.spec.training.transform
            self.transform_source_id = get_or_create_source(
                session, kind="transform", name=transform, code=module_source(transform_module(transform))
            ).source_id
        with self.store.read() as session:
            trials = session.scalars(
                select(Trial).where(Trial.job_id == self.job_id).order_by(Trial.number)
            ).all()
            for trial in trials:
                self._replay(trial)
        # architectures the job asked to evaluate first, Optuna's enqueue_trial; after a restart
        # only those not yet asked
        for encoding in self.spec.strategy.initial_architectures[self.asked :]:
            self.study.enqueue_trial(self.space.encode_params(encoding), skip_if_exists=False)
        self.slots = slots
        self.executor.open_job(
            self.job_id,
            slots,
            TrialResources(cpus=self.spec.resources.cpus_per_trial, gpus=self.spec.resources.gpus_per_trial),
        )

    def _replay(self, trial: Trial) -> None:
        if trial.number != self.asked:
            raise RuntimeError(f"job {self.job_id}: trial numbers in the store are not dense at {trial.number}")
        state = {
            TrialState.COMPLETE: OptunaState.COMPLETE,
            TrialState.PRUNED: OptunaState.PRUNED,
        }.get(trial.state, OptunaState.FAIL)
        intermediate = {e.epoch: e.val_metric for e in trial.epoch_rows if e.val_metric is not None}
        self.study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=trial.params,
                distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
                values=trial.values if state == OptunaState.COMPLETE else None,
                intermediate_values=intermediate if len(self.spec.objectives) == 1 else None,
            )
        )
        self.finished.add(trial.number)
        self.asked += 1
        if state == OptunaState.COMPLETE and trial.architecture is not None:
            self.complete_by_dedup.setdefault(trial.architecture.dedup_hash, trial.trial_id)

    # ---- the loop's entry points -------------------------------------------------------------
    def advance(self, cancel_requested: bool) -> None:
        """Apply cancel and limits, start trials while slots are free, finish the job when done."""
        if self.done:
            return
        if cancel_requested and self.stop_reason is None:
            self._stop("cancelled", "the job was cancelled")
        limit = self.spec.budget.time_limit_s
        if limit is not None and self.stop_reason is None and utcnow() - self.started_at > timedelta(seconds=limit):
            self._stop("time limit", f"stopped: the job's time_limit_s ({limit:g} s) was reached")
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
        return max_trials is not None and self.asked >= max_trials

    def _may_ask(self) -> bool:
        if self._budget_spent():
            return False
        if not self.reproducible:
            return True
        # every trial below the horizon must have finished (those not running have)
        horizon = self.asked - self.parallelism + 1
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
        self.finished.add(number)
        if self.reproducible:
            self.untold[number] = _Told(state, values)
        else:
            self.study.tell(number, values=values, state=state, skip_if_finished=True)

    def _launch(self) -> None:
        if self._unsaved is None:
            trial = self.study.ask()
            self._unsaved = (trial, self.space.sample(trial))
        trial, encoding = self._unsaved
        if trial.number != self.asked:
            raise RuntimeError(f"job {self.job_id}: the study numbered trial {self.asked} as {trial.number}")
        distributions = {k: distribution_to_json(v) for k, v in trial.distributions.items()}
        prm = self._prm()
        dedup = dedup_hash(self.space, encoding, self.in_shape, self.out_shape)
        duplicate_id = self.complete_by_dedup.get(dedup)
        now = utcnow()
        # if the write fails, nothing is stored and ``_unsaved`` keeps the trial for the next try,
        # so the numbers in the store stay dense (the study is replayed from them on restart)
        with self.store.write() as session:
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
                distributions=distributions,
                prm=prm,
                seed=self.spec.training_seed,
                epochs=self.spec.budget.epochs,
                metric_source_id=self.metric_source_id,
                transform_source_id=self.transform_source_id,
                started_at=now,
                heartbeat_at=now,
            )
            if duplicate_id is not None:
                original = session.get(Trial, duplicate_id)
                assert original is not None
                row.state = TrialState.COMPLETE
                row.duplicate_of_trial_id = duplicate_id
                for name in ("values", "val_metric", "test_metric", "loss", "train_seconds", "split", "worker"):
                    setattr(row, name, getattr(original, name))
                row.finished_at = now
            session.add(row)
            session.flush()
            trial_id, nn_code, nn_name = row.trial_id, architecture.nn_code, architecture.nn_name
            values = row.values
        self._unsaved = None
        self.asked += 1
        if duplicate_id is not None:
            log.info("job %s trial %s duplicates trial %s", self.job_id, trial.number, duplicate_id)
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
            memory_limit_mb=self.spec.resources.memory_mb_per_trial,
        )
        self.running[trial_id] = _Running(trial_id=trial_id, number=trial.number, optuna_trial=trial)
        self.executor.start_trial(self.job_id, payload)

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
            "transform": t.transform,
        }

    # ---- reports -----------------------------------------------------------------------------
    def _on_setup(self, running: _Running, data: dict[str, Any]) -> None:
        with self.store.write() as session:
            trial = session.get(Trial, running.trial_id)
            assert trial is not None
            trial.worker = data.get("worker")
            trial.split = data.get("split")
            trial.heartbeat_at = utcnow()
            if trial.architecture is not None and trial.architecture.num_params is None:
                trial.architecture.num_params = int(data["num_params"])
        running.num_params = int(data["num_params"])

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
        if len(self.spec.objectives) == 1 and self.spec.strategy.pruner != "none":
            running.optuna_trial.report(float(data["val_metric"]), epoch)
            if epoch < self.spec.budget.epochs and running.optuna_trial.should_prune():
                self._end_trial(running, TrialState.PRUNED, error=None)
                self.executor.release(running.trial_id)
                return
        if epoch < self.spec.budget.epochs:
            self.executor.train_epoch(running.trial_id)
        else:
            self.executor.finish(running.trial_id)

    def _on_final(self, running: _Running, data: dict[str, Any]) -> None:
        metrics = {
            self.metric_key: running.last_epoch.get("val_metric"),
            "val_loss": running.last_epoch.get("val_loss"),
            "params": running.num_params,
            "train_seconds": data.get("train_seconds"),
        }
        values = [float(metrics[o.metric]) for o in self.spec.objectives]  # type: ignore[arg-type]
        now = utcnow()
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
            self.complete_by_dedup.setdefault(dedup, running.trial_id)
        self._record_outcome(running.number, OptunaState.COMPLETE, values)

    def _on_error(self, running: _Running, event: ExecutorEvent) -> None:
        message = event.error or "Error: the trial failed without a message"
        if event.traceback:
            message = f"{message}\n\n{event.traceback}"
        self._end_trial(running, TrialState.FAILED, error=message)

    def _end_trial(self, running: _Running, state: str, error: str | None) -> None:
        """Persist a trial that ended without completing (pruned, failed, stopped)."""
        now = utcnow()
        with self.store.write() as session:
            session.execute(
                update(Trial)
                .where(Trial.trial_id == running.trial_id)
                .values(state=state, error=error, finished_at=now, heartbeat_at=now)
            )
        self.running.pop(running.trial_id, None)
        self._record_outcome(
            running.number, OptunaState.PRUNED if state == TrialState.PRUNED else OptunaState.FAIL, None
        )

    # ---- stopping ----------------------------------------------------------------------------
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
            job.finished_at = utcnow()
        self.executor.close_job(self.job_id)
        self.done = True
        log.info("job %s finished", self.job_id)

    def abandon(self) -> None:
        """Server shutdown: drop the workers; running trials stay ``running`` for the next start."""
        self.executor.close_job(self.job_id)


class JobManager:
    """Owns the executor and the runners; one thread, started and stopped with the API."""

    def __init__(self, store: Store, executor: Executor, settings: Settings, *, max_running_jobs: int = 4) -> None:
        self.store = store
        self.executor = executor
        self.settings = settings
        self.max_running_jobs = max_running_jobs
        self.runners: dict[int, JobRunner] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: events whose handling failed on a store error; handled again before new ones
        self._retry: list[ExecutorEvent] = []
        self._thread: threading.Thread | None = None
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
        try:
            self.executor.connect()
        except ExecutorError as error:
            self.state, self.error = "error", str(error)
            log.error("%s", error)
            return
        self.state = "ok"
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except StoreError as error:
                    log.warning("store unavailable, retrying: %s", error)
                    self._stop.wait(1.0)
        finally:
            for runner in self.runners.values():
                runner.abandon()
            self.executor.shutdown()
            self.state = "stopped"

    def tick(self) -> None:
        self._adopt()
        cancels = self._cancel_requests()
        for job_id, runner in list(self.runners.items()):
            self._guard(runner, runner.advance, cancels.get(job_id, False))
            if runner.done:
                del self.runners[job_id]
        busy = any(runner.running for runner in self.runners.values())
        if busy:
            events, self._retry = self._retry + self.executor.poll(self.settings.poll_interval_s), []
            for index, event in enumerate(events):
                runner = next((r for r in self.runners.values() if event.trial_id in r.running), None)
                if runner is None:
                    continue
                try:
                    self._guard(runner, runner.on_event, event)
                except StoreError:
                    # handlers write before they change any state: the event can simply be
                    # handled again once the store answers
                    self._retry = events[index:]
                    raise
        else:
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def _guard(self, runner: JobRunner, method: Any, *args: Any) -> None:
        """Run a runner step; a bug in one job fails that job, never the manager."""
        try:
            method(*args)
        except StoreError:
            raise
        except Exception as error:
            log.exception("job %s failed in the manager", runner.job_id)
            try:
                for running in list(runner.running.values()):
                    self.executor.abort(running.trial_id)
                self._fail_job(runner.job_id, error)
            finally:
                runner.done = True
                self.executor.close_job(runner.job_id)

    def _fail_job(self, job_id: int, error: Exception) -> None:
        message = str(error) if isinstance(error, ExecutorError) else f"internal error: {error!r}"
        with self.store.write() as session:
            session.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.state == TrialState.RUNNING)
                .values(state=TrialState.FAILED, error=f"job failed: {error}", finished_at=utcnow())
            )
            session.execute(
                update(Job)
                .where(Job.job_id == job_id)
                .values(status=JobStatus.FAILED, error=message, finished_at=utcnow())
            )

    def _adopt(self) -> None:
        """Start queued (and resume interrupted) jobs, first come first served, while the cluster
        has room for at least one slot of the next job. A job holds its slots until it ends, so
        admitting more than fits could leave two jobs each waiting for the other's workers."""
        free_jobs = self.max_running_jobs - len(self.runners)
        if free_jobs <= 0:
            return
        with self.store.read() as session:
            job_ids = session.scalars(
                select(Job.job_id)
                .where(Job.status.in_(JobStatus.ACTIVE), Job.job_id.not_in(list(self.runners) or [-1]))
                .order_by(Job.status.desc(), Job.job_id)  # running ones (resumed) before queued
                .limit(free_jobs)
            ).all()
        if not job_ids:
            return
        total = self.executor.capacity()
        free = dict(total)
        for runner in self.runners.values():
            for name, need in runner.demand.items():
                if name in free:
                    free[name] -= need * runner.slots
        for job_id in job_ids:
            try:
                runner = JobRunner(job_id, self.store, self.executor, self.settings)
            except StoreError:
                raise
            except Exception as error:  # e.g. a stored spec this version can no longer read
                log.exception("job %s cannot be run", job_id)
                self._fail_job(job_id, error)
                continue
            if total and runner.slots_within(total) == 0:
                needs = ", ".join(f"{v:g} {k}" for k, v in runner.demand.items() if v > 0)
                have = ", ".join(f"{v:g} {k}" for k, v in total.items())
                self._fail_job(job_id, ExecutorError(
                    f"one trial needs {needs} but the whole cluster has {have}; lower "
                    "resources.cpus_per_trial / gpus_per_trial or add nodes"
                ))
                continue
            slots = runner.slots_within(free) if total else runner.parallelism
            if slots == 0:
                break  # wait for running jobs to free workers; keep the queue's order
            self._guard(runner, runner.resume, slots)
            if not runner.done:
                self.runners[job_id] = runner
                for name, need in runner.demand.items():
                    if name in free:
                        free[name] -= need * slots
                log.info("job %s started with %s slot(s)", job_id, slots)

    def _cancel_requests(self) -> dict[int, bool]:
        if not self.runners:
            return {}
        with self.store.read() as session:
            rows = session.execute(
                select(Job.job_id, Job.cancel_requested).where(Job.job_id.in_(list(self.runners)))
            ).all()
        return {job_id: bool(flag) for job_id, flag in rows}


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (used by the CLI and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
