"""Submitted model code (``POST /v1/models``, LEMUR's ``check_nn``): identity, reuse, training in
the sandbox, and the stored result.

Identity is LEMUR's: ``nn_id`` is the md5 of the code without whitespace, the model's name
``<prefix>-<nn_id>`` (``nn_id`` alone without a prefix). A submission whose code, ``prm``, dataset,
seed and epochs were trained to completion before is answered with the stored result
(``cached: true``) and not trained again; failed ones are tried again, as a timeout or an
out-of-memory may not repeat.

A stored submission is a job (search space ``code``, named ``model <name>``) with one trial,
whose epochs ``/v1/data`` lists like any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from search_spaces import nn_id
from search_spaces.datasets import DEFAULT_SPLIT, get_dataset

from ..settings import Settings
from ..store import Architecture, Job, JobStatus, Store, Trial, TrialEpoch, TrialState, utcnow
from ..store.runs import record_nn_stats
from ..store.queries import (
    find_architecture,
    get_or_create_source,
    metric_source_id,
    submitted_models,
    submitted_result,
    transform_source_id,
)
from .contract import accuracy_to_time, chance_accuracy, model_name, ns_to_seconds, prm_id, seconds_to_ns
from .sandbox import SandboxLimits, SandboxOutcome
from .schemas import ModelEpoch, ModelFailure, ModelResult, ModelSubmission

__all__ = ["ModelChecker", "Prepared"]

#: changes when the sandbox's training changes what a submission's result means
_MODEL_PROTOCOL = 1


def _cache_key(submission: ModelSubmission, samples: int) -> str:
    key = {
        "protocol": _MODEL_PROTOCOL,
        "nn_id": nn_id(submission.nn_code),
        "task": submission.task,
        "dataset": submission.dataset,
        "samples": samples,
        "metric": submission.metric,
        "prm": submission.prm,
        "seed": submission.seed,
        "split": list(DEFAULT_SPLIT),
    }
    if submission.transform_code is not None:  # a user's transform file: its text decides too
        key["transform_code"] = hashlib.md5(submission.transform_code.encode()).hexdigest()
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _below_the_gate(
    submission: ModelSubmission, epochs: list[ModelEpoch], out_shape: list[int]
) -> tuple[int, ModelFailure] | None:
    """LEMUR's accuracy gate (``Util.good``): the first epoch of a classifier whose accuracy is not
    above 1.2 x chance, as (its index, the failure); None when every epoch passes or it is off."""
    if not submission.accuracy_gate or submission.metric != "acc":
        return None
    chance = chance_accuracy(out_shape, submission.metric)
    for index, epoch in enumerate(epochs):
        if epoch.accuracy is None or epoch.accuracy <= 1.2 * chance:
            return index, ModelFailure(
                kind="accuracy",
                message=(
                    f"accuracy {epoch.accuracy} after epoch {epoch.epoch} is not above 1.2 x chance "
                    f"({1.2 * chance:.4f} for {submission.dataset}), LEMUR's minimum: the model barely learns. "
                    "Check its learning rate and output layer, or submit with accuracy_gate=false to keep it anyway"
                ),
            )
    return None


def _gate_cached(submission: ModelSubmission, result: ModelResult, out_shape: list[int]) -> ModelResult:
    """A stored result (trained with the gate off, perhaps) as the gate of this submission judges it."""
    gated = _below_the_gate(submission, result.epochs, out_shape)
    if gated is None:
        return result
    index, failure = gated
    kept = result.epochs[:index]
    accuracy = kept[-1].accuracy if kept else None
    duration = kept[-1].duration if kept else None
    return result.model_copy(update={
        "status": "failed", "failure": failure, "epochs": kept, "accuracy": accuracy, "duration": duration,
        "accuracy_to_time": accuracy_to_time(accuracy, chance_accuracy(out_shape, result.metric), duration),
    })


def _model_result(
    *, code: str, epochs: list[ModelEpoch], failure: ModelFailure | None, out_shape: list[int], **fields: Any
) -> ModelResult:
    """A result from its epochs: LEMUR's accuracy, duration and accuracy_to_time are the last epoch's."""
    accuracy = epochs[-1].accuracy if epochs else None
    duration = epochs[-1].duration if epochs else None
    return ModelResult(
        nn_id=nn_id(code),
        status="failed" if failure is not None else "ok",
        accuracy=accuracy,
        accuracy_to_time=accuracy_to_time(accuracy, chance_accuracy(out_shape, fields["metric"]), duration),
        duration=duration,
        failure=failure,
        epochs=epochs,
        prm_id=prm_id(fields["prm"]),
        **fields,
    )


@dataclass(frozen=True)
class Prepared:
    """A submission ready to train: its identity, the sandbox's payload and limits."""

    submission: ModelSubmission
    name: str
    key: str
    out_shape: list[int]
    payload: dict[str, Any]
    limits: SandboxLimits


class ModelChecker:
    """Submissions' identity, reuse, the sandbox's job and the stored results. Training itself is
    the queue's (``service.lemur.dispatch``): on Ray workers, or on the server's own threads."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def prepare(self, submission: ModelSubmission) -> Prepared:
        info = get_dataset(submission.dataset).describe(self.settings.data_dir)
        name = model_name(submission.nn_code, submission.prefix)
        payload = {
            "trial_id": 0,
            "job_id": 0,
            "number": 0,
            "nn_name": name,
            "nn_code": submission.nn_code,
            "dataset": submission.dataset,
            "prm": submission.prm,
            "epochs": int(submission.prm["epoch"]),
            "seed": submission.seed,
            "split_seed": submission.seed,
            "split_fractions": list(DEFAULT_SPLIT),
            "data_dir": str(self.settings.data_dir) if self.settings.data_dir else None,
            "use_gpu": submission.gpus > 0,
            "transform_code": submission.transform_code,
        }
        limits = SandboxLimits(
            memory_mb=self.settings.model_memory_mb,
            setup_timeout_s=self.settings.model_setup_timeout_s,
            epoch_timeout_s=submission.epoch_limit_minutes * 60.0,
            file_mb=self.settings.model_file_mb,
            private_paths=self.settings.private_paths(),
            nice=self.settings.model_nice,
        )
        key = _cache_key(submission, info.num_samples)
        return Prepared(submission, name, key, list(info.out_shape), payload, limits)

    def cached(self, session: Session, prepared: Prepared) -> ModelResult | None:
        """The stored result of the same code, ``prm``, dataset and seed trained to completion."""
        stored = submitted_result(session, prepared.key)
        if stored is None:
            return None
        return _gate_cached(prepared.submission, self._from_trial(session, stored, cached=True), prepared.out_shape)

    def complete(self, session: Session, prepared: Prepared, outcome: SandboxOutcome) -> ModelResult:
        """The result of a training, stored in ``session`` with ``save_to_db``."""
        submission = prepared.submission
        result = self._result(submission, prepared.name, outcome, prepared.out_shape)
        if submission.save_to_db:
            result.run_id = self._save(session, submission, prepared.name, prepared.key, outcome, result)
            result.saved = True
        return result

    def unrun(self, submission: ModelSubmission, name: str, failure: ModelFailure) -> ModelResult:
        """The result of a submission that could not be trained at all (nothing stored)."""
        return _model_result(
            code=submission.nn_code, epochs=[], failure=failure, out_shape=[], name=name, code_quality=None,
            test_accuracy=None, params=None, flops=None, latency_ms=None, task=submission.task,
            dataset=submission.dataset, metric=submission.metric, prm=submission.prm, seed=submission.seed,
            cached=False, saved=False, run_id=None, isolation=None,
        )  # fmt: skip

    # ---- results ---------------------------------------------------------------------------------
    def _result(
        self, submission: ModelSubmission, name: str, outcome: SandboxOutcome, out_shape: list[int]
    ) -> ModelResult:
        epochs = [
            ModelEpoch(
                epoch=e["epoch"],
                accuracy=e.get("val_metric"),
                loss=e.get("loss"),
                val_loss=e.get("val_loss"),
                duration=seconds_to_ns(e["elapsed_seconds"]),
                train_accuracy=e.get("train_metric"),
            )
            for e in outcome.epochs
        ]
        failure = None
        gated = _below_the_gate(submission, epochs, out_shape) if outcome.failure is None else None
        if gated is not None:
            index, failure = gated
            epochs = epochs[:index]  # LEMUR raises in that epoch: the ones before it stand
        if outcome.failure is not None:
            known = {k: v for k, v in outcome.failure.items() if k in ModelFailure.model_fields}
            failure = ModelFailure(**known)
            if outcome.output_tail and failure.kind in ("runtime", "timeout", "oom"):
                failure.message += f"\nthe model's last output: {outcome.output_tail[-500:]}"
        setup = outcome.setup or {}
        return _model_result(
            code=submission.nn_code,
            epochs=epochs,
            failure=failure,
            out_shape=out_shape,
            name=name,
            code_quality=outcome.code_quality,
            test_accuracy=(outcome.final or {}).get("test_metric"),
            params=setup.get("num_params"),
            flops=setup.get("flops"),
            latency_ms=setup.get("latency_ms"),
            task=submission.task,
            dataset=submission.dataset,
            metric=submission.metric,
            prm=submission.prm,
            seed=submission.seed,
            cached=False,
            saved=False,
            run_id=None,
            isolation=outcome.isolation,
        )

    def _save(
        self, session: Session, submission: ModelSubmission, name: str, key: str, outcome: SandboxOutcome,
        result: ModelResult,
    ) -> int:
        checked = outcome.checked or {}
        in_shape, out_shape = checked.get("in_shape") or [], checked.get("out_shape") or []
        digest = nn_id(submission.nn_code)
        arch_hash = hashlib.sha256(json.dumps(["model", digest, in_shape, out_shape]).encode()).hexdigest()
        now = utcnow()
        spec = submission.model_dump(exclude={"nn_code", "transform_code"})  # the transform file: a source row
        spec["kind"] = "model"
        job = Job(
            name=f"model {name}",
            status=JobStatus.SUCCEEDED if result.status == "ok" else JobStatus.FAILED,
            search_space="code",
            dataset=submission.dataset,
            task=submission.task,
            metric=submission.metric,
            spec=spec,
            cancel_requested=False,
            error=result.failure.message if result.failure else None,
            started_at=now,
            finished_at=now,
        )
        session.add(job)
        arch = find_architecture(session, arch_hash)
        if arch is None:
            arch = Architecture(
                search_space="code",
                space_params={"prefix": submission.prefix},
                encoding=digest,
                arch_hash=arch_hash,
                dedup_hash=arch_hash,
                in_shape=in_shape,
                out_shape=out_shape,
                num_params=result.params,
                flops=result.flops,
                nn_name=name,
                nn_code=submission.nn_code,
            )
            session.add(arch)
        session.flush()
        trial = Trial(
            job_id=job.job_id,
            number=0,
            architecture_id=arch.architecture_id,
            state=TrialState.COMPLETE if result.status == "ok" else TrialState.FAILED,
            params={},
            distributions={},
            prm=submission.prm,
            seed=submission.seed,
            split=(outcome.setup or {}).get("split"),
            epochs=int(submission.prm["epoch"]),
            values=[result.accuracy] if result.accuracy is not None and result.status == "ok" else None,
            val_metric=result.accuracy,
            test_metric=result.test_accuracy,
            loss=result.epochs[-1].loss if result.epochs else None,
            train_seconds=ns_to_seconds(result.duration),
            latency_ms=result.latency_ms,
            cache_key=key,
            origin="submitted",
            metric_source_id=metric_source_id(session, submission.metric),
            transform_source_id=self._transform_source(session, submission),
            worker=(outcome.setup or {}).get("worker"),
            error=json.dumps(result.failure.model_dump(exclude_none=True)) if result.failure else None,
            started_at=now,
            finished_at=now,
        )
        session.add(trial)
        session.flush()
        if (outcome.setup or {}).get("nn_stats"):
            record_nn_stats(session, arch.architecture_id, prm_id(submission.prm), outcome.setup["nn_stats"])
        # the reported epochs the result keeps (a gated result keeps those before the gate)
        for epoch, reported in zip(result.epochs, outcome.epochs[: len(result.epochs)], strict=True):
            session.add(
                TrialEpoch(
                    trial_id=trial.trial_id,
                    epoch=epoch.epoch,
                    loss=epoch.loss,
                    val_loss=epoch.val_loss,
                    val_metric=epoch.accuracy,
                    train_metric=epoch.train_accuracy,
                    elapsed_seconds=float(reported["elapsed_seconds"]),
                )
            )
        # code quality is a property of the code: kept with the job's spec
        job.spec = {**spec, "code_quality": result.code_quality, "isolation": result.isolation}
        return trial.trial_id

    @staticmethod
    def _transform_source(session: Session, submission: ModelSubmission) -> int | None:
        """The stored source of the transform that ran: the user's file, else Cellar's of that name."""
        name = str(submission.prm["transform"])
        if submission.transform_code is not None:
            return get_or_create_source(session, kind="transform", name=name, code=submission.transform_code).source_id
        return transform_source_id(session, name)

    def get(self, run_id: int) -> ModelResult | None:
        with self.store.read() as session:
            trial = session.get(Trial, run_id)
            if trial is None or trial.origin != "submitted":
                return None
            return self._from_trial(session, trial, cached=False)

    def stored(
        self, *, status: str | None = None, failure: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[ModelResult], int]:
        """Stored submissions, newest first, and how many match."""
        with self.store.read() as session:
            trials, total = submitted_models(session, status=status, failure=failure, limit=limit, offset=offset)
            return [self._from_trial(session, t, cached=False) for t in trials], total

    def _from_trial(self, session: Any, trial: Trial, *, cached: bool) -> ModelResult:
        job, arch = trial.job, trial.architecture
        assert arch is not None and arch.nn_code is not None
        epochs = [
            ModelEpoch(
                epoch=e.epoch,
                accuracy=e.val_metric,
                loss=e.loss,
                val_loss=e.val_loss,
                duration=seconds_to_ns(e.elapsed_seconds or 0.0),
                train_accuracy=e.train_metric,
            )
            for e in trial.epoch_rows
        ]
        return _model_result(
            code=arch.nn_code,
            epochs=epochs,
            failure=ModelFailure(**json.loads(trial.error)) if trial.error else None,
            out_shape=arch.out_shape,
            name=arch.nn_name,
            code_quality=job.spec.get("code_quality"),
            test_accuracy=trial.test_metric,
            params=arch.num_params,
            flops=arch.flops,
            latency_ms=trial.latency_ms,
            task=job.task,
            dataset=job.dataset,
            metric=job.metric,
            prm=trial.prm,
            seed=trial.seed or 0,
            cached=cached,
            saved=True,
            run_id=trial.trial_id,
            isolation=job.spec.get("isolation"),
        )
