"""Pareto helpers: the non-dominated set, a default reference point and the exact hypervolume."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .params import DIRECTIONS, choices

__all__ = ["hypervolume", "non_dominated", "reference_point", "signs"]


def signs(directions: Sequence[str]) -> list[float]:
    """+1 for each objective to minimize, -1 for each to maximize (turns everything into minimizing)."""
    if not directions:
        raise ValueError("need at least one direction")
    result = []
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; allowed: {choices(DIRECTIONS)}")
        result.append(1.0 if direction == "minimize" else -1.0)
    return result


def _as_losses(points: Sequence[Sequence[float]], directions: Sequence[str], *, finite: bool) -> np.ndarray:
    factors = signs(directions)
    for point in points:
        if len(point) != len(factors):
            raise ValueError(f"each point needs {len(factors)} values (one per direction), got {list(point)}")
    losses = np.asarray(points, dtype=float).reshape(len(points), len(factors)) * np.asarray(factors)
    if np.isnan(losses).any() or (finite and not np.isfinite(losses).all()):
        raise ValueError("points must be finite" if finite else "points must not contain NaN")
    return losses


def _pareto_mask(losses: np.ndarray) -> np.ndarray:
    """Which points no other dominates. Points are taken in lexicographic order, where a point's
    dominators all come before it, and each is compared with the front kept so far only (whatever
    dominates it, a kept point dominates too): O(n x front), not O(n^2); one objective is a minimum."""
    if len(losses) == 0:
        return np.ones(0, dtype=bool)
    if losses.shape[1] == 1:
        return losses[:, 0] == losses[:, 0].min()
    keep = np.zeros(len(losses), dtype=bool)
    front: list[int] = []
    for i in np.lexsort(losses.T[::-1]):
        point = losses[i]
        if front:
            kept = losses[front]
            if (np.all(kept <= point, axis=1) & np.any(kept < point, axis=1)).any():
                continue
        keep[i] = True
        front.append(int(i))
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
    return [float(v) for v in (worst + margin) * np.asarray(signs(directions))]


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
    ref = np.asarray(reference, dtype=float) * np.asarray(signs(directions))
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
