"""The running trials of one job and the workers' reports about them.

A worker reports a trial's setup (the model is built and measured), each epoch, and the end
(a final report or an error). Each report is written to the store first, then told to the study
through the job's ``AskTellGate``; pruning is decided after each epoch.

Two failure rules live here. A trial whose worker process died is not the trial's fault: its
configuration runs again (``budget.trial_retries``). A trial whose own code raised is not retried;
and when the first ``budget.fail_fast_after`` trials of a job all fail with the same error (say a
model whose ``forward`` always raises), every further trial would too, so the job stops with that
error instead of running its whole budget to the same end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState as OptunaState

from workers.executor import ExecutorEvent

from ..store import Trial, TrialState, runs
from .strategies import CURVE_ATTR, STATIC_ATTR

if TYPE_CHECKING:
    from .runner import JobRunner

__all__ = ["ORIGIN", "RETRY_OF", "WORKER_LOST", "RunningTrial", "TrialReports", "error_signature", "fail_fast_error"]

log = logging.getLogger(__name__)

#: user attributes of an enqueued trial: why it runs, and which trial it runs again
ORIGIN = "cellar_origin"
RETRY_OF = "cellar_retry_of"
WORKER_LOST = "WorkerLost"
#: errors the manager writes itself rather than a trial's code raising them
_MANAGER_ERRORS = (WORKER_LOST, "interrupted:", "EpochTimeout:", "stopped:", "the job was cancelled", "job failed:")


@dataclass
class RunningTrial:
    """A trial whose worker is busy with it."""

    trial_id: int
    number: int
    optuna_trial: optuna.Trial
    call_started: float = field(default_factory=time.monotonic)
    setup: dict[str, Any] = field(default_factory=dict)
    last_epoch: dict[str, Any] = field(default_factory=dict)
    #: the curve objective by epoch (multi-objective pruning reads it from the trial's user attrs)
    curve: dict[str, float] = field(default_factory=dict)


def error_signature(error: str) -> str:
    """What identifies an error across trials: its first line (exception type and message),
    without the traceback, whose frames name the trial's own files."""
    return error.strip().splitlines()[0].strip() if error.strip() else ""


def fail_fast_error(signatures: list[str], limit: int) -> str | None:
    """The job's error once its first ``limit`` trials (``budget.fail_fast_after``) all failed with
    the same error (their ``error_signature``s), else None."""
    if len(signatures) < limit or len(set(signatures)) != 1:
        return None
    return (
        f"stopped: the first {len(signatures)} trials all failed with the same error, so every "
        f"trial would (budget.fail_fast_after = {limit}); fix it and submit again: {signatures[0]}"
    )


class TrialReports:
    """Follows one job's running trials: persists their reports, prunes, ends and retries them."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.running: dict[int, RunningTrial] = {}
        #: trial id -> worker losses in its retry chain (itself included)
        self.losses: dict[int, int] = {}
        #: set when the job must stop because its trials fail deterministically
        self.fatal_error: str | None = None
        #: a trial completed or was pruned: the job's failures are not all the same error
        self._settled = False
        self._failures: list[str] = []  # signatures of the job's trial errors, while not settled

    # ---- bookkeeping ---------------------------------------------------------------------------
    def started(self, trial_id: int, trial: optuna.Trial) -> None:
        self.running[trial_id] = RunningTrial(trial_id=trial_id, number=trial.number, optuna_trial=trial)

    def count_losses(self, trial_id: int, retry_of: int | None, error: str | None) -> None:
        """Worker losses in the trial's retry chain, itself included (bounds its retries)."""
        inherited = self.losses.get(retry_of, 0) if retry_of is not None else 0
        self.losses[trial_id] = inherited + int(bool(error and error.startswith(WORKER_LOST)))

    def replay_failure(self, trial: Trial) -> None:
        """A stored trial's part in the fail-fast rule, on resume."""
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self._settled = True
        elif trial.state == TrialState.FAILED and trial.origin != "retry" and not trial.requeued:
            if trial.error and not trial.error.startswith(_MANAGER_ERRORS):
                self._note_failure(trial.error)

    def _note_failure(self, error: str) -> None:
        limit = self.runner.spec.budget.fail_fast_after
        if self._settled or limit == 0 or self.fatal_error is not None:
            return
        self._failures.append(error_signature(error))
        self.fatal_error = fail_fast_error(self._failures, limit)
        if self.fatal_error is not None:
            log.warning("job %s: %s", self.runner.job_id, self.fatal_error)

    # ---- reports -------------------------------------------------------------------------------
    def handle(self, event: ExecutorEvent) -> None:
        running = self.running.get(event.trial_id)
        if running is None:
            return  # the trial was stopped; its late results are of no use
        printed = event.log if event.kind == "error" else event.data.pop("log", None)
        if printed:
            with self.runner.store.write() as session:
                runs.append_log(session, event.trial_id, printed)
        if event.kind == "setup":
            self._on_setup(running, event.data)
        elif event.kind == "epoch":
            self._on_epoch(running, event.data)
        elif event.kind == "final":
            self._on_final(running, event.data)
        else:
            self._on_error(running, event)

    def _on_setup(self, running: RunningTrial, data: dict[str, Any]) -> None:
        with self.runner.store.write() as session:
            runs.record_setup(session, running.trial_id, data)
        running.setup = data
        objectives = self.runner.objectives
        if self._pruning and objectives.multi:
            static = objectives.static(
                params=data.get("num_params"), flops=data.get("flops"), latency_ms=data.get("latency_ms"),
                **(data.get("proxies") or {}),
            )
            running.optuna_trial.set_user_attr(STATIC_ATTR, static)

    @property
    def _pruning(self) -> bool:
        return self.runner.spec.strategy.pruner != "none"

    def _on_epoch(self, running: RunningTrial, data: dict[str, Any]) -> None:
        epoch, epochs = int(data["epoch"]), self.runner.spec.budget.epochs
        with self.runner.store.write() as session:
            runs.record_epoch(session, running.trial_id, data)
        running.last_epoch = data
        executor = self.runner.executor
        if self._pruning:
            value = self.runner.objectives.pruning_value(data)
            if value is not None and self.runner.objectives.multi:
                running.curve[str(epoch)] = value
                running.optuna_trial.set_user_attr(CURVE_ATTR, dict(running.curve))
            elif value is not None:
                running.optuna_trial.report(value, epoch)
            if epoch < epochs and self._should_prune(running):
                self._end(running, TrialState.PRUNED, error=None)
                executor.release(running.trial_id)
                return
        running.call_started = time.monotonic()
        if epoch < epochs:
            executor.train_epoch(running.trial_id)
        else:
            executor.finish(running.trial_id)

    def _should_prune(self, running: RunningTrial) -> bool:
        if not self.runner.objectives.multi:
            return running.optuna_trial.should_prune()
        study = self.runner.study
        frozen = study.get_trials(deepcopy=False)[running.number]
        return study.pruner.prune(study, frozen)

    def _on_final(self, running: RunningTrial, data: dict[str, Any]) -> None:
        values = self.runner.objectives.final_values(running.last_epoch, running.setup, data)
        if values is None:
            raise RuntimeError(f"trial {running.trial_id}: the worker did not report every objective's metric")
        with self.runner.store.write() as session:
            runs.save_trial_attrs(session, running.trial_id, self.runner.gate.sampler_attrs(running.optuna_trial))
            dedup = runs.complete_trial(
                session, running.trial_id, values=values, data=data, finished_at=self.runner.executor.now()
            )
        self.running.pop(running.trial_id, None)
        self.runner.executor.release(running.trial_id)
        if dedup is not None:
            self.runner.note_result(dedup, running.trial_id, running.number)
        if self.runner.weights is not None:
            self.runner.weights.retain(running.number, values)
        self._settled = True
        self.runner.gate.record(running.number, OptunaState.COMPLETE, values)

    def _on_error(self, running: RunningTrial, event: ExecutorEvent) -> None:
        message = event.error or "Error: the trial failed without a message"
        if not event.worker_lost:
            detail = f"{message}\n\n{event.traceback}" if event.traceback else message
            self._end(running, TrialState.FAILED, error=detail)
            self._note_failure(message)
            return
        # the worker process died (killed, out of host memory, node lost): not the trial's fault
        if not message.startswith(WORKER_LOST):
            message = f"{WORKER_LOST}: {message}"
        losses = self.losses.get(running.trial_id, 0) + 1
        allowed = self.runner.spec.budget.trial_retries
        retry = losses <= allowed
        note = (
            f"; its configuration runs again (retry {losses} of {allowed})"
            if retry
            else f"; not retried (budget.trial_retries = {allowed} used up)"
        )
        detail = f"{message}{note}" + (f"\n\n{event.traceback}" if event.traceback else "")
        self._end(running, TrialState.FAILED, error=detail, requeued=retry)
        self.losses[running.trial_id] = losses
        if retry:
            self.runner.requeued += 1
            params = dict(running.optuna_trial.params)
            self.runner.study.enqueue_trial(params, user_attrs={ORIGIN: "retry", RETRY_OF: running.trial_id})
            log.warning("job %s trial %s lost its worker; retrying", self.runner.job_id, running.number)

    def _end(self, running: RunningTrial, state: str, error: str | None, *, requeued: bool = False) -> None:
        """Persist a trial that ended without completing (pruned, failed, stopped)."""
        if state == TrialState.PRUNED:
            self._settled = True
        with self.runner.store.write() as session:
            runs.save_trial_attrs(session, running.trial_id, self.runner.gate.sampler_attrs(running.optuna_trial))
            runs.end_trial(
                session,
                running.trial_id,
                state=state,
                error=error,
                finished_at=self.runner.executor.now(),
                requeued=requeued,
            )
        self.running.pop(running.trial_id, None)
        outcome = OptunaState.PRUNED if state == TrialState.PRUNED else OptunaState.FAIL
        self.runner.gate.record(running.number, outcome, None)

    # ---- stopping ------------------------------------------------------------------------------
    def stop_slower_than(self, limit: float) -> None:
        """Fail trials whose current step (setup with the first epoch, or one epoch) took longer."""
        now = time.monotonic()
        for running in list(self.running.values()):
            if now - running.call_started > limit:
                self._end(
                    running,
                    TrialState.FAILED,
                    error=f"EpochTimeout: a step of this trial took longer than budget.epoch_timeout_s ({limit:g} s)",
                )
                self.runner.executor.abort(running.trial_id)

    def stop_all(self, message: str) -> None:
        """Fail every running trial with ``message`` and stop its worker."""
        for running in list(self.running.values()):
            self._end(running, TrialState.FAILED, error=message)
            self.runner.executor.abort(running.trial_id)

    def abort_all(self) -> None:
        """Stop every worker without writing anything (the job is failed or taken over)."""
        for trial_id in list(self.running):
            self.runner.executor.abort(trial_id)
        self.running.clear()

