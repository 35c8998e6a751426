"""Events produced to Kafka become versions in HBase, latest values in Redis and rows in the
Iceberg log, equal to the reference semantics (registry.reference) at every version time."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Producer

from featurestore.config import scratch_cluster_config
from featurestore.datagen import CtrLogSpec, generate
from featurestore.kafka_topics import create_topic
from featurestore.keys import encode_key, partition_for
from featurestore.offline.log import OfflineLog
from featurestore.services.ports import KAFKA_BOOTSTRAP
from featurestore.storage.online import open_online_cache
from featurestore.storage.versioned import open_versioned_store
from featurestore.time_semantics import pick_version
from ingestion.job import submit
from registry import reference
from registry.models import Definitions, StreamBinding
from registry.repo import load_repo
from registry.validate import build

ROOT = Path(__file__).resolve().parents[2]
TABLE = "user_click_features"
PARTITIONS = 3


def _definitions(topic: str, history_format: str = "avro") -> Definitions:
    """examples/ctr with the clicks source on a topic of this test's own (and its history in
    ``history_format``) and all versions kept."""
    example = load_repo(ROOT / "examples" / "ctr")
    objects: list[Any] = []
    for obj in example.objects():
        if obj.name == "clicks" and type(obj).__name__ == "Source":
            obj = obj.model_copy(update={"stream": StreamBinding(topic=topic, format="avro", partitions=PARTITIONS)})
            if history_format != "avro":
                path = obj.batch.path.replace(".avro", f".{history_format}")
                batch = obj.batch.model_copy(update={"path": path, "format": history_format})
                obj = obj.model_copy(update={"batch": batch})
        if obj.name == TABLE:  # keep every version in HBase, so any time can be checked
            obj = obj.model_copy(update={"online_versions": None})
        objects.append(obj)
    return build(objects, project=example.project)


def _produce(topic: str, schema: dict[str, Any], events: pa.Table, *, create: bool = True) -> None:
    """The events as schemaless Avro, keyed by user, on a new topic of PARTITIONS partitions
    (``create``) or appended to the existing one."""
    if create:
        create_topic(KAFKA_BOOTSTRAP, topic, partitions=PARTITIONS, exist_ok=False)
    parsed = fastavro.parse_schema(schema)
    fields = [f["name"] for f in schema["fields"]]
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "enable.idempotence": True})
    for row in events.to_pylist():
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, {f: row[f] for f in fields})
        key = encode_key([row["user_id"]])
        producer.produce(
            topic,
            buffer.getvalue(),
            key=key,
            partition=partition_for(key, PARTITIONS),
            on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
        )
    assert producer.flush(30) == 0
    assert not errors, errors[:3]


def _visible(rows: list[dict[str, Any]], feature: str, key: str, t: int, ttl: int | None) -> Any:
    """The value a read at ``t`` sees among ``rows`` that write ``feature`` (the documented rule)."""
    mine = [(r["version_ms"], 0, r[feature]) for r in rows if r["user_id"] == key and _writes(r, feature)]
    chosen = pick_version(mine, t, ttl)
    return None if chosen is None else chosen[2]


def _writes(row: dict[str, Any], feature: str) -> bool:
    written = row.get("_written")
    return written is None or feature in written


def test_kafka_to_hbase_redis_iceberg_equals_the_oracle(services: object, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"test.ingest.clicks.{run}"
    definitions = _definitions(topic)
    clicks = generate(CtrLogSpec(days=2, users=40, items=30, impressions_per_day=3_000, seed=11)).clicks
    clicks = clicks.filter(pc.equal(clicks["defect"], "")).sort_by("arrival_ms")
    _produce(topic, definitions.source("clicks").avro_schema, clicks)

    config = scratch_cluster_config(tmp_path, f"t{run}")
    job = submit(config, definitions, [TABLE], bounded=True)
    job.wait()
    assert_stores_equal_the_oracle(config, definitions, clicks)


def assert_stores_equal_the_oracle(
    config: Any, definitions: Definitions, clicks: pa.Table, *, online_may_miss: bool = False
) -> int:
    """HBase versions, Redis latest values and the Iceberg log of TABLE equal the oracle over
    ``clicks`` (probed around each version time of a dozen users); drops the tables afterwards.
    ``online_may_miss``: a key Redis does not hold is accepted (a cache that lost its memory;
    readers fall back to the versioned store). Returns how many latest values Redis held."""
    held = 0
    # The oracle over the same events; a bounded run fires every expiry at the end of input.
    longest = max(f.window_ms or 0 for f in definitions.feature_table(TABLE).features)
    until = int(pc.max(clicks["ts"]).as_py()) + longest
    groups = reference.feature_versions(definitions, TABLE, clicks, until_ms=until)
    schema = definitions.table_schema(TABLE)
    users = sorted(set(clicks["user_id"].to_pylist()))[:12]

    store = open_versioned_store(config.versioned_store)
    online = open_online_cache(config.online_cache)
    log_rows = OfflineLog(config.offline_log).table(schema).scan(dedupe=True).to_pylist()
    try:
        for group in groups:
            expected = group.versions.to_pylist()
            times = sorted({r["version_ms"] for r in expected if r["user_id"] in users})
            probes = [t + d for t in times[:: max(1, len(times) // 60)] for d in (-1, 0, 1)]
            for feature in group.features:
                keys = [u for u in users for _ in probes]
                got = store.get_as_of(TABLE, keys, [t for _ in users for t in probes], [feature])[feature].to_pylist()
                for (user, t), value in zip([(u, t) for u in users for t in probes], got, strict=True):
                    want = _visible(expected, feature, user, t, schema.ttl_ms)
                    assert _same(value, want), ("hbase", feature, user, t, value, want)
                    logged = _visible(log_rows, feature, user, t, schema.ttl_ms)
                    assert _same(logged, want), ("offline log", feature, user, t, logged, want)
                latest = online.get(TABLE, users, [feature], now_ms=until)
                stamps = latest[f"{feature}__ts"].to_pylist()
                for user, value, stamp in zip(users, latest[feature].to_pylist(), stamps, strict=True):
                    if online_may_miss and stamp is None:
                        continue
                    held += 1
                    want = _visible(expected, feature, user, until, schema.ttl_ms)
                    assert _same(value, want), ("redis", feature, user, value, want)
    finally:
        store.drop_table(TABLE)
        online.drop_table(TABLE)
        store.close()
        online.close()
    return held


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return bool(a == b)
