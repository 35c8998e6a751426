"""The compiler from a sample table to Flink SQL: the label join, one plan for both bindings.

``compile_samples(definitions, "ctr_samples", "stream" | "batch", ...)`` returns a
:class:`SamplePlan`: the CREATE statements of the base source (impressions) and of the label
source (clicks), each declared once under the sample table's own names, and one SELECT, a LEFT
OUTER *interval join*::

    base b LEFT JOIN label l ON b.key = l.key AND l.__rt BETWEEN b.__rt AND b.__rt + window

Flink emits a joined row as soon as both sides are there (the positive: when the click arrives,
or when the impression arrives after its click) and the base row padded with NULLs once the
watermark passes ``b.__rt + window`` without a match (the negative). The label rule is
:func:`registry.reference.samples`'s: a label event with time in ``[t, t + window]``, both ends
included. Both inputs keep only events after their source's watermark (``flink_sql.ON_TIME``):
an event later than the allowed lateness is dropped here as in every feature group.

An impression with two clicks joins twice: each output row carries the base event's source
position (``sample_seq``) and the sink keeps the first row per position (``ingestion.samples``).
The features of the sample table are not joined here: the sink reads them from the versioned
store as of the sample's time, once the feature groups of the same job have written through it.
Nothing here imports PyFlink.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pyarrow as pa
from featurestore.errors import ValidationError
from featurestore.types import arrow_type

from registry import flink_sql
from registry.flink_sql import ON_TIME, ROWTIME, SEQ_COLUMN, q
from registry.models import Definitions, SampleTable, Source
from registry.replay_binding import ReplaySpec, replay_declaration

#: Columns every sample carries after the base columns and the label.
SAMPLE_MS = "sample_ms"  # the base event's time (ms): the time its features are read as of
SAMPLE_SEQ = "sample_seq"  # the base event's position in source order: one sample per position
LABEL_MS = "label_ms"  # the matching label event's time, null for a negative
RESERVED = (SAMPLE_MS, SAMPLE_SEQ, LABEL_MS)


@dataclass(frozen=True)
class SamplePlan:
    """One sample table compiled for one binding."""

    name: str
    binding: str
    base_source: str
    label_source: str
    source_ddl: tuple[str, ...]
    select: str
    columns: tuple[str, ...]  # the base columns kept, in order
    label: str
    arrow_schema: pa.Schema  # what ``select`` returns, as Arrow

    def statements(self) -> list[str]:
        return list(self.source_ddl)

    def sql_text(self) -> str:
        return ";\n\n".join([*self.source_ddl, self.select]) + ";\n"


def table_names(name: str) -> tuple[str, str]:
    """The declarations of the base and label events of sample table ``name``."""
    return f"__sample_base_{name}", f"__sample_label_{name}"


def sample_columns(table: SampleTable, base: Source) -> tuple[str, ...]:
    """The base columns a sample keeps (all by default), each of a value type."""
    columns = tuple(table.columns) if table.columns is not None else tuple(base.columns)
    for name in columns:
        if name in RESERVED or name == table.label:
            raise ValidationError(f"sample table {table.name!r}: column {name!r} is a name every sample sets itself")
        if base.columns[name].dtype is None:
            raise ValidationError(f"sample table {table.name!r}: column {name!r} of {base.name!r} has no value type")
    return columns


def output_schema(table: SampleTable, base: Source) -> pa.Schema:
    """The label join's rows: the base columns, the label (int32), then the columns of :data:`RESERVED`."""
    fields = []
    for name in sample_columns(table, base):
        dtype = base.columns[name].dtype
        assert dtype is not None  # sample_columns checked
        fields.append(pa.field(name, arrow_type(dtype)))
    fields.append(pa.field(table.label, pa.int32()))
    fields += [pa.field(SAMPLE_MS, pa.int64()), pa.field(SAMPLE_SEQ, pa.int64()), pa.field(LABEL_MS, pa.int64())]
    return pa.schema(fields)


def compile_samples(
    definitions: Definitions,
    name: str,
    binding: str,
    *,
    kafka_bootstrap: str | None = None,
    history_root: str | None = None,
    bounded: bool = False,
    watermark_on_event: bool = False,
    replay: ReplaySpec | None = None,
) -> SamplePlan:
    """Compile sample table ``name`` for ``binding`` (``stream`` needs ``kafka_bootstrap``, ``batch``
    needs ``history_root``; ``replay`` sets the batch replay, by default partitioned by the join key
    over the whole history; the label source's replay runs one label window past ``replay.end_ms``,
    so the base events just before the end get the labels that follow them). ``bounded`` and
    ``watermark_on_event`` as in ``compile_table``."""
    table = definitions.sample_table(name)
    base = definitions.source(table.base_source)
    label = definitions.source(table.label_source)
    base_table, label_table = table_names(table.name)
    source_ddl: list[str] = []
    for source, events_table in ((base, base_table), (label, label_table)):
        if binding == "stream":
            if kafka_bootstrap is None:
                raise ValidationError("the stream binding needs kafka_bootstrap")
            declaration = flink_sql.stream_source(
                source, table=f"{table.name}_{'base' if events_table == base_table else 'label'}",
                kafka_bootstrap=kafka_bootstrap, bounded=bounded, on_event=watermark_on_event,
            )
            source_ddl += flink_sql.checked_stream_tables(source, declaration, events_table=events_table,
                                                          marker_tables={})
        elif binding == "batch":
            if history_root is None:
                raise ValidationError("the batch binding needs history_root")
            spec = replay if replay is not None else ReplaySpec(key_fields=(table.join_key,))
            if events_table == label_table and spec.end_ms is not None:
                # A base event just before the end is labelled by the label window after it.
                spec = dataclasses.replace(spec, end_ms=spec.end_ms + table.window_ms)
            declaration = replay_declaration(source, history_root=history_root, spec=spec)
            source_ddl += flink_sql.source_tables(source, declaration, events_table=events_table, marker_tables={})
        else:
            raise ValidationError(f"unknown binding {binding!r}; use stream or batch")
    columns = sample_columns(table, base)
    schema = output_schema(table, base)
    key = q(table.join_key)
    kept = [f"b.{q(c)} AS {q(c)}" for c in columns]
    select = (
        f"SELECT {', '.join(kept)},\n"
        f"  CAST(CASE WHEN l.{q(ROWTIME)} IS NULL THEN 0 ELSE 1 END AS INT) AS {q(table.label)},\n"
        f"  CAST(b.{q(base.event_time)} AS BIGINT) AS {q(SAMPLE_MS)},\n"
        f"  b.{q(SEQ_COLUMN)} AS {q(SAMPLE_SEQ)},\n"
        f"  CAST(l.{q(label.event_time)} AS BIGINT) AS {q(LABEL_MS)}\n"
        f"FROM (SELECT * FROM {q(base_table)} WHERE {ON_TIME}) b\n"
        f"LEFT JOIN (\n"
        f"  SELECT {key}, {q(label.event_time)}, {q(ROWTIME)} FROM {q(label_table)} WHERE {ON_TIME}\n"
        f") l\n"
        f"ON b.{key} = l.{key}\n"
        f"  AND l.{q(ROWTIME)} BETWEEN b.{q(ROWTIME)} AND b.{q(ROWTIME)} + {flink_sql.interval(table.window_ms)}"
    )
    return SamplePlan(
        table.name, binding, base.name, label.name, tuple(source_ddl), select, columns, table.label, schema
    )
