"""The store on SQLite and PostgreSQL: migrations, rows, LEMUR queries, concurrency, errors."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import column, insert, inspect, select, table

from service.errors import ConflictError, NotFoundError, StoreError, StoreSchemaError
from service.store import (
    VERSION_TABLE,
    Architecture,
    Base,
    Job,
    JobStatus,
    Store,
    Trial,
    TrialEpoch,
    TrialState,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from service.store import queries
from service.store.changes import include_name
from service.store.data import DataQuery, data_rows

CELLAR_TABLES = {"cellar_jobs", "cellar_architectures", "cellar_trials", "cellar_trial_epochs", "cellar_sources", "cellar_nn_stats"}


def tables(store: Store) -> set[str]:
    with store.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


def test_migrations_upgrade_downgrade_upgrade(empty_store: Store) -> None:
    with pytest.raises(StoreSchemaError, match="has no Cellar tables.*run `cellar migrate`"):
        check_schema(empty_store)
    upgrade(empty_store)
    assert CELLAR_TABLES | {VERSION_TABLE} <= tables(empty_store)
    assert "alembic_version" not in tables(empty_store)
    assert current_revision(empty_store) == head_revision() == "0015"
    check_schema(empty_store)
    downgrade(empty_store, "base")
    assert not (CELLAR_TABLES & tables(empty_store))
    assert current_revision(empty_store) is None
    upgrade(empty_store)
    assert CELLAR_TABLES <= tables(empty_store)


def test_every_revision_upgrades_from_the_one_before(empty_store: Store) -> None:
    upgrade(empty_store, "0001")
    now = datetime.now(UTC)
    with empty_store.write() as session:  # rows written by the older schema survive the upgrade
        session.execute(
            insert(_as_of_0001(Job)).values(
                job_id=1, name="t", status="running", search_space="nb201", dataset="digits",
                task="img-classification", metric="acc", spec={}, cancel_requested=False, created_at=now,
                updated_at=now,
            )
        )
        session.execute(
            insert(_as_of_0001(Trial)).values(
                job_id=1, number=0, state="complete", params={}, distributions={}, prm={"lr": 0.1},
                seed=3, epochs=1, origin="sampler", requeued=False, created_at=now,
            )
        )
    upgrade(empty_store)
    with empty_store.read() as session:
        trial = session.scalars(select(Trial)).one()
        assert trial.latency_ms is None and trial.prm == {"lr": 0.1} and trial.seed == 3
        assert trial.cache_hit is False and trial.cache_key is None
        assert session.get(Job, 1).lease_owner is None  # type: ignore[union-attr]
    downgrade(empty_store, "0001")
    assert current_revision(empty_store) == "0001"


def _as_of_0001(model: type[Base]) -> Any:
    """The model's table with only the columns revision 0001 created (later ones carry defaults)."""
    later = {"latency_ms", "lease_owner", "lease_expires_at", "cache_hit", "cache_key"}
    return table(model.__tablename__, *(column(c.name, c.type) for c in model.__table__.columns if c.name not in later))


def test_models_and_migrations_agree(store: Store) -> None:
    with store.engine.connect() as connection:
        opts = {"compare_type": True, "version_table": VERSION_TABLE, "include_name": include_name}
        context = MigrationContext.configure(connection, opts=opts)
        assert compare_metadata(context, Base.metadata) == []


def test_optunas_tables_live_beside_cellars(store: Store) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(store.url.render_as_string(hide_password=False))
    study = optuna.create_study(storage=storage, study_name="beside-cellar")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.engine.dispose()
    names = tables(store)
    assert {"studies", "trials", "alembic_version"} <= names and CELLAR_TABLES <= names
    check_schema(store)  # Optuna's version table does not confuse Cellar's
    downgrade(store, "base")
    assert "studies" in tables(store) and not (CELLAR_TABLES & tables(store))


def make_job(session, *, task: str = "img-classification", dataset: str = "digits", status: str = JobStatus.RUNNING) -> Job:  # noqa: ANN001
    job = queries.create_job(
        session,
        name="t",
        search_space="nb201",
        dataset=dataset,
        task=task,
        metric="acc",
        spec={"objectives": [{"metric": "val_accuracy", "direction": "maximize"}], "budget": {"max_trials": 3}},
    )
    job.status = status
    return job


def make_trial(session, job: Job, number: int, nn: str, accuracies: list[float], **fields) -> Trial:  # noqa: ANN001
    arch = queries.get_or_create_architecture(
        session,
        search_space="nb201",
        space_params={"channels": 4},
        encoding=f"arch-{nn}",
        arch_hash=f"{nn:0<64}"[:64],
        dedup_hash="d" * 64,
        in_shape=[1, 1, 8, 8],
        out_shape=[10],
        nn_name=nn,
        nn_code=f"# code of {nn}",
    )
    metric = queries.get_or_create_source(session, kind="metric", name="acc", code="def acc(): pass\n")
    trial = Trial(
        job_id=job.job_id,
        number=number,
        architecture_id=arch.architecture_id,
        state=fields.pop("state", TrialState.COMPLETE),
        params={"edge_1_0": "none"},
        distributions={},
        prm={"lr": 0.05, "batch": 64, "epoch": len(accuracies), "transform": "norm"},
        seed=0,
        epochs=len(accuracies),
        metric_source_id=metric.source_id,
        **fields,
    )
    session.add(trial)
    session.flush()
    for epoch, accuracy in enumerate(accuracies, start=1):
        session.add(TrialEpoch(trial_id=trial.trial_id, epoch=epoch, val_metric=accuracy, loss=1.0 / epoch, elapsed_seconds=0.5 * epoch))
    return trial


def test_jobs_trials_and_epochs_round_trip(store: Store) -> None:
    with store.write() as session:
        job = make_job(session)
        trial = make_trial(session, job, 0, "nb201-aaa", [0.5, 0.75], values=[0.75], split={"seed": 0, "sizes": [1, 2, 3]})
        job_id, trial_id = job.job_id, trial.trial_id
    with store.read() as session:
        job = queries.get_job(session, job_id)
        assert job.spec["budget"] == {"max_trials": 3}
        assert job.created_at.tzinfo is not None and job.created_at.utcoffset() == UTC.utcoffset(None)
        [trial] = queries.list_trials(session, job_id)
        assert trial.trial_id == trial_id and trial.values == [0.75]
        assert [(e.epoch, e.val_metric) for e in trial.epoch_rows] == [(1, 0.5), (2, 0.75)]
        assert trial.architecture.nn_name == "nb201-aaa"
        assert queries.trial_counts(session, [job_id])[job_id] == {"total": 1, "running": 0, "complete": 1, "pruned": 0, "failed": 0}
        with pytest.raises(NotFoundError, match="job 999 does not exist"):
            queries.get_job(session, 999)


def test_seeds_up_to_two_to_the_32_fit(store: Store) -> None:
    with store.write() as session:
        job = make_job(session)
        trial = make_trial(session, job, 0, "nb201-aaa", [0.5])
        trial.seed = 2**32 - 1
    with store.read() as session:
        assert session.scalars(select(Trial.seed)).one() == 2**32 - 1


def test_architectures_and_sources_are_stored_once(store: Store) -> None:
    with store.write() as session:
        job = make_job(session)
        make_trial(session, job, 0, "nb201-aaa", [0.5])
        make_trial(session, job, 1, "nb201-aaa", [0.6])
    with store.read() as session:
        assert len(session.scalars(select(Architecture)).all()) == 1
        assert len({t.metric_source_id for t in session.scalars(select(Trial))}) == 1


def test_a_failed_write_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with store.write() as session:
            make_job(session)
            session.flush()
            raise RuntimeError("boom")
    with store.read() as session:
        assert session.scalars(select(Job)).all() == []


def test_cancel_moves_queued_jobs_at_once_and_flags_running_ones(store: Store) -> None:
    with store.write() as session:
        queued = make_job(session, status=JobStatus.QUEUED).job_id
        running = make_job(session, status=JobStatus.RUNNING).job_id
        done = make_job(session, status=JobStatus.SUCCEEDED).job_id
    with store.write() as session:
        assert queries.request_cancel(session, queued).status == JobStatus.CANCELLED
        job = queries.request_cancel(session, running)
        assert job.status == JobStatus.RUNNING and job.cancel_requested
        with pytest.raises(ConflictError, match="already succeeded"):
            queries.request_cancel(session, done)


def _rows(store: Store, **filters) -> list[dict]:  # noqa: ANN003
    with store.read() as session:
        return data_rows(session, DataQuery(**filters))


def test_data_rows_have_lemurs_columns_and_order(store: Store) -> None:
    with store.write() as session:
        job = make_job(session)
        make_trial(session, job, 0, "nb201-bbb", [0.2, 0.4])
        make_trial(session, job, 1, "nb201-aaa", [0.3, 0.5])
    rows = _rows(store)
    assert [(r["nn"], r["epoch"]) for r in rows] == [("nb201-aaa", 1), ("nb201-aaa", 2), ("nb201-bbb", 1), ("nb201-bbb", 2)]
    lemur = ["id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id", "epoch",
             "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm"]
    assert list(rows[0])[: len(lemur)] == lemur
    assert rows[1]["duration"] == 1_000_000_000  # LEMUR's unit: nanoseconds, cumulative
    assert rows[0]["prm"] == {"lr": 0.05, "batch": 64, "epoch": 2, "transform": "norm"}
    assert rows[0]["prm_id"] == rows[1]["prm_id"] and len(rows[0]["prm_id"]) == 32
    assert rows[0]["metric_code"] == "def acc(): pass\n"
    assert len({r["id"] for r in rows}) == 4


def test_only_best_accuracy_keeps_the_best_rows_of_each_group_with_ties(store: Store) -> None:
    with store.write() as session:
        one = make_job(session)
        two = make_job(session)
        make_trial(session, one, 0, "nb201-aaa", [0.3, 0.9])
        make_trial(session, two, 0, "nb201-aaa", [0.6, 0.9])  # ties at epoch 2
        make_trial(session, two, 1, "nb201-bbb", [0.1, 0.2])
    rows = _rows(store, only_best_accuracy=True)
    assert [(r["nn"], r["epoch"], r["accuracy"]) for r in rows] == [
        ("nb201-aaa", 1, 0.6),
        ("nb201-aaa", 2, 0.9),
        ("nb201-aaa", 2, 0.9),
        ("nb201-bbb", 1, 0.1),
        ("nb201-bbb", 2, 0.2),
    ]
    # the same answer as computing LEMUR's rule by hand over all rows
    everything = _rows(store)
    best = {}
    for r in everything:
        key = (r["task"], r["dataset"], r["metric"], r["nn"], r["epoch"])
        best[key] = max(best.get(key, 0.0), r["accuracy"])
    expected = [r for r in everything if r["accuracy"] == best[(r["task"], r["dataset"], r["metric"], r["nn"], r["epoch"])]]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in expected)


def test_data_filters_paging_and_duplicates(store: Store) -> None:
    with store.write() as session:
        digits = make_job(session)
        other = make_job(session, dataset="cifar-10")
        original = make_trial(session, digits, 0, "nb201-aaa", [0.3, 0.5])
        make_trial(session, digits, 1, "nb201-aaa", [], duplicate_of_trial_id=original.trial_id)
        make_trial(session, other, 0, "nb201-ccc", [0.7])
    # a duplicate reuses its original's result: it cannot get epochs (rows) of its own
    with pytest.raises(ValueError, match="duplicates trial"), store.write() as session:
        make_trial(session, digits, 2, "nb201-aaa", [0.3], duplicate_of_trial_id=original.trial_id)
    assert {r["dataset"] for r in _rows(store, dataset=["digits"])} == {"digits"}
    assert len(_rows(store, dataset=["digits"])) == 2  # the duplicate trial adds no rows
    assert len(_rows(store, dataset=["digits", "cifar-10"])) == 3
    assert [r["epoch"] for r in _rows(store, epoch=[2])] == [2]
    assert [r["nn"] for r in _rows(store, nn=["nb201-ccc"])] == ["nb201-ccc"]
    assert _rows(store, task=["txt-generation"]) == []
    # ordered by task, dataset, metric, nn, epoch: cifar-10 before digits
    assert [(r["nn"], r["epoch"]) for r in _rows(store, max_rows=2)] == [("nb201-ccc", 1), ("nb201-aaa", 1)]
    assert [(r["nn"], r["epoch"]) for r in _rows(store, max_rows=2, offset=2)] == [("nb201-aaa", 2)]


def test_concurrent_writers_never_see_a_locked_database(store: Store) -> None:
    # Two Store objects share no lock: like two processes. Each transaction reads, then writes,
    # the pattern that makes SQLite answer "database is locked" at once when a deferred
    # transaction tries to upgrade; write transactions that begin IMMEDIATE wait their turn.
    with store.write() as session:
        job_id = make_job(session).job_id
    other = Store(store.url.render_as_string(hide_password=False))
    errors: list[BaseException] = []

    def writer(target: Store, offset: int) -> None:
        try:
            for number in range(offset, offset + 200, 4):
                with target.write() as session:
                    seen = len(session.scalars(select(Trial).where(Trial.job_id == job_id)).all())
                    session.add(Trial(job_id=job_id, number=number, state=TrialState.RUNNING, params={"seen": seen},
                                      distributions={}, prm={}, seed=0, epochs=1))
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(store if i % 2 else other, i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert errors == []
    with store.read() as session:
        rows = session.scalars(select(Trial)).all()
        assert len(rows) == 200
        if store.is_sqlite:  # one writer at a time: each transaction saw every earlier commit
            assert sorted(t.params["seen"] for t in rows) == list(range(200))


def test_an_unreachable_store_says_what_to_check(tmp_path) -> None:  # noqa: ANN001
    for url in (
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
        f"sqlite:///{tmp_path}/no/such/dir/cellar.db",
    ):
        store = Store(url)
        with pytest.raises(StoreError, match="Check CELLAR_DATABASE_URL"):
            current_revision(store)
        store.dispose()


def test_nn_prefixes_and_unique_nn(store: Store) -> None:
    with store.write() as session:
        digits = make_job(session)
        other = make_job(session, dataset="cifar-10")
        make_trial(session, digits, 0, "rag-aaa", [0.3, 0.5])
        make_trial(session, digits, 1, "rag-aaa", [0.6, 0.4])
        make_trial(session, other, 0, "rag-aaa", [0.2, 0.65])  # its best row is on cifar-10
        make_trial(session, digits, 2, "unq-bbb", [0.7, 0.7])  # a tie: the earlier epoch stays
        make_trial(session, digits, 3, "nb201-ccc", [0.9])
        make_trial(session, digits, 4, "rag_x", [0.8])  # "_" is a character, not a LIKE wildcard
    assert {r["nn"] for r in _rows(store, nn_prefixes=["rag-", "unq-"])} == {"rag-aaa", "unq-bbb"}
    assert {r["nn"] for r in _rows(store, nn_prefixes=["rag_"])} == {"rag_x"}
    assert _rows(store, nn_prefixes=["%"]) == []  # bound and escaped, never a pattern
    unique = _rows(store, unique_nn=True)
    assert [(r["nn"], r["dataset"], r["epoch"], r["accuracy"]) for r in unique] == [
        ("rag-aaa", "cifar-10", 2, 0.65),
        ("nb201-ccc", "digits", 1, 0.9),
        ("rag_x", "digits", 1, 0.8),
        ("unq-bbb", "digits", 1, 0.7),
    ]
    # with only_best_accuracy and a dataset filter: the best of what the filter leaves
    both = _rows(store, unique_nn=True, only_best_accuracy=True, dataset=["digits"], nn_prefixes=["rag-"])
    assert [(r["nn"], r["epoch"], r["accuracy"]) for r in both] == [("rag-aaa", 1, 0.6)]
