"""Regularized ("aging") evolution as an Optuna sampler (Real et al. 2019; NAS-Bench-201's REA)."""

from __future__ import annotations

import math
import secrets
import zlib
from typing import Any, ClassVar

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["RegularizedEvolutionSampler"]


class RegularizedEvolutionSampler(BaseSampler):
    """Regularized ("aging") evolution, Real et al. 2019, as in NAS-Bench-201's REA baseline.

    Until ``population_size`` trials are complete, parameters are sampled at random. After that,
    each new trial is a child: the population is the ``population_size`` most recent complete
    trials (by trial number, so the oldest dies whatever its value: the "regularized" part);
    ``sample_size`` of them are drawn uniformly without replacement, and the best of those (in the
    study's direction; ties go to the older) is the parent. The child copies the parent's parameters
    except one, chosen uniformly among the parent's parameters that can take another value, which
    gets a different value: another choice uniformly for a categorical, a new draw from the
    distribution for a number (redrawn up to 16 times while it equals the parent's).

    Conditional spaces work because everything is sampled per parameter (``sample_independent``):
    the parent and the parameter to mutate are chosen once per trial, in ``before_trial``, and kept
    as the trial's system attribute ``"cellar:evolution"`` (``{"parent": number, "mutate": name}``,
    ``None`` while sampling at random). A parameter the parent did not have, or had with a value the
    new distribution does not contain, is drawn at random. If the mutated parameter is never asked
    (a branch the child does not take) the child may equal the parent; REA tolerates that (Cellar's
    manager records a repeat of a completed architecture as a duplicate instead of training it).

    Randomness is derived from ``(seed, trial number, parameter name)``, not from a stream, so the
    same seed and the same history give the same proposals whatever was asked before or in which
    order. Single objective only (``ValueError`` otherwise).
    """

    PLAN_ATTR: ClassVar[str] = "cellar:evolution"
    _MUTATION_DRAWS: ClassVar[int] = 16

    def __init__(self, population_size: int = 20, sample_size: int = 5, seed: int | None = None) -> None:
        if population_size < 1:
            raise ValueError(f"population_size must be at least 1, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size must be in 1..population_size ({population_size}), got {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self._seed = (seed if seed is not None else secrets.randbits(64)) % 2**64

    # -- BaseSampler ---------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._seed = secrets.randbits(64)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._check_single_objective(study)
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._check_single_objective(study)
        self._plan(study, trial)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self._check_single_objective(study)
        plan = self._plan(study, trial)
        if plan["parent"] is not None:
            parent = study._storage.get_trial(
                study._storage.get_trial_id_from_study_id_trial_number(study._study_id, plan["parent"])
            )
            if param_name in parent.params:
                value = parent.params[param_name]
                if param_name == plan["mutate"]:
                    return self._mutate(study, trial, param_name, param_distribution, value)
                if _holds(parent.distributions[param_name], param_distribution, value):
                    return value
        return self._draw(study, trial, param_name, param_distribution, 0)

    # -- internals -----------------------------------------------------------------------------
    @staticmethod
    def _check_single_objective(study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError(
                "RegularizedEvolutionSampler handles a single objective; for several use NSGAIISampler, "
                "TPESampler, GPSampler or RandomSampler"
            )

    def _seed_for(self, number: int, *tags: int) -> int:
        return int(np.random.SeedSequence([self._seed, number, *tags]).generate_state(1)[0])

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        # Optuna's own samplers keep per-trial state the same way (storage system attributes)
        plan = trial.system_attrs.get(self.PLAN_ATTR)
        if plan is None:
            plan = self._choose_parent(study, trial)
            study._storage.set_trial_system_attr(trial._trial_id, self.PLAN_ATTR, plan)
        return plan

    def _choose_parent(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        complete = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and not math.isnan(t.value)
        ]
        if len(complete) < self.population_size:
            return {"parent": None, "mutate": None}
        population = sorted(complete, key=lambda t: t.number)[-self.population_size :]
        rng = np.random.default_rng(self._seed_for(trial.number, 0))
        drawn = [population[i] for i in rng.choice(len(population), size=self.sample_size, replace=False)]
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        parent = min(drawn, key=lambda t: (sign * t.value, t.number))
        mutable = sorted(name for name, distribution in parent.distributions.items() if not distribution.single())
        mutate = mutable[int(rng.integers(len(mutable)))] if mutable else None
        return {"parent": parent.number, "mutate": mutate}

    def _draw(self, study: Study, trial: FrozenTrial, name: str, distribution: BaseDistribution, attempt: int) -> Any:
        seed = self._seed_for(trial.number, 1, zlib.crc32(name.encode()), attempt)
        return RandomSampler(seed=seed).sample_independent(study, trial, name, distribution)

    def _mutate(self, study: Study, trial: FrozenTrial, name: str, distribution: BaseDistribution, old: Any) -> Any:
        if isinstance(distribution, CategoricalDistribution):
            try:
                old_index = distribution.to_internal_repr(old)
            except ValueError:  # the parent's value is no longer a choice: any choice differs
                return self._draw(study, trial, name, distribution, 0)
            others = [c for i, c in enumerate(distribution.choices) if i != old_index]
            if not others:
                return old
            rng = np.random.default_rng(self._seed_for(trial.number, 2, zlib.crc32(name.encode())))
            return others[int(rng.integers(len(others)))]
        value = old
        for attempt in range(self._MUTATION_DRAWS):
            value = self._draw(study, trial, name, distribution, attempt)
            if value != old:
                break
        return value


def _holds(old: BaseDistribution, new: BaseDistribution, value: Any) -> bool:
    """Whether ``value``, drawn from ``old``, is a valid value of ``new`` (same kind, in range)."""
    if type(old) is not type(new):
        return False
    try:
        return bool(new._contains(new.to_internal_repr(value)))  # what Trial checks for fixed params
    except (ValueError, TypeError):
        return False
