"""The web dashboard: pages at ``/`` (jobs), ``/jobs/{id}`` (one job) and ``/data`` (LEMUR-style rows).

Plain HTML and ES modules, no build step: each page is a shell that its script fills from the
``/v1`` API, the same JSON any client reads. Plots are plotly's, from the ``plotly.min.js`` that
ships inside the ``plotly`` wheel, served by Cellar itself: nothing is fetched from elsewhere, so the
dashboard works on a machine without internet.
"""

from __future__ import annotations

from .pages import install_dashboard

__all__ = ["install_dashboard"]
