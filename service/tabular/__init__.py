"""Results tables: a space trained exhaustively once, then searched in simulation.

- ``build``: train every cell through the normal job path (``cellar table build``), resumable.
- ``files``: export and import tables as compressed JSON lines (``cellar table export/import``).
- ``load``: list the tables in a store and load one for ``workers.tabular_executor``.
"""

from ..errors import TabularTableError
from .build import BuildConfig, BuildProgress, build_progress, build_table, default_build_url, materialize
from .files import FORMAT, export_table, import_table
from .load import list_tables, load_table

__all__ = [
    "FORMAT",
    "BuildConfig",
    "BuildProgress",
    "TabularTableError",
    "build_progress",
    "build_table",
    "default_build_url",
    "export_table",
    "import_table",
    "list_tables",
    "load_table",
    "materialize",
]
