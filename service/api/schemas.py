"""Response schemas: what the endpoints return (``JobPublic``, ``TrialPublic``, ``DataRows``, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_INT",
    "Epoch",
    "DataRow",
    "DataRows",
    "DatasetPublic",
    "EpochPublic",
    "HealthPublic",
    "ImportancePublic",
    "JobPublic",
    "JobsPublic",
    "ParetoPublic",
    "PromptExample",
    "PromptExamples",
    "SearchSpacePublic",
    "StrategiesPublic",
    "StrategyPublic",
    "TrialCounts",
    "TrialPublic",
    "TrialsPublic",
]

#: the largest epoch, offset or row count a query takes: the database's integer (PostgreSQL's, 32 bits)
#: holds no larger one, and SQLite refuses one past 64 bits as a parameter (a 500 before the bound)
MAX_INT = 2**31 - 1
#: an epoch number in a query
Epoch = Annotated[int, Field(ge=0, le=MAX_INT)]


class TrialCounts(BaseModel):
    total: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0


class EpochPublic(BaseModel):
    epoch: int
    loss: float | None
    val_loss: float | None
    val_metric: float | None = Field(description="the dataset's metric on the validation split")
    val_accuracy: float | None = Field(description="val_metric, when the metric is accuracy")
    val_rmse: float | None = Field(description="val_metric, when the metric is RMSE")
    elapsed_seconds: float | None = Field(
        description="seconds of training since the trial started; null where unknown (LEMUR records without a duration)"
    )


class TrialPublic(BaseModel):
    id: int = Field(description="the trial's global id, unique in the store (GET /v1/trials/{id})")
    job_id: int = Field(description="the id of the trial's job")
    number: int = Field(
        description="the trial's number in its job, 0, 1, ... in the order asked (GET /v1/jobs/{job_id}/trials/{number})"
    )
    state: str
    search_space: str | None
    arch: str | None = Field(description="the architecture's canonical encoding, e.g. an NB-201 arch string")
    nn: str | None = Field(description="LEMUR-style model name, <space>-<md5 of the code>")
    params: int | None = Field(description="number of trainable parameters")
    flops: int | None = Field(description="forward FLOPs for one sample (PyTorch's flop counter)")
    latency_ms: float | None = Field(description="forward milliseconds for a training-sized batch on the worker")
    proxies: dict[str, float | None] | None = Field(
        None, description="zero-cost proxies of the untrained network, those the job asked for (null: none)"
    )
    metric: str = Field(description="the dataset's metric, by LEMUR name: acc, rmse")
    val_metric: float | None = Field(description="validation metric after the last epoch")
    test_metric: float | None = Field(description="test metric after the last epoch")
    val_accuracy: float | None = Field(description="val_metric, when the metric is accuracy")
    test_accuracy: float | None = Field(description="test_metric, when the metric is accuracy")
    val_rmse: float | None = Field(description="val_metric, when the metric is RMSE")
    test_rmse: float | None = Field(description="test_metric, when the metric is RMSE")
    loss: float | None = Field(description="training loss of the last epoch")
    train_seconds: float | None
    values: list[float] | None = Field(description="objective values, in the job's objective order")
    epochs: list[EpochPublic]
    choices: dict[str, Any] = Field(description="the parameters Optuna sampled")
    prm: dict[str, Any] = Field(description="LEMUR prm: the training hyperparameters")
    seed: int | None = Field(description="the training seed (unknown for imported results)")
    split: dict[str, Any] | None
    duplicate_of: int | None = Field(
        description="the trial id (global) whose result this one reuses (same job, or a cache hit)"
    )
    cache_hit: bool = Field(False, description="the result came from an earlier job's identical training")
    origin: str = Field(description="sampler, initial (the job's list) or retry")
    retry_of: int | None = Field(description="for a retry: the trial id (global) of the trial it runs again")
    requeued: bool = Field(description="its worker died; its configuration was handed to a retry (a new trial)")
    interruptions: int = Field(
        0, description="times the server running the job went away while this trial ran; it then ran again, in place"
    )
    worker: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    nn_code: str | None = None
    weights: bool | None = Field(
        None,
        description="with nn_code: whether its trained weights are kept (GET /v1/jobs/{job_id}/trials/{number}/weights)",
    )
    drawing: dict[str, Any] | None = Field(
        None,
        description="with nn_code: the architecture as the dashboard draws it, a cell (nodes, edges with their "
        "ops) or a stack (layers with their widths); null for spaces without a picture (submitted code)",
    )


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class ScreenedCandidate(BaseModel):
    encoding: str
    score: float | None


class ScreenPublic(BaseModel):
    """A finished ``strategy.screen`` of a job that trains: what its workers scored, what it kept."""

    proxy: str
    samples: int = Field(description="candidates drawn and scored (not trained)")
    scored: int = Field(description="of those, the ones the proxy is defined for")
    seconds: float = Field(description="wall-clock seconds the workers took to score them")
    kept: list[ScreenedCandidate] = Field(description="trained first, best first")


class JobPublic(BaseModel):
    id: int
    name: str
    status: str
    search_space: str
    dataset: str
    task: str
    metric: str
    cancel_requested: bool
    error: str | None
    counts: TrialCounts
    max_trials: int | None
    simulated_on: str | None = Field(
        None, description="the results table the job is simulated on (its times are simulated); null: trained"
    )
    screen: ScreenPublic | None = Field(
        None, description="strategy.screen, once the workers scored the candidates (jobs that train); null: none yet"
    )
    best_trial: TrialPublic | None = Field(description="single objective: the best complete trial")
    best_trials: list[TrialPublic] = Field(description="the non-dominated complete trials")
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ParetoPublic(BaseModel):
    job_id: int
    objectives: list[dict[str, Any]] = Field(description="the job's objectives, in the order of each trial's values")
    reference_point: list[float] | None = Field(
        description="the hypervolume's reference: the query's, else the Pareto set's nadir worsened by 10% of "
        "its range per objective (by 1 where the range is 0)"
    )
    hypervolume: float | None = Field(description="the objective-space volume the set dominates up to the reference")
    count: int
    data: list[TrialPublic] = Field(description="the non-dominated complete trials, by trial number")


class ObjectiveImportance(BaseModel):
    metric: str
    direction: str
    importances: dict[str, float] = Field(
        description="parameter -> importance, summing to 1, most important first; parameters that did not vary "
        "or that some trials lack (conditional choices) are left out"
    )


class ImportancePublic(BaseModel):
    job_id: int
    evaluator: str
    trials: int = Field(description="the complete trials it was computed on (in-job duplicates left out)")
    objectives: list[ObjectiveImportance]


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


class DataRow(BaseModel):
    """One row of ``/v1/data``: LEMUR's columns, then Cellar's own."""

    id: str
    task: str
    dataset: str
    metric: str
    metric_code: str | None
    metric_id: str | None
    nn: str
    nn_code: str | None = Field(description="the model's source; null for imported statistics without model files")
    nn_id: str | None = Field(description="md5 of nn_code without whitespace (LEMUR's identity); null without code")
    epoch: int
    accuracy: float | None
    duration: int | None = Field(description="nanoseconds of training up to this epoch, cumulative; null if unknown")
    prm_id: str
    transform_code: str | None
    transform_id: str | None
    prm: dict[str, Any]
    run_id: int
    job_id: int
    seed: int | None = Field(description="the training seed; null where unknown (imported statistics)")
    split: str
    created_at: datetime
    search_space: str | None
    arch: str | None
    nn_stats: dict[str, Any] | None = Field(
        None, description="with include_nn_stats: LEMUR's nn_stat of the network (its values by nn_stat's names)"
    )


class DataRows(BaseModel):
    data: list[DataRow]
    count: int
    next_offset: int | None = Field(None, description="more rows match: the offset of the next page")
    codes: dict[str, str] | None = Field(
        None, description="with codes=separate: the text of each nn_id, metric_id and transform_id in the rows"
    )


class PromptExample(BaseModel):
    nn: str
    task: str
    dataset: str
    metric: str
    accuracy: float = Field(description="the model's best value of the metric (validation), at `epoch`")
    epoch: int
    prm: dict[str, Any]
    run_id: int
    code: str = Field(description="the model's source without comments, docstrings and blank lines")


class PromptExamples(BaseModel):
    data: list[PromptExample]
    count: int


class SearchSpacePublic(BaseModel):
    kind: str
    description: str
    tasks: list[str]
    params: dict[str, Any]


class StrategyPublic(BaseModel):
    name: str
    params: dict[str, Any] = Field(description="JSON schema of its parameters (strategy.sampler_params / pruner_params)")
    multi_objective: bool = Field(description="usable in jobs with several objectives")


class StrategiesPublic(BaseModel):
    samplers: list[StrategyPublic]
    pruners: list[StrategyPublic]


class DatasetPublic(BaseModel):
    name: str
    task: str
    metric: str
    metric_direction: str
    in_shape: list[int]
    out_shape: list[int]
    num_classes: int | None
    num_samples: int | None
    source: str
    transform: str
    description: str
    training: dict[str, Any] = Field(
        description="the task's default training protocol: what a job's training fields default to"
    )
    available: bool
    reason: str | None = None


class HealthPublic(BaseModel):
    status: str
    version: str
    store: dict[str, Any]
    executor: dict[str, Any]


class JoinConfBody(BaseModel):
    """LEMUR's ``JoinConf``: how ``data()`` joins models (see docs/lemur.md)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    num_joint_nns: int = Field(ge=1, description="models per row (pairs), or how many models (top-N, anchor)")
    same_columns: list[Literal["task", "dataset", "metric", "nn", "epoch"]] = []
    diff_columns: list[Literal["task", "dataset", "metric", "nn", "epoch"]] = []
    enhance_nn: bool | None = Field(None, description="the partner must score better (the metric's direction)")
    task: str | None = None
    dataset: str | None = None
    metric: str | None = None
    similarity_mode: Literal["none", "anchor_band_db_minhash"] = "none"
    anchor_nn: str | None = None
    similarity_band: Literal["very_high", "high", "medium", "low", "very_low_near", "very_low_far"] | None = None
    min_arch_jaccard: float = Field(0.0, ge=0.0, le=1.0)
    max_arch_jaccard: float = Field(1.0, ge=0.0, le=1.0000001)
    overfetch_factor: int = Field(10, ge=1)
    seed: int | None = Field(None, description="Cellar's: the pair mode's random order, repeatable")

    @model_validator(mode="after")
    def _band(self) -> JoinConfBody:
        if self.min_arch_jaccard > self.max_arch_jaccard:
            raise ValueError(
                f"min_arch_jaccard {self.min_arch_jaccard} is above max_arch_jaccard {self.max_arch_jaccard}"
            )
        return self


class DataQueryBody(BaseModel):
    """``POST /v1/data/query``: LEMUR's ``data()`` with every argument, ``sql`` included."""

    model_config = ConfigDict(extra="forbid", strict=True)

    only_best_accuracy: bool = False
    task: list[str] | None = None
    dataset: list[str] | None = None
    metric: list[str] | None = None
    nn: list[str] | None = None
    epoch: list[Epoch] | None = None
    max_rows: int | None = Field(None, ge=1, le=MAX_INT)
    sql: JoinConfBody | None = None
    nn_prefixes: list[str] | None = None
    unique_nn: bool = False
    include_nn_stats: bool = False


class JoinedRows(BaseModel):
    """LEMUR's rows of ``data(sql=...)``: code texts once in ``codes`` (by id), not in the rows."""

    mode: Literal["pairs", "top", "anchor"]
    data: list[dict[str, Any]]
    count: int
    codes: dict[str, str]
    meta: dict[str, Any] = {}
