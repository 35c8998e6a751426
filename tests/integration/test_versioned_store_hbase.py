"""The VersionedStore contract on HBase (Thrift at 127.0.0.1:9090), plus HBase-only edges."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from featurestore.errors import ServiceUnavailableError, TransientError
from featurestore.keys import SALT_BUCKETS
from featurestore.services import ports
from featurestore.storage.hbase import HBaseStore
from featurestore.storage.versioned import VersionedStore, open_versioned_store
from tests.contract import versioned_store_suite as suite
from tests.contract.versioned_store_suite import *  # noqa: F403


@pytest.fixture
def vstore(services: object) -> Iterator[VersionedStore]:
    store = open_versioned_store(f"{ports.HBASE_URI}?prefix=fstest&put_threads=2")
    yield store
    suite.cleanup()
    store.close()


def test_factory_builds_hbase_store(services: object) -> None:
    store = open_versioned_store(f"{ports.HBASE_URI}?retention=400d&pool_size=2")
    assert isinstance(store, HBaseStore) and store.retention_ms == 400 * 86_400_000
    store.close()


def test_unreachable_hbase_is_a_transient_error() -> None:
    store = HBaseStore("127.0.0.1", 1, timeout_s=1)  # nothing listens on port 1
    with pytest.raises(ServiceUnavailableError) as info:
        store.schema("anything")
    assert isinstance(info.value, TransientError) and info.value.service == "hbase"
    assert "127.0.0.1:1" in str(info.value)


def test_family_ttl_is_not_the_feature_ttl(vstore: VersionedStore) -> None:
    """A one-second feature TTL must not make HBase hide history written today for last year."""
    s = suite.new_table(vstore, ttl_ms=1_000)
    suite.put(vstore, s, suite.v(1, 1_600_000_000_000, 1, clicks=1))
    assert suite.cells(vstore.get_as_of(s.name, [1], 1_600_000_000_500), "clicks") == [(1, 1_600_000_000_000)]


def test_many_timestamps_in_one_batch(vstore: VersionedStore) -> None:
    s = suite.new_table(vstore)
    rows = [suite.v(k, suite.T0 + t, k * 10 + t, clicks=k * 10 + t) for k in range(20) for t in range(10)]
    assert suite.put(vstore, s, *rows) == 200
    got = vstore.get_as_of(s.name, list(range(20)), [suite.T0 + k % 10 for k in range(20)], ["clicks"])
    assert suite.cells(got, "clicks") == [(k * 10 + k % 10, suite.T0 + k % 10) for k in range(20)]


def test_distinct_timestamps_each_land_with_their_own_time(services: object) -> None:
    """A batch of event-time versions (all distinct), in many small Thrift2 chunks over threads:
    every version lands at its own timestamp, nulls included, ties reduced to the highest seq."""
    store = open_versioned_store(f"{ports.HBASE_URI}?prefix=fstest&put_threads=3&put_chunk=7")
    try:
        s = suite.new_table(store)
        rows = [
            suite.v(k, suite.T0 + 1_000 * k + t, 100 * k + t, clicks=None if t % 5 == 0 else 100 * k + t, ctr=t / 10)
            for k in range(1, 21)
            for t in range(15)
        ]
        rows.append(suite.v(3, suite.T0 + 3_000 + 4, 1, clicks=-1, ctr=-1.0))  # lower seq, same cell: loses
        assert suite.put(store, s, *rows) == 2 * len(rows)
        for k in range(1, 21):
            got = store.list_versions(s.name, k, "clicks").to_pylist()
            assert got == [
                {"version_ms": suite.T0 + 1_000 * k + t, "clicks": None if t % 5 == 0 else 100 * k + t}
                for t in range(15)
            ]
        ctr = store.list_versions(s.name, 3, "ctr").to_pylist()
        assert [r["version_ms"] for r in ctr] == [suite.T0 + 3_000 + t for t in range(15)]
        assert ctr[4]["ctr"] == 0.4
    finally:
        suite.cleanup()
        store.close()


def test_unreachable_thrift2_is_a_transient_error_naming_its_address(vstore: VersionedStore) -> None:
    s = suite.new_table(vstore)
    store = HBaseStore.from_uri(f"{ports.HBASE_URI}?prefix=fstest&thrift2=127.0.0.1:1&timeout_s=1")
    try:
        with pytest.raises(ServiceUnavailableError) as info:  # writes go through Thrift2
            suite.put(store, s, suite.v(1, suite.T0, 1, clicks=1))
        assert "127.0.0.1:1" in str(info.value)
        with pytest.raises(ServiceUnavailableError) as info:  # so does table creation (split keys)
            store.ensure_table(dataclasses.replace(s, name=s.name + "_new"))
        assert "127.0.0.1:1" in str(info.value)
    finally:
        store.close()


def test_tables_are_pre_split_on_the_salt_buckets(vstore: VersionedStore) -> None:
    """One region per salt bucket from the first row: writes of any key range spread over all."""
    s = suite.new_table(vstore)
    assert isinstance(vstore, HBaseStore)
    with vstore._connection() as connection:
        regions = connection.table(s.name).regions()
    starts = sorted(r["start_key"] for r in regions)
    assert starts == [b""] + [b"%02x:" % bucket for bucket in range(1, SALT_BUCKETS)]
    keys = list(range(200))
    suite.put(vstore, s, *(suite.v(k, suite.T0, k, clicks=k) for k in keys))
    got = vstore.get_latest(s.name, keys, ["clicks"])
    assert suite.cells(got, "clicks") == [(k, suite.T0) for k in keys]  # every bucket readable


def test_a_failed_connection_is_closed_not_left_to_the_collector(vstore: VersionedStore) -> None:
    # happybase swaps a tainted connection's transport for a new one without closing the old:
    # the store closes it first, so no socket is left open (a ResourceWarning fails this test).
    assert isinstance(vstore, HBaseStore)
    with pytest.raises(ServiceUnavailableError), vstore._connection() as connection:
        old = connection.transport
        raise OSError("the region server went away")
    assert not old.is_open()
    assert connection.transport is not old
    with vstore._connection() as again:  # the pool still serves a working connection
        assert isinstance(again.tables(), list)
