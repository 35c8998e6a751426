"""Feature tables as the point-in-time engine reads them, and feature references.

A :class:`FeatureSource` is a :class:`TableSchema` plus where its versions are: an Arrow table or
dataset, Parquet files, or the offline log (an :class:`OfflineTable`, at a snapshot: the current
one when none is given, recorded in the manifest). Versions are in the log's layout: keys,
``version_ms``, ``seq``, the feature columns and, optionally, ``_written``
(:data:`featurestore.schema.WRITTEN`): which features each row writes. Without it (or where it
is null) a row writes every feature, its nulls being explicit null values. ``join_keys`` maps a table key to the sample
column holding it when the names differ (``{"user_id": "uid"}``).

Feature references are ``table:feature`` or ``table:*``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.pit.samples import parquet_files
from featurestore.schema import SEQ, VERSION_MS, WRITTEN, TableSchema
from featurestore.types import ValueType, from_arrow

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as pads

    from featurestore.offline.log import OfflineTable

VersionsInput = Union[pa.Table, "pads.Dataset", str, Path, Sequence[str | Path], "OfflineTable"]


@dataclass(frozen=True)
class FeatureSource:
    schema: TableSchema
    versions: VersionsInput
    snapshot_id: int | None = None  # offline log only: read this snapshot (default: current)
    join_keys: Mapping[str, str] = field(default_factory=dict)  # table key -> sample column

    def sample_key(self, key: str) -> str:
        return self.join_keys.get(key, key)


@dataclass(frozen=True)
class FeatureRef:
    table: str
    feature: str

    def __str__(self) -> str:
        return f"{self.table}:{self.feature}"


def parse_refs(refs: Sequence[str], sources: Sequence[FeatureSource]) -> list[FeatureRef]:
    """Check ``table:feature`` references against the sources; ``table:*`` expands to every feature."""
    by_name: dict[str, FeatureSource] = {}
    for source in sources:
        if source.schema.name in by_name:
            raise ValidationError(f"feature table {source.schema.name!r} is given twice")
        by_name[source.schema.name] = source
    out: list[FeatureRef] = []
    for ref in refs:
        table, sep, feature = ref.partition(":")
        if not sep or not table or not feature:
            raise ValidationError("a feature reference is written table:feature", location=ref)
        if table not in by_name:
            raise ValidationError(
                f"unknown feature table {table!r}; known: {sorted(by_name)}", location=ref
            )
        schema = by_name[table].schema
        if feature == "*":
            out.extend(FeatureRef(table, f) for f in schema.feature_names)
        elif feature not in schema.feature_names:
            raise ValidationError(
                f"feature table {table!r} has no feature {feature!r}; it has {list(schema.feature_names)}", location=ref
            )
        else:
            out.append(FeatureRef(table, feature))
    if not out:
        raise ValidationError("no features requested")
    if len(set(out)) != len(out):
        dup = next(str(r) for r in out if out.count(r) > 1)
        raise ValidationError("feature requested twice", location=dup)
    return out


def check_join_keys(source: FeatureSource, sample_schema: pa.Schema) -> None:
    """Each table key must be a sample column of a matching type."""
    for key in source.schema.keys:
        column = source.sample_key(key.name)
        where = f"{column} (key {key.name!r} of {source.schema.name})"
        if column not in sample_schema.names:
            raise ValidationError(
                f"the samples have no key column {column!r}", location=where,
                hint=f"add the column or map it: join_keys={{'{key.name}': '<sample column>'}}",
            )
        found = from_arrow(sample_schema.field(column).type)
        if found is not key.dtype:
            raise ValidationError(
                f"key column is {sample_schema.field(column).type}, the table key is {key.dtype.value}", location=where
            )


@dataclass(frozen=True)
class BoundSource:
    """A source registered on a DuckDB connection as view ``view``; ``record`` goes to the manifest."""

    source: FeatureSource
    view: str
    record: dict[str, Any]
    files: tuple[str, ...] = ()  # local Parquet files holding exactly the view's rows, when known
    has_written: bool = True  # False: the versions have no ``_written`` column (every row writes all)


def bind(con: duckdb.DuckDBPyConnection, source: FeatureSource, view: str, features: Sequence[str]) -> BoundSource:
    """Register the versions of ``source`` (keys, version_ms, seq, ``features``, ``_written``) as a
    view on ``con``; ``_written`` is NULL (every feature written) when the versions lack it."""
    schema = source.schema
    columns = [*schema.key_names, VERSION_MS, SEQ, *features]
    projection = ", ".join(f'"{c}"' for c in columns)
    no_written = f'NULL::VARCHAR AS "{WRITTEN}"'

    versions = source.versions
    record: dict[str, Any]
    # pyarrow.dataset pulls in pandas (seconds): only look at it when the caller already has
    dataset_module = sys.modules.get("pyarrow.dataset")
    if isinstance(versions, pa.Table) or (dataset_module is not None and isinstance(versions, dataset_module.Dataset)):
        _check_columns(schema, versions.schema, columns)
        has_written = WRITTEN in versions.schema.names
        written = f'"{WRITTEN}"' if has_written else no_written
        con.register(f"{view}_arrow", versions)
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT {projection}, {written} FROM "{view}_arrow"')
        record = {"kind": "arrow", "rows": versions.num_rows if isinstance(versions, pa.Table) else None}
        return BoundSource(source, view, record, has_written=has_written)
    elif isinstance(versions, str | Path | list | tuple):
        files = parquet_files(versions)
        file_schemas = [pq.read_schema(path) for path in files]
        for found in file_schemas:
            _check_columns(schema, found, columns)
        union = any(not f.equals(file_schemas[0]) for f in file_schemas)
        has_written = any(WRITTEN in found.names for found in file_schemas)
        written = f'"{WRITTEN}"' if has_written else no_written
        con.read_parquet(files, union_by_name=union).project(f"{projection}, {written}").create_view(view, replace=True)
        paths = [str(Path(f).resolve()) for f in files]
        return BoundSource(source, view, {"kind": "parquet", "paths": paths}, tuple(paths), has_written)
    else:
        from featurestore.offline.log import OfflineTable

        if not isinstance(versions, OfflineTable):
            raise ValidationError(
                f"versions of {schema.name} must be an Arrow table or dataset, Parquet files or an OfflineTable, "
                f"not {type(versions).__name__}"
            )
        snapshot_id = source.snapshot_id if source.snapshot_id is not None else versions.current_snapshot_id()
        relation = None if snapshot_id is None else versions.relation(con, features=features, snapshot_id=snapshot_id)
        if relation is None:  # an empty log table
            empty = schema.arrow_schema().append(pa.field(WRITTEN, pa.string())).empty_table()
            relation = con.from_arrow(empty.select([*columns, WRITTEN]))
        relation.create_view(view, replace=True)
        config = versions.log.config
        record = {
            "kind": "iceberg", "identifier": versions.identifier, "snapshot_id": snapshot_id,
            "catalog_uri": config.catalog_uri, "warehouse": config.warehouse, "namespace": config.namespace,
        }
    return BoundSource(source, view, record)


def _check_columns(schema: TableSchema, found: pa.Schema, columns: Sequence[str]) -> None:
    expected = schema.arrow_schema()
    for name in columns:
        where = f"versions of {schema.name}"
        if name not in found.names:
            raise ValidationError(f"column {name!r} is missing", location=where)
        want = from_arrow(expected.field(name).type)
        got = from_arrow(found.field(name).type)
        if want is not got:
            raise ValidationError(f"column {name!r} is {found.field(name).type}, expected {want}", location=where)
    if WRITTEN in found.names and from_arrow(found.field(WRITTEN).type) is not ValueType.STRING:
        raise ValidationError(
            f"column {WRITTEN!r} is {found.field(WRITTEN).type}, expected string (comma-separated feature names)",
            location=f"versions of {schema.name}",
        )
