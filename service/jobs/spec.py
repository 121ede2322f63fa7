"""The job spec: ``JobCreate``, the body of ``POST /v1/jobs``, stored with the job as it was validated.

Every check that needs only the body and the registries (search spaces, datasets, strategies,
transforms) happens here, so that a wrong job is a 422 naming the field and nothing is written.
Checks across fields sit on the later field. Unknown fields are an error, so a typo never passes
silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from search_spaces import SearchSpace, SearchSpaceError, search_space_class, search_space_kinds
from search_spaces.datasets import DEFAULT_SPLIT, dataset_names, default_training, get_dataset, split_sizes
from search_spaces.metrics import METRICS
from search_spaces.transforms import check_transform

from workers.protocol import PROXIES

from .strategies import validate_pruner_params, validate_sampler_params

__all__ = [
    "CURVE_OBJECTIVES",
    "STATIC_OBJECTIVES",
    "BudgetSpec",
    "ConstraintsSpec",
    "ExecutorSpec",
    "JobCreate",
    "JobExtension",
    "ObjectiveSpec",
    "ResourcesSpec",
    "SearchSpaceSpec",
    "StrategySpec",
    "TrainingSpec",
    "objective_metrics",
]

#: curve objectives have a per-epoch value (pruning judges them); static ones are known at setup
CURVE_OBJECTIVES = ("val_loss", *(f"val_{name}" for name, _ in METRICS.values()))
STATIC_OBJECTIVES = ("params", "flops", "latency_ms", *PROXIES)


class _Body(BaseModel):
    # strict: "5" is not a count and 1 is not true (JSON's own types only; an integer may stand for a
    # float and an array for a tuple). JSON allows 1e400 (infinity); no field means anything infinite.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _as_tuple(value: Any) -> Any:
    """A JSON array for a tuple field (strict mode takes only tuples)."""
    return tuple(value) if isinstance(value, list) else value


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


class SearchSpaceSpec(_Body):
    kind: str = Field(description=f"one of the registered search spaces: {', '.join(search_space_kinds())}")
    params: dict[str, Any] = Field(default_factory=dict, description="the space's own parameters")
    #: the parameters the body set itself (before the space's defaults filled the rest in)
    _given: frozenset[str] = PrivateAttr(default=frozenset())

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
        self._given = frozenset(self.params)
        self.params = validated.model_dump(mode="json")
        return self

    def build(self) -> SearchSpace:
        return search_space_class(self.kind)(self.params)


class ObjectiveSpec(_Body):
    metric: str = Field(description="a metric of the trial, e.g. val_accuracy, params, train_seconds")
    direction: Literal["maximize", "minimize"]


ProxyName = Literal["synflow", "naswot", "jacov", "grad_norm", "snip"]


class ScreenSpec(_Body):
    """Draw ``samples`` candidates at random, score them with a zero-cost proxy, and train the best
    ``keep`` first (for regularized evolution: its initial population), as the zero-cost proxy
    literature warm-starts searches."""

    proxy: ProxyName
    samples: int = Field(1000, ge=1, le=100_000, description="candidates drawn and scored (not trained)")
    keep: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="the best-scoring ones, trained first, best first (default 20, or samples if fewer)",
    )

    @model_validator(mode="after")
    def _fewer_kept(self) -> ScreenSpec:
        if self.keep is None:
            self.keep = min(20, self.samples)
        if self.keep > self.samples:  # type: ignore[operator]
            raise ValueError(f"keep ({self.keep}) cannot exceed samples ({self.samples})")
        return self


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
    screen: ScreenSpec | None = Field(
        None,
        description=(
            "zero-cost screening: score many random candidates with a proxy and train the best first "
            "(on the workers; a simulated job reads the scores from its table: `cellar table score`)"
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
    min_proxies: dict[ProxyName, float] | None = Field(
        None,
        description="zero-cost proxy -> least value: a candidate scoring below (or undefined) is never trained",
    )
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
    fail_fast_after: int = Field(
        3,
        ge=0,
        le=1000,
        description=(
            "stop the job when its first this-many trials all fail with the same error (every trial "
            "would); 0 never stops early"
        ),
    )

    @model_validator(mode="after")
    def _bounded(self) -> BudgetSpec:
        if self.max_trials is None and self.time_limit_s is None:
            raise ValueError("budget needs max_trials or time_limit_s (or both), e.g. {\"max_trials\": 20}")
        return self


_TASK_DEFAULT = "default: the dataset's task's protocol (GET /v1/datasets lists it)"


class TrainingSpec(_Body):
    """The training protocol every trial of the job shares. A field left out takes the value of
    the dataset's task's default protocol (``search_spaces.datasets.default_training``): SGD with
    Nesterov momentum for images (NAS-Bench-201's), Adam for tables, regression and graphs."""

    batch_size: int | None = Field(None, gt=0, le=65536, description=_TASK_DEFAULT)
    lr: float | None = Field(None, gt=0, le=10, description=_TASK_DEFAULT)
    optimizer: Literal["sgd", "adam", "adamw"] | None = Field(None, description=_TASK_DEFAULT)
    momentum: float | None = Field(None, ge=0, lt=1, description=_TASK_DEFAULT)
    weight_decay: float | None = Field(None, ge=0, le=1, description=_TASK_DEFAULT)
    nesterov: bool | None = Field(None, description=_TASK_DEFAULT)
    scheduler: Literal["cosine", "constant"] | None = Field(None, description=_TASK_DEFAULT)
    transform: str | None = Field(None, description="input transform, by LEMUR name; default the dataset's")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="training seed; default strategy.seed")
    split: Annotated[tuple[float, float, float], BeforeValidator(_as_tuple)] = Field(
        DEFAULT_SPLIT, description="train, validation, test fractions of the seeded split"
    )

    #: the fields the body set itself (before the task's defaults filled the rest in)
    _given: frozenset[str] = PrivateAttr(default=frozenset())

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


class ExecutorSpec(_Body):
    """Where the job's trials run: on the workers (the default), or looked up in a results table."""

    table: str = Field(
        min_length=1,
        max_length=200,
        description=(
            "a results table in the store (`cellar table list`): the job is simulated on it instead of trained "
            "(no dataset files needed); training fields and budget.epochs left out take the table's values"
        ),
    )


def objective_metrics(dataset: str) -> list[str]:
    """The metrics a job on ``dataset`` may optimise."""
    metric = get_dataset(dataset).info.metric
    return [f"val_{METRICS[metric][0]}", "val_loss", "params", "flops", "latency_ms", "train_seconds", *PROXIES]


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
    proxies: list[ProxyName] = Field(
        default_factory=list,
        description=(
            "zero-cost proxies each candidate is scored with on the worker before its first step, stored per trial "
            "(those the objectives and constraints.min_proxies name are added)"
        ),
    )
    executor: ExecutorSpec | None = Field(
        None, description="null: train on the workers; {\"table\": NAME}: simulate the job on a results table"
    )
    keep_weights: int | None = Field(
        None,
        ge=0,
        le=1000,
        description=(
            "trained weights kept for download: null (the default) keeps the best 3 trials of a single-objective "
            "job and the whole Pareto set of a multi-objective one; N keeps the best N (of the Pareto set, the N "
            "best on the first objective); 0 keeps none"
        ),
    )

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
        given = frozenset(training.model_fields_set)
        if dataset is not None:
            # the task's protocol where the job sets nothing, stored filled in (stored jobs have every field)
            defaults = default_training(get_dataset(dataset).info.task)
            unset = {k: v for k, v in defaults.items() if getattr(training, k) is None}
            training = training.model_copy(update=unset)
        training._given = given
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
    def _needed_proxies(self) -> JobCreate:
        wanted = set(self.proxies) | {o.metric for o in self.objectives or []} | set(self.constraints.min_proxies or {})
        if self.strategy.screen is not None:
            wanted.add(self.strategy.screen.proxy)  # the trained candidates record the score they were kept by
        self.proxies = [name for name in PROXIES if name in wanted]  # type: ignore[misc]
        return self

    @model_validator(mode="after")
    def _default_name(self) -> JobCreate:
        if self.name is None:
            self.name = f"{self.search_space.kind}-{self.dataset}"
        return self

    @property
    def simulated(self) -> bool:
        """The job runs on a results table, not on the workers."""
        return self.executor is not None

    @property
    def training_seed(self) -> int:
        return self.strategy.seed if self.training.seed is None else self.training.seed

    @property
    def transform(self) -> str:
        return self.training.transform or get_dataset(self.dataset).info.transform

    @property
    def prm(self) -> dict[str, Any]:
        """LEMUR's ``prm`` of the training protocol; a trial adds its architecture's own values."""
        t = self.training
        return {
            "lr": t.lr,
            "momentum": t.momentum,
            "weight_decay": t.weight_decay,
            "batch": t.batch_size,
            "epoch": self.budget.epochs,
            "optimizer": t.optimizer,
            "nesterov": t.nesterov,
            "scheduler": t.scheduler,
            "transform": self.transform,
        }


class JobExtension(_Body):
    """More budget for a job that has ended (``POST /v1/jobs/{id}/extend``): it is queued again and
    its search goes on where it stopped."""

    max_trials: int | None = Field(None, gt=0, le=1_000_000, description="the job's new total of trials")
    time_limit_s: float | None = Field(
        None, gt=0, le=365 * 86400, description="seconds more of search, from now"
    )

    @model_validator(mode="after")
    def _something(self) -> JobExtension:
        if self.max_trials is None and self.time_limit_s is None:
            raise ValueError('give max_trials (a new total) or time_limit_s (seconds more), e.g. {"max_trials": 40}')
        return self

