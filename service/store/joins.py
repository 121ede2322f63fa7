"""LEMUR's ``data(sql=JoinConf(...))``: models joined to other models, on the rows ``data()`` chooses.

Three modes, chosen as LEMUR chooses them:

- **pairs** (``same_columns``/``diff_columns``/``enhance_nn``, or ``num_joint_nns`` 1): every row in
  random order, each with the first rows (in that same order) that share its ``same_columns``,
  differ in its ``diff_columns`` and, with ``enhance_nn``, score better. LEMUR joins one partner
  (``nn_2``, ...); Cellar joins ``num_joint_nns - 1`` distinct ones (LEMUR raises a ``KeyError``
  beyond two).
- **top** (``num_joint_nns`` > 1 and no columns): the ``num_joint_nns`` best models, each at its
  best row (earliest epoch among ties), ordered by score (models tied on it by name, as LEMUR's rows
  come).
- **anchor** (``similarity_mode="anchor_band_db_minhash"``): models whose code is similar to an
  anchor model's, within a band of the MinHash Jaccard estimate (``service.lemur.similarity``):
  each model at its best row, best first, ``num_joint_nns * overfetch_factor`` of them. Without
  ``anchor_nn``, the anchor is the first of the 50 best models with at least ``num_joint_nns``
  neighbours in the band (then in each lower band in turn); the rows are always those of the
  requested band, as in LEMUR.

"Better" and "best" follow the metric's direction (``score``), where LEMUR compares raw values.
Rows are chosen on the epoch table's keys in Python (a few columns per row), then only the chosen
rows and their partners are read in full.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..lemur.similarity import SIM_BANDS, band_range, code_signature, jaccard
from ._store import Store
from .data import DataQuery, chosen_keys, rows_at
from .models import Architecture, Trial

__all__ = ["JOIN_COLUMNS", "JoinAnswer", "JoinSpec", "join_rows"]

#: the columns ``same_columns`` and ``diff_columns`` may name (LEMUR's ``main_columns_ext``)
JOIN_COLUMNS = ("task", "dataset", "metric", "nn", "epoch")
#: candidate anchors tried without ``anchor_nn`` (LEMUR's)
ANCHOR_TRIALS = 50
_FIELD = {"trial_id": 0, "epoch": 1, "task": 2, "dataset": 3, "metric": 4, "nn": 5, "score": 6}


@dataclass(frozen=True)
class JoinSpec:
    """LEMUR's ``JoinConf`` (validated by the API's schema), and ``seed`` for a repeatable order."""

    num_joint_nns: int
    same_columns: tuple[str, ...] = ()
    diff_columns: tuple[str, ...] = ()
    enhance_nn: bool = False
    task: str | None = None
    dataset: str | None = None
    metric: str | None = None
    similarity_mode: str = "none"
    anchor_nn: str | None = None
    similarity_band: str | None = None
    min_arch_jaccard: float = 0.0
    max_arch_jaccard: float = 1.0
    overfetch_factor: int = 10
    seed: int | None = None

    @property
    def mode(self) -> str:
        if self.similarity_mode == "anchor_band_db_minhash":
            return "anchor"
        if self.num_joint_nns > 1 and not self.same_columns and not self.diff_columns:
            return "top"
        return "pairs"


@dataclass
class JoinAnswer:
    mode: str
    #: LEMUR's rows (``data_rows``' dicts); in pair mode each has ``partners`` (a list of rows)
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


def join_rows(store: Store, query: DataQuery, spec: JoinSpec, *, nn_stats: bool = False, limit: int) -> JoinAnswer:
    """The answer to ``data(..., sql=spec)`` for the rows ``query`` chooses; at most ``limit`` rows
    (pairs without ``max_rows`` beyond it raise ``ValueError`` naming the fix)."""
    with store.read() as session:
        keys = _keys(session, query, spec)
        if spec.mode == "pairs":
            return _pairs(session, keys, spec, query.max_rows, limit, nn_stats)
        if spec.mode == "top":
            # LEMUR orders by accuracy alone; among ties its rows come in model-name order
            best = sorted(_best_per_model(keys), key=lambda k: (k[6] is None, -(k[6] or 0.0), k[5]))
            best = best[: spec.num_joint_nns]
            rows = rows_at(session, [(k[0], k[1]) for k in best], nn_stats=nn_stats)
            return JoinAnswer("top", rows)
        best = _best_per_model(keys)
        arch = _architectures(session, [k[0] for k in best])
    signatures = _signatures(store, set(arch.values()))
    with store.read() as session:
        return _anchor(session, best, arch, signatures, spec, nn_stats)


def _keys(session: Session, query: DataQuery, spec: JoinSpec) -> list[tuple[Any, ...]]:
    chosen = chosen_keys(query, session.get_bind().dialect.name)
    where = [chosen.c[name] == value for name in ("task", "dataset", "metric") if (value := getattr(spec, name))]
    order = (chosen.c.task, chosen.c.dataset, chosen.c.metric, chosen.c.nn, chosen.c.epoch, chosen.c.trial_id)
    return [tuple(row) for row in session.execute(select(chosen).where(*where).order_by(*order))]


def _best_per_model(keys: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each model's best row (highest score, then earliest epoch and run), best models first (ties:
    the earlier epoch, then the name)."""

    def rank(key: tuple[Any, ...]) -> tuple[Any, ...]:
        score = key[6]
        return (score is None, -(score or 0.0), key[1], key[0])

    best: dict[str, tuple[Any, ...]] = {}
    for key in sorted(keys, key=rank):
        best.setdefault(key[5], key)
    # LEMUR's order of candidate anchors: accuracy, then the earlier epoch, then the name
    return sorted(best.values(), key=lambda k: (*rank(k)[:2], k[1], k[5]))


def _pairs(
    session: Session, keys: list[tuple[Any, ...]], spec: JoinSpec, max_rows: int | None, limit: int, nn_stats: bool
) -> JoinAnswer:
    random.Random(spec.seed).shuffle(keys)
    wanted = len(keys) if max_rows is None else min(max_rows, len(keys))
    if wanted > limit:
        raise ValueError(
            f"{len(keys):,} rows match and each would be joined: give max_rows (at most {limit:,}) "
            "or narrow the rows with task, dataset, metric or nn"
        )
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    same = [_FIELD[c] for c in spec.same_columns]
    for position, key in enumerate(keys):
        groups[tuple(key[i] for i in same)].append(position)
    diff = [_FIELD[c] for c in spec.diff_columns]
    codes = [{value: n for n, value in enumerate({k[i] for k in keys})} for i in diff]
    arrays: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = {}
    for group, members in groups.items():
        scores = np.array([np.nan if keys[p][6] is None else keys[p][6] for p in members], dtype=float)
        columns = [np.array([code[keys[p][i]] for p in members]) for code, i in zip(codes, diff, strict=True)]
        arrays[group] = (np.array(members), scores, columns)
    partners: list[list[int]] = []
    for key in keys[:wanted]:
        members, scores, columns = arrays[tuple(key[i] for i in same)]
        mask = np.ones(len(members), dtype=bool)
        for column, code, i in zip(columns, codes, diff, strict=True):
            mask &= column != code[key[i]]
        if spec.enhance_nn:
            mask &= scores > (np.nan if key[6] is None else key[6])
        partners.append([int(p) for p in members[np.flatnonzero(mask)[: max(spec.num_joint_nns - 1, 0)]]])
    needed = [(k[0], k[1]) for k in keys[:wanted]]
    needed += [(keys[p][0], keys[p][1]) for chosen in partners for p in chosen]
    full = {(r["run_id"], r["epoch"]): r for r in rows_at(session, needed, nn_stats=nn_stats)}
    rows = []
    for key, chosen in zip(keys[:wanted], partners, strict=True):
        row = dict(full[(key[0], key[1])])
        row["partners"] = [full[(keys[p][0], keys[p][1])] for p in chosen]
        rows.append(row)
    return JoinAnswer("pairs", rows)


def _architectures(session: Session, trial_ids: list[int]) -> dict[int, int]:
    """trial -> architecture, for the trials whose architecture has code."""
    found: dict[int, int] = {}
    for start in range(0, len(trial_ids), 2_000):
        chunk = trial_ids[start : start + 2_000]
        found.update(
            session.execute(
                select(Trial.trial_id, Trial.architecture_id)
                .join(Architecture, Architecture.architecture_id == Trial.architecture_id)
                .where(Trial.trial_id.in_(chunk), Architecture.nn_code.is_not(None))
            ).all()  # a Result has keys(): dict.update would read it as a mapping
        )
    return found


def _signatures(store: Store, arch_ids: set[int]) -> dict[int, bytes]:
    """Each architecture's code signature, computed and kept the first time it is needed."""
    if not arch_ids:
        return {}
    found: dict[int, bytes] = {}
    missing: list[int] = []
    ids = sorted(arch_ids)
    with store.read() as session:
        for start in range(0, len(ids), 2_000):
            rows = session.execute(
                # a column selected by name is read even where the mapping defers it
                select(Architecture.architecture_id, Architecture.code_minhash).where(
                    Architecture.architecture_id.in_(ids[start : start + 2_000])
                )
            )
            for arch_id, signature in rows:
                if signature is None:
                    missing.append(arch_id)
                else:
                    found[arch_id] = bytes(signature)
    for start in range(0, len(missing), 500):
        with store.write() as session:
            for arch in session.scalars(
                select(Architecture).where(Architecture.architecture_id.in_(missing[start : start + 500]))
            ):
                arch.code_minhash = found[arch.architecture_id] = code_signature(arch.nn_code or "")
    return found


def _anchor(
    session: Session,
    best: list[tuple[Any, ...]],
    arch: dict[int, int],
    signatures: dict[int, bytes],
    spec: JoinSpec,
    nn_stats: bool,
) -> JoinAnswer:
    low, high = band_range(spec.similarity_band, spec.min_arch_jaccard, spec.max_arch_jaccard)
    candidates = [k for k in best if k[0] in arch]
    signature = {k[5]: signatures[arch[k[0]]] for k in candidates}
    n = spec.num_joint_nns

    def scored(anchor: str) -> tuple[list[tuple[Any, ...]], np.ndarray]:
        others = [k for k in candidates if k[5] != anchor]
        return others, jaccard(anchor_signature(anchor), [signature[k[5]] for k in others])

    def neighbours(anchor: str, band_low: float, band_high: float) -> int:
        similarity = scored(anchor)[1]
        return int(((similarity >= band_low) & (similarity < band_high)).sum())

    def anchor_signature(name: str) -> bytes:
        if name in signature:
            return signature[name]
        code = session.scalars(
            select(Architecture.nn_code).where(Architecture.nn_name == name, Architecture.nn_code.is_not(None)).limit(1)
        ).first()
        if code is None:
            raise ValueError(f"anchor_nn {name!r} has no model code in the store: name a model that data() lists with code")
        return code_signature(code)

    anchor = spec.anchor_nn
    if anchor is None:
        if not candidates:
            raise ValueError(
                f"no model with code for task={spec.task}, dataset={spec.dataset}, metric={spec.metric}: "
                "cannot choose an anchor (give anchor_nn, or widen the filters)"
            )
        bands = [("custom", low, high)]
        if spec.similarity_band is not None:
            names = list(SIM_BANDS)
            bands = [(b, *SIM_BANDS[b]) for b in names[names.index(spec.similarity_band) :]]
        for _, band_low, band_high in bands:
            anchor = next((k[5] for k in candidates[:ANCHOR_TRIALS] if neighbours(k[5], band_low, band_high) >= n), None)
            if anchor is not None:
                break
        if anchor is None:
            tried = ", ".join(f"{b}=[{lo}, {hi})" for b, lo, hi in bands)
            raise ValueError(
                f"no anchor among the top {min(len(candidates), ANCHOR_TRIALS)} models has {n} or more "
                f"neighbours in the bands tried ({tried}): lower num_joint_nns or choose another band"
            )
    others, similarity = scored(anchor)
    inside = [(k, float(j)) for k, j in zip(others, similarity, strict=True) if low <= j < high]
    inside.sort(key=lambda kj: (kj[0][6] is None, -(kj[0][6] or 0.0), -kj[1], kj[0][5], kj[0][1]))
    inside = inside[: n * spec.overfetch_factor]
    rows = rows_at(session, [(k[0], k[1]) for k, _ in inside], nn_stats=nn_stats)
    for row, (_, j) in zip(rows, inside, strict=True):
        row["anchor_jaccard"] = j
        row["anchor_nn"] = anchor
    meta = {
        "mode": "anchor_band_db_minhash",
        "anchor_nn": anchor,
        "auto_anchor": spec.anchor_nn is None,
        "band": spec.similarity_band,
        "min_j": low,
        "max_j": high,
    }
    return JoinAnswer("anchor", rows, {"curriculum_meta": meta})
