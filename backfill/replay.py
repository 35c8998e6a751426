"""A source's history replayed as P ordered, partitioned streams: the ``hdfs-replay`` Flink table.

:func:`replay_declaration` is the batch binding the compiled plan can read instead of the
unordered ``filesystem`` connector (a :class:`registry.flink_sql.SourceDeclaration`, so
``registry.flink_sql.source_tables`` builds the same CREATE statements as for Kafka):

* partition ``p`` holds the events whose key has ``featurestore.keys.partition_for(encode_key(key), P)
  == p``, as a Kafka topic of ``P`` partitions would;
* each partition is in (event time, file index, row) order; ``__seq`` is the position
  ``file index << 32 | row``, so equal event times keep log order, as Kafka offsets do;
* the watermark is per partition, ``watermark_delay_ms`` behind its newest event.

:func:`replay_ddl` gives the CREATE TABLE text; :func:`read_replay` runs the table into JSON files
and reads them back with pyarrow (``collect()`` is far too slow for bulk). docs/backfill.md has
the design and every option. PyFlink is imported inside the functions, never at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from featurestore.errors import TerminalError, ValidationError
from ingestion.runner import table_environment
from registry import flink_sql, rules
from registry.flink_sql import SourceDeclaration, q
from registry.models import Source

CONNECTOR = "hdfs-replay"
PARTITION_COLUMN = "__partition"
POSITION_COLUMN = "__position"
WATERMARK_COLUMN = "__wm_ms"
ROW_BITS = 32
DEFAULT_MAX_LATENESS_MS = 3_600_000

_ARROW_TYPES = {
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}


@dataclass(frozen=True)
class ReplaySpec:
    """How to replay a source.

    ``key_fields``: the entity key columns that partition the replay (their order is the key's).
    ``partitions``: default the source's Kafka partitions (so an entity lands in the same
    partition number live and in replay), else 1. ``start_ms``/``end_ms``: the event-time range,
    start inclusive, end exclusive. ``max_lateness_ms``: the longest time between an event and the
    start of the landing hour of the file that holds it; it bounds the buffer (see
    docs/backfill.md). ``on_late``: a row beyond that bound fails the job, or is dropped and
    counted. ``events_per_second``: a limit on the whole source. ``watermark_delay_ms``: how far
    each partition's watermark trails its newest event (>= 1 keeps equal times from being late).
    """

    key_fields: tuple[str, ...]
    partitions: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    max_lateness_ms: int = DEFAULT_MAX_LATENESS_MS
    on_late: Literal["fail", "drop"] = "fail"
    events_per_second: float | None = None
    watermark_delay_ms: int = 1

    def partitions_for(self, source: Source) -> int:
        if self.partitions is not None:
            return self.partitions
        return source.stream.partitions if source.stream is not None else 1


def _check(source: Source, spec: ReplaySpec) -> None:
    if source.batch is None:
        raise ValidationError(f"source {source.name!r} has no batch binding to replay")
    if source.batch.format != "avro":
        raise ValidationError(
            f"source {source.name!r}: the replay reads Avro history, not {source.batch.format}",
            hint="land the history as Avro (parquet replay is not implemented yet)",
        )
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


def replay_ddl(
    source: Source, *, table: str, history_root: str, spec: ReplaySpec, marker_windows: Mapping[int, str] | None = None
) -> list[str]:
    """CREATE TEMPORARY TABLE statements: the replay as ``table`` (and one per expiry-marker window)."""
    declaration = replay_declaration(source, history_root=history_root, spec=spec)
    return flink_sql.source_tables(source, declaration, events_table=table, marker_tables=dict(marker_windows or {}))


def _arrow_schema(source: Source) -> pa.Schema:
    fields = []
    for column in source.columns.values():
        avro: Any = column.avro
        if isinstance(avro, list):
            avro = next(t for t in avro if t != "null")
        if isinstance(avro, dict):
            avro = avro.get("type")
        if avro not in _ARROW_TYPES:
            raise ValidationError(f"column {column.name!r}: Avro type {avro!r} cannot be read back from the replay")
        fields.append(pa.field(column.name, _ARROW_TYPES[avro]))
    return pa.schema(fields)


def sink_ddl(source: Source, *, table: str, path: str, options: Mapping[str, str] | None = None) -> str:
    """A JSON filesystem sink for the replay's rows: the source columns, partition, position and
    the watermark (epoch ms, -1 before the first) each row saw. ``options``: more sink options
    (e.g. ``sink.rolling-policy.rollover-interval``)."""
    columns = [
        *flink_sql.source_columns(source),
        f"{q(PARTITION_COLUMN)} INT",
        f"{q(POSITION_COLUMN)} BIGINT",
        f"{q(WATERMARK_COLUMN)} BIGINT",
    ]
    body = ",\n  ".join(columns)
    path = flink_sql.check_config_path(path, "replay output path")
    settings = {"connector": "filesystem", "path": path, "format": "json", **(options or {})}
    for key, value in settings.items():
        if "'" in key or "'" in value:
            raise ValidationError(f"sink option {key!r} = {value!r} contains a quote")
    listed = ",\n  ".join(f"'{k}' = '{v}'" for k, v in settings.items())
    return f"CREATE TEMPORARY TABLE {q(table)} (\n  {body}\n) WITH (\n  {listed}\n)"


def insert_sql(source: Source, *, replay_table: str, sink_table: str) -> str:
    """INSERT the replay into the sink, with the watermark each row saw (``CURRENT_WATERMARK``)."""
    names = ", ".join(q(c) for c in source.columns)
    rt = q(flink_sql.ROWTIME)
    # epoch ms of a TIMESTAMP_LTZ(3): whole seconds (as BIGINT: ms overflow INT) plus the millisecond part
    wm = f"CAST(CURRENT_WATERMARK({rt}) AS TIMESTAMP(3))"
    seconds = f"CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', {wm}) AS BIGINT)"
    watermark = f"COALESCE({seconds} * 1000 + MOD(EXTRACT(MILLISECOND FROM {wm}), 1000), -1)"
    return (
        f"INSERT INTO {q(sink_table)} SELECT {names}, {q(PARTITION_COLUMN)}, {q(POSITION_COLUMN)}, "
        f"{watermark} FROM {q(replay_table)}"
    )


def read_output(source: Source, directory: str | os.PathLike[str]) -> pa.Table:
    """The rows a replay wrote under ``directory``, in the order each sink subtask wrote them
    (files sorted by subtask then part counter), with ``__file`` and ``__row`` split from ``__position``."""
    schema = pa.schema(
        [
            *_arrow_schema(source),
            pa.field(PARTITION_COLUMN, pa.int32()),
            pa.field(POSITION_COLUMN, pa.int64()),
            pa.field(WATERMARK_COLUMN, pa.int64()),
        ]
    )

    def order(path: Path) -> tuple[int, int, str]:
        parts = path.name.rsplit("-", 2)  # part-<uuid>-<subtask>-<counter>[.ext]
        try:
            return int(parts[-2]), int(parts[-1].split(".")[0]), path.name
        except (IndexError, ValueError):
            return 0, 0, path.name

    root = Path(os.fspath(directory).removeprefix("file://"))
    files = sorted((p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))), key=order)
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    tables = [pajson.read_json(p, parse_options=options) for p in files if p.stat().st_size > 0]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    position = table[POSITION_COLUMN]
    table = table.append_column("__file", pc.shift_right(position, ROW_BITS))
    return table.append_column("__row", pc.bit_wise_and(position, (1 << ROW_BITS) - 1))


def read_replay(
    source: Source,
    *,
    history_root: str,
    spec: ReplaySpec,
    work_dir: str | os.PathLike[str] | None = None,
    jars: Sequence[str] | None = None,
    parallelism: int = 1,
    options: Mapping[str, str] | None = None,
) -> pa.Table:
    """Replay ``source``'s history with Flink into JSON files under ``work_dir`` and read them back.

    ``jars`` default to the replay connector (built if needed). ``options``: more Flink
    configuration (checkpointing, restore path, ...).
    """
    from backfill.jar import replay_jar_url

    out = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="featurestore-replay-"))
    env = table_environment(list(jars) if jars is not None else [replay_jar_url()], parallelism, options or {})
    for ddl in replay_ddl(source, table="replay_events", history_root=history_root, spec=spec):
        env.execute_sql(ddl)
    sink_dir = (out / "rows").resolve()
    env.execute_sql(sink_ddl(source, table="replay_rows", path=str(sink_dir)))
    try:
        env.execute_sql(insert_sql(source, replay_table="replay_events", sink_table="replay_rows")).wait()
    except Exception as exc:  # Py4JJavaError: keep the connector's own sentence, drop the Java trace
        raise replay_failure(exc) from exc
    return read_output(source, sink_dir)


def replay_failure(exc: BaseException) -> TerminalError:
    """A failed replay job as a TerminalError carrying the connector's message (``hdfs-replay: ...``)."""
    text = str(exc)
    reasons = [line.split("hdfs-replay:", 1)[1].strip() for line in text.splitlines() if "hdfs-replay:" in line]
    reason = reasons[0] if reasons else (text.splitlines() or ["unknown error"])[0]
    return TerminalError(f"the replay job failed: {reason}", hint="the Flink log (pyflink/log/) has the full trace")
