"""The SQL of one chunk of a point-in-time join: DuckDB ASOF JOINs, one per feature table.

Per table, the ASOF join picks for each sample the newest version row whose ``(version_ms, seq)``
is below the sample's bound, then each feature is kept only if visible under the table's TTL:

* **Ties by seq.** ASOF takes one inequality, so ``(version_ms, seq)`` is folded into one ordered
  value ``__fs_o``: ``(version_ms - base) * K + (seq - seq_min)`` with ``K = seq range + 1`` as a
  BIGINT when it fits, else the same as a HUGEINT. The sample side is
  ``(T - base + 1) * K`` (inclusive: ``version_ms <= T``) or ``(T - base) * K`` (strict:
  ``version_ms < T``), with T clamped to the versions' time range so nothing overflows; the join
  condition is ``bound > __fs_o``. So at equal times the highest seq wins, as in ``pick_version``.
* **Null cells.** A null feature cell means "this version did not set the feature"; it never
  hides an older value. A feature column with nulls is forward-filled per key in
  ``(version_ms, seq)`` order (``last_value(f IGNORE NULLS)``) together with the time of the cell
  it came from, and TTL is checked against that time. Columns without nulls skip the window
  (the usual case: a table's versions set all its features), which keeps the join a plain ASOF.
* **TTL.** A value is visible iff its version time ``> T - ttl``; versions at or before
  ``chunk start - ttl`` cannot be visible to any sample in the chunk and are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from featurestore.pit.samples import ROW_ID, TIME
from featurestore.schema import SEQ, VERSION_MS

_INT64_LIMIT = 2**62


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableStats:
    rows: int
    min_ms: int
    max_ms: int
    min_seq: int
    max_seq: int
    nullable: frozenset[str]  # requested features that have null cells

    @property
    def order_type(self) -> str:
        span = (self.max_ms - self.min_ms + 3) * (self.max_seq - self.min_seq + 1)
        return "BIGINT" if span < _INT64_LIMIT else "HUGEINT"


def parquet_stats(files: Sequence[str], features: Sequence[str]) -> TableStats | None:
    """Stats from the Parquet footers alone, or ``None`` when a file lacks them."""
    import pyarrow.parquet as pq

    rows, nullable = 0, set()
    lows: dict[str, list[int]] = {VERSION_MS: [], SEQ: []}
    highs: dict[str, list[int]] = {VERSION_MS: [], SEQ: []}
    for path in files:
        meta = pq.read_metadata(path)
        names = meta.schema.names
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if not group.num_rows:
                continue
            rows += group.num_rows
            for name in (VERSION_MS, SEQ, *features):
                if name not in names:  # a feature added after the file was written: all null
                    nullable.add(name)
                    continue
                stats = group.column(names.index(name)).statistics
                if stats is None or not stats.has_null_count:
                    return None
                if name in features:
                    if stats.null_count:
                        nullable.add(name)
                elif not stats.has_min_max:
                    return None
                else:
                    lows[name].append(int(stats.min))
                    highs[name].append(int(stats.max))
    if not rows:
        return TableStats(0, 0, 0, 0, 0, frozenset())
    return TableStats(
        rows, min(lows[VERSION_MS]), max(highs[VERSION_MS]), min(lows[SEQ]), max(highs[SEQ]), frozenset(nullable)
    )


def table_stats(con: duckdb.DuckDBPyConnection, view: str, features: Sequence[str]) -> TableStats:
    nulls = "".join(f", bool_or({q(f)} IS NULL)" for f in features)
    row = con.execute(
        f"SELECT count(*), min({VERSION_MS}), max({VERSION_MS}), min({SEQ}), max({SEQ}){nulls} FROM {q(view)}"
    ).fetchall()[0]
    if not row[0]:
        return TableStats(0, 0, 0, 0, 0, frozenset())
    nullable = frozenset(f for f, has_null in zip(features, row[5:], strict=True) if has_null)
    return TableStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), nullable)


@dataclass(frozen=True)
class TablePart:
    """One feature table in a chunk query."""

    alias: str  # short SQL alias, e.g. t0
    view: str
    keys: tuple[tuple[str, str], ...]  # (table key, sample column)
    features: tuple[tuple[str, str], ...]  # (feature, output column)
    ttl_ms: int | None
    stats: TableStats


def _order_expr(part: TablePart) -> str:
    s, typ = part.stats, part.stats.order_type
    k = s.max_seq - s.min_seq + 1
    return f"(({VERSION_MS} - {s.min_ms - 1})::{typ} * {k} + ({SEQ} - {s.min_seq}))"


def _bound_expr(part: TablePart, strict: bool) -> str:
    s, typ = part.stats, part.stats.order_type
    k = s.max_seq - s.min_seq + 1
    clamped = f"least(greatest({TIME}, {s.min_ms - 1}), {s.max_ms + 1})"
    plus = 1 if strict else 2
    return f"(({clamped} - {s.min_ms})::{typ} + {plus}) * {k}"


def _versions_cte(part: TablePart, lo: int, hi: int, strict: bool) -> str:
    """The versions one chunk [lo, hi] can see, with the ordered value and filled features."""
    conditions = [f"{VERSION_MS} {'<' if strict else '<='} {hi}"]
    if part.ttl_ms is not None:
        conditions.append(f"{VERSION_MS} > {lo - part.ttl_ms}")
    keys = [q(k) for k, _ in part.keys]
    cols = [*keys, f"{_order_expr(part)} AS __fs_o", f"{VERSION_MS} AS __fs_v"]
    window = ""
    for feature, _ in part.features:
        if feature in part.stats.nullable:
            cols.append(f"last_value({q(feature)} IGNORE NULLS) OVER w AS {q(feature)}")
            cols.append(
                f"last_value(CASE WHEN {q(feature)} IS NOT NULL THEN {VERSION_MS} END IGNORE NULLS) OVER w "
                f"AS {q('__fs_v_' + feature)}"
            )
            window = (
                f" WINDOW w AS (PARTITION BY {', '.join(keys)} ORDER BY {VERSION_MS}, {SEQ} "
                "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
            )
        else:
            cols.append(q(feature))
    return f"SELECT {', '.join(cols)} FROM {q(part.view)} WHERE {' AND '.join(conditions)}{window}"


def _feature_expr(part: TablePart, feature: str) -> str:
    value = f"{part.alias}.{q(feature)}"
    if part.ttl_ms is None:
        return value
    time = f"{part.alias}.{q('__fs_v_' + feature)}" if feature in part.stats.nullable else f"{part.alias}.__fs_v"
    return f"CASE WHEN {time} > s.{TIME} - {part.ttl_ms} THEN {value} END"


def chunk_query(
    samples_view: str, parts: Sequence[TablePart], *, lo: int, hi: int, strict: bool, order: bool = True
) -> str:
    """Row id and feature values of the samples with ``lo <= T <= hi``, joined to every table.

    Sample columns do not pass through DuckDB (their Arrow types stay exactly as given): the
    caller takes them from the samples by row id.
    """
    key_columns = sorted({col for p in parts for _, col in p.keys})
    picked = ", ".join([*(q(c) for c in key_columns), TIME, ROW_ID])
    bounds = "".join(f", {_bound_expr(p, strict)} AS __fs_b_{p.alias}" for p in parts)
    ctes = [f"s AS (SELECT {picked}{bounds} FROM {q(samples_view)} WHERE {TIME} BETWEEN {lo} AND {hi})"]
    ctes += [f"{p.alias} AS ({_versions_cte(p, lo, hi, strict)})" for p in parts]
    joins = []
    for p in parts:
        on = " AND ".join(f"s.{q(col)} = {p.alias}.{q(key)}" for key, col in p.keys)
        joins.append(f"ASOF LEFT JOIN {p.alias} ON {on} AND s.__fs_b_{p.alias} > {p.alias}.__fs_o")
    outputs = [f"s.{ROW_ID}"]
    for p in parts:
        outputs.extend(f"{_feature_expr(p, feature)} AS {q(out)}" for feature, out in p.features)
    sql = f"WITH {', '.join(ctes)} SELECT {', '.join(outputs)} FROM s {' '.join(joins)}"
    return sql + (f" ORDER BY s.{ROW_ID}" if order else "")
