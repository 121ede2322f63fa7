"""The ``cellar`` command: one module per command group.

- ``server``: ``serve``, ``migrate``, ``downgrade``;
- ``jobs``: ``submit``, ``jobs``, ``trials``, ``cancel`` (a client of a running server);
- ``arch``: build an architecture without training it;
- ``tables``: ``table build|export|import|list``;
- ``lemur``: ``import-lemur``.
"""

from __future__ import annotations

from . import server, jobs, arch, tables, lemur  # noqa: F401  (each registers its commands on app)
from ._common import app

__all__ = ["app", "arch", "jobs", "lemur", "main", "server", "tables"]


def main() -> None:
    app()
