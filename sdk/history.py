"""``FeatureStore.history``: land events in a source's batch layout, list and read them back.

History is what a backfill replays (``featurestore backfill``): files under the profile's history
root, in each source's ``batch.path`` layout and ``batch.format``. Landing checks events against the
source's Avro schema first (every column it needs, of a type it can hold, no null where none is
allowed) and writes nothing unless all of them pass::

    fs.history.land("clicks", events)                       # an Arrow table, by event time
    fs.history.land("clicks", events, landing_column="arrival_ms", name="2026-11-23-export")

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
from registry import avro
from registry.models import BatchBinding, Definitions, Source

_ARROW = {"int": pa.int32(), "long": pa.int64(), "float": pa.float32(), "double": pa.float64(),
          "string": pa.string(), "boolean": pa.bool_(), "bytes": pa.binary()}
_PER_MS = {"timestamp-millis": 1, "timestamp-micros": 1_000}


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
            columns[name] = _no_nulls(_epoch_ms(events[name], where=f"{where}: column {name}"),
                                      where=f"{where}: column {name}")
    return pa.table(columns), defaulted


def _target_type(column: avro.Column) -> pa.DataType:
    base = avro.base_type(column.avro)
    if isinstance(base, str) and base in _ARROW:
        return _ARROW[base]
    raise ValidationError(f"column {column.name} of type {column.avro} cannot be landed from a file (plain types only)")


def _convert(values: pa.ChunkedArray, column: avro.Column, *, where: str) -> pa.ChunkedArray | pa.Array:
    if column.logical_type in _PER_MS and not pa.types.is_integer(values.type):
        out = pc.multiply(_epoch_ms(values, where=where), _PER_MS[column.logical_type])
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


def _epoch_ms(values: pa.ChunkedArray, *, where: str) -> pa.ChunkedArray | pa.Array:
    """Times as epoch milliseconds: integers are taken as such; timestamps and ISO-8601 strings
    must carry a zone (a naive time has no place on the UTC timeline)."""
    if pa.types.is_integer(values.type):
        return _cast(values, pa.int64(), where=where)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:
            values = values.cast(pa.timestamp("ms", "UTC"))
        except pa.ArrowInvalid as exc:
            raise ValidationError(
                f"times must be epoch milliseconds or ISO-8601 with a zone, like 2026-11-23T08:00:00Z: {exc}",
                location=where,
            ) from None
    if not pa.types.is_timestamp(values.type):
        raise ValidationError(f"{values.type} values are not times", location=where)
    if values.type.tz is None:
        raise ValidationError(
            "timestamps without a time zone cannot be placed on the UTC timeline",
            location=where,
            hint="store them as UTC timestamps or as epoch milliseconds",
        )
    in_utc = values.cast(pa.timestamp(values.type.unit, "UTC"))
    return in_utc.cast(pa.timestamp("ms", "UTC"), safe=False).cast(pa.int64())


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

    def land(
        self,
        source: str,
        events: pa.Table,
        *,
        landing_column: str | None = None,
        name: str = "part",
        replace: bool = False,
        where: str = "events",
    ) -> Landing:
        """Check ``events`` against ``source``'s schema, then write them as its history files.

        ``landing_column`` (epoch ms or zoned timestamps) says in which hour's folder each event
        lands, as a logger writing live would have (default: the source's event time). Nothing is
        written when a check fails, or when a file to write exists and ``replace`` is false.
        """
        found, batch = self.binding(source)
        landing = landing_column or found.event_time
        table, defaulted = conform(events, found, where=where, keep=[landing])
        paths = eventlog.land(
            table, self._root, batch.path, fmt=batch.format, avro_schema=found.avro_schema, landing_column=landing,
            name=name, if_exists="replace" if replace else "error",
        )
        times = table[found.event_time]
        return Landing(
            source=source,
            rows=table.num_rows,
            paths=paths,
            first_event_ms=pc.min(times).as_py(),
            last_event_ms=pc.max(times).as_py(),
            ignored_columns=[c for c in events.column_names if c not in found.columns],
            defaulted_columns=defaulted,
        )

    def files(self, source: str) -> list[str]:
        """The source's history files, in path order (the order ties in event time replay in)."""
        _, batch = self.binding(source)
        return eventlog.files(self._root, batch.path)

    def read(self, source: str, *, with_position: bool = False) -> pa.Table:
        """Every landed event of ``source``, file by file in path order."""
        _, batch = self.binding(source)
        return eventlog.read(self._root, batch.path, fmt=batch.format, with_position=with_position)
