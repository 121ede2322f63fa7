"""Checks on generated model source shared by the space tests."""

from __future__ import annotations

import ast


def imported_packages(code: str) -> set[str]:
    """The top-level packages ``code`` imports anywhere in it."""
    packages: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            packages.add((node.module or "").split(".")[0])
    return packages
