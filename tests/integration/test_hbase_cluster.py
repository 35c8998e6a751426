"""The versioned store on HBase in pseudo-distributed mode: ZooKeeper, a master and two region
servers as separate processes (`featurestore services up hbase-cluster`).

A table pre-split on the salt buckets has its regions on both region servers from the first
row; versions written through the store read back as of their times; a region server killed
with -9 has its regions reassigned to the other, its write-ahead log replayed, and every version
written before it died reads back the same.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from featurestore.keys import SALT_BUCKETS
from featurestore.services import hbase_cluster, manager
from featurestore.storage.hbase import HBaseStore
from featurestore.storage.versioned import open_versioned_store
from tests.contract import versioned_store_suite as suite

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(services: object) -> Iterator[HBaseStore]:
    report = manager.up(["hbase-cluster"])
    opened = open_versioned_store(f"{hbase_cluster.URI}&prefix=fscluster")
    assert isinstance(opened, HBaseStore)
    try:
        yield opened
        suite.cleanup()
    finally:
        opened.close()
        manager.down(only_started_by=report)


def _servers(store: HBaseStore, table: str) -> dict[bytes, str]:
    """Region start key -> the region server (host:port) holding it."""
    with store._connection() as connection:
        regions = connection.table(table).regions()
    return {r["start_key"]: f"{r['server_name'].decode()}:{r['port']}" for r in regions}


def test_regions_on_both_servers_and_a_killed_server_loses_nothing(store: HBaseStore) -> None:
    s = suite.new_table(store)
    servers = _servers(store, s.name)
    assert len(servers) == SALT_BUCKETS
    assert len(set(servers.values())) == 2, servers  # the pre-split regions are spread over both
    keys = list(range(400))
    rows = [suite.v(k, suite.T0 + t, k * 10 + t, clicks=k * 10 + t) for k in keys for t in range(3)]
    assert suite.put(store, s, *rows) == len(rows)
    expected = [(k * 10 + 1, suite.T0 + 1) for k in keys]
    assert suite.cells(store.get_as_of(s.name, keys, suite.T0 + 1, ["clicks"]), "clicks") == expected

    victim = "regionserver-1"
    port = dict((c, rpc) for c, rpc, _ in hbase_cluster.REGION_SERVERS)[victim]
    os.kill(manager.service("hbase-cluster").pids()[victim], signal.SIGKILL)
    deadline = time.monotonic() + 180
    while True:  # the master notices (ZooKeeper session timeout) and reassigns the regions
        try:
            moved = _servers(store, s.name)
        except Exception:  # meta is being rewritten: ask again
            moved = {}
        if len(moved) == SALT_BUCKETS and not any(v.endswith(f":{port}") for v in moved.values()):
            break
        assert time.monotonic() < deadline, f"regions still on the dead server: {moved}"
        time.sleep(2)
    deadline = time.monotonic() + 120
    while True:  # regions open once their log is replayed: reads retry until then
        try:
            got = store.get_as_of(s.name, keys, suite.T0 + 1, ["clicks"])
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(2)
    assert suite.cells(got, "clicks") == expected
    latest = store.get_latest(s.name, keys, ["clicks"])
    assert suite.cells(latest, "clicks") == [(k * 10 + 2, suite.T0 + 2) for k in keys]
