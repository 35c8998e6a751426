"""The online cache: the latest value of every feature per entity key, for serving.

One small protocol, :class:`OnlineCache`, with backends picked by URI scheme
(:func:`open_online_cache`): ``redis://host:port/db`` (a packed row per (table, key),
:mod:`featurestore.storage.packed_rows`) and ``memory://`` (the same rows in a dict of this
process, same semantics, for the local profile). Both pass one contract test suite
(tests/contract/online_cache_suite.py).

Semantics:

* ``write`` takes a versions batch (keys, ``version_ms``, ``seq`` and any subset of the
  features, :mod:`featurestore.schema`): it writes exactly the feature columns it contains, a
  null in one of them being an explicit null value. Per (key, feature) a cell lands only if its
  (version_ms, seq) is greater than the stored one, so replays and out-of-order writes never
  regress the cache; a newer explicit null replaces an older value like any newer value.
  Returns the number of cells that landed (0 for a replay).
* ``get`` returns the layout of :mod:`featurestore.storage.batches` plus ``<feature>__status``:
  ``present`` (a version is served: its value, which is null for an explicit null, and its
  ``__ts``), ``missing`` (never written) or ``expired`` (older than the feature TTL at
  ``now_ms``, default the wall clock: a version at ts is served iff ``ts > now - ttl``). Expired
  and missing cells are null with a null ``__ts``; so a null value is "the feature is null"
  exactly when the status is ``present``.
* :class:`CachedOnlineStore` puts a small in-process TTL cache in front of any backend, with
  hit/miss counters; its staleness bound is its ``ttl_s`` for writes made by other processes.

Reads are column-wise: a backend returns the cells it found as :class:`CellColumns` (numpy arrays
over one buffer of encoded values; Redis builds them without a Python object per cell, see
``redis_cache``), and :func:`cells_to_result` applies the TTL and decodes each value type in one
call (:data:`_DECODERS`; value by value with ``types.decode_value`` for the types they lack).
"""

from __future__ import annotations

import abc
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from featurestore.errors import ConfigError, NotFoundError, StoreError
from featurestore.schema import TableSchema
from featurestore.storage.batches import (
    KeysInput,
    _result_schema,
    check_batch,
    check_features,
    encode_cells,
    encode_keys,
    latest_per_cell,
    merged_schema,
    rows_with_newest_cells,
)
from featurestore.time_semantics import to_millis
from featurestore.types import ValueType, arrow_type, decode_value

PRESENT = "present"
MISSING = "missing"
EXPIRED = "expired"

# A stored cell: (version_ms, seq, encoded value or None for an explicit null).
Stored: TypeAlias = tuple[int, int, bytes | None]
Updates: TypeAlias = dict[tuple[bytes, str], Stored]
Bools: TypeAlias = npt.NDArray[np.bool_]
Ints: TypeAlias = npt.NDArray[np.int64]
Bytes: TypeAlias = npt.NDArray[np.uint8]
_NONE: Stored = (0, 0, None)  # what CellColumns.from_rows reads for a missing cell


@dataclass(frozen=True)
class CellColumns:
    """The cells a read of ``keys`` keys x m features found, feature-major: cell ``j * keys + i``
    is feature j of key i; one entry per cell in each array but ``data``.

    ``found``: a version is stored; ``ts``: its version_ms (0 where not found); ``has_value``: found
    and not an explicit null; the encoded value (``types.encode_value``) is
    ``data[start:start + length]`` where ``has_value`` (``data`` may hold other bytes too).
    """

    keys: int
    found: Bools
    ts: Ints
    has_value: Bools
    start: Ints
    length: Ints
    data: Bytes

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Stored]], features: Sequence[str]) -> CellColumns:
        """From ``read_stored`` rows (one dict per key): a Python step per cell, for the backends
        that hold Python objects anyway (memory, the in-process front)."""
        cells = [row.get(name, _NONE) for name in features for row in rows]
        ts, _, values = zip(*cells, strict=True) if cells else ((), (), ())
        found = np.array([c is not _NONE for c in cells], np.bool_)
        has_value = np.array([v is not None for v in values], np.bool_)
        length = np.array([0 if v is None else len(v) for v in values], np.int64)
        data = np.frombuffer(b"".join([v for v in values if v is not None]), np.uint8)
        return cls(len(rows), found, np.array(ts, np.int64), has_value, np.cumsum(length) - length, length, data)

    def reorder(self, order: Sequence[int]) -> CellColumns:
        """The cells of the features at positions ``order`` (a repeat is a copy), in that order."""
        def pick(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return a.reshape(-1, self.keys)[list(order)].ravel() if self.keys else a[:0]

        return CellColumns(self.keys, pick(self.found), pick(self.ts), pick(self.has_value), pick(self.start),
                           pick(self.length), self.data)


# The statuses have one length, so a column of them is a gather of fixed-width rows (and
# offsets every 7 bytes): cheaper than an Arrow take for a column of one or a few keys.
_PRESENT, _MISSING, _EXPIRED = 0, 1, 2  # rows of _STATUS
_STATUS = np.frombuffer((PRESENT + MISSING + EXPIRED).encode(), np.uint8).reshape(3, len(PRESENT))


def _status_column(found: Bools, present: Bools) -> pa.Array:
    """The status of each cell."""
    width = _STATUS.shape[1]
    offsets = np.arange(0, width * (len(found) + 1), width, dtype=np.int32)
    codes = (~found).view(np.int8) * _MISSING + (found & ~present).view(np.int8) * _EXPIRED
    data = np.take(_STATUS, codes, axis=0)
    return pa.Array.from_buffers(pa.string(), len(found), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


@functools.lru_cache(maxsize=64)
def _all_present(n: int) -> pa.Array:
    """A status column of n ``present`` (Arrow arrays are immutable: one serves every read of n keys)."""
    return pa.array([PRESENT] * n, pa.string())


def _bad_cell(what: str) -> StoreError:
    return StoreError(
        f"the online cache holds a value that is not a valid {what}",
        hint="the cell was not written by this store's codecs (types.encode_value); delete the key and rewrite it",
    )


# A column decoder: (data, start, length, valid) -> the values (null where not valid).
Decoder: TypeAlias = Callable[[Bytes, Ints, Ints, Bools], pa.Array]


def _fixed_width(dtype: str, arrow: pa.DataType, what: str) -> Decoder:
    """``struct.unpack(">q"/">d")`` of every value: one numpy gather of the values' bytes."""
    width = np.dtype(dtype).itemsize
    native = np.dtype(dtype).newbyteorder("=")

    def decode(data: Bytes, start: Ints, length: Ints, valid: Bools) -> pa.Array:
        every = bool(valid.all())
        if every:
            first, lengths = start, length
        else:
            first, lengths = start[valid], length[valid]
        if (lengths != width).any():
            raise _bad_cell(what)
        # every offset of data as the start of a value (a view of overlapping, unaligned values):
        # one gather of the starts, half the time of gathering each value's bytes
        at_every_byte: npt.NDArray[Any] = np.ndarray((max(len(data) - width + 1, 0),), dtype, data, strides=(1,))
        numbers = at_every_byte[first].astype(native)
        if every:
            return pa.array(numbers, arrow)
        out = np.zeros(len(valid), native)
        out[valid] = numbers
        return pa.array(out, arrow, mask=~valid)

    return decode


def _bools(data: Bytes, start: Ints, length: Ints, valid: Bools) -> pa.Array:
    """``b == b"\\x01"`` of every value."""
    one = valid & (length == 1)
    out = np.zeros(len(valid), np.bool_)
    out[one] = data[start[one]] == 1
    return pa.array(out, pa.bool_(), mask=~valid)


def _binary(arrow: pa.DataType) -> Decoder:
    """The values' bytes as they are (``bytes``), or checked as utf-8 (``b.decode()``, as strictly)."""

    def decode(data: Bytes, start: Ints, length: Ints, valid: Bools) -> pa.Array:
        lengths = np.where(valid, length, 0)
        offsets = np.zeros(len(valid) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
        validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        wide = pa.large_binary() if arrow == pa.binary() else pa.large_string()
        values = pa.Array.from_buffers(wide, len(valid), [validity, pa.py_buffer(offsets),
                                                           pa.py_buffer(data[gather])])
        try:
            values.validate(full=True)
            return values.cast(arrow)
        except pa.ArrowInvalid:
            raise _bad_cell("utf-8 string") from None

    return decode


def _one_by_one(dtype: ValueType) -> Decoder:
    """``types.decode_value`` per value: for the types with no column-wise decoder."""

    def decode(data: Bytes, start: Ints, length: Ints, valid: Bools) -> pa.Array:
        values = [
            decode_value(dtype, data[s : s + n].tobytes()) if ok else None
            for s, n, ok in zip(start.tolist(), length.tolist(), valid.tolist(), strict=True)
        ]
        return pa.array(values, arrow_type(dtype))

    return decode


# The column-wise ``types.decode_value`` of the value types whose bytes are Arrow's own buffers
# (the same values: tests/unit/test_online_columns.py checks it); the others go one by one.
_DECODERS: dict[ValueType, Decoder] = {
    ValueType.INT64: _fixed_width(">i8", pa.int64(), "int64 (8 bytes)"),
    ValueType.DOUBLE: _fixed_width(">f8", pa.float64(), "double (8 bytes)"),
    ValueType.BOOL: _bools,
    ValueType.STRING: _binary(pa.string()),
    ValueType.BYTES: _binary(pa.binary()),
}


def decoder(dtype: ValueType) -> Decoder:
    return _DECODERS.get(dtype) or _one_by_one(dtype)


@dataclass(frozen=True)
class _Layout:
    """What a read of some features of a table does per value type, whatever the keys."""

    schema: TableSchema
    groups: tuple[tuple[Decoder, Ints], ...]  # a type's decoder, the positions of its features
    column: tuple[tuple[int, int], ...]  # per feature: its group, its rank in the group
    result: pa.Schema
    row: pa.StructType  # the result's columns as one struct type (building it costs ~2 us a field)


_layouts: dict[tuple[int, tuple[str, ...], bool], _Layout] = {}


def _layout(schema: TableSchema, features: tuple[str, ...], values_only: bool = False) -> _Layout:
    """Cached per schema object (by id: hashing a schema costs more; a cached layout holds its
    schema, so the id is not reused while it is cached), features and result shape."""
    found = _layouts.get((id(schema), features, values_only))
    if found is not None and found.schema is schema:
        return found
    dtypes = {f.name: f.dtype for f in schema.features}
    positions: dict[ValueType, list[int]] = {}
    column = []
    for j, name in enumerate(features):
        same = positions.setdefault(dtypes[name], [])
        column.append((list(positions).index(dtypes[name]), len(same)))
        same.append(j)
    groups = tuple((decoder(t), np.asarray(js, np.int64)) for t, js in positions.items())
    result = _result_schema(schema, features, True)
    if values_only:  # keys, then each feature's value (the first of its three columns)
        k = len(schema.keys)
        result = pa.schema([*result][:k] + [result.field(k + 3 * j) for j in range(len(features))])
    layout = _Layout(schema, groups, tuple(column), result, pa.struct(result))
    if len(_layouts) >= 1024:
        _layouts.clear()
    _layouts[(id(schema), features, values_only)] = layout
    return layout


def _typed(layout: _Layout, cells: CellColumns, shown: Bools) -> list[pa.Array]:
    """Per value type of the layout's features (its groups), their values feature-major,
    decoded in one call: null where ``shown`` (one per cell) is false."""
    n = cells.keys
    typed = []
    groups = layout.groups
    for decode, js in groups:
        if len(groups) == 1:
            typed.append(decode(cells.data, cells.start, cells.length, shown))
            continue
        cell = (js[:, None] * n + np.arange(n, dtype=np.int64)).ravel() if n != 1 else js
        typed.append(decode(cells.data, cells.start[cell], cells.length[cell], shown[cell]))
    return typed


def value_columns(schema: TableSchema, features: Sequence[str], cells: CellColumns, shown: Bools) -> list[pa.Array]:
    """Each feature's values (``features`` order, one per key), decoded by type in one call per
    type: null where ``shown`` (one per cell) is false. Every column is a slice of its type's array."""
    n = cells.keys
    layout = _layout(schema, tuple(features))
    typed = _typed(layout, cells, shown)
    return [typed[group].slice(rank * n, n) for group, rank in layout.column]


def value_lists(schema: TableSchema, features: Sequence[str], cells: CellColumns, shown: Bools) -> list[list[Any]]:
    """:func:`value_columns` as Python values (None for null), each type's made in one call."""
    n = cells.keys
    layout = _layout(schema, tuple(features))
    typed = [python_values(array) for array in _typed(layout, cells, shown)]
    return [typed[group][rank * n : (rank + 1) * n] for group, rank in layout.column]


def python_values(array: pa.Array) -> list[Any]:
    """``array.to_pylist()``, ~15x faster for a flat type: numpy makes the Python objects (Arrow
    makes a scalar object per value first). A null is None, a NaN stays a NaN."""
    kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return array.to_pylist()  # type: ignore[no-any-return]
    if array.null_count and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        values: list[Any] = array.fill_null(0).to_numpy().tolist()  # numpy would make NaN of a null
        for i in np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False)).tolist():
            values[i] = None
        return values
    return array.to_numpy(zero_copy_only=False).tolist()  # type: ignore[no-any-return]


def cells_to_result(
    schema: TableSchema,
    key_rows: Sequence[tuple[Any, ...]],
    features: Sequence[str],
    cells: CellColumns,
    now_ms: int,
    *,
    values_only: bool = False,
) -> pa.Table:
    """The read layout of ``batches.build_result`` with ``<feature>__status``: TTL applied at
    ``now_ms`` (a version at ts is served iff ``ts > now - ttl``), each value type decoded in one
    call, and every column a slice of one array per type (and one for times, one for statuses).
    ``values_only``: the keys and ``<feature>`` columns alone (null where missing or expired)."""
    n = len(key_rows)
    layout = _layout(schema, tuple(features), values_only)
    present = cells.found
    if schema.ttl_ms is not None:
        present = present & (cells.ts > now_ms - schema.ttl_ms)
    values = value_columns(schema, features, cells, present & cells.has_value)
    arrays: list[pa.Array] = [
        pa.array([row[i] for row in key_rows], type=arrow_type(key.dtype)) for i, key in enumerate(schema.keys)
    ]
    if values_only:
        arrays += values
        return _table(layout, n, arrays)
    every = bool(present.all())
    # all present, and (the usual case: one version row writes every feature) at the same times:
    # one array of n serves every feature's status, and one its times
    same = every and n > 0 and bool((cells.ts.reshape(-1, n) == cells.ts[:n]).all())
    status = _all_present(n) if every else _status_column(cells.found, present)
    times = pa.array(cells.ts[:n] if same else cells.ts, pa.int64(), mask=None if every else ~present)
    for j, value in enumerate(values):
        state = status if every else status.slice(j * n, n)
        at = times if same else times.slice(j * n, n)
        arrays += (value, at, state)
    return _table(layout, n, arrays)


def _table(layout: _Layout, n: int, arrays: list[pa.Array]) -> pa.Table:
    """The result's columns as a table of the layout's schema."""
    # pa.Table.from_arrays(arrays, schema=...) in a quarter of its time for a wide table (~55 us
    # for 151 columns instead of ~200: it checks each column against its field one by one): the
    # arrays become the children of one struct array, whose types Arrow checks at once
    struct = pa.Array.from_buffers(layout.row, n, [None], children=arrays)
    return pa.Table.from_struct_array(struct)  # its fields are layout.result's


@runtime_checkable
class OnlineCache(Protocol):
    """Latest feature values per entity key."""

    uri: str

    def ensure_table(self, schema: TableSchema) -> None: ...

    def schema(self, table: str) -> TableSchema: ...

    def write(self, table: str, batch: pa.Table) -> int:
        """Apply a batch of versions; returns how many cells landed (were newer)."""

    def get(
        self,
        table: str,
        keys: KeysInput,
        features: Sequence[str] | None = None,
        *,
        now_ms: int | None = None,
        values_only: bool = False,
    ) -> pa.Table:
        """Latest values: keys, then ``<f>``, ``<f>__ts``, ``<f>__status`` per feature.

        ``values_only``: keys, then ``<f>`` per feature, null where missing or expired: what a
        model is fed, a quarter faster for one key (a third of the columns to build)."""

    def delete_key(self, table: str, key: Any) -> None: ...

    def drop_table(self, table: str) -> None: ...

    def close(self) -> None: ...


class OnlineBase(abc.ABC):
    """The protocol written once over raw reads and conditional writes of encoded cells."""

    uri: str

    def __init__(self) -> None:
        self._schemas: dict[str, TableSchema] = {}

    @abc.abstractmethod
    def _load_schema(self, table: str) -> TableSchema | None: ...

    @abc.abstractmethod
    def _save_schema(self, schema: TableSchema) -> None: ...

    @abc.abstractmethod
    def _apply(self, table: str, updates: Updates) -> int:
        """Store each cell whose (version_ms, seq) is newer than the stored one; count them."""

    # The raw-cell reads, for readers that layer their own rules on the stored cells (the SDK's
    # in-process cache and store fallback): encoded keys (``batches.encode_keys``), no TTL, no
    # decoding of the values.

    @abc.abstractmethod
    def read_stored(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        """Per key, the stored cells of ``features`` it has, by feature name."""

    def read_cells(self, table: str, keys: list[bytes], features: Sequence[str]) -> CellColumns:
        """The cells of ``features`` (no repeats) for ``keys`` (not empty), column-wise; from
        ``read_stored`` unless a backend reads columns itself."""
        return CellColumns.from_rows(self.read_stored(table, keys, features), features)

    @abc.abstractmethod
    def _delete(self, table: str, key: bytes) -> None: ...

    @abc.abstractmethod
    def _drop(self, table: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def ensure_table(self, schema: TableSchema) -> None:
        stored = self._load_schema(schema.name)
        schema = merged_schema(stored, schema)
        self._save_schema(schema)
        self._schemas[schema.name] = schema

    def schema(self, table: str) -> TableSchema:
        found = self._schemas.get(table) or self._load_schema(table)
        if found is None:
            raise NotFoundError(
                f"feature table {table!r} does not exist in the online cache {self.uri}",
                hint="apply the feature repo (or call ensure_table) first",
            )
        self._schemas[table] = found
        return found

    def write(self, table: str, batch: pa.Table) -> int:
        schema = self.schema(table)
        newest = rows_with_newest_cells(schema, check_batch(schema, batch))
        updates = latest_per_cell(encode_cells(schema, newest))
        return self._apply(table, updates) if updates else 0

    def get(
        self,
        table: str,
        keys: KeysInput,
        features: Sequence[str] | None = None,
        *,
        now_ms: int | None = None,
        values_only: bool = False,
    ) -> pa.Table:
        schema = self.schema(table)
        names = check_features(schema, features)
        rows, encoded = encode_keys(schema, keys)
        now = int(time.time() * 1000) if now_ms is None else to_millis(now_ms, what="now_ms")
        unique = names if features is None else tuple(dict.fromkeys(names))  # a schema's names are unique
        cells = self.read_cells(table, encoded, unique) if encoded else CellColumns.from_rows([], unique)
        if unique != names:  # a feature asked for twice is read once
            cells = cells.reorder([unique.index(name) for name in names])
        return cells_to_result(schema, rows, names, cells, now, values_only=values_only)

    def delete_key(self, table: str, key: Any) -> None:
        schema = self.schema(table)
        _, (encoded,) = encode_keys(schema, [key])
        self._delete(table, encoded)

    def drop_table(self, table: str) -> None:
        self._schemas.pop(table, None)
        self._drop(table)

    def __enter__(self) -> OnlineBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CachedOnlineStore(OnlineBase):
    """A bounded in-process TTL cache (per table and key, all features) in front of a backend.

    Writes through this object invalidate its entries at once; writes by other processes are
    seen after at most ``ttl_s`` seconds. Feature TTL is still checked at every read.
    """

    def __init__(self, inner: OnlineBase, *, ttl_s: float = 1.0, max_entries: int = 100_000) -> None:
        super().__init__()
        self.inner = inner
        self.uri = inner.uri
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, dict[str, Stored]]] = OrderedDict()
        self._lock = threading.Lock()

    def _load_schema(self, table: str) -> TableSchema | None:
        try:
            return self.inner.schema(table)
        except NotFoundError:
            return None

    def _save_schema(self, schema: TableSchema) -> None:
        self.inner.ensure_table(schema)

    def _apply(self, table: str, updates: Updates) -> int:
        with self._lock:
            for key, _ in updates:
                self._entries.pop((table, key), None)
        return self.inner._apply(table, updates)

    def read_stored(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        now = time.monotonic()
        out: list[dict[str, Stored] | None] = []
        missing: list[bytes] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get((table, key))
                if entry is not None and entry[0] > now:
                    self._entries.move_to_end((table, key))
                    self.stats.hits += 1
                    out.append(entry[1])
                else:
                    self.stats.misses += 1
                    out.append(None)
                    missing.append(key)
        if missing:
            unique = list(dict.fromkeys(missing))
            rows = self.inner.read_stored(table, unique, self.schema(table).feature_names)
            fetched = dict(zip(unique, rows, strict=True))
            with self._lock:
                for key, row in fetched.items():
                    self._entries[(table, key)] = (now + self.ttl_s, row)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            out = [fetched[k] if row is None else row for row, k in zip(out, keys, strict=True)]
        return [row for row in out if row is not None]

    def _forget(self, table: str, key: bytes | None = None) -> None:
        with self._lock:
            for slot in [s for s in self._entries if s[0] == table and (key is None or s[1] == key)]:
                del self._entries[slot]

    def _delete(self, table: str, key: bytes) -> None:
        self._forget(table, key)
        self.inner._delete(table, key)

    def _drop(self, table: str) -> None:
        self._forget(table)
        self.inner.drop_table(table)

    def close(self) -> None:
        self.inner.close()


def open_online_cache(uri: str) -> OnlineBase:
    """An online cache for ``uri``: ``memory://`` or ``redis://host:port/db[?prefix=fs]``.

    ``?local_cache_s=0.5`` (either scheme) puts a :class:`CachedOnlineStore` with that TTL in front.
    """
    parts = urlsplit(uri)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    local = options.pop("local_cache_s", None)
    cache: OnlineBase
    if parts.scheme == "memory":
        from featurestore.storage.memory_cache import MemoryCache

        if options:
            raise ConfigError(f"online cache URI {uri!r}: unknown options {sorted(options)}")
        cache = MemoryCache()
    elif parts.scheme == "redis":
        from featurestore.storage.redis_cache import RedisCache

        cache = RedisCache.from_uri(parts, options)
    else:
        raise ConfigError(
            f"online cache URI {uri!r} has an unknown scheme {parts.scheme!r}",
            hint="use memory:// or redis://host:6379/0",
        )
    if local is None:
        return cache
    try:
        ttl_s = float(local)
    except ValueError:
        raise ConfigError(f"online cache URI {uri!r}: local_cache_s must be a number of seconds") from None
    return CachedOnlineStore(cache, ttl_s=ttl_s)
