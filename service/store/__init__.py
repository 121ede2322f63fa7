"""The store: SQLAlchemy models, sessions, migrations and the queries beside them."""

from ._store import Store
from .migrate import VERSION_TABLE, check_schema, current_revision, downgrade, head_revision, upgrade
from .models import Architecture, Base, Job, JobStatus, Source, Trial, TrialEpoch, TrialState

__all__ = [
    "VERSION_TABLE",
    "Architecture",
    "Base",
    "Job",
    "JobStatus",
    "Source",
    "Store",
    "Trial",
    "TrialEpoch",
    "TrialState",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
