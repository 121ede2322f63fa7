"""Assemble standalone model source (``nn_code``) from Cellar's template modules, without importing them.

A template is an ordinary Python module that imports only torch and the standard library, except
for imports of Cellar modules marked ``# cellar: inline``: those are replaced by the imported
module's code, so the result is one file a user (or LEMUR) can run alone. A template may hold a
block between ``# cellar: architecture`` and ``# cellar: end architecture`` that the generator
replaces with the candidate's constants.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

__all__ = ["assemble", "module_source"]

_INLINE = "# cellar: inline"
_BLOCK_START = "# cellar: architecture"
_BLOCK_END = "# cellar: end architecture"
#: where a template's architecture block goes in its assembled frame (a comment: it parses)
_SLOT = "# cellar: the architecture block goes here"


def module_source(module: str) -> str:
    """The text of a module's file, found without executing the module itself."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no source for module {module!r}")
    return Path(spec.origin).read_text(encoding="utf-8")


def _split(source: str) -> tuple[str, list[str], list[str], list[str]]:
    """Return (docstring, plain import lines, modules to inline, remaining lines) of a module."""
    lines = source.splitlines()
    tree = ast.parse(source)
    drop: set[int] = set()
    docstring = ""
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        docstring = "\n".join(lines[first.lineno - 1 : first.end_lineno])
        drop.update(range(first.lineno - 1, first.end_lineno or first.lineno))
    imports: list[str] = []
    inline: list[str] = []
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        span = range(node.lineno - 1, node.end_lineno or node.lineno)
        drop.update(span)
        text = "\n".join(lines[i] for i in span)
        if _INLINE in text:
            if not isinstance(node, ast.ImportFrom) or not node.module:
                raise ValueError(f"only 'from module import ...' can be inlined: {text!r}")
            inline.append(node.module)
        elif not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            imports.append(text)
    body = [line for i, line in enumerate(lines) if i not in drop]
    return docstring, imports, inline, body


def _collect(module_text: str, imports: list[str], bodies: list[str], seen: set[str]) -> str:
    """Add a module's imports and code (after those of the modules it inlines); return its docstring."""
    docstring, plain, inline, body = _split(module_text)
    for line in plain:
        if line not in imports:
            imports.append(line)
    for module in inline:
        if module not in seen:
            seen.add(module)
            _collect(module_source(module), imports, bodies, seen)
    bodies.append("\n".join(body).strip("\n"))
    return docstring


def _replace_block(text: str, block: str) -> str:
    start, end = text.find(_BLOCK_START), text.find(_BLOCK_END)
    if start < 0 or end < start:
        raise ValueError("template has no '# cellar: architecture' ... '# cellar: end architecture' block")
    return text[:start] + block.rstrip("\n") + "\n" + text[end + len(_BLOCK_END) :].lstrip(" ")


@functools.lru_cache(maxsize=32)
def _frame(template_module: str) -> str:
    """The template assembled once (its file read and parsed, its inlined modules gathered), with
    ``_SLOT`` where the architecture block goes: generating a candidate's code is then a string
    substitution, not a parse of every module (it runs for every trial a job asks)."""
    template = _replace_block(module_source(template_module), _SLOT)
    imports: list[str] = []
    bodies: list[str] = []
    docstring = _collect(template, imports, bodies, {template_module})
    parts = [docstring, "\n".join(imports), *bodies]
    frame = "\n\n\n".join(p for p in parts if p) + "\n"
    if frame.count(_SLOT) != 1:
        raise ValueError(f"template {template_module!r}: its architecture block must be top-level code")
    return frame


def assemble(template_module: str, architecture_block: str, header: str = "") -> str:
    """One standalone source file: ``header``, hoisted imports, inlined modules, then the template
    with its architecture block replaced by ``architecture_block`` (which must not import)."""
    text = _frame(template_module).replace(_SLOT, architecture_block.rstrip("\n"), 1)
    if header.strip("\n"):
        text = header.strip("\n") + "\n\n\n" + text
    return re.sub(r"\n{4,}", "\n\n\n", text)
