"""``embedded:///path``: the versioned store on local disk, no server (LMDB).

Why LMDB (bench/embedded_choice.py, figures in docs): of SQLite, RocksDB (rocksdict) and LMDB,
LMDB was the fastest at both batch puts and point as-of reads, and unlike RocksDB it lets several
processes open the same directory at once (one writer, many readers): the ingestion job writes
while a trainer or the server reads.

Layout: one LMDB environment per directory; one named database per feature table
(``t:<table>``) and ``__schemas__`` holding each table's definition as JSON. A cell is

    key   = u16 len(key) | encoded key | u8 len(feature) | feature | u64 big-endian version_ms
    value = i64 big-endian seq | presence byte (1 = value, 0 = explicit null) | encoded value

(``batches.pack_value``: empty strings and empty bytes are values, so a null needs its own byte).
The table definition records ``cell_format`` (``batches.CELL_FORMAT``); a table written in the
older format (no presence byte, nulls not stored) is refused with a StoreError, not misread.

so the versions of one (key, feature) are adjacent and sorted by time: an as-of read is one
cursor seek to ``prefix | T+1`` and one step back. A write at an existing (key, feature,
version_ms) lands only if its seq is >= the stored one (the tie rule; equal seq = a replay).

One process opens a directory once: LMDB forbids opening the same environment twice in one
process (closing one copy would drop the other's locks), yet one process often holds several
stores on one path (the ingestion job's sink functions, one per window group, and the driver,
all in one interpreter on a local Flink). So environments are shared per path and reference
counted (:class:`_Environments`); ``close`` releases this store's reference. Threads of one
process take a Python lock per environment before LMDB's write lock: py-lmdb waits for LMDB's
write lock in ``open_db`` while holding the GIL, so two threads writing at once (the sink functions
run as threads of one process on a local Flink) would otherwise deadlock.

URI options: ``embedded:///path?map_gb=64&sync=false``. ``sync=false`` (the default) leaves
flushing to the OS: a killed process loses nothing, a power cut may lose the last batches, which
at-least-once ingestion rewrites idempotently.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from featurestore.errors import ConfigError, NotInstalledError, StoreError
from featurestore.schema import TableSchema
from featurestore.shared import Shared
from featurestore.storage.batches import (
    CELL_FORMAT,
    Cell,
    Cells,
    pack_value,
    schema_from_json,
    schema_to_json,
    unpack_value,
)
from featurestore.storage.versioned import CellStore

_TS = struct.Struct(">Q")
_SEQ = struct.Struct(">q")
_KEY_LEN = struct.Struct(">H")
_MAX_TS = b"\xff" * 8
_SCHEMAS = b"__schemas__"


def _import_lmdb() -> Any:
    try:
        import lmdb
    except ImportError:
        raise NotInstalledError(
            "the embedded versioned store needs the 'lmdb' package", hint="pip install lmdb"
        ) from None
    return lmdb


def _key_prefix(key: bytes) -> bytes:
    if len(key) > 0xFFFF:
        raise StoreError(f"an encoded entity key is {len(key)} bytes; at most 65535")
    return _KEY_LEN.pack(len(key)) + key


def _feature_part(feature: str) -> bytes:
    data = feature.encode()
    return bytes([len(data)]) + data


# The LMDB environments this process has open, one per directory, each with the lock its
# writers take first.
_ENVIRONMENTS: Shared[str, tuple[Any, threading.RLock]] = Shared(close=lambda opened: opened[0].close())


class EmbeddedStore(CellStore):
    """LMDB-backed :class:`~featurestore.storage.versioned.VersionedStore`."""

    def __init__(self, path: str | Path, *, map_gb: int = 64, sync: bool = False) -> None:
        super().__init__()
        lmdb = _import_lmdb()
        self.path = Path(path)
        self.uri = f"embedded://{self.path}"
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._env_key = str(self.path.resolve())
            self._env, self._writing = _ENVIRONMENTS.acquire(
                self._env_key,
                lambda: (
                    lmdb.open(
                        self._env_key,
                        map_size=map_gb << 30,
                        max_dbs=4096,
                        sync=sync,
                        metasync=sync,
                        readahead=False,
                    ),
                    threading.RLock(),
                ),
            )
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the embedded store at {self.path}: {exc}") from None
        self._lmdb = lmdb
        with self._writing:
            self._schema_db = self._env.open_db(_SCHEMAS)
        self._dbs: dict[str, Any] = {}

    @classmethod
    def from_uri(cls, uri: str) -> EmbeddedStore:
        parts = urlsplit(uri)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ConfigError(f"embedded store URI {uri!r} has no path", hint="embedded:///abs/path or embedded://rel/path")
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"map_gb", "sync"}
        if unknown:
            raise ConfigError(f"embedded store URI {uri!r}: unknown options {sorted(unknown)}")
        try:
            map_gb = int(options.get("map_gb", "64"))
        except ValueError:
            raise ConfigError(f"embedded store URI {uri!r}: map_gb must be an integer") from None
        return cls(path, map_gb=map_gb, sync=options.get("sync", "false").lower() in ("1", "true", "yes"))

    # -- primitives -------------------------------------------------------------------------
    def _db(self, table: str) -> Any:
        db = self._dbs.get(table)
        if db is None:
            with self._writing:
                db = self._env.open_db(f"t:{table}".encode())
            self._dbs[table] = db
        return db

    def _load_schema(self, table: str) -> TableSchema | None:
        with self._env.begin(db=self._schema_db) as txn:
            raw = txn.get(table.encode())
        return None if raw is None else schema_from_json(raw, cell_format=CELL_FORMAT, where=self.uri)

    def _create_or_update(self, schema: TableSchema, existed: bool) -> None:
        self._db(schema.name)
        with self._writing, self._env.begin(write=True, db=self._schema_db) as txn:
            txn.put(schema.name.encode(), schema_to_json(schema, cell_format=CELL_FORMAT).encode())

    def _write(self, schema: TableSchema, cells: Cells) -> None:
        db = self._db(schema.name)
        prefixes = [_key_prefix(k) for k in cells.keys]
        touched: set[bytes] = set()
        limit = schema.max_versions
        ts_parts = [_TS.pack(t) for t in cells.ts]
        seqs = cells.seq
        try:
            with self._writing, self._env.begin(write=True, db=db) as txn:
                get, put, unpack = txn.get, txn.put, _SEQ.unpack_from
                for feature, column in cells.values.items():
                    fpart = _feature_part(feature)
                    for i, value in enumerate(column):
                        cell_prefix = prefixes[i] + fpart
                        key = cell_prefix + ts_parts[i]
                        seq = seqs[i]
                        old = get(key)
                        if old is not None and unpack(old)[0] > seq:
                            continue
                        put(key, _SEQ.pack(seq) + pack_value(value))
                        if limit is not None:
                            touched.add(cell_prefix)
                if touched and limit is not None:
                    self._trim(txn, touched, limit)
        except self._lmdb.MapFullError:
            raise StoreError(
                f"the embedded store at {self.path} is full", hint="reopen it with a larger ?map_gb=..."
            ) from None

    @staticmethod
    def _trim(txn: Any, prefixes: set[bytes], limit: int) -> None:
        """Keep the newest ``limit`` versions of each touched (key, feature)."""
        cursor = txn.cursor()
        for prefix in prefixes:
            found = cursor.prev() if cursor.set_range(prefix + _MAX_TS) else cursor.last()
            kept = 0
            doomed: list[bytes] = []
            while found and cursor.key().startswith(prefix):
                kept += 1
                if kept > limit:
                    doomed.append(cursor.key())
                found = cursor.prev()
            for key in doomed:
                txn.delete(key)

    def _read(
        self, schema: TableSchema, keys: list[bytes], features: Sequence[str], before: list[int] | None
    ) -> dict[str, list[Cell]]:
        db = self._db(schema.name)
        prefixes = [_key_prefix(k) for k in keys]
        ends = [_MAX_TS] * len(keys) if before is None else [_TS.pack(max(b, 0)) for b in before]
        found: dict[str, list[Cell]] = {}
        with self._env.begin(db=db) as txn:
            cursor = txn.cursor()
            set_range, prev, last = cursor.set_range, cursor.prev, cursor.last
            key_of, value_of = cursor.key, cursor.value
            for feature in features:
                fpart = _feature_part(feature)
                cells: list[Cell] = []
                for prefix, end in zip(prefixes, ends, strict=True):
                    cell_prefix = prefix + fpart
                    ok = prev() if set_range(cell_prefix + end) else last()
                    key = key_of() if ok else b""
                    if ok and key.startswith(cell_prefix):
                        cells.append((_TS.unpack_from(key, len(cell_prefix))[0], unpack_value(value_of()[8:])))
                    else:
                        cells.append(None)
                found[feature] = cells
        return found

    def _scan(
        self, schema: TableSchema, key: bytes, feature: str, start: int, end: int
    ) -> list[tuple[int, bytes | None]]:
        prefix = _key_prefix(key) + _feature_part(feature)
        out: list[tuple[int, bytes | None]] = []
        with self._env.begin(db=self._db(schema.name)) as txn:
            cursor = txn.cursor()
            ok = cursor.set_range(prefix + _TS.pack(start))
            while ok:
                k = cursor.key()
                if not k.startswith(prefix):
                    break
                ts = _TS.unpack_from(k, len(prefix))[0]
                if ts > end:
                    break
                out.append((ts, unpack_value(cursor.value()[8:])))
                ok = cursor.next()
        return out

    def _delete(self, schema: TableSchema, key: bytes) -> None:
        prefix = _key_prefix(key)
        db = self._db(schema.name)
        with self._writing, self._env.begin(write=True, db=db) as txn:
            cursor = txn.cursor()
            ok = cursor.set_range(prefix)
            while ok and cursor.key().startswith(prefix):
                ok = cursor.delete()  # moves to the next item

    def _drop(self, table: str) -> None:
        with self._env.begin(db=self._schema_db) as txn:
            exists = txn.get(table.encode()) is not None
        if not exists:
            return
        db = self._db(table)  # opened outside the write transaction: open_db starts its own
        with self._writing, self._env.begin(write=True) as txn:
            txn.drop(db, delete=True)
            txn.delete(table.encode(), db=self._schema_db)
        self._dbs.pop(table, None)

    def close(self) -> None:
        if self._env is not None:
            _ENVIRONMENTS.release(self._env_key)
            self._env = None
