"""The ``cellar`` command: one module per command group.

- ``server``: ``serve``, ``migrate``, ``downgrade``;
- ``jobs``: ``submit``, ``jobs``, ``trials``, ``trial``, ``cancel`` (a client of a running server);
- ``follow``: ``watch`` (and ``submit --follow``): a job's progress from its event stream;
- ``results``: ``pareto``, ``export``, ``best``, ``weights``: what a job found;
- ``arch``: build an architecture without training it;
- ``tables``: ``table build|export|import|list``;
- ``lemur``: ``import-lemur``;
- ``agents``: ``mcp``, the MCP tools over stdio;
- ``keys``: ``keys create|list|revoke``, API keys (a client of a running server).
"""

from __future__ import annotations

from . import server, jobs, follow, results, arch, tables, lemur, agents, keys  # noqa: F401  (each registers its commands on app)
from ._common import app

__all__ = ["agents", "app", "arch", "follow", "jobs", "keys", "lemur", "main", "results", "server", "tables"]


def main() -> None:
    app()
