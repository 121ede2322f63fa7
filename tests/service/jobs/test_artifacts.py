"""The weights folder: a trial whose worker wrote its file before the manager recorded its end keeps
the file until it is judged (two trials finishing together once lost the second one's weights)."""

from __future__ import annotations

from pathlib import Path

from service.jobs.artifacts import ArtifactStore


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
