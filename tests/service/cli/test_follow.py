"""What `cellar submit --follow` and `cellar watch` print beside the bar, from a job's view."""

from __future__ import annotations

from typing import Any

from service.cli.follow import screen_text


def _job(status: str, screen: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    strategy = {"sampler": "evolution", "screen": {"proxy": "synflow", "samples": 500, "keep": 6}}
    return {"status": status, "screen": screen, "spec": {"strategy": strategy, "executor": None, **spec}}


def test_a_screened_job_says_it_is_scoring_until_its_screen_is_in() -> None:
    assert screen_text(_job("running", None)) == "scoring 500 candidates by synflow"
    assert screen_text(_job("running", {"proxy": "synflow", "samples": 500, "scored": 500, "seconds": 1.0, "kept": []})) == ""
    assert screen_text(_job("queued", None)) == ""
    assert screen_text(_job("cancelled", None)) == ""
    assert screen_text(_job("running", None, executor={"table": "nb201-cifar10"})) == ""  # the table scored them
    assert screen_text({"status": "running", "screen": None, "spec": {"strategy": {"sampler": "tpe"}}}) == ""
