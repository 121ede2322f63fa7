"""Metrics by LEMUR name. Each module ``<name>.py`` defines ``create_metric(out_shape=None)``
returning an object with ``reset()``, ``__call__(outputs, targets)`` and ``result()``, the
interface LEMUR's trainer uses; its source is what ``/v1/data`` reports as ``metric_code``."""

from __future__ import annotations

from ..errors import UnknownChoiceError

__all__ = ["METRICS", "metric_module"]

#: LEMUR name -> (Cellar's name in trial fields, direction)
METRICS: dict[str, tuple[str, str]] = {"acc": ("accuracy", "maximize"), "rmse": ("rmse", "minimize")}


def metric_module(name: str) -> str:
    if name not in METRICS:
        raise UnknownChoiceError("metric", name, sorted(METRICS))
    return f"{__name__}.{name}"
