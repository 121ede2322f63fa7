"""Zero-cost proxies: training-free scores of an untrained network, computed on one batch.

What the zero-cost proxy literature scores architectures with before training them (Mellor et al.,
ICML 2021; Abdelfattah et al., ICLR 2021; Tanaka et al., NeurIPS 2020; Lee et al., ICLR 2019), each
computed here on a copy of the freshly initialised model, so the trial's own model, its weights and
its batch-norm statistics are untouched:

- ``grad_norm``: the sum over weight tensors of the L2 norm of the loss gradient;
- ``snip``: the sum over weights of ``|w * dL/dw|`` (connection sensitivity);
- ``synflow``: the sum over weights of ``|w * dR/dw|``, where R is the sum of the outputs of the
  network with every parameter made positive, run in double precision on an input of ones, batch
  normalisation acting as the identity (data-free: no labels, no images);
- ``naswot``: ``log |det K|`` of the kernel of binary ReLU activation codes over the batch's samples;
- ``jacov``: the score of the correlations of the input Jacobians of the batch's samples,
  ``-sum(log(v + k) + 1 / (v + k))`` over their eigenvalues v, k = 1e-5.

Weights are the tensors of two or more dimensions (convolution and linear kernels, PyG's included).
The loss is cross-entropy for class labels (label -100 ignored, as the training masks graph nodes
outside the training split), mean squared error for float targets. For a graph, samples are its
nodes (at most ``MAX_SAMPLES`` of them for the kernels). A proxy that a network cannot give (no
ReLU module for ``naswot``, a non-finite value) is None, not a made-up number.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .protocol import PROXIES

__all__ = ["MAX_SAMPLES", "PROXIES", "zero_cost"]

#: samples (graph nodes) the kernels of naswot and jacov use at most: their matrices are samples^2
MAX_SAMPLES = 256
_JACOV_K = 1e-5


def _features(inputs: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """The input's feature tensor and how to rebuild the input around another one (a PyG graph
    keeps its edges)."""
    if isinstance(inputs, torch.Tensor):
        return inputs, lambda x: x
    x = getattr(inputs, "x", None)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"cannot score inputs of type {type(inputs).__name__}")

    def rebuild(new: torch.Tensor) -> Any:
        out = copy.copy(inputs)
        out.x = new
        return out

    return x, rebuild


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.dim() >= 2]


def _loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.is_floating_point():
        return nn.functional.mse_loss(outputs, labels.view_as(outputs))
    return nn.functional.cross_entropy(outputs, labels, ignore_index=-100)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _gradient_scores(model: nn.Module, inputs: Any, labels: torch.Tensor) -> dict[str, float | None]:
    net = copy.deepcopy(model)
    net.train()
    net.zero_grad()
    _loss(net(inputs), labels).backward()
    grad_norm = snip = 0.0
    for weight in _weights(net):
        if weight.grad is not None:
            grad_norm += float(weight.grad.norm())
            snip += float((weight.detach() * weight.grad).abs().sum())
    return {"grad_norm": _finite(grad_norm), "snip": _finite(snip)}


def _synflow(model: nn.Module, inputs: Any) -> float | None:
    net = copy.deepcopy(model).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    net.eval()  # batch norm at its initial statistics: the identity, as synflow scores without it
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    x, rebuild = _features(inputs)
    ones = torch.ones_like(x[:1] if isinstance(inputs, torch.Tensor) else x, dtype=torch.float64)
    net.zero_grad()
    torch.sum(net(rebuild(ones))).backward()
    total = sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(net) if w.grad is not None)
    return _finite(total)


def _rows(tensor: torch.Tensor, count: int) -> torch.Tensor:
    return tensor.reshape(tensor.shape[0], -1)[:count]


def _activation_kernel_and_jacobian(model: nn.Module, inputs: Any) -> dict[str, float | None]:
    net = copy.deepcopy(model)
    net.train()
    x, rebuild = _features(inputs)
    samples = min(MAX_SAMPLES, x.shape[0])
    kernel = torch.zeros(samples, samples, dtype=torch.float64)
    hooked = 0

    def code(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        c = _rows((output.detach() > 0).double(), samples)
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    handles = [m.register_forward_hook(code) for m in net.modules() if isinstance(m, nn.ReLU)]
    hooked = len(handles)
    leaf = x.detach().clone().requires_grad_(True)
    try:
        outputs = net(rebuild(leaf))
    finally:
        for handle in handles:
            handle.remove()
    outputs.backward(torch.ones_like(outputs))
    scores: dict[str, float | None] = {"naswot": None, "jacov": None}
    if hooked:
        sign, logdet = torch.linalg.slogdet(kernel)
        scores["naswot"] = _finite(float(logdet)) if float(sign) != 0 else None
    if leaf.grad is not None and samples > 1:
        jacobian = _rows(leaf.grad.double(), samples)
        correlations = torch.corrcoef(jacobian)
        if bool(torch.isfinite(correlations).all()):
            eigenvalues = torch.linalg.eigvalsh(correlations)
            scores["jacov"] = _finite(-float(torch.sum(torch.log(eigenvalues + _JACOV_K) + 1.0 / (eigenvalues + _JACOV_K))))
    return scores


def zero_cost(model: nn.Module, inputs: Any, labels: torch.Tensor, names: Iterable[str] = PROXIES) -> dict[str, float | None]:
    """The proxies ``names`` of ``model`` (untrained) on one batch; the model itself is not changed."""
    wanted = list(names)
    unknown = [n for n in wanted if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown zero-cost proxies {unknown}; choose from: {', '.join(PROXIES)}")
    scores: dict[str, float | None] = {}
    if {"grad_norm", "snip"} & set(wanted):
        scores.update(_gradient_scores(model, inputs, labels))
    if "synflow" in wanted:
        scores["synflow"] = _synflow(model, inputs)
    if {"naswot", "jacov"} & set(wanted):
        scores.update(_activation_kernel_and_jacobian(model, inputs))
    return {name: scores.get(name) for name in wanted}
