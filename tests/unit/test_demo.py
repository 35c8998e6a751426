"""`featurestore demo` end to end on a small log: every step runs and its outputs exist."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner
from rich.console import Console

from sdk.cli import main
from sdk.demo import run_demo


def test_demo_runs_every_step_on_the_local_profile(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "out", days=8, impressions_per_day=1_500, console=Console(quiet=True))
    assert [title.split(".")[0] for title, _, _ in report.steps] == [str(i) for i in range(1, 11)]
    export = tmp_path / "out" / "training" / "ctr_deepfm_v1.parquet"
    assert pq.read_metadata(export).num_rows > 0
    assert (tmp_path / "out" / "training" / "ctr_deepfm_v1.parquet.manifest.json").exists()
    assert report.figures["versions_written"] > 0
    assert report.figures["today_versions_written"] > 0 and report.figures["today_samples"] > 0  # after the seam
    assert report.figures["samples_matching_oracle"] == 1.0  # the Flink label join equals the oracle
    assert 0.5 < report.figures["auc_point_in_time"] < report.figures["auc_leaky"]
    assert report.figures["as_of_matches_export"] is True


def test_demo_command_is_registered() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "examples/ctr" in result.output
