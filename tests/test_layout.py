"""The architecture as the tree shows it: packages, one-way dependencies, SQL in the store only,
modules and classes that fit in a reader's head, and the import paths users call."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "workers", "search_spaces")
#: about 500 lines a module and 300 a class (DESIGN.md); a little slack, not a loophole
MAX_MODULE_LINES = 520
MAX_CLASS_LINES = 310
#: SQLAlchemy's statement builders: only ``service/store`` writes SQL
SQL_BUILDERS = {"select", "update", "insert", "delete", "text", "func", "and_", "or_"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_and_classes_stay_small(package: str) -> None:
    too_long = []
    for path in _modules(package):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and (size := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES:  # type: ignore[operator]
                too_long.append(f"{path.relative_to(ROOT)}: class {node.name} {size} lines")
    assert not too_long, "split these: " + "; ".join(too_long)


def test_sql_is_written_in_the_store_only() -> None:
    offenders = []
    for path in _modules("service"):
        if path.is_relative_to(ROOT / "service" / "store"):
            continue
        for module, names in _imports(path):
            if module.startswith("sqlalchemy") and SQL_BUILDERS & set(names):
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(SQL_BUILDERS & set(names))} from {module}")
    assert not offenders, "move these statements into service/store: " + "; ".join(offenders)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("workers", ("service",)), ("search_spaces", ("service", "workers"))],
)
def test_dependencies_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    """service -> workers -> search_spaces, never back."""
    back = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _modules(package)
        for module, _ in _imports(path)
        if module.split(".")[0] in forbidden
    ]
    assert not back, "; ".join(back)


def test_the_server_never_imports_its_own_client() -> None:
    """The HTTP client (``service.client``, ``service.lemur.client``) is for users of a server."""
    client_modules = {"service.client", "service.lemur.client"}
    server_side = [p for p in _modules("service") if p.parts[-2] in ("api", "jobs", "store", "tabular", "strategies")]
    server_side += [ROOT / "service" / "lemur" / name for name in ("contract.py", "importer.py", "submissions.py")]
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in server_side
        for module, names in _imports(path)
        if module in client_modules or any(f"{module}.{name}" in client_modules for name in names)
    ]
    assert not offenders, "; ".join(offenders)


def test_the_api_process_starts_without_torch_or_the_client() -> None:
    code = (
        "import sys\n"
        "from service.api import create_app\n"
        "from service.jobs import JobManager\n"
        "import service.lemur.contract, service.store.data, service.tabular\n"
        "create_app()\n"
        "loaded = [m for m in ('torch', 'service.client', 'service.lemur.client', 'pandas') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the API process loaded {out.stdout.strip()}"


def test_the_import_paths_users_call_still_work() -> None:
    from service import lemur
    from service.client import CellarClient
    from service.lemur import ModelCheckError, check_nn, data

    assert callable(data) and callable(data.cache_clear) and callable(check_nn)
    assert issubclass(ModelCheckError, RuntimeError)
    assert CellarClient.__module__ == "service.client"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lemur.nothing  # noqa: B018
