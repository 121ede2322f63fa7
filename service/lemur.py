"""LEMUR's Python API over a Cellar server: ``data()`` with the signature of ``ab.nn.api.data``.

Code written against the LEMUR neural network dataset (``from ab.nn.api import data``) switches
to ``from service.lemur import data``: the same arguments, a pandas DataFrame with LEMUR's
columns first (then Cellar's own), read from the server at ``CELLAR_URL``. Where LEMUR reads a
local SQLite file through an ``lru_cache``, every call here asks the server, so results are never
stale; ``data.cache_clear()`` exists (pipelines call it) and has nothing to clear.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .client import CellarClient

__all__ = ["LEMUR_COLUMNS", "data"]

#: the columns of LEMUR's ``data()``, in its order
LEMUR_COLUMNS = (
    "id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id", "epoch",
    "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm",
)  # fmt: skip
_PAGE = 10_000


def _values(value: Any) -> list[Any] | None:
    """LEMUR takes one value; Cellar also a list or tuple of values."""
    if value is None:
        return None
    if isinstance(value, str | int) or not isinstance(value, Iterable):
        return [value]
    return list(value)


class _Data:
    """``data(...)``: a callable with ``cache_clear()``, as LEMUR's ``lru_cache``-wrapped function."""

    def __call__(
        self,
        only_best_accuracy: bool = False,
        task: str | Iterable[str] | None = None,
        dataset: str | Iterable[str] | None = None,
        metric: str | Iterable[str] | None = None,
        nn: str | Iterable[str] | None = None,
        epoch: int | Iterable[int] | None = None,
        max_rows: int | None = None,
        nn_prefixes: Iterable[str] | None = None,
        unique_nn: bool = False,
        *,
        url: str | None = None,
        api_key: str | None = None,
    ) -> Any:
        """Per-epoch results as a DataFrame, ordered by task, dataset, metric, nn, epoch.

        ``only_best_accuracy`` keeps the best rows of each (task, dataset, metric, nn, epoch) group
        (the lowest for metrics that are minimised), ``unique_nn`` one row per model,
        ``nn_prefixes`` models whose names start with one of them. Large answers are fetched in
        pages of 10,000 rows.
        """
        import pandas as pd

        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        filters = {
            "task": _values(task),
            "dataset": _values(dataset),
            "metric": _values(metric),
            "nn": _values(nn),
            "epoch": _values(epoch),
            "nn_prefixes": _values(nn_prefixes),
            "only_best_accuracy": "true" if only_best_accuracy else None,
            "unique_nn": "true" if unique_nn else None,
        }
        rows: list[dict[str, Any]] = []
        with CellarClient(url, api_key) as client:
            while max_rows is None or len(rows) < max_rows:
                page = _PAGE if max_rows is None else min(_PAGE, max_rows - len(rows))
                batch = client.data(**filters, max_rows=page, offset=len(rows))
                rows.extend(batch)
                if len(batch) < page:
                    break
        frame = pd.DataFrame.from_records(rows)
        if frame.empty:
            frame = pd.DataFrame(columns=list(LEMUR_COLUMNS))
        return frame

    @staticmethod
    def cache_clear() -> None:
        """Nothing is cached: every call asks the server (LEMUR's ``data`` is an ``lru_cache``)."""


data = _Data()
