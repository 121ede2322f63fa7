"""Trained weights a job keeps, in a directory (``CELLAR_ARTIFACTS_DIR``), never in the SQL store.

A worker writes ``job-<id>/trial-<number>.pt`` when a trial finishes (``workers.runner.save_weights``);
the job's runner then keeps the files of the trials its ``keep_weights`` policy names and removes
the others, so a job holds at most that many files once each trial has been judged. Removing a job
removes its folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..store import Store, runs
from .spec import JobCreate
from .strategies import pareto

__all__ = ["ArtifactStore", "KeptWeights", "kept_numbers"]

#: trials a single-objective job keeps by default
DEFAULT_KEEP = 3


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def job_dir(self, job_id: int) -> Path:
        return self.root / f"job-{job_id}"

    def weights(self, job_id: int, number: int) -> Path:
        return self.job_dir(job_id) / f"trial-{number}.pt"

    def kept(self, job_id: int) -> set[int]:
        """The trial numbers whose weights are on disk."""
        folder = self.job_dir(job_id)
        if not folder.is_dir():
            return set()
        return {int(p.stem.removeprefix("trial-")) for p in folder.glob("trial-*.pt")}

    def keep_only(self, job_id: int, numbers: set[int], *, judged: set[int] | None = None) -> list[int]:
        """Remove the job's weights but those of ``numbers``, among the trials in ``judged`` (all,
        without it): a trial whose worker has written its file but whose end the manager has not yet
        recorded keeps it until it is judged. Returns the numbers removed."""
        on_disk = self.kept(job_id)
        removed = sorted((on_disk if judged is None else on_disk & judged) - numbers)
        for number in removed:
            self.weights(job_id, number).unlink(missing_ok=True)
        return removed

    def remove_job(self, job_id: int) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


class _Scored(Protocol):
    number: int
    values: list[float] | None


def _candidates(directions: Sequence[str], keep: int | None, trials: Sequence[_Scored]) -> list[_Scored]:
    """The trials among which the kept ones are chosen, whatever trials come later: single
    objective, the ``keep`` best (default 3; ties to the earlier trial), best first; several, the
    whole non-dominated set, ordered by the first objective (a later trial only ever removes
    points from it)."""
    scored = [t for t in trials if t.values is not None and len(t.values) == len(directions)]
    if not scored:
        return []
    sign = 1.0 if directions[0] == "maximize" else -1.0

    def order(t: _Scored) -> tuple[float, int]:
        return (-sign * t.values[0], t.number)  # type: ignore[index]

    if len(directions) == 1:
        return sorted(scored, key=order)[: keep or DEFAULT_KEEP]
    front = [scored[i] for i in pareto.non_dominated([t.values for t in scored], directions)]  # type: ignore[misc]
    return sorted(front, key=order)


def kept_numbers(directions: Sequence[str], keep: int | None, trials: Sequence[_Scored]) -> set[int]:
    """The trial numbers whose weights a job keeps, among its complete ``trials`` with values:
    single objective, the ``keep`` best (default 3; ties to the earlier trial); several, the
    non-dominated set, cut to the ``keep`` best on the first objective when ``keep`` is set."""
    if keep == 0:
        return set()
    chosen = _candidates(directions, keep, trials)
    return {t.number for t in (chosen if len(directions) == 1 or keep is None else chosen[:keep])}


@dataclass(frozen=True)
class _Judged:
    number: int
    values: list[float] | None


class KeptWeights:
    """One job's weights: where its workers write them, and which stay after each completion."""

    def __init__(self, artifacts: ArtifactStore, store: Store, spec: JobCreate, job_id: int) -> None:
        self.artifacts, self.store, self.job_id = artifacts, store, job_id
        self.directions = [o.direction for o in spec.objectives or []]
        self.keep = spec.keep_weights
        #: the numbers of the trials judged so far, and the few among them a later trial can
        #: still displace (read from the store at the first completion this runner sees)
        self._judged: set[int] | None = None
        self._candidates: list[_Scored] = []

    def path(self, number: int) -> Path:
        return self.artifacts.weights(self.job_id, number)

    def retain(self, number: int, values: list[float] | None) -> list[int]:
        """Remove the weights of the trials the policy no longer names (after each completion, so
        that a job holds at most ``keep`` files once its trials are judged); returns their numbers.
        ``number`` and ``values``: the trial just completed. The job's earlier trials are read once,
        not at every completion: a trial only competes with the current candidates."""
        if self._judged is None:
            with self.store.read() as session:
                trained = [_Judged(t.number, t.values) for t in runs.trained_results(session, self.job_id)]
            self._judged = {t.number for t in trained}
        else:
            trained = [*self._candidates, _Judged(number, values)]
        self._judged.add(number)
        self._candidates = _candidates(self.directions, self.keep, trained)
        kept = kept_numbers(self.directions, self.keep, self._candidates)
        return self.artifacts.keep_only(self.job_id, kept, judged=self._judged)
