"""Exceptions of the ``search_spaces`` package. One root, so callers can catch the package whole."""

from __future__ import annotations

__all__ = [
    "SearchSpaceError",
    "UnknownChoiceError",
    "InvalidArchitectureError",
    "DatasetFileError",
    "DatasetUnavailableError",
    "IncompatibleDatasetError",
]


class SearchSpaceError(Exception):
    """Root of every error raised by ``search_spaces``."""


class UnknownChoiceError(SearchSpaceError, KeyError):
    """A name (search space, dataset, op) that is not registered; the message lists the valid ones."""

    def __init__(self, what: str, name: object, choices: list[str] | tuple[str, ...]) -> None:
        self.what = what
        self.name = name
        self.choices = tuple(choices)
        super().__init__(f"unknown {what} {name!r}; choose one of: {', '.join(self.choices)}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class InvalidArchitectureError(SearchSpaceError, ValueError):
    """An encoding that does not decode to an architecture of the space."""


class DatasetUnavailableError(SearchSpaceError):
    """A file dataset whose files are not where they must be."""


class DatasetFileError(SearchSpaceError, ValueError):
    """A dataset file that is there but does not hold what its format promises."""


class IncompatibleDatasetError(SearchSpaceError, ValueError):
    """A search space asked to build for a dataset whose task it cannot serve."""
