"""The ingestion job's Flink options and how a failed job is reported (no JVM)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from featurestore.config import FlinkConfig
from featurestore.errors import ConfigError, TimeSemanticsError
from ingestion.job import WriteRange, flink_options, job_failure


def test_a_failing_job_gives_up_after_the_configured_restarts() -> None:
    options = flink_options(FlinkConfig(restart_attempts=2, restart_delay="3s", checkpoint_dir="/tmp/checkpoints"))
    assert options["restart-strategy.type"] == "fixed-delay"
    assert options["restart-strategy.fixed-delay.attempts"] == "2"
    assert options["restart-strategy.fixed-delay.delay"] == "3000 ms"


def test_a_local_job_gets_the_configured_managed_memory_and_a_remote_one_its_clusters() -> None:
    local = flink_options(FlinkConfig(checkpoint_dir="/tmp/checkpoints"))
    assert local["taskmanager.memory.managed.size"] == "1g"
    assert flink_options(FlinkConfig(checkpoint_dir="/c", managed_memory="512m"))[
        "taskmanager.memory.managed.size"] == "512m"
    assert "taskmanager.memory.managed.size" not in flink_options(FlinkConfig(checkpoint_dir="/c", managed_memory=None))
    remote = flink_options(FlinkConfig(checkpoint_dir="/c", mode="remote", address="127.0.0.1:8081"))
    assert "taskmanager.memory.managed.size" not in remote
    with pytest.raises(ValidationError, match="managed_memory"):
        FlinkConfig(managed_memory="a lot")


def test_the_bundle_time_is_passed_in_milliseconds() -> None:
    key = "python.fn-execution.bundle.time"
    assert flink_options(FlinkConfig(checkpoint_dir="/c"))[key] == "1000"
    assert flink_options(FlinkConfig(checkpoint_dir="/c", bundle_time="100ms"))[key] == "100"
    with pytest.raises(ConfigError, match=r"flink\.bundle_time must be longer than 0"):
        flink_options(FlinkConfig(checkpoint_dir="/c", bundle_time="0s"))
    with pytest.raises(TimeSemanticsError, match=r"flink\.bundle_time 'soon' is not a duration"):
        flink_options(FlinkConfig(checkpoint_dir="/c", bundle_time="soon"))


def test_a_failed_job_reads_as_its_innermost_cause() -> None:
    trace = "\n".join(
        [
            "py4j.protocol.Py4JJavaError: An error occurred while calling o12.await.",
            ": java.util.concurrent.ExecutionException: org.apache.flink.table.api.TableException: Failed to wait",
            "Caused by: org.apache.flink.runtime.JobException: Recovery is suppressed by FixedDelayRestartBackoff",
            "  File \"/work/main/ingestion/store_sink.py\", line 87, in eval",
            "featurestore.errors.StoreError: hbase Thrift2 at 127.0.0.1:9091 refused the request: TIOError: x",
            "\tat org.apache.beam.runners.fnexecution.control.FnApiControlClient",
        ]
    )
    error = job_failure(RuntimeError(trace))
    cause = "StoreError: hbase Thrift2 at 127.0.0.1:9091 refused the request: TIOError: x"
    assert error.message == f"the Flink job failed: {cause}"
    replay = job_failure(RuntimeError("Caused by: java.io.IOException: hdfs-replay: file 3 row 7: null key"))
    assert replay.message == "the Flink job failed: hdfs-replay: file 3 row 7: null key"
    assert job_failure(RuntimeError("something odd")).message == "the Flink job failed: something odd"


def test_write_ranges_become_sql() -> None:
    assert WriteRange().where() == "TRUE"
    assert WriteRange(5, None).where() == "`version_ms` >= 5"
    assert WriteRange(5, 9).where() == "`version_ms` >= 5 AND `version_ms` < 9"


def test_a_submit_that_fails_leaves_no_progress_directory(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    import pytest

    from featurestore.config import load_config
    from featurestore.errors import ValidationError
    from ingestion import job
    from registry.repo import load_repo

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # mkdtemp's default root for this test
    seen: list[str] = []

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(args[4])  # the progress directory it was given
        raise ValidationError("no such table")

    monkeypatch.setattr(job, "_submit", failing)
    config = load_config(tmp_path, profile="local", environ={})
    definitions = load_repo(Path(__file__).resolve().parents[2] / "examples" / "ctr")
    with pytest.raises(ValidationError):
        job.submit(config, definitions, history=job.History(0, 1))
    assert seen and seen[0].startswith(str(tmp_path)) and not Path(seen[0]).exists()


def test_more_flink_options_from_the_profile_come_last() -> None:
    flink = FlinkConfig(checkpoint_dir="/c", options={"pipeline.auto-watermark-interval": "50 ms",
                                                       "python.fn-execution.bundle.time": 250,
                                                       "pipeline.object-reuse": False})
    options = flink_options(flink)
    assert options["pipeline.auto-watermark-interval"] == "50 ms"
    assert options["python.fn-execution.bundle.time"] == "250"  # over bundle_time's
    assert options["pipeline.object-reuse"] == "false"
