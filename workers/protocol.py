"""What the manager sends a worker and what a worker reports back: plain data, torch-free.

A trial runs in three calls on one worker: ``setup`` (build the model from ``nn_code``, load and
split the data; report the parameter count), ``train_epoch`` once per epoch (report the epoch's
metrics), ``finish`` (evaluate on the test split). The manager decides between calls, so pruning,
cancelling and heartbeats need no other channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from search_spaces.datasets import DEFAULT_SPLIT

__all__ = ["CLEAN_ERRORS", "EpochReport", "FinalReport", "ScreenRequest", "SetupReport", "TrialError", "TrialPayload"]

#: exception types after which a worker is known to be clean and may run the next trial; after any
#: other (out of memory above all) its process is replaced, so nothing leaks into the next trial
CLEAN_ERRORS = frozenset({"ConstraintViolation", "TrialDiverged", "GPUUnavailable"})


class TrialError(Exception):
    """What crosses back from a worker when a trial raises: the exception's type name, message and
    traceback as plain text. Workers never send the exception itself, whose class could belong to
    torch or to the model's code and would have to be imported by the receiving process."""

    def __init__(self, error_type: str, message: str, traceback: str, log: str | None = None) -> None:
        super().__init__(error_type, message, traceback, log)
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        #: what the trial printed during the failed call
        self.log = log

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


#: the zero-cost proxies a worker computes (``workers.proxies``), in its order
PROXIES = ("synflow", "naswot", "jacov", "grad_norm", "snip")


@dataclass(frozen=True)
class TrialPayload:
    trial_id: int
    job_id: int
    number: int
    nn_name: str
    nn_code: str
    dataset: str
    #: LEMUR's ``prm``: lr, momentum, weight_decay, batch, epochs, optimizer, transform, ...
    prm: dict[str, Any]
    epochs: int
    seed: int
    split_seed: int
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT
    data_dir: str | None = None
    threads: int = 1
    use_gpu: bool = False
    max_params: int | None = None
    max_flops: int | None = None
    memory_limit_mb: int | None = None
    #: the architecture's canonical encoding in its search space (what a results table is keyed by)
    arch: str | None = None
    search_space: str | None = None
    #: where ``finish`` writes the trained weights (``torch.save`` of the state_dict with the shapes
    #: and prm that rebuild the network); None: the job keeps none
    weights_path: str | None = None
    #: the source of a user's transform file (LEMUR's ``transform_dir``: ``<dir>/<prm['transform']>.py``
    #: defining ``transform(norm)``), run in the sandbox in place of Cellar's transform of that name
    transform_code: str | None = None
    #: zero-cost proxies to score the untrained model with before its first step (``workers.proxies``)
    proxies: tuple[str, ...] = ()
    #: a proxy's least value a candidate must reach to be trained (``constraints.min_proxies``)
    min_proxies: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialPayload:
        data = dict(data)
        data["split_fractions"] = tuple(data.get("split_fractions", DEFAULT_SPLIT))
        data["proxies"] = tuple(data.get("proxies", ()))
        return cls(**data)


@dataclass(frozen=True)
class ScreenRequest:
    """Candidates for a worker to score, untrained, with one zero-cost proxy (``strategy.screen``).

    The worker builds each candidate's code from the space itself (``search_space``, its
    ``space_params`` and ``task``), so that a thousand candidates cross the wire as a thousand
    encodings; ``template`` is the job's trial payload (dataset, split, prm, seed, device)."""

    template: TrialPayload
    search_space: str
    space_params: dict[str, Any]
    task: str | None
    encodings: list[str]
    proxy: str

    def split(self, parts: int) -> list[ScreenRequest]:
        """The candidates in at most ``parts`` contiguous shares, in order (none empty)."""
        size = -(-len(self.encodings) // max(1, parts)) if self.encodings else 1
        return [replace(self, encodings=self.encodings[start : start + size]) for start in range(0, len(self.encodings), size)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScreenRequest:
        data = dict(data)
        data["template"] = TrialPayload.from_dict(data["template"])
        return cls(**data)


@dataclass(frozen=True)
class SetupReport:
    num_params: int
    #: forward FLOPs for one sample (PyTorch's flop counter)
    flops: int
    #: forward milliseconds for a training-sized batch on the worker
    latency_ms: float
    in_shape: list[int]
    out_shape: list[int]
    split: dict[str, Any]
    #: ``host:pid`` of the worker process; ``host/node-ip:pid`` inside Ray, where the node's IP tells
    #: Ray nodes apart (several nodes may share one host)
    worker: str
    device: str
    setup_seconds: float
    #: torch's intra-op threads for this trial (``max(1, int(cpus_per_trial))``)
    threads: int = 1
    #: the GPUs Ray assigned to this worker (``ray.get_gpu_ids()``; outside Ray, CUDA_VISIBLE_DEVICES)
    gpu_ids: list[str] = field(default_factory=list)
    #: LEMUR's ``nn_stat`` values of the built model (``workers.nn_stats.measure_model``)
    nn_stats: dict[str, Any] = field(default_factory=dict)
    #: the zero-cost proxies the job asked for, of the untrained model (None: one it cannot give)
    proxies: dict[str, float | None] | None = None
    proxy_seconds: float | None = None


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    loss: float | None
    val_loss: float
    val_metric: float
    #: training seconds since the trial began, cumulative over epochs (evaluation excluded)
    elapsed_seconds: float
    #: the metric on the training data, when ``learn`` returns LEMUR's ``(train_accuracy, train_loss)``
    train_metric: float | None = None


@dataclass(frozen=True)
class FinalReport:
    test_metric: float
    test_loss: float
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
