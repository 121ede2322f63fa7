"""A simulated job's rows, written at once (``service.tabular.simulate``): bulk statements, no ORM objects."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Architecture, Job, Trial, TrialEpoch, signed_score

__all__ = ["architecture_ids", "write_job"]

_CHUNK = 500
#: the advisory lock simulations hold while they add architectures (PostgreSQL)
_ARCHITECTURES_LOCK = 0x63656C6C6172


def architecture_ids(
    session: Session,
    wanted: Mapping[str, Callable[[], dict[str, Any]]],
    measured: Mapping[str, tuple[int | None, int | None]],
) -> dict[str, tuple[int, str]]:
    """arch hash -> (architecture id, nn_name) for every hash in ``wanted``; a new one is inserted
    with the row its function gives. ``measured`` (params, FLOPs) fills an existing row that has none."""
    found: dict[str, tuple[int, str]] = {}
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # simulations written at once insert many of the same new networks: on PostgreSQL they
        # deadlocked on the unique index (seen with 20 jobs submitted together); their writes take
        # turns instead, till commit (each takes well under a second)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ARCHITECTURES_LOCK})
    hashes = sorted(wanted)
    query = select(Architecture.arch_hash, Architecture.architecture_id, Architecture.nn_name, Architecture.num_params)
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start : start + _CHUNK]
        for hashed, arch_id, nn_name, num_params in session.execute(query.where(Architecture.arch_hash.in_(chunk))):
            found[hashed] = (arch_id, nn_name)
            params, flops = measured.get(hashed, (None, None))
            if num_params is None and params is not None:
                session.execute(
                    update(Architecture).where(Architecture.architecture_id == arch_id).values(num_params=params, flops=flops)
                )
    new = [wanted[hashed]() for hashed in hashes if hashed not in found]
    if new:
        # another transaction may insert the same network meanwhile: its row is the one kept. The
        # table's insert, not the ORM's: the ORM batches rows by which values are None, out of order
        statement = (postgresql.insert if postgres else sqlite.insert)(Architecture.__table__)
        session.execute(statement.on_conflict_do_nothing(index_elements=["arch_hash"]), new)
        created = select(Architecture.arch_hash, Architecture.architecture_id, Architecture.nn_name)
        for start in range(0, len(new), _CHUNK):
            chunk = [row["arch_hash"] for row in new[start : start + _CHUNK]]
            for hashed, arch_id, nn_name in session.execute(created.where(Architecture.arch_hash.in_(chunk))):
                found[hashed] = (arch_id, nn_name)
    return found


def write_job(
    session: Session,
    job_id: int,
    *,
    trials: list[dict[str, Any]],
    epochs: Mapping[int, tuple[str, list[dict[str, Any]]]],
    duplicates: Mapping[int, int],
    status: str,
    error: str | None,
    started_at: datetime,
    finished_at: datetime | None,
    sampler_attrs: dict[str, Any] | None,
) -> None:
    """The job's ``trials`` (rows of ``cellar_trials`` without their ids), each trained trial's epoch
    rows (``epochs``: number -> (model name, epochs)), which trial duplicates which (numbers), and
    the job's end; its lease is given back."""
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} vanished from the store")
    if trials:
        session.execute(insert(Trial), [{**row, "job_id": job_id} for row in trials])
    ids = dict(session.execute(select(Trial.number, Trial.trial_id).where(Trial.job_id == job_id)).all())
    if duplicates:
        table = Trial.__table__
        statement = update(table).where(table.c.trial_id == bindparam("tid")).values(duplicate_of_trial_id=bindparam("orig"))
        session.execute(statement, [{"tid": ids[number], "orig": ids[original]} for number, original in duplicates.items()])
    rows = [
        {**epoch, "trial_id": ids[number], "task": job.task, "dataset": job.dataset, "metric": job.metric, "nn": nn,
         "score": signed_score(job.metric, epoch.get("val_metric"))}
        for number, (nn, trained) in epochs.items() for epoch in trained
    ]  # fmt: skip
    if rows:
        session.execute(insert(TrialEpoch), rows)
    job.status, job.error = status, error
    job.started_at = job.started_at or started_at
    job.finished_at = finished_at
    job.sampler_attrs = sampler_attrs or None
    job.lease_owner, job.lease_expires_at = None, None
