"""Results tables in the store: merging rows in, listing tables, loading one for the tabular executor."""

from __future__ import annotations

import statistics
from typing import Any

from workers.tabular_executor import CellResult, EpochResult, ResultsTable

from ..errors import TabularTableError
from ..store import Store, TabularTable, tables

__all__ = ["list_tables", "load_table", "merge_rows", "round_decimals", "round_significant"]


def round_significant(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def round_decimals(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def merge_rows(store: Store, header: TabularTable, rows: list[dict[str, Any]]) -> int:
    """Add a table's rows to the store: new rows are inserted, identical ones skipped; a row or a
    header that differs from what is stored is an error and nothing is written."""
    with store.write() as session:
        return tables.merge_table(session, header, rows, where=store.display_url)


def list_tables(store: Store) -> list[dict[str, Any]]:
    """Every table in the store with its size, classes and best and median test metric."""
    with store.read() as session:
        summaries = tables.table_summaries(session)
    out = []
    for table, results in summaries:
        metrics = [m for _, m in results if m is not None]
        out.append(
            {
                "name": table.name,
                "search_space": table.search_space,
                "space_params": table.space_params,
                "dataset": table.dataset,
                "metric": table.metric,
                "epochs": table.epochs,
                "cells": len(results),
                "unique": len({d for d, _ in results}),
                "best_test": max(metrics) if metrics else None,
                "median_test": statistics.median(metrics) if metrics else None,
                "origin": table.origin,
                "source": table.source,
            }
        )
    return out


def load_table(store: Store, name: str) -> ResultsTable:
    """Table ``name`` as the tabular executor reads it."""
    with store.read() as session:
        table = tables.get_table(session, name)
        if table is None:
            known = tables.table_names(session)
            raise TabularTableError(
                f"no results table {name!r} in {store.display_url}"
                + (f"; it has: {', '.join(known)}" if known else "; import one with `cellar table import FILE`")
            )
        rows = tables.table_results(session, name)
    results = {
        row.arch: CellResult(
            params=row.params,
            flops=row.flops,
            latency_ms=row.latency_ms,
            epochs=tuple(EpochResult(**e) for e in row.curve),
            test_metric=row.test_metric,
            train_seconds=row.train_seconds,
            original=row.original,
            seed_metrics=tuple(row.seed_metrics) if row.seed_metrics else None,
            proxies=(row.extra or {}).get("proxies"),
        )
        for row in rows
    }
    return ResultsTable(
        name=table.name,
        search_space=table.search_space,
        space_params=dict(table.space_params),
        dataset=table.dataset,
        metric=table.metric,
        epochs=table.epochs,
        seed=table.seed,
        prm=dict(table.training.get("prm", {})),
        split=table.training.get("split"),
        results=results,
        final_only=table.final_only,
        source=table.source,
    )
