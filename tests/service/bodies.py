"""Job bodies for the service tests."""

from __future__ import annotations

import copy
from typing import Any

_BASE: dict[str, Any] = {
    "name": "nb201-digits",
    "search_space": {"kind": "nb201", "params": {"channels": 8, "cells_per_stage": 1}},
    "dataset": "digits",
    "strategy": {"sampler": "tpe", "seed": 0},
    "budget": {"max_trials": 8, "epochs": 2, "parallelism": 2},
}


#: LEMUR's ``prm`` of a job with the default training protocol and 3 epochs (``JobRunner._prm``)
PRM: dict[str, Any] = {
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "batch": 64,
    "epoch": 3,
    "optimizer": "sgd",
    "nesterov": True,
    "scheduler": "cosine",
    "transform": "norm",
}


def job_body(**changes: Any) -> dict[str, Any]:
    """The README's 8-trial job, changed: ``budget={...}`` replaces a field, ``budget__epochs=1``
    sets a nested one, and ``...`` as the value removes the field."""
    body = copy.deepcopy(_BASE)
    for path, value in changes.items():
        node = body
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return body
