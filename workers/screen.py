"""Scoring candidates without training them: the workers' half of ``strategy.screen``.

Each candidate is built as its trial would be (the same seed, code, ``prm`` and device) and scored
with one zero-cost proxy on a training-sized batch of the job's training split, as ``setup``
scores a trial before its first step (``workers.runner.score_proxies``). Nothing is trained and nothing
is kept: the model is dropped after its score. A candidate that cannot be scored (its code raises,
it exceeds ``max_params``, the proxy is undefined for it) scores ``None`` and ranks last; only a
failure of the whole call (the dataset is missing, say) is an error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import torch

from search_spaces import get_search_space

from .nn_module import load_nn_module
from .protocol import ScreenRequest, TrialPayload
from .runner import TrialRunner, score_proxies, seed_everything

__all__ = ["score_candidates"]

log = logging.getLogger(__name__)

#: prepared data kept per distinct ``prm`` during one call (a space with hyperparameters has many)
_PREPARED_KEPT = 8


def score_candidates(runner: TrialRunner, request: dict[str, Any]) -> list[float | None]:
    """The proxy's value for each of ``request``'s candidates, in their order."""
    req = ScreenRequest.from_dict(request)
    space = get_search_space(req.search_space, req.space_params, task=req.task)
    device = torch.device("cuda" if req.template.use_gpu else "cpu")
    if req.template.threads:
        torch.set_num_threads(max(1, req.template.threads))
    prepared: dict[str, Any] = {}
    values: list[float | None] = []
    for encoding in req.encodings:
        prm = {**req.template.prm, **space.hyperparameters(encoding)}
        payload = dataclasses.replace(
            req.template, prm=prm, arch=encoding, nn_name=space.nn_name(encoding), nn_code=space.nn_code(encoding),
            proxies=(req.proxy,), min_proxies=None,
        )  # fmt: skip
        key = json.dumps(prm, sort_keys=True, default=str)
        if key not in prepared:
            if len(prepared) >= _PREPARED_KEPT:
                prepared.pop(next(iter(prepared)))
            prepared[key] = runner.prepare(payload)
        values.append(_one(payload, prepared[key], device, req.proxy))
    return values


def _one(payload: TrialPayload, prepared: Any, device: torch.device, proxy: str) -> float | None:
    _info, _split, batches, in_shape, out_shape = prepared
    try:
        seed_everything(payload.seed)
        module = load_nn_module(payload.nn_code, payload.nn_name)
        model = module.Net(in_shape, out_shape, dict(payload.prm), device)
        model.to(device)
        if payload.max_params is not None and sum(t.numel() for t in model.parameters()) > payload.max_params:
            return None  # never trained: it ranks last
        scores, _seconds = score_proxies(model, batches, payload, device)
    except Exception as error:  # the candidate's own failure: its trial would fail the same way
        log.info("screening: %s could not be scored: %s: %s", payload.arch, type(error).__name__, error)
        return None
    return (scores or {}).get(proxy)
