"""Pruners by name: Optuna's for single-objective jobs, ``DominancePruner`` for multi-objective ones.

Optuna has no pruning for several objectives. For those, the manager sets two user attributes on
the trial (``CURVE_ATTR``, ``STATIC_ATTR``) after each epoch and calls ``DominancePruner.prune``
itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from .pareto import signs
from .params import validate_pruner_params

__all__ = ["CURVE_ATTR", "STATIC_ATTR", "DominancePruner", "make_multi_objective_pruner", "make_pruner"]

#: user attribute of a multi-objective trial: ``{str(epoch): value}`` of the objective with a curve
CURVE_ATTR = "cellar_curve"
#: user attribute of a multi-objective trial: one value per objective known before training ends,
#: ``None`` at the curve's index (and for objectives only known at the end)
STATIC_ATTR = "cellar_static"


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
        self.signs = signs(directions)
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
