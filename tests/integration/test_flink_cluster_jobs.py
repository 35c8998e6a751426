"""The `cluster` profile's jobs on the Flink standalone session cluster (JobManager + 2
TaskManagers as processes of their own, checkpoints on HDFS), not the MiniCluster: live ingestion
and a backfill give the same stored versions as the MiniCluster run, and a TaskManager killed
mid-job is recovered from the last checkpoint with nothing lost."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from backfill.run import plan_backfill, run_backfill
from featurestore import eventlog
from featurestore.config import ProfileConfig
from featurestore.datagen import CtrLogSpec, generate
from featurestore.fs import open_fs
from featurestore.services import manager
from featurestore.services.flink import TASK_MANAGERS, overview
from featurestore.services.ports import FLINK_REST_ADDRESS, HDFS_URI
from ingestion.job import IngestJob, WriteRange, submit
from registry.models import Definitions
from tests.integration.test_backfill_job import START, _config, _drop, _versions
from tests.integration.test_ingest_kafka import TABLE, _definitions, _produce

EVERYTHING = WriteRange(None, None)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def flink_cluster(services: object) -> Iterator[None]:
    report = manager.up(["flink-cluster"])
    try:
        yield
    finally:
        manager.down(only_started_by=report)


def _remote(tmp_path: Path, name: str, run: str, history: str, **flink: Any) -> ProfileConfig:
    """The cluster profile submitting to the session cluster, checkpoints on HDFS."""
    settings = {
        "mode": "remote",
        "address": FLINK_REST_ADDRESS,
        "parallelism": 2,
        "checkpoint_dir": f"{HDFS_URI}/test-flink-cluster-{run}/{name}-checkpoints",
        **flink,
    }
    return _config(tmp_path, name, run, history, flink=settings)


def _clicks(days: int, impressions_per_day: int) -> pa.Table:
    clicks = generate(
        CtrLogSpec(start=START, days=days, users=40, items=20, impressions_per_day=impressions_per_day, seed=11)
    ).clicks
    return clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")


def _rest(path: str) -> Any:
    with urllib.request.urlopen(f"http://{FLINK_REST_ADDRESS}{path}", timeout=5) as response:
        return json.loads(response.read())


def _jobs() -> dict[str, str]:
    """Every job the session cluster knows, by id: its state."""
    return {j["jid"]: j["state"] for j in _rest("/jobs/overview")["jobs"]}


def _finished_since(known: set[str]) -> set[str]:
    """The jobs that finished on the session cluster and were not among ``known``."""
    return {jid for jid, state in _jobs().items() if state == "FINISHED" and jid not in known}


def test_ingestion_and_backfill_on_the_session_cluster_equal_the_minicluster(
    flink_cluster: None, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"test.flink-cluster.clicks.{run}"
    definitions = _definitions(topic)
    source = definitions.source("clicks")
    assert source.batch is not None
    clicks = _clicks(days=3, impressions_per_day=1_500)
    history = f"{HDFS_URI}/test-flink-cluster-{run}/history"
    eventlog.land(
        clicks, history, source.batch.path, fmt="avro", avro_schema=source.avro_schema, landing_column="arrival_ms"
    )
    _produce(topic, source.avro_schema, clicks)
    users = sorted(set(clicks["user_id"].to_pylist()))[:12]
    mini = _config(tmp_path, "mini", run, history)
    live = _remote(tmp_path, "live", run, history)
    replayed = _remote(tmp_path, "replay", run, history)
    try:
        submit(mini, definitions, [TABLE], bounded=True).wait()
        expected = _versions(mini, definitions, users, EVERYTHING)
        assert expected, "the MiniCluster run wrote nothing for the sampled users"

        # the jobs the cluster knows before (an earlier test's job may still be finishing: count by id)
        known = set(_jobs())
        job = submit(live, definitions, [TABLE], bounded=True)
        job.wait()
        assert _finished_since(known) == {job.job_id}  # it ran on the session cluster
        assert _versions(live, definitions, users, EVERYTHING) == expected

        whole = plan_backfill(definitions, [TABLE], START, START + dt.timedelta(days=3 + 31))
        result = run_backfill(replayed, definitions, whole)
        assert result.versions > 0
        assert len(_finished_since(known | {job.job_id})) == 1  # the backfill's, on the cluster too
        assert _versions(replayed, definitions, users, EVERYTHING) == expected
    finally:
        for config in (mini, live, replayed):
            _drop(config)
        open_fs(history).delete(f"{HDFS_URI}/test-flink-cluster-{run}")


def _completed_checkpoints(job_id: str) -> int:
    counts = _rest(f"/jobs/{job_id}/checkpoints")["counts"]
    return int(counts["completed"])


def _wait(predicate: Any, what: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def _taskmanager_running_the_sink(job_id: str) -> tuple[str, int]:
    """The component name and pid of a TaskManager running a subtask of the job's last vertex (the
    service names each TaskManager's resource id after its component)."""
    vertex = _rest(f"/jobs/{job_id}")["vertices"][-1]["id"]
    hosts = sorted({s["taskmanager-id"] for s in _rest(f"/jobs/{job_id}/vertices/{vertex}")["subtasks"]})
    pids = manager.service("flink-cluster").pids()
    assert hosts and hosts[0] in pids, f"subtasks on {hosts}, the service's TaskManagers are {sorted(pids)}"
    return hosts[0], pids[hosts[0]]


def test_a_taskmanager_killed_mid_job_is_recovered_from_the_checkpoint(
    flink_cluster: None, tmp_path: Path
) -> None:
    """A live job on the cluster: the first half of the events, a checkpoint, the TaskManager of a
    sink killed (-9), the second half produced while the job recovers on the other TaskManager.
    Every version up to the job's watermark equals the MiniCluster's over the same events."""
    run = uuid.uuid4().hex[:8]
    topic = f"test.flink-cluster.kill.{run}"
    definitions: Definitions = _definitions(topic)
    source = definitions.source("clicks")
    clicks = _clicks(days=6, impressions_per_day=3_000)
    half = len(clicks) // 2
    history = f"{HDFS_URI}/test-flink-cluster-{run}/history"
    users = sorted(set(clicks["user_id"].to_pylist()))[:12]
    mini = _config(tmp_path, "mini", run, history)
    killed = _remote(tmp_path, "killed", run, history, checkpoint_interval="1s", restart_delay="1s")
    job: IngestJob | None = None
    try:
        _produce(topic, source.avro_schema, clicks.slice(0, half))
        job = submit(killed, definitions, [TABLE])
        job_id = job.job_id
        _wait(lambda: _completed_checkpoints(job_id) >= 1 and sum(job.progress().rows.values()) > 0, "a checkpoint")
        component, pid = _taskmanager_running_the_sink(job_id)
        os.kill(pid, signal.SIGKILL)
        _produce(topic, source.avro_schema, clicks.slice(half), create=False)

        # every version before `until` is final once each sink's watermark has passed it
        until = pc.max(clicks["ts"]).as_py() - DAY_MS
        _wait(lambda: _written_through(job) >= until, f"the job's watermark to pass {until}")
        failures = _rest(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        assert failures, "the job saw no failure: the kill did not hit it"
        assert overview()["taskmanagers"] == TASK_MANAGERS - 1, f"{component} (pid {pid}) was not killed"
        job.cancel()
        job = None

        submit(mini, definitions, [TABLE], bounded=True).wait()
        before = WriteRange(None, until)
        expected = _versions(mini, definitions, users, before)
        assert expected, "the MiniCluster run wrote nothing for the sampled users"
        assert _versions(killed, definitions, users, before) == expected  # nothing lost, nothing extra
    finally:
        if job is not None:
            job.cancel()
        manager.up(["flink-cluster"])  # a component is gone: restarts the whole cluster
        for config in (mini, killed):
            _drop(config)
        open_fs(history).delete(f"{HDFS_URI}/test-flink-cluster-{run}")


def _written_through(job: IngestJob) -> int:
    """The oldest watermark over the job's sinks (-1 while one has reported none)."""
    marks = job.progress().watermark_ms.values()
    return min((m if m is not None else -1 for m in marks), default=-1)


def test_export_on_the_session_cluster(flink_cluster: None, tmp_path: Path) -> None:
    """`export --engine flink` with `flink.mode: remote`: the join runs on the TaskManagers (the
    cluster's own Hadoop reads the Parquet inputs; the work directory is on this machine's disk,
    which the TaskManagers on loopback share) and gives the DuckDB engine's rows on the export
    tests' data (three tables, three TTLs), inclusive and strict."""
    from featurestore.config import FlinkConfig
    from featurestore.pit import ExportOptions, get_historical_features
    from ingestion.flink_export import for_profile
    from tests.integration.test_flink_export import FEATURES, data_set

    data = data_set()
    join = for_profile(FlinkConfig(mode="remote", address=FLINK_REST_ADDRESS, parallelism=2))
    assert join.options is not None and join.options["execution.target"] == "remote"
    known = set(_jobs())
    for strict in (False, True):
        options = ExportOptions(strict=strict)
        duck = get_historical_features(data["samples"], FEATURES, data["sources"], event_time="ts", options=options)
        flink = get_historical_features(data["samples"], FEATURES, data["sources"], event_time="ts",
                                        options=options, join=join)
        assert flink.equals(duck)
    assert len(_finished_since(known)) == 2  # the joins ran on the cluster
