"""The ask/tell gate between a job and its Optuna study: what the sampler sees, and when.

Reproducible order (``strategy.reproducible``, the default): trial ``k`` is asked only once
trials ``0 .. k-p`` have finished (``p`` = parallelism, so at most ``p`` trials are in flight), and
a finished trial is told to the study only when trial ``number + p`` is asked. The sampler thus
always sees exactly trials ``0 .. k-p`` when it proposes trial ``k``, whatever order the workers
finish in. Without it, a trial is asked as soon as a slot frees and told as soon as it ends.

In both orders, every random stream the sampler holds is reseeded from ``(seed, k)`` before trial
``k`` is asked: a proposal depends on the seed, the trial's number and the trials seen, never on how
many asks this process made before. A sampler rebuilt by a restarted server therefore does not
replay its first draws, and with the reproducible order the resumed job proposes exactly what it
would have proposed without the restart.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import TrialState as OptunaState

__all__ = ["AskTellGate", "reseed_sampler"]


@dataclass
class _Outcome:
    """How a finished trial ended, waiting to be told to the study."""

    state: OptunaState
    values: list[float] | None


class AskTellGate:
    """Asks and tells one study in the reproducible order (or at once, when not reproducible)."""

    def __init__(self, study: optuna.Study, *, parallelism: int, reproducible: bool, seed: int) -> None:
        self.study = study
        self.parallelism = parallelism
        self.reproducible = reproducible
        self.seed = seed
        #: trials asked so far, i.e. the next trial's number (``study.trials`` also holds enqueued ones)
        self.asked = 0
        self._untold: dict[int, _Outcome] = {}

    @property
    def horizon(self) -> int:
        """Trials numbered below this are the ones the sampler sees when it proposes the next."""
        return self.asked - self.parallelism + 1 if self.reproducible else self.asked

    def sees(self, number: int) -> bool:
        """Whether trial ``number`` is among those the sampler sees for the next proposal."""
        return number < self.horizon

    def may_ask(self, running: Iterable[int]) -> bool:
        """Whether the next trial may be asked, given the numbers of the running trials; if so,
        everything it should see is told first."""
        if not self.reproducible:
            return True
        horizon = self.horizon
        if any(number < horizon for number in running):
            return False
        self.tell_until(horizon)
        return True

    def ask(self) -> optuna.Trial:
        """The next trial, proposed from ``(seed, number)`` and the trials told so far."""
        reseed_sampler(self.study.sampler, self.seed, self.asked)
        trial = self.study.ask()
        if trial.number != self.asked:
            raise RuntimeError(f"the study numbered trial {self.asked} as {trial.number}")
        return trial

    def asked_one(self) -> None:
        """The trial last asked was stored: the next one gets the next number."""
        self.asked += 1

    def record(self, number: int, state: OptunaState, values: list[float] | None) -> None:
        """A trial ended: told now, or held until the order allows (reproducible)."""
        if self.reproducible:
            self._untold[number] = _Outcome(state, values)
        else:
            self.study.tell(number, values=values, state=state, skip_if_finished=True)

    def tell_until(self, horizon: int) -> None:
        """Tell the study every held outcome numbered below ``horizon``, in number order."""
        for number in sorted(n for n in self._untold if n < horizon):
            outcome = self._untold.pop(number)
            self.study.tell(number, values=outcome.values, state=outcome.state, skip_if_finished=True)

    def tell_all(self) -> None:
        self.tell_until(self.asked)

    def replay(
        self,
        *,
        state: OptunaState,
        values: list[float] | None,
        params: dict[str, Any],
        distributions: dict[str, Any],
        intermediate_values: dict[int, float] | None = None,
        user_attrs: dict[str, Any] | None = None,
        system_attrs: dict[str, Any] | None = None,
        hidden: bool,
    ) -> None:
        """Put a stored trial back into the study as the next number, with the sampler's own
        attributes. A ``hidden`` finished one enters as running and its outcome is held, as it was
        before the restart (reproducible order); a running one (``state`` RUNNING) stays running."""
        hidden = hidden and state != OptunaState.RUNNING
        self.study.add_trial(
            optuna.trial.create_trial(
                state=OptunaState.RUNNING if hidden else state,
                params=params,
                distributions=distributions,
                values=None if hidden or state == OptunaState.RUNNING else values,
                intermediate_values=intermediate_values or None,
                user_attrs=user_attrs or None,
                system_attrs=system_attrs or None,
            )
        )
        if hidden:
            self._untold[self.asked] = _Outcome(state, values)
        self.asked += 1

    def running_trial(self, number: int) -> optuna.Trial:
        """A handle on trial ``number`` (replayed as running) to report its epochs to, as to an asked one."""
        storage = self.study._storage
        return optuna.Trial(self.study, storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number))

    def sampler_attrs(self, trial: optuna.Trial) -> dict[str, Any]:
        """The sampler's and pruner's per-trial state (Optuna's system attributes: NSGA-II's
        generation, ASHA's rungs), stored to be replayed."""
        return dict(self.study._storage.get_trial_system_attrs(trial._trial_id))

    def study_attrs(self) -> dict[str, Any]:
        """The sampler's study-wide state (Optuna's study system attributes: NSGA-II's parents)."""
        return dict(self.study._storage.get_study_system_attrs(self.study._study_id))

    def restore_study_attrs(self, attrs: dict[str, Any] | None) -> None:
        for key, value in (attrs or {}).items():
            self.study._storage.set_study_system_attr(self.study._study_id, key, value)


#: in-memory state that is not a random stream but changes proposals and that a sampler rebuilt
#: after a restart would not have: attribute -> what a fresh sampler holds
_WARM_STARTS: dict[type, dict[str, Any]] = {
    optuna.samplers.GPSampler: {"_gprs_cache_list": None, "_constraints_gprs_cache_list": None},
}
#: never walked into: they hold no sampler stream, and walking them is slow
_OPAQUE = (optuna.study.Study, optuna.storages.BaseStorage, np.ndarray)
_LEAVES = (str, bytes, int, float, complex, bool, type(None), type)
_STREAMS = (LazyRandomState, np.random.RandomState, np.random.Generator, random.Random)


def reseed_sampler(sampler: BaseSampler, seed: int, number: int) -> None:
    """Put ``sampler`` in the state it must have when proposing trial ``number`` of a job seeded
    ``seed``: every random stream it holds (nested samplers and strategies included) seeded from
    ``(seed, number, the stream's attribute path)``, warm starts a rebuilt sampler lacks dropped.

    Optuna's samplers draw from streams seeded once at construction, so a sampler rebuilt after a
    restart would replay its first draws: a resumed job proposed its first architectures again.
    A stream shared by reference (NSGA-II's and its child-generation strategy's) is seeded once.
    """
    for path, stream in _streams(sampler):
        # crc32, not hash(): str hashes are salted per process, and the seed must survive a restart
        entropy = np.random.SeedSequence([seed & 0xFFFF_FFFF_FFFF_FFFF, number, zlib.crc32(path.encode())])
        if isinstance(stream, LazyRandomState):
            stream.rng.seed(entropy.generate_state(8))
        elif isinstance(stream, np.random.RandomState):
            stream.seed(entropy.generate_state(8))
        elif isinstance(stream, np.random.Generator):
            stream.bit_generator.state = type(stream.bit_generator)(entropy).state
        else:
            stream.seed(int.from_bytes(entropy.generate_state(4).tobytes(), "little"))
    stack, seen = [sampler], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for kind, attributes in _WARM_STARTS.items():
            if isinstance(node, kind):
                for name, fresh in attributes.items():
                    if hasattr(node, name):
                        setattr(node, name, fresh)
        if _walkable(node):
            stack.extend(v for v in vars(node).values() if isinstance(v, BaseSampler))


def _walkable(node: Any) -> bool:
    module = type(node).__module__ or ""
    return (
        not isinstance(node, _OPAQUE)
        and hasattr(node, "__dict__")
        and (isinstance(node, BaseSampler) or module.startswith(("optuna.samplers", "service.")))
    )


def _plain(value: Any) -> bool:
    return isinstance(value, _LEAVES) or (isinstance(value, tuple) and all(isinstance(v, _LEAVES) for v in value))


def _streams(sampler: BaseSampler) -> list[tuple[str, Any]]:
    """(attribute path, stream) of every random stream reachable from ``sampler``, in a stable order."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def walk(node: Any, path: str, depth: int) -> None:
        if isinstance(node, _LEAVES) or id(node) in seen or depth > 8:
            return
        seen.add(id(node))
        if isinstance(node, _STREAMS):
            found.append((path, node))
        elif isinstance(node, dict):
            for key in sorted(node, key=repr):
                walk(node[key], f"{path}[{key!r}]", depth + 1)
        elif isinstance(node, list | tuple | set | frozenset):
            items = list(node) if isinstance(node, list | tuple) else sorted(node, key=repr)
            # a grid's 15,625 points are data, not objects holding streams
            if not (len(items) > 64 and _plain(items[0])):
                for i, item in enumerate(items):
                    if not _plain(item):
                        walk(item, f"{path}[{i}]", depth + 1)
        elif _walkable(node):
            for name in sorted(vars(node)):  # sorted: the paths, and so the seeds, do not depend on order
                walk(vars(node)[name], f"{path}.{name}", depth + 1)

    walk(sampler, "", 0)
    return found
