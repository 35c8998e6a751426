"""The batch binding of a source: its history replayed as P ordered, partitioned streams.

The ``hdfs-replay`` connector (Java, ``backfill/java/``; docs/backfill.md) reads a source's
history files the way Kafka presents its topic, so the compiled plan of a feature table reads
history through the same kind of source as live events:

* partition ``p`` holds the events whose key has ``featurestore.keys.partition_for(encode_key(key), P)
  == p``, as a Kafka topic of ``P`` partitions would;
* each partition is in (event time, file index, row) order; ``__seq`` is the position
  ``file index << 32 | row``, so equal event times keep log order, as Kafka offsets do;
* the watermark is per partition, ``watermark_delay_ms`` behind its newest event.

This module is text only (table options and metadata columns, a
:class:`registry.flink_sql.SourceDeclaration`); running a replay is :mod:`backfill.replay`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from featurestore.errors import ValidationError

from registry import flink_sql, rules
from registry.flink_sql import SourceDeclaration, q
from registry.models import Source

CONNECTOR = "hdfs-replay"
PARTITION_COLUMN = "__partition"
POSITION_COLUMN = "__position"
DEFAULT_MAX_LATENESS_MS = 3_600_000


@dataclass(frozen=True)
class ReplaySpec:
    """How to replay a source.

    ``key_fields``: the entity key columns that partition the replay (their order is the key's).
    ``partitions``: default the source's Kafka partitions (so an entity lands in the same
    partition number live and in replay), else 1. ``start_ms``/``end_ms``: the event-time range,
    start inclusive, end exclusive. ``max_lateness_ms``: the longest time between an event and the
    start of the landing hour of the file that holds it; it bounds the buffer (see
    docs/backfill.md). ``on_late``: a row beyond that bound fails the job, or is dropped and
    counted. ``events_per_second``: a limit on the whole source, on the rows from event time
    ``rate_from_ms`` on (None: every row), so a replay can race through a warm-up and then run
    at the pace of a live stream. ``speed_up``: rather than a rate, replay those rows in event time,
    this many times faster than they happened (dense and sparse partitions keep step, as in live
    traffic; each reader starts its clock at its first paced row).
    ``watermark_delay_ms``: how far
    each partition's watermark trails its newest event (>= 1 keeps equal times from being late).
    """

    key_fields: tuple[str, ...]
    partitions: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS
    on_late: Literal["fail", "drop"] = "fail"
    events_per_second: float | None = None
    rate_from_ms: int | None = None
    speed_up: float | None = None
    watermark_delay_ms: int = 1

    def partitions_for(self, source: Source) -> int:
        if self.partitions is not None:
            return self.partitions
        return source.stream.partitions if source.stream is not None else 1


def _check(source: Source, spec: ReplaySpec) -> None:
    if source.batch is None:
        raise ValidationError(f"source {source.name!r} has no batch binding to replay")
    if not spec.key_fields:
        raise ValidationError("a replay needs at least one key field")
    columns = source.columns
    for name in (*spec.key_fields, source.event_time):
        if name not in columns:
            raise ValidationError(f"source {source.name!r} has no column {name!r}")
    if spec.partitions_for(source) < 1:
        raise ValidationError("partitions must be at least 1")
    if spec.max_lateness_ms < 0 or spec.watermark_delay_ms < 0:
        raise ValidationError("max_lateness_ms and watermark_delay_ms must not be negative")
    for name, value in (("events_per_second", spec.events_per_second), ("speed_up", spec.speed_up)):
        if value is not None and not value > 0:
            raise ValidationError(f"{name} must be positive, not {value}")
    if spec.start_ms is not None and spec.end_ms is not None and spec.start_ms >= spec.end_ms:
        raise ValidationError(f"empty time range: start {spec.start_ms} is not below end {spec.end_ms}")


def replay_options(source: Source, *, history_root: str, spec: ReplaySpec) -> dict[str, str]:
    """The table options of the replay of ``source``'s history under ``history_root``."""
    _check(source, spec)
    assert source.batch is not None  # _check
    options = {
        "connector": CONNECTOR,
        "path": flink_sql.check_config_path(history_root.rstrip("/"), "history root"),
        "layout": rules.batch_layout(source.batch.path),
        "format": source.batch.format,
        "partitions": str(spec.partitions_for(source)),
        "key.fields": ",".join(spec.key_fields),
        "event-time.field": source.event_time,
        "max-lateness-ms": str(int(spec.max_lateness_ms)),
        "on-late": spec.on_late,
    }
    if spec.start_ms is not None:
        options["scan.start-ms"] = str(int(spec.start_ms))
    if spec.end_ms is not None:
        options["scan.end-ms"] = str(int(spec.end_ms))
    if spec.events_per_second is not None:
        options["rate-limit.events-per-second"] = repr(float(spec.events_per_second))
    if spec.speed_up is not None:
        options["rate-limit.speed-up"] = repr(float(spec.speed_up))
    if spec.rate_from_ms is not None and (spec.events_per_second is not None or spec.speed_up is not None):
        options["rate-limit.from-ms"] = str(int(spec.rate_from_ms))
    return options


def replay_declaration(source: Source, *, history_root: str, spec: ReplaySpec) -> SourceDeclaration:
    """The replay as a binding for ``registry.flink_sql.source_tables``: ``__partition`` and
    ``__position`` metadata, ``__seq`` = ``__position``, watermark ``watermark_delay_ms`` behind."""
    return SourceDeclaration(
        replay_options(source, history_root=history_root, spec=spec),
        (
            f"{q(PARTITION_COLUMN)} INT METADATA FROM 'partition' VIRTUAL",
            f"{q(POSITION_COLUMN)} BIGINT METADATA FROM 'position' VIRTUAL",
        ),
        q(POSITION_COLUMN),
        spec.watermark_delay_ms,
    )
