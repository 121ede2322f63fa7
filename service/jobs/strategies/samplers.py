"""Samplers by name: Optuna's, Cellar's regularized evolution, and a grid sampler that counts.

``make_sampler`` turns a job's ``strategy.sampler`` and ``sampler_params`` into a seeded Optuna
sampler. Importing this module imports neither torch nor Optuna's GP code; ``GPSampler`` loads
torch when it first fits a model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .evolution import RegularizedEvolutionSampler
from .params import validate_sampler_params

__all__ = ["CountedGridSampler", "make_sampler"]


def make_sampler(
    name: str,
    params: dict[str, Any],
    *,
    seed: int,
    n_objectives: int,
    grid: dict[str, list[Any]] | None,
) -> BaseSampler:
    """The sampler ``name`` with ``params`` (validated here again), seeded with ``seed``.

    ``grid`` is the search space's grid, needed by ``"grid"`` only.
    """
    p = validate_sampler_params(name, params, n_objectives=n_objectives)
    # the experimental-argument warnings (group, deterministic_objective) say nothing to a job's owner
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **p)
        if name == "random":
            return RandomSampler(seed=seed)
        if name == "gp":
            # conditional spaces (gnn, kan) sample their conditional parameters independently on
            # every trial; a warning per trial would only fill the log
            return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False, **p)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **p)
        if name == "evolution":
            return RegularizedEvolutionSampler(seed=seed, **p)
    if grid is None:
        raise ValueError("sampler 'grid' needs the search space's grid; use a plain product space such as 'nb201'")
    return CountedGridSampler(grid, seed=seed)


class CountedGridSampler(optuna.samplers.GridSampler):
    """Optuna's ``GridSampler`` for jobs that end by counting the grid.

    Optuna's ``after_trial`` scans every trial of the study on each ``tell`` (quadratic: 3,000
    NB-201 grid trials took 200 s) to call ``study.stop()`` once the grid is exhausted, which
    raises outside ``study.optimize``. The manager asks a grid job exactly as many trials as the
    grid has points and then ends it, so nothing here needs to stop the study."""

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        return None
