"""LEMUR's contract, in one leaf module: its columns, its ids, its units and its scores.

The LEMUR neural network dataset (nn-dataset, ``ab.nn.api``) names things in ways Cellar keeps so
that its rows and ids are LEMUR's own: a model's ``nn_id`` is the md5 of its code without
whitespace, a hyperparameter set's ``uid`` (``prm_id``) the md5 of its sorted dict, a row's ``id``
the md5 of its defining values; durations are nanoseconds. This module imports nothing of
Cellar's but ``search_spaces.nn_id``, so the store, the server and the client can all use it.
"""

from __future__ import annotations

from typing import Any

from search_spaces import nn_id

__all__ = [
    "CODE_COLUMNS",
    "LEMUR_COLUMNS",
    "accuracy_to_time",
    "chance_accuracy",
    "lemur_row_id",
    "model_name",
    "ns_to_seconds",
    "prm_id",
    "seconds_to_ns",
]

#: the columns of LEMUR's ``data()``, in its order
LEMUR_COLUMNS = (
    "id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id", "epoch",
    "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm",
)  # fmt: skip
#: the code columns and the ids their texts are keyed by in ``/v1/data?codes=separate``
CODE_COLUMNS = (("nn_code", "nn_id"), ("metric_code", "metric_id"), ("transform_code", "transform_id"))


def seconds_to_ns(seconds: float | None) -> int | None:
    """LEMUR's ``duration`` (whole nanoseconds) from Cellar's seconds."""
    return None if seconds is None else int(round(seconds * 1e9))


def ns_to_seconds(duration: int | None) -> float | None:
    """Cellar's seconds from LEMUR's ``duration`` in nanoseconds."""
    return None if duration is None else duration / 1e9


def prm_id(prm: dict[str, Any]) -> str:
    """LEMUR's ``uid`` of a hyperparameter set: md5 of its sorted dict text without whitespace
    (``epoch``, the length of the run, is not a hyperparameter there)."""
    only = {k: prm[k] for k in sorted(prm) if k != "epoch"}
    return nn_id(str(only))


def lemur_row_id(*values: Any) -> str:
    """LEMUR's ``id`` of a statistics row: md5 of the list ``[transform, prm_id, task, dataset,
    metric, nn, epoch, duration, accuracy]`` as Python prints it, whitespace removed. Imported
    rows keep the ids LEMUR gives them; Cellar's own rows get theirs by the same rule."""
    return nn_id(str(list(values)))


def model_name(code: str, prefix: str | None) -> str:
    """A submitted model's name: ``<prefix>-<nn_id>``, or ``nn_id`` alone without a prefix."""
    digest = nn_id(code)
    return f"{prefix}-{digest}" if prefix else digest


def chance_accuracy(out_shape: list[int] | tuple[int, ...], metric: str) -> float:
    """LEMUR's ``minimum_accuracy``: what guessing scores (1/classes for accuracy; 0 otherwise)."""
    return 1.0 / out_shape[0] if metric == "acc" and out_shape and out_shape[0] > 0 else 0.0


def accuracy_to_time(accuracy: float | None, chance: float, duration_ns: int | None) -> float | None:
    """LEMUR's ``accuracy_to_time_metric``: accuracy gained over chance per 1e11 ns of training."""
    if accuracy is None or not duration_ns:
        return None
    return max(0.0, accuracy - chance) / (duration_ns / 1e11)
