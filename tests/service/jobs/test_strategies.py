"""Samplers and pruners by name (service.jobs.strategies): parameters, factories, regularized evolution
held to what Optuna's sampler test suite expects of every sampler, dominance pruning, Pareto helpers."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, Trial, TrialState

from service.jobs.strategies import (
    CURVE_ATTR,
    MULTI_OBJECTIVE_SAMPLERS,
    PRUNERS,
    SAMPLERS,
    STATIC_ATTR,
    DominancePruner,
    RegularizedEvolutionSampler,
    hypervolume,
    make_multi_objective_pruner,
    make_pruner,
    make_sampler,
    non_dominated,
    pruner_schemas,
    reference_point,
    sampler_schemas,
    validate_pruner_params,
    validate_sampler_params,
)

REPO = Path(__file__).resolve().parents[3]
PLAN = RegularizedEvolutionSampler.PLAN_ATTR
MIN2 = ["minimize", "minimize"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ==== parameters and factories ================================================================
def test_registries() -> None:
    assert SAMPLERS == ("tpe", "random", "gp", "nsga2", "evolution", "grid")
    assert PRUNERS == ("none", "median", "asha", "successive_halving", "hyperband")
    assert MULTI_OBJECTIVE_SAMPLERS == set(SAMPLERS) - {"evolution"}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_defaults_are_filled_in_and_stable(name: str) -> None:
    params = validate_sampler_params(name, {}, n_objectives=1)
    assert set(params) == set(sampler_schemas()[name].get("properties", {}))
    assert validate_sampler_params(name, params, n_objectives=1) == params
    json.dumps(params)


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_defaults_are_filled_in_and_stable(name: str) -> None:
    params = validate_pruner_params(name, {})
    assert set(params) == set(pruner_schemas()[name].get("properties", {}))
    assert validate_pruner_params(name, params) == params


def test_documented_defaults() -> None:
    assert validate_sampler_params("evolution", {}, n_objectives=1) == {"population_size": 20, "sample_size": 5}
    assert validate_sampler_params("tpe", {}, n_objectives=1) == {
        "n_startup_trials": 10,
        "n_ei_candidates": 24,
        "multivariate": None,
        "group": False,
        "constant_liar": True,
    }
    assert validate_sampler_params("gp", {}, n_objectives=2) == {
        "n_startup_trials": 10,
        "deterministic_objective": False,
    }
    assert validate_sampler_params("nsga2", {"mutation_prob": 1}, n_objectives=2) == {
        "population_size": 50,
        "mutation_prob": 1.0,
        "crossover_prob": 0.9,
        "swapping_prob": 0.5,
    }
    assert validate_pruner_params("median", {}) == {"n_startup_trials": None, "n_warmup_steps": 0}
    assert validate_pruner_params("asha", {}) == validate_pruner_params("successive_halving", {})
    assert validate_pruner_params("asha", {}) == {
        "min_resource": 1,
        "reduction_factor": 3,
        "min_early_stopping_rate": 0,
    }
    assert validate_pruner_params("hyperband", {}) == {"min_resource": 1, "reduction_factor": 3}


def test_unknown_parameter_names_it_and_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as error:
        validate_sampler_params("evolution", {"popsize": 5}, n_objectives=1)
    assert str(error.value) == (
        "sampler_params.popsize: unknown parameter for sampler 'evolution'; allowed: population_size, sample_size"
    )
    with pytest.raises(ValueError, match=r"sampler_params.seed: unknown parameter for sampler 'random'; allowed: none"):
        validate_sampler_params("random", {"seed": 1}, n_objectives=1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_names_an_unknown_parameter(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^sampler_params\.bogus: unknown parameter for sampler '{name}'; allowed"):
        validate_sampler_params(name, {"bogus": 1}, n_objectives=1)


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_names_an_unknown_parameter(name: str) -> None:
    with pytest.raises(ValueError) as error:
        validate_pruner_params(name, {"bogus": 1})
    message = str(error.value)
    assert message.startswith(f"pruner_params.bogus: unknown parameter for pruner '{name}'; allowed: ")
    for field in pruner_schemas()[name].get("properties", {}):
        assert field in message


@pytest.mark.parametrize(
    ("kind", "name", "params", "expected"),
    [
        ("sampler", "evolution", {"population_size": 4, "sample_size": 5}, r"sampler_params\.sample_size: must be at"),
        ("sampler", "evolution", {"population_size": 0}, r"sampler_params\.population_size: .*greater than or equal"),
        ("sampler", "nsga2", {"mutation_prob": 1.5}, r"sampler_params\.mutation_prob: .*less than or equal to 1"),
        ("sampler", "nsga2", {"crossover_prob": float("nan")}, r"sampler_params\.crossover_prob: .*finite"),
        ("sampler", "nsga2", {"population_size": 1}, r"sampler_params\.population_size"),
        ("sampler", "tpe", {"n_startup_trials": "10"}, r"sampler_params\.n_startup_trials: .*valid integer"),
        ("sampler", "tpe", {"group": True}, r"sampler_params\.group: group needs multivariate: true"),
        ("sampler", "gp", {"n_startup_trials": -1}, r"sampler_params\.n_startup_trials"),
        ("sampler", "gp", {"deterministic_objective": 1}, r"sampler_params\.deterministic_objective: .*boolean"),
        ("pruner", "asha", {"reduction_factor": 1}, r"pruner_params\.reduction_factor"),
        ("pruner", "hyperband", {"min_resource": 0}, r"pruner_params\.min_resource"),
        ("pruner", "median", {"n_warmup_steps": -1}, r"pruner_params\.n_warmup_steps"),
    ],
)
def test_out_of_range_parameters(kind: str, name: str, params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        if kind == "sampler":
            validate_sampler_params(name, params, n_objectives=1)
        else:
            validate_pruner_params(name, params)


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown sampler 'cmaes'; allowed: 'tpe', 'random', 'gp'"):
        validate_sampler_params("cmaes", {}, n_objectives=1)
    with pytest.raises(ValueError, match=r"unknown pruner 'patient'; allowed: 'none', 'median'"):
        validate_pruner_params("patient", {})
    with pytest.raises(ValueError, match=r"sampler_params: expected an object"):
        validate_sampler_params("tpe", [], n_objectives=1)  # type: ignore[arg-type]


def test_single_objective_samplers_refuse_several_objectives() -> None:
    with pytest.raises(ValueError) as error:
        validate_sampler_params("evolution", {}, n_objectives=2)
    assert "'evolution' handles a single objective" in str(error.value)
    for alternative in MULTI_OBJECTIVE_SAMPLERS:
        assert repr(alternative) in str(error.value)
    with pytest.raises(ValueError):
        make_sampler("evolution", {}, seed=0, n_objectives=2, grid=None)
    with pytest.raises(ValueError, match="n_objectives"):
        validate_sampler_params("tpe", {}, n_objectives=0)
    for name in MULTI_OBJECTIVE_SAMPLERS:
        validate_sampler_params(name, {}, n_objectives=3)


def test_schemas_are_json_schemas_of_the_parameters() -> None:
    samplers, pruners = sampler_schemas(), pruner_schemas()
    assert tuple(samplers) == SAMPLERS and tuple(pruners) == PRUNERS
    assert samplers["evolution"]["properties"]["sample_size"]["default"] == 5
    assert samplers["evolution"]["additionalProperties"] is False
    assert samplers["random"].get("properties", {}) == {}
    assert pruners["median"]["properties"]["n_warmup_steps"]["minimum"] == 0
    json.dumps([samplers, pruners])


def mixed_objective(trial: Trial) -> tuple[float, float]:
    """A toy mixed space: categorical, stepped int, log float (kept small: GP fits cost seconds per dimension)."""
    op = trial.suggest_categorical("op", ["conv", "pool", "skip"])
    width = trial.suggest_int("width", 8, 64, step=8)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    loss = (math.log10(lr) + 2.5) ** 2 + (op != "conv") + abs(width - 32) / 32
    return loss, float(width)


MIXED_GRID = {"op": ["conv", "pool", "skip"], "width": [8, 16, 32, 64], "lr": [1e-3, 1e-2, 1e-1]}
# small enough that every sampler leaves its random start within 8 trials (GP: one fit, a few seconds)
QUICK = {
    "tpe": {"n_startup_trials": 3},
    "random": {},
    "gp": {"n_startup_trials": 7},
    "nsga2": {"population_size": 4},
    "evolution": {"population_size": 4, "sample_size": 2},
    "grid": {},
}


@pytest.mark.parametrize(
    ("name", "n_objectives"),
    [(name, n) for name in SAMPLERS for n in (1, 2) if n == 1 or name in MULTI_OBJECTIVE_SAMPLERS],
)
def test_every_sampler_runs_a_mixed_space_by_ask_and_tell(name: str, n_objectives: int) -> None:
    sampler = make_sampler(name, QUICK[name], seed=1, n_objectives=n_objectives, grid=MIXED_GRID)
    study = optuna.create_study(directions=["minimize", "maximize"][:n_objectives], sampler=sampler)
    for _ in range(8):
        trial = study.ask()
        loss, width = mixed_objective(trial)
        study.tell(trial, loss if n_objectives == 1 else [loss, width])
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 8
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) >= 5
    for t in trials:
        assert t.params["op"] in MIXED_GRID["op"] and 8 <= t.params["width"] <= 64
        assert 1e-4 <= t.params["lr"] <= 1e-1


def test_factories_build_the_named_optuna_samplers() -> None:
    def make(name: str, **params: Any) -> optuna.samplers.BaseSampler:
        return make_sampler(name, params, seed=0, n_objectives=1, grid=MIXED_GRID)

    assert isinstance(make("tpe"), optuna.samplers.TPESampler)
    assert isinstance(make("random"), optuna.samplers.RandomSampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the experimental-argument warning stays out of the log
        assert isinstance(make("gp", deterministic_objective=True), optuna.samplers.GPSampler)
        assert isinstance(make("tpe", multivariate=True, group=True), optuna.samplers.TPESampler)
    assert isinstance(make("nsga2"), optuna.samplers.NSGAIISampler)
    assert isinstance(make("grid"), optuna.samplers.GridSampler)
    evolution = make("evolution", population_size=7, sample_size=3)
    assert isinstance(evolution, RegularizedEvolutionSampler)
    assert (evolution.population_size, evolution.sample_size) == (7, 3)
    with pytest.raises(ValueError, match="needs the search space's grid"):
        make_sampler("grid", {}, seed=0, n_objectives=1, grid=None)


def test_tpe_defaults_propose_what_a_plain_tpe_sampler_proposes() -> None:
    def run(sampler: optuna.samplers.BaseSampler) -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: mixed_objective(t)[0], n_trials=13)
        return [t.params for t in study.trials]

    ours = make_sampler("tpe", {}, seed=3, n_objectives=1, grid=None)
    assert run(ours) == run(optuna.samplers.TPESampler(seed=3))


def test_make_pruner_single_objective() -> None:
    assert isinstance(make_pruner("none", {}, epochs=5, parallelism=1), optuna.pruners.NopPruner)
    median = make_pruner("median", {}, epochs=5, parallelism=1)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 0)
    assert make_pruner("median", {}, epochs=5, parallelism=6)._n_startup_trials == 6
    assert make_pruner("median", {"n_startup_trials": 1}, epochs=5, parallelism=6)._n_startup_trials == 1
    for name in ("asha", "successive_halving"):
        asha = make_pruner(name, {}, epochs=5, parallelism=1)
        assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
        assert (asha._min_resource, asha._reduction_factor, asha._min_early_stopping_rate) == (1, 3, 0)
    asha = make_pruner("asha", {"reduction_factor": 2, "min_resource": 2}, epochs=5, parallelism=1)
    assert (asha._min_resource, asha._reduction_factor) == (2, 2)
    hyperband = make_pruner("hyperband", {}, epochs=27, parallelism=1)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource, hyperband._reduction_factor) == (1, 27, 3)
    assert make_pruner("hyperband", {"min_resource": 9}, epochs=3, parallelism=1)._max_resource == 9


def test_make_multi_objective_pruner() -> None:
    def make(name: str, **params: Any) -> optuna.pruners.BasePruner:
        return make_multi_objective_pruner(
            name, params, epochs=9, parallelism=3, directions=["maximize", "minimize"], curve_index=0
        )

    assert isinstance(make("none"), optuna.pruners.NopPruner)
    median = make("median")
    assert isinstance(median, DominancePruner)
    assert (median.rule, median.n_startup_trials, median.n_warmup_steps) == ("median", 3, 0)
    assert median.rungs(0) == list(range(1, 9))
    for name in ("asha", "successive_halving"):
        asha = make(name)
        assert isinstance(asha, DominancePruner) and asha.rule == "asha"
        assert asha.rungs(0) == asha.rungs(5) == [1, 3]
    assert make("asha", min_early_stopping_rate=1).rungs(0) == [3]
    hyperband = make("hyperband")
    assert isinstance(hyperband, DominancePruner)
    assert hyperband.n_brackets == 3
    assert [hyperband.rungs(i) for i in range(4)] == [[1, 3], [3], [], [1, 3]]
    with pytest.raises(ValueError, match="curve_index"):
        make_multi_objective_pruner("median", {}, epochs=9, parallelism=1, directions=MIN2, curve_index=2)
    with pytest.raises(ValueError, match="unknown direction"):
        make_multi_objective_pruner("median", {}, epochs=9, parallelism=1, directions=["up", "down"], curve_index=0)


def test_strategies_import_without_torch() -> None:
    # the manager runs in the API process: importing and building samplers must not load torch;
    # GPSampler loads it at its first fit, after its random start-up trials
    code = """
import sys, optuna
from service.jobs.strategies import SAMPLERS, make_sampler
for name in SAMPLERS:
    make_sampler(name, {}, seed=0, n_objectives=1, grid={"x": [0.5]})
study = optuna.create_study(sampler=make_sampler("gp", {"n_startup_trials": 2}, seed=0, n_objectives=1, grid=None))
for _ in range(2):
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0, 1))
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ==== regularized evolution: what Optuna's sampler suite asks of every sampler ==================
FLOATS = [
    FloatDistribution(-1.0, 1.0),
    FloatDistribution(0.0, 1.0),
    FloatDistribution(-1.0, 0.0),
    FloatDistribution(1e-7, 1.0, log=True),
    FloatDistribution(-10, 10, step=0.1),
    FloatDistribution(-10.2, 10.2, step=0.1),
]
INTS = [
    IntDistribution(-10, 10),
    IntDistribution(0, 10),
    IntDistribution(-10, 0),
    IntDistribution(-10, 10, step=2),
    IntDistribution(0, 10, step=2),
    IntDistribution(-10, 0, step=2),
    IntDistribution(1, 100, log=True),
]
CATEGORICALS = [
    CategoricalDistribution((1, 2, 3)),
    CategoricalDistribution(("a", "b", "c")),
    CategoricalDistribution((1, "a")),
]
PHASES = ["random", "evolving"]


def evolution(seed: int = 0, population_size: int = 3, sample_size: int = 2) -> RegularizedEvolutionSampler:
    return RegularizedEvolutionSampler(population_size=population_size, sample_size=sample_size, seed=seed)


def draw(distribution: BaseDistribution, phase: str, n: int = 60) -> tuple[list[Any], list[Any]]:
    """``n`` values of one parameter, and each one's parent value (None while random).

    In the evolving phase three complete trials make the population; the drawn trials fail, so the
    population stays the same and every draw is a mutation of ``x``, the parent's only parameter.
    """
    study = optuna.create_study(sampler=evolution())
    if phase == "evolving":
        for i in range(3):
            study.tell(study.ask({"x": distribution}), float(i))
    values, parents = [], []
    for _ in range(n):
        trial = study.ask({"x": distribution})
        values.append(trial.params["x"])
        plan = study._storage.get_trial_system_attrs(trial._trial_id)[PLAN]
        parents.append(None if plan["parent"] is None else study.trials[plan["parent"]].params["x"])
        study.tell(trial, state=TrialState.FAIL)
    assert all(p is None for p in parents) == (phase == "random")
    return values, parents


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("distribution", FLOATS, ids=str)
def test_floats_lie_in_their_distribution(distribution: FloatDistribution, phase: str) -> None:
    values, parents = draw(distribution, phase)
    assert all(type(v) is float and distribution.low <= v <= distribution.high for v in values)
    if distribution.step is not None:
        steps = (np.asarray(values) - distribution.low) / distribution.step
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-8)
    assert all(v != p for v, p in zip(values, parents, strict=True) if p is not None)  # a mutation changes it


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("distribution", INTS, ids=str)
def test_ints_lie_in_their_distribution(distribution: IntDistribution, phase: str) -> None:
    values, parents = draw(distribution, phase)
    assert all(type(v) is int and distribution.low <= v <= distribution.high for v in values)
    assert all((v - distribution.low) % distribution.step == 0 for v in values)
    assert all(v != p for v, p in zip(values, parents, strict=True) if p is not None)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("distribution", CATEGORICALS, ids=str)
def test_categoricals_are_choices(distribution: CategoricalDistribution, phase: str) -> None:
    values, parents = draw(distribution, phase)
    assert all(any(v == c and type(v) is type(c) for c in distribution.choices) for v in values)
    assert all(v != p for v, p in zip(values, parents, strict=True) if p is not None)
    if phase == "random":
        assert len(set(values)) == len(distribution.choices)  # every choice comes up


def test_single_valued_distributions_keep_their_value() -> None:
    single = {
        "a": CategoricalDistribution([1]),
        "b": IntDistribution(1, 1),
        "c": IntDistribution(1, 1, log=True),
        "d": FloatDistribution(1.0, 1.0),
        "e": FloatDistribution(1.0, 1.0, log=True),
        "f": FloatDistribution(1.0, 1.0, step=1.0),
    }
    study = optuna.create_study(sampler=evolution(population_size=1, sample_size=1))
    for _ in range(3):
        trial = study.ask(single)
        study.tell(trial, 1.0)
        assert all(value == 1 for value in trial.params.values())
    assert study.trials[-1].system_attrs[PLAN] == {"parent": 1, "mutate": None}  # nothing can change


def test_conditional_parameter_asked_directly() -> None:
    # Optuna's #2734: a parameter whose name is another parameter's value
    study = optuna.create_study(sampler=evolution(population_size=2, sample_size=2))
    category = CategoricalDistribution(["x", "y"])
    dependent = CategoricalDistribution(["a", "b"])
    for params in ({"category": "x", "x": "a"}, {"category": "y", "y": "b"}):
        distributions = {"category": category, params["category"]: dependent}
        study.add_trial(optuna.create_trial(params=params, distributions=distributions, value=0.1))
    for _ in range(10):
        trial = study.ask()
        chosen = trial.suggest_categorical("category", ["x", "y"])
        assert trial.suggest_categorical(chosen, ["a", "b"]) in ("a", "b")
        study.tell(trial, 0.2)


def gnn_like(trial: Trial) -> float:
    """A conditional space in the manner of the gnn and kan search spaces."""
    conv = trial.suggest_categorical("conv", ["gcn", "gat", "sage"])
    layers = trial.suggest_int("layers", 1, 4)
    score = 0.1 * layers
    if conv == "gat":
        score += 0.05 * trial.suggest_categorical("heads", [1, 2, 4, 8])
    elif conv == "sage":
        score += 0.2 * (trial.suggest_categorical("aggr", ["mean", "max"]) == "max")
    for i in range(layers):
        score -= abs(trial.suggest_float(f"dropout{i}", 0.0, 0.5) - 0.2)
    return score


def test_conditional_spaces_inherit_what_the_parent_had() -> None:
    study = optuna.create_study(direction="maximize", sampler=evolution(seed=4, population_size=5, sample_size=3))
    study.optimize(gnn_like, n_trials=60)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    children = 0
    for child in study.trials:
        plan = child.system_attrs[PLAN]
        if plan["parent"] is None:
            continue
        children += 1
        parent = study.trials[plan["parent"]]
        assert plan["mutate"] in parent.params
        for name in child.params.keys() & parent.params.keys():
            if name == plan["mutate"]:
                assert child.params[name] != parent.params[name]
            else:
                assert child.params[name] == parent.params[name]
    assert children == 55


def test_failed_nan_and_pruned_trials_are_ignored() -> None:
    study = optuna.create_study(sampler=evolution(population_size=2, sample_size=2))

    def objective(trial: Trial, base: float) -> float:
        return trial.suggest_float("x", 0.1, 0.2) + base

    for base in range(10, 1, -1):
        study.optimize(lambda t, b=base: objective(t, b), n_trials=1)
    assert int(study.best_value) == 2
    study.optimize(lambda t: objective(t, float("nan")), n_trials=1)  # Optuna fails a NaN trial
    assert study.trials[-1].state == TrialState.FAIL and int(study.best_value) == 2
    trial = study.ask()
    trial.suggest_float("x", 0.1, 0.2)
    study.tell(trial, state=TrialState.PRUNED)
    study.optimize(lambda t: objective(t, 1), n_trials=1)
    assert int(study.best_value) == 1
    complete = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    parents = {t.system_attrs[PLAN]["parent"] for t in study.trials} - {None}
    assert parents and parents <= complete


def test_enqueued_and_partially_fixed_parameters_are_kept() -> None:
    sampler = evolution(population_size=2, sample_size=1)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: Trial) -> float:
        return trial.suggest_float("x", -1, 1) + trial.suggest_int("y", -1, 1) + trial.suggest_float("z", -1, 1)

    study.optimize(objective, n_trials=3)
    study.enqueue_trial({"y": 1, "z": 0.5})
    study.optimize(objective, n_trials=1)
    assert (study.trials[-1].params["y"], study.trials[-1].params["z"]) == (1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler({"y": 0}, sampler)
    study.optimize(objective, n_trials=5)
    assert all(t.params["y"] == 0 for t in study.trials[-5:])


@pytest.mark.parametrize(
    "suggest",
    [
        lambda t: t.suggest_float("x", 0, 10),
        lambda t: t.suggest_int("x", 0, 10),
        lambda t: t.suggest_categorical("x", [0, 1, 2]),
        lambda t: t.suggest_float("x", 0, 10, step=0.5),
        lambda t: t.suggest_float("x", 1e-7, 10, log=True),
        lambda t: t.suggest_int("x", 1, 10, log=True),
    ],
    ids=["float", "int", "categorical", "float-step", "float-log", "int-log"],
)
def test_objectives_of_every_distribution_kind_and_their_pairs(suggest: Callable[[Trial], float]) -> None:
    study = optuna.create_study(sampler=evolution(population_size=2, sample_size=2))
    study.optimize(suggest, n_trials=10)
    others = [
        lambda t: t.suggest_float("y", 0, 10),
        lambda t: t.suggest_int("y", 0, 10),
        lambda t: t.suggest_categorical("y", [0, 1, 2]),
        lambda t: t.suggest_float("y", 0, 10, step=0.5),
        lambda t: t.suggest_float("y", 1e-7, 10, log=True),
        lambda t: t.suggest_int("y", 1, 10, log=True),
    ]
    for other in others:
        study_pair = optuna.create_study(sampler=evolution(population_size=2, sample_size=2))
        study_pair.optimize(lambda t, o=other: suggest(t) + o(t), n_trials=5)
        assert all(t.state == TrialState.COMPLETE for t in study_pair.trials)
    assert len(study.trials) == 10 and all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize(("low", "high"), [(0, 5), (0, 20), (20, 30)], ids=["narrower", "wider", "disjoint"])
def test_ranges_that_change_between_trials(low: int, high: int) -> None:
    def objective(trial: Trial, low: int, high: int) -> float:
        return trial.suggest_float("x", low, high) + trial.suggest_int("y", low, high)

    study = optuna.create_study(sampler=evolution(population_size=3, sample_size=2))
    study.optimize(lambda t: objective(t, 0, 10), n_trials=10)
    study.optimize(lambda t: objective(t, low, high), n_trials=10)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(low <= t.params["x"] <= high and low <= t.params["y"] <= high for t in study.trials[10:])


def test_everything_is_sampled_independently() -> None:
    sampler = evolution()
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 0, 3), n_trials=5)
    trial = study.trials[-1]
    assert sampler.infer_relative_search_space(study, trial) == {}
    assert sampler.sample_relative(study, trial, dict(trial.distributions)) == {}


def test_multi_objective_studies_are_refused() -> None:
    study = optuna.create_study(directions=MIN2, sampler=evolution())
    with pytest.raises(ValueError, match="single objective"):
        study.ask()
    trial = study._storage.get_trial(study._storage.create_new_trial(study._study_id))
    with pytest.raises(ValueError, match="single objective"):
        study.sampler.sample_independent(study, trial, "x", FloatDistribution(0, 1))
    with pytest.raises(ValueError, match="single objective"):
        study.sampler.sample_relative(study, trial, study.sampler.infer_relative_search_space(study, trial))


def seven_params(trial: Trial) -> float:
    a = trial.suggest_float("a", 1, 9)
    b = trial.suggest_float("b", 1, 9, log=True)
    c = trial.suggest_float("c", 1, 9, step=1)
    d = trial.suggest_int("d", 1, 9)
    e = trial.suggest_int("e", 1, 9, log=True)
    f = trial.suggest_int("f", 1, 9, step=2)
    g = trial.suggest_categorical("g", list(range(1, 10)))
    return a + b + c + d + e + f + g


def params_of(sampler: optuna.samplers.BaseSampler, n_trials: int = 15) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=sampler)
    study.optimize(seven_params, n_trials=n_trials)
    return [t.params for t in study.trials]


def test_same_seed_same_proposals_other_seed_others() -> None:
    first = params_of(evolution(seed=1, population_size=5))
    assert first == params_of(evolution(seed=1, population_size=5))
    assert first != params_of(evolution(seed=2, population_size=5))
    reseeded = evolution(seed=1, population_size=5)
    reseeded.reseed_rng()
    assert first != params_of(reseeded)


def test_same_history_same_proposal_whatever_was_asked_before() -> None:
    history = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    history.optimize(seven_params, n_trials=6)

    def next_proposal(sampler: RegularizedEvolutionSampler) -> dict[str, Any]:
        study = optuna.create_study(sampler=sampler)
        study.add_trials(history.trials)
        trial = study.ask()
        seven_params(trial)
        return trial.params

    fresh = evolution(seed=5, population_size=4)
    used = evolution(seed=5, population_size=4)
    params_of(used, n_trials=9)  # the same sampler object, busy elsewhere first
    assert next_proposal(fresh) == next_proposal(used)


def test_proposals_do_not_depend_on_the_process() -> None:
    code = (
        "import json, optuna; from tests.service.jobs.test_strategies import evolution, params_of; "
        "print(json.dumps(params_of(evolution(seed=1, population_size=5))))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == json.loads(json.dumps(params_of(evolution(seed=1, population_size=5))))


def test_pickled_sampler_goes_on_the_same_way() -> None:
    sampler = evolution(seed=3, population_size=4)
    study = optuna.create_study(sampler=sampler)
    study.optimize(seven_params, n_trials=6)
    copy = optuna.create_study(sampler=pickle.loads(pickle.dumps(sampler)))
    copy.add_trials(study.trials)
    study.optimize(seven_params, n_trials=4)
    copy.optimize(seven_params, n_trials=4)
    assert [t.params for t in study.trials] == [t.params for t in copy.trials]


def test_threads_share_a_sampler() -> None:
    study = optuna.create_study(sampler=evolution(population_size=4))
    study.optimize(seven_params, n_trials=24, n_jobs=2)
    assert len(study.trials) == 24 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sum(t.system_attrs[PLAN]["parent"] is not None for t in study.trials) >= 15


# ==== regularized evolution: the algorithm =====================================================
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
CELL = {f"edge{e}": CategoricalDistribution(OPS) for e in range(6)}


def cell_study(values: list[float], direction: str = "minimize", **sampler: int) -> optuna.Study:
    """A study whose trial i has value values[i] and a cell with op i % 5 on every edge."""
    study = optuna.create_study(direction=direction, sampler=evolution(**sampler))
    for i, value in enumerate(values):
        params = {name: OPS[i % 5] for name in CELL}
        study.add_trial(optuna.create_trial(params=params, distributions=CELL, value=value))
    return study


def child(study: optuna.Study) -> tuple[dict[str, Any], dict[str, Any]]:
    trial = study.ask(CELL)  # left running: the population does not change
    return trial.params, study._storage.get_trial_system_attrs(trial._trial_id)[PLAN]


def test_random_until_the_population_is_complete() -> None:
    study = cell_study([1.0, 2.0], population_size=3, sample_size=2)
    assert child(study)[1] == {"parent": None, "mutate": None}
    study.add_trial(optuna.create_trial(state=TrialState.FAIL))
    assert child(study)[1]["parent"] is None  # failed and running trials do not count
    study.add_trial(optuna.create_trial(params={}, distributions={}, value=3.0))
    assert child(study)[1]["parent"] is not None


@pytest.mark.parametrize(("direction", "parent"), [("minimize", 5), ("maximize", 1)])
def test_the_tournament_winner_of_the_youngest_breeds_and_changes_one_parameter(direction: str, parent: int) -> None:
    # trial 0 is the best by far but the oldest: with population 5 it has died
    values = [-100.0, 5.0, 4.0, 3.0, 2.0, 1.0] if direction == "minimize" else [100.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    study = cell_study(values, direction, population_size=5, sample_size=5)
    parent_params = study.trials[parent].params
    mutated = set()
    for _ in range(30):
        params, plan = child(study)
        assert plan["parent"] == parent
        changed = [name for name in CELL if params[name] != parent_params[name]]
        assert changed == [plan["mutate"]]
        mutated.add(plan["mutate"])
    assert mutated == set(CELL)  # the mutated edge is drawn uniformly


def test_tournaments_draw_without_replacement() -> None:
    study = cell_study([0.0, 5.0, 1.0, 2.0, 3.0, 4.0], population_size=5, sample_size=2)
    parents = [child(study)[1]["parent"] for _ in range(200)]
    # trial 0 has died; trial 1 (the worst) loses every tournament of two distinct members
    assert set(parents) == {2, 3, 4, 5}
    # the best wins every tournament it is in: 4 of the 10 pairs
    assert 0.3 < parents.count(2) / len(parents) < 0.5


def test_regularized_evolution_beats_random_search() -> None:
    table = np.random.default_rng(7).uniform(0, 1, size=(6, 5))
    table[:, 3] += 0.5
    best = table.max(axis=1).sum()

    def accuracy(trial: Trial) -> float:
        return float(sum(table[e, OPS.index(trial.suggest_categorical(f"edge{e}", OPS))] for e in range(6)))

    def regret(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(accuracy, n_trials=100)
        return best - study.best_value

    evolved = [regret(RegularizedEvolutionSampler(seed=seed)) for seed in range(5)]
    randoms = [regret(optuna.samplers.RandomSampler(seed=seed)) for seed in range(5)]
    assert np.mean(evolved) < 0.5 * np.mean(randoms)


# ==== dominance pruning ========================================================================
ACC_PARAMS = ["maximize", "minimize"]  # objectives: val_accuracy (curve, index 0), params


def done(final: list[float], curve: dict[int, float]) -> FrozenTrial:
    """A completed trial: its final values, its accuracy per epoch."""
    attrs = {CURVE_ATTR: {str(e): v for e, v in curve.items()}, STATIC_ATTR: [None, *final[1:]]}
    return optuna.create_trial(values=final, user_attrs=attrs, state=TrialState.COMPLETE)


def running(study: optuna.Study, curve: dict[int, float], static: list[float | None]) -> FrozenTrial:
    """A trial in training with the attributes the manager sets; returned frozen, as the manager passes it."""
    trial = study.ask()
    trial.set_user_attr(CURVE_ATTR, {str(e): v for e, v in curve.items()})
    trial.set_user_attr(STATIC_ATTR, static)
    return study.trials[trial.number]


def median_pruner(**options: Any) -> DominancePruner:
    options = {"epochs": 5, "rule": "median", "n_startup_trials": 2} | options
    return DominancePruner(ACC_PARAMS, 0, **options)


def two_done_study() -> optuna.Study:
    study = optuna.create_study(directions=ACC_PARAMS)
    study.add_trial(done([0.80, 100.0], {1: 0.50, 2: 0.60, 3: 0.70, 4: 0.75, 5: 0.80}))
    study.add_trial(done([0.82, 200.0], {1: 0.55, 2: 0.65, 3: 0.72, 4: 0.80, 5: 0.82}))
    return study


def test_a_dominated_trial_is_pruned() -> None:
    study = two_done_study()
    assert median_pruner().prune(study, running(study, {1: 0.30}, [None, 500.0]))


def test_a_non_dominated_trial_is_kept_though_worse_on_the_curve() -> None:
    study = two_done_study()
    assert not median_pruner().prune(study, running(study, {1: 0.30}, [None, 10.0]))
    # dominated by one of two: half is enough for the median rule
    assert median_pruner().prune(study, running(study, {1: 0.52}, [None, 250.0]))
    assert not median_pruner().prune(study, running(study, {1: 0.60}, [None, 250.0]))


def test_nothing_is_pruned_before_startup_warmup_or_at_the_last_epoch() -> None:
    study = two_done_study()
    trial = running(study, {1: 0.30}, [None, 500.0])
    assert not median_pruner(n_startup_trials=3).prune(study, trial)
    assert not median_pruner(n_warmup_steps=2).prune(study, trial)
    assert median_pruner(n_warmup_steps=2).prune(study, running(study, {1: 0.3, 2: 0.3}, [None, 500.0]))
    last = running(study, {e: 0.1 for e in range(1, 6)}, [None, 500.0])
    assert not median_pruner().prune(study, last)
    assert median_pruner(epochs=6).prune(study, last)


def test_directions_are_respected() -> None:
    # the same numbers, read as val_loss (minimize, curve) and params (minimize): now the trial wins
    study = optuna.create_study(directions=MIN2)
    study.add_trial(done([0.80, 100.0], {1: 0.50, 2: 0.60}))
    study.add_trial(done([0.82, 200.0], {1: 0.55, 2: 0.65}))
    pruner = DominancePruner(MIN2, 0, epochs=5, rule="median", n_startup_trials=2)
    assert not pruner.prune(study, running(study, {1: 0.30}, [None, 500.0]))
    assert pruner.prune(study, running(study, {1: 0.60}, [None, 500.0]))
    # a maximized static objective: more is better
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.add_trial(done([0.80, 100.0], {1: 0.50}))
    study.add_trial(done([0.82, 200.0], {1: 0.55}))
    pruner = DominancePruner(["maximize", "maximize"], 0, epochs=5, rule="median", n_startup_trials=2)
    assert not pruner.prune(study, running(study, {1: 0.30}, [None, 500.0]))


def test_curve_at_another_index_and_unknown_objectives() -> None:
    # objectives: params (minimize, static), val_loss (minimize, curve), train_seconds (unknown early)
    study = optuna.create_study(directions=["minimize"] * 3)
    for final, loss in (([100.0, 0.2, 60.0], 0.5), ([200.0, 0.1, 90.0], 0.4)):
        study.add_trial(
            optuna.create_trial(
                values=final,
                user_attrs={CURVE_ATTR: {"1": loss}, STATIC_ATTR: [final[0], None, None]},
                state=TrialState.COMPLETE,
            )
        )
    pruner = DominancePruner(["minimize"] * 3, 1, epochs=3, rule="median", n_startup_trials=2)
    assert pruner.prune(study, running(study, {1: 0.9}, [300.0, None, None]))
    assert not pruner.prune(study, running(study, {1: 0.9}, [50.0, None, None]))
    assert pruner.prune(study, running(study, {1: float("nan")}, [50.0, None, None]))  # diverged
    assert not pruner.prune(study, running(study, {1: 0.9}, [300.0]))  # malformed: never pruned
    with pytest.raises(ValueError, match="objectives"):
        pruner.prune(optuna.create_study(directions=MIN2), study.trials[0])


def asha_study(values: list[tuple[float, float]], states: list[TrialState]) -> optuna.Study:
    """Others at rung epoch 1: (accuracy at epoch 1, params), complete with final accuracy + 0.1."""
    study = optuna.create_study(directions=ACC_PARAMS)
    for (accuracy, params), state in zip(values, states, strict=True):
        attrs = {CURVE_ATTR: {"1": accuracy}, STATIC_ATTR: [None, params]}
        final = [accuracy + 0.1, params] if state == TrialState.COMPLETE else None
        study.add_trial(optuna.create_trial(values=final, user_attrs=attrs, state=state))
    return study


def test_asha_keeps_the_top_third_by_dominance() -> None:
    others = [(0.5, 100.0), (0.6, 100.0), (0.3, 900.0), (0.2, 900.0), (0.1, 900.0)]
    pruner = DominancePruner(ACC_PARAMS, 0, epochs=9, rule="asha")

    def pruned(curve: dict[int, float], params: float) -> bool:
        study = asha_study(others, [TrialState.COMPLETE] * 5)
        return pruner.prune(study, running(study, curve, [None, params]))

    # 6 at the rung epoch 1: keep = 2; dominated by one -> kept, by two -> pruned
    assert not pruned({1: 0.55}, 200.0)
    assert pruned({1: 0.45}, 200.0)
    assert not pruned({1: 0.0}, 50.0)  # fewest parameters: on the front whatever its accuracy
    assert not pruned({1: 0.45, 2: 0.45}, 200.0)  # epoch 2 is no rung
    assert pruner.rungs(0) == [1, 3]


def test_asha_ranks_against_pruned_and_running_trials_median_does_not() -> None:
    study = asha_study([(0.5, 100.0), (0.6, 100.0)], [TrialState.PRUNED, TrialState.PRUNED])
    asha = DominancePruner(ACC_PARAMS, 0, epochs=9, rule="asha")
    median = DominancePruner(ACC_PARAMS, 0, epochs=9, rule="median", n_startup_trials=0)
    trial = running(study, {1: 0.45}, [None, 200.0])
    assert asha.prune(study, trial)  # 3 at the rung: keep 1, dominated by 2
    assert not median.prune(study, trial)  # no complete trial to compare with
    study = asha_study([(0.5, 300.0)], [TrialState.COMPLETE])
    assert not asha.prune(study, running(study, {1: 0.45}, [None, 200.0]))
    study = asha_study([(0.5, 300.0)], [TrialState.COMPLETE])
    running(study, {1: 0.6}, [None, 100.0])  # still training, already past the rung, and better
    assert asha.prune(study, running(study, {1: 0.45}, [None, 200.0]))


def test_asha_with_one_objective_is_optunas_successive_halving() -> None:
    rng = np.random.default_rng(0)
    for case in range(25):
        sha = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
        study = optuna.create_study(direction="minimize", pruner=sha)
        ours = DominancePruner(["minimize"], 0, epochs=5, rule="asha", reduction_factor=3)
        for value in rng.integers(0, 4, size=case % 8).tolist():  # small integers: ties happen
            trial = study.ask()
            trial.report(float(value), 1)
            trial.set_user_attr(CURVE_ATTR, {"1": float(value)})
            trial.set_user_attr(STATIC_ATTR, [None])
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, float(value))
        value = float(rng.integers(0, 4))
        judged = running(study, {1: value}, [None])
        optuna_trial = optuna.trial.Trial(study, judged._trial_id)
        optuna_trial.report(value, 1)
        expected = optuna_trial.should_prune()
        assert ours.prune(study, study.trials[judged.number]) == expected, case


def test_hyperband_brackets_are_judged_apart() -> None:
    pruner = DominancePruner(ACC_PARAMS, 0, epochs=9, rule="hyperband")  # brackets 0, 1, 2 by trial number
    study = optuna.create_study(directions=ACC_PARAMS)
    for i in range(6):  # trials 0-5: the ones in bracket 1 (1, 4) beat everything, those in 0 and 2 are poor
        good = pruner.bracket(i) == 1
        attrs = {CURVE_ATTR: {"1": 0.9 if good else 0.1, "3": 0.9 if good else 0.1}, STATIC_ATTR: [None, 10.0]}
        study.add_trial(optuna.create_trial(values=[0.9, 10.0], user_attrs=attrs, state=TrialState.COMPLETE))
    judged = running(study, {1: 0.5}, [None, 100.0])  # number 6: bracket 0, rungs 1 and 3
    assert judged.number == 6 and pruner.rungs(6) == [1, 3]
    assert not pruner.prune(study, judged)  # bracket 0's trials 0 and 3 do not dominate it
    judged = running(study, {1: 0.5, 2: 0.5, 3: 0.5}, [None, 100.0])  # number 7: bracket 1, rung 3 only
    assert pruner.rungs(7) == [3]
    assert pruner.prune(study, judged)  # beaten by bracket 1's trials 1 and 4
    judged = running(study, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, [None, 100.0])  # number 8: bracket 2, no rung
    assert not pruner.prune(study, judged)


# ==== Pareto helpers ===========================================================================
def test_hypervolume_by_hand() -> None:
    assert hypervolume([[1, 2], [2, 1]], MIN2, [3, 3]) == pytest.approx(3.0)
    assert hypervolume([[2, 1], [1, 2]], ["maximize", "maximize"], [0, 0]) == pytest.approx(3.0)
    # accuracy up, params down: boxes 0.4 x 100 and 0.3 x 150 overlapping in 0.3 x 100
    assert hypervolume([[0.9, 100], [0.8, 50]], ACC_PARAMS, [0.5, 200]) == pytest.approx(55.0)
    # dominated, duplicate and beyond-the-reference points add nothing
    assert hypervolume([[1, 2], [2, 1], [2, 2], [1, 2], [0, 5], [5, 0]], MIN2, [3, 3]) == pytest.approx(3.0)
    three = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]  # three 2x1x1 boxes, pairs and all three meet in [1, 2]^3
    assert hypervolume(three, ["minimize"] * 3, [2, 2, 2]) == pytest.approx(4.0)
    assert hypervolume([[0, 0, 0, 0]], ["minimize"] * 4, [1, 2, 3, 4]) == pytest.approx(24.0)
    assert hypervolume([[0.5]], ["maximize"], [0.0]) == pytest.approx(0.5)
    assert hypervolume([], MIN2, [1, 1]) == 0.0


@pytest.mark.parametrize("n_objectives", [2, 3, 4])
def test_hypervolume_agrees_with_optunas(n_objectives: int) -> None:
    from optuna._hypervolume import compute_hypervolume  # private: a cross-check only

    rng = np.random.default_rng(n_objectives)
    for _ in range(5):
        points = rng.uniform(0, 1, size=(30, n_objectives))
        reference = np.full(n_objectives, 1.1)
        expected = compute_hypervolume(points, reference)
        assert hypervolume(points.tolist(), ["minimize"] * n_objectives, reference.tolist()) == pytest.approx(expected)
        directions = ["maximize"] + ["minimize"] * (n_objectives - 1)
        flipped = points * np.array([-1] + [1] * (n_objectives - 1))
        mirrored = reference * np.array([-1] + [1] * (n_objectives - 1))
        assert hypervolume(flipped.tolist(), directions, mirrored.tolist()) == pytest.approx(expected)


def test_reference_point() -> None:
    # (4, 9) is dominated; the front spans 1..3 and 5..10
    assert reference_point([[1, 10], [3, 5], [4, 9]], MIN2) == pytest.approx([3.2, 10.5])
    assert reference_point([[0.9, 100], [0.8, 50]], ACC_PARAMS) == pytest.approx([0.79, 105.0])
    assert reference_point([[2, 7]], ["minimize", "maximize"]) == pytest.approx([3.0, 6.0])
    points = [[0.9, 100], [0.8, 50], [0.7, 80]]
    assert hypervolume(points, ACC_PARAMS, reference_point(points, ACC_PARAMS)) > 0
    with pytest.raises(ValueError):
        reference_point([], MIN2)


def test_non_dominated() -> None:
    points = [[1, 2], [2, 1], [2, 2], [1, 2], [0, 3]]
    assert non_dominated(points, MIN2) == [0, 1, 3, 4]
    assert non_dominated(points, ["maximize", "maximize"]) == [2, 4]
    assert non_dominated([], MIN2) == []
    assert non_dominated([[1, math.inf], [2, 1]], MIN2) == [0, 1]


@pytest.mark.parametrize(
    "call",
    [
        lambda: non_dominated([[1, float("nan")]], MIN2),
        lambda: non_dominated([[1, 2, 3]], MIN2),
        lambda: non_dominated([[1, 2]], ["minimize", "lower"]),
        lambda: hypervolume([[1, math.inf]], MIN2, [2, 2]),
        lambda: hypervolume([[1, 1]], MIN2, [2]),
        lambda: hypervolume([[1, 1]], MIN2, [2, math.nan]),
    ],
)
def test_pareto_helpers_refuse_bad_input(call: Callable[[], Any]) -> None:
    with pytest.raises(ValueError):
        call()
