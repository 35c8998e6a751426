"""Flink SQL text for the compiler: quoting, literals, column types and the source tables.

Everything here is text; nothing imports PyFlink. The only strings that reach SQL verbatim are
names checked by :func:`featurestore.schema.check_name` (quoted with backticks anyway), Kafka
topics checked by :func:`registry.rules.topic_name`, batch layouts checked by
:func:`registry.rules.batch_layout` and numbers. Filter values, which are user text, are written
as Unicode-escaped literals (``U&'\\0061'``) so no character of them is SQL syntax; paths and
bootstrap addresses from the configuration are checked against a strict pattern first.

The source of a plan is declared once for events and once per window size for expiry markers.
Every declaration has the same columns: the source's Avro fields, then

* ``__seq``: the position in source order (see :func:`stream_source` and
  :mod:`registry.replay_binding`),
* ``__rt``: the row time with a watermark ``allowed_lateness`` behind it; for events
  ``TO_TIMESTAMP_LTZ(event_time, 3)``, for the markers of window ``W``
  ``TO_TIMESTAMP_LTZ(event_time + W, 3)`` (the time the event leaves the window).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from featurestore.errors import ValidationError
from featurestore.schema import RESERVED_COLUMNS, check_name

from registry import rules
from registry.models import Condition, Source

ROWTIME = "__rt"
SEQ_COLUMN = "__seq"
#: Kafka seq = offset * SEQ_PARTITIONS + partition: increasing with the offset inside a partition.
SEQ_PARTITIONS = 10_000
_PRIMITIVES = {
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "STRING",
    "boolean": "BOOLEAN",
    "bytes": "BYTES",
}
_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# Configuration strings that end up inside quotes: paths and host:port lists, nothing else.
_SAFE_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9_./:=@+-]*$|^/[A-Za-z0-9_./=@+-]*$")
_SAFE_BOOTSTRAP = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}(,[A-Za-z0-9_.-]+:\d{1,5})*$")


def q(name: str) -> str:
    """A checked name as a backtick-quoted identifier (internal names start with ``__``; the
    reserved ``version_ms`` and ``seq`` are the storage layout's own)."""
    if not name.startswith("__") and name not in RESERVED_COLUMNS:
        check_name(name, what="identifier")
    return f"`{name}`"


def string_literal(text: str) -> str:
    """``text`` as a Flink SQL string literal in which every character is a Unicode escape."""
    escaped = "".join(f"\\{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\+{ord(c):06x}" for c in text)
    return f"U&'{escaped}'"


def literal(value: Any) -> str:
    """A filter value as a SQL literal: booleans, integers, finite floats, strings."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return f"CAST({int(value)} AS BIGINT)"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"filter value {value!r} is not a finite number")
        return f"CAST({float(value)!r} AS DOUBLE)"
    if isinstance(value, str):
        return string_literal(value)
    raise ValidationError(f"filter value {value!r} of type {type(value).__name__} cannot be compiled")


def condition_sql(cond: Condition) -> str:
    """One filter condition (the registry's semantics, as in :mod:`registry.reference`)."""
    col = q(cond.column)
    if cond.op == "is_null":
        return f"{col} IS NULL"
    if cond.op == "not_null":
        return f"{col} IS NOT NULL"
    if cond.op in ("in", "not_in"):
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        items = ", ".join(literal(v) for v in values)
        return f"{col} {'IN' if cond.op == 'in' else 'NOT IN'} ({items})"
    return f"{col} {_OPS[cond.op]} {literal(cond.value)}"


def interval(ms: int) -> str:
    """A day-time interval literal of ``ms`` milliseconds: ``INTERVAL 'D HH:MM:SS.fff' DAY TO SECOND(3)``."""
    if ms < 0:
        raise ValidationError(f"an interval cannot be negative ({ms} ms)")
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    precision = max(2, len(str(days)))
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY({precision}) TO SECOND(3)"


def _flink_type(avro: Any, column: str) -> str:
    """The Flink SQL type of an Avro field type, nullability included; the Avro binary encoding
    of the result equals the field's, so the Kafka ``avro`` format decodes the producer's bytes."""
    if isinstance(avro, list):
        non_null = [t for t in avro if t != "null"]
        if len(avro) == 2 and avro[0] == "null" and len(non_null) == 1:
            return _flink_type(non_null[0], column).removesuffix(" NOT NULL")
        raise ValidationError(
            f"column {column!r}: Avro union {avro!r} is not supported",
            hint='use ["null", T] (null first) for an optional field',
        )
    if isinstance(avro, dict):
        kind = avro.get("type")
        if kind == "array":
            return f"ARRAY<{_flink_type(avro.get('items'), column)}> NOT NULL"
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _flink_type(kind, column)
        raise ValidationError(f"column {column!r}: Avro type {kind!r} is not supported by the Flink compiler")
    if isinstance(avro, str) and avro in _PRIMITIVES:
        return f"{_PRIMITIVES[avro]} NOT NULL"
    raise ValidationError(f"column {column!r}: Avro type {avro!r} is not supported by the Flink compiler")


def source_columns(source: Source) -> list[str]:
    """The physical columns of the source's Avro record, in schema order, as DDL lines."""
    return [f"{q(c.name)} {_flink_type(c.avro, c.name)}" for c in source.columns.values()]


def _options(options: dict[str, str]) -> str:
    return ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items())


def _table(name: str, columns: list[str], event_time_expr: str, lateness_ms: int, options: dict[str, str]) -> str:
    delay = interval(lateness_ms)
    body = ",\n  ".join(
        [
            *columns,
            f"{q(ROWTIME)} AS TO_TIMESTAMP_LTZ({event_time_expr}, 3)",
            f"WATERMARK FOR {q(ROWTIME)} AS {q(ROWTIME)} - {delay}",
        ]
    )
    return f"CREATE TEMPORARY TABLE {q(name)} (\n  {body}\n) WITH (\n  {_options(options)}\n)"


def check_config_path(path: str, what: str) -> str:
    if not _SAFE_PATH.match(path) or ".." in path.split("/"):
        raise ValidationError(
            f"{what} {path!r} cannot be used in a Flink table",
            hint="use an absolute path or a URI of letters, digits and _ . / : = @ + -",
        )
    return path


@dataclass(frozen=True)
class SourceDeclaration:
    """How one binding reads a source: the table options and the position columns (for ``__seq``)."""

    options: dict[str, str]
    position_columns: tuple[str, ...]
    seq_expr: str
    watermark_delay_ms: int | None = None  # None: the source's allowed lateness


def consumer_group(table: str) -> str:
    """The Kafka consumer group a plan named ``table`` reads with (Flink commits its offsets there
    on each checkpoint, which is what consumer lag is measured against)."""
    return f"featurestore.{check_name(table, what='feature table')}"


def stream_source(
    source: Source,
    *,
    table: str,
    kafka_bootstrap: str,
    bounded: bool,
    on_event: bool,
    start_at_ms: int | None = None,
) -> SourceDeclaration:
    """The Kafka binding: the topic from the earliest offset, in the binding's format.

    ``__seq`` = ``offset * 10000 + partition`` (at most 10,000 partitions): it grows with the offset
    inside a partition, which is Kafka's only order. ``bounded`` stops at the offsets that are
    latest when the job starts (tests, one-off runs); ``on_event`` emits a watermark after every
    record instead of periodically (deterministic lateness in tests); ``start_at_ms`` starts at
    the first record whose Kafka timestamp is at or after it instead of the earliest offset.
    """
    if source.stream is None:
        raise ValidationError(f"source {source.name!r} has no stream binding")
    if not _SAFE_BOOTSTRAP.match(kafka_bootstrap):
        raise ValidationError(f"Kafka bootstrap servers {kafka_bootstrap!r} are not a host:port list")
    topic = rules.topic_name(source.stream.topic)
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": kafka_bootstrap,
        "properties.group.id": consumer_group(table),
        "scan.startup.mode": "earliest-offset",
        "format": source.stream.format,
    }
    if start_at_ms is not None:
        options["scan.startup.mode"] = "timestamp"
        options["scan.startup.timestamp-millis"] = str(int(start_at_ms))
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    if on_event:
        options["scan.watermark.emit.strategy"] = "on-event"
    return SourceDeclaration(
        options,
        (
            f"{q('__partition')} INT METADATA FROM 'partition' VIRTUAL",
            f"{q('__offset')} BIGINT METADATA FROM 'offset' VIRTUAL",
        ),
        f"{q('__offset')} * {SEQ_PARTITIONS} + {q('__partition')}",
    )


def source_tables(
    source: Source, declaration: SourceDeclaration, *, events_table: str, marker_tables: dict[int, str]
) -> list[str]:
    """CREATE statements: the events table and one expiry-marker table per window size."""
    columns = [
        *source_columns(source),
        *declaration.position_columns,
        f"{q(SEQ_COLUMN)} AS {declaration.seq_expr}",
    ]
    event_time = q(source.event_time)
    lateness = source.allowed_lateness_ms if declaration.watermark_delay_ms is None else declaration.watermark_delay_ms
    statements = [_table(events_table, columns, event_time, lateness, declaration.options)]
    for window_ms, name in sorted(marker_tables.items()):
        statements.append(_table(name, columns, f"{event_time} + {int(window_ms)}", lateness, declaration.options))
    return statements


# ---------------------------------------------------------------------------------------------- dead letters
# The Kafka binding reads through the `featurestore-checked` format (backfill/java/.../flink/checked):
# a record that does not decode against the source's schema is a row with metadata `reason` set, so
# the events are a view of the rows without one and the dead letters (ingestion/dead_letters.py)
# the rows with one, plus the rows failing ON_TIME. See docs/dead-letters.md.

CHECKED_FORMAT = "featurestore-checked"
KEY = "__key"
REASON = "__reason"
DETAIL = "__detail"
VALUE = "__value"
KAFKA_TIME = "__kafka_ts"
PARTITION = "__partition"
OFFSET = "__offset"
#: The columns the events view carries beyond the source's, ``__seq`` and ``__rt``, for the late
#: dead letters (a hand-over's union view gives them as NULLs of these types on the history side).
EVENT_EXTRAS = (
    (PARTITION, "INT"), (OFFSET, "BIGINT"), (KAFKA_TIME, "TIMESTAMP_LTZ(3)"), (KEY, "BYTES"), (VALUE, "BYTES")
)
#: Each branch of a compiled group keeps the rows this is true of; the dead letters take NOT of it.
ON_TIME = f"(CURRENT_WATERMARK({q(ROWTIME)}) IS NULL OR {q(ROWTIME)} > CURRENT_WATERMARK({q(ROWTIME)}))"


def raw_table(events_table: str) -> str:
    """The Kafka table behind the events view of a plan (every record, bad ones included)."""
    return f"{events_table}_raw"


def schema_option(source: Source) -> str:
    """The source's Avro schema as the format's ``schema`` option: compact JSON without docs, with
    every non-ASCII character and every single quote as a JSON ``\\u`` escape, so the text can sit
    between single quotes in a WITH clause as it is."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    text = json.dumps(strip(source.avro_schema), ensure_ascii=True, separators=(",", ":"))
    return text.replace("'", "\\u0027")


def checked_format(source: Source, *, prefix: str = "") -> dict[str, str]:
    """The checked format's options (``prefix`` ``value.`` for a keyed table)."""
    if source.stream is None:
        raise ValidationError(f"source {source.name!r} has no stream binding")
    return {
        f"{prefix}format": CHECKED_FORMAT,
        f"{prefix}{CHECKED_FORMAT}.encoding": source.stream.format,
        f"{prefix}{CHECKED_FORMAT}.schema": schema_option(source),
    }


def checked_stream_tables(
    source: Source, declaration: SourceDeclaration, *, events_table: str, marker_tables: dict[int, str]
) -> list[str]:
    """The Kafka binding's CREATE statements (``source_tables`` for ``stream_source``):
    ``<events_table>_raw``, the topic through the checked format, keyed (the raw key as ``__key``),
    with the reason/detail/bytes metadata and the Kafka timestamp; the view ``<events_table>`` of
    its rows that decode (the row time stays a row time); the expiry-marker tables through the
    checked format without the reason column, which drops bad records."""
    if declaration.options.get("connector") != "kafka":
        raise ValidationError("the checked declaration is for the Kafka binding (stream_source) only")
    options = {k: v for k, v in declaration.options.items() if k != "format"}
    lateness = source.allowed_lateness_ms if declaration.watermark_delay_ms is None else declaration.watermark_delay_ms
    event_time = q(source.event_time)
    data = source_columns(source)
    seq = f"{q(SEQ_COLUMN)} AS {declaration.seq_expr}"
    raw_columns = [
        *data,
        f"{q(KEY)} BYTES",
        *declaration.position_columns,
        f"{q(KAFKA_TIME)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL",
        f"{q(REASON)} STRING METADATA FROM 'value.reason' VIRTUAL",
        f"{q(DETAIL)} STRING METADATA FROM 'value.detail' VIRTUAL",
        f"{q(VALUE)} BYTES METADATA FROM 'value.bytes' VIRTUAL",
        seq,
    ]
    keyed = {
        **options,
        "key.format": "raw",
        "key.fields": KEY,
        "value.fields-include": "EXCEPT_KEY",
        **checked_format(source, prefix="value."),
    }
    raw = raw_table(events_table)
    view_columns = [*(q(c) for c in source.columns), q(SEQ_COLUMN), q(ROWTIME), *(q(c) for c, _ in EVENT_EXTRAS)]
    statements = [
        _table(raw, raw_columns, event_time, lateness, keyed),
        f"CREATE TEMPORARY VIEW {q(events_table)} AS\nSELECT {', '.join(view_columns)}\n"
        f"FROM {q(raw)}\nWHERE {q(REASON)} IS NULL",
    ]
    marker_columns = [*data, *declaration.position_columns, seq]
    marker_options = {**options, **checked_format(source)}
    for window_ms, name in sorted(marker_tables.items()):
        statements.append(_table(name, marker_columns, f"{event_time} + {int(window_ms)}", lateness, marker_options))
    return statements
