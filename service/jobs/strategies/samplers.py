"""Search strategies: samplers and pruners by name, their parameters, and what Optuna lacks.

``make_sampler`` / ``make_pruner`` turn a job's ``strategy`` (a name and a dict of parameters) into
Optuna objects; ``validate_sampler_params`` / ``validate_pruner_params`` check the parameters against
one pydantic model per name and fill in the defaults. Two strategies are Cellar's own:

- ``RegularizedEvolutionSampler``: regularized evolution (Real et al. 2019, "aging evolution"), the
  REA baseline of NAS-Bench-201, as an Optuna sampler that works with conditional search spaces.
- ``DominancePruner``: pruning for multi-objective jobs, where Optuna has none. The manager sets two
  user attributes on the trial (``CURVE_ATTR``, ``STATIC_ATTR``) and calls ``prune`` itself.

``hypervolume``, ``reference_point`` and ``non_dominated`` are the small Pareto helpers the Pareto
endpoint needs. Importing this module imports neither torch nor Optuna's GP code; ``GPSampler`` loads
torch when it first fits a model.
"""

from __future__ import annotations

import math
import secrets
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

__all__ = [
    "CURVE_ATTR",
    "MULTI_OBJECTIVE_SAMPLERS",
    "PRUNERS",
    "SAMPLERS",
    "STATIC_ATTR",
    "DominancePruner",
    "RegularizedEvolutionSampler",
    "hypervolume",
    "make_multi_objective_pruner",
    "make_pruner",
    "make_sampler",
    "non_dominated",
    "pruner_schemas",
    "reference_point",
    "sampler_schemas",
    "validate_pruner_params",
    "validate_sampler_params",
]

SAMPLERS: tuple[str, ...] = ("tpe", "random", "gp", "nsga2", "evolution", "grid")
#: ``successive_halving`` is the old name of ``asha``, kept so that stored jobs still validate
PRUNERS: tuple[str, ...] = ("none", "median", "asha", "successive_halving", "hyperband")
#: samplers that accept more than one objective (Optuna 5's GPSampler does, with log EHVI)
MULTI_OBJECTIVE_SAMPLERS: frozenset[str] = frozenset({"tpe", "random", "gp", "nsga2", "grid"})

#: user attribute of a multi-objective trial: ``{str(epoch): value}`` of the objective with a curve
CURVE_ATTR = "cellar_curve"
#: user attribute of a multi-objective trial: one value per objective known before training ends,
#: ``None`` at the curve's index (and for objectives only known at the end)
STATIC_ATTR = "cellar_static"

_LIMIT = 1_000_000  # upper bound of counts; no sensible job comes near it


# ---- parameters ------------------------------------------------------------------------------
class _Params(BaseModel):
    # strict: a JSON body's "10" or true is not silently read as a count
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class TPESamplerParams(_Params):
    """Optuna's ``TPESampler``; the defaults are its own, so ``{}`` is a plain ``TPESampler(seed=seed)``."""

    n_startup_trials: int = Field(10, ge=0, le=_LIMIT, description="random trials before TPE models the history")
    n_ei_candidates: int = Field(24, ge=1, le=10_000, description="candidates scored by expected improvement")
    multivariate: bool | None = Field(
        None, description="model the parameters jointly; null: jointly for one objective, independently for several"
    )
    group: bool = Field(False, description="model each conditional sub-space on its own (needs multivariate: true)")
    constant_liar: bool = Field(True, description="treat running trials as bad, so parallel trials spread out")

    @field_validator("group")
    @classmethod
    def _group_needs_multivariate(cls, group: bool, info: ValidationInfo) -> bool:
        if group and info.data.get("multivariate") is not True:
            raise ValueError("group needs multivariate: true")
        return group


class RandomSamplerParams(_Params):
    """Optuna's ``RandomSampler``: uniform in each parameter's distribution (log-uniform for log ones)."""


class GPSamplerParams(_Params):
    """Optuna's ``GPSampler``: Gaussian-process Bayesian optimization (log EI; log EHVI for several objectives)."""

    n_startup_trials: int = Field(10, ge=0, le=_LIMIT, description="random trials before the GP is fitted")
    deterministic_objective: bool = Field(False, description="fit the GP without observation noise")


class NSGA2SamplerParams(_Params):
    """Optuna's ``NSGAIISampler``: a genetic algorithm with non-dominated sorting (one or more objectives)."""

    population_size: int = Field(50, ge=2, le=_LIMIT, description="trials per generation")
    mutation_prob: float | None = Field(
        None, ge=0, le=1, description="probability of resampling each parameter; null: 1 / number of parameters"
    )
    crossover_prob: float = Field(0.9, ge=0, le=1, description="probability that a child is a crossover of parents")
    swapping_prob: float = Field(0.5, ge=0, le=1, description="uniform crossover: probability of each parent's gene")


class EvolutionSamplerParams(_Params):
    """Cellar's ``RegularizedEvolutionSampler`` (aging evolution, Real et al. 2019)."""

    population_size: int = Field(20, ge=1, le=_LIMIT, description="the most recent complete trials that may breed")
    sample_size: int = Field(5, ge=1, le=_LIMIT, description="tournament size: population members drawn per child")

    @field_validator("sample_size")
    @classmethod
    def _sample_within_population(cls, sample_size: int, info: ValidationInfo) -> int:
        population_size = info.data.get("population_size")
        if population_size is not None and sample_size > population_size:
            raise ValueError(f"must be at most population_size ({population_size}), got {sample_size}")
        return sample_size


class GridSamplerParams(_Params):
    """Optuna's ``GridSampler`` over the search space's grid, in a seeded random order."""


class NoPrunerParams(_Params):
    """Every trial trains for all its epochs."""


class MedianPrunerParams(_Params):
    """Prune a trial whose curve is worse than the median of completed trials at the same epoch."""

    n_startup_trials: int | None = Field(
        None, ge=0, le=_LIMIT, description="completed trials before any pruning; null: max(2, parallelism)"
    )
    n_warmup_steps: int = Field(0, ge=0, le=_LIMIT, description="epochs before this one are never pruned")


class ASHAPrunerParams(_Params):
    """Asynchronous successive halving: at rung epochs, keep the best 1/reduction_factor."""

    min_resource: int = Field(1, ge=1, le=_LIMIT, description="epoch of the first rung")
    reduction_factor: int = Field(3, ge=2, le=100, description="rungs are this factor apart; 1/this is kept")
    min_early_stopping_rate: int = Field(0, ge=0, le=100, description="the first rung is at min_resource * eta**this")


class HyperbandPrunerParams(_Params):
    """Hyperband: several successive-halving brackets, from aggressive to none, up to the job's epochs."""

    min_resource: int = Field(1, ge=1, le=_LIMIT, description="epoch of the most aggressive bracket's first rung")
    reduction_factor: int = Field(3, ge=2, le=100, description="rungs are this factor apart; 1/this is kept")


_SAMPLER_PARAMS: dict[str, type[_Params]] = {
    "tpe": TPESamplerParams,
    "random": RandomSamplerParams,
    "gp": GPSamplerParams,
    "nsga2": NSGA2SamplerParams,
    "evolution": EvolutionSamplerParams,
    "grid": GridSamplerParams,
}
_PRUNER_PARAMS: dict[str, type[_Params]] = {
    "none": NoPrunerParams,
    "median": MedianPrunerParams,
    "asha": ASHAPrunerParams,
    "successive_halving": ASHAPrunerParams,
    "hyperband": HyperbandPrunerParams,
}
_DIRECTIONS = ("minimize", "maximize")


def _choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _validate(kind: str, name: str, registry: Mapping[str, type[_Params]], params: Any) -> dict[str, Any]:
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {_choices(tuple(registry))}")
    model = registry[name]
    allowed = ", ".join(model.model_fields) or "none"
    if not isinstance(params, Mapping):
        raise ValueError(f"{kind}_params: expected an object, got {type(params).__name__}; allowed: {allowed}")
    try:
        return model.model_validate(dict(params)).model_dump(mode="json")
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            where = ".".join([f"{kind}_params", *(str(part) for part in problem["loc"])])
            if problem["type"] == "extra_forbidden":
                message = f"unknown parameter for {kind} {name!r}"
            else:
                message = problem["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise ValueError(f"{'; '.join(problems)}; allowed: {allowed}") from None


def validate_sampler_params(name: str, params: dict[str, Any], *, n_objectives: int) -> dict[str, Any]:
    """``params`` of sampler ``name`` checked, with defaults filled in (JSON types).

    Raises ``ValueError`` naming the bad parameter and the allowed ones, or naming the samplers
    that handle several objectives when ``name`` handles one and ``n_objectives > 1``.
    """
    if name not in _SAMPLER_PARAMS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {_choices(SAMPLERS)}")
    if n_objectives < 1:
        raise ValueError(f"n_objectives must be at least 1, got {n_objectives}")
    if n_objectives > 1 and name not in MULTI_OBJECTIVE_SAMPLERS:
        alternatives = _choices([s for s in SAMPLERS if s in MULTI_OBJECTIVE_SAMPLERS])
        raise ValueError(
            f"sampler {name!r} handles a single objective and the job has {n_objectives}; "
            f"for several objectives use one of {alternatives}"
        )
    return _validate("sampler", name, _SAMPLER_PARAMS, params)


def validate_pruner_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of pruner ``name`` checked, with defaults filled in (JSON types)."""
    return _validate("pruner", name, _PRUNER_PARAMS, params)


def sampler_schemas() -> dict[str, dict[str, Any]]:
    """Sampler name -> JSON schema of its parameters."""
    return {name: _SAMPLER_PARAMS[name].model_json_schema() for name in SAMPLERS}


def pruner_schemas() -> dict[str, dict[str, Any]]:
    """Pruner name -> JSON schema of its parameters."""
    return {name: _PRUNER_PARAMS[name].model_json_schema() for name in PRUNERS}


# ---- factories -------------------------------------------------------------------------------
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


def make_pruner(name: str, params: dict[str, Any], *, epochs: int, parallelism: int) -> BasePruner:
    """The pruner ``name`` of a single-objective job (Optuna's own, fed by ``trial.report``)."""
    p = validate_pruner_params(name, params)
    if name == "median":
        n_startup = p["n_startup_trials"] if p["n_startup_trials"] is not None else max(2, parallelism)
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup, n_warmup_steps=p["n_warmup_steps"])
    if name in ("asha", "successive_halving"):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p["min_resource"],
            reduction_factor=p["reduction_factor"],
            min_early_stopping_rate=p["min_early_stopping_rate"],
        )
    if name == "hyperband":
        # max_resource below min_resource would leave Hyperband no bracket; one bracket without rungs
        return optuna.pruners.HyperbandPruner(
            min_resource=p["min_resource"],
            max_resource=max(epochs, p["min_resource"]),
            reduction_factor=p["reduction_factor"],
        )
    return optuna.pruners.NopPruner()


def make_multi_objective_pruner(
    name: str,
    params: dict[str, Any],
    *,
    epochs: int,
    parallelism: int,
    directions: list[str],
    curve_index: int,
) -> BasePruner:
    """The pruner ``name`` of a multi-objective job: a ``DominancePruner`` (or ``NopPruner`` for "none").

    The manager calls ``pruner.prune(study, frozen_trial)`` itself after each epoch, with the
    trial's ``CURVE_ATTR`` and ``STATIC_ATTR`` user attributes set (see ``DominancePruner``).
    """
    p = validate_pruner_params(name, params)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        n_startup = p["n_startup_trials"] if p["n_startup_trials"] is not None else max(2, parallelism)
        return DominancePruner(
            directions,
            curve_index,
            epochs=epochs,
            rule="median",
            n_startup_trials=n_startup,
            n_warmup_steps=p["n_warmup_steps"],
        )
    return DominancePruner(
        directions,
        curve_index,
        epochs=epochs,
        rule="hyperband" if name == "hyperband" else "asha",
        min_resource=p["min_resource"],
        reduction_factor=p["reduction_factor"],
        min_early_stopping_rate=p.get("min_early_stopping_rate", 0),
    )


# ---- regularized evolution -------------------------------------------------------------------
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


# ---- multi-objective pruning -----------------------------------------------------------------
class DominancePruner(BasePruner):
    """Prunes a trial of a multi-objective job when enough trials dominate it at a rung epoch.

    Input (user attributes the manager sets; the manager calls ``prune`` itself, after each epoch):
    ``CURVE_ATTR`` = ``{str(epoch): value}`` of objective ``curve_index`` (epochs from 1), and
    ``STATIC_ATTR`` = one value per objective known before training ends (params, flops, latency),
    ``None`` at ``curve_index``. A trial without both is never pruned.

    The judged epoch ``e`` is the largest in the trial's curve; nothing happens unless ``e`` is a
    rung, and the job's last epoch (``epochs``) never is one. At ``e``:

    - the trial's vector is its static values with its curve value at ``e`` in place of the curve
      objective; objectives unknown before the end (``None``, e.g. train_seconds) are left out of
      every comparison. A NaN curve value is pruned at once, as Optuna's pruners do.
    - compared trials: for ``median``, every other COMPLETE trial (as Optuna's MedianPruner); for
      ``asha``/``hyperband``, every other COMPLETE, PRUNED or RUNNING trial (as Optuna's
      SuccessiveHalvingPruner, which ranks against every trial that reached the rung; RUNNING ones
      include trials the manager has finished but not yet told). A COMPLETE trial's vector is its
      final ``values`` with its curve value at ``e`` in place of the curve objective; a PRUNED or
      RUNNING trial's vector is its static values with its curve value at ``e``. Trials without a
      finite value at ``e`` (or at any compared objective) are skipped. Let ``n`` be how many remain
      and ``d`` how many of them dominate the trial (no worse in every compared objective, better
      in at least one, in the job's directions).
    - ``median``: rungs are every epoch ``e >= n_warmup_steps``, once ``n_startup_trials`` trials
      are COMPLETE. Prune iff ``n >= 1`` and ``2 * d >= n`` (dominated by at least half).
    - ``asha``: rungs are ``min_resource * eta**(min_early_stopping_rate + k)``, ``k = 0, 1, ...``
      (``eta`` = ``reduction_factor``). Of the ``n + 1`` trials at the rung (the trial included)
      ``keep = max(1, (n + 1) // eta)`` go on; prune iff ``d >= keep``. With one objective this is
      exactly Optuna's SuccessiveHalvingPruner (prune iff worse than the keep-th best value). With
      several, a trial is pruned only when ``keep`` trials beat it on every objective, so no weighting
      of the objectives could rank it among the best ``keep``.
    - ``hyperband``: ``floor(log_eta(epochs / min_resource)) + 1`` brackets; trial number ``i`` is in
      bracket ``b = i % brackets`` (round robin; Optuna hashes and weights brackets by budget), whose
      rungs are ``min_resource * eta**(b + k)``; the ``asha`` rule applies among the bracket's trials.
      The last bracket has no rung below ``epochs`` and never prunes.
    """

    def __init__(
        self,
        directions: Sequence[str],
        curve_index: int,
        *,
        epochs: int,
        rule: Literal["median", "asha", "hyperband"],
        n_startup_trials: int = 0,
        n_warmup_steps: int = 0,
        min_resource: int = 1,
        reduction_factor: int = 3,
        min_early_stopping_rate: int = 0,
    ) -> None:
        self.signs = _signs(directions)
        if not 0 <= curve_index < len(self.signs):
            raise ValueError(f"curve_index must be in 0..{len(self.signs) - 1}, got {curve_index}")
        if rule not in ("median", "asha", "hyperband"):
            raise ValueError(f"unknown rule {rule!r}; allowed: 'median', 'asha', 'hyperband'")
        if epochs < 1 or min_resource < 1 or reduction_factor < 2 or min(n_startup_trials, n_warmup_steps) < 0:
            raise ValueError("need epochs >= 1, min_resource >= 1, reduction_factor >= 2 and non-negative counts")
        self.directions = list(directions)
        self.curve_index = curve_index
        self.epochs = epochs
        self.rule = rule
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.min_early_stopping_rate = min_early_stopping_rate
        brackets = 1
        while rule == "hyperband" and min_resource * reduction_factor**brackets <= epochs:
            brackets += 1
        self.n_brackets = brackets

    def bracket(self, number: int) -> int:
        """The Hyperband bracket of trial ``number`` (0 for the other rules)."""
        return number % self.n_brackets

    def rungs(self, number: int) -> list[int]:
        """The epochs at which trial ``number`` may be pruned (all below ``epochs``)."""
        if self.rule == "median":
            return list(range(max(1, self.n_warmup_steps), self.epochs))
        k = self.min_early_stopping_rate if self.rule == "asha" else self.bracket(number)
        rungs = []
        while (epoch := self.min_resource * self.reduction_factor**k) < self.epochs:
            rungs.append(epoch)
            k += 1
        return rungs

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        if len(study.directions) != len(self.signs):
            raise ValueError(f"the study has {len(study.directions)} objectives, the pruner {len(self.signs)}")
        curve = _curve(trial)
        static = trial.user_attrs.get(STATIC_ATTR)
        if not curve or not isinstance(static, list) or len(static) != len(self.signs):
            return False
        epoch = max(curve)
        if epoch not in self.rungs(trial.number):
            return False
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if self.rule == "median" and len(complete) < self.n_startup_trials:
            return False
        value = curve[epoch]
        if value is None:
            return False
        if math.isnan(value):
            return True
        mine: list[float | None] = list(static)
        mine[self.curve_index] = value
        compared = [i for i, v in enumerate(mine) if _finite(v)]
        d = n = 0
        for other in self._competitors(study, trial, complete, epoch):
            if all(_finite(other[i]) for i in compared):
                n += 1
                d += self._dominates(other, mine, compared)
        if self.rule == "median":
            return n >= 1 and 2 * d >= n
        return d >= max(1, (n + 1) // self.reduction_factor)

    def _competitors(
        self, study: Study, trial: FrozenTrial, complete: list[FrozenTrial], epoch: int
    ) -> list[list[Any]]:
        if self.rule == "median":
            candidates = complete
        else:
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            candidates = study.get_trials(deepcopy=False, states=states)
            if self.rule == "hyperband":
                candidates = [t for t in candidates if self.bracket(t.number) == self.bracket(trial.number)]
        vectors = []
        for other in candidates:
            if other.number == trial.number:
                continue
            curve = _curve(other)
            if curve is None or epoch not in curve:
                continue
            base = other.values if other.state == TrialState.COMPLETE else other.user_attrs.get(STATIC_ATTR)
            if base is None or len(base) != len(self.signs):
                continue
            vector = list(base)
            vector[self.curve_index] = curve[epoch]
            vectors.append(vector)
        return vectors

    def _dominates(self, a: Sequence[float], b: Sequence[float], indices: list[int]) -> bool:
        better = False
        for i in indices:
            x, y = self.signs[i] * a[i], self.signs[i] * b[i]
            if x > y:
                return False
            better = better or x < y
        return better


def _curve(trial: FrozenTrial) -> dict[int, float | None] | None:
    curve = trial.user_attrs.get(CURVE_ATTR)
    if not isinstance(curve, dict):
        return None
    return {int(epoch): (None if value is None else float(value)) for epoch, value in curve.items()}


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


# ---- Pareto helpers --------------------------------------------------------------------------
def _signs(directions: Sequence[str]) -> list[float]:
    """+1 for each objective to minimize, -1 for each to maximize (turns everything into minimizing)."""
    if not directions:
        raise ValueError("need at least one direction")
    signs = []
    for direction in directions:
        if direction not in _DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; allowed: {_choices(_DIRECTIONS)}")
        signs.append(1.0 if direction == "minimize" else -1.0)
    return signs


def _as_losses(points: Sequence[Sequence[float]], directions: Sequence[str], *, finite: bool) -> np.ndarray:
    signs = _signs(directions)
    for point in points:
        if len(point) != len(signs):
            raise ValueError(f"each point needs {len(signs)} values (one per direction), got {list(point)}")
    losses = np.asarray(points, dtype=float).reshape(len(points), len(signs)) * np.asarray(signs)
    if np.isnan(losses).any() or (finite and not np.isfinite(losses).all()):
        raise ValueError("points must be finite" if finite else "points must not contain NaN")
    return losses


def _pareto_mask(losses: np.ndarray) -> np.ndarray:
    keep = np.ones(len(losses), dtype=bool)
    for i, point in enumerate(losses):
        dominated_by = np.all(losses <= point, axis=1) & np.any(losses < point, axis=1)
        keep[i] = not dominated_by.any()
    return keep


def non_dominated(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; equal points are all kept."""
    if len(points) == 0:
        return []
    return [int(i) for i in np.flatnonzero(_pareto_mask(_as_losses(points, directions, finite=False)))]


def reference_point(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """A default hypervolume reference: the nadir of the Pareto set, worsened per objective.

    For each objective, the worst value among the non-dominated points, moved in the worse direction
    by 10% of the Pareto set's range in that objective, or by 1 where that range is 0 (so the extreme
    points still add volume).
    """
    if len(points) == 0:
        raise ValueError("a reference point needs at least one point")
    losses = _as_losses(points, directions, finite=True)
    front = losses[_pareto_mask(losses)]
    worst, best = front.max(axis=0), front.min(axis=0)
    margin = np.where(worst > best, 0.1 * (worst - best), 1.0)
    return [float(v) for v in (worst + margin) * np.asarray(_signs(directions))]


def hypervolume(points: Sequence[Sequence[float]], directions: Sequence[str], reference: Sequence[float]) -> float:
    """The volume that ``points`` dominate, bounded by ``reference`` (exact, any number of objectives).

    Points that do not beat ``reference`` in every objective add nothing. Exact by slicing along the
    last objective (a sweep in two dimensions); meant for one job's Pareto set (hundreds of points,
    2-4 objectives), not for thousands in many dimensions.
    """
    if len(reference) != len(directions):
        raise ValueError(f"reference needs {len(directions)} values (one per direction), got {len(reference)}")
    if len(points) == 0:
        return 0.0
    losses = _as_losses(points, directions, finite=True)
    ref = np.asarray(reference, dtype=float) * np.asarray(_signs(directions))
    if not np.isfinite(ref).all():
        raise ValueError("reference must be finite")
    inside = losses[np.all(losses < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    front = np.unique(inside[_pareto_mask(inside)], axis=0)
    return _volume([tuple(p) for p in front.tolist()], tuple(ref.tolist()))


def _volume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """Volume dominated by ``points`` (all strictly below ``ref``, minimizing) up to ``ref``."""
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        volume, lowest = 0.0, ref[1]
        for x, y in sorted(points):
            if y < lowest:
                volume += (ref[0] - x) * (lowest - y)
                lowest = y
        return volume
    points = sorted(points, key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(points):
        top = points[i + 1][-1] if i + 1 < len(points) else ref[-1]
        if top > point[-1]:
            volume += (top - point[-1]) * _volume([p[:-1] for p in points[: i + 1]], ref[:-1])
    return volume
