"""Submitted model code (``POST /v1/models``, LEMUR's ``check_nn``): the request and the result."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces.datasets import dataset_names, get_dataset
from search_spaces.transforms import check_transform

__all__ = ["FAILURE_KINDS", "ModelEpoch", "ModelFailure", "ModelResult", "ModelResults", "ModelSubmission"]


def _choices(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in values)


FAILURE_KINDS = ("syntax", "contract", "shape", "nan_loss", "oom", "timeout", "runtime", "accuracy", "transform")
#: a transform file's name (``prm['transform']`` with ``transform_code``): ``<name>.py`` in LEMUR's transform_dir
_TRANSFORM_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class ModelSubmission(BaseModel):
    """``POST /v1/models``: LEMUR's ``check_nn`` arguments (and Cellar's seed)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    nn_code: str = Field(min_length=1, max_length=500_000, description="model source under LEMUR's contract")
    task: str = Field(description="LEMUR task, e.g. img-classification; must be the dataset's")
    dataset: str = Field(description="a Cellar dataset (GET /v1/datasets)")
    metric: str = Field(
        description="LEMUR metric name, e.g. acc; must be the dataset's (LEMUR's comma-separated list, the first "
        "primary: Cellar computes one metric per task, so the list holds only that one)"
    )
    prm: dict[str, Any] = Field(
        description="hyperparameters: 'batch' (default 64), 'epoch' (epochs, default 1), 'transform' "
        "(default the dataset's) and whatever the model reads ('lr', 'momentum', ...)"
    )
    save_to_db: bool = Field(True, description="store the result (then /v1/data lists it)")
    prefix: str | None = Field(
        None, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$", description="model name prefix: <prefix>-<md5 of the code>; letters, digits, _ . -"
    )
    epoch_limit_minutes: float = Field(30.0, gt=0, le=24 * 60, description="wall-clock limit of each epoch")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="training seed (also seeds the split)")
    gpus: float = Field(
        0.0,
        ge=0,
        le=8,
        description="GPUs to train on (fractions share one: 0.25 lets four models use it); 0 trains on a CPU. "
        "Needs a Ray cluster with GPUs",
    )
    transform_code: str | None = Field(
        None,
        min_length=1,
        max_length=200_000,
        description="the source of a transform file (LEMUR's check_nn transform_dir: <dir>/<prm.transform>.py), "
        "defining transform(norm) that returns the pipeline for one PIL image; it runs in the sandbox in place of "
        "Cellar's transform of that name, and is stored as the run's transform code",
    )
    accuracy_gate: bool = Field(
        True,
        description="LEMUR's gate: a classifier whose accuracy after an epoch is not above 1.2 x chance fails "
        "(kind 'accuracy'), keeping only the epochs before; false trains every epoch whatever the accuracy",
    )

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
        primary, *others = (m.strip() for m in self.metric.split(","))
        if primary != info.metric:
            raise ValueError(
                f"metric {self.metric!r} does not match dataset {self.dataset!r}, which is scored with {info.metric!r}"
                + (" (in LEMUR's comma-separated list, the first is the primary metric)" if others else "")
            )
        if others:  # LEMUR's "acc,iou": the first is primary, each one is recorded as metric_<name>
            raise ValueError(
                f"metric {self.metric!r}: Cellar computes one metric per task, {info.metric!r} for dataset "
                f"{self.dataset!r} ({info.task}), so it cannot record {', '.join(repr(o) for o in others)}; "
                f"send metric={info.metric!r}"
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
        if self.transform_code is None:
            check_transform(transform, info)
        elif not _TRANSFORM_FILE.fullmatch(transform):
            raise ValueError(
                f"prm.transform names the transform file (<name>.py) of transform_code: letters, digits, _ . -, "
                f"at most 100, got {transform!r}"
            )
        elif not (info.kind == "array" and len(info.in_shape) == 3):
            raise ValueError(
                f"transform_code is a transform file for images (a PIL image each); dataset {self.dataset!r} "
                f"({info.task}) has samples of shape {list(info.in_shape)}"
            )
        self.prm = prm
        return self


class ModelFailure(BaseModel):
    kind: Literal["syntax", "contract", "shape", "nan_loss", "oom", "timeout", "runtime", "accuracy", "transform"]
    message: str = Field(description="what went wrong and, where it can, how to fix it")
    line: int | None = Field(None, description="syntax: the line of the code (transform: of the transform file)")
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
    train_accuracy: float | None = Field(
        None, description="the metric on the training data, when learn() returns LEMUR's (train_accuracy, train_loss)"
    )


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


class ModelResults(BaseModel):
    data: list[ModelResult]
    count: int = Field(description="how many stored submissions match (data holds one page of them)")
