"""LEMUR's query functions over a Cellar server: ``data()``, ``data_withnonnullvalue()``,
``nn_stat_data()`` and ``JoinConf``, with the signatures of ``ab.nn.api`` (nn-dataset 2.2.11).

Code written against LEMUR (``from ab.nn.api import data, JoinConf``) switches to
``from service.lemur import data, JoinConf``: the same arguments in the same order, pandas
DataFrames with LEMUR's columns in LEMUR's order (then Cellar's own), read from the server at
``CELLAR_URL``. LEMUR's own ``JoinConf`` object is accepted as well as Cellar's. Where LEMUR reads
a local SQLite file through an ``lru_cache``, every call here asks the server, so results are never
stale; ``data.cache_clear()`` exists (pipelines call it) and has nothing to clear.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..client import CellarClient
from .contract import CODE_COLUMNS, LEMUR_COLUMNS
from .nnstats import NN_STAT_COLUMNS, STAT_OUTPUT

__all__ = ["JoinConf", "data", "data_withnonnullvalue", "nn_stat_data"]

_PAGE = 50_000
#: Cellar's own columns, after LEMUR's
CELLAR_COLUMNS = ("run_id", "job_id", "seed", "split", "created_at", "search_space", "arch")
_BASE = LEMUR_COLUMNS[:-1]  # up to transform_id; prm comes after the statistics
#: a partner's columns in LEMUR's pair rows (``<column>_2``) and the row field each holds
_PARTNER = (
    ("nn", "nn"), ("nn_code", "nn_code"), ("metric", "metric"), ("metric_code", "metric_code"),
    ("transform_code", "transform_code"), ("prm_id", "prm_id"), ("accuracy", "accuracy"),
    ("duration", "duration"), ("epoch", "epoch"),
)  # fmt: skip
#: a partner's columns that LEMUR's pair rows lack, after LEMUR's columns: nn-gpt's dataset
#: comparison prompts read ``dataset_2`` (nn-gpt patches LEMUR's pair query to get it)
_PARTNER_MORE = ("task", "dataset")
#: the ``nn_*`` output column of each ``nn_stat`` column
STAT_OUTPUT_OF = {column: out for out, column in STAT_OUTPUT.items()}
#: the columns of an anchor-band row, LEMUR's ``stat`` table first
_ANCHOR = (
    "id", "accuracy", "epoch", "duration", "task", "dataset", "nn", "metric", "prm", "nn_code",
    "transform_code", "prm_id", "anchor_jaccard", "anchor_nn",
)  # fmt: skip
#: an anchor row's ``arch_summary`` (LEMUR's ``attach_arch_summaries``): key -> statistic column;
#: ``{}`` without statistics, as in LEMUR, whose anchor rows never carry them
_SUMMARY = (
    ("total_params", "nn_total_params"), ("trainable_params", "nn_trainable_params"),
    ("total_layers", "nn_total_layers"), ("leaf_layers", "nn_leaf_layers"), ("max_depth", "nn_max_depth"),
    ("flops", "nn_flops"), ("model_size_mb", "nn_model_size_mb"), ("dropout_count", "nn_dropout_count"),
    ("has_attention", "nn_has_attention"), ("has_residual", "nn_has_residual"),
    ("is_resnet_like", "nn_is_resnet_like"), ("is_transformer_like", "nn_is_transformer_like"),
)  # fmt: skip


@dataclass(frozen=True)
class JoinConf:
    """LEMUR's ``JoinConf`` (``ab.nn.util.db.Query``), field for field, and ``seed``.

    - ``num_joint_nns``: models per row in pair mode; how many models in top-N and anchor mode.
    - ``same_columns``/``diff_columns``: of ``task, dataset, metric, nn, epoch``, what a partner
      shares with the row and what it differs in; ``enhance_nn``: the partner scores better.
    - ``task``/``dataset``/``metric``: further filters on the rows.
    - ``similarity_mode="anchor_band_db_minhash"``: models whose code is similar to ``anchor_nn``'s
      (chosen automatically without it), in ``similarity_band`` (``very_high``, ``high``,
      ``medium``, ``low``, ``very_low_near``, ``very_low_far``) or ``[min_arch_jaccard,
      max_arch_jaccard)``; ``num_joint_nns * overfetch_factor`` of them.
    - ``seed`` (Cellar's): the pair mode's random row order, repeatable.
    """

    num_joint_nns: int
    same_columns: tuple[str, ...] | None = None
    diff_columns: tuple[str, ...] | None = None
    enhance_nn: bool | None = None
    task: str | None = None
    dataset: str | None = None
    metric: str | None = None
    similarity_mode: str = "none"
    anchor_nn: str | None = None
    similarity_band: str | None = None
    min_arch_jaccard: float = 0.0
    max_arch_jaccard: float = 1.0
    overfetch_factor: int = 10
    seed: int | None = None


def _join_body(sql: Any) -> dict[str, Any]:
    """A ``JoinConf`` (Cellar's or LEMUR's: any object with its fields) as the request's ``sql``."""
    if not hasattr(sql, "num_joint_nns"):
        raise TypeError(f"sql must be a JoinConf (LEMUR's or service.lemur.JoinConf), got {type(sql).__name__}")
    body = {name: getattr(sql, name, spec.default) for name, spec in JoinConf.__dataclass_fields__.items()}
    body["num_joint_nns"] = int(sql.num_joint_nns)
    body["same_columns"] = list(body["same_columns"] or ())
    body["diff_columns"] = list(body["diff_columns"] or ())
    return body


def _values(value: Any) -> list[Any] | None:
    """LEMUR takes one value; Cellar also a list or tuple of values."""
    if value is None:
        return None
    if isinstance(value, str | int) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _with_codes(row: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    for text, key in CODE_COLUMNS:
        if row.get(text) is None and row.get(key) is not None:
            row[text] = texts.get(row[key])
    return row


def _stat_columns(row: dict[str, Any]) -> dict[str, Any]:
    stats = row.pop("nn_stats", None) or {}
    return {out: stats.get(column) for out, column in STAT_OUTPUT.items()}


def _plain_record(row: dict[str, Any], nn_stats: bool) -> dict[str, Any]:
    record = {c: row.get(c) for c in _BASE}
    if nn_stats:
        record.update(_stat_columns(row))
    record["prm"] = row.get("prm")
    record.update({c: row.get(c) for c in CELLAR_COLUMNS})
    return record


def _pair_record(row: dict[str, Any], n: int, nn_stats: bool, texts: dict[str, str]) -> dict[str, Any]:
    record = {c: row.get(c) for c in _BASE}
    if nn_stats:
        record.update(_stat_columns(row))
    partners = [_with_codes(p, texts) for p in row.get("partners", ())]
    record["matched_id"] = partners[0]["id"] if partners else None
    for i in range(2, max(n, 2) + 1):
        partner = partners[i - 2] if len(partners) >= i - 1 else {}
        record.update({f"{column}_{i}": partner.get(field) for column, field in _PARTNER})
    record["prm"] = row.get("prm")
    for i in range(2, n + 1):
        record[f"prm_{i}"] = partners[i - 2].get("prm", {}) if len(partners) >= i - 1 else {}
    for i in range(2, max(n, 2) + 1):
        partner = partners[i - 2] if len(partners) >= i - 1 else {}
        record.update({f"{column}_{i}": partner.get(column) for column in _PARTNER_MORE})
    record.update({c: row.get(c) for c in CELLAR_COLUMNS})
    return record


def _frame(records: list[dict[str, Any]], columns: Iterable[str]) -> Any:
    import pandas as pd

    if not records:
        return pd.DataFrame(columns=list(columns))
    return pd.DataFrame.from_records(records)


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
        sql: Any = None,
        nn_prefixes: Iterable[str] | None = None,
        unique_nn: bool = False,
        include_nn_stats: bool = False,
        *,
        url: str | None = None,
        api_key: str | None = None,
    ) -> Any:
        """Per-epoch results as a DataFrame, ordered by task, dataset, metric, nn, epoch.

        ``only_best_accuracy`` keeps the best rows of each (task, dataset, metric, nn, epoch) group
        (the lowest for metrics that are minimised), ``unique_nn`` one row per model,
        ``nn_prefixes`` models whose names start with one of them, ``include_nn_stats`` LEMUR's
        architecture statistics (``nn_total_params``, ``nn_flops``, ...). ``sql=JoinConf(...)``
        joins models (pairs, top-N, similarity bands: see ``JoinConf``). Large answers without
        ``sql`` are fetched in pages of 50,000 rows.
        """
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        filters = {
            "task": _values(task),
            "dataset": _values(dataset),
            "metric": _values(metric),
            "nn": _values(nn),
            "epoch": _values(epoch),
            "nn_prefixes": _values(nn_prefixes) or None,
        }
        if sql is not None:
            return _joined(filters, only_best_accuracy, unique_nn, max_rows, sql, include_nn_stats, url, api_key)
        rows: list[dict[str, Any]] = []
        texts: dict[str, str] = {}
        with CellarClient(url, api_key) as client:
            # code texts come once per answer, not once per row (a model's code is often kilobytes)
            offset: int | None = 0
            while offset is not None and (max_rows is None or len(rows) < max_rows):
                page = _PAGE if max_rows is None else min(_PAGE, max_rows - len(rows))
                answer = client.data_page(
                    **filters,
                    only_best_accuracy="true" if only_best_accuracy else None,
                    unique_nn="true" if unique_nn else None,
                    include_nn_stats="true" if include_nn_stats else None,
                    max_rows=page,
                    offset=offset,
                    codes="separate",
                )
                rows.extend(answer["data"])
                texts.update(answer.get("codes") or {})
                offset = offset + page if len(answer["data"]) == page else None
        stats = STAT_OUTPUT if include_nn_stats else ()
        records = [_plain_record(_with_codes(row, texts), include_nn_stats) for row in rows]
        return _frame(records, (*_BASE, *stats, "prm", *CELLAR_COLUMNS))

    @staticmethod
    def cache_clear() -> None:
        """Nothing is cached: every call asks the server (LEMUR's ``data`` is an ``lru_cache``)."""


def _joined(
    filters: dict[str, Any],
    only_best_accuracy: bool,
    unique_nn: bool,
    max_rows: int | None,
    sql: Any,
    include_nn_stats: bool,
    url: str | None,
    api_key: str | None,
) -> Any:
    body = {
        **filters,
        "only_best_accuracy": only_best_accuracy,
        "unique_nn": unique_nn,
        "max_rows": max_rows,
        "sql": _join_body(sql),
        "include_nn_stats": include_nn_stats,
    }
    with CellarClient(url, api_key) as client:
        answer = client.data_query(body)
    texts = answer["codes"]
    rows = [_with_codes(row, texts) for row in answer["data"]]
    n = int(sql.num_joint_nns)
    stats = tuple(STAT_OUTPUT) if include_nn_stats else ()
    if answer["mode"] == "pairs":
        records = [_pair_record(row, n, include_nn_stats, texts) for row in rows]
        partner = [f"{c}_{i}" for i in range(2, max(n, 2) + 1) for c, _ in _PARTNER]
        prms = [f"prm_{i}" for i in range(2, n + 1)]
        more = [f"{c}_{i}" for i in range(2, max(n, 2) + 1) for c in _PARTNER_MORE]
        return _frame(records, (*_BASE, *stats, "matched_id", *partner, "prm", *prms, *more, *CELLAR_COLUMNS))
    if answer["mode"] == "top":
        records = []
        for row in rows:
            record = {c: row.get(c) for c in _BASE}
            if include_nn_stats:
                record.update(_stat_columns(row))
            record.update(rn=1, prm=row.get("prm"))
            record.update({c: row.get(c) for c in CELLAR_COLUMNS})
            records.append(record)
        return _frame(records, (*_BASE, *stats, "rn", "prm", *CELLAR_COLUMNS))
    records = []
    for row in rows:
        values = _stat_columns(row) if include_nn_stats else {}
        summary = {key: values.get(out) for key, out in _SUMMARY} if values else {}
        records.append({**{c: row.get(c) for c in _ANCHOR}, "arch_summary": summary, "diversity_meta": None,
                        **{c: row.get(c) for c in CELLAR_COLUMNS}})  # fmt: skip
    if records:  # LEMUR's meta sits on the first row; the others have none
        records[0]["diversity_meta"] = answer.get("meta") or {}
    return _frame(records, (*_ANCHOR, "arch_summary", "diversity_meta", *CELLAR_COLUMNS))


data = _Data()


def data_withnonnullvalue(
    only_best_accuracy: bool = False,
    task: str | Iterable[str] | None = None,
    dataset: str | Iterable[str] | None = None,
    metric: str | Iterable[str] | None = None,
    nn: str | Iterable[str] | None = None,
    epoch: int | Iterable[int] | None = None,
    max_rows: int | None = None,
    nn_prefixes: Iterable[str] | None = None,
    sql: Any = None,
    unique_nn: bool = False,
    include_nn_stats: bool = False,
    include_prm: bool = True,
    require_stat_nonnull: Iterable[str] = (),
    require_nn_stat_nonnull: Iterable[str] = (),
    require_prm_nonnull: Iterable[str] = (),
    prm_as_columns: bool = False,
    *,
    url: str | None = None,
    api_key: str | None = None,
) -> Any:
    """``data()``'s rows without those where a required value is null or NaN: a ``stat`` column
    (``require_stat_nonnull``: ``accuracy``, ``duration``, ``prm``, ...), an architecture statistic
    (``require_nn_stat_nonnull``: ``nn_flops`` or ``flops``) or a hyperparameter
    (``require_prm_nonnull``). ``include_prm=False`` leaves ``prm`` out; ``prm_as_columns`` spreads
    it into columns. As in LEMUR, ``max_rows`` applies before the rows are dropped."""
    if sql is not None:
        raise ValueError("data_withnonnullvalue does not take sql=JoinConf(...): use data() for joined rows")
    stat_names = {"id", "task", "dataset", "metric", "nn", "epoch", "accuracy", "duration", "transform", "prm"}
    for name in require_stat_nonnull:
        if name not in stat_names:
            raise ValueError(f"require_stat_nonnull: unknown stat column {name!r}; choose from {sorted(stat_names)}")
    stat_of = {**STAT_OUTPUT, **{c: c for c in NN_STAT_COLUMNS}}
    for name in require_nn_stat_nonnull:
        if name not in stat_of:
            raise ValueError(f"require_nn_stat_nonnull: unknown statistic {name!r}; e.g. nn_flops or nn_total_params")
    want_stats = include_nn_stats or bool(tuple(require_nn_stat_nonnull))
    frame = data(
        only_best_accuracy, task, dataset, metric, nn, epoch, max_rows, None, nn_prefixes, unique_nn,
        want_stats, url=url, api_key=api_key,
    )  # fmt: skip

    def null(value: Any) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    required_out = {STAT_OUTPUT_OF.get(stat_of[name], name) for name in require_nn_stat_nonnull}
    dropped = {out for out in STAT_OUTPUT if not include_nn_stats and out not in required_out}
    if not include_prm:
        dropped.add("prm")
    keep = []
    for record in frame.to_dict("records"):
        stat = {**record, "prm": record.get("prm_id"), "transform": (record.get("prm") or {}).get("transform")}
        if any(null(stat.get(name)) for name in require_stat_nonnull):
            continue
        if any(null(record.get(out)) for out in required_out):
            continue
        if any(null((record.get("prm") or {}).get(name)) for name in require_prm_nonnull):
            continue
        for column in dropped:
            record.pop(column, None)
        if include_prm and prm_as_columns:
            record.update(record.pop("prm") or {})
        keep.append(record)
    return _frame(keep, [c for c in frame.columns if c not in dropped])


def nn_stat_data(
    nn_name: str | None = None,
    prm_id: str | None = None,
    max_rows: int | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
) -> Any:
    """LEMUR's ``nn_stat`` rows: ``id, nn_name, prm_id`` and the architecture statistics of each
    network and hyperparameter set Cellar knows, ordered by ``nn_name``."""
    with CellarClient(url, api_key) as client:
        answer = client.nn_stats(nn_name=nn_name, prm_id=prm_id, max_rows=max_rows)
    return _frame(answer["data"], ("id", "nn_name", "prm_id", *NN_STAT_COLUMNS))
