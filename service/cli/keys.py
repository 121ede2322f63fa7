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
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a key and print it: it is shown this once, the server keeps only its hash."""
    if scope not in SCOPES:
        err.print(f"[red]error:[/red] --scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        raise typer.Exit(2)
    with connect(url) as client:
        try:
            created = client.create_key(name, [scope])
        except CellarHTTPError as error:
            fail_http(error)
    if as_json:
        typer.echo(json.dumps(created, indent=2))
        return
    err.print(f"key {created['id']} {created['name']!r} ({', '.join(created['scopes'])}); shown once, store it now:")
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
