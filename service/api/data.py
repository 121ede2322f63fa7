"""``/v1/data``: LEMUR's ``data()`` over HTTP."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic_core import to_json

from search_spaces.metrics import metric_direction

from ..errors import InvalidRequestError
from ..lemur.contract import CODE_COLUMNS
from ..lemur.prompts import compact_code
from ..store import Store
from ..store.data import DataQuery, data_rows, nn_stat_rows
from ..store.joins import JoinSpec, join_rows
from .cache import cache_key, cached_json
from .deps import ReadAccess, StoreDep
from .errors import responses
from .schemas import MAX_INT, DataQueryBody, DataRows, Epoch, JoinedRows, PromptExample, PromptExamples

router = APIRouter(prefix="/v1", tags=["data"], responses=responses(422, 503))

#: the most rows one ``/v1/data`` answer holds
PAGE_ROWS = 50_000


@router.get("/data", dependencies=[ReadAccess], response_model=DataRows)
async def data(
    request: Request,
    store: StoreDep,
    task: Annotated[list[str] | None, Query(description="e.g. img-classification; repeat for several")] = None,
    dataset: Annotated[list[str] | None, Query()] = None,
    metric: Annotated[list[str] | None, Query(description="LEMUR metric name, e.g. acc")] = None,
    nn: Annotated[list[str] | None, Query(description="model name(s)")] = None,
    epoch: Annotated[list[Epoch] | None, Query()] = None,
    nn_prefixes: Annotated[
        list[str] | None, Query(description="model names starting with any of these, e.g. rag- (repeat for several)")
    ] = None,
    only_best_accuracy: bool = False,
    unique_nn: Annotated[bool, Query(description="one row per model: its best (the metric's direction)")] = False,
    max_rows: Annotated[
        int | None, Query(ge=1, description=f"at most this many rows (one answer holds at most {PAGE_ROWS:,})")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT, description="rows to skip: the previous answer's next_offset")] = 0,
    codes: Annotated[
        Literal["inline", "separate"],
        Query(
            description="inline: every row carries nn_code, metric_code and transform_code (LEMUR's rows); "
            "separate: rows carry only their ids, and `codes` maps each id to its text once"
        ),
    ] = "inline",
    include_nn_stats: Annotated[
        bool, Query(description="each row's nn_stats: LEMUR's architecture statistics of its network")
    ] = False,
) -> Response:
    """Per-epoch results, one row per (trial, epoch), with LEMUR's columns and Cellar's own.

    One answer holds at most ``PAGE_ROWS`` rows; when more match, ``next_offset`` is the
    ``offset`` of the next page (``service.lemur.data`` follows it)."""

    def build() -> bytes:
        limit = min(max_rows or PAGE_ROWS, PAGE_ROWS)
        with store.read() as session:
            rows = data_rows(
                session,
                DataQuery(
                    task=task,
                    dataset=dataset,
                    metric=metric,
                    nn=nn,
                    epoch=epoch,
                    nn_prefixes=nn_prefixes,
                    only_best_accuracy=only_best_accuracy,
                    unique_nn=unique_nn,
                    max_rows=limit + 1,
                    offset=offset,
                ),
                nn_stats=include_nn_stats,
            )
        more = len(rows) > limit and (max_rows is None or max_rows > limit)
        rows = rows[:limit]
        texts: dict[str, str] | None = None
        if codes == "separate":
            texts = {}
            for row in rows:
                for text, key in CODE_COLUMNS:
                    if row[text] is not None:
                        texts[row[key]] = row[text]
                        row[text] = None
        # pydantic's JSON writer on the rows as ``data_rows`` built them (``DataRows`` documents them;
        # the contract tests check answers against it): a page holds up to 50,000 rows, and validating
        # them again took 4 times as long as writing them
        answer = {"data": rows, "count": len(rows), "next_offset": offset + limit if more else None, "codes": texts}
        return to_json(answer)

    return Response(await request.app.state.read_cache.aget(cache_key(request), build), media_type="application/json")


@router.post("/data/query", dependencies=[ReadAccess], response_model=JoinedRows)
def data_query(body: DataQueryBody, store: StoreDep) -> Response:
    """LEMUR's ``data()`` with ``sql=JoinConf(...)``: rows joined to partner models (pairs), the
    best models (top-N) or the models whose code is similar to an anchor's (similarity bands).

    Rows carry code ids; ``codes`` holds each text once. A pair row's partners are in its
    ``partners`` list. At most ``PAGE_ROWS`` rows: pairs over more rows need ``max_rows``."""
    if body.sql is None:
        raise InvalidRequestError("sql is missing: POST /v1/data/query joins models; plain rows come from GET /v1/data")
    query = DataQuery(
        task=body.task,
        dataset=body.dataset,
        metric=body.metric,
        nn=body.nn,
        epoch=body.epoch,
        nn_prefixes=body.nn_prefixes,
        only_best_accuracy=body.only_best_accuracy,
        unique_nn=body.unique_nn,
        max_rows=body.max_rows,
    )
    conf = body.sql.model_dump()
    conf.update(
        same_columns=tuple(conf["same_columns"]), diff_columns=tuple(conf["diff_columns"]), enhance_nn=bool(conf["enhance_nn"])
    )
    spec = JoinSpec(**conf)
    try:
        answer = join_rows(store, query, spec, nn_stats=body.include_nn_stats, limit=PAGE_ROWS)
    except ValueError as error:
        raise InvalidRequestError(str(error)) from error
    texts: dict[str, str] = {}
    for row in answer.rows:
        for item in (row, *row.get("partners", ())):
            for text, key in CODE_COLUMNS:
                if item[text] is not None:
                    texts[item[key]] = item[text]
                item[text] = None
    joined = JoinedRows(mode=answer.mode, data=answer.rows, count=len(answer.rows), codes=texts, meta=answer.meta)
    return Response(joined.model_dump_json(), media_type="application/json")


@router.get("/nn-stats", dependencies=[ReadAccess], response_model=dict[str, Any])
async def nn_stats(
    store: StoreDep,
    request: Request,
    nn_name: Annotated[str | None, Query(description="one model's name")] = None,
    prm_id: Annotated[str | None, Query(description="one hyperparameter set's uid")] = None,
    max_rows: Annotated[int | None, Query(ge=1, le=PAGE_ROWS)] = None,
) -> Response:
    """LEMUR's ``nn_stat_data()``: architecture statistics per network and hyperparameter set,
    as the workers measured them on the model they built, and those read off the code."""

    def build() -> dict[str, Any]:
        with store.read() as session:
            rows = nn_stat_rows(session, nn_name=nn_name, prm_id=prm_id, max_rows=max_rows or PAGE_ROWS)
        return {"data": rows, "count": len(rows)}

    return await cached_json(request, build)


@router.get("/prompt-examples", dependencies=[ReadAccess], response_model=PromptExamples)
async def prompt_examples(
    store: StoreDep,
    request: Request,
    task: Annotated[list[str] | None, Query(description="e.g. img-classification")] = None,
    dataset: Annotated[list[str] | None, Query()] = None,
    metric: Annotated[list[str] | None, Query()] = None,
    k: Annotated[int, Query(ge=1, le=100, description="how many distinct models")] = 5,
) -> Response:
    """The ``k`` best distinct models (each at its best epoch, in its metric's direction) with
    their code compacted (no comments, docstrings or blank lines), for few-shot prompts."""
    return await cached_json(request, lambda: _prompt_examples(store, task, dataset, metric, k))


def _prompt_examples(
    store: Store, task: list[str] | None, dataset: list[str] | None, metric: list[str] | None, k: int
) -> PromptExamples:
    with store.read() as session:
        rows = data_rows(session, DataQuery(task=task, dataset=dataset, metric=metric, unique_nn=True))

    def score(row: dict) -> float:  # type: ignore[type-arg]
        return row["accuracy"] if metric_direction(row["metric"]) == "maximize" else -row["accuracy"]

    # models known only by name (imported statistics without model files) teach a prompt nothing
    with_code = [r for r in rows if r["nn_code"]]
    best = sorted(with_code, key=lambda r: (-score(r), r["run_id"]))[:k]
    examples = [
        PromptExample(
            nn=r["nn"],
            task=r["task"],
            dataset=r["dataset"],
            metric=r["metric"],
            accuracy=r["accuracy"],
            epoch=r["epoch"],
            prm=r["prm"],
            run_id=r["run_id"],
            code=compact_code(r["nn_code"]),
        )
        for r in best
    ]
    return PromptExamples(data=examples, count=len(examples))
