"""kill -9 of a live ingestion job mid-stream, then a restart from its last checkpoint: nothing lost,
no duplicate visible (HBase versions, Redis latest values and the Iceberg log equal the oracle)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from featurestore.config import scratch_cluster_config
from featurestore.datagen import CtrLogSpec, generate
from featurestore.environment import child_environment
from featurestore.keys import encode_key, partition_for
from ingestion.progress import read_progress
from tests.integration.test_ingest_kafka import (
    PARTITIONS,
    TABLE,
    _definitions,
    _produce,
    assert_stores_equal_the_oracle,
)

ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
STAGED_COMMIT_S = 8.0

_JOB = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from featurestore.config import scratch_cluster_config
    from ingestion.job import submit
    from tests.integration.test_ingest_kafka import TABLE, _definitions
    work, run, topic, progress, resume = sys.argv[1:6]
    config = scratch_cluster_config(work, run, flink={{"checkpoint_interval": "1s"}})
    extra = {{"execution.state-recovery.path": resume}} if resume else {{}}
    job = submit(config, _definitions(topic), [TABLE], extra_options=extra, progress_dir=progress)
    job.wait()
    """
)


def _latest_checkpoint(directory: Path) -> Path | None:
    done = sorted(directory.glob("*/chk-*/_metadata"), key=lambda p: int(p.parent.name.split("-")[1]))
    return done[-1].parent if done else None


def test_a_killed_ingestion_job_restarts_from_its_checkpoint_with_nothing_lost(
    services: object, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"test.kill.clicks.{run}"
    definitions = _definitions(topic)
    clicks = generate(CtrLogSpec(days=2, users=40, items=30, impressions_per_day=3_000, seed=13)).clicks
    clicks = clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")
    half = clicks.num_rows // 2
    _produce(topic, definitions.source("clicks").avro_schema, clicks.slice(0, half))

    script = tmp_path / "job.py"
    script.write_text(_JOB.format(root=str(ROOT)))
    env = child_environment(PYTHONPATH=str(ROOT))
    first_progress, second_progress = tmp_path / "progress-1", tmp_path / "progress-2"
    first_progress.mkdir()
    second_progress.mkdir()
    checkpoints = tmp_path / "checkpoints"
    job = [sys.executable, str(script), str(tmp_path), f"k{run}", topic]
    with _killed_at_exit([*job, str(first_progress), ""], tmp_path / "first.log", env) as alive:
        _wait(lambda: read_progress(first_progress).total_rows > 0 and _latest_checkpoint(checkpoints) is not None,
              alive, 240, "no checkpoint after versions were written")
        # The rest of the stream arrives while the job runs; it is killed while it works through it.
        _produce(topic, definitions.source("clicks").avro_schema, clicks.slice(half), create=False)
        time.sleep(2)
    latest = _latest_checkpoint(checkpoints)
    assert latest is not None

    # The restarted job reads on from the checkpoint's offsets (a restored Kafka split keeps the
    # first run's unbounded stop, so it runs until stopped). Two "tick" events per partition, a
    # window past the end, move the watermark beyond every expiry and the first tick: every
    # version of the real users is due, and every group writes the first tick's.
    until = int(pc.max(clicks["ts"]).as_py()) + max(f.window_ms or 0 for f in definitions.feature_table(TABLE).features)
    for tick in (until + DAY_MS, until + 2 * DAY_MS):
        _produce(topic, definitions.source("clicks").avro_schema, _ticks(clicks, tick), create=False)

    def written_through_the_end() -> bool:
        marks = read_progress(second_progress).watermark_ms
        return bool(marks) and all(m is not None and m >= until + DAY_MS - 1 for m in marks.values())

    with _killed_at_exit([*job, str(second_progress), latest.as_uri()], tmp_path / "second.log", env) as alive:
        _wait(written_through_the_end, alive, 300, f"the restarted job did not write through {until}")
        time.sleep(STAGED_COMMIT_S)  # the offline log's staged batches are committed every 5 s
    config = scratch_cluster_config(tmp_path, f"k{run}")
    assert_stores_equal_the_oracle(config, definitions, clicks)


@contextlib.contextmanager
def _killed_at_exit(command: list[str], log_path: Path, env: dict[str, str]) -> Iterator[Callable[[], None]]:
    """Run ``command`` in its own process group (the driver, its MiniCluster and Python workers);
    yield a check that fails the test with the log's tail if it has ended; kill -9 it on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)

    def alive() -> None:
        if process.poll() is not None:
            pytest.fail(f"the job ended (exit {process.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")

    try:
        yield alive
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait(condition: Callable[[], bool], alive: Callable[[], None], timeout_s: float, failure: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        alive()
        if time.monotonic() >= deadline:
            pytest.fail(f"{failure} within {timeout_s:.0f} s")
        time.sleep(0.5)


def _ticks(clicks: pa.Table, ts: int) -> pa.Table:
    """One event at ``ts`` per partition, for users that sort after every real one."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < PARTITIONS:
        user = f"~tick{i}"
        found.setdefault(partition_for(encode_key([user]), PARTITIONS), user)
        i += 1
    template = clicks.slice(0, 1).to_pylist()[0]
    rows = [{**template, "user_id": user, "impression_id": user, "ts": ts, "arrival_ms": ts} for user in found.values()]
    return pa.Table.from_pylist(rows, schema=clicks.schema)
