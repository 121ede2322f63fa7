"""The whole LEMUR corpus (377,735 records) imported on SQLite and PostgreSQL, and queried.

The row counts are LEMUR's own: its ``data()`` (nn-dataset 2.2.11, over a database it built from
the same archive, ``benchmarks/lemur_side.py``) returns 11,846 rows for cifar-10 with
``only_best_accuracy`` and 2,226 for AlexNet. Timings are in ``benchmarks/query_latency.py``.
"""

from __future__ import annotations

import pytest

from service.lemur.importer import import_lemur
from service.store import Store
from service.store.data import DataQuery, data_rows
from tests.service.lemur.test_importer import ARCHIVE, needs_archive


@needs_archive
def test_the_whole_archive_imports_once_and_answers_like_lemur(store: Store) -> None:
    report = import_lemur(store, ARCHIVE)
    assert (report.files, report.records, report.epochs_added) == (57_487, 377_735, 377_735)
    assert report.rejected == []
    with store.read() as session:
        best = data_rows(session, DataQuery(task=["img-classification"], dataset=["cifar-10"], only_best_accuracy=True))
        assert len(best) == 11_846
        assert len(data_rows(session, DataQuery(nn=["AlexNet"]))) == 2_226
        assert len(data_rows(session, DataQuery(max_rows=100))) == 100
    again = import_lemur(store, ARCHIVE)
    assert (again.runs_added, again.epochs_added, again.epochs_present) == (0, 0, 377_735)


pytestmark = pytest.mark.slow
