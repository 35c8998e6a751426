"""A sink write retries a store that is down, reports the error meanwhile, and gives up after retry_s."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.errors import ServiceUnavailableError
from featurestore.schema import Field, TableSchema
from featurestore.types import ValueType
from ingestion.progress import ProgressWriter, read_progress
from ingestion.store_sink import SinkSpec, WriteVersions

SCHEMA = TableSchema(name="t", keys=(Field("user_id", ValueType.STRING),), features=(Field("f", ValueType.INT64),))


def _sink(tmp_path: Path, retry_s: float) -> WriteVersions:
    spec = SinkSpec(schema=SCHEMA, columns=("user_id",), versioned_store=None, online_cache=None, offline_log=None,
                    retry_s=retry_s)
    sink = WriteVersions(spec)
    sink._progress = ProgressWriter(str(tmp_path), "t", "w_1h")
    return sink


def test_a_write_is_retried_until_the_store_is_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ingestion.store_sink.time.sleep", lambda s: None)
    sink = _sink(tmp_path, retry_s=60)
    calls: list[str] = []
    seen_errors: list[dict[str, str]] = []

    def write() -> None:
        calls.append("write")
        seen_errors.append(dict(read_progress(tmp_path).errors))
        if len(calls) < 3:
            raise ServiceUnavailableError("redis", "redis://127.0.0.1:1/0", "connection refused")

    sink._retrying("online cache", write)
    assert calls == ["write", "write", "write"]
    assert "connection refused" in seen_errors[1]["t.w_1h"]  # visible while it retried
    assert read_progress(tmp_path).errors == {}  # and cleared once a write succeeded


def test_a_store_down_longer_than_retry_s_fails_the_write(tmp_path: Path) -> None:
    sink = _sink(tmp_path, retry_s=0.1)

    def write() -> None:
        raise ServiceUnavailableError("hbase", "127.0.0.1:9090", "connection refused")

    with pytest.raises(ServiceUnavailableError):
        sink._retrying("versioned store", write)
    assert "versioned store: hbase" in read_progress(tmp_path).errors["t.w_1h"]


def test_versions_after_the_write_range_are_dropped_but_their_watermark_is_reported(tmp_path: Path) -> None:
    # A bounded job's final watermark fires window expiries after the range: not written, yet they
    # tell the job's sample sinks that everything before the range's end has been written.
    import pandas as pd

    from featurestore.storage.versioned import open_versioned_store

    store = open_versioned_store(f"embedded://{tmp_path / 'store'}")
    store.ensure_table(SCHEMA)
    spec = SinkSpec(schema=SCHEMA, columns=("user_id", "version_ms", "seq", "f"), versioned_store=None,
                    online_cache=None, offline_log=None, watermark=True, write_end_ms=1_000)
    sink = WriteVersions(spec)
    sink._store = store
    (tmp_path / "progress").mkdir()
    sink._progress = ProgressWriter(str(tmp_path / "progress"), "t", "w_1h")
    watermark = pd.Series(pd.to_datetime([990, 5_000], unit="ms", utc=True))
    sink.eval(pd.Series(["u1", "u1"]), pd.Series([999, 1_000]), pd.Series([1, 2]), pd.Series([7, 0]), watermark)
    got = store.get_as_of("t", ["u1"], 10_000, ["f"]).to_pylist()
    assert [(r["f"], r["f__ts"]) for r in got] == [(7, 999)]
    progress = read_progress(tmp_path / "progress")
    assert progress.total_rows == 1 and progress.watermark_ms[("t", "w_1h")] == 5_000
    sink.eval(pd.Series(["u2"]), pd.Series([2_000]), pd.Series([3]), pd.Series([1]),
              pd.Series(pd.to_datetime([9_000], unit="ms", utc=True)))  # only dropped rows: still reported
    progress = read_progress(tmp_path / "progress")
    assert progress.total_rows == 1 and progress.watermark_ms[("t", "w_1h")] == 9_000
    store.close()


def test_a_cache_that_lost_the_table_definition_gets_it_back_and_the_write(tmp_path: Path) -> None:
    # An online cache restarted without persistence forgets the definitions with the values: the
    # sink restores the definition and writes, instead of failing the job into a restart.
    import pandas as pd

    from featurestore.storage.online import open_online_cache

    cache = open_online_cache("memory://")
    cache.ensure_table(SCHEMA)
    spec = SinkSpec(schema=SCHEMA, columns=("user_id", "version_ms", "seq", "f"), versioned_store=None,
                    online_cache=None, offline_log=None)
    sink = WriteVersions(spec)
    sink._online = cache
    cache.drop_table("t")  # what a restart without persistence leaves
    sink.eval(pd.Series(["u1"]), pd.Series([999]), pd.Series([1]), pd.Series([7]))
    got = cache.get("t", ["u1"], ["f"], now_ms=1_000).to_pylist()
    assert [(r["f"], r["f__ts"]) for r in got] == [(7, 999)]
