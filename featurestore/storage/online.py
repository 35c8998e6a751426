"""The online cache: the latest value of every feature per entity key, for serving.

One small protocol, :class:`OnlineCache`, with backends picked by URI scheme
(:func:`open_online_cache`): ``redis://host:port/db`` (a Redis hash per (table, key)) and
``memory://`` (a dict in this process, same semantics, for the local profile). Both pass one
contract test suite (tests/contract/online_cache_suite.py).

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
"""

from __future__ import annotations

import abc
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from featurestore.errors import ConfigError, NotFoundError
from featurestore.schema import TableSchema
from featurestore.storage.batches import (
    Cell,
    KeysInput,
    build_result,
    check_batch,
    check_features,
    encode_cells,
    encode_keys,
    latest_per_cell,
    merged_schema,
    rows_with_newest_cells,
)
from featurestore.time_semantics import to_millis

PRESENT = "present"
MISSING = "missing"
EXPIRED = "expired"

# A stored cell: (version_ms, seq, encoded value or None for an explicit null).
Stored: TypeAlias = tuple[int, int, bytes | None]
Updates: TypeAlias = dict[tuple[bytes, str], Stored]


@runtime_checkable
class OnlineCache(Protocol):
    """Latest feature values per entity key."""

    uri: str

    def ensure_table(self, schema: TableSchema) -> None: ...

    def schema(self, table: str) -> TableSchema: ...

    def write(self, table: str, batch: pa.Table) -> int:
        """Apply a batch of versions; returns how many cells landed (were newer)."""

    def get(
        self, table: str, keys: KeysInput, features: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> pa.Table:
        """Latest values: keys, then ``<f>``, ``<f>__ts``, ``<f>__status`` per feature."""

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

    @abc.abstractmethod
    def _read_raw(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]: ...

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
        self, table: str, keys: KeysInput, features: Sequence[str] | None = None, *, now_ms: int | None = None
    ) -> pa.Table:
        schema = self.schema(table)
        names = check_features(schema, features)
        rows, encoded = encode_keys(schema, keys)
        now = int(time.time() * 1000) if now_ms is None else to_millis(now_ms, what="now_ms")
        raw = self._read_raw(table, encoded, names) if encoded else []
        ttl = schema.ttl_ms
        found: dict[str, list[Cell]] = {n: [] for n in names}
        statuses: dict[str, list[str]] = {n: [] for n in names}
        for row in raw:
            for name in names:
                cell = row.get(name)
                if cell is None:
                    found[name].append(None)
                    statuses[name].append(MISSING)
                elif ttl is not None and cell[0] <= now - ttl:
                    found[name].append(None)
                    statuses[name].append(EXPIRED)
                else:
                    found[name].append((cell[0], cell[2]))
                    statuses[name].append(PRESENT)
        return build_result(schema, rows, names, found, statuses)

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

    def _read_raw(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
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
            rows = self.inner._read_raw(table, unique, self.schema(table).feature_names)
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
