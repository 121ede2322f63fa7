"""A job's study written into an Optuna storage, so that ``optuna.load_study`` and optuna-dashboard
read it: each trial with its parameters and their distributions, its state, its objective values,
its per-epoch validation metric as intermediate values, its times, and Cellar's own facts as user
attributes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import json_to_distribution
from optuna.trial import FrozenTrial, TrialState as OptunaState

from ..store import Job, Trial, TrialState

__all__ = ["STATES", "study_name", "write_study"]

STATES = {
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.PRUNED: OptunaState.PRUNED,
    TrialState.FAILED: OptunaState.FAIL,
    TrialState.RUNNING: OptunaState.RUNNING,
}


def study_name(job: Job) -> str:
    return f"cellar-job-{job.job_id}-{job.name}"


def _frozen(trial: Trial) -> FrozenTrial:
    state = STATES[trial.state]
    values = list(trial.values) if state == OptunaState.COMPLETE and trial.values else None
    finished = trial.finished_at or trial.started_at or trial.created_at
    user_attrs: dict[str, Any] = {
        "cellar_trial_id": trial.trial_id,
        "arch": trial.architecture.encoding if trial.architecture else None,
        "nn": trial.architecture.nn_name if trial.architecture else None,
        "params": trial.architecture.num_params if trial.architecture else None,
        "test_metric": trial.test_metric,
        "val_metric": trial.val_metric,
        "train_seconds": trial.train_seconds,
        "origin": trial.origin,
    }
    if trial.duplicate_of_trial_id is not None:
        user_attrs["duplicate_of"] = trial.duplicate_of_trial_id
        user_attrs["cache_hit"] = bool(trial.cache_hit)
    if trial.error:
        user_attrs["error"] = trial.error[:2000]
    return FrozenTrial(
        number=trial.number,
        state=state,
        value=None,
        values=values,
        datetime_start=trial.started_at or trial.created_at,
        datetime_complete=None if state == OptunaState.RUNNING else finished,
        params=dict(trial.params or {}),
        distributions={k: json_to_distribution(v) for k, v in (trial.distributions or {}).items()},
        user_attrs={k: v for k, v in user_attrs.items() if v is not None},
        system_attrs={},
        intermediate_values={
            e.epoch: e.val_metric for e in trial.epoch_rows if e.val_metric is not None and math.isfinite(e.val_metric)
        },
        trial_id=0,  # the storage numbers its own
    )


def write_study(job: Job, trials: Sequence[Trial], storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """Create the job's study in ``storage`` (an RDB URL such as ``sqlite:///job.db`` or a storage)
    and add every trial, in number order. A study of that name must not exist there yet."""
    objectives = job.spec.get("objectives", [])
    study = optuna.create_study(
        storage=storage, study_name=study_name(job), directions=[o["direction"] for o in objectives]
    )
    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna's words
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o["metric"] for o in objectives])
    for key, value in {
        "cellar_job_id": job.job_id,
        "search_space": job.spec.get("search_space"),
        "dataset": job.dataset,
        "sampler": job.spec.get("strategy", {}).get("sampler"),
        "status": job.status,
    }.items():
        study.set_user_attr(key, value)
    study.add_trials([_frozen(t) for t in sorted(trials, key=lambda t: t.number)])
    return study
