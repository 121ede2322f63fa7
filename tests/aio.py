"""Running a coroutine from a synchronous test. The test session's browser fixture (Playwright's sync
API) keeps an event loop marked as running on the main thread once a browser test has run, so
``asyncio.run`` there fails; each call here gets a thread and a loop of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio


def run_async(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``anyio.run(func, *args)`` on a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, func, *args).result()
