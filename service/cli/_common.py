"""What every command shares: the consoles, the common options, and how errors are printed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..client import CellarClient, CellarHTTPError

__all__ = [
    "DatabaseOption",
    "JobArgument",
    "JsonOption",
    "NumberArgument",
    "UrlOption",
    "app",
    "connect",
    "console",
    "err",
    "fail",
    "fail_http",
    "fmt",
    "open_store",
]

app = typer.Typer(help="Cellar: neural architecture search as a service.", no_args_is_help=True)
# piped output keeps whole arch strings instead of cutting tables at 80 columns
console = Console() if sys.stdout.isatty() else Console(width=400)
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
JobArgument = Annotated[int, typer.Argument(help="job id")]
NumberArgument = Annotated[int, typer.Argument(help="the trial's number in the job (the # of `cellar trials`)")]
UrlOption = Annotated[str | None, typer.Option("--url", help="server URL (default $CELLAR_URL or http://127.0.0.1:8000)")]
DatabaseOption = Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL of the store")]


def connect(url: str | None) -> CellarClient:
    return CellarClient(url)


def fail_http(error: CellarHTTPError) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(error.message)}", soft_wrap=True)
    raise typer.Exit(1)


def fail(error: Exception | str) -> NoReturn:
    # unwrapped and without markup: messages quote arch strings and file lines verbatim
    err.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(1) from None


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        # counts that travel as floats (an objective such as params) print as the integers they are
        return str(int(value)) if value.is_integer() and abs(value) >= 1000 else f"{value:.{digits}f}"
    return str(value)


def open_store(url: str, *, migrate: bool) -> Any:
    """The store at ``url``; with ``migrate`` false it must exist at the current schema."""
    from ..errors import StoreError
    from ..store import Store, check_schema

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not migrate and not path.exists():
            fail(StoreError(f"no store at {path}; give --database, or create it with `cellar migrate`"))
        path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(url)
    if not migrate:
        check_schema(store)
    return store
