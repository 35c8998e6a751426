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

    sink._retrying("online cache", write, recovered=lambda: calls.append("recovered"))
    assert calls == ["write", "write", "write", "recovered"]
    assert "connection refused" in seen_errors[1]["t.w_1h"]  # visible while it retried
    assert read_progress(tmp_path).errors == {}  # and cleared once a write succeeded


def test_a_store_down_longer_than_retry_s_fails_the_write(tmp_path: Path) -> None:
    sink = _sink(tmp_path, retry_s=0.1)

    def write() -> None:
        raise ServiceUnavailableError("hbase", "127.0.0.1:9090", "connection refused")

    with pytest.raises(ServiceUnavailableError):
        sink._retrying("versioned store", write)
    assert "versioned store: hbase" in read_progress(tmp_path).errors["t.w_1h"]
