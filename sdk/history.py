"""``FeatureStore.history``: land events in a source's batch layout, list and read them back.

History is what a backfill replays (``featurestore backfill``): files under the profile's history
root, in each source's ``batch.path`` layout and ``batch.format``. Landing checks events against the
source's Avro schema first (every column it needs, of a type it can hold, no null where none is
allowed) and writes nothing unless all of them pass::

    fs.history.land("clicks", events)                       # an Arrow table, by event time
    fs.history.land("clicks", events, landing_column="arrival_ms", name="2026-11-23-export")
    checked = fs.history.check("clicks", events)             # the checks alone: what land writes

Files are laid out by landing time (the hour a logger wrote the event; default its event time),
in the layout's folder for that hour (or day, where the layout has no ``{hour}``), named after
``name``. Landing the same events under the same
name again is refused unless ``replace=True``, which rewrites those files whole (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from featurestore import eventlog
from featurestore.errors import ValidationError
from featurestore.time_semantics import AVRO_TIME_UNITS, epoch_column
from registry import avro
from registry.models import BatchBinding, Definitions, Source

_ARROW = {"int": pa.int32(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64(),
          "string": pa.string(), "boolean": pa.bool_(), "bytes": pa.binary()}


@dataclass(frozen=True)
class Landing:
    """What one landing wrote."""

    source: str
    rows: int
    paths: list[str]
    first_event_ms: int | None
    last_event_ms: int | None
    ignored_columns: list[str] = field(default_factory=list)  # in the input, not in the schema
    defaulted_columns: list[str] = field(default_factory=list)  # in the schema, not in the input


@dataclass(frozen=True)
class CheckedEvents:
    """Events checked against a source's schema (:meth:`History.check`), ready to land."""

    source: str
    table: pa.Table  # the schema's columns in its order and types, then the landing column
    landing_column: str
    ignored_columns: list[str] = field(default_factory=list)  # in the input, not landed
    defaulted_columns: list[str] = field(default_factory=list)  # in the schema, filled with defaults

    @staticmethod
    def concat(parts: Sequence[CheckedEvents]) -> CheckedEvents:
        """Several checked inputs as one landing (a column defaulted in any of them is listed)."""
        first = parts[0]
        return CheckedEvents(
            first.source,
            pa.concat_tables([p.table for p in parts]),
            first.landing_column,
            sorted({c for p in parts for c in p.ignored_columns}),
            sorted({c for p in parts for c in p.defaulted_columns}),
        )


def string_columns(source: Source) -> dict[str, pa.DataType]:
    """The source's string columns, for readers that would infer a type (CSV): ids of digits stay strings."""
    return {name: pa.string() for name, c in source.columns.items() if avro.base_type(c.avro) == "string"}


def conform(events: pa.Table, source: Source, *, where: str, keep: Sequence[str] = ()) -> tuple[pa.Table, list[str]]:
    """``events`` with exactly the source's columns, in schema order, of the types its Avro schema
    says (plus the ``keep`` columns); and the schema's columns that were missing and filled with
    their default. Raises ValidationError naming ``where`` and the column on anything else."""
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    defaulted = []
    missing = []
    fields = {f["name"]: f for f in source.avro_schema["fields"]}
    for name, column in source.columns.items():
        if name not in events.column_names:
            if "default" in fields[name] or column.nullable:
                target = _target_type(column)
                default = fields[name].get("default")
                columns[name] = pa.nulls(events.num_rows, target) if default is None else pa.array(
                    [default] * events.num_rows, target)
                defaulted.append(name)
            else:
                missing.append(name)
            continue
        columns[name] = _convert(events[name], column, where=f"{where}: column {name}")
    if missing:
        raise ValidationError(
            f"no column {', '.join(missing)} for source {source.name}",
            location=where,
            hint="every column of the source's Avro schema must be there, except nullable ones and ones with a default",
        )
    for name in keep:
        if name not in columns:
            if name not in events.column_names:
                raise ValidationError(f"no column {name}", location=where)
            columns[name] = _no_nulls(_epoch(events[name], where=f"{where}: column {name}"),
                                      where=f"{where}: column {name}")
    return pa.table(columns), defaulted


def _target_type(column: avro.Column) -> pa.DataType:
    base = avro.base_type(column.avro)
    if isinstance(base, str) and base in _ARROW:
        return _ARROW[base]
    raise ValidationError(f"column {column.name} of type {column.avro} cannot be landed from a file (plain types only)")


def _convert(values: pa.ChunkedArray, column: avro.Column, *, where: str) -> pa.ChunkedArray | pa.Array:
    if column.logical_type in AVRO_TIME_UNITS and not pa.types.is_integer(values.type):
        out = _epoch(values, where=where, unit=AVRO_TIME_UNITS[column.logical_type])
    else:
        out = _cast(values, _target_type(column), where=where)
    return out if column.nullable else _no_nulls(out, where=where)


def _no_nulls(values: pa.ChunkedArray | pa.Array, *, where: str) -> pa.ChunkedArray | pa.Array:
    if values.null_count:
        first = pc.index(pc.is_null(values), True).as_py()
        raise ValidationError(
            f"{values.null_count} null value(s), the first in row {first + 1}, where none is allowed", location=where
        )
    return values


def _cast(values: pa.ChunkedArray, target: pa.DataType, *, where: str) -> pa.ChunkedArray:
    try:
        return values.cast(target)
    except pa.ArrowNotImplementedError:
        raise ValidationError(f"{values.type} values cannot be read as {target}", location=where) from None
    except pa.ArrowInvalid:
        pass
    start, end = 0, len(values)  # the first value that does not cast: halve the range that fails
    while end - start > 1:
        middle = (start + end) // 2
        try:
            values.slice(start, middle - start).cast(target)
            start = middle
        except pa.ArrowInvalid:
            end = middle
    raise ValidationError(
        f"row {start + 1}: {values[start].as_py()!r} cannot be read as {target} ({values.type} column)", location=where
    )


def _epoch(values: pa.ChunkedArray, *, where: str, unit: str = "ms") -> pa.ChunkedArray | pa.Array:
    """Times as integer epoch ``unit``: integers are taken as such; timestamps and ISO-8601
    strings must carry a zone (a naive time has no place on the UTC timeline)."""
    if pa.types.is_integer(values.type):
        return _cast(values, pa.int64(), where=where)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:
            values = values.cast(pa.timestamp("us", "UTC"))
        except pa.ArrowInvalid as exc:
            raise ValidationError(
                f"times must be epoch milliseconds or ISO-8601 with a zone, like 2026-11-23T08:00:00Z: {exc}",
                location=where,
            ) from None
    return epoch_column(values, unit=unit, what=where)


class History:
    """The sources' history under the profile's history root."""

    def __init__(self, root: str, definitions: Callable[[], Definitions]) -> None:
        self._root = root
        self._definitions = definitions  # the applied registry's, read when needed

    @property
    def root(self) -> str:
        return self._root

    def binding(self, source: str) -> tuple[Source, BatchBinding]:
        found = self._definitions().source(source)
        if found.batch is None:
            raise ValidationError(f"source {source} has no batch binding: it keeps no history to land in",
                                  hint="give it `batch: {path: ..., format: avro|parquet}` and apply")
        return found, found.batch

    def check(
        self, source: str, events: pa.Table, *, landing_column: str | None = None, where: str = "events"
    ) -> CheckedEvents:
        """``events`` checked against ``source``'s Avro schema and made its columns and types
        (plus the landing column, epoch ms): what :meth:`land` writes. Raises ValidationError
        naming ``where`` and the column on the first problem."""
        found, _ = self.binding(source)
        landing = landing_column or found.event_time
        table, defaulted = conform(events, found, where=where, keep=[landing])
        ignored = [c for c in events.column_names if c not in found.columns]  # the landing column too
        return CheckedEvents(source, table, landing, ignored, defaulted)

    def land(
        self,
        source: str,
        events: pa.Table | CheckedEvents,
        *,
        landing_column: str | None = None,
        name: str = "part",
        replace: bool = False,
        where: str = "events",
    ) -> Landing:
        """Check ``events`` against ``source``'s schema (unless :meth:`check` did), then write them
        as its history files.

        ``landing_column`` (epoch ms or zoned timestamps) says in which hour's folder each event
        lands, as a logger writing live would have (default: the source's event time). Nothing is
        written when a check fails, or when a file to write exists and ``replace`` is false.
        """
        if isinstance(events, CheckedEvents):
            if events.source != source or landing_column not in (None, events.landing_column):
                raise ValidationError(f"these events were checked for source {events.source} landing by "
                                      f"{events.landing_column}, not for {source} by {landing_column}")
            checked = events
        else:
            checked = self.check(source, events, landing_column=landing_column, where=where)
        found, batch = self.binding(source)
        table = checked.table
        paths = eventlog.land(
            table, self._root, batch.path, fmt=batch.format, avro_schema=found.avro_schema,
            landing_column=checked.landing_column, name=name, if_exists="replace" if replace else "error",
        )
        times = table[found.event_time]
        return Landing(
            source=source,
            rows=table.num_rows,
            paths=paths,
            first_event_ms=pc.min(times).as_py(),
            last_event_ms=pc.max(times).as_py(),
            ignored_columns=checked.ignored_columns,
            defaulted_columns=checked.defaulted_columns,
        )

    def files(self, source: str) -> list[str]:
        """The source's history files, in path order (the order ties in event time replay in)."""
        _, batch = self.binding(source)
        return eventlog.files(self._root, batch.path)

    def read(self, source: str, *, with_position: bool = False) -> pa.Table:
        """Every landed event of ``source``, file by file in path order."""
        _, batch = self.binding(source)
        return eventlog.read(self._root, batch.path, fmt=batch.format, with_position=with_position)
