"""``GET /v1/jobs/{job_id}/summary``: a job in a few hundred tokens, for agents and prompts.

The best trials (or the Pareto set), how the trials ended, and what failed how often, cut to a
character budget: what an LLM agent reads to decide its next step, without a page of JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from ..store import Job, Trial, TrialState, queries
from .cache import cached_json
from .deps import ReadAccess, StoreDep
from .errors import responses
from .views import best_trials, counted_results

__all__ = ["job_summary", "router"]

router = APIRouter(prefix="/v1", tags=["jobs"], responses=responses(422, 503))


def _failure_kind(error: str | None) -> str:
    """``ValueError`` from ``ValueError: ...``; the first line's words before a colon."""
    first = (error or "").strip().splitlines()[0] if error and error.strip() else "unknown"
    return first.split(":", 1)[0].strip()[:60] or "unknown"


def _trial(trial: Trial, objectives: Sequence[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {"number": trial.number}
    for objective, value in zip(objectives, trial.values or []):
        item[objective["metric"]] = round(value, 6) if isinstance(value, float) else value
    architecture = trial.architecture
    if architecture is not None:
        item["arch"] = architecture.encoding
        item["nn"] = architecture.nn_name
        if architecture.num_params is not None:
            item["params"] = architecture.num_params
    return item


def job_summary(
    job: Job, trials: Sequence[Any], *, top: int, budget: int, load: Callable[[list[int]], dict[int, Trial]]
) -> dict[str, Any]:
    """The summary, at most ``budget`` characters of JSON: items are dropped from the end of the
    lists (the worst first) until it fits, and ``truncated`` says how many went. ``trials`` are bare
    rows (``queries.trial_outcomes``); ``load`` reads the few listed ones whole."""
    objectives = job.spec.get("objectives") or [{"metric": f"val_{job.metric}", "direction": "maximize"}]
    states = Counter(t.state for t in trials)
    complete = counted_results([t for t in trials if t.state == TrialState.COMPLETE])
    best, front = best_trials(job, complete)
    if len(objectives) == 1:
        sign = 1.0 if objectives[0]["direction"] == "maximize" else -1.0
        ranked = sorted(complete, key=lambda t: (-sign * t.values[0], t.number))  # type: ignore[index]
    else:
        ranked = sorted(front, key=lambda t: t.number)
    failures = Counter(_failure_kind(t.error) for t in trials if t.state == TrialState.FAILED)
    listed = ranked[:top]
    loaded = load([t.trial_id for t in listed])
    summary: dict[str, Any] = {
        "job": {
            "id": job.job_id,
            "name": job.name,
            "status": job.status,
            "search_space": job.search_space,
            "dataset": job.dataset,
            "objectives": [f"{o['direction']} {o['metric']}" for o in objectives],
            "trials": {"total": len(trials), **{s: states.get(s, 0) for s in (TrialState.RUNNING, *TrialState.FINISHED)}},
            "max_trials": job.spec.get("budget", {}).get("max_trials"),
            "error": (job.error or "")[:300] or None,
        },
        "best" if len(objectives) == 1 else "pareto_set": [_trial(loaded[t.trial_id], objectives) for t in listed],
        "failures": dict(failures.most_common()),
        "truncated": 0,
    }
    key = "best" if len(objectives) == 1 else "pareto_set"
    while len(json.dumps(summary)) > budget and summary[key]:
        summary[key].pop()
        summary["truncated"] += 1
    if len(json.dumps(summary)) > budget and summary["failures"]:
        kept = dict(list(summary["failures"].items())[:3])
        summary["truncated"] += len(summary["failures"]) - len(kept)
        summary["failures"] = kept
    return summary


@router.get(
    "/jobs/{job_id}/summary", dependencies=[ReadAccess], responses=responses(404, 422), response_model=dict[str, Any]
)
async def get_summary(
    job_id: int,
    store: StoreDep,
    request: Request,
    top: Annotated[int, Query(ge=1, le=50, description="best trials (or Pareto-set trials) to list")] = 5,
    budget: Annotated[
        int, Query(ge=300, le=100_000, description="the most characters of JSON the answer may take")
    ] = 2_000,
) -> Response:
    """The job in a few hundred tokens: its state and counts, its best trials (or its Pareto set)
    with their encodings, and a histogram of how its failed trials failed; cut to ``budget``
    characters (``truncated`` counts what was left out)."""

    def build() -> dict[str, Any]:
        with store.read() as session:
            job = queries.get_job(session, job_id)
            outcomes = queries.trial_outcomes(session, [job_id])[job_id]
            return job_summary(
                job, outcomes, top=top, budget=budget, load=lambda ids: queries.trials_by_id(session, ids)
            )

    return await cached_json(request, build, job=job_id)
