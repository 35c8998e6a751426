"""`featurestore ingest status` from the job record, the progress files and the checkpoint directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from featurestore.config import load_config
from ingestion.progress import ProgressWriter
from ingestion.status import JobRecord, checkpoint_age_s, ingest_status
from sdk.cli import main


def _record(tmp_path: Path) -> JobRecord:
    progress = tmp_path / "progress"
    progress.mkdir()
    return JobRecord(job_id="abc123", started_ms=1_000_000, tables=("user_click_features",), samples=("s",),
                     consumer_groups={"featurestore.user_click_features": "clicks"},
                     progress_dir=str(progress), checkpoint_dir=str(tmp_path / "checkpoints"))


def test_the_record_round_trips(tmp_path: Path) -> None:
    record = _record(tmp_path)
    record.save(tmp_path)
    assert JobRecord.load(tmp_path) == record


def test_checkpoint_age_is_the_newest_completed_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints" / "abc123"
    assert checkpoint_age_s(str(tmp_path / "checkpoints"), "abc123") is None
    for n, mtime in ((1, 100.0), (2, 150.0)):
        (root / f"chk-{n}").mkdir(parents=True)
        (root / f"chk-{n}" / "_metadata").write_text("x")
        os.utime(root / f"chk-{n}" / "_metadata", (mtime, mtime))
    (root / "chk-3").mkdir()  # in progress: no _metadata yet
    assert checkpoint_age_s(str(tmp_path / "checkpoints"), "abc123", now=160.0) == 10.0


def test_status_sums_the_sinks_and_measures_freshness(tmp_path: Path) -> None:
    record = _record(tmp_path)
    for group, rows, newest in (("w_1d", 10, 1_004_000), ("projections", 5, 1_005_000)):
        writer = ProgressWriter(record.progress_dir, "user_click_features", group)
        writer.add(rows, newest, newest)
        writer.flush()
    samples = ProgressWriter(record.progress_dir, "s", "__samples")
    samples.add(3, 1_009_000)
    samples.close()
    config = load_config(tmp_path, profile="local")
    found = ingest_status(config, record, now_ms=1_010_000)
    assert found.rows_by_table == {"user_click_features": 15}
    assert found.samples_by_table == {"s": 3}
    assert found.newest_version_ms == 1_005_000  # samples are not versions
    assert found.freshness_s == 5.0
    assert found.running_s == 10.0
    assert found.open_sinks == 2
    assert found.consumer_lag == {}  # the local profile has no Kafka


def test_status_command_without_a_job_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ingest", "status", "--repo", str(tmp_path)])
    assert result.exit_code == 1
    assert "no ingestion job recorded" in result.output and "featurestore ingest" in result.output


def test_status_command_prints_json(tmp_path: Path) -> None:
    _record(tmp_path).save(tmp_path)
    result = CliRunner().invoke(main, ["ingest", "status", "--repo", str(tmp_path), "--profile", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["job_id"] == "abc123"
