"""One real round trip through every local service, plus a PyFlink SQL job reading Kafka.

Uses the session fixture `services` (tests/conftest.py), which starts whatever is not running.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, cast

import pytest

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Click",
    "namespace": "featurestore.smoke",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "item_id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price", "type": ["null", "double"], "default": None},
    ],
}


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    from featurestore.kafka_topics import create_topic

    create_topic(bootstrap, topic, partitions=partitions, exist_ok=False)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == partitions


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _unique("smoke"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def test_hbase_versions_are_read_back_by_time(services: Any) -> None:
    import happybase

    host, port = services.require("hbase").split(":")
    conn = happybase.Connection(host, int(port), timeout=60_000)
    name = _unique("smoke_versions")
    conn.create_table(name, {"f": {"max_versions": 10}})
    try:
        table = conn.table(name)
        for ts, value in [(1_000, b"v1"), (2_000, b"v2"), (3_000, b"v3")]:
            table.put(b"user:1", {b"f:clicks": value}, timestamp=ts)
        cells = table.cells(b"user:1", b"f:clicks", versions=3, include_timestamp=True)
        assert cells == [(b"v3", 3_000), (b"v2", 2_000), (b"v1", 1_000)]
        # happybase's `timestamp=T` returns the newest version strictly older than T.
        assert table.row(b"user:1", timestamp=1_001) == {b"f:clicks": b"v1"}
        assert table.row(b"user:1", timestamp=2_000) == {b"f:clicks": b"v1"}
        assert table.row(b"user:1", timestamp=2_001) == {b"f:clicks": b"v2"}
        assert table.row(b"user:1", timestamp=3_001) == {b"f:clicks": b"v3"}
        assert table.row(b"user:1", timestamp=1_000) == {}
        assert table.row(b"user:1") == {b"f:clicks": b"v3"}
    finally:
        conn.delete_table(name, disable=True)
        conn.close()


def test_hdfs_write_list_read(services: Any) -> None:
    from hdfs_native import Client

    client = Client(services.require("hdfs"))
    folder = f"/smoke/{_unique('dir')}"
    payload = b"impression,click\n" * 1000
    client.mkdirs(folder, create_parent=True)
    try:
        with client.create(f"{folder}/part-0.csv") as writer:
            writer.write(payload)
        listed = {status.path.rsplit("/", 1)[-1]: status.length for status in client.list_status(folder)}
        assert listed == {"part-0.csv": len(payload)}
        with client.read(f"{folder}/part-0.csv") as reader:
            assert reader.read() == payload
    finally:
        client.delete(folder, recursive=True)


def test_kafka_avro_produce_consume(services: Any) -> None:
    import fastavro
    from confluent_kafka import Producer

    bootstrap = services.require("kafka")
    topic = _unique("smoke_avro")
    _create_topic(bootstrap, topic, partitions=3)
    schema = fastavro.parse_schema(AVRO_SCHEMA)
    records: list[dict[str, Any]] = [
        {"user_id": f"u{i}", "item_id": 100 + i, "ts": 1_700_000_000_000 + i, "price": None if i % 2 else i / 2}
        for i in range(10)
    ]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        producer.produce(topic, key=record["user_id"].encode(), value=buf.getvalue())
    assert producer.flush(30) == 0
    messages = _consume(bootstrap, topic, expected=len(records))
    decoded: list[dict[str, Any]] = [
        cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(m.value()), schema, None)) for m in messages
    ]
    for record in decoded:  # fastavro returns timestamp-millis as datetime
        record["ts"] = int(record["ts"].timestamp() * 1000)
    assert sorted(decoded, key=lambda r: r["item_id"]) == records
    assert {m.partition() for m in messages} <= {0, 1, 2}


def test_redis_set_get(services: Any) -> None:
    import redis

    client = redis.Redis.from_url(services.require("redis"))
    key = _unique("smoke")
    try:
        client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
    finally:
        client.delete(key)
        client.close()


@pytest.fixture(scope="module")
def table_env(services: Any) -> Iterator[Any]:
    with warnings.catch_warnings():
        # apache-beam (under PyFlink) imports httplib2, whose pyparsing calls are deprecated.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"httplib2\..*")
        # PyFlink's launch_gateway() drops the Popen of its (still running) gateway JVM.
        warnings.filterwarnings("ignore", category=ResourceWarning)
        from pyflink.table import EnvironmentSettings, TableEnvironment

        env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("pipeline.jars", ";".join(services.flink_jars()))
    env.get_config().set("parallelism.default", "1")
    yield env


def _kafka_table(name: str, topic: str, bootstrap: str, fmt: str) -> str:
    return f"""
        CREATE TABLE {name} (user_id STRING, item_id BIGINT, clicks INT) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          'properties.bootstrap.servers' = '{bootstrap}',
          'properties.group.id' = '{_unique("flink")}',
          'scan.startup.mode' = 'earliest-offset',
          'scan.bounded.mode' = 'latest-offset',
          'format' = '{fmt}'
        )"""


def test_pyflink_sql_reads_kafka_json(services: Any, table_env: Any) -> None:
    from confluent_kafka import Producer

    bootstrap = services.require("kafka")
    topic = _unique("smoke_flink_json")
    _create_topic(bootstrap, topic, partitions=2)
    rows = [{"user_id": f"u{i}", "item_id": i, "clicks": i * 10} for i in range(5)]
    producer = Producer({"bootstrap.servers": bootstrap})
    for row in rows:
        producer.produce(topic, value=json.dumps(row).encode())
    assert producer.flush(30) == 0

    table_env.execute_sql(_kafka_table("clicks_json", topic, bootstrap, "json"))
    result = table_env.execute_sql("SELECT user_id, item_id, clicks FROM clicks_json")
    with result.collect() as collected:
        got = sorted((r[0], r[1], r[2]) for r in collected)
    assert got == [(r["user_id"], r["item_id"], r["clicks"]) for r in rows]


def test_flink_sql_avro_jar_works_with_this_flink(services: Any, table_env: Any) -> None:
    """flink-sql-avro 2.1.0 (2.2.x is not on Maven Central) on Flink 2.2.1: write then read Avro."""
    bootstrap = services.require("kafka")
    topic = _unique("smoke_flink_avro")
    _create_topic(bootstrap, topic, partitions=1)
    table_env.execute_sql(_kafka_table("clicks_avro", topic, bootstrap, "avro"))
    table_env.execute_sql("INSERT INTO clicks_avro VALUES ('u1', 1, 10), ('u2', 2, 20)").wait()
    with table_env.execute_sql("SELECT * FROM clicks_avro").collect() as collected:
        got = sorted((r[0], r[1], r[2]) for r in collected)
    assert got == [("u1", 1, 10), ("u2", 2, 20)]
