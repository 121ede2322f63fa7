"""Search strategies: samplers and pruners by name, their parameters, and Pareto helpers.

- ``params``: one pydantic model per sampler and pruner; validation and JSON schemas.
- ``samplers``: ``make_sampler`` (Optuna's samplers, seeded) and ``CountedGridSampler``.
- ``evolution``: ``RegularizedEvolutionSampler``, Cellar's own (aging evolution).
- ``pruners``: ``make_pruner`` (Optuna's) and ``DominancePruner`` for multi-objective jobs.
- ``pareto``: ``non_dominated``, ``reference_point``, ``hypervolume``.
"""

from .evolution import RegularizedEvolutionSampler
from .pareto import hypervolume, non_dominated, reference_point
from .params import (
    MULTI_OBJECTIVE_SAMPLERS,
    PRUNERS,
    SAMPLERS,
    pruner_schemas,
    sampler_schemas,
    validate_pruner_params,
    validate_sampler_params,
)
from .pruners import CURVE_ATTR, STATIC_ATTR, DominancePruner, make_multi_objective_pruner, make_pruner
from .samplers import CountedGridSampler, make_sampler

__all__ = [
    "CURVE_ATTR",
    "MULTI_OBJECTIVE_SAMPLERS",
    "PRUNERS",
    "SAMPLERS",
    "STATIC_ATTR",
    "CountedGridSampler",
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
