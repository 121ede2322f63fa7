"""Strategy parameters: one pydantic model per sampler and pruner, validated and described.

``validate_sampler_params`` / ``validate_pruner_params`` check a job's ``sampler_params`` /
``pruner_params`` against the model of the chosen name and fill in the defaults; ``GET
/v1/strategies`` publishes their JSON schemas (``sampler_schemas``, ``pruner_schemas``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

__all__ = [
    "DIRECTIONS",
    "MULTI_OBJECTIVE_SAMPLERS",
    "PRUNERS",
    "SAMPLERS",
    "choices",
    "pruner_schemas",
    "sampler_schemas",
    "validate_pruner_params",
    "validate_sampler_params",
]

SAMPLERS: tuple[str, ...] = ("tpe", "random", "gp", "nsga2", "evolution", "grid")
#: ``successive_halving`` is the old name of ``asha``, kept so that stored jobs still validate
PRUNERS: tuple[str, ...] = ("none", "median", "asha", "successive_halving", "hyperband")
#: samplers that accept more than one objective (Optuna 5's GPSampler does, with log EHVI)
MULTI_OBJECTIVE_SAMPLERS: frozenset[str] = frozenset({"tpe", "random", "gp", "nsga2", "grid"})
DIRECTIONS = ("minimize", "maximize")

_LIMIT = 1_000_000  # upper bound of counts; no sensible job comes near it


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


def choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _validate(kind: str, name: str, registry: Mapping[str, type[_Params]], params: Any) -> dict[str, Any]:
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; allowed: {choices(tuple(registry))}")
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
        raise ValueError(f"unknown sampler {name!r}; allowed: {choices(SAMPLERS)}")
    if n_objectives < 1:
        raise ValueError(f"n_objectives must be at least 1, got {n_objectives}")
    if n_objectives > 1 and name not in MULTI_OBJECTIVE_SAMPLERS:
        alternatives = choices([s for s in SAMPLERS if s in MULTI_OBJECTIVE_SAMPLERS])
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
