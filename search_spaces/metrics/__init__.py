"""Metrics by LEMUR name. Each module ``<name>.py`` defines ``create_metric(out_shape=None)``
returning an object with ``reset()``, ``__call__(outputs, targets)`` and ``result()``, the
interface LEMUR's trainer uses; its source is what ``/v1/data`` reports as ``metric_code``."""

from __future__ import annotations

from ..errors import UnknownChoiceError

__all__ = ["LOWER_IS_BETTER", "METRICS", "metric_direction", "metric_module"]

#: LEMUR name -> (Cellar's name in trial fields, direction)
METRICS: dict[str, tuple[str, str]] = {"acc": ("accuracy", "maximize"), "rmse": ("rmse", "minimize")}

#: LEMUR metric names whose best value is the lowest (LEMUR itself takes the maximum of every
#: metric); every other name (``acc``, ``iou``, ``map``, ``bleu``, ``clip``, ...) is maximised
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {name for name, (_, direction) in METRICS.items() if direction == "minimize"} | {"ppl", "mse", "mae", "loss", "wer", "cer"}
)


def metric_direction(name: str) -> str:
    """``minimize`` or ``maximize``: the direction of a metric given by its LEMUR name."""
    return "minimize" if name in LOWER_IS_BETTER else "maximize"


def metric_module(name: str) -> str:
    if name not in METRICS:
        raise UnknownChoiceError("metric", name, sorted(METRICS))
    return f"{__name__}.{name}"
