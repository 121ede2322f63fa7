"""``/docs`` renders in a browser with the network off."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import LocalServer, screenshot


def test_swagger_ui_renders_every_route_offline(offline_page: tuple[Any, list[str], list[str]], api: LocalServer) -> None:
    page, refused, errors = offline_page
    page.goto(f"{api.url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    for path in ("/v1/jobs", "/v1/jobs/{job_id}/trials/{number}", "/v1/data", "/healthz"):
        assert any(p.replace("\u200b", "") == path for p in paths), (path, paths)
    assert "Cellar" in page.locator(".info .title").inner_text()
    # an operation opens, with its error answers listed
    page.locator(".opblock-summary-path", has_text="/v1/jobs/{job_id}/cancel").first.click()
    page.wait_for_selector(".responses-table", timeout=10_000)
    codes = set(page.locator(".responses-table .response-col_status").all_inner_texts())
    assert {"401", "404", "409", "422"} <= {c.strip() for c in codes}, codes
    screenshot(page, "api-docs-swagger")
    assert refused == [], f"the page asked for {refused}"
    assert errors == [], errors


def test_redoc_is_not_served_half_offline(api: LocalServer) -> None:
    import httpx

    # FastAPI's /redoc loads its script from a CDN, and ReDoc's bundle its logo: not offered
    assert httpx.get(f"{api.url}/redoc").status_code == 404
