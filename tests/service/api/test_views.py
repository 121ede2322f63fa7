"""Best trial and the non-dominated set, computed from trials as the API returns them."""

from __future__ import annotations

from service.api.views import best_trials, non_dominated
from service.store import Job, Trial, TrialState


def trial(number: int, values: list[float] | None, state: str = TrialState.COMPLETE, duplicate_of: int | None = None) -> Trial:
    return Trial(trial_id=number + 100, number=number, values=values, state=state, duplicate_of_trial_id=duplicate_of)


def job(*directions: str) -> Job:
    return Job(spec={"objectives": [{"metric": f"m{i}", "direction": d} for i, d in enumerate(directions)]})


def test_single_objective_best_follows_the_direction() -> None:
    trials = [trial(0, [0.5]), trial(1, [0.9]), trial(2, [0.7]), trial(3, [0.99], state=TrialState.PRUNED)]
    assert best_trials(job("maximize"), trials)[0].number == 1
    assert best_trials(job("minimize"), trials)[0].number == 0
    assert best_trials(job("maximize"), [trial(0, None, state=TrialState.FAILED)]) == (None, [])


def test_ties_go_to_the_earliest_trial_and_duplicates_are_not_counted_twice() -> None:
    trials = [trial(0, [0.9]), trial(1, [0.9]), trial(2, [0.9], duplicate_of=100)]
    best, front = best_trials(job("maximize"), trials)
    assert best.number == 0
    assert [t.number for t in front] == [0, 1]


def test_non_dominated_set_of_accuracy_against_parameters() -> None:
    # maximise accuracy, minimise parameters
    trials = [
        trial(0, [0.90, 50_000]),
        trial(1, [0.95, 80_000]),
        trial(2, [0.85, 60_000]),  # worse than 0 on both
        trial(3, [0.80, 10_000]),
        trial(4, [0.95, 90_000]),  # same accuracy as 1, more parameters
    ]
    front = non_dominated(trials, ["maximize", "minimize"])
    assert sorted(t.number for t in front) == [0, 1, 3]
    assert best_trials(job("maximize", "minimize"), trials)[0] is None
