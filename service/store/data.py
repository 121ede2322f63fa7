"""The LEMUR-style data query (``GET /v1/data``, LEMUR's ``data()``): per-epoch rows with LEMUR's columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Subquery, and_, func, literal, or_, select, true, tuple_
from sqlalchemy.orm import Session

from search_spaces import nn_id

from ..lemur.contract import lemur_row_id, prm_id, seconds_to_ns
from ..lemur.nnstats import nn_stat_record
from .models import Architecture, NnStat, Source, Trial, TrialEpoch

__all__ = ["DataQuery", "chosen_keys", "data_rows", "nn_stat_rows", "rows_at"]

#: keys per query when rows are read by key
_CHUNK = 2_000


@dataclass(frozen=True)
class DataQuery:
    """LEMUR's ``data()`` filters. ``None`` means no filter; sequences mean any of the values."""

    task: Sequence[str] | None = None
    dataset: Sequence[str] | None = None
    metric: Sequence[str] | None = None
    nn: Sequence[str] | None = None
    epoch: Sequence[int] | None = None
    #: model names starting with any of these (LEMUR's ``nn_prefixes``, e.g. ``("rag-", "unq-")``)
    nn_prefixes: Sequence[str] | None = None
    only_best_accuracy: bool = False
    #: one row per model name: its best row (the metric's direction), earliest run and epoch on ties
    unique_nn: bool = False
    max_rows: int | None = None
    offset: int = 0


def chosen_keys(query: DataQuery) -> Subquery:
    """The rows ``query`` chooses, before ordering and paging: a subquery of the epoch table's
    ``trial_id, epoch, task, dataset, metric, nn, score`` (see ``data_rows`` for the rules)."""
    E = TrialEpoch
    filters = []
    for column, values in (
        (E.task, query.task),
        (E.dataset, query.dataset),
        (E.metric, query.metric),
        (E.nn, query.nn),
        (E.epoch, query.epoch),
    ):
        if values:
            values = list(values)
            filters.append(column == values[0] if len(values) == 1 else column.in_(values))
    if query.nn_prefixes:
        filters.append(or_(*(E.nn.startswith(p, autoescape=True) for p in query.nn_prefixes)))
    keys = (E.trial_id, E.epoch, E.task, E.dataset, E.metric, E.nn, E.score)
    group = (E.task, E.dataset, E.metric, E.nn, E.epoch)
    if query.unique_nn:
        # a model's best row: the rows at its highest score (rows without a value cannot be
        # best), the earliest run and epoch among ties. A model's best row is also at the best of
        # its own (task, ..., epoch) group, so with only_best_accuracy too the answer is the same.
        best = select(E.nn, func.max(E.score).label("top")).where(*filters).group_by(E.nn).subquery()
        tied = (
            select(
                *keys,
                func.row_number().over(partition_by=E.nn, order_by=(E.trial_id, E.epoch)).label("nn_rank"),
            )
            .join(best, and_(E.nn == best.c.nn, E.score == best.c.top))
            .where(*filters)
            .subquery()
        )
        return select(*(tied.c[k.key] for k in keys)).where(tied.c.nn_rank == literal(1)).subquery()
    if query.only_best_accuracy:
        # LEMUR's rule, in the metric's direction: in each (task, dataset, metric, nn, epoch) group
        # the rows at the group's best value, ties kept; a covering scan of the composite index
        # finds each group's best, then an index seek its rows
        best = select(*group, func.max(E.score).label("top")).where(*filters).group_by(*group).subquery()
        matches = [column == best.c[column.key] for column in group]
        return select(*keys).join(best, and_(*matches, E.score == best.c.top)).where(*filters).subquery()
    return select(*keys).where(and_(true(), *filters)).subquery()


def data_rows(session: Session, query: DataQuery, *, nn_stats: bool = False) -> list[dict[str, Any]]:
    """Per-epoch results with LEMUR's columns, filtered, ordered by task, dataset, metric, nn, epoch.

    ``only_best_accuracy`` keeps, in each (task, dataset, metric, nn, epoch) group, the rows at the
    group's best value; unlike LEMUR, "best" follows the metric's direction (lowest for metrics
    that are minimised). Ties keep every tied row, as LEMUR does. ``unique_nn`` then keeps one row
    per model name: its best, the earliest run and epoch among ties. ``nn_prefixes`` are bound
    ``LIKE`` patterns with ``%`` and ``_`` escaped (LEMUR pastes them into its SQL).

    Filtering, ranking, ordering and paging run on the epoch table alone, whose copies of task,
    dataset, metric and nn sit under composite indexes; only the page's rows are then joined to
    their trials, models and sources.
    """
    chosen = chosen_keys(query)
    page = select(chosen).order_by(
        chosen.c.task, chosen.c.dataset, chosen.c.metric, chosen.c.nn, chosen.c.epoch, chosen.c.trial_id
    )
    if query.max_rows:
        page = page.limit(query.max_rows)
    if query.offset:
        page = page.offset(query.offset)
    return _detail(session, page.subquery(), nn_stats=nn_stats)


def rows_at(session: Session, keys: Sequence[tuple[int, int]], *, nn_stats: bool = False) -> list[dict[str, Any]]:
    """The rows of the given ``(trial_id, epoch)`` keys, in that order (read in chunks)."""
    E = TrialEpoch
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = list(dict.fromkeys(keys[start : start + _CHUNK]))
        page = (
            select(E.trial_id, E.epoch, E.task, E.dataset, E.metric, E.nn)
            .where(tuple_(E.trial_id, E.epoch).in_(chunk))
            .subquery()
        )
        for row in _detail(session, page, nn_stats=nn_stats):
            found[(row["run_id"], row["epoch"])] = row
    return [dict(found[key]) for key in keys if key in found]


def _detail(session: Session, page: Subquery, *, nn_stats: bool) -> list[dict[str, Any]]:
    """LEMUR's row (and Cellar's columns) for each ``(trial_id, epoch)`` of ``page``."""
    E = TrialEpoch
    detail = (
        select(
            page.c.trial_id.label("run_id"),
            page.c.epoch,
            page.c.task,
            page.c.dataset,
            page.c.metric,
            page.c.nn,
            E.val_metric.label("accuracy"),
            E.elapsed_seconds,
            Trial.prm,
            Trial.prm_id,
            Trial.seed,
            Trial.split,
            Trial.created_at,
            Trial.job_id,
            Trial.architecture_id,
            Architecture.search_space,
            Architecture.encoding.label("arch"),
            Trial.metric_source_id,
            Trial.transform_source_id,
        )
        .select_from(page)
        .join(E, and_(E.trial_id == page.c.trial_id, E.epoch == page.c.epoch))
        .join(Trial, Trial.trial_id == page.c.trial_id)
        .outerjoin(Architecture, Architecture.architecture_id == Trial.architecture_id)
        .order_by(page.c.task, page.c.dataset, page.c.metric, page.c.nn, page.c.epoch, page.c.trial_id)
    )
    found = session.execute(detail).mappings().all()
    # model, metric and transform sources are few and long: read (and hash) each once, not per row
    source_ids = {r[k] for r in found for k in ("metric_source_id", "transform_source_id")} - {None}
    sources = {
        source_id: (code, md5)
        for source_id, code, md5 in session.execute(
            select(Source.source_id, Source.code, Source.code_md5).where(Source.source_id.in_(source_ids))
        )
    }
    arch_ids = {r["architecture_id"] for r in found} - {None}
    models = {
        arch_id: (code, nn_id(code) if code is not None else None)
        for arch_id, code in session.execute(
            select(Architecture.architecture_id, Architecture.nn_code).where(Architecture.architecture_id.in_(arch_ids))
        )
    }
    none = (None, None)
    rows = []
    for row in found:
        metric_code, metric_id = sources.get(row["metric_source_id"], none)
        transform_code, transform_id = sources.get(row["transform_source_id"], none)
        prm = dict(row["prm"] or {})
        code, code_id = models.get(row["architecture_id"], none)
        elapsed = row["elapsed_seconds"]
        duration = seconds_to_ns(elapsed)
        uid = row["prm_id"] or prm_id(prm)
        rows.append(
            {
                "id": lemur_row_id(
                    prm.get("transform"), uid, row["task"], row["dataset"], row["metric"], row["nn"],
                    row["epoch"], duration, row["accuracy"],
                ),
                "task": row["task"],
                "dataset": row["dataset"],
                "metric": row["metric"],
                "metric_code": metric_code,
                "metric_id": metric_id,
                "nn": row["nn"],
                "nn_code": code,
                "nn_id": code_id,
                "epoch": row["epoch"],
                "accuracy": row["accuracy"],
                "duration": duration,
                "prm_id": uid,
                "transform_code": transform_code,
                "transform_id": transform_id,
                "prm": prm,
                "run_id": row["run_id"],
                "job_id": row["job_id"],
                "seed": row["seed"],
                "split": "val",
                "created_at": row["created_at"],
                "search_space": row["search_space"],
                "arch": row["arch"],
            }
        )
    if nn_stats:
        _attach_nn_stats(session, rows, [r["architecture_id"] for r in found], models)
    return rows


def _attach_nn_stats(
    session: Session, rows: list[dict[str, Any]], arch_ids: list[int | None], models: dict[int, tuple[str, str]]
) -> None:
    """``nn_stats`` on each row: LEMUR's ``nn_stat`` of its network and hyperparameter set."""
    known = {a for a in arch_ids if a is not None}
    sizes = {
        arch_id: (params, flops)
        for arch_id, params, flops in session.execute(
            select(Architecture.architecture_id, Architecture.num_params, Architecture.flops).where(
                Architecture.architecture_id.in_(known)
            )
        )
    }
    measured = {
        (s.architecture_id, s.prm_id): s.stats
        for s in session.scalars(select(NnStat).where(NnStat.architecture_id.in_(known)))
    }
    for row, arch_id in zip(rows, arch_ids, strict=True):
        params, flops = sizes.get(arch_id, (None, None))
        code = models.get(arch_id, (None, None))[0] if arch_id is not None else None
        row["nn_stats"] = nn_stat_record(
            code, measured.get((arch_id, row["prm_id"])), num_params=params, flops=flops
        )


def nn_stat_rows(
    session: Session, *, nn_name: str | None = None, prm_id: str | None = None, max_rows: int | None = None
) -> list[dict[str, Any]]:
    """LEMUR's ``nn_stat`` rows, ordered by ``nn_name``: one per network and hyperparameter set the
    workers measured, and one (``prm_id`` null, code-derived values) per other model with code."""
    query = (
        select(
            Architecture.nn_name, NnStat.prm_id, Architecture.nn_code, Architecture.num_params, Architecture.flops,
            NnStat.stats,
        )
        .outerjoin(NnStat, NnStat.architecture_id == Architecture.architecture_id)
        .where(or_(NnStat.prm_id.is_not(None), Architecture.nn_code.is_not(None)))
        .order_by(Architecture.nn_name, NnStat.prm_id, Architecture.architecture_id)
    )
    if nn_name is not None:
        query = query.where(Architecture.nn_name == nn_name)
    if prm_id is not None:
        query = query.where(NnStat.prm_id == prm_id)
    if max_rows is not None:
        query = query.limit(max_rows)
    rows = []
    for number, (name, uid, code, params, flops, stats) in enumerate(session.execute(query), start=1):
        record = nn_stat_record(code, stats, num_params=params, flops=flops) or {}
        rows.append({"id": number, "nn_name": name, "prm_id": uid, **record})
    return rows
