"""`featurestore backfill` refuses a pace it cannot honour before any job starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdk.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pace-from", "2026-10-03T12:00:00"], "--pace-from needs a pace"),
        (["--speed-up", "100", "--pace-from", "2026-10-09"], "--pace-from 2026-10-09T00:00:00+00:00 is outside"),
        (["--speed-up", "100", "--pace-from", "2026-10-01T23:59:59"], "is outside the backfill's range"),
    ],
)
def test_a_pace_start_it_cannot_honour_is_an_error_that_says_why(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    repo = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, repo)
    runner = CliRunner()
    assert runner.invoke(main, ["apply", "--repo", str(repo)]).exit_code == 0
    command = ["backfill", "--repo", str(repo), "--profile", "local", "--from", "2026-10-02", "--to", "2026-10-04"]
    result = runner.invoke(main, command + extra)
    assert result.exit_code == 1 and message in result.output, result.output
