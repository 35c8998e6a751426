"""Events a user brings in a file: Parquet, Avro, CSV or JSON lines, read into an Arrow table.

The format is the file's extension (``.parquet``/``.pq``, ``.avro``, ``.csv``, ``.jsonl``/``.json``)
unless given. Files are read whole, from a local path or an ``hdfs://`` URI; an unreadable one is a
``ValidationError`` naming the file and, where the reader says, the row.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.fs import open_fs

FORMATS = ("parquet", "avro", "csv", "jsonl")
_BY_EXTENSION = {".parquet": "parquet", ".pq": "parquet", ".avro": "avro", ".csv": "csv", ".jsonl": "jsonl",
                 ".json": "jsonl", ".ndjson": "jsonl"}


def file_format(path: str, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format the file's extension names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValidationError(f"unknown event file format {fmt!r}; one of: {', '.join(FORMATS)}")
        return fmt
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in _BY_EXTENSION:
        raise ValidationError(
            f"cannot tell the format of {path} from its extension {suffix or '(none)'}",
            hint=f"name it .parquet, .avro, .csv or .jsonl, or give the format ({', '.join(FORMATS)})",
        )
    return _BY_EXTENSION[suffix]


def read_events(path: str, fmt: str | None = None, *, csv_types: dict[str, pa.DataType] | None = None) -> pa.Table:
    """The rows of one event file. ``csv_types`` fixes CSV columns' types (others are inferred),
    so an id column of digits stays a string when the schema says string. JSON values keep their
    JSON types (a time in a string stays a string, zone and all)."""
    fmt = file_format(path, fmt)
    data = open_fs(path).read_bytes(path)
    try:
        if fmt == "parquet":
            return pq.read_table(io.BytesIO(data))
        if fmt == "csv":
            return pa_csv.read_csv(io.BytesIO(data), convert_options=pa_csv.ConvertOptions(column_types=csv_types))
        if fmt == "jsonl":
            return pa.Table.from_pylist(_json_lines(data))
        return pa.Table.from_pylist(list(fastavro.reader(io.BytesIO(data))))
    except (pa.ArrowException, ValueError, TypeError, EOFError, OSError) as exc:
        raise ValidationError(f"cannot read {path} as {fmt}: {exc}") from None


def _json_lines(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {number}: not a JSON object")
        rows.append(row)
    return rows
