"""The versioned store: every version of every feature, readable as of any time.

One small protocol, :class:`VersionedStore`, and backends picked by URI scheme
(:func:`open_versioned_store`): ``embedded:///path`` (LMDB on local disk, no server) and
``hbase://host:port`` (happybase over Thrift). Both pass one contract test suite
(tests/contract/versioned_store_suite.py).

Semantics (featurestore.time_semantics is the reference):

* ``put`` takes a versions batch: keys, ``version_ms``, ``seq`` and any subset of the feature
  columns (:mod:`featurestore.schema`). A batch writes exactly the feature columns it contains:
  an absent column is not written; a null in a present column is an explicit null value, stored
  as a cell, that hides older values like any value. A cell is (key, feature, version_ms).
* Equal (key, feature, version_ms): the highest ``seq`` wins, within a batch and across batches
  (embedded compares seq; HBase keeps the last write, which is the highest seq because writes for
  a key arrive in source order). Writes at explicit timestamps are idempotent.
* ``get_as_of(T)`` sees per feature the newest version with ``ts <= T`` (``< T`` when
  ``strict``) and nothing with ``ts <= T - ttl``; ``get_latest`` sees the newest version and
  applies the TTL against ``now_ms`` (default: the wall clock).
* At most ``max_versions`` versions per (key, feature) are kept (the newest by version time).
* Results use the layout of :mod:`featurestore.storage.batches`: key columns, then per feature
  ``<feature>`` and ``<feature>__ts``; keys without visible versions come back as null cells
  with a null ``__ts``; a visible explicit null comes back as a null value with its ``__ts``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import pyarrow as pa

from featurestore.errors import ConfigError, NotFoundError
from featurestore.schema import VERSION_MS, TableSchema
from featurestore.storage.batches import (
    Cell,
    Cells,
    KeysInput,
    batch_to_cells,
    build_result,
    check_features,
    encode_keys,
    merged_schema,
    query_times,
)
from featurestore.time_semantics import is_visible, to_millis
from featurestore.types import arrow_type, decode_value


@runtime_checkable
class VersionedStore(Protocol):
    """Versions of feature values by entity key and event time."""

    uri: str

    def ensure_table(self, schema: TableSchema) -> None:
        """Create the table, or update its stored definition (new features, TTL, max_versions)."""

    def schema(self, table: str) -> TableSchema:
        """The stored definition of ``table``; NotFoundError if it was never created."""

    def put(self, table: str, batch: pa.Table) -> int:
        """Write a batch of versions; returns the number of cells in the batch."""

    def get_latest(
        self, table: str, keys: KeysInput, features: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> pa.Table:
        """The newest version per key and feature, null when none or expired at ``now_ms``."""

    def get_as_of(
        self,
        table: str,
        keys: KeysInput,
        as_of: int | Sequence[int],
        features: Sequence[str] | None = None,
        *,
        strict: bool = False,
    ) -> pa.Table:
        """Per key and feature the version visible at ``as_of`` (one time, or one per key)."""

    def list_versions(
        self, table: str, key: Any, feature: str, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> pa.Table:
        """Versions of one key's feature with ``start_ms <= version_ms <= end_ms``, oldest first:
        columns ``version_ms`` and ``<feature>`` (null for an explicit null version)."""

    def delete_key(self, table: str, key: Any) -> None:
        """Remove every version of one entity key."""

    def drop_table(self, table: str) -> None:
        """Remove a table and all its versions (no error if it does not exist)."""

    def close(self) -> None: ...


class CellStore(abc.ABC):
    """The protocol written once over a few cell-level primitives that each backend implements.

    Backends see encoded keys (``keys.encode_key``) and encoded values (``types.encode_value``)
    only; checking input and building Arrow results happens here.
    """

    uri: str

    def __init__(self) -> None:
        self._schemas: dict[str, TableSchema] = {}

    # -- primitives -------------------------------------------------------------------------
    @abc.abstractmethod
    def _load_schema(self, table: str) -> TableSchema | None: ...

    @abc.abstractmethod
    def _create_or_update(self, schema: TableSchema, existed: bool) -> None: ...

    @abc.abstractmethod
    def _write(self, schema: TableSchema, cells: Cells) -> None: ...

    @abc.abstractmethod
    def _read(
        self, schema: TableSchema, keys: list[bytes], features: Sequence[str], before: list[int] | None
    ) -> dict[str, list[Cell]]:
        """Per feature, per key the newest cell with ``version_ms < before[i]`` (all when None)."""

    @abc.abstractmethod
    def _scan(
        self, schema: TableSchema, key: bytes, feature: str, start: int, end: int
    ) -> list[tuple[int, bytes | None]]:
        """Cells of one key and feature with ``start <= version_ms <= end``, oldest first."""

    @abc.abstractmethod
    def _delete(self, schema: TableSchema, key: bytes) -> None: ...

    @abc.abstractmethod
    def _drop(self, table: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- the protocol -----------------------------------------------------------------------
    def ensure_table(self, schema: TableSchema) -> None:
        stored = self._load_schema(schema.name)
        schema = merged_schema(stored, schema)
        self._create_or_update(schema, stored is not None)
        self._schemas[schema.name] = schema

    def schema(self, table: str) -> TableSchema:
        found = self._schemas.get(table) or self._load_schema(table)
        if found is None:
            raise NotFoundError(
                f"feature table {table!r} does not exist in {self.uri}",
                hint="apply the feature repo (or call ensure_table) before writing or reading",
            )
        self._schemas[table] = found
        return found

    def put(self, table: str, batch: pa.Table) -> int:
        schema = self.schema(table)
        cells = batch_to_cells(schema, batch)
        if cells.rows:
            self._write(schema, cells)
        return cells.count()

    def get_latest(
        self, table: str, keys: KeysInput, features: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> pa.Table:
        schema = self.schema(table)
        names = check_features(schema, features)
        rows, encoded = encode_keys(schema, keys)
        now = int(time.time() * 1000) if now_ms is None else to_millis(now_ms, what="now_ms")
        found = self._read(schema, encoded, names, None) if encoded else {n: [] for n in names}
        if schema.ttl_ms is not None:
            ttl = schema.ttl_ms
            found = {n: [c if c is None or c[0] > now - ttl else None for c in cs] for n, cs in found.items()}
        return build_result(schema, rows, names, found)

    def get_as_of(
        self,
        table: str,
        keys: KeysInput,
        as_of: int | Sequence[int],
        features: Sequence[str] | None = None,
        *,
        strict: bool = False,
    ) -> pa.Table:
        schema = self.schema(table)
        names = check_features(schema, features)
        rows, encoded = encode_keys(schema, keys)
        times = query_times(as_of, len(rows))
        before = [t if strict else t + 1 for t in times]
        found = self._read(schema, encoded, names, before) if encoded else {n: [] for n in names}
        ttl = schema.ttl_ms
        visible = {
            n: [_visible(c, t, ttl, strict) for c, t in zip(cs, times, strict=True)]
            for n, cs in found.items()
        }
        return build_result(schema, rows, names, visible)

    def list_versions(
        self, table: str, key: Any, feature: str, *, start_ms: int | None = None, end_ms: int | None = None
    ) -> pa.Table:
        schema = self.schema(table)
        dtype = schema.feature(feature).dtype
        _, (encoded,) = encode_keys(schema, [key])
        start = 0 if start_ms is None else to_millis(start_ms, what="start_ms")
        end = (1 << 62) if end_ms is None else to_millis(end_ms, what="end_ms")
        cells = self._scan(schema, encoded, feature, start, end) if start <= end else []
        return pa.table(
            {
                VERSION_MS: pa.array([c[0] for c in cells], type=pa.int64()),
                feature: pa.array(
                    [None if c[1] is None else decode_value(dtype, c[1]) for c in cells], type=arrow_type(dtype)
                ),
            }
        )

    def delete_key(self, table: str, key: Any) -> None:
        schema = self.schema(table)
        _, (encoded,) = encode_keys(schema, [key])
        self._delete(schema, encoded)

    def drop_table(self, table: str) -> None:
        self._schemas.pop(table, None)
        self._drop(table)

    def __enter__(self) -> CellStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _visible(cell: Cell, query_ms: int, ttl_ms: int | None, strict: bool) -> Cell:
    return cell if cell is not None and is_visible(cell[0], query_ms, ttl_ms, strict=strict) else None


def open_versioned_store(uri: str) -> VersionedStore:
    """A versioned store for ``uri``: ``embedded:///path`` or ``hbase://host:port[?options]``.

    Optional dependencies (lmdb, happybase) are imported only when their scheme is used.
    """
    scheme = urlsplit(uri).scheme
    if scheme == "embedded":
        from featurestore.storage.embedded import EmbeddedStore

        return EmbeddedStore.from_uri(uri)
    if scheme == "hbase":
        from featurestore.storage.hbase import HBaseStore

        return HBaseStore.from_uri(uri)
    raise ConfigError(
        f"versioned store URI {uri!r} has an unknown scheme {scheme!r}",
        hint="use embedded:///path/to/dir or hbase://host:9090",
    )
