"""Zero-cost proxies of a results table's cells, computed once and stored with the table.

``cellar table score NAME --proxies synflow,naswot`` builds each cell's network as a worker would
(the table's space and shapes, seed 0), scores it with ``workers.proxies.zero_cost`` and stores the
scores in the row's ``extra.proxies``; the table's ``source.proxies`` lists the proxies every cell
has, which simulated jobs may then search on, constrain or screen with. It commits every few
hundred cells and skips cells already scored, so an interrupted run goes on where it stopped.

The data-dependent proxies score one batch of ``data`` (default: the table's own dataset, which
needs its files; ``--data digits32`` is a stand-in of the same image shape, and the table's
``source.proxy_data`` records which was used). synflow reads no data.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from search_spaces import get_search_space
from search_spaces.datasets import get_dataset, seeded_split

from ..errors import TabularTableError
from ..store import Store, tables

__all__ = ["score_table"]

_CHUNK = 200


def _batch(dataset: str, size: int, data_dir: Any) -> tuple[Any, Any, list[int]]:
    """A training batch of ``dataset`` as a worker prepares it (its transform), and the input shape."""
    import importlib

    from search_spaces.transforms import transform_module
    from workers.tasks import prepare

    info = get_dataset(dataset).describe(data_dir)
    data = get_dataset(dataset).load(data_dir)
    prm = {"lr": 0.1, "momentum": 0.9, "batch": size, "epoch": 1}
    transform = importlib.import_module(transform_module(info.transform))
    prepared = prepare(info, data, seeded_split(len(data), 0), prm, 0, transform)
    return prepared.batch, prepared.labels, list(info.in_shape)


def score_table(
    store: Store,
    name: str,
    proxies: list[str],
    *,
    data: str | None = None,
    batch_size: int = 64,
    data_dir: Any = None,
    limit: int | None = None,
    shard: tuple[int, int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score the table's cells that lack ``proxies`` (at most ``limit`` of them; with ``shard`` (k, n)
    the k-th of every n, so that n processes share the work); returns a summary."""
    import torch

    from workers.nn_module import load_nn_module
    from workers.protocol import PROXIES
    from workers.proxies import zero_cost

    unknown = [p for p in proxies if p not in PROXIES]
    if unknown or not proxies:
        raise TabularTableError(f"unknown zero-cost proxies {unknown}; choose from: {', '.join(PROXIES)}")
    with store.read() as session:
        table = tables.get_table(session, name)
        if table is None:
            raise TabularTableError(f"no results table {name!r} in {store.display_url}")
        todo = tables.rows_lacking_proxies(session, name, proxies)
        header = (table.search_space, dict(table.space_params), table.dataset)
    kind, space_params, dataset = header
    info = get_dataset(dataset).info
    space = get_search_space(kind, space_params, task=info.task)
    data_free = set(proxies) <= {"synflow"}
    source_data = None if data_free else (data or dataset)
    if source_data is not None:
        inputs, labels, _ = _batch(source_data, batch_size, data_dir)
    else:  # synflow scores an input of ones; the batch only gives its shape
        inputs, labels = torch.zeros(1, *info.in_shape), torch.zeros(1, dtype=torch.long)
    torch.set_num_threads(1)
    if shard is not None:
        k, n = shard
        todo = todo[k::n]
    todo = todo[:limit] if limit is not None else todo
    started, done = time.perf_counter(), 0
    scored: dict[str, dict[str, float | None]] = {}
    for arch in todo:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = load_nn_module(space.nn_code(arch), space.nn_name(arch))
        torch.manual_seed(0)
        net = module.Net((1, *info.in_shape), tuple(info.out_shape), {"lr": 0.1, "momentum": 0.9}, torch.device("cpu"))
        scored[arch] = zero_cost(net, inputs, labels, proxies)
        done += 1
        if len(scored) >= _CHUNK or done == len(todo):
            with store.write() as session:
                complete = tables.store_proxies(
                    session, name, scored, proxies, data=source_data, update_header=done == len(todo)
                )
            scored = {}
            if on_progress is not None:
                on_progress(done, len(todo))
    if not todo:
        with store.write() as session:
            complete = tables.store_proxies(session, name, {}, proxies, data=source_data)
    seconds = time.perf_counter() - started
    return {"table": name, "scored": done, "seconds": round(seconds, 1), "complete": complete,
            "seconds_per_cell": round(seconds / done, 3) if done else None, "data": source_data}  # fmt: skip
