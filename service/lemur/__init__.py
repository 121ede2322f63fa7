"""LEMUR compatibility: Cellar as a drop-in for the LEMUR neural network dataset (``ab.nn.api``).

- ``contract``: LEMUR's columns, ids, units and scores (a leaf module; the server uses it).
- ``client``/``query``: ``check_nn()``, ``data()``, ``data_withnonnullvalue()``, ``nn_stat_data()`` and
  ``JoinConf`` with LEMUR's signatures, over HTTP (``service.lemur.data``).
- ``similarity``: MinHash signatures of model code; ``nnstats``: LEMUR's architecture statistics.
- ``importer``: ``cellar import-lemur``, LEMUR's statistics files into the store.
- ``submissions``: ``POST /v1/models``, submitted code trained in the ``sandbox`` and stored.
- ``prompts``: compacted model code for few-shot prompts; ``schemas``: the submission's models.

``data``, ``check_nn`` and ``ModelCheckError`` are imported on first use, so that the server, which
imports ``service.lemur.contract``, never loads the HTTP client.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CODE_COLUMNS",
    "LEMUR_COLUMNS",
    "JoinConf",
    "ModelCheckError",
    "check_nn",
    "data",
    "data_withnonnullvalue",
    "nn_stat_data",
]

from .contract import CODE_COLUMNS, LEMUR_COLUMNS

_CLIENT = frozenset({"JoinConf", "ModelCheckError", "check_nn", "data", "data_withnonnullvalue", "nn_stat_data"})


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'service.lemur' has no attribute {name!r}")
