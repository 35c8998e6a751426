"""Dead letters: the records of a stream source that the job cannot use, kept with why and as they came.

Three kinds of record become dead letters instead of failing the job or vanishing:

* **malformed** bytes (truncated, garbage, invalid UTF-8, bad JSON) and
* **schema violations** (bytes left after the last field, a union branch or enum index the
  schema lacks, a missing or null non-null JSON field, a JSON value of the wrong type), both found
  by the ``featurestore-checked`` Flink format (Java, ``backfill/java/.../featurestore/flink/checked``,
  in the project's jar), which decodes each Kafka value against the source's Avro schema once and,
  instead of throwing, emits the row with metadata ``reason`` (a code, NULL for a good record),
  ``detail`` and ``bytes`` (the value as it came);
* **late** events: those the compiled plan drops as later than the source's allowed lateness,
  i.e. the rows failing the compiler's on-time filter (:data:`ON_TIME`), on the same source scan.

Each dead letter (source, feature table, topic, partition, offset, Kafka timestamp, reason, detail,
event time and watermark for late ones, the original key and value bytes) goes to the Kafka topic
``<topic>.dead-letters`` (JSON, bytes in base64, keyed by the original key) and to the Iceberg
table ``_dead_letters`` of the offline log's catalog (a pandas Python UDF appending into a
blackhole, as :mod:`ingestion.store_sink` does for versions). Counts: the Flink metrics
``featurestore.records`` / ``featurestore.deadLetters`` / ``featurestore.reason.<r>.deadLetters`` of
each source operator, ``featurestore.deadLettersWritten`` of the writer, and :func:`counts`.

Everything here that builds SQL is text (no PyFlink import at module import). The source
declaration is the compiler's (``registry.flink_sql.checked_stream_tables``); the dead-letter
statements (:func:`dead_letter_plan`) are added by the job (``ingestion.job.submit``). The SQL
assumes the session time zone is UTC, as :func:`ingestion.runner.table_environment` sets it (epoch
milliseconds of a TIMESTAMP_LTZ are taken with ``EXTRACT``, which reads the session zone). See
docs/dead-letters.md.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from featurestore.errors import StoreError, TransientError, ValidationError
from featurestore.kafka_topics import create_topic
from featurestore.schema import check_name
from registry import rules
from registry.flink_sql import (
    CHECKED_FORMAT,
    DETAIL,
    KAFKA_TIME,
    KEY,
    OFFSET,
    ON_TIME,
    PARTITION,
    REASON,
    ROWTIME,
    VALUE,
    q,
    raw_table,
)
from registry.models import Source

if TYPE_CHECKING:
    from featurestore.config import OfflineLogConfig
    from pyiceberg.table import Table

FORMAT = CHECKED_FORMAT
TOPIC_SUFFIX = ".dead-letters"
ICEBERG_TABLE = "_dead_letters"  # a leading underscore: no feature table can have this name
LATE = "late"

#: A dead letter, in the Kafka topic (JSON) and the Iceberg table (plus ``written_at``).
COLUMNS: tuple[tuple[str, str, pa.DataType, bool], ...] = (
    # name, Flink SQL type, Arrow type, nullable
    ("source", "STRING", pa.string(), False),
    ("feature_table", "STRING", pa.string(), False),
    ("topic", "STRING", pa.string(), False),
    ("partition", "INT", pa.int32(), True),  # null only for a replayed history row (a hand-over)
    ("offset", "BIGINT", pa.int64(), True),
    ("kafka_timestamp_ms", "BIGINT", pa.int64(), True),
    ("reason", "STRING", pa.string(), False),
    ("detail", "STRING", pa.string(), True),
    ("event_time_ms", "BIGINT", pa.int64(), True),
    ("watermark_ms", "BIGINT", pa.int64(), True),
    ("key", "BYTES", pa.binary(), True),
    ("value", "BYTES", pa.binary(), True),
)
WRITTEN_AT = "written_at"
_WRITTEN_DAY = "written_day"
#: One dead letter per record and feature table: what a re-delivered batch repeats.
RECORD_KEY = ("feature_table", "topic", "partition", "offset", "reason")
_COMMIT_DEADLINE_S = 120.0
_LIST = ",\n  "
_BOOTSTRAP = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}(,[A-Za-z0-9_.-]+:\d{1,5})*$")  # as registry.flink_sql


# ---------------------------------------------------------------------------------------------- names


def topic_for(source: Source) -> str:
    """The dead-letter topic of ``source``: ``<topic>.dead-letters``."""
    if source.stream is None:
        raise ValidationError(f"source {source.name!r} has no stream binding, so no dead letters")
    topic = source.stream.topic + TOPIC_SUFFIX
    try:
        return rules.topic_name(topic)
    except ValueError:
        raise ValidationError(
            f"the dead-letter topic of source {source.name!r} would be {len(topic)} characters long",
            hint=f"Kafka allows 249; shorten the topic {source.stream.topic!r}",
        ) from None


def _literal(name: str) -> str:
    """A checked name or topic as a plain SQL literal (neither can contain a quote)."""
    return f"'{name}'"


def _with(options: Mapping[str, str]) -> str:
    for key, value in options.items():
        if "'" in key or "'" in value:
            raise ValidationError(f"Flink table option {key!r} has a quote in its key or value")
    return ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items())


# ---------------------------------------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class DeadLetterPlan:
    """The dead letters of one feature table's plan: CREATE statements, then INSERTs for the job's
    statement set. ``function``: the name to register :func:`write_udf` under before the INSERTs
    run (None: no Iceberg table)."""

    topic: str
    view: str
    statements: tuple[str, ...]
    inserts: tuple[str, ...]
    function: str | None


def _epoch_ms(expr: str) -> str:
    """Epoch milliseconds of a TIMESTAMP_LTZ(3) expression (session time zone UTC)."""
    return f"(EXTRACT(EPOCH FROM {expr}) * 1000 + EXTRACT(MILLISECOND FROM {expr}))"


def dead_letter_plan(
    source: Source,
    *,
    feature_table: str,
    events_table: str,
    kafka_bootstrap: str,
    raw: str | None = None,
    decode_errors: bool = True,
    iceberg: bool = True,
) -> DeadLetterPlan:
    """The dead letters of the plan of ``feature_table``: the records of ``raw`` (default
    ``raw_table(events_table)``) that do not decode, unless ``decode_errors`` is False (another plan
    on the same source reports them), UNION ALL the rows of ``events_table`` failing the on-time
    filter (``NOT`` :data:`ON_TIME`: judged on the very relation the plan's queries filter, so on
    the same watermark), to the topic ``<topic>.dead-letters`` and, with ``iceberg``, through the
    function ``__write_dead_letters_<table>`` (:func:`write_udf`) to the Iceberg table."""
    check_name(feature_table, what="feature table")
    if not _BOOTSTRAP.match(kafka_bootstrap):
        raise ValidationError(f"Kafka bootstrap servers {kafka_bootstrap!r} are not a host:port list")
    topic = topic_for(source)
    assert source.stream is not None  # topic_for checked
    view = f"__dead_letters_{feature_table}"
    kafka_sink = f"__dead_letters_kafka_{feature_table}"
    watermark = f"CURRENT_WATERMARK({q(ROWTIME)})"
    event_time = f"CAST({q(source.event_time)} AS BIGINT)"
    common = [
        f"{_literal(check_name(source.name, what='source'))} AS {q('source')}",
        f"{_literal(feature_table)} AS {q('feature_table')}",
        f"{_literal(rules.topic_name(source.stream.topic))} AS {q('topic')}",
        f"{q(PARTITION)} AS {q('partition')}",
        f"{q(OFFSET)} AS {q('offset')}",
        f"{_epoch_ms(q(KAFKA_TIME))} AS {q('kafka_timestamp_ms')}",
    ]
    payload = [f"{q(KEY)} AS {q('key')}", f"{q(VALUE)} AS {q('value')}"]
    decode = [
        *common,
        f"{q(REASON)} AS {q('reason')}",
        f"{q(DETAIL)} AS {q('detail')}",
        f"CAST(NULL AS BIGINT) AS {q('event_time_ms')}",
        f"CAST(NULL AS BIGINT) AS {q('watermark_ms')}",
        *payload,
    ]
    late_detail = (
        f"'event time ' || CAST({event_time} AS STRING) || ' is not after the watermark ' || "
        f"CAST({_epoch_ms(watermark)} AS STRING) || ' (allowed lateness {source.allowed_lateness_ms} ms)'"
    )
    late = [
        *common,
        f"'{LATE}' AS {q('reason')}",
        f"{late_detail} AS {q('detail')}",
        f"{event_time} AS {q('event_time_ms')}",
        f"{_epoch_ms(watermark)} AS {q('watermark_ms')}",
        *payload,
    ]
    parts = []
    if decode_errors:
        parts.append(
            f"SELECT\n  {_LIST.join(decode)}\n"
            f"FROM {q(raw or raw_table(events_table))}\nWHERE {q(REASON)} IS NOT NULL"
        )
    parts.append(f"SELECT\n  {_LIST.join(late)}\nFROM {q(events_table)}\nWHERE NOT {ON_TIME}")
    names = ", ".join(q(name) for name, *_ in COLUMNS)
    typed = ",\n  ".join(f"{q(name)} {sql}" for name, sql, *_ in COLUMNS)
    sink_options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": kafka_bootstrap,
        "key.format": "raw",
        "key.fields": "key",
        "value.format": "json",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": "at-least-once",
    }
    statements = [
        f"CREATE TEMPORARY VIEW {q(view)} AS\n" + "\nUNION ALL\n".join(parts),
        f"CREATE TEMPORARY TABLE {q(kafka_sink)} (\n  {typed}\n) WITH (\n  {_with(sink_options)}\n)",
    ]
    inserts = [f"INSERT INTO {q(kafka_sink)} ({names})\nSELECT {names} FROM {q(view)}"]
    function = None
    if iceberg:
        function = f"__write_dead_letters_{feature_table}"
        done = f"__dead_letters_done_{feature_table}"
        statements.append(f"CREATE TEMPORARY TABLE {q(done)} (n BIGINT) WITH ('connector' = 'blackhole')")
        inserts.append(f"INSERT INTO {q(done)}\nSELECT {q(function)}({names}) FROM {q(view)}")
    return DeadLetterPlan(topic, view, tuple(statements), tuple(inserts), function)


# ---------------------------------------------------------------------------------------------- Kafka


def ensure_topic(bootstrap: str, topic: str, *, partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Create ``topic`` unless it exists (run in the driver before the job starts)."""
    try:
        create_topic(bootstrap, topic, partitions=partitions, exist_ok=True, timeout_s=timeout_s)
    except TransientError as exc:
        raise TransientError(f"could not create the dead-letter topic: {exc}") from None


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> pa.Table:
    """Every dead letter in ``topic`` now, as a table of :data:`COLUMNS` (key and value decoded from
    base64), in (partition, offset) order of the dead-letter topic."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"featurestore.read.{random.getrandbits(64):x}",
                         "enable.auto.commit": False})
    rows: list[dict[str, Any]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return empty_table(with_written_at=False)
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        done: set[int] = set()
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TransientError(f"timed out reading {topic!r}")
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            value, partition, offset = message.value(), message.partition(), message.offset()
            if value is not None:
                rows.append(json.loads(value))
            if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                done.add(partition)
    finally:
        consumer.close()
    for row in rows:
        for column in ("key", "value"):
            if row.get(column) is not None:
                row[column] = base64.b64decode(row[column])
    return pa.Table.from_pylist(rows, schema=_arrow_schema(with_written_at=False))


# ---------------------------------------------------------------------------------------------- Iceberg


def _arrow_schema(*, with_written_at: bool = True) -> pa.Schema:
    fields = [pa.field(name, arrow, nullable=nullable) for name, _, arrow, nullable in COLUMNS]
    if with_written_at:
        fields.append(pa.field(WRITTEN_AT, pa.timestamp("us", tz="UTC"), nullable=False))
    return pa.schema(fields)


def empty_table(*, with_written_at: bool = True) -> pa.Table:
    return _arrow_schema(with_written_at=with_written_at).empty_table()


def _catalog(config: OfflineLogConfig) -> Any:
    from featurestore.offline.log import OfflineLog

    return OfflineLog(config).catalog


def _identifier(config: OfflineLogConfig) -> str:
    return f"{config.namespace}.{ICEBERG_TABLE}"


def ensure_table(config: OfflineLogConfig) -> None:
    """Create the dead-letter table of the offline log's catalog unless it exists (run once, in
    the driver: many workers creating one table at once race in the catalog). Partitioned by the
    day it was written (``written_day``), so old dead letters go by whole partitions."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.transforms import DayTransform

    catalog = _catalog(config)
    try:
        catalog.load_table(_identifier(config))
    except NoSuchTableError:
        try:
            with catalog.create_table_transaction(_identifier(config), schema=_arrow_schema()) as tx, \
                    tx.update_spec() as spec:
                spec.add_field(WRITTEN_AT, DayTransform(), _WRITTEN_DAY)
        except TableAlreadyExistsError:
            pass


def _load(config: OfflineLogConfig) -> Table:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table: Table = _catalog(config).load_table(_identifier(config))
    except NoSuchTableError:
        raise StoreError(
            f"the offline log has no dead-letter table {_identifier(config)!r}",
            hint="ingestion.dead_letters.ensure_table creates it (the ingestion job does, before it starts)",
        ) from None
    return table


def conform(batch: pa.Table, *, written_at_us: int | None = None) -> pa.Table:
    """``batch`` (the columns of :data:`COLUMNS`, any compatible types) in the table's layout, with
    ``written_at`` now (or ``written_at_us``)."""
    schema = _arrow_schema()
    now = written_at_us if written_at_us is not None else time.time_ns() // 1000
    arrays = [batch.column(f.name).cast(f.type) for f in schema if f.name != WRITTEN_AT]
    arrays.append(pa.array([now] * batch.num_rows, pa.int64()).cast(schema.field(WRITTEN_AT).type))
    for field, array in zip(schema, arrays, strict=True):
        if not field.nullable and array.null_count:
            raise ValidationError(f"dead letters: column {field.name!r} has {array.null_count} nulls")
    return pa.Table.from_arrays(arrays, schema=schema)


def append(config: OfflineLogConfig, batch: pa.Table) -> int:
    """Append dead letters (already :func:`conform`-ed or not); retries commits lost to concurrent
    writers (each Python worker of each plan appends) until a deadline."""
    from featurestore.offline.log import append_retrying

    if batch.num_rows == 0:
        return 0
    data = batch if WRITTEN_AT in batch.column_names else conform(batch)
    append_retrying(lambda: _load(config), data, what=f"dead letters to {_identifier(config)}",
                    deadline_s=_COMMIT_DEADLINE_S)
    return int(data.num_rows)


def read(
    config: OfflineLogConfig,
    *,
    source: str | None = None,
    feature_table: str | None = None,
    reason: str | None = None,
    dedupe: bool = True,
) -> pa.Table:
    """The dead letters in the Iceberg table, optionally of one source / feature table / reason,
    sorted by (source, feature table, topic, partition, offset). ``dedupe`` keeps one row per
    record, feature table and reason (delivery is at-least-once: a restarted job may write a
    batch twice)."""
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo

    try:
        table = _catalog(config).load_table(_identifier(config))
    except NoSuchTableError:
        return empty_table()
    expr: BooleanExpression = AlwaysTrue()  # type: ignore[no-untyped-call]
    for column, value in (("source", source), ("feature_table", feature_table), ("reason", reason)):
        if value is not None:
            expr = And(expr, EqualTo(column, value))
    data: pa.Table = table.scan(row_filter=expr).to_arrow().cast(_arrow_schema())
    order = [("source", "ascending"), ("feature_table", "ascending"), ("topic", "ascending"),
             ("partition", "ascending"), ("offset", "ascending"), (WRITTEN_AT, "ascending")]
    data = data.sort_by(order)
    if dedupe and data.num_rows:
        data = _first_per(data, RECORD_KEY)
    return data


def _first_per(data: pa.Table, key: Sequence[str]) -> pa.Table:
    """The first row of each distinct ``key`` (``data`` is sorted)."""
    indexed = data.select(list(key)).append_column("__i", pa.array(range(data.num_rows), pa.int64()))
    first = indexed.group_by(list(key), use_threads=False).aggregate([("__i", "min")])
    keep = pc.sort_indices(first.column("__i_min"))
    return data.take(pc.take(first.column("__i_min"), keep))


def counts(
    config: OfflineLogConfig, *, by: Sequence[str] = ("source", "reason"), source: str | None = None
) -> dict[tuple[Any, ...], int]:
    """How many records became dead letters, per ``by`` (columns of :data:`COLUMNS`): each
    (topic, partition, offset, reason) counted once, however many feature tables reported it."""
    data = read(config, source=source)
    if not data.num_rows:
        return {}
    distinct = _first_per(data, ("topic", "partition", "offset", "reason"))
    grouped = distinct.group_by(list(by)).aggregate([("offset", "count")]).to_pylist()
    return {tuple(row[c] for c in by): int(row["offset_count"]) for row in grouped}


def to_arrow(columns: Sequence[Any]) -> pa.Table:
    """The pandas Series PyFlink hands the writer (in :data:`COLUMNS` order) as an Arrow table.
    Integer columns with nulls arrive as floats with NaN (``from_pandas`` makes NaN null); the
    planner folds constant columns (source, feature table, topic) into the call, and PyFlink
    passes those as Python scalars, not Series."""
    import pandas as pd

    rows = next((len(c) for c in columns if isinstance(c, pd.Series)), 1)
    arrays = [
        pa.Array.from_pandas(column).cast(arrow)
        if isinstance(column, pd.Series)
        else pa.repeat(pa.scalar(column, arrow), rows)
        for column, (_, _, arrow, _) in zip(columns, COLUMNS, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=[name for name, *_ in COLUMNS])


def write_udf(config: OfflineLogConfig) -> Any:
    """The vectorized (pandas) UDF appending dead letters to the Iceberg table; returns 1 per row
    into a blackhole. Register it under ``DeadLetterPlan.function``. Imports PyFlink."""
    import pandas as pd
    from pyflink.table import DataTypes
    from pyflink.table.udf import FunctionContext, ScalarFunction, udf

    class WriteDeadLetters(ScalarFunction):  # type: ignore[misc]
        def __init__(self, offline_log: OfflineLogConfig) -> None:
            self.offline_log = offline_log
            self._group: Any = None
            self._counters: dict[str, Any] = {}

        def open(self, function_context: FunctionContext) -> None:
            self._group = function_context.get_metric_group().add_group("featurestore")
            self._counters["*"] = self._group.counter("deadLettersWritten")

        def eval(self, *columns: pd.Series) -> pd.Series:
            batch = to_arrow(columns)
            written = append(self.offline_log, batch)
            if written:
                self._counters["*"].inc(written)
                for reason, n in zip(*pc.value_counts(batch.column("reason")).flatten(), strict=True):
                    name = str(reason.as_py())
                    if name not in self._counters:
                        self._counters[name] = self._group.add_group("reason", name).counter("deadLettersWritten")
                    self._counters[name].inc(int(n.as_py()))
            return pd.Series([1] * batch.num_rows, dtype="int64")

    return udf(WriteDeadLetters(config), result_type=DataTypes.BIGINT(), func_type="pandas")
