"""``cellar keys create|list|revoke``: API keys, issued by a running server to an admin key."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..client import CellarHTTPError
from ._common import JsonOption, UrlOption, app, connect, console, err, fail_http, fmt

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="API keys: issue scoped keys (read, submit, admin), list and revoke them (needs an admin key).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

SCOPES = ("read", "submit", "admin")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. ci or alice")],
    scope: Annotated[
        str, typer.Option("--scope", help="read, submit or admin (admin includes submit, which includes read)")
    ] = "submit",
    rate: Annotated[
        int | None, typer.Option("--rate", min=0, help="its requests per minute (CELLAR_KEY_RATE_LIMIT)")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", min=0, help="its queued and running jobs at once (CELLAR_KEY_MAX_ACTIVE_JOBS)"),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option("--trials", min=0, help="its largest max_trials of a job (CELLAR_KEY_MAX_TRIALS_PER_JOB)"),
    ] = None,
    models_per_hour: Annotated[
        int | None,
        typer.Option("--models-per-hour", min=0, help="models it may submit per hour (CELLAR_KEY_MAX_MODELS_PER_HOUR)"),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a key and print it: it is shown this once, the server keeps only its hash. --rate,
    --jobs, --trials and --models-per-hour give it limits of its own (0: unlimited); the others
    follow the server's CELLAR_KEY_* settings."""
    if scope not in SCOPES:
        err.print(f"[red]error:[/red] --scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        raise typer.Exit(2)
    limits = {
        name: value
        for name, value in (("rate_limit", rate), ("max_active_jobs", jobs), ("max_trials_per_job", trials),
                            ("max_models_per_hour", models_per_hour))
        if value is not None
    }  # fmt: skip
    with connect(url) as client:
        try:
            created = client.create_key(name, [scope], limits)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(created, indent=2))
        return
    own = ", ".join(f"{k}={v}" for k, v in created.get("limits", {}).items() if v is not None)
    err.print(
        f"key {created['id']} {created['name']!r} ({', '.join(created['scopes'])}{'; ' + own if own else ''}); "
        "shown once, store it now:"
    )
    typer.echo(created["key"])


@keys_app.command("list")
def keys_list(
    revoked: Annotated[bool, typer.Option("--revoked/--active", help="include revoked keys, or only active ones")] = True,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The issued keys, without their secrets."""
    with connect(url) as client:
        try:
            rows = client.keys(revoked=revoked)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "scopes", "created", "last used", "revoked")
    for key in rows:
        table.add_row(
            str(key["id"]), key["name"], ",".join(key["scopes"]), key["created_at"][:19],
            fmt(key["last_used_at"] and key["last_used_at"][:19]), fmt(key["revoked_at"] and key["revoked_at"][:19]),
        )  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help="the key's id (cellar_<id>_..., or `cellar keys list`)")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: the server refuses it from the next request on."""
    with connect(url) as client:
        try:
            key = client.revoke_key(key_id)
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(key, indent=2))
    else:
        console.print(f"key {key['id']} {key['name']!r} revoked")
