"""The offline log: one Iceberg table per feature table, holding every version.

Layout of a log table (derived from :meth:`TableSchema.arrow_schema`, so type conversions stay in
:mod:`featurestore.types`):

* the key columns, ``version_ms`` (epoch ms UTC) and ``seq`` (source order), all required;
* one optional column per feature: the value a row writes, null being an explicit null value;
* ``_written`` (:data:`featurestore.schema.WRITTEN`): which features the row writes, as the
  sorted comma-separated names (:func:`featurestore.schema.write_set`). A versions batch writes
  exactly the feature columns it has (:mod:`featurestore.schema`), and the log has every feature
  column, so absence is recorded here, filled at append from the batch's columns. A feature not
  in a row's ``_written`` was not written by that version: its cell is null and means nothing.
  One value per write-set (in practice: per window group of the table), so Parquet stores the
  column dictionary-encoded, a few bits per row. Rows appended before the column existed read
  ``_written`` null, which means "every feature written" (their nulls become explicit nulls);
  there is no limit on the number of features;
* ``_version_time``: ``version_ms`` as a ``timestamptz`` (microseconds), the partition source.
  The table is partitioned by ``day(_version_time)`` (partition field ``version_day``): pyiceberg
  0.8.1 writes ``day`` transforms, so no extra date column is needed. Scans bounded by version
  time filter on both ``version_ms`` and ``_version_time``, so whole days are pruned by partition
  and the rest by the files' column statistics.

Idempotency. The ingestion job may re-deliver a batch after a restart. :meth:`OfflineTable.append`
takes an optional ``batch_id``, recorded in the snapshot summary (``featurestore.batch-id``); an
append whose id is already in the table's snapshot history is skipped. The check and the commit
are safe under concurrency because the SQL catalog commits with compare-and-swap: a conflicting
commit fails, the table is refreshed and the id checked again (:meth:`OfflineTable.commit`, which
:mod:`featurestore.offline.staging` also uses: a commit of many staged batches lists their ids in
``featurestore.batch-ids``, read by :meth:`OfflineTable.batch_ids` too). This costs nothing on read. As a
second line for writers that cannot give batch ids, :meth:`OfflineTable.scan` can drop exact
duplicates on read (``dedupe=True``: one row per keys, ``version_ms``, ``seq`` and write set
``_written``: versions of different window groups share a time and seq but write different
features, so they are not duplicates). The point-in-time
engine does not need it: a duplicate version carries the same (time, seq, values), so it can never
change which value a sample sees.

HDFS. The catalog's FileIO is :class:`featurestore.offline.hdfs.HdfsNativeFileIO`: ``hdfs://``
warehouses through hdfs-native, no JVM (pyarrow's HadoopFileSystem would load libjvm/libhdfs).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import NotFoundError, StoreError, ValidationError
from featurestore.schema import SEQ, VERSION_MS, WRITTEN, TableSchema, batch_features, write_set
from featurestore.time_semantics import from_millis
from featurestore.types import from_arrow

if TYPE_CHECKING:
    import duckdb
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

    from featurestore.config import OfflineLogConfig

VERSION_TIME = "_version_time"
PARTITION_FIELD = "version_day"
BATCH_ID_PROPERTY = "featurestore.batch-id"
# A commit that carries several batches (featurestore.offline.staging) lists their ids as JSON.
BATCH_IDS_PROPERTY = "featurestore.batch-ids"
PY_IO_IMPL = "py-io-impl"  # pyiceberg's catalog property naming the FileIO class
# Concurrent writers (one per window group and Python worker) race for the catalog's pointer;
# a loser reloads and retries with jittered, growing pauses until this deadline.
_COMMIT_DEADLINE_S = 120.0


@dataclass(frozen=True)
class AppendResult:
    """What an append did: the snapshot it created (or the current one when skipped)."""

    snapshot_id: int | None
    rows: int
    skipped: bool = False  # True when the batch id was already in the log


def _warehouse_uri(warehouse: str) -> str:
    if "://" in warehouse:
        return warehouse
    path = Path(warehouse).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def _local_path(uri: str) -> str | None:
    """The local file path of a data file URI, or ``None`` when it is remote (hdfs://, s3://)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme == "":
        return uri
    return None


class OfflineLog:
    """The Iceberg catalog of the offline log: one table per feature table in one namespace."""

    def __init__(self, config: OfflineLogConfig) -> None:
        self.config = config
        self._catalog: SqlCatalog | None = None

    @property
    def catalog(self) -> SqlCatalog:
        if self._catalog is None:
            from pyiceberg.catalog.sql import SqlCatalog

            uri = self.config.catalog_uri
            if uri.startswith("sqlite:///"):
                Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            from featurestore.offline.hdfs import FILE_IO_IMPL

            self._catalog = SqlCatalog(
                "featurestore",
                uri=uri,
                warehouse=_warehouse_uri(self.config.warehouse),
                **{PY_IO_IMPL: FILE_IO_IMPL},  # hdfs:// through hdfs-native, not libhdfs (no JVM)
            )
            self._catalog.create_namespace_if_not_exists(self.config.namespace)
        return self._catalog

    def identifier(self, name: str) -> str:
        return f"{self.config.namespace}.{name}"

    def ensure_table(self, schema: TableSchema) -> OfflineTable:
        """Create the log table of ``schema``, or open it and add feature columns it lacks."""
        from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
        from pyiceberg.transforms import DayTransform

        wanted = _log_arrow_schema(schema)
        ident = self.identifier(schema.name)
        try:
            table = self.catalog.load_table(ident)
        except NoSuchTableError:
            try:
                with self.catalog.create_table_transaction(ident, schema=wanted) as tx, tx.update_spec() as spec:
                    spec.add_field(VERSION_TIME, DayTransform(), PARTITION_FIELD)
            except TableAlreadyExistsError:  # another process created it first
                pass
            table = self.catalog.load_table(ident)
        existing = table.schema().as_arrow()
        missing = [f for f in wanted if f.name not in existing.names]
        for field in wanted:
            if field.name in existing.names and from_arrow(existing.field(field.name).type) != from_arrow(field.type):
                raise ValidationError(
                    f"column {field.name!r} is {existing.field(field.name).type} in the offline log, "
                    f"{field.type} in the definition",
                    location=f"offline log table {ident}",
                    hint="a changed type needs a new feature name (or a new table)",
                )
        if missing:
            if any(f.name in schema.key_names for f in missing):
                raise ValidationError(
                    f"the key columns changed; the log has {existing.names}", location=f"offline log table {ident}"
                )
            with table.update_schema() as update:
                update.union_by_name(pa.schema(missing))
            table = self.catalog.load_table(ident)
        return OfflineTable(self, schema, table)

    def table(self, schema: TableSchema) -> OfflineTable:
        """Open the existing log table of ``schema`` (raises :class:`NotFoundError` if absent)."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return OfflineTable(self, schema, self.catalog.load_table(self.identifier(schema.name)))
        except NoSuchTableError:
            raise NotFoundError(
                f"the offline log has no table {self.identifier(schema.name)!r}",
                hint="it is created by ensure_table (featurestore apply)",
            ) from None


def append_retrying(load: Callable[[], Table], data: pa.Table, *, what: str,
                    deadline_s: float = _COMMIT_DEADLINE_S) -> None:
    """Append ``data`` to the table ``load()`` returns, loading it again and retrying (with a
    jittered backoff) while concurrent writers win the catalog's compare-and-swap, until
    ``deadline_s``; then :class:`StoreError` naming ``what``. For tables many workers append to
    (dead letters, samples) without the version log's batch ids."""
    from pyiceberg.exceptions import CommitFailedException

    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            load().append(data)
            return
        except CommitFailedException:
            attempt += 1
            if time.monotonic() >= deadline:
                raise StoreError(f"could not commit {what} ({attempt} attempts lost to concurrent writers)") from None
            time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.02 * 2**attempt))


def _log_arrow_schema(schema: TableSchema) -> pa.Schema:
    base = schema.arrow_schema()
    at = len(schema.keys) + 2
    base = base.insert(at, pa.field(VERSION_TIME, pa.timestamp("us", tz="UTC"), nullable=False))
    return base.append(pa.field(WRITTEN, pa.string()))


def _read_arrow_schema(schema: TableSchema) -> pa.Schema:
    """What scans return: the batch layout with every feature, then ``_written``."""
    return schema.arrow_schema().append(pa.field(WRITTEN, pa.string()))


class OfflineTable:
    """The log of one feature table."""

    def __init__(self, log: OfflineLog, schema: TableSchema, table: Table) -> None:
        self.log = log
        self.schema = schema
        self._table = table

    @property
    def identifier(self) -> str:
        return self.log.identifier(self.schema.name)

    def refresh(self) -> None:
        self._table = self.log.catalog.load_table(self.identifier)

    # -- writes ---------------------------------------------------------------------------------

    def append(self, versions: pa.Table, *, batch_id: str | None = None) -> AppendResult:
        """Append a batch of versions; with ``batch_id``, a batch already appended is skipped."""
        data = self.conform(versions)
        properties = {BATCH_ID_PROPERTY: batch_id} if batch_id is not None else {}
        skipped = False

        def prepare() -> tuple[pa.Table, dict[str, str]] | None:
            nonlocal skipped
            skipped = batch_id is not None and batch_id in self.batch_ids()
            if skipped or (data.num_rows == 0 and batch_id is None):
                return None
            return data, properties

        rows = self.commit(prepare)
        return AppendResult(self.current_snapshot_id(), rows or 0, skipped=skipped)

    def commit(self, prepare: Callable[[], tuple[pa.Table, dict[str, str]] | None]) -> int | None:
        """Append what ``prepare()`` returns (rows in the log layout, snapshot properties) as one
        commit, or nothing when it returns ``None``; the number of rows committed, or ``None``.

        ``prepare`` runs against the table as last loaded, and again after each refresh when a
        concurrent writer won the race for the catalog's pointer (compare-and-swap): a check it
        makes against the snapshot history (a batch id, a staged file) holds at the commit.
        """
        from pyiceberg.exceptions import CommitFailedException

        deadline = time.monotonic() + _COMMIT_DEADLINE_S
        attempt = 0
        while True:
            prepared = prepare()
            if prepared is None:
                return None
            data, properties = prepared
            try:
                self._table.append(data, snapshot_properties=properties)
            except CommitFailedException:
                attempt += 1
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"could not commit to {self.identifier} in {_COMMIT_DEADLINE_S:.0f} s "
                        f"({attempt} attempts lost to concurrent writers)"
                    ) from None
                time.sleep(random.uniform(0.5, 1.0) * min(1.0, 0.02 * 2**attempt))
                self.refresh()
                continue
            return int(data.num_rows)

    def conform(self, versions: pa.Table) -> pa.Table:
        """Check and cast a batch to the log schema; features absent from the batch are null and
        left out of ``_written`` (a ``_written`` column in ``versions``, e.g. from a scan, is kept)."""
        where = f"versions of {self.schema.name}"
        target = _log_arrow_schema(self.schema)
        known = set(target.names)
        unknown = [c for c in versions.column_names if c not in known]
        if unknown:
            raise ValidationError(f"unknown columns {unknown}", location=where)
        columns: list[pa.ChunkedArray | pa.Array] = []
        for field in target:
            if field.name == VERSION_TIME:
                columns.append(pc.cast(pc.multiply(columns[len(self.schema.keys)], 1000), field.type))
                continue
            if field.name == WRITTEN and WRITTEN not in versions.column_names:
                written = write_set(batch_features(self.schema, versions.column_names))
                columns.append(pa.repeat(pa.scalar(written, field.type), versions.num_rows))
                continue
            if field.name not in versions.column_names:
                if not field.nullable:
                    raise ValidationError(f"column {field.name!r} is missing", location=where)
                columns.append(pa.nulls(versions.num_rows, field.type))
                continue
            column = versions.column(field.name)
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(
                    f"column {field.name!r} is {column.type}, expected {field.type}: {exc}", location=where
                ) from None
            if not field.nullable and column.null_count:
                raise ValidationError(f"column {field.name!r} has {column.null_count} nulls", location=where)
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=target)

    # -- snapshots ------------------------------------------------------------------------------

    def current_snapshot_id(self) -> int | None:
        snapshot = self._table.current_snapshot()
        return None if snapshot is None else snapshot.snapshot_id

    def batch_ids(self) -> set[str]:
        """Batch ids recorded in the snapshots of the table."""
        ids: set[str] = set()
        for snapshot in self._table.metadata.snapshots:
            if snapshot.summary is not None:
                value = snapshot.summary.get(BATCH_ID_PROPERTY)
                if value is not None:
                    ids.add(str(value))
                listed = snapshot.summary.get(BATCH_IDS_PROPERTY)
                if listed is not None:
                    ids.update(str(v) for v in json.loads(listed))
        return ids

    def snapshots(self) -> list[Snapshot]:
        """The snapshots of the table as last loaded (:meth:`refresh` reloads), oldest first."""
        return list(self._table.metadata.snapshots)

    def _check_snapshot(self, snapshot_id: int | None) -> None:
        if snapshot_id is not None and self._table.snapshot_by_id(snapshot_id) is None:
            raise NotFoundError(f"{self.identifier} has no snapshot {snapshot_id}", hint="it may have been expired")

    # -- reads ----------------------------------------------------------------------------------

    def _columns(self, features: Sequence[str] | None) -> tuple[str, ...]:
        if features is None:
            return (*self.schema.key_names, VERSION_MS, SEQ, *self.schema.feature_names, WRITTEN)
        for name in features:
            self.schema.feature(name)  # raises ValidationError for an unknown feature
        return (*self.schema.key_names, VERSION_MS, SEQ, *features, WRITTEN)

    def _has_written(self) -> bool:
        """False for a table created before ``_written`` and not since opened by ``ensure_table``."""
        return WRITTEN in self._table.schema().column_names

    def _filter(self, start_ms: int | None, end_ms: int | None) -> BooleanExpression:
        from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan

        expr: BooleanExpression = AlwaysTrue()  # type: ignore[no-untyped-call]
        if start_ms is not None:
            expr = And(expr, GreaterThanOrEqual(VERSION_MS, start_ms))
            expr = And(expr, GreaterThanOrEqual(VERSION_TIME, from_millis(start_ms).isoformat()))
        if end_ms is not None:
            expr = And(expr, LessThan(VERSION_MS, end_ms))
            expr = And(expr, LessThan(VERSION_TIME, from_millis(end_ms).isoformat()))
        return expr

    def _scan(
        self, start_ms: int | None, end_ms: int | None, features: Sequence[str] | None, snapshot_id: int | None
    ) -> Any:
        self._check_snapshot(snapshot_id)
        columns = self._columns(features)
        return self._table.scan(
            row_filter=self._filter(start_ms, end_ms),
            selected_fields=columns if self._has_written() else columns[:-1],
            snapshot_id=snapshot_id,
        )

    def _empty(self, features: Sequence[str] | None) -> pa.Table:
        return _read_arrow_schema(self.schema).empty_table().select(list(self._columns(features)))

    def scan(
        self,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        features: Sequence[str] | None = None,
        snapshot_id: int | None = None,
        dedupe: bool = False,
    ) -> pa.Table:
        """Versions with ``start_ms <= version_ms < end_ms`` as Arrow, at a snapshot (default: current):
        keys, ``version_ms``, ``seq``, the features, then ``_written`` (null: every feature).

        ``dedupe`` keeps one row per (keys, ``version_ms``, ``seq``, ``_written``) and sorts by them.
        """
        if snapshot_id is None and self.current_snapshot_id() is None:
            return self._empty(features)
        data: pa.Table = self._scan(start_ms, end_ms, features, snapshot_id).to_arrow()
        target = _read_arrow_schema(self.schema)
        if WRITTEN not in data.column_names:
            data = data.append_column(WRITTEN, pa.nulls(data.num_rows, pa.string()))
        data = data.select(list(self._columns(features)))
        data = data.cast(pa.schema([target.field(n) for n in data.column_names]))
        if dedupe:
            data = _dedupe(data, (*self.schema.key_names, VERSION_MS, SEQ, WRITTEN))
        return data

    def data_files(
        self, *, start_ms: int | None = None, end_ms: int | None = None, snapshot_id: int | None = None
    ) -> list[str]:
        """URIs of the data files a bounded scan reads (the log is append-only: no delete files)."""
        if snapshot_id is None and self.current_snapshot_id() is None:
            return []
        tasks = self._scan(start_ms, end_ms, None, snapshot_id).plan_files()
        if any(task.delete_files for task in tasks):
            raise StoreError(f"{self.identifier} has delete files; the offline log is append-only")
        return [task.file.file_path for task in tasks]

    def relation(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        features: Sequence[str] | None = None,
        snapshot_id: int | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """A bounded scan as a DuckDB relation on ``con`` (the columns of :meth:`scan`, ``_written`` last).

        DuckDB reads the snapshot's Parquet data files itself (streaming, with projection and
        filter pushdown): local files directly, ``hdfs://`` ones through hdfs-native
        (:func:`featurestore.offline.hdfs.register_duckdb`). Files it cannot reach that way (another
        scheme, or a second name node on one connection) go through an Arrow scan instead.
        """
        files = self.data_files(start_ms=start_ms, end_ms=end_ms, snapshot_id=snapshot_id)
        local = [_local_path(f) for f in files]
        columns = ", ".join(f'"{c}"' for c in self._columns(features))
        paths: list[str]
        if files and all(p is not None for p in local):
            paths = [p for p in local if p is not None]
        elif files and not any(p is not None for p in local) and _register_duckdb(con, files):
            paths = files
        else:
            data = self.scan(start_ms=start_ms, end_ms=end_ms, features=features, snapshot_id=snapshot_id)
            return con.from_arrow(data)
        conditions = ["true"]
        if start_ms is not None:
            conditions.append(f"{VERSION_MS} >= {int(start_ms)}")
        if end_ms is not None:
            conditions.append(f"{VERSION_MS} < {int(end_ms)}")
        source = con.read_parquet(paths, union_by_name=True)
        if WRITTEN not in source.columns:  # every file predates the column: all features written
            columns = columns.replace(f'"{WRITTEN}"', f'NULL::VARCHAR AS "{WRITTEN}"')
        return source.filter(" AND ".join(conditions)).project(columns)


def _register_duckdb(con: duckdb.DuckDBPyConnection, files: list[str]) -> bool:
    from featurestore.offline.hdfs import register_duckdb

    return register_duckdb(con, files)


def _dedupe(data: pa.Table, by: Sequence[str]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        con.register("versions", data)
        keys = ", ".join(f'"{c}"' for c in by)
        result = con.sql(
            f"SELECT * FROM versions QUALIFY row_number() OVER (PARTITION BY {keys}) = 1 ORDER BY {keys}"
        ).to_arrow_table()
    finally:
        con.close()
    return result.cast(data.schema)
