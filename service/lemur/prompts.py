"""Few-shot examples for code-generating models: the best distinct models, their code compacted."""

from __future__ import annotations

import ast

__all__ = ["compact_code"]


def _strip_docstrings(tree: ast.AST) -> None:
    """Drop every statement that is only a string (docstrings, and strings used as comments)."""
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = [
                stmt
                for stmt in body
                if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str))
            ]
            setattr(node, field, kept or ([ast.Pass()] if field == "body" else []))


def compact_code(source: str) -> str:
    """The same program without comments, docstrings and blank lines (what a prompt needs).

    Parsed and written back with ``ast``, so the result compiles to the same program; source that
    does not parse keeps its lines, less blank lines and whole-line comments.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        lines = [line.rstrip() for line in source.splitlines()]
        return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    _strip_docstrings(tree)
    # ``ast.unparse`` writes every remaining string on one line (repr), so a blank line is never
    # inside a string: dropping them all keeps the program
    return "\n".join(line for line in ast.unparse(tree).splitlines() if line.strip())
