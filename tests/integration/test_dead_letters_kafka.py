"""Dead letters on the real Kafka: a bounded job over topics holding good records, malformed ones
(truncated, garbage, invalid UTF-8, empty, a tombstone, bad JSON), schema violations (trailing
bytes, a union branch the schema lacks, a missing / null / mistyped JSON field) and late events
does not fail; every bad record lands in ``<topic>.dead-letters`` and in the Iceberg table with
its reason and its original key and value bytes; the good records come out decoded exactly as
fastavro (or json) decodes them, and the features equal the oracle over the good, on-time events.

Watermarks are emitted per record (``on-event``), one partition per topic, so which events are
late is deterministic. A second test runs the ingestion job itself (HBase, Redis, Iceberg).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.services.ports import KAFKA_BOOTSTRAP
from ingestion import dead_letters
from ingestion.runner import execute_inserts, read_group, table_environment
from registry import flink_sql
from registry.compiler import FileSink, compile_table
from registry.models import Definitions, Entity, Feature, FeatureTable, JoinKey, Source, StreamBinding
from registry.reference import feature_versions
from registry.validate import build
from tests.integration.test_compiler_flink import assert_visible_equal

SCHEMA = {
    "type": "record",
    "name": "Event",
    "doc": "an event; it's documented",  # a quote in the schema text
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "v", "type": "int"},
        {"name": "x", "type": ["null", "double"], "default": None},
        {"name": "item", "type": ["null", "string"], "default": None},
    ],
}
# fastavro turns timestamp-millis into datetimes; the columns are epoch ms: decode the same bytes as long
AS_LONG = {**SCHEMA, "fields": [{**f, "type": "long"} if f["name"] == "ts" else f for f in SCHEMA["fields"]]}
WITH_EXTRA = {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "extra", "type": "string"}]}
FIELDS = ("user_id", "ts", "v", "x", "item")
T0 = 1_790_000_000_000
MIN = 60_000
FEATURES = (
    Feature(name="n_10m", agg="count", window="10m"),
    Feature(name="sum_v_1h", agg="sum", column="v", window="1h"),
    Feature(name="last_v", column="v"),
    Feature(name="last_x", column="x"),
    Feature(name="last_item", column="item"),
)


def definitions(avro_topic: str, json_topic: str) -> Definitions:
    objects: list[Any] = [Entity(name="user", join_keys=(JoinKey(name="user_id"),))]
    for name, topic, fmt in (("ev_avro", avro_topic, "avro"), ("ev_json", json_topic, "json")):
        objects.append(
            Source(name=name, avro_schema=SCHEMA, event_time="ts", allowed_lateness="5m",
                   stream=StreamBinding(topic=topic, format=fmt, partitions=1))  # type: ignore[arg-type]
        )
        objects.append(FeatureTable(name=f"{name}_features", entity="user", source=name, features=FEATURES))
    return build(objects)


def event(user: str, ts: int, v: int, x: float | None = None, item: str | None = None) -> dict[str, Any]:
    return {"user_id": user, "ts": ts, "v": v, "x": x, "item": item}


def avro(record: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# One entry per record: (key, value, expected) with expected "good", "late" or a decode reason.
Stream = list[tuple[bytes | None, bytes | None, str]]


def avro_stream() -> Stream:
    good = [event("a", T0, 1, 0.5, "i1"), event("b", T0 + MIN, 2), event("c", T0 + 2 * MIN, 3, None, "xyz")]
    out: Stream = [(b"a", avro(good[0]), "good"), (b"b", avro(good[1]), "good")]
    out.append((b"c", avro(good[2])[:-2], "truncated"))  # the item string cut short
    out.append((b"g", b"\xff" * 12, "bad-varint"))  # garbage: a length that never ends
    bad_utf8 = zigzag(2) + b"\xc3\x28" + zigzag(T0) + zigzag(1) + b"\x00\x00"
    out.append((b"u", bad_utf8, "bad-utf8"))
    out.append((b"w", avro({**good[2], "extra": "new field"}, WITH_EXTRA), "trailing-bytes"))  # another schema
    branch = zigzag(1) + b"c" + zigzag(T0) + zigzag(3) + zigzag(2) + b"\x00" * 8 + b"\x00"
    out.append((b"c", branch, "bad-union-branch"))  # x with union branch 2 of [null, double]
    out.append((b"t", None, "null-value"))  # a tombstone
    out.append((None, b"", "truncated"))  # empty, and no key
    out.append((b"c", avro(good[2]), "good"))
    out.append((b"d", avro(event("d", T0 + 20 * MIN, 4, 1.25)), "good"))  # watermark -> T0 + 15m
    out.append((b"a", avro(event("a", T0 + 5 * MIN, 5)), "late"))
    out.append((b"b", avro(event("b", T0 + 15 * MIN, 6)), "late"))  # exactly at the watermark: late
    out.append((b"e", avro(event("e", T0 + 15 * MIN + 1, 7, -2.0, "z")), "good"))  # 1 ms after: on time
    out.append((b"a", avro(event("a", T0 + 40 * MIN, 8, 3.0, "é✓")), "good"))
    return out


def as_json(record: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**record, **changes}).encode()


def json_stream() -> Stream:
    a = event("a", T0, 1, 0.5, "i1")
    out: Stream = [(b"a", as_json(a), "good")]
    out.append((b"b", as_json(event("b", T0 + MIN, 2), unknown="ignored"), "good"))  # extra fields are fine
    out.append((b"n", b'{"user_id": "n", "ts": ', "bad-json"))
    out.append((b"n", as_json(a) + b" {}", "bad-json"))  # trailing content
    out.append((b"n", b'[1, 2]', "not-an-object"))
    out.append((b"n", json.dumps({k: v for k, v in a.items() if k != "ts"}).encode(), "missing-field"))
    out.append((b"n", as_json(a, v=None), "null-field"))
    out.append((b"n", as_json(a, v="12"), "wrong-type"))
    out.append((b"n", as_json(a, v=2**40), "wrong-type"))
    out.append((b"n", as_json(a, ts=1.5), "wrong-type"))
    out.append((b"c", json.dumps({"user_id": "c", "ts": T0 + 2 * MIN, "v": 3}).encode(), "good"))  # x, item absent
    out.append((b"d", as_json(event("d", T0 + 20 * MIN, 4, 1.25)), "good"))
    out.append((b"a", as_json(event("a", T0 + 5 * MIN, 5)), "late"))
    out.append((b"a", as_json(event("a", T0 + 40 * MIN, 8, 3.0, "é✓")), "good"))
    return out


def produce(topic: str, stream: Stream) -> list[int]:
    """The records in order on a new one-partition topic; returns each one's offset."""
    from confluent_kafka import Producer

    from featurestore.kafka_topics import create_topic

    create_topic(KAFKA_BOOTSTRAP, topic, partitions=1, exist_ok=False)
    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "enable.idempotence": True})
    offsets: dict[int, int] = {}
    for i, (key, value, _) in enumerate(stream):
        producer.produce(topic, value, key=key, partition=0,
                         on_delivery=lambda err, msg, i=i: offsets.__setitem__(i, -1 if err else msg.offset()))
    assert producer.flush(30) == 0
    return [offsets[i] for i in range(len(stream))]


def decoded(fmt: str, value: bytes) -> dict[str, Any]:
    if fmt == "avro":
        return dict(fastavro.schemaless_reader(io.BytesIO(value), fastavro.parse_schema(AS_LONG)))  # type: ignore[arg-type]
    record = json.loads(value)
    return {f: record.get(f) for f in FIELDS}


@pytest.fixture()
def topics(services: object) -> Iterator[tuple[str, str]]:
    run = uuid.uuid4().hex[:8]
    names = (f"test.dead.avro.{run}", f"test.dead.json.{run}")
    yield names
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})  # kept: its futures die with it
    deleting = admin.delete_topics([*names, *(n + dead_letters.TOPIC_SUFFIX for n in names)])
    for future in deleting.values():  # wait: the process may end before the request is sent
        with contextlib.suppress(KafkaException):  # a topic the test did not get to create
            future.result(30)


def test_bad_records_become_dead_letters_and_the_job_goes_on(topics: tuple[str, str], tmp_path: Path) -> None:
    defs = definitions(*topics)
    streams = {"ev_avro": avro_stream(), "ev_json": json_stream()}
    offsets = {name: produce(defs.source(name).stream.topic, s) for name, s in streams.items()}  # type: ignore[union-attr]
    offline = OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=str(tmp_path / "wh"))
    dead_letters.ensure_table(offline)

    env = table_environment(None, 1, {"python.executable": sys.executable, "python.client.executable": sys.executable})
    inserts: list[str] = []
    plans = {}
    for name in streams:
        table = f"{name}_features"
        plan = compile_table(defs, table, "stream", kafka_bootstrap=KAFKA_BOOTSTRAP,
                             sink=FileSink(str(tmp_path / "versions")), bounded=True, watermark_on_event=True)
        plans[name] = plan
        dead = dead_letters.dead_letter_plan(defs.source(name), feature_table=table,
                                             events_table=plan.events_table, raw=plan.raw_table,
                                             kafka_bootstrap=KAFKA_BOOTSTRAP)
        dead_letters.ensure_topic(KAFKA_BOOTSTRAP, dead.topic)
        for ddl in [*plan.statements(), *dead.statements]:
            env.execute_sql(ddl)
        assert dead.function is not None
        env.create_temporary_function(dead.function, dead_letters.write_udf(offline))
        # the records the events view lets through, to compare with fastavro / json
        good_dir = tmp_path / "good" / name
        env.execute_sql(
            f"CREATE TEMPORARY TABLE `good_{name}` (user_id STRING, ts BIGINT, v INT, x DOUBLE, item STRING, "
            f"`offset` BIGINT) WITH ('connector' = 'filesystem', 'path' = '{good_dir}', 'format' = 'json')"
        )
        inserts.append(f"INSERT INTO `good_{name}` SELECT user_id, ts, v, x, item, __offset FROM `__events_{table}`")
        inserts += [*plan.inserts(), *dead.inserts]
    execute_inserts(env, inserts).wait()  # a bad record would have failed the job here

    iceberg = dead_letters.read(offline)
    for name, stream in streams.items():
        fmt = defs.source(name).stream.format  # type: ignore[union-attr]
        topic = defs.source(name).stream.topic  # type: ignore[union-attr]
        bad = {offsets[name][i]: (key, value, reason) for i, (key, value, reason) in enumerate(stream)
               if reason != "good"}
        kafka = dead_letters.read_topic(KAFKA_BOOTSTRAP, topic + dead_letters.TOPIC_SUFFIX)
        mine = iceberg.filter(pc.equal(iceberg["source"], name))
        for where, table in (("kafka", kafka), ("iceberg", mine)):
            rows = {r["offset"]: r for r in table.to_pylist()}
            assert set(rows) == set(bad), (where, name, sorted(rows), sorted(bad))
            for offset, (key, value, reason) in bad.items():
                row = rows[offset]
                assert (row["reason"], row["key"], row["value"]) == (reason, key, value), (where, name, row)
                assert (row["source"], row["feature_table"], row["topic"], row["partition"]) == (
                    name, f"{name}_features", topic, 0)
                assert row["kafka_timestamp_ms"] > 0
                assert row["detail"], row
                if reason == "late":
                    record = decoded(fmt, value)  # type: ignore[arg-type]
                    assert row["event_time_ms"] == record["ts"]
                    assert row["watermark_ms"] == T0 + 15 * MIN and row["event_time_ms"] <= row["watermark_ms"]
                    assert "allowed lateness 300000 ms" in row["detail"]
                else:
                    assert row["event_time_ms"] is None and row["watermark_ms"] is None

        # good records: decoded exactly as fastavro / json decode them, nothing else got through
        files = [p for p in (tmp_path / "good" / name).rglob("*") if p.is_file() and not p.name.startswith(".")]
        got = pa.concat_tables([pajson.read_json(p) for p in files if p.stat().st_size]).to_pylist()
        want = {offsets[name][i]: decoded(fmt, value) for i, (_, value, reason) in enumerate(stream)  # type: ignore[arg-type]
                if reason in ("good", "late")}
        assert {r.pop("offset"): r for r in got} == want

        # the features equal the oracle over the good, on-time events
        plan = plans[name]
        on_time = [decoded(fmt, v) | {"kafka_seq": offsets[name][i] * flink_sql.SEQ_PARTITIONS}  # type: ignore[arg-type]
                   for i, (_, v, reason) in enumerate(stream) if reason == "good"]
        events = pa.Table.from_pylist(on_time)
        until = max(e["ts"] for e in on_time) + 3_600_000
        for group in feature_versions(defs, plan.table, events, seq_column="kafka_seq", until_ms=until):
            flink = read_group(next(g for g in plan.groups if g.features == group.features))
            assert assert_visible_equal(flink, group.versions, group.features, ("user_id",)) > 0

    expected_counts: dict[tuple[Any, ...], int] = {}
    for name, stream in streams.items():
        for _, _, reason in stream:
            if reason != "good":
                expected_counts[(name, reason)] = expected_counts.get((name, reason), 0) + 1
    assert dead_letters.counts(offline) == expected_counts


def test_the_ingestion_job_reports_dead_letters_and_keeps_writing(topics: tuple[str, str], tmp_path: Path) -> None:
    """``featurestore ingest``'s job (ingestion.job.submit) on the same topics: HBase, Redis and the
    Iceberg log get the good events' versions; every record that does not decode is a dead letter
    in Iceberg and in the topic. Which events are late depends on the periodic watermark here, so
    only that they are among the late ones is checked."""
    from featurestore.config import scratch_cluster_config
    from featurestore.offline.log import OfflineLog
    from ingestion.job import submit

    run = uuid.uuid4().hex[:8]
    defs = definitions(*topics)
    streams = {"ev_avro": avro_stream(), "ev_json": json_stream()}
    offsets = {name: produce(defs.source(name).stream.topic, s) for name, s in streams.items()}  # type: ignore[union-attr]
    config = scratch_cluster_config(tmp_path, f"t{run}")
    submit(config, defs, bounded=True).wait()

    letters = dead_letters.read(config.offline_log)
    for name, stream in streams.items():
        table = f"{name}_features"
        mine = letters.filter(pc.equal(letters["source"], name)).to_pylist()
        decode = {offsets[name][i]: r for i, (_, _, r) in enumerate(stream) if r not in ("good", "late")}
        assert {r["offset"]: r["reason"] for r in mine if r["reason"] != "late"} == decode
        late = {offsets[name][i] for i, (_, _, reason) in enumerate(stream) if reason == "late"}
        assert {r["offset"] for r in mine if r["reason"] == "late"} <= late  # periodic watermark: maybe fewer
        topic = defs.source(name).stream.topic + dead_letters.TOPIC_SUFFIX  # type: ignore[union-attr]
        kafka = dead_letters.read_topic(KAFKA_BOOTSTRAP, topic)
        assert sorted(kafka["offset"].to_pylist()) == sorted(r["offset"] for r in mine)
        log = OfflineLog(config.offline_log).table(defs.table_schema(table)).scan()
        users = {"a", "b", "c", "d", "e"} if name == "ev_avro" else {"a", "b", "c", "d"}
        assert set(log["user_id"].to_pylist()) == users
