"""Turn model source (``nn_code``) into a module, with tracebacks that show its lines."""

from __future__ import annotations

import linecache
import types

__all__ = ["load_nn_module"]


def load_nn_module(code: str, name: str) -> types.ModuleType:
    """Execute ``code`` as a fresh module named after ``name``; errors point into the code."""
    filename = f"<nn_code {name}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    module = types.ModuleType(f"cellar_nn_{name.replace('-', '_')}")
    module.__file__ = filename
    exec(compile(code, filename, "exec"), module.__dict__)  # noqa: S102 - running model code is the job
    return module
