"""The compiler from a feature table to Flink SQL: one plan, two bindings.

``compile_table(definitions, "user_click_features", "stream" | "batch", ...)`` returns a
:class:`CompiledPlan`: CREATE statements for the source (Kafka topic or history files), for the
sinks, and one ``INSERT ... SELECT`` per *window group* (the features of the table that share a
window, plus one group for the projections). Only the source statements differ between the
bindings; everything after them is the same text (a unit test compares it).

The semantics are :mod:`registry.reference`'s (README, "Time semantics"): a windowed value at
``T`` covers events in ``(T - W, T]`` and changes only at an event time ``t`` and at ``t + W``.
Each windowed group is one call of the incremental window operator (``fs_sliding_windows``, the
Java process table function ``featurestore.flink.windows.SlidingWindows`` in the job's jar) on
a view of the events partitioned by the entity key: it adds an event at ``t``, retracts it at
``t + W`` and emits a version at each, O(1) state operations per event (docs/compiler.md says
why not Flink's bounded OVER, which is O(n) per event). A group the operator does not compute
(a column of another value type, more than 8 features of one kind) keeps the first form: the
events (``__ev = 1``, values set) UNION ALL an *expiry marker* per event (``__ev`` and values
NULL, row time ``t + W``, read from a second declaration of the same source) in ONE ``OVER
(PARTITION BY key ORDER BY row time RANGE BETWEEN W - 1ms PRECEDING AND CURRENT ROW)``, where
aggregates skip the markers' NULLs (:func:`_aggregate`). Projections are ``LAST_VALUE`` over
``UNBOUNDED PRECEDING``, events only.

Late events: the operator's input and the projections keep only rows after the source's current
watermark (``__rt > CURRENT_WATERMARK(__rt)``), so an event later than the allowed lateness is
dropped at the source, the same way in every group (the dead-letter path takes the complement).
Without this filter Flink's OVER operators apply a late event *late*: a version at its own time,
with the versions already emitted after it left unrevised.

Each output row is a version: the key columns, ``version_ms`` (BIGINT epoch ms: the event time,
or ``t + W`` for a marker), ``seq`` (position in source order, see :mod:`registry.flink_sql`)
and the group's features only: an absent column is a feature this version does not write.
The operator emits one row per key and time; the OVER forms a row per input row, so equal
``(key, version_ms)`` rows can repeat there, with equal values. Nothing here imports PyFlink:
:mod:`ingestion.runner` executes a plan.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
from featurestore.errors import ValidationError
from featurestore.schema import SEQ, VERSION_MS, TableSchema
from featurestore.time_semantics import format_duration
from featurestore.types import ValueType, flink_sql_type

from registry import flink_sql
from registry.flink_sql import ROWTIME, SEQ_COLUMN, q
from registry.models import Definitions, Feature, FeatureTable, Source
from registry.replay_binding import ReplaySpec, replay_declaration

Binding = Literal["stream", "batch"]
EVENT_FLAG = "__ev"
VERSION_TIME = "__vt"
PROJECTIONS = "projections"
#: ``GroupPlan.select_with_watermark``'s extra column: the watermark (TIMESTAMP_LTZ(3), null before
#: the first) at the operator when it emitted the row, so every version at or before it was emitted.
WATERMARK = "__wm"

# The incremental window operator (backfill/java: featurestore.flink.windows.SlidingWindows), a
# process table function in the job's jar. Flink's bounded OVER re-reads every row the key holds
# on each new row time: O(n^2) per key, which a heavy user's 30-day window turns into hours.
SLIDING_WINDOWS = "fs_sliding_windows"
SLIDING_WINDOWS_CLASS = "featurestore.flink.windows.SlidingWindows"
_SLOTS = 8
_KIND = {ValueType.INT64: "l", ValueType.DOUBLE: "d", ValueType.STRING: "s"}
_AGG = {
    "count": "COUNT",
    "sum": "SUM",
    "avg": "AVG",
    "min": "MIN",
    "max": "MAX",
    "last": "LAST",
    "approx_count_distinct": "DISTINCT",
}


@dataclass(frozen=True)
class FileSink:
    """Versions written by Flink as newline-delimited JSON files under ``path/<table>/<group>/``.

    JSON needs no connector jar beyond Flink's own and pyarrow reads it back fast."""

    path: str
    format: Literal["json"] = "json"

    def directory(self, table: str, group: str) -> str:
        return f"{self.path.rstrip('/')}/{table}/{group}"

    def ddl(self, name: str, columns: Sequence[tuple[str, str]], table: str, group: str) -> str:
        path = flink_sql.check_config_path(self.directory(table, group), "sink path")
        body = ",\n  ".join(f"{q(c)} {t}" for c, t in columns)
        return (
            f"CREATE TEMPORARY TABLE {q(name)} (\n  {body}\n) WITH (\n"
            f"  'connector' = 'filesystem',\n  'path' = '{path}',\n  'format' = '{self.format}'\n)"
        )


@dataclass(frozen=True)
class Handover:
    """A live job that continues a backfill which wrote versions up to ``at_ms``.

    Its source is the replay of ``[at_ms - replay_ms, at_ms)`` from ``history_root`` UNION ALL
    the Kafka topic's events at or after ``at_ms``: the history warms the windows, Kafka
    continues them, and no event is in both (see :func:`compile_table`). ``replay_ms`` is the
    longest window of the table by default."""

    history_root: str
    at_ms: int
    replay_ms: int | None = None


@dataclass(frozen=True)
class GroupPlan:
    """The features of one window size (``window_ms`` None: the projections) and their query."""

    name: str
    window_ms: int | None
    features: tuple[str, ...]
    select: str
    sink_table: str | None
    sink_ddl: str | None
    sink_directory: str | None
    arrow_schema: pa.Schema
    select_with_watermark: str = ""  # ``select`` plus :data:`WATERMARK`, the operator's watermark

    @property
    def insert(self) -> str:
        if self.sink_table is None:
            raise ValidationError(f"group {self.name} was compiled without a sink")
        return f"INSERT INTO {q(self.sink_table)}\n{self.select}"


@dataclass(frozen=True)
class CompiledPlan:
    """One feature table compiled for one binding."""

    table: str
    binding: Binding
    source: str
    source_ddl: tuple[str, ...]
    groups: tuple[GroupPlan, ...]
    schema: TableSchema = field(repr=False)
    events_table: str = ""  # the relation the groups' event branches read
    raw_table: str | None = None  # Kafka binding: every record, those that do not decode included
    operator_ddl: tuple[str, ...] = ()  # the incremental window operator and its input view

    def core_sql(self) -> str:
        """Everything after the source declarations: operator, sinks and queries (equal for both bindings)."""
        parts = [*self.operator_ddl, *(g.sink_ddl for g in self.groups if g.sink_ddl is not None)]
        parts += [g.insert if g.sink_table is not None else g.select for g in self.groups]
        return ";\n\n".join(parts)

    def statements(self) -> list[str]:
        """The CREATE statements (sources, operator, sinks) in order; the INSERTs are in ``inserts()``."""
        return [*self.source_ddl, *self.operator_ddl, *(g.sink_ddl for g in self.groups if g.sink_ddl is not None)]

    def inserts(self) -> list[str]:
        return [g.insert for g in self.groups]

    def sql_text(self) -> str:
        return ";\n\n".join([*self.source_ddl, self.core_sql()]) + ";\n"

    def explain(self) -> str:
        lines = [f"feature table {self.table} on source {self.source}, {self.binding} binding"]
        for group in self.groups:
            if group.window_ms is None:
                what = "projections (events only)"
            elif SLIDING_WINDOWS in group.select:
                what = f"window {format_duration(group.window_ms)}: incremental operator (in at t, out at t + window)"
            else:
                what = f"window {format_duration(group.window_ms)}: events + expiry markers at t + window"
            lines.append(f"  group {group.name}: {what}; features {', '.join(group.features)}")
            if group.sink_directory is not None:
                lines.append(f"    -> {group.sink_directory}")
        return "\n".join(lines) + "\n\n" + self.sql_text()


def group_name(window_ms: int | None) -> str:
    return PROJECTIONS if window_ms is None else f"w_{format_duration(window_ms)}"


def _aggregate(feature: Feature, dtype: ValueType) -> str:
    col = None if feature.column is None else q(feature.column)
    out = flink_sql_type(dtype)
    if feature.agg == "count":
        expr = f"COUNT({q(EVENT_FLAG) if col is None else col}) OVER w"
    elif feature.agg == "approx_count_distinct":
        expr = f"COUNT(DISTINCT {col}) OVER w"
    elif feature.agg == "sum":
        expr = f"COALESCE(SUM({col}) OVER w, CAST(0 AS {out}))"
    elif feature.agg == "avg":
        expr = f"AVG(CAST({col} AS DOUBLE)) OVER w"
    elif feature.agg in ("min", "max"):
        expr = f"{feature.agg.upper()}({col}) OVER w"
    else:
        expr = f"LAST_VALUE({col}) OVER w"
    return f"CAST({expr} AS {out}) AS {q(feature.name)}"


def _value_types(table: FeatureTable, source: Source) -> dict[str, ValueType]:
    types: dict[str, ValueType] = {}
    for feature in table.features:
        if feature.column is not None:
            dtype = source.columns[feature.column].dtype
            if dtype is None:
                raise ValidationError(f"column {feature.column!r} of source {source.name!r} has no value type")
            types[feature.column] = dtype
    return types


def _branch(
    from_table: str,
    keys: Sequence[tuple[str, ValueType]],
    values: dict[str, ValueType],
    source: Source,
    where: str,
    *,
    marker_ms: int | None,
) -> str:
    event_time = f"CAST({q(source.event_time)} AS BIGINT)"
    cols = [f"CAST({q(k)} AS {flink_sql_type(t)}) AS {q(k)}" for k, t in keys]
    cols.append(q(ROWTIME))
    version_time = event_time if marker_ms is None else f"{event_time} + {marker_ms}"
    cols.append(f"{version_time} AS {q(VERSION_TIME)}")
    cols.append(q(SEQ_COLUMN))
    cols.append(f"1 AS {q(EVENT_FLAG)}" if marker_ms is None else f"CAST(NULL AS INT) AS {q(EVENT_FLAG)}")
    for name, dtype in values.items():
        value = q(name) if marker_ms is None else "NULL"
        cols.append(f"CAST({value} AS {flink_sql_type(dtype)}) AS {q(name)}")
    return f"  SELECT {', '.join(cols)}\n  FROM {q(from_table)}\n  WHERE {where} AND {flink_sql.ON_TIME}"


def _sliding_spec(
    window_ms: int,
    features: Sequence[Feature],
    values: dict[str, ValueType],
    schema: TableSchema,
    horizon_ms: int | None = None,
) -> tuple[str, dict[str, str]] | None:
    """The SlidingWindows call's spec for a window group and each feature's output slot, or None
    when a feature is one the operator does not compute (a column of another type, min/max of a
    string, more than 8 features of one kind): the group then keeps the OVER form. ``horizon_ms``
    (a bounded replay's end): no expiry at or after it is scheduled, no version there emitted."""
    parts = [str(int(window_ms)) if horizon_ms is None else f"{int(window_ms)}@{int(horizon_ms)}"]
    used = {"l": 0, "d": 0, "s": 0}
    slots: dict[str, str] = {}
    for feature in features:
        kind = "" if feature.column is None else _KIND.get(values[feature.column])
        if kind is None or (feature.agg in ("min", "max") and kind == "s"):
            return None
        out = _KIND.get(schema.feature(feature.name).dtype)
        if out is None or used[out] >= _SLOTS:
            return None
        slot = f"{out}{used[out]}"
        used[out] += 1
        parts.append(f"{_AGG[feature.agg]},{feature.column or ''},{kind},{slot}")
        slots[feature.name] = slot
    return ";".join(parts), slots


def history_replay(definitions: Definitions, table_name: str, **overrides: object) -> ReplaySpec:
    """The default replay of a feature table's history: partitioned by the table's entity key (the
    hash Kafka partitions by), ``overrides`` (``start_ms``, ``end_ms``, ``partitions``, ...) on top."""
    keys = tuple(definitions.table_schema(table_name).key_names)
    return ReplaySpec(key_fields=keys, **overrides)  # type: ignore[arg-type]


def _handover_ddl(
    source: Source,
    history: flink_sql.SourceDeclaration,
    live: flink_sql.SourceDeclaration,
    at_ms: int,
    events_table: str,
    marker_tables: dict[int, str],
) -> list[str]:
    """Each declaration twice (``<name>__history``, ``<name>__live``) and a view ``<name>`` of
    history before ``at_ms`` UNION ALL live events at or after it (by event time, not Kafka time)."""
    statements = flink_sql.source_tables(
        source, history, events_table=events_table + "__history",
        marker_tables={w: n + "__history" for w, n in marker_tables.items()},
    )
    statements += flink_sql.checked_stream_tables(
        source, live, events_table=events_table + "__live",
        marker_tables={w: n + "__live" for w, n in marker_tables.items()},
    )
    columns = [*(q(c) for c in source.columns), q(SEQ_COLUMN), q(ROWTIME)]
    event_time = q(source.event_time)
    for name in [events_table, *marker_tables.values()]:
        past, live_columns = columns, columns
        if name == events_table:  # the dead letters' columns: Kafka's, none for history
            past = [*columns, *(f"CAST(NULL AS {t}) AS {q(c)}" for c, t in flink_sql.EVENT_EXTRAS)]
            live_columns = [*columns, *(q(c) for c, _ in flink_sql.EVENT_EXTRAS)]
        statements.append(
            f"CREATE TEMPORARY VIEW {q(name)} AS\n"
            f"  SELECT {', '.join(past)} FROM {q(name + '__history')} WHERE {event_time} < {int(at_ms)}\n"
            f"  UNION ALL\n"
            f"  SELECT {', '.join(live_columns)} FROM {q(name + '__live')} WHERE {event_time} >= {int(at_ms)}"
        )
    return statements


def _names(table: str) -> tuple[str, str]:
    return f"__events_{table}", f"__expiry_{table}_"


def _plain(text: str) -> str:
    """A string literal of validated names and numbers (a PTF's scalar arguments must be literals;
    U&'' escapes, :func:`flink_sql.literal`, would make the plan unreadable)."""
    if not re.fullmatch(r"[A-Za-z0-9_.,;@-]*", text):
        raise ValidationError(f"unexpected characters in a generated argument: {text!r}")
    return f"'{text}'"


def _window_input(table: str) -> str:
    return f"__window_input_{table}"


def compile_table(
    definitions: Definitions,
    table_name: str,
    binding: Binding,
    *,
    history_root: str | None = None,
    kafka_bootstrap: str | None = None,
    sink: FileSink | None = None,
    bounded: bool = False,
    watermark_on_event: bool = False,
    replay: ReplaySpec | None = None,
    handover: Handover | None = None,
) -> CompiledPlan:
    """Compile ``table_name`` for ``binding``: ``stream`` needs ``kafka_bootstrap``, ``batch``
    needs ``history_root``. Without ``sink`` the groups carry SELECTs only (for ``explain``).

    ``bounded`` (stream only) stops at the offsets latest at start; ``watermark_on_event``
    (stream only) emits a watermark after every record instead of every 200 ms. ``replay``
    (batch only) sets how history is replayed (:func:`history_replay` by default: partitioned by
    the table's entity key, as many partitions as the Kafka topic, the whole history).

    ``handover`` (stream only): each source declaration becomes a view, the replay of the history
    before ``handover.at_ms`` UNION ALL the topic's events at or after it (read from the first
    record stamped ``at_ms - allowed_lateness``, so a record sent late is not skipped). Flink's
    watermark of a union is the minimum of its inputs' until the bounded replay ends, so the
    windows fill in event-time order across the seam. The job should write only versions at or
    after ``at_ms`` (``ingestion.job.WriteRange``): the backfill wrote the ones before.
    """
    table = definitions.feature_table(table_name)
    source = definitions.source(table.source)
    schema = definitions.table_schema(table_name)
    events_table, marker_prefix = _names(table.name)
    values = _value_types(table, source)
    by_window: dict[int | None, list[Feature]] = {}
    for feature in table.features:
        by_window.setdefault(feature.window_ms, []).append(feature)
    # a bounded replay's versions end at its end (the write range does too): the operator need not
    # schedule expiries past it
    horizon = (replay or history_replay(definitions, table_name)).end_ms if binding == "batch" else None
    sliding: dict[int, tuple[str, dict[str, str]]] = {}
    for w, fs in by_window.items():
        if w is not None and (operator_call := _sliding_spec(w, fs, values, schema, horizon)) is not None:
            sliding[w] = operator_call
    windows = sorted(w for w in by_window if w is not None)
    # Expiry markers (a second read of the source, row time t + W) only for the OVER groups.
    marker_tables = {w: f"{marker_prefix}{group_name(w)}" for w in windows if w not in sliding}
    if binding == "stream":
        if kafka_bootstrap is None:
            raise ValidationError("the stream binding needs kafka_bootstrap")
        declaration = flink_sql.stream_source(
            source, table=table.name, kafka_bootstrap=kafka_bootstrap, bounded=bounded, on_event=watermark_on_event
        )
    elif binding == "batch":
        if history_root is None:
            raise ValidationError("the batch binding needs history_root")
        spec = replay if replay is not None else history_replay(definitions, table_name)
        declaration = replay_declaration(source, history_root=history_root, spec=spec)
    else:
        raise ValidationError(f"unknown binding {binding!r}; use stream or batch")
    raw_table = None
    if handover is None and binding == "stream":
        source_ddl = flink_sql.checked_stream_tables(
            source, declaration, events_table=events_table, marker_tables=marker_tables
        )
        raw_table = flink_sql.raw_table(events_table)
    elif handover is None:
        source_ddl = flink_sql.source_tables(
            source, declaration, events_table=events_table, marker_tables=marker_tables
        )
    elif binding != "stream" or kafka_bootstrap is None:
        raise ValidationError("a hand-over continues a backfill with live events: it needs the stream binding")
    else:
        live = flink_sql.stream_source(
            source, table=table.name, kafka_bootstrap=kafka_bootstrap, bounded=bounded, on_event=watermark_on_event,
            start_at_ms=handover.at_ms - source.allowed_lateness_ms,
        )
        replay_ms = handover.replay_ms if handover.replay_ms is not None else max(windows, default=0)
        history = history_replay(definitions, table_name, start_ms=handover.at_ms - replay_ms, end_ms=handover.at_ms)
        history_declaration = replay_declaration(source, history_root=handover.history_root, spec=history)
        source_ddl = _handover_ddl(source, history_declaration, live, handover.at_ms, events_table, marker_tables)
        raw_table = flink_sql.raw_table(events_table + "__live")

    keys = [(k.name, k.dtype) for k in schema.keys]
    key_list = ", ".join(q(k) for k, _ in keys)
    where = " AND ".join(flink_sql.condition_sql(c) for c in table.filter) or "TRUE"
    operator_ddl = []
    if sliding:
        operator_ddl = [
            f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {q(SLIDING_WINDOWS)}"
            f" AS '{SLIDING_WINDOWS_CLASS}' LANGUAGE JAVA",
            f"CREATE TEMPORARY VIEW {q(_window_input(table.name))} AS\n"
            + _branch(events_table, keys, values, source, where, marker_ms=None),
        ]
    groups = []
    for window_ms, features in sorted(by_window.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)):
        name = group_name(window_ms)
        if window_ms is not None and window_ms in sliding:
            operator_spec, slots = sliding[window_ms]
            outputs = ",\n  ".join(
                f"CAST({q(slots[f.name])} AS {flink_sql_type(schema.feature(f.name).dtype)}) AS {q(f.name)}"
                for f in features
            )
            rowtime = "rowtime"  # the column a PTF called with on_time adds to its output
            head = f"SELECT {key_list}, {q(VERSION_MS)}, {q(SEQ)},\n  {outputs}"
            tail = (
                f"\nFROM {q(SLIDING_WINDOWS)}(\n"
                f"  input => TABLE {q(_window_input(table.name))} PARTITION BY {key_list},\n"
                f"  on_time => DESCRIPTOR({q(ROWTIME)}),\n"
                f"  spec => {_plain(operator_spec)},\n"
                f"  uid => {_plain(f'{table.name}-{name}')}\n)"
            )
        else:
            branches = [_branch(events_table, keys, values, source, where, marker_ms=None)]
            if window_ms is None:
                frame = "UNBOUNDED PRECEDING"
            else:
                # as for the operator: no expiry marker at or past a bounded replay's end
                expiring = where if horizon is None else (
                    f"({where}) AND CAST({q(source.event_time)} AS BIGINT) + {int(window_ms)} < {int(horizon)}")
                branches.append(_branch(marker_tables[window_ms], keys, values, source, expiring, marker_ms=window_ms))
                frame = f"{flink_sql.interval(window_ms - 1)} PRECEDING"
            aggregates = ",\n  ".join(_aggregate(f, schema.feature(f.name).dtype) for f in features)
            rowtime = ROWTIME
            head = (
                f"SELECT {key_list}, {q(VERSION_TIME)} AS {q(VERSION_MS)}, {q(SEQ_COLUMN)} AS {q(SEQ)},\n"
                f"  {aggregates}"
            )
            tail = (
                "\nFROM (\n" + "\n  UNION ALL\n".join(branches) + "\n)\n"
                f"WINDOW w AS (PARTITION BY {key_list} ORDER BY {q(ROWTIME)} RANGE BETWEEN {frame} AND CURRENT ROW)"
            )
        # The watermark where a version leaves its operator: every version at or before it has
        # been emitted already (ingestion's sinks report it; the sample sink waits for it).
        select = head + tail
        watermarked = f"{head},\n  CURRENT_WATERMARK({q(rowtime)}) AS {q(WATERMARK)}{tail}"
        columns = {*schema.key_names, VERSION_MS, SEQ, *(f.name for f in features)}
        arrow = pa.schema([f for f in schema.arrow_schema() if f.name in columns])
        sink_table = sink_ddl = directory = None
        if sink is not None:
            sink_table = f"__sink_{table.name}_{name}"
            sink_columns = [(k, flink_sql_type(t)) for k, t in keys] + [(VERSION_MS, "BIGINT"), (SEQ, "BIGINT")]
            sink_columns += [(f.name, flink_sql_type(schema.feature(f.name).dtype)) for f in features]
            sink_ddl = sink.ddl(sink_table, sink_columns, table.name, name)
            directory = sink.directory(table.name, name)
        groups.append(
            GroupPlan(
                name, window_ms, tuple(f.name for f in features), select, sink_table, sink_ddl, directory, arrow,
                watermarked,
            )
        )
    return CompiledPlan(
        table.name,
        binding,
        source.name,
        tuple(source_ddl),
        tuple(groups),
        schema,
        events_table,
        raw_table,
        tuple(operator_ddl),
    )
