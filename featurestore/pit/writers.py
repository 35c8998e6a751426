"""Export outputs: Parquet, Arrow IPC, Avro (fastavro) or an Iceberg table, all or nothing.

A sink receives record batches in sample order. Files are written to a hidden temporary file next
to the target and renamed over it on :meth:`Sink.commit`; an Iceberg export is written to a
temporary table and renamed in the catalog. :meth:`Sink.abort` removes the temporary output, so a
failed export leaves nothing half-written under the target name.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.types import avro_type, from_arrow

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from featurestore.offline.log import OfflineLog

Format = Literal["parquet", "arrow", "avro", "iceberg"]
FORMATS: tuple[Format, ...] = ("parquet", "arrow", "avro", "iceberg")


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class MemorySink:
    """Collects the result as one Arrow table (for :func:`get_historical_features`)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.batches: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        self.batches.clear()

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)


class _FileSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self._close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)


class ParquetSink(_FileSink):
    """Buffers batches into row groups of about ``row_group_rows`` rows."""

    def __init__(self, path: Path, schema: pa.Schema, *, row_group_rows: int = 1_000_000) -> None:
        super().__init__(path)
        self._schema = schema
        self._writer = pq.ParquetWriter(self.tmp, schema)
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self._row_group_rows = row_group_rows

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self._row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, self._schema), self._row_group_rows)
        self._pending, self._rows = [], 0

    def _close(self) -> None:
        if self._writer.is_open:
            self._flush()
            self._writer.close()


class ArrowSink(_FileSink):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        super().__init__(path)
        self._file = pa.OSFile(str(self.tmp), "wb")
        self._writer = pa.ipc.new_file(self._file, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _close(self) -> None:
        if not self._file.closed:
            self._writer.close()
            self._file.close()


def avro_schema(schema: pa.Schema, name: str) -> dict[str, Any]:
    """An Avro record schema for an export; every field is nullable."""
    fields = []
    for field in schema:
        fields.append({"name": field.name, "type": ["null", _avro_field_type(field)], "default": None})
    return {"type": "record", "name": name, "fields": fields}


def _avro_field_type(field: pa.Field) -> Any:
    data_type = field.type
    if pa.types.is_timestamp(data_type):
        logical = "timestamp-millis" if data_type.unit in ("s", "ms") else "timestamp-micros"
        return {"type": "long", "logicalType": logical}
    if pa.types.is_date(data_type):
        return {"type": "int", "logicalType": "date"}
    value_type = from_arrow(data_type)
    if value_type is None:
        raise ValidationError(f"column type {data_type} has no Avro mapping", location=field.name)
    return avro_type(value_type)


class AvroSink(_FileSink):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        from fastavro import parse_schema
        from fastavro.write import Writer

        parsed = parse_schema(avro_schema(schema, "sample"))  # before any file exists: may raise
        super().__init__(path)
        self._file: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 (closed in _close)
        self._writer = Writer(self._file, parsed, codec="deflate")

    def write(self, batch: pa.RecordBatch) -> None:
        for record in batch.to_pylist():
            self._writer.write(record)

    def _close(self) -> None:
        if not self._file.closed:
            self._writer.flush()
            self._file.close()


def _iceberg_compatible(schema: pa.Schema) -> pa.Schema:
    """Iceberg stores timestamps in microseconds."""
    fields = []
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.unit in ("s", "ms"):
            field = field.with_type(pa.timestamp("us", tz=field.type.tz))
        fields.append(field)
    return pa.schema(fields)


class IcebergSink:
    """Writes to a temporary table, renamed to ``identifier`` on commit (which must not exist)."""

    def __init__(self, log: OfflineLog, identifier: str, schema: pa.Schema, *, flush_rows: int = 1_000_000) -> None:
        catalog = log.catalog
        if "." not in identifier:
            identifier = f"{log.config.namespace}.{identifier}"
        if catalog.table_exists(identifier):
            raise ValidationError("the output Iceberg table already exists", location=identifier)
        namespace, _, name = identifier.rpartition(".")
        catalog.create_namespace_if_not_exists(namespace)
        self.identifier = identifier
        self.schema = _iceberg_compatible(schema)
        self.tmp = f"{namespace}.tmp_{name}_{uuid.uuid4().hex[:12]}"
        self._catalog = catalog
        self._table: Table = catalog.create_table(self.tmp, schema=self.schema)
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self._flush_rows = flush_rows

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self._flush_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            data = pa.Table.from_batches(self._pending).cast(self.schema)
            self._table.append(data)
        self._pending, self._rows = [], 0

    def commit(self) -> None:
        self._flush()
        self._catalog.rename_table(self.tmp, self.identifier)

    def abort(self) -> None:
        self._pending = []
        self._catalog.drop_table(self.tmp)


def open_sink(fmt: str, target: str | Path, schema: pa.Schema, *, log: OfflineLog | None = None) -> Sink:
    if fmt == "parquet":
        return ParquetSink(Path(target), schema)
    if fmt == "arrow":
        return ArrowSink(Path(target), schema)
    if fmt == "avro":
        return AvroSink(Path(target), schema)
    if fmt == "iceberg":
        if log is None:
            raise ValidationError("an Iceberg export needs the offline log's catalog (log=...)", location=str(target))
        return IcebergSink(log, str(target), schema)
    raise ValidationError(f"unknown output format {fmt!r}; one of {', '.join(FORMATS)}", location="format")
