"""One job's search: a state machine driven by the job manager's thread.

A ``JobRunner`` holds the job's Optuna study (in memory, rebuilt from the store when a server
resumes the job) and its search space. It asks the study for trials through the ``AskTellGate``,
hands them to the executor, and leaves the workers' reports to its ``TrialReports``. The store is
the single source of truth and the manager thread its only writer of trial state; every step
writes before it changes anything in memory, so a failed write can simply be retried.

Restarts: trials a stopped (or crashed) server left running run again from their start, in place:
the same numbers, configurations and sampler state, so that a resumed job samples what it would
have sampled without the restart. A trial whose *worker* died is a different matter: it is failed
and ``requeued``, its configuration runs again as a new trial (``origin = retry``), and only the
retry counts towards ``max_trials`` (``budget.trial_retries``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState as OptunaState

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.metrics import METRICS
from search_spaces.transforms import parse_transform
from workers.executor import Executor, ExecutorEvent, TrialResources
from workers.protocol import TrialPayload

from ..settings import Settings
from ..store import Job, Store, Trial, TrialState, leases, runs
from ..store.queries import get_or_create_architecture, metric_source_id, transform_source_id
from .artifacts import ArtifactStore, KeptWeights
from .cache import cache_key, reuse_result
from .gate import AskTellGate
from .identity import arch_hash, dedup_hash
from .objectives import Objectives, build_study
from .replay import replay_trial
from .reports import ORIGIN, RETRY_OF, TrialReports
from .screen import Screening
from .spec import JobCreate

__all__ = ["JobRunner", "job_payload"]

log = logging.getLogger(__name__)

_MAX_ASKS_PER_TICK = 256


@dataclass
class _Unsaved:
    """A trial asked from the study whose row is not written yet (the store failed)."""

    trial: optuna.Trial
    encoding: str
    attempted: bool = False


@dataclass(frozen=True)
class _Relaunch:
    """A trial a previous server left running, to run again from its start, in place."""

    trial_id: int
    number: int
    encoding: str
    nn_name: str
    nn_code: str
    prm: dict[str, Any]

    @classmethod
    def of(cls, trial: Trial) -> _Relaunch:
        arch = trial.architecture
        assert arch is not None and arch.nn_code is not None  # rows the runner wrote have both
        return cls(trial.trial_id, trial.number, arch.encoding, arch.nn_name, arch.nn_code, dict(trial.prm))


def job_payload(job_id: int, spec: JobCreate, settings: Settings | None, search_space: str) -> TrialPayload:
    """The payload fields a job's trials share (the trial's own are blank: id 0, number -1)."""
    return TrialPayload(
        trial_id=0,
        job_id=job_id,
        number=-1,
        nn_name="",
        nn_code="",
        dataset=spec.dataset,
        prm=dict(spec.prm),
        epochs=spec.budget.epochs,
        seed=spec.training_seed,
        split_seed=spec.training_seed,
        split_fractions=tuple(spec.training.split),
        data_dir=str(settings.data_dir) if settings is not None and settings.data_dir else None,
        threads=max(1, int(spec.resources.cpus_per_trial)),
        use_gpu=spec.resources.gpus_per_trial > 0,
        max_params=spec.constraints.max_params,
        max_flops=spec.constraints.max_flops,
        proxies=tuple(spec.proxies),
        min_proxies=spec.constraints.min_proxies,
        memory_limit_mb=spec.resources.memory_mb_per_trial,
        search_space=search_space,
    )


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
        self.parallelism = self.spec.budget.parallelism
        self.objectives = Objectives(self.spec, f"val_{METRICS[self.info.metric][0]}")
        self.study = build_study(job_id, self.spec, self.space)
        self.gate = AskTellGate(
            self.study,
            parallelism=self.parallelism,
            reproducible=self.spec.strategy.reproducible,
            seed=self.spec.strategy.seed,
        )
        self.reports = TrialReports(self)
        #: what every trial's payload shares; ``_start`` fills in the trial's own fields
        self.template = job_payload(job_id, self.spec, settings, self.space.kind)
        #: workers write the weights of finished trials (a simulated executor trains nothing)
        self.weights = (
            KeptWeights(ArtifactStore(settings.artifacts_dir), store, self.spec, job_id)
            if self.spec.keep_weights != 0 and not executor.simulated
            else None
        )
        grid = self.space.grid() if self.spec.strategy.sampler == "grid" else None
        self.grid_size = math.prod(len(values) for values in grid.values()) if grid is not None else None
        self.slots = 0
        #: trials whose configuration was handed to a retry; they do not count towards max_trials
        self.requeued = 0
        self.complete_by_dedup: dict[str, tuple[int, int]] = {}  # dedup hash -> (trial_id, number)
        self.stop_reason: str | None = None
        self.done = False
        self.metric_source_id: int | None = None
        self.transform_source_id: int | None = None
        self._unsaved: _Unsaved | None = None
        self._relaunch: list[_Relaunch] = []
        self.screening: Screening | None = None

    @property
    def running(self) -> dict[int, Any]:
        return self.reports.running

    # ---- start / resume ----------------------------------------------------------------------
    def resume(self, slots: int, owner: str, lease_s: float, lease_expired: bool = False) -> None:
        """Claim the job's lease, mark it running, replay the study, and run the trials a previous
        server left running again from their start, in place: the same numbers and configurations,
        so that the job goes on as if it had never stopped.

        ``slots`` may be below ``parallelism`` on a small cluster; the reproducible order still
        follows ``parallelism``, so the architectures sampled do not depend on the cluster.
        """
        now = self.executor.now()
        with self.store.write() as session:
            if not leases.claim_job(session, self.job_id, owner=owner, lease_s=lease_s):
                self.done = True  # cancelled, or another server holds it, since the manager's read
                return
            self.started_at = runs.mark_started(session, self.job_id, now)
            interrupted = runs.restart_interrupted(session, self.job_id, started_at=now)
            self.metric_source_id = metric_source_id(session, self.info.metric)
            self.transform_source_id = transform_source_id(session, self.spec.transform)
        if interrupted:
            how = "went away without handing it back (its lease expired)" if lease_expired else "stopped"
            log.warning(
                "job %s: trial(s) %s were running when the server running the job %s; they run again from "
                "their start", self.job_id, ", ".join(f"#{n}" for n in interrupted), how,
            )
        with self.store.read() as session:
            trials = runs.job_trials(session, self.job_id)
            hidden_from = len(trials) - self.parallelism + 1 if self.gate.reproducible else len(trials)
            for trial in trials:
                replay_trial(self, trial, hidden=trial.number >= hidden_from)
            retried = {t.retry_of_trial_id for t in trials if t.retry_of_trial_id is not None}
            pending_retries = [t for t in trials if t.requeued and t.trial_id not in retried]
            initial_asked = sum(1 for t in trials if t.origin == "initial")
            screened_asked = sum(1 for t in trials if t.origin == "screened")
            self._relaunch = [_Relaunch.of(t) for t in trials if t.number in interrupted]
            self.gate.restore_study_attrs(session.get(Job, self.job_id).sampler_attrs)  # type: ignore[union-attr]
        for trial in pending_retries:
            self.study.enqueue_trial(trial.params, user_attrs={ORIGIN: "retry", RETRY_OF: trial.trial_id})
        for encoding in self.spec.strategy.initial_architectures[initial_asked:]:
            self.study.enqueue_trial(self.space.encode_params(encoding), user_attrs={ORIGIN: "initial"})
        self.slots = slots
        resources = self.spec.resources
        self.executor.open_job(self.job_id, slots, TrialResources(cpus=resources.cpus_per_trial, gpus=resources.gpus_per_trial))
        self.screening = Screening.resume(self, self.template, screened_asked)

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
        if self.stop_reason is None and self.reports.fatal_error is not None:
            self._stop("failed", self.reports.fatal_error)
        self._check_timeouts()
        if self.stop_reason is None and self.screening is not None and not self.screening.settle():
            return  # the workers are scoring the candidates (``strategy.screen``)
        while self._relaunch and self.stop_reason is None and self.executor.free_slots(self.job_id) > 0:
            again = self._relaunch.pop(0)
            self._start(again.trial_id, self.gate.running_trial(again.number), again.encoding, again.nn_name,
                        again.nn_code, again.prm)
        # bounded, so that a space that only yields duplicates cannot keep the loop from time limits
        for _ in range(_MAX_ASKS_PER_TICK):
            if not (
                self.stop_reason is None
                and self.executor.free_slots(self.job_id) > 0
                and (self._unsaved is not None or self._may_ask())
            ):
                break
            self._launch()
        if not self.running and (self.stop_reason is not None or (self._budget_spent() and not self._relaunch)):
            self._finish_job()

    def on_event(self, event: ExecutorEvent) -> None:
        self.reports.handle(event)

    # ---- asking ------------------------------------------------------------------------------
    def _budget_spent(self) -> bool:
        asked = self.gate.asked - self.requeued
        max_trials = self.spec.budget.max_trials
        if max_trials is not None and asked >= max_trials:
            return True
        # a grid search ends when every point was asked (Optuna would start over)
        return self.grid_size is not None and asked >= self.grid_size

    def _may_ask(self) -> bool:
        in_flight = [r.number for r in self.running.values()] + [r.number for r in self._relaunch]
        return not self._budget_spent() and self.gate.may_ask(in_flight)

    def note_result(self, dedup: str, trial_id: int, number: int) -> None:
        """A complete trial of this architecture class; the lowest number stands for the class, as
        on replay (trials finish in any order)."""
        found = self.complete_by_dedup.get(dedup)
        if found is None or number < found[1]:
            self.complete_by_dedup[dedup] = (trial_id, number)

    def _original_of(self, dedup: str) -> int | None:
        """A complete trial computing the same function, among those the sampler has seen."""
        found = self.complete_by_dedup.get(dedup)
        if found is None or (self.gate.reproducible and not self.gate.sees(found[1])):
            return None
        return found[0]

    def _launch(self) -> None:
        if self._unsaved is None:
            trial = self.gate.ask()
            self._unsaved = _Unsaved(trial, self.space.sample(trial))
        unsaved = self._unsaved
        trial, encoding = unsaved.trial, unsaved.encoding
        prm = {**self.spec.prm, **self.space.hyperparameters(encoding)}
        dedup = dedup_hash(self.space, encoding, self.in_shape, self.out_shape)
        now = self.executor.now()
        # If the write fails, nothing is stored and ``_unsaved`` keeps the trial for the next try,
        # so the numbers in the store stay dense (the study is replayed from them on restart). A
        # commit whose answer was lost may have landed: then the row is already there.
        retrying, unsaved.attempted = unsaved.attempted, True
        with self.store.write() as session:
            row = runs.trial_by_number(session, self.job_id, trial.number) if retrying else None
            if row is None:
                row = self._new_row(session, trial, encoding, dedup, prm, self._original_of(dedup), now)
                runs.save_study_attrs(session, self.job_id, self.gate.study_attrs())
            trial_id, values = row.trial_id, row.values
            nn_code, nn_name = row.architecture.nn_code, row.architecture.nn_name  # type: ignore[union-attr]
            duplicate_id, retry_of, cache_hit = row.duplicate_of_trial_id, row.retry_of_trial_id, row.cache_hit
        self._unsaved = None
        self.gate.asked_one()
        self.reports.count_losses(trial_id, retry_of, None)
        if duplicate_id is not None:
            what = "is a cache hit of" if cache_hit else "duplicates"
            log.info("job %s trial %s %s trial %s", self.job_id, trial.number, what, duplicate_id)
            self.gate.record(trial.number, OptunaState.COMPLETE, values)
            return
        self._start(trial_id, trial, encoding, nn_name, nn_code, prm)

    def _start(
        self, trial_id: int, trial: optuna.Trial, encoding: str, nn_name: str, nn_code: str, prm: dict[str, Any]
    ) -> None:
        """Hand a stored trial to a worker."""
        self.reports.started(trial_id, trial)
        weights = str(self.weights.path(trial.number)) if self.weights is not None else None
        payload = replace(self.template, trial_id=trial_id, number=trial.number, nn_name=nn_name, nn_code=nn_code,
                          prm=prm, arch=encoding, weights_path=weights)  # fmt: skip
        self.executor.start_trial(self.job_id, payload)
        if self.spec.strategy.pruner == "none":
            # nothing is decided between epochs: the worker runs them and the finish back to back
            # (a cancel, a time limit or an epoch timeout still stops it at once)
            self.executor.queue_rest(trial_id, self.spec.budget.epochs)

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
            origin=trial.user_attrs.get(ORIGIN, "sampler"),
            retry_of_trial_id=trial.user_attrs.get(RETRY_OF),
            metric_source_id=self.metric_source_id,
            transform_source_id=self.transform_source_id,
            started_at=now,
            heartbeat_at=now,
            sampler_attrs=self.gate.sampler_attrs(trial),
        )
        row.architecture = architecture
        # simulated results (a tabular executor) neither enter the cache nor take from it
        if not self.executor.simulated:
            row.cache_key = cache_key(architecture.arch_hash, self.spec, samples=self.info.num_samples, prm=prm)
        reuse_result(
            session,
            row,
            duplicate_of=duplicate_id,
            use_cache=self.spec.strategy.cache,
            objectives=self.objectives,
            now=now,
        )
        session.add(row)
        session.flush()
        return row

    # ---- stopping ----------------------------------------------------------------------------
    def _check_timeouts(self) -> None:
        limit = self.spec.budget.epoch_timeout_s
        if limit is not None:
            self.reports.stop_slower_than(limit)

    def _stop(self, reason: str, message: str) -> None:
        """Stop asking; stop running trials now (their finished epochs stay in the store).

        Each trial is written off before its worker is stopped; if the store fails half-way, the
        next tick stops the rest (``stop_reason`` is set only once all are done)."""
        self.reports.stop_all(message)
        self.stop_reason = reason

    def _finish_job(self) -> None:
        self.gate.tell_all()
        with self.store.write() as session:
            status = runs.finish_job(
                session,
                self.job_id,
                cancelled=self.stop_reason == "cancelled",
                error=self.reports.fatal_error if self.stop_reason == "failed" else None,
                finished_at=self.executor.now(),
            )
        self.executor.close_job(self.job_id)
        self.done = True
        log.info("job %s %s", self.job_id, status)

    def abandon(self) -> None:
        """Server shutdown: drop the workers; running trials stay ``running``, to run again in place."""
        self.executor.close_job(self.job_id)
