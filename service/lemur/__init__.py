"""LEMUR compatibility: Cellar as a drop-in for the LEMUR neural network dataset (``ab.nn.api``).

- ``contract``: LEMUR's columns, ids, units and scores (a leaf module; the server uses it).
- ``client``: ``data()`` and ``check_nn()`` with LEMUR's signatures, over HTTP (``service.lemur.data``).
- ``importer``: ``cellar import-lemur``, LEMUR's statistics files into the store.
- ``submissions``: ``POST /v1/models``, submitted code trained in the ``sandbox`` and stored.
- ``prompts``: compacted model code for few-shot prompts; ``schemas``: the submission's models.

``data``, ``check_nn`` and ``ModelCheckError`` are imported on first use, so that the server, which
imports ``service.lemur.contract``, never loads the HTTP client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CODE_COLUMNS", "LEMUR_COLUMNS", "ModelCheckError", "check_nn", "data"]

from .contract import CODE_COLUMNS, LEMUR_COLUMNS

_CLIENT = frozenset({"ModelCheckError", "check_nn", "data"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'service.lemur' has no attribute {name!r}")
