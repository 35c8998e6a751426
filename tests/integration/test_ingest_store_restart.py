"""A store goes down during live ingestion and comes back: the sinks retry with backoff, the error
is visible while it is down, and nothing is lost (Redis, HBase and the Iceberg log equal the oracle).

- The online cache: a throwaway Redis (own port and state) stands in for the shared one, so other
  tests never see it go down.
- The versioned store: HBase in pseudo-distributed mode (`hbase-cluster`, its own ports and state
  beside the shared standalone one): every process of it (ZooKeeper, master, region servers,
  Thrift servers) killed with -9 mid-stream, then started again, recovering its write-ahead logs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.config import scratch_cluster_config
from featurestore.datagen import CtrLogSpec, generate
from featurestore.services import hbase_cluster, manager
from featurestore.services.process import Layout, kill_hard
from featurestore.services.redis import RedisService
from ingestion.job import submit
from registry.models import Definitions
from tests.integration.test_ingest_kafka import TABLE, _definitions, _produce, assert_stores_equal_the_oracle
from tests.integration.test_ingest_kill import DAY_MS, STAGED_COMMIT_S, _ticks, _wait
from tests.integration.test_service_failure import _free_port


def _in_process() -> None:
    """The job runs in this process: a failure surfaces when the test waits on it."""


def _write_through_the_end(
    job: Any, definitions: Definitions, topic: str, clicks: pa.Table, timeout_s: float, when: str
) -> None:
    """Send a tick past every window's end on each partition, and wait until every group has
    written through the last expiry, with no error left."""
    until = int(pc.max(clicks["ts"]).as_py()) + max(f.window_ms or 0 for f in definitions.feature_table(TABLE).features)
    for tick in (until + DAY_MS, until + 2 * DAY_MS):
        _produce(topic, definitions.source("clicks").avro_schema, _ticks(clicks, tick), create=False)

    def written_through_the_end() -> bool:
        progress = job.progress()
        marks = progress.watermark_ms
        return bool(marks) and not progress.errors and all(
            m is not None and m >= until + DAY_MS - 1 for m in marks.values()
        )

    _wait(written_through_the_end, _in_process, timeout_s, f"the job did not write through the end {when}")


def test_ingestion_rides_out_a_redis_restart(services: object, tmp_path: Path) -> None:
    redis = RedisService(Layout(tmp_path / "services"), name="redis-restart", port=_free_port())
    started = [manager.up([redis])]
    run = uuid.uuid4().hex[:8]
    topic = f"test.restart.clicks.{run}"
    definitions = _definitions(topic)
    clicks = generate(CtrLogSpec(days=2, users=40, items=30, impressions_per_day=3_000, seed=17)).clicks
    clicks = clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")
    half = clicks.num_rows // 2
    _produce(topic, definitions.source("clicks").avro_schema, clicks.slice(0, half))
    config = scratch_cluster_config(tmp_path, f"r{run}", flink={"checkpoint_interval": "1s"})
    config = config.model_copy(update={"online_cache": f"{redis.address}?prefix=r{run}"})
    job = submit(config, definitions, [TABLE])
    try:
        _wait(lambda: job.progress().total_rows > 0, _in_process, 240, "no versions written")
        [status] = manager.status([redis])
        assert status.pid is not None
        kill_hard(status.pid)  # the cache crashes while events keep coming
        _produce(topic, definitions.source("clicks").avro_schema, clicks.slice(half), create=False)
        _wait(lambda: any("online cache" in e for e in job.progress().errors.values()), _in_process, 120,
              "no write error reported while Redis was down")
        started.append(manager.up([redis]))  # back, empty: no persistence
        _write_through_the_end(job, definitions, topic, clicks, 300, "after Redis came back")
        time.sleep(STAGED_COMMIT_S)
        # The restarted Redis lost what it held (no persistence: it is a cache, and readers fall
        # back to the versioned store); what the job wrote after it came back landed, the writes
        # retried while it was down among them. HBase and the Iceberg log lost nothing.
        held = assert_stores_equal_the_oracle(config, definitions, clicks, online_may_miss=True)
        assert held > 0, "no latest value reached the restarted Redis"
    finally:
        job.cancel()
        for report in started:
            manager.down(only_started_by=report)


def test_ingestion_rides_out_an_hbase_restart(services: object, tmp_path: Path) -> None:
    started = [manager.up(["hbase-cluster"])]
    run = uuid.uuid4().hex[:8]
    topic = f"test.hbase-restart.clicks.{run}"
    definitions = _definitions(topic)
    schema = definitions.source("clicks").avro_schema
    clicks = generate(CtrLogSpec(days=2, users=40, items=30, impressions_per_day=3_000, seed=23)).clicks
    clicks = clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")
    half = clicks.num_rows // 2
    _produce(topic, schema, clicks.slice(0, half))
    config = scratch_cluster_config(tmp_path, f"h{run}", flink={"checkpoint_interval": "1s"})
    config = config.model_copy(update={"versioned_store": f"{hbase_cluster.URI}&prefix=h{run}"})
    job = submit(config, definitions, [TABLE])
    try:
        _wait(lambda: job.progress().total_rows > 0, _in_process, 240, "no versions written")
        cluster = manager.service("hbase-cluster")
        for pid in cluster.pids().values():  # HBase crashes whole while events keep coming
            kill_hard(pid)
        _produce(topic, schema, clicks.slice(half), create=False)
        _wait(lambda: any("versioned store" in e for e in job.progress().errors.values()), _in_process, 120,
              "no write error reported while HBase was down")
        started.append(manager.up(["hbase-cluster"]))  # back, from its files and write-ahead logs
        _write_through_the_end(job, definitions, topic, clicks, 420, "after HBase came back")
        time.sleep(STAGED_COMMIT_S)
        # HBase lost nothing it had acknowledged (its write-ahead logs were replayed), and the
        # writes retried while it was down landed: every store equals the oracle, Redis included.
        assert assert_stores_equal_the_oracle(config, definitions, clicks) > 0
    finally:
        job.cancel()
        for report in started:
            manager.down(only_started_by=report)
