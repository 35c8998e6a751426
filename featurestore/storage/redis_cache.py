"""``redis://host:port/db``: the online cache in Redis.

Layout: one hash per (feature table, entity key), ``<prefix>:<table>:<encoded key>``; one field
per feature holding ``b"<version_ms>,<seq>,"`` followed by the encoded value
(``types.encode_value``, possibly empty: an empty string), or just ``b"<version_ms>,<seq>"``
(no third comma) for an explicit null value. So a read of n features is one ``HMGET`` and a
write compares and sets in one step. Table definitions live in ``<prefix>:__schema__:<table>``
as JSON.

Writes go through a Lua script (:data:`_WRITE_LUA`): per field, the new cell lands only if its
(version_ms, seq) is greater than the stored one, atomically on the server, so replays and
out-of-order writes never regress a value, whichever process writes. A batch is reduced to the
newest cell per (key, feature) and sent as one pipelined ``EVALSHA`` per key, with a ``SET NX``
of the table's definition: a Redis that restarted empty (it is a cache: no persistence needed)
gets the definition back with the next write, whichever process reads it afterwards.

A read of n keys is one round trip: one ``HGETALL`` per key (``HMGET`` of the requested fields
when they are fewer than half the table's features: for a small hash Redis finds each ``HMGET``
field by a scan, so 50 of them cost it 3x an ``HGETALL``), packed into one request on a pooled
socket of its own (:class:`_ReadSockets`) and parsed by a hiredis reader as the bytes arrive,
without redis-py's steps per reply. The replies are decoded column-wise (:func:`cell_columns`):
Arrow copies the cells into one buffer, numpy finds their commas, one Arrow cast parses the
version times, and ``online.cells_to_result`` decodes the values by type, with no Python call per
cell. A read of a key or two (:data:`_PER_CELL_MAX` cells) is parsed cell by cell instead
(:func:`few_cells`), which is cheaper there.

Options: ``?prefix=fs`` (key prefix), ``?timeout_s=2``, ``?max_connections=64``.
Connection failures raise :class:`featurestore.errors.ServiceUnavailableError` (transient).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import SplitResult

import numpy as np
import pyarrow as pa

from featurestore.errors import ConfigError, NotInstalledError, ServiceUnavailableError, StoreError
from featurestore.schema import TableSchema
from featurestore.storage.batches import schema_from_json, schema_to_json
from featurestore.storage.online import CellColumns, Ints, OnlineBase, Stored, Updates

# ARGV: (field, version_ms, seq, "," .. value or "" for a null) per cell. Returns how many landed.
_WRITE_LUA = """
local landed = 0
for i = 1, #ARGV, 4 do
  local ts = tonumber(ARGV[i + 1])
  local seq = tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  local take = true
  if old then
    local ots, oseq = string.match(old, '^(%-?%d+),(%-?%d+)')
    ots = tonumber(ots)
    oseq = tonumber(oseq)
    if ts < ots or (ts == ots and seq <= oseq) then take = false end
  end
  if take then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ',' .. ARGV[i + 2] .. ARGV[i + 3])
    landed = landed + 1
  end
end
return landed
"""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise NotInstalledError("the redis online cache needs the 'redis' package", hint="pip install redis") from None
    return redis


def _parse(data: bytes) -> Stored:
    parts = data.split(b",", 2)
    try:
        return int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else None
    except (ValueError, IndexError):
        raise _malformed() from None


def _bulk(data: bytes) -> bytes:
    """One argument of a Redis command in the wire protocol (RESP2 bulk string)."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


@functools.lru_cache(maxsize=256)
def _hmget_fields(fields: tuple[str, ...]) -> bytes:
    return b"".join(_bulk(f.encode()) for f in fields)


def _malformed() -> StoreError:
    return StoreError(
        "the online cache holds a cell that is not '<version_ms>,<seq>[,<value>]'",
        hint="the hash was not written by this store; delete the key (delete_key) and rewrite it",
    )


@functools.lru_cache(maxsize=256)
def _names(features: tuple[str, ...]) -> dict[bytes, str]:
    return {name.encode(): name for name in features}


@functools.lru_cache(maxsize=256)
def _positions(features: tuple[str, ...]) -> dict[bytes, int]:
    return {name.encode(): j for j, name in enumerate(features)}


# Up to this many cells (keys x features: a key or two of a wide table) a read is parsed cell by
# cell in Python: below it numpy's and Arrow's cost per call outweighs their gain per cell.
_PER_CELL_MAX = 128


def _rows(replies: Sequence[Any], features: Sequence[str], whole: bool) -> list[dict[str, Stored]]:
    """The cells of one reply per key (see :func:`cell_columns`) as ``_read_raw`` returns them."""
    if whole:
        asked = _names(tuple(features))
        return [{asked[f]: _parse(v) for f, v in zip(r[0::2], r[1::2], strict=True) if f in asked} for r in replies]
    return [{n: _parse(v) for n, v in zip(features, r, strict=True) if v is not None} for r in replies]


def few_cells(replies: Sequence[Any], features: Sequence[str], whole: bool) -> CellColumns:
    """:func:`cell_columns` of a read of a few cells, parsed one by one in Python; the values stay
    where they are, in one join of the stored cells."""
    n = len(replies)
    stored: list[bytes | None] = [None] * (n * len(features))
    if whole:
        index = _positions(tuple(features))
        for i, reply in enumerate(replies):
            for field, cell in zip(reply[0::2], reply[1::2], strict=True):
                j = index.get(field)
                if j is not None:
                    stored[j * n + i] = cell
    else:
        for i, reply in enumerate(replies):
            stored[i::n] = reply
    found = [cell is not None for cell in stored]
    ts = [0] * len(stored)
    has_value = [False] * len(stored)
    start = [0] * len(stored)
    length = [0] * len(stored)
    at = 0
    for c, cell in enumerate(stored):
        if cell is None:
            continue
        ts[c], _, value = _parse(cell)
        if value is not None:  # the cell's last bytes
            has_value[c] = True
            start[c] = at + len(cell) - len(value)
            length[c] = len(value)
        at += len(cell)
    data = np.frombuffer(b"".join([cell for cell in stored if cell is not None]), np.uint8)
    return CellColumns(n, np.array(found, np.bool_), np.array(ts, np.int64), np.array(has_value, np.bool_),
                       np.array(start, np.int64), np.array(length, np.int64), data)


def cell_columns(replies: Sequence[Any], features: Sequence[str], whole: bool) -> CellColumns:
    """The cells of one reply per key: ``HGETALL`` replies (``whole``: flat field, value lists, in
    any field order, other fields ignored) or ``HMGET`` replies of ``features`` (a value or None each)."""
    n, m = len(replies), len(features)
    if whole:
        index = _positions(tuple(features))
        values: list[bytes | None] = []
        perms: list[Ints] = []
        last: list[bytes] | None = None
        perm = np.zeros(0, np.int64)
        for reply in replies:
            if not reply:
                continue
            fields = reply[0::2]
            if fields != last:  # keys written by the same batches list their fields in one order
                perm = np.fromiter((index.get(f, -1) for f in fields), np.int64, len(fields))
                last = fields
            perms.append(perm)
            values += reply[1::2]
        feature = np.concatenate(perms) if perms else np.zeros(0, np.int64)
        key = np.repeat(np.arange(n, dtype=np.int64), np.fromiter(map(len, replies), np.int64, n) // 2)
    else:
        values = list(itertools.chain.from_iterable(replies))
        feature = np.tile(np.arange(m, dtype=np.int64), n)
        key = np.repeat(np.arange(n, dtype=np.int64), m)
    return _cells(pa.array(values, pa.large_binary()), feature, key, n, m)


def _cells(stored: pa.Array, feature: Ints, key: Ints, n: int, m: int) -> CellColumns:
    """Parse the stored cells ``<version_ms>,<seq>[,<value>]`` (null: no cell) at (``feature``,
    ``key``) positions (feature -1: not asked for) in bulk, over the one buffer Arrow copied them
    to: numpy finds the commas, and one Arrow cast parses the times (strings over that buffer)."""
    offsets = np.frombuffer(stored.buffers()[1], np.int64, len(stored) + 1)
    blob = stored.buffers()[2] or pa.py_buffer(b"")
    data = np.frombuffer(blob, np.uint8)
    wanted = feature >= 0
    if stored.null_count:
        wanted &= stored.is_valid().to_numpy(zero_copy_only=False)
    if wanted.all():  # the usual case: slices, not gathers
        asked = np.arange(len(stored), dtype=np.int64)
        starts, ends = offsets[:-1], offsets[1:]
    else:
        asked = np.flatnonzero(wanted)
        starts, ends = offsets[asked], offsets[asked + 1]
        feature, key = feature[asked], key[asked]
    commas = np.flatnonzero(data == ord(","))
    first = np.searchsorted(commas, starts)
    after = np.append(commas, len(data))  # a comma past the end, for the cells that lack one
    ts_end = after[first]
    if np.any(ts_end >= ends):
        raise _malformed()
    seq_end = after[np.minimum(first + 1, len(commas))]
    has_value = seq_end < ends  # no third comma: an explicit null
    value_start = np.where(has_value, seq_end + 1, ends)
    # strings [start, ts_end) and [ts_end, next start): the times are the even ones
    bounds = np.empty(2 * len(asked) + 1, np.int64)
    bounds[0:-1:2] = starts
    bounds[1::2] = ts_end
    bounds[-1] = len(data)
    try:
        texts = pa.Array.from_buffers(pa.large_string(), 2 * len(asked), [None, pa.py_buffer(bounds), blob])
        ts = texts.take(pa.array(np.arange(0, 2 * len(asked), 2))).cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        raise _malformed() from None
    cell = feature * n + key
    found = np.zeros(n * m, np.bool_)
    found[cell] = True
    times = np.zeros(n * m, np.int64)
    times[cell] = ts
    valued = np.zeros(n * m, np.bool_)
    valued[cell] = has_value
    start = np.zeros(n * m, np.int64)
    start[cell] = value_start
    length = np.zeros(n * m, np.int64)
    length[cell] = ends - value_start
    return CellColumns(n, found, times, valued, start, length, data)


class _ReadSockets:
    """Pooled sockets for reads: a request of many commands is sent at once and its replies parsed
    by a hiredis reader as they arrive. A socket that fails or is left mid-reply is closed, never
    reused; the pool starts afresh in a forked child."""

    def __init__(self, host: str, port: int, db: int, timeout_s: float, max_idle: int) -> None:
        import hiredis

        self._hiredis = hiredis
        self._address = (host, port)
        self._db = db
        self._timeout_s = timeout_s
        self._max_idle = max_idle
        self._idle: list[tuple[socket.socket, bytearray]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.errors = hiredis.HiredisError  # a Redis error reply, or bytes that are not RESP

    def _connect(self) -> tuple[socket.socket, bytearray]:
        sock = socket.create_connection(self._address, timeout=self._timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the timeout set in the kernel (a blocked send or recv fails with EAGAIN), not by Python,
        # which would poll() before every recv
        sock.settimeout(None)
        seconds = int(self._timeout_s)
        timeval = struct.pack("ll", seconds, int((self._timeout_s - seconds) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        opened = (sock, bytearray(1 << 16))
        if self._db:
            try:
                (reply,) = self._exchange(opened, b"*2\r\n$6\r\nSELECT\r\n" + _bulk(str(self._db).encode()), 1)
            except BaseException:
                sock.close()
                raise
            if reply != b"OK":
                sock.close()
                raise self._hiredis.ReplyError(f"SELECT {self._db}: {reply!r}")
        return opened

    def _exchange(self, opened: tuple[socket.socket, bytearray], request: bytes, replies: int) -> list[Any]:
        sock, buffer = opened
        sock.sendall(request)
        reader = self._hiredis.Reader()
        out: list[Any] = []
        while len(out) < replies:
            got = sock.recv_into(buffer)
            if not got:
                raise ConnectionError("the server closed the connection")
            reader.feed(buffer, 0, got)  # type: ignore[arg-type]  # any buffer; the stub says bytes
            reply = reader.gets()
            while reply is not False:
                out.append(reply)
                reply = reader.gets()
        return out

    def request(self, request: bytes, replies: int) -> list[Any]:
        """The ``replies`` replies to ``request`` (that many RESP commands); a Redis error reply
        raises ``hiredis.ReplyError`` once every reply is read. A pooled socket the server has
        closed since (a restart, a client kill, an idle timeout) is replaced and the request sent
        again, once: reads change nothing."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._idle, self._pid = [], os.getpid()
            opened = self._idle.pop() if self._idle else None
        pooled = opened is not None
        if opened is None:
            opened = self._connect()
        try:
            out = self._exchange(opened, request, replies)
        except ConnectionError:
            opened[0].close()
            if not pooled:
                raise
            opened = self._connect()
            try:
                out = self._exchange(opened, request, replies)
            except BaseException:
                opened[0].close()
                raise
        except BaseException:
            opened[0].close()
            raise
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(opened)
                opened = None
        if opened is not None:
            opened[0].close()
        for reply in out:
            if isinstance(reply, self._hiredis.ReplyError):
                raise reply
        return out

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()


class RedisCache(OnlineBase):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        prefix: str = "fs",
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        super().__init__()
        redis = _import_redis()
        self._redis = redis
        self.address = f"{host}:{port}"
        self.uri = f"redis://{host}:{port}/{db}"
        self.prefix = prefix
        self._pool = redis.ConnectionPool(
            host=host, port=port, db=db, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            max_connections=max_connections,
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._write_script = self._client.register_script(_WRITE_LUA)
        self._reads = _ReadSockets(host, port, db, timeout_s, max_connections)

    @classmethod
    def from_uri(cls, parts: SplitResult, options: dict[str, str]) -> RedisCache:
        unknown = set(options) - {"prefix", "timeout_s", "max_connections"}
        if unknown:
            raise ConfigError(f"redis URI {parts.geturl()!r}: unknown options {sorted(unknown)}")
        try:
            db = int(parts.path.strip("/") or "0")
            return cls(
                parts.hostname or "127.0.0.1",
                parts.port or 6379,
                db,
                prefix=options.get("prefix", "fs"),
                timeout_s=float(options.get("timeout_s", "2")),
                max_connections=int(options.get("max_connections", "64")),
            )
        except ValueError as exc:
            raise ConfigError(f"redis URI {parts.geturl()!r}: {exc}") from None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError, OSError) as exc:
            raise ServiceUnavailableError(
                "redis", self.address, str(exc) or type(exc).__name__,
                hint="start it with `featurestore services up`, or check the online_cache URI",
            ) from None
        except (self._redis.RedisError, self._reads.errors) as exc:
            raise StoreError(f"redis at {self.address} refused the request: {exc}") from None

    def _key(self, table: str, key: bytes) -> bytes:
        return f"{self.prefix}:{table}:".encode() + key

    def _schema_key(self, table: str) -> str:
        return f"{self.prefix}:__schema__:{table}"

    def _load_schema(self, table: str) -> TableSchema | None:
        with self._errors():
            raw = self._client.get(self._schema_key(table))
        return None if raw is None else schema_from_json(raw)

    def _save_schema(self, schema: TableSchema) -> None:
        with self._errors():
            self._client.set(self._schema_key(schema.name), schema_to_json(schema))

    def _apply(self, table: str, updates: Updates) -> int:
        per_key: dict[bytes, list[bytes | int | str]] = {}
        for (key, feature), (ts, seq, value) in updates.items():
            per_key.setdefault(key, []).extend((feature, ts, seq, b"" if value is None else b"," + value))
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for key, args in per_key.items():
                self._write_script(keys=[self._key(table, key)], args=args, client=pipe)
            # a Redis that restarted empty lost the definition with the values: the writes bring
            # both back (NX: a definition another process extended since is kept)
            schema = self._schemas.get(table)  # known: OnlineBase.write reads it first
            if schema is not None:
                pipe.set(self._schema_key(table), schema_to_json(schema), nx=True)
            return sum(int(n) for n in pipe.execute()[: len(per_key)])

    def _whole(self, table: str, features: Sequence[str]) -> bool:
        """Read whole hashes (HGETALL) rather than the fields (HMGET): for half the features or more."""
        schema = self._schemas.get(table)
        return schema is not None and 2 * len(features) >= len(schema.features)

    def _fetch(self, table: str, keys: Sequence[bytes], fields: Sequence[str] | None) -> list[Any]:
        """One reply per key in one round trip: ``HGETALL`` (``fields`` None) or ``HMGET fields``."""
        prefix = self._key(table, b"")
        if fields is None:
            head, tail = b"*2\r\n$7\r\nHGETALL\r\n", b""
        else:
            head, tail = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2), _hmget_fields(tuple(fields))
        request = b"".join([head + _bulk(prefix + key) + tail for key in keys])
        with self._errors():
            return self._reads.request(request, len(keys))

    def _read_cells(self, table: str, keys: list[bytes], features: Sequence[str]) -> CellColumns:
        whole = self._whole(table, features)
        replies = self._fetch(table, keys, None if whole else features)
        if len(keys) * len(features) <= _PER_CELL_MAX:
            return few_cells(replies, features, whole)
        return cell_columns(replies, features, whole)

    def _read_raw(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        whole = self._whole(table, features)
        return _rows(self._fetch(table, keys, None if whole else features), features, whole)

    def _delete(self, table: str, key: bytes) -> None:
        with self._errors():
            self._client.delete(self._key(table, key))

    def _drop(self, table: str) -> None:
        with self._errors():
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=f"{self.prefix}:{table}:*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)
            self._client.delete(self._schema_key(table))

    def close(self) -> None:
        self._reads.close()
        self._pool.disconnect()
