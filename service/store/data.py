"""The LEMUR-style data query (``GET /v1/data``, LEMUR's ``data()``): per-epoch rows with LEMUR's columns."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Subquery, and_, bindparam, func, literal, or_, select, true, tuple_
from sqlalchemy.orm import Session, aliased

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


#: the filters, in the composite index's order: each a DataQuery field and the epoch table's column of that name
_FILTERS = ("task", "dataset", "metric", "nn", "epoch")


def _escaped_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern (escape character ``/``) matching names that start with ``prefix``."""
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def _values(query: DataQuery) -> dict[str, Any]:
    """The bound values of ``query``'s statement (``_chosen``'s parameter names)."""
    values: dict[str, Any] = {name: list(v) for name in _FILTERS if (v := getattr(query, name))}
    for index, prefix in enumerate(query.nn_prefixes or ()):
        values[f"prefix_{index}"] = _escaped_prefix(prefix)
    if query.max_rows:
        values["max_rows"] = query.max_rows
    if query.offset:
        values["offset"] = query.offset
    return values


def _shape(query: DataQuery, dialect: str) -> tuple[Any, ...]:
    """What ``query``'s statement depends on besides its bound values."""
    return (
        tuple(name for name in _FILTERS if getattr(query, name)),
        len(query.nn_prefixes or ()),
        query.only_best_accuracy,
        query.unique_nn,
        dialect == "sqlite",
    )


def chosen_keys(query: DataQuery, dialect: str) -> Subquery:
    """The rows ``query`` chooses, before ordering and paging: a subquery of the epoch table's
    ``trial_id, epoch, task, dataset, metric, nn, score`` (see ``data_rows`` for the rules), its
    values bound in, for the store of this dialect."""
    return _chosen(*_shape(query, dialect), values=_values(query))


def _chosen(
    named: tuple[str, ...],
    prefixes: int,
    only_best: bool,
    unique_nn: bool,
    sqlite: bool,
    values: dict[str, Any] | None = None,
) -> Subquery:
    """``chosen_keys`` for a query of this shape; without ``values`` its parameters are left for
    the execution to bind (``_page``)."""

    def bound(name: str, **options: Any) -> Any:
        if values is None:
            return bindparam(name, **options)
        return bindparam(name, values[name], **options)

    E = TrialEpoch
    filters = [getattr(E, name).in_(bound(name, expanding=True)) for name in named]
    if prefixes:
        filters.append(or_(*(E.nn.like(bound(f"prefix_{i}"), escape="/") for i in range(prefixes))))
    if sqlite and "task" not in named and ("dataset" in named or "metric" in named):
        # the composite index leads with task: naming every task lets SQLite seek (task,
        # dataset) and read in the index's order, where with a bare dataset filter it sorts all
        # of a task's rows to answer one page (PostgreSQL reads the index in order either way)
        filters.append(E.task.in_(_every_task()))
    keys = (E.trial_id, E.epoch, E.task, E.dataset, E.metric, E.nn, E.score)
    group = (E.task, E.dataset, E.metric, E.nn, E.epoch)
    if unique_nn:
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
    if only_best:
        # LEMUR's rule, in the metric's direction: in each (task, dataset, metric, nn, epoch) group
        # the rows at the group's best value, ties kept. The group's best is one seek at the end
        # of the composite index (score is its last column), asked row by row in the index's
        # order, so that a page stops after its rows instead of ranking every group first
        other = aliased(E)
        top = (
            select(func.max(other.score))
            .where(*(getattr(other, column.key) == column for column in group))
            .scalar_subquery()
        )
        filters.append(E.score == top)
    return select(*keys).where(and_(true(), *filters)).subquery()


def _every_task() -> Select:
    """The epoch table's distinct tasks by a loose scan of the composite index (one seek per task)."""
    E = TrialEpoch
    first = select(func.min(E.task).label("task")).cte("tasks", recursive=True)
    after = select(func.min(E.task)).where(E.task > first.c.task).scalar_subquery()
    tasks = first.union_all(select(after).where(first.c.task.is_not(None)))
    return select(tasks.c.task).where(tasks.c.task.is_not(None))


@functools.lru_cache(maxsize=256)
def _page(shape: tuple[Any, ...], limited: bool, offset: bool) -> Select:
    """``data_rows``' statement for queries of this shape, built once (building it costs more than
    running it); the execution binds the values."""
    chosen = _chosen(*shape)
    page = select(chosen).order_by(
        chosen.c.task, chosen.c.dataset, chosen.c.metric, chosen.c.nn, chosen.c.epoch, chosen.c.trial_id
    )
    if limited:
        page = page.limit(bindparam("max_rows"))
    if offset:
        page = page.offset(bindparam("offset"))
    return _detail_statement(page.subquery())


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
    statement = _page(_shape(query, session.get_bind().dialect.name), bool(query.max_rows), bool(query.offset))
    found = session.execute(statement, _values(query)).mappings().all()
    return _rows(session, found, nn_stats=nn_stats)


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
    return _rows(session, session.execute(_detail_statement(page)).mappings().all(), nn_stats=nn_stats)


def _detail_statement(page: Subquery) -> Select:
    """The columns of a LEMUR row for each ``(trial_id, epoch)`` of ``page``, in LEMUR's order."""
    E = TrialEpoch
    return (
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


_SOURCES = select(Source.source_id, Source.code, Source.code_md5).where(
    Source.source_id.in_(bindparam("ids", expanding=True))
)
_MODELS = select(Architecture.architecture_id, Architecture.nn_code).where(
    Architecture.architecture_id.in_(bindparam("ids", expanding=True))
)


@functools.lru_cache(maxsize=4096)
def _code_id(code: str) -> str:
    """``nn_id`` of a model's code, kept for the models that pages show again and again."""
    return nn_id(code)


def _rows(session: Session, found: Sequence[Any], *, nn_stats: bool) -> list[dict[str, Any]]:
    """LEMUR's rows from ``_detail_statement``'s: each with its model's, metric's and transform's code."""
    # model, metric and transform sources are few and long: read (and hash) each once, not per row
    source_ids = {r[k] for r in found for k in ("metric_source_id", "transform_source_id")} - {None}
    sources = {
        source_id: (code, md5)
        for source_id, code, md5 in (session.execute(_SOURCES, {"ids": list(source_ids)}) if source_ids else ())
    }
    arch_ids = {r["architecture_id"] for r in found} - {None}
    models = {
        arch_id: (code, _code_id(code) if code is not None else None)
        for arch_id, code in (session.execute(_MODELS, {"ids": list(arch_ids)}) if arch_ids else ())
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
