"""The documentation: the MkDocs site under docs/ and the short README that points to it.

The site is built the way a reader gets it (``mkdocs build --strict`` with the repository's
mkdocs.yml), so a broken link or anchor, or a page left out of the navigation, fails here and not
in a reader's browser. A second build of a deliberately broken copy shows that the configuration
really catches those mistakes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MKDOCS_YML = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"
README_LIMIT = 10_000  # bytes: the README says what Cellar is and where to go; the rest is in docs/


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` with this interpreter's mkdocs; output captured for the message."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def nav_pages(nav: Any) -> set[str]:
    """Every page file named in a mkdocs ``nav`` (nested lists of ``{title: page or section}``)."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(nav_pages(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(nav_pages(value) for value in nav.values())) if nav else set()
    return set()


class _Assets(HTMLParser):
    """Collects what a page makes the browser load (scripts, stylesheets, images, frames, fonts),
    not the links a reader may follow."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "embed") and values.get("src"):
            self.loaded.append(values["src"] or "")
        if tag == "link" and values.get("href") and values.get("rel") not in ("canonical", "alternate"):
            self.loaded.append(values["href"] or "")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = mkdocs_build(MKDOCS_YML, site)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return site


def test_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in DOCS.rglob("*.md"):
        built = site / page.relative_to(DOCS).with_suffix(".html")
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built to {built.relative_to(site)}"


def test_every_page_is_in_the_nav() -> None:
    # mkdocs' validation.omitted_files makes this a strict-mode failure too; this names the page
    nav = nav_pages(yaml.safe_load(MKDOCS_YML.read_text())["nav"])
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages under docs/ missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page under docs/"


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    # the site is read offline too (from disk, or served on a machine without internet): no web
    # fonts, no CDN scripts
    remote: dict[str, set[str]] = {}
    for page in site.rglob("*.html"):
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        found = {url for url in parser.loaded if re.match(r"^(https?:)?//", url)}
        if found:
            remote[str(page.relative_to(site))] = found
    assert remote == {}, f"pages that load assets from the network: {remote}"


def test_strict_build_fails_on_a_broken_anchor_and_an_orphan_page(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(MKDOCS_YML, copy / "mkdocs.yml")
    shutil.copytree(DOCS, copy / "docs")
    with (copy / "docs" / "index.md").open("a") as page:
        page.write("\nSee [the API](http-api.md#no-such-heading).\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the nav\n")

    result = mkdocs_build(copy / "mkdocs.yml", tmp_path / "site")

    output = result.stdout + result.stderr
    assert result.returncode != 0, f"a broken build passed:\n{output}"
    assert "no-such-heading" in output
    assert "orphan.md" in output


def test_readme_is_short_and_names_the_two_commands() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size:,} bytes; keep it under {README_LIMIT:,} and move detail to docs/"
    text = README.read_text()
    assert "make run" in text and "make test" in text


def test_readme_links_resolve(site: Path) -> None:
    # the README is outside the site, so mkdocs does not check its links: each relative link must
    # name a page under docs/ and, with #anchor, a heading the built page has
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert relative, "the README links to no documentation page"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            built = site / target.relative_to(DOCS).with_suffix(".html")
            assert f'id="{anchor}"' in built.read_text(encoding="utf-8"), f"README links to {link}: no such heading"


def test_every_setting_is_documented() -> None:
    page = (DOCS / "deployment.md").read_text()
    missing = [f"CELLAR_{name.upper()}" for name in Settings.model_fields if f"`CELLAR_{name.upper()}`" not in page]
    assert missing == [], "settings missing from docs/deployment.md's configuration table"
