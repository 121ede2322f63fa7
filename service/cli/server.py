"""``cellar serve``, ``cellar migrate``, ``cellar downgrade``: the server and its store."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Annotated

import typer

from ._common import app, console, err

__all__ = ["downgrade", "migrate", "serve"]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the API and the job manager (starting a local Ray unless CELLAR_RAY_ADDRESS is set).

    SIGTERM or Ctrl-C stops it within seconds: event streams end, the job manager hands its jobs
    back (the next server resumes them at once) and the local Ray stops with it."""
    # Before anything imports Ray, which reads it once, at import: Ray's C++ failure handler would
    # otherwise catch SIGTERM, print a stack and abort the process 3 s later, whatever the stop is
    # doing then (workers.ray_executor sets it too, for other drivers).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    import uvicorn

    from ..api import create_app
    from ..api.shutdown import CellarServer
    from ..errors import StoreError
    from ..settings import get_settings
    from ..store import Store, check_schema

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
    # the port first: a busy one must not cost a Ray start (uvicorn binds after the app started)
    listening = _listen(host, port)
    if settings.api_key is None:
        settings.resolved_api_key()
        err.print(f"API key: in {settings.api_key_file.resolve()}; for curl:", soft_wrap=True)
        err.print(f"  export CELLAR_API_KEY=$(cat {settings.api_key_file})", soft_wrap=True, markup=False, highlight=False)
    api = create_app(settings)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level=log_level.lower(),
        # a backstop: responses still open this long after a stop began are cancelled
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = CellarServer(config, api.state.shutdown)
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C it handled again, once it has stopped
        pass
    if not server.started:
        raise typer.Exit(3)  # uvicorn's STARTUP_FAILURE


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (as uvicorn binds it), or a clear error and exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        err.print(
            f"[red]error:[/red] cannot listen on {host}:{port}: {error.strerror or error}. Another server "
            f"(perhaps another `cellar serve`) uses the port: stop it, or choose another with --port",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    listening.set_inheritable(True)
    return listening


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Create or upgrade the store's tables (CELLAR_DATABASE_URL)."""
    from ..errors import StoreError
    from ..settings import get_settings
    from ..store import Store, current_revision, upgrade

    store = Store(get_settings().database_url)
    try:
        upgrade(store, revision)
        _say_revision(store, current_revision(store), as_json)
    except StoreError as error:
        err.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    finally:
        store.dispose()


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, 'base' drops every Cellar table")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Take the store's schema down to REVISION."""
    from ..settings import get_settings
    from ..store import Store, current_revision
    from ..store import downgrade as do_downgrade

    store = Store(get_settings().database_url)
    try:
        do_downgrade(store, revision)
        _say_revision(store, current_revision(store), as_json)
    finally:
        store.dispose()


def _say_revision(store: object, revision: str | None, as_json: bool) -> None:
    url = store.display_url  # type: ignore[attr-defined]
    if as_json:
        typer.echo(json.dumps({"store": url, "revision": revision}))
    else:
        console.print(f"store {url} at revision {revision}")
