"""Results tables: the per-epoch results of an exhaustively trained search space, looked up by the
tabular executor instead of training (NAS-Bench-201's benchmark protocol).

A table has one ``TabularTable`` row (its name and the training protocol every cell shared) and
one ``TabularResult`` row per architecture. Isomorphic architectures are trained once; each of
them still has its own row, carrying the trained original's curve and test metric (``original``
names it), and its own parameter count and FLOPs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, utcnow

__all__ = ["TabularResult", "TabularTable"]


class TabularTable(Base):
    """A results table: what was trained and how (the header of an exported table)."""

    __tablename__ = "cellar_tabular_tables"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    search_space: Mapped[str] = mapped_column(String(32))
    space_params: Mapped[dict[str, Any]]
    dataset: Mapped[str] = mapped_column(String(100))
    #: the dataset's metric (LEMUR's name: ``acc``, ``rmse``)
    metric: Mapped[str] = mapped_column(String(32))
    epochs: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    #: LEMUR's ``prm`` every cell was trained with, the split (fractions, seed, sizes, sha256)
    training: Mapped[dict[str, Any]]
    cellar_version: Mapped[str] = mapped_column(String(32))
    #: where the rows came from: ``build`` (this store's job) or the file they were imported from
    origin: Mapped[str] = mapped_column(Text)
    #: a third-party benchmark's table: the package, version and file the numbers were read from,
    #: what the source holds and leaves out (``service.tabular.sources``); None for Cellar's own
    source: Mapped[dict[str, Any] | None]
    #: the cells' curves hold only the last epoch (the source recorded no per-epoch results)
    final_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TabularResult(Base):
    """One architecture's recorded results in a table."""

    __tablename__ = "cellar_tabular_results"

    result_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_name: Mapped[str] = mapped_column(ForeignKey("cellar_tabular_tables.name", ondelete="CASCADE"), index=True)
    search_space: Mapped[str] = mapped_column(String(32))
    space_params: Mapped[dict[str, Any]]
    dataset: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(32))
    #: the architecture's canonical encoding
    arch: Mapped[str] = mapped_column(Text)
    #: the isomorphism class (``service.jobs.identity.dedup_hash``); equal for equivalent architectures
    dedup_hash: Mapped[str] = mapped_column(String(64))
    #: the encoding that was trained for this class (``arch`` itself, or an isomorphic twin)
    original: Mapped[str] = mapped_column(Text)
    params: Mapped[int] = mapped_column(BigInteger)
    flops: Mapped[int | None] = mapped_column(BigInteger)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    #: per epoch: ``{"epoch", "loss", "val_loss", "val_metric", "elapsed_seconds"}`` (cumulative
    #: training seconds), epochs counting from 1
    curve: Mapped[list[Any]]
    #: None where the source holds no test metric
    test_metric: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float] = mapped_column(Float)
    #: the final validation metric of each training seed, where the source trained several; a job
    #: with ``training.seed`` s reads seed ``s mod len``, the curve holds their mean
    seed_metrics: Mapped[list[Any] | None]
    #: source-specific values of the cell (e.g. the source's own parameter count)
    extra: Mapped[dict[str, Any] | None]

    __table_args__ = (UniqueConstraint("table_name", "arch"),)
