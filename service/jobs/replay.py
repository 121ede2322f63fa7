"""A stored trial back into a rebuilt study: what a resumed job's sampler and pruner see.

On resume the study is rebuilt from the store, trial by trial in number order, as it was when the
job stopped: finished trials with their outcomes (held back when the reproducible order had not
told them yet), running ones as running, each with the sampler's own per-trial attributes, the
curve the pruner judged, and what the job's runner counts (retries, losses, failures, results).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.distributions import json_to_distribution
from optuna.trial import TrialState as OptunaState

from ..store import Trial, TrialState
from .strategies import CURVE_ATTR, STATIC_ATTR

if TYPE_CHECKING:
    from .runner import JobRunner

__all__ = ["replay_trial"]

_STATES = {
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.PRUNED: OptunaState.PRUNED,
    TrialState.RUNNING: OptunaState.RUNNING,  # interrupted: it runs again, in place
}


def replay_trial(runner: JobRunner, trial: Trial, *, hidden: bool) -> None:
    """Put ``trial`` back into ``runner``'s study as its next number; ``hidden`` finished ones stay
    untold (reproducible order)."""
    if trial.number != runner.gate.asked:
        raise RuntimeError(f"job {runner.job_id}: trial numbers in the store are not dense at {trial.number}")
    state = _STATES.get(trial.state, OptunaState.FAIL)
    intermediate: dict[int, float] = {}
    user_attrs: dict[str, Any] = {}
    if runner.spec.strategy.pruner != "none" and state != OptunaState.RUNNING:
        values = (runner.objectives.pruning_value(e) for e in trial.epoch_rows)
        intermediate = {e.epoch: v for e, v in zip(trial.epoch_rows, values) if v is not None}
        if runner.objectives.multi:
            architecture = trial.architecture
            user_attrs = {
                CURVE_ATTR: {str(k): v for k, v in intermediate.items()},
                STATIC_ATTR: runner.objectives.static(
                    params=architecture.num_params if architecture is not None else None,
                    flops=architecture.flops if architecture is not None else None,
                    latency_ms=trial.latency_ms,
                    **(trial.proxies or {}),
                ),
            }
            intermediate = {}  # Optuna keeps no intermediate values for multi-objective trials
    runner.gate.replay(
        state=state,
        values=trial.values if state == OptunaState.COMPLETE else None,
        params=trial.params,
        distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
        intermediate_values=intermediate,
        user_attrs=user_attrs,
        system_attrs=trial.sampler_attrs,
        hidden=hidden,
    )
    runner.requeued += int(trial.requeued)
    runner.reports.count_losses(trial.trial_id, trial.retry_of_trial_id, trial.error)
    runner.reports.replay_failure(trial)
    if state == OptunaState.COMPLETE and trial.architecture is not None and trial.duplicate_of_trial_id is None:
        runner.note_result(trial.architecture.dedup_hash, trial.trial_id, trial.number)
