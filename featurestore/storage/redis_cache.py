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
newest cell per (key, feature) and sent as one pipelined ``EVALSHA`` per key; multi-key reads are
one pipelined round trip of ``HMGET`` s.

Options: ``?prefix=fs`` (key prefix), ``?timeout_s=2``, ``?max_connections=64``.
Connection failures raise :class:`featurestore.errors.ServiceUnavailableError` (transient).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import SplitResult

from featurestore.errors import ConfigError, NotInstalledError, ServiceUnavailableError, StoreError
from featurestore.schema import TableSchema
from featurestore.storage.batches import schema_from_json, schema_to_json
from featurestore.storage.online import OnlineBase, Stored, Updates

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
    return int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else None


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
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise ServiceUnavailableError(
                "redis", self.address, str(exc) or type(exc).__name__,
                hint="start it with `featurestore services up`, or check the online_cache URI",
            ) from None
        except self._redis.RedisError as exc:
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
            return sum(int(n) for n in pipe.execute())

    def _read_raw(self, table: str, keys: list[bytes], features: Sequence[str]) -> list[dict[str, Stored]]:
        names = list(features)
        with self._errors():
            if len(keys) == 1:
                replies = [self._client.hmget(self._key(table, keys[0]), names)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for key in keys:
                    pipe.hmget(self._key(table, key), names)
                replies = pipe.execute()
        return [{n: _parse(v) for n, v in zip(names, reply, strict=True) if v is not None} for reply in replies]

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
        self._pool.disconnect()
