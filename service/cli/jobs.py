"""``cellar submit``, ``jobs``, ``trials``, ``cancel``: a client of a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..client import CellarHTTPError
from ._common import JobArgument, JsonOption, NumberArgument, UrlOption, app, connect, console, err, fail_http, fmt
from .follow import best_text, follow, report, stopped_following

__all__ = ["cancel", "delete", "extend", "jobs", "logs", "submit", "trial", "trials"]


@app.command()
def submit(
    job_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="job body as JSON")],
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="show progress until the job ends")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a search job; print its id (and, with --follow, its progress and result).
    Ctrl-C while following stops following; the job goes on."""
    try:
        body = json.loads(job_file.read_text())
    except json.JSONDecodeError as error:
        err.print(f"[red]error:[/red] {job_file} is not valid JSON: {error}")
        raise typer.Exit(1) from None
    with connect(url) as client:
        try:
            job = client.submit_job(body)
            if as_json:
                typer.echo(json.dumps({"event": "submitted", "data": job}) if follow_ else json.dumps(job, indent=2))
            else:
                console.print(f"job {job['id']} {job['status']}")
            if follow_:
                job = follow(client, job, as_json=as_json)
        except CellarHTTPError as error:
            fail_http(error)
        except KeyboardInterrupt:
            raise stopped_following(job["id"]) from None
    if follow_:
        if not as_json:
            report(job)
        elif job["status"] != "succeeded":
            raise typer.Exit(1)


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs."""
    with connect(url) as client:
        try:
            rows = client.jobs(status=status)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "status", "space", "dataset", "trials", "best")
    for job in rows:
        counts = job["counts"]
        done = counts["complete"] + counts["pruned"] + counts["failed"]
        total = job.get("max_trials") or "-"
        table.add_row(str(job["id"]), job["name"], job["status"], job["search_space"], job["dataset"], f"{done}/{total}", best_text(job))
    console.print(table)


@app.command()
def trials(job_id: JobArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List a job's trials: # is a trial's number in the job, id its global id."""
    with connect(url) as client:
        try:
            rows = client.trials(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    metric = rows[0]["metric"] if rows else "metric"
    table = Table(
        "#", "id", "state", "arch", "params", f"val_{metric}", f"test_{metric}", "loss", "seconds", "error",
        caption=f"# is the trial's number in job {job_id} (cellar trial {job_id} #); id is its global id",
    )
    for trial in rows:
        error = (trial.get("error") or "").strip().splitlines()
        table.add_row(
            str(trial["number"]),
            str(trial["id"]),
            trial["state"],
            trial.get("arch") or "-",
            fmt(trial.get("params")),
            fmt(trial.get("val_metric")),
            fmt(trial.get("test_metric")),
            fmt(trial.get("loss")),
            fmt(trial.get("train_seconds"), 2),
            error[0][:80] if error else "",
        )
    console.print(table)


@app.command()
def trial(
    job_id: JobArgument,
    number: NumberArgument,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one trial of a job: its metrics per epoch, its error, and its nn_code."""
    with connect(url) as client:
        try:
            found = client.job_trial(job_id, number)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    metric = found["metric"]
    console.print(
        f"job {job_id} trial #{found['number']} (id {found['id']}): {found['state']}, "
        f"{found['search_space']} {found.get('arch') or '-'}",
        soft_wrap=True, markup=False,
    )
    console.print(
        f"params {fmt(found.get('params'))}   FLOPs {fmt(found.get('flops'))}   "
        f"val_{metric} {fmt(found.get('val_metric'))}   test_{metric} {fmt(found.get('test_metric'))}   "
        f"train seconds {fmt(found.get('train_seconds'), 2)}   values {found.get('values')}",
        soft_wrap=True, markup=False,
    )
    if found["epochs"]:
        epochs = Table("epoch", "loss", "val_loss", f"val_{metric}", "seconds")
        for epoch in found["epochs"]:
            epochs.add_row(
                str(epoch["epoch"]), fmt(epoch["loss"]), fmt(epoch["val_loss"]), fmt(epoch["val_metric"]),
                fmt(epoch["elapsed_seconds"], 2),
            )
        console.print(epochs)
    if found.get("duplicate_of") is not None:
        console.print(f"result reused from trial id {found['duplicate_of']}" + (" (cache hit)" if found["cache_hit"] else ""))
    if found.get("error"):
        err.print(found["error"], markup=False, highlight=False, soft_wrap=True)
    console.print(found.get("nn_code") or "", markup=False, highlight=False, soft_wrap=True)


@app.command()
def logs(
    job_id: JobArgument,
    number: NumberArgument,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """What a trial's model printed and warned while it was built, trained and tested."""
    with connect(url) as client:
        try:
            text = client.log(job_id, number)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "number": number, "log": text}))
    elif text:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        err.print(f"trial #{number} of job {job_id} printed nothing")


@app.command()
def cancel(job_id: JobArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Cancel a job: running trials stop, finished ones stay."""
    with connect(url) as client:
        try:
            job = client.cancel(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    console.print(f"job {job['id']} {job['status']}{' (cancelling)' if job['cancel_requested'] and job['status'] == 'running' else ''}")


@app.command()
def extend(
    job_id: JobArgument,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="the job's new total of trials")] = None,
    time_limit: Annotated[float | None, typer.Option("--time", help="seconds more of search, from now")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a job that has ended more trials or time: its search goes on where it stopped."""
    with connect(url) as client:
        try:
            job = client.extend(job_id, max_trials=max_trials, time_limit_s=time_limit)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        console.print(f"job {job_id} {job['status']} again, up to {job.get('max_trials') or '-'} trials; "
                      f"`cellar watch {job_id}` follows it")


@app.command()
def delete(
    job_id: JobArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask to confirm")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a job that is not running, with its trials and kept weights (other jobs' cache hits
    on it keep their results)."""
    if not yes and not typer.confirm(f"delete job {job_id} and its trials?"):
        raise typer.Exit(1)
    with connect(url) as client:
        try:
            client.delete(job_id)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps({"job_id": job_id, "deleted": True}))
    else:
        console.print(f"job {job_id} deleted")
