"""Event history in a source's batch layout: land events as files, read them back.

A layout is a path relative to the history root whose directories may hold ``{date}``
(``YYYY-MM-DD``) and ``{hour}`` (``HH``), and whose last part is a file pattern, e.g.
``events/clicks/dt={date}/hour={hour}/*.avro``. Files are laid out by *landing* time (when the
logger wrote them), as real logs are: a late event sits in a later hour's file, files overlap in
event time, and rows inside a file are in arrival order, not event-time order.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import io
import re
from collections.abc import Sequence
from typing import Any, Literal

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.fs import open_fs
from featurestore.time_semantics import AVRO_TIME_UNITS, epoch_column

POSITION_FILE = "_file"
POSITION_ROW = "_row"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class AlreadyLanded(ValidationError):
    """Files a landing would write exist already (and it was asked not to replace them)."""

    def __init__(self, existing: Sequence[str], total: int, hint: str) -> None:
        self.existing = sorted(existing)
        super().__init__(f"{len(existing)} of the {total} files to land exist already, e.g. {self.existing[0]}",
                         hint=hint)


def _split(layout: str) -> tuple[str, str]:
    directory, _, pattern = layout.rpartition("/")
    return directory, pattern or "*"


def _file_name(pattern: str, name: str, index: int) -> str:
    """The pattern's first ``*`` made ``<name>-<index>``: the name always matches the layout."""
    return pattern.replace("*", f"{name}-{index:05d}", 1).replace("*", "") if "*" in pattern else pattern


def land(
    events: pa.Table,
    root: str,
    layout: str,
    *,
    fmt: str,
    avro_schema: dict[str, Any] | None = None,
    landing_column: str,
    columns: Sequence[str] | None = None,
    rows_per_file: int = 200_000,
    name: str = "part",
    if_exists: Literal["replace", "error"] = "replace",
) -> list[str]:
    """Write ``events`` under ``root`` in ``layout``, by the landing time in ``landing_column``.

    Writes only ``columns`` (default: the Avro schema's fields, or all). Files are named after the
    layout's pattern, its ``*`` made ``<name>-<index>`` (``part-00000.avro``); a pattern without
    ``*`` names one file per hour. Rerunning with the same events and name rewrites the same files,
    so landing is idempotent; with ``if_exists="error"``, a file already there fails the landing
    before anything is written (:class:`AlreadyLanded`). Returns the paths written.
    """
    if fmt not in ("avro", "parquet"):
        raise ValidationError(f"unknown history format {fmt!r}; use avro or parquet")
    if fmt == "avro" and avro_schema is None:
        raise ValidationError("landing Avro files needs the source's Avro schema")
    if not _NAME.match(name):
        raise ValidationError(f"file name part {name!r} may hold letters, digits, '_', '-' and '.' only")
    keep = list(columns or ([f["name"] for f in avro_schema["fields"]] if avro_schema else events.column_names))
    fs = open_fs(root)
    directory, pattern = _split(layout)
    if "*" not in pattern:
        rows_per_file = max(events.num_rows, 1)
    hours = events[landing_column].to_numpy() // 3_600_000
    folders: dict[str, list[int]] = {}  # a layout without {hour} puts a whole day in one folder
    for hour in np.unique(hours).tolist():
        moment = dt.datetime.fromtimestamp(hour * 3600, tz=dt.UTC)
        folder = directory.replace("{date}", moment.strftime("%Y-%m-%d")).replace("{hour}", moment.strftime("%H"))
        folders.setdefault(folder, []).append(hour)
    chunks: list[tuple[str, pa.Table]] = []
    for folder, its_hours in folders.items():
        rows = events.filter(pa.array(np.isin(hours, its_hours))).select(keep)  # in their order
        for index, start in enumerate(range(0, rows.num_rows, rows_per_file)):
            path = f"{root.rstrip('/')}/{folder}/{_file_name(pattern, name, index)}"
            chunks.append((path, rows.slice(start, rows_per_file)))
    if if_exists == "error":
        there = set(files(root, layout)).intersection(path for path, _ in chunks)
        if there:
            raise AlreadyLanded(list(there), len(chunks), "land under another name, or replace them (rewritten whole)")
    for path, chunk in chunks:
        fs.write_bytes(path, _encode(chunk, fmt, avro_schema))
    return [path for path, _ in chunks]


def _encode(table: pa.Table, fmt: str, avro_schema: dict[str, Any] | None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buffer)
    else:
        assert avro_schema is not None  # land() checked it
        fastavro.writer(buffer, fastavro.parse_schema(avro_schema), table.to_pylist())
    return buffer.getvalue()


def files(root: str, layout: str) -> list[str]:
    """The history files of a layout, sorted by path (so by landing date and hour)."""
    directory, pattern = _split(layout)
    glob = f"{root.rstrip('/')}/{directory.replace('{date}', '*').replace('{hour}', '*')}/{pattern}"
    base = (root.rstrip("/") + "/" + directory.split("{", 1)[0]).rsplit("/", 1)[0]
    return [p for p in open_fs(root).list_files(base) if fnmatch.fnmatch(p, glob)]


def _epochs(table: pa.Table, writer_schema: Any) -> pa.Table:
    """fastavro reads timestamp-millis and -micros fields as datetimes: make them epoch integers
    again, in the unit their schema says (as landed, and as the replay source reads them)."""
    units = {}
    for f in writer_schema.get("fields", []):
        for branch in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(branch, dict) and branch.get("logicalType") in AVRO_TIME_UNITS:
                units[f["name"]] = AVRO_TIME_UNITS[branch["logicalType"]]
    for name, unit in units.items():
        if name in table.column_names and pa.types.is_timestamp(table.schema.field(name).type):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, epoch_column(table.column(index), unit=unit, what=name))
    return table


def read(root: str, layout: str, *, fmt: str, with_position: bool = False) -> pa.Table:
    """Every event of a layout, file by file in path order, rows in file order.

    With ``with_position``, two more columns say where each row came from (``_file`` index in
    path order, ``_row`` within the file): the position in the log that breaks event-time ties.
    """
    fs = open_fs(root)
    tables = []
    for index, path in enumerate(files(root, layout)):
        data = fs.read_bytes(path)
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data))
        else:
            reader = fastavro.reader(io.BytesIO(data))
            table = _epochs(pa.Table.from_pylist(list(reader)), reader.writer_schema)
        if with_position:
            table = table.append_column(POSITION_FILE, pa.array(np.full(table.num_rows, index, dtype=np.int64)))
            table = table.append_column(POSITION_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
        tables.append(table)
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")
