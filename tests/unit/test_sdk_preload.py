"""The preloader on the local profile: training-set prefetch, snapshot switch, hot keys."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import ValidationError
from featurestore.preload.schedule import Periodic
from featurestore.preload.source import LocalSource
from featurestore.preload.training import TorchStyleIterable, TrainingSetReader, numpy_batches
from sdk.store import FeatureStore
from tests.unit.test_sdk_online import USERS, make_repo, open_store, seed


def write_training_set(directory: Path, files: int = 3, rows: int = 5_000, row_group: int = 1_000) -> pa.Table:
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(files):
        n = np.arange(i * rows, (i + 1) * rows)
        table = pa.table({"row": n, "x": n * 0.5, "label": n % 2, "user_id": [f"u{v % 97}" for v in n]})
        pq.write_table(table, directory / f"part-{i:03d}.parquet", row_group_size=row_group)
        parts.append(table)
    return pa.concat_tables(parts)


class SlowSource(LocalSource):
    """Local files with latency per read, like remote storage."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.reads = 0

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self.reads += 1
        time.sleep(self.delay_s)
        return super().read_range(path, offset, length)


@pytest.mark.parametrize("prefetch", [True, False])
def test_reader_yields_every_row_in_order(tmp_path: Path, prefetch: bool) -> None:
    expected = write_training_set(tmp_path / "ts")
    reader = TrainingSetReader(str(tmp_path / "ts"), prefetch=prefetch, cache_bytes=64 << 10, workers=3)
    assert reader.stats().units == 0
    got = pa.Table.from_batches(list(reader))
    assert got.equals(expected)
    stats = reader.stats()
    assert stats.units == 15 and stats.extra_reads == 0
    assert stats.hits + stats.misses == 15
    assert stats.bytes_read > 0


def test_prefetch_hides_latency_and_respects_the_cache_bound(tmp_path: Path) -> None:
    write_training_set(tmp_path / "ts", files=2, rows=40_000, row_group=5_000)
    slow = SlowSource(0.02)
    plain = TrainingSetReader(str(tmp_path / "ts"), source=slow, prefetch=False)
    for _ in plain:
        time.sleep(0.02)  # the trainer's step
    fast = TrainingSetReader(str(tmp_path / "ts"), source=slow, workers=4, cache_bytes=400_000)
    for _ in fast:
        time.sleep(0.02)
    p, f = plain.stats(), fast.stats()
    assert f.hit_rate >= 0.9 and f.wait_s < p.wait_s / 2
    assert 0 < f.peak_cache_bytes <= 400_000 and p.peak_cache_bytes == 0


def test_cache_smaller_than_a_row_group_still_works(tmp_path: Path) -> None:
    expected = write_training_set(tmp_path / "ts", files=1)
    reader = TrainingSetReader(str(tmp_path / "ts" / "part-000.parquet"), cache_bytes=1, workers=2)
    assert pa.Table.from_batches(list(reader)).equals(expected)


def test_numpy_and_torch_style_adapters(tmp_path: Path) -> None:
    write_training_set(tmp_path / "ts", files=2, rows=1_000, row_group=300)
    reader = TrainingSetReader(str(tmp_path / "ts"), columns=["x", "label"])
    batches = list(reader.numpy(256))
    assert [len(b["x"]) for b in batches] == [256] * 7 + [208]
    assert isinstance(batches[0]["x"], np.ndarray) and set(batches[0]) == {"x", "label"}
    assert np.concatenate([b["x"] for b in batches]).tolist() == (np.arange(2_000) * 0.5).tolist()
    dataset = TorchStyleIterable(reader, 500, drop_last=True)
    for _ in range(2):  # each iter() is an epoch
        assert [len(b["label"]) for b in dataset] == [500] * 4
    assert len(list(numpy_batches(iter(reader)))) == 8


def test_reader_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValidationError):
        list(TrainingSetReader(str(tmp_path / "bad.parquet")))
    with pytest.raises(ValidationError):
        TrainingSetReader(str(tmp_path / "empty_dir"))


def test_facade_training_set(tmp_path: Path) -> None:
    write_training_set(tmp_path / "ts", files=1, rows=100, row_group=50)
    fs = FeatureStore(make_repo(tmp_path))
    reader = fs.preload.training_set(str(tmp_path / "ts"), batch_rows=25)
    assert [b.num_rows for b in reader] == [25] * 4
    assert fs.stores.opened == ()


def snapshot(users: int, value: int) -> pa.Table:
    return pa.table({"user_id": [f"s{i}" for i in range(users)], "user_clicks_1d": [value] * users})


def check_snapshot_switch(fs: FeatureStore, *, readers: int = 3, users: int = 200) -> None:
    """Readers reading every key while snapshot 1 is replaced by 2, 3, 4: each result is one snapshot."""
    now = int(time.time() * 1000)
    fs.preload.snapshot(USERS, snapshot(users, 1), as_of=now - 10_000)
    keys = [f"s{i}" for i in range(users)]
    ref = f"{USERS}:user_clicks_1d"
    seen: list[set[int]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                values = set(fs.online.get([ref], keys).to_pydict()["user_clicks_1d"])
                seen.append(values)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for value in (2, 3, 4):
        time.sleep(0.05)
        fs.preload.snapshot(USERS, snapshot(users, value), as_of=now - 10_000 + value)
    time.sleep(fs.online.options.pointer_cache_s + 0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    mixed = [s for s in seen if len(s) != 1]
    assert not mixed, mixed[:3]
    assert {v for s in seen for v in s} >= {1, 4}
    assert set(fs.online.get([ref], keys).to_pydict()["user_clicks_1d"]) == {4}
    current = fs.preload.current_snapshot(USERS)
    assert current is not None and current.id == 4
    # history is in the versioned store: as of snapshot 2's time, every key reads 2
    assert set(fs.online.get([ref], keys[:5], as_of=now - 10_000 + 2).to_pydict()["user_clicks_1d"]) == {2}


def test_snapshot_switch_is_atomic_in_memory(tmp_path: Path) -> None:
    fs = open_store(make_repo(tmp_path))
    check_snapshot_switch(fs)
    assert fs.online.stats().snapshot_lookups > 0
    fs.close()


def test_snapshot_fallback_reads_the_snapshot_time(tmp_path: Path) -> None:
    """A key the snapshot's online table lacks is read from the versioned store as of the snapshot."""
    fs = open_store(make_repo(tmp_path))
    ref = f"{USERS}:user_clicks_1d"
    now = int(time.time() * 1000)
    fs.preload.snapshot(USERS, snapshot(2, 1), as_of=now - 5_000)
    schema = fs.registry.definitions().table_schema(USERS)
    # a newer streaming version of s0 lands in the versioned store only
    fs.stores.versioned.put(USERS, pa.table({"user_id": ["s0"], "version_ms": [now - 1_000], "seq": [9],
                                             "user_clicks_1d": [7]}, schema=pa.schema(
        [schema.arrow_schema().field(n) for n in ("user_id", "version_ms", "seq", "user_clicks_1d")])))
    fs.stores.online_cache.delete_key(fs.preload.current_snapshot(USERS).online_table, "s0")  # type: ignore[union-attr]
    assert fs.online.get([ref], ["s0"]).to_pydict()["user_clicks_1d"] == [1]
    assert fs.online.stats().store_found == 1
    fs.close()


@pytest.mark.parametrize("local_cache_s", [1.0, 0.0])
def test_hot_keys_are_refreshed_on_a_schedule(tmp_path: Path, local_cache_s: float) -> None:
    """Warmed keys are served in-process, even when the in-process cache is otherwise off."""
    from sdk.online import ServingOptions

    fs = open_store(make_repo(tmp_path), options=ServingOptions(local_cache_s=local_cache_s))
    seed(fs)
    ref = f"{USERS}:user_clicks_1d"
    task = fs.preload.hot_keys([ref], ["u1", "u2"], every_s=0.05)
    deadline = time.time() + 5
    while task.stats().runs < 3 and time.time() < deadline:
        time.sleep(0.02)
    task.stop()
    assert not task.running and task.stats().runs >= 3 and task.stats().errors == 0
    stats = fs.online.stats()
    assert stats.warmed >= 6
    fs.online.get([ref], ["u1", "u2", "u3"])
    assert fs.online.stats().local_hits == 2  # u1, u2 from the warmed in-process cache
    fs.close()


def test_periodic_counts_errors_and_keeps_going() -> None:
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) % 2:
            raise RuntimeError("boom")

    with Periodic(flaky, 0.01, name="flaky") as task:
        deadline = time.time() + 5
        while task.stats().runs < 4 and time.time() < deadline:
            time.sleep(0.01)
    stats = task.stats()
    assert stats.errors >= 2 and stats.last_error == "RuntimeError: boom" and stats.runs >= 4
    with pytest.raises(ValueError):
        Periodic(flaky, 0)


