"""Which jobs changed: triggers on the jobs, trials, epochs and architectures note every change

The API keeps answers until the store changes (``service.api.cache``); with these notes a change to
one job drops only that job's answers. Triggers see every writer (the ORM, Core statements, other
processes), so no write can forget to say what it changed.

- SQLite (one writer at a time, so commits are ordered): ``cellar_changes`` holds one row per job,
  ``seq`` the store-wide number of its last change (a row trigger: ``max(seq) + 1``).
- PostgreSQL (concurrent writers, commits not in any order a number could give): ``cellar_changes``
  holds ``(job_id, xid)`` for each transaction that changed the job, inserted by row triggers with
  ``ON CONFLICT DO NOTHING``: two transactions never write the same row, so the notes take no lock
  another transaction waits for. A reader asks which notes
  its snapshot does not see (``pg_visible_in_snapshot``). Readers prune old notes and record below
  which transaction id they did in ``cellar_changes_horizon``.

Job 0 stands for every job: a change to an architecture (shared by the trials of many jobs).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: (table, how a changed row names its job) for the tables that make up a job's answers
_TABLES = (
    ("cellar_jobs", "job_id"),
    ("cellar_trials", "job_id"),
    ("cellar_trial_epochs", "trial"),  # through its trial
    ("cellar_architectures", "all"),  # updates and deletes only: a new one changes nothing until a trial names it
)
_EVENTS = ("INSERT", "UPDATE", "DELETE")


def _events(table: str) -> tuple[str, ...]:
    return ("UPDATE", "DELETE") if table == "cellar_architectures" else _EVENTS


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()
    else:
        _postgres_upgrade()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, _ in _TABLES:
        for event in _events(table):
            name = f"{table}_{event.lower()}_changes"
            op.execute(f"DROP TRIGGER IF EXISTS {name}" if sqlite else f"DROP TRIGGER IF EXISTS {name} ON {table}")
    if not sqlite:
        for kind in ("job_id", "trial", "all"):
            op.execute(f"DROP FUNCTION IF EXISTS cellar_note_changes_{kind}()")
        op.execute("DROP TABLE cellar_changes_horizon")
    op.execute("DROP TABLE cellar_changes")


def _sqlite_upgrade() -> None:
    op.execute("CREATE TABLE cellar_changes (job_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
    op.execute("CREATE INDEX ix_cellar_changes_seq ON cellar_changes (seq)")
    next_seq = "(SELECT coalesce(max(seq), 0) + 1 FROM cellar_changes)"
    for table, names in _TABLES:
        for event in _events(table):
            row = "OLD" if event == "DELETE" else "NEW"
            if names == "job_id":
                source = f"SELECT {row}.job_id, {next_seq} WHERE true"
            elif names == "trial":
                source = f"SELECT job_id, {next_seq} FROM cellar_trials WHERE trial_id = {row}.trial_id"
            else:
                source = f"SELECT 0, {next_seq} WHERE true"
            op.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_changes AFTER {event} ON {table} BEGIN "
                f"INSERT INTO cellar_changes (job_id, seq) {source} "
                "ON CONFLICT (job_id) DO UPDATE SET seq = excluded.seq; END"
            )


def _postgres_upgrade() -> None:
    op.execute(
        "CREATE TABLE cellar_changes (job_id integer NOT NULL, xid xid8 NOT NULL, PRIMARY KEY (job_id, xid))"
    )
    op.execute("CREATE INDEX ix_cellar_changes_xid ON cellar_changes (xid)")
    op.execute(
        "CREATE TABLE cellar_changes_horizon (id integer PRIMARY KEY, horizon xid8 NOT NULL, "
        "pending xid8 NOT NULL, pruned_at timestamptz NOT NULL)"
    )
    op.execute("INSERT INTO cellar_changes_horizon VALUES (1, '0', '0', now())")
    # a row trigger, with the last job (or trial) it noted in this transaction kept in a setting
    # local to the transaction: rows written one after the other for the same job (an epoch per
    # row, executemany sends a statement per row) cost one comparison each after the first
    sources = {
        "job_id": ("cellar.noted_job", "job_id", "SELECT r.job_id"),
        "trial": ("cellar.noted_trial", "trial_id", "SELECT job_id FROM cellar_trials WHERE trial_id = r.trial_id"),
        "all": ("cellar.noted_all", "0", "SELECT 0"),
    }
    for kind, (setting, key, source) in sources.items():
        this = "'0'" if kind == "all" else f"r.{key}::text"
        op.execute(
            f"CREATE FUNCTION cellar_note_changes_{kind}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "DECLARE r record; mark text; BEGIN "
            "IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF; "
            f"mark := {this} || '@' || pg_current_xact_id()::text; "
            f"IF current_setting('{setting}', true) = mark THEN RETURN NULL; END IF; "
            f"INSERT INTO cellar_changes (job_id, xid) SELECT s.job_id, pg_current_xact_id() FROM ({source}) AS s(job_id) "
            "WHERE s.job_id IS NOT NULL ON CONFLICT DO NOTHING; "
            f"PERFORM set_config('{setting}', mark, true); RETURN NULL; END $$"
        )
    for table, kind in _TABLES:
        for event in _events(table):
            op.execute(
                f"CREATE TRIGGER {table}_{event.lower()}_changes AFTER {event} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION cellar_note_changes_{kind}()"
            )
