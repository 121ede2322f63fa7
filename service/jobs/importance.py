"""Which search parameters matter: Optuna's importance evaluators on a job's finished trials.

The trials are rebuilt as an in-memory Optuna study from what the store keeps (each trial's sampled
parameters with their distributions, and its objective values), so the answer is Optuna's own,
as ``optuna.importance.get_param_importances`` gives it on a study that ran in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import json_to_distribution
from optuna.importance import FanovaImportanceEvaluator, MeanDecreaseImpurityImportanceEvaluator

from ..store import Trial

__all__ = ["EVALUATORS", "param_importances"]

#: the evaluators a request may name; fANOVA is Optuna's default
EVALUATORS = {"fanova": FanovaImportanceEvaluator, "mean_decrease_impurity": MeanDecreaseImpurityImportanceEvaluator}


def param_importances(
    objectives: Sequence[dict[str, Any]], trials: Sequence[Trial], *, evaluator: str = "fanova", seed: int = 0
) -> list[dict[str, float]]:
    """Per objective, each parameter's importance (they sum to 1; most important first), from the
    complete ``trials`` with values. Parameters that did not vary, or that not every trial has (a
    conditional space's), are left out, as Optuna leaves them out; fewer than two trials give none."""
    study = optuna.create_study(directions=[o["direction"] for o in objectives])
    for trial in trials:
        if not trial.values or len(trial.values) != len(objectives) or not trial.distributions:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=trial.params,
                distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
                values=trial.values,
            )
        )
    if len(study.trials) < 2:
        return [{} for _ in objectives]
    answers = []
    for index in range(len(objectives)):
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=EVALUATORS[evaluator](seed=seed), target=lambda t, i=index: t.values[i]
            )
        except (RuntimeError, ValueError):  # no parameter that every trial has and that varies
            importances = {}
        answers.append({name: float(value) for name, value in importances.items()})
    return answers
