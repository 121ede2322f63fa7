"""A job's objectives: its Optuna study, and the objective values read from a trial's metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from search_spaces import SearchSpace

from .spec import CURVE_OBJECTIVES, JobCreate
from .strategies import make_multi_objective_pruner, make_pruner, make_sampler

__all__ = ["Objectives", "build_study"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def build_study(job_id: int, spec: JobCreate, space: SearchSpace) -> optuna.Study:
    """The job's in-memory study with its seeded sampler and its pruner."""
    strategy, budget = spec.strategy, spec.budget
    directions = [o.direction for o in spec.objectives]
    sampler = make_sampler(
        strategy.sampler,
        strategy.sampler_params,
        seed=strategy.seed,
        n_objectives=len(directions),
        grid=space.grid() if strategy.sampler == "grid" else None,
    )
    if len(directions) == 1:
        pruner = make_pruner(strategy.pruner, strategy.pruner_params, epochs=budget.epochs, parallelism=budget.parallelism)
    else:
        pruner = make_multi_objective_pruner(
            strategy.pruner,
            strategy.pruner_params,
            epochs=budget.epochs,
            parallelism=budget.parallelism,
            directions=directions,
            curve_index=Objectives(spec, "").curve_index,
        )
    return optuna.create_study(study_name=f"cellar-job-{job_id}", directions=directions, sampler=sampler, pruner=pruner)


class Objectives:
    """The job's objectives in its order, and how to read them off a trial's metrics.

    ``metric_key`` is the name of the dataset's validation metric as an objective
    (``val_accuracy``, ``val_rmse``), which trials report as ``val_metric``.
    """

    def __init__(self, spec: JobCreate, metric_key: str) -> None:
        self.metrics = [o.metric for o in spec.objectives]
        self.metric_key = metric_key
        self.multi = len(self.metrics) > 1
        #: the objective with a per-epoch curve (a pruned job has exactly one)
        self.curve_index = next((i for i, m in enumerate(self.metrics) if m in CURVE_OBJECTIVES), 0)

    def values(self, **metrics: Any) -> list[float] | None:
        """The objective values from a trial's metrics (None if one is missing)."""
        by_name = {self.metric_key: metrics.get("val_metric"), **metrics}
        values = [by_name.get(metric) for metric in self.metrics]
        if any(v is None for v in values):
            return None
        return [float(v) for v in values]  # type: ignore[arg-type]

    def final_values(
        self, last_epoch: dict[str, Any], setup: dict[str, Any], final: dict[str, Any]
    ) -> list[float] | None:
        """A finished trial's objective values: from its last epoch, its set-up report (the model's
        size and speed) and its final report."""
        return self.values(
            val_metric=last_epoch.get("val_metric"),
            val_loss=last_epoch.get("val_loss"),
            params=setup.get("num_params"),
            flops=setup.get("flops"),
            latency_ms=setup.get("latency_ms"),
            train_seconds=final.get("train_seconds"),
            **(setup.get("proxies") or {}),
        )

    def static(self, **metrics: Any) -> list[float | None]:
        """Per objective, its value when known before training ends (None for the curve)."""
        return [None if i == self.curve_index else metrics.get(m) for i, m in enumerate(self.metrics)]

    def pruning_value(self, epoch: Any) -> float | None:
        """The per-epoch value the pruner judges: the curve objective's own metric, from an
        epoch row or an epoch report."""
        get: Callable[[str], Any] = epoch.get if isinstance(epoch, dict) else lambda key: getattr(epoch, key)
        value = get("val_loss") if self.metrics[self.curve_index] == "val_loss" else get("val_metric")
        return None if value is None else float(value)
