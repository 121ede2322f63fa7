"""Unknown query parameters are errors, as unknown body fields are: ``?datset=digits`` is a 422
naming ``datset`` and the parameters the route takes, never a silently unfiltered answer."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

__all__ = ["reject_unknown_query_parameters"]


#: id(route) -> its query parameters (routes live as long as their app; starlette's are unhashable)
_KNOWN: dict[int, tuple[str, ...]] = {}


def _known(route: APIRoute) -> tuple[str, ...]:
    """The query parameters ``route`` takes, its dependencies' included, by the names clients send."""
    known = _KNOWN.get(id(route))
    if known is None:
        names: set[str] = set()

        def collect(dependant: Dependant) -> None:
            names.update(param.alias for param in dependant.query_params)
            for sub in dependant.dependencies:
                collect(sub)

        collect(route.dependant)
        known = _KNOWN[id(route)] = tuple(sorted(names))
    return known


async def reject_unknown_query_parameters(request: Request) -> None:
    """An app-wide dependency: a 422 in the shape of every validation error when the query holds a
    parameter the matched route does not take."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _known(route)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        allowed = ", ".join(known) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter {name!r}; this endpoint takes: {allowed}",
                    "type": "extra_forbidden",
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )
