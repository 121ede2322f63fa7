"""Results tables in the store: the trials of a table's build, and the tables' rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from search_spaces import SearchSpaceError, get_search_space

from ..errors import TabularTableError
from .models import Architecture, Job, Trial, TrialState
from .tabular import TabularResult, TabularTable

__all__ = [
    "build_counts",
    "build_jobs",
    "get_table",
    "merge_table",
    "rows_lacking_proxies",
    "store_proxies",
    "table_names",
    "table_results",
    "table_summaries",
    "trained_encodings",
    "trained_trials",
]


# ---- a table's build ----------------------------------------------------------------------------
def build_jobs(session: Session, grid_name: str) -> list[Job]:
    """The build's jobs: the grid job ``grid_name`` and its fill jobs ``grid_name:fill<k>``, oldest first."""
    jobs = session.scalars(
        select(Job).where((Job.name == grid_name) | Job.name.like(f"{grid_name}:fill%")).order_by(Job.job_id)
    ).all()
    return list(jobs)


def _trained(job_ids: Sequence[int]):  # noqa: ANN202 - a SQL condition
    return (
        Trial.job_id.in_(list(job_ids)),
        Trial.state == TrialState.COMPLETE,
        Trial.duplicate_of_trial_id.is_(None),
    )


def trained_trials(session: Session, job_ids: Sequence[int]) -> list[Trial]:
    """Trials of the build that trained (complete, not a duplicate), oldest first."""
    if not job_ids:
        return []
    return list(
        session.scalars(
            select(Trial)
            .where(*_trained(job_ids))
            .options(selectinload(Trial.architecture), selectinload(Trial.epoch_rows))
            .order_by(Trial.job_id, Trial.number)
        ).all()
    )


def trained_encodings(session: Session, job_ids: Sequence[int]) -> list[str]:
    if not job_ids:
        return []
    return list(
        session.scalars(
            select(Architecture.encoding)
            .join(Trial, Trial.architecture_id == Architecture.architecture_id)
            .where(*_trained(job_ids))
        ).all()
    )


def build_counts(session: Session, job_ids: Sequence[int]) -> dict[tuple[str, bool], int]:
    """(trial state, is a duplicate) -> how many trials of the build."""
    if not job_ids:
        return {}
    duplicate = Trial.duplicate_of_trial_id.is_not(None)
    rows = session.execute(
        select(Trial.state, duplicate, func.count()).where(Trial.job_id.in_(list(job_ids))).group_by(Trial.state, duplicate)
    ).all()
    return {(state, bool(dup)): n for state, dup, n in rows}


# ---- tables ---------------------------------------------------------------------------------------
def get_table(session: Session, name: str) -> TabularTable | None:
    return session.get(TabularTable, name)


def table_names(session: Session) -> list[str]:
    return list(session.scalars(select(TabularTable.name).order_by(TabularTable.name)).all())


def table_results(session: Session, name: str) -> list[TabularResult]:
    return list(session.scalars(select(TabularResult).where(TabularResult.table_name == name)).all())


def table_summaries(session: Session) -> list[tuple[TabularTable, list[tuple[str, float]]]]:
    """Every table with the (original, test metric) of each of its rows."""
    out = []
    for table in session.scalars(select(TabularTable).order_by(TabularTable.name)).all():
        results = session.execute(
            select(TabularResult.original, TabularResult.test_metric).where(TabularResult.table_name == table.name)
        ).all()
        out.append((table, [(original, metric) for original, metric in results]))
    return out


_HEADER_FIELDS = ("search_space", "space_params", "dataset", "metric", "epochs", "seed", "training", "final_only")
#: derived from ``arch`` by this Cellar's identity hash, whose form may change between versions:
#: not a result, so a row that differs only there is the same row
_DERIVED = frozenset({"dedup_hash"})


def _header_value(table: TabularTable, name: str) -> Any:
    value = getattr(table, name)
    if name == "final_only":  # None on a header not yet flushed: the column's default
        return bool(value)
    if name == "space_params":  # through this Cellar's parameter model, defaults filled in
        try:
            return get_search_space(table.search_space, value).params_dict()
        except (SearchSpaceError, ValidationError):
            return value
    return value


def merge_table(session: Session, header: TabularTable, rows: list[dict[str, Any]], *, where: str) -> int:
    """Add a table's rows to the store: new rows are inserted, identical ones skipped; a row or a
    header that differs from what is stored is an error and nothing is written."""
    stored = session.get(TabularTable, header.name)
    if stored is None:
        session.add(header)
        session.flush()
        existing: dict[str, TabularResult] = {}
    else:
        differ = [f for f in _HEADER_FIELDS if _header_value(stored, f) != _header_value(header, f)]
        if differ:
            raise TabularTableError(
                f"table {header.name!r} is already in {where} with a different "
                f"{', '.join(differ)} (stored {', '.join(f'{f}={getattr(stored, f)!r}' for f in differ)}); "
                "import it under another name (--name)"
            )
        existing = {
            r.arch: r for r in session.scalars(select(TabularResult).where(TabularResult.table_name == header.name))
        }
    new = []
    for row in rows:
        old = existing.get(row["arch"])
        if old is None:
            new.append(
                {
                    "table_name": header.name,
                    "search_space": header.search_space,
                    "space_params": header.space_params,
                    "dataset": header.dataset,
                    "metric": header.metric,
                    **row,
                }
            )
            continue
        differ = [k for k, v in row.items() if k not in _DERIVED and getattr(old, k) != v]
        if differ:
            raise TabularTableError(
                f"table {header.name!r}: {row['arch']} is stored with different {', '.join(differ)} "
                f"(stored {getattr(old, differ[0])!r}, new {row[differ[0]]!r}); nothing was written"
            )
    if new:
        session.execute(TabularResult.__table__.insert(), new)
    return len(new)


# ---- zero-cost proxies of a table's cells --------------------------------------------------------
def rows_lacking_proxies(session: Session, name: str, proxies: Sequence[str]) -> list[str]:
    """The table's cells (archs, sorted) without a stored score for one of ``proxies``."""
    rows = session.execute(select(TabularResult.arch, TabularResult.extra).where(TabularResult.table_name == name))
    lacking = [arch for arch, extra in rows if not set(proxies) <= set(((extra or {}).get("proxies")) or {})]
    return sorted(lacking)


def store_proxies(
    session: Session,
    name: str,
    scored: dict[str, dict[str, float | None]],
    proxies: Sequence[str],
    *,
    data: str | None,
    update_header: bool = True,
) -> list[str]:
    """Add ``scored`` cells' proxies to their rows' ``extra.proxies``; with ``update_header`` the
    header's ``source.proxies`` then lists every proxy that all the table's cells have (a scan of the
    table: done once a run's last cells are in). Returns that list (empty without ``update_header``)."""
    if scored:
        rows = session.scalars(
            select(TabularResult).where(TabularResult.table_name == name, TabularResult.arch.in_(list(scored)))
        ).all()
        for row in rows:
            extra = dict(row.extra or {})
            extra["proxies"] = {**(extra.get("proxies") or {}), **scored[row.arch]}
            row.extra = extra
        session.flush()
    if not update_header:
        return []
    table = session.get(TabularTable, name)
    assert table is not None
    complete = [p for p in proxies if not rows_lacking_proxies(session, name, [p])]
    source = dict(table.source or {})
    held = [p for p in source.get("proxies") or [] if p not in complete] + complete
    source["proxies"] = held
    if data is not None:
        source["proxy_data"] = data
    table.source = source
    return held
