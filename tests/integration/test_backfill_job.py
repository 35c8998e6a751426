"""replay == live: the same events sent through Kafka and replayed from history on HDFS (Avro,
and Parquet landed by `featurestore logs land`) give the same versions (key, feature, version time,
value) in HBase and the Iceberg log; a backfill warms its windows from the history before its range
and writes only the range; rerunning is idempotent; a live job continuing a backfill (the hand-over)
gives what one live job over everything gives."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from click.testing import CliRunner

from backfill.run import BackfillProgress, plan_backfill, run_backfill
from featurestore import eventlog
from featurestore.config import ProfileConfig, load_config
from featurestore.datagen import CtrLogSpec, generate
from featurestore.fs import open_fs
from featurestore.offline.log import OfflineLog
from featurestore.schema import SEQ
from featurestore.services.ports import HBASE_URI, HDFS_URI, KAFKA_BOOTSTRAP, REDIS_URI
from featurestore.storage.versioned import open_versioned_store
from ingestion.job import WriteRange, submit
from registry.models import Definitions
from sdk.cli import main
from tests.integration.test_ingest_kafka import ROOT, TABLE, _definitions, _produce

DAY_MS = 86_400_000
START = dt.date(2026, 10, 1)


def _config(
    tmp_path: Path, name: str, run: str, history: str, flink: dict[str, Any] | None = None
) -> ProfileConfig:
    """The cluster profile with stores of the run's own (prefixes); ``flink``: more flink settings."""
    return load_config(
        tmp_path,
        profile="cluster",
        overrides={
            "versioned_store": f"{HBASE_URI}?prefix={name}{run}",
            "online_cache": f"{REDIS_URI}?prefix={name}{run}",
            "offline_log": {"catalog_uri": f"sqlite:///{tmp_path}/{name}.db", "warehouse": str(tmp_path / name)},
            "history": history,
            "kafka": {"bootstrap_servers": KAFKA_BOOTSTRAP},
            "flink": {"checkpoint_dir": str(tmp_path / f"{name}-checkpoints"), **(flink or {})},
        },
        environ={},
    )


def _versions(config: ProfileConfig, definitions: Definitions, users: list[str], window: WriteRange) -> set[Any]:
    """Every (store, user, feature, version time, value) the config's HBase and Iceberg hold in ``window``."""
    schema = definitions.table_schema(TABLE)
    lo, hi = window.start_ms or 0, (window.end_ms or 4_102_444_800_000) - 1  # default: until 2100
    found: set[Any] = set()
    store = open_versioned_store(config.versioned_store)
    try:
        for user in users:
            for feature in schema.feature_names:
                for row in store.list_versions(TABLE, user, feature, start_ms=lo, end_ms=hi).to_pylist():
                    found.add(("hbase", user, feature, row["version_ms"], _rounded(row[feature])))
    finally:
        store.close()
    log = OfflineLog(config.offline_log).table(schema).scan(dedupe=True).drop_columns([SEQ])
    for row in log.to_pylist():
        if row["user_id"] in users and lo <= row["version_ms"] <= hi:
            written = row["_written"].split(",") if row.get("_written") else schema.feature_names
            for feature in written:
                found.add(("log", row["user_id"], feature, row["version_ms"], _rounded(row[feature])))
    return found


def _rounded(value: Any) -> Any:
    return round(value, 9) if isinstance(value, float) else value


def _drop(config: ProfileConfig) -> None:
    store = open_versioned_store(config.versioned_store)
    try:
        store.drop_table(TABLE)
    finally:
        store.close()


def _land_with_the_cli(tmp_path: Path, clicks: pa.Table, history: str, layout: str) -> None:
    """``featurestore logs land`` of the clicks, exported as a Parquet file with zoned timestamps and
    columns the source does not have, into a copy of examples/ctr whose clicks history is ``layout``."""
    repo = tmp_path / "parquet-repo"
    shutil.copytree(ROOT / "examples" / "ctr", repo)
    sources = repo / "sources.yaml"
    sources.write_text(sources.read_text().replace('"events/clicks/dt={date}/hour={hour}/*.avro", format: avro',
                                                   f'"{layout}", format: parquet'))
    export = tmp_path / "clicks-export.parquet"
    pq.write_table(clicks.set_column(clicks.schema.get_field_index("ts"), "ts",
                                     clicks["ts"].cast(pa.timestamp("ms", "UTC"))), export)
    env = {"FEATURESTORE_HISTORY": history}
    cli = CliRunner()
    assert cli.invoke(main, ["apply", "--repo", str(repo), "--profile", "cluster"], env=env).exit_code == 0
    landed = cli.invoke(main, ["logs", "land", "clicks", str(export), "--landing-time", "arrival_ms", "--repo",
                               str(repo), "--profile", "cluster"], env=env)
    assert landed.exit_code == 0 and f"landed {clicks.num_rows:,} clicks events" in landed.output, landed.output


def test_replay_equals_live_and_backfill_reruns_idempotently(services: object, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"test.backfill.clicks.{run}"
    definitions = _definitions(topic)
    source = definitions.source("clicks")
    assert source.batch is not None
    clicks = generate(CtrLogSpec(start=START, days=3, users=30, items=20, impressions_per_day=2_000, seed=5)).clicks
    clicks = clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")
    history = f"{HDFS_URI}/test-backfill-{run}"
    eventlog.land(
        clicks, history, source.batch.path, fmt="avro", avro_schema=source.avro_schema, landing_column="arrival_ms"
    )
    _produce(topic, source.avro_schema, clicks)
    users = sorted(set(clicks["user_id"].to_pylist()))[:10]
    live = _config(tmp_path, "live", run, history)
    replayed = _config(tmp_path, "replay", run, history)
    try:
        # live: Kafka from the earliest offset; a bounded run fires every expiry at the end
        submit(live, definitions, [TABLE], bounded=True).wait()

        # backfill of day 2 only: warmed up from day 1, writes [day 2, day 3)
        day2 = plan_backfill(definitions, [TABLE], START + dt.timedelta(days=1), START + dt.timedelta(days=2))
        assert day2.replay_from_ms == day2.start_ms - 30 * DAY_MS and day2.tables == (TABLE,)
        seen: list[BackfillProgress] = []
        result = run_backfill(replayed, definitions, day2, on_progress=seen.append, poll_s=0.5)
        assert result.versions > 0 and seen[-1].versions == result.versions
        assert seen[-1].position_ms is not None and day2.start_ms <= seen[-1].position_ms < day2.end_ms
        day_range = WriteRange(day2.start_ms, day2.end_ms)
        first = _versions(replayed, definitions, users, day_range)
        assert first, "the backfill wrote nothing for the sampled users"
        assert first == _versions(live, definitions, users, day_range)  # warm-up made day 2 exact
        everything = WriteRange(None, None)
        assert not _versions(replayed, definitions, users, WriteRange(None, day2.start_ms))  # nothing before
        assert not _versions(replayed, definitions, users, WriteRange(day2.end_ms, None))  # nothing after

        # rerun of the same day: nothing changes (versioned puts overwrite, the log dedupes)
        run_backfill(replayed, definitions, day2)
        assert _versions(replayed, definitions, users, everything) == first

        # the whole history up to 31 days after the last event: equal to live everywhere
        whole_end = START + dt.timedelta(days=3 + 31)
        run_backfill(replayed, definitions, plan_backfill(definitions, [TABLE], START, whole_end))
        live_versions = _versions(live, definitions, users, everything)
        assert _versions(replayed, definitions, users, everything) == live_versions

        # the same history landed as Parquet: the whole backfill from it equals live too
        as_parquet = _definitions(topic, history_format="parquet")
        parquet_batch = as_parquet.source("clicks").batch
        assert parquet_batch is not None and parquet_batch.format == "parquet"
        parquet_history = f"{HDFS_URI}/test-backfill-parquet-{run}"
        _land_with_the_cli(tmp_path, clicks, parquet_history, parquet_batch.path)
        from_parquet = _config(tmp_path, "parquet", run, parquet_history)
        try:
            run_backfill(from_parquet, as_parquet, plan_backfill(as_parquet, [TABLE], START, whole_end))
            assert _versions(from_parquet, as_parquet, users, everything) == live_versions
        finally:
            _drop(from_parquet)
            open_fs(parquet_history).delete(parquet_history)

        # hand-over: a backfill up to day 2, then a live job continuing at day 2 over a topic that
        # holds every event (before day 2 too): together they equal the live job, with no gap and
        # nothing counted twice
        handed = _config(tmp_path, "handover", run, history)
        try:
            until_day2 = plan_backfill(definitions, [TABLE], START, START + dt.timedelta(days=2))
            run_backfill(handed, definitions, until_day2)
            submit(handed, definitions, [TABLE], bounded=True, handover_ms=until_day2.end_ms).wait()
            assert _versions(handed, definitions, users, everything) == _versions(live, definitions, users, everything)
        finally:
            _drop(handed)
    finally:
        _drop(live)
        _drop(replayed)
        open_fs(history).delete(history)
