"""``cellar arch``: build an architecture without training it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ._common import JsonOption, app, console, err

__all__ = ["arch"]


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

    from ..settings import get_settings

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
