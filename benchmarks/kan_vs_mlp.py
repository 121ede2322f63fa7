"""KAN against an MLP of the same size (within 10% of its parameters) on the KAN paper's function fitting.

Both models come from the ``kan`` search space's generated ``nn_code`` and train through LEMUR's
contract (``train_setup`` + one full-batch ``learn`` per step, Adam, cosine schedule), side by
side: same data, same steps, same seeds. Each model gets its best learning rate from a small grid,
chosen on a validation set; the table reports test RMSE, mean and standard deviation over seeds.

The "grid extension" row trains a coarse KAN for half the steps, calls ``Net.extend_grid`` to a
finer grid (same function, more parameters) and trains the rest, as the KAN paper does; its MLP is
matched to the extended size.

    .venv/bin/python benchmarks/kan_vs_mlp.py                 # exp-sin, about 3 minutes on 2 cores
    .venv/bin/python benchmarks/kan_vs_mlp.py --formulas exp-sin,xy,exp-4d --seeds 3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import torch

from search_spaces.kan import KanSearchSpace
from workers.nn_module import load_nn_module

#: name -> (input dimension, f); inputs uniform in [-1, 1] (Liu et al. 2024, section 3.1)
FORMULAS: dict[str, tuple[int, Callable[[torch.Tensor], torch.Tensor]]] = {
    "exp-sin": (2, lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)),
    "xy": (2, lambda x: x[:, 0] * x[:, 1]),
    "exp-4d": (
        4,
        lambda x: torch.exp(
            0.5 * torch.sin(math.pi * (x[:, 0] ** 2 + x[:, 1] ** 2))
            + 0.5 * torch.sin(math.pi * (x[:, 2] ** 2 + x[:, 3] ** 2))
        ),
    ),
}


@dataclass(frozen=True)
class Comparison:
    label: str
    kan: str
    mlp: str
    extend_to: int | None = None  # grid size the KAN is extended to halfway


#: the KAN shapes are the paper's ([2,5,1], [2,2,1], [4,2,1,1]); the MLPs the closest in size
COMPARISONS: dict[str, list[Comparison]] = {
    "exp-sin": [
        Comparison("G=5", "bspline(g=5,k=3)x5|bspline(g=5,k=3)", "linear()x9|linear()x9|linear()"),
        Comparison("G=5->10", "bspline(g=5,k=3)x5|bspline(g=5,k=3)", "linear()x12|linear()x12|linear()", 10),
    ],
    "xy": [Comparison("G=5", "bspline(g=5,k=3)x2|bspline(g=5,k=3)", "linear()x5|linear()x5|linear()")],
    "exp-4d": [
        Comparison("G=5", "bspline(g=5,k=3)x2|bspline(g=5,k=3)x1|bspline(g=5,k=3)", "linear()x7|linear()x7|linear()")
    ],
}
SPACE = {"include_mlp": True, "widths": list(range(1, 65)), "grid_sizes": [5, 10], "spline_orders": [3]}
LEARNING_RATES = (0.01, 0.03, 0.1)
SIZES = {"train": 1000, "val": 1000, "test": 1000}


def dataset(formula: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    dim, f = FORMULAS[formula]
    generator = torch.Generator().manual_seed(list(SIZES).index(part) + 1)
    x = torch.rand(SIZES[part], dim, generator=generator) * 2 - 1
    return x, f(x).unsqueeze(-1)  # float targets (N, 1): the contract regresses them


def rmse(net: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return ((net.eval()(data[0]) - data[1]) ** 2).mean().sqrt().item()


def train(job: tuple[str, str, int | None, float, int, int]) -> dict[str, object]:
    """One model, one learning rate, one seed: its validation and test RMSE."""
    formula, encoding, extend_to, lr, seed, steps = job
    torch.set_num_threads(1)
    space = KanSearchSpace(SPACE)
    dim = FORMULAS[formula][0]
    train_data, val, test = (dataset(formula, part) for part in SIZES)
    torch.manual_seed(seed)
    net = load_nn_module(space.nn_code(encoding), space.nn_name(encoding)).Net((1, dim), (1,), {}, torch.device("cpu"))
    phases = [(steps, None)] if extend_to is None else [(steps // 2, None), (steps - steps // 2, extend_to)]
    started = time.perf_counter()
    for phase_steps, grid in phases:
        if grid is not None:
            net.extend_grid(grid)  # new spline weights: a fresh optimizer, as the KAN paper restarts
        net.train_setup({"lr": lr, "optimizer": "adam", "epoch": phase_steps, "scheduler": "cosine"})
        for _ in range(phase_steps):
            net.learn([train_data])
    return {
        "formula": formula,
        "encoding": encoding,
        "extend_to": extend_to,
        "lr": lr,
        "seed": seed,
        "val": rmse(net, val),
        "test": rmse(net, test),
        "params": sum(p.numel() for p in net.parameters()),
        "seconds": time.perf_counter() - started,
    }


def best(results: list[dict[str, object]], formula: str, encoding: str, extend_to: int | None) -> dict[str, object]:
    """The learning rate with the lowest mean validation RMSE, and its test RMSE over seeds."""
    mine = [r for r in results if (r["formula"], r["encoding"], r["extend_to"]) == (formula, encoding, extend_to)]
    by_lr = {lr: [r for r in mine if r["lr"] == lr] for lr in LEARNING_RATES}
    lr = min(by_lr, key=lambda lr: statistics.fmean(float(r["val"]) for r in by_lr[lr]))
    tests = [float(r["test"]) for r in by_lr[lr]]
    return {
        "lr": lr,
        "mean": statistics.fmean(tests),
        "std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "params": by_lr[lr][0]["params"],
        "seconds": statistics.fmean(float(r["seconds"]) for r in by_lr[lr]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formulas", default="exp-sin", help=f"comma-separated, from: {', '.join(FORMULAS)}")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps per model")
    parser.add_argument("--jobs", type=int, default=2, help="processes, one thread each")
    args = parser.parse_args()
    formulas = [name.strip() for name in args.formulas.split(",")]
    for name in formulas:
        if name not in FORMULAS:
            parser.error(f"unknown formula {name!r}; choose from: {', '.join(FORMULAS)}")

    jobs = []
    for formula in formulas:
        for c in COMPARISONS[formula]:
            for encoding, extend_to in ((c.kan, c.extend_to), (c.mlp, None)):
                for lr in LEARNING_RATES:
                    jobs += [(formula, encoding, extend_to, lr, seed, args.steps) for seed in range(args.seeds)]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(train, jobs))
    wall = time.perf_counter() - started

    print(
        f"{args.seeds} seeds, {args.steps} full-batch Adam steps, n_train={SIZES['train']}, "
        f"lr from {list(LEARNING_RATES)} by validation RMSE; test RMSE on {SIZES['test']} points\n"
    )
    header = (
        f"{'formula':8} {'setting':8} {'model':4} {'architecture':58} {'params':>6} {'lr':>5} "
        f"{'test RMSE':>19} {'s/run':>6}"
    )
    print(header)
    print("-" * len(header))
    for formula in formulas:
        for c in COMPARISONS[formula]:
            kan = best(results, formula, c.kan, c.extend_to)
            mlp = best(results, formula, c.mlp, None)
            kan_arch = c.kan + (f" -> g={c.extend_to}" if c.extend_to else "")
            for model, arch, row in (("KAN", kan_arch, kan), ("MLP", c.mlp, mlp)):
                print(
                    f"{formula:8} {c.label:8} {model:4} {arch:58} {row['params']:>6} {row['lr']:>5} "
                    f"{row['mean']:.5f} ± {row['std']:.5f} {row['seconds']:>6.1f}"
                )
            size = (int(mlp["params"]) - int(kan["params"])) / int(kan["params"])
            verdict = "" if abs(size) <= 0.10 else "  (sizes differ by more than 10%!)"
            print(
                f"{'':8} {'':8} MLP/KAN test RMSE = {float(mlp['mean']) / float(kan['mean']):.2f}x, "
                f"MLP size {size:+.1%} of the KAN's{verdict}"
            )
    print(f"\n{len(jobs)} runs in {wall:.0f} s on {args.jobs} process(es)")


if __name__ == "__main__":
    main()
