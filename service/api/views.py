"""Store rows -> API schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search_spaces import SearchSpaceError, get_search_space

from ..jobs.screen import ATTR as SCREEN_ATTR
from ..jobs.strategies import pareto
from ..store import Job, Trial, TrialState
from .schemas import EpochPublic, JobPublic, ParetoPublic, TrialCounts, TrialPublic

__all__ = [
    "best_trials",
    "counted_results",
    "drawing",
    "job_public",
    "non_dominated",
    "pareto_public",
    "trial_public",
]


def _named(metric: str, value: float | None) -> dict[str, float | None]:
    return {"accuracy": value if metric == "acc" else None, "rmse": value if metric == "rmse" else None}


def trial_public(trial: Trial, metric: str, *, with_code: bool = False) -> TrialPublic:
    architecture = trial.architecture
    val, test = _named(metric, trial.val_metric), _named(metric, trial.test_metric)
    return TrialPublic(
        id=trial.trial_id,
        job_id=trial.job_id,
        number=trial.number,
        state=trial.state,
        search_space=architecture.search_space if architecture else None,
        arch=architecture.encoding if architecture else None,
        nn=architecture.nn_name if architecture else None,
        params=architecture.num_params if architecture else None,
        flops=architecture.flops if architecture else None,
        latency_ms=trial.latency_ms,
        proxies=trial.proxies,
        metric=metric,
        val_metric=trial.val_metric,
        test_metric=trial.test_metric,
        val_accuracy=val["accuracy"],
        test_accuracy=test["accuracy"],
        val_rmse=val["rmse"],
        test_rmse=test["rmse"],
        loss=trial.loss,
        train_seconds=trial.train_seconds,
        values=trial.values,
        epochs=[
            EpochPublic(
                epoch=e.epoch,
                loss=e.loss,
                val_loss=e.val_loss,
                val_metric=e.val_metric,
                val_accuracy=_named(metric, e.val_metric)["accuracy"],
                val_rmse=_named(metric, e.val_metric)["rmse"],
                elapsed_seconds=e.elapsed_seconds,
            )
            for e in trial.epoch_rows
        ],
        choices=trial.params,
        prm=trial.prm,
        seed=trial.seed,
        split=trial.split,
        duplicate_of=trial.duplicate_of_trial_id,
        origin=trial.origin,
        retry_of=trial.retry_of_trial_id,
        cache_hit=bool(trial.cache_hit),
        requeued=trial.requeued,
        interruptions=trial.interruptions or 0,
        worker=trial.worker,
        error=trial.error,
        created_at=trial.created_at,
        started_at=trial.started_at,
        finished_at=trial.finished_at,
        nn_code=architecture.nn_code if (with_code and architecture) else None,
    )


def drawing(job: Job, trial: Trial) -> dict[str, Any] | None:
    """The trial's architecture as the dashboard draws it (``SearchSpace.drawing``), in its job's space."""
    if trial.architecture is None or trial.architecture.encoding is None:
        return None
    space = job.spec.get("search_space", {})
    try:
        return get_search_space(space.get("kind", job.search_space), space.get("params"), task=job.task).drawing(
            trial.architecture.encoding
        )
    except (SearchSpaceError, ValueError):  # a space not in this release, or an encoding it cannot read
        return None


def non_dominated(trials: Sequence[Trial], directions: Sequence[str]) -> list[Trial]:
    """The trials no other dominates (on their objective values; trials without values are left out)."""
    scored = [t for t in trials if t.values is not None and len(t.values) == len(directions)]
    return [scored[i] for i in pareto.non_dominated([t.values for t in scored], directions)]  # type: ignore[misc]


def counted_results(trials: Sequence[Trial]) -> list[Trial]:
    """Complete trials with values, without in-job duplicates (their original stands for them);
    cache hits are the job's own results and stay."""
    return [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and (t.duplicate_of_trial_id is None or t.cache_hit)
    ]


def best_trials(job: Job, trials: Sequence[Trial]) -> tuple[Trial | None, list[Trial]]:
    """(the best trial of a single-objective job, the non-dominated set)."""
    directions = [o["direction"] for o in job.spec.get("objectives", [])]
    complete = counted_results(trials)
    front = sorted(non_dominated(complete, directions), key=lambda t: t.number)
    best = None
    if len(directions) == 1 and complete:
        sign = 1.0 if directions[0] == "maximize" else -1.0
        best = max(complete, key=lambda t: (sign * t.values[0], -t.number))  # type: ignore[index]
    return best, front


def pareto_public(job: Job, trials: Sequence[Trial], reference: list[float] | None) -> ParetoPublic:
    """The job's Pareto set with its hypervolume; ``reference`` defaults to ``reference_point``."""
    objectives = job.spec.get("objectives", [])
    directions = [o["direction"] for o in objectives]
    complete = counted_results(trials)
    front = sorted(non_dominated(complete, directions), key=lambda t: t.number)
    volume = None
    if front:
        if reference is None:
            reference = pareto.reference_point([t.values for t in front], directions)  # type: ignore[misc]
        volume = pareto.hypervolume([t.values for t in front], directions, reference)  # type: ignore[misc]
    return ParetoPublic(
        job_id=job.job_id,
        objectives=objectives,
        reference_point=reference if front else None,
        hypervolume=volume,
        count=len(front),
        data=[trial_public(t, job.metric) for t in front],
    )


def job_public(job: Job, counts: dict[str, int], best: TrialPublic | None, front: Sequence[TrialPublic]) -> JobPublic:
    """A job's view; ``best`` and ``front`` are the views of its best and non-dominated trials."""
    return JobPublic(
        id=job.job_id,
        name=job.name,
        status=job.status,
        search_space=job.search_space,
        dataset=job.dataset,
        task=job.task,
        metric=job.metric,
        cancel_requested=job.cancel_requested,
        error=job.error,
        counts=TrialCounts(**counts),
        max_trials=job.spec.get("budget", {}).get("max_trials"),
        simulated_on=(job.spec.get("executor") or {}).get("table"),
        screen=(job.sampler_attrs or {}).get(SCREEN_ATTR),
        best_trial=best,
        best_trials=list(front),
        spec=job.spec,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
