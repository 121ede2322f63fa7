"""The trial runner: trains one candidate under LEMUR's contract. The only module that imports torch.

Every candidate, whatever its search space, is built from its ``nn_code`` (so the stored source is
exactly what ran) and trained through ``train_setup(prm)`` and ``learn(train_data)``, one epoch
per call; validation and test are scored with the dataset's metric module.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import random
import resource
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from typing import Any

import statistics
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.datasets import get_dataset, seeded_split
from search_spaces.metrics import metric_module
from search_spaces.transforms import load_transform

from .nn_module import load_nn_module
from .nn_stats import measure_model
from .protocol import EpochReport, FinalReport, SetupReport, TrialPayload
from .proxies import zero_cost
from .tasks import Prepared, prepare

__all__ = [
    "ConstraintViolation", "GPUUnavailable", "TrialDiverged", "TrialOutOfMemory", "TrialRunner", "run_trial", "score_proxies",
    "seed_everything",
]

_LATENCY_RUNS = 5


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class ConstraintViolation(RuntimeError):
    """The candidate breaks a constraint of the job (e.g. ``max_params``); it is never trained."""


class TrialOutOfMemory(MemoryError):
    """The trial needed more memory than it may use (its cap, the machine, or the GPU)."""


class GPUUnavailable(RuntimeError):
    """The trial asked for a GPU (``gpus_per_trial > 0``) but torch on its worker can use none.

    Not a silent fall-back to the CPU: the trial holds a GPU share in Ray while it would train on
    CPU threads it never asked for, and its ``train_seconds`` and ``latency_ms`` would be recorded
    as if measured on a GPU.
    """


_OOM_MARKERS = ("can't allocate memory", "out of memory", "not enough memory")


@contextmanager
def _memory_errors(cap_mb: int | None) -> Iterator[None]:
    """Turn the allocators' many ways of saying "out of memory" into ``TrialOutOfMemory``."""
    try:
        yield
    except MemoryError as error:
        raise TrialOutOfMemory(_oom_message(str(error), cap_mb)) from error
    except RuntimeError as error:
        text = str(error)
        # oneDNN reports a failed allocation as a primitive it could not create
        if any(m in text for m in _OOM_MARKERS) or (cap_mb is not None and "could not create a primitive" in text):
            raise TrialOutOfMemory(_oom_message(text, cap_mb)) from error
        raise


def _oom_message(text: str, cap_mb: int | None) -> str:
    where = f"its memory cap of {cap_mb} MiB (resources.memory_mb_per_trial)" if cap_mb else "the available memory"
    lines = text.strip().splitlines() or ["an allocation failed"]
    return f"out of memory: the trial needed more than {where}: {lines[0][:300]}"


@dataclass
class _Active:
    payload: TrialPayload
    model: nn.Module
    metric: Any
    data: Prepared
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    epoch: int = 0
    train_seconds: float = 0.0


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _learned(returned: Any) -> tuple[float | None, float | None]:
    """``(train_metric, loss)`` from what ``learn`` returned: a loss, LEMUR's ``(train_accuracy,
    train_loss)``, or nothing."""
    if isinstance(returned, (tuple, list)) and len(returned) == 2:
        return _number(returned[0]), _number(returned[1])
    return None, _number(returned)


@torch.no_grad()
def measure(model: nn.Module, one: Any, batch: Any, device: torch.device) -> tuple[int, float]:
    """(FLOPs of a forward pass on one sample, counted by PyTorch's FlopCounterMode; milliseconds
    of a forward pass on a training-sized batch, the median of a few runs after a warm-up).
    Operations the counter does not know (e.g. PyG's scatter) count as zero."""
    was_training = model.training
    model.eval()
    one, batch = one.to(device), batch.to(device)
    with FlopCounterMode(display=False) as counter:
        model(one)
    flops = int(counter.get_total_flops())
    model(batch)  # warm-up: first calls pay for lazy initialisation
    times = []
    for _ in range(_LATENCY_RUNS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - started) * 1000.0)
    model.train(was_training)
    return flops, statistics.median(times)


def score_proxies(model: nn.Module, batches: Any, p: TrialPayload, device: torch.device) -> tuple[dict[str, Any] | None, float | None]:
    """The zero-cost proxies the job asked for, on a training-sized batch of the training split,
    before any step; a candidate below ``min_proxies`` is a ``ConstraintViolation`` (not trained)."""
    if not p.proxies:
        return None, None
    started = time.perf_counter()
    # the random state is put back: a trial trains the same with and without proxies
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    try:
        scores = zero_cost(model, batches.batch.to(device), batches.labels.to(device), p.proxies)
    finally:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
    for name, least in (p.min_proxies or {}).items():
        value = scores.get(name)
        if value is None or value < least:
            raise ConstraintViolation(
                f"zero-cost proxy {name} is {value if value is not None else 'undefined'} for this network, "
                f"below the job's constraints.min_proxies.{name} ({least:g}); not trained"
            )
    return scores, time.perf_counter() - started


def _placement() -> tuple[str, list[str]]:
    """(``worker`` name, GPU ids) of this process.

    Inside a Ray worker the name carries the Ray node's IP (``host/ip:pid``), since several nodes
    may share a host, and the GPU ids are the ones Ray assigned. Ray is looked up, never imported:
    the runner also runs without it (in-process tests, the inline executor).
    """
    host, pid = socket.gethostname(), os.getpid()
    ray = sys.modules.get("ray")
    # another thread may be importing Ray this moment: a half-made module has no is_initialized,
    # and a Ray still being imported has not been initialized either
    initialized = getattr(ray, "is_initialized", None)
    if initialized is not None and initialized():
        return f"{host}/{ray.util.get_node_ip_address()}:{pid}", [str(g) for g in ray.get_gpu_ids()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ""
    return f"{host}:{pid}", [g for g in visible.split(",") if g]


def _no_gpu_message(worker: str, gpu_ids: list[str]) -> str:
    if torch.version.cuda is None:
        reason = f"this torch ({torch.__version__}) is a CPU-only build"
    else:
        reason = f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA device"
    assigned = ", ".join(gpu_ids) if gpu_ids else "none"
    return (
        f"the trial asked for a GPU (resources.gpus_per_trial > 0) but on worker {worker} {reason} "
        f"(GPUs assigned to it: {assigned}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
        "Run GPU trials on nodes with a CUDA build of torch and a working driver, or set gpus_per_trial to 0"
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _vm_data() -> int:
    """Bytes of this process's private data (heap and anonymous mappings), as RLIMIT_DATA counts."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmData:")) * 1024


def _limit_memory(limit: int | None) -> None:
    """Cap this process's private data at ``limit`` bytes (None: lift the cap).

    RLIMIT_DATA counts heap and anonymous mappings, where tensors live, so an allocation past the
    cap fails with a real out-of-memory error in the trial instead of taking the machine down.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if limit is None:
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        return
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


#: (dataset info, split, batches and evaluations, the model's in_shape, out_shape) of a trial
PreparedTrial = tuple[Any, Any, Prepared, tuple[int, ...], tuple[int, ...]]


#: characters of a trial's output (prints and warnings) that are kept; the rest is dropped
LOG_LIMIT = 64 * 1024


class TrialOutput:
    """What a trial's code prints (stdout, stderr) and warns, call by call, up to ``LOG_LIMIT``
    characters a trial. Output written below Python (C++ ``printf``) is not seen."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.limit = limit
        self.kept = 0

    def restart(self) -> None:
        self.kept = 0

    def _bounded(self, text: str) -> str:
        room = self.limit - self.kept
        if room <= 0 or not text:
            return ""
        if len(text) > room:
            text = text[:room] + f"\n[cellar: output beyond {self.limit:,} characters dropped]\n"
            self.kept = self.limit
        else:
            self.kept += len(text)
        return text

    @contextmanager
    def capture(self, report: dict[str, Any]) -> Iterator[None]:
        """Collect what the block prints and warns into ``report["log"]`` (when there is any); an
        exception leaving the block carries it as ``cellar_log``."""
        buffer = io.StringIO()
        try:
            with redirect_stdout(buffer), redirect_stderr(buffer), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                try:
                    yield
                finally:
                    for warning in caught:
                        buffer.write(warnings.formatwarning(
                            warning.message, warning.category, warning.filename, warning.lineno, None
                        ))
        except BaseException as error:
            error.cellar_log = self._bounded(buffer.getvalue())  # type: ignore[attr-defined]
            raise
        text = self._bounded(buffer.getvalue())
        if text:
            report["log"] = text


def save_weights(active: _Active, path: Path) -> int:
    """Write the trained network as ``torch.save`` of ``{"state_dict", "in_shape", "out_shape",
    "prm", "nn"}`` (CPU tensors; ``torch.load(path, weights_only=True)`` reads it), through a temporary
    file renamed into place, so that a reader never sees half a file. Returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "state_dict": {k: v.detach().cpu() for k, v in active.model.state_dict().items()},
        "in_shape": list(active.in_shape),
        "out_shape": list(active.out_shape),
        "prm": dict(active.payload.prm),
        "nn": active.payload.nn_name,
    }
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(record, partial)
    os.replace(partial, path)
    return path.stat().st_size


class TrialRunner:
    """Runs trials one after another in one process, keeping loaded datasets between them."""

    def __init__(self, threads: int = 1) -> None:
        torch.set_num_threads(max(1, int(threads)))
        self._datasets: dict[tuple[str, str | None], Any] = {}
        self._active: _Active | None = None
        #: private memory of this process without any trial: libraries and loaded datasets. A
        #: trial's ``memory_limit_mb`` is counted on top of it (memory an earlier trial freed but
        #: the allocator kept stays inside that trial's budget, so it does not widen the next one's).
        self._baseline: int | None = None
        self.output = TrialOutput()

    # ---- the three calls, each report with what the trial printed since the last (``log``) -----
    def setup(self, payload: dict[str, Any], prepared: PreparedTrial | None = None) -> dict[str, Any]:
        """Build and measure the trial's model; ``prepared`` is ``prepare(payload)`` made earlier
        (the sandbox checks the model on it first), else it is made here."""
        self.output.restart()
        printed: dict[str, Any] = {}
        with self.output.capture(printed):
            report = self._setup(payload, prepared)
        return {**report, **printed}

    def train_epoch(self) -> dict[str, Any]:
        printed: dict[str, Any] = {}
        with self.output.capture(printed):
            report = self._train_epoch()
        return {**report, **printed}

    def finish(self) -> dict[str, Any]:
        printed: dict[str, Any] = {}
        with self.output.capture(printed):
            report = self._finish()
        return {**report, **printed}

    def _setup(self, payload: dict[str, Any], prepared: PreparedTrial | None) -> dict[str, Any]:
        started = time.perf_counter()
        p = TrialPayload.from_dict(payload)
        self._active = None
        _limit_memory(None)  # a previous trial's cap must not hamper loading
        if p.threads:
            torch.set_num_threads(max(1, p.threads))
        worker, gpu_ids = _placement()
        if p.use_gpu and not torch.cuda.is_available():
            raise GPUUnavailable(_no_gpu_message(worker, gpu_ids))
        # inside Ray, CUDA_VISIBLE_DEVICES holds only the GPU(s) Ray assigned: "cuda" is that one
        device = torch.device("cuda" if p.use_gpu else "cpu")

        fresh = (p.dataset, p.data_dir) not in self._datasets
        before = _vm_data()
        self.load(p)
        loaded = _vm_data() - before
        info, split, batches, in_shape, out_shape = prepared if prepared is not None else self.prepare(p)

        seed_everything(p.seed)
        module = load_nn_module(p.nn_code, p.nn_name)
        model = module.Net(in_shape, out_shape, dict(p.prm), device)
        model.to(device)
        num_params = sum(t.numel() for t in model.parameters())
        if p.max_params is not None and num_params > p.max_params:
            raise ConstraintViolation(
                f"{num_params} parameters exceed the job's max_params {p.max_params}; not trained"
            )
        flops, latency_ms = measure(model, batches.one, batches.batch, device)
        if p.max_flops is not None and flops > p.max_flops:
            raise ConstraintViolation(f"{flops} FLOPs exceed the job's max_flops {p.max_flops}; not trained")
        proxies, proxy_seconds = score_proxies(model, batches, p, device)
        model.train_setup(dict(p.prm))
        # the cap starts here: libraries and data are loaded, what follows is the trial's own memory
        if self._baseline is None:
            self._baseline = _vm_data()
        elif fresh:
            self._baseline += max(0, loaded)
        if p.memory_limit_mb is not None:
            _limit_memory(self._baseline + p.memory_limit_mb * 1024 * 1024)
        self._active = _Active(
            payload=p,
            model=model,
            metric=importlib.import_module(metric_module(info.metric)).create_metric(out_shape),
            data=batches,
            in_shape=tuple(in_shape),
            out_shape=tuple(out_shape),
        )
        report = SetupReport(
            num_params=num_params,
            nn_stats=measure_model(model),
            flops=flops,
            latency_ms=latency_ms,
            in_shape=list(in_shape),
            out_shape=list(out_shape),
            split=split.record(),
            worker=worker,
            device=str(device),
            setup_seconds=time.perf_counter() - started,
            threads=torch.get_num_threads(),
            gpu_ids=gpu_ids,
            proxies=proxies,
            proxy_seconds=proxy_seconds,
        )
        return asdict(report)

    def _train_epoch(self) -> dict[str, Any]:
        active = self._require()
        started = time.perf_counter()
        with _memory_errors(active.payload.memory_limit_mb):
            returned = active.model.learn(active.data.train)
            active.train_seconds += time.perf_counter() - started
            active.epoch += 1
            train_metric, loss = _learned(returned)
            val_metric, val_loss = self._evaluate(active, active.data.val)
        for name, value in (("training loss", loss), ("validation loss", val_loss)):
            if value is not None and not math.isfinite(value):
                raise TrialDiverged(
                    f"{name} is {value} after epoch {active.epoch}: training diverged; "
                    "lower the learning rate or add normalisation"
                )
        return asdict(
            EpochReport(
                epoch=active.epoch,
                loss=loss,
                val_loss=val_loss,
                val_metric=val_metric,
                elapsed_seconds=active.train_seconds,
                train_metric=train_metric,
            )
        )

    def _finish(self) -> dict[str, Any]:
        active = self._require()
        with _memory_errors(active.payload.memory_limit_mb):
            test_metric, test_loss = self._evaluate(active, active.data.test)
        self._active = None
        extra = {}
        if active.payload.weights_path is not None:
            extra["weights_bytes"] = save_weights(active, Path(active.payload.weights_path))
        return asdict(
            FinalReport(test_metric=test_metric, test_loss=test_loss, train_seconds=active.train_seconds, extra=extra)
        )

    def reset(self) -> None:
        """Drop the current trial (pruned or cancelled) and its memory."""
        self._active = None

    def load(self, p: TrialPayload) -> None:
        """Load (once per worker) the trial's dataset."""
        self._load(p.dataset, p.data_dir)

    def prepare(self, p: TrialPayload, transform: Any = None) -> PreparedTrial:
        """(dataset info, split, batches and evaluations, the model's in_shape, out_shape) of a trial.
        ``transform``: a transform module (a user's file, ``search_spaces.transforms.user``) in place of
        the one ``prm["transform"]`` names."""
        root = Path(p.data_dir) if p.data_dir else None
        data = self._load(p.dataset, p.data_dir)
        info = get_dataset(p.dataset).describe(root)
        split = seeded_split(len(data), p.split_seed, p.split_fractions)
        if transform is None:
            transform = load_transform(str(p.prm.get("transform", info.transform)))
        prepared = prepare(info, data, split, p.prm, p.seed, transform)
        # what the model sees: norm_299 gives 299x299; a user's file, whatever its pipeline gives
        shape = transform.out_shape(info.in_shape) if transform.out_shape else prepared.one.shape[1:]
        in_shape = (1, *shape)
        return info, split, prepared, in_shape, tuple(info.out_shape)

    # ---- helpers -----------------------------------------------------------------------------
    def _require(self) -> _Active:
        if self._active is None:
            raise RuntimeError("no trial is set up on this worker; call setup first")
        return self._active

    def _load(self, name: str, data_dir: str | None) -> Any:
        key = (name, data_dir)
        if key not in self._datasets:
            dataset = get_dataset(name)
            root = Path(data_dir) if data_dir else None
            dataset.check_available(root)
            self._datasets[key] = dataset.load(root)
        return self._datasets[key]

    @staticmethod
    def _evaluate(active: _Active, evaluation: Any) -> tuple[float, float]:
        active.model.eval()
        return evaluation(active.model, active.metric)


def run_trial(payload: TrialPayload) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Run a whole trial in this process: (setup report, epoch reports, final report)."""
    runner = TrialRunner(payload.threads)
    setup = runner.setup(payload.to_dict())
    epochs = [runner.train_epoch() for _ in range(payload.epochs)]
    return setup, epochs, runner.finish()
