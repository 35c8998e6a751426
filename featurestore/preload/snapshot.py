"""Batch-computed snapshots of a feature table, loaded ahead of use and switched atomically.

A snapshot is an Arrow table of the latest values per key of one feature table (key columns,
features, and optionally ``version_ms``/``seq``; without them every row gets the snapshot's
``as_of_ms`` and seq 0). Loading snapshot ``n`` of table ``t``:

1. writes its versions to the versioned store under ``t`` itself (history: ``as_of`` reads and
   point-in-time exports see them at their version times);
2. writes its latest values to the online cache under a table of its own, ``t__s<n>``, that no
   reader looks at yet;
3. publishes the pointer ``t -> (n, t__s<n>, as_of_ms)`` with one atomic write (a Redis ``SET``,
   or an assignment under a lock in memory): the switch;
4. drops ``t__s<n-2>``: the previous snapshot stays readable for one more load, so a reader that
   resolved the old pointer just before the switch finishes on a complete table.

A reader resolves the pointer once per request and reads only ``t__s<n>``; when it must fall back
to the versioned store it reads ``t`` as of the snapshot's ``as_of_ms``. So every request sees the
old snapshot or the new one, never a mix, on every tier.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from featurestore.errors import ConfigError, ServiceUnavailableError, ValidationError
from featurestore.schema import SEQ, VERSION_MS, TableSchema
from featurestore.storage.online import OnlineCache
from featurestore.storage.versioned import VersionedStore
from featurestore.time_semantics import to_millis

SUFFIX = "__s"


@dataclass(frozen=True)
class SnapshotRef:
    """Where readers of ``table`` find its current snapshot."""

    table: str
    id: int
    online_table: str  # the online cache table holding this snapshot
    as_of_ms: int  # versioned-store fallbacks read the table as of this time

    def to_json(self) -> str:
        return json.dumps({"table": self.table, "id": self.id, "online_table": self.online_table,
                           "as_of_ms": self.as_of_ms})

    @classmethod
    def from_json(cls, text: str | bytes) -> SnapshotRef:
        raw = json.loads(text)
        return cls(str(raw["table"]), int(raw["id"]), str(raw["online_table"]), int(raw["as_of_ms"]))


def online_table_name(table: str, snapshot_id: int) -> str:
    name = f"{table}{SUFFIX}{snapshot_id}"
    if len(name) > 63:
        raise ValidationError(f"feature table name {table!r} is too long for snapshot tables ({name!r})")
    return name


class SnapshotPointers(Protocol):
    """The current snapshot of each table, published atomically."""

    def current(self, table: str) -> SnapshotRef | None: ...

    def publish(self, ref: SnapshotRef) -> None:
        """Make ``ref`` current in one atomic step."""

    def next_id(self, table: str) -> int: ...

    def close(self) -> None: ...


class MemoryPointers:
    """Pointers in this process (with the ``memory://`` online cache)."""

    def __init__(self) -> None:
        self._refs: dict[str, SnapshotRef] = {}
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def current(self, table: str) -> SnapshotRef | None:
        return self._refs.get(table)

    def publish(self, ref: SnapshotRef) -> None:
        with self._lock:
            self._refs[ref.table] = ref

    def next_id(self, table: str) -> int:
        with self._lock:
            self._ids[table] = self._ids.get(table, 0) + 1
            return self._ids[table]

    def close(self) -> None:
        pass


class RedisPointers:
    """Pointers in Redis, next to the online cache: ``<prefix>:__snapshot__:<table>`` (JSON, one
    ``SET``) and ``<prefix>:__snapshot_id__:<table>`` (``INCR``)."""

    def __init__(self, uri: str) -> None:
        import redis

        parts = urlsplit(uri)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.prefix = options.get("prefix", "fs")
        self.address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
        self._redis = redis
        timeout = float(options.get("timeout_s", "2"))
        self._client = redis.Redis(
            host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(parts.path.strip("/") or "0"),
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise ServiceUnavailableError("redis", self.address, str(exc) or type(exc).__name__) from None

    def current(self, table: str) -> SnapshotRef | None:
        raw = self._call(self._client.get, f"{self.prefix}:__snapshot__:{table}")
        return None if raw is None else SnapshotRef.from_json(raw)

    def publish(self, ref: SnapshotRef) -> None:
        self._call(self._client.set, f"{self.prefix}:__snapshot__:{ref.table}", ref.to_json())

    def next_id(self, table: str) -> int:
        return int(self._call(self._client.incr, f"{self.prefix}:__snapshot_id__:{table}"))

    def clear(self, table: str) -> None:
        self._call(self._client.delete, f"{self.prefix}:__snapshot__:{table}", f"{self.prefix}:__snapshot_id__:{table}")

    def close(self) -> None:
        self._client.close()


def open_pointers(online_cache_uri: str) -> SnapshotPointers:
    """Pointers that live where the online cache lives."""
    scheme = urlsplit(online_cache_uri).scheme
    if scheme == "memory":
        return MemoryPointers()
    if scheme == "redis":
        return RedisPointers(online_cache_uri)
    raise ConfigError(f"no snapshot pointers for online cache URI {online_cache_uri!r}")


def _as_versions(schema: TableSchema, snapshot: pa.Table, as_of_ms: int) -> pa.Table:
    """The snapshot as a batch of versions: its key and feature columns (a feature it lacks is
    not written), ``version_ms`` (default ``as_of_ms``) and ``seq`` (default 0)."""
    n = snapshot.num_rows
    names = set(snapshot.column_names)
    unknown = names - {*schema.key_names, *schema.feature_names, VERSION_MS, SEQ}
    if unknown:
        raise ValidationError(f"snapshot has columns {sorted(unknown)} that are not features", location=schema.name)
    missing = [k for k in schema.key_names if k not in names]
    if missing:
        raise ValidationError(f"snapshot lacks the key columns {missing}", location=schema.name)
    fields, arrays = [], []
    for field in schema.arrow_schema():
        if field.name in names:
            arrays.append(snapshot.column(field.name).cast(field.type))
        elif field.name == VERSION_MS:
            arrays.append(pa.array([as_of_ms] * n, pa.int64()))
        elif field.name == SEQ:
            arrays.append(pa.array([0] * n, pa.int64()))
        else:
            continue
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class SnapshotLoader:
    """Loads snapshots into the stores and switches readers to them (module docstring)."""

    def __init__(
        self, online: OnlineCache, versioned: VersionedStore, pointers: SnapshotPointers, *, chunk_rows: int = 50_000
    ) -> None:
        self.online = online
        self.versioned = versioned
        self.pointers = pointers
        self.chunk_rows = chunk_rows

    def load(self, schema: TableSchema, snapshot: pa.Table, *, as_of_ms: int) -> SnapshotRef:
        """Write ``snapshot`` everywhere, then make it current; returns the published pointer."""
        as_of = to_millis(as_of_ms, what="as_of_ms")
        versions = _as_versions(schema, snapshot, as_of)
        self.versioned.ensure_table(schema)
        snapshot_id = self.pointers.next_id(schema.name)
        online_table = online_table_name(schema.name, snapshot_id)
        self.online.ensure_table(replace(schema, name=online_table))
        for batch in versions.to_batches(max_chunksize=self.chunk_rows):
            chunk = pa.Table.from_batches([batch])
            self.versioned.put(schema.name, chunk)
            self.online.write(online_table, chunk)
        previous = self.pointers.current(schema.name)
        ref = SnapshotRef(schema.name, snapshot_id, online_table, as_of)
        self.pointers.publish(ref)
        if previous is not None:
            for old in range(max(1, previous.id - 3), previous.id):
                self.online.drop_table(online_table_name(schema.name, old))
        return ref

    def current(self, table: str) -> SnapshotRef | None:
        return self.pointers.current(table)
