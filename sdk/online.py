"""``FeatureStore.online``: latest values (or values as of a time) for one or many entity keys.

Read path for latest values, per (table, key) *lookup*:

1. the in-process cache (``local_cache_s`` seconds, all features of the key; 0 disables it);
2. the online cache (Redis or ``memory://``);
3. the versioned store, for the features the online cache does not have (or all of them when
   the online cache is down and ``on_cache_down="fallback"``).

Every step past the first is counted in :meth:`OnlineReader.stats` and a fallback caused by a
store being down is also logged: nothing falls back silently. Feature TTL is checked at every
read, cached or not (``expired``). A table with a published snapshot
(:mod:`featurestore.preload.snapshot`) is read from the snapshot's online table, and its
versioned-store fallback reads as of the snapshot's time, so one request sees one snapshot.
``as_of`` reads go straight to the versioned store.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from featurestore.errors import NotFoundError, ServiceUnavailableError
from featurestore.keys import encode_key
from featurestore.schema import TableSchema
from featurestore.storage.batches import normalize_keys, query_times, status_column, ts_column
from featurestore.storage.online import EXPIRED, MISSING, PRESENT, CellColumns, OnlineBase, Stored, value_lists
from featurestore.time_semantics import to_millis
from featurestore.types import decode_value
from sdk.features import EntitiesInput, FeatureFrame, FeatureRequest, FeaturesInput, TablePart, entity_columns, resolve
from sdk.stores import Stores

if TYPE_CHECKING:
    from featurestore.preload.snapshot import SnapshotRef
    from registry.models import Definitions

log = logging.getLogger(__name__)

# A feature the online cache lacks and that was not asked for, so the versioned store was not read
# for it: a later request for it treats the cached row as a miss.
_UNRESOLVED = "unresolved"
AsOf: TypeAlias = int | str | Any  # epoch ms, ISO-8601 with a zone, an aware datetime, or one per key


@dataclass(slots=True)
class _Row:
    """One key's cells, aligned with the table's ``feature_names``: values, version times and
    statuses as fetched. Columnar per key so a result is assembled with C-level picks and zips."""

    values: Sequence[Any]
    ts: Sequence[int | None]
    status: Sequence[str]
    oldest: int | None  # the oldest version time among the cells (TTL check shortcut)
    unresolved: bool = False  # some status is _UNRESOLVED

    @classmethod
    def of(cls, values: Sequence[Any], ts: Sequence[int | None], status: Sequence[str]) -> _Row:
        oldest = min([t for t in ts if t is not None], default=None)  # 0 is a time (1970), not a gap
        return cls(values, ts, status, oldest, _UNRESOLVED in status)


@dataclass(frozen=True)
class ServingOptions:
    local_cache_s: float = 1.0  # staleness bound of the in-process cache; 0 disables it
    local_cache_entries: int = 100_000
    on_cache_down: Literal["fallback", "raise"] = "fallback"
    pointer_cache_s: float = 0.5  # how long a snapshot pointer is reused before it is read again


@dataclass
class ReadStats:
    """Counters of the read path, per (table, key) lookup."""

    requests: int = 0
    lookups: int = 0
    local_hits: int = 0
    local_misses: int = 0
    cache_hits: int = 0  # answered by the online cache alone
    cache_misses: int = 0  # the online cache lacked a feature: sent to the versioned store
    cache_errors: int = 0  # the online cache was down: sent to the versioned store
    store_reads: int = 0  # lookups sent to the versioned store (cache_misses + cache_errors)
    store_found: int = 0  # of those, lookups where the versioned store had a value
    as_of_lookups: int = 0
    snapshot_lookups: int = 0  # lookups served from a published snapshot
    warmed: int = 0  # lookups refreshed by a hot-key warmer

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _LocalCache:
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, _Row]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slot: tuple[str, bytes], now: float) -> _Row | None:
        with self._lock:
            entry = self._entries.get(slot)
            if entry is None or entry[0] <= now:
                return None
            return entry[1]

    def put(self, rows: Mapping[tuple[str, bytes], _Row], until: float) -> None:
        with self._lock:
            for slot, row in rows.items():
                self._entries[slot] = (until, row)
                self._entries.move_to_end(slot)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self, table: str | None = None) -> None:
        with self._lock:
            if table is None:
                self._entries.clear()
            else:
                for slot in [s for s in self._entries if s[0] == table or s[0].startswith(table + "__s")]:
                    del self._entries[slot]

    def __len__(self) -> int:
        return len(self._entries)


class _Unknown:
    """A snapshot pointer that only a store read can tell (:meth:`OnlineReader.get_local`)."""


UNKNOWN = _Unknown()


class OnlineReader:
    """Online lookups (module docstring). Built by :class:`sdk.FeatureStore`; thread-safe."""

    def __init__(self, stores: Stores, definitions: Callable[[], Definitions], options: ServingOptions) -> None:
        self._stores = stores
        self._definitions = definitions
        self.options = options
        self._local = _LocalCache(options.local_cache_s, options.local_cache_entries)
        self._stats = ReadStats()
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, ...] | str, FeatureRequest] = {}
        self._pointer_cache: dict[str, tuple[float, SnapshotRef | None]] = {}

    # ------------------------------------------------------------------------------------ public
    def get(
        self,
        features: FeaturesInput,
        entities: EntitiesInput,
        *,
        as_of: AsOf | None = None,
        now_ms: int | None = None,
    ) -> FeatureFrame:
        """Features for each entity row: latest values, or the values visible at ``as_of``.

        ``features``: ``table:feature`` refs or a feature service name; ``now_ms`` (tests) is
        the time TTL is checked against (default: the wall clock).
        """
        frame = self._get(features, entities, as_of, now_ms, local_only=False)
        assert frame is not None
        return frame

    def get_local(self, features: FeaturesInput, entities: EntitiesInput) -> FeatureFrame | None:
        """The latest values when the in-process cache alone has every key (and the snapshot
        pointers are fresh), else None: it never waits on a store, so a server can answer it
        on its event loop and hand only the others to a worker thread. Counted as :meth:`get`
        when it answers, not at all when it does not."""
        if (features if isinstance(features, str) else tuple(features)) not in self._requests:
            return None  # resolving the request may read the registry
        return self._get(features, entities, None, None, local_only=True)

    def _get(
        self,
        features: FeaturesInput,
        entities: EntitiesInput,
        as_of: AsOf | None,
        now_ms: int | None,
        *,
        local_only: bool,
    ) -> FeatureFrame | None:
        request = self.request(features)
        keys = entity_columns(entities, request.key_columns)
        n = len(next(iter(keys.values()))) if keys else 0
        now = int(time.time() * 1000) if now_ms is None else to_millis(now_ms, what="now_ms")
        columns: dict[str, list[Any]] = dict(keys)
        tally = ReadStats(requests=1)
        for part in request.parts:
            key_rows = normalize_keys(part.schema, list(zip(*(keys[k] for k in part.schema.key_names), strict=True)))
            if as_of is None:
                rows = self._latest(part.schema, part.features, key_rows, now, tally=tally, local_only=local_only)
                if rows is None:
                    return None
            else:
                rows = self._as_of(part, key_rows, as_of)
            _assemble(columns, part, rows, None if as_of is not None else part.schema.ttl_ms, now)
        self._count(tally)
        return FeatureFrame(columns, request.layout, n)

    def _count(self, tally: ReadStats) -> None:
        with self._lock:
            for name, value in asdict(tally).items():
                if value:
                    setattr(self._stats, name, getattr(self._stats, name) + value)

    def get_one(self, features: FeaturesInput, key: Any, *, as_of: AsOf | None = None) -> dict[str, Any]:
        """One entity's features as a dict (``key``: a value, a tuple, or a dict of key columns)."""
        return self.get(features, [key], as_of=as_of).to_dicts()[0]

    def request(self, features: FeaturesInput) -> FeatureRequest:
        """The resolved request (tables, features, output names, key columns), memoized."""
        slot = features if isinstance(features, str) else tuple(features)
        found = self._requests.get(slot)
        if found is None:
            found = resolve(self._definitions(), features)
            if len(self._requests) > 1024:
                self._requests.clear()
            self._requests[slot] = found
        return found

    def stats(self) -> ReadStats:
        """A copy of the counters."""
        with self._lock:
            return ReadStats(**asdict(self._stats))

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = ReadStats()

    def invalidate(self, table: str | None = None) -> None:
        """Forget the in-process cache (of one table, or all) and the memoized requests."""
        self._local.clear(table)
        self._requests.clear()
        self._pointer_cache.clear()

    def refresh(self, features: FeaturesInput, entities: EntitiesInput, *, hold_s: float) -> int:
        """Re-read these keys past the in-process cache and keep them there ``hold_s`` seconds
        (the hot-key warmer); returns the number of lookups refreshed."""
        request = self.request(features)
        keys = entity_columns(entities, request.key_columns)
        now = int(time.time() * 1000)
        tally = ReadStats()
        for part in request.parts:
            key_rows = normalize_keys(part.schema, list(zip(*(keys[k] for k in part.schema.key_names), strict=True)))
            self._latest(part.schema, part.features, key_rows, now, tally=tally, refresh_hold_s=hold_s)
            tally.warmed += len(key_rows)
        self._count(tally)
        return tally.warmed

    # ------------------------------------------------------------------------------------ latest
    def _pointer(self, table: str, *, local_only: bool = False) -> SnapshotRef | _Unknown | None:
        mono = time.monotonic()
        cached = self._pointer_cache.get(table)
        if cached is not None and cached[0] > mono:
            return cached[1]
        if local_only:
            return UNKNOWN
        try:
            ref = self._stores.pointers.current(table)
        except ServiceUnavailableError as exc:
            log.warning("snapshot pointer of %s unreadable (%s): using the last one known", table, exc.message)
            return None if cached is None else cached[1]
        self._pointer_cache[table] = (mono + self.options.pointer_cache_s, ref)
        return ref

    def _latest(
        self,
        schema: TableSchema,
        features: Sequence[str],
        key_rows: list[tuple[Any, ...]],
        now_ms: int,
        *,
        tally: ReadStats,
        refresh_hold_s: float | None = None,
        local_only: bool = False,
    ) -> list[_Row] | None:
        """The rows of ``key_rows``, counted in ``tally``; ``local_only``: None unless the
        in-process cache has them all (nothing counted, no store read)."""
        ref = self._pointer(schema.name, local_only=local_only)
        if isinstance(ref, _Unknown):
            return None
        physical = schema.name if ref is None else ref.online_table
        encoded = [encode_key(k) for k in key_rows]
        mono = time.monotonic()
        # hot keys are kept in the in-process cache by a warmer even when it is otherwise off
        keep = self.options.local_cache_s > 0 or refresh_hold_s is not None
        out: list[_Row | None] = [None] * len(encoded)
        todo: dict[bytes, tuple[Any, ...]] = {}
        hits = 0
        for i, key in enumerate(encoded):
            row = self._local.get((physical, key), mono) if refresh_hold_s is None else None
            if row is None or (row.unresolved and any(row.status[i] == _UNRESOLVED for i in _index(schema, features))):
                if local_only:
                    return None
                todo.setdefault(key, key_rows[i])
            else:
                out[i] = row
                hits += 1
        tally.lookups += len(encoded)
        tally.local_hits += hits
        tally.local_misses += len(encoded) - hits
        if ref is not None:
            tally.snapshot_lookups += len(encoded)
        if todo:
            got = self._fetch(schema, features, physical, ref, list(todo.values()), list(todo), now_ms)
            fetched = dict(zip(todo, got, strict=True))
            if keep:
                hold = refresh_hold_s if refresh_hold_s is not None else self.options.local_cache_s
                self._local.put({(physical, k): row for k, row in fetched.items()}, mono + hold)
            out = [fetched[k] if row is None else row for row, k in zip(out, encoded, strict=True)]
        return [row for row in out if row is not None]

    def _fetch(
        self,
        schema: TableSchema,
        requested: Sequence[str],
        physical: str,
        ref: SnapshotRef | None,
        keys: list[tuple[Any, ...]],
        encoded: list[bytes],
        now_ms: int,
    ) -> list[_Row]:
        """All features of ``keys`` from the online cache; the requested ones it lacks from the
        versioned store."""
        features = schema.feature_names
        asked = _index(schema, requested)
        down: ServiceUnavailableError | None = None
        n = len(keys)
        try:
            values, times, statuses = self._read_cache(schema, physical, keys, encoded, now_ms)
        except NotFoundError:  # the online cache has never seen this table: everything is missing
            values, times, statuses = _nothing(n, len(features))
        except ServiceUnavailableError as exc:
            if self.options.on_cache_down == "raise":
                raise
            log.warning("online cache down (%s): reading %d keys of %s from the versioned store",
                        exc.message, n, schema.name)
            down = exc
            values, times, statuses = _nothing(n, len(features))
        need = [i for i in range(n) if MISSING in statuses[i] and any(statuses[i][j] == MISSING for j in asked)]
        with self._lock:
            if down is not None:
                self._stats.cache_errors += n
            else:
                self._stats.cache_hits += n - len(need)
                self._stats.cache_misses += len(need)
            self._stats.store_reads += len(need)
        if need:
            self._fill_from_store(schema, ref, keys, need, asked, values, times, statuses, now_ms, down)
        rows = []
        wanted = set(asked)
        for i in range(n):
            status = statuses[i]
            if MISSING in status:  # features not asked for and not in the cache: not looked up yet
                status = tuple(_UNRESOLVED if s == MISSING and j not in wanted else s for j, s in enumerate(status))
            rows.append(_Row.of(values[i], times[i], status))
        return rows

    def _read_cache(
        self, schema: TableSchema, physical: str, keys: list[tuple[Any, ...]], encoded: list[bytes], now_ms: int
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """Per key: values, version times and statuses of every feature, from the online cache.

        An :class:`OnlineBase` is read through its raw cell reads: a key or two cell by cell in
        Python, more column-wise (:func:`_rows_of`: decoded by type in one call each; docs/sdk.md
        has the measured gain); any other OnlineCache through its public ``get``. TTL is
        applied later, at assembly, so a cached cell can expire while it sits in the in-process
        cache.
        """
        features = schema.feature_names
        cache = self._stores.online_cache
        if not isinstance(cache, OnlineBase):
            got = cache.get(physical, keys, features, now_ms=now_ms).to_pydict()
            return (list(zip(*(got[f] for f in features), strict=True)),
                    list(zip(*(got[ts_column(f)] for f in features), strict=True)),
                    list(zip(*(got[status_column(f)] for f in features), strict=True)))
        cache.schema(physical)  # NotFoundError when the cache has never seen the table
        if len(encoded) > _CELL_BY_CELL_KEYS:
            return _rows_of(schema, cache.read_cells(physical, encoded, features))
        return _rows_cell_by_cell(schema, cache.read_stored(physical, encoded, features))

    def _fill_from_store(
        self,
        schema: TableSchema,
        ref: SnapshotRef | None,
        keys: list[tuple[Any, ...]],
        need: list[int],
        asked: Sequence[int],
        values: list[Any],
        times: list[Any],
        statuses: list[Any],
        now_ms: int,
        down: ServiceUnavailableError | None,
    ) -> None:
        """The requested features the online cache lacks, from the versioned store, in place."""
        features = schema.feature_names
        wanted = [j for j in asked if any(statuses[i][j] == MISSING for i in need)]
        names = [features[j] for j in wanted]
        store = self._stores.versioned
        try:
            if ref is None:
                found = store.get_latest(schema.name, [keys[i] for i in need], names, now_ms=now_ms)
            else:
                found = store.get_as_of(schema.name, [keys[i] for i in need], ref.as_of_ms, names)
        except NotFoundError:  # registered, never written: nothing to find
            return
        except ServiceUnavailableError as exc:
            if down is None:
                raise
            raise ServiceUnavailableError(
                exc.service, exc.address, f"{exc.message} (and {down.service} is down too)", hint=exc.hint
            ) from None
        got = found.to_pydict()
        hit = 0
        for k, i in enumerate(need):
            value, ts, status = list(values[i]), list(times[i]), list(statuses[i])
            got_any = False
            for j, name in zip(wanted, names, strict=True):
                stamp = got[ts_column(name)][k]
                if status[j] == MISSING and stamp is not None:
                    value[j], ts[j], status[j] = got[name][k], stamp, PRESENT
                    got_any = True
            values[i], times[i], statuses[i] = value, ts, status
            hit += got_any
        with self._lock:
            self._stats.store_found += hit

    # ------------------------------------------------------------------------------------ as of
    def _as_of(self, part: TablePart, key_rows: list[tuple[Any, ...]], as_of: AsOf) -> list[_Row]:
        if isinstance(as_of, Sequence) and not isinstance(as_of, str | bytes):
            times: int | list[int] = [to_millis(t, what="as_of") for t in as_of]
            query_times(times, len(key_rows))
        else:
            times = to_millis(as_of, what="as_of")
        if not key_rows:
            return []
        with self._lock:
            self._stats.as_of_lookups += len(key_rows)
        try:
            table = self._stores.versioned.get_as_of(part.schema.name, key_rows, times, list(part.features))
        except NotFoundError:  # registered, never written
            values, stamps, statuses = _nothing(len(key_rows), len(part.schema.feature_names))
            return [_Row.of(v, t, s) for v, t, s in zip(values, stamps, statuses, strict=True)]
        got = table.to_pydict()
        features = part.schema.feature_names
        wanted = set(part.features)
        columns = [got[f] if f in wanted else [None] * len(key_rows) for f in features]
        per_feature = [got[ts_column(f)] if f in wanted else [None] * len(key_rows) for f in features]
        rows_values = list(zip(*columns, strict=True))
        rows_times = list(zip(*per_feature, strict=True))
        return [
            _Row.of(rows_values[i], rows_times[i], tuple(MISSING if t is None else PRESENT for t in rows_times[i]))
            for i in range(len(key_rows))
        ]


def _index(schema: TableSchema, features: Sequence[str]) -> tuple[int, ...]:
    return _indexes(schema.feature_names, tuple(features))


@functools.lru_cache(maxsize=4096)
def _indexes(names: tuple[str, ...], features: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(names.index(f) for f in features)


@functools.lru_cache(maxsize=1024)
def _decoders(schema: TableSchema) -> tuple[Callable[[bytes], Any], ...]:
    return tuple(functools.partial(decode_value, f.dtype) for f in schema.features)


_Columns: TypeAlias = tuple[list[Any], list[Any], list[Any]]  # per key: values, times, statuses

# Up to this many keys a read from the online cache is decoded cell by cell: below it numpy's and
# Arrow's cost per call outweighs their gain per cell.
_CELL_BY_CELL_KEYS = 2


_STATUSES = np.array([PRESENT, MISSING], dtype=object)


def _rows_of(schema: TableSchema, cells: CellColumns) -> _Columns:
    """Per key: values, version times and statuses of every feature, from a column-wise read."""
    features = schema.feature_names
    shape = (len(features), cells.keys)
    columns = value_lists(schema, features, cells, cells.has_value)
    found = cells.found.reshape(shape)
    times = cells.ts.reshape(shape).astype(object)
    times[~found] = None
    statuses = _STATUSES[(~found).view(np.int8)].T.tolist()  # the two strings, not a new one per cell
    return list(zip(*columns, strict=True)), times.T.tolist(), statuses


def _rows_cell_by_cell(schema: TableSchema, raw: Sequence[Mapping[str, Stored]]) -> _Columns:
    """:func:`_rows_of` from a read's cells as a backend stores them, one dict per key."""
    features = schema.feature_names
    decoders = _decoders(schema)
    values, times, statuses = [], [], []
    for row in raw:
        cells = [row.get(name) for name in features]
        pairs = zip(cells, decoders, strict=True)
        values.append([None if c is None or c[2] is None else d(c[2]) for c, d in pairs])
        times.append([None if c is None else c[0] for c in cells])
        statuses.append([MISSING if c is None else PRESENT for c in cells])
    return values, times, statuses


def _nothing(n: int, width: int) -> tuple[list[Any], list[Any], list[Any]]:
    return [(None,) * width] * n, [(None,) * width] * n, [(MISSING,) * width] * n


def _assemble(columns: dict[str, list[Any]], part: TablePart, rows: list[_Row], ttl: int | None, now: int) -> None:
    """Add a part's ``<name>``, ``<name>__ts``, ``<name>__status`` columns; cells older than the
    TTL at ``now`` become ``expired`` (``ttl`` None: no check, as for ``as_of`` reads)."""
    pick = part.pick
    width = len(part.features)
    if rows:
        values = list(zip(*(pick(r.values) for r in rows), strict=True))
        times = list(zip(*(pick(r.ts) for r in rows), strict=True))
        statuses = list(zip(*(pick(r.status) for r in rows), strict=True))
    else:
        values = times = statuses = [()] * width
    limit = None if ttl is None else now - ttl
    stale = [] if limit is None else [j for j, r in enumerate(rows) if r.oldest is not None and r.oldest <= limit]
    for k, name in enumerate(part.names):
        v, t, s = list(values[k]), list(times[k]), list(statuses[k])
        for j in stale:
            if s[j] == PRESENT and t[j] is not None and limit is not None and t[j] <= limit:
                v[j], t[j], s[j] = None, None, EXPIRED
        columns[name], columns[ts_column(name)], columns[status_column(name)] = v, t, s
