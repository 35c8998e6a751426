"""Between Arrow and cells: what every storage backend does the same way.

* A batch of versions (keys, ``version_ms``, ``seq`` and any subset of the features, see
  :mod:`featurestore.schema`) is checked once and turned into cells: ``(encoded key, feature,
  version_ms, seq, value bytes or None)``. Every row writes every feature column the batch has;
  a null there is an explicit null value (a cell whose value is ``None``), and a feature column
  the batch lacks yields no cell.
* Entity keys given by a caller (tuples, scalars for one key column, or an Arrow table with the
  key columns) are checked against the key types of the schema and encoded with
  :func:`featurestore.keys.encode_key`.
* Batches are encoded column-wise in Arrow (:func:`featurestore.types.encode_array`,
  :func:`featurestore.keys.encode_key_columns`, :func:`pack_values`): the same bytes as the
  per-value functions, without a Python call per cell; backends that send Arrow on (HBase) take
  the arrays, the others the lists of :class:`Cells`.
* Read results are Arrow tables in one layout, shared by the versioned store and the online
  cache: the key columns in request order (one row per requested key, duplicates kept), then per
  requested feature ``<feature>`` (its value type, null when nothing is visible or the visible
  version is an explicit null) and ``<feature>__ts`` (int64 version time in epoch ms of the
  visible version, null only when nothing is visible).
* Schemas are stored by backends as JSON (:func:`schema_to_json`), so a store opened by another
  process knows its tables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import StoreError, ValidationError
from featurestore.keys import SEPARATOR, encode_key, encode_key_columns
from featurestore.schema import SEQ, VERSION_MS, Field, TableSchema
from featurestore.time_semantics import to_millis
from featurestore.types import ValueType, arrow_type, decode_value, encode_array

TS_SUFFIX = "__ts"
STATUS_SUFFIX = "__status"
KeysInput: TypeAlias = Sequence[Any] | pa.Table
# A found cell: (version_ms, value bytes, None for an explicit null); None when nothing is visible.
Cell: TypeAlias = tuple[int, bytes | None] | None


def ts_column(feature: str) -> str:
    return feature + TS_SUFFIX


def status_column(feature: str) -> str:
    return feature + STATUS_SUFFIX


# How the versioned stores lay out a stored value: a presence byte, then the encoded value
# (``types.encode_value``). Explicit nulls are cells too, and empty strings and empty bytes are
# values, so no value bytes could serve as a null marker: the first byte says which it is.
VALUE_PRESENT = b"\x01"
VALUE_NULL = b"\x00"
# Recorded with each table definition of a versioned store; tables written before explicit nulls
# (no presence byte, no "cell_format") are refused rather than misread.
CELL_FORMAT = 2


def pack_value(value: bytes | None) -> bytes:
    """A cell value as a versioned store keeps it: ``None`` (an explicit null) included."""
    return VALUE_NULL if value is None else VALUE_PRESENT + value


def pack_values(encoded: pa.Array) -> pa.Array:
    """:func:`pack_value` of every value of a binary array (``types.encode_array``), in Arrow."""
    present = pc.binary_join_element_wise(pa.scalar(VALUE_PRESENT, pa.binary()), encoded, pa.scalar(b"", pa.binary()))
    return present.fill_null(pa.scalar(VALUE_NULL, pa.binary())) if encoded.null_count else present


def unpack_value(data: bytes) -> bytes | None:
    """The inverse of :func:`pack_value`."""
    return None if data[:1] == VALUE_NULL else data[1:]


def schema_to_json(schema: TableSchema, *, cell_format: int | None = None) -> str:
    raw: dict[str, Any] = {
        "name": schema.name,
        "keys": [[k.name, k.dtype.value] for k in schema.keys],
        "features": [[f.name, f.dtype.value] for f in schema.features],
        "ttl_ms": schema.ttl_ms,
        "max_versions": schema.max_versions,
    }
    if cell_format is not None:
        raw["cell_format"] = cell_format
    return json.dumps(raw, sort_keys=True)


def schema_from_json(text: str | bytes, *, cell_format: int | None = None, where: str = "") -> TableSchema:
    """The stored definition; with ``cell_format``, a table stored in another format is an error."""
    raw = json.loads(text)
    if cell_format is not None and raw.get("cell_format", 1) != cell_format:
        raise StoreError(
            f"feature table {raw['name']!r} in {where or 'this store'} was written in cell format "
            f"{raw.get('cell_format', 1)}; this version reads format {cell_format} (explicit null values)",
            hint="drop the table (drop_table) and rewrite its versions (backfill, or replay the offline log)",
        )
    return TableSchema(
        name=raw["name"],
        keys=tuple(Field(n, ValueType(t)) for n, t in raw["keys"]),
        features=tuple(Field(n, ValueType(t)) for n, t in raw["features"]),
        ttl_ms=raw["ttl_ms"],
        max_versions=raw["max_versions"],
    )


def check_compatible(stored: TableSchema, new: TableSchema) -> None:
    """A table may gain features and change TTL/max_versions; its keys and feature types are fixed."""
    if stored.keys != new.keys:
        raise StoreError(
            f"feature table {new.name!r} exists with keys {stored.key_names}, not {new.key_names}",
            hint="drop the table (all its versions) or register the new definition under a new name",
        )
    old_types = {f.name: f.dtype for f in stored.features}
    for f in new.features:
        if f.name in old_types and old_types[f.name] is not f.dtype:
            raise StoreError(
                f"feature {new.name}.{f.name} is stored as {old_types[f.name].value}, not {f.dtype.value}",
                hint="add a feature under a new name instead of changing a type",
            )


def merged_schema(stored: TableSchema | None, new: TableSchema) -> TableSchema:
    """What ``ensure_table`` stores: ``new``, plus the features only ``stored`` has (never dropped)."""
    if stored is None:
        return new
    check_compatible(stored, new)
    kept = {f.name for f in new.features}
    return TableSchema(
        new.name,
        new.keys,
        new.features + tuple(f for f in stored.features if f.name not in kept),
        new.ttl_ms,
        new.max_versions,
    )


def _check_key_value(schema: TableSchema, field: Field, value: Any) -> None:
    ok = (
        isinstance(value, int) and not isinstance(value, bool)
        if field.dtype is ValueType.INT64
        else isinstance(value, str)
        if field.dtype is ValueType.STRING
        else False
    )
    if not ok:
        raise ValidationError(
            f"key value {value!r} is a {type(value).__name__}, the key column is {field.dtype.value}",
            location=f"{schema.name}.{field.name}",
        )


def _arrow_key_type(key_type: ValueType, arrow: pa.DataType) -> bool:
    """True when every value of an Arrow column of this type passes :func:`_check_key_value`."""
    if key_type is ValueType.INT64:
        return bool(pa.types.is_integer(arrow))
    return key_type is ValueType.STRING and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow))


def _pylist(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """``column.to_pylist()``, through numpy where that gives the same Python values: integers
    without nulls, strings and bytes (a tenth of the time: no Arrow scalar per value)."""
    kind = column.type
    if (pa.types.is_integer(kind) and not column.null_count) or pa.types.is_string(kind) or pa.types.is_binary(kind):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        return list(column.to_numpy(zero_copy_only=False).tolist())
    return list(column.to_pylist())


def normalize_keys(schema: TableSchema, keys: KeysInput) -> list[tuple[Any, ...]]:
    """Key tuples in request order, each value checked against its key column's type."""
    if isinstance(keys, pa.Table):
        missing = [n for n in schema.key_names if n not in keys.column_names]
        if missing:
            raise ValidationError(f"key columns {missing} missing", location=schema.name)
        columns = [keys.column(n) for n in schema.key_names]
        rows: list[tuple[Any, ...]] = list(zip(*(_pylist(c) for c in columns), strict=True))
        typed = zip(schema.keys, columns, strict=True)
        if all(_arrow_key_type(f.dtype, c.type) and not c.null_count for f, c in typed):
            return rows  # the Arrow types already guarantee what the checks below check
    elif isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
        raise ValidationError(
            f"keys must be a list of key tuples (or values for one key column), got {type(keys).__name__}",
            location=schema.name,
        )
    else:
        single = len(schema.keys) == 1
        rows = [tuple(k) if isinstance(k, tuple | list) else (k,) if single else k for k in keys]
    for row in rows:
        if not isinstance(row, tuple) or len(row) != len(schema.keys):
            raise ValidationError(
                f"key {row!r} does not match the key columns {schema.key_names}", location=schema.name
            )
        for field, value in zip(schema.keys, row, strict=True):
            _check_key_value(schema, field, value)
    return rows


def encode_keys(schema: TableSchema, keys: KeysInput) -> tuple[list[tuple[Any, ...]], list[bytes]]:
    """Key tuples in request order (:func:`normalize_keys`) and their encoded keys."""
    if type(keys) is list and len(schema.keys) == 1:
        plain = _plain_keys(schema.keys[0].dtype, keys)
        if plain is not None:
            return [(k,) for k in keys], plain
    rows = normalize_keys(schema, keys)
    return rows, [encode_key(r) for r in rows]


def _plain_keys(dtype: ValueType, keys: list[Any]) -> list[bytes] | None:
    """``encode_key`` of a list of plain ints or strings of a one-column key, ~10x faster than a
    call per key (a read of 100 keys spent ~0.3 ms there); None when a key needs the checks."""
    if dtype is ValueType.INT64 and all(type(k) is int for k in keys):
        return [b"%d" % k for k in keys]
    if dtype is ValueType.STRING and all(type(k) is str and SEPARATOR not in k for k in keys):
        return [k.encode() for k in keys]
    return None


def encode_key_array(schema: TableSchema, batch: pa.Table) -> pa.Array:
    """The encoded key (``keys.encode_key``) of every row of a batch, as a binary array: in Arrow
    when the key columns have their schema's types, else row by row (which says what is wrong)."""
    columns = [batch.column(k.name) for k in schema.keys]
    if all(_arrow_key_type(k.dtype, c.type) for k, c in zip(schema.keys, columns, strict=True)):
        encoded = encode_key_columns(columns)
        if encoded is not None:
            return encoded
    return pa.array(encode_keys(schema, batch.select(list(schema.key_names)))[1], pa.binary())


def check_features(schema: TableSchema, features: Sequence[str] | None) -> tuple[str, ...]:
    if features is None:
        return schema.feature_names
    if isinstance(features, str):
        features = [features]
    for name in features:
        schema.feature(name)  # raises ValidationError for an unknown feature
    return tuple(features)


def query_times(as_of: int | Sequence[int], n: int, *, what: str = "as_of") -> list[int]:
    """One query time per key: a single time for all, or one per key."""
    if isinstance(as_of, int):
        return [to_millis(as_of, what=what)] * n
    times = [to_millis(t, what=what) for t in as_of]
    if len(times) != n:
        raise ValidationError(f"{len(times)} {what} times for {n} keys; give one time or one per key")
    return times


@dataclass(frozen=True)
class Cells:
    """A checked batch of versions, column-wise: row i has key ``keys[i]`` at (``ts[i]``, ``seq[i]``)."""

    keys: list[bytes]
    ts: list[int]
    seq: list[int]
    # feature -> encoded value per row (None = an explicit null); only the features the batch writes
    values: dict[str, list[bytes | None]]

    @property
    def rows(self) -> int:
        return len(self.keys)

    def count(self) -> int:
        return self.rows * len(self.values)


def batch_to_cells(schema: TableSchema, batch: pa.Table | pa.RecordBatch) -> Cells:
    """Check a batch of versions against ``schema`` and encode it."""
    return encode_cells(schema, check_batch(schema, batch))


def check_batch(schema: TableSchema, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """The batch as a table, if it has the key, version and seq columns, no nulls in them, and
    only known features; a ValidationError naming the column otherwise."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        raise ValidationError(f"a batch of versions must be an Arrow table, got {type(batch).__name__}")
    names = set(batch.column_names)
    for required in (*schema.key_names, VERSION_MS, SEQ):
        if required not in names:
            raise ValidationError(f"batch has no column {required!r}", location=schema.name)
    known = {*schema.key_names, VERSION_MS, SEQ, *schema.feature_names}
    unknown = sorted(names - known)
    if unknown:
        raise ValidationError(f"batch has columns {unknown} that are not features", location=schema.name)
    for required in (VERSION_MS, SEQ, *schema.key_names):
        if batch.column(required).null_count:
            raise ValidationError(f"column {required!r} has nulls", location=schema.name)
    if batch.num_rows:
        for column in (VERSION_MS, SEQ):
            if not pa.types.is_integer(batch.column(column).type):
                raise ValidationError(f"column {column!r} must be int64", location=schema.name)
        lo, hi = pc.min_max(batch.column(VERSION_MS)).values()
        to_millis(lo.as_py(), what=f"{schema.name}.{VERSION_MS}")
        to_millis(hi.as_py(), what=f"{schema.name}.{VERSION_MS}")
    return batch


def encode_value_arrays(schema: TableSchema, batch: pa.Table) -> dict[str, pa.Array]:
    """Per feature column of a checked batch, its values encoded (``types.encode_array``; nulls
    stay null); a value of the wrong type is a ValidationError naming the column."""
    names = set(batch.column_names)
    values: dict[str, pa.Array] = {}
    for feature in schema.features:
        if feature.name not in names:
            continue
        try:
            values[feature.name] = encode_array(feature.dtype, batch.column(feature.name))
        except ValidationError as exc:
            raise ValidationError(exc.message, location=f"{schema.name}.{feature.name}") from None
    return values


def encode_cells(schema: TableSchema, batch: pa.Table) -> Cells:
    """Encode a batch that :func:`check_batch` accepted; values of the wrong type are errors."""
    keys = _pylist(encode_key_array(schema, batch))
    values = {name: _pylist(encoded) for name, encoded in encode_value_arrays(schema, batch).items()}
    return Cells(keys, _pylist(batch.column(VERSION_MS)), _pylist(batch.column(SEQ)), values)


def rows_with_newest_cells(schema: TableSchema, batch: pa.Table) -> pa.Table:
    """The rows of a checked ``batch`` that hold the newest cell of some (key, feature).

    An Arrow-level pre-filter before :func:`latest_per_cell`, so a batch of many versions per key
    is not encoded cell by cell only to be thrown away. Every row writes every feature column of
    the batch (nulls included: explicit nulls are cells), so this is the newest row per key; a
    batch without feature columns writes nothing. Among equal (version_ms, seq) the later row
    wins, as in :func:`latest_per_cell`.
    """
    if not any(name in batch.column_names for name in schema.feature_names):
        return batch.slice(0, 0)
    if batch.num_rows < 2:
        return batch
    keys = list(schema.key_names)
    rows = pa.array(range(batch.num_rows), pa.int64())
    index = pa.Table.from_arrays(
        [*(batch.column(k) for k in keys), batch.column(VERSION_MS), batch.column(SEQ), rows],
        names=[*keys, VERSION_MS, SEQ, "__row"],
    )
    order = [(VERSION_MS, "descending"), (SEQ, "descending"), ("__row", "descending")]
    newest = index.sort_by(order).group_by(keys, use_threads=False).aggregate([("__row", "first")])
    picked = newest.column("__row_first").combine_chunks()
    return batch.take(picked.take(pc.array_sort_indices(picked)))  # in batch order


def latest_per_cell(cells: Cells) -> dict[tuple[bytes, str], tuple[int, int, bytes | None]]:
    """The newest (version_ms, seq, value) per (key, feature) of a batch; value None = explicit null."""
    best: dict[tuple[bytes, str], tuple[int, int, bytes | None]] = {}
    for feature, column in cells.values.items():
        for i, value in enumerate(column):
            slot = (cells.keys[i], feature)
            old = best.get(slot)
            if old is None or (cells.ts[i], cells.seq[i]) >= (old[0], old[1]):
                best[slot] = (cells.ts[i], cells.seq[i], value)
    return best


def build_result(
    schema: TableSchema,
    key_rows: Sequence[tuple[Any, ...]],
    features: Sequence[str],
    found: dict[str, list[Cell]],
    statuses: dict[str, list[str]] | None = None,
) -> pa.Table:
    """The shared read layout (module docstring); ``statuses`` adds ``<feature>__status`` columns.

    Columns of one type are converted in one ``pa.array`` call and sliced (zero copy): a read of
    one key and 50 features costs a handful of conversions, not 150.
    """
    n = len(key_rows)
    dtypes = {name: schema.feature(name).dtype for name in features}
    by_type: dict[ValueType, list[Any]] = {}
    offsets: dict[str, int] = {}
    for name in features:
        values = by_type.setdefault(dtypes[name], [])
        offsets[name] = len(values)
        values.extend(None if c is None or c[1] is None else decode_value(dtypes[name], c[1]) for c in found[name])
    typed = {t: pa.array(values, type=arrow_type(t)) for t, values in by_type.items()}
    times = pa.array([None if c is None else c[0] for name in features for c in found[name]], type=pa.int64())
    status = None if statuses is None else pa.array([s for name in features for s in statuses[name]], pa.string())
    arrays: list[pa.Array] = [
        pa.array([row[i] for row in key_rows], type=arrow_type(key.dtype)) for i, key in enumerate(schema.keys)
    ]
    for position, name in enumerate(features):
        arrays.append(typed[dtypes[name]].slice(offsets[name], n))
        arrays.append(times.slice(position * n, n))
        if status is not None:
            arrays.append(status.slice(position * n, n))
    return pa.Table.from_arrays(arrays, schema=_result_schema(schema, tuple(features), status is not None))


@functools.lru_cache(maxsize=1024)
def _result_schema(schema: TableSchema, features: tuple[str, ...], with_status: bool) -> pa.Schema:
    fields = [pa.field(key.name, arrow_type(key.dtype), nullable=False) for key in schema.keys]
    for name in features:
        fields.append(pa.field(name, arrow_type(schema.feature(name).dtype)))
        fields.append(pa.field(ts_column(name), pa.int64()))
        if with_status:
            fields.append(pa.field(status_column(name), pa.string(), nullable=False))
    return pa.schema(fields)
