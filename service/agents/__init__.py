"""Cellar for agents: an MCP server (the MCP Python SDK) whose tools are Cellar's API.

``cellar mcp`` serves the tools over stdio against a running server; ``cellar serve`` serves the same
tools over streamable HTTP at ``/mcp``. Either way each tool is one or two calls of the HTTP API
(``tools.build_server`` takes the caller), so the tools say and check what the API says and checks.
"""

from __future__ import annotations

from .tools import ApiCaller, build_server

__all__ = ["ApiCaller", "build_server"]
