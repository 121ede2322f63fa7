"""API schemas (pydantic): the job body and what the endpoints return.

Per entity a family: ``JobCreate`` (what a client sends), ``JobPublic`` / ``JobsPublic`` (what it
gets back). Unknown fields are an error everywhere in request bodies, so a typo never passes silently.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from search_spaces import SearchSpace, SearchSpaceError, search_space_class, search_space_kinds
from search_spaces.datasets import dataset_names, get_dataset, split_sizes
from search_spaces.metrics import METRICS
from search_spaces.transforms import check_transform

from .strategies import PRUNERS, SAMPLERS, validate_pruner_params, validate_sampler_params

__all__ = [
    "CURVE_OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "STATIC_OBJECTIVES",
    "BudgetSpec",
    "ConstraintsSpec",
    "DataRow",
    "DataRows",
    "DatasetPublic",
    "EpochPublic",
    "HealthPublic",
    "JobCreate",
    "JobPublic",
    "JobsPublic",
    "ObjectiveSpec",
    "ParetoPublic",
    "PromptExample",
    "PromptExamples",
    "ResourcesSpec",
    "SearchSpacePublic",
    "SearchSpaceSpec",
    "StrategiesPublic",
    "StrategyPublic",
    "StrategySpec",
    "TrainingSpec",
    "TrialCounts",
    "TrialPublic",
    "TrialsPublic",
    "objective_metrics",
]

#: curve objectives have a per-epoch value (pruning judges them); static ones are known at setup
CURVE_OBJECTIVES = ("val_loss", *(f"val_{name}" for name, _ in METRICS.values()))
STATIC_OBJECTIVES = ("params", "flops", "latency_ms")


class _Body(BaseModel):
    # JSON allows 1e400 (infinity); no field of a job means anything infinite or NaN
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


class SearchSpaceSpec(_Body):
    kind: str = Field(description=f"one of the registered search spaces: {', '.join(search_space_kinds())}")
    params: dict[str, Any] = Field(default_factory=dict, description="the space's own parameters")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in search_space_kinds():
            raise ValueError(f"unknown search space {kind!r}; allowed: {_choices(search_space_kinds())}")
        return kind

    @model_validator(mode="after")
    def _valid_params(self) -> SearchSpaceSpec:
        space = search_space_class(self.kind)
        try:
            validated = space.validate_params(self.params)
        except ValidationError as error:
            problems = "; ".join(
                f"search_space.params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            allowed = ", ".join(space.Params.model_fields)
            raise ValueError(f"{problems} (parameters of {self.kind!r}: {allowed})") from None
        self.params = validated.model_dump(mode="json")
        return self

    def build(self) -> SearchSpace:
        return search_space_class(self.kind)(self.params)


class ObjectiveSpec(_Body):
    metric: str = Field(description="a metric of the trial, e.g. val_accuracy, params, train_seconds")
    direction: Literal["maximize", "minimize"]


class StrategySpec(_Body):
    sampler: Literal["tpe", "random", "gp", "nsga2", "evolution", "grid"] = "tpe"
    sampler_params: dict[str, Any] = Field(
        default_factory=dict, description="the sampler's own parameters (GET /v1/strategies lists them)"
    )
    pruner: Literal["none", "median", "asha", "successive_halving", "hyperband"] = Field(
        "none", description="successive_halving is the older name of asha"
    )
    pruner_params: dict[str, Any] = Field(default_factory=dict, description="the pruner's own parameters")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    initial_architectures: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="encodings to evaluate first, in order, before the sampler proposes its own",
    )
    cache: bool = Field(
        True,
        description=(
            "reuse the result of the same network trained under the same protocol (dataset, split, "
            "training hyperparameters, epochs, seed) by an earlier job instead of training it again"
        ),
    )
    reproducible: bool = Field(
        True,
        description=(
            "ask trial k only once trials 0..k-parallelism have finished, so the same job and seed "
            "sample the same architectures whatever the timing; false asks as soon as a slot frees"
        ),
    )


class ConstraintsSpec(_Body):
    max_params: int | None = Field(None, gt=0, description="candidates with more parameters are never trained")
    max_flops: int | None = Field(
        None, gt=0, description="candidates whose forward pass on one sample takes more FLOPs are never trained"
    )


class BudgetSpec(_Body):
    max_trials: int | None = Field(None, gt=0, le=1_000_000)
    epochs: int = Field(3, gt=0, le=10_000)
    time_limit_s: float | None = Field(None, gt=0, le=365 * 86400)
    parallelism: int = Field(1, gt=0, le=1024)
    epoch_timeout_s: float | None = Field(
        None, gt=0, le=7 * 86400, description="a trial whose step (setup + epoch, or one epoch) takes longer fails"
    )
    trial_retries: int = Field(
        1,
        ge=0,
        le=10,
        description=(
            "how often a trial whose worker process died (killed, node lost) runs again before it is "
            "marked failed; an exception in the trial itself is never retried"
        ),
    )

    @model_validator(mode="after")
    def _bounded(self) -> BudgetSpec:
        if self.max_trials is None and self.time_limit_s is None:
            raise ValueError("budget needs max_trials or time_limit_s (or both), e.g. {\"max_trials\": 20}")
        return self


class TrainingSpec(_Body):
    batch_size: int = Field(64, gt=0, le=65536)
    lr: float = Field(0.05, gt=0, le=10)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    nesterov: bool = True
    scheduler: Literal["cosine", "constant"] = "cosine"
    transform: str | None = Field(None, description="input transform, by LEMUR name; default the dataset's")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="training seed; default strategy.seed")
    split: tuple[float, float, float] = Field(
        (0.6, 0.2, 0.2), description="train, validation, test fractions of the seeded split"
    )

    @field_validator("transform")
    @classmethod
    def _known_transform(cls, name: str | None) -> str | None:
        return name if name is None else check_transform(name)  # ValueError naming the allowed patterns

    @field_validator("split")
    @classmethod
    def _fractions(cls, split: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(split) <= 0 or abs(sum(split) - 1) > 1e-6:
            raise ValueError(f"split fractions must be positive and sum to 1, got {list(split)}")
        return split


def _ray_quantity(value: float) -> float:
    # Ray counts resources in units of 1e-4; finer requests fail when the worker is created
    if abs(value * 10_000 - round(value * 10_000)) > 1e-6:
        raise ValueError(f"must be a multiple of 0.0001 (Ray's resource unit), got {value}")
    return value


class ResourcesSpec(_Body):
    cpus_per_trial: float = Field(1.0, gt=0, le=1024)
    gpus_per_trial: float = Field(0.0, ge=0, le=64)
    memory_mb_per_trial: int | None = Field(
        None,
        gt=0,
        le=1_048_576,
        description="cap on the memory a trial may allocate; past it the trial fails with out-of-memory",
    )

    _quantities = field_validator("cpus_per_trial", "gpus_per_trial")(_ray_quantity)


def objective_metrics(dataset: str) -> list[str]:
    """The metrics a job on ``dataset`` may optimise."""
    metric = get_dataset(dataset).info.metric
    return [f"val_{METRICS[metric][0]}", "val_loss", "params", "flops", "latency_ms", "train_seconds"]


class JobCreate(_Body):
    """The job body of DESIGN.md. Cross-field checks sit on the later field, so a 422 names it."""

    name: str | None = Field(None, max_length=200)
    search_space: SearchSpaceSpec
    dataset: str
    objectives: list[ObjectiveSpec] | None = Field(
        None,
        min_length=1,
        max_length=4,
        validate_default=True,
        description="default: the dataset's validation metric in its direction (val_accuracy up, val_rmse down)",
    )
    strategy: StrategySpec = Field(default_factory=StrategySpec, validate_default=True)
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    budget: BudgetSpec
    training: TrainingSpec = Field(default_factory=TrainingSpec, validate_default=True)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str, info: ValidationInfo) -> str:
        if name not in dataset_names():
            raise ValueError(f"unknown dataset {name!r}; allowed: {_choices(dataset_names())}")
        space = info.data.get("search_space")
        if space is not None:
            try:
                space.build().check_dataset(get_dataset(name).info)
            except SearchSpaceError as error:
                raise ValueError(str(error)) from None
        return name

    @field_validator("objectives")
    @classmethod
    def _known_metrics(cls, objectives: list[ObjectiveSpec] | None, info: ValidationInfo) -> list[ObjectiveSpec]:
        dataset = info.data.get("dataset")
        if objectives is None:
            metric = get_dataset(dataset).info.metric if dataset is not None else "acc"
            name, direction = METRICS[metric]
            return [ObjectiveSpec(metric=f"val_{name}", direction=direction)]  # type: ignore[arg-type]
        metrics = [o.metric for o in objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"each metric may appear once, got {metrics}")
        if dataset is not None:
            allowed = objective_metrics(dataset)
            for i, objective in enumerate(objectives):
                if objective.metric not in allowed:
                    raise ValueError(
                        f"objectives[{i}].metric: unknown metric {objective.metric!r} for dataset "
                        f"{dataset!r}; allowed: {_choices(allowed)}"
                    )
        return objectives

    @field_validator("strategy")
    @classmethod
    def _strategy_fits(cls, strategy: StrategySpec, info: ValidationInfo) -> StrategySpec:
        objectives = info.data.get("objectives")
        n_objectives = len(objectives) if objectives is not None else 1
        try:
            strategy.sampler_params = validate_sampler_params(
                strategy.sampler, strategy.sampler_params, n_objectives=n_objectives
            )
            strategy.pruner_params = validate_pruner_params(strategy.pruner, strategy.pruner_params)
        except ValueError as error:
            raise ValueError(str(error)) from None
        if strategy.pruner != "none" and objectives is not None:
            metrics = [o.metric for o in objectives]
            curves = [m for m in metrics if m in CURVE_OBJECTIVES]
            if len(curves) != 1 or not set(metrics) <= {*CURVE_OBJECTIVES, *STATIC_OBJECTIVES}:
                raise ValueError(
                    f"pruner: pruning needs exactly one objective with a per-epoch curve "
                    f"({_choices(CURVE_OBJECTIVES)}) and, for multi-objective jobs, others known before "
                    f"training ends ({_choices(STATIC_OBJECTIVES)}); the objectives are {metrics}. "
                    f"Change the objectives or use \"none\""
                )
        spec = info.data.get("search_space")
        if spec is not None and strategy.sampler == "grid" and spec.build().grid() is None:
            raise ValueError(
                f"sampler: search space {spec.kind!r} is conditional and has no grid; use \"grid\" with "
                f"a plain product space such as 'nb201', or another sampler"
            )
        if spec is not None and strategy.initial_architectures:
            space = spec.build()
            canonical = []
            for i, encoding in enumerate(strategy.initial_architectures):
                try:
                    canonical.append(space.canonical(encoding))
                except SearchSpaceError as error:
                    raise ValueError(f"initial_architectures[{i}]: {error}") from None
            strategy.initial_architectures = canonical
        return strategy

    @field_validator("training")
    @classmethod
    def _split_fits(cls, training: TrainingSpec, info: ValidationInfo) -> TrainingSpec:
        dataset = info.data.get("dataset")
        size = get_dataset(dataset).info.num_samples if dataset is not None else None
        if size is not None:
            try:
                split_sizes(size, training.split)
            except ValueError as error:
                raise ValueError(f"split: {error} (dataset {dataset!r})") from None
        if dataset is not None and training.transform is not None:
            # an image transform on a table or graph: refused here, not by every trial
            check_transform(training.transform, get_dataset(dataset).info)
        return training

    @model_validator(mode="after")
    def _default_name(self) -> JobCreate:
        if self.name is None:
            self.name = f"{self.search_space.kind}-{self.dataset}"
        return self

    @property
    def training_seed(self) -> int:
        return self.strategy.seed if self.training.seed is None else self.training.seed

    @property
    def transform(self) -> str:
        return self.training.transform or get_dataset(self.dataset).info.transform


# ---- responses --------------------------------------------------------------------------------
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
    elapsed_seconds: float


class TrialPublic(BaseModel):
    id: int
    job_id: int
    number: int
    state: str
    search_space: str | None
    arch: str | None = Field(description="the architecture's canonical encoding, e.g. an NB-201 arch string")
    nn: str | None = Field(description="LEMUR-style model name, <space>-<md5 of the code>")
    params: int | None = Field(description="number of trainable parameters")
    flops: int | None = Field(description="forward FLOPs for one sample (PyTorch's flop counter)")
    latency_ms: float | None = Field(description="forward milliseconds for a training-sized batch on the worker")
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
    seed: int
    split: dict[str, Any] | None
    duplicate_of: int | None = Field(description="the trial whose result this one reuses (same job, or a cache hit)")
    cache_hit: bool = Field(False, description="the result came from an earlier job's identical training")
    origin: str = Field(description="sampler, initial (the job's list) or retry")
    retry_of: int | None = Field(description="for a retry: the interrupted trial it runs again")
    requeued: bool = Field(description="interrupted; its configuration was handed to a retry")
    worker: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    nn_code: str | None = None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


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
    available: bool
    reason: str | None = None


class HealthPublic(BaseModel):
    status: str
    version: str
    store: dict[str, Any]
    executor: dict[str, Any]


# ---- submitted models (LEMUR's check_nn) --------------------------------------------------------
FAILURE_KINDS = ("syntax", "contract", "shape", "nan_loss", "oom", "timeout", "runtime")


class ModelSubmission(BaseModel):
    """``POST /v1/models``: LEMUR's ``check_nn`` arguments (and Cellar's seed)."""

    model_config = ConfigDict(extra="forbid")

    nn_code: str = Field(min_length=1, max_length=500_000, description="model source under LEMUR's contract")
    task: str = Field(description="LEMUR task, e.g. img-classification; must be the dataset's")
    dataset: str = Field(description="a Cellar dataset (GET /v1/datasets)")
    metric: str = Field(description="LEMUR metric name, e.g. acc; must be the dataset's")
    prm: dict[str, Any] = Field(
        description="hyperparameters: 'batch' (default 64), 'epoch' (epochs, default 1), 'transform' "
        "(default the dataset's) and whatever the model reads ('lr', 'momentum', ...)"
    )
    save_to_db: bool = Field(True, description="store the result (then /v1/data lists it)")
    prefix: str | None = Field(
        None, max_length=50, pattern=r"^[A-Za-z0-9_.]+$", description="model name prefix: <prefix>-<md5 of the code>"
    )
    epoch_limit_minutes: float = Field(30.0, gt=0, le=24 * 60, description="wall-clock limit of each epoch")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (also seeds the split)")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name not in dataset_names():
            raise ValueError(f"unknown dataset {name!r}; allowed: {_choices(dataset_names())}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> ModelSubmission:
        info = get_dataset(self.dataset).info
        if self.task != info.task:
            raise ValueError(f"task {self.task!r} does not match dataset {self.dataset!r}, whose task is {info.task!r}")
        if self.metric != info.metric:
            raise ValueError(
                f"metric {self.metric!r} does not match dataset {self.dataset!r}, which is scored with {info.metric!r}"
            )
        prm = dict(self.prm)
        batch = prm.setdefault("batch", 64)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
            raise ValueError(f"prm.batch must be a whole number from 1 to 4096, got {batch!r}")
        epochs = prm.setdefault("epoch", 1)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 1000:
            raise ValueError(f"prm.epoch (the number of epochs) must be a whole number from 1 to 1000, got {epochs!r}")
        transform = prm.setdefault("transform", info.transform)
        if not isinstance(transform, str):
            raise ValueError(f"prm.transform must be a transform's name, got {transform!r}")
        check_transform(transform, info)
        self.prm = prm
        return self


class ModelFailure(BaseModel):
    kind: Literal["syntax", "contract", "shape", "nan_loss", "oom", "timeout", "runtime"]
    message: str = Field(description="what went wrong and, where it can, how to fix it")
    line: int | None = Field(None, description="syntax: the line of the code")
    traceback: str | None = Field(None, description="runtime, shape: the traceback from the model's own frames")
    input_shape: Any = Field(None, description="shape: the batch the forward pass was given")
    output_shape: list[int] | None = Field(None, description="shape: what the model returned")
    expected_shape: list[int] | None = Field(None, description="shape: what the dataset needs")


class ModelEpoch(BaseModel):
    epoch: int
    accuracy: float | None = Field(description="the metric on the validation split after this epoch")
    loss: float | None
    val_loss: float | None
    duration: int = Field(description="nanoseconds of training up to this epoch, cumulative")


class ModelResult(BaseModel):
    """LEMUR's ``check_nn`` result (``name, accuracy, accuracy_to_time, code_quality``) and more."""

    name: str = Field(description="<prefix>-<nn_id>, or nn_id without a prefix")
    nn_id: str = Field(description="md5 of the code without whitespace")
    status: Literal["ok", "failed"]
    accuracy: float | None = Field(description="the metric on the validation split after the last epoch")
    accuracy_to_time: float | None = Field(
        description="LEMUR's: max(0, accuracy - chance accuracy) / (training nanoseconds / 1e11)"
    )
    code_quality: float | None = Field(description="0..1: pyflakes warnings, complexity and failed checks lower it")
    duration: int | None = Field(description="nanoseconds of training, all epochs")
    failure: ModelFailure | None
    epochs: list[ModelEpoch]
    test_accuracy: float | None = Field(description="the metric on the test split (reported, never searched on)")
    params: int | None
    flops: int | None
    latency_ms: float | None
    task: str
    dataset: str
    metric: str
    prm: dict[str, Any]
    prm_id: str
    seed: int
    cached: bool = Field(description="the same code and prm were trained before: this is the stored result")
    saved: bool = Field(description="the result is in the store (save_to_db)")
    run_id: int | None = Field(description="the stored run (the run_id of its /v1/data rows)")
    isolation: str | None = Field(None, description="how the sandbox was cut off from the network")
