"""``hbase://host:port``: the versioned store in HBase: reads through happybase over Thrift v1,
batch writes through HBase's Thrift2 server (``?thrift2=host:port``, default: the same host,
port ports.HBASE_THRIFT2_PORT).

Layout (one HBase table per feature table, named ``<prefix>_<table>``, default prefix ``fs``;
the prefix may carry a namespace, ``?prefix=ns:fs``):

* row key = ``keys.salted_row_key(keys.encode_key(key))`` (two hex digits of salt + key), so
  sequential ids spread over regions;
* family ``f``: qualifier = feature name, cell timestamp = version time (event time, ms), value
  = a presence byte (1 = value, 0 = explicit null) then the ``types.encode_value`` bytes
  (``batches.pack_value``: never empty, so an empty string or empty bytes value is unambiguous);
  ``MAX_VERSIONS`` = the table's ``max_versions`` (all when unset); an explicit null is a
  version like any other (it counts against MAX_VERSIONS and hides older values);
* family ``m`` (one version, no TTL): row ``__schema__`` holds the table definition as JSON,
  with ``cell_format``; a table of the older format (no presence byte) is refused, not misread.

TTL. HBase's family TTL is measured against the wall clock, the feature TTL against the query
time. Putting the feature TTL on the family would make HBase drop (and hide, even before a
compaction) every version older than ``now - ttl``: a backfill of last month, or an as-of read
for a training sample from last week, would see nothing. So the feature TTL is enforced at read
only (``ts > T - ttl``, featurestore.time_semantics), and the family TTL is a separate, optional
garbage-collection horizon, ``?retention=400d``: it must exceed the oldest query time anyone
will ask for plus the feature TTL. Default: no family TTL (versions kept up to MAX_VERSIONS).

Tie rule. Cells with equal (row, column, timestamp) overwrite: the last write wins. Each batch is
reduced to the highest seq per (key, feature, version_ms) before it is written (among equal seqs,
the later row of the batch), and batches for
a key are assumed to arrive in source order, which the partitioned stream (live or replayed)
guarantees; a replay rewrites the same values, so writes are idempotent.

Writes. Thrift v1 carries one timestamp per ``mutateRowsTs`` call (one call per distinct version
time: a stream of event times would make one call per row), so writes go to the Thrift2 server,
whose ``putMultiple`` carries a timestamp per cell (featurestore.storage.hbase_thrift2): one TPut
per row with every cell of the batch for that row, in chunks of ``put_chunk`` rows (default 2000)
sent in parallel over ``put_threads`` connections (the batch is reduced first, so no two chunks
hold the same cell). The schema row is written through Thrift v1 (one cell).

A batch stays in Arrow and numpy from the check to the bytes on the wire: values and keys are
encoded column-wise (featurestore.storage.batches), the reduction is one sort, and each chunk's
``putMultiple`` call is written by Arrow (``hbase_thrift2.put_multiple_call``) in the thread that
sends it. Python objects per cell (the encoded value, a dict entry for the reduction, a thriftpy2
``TColumnValue``) took three quarters of a write's wall time (13.7 of 18.1 s for 523k version
rows); column-wise, the Python side is about a tenth of what it was (bench/hbase_write.py).

Reads. ``get_as_of`` is one ``getRowsWithColumnsTs`` per distinct query time (happybase
``rows(timestamp=T + 1)``: HBase returns versions strictly older than the timestamp given).

Delete. ``delete_key`` writes an HBase delete marker at the wall clock: until a major
compaction it also masks versions re-written later with an older event time (HBase semantics).
To rerun a backfill over deleted keys, drop and recreate the table, or major-compact first.

Errors. Thrift and socket failures raise ServiceUnavailableError("hbase", address, reason)
(transient; the address is the Thrift2 one for writes); errors HBase reports raise StoreError.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa

from featurestore.errors import (
    ConfigError,
    FeatureStoreError,
    NotInstalledError,
    ServiceUnavailableError,
    StoreError,
)
from featurestore.keys import SALT_BUCKETS, salted_row_key
from featurestore.schema import SEQ, VERSION_MS, TableSchema
from featurestore.services.ports import HBASE_THRIFT2_PORT
from featurestore.storage import hbase_thrift2
from featurestore.storage.batches import (
    CELL_FORMAT,
    Cell,
    Cells,
    check_batch,
    encode_key_array,
    encode_value_arrays,
    pack_values,
    schema_from_json,
    schema_to_json,
    unpack_value,
)
from featurestore.storage.versioned import CellStore
from featurestore.time_semantics import parse_duration_ms

#: Reopen a pooled connection idle longer than this (the Thrift server closes it at 60 s).
IDLE_REOPEN_S = 45.0
#: Rows per Thrift2 getMultiple call of an as-of read with a time per row.
READ_CHUNK = 2_000

log = logging.getLogger(__name__)
T = TypeVar("T")

FAMILY = b"f"
META_FAMILY = b"m"
SCHEMA_ROW = b"__schema__"
SCHEMA_COLUMN = b"m:json"
ALL_VERSIONS = 2**31 - 1
_OPTIONS = {"prefix", "pool_size", "timeout_s", "retention", "put_threads", "put_chunk", "thrift2"}


def _column(feature: str) -> bytes:
    return FAMILY + b":" + feature.encode()


def _thrift2_address(option: str | None, host: str) -> tuple[str, int]:
    """``?thrift2=host:port`` (or ``:port``, or ``port``: the store's host) -> (host, port)."""
    if option is None:
        return host, HBASE_THRIFT2_PORT
    name, _, port = option.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"thrift2={option!r}: expected host:port")
    return name or host, int(port)


class HBaseStore(CellStore):
    """happybase-backed :class:`~featurestore.storage.versioned.VersionedStore`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9090,
        *,
        prefix: str = "fs",
        pool_size: int = 8,
        timeout_s: float = 10.0,
        retention_ms: int | None = None,
        put_threads: int = 4,
        put_chunk: int = 2000,
        thrift2_host: str | None = None,
        thrift2_port: int = HBASE_THRIFT2_PORT,
    ) -> None:
        super().__init__()
        try:
            import happybase
            from thriftpy2.thrift import TException
        except ImportError:
            raise NotInstalledError(
                "the hbase versioned store needs the 'happybase' package", hint="pip install happybase"
            ) from None
        self._happybase = happybase
        self._texception = TException
        self.address = f"{host}:{port}"
        self.uri = f"hbase://{host}:{port}"
        self.prefix = prefix
        self.retention_ms = retention_ms
        self._host, self._port, self._timeout_ms = host, port, int(timeout_s * 1000)
        self._pool_size = pool_size
        self._pool: Any = None
        self._last_used: dict[int, float] = {}  # id(pooled connection) -> when it was last handed back
        self._put_threads = max(1, min(put_threads, pool_size))
        self._put_chunk = max(1, put_chunk)
        self._executor: ThreadPoolExecutor | None = None
        self._thrift2_host = thrift2_host or host
        self.thrift2_address = f"{self._thrift2_host}:{thrift2_port}"
        self._thrift2 = hbase_thrift2.Thrift2Pool(self._thrift2_host, thrift2_port, pool_size, self._timeout_ms)

    @classmethod
    def from_uri(cls, uri: str) -> HBaseStore:
        parts = urlsplit(uri)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(f"hbase URI {uri!r}: unknown options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
        try:
            retention = options.get("retention")
            thrift2_host, thrift2_port = _thrift2_address(options.get("thrift2"), parts.hostname or "127.0.0.1")
            return cls(
                parts.hostname or "127.0.0.1",
                parts.port or 9090,
                prefix=options.get("prefix", "fs"),
                pool_size=int(options.get("pool_size", "8")),
                timeout_s=float(options.get("timeout_s", "10")),
                retention_ms=None if retention is None else parse_duration_ms(retention, what="retention"),
                put_threads=int(options.get("put_threads", "4")),
                put_chunk=int(options.get("put_chunk", "2000")),
                thrift2_host=thrift2_host,
                thrift2_port=thrift2_port,
            )
        except ValueError as exc:
            raise ConfigError(f"hbase URI {uri!r}: {exc}") from None

    # -- connections and errors -------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; Thrift/socket failures become ServiceUnavailableError."""
        try:
            if self._pool is None:
                self._pool = self._happybase.ConnectionPool(
                    self._pool_size, host=self._host, port=self._port, timeout=self._timeout_ms,
                    table_prefix=self.prefix, transport="buffered", protocol="binary",
                )
            with self._pool.connection() as connection:
                # The Thrift server drops a connection idle for 60 s (its socket read timeout):
                # reopen one that sat in the pool that long instead of failing the next request.
                last = self._last_used.get(id(connection))
                if last is not None and time.monotonic() - last > IDLE_REOPEN_S:
                    connection.close()
                    connection.open()
                try:
                    yield connection
                except (self._texception, OSError, EOFError):
                    # happybase replaces a tainted connection's transport without closing the old
                    # one: close it here so its socket is not left to the garbage collector.
                    connection.close()
                    raise
                finally:
                    self._last_used[id(connection)] = time.monotonic()
        except FeatureStoreError:
            raise
        except (TimeoutError, OSError, EOFError) as exc:
            raise self._unavailable(exc) from None
        except self._texception as exc:
            name = type(exc).__name__
            if name in ("IOError", "IllegalArgument", "AlreadyExists", "TApplicationException"):
                message = getattr(exc, "message", None) or str(exc)
                raise StoreError(f"hbase at {self.address} refused the request: {name}: {message[:500]}") from None
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException, address: str | None = None) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            "hbase", address or self.address, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            hint="start it with `featurestore services up hbase`, or check the versioned_store URI",
        )

    def _table_exists(self, connection: Any, table: str) -> bool:
        return table.encode() in connection.tables()

    # -- primitives -------------------------------------------------------------------------
    def _load_schema(self, table: str) -> TableSchema | None:
        with self._connection() as connection:
            if not self._table_exists(connection, table):
                return None
            row = connection.table(table).row(SCHEMA_ROW, columns=[SCHEMA_COLUMN])
        raw = row.get(SCHEMA_COLUMN)
        return None if raw is None else schema_from_json(raw, cell_format=CELL_FORMAT, where=self.uri)

    def _create_or_update(self, schema: TableSchema, existed: bool) -> None:
        with self._connection() as connection:
            exists = self._table_exists(connection, schema.name)
        if not exists:
            family: dict[str, Any] = {"max_versions": schema.max_versions or ALL_VERSIONS}
            if self.retention_ms is not None:
                family["time_to_live"] = max(1, self.retention_ms // 1000)
            # Pre-split: one region per salt bucket (keys.salted_row_key: "00:", "01:", ...) from
            # the first row, so writes spread over the region servers at once. Thrift v1 cannot
            # pass split keys; Thrift2's createTable can.
            split_keys = [b"%02x:" % bucket for bucket in range(1, SALT_BUCKETS)]
            families = {"f": family, "m": {"max_versions": 1}}
            name = f"{self.prefix}_{schema.name}"
            try:
                self._thrift2_call(lambda: self._thrift2.create_table(name, families, split_keys), "table creation")
            except StoreError as exc:
                if "TableExistsException" not in str(exc):
                    raise  # else another writer created it first: the same definition follows
        with self._connection() as connection:
            if exists:
                stored = self._schemas.get(schema.name) or self._load_schema(schema.name)
                if stored is not None and stored.max_versions != schema.max_versions:
                    log.warning(
                        "hbase table %s keeps MAX_VERSIONS from its creation (%s); Thrift v1 cannot alter it",
                        schema.name, stored.max_versions,
                    )
            definition = schema_to_json(schema, cell_format=CELL_FORMAT).encode()
            connection.table(schema.name).put(SCHEMA_ROW, {SCHEMA_COLUMN: definition})

    def put(self, table: str, batch: pa.Table) -> int:
        """:meth:`CellStore.put <featurestore.storage.versioned.CellStore.put>` without the
        :class:`Cells` lists in between: the encoded Arrow arrays go to :meth:`_write_arrays`."""
        schema = self.schema(table)
        batch = check_batch(schema, batch)
        keys = encode_key_array(schema, batch)
        values = encode_value_arrays(schema, batch)
        if batch.num_rows and values:
            ts, seq = batch.column(VERSION_MS).to_numpy(), batch.column(SEQ).to_numpy()
            self._write_arrays(schema, keys, ts, seq, values)
        return int(batch.num_rows) * len(values)

    def _write(self, schema: TableSchema, cells: Cells) -> None:
        if cells.rows and cells.values:
            values = {f: pa.array(v, pa.binary()) for f, v in cells.values.items()}
            keys = pa.array(cells.keys, pa.binary())
            self._write_arrays(schema, keys, np.array(cells.ts), np.array(cells.seq), values)

    def _write_arrays(
        self,
        schema: TableSchema,
        keys: pa.Array,
        ts: np.ndarray[Any, Any],
        seq: np.ndarray[Any, Any],
        values: dict[str, pa.Array],
    ) -> None:
        """Write version rows: encoded keys, version times, seqs and encoded values (nulls: explicit
        nulls) per feature, each feature's cell in every row.

        Every row writes every feature given, so the highest seq per (key, feature, version_ms)
        is the highest seq per (key, version_ms): one stable sort by (key, version_ms, seq) puts
        the winner last in its run (the later row among equal seqs) and the rows of a key next
        to each other, which are then one TPut.
        """
        codes = keys.dictionary_encode()
        key_ids = codes.indices.to_numpy()
        times = ts.astype(np.int64)
        order = np.lexsort((seq, times, key_ids))
        k, t = key_ids[order], times[order]
        newest = np.append((k[1:] != k[:-1]) | (t[1:] != t[:-1]), True)
        kept, kept_keys = order[newest], k[newest]
        firsts = np.flatnonzero(np.append(True, kept_keys[1:] != kept_keys[:-1]))
        sizes = np.diff(np.append(firsts, len(kept)))
        distinct = [salted_row_key(key) for key in codes.dictionary.to_numpy(zero_copy_only=False)]
        rows = pa.array(distinct, pa.binary()).take(pa.array(kept_keys[firsts]))
        take = pa.array(kept)
        cells = {f.encode(): pack_values(v.take(take)) for f, v in values.items()}
        kept_times = times[kept]
        table = (self.prefix + "_" + schema.name).encode()
        step = self._put_chunk
        sends = []
        for j in range(0, len(firsts), step):
            lo, n = int(firsts[j]), int(sizes[j : j + step].sum())
            chunk = {q: v.slice(lo, n) for q, v in cells.items()}
            args = (table, rows[j : j + step], sizes[j : j + step], chunk, kept_times[lo : lo + n])
            sends.append(functools.partial(self._send, *args))
        if len(sends) == 1 or self._put_threads == 1:
            for send in sends:
                send()
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._put_threads, thread_name_prefix="hbase-put")
        futures = [self._executor.submit(send) for send in sends]
        errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
        if errors:
            raise errors[0]

    def _send(
        self,
        table: bytes,
        rows: pa.Array,
        sizes: np.ndarray[Any, np.dtype[np.int64]],
        cells: dict[bytes, pa.Array],
        times: np.ndarray[Any, np.dtype[np.int64]],
    ) -> None:
        """One Thrift2 ``putMultiple`` (``hbase_thrift2.put_multiple_call``: TPut ``j`` is row
        ``rows[j]`` with the next ``sizes[j]`` version rows of ``cells``); failures mapped as for
        Thrift v1 (at the Thrift2 address)."""
        call = hbase_thrift2.put_multiple_call(table, rows, sizes, FAMILY, cells, times)
        self._thrift2_call(lambda: self._thrift2.put_multiple(call), "request")

    def _thrift2_call(self, action: Callable[[], T], what: str) -> T:
        """``action()`` on the Thrift2 pool with its failures mapped as for Thrift v1, at the
        Thrift2 address: the server refusing ``what`` (the request, the read) is a StoreError,
        anything else (refused connection, timeout, broken transport) ServiceUnavailableError."""
        try:
            return action()
        except (TimeoutError, OSError, EOFError) as exc:
            raise self._unavailable(exc, self.thrift2_address) from None
        except Exception as exc:  # thriftpy2's TIOError / TApplicationException / transport errors
            name = type(exc).__name__
            if name in ("TIOError", "TIllegalArgument", "TApplicationException"):
                message = getattr(exc, "message", None) or str(exc)
                raise StoreError(
                    f"hbase Thrift2 at {self.thrift2_address} refused the {what}: {name}: {message[:500]}"
                ) from None
            raise self._unavailable(exc, self.thrift2_address) from None

    def _read(
        self, schema: TableSchema, keys: list[bytes], features: Sequence[str], before: list[int] | None
    ) -> dict[str, list[Cell]]:
        rows = [salted_row_key(k) for k in keys]
        columns = [_column(f) for f in features]
        by_time: dict[int | None, list[int]] = {}
        for i in range(len(rows)):
            by_time.setdefault(None if before is None else before[i], []).append(i)
        if before is not None and len(by_time) > 1:
            return self._read_as_of(schema, rows, features, before)  # one round trip, not one per time
        found: dict[str, list[Cell]] = {f: [None] * len(rows) for f in features}
        with self._connection() as connection:
            table = connection.table(schema.name)
            for ts, indices in by_time.items():
                if ts is not None and ts <= 0:
                    continue  # nothing is older than the epoch
                wanted = list(dict.fromkeys(rows[i] for i in indices))
                result = dict(table.rows(wanted, columns=columns, timestamp=ts, include_timestamp=True))
                for i in indices:
                    data = result.get(rows[i])
                    if not data:
                        continue
                    for feature, column in zip(features, columns, strict=True):
                        cell = data.get(column)
                        if cell is not None:
                            found[feature][i] = (cell[1], unpack_value(cell[0]))
        return found

    def _read_as_of(
        self, schema: TableSchema, rows: list[bytes], features: Sequence[str], before: list[int]
    ) -> dict[str, list[Cell]]:
        """Per row the newest cell of each feature older than its own time: Thrift2 ``getMultiple``,
        a ``TGet`` per row with time range ``[0, before)`` and one version, in calls of
        ``READ_CHUNK`` rows (Thrift v1 takes one time per call)."""
        module = hbase_thrift2.thrift2()
        table = (self.prefix + "_" + schema.name).encode()
        qualifiers = {f.encode(): f for f in features}
        tcolumns = [module.TColumn(family=FAMILY, qualifier=q) for q in qualifiers]
        found: dict[str, list[Cell]] = {f: [None] * len(rows) for f in features}
        wanted = [i for i in range(len(rows)) if before[i] > 0]  # nothing is older than the epoch
        for start in range(0, len(wanted), READ_CHUNK):
            chunk = wanted[start:start + READ_CHUNK]
            gets = [module.TGet(row=rows[i], columns=tcolumns, timeRange=module.TTimeRange(0, before[i]),
                                maxVersions=1) for i in chunk]
            results = self._thrift2_call(functools.partial(self._thrift2.get_multiple, table, gets), "read")
            for i, result in zip(chunk, results, strict=True):
                for cell in result.columnValues if result is not None else ():
                    feature = qualifiers.get(cell.qualifier)
                    if feature is not None:
                        found[feature][i] = (cell.timestamp, unpack_value(cell.value))
        return found

    def _scan(
        self, schema: TableSchema, key: bytes, feature: str, start: int, end: int
    ) -> list[tuple[int, bytes | None]]:
        # No time range on the read: HBase then returns exactly the newest MAX_VERSIONS versions,
        # whether or not a compaction has trimmed older ones yet.
        with self._connection() as connection:
            cells = connection.table(schema.name).cells(
                salted_row_key(key), _column(feature), versions=schema.max_versions or ALL_VERSIONS,
                include_timestamp=True,
            )
        return sorted(((ts, unpack_value(value)) for value, ts in cells if start <= ts <= end), key=lambda c: c[0])

    def _delete(self, schema: TableSchema, key: bytes) -> None:
        with self._connection() as connection:
            connection.table(schema.name).delete(salted_row_key(key), columns=[FAMILY])

    def _drop(self, table: str) -> None:
        with self._connection() as connection:
            if self._table_exists(connection, table):
                connection.delete_table(table, disable=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._thrift2.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            # happybase's pool has no close(); its connections sit in its queue.
            while not pool._queue.empty():
                pool._queue.get_nowait().close()
