"""The compiler's SQL text (no JVM): plan shape, bindings, quoting, literals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.errors import ValidationError
from registry import load_repo
from registry.compiler import FileSink, Handover, compile_table, history_replay
from registry.flink_sql import interval, literal, string_literal
from registry.models import BatchBinding, Condition, Entity, Feature, FeatureTable, JoinKey, Source, StreamBinding
from registry.validate import build

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"
ROOT = "/data/history"
KAFKA = "127.0.0.1:9092"


@pytest.fixture(scope="module")
def ctr():  # type: ignore[no-untyped-def]
    return load_repo(EXAMPLE)


def both(defs, table, sink=None):  # type: ignore[no-untyped-def]
    stream = compile_table(defs, table, "stream", kafka_bootstrap=KAFKA, sink=sink)
    batch = compile_table(defs, table, "batch", history_root=ROOT, sink=sink)
    return stream, batch


def test_one_group_per_window_size(ctr) -> None:  # type: ignore[no-untyped-def]
    plan = compile_table(ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA)
    table = ctr.feature_table("user_click_features")
    windows = {f.window_ms for f in table.features}
    assert [g.window_ms for g in plan.groups] == sorted(windows, key=lambda w: (w is not None, w or 0))
    assert sum(len(g.features) for g in plan.groups) == len(table.features)


def test_windowed_groups_run_the_incremental_operator_without_markers(ctr) -> None:  # type: ignore[no-untyped-def]
    plan = compile_table(ctr, "user_click_features", "batch", history_root=ROOT)
    for group in plan.groups:
        if group.window_ms is None:  # projections: LAST_VALUE over UNBOUNDED PRECEDING, O(1) per row
            assert "UNION ALL" not in group.select and "__expiry_" not in group.select
            assert "UNBOUNDED PRECEDING" in group.select
            assert group.select.count("OVER w") == len(group.features)
        else:
            assert "OVER" not in group.select
            assert "`fs_sliding_windows`(" in group.select
            assert f"spec => '{group.window_ms};" in group.select
            assert f"uid => 'user_click_features-{group.name}'" in group.select
            for feature in group.features:
                assert f" AS `{feature}`" in group.select
    assert not [d for d in plan.source_ddl if "`__expiry_" in d.split("(")[0]]  # the source is read once
    function = "CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS `fs_sliding_windows`"
    assert sum(function in d for d in plan.operator_ddl) == 1


def test_the_operators_spec_names_each_features_aggregate_column_and_slot(ctr) -> None:  # type: ignore[no-untyped-def]
    plan = compile_table(ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA)
    day = next(g for g in plan.groups if g.name == "w_1d")
    assert "spec => '86400000;COUNT,,,l0;AVG,dwell_ms,l,d0;MAX,dwell_ms,l,l1'" in day.select
    assert "CAST(`d0` AS DOUBLE) AS `user_avg_dwell_1d`" in day.select
    week = next(g for g in plan.groups if g.name == "w_1w")
    assert "DISTINCT,item_id,s,l0" in week.select


def _with_features(ctr, *features: Feature):  # type: ignore[no-untyped-def]
    table = ctr.feature_table("user_click_features")
    table = table.model_copy(update={"features": (*table.features, *features)})
    objects = [table if o.name == table.name and isinstance(o, FeatureTable) else o for o in ctr.objects()]
    return build(objects, project=ctr.project)


def test_a_group_the_operator_does_not_compute_keeps_the_over_window_and_its_markers(ctr) -> None:  # type: ignore[no-untyped-def]
    # nine BIGINT features in one window: the operator has eight BIGINT slots
    many = [Feature(name=f"clicks_{i}_1h", agg="count", window="1h") for i in range(9)]
    defs = _with_features(ctr, *many, Feature(name="clicks_2h", agg="count", window="2h"))
    plan = compile_table(defs, "user_click_features", "batch", history_root=ROOT)
    hour = next(g for g in plan.groups if g.name == "w_1h")
    two = next(g for g in plan.groups if g.name == "w_2h")
    assert hour.select.count("UNION ALL") == 1 and "+ 3600000 AS `__vt`" in hour.select
    assert interval(3_600_000 - 1) + " PRECEDING" in hour.select
    assert hour.select.count("OVER w") == 9
    assert "`fs_sliding_windows`(" in two.select
    markers = [d for d in plan.source_ddl if "`__expiry_" in d.split("(")[0]]
    assert len(markers) == 1 and "w_1h" in markers[0].split("(")[0]


def test_text_after_the_source_is_the_same_for_both_bindings(ctr) -> None:  # type: ignore[no-untyped-def]
    for table in ctr.feature_tables:
        stream, batch = both(ctr, table.name, FileSink("/tmp/out"))
        assert stream.core_sql() == batch.core_sql()
        assert stream.source_ddl != batch.source_ddl
        assert "'connector' = 'kafka'" in stream.source_ddl[0]
        assert "'connector' = 'hdfs-replay'" in batch.source_ddl[0]
        assert stream.sql_text().endswith(stream.core_sql() + ";\n")


def test_sources_declare_the_same_columns(ctr) -> None:  # type: ignore[no-untyped-def]
    stream, batch = both(ctr, "user_click_features")
    # stream: the raw Kafka table (with the dead letters' columns), the events view, the markers
    tables = [d for d in stream.source_ddl if not d.startswith("CREATE TEMPORARY VIEW")]
    assert stream.source_ddl[1].startswith("CREATE TEMPORARY VIEW `__events_user_click_features` AS")
    dead_letter_columns = {"`__offset`", "`__key`", "`__kafka_ts`", "`__reason`", "`__detail`", "`__value`"}
    for s, b in zip(tables, batch.source_ddl, strict=True):
        columns = lambda ddl: re.findall(r"^  (`[a-z_]+`) ", ddl, re.M)  # noqa: E731
        assert [c for c in columns(s) if c not in dead_letter_columns] == [
            c for c in columns(b) if c != "`__position`"
        ]
    assert "'scan.startup.mode' = 'earliest-offset'" in stream.source_ddl[0]
    assert "METADATA FROM 'offset'" in stream.source_ddl[0]
    # batch: the ordered replay, partitioned by the entity key as the topic is, 1 ms watermark delay
    assert "'key.fields' = 'user_id'" in batch.source_ddl[0]
    assert "'partitions' = '8'" in batch.source_ddl[0]
    assert "`__seq` AS `__position`" in batch.source_ddl[0]
    assert "INTERVAL '0 00:00:00.001'" in batch.source_ddl[0]
    assert "INTERVAL '0 00:05:00.000'" in stream.source_ddl[0]  # allowed_lateness 5m


def test_batch_binding_takes_a_replay_range(ctr) -> None:  # type: ignore[no-untyped-def]
    spec = history_replay(ctr, "user_click_features", start_ms=1_000, end_ms=2_000, partitions=2)
    plan = compile_table(ctr, "user_click_features", "batch", history_root=ROOT, replay=spec)
    for ddl in plan.source_ddl:  # events and every marker table read the same range
        assert "'scan.start-ms' = '1000'" in ddl and "'scan.end-ms' = '2000'" in ddl
        assert "'partitions' = '2'" in ddl


def test_a_bounded_replay_schedules_no_expiry_past_its_end(ctr) -> None:  # type: ignore[no-untyped-def]
    """The window operator's spec carries the replay's end (``<window_ms>@<end>``): the versions at
    or past it are not written, so their expiries are not scheduled. Live and unbounded: none."""
    bounded = history_replay(ctr, "user_click_features", start_ms=1_000, end_ms=2_000)
    plans = {
        "bounded": compile_table(ctr, "user_click_features", "batch", history_root=ROOT, replay=bounded),
        "whole history": compile_table(ctr, "user_click_features", "batch", history_root=ROOT),
        "live": compile_table(ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA),
    }
    specs = {name: re.findall(r"spec => '([^']*)'", plan.sql_text()) for name, plan in plans.items()}
    assert specs["bounded"] and all(re.match(r"\d+@2000;", spec) for spec in specs["bounded"])
    assert all("@" not in spec for name in ("whole history", "live") for spec in specs[name])


def test_storage_layout_per_group(ctr) -> None:  # type: ignore[no-untyped-def]
    plan = compile_table(ctr, "item_click_features", "stream", kafka_bootstrap=KAFKA, sink=FileSink("/tmp/o"))
    for group in plan.groups:
        assert group.arrow_schema.names == ["item_id", "version_ms", "seq", *group.features]
        assert group.sink_ddl is not None and "'format' = 'json'" in group.sink_ddl
        assert group.insert.startswith(f"INSERT INTO `{group.sink_table}`")


def test_every_identifier_is_quoted(ctr) -> None:  # type: ignore[no-untyped-def]
    table = ctr.feature_table("user_click_features")
    plan = compile_table(ctr, table.name, "stream", kafka_bootstrap=KAFKA)
    text = re.sub(r"'[^']*'", "''", plan.sql_text())  # string literals (the schema option) are not SQL
    for name in [*table.feature_names, "user_id", "item_id", "dwell_ms", "ts", "version_ms", "seq"]:
        assert re.search(rf"(?<![`\w]){name}(?![`\w])", text) is None, name


def _defs(feature_name: str = "n", filter_value: object = "x") -> object:
    schema = {
        "type": "record",
        "name": "e",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "kind", "type": "string"},
        ],
    }
    return build(
        [
            Entity(name="user", join_keys=(JoinKey(name="user_id"),)),
            Source(
                name="ev",
                avro_schema=schema,
                event_time="ts",
                stream=StreamBinding(topic="ev"),
                batch=BatchBinding(path="ev/{date}/*.avro"),
            ),
            FeatureTable(
                name="t",
                entity="user",
                source="ev",
                features=(Feature(name=feature_name, agg="count", window="1m"),),
                filter=(Condition(column="kind", op="==", value=filter_value),),
            ),
        ]
    )


def test_a_feature_name_cannot_inject() -> None:
    with pytest.raises(ValueError):
        _defs(feature_name="n` BIGINT) WITH ('connector'='blackhole') --")
    with pytest.raises(ValueError):
        _defs(feature_name="version_ms")


def test_filter_values_are_escaped_literals() -> None:
    nasty = "x'); DROP TABLE t; --`"
    plan = compile_table(_defs(filter_value=nasty), "t", "stream", kafka_bootstrap=KAFKA)  # type: ignore[arg-type]
    text = plan.sql_text()
    assert nasty not in text and "DROP" not in text
    assert string_literal(nasty) in text
    assert string_literal("é😀") == "U&'\\00e9\\+01f600'"
    assert literal(3) == "CAST(3 AS BIGINT)" and literal(True) == "TRUE" and literal(0.5) == "CAST(0.5 AS DOUBLE)"
    with pytest.raises(ValidationError):
        literal(float("nan"))


def test_config_strings_are_checked() -> None:
    defs = _defs()
    with pytest.raises(ValidationError):
        compile_table(defs, "t", "stream", kafka_bootstrap="h:1' , 'x' = 'y")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        compile_table(defs, "t", "batch", history_root="/tmp/it's")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        compile_table(defs, "t", "batch")  # type: ignore[arg-type]


def test_interval_literals() -> None:
    assert interval(59_999) == "INTERVAL '0 00:00:59.999' DAY(2) TO SECOND(3)"
    assert interval(30 * 86_400_000 - 1) == "INTERVAL '29 23:59:59.999' DAY(2) TO SECOND(3)"


def test_explain_names_groups(ctr) -> None:  # type: ignore[no-untyped-def]
    text = compile_table(ctr, "user_click_features", "batch", history_root=ROOT).explain()
    assert "group w_10m" in text and "group projections" in text


def test_compiling_does_not_load_flink() -> None:
    code = (
        "import sys; import registry.compiler, ingestion.runner; "
        "assert not any(m.startswith(('pyflink', 'py4j')) for m in sys.modules), 'flink loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_a_hand_over_unions_history_before_the_seam_with_kafka_after_it(ctr) -> None:  # type: ignore[no-untyped-def]
    at = 1_790_899_200_000
    plan = compile_table(
        ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA, handover=Handover(ROOT, at)
    )
    plain = compile_table(ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA)
    assert plan.core_sql() == plain.core_sql()  # only the source differs
    history = [d for d in plan.source_ddl if "__history` (" in d]
    live = [d for d in plan.source_ddl if "__live` (" in d or "__live_raw` (" in d]  # raw events + markers
    views = [d for d in plan.source_ddl if d.startswith("CREATE TEMPORARY VIEW") and "UNION ALL" in d]
    assert len(history) == len(live) == len(views) == len(plain.source_ddl) - 1  # plain: + the events view
    assert plan.raw_table == "__events_user_click_features__live_raw"
    month = 30 * 86_400_000
    assert all(f"'scan.start-ms' = '{at - month}'" in d and f"'scan.end-ms' = '{at}'" in d for d in history)
    lateness = 5 * 60_000
    assert all(f"'scan.startup.timestamp-millis' = '{at - lateness}'" in d for d in live)
    for view in views:
        assert f"WHERE `ts` < {at}\n  UNION ALL\n" in view and view.endswith(f"WHERE `ts` >= {at}")
    with pytest.raises(ValidationError, match="stream binding"):
        compile_table(ctr, "user_click_features", "batch", history_root=ROOT, handover=Handover(ROOT, at))


def test_every_group_also_compiles_with_the_operator_watermark(ctr: object) -> None:
    plan = compile_table(ctr, "user_click_features", "stream", kafka_bootstrap=KAFKA)  # type: ignore[arg-type]
    assert {g.name for g in plan.groups} >= {"projections", "w_30d"}  # the OVER form and the operator
    for group in plan.groups:
        extra = group.select_with_watermark.replace(group.select.split("\nFROM")[0], "", 1)
        assert extra.startswith(",\n  CURRENT_WATERMARK(")
        assert "AS `__wm`" in extra
        assert group.select_with_watermark.endswith(group.select[len(group.select.split("\nFROM")[0]):])
