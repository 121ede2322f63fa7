"""The store: SQLAlchemy models, sessions, migrations and the queries beside them."""

from ._store import Store
from .migrate import VERSION_TABLE, check_schema, current_revision, downgrade, head_revision, upgrade
from .models import Architecture, Base, Job, JobStatus, NnStat, Source, Trial, TrialEpoch, TrialState, signed_score, utcnow

# imported here so that Base.metadata (models = migrations, Alembic) always holds the tables too
from .queue import QueuedModel, SubmissionStatus
from .keys import ApiKey
from .tabular import TabularResult, TabularTable

__all__ = [
    "VERSION_TABLE",
    "ApiKey",
    "Architecture",
    "Base",
    "Job",
    "JobStatus",
    "NnStat",
    "QueuedModel",
    "Source",
    "Store",
    "SubmissionStatus",
    "TabularResult",
    "TabularTable",
    "Trial",
    "TrialEpoch",
    "TrialState",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "signed_score",
    "upgrade",
    "utcnow",
]
