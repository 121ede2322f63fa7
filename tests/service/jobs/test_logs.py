"""What a trial prints and warns is kept per trial: captured on the worker, call by call, bounded,
stored with the trial, and kept for a trial that failed (with what it printed before failing)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from service.store import Trial
from tests.search_spaces.lemur_models import MLP_CODE
from tests.service.jobs.test_manager import make_store, manager, run, submit, trials
from workers.inline_executor import InlineExecutor
from workers.runner import LOG_LIMIT

LEARN = "    def learn(self, train_data):\n"
CHATTY = MLP_CODE.replace(
    LEARN,
    LEARN + "        import sys, warnings\n"
    "        self.calls = getattr(self, 'calls', 0) + 1\n"
    "        print(f'learning, call {self.calls}')\n"
    "        print('to stderr', file=sys.stderr)\n"
    "        warnings.warn('this model learns slowly', UserWarning)\n",
)
FAILING = CHATTY.replace(
    "        print(f'learning, call {self.calls}')\n",
    "        print(f'learning, call {self.calls}')\n"
    "        if self.calls == 2:\n"
    "            raise RuntimeError('gave up in the second epoch')\n",
)
FLOODING = MLP_CODE.replace(LEARN, LEARN + "        print('x' * 100_000)\n")


def _logs(store, job_id: int) -> dict[int, str]:  # noqa: ANN001
    with store.read() as session:
        return dict(session.execute(select(Trial.number, Trial.log).where(Trial.job_id == job_id)).all())


def test_prints_and_warnings_of_every_epoch_are_kept_per_trial(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    job_id = submit(store, search_space={"kind": "code", "params": {"nn_code": CHATTY}},
                    budget={"max_trials": 2, "epochs": 3, "parallelism": 2})
    assert run(manager(store, InlineExecutor(shuffle_seed=1)), job_id).status == "succeeded"
    for number, log in _logs(store, job_id).items():
        assert log is not None, number
        assert [line for line in log.splitlines() if line.startswith("learning")] == [
            "learning, call 1", "learning, call 2", "learning, call 3"
        ]
        assert log.count("to stderr") == 3
        assert "UserWarning: this model learns slowly" in log


def test_a_failed_trial_keeps_what_it_printed_before_failing(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    job_id = submit(store, search_space={"kind": "code", "params": {"nn_code": FAILING}},
                    budget={"max_trials": 1, "epochs": 3, "parallelism": 1})
    run(manager(store, InlineExecutor()), job_id)
    [trial] = trials(store, job_id)
    assert trial.state == "failed" and "gave up in the second epoch" in (trial.error or "")
    log = _logs(store, job_id)[0]
    assert "learning, call 1" in log and "learning, call 2" in log  # the failing call's output too


def test_a_log_is_bounded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "cellar.db")
    job_id = submit(store, search_space={"kind": "code", "params": {"nn_code": FLOODING}},
                    budget={"max_trials": 1, "epochs": 2, "parallelism": 1})
    assert run(manager(store, InlineExecutor()), job_id).status == "succeeded"
    log = _logs(store, job_id)[0]
    assert LOG_LIMIT <= len(log) < LOG_LIMIT + 200
    assert log.rstrip().endswith(f"[cellar: output beyond {LOG_LIMIT:,} characters dropped]")
