"""The offline log with its warehouse on the real HDFS, through hdfs-native (no JVM, no libhdfs):
the local tests' assertions where they apply, the point-in-time engine reading the log from HDFS,
and the staged appender with its staging directory on HDFS, crash recovery included."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.errors import NotFoundError, ValidationError
from featurestore.fs import open_fs
from featurestore.offline import BATCH_ID_PROPERTY, OfflineLog
from featurestore.offline.hdfs import HdfsNativeFileIO
from featurestore.offline.staging import StagedAppender
from featurestore.pit import FeatureSource, export, get_historical_features, reproduce
from featurestore.schema import WRITTEN, Field, TableSchema
from featurestore.services import ports
from featurestore.types import ValueType
from tests.unit.test_offline_log import DAY, SCHEMA, versions
from tests.unit.test_pit_engine import USER, USER_VERSIONS, samples, user_versions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")  # pyparsing 3.3 vs pyiceberg 0.8


@pytest.fixture
def warehouse(services: object) -> Iterator[str]:
    root = f"{ports.HDFS_URI}/tests/offline-{uuid.uuid4().hex[:8]}"
    yield root
    open_fs(root).delete(root)


@pytest.fixture
def log(tmp_path: Path, warehouse: str) -> OfflineLog:
    return OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=warehouse))


def test_no_jvm_is_loaded(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    table.append(versions([(1, 0, 1, 5, 0.5)]))
    assert table.scan().num_rows == 1
    iceberg = log.catalog.load_table(table.identifier)
    assert isinstance(iceberg.io, HdfsNativeFileIO)
    assert iceberg.location().startswith(f"{ports.HDFS_URI}/tests/offline-")
    with open(f"/proc/{os.getpid()}/maps") as maps:
        assert "libjvm" not in maps.read() and "libhdfs" not in maps.read()


def test_append_scan_bounds_projection_and_partition_pruning_on_hdfs(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    assert table.current_snapshot_id() is None and table.scan().num_rows == 0
    table.append(versions([(1, 0, 1, 5, 0.5), (1, DAY + 1, 2, None, 0.25), (2, 3 * DAY, 3, 9, None)]))
    full = table.scan(dedupe=True)
    assert full.column_names == ["user_id", "version_ms", "seq", "clicks", "ctr", "tags", WRITTEN]
    assert full.column("clicks").to_pylist() == [5, None, 9]
    assert full.column("tags").to_pylist() == [None, None, None]
    assert full.column(WRITTEN).to_pylist() == ["clicks,ctr"] * 3
    bounded = table.scan(start_ms=DAY, end_ms=3 * DAY, features=["ctr"])
    assert bounded.to_pylist() == [{"user_id": 1, "version_ms": DAY + 1, "seq": 2, "ctr": 0.25, WRITTEN: "clicks,ctr"}]
    data_files = table.data_files(start_ms=DAY, end_ms=2 * DAY)
    assert len(data_files) == 1 and "version_day=1970-01-02" in data_files[0]
    assert data_files[0].startswith(ports.HDFS_URI)
    # DuckDB reads the hdfs:// data files itself (hdfs-native through fsspec), bounds and projection pushed down
    con = duckdb.connect()
    relation = table.relation(con, start_ms=DAY, end_ms=3 * DAY, features=["ctr"])
    assert "hdfs" in con.list_filesystems()
    assert relation.to_arrow_table().to_pylist() == bounded.to_pylist()


def test_batch_ids_dedupe_and_snapshots_on_hdfs(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    batch = versions([(1, 10, 1, 1, None), (2, 20, 2, 2, None)])
    first = table.append(batch, batch_id="job-7/part-0")
    again = log.table(SCHEMA).append(batch, batch_id="job-7/part-0")
    assert not first.skipped and again.skipped and again.snapshot_id == first.snapshot_id
    snapshot = log.catalog.load_table(table.identifier).current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary.get(BATCH_ID_PROPERTY) == "job-7/part-0"
    table.append(batch)  # no batch id: a duplicate lands
    assert table.scan().num_rows == 4 and table.scan(dedupe=True).num_rows == 2
    table.append(versions([(1, 30, 3, 3, None)]))
    assert table.scan(snapshot_id=first.snapshot_id).num_rows == 2
    con = duckdb.connect()
    assert table.relation(con, snapshot_id=first.snapshot_id, features=["clicks"]).to_arrow_table().num_rows == 2
    with pytest.raises(NotFoundError):
        table.scan(snapshot_id=12345)


def test_schema_evolution_on_hdfs(log: OfflineLog) -> None:
    log.ensure_table(SCHEMA).append(versions([(1, 10, 1, 1, None)]))
    wider = TableSchema(SCHEMA.name, SCHEMA.keys, (*SCHEMA.features, Field("score", ValueType.DOUBLE)))
    table = log.ensure_table(wider)
    assert table.scan().column("score").to_pylist() == [None]
    table.append(pa.table({"user_id": [1], "version_ms": [20], "seq": [2], "score": [0.5]}))
    rows = table.scan(dedupe=True).to_pylist()
    assert [(r["score"], r[WRITTEN]) for r in rows] == [(None, "clicks,ctr"), (0.5, "score")]
    con = duckdb.connect()  # old files lack the column: DuckDB unions by name
    read = sorted(table.relation(con, features=["score"]).to_arrow_table().to_pylist(), key=lambda r: r["seq"])
    assert [r["score"] for r in read] == [None, 0.5]
    with pytest.raises(ValidationError, match="clicks"):
        log.ensure_table(TableSchema(SCHEMA.name, SCHEMA.keys, (Field("clicks", ValueType.STRING),)))


def test_point_in_time_export_reads_the_log_on_hdfs(log: OfflineLog, tmp_path: Path) -> None:
    table = log.ensure_table(USER)
    table.append(USER_VERSIONS, batch_id="b0")
    s = samples([20, 60, 110], [1, 2, 1])
    pq.write_table(s, tmp_path / "samples.parquet")
    source = FeatureSource(USER, table, join_keys={"user_id": "uid"})
    first = export(tmp_path / "samples.parquet", ["user:clicks", "user:ctr"], [source], output=tmp_path / "t.parquet")
    assert first.snapshot_ids == {"user": table.current_snapshot_id()}
    table.append(user_versions([(1, 19, 9, 99, 9.9), (2, 55, 10, 77, 7.7), (1, 20, 11, 111, None)]), batch_id="b1")
    latest = get_historical_features(s, ["user:clicks"], [FeatureSource(USER, table, join_keys={"user_id": "uid"})])
    assert latest.column("clicks").to_pylist() == [111, 77, 111]
    reproduce(tmp_path / "t.parquet.manifest.json", output=tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(tmp_path / "t.parquet"))
    manifest = export(s, ["user:clicks"], [source], output="exports.train", format="iceberg", log=log)
    assert manifest.row_count == 3
    rows = log.catalog.load_table("exports.train").scan().to_arrow()
    assert sorted(rows.column("clicks").to_pylist()) == [77, 111, 111]


def staged_batch(first_seq: int, rows: int = 100) -> pa.Table:
    seqs = list(range(first_seq, first_seq + rows))
    return pa.table(
        {
            "user_id": pa.array([s % 7 for s in seqs], pa.int64()),
            "version_ms": pa.array([1_700_000_000_000 + s for s in seqs], pa.int64()),
            "seq": pa.array(seqs, pa.int64()),
            "clicks": pa.array(seqs, pa.int64()),
        }
    )


def test_staged_appender_on_hdfs_commits_once_and_recovers_a_crashed_writers_open_files(
    log: OfflineLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = log.ensure_table(SCHEMA)
    with StagedAppender(table, background=False) as appender:
        assert appender.staging_dir.startswith(f"{ports.HDFS_URI}/tests/offline-")
        for i in range(10):
            appender.add(staged_batch(i * 100), batch_id=f"b{i}")
        assert appender.add(staged_batch(0), batch_id="b0") is None
        result = appender.flush()
        assert (result.commits, result.files, result.rows) == (1, 10, 1000)
    assert open_fs(appender.staging_dir).list_files(appender.staging_dir) == []

    # A writer dies after its adds returned: its files are synced and renamed, but never closed.
    crashed = StagedAppender(table, background=False)
    held: list[Any] = []
    monkeypatch.setattr(crashed._staging, "_close_file", lambda name, writer: held.append(writer))
    for i in range(10, 13):
        crashed.add(staged_batch(i * 100), batch_id=f"b{i}")
    for closing in list(crashed._staging._closing.values()):  # the background "closes" ran
        closing.result()
    assert len(held) == 3
    successor = StagedAppender(table, background=False)  # lease recovery, then one commit
    assert successor.stats().committed_files == 3
    successor.close()
    for writer in held:  # the dead writer was fenced
        with contextlib.suppress(Exception):
            writer.close()
    scanned = OfflineLog(log.config).table(SCHEMA).scan()
    assert sorted(scanned.column("seq").to_pylist()) == list(range(1300))  # all, once, without dedupe
    assert {f"b{i}" for i in range(13)} <= OfflineLog(log.config).table(SCHEMA).batch_ids()
    assert open_fs(successor.staging_dir).list_files(successor.staging_dir) == []
