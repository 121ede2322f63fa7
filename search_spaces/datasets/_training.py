"""Each task's default training protocol: what a job trains with where its ``training`` sets nothing.

One recipe for every task does not work. NAS-Bench-201's (SGD with Nesterov momentum 0.9, lr 0.05,
weight decay 5e-4) relies on cross-entropy, whose gradient per logit is at most 1, and on
batch-normalised networks. Mean squared error has neither bound: its gradient grows with the error.
KANs have no normalisation, their spline and RBF edges are steep (slope ~ grid size) and depth
multiplies that, so at an effective step of lr / (1 - momentum) = 0.5 the error feeds the gradient
that feeds the error: on kan-exp-sin 15 of 100 sampled KANs (13 of the 33 with three layers)
reached NaN within two epochs. Adam's step is about ``lr`` per weight whatever the gradient's
size, which breaks that loop; it is what KAN code trains with (efficient-kan: AdamW 1e-3; pykan:
LBFGS or Adam) and what PyG's GCN and GIN examples use (Adam 0.01, the GCN paper's protocol).
The small vector sets (90 to 600 training samples) get batches of 16, so that a few epochs are
more than a few dozen steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, Literal

from ..errors import UnknownChoiceError

__all__ = ["TRAINING_PROTOCOLS", "TrainingProtocol", "default_training"]


@dataclass(frozen=True)
class TrainingProtocol:
    """A task's defaults for the optimisation fields of a job's ``training`` (LEMUR's ``prm``:
    ``batch_size`` is ``batch``). Under Adam, ``momentum`` and ``nesterov`` are unused; they keep
    SGD's usual values so that a job that picks ``sgd`` and sets nothing else gets momentum SGD."""

    optimizer: Literal["sgd", "adam", "adamw"]
    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    scheduler: Literal["cosine", "constant"]
    batch_size: int


#: NAS-Bench-201's recipe (lr 0.05 for batch 64 rather than 0.1 for 256): the protocol every task had
_IMAGES = TrainingProtocol("sgd", 0.05, 0.9, 5e-4, True, "cosine", 64)
#: small feature vectors (function fitting, tables): Adam without weight decay, which would pull
#: the fitted function towards zero; batches of 16
_VECTORS = TrainingProtocol("adam", 0.01, 0.9, 0.0, True, "cosine", 16)
#: Kipf and Welling's GCN protocol (Adam 0.01, weight decay 5e-4), as PyG's examples train
_GRAPHS = TrainingProtocol("adam", 0.01, 0.9, 5e-4, True, "cosine", 64)

TRAINING_PROTOCOLS: Mapping[str, TrainingProtocol] = MappingProxyType(
    {
        "img-classification": _IMAGES,
        "tab-classification": _VECTORS,
        "regression": _VECTORS,
        "node-classification": _GRAPHS,
        "graph-classification": _GRAPHS,
    }
)


def default_training(task: str) -> dict[str, Any]:
    """The default protocol of ``task`` as a fresh dict keyed by the job's ``training`` field names
    (``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``nesterov``, ``scheduler``, ``batch_size``)."""
    try:
        return asdict(TRAINING_PROTOCOLS[task])
    except KeyError:
        raise UnknownChoiceError("task", task, sorted(TRAINING_PROTOCOLS)) from None
