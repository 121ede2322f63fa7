"""``strategy.screen``: draw many candidates, score them with a zero-cost proxy, train the best first.

Both kinds of job screen the same way: ``draw`` takes ``samples`` architectures from the space
with a random sampler seeded by the strategy's seed, and ``rank`` keeps the ``keep`` best (a
candidate whose score is undefined ranks last; ties keep the draw's order); those are enqueued,
best first, before the sampler proposes its own (``origin = screened``). A simulated job reads
the scores from its table (``cellar table score``). A job that trains has its workers score them
(``Executor.score``): each slot builds its share of the candidates, untrained, and scores them on
a training batch, as a trial is scored before its first step; no trial starts until all are in.

Restarts: the ranked list is kept with the job's study attributes (``cellar:screen``) the moment
it is known, so a server that resumes the job enqueues what of it was not asked yet and scores
nothing again. A server stopped while the workers score starts the scoring over (the draw is the
same). A cancel or a time limit during the scoring stops it at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import optuna

from search_spaces import SearchSpace
from workers.protocol import ScreenRequest, TrialError, TrialPayload

from ..store import runs
from .reports import ORIGIN

if TYPE_CHECKING:
    from .runner import JobRunner

__all__ = ["ATTR", "Screening", "draw", "rank"]

log = logging.getLogger(__name__)

#: the study system attribute holding a finished screen: {proxy, samples, scored, seconds, kept}
ATTR = "cellar:screen"


def draw(space: SearchSpace, seed: int, samples: int) -> list[str]:
    """``samples`` random candidates of ``space``, the same for the same seed."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.sample(study.ask()) for _ in range(samples)]


def rank(encodings: Sequence[str], values: Sequence[float | None], keep: int) -> list[tuple[str, float | None]]:
    """The ``keep`` best (encoding, score) pairs, best first; undefined scores last, ties in order."""
    order = sorted(range(len(encodings)), key=lambda i: (values[i] is None, -(values[i] or 0.0), i))
    return [(encodings[i], values[i]) for i in order[:keep]]


class Screening:
    """A job's screen: drawn (in a thread of its own: 100,000 candidates take Optuna about 20 s,
    which the manager's thread, serving every job, must not wait for), scored on the workers,
    then ranked, stored and enqueued."""

    def __init__(self, runner: JobRunner, template: TrialPayload) -> None:
        self.runner = runner
        self.template = template
        self.started = time.perf_counter()
        self.encodings: list[str] = []
        self.drawn: Future[list[str]] = Future()
        self.pending: Future[list[float | None]] | None = None
        self.over = False
        screen = runner.spec.strategy.screen
        assert screen is not None  # made by ``resume`` only for a job that screens
        self.screen = screen
        threading.Thread(
            target=_fill, args=(self.drawn, draw, runner.space, runner.spec.strategy.seed, screen.samples),
            name=f"cellar-screen-{runner.job_id}", daemon=True,
        ).start()  # fmt: skip

    @classmethod
    def resume(cls, runner: JobRunner, template: TrialPayload, asked: int) -> Screening | None:
        """On (re)start: enqueue a finished screen's candidates not asked yet, or start screening."""
        if runner.spec.strategy.screen is None:
            return None
        done = runner.gate.study_attrs().get(ATTR)
        if done is None:
            return cls(runner, template)
        for entry in done["kept"][asked:]:
            runner.study.enqueue_trial(runner.space.encode_params(entry["encoding"]), user_attrs={ORIGIN: "screened"})
        return None

    def _score(self) -> None:
        runner, screen = self.runner, self.screen
        self.encodings = self.drawn.result()
        request = ScreenRequest(
            template=replace(self.template, proxies=(screen.proxy,), min_proxies=None),
            search_space=runner.space.kind,
            space_params=runner.space.params_dict(),
            task=runner.info.task,
            encodings=self.encodings,
            proxy=screen.proxy,
        )
        log.info("job %s: scoring %d candidates with %s before training", runner.job_id, len(self.encodings), screen.proxy)
        self.pending = runner.executor.score(runner.job_id, request)

    def settle(self) -> bool:
        """Whether the screen is over: scored, ranked, stored and enqueued, or failed, which stops
        the job; False while the candidates are drawn or the workers score them."""
        if self.over:
            return True
        if self.pending is None and self.drawn.done() and self.drawn.exception() is None:
            self._score()
        pending = self.pending if self.pending is not None else self.drawn
        if not pending.done():
            return False
        runner, screen = self.runner, self.screen
        error = pending.exception()
        if error is not None:
            cause = getattr(error, "cause", None) or error  # Ray wraps the worker's TrialError
            what = str(cause) if isinstance(cause, TrialError) else f"{type(cause).__name__}: {cause}"
            runner.reports.fatal_error = f"strategy.screen: scoring the candidates failed: {what.splitlines()[0]}"
            runner._stop("failed", runner.reports.fatal_error)
            self.over = True
            return True
        assert self.pending is not None
        values = self.pending.result()
        kept = rank(self.encodings, values, screen.keep)
        record = {
            "proxy": screen.proxy,
            "samples": len(values),
            "scored": sum(value is not None for value in values),
            "seconds": round(time.perf_counter() - self.started, 3),
            "kept": [{"encoding": encoding, "score": score} for encoding, score in kept],
        }
        runner.study._storage.set_study_system_attr(runner.study._study_id, ATTR, record)
        with runner.store.write() as session:
            runs.save_study_attrs(session, runner.job_id, runner.gate.study_attrs())
        for encoding, _score in kept:
            runner.study.enqueue_trial(runner.space.encode_params(encoding), user_attrs={ORIGIN: "screened"})
        log.info(
            "job %s: %d of %d candidates scored in %.1f s; the best %d train first (%s %.4g to %.4g)",
            runner.job_id, record["scored"], len(values), record["seconds"], len(kept), screen.proxy,
            (kept[0][1] if kept else None) or math.nan, (kept[-1][1] if kept else None) or math.nan,
        )  # fmt: skip
        self.over = True
        return True


def _fill(future: Future[Any], function: Any, *args: Any) -> None:
    try:
        future.set_result(function(*args))
    except BaseException as error:  # handed to the manager's thread, which fails the job with it
        future.set_exception(error)
