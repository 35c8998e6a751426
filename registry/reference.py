"""The reference semantics of feature tables and sample tables, in DuckDB SQL.

Written from the documented rules, not from the Flink compiler, so it can judge it (the oracle
of the property tests) and compute small repos without a JVM (the demo's batch path).

Rules (README, "Time semantics"):

* A windowed feature's value at ``T`` aggregates the events with event time in ``(T - W, T]``.
  It changes only at an event time ``t`` or when an event leaves the window, at ``t + W``; a
  version is written at each such time, so a reader at any ``T`` gets the exact value.
* Over an empty window ``count``, ``sum`` and ``approx_count_distinct`` are 0; ``avg``, ``min``,
  ``max`` and ``last`` are null. ``last`` is the value of the newest event with a non-null value,
  newest by (event time, source order). ``approx_count_distinct`` is exact here.
* A projection (``last`` without a window) changes only at event times.
* Events at the same time are all in the window of that time (a closed end).

Features of one table are grouped by window: each group's versions set exactly that group's
features (nulls included), so :func:`feature_versions` returns one Arrow table per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from featurestore.schema import SEQ, VERSION_MS
from featurestore.types import duckdb_type

from registry.models import Condition, Definitions, Feature, SampleTable

_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class VersionGroup:
    """The versions of the features of one table that share a window (``window_ms`` None: projections)."""

    window_ms: int | None
    features: tuple[str, ...]
    versions: pa.Table


def _q(name: str) -> str:
    return f'"{name}"'


def _condition_sql(cond: Condition, params: list[object]) -> str:
    col = _q(cond.column)
    if cond.op == "is_null":
        return f"{col} IS NULL"
    if cond.op == "not_null":
        return f"{col} IS NOT NULL"
    if cond.op in ("in", "not_in"):
        values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
        params.extend(values)
        marks = ", ".join("?" for _ in values)
        return f"{col} {'IN' if cond.op == 'in' else 'NOT IN'} ({marks})"
    params.append(cond.value)
    return f"{col} {_OPS[cond.op]} ?"


def _aggregate_sql(feature: Feature) -> str:
    col = None if feature.column is None else _q(feature.column)
    frame = "w"
    if feature.agg == "count":
        return f"COUNT({'__ev' if col is None else f'CASE WHEN __ev = 1 THEN {col} END'}) OVER {frame}"
    if feature.agg == "approx_count_distinct":
        return f"COUNT(DISTINCT {col}) OVER {frame}"
    if feature.agg == "sum":
        return f"COALESCE(SUM({col}) OVER {frame}, 0)"
    if feature.agg == "avg":
        return f"AVG({col}) OVER {frame}"
    if feature.agg in ("min", "max"):
        return f"{feature.agg.upper()}({col}) OVER {frame}"
    # last: the newest non-null value by (event time, source order)
    newest = f"CASE WHEN __ev = 1 AND {col} IS NOT NULL THEN {{'t': __ts, 's': __seq}} END"
    return f"ARG_MAX({col}, {newest}) OVER {frame}"


def feature_versions(
    definitions: Definitions,
    table_name: str,
    events: pa.Table,
    *,
    seq_column: str | None = None,
    until_ms: int | None = None,
) -> list[VersionGroup]:
    """Every version of every feature of ``table_name`` computed from ``events`` of its source.

    ``events`` holds the source's columns; its row order is the source order unless
    ``seq_column`` names a column holding it. Versions are computed up to ``until_ms`` (default:
    the newest event time, where the input's knowledge ends): an expiry after it has not happened
    yet, just as a live job emits it only when its watermark gets there.
    """
    table = definitions.feature_table(table_name)
    source = definitions.source(table.source)
    schema = definitions.table_schema(table_name)
    keys = list(schema.key_names)
    if seq_column is None:
        seq_column = "__row"
        events = events.append_column(seq_column, pa.array(range(events.num_rows), pa.int64()))
    con = duckdb.connect()
    con.register("raw_events", events)
    params: list[object] = []
    where = " AND ".join(_condition_sql(c, params) for c in table.filter) or "TRUE"
    seq = _q(seq_column)
    key_cols = ", ".join(_q(k) for k in keys)
    value_cols = sorted({f.column for f in table.features if f.column is not None})
    select_values = "".join(f", {_q(c)}" for c in value_cols)
    con.execute(
        f"CREATE TEMP TABLE ev AS SELECT {key_cols}, {_q(source.event_time)} AS __ts, {seq} AS __seq{select_values} "
        f"FROM raw_events",
    )
    con.execute(f"CREATE TEMP TABLE ev_f AS SELECT * FROM ev WHERE {where}", params)

    limit = int(until_ms) if until_ms is not None else con.sql("SELECT coalesce(max(__ts), 0) FROM ev").fetchall()[0][0]
    groups: dict[int | None, list[Feature]] = {}
    for feature in table.features:
        groups.setdefault(feature.window_ms, []).append(feature)
    results = []
    for window_ms, features in sorted(groups.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0)):
        null_values = "".join(f", NULL AS {_q(c)}" for c in value_cols)
        if window_ms is None:
            rows = "SELECT *, 1 AS __ev FROM ev_f"
            frame = f"PARTITION BY {key_cols} ORDER BY __ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
        else:
            rows = (
                f"SELECT *, 1 AS __ev FROM ev_f UNION ALL "
                f"SELECT {key_cols}, __ts + {window_ms} AS __ts, __seq{null_values}, NULL AS __ev FROM ev_f"
            )
            frame = f"PARTITION BY {key_cols} ORDER BY __ts RANGE BETWEEN {window_ms - 1} PRECEDING AND CURRENT ROW"
        aggregates = ", ".join(f"{_aggregate_sql(f)} AS {_q(f.name)}" for f in features)
        casts = ", ".join(
            f"CAST({_q(f.name)} AS {duckdb_type(schema.feature(f.name).dtype)}) AS {_q(f.name)}" for f in features
        )
        sql = (
            f"WITH r AS ({rows}), a AS ("
            f"SELECT {key_cols}, __ts, max(__seq) OVER (PARTITION BY {key_cols}, __ts) AS __s, "
            f"{aggregates} FROM r WINDOW w AS ({frame})) "
            f"SELECT DISTINCT ON ({key_cols}, __ts) {key_cols}, __ts AS {VERSION_MS}, __s AS {SEQ}, {casts} "
            f"FROM a WHERE __ts <= {limit} ORDER BY {key_cols}, __ts"
        )
        out = con.sql(sql).to_arrow_table()
        columns = {*schema.key_names, VERSION_MS, SEQ, *(f.name for f in features)}
        arrow = pa.schema([f for f in schema.arrow_schema() if f.name in columns])
        results.append(VersionGroup(window_ms, tuple(f.name for f in features), out.cast(arrow)))
    con.close()
    return results


def samples(
    definitions: Definitions,
    sample_table: SampleTable | str,
    base_events: pa.Table,
    label_events: pa.Table,
    *,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """One sample per base event, labelled 1 iff a label event with the same join key has event
    time in ``[t, t + window]`` (``t`` the base event's time), else 0. Base columns are kept."""
    table = definitions.sample_table(sample_table) if isinstance(sample_table, str) else sample_table
    base = definitions.source(table.base_source)
    label = definitions.source(table.label_source)
    keep = list(columns or table.columns or base_events.column_names)
    con = duckdb.connect()
    con.register("base_events", base_events)
    con.register("label_events", label_events)
    key = _q(table.join_key)
    cols = ", ".join(f"b.{_q(c)}" for c in keep)
    sql = (
        f"SELECT {cols}, CAST(EXISTS (SELECT 1 FROM label_events l WHERE l.{key} = b.{key} "
        f"AND l.{_q(label.event_time)} >= b.{_q(base.event_time)} "
        f"AND l.{_q(label.event_time)} <= b.{_q(base.event_time)} + {table.window_ms}) AS INTEGER) "
        f"AS {_q(table.label)} "
        f"FROM base_events b"
    )
    out = con.sql(sql).to_arrow_table()
    con.close()
    return out
