"""What a Ray worker process imports before it accepts work: torch and the trial runner.

Ray starts idle worker processes ahead of demand (one per CPU when the first driver connects) and
imports the modules of its ``preload_python_modules`` setting in each of them while they wait. A
trial's actor then lands in a process that already holds torch (about 2-3 s of imports on this
kind of machine), and the first trial of a job costs what the others cost. The local Ray that
Cellar starts preloads this module; a cluster that Cellar joins does so when its nodes are started
with ``RAY_preload_python_modules=workers.preload`` in their environment (docker-compose.yml does).

Importing this module in the API process is a mistake: it loads torch. Nothing in ``service``
imports it.
"""

from __future__ import annotations

import sklearn.datasets  # noqa: F401 - the built-in datasets' loaders (1.5 s of imports)
import torch

from .runner import measure


def _warm_up() -> None:
    """What a trial's set-up does first, on a tiny model: count its FLOPs (FlopCounterMode imports
    much of torch on first use), time a forward pass, then one backward."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    one = torch.zeros(1, 1, 4, 4)
    measure(model, one, one, torch.device("cpu"))
    model(one).sum().backward()


_warm_up()

__all__: list[str] = []
