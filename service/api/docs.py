"""``/docs`` that works offline: Swagger UI served from an installed package.

FastAPI's own pages load their JavaScript from a CDN, so on a machine without internet they are
blank. The assets here come from the ``fastapi-offline`` package (Swagger UI 5, which reads
OpenAPI 3.1 as FastAPI writes it), served under ``/docs-assets`` by Cellar itself. ReDoc is not
served: its bundle loads its logo from its own CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "assets_dir", "install_docs"]

ASSETS_URL = "/docs-assets"


def assets_dir() -> Path:
    """The folder of the installed Swagger UI assets."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI, *, title: str) -> None:
    """Serve ``/docs`` (Swagger UI) with local assets. The app must be built with ``docs_url=None,
    redoc_url=None`` so that FastAPI's CDN pages are not registered."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            # no badge from validator.swagger.io: nothing leaves the machine
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
