"""The SDK read path, snapshot switch and training-set prefetch on the real services (cluster
profile: Redis, HBase, HDFS), each test under a prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore.preload.training import TrainingSetReader
from featurestore.services import ports
from sdk.online import ServingOptions
from sdk.store import FeatureStore
from tests.unit.test_sdk_online import C1D, C30D, DAY, NOW, cells, make_repo, open_store, seed
from tests.unit.test_sdk_preload import check_snapshot_switch, write_training_set


def cluster_store(tmp: Path, options: ServingOptions | None = None, *, redis: str | None = None) -> FeatureStore:
    prefix = f"fst{uuid.uuid4().hex[:10]}"
    return open_store(
        make_repo(tmp), "cluster", options=options,
        online_cache=redis or f"{ports.REDIS_URI}?prefix={prefix}",
        versioned_store=f"{ports.HBASE_URI}?prefix={prefix}",
    )


def drop_all(fs: FeatureStore) -> None:
    for name in fs.registry.definitions().table_schemas():
        fs.stores.versioned.drop_table(name)
        fs.stores.online_cache.drop_table(name)
    fs.close()


@pytest.fixture
def fs(services: object, tmp_path: Path) -> Iterator[FeatureStore]:
    store = cluster_store(tmp_path)
    seed(store)
    yield store
    drop_all(store)


def test_read_path_on_redis_and_hbase(fs: FeatureStore) -> None:
    assert fs.config.online_cache.startswith("redis://") and fs.config.versioned_store.startswith("hbase://")
    got = fs.online.get([C1D, C30D], ["u1", "u2", "u3", "u4"], now_ms=NOW)
    assert cells(got, "user_clicks_1d") == [
        (3, NOW - 1000, "present"), (4, NOW - 2000, "present"), (None, None, "missing"), (None, None, "expired"),
    ]
    s = fs.online.stats()
    assert (s.cache_hits, s.cache_misses, s.store_reads, s.store_found) == (2, 2, 2, 1)
    fs.online.get([C1D], ["u1", "u2"], now_ms=NOW)
    assert fs.online.stats().local_hits == 2
    assert cells(fs.online.get([C1D], ["u1"], now_ms=NOW + 30 * DAY), "user_clicks_1d")[0][2] == "expired"


def test_as_of_on_hbase(fs: FeatureStore) -> None:
    got = fs.online.get([C1D], ["u2", "u3"], as_of=NOW - DAY)
    assert cells(got, "user_clicks_1d") == [(1, NOW - 2 * DAY, "present"), (None, None, "missing")]
    assert fs.online.stats().as_of_lookups == 2


def test_redis_down_falls_back_to_hbase_counted(services: object, tmp_path: Path) -> None:
    fs = cluster_store(tmp_path)
    seed(fs)
    down = FeatureStore(fs.repo, "cluster", online_cache="redis://127.0.0.1:1/0?timeout_s=0.3",
                        versioned_store=fs.config.versioned_store)
    got = down.online.get([C1D], ["u1", "u2"], now_ms=NOW)
    assert [c[0] for c in cells(got, "user_clicks_1d")] == [3, 4]
    assert down.online.stats().cache_errors == 2
    health = {h.name: h for h in down.health()}
    assert health["online_cache"].status == "down" and health["online_cache"].service == "redis"
    down.close()
    drop_all(fs)


def test_snapshot_switch_is_atomic_on_redis(services: object, tmp_path: Path) -> None:
    fs = cluster_store(tmp_path, ServingOptions(pointer_cache_s=0.05))
    try:
        check_snapshot_switch(fs, readers=2, users=100)
        assert fs.online.stats().snapshot_lookups > 0
    finally:
        from featurestore.preload.snapshot import RedisPointers, online_table_name

        pointers = fs.stores.pointers
        assert isinstance(pointers, RedisPointers)
        for i in range(1, 5):
            fs.stores.online_cache.drop_table(online_table_name("user_click_features", i))
        pointers.clear("user_click_features")
        drop_all(fs)


def test_training_set_from_hdfs(services: object, tmp_path: Path) -> None:
    from featurestore.fs import open_fs

    expected = write_training_set(tmp_path / "ts", files=2, rows=20_000, row_group=4_000)
    root = f"{ports.HDFS_URI}/tmp/fstest-{uuid.uuid4().hex[:10]}"
    hdfs = open_fs(root)
    for path in sorted((tmp_path / "ts").iterdir()):
        hdfs.write_bytes(f"{root}/{path.name}", path.read_bytes())
    try:
        for prefetch in (True, False):
            reader = TrainingSetReader(root, prefetch=prefetch, cache_bytes=300_000, workers=3)
            assert pa.Table.from_batches(list(reader)).equals(expected)
            stats = reader.stats()
            assert stats.units == 10 and stats.extra_reads == 0 and stats.bytes_read > 0
        fs = FeatureStore(make_repo(tmp_path), "cluster")
        batches = list(fs.preload.training_set(root, columns=["x"]).numpy(7_000))
        assert [len(b["x"]) for b in batches] == [7_000] * 5 + [5_000]
    finally:
        hdfs.delete(root)
