"""Identity hashes of architectures (torch-free)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from search_spaces import SearchSpace

__all__ = ["arch_hash", "dedup_hash"]


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def arch_hash(space: SearchSpace, encoding: str, in_shape: list[int], out_shape: list[int]) -> str:
    """One value per concrete network: space, the parameters that shape it, the encoding, the shapes."""
    return _digest(
        {"space": space.kind, "params": space.identity_params(), "encoding": encoding, "in": in_shape, "out": out_shape}
    )


def dedup_hash(space: SearchSpace, encoding: str, in_shape: list[int], out_shape: list[int]) -> str:
    """Shared by networks that compute the same function (the space's isomorphism key)."""
    return _digest(
        {
            "space": space.kind,
            "params": space.identity_params(),
            "key": space.dedup_key(encoding),
            "in": in_shape,
            "out": out_shape,
        }
    )
