"""Forward + backward time of Cellar's B-spline KAN against pykan, an efficient-kan-style layer and an MLP.

Every model takes one training step's work, ``loss = mse(model(x), y); loss.backward()``, at the
same shape and batch, on one CPU thread; the table gives the median of ``--repeats`` steps after
warm-up, in ms, and each model's trainable parameters. The models:

* Cellar: the ``kan`` search space's generated ``nn_code`` for ``bspline(g=5,k=3)x..`` layers.
* efficient-kan-style: written here from efficient-kan's description (all B-spline bases by
  Cox-de Boor at once, one matmul with the scaled spline weights, plus ``linear(silu(x))``). Before
  timing it is loaded with Cellar's weights and must give Cellar's outputs: same function, same work.
* pykan (``pykan==0.2.8``) in its own venv, ``.cellar/pykan-venv``, created on first use: a plain
  venv whose ``.pth`` puts ``.venv``'s site-packages after its own, so it reuses Cellar's torch;
  pykan goes in with ``--no-deps``, then its import-time dependencies (only those .venv lacks get
  installed), with torch pinned; the venv's torch must be .venv's. It runs as ``--side pykan`` in
  a subprocess and prints JSON. Timed as built (symbolic branch on, activations saved) and after
  ``.speed()`` (symbolic branch and activation saving off), float32 like the others.
* MLP: ``Linear``/``SiLU`` of the KAN's depth, hidden widths scaled by one factor to the KAN's
  parameter count (plain torch: the space caps widths at 256, too few to match the wide KANs).

    .venv/bin/python benchmarks/kan_speed.py                      # about 4 minutes on 2 cores (+1 to make the venv)
    .venv/bin/python benchmarks/kan_speed.py --repeats 50 --json .cellar/kan_speed.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
PYKAN_VERSION = "0.2.8"
#: what ``import kan`` needs besides torch (pykan's own requirements pin old versions; not used)
PYKAN_DEPS = ("matplotlib", "pandas", "sympy", "scikit-learn", "tqdm", "pyyaml")
DEFAULT_VENV = ROOT / ".cellar" / "pykan-venv"  # .cellar/ is git-ignored
_MARKER = ".cellar-pykan-venv.json"
GRID, ORDER = 5, 3
#: (KAN widths, batch sizes): the KAN paper's small networks, a digits-sized and a wide one
CASES: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((2, 5, 1), (1000,)),
    ((4, 2, 1, 1), (1000,)),
    ((64, 32, 10), (64, 256)),
    ((784, 64, 10), (256,)),
)
WARMUP = 3
BUDGET_S = 20.0  # per model and case: slow models get fewer repeats (at least MIN_REPEATS)
MIN_REPEATS = 3


# ---- timing (both processes) --------------------------------------------------------------------
def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def inputs(widths: tuple[int, ...], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` uniform in [-1, 1] (the grid's range) and targets; the same tensors in both processes."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, widths[0], generator=generator) * 2 - 1
    return x, torch.randn(batch, widths[-1], generator=generator)


def time_steps(models: dict[str, nn.Module], widths: tuple[int, ...], batch: int, repeats: int) -> dict[str, Any]:
    """Median ms of forward + ``loss.backward()`` per model. The models take turns within each
    repeat, so that load from other work on the machine falls on all of them alike; one slower
    than ``BUDGET_S / repeats`` a step gets fewer repeats and its first step as warm-up."""
    x, y = inputs(widths, batch)

    def step(model: nn.Module) -> float:
        model.zero_grad(set_to_none=True)
        started = time.perf_counter()
        F.mse_loss(model(x), y).backward()
        return (time.perf_counter() - started) * 1000

    first = {name: step(model) for name, model in models.items()}
    planned = {name: max(MIN_REPEATS, min(repeats, int(BUDGET_S * 1000 / ms))) for name, ms in first.items()}
    for _ in range(WARMUP - 1):
        for name, model in models.items():
            if planned[name] == repeats:
                step(model)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(max(planned.values())):
        for name, model in models.items():
            if i < planned[name]:
                times[name].append(step(model))
    return {
        name: {"ms": statistics.median(t), "min_ms": min(t), "repeats": len(t), "params": trainable(models[name])}
        for name, t in times.items()
    }


# ---- pykan's venv -------------------------------------------------------------------------------
def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _torch_of(python: str | Path) -> dict[str, str]:
    done = subprocess.run(
        [str(python), "-c", "import json, torch; print(json.dumps([torch.__version__, torch.__file__]))"],
        check=True, capture_output=True, text=True,
    )
    version, where = json.loads(done.stdout)
    return {"version": version, "file": where}


def ensure_pykan_venv(path: Path, log: Callable[[str], None]) -> str:
    """Create (if missing or stale) pykan's venv at ``path``; return its python.

    The venv reuses this interpreter's torch through a ``.pth`` line naming this environment's
    site-packages (appended after the venv's own), so pip sees torch and its companions as installed.
    pykan goes in with ``--no-deps``; its import-time dependencies are named, with torch pinned by a
    constraint to the version here, and the venv's torch is checked to be this one afterwards."""
    py = _venv_python(path)
    ours = _torch_of(sys.executable)
    site = Path(torch.__file__).resolve().parent.parent
    pins = {"pykan": PYKAN_VERSION, "deps": list(PYKAN_DEPS), "site": str(site), "torch": ours["version"]}
    try:
        if py.exists() and json.loads((path / _MARKER).read_text()) == pins:
            return str(py)
    except (OSError, ValueError):
        pass
    log(f"creating pykan's venv at {path} (pykan=={PYKAN_VERSION}, torch from {site}) ...")
    if path.exists():
        raise SystemExit(f"{path} exists but is not a pykan venv made by this script; remove it and run again")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    venv_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(venv_site, "_cellar_torch.pth").write_text(f"{site}\n")
    constraint = path / "torch-pin.txt"
    constraint.write_text(f"torch=={ours['version']}\n")
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q", "install", "-c", str(constraint)]
    subprocess.run([*pip, "--no-deps", f"pykan=={PYKAN_VERSION}"], check=True)
    subprocess.run([*pip, *PYKAN_DEPS], check=True)
    theirs = _torch_of(py)
    if theirs != ours:
        raise SystemExit(f"pykan's venv has torch {theirs}, not this environment's {ours}; remove {path}")
    (path / _MARKER).write_text(json.dumps(pins))
    return str(py)


# ---- the models in this process -----------------------------------------------------------------
class EfficientStyleKANLayer(nn.Module):
    """A B-spline KAN layer the way efficient-kan computes it, written from its description.

    ``K = grid_size + spline_order`` B-splines per input on a uniform grid (a buffer), evaluated for
    the whole batch by Cox-de Boor; the spline path is one matmul of the flattened bases with the
    spline weights times a per-edge scale, the base path ``linear(silu(x))``. Unlike Cellar's layer
    the two paths are separate matmuls and the scale is a parameter of its own.

    Parameters: ``out * in * (2 + K)``.

    Shapes:
        input: (batch, in_features)
        output: (batch, out_features)
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = GRID, spline_order: int = ORDER) -> None:
        super().__init__()
        self.spline_order = spline_order
        steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32)
        knots = -1.0 + steps * (2.0 / grid_size)  # the grid covers [-1, 1], as Cellar's default
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())  # (in, G + 2k + 1)
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scale = nn.Parameter(torch.ones(out_features, in_features))
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5))
        nn.init.normal_(self.spline_weight, std=0.1 / math.sqrt(in_features))

    def bases(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in) -> (batch, in, K): indicators of the knot intervals, raised one order at a time."""
        g, x = self.grid, x.unsqueeze(-1)
        b = ((x >= g[:, :-1]) & (x < g[:, 1:])).to(x.dtype)
        for p in range(1, self.spline_order + 1):
            left = (x - g[:, : -(p + 1)]) / (g[:, p:-1] - g[:, : -(p + 1)])
            right = (g[:, p + 1 :] - x) / (g[:, p + 1 :] - g[:, 1:-p])
            b = left * b[..., :-1] + right * b[..., 1:]
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spline_weight = (self.spline_weight * self.spline_scale.unsqueeze(-1)).flatten(1)  # (out, in * K)
        return F.linear(F.silu(x), self.base_weight) + F.linear(self.bases(x).flatten(1), spline_weight)


def cellar_kan(widths: tuple[int, ...]) -> nn.Module:
    """The ``kan`` space's generated network for B-spline layers of these widths."""
    if str(ROOT) not in sys.path:  # run as a script, from anywhere
        sys.path.insert(0, str(ROOT))
    from search_spaces.kan import KanSearchSpace
    from workers.nn_module import load_nn_module

    hidden = widths[1:-1]
    space = KanSearchSpace({"widths": sorted(set(hidden)), "grid_sizes": [GRID], "spline_orders": [ORDER],
                            "max_layers": len(widths) - 1})
    encoding = "|".join([*(f"bspline(g={GRID},k={ORDER})x{w}" for w in hidden), f"bspline(g={GRID},k={ORDER})"])
    module = load_nn_module(space.nn_code(encoding), space.nn_name(encoding))
    return module.Net((1, widths[0]), (widths[-1],), {}, torch.device("cpu"))


def efficient_style_kan(widths: tuple[int, ...], cellar: nn.Module) -> nn.Module:
    """The efficient-kan-style network, holding ``cellar``'s function (checked on the benchmark's input)."""
    net = nn.Sequential(*(EfficientStyleKANLayer(i, o) for i, o in zip(widths, widths[1:])))
    cellar_layers = [layer for layer in cellar.modules() if hasattr(layer, "coefficients")]
    with torch.no_grad():
        for ours, theirs in zip(net, cellar_layers, strict=True):
            ours.base_weight.copy_(theirs.base_weight)
            ours.spline_weight.copy_(theirs.coefficients)
    x, _ = inputs(widths, 64)
    with torch.no_grad():
        if not torch.allclose(net(x), cellar(x), atol=1e-5, rtol=1e-4):
            raise RuntimeError(f"the efficient-kan-style network does not compute Cellar's KAN at {list(widths)}")
    return net


def matched_mlp(widths: tuple[int, ...], params: int) -> nn.Module:
    """``Linear``/``SiLU`` layers of the KAN's depth, hidden widths scaled by one factor to ``params``."""

    def build(first: int) -> nn.Module:
        hidden = [max(1, round(w * first / widths[1])) for w in widths[1:-1]]
        sizes = [widths[0], *hidden, widths[-1]]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers += [nn.Linear(a, b), nn.SiLU()] if i < len(sizes) - 2 else [nn.Linear(a, b)]
        return nn.Sequential(*layers)

    torch.manual_seed(0)
    candidates = (build(first) for first in range(1, 4 * params // (widths[0] + widths[-1]) + 2))
    return min(candidates, key=lambda mlp: abs(trainable(mlp) - params))


# ---- pykan (in its venv) ------------------------------------------------------------------------
def pykan_side(cases: list[tuple[tuple[int, ...], int]], repeats: int) -> dict[str, Any]:
    """pykan's ``KAN`` as built and after ``.speed()``, timed on every case; run in pykan's venv."""
    import importlib.metadata

    from kan import KAN

    rows = []
    with tempfile.TemporaryDirectory() as ckpt:
        for widths, batch in cases:
            models: dict[str, nn.Module] = {}
            for mode in ("pykan", "pykan_speed"):
                model = KAN(width=list(widths), grid=GRID, k=ORDER, seed=0, auto_save=False, ckpt_path=ckpt)
                models[mode] = model.speed() if mode == "pykan_speed" else model
            timed = time_steps(models, widths, batch, repeats)
            for mode, model in models.items():
                # the symbolic branch's affine weights (4 an edge) are trainable even when it is off
                timed[mode]["spline_params"] = sum(p.numel() for p in model.act_fun.parameters() if p.requires_grad)
                timed[mode]["dtype"] = str(next(model.act_fun.parameters()).dtype)
            rows.append({"widths": list(widths), "batch": batch, **timed})
    return {"pykan": importlib.metadata.version("pykan"), "torch": torch.__version__, "rows": rows}


def run_pykan(python: str, cases: list[tuple[tuple[int, ...], int]], repeats: int) -> dict[str, Any]:
    command = [python, str(Path(__file__).resolve()), "--side", "pykan", "--repeats", str(repeats),
               "--cases", json.dumps(cases)]
    with tempfile.TemporaryDirectory() as cwd:  # pykan may write checkpoints or figures where it runs
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the pykan side failed ({done.returncode}); its error is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the report ---------------------------------------------------------------------------------
COLUMNS = (("cellar", "Cellar"), ("efficient_style", "eff-style"), ("pykan", "pykan"),
           ("pykan_speed", "pykan speed()"), ("mlp", "MLP"))


def _ms(row: dict[str, Any], name: str, repeats: int) -> str:
    if name not in row:
        return "–"
    ms, base, done = row[name]["ms"], row["cellar"]["ms"], row[name]["repeats"]
    text = (f"{ms:,.1f}" if ms >= 10 else f"{ms:.2f}") + (f" [n={done}]" if done < repeats else "")
    return text if name == "cellar" else f"{text} ({ms / base:.2f}×)"


def _params(row: dict[str, Any], name: str) -> str:
    if name not in row:
        return "–"
    if name == "pykan":  # its spline path, then the symbolic branch's trainable affine weights
        spline = row[name]["spline_params"]
        return f"{spline:,} (+{row[name]['params'] - spline:,})"
    return f"{row[name]['params']:,}"


def table(rows: list[dict[str, Any]], repeats: int) -> str:
    header = ["shape", "batch", *(f"params {label}" for name, label in COLUMNS if name != "pykan_speed"),
              *(f"ms {label}" for _, label in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "--:|" * (len(header) - 2)]
    for row in rows:
        cells = [str(row["widths"]).replace(" ", ""), str(row["batch"])]
        cells += [_params(row, name) for name, _ in COLUMNS if name != "pykan_speed"]
        cells += [_ms(row, name, repeats) for name, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per model and case (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write every timing to this file")
    parser.add_argument("--no-pykan", action="store_true", help="leave pykan out (no venv, no install)")
    parser.add_argument("--pykan-venv", type=Path, default=DEFAULT_VENV, help=f"pykan's venv (default {DEFAULT_VENV})")
    parser.add_argument("--side", choices=["pykan"], help=argparse.SUPPRESS)  # run in pykan's venv by this script
    parser.add_argument("--cases", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.set_num_threads(1)
    if args.side == "pykan":
        print(json.dumps(pykan_side([(tuple(w), b) for w, b in json.loads(args.cases)], args.repeats)))
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    cases = [(widths, batch) for widths, batches in CASES for batch in batches]
    load_before = os.getloadavg()
    rows = []
    for widths, batch in cases:
        torch.manual_seed(0)
        cellar = cellar_kan(widths)
        models = {"cellar": cellar, "efficient_style": efficient_style_kan(widths, cellar),
                  "mlp": matched_mlp(widths, trainable(cellar))}
        rows.append({"widths": list(widths), "batch": batch, **time_steps(models, widths, batch, args.repeats)})
        log(f"{list(widths)} x {batch}: " + ", ".join(f"{n} {rows[-1][n]['ms']:.2f} ms" for n in models))
    side: dict[str, Any] = {}
    if not args.no_pykan:
        side = run_pykan(ensure_pykan_venv(args.pykan_venv, log), cases, args.repeats)
        for row, theirs in zip(rows, side["rows"], strict=True):
            row.update(pykan=theirs["pykan"], pykan_speed=theirs["pykan_speed"])
    load_after = os.getloadavg()

    print(f"forward + loss.backward() on 1 thread, median of {args.repeats} steps after {WARMUP} warm-up "
          f"(ms; × = time / Cellar's); grid {GRID}, spline order {ORDER}; torch {torch.__version__}"
          + (f", pykan {side['pykan']}" if side else "") + "\n")
    print(table(rows, args.repeats))
    print(f"\nparams: trainable. Cellar {1 + GRID + ORDER} per edge (silu weight + {GRID + ORDER} coefficients); "
          f"eff-style and pykan {2 + GRID + ORDER} (+ a spline scale); pykan's (+n) are its symbolic "
          "branch's affine weights, trainable even in speed().")
    print(f"[n=...]: fewer repeats: a model gets about {BUDGET_S:.0f} s a case (its first step then is the warm-up)")
    print(f"load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"repeats": args.repeats, "warmup": WARMUP, "torch": torch.__version__,
                                         "pykan": side.get("pykan"), "load_before": load_before,
                                         "load_after": load_after, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
