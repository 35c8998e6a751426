"""Real-time samples on the real services: impressions and clicks produced to Kafka (clicks delayed,
both streams out of order within the allowed lateness) become exactly the oracle's positives and
negatives, each with the features the point-in-time export gives for the same sample, in the
Iceberg sample table and on the Kafka samples topic."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from featurestore.config import scratch_cluster_config
from featurestore.datagen import CtrLogSpec, generate
from featurestore.kafka_topics import create_topic
from featurestore.keys import encode_key, partition_for
from featurestore.offline import samples as stored_samples
from featurestore.offline.log import OfflineLog
from featurestore.pit.engine import get_historical_features
from featurestore.pit.sources import FeatureSource
from featurestore.services.ports import KAFKA_BOOTSTRAP
from ingestion import samples as sample_sink
from ingestion.job import submit
from registry import reference
from registry.models import Definitions, StreamBinding
from registry.repo import load_repo
from registry.sample_compiler import LABEL_MS, SAMPLE_MS, SAMPLE_SEQ
from registry.validate import build

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = "ctr_samples"
PARTITIONS = 2


def _definitions(run: str) -> Definitions:
    example = load_repo(ROOT / "examples" / "ctr")
    objects: list[Any] = []
    for obj in example.objects():
        if type(obj).__name__ == "Source":
            topic = f"test.samples.{obj.name}.{run}"
            obj = obj.model_copy(update={"stream": StreamBinding(topic=topic, format="avro", partitions=PARTITIONS)})
        objects.append(obj)
    return build(objects, project=example.project)


def _produce(topic: str, schema: dict[str, Any], events: pa.Table, key_column: str) -> None:
    create_topic(KAFKA_BOOTSTRAP, topic, partitions=PARTITIONS, exist_ok=False)
    parsed = fastavro.parse_schema(schema)
    fields = [f["name"] for f in schema["fields"]]
    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "enable.idempotence": True})
    errors: list[str] = []
    for row in events.to_pylist():
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, {f: row[f] for f in fields})
        key = encode_key([row[key_column]])
        producer.produce(topic, buffer.getvalue(), key=key, partition=partition_for(key, PARTITIONS),
                         on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
    assert producer.flush(30) == 0
    assert not errors, errors[:3]


def _read_topic(topic: str) -> list[dict[str, Any]]:
    consumer = Consumer({"bootstrap.servers": KAFKA_BOOTSTRAP, "group.id": f"t.{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
    rows = []
    try:
        while True:
            message = consumer.poll(5.0)
            if message is None:
                break
            assert message.error() is None, message.error()
            rows.append(json.loads(message.value()))
    finally:
        consumer.close()
    return rows


def test_kafka_samples_equal_the_oracle_and_the_point_in_time_export(services: object, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    definitions = _definitions(run)
    table = definitions.sample_table(SAMPLES)
    log = generate(CtrLogSpec(days=1, users=30, items=20, impressions_per_day=1_500, seed=5))
    impressions = log.impressions.filter(pc.equal(log.impressions["defect"], "")).sort_by("arrival_ms")
    clicks = log.clicks.filter(pc.equal(log.clicks["defect"], "")).sort_by("arrival_ms")
    _produce(definitions.source("impressions").stream.topic, definitions.source("impressions").avro_schema,  # type: ignore[union-attr]
             impressions, "user_id")
    _produce(definitions.source("clicks").stream.topic, definitions.source("clicks").avro_schema,  # type: ignore[union-attr]
             clicks, "user_id")

    config = scratch_cluster_config(tmp_path, f"s{run}")
    assert config.kafka is not None
    kafka = config.kafka.model_copy(update={"samples_topic_prefix": f"samples.{run}."})
    config = config.model_copy(update={"kafka": kafka})
    job = submit(config, definitions, bounded=True)
    job.wait()

    assert config.offline_log is not None
    got = stored_samples.read(config.offline_log, SAMPLES)
    # Labels: one sample per impression, positive iff a click of it came within the window.
    expected = reference.samples(definitions, table, impressions, clicks)
    want = {r["impression_id"]: r[table.label] for r in expected.to_pylist()}
    have = {r["impression_id"]: r[table.label] for r in got.to_pylist()}
    assert len(got) == len(have), "one sample per impression"
    assert have == want
    assert 0 < sum(have.values()) < len(have)
    for row in got.to_pylist():
        assert (row[LABEL_MS] is not None) == bool(row[table.label])
        if row[LABEL_MS] is not None:
            assert row[SAMPLE_MS] <= row[LABEL_MS] <= row[SAMPLE_MS] + table.window_ms

    # Features: what the point-in-time export gives for the same samples from the offline log.
    offline = OfflineLog(config.offline_log)
    names = {ref.split(":")[0] for ref in table.features}
    sources = [FeatureSource(definitions.table_schema(n), offline.table(definitions.table_schema(n))) for n in names]
    keys = got.select(["impression_id", "user_id", "item_id", "ts"])
    exported = get_historical_features(keys, list(table.features), sources, event_time="ts")
    exported_rows = {r["impression_id"]: r for r in exported.to_pylist()}
    mismatches = []
    for row in got.to_pylist():
        for ref in table.features:
            feature = ref.split(":")[1]
            if row[feature] != exported_rows[row["impression_id"]][feature]:
                mismatches.append((row["impression_id"], row[SAMPLE_MS], feature, row[feature],
                                   exported_rows[row["impression_id"]][feature]))
    assert not mismatches, mismatches[:5]

    # The Kafka samples topic carries the same samples (at least once: dedupe by seq).
    produced = {r[SAMPLE_SEQ]: r for r in _read_topic(sample_sink.topic_name(SAMPLES, f"samples.{run}."))}
    assert len(produced) == len(got)
    for row in got.to_pylist():
        message = produced[row[SAMPLE_SEQ]]
        assert message[table.label] == row[table.label]
        assert all(message[ref.split(":")[1]] == row[ref.split(":")[1]] for ref in table.features)


@pytest.fixture(autouse=True)
def _kafka(services: Any) -> None:
    services.require("kafka")
