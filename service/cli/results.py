"""``cellar pareto``, ``cellar export``, ``cellar best``: what a job found, for people and scripts."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from ..client import CellarHTTPError
from ._common import JobArgument, JsonOption, NumberArgument, UrlOption, app, connect, console, err, fail, fail_http, fmt

__all__ = ["best", "export", "export_optuna", "export_rows", "pareto", "weights"]

#: what `cellar weights` writes beside the model and its weights
LOADER = """\
# Rebuild trial {number} of job {job_id} ({nn}) with its trained weights.
import torch

from model import Net

saved = torch.load("weights.pt", weights_only=True)
net = Net(tuple(saved["in_shape"]), tuple(saved["out_shape"]), saved["prm"], torch.device("cpu"))
net.load_state_dict(saved["state_dict"])
net.eval()
print(net)
"""

#: a trial's own columns in an export, before its objective values and its parameters
TRIAL_COLUMNS = (
    "number", "id", "state", "val_metric", "test_metric", "loss", "params", "flops", "latency_ms", "train_seconds",
    "epochs", "seed", "origin", "duplicate_of", "cache_hit", "retry_of", "interruptions", "search_space", "arch", "nn",
    "error", "created_at", "started_at", "finished_at",
)


@app.command()
def pareto(job_id: JobArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The job's Pareto set: the trials no other beats on every objective, and its hypervolume."""
    with connect(url) as client:
        try:
            front = client.pareto(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(front, indent=2))
        return
    names = [f"{o['metric']} ({'max' if o['direction'] == 'maximize' else 'min'})" for o in front["objectives"]]
    table = Table("#", *names, "arch", caption=f"hypervolume {fmt(front['hypervolume'])} up to {front['reference_point']}")
    for trial in front["data"]:
        table.add_row(str(trial["number"]), *(fmt(v) for v in trial["values"]), trial.get("arch") or "-")
    console.print(f"job {job_id}: {front['count']} non-dominated trial{'s' if front['count'] != 1 else ''}")
    console.print(table)


def export_rows(job: dict[str, Any], trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per trial: its own columns, one per objective value (named by the objective's
    metric), one per sampled parameter (``param_<name>``)."""
    # imported results and submitted models have no objectives of their own: their value is the metric
    objectives = [o["metric"] for o in job["spec"].get("objectives", [])] or [f"val_{job['metric']}"]
    names = sorted({name for trial in trials for name in trial["choices"]})
    rows = []
    for trial in trials:
        row: dict[str, Any] = {key: trial.get(key) for key in TRIAL_COLUMNS}
        row["epochs"] = len(trial["epochs"])
        row["metric"] = trial["metric"]
        for i, metric in enumerate(objectives):
            row[f"value_{metric}"] = trial["values"][i] if trial["values"] else None
        for name in names:
            value = trial["choices"].get(name)
            row[f"param_{name}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
        rows.append(row)
    return rows


@app.command()
def export(
    job_id: JobArgument,
    format_: Annotated[Literal["csv", "parquet"], typer.Option("--format", help="csv or parquet")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default job-<id>.<format>; - for stdout, csv only)")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every trial of a job with its parameters and metrics, as CSV or Parquet (one row a trial)."""
    with connect(url) as client:
        try:
            job = client.job(job_id)
            trials = client.trials(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    rows = export_rows(job, trials)
    columns = list(rows[0]) if rows else [*TRIAL_COLUMNS, "metric"]
    target = output or Path(f"job-{job_id}.{format_}")
    if str(target) == "-":
        if format_ != "csv":
            fail("--output - writes CSV only: give a file name for parquet")
        _write_csv(sys.stdout, columns, rows)
        return
    if format_ == "csv":
        with open(target, "w", newline="", encoding="utf-8") as handle:
            _write_csv(handle, columns, rows)
    else:
        import pandas as pd

        pd.DataFrame(rows, columns=columns).to_parquet(target, index=False)
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "path": str(target), "format": format_, "rows": len(rows), "columns": columns}))
    else:
        err.print(f"wrote {len(rows)} trial{'s' if len(rows) != 1 else ''} of job {job_id} to {target}")


def _write_csv(handle: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


@app.command()
def best(
    job_id: JobArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the code to this file")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The best trial's network: its nn_code (LEMUR's model contract, loadable on its own)."""
    with connect(url) as client:
        try:
            job = client.job(job_id)
            if job["best_trial"] is None:
                if job["best_trials"]:
                    fail(f"job {job_id} has {len(job['spec']['objectives'])} objectives and no single best: "
                         f"`cellar pareto {job_id}` lists its Pareto set, `cellar trial {job_id} NUMBER` shows one")
                fail(f"job {job_id} has no complete trial yet ({job['status']})")
            trial = client.job_trial(job_id, job["best_trial"]["number"])
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(trial, indent=2))
    elif output is not None:
        output.write_text(trial["nn_code"] or "")
        err.print(f"wrote trial #{trial['number']}'s nn_code ({trial['nn']}) to {output}")
    else:
        console.print(trial["nn_code"] or "", markup=False, highlight=False, soft_wrap=True)


@app.command()
def weights(
    job_id: JobArgument,
    number: NumberArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write model.py, weights.pt and load.py into")] = Path("."),
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a trial's trained weights with its code: model.py (its nn_code), weights.pt and
    load.py, which rebuilds the trained network (python load.py in that folder)."""
    with connect(url) as client:
        try:
            trial = client.job_trial(job_id, number)
            blob = client.weights(job_id, number)
        except CellarHTTPError as error:
            fail_http(error)
    output.mkdir(parents=True, exist_ok=True)
    (output / "model.py").write_text(trial["nn_code"] or "")
    (output / "weights.pt").write_bytes(blob)
    (output / "load.py").write_text(LOADER.format(number=number, job_id=job_id, nn=trial["nn"]))
    written = {"model": str(output / "model.py"), "weights": str(output / "weights.pt"), "loader": str(output / "load.py")}
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "number": number, "nn": trial["nn"], "bytes": len(blob), **written}))
    else:
        err.print(f"wrote trial #{number} of job {job_id}: {written['model']}, {written['weights']} ({len(blob):,} bytes), "
                  f"{written['loader']} (cd {output} && python load.py)")


@app.command("export-optuna")
def export_optuna(
    job_id: JobArgument,
    storage: Annotated[str, typer.Option("--storage", help="Optuna RDB storage URL, e.g. sqlite:///studies.db or postgresql+psycopg://...")],
    study_name: Annotated[str | None, typer.Option("--study-name", help="name of the study there (default cellar-job-<id>-<name>)")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a job's study into an Optuna storage: optuna.load_study and optuna-dashboard read it."""
    import tempfile

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with connect(url) as client:
        try:
            blob = client.optuna_db(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    with tempfile.TemporaryDirectory(prefix="cellar-optuna-") as folder:
        source = Path(folder) / "study.db"
        source.write_bytes(blob)
        source_url = f"sqlite:///{source}"
        [name] = optuna.study.get_all_study_names(source_url)
        target = study_name or name
        try:
            optuna.copy_study(from_study_name=name, from_storage=source_url, to_storage=storage, to_study_name=target)
        except optuna.exceptions.DuplicatedStudyError:
            fail(f"a study named {target!r} exists in {storage} already: give --study-name, or delete it there")
        except Exception as error:  # an unreachable or unusable storage URL
            fail(f"cannot write to the Optuna storage {storage}: {type(error).__name__}: {error}")
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "storage": storage, "study_name": target}))
    else:
        err.print(f"job {job_id} written to {storage} as study {target!r}: "
                  f"optuna.load_study(study_name={target!r}, storage={storage!r}), or optuna-dashboard {storage}")
