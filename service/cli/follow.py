"""``cellar watch JOB`` and ``cellar submit --follow``: a job's progress from its event stream.

The line shows trials done out of the budget, the trials running with their epoch, the best value so
far and an ETA (the pace of the finished trials over what the budget has left). A server that stops
ends the stream; the follower reconnects until the job ends. Ctrl-C stops following, never the job.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import typer
from rich.table import Column
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import FINISHED, CellarClient, CellarHTTPError
from ._common import JobArgument, JsonOption, UrlOption, app, connect, console, err, fail_http

__all__ = ["best_text", "follow", "watch"]

#: seconds between attempts to reach a server that went away while a job was followed
RECONNECT_S = 2.0


def best_text(job: dict[str, Any]) -> str:
    best = job.get("best_trial")
    if not best and job.get("best_trials"):  # several objectives: the size of the Pareto set
        front = len(job["best_trials"])
        return f"Pareto set: {front} trial{'s' if front != 1 else ''} (cellar pareto {job['id']})"
    if not best:
        return "best: -"
    value = best.get("val_metric")
    metric = best.get("metric", "")
    which = f"trial #{best['number']}"  # its number in the job: `cellar trial JOB NUMBER`
    return f"best: {metric} {value:.4f} ({which})" if value is not None else f"best: {which}"


def _seconds(stamp: str | None) -> float | None:
    if stamp is None:
        return None
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def eta_text(job: dict[str, Any], now: float | None = None) -> str:
    """What the budget has left at the pace of the finished trials (or of the time limit)."""
    if job["status"] in FINISHED:
        return "done"
    started = _seconds(job.get("started_at"))
    if started is None:
        return "ETA -"
    elapsed = (now or time.time()) - started
    counts = job["counts"]
    done = counts["complete"] + counts["pruned"] + counts["failed"]
    left: float | None = None
    if job.get("max_trials") and done:
        left = elapsed / done * max(0, job["max_trials"] - done)
    limit = job["spec"].get("budget", {}).get("time_limit_s")
    if limit:
        left = min(left if left is not None else float("inf"), max(0.0, limit - elapsed))
    if left is None:
        return "ETA -"
    minutes, seconds = divmod(int(left + 0.5), 60)
    return f"ETA {minutes}:{seconds:02d}" if minutes < 60 else f"ETA {minutes // 60}h{minutes % 60:02d}m"


def screen_text(job: dict[str, Any]) -> str:
    """While the workers score a screened job's candidates (``strategy.screen``), before any trial."""
    screen = (job["spec"].get("strategy") or {}).get("screen")
    if not screen or job.get("screen") or job["status"] != "running" or job["spec"].get("executor"):
        return ""
    return f"scoring {screen['samples']} candidates by {screen['proxy']}"


class _Running:
    """The trials running now and their last finished epoch, from ``trial`` events."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.trials: dict[int, int] = {}

    def see(self, event: dict[str, Any]) -> None:
        if event["kind"] == "started":
            self.trials[event["number"]] = 0
        elif event["kind"] == "epoch":
            self.trials[event["number"]] = event["epoch"]
        else:
            self.trials.pop(event["number"], None)

    def text(self) -> str:
        if not self.trials:
            return ""
        shown = [f"#{n} epoch {e}/{self.epochs}" for n, e in sorted(self.trials.items())[:4]]
        more = f" +{len(self.trials) - 4}" if len(self.trials) > 4 else ""
        return "running " + ", ".join(shown) + more


def _events(client: CellarClient, job_id: int) -> Any:
    """The job's events, across server restarts, until the job ends."""
    while True:
        try:
            for name, data in client.events(job_id):
                yield name, data
                if name == "job" and data["status"] in FINISHED:
                    return
        except CellarHTTPError as error:
            if error.status_code != 0:
                raise
            err.print(f"[yellow]{error.message}; trying again in {RECONNECT_S:g} s[/yellow]", soft_wrap=True)
        time.sleep(RECONNECT_S)


def follow(client: CellarClient, job: dict[str, Any], *, as_json: bool = False) -> dict[str, Any]:
    """Follow ``job`` until it ends; returns its last state. With ``as_json`` every event is
    printed as one JSON line (``{"event": ..., "data": ...}``) instead of the progress line."""
    if as_json:
        for name, data in _events(client, job["id"]):
            typer.echo(json.dumps({"event": name, "data": data}))
            if name == "job":
                job = data
        return job
    running = _Running(job["spec"].get("budget", {}).get("epochs", 0))
    with Progress(
        TextColumn("job {task.fields[job_id]} {task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        # the rest wraps on a narrow terminal instead of being cut
        TextColumn(
            "{task.fields[eta]}  {task.fields[best]}  {task.fields[running]}",
            table_column=Column(ratio=1, no_wrap=False, overflow="fold"),
        ),
        console=err,
    ) as progress:
        task = progress.add_task(
            job["status"], total=job.get("max_trials"), job_id=job["id"], best=best_text(job), eta=eta_text(job), running=""
        )
        for name, data in _events(client, job["id"]):
            if name == "trial":
                running.see(data)
            elif name == "job":
                job = data
            elif name == "shutdown":
                err.print(f"[yellow]{data['detail']}[/yellow]", soft_wrap=True)
            counts = job["counts"]
            progress.update(
                task,
                completed=counts["complete"] + counts["pruned"] + counts["failed"],
                description=job["status"],
                best=best_text(job),
                eta=eta_text(job),
                running=running.text() or screen_text(job),
            )
    return job


def stopped_following(job_id: int) -> typer.Exit:
    err.print(
        f"stopped following job {job_id}; it keeps running on the server: `cellar watch {job_id}` follows it "
        f"again, `cellar cancel {job_id}` cancels it"
    )
    return typer.Exit(130)


def report(job: dict[str, Any]) -> None:
    """The last line of a followed job; exit status 1 unless it succeeded."""
    console.print(f"job {job['id']} {job['status']}; {best_text(job)}", soft_wrap=True)
    if job.get("error"):
        err.print(job["error"], markup=False, highlight=False, soft_wrap=True)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@app.command()
def watch(job_id: JobArgument, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Follow a job until it ends: trials done, running trials and their epoch, best so far, ETA.
    Ctrl-C stops following; the job goes on. --json prints each event as a JSON line."""
    with connect(url) as client:
        try:
            job = client.job(job_id)
            if job["status"] not in FINISHED:
                job = follow(client, job, as_json=as_json)
            elif as_json:
                typer.echo(json.dumps({"event": "job", "data": job}))
        except CellarHTTPError as error:
            fail_http(error)
        except KeyboardInterrupt:
            raise stopped_following(job_id) from None
    if not as_json:
        report(job)
    elif job["status"] != "succeeded":
        raise typer.Exit(1)
