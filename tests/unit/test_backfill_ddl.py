"""The replay's table DDL and options (text only: no JVM), and the jar build's staleness rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backfill.replay import ReplaySpec, insert_sql, replay_ddl, replay_options, sink_ddl
from featurestore.errors import NotInstalledError, ValidationError
from featurestore.services import replay_jar as jar
from registry.models import Source
from tests.unit.test_eventlog import CLICK_AVRO, LAYOUT

SOURCE = Source(
    name="clicks",
    avro_schema=CLICK_AVRO,
    event_time="ts",
    stream={"topic": "clicks", "partitions": 6},
    batch={"path": LAYOUT, "format": "avro"},
)


def test_ddl_declares_the_connector_its_options_metadata_seq_and_watermark() -> None:
    spec = ReplaySpec(key_fields=("user_id",), start_ms=1000, end_ms=2000, events_per_second=5e5, rate_from_ms=1500)
    [ddl] = replay_ddl(SOURCE, table="clicks_replay", history_root="hdfs://127.0.0.1:8020/history", spec=spec)
    assert ddl.startswith("CREATE TEMPORARY TABLE `clicks_replay` (")
    for line in (
        "'connector' = 'hdfs-replay'",
        "'path' = 'hdfs://127.0.0.1:8020/history'",
        f"'layout' = '{LAYOUT}'",
        "'format' = 'avro'",
        "'partitions' = '6'",  # the Kafka topic's partitions by default
        "'key.fields' = 'user_id'",
        "'event-time.field' = 'ts'",
        "'scan.start-ms' = '1000'",
        "'scan.end-ms' = '2000'",
        "'max-lateness-ms' = '3600000'",
        "'on-late' = 'fail'",
        "'rate-limit.events-per-second' = '500000.0'",
        "'rate-limit.from-ms' = '1500'",
        "`user_id` STRING NOT NULL",
        "`ts` BIGINT NOT NULL",
        "`__partition` INT METADATA FROM 'partition' VIRTUAL",
        "`__position` BIGINT METADATA FROM 'position' VIRTUAL",
        "`__seq` AS `__position`",
        "`__rt` AS TO_TIMESTAMP_LTZ(`ts`, 3)",
        "WATERMARK FOR `__rt` AS `__rt` - INTERVAL '0 00:00:00.001' DAY(2) TO SECOND(3)",
    ):
        assert line in ddl, line


def test_marker_tables_share_the_options_and_shift_the_row_time() -> None:
    spec = ReplaySpec(key_fields=("user_id", "item_id"), partitions=3)
    events, marker = replay_ddl(
        SOURCE, table="ev", history_root="/data/history", spec=spec, marker_windows={3_600_000: "ev_1h"}
    )
    assert "'partitions' = '3'" in marker and "'key.fields' = 'user_id,item_id'" in marker
    assert "TO_TIMESTAMP_LTZ(`ts` + 3600000, 3)" in marker
    assert "'scan.start-ms'" not in events and "'rate-limit.events-per-second'" not in events
    assert "'rate-limit.from-ms'" not in events


def test_defaults_without_a_stream_binding_and_explicit_options() -> None:
    source = Source.model_validate({**SOURCE.model_dump(), "stream": None})
    options = replay_options(
        source,
        history_root="/h/",
        spec=ReplaySpec(key_fields=("user_id",), max_lateness_ms=60_000, on_late="drop"),
    )
    assert options["partitions"] == "1"
    assert options["path"] == "/h"
    assert options["max-lateness-ms"] == "60000" and options["on-late"] == "drop"
    assert options["format"] == "avro"


def test_parquet_history_is_replayed_as_parquet() -> None:
    source = Source.model_validate({**SOURCE.model_dump(), "batch": {"path": LAYOUT, "format": "parquet"}})
    assert replay_options(source, history_root="/h", spec=ReplaySpec(key_fields=("user_id",)))["format"] == "parquet"


@pytest.mark.parametrize(
    ("change", "spec", "message"),
    [
        ({"batch": None}, ReplaySpec(key_fields=("user_id",)), "no batch binding"),
        ({}, ReplaySpec(key_fields=()), "key field"),
        ({}, ReplaySpec(key_fields=("nope",)), "no column 'nope'"),
        ({}, ReplaySpec(key_fields=("user_id",), partitions=0), "at least 1"),
        ({}, ReplaySpec(key_fields=("user_id",), start_ms=5, end_ms=5), "empty time range"),
        ({}, ReplaySpec(key_fields=("user_id",), max_lateness_ms=-1), "negative"),
    ],
)
def test_invalid_replays_are_refused_with_the_reason(change: dict[str, object], spec: ReplaySpec, message: str) -> None:
    source = Source.model_validate({**SOURCE.model_dump(), **change})
    with pytest.raises(ValidationError, match=message):
        replay_options(source, history_root="/h", spec=spec)


@pytest.mark.parametrize("pace", [{"events_per_second": 0.0}, {"events_per_second": -5.0}, {"speed_up": 0.0}])
def test_a_pace_must_be_positive(pace: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match=f"{next(iter(pace))} must be positive"):
        replay_ddl(SOURCE, table="ev", history_root="/h", spec=ReplaySpec(key_fields=("user_id",), **pace))  # type: ignore[arg-type]


def test_event_time_pacing_from_a_time() -> None:
    spec = ReplaySpec(key_fields=("user_id",), speed_up=7200.0, rate_from_ms=1500)
    [ddl] = replay_ddl(SOURCE, table="ev", history_root="/h", spec=spec)
    assert "'rate-limit.speed-up' = '7200.0'" in ddl and "'rate-limit.from-ms' = '1500'" in ddl
    assert "'rate-limit.events-per-second'" not in ddl


def test_a_history_root_that_is_not_a_plain_path_is_refused() -> None:
    with pytest.raises(ValidationError, match="history root"):
        replay_options(SOURCE, history_root="/h'; DROP", spec=ReplaySpec(key_fields=("user_id",)))


def test_sink_and_insert_carry_partition_position_and_watermark() -> None:
    sink = sink_ddl(SOURCE, table="out", path="/tmp/out", options={"sink.rolling-policy.rollover-interval": "1 s"})
    assert "`__partition` INT" in sink and "`__position` BIGINT" in sink and "`__wm_ms` BIGINT" in sink
    assert "'sink.rolling-policy.rollover-interval' = '1 s'" in sink
    insert = insert_sql(SOURCE, replay_table="ev", sink_table="out")
    assert "CURRENT_WATERMARK(`__rt`)" in insert and insert.startswith("INSERT INTO `out` SELECT `impression_id`")


def test_the_jar_is_stale_when_missing_or_older_than_a_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "java"
    (module / "src" / "main").mkdir(parents=True)
    (module / "pom.xml").write_text("<project/>")
    source = module / "src" / "main" / "A.java"
    source.write_text("class A {}")
    monkeypatch.setattr(jar, "JAVA_DIR", module)
    assert jar.is_stale()
    built = module / "target" / jar.JAR_NAME
    built.parent.mkdir()
    built.write_bytes(b"jar")
    os.utime(built, (source.stat().st_mtime + 10, source.stat().st_mtime + 10))
    assert not jar.is_stale() and jar.replay_jar() == built
    os.utime(source, (built.stat().st_mtime + 10, built.stat().st_mtime + 10))
    assert jar.is_stale()
    monkeypatch.setattr(jar.shutil, "which", lambda name: None)
    with pytest.raises(NotInstalledError, match="Maven"):
        jar.replay_jar()
