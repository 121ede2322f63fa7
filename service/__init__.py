"""Cellar's service: HTTP API, settings, job manager, store, CLI and client."""

__version__ = "0.1.0"
__all__ = ["__version__"]
