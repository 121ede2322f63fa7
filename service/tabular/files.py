"""Results tables as files: compressed JSON lines, a header record, then one record per cell.

Exported tables are JSON lines compressed with xz: a header record, then one record per cell.
Floats are rounded (6 significant digits for losses, 6 decimals for metrics, 0.1 ms for times) in
the store as in the file, so a table survives export and import unchanged.
"""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from search_spaces import SearchSpace, SearchSpaceError, get_search_space

from .. import __version__
from ..errors import TabularTableError
from ..store import Store, TabularTable, tables
from .load import merge_rows

__all__ = ["FORMAT", "FORMAT_VERSION", "export_table", "import_table"]

#: the ``format`` of an exported table's header record
FORMAT = "cellar-results-table"
#: 2 adds ``source`` and ``final_only`` to the header and ``seed_metrics`` and ``extra`` to the rows
FORMAT_VERSION = 2


class _Header(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str
    format_version: int
    name: str = Field(min_length=1, max_length=200)
    search_space: str
    space_params: dict[str, Any]
    dataset: str
    metric: str
    epochs: int = Field(ge=1)
    seed: int
    training: dict[str, Any]
    cellar_version: str
    cells: int = Field(ge=0)
    source: dict[str, Any] | None = None
    final_only: bool = False


class _Epoch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=1)
    loss: float | None
    val_loss: float | None
    val_metric: float | None
    elapsed_seconds: float = Field(ge=0)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str
    dedup_hash: str = Field(min_length=1, max_length=64)
    original: str
    params: int = Field(ge=0)
    flops: int | None = Field(ge=0)
    latency_ms: float | None
    curve: list[_Epoch] = Field(min_length=1)
    test_metric: float | None
    train_seconds: float = Field(ge=0)
    seed_metrics: list[float] | None = None
    extra: dict[str, Any] | None = None


def _create(path: Path, compression: str) -> Any:
    if compression == ".xz":
        return lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME)
    if compression == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=9)
    return path.open("w", encoding="utf-8")


def _open(path: Path) -> Any:
    """xz, gzip or plain text, by the file's first bytes."""
    with path.open("rb") as raw:
        magic = raw.read(6)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rt", encoding="utf-8")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def export_table(store: Store, name: str, out: Path) -> int:
    """Write table ``name`` to ``out`` (``.jsonl.xz``, ``.jsonl.gz`` or ``.jsonl``); returns the cells written."""
    with store.read() as session:
        table = tables.get_table(session, name)
        if table is None:
            raise TabularTableError(f"no results table {name!r} in {store.display_url}; build or import it first")
        # sorted here, not by the database, whose collation may differ: the same table, the same file
        rows = sorted(tables.table_results(session, name), key=lambda r: r.arch)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": table.name,
        "search_space": table.search_space,
        "space_params": table.space_params,
        "dataset": table.dataset,
        "metric": table.metric,
        "epochs": table.epochs,
        "seed": table.seed,
        "training": table.training,
        "cellar_version": table.cellar_version,
        "exported_by": __version__,
        "cells": len(rows),
        "unique": len({r.original for r in rows}),
        "source": table.source,
        "final_only": table.final_only,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")  # compressed by out's suffix; renamed once complete
    with _create(tmp, out.suffix) as handle:
        handle.write(json.dumps(header, sort_keys=True) + "\n")
        for r in rows:
            record = {
                "arch": r.arch,
                "dedup_hash": r.dedup_hash,
                "original": r.original,
                "params": r.params,
                "flops": r.flops,
                "latency_ms": r.latency_ms,
                "curve": r.curve,
                "test_metric": r.test_metric,
                "train_seconds": r.train_seconds,
                "seed_metrics": r.seed_metrics,
                "extra": r.extra,
            }
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    tmp.replace(out)
    return len(rows)


def _problem(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in error.errors(include_url=False)
    )


def _read(path: Path) -> tuple[_Header, list[dict[str, Any]]]:
    try:
        handle = _open(path)
    except OSError as error:
        raise TabularTableError(f"{path}: cannot read it: {error}") from None
    header: _Header | None = None
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    space: SearchSpace | None = None
    try:
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}: line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TabularTableError(f"{where}: not JSON ({error})") from None
                if not isinstance(record, dict):
                    raise TabularTableError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
                if header is None:
                    if record.get("format") != FORMAT:
                        raise TabularTableError(
                            f'{where}: the first record must be the header with "format": "{FORMAT}" '
                            "(is this a file written by `cellar table export`?)"
                        )
                    try:
                        header = _Header.model_validate(record)
                    except ValidationError as error:
                        raise TabularTableError(f"{where}: header: {_problem(error)}") from None
                    if header.format_version > FORMAT_VERSION:
                        raise TabularTableError(
                            f"{where}: format_version {header.format_version} is newer than this Cellar "
                            f"reads ({FORMAT_VERSION}); upgrade Cellar"
                        )
                    try:
                        space = get_search_space(header.search_space, header.space_params)
                    except (SearchSpaceError, ValidationError) as error:
                        raise TabularTableError(f"{where}: header: {error}") from None
                    continue
                try:
                    row = _Row.model_validate(record)
                except ValidationError as error:
                    raise TabularTableError(f"{where}: {_problem(error)}") from None
                assert space is not None
                try:
                    canonical = space.canonical(row.arch)
                    space.canonical(row.original)
                except SearchSpaceError as error:
                    raise TabularTableError(f"{where}: arch: {error}") from None
                if canonical != row.arch:
                    raise TabularTableError(f"{where}: arch {row.arch!r} is not canonical ({canonical!r})")
                if row.arch in seen:
                    raise TabularTableError(f"{where}: arch {row.arch} appears twice")
                expected = [header.epochs] if header.final_only else list(range(1, header.epochs + 1))
                if [e.epoch for e in row.curve] != expected:
                    shown = f"epoch {header.epochs} only" if header.final_only else f"epochs 1..{header.epochs}"
                    raise TabularTableError(f"{where}: curve: expected {shown}, got {[e.epoch for e in row.curve]}")
                seen.add(row.arch)
                rows.append(row.model_dump())
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, UnicodeDecodeError, OSError) as error:
        raise TabularTableError(f"{path}: the file is damaged or truncated: {error}") from None
    if header is None:
        raise TabularTableError(f"{path}: the file is empty (no header record)")
    if header.cells != len(rows):
        raise TabularTableError(
            f"{path}: the header announces {header.cells} cells but the file holds {len(rows)} (truncated?)"
        )
    return header, rows


def import_table(store: Store, path: Path, *, name: str | None = None) -> tuple[str, int, int]:
    """Load an exported table into the store (idempotent); returns (name, cells in file, rows added).

    Rows already stored stay as they are: identical ones are skipped, a differing one is an error
    and nothing is written."""
    header, rows = _read(path)
    table = TabularTable(
        name=name or header.name,
        search_space=header.search_space,
        space_params=header.space_params,
        dataset=header.dataset,
        metric=header.metric,
        epochs=header.epochs,
        seed=header.seed,
        training=header.training,
        cellar_version=header.cellar_version,
        origin=f"import: {path.name}",
        source=header.source,
        final_only=header.final_only,
    )
    added = merge_rows(store, table, rows)
    return table.name, len(rows), added


