"""Registries by name whose entries are imported on first use, so listing them imports nothing."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from .errors import UnknownChoiceError

__all__ = ["LazyRegistry"]

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Maps names to ``"module:attribute"`` targets; an unknown name lists the known ones."""

    def __init__(self, what: str, entries: dict[str, str]) -> None:
        self.what = what
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def register(self, name: str, target: str) -> None:
        self._entries[name] = target

    def load(self, name: str) -> T:
        try:
            target = self._entries[name]
        except KeyError:
            raise UnknownChoiceError(self.what, name, self.names()) from None
        module_name, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)
