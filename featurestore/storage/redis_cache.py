"""``redis://host:port/db``: the online cache in Redis.

Layout: one string per (feature table, entity key), ``<prefix>:<table>#<encoded key>``, holding
every feature's latest cell ``(version_ms, seq, encoded value or null)`` packed by
:mod:`featurestore.storage.packed_rows` (field names, fixed-width records, then the values).
Table definitions live in ``<prefix>:__schema__:<table>`` as JSON.

Writes go through that module's Lua script: per field, the new cell lands only if its
(version_ms, seq) is greater than the stored one, atomically on the server, so replays and
out-of-order writes never regress a value, whichever process writes. A batch is reduced to the
newest cell per (key, feature) and sent as one request of an ``EVALSHA`` per key, with a ``SET NX``
of the table's definition: a Redis that restarted empty (it is a cache: no persistence needed)
gets the definition back with the next write, whichever process reads it afterwards, and the
script again (``SCRIPT LOAD``) when it answers ``NOSCRIPT``.

A read of n keys is one round trip: one ``MGET`` of their rows. Reads and writes are sent on
pooled sockets of their own (:class:`_Sockets`) as one request of RESP bytes built here, and the
replies parsed by a hiredis reader as the bytes arrive, without redis-py's steps per command and
reply (a quarter of the ingestion sink's Python time in a py-spy profile of a backfill). The rows
are read in place (``packed_rows.cell_columns``: numpy views of their records, no Python object
per cell), and ``online.cells_to_result`` decodes the values by type. A read of one key views its
row's records in place (``packed_rows.one_row_cells``); a read of two unpacks them in Python,
cheaper there.

The layout before packed rows (a hash per key at ``<prefix>:<table>:<encoded key>``) is not read:
after an upgrade the cache fills again from the writers, as after a restart of Redis, and
``drop_table`` removes the old keys too. A value of another type at a row's key (another
program's) reads as no row (``MGET`` skips it) and fails writes with WRONGTYPE.

Options: ``?prefix=fs`` (key prefix), ``?timeout_s=2``, ``?max_connections=64``.
Connection failures raise :class:`featurestore.errors.ServiceUnavailableError` (transient).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import SplitResult

from featurestore.errors import ConfigError, NotInstalledError, ServiceUnavailableError, StoreError
from featurestore.schema import TableSchema
from featurestore.storage import packed_rows
from featurestore.storage.batches import schema_from_json, schema_to_json
from featurestore.storage.online import CellColumns, OnlineBase, Stored, Updates


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise NotInstalledError("the redis online cache needs the 'redis' package", hint="pip install redis") from None
    return redis


def _bulk(data: bytes) -> bytes:
    """One argument of a Redis command in the wire protocol (RESP2 bulk string)."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Sockets:
    """Pooled sockets for requests that may be sent twice (reads, and the newer-wins writes): a
    request of many commands is sent at once and its replies parsed by a hiredis reader as they
    arrive. A socket that fails or is left mid-reply is closed, never reused; the pool starts
    afresh in a forked child."""

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
        again, once: a read changes nothing, a newer-wins write nothing the first did not."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._idle, self._pid = [], os.getpid()
            opened = self._idle.pop() if self._idle else None
        while True:
            pooled = opened is not None
            if opened is None:
                opened = self._connect()
            try:
                out = self._exchange(opened, request, replies)
                break
            except ConnectionError:
                opened[0].close()
                if not pooled:
                    raise
                opened = None  # the server closed the pooled socket since: once more on a new one
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
        self._write_script = self._client.register_script(packed_rows.WRITE_LUA)
        self._evalsha = b"$7\r\nEVALSHA\r\n" + _bulk(self._write_script.sha.encode()) + b"$1\r\n1\r\n"
        self._sockets = _Sockets(host, port, db, timeout_s, max_connections)

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
        except (self._redis.RedisError, self._sockets.errors) as exc:
            hint = None
            if "WRONGTYPE" in str(exc):
                hint = ("a key of the table holds another type than a packed row (another program's): "
                        "delete it, or drop the table's cache (drop_table) and let the writers refill it")
            raise StoreError(f"redis at {self.address} refused the request: {exc}", hint=hint) from None

    def _key(self, table: str, key: bytes) -> bytes:
        """A key's packed row: ``<prefix>:<table>#<encoded key>`` (``#`` is in no table name, so no
        key of the hash layout before, ``<prefix>:<table>:<key>``, is ever read as one)."""
        return f"{self.prefix}:{table}#".encode() + key

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
        per_key: dict[bytes, list[bytes]] = {}  # per row key: its cells' three arguments, in RESP
        names: dict[str, bytes] = {}
        for (key, feature), cell in updates.items():
            name = names.get(feature) or names.setdefault(feature, _bulk(feature.encode()))
            times, value = packed_rows.cell_args(cell)
            args = per_key.get(key)
            if args is None:
                args = per_key[key] = []
            args.append(b"%s$16\r\n%s\r\n$%d\r\n%s\r\n" % (name, times, len(value), value))
        parts: list[bytes] = []
        for key, args in per_key.items():  # EVALSHA <sha> 1 <row key> <field, times, value>...
            parts += (b"*%d\r\n" % (4 + 3 * len(args)), self._evalsha, _bulk(self._key(table, key)), *args)
        # a Redis that restarted empty lost the definition with the values: the writes bring both
        # back (NX: a definition another process extended since is kept)
        schema = self._schemas.get(table)  # known: OnlineBase.write reads it first
        if schema is not None:
            parts += (b"*4\r\n$3\r\nSET\r\n", _bulk(self._schema_key(table).encode()),
                      _bulk(schema_to_json(schema).encode()), b"$2\r\nNX\r\n")
        request = b"".join(parts)
        replies = len(per_key) + (schema is not None)
        with self._errors():
            try:
                landed = self._sockets.request(request, replies)
            except self._sockets.errors as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                self._client.script_load(packed_rows.WRITE_LUA)  # Redis restarted, or SCRIPT FLUSH
                landed = self._sockets.request(request, replies)  # whole again: newer-wins writes are idempotent
            return sum(int(n) for n in landed[: len(per_key)])

    def _fetch(self, table: str, keys: Sequence[bytes]) -> list[Any]:
        """One reply per key (its packed row, or None) in one round trip: one ``MGET`` (a hundred
        ``GET``s cost Redis and the client a command and a reply each)."""
        prefix = self._key(table, b"")
        size = len(prefix)
        request = b"".join([b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1),
                            *[b"$%d\r\n%s%s\r\n" % (size + len(key), prefix, key) for key in keys]])
        with self._errors():
            (rows,) = self._sockets.request(request, 1)
        return rows  # type: ignore[no-any-return]

    def read_cells(self, table: str, keys: list[bytes], features: Sequence[str]) -> CellColumns:
        return packed_rows.read_cells(self._fetch(table, keys), features)

    def read_stored(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        return packed_rows.rows(self._fetch(table, keys), features)

    def _delete(self, table: str, key: bytes) -> None:
        with self._errors():
            self._client.delete(self._key(table, key))

    def _drop(self, table: str) -> None:
        with self._errors():
            batch: list[bytes] = []
            rows, old_layout = f"{self.prefix}:{table}#*", f"{self.prefix}:{table}:*"
            for name in itertools.chain(self._client.scan_iter(match=rows, count=1000),
                                        self._client.scan_iter(match=old_layout, count=1000)):
                batch.append(name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch.clear()
            if batch:
                self._client.unlink(*batch)
            self._client.delete(self._schema_key(table))

    def close(self) -> None:
        self._sockets.close()
        self._pool.disconnect()
