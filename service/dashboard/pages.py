"""The dashboard's routes: its three pages, its own static files and plotly's bundle."""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path

from fastapi import FastAPI, Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from typing import Annotated

from .. import __version__

__all__ = ["STATIC_URL", "install_dashboard", "plotly_bundle"]

HERE = Path(__file__).parent
STATIC_URL = "/ui"

#: page -> (title, script); every page is the layout around its fragment in ``pages/``
PAGES = {"jobs": "Jobs", "job": "Job", "data": "Data"}


def plotly_bundle() -> Path:
    """plotly.js as the ``plotly`` package ships it (one minified file, no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@cache
def render(page: str) -> str:
    layout = (HERE / "pages" / "layout.html").read_text()
    body = (HERE / "pages" / f"{page}.html").read_text()
    return (
        layout.replace("{{title}}", escape(PAGES[page]))
        .replace("{{page}}", page)
        .replace("{{version}}", escape(__version__))
        .replace("{{static}}", STATIC_URL)
        .replace("{{body}}", body)
    )


def install_dashboard(app: FastAPI) -> None:
    """Serve the pages and their assets (not part of the OpenAPI document: they are not API)."""
    app.mount(f"{STATIC_URL}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.get(f"{STATIC_URL}/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(plotly_bundle(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/", include_in_schema=False)
    def jobs_page() -> HTMLResponse:
        return HTMLResponse(render("jobs"))

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(job_id: Annotated[int, PathParam(ge=1)]) -> HTMLResponse:
        return HTMLResponse(render("job"))

    @app.get("/data", include_in_schema=False)
    def data_page() -> HTMLResponse:
        return HTMLResponse(render("data"))
