"""Which jobs changed since a mark: the notes that migration 0015's triggers write.

``Store.version()`` says that something changed; these notes say which jobs. Every insert, update
and delete of a job, its trials, their epochs (and, as "every job", an architecture's update or
delete) is noted by a trigger in the writing transaction itself, whoever writes it: the ORM, a Core
statement, another process.

A mark stands for what a reader has seen:
- SQLite: the largest ``seq`` it has read (writers commit one at a time, so a later commit has a
  larger ``seq``).
- PostgreSQL: a snapshot (``pg_current_snapshot()``, the store's version); a note is news to it
  when the snapshot does not see the note's transaction. Notes older than what any reader may still
  ask about are pruned (``PRUNE_SQL``, at most once a minute); a mark older than the pruning
  horizon is answered "every job".
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = [
    "ALL", "NOTES_TABLES", "PG_CHANGED_SQL", "PRUNE_SQL", "SQLITE_MARK_SQL", "TRIGGERS", "include_name", "missing_triggers",
    "sqlite_changed",
]  # fmt: skip

#: the job id that stands for every job
ALL = 0
#: the notes' tables: written by the triggers alone, with no model (their columns differ by database)
NOTES_TABLES = frozenset({"cellar_changes", "cellar_changes_horizon"})


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: the notes' tables are left out of comparisons with the models."""
    return not (type_ == "table" and name in NOTES_TABLES)


_TABLES = {
    "cellar_jobs": ("insert", "update", "delete"),
    "cellar_trials": ("insert", "update", "delete"),
    "cellar_trial_epochs": ("insert", "update", "delete"),
    "cellar_architectures": ("update", "delete"),
}
#: the triggers that write the notes: without all of them the notes cannot be trusted
TRIGGERS = frozenset(f"{table}_{event}_changes" for table, events in _TABLES.items() for event in events)

#: (the jobs noted since snapshot %(mark)s, whether the mark is older than the pruning horizon)
PG_CHANGED_SQL = (
    "SELECT coalesce((SELECT array_agg(DISTINCT job_id) FROM cellar_changes "
    "WHERE xid >= pg_snapshot_xmin(%(mark)s::pg_snapshot) AND NOT pg_visible_in_snapshot(xid, %(mark)s::pg_snapshot)), "
    "'{}'), (SELECT horizon > pg_snapshot_xmin(%(mark)s::pg_snapshot) FROM cellar_changes_horizon)"
)
SQLITE_MARK_SQL = "SELECT coalesce(max(seq), 0) FROM cellar_changes"
#: notes older than the oldest transaction running at the last pruning go (readers whose mark is
#: older than that are answered "every job"); at most once a minute, whichever reader asks
PRUNE_SQL = (
    "WITH moved AS (UPDATE cellar_changes_horizon SET horizon = pending, "
    "pending = pg_snapshot_xmin(pg_current_snapshot()), pruned_at = now() "
    "WHERE pruned_at < now() - interval '60 seconds' RETURNING horizon) "
    "DELETE FROM cellar_changes WHERE xid < (SELECT horizon FROM moved)"
)


def missing_triggers(session: Session) -> set[str]:
    """The triggers that write the notes and that the store lacks (none at the head revision)."""
    names = ", ".join(f"'{name}'" for name in sorted(TRIGGERS))
    if session.get_bind().dialect.name == "sqlite":
        sql = f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND name IN ({names})"
    else:
        sql = f"SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname IN ({names})"
    return set(TRIGGERS - set(session.execute(text(sql)).scalars()))


def sqlite_changed(connection: sqlite3.Connection, mark: int) -> tuple[set[int], int]:
    """(the jobs noted after ``mark``, the new mark), in one statement (one snapshot)."""
    rows = connection.execute("SELECT job_id, seq FROM cellar_changes WHERE seq > ?", (mark,)).fetchall()
    return {job for job, _ in rows}, max((seq for _, seq in rows), default=mark)
