"""The SQL of one chunk of a point-in-time join: DuckDB ASOF JOINs, one per write group of a table.

Per part, the ASOF join picks for each sample the newest version row whose ``(version_ms, seq)``
is below the sample's bound, then each feature is kept only if visible under the table's TTL:

* **Ties by seq.** ASOF takes one inequality, so ``(version_ms, seq)`` is folded into one ordered
  value ``__fs_o``: ``(version_ms - base) * K + (seq - seq_min)`` with ``K = seq range + 1`` as a
  BIGINT when it fits, else the same as a HUGEINT. The sample side is
  ``(T - base + 1) * K`` (inclusive: ``version_ms <= T``) or ``(T - base) * K`` (strict:
  ``version_ms < T``), with T clamped to the versions' time range so nothing overflows; the join
  condition is ``bound > __fs_o``. So at equal times the highest seq wins, as in ``pick_version``.
* **What a row writes.** A versions row writes the features its ``_written`` names
  (:data:`featurestore.schema.WRITTEN`; null = every feature), and a null value there is an
  explicit null that hides older values. So a feature's versions are the rows that write it,
  nulls included. Features written by exactly the same rows (in practice, one window group) share
  one ASOF join: the engine reads the distinct ``_written`` values, groups the requested
  features by which of them write each feature, and gives each group a :class:`TablePart` that
  keeps only those rows (``_written IN (...)``; no filter when every row writes the group, the
  usual case of a table with one write-set). A table of k groups costs k ASOF joins, not one
  per feature, and no window functions.
* **TTL.** A value is visible iff its version time ``> T - ttl``; versions at or before
  ``chunk start - ttl`` cannot be visible to any sample in the chunk and are not read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

from featurestore.pit.samples import ROW_ID, TIME
from featurestore.schema import SEQ, VERSION_MS, WRITTEN

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

    @property
    def order_type(self) -> str:
        span = (self.max_ms - self.min_ms + 3) * (self.max_seq - self.min_seq + 1)
        return "BIGINT" if span < _INT64_LIMIT else "HUGEINT"


def parquet_stats(files: Sequence[str]) -> TableStats | None:
    """Stats from the Parquet footers alone, or ``None`` when a file lacks them."""
    import pyarrow.parquet as pq

    rows = 0
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
            for name in (VERSION_MS, SEQ):
                if name not in names:
                    return None
                stats = group.column(names.index(name)).statistics
                if stats is None or not stats.has_min_max:
                    return None
                lows[name].append(int(stats.min))
                highs[name].append(int(stats.max))
    if not rows:
        return TableStats(0, 0, 0, 0, 0)
    return TableStats(rows, min(lows[VERSION_MS]), max(highs[VERSION_MS]), min(lows[SEQ]), max(highs[SEQ]))


def table_stats(con: duckdb.DuckDBPyConnection, view: str) -> TableStats:
    row = con.execute(
        f"SELECT count(*), min({VERSION_MS}), max({VERSION_MS}), min({SEQ}), max({SEQ}) FROM {q(view)}"
    ).fetchall()[0]
    if not row[0]:
        return TableStats(0, 0, 0, 0, 0)
    return TableStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))


@dataclass(frozen=True)
class TablePart:
    """One write group of a feature table in a chunk query: one ASOF join."""

    alias: str  # short SQL alias, e.g. t0_1
    view: str
    keys: tuple[tuple[str, str], ...]  # (table key, sample column)
    features: tuple[tuple[str, str], ...]  # (feature, output column)
    ttl_ms: int | None
    stats: TableStats  # of the whole table (all groups share the ordered value)
    # the ``_written`` values of the rows that write these features (None in it: rows with a
    # null ``_written``); None = every row writes them, no filter
    written: tuple[str | None, ...] | None = None


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
    if part.written is not None:
        conditions.append(written_condition(part.written))
    keys = [q(k) for k, _ in part.keys]
    cols = [*keys, f"{_order_expr(part)} AS __fs_o", f"{VERSION_MS} AS __fs_v", *(q(f) for f, _ in part.features)]
    return f"SELECT {', '.join(cols)} FROM {q(part.view)} WHERE {' AND '.join(conditions)}"


def written_condition(written: Sequence[str | None], quote: Callable[[str], str] = q) -> str:
    """SQL true for the rows whose ``_written`` is one of ``written`` (None: a null ``_written``);
    ``quote`` quotes the column name in the engine's dialect (DuckDB by default)."""
    values = [v for v in written if v is not None]
    terms = [f"{quote(WRITTEN)} IN ({', '.join(_literal(v) for v in values)})"] if values else []
    if None in written:
        terms.append(f"{quote(WRITTEN)} IS NULL")
    return "(" + " OR ".join(terms or ["false"]) + ")"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _feature_expr(part: TablePart, feature: str) -> str:
    value = f"{part.alias}.{q(feature)}"
    if part.ttl_ms is None:
        return value
    return f"CASE WHEN {part.alias}.__fs_v > s.{TIME} - {part.ttl_ms} THEN {value} END"


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
