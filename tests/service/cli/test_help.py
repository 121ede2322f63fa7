"""``cellar --help`` and every command's: flags read as flags."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from service.cli import app

COMMANDS = [
    [], ["serve"], ["migrate"], ["downgrade"], ["submit"], ["jobs"], ["trials"], ["trial"], ["cancel"], ["watch"], ["pareto"],
    ["export"], ["best"], ["weights"], ["logs"], ["extend"], ["delete"], ["export-optuna"], ["mcp"], ["arch"],
    ["import-lemur"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"], ["table"], ["table", "build"], ["table", "export"], ["table", "import"], ["table", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cellar")
def test_help_shows_flags_without_a_value(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    # a flag takes no value: typer 0.29 printed "--json <bool>", as if it took one
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output


def test_the_trial_command_takes_a_job_and_a_number() -> None:
    result = CliRunner().invoke(app, ["trial", "--help"], env={"COLUMNS": "120"})
    assert "JOB_ID" in result.output.upper() and "NUMBER" in result.output.upper()
    assert "number in the job" in result.output


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ([], ["serve"], ["mcp"], ["table"], ["keys"])], ids=" ".join)
def test_every_command_but_the_servers_speaks_json(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert "--json" in result.output, command
