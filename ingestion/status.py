"""What a running ingestion job is doing, in numbers a user can read (`featurestore ingest status`).

A job started by ``featurestore ingest`` leaves a small record, ``<repo>/.featurestore/jobs/ingest.json``:
its Flink job id, start time, tables, sample tables, topics, Kafka consumer groups, progress
directory and checkpoint directory. :func:`ingest_status` reads, from the real places:

* rows written per feature table and samples per sample table, and the newest version time
  written: the sinks' progress files (``ingestion.progress``);
* **freshness**: now minus the newest version time any sink has written (how far behind the
  wall clock the stores are; event time, so a replay of old data looks stale);
* **consumer lag** per topic: the end offsets minus the offsets Flink's Kafka source committed
  for the plan's consumer group (it commits on every completed checkpoint);
* **checkpoint age**: how long ago the newest completed checkpoint was written;
* **dead letters** per source and reason (the Iceberg dead-letter table).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from featurestore.config import STATE_DIR, ProfileConfig
from featurestore.errors import NotFoundError
from registry.flink_sql import consumer_group
from registry.models import Definitions

from ingestion.progress import read_progress

RECORD = "ingest.json"


@dataclass(frozen=True)
class JobRecord:
    """What ``featurestore ingest`` records about the job it started."""

    job_id: str
    started_ms: int
    tables: tuple[str, ...]
    samples: tuple[str, ...]
    consumer_groups: dict[str, str]  # consumer group of each plan -> the topic it reads
    progress_dir: str
    checkpoint_dir: str

    def save(self, repo: Path) -> Path:
        path = record_path(repo)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, repo: Path) -> JobRecord:
        path = record_path(repo)
        if not path.exists():
            raise NotFoundError(f"no ingestion job recorded in {path}", hint="start one with featurestore ingest")
        data = json.loads(path.read_text())
        return cls(
            job_id=data["job_id"], started_ms=int(data["started_ms"]), tables=tuple(data["tables"]),
            samples=tuple(data["samples"]), consumer_groups=dict(data["consumer_groups"]),
            progress_dir=data["progress_dir"], checkpoint_dir=data["checkpoint_dir"],
        )


def consumer_groups(definitions: Definitions, tables: Sequence[str], samples: Sequence[str]) -> dict[str, str]:
    """The consumer group of each plan of a live job and the topic it reads."""
    groups: dict[str, str] = {}
    for name in tables:
        source = definitions.source(definitions.feature_table(name).source)
        if source.stream is not None:
            groups[consumer_group(name)] = source.stream.topic
    for name in samples:
        table = definitions.sample_table(name)
        for role, source_name in (("base", table.base_source), ("label", table.label_source)):
            source = definitions.source(source_name)
            if source.stream is not None:
                groups[consumer_group(f"{name}_{role}")] = source.stream.topic
    return groups


def record_path(repo: Path) -> Path:
    return Path(repo) / STATE_DIR / "jobs" / RECORD


@dataclass
class IngestStatus:
    job_id: str
    running_s: float
    rows_by_table: dict[str, int]
    samples_by_table: dict[str, int]
    newest_version_ms: int | None
    freshness_s: float | None
    open_sinks: int
    consumer_lag: dict[str, int | None]  # "topic (group)" -> messages not yet committed (None: unknown)
    checkpoint_age_s: float | None
    dead_letters: dict[str, int] = field(default_factory=dict)  # "source/reason" -> records
    write_errors: dict[str, str] = field(default_factory=dict)  # "table.group" -> error being retried

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def consumer_lag(bootstrap: str, topic: str, group: str, *, timeout_s: float = 10.0) -> int | None:
    """End offsets minus the group's committed offsets over the topic's partitions (a partition the
    group never committed counts from its beginning); None when Kafka does not answer."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = consumer.committed(partitions, timeout=timeout_s)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
            position = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - position)
        return lag
    except KafkaException:
        return None
    finally:
        consumer.close()


def checkpoint_age_s(checkpoint_dir: str, job_id: str, *, now: float | None = None) -> float | None:
    """Seconds since the job's newest completed checkpoint (its ``_metadata`` file) was written."""
    root = Path(checkpoint_dir.removeprefix("file://")) / job_id
    done = list(root.glob("chk-*/_metadata"))
    if not done:
        return None
    newest = max(p.stat().st_mtime for p in done)
    return max(0.0, (now if now is not None else time.time()) - newest)


def ingest_status(config: ProfileConfig, record: JobRecord, *, now_ms: int | None = None) -> IngestStatus:
    """The status of the job ``record`` describes (see the module docstring)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    progress = read_progress(record.progress_dir)
    rows: dict[str, int] = {}
    for (table, _), n in progress.rows.items():
        rows[table] = rows.get(table, 0) + n
    newest = max(progress.newest_ms.values(), default=None)
    lags: dict[str, int | None] = {}
    if config.kafka is not None:
        for group, topic in sorted(record.consumer_groups.items()):
            lags[f"{topic} ({group})"] = consumer_lag(config.kafka.bootstrap_servers, topic, group)
    dead: dict[str, int] = {}
    try:
        from ingestion import dead_letters

        for (source, reason), n in dead_letters.counts(config.offline_log).items():
            dead[f"{source}/{reason}"] = n
    except NotFoundError:
        pass
    return IngestStatus(
        job_id=record.job_id,
        running_s=max(0.0, (now - record.started_ms) / 1000),
        rows_by_table=rows,
        samples_by_table=dict(progress.samples),
        newest_version_ms=newest,
        freshness_s=None if newest is None else max(0.0, (now - newest) / 1000),
        open_sinks=len(progress.open_sinks),
        consumer_lag=lags,
        checkpoint_age_s=checkpoint_age_s(record.checkpoint_dir, record.job_id, now=now / 1000),
        dead_letters=dead,
        write_errors=dict(progress.errors),
    )
