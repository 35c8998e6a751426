"""Samples: the left side of a point-in-time join, loaded, checked and given an event time in ms.

Samples come as an Arrow table or as Parquet (a file, a directory, or a list of files). The
event-time column is a timestamp with a time zone (any unit; sub-millisecond parts are floored)
or an integer of epoch milliseconds UTC. A naive timestamp, or files whose event-time columns
disagree on the zone, raise :class:`TimeSemanticsError` naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import NotFoundError, TimeSemanticsError, ValidationError
from featurestore.time_semantics import epoch_column, to_millis

SamplesInput: TypeAlias = pa.Table | str | Path | Sequence[str | Path]

# Internal columns added to the samples; sample columns may not use the prefix.
INTERNAL_PREFIX = "__fs_"
TIME = "__fs_t"
ROW_ID = "__fs_rid"


@dataclass(frozen=True)
class Samples:
    """Samples ready to join: the original columns plus :data:`TIME` (ms) and :data:`ROW_ID`."""

    table: pa.Table
    columns: tuple[str, ...]  # the original sample columns, in order
    event_time: str
    paths: tuple[str, ...] | None  # Parquet files they came from, when they came from files

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def times(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        times: np.ndarray[Any, np.dtype[np.int64]] = self.table.column(TIME).to_numpy()
        return times


def parquet_files(source: str | Path | Sequence[str | Path]) -> list[str]:
    """A Parquet file, a directory of them, or a list of files -> the sorted list of files."""
    items = [source] if isinstance(source, str | Path) else list(source)
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(str(p) for p in path.rglob("*.parquet")))
        elif path.exists():
            files.append(str(path))
        else:
            raise NotFoundError(f"no such file or directory: {path}")
    if not files:
        raise NotFoundError(f"no Parquet files in {source}")
    return files


def load_samples(source: SamplesInput, event_time: str) -> Samples:
    paths: tuple[str, ...] | None = None
    if isinstance(source, pa.Table):
        table = source
    else:
        files = parquet_files(source)
        _check_same_zone(files, event_time)
        # ParquetFile.read, not pq.read_table: the latter imports pyarrow.dataset and with it pandas
        table = pa.concat_tables([pq.ParquetFile(f).read() for f in files], promote_options="default")
        paths = tuple(str(Path(f).resolve()) for f in files)
    for name in table.column_names:
        if name.startswith(INTERNAL_PREFIX):
            raise ValidationError(f"sample column names may not start with {INTERNAL_PREFIX!r}", location=name)
    if event_time not in table.column_names:
        raise ValidationError(
            f"the samples have no event-time column (columns: {table.column_names})",
            location=event_time,
            hint="pass event_time=<the column holding each sample's time>",
        )
    millis = event_millis(table.column(event_time), event_time)
    columns = tuple(table.column_names)
    table = table.append_column(TIME, millis).append_column(ROW_ID, pa.array(np.arange(table.num_rows), pa.int64()))
    return Samples(table=table, columns=columns, event_time=event_time, paths=paths)


def _check_same_zone(files: Sequence[str], event_time: str) -> None:
    types = {str(s.field(event_time).type) for s in map(pq.read_schema, files) if event_time in s.names}
    if len(types) > 1:
        raise TimeSemanticsError(
            f"the sample files disagree on the event-time type: {sorted(types)}",
            location=event_time,
            hint="write every file with one time zone (UTC)",
        )


def event_millis(column: pa.ChunkedArray, name: str) -> pa.Array:
    """An event-time column as int64 epoch ms (checked: aware, in range, no nulls)."""
    data_type = column.type
    if column.null_count:
        raise ValidationError(f"the event-time column has {column.null_count} null values", location=name)
    if pa.types.is_timestamp(data_type):
        if data_type.tz is None:
            raise TimeSemanticsError(
                f"the event-time column is a naive timestamp ({data_type})",
                location=name,
                hint="store event times with a zone (timestamp[ms, tz=UTC]) or as int64 epoch ms",
            )
        values = epoch_column(column).to_numpy()
    elif pa.types.is_integer(data_type):
        values = column.cast(pa.int64()).to_numpy()
    else:
        raise ValidationError(
            f"the event-time column is {data_type}; expected a timestamp with a time zone or int64 epoch ms",
            location=name,
        )
    if len(values):
        to_millis(int(values.min()), what=f"event time in column {name!r}")
        to_millis(int(values.max()), what=f"event time in column {name!r}")
    return pa.array(values, pa.int64())
