"""``cellar import-lemur``: the LEMUR dataset's statistics into the store."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ._common import DatabaseOption, JsonOption, app, console, err, fail, open_store

__all__ = ["import_lemur_command"]


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
    from ..errors import CellarError
    from ..lemur.importer import import_lemur
    from ..settings import get_settings

    started = time.perf_counter()
    try:
        store = open_store(database or get_settings().database_url, migrate=False)
        report = import_lemur(store, path, models=models)
    except CellarError as error:
        fail(error)
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
