"""The ``cellar`` command: serve, migrate, and a client for jobs and trials."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .client import CellarClient, CellarHTTPError

app = typer.Typer(help="Cellar: neural architecture search as a service.", no_args_is_help=True)
# piped output keeps whole arch strings instead of cutting tables at 80 columns
console = Console() if sys.stdout.isatty() else Console(width=400)
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

UrlOption = Annotated[str | None, typer.Option("--url", help="server URL (default $CELLAR_URL or http://127.0.0.1:8000)")]


def _client(url: str | None) -> CellarClient:
    return CellarClient(url)


def _fail(error: CellarHTTPError) -> None:
    err.print(f"[red]error:[/red] {error.message}")
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the API and the job manager (starting a local Ray unless CELLAR_RAY_ADDRESS is set)."""
    import uvicorn

    from .api import create_app
    from .errors import StoreError
    from .settings import get_settings
    from .store import Store, check_schema

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    store = Store(settings.database_url)
    try:
        check_schema(store)
    except StoreError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    finally:
        store.dispose()
    if settings.api_key is None:
        settings.resolved_api_key()
        err.print(
            f"API key: in {settings.api_key_file.resolve()} "
            f"(export CELLAR_API_KEY=$(cat {settings.api_key_file}) for curl)"
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


@app.command()
def migrate(revision: Annotated[str, typer.Option(help="target revision")] = "head") -> None:
    """Create or upgrade the store's tables (CELLAR_DATABASE_URL)."""
    from .errors import StoreError
    from .settings import get_settings
    from .store import Store, current_revision, upgrade

    store = Store(get_settings().database_url)
    try:
        upgrade(store, revision)
        console.print(f"store {store.display_url} at revision {current_revision(store)}")
    except StoreError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    finally:
        store.dispose()


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="target revision, 'base' drops every Cellar table")]) -> None:
    """Take the store's schema down to REVISION."""
    from .settings import get_settings
    from .store import Store, current_revision
    from .store import downgrade as do_downgrade

    store = Store(get_settings().database_url)
    try:
        do_downgrade(store, revision)
        console.print(f"store {store.display_url} at revision {current_revision(store)}")
    finally:
        store.dispose()


def _best(job: dict[str, Any]) -> str:
    best = job.get("best_trial")
    if not best:
        return "best: -"
    value = best.get("val_metric")
    metric = best.get("metric", "")
    return f"best: {metric} {value:.4f} (trial {best['number']})" if value is not None else f"best: trial {best['number']}"


def _follow(client: CellarClient, job: dict[str, Any]) -> dict[str, Any]:
    total = job.get("max_trials")
    with Progress(
        TextColumn("job {task.fields[job_id]} {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task(job["status"], total=total, job_id=job["id"], best=_best(job))

        def update(current: dict[str, Any]) -> None:
            counts = current["counts"]
            done = counts["complete"] + counts["pruned"] + counts["failed"]
            progress.update(task, completed=done, description=current["status"], best=_best(current))

        return client.wait(job["id"], interval=1.0, on_update=update)


@app.command()
def submit(
    job_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="job body as JSON")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="show progress until the job ends")] = False,
    url: UrlOption = None,
) -> None:
    """Submit a search job; print its id (and, with --follow, its progress and result)."""
    try:
        body = json.loads(job_file.read_text())
    except json.JSONDecodeError as error:
        err.print(f"[red]error:[/red] {job_file} is not valid JSON: {error}")
        raise typer.Exit(1) from None
    with _client(url) as client:
        try:
            job = client.submit_job(body)
            console.print(f"job {job['id']} {job['status']}")
            if follow:
                job = _follow(client, job)
                console.print(f"job {job['id']} {job['status']}; {_best(job)}")
                if job.get("error"):
                    err.print(job["error"])
                if job["status"] != "succeeded":
                    raise typer.Exit(1)
        except CellarHTTPError as error:
            _fail(error)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs."""
    with _client(url) as client:
        try:
            rows = client.jobs(status=status)
        except CellarHTTPError as error:
            _fail(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "status", "space", "dataset", "trials", "best")
    for job in rows:
        counts = job["counts"]
        done = counts["complete"] + counts["pruned"] + counts["failed"]
        total = job.get("max_trials") or "-"
        table.add_row(str(job["id"]), job["name"], job["status"], job["search_space"], job["dataset"], f"{done}/{total}", _best(job))
    console.print(table)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@app.command()
def trials(job_id: Annotated[int, typer.Argument(help="job id")], url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List a job's trials."""
    with _client(url) as client:
        try:
            rows = client.trials(job_id)
        except CellarHTTPError as error:
            _fail(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    metric = rows[0]["metric"] if rows else "metric"
    table = Table("#", "state", "arch", "params", f"val_{metric}", f"test_{metric}", "loss", "seconds", "error")
    for trial in rows:
        error = (trial.get("error") or "").strip().splitlines()
        table.add_row(
            str(trial["number"]),
            trial["state"],
            trial.get("arch") or "-",
            _fmt(trial.get("params")),
            _fmt(trial.get("val_metric")),
            _fmt(trial.get("test_metric")),
            _fmt(trial.get("loss")),
            _fmt(trial.get("train_seconds"), 2),
            error[-1][:80] if error else "",
        )
    console.print(table)


@app.command()
def cancel(job_id: Annotated[int, typer.Argument(help="job id")], url: UrlOption = None) -> None:
    """Cancel a job: running trials stop, finished ones stay."""
    with _client(url) as client:
        try:
            job = client.cancel(job_id)
        except CellarHTTPError as error:
            _fail(error)
    console.print(f"job {job['id']} {job['status']}{' (cancelling)' if job['cancel_requested'] and job['status'] == 'running' else ''}")


def _value(text: str) -> Any:
    """A --param value: JSON when it parses (numbers, lists, booleans), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command()
def arch(
    space: Annotated[str, typer.Argument(help="search space kind, e.g. nb201")],
    encoding: Annotated[str, typer.Argument(help="the architecture, e.g. an NB-201 arch string")],
    param: Annotated[list[str] | None, typer.Option("--param", help="space parameter KEY=VALUE (repeatable)")] = None,
    dataset: Annotated[str | None, typer.Option(help="build for this dataset's shapes and run on its data")] = None,
    classes: Annotated[int | None, typer.Option(help="without --dataset: the number of classes")] = None,
    in_shape: Annotated[str | None, typer.Option(help="without --dataset: one sample's shape, e.g. 3,32,32")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build an architecture without training it: parameters, FLOPs, shapes and its nn_code."""
    from pydantic import ValidationError

    from search_spaces import SearchSpaceError

    from .settings import get_settings

    params: dict[str, Any] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error:[/red] --param {item!r} is not KEY=VALUE, e.g. --param channels=16")
            raise typer.Exit(2)
        params[key] = _value(value)
    shape = tuple(int(v) for v in in_shape.split(",")) if in_shape else None
    from workers.inspect import describe_architecture

    try:
        described = describe_architecture(
            space, encoding, params, dataset=dataset, classes=classes, in_shape=shape, data_dir=get_settings().data_dir
        )
    except (SearchSpaceError, ValidationError, ValueError) as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    console.print(f"{described['search_space']} {described['encoding']}")
    console.print(f"parameters {described['params']:,}   FLOPs {described['flops']:,}   "
                  f"input {described['in_shape']} -> output {described['output_shape']}   nn {described['nn']}")
    console.print(described["nn_code"], markup=False, highlight=False)


# ---- results tables (issue #4): `cellar table ...` -------------------------------------------
table_app = typer.Typer(
    help="Results tables: train every cell of a space once, then search it in simulation.", no_args_is_help=True
)
app.add_typer(table_app, name="table")

DatabaseOption = Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL of the store")]


def _table_error(error: Exception) -> NoReturn:
    # unwrapped and without markup: messages quote arch strings and file lines verbatim
    err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(1) from None


def _table_store(url: str, *, migrate: bool) -> Any:
    from .errors import StoreError
    from .store import Store, check_schema

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not migrate and not path.exists():
            _table_error(StoreError(f"no store at {path}; give --database, or create it with `cellar migrate`"))
        path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(url)
    if not migrate:
        check_schema(store)
    return store


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
) -> None:
    """Train every cell of an NB-201 space through Ray into a results table (resumable)."""
    from pydantic import ValidationError
    from rich.progress import TimeRemainingColumn

    from search_spaces import SearchSpaceError

    from .errors import CellarError
    from .tabular import BuildConfig, BuildProgress, build_table, default_build_url, install_sigterm_as_interrupt

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
        _table_error(error)
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
            store = _table_store(url, migrate=True)
            final = build_table(config, store, on_progress=show)
        except KeyboardInterrupt:
            err.print(f"stopped; run the same command again to resume (store {url})")
            raise typer.Exit(130) from None
        except CellarError as error:
            _table_error(error)
    console.print(
        f"table {name}: {final.covered}/{final.classes} classes, {final.trained} cells trained, "
        f"{final.duplicates} duplicates, {final.failed} failed, in {time.monotonic() - started:.0f} s; store {url}"
    )


@table_app.command("export")
def table_export(
    name: Annotated[str, typer.Argument(help="the table's name")],
    out: Annotated[Path, typer.Option("--out", help="file to write: .jsonl.xz (smallest), .jsonl.gz or .jsonl")],
    database: Annotated[
        str | None,
        typer.Option("--database", help="store holding the table (default sqlite:///.cellar/tables/NAME.db)"),
    ] = None,
) -> None:
    """Write a results table to a compressed JSON-lines file: a header, then one record per cell."""
    from .errors import CellarError
    from .tabular import default_build_url, export_table

    try:
        store = _table_store(database or default_build_url(name), migrate=False)
        cells = export_table(store, name, out)
    except CellarError as error:
        _table_error(error)
    console.print(f"table {name}: {cells} cells written to {out} ({out.stat().st_size:,} bytes)")


@table_app.command("import")
def table_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a file `cellar table export` wrote")],
    name: Annotated[str | None, typer.Option("--name", help="store it under this name (default: the file's)")] = None,
    database: DatabaseOption = None,
) -> None:
    """Load a results table into the store (default CELLAR_DATABASE_URL); running it twice adds nothing."""
    from .errors import CellarError
    from .settings import get_settings
    from .tabular import import_table

    try:
        store = _table_store(database or get_settings().database_url, migrate=False)
        table, cells, added = import_table(store, file, name=name)
    except CellarError as error:
        _table_error(error)
    console.print(f"table {table}: {cells} cells in {file.name}, {added} added, {cells - added} already stored")


@app.command("import-lemur")
def import_lemur_command(
    path: Annotated[
        Path, typer.Argument(exists=True, help="LEMUR's stat/ folder, a folder above it, or a tar archive of either")
    ],
    models: Annotated[
        Path | None, typer.Option("--models", exists=True, file_okay=False, help="a folder of LEMUR model files <nn>.py")
    ] = None,
    database: DatabaseOption = None,
    show_rejects: Annotated[int, typer.Option("--show-rejects", help="list at most this many rejected files")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Load the LEMUR neural network dataset's training statistics into the store (default
    CELLAR_DATABASE_URL), in one transaction; running it again adds nothing."""
    from .errors import CellarError
    from .lemur_import import import_lemur
    from .settings import get_settings

    started = time.perf_counter()
    try:
        store = _table_store(database or get_settings().database_url, migrate=False)
        report = import_lemur(store, path, models=models)
    except CellarError as error:
        _table_error(error)
    seconds = time.perf_counter() - started
    if as_json:
        console.print_json(data={**asdict(report), "seconds": round(seconds, 2)})
        return
    console.print(
        f"{report.files} files, {report.records} records: {report.runs_added} runs and "
        f"{report.epochs_added} epoch rows added, {report.epochs_present} already stored, "
        f"{len(report.rejected)} files rejected, {report.models_with_code} models with code ({seconds:.1f} s)"
    )
    for name, reason in report.rejected[:show_rejects]:
        err.print(f"rejected {escape(name)}: {escape(reason)}", soft_wrap=True)
    if len(report.rejected) > show_rejects:
        err.print(f"... and {len(report.rejected) - show_rejects} more rejected files (--show-rejects N, or --json)")


@table_app.command("list")
def table_list(database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """List the results tables in the store (default CELLAR_DATABASE_URL)."""
    from .errors import CellarError
    from .settings import get_settings
    from .tabular import list_tables

    try:
        rows = list_tables(_table_store(database or get_settings().database_url, migrate=False))
    except CellarError as error:
        _table_error(error)
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
            _fmt(row["best_test"]),
            _fmt(row["median_test"]),
            row["origin"],
        )
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
