"""The weights folder: a trial whose worker wrote its file before the manager recorded its end keeps
the file until it is judged (two trials finishing together once lost the second one's weights)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from service.jobs.artifacts import ArtifactStore, _candidates, _Judged, kept_numbers


def test_only_judged_trials_lose_their_weights(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    for number in range(4):
        path = store.weights(7, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"w")
    # trials 0-2 are complete, 3 has written its file but its end is not recorded yet
    assert store.keep_only(7, {0, 1}, judged={0, 1, 2}) == [2]
    assert store.kept(7) == {0, 1, 3}
    # once judged (and better than 1), it stays and 1 goes
    assert store.keep_only(7, {0, 3}, judged={0, 1, 2, 3}) == [1]
    assert store.kept(7) == {0, 3}
    store.remove_job(7)
    assert store.kept(7) == set() and not store.job_dir(7).exists()


@pytest.mark.parametrize("directions", [["maximize"], ["minimize"], ["maximize", "minimize"], ["minimize", "minimize", "maximize"]])
@pytest.mark.parametrize("keep", [None, 1, 2, 5])
def test_judging_one_trial_at_a_time_keeps_what_judging_them_all_keeps(directions: list[str], keep: int | None) -> None:
    # retention reads the job's trials once, then folds each new trial into the few candidates
    # left: it must keep exactly what the whole list would keep, after every trial (ties included)
    rng = random.Random(len(directions) * 10 + (keep or 0))
    for _ in range(20):
        trials: list[_Judged] = []
        candidates: list[_Judged] = []
        for number in range(rng.randint(1, 40)):
            values = None if rng.random() < 0.1 else [float(rng.randint(0, 5)) for _ in directions]
            trials.append(_Judged(number, values))
            candidates = list(_candidates(directions, keep, [*candidates, trials[-1]]))  # type: ignore[arg-type]
            assert kept_numbers(directions, keep, candidates) == kept_numbers(directions, keep, trials)
