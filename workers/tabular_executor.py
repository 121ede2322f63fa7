"""``TabularExecutor``: trials look their results up in a results table instead of training.

A discrete-event simulation, as NAS-Bench-201's benchmark protocol runs searches: the table holds
the per-epoch results of an exhaustively trained space, and each call a trial makes completes on
a simulated clock at its start plus the time the table recorded for it — an epoch takes the
epoch's training seconds (the difference of the cumulative ``elapsed_seconds``), setup and the
test evaluation take ``setup_seconds`` and ``finish_seconds`` (default 0: the benchmark's budgets
count training time only). ``now()`` is ``start`` plus the simulated seconds, so a job's
``time_limit_s`` is a simulated budget, and hundreds of searches run in seconds.

``poll`` hands out events in simulated-time order, in two steps: when the next event lies in the
future, it only moves the clock there and returns nothing; the next ``poll`` returns every event
due by then. The manager thus checks its time limit at the new time before it sees the results,
so no call that completes after a job's deadline is ever reported.

A trial fails with ``TabularLookupError`` when its architecture is not in the table or the job's
protocol (search space, dataset, epochs, training hyperparameters) is not the table's; a
candidate over ``max_params`` / ``max_flops`` fails with ``ConstraintViolation``, as a worker's
would. Torch-free; the table is plain data (``service.tabular.load_table`` reads one from the
store).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .executor import Executor, ExecutorEvent, TrialResources
from .protocol import TrialPayload

__all__ = ["SIMULATION_START", "CellResult", "EpochResult", "ResultsTable", "TabularExecutor"]

#: the simulated clock's zero: a fixed date, so that simulated runs are reproducible to the second
SIMULATION_START = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    loss: float | None
    val_loss: float | None
    val_metric: float | None
    #: training seconds since the trial started, cumulative
    elapsed_seconds: float


@dataclass(frozen=True)
class CellResult:
    """One architecture's recorded results."""

    params: int
    flops: int | None
    latency_ms: float | None
    epochs: tuple[EpochResult, ...]
    #: None where the table's source holds no test metric
    test_metric: float | None
    train_seconds: float
    #: the encoding that was trained for these results (an isomorphic twin, or the cell itself)
    original: str | None = None
    #: the final validation metric per training seed (a source that trained several); the curve
    #: holds their mean, a job reads seed ``training.seed mod len``
    seed_metrics: tuple[float, ...] | None = None
    #: zero-cost proxies of the cell's untrained network (``cellar table score``)
    proxies: Mapping[str, float | None] | None = None

    def seeded(self, seed: int) -> tuple[EpochResult, ...]:
        """The curve a job trained with ``seed`` sees: the seed's own final validation metric."""
        if not self.seed_metrics:
            return self.epochs
        last = self.epochs[-1]
        value = self.seed_metrics[seed % len(self.seed_metrics)]
        return (*self.epochs[:-1], EpochResult(last.epoch, last.loss, last.val_loss, value, last.elapsed_seconds))


@dataclass(frozen=True)
class ResultsTable:
    """A results table: the protocol every cell was trained under, and each cell's results."""

    name: str
    search_space: str
    space_params: dict[str, Any]
    dataset: str
    metric: str
    epochs: int
    #: the training seed (and split seed) every cell was trained with
    seed: int
    #: LEMUR's ``prm`` the cells were trained with; a job asking for other values is refused
    prm: dict[str, Any]
    #: the split the cells were trained on: ``fractions``, ``seed``, ``sizes``, ``sha256``
    split: dict[str, Any] | None
    results: Mapping[str, CellResult] = field(repr=False)
    #: the cells' curves hold only the last epoch, ``epochs`` (a source without per-epoch results)
    final_only: bool = False
    #: a third-party benchmark's table: where its numbers come from; None for a table Cellar trained
    source: Mapping[str, Any] | None = None

    @property
    def third_party(self) -> bool:
        """The table holds a benchmark package's results, not Cellar's own training."""
        return bool((self.source or {}).get("package"))

    @property
    def seeds(self) -> int:
        """Training seeds per cell: 1, or the most a source's cell holds."""
        return max((len(r.seed_metrics or ()) for r in self.results.values()), default=0) or 1

    def describe(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.space_params.items()))
        return f"{self.search_space}({params}) on {self.dataset}, {self.epochs} epochs, {len(self.results):,} cells"


#: prm keys that describe the run rather than how it trained (``epoch`` is checked as epochs)
_PROTOCOL_IGNORED = frozenset({"epoch"})


@dataclass
class _Trial:
    job_id: int
    slot: int
    result: CellResult | None
    curve: tuple[EpochResult, ...] = ()
    epochs_started: int = 0


class TabularExecutor(Executor):
    """Runs trials by looking them up in ``table``, on a simulated clock."""

    simulated = True

    def __init__(
        self,
        table: ResultsTable,
        *,
        start: datetime = SIMULATION_START,
        setup_seconds: float = 0.0,
        finish_seconds: float = 0.0,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self.table = table
        self.start = start
        self.setup_seconds = setup_seconds
        self.finish_seconds = finish_seconds
        #: simulated seconds since ``start``
        self.clock = 0.0
        self._slots: dict[int, list[int | None]] = {}  # job -> trial id per slot
        self._trials: dict[int, _Trial] = {}
        self._events: list[tuple[float, int, ExecutorEvent]] = []  # heap of (time, sequence, event)
        self._sequence = 0
        #: calls made (setup, epochs, finish): what a real executor would have trained
        self.calls = 0
        self._space: Any = None

    # ---- the clock ---------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.clock)

    def status(self) -> dict[str, Any]:
        return {"executor": "tabular", "table": self.table.name, "simulated_seconds": self.clock}

    # ---- slots -------------------------------------------------------------------------------
    def open_job(self, job_id: int, slots: int, resources: TrialResources) -> None:
        self._slots.setdefault(job_id, [None] * slots)

    def free_slots(self, job_id: int) -> int:
        return sum(1 for trial in self._slots.get(job_id, []) if trial is None)

    def close_job(self, job_id: int) -> None:
        for trial_id in [t for t, trial in self._trials.items() if trial.job_id == job_id]:
            self._vacate(trial_id)
        self._slots.pop(job_id, None)

    # ---- trial calls -------------------------------------------------------------------------
    def start_trial(self, job_id: int, payload: TrialPayload) -> None:
        slots = self._slots[job_id]
        index = slots.index(None)
        slots[index] = payload.trial_id
        result = self.lookup(payload.arch)
        curve = result.seeded(payload.seed) if result is not None else ()
        trial = self._trials[payload.trial_id] = _Trial(job_id, index, result, curve)
        self.calls += 1
        problem = self._refusal(payload, result)
        if problem is not None:
            self._schedule(
                0.0,
                ExecutorEvent(
                    payload.trial_id, "error", error=f"{problem[0]}: {problem[1]}", error_type=problem[0], traceback=""
                ),
            )
            return
        assert result is not None
        setup = {
            "num_params": result.params,
            "flops": result.flops,
            "latency_ms": result.latency_ms,
            "split": self.table.split,
            "worker": f"tabular:{self.table.name}",
            "device": "simulated",
            "setup_seconds": self.setup_seconds,
            "proxies": {name: (result.proxies or {}).get(name) for name in payload.proxies} if payload.proxies else None,
        }
        self._schedule(self.setup_seconds, ExecutorEvent(payload.trial_id, "setup", data=setup))
        self._start_epoch(payload.trial_id, trial, after=self.setup_seconds)

    def train_epoch(self, trial_id: int) -> None:
        trial = self._trials.get(trial_id)
        if trial is not None:
            self._start_epoch(trial_id, trial)

    def finish(self, trial_id: int) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial.result is None:
            return
        self.calls += 1
        data = {"test_metric": trial.result.test_metric, "test_loss": None, "train_seconds": trial.result.train_seconds}
        self._schedule(self.finish_seconds, ExecutorEvent(trial_id, "final", data=data))

    def release(self, trial_id: int) -> None:
        self._vacate(trial_id)

    def abort(self, trial_id: int) -> None:
        self._vacate(trial_id)

    def poll(self, timeout: float) -> list[ExecutorEvent]:
        """The events due now; if none is, move the clock to the next one and return nothing."""
        while self._events and self._events[0][2].trial_id not in self._trials:
            heapq.heappop(self._events)  # a released or aborted trial's call: it never completes
        if not self._events:
            return []
        due = self._events[0][0]
        if due > self.clock:
            self.clock = due
            return []
        events = []
        while self._events and self._events[0][0] <= self.clock:
            _, _, event = heapq.heappop(self._events)
            if event.trial_id not in self._trials:
                continue
            events.append(event)
            if event.kind == "error":
                self._vacate(event.trial_id)  # as the Ray executor: a failed trial's slot is free again
        return events

    # ---- internals ---------------------------------------------------------------------------
    def lookup(self, arch: str | None) -> CellResult | None:
        """The cell's results, or its class's where the table holds one member per class."""
        if arch is None:
            return None
        found = self.table.results.get(arch)
        if found is None:
            if self._space is None:
                from search_spaces import get_search_space

                self._space = get_search_space(self.table.search_space, self.table.space_params)
            try:
                found = self.table.results.get(self._space.representative(arch))
            except Exception:  # not an architecture of the table's space: refused as not in the table
                return None
        return found

    def _start_epoch(self, trial_id: int, trial: _Trial, *, after: float = 0.0) -> None:
        assert trial.result is not None
        self.calls += 1
        curve = trial.curve
        index = trial.epochs_started
        trial.epochs_started += 1
        if index >= len(curve):
            message = f"results table {self.table.name!r} has {len(curve)} epochs per cell, epoch {index + 1} was asked"
            self._schedule(
                after,
                ExecutorEvent(
                    trial_id,
                    "error",
                    error=f"TabularLookupError: {message}",
                    error_type="TabularLookupError",
                    traceback="",
                ),
            )
            return
        previous = curve[index - 1].elapsed_seconds if index > 0 else 0.0
        duration = max(0.0, curve[index].elapsed_seconds - previous)
        self._schedule(after + duration, ExecutorEvent(trial_id, "epoch", data=asdict(curve[index])))

    def _schedule(self, delay: float, event: ExecutorEvent) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (self.clock + delay, self._sequence, event))

    def _refusal(self, payload: TrialPayload, result: CellResult | None) -> tuple[str, str] | None:
        """Why this trial cannot be looked up (error type, message), or None."""
        table = self.table
        where = f"results table {table.name!r} ({table.describe()})"
        if payload.search_space is not None and payload.search_space != table.search_space:
            return (
                "TabularLookupError",
                f"the job searches {payload.search_space!r}, {where} holds {table.search_space!r}",
            )
        if payload.dataset != table.dataset:
            return (
                "TabularLookupError",
                f"the job trains on {payload.dataset!r}, {where} was trained on {table.dataset!r}",
            )
        if payload.epochs != table.epochs:
            return (
                "TabularLookupError",
                f"the job trains {payload.epochs} epochs, {where} recorded {table.epochs}; set budget.epochs to {table.epochs}",
            )
        differ = [
            f"{key}={payload.prm.get(key)!r} (table: {value!r})"
            for key, value in table.prm.items()
            if key not in _PROTOCOL_IGNORED and payload.prm.get(key) != value
        ]
        if not table.third_party and (payload.seed != table.seed or payload.split_seed != table.seed):
            differ.append(f"seed={payload.seed} (table: {table.seed}; set training.seed to {table.seed})")
        fractions = (table.split or {}).get("fractions")
        if fractions is not None and list(payload.split_fractions) != list(fractions):
            differ.append(f"split={list(payload.split_fractions)} (table: {fractions})")
        if differ:
            return "TabularLookupError", f"the job's training differs from {where}: {', '.join(differ)}"
        if result is None:
            return "TabularLookupError", f"architecture {payload.arch!r} is not in {where}"
        if payload.max_params is not None and result.params > payload.max_params:
            return (
                "ConstraintViolation",
                f"{result.params:,} parameters exceed constraints.max_params ({payload.max_params:,})",
            )
        if payload.max_flops is not None and result.flops is not None and result.flops > payload.max_flops:
            return "ConstraintViolation", f"{result.flops:,} FLOPs exceed constraints.max_flops ({payload.max_flops:,})"
        for name, least in (payload.min_proxies or {}).items():
            value = (result.proxies or {}).get(name)
            if value is None or value < least:
                return (
                    "ConstraintViolation",
                    f"zero-cost proxy {name} is {value if value is not None else 'undefined'} for this network, "
                    f"below the job's constraints.min_proxies.{name} ({least:g}); not trained",
                )
        return None

    def _vacate(self, trial_id: int) -> None:
        trial = self._trials.pop(trial_id, None)
        if trial is not None and trial.job_id in self._slots:
            self._slots[trial.job_id][trial.slot] = None
