"""``cellar mcp``: Cellar's MCP tools over stdio, for agents that start their tools as processes."""

from __future__ import annotations

from ._common import UrlOption, app

__all__ = ["mcp"]


@app.command()
def mcp(url: UrlOption = None) -> None:
    """Serve Cellar's MCP tools over stdio (for Claude Desktop, IDE agents and the MCP SDK's
    clients), calling the server at --url / CELLAR_URL with the key in CELLAR_API_KEY (or
    .cellar-api-key). The same tools answer over HTTP at the server's /mcp."""
    from ..agents import ApiCaller, build_server
    from ..client import default_api_key, default_url

    build_server(ApiCaller(url or default_url(), default_api_key())).run()
