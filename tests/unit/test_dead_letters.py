"""Dead letters without servers: the SQL text (source declaration, dead-letter statements), its
safety (quotes, names, topic length), that the late filter is exactly NOT the compiler's on-time
filter, the Iceberg table on a local catalog (append, read, dedupe, counts) and the pandas hand-off."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.errors import ValidationError
from ingestion import dead_letters
from registry import flink_sql
from registry.compiler import compile_table, group_name
from registry.models import Definitions, Source, StreamBinding
from registry.repo import load_repo

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = "127.0.0.1:9092"


@pytest.fixture(scope="module")
def defs() -> Definitions:
    return load_repo(ROOT / "examples" / "ctr")


def _statements(defs: Definitions, table: str) -> list[str]:
    feature_table = defs.feature_table(table)
    source = defs.source(feature_table.source)
    declaration = flink_sql.stream_source(source, table=table, kafka_bootstrap=BOOTSTRAP, bounded=False, on_event=False)
    windows = sorted({f.window_ms for f in feature_table.features if f.window_ms is not None})
    return flink_sql.checked_stream_tables(
        source, declaration, events_table=f"__events_{table}",
        marker_tables={w: f"__expiry_{table}_{group_name(w)}" for w in windows},
    )


def _options(statement: str) -> dict[str, str]:
    body = statement[statement.index(") WITH (") :]
    return dict(re.findall(r"'([^']*)' = '([^']*)'", body))


def test_source_statements_declare_raw_table_view_and_markers(defs: Definitions) -> None:
    raw, view, *markers = _statements(defs, "user_click_features")
    assert raw.startswith("CREATE TEMPORARY TABLE `__events_user_click_features_raw`")
    options = _options(raw)
    assert options["value.format"] == dead_letters.FORMAT and "format" not in options
    assert options["value.featurestore-checked.encoding"] == "avro"
    assert (options["key.format"], options["key.fields"], options["value.fields-include"]) == (
        "raw", "__key", "EXCEPT_KEY")
    for metadata in ("'value.reason'", "'value.detail'", "'value.bytes'", "'timestamp'", "'partition'", "'offset'"):
        assert f"METADATA FROM {metadata} VIRTUAL" in raw
    # the watermark and __seq as in today's declaration
    assert "`__rt` AS TO_TIMESTAMP_LTZ(`ts`, 3)" in raw
    assert "WATERMARK FOR `__rt` AS `__rt` - INTERVAL '0 00:05:00.000' DAY(2) TO SECOND(3)" in raw
    assert "`__seq` AS `__offset` * 10000 + `__partition`" in raw
    assert view.startswith("CREATE TEMPORARY VIEW `__events_user_click_features` AS")
    assert view.endswith("WHERE `__reason` IS NULL")
    assert len(markers) == 4  # 10m, 1d, 7d, 30d
    for marker in markers:
        options = _options(marker)
        assert options["format"] == dead_letters.FORMAT and "value.format" not in options
        assert "value.reason" not in marker  # without the reason column the format drops bad records
    assert "TO_TIMESTAMP_LTZ(`ts` + 600000, 3)" in markers[0]


def test_view_has_every_column_the_compiled_queries_read(defs: Definitions) -> None:
    for table in ("user_click_features", "item_impression_features"):
        view = _statements(defs, table)[1]
        columns = set(re.findall(r"`([^`]+)`", view.split("FROM")[0])) - {f"__events_{table}"}
        source = defs.source(defs.feature_table(table).source)
        extras = {c for c, _ in flink_sql.EVENT_EXTRAS}
        assert columns == {*source.columns, flink_sql.SEQ_COLUMN, flink_sql.ROWTIME, *extras}
        plan = compile_table(defs, table, "stream", kafka_bootstrap=BOOTSTRAP)
        for group in plan.groups:
            branch = group.select.split("UNION ALL")[0]  # the events branch
            if "`fs_sliding_windows`(" in group.select:  # the incremental operator reads its input view
                branch = next(d for d in plan.operator_ddl if d.startswith("CREATE TEMPORARY VIEW"))
                branch = branch.split(" AS\n", 1)[1]
            assert f"FROM `__events_{table}`" in branch
            used = set(re.findall(r"`([^`]+)`", branch)) - {f"__events_{table}"}
            produced = {k for k in used if f"AS `{k}`" in branch}
            assert used - produced - {f.name for f in defs.feature_table(table).features} <= columns


def test_late_filter_is_not_of_the_compilers_on_time_filter(defs: Definitions) -> None:
    plan = compile_table(defs, "user_click_features", "stream", kafka_bootstrap=BOOTSTRAP)
    for group in plan.groups:
        incremental = "`fs_sliding_windows`(" in group.select  # reads the operator's input view
        assert group.select.count(flink_sql.ON_TIME) == (0 if incremental else 1 if group.window_ms is None else 2)
    (operator_input,) = [d for d in plan.operator_ddl if d.startswith("CREATE TEMPORARY VIEW")]
    assert operator_input.count(flink_sql.ON_TIME) == 1
    dead = dead_letters.dead_letter_plan(defs.source("clicks"), feature_table="user_click_features",
                                         events_table="__events_user_click_features", kafka_bootstrap=BOOTSTRAP)
    view = dead.statements[0]
    # late: judged on the events view, the relation the compiled queries filter (same watermark)
    assert view.endswith(f"FROM `__events_user_click_features`\nWHERE NOT {flink_sql.ON_TIME}")
    assert "FROM `__events_user_click_features_raw`\nWHERE `__reason` IS NOT NULL\nUNION ALL\n" in view
    only_late = dead_letters.dead_letter_plan(
        defs.source("clicks"), feature_table="item_click_features", events_table="__events_item_click_features",
        kafka_bootstrap=BOOTSTRAP, decode_errors=False, iceberg=False)
    assert "UNION ALL" not in only_late.statements[0] and "_raw" not in only_late.statements[0]
    assert only_late.function is None and len(only_late.inserts) == 1
    handover = dead_letters.dead_letter_plan(
        defs.source("clicks"), feature_table="user_click_features", events_table="__events_user_click_features",
        kafka_bootstrap=BOOTSTRAP, raw="__events_user_click_features__live_raw")
    assert "FROM `__events_user_click_features__live_raw`\nWHERE `__reason` IS NOT NULL" in handover.statements[0]


def test_dead_letter_plan_statements(defs: Definitions) -> None:
    dead = dead_letters.dead_letter_plan(defs.source("clicks"), feature_table="user_click_features",
                                         events_table="__events_user_click_features", kafka_bootstrap=BOOTSTRAP)
    assert dead.topic == "ctr.clicks.dead-letters"
    view, kafka, blackhole = dead.statements
    options = _options(kafka)
    assert options["topic"] == "ctr.clicks.dead-letters"
    assert (options["key.format"], options["key.fields"], options["value.format"]) == ("raw", "key", "json")
    for name, sql_type, _, _ in dead_letters.COLUMNS:
        assert f"`{name}` {sql_type}" in kafka
        assert f"AS `{name}`" in view
    assert "'clicks' AS `source`" in view and "'ctr.clicks' AS `topic`" in view
    assert "(allowed lateness 300000 ms)" in view
    assert "'blackhole'" in blackhole
    assert dead.function == "__write_dead_letters_user_click_features"
    kafka_insert, iceberg_insert = dead.inserts
    assert kafka_insert.startswith("INSERT INTO `__dead_letters_kafka_user_click_features`")
    assert "`__write_dead_letters_user_click_features`(`source`, " in iceberg_insert


def test_schema_option_is_quote_free_json_without_docs() -> None:
    schema = {
        "type": "record", "name": "E", "doc": "it's a doc",
        "fields": [
            {"name": "user_id", "type": "string", "doc": "who's"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "label", "type": "string", "default": "l'été"},
        ],
    }
    source = Source(name="e", avro_schema=schema, event_time="ts", stream=StreamBinding(topic="t"))
    text = flink_sql.schema_option(source)
    assert "'" not in text and text.isascii()
    parsed = json.loads(text)
    assert "doc" not in parsed and "doc" not in parsed["fields"][0]
    assert parsed["fields"][2]["default"] == "l'été"
    assert parsed["fields"][1]["type"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_names_and_configuration_are_checked(defs: Definitions) -> None:
    long_topic = "t" * 240
    source = defs.source("clicks").model_copy(update={"stream": StreamBinding(topic=long_topic)})
    with pytest.raises(ValidationError, match="249"):
        dead_letters.topic_for(source)
    with pytest.raises(ValidationError, match="host:port"):
        dead_letters.dead_letter_plan(defs.source("clicks"), feature_table="user_click_features",
                                      events_table="__events_user_click_features", kafka_bootstrap="x' , 'y")
    with pytest.raises(ValidationError):
        dead_letters.dead_letter_plan(defs.source("clicks"), feature_table="Robert'); DROP",
                                      events_table="__events_x", kafka_bootstrap=BOOTSTRAP)
    no_stream = defs.source("clicks").model_copy(update={"stream": None})
    with pytest.raises(ValidationError, match="no stream binding"):
        dead_letters.topic_for(no_stream)
    replay = flink_sql.SourceDeclaration({"connector": "hdfs-replay"}, (), "`__position`")
    with pytest.raises(ValidationError, match="Kafka binding"):
        flink_sql.checked_stream_tables(defs.source("clicks"), replay, events_table="e", marker_tables={})


def test_json_source_uses_json_encoding(defs: Definitions) -> None:
    source = defs.source("clicks").model_copy(update={"stream": StreamBinding(topic="c", format="json")})
    assert flink_sql.checked_format(source)[f"{dead_letters.FORMAT}.encoding"] == "json"


def test_module_does_not_import_pyflink() -> None:
    code = "import sys, ingestion.dead_letters; sys.exit(any(m.startswith('pyflink') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# ---------------------------------------------------------------------------------------------- Iceberg


def _letters(n: int, *, reason: str = "truncated", table: str = "t1", offset0: int = 0) -> pa.Table:
    rows: list[dict[str, Any]] = [
        {"source": "clicks", "feature_table": table, "topic": "ctr.clicks", "partition": 0, "offset": offset0 + i,
         "kafka_timestamp_ms": 1_000 + i, "reason": reason, "detail": f"d{i}",
         "event_time_ms": 5 if reason == "late" else None, "watermark_ms": 9 if reason == "late" else None,
         "key": b"k", "value": bytes([i, 0, 255])}
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_iceberg_append_read_dedupe_counts(tmp_path: Path) -> None:
    config = OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh"))
    assert dead_letters.read(config).num_rows == 0  # no table yet: empty, not an error
    dead_letters.ensure_table(config)
    dead_letters.ensure_table(config)  # idempotent
    assert dead_letters.append(config, _letters(3)) == 3
    assert dead_letters.append(config, _letters(3)) == 3  # a re-delivered batch
    assert dead_letters.append(config, _letters(2, reason="late", offset0=10)) == 2
    assert dead_letters.append(config, _letters(2, reason="late", table="t2", offset0=10)) == 2  # another plan
    assert dead_letters.append(config, _letters(0)) == 0

    everything = dead_letters.read(config, dedupe=False)
    assert everything.num_rows == 10
    letters = dead_letters.read(config)
    assert letters.num_rows == 7
    assert letters.schema.names == [*(c[0] for c in dead_letters.COLUMNS), dead_letters.WRITTEN_AT]
    assert letters.column("value").to_pylist()[:3] == [bytes([i, 0, 255]) for i in range(3)]
    assert dead_letters.read(config, feature_table="t2").num_rows == 2
    assert dead_letters.read(config, reason="late").num_rows == 4
    assert dead_letters.read(config, source="views").num_rows == 0
    # each record once, however many plans reported it
    assert dead_letters.counts(config) == {("clicks", "truncated"): 3, ("clicks", "late"): 2}
    assert dead_letters.counts(config, by=("feature_table",)) == {("t1",): 5}


def test_conform_refuses_nulls_in_required_columns() -> None:
    bad = _letters(1).set_column(0, "source", pa.array([None], pa.string()))
    with pytest.raises(ValidationError, match="source"):
        dead_letters.conform(bad)


def test_pandas_columns_to_arrow() -> None:
    # constant columns (source, feature table, topic) arrive as Python scalars, the others as Series
    columns = [
        "s", "t", "topic", pd.Series([0, 0], dtype="int32"),
        pd.Series([7, 8]), pd.Series([1.0e12, 1.0]), pd.Series(["late", "x"]), pd.Series([None, "d"], dtype=object),
        pd.Series([float("nan"), 1.0]), pd.Series([3.0, float("nan")]), pd.Series([None, b""], dtype=object),
        pd.Series([b"\x00\x01", b"v"]),
    ]
    table = dead_letters.to_arrow(columns)
    assert table.num_rows == 2 and table.column("feature_table").to_pylist() == ["t", "t"]
    row = table.to_pylist()[0]
    assert row["event_time_ms"] is None and row["watermark_ms"] == 3 and row["kafka_timestamp_ms"] == 10**12
    assert row["key"] is None and row["value"] == b"\x00\x01" and row["detail"] is None
    assert table.schema.field("offset").type == pa.int64()
