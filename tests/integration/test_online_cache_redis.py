"""The OnlineCache contract on Redis (127.0.0.1:6379), with and without the in-process front,
Redis reads (unpacked row by row and column-wise) against the memory cache, and the write
script's packed rows against ``packed_rows.pack``."""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from featurestore.errors import NotFoundError, ServiceUnavailableError, StoreError
from featurestore.schema import Field, TableSchema
from featurestore.services import ports
from featurestore.storage import packed_rows
from featurestore.storage.online import OnlineBase, Stored, open_online_cache
from featurestore.storage.redis_cache import RedisCache
from featurestore.types import ValueType
from tests.contract import online_cache_suite as suite
from tests.contract.online_cache_suite import *  # noqa: F403

PREFIX = f"fstest{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["", "&local_cache_s=30"])
def ocache(services: object, request: pytest.FixtureRequest) -> Iterator[OnlineBase]:
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}{request.param}")
    yield cache
    suite.cleanup()
    cache.close()


def test_writes_from_two_clients_never_regress(services: object) -> None:
    """The compare-and-set runs in Redis, so it holds across processes, not just in one client."""
    a = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    b = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    s = suite.new_table(a)
    assert suite.write(a, s, suite.v(1, suite.T0 + 5, 1, clicks=5)) == 1
    assert suite.write(b, s, suite.v(1, suite.T0, 2, clicks=0)) == 0
    assert suite.got(b.get(s.name, [1], ["clicks"]), "clicks") == [(5, suite.T0 + 5, "present")]
    suite.cleanup()
    a.close()
    b.close()


def test_unreachable_redis_is_a_transient_error() -> None:
    cache = RedisCache("127.0.0.1", 1, timeout_s=0.5)
    with pytest.raises(ServiceUnavailableError) as info:
        cache.schema("anything")
    assert info.value.transient and info.value.service == "redis"
    for features in (["a"], ["a", "b"]):  # the reads' own round trip too
        with pytest.raises(ServiceUnavailableError):
            cache.read_stored("anything", [b"1"], features)


def _twin_writes(caches: list[OnlineBase], schema: TableSchema) -> None:
    """The same versions into each cache: keys 0..299, three write groups with their own features
    (so the rows list their fields in different orders), explicit nulls, several times."""
    rng = random.Random(5)
    names = schema.feature_names
    for batch_no in range(3):
        subset = rng.sample(names, rng.randint(1, len(names)))
        rows = [suite.v(k, suite.T0 + rng.randrange(-50, 50), batch_no * 1000 + k,
                        **{n: None if rng.random() < 0.1 else _value(schema.feature(n).dtype, k, rng) for n in subset})
                for k in range(0, 300, rng.choice([1, 2]))]
        for cache in caches:
            suite.write(cache, schema, *rows)


def _value(dtype: ValueType, k: int, rng: random.Random) -> Any:
    return {ValueType.INT64: k - 150, ValueType.DOUBLE: k / 3, ValueType.STRING: f"s{k},", ValueType.BOOL: k % 2 == 0,
            ValueType.BYTES: b"b,\x00" * (k % 3), ValueType.FLOAT_LIST: [k / 7] * (k % 3),
            ValueType.STRING_LIST: ["a,b"] * (k % 2)}[dtype]


@pytest.mark.parametrize("asked", [None, 1, 3, 8])
def test_reads_match_the_memory_cache(services: object, asked: int | None) -> None:
    """Redis reads (one key: parsed cell by cell; many: column-wise) give what memory:// gives."""
    redis = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    memory = open_online_cache("memory://")
    features = tuple(Field(f"{t.value}_{i}", t) for i in range(2) for t in ValueType if t is not ValueType.BYTES)
    schema = suite.new_table(redis, ttl_ms=60, features=(*features, Field("bytes_0", ValueType.BYTES)))
    memory.ensure_table(schema)
    _twin_writes([redis, memory], schema)
    names = None if asked is None else random.Random(asked).sample(schema.feature_names, asked)
    keys = [*range(0, 320, 3), 7, 7, 1000]  # duplicates and never-written keys
    for now in (suite.T0, suite.T0 + 20, suite.T0 + 200):  # some, and then all, versions expired
        for some in (keys, keys[:1], keys[-2:]):
            assert redis.get(schema.name, some, names, now_ms=now).equals(
                memory.get(schema.name, some, names, now_ms=now))
    asked_names = names or schema.feature_names
    encoded = [str(k).encode() for k in keys]
    assert redis.read_stored(schema.name, encoded, asked_names) == memory.read_stored(schema.name, encoded, asked_names)
    suite.cleanup()
    redis.close()


def test_keys_that_are_not_packed_rows(services: object) -> None:
    """A hash of the layout before packed rows is never read (the cache fills again from the
    writers) and drop_table removes it; a hash at a row's key reads as no row and fails writes with
    WRONGTYPE and a hint; a string that is not a packed row fails reads and writes with a
    StoreError, and the pooled read socket stays usable after each failure."""
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert isinstance(cache, RedisCache)
    s = suite.new_table(cache)
    suite.write(cache, s, *[suite.v(k, suite.T0, k, clicks=k) for k in range(200)])
    old_layout = f"{PREFIX}:{s.name}:7".encode()
    cache._client.hset(old_layout, "clicks", b"1,1,x")
    assert suite.got(cache.get(s.name, [7], ["clicks"]), "clicks") == [(7, suite.T0, "present")]
    cache._client.delete(cache._key(s.name, b"7"))
    cache._client.hset(cache._key(s.name, b"7"), "clicks", b"1,1,x")
    assert suite.got(cache.get(s.name, [7, 8], ["clicks"]), "clicks") == [(None, None, "missing"),
                                                                           (8, suite.T0, "present")]
    with pytest.raises(StoreError, match="WRONGTYPE") as info:
        suite.write(cache, s, suite.v(7, suite.T0 + 1, 1, clicks=1))
    assert "drop_table" in str(info.value)
    cache._client.delete(cache._key(s.name, b"7"))
    cache._client.set(cache._key(s.name, b"7"), b"not a packed row")
    for keys in ([7], list(range(200))):
        with pytest.raises(StoreError, match="not a packed row"):
            cache.get(s.name, keys, ["clicks"])
    with pytest.raises(StoreError, match="not a packed row of version 1"):
        suite.write(cache, s, suite.v(7, suite.T0 + 1, 1, clicks=1))
    assert suite.got(cache.get(s.name, [8, 9], ["clicks"]), "clicks") == [(8, suite.T0, "present"),
                                                                           (9, suite.T0, "present")]
    cache.drop_table(s.name)
    assert cache._client.exists(old_layout, cache._key(s.name, b"8")) == 0
    suite.cleanup()
    cache.close()


def test_the_write_script_packs_as_the_reference(services: object) -> None:
    """The Lua script's rows are byte for byte ``packed_rows.pack`` of the newest cell per field,
    in the order the fields were first written: newer and older writes, a tie on time decided by
    seq, an explicit null, an empty value, a field added by a later write, negative times, and
    times and seqs over the whole int64 range (one apart past 2^53 too)."""
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert isinstance(cache, RedisCache)
    big = 2**63 - 1  # past 2^53, where Lua's doubles round: compared and kept exactly
    steps: list[tuple[dict[tuple[bytes, str], Stored], dict[str, Stored]]] = [
        ({(b"k", "b"): (5, 1, b"x"), (b"k", "a"): (-7, 2, None)}, {"b": (5, 1, b"x"), "a": (-7, 2, None)}),
        ({(b"k", "b"): (5, 1, b"older seq"), (b"k", "a"): (-8, 9, b"older")}, {"b": (5, 1, b"x"), "a": (-7, 2, None)}),
        ({(b"k", "b"): (5, 2, b""), (b"k", "c"): (big, big, b"\x00,\xff")},
         {"b": (5, 2, b""), "a": (-7, 2, None), "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "a"): (0, 0, b"now a value" * 100)},
         {"b": (5, 2, b""), "a": (0, 0, b"now a value" * 100), "c": (big, big, b"\x00,\xff")}),
        # seqs one apart beyond 2^53 (a replay's file index << 32 | row): the greater wins, exactly
        ({(b"k", "c"): (big, big - 1, b"older")}, {"b": (5, 2, b""), "a": (0, 0, b"now a value" * 100),
                                                   "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "b"): (5, 2**53 + 1, b"newer"), (b"k", "a"): (-(2**63), 2**62, b"older")},
         {"b": (5, 2**53 + 1, b"newer"), "a": (0, 0, b"now a value" * 100), "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "b"): (5, 2**53, b"older by one")},
         {"b": (5, 2**53 + 1, b"newer"), "a": (0, 0, b"now a value" * 100), "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "a"): (-1, 2**63 - 1, b"older: -1 < 0")},
         {"b": (5, 2**53 + 1, b"newer"), "a": (0, 0, b"now a value" * 100), "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "a"): (1, -(2**63), None)},
         {"b": (5, 2**53 + 1, b"newer"), "a": (1, -(2**63), None), "c": (big, big, b"\x00,\xff")}),
        ({(b"k", "d"): (7, 2**53, b"x")},
         {"b": (5, 2**53 + 1, b"newer"), "a": (1, -(2**63), None), "c": (big, big, b"\x00,\xff"),
          "d": (7, 2**53, b"x")}),
        ({(b"k", "d"): (7, 2**53 + 1, b"y")},  # equal as doubles: a float comparison would drop it
         {"b": (5, 2**53 + 1, b"newer"), "a": (1, -(2**63), None), "c": (big, big, b"\x00,\xff"),
          "d": (7, 2**53 + 1, b"y")}),
    ]
    for updates, want in steps:
        cache._apply("packing", updates)
        row = cache._client.get(cache._key("packing", b"k"))
        assert row == packed_rows.pack(want)
        assert packed_rows.unpack(row) == want
    cache._client.delete(cache._key("packing", b"k"))
    cache.close()


def test_reads_of_another_db_and_replies_larger_than_one_receive(services: object) -> None:
    """Reads go over sockets of their own: they select the URI's database, and a reply of many
    receives (100 keys of 4 KiB values, ~400 KiB) parses whole."""
    schema = TableSchema(f"t{uuid.uuid4().hex[:6]}", (Field("user_id", ValueType.INT64),),
                         (Field("blob", ValueType.STRING), Field("n", ValueType.INT64)))
    db3 = open_online_cache(f"redis://127.0.0.1:{ports.REDIS_PORT}/3?prefix={PREFIX}")
    db0 = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    try:
        db3.ensure_table(schema)
        suite.write(db3, schema, *[suite.v(k, suite.T0, k, blob=f"{k:04d}" * 1024, n=k) for k in range(100)])
        got = db3.get(schema.name, list(range(100)), now_ms=suite.T0 + 1)
        assert got.column("blob").to_pylist() == [f"{k:04d}" * 1024 for k in range(100)]
        assert got.column("n").to_pylist() == list(range(100))
        with pytest.raises(NotFoundError):  # db 0 holds no such table
            db0.get(schema.name, [1])
    finally:
        db3.drop_table(schema.name)
        db3.close()
        db0.close()


def test_a_server_that_never_answers_a_read_times_out_as_transient() -> None:
    """A read that gets no reply fails after timeout_s with ServiceUnavailableError, not a hang."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cache = RedisCache("127.0.0.1", silent.getsockname()[1], timeout_s=0.3)
        with pytest.raises(ServiceUnavailableError):
            cache.read_stored("anything", [b"1"], ["a"])
        cache.close()


def test_a_redis_that_restarted_empty_gets_the_definition_back_with_the_next_write(services: object) -> None:
    """A writer that read the definition before Redis lost everything (a restart without
    persistence) restores it with its next write: a new reader finds the table and the value."""
    writer = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert isinstance(writer, RedisCache)
    s = suite.new_table(writer)
    suite.write(writer, s, suite.v(1, suite.T0, 1, clicks=1))
    lost = [*writer._client.scan_iter(match=f"{PREFIX}:{s.name}#*"), writer._schema_key(s.name)]
    writer._client.delete(*lost)  # what a restart of a Redis without persistence leaves of the table
    suite.write(writer, s, suite.v(1, suite.T0 + 1, 2, clicks=2))
    reader = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert suite.got(reader.get(s.name, [1], ["clicks"]), "clicks") == [(2, suite.T0 + 1, "present")]
    suite.cleanup()
    writer.close()
    reader.close()


def test_a_read_after_the_server_dropped_the_pooled_sockets_succeeds(services: object) -> None:
    """Pooled read sockets the server closed since (here CLIENT KILL; a restart or an idle timeout
    alike) are replaced on the next read, not reported as Redis being down."""
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert isinstance(cache, RedisCache)
    s = suite.new_table(cache)
    suite.write(cache, s, *[suite.v(k, suite.T0, k, clicks=k) for k in range(3)])
    assert suite.got(cache.get(s.name, [1], ["clicks"]), "clicks") == [(1, suite.T0, "present")]
    (sock, _), = cache._sockets._idle  # the one pooled socket
    host, port = sock.getsockname()[:2]
    assert cache._client.client_kill(f"{host}:{port}")
    assert suite.got(cache.get(s.name, [2], ["clicks"]), "clicks") == [(2, suite.T0, "present")]
    suite.cleanup()
    cache.close()


def test_a_write_after_the_server_forgot_the_script_loads_it_again(services: object) -> None:
    """A Redis that restarted (or ran SCRIPT FLUSH) answers the write's EVALSHA with NOSCRIPT: the
    write loads the script and is sent again, and nothing it holds is lost or regressed."""
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    assert isinstance(cache, RedisCache)
    s = suite.new_table(cache)
    suite.write(cache, s, suite.v(1, suite.T0 + 5, 2, clicks=5))
    cache._client.script_flush()
    suite.write(cache, s, suite.v(1, suite.T0 + 1, 2, clicks=1), suite.v(2, suite.T0, 1, clicks=7))
    assert suite.got(cache.get(s.name, [1, 2], ["clicks"]), "clicks") == [
        (5, suite.T0 + 5, "present"), (7, suite.T0, "present")]  # key 1's older write did not land
    suite.cleanup()
    cache.close()
